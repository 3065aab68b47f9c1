//! `ferry-bench`: runs a load-test scenario against the embedded engine and
//! the built-in origin, verifies every file, and prints what it measured.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use ferry_bench::harness::{self, Scenario};

/// Load-test ferry: a scenario from a TOML file and/or flags (flags win).
/// Exit code 0: every file arrived intact; 1: files were lost or corrupt;
/// 2: bad usage or the run could not be carried out.
#[derive(Debug, Parser)]
#[command(name = "ferry-bench", version)]
struct Args {
    /// A TOML scenario (keys as in `--print-scenario`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Jobs to create.
    #[arg(long)]
    jobs: Option<usize>,
    /// Files per job.
    #[arg(long)]
    files: Option<usize>,
    /// File size (`64KiB`) or a range (`16KiB..1MiB`).
    #[arg(long)]
    size: Option<String>,
    /// Files of one job transferred at once.
    #[arg(long)]
    parallel: Option<u32>,
    /// Transfers at once across background jobs.
    #[arg(long)]
    max_transfers: Option<usize>,
    /// `foreground|high|normal|low|mixed`.
    #[arg(long)]
    priority: Option<String>,
    /// Concurrent callers creating jobs.
    #[arg(long)]
    creators: Option<usize>,
    /// Fraction of bodies reset mid-way (0 to 1).
    #[arg(long)]
    reset_rate: Option<f64>,
    /// Fraction of requests answered 503 (0 to 1).
    #[arg(long)]
    unavailable_rate: Option<f64>,
    /// The `Retry-After` of those 503s, in seconds.
    #[arg(long)]
    retry_after: Option<u64>,
    /// Fraction of requests answered without range support (0 to 1).
    #[arg(long)]
    ignore_range_rate: Option<f64>,
    /// Fraction of bodies that stall at a random point (0 to 1).
    #[arg(long)]
    stall_rate: Option<f64>,
    /// How long a stall lasts, in milliseconds.
    #[arg(long)]
    stall_ms: Option<u64>,
    /// Fraction of requests before which the file's content changes (0 to 1).
    #[arg(long)]
    change_rate: Option<f64>,
    /// Bytes per second of each connection (`4MiB`).
    #[arg(long)]
    bandwidth: Option<String>,
    /// Download from this external origin (`http://127.0.0.1:8080/data`)
    /// serving the files of `--write-dataset`, not the built-in one.
    #[arg(long)]
    origin: Option<String>,
    /// Drive this `ferry` binary as a daemon (`ferry serve`) through its
    /// API, not an embedded engine; `--restarts` are then SIGKILLs.
    #[arg(long)]
    daemon: Option<String>,
    /// Leave jobs TRANSFERRED (no Complete, no verification).
    #[arg(long)]
    no_complete: bool,
    /// Engine restarts during the run.
    #[arg(long)]
    restarts: Option<u32>,
    /// Run without progress checkpoints (to measure their cost).
    #[arg(long)]
    no_checkpoints: bool,
    /// Leave the files queued: only restart the engine with them (memory
    /// and restore time of a backlog).
    #[arg(long)]
    no_resume: bool,
    /// Seed of sizes and fault draws.
    #[arg(long)]
    seed: Option<u64>,
    /// Longest run in seconds (unfinished jobs count as lost).
    #[arg(long)]
    timeout: Option<u64>,
    /// Where the store and downloads go (default: a temp dir, removed).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the report as JSON (no table, no progress bar).
    #[arg(long)]
    json: bool,
    /// Also draw the run (throughput over time, time to TRANSFERRED) into
    /// this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write the scenario's files under this directory (for an external
    /// origin, see `--origin`) and exit.
    #[arg(long)]
    write_dataset: Option<PathBuf>,
    /// Print the effective scenario as TOML and exit.
    #[arg(long)]
    print_scenario: bool,
}

fn scenario(args: &Args) -> Result<Scenario, String> {
    let mut s = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|err| format!("{}: {err}", path.display()))?;
            toml::from_str(&text).map_err(|err| format!("{}: {}", path.display(), err.message()))?
        }
        None => Scenario::default(),
    };
    macro_rules! set {
        ($($field:ident = $arg:ident),*) => {
            $(if let Some(v) = args.$arg.clone() { s.$field = v; })*
        };
    }
    set!(
        jobs = jobs,
        files_per_job = files,
        size = size,
        parallel_files = parallel,
        max_transfers = max_transfers,
        priority = priority,
        creators = creators,
        reset_rate = reset_rate,
        unavailable_rate = unavailable_rate,
        retry_after_secs = retry_after,
        ignore_range_rate = ignore_range_rate,
        stall_rate = stall_rate,
        stall_ms = stall_ms,
        change_rate = change_rate,
        bandwidth = bandwidth,
        origin = origin,
        daemon = daemon,
        restarts = restarts,
        seed = seed,
        timeout_secs = timeout
    );
    if args.no_complete {
        s.complete = false;
    }
    if args.no_checkpoints {
        s.checkpoints = false;
    }
    if args.no_resume {
        s.resume = false;
    }
    Ok(s)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = match scenario(&args) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("ferry-bench: {err}");
            return ExitCode::from(2);
        }
    };
    if args.print_scenario {
        print!("{}", toml::to_string(&scenario).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    if let Some(dir) = &args.write_dataset {
        return match harness::write_dataset(&scenario, dir) {
            Ok((files, bytes)) => {
                println!("wrote {files} files, {bytes} bytes under {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("ferry-bench: {err}");
                ExitCode::from(2)
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The origin's injected resets are logged by actix-http as errors.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,actix_http=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let temp = match &args.dir {
        Some(_) => None,
        None => match tempfile::TempDir::new() {
            Ok(t) => Some(t),
            Err(err) => {
                eprintln!("ferry-bench: a temp dir: {err}");
                return ExitCode::from(2);
            }
        },
    };
    let dir = args
        .dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_owned()))
        .unwrap_or_default();
    let progress = !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result =
        actix_rt::System::new().block_on(async { harness::run(&scenario, &dir, progress).await });
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            eprintln!("ferry-bench: {err}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("ferry-bench: {err}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &args.plot
        && let Err(err) = ferry_bench::plot::draw(&report, path)
    {
        eprintln!("ferry-bench: the plot: {err}");
        return ExitCode::from(2);
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

//! The command line: clap definitions, each command, its output and exit
//! code.

use std::{
    path::{Component, Path, PathBuf},
    time::Duration,
};

use clap::{Args, Parser, Subcommand};
use ferry_actors::api::json;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use crate::{
    client::{Address, Client, ClientError},
    config::{self, LogFormat, ServeConfig},
    serve,
};

/// Exit codes, as `ferry --help` shows them.
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// The daemon refused the command, or it failed.
    pub const FAILED: i32 = 1;
    /// Bad usage (clap's own code).
    pub const USAGE: i32 = 2;
    /// No daemon answers.
    pub const UNREACHABLE: i32 = 3;
    /// The job is in ERROR (or was cancelled) instead of transferred.
    pub const JOB_FAILED: i32 = 4;
    /// Complete could not publish some files; the job stays transferred.
    pub const NOT_PUBLISHED: i32 = 5;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  the daemon refused the command (the message says why) or it failed
  2  bad usage
  3  no daemon answers (start one with `ferry serve`)
  4  the job is in ERROR or was cancelled (watch, get)
  5  Complete could not publish some files; the job stays transferred

Environment:
  FERRY_ADDR   the daemon: unix:PATH or http://HOST:PORT
               (default: the user's socket, else /run/ferry/ferry.sock)
  FERRY_TOKEN  bearer token for a TCP address";

/// ferry: background file transfers with BITS's semantics.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The daemon's address: unix:PATH or http://HOST:PORT.
    #[arg(long, env = "FERRY_ADDR", global = true)]
    addr: Option<String>,
    /// Bearer token (TCP addresses).
    #[arg(long, env = "FERRY_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Create a job (suspended, no files); prints its id.
    Create {
        /// Display name.
        name: String,
        /// foreground, high, normal or low.
        #[arg(long, value_parser = ["foreground", "high", "normal", "low"])]
        priority: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Print the job as JSON instead of its id.
        #[arg(long)]
        json: bool,
    },
    /// Add a file to a job (a relative LOCAL is taken from the current
    /// directory).
    Add {
        /// The job.
        job: String,
        /// An http or https URL.
        url: String,
        /// Where the file appears on Complete.
        local: PathBuf,
        /// Print the added file as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a job for transfer.
    Resume {
        /// The job.
        job: String,
    },
    /// Stop a job's transfers.
    Suspend {
        /// The job.
        job: String,
    },
    /// End a job, deleting its temp files.
    Cancel {
        /// The job.
        job: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a job, publishing the files transferred so far.
    Complete {
        /// The job.
        job: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a job.
    Info {
        /// The job.
        job: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// List your jobs (final jobs are not listed).
    List {
        /// Every user's jobs (admins).
        #[arg(long)]
        all: bool,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a job's files.
    Files {
        /// The job.
        job: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a job's properties (all or none).
    Set(SetArgs),
    /// Show live progress until the job is transferred or fails (every
    /// active job without JOB).
    Watch {
        /// The job.
        job: Option<String>,
    },
    /// Download URLs in one command: create, add, resume, wait, complete.
    /// Run again with the same arguments, it resumes the same job.
    Get(GetArgs),
    /// Show the daemon's transfer budgets, bandwidth cap and time slice;
    /// with options, change them while it runs (admins).
    Limits(LimitsArgs),
    /// Show your quotas: unfinished jobs per owner, files per job.
    Quotas {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct LimitsArgs {
    /// Transfers at once across background jobs (at least 1).
    #[arg(long, value_name = "N")]
    max_transfers: Option<usize>,
    /// Transfers at once to one host, across all jobs (at least 1).
    #[arg(long, value_name = "N")]
    max_transfers_per_host: Option<usize>,
    /// Bytes per second over all transfers (at least 1).
    #[arg(long, value_name = "BYTES")]
    max_bytes_per_second: Option<u64>,
    /// Lift the bandwidth cap.
    #[arg(long, conflicts_with = "max_bytes_per_second")]
    no_bandwidth_cap: bool,
    /// Seconds a background job keeps a slot while jobs of its priority
    /// wait (at least 1).
    #[arg(long, value_name = "SECS")]
    time_slice: Option<u64>,
    /// A bandwidth window, `DAYS HH:MM-HH:MM CAP` in local time (e.g.
    /// "mon-fri 08:00-18:00 1000000", "all 22:00-06:00 pause", CAP `none`
    /// for no cap); repeat for several, the first in force applies. Replaces
    /// the schedule.
    #[arg(long = "window", value_name = "WINDOW")]
    windows: Vec<String>,
    /// Remove the bandwidth schedule.
    #[arg(long, conflicts_with = "windows")]
    no_windows: bool,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// System mode: a socket every local user may use, callers told apart by
    /// their uid.
    #[arg(long, env = "FERRY_SYSTEM")]
    system: bool,
    /// A TOML config file.
    #[arg(long, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    /// Where the store lives.
    #[arg(long, env = "FERRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The Unix socket.
    #[arg(long, env = "FERRY_SOCKET")]
    socket: Option<PathBuf>,
    /// Also listen on TCP (HOST:PORT), bearer tokens required.
    #[arg(long, env = "FERRY_LISTEN")]
    listen: Option<String>,
    /// Members of this group are admins (system mode).
    #[arg(long, env = "FERRY_ADMIN_GROUP")]
    admin_group: Option<String>,
    /// Transfers at once across background jobs.
    #[arg(long, env = "FERRY_MAX_TRANSFERS")]
    max_transfers: Option<usize>,
    /// Lowest minimum retry delay a job may set, in seconds.
    #[arg(long, env = "FERRY_RETRY_DELAY_FLOOR")]
    retry_delay_floor: Option<u64>,
    /// Bytes per second over all transfers (no cap by default).
    #[arg(long, env = "FERRY_MAX_BYTES_PER_SECOND")]
    max_bytes_per_second: Option<u64>,
    /// BITS's quotas: 60 unfinished jobs per owner, 200 files per job
    /// (admins exempt); ferry's defaults are 10,000 and 100,000.
    #[arg(long, env = "FERRY_BITS_QUOTAS")]
    bits_quotas: bool,
    /// human or json.
    #[arg(long, env = "FERRY_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// A PEM file of root certificates trusted for https besides the
    /// bundled web PKI roots (a private CA); repeatable, added to the
    /// config file's `tls_roots`.
    #[arg(long = "tls-root", value_name = "PEM")]
    tls_roots: Vec<PathBuf>,
    /// Trust only the --tls-root (and config) roots, not the bundled web
    /// PKI roots.
    #[arg(long)]
    no_tls_web_roots: bool,
    /// Print the effective settings and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Debug, Args)]
struct SetArgs {
    /// The job.
    job: String,
    /// foreground, high, normal or low.
    #[arg(long, value_parser = ["foreground", "high", "normal", "low"])]
    priority: Option<String>,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Minimum retry delay, seconds.
    #[arg(long, value_name = "SECS")]
    retry_delay: Option<u64>,
    /// No-progress timeout, seconds (0: every error is fatal).
    #[arg(long, value_name = "SECS")]
    no_progress_timeout: Option<u64>,
    /// Maximum download time, seconds.
    #[arg(long, value_name = "SECS")]
    max_download_time: Option<u64>,
    /// Files transferred at once (1 to 64).
    #[arg(long)]
    parallel: Option<u32>,
    /// The job's own bandwidth cap, bytes per second (on top of the
    /// daemon's).
    #[arg(long, value_name = "BYTES")]
    max_bytes_per_second: Option<u64>,
    /// Lift the job's own bandwidth cap.
    #[arg(long, conflicts_with = "max_bytes_per_second")]
    no_bandwidth_cap: bool,
    /// Program run (without a shell) when the job is transferred or fails,
    /// with its arguments.
    #[arg(long, num_args = 1.., value_name = "PROGRAM [ARG]...", allow_hyphen_values = true)]
    notify_cmd: Option<Vec<String>>,
    /// Remove the notify command.
    #[arg(long, conflicts_with = "notify_cmd")]
    no_notify_cmd: bool,
    /// Print the job as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct GetArgs {
    /// http or https URLs.
    #[arg(required = true)]
    urls: Vec<String>,
    /// Directory to save into (default: the current directory).
    #[arg(short = 'o', long, conflicts_with = "dest")]
    output_dir: Option<PathBuf>,
    /// The file to save one URL as.
    #[arg(long)]
    dest: Option<PathBuf>,
    /// Files transferred at once.
    #[arg(long, default_value_t = 8)]
    parallel: u32,
    /// foreground, high, normal or low.
    #[arg(long, value_parser = ["foreground", "high", "normal", "low"], default_value = "foreground")]
    priority: String,
    /// Print Complete's answer as JSON.
    #[arg(long)]
    json: bool,
    /// Print to standard error how long, from the command's start, the
    /// files took to be transferred (every byte durable in its temp file)
    /// and to be complete (durable at their final names).
    #[arg(long)]
    timings: bool,
}

/// A failed command: its message and exit code.
struct Failure {
    code: i32,
    message: String,
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        let code = match &err {
            ClientError::Unreachable { .. } => exit::UNREACHABLE,
            ClientError::Api { body, .. } if body.error == "rename_failed" => exit::NOT_PUBLISHED,
            _ => exit::FAILED,
        };
        let mut message = err.to_string();
        if let ClientError::Api { body, .. } = &err {
            for file in &body.files {
                message.push_str(&format!(
                    "\n  file {}: {}: {}",
                    file.file, file.path, file.cause
                ));
            }
        }
        Self { code, message }
    }
}

fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

type Outcome = Result<i32, Failure>;

/// Runs the command line; returns the exit code.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(args) => serve_command(args).await,
        command => {
            let client = match client(cli.addr.as_deref(), cli.token) {
                Ok(client) => client,
                Err(err) => {
                    eprintln!("ferry: {}", err.message);
                    return err.code;
                }
            };
            dispatch(&client, command).await
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ferry: {}", err.message);
            err.code
        }
    }
}

fn client(addr: Option<&str>, token: Option<String>) -> Result<Client, Failure> {
    let address = match addr {
        Some(text) => Address::parse(text).map_err(|m| fail(exit::USAGE, m))?,
        None => {
            let user = config::user_socket(&config::user_data_dir());
            if !user.exists() && Path::new(config::SYSTEM_SOCKET).exists() {
                Address::Unix(PathBuf::from(config::SYSTEM_SOCKET))
            } else {
                Address::Unix(user)
            }
        }
    };
    Ok(Client::new(address, token))
}

async fn serve_command(args: ServeArgs) -> Outcome {
    let mut config = match &args.config {
        Some(path) => ServeConfig::from_file(path, args.system)
            .map_err(|e| fail(exit::USAGE, e.to_string()))?,
        None => ServeConfig::defaults(args.system),
    };
    if let Some(dir) = args.data_dir {
        // The socket follows the data dir unless set on its own.
        if args.socket.is_none() && config.socket.starts_with(&config.data_dir) {
            config.socket = dir.join("ferry.sock");
        }
        config.data_dir = dir;
    }
    if let Some(socket) = args.socket {
        config.socket = socket;
    }
    if args.listen.is_some() {
        config.listen = args.listen;
    }
    if args.admin_group.is_some() {
        config.admin_group = args.admin_group;
    }
    if let Some(n) = args.max_transfers {
        config.max_transfers = n;
    }
    if let Some(secs) = args.retry_delay_floor {
        config.retry_delay_floor_secs = secs;
    }
    if args.bits_quotas {
        config.bits_quotas = true;
    }
    if let Some(cap) = args.max_bytes_per_second {
        config.max_bytes_per_second = Some(cap);
    }
    if let Some(format) = args.log_format {
        config.log_format = format;
    }
    config.tls_roots.extend(args.tls_roots);
    if args.no_tls_web_roots {
        config.tls_web_roots = false;
    }
    config.tls_roots = config.tls_roots.iter().map(|p| absolute(p)).collect();
    config.data_dir = absolute(&config.data_dir);
    config.socket = absolute(&config.socket);
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(exit::OK);
    }
    serve::init_logs(config.log_format);
    match serve::run(config).await {
        Ok(()) => Ok(exit::OK),
        Err(err) => {
            tracing::error!(message = "ferry serve failed.", error = %err);
            Err(fail(exit::FAILED, err.to_string()))
        }
    }
}

async fn dispatch(client: &Client, command: Command) -> Outcome {
    match command {
        Command::Serve(_) => Ok(exit::OK),
        Command::Create {
            name,
            priority,
            description,
            json,
        } => {
            let body = json::CreateJob {
                name,
                kind: None,
                priority,
                description,
                files: None,
                properties: None,
                resume: false,
            };
            let job: json::Job = client.post("/v1/jobs", &body).await?;
            if json {
                print_json(&job);
            } else {
                println!("{}", job.id);
            }
            Ok(exit::OK)
        }
        Command::Add {
            job,
            url,
            local,
            json,
        } => {
            let local = absolute(&local);
            let body = json::AddFile {
                remote: url,
                local: local.to_string_lossy().into_owned(),
            };
            let added: json::FileList = client
                .post(&Client::job_path(&job, "/files")?, &body)
                .await?;
            if json {
                print_json(&added);
            } else if let Some(file) = added.files.first() {
                println!("{}", file.id);
            }
            Ok(exit::OK)
        }
        Command::Resume { job } => {
            let _: json::Job = client.action(&job, "resume").await?;
            Ok(exit::OK)
        }
        Command::Suspend { job } => {
            let _: json::Job = client.action(&job, "suspend").await?;
            Ok(exit::OK)
        }
        Command::Cancel { job, json } => {
            let answer: json::CancelResult = client.action(&job, "cancel").await?;
            if json {
                print_json(&answer);
            } else {
                println!("{}", answer.result);
                print_undeleted(&answer.undeleted);
            }
            Ok(exit::OK)
        }
        Command::Complete { job, json } => {
            let answer: json::CompleteResult = client.action(&job, "complete").await?;
            print_complete(&answer, json)?;
            Ok(exit::OK)
        }
        Command::Info { job, json } => {
            let job = client.job(&job).await?;
            if json {
                print_json(&job);
            } else {
                print_info(&job);
            }
            Ok(exit::OK)
        }
        Command::List { all, json } => {
            let path = if all { "/v1/jobs?all=true" } else { "/v1/jobs" };
            let list: json::JobList = client.get(path).await?;
            if json {
                print_json(&list);
            } else {
                for job in &list.jobs {
                    println!(
                        "{}  {:<15} {:<10} {:>4}/{:<4} {:>10}  {}",
                        job.id,
                        job.state,
                        job.priority,
                        job.progress.files_transferred,
                        job.progress.files_total,
                        HumanBytes(job.progress.bytes_transferred).to_string(),
                        job.name
                    );
                }
            }
            Ok(exit::OK)
        }
        Command::Files { job, json } => {
            let list: json::FileList = client.get(&Client::job_path(&job, "/files")?).await?;
            if json {
                print_json(&list);
            } else {
                print_files(&list.files);
            }
            Ok(exit::OK)
        }
        Command::Set(args) => set(client, args).await,
        Command::Watch { job } => match job {
            Some(job) => watch_one(client, &job).await,
            None => watch_all(client).await,
        },
        Command::Get(args) => get(client, args).await,
        Command::Limits(args) => limits(client, args).await,
        Command::Quotas { json } => {
            let quotas: json::Quotas = client.get("/v1/quotas").await?;
            if json {
                print_json(&quotas);
            } else {
                let exempt = if quotas.exempt {
                    " (you are exempt: admin)"
                } else {
                    ""
                };
                println!(
                    "jobs:   {} unfinished, at most {} per owner{exempt}",
                    quotas.unfinished_jobs, quotas.max_jobs_per_owner
                );
                println!("files:  at most {} per job", quotas.max_files_per_job);
            }
            Ok(exit::OK)
        }
    }
}

async fn limits(client: &Client, args: LimitsArgs) -> Outcome {
    let patch = json::PatchLimits {
        max_transfers: args.max_transfers,
        max_transfers_per_host: args.max_transfers_per_host,
        max_bytes_per_second: if args.no_bandwidth_cap {
            Some(None)
        } else {
            args.max_bytes_per_second.map(Some)
        },
        time_slice_secs: args.time_slice,
        bandwidth_schedule: if args.no_windows {
            Some(Vec::new())
        } else {
            (!args.windows.is_empty()).then_some(args.windows)
        },
    };
    let limits: json::Limits = if patch == json::PatchLimits::default() {
        client.get("/v1/limits").await?
    } else {
        client.patch("/v1/limits", &patch).await?
    };
    if args.json {
        print_json(&limits);
    } else {
        println!(
            "transfers:  at most {} at once (background jobs), {} per host",
            limits.max_transfers, limits.max_transfers_per_host
        );
        match limits.max_bytes_per_second {
            Some(cap) => println!("bandwidth:  at most {cap} bytes/s over all transfers"),
            None => println!("bandwidth:  no cap"),
        }
        println!(
            "time slice: {} s (jobs of one priority take turns)",
            limits.time_slice_secs
        );
        for (i, window) in limits.bandwidth_schedule.iter().enumerate() {
            let mark = if limits.in_force.window == Some(i) {
                "  (in force)"
            } else {
                ""
            };
            println!("window:     {window}{mark}");
        }
        let now = &limits.in_force;
        let cap = now
            .max_bytes_per_second
            .map_or("no cap".to_owned(), |c| format!("{c} bytes/s"));
        let paused = if now.background_paused {
            ", background jobs paused"
        } else {
            ""
        };
        let until = now
            .until
            .as_ref()
            .map_or(String::new(), |u| format!(" until {u}"));
        println!("now:        {cap}{paused}{until}");
    }
    Ok(exit::OK)
}

async fn set(client: &Client, args: SetArgs) -> Outcome {
    let notify_command = if args.no_notify_cmd {
        Some(None)
    } else {
        args.notify_cmd.map(|mut words| {
            let program = if words.is_empty() {
                String::new()
            } else {
                words.remove(0)
            };
            Some(json::Notify {
                program,
                args: words,
            })
        })
    };
    let patch = json::PatchJob {
        name: args.name,
        description: args.description,
        priority: args.priority,
        min_retry_delay_secs: args.retry_delay,
        no_progress_timeout_secs: args.no_progress_timeout,
        max_download_time_secs: args.max_download_time,
        parallel_files: args.parallel,
        max_bytes_per_second: if args.no_bandwidth_cap {
            Some(None)
        } else {
            args.max_bytes_per_second.map(Some)
        },
        notify_command,
    };
    if patch == json::PatchJob::default() {
        return Err(fail(exit::USAGE, "nothing to set: see `ferry set --help`"));
    }
    let job: json::Job = client
        .patch(&Client::job_path(&args.job, "")?, &patch)
        .await?;
    if args.json {
        print_json(&job);
    }
    Ok(exit::OK)
}

fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("ferry: {err}"),
    }
}

fn print_undeleted(undeleted: &[json::Failure]) {
    for f in undeleted {
        println!("  temp file not deleted: {} ({})", f.path, f.cause);
    }
}

fn print_complete(answer: &json::CompleteResult, as_json: bool) -> Result<(), Failure> {
    if as_json {
        print_json(answer);
        return Ok(());
    }
    // One line per file, thousands of them: written in one go, not one
    // write(2) each (stdout is line-buffered).
    use std::io::Write as _;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let written = (|| {
        writeln!(out, "{}", answer.result)?;
        for file in &answer.files {
            writeln!(out, "  {:<7} {}", file.outcome, file.local)?;
        }
        for f in &answer.undeleted {
            writeln!(out, "  temp file not deleted: {} ({})", f.path, f.cause)?;
        }
        out.flush()
    })();
    match written {
        // A reader that went away (`| head`) ends the listing quietly.
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(fail(
            exit::FAILED,
            format!("the listing could not be written: {err}"),
        )),
        _ => Ok(()),
    }
}

fn bytes_of(done: u64, total: Option<u64>) -> String {
    match total {
        Some(total) => format!("{} / {}", HumanBytes(done), HumanBytes(total)),
        None => format!("{} / ?", HumanBytes(done)),
    }
}

fn print_info(job: &json::Job) {
    println!("id:           {}", job.id);
    println!("name:         {}", job.name);
    if !job.description.is_empty() {
        println!("description:  {}", job.description);
    }
    println!("type:         {}", job.kind);
    println!("state:        {}", job.state);
    if let Some(waiting) = &job.waiting {
        println!("waiting:      {}", explain(waiting));
    }
    println!("priority:     {}", job.priority);
    println!("owner:        {}", job.owner);
    println!(
        "progress:     {}, {} / {} files",
        bytes_of(job.progress.bytes_transferred, job.progress.bytes_total),
        job.progress.files_transferred,
        job.progress.files_total
    );
    println!("created:      {}", job.times.created);
    println!("modified:     {}", job.times.modified);
    if let Some(t) = &job.times.transfer_completed {
        println!("transferred:  {t}");
    }
    if let Some(err) = &job.error {
        let file = err.file.map(|f| format!(" (file {f})")).unwrap_or_default();
        println!(
            "error:        {} {}: {}{file}",
            err.context, err.code, err.message
        );
    }
    println!("errors:       {}", job.error_count);
    println!(
        "retry:        delay {} s, no-progress timeout {} s, max download time {} s",
        job.min_retry_delay_secs, job.no_progress_timeout_secs, job.max_download_time_secs
    );
    println!("parallel:     {}", job.parallel_files);
    if let Some(cap) = job.max_bytes_per_second {
        println!("bandwidth:    at most {cap} bytes/s (the job's own cap)");
    }
    if let Some(cmd) = &job.notify_command {
        println!("notify:       {} {}", cmd.program, cmd.args.join(" "));
    }
    if job.commit_stalled {
        println!("commit:       stalled: some files could not be published; run complete again");
    }
    match &job.answer {
        Some(json::FinalAnswer::Complete(a)) => println!("answer:       complete: {}", a.result),
        Some(json::FinalAnswer::Cancel(a)) => println!("answer:       cancel: {}", a.result),
        None => {}
    }
    if let Some(files) = &job.files {
        println!("files:");
        print_files(files);
    }
}

/// "Why is my job waiting", in words.
fn explain(w: &json::Waiting) -> String {
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    match w.reason.as_str() {
        "suspended_by_user" => "suspended_by_user: run `ferry resume` to start it".into(),
        "no_files" => "no_files: add files, then resume".into(),
        "queued" => "queued: waiting for a transfer slot".into(),
        "waiting_for_slot" => format!(
            "waiting_for_slot: all {} transfer slots are taken (highest holder: {})",
            w.slots.unwrap_or(0),
            or(&w.behind)
        ),
        "host_busy" => format!(
            "host_busy: {} already has {} transfers",
            or(&w.host),
            w.limit.unwrap_or(0)
        ),
        "retry_at" => match &w.next_attempt {
            Some(at) => format!("retry_at {at} after {}", or(&w.error)),
            None => format!(
                "retry_at: when the host answers again, after {}",
                or(&w.error)
            ),
        },
        "error" => format!(
            "error {}: run `ferry resume` to retry, or cancel",
            or(&w.error)
        ),
        "schedule_window" => match &w.until {
            Some(until) => {
                format!("schedule_window: a bandwidth window pauses background jobs until {until}")
            }
            None => "schedule_window: a bandwidth window pauses background jobs".into(),
        },
        "throttled" => format!(
            "throttled: transferring, held to {} bytes/s by a bandwidth cap",
            w.max_bytes_per_second.unwrap_or(0)
        ),
        other => other.to_owned(),
    }
}

fn print_files(files: &[json::File]) {
    for f in files {
        let mark = if f.completed {
            "completed"
        } else if f.transferred {
            "transferred"
        } else {
            "pending"
        };
        println!(
            "  {:>3} {:<11} {:>22}  {} -> {}",
            f.id,
            mark,
            bytes_of(f.bytes_transferred, f.bytes_total),
            f.remote,
            f.local
        );
    }
}

/// An absolute, lexically normalised path (`.` and `..` folded) from the
/// current directory.
pub fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::from("/");
    for part in joined.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn update_bar(bar: &ProgressBar, job: &json::Job) {
    if let Some(total) = job.progress.bytes_total {
        bar.set_length(total);
    }
    bar.set_position(job.progress.bytes_transferred);
    let mut msg = format!(
        "{} ({}/{} files)",
        job.state, job.progress.files_transferred, job.progress.files_total
    );
    if let Some(err) = &job.error {
        msg.push_str(&format!(": {}", err.message));
    }
    bar.set_message(msg);
}

const POLL: Duration = Duration::from_millis(200);

/// Waits until the job's event stream says it is transferred or failed,
/// or `POLL` (the progress bar's refresh) went by; polls alone once the
/// stream is gone.
async fn wait_for_news(events: &mut Option<crate::client::Events>) {
    let Some(stream) = events else {
        actix_rt::time::sleep(POLL).await;
        return;
    };
    let deadline = std::time::Instant::now() + POLL;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match actix_rt::time::timeout(left, stream.next()).await {
            Err(_) => return,
            Ok(None) => {
                *events = None;
                return;
            }
            Ok(Some(name)) if name == "job_transferred" || name == "job_error" => return,
            Ok(Some(_)) => {}
        }
    }
}

/// Follows a job until it is transferred (0), fails (4), or is final.
async fn watch_one(client: &Client, id: &str) -> Outcome {
    let bar = ProgressBar::new(0).with_style(bar_style());
    bar.set_prefix(id.chars().take(8).collect::<String>());
    // The job's events end the wait at once when it is transferred or
    // fails (a poll every 200 ms cost 100 ms on average); polling alone
    // if the stream cannot be had.
    let mut events = client.events(id).await.ok();
    loop {
        let job = client.job_summary(id).await?;
        update_bar(&bar, &job);
        match job.state.as_str() {
            "transferred" | "acknowledged" => {
                bar.finish();
                return Ok(exit::OK);
            }
            "error" => {
                bar.abandon();
                let reason = job
                    .error
                    .map(|e| format!("{} {}: {}", e.context, e.code, e.message))
                    .unwrap_or_default();
                return Err(fail(exit::JOB_FAILED, format!("job {id} failed: {reason}")));
            }
            "cancelled" => {
                bar.abandon();
                return Err(fail(exit::JOB_FAILED, format!("job {id} was cancelled")));
            }
            "suspended" => {
                bar.abandon();
                return Err(fail(
                    exit::JOB_FAILED,
                    format!("job {id} is suspended: `ferry resume {id}`"),
                ));
            }
            _ => wait_for_news(&mut events).await,
        }
    }
}

/// Follows every active job of the caller until none is active.
async fn watch_all(client: &Client) -> Outcome {
    let multi = MultiProgress::new();
    let mut bars: Vec<(String, ProgressBar)> = Vec::new();
    loop {
        let mut failed = false;
        let list: json::JobList = client.get("/v1/jobs").await?;
        let mut active = false;
        for job in &list.jobs {
            let bar = match bars.iter().find(|(id, _)| *id == job.id) {
                Some((_, bar)) => bar.clone(),
                None => {
                    let bar = multi.add(ProgressBar::new(0).with_style(bar_style()));
                    bar.set_prefix(job.name.clone());
                    bars.push((job.id.clone(), bar.clone()));
                    bar
                }
            };
            update_bar(&bar, job);
            match job.state.as_str() {
                "queued" | "connecting" | "transferring" | "transient_error" => active = true,
                "error" => failed = true,
                _ => {}
            }
        }
        if !active {
            for (_, bar) in &bars {
                bar.finish();
            }
            return Ok(if failed { exit::JOB_FAILED } else { exit::OK });
        }
        actix_rt::time::sleep(POLL).await;
    }
}

/// The directory for `ferry get`'s job tags.
fn state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
                .join(".local/state")
        });
    base.join("ferry").join("get")
}

/// The name a URL is saved under: its last path segment, else
/// `index.html`.
fn file_name(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
        })
        .filter(|s| !s.is_empty() && s != "." && s != "..")
        .unwrap_or_else(|| "index.html".to_owned())
}

async fn get(client: &Client, args: GetArgs) -> Outcome {
    let start = std::time::Instant::now();
    let files: Vec<(String, PathBuf)> = match &args.dest {
        Some(dest) => {
            if args.urls.len() != 1 {
                return Err(fail(exit::USAGE, "--dest takes exactly one URL"));
            }
            args.urls
                .iter()
                .map(|u| (u.clone(), absolute(dest)))
                .collect()
        }
        None => {
            let dir = absolute(args.output_dir.as_deref().unwrap_or(Path::new(".")));
            args.urls
                .iter()
                .map(|u| (u.clone(), dir.join(file_name(u))))
                .collect()
        }
    };
    // The tag: who, which daemon, which files. The same command line finds
    // the same job again.
    let mut key = format!(
        "{}\n{}\n",
        rustix::process::getuid().as_raw(),
        client.address()
    );
    for (url, local) in &files {
        key.push_str(&format!("{url}\n{}\n", local.display()));
    }
    let tag = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, key.as_bytes())
        .simple()
        .to_string();
    let tag_file = state_dir().join(&tag);

    let description = format!("ferry get {tag}");
    let known = match std::fs::read_to_string(&tag_file) {
        // A run stopped while its job was being created: the job may
        // exist, under this command line's description.
        Ok(id) if id.trim() == CREATING => {
            let list: json::JobList = client.get("/v1/jobs").await?;
            let found = list.jobs.into_iter().find(|j| j.description == description);
            if let Some(job) = &found {
                record_tag(&tag_file, &job.id);
            }
            found
        }
        Ok(id) => match client.job_summary(id.trim()).await {
            Ok(job) => Some(job),
            Err(ClientError::Api { status: 404, .. } | ClientError::Input(_)) => None,
            Err(err) => return Err(err.into()),
        },
        Err(_) => None,
    };
    // Created here, resumed with its creation.
    let mut fresh = false;
    let job = match known {
        Some(job) if job.state == "acknowledged" => {
            eprintln!("ferry: job {} was already completed", job.id);
            if let Some(json::FinalAnswer::Complete(answer)) = &job.answer {
                print_complete(answer, args.json)?;
            }
            return Ok(exit::OK);
        }
        Some(job) if job.state != "cancelled" && job.progress.files_total > 0 => {
            eprintln!("ferry: resuming job {}", job.id);
            job
        }
        Some(job) if job.state != "cancelled" => {
            // Killed between create and add: finish setting it up.
            eprintln!("ferry: resuming job {}", job.id);
            add_get_files(client, &job.id, &files, args.parallel).await?;
            job
        }
        _ => {
            let mut body = json::CreateJob {
                name: format!("ferry get {}", file_name(&args.urls.join(" "))),
                kind: None,
                priority: Some(args.priority.clone()),
                description: Some(description.clone()),
                // Created with its files and parallelism, resumed: one
                // request and one durable write in the daemon, and never a
                // job without its files.
                files: Some(json::AddFiles::Many(add_file_list(&files))),
                properties: Some(json::PatchJob {
                    parallel_files: Some(args.parallel.clamp(1, 64)),
                    ..json::PatchJob::default()
                }),
                resume: true,
            };
            // Killed from here until the job's id is recorded, a rerun
            // looks for the job by its description.
            record_tag(&tag_file, CREATING);
            match client
                .post::<_, json::Job>("/v1/jobs?files=false", &body)
                .await
            {
                Ok(job) => {
                    record_tag(&tag_file, &job.id);
                    fresh = true;
                    job
                }
                // A daemon older than this client: the steps one by one.
                Err(ClientError::Api {
                    status: 400,
                    body: refusal,
                }) if refusal.message.contains("unknown field `files`") => {
                    (body.files, body.properties, body.resume) = (None, None, false);
                    let job: json::Job = client.post("/v1/jobs", &body).await?;
                    // Recorded at once: killed from here on, a rerun finds
                    // this job.
                    record_tag(&tag_file, &job.id);
                    if let Err(err) = add_get_files(client, &job.id, &files, args.parallel).await {
                        // Leave nothing half made behind.
                        let _: Result<json::CancelResult, _> =
                            client.action(&job.id, "cancel").await;
                        let _ = std::fs::remove_file(&tag_file);
                        return Err(err);
                    }
                    job
                }
                Err(err) => {
                    // Refused: no job was made.
                    if matches!(err, ClientError::Api { .. }) {
                        let _ = std::fs::remove_file(&tag_file);
                    }
                    return Err(err.into());
                }
            }
        }
    };
    if job.state != "transferred" {
        if !fresh {
            let _: json::Job = client.action(&job.id, "resume").await?;
        }
        watch_one(client, &job.id).await?;
    }
    let transferred = start.elapsed();
    match client
        .action::<json::CompleteResult>(&job.id, "complete")
        .await
    {
        Ok(answer) => print_complete(&answer, args.json)?,
        // Completed meanwhile (another `ferry complete`): its stored answer.
        Err(err) if err.code() == Some("invalid_state") => {
            let done = client.job_summary(&job.id).await?;
            match &done.answer {
                Some(json::FinalAnswer::Complete(answer)) => print_complete(answer, args.json)?,
                _ => return Err(err.into()),
            }
        }
        Err(err) => return Err(err.into()),
    }
    if args.timings {
        eprintln!(
            "ferry: transferred after {:.3} s, complete after {:.3} s",
            transferred.as_secs_f64(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(exit::OK)
}

/// Adds `ferry get`'s files to its job and sets its parallelism.
async fn add_get_files(
    client: &Client,
    id: &str,
    files: &[(String, PathBuf)],
    parallel: u32,
) -> Result<(), Failure> {
    let specs = add_file_list(files);
    let path = Client::job_path(id, "")?;
    let files_path = format!("{path}/files");
    let parallel = json!({"parallel_files": parallel.clamp(1, 64)});
    // Both at once: independent, and their synced writes can share one
    // fsync in the daemon's store.
    let (added, set) = futures_util::future::join(
        client.post::<_, json::FileList>(&files_path, &specs),
        client.patch::<_, json::Job>(&path, &parallel),
    )
    .await;
    added?;
    set?;
    Ok(())
}

/// What `ferry get`'s tag file holds while its job is being created.
const CREATING: &str = "creating";

/// `ferry get`'s files as the API takes them.
fn add_file_list(files: &[(String, PathBuf)]) -> Vec<json::AddFile> {
    files
        .iter()
        .map(|(url, local)| json::AddFile {
            remote: url.clone(),
            local: local.to_string_lossy().into_owned(),
        })
        .collect()
}

/// Writes `ferry get`'s tag file atomically (temp file, then rename).
fn record_tag(tag_file: &Path, id: &str) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = tag_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temp = tag_file.with_extension("tmp");
        std::fs::write(&temp, id)?;
        std::fs::rename(&temp, tag_file)
    };
    if let Err(err) = write() {
        eprintln!(
            "ferry: cannot record the job in {} ({err}); a rerun starts over",
            tag_file.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_and_normal() {
        assert_eq!(absolute(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(absolute(Path::new("/../x")), PathBuf::from("/x"));
        let cwd = std::env::current_dir().unwrap_or_default();
        assert_eq!(absolute(Path::new("f")), cwd.join("f"));
    }

    #[test]
    fn urls_name_their_files() {
        assert_eq!(file_name("http://h/a/b.iso?x=1"), "b.iso");
        assert_eq!(file_name("http://h/"), "index.html");
        assert_eq!(file_name("http://h"), "index.html");
        assert_eq!(file_name("not a url"), "index.html");
    }
}

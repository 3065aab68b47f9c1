//! The load-test harness: a scenario (jobs, files, sizes, concurrency,
//! fault rates, restarts) run against the embedded engine and the origin,
//! every final file verified byte for byte, and a [`Report`] of what it
//! cost.
//!
//! The run, in order: the origin serves every file (generated content, no
//! disk); `jobs` jobs are created by `creators` concurrent callers (the
//! durable creation rate); each gets its files, its settings and Resume; then
//! the harness follows the engine's events: a TRANSFERRED job is completed
//! (unless `complete = false`) and its files are checked against the
//! generator. Restarts shut the engine down and open the same data dir again
//! at evenly spaced points of the run (by jobs TRANSFERRED, while others
//! still run); jobs go on by themselves. Any lost or corrupt file fails the run.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, Instant},
};

use ferry_actors::{Engine, EngineConfig, EngineError, EventKind};
use ferry_core::{CompleteResult, FileSpec, JobId, JobSpec, Principal, Priority, Property};
use futures_util::{StreamExt as _, stream::FuturesUnordered};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::origin::{Origin, RandomFaults};

/// What to run. Every field has a default; a TOML file and flags override.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Jobs to create.
    pub jobs: usize,
    /// Files per job.
    pub files_per_job: usize,
    /// File sizes: one size (`64KiB`) or a range drawn uniformly
    /// (`16KiB..1MiB`).
    pub size: String,
    /// Files of one job transferred at once (BITS: 1; peers use 8).
    pub parallel_files: u32,
    /// Transfers at once across background jobs.
    pub max_transfers: usize,
    /// Job priorities: one (`normal`) or `mixed` (foreground, high, normal,
    /// low in turn).
    pub priority: String,
    /// Concurrent callers creating the jobs.
    pub creators: usize,
    /// Fraction of bodies reset mid-way.
    pub reset_rate: f64,
    /// Fraction of requests answered 503.
    pub unavailable_rate: f64,
    /// The `Retry-After` of those 503s, in seconds (none if 0).
    pub retry_after_secs: u64,
    /// Fraction of requests answered without range support (200, whole
    /// entity: a resume starts over).
    pub ignore_range_rate: f64,
    /// Fraction of bodies that stall at a random point for `stall_ms`.
    pub stall_rate: f64,
    /// How long a stall lasts, in milliseconds (longer than the engine's
    /// idle timeout, 60 s, and the transfer times out and resumes).
    pub stall_ms: u64,
    /// Fraction of requests before which the file's content changes (new
    /// bytes, ETag and Last-Modified): a resume must start over, never
    /// splice two versions.
    pub change_rate: f64,
    /// An external origin (`http://127.0.0.1:8080/data`) serving the files
    /// that `ferry-bench --write-dataset DIR` writes, instead of the built-in
    /// one; fault rates and the bandwidth cap need the built-in origin.
    pub origin: String,
    /// The `ferry` binary: run it as a daemon (`ferry serve`) and drive it
    /// through its HTTP API instead of an embedded engine; `restarts` are
    /// then SIGKILLs at random moments, each followed by a new daemon.
    pub daemon: String,
    /// Bytes per second of each connection (`4MiB`), none if empty.
    pub bandwidth: String,
    /// Complete each job once TRANSFERRED and verify its files (without it
    /// nothing is verified: the run only measures transfers).
    pub complete: bool,
    /// Engine restarts during the run (with `daemon`: SIGKILLs).
    pub restarts: u32,
    /// Progress checkpoints (off: the cost of persistence is measured
    /// against a run without them).
    pub checkpoints: bool,
    /// Minimum retry delay of each job, in milliseconds.
    pub retry_delay_ms: u64,
    /// Seed of sizes and fault draws.
    pub seed: u64,
    /// Longest run, in seconds: jobs not done by then count as lost.
    pub timeout_secs: u64,
    /// Resume the jobs. Off: the files stay queued, the engine is restarted
    /// `restarts` times with them (memory and restore time of a large
    /// backlog), and nothing is transferred.
    pub resume: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            jobs: 16,
            files_per_job: 16,
            size: "256KiB".into(),
            parallel_files: 4,
            max_transfers: 8,
            priority: "normal".into(),
            creators: 64,
            reset_rate: 0.0,
            unavailable_rate: 0.0,
            retry_after_secs: 0,
            ignore_range_rate: 0.0,
            stall_rate: 0.0,
            stall_ms: 2_000,
            change_rate: 0.0,
            origin: String::new(),
            daemon: String::new(),
            bandwidth: String::new(),
            complete: true,
            restarts: 0,
            checkpoints: true,
            retry_delay_ms: 100,
            seed: 1,
            timeout_secs: 600,
            resume: true,
        }
    }
}

/// Why a run could not be carried out (a lost file is a [`Report`] field,
/// not an error).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The scenario is unusable.
    #[error("scenario: {0}")]
    Scenario(String),
    /// The engine failed.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// Local files.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Parses `64KiB`, `16MiB`, `1GiB`, `1000` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 64KiB, 16MiB, 1GiB)"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    number
        .checked_mul(scale)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

/// A size range `a..b` (or one size).
fn parse_sizes(text: &str) -> Result<(u64, u64), String> {
    match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse_size(a)?, parse_size(b)?);
            if a > b {
                return Err(format!("{text:?}: the range is empty"));
            }
            Ok((a, b))
        }
        None => parse_size(text).map(|n| (n, n)),
    }
}

fn priority_of(scenario: &Scenario, job: usize) -> Result<Priority, String> {
    let all = [
        Priority::Foreground,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];
    match scenario.priority.as_str() {
        "mixed" => Ok(all
            .get(job % all.len())
            .copied()
            .unwrap_or(Priority::Normal)),
        "foreground" => Ok(Priority::Foreground),
        "high" => Ok(Priority::High),
        "normal" => Ok(Priority::Normal),
        "low" => Ok(Priority::Low),
        other => Err(format!("unknown priority {other:?}")),
    }
}

/// splitmix64: the scenario's deterministic draws.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Percentiles of a latency, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p90_ms: ms(histogram.value_at_quantile(0.9)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The scenario run.
    pub scenario: Scenario,
    /// Files in the run.
    pub files: u64,
    /// Bytes of all files.
    pub bytes: u64,
    /// From the first Resume to the last job done (Complete answered, or
    /// TRANSFERRED without Complete); verifying files is not counted.
    pub wall_seconds: f64,
    /// `bytes / wall_seconds`.
    pub bytes_per_second: f64,
    /// `files / wall_seconds`.
    pub files_per_second: f64,
    /// Durable job creations per second (with `creators` callers).
    pub jobs_created_per_second: f64,
    /// Resume → TRANSFERRED, per job.
    pub time_to_transferred: Latency,
    /// Resume → Complete answered, per job.
    pub time_to_complete: Latency,
    /// The Complete call alone, per job.
    pub complete_latency: Latency,
    /// Process CPU time (user + system), all threads, origin included.
    pub cpu_seconds: f64,
    /// Peak resident memory of the process, origin included.
    pub peak_rss_bytes: u64,
    /// Group commits of the store (summed over restarts).
    pub store_writes: u64,
    /// Transfer errors by class (`transient`, `fatal`, ...), summed over
    /// restarts.
    pub errors_by_class: HashMap<String, u64>,
    /// Engine restarts carried out.
    pub restarts: u32,
    /// Files not at their final names after Complete, or jobs in ERROR.
    pub lost: u64,
    /// Files whose bytes differ from what the origin served.
    pub corrupt: u64,
    /// The run hit `timeout_secs` (its unfinished jobs count as lost).
    pub timed_out: bool,
    /// Seconds each engine start took (the first, then one per restart):
    /// opening the store and restoring every job. With a daemon: from
    /// spawning `ferry serve` to its first answer.
    pub engine_start_seconds: Vec<f64>,
    /// `embedded` or `daemon`.
    pub mode: String,
    /// Resume → TRANSFERRED per job, by the job's priority.
    pub time_to_transferred_by_priority: BTreeMap<String, Latency>,
    /// Content changes the origin made (`change_rate`).
    pub origin_changes: u64,
    /// Bytes received so far, sampled about every 100 ms: `[seconds since
    /// the first Resume, bytes]` (embedded: every byte received, retries
    /// included; daemon: the jobs' progress, so it may step back after a
    /// SIGKILL).
    pub timeline: Vec<[f64; 2]>,
    /// Every job's Resume → TRANSFERRED in ms, with its priority, for the
    /// plot (not in the JSON).
    #[serde(skip)]
    pub samples: Vec<(String, f64)>,
}

impl Report {
    /// A report of `scenario` run as `plan` in `mode`, whose jobs took
    /// `create_seconds` to create.
    pub(crate) fn begin(scenario: &Scenario, plan: &Plan, mode: &str, create_seconds: f64) -> Self {
        Self {
            scenario: scenario.clone(),
            mode: mode.into(),
            files: plan.sizes.len() as u64,
            bytes: plan.total_bytes,
            jobs_created_per_second: scenario.jobs as f64 / create_seconds.max(1e-9),
            ..Self::default()
        }
    }

    /// Whether every file arrived intact.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.corrupt == 0
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let mb = |b: f64| b / (1024.0 * 1024.0);
        let lat = |name: &str, l: &Latency| {
            format!(
                "{name:<22} p50 {:>9.1} ms  p90 {:>9.1} ms  p99 {:>9.1} ms  max {:>9.1} ms  (n={})\n",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
            )
        };
        let mut errors: Vec<_> = self.errors_by_class.iter().collect();
        errors.sort();
        let errors = errors
            .iter()
            .map(|(class, n)| format!("{class}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut out = String::new();
        out.push_str(&format!(
            "{}: files {}  bytes {:.1} MiB  wall {:.2} s  {} {}{}\n",
            self.mode,
            self.files,
            mb(self.bytes as f64),
            self.wall_seconds,
            if self.mode == "daemon" {
                "kills"
            } else {
                "restarts"
            },
            self.restarts,
            if self.origin_changes > 0 {
                format!("  content changes {}", self.origin_changes)
            } else {
                String::new()
            }
        ));
        out.push_str(&format!(
            "throughput {:.1} MiB/s  {:.1} files/s  job creation {:.0} jobs/s\n",
            mb(self.bytes_per_second),
            self.files_per_second,
            self.jobs_created_per_second
        ));
        out.push_str(&lat("time to TRANSFERRED", &self.time_to_transferred));
        if self.time_to_transferred_by_priority.len() > 1 {
            for (priority, latency) in &self.time_to_transferred_by_priority {
                out.push_str(&lat(&format!("  {priority}"), latency));
            }
        }
        out.push_str(&lat("time to Complete", &self.time_to_complete));
        out.push_str(&lat("Complete call", &self.complete_latency));
        out.push_str(&format!(
            "cpu {:.2} s  peak RSS {:.1} MiB  store writes {}  errors {}\n",
            self.cpu_seconds,
            mb(self.peak_rss_bytes as f64),
            self.store_writes,
            if errors.is_empty() {
                "none".into()
            } else {
                errors
            }
        ));
        let starts: Vec<String> = self
            .engine_start_seconds
            .iter()
            .map(|s| format!("{:.0} ms", s * 1000.0))
            .collect();
        out.push_str(&format!("engine starts {}\n", starts.join(", ")));
        out.push_str(&format!(
            "lost {}  corrupt {}{}  => {}\n",
            self.lost,
            self.corrupt,
            if self.timed_out { "  (timed out)" } else { "" },
            if self.passed() { "PASS" } else { "FAIL" }
        ));
        out
    }
}

/// Counters read from the engine's metrics text.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) bytes: f64,
    store_writes: f64,
    errors: HashMap<String, f64>,
}

impl Counters {
    /// Adds a finished engine's counters.
    pub(crate) fn add(&mut self, other: Self) {
        self.bytes += other.bytes;
        self.store_writes += other.store_writes;
        for (class, n) in other.errors {
            *self.errors.entry(class).or_default() += n;
        }
    }

    /// Store writes and errors into the report.
    pub(crate) fn fill(&self, report: &mut Report) {
        report.store_writes = self.store_writes as u64;
        for (class, n) in &self.errors {
            *report.errors_by_class.entry(class.clone()).or_default() += *n as u64;
        }
    }
}

pub(crate) fn counters(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if name == "ferry_transferred_bytes_total" {
            c.bytes = value;
        } else if name == "ferry_store_write_seconds_count" {
            c.store_writes = value;
        } else if let Some(labels) = name.strip_prefix("ferry_transfer_errors_total{") {
            let class = labels
                .split(',')
                .find_map(|l| l.strip_prefix("class=\""))
                .map(|v| v.trim_end_matches(['"', '}']).to_owned())
                .unwrap_or_default();
            *c.errors.entry(class).or_default() += value;
        }
    }
    c
}

fn histogram() -> Result<Histogram<u64>, HarnessError> {
    // 1 µs to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|err| HarnessError::Scenario(format!("histogram: {err}")))
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    histogram.saturating_record(micros);
}

/// The CPU seconds and peak RSS of `who`: this process so far
/// (`RUSAGE_SELF`), or every child reaped (`RUSAGE_CHILDREN`: their summed
/// CPU, the largest peak RSS of one).
pub(crate) fn usage(who: nix::sys::resource::UsageWho) -> (f64, u64) {
    use nix::sys::resource::getrusage;
    match getrusage(who) {
        Ok(u) => {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            let rss = u64::try_from(u.max_rss()).unwrap_or(0) * 1024;
            (secs(u.user_time()) + secs(u.system_time()), rss)
        }
        Err(_) => (0.0, 0),
    }
}

/// The scenario expanded: every file's size, every job's priority.
pub(crate) struct Plan {
    /// By file, job after job.
    pub(crate) sizes: Vec<u64>,
    pub(crate) priorities: Vec<Priority>,
    pub(crate) total_bytes: u64,
    /// The built-in origin's per-connection cap.
    pub(crate) bandwidth: Option<u64>,
}

impl Plan {
    /// Checks `scenario` and draws its sizes.
    pub(crate) fn new(scenario: &Scenario) -> Result<Self, HarnessError> {
        let bad = |m: &str| HarnessError::Scenario(m.to_owned());
        let (min_size, max_size) = parse_sizes(&scenario.size).map_err(HarnessError::Scenario)?;
        if scenario.jobs == 0 || scenario.files_per_job == 0 {
            return Err(bad("no jobs or no files"));
        }
        let rates = [
            scenario.reset_rate,
            scenario.unavailable_rate,
            scenario.ignore_range_rate,
            scenario.stall_rate,
        ];
        if rates.iter().any(|r| !(0.0..1.0).contains(r)) || rates.iter().sum::<f64>() >= 1.0 {
            return Err(bad("fault rates are fractions below 1 together"));
        }
        if !(0.0..1.0).contains(&scenario.change_rate) {
            return Err(bad("change_rate is a fraction below 1"));
        }
        let bandwidth = match scenario.bandwidth.trim() {
            "" => None,
            text => Some(parse_size(text).map_err(HarnessError::Scenario)?),
        };
        let faults = rates.iter().any(|r| *r > 0.0) || scenario.change_rate > 0.0;
        if !scenario.origin.is_empty() {
            if faults || bandwidth.is_some() {
                return Err(bad(
                    "fault rates and the bandwidth cap need the built-in origin (no `origin`)",
                ));
            }
            url::Url::parse(&scenario.origin)
                .map_err(|err| HarnessError::Scenario(format!("origin: {err}")))?;
        }
        if !scenario.daemon.is_empty() && !scenario.resume {
            return Err(bad(
                "a queued backlog (resume = false) needs the embedded engine",
            ));
        }
        let priorities = (0..scenario.jobs)
            .map(|j| priority_of(scenario, j))
            .collect::<Result<Vec<_>, _>>()
            .map_err(HarnessError::Scenario)?;
        let span = max_size - min_size + 1;
        let sizes: Vec<u64> = (0..scenario.jobs * scenario.files_per_job)
            .map(|n| min_size + mix(scenario.seed, n as u64) % span)
            .collect();
        Ok(Self {
            total_bytes: sizes.iter().sum(),
            sizes,
            priorities,
            bandwidth,
        })
    }

    /// The origin path of file `f` of job `j`.
    pub(crate) fn path(j: usize, f: usize) -> String {
        format!("/j{j}/f{f}")
    }

    /// The size of file `f` of job `j`.
    pub(crate) fn size(&self, scenario: &Scenario, j: usize, f: usize) -> u64 {
        self.sizes
            .get(j * scenario.files_per_job + f)
            .copied()
            .unwrap_or(1)
    }

    /// Every file of job `j`: (origin path, size).
    pub(crate) fn files(&self, scenario: &Scenario, j: usize) -> Vec<(String, u64)> {
        (0..scenario.files_per_job)
            .map(|f| (Self::path(j, f), self.size(scenario, j, f)))
            .collect()
    }

    /// Every file of job `j`: (origin path, final name under `downloads`).
    pub(crate) fn locals(
        scenario: &Scenario,
        j: usize,
        downloads: &Path,
    ) -> Vec<(String, PathBuf)> {
        (0..scenario.files_per_job)
            .map(|f| (Self::path(j, f), downloads.join(format!("j{j}-f{f}"))))
            .collect()
    }
}

/// Writes the files of `scenario` under `dir` (`j0/f0`, ...), as the
/// built-in origin would serve them: a dataset for an external origin
/// (`origin = "http://host/prefix"` with nginx's root at `dir` under
/// `prefix`). Returns the files and bytes written.
pub fn write_dataset(scenario: &Scenario, dir: &Path) -> Result<(u64, u64), HarnessError> {
    let mut check = scenario.clone();
    check.origin = String::new();
    let plan = Plan::new(&check)?;
    let (mut files, mut bytes) = (0, 0);
    for j in 0..scenario.jobs {
        std::fs::create_dir_all(dir.join(format!("j{j}")))?;
        for (path, size) in plan.files(scenario, j) {
            let file = dir.join(path.trim_start_matches('/'));
            crate::origin::write_file(&path, size, &file)?;
            files += 1;
            bytes += size;
        }
    }
    Ok((files, bytes))
}

/// Where the files come from.
pub(crate) enum Source {
    /// The built-in origin, in this process.
    Builtin(Origin),
    /// Another server with the files of [`write_dataset`] under `base`.
    External {
        base: String,
        sizes: HashMap<String, u64>,
    },
}

impl Source {
    /// Starts the built-in origin with every file and the scenario's faults,
    /// or names the external one.
    pub(crate) fn start(scenario: &Scenario, plan: &Plan) -> Result<Self, HarnessError> {
        let all = (0..scenario.jobs).flat_map(|j| plan.files(scenario, j));
        if !scenario.origin.is_empty() {
            return Ok(Self::External {
                base: scenario.origin.trim_end_matches('/').to_owned(),
                sizes: all.collect(),
            });
        }
        let origin = Origin::start()?;
        origin.cap_bandwidth(plan.bandwidth);
        for (path, size) in all {
            origin.add(&path, size);
        }
        let faults = RandomFaults {
            reset: scenario.reset_rate,
            unavailable: scenario.unavailable_rate,
            retry_after: (scenario.retry_after_secs > 0).then_some(scenario.retry_after_secs),
            ignore_range: scenario.ignore_range_rate,
            stall: scenario.stall_rate,
            stall_for: Duration::from_millis(scenario.stall_ms),
            change: scenario.change_rate,
            seed: scenario.seed,
        };
        if faults.reset + faults.unavailable + faults.ignore_range + faults.stall + faults.change
            > 0.0
        {
            origin.random_faults(Some(faults));
        }
        Ok(Self::Builtin(origin))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        match self {
            Self::Builtin(origin) => origin.url(path),
            Self::External { base, .. } => format!("{base}{path}"),
        }
    }

    /// The seed and size of what `path` serves now.
    pub(crate) fn content_of(&self, path: &str) -> Option<(u64, u64)> {
        match self {
            Self::Builtin(origin) => origin.content_of(path),
            Self::External { sizes, .. } => sizes
                .get(path)
                .map(|size| (crate::origin::seed_of(path), *size)),
        }
    }

    pub(crate) fn changes(&self) -> u64 {
        match self {
            Self::Builtin(origin) => origin.changes(),
            Self::External { .. } => 0,
        }
    }
}

/// Reads every `(content, file)` back and compares it with the generator:
/// (lost, corrupt). Blocking.
pub(crate) fn verify(checks: Vec<(Option<(u64, u64)>, PathBuf)>) -> (u64, u64) {
    let (mut lost, mut corrupt) = (0, 0);
    for (content, local) in checks {
        let Some((seed, size)) = content else {
            lost += 1;
            continue;
        };
        match crate::origin::verify_file(seed, size, &local) {
            Ok(None) => {}
            Ok(Some(diff)) => {
                tracing::error!(message = "Corrupt file.", file = %local.display(), %diff);
                corrupt += 1;
            }
            Err(err) => {
                tracing::error!(message = "Lost file.", file = %local.display(), error = %err);
                lost += 1;
            }
        }
    }
    (lost, corrupt)
}

/// Verifies `files` of a completed job off the current thread.
pub(crate) async fn verify_job(source: &Source, files: &[(String, PathBuf)]) -> (u64, u64) {
    let checks: Vec<_> = files
        .iter()
        .map(|(path, local)| (source.content_of(path), local.clone()))
        .collect();
    let n = checks.len() as u64;
    actix_rt::task::spawn_blocking(move || verify(checks))
        .await
        .unwrap_or((n, 0))
}

/// The latencies and samples a run collects, whatever drives the engine.
pub(crate) struct Recorder {
    to_transferred: Histogram<u64>,
    by_priority: BTreeMap<String, Histogram<u64>>,
    to_complete: Histogram<u64>,
    complete_call: Histogram<u64>,
    timeline: Vec<[f64; 2]>,
    samples: Vec<(String, f64)>,
    started: Instant,
}

impl Recorder {
    pub(crate) fn new(started: Instant) -> Result<Self, HarnessError> {
        Ok(Self {
            to_transferred: histogram()?,
            by_priority: BTreeMap::new(),
            to_complete: histogram()?,
            complete_call: histogram()?,
            timeline: Vec::new(),
            samples: Vec::new(),
            started,
        })
    }

    pub(crate) fn transferred(&mut self, priority: Priority, elapsed: Duration) {
        record(&mut self.to_transferred, elapsed);
        let name = priority.as_str().to_owned();
        if !self.by_priority.contains_key(&name)
            && let Ok(h) = histogram()
        {
            self.by_priority.insert(name.clone(), h);
        }
        if let Some(h) = self.by_priority.get_mut(&name) {
            record(h, elapsed);
        }
        self.samples.push((name, elapsed.as_secs_f64() * 1000.0));
    }

    pub(crate) fn completed(&mut self, call: Duration, total: Duration) {
        record(&mut self.complete_call, call);
        record(&mut self.to_complete, total);
    }

    /// Bytes received so far (at most one sample per 100 ms).
    pub(crate) fn progress(&mut self, bytes: f64) {
        let t = self.started.elapsed().as_secs_f64();
        if self.timeline.last().is_none_or(|[last, _]| t - last >= 0.1) {
            self.timeline.push([t, bytes]);
        }
    }

    /// Fills the report's latencies and rates.
    pub(crate) fn finish(self, report: &mut Report) {
        report.time_to_transferred = Latency::of(&self.to_transferred);
        report.time_to_complete = Latency::of(&self.to_complete);
        report.complete_latency = Latency::of(&self.complete_call);
        report.time_to_transferred_by_priority = self
            .by_priority
            .iter()
            .map(|(name, h)| (name.clone(), Latency::of(h)))
            .collect();
        report.timeline = self.timeline;
        report.samples = self.samples;
        report.bytes_per_second = report.bytes as f64 / report.wall_seconds.max(1e-9);
        report.files_per_second = report.files as f64 / report.wall_seconds.max(1e-9);
    }
}

/// A progress bar over `total` bytes on stderr.
pub(crate) fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn engine_config(scenario: &Scenario, data: &Path) -> EngineConfig {
    let mut config = EngineConfig::new(data);
    config.core.retry_delay_floor = Duration::ZERO;
    config.max_transfers = scenario.max_transfers.max(1);
    config.max_transfers_per_host = scenario.max_transfers.max(1);
    if !scenario.checkpoints {
        config.checkpoint_bytes = u64::MAX;
        config.checkpoint_interval = Duration::from_secs(3600 * 24);
    }
    config
}

/// One job's progress through the run.
struct Tracked {
    /// (origin path, final name) of each file.
    files: Vec<(String, PathBuf)>,
    priority: Priority,
    resumed: Instant,
    transferred: bool,
    done: bool,
}

/// Runs `scenario` in `dir` (the store and the downloads go under it), with
/// a progress bar on stderr when `progress`: against an embedded engine, or
/// against a `ferry serve` daemon when the scenario names one. Must run on
/// an actix System.
pub async fn run(scenario: &Scenario, dir: &Path, progress: bool) -> Result<Report, HarnessError> {
    let plan = Plan::new(scenario)?;
    if !scenario.daemon.is_empty() {
        return crate::daemon::run(scenario, &plan, dir, progress).await;
    }
    let source = Rc::new(Source::start(scenario, &plan)?);
    let data = dir.join("store");
    let downloads = dir.join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let mut starts = Vec::new();
    let opened = Instant::now();
    let mut engine = Engine::start(engine_config(scenario, &data)).await?;
    starts.push(opened.elapsed().as_secs_f64());
    let me = Principal::user("bench");

    // Durable creation, `creators` callers at once.
    let created_at = Instant::now();
    let mut ids: Vec<Option<JobId>> = vec![None; scenario.jobs];
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    while next < scenario.jobs || !pending.is_empty() {
        while next < scenario.jobs && pending.len() < scenario.creators.max(1) {
            let (engine, me, j) = (engine.clone(), me.clone(), next);
            let mut spec = JobSpec::download(format!("bench-{j}"));
            spec.priority = plan.priorities.get(j).copied().unwrap_or(Priority::Normal);
            pending.push(async move { (j, engine.create_job(&me, spec).await) });
            next += 1;
        }
        if let Some((j, id)) = pending.next().await
            && let Some(slot) = ids.get_mut(j)
        {
            *slot = Some(id?);
        }
    }
    let create_seconds = created_at.elapsed().as_secs_f64();
    let ids: Vec<JobId> = ids.into_iter().flatten().collect();

    // Files, settings, Resume.
    let mut tracked: HashMap<JobId, Tracked> = HashMap::new();
    for (j, id) in ids.iter().enumerate() {
        let files = Plan::locals(scenario, j, &downloads);
        let specs = files
            .iter()
            .map(|(path, local)| FileSpec::new(source.url(path), local.to_string_lossy()))
            .collect();
        engine.add_files(&me, *id, specs).await?;
        let props = vec![
            Property::ParallelFiles(scenario.parallel_files.max(1)),
            Property::MinRetryDelay(Duration::from_millis(scenario.retry_delay_ms)),
        ];
        engine.set_all(&me, *id, props).await?;
        tracked.insert(
            *id,
            Tracked {
                files,
                priority: plan.priorities.get(j).copied().unwrap_or(Priority::Normal),
                resumed: Instant::now(),
                transferred: false,
                done: false,
            },
        );
    }
    let mut report = Report::begin(scenario, &plan, "embedded", create_seconds);
    if !scenario.resume {
        // A backlog: restart with it, measure, stop.
        for _ in 0..scenario.restarts {
            engine = restart(engine, scenario, &data, &mut starts).await?;
        }
        engine.shutdown().await?;
        let (cpu, rss) = usage(nix::sys::resource::UsageWho::RUSAGE_SELF);
        report.restarts = scenario.restarts;
        report.cpu_seconds = cpu;
        report.peak_rss_bytes = rss;
        report.engine_start_seconds = starts;
        return Ok(report);
    }
    // The clock runs from the first Resume.
    let mut events = engine.subscribe().await?;
    let started = Instant::now();
    for id in &ids {
        if let Some(t) = tracked.get_mut(id) {
            t.resumed = Instant::now();
        }
        engine.resume(&me, *id).await?;
    }
    // When the last job was done (Complete answered, or TRANSFERRED without
    // Complete): verification afterwards is not part of the run's time.
    let mut finished = started;
    let bar = progress.then(|| progress_bar(plan.total_bytes));
    let mut recorder = Recorder::new(started)?;
    // Counters of engines already shut down (each run starts at zero).
    let mut past = Counters::default();
    let mut now_counters = Counters::default();
    let mut completions = FuturesUnordered::new();
    let mut remaining: HashSet<JobId> = ids.iter().copied().collect();
    let deadline = started + Duration::from_secs(scenario.timeout_secs.max(1));
    let mut last_read = Instant::now();
    while !remaining.is_empty() || !completions.is_empty() {
        if Instant::now() >= deadline {
            tracing::error!(message = "Timed out.", jobs_left = remaining.len());
            for job in &remaining {
                report.lost += tracked.get(job).map_or(0, |t| t.files.len() as u64);
            }
            report.timed_out = true;
            break;
        }
        let transferred_jobs = tracked.values().filter(|t| t.transferred || t.done).count();
        let due = (report.restarts as usize + 1) * scenario.jobs / (scenario.restarts as usize + 1);
        let restart_due = report.restarts < scenario.restarts
            && transferred_jobs >= due.max(1)
            && !remaining.is_empty();
        let woke = {
            let tick = actix_rt::time::timeout(Duration::from_millis(100), events.next());
            if completions.is_empty() {
                // An empty set is "ready" with nothing: wait for events only.
                Woke::Event(tick.await)
            } else {
                let completion = completions.next();
                futures_util::pin_mut!(tick);
                match futures_util::future::select(tick, completion).await {
                    futures_util::future::Either::Left((event, _)) => Woke::Event(event),
                    futures_util::future::Either::Right((done, _)) => Woke::Done(done),
                }
            }
        };
        match woke {
            Woke::Event(Ok(Some(event))) => {
                let Some(job) = tracked.get_mut(&event.job) else {
                    continue;
                };
                match event.kind {
                    // A restart is due: no new Complete until it is done (the
                    // new engine replays the TRANSFERRED jobs).
                    EventKind::JobTransferred if restart_due => {}
                    EventKind::JobTransferred if !job.transferred => {
                        job.transferred = true;
                        recorder.transferred(job.priority, job.resumed.elapsed());
                        if scenario.complete {
                            completions.push(complete_and_verify(
                                engine.clone(),
                                me.clone(),
                                event.job,
                                job.files.clone(),
                                job.resumed,
                                source.clone(),
                            ));
                        } else {
                            job.done = true;
                            finished = Instant::now();
                            remaining.remove(&event.job);
                        }
                    }
                    EventKind::JobError if !job.done => {
                        // Only transient faults are injected: an ERROR loses
                        // the job's files.
                        job.done = true;
                        report.lost += job.files.len() as u64;
                        remaining.remove(&event.job);
                    }
                    _ => {}
                }
            }
            Woke::Event(Ok(None)) => {
                events = engine.subscribe().await?;
            }
            Woke::Event(Err(_)) => {}
            Woke::Done(Some(done)) => {
                let (job, outcome) = done;
                match outcome {
                    Completion::Done {
                        lost,
                        corrupt,
                        call,
                        total,
                        answered,
                    } => {
                        recorder.completed(call, total);
                        report.lost = report.lost.saturating_add(lost);
                        report.corrupt = report.corrupt.saturating_add(corrupt);
                        finished = finished.max(answered);
                        if let Some(t) = tracked.get_mut(&job) {
                            t.done = true;
                        }
                        remaining.remove(&job);
                    }
                    // The engine restarted under it: the replayed
                    // TRANSFERRED event completes it again.
                    Completion::Retry => {
                        if let Some(t) = tracked.get_mut(&job) {
                            t.transferred = false;
                        }
                    }
                }
            }
            Woke::Done(None) => {}
        }
        // The metrics ask every job for its state: once per tick at most.
        if last_read.elapsed() >= Duration::from_millis(100) {
            last_read = Instant::now();
            now_counters = counters(&engine.metrics_text().await?);
            let received = past.bytes + now_counters.bytes;
            recorder.progress(received);
            if let Some(bar) = &bar {
                bar.set_position((received as u64).min(plan.total_bytes));
                bar.set_message(format!("{} jobs left", remaining.len()));
            }
        }
        // Restarts at evenly spaced points of the run: after every
        // `jobs / (restarts + 1)` jobs TRANSFERRED (the others are still
        // running), when no Complete is under way.
        if restart_due && completions.is_empty() {
            now_counters = counters(&engine.metrics_text().await?);
            past.add(std::mem::take(&mut now_counters));
            engine = restart(engine, scenario, &data, &mut starts).await?;
            events = engine.subscribe().await?;
            report.restarts += 1;
            for job in tracked.values_mut().filter(|t| !t.done) {
                job.transferred = false;
            }
        }
    }
    if !report.timed_out {
        // The last counters, for the report (the loop reads them per tick).
        now_counters = counters(&engine.metrics_text().await?);
        recorder.progress(past.bytes + now_counters.bytes);
    } else {
        finished = Instant::now();
    }
    report.wall_seconds = finished.duration_since(started).as_secs_f64();
    report.engine_start_seconds = starts;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    recorder.finish(&mut report);
    past.add(now_counters);
    past.fill(&mut report);
    report.origin_changes = source.changes();
    engine.shutdown().await?;
    let (cpu, rss) = usage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    report.cpu_seconds = cpu;
    report.peak_rss_bytes = rss;
    Ok(report)
}

/// Shuts `engine` down and opens the same data dir again, recording how
/// long the start took.
async fn restart(
    engine: Engine,
    scenario: &Scenario,
    data: &Path,
    starts: &mut Vec<f64>,
) -> Result<Engine, HarnessError> {
    engine.shutdown().await?;
    let opened = Instant::now();
    let engine = Engine::start(engine_config(scenario, data)).await?;
    starts.push(opened.elapsed().as_secs_f64());
    Ok(engine)
}

/// What woke the run's loop: an event (or the tick), or a finished
/// Complete.
enum Woke<E, D> {
    Event(E),
    Done(D),
}

enum Completion {
    Done {
        lost: u64,
        corrupt: u64,
        call: Duration,
        total: Duration,
        /// When Complete answered.
        answered: Instant,
    },
    Retry,
}

async fn complete_and_verify(
    engine: Engine,
    me: Principal,
    job: JobId,
    files: Vec<(String, PathBuf)>,
    resumed: Instant,
    source: Rc<Source>,
) -> (JobId, Completion) {
    let called = Instant::now();
    let answer = match engine.complete(&me, job).await {
        Ok(answer) => answer,
        Err(EngineError::Stopped) => return (job, Completion::Retry),
        Err(err) => {
            tracing::error!(message = "Complete failed.", %job, error = %err);
            return (
                job,
                Completion::Done {
                    lost: files.len() as u64,
                    corrupt: 0,
                    call: called.elapsed(),
                    total: resumed.elapsed(),
                    answered: Instant::now(),
                },
            );
        }
    };
    let answered = Instant::now();
    let call = called.elapsed();
    let total = resumed.elapsed();
    if answer.result != CompleteResult::Complete {
        tracing::error!(message = "Complete dropped files.", %job, dropped = answer.dropped.len());
    }
    // A dropped file is not at its final name: the check counts it.
    let (lost, corrupt) = verify_job(&source, &files).await;
    (
        job,
        Completion::Done {
            lost,
            corrupt,
            call,
            total,
            answered,
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_ranges() {
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_sizes("1KiB..2KiB"), Ok((1024, 2048)));
        assert!(parse_sizes("2KiB..1KiB").is_err());
    }

    #[test]
    fn counters_read_the_engine_metrics() {
        let text = "# HELP x\nferry_transferred_bytes_total 1234\nferry_store_write_seconds_count 7\n\
                    ferry_transfer_errors_total{class=\"transient\",context=\"transport\"} 3\n\
                    ferry_transfer_errors_total{class=\"transient\",context=\"remote_file\"} 2\n";
        let c = counters(text);
        assert_eq!(c.bytes, 1234.0);
        assert_eq!(c.store_writes, 7.0);
        assert_eq!(c.errors.get("transient"), Some(&5.0));
    }
}

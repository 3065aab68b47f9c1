//! The harness against a `ferry serve` process, through its HTTP API on a
//! Unix socket: what a deployment runs. The scenario's `restarts` are
//! SIGKILLs at random moments (seeded draws of the fraction of all bytes
//! received), each followed by a new daemon on the same data dir; the run
//! goes on through them and every file is still verified byte for byte.
//!
//! The daemon's state is read by polling `GET /v1/jobs` every 100 ms (an
//! event stream does not survive a SIGKILL), so times to TRANSFERRED are
//! exact to that tick. A Complete cut off by a SIGKILL is settled by the
//! job's state after the restart: TRANSFERRED is completed again,
//! ACKNOWLEDGED (rolled forward by the new daemon) is verified.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    rc::Rc,
    time::{Duration, Instant},
};

use ferry::client::{Address, Client, ClientError};
use ferry_actors::api::json;
use ferry_core::Priority;
use futures_util::{StreamExt as _, stream::FuturesUnordered};

use crate::harness::{
    Counters, HarnessError, Plan, Recorder, Report, Scenario, Source, counters, progress_bar,
    usage, verify_job,
};

/// How long a daemon may take to answer after it was spawned.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// How often the jobs are read.
const TICK: Duration = Duration::from_millis(100);

/// A `ferry serve` child process.
struct Daemon {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Spawns it and waits until it answers; the seconds that took.
    async fn start(&mut self, client: &Client) -> Result<f64, HarnessError> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let spawned = Instant::now();
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env_remove("FERRY_SYSTEM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|err| {
                HarnessError::Scenario(format!("cannot run {}: {err}", self.bin.display()))
            })?;
        let child = self.child.insert(child);
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Err(HarnessError::Scenario(format!(
                    "the daemon exited at start ({status}); see {}",
                    self.log.display()
                )));
            }
            if client.text("/healthz").await.is_ok() {
                return Ok(spawned.elapsed().as_secs_f64());
            }
            if spawned.elapsed() > START_DEADLINE {
                self.kill();
                return Err(HarnessError::Scenario(format!(
                    "the daemon did not answer within {START_DEADLINE:?}; see {}",
                    self.log.display()
                )));
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and reap it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (a graceful stop), SIGKILL if it has not exited after 60 s.
    async fn stop(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(60) {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                self.child = None;
                return;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::error!(message = "The daemon did not stop on SIGTERM.");
        self.kill();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One job's progress through the run.
struct Tracked {
    files: Vec<(String, PathBuf)>,
    priority: Priority,
    resumed: Instant,
    transferred: bool,
    completing: bool,
    done: bool,
}

enum Completion {
    /// Complete answered; the files were verified.
    Done {
        lost: u64,
        corrupt: u64,
        call: Duration,
        total: Duration,
        answered: Instant,
    },
    /// No answer (the daemon died, or refused): the job's state decides.
    Retry,
}

fn api_error(context: &str) -> impl Fn(ClientError) -> HarnessError + '_ {
    move |err| HarnessError::Scenario(format!("{context}: {err}"))
}

/// The points of the run (fractions of all bytes received) where the daemon
/// is killed: `n` seeded draws between 5% and 95%, in order.
fn kill_points(seed: u64, n: u32) -> Vec<f64> {
    let mut points: Vec<f64> = (0..u64::from(n))
        .map(|i| {
            let draw = crate::origin::block_at(seed ^ 0x6b69_6c6c, i);
            0.05 + 0.9 * (u64::from_le_bytes(draw) as f64 / u64::MAX as f64)
        })
        .collect();
    points.sort_by(f64::total_cmp);
    points
}

/// Runs `scenario` against a `ferry serve` daemon (the binary named by
/// `scenario.daemon`) whose data dir, socket and downloads are under `dir`.
pub(crate) async fn run(
    scenario: &Scenario,
    plan: &Plan,
    dir: &Path,
    progress: bool,
) -> Result<Report, HarnessError> {
    if !scenario.checkpoints {
        return Err(HarnessError::Scenario(
            "checkpoints = false needs the embedded engine".into(),
        ));
    }
    let source = Rc::new(Source::start(scenario, plan)?);
    let downloads = dir.join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let socket = dir.join("ferry.sock");
    let config = dir.join("ferry.toml");
    let transfers = scenario.max_transfers.max(1);
    let mut settings = toml::Table::new();
    let path = |p: PathBuf| toml::Value::from(p.to_string_lossy().into_owned());
    settings.insert("data_dir".into(), path(dir.join("store")));
    settings.insert("socket".into(), path(socket.clone()));
    let transfers = i64::try_from(transfers).unwrap_or(i64::MAX);
    settings.insert("max_transfers".into(), transfers.into());
    settings.insert("max_transfers_per_host".into(), transfers.into());
    settings.insert("retry_delay_floor_secs".into(), 0.into());
    std::fs::write(&config, settings.to_string())?;
    let client = Client::new(Address::Unix(socket), None);
    let mut daemon = Daemon {
        bin: PathBuf::from(&scenario.daemon),
        config,
        log: dir.join("ferry.log"),
        child: None,
    };
    let mut starts = vec![daemon.start(&client).await?];

    // Durable creation, `creators` callers at once.
    let created_at = Instant::now();
    let mut ids: Vec<Option<String>> = vec![None; scenario.jobs];
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    while next < scenario.jobs || !pending.is_empty() {
        while next < scenario.jobs && pending.len() < scenario.creators.max(1) {
            let j = next;
            let body = json::CreateJob {
                name: format!("bench-{j}"),
                kind: None,
                priority: plan.priorities.get(j).map(|p| p.as_str().to_owned()),
                description: None,
                files: None,
                properties: None,
                resume: false,
            };
            let client = &client;
            pending.push(async move { (j, client.post::<_, json::Job>("/v1/jobs", &body).await) });
            next += 1;
        }
        if let Some((j, job)) = pending.next().await
            && let Some(slot) = ids.get_mut(j)
        {
            *slot = Some(job.map_err(api_error("create"))?.id);
        }
    }
    let create_seconds = created_at.elapsed().as_secs_f64();
    drop(pending);
    // In creation order: Resume goes in that order too.
    let ids: Vec<String> = ids.into_iter().flatten().collect();

    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    for (j, id) in ids.iter().enumerate() {
        let files = Plan::locals(scenario, j, &downloads);
        let add = files
            .iter()
            .map(|(path, local)| json::AddFile {
                remote: source.url(path),
                local: local.to_string_lossy().into_owned(),
            })
            .collect();
        let path = Client::job_path(id, "/files").map_err(api_error("add"))?;
        client
            .post::<_, serde_json::Value>(&path, &json::AddFiles::Many(add))
            .await
            .map_err(api_error("add"))?;
        let patch = json::PatchJob {
            parallel_files: Some(scenario.parallel_files.max(1)),
            min_retry_delay_secs: Some(scenario.retry_delay_ms / 1000),
            ..json::PatchJob::default()
        };
        let path = Client::job_path(id, "").map_err(api_error("set"))?;
        client
            .patch::<_, serde_json::Value>(&path, &patch)
            .await
            .map_err(api_error("set"))?;
        tracked.insert(
            id.clone(),
            Tracked {
                files,
                priority: plan.priorities.get(j).copied().unwrap_or(Priority::Normal),
                resumed: Instant::now(),
                transferred: false,
                completing: false,
                done: false,
            },
        );
    }
    let mut report = Report::begin(scenario, plan, "daemon", create_seconds);

    let started = Instant::now();
    for id in &ids {
        if let Some(t) = tracked.get_mut(id) {
            t.resumed = Instant::now();
        }
        client
            .action::<serde_json::Value>(id, "resume")
            .await
            .map_err(api_error("resume"))?;
    }
    let bar = progress.then(|| progress_bar(plan.total_bytes));
    let mut recorder = Recorder::new(started)?;
    let mut finished = started;
    let mut remaining: HashSet<String> = ids.iter().cloned().collect();
    let mut completions = FuturesUnordered::new();
    let mut kills = kill_points(scenario.seed, scenario.restarts).into_iter();
    let mut next_kill = kills.next();
    let mut past = Counters::default();
    let mut latest = Counters::default();
    let deadline = started + Duration::from_secs(scenario.timeout_secs.max(1));
    let mut last_poll: Option<Instant> = None;
    while !remaining.is_empty() || !completions.is_empty() {
        if Instant::now() >= deadline {
            tracing::error!(message = "Timed out.", jobs_left = remaining.len());
            for id in &remaining {
                report.lost += tracked.get(id).map_or(0, |t| t.files.len() as u64);
            }
            report.timed_out = true;
            break;
        }
        let wait = last_poll.map_or(Duration::ZERO, |at| TICK.saturating_sub(at.elapsed()));
        let done = if completions.is_empty() {
            actix_rt::time::sleep(wait).await;
            None
        } else {
            actix_rt::time::timeout(wait, completions.next())
                .await
                .ok()
                .flatten()
        };
        if let Some((id, outcome)) = done {
            let Some(t) = tracked.get_mut(&id) else {
                continue;
            };
            t.completing = false;
            match outcome {
                Completion::Done {
                    lost,
                    corrupt,
                    call,
                    total,
                    answered,
                } => {
                    recorder.completed(call, total);
                    report.lost += lost;
                    report.corrupt += corrupt;
                    finished = finished.max(answered);
                    t.done = true;
                    remaining.remove(&id);
                }
                Completion::Retry => {}
            }
            continue;
        }
        last_poll = Some(Instant::now());
        let list = match client.get::<json::JobList>("/v1/jobs").await {
            Ok(list) => list,
            Err(err) => {
                tracing::warn!(message = "Reading the jobs failed.", error = %err);
                continue;
            }
        };
        if let Ok(text) = client.text("/metrics").await {
            latest = counters(&text);
        }
        let mut received = 0.0;
        for job in &list.jobs {
            let Some(t) = tracked.get_mut(&job.id) else {
                continue;
            };
            received += job.progress.bytes_transferred as f64;
            if t.done || t.completing {
                continue;
            }
            match job.state.as_str() {
                "transferred" => {
                    if !t.transferred {
                        t.transferred = true;
                        recorder.transferred(t.priority, t.resumed.elapsed());
                    }
                    if scenario.complete {
                        t.completing = true;
                        completions.push(complete(
                            client.clone(),
                            job.id.clone(),
                            t.files.clone(),
                            t.resumed,
                            source.clone(),
                        ));
                    } else {
                        t.done = true;
                        finished = Instant::now();
                        remaining.remove(&job.id);
                    }
                }
                // A Complete whose answer a SIGKILL cut off, rolled forward
                // by the next daemon.
                "acknowledged" => {
                    let (lost, corrupt) = verify_job(&source, &t.files).await;
                    report.lost += lost;
                    report.corrupt += corrupt;
                    finished = Instant::now();
                    t.done = true;
                    remaining.remove(&job.id);
                }
                "error" | "cancelled" => {
                    tracing::error!(message = "A job failed.", job = %job.id, state = %job.state, error = ?job.error);
                    report.lost += t.files.len() as u64;
                    t.done = true;
                    remaining.remove(&job.id);
                }
                _ => {}
            }
        }
        let received = received.min(plan.total_bytes as f64);
        recorder.progress(received);
        if let Some(bar) = &bar {
            bar.set_position(received as u64);
            bar.set_message(format!("{} jobs left", remaining.len()));
        }
        if let Some(point) = next_kill
            && received >= point * plan.total_bytes as f64
            && !remaining.is_empty()
        {
            daemon.kill();
            past.add(std::mem::take(&mut latest));
            report.restarts += 1;
            next_kill = kills.next();
            starts.push(daemon.start(&client).await?);
        }
    }
    if report.timed_out {
        finished = Instant::now();
    } else if let Ok(text) = client.text("/metrics").await {
        latest = counters(&text);
    }
    report.wall_seconds = finished.duration_since(started).as_secs_f64();
    report.engine_start_seconds = starts;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    recorder.finish(&mut report);
    past.add(latest);
    past.fill(&mut report);
    report.origin_changes = source.changes();
    daemon.stop().await;
    // The daemons' CPU and peak memory: every one of them was reaped.
    let (cpu, rss) = usage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
    report.cpu_seconds = cpu;
    report.peak_rss_bytes = rss;
    Ok(report)
}

async fn complete(
    client: Client,
    id: String,
    files: Vec<(String, PathBuf)>,
    resumed: Instant,
    source: Rc<Source>,
) -> (String, Completion) {
    let called = Instant::now();
    let answer = client.action::<json::CompleteResult>(&id, "complete").await;
    let answered = Instant::now();
    match answer {
        Ok(answer) => {
            if answer.result != "complete" {
                tracing::error!(message = "Complete dropped files.", job = %id, result = %answer.result);
            }
            let (lost, corrupt) = verify_job(&source, &files).await;
            let outcome = Completion::Done {
                lost,
                corrupt,
                call: answered.duration_since(called),
                total: answered.duration_since(resumed),
                answered,
            };
            (id, outcome)
        }
        Err(err) => {
            tracing::warn!(message = "Complete got no answer; the job's state decides.", job = %id, error = %err);
            (id, Completion::Retry)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_points_are_seeded_ordered_and_inside_the_run() {
        let points = kill_points(7, 5);
        assert_eq!(points.len(), 5);
        assert!(points.windows(2).all(|w| w.first() <= w.get(1)));
        assert!(points.iter().all(|p| (0.05..=0.95).contains(p)));
        assert_eq!(points, kill_points(7, 5));
        assert_ne!(points, kill_points(8, 5));
    }
}

//! A small scenario language for the job model, in the spirit of
//! rust-analyzer's data-driven tests: a script of steps goes in, a transcript
//! of replies, effects and state changes comes out, and `expect-test` compares
//! it with the expected transcript kept next to the script
//! (`UPDATE_EXPECT=1 cargo test` rewrites them; read the diff).
//!
//! Every step also checks two invariants silently, failing the test with a
//! clear message if they break:
//! - the records the job has persisted so far (kept in a byte-level store,
//!   encoded and decoded through `ferry_core::record`) equal the job's current
//!   records: nothing changed without being persisted;
//! - no effect is emitted after an `Forget`.
//!
//! # Steps
//! ```text
//! config retry_floor=1s retention=7d inactivity=90d max_retry=1h max_files=200
//!        max_syncing=64                                       (before create)
//! create NAME [as WHO] [type upload]        WHO: alice, or !root for an admin
//! add REMOTE LOCAL [REMOTE LOCAL ...] [as WHO]
//! resume | suspend | cancel | complete | take_ownership   [as WHO]
//! set priority high | name TEXT | description TEXT | retry_delay 10s
//!     | no_progress 1h | max_download 30m | notify /bin/prog ARGS.. | notify none
//!     | parallel 2 | bandwidth 65536 | bandwidth none     [as WHO]
//! grant | preempt | host_ok HOST
//! respond F [offset=N] [size=N] [etag=T] [lm=T] [ranges=no]
//! received F N | checkpoint F N | drained F N | transferred F N
//! fail F transient|fatal CODE [retry_after=30s] [host=H]
//! published F | publish_failed F CAUSE | deleted F | delete_failed F CAUSE
//! published_temp_left F CAUSE
//! stale F transferred N | stale F checkpoint N   (an event of the previous attempt)
//! lose STEP            (run STEP, then die before carrying out its effects)
//! advance 10m          (both clocks; timers fire at their deadlines)
//! wall +1h | wall -1h  (the wall clock alone jumps)
//! restart              (a new process: records decoded, job restored)
//! show | files | why   (why: the job's waiting reason)
//! ```
//! TEXT may be `x*300` (300 times `x`). Durations: 500ms, 10s, 5m, 2h, 3d.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use ferry_core::{
    Answer, Command, CoreConfig, Durability, Effect, ErrorContext, EventOutcome, FileEvent, FileId,
    FileRecord, FileSpec, Job, JobId, JobRecord, JobSpec, JobState, JobType, MonoTime,
    Notification, NotifyCommand, Now, Principal, Priority, Property, TransferError, TransferEvent,
    UtcTime, Validator,
};

/// Runs `script` and returns its transcript.
pub(crate) fn run(script: &str) -> String {
    let mut world = World::new();
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        writeln!(world.out, "> {line}").ok();
        let before = world.job.as_ref().map(Job::state);
        let (lose, step) = match line.strip_prefix("lose ") {
            Some(step) => (true, step),
            None => (false, line),
        };
        if let Err(err) = world.step(step) {
            panic!("bad step {line:?}: {err}");
        }
        if lose {
            // The process dies before carrying out any effect of this step.
            let job = world.job.as_mut().expect("lose needs a job");
            let mut lost = 0;
            while job.poll_effect().is_some() {
                lost += 1;
            }
            writeln!(world.out, "  ({lost} effects lost)").ok();
            world.lost = true;
        } else {
            world.drain();
            world.check_store(line);
        }
        let after = world.job.as_ref().map(Job::state);
        if let Some(state) = after
            && before != after
        {
            writeln!(world.out, "  state: {state}").ok();
        }
    }
    world.out
}

struct World {
    config: CoreConfig,
    now: Now,
    job: Option<Job>,
    /// key -> encoded record, as a store would hold them.
    store: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The attempt of each file's latest StartTransfer.
    attempts: BTreeMap<u32, u64>,
    forgotten: bool,
    /// A `lose` step dropped effects since the last restart: the job in
    /// memory is ahead of the store on purpose.
    lost: bool,
    /// Virtual time elapsed since the script started (for the transcript).
    elapsed: Duration,
    out: String,
}

type Step = Result<(), String>;

impl World {
    fn new() -> Self {
        Self {
            config: CoreConfig {
                retry_delay_floor: Duration::from_secs(5),
                ..CoreConfig::default()
            },
            // An arbitrary start: 2026-01-01T00:00:00Z.
            now: Now::new(
                MonoTime::from_elapsed(Duration::from_secs(1_000)),
                UtcTime::from_unix_millis(1_767_225_600_000),
            ),
            job: None,
            store: BTreeMap::new(),
            attempts: BTreeMap::new(),
            forgotten: false,
            lost: false,
            elapsed: Duration::ZERO,
            out: String::new(),
        }
    }

    fn job(&mut self) -> Result<&mut Job, String> {
        self.job.as_mut().ok_or_else(|| "no job yet".to_owned())
    }

    fn step(&mut self, line: &str) -> Step {
        let words = split(line);
        let (words, who) = principal(words);
        let word = |i: usize| words.get(i).map(String::as_str).unwrap_or_default();
        let now = self.now;
        match word(0) {
            "config" => {
                for kv in words.iter().skip(1) {
                    let (k, v) = kv.split_once('=').ok_or("config takes k=v")?;
                    if k == "max_files" {
                        self.config.max_files_per_job =
                            v.parse().map_err(|_| format!("max_files {v}"))?;
                        continue;
                    }
                    if k == "max_syncing" {
                        self.config.max_syncing_files =
                            v.parse().map_err(|_| format!("max_syncing {v}"))?;
                        continue;
                    }
                    let d = duration(v)?;
                    match k {
                        "retry_floor" => self.config.retry_delay_floor = d,
                        "max_retry" => self.config.max_retry_delay = d,
                        "retention" => self.config.retention = d,
                        "inactivity" => self.config.inactivity_timeout = d,
                        _ => return Err(format!("unknown config {k}")),
                    }
                }
            }
            "create" => {
                let mut spec = JobSpec::download(text(word(1)));
                if word(2) == "type" {
                    spec.kind = match word(3) {
                        "upload" => JobType::Upload,
                        "download" => JobType::Download,
                        other => return Err(format!("type {other}")),
                    };
                }
                let id = JobId(uuid::Uuid::from_u128(0x1234));
                match Job::create(id, &who, spec, self.config, now) {
                    Ok(job) => {
                        writeln!(self.out, "ok").ok();
                        self.job = Some(job);
                    }
                    Err(err) => writeln!(self.out, "error {}: {err}", err.code())
                        .ok()
                        .unwrap_or(()),
                }
            }
            "add" => {
                let files = words
                    .get(1..)
                    .unwrap_or_default()
                    .chunks(2)
                    .map(|pair| match pair {
                        [remote, local] => Ok(FileSpec::new(text(remote), text(local))),
                        _ => Err("add takes REMOTE LOCAL pairs".to_owned()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.command(&who, Command::AddFiles(files))?;
            }
            "resume" => self.command(&who, Command::Resume)?,
            "suspend" => self.command(&who, Command::Suspend)?,
            "cancel" => self.command(&who, Command::Cancel)?,
            "complete" => self.command(&who, Command::Complete)?,
            "take_ownership" => self.command(&who, Command::TakeOwnership)?,
            "set" => {
                let value = word(2);
                let property = match word(1) {
                    "priority" => Property::Priority(match value {
                        "foreground" => Priority::Foreground,
                        "high" => Priority::High,
                        "normal" => Priority::Normal,
                        "low" => Priority::Low,
                        other => return Err(format!("priority {other}")),
                    }),
                    "name" => Property::DisplayName(text(value)),
                    "description" => Property::Description(text(value)),
                    "retry_delay" => Property::MinRetryDelay(duration(value)?),
                    "no_progress" => Property::NoProgressTimeout(duration(value)?),
                    "max_download" => Property::MaxDownloadTime(duration(value)?),
                    "notify" if value == "none" => Property::NotifyCommand(None),
                    "notify" => Property::NotifyCommand(Some(NotifyCommand {
                        program: value.to_owned(),
                        args: words.get(3..).unwrap_or_default().to_vec(),
                    })),
                    "parallel" => Property::ParallelFiles(value.parse().map_err(|_| "n")?),
                    "bandwidth" if value == "none" => Property::MaxBytesPerSecond(None),
                    "bandwidth" => {
                        Property::MaxBytesPerSecond(Some(value.parse().map_err(|_| "n")?))
                    }
                    other => return Err(format!("property {other}")),
                };
                self.command(&who, Command::Set(property))?;
            }
            "grant" => match self.job()?.handle_grant(now) {
                Some(file) => writeln!(self.out, "granted {file}").ok().unwrap_or(()),
                None => writeln!(self.out, "nothing to start").ok().unwrap_or(()),
            },
            "preempt" => {
                if !self.job()?.handle_preempt(now) {
                    writeln!(self.out, "preempt refused").ok();
                }
            }
            "host_ok" => self.job()?.handle_host_reachable(word(1), now),
            "respond" => {
                let mut offset = 0;
                let mut size = None;
                let mut validator = None;
                let mut ranges = true;
                for kv in words.iter().skip(2) {
                    let (k, v) = kv.split_once('=').ok_or("respond takes k=v")?;
                    match k {
                        "ranges" => ranges = v != "no",
                        "offset" => offset = number(v)?,
                        "size" => size = Some(number(v)?),
                        "etag" => validator = Some(Validator::ETag(v.to_owned())),
                        "lm" => validator = Some(Validator::LastModified(v.to_owned())),
                        _ => return Err(format!("respond {k}")),
                    }
                }
                let event = TransferEvent::Responded {
                    offset,
                    size,
                    validator,
                    modified: None,
                    ranges,
                };
                self.transfer(word(1), event, false)?;
            }
            "received" => {
                let offset = number(word(2))?;
                self.transfer(word(1), TransferEvent::Received { offset }, false)?;
            }
            "checkpoint" => {
                let offset = number(word(2))?;
                self.transfer(word(1), TransferEvent::Checkpointed { offset }, false)?;
            }
            "drained" => {
                let size = number(word(2))?;
                self.transfer(word(1), TransferEvent::Drained { size }, false)?;
            }
            "transferred" => {
                let size = number(word(2))?;
                self.transfer(word(1), TransferEvent::Transferred { size }, false)?;
            }
            "stale" if word(2) == "transferred" => {
                let size = number(word(3))?;
                self.transfer(word(1), TransferEvent::Transferred { size }, true)?;
            }
            "stale" if word(2) == "checkpoint" => {
                let offset = number(word(3))?;
                self.transfer(word(1), TransferEvent::Checkpointed { offset }, true)?;
            }
            "fail" => {
                let (context, code) = (ErrorContext::RemoteFile, word(3));
                let mut error = match word(2) {
                    "transient" => TransferError::transient(context, code, "scripted"),
                    "fatal" => TransferError::fatal(context, code, "scripted"),
                    other => return Err(format!("class {other}")),
                };
                for kv in words.iter().skip(4) {
                    let (k, v) = kv.split_once('=').ok_or("fail takes k=v")?;
                    match k {
                        "retry_after" => error.retry_after = Some(duration(v)?),
                        "host" => error.unreachable_host = Some(v.to_owned()),
                        _ => return Err(format!("fail {k}")),
                    }
                }
                self.transfer(word(1), TransferEvent::Failed(error), false)?;
            }
            "published" => self.file_event(word(1), FileEvent::Published(Ok(())))?,
            "publish_failed" => {
                self.file_event(word(1), FileEvent::Published(Err(text(word(2)))))?;
            }
            "published_temp_left" => {
                self.file_event(word(1), FileEvent::PublishedTempLeft(text(word(2))))?;
            }
            "deleted" => self.file_event(word(1), FileEvent::TempDeleted(Ok(())))?,
            "delete_failed" => {
                self.file_event(word(1), FileEvent::TempDeleted(Err(text(word(2)))))?;
            }
            "advance" => self.advance(duration(word(1))?),
            "wall" => {
                let arg = word(1);
                let d = duration(arg.get(1..).unwrap_or_default())?;
                let millis = i64::try_from(d.as_millis()).map_err(|_| "too long")?;
                let wall = self.now.wall.unix_millis();
                let wall = if arg.starts_with('-') {
                    wall - millis
                } else {
                    wall + millis
                };
                self.now.wall = UtcTime::from_unix_millis(wall);
            }
            "restart" => self.restart()?,
            "why" => {
                let view = self.job()?.view();
                let start = 1_767_225_600_000;
                let line = match &view.waiting {
                    None => "transferring or done".to_owned(),
                    Some(ferry_core::Waiting::RetryAt { at, error }) => format!(
                        "retry_at +{}ms after {error}",
                        at.map_or(-1, |t| t.unix_millis() - start)
                    ),
                    Some(ferry_core::Waiting::Error { error }) => format!("error {error}"),
                    Some(other) => other.reason().to_owned(),
                };
                writeln!(self.out, "  waiting: {line}").ok();
            }
            "show" => {
                let view = self.job()?.view();
                let out = show_job(&view, self.now);
                self.out.push_str(&out);
            }
            "files" => {
                for f in self.job()?.files() {
                    writeln!(
                        self.out,
                        "  {} {} -> {} temp={} total={} transferred={} durable={}{}{}",
                        f.id,
                        f.remote,
                        f.local,
                        f.temp,
                        f.bytes_total.map_or("unknown".into(), |n| n.to_string()),
                        f.bytes_transferred,
                        f.bytes_durable,
                        if f.transferred { " [transferred]" } else { "" },
                        if f.completed { " [completed]" } else { "" },
                    )
                    .ok();
                }
            }
            other => return Err(format!("unknown step {other}")),
        }
        Ok(())
    }

    fn command(&mut self, who: &Principal, command: Command) -> Step {
        let now = self.now;
        let reply = self.job()?.handle_command(who, command, now);
        let text = match reply {
            Ok(ferry_core::Reply::Done) => "ok".to_owned(),
            Ok(ferry_core::Reply::Pending) => "pending".to_owned(),
            Ok(ferry_core::Reply::Added(ids)) => format!("added {}", ids_text(&ids)),
            Err(err) => format!("error {}: {err}", err.code()),
        };
        writeln!(self.out, "{text}").ok();
        Ok(())
    }

    fn transfer(&mut self, file: &str, event: TransferEvent, stale: bool) -> Step {
        let id = file_id(file)?;
        let current = self.attempts.get(&id.0).copied().unwrap_or_default();
        let attempt = if stale {
            current.saturating_sub(1)
        } else {
            current
        };
        self.file_event(file, FileEvent::Transfer { attempt, event })
    }

    fn file_event(&mut self, file: &str, event: FileEvent) -> Step {
        let id = file_id(file)?;
        let now = self.now;
        match self.job()?.handle_file_event(id, event, now) {
            Ok(EventOutcome::Applied) => {}
            Ok(EventOutcome::Stale) => writeln!(self.out, "stale, ignored").ok().unwrap_or(()),
            Err(err) => writeln!(self.out, "error {}: {err}", err.code())
                .ok()
                .unwrap_or(()),
        }
        Ok(())
    }

    /// Moves both clocks by `d`, firing each timer at its deadline.
    fn advance(&mut self, d: Duration) {
        let target = self.now.mono.saturating_add(d);
        while let Some(deadline) = self.job.as_ref().and_then(Job::poll_timeout) {
            if deadline > target {
                break;
            }
            let step = deadline.saturating_since(self.now.mono);
            self.now = self.now.advanced(step);
            self.elapsed += step;
            writeln!(self.out, "  timer at +{}", human(self.elapsed)).ok();
            let now = self.now;
            if let Some(job) = &mut self.job {
                job.handle_timeout(now);
            }
            self.drain();
        }
        let rest = target.saturating_since(self.now.mono);
        self.now = self.now.advanced(rest);
        self.elapsed += rest;
    }

    /// A new process: a new monotonic origin, the job rebuilt from the bytes
    /// in the store.
    fn restart(&mut self) -> Step {
        let Some(old) = self.job.take() else {
            return Err("no job".into());
        };
        let before = old.view();
        self.now.mono = MonoTime::from_elapsed(Duration::from_secs(7));
        self.attempts.clear();
        let mut job_record = None;
        let mut files = Vec::new();
        for (key, bytes) in &self.store {
            if key.len() == 16 {
                job_record = Some(JobRecord::decode(bytes).map_err(|e| e.to_string())?);
            } else {
                files.push(FileRecord::decode(bytes).map_err(|e| e.to_string())?);
            }
        }
        let record = job_record.ok_or("nothing persisted")?;
        let job = Job::restore(record, files, self.config, self.now).map_err(|e| e.to_string())?;
        let after = job.view();
        // The files rebuild exactly (the job record differs only where a
        // restart must change it: state, download-time spell).
        let (old_files, new_files) = (old.file_records(), job.file_records());
        if !std::mem::take(&mut self.lost) && old_files != new_files {
            writeln!(
                self.out,
                "  RESTORED FILES DIFFER:\n  before {old_files:?}\n  after  {new_files:?}"
            )
            .ok();
        }
        // What a restart may change: an active job waits for slots again, and
        // bytes not yet durable are gone.
        let mut expected = before;
        if matches!(
            expected.state,
            JobState::Connecting | JobState::Transferring
        ) {
            expected.state = JobState::Queued;
            expected.waiting = Some(ferry_core::Waiting::Queued);
        }
        expected.bytes_transferred = after.bytes_transferred;
        if expected != after {
            writeln!(
                self.out,
                "  RESTORED VIEW DIFFERS:\n  before {expected:?}\n  after  {after:?}"
            )
            .ok();
        }
        self.job = Some(job);
        Ok(())
    }

    /// Prints every effect and applies persists to the store.
    fn drain(&mut self) {
        let Some(job) = &mut self.job else {
            return;
        };
        let mut lines = Vec::new();
        while let Some(effect) = job.poll_effect() {
            if self.forgotten {
                lines.push("  EFFECT AFTER FORGET".to_owned());
            }
            lines.push(format!("  {}", effect_text(&effect)));
            match effect {
                Effect::Persist(batch) => {
                    if let Some(record) = &batch.job_record {
                        self.store.insert(record.key().to_vec(), record.encode());
                    }
                    for file in &batch.files {
                        self.store.insert(file.key().to_vec(), file.encode());
                    }
                }
                Effect::StartTransfer(order) => {
                    self.attempts.insert(order.file.0, order.attempt);
                }
                Effect::Forget(_) => {
                    self.store.clear();
                    self.forgotten = true;
                }
                _ => {}
            }
        }
        for line in lines {
            writeln!(self.out, "{line}").ok();
        }
    }

    /// Invariant: the store holds exactly the job's current records.
    fn check_store(&self, line: &str) {
        let Some(job) = &self.job else {
            return;
        };
        if self.forgotten {
            assert!(self.store.is_empty(), "records left after forget");
            return;
        }
        let record = job.record();
        let stored = self
            .store
            .get(&record.key()[..])
            .map(|b| JobRecord::decode(b).expect("stored job record decodes"));
        assert_eq!(
            stored.as_ref(),
            Some(&record),
            "job record not persisted after {line:?}"
        );
        for file in job.file_records() {
            let stored = self
                .store
                .get(&file.key()[..])
                .map(|b| FileRecord::decode(b).expect("stored file record decodes"));
            assert_eq!(
                stored.as_ref(),
                Some(&file),
                "file record not persisted after {line:?}"
            );
        }
    }
}

fn effect_text(effect: &Effect) -> String {
    match effect {
        Effect::StartTransfer(o) => {
            let mut s = format!("start {} #{} offset={}", o.file, o.attempt, o.offset);
            if let Some(v) = &o.validator {
                write!(s, " if-range=({v})").ok();
            }
            if let Some(size) = o.size {
                write!(s, " size={size}").ok();
            }
            s
        }
        Effect::StopTransfer { file, attempt } => format!("stop {file} #{attempt}"),
        Effect::Persist(batch) => {
            let mut s = format!(
                "persist {}",
                match batch.durability {
                    Durability::Sync => "sync",
                    Durability::Lazy => "lazy",
                }
            );
            if let Some(r) = &batch.job_record {
                write!(s, " job={}", r.state()).ok();
            }
            if !batch.files.is_empty() {
                let ids: Vec<FileId> = batch.files.iter().map(FileRecord::file).collect();
                write!(s, " files={}", ids_text(&ids)).ok();
            }
            s
        }
        Effect::Publish { file, local, .. } => format!("publish {file} -> {local}"),
        Effect::DeleteTemp { file, .. } => format!("delete temp of {file}"),
        Effect::Notify(n) => match n {
            Notification::JobTransferred => "notify job_transferred".into(),
            Notification::JobError => "notify job_error".into(),
            Notification::JobModified => "notify job_modified".into(),
            Notification::FileTransferred(f) => format!("notify file_transferred {f}"),
        },
        Effect::Answer(Ok(answer)) => format!("answer {}", answer_text(answer)),
        Effect::Answer(Err(err)) => format!("answer error {}: {err}", err.code()),
        Effect::Forget(_) => "forget".into(),
    }
}

fn answer_text(answer: &Answer) -> String {
    let undeleted = |list: &[ferry_core::FileFailure]| {
        list.iter()
            .map(|f| format!("{}({})", f.file, f.cause))
            .collect::<Vec<_>>()
            .join(",")
    };
    match answer {
        Answer::Complete(a) => format!(
            "{} saved=[{}] dropped=[{}] undeleted=[{}]",
            a.result.as_str(),
            ids_text(&a.saved),
            ids_text(&a.dropped),
            undeleted(&a.undeleted)
        ),
        Answer::Cancel(a) => format!(
            "cancel {} reason={:?} undeleted=[{}]",
            a.result.as_str(),
            a.reason,
            undeleted(&a.undeleted)
        ),
    }
}

fn show_job(v: &ferry_core::JobView, now: Now) -> String {
    let _ = now;
    let mut s = String::new();
    writeln!(
        s,
        "  job {:?} owner={} state={} priority={} type={}",
        v.name, v.owner, v.state, v.priority, v.kind
    )
    .ok();
    writeln!(
        s,
        "  progress bytes={}/{} files={}/{}",
        v.bytes_transferred,
        v.bytes_total.map_or("unknown".into(), |n| n.to_string()),
        v.files_transferred,
        v.files_total
    )
    .ok();
    match &v.error {
        Some(e) => writeln!(
            s,
            "  error {} {} file={} count={}",
            e.context.as_str(),
            e.code,
            e.file.map_or("-".into(), |f| f.to_string()),
            v.error_count
        ),
        None => writeln!(s, "  error none count={}", v.error_count),
    }
    .ok();
    writeln!(
        s,
        "  retry_delay={} no_progress={} max_download={} parallel={} notify={}",
        human(v.min_retry_delay),
        human(v.no_progress_timeout),
        human(v.max_download_time),
        v.parallel_files,
        v.notify_command.as_ref().map_or("none".into(), |c| format!(
            "{} {}",
            c.program,
            c.args.join(" ")
        ))
    )
    .ok();
    if let Some(cap) = v.max_bytes_per_second {
        writeln!(s, "  bandwidth={cap}/s").ok();
    }
    if v.commit_stalled {
        writeln!(s, "  commit stalled").ok();
    }
    if let Some(a) = &v.answer {
        writeln!(s, "  last answer {}", answer_text(a)).ok();
    }
    s
}

fn ids_text(ids: &[FileId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits on spaces, keeping "quoted strings" whole.
fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Takes a trailing `as WHO` off; `!name` is an admin. Default: alice.
fn principal(mut words: Vec<String>) -> (Vec<String>, Principal) {
    let n = words.len();
    if n >= 2 && words.get(n - 2).is_some_and(|w| w == "as") {
        let who = words.pop().unwrap_or_default();
        words.pop();
        let principal = match who.strip_prefix('!') {
            Some(admin) => Principal::admin(admin),
            None => Principal::user(who),
        };
        return (words, principal);
    }
    (words, Principal::user("alice"))
}

/// `x*300` is 300 times `x`; anything else is itself.
fn text(word: &str) -> String {
    if let Some((unit, count)) = word.rsplit_once('*')
        && let Ok(count) = count.parse::<usize>()
    {
        return unit.repeat(count);
    }
    word.to_owned()
}

fn number(word: &str) -> Result<u64, String> {
    word.parse().map_err(|_| format!("not a number: {word:?}"))
}

fn file_id(word: &str) -> Result<FileId, String> {
    let n = word.strip_prefix('f').ok_or("files are f0, f1, ...")?;
    Ok(FileId(n.parse().map_err(|_| "bad file id")?))
}

fn duration(word: &str) -> Result<Duration, String> {
    let split = word
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration needs a unit: {word:?}"))?;
    let (n, unit) = word.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("bad duration {word:?}"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return Err(format!("unit {unit:?}")),
    })
}

/// A duration as the largest whole unit that divides it.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

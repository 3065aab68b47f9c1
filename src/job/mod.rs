//! [`Job`]: one BITS job as a deterministic state machine.
//!
//! Inputs go in through `handle_*` methods, each given the current [`Now`];
//! effects come out of [`Job::poll_effect`] and the next deadline out of
//! [`Job::poll_timeout`]. The shell carries effects out and reports results
//! back as [`FileEvent`]s. Nothing here touches a file, a socket or a clock.
//!
//! # Commit protocol (Complete and Cancel)
//!
//! 1. Stop running transfers (their bytes do not count).
//! 2. Persist the intent ([`Durability::Sync`]): which files are kept, which
//!    dropped. Before this the job is unchanged; after it the commit only
//!    rolls forward, after a crash too ([`Job::restore`] resumes it).
//! 3. Delete dropped temp files and publish kept ones, in any order, each
//!    reported back.
//! 4. Persist the outcome and answer: ACKNOWLEDGED or CANCELLED with the
//!    answer kept for the retention period, or, if a rename failed, TRANSFERRED
//!    with the commit stalled until the next Complete (or Cancel).

mod validate;

use std::{
    collections::{BTreeSet, VecDeque},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    command::{
        Command, FileEvent, FileSpec, JobSpec, NotifyCommand, Property, Reply, TransferEvent,
    },
    config::{
        CoreConfig, DEFAULT_MAX_DOWNLOAD_TIME, DEFAULT_MIN_RETRY_DELAY, DEFAULT_NO_PROGRESS_TIMEOUT,
    },
    effect::{
        Answer, Batch, CancelAnswer, CancelReason, CancelResult, CompleteAnswer, CompleteResult,
        Durability, Effect, Notification, TransferOrder,
    },
    error::{CommandError, ErrorClass, ErrorContext, FileFailure, JobError, TransferError},
    record::{FileRecord, FinishRecord, JobRecord},
    time::{MonoTime, Now, Stamp, UtcTime},
    types::{FileId, JobId, JobState, JobType, Principal, Priority, Validator},
    view::{FileView, JobView, Waiting},
};

/// The settable properties of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Properties {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) priority: Priority,
    pub(crate) min_retry_delay: Duration,
    pub(crate) no_progress_timeout: Duration,
    pub(crate) max_download_time: Duration,
    pub(crate) notify: Option<NotifyCommand>,
    pub(crate) parallel_files: u32,
    /// The job's own bandwidth cap (schema version 2), on top of the
    /// engine's.
    pub(crate) max_bytes_per_second: Option<u64>,
}

/// Which way a job ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FinishKind {
    Complete,
    Cancel(CancelReason),
}

/// What a recorded Complete or Cancel does with a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Fate {
    /// Published at its final name.
    Keep,
    /// Temp file deleted.
    Drop,
}

/// A filesystem step of a commit whose result is awaited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Publish,
    Delete,
}

/// A Complete or Cancel in progress (or stalled by a rename failure).
#[derive(Clone, Debug)]
struct Finish {
    /// The persisted part.
    record: FinishRecord,
    /// Steps carried out whose results have not come back.
    outstanding: BTreeSet<(FileId, Step)>,
    /// Renames that failed in this round.
    rename_failures: Vec<FileFailure>,
}

/// A running transfer of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Running {
    attempt: u64,
    /// The server has answered (the job is TRANSFERRING, not CONNECTING).
    responded: bool,
}

/// One file of a job.
#[derive(Clone, Debug)]
struct File {
    remote: String,
    local: String,
    temp: String,
    size: Option<u64>,
    durable: u64,
    /// Bytes received, durable or not (progress display only).
    received: u64,
    high_water: u64,
    validator: Option<Validator>,
    modified: Option<UtcTime>,
    transferred: bool,
    completed: bool,
    touched: bool,
    /// Set by a recorded Complete or Cancel.
    fate: Option<Fate>,
    running: Option<Running>,
    /// The attempt whose body arrived whole and whose bytes the shell is
    /// making durable ([`TransferEvent::Drained`]; not persisted).
    syncing: Option<u64>,
    /// The server said at the last response that it takes no range
    /// requests (not persisted): a preemption would start the file over.
    no_ranges: bool,
    /// The latest attempt started (not persisted): a stopped attempt may
    /// still report its final checkpoint.
    last_attempt: u64,
}

impl File {
    fn pending(&self) -> bool {
        !self.transferred && self.running.is_none() && self.syncing.is_none()
    }
}

/// What happened to a file event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// The event changed the job.
    Applied,
    /// The event belonged to an attempt or step that is over; ignored.
    Stale,
}

/// One BITS job. See the [module docs](self).
#[derive(Debug)]
pub struct Job {
    id: JobId,
    kind: JobType,
    owner: String,
    props: Properties,
    state: JobState,
    files: Vec<File>,
    /// Files with a running transfer (at most `parallel_files`).
    running: BTreeSet<FileId>,
    /// Running transfers whose server has answered.
    responded: usize,
    /// Files whose bodies arrived and are being fsynced (`File::syncing`).
    syncing: usize,
    /// Files whose bytes are all durable.
    transferred: usize,
    /// No file before this index waits for a transfer: the next one to start
    /// is found from here (files transfer in order), so a grant costs O(1)
    /// amortized even with 100,000 files.
    cursor: usize,
    /// Every local name of the job, for the duplicate check.
    locals: std::collections::HashSet<String>,
    error: Option<JobError>,
    error_count: u64,
    created: UtcTime,
    modified: UtcTime,
    transferred_at: Option<UtcTime>,
    /// CONNECTING/TRANSFERRING time used before `active_since`.
    download_time_used: Duration,
    /// Start of the current CONNECTING/TRANSFERRING spell.
    active_since: Option<Stamp>,
    retry_at: Option<Stamp>,
    no_progress_deadline: Option<Stamp>,
    /// Transient failures since the last progress or Resume: the retry
    /// backoff's exponent (not persisted: a restart starts it again).
    failures_in_a_row: u32,
    inactivity_deadline: Option<Stamp>,
    retain_until: Option<Stamp>,
    finish: Option<Finish>,
    answer: Option<Answer>,
    next_attempt: u64,
    config: CoreConfig,
    /// The retention period ended and [`Effect::Forget`] was emitted.
    forgotten: bool,

    effects: VecDeque<Effect>,
    /// Notifications and answers held back until the records they describe
    /// are persisted.
    tail: Vec<Effect>,
    job_dirty: bool,
    sync_needed: bool,
    dirty_files: BTreeSet<FileId>,
}

impl Job {
    /// A new job: SUSPENDED, no files, zero progress. Its first effect
    /// persists it.
    pub fn create(
        id: JobId,
        owner: &Principal,
        spec: JobSpec,
        config: CoreConfig,
        now: Now,
    ) -> Result<Self, CommandError> {
        validate::name(&spec.name)?;
        validate::description(&spec.description)?;
        let mut job = Self {
            id,
            kind: spec.kind,
            owner: owner.user.clone(),
            props: Properties {
                name: spec.name,
                description: spec.description,
                priority: spec.priority,
                min_retry_delay: DEFAULT_MIN_RETRY_DELAY.max(config.retry_delay_floor),
                no_progress_timeout: DEFAULT_NO_PROGRESS_TIMEOUT,
                max_download_time: DEFAULT_MAX_DOWNLOAD_TIME,
                notify: None,
                parallel_files: config.default_parallel_files.max(1),
                max_bytes_per_second: None,
            },
            state: JobState::Suspended,
            files: Vec::new(),
            running: BTreeSet::new(),
            responded: 0,
            syncing: 0,
            transferred: 0,
            cursor: 0,
            locals: std::collections::HashSet::new(),
            error: None,
            error_count: 0,
            created: now.wall,
            modified: now.wall,
            transferred_at: None,
            download_time_used: Duration::ZERO,
            active_since: None,
            retry_at: None,
            no_progress_deadline: None,
            failures_in_a_row: 0,
            inactivity_deadline: Some(now.after(config.inactivity_timeout)),
            retain_until: None,
            finish: None,
            answer: None,
            next_attempt: 1,
            config,
            forgotten: false,
            effects: VecDeque::new(),
            tail: Vec::new(),
            job_dirty: true,
            sync_needed: true,
            dirty_files: BTreeSet::new(),
        };
        job.flush();
        Ok(job)
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The job's state.
    pub fn state(&self) -> JobState {
        self.state
    }

    /// The job's owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The job's priority.
    pub fn priority(&self) -> Priority {
        self.props.priority
    }

    /// The job's own bandwidth cap, bytes per second.
    pub fn max_bytes_per_second(&self) -> Option<u64> {
        self.props.max_bytes_per_second
    }

    /// The program to run on TRANSFERRED or ERROR, if set.
    pub fn notify_command(&self) -> Option<&NotifyCommand> {
        self.props.notify.as_ref()
    }

    /// Whether `who` may see and act on this job.
    pub fn visible_to(&self, who: &Principal) -> bool {
        who.may_access(&self.owner)
    }

    /// A snapshot of the job as `who` may see it ([`CommandError::NotFound`]
    /// for anyone but the owner or an admin).
    pub fn view_as(&self, who: &Principal) -> Result<JobView, CommandError> {
        if !self.visible_to(who) {
            return Err(CommandError::NotFound);
        }
        Ok(self.view())
    }

    /// A snapshot of the job (no access check: for the shell itself).
    pub fn view(&self) -> JobView {
        let sizes: Option<u64> = self
            .files
            .iter()
            .try_fold(0u64, |sum, f| f.size.map(|s| sum.saturating_add(s)));
        JobView {
            id: self.id,
            kind: self.kind,
            owner: self.owner.clone(),
            name: self.props.name.clone(),
            description: self.props.description.clone(),
            priority: self.props.priority,
            state: self.state,
            bytes_total: sizes,
            bytes_transferred: self
                .files
                .iter()
                .map(bytes_shown)
                .fold(0, u64::saturating_add),
            files_total: self.files.len(),
            files_transferred: self.transferred,
            error: self.error.clone(),
            error_count: self.error_count,
            created: self.created,
            modified: self.modified,
            transferred_at: self.transferred_at,
            min_retry_delay: self.props.min_retry_delay,
            no_progress_timeout: self.props.no_progress_timeout,
            max_download_time: self.props.max_download_time,
            notify_command: self.props.notify.clone(),
            parallel_files: self.props.parallel_files,
            max_bytes_per_second: self.props.max_bytes_per_second,
            commit_stalled: self.finish.as_ref().is_some_and(|f| f.record.stalled),
            answer: self.answer.clone(),
            waiting: self.waiting(),
        }
    }

    /// The wait before the next attempt after a transient error. A first
    /// failure waits the minimum retry delay (BITS's behaviour); each
    /// further failure without progress doubles it, with up to 25% jitter
    /// drawn from the job id and the count (jobs that failed together
    /// spread out; the core stays deterministic), up to
    /// `max_retry_delay` (never below the minimum). A longer `Retry-After`
    /// from the server wins.
    fn retry_delay(&self, retry_after: Duration) -> Duration {
        let min = self.props.min_retry_delay;
        let cap = self.config.max_retry_delay.max(min);
        let n = self.failures_in_a_row.max(1);
        let backoff = if n == 1 {
            min
        } else {
            let doubled = min.saturating_mul(1u32 << (n - 1).min(20)).min(cap);
            let id = self.id.0.as_u128();
            let draw = splitmix((id as u64) ^ ((id >> 64) as u64) ^ u64::from(n));
            let jitter = (draw % 1000) as f64 / 4000.0;
            Duration::try_from_secs_f64(doubled.as_secs_f64() * (1.0 + jitter)).unwrap_or(cap)
        };
        backoff.min(cap).max(retry_after)
    }

    /// Why the job is not transferring, as far as the job knows.
    fn waiting(&self) -> Option<Waiting> {
        let code = || {
            self.error
                .as_ref()
                .map(|e| e.code.clone())
                .unwrap_or_default()
        };
        match self.state {
            JobState::Suspended if self.files.is_empty() => Some(Waiting::NoFiles),
            JobState::Suspended => Some(Waiting::SuspendedByUser),
            JobState::Queued => Some(Waiting::Queued),
            JobState::TransientError => Some(Waiting::RetryAt {
                at: self.retry_at.map(|s| s.wall),
                error: code(),
            }),
            JobState::Error => Some(Waiting::Error { error: code() }),
            _ => None,
        }
    }

    /// Snapshots of the job's files, in order.
    pub fn files(&self) -> Vec<FileView> {
        (0..self.files.len())
            .filter_map(|i| self.file_view(file_id(i)))
            .collect()
    }

    /// A snapshot of one file.
    pub fn file_view(&self, id: FileId) -> Option<FileView> {
        let f = self.files.get(id.index())?;
        Some(FileView {
            id,
            remote: f.remote.clone(),
            local: f.local.clone(),
            temp: f.temp.clone(),
            bytes_total: f.size,
            bytes_transferred: bytes_shown(f),
            bytes_durable: f.durable,
            transferred: f.transferred,
            completed: f.completed,
            transferring: f.running.is_some() || f.syncing.is_some(),
        })
    }

    /// One file's remote URL, borrowed (what the scheduler needs of the
    /// next file, without a [`FileView`] snapshot's copies).
    pub fn file_remote(&self, id: FileId) -> Option<&str> {
        self.files.get(id.index()).map(|f| f.remote.as_str())
    }

    /// How many transfers are running.
    pub fn running_transfers(&self) -> usize {
        self.running.len()
    }

    /// The file [`Job::handle_grant`] would start now, if any: the job is
    /// QUEUED, CONNECTING or TRANSFERRING, below its parallel-files limit
    /// and its limit of files being fsynced, and has a file waiting. The
    /// scheduler uses it to decide (per host, say).
    pub fn next_transfer(&self) -> Option<FileId> {
        if !self.state.is_active() || self.finish.is_some() {
            return None;
        }
        if self.running_transfers() >= self.props.parallel_files as usize
            || self.syncing >= self.config.max_syncing_files.max(1)
        {
            return None;
        }
        self.files
            .iter()
            .skip(self.cursor)
            .position(File::pending)
            .map(|i| file_id(self.cursor + i))
    }

    /// The scheduler grants the job a transfer slot: the next waiting file
    /// starts ([`Effect::StartTransfer`]). `None` if nothing may start.
    pub fn handle_grant(&mut self, now: Now) -> Option<FileId> {
        let id = self.next_transfer()?;
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        self.job_dirty = true;
        self.running.insert(id);
        let file = self.files.get_mut(id.index())?;
        file.running = Some(Running {
            attempt,
            responded: false,
        });
        file.last_attempt = attempt;
        // Resume from the durable offset; a stale received count goes.
        file.received = file.durable;
        file.touched = true;
        let order = TransferOrder {
            file: id,
            attempt,
            remote: file.remote.clone(),
            temp: file.temp.clone(),
            offset: file.durable,
            validator: if file.durable > 0 {
                file.validator.clone()
            } else {
                None
            },
            size: file.size,
        };
        self.effects.push_back(Effect::StartTransfer(order));
        self.dirty_files.insert(id);
        self.settle_active(now);
        self.flush();
        Some(id)
    }

    /// The scheduler takes the job's slots back (end of a time slice, a
    /// higher priority waiting): transfers stop, progress up to the last
    /// checkpoint stays, and the job goes back to QUEUED. Refused (false)
    /// when a running file could not resume where it stops: it has bytes
    /// but no validator, so its next attempt would start from zero (as for
    /// a server without range support), and preempting it every slice
    /// would keep it from ever finishing.
    pub fn handle_preempt(&mut self, now: Now) -> bool {
        if !self.state.is_active() || self.finish.is_some() {
            return false;
        }
        // A running file with bytes (or a body on its way: the server
        // answered) that could not resume where it stops (no validator for
        // If-Range, or a server without ranges) would start over every
        // slice and never finish.
        let restarts = self.files.iter().any(|f| {
            f.running
                .is_some_and(|r| r.responded || f.received.max(f.durable) > 0)
                && (f.validator.is_none() || f.no_ranges)
        });
        if restarts {
            return false;
        }
        self.stop_transfers();
        self.settle_active(now);
        self.flush();
        true
    }

    /// A connection to `host` succeeded: a job held in TRANSIENT_ERROR by a
    /// connection error to that host is queued again at once.
    pub fn handle_host_reachable(&mut self, host: &str, now: Now) {
        let held = self
            .error
            .as_ref()
            .and_then(|e| e.unreachable_host.as_deref())
            .is_some_and(|h| h == host);
        if self.state == JobState::TransientError && held && self.finish.is_none() {
            self.set_state(JobState::Queued, now);
            self.settle_active(now);
            self.flush();
        }
    }

    /// Runs `commands` on a job the shell has not taken effects from yet
    /// (a job created with its files, properties and resume in one call),
    /// each as [`Job::handle_command`], in order; the first refusal ends it
    /// and is returned (the shell then drops the job, which nothing
    /// recorded). The records they make, with the creation's, go in one
    /// write.
    pub fn set_up(
        &mut self,
        who: &Principal,
        commands: Vec<Command>,
        now: Now,
    ) -> Result<Vec<Reply>, CommandError> {
        // Only what sets a job up: a Complete, Cancel or change of owner
        // has steps or answers of its own, not for a job being made.
        if let Some(other) = commands.iter().find(|c| {
            !matches!(
                c,
                Command::AddFiles(_) | Command::Set(_) | Command::SetAll(_) | Command::Resume
            )
        }) {
            return Err(CommandError::InvalidArgument(format!(
                "{} is not part of setting a job up",
                other.name()
            )));
        }
        let replies = commands
            .into_iter()
            .map(|command| self.handle_command(who, command, now))
            .collect::<Result<Vec<_>, _>>()?;
        // Persists merge across notifications (which then follow the
        // whole write: they see durable state), and a notification repeated
        // in a row is sent once; any other effect ends a merge.
        let mut merged: VecDeque<Effect> = VecDeque::with_capacity(self.effects.len());
        let mut persist_at: Option<usize> = None;
        for effect in self.effects.drain(..) {
            match effect {
                Effect::Persist(batch) => match persist_at.and_then(|i| merged.get_mut(i)) {
                    Some(Effect::Persist(waiting)) => waiting.absorb(batch),
                    _ => {
                        persist_at = Some(merged.len());
                        merged.push_back(Effect::Persist(batch));
                    }
                },
                Effect::Notify(notification) => {
                    if !matches!(merged.back(), Some(Effect::Notify(last)) if *last == notification)
                    {
                        merged.push_back(Effect::Notify(notification));
                    }
                }
                other => {
                    persist_at = None;
                    merged.push_back(other);
                }
            }
        }
        self.effects = merged;
        Ok(replies)
    }

    /// A caller's command. A refused command changes nothing.
    pub fn handle_command(
        &mut self,
        who: &Principal,
        command: Command,
        now: Now,
    ) -> Result<Reply, CommandError> {
        if !self.visible_to(who) {
            return Err(CommandError::NotFound);
        }
        if self.state.is_final() {
            return Err(CommandError::InvalidState(self.state));
        }
        if self.finish.as_ref().is_some_and(|f| !f.record.stalled) {
            return Err(CommandError::Busy);
        }
        let reply = match command {
            Command::AddFiles(specs) => self.add_files(specs, who.admin, now)?,
            Command::Resume => self.resume(now)?,
            Command::Suspend => {
                self.suspend(now);
                Reply::Done
            }
            Command::Cancel => {
                self.start_finish(FinishKind::Cancel(CancelReason::Command), now);
                Reply::Pending
            }
            Command::Complete => self.complete(now)?,
            Command::Set(property) => {
                self.set(property, now)?;
                Reply::Done
            }
            Command::SetAll(properties) => {
                for property in &properties {
                    validate::property(property)?;
                }
                for property in properties {
                    self.set(property, now)?;
                }
                Reply::Done
            }
            Command::TakeOwnership => {
                if !who.admin {
                    return Err(CommandError::AccessDenied);
                }
                self.owner = who.user.clone();
                self.props.notify = None;
                self.modified(now);
                Reply::Done
            }
        };
        // An accepted command is durable before it is acknowledged.
        self.sync_needed = true;
        let notified = self
            .tail
            .iter()
            .any(|e| matches!(e, Effect::Notify(_) | Effect::Answer(_)));
        if reply != Reply::Pending && !notified {
            self.tail.push(Effect::Notify(Notification::JobModified));
        }
        self.flush();
        Ok(reply)
    }

    /// A report from the shell about one file.
    pub fn handle_file_event(
        &mut self,
        id: FileId,
        event: FileEvent,
        now: Now,
    ) -> Result<EventOutcome, CommandError> {
        if self.files.get(id.index()).is_none() {
            return Err(CommandError::UnknownFile(id));
        }
        if self.forgotten {
            return Ok(EventOutcome::Stale);
        }
        let outcome = match event {
            FileEvent::Transfer { attempt, event } => {
                let file = self.files.get(id.index());
                let current = file
                    .and_then(|f| f.running)
                    .is_some_and(|r| r.attempt == attempt);
                // A drained attempt still reports how its sync ended, until
                // a commit or a final state makes the file's fate moot.
                let syncing = matches!(
                    event,
                    TransferEvent::Transferred { .. } | TransferEvent::Failed(_)
                ) && self.finish.is_none()
                    && !self.state.is_final()
                    && file.is_some_and(|f| f.syncing == Some(attempt));
                // A stopped attempt's last checkpoint (or its completion, which
                // also means every byte is fsynced) still counts, as long as
                // no newer attempt started and no commit or end intervened.
                let late = matches!(
                    event,
                    TransferEvent::Checkpointed { .. } | TransferEvent::Transferred { .. }
                ) && attempt != 0
                    && self.finish.is_none()
                    && !self.state.is_final()
                    && file.is_some_and(|f| {
                        f.running.is_none() && !f.transferred && f.last_attempt == attempt
                    });
                if !current && !late && !syncing {
                    return Ok(EventOutcome::Stale);
                }
                self.transfer_event(id, event, now);
                EventOutcome::Applied
            }
            FileEvent::Published(result) => {
                self.step_done(id, Step::Publish, result.map(|()| None), now)
            }
            FileEvent::PublishedTempLeft(cause) => {
                self.step_done(id, Step::Publish, Ok(Some(cause)), now)
            }
            FileEvent::TempDeleted(result) => {
                self.step_done(id, Step::Delete, result.map(|()| None), now)
            }
        };
        self.flush();
        Ok(outcome)
    }

    /// Time passed: fire every timer whose deadline is reached.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.forgotten {
            return;
        }
        if let Some(until) = self.retain_until {
            if until.reached(now) {
                self.forgotten = true;
                self.effects.push_back(Effect::Forget(self.id));
            }
            return;
        }
        if self.finish.as_ref().is_some_and(|f| !f.record.stalled) {
            return;
        }
        if self.state == JobState::TransientError {
            let retry = self.retry_at.filter(|t| t.reached(now));
            let give_up = self.no_progress_deadline.filter(|t| t.reached(now));
            match (retry, give_up) {
                // A retry due no later than the no-progress limit still runs.
                (Some(r), Some(g)) if r.mono <= g.mono => self.retry(now),
                (_, Some(_)) => {
                    // The transient error becomes the fatal one.
                    let error = self.error.take();
                    self.set_state(JobState::Error, now);
                    self.error = error;
                }
                (Some(_), None) => self.retry(now),
                (None, None) => {}
            }
        }
        if self.download_deadline().is_some_and(|t| t.reached(now)) {
            let error = TransferError::fatal(
                ErrorContext::QueueManager,
                "max_download_timeout",
                "the job exceeded its maximum download time",
            );
            self.fail(None, error, now);
        }
        if self.inactivity_deadline.is_some_and(|t| t.reached(now)) {
            self.start_finish(FinishKind::Cancel(CancelReason::Inactivity), now);
        }
        self.flush();
    }

    /// The next effect for the shell, in order.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When [`Job::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<MonoTime> {
        if self.forgotten {
            return None;
        }
        if let Some(until) = self.retain_until {
            return Some(until.mono);
        }
        if self.finish.as_ref().is_some_and(|f| !f.record.stalled) {
            return None;
        }
        let mut deadlines = vec![self.inactivity_deadline, self.download_deadline()];
        if self.state == JobState::TransientError {
            deadlines.push(self.retry_at);
            deadlines.push(self.no_progress_deadline);
        }
        deadlines.into_iter().flatten().map(|s| s.mono).min()
    }

    // ----- commands -------------------------------------------------------

    fn add_files(
        &mut self,
        specs: Vec<FileSpec>,
        admin: bool,
        now: Now,
    ) -> Result<Reply, CommandError> {
        if self.finish.is_some() {
            // A stalled commit owns the file list until it ends.
            return Err(CommandError::InvalidState(self.state));
        }
        if specs.is_empty() {
            return Err(CommandError::InvalidArgument("no files given".into()));
        }
        if self.kind.is_upload() && self.files.len() + specs.len() > 1 {
            return Err(CommandError::TooManyFiles);
        }
        let limit = self.config.max_files_per_job;
        if !admin && self.files.len().saturating_add(specs.len()) > limit {
            return Err(CommandError::FileQuota { limit });
        }
        let mut batch = BTreeSet::new();
        for spec in &specs {
            validate::file(spec)?;
            if self.locals.contains(&spec.local) || !batch.insert(spec.local.as_str()) {
                return Err(CommandError::DuplicateLocalName(spec.local.clone()));
            }
        }
        let first = self.files.len();
        if u32::try_from(first + specs.len()).is_err() {
            return Err(CommandError::InvalidArgument("too many files".into()));
        }
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            let id = file_id(self.files.len());
            let temp = temp_name(&spec.local, self.config.engine_id, self.id, id);
            self.locals.insert(spec.local.clone());
            self.files.push(File {
                remote: spec.remote,
                local: spec.local,
                temp,
                size: None,
                durable: 0,
                received: 0,
                high_water: 0,
                validator: None,
                modified: None,
                transferred: false,
                completed: false,
                touched: false,
                fate: None,
                running: None,
                syncing: None,
                no_ranges: false,
                last_attempt: 0,
            });
            self.dirty_files.insert(id);
            ids.push(id);
        }
        self.modified(now);
        Ok(Reply::Added(ids))
    }

    fn resume(&mut self, now: Now) -> Result<Reply, CommandError> {
        if self.files.is_empty() {
            return Err(CommandError::EmptyJob);
        }
        if self.finish.is_some() {
            // A stalled commit: nothing is left to transfer; a suspended job
            // returns to TRANSFERRED, to wait for Complete or Cancel.
            self.transition(JobState::Transferred, now);
            return Ok(Reply::Done);
        }
        let resumable = matches!(
            self.state,
            JobState::Suspended | JobState::Error | JobState::TransientError
        ) || (self.state == JobState::Transferred
            && self.finish.is_none()
            && self.transferred < self.files.len());
        if resumable {
            // Resume starts the maximum download time and the no-progress
            // count again: the application says the cause is fixed.
            self.download_time_used = Duration::ZERO;
            self.no_progress_deadline = None;
            self.failures_in_a_row = 0;
            self.set_state(JobState::Queued, now);
            self.settle_active(now);
        }
        self.modified(now);
        Ok(Reply::Done)
    }

    fn suspend(&mut self, now: Now) {
        if self.state != JobState::Suspended {
            self.stop_transfers();
            self.set_state(JobState::Suspended, now);
        }
    }

    fn complete(&mut self, now: Now) -> Result<Reply, CommandError> {
        if self.kind.is_upload() && self.state != JobState::Transferred {
            return Err(CommandError::InvalidState(self.state));
        }
        if let Some(finish) = &self.finish {
            if let FinishKind::Cancel(_) = finish.record.kind {
                // Stalled commits are only ever Completes; defensive.
                return Err(CommandError::Busy);
            }
            // A commit stalled by a rename failure: publish what is left and
            // answer what the first Complete would have answered.
            self.run_finish(now);
        } else {
            self.start_finish(FinishKind::Complete, now);
        }
        Ok(Reply::Pending)
    }

    fn set(&mut self, property: Property, now: Now) -> Result<(), CommandError> {
        match property {
            Property::Priority(p) => self.props.priority = p,
            Property::DisplayName(name) => {
                validate::name(&name)?;
                self.props.name = name;
            }
            Property::Description(text) => {
                validate::description(&text)?;
                self.props.description = text;
            }
            Property::MinRetryDelay(d) => {
                self.props.min_retry_delay = d.min(MAX_SETTING).max(self.config.retry_delay_floor);
            }
            Property::NoProgressTimeout(d) => {
                let d = d.min(MAX_SETTING);
                let old = self.props.no_progress_timeout;
                self.props.no_progress_timeout = d;
                self.no_progress_deadline = self.no_progress_deadline.map(|t| t.shifted(d, old));
            }
            Property::MaxDownloadTime(d) => self.props.max_download_time = d.min(MAX_SETTING),
            Property::NotifyCommand(cmd) => {
                if let Some(cmd) = &cmd {
                    validate::notify_command(cmd)?;
                }
                self.props.notify = cmd;
            }
            Property::ParallelFiles(n) => {
                validate::parallel_files(n)?;
                self.props.parallel_files = n;
            }
            Property::MaxBytesPerSecond(cap) => {
                validate::max_bytes_per_second(cap)?;
                self.props.max_bytes_per_second = cap;
            }
        }
        self.modified(now);
        Ok(())
    }

    // ----- the commit protocol --------------------------------------------

    fn start_finish(&mut self, kind: FinishKind, now: Now) {
        self.stop_transfers();
        // A file still being synced is not transferred: the commit drops
        // it, and its attempt is not heard from again.
        for i in 0..self.files.len() {
            self.take_syncing(file_id(i));
        }
        // Leaving CONNECTING/TRANSFERRING ends the download-time spell. The
        // job is QUEUED only for the moment of the commit, not worth a
        // notification: the commit's end brings one.
        if matches!(self.state, JobState::Connecting | JobState::Transferring) {
            self.transition(JobState::Queued, now);
        }
        for (i, f) in self.files.iter_mut().enumerate() {
            let fate = match kind {
                FinishKind::Complete if f.transferred => Fate::Keep,
                // A stalled commit may have published some files; those stay.
                FinishKind::Cancel(_) if f.completed => Fate::Keep,
                _ => Fate::Drop,
            };
            if f.fate != Some(fate) {
                f.fate = Some(fate);
                self.dirty_files.insert(file_id(i));
            }
        }
        let undeleted = self
            .finish
            .take()
            .map(|f| f.record.undeleted)
            .unwrap_or_default();
        self.finish = Some(Finish {
            record: FinishRecord {
                kind,
                undeleted,
                stalled: false,
            },
            outstanding: BTreeSet::new(),
            rename_failures: Vec::new(),
        });
        self.modified(now);
        // The intent is durable before any file is touched.
        self.sync_needed = true;
        self.flush();
        self.issue_deletes();
        self.run_finish(now);
    }

    /// Deletes the temp files of dropped files that a transfer ever touched.
    fn issue_deletes(&mut self) {
        let Some(finish) = &mut self.finish else {
            return;
        };
        for (i, f) in self.files.iter().enumerate() {
            if f.fate == Some(Fate::Drop) && f.touched {
                // Deleted again: an earlier failure of this file is replaced
                // by this attempt's result.
                let before = finish.record.undeleted.len();
                finish.record.undeleted.retain(|u| u.file != file_id(i));
                if finish.record.undeleted.len() != before {
                    self.job_dirty = true;
                }
                finish.outstanding.insert((file_id(i), Step::Delete));
                self.effects.push_back(Effect::DeleteTemp {
                    file: file_id(i),
                    temp: f.temp.clone(),
                });
            }
        }
    }

    /// Issues the publish steps still to do, then ends the commit if nothing
    /// is outstanding.
    fn run_finish(&mut self, now: Now) {
        let Some(finish) = &mut self.finish else {
            return;
        };
        finish.rename_failures.clear();
        if finish.record.stalled {
            // Recorded before any file is touched again.
            finish.record.stalled = false;
            self.job_dirty = true;
            self.sync_needed = true;
            self.flush();
        }
        let Some(finish) = &mut self.finish else {
            return;
        };
        for (i, f) in self.files.iter().enumerate() {
            if f.fate == Some(Fate::Keep) && !f.completed {
                finish.outstanding.insert((file_id(i), Step::Publish));
                self.effects.push_back(Effect::Publish {
                    file: file_id(i),
                    temp: f.temp.clone(),
                    local: f.local.clone(),
                    modified: f.modified,
                    size: f.size,
                });
            }
        }
        self.end_finish_if_done(now);
    }

    fn step_done(
        &mut self,
        id: FileId,
        step: Step,
        result: Result<Option<String>, String>,
        now: Now,
    ) -> EventOutcome {
        let Some(finish) = &mut self.finish else {
            return EventOutcome::Stale;
        };
        if !finish.outstanding.remove(&(id, step)) {
            return EventOutcome::Stale;
        }
        let Some(file) = self.files.get_mut(id.index()) else {
            return EventOutcome::Stale;
        };
        match (step, result) {
            (Step::Publish, Ok(temp_left)) => {
                file.completed = true;
                self.dirty_files.insert(id);
                if let Some(cause) = temp_left {
                    finish.record.undeleted.push(FileFailure {
                        file: id,
                        path: file.temp.clone(),
                        cause,
                    });
                    self.job_dirty = true;
                }
            }
            (Step::Publish, Err(cause)) => finish.rename_failures.push(FileFailure {
                file: id,
                path: file.local.clone(),
                cause,
            }),
            (Step::Delete, Ok(_)) => {}
            (Step::Delete, Err(cause)) => {
                finish.record.undeleted.push(FileFailure {
                    file: id,
                    path: file.temp.clone(),
                    cause,
                });
                self.job_dirty = true;
            }
        }
        self.end_finish_if_done(now);
        EventOutcome::Applied
    }

    fn end_finish_if_done(&mut self, now: Now) {
        let Some(finish) = &mut self.finish else {
            return;
        };
        if !finish.outstanding.is_empty() {
            return;
        }
        if !finish.rename_failures.is_empty() {
            // BITS: the job stays in the queue, TRANSFERRED; renamed files stay
            // published and `completed` says which.
            let failures = std::mem::take(&mut finish.rename_failures);
            finish.record.stalled = true;
            // Not a new JobTransferred (the files did not change), and BITS
            // sends no JobModification for a change to TRANSFERRED.
            self.transition(JobState::Transferred, now);
            self.sync_needed = true;
            self.job_dirty = true;
            self.tail
                .push(Effect::Answer(Err(CommandError::RenameFailed(failures))));
            return;
        }
        let Some(finish) = self.finish.take() else {
            return;
        };
        let record = finish.record;
        let with_fate = |fate| -> Vec<FileId> {
            (0..self.files.len())
                .map(file_id)
                .filter(|&id| self.file(id).is_some_and(|f| f.fate == Some(fate)))
                .collect()
        };
        let (state, answer) = match record.kind {
            FinishKind::Complete => {
                let (saved, dropped) = (with_fate(Fate::Keep), with_fate(Fate::Drop));
                let result = if !dropped.is_empty() {
                    CompleteResult::PartialComplete
                } else if !record.undeleted.is_empty() {
                    CompleteResult::UnableToDeleteFiles
                } else {
                    CompleteResult::Complete
                };
                let answer = CompleteAnswer {
                    result,
                    saved,
                    dropped,
                    undeleted: record.undeleted,
                };
                (JobState::Acknowledged, Answer::Complete(answer))
            }
            FinishKind::Cancel(reason) => {
                let result = if record.undeleted.is_empty() {
                    CancelResult::Ok
                } else {
                    CancelResult::UnableToDeleteFiles
                };
                let answer = CancelAnswer {
                    result,
                    reason,
                    undeleted: record.undeleted,
                };
                (JobState::Cancelled, Answer::Cancel(answer))
            }
        };
        self.set_state(state, now);
        self.retain_until = Some(now.after(self.config.retention));
        self.inactivity_deadline = None;
        self.answer = Some(answer.clone());
        self.tail.push(Effect::Answer(Ok(answer)));
    }

    // ----- transfers ------------------------------------------------------

    fn transfer_event(&mut self, id: FileId, event: TransferEvent, now: Now) {
        match event {
            TransferEvent::Responded {
                offset,
                size,
                validator,
                modified,
                ranges,
            } => {
                if let Some(f) = self.files.get_mut(id.index()) {
                    f.no_ranges = !ranges;
                }
                self.responded(id, offset, size, validator, modified, now);
            }
            TransferEvent::Received { offset } => {
                if let Some(f) = self.files.get_mut(id.index()) {
                    let offset = f.size.map_or(offset, |size| offset.min(size));
                    f.received = f.received.max(offset);
                }
            }
            TransferEvent::Checkpointed { offset } => {
                let Some(f) = self.files.get_mut(id.index()) else {
                    return;
                };
                if offset <= f.durable || f.size.is_some_and(|s| offset > s) {
                    return;
                }
                f.durable = offset;
                f.received = f.received.max(offset);
                let progressed = offset > f.high_water;
                f.high_water = f.high_water.max(offset);
                self.dirty_files.insert(id);
                if progressed {
                    self.no_progress_deadline = None;
                    self.failures_in_a_row = 0;
                }
                self.modified(now);
            }
            TransferEvent::Drained { size } => {
                let Some(running) = self.take_running(id) else {
                    return;
                };
                if let Some(f) = self.files.get_mut(id.index()) {
                    f.received = f.received.max(size);
                    f.syncing = Some(running.attempt);
                    self.syncing += 1;
                }
                self.settle_active(now);
            }
            TransferEvent::Transferred { size } => {
                self.take_syncing(id);
                let Some(f) = self.files.get_mut(id.index()) else {
                    return;
                };
                f.size = Some(size);
                f.durable = size;
                f.high_water = f.high_water.max(size);
                f.transferred = true;
                self.take_running(id);
                if let Some(f) = self.files.get_mut(id.index()) {
                    f.received = size;
                }
                self.transferred += 1;
                while self.files.get(self.cursor).is_some_and(|f| f.transferred) {
                    self.cursor += 1;
                }
                self.dirty_files.insert(id);
                self.no_progress_deadline = None;
                self.failures_in_a_row = 0;
                // Lazy, like a checkpoint: the shell fsynced the bytes before
                // reporting them, so a record that reaches the disk never
                // claims bytes that are not there; one lost in a crash only
                // means the file resumes from its last durable checkpoint.
                // The job's own change to TRANSFERRED is a synced write that
                // comes after it in the store's order. A synced write per
                // file made each job wait for one WAL fsync per file:
                // 2,000 files of 64 KiB took 3.5 times as long.
                self.modified(now);
                self.tail
                    .push(Effect::Notify(Notification::FileTransferred(id)));
                self.settle_active(now);
            }
            TransferEvent::Failed(error) => {
                if !self.state.is_active()
                    && self
                        .files
                        .get(id.index())
                        .is_some_and(|f| f.syncing.is_some())
                {
                    // A sync failed after the job stopped (suspended, or
                    // another file's error): the file waits for its next
                    // attempt, and the job's state stands.
                    self.take_syncing(id);
                    if let Some(f) = self.files.get_mut(id.index()) {
                        f.last_attempt = 0;
                    }
                    return;
                }
                self.fail(Some(id), error, now);
            }
        }
    }

    fn responded(
        &mut self,
        id: FileId,
        offset: u64,
        size: Option<u64>,
        validator: Option<Validator>,
        modified: Option<UtcTime>,
        now: Now,
    ) {
        let Some(f) = self.files.get_mut(id.index()) else {
            return;
        };
        if offset != 0 && offset != f.durable {
            let error = TransferError::transient(
                ErrorContext::RemoteFile,
                "invalid_server_response",
                format!(
                    "the response starts at byte {offset}, the request asked for {}",
                    f.durable
                ),
            );
            // The attempt is still streaming: stop it explicitly, and accept
            // nothing more from it (not even a last checkpoint).
            if let Some(running) = self.take_running(id) {
                self.effects.push_back(Effect::StopTransfer {
                    file: id,
                    attempt: running.attempt,
                });
            }
            if let Some(f) = self.files.get_mut(id.index()) {
                f.last_attempt = 0;
            }
            self.fail(Some(id), error, now);
            return;
        }
        if offset > 0 && (changed(&f.size, &size) || changed(&f.validator, &validator)) {
            // The entity changed but the server resumed it anyway: never
            // splice; restart this file (only this one) from zero.
            f.durable = 0;
            f.size = None;
            f.validator = None;
            if let Some(running) = self.take_running(id) {
                self.effects.push_back(Effect::StopTransfer {
                    file: id,
                    attempt: running.attempt,
                });
            }
            self.dirty_files.insert(id);
            // The slot is still the job's: start again straight away.
            if self.handle_grant(now).is_none() {
                self.settle_active(now);
            }
            return;
        }
        if offset == 0 {
            // A full response: the file starts again from zero (the entity
            // changed, or the server ignores ranges). Finished bytes of other
            // files are untouched.
            f.durable = 0;
            f.received = 0;
        }
        if modified.is_some() {
            f.modified = modified;
        }
        if offset == 0 {
            f.size = size;
            f.validator = validator;
        } else {
            // A resumed response without a validator or size does not make
            // the recorded ones wrong: keep them for the next If-Range.
            f.size = size.or(f.size);
            f.validator = validator.or(f.validator.take());
        }
        if let Some(running) = &mut f.running
            && !running.responded
        {
            running.responded = true;
            self.responded += 1;
        }
        self.dirty_files.insert(id);
        self.settle_active(now);
    }

    /// A transfer failed (`file`), or the job itself did (`None`).
    fn fail(&mut self, file: Option<FileId>, error: TransferError, now: Now) {
        if let Some(id) = file {
            // The attempt is over by itself: no stop to send, and nothing
            // more is accepted from it.
            self.take_running(id);
            self.take_syncing(id);
            if let Some(f) = self.files.get_mut(id.index()) {
                f.last_attempt = 0;
            }
        }
        // One failing file holds the whole job: the others stop too.
        self.stop_transfers();
        self.error_count += 1;
        let class = if self.props.no_progress_timeout.is_zero() {
            ErrorClass::Fatal
        } else {
            error.class
        };
        let retry_after = error
            .retry_after
            .map(|d| d.min(self.config.max_retry_after))
            .unwrap_or_default();
        let object = JobError {
            context: error.context,
            code: error.code,
            message: error.message,
            file,
            unreachable_host: error.unreachable_host,
        };
        match class {
            ErrorClass::Fatal => {
                self.set_state(JobState::Error, now);
                self.error = Some(object);
            }
            ErrorClass::Transient => {
                let deadline = *self
                    .no_progress_deadline
                    .get_or_insert_with(|| now.after(self.props.no_progress_timeout));
                if deadline.reached(now) {
                    self.set_state(JobState::Error, now);
                } else {
                    self.set_state(JobState::TransientError, now);
                    self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
                    self.retry_at = Some(now.after(self.retry_delay(retry_after)));
                }
                self.error = Some(object);
            }
        }
    }

    fn retry(&mut self, now: Now) {
        self.set_state(JobState::Queued, now);
        self.settle_active(now);
    }

    fn stop_transfers(&mut self) {
        let ids: Vec<FileId> = self.running.iter().copied().collect();
        for id in ids {
            if let Some(running) = self.take_running(id) {
                self.effects.push_back(Effect::StopTransfer {
                    file: id,
                    attempt: running.attempt,
                });
            }
        }
    }

    /// Ends a file's running transfer, keeping the counters right; bytes
    /// received but not durable are forgotten.
    fn take_running(&mut self, id: FileId) -> Option<Running> {
        let f = self.files.get_mut(id.index())?;
        let running = f.running.take()?;
        f.received = f.durable;
        self.running.remove(&id);
        if running.responded {
            self.responded = self.responded.saturating_sub(1);
        }
        Some(running)
    }

    /// Ends a file's sync (its attempt reported how it ended).
    fn take_syncing(&mut self, id: FileId) {
        if let Some(f) = self.files.get_mut(id.index())
            && f.syncing.take().is_some()
        {
            f.received = f.durable;
            self.syncing = self.syncing.saturating_sub(1);
        }
    }

    /// In an active state, picks QUEUED, CONNECTING, TRANSFERRING or
    /// TRANSFERRED from what the files are doing.
    fn settle_active(&mut self, now: Now) {
        if !self.state.is_active() {
            return;
        }
        let next = if self.transferred == self.files.len() {
            JobState::Transferred
        } else if self.responded > 0 || self.syncing > 0 {
            JobState::Transferring
        } else if !self.running.is_empty() {
            JobState::Connecting
        } else {
            JobState::Queued
        };
        if next != self.state {
            self.set_state(next, now);
        }
    }

    /// Moves to `next`, keeping the timers, the error object, the
    /// download-time count and the notifications consistent with it.
    fn set_state(&mut self, next: JobState, now: Now) {
        if !self.transition(next, now) {
            return;
        }
        match next {
            JobState::Transferred => self.tail.push(Effect::Notify(Notification::JobTransferred)),
            JobState::Error => self.tail.push(Effect::Notify(Notification::JobError)),
            _ => self.tail.push(Effect::Notify(Notification::JobModified)),
        }
    }

    /// [`Job::set_state`] without the notification; false if nothing changed.
    fn transition(&mut self, next: JobState, now: Now) -> bool {
        let prev = self.state;
        if prev == next {
            return false;
        }
        let counting = |s: JobState| matches!(s, JobState::Connecting | JobState::Transferring);
        if counting(prev)
            && !counting(next)
            && let Some(since) = self.active_since.take()
        {
            self.download_time_used = self
                .download_time_used
                .saturating_add(now.mono.saturating_since(since.mono));
        }
        if !counting(prev) && counting(next) {
            self.active_since = Some(Stamp::at(now));
        }
        if matches!(prev, JobState::Error | JobState::TransientError) {
            self.error = None;
            self.retry_at = None;
        }
        self.state = next;
        // QUEUED, CONNECTING and TRANSFERRING say only what the files are
        // doing at the moment, and a restored job starts QUEUED from any of
        // them: moves among them ride along lazily. Small files flip a job
        // between CONNECTING and TRANSFERRING once per file; a synced write
        // each cost a WAL fsync per file (2,000 files of 64 KiB: 6.5 s
        // instead of 1.5 s once their data fsyncs were gone).
        let passing = |s: JobState| {
            matches!(
                s,
                JobState::Queued | JobState::Connecting | JobState::Transferring
            )
        };
        if !(passing(prev) && passing(next)) {
            self.sync_needed = true;
        }
        self.modified(now);
        if next == JobState::Transferred {
            self.transferred_at = Some(now.wall);
        }
        true
    }

    /// When the maximum download time runs out, while it is counting.
    fn download_deadline(&self) -> Option<Stamp> {
        let since = self.active_since?;
        let left = self
            .props
            .max_download_time
            .saturating_sub(self.download_time_used);
        Some(Stamp {
            mono: since.mono.saturating_add(left),
            wall: since.wall.saturating_add(left),
        })
    }

    fn modified(&mut self, now: Now) {
        self.modified = now.wall;
        self.job_dirty = true;
        if !self.state.is_final() {
            self.inactivity_deadline = Some(now.after(self.config.inactivity_timeout));
        }
    }

    fn file(&self, id: FileId) -> Option<&File> {
        self.files.get(id.index())
    }

    // ----- persistence ----------------------------------------------------

    /// Emits what changed as one [`Effect::Persist`], then the notifications
    /// and answers that describe it.
    fn flush(&mut self) {
        if self.job_dirty || !self.dirty_files.is_empty() {
            let files = std::mem::take(&mut self.dirty_files)
                .into_iter()
                .filter_map(|id| self.file_record(id))
                .collect();
            let job_record = self.job_dirty.then(|| Box::new(self.record()));
            let durability = if self.sync_needed {
                Durability::Sync
            } else {
                Durability::Lazy
            };
            self.effects.push_back(Effect::Persist(Batch {
                job: self.id,
                job_record,
                files,
                durability,
            }));
            self.job_dirty = false;
        }
        self.sync_needed = false;
        self.effects.extend(self.tail.drain(..));
    }

    /// The job's record as of now.
    pub fn record(&self) -> JobRecord {
        JobRecord {
            id: self.id,
            kind: self.kind,
            owner: self.owner.clone(),
            props: self.props.clone(),
            state: self.state,
            error: self.error.clone(),
            error_count: self.error_count,
            created: self.created,
            modified: self.modified,
            transferred_at: self.transferred_at,
            download_time_used: self.download_time_used,
            download_deadline: self.download_deadline().map(|s| s.wall),
            retry_at: self.retry_at.map(|s| s.wall),
            no_progress_deadline: self.no_progress_deadline.map(|s| s.wall),
            inactivity_deadline: self.inactivity_deadline.map(|s| s.wall),
            retain_until: self.retain_until.map(|s| s.wall),
            finish: self.finish.as_ref().map(|f| f.record.clone()),
            answer: self.answer.clone(),
            file_count: file_id(self.files.len()).0,
            next_attempt: self.next_attempt,
        }
    }

    /// Every file's record as of now.
    pub fn file_records(&self) -> Vec<FileRecord> {
        (0..self.files.len())
            .filter_map(|i| self.file_record(file_id(i)))
            .collect()
    }

    fn file_record(&self, id: FileId) -> Option<FileRecord> {
        let f = self.files.get(id.index())?;
        Some(FileRecord {
            job: self.id,
            file: id,
            remote: f.remote.clone(),
            local: f.local.clone(),
            temp: f.temp.clone(),
            size: f.size,
            durable: f.durable,
            high_water: f.high_water,
            validator: f.validator.clone(),
            modified: f.modified,
            transferred: f.transferred,
            completed: f.completed,
            touched: f.touched,
            fate: f.fate,
        })
    }

    /// A job rebuilt from its records after a restart.
    ///
    /// Jobs that were CONNECTING or TRANSFERRING come back QUEUED (they
    /// continue once the scheduler grants slots); persisted deadlines are
    /// mapped onto this process's monotonic clock; a commit whose intent was
    /// recorded rolls forward (its effects are ready to poll).
    pub fn restore(
        record: JobRecord,
        mut files: Vec<FileRecord>,
        config: CoreConfig,
        now: Now,
    ) -> Result<Self, crate::DecodeError> {
        let malformed = |what: String| crate::DecodeError::Malformed(what);
        files.sort_by_key(|f| f.file);
        if files.len() != record.file_count as usize {
            return Err(malformed(format!(
                "job {} has {} file records, expected {}",
                record.id,
                files.len(),
                record.file_count
            )));
        }
        for (i, f) in files.iter().enumerate() {
            if f.job != record.id || f.file.index() != i {
                return Err(malformed(format!(
                    "file record {} of job {} out of place",
                    f.file, f.job
                )));
            }
        }
        let restore = |t: Option<UtcTime>| t.map(|w| Stamp::restore(w, now));
        // Time until the persisted download deadline is what was left of the
        // maximum download time (time the process was down counts, as sleep
        // does in BITS).
        let download_time_used = match record.download_deadline {
            Some(deadline) => record
                .props
                .max_download_time
                .saturating_sub(deadline.saturating_since(now.wall)),
            None => record.download_time_used,
        };
        let state = match record.state {
            JobState::Connecting | JobState::Transferring => JobState::Queued,
            s => s,
        };
        let transferred = files.iter().filter(|f| f.transferred).count();
        let cursor = files
            .iter()
            .position(|f| !f.transferred)
            .unwrap_or(files.len());
        let locals = files.iter().map(|f| f.local.clone()).collect();
        let mut job = Self {
            id: record.id,
            kind: record.kind,
            owner: record.owner,
            props: record.props,
            state,
            running: BTreeSet::new(),
            responded: 0,
            syncing: 0,
            transferred,
            cursor,
            locals,
            files: files
                .into_iter()
                .map(|f| File {
                    remote: f.remote,
                    local: f.local,
                    temp: f.temp,
                    size: f.size,
                    durable: f.durable,
                    received: f.durable,
                    high_water: f.high_water,
                    validator: f.validator,
                    modified: f.modified,
                    transferred: f.transferred,
                    completed: f.completed,
                    touched: f.touched,
                    fate: f.fate,
                    running: None,
                    syncing: None,
                    no_ranges: false,
                    last_attempt: 0,
                })
                .collect(),
            error: record.error,
            error_count: record.error_count,
            created: record.created,
            modified: record.modified,
            transferred_at: record.transferred_at,
            download_time_used,
            active_since: None,
            retry_at: restore(record.retry_at),
            no_progress_deadline: restore(record.no_progress_deadline),
            failures_in_a_row: 0,
            inactivity_deadline: restore(record.inactivity_deadline),
            retain_until: restore(record.retain_until),
            finish: None,
            answer: record.answer,
            next_attempt: record.next_attempt,
            config,
            forgotten: false,
            effects: VecDeque::new(),
            tail: Vec::new(),
            job_dirty: state != record.state,
            sync_needed: false,
            dirty_files: BTreeSet::new(),
        };
        if let Some(finish) = record.finish {
            let stalled = finish.stalled;
            job.finish = Some(Finish {
                record: finish,
                outstanding: BTreeSet::new(),
                rename_failures: Vec::new(),
            });
            if !stalled {
                // Roll forward: deletes and publishes are idempotent.
                job.issue_deletes();
                job.run_finish(now);
            }
        }
        job.flush();
        Ok(job)
    }
}

/// The longest time setting kept (100 years): longer ones mean "never" and
/// are capped, so deadlines stay within both clocks' range.
const MAX_SETTING: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Both known and different.
fn changed<T: PartialEq>(old: &Option<T>, new: &Option<T>) -> bool {
    old.is_some() && new.is_some() && old != new
}

fn file_id(index: usize) -> FileId {
    // Invariant: `add_files` refuses to grow a job past u32::MAX files.
    FileId(u32::try_from(index).unwrap_or(u32::MAX))
}

fn bytes_shown(f: &File) -> u64 {
    if f.running.is_some() || f.syncing.is_some() {
        f.received.max(f.durable)
    } else {
        f.durable
    }
}

/// The temp file of a file: hidden, in the destination directory (same
/// filesystem, so the rename at Complete is atomic), named after the engine,
/// the job and the file so it never collides and can be found again after a
/// crash: `.ferry-<engine id>-<job>-<n>.part`.
fn temp_name(local: &str, engine: u64, job: JobId, file: FileId) -> String {
    let dir = local.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{dir}/{}", temp_file_name(engine, job, file))
}

/// The file name part of a temp file's path.
pub fn temp_file_name(engine: u64, job: JobId, file: FileId) -> String {
    format!(".ferry-{engine:016x}-{}-{}.part", job.0.simple(), file.0)
}

/// Whether `name` (a file name, no directory) is a temp file of `engine`.
pub fn is_temp_file_name(name: &str, engine: u64) -> bool {
    let Some(rest) = name.strip_prefix(&format!(".ferry-{engine:016x}-")) else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(".part") else {
        return false;
    };
    let Some((job, file)) = rest.split_once('-') else {
        return false;
    };
    job.len() == 32
        && job.bytes().all(|b| b.is_ascii_hexdigit())
        && !file.is_empty()
        && file.bytes().all(|b| b.is_ascii_digit())
}

/// splitmix64: the backoff's jitter draw.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_job_set_up_at_creation_is_written_once() {
        let now = Now::new(
            MonoTime::from_elapsed(Duration::from_secs(1)),
            UtcTime::from_unix_millis(1_700_000_000_000),
        );
        let alice = Principal::user("alice");
        let id = JobId(uuid::Uuid::from_u128(7));
        let mut job = Job::create(
            id,
            &alice,
            JobSpec::download("j"),
            CoreConfig::default(),
            now,
        )
        .expect("created");
        let files = (0..3)
            .map(|i| FileSpec::new(format!("http://h/f{i}"), format!("/d/f{i}")))
            .collect();
        let replies = job
            .set_up(
                &alice,
                vec![
                    Command::AddFiles(files),
                    Command::Set(Property::ParallelFiles(2)),
                    Command::Resume,
                ],
                now,
            )
            .expect("set up");
        assert!(matches!(replies.first(), Some(Reply::Added(ids)) if ids.len() == 3));
        let effects: Vec<Effect> = std::iter::from_fn(|| job.poll_effect()).collect();
        let persists: Vec<&Batch> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Persist(batch) => Some(batch),
                _ => None,
            })
            .collect();
        assert_eq!(persists.len(), 1, "{effects:?}");
        let batch = persists[0];
        assert_eq!(batch.durability, Durability::Sync);
        assert_eq!(batch.files.len(), 3);
        let record = batch.job_record.as_deref().expect("the job's record");
        assert_eq!(record.props.parallel_files, 2);
        assert_eq!(record.state, JobState::Queued);
        // The write comes first; the creation's changes are one notification.
        assert!(matches!(effects.first(), Some(Effect::Persist(_))));
        let modified = effects
            .iter()
            .filter(|e| matches!(e, Effect::Notify(Notification::JobModified)))
            .count();
        assert_eq!(modified, 1, "{effects:?}");
        // Only commands that set a job up.
        assert!(matches!(
            job.set_up(&alice, vec![Command::Complete], now),
            Err(CommandError::InvalidArgument(_))
        ));
        // A refusal is returned as such (the shell drops the job).
        let mut other = Job::create(
            id,
            &alice,
            JobSpec::download("k"),
            CoreConfig::default(),
            now,
        )
        .expect("created");
        assert_eq!(
            other.set_up(&alice, vec![Command::Resume], now),
            Err(CommandError::EmptyJob)
        );
    }

    #[test]
    fn temp_names_are_recognised_only_for_their_engine() {
        let job = JobId(uuid::Uuid::from_u128(0xabc));
        let name = temp_file_name(0x1f, job, FileId(12));
        assert_eq!(
            name,
            ".ferry-000000000000001f-00000000000000000000000000000abc-12.part"
        );
        assert!(is_temp_file_name(&name, 0x1f));
        assert!(!is_temp_file_name(&name, 0x20));
        for other in [
            "a.part",
            ".ferry-000000000000001f-.part",
            ".ferry-000000000000001f-xyz-1.part",
            ".ferry-000000000000001f-00000000000000000000000000000abc-.part",
            ".ferry-000000000000001f-00000000000000000000000000000abc-1.tmp",
            ".ferry-000000000000001f-00000000000000000000000000000abc-1a.part",
        ] {
            assert!(!is_temp_file_name(other, 0x1f), "{other}");
        }
        assert_eq!(
            temp_name("/srv/x/file.iso", 0x1f, job, FileId(0)),
            "/srv/x/.ferry-000000000000001f-00000000000000000000000000000abc-0.part"
        );
    }
}

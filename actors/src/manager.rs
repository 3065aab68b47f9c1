//! `Manager`: one per engine. The job registry, the grant of transfer slots
//! (global, per host; the policy is ferry-core's pure `schedule::Scheduler`,
//! which the Manager feeds and whose grants it hands out; per job is the
//! job's own parallel-files limit, enforced by the core), the event bus, and
//! the retry of temp files whose deletion failed.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use ferry_core::{
    JobId, JobState, Priority, Waiting,
    schedule::{Grant, Scheduler},
    window::{InForce, Schedule, WindowCap},
};
use futures_util::future::join_all;
use tokio::sync::mpsc;

use crate::{
    access::Access,
    engine::{Event, EventKind, Shared},
    file_actor::blocking,
    fs,
    store::StoreBatch,
    supervisor::{HostUp, JobSupervisor, Shutdown},
};

/// Events a subscriber may have queued before it is dropped as too slow.
const SUBSCRIBER_BUFFER: usize = 16_384;

struct Entry {
    addr: Addr<JobSupervisor>,
    owner: String,
    /// As its supervisor last reported it: exact, but for moves among
    /// QUEUED, CONNECTING and TRANSFERRING, which are not reported (what
    /// the Manager asks of a state, final, TRANSIENT_ERROR, TRANSFERRED or
    /// ERROR, never depends on them).
    state: JobState,
}

pub(crate) struct Manager {
    shared: std::sync::Arc<Shared>,
    jobs: HashMap<JobId, Entry>,
    /// The jobs in TRANSIENT_ERROR (told when a host answers again): kept
    /// apart so that a response, which every transfer reports, costs no
    /// pass over every job.
    transient: HashSet<JobId>,
    /// The slot policy (ferry-core's pure scheduler): requests, held
    /// slots, budgets, and why waiting jobs wait.
    slots: Scheduler,
    event_seq: u64,
    subscribers: Vec<mpsc::Sender<Event>>,
    /// Temp files to delete again, with the user whose rights the delete
    /// runs with (empty: the engine's own).
    pending_deletes: Vec<(String, String)>,
    /// How long an equal priority holds a global slot while others wait
    /// (`EngineConfig::time_slice`, changeable at runtime).
    time_slice: std::time::Duration,
    /// The check of due slices, re-armed when the slice changes.
    tick: Option<SpawnHandle>,
    /// The engine's own bandwidth cap (outside every window).
    base_cap: Option<u64>,
    /// Bandwidth windows by time of day and weekday.
    schedule: Schedule,
    /// What the schedule applied at the last check.
    bandwidth_now: crate::BandwidthNow,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl Manager {
    pub(crate) fn new(
        shared: std::sync::Arc<Shared>,
        pending_deletes: Vec<(String, String)>,
    ) -> Self {
        let slots = Scheduler::new(
            shared.config.max_transfers,
            shared.config.max_transfers_per_host,
        );
        let time_slice = shared.config.time_slice;
        let base_cap = shared.config.max_bytes_per_second;
        let schedule = Schedule::new(shared.config.bandwidth_schedule.clone());
        Self {
            shared,
            jobs: HashMap::new(),
            transient: HashSet::new(),
            slots,
            event_seq: 0,
            subscribers: Vec::new(),
            pending_deletes,
            time_slice,
            tick: None,
            base_cap,
            schedule,
            bandwidth_now: crate::BandwidthNow::default(),
        }
    }

    /// Applies the bandwidth schedule at this moment: the cap in force
    /// (a window's, else the engine's own) and the pause of background
    /// transfers; the grants a pause's end allows.
    fn apply_schedule(&mut self) -> Vec<Grant> {
        let now = self.shared.clock.now().mono;
        // No schedule: nothing to read the local time for.
        let (in_force, minute_start) = if self.schedule.windows().is_empty() {
            (InForce::default(), None)
        } else {
            let (civil, minute_start) = crate::clock::civil_now();
            (self.schedule.at(civil), Some(minute_start))
        };
        let cap = match in_force.cap {
            Some(WindowCap::Bytes(n)) => Some(n),
            Some(WindowCap::Unlimited) => None,
            Some(WindowCap::Pause) | None => self.base_cap,
        };
        if self.shared.throttle.rate() != cap {
            self.shared.throttle.set(cap);
        }
        // Counted from the start of the current minute, so the same
        // window end comes out every tick.
        let until = in_force.minutes_left.zip(minute_start).map(|(m, start)| {
            start.saturating_add(std::time::Duration::from_secs(u64::from(m) * 60))
        });
        let paused = in_force.cap == Some(WindowCap::Pause);
        self.bandwidth_now = crate::BandwidthNow {
            window: in_force.window,
            max_bytes_per_second: cap,
            background_paused: paused,
            until,
        };
        self.slots.at(now).pause_background(paused.then_some(until))
    }

    /// Checks for due slices often enough that a slice ends within a
    /// second of its due time (a priority change too).
    fn arm_tick(&mut self, ctx: &mut Context<Self>) {
        if let Some(tick) = self.tick.take() {
            ctx.cancel_future(tick);
        }
        let every = self
            .time_slice
            .min(std::time::Duration::from_secs(1))
            .max(std::time::Duration::from_millis(10));
        self.tick = Some(ctx.run_interval(every, |act, ctx| {
            let grants = act.apply_schedule();
            act.grant(grants);
            act.preempt(ctx);
        }));
    }

    /// Hands the scheduler's grants to their jobs; a grant for a job that
    /// left the registry is given back at once.
    fn grant(&mut self, grants: Vec<Grant>) {
        // In the scheduler's order (priority, then arrival).
        let mut grants = std::collections::VecDeque::from(grants);
        while let Some(grant) = grants.pop_front() {
            match self.jobs.get(&grant.job) {
                Some(entry) => entry
                    .addr
                    .do_send(crate::supervisor::Grant { host: grant.host }),
                None => grants.extend(
                    self.slots
                        .at(self.shared.clock.now().mono)
                        .release(grant.job, &grant.host),
                ),
            }
        }
        self.publish_contention();
    }

    /// Publishes how many requests wait for a slot (see
    /// [`Shared::slot_contention`]): after every change of the scheduler
    /// (each ends in [`Manager::grant`], but for preemption and takes).
    /// A supervisor reads it a moment late at worst: a request still in
    /// this mailbox is not counted yet, and the renewal that follows a kept
    /// slot then leaves the slot's time alone (`Scheduler::renew`).
    fn publish_contention(&self) {
        self.shared.slot_contention.store(
            self.slots.contention(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn emit(&mut self, mut event: Event) {
        self.event_seq += 1;
        event.seq = self.event_seq;
        self.subscribers
            .retain(|tx| match tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(message = "Event subscriber too slow; dropped.");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    /// Deletes again the temp files whose deletion failed before.
    fn retry_pending_deletes(&mut self, ctx: &mut Context<Self>) {
        if self.pending_deletes.is_empty() {
            return;
        }
        let paths = std::mem::take(&mut self.pending_deletes);
        let store = self.shared.store.clone();
        let identities = self.shared.config.identities.clone();
        let work = async move {
            let mut left = Vec::new();
            for (path, user) in paths {
                let target = std::path::PathBuf::from(&path);
                // The job is gone: its directory pins with it.
                let access = match (user.is_empty(), identities.is_some()) {
                    (true, false) => Access::engine(),
                    (false, _) => Access::of(identities.as_ref(), &user, &Default::default()),
                    (true, true) => {
                        // Recorded by a build that did not say for whom:
                        // never delete with the engine's own rights in a
                        // user's directory.
                        tracing::warn!(message = "Dropped a pending delete of unknown owner.", %path);
                        let _ = store.write_lazy(StoreBatch::remove_pending_delete(&path));
                        continue;
                    }
                };
                match blocking(move || fs::delete(&access, &target)).await {
                    Ok(()) => {
                        let _ = store.write_lazy(StoreBatch::remove_pending_delete(&path));
                    }
                    Err(_) => left.push((path, user)),
                }
            }
            left
        };
        ctx.spawn(work.into_actor(self).map(|left, act, _| {
            act.pending_deletes.extend(left);
        }));
    }
}

impl Actor for Manager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        self.retry_pending_deletes(ctx);
        ctx.run_interval(self.shared.config.sweep_interval, |act, ctx| {
            act.retry_pending_deletes(ctx);
        });
        self.arm_tick(ctx);
        let grants = self.apply_schedule();
        self.grant(grants);
    }
}

impl Manager {
    /// Asks the jobs whose slots are due (see `Scheduler::preempt_due`) to
    /// give them back; a job that cannot is left alone.
    fn preempt(&mut self, ctx: &mut Context<Self>) {
        let now = self.shared.clock.now().mono;
        let due = self.slots.preempt_due(now, self.time_slice);
        self.publish_contention();
        for job in due {
            let Some(entry) = self.jobs.get(&job) else {
                continue;
            };
            let asked = entry.addr.send(crate::supervisor::Preempt);
            ctx.spawn(asked.into_actor(self).map(move |answer, act, _| {
                if !matches!(answer, Ok(true)) {
                    act.slots.refused(job);
                    act.publish_contention();
                }
            }));
        }
    }
}

/// A supervisor joins the registry.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Register {
    pub(crate) job: JobId,
    pub(crate) addr: Addr<JobSupervisor>,
    pub(crate) owner: String,
    pub(crate) state: JobState,
}

impl Handler<Register> for Manager {
    type Result = ();

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        self.jobs.insert(
            msg.job,
            Entry {
                addr: msg.addr,
                owner: msg.owner,
                state: msg.state,
            },
        );
        self.note_state(msg.job, msg.state);
    }
}

/// A new job asks to join the registry: refused when its owner already has
/// `limit` unfinished jobs (no limit for admins). The supervisor runs only
/// once admitted, so a refused job never reaches the store.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ferry_core::CommandError>")]
pub(crate) struct Admit {
    pub(crate) register: Register,
    pub(crate) limit: Option<usize>,
}

impl Manager {
    /// Keeps [`Manager::transient`] up to date with a job's state.
    fn note_state(&mut self, job: JobId, state: JobState) {
        if state == JobState::TransientError {
            self.transient.insert(job);
        } else {
            self.transient.remove(&job);
        }
        self.count_transient();
    }

    /// Publishes how many jobs wait in TRANSIENT_ERROR (see
    /// [`Shared::transient_jobs`]).
    fn count_transient(&self) {
        self.shared
            .transient_jobs
            .store(self.transient.len(), std::sync::atomic::Ordering::Relaxed);
    }

    fn unfinished_jobs_of(&self, owner: &str) -> usize {
        self.jobs
            .values()
            .filter(|e| e.owner == owner && !e.state.is_final())
            .count()
    }
}

impl Handler<Admit> for Manager {
    type Result = Result<(), ferry_core::CommandError>;

    fn handle(&mut self, msg: Admit, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(limit) = msg.limit
            && self.unfinished_jobs_of(&msg.register.owner) >= limit
        {
            return Err(ferry_core::CommandError::JobQuota { limit });
        }
        <Self as Handler<Register>>::handle(self, msg.register, ctx);
        Ok(())
    }
}

/// Why these jobs got no slot at the last scheduling pass (jobs not named
/// in the answer were not held back by a limit).
#[derive(Debug, Message)]
#[rtype(result = "HashMap<JobId, Waiting>")]
pub(crate) struct Blocked(pub(crate) Vec<JobId>);

impl Handler<Blocked> for Manager {
    type Result = MessageResult<Blocked>;

    fn handle(&mut self, msg: Blocked, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.0
                .into_iter()
                .filter_map(|job| self.slots.blocked(job).map(|w| (job, w.clone())))
                .collect(),
        )
    }
}

/// New transfer budgets: granted at once where they allow more; transfers
/// beyond a lowered budget run on and are not replaced when they end.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct SetLimits(pub(crate) crate::Limits);

impl Handler<SetLimits> for Manager {
    type Result = ();

    fn handle(&mut self, msg: SetLimits, ctx: &mut Context<Self>) {
        let limits = msg.0;
        if limits.time_slice != self.time_slice {
            self.time_slice = limits.time_slice;
            self.arm_tick(ctx);
        }
        self.base_cap = limits.max_bytes_per_second;
        self.schedule = Schedule::new(limits.bandwidth_schedule);
        let mut grants = self
            .slots
            .at(self.shared.clock.now().mono)
            .set_budgets(limits.max_transfers, limits.max_transfers_per_host);
        grants.extend(self.apply_schedule());
        self.grant(grants);
        self.preempt(ctx);
    }
}

/// The limits in force, and what the bandwidth schedule applies now.
#[derive(Debug, Message)]
#[rtype(result = "(crate::Limits, crate::BandwidthNow)")]
pub(crate) struct GetLimits;

impl Handler<GetLimits> for Manager {
    type Result = MessageResult<GetLimits>;

    fn handle(&mut self, _: GetLimits, _: &mut Context<Self>) -> Self::Result {
        let (max_transfers, max_transfers_per_host) = self.slots.budgets();
        MessageResult((
            crate::Limits {
                max_transfers,
                max_transfers_per_host,
                max_bytes_per_second: self.base_cap,
                time_slice: self.time_slice,
                bandwidth_schedule: self.schedule.windows().to_vec(),
            },
            self.bandwidth_now.clone(),
        ))
    }
}

/// How many unfinished jobs an owner has.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub(crate) struct CountJobs(pub(crate) String);

impl Handler<CountJobs> for Manager {
    type Result = usize;

    fn handle(&mut self, msg: CountJobs, _: &mut Context<Self>) -> usize {
        self.unfinished_jobs_of(&msg.0)
    }
}

/// A job's records are gone (retention over): it leaves the registry.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Unregister(pub(crate) JobId);

impl Handler<Unregister> for Manager {
    type Result = ();

    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) {
        self.jobs.remove(&msg.0);
        self.transient.remove(&msg.0);
        self.count_transient();
        let grants = self.slots.at(self.shared.clock.now().mono).forget(msg.0);
        self.grant(grants);
    }
}

/// The address of a job's supervisor.
#[derive(Debug, Message)]
#[rtype(result = "Option<Addr<JobSupervisor>>")]
pub(crate) struct Lookup(pub(crate) JobId);

impl Handler<Lookup> for Manager {
    type Result = Option<Addr<JobSupervisor>>;

    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        self.jobs.get(&msg.0).map(|e| e.addr.clone())
    }
}

/// The supervisors of the jobs `user` may list (all users' with `all`),
/// final jobs excluded.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Addr<JobSupervisor>>")]
pub(crate) struct Listable {
    pub(crate) user: Option<String>,
}

impl Handler<Listable> for Manager {
    type Result = Vec<Addr<JobSupervisor>>;

    fn handle(&mut self, msg: Listable, _: &mut Context<Self>) -> Self::Result {
        self.jobs
            .values()
            .filter(|e| !e.state.is_final())
            .filter(|e| msg.user.as_ref().is_none_or(|u| *u == e.owner))
            .map(|e| e.addr.clone())
            .collect()
    }
}

/// A job's state or owner changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct JobInfo {
    pub(crate) job: JobId,
    pub(crate) owner: String,
    pub(crate) state: JobState,
}

impl Handler<JobInfo> for Manager {
    type Result = ();

    fn handle(&mut self, msg: JobInfo, _: &mut Context<Self>) {
        if let Some(entry) = self.jobs.get_mut(&msg.job) {
            entry.owner = msg.owner;
            entry.state = msg.state;
            self.note_state(msg.job, msg.state);
        }
    }
}

/// A job wants a slot for a transfer to `host`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct RequestSlot {
    pub(crate) job: JobId,
    pub(crate) host: String,
    pub(crate) priority: Priority,
}

impl Handler<RequestSlot> for Manager {
    type Result = ();

    fn handle(&mut self, msg: RequestSlot, _: &mut Context<Self>) {
        let grants =
            self.slots
                .at(self.shared.clock.now().mono)
                .request(msg.job, msg.host, msg.priority);
        self.grant(grants);
    }
}

/// A job's priority changed: its waiting requests move to their place in
/// the new order (keeping their arrival), its held slots count for the new
/// class (a job that becomes foreground leaves the global budget, one that
/// stops being foreground enters it), and the slots are handed out again.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Reprioritize {
    pub(crate) job: JobId,
    pub(crate) priority: Priority,
}

impl Handler<Reprioritize> for Manager {
    type Result = ();

    fn handle(&mut self, msg: Reprioritize, _: &mut Context<Self>) {
        let grants = self
            .slots
            .at(self.shared.clock.now().mono)
            .reprioritize(msg.job, msg.priority);
        self.grant(grants);
    }
}

/// A job started a transfer without a granted slot (the core restarted a
/// file whose slot was already given back): count it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct TakeSlot {
    pub(crate) job: JobId,
    pub(crate) host: String,
    pub(crate) priority: Priority,
}

impl Handler<TakeSlot> for Manager {
    type Result = ();

    fn handle(&mut self, msg: TakeSlot, _: &mut Context<Self>) {
        self.slots
            .at(self.shared.clock.now().mono)
            .take(msg.job, msg.host, msg.priority);
        // It may be over a limit now.
        self.publish_contention();
    }
}

/// A job gave the slot it holds for `host` to its next transfer, without a
/// release and a grant (no other request waited): its time slice counts
/// from now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct RenewSlot {
    pub(crate) job: JobId,
    pub(crate) host: String,
}

impl Handler<RenewSlot> for Manager {
    type Result = ();

    fn handle(&mut self, msg: RenewSlot, _: &mut Context<Self>) {
        self.slots
            .at(self.shared.clock.now().mono)
            .renew(msg.job, &msg.host);
    }
}

/// A job's transfer to `host` ended: its slot is free.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ReleaseSlot {
    pub(crate) job: JobId,
    pub(crate) host: String,
}

impl Handler<ReleaseSlot> for Manager {
    type Result = ();

    fn handle(&mut self, msg: ReleaseSlot, _: &mut Context<Self>) {
        let grants = self
            .slots
            .at(self.shared.clock.now().mono)
            .release(msg.job, &msg.host);
        self.grant(grants);
    }
}

/// A transfer connected to `host`: jobs held in TRANSIENT_ERROR by it may go.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct HostReachable(pub(crate) String);

impl Handler<HostReachable> for Manager {
    type Result = ();

    fn handle(&mut self, msg: HostReachable, _: &mut Context<Self>) {
        for job in &self.transient {
            if let Some(entry) = self.jobs.get(job) {
                entry.addr.do_send(HostUp(msg.0.clone()));
            }
        }
    }
}

/// An event for the subscribers (the job's state is durable).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Emit(pub(crate) Event);

impl Handler<Emit> for Manager {
    type Result = ();

    fn handle(&mut self, msg: Emit, _: &mut Context<Self>) {
        if let Some(entry) = self.jobs.get_mut(&msg.0.job) {
            entry.state = msg.0.state;
            self.note_state(msg.0.job, msg.0.state);
        }
        self.emit(msg.0);
    }
}

/// A new subscriber; it first receives the jobs already TRANSFERRED or in
/// ERROR (as replayed events), then every event.
#[derive(Debug, Message)]
#[rtype(result = "mpsc::Receiver<Event>")]
pub(crate) struct Subscribe;

impl Handler<Subscribe> for Manager {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, _: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        for (job, entry) in &self.jobs {
            let kind = match entry.state {
                JobState::Transferred => EventKind::JobTransferred,
                JobState::Error => EventKind::JobError,
                _ => continue,
            };
            let _ = tx.try_send(Event {
                seq: self.event_seq,
                job: *job,
                owner: entry.owner.clone(),
                state: entry.state,
                kind,
            });
        }
        self.subscribers.push(tx);
        MessageResult(rx)
    }
}

/// A temp file whose deletion failed: retried every sweep interval.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct PendingDelete {
    pub(crate) path: String,
    /// Whose rights the delete runs with.
    pub(crate) user: String,
}

impl Handler<PendingDelete> for Manager {
    type Result = ();

    fn handle(&mut self, msg: PendingDelete, _: &mut Context<Self>) {
        self.pending_deletes.push((msg.path, msg.user));
    }
}

/// Stops every job's transfers and flushes the store; answered when done.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ShutdownAll;

impl Handler<ShutdownAll> for Manager {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: ShutdownAll, _: &mut Context<Self>) -> Self::Result {
        self.slots.clear_waiting();
        // Stopping: no slot is kept for a next file from here on.
        self.shared
            .slot_contention
            .store(usize::MAX, std::sync::atomic::Ordering::Relaxed);
        let stops: Vec<_> = self.jobs.values().map(|e| e.addr.send(Shutdown)).collect();
        Box::pin(
            async move {
                join_all(stops).await;
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                act.jobs.clear();
                act.subscribers.clear();
                ctx.stop();
            }),
        )
    }
}

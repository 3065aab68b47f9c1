//! `JobSupervisor`: one per job. Owns the core [`Job`], feeds it commands and
//! file events, carries out its effects in order, and runs its timer.
//!
//! The supervisor is the core's shell and nothing more: it never decides a
//! state. Its one piece of machinery is the *pump*: effects the job emits go
//! into a queue with the replies that wait for them, and the pump carries
//! them out in order. A synced persist, a stop, or a group of publishes and
//! deletes suspends the pump until done, so a reply queued after a persist is
//! sent only once that persist is durable (every acknowledged command is
//! durable), and Complete's intent is durable before any file is touched.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
    sync::Arc,
};

use actix::{WeakAddr, prelude::*};
use ferry_core::{
    Batch, Command, CommandError, Durability, Effect, EventOutcome, FileEvent, FileId, FileRecord,
    FileView, Job, JobId, JobRecord, JobState, JobView, Notification, Principal, Priority, Reply,
    TransferEvent, TransferOrder,
};
use futures_util::future::join_all;
use tokio::sync::oneshot;

use crate::{
    access::{Access, Pins},
    engine::{EngineError, Event, EventKind, Outcome, Placed, Shared},
    file_actor::{self, Delete, FileActor, Publish, Report, Stop},
    fs,
    manager::{JobInfo, Manager, ReleaseSlot, RequestSlot},
    store::StoreBatch,
};

type Responder = oneshot::Sender<Result<Outcome, EngineError>>;

/// What waits in the pump's queue.
enum Item {
    Effect(Effect),
    /// A notification, with the job's state when it was emitted.
    Notify(Notification, JobState),
    Reply(Responder, Result<Outcome, EngineError>),
}

/// A running transfer: its actor, the attempt, and the host its slot counts
/// against.
struct Running {
    actor: Addr<FileActor>,
    attempt: u64,
    host: String,
}

/// A filesystem step of a commit.
enum Step {
    Publish {
        file: FileId,
        temp: String,
        local: String,
        modified: Option<ferry_core::UtcTime>,
        size: Option<u64>,
    },
    Delete {
        file: FileId,
        temp: String,
    },
}

impl Step {
    fn file(&self) -> FileId {
        match self {
            Self::Publish { file, .. } | Self::Delete { file, .. } => *file,
        }
    }
}

pub(crate) struct JobSupervisor {
    id: JobId,
    job: Job,
    shared: Arc<Shared>,
    manager: WeakAddr<Manager>,
    queue: VecDeque<Item>,
    pumping: bool,
    transfers: HashMap<FileId, Running>,
    /// Transfers whose body arrived whole (`Drained`) and that are writing
    /// and fsyncing its end: their slots are free, their actors and
    /// attempts kept until they report the end.
    syncing: HashMap<FileId, (Addr<FileActor>, u64)>,
    /// The job's own bandwidth cap, shared by its transfers; follows the
    /// job's property (set when the pump goes idle).
    throttle: Arc<crate::limits::Throttle>,
    slot_requested: bool,
    /// The priority the Manager knows this job by (its slot requests and
    /// held slots); a change is sent at once.
    known_priority: Option<Priority>,
    /// Hosts of slots granted but not used by a transfer yet (a grant, or a
    /// stop followed at once by a restart of the same file); released when
    /// the pump goes idle.
    spare_slots: Vec<String>,
    answer_to: Option<Responder>,
    /// Commands that arrived while a Complete or Cancel ran (`busy`).
    deferred: VecDeque<(Principal, Command, NewPins, Responder)>,
    timer: Option<SpawnHandle>,
    stopping: bool,
    failed: bool,
    /// The state and owner last reported to the Manager.
    reported: Option<(JobState, String)>,
    /// The directories this job's files were added in (see `access.rs`).
    pins: Arc<Pins>,
    /// Lazy records not yet handed to the store: gathered for
    /// [`LAZY_GATHER`] (a burst of file reports becomes one store write,
    /// not one wake-up of its thread each), handed over sooner before any
    /// synced write, answer, Barrier or shutdown, so the store still sees
    /// every record in the order the core made them. Only the latest
    /// record of the job and of each file is kept (see [`LazyRecords`]).
    lazy: Option<LazyRecords>,
    /// Who asked for the commit under way (the published files become
    /// that user's); `None` after a restart, when a commit rolls forward
    /// and the files stay the owner's.
    committer: Option<String>,
    /// The host of the last URL looked up (most jobs' files share one).
    hosts: HostCache,
    /// The arbiter this job's transfers run on, while it has any (see
    /// [`crate::engine::Placement::place`]).
    placed: Option<Placed>,
}

impl std::fmt::Debug for JobSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSupervisor")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JobSupervisor {
    pub(crate) fn new(
        job: Job,
        shared: Arc<Shared>,
        manager: WeakAddr<Manager>,
        pins: Arc<Pins>,
    ) -> Self {
        let throttle = Arc::new(crate::limits::Throttle::new(
            shared.clock,
            job.max_bytes_per_second(),
        ));
        Self {
            id: job.id(),
            job,
            shared,
            manager,
            queue: VecDeque::new(),
            pumping: false,
            transfers: HashMap::new(),
            syncing: HashMap::new(),
            throttle,
            slot_requested: false,
            known_priority: None,
            spare_slots: Vec::new(),
            answer_to: None,
            deferred: VecDeque::new(),
            timer: None,
            stopping: false,
            failed: false,
            reported: None,
            pins,
            committer: None,
            lazy: None,
            hosts: HostCache::default(),
            placed: None,
        }
    }

    /// The rights of file operations for `user` (the owner if `None`).
    fn access(&self, user: Option<&str>) -> Access {
        let user = user.unwrap_or_else(|| self.job.owner());
        Access::of(self.shared.config.identities.as_ref(), user, &self.pins)
    }

    fn to_manager<M>(&self, message: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Manager: Handler<M>,
    {
        if let Some(manager) = self.manager.upgrade() {
            manager.do_send(message);
        }
    }

    /// Moves the job's effects into the pump's queue.
    fn drain(&mut self) {
        while let Some(effect) = self.job.poll_effect() {
            let item = match effect {
                Effect::Notify(n) => Item::Notify(n, self.job.state()),
                effect => Item::Effect(effect),
            };
            self.queue.push_back(item);
        }
    }

    /// Runs `command`; `pins` are the directory pins its destination check
    /// added (files being added), recorded only if the core accepts it.
    fn exec(
        &mut self,
        who: Principal,
        command: Command,
        pins: NewPins,
        tx: Responder,
        ctx: &mut Context<Self>,
    ) {
        if self.stopping || self.failed {
            let _ = tx.send(Err(EngineError::Stopped));
            return;
        }
        // A directory pinned since the check (a concurrent add, or a
        // transfer's first use) must be the one checked.
        if let Some(err) = self.pins.conflict(&pins) {
            self.queue.push_back(Item::Reply(
                tx,
                Err(EngineError::DestinationForbidden(err.to_string())),
            ));
            self.pump(ctx);
            return;
        }
        let now = self.shared.clock.now();
        match self.job.handle_command(&who, command.clone(), now) {
            Err(CommandError::Busy) => self.deferred.push_back((who, command, pins, tx)),
            Err(err) => self.queue.push_back(Item::Reply(tx, Err(err.into()))),
            Ok(Reply::Pending) => {
                // Complete or Cancel: BITS makes whoever completes the
                // owner of the files.
                self.committer = Some(who.user.clone());
                self.drain();
                self.answer_to = Some(tx);
            }
            Ok(reply) => {
                // Recorded before the command's own synced write, which
                // the store orders after them (as a new job's are).
                if let Err(err) = self.pins.adopt(pins) {
                    tracing::warn!(message = "A directory pin was not recorded.", job = %self.id, error = %err);
                }
                self.drain();
                self.queue
                    .push_back(Item::Reply(tx, Ok(Outcome::Reply(reply))));
            }
        }
        self.pump(ctx);
    }

    fn feed(&mut self, file: FileId, event: FileEvent) -> Option<EventOutcome> {
        let now = self.shared.clock.now();
        let outcome = match self.job.handle_file_event(file, event, now) {
            Ok(outcome) => Some(outcome),
            Err(err) => {
                tracing::warn!(message = "File event refused.", job = %self.id, %file, error = %err);
                None
            }
        };
        self.drain();
        outcome
    }

    /// Carries out queued effects until one must be waited for.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        loop {
            while !self.pumping {
                let Some(item) = self.queue.pop_front() else {
                    break;
                };
                match item {
                    Item::Reply(tx, result) => {
                        // What was recorded before an answer reaches the
                        // store before the caller can act on it (a Barrier
                        // waits for the store to have it).
                        self.flush_lazy(ctx);
                        if self.failed {
                            let _ = tx.send(Err(EngineError::Store("the store failed".into())));
                        } else {
                            let _ = tx.send(result);
                        }
                    }
                    Item::Effect(effect) => self.carry_out(effect, ctx),
                    Item::Notify(notification, state) => self.notify(notification, state),
                }
            }
            if self.pumping || !self.keep_slot() {
                break;
            }
        }
        if !self.pumping {
            self.idle(ctx);
        }
    }

    /// Gives a slot the job holds (a transfer of it just ended) straight
    /// to its next file, when no request waits for one (the job's own
    /// included: one granted later would be for the host of the file it
    /// was asked for) and the scheduler would grant it again at once: a
    /// release and a request cost two trips through the Manager's mailbox
    /// per file (about 0.1 ms each on a busy home thread, between one
    /// small file's end and the next one's request). The Manager hears of
    /// it afterwards, for the time slices. The next file's effects are
    /// queued; false if none started.
    fn keep_slot(&mut self) -> bool {
        if self.stopping || self.failed || self.slot_requested || self.spare_slots.is_empty() {
            return false;
        }
        if self
            .shared
            .slot_contention
            .load(std::sync::atomic::Ordering::Relaxed)
            != 0
        {
            return false;
        }
        let Some(file) = self.job.next_transfer() else {
            return false;
        };
        let Some(remote) = self.job.file_remote(file) else {
            return false;
        };
        let host = self.hosts.host_of(remote);
        if !self.spare_slots.contains(&host) {
            return false;
        }
        let now = self.shared.clock.now();
        if self.job.handle_grant(now).is_none() {
            return false;
        }
        self.to_manager(crate::manager::RenewSlot { job: self.id, host });
        self.shared.metrics.kept_slots.inc();
        self.drain();
        true
    }

    /// Suspends the pump until `work` is done, then runs `then` and pumps on.
    fn wait<R: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        work: impl Future<Output = R> + 'static,
        then: impl FnOnce(&mut Self, R, &mut Context<Self>) + 'static,
    ) {
        self.pumping = true;
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.pumping = false;
            then(act, result, ctx);
            act.pump(ctx);
        }));
    }

    fn carry_out(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        if self.stopping
            && matches!(
                effect,
                Effect::StartTransfer(_) | Effect::Publish { .. } | Effect::DeleteTemp { .. }
            )
        {
            // Shutting down: no new file work. The job's records say where
            // it was; a commit rolls forward at the next start.
            return;
        }
        match effect {
            Effect::Persist(batch) => {
                match batch.durability {
                    Durability::Lazy => match &mut self.lazy {
                        Some(pending) => pending.absorb(batch),
                        None => {
                            let mut pending = LazyRecords::default();
                            pending.absorb(batch);
                            self.lazy = Some(pending);
                            // Handed over after `LAZY_GATHER`, with
                            // every record gathered meanwhile.
                            ctx.run_later(LAZY_GATHER, |act, ctx| act.flush_lazy(ctx));
                        }
                    },
                    Durability::Sync => {
                        let write = StoreBatch::from_core(&batch);
                        self.flush_lazy(ctx);
                        if batch
                            .job_record
                            .as_ref()
                            .is_some_and(|r| r.commit_recorded())
                        {
                            crate::failpoint::crash("commit::before_intent");
                        }
                        // Queued now, behind the lazy records just handed
                        // over (not when the wait is first polled).
                        let written = self.shared.store.write(write, true);
                        self.wait(ctx, written, |act, r, ctx| {
                            if let Err(err) = r {
                                act.store_failed(&err, ctx);
                            }
                        });
                    }
                }
            }
            Effect::StartTransfer(order) => self.start_transfer(order, ctx),
            Effect::StopTransfer { file, attempt } => {
                let Some(running) = self.transfers.remove(&file) else {
                    return;
                };
                // Kept for a restart that may follow; released when idle.
                self.spare_slots.push(running.host);
                let actor = running.actor;
                self.wait(
                    ctx,
                    async move { actor.send(Stop).await },
                    move |act, r, _| {
                        // The stopped attempt's last durable offset still counts.
                        if let Ok(Some(offset)) = r {
                            let event = TransferEvent::Checkpointed { offset };
                            act.feed(file, FileEvent::Transfer { attempt, event });
                        }
                    },
                );
            }
            effect @ (Effect::Publish { .. } | Effect::DeleteTemp { .. }) => {
                // The publishes and deletes queued together run as one group.
                let mut steps: Vec<Step> = step(effect).into_iter().collect();
                while let Some(Item::Effect(effect)) = self.queue.front()
                    && matches!(effect, Effect::Publish { .. } | Effect::DeleteTemp { .. })
                {
                    if let Some(Item::Effect(effect)) = self.queue.pop_front() {
                        steps.extend(step(effect));
                    }
                }
                let shared = self.shared.clone();
                // Names are changed with the owner's rights; the caller of
                // Complete gets the published files.
                let user = self.job.owner().to_owned();
                let access = self.access(None);
                let committer = self.access(self.committer.as_deref());
                // A file of the group may still be syncing (the commit
                // dropped it): its last write could create or fill the temp
                // file after this group deleted it. Its actor answers a stop
                // only once that write is done, so the group waits for it.
                let stepped: HashSet<FileId> = steps.iter().map(Step::file).collect();
                let syncing: Vec<Addr<FileActor>> = self
                    .syncing
                    .extract_if(|file, _| stepped.contains(file))
                    .map(|(_, (actor, _))| actor)
                    .collect();
                self.wait(
                    ctx,
                    async move {
                        join_all(syncing.iter().map(|actor| actor.send(Stop))).await;
                        run_steps(steps, shared, access, committer).await
                    },
                    move |act, events, ctx| {
                    for (file, event, pending_delete) in events {
                        if let Some(path) = pending_delete {
                            // In the core's order, after what came before.
                            act.flush_lazy(ctx);
                            // Durable with the job's next synced write (the
                            // commit's outcome), retried by the manager with
                            // the same user's rights.
                            let write = StoreBatch::add_pending_delete(&path, &user);
                            if let Err(err) = act.shared.store.write_lazy(write) {
                                tracing::error!(message = "Could not record a pending delete.", error = %err);
                            }
                            act.to_manager(crate::manager::PendingDelete {
                                path,
                                user: user.clone(),
                            });
                        }
                        act.feed(file, event);
                    }
                });
            }
            Effect::Notify(notification) => {
                let state = self.job.state();
                self.notify(notification, state);
            }
            Effect::Answer(result) => {
                if let Some(tx) = self.answer_to.take() {
                    let _ = tx.send(result.map(Outcome::Answer).map_err(EngineError::from));
                }
                // Commands that waited for the commit run now, in order.
                let deferred = std::mem::take(&mut self.deferred);
                for (who, command, pins, tx) in deferred {
                    self.exec(who, command, pins, tx, ctx);
                }
            }
            Effect::Forget(job) => {
                self.flush_lazy(ctx);
                let forgotten = self.shared.store.write(StoreBatch::forget(job), true);
                self.wait(ctx, forgotten, move |act, _, ctx| {
                    act.to_manager(crate::manager::Unregister(job));
                    ctx.stop();
                });
            }
        }
    }

    fn start_transfer(&mut self, order: TransferOrder, ctx: &mut Context<Self>) {
        let file = order.file;
        let attempt = order.attempt;
        // The transfer holds a slot: a spare one (for its host if there is
        // one), or, if the core restarted a file whose slot was already
        // released, one taken from the manager (counted even if over the
        // limit: the accounting stays balanced).
        let wanted = self.hosts.host_of(&order.remote);
        let host = match self.spare_slots.iter().position(|h| *h == wanted) {
            Some(i) => self.spare_slots.swap_remove(i),
            None => match self.spare_slots.pop() {
                Some(host) => host,
                None => {
                    self.to_manager(crate::manager::TakeSlot {
                        job: self.id,
                        host: wanted.clone(),
                        priority: self.job.priority(),
                    });
                    wanted
                }
            },
        };
        if let Some(old) = self.transfers.remove(&file) {
            // Never two writers on one temp file.
            old.actor.do_send(Stop);
            self.release_slot(old.host);
        }
        if let Some((old, _)) = self.syncing.remove(&file) {
            // The core starts no file that is syncing; should it, the old
            // writer is told to stop all the same.
            old.do_send(Stop);
        }
        let throttle = crate::limits::Caps {
            engine: self.shared.throttle.clone(),
            job: self.throttle.clone(),
        };
        let report = ctx.address().downgrade().recipient();
        let access = self.access(None);
        let shared = self.shared.clone();
        let tie = self.shared.lifeline.tie();
        let actor = move |_: &mut Context<FileActor>| {
            FileActor::transfer(order, access, throttle, report, &shared, tie)
        };
        // A job placed at home starts its actors on the current arbiter:
        // this must be the home one.
        debug_assert_eq!(std::thread::current().id(), self.shared.home_thread);
        let placed = self
            .placed
            .get_or_insert_with(|| self.shared.placement.place());
        let actor = match placed.arbiter() {
            Some(arbiter) => FileActor::start_in_arbiter(arbiter, actor),
            None => FileActor::create(actor),
        };
        self.transfers.insert(
            file,
            Running {
                actor,
                attempt,
                host,
            },
        );
    }

    fn release_slot(&self, host: String) {
        self.to_manager(ReleaseSlot { job: self.id, host });
    }

    fn notify(&mut self, notification: Notification, state: JobState) {
        let kind = match notification {
            Notification::JobTransferred => EventKind::JobTransferred,
            Notification::JobError => EventKind::JobError,
            Notification::JobModified => EventKind::JobModified,
            Notification::FileTransferred(file) => EventKind::FileTransferred(file),
        };
        if matches!(kind, EventKind::JobTransferred | EventKind::JobError) {
            self.run_notify_command(state);
        }
        self.to_manager(crate::manager::Emit(Event {
            seq: 0,
            job: self.id,
            owner: self.job.owner().to_owned(),
            state,
            kind,
        }));
        // The Manager takes the event's state as the job's: a later move
        // away from it is news even among QUEUED, CONNECTING and
        // TRANSFERRING (see `idle`).
        if let Some((known, _)) = &mut self.reported {
            *known = state;
        }
    }

    /// Runs the job's notify command, if any (BITS SetNotifyCmdLine): the
    /// program with its arguments, then the job id and its state, nothing
    /// expanded, no shell, not waited for. When the engine acts for other
    /// users it runs as the job's owner (uid and primary group), with a
    /// clean environment.
    fn run_notify_command(&self, state: JobState) {
        let Some(command) = self.job.notify_command().cloned() else {
            return;
        };
        let job = self.id;
        let access = self.access(None);
        // Its own thread: a long-running program must not hold a thread of
        // the blocking pool, which carries the file I/O.
        let spawned = std::thread::Builder::new()
            .name("ferry-notify".into())
            .spawn(move || {
                let mut process = std::process::Command::new(&command.program);
                process
                    .args(&command.args)
                    .arg(job.to_string())
                    .arg(state.as_str())
                    .stdin(std::process::Stdio::null());
                match access.identity() {
                    Ok(None) => {}
                    Ok(Some(identity)) => {
                        use std::os::unix::process::CommandExt as _;
                        process
                            .uid(identity.uid)
                            .gid(identity.gid)
                            .env_clear()
                            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                            .current_dir("/");
                    }
                    Err(err) => {
                        tracing::warn!(message = "Notify command not started: no identity for the owner.", %job, error = %err);
                        return;
                    }
                }
                match process.spawn() {
                    Ok(mut child) => {
                        let _ = child.wait();
                    }
                    Err(err) => {
                        tracing::warn!(message = "Notify command failed to start.", %job, error = %err);
                    }
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(message = "Notify command not started.", %job, error = %err);
        }
    }

    /// Nothing to carry out: set the timer, ask for a slot, report the state.
    fn idle(&mut self, ctx: &mut Context<Self>) {
        for host in std::mem::take(&mut self.spare_slots) {
            self.release_slot(host);
        }
        if self.transfers.is_empty() && self.syncing.is_empty() {
            // Placed again with its next transfer: where fewest jobs run then.
            self.placed = None;
        }
        if self.stopping || self.failed {
            return;
        }
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(at) = self.job.poll_timeout() {
            let delay = self.shared.clock.delay_until(at);
            self.timer = Some(ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                let now = act.shared.clock.now();
                act.job.handle_timeout(now);
                act.drain();
                act.pump(ctx);
            }));
        }
        let cap = self.job.max_bytes_per_second();
        if self.throttle.rate() != cap {
            self.throttle.set(cap);
        }
        let priority = self.job.priority();
        if self.known_priority != Some(priority) {
            if self.known_priority.is_some() {
                self.to_manager(crate::manager::Reprioritize {
                    job: self.id,
                    priority,
                });
            }
            self.known_priority = Some(priority);
        }
        if !self.slot_requested
            && let Some(file) = self.job.next_transfer()
            && let Some(remote) = self.job.file_remote(file)
        {
            let host = self.hosts.host_of(remote);
            self.slot_requested = true;
            self.to_manager(RequestSlot {
                job: self.id,
                host,
                priority: self.job.priority(),
            });
        }
        // The Manager hears of a new owner (TakeOwnership changes no
        // state) and of every state change but those among QUEUED,
        // CONNECTING and TRANSFERRING, which it does not tell apart (a job
        // of small files moves among them twice per file).
        let state = self.job.state();
        let owner = self.job.owner();
        let news = self.reported.as_ref().is_none_or(|(known, known_owner)| {
            !(*known == state || (in_motion(*known) && in_motion(state))) || known_owner != owner
        });
        if news {
            self.reported = Some((state, owner.to_owned()));
            self.to_manager(JobInfo {
                job: self.id,
                owner: owner.to_owned(),
                state,
            });
        }
    }

    /// Hands the gathered lazy records to the store.
    fn flush_lazy(&mut self, ctx: &mut Context<Self>) {
        if let Some(lazy) = self.lazy.take()
            && let Err(err) = self.shared.store.write_lazy(lazy.into_write())
        {
            self.store_failed(&err, ctx);
        }
    }

    fn store_failed(&mut self, err: &crate::store::StoreError, ctx: &mut Context<Self>) {
        tracing::error!(message = "Store write failed; the job stops.", job = %self.id, error = %err);
        self.failed = true;
        for item in self.queue.drain(..) {
            if let Item::Reply(tx, _) = item {
                let _ = tx.send(Err(EngineError::Store(err.to_string())));
            }
        }
        if let Some(tx) = self.answer_to.take() {
            let _ = tx.send(Err(EngineError::Store(err.to_string())));
        }
        let hosts: Vec<String> = self
            .transfers
            .drain()
            .map(|(_, running)| {
                running.actor.do_send(Stop);
                running.host
            })
            .chain(std::mem::take(&mut self.spare_slots))
            .collect();
        for host in hosts {
            self.release_slot(host);
        }
        // Unregistering also drops a slot request still waiting.
        self.to_manager(crate::manager::Unregister(self.id));
        ctx.stop();
    }
}

/// The commit step an effect asks for, if it is one.
fn step(effect: Effect) -> Option<Step> {
    Some(match effect {
        Effect::Publish {
            file,
            temp,
            local,
            modified,
            size,
        } => Step::Publish {
            file,
            temp,
            local,
            modified,
            size,
        },
        Effect::DeleteTemp { file, temp } => Step::Delete { file, temp },
        _ => return None,
    })
}

/// QUEUED, CONNECTING or TRANSFERRING: a job on its way, as the Manager
/// sees it.
fn in_motion(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Connecting | JobState::Transferring
    )
}

/// Lazy records gathered for one store write, the latest of each: a later
/// record of the job or of a file replaces the earlier one, as writing both
/// in one batch would leave it (a burst of small files records the job and
/// each file several times over within [`LAZY_GATHER`]). Each is encoded
/// once, when handed to the store. The core's `Batch::absorb` merges the
/// same way for `Job::set_up`, but by rebuilding the file list on each
/// merge: fine for a few commands, not for every report of a busy job.
#[derive(Debug, Default)]
struct LazyRecords {
    job: Option<Box<JobRecord>>,
    files: HashMap<FileId, FileRecord>,
}

impl LazyRecords {
    fn absorb(&mut self, batch: Batch) {
        if batch.job_record.is_some() {
            self.job = batch.job_record;
        }
        for file in batch.files {
            self.files.insert(file.file(), file);
        }
    }

    fn into_write(self) -> StoreBatch {
        StoreBatch::from_records(self.job.as_deref(), self.files.values())
    }
}

/// How long lazy records (progress, a file's end) gather before they are
/// handed to the store as one write, unless a synced write, an answer or a
/// stop hands them over sooner. A crash loses at most this much more
/// progress, which only means a resume from an earlier offset.
const LAZY_GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// The host of a URL, for per-host limits.
pub(crate) fn host_of(remote: &str) -> String {
    url::Url::parse(remote)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// [`host_of`] for many URLs of a few origins: the URL is parsed only when
/// its part before the path differs from the last one's (a full parse per
/// file cost about 1.5% of the daemon's CPU on 2,000 small files).
#[derive(Default)]
struct HostCache {
    /// The scheme and authority part of the last URL, and its host.
    last: Option<(String, String)>,
}

impl HostCache {
    fn host_of(&mut self, remote: &str) -> String {
        let origin = origin_part(remote);
        match &self.last {
            Some((last, host)) if last == origin => host.clone(),
            _ => {
                // The part alone has the same host as the whole URL.
                let host = host_of(origin);
                self.last = Some((origin.to_owned(), host.clone()));
                host
            }
        }
    }
}

/// `remote` up to the end of its authority: cut at the first `/`, `?` or
/// `#` after `://` (a parser ends the authority there or sooner, at a `\`,
/// so the part holds the whole authority and has the URL's host).
fn origin_part(remote: &str) -> &str {
    let Some(start) = remote.find("://").map(|i| i + 3) else {
        return remote;
    };
    match remote[start..].find(['/', '?', '#']) {
        Some(end) => &remote[..start + end],
        None => remote,
    }
}

/// A file actor for a commit step of `file`, on the next file arbiter.
fn commit_actor(shared: &Shared, file: FileId) -> Addr<FileActor> {
    let config = shared.config.clone();
    let syncer = shared.syncer.clone();
    FileActor::start_in_arbiter(&shared.arbiter(), move |_| {
        FileActor::commit(file, config, syncer)
    })
}

/// Carries out a group of commit steps: file actors publish and delete
/// concurrently (a transferred file's bytes are durable: a publish is
/// mostly a rename), then each touched directory is fsynced once, then the
/// results are reported. Each result may name a temp file to remember as
/// pending delete.
async fn run_steps(
    steps: Vec<Step>,
    shared: Arc<Shared>,
    access: Access,
    committer: Access,
) -> Vec<(FileId, FileEvent, Option<String>)> {
    crate::failpoint::crash("commit::before_publish");
    let mut dirs = BTreeSet::new();
    let work = steps.into_iter().map(|step| {
        let shared = shared.clone();
        let access = access.clone();
        let committer = committer.clone();
        async move {
            match step {
                Step::Publish {
                    file,
                    temp,
                    local,
                    modified,
                    size,
                } => {
                    let actor = commit_actor(&shared, file);
                    let request = Publish {
                        access,
                        committer,
                        temp: PathBuf::from(&temp),
                        local: PathBuf::from(&local),
                        modified,
                        size,
                    };
                    let result = actor
                        .send(request)
                        .await
                        .unwrap_or_else(|err| Err(err.to_string()));
                    crate::failpoint::crash("commit::between_renames");
                    let dir = Path::new(&local).parent().map(Path::to_path_buf);
                    let (event, pending) = match result {
                        Ok(fs::Published::Done) => (FileEvent::Published(Ok(())), None),
                        Err(cause) => (FileEvent::Published(Err(cause)), None),
                    };
                    (file, event, pending, dir)
                }
                Step::Delete { file, temp } => {
                    let actor = commit_actor(&shared, file);
                    let result = actor
                        .send(Delete {
                            access,
                            temp: PathBuf::from(&temp),
                        })
                        .await
                        .unwrap_or_else(|err| Err(err.to_string()));
                    let pending = result.is_err().then(|| temp.clone());
                    (file, FileEvent::TempDeleted(result), pending, None)
                }
            }
        }
    });
    let results = join_all(work).await;
    for (_, event, _, dir) in &results {
        if let (FileEvent::Published(Ok(())) | FileEvent::PublishedTempLeft(_), Some(dir)) =
            (event, dir)
        {
            dirs.insert(dir.clone());
        }
    }
    let mut failed_dirs = BTreeSet::new();
    for dir in dirs {
        let target = dir.clone();
        let access = access.clone();
        if let Err(err) = file_actor::blocking(move || fs::sync_dir(&access, &target)).await {
            tracing::error!(message = "Directory fsync failed.", dir = %dir.display(), error = %err);
            failed_dirs.insert(dir);
        }
    }
    crate::failpoint::crash("commit::before_outcome");
    results
        .into_iter()
        .map(|(file, event, pending, dir)| {
            // A rename that cannot be made durable is not a publish.
            let event = match (&event, &dir) {
                (FileEvent::Published(Ok(())), Some(dir)) if failed_dirs.contains(dir) => {
                    FileEvent::Published(Err(format!("fsync of {} failed", dir.display())))
                }
                _ => event,
            };
            (file, event, pending)
        })
        .collect()
}

impl Actor for JobSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A created or restored job has effects ready (its first persist, a
        // commit to roll forward).
        self.drain();
        self.pump(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Whatever way it stopped, no gathered record stays behind.
        if let Some(lazy) = self.lazy.take() {
            let _ = self.shared.store.write_lazy(lazy.into_write());
        }
    }
}

/// Run a command as `who`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Outcome, EngineError>")]
pub(crate) struct Exec {
    pub(crate) who: Principal,
    pub(crate) command: Command,
    /// Directory pins that the command's destination check added.
    pub(crate) pins: NewPins,
}

/// Directory pins made by a check, not yet recorded with the job.
pub(crate) type NewPins = Vec<(std::path::PathBuf, crate::access::DirId)>;

impl Handler<Exec> for JobSupervisor {
    type Result = ResponseFuture<Result<Outcome, EngineError>>;

    fn handle(&mut self, msg: Exec, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.exec(msg.who, msg.command, msg.pins, tx, ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(EngineError::Stopped)) })
    }
}

/// Answers once everything queued so far is carried out (a new job's first
/// persist, for example).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), EngineError>")]
pub(crate) struct Barrier;

impl Handler<Barrier> for JobSupervisor {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, _: Barrier, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.queue
            .push_back(Item::Reply(tx, Ok(Outcome::Reply(Reply::Done))));
        self.pump(ctx);
        let store = self.shared.store.clone();
        Box::pin(async move {
            match rx.await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(EngineError::Stopped),
            }
            // Lazy writes queued before are only handed to the writer
            // thread: an empty write answers once they are written (in the
            // OS's hands, so a crash of the process keeps them).
            store
                .write(StoreBatch::default(), false)
                .await
                .map_err(|err| EngineError::Store(err.to_string()))
        })
    }
}

/// A snapshot of the job and its files, as `who` may see them.
#[derive(Debug, Message)]
#[rtype(result = "Result<(JobView, Vec<FileView>), CommandError>")]
pub(crate) struct View {
    pub(crate) who: Principal,
    pub(crate) files: bool,
}

impl Handler<View> for JobSupervisor {
    type Result = Result<(JobView, Vec<FileView>), CommandError>;

    fn handle(&mut self, msg: View, _: &mut Context<Self>) -> Self::Result {
        let mut view = self.job.view_as(&msg.who)?;
        // Transferring, but held back by a cap (the job's own first).
        if view.state == JobState::Transferring
            && view.waiting.is_none()
            && let Some(cap) = self
                .throttle
                .holding()
                .or_else(|| self.shared.throttle.holding())
        {
            view.waiting = Some(ferry_core::Waiting::Throttled {
                max_bytes_per_second: cap,
            });
        }
        let files = if msg.files {
            self.job.files()
        } else {
            Vec::new()
        };
        Ok((view, files))
    }
}

/// The scheduler granted a slot for `host`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Grant {
    pub(crate) host: String,
}

impl Handler<Grant> for JobSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Grant, ctx: &mut Context<Self>) {
        self.slot_requested = false;
        if self.stopping || self.failed {
            self.release_slot(msg.host);
            return;
        }
        let now = self.shared.clock.now();
        if self.job.handle_grant(now).is_none() {
            self.release_slot(msg.host);
        } else {
            // The transfer about to start holds this slot.
            self.spare_slots.push(msg.host);
            self.drain();
        }
        self.pump(ctx);
    }
}

impl Handler<Report> for JobSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Report, ctx: &mut Context<Self>) {
        match msg {
            Report::HostReachable(host) => {
                self.to_manager(crate::manager::HostReachable(host));
            }
            Report::File(file, event) => {
                let syncing = matches!(&event, FileEvent::Transfer { attempt, .. }
                    if self.syncing.get(&file).is_some_and(|(_, a)| a == attempt));
                if let FileEvent::Transfer { attempt, event } = &event
                    && (syncing
                        || self
                            .transfers
                            .get(&file)
                            .is_some_and(|r| r.attempt == *attempt))
                {
                    match event {
                        TransferEvent::Transferred { .. } => self.shared.metrics.file_transferred(),
                        TransferEvent::Failed(error) => {
                            self.shared
                                .metrics
                                .transfer_failed(error.class, error.context);
                        }
                        _ => {}
                    }
                }
                if let FileEvent::Transfer {
                    attempt,
                    event: TransferEvent::Transferred { .. } | TransferEvent::Failed(_),
                } = &event
                    && self
                        .transfers
                        .get(&file)
                        .is_some_and(|r| r.attempt == *attempt)
                    && let Some(running) = self.transfers.remove(&file)
                {
                    // The actor stopped itself: its slot is free (for the
                    // job's next file, or given back when the pump idles).
                    self.spare_slots.push(running.host);
                }
                let drained = match &event {
                    FileEvent::Transfer {
                        attempt,
                        event: TransferEvent::Drained { .. },
                    } => Some(*attempt),
                    _ => None,
                };
                if syncing
                    && let FileEvent::Transfer {
                        event: TransferEvent::Transferred { .. } | TransferEvent::Failed(_),
                        ..
                    } = &event
                {
                    self.syncing.remove(&file);
                }
                let outcome = self.feed(file, event);
                // Only a drain the core took frees the slot: one it found
                // stale (its stop is queued behind other work) keeps the
                // actor in `transfers`, so that the stop still reaches it
                // and is waited for before any new attempt on the file.
                if let Some(attempt) = drained
                    && outcome == Some(EventOutcome::Applied)
                    && self
                        .transfers
                        .get(&file)
                        .is_some_and(|r| r.attempt == attempt)
                    && let Some(running) = self.transfers.remove(&file)
                {
                    // The connection is done: the slot is free while the
                    // actor makes the bytes durable (for the job's next
                    // file, or given back when the pump idles).
                    self.spare_slots.push(running.host);
                    self.syncing.insert(file, (running.actor, running.attempt));
                }
                self.pump(ctx);
            }
        }
    }
}

/// Another job's transfer reached `host`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct HostUp(pub(crate) String);

impl Handler<HostUp> for JobSupervisor {
    type Result = ();

    fn handle(&mut self, msg: HostUp, ctx: &mut Context<Self>) {
        let now = self.shared.clock.now();
        self.job.handle_host_reachable(&msg.0, now);
        self.drain();
        self.pump(ctx);
    }
}

/// The scheduler wants the job's slots back (a time slice is over, or a
/// higher priority waits): its transfers stop at their next chunk with what
/// they have checkpointed, and it queues again. False: it cannot (a running
/// file would restart from zero).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub(crate) struct Preempt;

impl Handler<Preempt> for JobSupervisor {
    type Result = bool;

    fn handle(&mut self, _: Preempt, ctx: &mut Context<Self>) -> bool {
        if self.stopping || self.failed {
            return false;
        }
        let now = self.shared.clock.now();
        let preempted = self.job.handle_preempt(now);
        self.drain();
        self.pump(ctx);
        preempted
    }
}

/// Stop transfers (each writes and checkpoints what it has) and flush the
/// store, without changing the job's state. Answered when done.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

impl Handler<Shutdown> for JobSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        self.flush_lazy(ctx);
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        // Syncing transfers answer a stop once their bytes are durable.
        let stops: Vec<_> = self
            .transfers
            .drain()
            .map(|(file, running)| (file, running.actor, running.attempt))
            .chain(
                self.syncing
                    .drain()
                    .map(|(file, (actor, attempt))| (file, actor, attempt)),
            )
            .map(|(file, actor, attempt)| async move { (file, attempt, actor.send(Stop).await) })
            .collect();
        Box::pin(
            join_all(stops)
                .into_actor(self)
                .map(|results, act, ctx| {
                    // Lazy records gathered while the stops were awaited
                    // go first: the ones below are newer.
                    act.flush_lazy(ctx);
                    let now = act.shared.clock.now();
                    for (file, attempt, result) in results {
                        if let Ok(Some(offset)) = result {
                            // Record the last checkpoint: the core's state is
                            // otherwise left as it is (restored as QUEUED).
                            let event = FileEvent::Transfer {
                                attempt,
                                event: TransferEvent::Checkpointed { offset },
                            };
                            let _ = act.job.handle_file_event(file, event, now);
                        }
                    }
                    // Only persists are carried out now, queued ones first
                    // (they are older): no new transfers.
                    let mut writes = Vec::new();
                    for item in act.queue.drain(..) {
                        match item {
                            Item::Effect(Effect::Persist(batch)) => {
                                writes.push(StoreBatch::from_core(&batch));
                            }
                            Item::Reply(tx, _) => {
                                let _ = tx.send(Err(EngineError::Stopped));
                            }
                            Item::Effect(_) | Item::Notify(..) => {}
                        }
                    }
                    while let Some(effect) = act.job.poll_effect() {
                        if let Effect::Persist(batch) = effect {
                            writes.push(StoreBatch::from_core(&batch));
                        }
                    }
                    // A transfer started while the stops were awaited.
                    for (_, running) in act.transfers.drain() {
                        running.actor.do_send(Stop);
                    }
                    (act.shared.store.clone(), writes)
                })
                .then(|(store, writes), act, _| {
                    async move {
                        for write in writes {
                            let _ = store.write_lazy(write);
                        }
                        let _ = store.flush().await;
                    }
                    .into_actor(act)
                })
                .map(|(), act, ctx| {
                    // Reports handled while the store flushed.
                    act.flush_lazy(ctx);
                    ctx.stop();
                }),
        )
    }
}

/// The rights of file operations for the job's owner (for checks of new
/// destinations; pins the directories they name).
#[derive(Debug, Message)]
#[rtype(result = "Access")]
pub(crate) struct OwnerAccess;

impl Handler<OwnerAccess> for JobSupervisor {
    type Result = MessageResult<OwnerAccess>;

    fn handle(&mut self, _: OwnerAccess, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.access(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_cache_agrees_with_a_full_parse() {
        let urls = [
            "http://a.example/f1",
            "http://a.example/f2?x=1",
            "http://A.EXAMPLE:8080/f",
            "https://a.example/f",
            "http://b.example?q=/c",
            "http://b.example#/frag",
            "http://b.example",
            "http://user:pw@c.example/f",
            "http://user@d.example:81/f",
            "http://[::1]:8080/f",
            "http://e.example\\path/x",
            "http://e.example\\other",
            "http://bücher.example/f",
            "http://xn--bcher-kva.example/g",
            "http://127.0.0.1:28080/small/f1",
            "http://127.0.0.1:28080/small/f2",
            "not a url",
            "",
        ];
        let mut cache = HostCache::default();
        // Each URL after each other one: a hit must never be stale.
        for a in urls {
            for b in urls {
                assert_eq!(cache.host_of(a), host_of(a), "{a}");
                assert_eq!(cache.host_of(b), host_of(b), "{b} after {a}");
            }
        }
        assert_eq!(cache.host_of("http://a.example/f1"), "a.example");
        assert_eq!(cache.host_of("http://e.example\\path/x"), "e.example");
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn lazy_records_write_the_latest_of_the_job_and_of_each_file_once() {
        use ferry_core::{CoreConfig, FileSpec, JobSpec, MonoTime, Now, Property, UtcTime};
        let owner = Principal::user("alice");
        let now = Now::new(
            MonoTime::from_elapsed(std::time::Duration::ZERO),
            UtcTime::from_unix_millis(1_700_000_000_000),
        );
        let id = JobId(uuid::Uuid::now_v7());
        let create = || {
            Job::create(
                id,
                &owner,
                JobSpec::download("j"),
                CoreConfig::default(),
                now,
            )
            .unwrap()
        };
        let spec = |name: &str, dir: &str| FileSpec {
            remote: format!("http://h.example/{name}"),
            local: format!("/srv/{dir}/{name}"),
        };
        let mut job = create();
        let files = vec![spec("a", "dl"), spec("b", "dl")];
        job.handle_command(&owner, Command::AddFiles(files), now)
            .unwrap();
        // The same job id and file ids with other records: file 0 of
        // `other` is a later version of file 0 of `job`.
        let mut other = create();
        let files = vec![spec("a", "elsewhere")];
        other
            .handle_command(&owner, Command::AddFiles(files), now)
            .unwrap();
        let batch = |job: &Job, files: Vec<FileRecord>| Batch {
            job: id,
            job_record: Some(Box::new(job.record())),
            files,
            durability: Durability::Lazy,
        };
        let mut lazy = LazyRecords::default();
        lazy.absorb(batch(&job, job.file_records()));
        let before = job.record();
        let description = Property::Description("later".into());
        job.handle_command(&owner, Command::Set(description), now)
            .unwrap();
        let after = job.record();
        assert_ne!(before, after);
        let later_a = other.file_records();
        let b = job.file_records().split_off(1);
        assert_ne!(later_a.first(), job.file_records().first());
        lazy.absorb(batch(&job, later_a.clone()));
        lazy.absorb(Batch {
            job_record: None,
            ..batch(&job, Vec::new())
        });
        let write = lazy.into_write();
        // One put for the job, one per file: not five.
        assert_eq!(write.put_count(), 3);

        let dir = tempfile::TempDir::new().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (store, _) = crate::store::Store::open(dir.path(), 1, metrics.clone()).unwrap();
        store.write_lazy(write).unwrap();
        actix_rt::System::new().block_on(store.flush()).unwrap();
        actix_rt::System::new().block_on(store.close());
        let (store, loaded) = crate::store::Store::open(dir.path(), 1, metrics).unwrap();
        actix_rt::System::new().block_on(store.close());
        let mut files = later_a;
        files.extend(b);
        assert_eq!(loaded.jobs, vec![(after, files)]);
    }
}

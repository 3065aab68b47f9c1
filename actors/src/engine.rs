//! [`Engine`]: the embedding API. Start it on an actix System; every method
//! takes the calling [`Principal`] and returns a typed result.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle};
use ferry_core::{
    Answer, CancelAnswer, Command, CommandError, CompleteAnswer, CoreConfig, FileId, FileSpec,
    FileView, Job, JobId, JobSpec, JobState, JobView, Principal, Property, Reply,
};
use futures_util::future::join_all;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, watch};

use crate::{
    access::{Access, Pins},
    clock::Clock,
    config::EngineConfig,
    file_actor::blocking,
    fs,
    manager::{
        Admit, Blocked, CountJobs, GetLimits, Listable, Lookup, Manager, Register, SetLimits,
        ShutdownAll, Subscribe,
    },
    metrics::Metrics,
    store::{Store, StoreError},
    supervisor::{Barrier, Exec, JobSupervisor, OwnerAccess, View},
};

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The core refused the command (nothing changed).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The store could not be opened or read.
    #[error(transparent)]
    Open(#[from] StoreError),
    /// A write to the store failed: the job stopped, the command may not be
    /// durable.
    #[error("store write failed: {0}")]
    Store(String),
    /// A local file could not be checked or swept.
    #[error("i/o: {0}")]
    Io(String),
    /// The job's owner may not write at a destination (its directory's
    /// permissions, a symbolic link on the way while the engine acts for
    /// other users, a directory replaced since files were added in it).
    #[error("destination forbidden: {0}")]
    DestinationForbidden(String),
    /// The engine is shutting down or stopped.
    #[error("the engine is stopped")]
    Stopped,
}

impl EngineError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Command(err) => err.code(),
            Self::Open(_) => "store_open",
            Self::Store(_) => "store_write",
            Self::Io(_) => "io",
            Self::DestinationForbidden(_) => "destination_forbidden",
            Self::Stopped => "stopped",
        }
    }
}

/// What a command produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    Reply(Reply),
    Answer(Answer),
}

/// An event of a job (BITS's callback interface). Emitted only once the
/// state it reports is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Increases by one per event of this engine run; replayed events (sent
    /// to a new subscriber) carry the latest number at subscription.
    pub seq: u64,
    /// The job.
    pub job: JobId,
    /// Its owner (for filtering per caller).
    pub owner: String,
    /// Its state after the event.
    pub state: JobState,
    /// What happened.
    pub kind: EventKind,
}

/// The quotas that apply to a caller, and what it uses of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Unfinished jobs an owner may have.
    pub max_jobs_per_owner: usize,
    /// Files a job may hold.
    pub max_files_per_job: usize,
    /// The caller's unfinished jobs (neither ACKNOWLEDGED nor CANCELLED).
    pub unfinished_jobs: usize,
    /// Admins are exempt from both limits.
    pub exempt: bool,
}

/// What an [`Event`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Every file is transferred: call Complete.
    JobTransferred,
    /// The job entered ERROR (never sent for transient errors).
    JobError,
    /// A command or state change altered the job.
    JobModified,
    /// One file is transferred (sent before the job's JobTransferred).
    FileTransferred(FileId),
}

/// A stream of events, from [`Engine::subscribe`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the engine stopped (or dropped this
    /// subscriber for falling more than 16,384 events behind).
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// What the actors share.
pub(crate) struct Shared {
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) core: CoreConfig,
    pub(crate) store: Store,
    pub(crate) clock: Clock,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) throttle: Arc<crate::limits::Throttle>,
    /// The arbiter the engine was started on: the Manager and every job
    /// supervisor live there, so that the messages between them (a slot
    /// freed and granted again per file) never cross threads; and the
    /// transfers of the jobs placed there (see [`Placement::place`]).
    home: ArbiterHandle,
    /// Makes the ends of whole bodies durable, many files per round.
    pub(crate) syncer: crate::syncer::Syncer,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    /// Where jobs' transfers run.
    pub(crate) placement: Placement,
    /// Ends the transfer actors at shutdown.
    pub(crate) lifeline: Lifeline,
    /// The home arbiter's thread.
    pub(crate) home_thread: std::thread::ThreadId,
    /// How many jobs are in TRANSIENT_ERROR, as the Manager counts them:
    /// a transfer reports that its host answered only while some job
    /// waits to hear it (two messages per request saved otherwise).
    pub(crate) transient_jobs: Arc<AtomicUsize>,
    /// Requests waiting for a transfer slot, as the Manager's scheduler
    /// counts them (`usize::MAX` while none may be kept: background
    /// transfers paused, a job being preempted). While no request but its
    /// own waits, a job gives a slot it holds straight to its next file,
    /// without a release and a grant through the Manager.
    pub(crate) slot_contention: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// The next file arbiter, round robin (the current one if there are
    /// none).
    pub(crate) fn arbiter(&self) -> ArbiterHandle {
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed);
        match self.arbiters.get(i % self.arbiters.len().max(1)) {
            Some(handle) => handle.clone(),
            None => Arbiter::current(),
        }
    }
}

/// Which arbiter each job's transfers run on.
pub(crate) struct Placement {
    /// Jobs placed on each arbiter, the home one first, then `arbiters`:
    /// the metrics' gauges are the counts.
    gauges: Vec<Gauge>,
    /// Held while a place is chosen, so that two choices see each other.
    choosing: std::sync::Mutex<()>,
    arbiters: Vec<ArbiterHandle>,
}

impl Placement {
    fn new(arbiters: Vec<ArbiterHandle>, metrics: &Metrics) -> Self {
        Self {
            gauges: (0..=arbiters.len()).map(|i| metrics.placed(i)).collect(),
            choosing: std::sync::Mutex::new(()),
            arbiters,
        }
    }

    /// Where a job's transfers run while it has any (a supervisor asks
    /// with its first transfer and gives its place back once none runs or
    /// syncs): the arbiter with the fewest jobs placed, the home arbiter
    /// first among equals. So a job alone runs whole on the home arbiter,
    /// beside its supervisor: a body's end, the next grant and the next
    /// request are one thread's turn, not two hand-offs between arbiters,
    /// each a wake-up (2,000 files of 64 KiB: 3.6 against 2.25 context
    /// switches per file, 14% less CPU; RESULTS.md). One job's files share
    /// one thread, as curl's and aria2's do; jobs that run at once spread
    /// over the cores.
    pub(crate) fn place(&self) -> Placed {
        let _choosing = self
            .choosing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counts: Vec<i64> = self.gauges.iter().map(Gauge::get).collect();
        let index = least_loaded(&counts);
        let gauge = self.gauges.get(index).cloned().unwrap_or_default();
        gauge.inc();
        Placed {
            gauge,
            index,
            arbiter: index
                .checked_sub(1)
                .and_then(|i| self.arbiters.get(i))
                .cloned(),
        }
    }
}

/// The index of the smallest count, the first among equals (0 if none).
fn least_loaded(counts: &[i64]) -> usize {
    counts
        .iter()
        .enumerate()
        .min_by_key(|(i, count)| (**count, *i))
        .map_or(0, |(i, _)| i)
}

/// A job's place (see [`Placement::place`]); given back when dropped.
pub(crate) struct Placed {
    /// Its arbiter's count.
    gauge: Gauge,
    index: usize,
    arbiter: Option<ArbiterHandle>,
}

impl Placed {
    /// The file arbiter the job's transfers run on; `None`: the home
    /// arbiter (its supervisor's own).
    pub(crate) fn arbiter(&self) -> Option<&ArbiterHandle> {
        self.arbiter.as_ref()
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Ties the engine's transfer actors to it: [`Engine::shutdown`] stops those
/// still running (the supervisors stop and wait for theirs first; these are
/// the ones left: a job whose store write failed, a replaced attempt) as a
/// `Stop` does, the writes in flight ended first, and waits until none is
/// left. Stopping the file arbiters would not reach the home arbiter's
/// actors (it is the embedder's and runs on), nor wait for their writes; so
/// no actor of a stopped engine writes on while the next one opens the data
/// dir.
pub(crate) struct Lifeline {
    ended: watch::Sender<bool>,
    alive: Arc<Alive>,
}

#[derive(Default)]
struct Alive {
    count: AtomicUsize,
    gone: tokio::sync::Notify,
}

/// One transfer actor's tie to the engine (see [`Lifeline`]); the actor
/// holds it until it is dropped.
pub(crate) struct Tie {
    ended: watch::Receiver<bool>,
    alive: Arc<Alive>,
}

impl Lifeline {
    fn new() -> Self {
        Self {
            ended: watch::channel(false).0,
            alive: Arc::default(),
        }
    }

    /// A tie for a new transfer actor.
    pub(crate) fn tie(&self) -> Tie {
        self.alive.count.fetch_add(1, Ordering::AcqRel);
        Tie {
            ended: self.ended.subscribe(),
            alive: self.alive.clone(),
        }
    }

    /// Tells every tied actor to stop, and waits until all are dropped.
    async fn end(&self) {
        self.ended.send_replace(true);
        loop {
            let gone = self.alive.gone.notified();
            tokio::pin!(gone);
            // Registered before the count is read: a last drop between the
            // two still wakes this wait.
            gone.as_mut().enable();
            if self.alive.count.load(Ordering::Acquire) == 0 {
                return;
            }
            gone.await;
        }
    }
}

impl Tie {
    /// Turns true when the engine ends.
    pub(crate) fn ended(&self) -> watch::Receiver<bool> {
        self.ended.clone()
    }
}

impl Drop for Tie {
    fn drop(&mut self) {
        if self.alive.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.alive.gone.notify_waiters();
        }
    }
}

impl std::fmt::Debug for Tie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tie").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Placed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placed")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// What a job is created with besides its [`JobSpec`]
/// ([`Engine::create_job_with`]).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct JobSetup {
    /// Files to add, all or none (as [`Engine::add_files`]).
    pub files: Vec<FileSpec>,
    /// Properties to set, all or none (as [`Engine::set_all`]).
    pub properties: Vec<Property>,
    /// Queue it for transfer at once (as [`Engine::resume`]).
    pub resume: bool,
}

impl JobSetup {
    /// With these files.
    #[must_use]
    pub fn files(mut self, files: Vec<FileSpec>) -> Self {
        self.files = files;
        self
    }

    /// With these properties.
    #[must_use]
    pub fn properties(mut self, properties: Vec<Property>) -> Self {
        self.properties = properties;
        self
    }

    /// Resumed at once.
    #[must_use]
    pub fn resumed(mut self) -> Self {
        self.resume = true;
        self
    }
}

/// A running engine. Cloning gives another handle to the same engine.
#[derive(Clone, Debug)]
pub struct Engine {
    manager: Addr<Manager>,
    shared: Arc<Shared>,
    arbiters: Arc<Vec<Arbiter>>,
}

impl Engine {
    /// Opens the store in `config.data_dir`, restores every job (jobs that
    /// were transferring continue by themselves, commits interrupted by a
    /// crash roll forward), deletes orphan temp files of this engine, and
    /// starts. Must run on an actix System. Installs no signal handler.
    pub async fn start(config: EngineConfig) -> Result<Self, EngineError> {
        let dir = config.data_dir.clone();
        let new_id = uuid::Uuid::now_v7().as_u64_pair().1;
        let metrics = Arc::new(Metrics::new());
        let store_metrics = metrics.clone();
        let (store, mut loaded) = blocking(move || {
            std::fs::create_dir_all(&dir)?;
            Store::open(&dir, new_id, store_metrics).map_err(std::io::Error::other)
        })
        .await
        .map_err(|err| match err.into_inner() {
            Some(inner) => match inner.downcast::<StoreError>() {
                Ok(store) => EngineError::Open(*store),
                Err(other) => EngineError::Io(other.to_string()),
            },
            None => EngineError::Io("the data dir could not be created".into()),
        })?;
        for corrupt in &loaded.corrupt {
            tracing::error!(message = "Skipped a corrupt record.", detail = %corrupt);
        }
        let core = CoreConfig {
            engine_id: store.engine_id(),
            ..config.core
        };
        let arbiters: Vec<Arbiter> = (0..config.arbiters).map(|_| Arbiter::new()).collect();
        let syncer =
            crate::syncer::Syncer::start(config.syncfs_batch, metrics.syncfs_batches.clone())
                .map_err(|err| EngineError::Io(format!("the sync thread did not start: {err}")))?;
        let clock = Clock::new();
        let throttle = Arc::new(crate::limits::Throttle::new(
            clock,
            config.max_bytes_per_second,
        ));
        let placement = Placement::new(arbiters.iter().map(Arbiter::handle).collect(), &metrics);
        let shared = Arc::new(Shared {
            config: Arc::new(config),
            core,
            store,
            clock,
            metrics,
            throttle,
            home: Arbiter::current(),
            syncer,
            arbiters: arbiters.iter().map(Arbiter::handle).collect(),
            next_arbiter: AtomicUsize::new(0),
            placement,
            lifeline: Lifeline::new(),
            home_thread: std::thread::current().id(),
            transient_jobs: Arc::new(AtomicUsize::new(0)),
            slot_contention: AtomicUsize::new(0),
        });

        // Orphan temp files: this engine's names, in directories that live
        // records name, that no live record names.
        // Temp files of unfinished transfers are cut back to their recorded
        // offset: bytes past the last checkpoint are never trusted.
        // Each with the rights of the job's owner.
        // Each job's directory pins, as recorded when its files were added.
        let mut pins: HashMap<JobId, Arc<Pins>> = HashMap::new();
        let mut dirs = BTreeSet::new();
        let mut keep = HashSet::new();
        let mut truncate = Vec::new();
        let identities = shared.config.identities.clone();
        for (record, files) in &loaded.jobs {
            let id = record.id();
            let known = loaded.dir_pins.remove(&id).unwrap_or_default();
            let job_pins = pins
                .entry(id)
                .or_insert_with(|| Arc::new(Pins::recorded(shared.store.clone(), id, known)));
            let access = Access::of(identities.as_ref(), record.owner(), job_pins);
            for file in files {
                if let Some(dir) = Path::new(file.local()).parent() {
                    dirs.insert((dir.to_path_buf(), record.owner().to_owned(), id));
                }
                keep.insert(file.temp().to_owned());
                if file.may_have_temp() && !file.transferred() {
                    truncate.push((PathBuf::from(file.temp()), access.clone(), file.durable()));
                }
            }
        }
        let sweep: Vec<(PathBuf, Access)> = dirs
            .into_iter()
            .filter_map(|(dir, owner, id)| {
                let job_pins = pins.get(&id)?;
                Some((dir, Access::of(identities.as_ref(), &owner, job_pins)))
            })
            .collect();
        let engine_id = core.engine_id;
        let swept = blocking(move || {
            for (temp, access, durable) in truncate {
                if let Err(err) = fs::truncate_temp(&access, &temp, durable) {
                    tracing::warn!(message = "Could not truncate a temp file.", path = %temp.display(), error = %err);
                }
            }
            let mut deleted = Vec::new();
            for (dir, access) in sweep {
                match fs::sweep_dir(&access, &dir, engine_id, &keep) {
                    Ok(mut d) => deleted.append(&mut d),
                    Err(err) => tracing::warn!(message = "Sweep failed.", dir = %dir.display(), error = %err),
                }
            }
            Ok(deleted)
        })
        .await
        .unwrap_or_default();
        for path in swept {
            tracing::info!(message = "Deleted an orphan temp file.", %path);
        }

        let manager = Manager::new(shared.clone(), loaded.pending_deletes).start();
        let now = shared.clock.now();
        for (record, files) in loaded.jobs {
            let id = record.id();
            match Job::restore(record, files, core, now) {
                Ok(job) => {
                    let (owner, state) = (job.owner().to_owned(), job.state());
                    let job_pins = pins.remove(&id).unwrap_or_else(|| {
                        Arc::new(Pins::recorded(shared.store.clone(), id, Vec::new()))
                    });
                    let addr =
                        JobSupervisor::new(job, shared.clone(), manager.downgrade(), job_pins)
                            .start();
                    manager
                        .send(Register {
                            job: id,
                            addr,
                            owner,
                            state,
                        })
                        .await
                        .map_err(|_| EngineError::Stopped)?;
                }
                Err(err) => {
                    tracing::error!(message = "Could not restore a job; left in the store.", job = %id, error = %err);
                }
            }
        }
        Ok(Self {
            manager,
            shared,
            arbiters: Arc::new(arbiters),
        })
    }

    /// This engine's id (part of its temp file names).
    pub fn engine_id(&self) -> u64 {
        self.shared.core.engine_id
    }

    /// Creates a job owned by `who`: SUSPENDED, no files. Durable when this
    /// returns.
    pub async fn create_job(&self, who: &Principal, spec: JobSpec) -> Result<JobId, EngineError> {
        self.create_job_with(who, spec, JobSetup::default()).await
    }

    /// Creates a job owned by `who` with its files and properties, and
    /// resumed if `setup.resume`: all or nothing (the first refusal is the
    /// answer, and nothing of the job is written), in one durable write.
    /// The same as [`Engine::create_job`], [`Engine::add_files`],
    /// [`Engine::set_all`] and [`Engine::resume`] one after the other,
    /// without a job that exists half made in between, and with one
    /// fsync where they take four.
    pub async fn create_job_with(
        &self,
        who: &Principal,
        spec: JobSpec,
        setup: JobSetup,
    ) -> Result<JobId, EngineError> {
        let id = JobId(uuid::Uuid::now_v7());
        let now = self.shared.clock.now();
        let mut job = Job::create(id, who, spec, self.shared.core, now)?;
        let locals: Vec<String> = setup.files.iter().map(|f| f.local.clone()).collect();
        let mut commands = Vec::new();
        if !setup.files.is_empty() {
            commands.push(Command::AddFiles(setup.files));
        }
        if !setup.properties.is_empty() {
            commands.push(Command::SetAll(setup.properties));
        }
        if setup.resume {
            commands.push(Command::Resume);
        }
        // The core's refusals first (quotas, names, properties): pure, so
        // a refused request touches no filesystem.
        job.set_up(who, commands, now)?;
        // Then the destinations, as `add_files` checks them: with the
        // owner's rights, their directories pinned, but in pins of no job
        // yet (a refused job leaves no record of them).
        let checked = Arc::new(Pins::default());
        if !locals.is_empty() {
            let access = Access::of(self.shared.config.identities.as_ref(), &who.user, &checked);
            let problem = blocking(move || Ok(check_locals(&access, &locals)))
                .await
                .map_err(|err| EngineError::Io(err.to_string()))?;
            if let Some(err) = problem {
                return Err(err);
            }
        }
        let pins = Arc::new(Pins::recorded(self.shared.store.clone(), id, Vec::new()));
        let state = job.state();
        // The address exists before the supervisor runs: admission (the
        // owner's job quota) comes first, and a refused job never runs, so
        // nothing of it is written. The supervisor runs on the engine's
        // home arbiter (beside the Manager), whichever thread calls this.
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let (run_tx, run_rx) = tokio::sync::oneshot::channel::<()>();
        let supervisor = JobSupervisor::new(
            job,
            self.shared.clone(),
            self.manager.downgrade(),
            pins.clone(),
        );
        let spawned = self.shared.home.spawn_fn(move || {
            let ctx = actix::Context::<JobSupervisor>::new();
            if addr_tx.send(ctx.address()).is_ok() {
                actix_rt::spawn(async move {
                    if run_rx.await.is_ok() {
                        ctx.run(supervisor);
                    }
                });
            }
        });
        if !spawned {
            return Err(EngineError::Stopped);
        }
        let addr = addr_rx.await.map_err(|_| EngineError::Stopped)?;
        let register = Register {
            job: id,
            addr: addr.clone(),
            owner: who.user.clone(),
            state,
        };
        let limit = (!who.admin).then_some(self.shared.config.max_jobs_per_owner);
        self.manager
            .send(Admit { register, limit })
            .await
            .map_err(|_| EngineError::Stopped)??;
        // Admitted: its pins are recorded now, before its first (synced)
        // write, which the store orders after them.
        pins.adopt(checked.entries())
            .map_err(|err| EngineError::Io(err.to_string()))?;
        run_tx.send(()).map_err(|()| EngineError::Stopped)?;
        addr.send(Barrier)
            .await
            .map_err(|_| EngineError::Stopped)??;
        Ok(id)
    }

    /// The limits in force.
    pub async fn limits(&self) -> Result<crate::Limits, EngineError> {
        Ok(self.limits_now().await?.0)
    }

    /// The limits, and what the bandwidth schedule applies at the moment.
    pub async fn limits_now(&self) -> Result<(crate::Limits, crate::BandwidthNow), EngineError> {
        self.manager
            .send(GetLimits)
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// Changes the limits while the engine runs: a higher budget grants
    /// waiting transfers at once; a lower one lets running transfers finish
    /// and does not replace them; a bandwidth cap applies from the next
    /// chunk of every transfer; a new time slice applies to slots held now
    /// (counted from when they were granted); a new bandwidth schedule
    /// applies at once (a `pause` window takes background slots back).
    /// Zero budgets, a zero cap or a zero slice are refused.
    pub async fn set_limits(&self, limits: crate::Limits) -> Result<(), EngineError> {
        if limits.max_transfers == 0
            || limits.max_transfers_per_host == 0
            || limits.max_bytes_per_second == Some(0)
            || limits.time_slice.is_zero()
        {
            return Err(CommandError::InvalidArgument(
                "budgets, the bandwidth cap and the time slice are at least 1".into(),
            )
            .into());
        }
        self.manager
            .send(SetLimits(limits))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// The quotas that apply to `who`, and how much of them it uses.
    pub async fn quotas(&self, who: &Principal) -> Result<Quotas, EngineError> {
        let unfinished_jobs = self
            .manager
            .send(CountJobs(who.user.clone()))
            .await
            .map_err(|_| EngineError::Stopped)?;
        Ok(Quotas {
            max_jobs_per_owner: self.shared.config.max_jobs_per_owner,
            max_files_per_job: self.shared.core.max_files_per_job,
            unfinished_jobs,
            exempt: who.admin,
        })
    }

    async fn supervisor(&self, job: JobId) -> Result<Addr<JobSupervisor>, EngineError> {
        self.manager
            .send(Lookup(job))
            .await
            .map_err(|_| EngineError::Stopped)?
            .ok_or(EngineError::Command(CommandError::NotFound))
    }

    async fn exec(
        &self,
        who: &Principal,
        job: JobId,
        command: Command,
    ) -> Result<Outcome, EngineError> {
        self.exec_pinning(who, job, command, Vec::new()).await
    }

    /// [`Self::exec`], recording `pins` with the job if it is accepted.
    async fn exec_pinning(
        &self,
        who: &Principal,
        job: JobId,
        command: Command,
        pins: crate::supervisor::NewPins,
    ) -> Result<Outcome, EngineError> {
        let addr = self.supervisor(job).await?;
        addr.send(Exec {
            who: who.clone(),
            command,
            pins,
        })
        .await
        .map_err(|_| EngineError::Stopped)?
    }

    async fn done(&self, who: &Principal, job: JobId, command: Command) -> Result<(), EngineError> {
        self.exec(who, job, command).await.map(|_| ())
    }

    /// Adds files to a job, all or none. Each local name must be an absolute,
    /// normalised path in an existing directory, and not a directory itself.
    pub async fn add_files(
        &self,
        who: &Principal,
        job: JobId,
        files: Vec<FileSpec>,
    ) -> Result<Vec<FileId>, EngineError> {
        // Others see nothing: the access check comes before any other.
        self.view(who, job, false).await?;
        // The owner's rights decide: the owner's transfers write there.
        let access = self
            .supervisor(job)
            .await?
            .send(OwnerAccess)
            .await
            .map_err(|_| EngineError::Stopped)?;
        let locals: Vec<String> = files.iter().map(|f| f.local.clone()).collect();
        // Checked against a copy of the job's pins: the directories it
        // pins are recorded only if the core accepts the files (a refused
        // add leaves no pin of a directory the job never used).
        let (checking, checked) = access.checking();
        let problem = blocking(move || Ok(check_locals(&checking, &locals)))
            .await
            .map_err(|err| EngineError::Io(err.to_string()))?;
        if let Some(err) = problem {
            return Err(err);
        }
        // All it holds, the job's own pins included: the supervisor checks
        // each against the pins of the moment (another add may have pinned
        // a directory since) and records those it lacks.
        let pins = checked.map(|checked| checked.entries()).unwrap_or_default();
        match self
            .exec_pinning(who, job, Command::AddFiles(files), pins)
            .await?
        {
            Outcome::Reply(Reply::Added(ids)) => Ok(ids),
            _ => Ok(Vec::new()),
        }
    }

    /// Queues the job (BITS Resume).
    pub async fn resume(&self, who: &Principal, job: JobId) -> Result<(), EngineError> {
        self.done(who, job, Command::Resume).await
    }

    /// Stops the job's transfers (BITS Suspend); idempotent.
    pub async fn suspend(&self, who: &Principal, job: JobId) -> Result<(), EngineError> {
        self.done(who, job, Command::Suspend).await
    }

    /// Changes a property.
    pub async fn set(
        &self,
        who: &Principal,
        job: JobId,
        property: Property,
    ) -> Result<(), EngineError> {
        self.done(who, job, Command::Set(property)).await
    }

    /// Changes several properties: all or none.
    pub async fn set_all(
        &self,
        who: &Principal,
        job: JobId,
        properties: Vec<Property>,
    ) -> Result<(), EngineError> {
        self.done(who, job, Command::SetAll(properties)).await
    }

    /// Makes `who` (an admin) the job's owner.
    pub async fn take_ownership(&self, who: &Principal, job: JobId) -> Result<(), EngineError> {
        self.done(who, job, Command::TakeOwnership).await
    }

    /// Ends the job, publishing the files transferred before this call
    /// (BITS Complete). A rename failure is
    /// `EngineError::Command(CommandError::RenameFailed(..))` and leaves the
    /// job TRANSFERRED.
    pub async fn complete(
        &self,
        who: &Principal,
        job: JobId,
    ) -> Result<CompleteAnswer, EngineError> {
        match self.exec(who, job, Command::Complete).await? {
            Outcome::Answer(Answer::Complete(answer)) => Ok(answer),
            _ => Err(EngineError::Stopped),
        }
    }

    /// Ends the job, deleting every temp file (BITS Cancel).
    pub async fn cancel(&self, who: &Principal, job: JobId) -> Result<CancelAnswer, EngineError> {
        match self.exec(who, job, Command::Cancel).await? {
            Outcome::Answer(Answer::Cancel(answer)) => Ok(answer),
            _ => Err(EngineError::Stopped),
        }
    }

    /// The job: state, progress, times, error, properties, last answer.
    pub async fn job(&self, who: &Principal, job: JobId) -> Result<JobView, EngineError> {
        self.view(who, job, false).await.map(|(view, _)| view)
    }

    /// The job's files with their progress and `completed` flags. Each
    /// `bytes_durable` is recorded in the store when this returns: a crash
    /// right after never takes a file back behind it.
    pub async fn files(&self, who: &Principal, job: JobId) -> Result<Vec<FileView>, EngineError> {
        self.job_and_files(who, job).await.map(|(_, files)| files)
    }

    /// The job, with the same guarantee as [`Engine::files`]: what it
    /// shows is in the store when this returns (a state seen here survives
    /// a crash right after).
    pub async fn job_recorded(&self, who: &Principal, job: JobId) -> Result<JobView, EngineError> {
        let (view, _) = self.view(who, job, false).await?;
        self.recorded(job).await?;
        Ok(view)
    }

    /// The job and its files from one snapshot, with the same guarantee as
    /// [`Engine::files`].
    pub async fn job_and_files(
        &self,
        who: &Principal,
        job: JobId,
    ) -> Result<(JobView, Vec<FileView>), EngineError> {
        let snapshot = self.view(who, job, true).await?;
        self.recorded(job).await?;
        Ok(snapshot)
    }

    /// Waits until every persist of `job` queued so far is written (a
    /// snapshot taken before shows nothing the store lacks).
    async fn recorded(&self, job: JobId) -> Result<(), EngineError> {
        self.supervisor(job)
            .await?
            .send(Barrier)
            .await
            .map_err(|_| EngineError::Stopped)?
    }

    async fn view(
        &self,
        who: &Principal,
        job: JobId,
        files: bool,
    ) -> Result<(JobView, Vec<FileView>), EngineError> {
        let addr = self.supervisor(job).await?;
        let mut view = addr
            .send(View {
                who: who.clone(),
                files,
            })
            .await
            .map_err(|_| EngineError::Stopped)??;
        self.explain(std::slice::from_mut(&mut view.0)).await?;
        Ok(view)
    }

    /// Queued jobs: which of the scheduler's limits holds each one back
    /// (the job itself only knows that it waits for a slot).
    async fn explain(&self, views: &mut [JobView]) -> Result<(), EngineError> {
        let queued: Vec<JobId> = views
            .iter()
            .filter(|v| v.waiting == Some(ferry_core::Waiting::Queued))
            .map(|v| v.id)
            .collect();
        if queued.is_empty() {
            return Ok(());
        }
        let mut blocked = self
            .manager
            .send(Blocked(queued))
            .await
            .map_err(|_| EngineError::Stopped)?;
        for view in views {
            if let Some(reason) = blocked.remove(&view.id) {
                view.waiting = Some(reason);
            }
        }
        Ok(())
    }

    /// The caller's jobs (every user's with `all_users`, admins only), final
    /// jobs excluded.
    pub async fn list(
        &self,
        who: &Principal,
        all_users: bool,
    ) -> Result<Vec<JobView>, EngineError> {
        if all_users && !who.admin {
            return Err(CommandError::AccessDenied.into());
        }
        let user = (!all_users).then(|| who.user.clone());
        let addrs = self
            .manager
            .send(Listable { user })
            .await
            .map_err(|_| EngineError::Stopped)?;
        let views = join_all(addrs.iter().map(|addr| {
            addr.send(View {
                who: who.clone(),
                files: false,
            })
        }))
        .await;
        let mut jobs: Vec<JobView> = views
            .into_iter()
            .filter_map(|v| v.ok().and_then(Result::ok))
            .map(|(view, _)| view)
            .collect();
        jobs.sort_by_key(|j| j.id);
        self.explain(&mut jobs).await?;
        Ok(jobs)
    }

    /// The engine's metrics in the Prometheus text format: bytes and files
    /// transferred, transfer errors by class, active transfers, store write
    /// latency, and jobs by state.
    pub async fn metrics_text(&self) -> Result<String, EngineError> {
        let admin = Principal::admin("metrics");
        let jobs = self.list(&admin, true).await?;
        Ok(self.shared.metrics.render(jobs.iter().map(|job| job.state)))
    }

    /// Subscribes to events. The jobs already TRANSFERRED or in ERROR come
    /// first.
    pub async fn subscribe(&self) -> Result<Events, EngineError> {
        let rx = self
            .manager
            .send(Subscribe)
            .await
            .map_err(|_| EngineError::Stopped)?;
        Ok(Events { rx })
    }

    /// Stops every transfer at its next chunk (writing and checkpointing what
    /// arrived), flushes the store, and stops the engine's actors and
    /// threads, without changing any job's state: jobs that were queued or
    /// transferring continue by themselves at the next start.
    pub async fn shutdown(self) -> Result<(), EngineError> {
        let _ = self.manager.send(ShutdownAll).await;
        // Transfers the supervisors did not stop and wait for (a job whose
        // store write failed, a replaced attempt) stop now, their writes
        // in flight ended.
        self.shared.lifeline.end().await;
        // The home thread outlives the engine: its awc client and pooled
        // connections go now.
        let config = self.shared.config.clone();
        self.shared
            .home
            .spawn_fn(move || crate::file_actor::drop_client(&config));
        let flushed = self.shared.store.flush().await;
        // Closing releases the data dir's lock: a new engine may open it.
        self.shared.store.close().await;
        for arbiter in self.arbiters.iter() {
            arbiter.stop();
        }
        flushed.map_err(|err| EngineError::Store(err.to_string()))
    }
}

/// The shell's checks of local names (the core checks their form): the
/// directory exists and is reached by the access rules, the owner may create
/// files in it, and the name is not a directory. Pins each directory.
fn check_locals(access: &Access, locals: &[String]) -> Option<EngineError> {
    // Relative names: the core refuses them with its own error.
    let paths = locals.iter().map(Path::new).filter(|p| p.is_absolute());
    match fs::check_locals(access, paths) {
        Ok(()) => None,
        Err((local, fs::LocalProblem::Invalid(reason))) => {
            Some(EngineError::Command(CommandError::InvalidLocalName {
                local: local.display().to_string(),
                reason,
            }))
        }
        Err((local, fs::LocalProblem::Forbidden(reason))) => Some(
            EngineError::DestinationForbidden(format!("{}: {reason}", local.display())),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_job_goes_where_fewest_jobs_are_home_first_among_equals() {
        assert_eq!(least_loaded(&[]), 0);
        assert_eq!(least_loaded(&[0, 0, 0]), 0);
        assert_eq!(least_loaded(&[1, 0, 0]), 1);
        assert_eq!(least_loaded(&[1, 1, 0]), 2);
        assert_eq!(least_loaded(&[1, 1, 1]), 0);
        assert_eq!(least_loaded(&[2, 1, 1]), 1);
        assert_eq!(least_loaded(&[0, 3, 1]), 0);
    }

    #[actix_rt::test]
    async fn places_fill_the_least_loaded_arbiter_and_are_given_back() {
        let metrics = Metrics::new();
        let placement = Placement::new(vec![Arbiter::current(), Arbiter::current()], &metrics);
        let counts = || placement.gauges.iter().map(Gauge::get).collect::<Vec<_>>();
        let gauges = || placement.gauges.iter().map(Gauge::get).collect::<Vec<_>>();
        let first = placement.place();
        assert!(first.arbiter().is_none(), "a job alone runs at home");
        let second = placement.place();
        let third = placement.place();
        assert!(second.arbiter().is_some() && third.arbiter().is_some());
        assert_eq!((second.index, third.index), (1, 2));
        assert_eq!(counts(), vec![1, 1, 1]);
        let fourth = placement.place();
        assert_eq!(fourth.index, 0);
        drop(second);
        assert_eq!(counts(), vec![2, 0, 1]);
        assert_eq!(gauges(), vec![2, 0, 1]);
        assert_eq!(placement.place().index, 1);
        // The one just placed was dropped at once.
        assert_eq!(counts(), vec![2, 0, 1]);
        drop((first, third, fourth));
        assert_eq!(counts(), vec![0, 0, 0]);
        assert_eq!(gauges(), vec![0, 0, 0]);
        assert!(
            metrics
                .render([])
                .contains("ferry_placed_jobs{arbiter=\"1\"} 0")
        );
    }

    #[actix_rt::test]
    async fn ending_the_lifeline_waits_for_every_tie() {
        let lifeline = Lifeline::new();
        // Ended at once without ties.
        lifeline.end().await;
        let lifeline = Lifeline::new();
        let ties: Vec<Tie> = (0..3).map(|_| lifeline.tie()).collect();
        let mut ended: Vec<_> = ties.iter().map(Tie::ended).collect();
        let (done_tx, mut done) = tokio::sync::oneshot::channel();
        // Each tie is dropped once it sees the end, the way an actor stops.
        for (tie, mut ended) in ties.into_iter().zip(ended.drain(..)) {
            actix_rt::spawn(async move {
                let _ = ended.wait_for(|e| *e).await;
                drop(tie);
            });
        }
        actix_rt::spawn(async move {
            lifeline.end().await;
            let _ = done_tx.send(lifeline.alive.count.load(Ordering::Acquire));
        });
        let left = tokio::time::timeout(std::time::Duration::from_secs(30), &mut done)
            .await
            .expect("the end waits no longer than the ties live")
            .unwrap();
        assert_eq!(left, 0);
    }
}

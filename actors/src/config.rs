//! The engine's settings.

use std::{path::PathBuf, sync::Arc, time::Duration};

use ferry_core::CoreConfig;

use crate::access::Identities;

/// How the engine runs. `EngineConfig::new(data_dir)` gives the defaults.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where the RocksDB store lives (created if missing).
    pub data_dir: PathBuf,
    /// The job model's settings (retry floor, retention, inactivity timeout,
    /// default parallel files). The engine id is the store's own.
    pub core: CoreConfig,
    /// Transfers running at once across all background jobs (foreground jobs
    /// are outside this budget).
    pub max_transfers: usize,
    /// Transfers running at once to one host, across all jobs.
    pub max_transfers_per_host: usize,
    /// Background jobs of one priority share the slots in turns of this
    /// long (a job that held its slots for a slice gives them back when
    /// another of its priority waits for one; a lower priority gives them
    /// back at once). 60 s.
    pub time_slice: Duration,
    /// Bytes per second over all transfers (a token bucket, bursts of a
    /// tenth of a second's worth); `None`: no cap. Changeable at runtime
    /// ([`crate::Engine::set_limits`]).
    pub max_bytes_per_second: Option<u64>,
    /// Bandwidth windows by time of day and weekday (see [`crate::Limits`]).
    pub bandwidth_schedule: Vec<ferry_core::window::Window>,
    /// Unfinished jobs (not ACKNOWLEDGED or CANCELLED) an owner who is not
    /// an admin may have: creating one more is refused with
    /// `too_many_jobs`. Files per job are `core.max_files_per_job`.
    /// [`EngineConfig::bits_quotas`] sets BITS's values.
    pub max_jobs_per_owner: usize,
    /// Arbiters (threads) besides the engine's own (its *home*) that jobs'
    /// transfers are placed on: a job's transfers run on one arbiter, the
    /// one with the fewest jobs placed (transferring or syncing), home
    /// first among equals; commit steps spread over these. Default one
    /// per core (so one more thread than cores may run transfers, home
    /// included); 0 runs all on the home arbiter.
    pub arbiters: usize,
    /// Connecting, sending the request and receiving the response head.
    pub connect_timeout: Duration,
    /// Longest wait for the next body chunk before the transfer fails
    /// (transient); awc has no body timeout of its own.
    pub idle_timeout: Duration,
    /// Redirects followed per attempt.
    pub max_redirects: u32,
    /// Bytes written between two checkpoints (fsync, then record the offset).
    pub checkpoint_bytes: u64,
    /// Longest time between two checkpoints while bytes arrive.
    pub checkpoint_interval: Duration,
    /// Shortest time between two progress reports of one file.
    pub progress_interval: Duration,
    /// How often temp files whose deletion failed are deleted again.
    pub sweep_interval: Duration,
    /// Files created by the syncer on one filesystem and waiting at once to
    /// be made durable (the ends of small bodies) from which one syncfs
    /// replaces their fdatasyncs; 0: never. It is a group commit: while
    /// one batch syncs, the next gathers. Only on ext4, XFS and btrfs, on
    /// Linux 5.17 or later (elsewhere a syncfs may sync less than an
    /// fdatasync, or not report it). A syncfs also writes back other
    /// programs' dirty data on that filesystem; one slower than 0.5 s sends
    /// that filesystem's files to fdatasyncs for a minute.
    pub syncfs_batch: usize,
    /// Root certificates (DER) trusted for https besides the bundled web PKI
    /// roots: a private or corporate CA.
    pub tls_roots: Vec<Vec<u8>>,
    /// Whether the bundled web PKI roots (Mozilla's, through webpki-roots)
    /// are trusted too (default); without them only `tls_roots` are, for a
    /// deployment that must reach its own servers only.
    pub tls_web_roots: bool,
    /// Act for other users (a system daemon): when set, each job's file
    /// operations run with the filesystem identity of its owner (the caller
    /// of Complete or Cancel for the commit), directories are reached
    /// without following symlinks, and published files belong to the
    /// caller of Complete. The engine must then run as root. `None` (the
    /// default): everything runs with the engine's own identity.
    pub identities: Option<Arc<dyn Identities>>,
}

impl EngineConfig {
    /// BITS's quotas: 60 unfinished jobs per owner and 200 files per job
    /// (admins exempt), instead of ferry's 10,000 and 100,000.
    pub fn bits_quotas(&mut self) {
        self.max_jobs_per_owner = ferry_core::config::BITS_MAX_JOBS_PER_OWNER;
        self.core.max_files_per_job = ferry_core::config::BITS_MAX_FILES_PER_JOB;
    }

    /// Defaults for a store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            core: CoreConfig::default(),
            max_transfers: 8,
            max_transfers_per_host: 8,
            time_slice: Duration::from_secs(60),
            max_bytes_per_second: None,
            bandwidth_schedule: Vec::new(),
            max_jobs_per_owner: ferry_core::config::DEFAULT_MAX_JOBS_PER_OWNER,
            arbiters: std::thread::available_parallelism().map_or(2, usize::from),
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_redirects: 10,
            checkpoint_bytes: 16 << 20,
            checkpoint_interval: Duration::from_secs(1),
            progress_interval: Duration::from_millis(250),
            sweep_interval: Duration::from_secs(600),
            syncfs_batch: 8,
            tls_roots: Vec::new(),
            tls_web_roots: true,
            identities: None,
        }
    }
}

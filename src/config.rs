//! Engine-wide settings the core needs, and BITS's limits.

use std::time::Duration;

/// Longest display name, in characters (BITS: 256, else `BG_E_STRING_TOO_LONG`).
pub const MAX_NAME_CHARS: usize = 256;
/// Longest description, in characters (BITS: 1,024).
pub const MAX_DESCRIPTION_CHARS: usize = 1_024;
/// Longest remote name, in characters (BITS: 2,200).
pub const MAX_REMOTE_CHARS: usize = 2_200;
/// Longest local path, in bytes (Linux `PATH_MAX`, terminating NUL excluded).
pub const MAX_LOCAL_PATH_BYTES: usize = 4_095;
/// Longest file name component, in bytes (Linux `NAME_MAX`).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest notify command line (program plus arguments), in characters
/// (BITS: 4,000 for the parameters).
pub const MAX_NOTIFY_CHARS: usize = 4_000;
/// Most files a job may transfer at once (the parallel-files extension).
pub const MAX_PARALLEL_FILES: u32 = 64;
/// Files a job of a non-admin may hold by default (BITS: 200).
pub const DEFAULT_MAX_FILES_PER_JOB: usize = 100_000;
/// Unfinished jobs an owner who is not an admin may have by default (BITS:
/// 60 per user); the engine enforces it.
pub const DEFAULT_MAX_JOBS_PER_OWNER: usize = 10_000;
/// BITS's MaxFilesPerJob default.
pub const BITS_MAX_FILES_PER_JOB: usize = 200;
/// BITS's MaxJobsPerUser default.
pub const BITS_MAX_JOBS_PER_OWNER: usize = 60;

/// BITS default minimum retry delay: 600 s.
pub const DEFAULT_MIN_RETRY_DELAY: Duration = Duration::from_secs(600);
/// BITS default no-progress timeout: 1,209,600 s (14 days).
pub const DEFAULT_NO_PROGRESS_TIMEOUT: Duration = Duration::from_secs(14 * 24 * 3600);
/// BITS default maximum download time: 7,776,000 s (90 days).
pub const DEFAULT_MAX_DOWNLOAD_TIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// Settings of the whole engine that shape every job's behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreConfig {
    /// The lowest minimum retry delay a job may set; smaller values are raised
    /// to it (BITS: 5 s). Tests lower it to run fast.
    pub retry_delay_floor: Duration,
    /// Longest `Retry-After` honoured; larger values are capped (1 hour).
    pub max_retry_after: Duration,
    /// The retry backoff's cap: repeated transient failures without
    /// progress double the wait up to this (1 hour; never below the job's
    /// minimum retry delay).
    pub max_retry_delay: Duration,
    /// A job neither completed nor cancelled, and not modified, for this long
    /// is cancelled (BITS JobInactivityTimeout: 90 days).
    pub inactivity_timeout: Duration,
    /// How long a job in a final state stays readable by id with its last
    /// answer before its records are forgotten (7 days).
    pub retention: Duration,
    /// Files a new job transfers at once (BITS: 1).
    pub default_parallel_files: u32,
    /// Files a job of a non-admin may hold (BITS's MaxFilesPerJob policy:
    /// 200; ferry's default: 100,000). Admins are exempt.
    pub max_files_per_job: usize,
    /// Files of one job whose bodies have all arrived and whose bytes are
    /// still being made durable (fsync) at once; at this many no new file
    /// of the job starts (4,096). Their transfer slots are free meanwhile,
    /// so the fsyncs of many small files overlap instead of each holding a
    /// slot. A syncing file holds an open temp file, and its last bytes
    /// only until the engine's writer has written them (the engine bounds
    /// those bytes on its own), so this limit bounds open files, not
    /// memory; the larger it is, the more files one commit of a slow disk
    /// covers. (At 64, 2,000 files of 64 KiB on a journaled ext4 on a loop
    /// device waited on this limit 17% of the time: their fsyncs took
    /// 28 ms. At 256, with another program writing to the same disk, the
    /// same download took 0.73 s against 0.45 s at 4,096:
    /// bench/RESULTS.md, "A busy disk".)
    pub max_syncing_files: usize,
    /// This engine's id, part of every temp file name
    /// (`.ferry-<engine id>-<job>-<n>.part`), so that engines sharing a
    /// directory never touch each other's files.
    pub engine_id: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            retry_delay_floor: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(3600),
            max_retry_delay: Duration::from_secs(3600),
            inactivity_timeout: Duration::from_secs(90 * 24 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            default_parallel_files: 1,
            max_files_per_job: DEFAULT_MAX_FILES_PER_JOB,
            max_syncing_files: 4096,
            engine_id: 0,
        }
    }
}

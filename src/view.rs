//! Read-only snapshots of a job and its files, for callers.

use std::time::Duration;

use crate::{
    command::NotifyCommand,
    effect::Answer,
    error::JobError,
    time::UtcTime,
    types::{FileId, JobId, JobState, JobType, Priority},
};

/// A job as a caller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// The job's id.
    pub id: JobId,
    /// Download or upload.
    pub kind: JobType,
    /// The owner's user name.
    pub owner: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Priority.
    pub priority: Priority,
    /// State.
    pub state: JobState,
    /// Sum of the files' sizes; `None` until every size is known (BITS
    /// BG_SIZE_UNKNOWN). A job with no files has 0.
    pub bytes_total: Option<u64>,
    /// Bytes transferred so far, over all files.
    pub bytes_transferred: u64,
    /// Number of files.
    pub files_total: usize,
    /// Files whose bytes are all transferred.
    pub files_transferred: usize,
    /// The error object (only in ERROR and TRANSIENT_ERROR).
    pub error: Option<JobError>,
    /// Failed transfers so far; never reset.
    pub error_count: u64,
    /// When the job was created.
    pub created: UtcTime,
    /// When the job last changed.
    pub modified: UtcTime,
    /// When the job last entered TRANSFERRED.
    pub transferred_at: Option<UtcTime>,
    /// Minimum retry delay.
    pub min_retry_delay: Duration,
    /// No-progress timeout.
    pub no_progress_timeout: Duration,
    /// Maximum download time.
    pub max_download_time: Duration,
    /// Program run on TRANSFERRED or ERROR.
    pub notify_command: Option<NotifyCommand>,
    /// Files transferred at once.
    pub parallel_files: u32,
    /// The job's own bandwidth cap, bytes per second.
    pub max_bytes_per_second: Option<u64>,
    /// A Complete failed to rename some files and waits for the next one.
    pub commit_stalled: bool,
    /// The answer of the Complete or Cancel that ended the job.
    pub answer: Option<Answer>,
    /// Why the job is not transferring (`None` while it transfers, and once
    /// it is TRANSFERRED or final; the engine adds `Throttled` while a cap
    /// holds a transferring job back).
    pub waiting: Option<Waiting>,
}

/// Why a job is not transferring: "why is my job waiting", answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// SUSPENDED: it waits for a Resume (new jobs start suspended).
    SuspendedByUser,
    /// SUSPENDED with no files: add some, then Resume.
    NoFiles,
    /// TRANSIENT_ERROR: the next attempt is at `at` (`None`: when its host
    /// answers again), after the error `error` (a code).
    RetryAt {
        /// The next attempt.
        at: Option<UtcTime>,
        /// The last error's code.
        error: String,
    },
    /// ERROR: it waits for a Resume or Cancel after the error `error`.
    Error {
        /// The error's code.
        error: String,
    },
    /// QUEUED: it waits for a transfer slot. The engine's scheduler says
    /// which limit holds it, as [`Waiting::ForSlot`] or
    /// [`Waiting::HostBusy`]; this is what the job alone knows.
    Queued,
    /// Every one of the `slots` global transfer slots is taken; the highest
    /// priority holding one is `behind`.
    ForSlot {
        /// The highest priority holding a slot.
        behind: Priority,
        /// The global budget.
        slots: usize,
    },
    /// The job's host already has `limit` transfers.
    HostBusy {
        /// The host.
        host: String,
        /// Transfers at once per host.
        limit: usize,
    },
    /// A bandwidth window pauses background transfers until `until`
    /// (`None`: the schedule never ends the pause).
    ScheduleWindow {
        /// When the pause ends.
        until: Option<UtcTime>,
    },
    /// TRANSFERRING, but a bandwidth cap (the job's own, else the
    /// engine's) held its transfers back within the last second.
    Throttled {
        /// The cap, bytes per second.
        max_bytes_per_second: u64,
    },
}

impl Waiting {
    /// The machine-readable reason: `suspended_by_user`, `no_files`,
    /// `retry_at`, `error`, `queued`, `waiting_for_slot`, `host_busy`,
    /// `schedule_window`, `throttled`.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::SuspendedByUser => "suspended_by_user",
            Self::NoFiles => "no_files",
            Self::RetryAt { .. } => "retry_at",
            Self::Error { .. } => "error",
            Self::Queued => "queued",
            Self::ForSlot { .. } => "waiting_for_slot",
            Self::HostBusy { .. } => "host_busy",
            Self::ScheduleWindow { .. } => "schedule_window",
            Self::Throttled { .. } => "throttled",
        }
    }
}

/// One file as a caller sees it (BITS BG_FILE_PROGRESS and names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileView {
    /// The file's id.
    pub id: FileId,
    /// Remote URL.
    pub remote: String,
    /// Final local name.
    pub local: String,
    /// Temp file name.
    pub temp: String,
    /// Size, if known.
    pub bytes_total: Option<u64>,
    /// Bytes received so far.
    pub bytes_transferred: u64,
    /// Bytes durable on disk (where a resume starts).
    pub bytes_durable: u64,
    /// Every byte is durable: Complete will publish this file.
    pub transferred: bool,
    /// Published at its final name by Complete (BITS `Completed`; never
    /// "bytes done").
    pub completed: bool,
    /// A transfer of this file is running.
    pub transferring: bool,
}

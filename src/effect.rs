//! What comes out of a job: effects for the shell to carry out.

use serde::{Deserialize, Serialize};

use crate::{
    error::{CommandError, FileFailure},
    record::{FileRecord, JobRecord},
    time::UtcTime,
    types::{FileId, JobId, Validator},
};

/// One thing for the shell to do.
///
/// The shell carries effects out **in the order they are polled**. A
/// [`Effect::Persist`] with [`Durability::Sync`] must be durable before any
/// later effect is carried out: the commit protocol of Complete rests on it.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Start transferring a file (the job holds a slot for it).
    StartTransfer(TransferOrder),
    /// Stop a running transfer; its progress up to the last checkpoint stays.
    StopTransfer {
        /// The file.
        file: FileId,
        /// The attempt to stop.
        attempt: u64,
    },
    /// Write these records in one atomic batch.
    Persist(Batch),
    /// Publish a transferred file: fsync the temp file, rename it to the final
    /// name, fsync the directory. Must be idempotent: if the temp file is gone
    /// and the final name holds the file, report success. Report the result
    /// with [`FileEvent::Published`](crate::FileEvent::Published).
    Publish {
        /// The file.
        file: FileId,
        /// Its temp file.
        temp: String,
        /// Its final name.
        local: String,
        /// The modification time to give it (the server's Last-Modified).
        modified: Option<UtcTime>,
        /// The file's size, for checking an earlier publish (idempotence).
        size: Option<u64>,
    },
    /// Delete a temp file (a missing file counts as deleted). Report the
    /// result with [`FileEvent::TempDeleted`](crate::FileEvent::TempDeleted).
    DeleteTemp {
        /// The file.
        file: FileId,
        /// Its temp file.
        temp: String,
    },
    /// Tell whoever listens (callbacks, event streams, the notify command).
    Notify(Notification),
    /// The answer to the pending Complete or Cancel (also produced when a
    /// commit rolls forward after a restart, or the inactivity timeout
    /// cancels the job: then nobody waits for it, and it is kept as the job's
    /// last answer).
    Answer(Result<Answer, CommandError>),
    /// The retention period of a final job is over: delete its records and
    /// drop it.
    Forget(JobId),
}

/// Everything a file actor needs to run one transfer attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferOrder {
    /// The file.
    pub file: FileId,
    /// This attempt's number; events carry it back.
    pub attempt: u64,
    /// The URL to fetch, exactly as added.
    pub remote: String,
    /// The temp file to write (in the destination directory).
    pub temp: String,
    /// Where to resume: the temp file is truncated to this length and the
    /// request asks for `bytes=offset-` (no Range header at 0).
    pub offset: u64,
    /// The validator for `If-Range` (only when `offset > 0`).
    pub validator: Option<Validator>,
    /// The entity size recorded by an earlier attempt, if any.
    pub size: Option<u64>,
}

/// How durable a [`Batch`] must be before the shell goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsynced before any later effect: state transitions, commits.
    Sync,
    /// May be written lazily (survives a process crash, maybe not power
    /// loss): progress checkpoints.
    Lazy,
}

/// Records of one job to write atomically.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The job.
    pub job: JobId,
    /// The job's record, if it changed.
    pub job_record: Option<Box<JobRecord>>,
    /// The file records that changed.
    pub files: Vec<FileRecord>,
    /// How durable the write must be.
    pub durability: Durability,
}

impl Batch {
    /// Adds a later batch of the same job, not yet written: its records
    /// replace these of the same file or job, and the whole is as durable
    /// as the more durable of the two.
    pub(crate) fn absorb(&mut self, later: Self) {
        debug_assert_eq!(self.job, later.job);
        if later.job_record.is_some() {
            self.job_record = later.job_record;
        }
        if !later.files.is_empty() {
            let replaced: std::collections::HashSet<_> =
                later.files.iter().map(|f| f.file).collect();
            self.files.retain(|f| !replaced.contains(&f.file));
            self.files.extend(later.files);
        }
        if later.durability == Durability::Sync {
            self.durability = Durability::Sync;
        }
    }
}

/// Events for listeners (BITS's callback interface).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// Every file is transferred (entry into TRANSFERRED).
    JobTransferred,
    /// Entry into ERROR (never for transient errors).
    JobError,
    /// A command or state change altered the job (not sent for the changes
    /// into ERROR or TRANSFERRED, which have their own notifications).
    JobModified,
    /// One file is transferred; sent before the job's JobTransferred.
    FileTransferred(FileId),
}

/// The answer of a Complete or Cancel that succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Complete's answer.
    Complete(CompleteAnswer),
    /// Cancel's answer.
    Cancel(CancelAnswer),
}

/// What Complete did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteAnswer {
    /// `partial_complete` if any file was dropped, else
    /// `unable_to_delete_files` if a temp file remains, else `complete`.
    pub result: CompleteResult,
    /// Files published at their final names.
    pub saved: Vec<FileId>,
    /// Files not fully transferred before Complete: their temp files deleted.
    pub dropped: Vec<FileId>,
    /// Temp files that could not be deleted.
    pub undeleted: Vec<FileFailure>,
}

/// Complete's result code (S_OK, BG_S_PARTIAL_COMPLETE, BG_S_UNABLE_TO_DELETE_FILES).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompleteResult {
    /// Every file was saved and every temp file deleted.
    Complete,
    /// Some files (maybe all) were dropped.
    PartialComplete,
    /// Every file saved, but some temp files could not be deleted.
    UnableToDeleteFiles,
}

impl CompleteResult {
    /// The name used in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::PartialComplete => "partial_complete",
            Self::UnableToDeleteFiles => "unable_to_delete_files",
        }
    }
}

/// What Cancel did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelAnswer {
    /// `ok`, or `unable_to_delete_files` if a temp file remains.
    pub result: CancelResult,
    /// Why the job was cancelled.
    pub reason: CancelReason,
    /// Temp files that could not be deleted.
    pub undeleted: Vec<FileFailure>,
}

/// Cancel's result code (S_OK, BG_S_UNABLE_TO_DELETE_FILES).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelResult {
    /// Every temp file deleted.
    Ok,
    /// Some temp files remain.
    UnableToDeleteFiles,
}

impl CancelResult {
    /// The name used in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::UnableToDeleteFiles => "unable_to_delete_files",
        }
    }
}

/// Who cancelled the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelReason {
    /// A caller's Cancel.
    Command,
    /// The inactivity timeout.
    Inactivity,
}

impl CancelReason {
    /// The name used in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Inactivity => "inactivity",
        }
    }
}

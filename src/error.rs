//! Typed errors: refused commands, transfer failures, and the job's error
//! object.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

use crate::types::{FileId, JobState};

/// Why a command was refused. A refused command changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No such job, or the caller may not see it (others see nothing).
    #[error("job not found")]
    NotFound,
    /// The caller can see the job but may not do this (TakeOwnership by a
    /// non-admin).
    #[error("access denied")]
    AccessDenied,
    /// The command is not allowed in the job's state (BG_E_INVALID_STATE).
    #[error("invalid in state {0}")]
    InvalidState(JobState),
    /// Resume of a job without files (BG_E_EMPTY); the job stays suspended.
    #[error("the job has no files")]
    EmptyJob,
    /// A Complete or Cancel of this job is being carried out; retry when it
    /// has answered.
    #[error("a complete or cancel of this job is in progress")]
    Busy,
    /// A string is longer than BITS allows (BG_E_STRING_TOO_LONG).
    #[error("{field} is longer than {max} characters")]
    StringTooLong {
        /// Which field.
        field: &'static str,
        /// Its limit.
        max: usize,
    },
    /// An argument is out of range or malformed (E_INVALIDARG).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A remote name that is not an absolute http or https URL.
    #[error("invalid remote name {remote:?}: {reason}")]
    InvalidRemoteName {
        /// The name as given.
        remote: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local name that is not a usable absolute path.
    #[error("invalid local name {local:?}: {reason}")]
    InvalidLocalName {
        /// The name as given.
        local: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two files of the job would be published at the same local name.
    #[error("local name {0:?} is already used by a file of this job")]
    DuplicateLocalName(String),
    /// An upload job holds exactly one file (BG_E_TOO_MANY_FILES).
    #[error("an upload job holds exactly one file")]
    TooManyFiles,
    /// The job would hold more files than the engine allows a job of a
    /// non-admin (BG_E_TOO_MANY_FILES_IN_JOB).
    #[error("a job may hold at most {limit} files")]
    FileQuota {
        /// Files a job may hold.
        limit: usize,
    },
    /// The owner already has as many unfinished jobs as the engine allows a
    /// non-admin (BG_E_TOO_MANY_JOBS_PER_USER). Finished jobs do not count.
    #[error("an owner may have at most {limit} unfinished jobs")]
    JobQuota {
        /// Unfinished jobs an owner may have.
        limit: usize,
    },
    /// Complete could not rename some files: those listed stay unpublished,
    /// the others are published, and the job stays TRANSFERRED until a later
    /// Complete or a Cancel.
    #[error("could not publish {} file(s): {}", .0.len(), RenameFailures(.0))]
    RenameFailed(Vec<FileFailure>),
    /// A file event named a file the job does not have (a shell bug).
    #[error("no file {0} in this job")]
    UnknownFile(FileId),
}

impl CommandError {
    /// A stable machine-readable code (`invalid_state`, `empty_job`, ...).
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::AccessDenied => "access_denied",
            Self::InvalidState(_) => "invalid_state",
            Self::EmptyJob => "empty_job",
            Self::Busy => "busy",
            Self::StringTooLong { .. } => "string_too_long",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::InvalidRemoteName { .. } => "invalid_remote_name",
            Self::InvalidLocalName { .. } => "invalid_local_name",
            Self::DuplicateLocalName(_) => "duplicate_local_name",
            Self::TooManyFiles => "too_many_files",
            Self::FileQuota { .. } => "too_many_files_in_job",
            Self::JobQuota { .. } => "too_many_jobs",
            Self::RenameFailed(_) => "rename_failed",
            Self::UnknownFile(_) => "unknown_file",
        }
    }
}

/// One file a filesystem step failed for, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFailure {
    /// The file.
    pub file: FileId,
    /// The path the step was about (the final name for a rename, the temp
    /// name for a delete).
    pub path: String,
    /// The cause, as the shell reported it (`Permission denied (os error 13)`).
    pub cause: String,
}

struct RenameFailures<'a>(&'a [FileFailure]);

impl fmt::Display for RenameFailures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} {}: {}", failure.file, failure.path, failure.cause)?;
        }
        Ok(())
    }
}

/// Where an error arose (`BG_ERROR_CONTEXT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorContext {
    /// The engine itself (a timeout of the job, for example).
    QueueManager,
    /// The local file: disk full, permission denied, ...
    LocalFile,
    /// The remote file: an HTTP error status, a changed entity, ...
    RemoteFile,
    /// The network: connection refused, reset, timed out, TLS, ...
    Transport,
    /// The server application (uploads).
    RemoteApplication,
}

impl ErrorContext {
    /// The name used in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::QueueManager => "queue_manager",
            Self::LocalFile => "local_file",
            Self::RemoteFile => "remote_file",
            Self::Transport => "transport",
            Self::RemoteApplication => "remote_application",
        }
    }
}

/// Whether an error is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Retried after the retry delay (TRANSIENT_ERROR).
    Transient,
    /// Not retried (ERROR) until the application resumes the job.
    Fatal,
}

/// A failed transfer attempt, as the shell reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferError {
    /// Where it arose.
    pub context: ErrorContext,
    /// A stable code: `http_503`, `connection_refused`, `disk_full`, ...
    pub code: String,
    /// Transient or fatal.
    pub class: ErrorClass,
    /// Human-readable detail.
    pub message: String,
    /// The server's `Retry-After`, if it sent one (capped by the core).
    pub retry_after: Option<Duration>,
    /// Set for connection-level errors: the host that could not be reached,
    /// so that a later successful connection to it re-queues the job.
    pub unreachable_host: Option<String>,
}

impl TransferError {
    /// A transient error with no `Retry-After` and no host.
    pub fn transient(
        context: ErrorContext,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            context,
            code: code.into(),
            class: ErrorClass::Transient,
            message: message.into(),
            retry_after: None,
            unreachable_host: None,
        }
    }

    /// A fatal error.
    pub fn fatal(
        context: ErrorContext,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            class: ErrorClass::Fatal,
            ..Self::transient(context, code, message)
        }
    }
}

/// The job's error object: exists only in ERROR and TRANSIENT_ERROR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Where it arose.
    pub context: ErrorContext,
    /// A stable code (`http_404`, `max_download_timeout`, ...).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
    /// The file whose transfer failed, if the error belongs to one.
    pub file: Option<FileId>,
    /// The host that could not be reached, for connection-level errors.
    pub unreachable_host: Option<String>,
}

/// Why persisted bytes could not be decoded. Decoding never panics.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the smallest valid record or key.
    #[error("truncated: {0} bytes")]
    Truncated(usize),
    /// The bytes do not start with ferry's record magic.
    #[error("not a ferry record")]
    BadMagic,
    /// A record of another kind than the one asked for.
    #[error("expected a {expected} record, found kind {found}")]
    WrongKind {
        /// The kind asked for.
        expected: &'static str,
        /// The kind byte found.
        found: u8,
    },
    /// A schema version this build does not know.
    #[error("unknown schema version {0}")]
    UnknownVersion(u8),
    /// The checksum does not match: the bytes were damaged.
    #[error("checksum mismatch")]
    Checksum,
    /// The payload does not decode, or holds values no job can have.
    #[error("malformed record: {0}")]
    Malformed(String),
}

//! Identifiers, callers and the small enums of the BITS job model.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A job's identity. The shell generates it (time-ordered UUIDv7 in the
/// engine); the core only carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub uuid::Uuid);

impl JobId {
    /// The id as 16 big-endian bytes (the store's key prefix).
    pub const fn to_bytes(self) -> [u8; 16] {
        *self.0.as_bytes()
    }

    /// The id of 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// A file's identity within its job: its position in the order files were
/// added (0, 1, 2, ...), which is also the order they transfer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileId(pub u32);

impl FileId {
    /// The position as an index into the job's file list.
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f{}", self.0)
    }
}

/// Who is calling. Every command carries one; the core checks it.
///
/// The owner of a job or an admin may act on it; anyone else is told the job
/// does not exist (others see nothing, not even that it is there).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The user's name (a Unix user name, an API token's subject, ...).
    pub user: String,
    /// Admins may act on every job and take ownership of it.
    pub admin: bool,
}

impl Principal {
    /// An ordinary user.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            user: name.into(),
            admin: false,
        }
    }

    /// An administrator.
    pub fn admin(name: impl Into<String>) -> Self {
        Self {
            user: name.into(),
            admin: true,
        }
    }

    /// Whether this caller may see and act on a job owned by `owner`.
    pub fn may_access(&self, owner: &str) -> bool {
        self.admin || self.user == owner
    }
}

/// The nine states of a BITS job (`BG_JOB_STATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for a transfer slot from the scheduler.
    Queued,
    /// A transfer was started and no response has arrived yet.
    Connecting,
    /// Bytes are arriving.
    Transferring,
    /// Stopped by the application (the state of a new job).
    Suspended,
    /// Stopped by a fatal error; waits for Resume, Complete or Cancel.
    Error,
    /// Stopped by a transient error; retried after the retry delay.
    TransientError,
    /// Every file is transferred; waits for Complete.
    Transferred,
    /// Completed (final).
    Acknowledged,
    /// Cancelled (final).
    Cancelled,
}

impl JobState {
    /// The final states: no command changes them again.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Acknowledged | Self::Cancelled)
    }

    /// States in which the job holds or wants transfer slots.
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Connecting | Self::Transferring)
    }

    /// The name used in the API and logs (`transient_error`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Connecting => "connecting",
            Self::Transferring => "transferring",
            Self::Suspended => "suspended",
            Self::Error => "error",
            Self::TransientError => "transient_error",
            Self::Transferred => "transferred",
            Self::Acknowledged => "acknowledged",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// BITS job priorities (`BG_JOB_PRIORITY`), highest first.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Priority {
    /// Transfers at once, outside the background budget.
    Foreground,
    /// Background, ahead of normal and low.
    High,
    /// Background; the default.
    #[default]
    Normal,
    /// Background, behind every other priority.
    Low,
}

impl Priority {
    /// The name used in the API (`foreground`, `high`, `normal`, `low`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Foreground => "foreground",
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a job transfers (`BG_JOB_TYPE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobType {
    /// Files from servers to this machine.
    #[default]
    Download,
    /// One file from this machine to a server (the upload protocol lands in a
    /// later issue; the core already holds its Complete and one-file rules).
    Upload,
    /// An upload whose server reply is downloaded afterwards.
    UploadReply,
}

impl JobType {
    /// The name used in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Upload => "upload",
            Self::UploadReply => "upload_reply",
        }
    }

    /// Upload jobs hold exactly one file.
    pub const fn is_upload(self) -> bool {
        matches!(self, Self::Upload | Self::UploadReply)
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies one version of a remote entity, for `If-Range` and for
/// detecting that a file changed between attempts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Validator {
    /// An entity tag, exactly as the server sent it (quotes and `W/` kept).
    ETag(String),
    /// A `Last-Modified` date, exactly as the server sent it.
    LastModified(String),
}

impl fmt::Display for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ETag(tag) => write!(f, "etag {tag}"),
            Self::LastModified(date) => write!(f, "last-modified {date}"),
        }
    }
}

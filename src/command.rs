//! What goes into a job: commands from callers and events from the shell.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    error::TransferError,
    time::UtcTime,
    types::{FileId, JobType, Priority, Validator},
};

/// What a caller asks for when creating a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    /// Display name, at most 256 characters; need not be unique.
    pub name: String,
    /// Download (default) or upload.
    pub kind: JobType,
    /// Priority (default NORMAL).
    pub priority: Priority,
    /// Description, at most 1,024 characters.
    pub description: String,
}

impl JobSpec {
    /// A download job of normal priority with this name.
    pub fn download(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: JobType::Download,
            priority: Priority::Normal,
            description: String::new(),
        }
    }
}

/// A file to add: where it comes from and where it will be published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    /// An absolute http or https URL, at most 2,200 characters, used exactly
    /// as given (no escape processing).
    pub remote: String,
    /// The absolute path the file appears at when the job is completed.
    pub local: String,
}

impl FileSpec {
    /// A file spec from its two names.
    pub fn new(remote: impl Into<String>, local: impl Into<String>) -> Self {
        Self {
            remote: remote.into(),
            local: local.into(),
        }
    }
}

/// A program run when the job reaches TRANSFERRED or ERROR (BITS
/// SetNotifyCmdLine). Arguments are passed as given: nothing is expanded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyCommand {
    /// Absolute path of the program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// A settable job property, with its new value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Property {
    /// Scheduling priority.
    Priority(Priority),
    /// Display name, at most 256 characters.
    DisplayName(String),
    /// Description, at most 1,024 characters.
    Description(String),
    /// Minimum delay before a transient error is retried; values below the
    /// engine's floor (BITS: 5 s) are raised to it.
    MinRetryDelay(Duration),
    /// Time without progress after the first transient error before the job
    /// goes to ERROR; zero makes every error fatal.
    NoProgressTimeout(Duration),
    /// Most time the job may spend CONNECTING or TRANSFERRING before it goes
    /// to ERROR; Resume starts the count again.
    MaxDownloadTime(Duration),
    /// The program to run on TRANSFERRED or ERROR; `None` removes it.
    NotifyCommand(Option<NotifyCommand>),
    /// How many of the job's files may transfer at once (1 to 64).
    ParallelFiles(u32),
    /// The job's own bandwidth cap in bytes per second (at least 1), on
    /// top of the engine's; `None` lifts it.
    MaxBytesPerSecond(Option<u64>),
}

/// A caller's command to one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Add files, all or none.
    AddFiles(Vec<FileSpec>),
    /// Queue the job for transfer.
    Resume,
    /// Stop the job's transfers; idempotent.
    Suspend,
    /// End the job, deleting every temp file; answered through
    /// [`Effect::Answer`](crate::Effect::Answer).
    Cancel,
    /// End the job, publishing the files transferred so far; answered through
    /// [`Effect::Answer`](crate::Effect::Answer).
    Complete,
    /// Change a property.
    Set(Property),
    /// Change several properties at once: all or none (each is checked
    /// before any is applied).
    SetAll(Vec<Property>),
    /// Make the caller (an admin) the job's owner; removes the notify command.
    TakeOwnership,
}

impl Command {
    /// The command's name, for logs and test transcripts.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::AddFiles(_) => "add_files",
            Self::Resume => "resume",
            Self::Suspend => "suspend",
            Self::Cancel => "cancel",
            Self::Complete => "complete",
            Self::Set(_) => "set",
            Self::SetAll(_) => "set_all",
            Self::TakeOwnership => "take_ownership",
        }
    }
}

/// The immediate reply to an accepted command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done.
    Done,
    /// The files were added, with these ids.
    Added(Vec<FileId>),
    /// Accepted; the answer follows as an [`Effect::Answer`](crate::Effect::Answer)
    /// once the shell has carried out the filesystem steps (Complete, Cancel).
    Pending,
}

/// What the shell reports about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileEvent {
    /// News from the transfer started with this attempt number. Events of an
    /// attempt that is no longer current are ignored.
    Transfer {
        /// The attempt, from [`TransferOrder::attempt`](crate::TransferOrder).
        attempt: u64,
        /// What happened.
        event: TransferEvent,
    },
    /// The result of an [`Effect::Publish`](crate::Effect::Publish).
    Published(Result<(), String>),
    /// The file was published at its final name, but its temp name could not
    /// be removed (a link-and-unlink publish whose unlink failed). The file
    /// counts as published; Complete answers `unable_to_delete_files` if
    /// nothing else is amiss.
    PublishedTempLeft(String),
    /// The result of an [`Effect::DeleteTemp`](crate::Effect::DeleteTemp).
    TempDeleted(Result<(), String>),
}

/// News from a running transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferEvent {
    /// The server answered: the body starts at `offset` (either the offset
    /// asked for, or 0 when the server sent the whole entity), the entity has
    /// `size` bytes if known, and this validator.
    Responded {
        /// Where the body starts.
        offset: u64,
        /// The entity's full size, if the server said.
        size: Option<u64>,
        /// Its ETag or Last-Modified.
        validator: Option<Validator>,
        /// The server's `Last-Modified`, parsed: the published file gets it
        /// as its modification time.
        modified: Option<UtcTime>,
        /// The server takes range requests, as far as it said: `false` when
        /// it sent `Accept-Ranges: none` or answered a range request with
        /// the whole entity. Without them a stopped attempt would start
        /// over, so the core never preempts the transfer once it has bytes.
        ranges: bool,
    },
    /// Bytes up to `offset` arrived (not yet durable; for progress display).
    Received {
        /// End of the received bytes.
        offset: u64,
    },
    /// Bytes up to `offset` are written and fsynced: a resume may start there.
    Checkpointed {
        /// End of the durable bytes.
        offset: u64,
    },
    /// The whole body (`size` bytes) arrived; the shell is writing and
    /// fsyncing its end, and reports [`TransferEvent::Transferred`] (or
    /// `Failed`) next. The file stops counting against the job's parallel
    /// files and its transfer slot is free, so the next file starts while
    /// this one syncs: the fsyncs of many small files overlap instead of
    /// each holding a slot.
    Drained {
        /// The body's length.
        size: u64,
    },
    /// The whole file (`size` bytes) is written and fsynced.
    Transferred {
        /// The file's size.
        size: u64,
    },
    /// The attempt failed.
    Failed(TransferError),
}

//! ferry-core: the BITS job model of ferry as a deterministic state machine.
//!
//! This crate contains **no I/O and no clock**: no networking, no filesystem,
//! no OS time, no threads, and no actix, awc, rocksdb or tokio (its manifest
//! has none of them, and must not). It is a pure function of its inputs, in
//! the style of quinn-proto:
//!
//! - inputs go in: [`Job::handle_command`], [`Job::handle_file_event`],
//!   [`Job::handle_timeout`] (and the scheduler's [`Job::handle_grant`] and
//!   [`Job::handle_preempt`]), each with the current [`Now`];
//! - effects come out as data: [`Job::poll_effect`] yields [`Effect`]s (start
//!   or stop a transfer, persist records, publish files, delete temp files,
//!   notify, answer), and [`Job::poll_timeout`] the next deadline.
//!
//! The shell (ferry-actors) carries effects out and reports results back as
//! [`FileEvent`]s. Because nothing here waits or fails on the outside world,
//! every behaviour is testable with a virtual clock, and the persisted form
//! ([`record`]) is the single source a restart rebuilds from.
//!
//! # Layout
//! - [`job`]: [`Job`], states, transitions, timers and the commit protocol.
//! - [`command`]: commands, properties and file events (inputs).
//! - [`effect`]: effects, notifications and Complete/Cancel answers (outputs).
//! - [`record`]: the versioned, checksummed encoding of jobs and files.
//! - [`error`]: typed errors; [`types`]: ids, principals, states, priorities;
//!   [`time`]: the two clocks; [`view`]: snapshots for callers;
//!   [`config`]: engine-wide settings and BITS's limits.

pub mod command;
pub mod config;
pub mod effect;
pub mod error;
pub mod http;
pub mod job;
pub mod rate;
pub mod record;
pub mod schedule;
pub mod time;
pub mod types;
pub mod view;
pub mod window;

pub use command::{
    Command, FileEvent, FileSpec, JobSpec, NotifyCommand, Property, Reply, TransferEvent,
};
pub use config::CoreConfig;
pub use effect::{
    Answer, Batch, CancelAnswer, CancelReason, CancelResult, CompleteAnswer, CompleteResult,
    Durability, Effect, Notification, TransferOrder,
};
pub use error::{
    CommandError, DecodeError, ErrorClass, ErrorContext, FileFailure, JobError, TransferError,
};
pub use job::{EventOutcome, Job, is_temp_file_name, temp_file_name};
pub use record::{FileRecord, JobRecord, SCHEMA_VERSION};
pub use time::{MonoTime, Now, Stamp, UtcTime};
pub use types::{FileId, JobId, JobState, JobType, Principal, Priority, Validator};
pub use view::{FileView, JobView, Waiting};

//! ferry-actors: ferry's engine. Puts the shell around [`ferry_core`]:
//! actix actors, awc downloads with resume, RocksDB persistence and the
//! filesystem work of Complete, so that an actix application can embed ferry
//! and get BITS's behaviour with nothing lost across crashes.
//!
//! ```no_run
//! use ferry_actors::{Engine, EngineConfig};
//! use ferry_core::{FileSpec, JobSpec, Principal};
//!
//! # async fn demo() -> Result<(), ferry_actors::EngineError> {
//! let engine = Engine::start(EngineConfig::new("/var/lib/myapp/ferry")).await?;
//! let me = Principal::user("myapp");
//! let job = engine.create_job(&me, JobSpec::download("nightly")).await?;
//! engine
//!     .add_files(&me, job, vec![FileSpec::new("https://example.org/a.iso", "/srv/a.iso")])
//!     .await?;
//! engine.resume(&me, job).await?;
//! let mut events = engine.subscribe().await?;
//! while let Some(event) = events.next().await {
//!     if event.job == job && event.kind == ferry_actors::EventKind::JobTransferred {
//!         let answer = engine.complete(&me, job).await?; // files appear now
//!         println!("{:?}", answer.result);
//!         break;
//!     }
//! }
//! engine.shutdown().await
//! # }
//! ```
//!
//! # Layout
//! - [`Engine`] (`engine.rs`): the public API, start and restore, shutdown.
//! - `manager.rs`: `Manager`, one per engine: registry, scheduler (slots
//!   global and per host), event bus, pending-delete retries.
//! - `supervisor.rs`: `JobSupervisor`, one per job: owns the core `Job`,
//!   carries out its effects in order (the pump), runs its timer.
//! - `file_actor.rs`: `FileActor`, one per running transfer or commit step:
//!   awc download with resume, writes to its temp file (chunks gathered
//!   into 1 MiB writes by `chunks.rs`).
//! - `limits.rs`: [`Limits`] changeable at runtime, and the global
//!   bandwidth cap every transfer draws from.
//! - `store.rs`: the only module that knows RocksDB (group commit).
//! - `fs.rs`: blocking filesystem work (temp files, publish, sweep).
//! - `access.rs`: whose rights file work uses (a user's identity when the
//!   engine acts for other users) and how directories are reached.
//!
//! The library installs no signal handlers and never blocks an arbiter.

mod access;
pub mod api;
#[doc(hidden)]
pub mod chunks;
mod clock;
mod config;
mod engine;
mod failpoint;
mod file_actor;
mod fs;
mod limits;
mod manager;
mod metrics;
mod store;
mod supervisor;
mod syncer;

pub use access::{FsIdentity, Identities};
pub use config::EngineConfig;
pub use engine::{Engine, EngineError, Event, EventKind, Events, JobSetup, Quotas};
pub use limits::{BandwidthNow, Limits};
pub use store::StoreError;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

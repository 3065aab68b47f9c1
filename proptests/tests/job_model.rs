//! The core model test: a small reference model of a BITS download job,
//! run against ferry-core's real `Job` over random operation sequences
//! (including persisting and reloading the job from its encoded records).
//! After every step both agree on the state, each file's durable bytes and
//! transferred/completed flags, and refused operations are refused with the
//! same error code and change nothing.
//!
//! The harness plays a perfect shell: publishes and deletes succeed at once,
//! so Complete and Cancel answer within the step.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{collections::BTreeMap, time::Duration};

use ferry_core::{
    Command, CoreConfig, Effect, FileEvent, FileId, FileRecord, FileSpec, Job, JobId, JobRecord,
    JobSpec, JobState, MonoTime, Now, Principal, Property, TransferError, TransferEvent, UtcTime,
};
use proptest::prelude::*;

const RETRY: Duration = Duration::from_secs(10);
const FILES: u8 = 4;

#[derive(Clone, Debug)]
enum Op {
    Add,
    Resume,
    Suspend,
    Cancel,
    Complete,
    Grant,
    Respond(u8, u16),
    Checkpoint(u8, u16),
    Drained(u8),
    Transferred(u8),
    Fail(u8, bool),
    Advance(u8),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Add),
        2 => Just(Op::Resume),
        1 => Just(Op::Suspend),
        1 => Just(Op::Cancel),
        1 => Just(Op::Complete),
        3 => Just(Op::Grant),
        3 => (0..FILES, 1u16..1000).prop_map(|(f, s)| Op::Respond(f, s)),
        3 => (0..FILES, 0u16..1000).prop_map(|(f, o)| Op::Checkpoint(f, o)),
        2 => (0..FILES).prop_map(Op::Drained),
        3 => (0..FILES).prop_map(Op::Transferred),
        1 => (0..FILES, any::<bool>()).prop_map(|(f, fatal)| Op::Fail(f, fatal)),
        1 => (0u8..20).prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct MFile {
    durable: u64,
    size: Option<u64>,
    transferred: bool,
    completed: bool,
    running: bool,
    /// The running attempt's server answered.
    responded: bool,
    /// The body arrived whole and is being synced: the file no longer
    /// runs, its attempt still reports the end.
    syncing: bool,
    /// Stopped (not failed) and not restarted since: its last checkpoint or
    /// completion still counts.
    late_ok: bool,
}

/// The reference model: what BITS says, written as plainly as possible.
#[derive(Clone, Debug)]
struct Model {
    state: JobState,
    files: Vec<MFile>,
    /// Seconds until a retry, while in TRANSIENT_ERROR.
    retry_in: u64,
}

impl Model {
    fn new() -> Self {
        Self {
            state: JobState::Suspended,
            files: Vec::new(),
            retry_in: 0,
        }
    }

    fn is_final(&self) -> bool {
        matches!(self.state, JobState::Acknowledged | JobState::Cancelled)
    }

    fn stop(&mut self) {
        for f in &mut self.files {
            if f.running {
                f.running = false;
                f.late_ok = true;
            }
        }
    }

    /// Whether an event of `file`'s latest attempt is accepted: while it
    /// runs, or after it was stopped, in a job that has not ended.
    fn accepts(&self, file: u8, late_kind: bool) -> bool {
        self.files.get(file as usize).is_some_and(|f| {
            f.running
                || (late_kind && (f.late_ok || f.syncing) && !f.transferred && !self.is_final())
        })
    }

    /// An active job's state follows its files: all transferred, some
    /// bytes flowing (an answered transfer, or a body being synced),
    /// transfers waiting for their server, or nothing.
    fn settle(&mut self) {
        if !self.active() {
            return;
        }
        let any = |p: fn(&MFile) -> bool| self.files.iter().any(p);
        self.state = if self.all_transferred() {
            JobState::Transferred
        } else if any(|f| f.running && f.responded) || any(|f| f.syncing) {
            JobState::Transferring
        } else if any(|f| f.running) {
            JobState::Connecting
        } else {
            JobState::Queued
        };
    }

    fn all_transferred(&self) -> bool {
        self.files.iter().all(|f| f.transferred)
    }

    /// Applies a command; `Err(code)` if refused.
    fn command(&mut self, op: &Op) -> Result<(), &'static str> {
        if self.is_final() {
            return Err("invalid_state");
        }
        match op {
            // The harness adds files f0, f1, ... in order.
            Op::Add => {}
            Op::Resume => {
                if self.files.is_empty() {
                    return Err("empty_job");
                }
                let wake = matches!(
                    self.state,
                    JobState::Suspended | JobState::Error | JobState::TransientError
                ) || (self.state == JobState::Transferred && !self.all_transferred());
                if wake {
                    self.state = JobState::Queued;
                    self.settle();
                }
            }
            Op::Suspend => {
                self.stop();
                self.state = JobState::Suspended;
            }
            Op::Cancel => {
                self.stop();
                self.files.iter_mut().for_each(|f| f.syncing = false);
                self.state = JobState::Cancelled;
            }
            Op::Complete => {
                self.stop();
                for f in &mut self.files {
                    f.completed = f.transferred;
                    f.syncing = false;
                }
                self.state = JobState::Acknowledged;
            }
            _ => unreachable!(),
        }
        Ok(())
    }

    fn active(&self) -> bool {
        matches!(
            self.state,
            JobState::Queued | JobState::Connecting | JobState::Transferring
        )
    }

    fn grant(&mut self) {
        if !self.active() || self.files.iter().any(|f| f.running) {
            return;
        }
        if let Some(f) = self.files.iter_mut().find(|f| !f.transferred && !f.syncing) {
            f.running = true;
            f.responded = false;
            f.late_ok = false;
            self.settle();
        }
    }

    fn running(&self, file: u8) -> bool {
        self.files.get(file as usize).is_some_and(|f| f.running)
    }

    fn respond(&mut self, file: u8, size: u16) {
        if !self.running(file) {
            return;
        }
        let f = &mut self.files[file as usize];
        // The harness always answers from zero (a 200).
        f.durable = 0;
        f.size = Some(u64::from(size));
        f.responded = true;
        self.settle();
    }

    fn drained(&mut self, file: u8) {
        if !self.running(file) {
            return;
        }
        let f = &mut self.files[file as usize];
        f.running = false;
        f.syncing = true;
        self.settle();
    }

    fn checkpoint(&mut self, file: u8, offset: u16) {
        if !self.accepts(file, true) {
            return;
        }
        let f = &mut self.files[file as usize];
        let offset = u64::from(offset);
        if offset > f.durable && f.size.is_none_or(|s| offset <= s) {
            f.durable = offset;
        }
    }

    fn transferred(&mut self, file: u8) {
        if !self.accepts(file, true) {
            return;
        }
        let f = &mut self.files[file as usize];
        let size = f.size.unwrap_or(f.durable);
        f.durable = size;
        f.size = Some(size);
        f.transferred = true;
        f.running = false;
        f.syncing = false;
        f.late_ok = false;
        // Only an active job moves; a suspended or failed one stays.
        self.settle();
    }

    fn fail(&mut self, file: u8, fatal: bool) {
        let final_ = self.is_final();
        let Some(f) = self.files.get_mut(file as usize) else {
            return;
        };
        if !(f.running || (f.syncing && !final_)) {
            return;
        }
        // The failed attempt is over.
        f.running = false;
        f.syncing = false;
        f.late_ok = false;
        if !self.active() {
            // A sync failing in a stopped job: the file waits, the job's
            // state stands.
            return;
        }
        // The others are stopped.
        self.stop();
        if fatal {
            self.state = JobState::Error;
        } else {
            self.state = JobState::TransientError;
            self.retry_in = RETRY.as_secs();
        }
    }

    fn advance(&mut self, secs: u64) {
        if self.state == JobState::TransientError {
            if secs >= self.retry_in {
                self.state = JobState::Queued;
            } else {
                self.retry_in -= secs;
            }
        }
    }

    fn restart(&mut self) {
        // A new process: no attempt of the old one is heard from again.
        for f in &mut self.files {
            f.running = false;
            f.syncing = false;
            f.late_ok = false;
        }
        if matches!(self.state, JobState::Connecting | JobState::Transferring) {
            self.state = JobState::Queued;
        }
    }
}

/// The real job, driven like a shell would drive it.
struct Real {
    job: Job,
    store: BTreeMap<Vec<u8>, Vec<u8>>,
    attempts: BTreeMap<u32, u64>,
    clock: u64,
}

fn now(secs: u64) -> Now {
    Now::new(
        MonoTime::from_elapsed(Duration::from_secs(secs)),
        UtcTime::from_unix_millis(1_767_225_600_000 + secs as i64 * 1000),
    )
}

fn alice() -> Principal {
    Principal::user("alice")
}

impl Real {
    fn new() -> Self {
        let id = JobId(uuid::Uuid::from_u128(0x5));
        let mut job = Job::create(
            id,
            &alice(),
            JobSpec::download("m"),
            CoreConfig::default(),
            now(0),
        )
        .unwrap();
        job.handle_command(
            &alice(),
            Command::Set(Property::MinRetryDelay(RETRY)),
            now(0),
        )
        .unwrap();
        let mut real = Self {
            job,
            store: BTreeMap::new(),
            attempts: BTreeMap::new(),
            clock: 0,
        };
        real.settle();
        real
    }

    /// Carries out effects: persists into the byte store, publishes and
    /// deletes succeed.
    fn settle(&mut self) {
        while let Some(effect) = self.job.poll_effect() {
            match effect {
                Effect::Persist(batch) => {
                    if let Some(r) = &batch.job_record {
                        self.store.insert(r.key().to_vec(), r.encode());
                    }
                    for f in &batch.files {
                        self.store.insert(f.key().to_vec(), f.encode());
                    }
                }
                Effect::StartTransfer(order) => {
                    self.attempts.insert(order.file.0, order.attempt);
                }
                Effect::Publish { file, .. } => {
                    self.job
                        .handle_file_event(file, FileEvent::Published(Ok(())), now(self.clock))
                        .unwrap();
                }
                Effect::DeleteTemp { file, .. } => {
                    self.job
                        .handle_file_event(file, FileEvent::TempDeleted(Ok(())), now(self.clock))
                        .unwrap();
                }
                _ => {}
            }
        }
    }

    fn transfer(&mut self, file: u8, event: TransferEvent) {
        let attempt = self.attempts.get(&u32::from(file)).copied().unwrap_or(0);
        let id = FileId(u32::from(file));
        if self.job.file_view(id).is_some() {
            let _ = self.job.handle_file_event(
                id,
                FileEvent::Transfer { attempt, event },
                now(self.clock),
            );
        }
        self.settle();
    }

    fn restart(&mut self) {
        let mut record = None;
        let mut files = Vec::new();
        for (key, bytes) in &self.store {
            if key.len() == 16 {
                record = Some(JobRecord::decode(bytes).unwrap());
            } else {
                files.push(FileRecord::decode(bytes).unwrap());
            }
        }
        self.job = Job::restore(
            record.unwrap(),
            files,
            CoreConfig::default(),
            now(self.clock),
        )
        .unwrap();
        self.attempts.clear();
        self.settle();
    }
}

fn check(model: &Model, real: &Real) -> Result<(), TestCaseError> {
    prop_assert_eq!(real.job.state(), model.state);
    let files = real.job.files();
    prop_assert_eq!(files.len(), model.files.len());
    for (f, m) in files.iter().zip(&model.files) {
        prop_assert_eq!(f.bytes_durable, m.durable, "{:?}", f.id);
        prop_assert_eq!(f.transferred, m.transferred, "{:?}", f.id);
        prop_assert_eq!(f.completed, m.completed, "{:?}", f.id);
        prop_assert_eq!(f.transferring, m.running || m.syncing, "{:?}", f.id);
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let mut real = Real::new();
    for op in ops {
        match op {
            Op::Add | Op::Resume | Op::Suspend | Op::Cancel | Op::Complete => {
                let before = (real.job.record(), real.job.file_records());
                let command = match op {
                    Op::Add => {
                        let n = real.job.files().len();
                        Command::AddFiles(vec![FileSpec::new(
                            format!("http://h/{n}"),
                            format!("/d/{n}"),
                        )])
                    }
                    Op::Resume => Command::Resume,
                    Op::Suspend => Command::Suspend,
                    Op::Cancel => Command::Cancel,
                    _ => Command::Complete,
                };
                let got = real
                    .job
                    .handle_command(&alice(), command, now(real.clock))
                    .map(|_| ())
                    .map_err(|e| e.code());
                let want = model.command(op);
                if want.is_ok() && matches!(op, Op::Add) {
                    model.files.push(MFile::default());
                }
                prop_assert_eq!(got, want, "{:?}", op);
                if got.is_err() {
                    // Refused: nothing changed, nothing to carry out.
                    prop_assert!(real.job.poll_effect().is_none());
                    prop_assert_eq!((real.job.record(), real.job.file_records()), before);
                }
                real.settle();
            }
            Op::Grant => {
                real.job.handle_grant(now(real.clock));
                real.settle();
                model.grant();
            }
            Op::Respond(f, size) => {
                real.transfer(
                    *f,
                    TransferEvent::Responded {
                        ranges: true,
                        offset: 0,
                        size: Some(u64::from(*size)),
                        validator: None,
                        modified: None,
                    },
                );
                model.respond(*f, *size);
            }
            Op::Checkpoint(f, offset) => {
                real.transfer(
                    *f,
                    TransferEvent::Checkpointed {
                        offset: u64::from(*offset),
                    },
                );
                model.checkpoint(*f, *offset);
            }
            Op::Drained(f) => {
                let size = real
                    .job
                    .file_view(FileId(u32::from(*f)))
                    .map(|v| v.bytes_total.unwrap_or(v.bytes_durable))
                    .unwrap_or(0);
                real.transfer(*f, TransferEvent::Drained { size });
                model.drained(*f);
            }
            Op::Transferred(f) => {
                let size = real
                    .job
                    .file_view(FileId(u32::from(*f)))
                    .map(|v| v.bytes_total.unwrap_or(v.bytes_durable))
                    .unwrap_or(0);
                real.transfer(*f, TransferEvent::Transferred { size });
                model.transferred(*f);
            }
            Op::Fail(f, fatal) => {
                let ctx = ferry_core::ErrorContext::RemoteFile;
                let error = if *fatal {
                    TransferError::fatal(ctx, "http_404", "x")
                } else {
                    TransferError::transient(ctx, "http_503", "x")
                };
                real.transfer(*f, TransferEvent::Failed(error));
                model.fail(*f, *fatal);
            }
            Op::Advance(secs) => {
                real.clock += u64::from(*secs);
                real.job.handle_timeout(now(real.clock));
                real.settle();
                model.advance(u64::from(*secs));
            }
            Op::Restart => {
                real.restart();
                model.restart();
            }
        }
        check(&model, &real)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { max_shrink_time: 60_000, ..ProptestConfig::default() })]

    #[test]
    fn the_job_agrees_with_the_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}

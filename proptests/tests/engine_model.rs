//! The engine test: random operation sequences driven against the real
//! engine (actors, awc over loopback, RocksDB in a temp dir) and the shared
//! test origin, next to a reference model of what BITS must do.
//!
//! Every file is added with its last byte held by the origin, so a file is
//! transferred exactly when the test has released it while its job ran: the
//! model knows which files Complete must save. Faults (connection resets,
//! 503s, a 404, slow bodies) are queued on the origin for a file's next request, content
//! changes give the file a new ETag, and `Restart` shuts the engine down and
//! opens the same data dir again.
//!
//! After every step the harness waits (polling, with a deadline) until the
//! engine shows the model's state: the job's state, each file's transferred
//! flag, and the number of requests the origin saw for each file (so a fault
//! is consumed by exactly the attempt the model expects, and the engine
//! makes no request the model does not). Then it checks:
//! - no file is at its final name before Complete returned for it;
//! - Complete's answer is the model's, the files it saved are exactly those
//!   transferred before the call, each byte-identical to the version the
//!   origin served it in (never spliced from two versions);
//! - after Complete or Cancel no temp file remains, unless the answer is
//!   unable to delete them (deletes failing through the engine's `fs::delete`
//!   failpoint), naming exactly those; a restart deletes them. The model
//!   knows which files have a temp file, except one whose only accepted
//!   answer was stopped while its body streamed: a transfer from byte 0
//!   creates its temp file with its first write, so whether it got that
//!   far depends on timing. Such a file may or may not be named;
//! - after a restart every acknowledged command is still in effect (state,
//!   flags) and no file's progress went back below its last checkpoint.
//!
//! CI runs 32 sequences with at most 60 s of shrinking; `PROPTEST_CASES`
//! asks for more.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use ferry_actors::{Engine, EngineConfig, EngineError};
use ferry_bench::origin::{self, Origin};
use ferry_core::{
    CancelResult, CompleteResult, FileId, FileSpec, JobId, JobSpec, JobState, Principal, Property,
};
use proptest::prelude::*;
use tempfile::TempDir;

/// How long the engine may take to reach the model's state after a step.
const DEADLINE: Duration = Duration::from_secs(8);
/// Files per job at most.
const FILES: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The connection closes after this many per-mille of the body.
    Reset(u16),
    /// 503 Service Unavailable (transient).
    Unavailable,
    /// 404 Not Found (fatal: the job goes to ERROR).
    Gone,
    /// A body that comes slowly (each chunk after a pause): succeeds.
    Slow,
}

#[derive(Clone, Debug)]
enum Op {
    Add(u32),
    Resume,
    Suspend,
    Cancel,
    Complete,
    Release(u8),
    Fault(u8, Fault),
    Change(u8),
    /// Wait until the file's held body has arrived up to its last byte.
    Wait(u8),
    /// Temp-file deletes fail from now on (true) or work again (false)
    /// (the engine's `fs::delete` failpoint).
    DeletesFail(bool),
    Restart,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        2 => (0u16..1000).prop_map(Fault::Reset),
        2 => Just(Fault::Unavailable),
        1 => Just(Fault::Gone),
        1 => Just(Fault::Slow),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Cancel and Complete end the job: rare, so that sequences get far.
        3 => (2u32..300_000).prop_map(Op::Add),
        4 => Just(Op::Resume),
        2 => Just(Op::Suspend),
        1 => Just(Op::Cancel),
        1 => Just(Op::Complete),
        3 => any::<u8>().prop_map(Op::Release),
        2 => (any::<u8>(), fault()).prop_map(|(f, k)| Op::Fault(f, k)),
        3 => any::<u8>().prop_map(Op::Change),
        2 => any::<u8>().prop_map(Op::Wait),
        3 => Just(Op::Restart),
        1 => any::<bool>().prop_map(Op::DeletesFail),
    ]
}

/// The state the model predicts, coarser than the engine's: `Active`
/// covers queued, connecting, transferring and transient error (retries
/// are immediate here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum S {
    Suspended,
    Active,
    Error,
    Transferred,
    Acknowledged,
    Cancelled,
}

impl S {
    fn of(state: JobState) -> Self {
        match state {
            JobState::Suspended => Self::Suspended,
            JobState::Error => Self::Error,
            JobState::Transferred => Self::Transferred,
            JobState::Acknowledged => Self::Acknowledged,
            JobState::Cancelled => Self::Cancelled,
            _ => Self::Active,
        }
    }
}

/// Whether a file has a temp file, as far as the model knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Temp {
    /// No attempt got an answer it accepted.
    #[default]
    No,
    /// An attempt's answer may have been accepted before it was stopped.
    Maybe,
    /// An attempt accepted an answer and ended by itself, or its bytes
    /// were seen arriving.
    Yes,
}

#[derive(Clone, Debug, Default)]
struct MFile {
    size: u64,
    released: bool,
    transferred: bool,
    completed: bool,
    /// Requests the origin must have seen.
    requests: usize,
    /// Faults queued for the next requests.
    faults: VecDeque<Fault>,
    /// The content changed at some point (progress may restart from 0).
    changed: bool,
    temp: Temp,
}

#[derive(Debug)]
struct Model {
    s: S,
    files: Vec<MFile>,
    /// The file whose body is streaming (held at its last byte).
    in_flight: Option<usize>,
    /// Temp-file deletes fail.
    deletes_fail: bool,
    /// Files whose temp file Complete or Cancel could not delete (the
    /// ones that must be named, until the engine's answer says which of
    /// `maybe_undeleted` also were).
    undeleted: Vec<usize>,
    /// Files whose temp file may exist and could not be deleted.
    maybe_undeleted: Vec<usize>,
}

impl Model {
    fn new() -> Self {
        Self {
            s: S::Suspended,
            files: Vec::new(),
            in_flight: None,
            deletes_fail: false,
            undeleted: Vec::new(),
            maybe_undeleted: Vec::new(),
        }
    }

    /// The temp files a Cancel or Complete must delete that stay, and
    /// those that may.
    fn left_behind(&mut self, deleted: impl Fn(&MFile) -> bool) {
        let with = |temp: Temp| -> Vec<usize> {
            if !self.deletes_fail {
                return Vec::new();
            }
            (0..self.files.len())
                .filter(|i| self.files[*i].temp == temp && deleted(&self.files[*i]))
                .collect()
        };
        (self.undeleted, self.maybe_undeleted) = (with(Temp::Yes), with(Temp::Maybe));
    }

    /// Checks the temp files a Cancel or Complete named as undeletable:
    /// every one the model knows of, and only ones that may exist; the
    /// model then knows them all.
    fn named_undeleted(&mut self, named: &[ferry_core::FileFailure]) {
        let named = ids(named);
        let sure = files(&self.undeleted);
        let mut may = files(&self.undeleted);
        may.extend(files(&self.maybe_undeleted));
        assert!(
            sure.iter().all(|f| named.contains(f)) && named.iter().all(|f| may.contains(f)),
            "named as undeletable {named:?}; must {sure:?}, may {may:?}"
        );
        self.undeleted = named
            .iter()
            .map(|f| usize::try_from(f.0).unwrap())
            .collect();
        self.maybe_undeleted.clear();
    }

    fn is_final(&self) -> bool {
        matches!(self.s, S::Acknowledged | S::Cancelled)
    }

    fn all_transferred(&self) -> bool {
        self.files.iter().all(|f| f.transferred)
    }

    /// Moves an active job as far as the origin lets it: files in order,
    /// one at a time; each attempt is one request and takes the next fault.
    fn run(&mut self) {
        while self.s == S::Active {
            if let Some(i) = self.in_flight {
                if self.files[i].released {
                    self.files[i].transferred = true;
                    self.files[i].temp = Temp::Yes;
                    self.in_flight = None;
                    continue;
                }
                break;
            }
            let Some(next) = self.files.iter().position(|f| !f.transferred) else {
                self.s = S::Transferred;
                break;
            };
            let file = &mut self.files[next];
            file.requests += 1;
            match file.faults.pop_front() {
                Some(Fault::Gone) => self.s = S::Error,
                // A transient error; the retry is at once. A reset body
                // came with an answer, and what arrived of it is written.
                Some(Fault::Reset(_)) => file.temp = Temp::Yes,
                Some(Fault::Unavailable) => {}
                Some(Fault::Slow) | None => {
                    file.temp = file.temp.max(Temp::Maybe);
                    self.in_flight = Some(next);
                }
            }
        }
    }

    fn stop(&mut self) {
        self.in_flight = None;
    }

    /// A command: `Err(code)` when it must be refused.
    fn command(&mut self, op: &Op) -> Result<(), &'static str> {
        if self.is_final() {
            return Err("invalid_state");
        }
        match op {
            Op::Add(size) => self.files.push(MFile {
                size: u64::from(*size),
                ..MFile::default()
            }),
            Op::Resume => {
                if self.files.is_empty() {
                    return Err("empty_job");
                }
                let wake = matches!(self.s, S::Suspended | S::Error)
                    || (self.s == S::Transferred && !self.all_transferred());
                if wake {
                    self.s = if self.all_transferred() {
                        S::Transferred
                    } else {
                        S::Active
                    };
                    self.run();
                }
            }
            Op::Suspend => {
                self.stop();
                self.s = S::Suspended;
            }
            Op::Cancel => {
                self.stop();
                self.left_behind(|_| true);
                self.s = S::Cancelled;
            }
            Op::Complete => {
                self.stop();
                self.left_behind(|f| !f.transferred);
                for f in &mut self.files {
                    f.completed = f.transferred;
                }
                self.s = S::Acknowledged;
            }
            _ => unreachable!("not a command: {op:?}"),
        }
        Ok(())
    }
}

fn alice() -> Principal {
    Principal::user("alice")
}

fn path(file: usize) -> String {
    format!("/f{file}")
}

fn name(file: usize) -> String {
    format!("f{file}")
}

fn config(data: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(data);
    config.core.retry_delay_floor = Duration::ZERO;
    config.arbiters = 2;
    config.checkpoint_bytes = 32 * 1024;
    config.checkpoint_interval = Duration::from_millis(50);
    // Held bodies stay open across many steps: never an idle timeout.
    config.idle_timeout = Duration::from_secs(3600);
    config.connect_timeout = Duration::from_secs(10);
    config
}

/// The real side: an engine on a data dir, an origin, the download dir.
struct World {
    origin: Origin,
    data: TempDir,
    downloads: TempDir,
    engine: Engine,
    job: JobId,
    /// The bytes of every version the origin served, by path and ETag.
    versions: HashMap<(String, String), Vec<u8>>,
}

impl World {
    async fn new() -> Self {
        let origin = Origin::start().unwrap();
        let data = TempDir::new().unwrap();
        let downloads = TempDir::new().unwrap();
        let engine = Engine::start(config(data.path())).await.unwrap();
        let job = engine
            .create_job(&alice(), JobSpec::download("model"))
            .await
            .unwrap();
        let props = vec![
            Property::MinRetryDelay(Duration::ZERO),
            Property::ParallelFiles(1),
        ];
        engine.set_all(&alice(), job, props).await.unwrap();
        Self {
            origin,
            data,
            downloads,
            engine,
            job,
            versions: HashMap::new(),
        }
    }

    fn remember_version(&mut self, file: usize) {
        let path = path(file);
        let etag = self.origin.etag(&path).unwrap();
        let bytes = self.origin.expected(&path);
        self.versions.insert((path, etag), bytes);
    }

    fn local(&self, file: usize) -> std::path::PathBuf {
        self.downloads.path().join(name(file))
    }

    /// What the engine must have published for `file`: the version of the
    /// last body the origin sent for it.
    fn served(&self, file: usize) -> Vec<u8> {
        let path = path(file);
        let last = self
            .origin
            .requests_of(&path)
            .into_iter()
            .rev()
            .find(|r| matches!(r.status, 200 | 206))
            .and_then(|r| r.etag)
            .expect("a file saved without a body served");
        self.versions[&(path, last)].clone()
    }

    async fn restart(&mut self) {
        self.engine.clone().shutdown().await.unwrap();
        self.engine = Engine::start(config(self.data.path())).await.unwrap();
    }

    /// Waits until the engine shows the model's state; fails with the
    /// difference after the deadline.
    async fn settle(&self, model: &Model) {
        let start = Instant::now();
        loop {
            let job = self.engine.job(&alice(), self.job).await.unwrap();
            let files = self.engine.files(&alice(), self.job).await.unwrap();
            let requests: Vec<usize> = (0..model.files.len())
                .map(|i| self.origin.requests_of(&path(i)).len())
                .collect();
            let flags: Vec<bool> = files.iter().map(|f| f.transferred).collect();
            let want_flags: Vec<bool> = model.files.iter().map(|f| f.transferred).collect();
            let want_requests: Vec<usize> = model.files.iter().map(|f| f.requests).collect();
            let seen = (S::of(job.state), flags, requests);
            let want = (model.s, want_flags, want_requests);
            if seen == want {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "engine never reached the model: (state, transferred, requests) seen {seen:?}, \
                 model {want:?}; job {job:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The invariants that hold after every step.
    async fn check(&self, model: &Model) {
        for (i, f) in model.files.iter().enumerate() {
            let local = self.local(i);
            if f.completed {
                let got = std::fs::read(&local).unwrap();
                let want = self.served(i);
                assert!(
                    got == want,
                    "{} differs from the version served ({} bytes, want {})",
                    local.display(),
                    got.len(),
                    want.len()
                );
            } else {
                assert!(
                    !local.exists(),
                    "{} exists before Complete saved it",
                    local.display()
                );
            }
        }
        if model.is_final() {
            let mut want: Vec<String> = (0..model.files.len())
                .filter(|i| model.files[*i].completed)
                .map(name)
                .collect();
            want.sort();
            // Deletes retried at a restart run in the background: poll.
            let start = Instant::now();
            let mut names = self.listing();
            while names.iter().filter(|n| n.starts_with(".ferry-")).count() != model.undeleted.len()
                && start.elapsed() < DEADLINE
            {
                actix_rt::time::sleep(Duration::from_millis(5)).await;
                names = self.listing();
            }
            let finals: Vec<String> = names
                .iter()
                .filter(|n| !n.starts_with(".ferry-"))
                .cloned()
                .collect();
            assert_eq!(finals, want, "other files than the saved ones");
            let temps = names.len() - finals.len();
            assert_eq!(
                temps,
                model.undeleted.len(),
                "temp files left after the job ended: {names:?}, model {:?}",
                model.undeleted
            );
        }
    }

    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.downloads.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    async fn step(&mut self, model: &mut Model, op: &Op) {
        let count = model.files.len();
        let pick = |f: u8| usize::from(f) % count.max(1);
        match op {
            Op::Add(size) => {
                let i = count;
                let expected = if model.is_final() {
                    Err("invalid_state")
                } else {
                    Ok(())
                };
                if expected.is_ok() && i < FILES {
                    self.origin.add(&path(i), u64::from(*size));
                    self.origin.hold(&path(i));
                    self.remember_version(i);
                    let spec =
                        FileSpec::new(self.origin.url(&path(i)), self.local(i).to_str().unwrap());
                    self.engine
                        .add_files(&alice(), self.job, vec![spec])
                        .await
                        .unwrap();
                    model.command(op).unwrap();
                } else if expected.is_err() {
                    let spec =
                        FileSpec::new(self.origin.url("/never"), self.local(99).to_str().unwrap());
                    let got = self.engine.add_files(&alice(), self.job, vec![spec]).await;
                    assert_eq!(code(got.map(|_| ())), expected.map_err(|e| e.to_owned()));
                }
            }
            Op::Resume | Op::Suspend => {
                let want = model.command(op);
                let got = match op {
                    Op::Resume => self.engine.resume(&alice(), self.job).await,
                    _ => self.engine.suspend(&alice(), self.job).await,
                };
                assert_eq!(code(got), want.map_err(str::to_owned), "{op:?}");
            }
            Op::Cancel => {
                let want = model.command(op);
                let got = self.engine.cancel(&alice(), self.job).await;
                match (got, want) {
                    (Ok(answer), Ok(())) => {
                        model.named_undeleted(&answer.undeleted);
                        let result = if model.undeleted.is_empty() {
                            CancelResult::Ok
                        } else {
                            CancelResult::UnableToDeleteFiles
                        };
                        assert_eq!(answer.result, result);
                    }
                    (got, want) => {
                        assert_eq!(code(got.map(|_| ())), want.map_err(str::to_owned));
                    }
                }
            }
            Op::Complete => {
                let transferred: Vec<FileId> = (0..count)
                    .filter(|i| model.files[*i].transferred)
                    .map(|i| FileId(u32::try_from(i).unwrap()))
                    .collect();
                let all = model.all_transferred();
                let want = model.command(op);
                let got = self.engine.complete(&alice(), self.job).await;
                match (got, want) {
                    (Ok(answer), Ok(())) => {
                        let result = if all {
                            CompleteResult::Complete
                        } else {
                            CompleteResult::PartialComplete
                        };
                        assert_eq!(answer.result, result);
                        let mut saved = answer.saved.clone();
                        saved.sort();
                        assert_eq!(saved, transferred, "Complete saved other files");
                        model.named_undeleted(&answer.undeleted);
                    }
                    (got, want) => {
                        assert_eq!(code(got.map(|_| ())), want.map_err(str::to_owned));
                    }
                }
            }
            Op::Release(f) => {
                if count > 0 {
                    let i = pick(*f);
                    self.origin.release(&path(i));
                    model.files[i].released = true;
                    model.run();
                }
            }
            Op::Fault(f, fault) => {
                if count > 0 && !model.is_final() {
                    let i = pick(*f);
                    let origin_fault = match fault {
                        // Within the body, whatever range is asked for:
                        // the attempt always fails.
                        Fault::Reset(per_mille) => origin::Fault::ResetAfterPerMille(*per_mille),
                        Fault::Unavailable => origin::Fault::Status(503, None),
                        Fault::Gone => origin::Fault::Status(404, None),
                        Fault::Slow => origin::Fault::Slow(Duration::from_millis(10)),
                    };
                    self.origin.fail_next(&path(i), origin_fault);
                    model.files[i].faults.push_back(*fault);
                }
            }
            Op::Change(f) => {
                if count > 0 {
                    let i = pick(*f);
                    self.origin.change(&path(i), None);
                    self.remember_version(i);
                    model.files[i].changed = true;
                }
            }
            Op::Wait(f) => {
                // Only a file whose body streams gets there.
                if let Some(i) = model.in_flight.filter(|i| *i == pick(*f)) {
                    model.files[i].temp = Temp::Yes;
                    let size = model.files[i].size;
                    let start = Instant::now();
                    loop {
                        let files = self.engine.files(&alice(), self.job).await.unwrap();
                        if files[i].bytes_transferred + 1 >= size {
                            break;
                        }
                        assert!(start.elapsed() < DEADLINE, "file {i} stuck: {:?}", files[i]);
                        actix_rt::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            Op::DeletesFail(fail) => {
                if fail::has_failpoints() {
                    if *fail {
                        fail::cfg("fs::delete", "return").unwrap();
                    } else {
                        fail::remove("fs::delete");
                    }
                    model.deletes_fail = *fail;
                }
            }
            Op::Restart => {
                // The engine deletes again, at start, what it could not.
                if !model.deletes_fail {
                    model.undeleted.clear();
                }
                // What was durable before must still be there after: the
                // first request after the restart resumes at or past it
                // (unless the content changed: then from 0 is right).
                let before = self.engine.files(&alice(), self.job).await.unwrap();
                let asked: Vec<usize> = (0..count)
                    .map(|i| self.origin.requests_of(&path(i)).len())
                    .collect();
                self.restart().await;
                model.stop();
                model.run();
                self.settle(model).await;
                let after = self.engine.files(&alice(), self.job).await.unwrap();
                for (b, a) in before.iter().zip(&after) {
                    let i = usize::try_from(b.id.0).unwrap();
                    if model.files[i].changed || model.files[i].completed {
                        continue;
                    }
                    assert!(
                        a.bytes_durable >= b.bytes_durable,
                        "file {i}: checkpoint {} lost, {} after the restart",
                        b.bytes_durable,
                        a.bytes_durable
                    );
                    if let Some(first) = self.origin.requests_of(&path(i)).get(asked[i]) {
                        let from = first
                            .range
                            .as_deref()
                            .and_then(|r| r.strip_prefix("bytes="))
                            .and_then(|r| r.trim_end_matches('-').parse::<u64>().ok())
                            .unwrap_or(0);
                        assert!(
                            from >= b.bytes_durable,
                            "file {i} resumed at {from}, behind its checkpoint {}",
                            b.bytes_durable
                        );
                    }
                }
            }
        }
        self.settle(model).await;
        self.check(model).await;
    }
}

fn ids(failures: &[ferry_core::FileFailure]) -> Vec<FileId> {
    let mut ids: Vec<FileId> = failures.iter().map(|f| f.file).collect();
    ids.sort();
    ids
}

fn files(indexes: &[usize]) -> Vec<FileId> {
    indexes
        .iter()
        .map(|i| FileId(u32::try_from(*i).unwrap()))
        .collect()
}

fn code(result: Result<(), EngineError>) -> Result<(), String> {
    result.map_err(|err| err.code().to_owned())
}

/// The failpoint is the process's: one case at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_case(ops: &[Op]) {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    fail::remove("fs::delete");
    actix_rt::System::new().block_on(async {
        let mut world = World::new().await;
        let mut model = Model::new();
        for op in ops {
            world.step(&mut model, op).await;
        }
        world.engine.clone().shutdown().await.unwrap();
    });
    fail::remove("fs::delete");
}

fn cases() -> u32 {
    // `PROPTEST_CASES` (read by proptest's default) raises it for a soak.
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default().cases
    } else {
        32
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_engine_does_what_the_model_says(ops in proptest::collection::vec(op(), 1..40)) {
        run_case(&ops);
    }
}

/// The sequence that would splice two versions if the engine resumed a
/// changed entity: part of v1 arrives, the content changes, the transfer
/// resumes.
#[test]
fn a_file_changed_between_attempts_is_never_spliced() {
    for stop in [Op::Suspend, Op::Restart] {
        run_case(&[
            Op::Add(200_000),
            Op::Resume,
            Op::Wait(0),
            stop.clone(),
            Op::Change(0),
            Op::Resume,
            Op::Release(0),
            Op::Complete,
        ]);
    }
}

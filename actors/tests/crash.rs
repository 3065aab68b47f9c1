//! Crashes: a child process running the engine is killed (SIGKILL mid-
//! transfer) or aborted by a failpoint between the durable steps of a
//! Complete; the parent restarts the engine on the same data dir and checks
//! that nothing acknowledged was lost and the commit rolled forward.
//!
//! The child is this test binary itself, running the ignored test `child`
//! with its instructions in environment variables.
#![cfg(feature = "failpoints")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use ferry_actors::{Engine, EngineConfig, EventKind};
use ferry_bench::origin::Origin;
use ferry_core::{
    CancelResult, CompleteResult, FileSpec, JobId, JobSpec, JobState, Principal, Property,
};
use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(60);

fn alice() -> Principal {
    Principal::user("alice")
}

fn config(data: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(data);
    config.core.retry_delay_floor = Duration::from_millis(50);
    config.arbiters = 2;
    config.checkpoint_bytes = 256 * 1024;
    config
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// The child: runs one scenario, printing its progress on stdout.
#[test]
#[ignore = "run by the crash tests as a child process"]
fn child() {
    // Never outlive a parent that failed before killing us.
    std::thread::spawn(|| {
        std::thread::sleep(2 * DEADLINE);
        std::process::exit(3);
    });
    let _failpoints = fail::FailScenario::setup();
    let system = actix_rt::System::new();
    system.block_on(async {
        let engine = Engine::start(config(env("FERRY_DATA").as_ref()))
            .await
            .unwrap();
        let mut events = engine.subscribe().await.unwrap();
        let job = engine
            .create_job(&alice(), JobSpec::download("crash"))
            .await
            .unwrap();
        let origin = env("FERRY_ORIGIN");
        let downloads = env("FERRY_DOWNLOADS");
        let files: Vec<FileSpec> = env("FERRY_FILES")
            .split(',')
            .map(|name| FileSpec::new(format!("{origin}/{name}"), format!("{downloads}/{name}")))
            .collect();
        engine.add_files(&alice(), job, files).await.unwrap();
        engine
            .set(
                &alice(),
                job,
                Property::MinRetryDelay(Duration::from_millis(50)),
            )
            .await
            .unwrap();
        engine.resume(&alice(), job).await.unwrap();
        println!("JOB {job}");
        match env("FERRY_SCENARIO").as_str() {
            "transfer" => loop {
                let files = engine.files(&alice(), job).await.unwrap();
                if files[0].bytes_durable > 0 {
                    println!("DURABLE {}", files[0].bytes_durable);
                    // Wait to be killed.
                    std::future::pending::<()>().await;
                }
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            },
            "commit" => {
                while let Some(event) = events.next().await {
                    if event.kind == EventKind::JobTransferred {
                        break;
                    }
                }
                println!("TRANSFERRED");
                let answer = engine.complete(&alice(), job).await;
                // Only reached if no failpoint aborted us.
                println!("ANSWER {answer:?}");
            }
            other => panic!("unknown scenario {other}"),
        }
    });
}

struct Run {
    origin: Origin,
    data: TempDir,
    downloads: TempDir,
}

impl Run {
    fn new(files: &[(&str, u64)]) -> Self {
        let origin = Origin::start().unwrap();
        for (name, size) in files {
            origin.add(&format!("/{name}"), *size);
        }
        Self {
            origin,
            data: TempDir::new().unwrap(),
            downloads: TempDir::new().unwrap(),
        }
    }

    /// This binary, running the `child` test with the scenario's settings.
    fn command(&self, scenario: &str, files: &[&str]) -> Command {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FERRY_SCENARIO", scenario)
            .env("FERRY_DATA", self.data.path())
            .env("FERRY_DOWNLOADS", self.downloads.path())
            .env("FERRY_ORIGIN", format!("http://{}", self.origin.addr()))
            .env("FERRY_FILES", files.join(","))
            .env_remove("FAILPOINTS")
            .env_remove("FERRY_FAILPOINT_WAIT")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command
    }

    fn spawn(&self, scenario: &str, files: &[&str], failpoints: Option<&str>) -> Child {
        let mut command = self.command(scenario, files);
        if let Some(failpoints) = failpoints {
            command.env("FAILPOINTS", failpoints);
        }
        command.spawn().unwrap()
    }

    /// A child whose failpoint prints `FAILPOINT <name>` and waits to be
    /// killed, instead of aborting.
    fn spawn_waiting(&self, scenario: &str, files: &[&str], failpoints: &str) -> Child {
        let mut command = self.command(scenario, files);
        command
            .env("FAILPOINTS", failpoints)
            .env("FERRY_FAILPOINT_WAIT", "1");
        command.spawn().unwrap()
    }

    fn assert_file(&self, name: &str) {
        let got = std::fs::read(self.downloads.path().join(name)).unwrap();
        let want = self.origin.expected(&format!("/{name}"));
        assert!(got == want, "{name} differs from the origin's content");
    }

    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.downloads.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Reads the child's stdout until a line starting with `prefix`; returns
/// the job id it printed and that line. Blocking reads run off the arbiter.
async fn read_until(child: &mut Child, prefix: &'static str) -> (JobId, String) {
    let stdout = child.stdout.take().unwrap();
    let (job, line, stdout) = actix_rt::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut job = None;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("the child ended before printing {prefix}");
            }
            // libtest may print its own "test child ... " before our first
            // line: look for the markers anywhere in a line.
            if let Some(at) = line.find("JOB ") {
                job = Some(line[at + 4..].trim().parse::<JobId>().unwrap());
            }
            if let Some(at) = line.find(prefix) {
                return (job.unwrap(), line[at..].to_owned(), reader.into_inner());
            }
        }
    })
    .await
    .unwrap();
    child.stdout = Some(stdout);
    (job, line)
}

async fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    actix_rt::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
}

async fn until_state(engine: &Engine, job: JobId, want: JobState) {
    let start = std::time::Instant::now();
    loop {
        let state = engine.job(&alice(), job).await.unwrap().state;
        if state == want {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "job stuck in {state}, waiting for {want}"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn sigkill_mid_transfer_then_restart_finishes_byte_identical() {
    let run = Run::new(&[("big", 6 * 1024 * 1024)]);
    run.origin.hold("/big");
    let mut child = run.spawn("transfer", &["big"], None);
    let (job, line) = read_until(&mut child, "DURABLE").await;
    let durable: u64 = line.trim_start_matches("DURABLE ").trim().parse().unwrap();
    // SIGKILL: no shutdown, no flush.
    child.kill().unwrap();
    wait_exit(child).await;
    run.origin.release("/big");

    let engine = Engine::start(config(run.data.path())).await.unwrap();
    let files = engine.files(&alice(), job).await.unwrap();
    assert!(
        files[0].bytes_durable >= durable,
        "progress went backwards: {durable} before, {:?} after",
        files[0]
    );
    until_state(&engine, job, JobState::Transferred).await;
    let answer = engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::Complete);
    run.assert_file("big");
    assert_eq!(run.listing(), vec!["big"]);
    // It resumed rather than starting over.
    let requests = run.origin.requests_of("/big");
    assert!(requests.last().unwrap().range.is_some(), "{requests:?}");
    engine.shutdown().await.unwrap();
}

async fn crash_in_complete(failpoint: &str) {
    let names = ["a", "b", "c"];
    let run = Run::new(&[("a", 100_000), ("b", 2_000_000), ("c", 10)]);
    let mut child = run.spawn("commit", &names, Some(&format!("{failpoint}=return")));
    let (job, _) = read_until(&mut child, "TRANSFERRED").await;
    let status = wait_exit(child).await;
    assert!(
        !status.success(),
        "the failpoint {failpoint} did not stop the child"
    );

    let engine = Engine::start(config(run.data.path())).await.unwrap();
    // The commit rolls forward to the answer of an uninterrupted Complete.
    until_state(&engine, job, JobState::Acknowledged).await;
    let view = engine.job(&alice(), job).await.unwrap();
    match view.answer {
        Some(ferry_core::Answer::Complete(answer)) => {
            assert_eq!(answer.result, CompleteResult::Complete, "{failpoint}");
            assert_eq!(answer.saved.len(), 3);
        }
        other => panic!("{failpoint}: answer {other:?}"),
    }
    for name in names {
        run.assert_file(name);
    }
    assert_eq!(run.listing(), vec!["a", "b", "c"], "{failpoint}");
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn crash_after_the_intent_record_rolls_forward() {
    crash_in_complete("commit::before_publish").await;
}

#[actix_rt::test]
async fn crash_between_renames_rolls_forward() {
    crash_in_complete("commit::between_renames").await;
}

#[actix_rt::test]
async fn crash_before_the_final_record_rolls_forward() {
    crash_in_complete("commit::before_outcome").await;
}

#[actix_rt::test]
async fn temp_files_that_cannot_be_deleted_are_named_and_deleted_later() {
    // One of the two tests of this binary that set an in-process failpoint
    // (they are process-global, so each is aimed at its own file or runs
    // before the other's transfers); the others run their engines in child
    // processes.
    let run = Run::new(&[("a", 3_000_000)]);
    run.origin.hold("/a");
    let engine = Engine::start(config(run.data.path())).await.unwrap();
    let job = engine
        .create_job(&alice(), JobSpec::download("undeletable"))
        .await
        .unwrap();
    let local = run
        .downloads
        .path()
        .join("a")
        .to_string_lossy()
        .into_owned();
    engine
        .add_files(
            &alice(),
            job,
            vec![FileSpec::new(run.origin.url("/a"), local)],
        )
        .await
        .unwrap();
    engine.resume(&alice(), job).await.unwrap();
    // Bytes arrived, so the transfer has a temp file once it stops (one
    // from byte 0 creates it with its first write).
    let start = std::time::Instant::now();
    while engine.files(&alice(), job).await.unwrap()[0].bytes_transferred == 0 {
        assert!(start.elapsed() < DEADLINE);
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    fail::cfg("fs::delete", "return").unwrap();
    let answer = engine.cancel(&alice(), job).await.unwrap();
    fail::remove("fs::delete");
    assert_eq!(answer.result, CancelResult::UnableToDeleteFiles);
    assert_eq!(answer.undeleted.len(), 1);
    let temp = answer.undeleted[0].path.clone();
    assert!(std::path::Path::new(&temp).exists());
    run.origin.release("/a");
    engine.shutdown().await.unwrap();
    // The pending delete is retried at the next start.
    let engine = Engine::start(config(run.data.path())).await.unwrap();
    let start = std::time::Instant::now();
    while std::path::Path::new(&temp).exists() {
        assert!(start.elapsed() < DEADLINE, "{temp} never deleted");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(run.listing().is_empty());
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_writer_behind_holds_new_transfers_back() {
    // More small files than the syncer has places for bodies its writer
    // has not written yet (512), eight at a time.
    let names: Vec<String> = (0..600).map(|i| format!("f{i}")).collect();
    let sizes: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 100)).collect();
    let run = Run::new(&sizes);
    let engine = Engine::start(config(run.data.path())).await.unwrap();
    let dir = run.downloads.path().to_string_lossy().into_owned();
    // The writer stops at this directory's first file.
    fail::cfg("syncer::hold", &format!("return({dir})")).unwrap();
    let job = engine
        .create_job(&alice(), JobSpec::download("many"))
        .await
        .unwrap();
    let files = names
        .iter()
        .map(|n| {
            let local = run.downloads.path().join(n).to_string_lossy().into_owned();
            FileSpec::new(run.origin.url(&format!("/{n}")), local)
        })
        .collect();
    engine.add_files(&alice(), job, files).await.unwrap();
    engine
        .set(&alice(), job, Property::ParallelFiles(8))
        .await
        .unwrap();
    engine.resume(&alice(), job).await.unwrap();
    // 512 bodies wait in their places, 8 more in their transfers, which
    // keep their slots: no further file is asked for.
    let start = std::time::Instant::now();
    while run.origin.requests().len() < 520 {
        assert!(
            start.elapsed() < DEADLINE,
            "{}",
            run.origin.requests().len()
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let held = std::time::Instant::now();
    while held.elapsed() < Duration::from_millis(300) {
        actix_rt::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(run.origin.requests().len(), 520, "bodies piled up");
    }
    fail::remove("syncer::hold");
    until_state(&engine, job, JobState::Transferred).await;
    assert_eq!(run.origin.requests().len(), 600);
    let done = engine.files(&alice(), job).await.unwrap();
    assert!(
        done.iter()
            .all(|f| f.transferred && f.bytes_transferred == 100)
    );
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_commit_waits_for_the_last_write_of_a_file_it_drops() {
    // In-process failpoint, aimed at this test's download dir only.
    let run = Run::new(&[("s", 50_000), ("t", 10)]);
    let engine = Engine::start(config(run.data.path())).await.unwrap();
    let dir = run.downloads.path().to_string_lossy().into_owned();
    fail::cfg("syncer::hold", &format!("return({dir})")).unwrap();
    let job = |name: &'static str| {
        let engine = engine.clone();
        let url = run.origin.url(&format!("/{name}"));
        let local = run
            .downloads
            .path()
            .join(name)
            .to_string_lossy()
            .into_owned();
        async move {
            let job = engine
                .create_job(&alice(), JobSpec::download(name))
                .await
                .unwrap();
            engine
                .add_files(&alice(), job, vec![FileSpec::new(url, local)])
                .await
                .unwrap();
            engine.resume(&alice(), job).await.unwrap();
            job
        }
    };
    let first = job("s").await;
    // The whole body arrived; its temp file is not written yet (held).
    let start = std::time::Instant::now();
    loop {
        let file = &engine.files(&alice(), first).await.unwrap()[0];
        if file.bytes_transferred == 50_000 {
            assert!(!file.transferred);
            break;
        }
        assert!(start.elapsed() < DEADLINE, "{file:?}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let cancel = actix_rt::spawn({
        let engine = engine.clone();
        async move { engine.cancel(&alice(), first).await }
    });
    // Cancel deletes the temp file, so it cannot answer while the file's
    // last write is held (the write would create the file after the
    // delete).
    let held = std::time::Instant::now();
    while held.elapsed() < Duration::from_millis(300) {
        actix_rt::time::sleep(Duration::from_millis(5)).await;
        assert!(
            !cancel.is_finished(),
            "Cancel answered before the last write"
        );
    }
    fail::remove("syncer::hold");
    let answer = cancel.await.unwrap().unwrap();
    assert_eq!(answer.result, CancelResult::Ok);
    // The writer takes requests in order: once a later file is transferred,
    // the dropped file's write is done, and its temp file must be gone.
    let second = job("t").await;
    until_state(&engine, second, JobState::Transferred).await;
    let listing = run.listing();
    assert_eq!(listing.len(), 1, "{listing:?}");
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn crash_before_the_intent_record_leaves_the_job_unchanged() {
    let names = ["a", "b"];
    let run = Run::new(&[("a", 100_000), ("b", 10)]);
    let mut child = run.spawn("commit", &names, Some("commit::before_intent=return"));
    let (job, _) = read_until(&mut child, "TRANSFERRED").await;
    let status = wait_exit(child).await;
    assert!(!status.success(), "the failpoint did not stop the child");

    let engine = Engine::start(config(run.data.path())).await.unwrap();
    let view = engine.job(&alice(), job).await.unwrap();
    assert_eq!(view.state, JobState::Transferred);
    assert!(view.answer.is_none() && !view.commit_stalled);
    // Nothing published, the temp files still there.
    let listing = run.listing();
    assert_eq!(listing.len(), 2);
    assert!(
        listing.iter().all(|n| n.starts_with(".ferry-")),
        "{listing:?}"
    );
    // A new Complete does what the lost one would have.
    let answer = engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::Complete);
    for name in names {
        run.assert_file(name);
    }
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn sigkill_between_renames_rolls_forward() {
    let names = ["a", "b", "c"];
    let run = Run::new(&[("a", 100_000), ("b", 2_000_000), ("c", 10)]);
    let mut child = run.spawn_waiting("commit", &names, "commit::between_renames=return");
    let (job, line) = read_until(&mut child, "FAILPOINT").await;
    assert!(line.contains("commit::between_renames"), "{line}");
    // SIGKILL while the commit is half done.
    child.kill().unwrap();
    wait_exit(child).await;

    let engine = Engine::start(config(run.data.path())).await.unwrap();
    until_state(&engine, job, JobState::Acknowledged).await;
    match engine.job(&alice(), job).await.unwrap().answer {
        Some(ferry_core::Answer::Complete(answer)) => {
            assert_eq!(answer.result, CompleteResult::Complete);
        }
        other => panic!("answer {other:?}"),
    }
    for name in names {
        run.assert_file(name);
    }
    assert_eq!(run.listing(), vec!["a", "b", "c"]);
    engine.shutdown().await.unwrap();
}

/// Resumes `job` with the failpoint `point` aimed at files whose URL holds
/// `name`: the job must stop in ERROR with the local file's error on its
/// first file, counted neither transferred nor transferring; then, the
/// point removed, a resume must bring it to TRANSFERRED.
async fn write_fails_then_resume(engine: &Engine, job: JobId, point: &str, name: &str) {
    fail::cfg(point, &format!("return({name})")).unwrap();
    engine.resume(&alice(), job).await.unwrap();
    until_state(engine, job, JobState::Error).await;
    fail::remove(point);
    let view = engine.job(&alice(), job).await.unwrap();
    let error = view.error.expect("the job's error");
    assert_eq!(error.code, "write_failed");
    assert_eq!(error.file, Some(ferry_core::FileId(0)));
    let first = &engine.files(&alice(), job).await.unwrap()[0];
    assert!(!first.transferred && !first.transferring, "{first:?}");
    engine.resume(&alice(), job).await.unwrap();
    until_state(engine, job, JobState::Transferred).await;
}

#[actix_rt::test]
async fn a_write_failing_after_the_body_arrived_fails_the_job_and_a_resume_finishes_it() {
    // The body of `sync-fails` arrives whole (its slot is given back) and
    // then its last write fails: the job must hear it (ERROR, the local
    // file's error), count nothing as transferred, and finish on resume.
    let run = Run::new(&[("sync-fails", 300_000), ("fine", 1_000)]);
    let engine = Engine::start(config(run.data.path())).await.unwrap();
    let job = engine
        .create_job(&alice(), JobSpec::download("sync-fails"))
        .await
        .unwrap();
    let files = ["sync-fails", "fine"]
        .iter()
        .map(|name| {
            let local = run.downloads.path().join(name);
            FileSpec::new(
                run.origin.url(&format!("/{name}")),
                local.to_string_lossy().into_owned(),
            )
        })
        .collect();
    engine.add_files(&alice(), job, files).await.unwrap();
    write_fails_then_resume(&engine, job, "file::final_write", "sync-fails").await;
    let answer = engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::Complete);
    run.assert_file("sync-fails");
    run.assert_file("fine");
    engine.shutdown().await.unwrap();
}

/// A job of the origin's `/name`, saved as `name` in the downloads.
async fn job_of_one(engine: &Engine, run: &Run, name: &str) -> JobId {
    let job = engine
        .create_job(&alice(), JobSpec::download(name))
        .await
        .unwrap();
    let local = run.downloads.path().join(name);
    let file = FileSpec::new(
        run.origin.url(&format!("/{name}")),
        local.to_string_lossy().into_owned(),
    );
    engine.add_files(&alice(), job, vec![file]).await.unwrap();
    job
}

/// Where the second of two requests of `/name` asked to start.
fn resumed_from(run: &Run, name: &str) -> u64 {
    let requests = run.origin.requests_of(&format!("/{name}"));
    assert_eq!(requests.len(), 2, "{requests:?}");
    requests[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("the resume asked for no range: {requests:?}"))
}

#[actix_rt::test]
async fn a_write_failing_after_the_body_paused_still_reports_the_checkpoint_before_it() {
    // The body pauses (its last byte held) while a slow checkpoint of what
    // came before runs; what arrived since is then written at once, and
    // that write fails: the checkpoint must still be reported, so that a
    // resume asks only for the rest.
    const SIZE: u64 = 6 << 20;
    let run = Run::new(&[("pause-fails", SIZE)]);
    run.origin.hold("/pause-fails");
    let mut config = config(run.data.path());
    config.checkpoint_interval = Duration::from_millis(300);
    let engine = Engine::start(config).await.unwrap();
    let job = job_of_one(&engine, &run, "pause-fails").await;
    fail::cfg("file::slow_checkpoint", "return(pause-fails)").unwrap();
    fail::cfg("file::inline_write", "return(pause-fails)").unwrap();
    engine.resume(&alice(), job).await.unwrap();
    until_state(&engine, job, JobState::Error).await;
    fail::remove("file::inline_write");
    fail::remove("file::slow_checkpoint");
    let error = engine.job(&alice(), job).await.unwrap().error.unwrap();
    assert_eq!(error.code, "write_failed");
    run.origin.release("/pause-fails");
    engine.resume(&alice(), job).await.unwrap();
    until_state(&engine, job, JobState::Transferred).await;
    let from = resumed_from(&run, "pause-fails");
    // The checkpoint started with the second 1 MiB write.
    assert!((1 << 20..SIZE).contains(&from), "resumed from {from}");
    let answer = engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::Complete);
    run.assert_file("pause-fails");
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_write_failing_mid_body_fails_the_job_and_a_resume_continues_from_its_checkpoint() {
    // The body is written while it is read on, with checkpoint fdatasyncs
    // beside the writes. A write from byte 2 MiB on fails: the job must
    // hear the local file's error, with what the checkpoint before it made
    // durable reported, so that a resume asks only for the rest and the
    // file comes out byte-identical.
    const SIZE: u64 = 6 << 20;
    let run = Run::new(&[("write-fails", SIZE)]);
    let engine = Engine::start(config(run.data.path())).await.unwrap();
    let job = job_of_one(&engine, &run, "write-fails").await;
    // A slow disk: the checkpoint before the failing write is still under
    // way when that write fails, and what it made durable must still be
    // reported.
    fail::cfg("file::slow_checkpoint", "return(write-fails)").unwrap();
    write_fails_then_resume(&engine, job, "file::write", "write-fails").await;
    fail::remove("file::slow_checkpoint");
    let from = resumed_from(&run, "write-fails");
    // Writes start where 1 MiB was gathered (a chunk past it at most), so
    // the last checkpoint before the failing write is past 1 MiB and
    // short of 3 MiB.
    assert!((1 << 20..3 << 20).contains(&from), "resumed from {from}");
    let answer = engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::Complete);
    run.assert_file("write-fails");
    engine.shutdown().await.unwrap();
}

//! The seed cases of Complete and Cancel, end to end.

use ferry_core::{CancelResult, CommandError, CompleteResult, FileId, JobState, Property};

use crate::util::{Harness, alice};
use ferry_actors::EngineError;

#[actix_rt::test]
async fn complete_publishes_every_file_byte_for_byte() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 300_000), ("b", 1), ("c", 2_500_000)]).await;
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    // Invisible before Complete: only ferry's temp files are there.
    assert!(h.listing().iter().all(|n| n.starts_with(".ferry-")));
    let answer = h.engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::Complete);
    assert_eq!(answer.saved, vec![FileId(0), FileId(1), FileId(2)]);
    assert_eq!(h.listing(), vec!["a", "b", "c"]);
    for name in ["a", "b", "c"] {
        h.assert_file(name);
    }
    let view = h.engine.job(&alice(), job).await.unwrap();
    assert_eq!(view.state, JobState::Acknowledged);
    let files = h.engine.files(&alice(), job).await.unwrap();
    assert!(files.iter().all(|f| f.completed));
}

#[actix_rt::test]
async fn complete_mid_transfer_keeps_files_one_and_two_of_five() {
    let h = Harness::new().await;
    let job = h
        .job(&[
            ("1", 1000),
            ("2", 2000),
            ("3", 300_000),
            ("4", 10),
            ("5", 10),
        ])
        .await;
    h.origin.hold("/3");
    h.engine.resume(&alice(), job).await.unwrap();
    // Files 1 and 2 durable (in either order: the next file starts while
    // one's bytes are synced), file 3 under way.
    let start = std::time::Instant::now();
    loop {
        let files = h.engine.files(&alice(), job).await.unwrap();
        if files[0].transferred && files[1].transferred {
            break;
        }
        assert!(start.elapsed() < crate::util::DEADLINE, "{files:?}");
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    h.requested("/3").await;
    let answer = h.engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::PartialComplete);
    assert_eq!(answer.saved, vec![FileId(0), FileId(1)]);
    assert_eq!(answer.dropped, vec![FileId(2), FileId(3), FileId(4)]);
    assert!(answer.undeleted.is_empty());
    // Only the two files, no temp file left.
    assert_eq!(h.listing(), vec!["1", "2"]);
    h.assert_file("1");
    h.assert_file("2");
    h.origin.release("/3");
}

#[actix_rt::test]
async fn a_rename_failure_keeps_the_job_transferred_and_a_second_complete_succeeds() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 1000), ("b", 1000)]).await;
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    // Something that is not a file now stands at b's final name.
    std::fs::create_dir(h.local("b")).unwrap();
    std::fs::write(h.local("b").join("inside"), b"x").unwrap();
    let err = h.engine.complete(&alice(), job).await.unwrap_err();
    let EngineError::Command(CommandError::RenameFailed(failed)) = err else {
        panic!("expected a rename failure, got {err:?}");
    };
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].file, FileId(1));
    assert_eq!(failed[0].path, h.local("b").to_string_lossy());
    let view = h.engine.job(&alice(), job).await.unwrap();
    assert_eq!(view.state, JobState::Transferred);
    assert!(view.commit_stalled);
    let files = h.engine.files(&alice(), job).await.unwrap();
    assert!(files[0].completed && !files[1].completed);
    h.assert_file("a");
    // The application fixes the cause and completes again.
    std::fs::remove_dir_all(h.local("b")).unwrap();
    let answer = h.engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::Complete);
    assert_eq!(answer.saved, vec![FileId(0), FileId(1)]);
    h.assert_file("b");
    assert_eq!(h.listing(), vec!["a", "b"]);
}

#[actix_rt::test]
async fn an_existing_regular_file_is_replaced() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 5000)]).await;
    std::fs::write(h.local("a"), b"old contents").unwrap();
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    assert_eq!(std::fs::read(h.local("a")).unwrap(), b"old contents");
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("a");
}

#[actix_rt::test]
async fn after_cancel_every_command_is_invalid_state_and_no_temp_file_remains() {
    let h = Harness::new().await;
    let job = h.job(&[("a", 400_000), ("b", 10)]).await;
    h.origin.hold("/a");
    h.engine.resume(&alice(), job).await.unwrap();
    h.requested("/a").await;
    let answer = h.engine.cancel(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CancelResult::Ok);
    assert!(h.listing().is_empty(), "{:?}", h.listing());
    for result in [
        h.engine.resume(&alice(), job).await,
        h.engine.suspend(&alice(), job).await,
        h.engine
            .set(&alice(), job, Property::Description("x".into()))
            .await,
        h.engine.complete(&alice(), job).await.map(|_| ()),
        h.engine.cancel(&alice(), job).await.map(|_| ()),
    ] {
        assert!(
            matches!(
                result,
                Err(EngineError::Command(CommandError::InvalidState(
                    JobState::Cancelled
                )))
            ),
            "{result:?}"
        );
    }
    // Still readable by id, with its answer; not listed.
    let view = h.engine.job(&alice(), job).await.unwrap();
    assert_eq!(view.state, JobState::Cancelled);
    assert!(view.answer.is_some());
    assert!(h.engine.list(&alice(), false).await.unwrap().is_empty());
    h.origin.release("/a");
}

#[actix_rt::test]
async fn published_files_get_the_servers_modification_time_and_default_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    // The origin's Last-Modified: 1,780,000,000 s after the epoch.
    let server_time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
    let mut h = Harness::new().await;
    // A small body (created and written by the syncer) and one written by
    // its transfer, whose last bytes the syncer writes.
    let job = h.job(&[("a", 10), ("b", 3 << 20)]).await;
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    // The temp files have the server's time already, made durable with
    // their bytes: Complete only renames them.
    let temps = h.listing();
    assert_eq!(temps.len(), 2, "{temps:?}");
    for temp in &temps {
        let mtime = std::fs::metadata(h.local(temp))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(mtime, server_time, "{temp}");
    }
    // One that lost it (as if its body had ended in an older version)
    // still gets it at Complete.
    let other = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(h.local(&temps[0]))
        .unwrap()
        .set_modified(other)
        .unwrap();
    h.engine.complete(&alice(), job).await.unwrap();
    assert_eq!(h.listing(), ["a", "b"]);
    for name in ["a", "b"] {
        let meta = std::fs::metadata(h.local(name)).unwrap();
        assert_eq!(meta.modified().unwrap(), server_time, "{name}");
        let umask = current_umask();
        assert_eq!(meta.permissions().mode() & 0o777, 0o666 & !umask);
    }
}

/// The process umask, read from /proc (reading it with umask(2) would change
/// it for every thread).
fn current_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).unwrap()
}

#[actix_rt::test]
async fn complete_of_many_files_publishes_them_all() {
    let mut h = Harness::new().await;
    let names: Vec<String> = (0..80).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, u64)> = names
        .iter()
        .map(|n| (n.as_str(), 100 + n.len() as u64))
        .collect();
    let job = h.job(&files).await;
    h.engine
        .set(&alice(), job, Property::ParallelFiles(8))
        .await
        .unwrap();
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    let answer = h.engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::Complete);
    assert_eq!(answer.saved.len(), 80);
    assert_eq!(h.listing(), names);
    for name in &names {
        h.assert_file(name);
    }
}

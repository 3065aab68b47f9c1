//! Transfers: invisibility before Complete, events, parallel files.

use ferry_actors::EventKind;
use ferry_core::{FileId, JobState, Property};

use crate::util::{Harness, alice};

#[actix_rt::test]
async fn files_are_invisible_before_complete() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 500_000)]).await;
    h.origin.hold("/a");
    h.engine.resume(&alice(), job).await.unwrap();
    h.requested("/a").await;
    assert!(!h.local("a").exists());
    h.origin.release("/a");
    h.transferred(job).await;
    assert!(!h.local("a").exists());
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("a");
}

#[actix_rt::test]
async fn file_events_come_before_the_job_event_in_sequence() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 10), ("b", 10)]).await;
    h.engine.resume(&alice(), job).await.unwrap();
    let first = h
        .event(job, |e| e.kind == EventKind::FileTransferred(FileId(0)))
        .await;
    let second = h
        .event(job, |e| e.kind == EventKind::FileTransferred(FileId(1)))
        .await;
    let done = h.event(job, |e| e.kind == EventKind::JobTransferred).await;
    assert!(first.seq < second.seq && second.seq < done.seq);
    assert_eq!(done.state, JobState::Transferred);
}

#[actix_rt::test]
async fn parallel_files_transfer_at_once() {
    let mut h = Harness::new().await;
    let job = h
        .job(&[("a", 100_000), ("b", 100_000), ("c", 100_000)])
        .await;
    h.engine
        .set(&alice(), job, Property::ParallelFiles(3))
        .await
        .unwrap();
    for path in ["/a", "/b", "/c"] {
        h.origin.hold(path);
    }
    h.engine.resume(&alice(), job).await.unwrap();
    // All three are requested while every one of them is held.
    for path in ["/a", "/b", "/c"] {
        h.requested(path).await;
    }
    for path in ["/a", "/b", "/c"] {
        h.origin.release(path);
    }
    h.transferred(job).await;
    h.engine.complete(&alice(), job).await.unwrap();
    for name in ["a", "b", "c"] {
        h.assert_file(name);
    }
}

#[actix_rt::test]
async fn suspend_stops_and_resume_continues() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 2_000_000)]).await;
    h.origin.hold("/a");
    h.engine.resume(&alice(), job).await.unwrap();
    h.requested("/a").await;
    h.engine.suspend(&alice(), job).await.unwrap();
    assert_eq!(
        h.engine.job(&alice(), job).await.unwrap().state,
        JobState::Suspended
    );
    h.origin.release("/a");
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("a");
}

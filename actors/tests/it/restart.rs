//! Restarts: everything acknowledged survives, transfers continue.

use ferry_core::{CompleteResult, JobState, Priority, Property};

use crate::util::{Harness, alice};

#[actix_rt::test]
async fn a_restart_mid_transfer_continues_to_byte_identical_files() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 4 * 1024 * 1024), ("b", 100)]).await;
    h.engine
        .set(&alice(), job, Property::Priority(Priority::High))
        .await
        .unwrap();
    h.origin.hold("/a");
    h.engine.resume(&alice(), job).await.unwrap();
    // Wait until some of a is durable.
    let start = std::time::Instant::now();
    loop {
        let files = h.engine.files(&alice(), job).await.unwrap();
        if files[0].bytes_durable > 0 {
            break;
        }
        assert!(start.elapsed() < crate::util::DEADLINE);
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    h.restart().await;
    h.origin.release("/a");
    let view = h.engine.job(&alice(), job).await.unwrap();
    assert_eq!(view.priority, Priority::High);
    assert_eq!(view.owner, "alice");
    h.transferred(job).await;
    // The second attempt resumed: it asked for a range.
    let requests = h.origin.requests_of("/a");
    assert!(
        requests.iter().skip(1).any(|r| r.range.is_some()),
        "{requests:?}"
    );
    let answer = h.engine.complete(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CompleteResult::Complete);
    h.assert_file("a");
    h.assert_file("b");
}

#[actix_rt::test]
async fn a_suspended_job_stays_suspended_and_final_jobs_stay_readable() {
    let mut h = Harness::new().await;
    let suspended = h.job(&[("a", 10)]).await;
    let done = h.job(&[("b", 10)]).await;
    h.engine.resume(&alice(), done).await.unwrap();
    h.transferred(done).await;
    h.engine.complete(&alice(), done).await.unwrap();
    h.restart().await;
    assert_eq!(
        h.engine.job(&alice(), suspended).await.unwrap().state,
        JobState::Suspended
    );
    let view = h.engine.job(&alice(), done).await.unwrap();
    assert_eq!(view.state, JobState::Acknowledged);
    assert!(view.answer.is_some());
    let listed = h.engine.list(&alice(), false).await.unwrap();
    assert_eq!(listed.len(), 1);
}

#[actix_rt::test]
async fn a_late_subscriber_first_gets_jobs_already_transferred() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 10)]).await;
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    h.restart().await;
    let event = h
        .event(job, |e| e.kind == ferry_actors::EventKind::JobTransferred)
        .await;
    assert_eq!(event.state, JobState::Transferred);
}

#[actix_rt::test]
async fn the_start_sweep_deletes_only_this_engines_orphan_temp_files() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 10)]).await;
    let engine_id = h.engine.engine_id();
    let orphan_job = ferry_core::JobId(uuid::Uuid::from_u128(77));
    let orphan = ferry_core::temp_file_name(engine_id, orphan_job, ferry_core::FileId(0));
    let foreign = ferry_core::temp_file_name(engine_id ^ 1, orphan_job, ferry_core::FileId(0));
    for name in [
        orphan.as_str(),
        foreign.as_str(),
        "user-file",
        ".ferry-notes",
    ] {
        std::fs::write(h.local(name), b"x").unwrap();
    }
    h.restart().await;
    let listing = h.listing();
    assert!(!listing.contains(&orphan), "{listing:?}");
    for name in [foreign.as_str(), "user-file", ".ferry-notes"] {
        assert!(listing.iter().any(|n| n == name), "{name} was deleted");
    }
    // The live job is untouched and still works.
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
}

#[actix_rt::test]
async fn a_store_of_an_unknown_schema_version_is_refused_not_reset() {
    let data = tempfile::TempDir::new().unwrap();
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&options, data.path(), ["meta"]).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(meta, b"schema_version", [99]).unwrap();
    }
    let err = ferry_actors::Engine::start(crate::util::config(data.path()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "store_open");
    assert!(err.to_string().contains("schema version"), "{err}");
    // Nothing was rewritten: the version is still the unknown one.
    let err = ferry_actors::Engine::start(crate::util::config(data.path()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("schema version"), "{err}");
}

#[actix_rt::test]
async fn a_data_dir_in_use_by_another_engine_is_a_clear_error() {
    let h = Harness::new().await;
    let err = ferry_actors::Engine::start(crate::util::config(h.data.path()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "store_open");
    assert!(err.to_string().to_lowercase().contains("lock"), "{err}");
}

#[actix_rt::test]
async fn a_job_created_with_its_files_and_properties_is_durable_in_one_piece() {
    let mut h = Harness::new().await;
    h.origin.add("/a", 50_000);
    let spec = ferry_core::FileSpec::new(
        h.origin.url("/a"),
        h.local("a").to_string_lossy().into_owned(),
    );
    let setup = ferry_actors::JobSetup::default()
        .files(vec![spec])
        .properties(vec![ferry_core::Property::ParallelFiles(3)]);
    let job = h
        .engine
        .create_job_with(&alice(), ferry_core::JobSpec::download("whole"), setup)
        .await
        .unwrap();
    h.restart().await;
    let view = h.engine.job(&alice(), job).await.unwrap();
    assert_eq!(view.state, ferry_core::JobState::Suspended);
    assert_eq!((view.files_total, view.parallel_files), (1, 3));
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("a");
}

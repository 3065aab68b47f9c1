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

#[actix_rt::test]
async fn https_downloads_verify_the_server_and_refuse_redirects_to_http() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().to_vec();
    let key = cert.signing_key.serialize_der();
    let tls = ferry_bench::origin::Origin::start_tls(vec![der.clone()], key).unwrap();
    tls.add("/secure", 1_500_000);
    let mut h = Harness::with(|c| c.tls_roots = vec![der]).await;
    h.origin.add("/plain", 10);
    tls.redirect("/down", &h.origin.url("/plain"));
    let url = |path: &str| format!("https://localhost:{}{path}", tls.addr().port());
    let job = h.job_from(url("/secure"), "secure").await;
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    h.engine.complete(&alice(), job).await.unwrap();
    let got = std::fs::read(h.local("secure")).unwrap();
    assert!(got == tls.expected("/secure"));

    // https -> http is refused (fatal), never followed.
    let job = h.job_from(url("/down"), "down").await;
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| e.kind == EventKind::JobError).await;
    let error = h.engine.job(&alice(), job).await.unwrap().error.unwrap();
    assert_eq!(error.code, "insecure_redirect");
    assert!(h.origin.requests_of("/plain").is_empty());
}

#[actix_rt::test]
async fn an_untrusted_certificate_is_an_error() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = ferry_bench::origin::Origin::start_tls(
        vec![cert.cert.der().to_vec()],
        cert.signing_key.serialize_der(),
    )
    .unwrap();
    tls.add("/secure", 10);
    let mut h = Harness::new().await;
    let remote = format!("https://localhost:{}/secure", tls.addr().port());
    let job = h.job_from(remote, "secure").await;
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| {
        e.state == JobState::TransientError || e.state == JobState::Error
    })
    .await;
    assert!(
        tls.requests().is_empty(),
        "no request may pass an untrusted TLS handshake"
    );
}

#[actix_rt::test]
async fn huge_time_settings_do_not_break_the_timers() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 10)]).await;
    for property in [
        Property::MaxDownloadTime(std::time::Duration::MAX),
        Property::NoProgressTimeout(std::time::Duration::MAX),
        Property::MinRetryDelay(std::time::Duration::from_secs(u64::MAX)),
    ] {
        h.engine.set(&alice(), job, property).await.unwrap();
    }
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    h.restart().await;
    assert_eq!(
        h.engine.job(&alice(), job).await.unwrap().state,
        JobState::Transferred
    );
}

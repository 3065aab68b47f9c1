//! Transfers: invisibility before Complete, events, parallel files.

use ferry_actors::EventKind;
use ferry_core::{FileId, JobState, Property};

use crate::util::{DEADLINE, Harness, alice};

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

/// "Why is my job waiting": a job held back by its host's limit says
/// host_busy, one held back by the global budget says waiting_for_slot
/// (behind the priority that holds the slot), a suspended job says why,
/// and the transferring job says nothing. `127.0.0.1` and `localhost` are
/// two hosts of the same origin.
#[actix_rt::test]
async fn a_waiting_job_says_which_limit_holds_it() {
    use ferry_core::{Priority, Waiting};
    let h = Harness::with(|c| {
        c.max_transfers = 1;
        c.max_transfers_per_host = 1;
    })
    .await;
    let me = alice();
    let running = h.job(&[("a", 400_000)]).await;
    h.origin.hold("/a");
    h.engine.resume(&me, running).await.unwrap();
    h.requested("/a").await;

    // Low priority on the busy host.
    let same_host = h.job(&[("b", 10)]).await;
    h.engine
        .set(&me, same_host, Property::Priority(Priority::Low))
        .await
        .unwrap();
    h.engine.resume(&me, same_host).await.unwrap();
    // High priority on another host: only the global budget holds it.
    h.origin.add("/c", 10);
    let remote = h.origin.url("/c").replace("127.0.0.1", "localhost");
    let other_host = h.job_from(remote, "c").await;
    h.engine
        .set(&me, other_host, Property::Priority(Priority::High))
        .await
        .unwrap();
    h.engine.resume(&me, other_host).await.unwrap();
    let idle = h.job(&[("d", 10)]).await;
    let empty = h
        .engine
        .create_job(&me, ferry_core::JobSpec::download("empty"))
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + DEADLINE;
    let want = |job| match job {
        j if j == same_host => Some(Waiting::HostBusy {
            host: "127.0.0.1".into(),
            limit: 1,
        }),
        j if j == other_host => Some(Waiting::ForSlot {
            behind: Priority::Normal,
            slots: 1,
        }),
        j if j == idle => Some(Waiting::SuspendedByUser),
        j if j == empty => Some(Waiting::NoFiles),
        _ => None,
    };
    loop {
        let mut got = Vec::new();
        for job in [running, same_host, other_host, idle, empty] {
            got.push(h.engine.job(&me, job).await.unwrap().waiting);
        }
        let wanted: Vec<_> = [running, same_host, other_host, idle, empty]
            .into_iter()
            .map(want)
            .collect();
        if got == wanted {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The list says the same.
    let listed = h.engine.list(&me, false).await.unwrap();
    let of = |job| {
        listed
            .iter()
            .find(|v| v.id == job)
            .and_then(|v| v.waiting.clone())
    };
    assert_eq!(of(other_host), want(other_host));
    assert_eq!(of(same_host), want(same_host));
    h.origin.release("/a");
    h.engine.clone().shutdown().await.unwrap();
}

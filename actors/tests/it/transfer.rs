//! Transfers: invisibility before Complete, events, parallel files.

use ferry_actors::EventKind;
use ferry_bench::origin::Fault;
use ferry_core::{CancelResult, FileId, JobState, Property};

use crate::util::{DEADLINE, Harness, alice};

#[actix_rt::test]
async fn files_are_invisible_before_complete() {
    let mut h = Harness::new().await;
    let job = h.held_job("a", 500_000).await;
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
    // Files may become durable in either order (the next file starts
    // while one's bytes are synced); both come before the job's event.
    let mut files = Vec::new();
    let done = loop {
        let event = h
            .event(job, |e| {
                matches!(
                    e.kind,
                    EventKind::FileTransferred(_) | EventKind::JobTransferred
                )
            })
            .await;
        match event.kind {
            EventKind::FileTransferred(file) => files.push((file, event.seq)),
            _ => break event,
        }
    };
    files.sort();
    assert_eq!(
        files.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
        [FileId(0), FileId(1)]
    );
    assert!(files.iter().all(|(_, seq)| *seq < done.seq), "{files:?}");
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
    let job = h.held_job("a", 2_000_000).await;
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
async fn a_temp_file_exists_once_an_answer_was_accepted_and_not_before() {
    let mut h = Harness::new().await;
    // Answers refused (a 503, then a 404 that fails the job): no temp file.
    let job = h.job(&[("a", 100_000)]).await;
    h.origin.fail_next("/a", Fault::Status(503, None));
    h.origin.fail_next("/a", Fault::Status(404, None));
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| e.kind == EventKind::JobError).await;
    assert_eq!(h.origin.requests_of("/a").len(), 2);
    assert!(h.listing().is_empty(), "{:?}", h.listing());
    let answer = h.engine.cancel(&alice(), job).await.unwrap();
    assert_eq!(answer.result, CancelResult::Ok);

    // An answer accepted, then a stop while the body streams: the temp
    // file holds what arrived, and the transfer resumes from it.
    let job = h.held_job("b", 2_000_000).await;
    let start = std::time::Instant::now();
    while h.engine.files(&alice(), job).await.unwrap()[0].bytes_transferred == 0 {
        assert!(start.elapsed() < DEADLINE);
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    h.engine.suspend(&alice(), job).await.unwrap();
    let durable = h.engine.files(&alice(), job).await.unwrap()[0].bytes_durable;
    let listing = h.listing();
    assert!(
        listing.len() == 1 && listing[0].starts_with(".ferry-"),
        "{listing:?}"
    );
    let temp = h.downloads.path().join(&listing[0]);
    assert_eq!(std::fs::metadata(temp).unwrap().len(), durable);
    assert!(durable > 0);
    h.origin.release("/b");
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("b");
    let ranges: Vec<Option<String>> = h
        .origin
        .requests_of("/b")
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, vec![None, Some(format!("bytes={durable}-"))]);
}

#[actix_rt::test]
async fn https_downloads_verify_the_server_and_refuse_redirects_to_http() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().to_vec();
    let key = cert.signing_key.serialize_der();
    let tls = ferry_bench::origin::Origin::start_tls(vec![der.clone()], key).unwrap();
    tls.add("/secure", 1_500_000);
    // The private root alone: the web PKI roots are not needed for it.
    let mut h = Harness::with(|c| {
        c.tls_roots = vec![der];
        c.tls_web_roots = false;
    })
    .await;
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
    let running = h.held_job("a", 400_000).await;

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

/// The global bandwidth cap against the real origin: the bytes never
/// exceed cap x elapsed + burst (+ the one chunk taken last), so a file
/// cannot arrive sooner than that allows; and lifting the cap at runtime
/// lets a crawling transfer finish at once.
#[actix_rt::test]
async fn a_bandwidth_cap_holds_and_can_be_lifted_at_runtime() {
    use std::time::Instant;
    const CAP: u64 = 512 * 1024;
    // The burst is a tenth of a second's worth, at least 64 KiB; a chunk
    // from the origin is at most 64 KiB.
    const BURST: u64 = 64 * 1024;
    const CHUNK: u64 = 64 * 1024;
    let mut h = Harness::with(|c| c.max_bytes_per_second = Some(CAP)).await;
    let me = alice();
    let size = 1024 * 1024;
    let job = h.job(&[("capped", size)]).await;
    let started = Instant::now();
    h.engine.resume(&me, job).await.unwrap();
    h.transferred(job).await;
    let elapsed = started.elapsed().as_secs_f64();
    let least = (size - BURST - CHUNK) as f64 / CAP as f64;
    assert!(
        elapsed >= least,
        "{size} bytes in {elapsed:.2} s: over the cap"
    );

    // 16 KiB/s would take a minute for 1 MiB: lifted, it finishes well
    // within the test's deadline.
    let mut limits = h.engine.limits().await.unwrap();
    limits.max_bytes_per_second = Some(16 * 1024);
    h.engine.set_limits(limits.clone()).await.unwrap();
    assert_eq!(
        h.engine.limits().await.unwrap().max_bytes_per_second,
        Some(16 * 1024)
    );
    let slow = h.job(&[("slow", size)]).await;
    h.engine.resume(&me, slow).await.unwrap();
    h.requested("/slow").await;
    limits.max_bytes_per_second = None;
    h.engine.set_limits(limits.clone()).await.unwrap();
    h.transferred(slow).await;
    let zero = ferry_actors::Limits {
        max_bytes_per_second: Some(0),
        ..limits
    };
    assert!(h.engine.set_limits(zero).await.is_err());
    h.engine.clone().shutdown().await.unwrap();
}

/// A job's own bandwidth cap against the real origin: it holds the job's
/// files together (two files at once share it) while another job runs
/// uncapped, and lifting it at runtime lets the job finish at once.
#[actix_rt::test]
async fn a_jobs_own_bandwidth_cap_holds_for_that_job_and_can_be_lifted() {
    use std::time::Instant;
    const CAP: u64 = 512 * 1024;
    const BURST: u64 = 64 * 1024;
    const CHUNK: u64 = 64 * 1024;
    let mut h = Harness::new().await;
    let me = alice();
    let size = 512 * 1024;
    let capped = h.job(&[("c1", size), ("c2", size)]).await;
    h.engine
        .set_all(
            &me,
            capped,
            vec![
                Property::MaxBytesPerSecond(Some(CAP)),
                Property::ParallelFiles(2),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        h.engine
            .job(&me, capped)
            .await
            .unwrap()
            .max_bytes_per_second,
        Some(CAP)
    );
    let started = Instant::now();
    h.engine.resume(&me, capped).await.unwrap();
    // Another job is not held back by this job's cap.
    let free = h.job(&[("free", 4 * 1024 * 1024)]).await;
    h.engine.resume(&me, free).await.unwrap();
    h.transferred(free).await;
    assert!(
        h.engine.job(&me, capped).await.unwrap().state != JobState::Transferred,
        "the capped job finished before an uncapped job 4 times its size"
    );
    h.transferred(capped).await;
    let elapsed = started.elapsed().as_secs_f64();
    let least = (2 * size - BURST - CHUNK) as f64 / CAP as f64;
    assert!(
        elapsed >= least,
        "{} bytes in {elapsed:.2} s: over the job's cap",
        2 * size
    );

    // 1 KiB/s would take many minutes: lifted, it finishes at once.
    let slow = h.job(&[("slow", size)]).await;
    h.engine
        .set(&me, slow, Property::MaxBytesPerSecond(Some(1024)))
        .await
        .unwrap();
    h.engine.resume(&me, slow).await.unwrap();
    h.requested("/slow").await;
    h.engine
        .set(&me, slow, Property::MaxBytesPerSecond(None))
        .await
        .unwrap();
    h.transferred(slow).await;
    assert!(
        h.engine
            .set(&me, slow, Property::MaxBytesPerSecond(Some(0)))
            .await
            .is_err()
    );
    h.engine.clone().shutdown().await.unwrap();
}

/// Raising the global budget at runtime starts a job that waited for a
/// slot, without waiting for the running one to end.
#[actix_rt::test]
async fn a_raised_budget_starts_waiting_jobs_at_once() {
    let mut h = Harness::with(|c| c.max_transfers = 1).await;
    let me = alice();
    let first = h.held_job("a", 400_000).await;
    let second = h.job(&[("b", 10)]).await;
    h.engine.resume(&me, second).await.unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while !matches!(
        h.engine.job(&me, second).await.unwrap().waiting,
        Some(ferry_core::Waiting::ForSlot { slots: 1, .. })
    ) {
        assert!(std::time::Instant::now() < deadline, "never held back");
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut limits = h.engine.limits().await.unwrap();
    limits.max_transfers = 2;
    h.engine.set_limits(limits.clone()).await.unwrap();
    // The second job finishes while the first is still held (and has not
    // failed, which would have freed its slot too).
    h.transferred(second).await;
    assert_eq!(h.engine.job(&me, first).await.unwrap().error_count, 0);
    assert!(h.origin.requests_of("/a").len() == 1);
    h.origin.release("/a");
    h.transferred(first).await;
    h.engine.clone().shutdown().await.unwrap();
}

/// A priority change reaches the scheduler at once: a low job waiting
/// behind a normal one, raised to foreground, leaves the global budget and
/// starts while the slot's holder is still held; lowered again, its slot
/// counts in the budget again.
#[actix_rt::test]
async fn a_priority_change_takes_effect_on_a_waiting_job_at_once() {
    use ferry_core::Priority;
    let mut h = Harness::with(|c| c.max_transfers = 1).await;
    let me = alice();
    let holder = h.held_job("a", 400_000).await;
    let waiting = h.job(&[("b", 400_000)]).await;
    h.origin.hold("/b");
    h.engine
        .set(&me, waiting, Property::Priority(Priority::Low))
        .await
        .unwrap();
    h.engine.resume(&me, waiting).await.unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while !matches!(
        h.engine.job(&me, waiting).await.unwrap().waiting,
        Some(ferry_core::Waiting::ForSlot { .. })
    ) {
        assert!(std::time::Instant::now() < deadline, "never held back");
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    h.engine
        .set(&me, waiting, Property::Priority(Priority::Foreground))
        .await
        .unwrap();
    // It starts while the holder still holds the only background slot
    // (the holder has not failed: its body is held, not timed out).
    h.requested("/b").await;
    let holder_view = h.engine.job(&me, holder).await.unwrap();
    assert_eq!(
        holder_view.error_count, 0,
        "the slot was freed by a failure"
    );
    assert_eq!(h.origin.requests_of("/a").len(), 1);
    // Back to low while transferring: its slot joins the budget again, so
    // a third job waits for a slot behind two holders.
    h.engine
        .set(&me, waiting, Property::Priority(Priority::Low))
        .await
        .unwrap();
    let third = h.job(&[("c", 10)]).await;
    h.engine.resume(&me, third).await.unwrap();
    while !matches!(
        h.engine.job(&me, third).await.unwrap().waiting,
        Some(ferry_core::Waiting::ForSlot { slots: 1, .. })
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "the third job was not held back"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    h.origin.release("/a");
    h.origin.release("/b");
    h.transferred(third).await;
    h.engine.clone().shutdown().await.unwrap();
}

/// Time slices: with one slot, a job of the same priority that waits gets
/// it once the holder's slice is over; the holder gives it back at its next
/// chunk with its progress kept, and resumes with a range afterwards.
#[actix_rt::test]
async fn equal_priorities_share_one_slot_in_time_slices() {
    let mut h = Harness::with(|c| {
        c.max_transfers = 1;
        c.time_slice = std::time::Duration::from_millis(200);
    })
    .await;
    let me = alice();
    let holder = h.held_job("a", 400_000).await;
    let waiting = h.job(&[("b", 10)]).await;
    h.engine.resume(&me, waiting).await.unwrap();
    // The waiting job finishes while the holder's body is still held: the
    // holder was preempted, not failed.
    h.transferred(waiting).await;
    let view = h.engine.job(&me, holder).await.unwrap();
    assert_eq!(view.error_count, 0, "the slot was freed by a failure");
    assert_ne!(view.state, ferry_core::JobState::Transferred);
    h.origin.release("/a");
    h.transferred(holder).await;
    // It resumed from what it had, with a range.
    let requests = h.origin.requests_of("/a");
    assert!(requests.len() >= 2, "{requests:?}");
    assert!(
        requests.iter().skip(1).any(|r| r.range.is_some()),
        "{requests:?}"
    );
    let answer = h.engine.complete(&me, holder).await.unwrap();
    assert_eq!(answer.result, ferry_core::CompleteResult::Complete);
    assert_eq!(
        h.origin.verify("/a", &h.local("a")).unwrap(),
        None,
        "the preempted file is byte-identical"
    );
    h.engine.clone().shutdown().await.unwrap();
}

/// The time slice changes at runtime: with an hour's slice a waiting job
/// of the same priority would wait behind a held transfer; shortened to
/// 200 ms through `set_limits`, it gets the slot while the holder is held.
#[actix_rt::test]
async fn the_time_slice_changes_at_runtime() {
    let mut h = Harness::with(|c| {
        c.max_transfers = 1;
        c.time_slice = std::time::Duration::from_secs(3600);
    })
    .await;
    let me = alice();
    let holder = h.held_job("a", 400_000).await;
    let waiting = h.job(&[("b", 10)]).await;
    h.engine.resume(&me, waiting).await.unwrap();
    let mut limits = h.engine.limits().await.unwrap();
    assert_eq!(limits.time_slice, std::time::Duration::from_secs(3600));
    limits.time_slice = std::time::Duration::from_millis(200);
    h.engine.set_limits(limits.clone()).await.unwrap();
    assert_eq!(
        h.engine.limits().await.unwrap().time_slice,
        limits.time_slice
    );
    h.transferred(waiting).await;
    assert_ne!(
        h.engine.job(&me, holder).await.unwrap().state,
        ferry_core::JobState::Transferred
    );
    limits.time_slice = std::time::Duration::ZERO;
    assert!(h.engine.set_limits(limits).await.is_err());
    h.origin.release("/a");
    h.transferred(holder).await;
    h.engine.clone().shutdown().await.unwrap();
}

/// Bandwidth windows: a `pause` window in force takes the slots of running
/// background transfers back (they keep their progress), keeps new
/// background jobs waiting with the reason `schedule_window`, and lets
/// foreground jobs go on; a window's cap is the cap in force; removing the
/// schedule lets the background jobs finish.
#[actix_rt::test]
async fn a_pause_window_holds_background_jobs_and_foreground_ones_go_on() {
    use ferry_core::{Priority, Waiting, window::Window};
    let mut h = Harness::new().await;
    let me = alice();
    let running = h.held_job("a", 400_000).await;

    let always_paused: Window = "all 00:00-24:00 pause".parse().unwrap();
    let mut limits = h.engine.limits().await.unwrap();
    limits.bandwidth_schedule = vec![always_paused];
    h.engine.set_limits(limits.clone()).await.unwrap();
    let (got, now) = h.engine.limits_now().await.unwrap();
    assert_eq!(got.bandwidth_schedule, vec![always_paused]);
    assert_eq!(now.window, Some(0));
    assert!(now.background_paused);
    assert_eq!(now.until, None, "an always-on window never ends");

    // The running background job gives its slot back and waits.
    let pause = Some(Waiting::ScheduleWindow { until: None });
    let start = std::time::Instant::now();
    while h.engine.job(&me, running).await.unwrap().waiting != pause {
        assert!(start.elapsed() < DEADLINE, "the held job was not paused");
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let later = h.job(&[("b", 10)]).await;
    h.engine.resume(&me, later).await.unwrap();
    let fg = h.job(&[("f", 10)]).await;
    h.engine
        .set(&me, fg, Property::Priority(Priority::Foreground))
        .await
        .unwrap();
    h.engine.resume(&me, fg).await.unwrap();
    h.transferred(fg).await;
    assert_eq!(h.engine.job(&me, later).await.unwrap().waiting, pause);

    // A window's cap is the cap in force.
    limits.bandwidth_schedule = vec!["all 00:00-24:00 4096".parse().unwrap()];
    h.engine.set_limits(limits.clone()).await.unwrap();
    let (_, now) = h.engine.limits_now().await.unwrap();
    assert_eq!(now.max_bytes_per_second, Some(4096));
    assert!(!now.background_paused);

    // No schedule: everything finishes, the preempted file byte-identical.
    limits.bandwidth_schedule = Vec::new();
    h.engine.set_limits(limits).await.unwrap();
    h.origin.release("/a");
    h.in_state(later, JobState::Transferred).await;
    h.in_state(running, JobState::Transferred).await;
    let answer = h.engine.complete(&me, running).await.unwrap();
    assert_eq!(answer.result, ferry_core::CompleteResult::Complete);
    assert_eq!(h.origin.verify("/a", &h.local("a")).unwrap(), None);
    h.engine.clone().shutdown().await.unwrap();
}

/// "Why is my job slow": a transferring job held back by its own cap says
/// `throttled` with the cap; once the cap is lifted it says nothing.
#[actix_rt::test]
async fn a_job_held_back_by_a_cap_says_throttled() {
    use ferry_core::Waiting;
    let mut h = Harness::new().await;
    let me = alice();
    let job = h.job(&[("t", 2 * 1024 * 1024)]).await;
    h.engine
        .set(&me, job, Property::MaxBytesPerSecond(Some(64 * 1024)))
        .await
        .unwrap();
    h.engine.resume(&me, job).await.unwrap();
    let want = Some(Waiting::Throttled {
        max_bytes_per_second: 64 * 1024,
    });
    let start = std::time::Instant::now();
    loop {
        let view = h.engine.job(&me, job).await.unwrap();
        if view.waiting == want {
            assert_eq!(view.state, JobState::Transferring);
            break;
        }
        assert!(start.elapsed() < DEADLINE, "never throttled: {view:?}");
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    h.engine
        .set(&me, job, Property::MaxBytesPerSecond(None))
        .await
        .unwrap();
    h.transferred(job).await;
    assert_eq!(h.engine.job(&me, job).await.unwrap().waiting, None);
    h.engine.clone().shutdown().await.unwrap();
}

/// A transfer whose server takes no ranges is never preempted once it has
/// bytes: stopped, it would start over every slice and never finish. The
/// waiting job of the same priority waits for it; the file is fetched in
/// one request.
#[actix_rt::test]
async fn a_transfer_from_a_server_without_ranges_is_not_preempted() {
    let h = Harness::with(|c| {
        c.max_transfers = 1;
        c.time_slice = std::time::Duration::from_millis(200);
    })
    .await;
    let me = alice();
    let holder = h.job(&[("a", 400_000)]).await;
    h.origin
        .fail_always("/a", Some(ferry_bench::origin::Fault::IgnoreRange));
    h.origin.hold("/a");
    h.engine.resume(&me, holder).await.unwrap();
    h.requested("/a").await;
    let waiting = h.job(&[("b", 10)]).await;
    h.engine.resume(&me, waiting).await.unwrap();
    // Five slices go by (a bounded wait for something that must not
    // happen): the holder keeps its slot.
    actix_rt::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_ne!(
        h.engine.job(&me, waiting).await.unwrap().state,
        JobState::Transferred
    );
    h.origin.release("/a");
    h.in_state(holder, JobState::Transferred).await;
    h.in_state(waiting, JobState::Transferred).await;
    assert_eq!(h.origin.requests_of("/a").len(), 1, "the holder restarted");
    h.engine.clone().shutdown().await.unwrap();
}

/// Foreground preemption at a busy host: with one transfer per host, a
/// foreground job takes the slot of a background transfer to that host at
/// once; the background file resumes with a range afterwards.
#[actix_rt::test]
async fn a_foreground_job_takes_a_busy_hosts_slot_from_a_background_one() {
    use ferry_core::Priority;
    let h = Harness::with(|c| c.max_transfers_per_host = 1).await;
    let me = alice();
    let background = h.held_job("a", 400_000).await;
    let fg = h.job(&[("f", 10)]).await;
    h.engine
        .set(&me, fg, Property::Priority(Priority::Foreground))
        .await
        .unwrap();
    h.engine.resume(&me, fg).await.unwrap();
    // Done while the background body is still held.
    h.in_state(fg, JobState::Transferred).await;
    assert_ne!(
        h.engine.job(&me, background).await.unwrap().state,
        JobState::Transferred
    );
    h.origin.release("/a");
    h.in_state(background, JobState::Transferred).await;
    let requests = h.origin.requests_of("/a");
    assert!(
        requests.iter().skip(1).any(|r| r.range.is_some()),
        "{requests:?}"
    );
    let answer = h.engine.complete(&me, background).await.unwrap();
    assert_eq!(answer.result, ferry_core::CompleteResult::Complete);
    assert_eq!(h.origin.verify("/a", &h.local("a")).unwrap(), None);
    h.engine.clone().shutdown().await.unwrap();
}

/// The jobs placed on each arbiter (0: home), from the metrics.
async fn placed(h: &Harness) -> Vec<u64> {
    let text = h.engine.metrics_text().await.unwrap();
    (0..3)
        .map(|i| {
            let name = format!("ferry_placed_jobs{{arbiter=\"{i}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&name))
                .map_or(0, |n| n.trim().parse().unwrap())
        })
        .collect()
}

/// Polls until the placement is `want`.
async fn placed_becomes(h: &Harness, want: &[u64]) {
    let start = std::time::Instant::now();
    loop {
        let now = placed(h).await;
        if now == want {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "placed {now:?}, not {want:?}");
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn a_job_alone_runs_at_home_the_next_elsewhere_and_places_are_given_back() {
    let h = Harness::new().await;
    // Nothing is placed before anything transfers.
    assert_eq!(placed(&h).await, [0, 0, 0]);
    let first = h.held_job("a", 400_000).await;
    assert_eq!(placed(&h).await, [1, 0, 0]);
    let second = h.held_job("b", 400_000).await;
    assert_eq!(placed(&h).await, [1, 1, 0]);
    h.origin.release("/a");
    h.in_state(first, JobState::Transferred).await;
    placed_becomes(&h, &[0, 1, 0]).await;
    // Home is free again: the next job goes there.
    let third = h.held_job("c", 400_000).await;
    assert_eq!(placed(&h).await, [1, 1, 0]);
    h.origin.release("/b");
    h.origin.release("/c");
    h.in_state(second, JobState::Transferred).await;
    h.in_state(third, JobState::Transferred).await;
    placed_becomes(&h, &[0, 0, 0]).await;
    for job in [first, second, third] {
        h.engine.complete(&alice(), job).await.unwrap();
    }
    for name in ["a", "b", "c"] {
        h.assert_file(name);
    }
}

#[actix_rt::test]
async fn without_file_arbiters_everything_runs_at_home_and_survives_a_restart() {
    let mut h = Harness::with(|c| c.arbiters = 0).await;
    let job = h.job(&[("a", 300_000), ("b", 10), ("c", 70_000)]).await;
    h.engine
        .set(&alice(), job, Property::ParallelFiles(3))
        .await
        .unwrap();
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    h.engine.complete(&alice(), job).await.unwrap();
    for name in ["a", "b", "c"] {
        h.assert_file(name);
    }
    // A transfer under way at home when the engine stops resumes after.
    let held = h.held_job("d", 600_000).await;
    h.restart().await;
    h.origin.release("/d");
    h.transferred(held).await;
    h.engine.complete(&alice(), held).await.unwrap();
    h.assert_file("d");
}

/// The transfers started on a slot kept from the job's previous one.
async fn kept_slots(h: &Harness) -> u64 {
    let text = h.engine.metrics_text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("ferry_kept_slots_total "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// A job alone gives the slot of each file to its next one, without a
/// release and a grant through the Manager; while another job waits for
/// the slot, it gives it back and the two take turns, as before.
#[actix_rt::test]
async fn a_job_keeps_its_slot_for_its_next_file_only_while_no_other_job_waits() {
    let mut h = Harness::with(|c| c.max_transfers = 1).await;
    let me = alice();
    let alone = h
        .job(&[("s1", 10), ("s2", 10), ("s3", 10), ("s4", 10)])
        .await;
    h.engine.resume(&me, alone).await.unwrap();
    h.transferred(alone).await;
    assert_eq!(kept_slots(&h).await, 3);

    // A holds the only slot; B waits for it.
    let a = h.job(&[("a1", 400_000), ("a2", 10)]).await;
    h.origin.hold("/a1");
    h.engine.resume(&me, a).await.unwrap();
    h.requested("/a1").await;
    let b = h.job(&[("b1", 10), ("b2", 10), ("b3", 10)]).await;
    h.engine.resume(&me, b).await.unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while !matches!(
        h.engine.job(&me, b).await.unwrap().waiting,
        Some(ferry_core::Waiting::ForSlot { .. })
    ) {
        assert!(std::time::Instant::now() < deadline, "never held back");
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    h.origin.release("/a1");
    h.transferred(a).await;
    h.transferred(b).await;
    // a1's slot went to the waiting B, b1's back to A (waiting by then),
    // a2's to B again; b2's was kept for b3, nobody else waiting.
    let order: Vec<String> = h
        .origin
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.starts_with("/a") || p.starts_with("/b"))
        .collect();
    assert_eq!(order, ["/a1", "/b1", "/a2", "/b2", "/b3"]);
    assert_eq!(kept_slots(&h).await, 4);
    h.engine.clone().shutdown().await.unwrap();
}

/// A budget lowered at runtime holds even for a job alone: the slot of a
/// file that ends over the new budget goes back, not to the job's next
/// file.
#[actix_rt::test]
async fn a_lowered_budget_holds_a_job_alone_that_kept_its_slots() {
    let mut h = Harness::with(|c| c.max_transfers = 2).await;
    let me = alice();
    let job = h
        .job(&[("a", 400_000), ("b", 400_000), ("c", 10), ("d", 10)])
        .await;
    h.engine
        .set(&me, job, Property::ParallelFiles(2))
        .await
        .unwrap();
    h.origin.hold("/a");
    h.origin.hold("/b");
    h.engine.resume(&me, job).await.unwrap();
    h.requested("/a").await;
    h.requested("/b").await;
    let mut limits = h.engine.limits().await.unwrap();
    limits.max_transfers = 1;
    h.engine.set_limits(limits).await.unwrap();
    h.origin.release("/a");
    let deadline = std::time::Instant::now() + DEADLINE;
    while !h.engine.files(&me, job).await.unwrap()[0].transferred {
        assert!(std::time::Instant::now() < deadline, "a never ended");
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // b holds the one slot of the new budget: c waits (a bounded wait for
    // something that must not happen).
    actix_rt::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        h.origin.requests_of("/c").is_empty(),
        "c started over the budget"
    );
    h.origin.release("/b");
    h.transferred(job).await;
    assert_eq!(h.origin.requests_of("/c").len(), 1);
    h.engine.clone().shutdown().await.unwrap();
}

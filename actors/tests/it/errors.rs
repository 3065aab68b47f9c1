//! Faults from the server: what is retried, what is fatal, and what restarts
//! a file.

use std::time::Duration;

use ferry_actors::EventKind;
use ferry_bench::origin::Fault;
use ferry_core::{ErrorContext, JobState, Property};

use crate::util::{Harness, alice};

#[actix_rt::test]
async fn a_503_then_200_is_retried_after_the_retry_delay() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 70_000)]).await;
    h.origin.fail_next("/a", Fault::Status(503, None));
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    let view = h.engine.job(&alice(), job).await.unwrap();
    assert_eq!(view.error_count, 1);
    assert!(view.error.is_none());
    assert_eq!(h.origin.requests_of("/a").len(), 2);
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("a");
}

#[actix_rt::test]
async fn a_404_is_fatal_with_an_error_object() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 10)]).await;
    h.origin.fail_always("/a", Some(Fault::Status(404, None)));
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| e.kind == EventKind::JobError).await;
    let view = h.engine.job(&alice(), job).await.unwrap();
    assert_eq!(view.state, JobState::Error);
    let error = view.error.unwrap();
    assert_eq!(error.code, "http_404");
    assert_eq!(error.context, ErrorContext::RemoteFile);
    // Fixed on the server, the application resumes.
    h.origin.fail_always("/a", None);
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
}

#[actix_rt::test]
async fn a_reset_mid_body_resumes_with_range_and_if_range() {
    let mut h = Harness::new().await;
    let size = 3 * 1024 * 1024;
    let job = h.job(&[("a", size)]).await;
    h.origin
        .fail_next("/a", Fault::ResetAfter(2 * 1024 * 1024 + 100));
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    let requests = h.origin.requests_of("/a");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    let range = requests[1]
        .range
        .clone()
        .expect("the retry asks for a range");
    let from: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from <= 2 * 1024 * 1024 + 100, "{range}");
    assert_eq!(requests[1].if_range, h.origin.etag("/a"));
    assert_eq!(requests[1].status, 206);
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("a");
}

#[actix_rt::test]
async fn content_that_changed_between_attempts_restarts_from_zero() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 3 * 1024 * 1024)]).await;
    h.origin.fail_next("/a", Fault::ResetAfter(2 * 1024 * 1024));
    h.engine.resume(&alice(), job).await.unwrap();
    // Change the entity once the first attempt has failed.
    h.event(job, |e| e.state == JobState::TransientError).await;
    h.origin.change("/a", Some(1_500_000));
    h.transferred(job).await;
    let requests = h.origin.requests_of("/a");
    assert_eq!(requests.last().unwrap().status, 200, "{requests:?}");
    h.engine.complete(&alice(), job).await.unwrap();
    // Never spliced: exactly the new content.
    h.assert_file("a");
}

#[actix_rt::test]
async fn a_server_ignoring_ranges_restarts_the_file() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 3 * 1024 * 1024)]).await;
    h.origin.fail_next("/a", Fault::ResetAfter(2 * 1024 * 1024));
    h.origin.fail_next("/a", Fault::IgnoreRange);
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("a");
}

#[actix_rt::test]
async fn a_body_without_length_is_accepted() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 200_000)]).await;
    h.origin.fail_always("/a", Some(Fault::NoLength));
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("a");
}

#[actix_rt::test]
async fn retry_after_is_honoured() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 10)]).await;
    h.origin.fail_next("/a", Fault::Status(503, Some(1)));
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| e.state == JobState::TransientError).await;
    let failed_at = std::time::Instant::now();
    h.transferred(job).await;
    // The retry waited for Retry-After (1 s), not the 50 ms retry delay.
    assert!(failed_at.elapsed() >= Duration::from_millis(900));
}

#[actix_rt::test]
async fn zero_no_progress_timeout_makes_a_503_fatal() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 10)]).await;
    h.engine
        .set(&alice(), job, Property::NoProgressTimeout(Duration::ZERO))
        .await
        .unwrap();
    h.origin.fail_next("/a", Fault::Status(503, None));
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| e.kind == EventKind::JobError).await;
}

#[actix_rt::test]
async fn a_refused_connection_is_transient() {
    let mut h = Harness::new().await;
    let port = crate::util::dead_port();
    let job = h.job_from(format!("http://127.0.0.1:{port}/a"), "a").await;
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| e.state == JobState::TransientError).await;
    let view = h.engine.job(&alice(), job).await.unwrap();
    assert_eq!(view.error.unwrap().context, ErrorContext::Transport);
}

#[actix_rt::test]
async fn a_416_that_does_not_match_restarts_the_file_once() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 3 * 1024 * 1024)]).await;
    h.origin
        .fail_next("/a", Fault::ResetAfter(2 * 1024 * 1024 + 10));
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| e.state == JobState::TransientError).await;
    // Same validators, shorter entity: the resume range is unsatisfiable.
    h.origin.resize("/a", 1024 * 1024);
    h.transferred(job).await;
    let statuses: Vec<u16> = h
        .origin
        .requests_of("/a")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![200, 416, 200]);
    h.engine.complete(&alice(), job).await.unwrap();
    h.assert_file("a");
}

#[actix_rt::test]
async fn an_encoded_body_is_an_error_not_a_file() {
    let mut h = Harness::new().await;
    let job = h.job(&[("a", 100)]).await;
    h.origin.fail_always("/a", Some(Fault::Encoded));
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| e.kind == EventKind::JobError).await;
    let error = h.engine.job(&alice(), job).await.unwrap().error.unwrap();
    assert_eq!(error.code, "content_encoding");
}

#[actix_rt::test]
async fn a_stalled_body_times_out_and_is_retried() {
    let mut h = Harness::with(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let job = h.job(&[("a", 200_000)]).await;
    h.origin
        .fail_next("/a", Fault::Slow(Duration::from_secs(5)));
    h.engine.resume(&alice(), job).await.unwrap();
    h.event(job, |e| e.state == JobState::TransientError).await;
    let error = h.engine.job(&alice(), job).await.unwrap().error.unwrap();
    assert_eq!(error.code, "body_timeout");
    h.transferred(job).await;
}

#[actix_rt::test]
async fn redirects_are_followed_from_the_remote_name_each_attempt() {
    let mut h = Harness::new().await;
    h.origin.add("/target", 3 * 1024 * 1024);
    h.origin.redirect("/a", "/target");
    let job = h.job_from(h.origin.url("/a"), "a").await;
    h.origin
        .fail_next("/target", Fault::ResetAfter(1024 * 1024));
    h.engine.resume(&alice(), job).await.unwrap();
    h.transferred(job).await;
    // Both attempts went through the redirect.
    assert_eq!(h.origin.requests_of("/a").len(), 2);
    assert_eq!(h.origin.requests_of("/target").len(), 2);
    h.engine.complete(&alice(), job).await.unwrap();
    let got = std::fs::read(h.local("a")).unwrap();
    assert!(got == h.origin.expected("/target"));
}

#[actix_rt::test]
async fn a_connection_to_a_host_requeues_jobs_held_by_connection_errors_to_it() {
    let mut h = Harness::new().await;
    // A job whose server is down, with a retry delay far in the future.
    let port = crate::util::dead_port();
    let down = h
        .job_from(format!("http://127.0.0.1:{port}/x"), "down")
        .await;
    h.engine
        .set(
            &alice(),
            down,
            Property::MinRetryDelay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    h.engine.resume(&alice(), down).await.unwrap();
    h.event(down, |e| e.state == JobState::TransientError).await;
    // Another job reaches the same host (127.0.0.1): the first is queued
    // again at once, not an hour later.
    let up = h.job(&[("a", 10)]).await;
    h.engine.resume(&alice(), up).await.unwrap();
    h.event(down, |e| e.state == JobState::Queued).await;
}

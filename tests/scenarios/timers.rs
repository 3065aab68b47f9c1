//! Retry delay, no-progress timeout, maximum download time, inactivity, and
//! how deadlines survive restarts and wall-clock jumps.

use expect_test::expect;

use crate::check;

#[test]
fn a_transient_error_is_retried_after_the_minimum_retry_delay() {
    check(
        r#"
create nightly
add http://h/a /d/a
set retry_delay 10s
resume
grant
fail f0 transient http_503
show
advance 9s
advance 1s
show
grant
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set retry_delay 10s
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > show
              job "nightly" owner=alice state=transient_error priority=normal type=download
              progress bytes=0/unknown files=0/1
              error remote_file http_503 file=f0 count=1
              retry_delay=10s no_progress=14d max_download=90d parallel=1 notify=none
            > advance 9s
            > advance 1s
              timer at +10s
              persist sync job=queued
              notify job_modified
              state: queued
            > show
              job "nightly" owner=alice state=queued priority=normal type=download
              progress bytes=0/unknown files=0/1
              error none count=1
              retry_delay=10s no_progress=14d max_download=90d parallel=1 notify=none
            > grant
            granted f0
              start f0 #2 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
        "#]],
    );
}

#[test]
fn retry_after_is_honoured_when_later_and_capped_at_an_hour() {
    check(
        r#"
create nightly
add http://h/a /d/a
set retry_delay 10s
resume
grant
fail f0 transient http_503 retry_after=2m
advance 119s
advance 1s
grant
fail f0 transient http_429 retry_after=5h
advance 59m
advance 1m
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set retry_delay 10s
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503 retry_after=2m
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 119s
            > advance 1s
              timer at +2m
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #2 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_429 retry_after=5h
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 59m
            > advance 1m
              timer at +62m
              persist sync job=queued
              notify job_modified
              state: queued
        "#]],
    );
}

#[test]
fn no_progress_timeout_counts_from_the_first_transient_error() {
    // No backoff here (its cap is the minimum delay): retries every 10 m.
    check(
        r#"
config max_retry=10m
create nightly
add http://h/a /d/a
set retry_delay 10m
set no_progress 25m
resume
grant
respond f0 size=100
checkpoint f0 40
fail f0 transient connection_reset
advance 10m
grant
fail f0 transient connection_reset
advance 10m
grant
fail f0 transient connection_reset
advance 10m
show
"#,
        expect![[r#"
            > config max_retry=10m
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set retry_delay 10m
            ok
              persist sync job=suspended
              notify job_modified
            > set no_progress 25m
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > respond f0 size=100
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > checkpoint f0 40
              persist lazy job=transferring files=f0
            > fail f0 transient connection_reset
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 10m
              timer at +10m
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #2 offset=40 size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient connection_reset
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 10m
              timer at +20m
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #3 offset=40 size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient connection_reset
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 10m
              timer at +25m
              persist sync job=error
              notify job_error
              state: error
            > show
              job "nightly" owner=alice state=error priority=normal type=download
              progress bytes=40/100 files=0/1
              error remote_file connection_reset file=f0 count=3
              retry_delay=10m no_progress=25m max_download=90d parallel=1 notify=none
        "#]],
    );
}

#[test]
fn durable_progress_past_the_high_water_mark_resets_the_no_progress_count() {
    // First error at 0 (limit 15m); progress to 50 at 10m resets it; the
    // error at 10m sets the limit to 25m; a restart from zero up to 30 at 20m
    // is no progress: ERROR at 25m, not at 15m and not at 35m.
    check(
        r#"
create nightly
add http://h/a /d/a
set retry_delay 10m
set no_progress 15m
resume
grant
respond f0 size=100
checkpoint f0 40
fail f0 transient connection_reset
advance 10m
grant
respond f0 offset=40 size=100
checkpoint f0 50
fail f0 transient connection_reset
advance 10m
grant
respond f0 offset=0 size=100
checkpoint f0 30
fail f0 transient connection_reset
advance 30m
show
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set retry_delay 10m
            ok
              persist sync job=suspended
              notify job_modified
            > set no_progress 15m
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > respond f0 size=100
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > checkpoint f0 40
              persist lazy job=transferring files=f0
            > fail f0 transient connection_reset
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 10m
              timer at +10m
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #2 offset=40 size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > respond f0 offset=40 size=100
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > checkpoint f0 50
              persist lazy job=transferring files=f0
            > fail f0 transient connection_reset
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 10m
              timer at +20m
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #3 offset=50 size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > respond f0 offset=0 size=100
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > checkpoint f0 30
              persist lazy job=transferring files=f0
            > fail f0 transient connection_reset
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 30m
              timer at +25m
              persist sync job=error
              notify job_error
              state: error
            > show
              job "nightly" owner=alice state=error priority=normal type=download
              progress bytes=30/100 files=0/1
              error remote_file connection_reset file=f0 count=3
              retry_delay=10m no_progress=15m max_download=90d parallel=1 notify=none
        "#]],
    );
}

#[test]
fn zero_no_progress_timeout_makes_every_error_fatal() {
    check(
        r#"
create nightly
add http://h/a /d/a
set no_progress 0s
resume
grant
fail f0 transient http_503
show
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set no_progress 0s
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=error
              notify job_error
              state: error
            > show
              job "nightly" owner=alice state=error priority=normal type=download
              progress bytes=0/unknown files=0/1
              error remote_file http_503 file=f0 count=1
              retry_delay=10m no_progress=0ms max_download=90d parallel=1 notify=none
        "#]],
    );
}

#[test]
fn a_retry_delay_above_the_no_progress_timeout_means_no_retry() {
    check(
        r#"
create nightly
add http://h/a /d/a
set retry_delay 2h
set no_progress 1h
resume
grant
fail f0 transient http_503
advance 3h
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set retry_delay 2h
            ok
              persist sync job=suspended
              notify job_modified
            > set no_progress 1h
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 3h
              timer at +1h
              persist sync job=error
              notify job_error
              state: error
        "#]],
    );
}

#[test]
fn maximum_download_time_counts_only_connecting_and_transferring() {
    check(
        r#"
create nightly
add http://h/a /d/a
set max_download 1h
resume
advance 5h
grant
advance 30m
preempt
advance 5h
grant
respond f0 size=100
advance 29m
advance 1m
show
resume
grant
advance 59m
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set max_download 1h
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > advance 5h
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > advance 30m
            > preempt
              stop f0 #1
              persist lazy job=queued
              notify job_modified
              state: queued
            > advance 5h
            > grant
            granted f0
              start f0 #2 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > respond f0 size=100
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > advance 29m
            > advance 1m
              timer at +11h
              stop f0 #2
              persist sync job=error
              notify job_error
              state: error
            > show
              job "nightly" owner=alice state=error priority=normal type=download
              progress bytes=0/100 files=0/1
              error queue_manager max_download_timeout file=- count=1
              retry_delay=10m no_progress=14d max_download=1h parallel=1 notify=none
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #3 offset=0 size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > advance 59m
        "#]],
    );
}

#[test]
fn an_inactive_job_is_cancelled_then_forgotten() {
    check(
        r#"
config inactivity=2d retention=7d
create nightly
add http://h/a /d/a
advance 1d
set description "still here"
advance 1d
resume
grant
checkpoint f0 5
suspend
advance 2d
deleted f0
show
advance 7d
"#,
        expect![[r#"
            > config inactivity=2d retention=7d
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > advance 1d
            > set description "still here"
            ok
              persist sync job=suspended
              notify job_modified
            > advance 1d
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > checkpoint f0 5
              persist lazy job=connecting files=f0
            > suspend
            ok
              stop f0 #1
              persist sync job=suspended
              notify job_modified
              state: suspended
            > advance 2d
              timer at +4d
              persist sync job=suspended files=f0
              delete temp of f0
            > deleted f0
              persist sync job=cancelled
              notify job_modified
              answer cancel ok reason=Inactivity undeleted=[]
              state: cancelled
            > show
              job "nightly" owner=alice state=cancelled priority=normal type=download
              progress bytes=5/unknown files=0/1
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer cancel ok reason=Inactivity undeleted=[]
            > advance 7d
              timer at +11d
              forget
        "#]],
    );
}

#[test]
fn deadlines_survive_a_restart_as_utc_instants() {
    check(
        r#"
create nightly
add http://h/a /d/a
set retry_delay 10m
resume
grant
fail f0 transient http_503
advance 4m
restart
advance 5m
advance 1m
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set retry_delay 10m
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > advance 4m
            > restart
            > advance 5m
            > advance 1m
              timer at +10m
              persist sync job=queued
              notify job_modified
              state: queued
        "#]],
    );
    // Time the process was down counts: the retry is due at once.
    check(
        r#"
create nightly
add http://h/a /d/a
set retry_delay 10m
resume
grant
fail f0 transient http_503
wall +1h
restart
advance 0s
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set retry_delay 10m
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > wall +1h
            > restart
            > advance 0s
              timer at +0ms
              persist sync job=queued
              notify job_modified
              state: queued
        "#]],
    );
}

#[test]
fn wall_clock_jumps_do_not_move_deadlines_while_running() {
    check(
        r#"
create nightly
add http://h/a /d/a
set retry_delay 10m
resume
grant
fail f0 transient http_503
wall +3h
advance 9m
wall -5h
advance 1m
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set retry_delay 10m
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > wall +3h
            > advance 9m
            > wall -5h
            > advance 1m
              timer at +10m
              persist sync job=queued
              notify job_modified
              state: queued
        "#]],
    );
}

/// "Why is my job waiting", as far as the job knows: no files, suspended,
/// queued for a slot, a retry at a time after an error, an error that waits
/// for the user; nothing while it transfers.
#[test]
fn a_job_that_is_not_transferring_says_why() {
    check(
        "
        config retry_floor=1s
        create why
        why
        add http://h/a /d/a
        why
        set retry_delay 10s
        resume
        why
        grant
        respond f0 size=10
        why
        fail f0 transient http_503
        why
        advance 10s
        why
        grant
        fail f0 fatal http_404
        why
        ",
        expect![[r#"
            > config retry_floor=1s
            > create why
            ok
              persist sync job=suspended
              state: suspended
            > why
              waiting: no_files
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > why
              waiting: suspended_by_user
            > set retry_delay 10s
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > why
              waiting: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > respond f0 size=10
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > why
              waiting: transferring or done
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > why
              waiting: retry_at +10000ms after http_503
            > advance 10s
              timer at +10s
              persist sync job=queued
              notify job_modified
              state: queued
            > why
              waiting: queued
            > grant
            granted f0
              start f0 #2 offset=0 size=10
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 fatal http_404
              persist sync job=error
              notify job_error
              state: error
            > why
              waiting: error http_404
        "#]],
    );
}

/// Repeated transient failures without progress back off: the first waits
/// the minimum retry delay (as BITS), each further one doubles it with up
/// to 25% jitter, up to the cap; progress (a checkpoint) starts the count
/// again; a longer Retry-After wins.
#[test]
fn retries_back_off_exponentially_with_jitter_up_to_a_cap() {
    check(
        "
        config retry_floor=1s max_retry=60s
        create backoff
        add http://h/a /d/a
        set retry_delay 5s
        set no_progress 1d
        resume
        grant
        fail f0 transient http_503
        why
        advance 5s
        grant
        fail f0 transient http_503
        why
        advance 20s
        grant
        fail f0 transient http_503
        why
        advance 30s
        grant
        fail f0 transient http_503
        why
        advance 60s
        grant
        fail f0 transient http_503
        why
        advance 60s
        grant
        respond f0 size=100
        checkpoint f0 10
        fail f0 transient connection_reset
        why
        advance 5s
        grant
        fail f0 transient http_503 retry_after=50s
        why
        ",
        expect![[r#"
            > config retry_floor=1s max_retry=60s
            > create backoff
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set retry_delay 5s
            ok
              persist sync job=suspended
              notify job_modified
            > set no_progress 1d
            ok
              persist sync job=suspended
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #1 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > why
              waiting: retry_at +5000ms after http_503
            > advance 5s
              timer at +5s
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #2 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > why
              waiting: retry_at +15930ms after http_503
            > advance 20s
              timer at +15930ms
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #3 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > why
              waiting: retry_at +49110ms after http_503
            > advance 30s
              timer at +49110ms
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #4 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > why
              waiting: retry_at +100080ms after http_503
            > advance 60s
              timer at +100080ms
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #5 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > why
              waiting: retry_at +175000ms after http_503
            > advance 60s
              timer at +175s
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #6 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > respond f0 size=100
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > checkpoint f0 10
              persist lazy job=transferring files=f0
            > fail f0 transient connection_reset
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > why
              waiting: retry_at +180000ms after connection_reset
            > advance 5s
              timer at +3m
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #7 offset=10 size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > fail f0 transient http_503 retry_after=50s
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > why
              waiting: retry_at +230000ms after http_503
        "#]],
    );
}

#[test]
fn an_inactivity_deadline_passed_while_stopped_cancels_the_job_at_start() {
    check(
        r#"
config inactivity=2d
create nightly
add http://h/a /d/a
wall +3d
restart
advance 1s
"#,
        expect![[r#"
            > config inactivity=2d
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > wall +3d
            > restart
            > advance 1s
              timer at +0ms
              persist sync job=suspended files=f0
              persist sync job=cancelled
              notify job_modified
              answer cancel ok reason=Inactivity undeleted=[]
              state: cancelled
        "#]],
    );
}

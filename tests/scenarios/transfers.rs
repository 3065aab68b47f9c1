//! Transfers: parallel files, errors, resume with validators, stale events,
//! restarts mid-transfer.

use expect_test::expect;

use crate::check;

#[test]
fn parallel_files_limit_the_transfers_of_a_job() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b http://h/c /d/c
resume
grant
grant
set parallel 2
grant
grant
transferred f1 5
grant
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a http://h/b /d/b http://h/c /d/c
            added f0,f1,f2
              persist sync job=suspended files=f0,f1,f2
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
            > grant
            nothing to start
            > set parallel 2
            ok
              persist sync job=connecting
              notify job_modified
            > grant
            granted f1
              start f1 #2 offset=0
              persist lazy job=connecting files=f1
            > grant
            nothing to start
            > transferred f1 5
              persist lazy job=connecting files=f1
              notify file_transferred f1
            > grant
            granted f2
              start f2 #3 offset=0
              persist lazy job=connecting files=f2
        "#]],
    );
}

#[test]
fn a_fatal_error_in_one_file_stops_the_others() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
set parallel 2
resume
grant
grant
respond f1 size=10
fail f0 fatal http_404
show
grant
resume
grant
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a http://h/b /d/b
            added f0,f1
              persist sync job=suspended files=f0,f1
              notify job_modified
            > set parallel 2
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
            > grant
            granted f1
              start f1 #2 offset=0
              persist lazy job=connecting files=f1
            > respond f1 size=10
              persist lazy job=transferring files=f1
              notify job_modified
              state: transferring
            > fail f0 fatal http_404
              stop f1 #2
              persist sync job=error
              notify job_error
              state: error
            > show
              job "nightly" owner=alice state=error priority=normal type=download
              progress bytes=0/unknown files=0/2
              error remote_file http_404 file=f0 count=1
              retry_delay=10m no_progress=14d max_download=90d parallel=2 notify=none
            > grant
            nothing to start
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #3 offset=0
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
        "#]],
    );
}

#[test]
fn resume_sends_the_validator_and_a_changed_entity_restarts_only_that_file() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
respond f0 size=10 etag="v1"
transferred f0 10
grant
respond f1 size=100 etag="v1"
checkpoint f1 60
suspend
resume
grant
respond f1 offset=60 size=100 etag="v2"
respond f1 offset=0 size=120 etag="v2"
checkpoint f1 80
files
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a http://h/b /d/b
            added f0,f1
              persist sync job=suspended files=f0,f1
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
            > respond f0 size=10 etag="v1"
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > transferred f0 10
              persist lazy job=queued files=f0
              notify file_transferred f0
              notify job_modified
              state: queued
            > grant
            granted f1
              start f1 #2 offset=0
              persist lazy job=connecting files=f1
              notify job_modified
              state: connecting
            > respond f1 size=100 etag="v1"
              persist lazy job=transferring files=f1
              notify job_modified
              state: transferring
            > checkpoint f1 60
              persist lazy job=transferring files=f1
            > suspend
            ok
              stop f1 #2
              persist sync job=suspended
              notify job_modified
              state: suspended
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f1
              start f1 #3 offset=60 if-range=(etag v1) size=100
              persist lazy job=connecting files=f1
              notify job_modified
              state: connecting
            > respond f1 offset=60 size=100 etag="v2"
              stop f1 #3
              start f1 #4 offset=0
              persist lazy job=connecting files=f1
            > respond f1 offset=0 size=120 etag="v2"
              persist lazy job=transferring files=f1
              notify job_modified
              state: transferring
            > checkpoint f1 80
              persist lazy job=transferring files=f1
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=10 transferred=10 durable=10 [transferred]
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=120 transferred=80 durable=80
        "#]],
    );
}

#[test]
fn a_full_response_to_a_range_request_restarts_the_file() {
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
respond f0 size=100 lm="Mon, 02 Nov 2026 10:00:00 GMT"
checkpoint f0 50
preempt
grant
respond f0 offset=0 size=100 lm="Mon, 02 Nov 2026 10:00:00 GMT"
files
respond f0 offset=7 size=100
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
            > respond f0 size=100 lm="Mon, 02 Nov 2026 10:00:00 GMT"
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > checkpoint f0 50
              persist lazy job=transferring files=f0
            > preempt
              stop f0 #1
              persist lazy job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #2 offset=50 if-range=(last-modified Mon, 02 Nov 2026 10:00:00 GMT) size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > respond f0 offset=0 size=100 lm="Mon, 02 Nov 2026 10:00:00 GMT"
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=100 transferred=0 durable=0
            > respond f0 offset=7 size=100
              stop f0 #2
              persist sync job=transient_error
              notify job_modified
              state: transient_error
        "#]],
    );
}

#[test]
fn a_stopped_attempt_may_still_finish_but_older_attempts_are_ignored() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
suspend
# the stopped attempt of f0 finished as it was stopped: its bytes count
transferred f0 10
resume
grant
suspend
resume
grant
# f1's first attempt is older than its current one: ignored
stale f1 transferred 10
transferred f9 10
show
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a http://h/b /d/b
            added f0,f1
              persist sync job=suspended files=f0,f1
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
            > suspend
            ok
              stop f0 #1
              persist sync job=suspended
              notify job_modified
              state: suspended
            > transferred f0 10
              persist lazy job=suspended files=f0
              notify file_transferred f0
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f1
              start f1 #2 offset=0
              persist lazy job=connecting files=f1
              notify job_modified
              state: connecting
            > suspend
            ok
              stop f1 #2
              persist sync job=suspended
              notify job_modified
              state: suspended
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f1
              start f1 #3 offset=0
              persist lazy job=connecting files=f1
              notify job_modified
              state: connecting
            > stale f1 transferred 10
            stale, ignored
            > transferred f9 10
            error unknown_file: no file f9 in this job
            > show
              job "nightly" owner=alice state=connecting priority=normal type=download
              progress bytes=10/unknown files=1/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
        "#]],
    );
}

#[test]
fn a_connection_to_a_host_requeues_jobs_waiting_on_it() {
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
fail f0 transient connection_refused host=h
host_ok other
host_ok h
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
            > fail f0 transient connection_refused host=h
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > host_ok other
            > host_ok h
              persist sync job=queued
              notify job_modified
              state: queued
        "#]],
    );
}

#[test]
fn a_restart_mid_transfer_resumes_from_the_last_checkpoint() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
respond f0 size=100 etag="e"
received f0 90
checkpoint f0 64
show
restart
show
grant
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a http://h/b /d/b
            added f0,f1
              persist sync job=suspended files=f0,f1
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
            > respond f0 size=100 etag="e"
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > received f0 90
            > checkpoint f0 64
              persist lazy job=transferring files=f0
            > show
              job "nightly" owner=alice state=transferring priority=normal type=download
              progress bytes=90/unknown files=0/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > restart
              persist lazy job=queued
              state: queued
            > show
              job "nightly" owner=alice state=queued priority=normal type=download
              progress bytes=64/unknown files=0/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > grant
            granted f0
              start f0 #2 offset=64 if-range=(etag e) size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
        "#]],
    );
}

#[test]
fn a_stopped_attempt_may_still_report_its_last_checkpoint() {
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
respond f0 size=100
checkpoint f0 10
suspend
checkpoint f0 30
received f0 40
resume
grant
stale f0 checkpoint 50
files
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
            > checkpoint f0 10
              persist lazy job=transferring files=f0
            > suspend
            ok
              stop f0 #1
              persist sync job=suspended
              notify job_modified
              state: suspended
            > checkpoint f0 30
              persist lazy job=suspended files=f0
            > received f0 40
            stale, ignored
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #2 offset=30 size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
            > stale f0 checkpoint 50
            stale, ignored
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=100 transferred=30 durable=30
        "#]],
    );
}

/// The scheduler may take a job's slot back: transfers stop with their
/// checkpoints and the job queues again. Not when a running file has bytes
/// but no validator: it could not resume, and would start over each time.
#[test]
fn a_preempted_job_queues_again_unless_a_file_would_restart_from_zero() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
respond f0 size=100
checkpoint f0 10
preempt
show
respond f0 size=100 etag="e"
checkpoint f0 40
preempt
show
grant
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a http://h/b /d/b
            added f0,f1
              persist sync job=suspended files=f0,f1
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
            > checkpoint f0 10
              persist lazy job=transferring files=f0
            > preempt
            preempt refused
            > show
              job "nightly" owner=alice state=transferring priority=normal type=download
              progress bytes=10/unknown files=0/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > respond f0 size=100 etag="e"
              persist lazy files=f0
            > checkpoint f0 40
              persist lazy job=transferring files=f0
            > preempt
              stop f0 #1
              persist lazy job=queued
              notify job_modified
              state: queued
            > show
              job "nightly" owner=alice state=queued priority=normal type=download
              progress bytes=40/unknown files=0/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > grant
            granted f0
              start f0 #2 offset=40 if-range=(etag e) size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
        "#]],
    );
}

#[test]
fn a_drained_file_frees_its_slot_while_its_bytes_are_synced() {
    check(
        r#"
config max_syncing=2
create small-files
add http://h/a /d/a http://h/b /d/b http://h/c /d/c http://h/d /d/d
resume
grant
respond f0 size=5
drained f0 5
files
grant
respond f1 size=5
drained f1 5
grant
transferred f0 5
grant
respond f2 size=5
drained f2 5
fail f1 transient write_failed
files
transferred f2 5
advance 10m
grant
respond f1 size=5
drained f1 5
suspend
transferred f1 5
resume
grant
respond f3 size=5
drained f3 5
complete
transferred f3 5
show
"#,
        expect![[r#"
            > config max_syncing=2
            > create small-files
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a http://h/b /d/b http://h/c /d/c http://h/d /d/d
            added f0,f1,f2,f3
              persist sync job=suspended files=f0,f1,f2,f3
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
            > respond f0 size=5
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > drained f0 5
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=5 transferred=5 durable=0
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=unknown transferred=0 durable=0
              f2 http://h/c -> /d/c temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-2.part total=unknown transferred=0 durable=0
              f3 http://h/d -> /d/d temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-3.part total=unknown transferred=0 durable=0
            > grant
            granted f1
              start f1 #2 offset=0
              persist lazy job=transferring files=f1
            > respond f1 size=5
              persist lazy files=f1
            > drained f1 5
            > grant
            nothing to start
            > transferred f0 5
              persist lazy job=transferring files=f0
              notify file_transferred f0
            > grant
            granted f2
              start f2 #3 offset=0
              persist lazy job=transferring files=f2
            > respond f2 size=5
              persist lazy files=f2
            > drained f2 5
            > fail f1 transient write_failed
              persist sync job=transient_error
              notify job_modified
              state: transient_error
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=5 transferred=5 durable=5 [transferred]
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=5 transferred=0 durable=0
              f2 http://h/c -> /d/c temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-2.part total=5 transferred=5 durable=0
              f3 http://h/d -> /d/d temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-3.part total=unknown transferred=0 durable=0
            > transferred f2 5
              persist lazy job=transient_error files=f2
              notify file_transferred f2
            > advance 10m
              timer at +10m
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f1
              start f1 #4 offset=0 size=5
              persist lazy job=connecting files=f1
              notify job_modified
              state: connecting
            > respond f1 size=5
              persist lazy job=transferring files=f1
              notify job_modified
              state: transferring
            > drained f1 5
            > suspend
            ok
              persist sync job=suspended
              notify job_modified
              state: suspended
            > transferred f1 5
              persist lazy job=suspended files=f1
              notify file_transferred f1
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f3
              start f3 #5 offset=0
              persist lazy job=connecting files=f3
              notify job_modified
              state: connecting
            > respond f3 size=5
              persist lazy job=transferring files=f3
              notify job_modified
              state: transferring
            > drained f3 5
            > complete
            pending
              persist sync job=queued files=f0,f1,f2,f3
              delete temp of f3
              publish f0 -> /d/a
              publish f1 -> /d/b
              publish f2 -> /d/c
              state: queued
            > transferred f3 5
            stale, ignored
            > show
              job "small-files" owner=alice state=queued priority=normal type=download
              progress bytes=15/20 files=3/4
              error none count=1
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
        "#]],
    );
}

#[test]
fn a_file_whose_server_takes_no_ranges_is_never_preempted() {
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
respond f0 size=100 etag="e" ranges=no
received f0 10
preempt
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
            > respond f0 size=100 etag="e" ranges=no
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > received f0 10
            > preempt
            preempt refused
            > show
              job "nightly" owner=alice state=transferring priority=normal type=download
              progress bytes=10/100 files=0/1
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
        "#]],
    );
}

//! Complete and Cancel: which files are saved, what is answered, rename
//! failures, and crashes at every durable step.

use expect_test::expect;

use crate::check;

#[test]
fn complete_mid_transfer_saves_only_files_transferred_before_it() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b http://h/c /d/c
set parallel 2
resume
grant
grant
respond f0 size=10
transferred f0 10
respond f1 size=100
checkpoint f1 50
complete
stale f1 transferred 100
deleted f1
published f0
show
files
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
            > respond f0 size=10
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > transferred f0 10
              persist lazy job=connecting files=f0
              notify file_transferred f0
              notify job_modified
              state: connecting
            > respond f1 size=100
              persist lazy job=transferring files=f1
              notify job_modified
              state: transferring
            > checkpoint f1 50
              persist lazy job=transferring files=f1
            > complete
            pending
              stop f1 #2
              persist sync job=queued files=f0,f1,f2
              delete temp of f1
              publish f0 -> /d/a
              state: queued
            > stale f1 transferred 100
            stale, ignored
            > deleted f1
            > published f0
              persist sync job=acknowledged files=f0
              notify job_modified
              answer partial_complete saved=[f0] dropped=[f1,f2] undeleted=[]
              state: acknowledged
            > show
              job "nightly" owner=alice state=acknowledged priority=normal type=download
              progress bytes=60/unknown files=1/3
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=2 notify=none
              last answer partial_complete saved=[f0] dropped=[f1,f2] undeleted=[]
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=10 transferred=10 durable=10 [transferred] [completed]
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=100 transferred=50 durable=50
              f2 http://h/c -> /d/c temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-2.part total=unknown transferred=0 durable=0
        "#]],
    );
}

#[test]
fn a_transfer_finishing_after_complete_does_not_count() {
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
respond f0 size=10
complete
transferred f0 10
deleted f0
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
            > respond f0 size=10
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > complete
            pending
              stop f0 #1
              persist sync job=queued files=f0
              delete temp of f0
              state: queued
            > transferred f0 10
            stale, ignored
            > deleted f0
              persist sync job=acknowledged
              notify job_modified
              answer partial_complete saved=[] dropped=[f0] undeleted=[]
              state: acknowledged
        "#]],
    );
}

#[test]
fn complete_of_a_job_without_files_is_complete() {
    check(
        r#"
create nightly
complete
show
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > complete
            pending
              persist sync job=suspended
              persist sync job=acknowledged
              notify job_modified
              answer complete saved=[] dropped=[] undeleted=[]
              state: acknowledged
            > show
              job "nightly" owner=alice state=acknowledged priority=normal type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer complete saved=[] dropped=[] undeleted=[]
        "#]],
    );
}

#[test]
fn complete_in_error_keeps_finished_files_cancel_deletes_them() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
transferred f0 10
grant
fail f1 fatal http_404
show
complete
deleted f1
published f0
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
            > fail f1 fatal http_404
              persist sync job=error
              notify job_error
              state: error
            > show
              job "nightly" owner=alice state=error priority=normal type=download
              progress bytes=10/unknown files=1/2
              error remote_file http_404 file=f1 count=1
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > complete
            pending
              persist sync job=error files=f0,f1
              delete temp of f1
              publish f0 -> /d/a
            > deleted f1
            > published f0
              persist sync job=acknowledged files=f0
              notify job_modified
              answer partial_complete saved=[f0] dropped=[f1] undeleted=[]
              state: acknowledged
        "#]],
    );
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
transferred f0 10
grant
fail f1 fatal http_404
cancel
deleted f0
deleted f1
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
            > fail f1 fatal http_404
              persist sync job=error
              notify job_error
              state: error
            > cancel
            pending
              persist sync job=error files=f0,f1
              delete temp of f0
              delete temp of f1
            > deleted f0
            > deleted f1
              persist sync job=cancelled
              notify job_modified
              answer cancel ok reason=Command undeleted=[]
              state: cancelled
            > show
              job "nightly" owner=alice state=cancelled priority=normal type=download
              progress bytes=10/unknown files=1/2
              error none count=1
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer cancel ok reason=Command undeleted=[]
        "#]],
    );
}

#[test]
fn temp_files_that_cannot_be_deleted_are_named_in_the_answer() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
transferred f0 10
grant
complete
delete_failed f1 "Device or resource busy (os error 16)"
published f0
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
            > complete
            pending
              stop f1 #2
              persist sync job=queued files=f0,f1
              delete temp of f1
              publish f0 -> /d/a
              state: queued
            > delete_failed f1 "Device or resource busy (os error 16)"
              persist lazy job=queued
            > published f0
              persist sync job=acknowledged files=f0
              notify job_modified
              answer partial_complete saved=[f0] dropped=[f1] undeleted=[f1(Device or resource busy (os error 16))]
              state: acknowledged
        "#]],
    );
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
transferred f0 10
complete
published_temp_left f0 "Permission denied (os error 13)"
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
            > transferred f0 10
              persist sync job=transferred files=f0
              notify file_transferred f0
              notify job_transferred
              state: transferred
            > complete
            pending
              persist sync job=transferred files=f0
              publish f0 -> /d/a
            > published_temp_left f0 "Permission denied (os error 13)"
              persist sync job=acknowledged files=f0
              notify job_modified
              answer unable_to_delete_files saved=[f0] dropped=[] undeleted=[f0(Permission denied (os error 13))]
              state: acknowledged
        "#]],
    );
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
cancel
delete_failed f0 "Permission denied (os error 13)"
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
            > cancel
            pending
              stop f0 #1
              persist sync job=queued files=f0
              delete temp of f0
              state: queued
            > delete_failed f0 "Permission denied (os error 13)"
              persist sync job=cancelled
              notify job_modified
              answer cancel unable_to_delete_files reason=Command undeleted=[f0(Permission denied (os error 13))]
              state: cancelled
            > show
              job "nightly" owner=alice state=cancelled priority=normal type=download
              progress bytes=0/unknown files=0/1
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer cancel unable_to_delete_files reason=Command undeleted=[f0(Permission denied (os error 13))]
        "#]],
    );
}

#[test]
fn a_rename_failure_keeps_the_job_transferred_until_a_later_complete() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b http://h/c /d/c
resume
grant
transferred f0 10
grant
transferred f1 20
grant
checkpoint f2 5
complete
deleted f2
published f0
publish_failed f1 "Permission denied (os error 13)"
show
files
add http://h/d /d/d
resume
grant
suspend
resume
restart
show
complete
published f1
show
files
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
            > transferred f1 20
              persist lazy job=queued files=f1
              notify file_transferred f1
              notify job_modified
              state: queued
            > grant
            granted f2
              start f2 #3 offset=0
              persist lazy job=connecting files=f2
              notify job_modified
              state: connecting
            > checkpoint f2 5
              persist lazy job=connecting files=f2
            > complete
            pending
              stop f2 #3
              persist sync job=queued files=f0,f1,f2
              delete temp of f2
              publish f0 -> /d/a
              publish f1 -> /d/b
              state: queued
            > deleted f2
            > published f0
              persist lazy files=f0
            > publish_failed f1 "Permission denied (os error 13)"
              persist sync job=transferred
              answer error rename_failed: could not publish 1 file(s): f1 /d/b: Permission denied (os error 13)
              state: transferred
            > show
              job "nightly" owner=alice state=transferred priority=normal type=download
              progress bytes=35/unknown files=2/3
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              commit stalled
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=10 transferred=10 durable=10 [transferred] [completed]
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=20 transferred=20 durable=20 [transferred]
              f2 http://h/c -> /d/c temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-2.part total=unknown transferred=5 durable=5
            > add http://h/d /d/d
            error invalid_state: invalid in state transferred
            > resume
            ok
              notify job_modified
            > grant
            nothing to start
            > suspend
            ok
              persist sync job=suspended
              notify job_modified
              state: suspended
            > resume
            ok
              persist sync job=transferred
              notify job_modified
              state: transferred
            > restart
            > show
              job "nightly" owner=alice state=transferred priority=normal type=download
              progress bytes=35/unknown files=2/3
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              commit stalled
            > complete
            pending
              persist sync job=transferred
              publish f1 -> /d/b
            > published f1
              persist sync job=acknowledged files=f1
              notify job_modified
              answer partial_complete saved=[f0,f1] dropped=[f2] undeleted=[]
              state: acknowledged
            > show
              job "nightly" owner=alice state=acknowledged priority=normal type=download
              progress bytes=35/unknown files=2/3
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer partial_complete saved=[f0,f1] dropped=[f2] undeleted=[]
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=10 transferred=10 durable=10 [transferred] [completed]
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=20 transferred=20 durable=20 [transferred] [completed]
              f2 http://h/c -> /d/c temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-2.part total=unknown transferred=5 durable=5
        "#]],
    );
}

#[test]
fn cancel_after_a_rename_failure_keeps_what_was_published() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
transferred f0 10
grant
transferred f1 20
complete
published f0
publish_failed f1 "No such file or directory (os error 2)"
cancel
deleted f1
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
            > transferred f1 20
              persist sync job=transferred files=f1
              notify file_transferred f1
              notify job_transferred
              state: transferred
            > complete
            pending
              persist sync job=transferred files=f0,f1
              publish f0 -> /d/a
              publish f1 -> /d/b
            > published f0
              persist lazy files=f0
            > publish_failed f1 "No such file or directory (os error 2)"
              persist sync job=transferred
              answer error rename_failed: could not publish 1 file(s): f1 /d/b: No such file or directory (os error 2)
            > cancel
            pending
              persist sync job=transferred files=f1
              delete temp of f1
            > deleted f1
              persist sync job=cancelled
              notify job_modified
              answer cancel ok reason=Command undeleted=[]
              state: cancelled
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=10 transferred=10 durable=10 [transferred] [completed]
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=20 transferred=20 durable=20 [transferred]
        "#]],
    );
}

#[test]
fn commands_wait_while_a_commit_runs() {
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
transferred f0 10
complete
complete
cancel
set priority high
show
published f0
complete
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
            > transferred f0 10
              persist sync job=transferred files=f0
              notify file_transferred f0
              notify job_transferred
              state: transferred
            > complete
            pending
              persist sync job=transferred files=f0
              publish f0 -> /d/a
            > complete
            error busy: a complete or cancel of this job is in progress
            > cancel
            error busy: a complete or cancel of this job is in progress
            > set priority high
            error busy: a complete or cancel of this job is in progress
            > show
              job "nightly" owner=alice state=transferred priority=normal type=download
              progress bytes=10/10 files=1/1
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > published f0
              persist sync job=acknowledged files=f0
              notify job_modified
              answer complete saved=[f0] dropped=[] undeleted=[]
              state: acknowledged
            > complete
            error invalid_state: invalid in state acknowledged
        "#]],
    );
}

#[test]
fn a_crash_before_the_intent_record_leaves_the_job_unchanged() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
transferred f0 10
grant
checkpoint f1 7
lose complete
restart
show
files
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
            > checkpoint f1 7
              persist lazy job=connecting files=f1
            > lose complete
            pending
              (4 effects lost)
              state: queued
            > restart
              persist lazy job=queued
            > show
              job "nightly" owner=alice state=queued priority=normal type=download
              progress bytes=17/unknown files=1/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=10 transferred=10 durable=10 [transferred]
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=unknown transferred=7 durable=7
            > grant
            granted f1
              start f1 #3 offset=7
              persist lazy job=connecting files=f1
              notify job_modified
              state: connecting
        "#]],
    );
}

#[test]
fn a_crash_after_the_intent_record_rolls_the_commit_forward() {
    // Crash with no step done.
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
transferred f0 10
grant
checkpoint f1 7
complete
restart
deleted f1
published f0
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
            > checkpoint f1 7
              persist lazy job=connecting files=f1
            > complete
            pending
              stop f1 #2
              persist sync job=queued files=f0,f1
              delete temp of f1
              publish f0 -> /d/a
              state: queued
            > restart
              delete temp of f1
              publish f0 -> /d/a
            > deleted f1
            > published f0
              persist sync job=acknowledged files=f0
              notify job_modified
              answer partial_complete saved=[f0] dropped=[f1] undeleted=[]
              state: acknowledged
            > show
              job "nightly" owner=alice state=acknowledged priority=normal type=download
              progress bytes=17/unknown files=1/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer partial_complete saved=[f0] dropped=[f1] undeleted=[]
        "#]],
    );
    // Crash between two renames, before the first one's lazy record was
    // written: it is published again (the shell's publish is idempotent).
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
transferred f0 10
grant
transferred f1 10
complete
lose published f0
restart
published f0
published f1
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
            > transferred f1 10
              persist sync job=transferred files=f1
              notify file_transferred f1
              notify job_transferred
              state: transferred
            > complete
            pending
              persist sync job=transferred files=f0,f1
              publish f0 -> /d/a
              publish f1 -> /d/b
            > lose published f0
              (1 effects lost)
            > restart
              publish f0 -> /d/a
              publish f1 -> /d/b
            > published f0
              persist lazy files=f0
            > published f1
              persist sync job=acknowledged files=f1
              notify job_modified
              answer complete saved=[f0,f1] dropped=[] undeleted=[]
              state: acknowledged
            > show
              job "nightly" owner=alice state=acknowledged priority=normal type=download
              progress bytes=20/20 files=2/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer complete saved=[f0,f1] dropped=[] undeleted=[]
        "#]],
    );
    // Crash after a cancel's intent.
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
checkpoint f0 3
cancel
restart
deleted f0
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
            > checkpoint f0 3
              persist lazy job=connecting files=f0
            > cancel
            pending
              stop f0 #1
              persist sync job=queued files=f0
              delete temp of f0
              state: queued
            > restart
              delete temp of f0
            > deleted f0
              persist sync job=cancelled
              notify job_modified
              answer cancel ok reason=Command undeleted=[]
              state: cancelled
            > show
              job "nightly" owner=alice state=cancelled priority=normal type=download
              progress bytes=3/unknown files=0/1
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer cancel ok reason=Command undeleted=[]
        "#]],
    );
}

#[test]
fn final_jobs_are_forgotten_after_the_retention_period() {
    check(
        r#"
config retention=7d
create nightly
complete
advance 6d
show
restart
advance 1d
"#,
        expect![[r#"
            > config retention=7d
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > complete
            pending
              persist sync job=suspended
              persist sync job=acknowledged
              notify job_modified
              answer complete saved=[] dropped=[] undeleted=[]
              state: acknowledged
            > advance 6d
            > show
              job "nightly" owner=alice state=acknowledged priority=normal type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer complete saved=[] dropped=[] undeleted=[]
            > restart
            > advance 1d
              timer at +7d
              forget
        "#]],
    );
}

#[test]
fn a_stopped_attempt_reports_nothing_into_a_commit_or_a_final_job() {
    check(
        r#"
config retention=1d
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
respond f0 size=100
checkpoint f0 10
cancel
checkpoint f0 60
deleted f0
checkpoint f0 70
advance 1d
checkpoint f0 80
"#,
        expect![[r#"
            > config retention=1d
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
            > cancel
            pending
              stop f0 #1
              persist sync job=queued files=f0,f1
              delete temp of f0
              state: queued
            > checkpoint f0 60
            stale, ignored
            > deleted f0
              persist sync job=cancelled
              notify job_modified
              answer cancel ok reason=Command undeleted=[]
              state: cancelled
            > checkpoint f0 70
            stale, ignored
            > advance 1d
              timer at +1d
              forget
            > checkpoint f0 80
            stale, ignored
        "#]],
    );
}

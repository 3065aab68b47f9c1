//! States, transitions and answers of the job lifecycle; owner checks; input
//! validation.

use expect_test::expect;

use crate::check;

#[test]
fn new_job_is_suspended_with_zero_progress() {
    check(
        r#"
create nightly
show
files
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > show
              job "nightly" owner=alice state=suspended priority=normal type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > files
        "#]],
    );
}

#[test]
fn resume_without_files_is_empty_job_and_stays_suspended() {
    check(
        r#"
create nightly
resume
show
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > resume
            error empty_job: the job has no files
            > show
              job "nightly" owner=alice state=suspended priority=normal type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
        "#]],
    );
}

#[test]
fn files_transfer_in_order_then_complete_publishes_them() {
    check(
        r#"
create nightly
add http://h/a /d/a http://h/b /d/b
resume
grant
respond f0 size=100 etag="A"
received f0 60
checkpoint f0 60
show
transferred f0 100
grant
respond f1 size=50
transferred f1 50
show
complete
published f0
published f1
show
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
            > respond f0 size=100 etag="A"
              persist lazy job=transferring files=f0
              notify job_modified
              state: transferring
            > received f0 60
            > checkpoint f0 60
              persist lazy job=transferring files=f0
            > show
              job "nightly" owner=alice state=transferring priority=normal type=download
              progress bytes=60/unknown files=0/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > transferred f0 100
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
            > respond f1 size=50
              persist lazy job=transferring files=f1
              notify job_modified
              state: transferring
            > transferred f1 50
              persist sync job=transferred files=f1
              notify file_transferred f1
              notify job_transferred
              state: transferred
            > show
              job "nightly" owner=alice state=transferred priority=normal type=download
              progress bytes=150/150 files=2/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
            > complete
            pending
              persist sync job=transferred files=f0,f1
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
              progress bytes=150/150 files=2/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer complete saved=[f0,f1] dropped=[] undeleted=[]
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=100 transferred=100 durable=100 [transferred] [completed]
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=50 transferred=50 durable=50 [transferred] [completed]
        "#]],
    );
}

#[test]
fn suspend_is_idempotent_and_stops_transfers() {
    check(
        r#"
create nightly
add http://h/a /d/a
resume
resume
grant
respond f0 size=100
checkpoint f0 40
suspend
suspend
resume
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
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > resume
            ok
              persist sync job=queued
              notify job_modified
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
            > suspend
            ok
              stop f0 #1
              persist sync job=suspended
              notify job_modified
              state: suspended
            > suspend
            ok
              notify job_modified
            > resume
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > grant
            granted f0
              start f0 #2 offset=40 size=100
              persist lazy job=connecting files=f0
              notify job_modified
              state: connecting
        "#]],
    );
}

#[test]
fn a_transferred_job_takes_new_files_and_resume_transfers_them() {
    check(
        r#"
create nightly
add http://h/a /d/a
resume
grant
transferred f0 10
add http://h/b /d/b
show
resume
grant
transferred f1 20
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
            > add http://h/b /d/b
            added f1
              persist sync job=transferred files=f1
              notify job_modified
            > show
              job "nightly" owner=alice state=transferred priority=normal type=download
              progress bytes=10/unknown files=1/2
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
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
            > transferred f1 20
              persist sync job=transferred files=f1
              notify file_transferred f1
              notify job_transferred
              state: transferred
        "#]],
    );
}

#[test]
fn final_states_refuse_every_command_but_stay_readable() {
    check(
        r#"
create nightly
add http://h/a /d/a
cancel
resume
suspend
cancel
complete
add http://h/b /d/b
set priority high
take_ownership as !root
grant
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
            > cancel
            pending
              persist sync job=suspended files=f0
              persist sync job=cancelled
              notify job_modified
              answer cancel ok reason=Command undeleted=[]
              state: cancelled
            > resume
            error invalid_state: invalid in state cancelled
            > suspend
            error invalid_state: invalid in state cancelled
            > cancel
            error invalid_state: invalid in state cancelled
            > complete
            error invalid_state: invalid in state cancelled
            > add http://h/b /d/b
            error invalid_state: invalid in state cancelled
            > set priority high
            error invalid_state: invalid in state cancelled
            > take_ownership as !root
            error invalid_state: invalid in state cancelled
            > grant
            nothing to start
            > show
              job "nightly" owner=alice state=cancelled priority=normal type=download
              progress bytes=0/unknown files=0/1
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              last answer cancel ok reason=Command undeleted=[]
        "#]],
    );
}

#[test]
fn owner_or_admin_may_act_others_see_nothing() {
    check(
        r#"
create nightly as alice
resume as bob
add http://h/a /d/a as bob
complete as bob
add http://h/a /d/a as !root
set notify /usr/bin/logger done as alice
take_ownership as alice
take_ownership as !root
resume as alice
resume as root
show
"#,
        expect![[r#"
            > create nightly as alice
            ok
              persist sync job=suspended
              state: suspended
            > resume as bob
            error not_found: job not found
            > add http://h/a /d/a as bob
            error not_found: job not found
            > complete as bob
            error not_found: job not found
            > add http://h/a /d/a as !root
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > set notify /usr/bin/logger done as alice
            ok
              persist sync job=suspended
              notify job_modified
            > take_ownership as alice
            error access_denied: access denied
            > take_ownership as !root
            ok
              persist sync job=suspended
              notify job_modified
            > resume as alice
            error not_found: job not found
            > resume as root
            ok
              persist sync job=queued
              notify job_modified
              state: queued
            > show
              job "nightly" owner=root state=queued priority=normal type=download
              progress bytes=0/unknown files=0/1
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
        "#]],
    );
}

#[test]
fn bad_input_gets_a_typed_error_and_changes_nothing() {
    check(
        r#"
create x*257
create nightly
set name x*257
set name x*256
set description d*1025
add http://h/a relative/path
add ftp://h/a /d/a
add http://h:99999/a /d/a
add http:// /d/a
add http://h/x*2200 /d/a
add http://h/a /d/
add http://h/a /d/../a
add http://h/a /d/a http://h/b /d/a
add
set parallel 0
set parallel 65
set notify relative/prog
set retry_delay 1s
show
files
"#,
        expect![[r#"
            > create x*257
            error string_too_long: name is longer than 256 characters
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > set name x*257
            error string_too_long: name is longer than 256 characters
            > set name x*256
            ok
              persist sync job=suspended
              notify job_modified
            > set description d*1025
            error string_too_long: description is longer than 1024 characters
            > add http://h/a relative/path
            error invalid_local_name: invalid local name "relative/path": must be an absolute path
            > add ftp://h/a /d/a
            error invalid_remote_name: invalid remote name "ftp://h/a": the scheme must be http or https
            > add http://h:99999/a /d/a
            error invalid_remote_name: invalid remote name "http://h:99999/a": invalid port number
            > add http:// /d/a
            error invalid_remote_name: invalid remote name "http://": empty host
            > add http://h/x*2200 /d/a
            error string_too_long: remote name is longer than 2200 characters
            > add http://h/a /d/
            error invalid_local_name: invalid local name "/d/": names a directory, not a file
            > add http://h/a /d/../a
            error invalid_local_name: invalid local name "/d/../a": must be normalized (no empty, '.' or '..' parts)
            > add http://h/a /d/a http://h/b /d/a
            error duplicate_local_name: local name "/d/a" is already used by a file of this job
            > add
            error invalid_argument: invalid argument: no files given
            > set parallel 0
            error invalid_argument: invalid argument: parallel files must be between 1 and 64, not 0
            > set parallel 65
            error invalid_argument: invalid argument: parallel files must be between 1 and 64, not 65
            > set notify relative/prog
            error invalid_argument: invalid argument: the notify program must be an absolute path
            > set retry_delay 1s
            ok
              persist sync job=suspended
              notify job_modified
            > show
              job "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" owner=alice state=suspended priority=normal type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=5s no_progress=14d max_download=90d parallel=1 notify=none
            > files
        "#]],
    );
}

#[test]
fn duplicate_local_names_are_refused_across_calls() {
    check(
        r#"
create nightly
add http://h/a /d/a
add http://h/b /d/b http://h/c /d/a
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
            > add http://h/b /d/b http://h/c /d/a
            error duplicate_local_name: local name "/d/a" is already used by a file of this job
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=unknown transferred=0 durable=0
        "#]],
    );
}

#[test]
fn setters_change_properties_and_notify() {
    check(
        r#"
create nightly
set priority foreground
set description "weekly sync"
set retry_delay 30s
set no_progress 2h
set max_download 3h
set notify /usr/bin/logger -t ferry
set parallel 4
show
set notify none
show
"#,
        expect![[r#"
            > create nightly
            ok
              persist sync job=suspended
              state: suspended
            > set priority foreground
            ok
              persist sync job=suspended
              notify job_modified
            > set description "weekly sync"
            ok
              persist sync job=suspended
              notify job_modified
            > set retry_delay 30s
            ok
              persist sync job=suspended
              notify job_modified
            > set no_progress 2h
            ok
              persist sync job=suspended
              notify job_modified
            > set max_download 3h
            ok
              persist sync job=suspended
              notify job_modified
            > set notify /usr/bin/logger -t ferry
            ok
              persist sync job=suspended
              notify job_modified
            > set parallel 4
            ok
              persist sync job=suspended
              notify job_modified
            > show
              job "nightly" owner=alice state=suspended priority=foreground type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=30s no_progress=2h max_download=3h parallel=4 notify=/usr/bin/logger -t ferry
            > set notify none
            ok
              persist sync job=suspended
              notify job_modified
            > show
              job "nightly" owner=alice state=suspended priority=foreground type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=30s no_progress=2h max_download=3h parallel=4 notify=none
        "#]],
    );
}

#[test]
fn upload_jobs_hold_one_file_and_complete_only_when_transferred() {
    check(
        r#"
create report type upload
add http://h/up /d/report http://h/up2 /d/report2
add http://h/up /d/report
add http://h/up2 /d/report2
complete
resume
grant
complete
transferred f0 5
complete
published f0
"#,
        expect![[r#"
            > create report type upload
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/up /d/report http://h/up2 /d/report2
            error too_many_files: an upload job holds exactly one file
            > add http://h/up /d/report
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > add http://h/up2 /d/report2
            error too_many_files: an upload job holds exactly one file
            > complete
            error invalid_state: invalid in state suspended
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
            > complete
            error invalid_state: invalid in state connecting
            > transferred f0 5
              persist sync job=transferred files=f0
              notify file_transferred f0
              notify job_transferred
              state: transferred
            > complete
            pending
              persist sync job=transferred files=f0
              publish f0 -> /d/report
            > published f0
              persist sync job=acknowledged files=f0
              notify job_modified
              answer complete saved=[f0] dropped=[] undeleted=[]
              state: acknowledged
        "#]],
    );
}

/// BITS's MaxFilesPerJob: a non-admin's job holds at most the limit, counted
/// across every add; an add that would pass it changes nothing; an admin
/// is exempt.
#[test]
fn files_per_job_are_limited_for_non_admins() {
    check(
        "
        config max_files=2
        create quota as alice
        add http://h/a /d/a http://h/b /d/b http://h/c /d/c as alice
        add http://h/a /d/a as alice
        add http://h/b /d/b http://h/c /d/c as alice
        add http://h/b /d/b as alice
        add http://h/c /d/c as alice
        add http://h/c /d/c as !root
        files
        ",
        expect![[r#"
            > config max_files=2
            > create quota as alice
            ok
              persist sync job=suspended
              state: suspended
            > add http://h/a /d/a http://h/b /d/b http://h/c /d/c as alice
            error too_many_files_in_job: a job may hold at most 2 files
            > add http://h/a /d/a as alice
            added f0
              persist sync job=suspended files=f0
              notify job_modified
            > add http://h/b /d/b http://h/c /d/c as alice
            error too_many_files_in_job: a job may hold at most 2 files
            > add http://h/b /d/b as alice
            added f1
              persist sync job=suspended files=f1
              notify job_modified
            > add http://h/c /d/c as alice
            error too_many_files_in_job: a job may hold at most 2 files
            > add http://h/c /d/c as !root
            added f2
              persist sync job=suspended files=f2
              notify job_modified
            > files
              f0 http://h/a -> /d/a temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-0.part total=unknown transferred=0 durable=0
              f1 http://h/b -> /d/b temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-1.part total=unknown transferred=0 durable=0
              f2 http://h/c -> /d/c temp=/d/.ferry-0000000000000000-00000000000000000000000000001234-2.part total=unknown transferred=0 durable=0
        "#]],
    );
}

#[test]
fn a_jobs_own_bandwidth_cap_is_a_property_kept_across_a_restart() {
    check(
        r#"
create capped
set bandwidth 0
set bandwidth 65536
show
restart
show
set bandwidth none
show
"#,
        expect![[r#"
            > create capped
            ok
              persist sync job=suspended
              state: suspended
            > set bandwidth 0
            error invalid_argument: invalid argument: a bandwidth cap must be at least 1 byte per second (none lifts it)
            > set bandwidth 65536
            ok
              persist sync job=suspended
              notify job_modified
            > show
              job "capped" owner=alice state=suspended priority=normal type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              bandwidth=65536/s
            > restart
            > show
              job "capped" owner=alice state=suspended priority=normal type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
              bandwidth=65536/s
            > set bandwidth none
            ok
              persist sync job=suspended
              notify job_modified
            > show
              job "capped" owner=alice state=suspended priority=normal type=download
              progress bytes=0/0 files=0/0
              error none count=0
              retry_delay=10m no_progress=14d max_download=90d parallel=1 notify=none
        "#]],
    );
}

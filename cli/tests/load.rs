//! The load-test harness driving the real `ferry serve` binary through its
//! API (ferry-bench's daemon mode), with SIGKILLs at random moments and a
//! faulty origin: every file must arrive intact at its final name. Asserts
//! no timing; this is the daemon-mode smoke run that CI makes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_bench::harness::{self, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_ferry");

#[test]
fn the_harness_drives_a_daemon_through_sigkills_and_loses_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let scenario = Scenario {
        jobs: 6,
        files_per_job: 4,
        size: "64KiB..512KiB".into(),
        parallel_files: 2,
        max_transfers: 4,
        priority: "mixed".into(),
        reset_rate: 0.1,
        unavailable_rate: 0.05,
        change_rate: 0.05,
        // Slow enough that the kills land in the middle of the run.
        bandwidth: "1MiB".into(),
        restarts: 2,
        daemon: BIN.into(),
        timeout_secs: 300,
        ..Scenario::default()
    };
    let report = actix_rt::System::new()
        .block_on(harness::run(&scenario, dir.path(), false))
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("ferry.log")).unwrap_or_default();
    assert!(report.passed(), "{}\n{log}", report.table());
    assert_eq!(report.mode, "daemon");
    assert_eq!(report.files, 24);
    // Both SIGKILLs happened, and a new daemon started after each.
    assert_eq!(report.restarts, 2, "{}", report.table());
    assert_eq!(report.engine_start_seconds.len(), 3);
    assert_eq!(report.time_to_transferred.count, 6);
    assert!(report.cpu_seconds > 0.0, "the daemons' CPU time is counted");
}

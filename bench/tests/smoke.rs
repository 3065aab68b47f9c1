//! The harness's smoke scenario (run by CI): a few jobs with resets, 503s
//! and an engine restart; every file must arrive intact. Asserts no timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ferry-bench");

#[test]
fn a_small_faulty_run_with_a_restart_loses_nothing() {
    let out = Command::new(BIN)
        .args([
            "--jobs",
            "6",
            "--files",
            "5",
            "--size",
            "16KiB..300KiB",
            "--reset-rate",
            "0.1",
            "--unavailable-rate",
            "0.05",
            "--ignore-range-rate",
            "0.1",
            "--bandwidth",
            "64MiB",
            "--restarts",
            "1",
            "--priority",
            "mixed",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["files"], 30);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["corrupt"], 0);
    assert_eq!(report["restarts"], 1);
    assert_eq!(report["time_to_complete"]["count"], 6);
}

#[test]
fn scenarios_come_from_toml_and_bad_ones_are_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(&file, "jobs = 3\nsize = \"1KiB\"\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "--config",
            file.to_str().unwrap(),
            "--files",
            "2",
            "--print-scenario",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("jobs = 3") && text.contains("files_per_job = 2"),
        "{text}"
    );
    std::fs::write(&file, "jobz = 3\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jobz"));
    let out = Command::new(BIN)
        .args(["--size", "12 parsecs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("parsecs"));
}

//! The harness's smoke scenario (run by CI): a few jobs with resets, 503s,
//! stalls, content changes and an engine restart; every file must arrive
//! intact. Asserts no timing. (The daemon mode's smoke run, with SIGKILLs,
//! is in the `ferry` crate's tests, which have the binary.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ferry-bench");

#[test]
fn a_small_faulty_run_with_a_restart_loses_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let plot = dir.path().join("run.svg");
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
            "--retry-after",
            "1",
            "--ignore-range-rate",
            "0.1",
            "--stall-rate",
            "0.05",
            "--stall-ms",
            "200",
            "--change-rate",
            "0.05",
            "--bandwidth",
            "64MiB",
            "--restarts",
            "1",
            "--priority",
            "mixed",
            "--json",
            "--plot",
            plot.to_str().unwrap(),
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
    assert_eq!(report["mode"], "embedded");
    // Mixed priorities: one latency line per class.
    assert_eq!(
        report["time_to_transferred_by_priority"]
            .as_object()
            .unwrap()
            .len(),
        4
    );
    assert!(!report["timeline"].as_array().unwrap().is_empty());
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("time to TRANSFERRED per job"));
}

/// `--write-dataset` writes the bytes the generator (and so the
/// verification) expects at each path.
#[test]
fn a_dataset_is_written_as_the_origin_serves_it() {
    let dir = tempfile::TempDir::new().unwrap();
    let out = Command::new(BIN)
        .args(["--jobs", "2", "--files", "3", "--size", "1KiB..200KiB"])
        .arg("--write-dataset")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for j in 0..2 {
        for f in 0..3 {
            let path = format!("/j{j}/f{f}");
            let file = dir.path().join(format!("j{j}/f{f}"));
            let size = std::fs::metadata(&file).unwrap().len();
            assert!((1024..=200 * 1024).contains(&size), "{size}");
            let seed = ferry_bench::origin::seed_of(&path);
            assert_eq!(
                ferry_bench::origin::verify_file(seed, size, &file).unwrap(),
                None
            );
        }
    }
    // Faults need the built-in origin.
    let out = Command::new(BIN)
        .args(["--origin", "http://127.0.0.1:1/x", "--reset-rate", "0.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-in origin"));
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

/// The external-origin mode: URLs under the given base, every file
/// verified against the generator by its path. The server here is a second
/// origin serving the dataset's paths and sizes, as nginx would serve a
/// written dataset; one file it changes must be reported corrupt.
#[test]
fn an_external_origin_is_downloaded_from_and_verified() {
    use ferry_bench::{harness, origin::Origin};
    let (good, bad) = actix_rt::System::new().block_on(async {
        let scenario = harness::Scenario {
            jobs: 2,
            files_per_job: 3,
            size: "1KiB..200KiB".into(),
            ..harness::Scenario::default()
        };
        let data = tempfile::TempDir::new().unwrap();
        harness::write_dataset(&scenario, data.path()).unwrap();
        let external = Origin::start().unwrap();
        for j in 0..2 {
            for f in 0..3 {
                let file = data.path().join(format!("j{j}/f{f}"));
                let size = std::fs::metadata(file).unwrap().len();
                external.add(&format!("/j{j}/f{f}"), size);
            }
        }
        let mut served = scenario.clone();
        served.origin = external.url("");
        let dir = tempfile::TempDir::new().unwrap();
        let good = harness::run(&served, dir.path(), false).await.unwrap();
        external.change("/j1/f2", None);
        let dir = tempfile::TempDir::new().unwrap();
        let bad = harness::run(&served, dir.path(), false).await.unwrap();
        (good, bad)
    });
    assert!(good.passed(), "{}", good.table());
    assert_eq!(good.files, 6);
    assert_eq!((bad.lost, bad.corrupt), (0, 1), "{}", bad.table());
}

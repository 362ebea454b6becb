//! `statekit replay` measures the harness's own footprint the way `statekit bench` does: the
//! same trace replayed, in a process of its own, on a backend that stores nothing; so a
//! replay's report (and `tune --trace --validate`'s table) can judge each run's peak RSS
//! against the budget rule.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

mod common;
use common::repo;

fn statekit(args: &[&str], paths: &[&Path]) {
    let output = Command::new(env!("CARGO_BIN_EXE_statekit"))
        .arg("--quiet")
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "statekit {args:?} {paths:?}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn replay_reports_the_harness_footprint_and_the_budget_rule() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("ad-click.sktrace");
    let out = dir.path().join("replay");
    statekit(
        &["record", "--scale", "quick", "--sizes-only", "--out"],
        &[&trace, &repo("profiles/ad-click-interval-join.toml")],
    );
    statekit(
        &[
            "replay",
            "--backend",
            "memory",
            "--memory-budget",
            "64MiB",
            "--out",
        ],
        &[&out, &trace],
    );

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let run = &results["runs"][0];
    assert_eq!(run["error"], serde_json::Value::Null, "{run}");
    let harness = &results["harness"];
    assert_eq!(harness["error"], serde_json::Value::Null, "{harness}");
    // The footprint run replayed the whole trace, in a process that held memory.
    assert_eq!(harness["events"], run["events"], "{harness}");
    let footprint = harness["peak_rss_bytes"].as_u64().unwrap();
    assert!(footprint > 0, "{harness}");
    assert_eq!(
        results["trace"]["memory_budget"].as_u64(),
        Some(64 << 20),
        "{}",
        results["trace"]
    );

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Memory budget: 64.0 MiB"), "{report}");
    assert!(
        report.contains("Budget rule: peak RSS <= 1.1 x 64.0 MiB"),
        "{report}"
    );
    // Its process is gone, and so is its working directory.
    assert!(!out.join("work").exists());
}

//! Tests read their files from the tree under test: every fixture lives in `tests/data/`,
//! is listed in its README, and is found at run time, so a test binary that cargo reuses from
//! another checkout (a shared build cache) reads this checkout's files, not the other's.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::process::Command;

use statekit_tests::fixtures;

#[test]
fn every_fixture_is_in_the_repository_and_listed() {
    let readme = std::fs::read_to_string(fixtures::data("README.md")).unwrap();
    let mut files = 0;
    for entry in std::fs::read_dir(fixtures::data("")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == "README.md" {
            continue;
        }
        files += 1;
        assert!(
            readme.contains(&format!("`{name}`")),
            "tests/data/{name} is not listed in tests/data/README.md"
        );
    }
    assert!(files > 0);
}

/// The same test binary, started as cargo would start it from another checkout (its own
/// working directory and `CARGO_MANIFEST_DIR`), finds a fixture that exists only in that
/// tree. A path compiled into the binary would look in this checkout and miss it.
#[test]
fn fixtures_follow_the_tree_the_binary_runs_in() {
    const PROBE: &str = "STATEKIT_FIXTURE_PROBE";
    if let Ok(token) = std::env::var(PROBE) {
        let found = std::fs::read_to_string(fixtures::data("probe.txt")).unwrap();
        assert_eq!(found, token);
        return;
    }
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir(other.path().join("data")).unwrap();
    let token = format!("tree {}", std::process::id());
    std::fs::write(other.path().join("data/probe.txt"), &token).unwrap();
    assert!(!fixtures::data("probe.txt").exists());
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fixtures_follow_the_tree_the_binary_runs_in"])
        .current_dir(other.path())
        .env("CARGO_MANIFEST_DIR", other.path())
        .env(PROBE, &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the probe run failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The child really ran the probe (not zero tests).
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

//! `statekit crash-test`, the short version CI runs: a few SIGKILLs per backend during the
//! ad-click join, each run recovered from its last confirmed checkpoint and compared with a
//! run without kills (results and state).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::process::Command;

mod common;
use common::repo;

fn crash_test(backend: &str, kills: u32) {
    let work = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_statekit"))
        .args(["--quiet", "crash-test"])
        .arg(repo("profiles/ad-click-interval-join.toml"))
        .args(["--backend", backend, "--seed", "3"])
        .args(["--kills", &kills.to_string()])
        .args(["--max-events", "5000", "--checkpoint-every", "500"])
        .arg("--work")
        .arg(work.path().join("crash"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let line = stdout.lines().last().unwrap_or_default();
    assert!(
        line.starts_with(&format!("crash-test {backend}: {kills} kills")),
        "{line}"
    );
    assert!(line.contains(" 0 mismatches "), "{line}\n{stderr}");
}

#[test]
fn memory_survives_kills() {
    crash_test("memory", 4);
}

#[test]
fn rocksdb_survives_kills() {
    crash_test("rocksdb", 4);
}

#[test]
fn remote_survives_kills() {
    crash_test("remote", 2);
}

//! A restore whose checkpoint lost one worker's snapshot fails with an error naming it, on
//! the worker that needed it, while the other workers run: the job ends instead of waiting
//! forever for a worker that never joined the dataflow.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::tool;
use statekit_timely::CheckpointDir;

#[test]
fn a_lost_snapshot_fails_the_restore_and_the_job_ends() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let ckpt = checkpoints.to_str().unwrap();
    let args = ["--checkpoint-interval", "2m", "--checkpoint-dir", ckpt];
    let first = tool("memory", &dir.path().join("first"), &args, &["-w", "2"])
        .status()
        .unwrap();
    assert!(first.success());

    // Lose the snapshot of the second worker's key groups.
    let latest = CheckpointDir::load(&checkpoints).unwrap();
    let lost = &latest.workers[1].handle;
    std::fs::remove_dir_all(checkpoints.join(&lost.location)).unwrap();

    let mut restore = tool(
        "memory",
        &dir.path().join("restored"),
        &["--checkpoint-dir", ckpt, "--restore", "latest"],
        &["-w", "2"],
    );
    let mut child = restore
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the restore still ran after 5 minutes: a worker waited for one that failed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("restoring key groups 64..=127"),
        "the error names what failed: {stderr}"
    );
}

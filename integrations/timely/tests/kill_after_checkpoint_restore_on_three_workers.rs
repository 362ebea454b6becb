//! Two processes of two workers checkpoint the ad-click join; every process dies right
//! after a confirmed checkpoint (the process of worker 0 exits without cleaning up, the
//! other loses its connection to it); a restart on 3 workers in one process restores it.
//! The output before the checkpoint plus the output after the restore equals the
//! uninterrupted run's: the same pairs, none lost or duplicated (the pair fingerprint is a
//! sum over pairs, so a pair counted twice or missed changes it).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use common::{report, tool, two_hosts};
use statekit_timely::EXIT_AFTER_CHECKPOINT;

fn kill_and_restore(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert!(tool(backend, &whole, &[], &["-w", "2"])
        .status()
        .unwrap()
        .success());

    let hosts = two_hosts(dir.path());
    let hosts = hosts.to_str().unwrap();
    let killed = dir.path().join("killed");
    let checkpoints = dir.path().join("checkpoints");
    let ckpt = checkpoints.to_str().unwrap();
    let args = [
        "--checkpoint-interval",
        "2m",
        "--checkpoint-dir",
        ckpt,
        "--exit-after-checkpoints",
        "4",
    ];
    let mut second = tool(
        backend,
        &killed,
        &args,
        &["-w", "2", "-n", "2", "-p", "1", "-h", hosts],
    )
    .spawn()
    .unwrap();
    let first = tool(
        backend,
        &killed,
        &args,
        &["-w", "2", "-n", "2", "-p", "0", "-h", hosts],
    )
    .status()
    .unwrap();
    assert_eq!(first.code(), Some(EXIT_AFTER_CHECKPOINT));
    assert!(
        !second.wait().unwrap().success(),
        "went down with process 0"
    );
    assert!(!killed.join("results.json").exists(), "no run finished");

    let restored = dir.path().join("restored");
    let status = tool(
        backend,
        &restored,
        &["--checkpoint-dir", ckpt, "--restore", "latest"],
        &["-w", "3"],
    )
    .status()
    .unwrap();
    assert!(status.success());

    let (whole, after) = (report(&whole), report(&restored));
    assert!(after.restored_from.is_some());
    assert_eq!(after.workers, 3);
    // The restart read only what came after the cut, and something did.
    assert!(
        after.events > 0 && after.events < whole.events,
        "{} of {}",
        after.events,
        whole.events
    );
    assert_eq!(after.counters, whole.counters);
}

#[test]
fn memory_state_survives_killing_every_process_and_rescaling_to_three() {
    kill_and_restore("memory");
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_state_survives_killing_every_process_and_rescaling_to_three() {
    kill_and_restore("rocksdb");
}

//! The ad-click join on 2 processes x 2 workers talking over loopback TCP gives the same
//! results as on one worker.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use common::{report, tool, two_hosts};

#[test]
fn two_processes_of_two_workers_equal_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    assert!(tool("memory", &single, &[], &["-w", "1"])
        .status()
        .unwrap()
        .success());

    let hosts = two_hosts(dir.path());
    let hosts = hosts.to_str().unwrap();
    let cluster = dir.path().join("cluster");
    let mut second = tool(
        "memory",
        &cluster,
        &[],
        &["-w", "2", "-n", "2", "-p", "1", "-h", hosts],
    )
    .spawn()
    .unwrap();
    let first = tool(
        "memory",
        &cluster,
        &[],
        &["-w", "2", "-n", "2", "-p", "0", "-h", hosts],
    )
    .status()
    .unwrap();
    assert!(first.success());
    assert!(second.wait().unwrap().success());

    let (one, four) = (report(&single), report(&cluster));
    assert_eq!(four.workers, 4);
    assert_eq!(four.counters, one.counters);
    assert!(four.counters["joined_pairs"] > 0);
    // Each worker owned a quarter of the 128 key groups.
    let ranges: Vec<&str> = four
        .worker_reports
        .iter()
        .map(|w| w.key_groups.as_str())
        .collect();
    assert_eq!(ranges, ["0..=31", "32..=63", "64..=95", "96..=127"]);
}

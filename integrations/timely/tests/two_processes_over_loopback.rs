//! The ad-click join on 2 processes x 2 workers talking over loopback TCP gives the same
//! results as on one worker.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use statekit_timely::JobReport;

fn repo(relative: &str) -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    package.join("../..").join(relative)
}

/// A port nobody listens on now (the OS picks it; timely binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tool(out: &Path, timely: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_statekit-timely"));
    cmd.arg(repo("profiles/ad-click-interval-join.toml"))
        .args(["--scale", "quick", "--backend", "memory", "--out"])
        .arg(out)
        .arg("--")
        .args(timely);
    cmd
}

fn report(out: &Path) -> JobReport {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn two_processes_of_two_workers_equal_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    let status = tool(&single, &["-w", "1"]).status().unwrap();
    assert!(status.success());

    let hosts = dir.path().join("hosts.txt");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let hosts = hosts.to_str().unwrap();
    let cluster = dir.path().join("cluster");
    let mut second = tool(&cluster, &["-w", "2", "-n", "2", "-p", "1", "-h", hosts])
        .spawn()
        .unwrap();
    let first = tool(&cluster, &["-w", "2", "-n", "2", "-p", "0", "-h", hosts])
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

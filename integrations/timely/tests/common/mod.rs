//! What the scenario tests share: the repository's files and the tool's runs.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use statekit_timely::JobReport;

/// A file of the repository, found at run time from the package directory cargo runs
/// tests in (not from a path compiled into a binary that a shared build cache may reuse).
pub fn repo(relative: &str) -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    package.join("../..").join(relative)
}

/// A host file of two processes on loopback, on ports nobody listens on now (the OS picks
/// them; timely binds them a moment later).
pub fn two_hosts(dir: &Path) -> PathBuf {
    let port = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let hosts = dir.join("hosts.txt");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", port(), port()),
    )
    .unwrap();
    hosts
}

/// `statekit-timely` on the ad-click profile at the quick scale.
pub fn tool(backend: &str, out: &Path, args: &[&str], timely: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_statekit-timely"));
    cmd.arg(repo("profiles/ad-click-interval-join.toml"))
        .args(["--scale", "quick", "--backend", backend, "--out"])
        .arg(out)
        .args(args)
        .arg("--")
        .args(timely);
    cmd
}

/// The `results.json` a run wrote.
pub fn report(out: &Path) -> JobReport {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

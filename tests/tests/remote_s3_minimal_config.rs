//! A remote-backend configuration written by hand with only the fields that matter for an
//! S3-compatible server (`url`, `endpoint`, `region`, `allow_http`, `block_cache`) loads,
//! takes the defaults for everything else, and runs a benchmark against the test S3 server;
//! the results and report give the sizes of the store and of each checkpoint, measured in
//! the store (an S3 store has no local directory to measure).
//!
//! Start the server with `eval "$(tests/s3-server.sh start)"`; without `STATEKIT_S3_ENDPOINT`
//! the test is skipped with a printed notice.
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::hash::BuildHasher;

use statekit_backend::remote::RemoteConfig;
use statekit_bench::backends::{BackendKind, BackendSpec};
use statekit_bench::profile::Profile;
use statekit_bench::runner::{self, BenchOptions};

/// A short ad-click run with three checkpoints.
const PROFILE: &str = r#"
workload = "ad-click-interval-join"
[scales.quick]
duration = "7m"
keys = 2000
events_per_sec = 100
checkpoint_interval = "2m"
"#;

#[test]
fn a_minimal_s3_file_runs_and_reports_store_and_checkpoint_sizes() {
    let Ok(endpoint) = std::env::var("STATEKIT_S3_ENDPOINT") else {
        eprintln!(
            "skipped: STATEKIT_S3_ENDPOINT is not set (start a server with \
             `eval \"$(tests/s3-server.sh start)\"`)"
        );
        return;
    };
    let bucket = std::env::var("STATEKIT_S3_BUCKET").unwrap_or_else(|_| "statekit-test".into());
    // Its own prefix: runs in parallel or one after another never share a database.
    let salt = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s3.toml");
    std::fs::write(
        &file,
        format!(
            "url = \"s3://{bucket}/minimal-config/{salt:016x}\"\n\
             endpoint = \"{endpoint}\"\n\
             region = \"us-east-1\"\n\
             allow_http = true\n\
             block_cache = \"64 MiB\"\n"
        ),
    )
    .unwrap();

    let config = RemoteConfig::load(&file).unwrap();
    assert_eq!(
        config,
        RemoteConfig {
            url: config.url.clone(),
            endpoint: Some(endpoint.clone()),
            region: Some("us-east-1".into()),
            allow_http: true,
            block_cache: statekit_backend::Size(64 << 20),
            ..RemoteConfig::default()
        },
        "every field the file leaves out takes its default"
    );

    let profile = dir.path().join("ad-click-s3.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let out = dir.path().join("out");
    let options = BenchOptions {
        profile: Profile::load(&profile).unwrap(),
        scale: "quick".into(),
        specs: BackendSpec::pairs(
            &[BackendKind::Remote],
            &[format!("remote={}", file.display())],
        ),
        memory_budget: None,
        out: out.clone(),
        input: None,
        keep_state: false,
        progress: false,
        isolation: statekit_bench::isolation::Isolation::InProcess,
        time_limit: None,
    };
    let results = runner::bench(&options).unwrap();
    runner::write_all(&results, &out).unwrap();
    let run = &results.runs[0];
    assert_eq!(run.error, None);
    assert!(run.ok(), "{:#?}", run.checks);

    // The store's size comes from the store: listed, not a local directory's growth.
    let stored = run.backend_stats.disk_bytes.unwrap();
    assert!(stored > 100_000, "the S3 store holds {stored} bytes");
    assert!(run.backend_stats.disk_bytes_written.unwrap() > 0);
    assert_eq!(run.checkpoints.len(), 3, "{:?}", run.checkpoints);
    for c in &run.checkpoints {
        let total = c.total_bytes.unwrap();
        assert!(total > 0 && c.bytes <= total, "{c:?}");
    }
    // Checkpoints after the first share tables with it: they add less than they hold.
    let last = run.checkpoints.last().unwrap();
    assert!(last.bytes < last.total_bytes.unwrap(), "{last:?}");
    assert!(run.checkpoints[0].bytes > 0);

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| remote/s3 |") && l.contains("finished"))
        .unwrap();
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    // | run | status | events | events/s | ops/s | peak RSS | stored at end | ...
    assert!(
        md.contains("stored at end") && cells[7] != "0 B" && cells[7] != "n/a",
        "{row}"
    );
    let checkpoints = md
        .lines()
        .skip_while(|l| !l.starts_with("## Checkpoints"))
        .find(|l| l.starts_with("| remote/s3 |"))
        .unwrap();
    assert!(!checkpoints.contains("n/a"), "{checkpoints}");
    eprintln!(
        "S3 run: stored at end {}; checkpoints: {checkpoints}",
        cells[7]
    );
}

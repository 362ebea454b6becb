//! Every reference workload runs on every backend this build has, at a small scale with a
//! checkpoint: the runs finish within a time limit, pass their self-checks, and produce equal
//! result counters. (sliding-window-demand once never finished on RocksDB's default
//! configuration: a range delete per window fire made every read rebuild the memtable's
//! range tombstones.)

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use statekit_bench::backends::{BackendKind, BackendSpec};
use statekit_bench::isolation::Isolation;
use statekit_bench::profile::Profile;
use statekit_bench::runner::{self, BenchOptions};

/// A small scale of `workload`: long enough in event time for its windows to close.
fn profile(workload: &str, duration: &str, keys: u64, rate: u32) -> Profile {
    let text = format!(
        "workload = \"{workload}\"\n[scales.small]\nduration = \"{duration}\"\nkeys = {keys}\n\
         events_per_sec = {rate}\nself_check = true\ncheckpoint_interval = \"5m\"\n"
    );
    Profile::parse(Path::new(&format!("{workload}-small.toml")), &text).unwrap()
}

#[test]
fn every_workload_finishes_on_every_backend_with_equal_results() {
    let cases = [
        profile("ad-click-interval-join", "25m", 500, 20),
        profile("feature-concat", "10m", 1, 30),
        profile("sliding-window-demand", "40m", 200, 20),
        profile("daily-uv", "10m", 2_000, 30),
    ];
    let dir = tempfile::tempdir().unwrap();
    for profile in cases {
        let name = profile.workload.name();
        let out = dir.path().join(name);
        let results = runner::bench(&BenchOptions {
            profile,
            scale: "small".into(),
            specs: BackendSpec::pairs(&BackendKind::available(), &[]),
            memory_budget: Some(32 << 20),
            out,
            input: None,
            keep_state: false,
            progress: false,
            isolation: Isolation::InProcess,
            time_limit: Some(Duration::from_secs(120)),
        })
        .unwrap();
        for run in &results.runs {
            assert_eq!(run.error, None, "{name} on {}", run.label);
            assert!(
                !run.checks.is_empty() && run.ok(),
                "{name} on {}: {:#?}",
                run.label,
                run.checks
            );
            assert!(
                run.checks
                    .iter()
                    .any(|c| c.name.starts_with("state left after the final watermark")),
                "{name} on {}: the final watermark must be checked to empty the state",
                run.label
            );
            assert!(!run.checkpoints.is_empty(), "{name} on {}", run.label);
            if run.backend == "memory" {
                // Nothing is written to storage: amplification is n/a, not 0.
                assert_eq!(
                    (run.write_amplification, run.space_amplification),
                    (None, None)
                );
            }
        }
        assert!(
            results.comparison.counters_equal,
            "{name}: {:?}",
            results.comparison.differing
        );
    }
}

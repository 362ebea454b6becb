//! A recorded state-access trace, replayed against the same backend, reproduces the
//! operation counts of the recorded run exactly; Gadget's real trace sample imports and
//! replays with its operation mix intact.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::Path;

use statekit_bench::backends::{BackendKind, BackendSpec};
use statekit_bench::isolation::Isolation;
use statekit_bench::profile::Profile;
use statekit_bench::runner;
use statekit_bench::trace::{import_gadget, GadgetImport};

const PROFILE: &str = r#"
workload = "ad-click-interval-join"
seed = 5
[params]
late_fraction = 0.002
click_fraction = 0.2
[scales.quick]
duration = "22m"
keys = 300
events_per_sec = 20
[scales.standard]
duration = "1m"
keys = 1
events_per_sec = 1
[scales.large]
duration = "1m"
keys = 1
events_per_sec = 1
"#;

fn memory() -> BackendSpec {
    BackendSpec {
        kind: BackendKind::Memory,
        config: None,
        rocksdb: None,
    }
}

/// Records PROFILE's quick scale on the memory backend into `trace`.
fn record(dir: &Path, trace: &Path, sizes_only: bool) -> (statekit_bench::results::RunResult, u64) {
    let profile = Profile::parse(Path::new("trace-test.toml"), PROFILE).unwrap();
    runner::record(
        &profile,
        "quick",
        &memory(),
        trace,
        sizes_only,
        &dir.join("rec"),
        false,
    )
    .unwrap()
}

#[test]
fn replay_reproduces_operation_counts() {
    let dir = tempfile::tempdir().unwrap();
    let memory = memory();
    for sizes_only in [false, true] {
        let trace = dir.path().join(format!("run-{sizes_only}.sktrace"));
        let (recorded, records) = record(dir.path(), &trace, sizes_only);
        assert!(records > 50_000, "{records}");
        assert!(recorded.counters["joined_pairs"] > 1_000);

        let out = dir.path().join(format!("replay-{sizes_only}"));
        let results = runner::replay_all(
            &trace,
            std::slice::from_ref(&memory),
            &out,
            None,
            false,
            &Isolation::InProcess,
            None,
        )
        .unwrap();
        let replayed = &results.runs[0];
        assert_eq!(replayed.error, None);
        assert_eq!(
            replayed.divergent_reads,
            Some(0),
            "reads must return what they returned when recorded"
        );
        let counts = |r: &statekit_bench::results::RunResult| {
            r.ops
                .iter()
                .map(|(k, s)| (k.clone(), s.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            counts(replayed),
            counts(&recorded),
            "operation counts (sizes only: {sizes_only})"
        );
        assert_eq!(
            replayed.volume.entries_scanned,
            recorded.volume.entries_scanned
        );
        assert_eq!(replayed.volume.get_hits, recorded.volume.get_hits);
        runner::write_all(&results, &out).unwrap();
        for file in ["results.json", "report.md", "report.html"] {
            assert!(out.join(file).is_file(), "{file}");
        }
    }
}

#[test]
fn gadget_sample_imports_and_replays() {
    let sample = statekit_tests::fixtures::data("gadget-sliding-window-sample.log");
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("gadget.sktrace");
    let summary = import_gadget(&sample, &trace, GadgetImport::default()).unwrap();
    // 5,000 lines plus the registration of the `gadget` state; the sample is the start of a
    // file (no empty-key lines, which Gadget writes at the end) of point operations only.
    assert_eq!(summary.lines, 5_000);
    assert_eq!(summary.records, 5_001);
    assert_eq!(
        (summary.skipped_empty_keys, summary.scans),
        (0, 0),
        "{summary}"
    );
    let counts = &summary.ops;
    assert_eq!(
        (counts["get"], counts["put"], counts["delete"]),
        (2_500, 1_735, 765)
    );
    let results = runner::replay_all(
        &trace,
        &[memory()],
        &dir.path().join("out"),
        None,
        false,
        &Isolation::InProcess,
        None,
    )
    .unwrap();
    let run = &results.runs[0];
    assert_eq!(run.error, None);
    assert_eq!(
        (
            run.ops["get"].count,
            run.ops["put"].count,
            run.ops["delete"].count
        ),
        (2_500, 1_735, 765)
    );
    // The sample's operator reads each key it then writes: most gets after the first
    // window find the value written before.
    assert!(run.volume.get_hits > 0);
}

/// Replays on every backend this build has agree on every read's result and on the state
/// they end with; a backend that keeps nothing does not. (Replays used to compare only the
/// trace's own operation counts, equal whatever the backends returned.)
#[test]
fn replays_compare_what_backends_return() {
    use statekit_backend::InstanceConfig;
    use statekit_bench::null_backend::NullBackend;
    use statekit_bench::trace::{replay, TraceReader};

    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.sktrace");
    record(dir.path(), &trace, false);
    let specs = BackendSpec::pairs(&BackendKind::available(), &[]);
    let results = runner::replay_all(
        &trace,
        &specs,
        &dir.path().join("out"),
        None,
        false,
        &Isolation::InProcess,
        None,
    )
    .unwrap();
    for run in &results.runs {
        assert_eq!(run.error, None, "{}", run.label);
        assert!(run.counters.contains_key("read_results_fingerprint"));
        assert!(run.counters.contains_key("state_fingerprint_at_end"));
    }
    assert!(
        results.comparison.counters_equal,
        "{:?}",
        results.comparison.differing
    );
    // The same trace on a backend that stores nothing: its reads return nothing.
    let mut reader = TraceReader::open(&trace).unwrap();
    let header = reader.header();
    let mut null = NullBackend::new(
        InstanceConfig::single(header.max_parallelism)
            .unwrap()
            .with_key_groups(header.key_groups),
    );
    let lost = replay(&mut reader, &mut null, false, |_| {}).unwrap();
    let memory_run = &results.runs[0];
    assert_ne!(
        lost.read_results, memory_run.counters["read_results_fingerprint"],
        "a backend that loses every write must not pass for one that keeps them"
    );
}

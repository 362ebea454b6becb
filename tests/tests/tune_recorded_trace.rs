//! `statekit tune --trace` on a trace `statekit record` wrote: the records carry the stream's
//! event time, so the shape's span and rates are the profile's (22 minutes, 20 displays a
//! second), not the few hundred milliseconds the recording took.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::Path;

use statekit_bench::backends::{BackendKind, BackendSpec};
use statekit_bench::profile::Profile;
use statekit_bench::runner;
use statekit_bench::trace::TraceReader;
use statekit_bench::tune::shape_from_trace;

const PROFILE: &str = r#"
workload = "ad-click-interval-join"
seed = 7
[params]
click_fraction = 0.2
[scales.quick]
duration = "22m"
keys = 300
events_per_sec = 20
"#;

#[test]
fn a_recorded_trace_is_tuned_per_second_of_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("ad.sktrace");
    let profile = Profile::parse(Path::new("recorded-trace-test.toml"), PROFILE).unwrap();
    let memory = BackendSpec {
        kind: BackendKind::Memory,
        config: None,
        rocksdb: None,
    };
    let (run, _) = runner::record(
        &profile,
        "quick",
        &memory,
        &trace,
        true,
        &dir.path().join("rec"),
        false,
    )
    .unwrap();
    assert!(TraceReader::open(&trace).unwrap().header().stream_time);

    let shape = shape_from_trace(&trace, None).unwrap();
    // The last event is at most the disorder bound (5 s) before the end of 22 minutes.
    assert!(
        (22.0 * 60.0 - 10.0..=22.0 * 60.0).contains(&shape.seconds),
        "span {} s, recorded in {:.2} s",
        shape.seconds,
        run.wall_seconds
    );
    assert!(shape.source.contains("event time"), "{}", shape.source);
    // Every display is buffered on the left side once: 20 a second of event time.
    let left = shape
        .states
        .iter()
        .find(|s| s.name.ends_with("left"))
        .unwrap();
    let writes = left.rates.puts + left.rates.merges;
    assert!((18.0..=22.0).contains(&writes), "left writes {writes}/s");
}

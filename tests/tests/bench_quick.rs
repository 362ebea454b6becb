//! `statekit bench` on the quick scale of the ad-click profile: every backend/configuration
//! pair runs the same generated stream, passes its self-checks, and the three result files are
//! written with equal correctness counters across backends. The same stream written to CSV
//! and JSON lines and read back gives the same results as the generator.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::PathBuf;

use statekit_bench::backends::{BackendKind, BackendSpec};
use statekit_bench::event::EventFileWriter;
use statekit_bench::profile::Profile;
use statekit_bench::results::Results;
use statekit_bench::runner::{self, BenchOptions};

fn profile(name: &str) -> Profile {
    Profile::load(&statekit_tests::fixtures::repo(&format!("profiles/{name}"))).unwrap()
}

fn options(profile: Profile, out: PathBuf, input: Option<PathBuf>) -> BenchOptions {
    // Reading events from a file does not depend on the backend: one is enough there.
    let kinds = if input.is_some() {
        vec![BackendKind::Memory]
    } else {
        BackendKind::available()
    };
    BenchOptions {
        profile,
        scale: "quick".into(),
        specs: BackendSpec::pairs(&kinds, &[]),
        memory_budget: None,
        out,
        input,
        keep_state: false,
        progress: false,
        isolation: statekit_bench::isolation::Isolation::InProcess,
        time_limit: None,
    }
}

#[test]
fn quick_ad_click_writes_results_and_reports_with_equal_counters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let results = runner::bench(&options(
        profile("ad-click-interval-join.toml"),
        out.clone(),
        None,
    ))
    .unwrap();
    runner::write_all(&results, &out).unwrap();
    for run in &results.runs {
        assert_eq!(run.error, None, "{}", run.label);
        assert!(
            !run.checks.is_empty() && run.ok(),
            "{}: {:#?}",
            run.label,
            run.checks
        );
        assert!(run.counters["joined_pairs"] > 100_000);
        // Cleanup range deletes go in one write per batch of fired timers.
        assert!(run.ops["scan"].count > 0 && run.ops["write_batch"].count > 0);
        assert!(run.peak_rss_bytes > 0 && !run.samples.is_empty());
        // Latency until the end of the input, then the drain on its own: the final
        // watermark clears each side's state and timers with one call each (the join's
        // two sides), where the watermarks before it popped timers.
        let steady = &run.ops_before_drain;
        assert!(steady["pop_timers"].count > 0);
        assert!(!steady.contains_key("clear_state") && !steady.contains_key("clear_timers"));
        let drain = &run.ops_drain;
        assert_eq!(drain["clear_state"].count, 2, "{drain:?}");
        assert_eq!(drain["clear_timers"].count, 2, "{drain:?}");
        // The two phases make the whole run.
        for (op, all) in &run.ops {
            let (before, during) = (steady.get(op), drain.get(op));
            let count = before.map_or(0, |s| s.count) + during.map_or(0, |s| s.count);
            assert_eq!(count, all.count, "{op}");
            let max = before
                .map_or(0, |s| s.max_ns)
                .max(during.map_or(0, |s| s.max_ns));
            assert_eq!(max, all.max_ns, "{op}");
        }
    }
    assert!(
        results.comparison.counters_equal,
        "{:?}",
        results.comparison.differing
    );
    assert!(
        !out.join("work").exists(),
        "no empty working directory is left behind"
    );
    let back = Results::read(&out.join("results.json")).unwrap();
    assert_eq!(back.runs.len(), results.runs.len());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("<script"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("joined_pairs"));
    assert!(md.contains("### Steady state, until the end of the input"));
    assert!(md.contains("### End-of-input drain"));
    // Write amplification divides by the harness's logical bytes, for every backend alike.
    for run in &results.runs {
        assert!(run.volume.bytes_written > 0, "{}", run.label);
    }
}

#[test]
fn event_files_give_the_generator_results() {
    let dir = tempfile::tempdir().unwrap();
    let profile = profile("sliding-window-demand.toml");
    let scale = profile.scale("quick").unwrap().clone();
    let mut generated = options(profile.clone(), dir.path().join("gen"), None);
    generated.specs.truncate(1);
    let generated = runner::bench(&generated).unwrap();
    for name in ["events.csv", "events.jsonl"] {
        let file = dir.path().join(name);
        let mut w = EventFileWriter::create(&file).unwrap();
        for e in profile.generator(&scale).unwrap() {
            w.write(&e).unwrap();
        }
        w.finish().unwrap();
        let from_file = runner::bench(&options(
            profile.clone(),
            dir.path().join(format!("out-{name}")),
            Some(file),
        ))
        .unwrap();
        for (a, b) in generated.runs.iter().zip(&from_file.runs) {
            assert_eq!(b.error, None);
            assert!(b.ok(), "{:#?}", b.checks);
            assert_eq!(a.counters, b.counters, "{name}");
        }
    }
    // A malformed file is an error naming the file and line, not a panic.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "kind,ts,key,id,ref,dim,payload\ndemand,1,7,,,,\n").unwrap();
    let r = runner::bench(&options(profile, dir.path().join("bad"), Some(bad))).unwrap();
    let err = r.runs[0].error.clone().unwrap();
    assert!(
        err.contains("bad.csv") && err.contains("column id"),
        "{err}"
    );
}

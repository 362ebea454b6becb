//! `statekit tune --trace` on Gadget's sample trace, imported: the shape counts what the
//! trace holds, per second of the span given, and the tuner explains a configuration for it.

use statekit_bench::trace::{import_gadget, GadgetImport};
use statekit_bench::tune::{shape_from_trace, tune_and_write};
use statekit_tuner::{Disk, DiskKind, Machine};

#[test]
fn an_imported_gadget_trace_is_tuned() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("gadget.trace");
    let summary = import_gadget(
        &statekit_tests::fixtures::data("gadget-sliding-window-sample.log"),
        &trace,
        GadgetImport::default(),
    )
    .unwrap();
    let shape = shape_from_trace(&trace, Some(50.0)).unwrap();
    assert_eq!(shape.states.len(), 1);
    let s = &shape.states[0];
    let count = |op: &str| summary.ops.get(op).copied().unwrap_or(0) as f64;
    assert_eq!(s.rates.gets, count("get") / 50.0);
    assert_eq!(s.rates.puts, count("put") / 50.0);
    assert_eq!(s.rates.deletes, count("delete") / 50.0);
    assert_eq!(s.value_bytes, 64.0, "Gadget's values get the import's size");
    assert!(s.get_miss_ratio > 0.0 && s.get_miss_ratio < 1.0, "{s:?}");
    assert!(s.live_bytes > 0 && s.distinct_keys > 0);
    assert!(shape_from_trace(&trace, Some(-1.0)).is_err());

    let machine = Machine {
        cores: 2,
        memory_budget: 64 << 20,
        disk: Disk::declared(DiskKind::Ssd),
        direct_io: true,
    };
    let out = dir.path().join("tuned");
    let tuning = tune_and_write(&shape, &machine, &out).unwrap();
    let explain = std::fs::read_to_string(out.join("explain.md")).unwrap();
    assert!(explain.contains("its span given as 50 s"), "{explain}");
    // Point reads that often miss: a filter, with bits above the 10 baseline.
    let bits = tuning
        .config
        .for_state(&s.name)
        .1
        .bloom_filter_bits_per_key
        .unwrap();
    assert!(bits > 10.0, "{bits}");
    assert!(tuning
        .reason(&format!(
            "states.{}.table.bloom_filter_bits_per_key",
            s.name
        ))
        .is_some());
}

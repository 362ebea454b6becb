//! The derivation's properties: determinism, a reason for every value, and each input
//! moving the settings it should.

use proptest::prelude::*;
use statekit_backend::rocksdb_config::IndexType;
use statekit_backend::StateKind;

use crate::{derive, Disk, DiskKind, Machine, OpRates, StateShape, Tuning, WorkloadShape};

const MIB: u64 = 1 << 20;

fn machine(budget: u64) -> Machine {
    Machine {
        cores: 2,
        memory_budget: budget,
        disk: Disk::declared(DiskKind::Ssd),
        direct_io: true,
    }
}

/// One map state with point reads and writes, like a dedup or join buffer.
fn state(name: &str) -> StateShape {
    StateShape {
        rates: OpRates {
            puts: 2_000.0,
            gets: 2_000.0,
            deletes: 500.0,
            ..OpRates::default()
        },
        get_miss_ratio: 0.2,
        key_bytes: 24.0,
        value_bytes: 100.0,
        value_bytes_p99: 200.0,
        distinct_keys: 1_000_000,
        live_bytes: 512 * MIB,
        ..StateShape::new(name, StateKind::Map)
    }
}

fn shape(states: Vec<StateShape>) -> WorkloadShape {
    WorkloadShape {
        source: "test".into(),
        seconds: 600.0,
        states,
    }
}

fn tune(shape: &WorkloadShape, machine: &Machine) -> Tuning {
    derive(shape, machine).unwrap()
}

fn cf_of(t: &Tuning, name: &str) -> statekit_backend::rocksdb_config::CfOptions {
    t.config.for_state(name).0
}

fn table_of(t: &Tuning, name: &str) -> statekit_backend::rocksdb_config::TableOptions {
    t.config.for_state(name).1
}

/// Every option the configuration sets, as its path in `tuned.toml`.
fn set_options(t: &Tuning) -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    // A struct-valued option is one option.
                    if path.ends_with("compact_on_deletion") {
                        if !v.is_null() {
                            out.push(path);
                        }
                        continue;
                    }
                    walk(&path, v, out);
                }
            }
            serde_json::Value::Null => {}
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    walk("", &serde_json::to_value(&t.config).unwrap(), &mut out);
    out
}

fn assert_every_option_explained(t: &Tuning) {
    let set = set_options(t);
    for key in &set {
        assert!(t.reason(key).is_some(), "{key} is set without a reason");
    }
    for r in &t.reasons {
        assert!(
            set.contains(&r.key),
            "a reason for {} which is not set",
            r.key
        );
        assert!(!r.rule.is_empty() && !r.figures.is_empty(), "{r:?}");
    }
}

#[test]
fn derivation_is_deterministic_and_every_option_has_a_reason() {
    let s = shape(vec![state("left"), state("right")]);
    let a = tune(&s, &machine(256 * MIB));
    let b = tune(&s, &machine(256 * MIB));
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_every_option_explained(&a);
    assert!(a.config.states.contains_key("left") && a.config.states.contains_key("right"));
}

#[test]
fn more_point_lookups_bring_filters_and_more_misses_more_bits() {
    let mut no_reads = state("s");
    no_reads.rates.gets = 0.0;
    let t = tune(&shape(vec![no_reads]), &machine(256 * MIB));
    // Without point reads, only the scope filters of scans: the default bits, no whole keys.
    assert_eq!(cf_of(&t, "s").scope_prefix_filter, Some(true));
    assert_eq!(table_of(&t, "s").bloom_filter_bits_per_key, Some(10.0));
    assert_eq!(table_of(&t, "s").whole_key_filtering, Some(false));
    let mut few_misses = state("s");
    few_misses.get_miss_ratio = 0.01;
    let t = tune(&shape(vec![few_misses]), &machine(256 * MIB));
    let few = table_of(&t, "s").bloom_filter_bits_per_key.unwrap();
    assert_eq!(cf_of(&t, "s").optimize_filters_for_hits, Some(true));
    assert_eq!(table_of(&t, "s").whole_key_filtering, Some(true));
    let mut many_misses = state("s");
    many_misses.get_miss_ratio = 0.9;
    let t = tune(&shape(vec![many_misses]), &machine(256 * MIB));
    let many = table_of(&t, "s").bloom_filter_bits_per_key.unwrap();
    assert!(many > few, "{many} bits for 90% misses, {few} for 1%");
    assert_eq!(cf_of(&t, "s").optimize_filters_for_hits, Some(false));
}

/// An interval join's display side (written by every display, scanned by few clicks) and
/// its click side (the reverse).
fn interval_join_states() -> (StateShape, StateShape) {
    let rates = |merges, scans| OpRates {
        merges,
        scans,
        ..OpRates::default()
    };
    let mut displays = state("left");
    displays.rates = rates(20_000.0, 600.0);
    displays.value_bytes = 450.0;
    let mut clicks = state("right");
    clicks.rates = rates(600.0, 20_000.0);
    clicks.value_bytes = 30.0;
    (displays, clicks)
}

#[test]
fn reads_outnumbering_writes_bring_a_memtable_filter_sized_by_entries() {
    let (displays, mut clicks) = interval_join_states();
    let t = tune(&shape(vec![displays, clicks.clone()]), &machine(256 * MIB));
    assert_eq!(cf_of(&t, "left").memtable_prefix_bloom_size_ratio, None);
    let small = cf_of(&t, "right").memtable_prefix_bloom_size_ratio.unwrap();
    assert_every_option_explained(&t);
    // Larger entries: fewer per memtable, a smaller share for their filter.
    clicks.value_bytes = 2_000.0;
    let t = tune(&shape(vec![clicks]), &machine(256 * MIB));
    let large = cf_of(&t, "right").memtable_prefix_bloom_size_ratio.unwrap();
    assert!(
        small > large && (0.001..=0.05).contains(&large),
        "{small} for 30-byte values, {large} for 2,000"
    );
}

#[test]
fn large_memtables_read_within_scopes_become_hashes_of_skip_lists() {
    // Displays fill large memtables, clicks small ones.
    let (displays, clicks) = interval_join_states();
    let joined = shape(vec![displays.clone(), clicks]);
    let t = tune(&joined, &machine(256 * MIB));
    let buckets = cf_of(&t, "left").hash_skiplist_buckets.unwrap();
    let memtable = cf_of(&t, "left").write_buffer_size.unwrap();
    let entries = memtable / (24 + 450 + 40);
    assert!(
        buckets.is_power_of_two() && buckets >= entries && buckets < 2 * entries,
        "{buckets} buckets for ~{entries} entries"
    );
    assert_eq!(cf_of(&t, "right").hash_skiplist_buckets, None);
    assert_eq!(t.config.db.allow_concurrent_memtable_write, Some(false));
    assert_every_option_explained(&t);
    // A flush's sorted copy (24 bytes an entry, a memtable of deletions at worst: key and
    // ~40 bytes of overhead an entry) stays within 5% of the budget.
    let worst_copy = memtable as f64 / (24.0 + 40.0) * 24.0;
    assert!(
        worst_copy <= 0.05 * (256 * MIB) as f64,
        "{memtable}-byte memtable copies up to {worst_copy:.0} bytes"
    );
    // A reverse or whole-state scan would copy the memtable: no hash, and no cap.
    let mut reversed = displays.clone();
    reversed.rates.cross_scope_scans = 1.0;
    let reversed_joined = shape(vec![reversed.clone(), joined.states[1].clone()]);
    let skip_list = tune(&reversed_joined, &machine(256 * MIB));
    assert_eq!(cf_of(&skip_list, "left").hash_skiplist_buckets, None);
    assert!(
        cf_of(&skip_list, "left").write_buffer_size.unwrap() > memtable,
        "the cap is the hash's alone"
    );
    let t = tune(&shape(vec![reversed]), &machine(256 * MIB));
    assert_eq!(cf_of(&t, "left").hash_skiplist_buckets, None);
    assert_eq!(t.config.db.allow_concurrent_memtable_write, None);
    // A small budget's memtables are small lists already.
    let t = tune(&joined, &machine(16 * MIB));
    assert_eq!(cf_of(&t, "left").hash_skiplist_buckets, None);
}

#[test]
fn a_smaller_budget_gives_smaller_buffers_and_a_partitioned_index() {
    let s = shape(vec![state("s")]);
    let large = tune(&s, &machine(8192 * MIB));
    let small = tune(&s, &machine(64 * MIB));
    assert!(
        cf_of(&small, "s").write_buffer_size < cf_of(&large, "s").write_buffer_size,
        "{:?} vs {:?}",
        cf_of(&small, "s").write_buffer_size,
        cf_of(&large, "s").write_buffer_size
    );
    assert_eq!(
        table_of(&large, "s").index_type,
        Some(IndexType::BinarySearch)
    );
    assert_eq!(
        table_of(&small, "s").index_type,
        Some(IndexType::TwoLevelIndexSearch)
    );
    assert_eq!(table_of(&small, "s").partition_filters, Some(true));
}

#[test]
fn longer_scans_give_larger_blocks() {
    let scanning = |entries: f64| {
        let mut s = state("s");
        s.rates.scans = 5_000.0;
        s.scan_entries = entries;
        tune(&shape(vec![s]), &machine(256 * MIB))
    };
    let short = table_of(&scanning(2.0), "s").block_size.unwrap();
    let long = table_of(&scanning(400.0), "s").block_size.unwrap();
    assert!(long > short, "{long} vs {short}");
    // Scans as frequent as writes keep L0 short; rarer ones leave RocksDB's trigger.
    assert_eq!(
        cf_of(&scanning(400.0), "s").level0_file_num_compaction_trigger,
        Some(2)
    );
    let mut rare = state("s");
    rare.rates.scans = 100.0;
    let t = tune(&shape(vec![rare]), &machine(256 * MIB));
    assert_eq!(cf_of(&t, "s").level0_file_num_compaction_trigger, Some(4));
}

#[test]
fn faster_writes_give_larger_memtables_and_l1() {
    let writing = |puts: f64| {
        let mut s = state("s");
        // Some reverse scans: a hash memtable's cap would bound both sizes.
        s.rates = OpRates {
            puts,
            gets: puts / 2.0,
            scans: 10.0,
            cross_scope_scans: 10.0,
            ..OpRates::default()
        };
        tune(&shape(vec![s]), &machine(256 * MIB))
    };
    let (slow, fast) = (writing(1_000.0), writing(200_000.0));
    assert!(cf_of(&fast, "s").write_buffer_size > cf_of(&slow, "s").write_buffer_size);
    assert!(
        cf_of(&fast, "s").max_bytes_for_level_base > cf_of(&slow, "s").max_bytes_for_level_base
    );
    // Between states, the faster one gets the larger memtable.
    let mut busy = state("busy");
    busy.rates.puts = 20_000.0;
    let t = tune(&shape(vec![busy, state("quiet")]), &machine(256 * MIB));
    assert!(cf_of(&t, "busy").write_buffer_size > cf_of(&t, "quiet").write_buffer_size);
}

#[test]
fn more_cores_give_more_background_jobs() {
    let s = shape(vec![state("s")]);
    let mut m = machine(256 * MIB);
    let two = tune(&s, &m).config.db.max_background_jobs.unwrap();
    m.cores = 16;
    let sixteen = tune(&s, &m);
    assert!(sixteen.config.db.max_background_jobs.unwrap() > two);
    assert!(sixteen.config.db.max_subcompactions.unwrap() > 1);
}

#[test]
fn small_range_deletes_become_point_deletes_and_wide_ones_flush_memtables() {
    let ranged = |keys: f64| {
        let mut s = state("window");
        s.rates.range_deletes = 400.0;
        s.rates.scans = 3_000.0;
        s.range_delete_keys = keys;
        tune(&shape(vec![s]), &machine(256 * MIB))
    };
    let narrow = ranged(8.0);
    assert_eq!(narrow.config.backend.point_delete_limit, Some(16));
    let wide = ranged(5_000.0);
    assert_eq!(wide.config.backend.point_delete_limit, Some(0));
    assert_eq!(
        cf_of(&wide, "window").memtable_max_range_deletions,
        Some(2_000)
    );
    assert!(cf_of(&wide, "window").compact_on_deletion.is_some());
    // Deletions that scans do not have to step over leave compaction to sizes.
    let mut unscanned = state("window");
    unscanned.rates.range_deletes = 400.0;
    unscanned.range_delete_keys = 5_000.0;
    let t = tune(&shape(vec![unscanned]), &machine(256 * MIB));
    assert_eq!(cf_of(&t, "window").compact_on_deletion, None);
    assert_every_option_explained(&wide);
}

#[test]
fn ttl_and_large_values_are_handled() {
    let mut s = state("uv");
    s.kind = StateKind::Value;
    s.ttl_ms = Some(86_400_000);
    s.value_bytes = 64.0 * 1024.0;
    s.value_bytes_p99 = 128.0 * 1024.0;
    let mut list = s.clone();
    list.name = "list".into();
    list.kind = StateKind::List;
    let t = tune(&shape(vec![s, list]), &machine(256 * MIB));
    let cf = cf_of(&t, "uv");
    assert_eq!(cf.periodic_compaction_seconds, Some(86_400));
    // Appends extend a list's life: the filter leaves them to the backend's sweep.
    assert_eq!(cf_of(&t, "list").periodic_compaction_seconds, None);
    assert_eq!(cf.enable_blob_files, Some(true));
    assert_eq!(table_of(&t, "uv").block_size, Some(64 << 10));
    assert_every_option_explained(&t);
}

#[test]
fn bad_input_is_named() {
    let mut s = state("s");
    s.get_miss_ratio = 1.5;
    let e = derive(&shape(vec![s]), &machine(256 * MIB)).unwrap_err();
    assert!(e.contains("'s'") && e.contains("get_miss_ratio"), "{e}");
    let e = derive(&shape(vec![state("s")]), &machine(MIB)).unwrap_err();
    assert!(e.contains("below the tuner's minimum"), "{e}");
    let e = derive(&shape(vec![state("s"), state("s")]), &machine(256 * MIB)).unwrap_err();
    assert!(e.contains("twice"), "{e}");
}

fn arb_state(i: usize) -> impl Strategy<Value = StateShape> {
    (
        (0.0..1e6f64, 0.0..1e6f64, 0.0..1e6f64, 0.0..1e5f64),
        (0.0..1e4f64, 0.0..1e4f64, 0.0..1.0f64, 0.0..1e4f64),
        (1.0..256f64, 0.0..1e6f64, 0u64..1 << 40, 0u64..1 << 32),
        proptest::option::of(1u64..1 << 40),
    )
        .prop_map(move |(w, r, sz, ttl)| StateShape {
            rates: OpRates {
                puts: w.0,
                merges: w.1,
                gets: w.2,
                deletes: w.3,
                range_deletes: r.0,
                scans: r.1,
                ..OpRates::default()
            },
            get_miss_ratio: r.2,
            scan_entries: r.3,
            range_delete_keys: r.3 / 2.0,
            key_bytes: sz.0,
            value_bytes: sz.1,
            value_bytes_p99: sz.1 * 2.0,
            live_bytes: sz.2,
            distinct_keys: sz.3,
            ttl_ms: ttl,
            ..StateShape::new(format!("s{i}"), StateKind::Map)
        })
}

proptest! {
    #[test]
    fn any_valid_shape_gives_a_valid_explained_config(
        states in (1usize..5).prop_flat_map(|n| (0..n).map(arb_state).collect::<Vec<_>>()),
        cores in 1u32..64,
        budget_mib in 16u64..65536,
        direct_io in any::<bool>(),
        hdd in any::<bool>(),
    ) {
        let m = Machine {
            cores,
            memory_budget: budget_mib * MIB,
            disk: Disk::declared(if hdd { DiskKind::Hdd } else { DiskKind::Ssd }),
            direct_io,
        };
        let t = derive(&shape(states), &m).unwrap();
        t.config.validate().unwrap();
        assert_every_option_explained(&t);
    }
}

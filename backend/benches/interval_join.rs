//! The interval-join read on hot keys: every key holds many timestamped entries, the join
//! reads those inside a window (hundreds of them). Done two ways on the RocksDB backend:
//! - `bounded_seek`: [`StateRead::scan`] over `[t - window, t]`, an iterator between exact
//!   lower and upper bounds;
//! - `prefix_scan_filter`: Flink's way, a seek to the key's prefix, every entry of the key
//!   read and filtered by timestamp.
//!
//! Besides criterion's report, one run measures every read's latency into a histogram and
//! writes the p50/p99 of both ways and their ratio to
//! `$CARGO_TARGET_DIR/criterion/interval_join_p99.json` (and prints it).
//!
//! `cargo bench --release -p statekit-backend --features rocksdb --bench interval_join`
// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

#[cfg(feature = "rocksdb")]
mod join {
    use std::hint::black_box;
    use std::time::Instant;

    use criterion::{BenchmarkId, Criterion};
    use statekit_backend::rocksdb::{
        MemoryBudget, RocksDbBackend, RocksDbResources, RocksDbSettings,
    };
    use statekit_backend::{
        key_group_of, Direction, InstanceConfig, Scope, StateBackend, StateDescriptor, StateId,
        StateKind, StateRead, StateWrite, UserKeyRange, Visit,
    };

    const MAX_PAR: u16 = 128;
    /// Hot keys.
    pub const KEYS: u64 = 64;
    /// Entries per key: one per 100 ms over ~17 minutes of event time.
    pub const ENTRIES: u64 = 10_000;
    /// The join window in entries (30 s of event time): hundreds of entries per read.
    pub const WINDOW: u64 = 300;

    fn scope(state: StateId, key: &[u8]) -> Scope<'_> {
        Scope {
            state,
            key_group: key_group_of(key, MAX_PAR),
            key,
            namespace: b"",
        }
    }

    pub struct Fixture {
        pub backend: RocksDbBackend,
        pub state: StateId,
        _dir: tempfile::TempDir,
    }

    pub fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let resources = RocksDbResources::new(MemoryBudget::new(256 << 20)).expect("budget");
        let mut backend = RocksDbBackend::open(
            InstanceConfig::single(MAX_PAR).expect("config"),
            RocksDbSettings::new(dir.path(), resources),
        )
        .expect("open");
        let state = backend
            .register_state(&StateDescriptor::new("left", StateKind::Map))
            .expect("register");
        for k in 0..KEYS {
            let key = k.to_be_bytes();
            for ts in 0..ENTRIES {
                backend
                    .put(scope(state, &key), &(ts * 100).to_be_bytes(), &[5u8; 48])
                    .expect("put");
            }
        }
        backend.compact().expect("compact");
        Fixture {
            backend,
            state,
            _dir: dir,
        }
    }

    /// Probe `i`: a key and a window end, spread over keys and time.
    fn probe(i: u64) -> (u64, u64) {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let key = x % KEYS;
        let end = WINDOW + (x >> 20) % (ENTRIES - WINDOW);
        (key, end * 100)
    }

    pub fn bounded(f: &Fixture, i: u64) -> usize {
        let (key, end) = probe(i);
        let key = key.to_be_bytes();
        let (lo, hi) = ((end - WINDOW * 100).to_be_bytes(), end.to_be_bytes());
        let mut n = 0;
        f.backend
            .scan(
                scope(f.state, &key),
                UserKeyRange::inclusive(&lo, &hi),
                Direction::Forward,
                &mut |_, v| {
                    n += v.len();
                    Ok(Visit::Continue)
                },
            )
            .expect("scan");
        n
    }

    pub fn prefix_filter(f: &Fixture, i: u64) -> usize {
        let (key, end) = probe(i);
        let key = key.to_be_bytes();
        let (lo, hi) = ((end - WINDOW * 100).to_be_bytes(), end.to_be_bytes());
        let mut n = 0;
        f.backend
            .scan_prefix_filtered(
                scope(f.state, &key),
                UserKeyRange::inclusive(&lo, &hi),
                &mut |_, v| {
                    n += v.len();
                    Ok(Visit::Continue)
                },
            )
            .expect("scan");
        n
    }

    pub fn percentiles(f: &Fixture) -> String {
        let mut hists = Vec::new();
        for way in [bounded as fn(&Fixture, u64) -> usize, prefix_filter] {
            let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
            for i in 0..2_000u64 {
                let t = Instant::now();
                black_box(way(f, i));
                h.record(t.elapsed().as_nanos() as u64).expect("record");
            }
            hists.push(h);
        }
        let (b, p) = (&hists[0], &hists[1]);
        format!(
            "{{\"keys\":{KEYS},\"entries_per_key\":{ENTRIES},\"window_entries\":{WINDOW},\
             \"reads\":2000,\"bounded_seek_p50_ns\":{},\"bounded_seek_p99_ns\":{},\
             \"prefix_scan_filter_p50_ns\":{},\"prefix_scan_filter_p99_ns\":{},\
             \"p99_ratio\":{:.2}}}",
            b.value_at_quantile(0.5),
            b.value_at_quantile(0.99),
            p.value_at_quantile(0.5),
            p.value_at_quantile(0.99),
            p.value_at_quantile(0.99) as f64 / b.value_at_quantile(0.99).max(1) as f64
        )
    }

    pub fn bench(c: &mut Criterion) {
        let f = fixture();
        assert_eq!(
            bounded(&f, 1),
            prefix_filter(&f, 1),
            "both ways read the same entries"
        );
        let report = percentiles(&f);
        println!("interval_join p99: {report}");
        let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        let path = std::path::Path::new(&dir).join("criterion");
        let _ = std::fs::create_dir_all(&path);
        let _ = std::fs::write(path.join("interval_join_p99.json"), report + "\n");
        let mut group = c.benchmark_group("interval_join");
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("bounded_seek", WINDOW), |b| {
            b.iter(|| {
                i += 1;
                black_box(bounded(&f, i))
            })
        });
        group.bench_function(BenchmarkId::new("prefix_scan_filter", WINDOW), |b| {
            b.iter(|| {
                i += 1;
                black_box(prefix_filter(&f, i))
            })
        });
        group.finish();
    }
}

#[cfg(feature = "rocksdb")]
criterion::criterion_group!(benches, join::bench);
#[cfg(feature = "rocksdb")]
criterion::criterion_main!(benches);

#[cfg(not(feature = "rocksdb"))]
fn main() {
    eprintln!("interval_join needs --features rocksdb");
}

//! Point and range operations per backend: get, put, merge and a bounded range read, on the
//! in-memory backend and (with feature `rocksdb`) the RocksDB backend; and the memory
//! backend on a million keys with one small map each (ad-click's users), where every lookup
//! misses the CPU caches and the cost of reaching a key shows; and its timer queue with a
//! million pending timers (the join's cleanup timers), registered and popped in step; and
//! per backend, timers registered per event and popped per watermark; and on RocksDB, scans
//! of mostly absent scopes with and without the scope prefix filter.
//!
//! `cargo bench --release -p statekit-backend --features rocksdb --bench state_ops`
// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use statekit_backend::memory::MemoryBackend;
use statekit_backend::{
    key_group_of, Direction, InstanceConfig, Scope, StateBackend, StateDescriptor, StateId,
    StateKind, StateRead, StateWrite, Timer, TimerStore, UserKeyRange, Visit, WriteBatch,
};

const MAX_PAR: u16 = 128;
const KEYS: u32 = 10_000;
const ENTRIES_PER_KEY: u32 = 20;

fn scope(state: StateId, key: &[u8]) -> Scope<'_> {
    Scope {
        state,
        key_group: key_group_of(key, MAX_PAR),
        key,
        namespace: b"",
    }
}

/// Scans `range` of `scope` forward and sums the value bytes it sees.
fn scanned_bytes(backend: &dyn StateRead, scope: Scope<'_>, range: UserKeyRange<'_>) -> usize {
    let mut n = 0;
    backend
        .scan(scope, range, Direction::Forward, &mut |_, v| {
            n += v.len();
            Ok(Visit::Continue)
        })
        .expect("scan");
    n
}

/// A deterministic key sequence (xorshift), so runs compare.
struct Keys(u64);

impl Keys {
    fn next(&mut self) -> u32 {
        self.below(KEYS)
    }

    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

fn backends() -> Vec<(
    &'static str,
    Box<dyn StateBackend>,
    Option<tempfile::TempDir>,
)> {
    let config = InstanceConfig::single(MAX_PAR).expect("config");
    #[cfg_attr(not(feature = "rocksdb"), allow(unused_mut))]
    let mut out: Vec<(
        &'static str,
        Box<dyn StateBackend>,
        Option<tempfile::TempDir>,
    )> = vec![(
        "memory",
        Box::new(MemoryBackend::open(config.clone()).expect("memory")),
        None,
    )];
    #[cfg(feature = "rocksdb")]
    {
        use statekit_backend::rocksdb::{
            MemoryBudget, RocksDbBackend, RocksDbResources, RocksDbSettings,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let resources = RocksDbResources::new(MemoryBudget::new(256 << 20)).expect("budget");
        let backend = RocksDbBackend::open(config, RocksDbSettings::new(dir.path(), resources))
            .expect("rocksdb");
        out.push(("rocksdb", Box::new(backend), Some(dir)));
    }
    out
}

fn load(b: &mut dyn StateBackend) -> (StateId, StateId) {
    let map = b
        .register_state(&StateDescriptor::new("map", StateKind::Map))
        .expect("register");
    let list = b
        .register_state(&StateDescriptor::new("list", StateKind::List))
        .expect("register");
    for k in 0..KEYS {
        let key = k.to_be_bytes();
        for e in 0..ENTRIES_PER_KEY {
            b.put(scope(map, &key), &e.to_be_bytes(), &[1u8; 64])
                .expect("put");
        }
    }
    (map, list)
}

fn bench(c: &mut Criterion) {
    for (name, mut backend, _dir) in backends() {
        let (map, list) = load(backend.as_mut());
        let mut group = c.benchmark_group("state_ops");
        group.throughput(Throughput::Elements(1));
        let mut keys = Keys(0x9E37_79B9_7F4A_7C15);
        group.bench_function(BenchmarkId::new("get", name), |bench| {
            bench.iter(|| {
                let key = keys.next().to_be_bytes();
                black_box(
                    backend
                        .get(scope(map, &key), &7u32.to_be_bytes())
                        .expect("get"),
                )
            })
        });
        group.bench_function(BenchmarkId::new("put", name), |bench| {
            bench.iter(|| {
                let key = keys.next().to_be_bytes();
                backend
                    .put(scope(map, &key), &3u32.to_be_bytes(), &[2u8; 64])
                    .expect("put")
            })
        });
        group.bench_function(BenchmarkId::new("merge", name), |bench| {
            bench.iter(|| {
                let key = keys.next().to_be_bytes();
                backend
                    .merge(scope(list, &key), b"", &[3u8; 16])
                    .expect("merge")
            })
        });
        group.bench_function(BenchmarkId::new("range_5_of_20", name), |bench| {
            bench.iter(|| {
                let key = keys.next().to_be_bytes();
                let (lo, hi) = (5u32.to_be_bytes(), 10u32.to_be_bytes());
                black_box(scanned_bytes(
                    backend.as_ref(),
                    scope(map, &key),
                    UserKeyRange::half_open(&lo, &hi),
                ))
            })
        });
        // The join's cleanup timers as an operator makes them: one registration per event
        // (a random user, a window ahead), the due ones popped at each watermark, here every
        // 256 events (ad-click: 400 displays per 200 ms watermark).
        const PENDING: i64 = 100_000;
        let queue = backend
            .register_state(&StateDescriptor::new("cleanup", StateKind::Timers))
            .expect("register");
        for t in 0..PENDING {
            backend
                .register_timer(queue, &timer(keys.next(), t))
                .expect("timer");
        }
        let mut now = 0i64;
        group.bench_function(
            BenchmarkId::new("timer_per_event_pop_per_watermark", name),
            |bench| {
                bench.iter(|| {
                    let t = timer(keys.next(), now + PENDING);
                    backend.register_timer(queue, &t).expect("timer");
                    now += 1;
                    if now % 256 == 0 {
                        black_box(backend.pop_due_timers(queue, now, usize::MAX).expect("pop"));
                    }
                })
            },
        );
        group.finish();
    }
}

/// Keys of the many-keys group.
const MANY_KEYS: u32 = 1_000_000;

fn bench_many_keys(c: &mut Criterion) {
    let mut backend =
        MemoryBackend::open(InstanceConfig::single(MAX_PAR).expect("config")).expect("memory");
    let map = backend
        .register_state(&StateDescriptor::new("map", StateKind::Map))
        .expect("register");
    for k in 0..MANY_KEYS {
        backend
            .put(
                scope(map, &k.to_be_bytes()),
                &1u64.to_be_bytes(),
                &[1u8; 64],
            )
            .expect("put");
    }
    let mut group = c.benchmark_group("memory_1m_keys");
    group.throughput(Throughput::Elements(1));
    let mut keys = Keys(0x2545_F491_4F6C_DD1D);
    let mut next = move || keys.below(MANY_KEYS);
    group.bench_function("get", |bench| {
        bench.iter(|| {
            let key = next().to_be_bytes();
            black_box(
                backend
                    .get(scope(map, &key), &1u64.to_be_bytes())
                    .expect("get"),
            )
        })
    });
    // The interval join's per-bucket life: append to a list, later drop it.
    group.bench_function("merge_then_delete", |bench| {
        bench.iter(|| {
            let key = next().to_be_bytes();
            backend
                .merge(scope(map, &key), &2u64.to_be_bytes(), &[3u8; 64])
                .expect("merge");
            backend
                .delete(scope(map, &key), &2u64.to_be_bytes())
                .expect("delete")
        })
    });
    // The interval join's buffer of one key over time: each display appends an entry under
    // a time later than the key's others, and the oldest one's cleanup deletes it, so every
    // key keeps BUFFERED entries (ad-click's users hold ~2-16 displays in the window).
    let buffer = backend
        .register_state(&StateDescriptor::new("buffer", StateKind::Map))
        .expect("register");
    const BUFFERED: u64 = 8;
    let mut oldest = vec![0u64; MANY_KEYS as usize];
    for k in 0..MANY_KEYS {
        for t in 0..BUFFERED {
            backend
                .merge(
                    scope(buffer, &k.to_be_bytes()),
                    &t.to_be_bytes(),
                    &[3u8; 64],
                )
                .expect("merge");
        }
    }
    group.bench_function("append_newest_delete_oldest", |bench| {
        bench.iter(|| {
            let k = next();
            let key = k.to_be_bytes();
            let first = &mut oldest[k as usize];
            backend
                .merge(
                    scope(buffer, &key),
                    &(*first + BUFFERED).to_be_bytes(),
                    &[3u8; 64],
                )
                .expect("merge");
            backend
                .delete(scope(buffer, &key), &first.to_be_bytes())
                .expect("delete");
            *first += 1;
        })
    });
    // A fired batch of cleanup timers: deletes of random keys written as one batch (the
    // join writes up to 1,024), then the same keys put back so the state stays the same.
    group.throughput(Throughput::Elements(2 * BATCH));
    group.bench_function("delete_then_put_batched", |bench| {
        bench.iter(|| {
            let keys: Vec<[u8; 4]> = (0..BATCH).map(|_| next().to_be_bytes()).collect();
            let mut deletes = WriteBatch::new();
            let mut puts = WriteBatch::new();
            for key in &keys {
                deletes.delete(scope(map, key), &1u64.to_be_bytes());
                puts.put(scope(map, key), &1u64.to_be_bytes(), &[1u8; 64]);
            }
            backend.write(deletes).expect("deletes");
            backend.write(puts).expect("puts")
        })
    });
    group.finish();
}

/// Operations in a batch of [`bench_many_keys`], as many as the interval join's cleanup
/// writes at once.
const BATCH: u64 = 1024;

/// A cleanup timer for user `k` at `at`.
fn timer(k: u32, at: i64) -> Timer {
    let key = k.to_be_bytes().to_vec();
    Timer {
        timestamp: at,
        key_group: key_group_of(&key, MAX_PAR),
        key,
        namespace: Vec::new(),
    }
}

/// The join's cleanup timers: a million pending, each step registers one a window ahead
/// (for a random user, as displays arrive) and pops what the advancing watermark made due.
/// Each timer at a time of its own, and bucketed as ad-click's cleanup timers are (2,000
/// displays a second, 1-second buckets: 2,000 timers at each time).
fn bench_timers(c: &mut Criterion) {
    const WINDOW: i64 = 1_000_000;
    let mut group = c.benchmark_group("memory_1m_timers");
    group.throughput(Throughput::Elements(1));
    for (name, bucket) in [
        ("register_then_pop", 1i64),
        ("register_then_pop_bucketed", 2_000),
    ] {
        let at = move |t: i64| t.div_euclid(bucket) * bucket;
        let mut backend =
            MemoryBackend::open(InstanceConfig::single(MAX_PAR).expect("config")).expect("memory");
        let queue = backend
            .register_state(&StateDescriptor::new("cleanup", StateKind::Timers))
            .expect("register");
        let mut keys = Keys(0x2545_F491_4F6C_DD1D);
        for t in 0..WINDOW {
            backend
                .register_timer(queue, &timer(keys.below(MANY_KEYS), at(t)))
                .expect("timer");
        }
        let mut now = 0i64;
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let t = timer(keys.below(MANY_KEYS), at(now + WINDOW));
                backend.register_timer(queue, &t).expect("timer");
                let due = backend.pop_due_timers(queue, now, 16).expect("pop");
                now += 1;
                black_box(due)
            })
        });
    }
    group.finish();
}

/// The interval join's read on RocksDB: a scan of one user's scope where most users have
/// nothing buffered (ad-click: 97% of displays find no click), over a state flushed to
/// several files, with and without the scope prefix filter.
#[cfg(feature = "rocksdb")]
fn bench_scope_filter(c: &mut Criterion) {
    use statekit_backend::rocksdb::{
        MemoryBudget, RocksDbBackend, RocksDbConfig, RocksDbResources, RocksDbSettings,
    };
    const USERS: u32 = 200_000;
    let mut group = c.benchmark_group("rocksdb_scan_mostly_absent_scopes");
    group.throughput(Throughput::Elements(1));
    for (label, filter) in [("scope_filter", None), ("no_scope_filter", Some(false))] {
        let dir = tempfile::tempdir().expect("tempdir");
        let resources = RocksDbResources::new(MemoryBudget::new(64 << 20)).expect("budget");
        let mut config = RocksDbConfig::default();
        config.cf.scope_prefix_filter = filter;
        let settings = RocksDbSettings::new(dir.path(), resources).with_config(config);
        let mut backend =
            RocksDbBackend::open(InstanceConfig::single(MAX_PAR).expect("config"), settings)
                .expect("rocksdb");
        let list = backend
            .register_state(&StateDescriptor::new("clicks", StateKind::List))
            .expect("register");
        // One user in 32 has a list, in SST files (compacted, so reads go to the files).
        for u in (0..USERS).step_by(32) {
            backend
                .merge(
                    scope(list, &u.to_be_bytes()),
                    &1u32.to_be_bytes(),
                    &[7u8; 64],
                )
                .expect("merge");
        }
        backend.compact().expect("compact");
        let mut keys = Keys(0x9E37_79B9_7F4A_7C15);
        group.bench_function(label, |bench| {
            bench.iter(|| {
                let key = keys.below(USERS).to_be_bytes();
                black_box(scanned_bytes(
                    &backend,
                    scope(list, &key),
                    UserKeyRange::all(),
                ))
            })
        });
    }
    group.finish();
}

#[cfg(not(feature = "rocksdb"))]
fn bench_scope_filter(_: &mut Criterion) {}

criterion_group!(
    benches,
    bench,
    bench_many_keys,
    bench_timers,
    bench_scope_filter
);
criterion_main!(benches);

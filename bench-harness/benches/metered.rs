//! What the metrics wrapper costs per operation: the same point read and write on the
//! in-memory backend, bare and inside [`Metered`] (which times every call into a histogram
//! and counts its bytes). The difference is the wrapper's overhead, which every figure the
//! harness reports carries.
//!
//! `cargo bench --release -p statekit-bench --bench metered`
// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use statekit_backend::memory::MemoryBackend;
use statekit_backend::{
    key_group_of, InstanceConfig, Scope, StateBackend, StateDescriptor, StateId, StateKind,
};
use statekit_bench::metrics::Metered;

const MAX_PAR: u16 = 128;
const KEYS: u64 = 1024;

fn scope(state: StateId, key: &[u8]) -> Scope<'_> {
    Scope {
        state,
        key_group: key_group_of(key, MAX_PAR),
        key,
        namespace: b"",
    }
}

/// A put and a get of key `i % KEYS`: small state, so the backend's own cost stays low and
/// the wrapper's shows.
fn put_get(backend: &mut dyn StateBackend, state: StateId, i: u64) {
    let key = (i % KEYS).to_be_bytes();
    backend
        .put(scope(state, &key), b"field", &i.to_le_bytes())
        .expect("put");
    black_box(backend.get(scope(state, &key), b"field").expect("get"));
}

fn open() -> (Box<dyn StateBackend>, StateId) {
    let mut backend =
        MemoryBackend::open(InstanceConfig::single(MAX_PAR).expect("config")).expect("memory");
    let state = backend
        .register_state(&StateDescriptor::new("map", StateKind::Map))
        .expect("register");
    (Box::new(backend), state)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("metered_put_get");
    group.throughput(Throughput::Elements(2));
    let (mut bare, state) = open();
    let mut i = 0u64;
    group.bench_function("bare", |b| {
        b.iter(|| {
            i += 1;
            put_get(bare.as_mut(), state, i);
        })
    });
    let (inner, state) = open();
    let mut metered: Metered<dyn StateBackend> = Metered::new(inner);
    group.bench_function("metered", |b| {
        b.iter(|| {
            i += 1;
            put_get(&mut metered, state, i);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

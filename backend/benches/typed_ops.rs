//! The typed layer's own cost: encoding a value (serde through postcard) and adding one
//! element to a list map state, as the interval join buffers an ad display (two ids and a
//! 450-byte body) on every event. The state is the in-memory backend with a few keys, so the
//! backend's part stays small and warm and the encoding shows.
//!
//! `cargo bench --release -p statekit-backend --bench typed_ops`
// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use statekit_backend::codec::encode_value;
use statekit_backend::memory::MemoryBackend;
use statekit_backend::typed::{KeyContext, ListMapState};
use statekit_backend::InstanceConfig;

/// The shape of ad-click's buffered display.
#[derive(Serialize, Deserialize)]
struct Display {
    id: u64,
    ad: u64,
    payload: String,
}

fn display(i: u64) -> (i64, Display) {
    (
        i as i64,
        Display {
            id: i,
            ad: i % 1_000,
            payload: "x".repeat(450),
        },
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("typed_ops");
    group.throughput(Throughput::Elements(1));
    let element = display(7);
    group.bench_function("encode_value/display_450B", |b| {
        b.iter(|| encode_value(black_box(&element)).expect("encode"))
    });

    let mut backend =
        MemoryBackend::open(InstanceConfig::single(128).expect("config")).expect("memory backend");
    let list: ListMapState<i64, (i64, Display)> =
        ListMapState::register(&mut backend, "left").expect("register");
    let keys: Vec<KeyContext> = (0..16u64)
        .map(|k| KeyContext::new(&backend, &k).expect("key"))
        .collect();
    let mut i = 0u64;
    group.bench_function("list_map_add/memory/display_450B", |b| {
        b.iter(|| {
            i += 1;
            let key = &keys[(i % 16) as usize];
            list.add(&mut backend, key, &(i as i64), &element)
                .expect("add");
            // Keep the state small: drop the list two adds later, as cleanup would.
            if i >= 32 {
                list.remove(&mut backend, key, &((i - 32) as i64))
                    .expect("remove");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Two hot paths of the ad-click interval join on the memory backend, each measured against
//! the way it worked before, side by side in one run:
//!
//! - **the end of the input**: the final watermark (`i64::MAX`) clears both sides' states
//!   and timers with one call each; a watermark just below it still fires every cleanup
//!   timer and deletes its list, as the join did at the end before;
//! - **a click's scan of its user's displays** (the join's bounded range read, decoding each
//!   buffered display): payloads kept as bytes (read back without a UTF-8 check, as the
//!   ad-click job keeps them now) or as a `String` (checked on every read, as before).
//!
//! `cargo bench --release -p statekit-bench --bench join_end`
// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use statekit_backend::memory::MemoryBackend;
use statekit_backend::typed::{KeyContext, ListMapState};
use statekit_backend::{Direction, InstanceConfig, Visit};
use statekit_bench::operators::interval_join::{IntervalJoin, JoinBounds};

const MAX_PAR: u16 = 128;
const MINUTE: i64 = 60_000;

/// Displays buffered when the input ends (ad-click holds 2.4M at the flink scale; fewer
/// here so that criterion's samples stay short).
const BUFFERED: u32 = 100_000;
/// Users they belong to.
const USERS: u64 = 40_000;

/// A display whose payload is read back as a `String`.
#[derive(Clone, Serialize, Deserialize)]
struct TextDisplay {
    id: u64,
    payload: String,
}

/// A display whose payload is read back as bytes.
#[derive(Clone, Serialize, Deserialize)]
struct ByteDisplay {
    id: u64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

/// Text of ad-click's payload sizes (300-600 bytes).
fn payload(i: u32) -> String {
    let len = 300 + (i as usize * 7919) % 301;
    "creative sports travel finance "
        .chars()
        .cycle()
        .take(len)
        .collect()
}

/// A backend and a join holding [`BUFFERED`] displays, one every 12 ms of event time, each
/// in a cleanup bucket of its own; no watermark has passed, so all are still buffered.
fn buffered_join() -> (MemoryBackend, IntervalJoin<ByteDisplay, u64>) {
    let mut backend =
        MemoryBackend::open(InstanceConfig::single(MAX_PAR).expect("config")).expect("backend");
    let bounds = JoinBounds::new(0, 20 * MINUTE).expect("bounds");
    let mut join = IntervalJoin::register(&mut backend, "ads", bounds, 1_000).expect("join");
    for i in 0..BUFFERED {
        let user = KeyContext::new(&backend, &(u64::from(i) * 7 % USERS)).expect("key");
        let display = ByteDisplay {
            id: u64::from(i),
            payload: payload(i).into_bytes(),
        };
        join.process_left(
            &mut backend,
            &user,
            i64::from(i) * 12,
            display,
            |_, _, _, _| {},
        )
        .expect("display");
    }
    (backend, join)
}

fn end_of_input(c: &mut Criterion) {
    let mut group = c.benchmark_group("join_end");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(BUFFERED)));
    for (name, watermark) in [
        ("fire_every_timer", i64::MAX - 1),
        ("clear_at_final_watermark", i64::MAX),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                buffered_join,
                |(mut backend, mut join)| {
                    join.advance_watermark(&mut backend, watermark)
                        .expect("watermark");
                    assert_eq!(join.stats().cleanup_timers, u64::from(BUFFERED));
                    // Dropping what is left is the same for both; keep it out of the time.
                    (backend, join)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// What a click's scan does with its user's buffered displays: one bounded range read of
/// the join's list state, decoding every `(timestamp, display)` it visits.
fn scan_with<D: Serialize + DeserializeOwned>(
    c: &mut Criterion,
    name: &str,
    make: impl Fn(u32) -> D,
) {
    // A busy user's 20 minutes of displays, one list per second.
    const PER_USER: u32 = 200;
    let mut backend =
        MemoryBackend::open(InstanceConfig::single(MAX_PAR).expect("config")).expect("backend");
    let displays: ListMapState<i64, (i64, D)> =
        ListMapState::register(&mut backend, "ads/left").expect("state");
    let user = KeyContext::new(&backend, &42u64).expect("key");
    for i in 0..PER_USER {
        let ts = i64::from(i) * 1_000;
        displays
            .add(&mut backend, &user, &(ts + 1_000), &(ts, make(i)))
            .expect("display");
    }
    let mut group = c.benchmark_group("click_scan");
    group.throughput(Throughput::Elements(u64::from(PER_USER)));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut visited = 0u32;
            displays
                .for_each_in_range(&backend, &user, .., Direction::Forward, |_, (ts, d)| {
                    black_box((ts, d));
                    visited += 1;
                    Ok(Visit::Continue)
                })
                .expect("scan");
            assert_eq!(visited, PER_USER);
        })
    });
    group.finish();
}

fn click_scan(c: &mut Criterion) {
    scan_with(c, "payload_as_string", |i| TextDisplay {
        id: u64::from(i),
        payload: payload(i),
    });
    scan_with(c, "payload_as_bytes", |i| ByteDisplay {
        id: u64::from(i),
        payload: payload(i).into_bytes(),
    });
}

criterion_group!(benches, end_of_input, click_scan);
criterion_main!(benches);

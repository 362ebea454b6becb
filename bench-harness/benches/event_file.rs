//! Reading an event file (`bench --input`): 100,000 ad-click displays with 300-600 byte
//! JSON payloads (quoted, their quotes escaped, as the generator writes them), parsed into
//! events. Both sides of `versus-flink` count parsing their input, so
//! its cost is part of every rate compared with Flink.
//!
//! `cargo bench --release -p statekit-bench --bench event_file`
// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use statekit_bench::event::{Display, Event, EventFileReader, EventFileWriter};

const EVENTS: u64 = 100_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("displays.csv");
    let events = (0..EVENTS).map(|i| {
        Event::Display(Display {
            id: i,
            user: i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000,
            ts: i as i64 * 5,
            ad: i % 997,
            // Shaped as the ad-click generator's payloads: JSON, whose quotes CSV escapes.
            payload: format!(
                r#"{{"tags":"{}","blob":"{}"}}"#,
                "sports travel ".repeat(5 + (i % 10) as usize),
                "pxP544kVz8rN".repeat(20 + (i % 15) as usize)
            ),
        })
    });
    EventFileWriter::write_file(&path, events).expect("write");
    let mut group = c.benchmark_group("event_file");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(20);
    group.bench_function("read_csv_100k_displays", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for event in EventFileReader::open(&path).expect("open") {
                black_box(event.expect("event"));
                n += 1;
            }
            assert_eq!(n, EVENTS);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

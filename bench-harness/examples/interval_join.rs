//! The interval join of ad displays and clicks, on a small generated input.
//!
//! A click joins every display of the same user shown in the 20 minutes before it. The input
//! arrives up to 5 s out of order, with a few late events; the join buffers both sides in
//! lists keyed by cleanup time, reads only the lists of the bounded interval of the other
//! side for each element, and drops one list with a point delete when a timer fires.
//!
//! Run with `cargo run --release -p statekit-bench --example interval_join`.

use std::time::Duration;

use statekit_backend::memory::MemoryBackend;
use statekit_backend::InstanceConfig;
use statekit_bench::event::Event;
use statekit_bench::workloads::ad_click::{AdClickGenerator, AdClickJoin, AdClickParams};
use statekit_bench::workloads::{Operator, ScaleSpec};

fn main() -> statekit_backend::Result<()> {
    let params = AdClickParams::default();
    // 40 minutes of event time, 50 displays/s over 2,000 users.
    let scale = ScaleSpec {
        duration: Duration::from_secs(40 * 60),
        keys: 2_000,
        events_per_sec: 50.0,
        memory_budget: None,
        self_check: true,
        checkpoint_interval: None,
    };
    let input: Vec<Event> = AdClickGenerator::new(&params, &scale, 42)?.collect();

    let mut backend = MemoryBackend::open(InstanceConfig::single(128)?)?;
    let mut join = AdClickJoin::new(&mut backend, &params, true)?;
    for event in &input {
        join.process(&mut backend, event.clone())?;
    }
    join.finish(&mut backend)?;

    let counters = join.counters();
    println!("events:        {}", input.len());
    for (name, value) in &counters {
        println!("{name:<26}{value}");
    }
    println!("joined pairs:  {}", join.pairs().map_or(0, <[_]>::len));
    // The same input through an independent nested loop.
    for check in join.check(&input).unwrap_or_default() {
        let verdict = if check.passed { "ok" } else { "FAILED" };
        println!(
            "check {:<36} {verdict} (expected {}, got {})",
            check.name, check.expected, check.actual
        );
    }
    Ok(())
}

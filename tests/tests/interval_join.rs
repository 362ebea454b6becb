//! The interval-join operator (displays x clicks within 20 minutes, keyed by user) produces
//! exactly the pairs of an independent nested-loop computation, on a generated input with
//! out-of-order and late events, hot keys, clicks beyond the window and clicks exactly on
//! the window's edges.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::{HashMap, HashSet};

use statekit_backend::memory::MemoryBackend;
use statekit_backend::InstanceConfig;
use statekit_bench::event::{Click, Event};
use statekit_bench::workloads::ad_click::{AdClickGenerator, AdClickJoin, AdClickParams};
use statekit_bench::workloads::{Operator, ScaleSpec};

const WINDOW_MS: i64 = 20 * 60 * 1000;
const OUT_OF_ORDERNESS_MS: i64 = 5_000;
const WATERMARK_INTERVAL_MS: i64 = 200;

fn input() -> Vec<Event> {
    let params = AdClickParams {
        zipf_exponent: 1.2, // a few very hot users
        click_fraction: 0.15,
        beyond_window_fraction: 0.1,
        late_fraction: 0.005,
        payload_min: 20,
        payload_max: 60,
        ..AdClickParams::default()
    };
    let scale = ScaleSpec {
        duration: std::time::Duration::from_secs(50 * 60),
        keys: 40,
        events_per_sec: 4.0,
        memory_budget: None,
        self_check: true,
        checkpoint_interval: None,
    };
    let generated: Vec<Event> = AdClickGenerator::new(&params, &scale, 2024)
        .unwrap()
        .collect();

    // Clicks exactly on the window's edges (d.ts + 20 min joins, d.ts + 20 min + 1 ms does
    // not), inserted where the stream reaches their time so that they are not late.
    let mut edges: Vec<Click> = Vec::new();
    for (i, e) in generated.iter().enumerate().filter(|(i, _)| i % 97 == 0) {
        if let Event::Display(d) = e {
            for (k, offset) in [(0u64, 0i64), (1, WINDOW_MS), (2, WINDOW_MS + 1)] {
                edges.push(Click {
                    id: 10_000_000 + i as u64 * 3 + k,
                    user: d.user,
                    ts: d.ts + offset,
                    display: d.id,
                });
            }
        }
    }
    edges.sort_by_key(|c| c.ts);
    let mut out = Vec::with_capacity(generated.len() + edges.len());
    let mut pending = edges.into_iter().peekable();
    for e in generated {
        while pending.peek().is_some_and(|c| c.ts <= e.ts()) {
            out.push(Event::Click(pending.next().unwrap()));
        }
        out.push(e);
    }
    out
}

/// The nested loop: which events are late (behind the watermark at their arrival), then
/// every (display, click) of the same user with display.ts <= click.ts <= display.ts + 20 min.
fn expected(input: &[Event]) -> (HashSet<(u64, u64)>, usize) {
    let mut max_ts = i64::MIN;
    let mut watermark = i64::MIN;
    let mut next_watermark_at = i64::MIN;
    let mut displays = Vec::new();
    let mut clicks = Vec::new();
    let mut late = 0;
    for e in input {
        if e.ts() < watermark {
            late += 1;
        } else {
            match e {
                Event::Display(d) => displays.push(d.clone()),
                Event::Click(c) => clicks.push(c.clone()),
                _ => unreachable!(),
            }
        }
        max_ts = max_ts.max(e.ts());
        if max_ts >= next_watermark_at {
            next_watermark_at = (max_ts / WATERMARK_INTERVAL_MS + 1) * WATERMARK_INTERVAL_MS;
            watermark = watermark.max(max_ts - OUT_OF_ORDERNESS_MS);
        }
    }
    let mut pairs = HashSet::new();
    for d in &displays {
        for c in &clicks {
            if d.user == c.user && d.ts <= c.ts && c.ts <= d.ts + WINDOW_MS {
                pairs.insert((d.id, c.id));
            }
        }
    }
    (pairs, late)
}

#[test]
fn interval_join_matches_a_nested_loop() {
    let input = input();
    let mut per_user: HashMap<u64, usize> = HashMap::new();
    for e in &input {
        if let Event::Display(d) = e {
            *per_user.entry(d.user).or_default() += 1;
        }
    }
    let hottest = per_user.values().copied().max().unwrap();
    assert!(
        hottest > 2_000,
        "the input must have hot keys, the hottest has {hottest}"
    );
    let disordered = input.windows(2).filter(|w| w[1].ts() < w[0].ts()).count();
    assert!(disordered > 1_000, "the input must be out of order");

    let mut backend = MemoryBackend::open(InstanceConfig::single(128).unwrap()).unwrap();
    let mut join = AdClickJoin::new(&mut backend, &AdClickParams::default(), true).unwrap();
    for e in &input {
        join.process(&mut backend, e.clone()).unwrap();
    }
    join.finish(&mut backend).unwrap();

    let actual_list = join.pairs().unwrap();
    let actual: HashSet<(u64, u64)> = actual_list.iter().copied().collect();
    assert_eq!(actual.len(), actual_list.len(), "a pair was emitted twice");
    let (expected, late) = expected(&input);
    assert!(
        expected.len() > 5_000,
        "too few pairs to mean anything: {}",
        expected.len()
    );
    assert!(late > 10, "the input must have late events, it has {late}");
    let missing: Vec<_> = expected.difference(&actual).take(5).collect();
    let extra: Vec<_> = actual.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    let counters = join.counters();
    assert_eq!(
        counters["late_displays"] + counters["late_clicks"],
        late as u64
    );
    assert!(counters["cleanup_timers_fired"] > 0);

    // The edges: each 0 and +20 min click joins its display, +20 min +1 ms does not.
    let edge_ids: Vec<u64> = input
        .iter()
        .filter_map(|e| match e {
            Event::Click(c) if c.id >= 10_000_000 => Some(c.id),
            _ => None,
        })
        .collect();
    assert!(!edge_ids.is_empty());
    for e in &input {
        if let Event::Click(c) = e {
            if c.id >= 10_000_000 {
                let joined_own = actual.contains(&(c.display, c.id));
                assert_eq!(joined_own, (c.id - 10_000_000) % 3 != 2, "edge click {c:?}");
            }
        }
    }
}

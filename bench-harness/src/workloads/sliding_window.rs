//! sliding-window-demand: ride demand per hexagon, deduplicated per rider, counted in
//! sliding windows of 2, 4, 8, 16 and 32 minutes that slide by 1 minute (seed 003 of
//! `WORKLOADS.md`).
//!
//! Per hexagon the operator keeps
//! - a dedup map keyed by `(dedup bucket, rider)`: a rider counts once per hexagon per
//!   tumbling dedup bucket (1 minute);
//! - per-minute pane counts, a map keyed by pane start: one read-modify-write of a small
//!   value per counted event;
//! - one event-time timer per window end (pane end): when it fires at `E`, the windows of
//!   every size ending at `E` are computed from one bounded range read of the last 32 panes,
//!   the panes that read found and no later window needs are deleted one by one (their keys
//!   are known, so no range delete is written, and none at all when there is nothing to
//!   delete), and the next window end is scheduled while the hexagon still has panes inside
//!   the largest window;
//! - one event-time timer per dedup bucket that holds riders: at the bucket's end, one range
//!   delete of exactly that bucket.
//!
//! Range deletes are written only where the keys are unknown (a bucket's riders), once per
//! bucket and key, never per window fire: an LSM store pays for every range tombstone on every
//! later read of its memtable (sliding-window on RocksDB once spent 97% of its time building
//! range-tombstone iterators, with a range delete per fire).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};
use statekit_backend::typed::{KeyContext, MapState, TimerService};
use statekit_backend::{Direction, Error, Result, StateBackend, Visit};

use super::{
    check_fraction, decode_progress, floor_to, late_flags, wrong_event, ArrivalQueue, CheckOutcome,
    CountersProgress, Disorder, Operator, ScaleSpec, EPOCH_MS,
};
use crate::event::Event;
use crate::util::{de_duration, millis, mix64, Counters, SetFingerprint};
use crate::watermark::WatermarkGenerator;

/// The workload's parameters. `keys` of the scale is the number of hexagons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlidingWindowParams {
    /// Zipf exponent of hexagon popularity.
    pub zipf_exponent: f64,
    /// Number of distinct riders.
    pub riders: u64,
    /// Fraction of events that repeat a recent (rider, hexagon) request.
    pub repeat_fraction: f64,
    /// A rider counts once per hexagon per tumbling bucket of this length.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub dedup: Duration,
    /// Window slide (and pane length).
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub slide: Duration,
    /// Window sizes, each a multiple of `slide`.
    pub windows: Vec<String>,
    /// Allowed disorder of arrivals.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub out_of_orderness: Duration,
    /// Watermark emission period, in event time.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub watermark_interval: Duration,
    /// Fraction of events that arrive behind the watermark.
    pub late_fraction: f64,
}

impl Default for SlidingWindowParams {
    fn default() -> Self {
        SlidingWindowParams {
            zipf_exponent: 1.0,
            riders: 5_000_000,
            repeat_fraction: 0.2,
            dedup: Duration::from_secs(60),
            slide: Duration::from_secs(60),
            windows: ["2m", "4m", "8m", "16m", "32m"].map(String::from).to_vec(),
            out_of_orderness: Duration::from_secs(5),
            watermark_interval: Duration::from_millis(200),
            late_fraction: 0.0005,
        }
    }
}

impl SlidingWindowParams {
    /// The window sizes in ms, ascending.
    ///
    /// # Errors
    /// `(field, message)` for an unreadable size.
    pub fn window_sizes(&self) -> std::result::Result<Vec<i64>, (String, String)> {
        let mut sizes = Vec::new();
        for w in &self.windows {
            let d = crate::util::parse_duration(w)
                .map_err(|e| ("windows".to_string(), e.message().to_string()))?;
            sizes.push(millis(d));
        }
        sizes.sort_unstable();
        Ok(sizes)
    }

    /// Checks the values; errors name the field.
    ///
    /// # Errors
    /// `(field, message)` for the first bad field.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        check_fraction("repeat_fraction", self.repeat_fraction)?;
        check_fraction("late_fraction", self.late_fraction)?;
        let slide = millis(self.slide);
        if slide <= 0 || self.dedup.is_zero() || self.watermark_interval.is_zero() {
            return Err((
                "slide".into(),
                "slide, dedup and watermark_interval must be positive".into(),
            ));
        }
        let sizes = self.window_sizes()?;
        if sizes.is_empty() || sizes.iter().any(|s| *s <= 0 || s % slide != 0) {
            return Err((
                "windows".into(),
                "must be non-empty, each a positive multiple of slide".into(),
            ));
        }
        if self.riders == 0 || self.zipf_exponent.is_nan() || self.zipf_exponent < 0.0 {
            return Err((
                "riders".into(),
                "riders must be >= 1 and zipf_exponent >= 0".into(),
            ));
        }
        Ok(())
    }
}

/// Generates demand events over Zipf-popular hexagons, some repeating a recent rider.
pub struct SlidingWindowGenerator {
    rng: rand_chacha::ChaCha8Rng,
    params: SlidingWindowParams,
    hexagons: Zipf<f64>,
    rate: f64,
    total: u64,
    next: u64,
    recent: Vec<(u64, u64)>,
    arrivals: ArrivalQueue,
    disorder: Disorder,
}

impl SlidingWindowGenerator {
    /// A generator of `scale` from `seed`.
    ///
    /// # Errors
    /// `InvalidArgument` for unusable parameters.
    pub fn new(params: &SlidingWindowParams, scale: &ScaleSpec, seed: u64) -> Result<Self> {
        let hexagons = Zipf::new(scale.keys.max(1) as f64, params.zipf_exponent)
            .map_err(|e| Error::invalid(format!("zipf over {} hexagons: {e}", scale.keys)))?;
        Ok(SlidingWindowGenerator {
            rng: super::rng(seed, 3),
            params: params.clone(),
            hexagons,
            rate: scale.events_per_sec,
            total: scale.main_events(),
            next: 0,
            recent: Vec::new(),
            arrivals: ArrivalQueue::default(),
            disorder: Disorder {
                out_of_orderness_ms: millis(params.out_of_orderness),
                late_fraction: params.late_fraction,
            },
        })
    }
}

impl Iterator for SlidingWindowGenerator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            let ts = EPOCH_MS + (self.next as f64 * 1000.0 / self.rate) as i64;
            let horizon = if self.next < self.total { ts } else { i64::MAX };
            if let Some(e) = self.arrivals.pop_ready(horizon) {
                return Some(e);
            }
            if self.next >= self.total {
                return None;
            }
            self.next += 1;
            let (hexagon, rider) =
                if !self.recent.is_empty() && self.rng.random_bool(self.params.repeat_fraction) {
                    self.recent[self.rng.random_range(0..self.recent.len())]
                } else {
                    let h = mix64(self.hexagons.sample(&mut self.rng) as u64);
                    let r = self.rng.random_range(1..=self.params.riders);
                    if self.recent.len() < 4096 {
                        self.recent.push((h, r));
                    } else {
                        let slot = self.rng.random_range(0..self.recent.len());
                        self.recent[slot] = (h, r);
                    }
                    (h, r)
                };
            self.arrivals.push(
                &mut self.rng,
                self.disorder,
                Event::Demand { hexagon, rider, ts },
            );
        }
    }
}

/// One emitted window: (hexagon, window end, window size) -> count.
pub type WindowKey = (u64, i64, i64);

/// The sliding-window demand job.
pub struct SlidingWindowDemand {
    dedup: MapState<(i64, u64), ()>,
    panes: MapState<i64, u64>,
    timers: TimerService,
    dedup_timers: TimerService,
    slide: i64,
    dedup_len: i64,
    sizes: Vec<i64>,
    watermarks: WatermarkGenerator,
    params: SlidingWindowParams,
    counters: Counters,
    fingerprint: SetFingerprint,
    windows: Option<BTreeMap<WindowKey, u64>>,
}

impl SlidingWindowDemand {
    /// Registers the job's state; with `collect`, windows are kept for the self-check.
    ///
    /// # Errors
    /// Backend errors; `InvalidArgument` for bad window sizes.
    pub fn new(
        backend: &mut dyn StateBackend,
        params: &SlidingWindowParams,
        collect: bool,
    ) -> Result<Self> {
        let sizes = params
            .window_sizes()
            .map_err(|(f, m)| Error::invalid(format!("{f}: {m}")))?;
        Ok(SlidingWindowDemand {
            dedup: MapState::register(backend, "demand/dedup")?,
            panes: MapState::register(backend, "demand/panes")?,
            timers: TimerService::register(backend, "demand/window-end")?,
            dedup_timers: TimerService::register(backend, "demand/dedup-end")?,
            slide: millis(params.slide).max(1),
            dedup_len: millis(params.dedup).max(1),
            sizes,
            watermarks: WatermarkGenerator::new(
                millis(params.out_of_orderness),
                millis(params.watermark_interval),
            ),
            params: params.clone(),
            counters: Counters::new(),
            fingerprint: SetFingerprint::default(),
            windows: collect.then(BTreeMap::new),
        })
    }

    fn bump(&mut self, name: &str, by: u64) {
        *self.counters.entry(name.to_string()).or_default() += by;
    }

    fn largest(&self) -> i64 {
        self.sizes.last().copied().unwrap_or(self.slide)
    }

    fn fire(&mut self, backend: &mut dyn StateBackend, end: i64, ctx: &KeyContext) -> Result<()> {
        let hexagon: u64 = ctx.key()?;
        let largest = self.largest();
        // One bounded read of the panes inside the largest window ending at `end`.
        let mut panes: Vec<(i64, u64)> = Vec::new();
        self.panes.for_each_in_range(
            &*backend,
            ctx,
            (Bound::Included(end - largest), Bound::Excluded(end)),
            Direction::Forward,
            |p, c| {
                panes.push((p, c));
                Ok(Visit::Continue)
            },
        )?;
        for size in self.sizes.clone() {
            let count: u64 = panes
                .iter()
                .filter(|(p, _)| *p >= end - size)
                .map(|(_, c)| c)
                .sum();
            if count > 0 {
                self.fingerprint
                    .add(&[hexagon, end as u64, size as u64, count]);
                self.bump("windows_emitted", 1);
                if let Some(w) = self.windows.as_mut() {
                    w.insert((hexagon, end, size), count);
                }
            }
        }
        let next = end.saturating_add(self.slide);
        // Panes before `next - largest` are in no future window. Every stored pane before
        // `end` is in the read above: each pane's first fire comes a slide after it, and the
        // chain of fires goes on until its last window, so none is missed.
        for (pane, _) in panes.iter().take_while(|(p, _)| *p < next - largest) {
            self.panes.remove(backend, ctx, pane)?;
        }
        if panes.iter().any(|(p, _)| *p >= next - largest) {
            self.timers.register_timer(backend, ctx, next)?;
        }
        Ok(())
    }

    fn advance(&mut self, backend: &mut dyn StateBackend, watermark: i64) -> Result<()> {
        // Dedup buckets that ended by the watermark can get no more (non-late) events.
        loop {
            let due = self.dedup_timers.pop_due(backend, watermark, 1024)?;
            if due.is_empty() {
                break;
            }
            for (bucket_end, ctx) in &due {
                let bucket = bucket_end - self.dedup_len;
                self.dedup
                    .remove_range(backend, ctx, (bucket, 0)..(*bucket_end, 0))?;
            }
        }
        loop {
            let due = self.timers.pop_due(backend, watermark, 1024)?;
            // Firing schedules the next window end, which may itself be due: go on until
            // nothing is due any more.
            if due.is_empty() {
                return Ok(());
            }
            for (end, ctx) in &due {
                self.fire(backend, *end, ctx)?;
            }
        }
    }
}

impl Operator for SlidingWindowDemand {
    fn handle(&mut self, backend: &mut dyn StateBackend, event: Event) -> Result<()> {
        let event = &event;
        let Event::Demand { hexagon, rider, ts } = event else {
            return Err(wrong_event("sliding-window-demand", event));
        };
        let ts = *ts;
        if self.watermarks.is_late(ts) {
            self.bump("late_events", 1);
        } else {
            let ctx = KeyContext::new(&*backend, hexagon)?;
            let bucket = (floor_to(ts, self.dedup_len), *rider);
            if self.dedup.contains(&*backend, &ctx, &bucket)? {
                self.bump("duplicates", 1);
            } else {
                self.dedup.put(backend, &ctx, &bucket, &())?;
                self.dedup_timers
                    .register_timer(backend, &ctx, bucket.0 + self.dedup_len)?;
                let pane = floor_to(ts, self.slide);
                let count = self.panes.get(&*backend, &ctx, &pane)?.unwrap_or(0);
                self.panes.put(backend, &ctx, &pane, &(count + 1))?;
                self.timers
                    .register_timer(backend, &ctx, pane + self.slide)?;
                self.bump("counted_events", 1);
            }
        }
        Ok(())
    }

    crate::workloads::watermark_plumbing!();

    fn save_progress(&self) -> Result<Vec<u8>> {
        CountersProgress::save(&self.watermarks, &self.counters, self.fingerprint, 0)
    }

    fn load_progress(&mut self, bytes: &[u8]) -> Result<()> {
        let p: CountersProgress = decode_progress(bytes)?;
        (self.watermarks, self.counters, self.fingerprint) =
            (p.watermarks, p.counters, p.fingerprint);
        Ok(())
    }

    fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.insert("windows_fingerprint".into(), self.fingerprint.value());
        c
    }

    fn check(&self, input: &[Event]) -> Option<Vec<CheckOutcome>> {
        let actual = self.windows.as_ref()?;
        let late = late_flags(
            input,
            millis(self.params.out_of_orderness),
            millis(self.params.watermark_interval),
        );
        let mut seen: HashSet<(u64, u64, i64)> = HashSet::new();
        let mut panes: HashMap<u64, BTreeMap<i64, u64>> = HashMap::new();
        for (e, &is_late) in input.iter().zip(&late) {
            if let (Event::Demand { hexagon, rider, ts }, false) = (e, is_late) {
                if seen.insert((*hexagon, *rider, ts.div_euclid(self.dedup_len))) {
                    *panes
                        .entry(*hexagon)
                        .or_default()
                        .entry(ts.div_euclid(self.slide) * self.slide)
                        .or_default() += 1;
                }
            }
        }
        let mut expected: BTreeMap<WindowKey, u64> = BTreeMap::new();
        for (hexagon, hp) in &panes {
            for &pane in hp.keys() {
                for k in 1..=self.largest() / self.slide {
                    let end = pane + k * self.slide;
                    for &size in &self.sizes {
                        let count: u64 = hp.range(end - size..end).map(|(_, c)| c).sum();
                        if count > 0 {
                            expected.insert((*hexagon, end, size), count);
                        }
                    }
                }
            }
        }
        let wrong = expected
            .iter()
            .filter(|(k, v)| actual.get(k) != Some(v))
            .count();
        let extra = actual.keys().filter(|k| !expected.contains_key(k)).count();
        Some(vec![
            CheckOutcome::equal("windows emitted", expected.len(), actual.len()),
            CheckOutcome::equal(
                "windows missing or with a wrong count / unexpected",
                (0, 0),
                (wrong, extra),
            ),
            CheckOutcome::equal(
                "counted (deduplicated) events",
                seen.len() as u64,
                self.counters.get("counted_events").copied().unwrap_or(0),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::InstanceConfig;

    #[test]
    fn self_check_passes() {
        let params = SlidingWindowParams {
            riders: 300,
            late_fraction: 0.01,
            ..Default::default()
        };
        let scale = super::super::test_scale(50 * 60, 200, 10.0);
        let input: Vec<Event> = SlidingWindowGenerator::new(&params, &scale, 9)
            .unwrap()
            .collect();
        let mut backend = MemoryBackend::open(InstanceConfig::single(32).unwrap()).unwrap();
        let mut op = SlidingWindowDemand::new(&mut backend, &params, true).unwrap();
        for e in &input {
            op.process(&mut backend, e.clone()).unwrap();
        }
        op.finish(&mut backend).unwrap();
        let checks = op.check(&input).unwrap();
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        let c = op.counters();
        assert!(
            c["duplicates"] > 100 && c["late_events"] > 0 && c["windows_emitted"] > 1000,
            "{c:?}"
        );
    }
}

//! feature-concat: exposures, clicks and feature snapshots of recommendation requests,
//! joined per request id into training samples (seeds 000 and 004 of `WORKLOADS.md`).
//!
//! Exposures and clicks are stored (a list per request). When the request's feature snapshot
//! arrives, the stored events are looked up: if the exposure is there, a sample is emitted
//! and the request's state is cleared; otherwise the feature is stored and a timer is set
//! (5 minutes of event time). When a request's timer fires, the lookup is retried and the
//! request's state expires. Point lookups dominate.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};
use statekit_backend::typed::{KeyContext, ListState, TimerService, ValueState};
use statekit_backend::{Error, Result, StateBackend};

use super::{
    check_fraction, decode_progress, late_flags, wrong_event, CheckOutcome, CountersProgress,
    Disorder, Operator, ScaleSpec, Staging, Timestamped, EPOCH_MS,
};
use crate::event::Event;
use crate::util::{de_duration, millis, mix64, payload, Counters, SetFingerprint};
use crate::watermark::WatermarkGenerator;

/// The workload's parameters (`[params]` of its profile). Each request has one exposure;
/// `events_per_sec` of the scale is the exposure rate and `keys` is not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConcatParams {
    /// Fraction of exposures that get a click.
    pub click_fraction: f64,
    /// Mean delay from exposure to click.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub click_delay_mean: Duration,
    /// Size of a feature snapshot, bytes.
    pub feature_size: usize,
    /// Size of an exposure, bytes.
    pub exposure_size: usize,
    /// Features arrive up to this long before or after their exposure.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub feature_skew: Duration,
    /// Fraction of requests whose feature never arrives.
    pub feature_missing_fraction: f64,
    /// How long a request waits for its missing part before the lookup is retried and its
    /// state expires.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub timer_delay: Duration,
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

impl Default for FeatureConcatParams {
    fn default() -> Self {
        FeatureConcatParams {
            click_fraction: 0.05,
            click_delay_mean: Duration::from_secs(10),
            feature_size: 2048,
            exposure_size: 200,
            feature_skew: Duration::from_secs(30),
            feature_missing_fraction: 0.01,
            timer_delay: Duration::from_secs(300),
            out_of_orderness: Duration::from_secs(5),
            watermark_interval: Duration::from_millis(200),
            late_fraction: 0.0005,
        }
    }
}

impl FeatureConcatParams {
    /// Checks the values; errors name the field.
    ///
    /// # Errors
    /// `(field, message)` for the first bad field.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        check_fraction("click_fraction", self.click_fraction)?;
        check_fraction("feature_missing_fraction", self.feature_missing_fraction)?;
        check_fraction("late_fraction", self.late_fraction)?;
        if self.feature_size > 64 << 20 || self.exposure_size > 64 << 20 {
            return Err(("feature_size".into(), "sizes must be at most 64 MiB".into()));
        }
        if self.timer_delay <= self.feature_skew + self.out_of_orderness {
            return Err((
                "timer_delay".into(),
                "must exceed feature_skew + out_of_orderness, or no request could join".into(),
            ));
        }
        if self.click_delay_mean.is_zero() || self.watermark_interval.is_zero() {
            return Err((
                "click_delay_mean".into(),
                "durations must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Generates one exposure per request at a steady rate, clicks on some, and each request's
/// feature snapshot within `feature_skew` of its exposure (or never).
pub struct FeatureConcatGenerator {
    rng: rand_chacha::ChaCha8Rng,
    params: FeatureConcatParams,
    click_delay: Exp<f64>,
    rate: f64,
    total: u64,
    next: u64,
    staging: Staging<Staged>,
    disorder: Disorder,
}

/// An event waiting in the generator's staging area: its payload is a seed until it is
/// released, so the 30 s the generator looks ahead hold ~40 bytes per event rather than
/// kilobytes (2 GiB of feature snapshots at the standard rate, which the harness's own
/// footprint would have carried into every memory figure).
enum Staged {
    Exposure {
        request: u64,
        ts: i64,
        item: u64,
        payload_seed: u64,
    },
    Click {
        request: u64,
        ts: i64,
    },
    Feature {
        request: u64,
        ts: i64,
        payload_seed: u64,
    },
}

impl Timestamped for Staged {
    fn ts(&self) -> i64 {
        match self {
            Staged::Exposure { ts, .. } | Staged::Click { ts, .. } | Staged::Feature { ts, .. } => {
                *ts
            }
        }
    }
}

impl FeatureConcatGenerator {
    /// A generator of `scale` from `seed`.
    ///
    /// # Errors
    /// `InvalidArgument` for unusable parameters.
    pub fn new(params: &FeatureConcatParams, scale: &ScaleSpec, seed: u64) -> Result<Self> {
        let click_delay = Exp::new(1.0 / params.click_delay_mean.as_secs_f64().max(1e-3))
            .map_err(|e| Error::invalid(format!("click delay: {e}")))?;
        Ok(FeatureConcatGenerator {
            rng: super::rng(seed, 2),
            params: params.clone(),
            click_delay,
            rate: scale.events_per_sec,
            total: scale.main_events(),
            next: 0,
            staging: Staging::with_capacity(staged_at_once(params, scale)),
            disorder: Disorder {
                out_of_orderness_ms: millis(params.out_of_orderness),
                late_fraction: params.late_fraction,
            },
        })
    }

    /// The event a staged one stands for, its payload made from its seed.
    fn release(&self, staged: Staged) -> Event {
        let body = |seed: u64, len: usize| payload(&mut super::rng(seed, 0), len);
        match staged {
            Staged::Exposure {
                request,
                ts,
                item,
                payload_seed,
            } => Event::Exposure {
                request,
                ts,
                item,
                payload: body(payload_seed, self.params.exposure_size),
            },
            Staged::Click { request, ts } => Event::ExposureClick { request, ts },
            Staged::Feature {
                request,
                ts,
                payload_seed,
            } => Event::Feature {
                request,
                ts,
                payload: body(payload_seed, self.params.feature_size),
            },
        }
    }

    fn exposure_ts(&self, i: u64) -> i64 {
        EPOCH_MS + (i as f64 * 1000.0 / self.rate) as i64
    }
}

/// How many events the generator stages at once, with a quarter to spare: exposures
/// `feature_skew` ahead, about as many features (spread evenly over `feature_skew` either side
/// of their exposure, so half of them ahead of a window twice as long) and the clicks of
/// `feature_skew` plus a mean click delay of exposures. Never more than the whole input, nor
/// than [`STAGING_RESERVE_LIMIT`]: beyond it the heap grows as it needs.
fn staged_at_once(params: &FeatureConcatParams, scale: &ScaleSpec) -> usize {
    let skew = params.feature_skew.as_secs_f64();
    let clicks = params.click_fraction * (skew + params.click_delay_mean.as_secs_f64());
    let ahead = 1.25 * scale.events_per_sec * (2.0 * skew + clicks);
    let whole_input = scale.main_events() as f64 * (2.0 + params.click_fraction);
    ahead
        .min(whole_input)
        .min(STAGING_RESERVE_LIMIT as f64)
        .ceil() as usize
}

/// The most staged events reserved for up front (16M, under 1 GiB of address space): a
/// profile with an extreme rate grows its heap rather than asking for terabytes at once.
const STAGING_RESERVE_LIMIT: usize = 1 << 24;

impl Iterator for FeatureConcatGenerator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let skew = millis(self.params.feature_skew);
        loop {
            // Every event of request `next` has a timestamp of at least its exposure - skew.
            let horizon = if self.next < self.total {
                self.exposure_ts(self.next) - skew
            } else {
                i64::MAX
            };
            if let Some(staged) = self
                .staging
                .next_ready(&mut self.rng, self.disorder, horizon)
            {
                return Some(self.release(staged));
            }
            if self.next >= self.total {
                return None;
            }
            let ts = self.exposure_ts(self.next);
            let request = mix64(self.next + 1);
            self.next += 1;
            let p = &self.params;
            let item = self.rng.random_range(1..=10_000_000);
            let payload_seed = self.rng.random();
            self.staging.schedule(Staged::Exposure {
                request,
                ts,
                item,
                payload_seed,
            });
            if self.rng.random_bool(p.click_fraction) {
                let delay = self.click_delay.sample(&mut self.rng) as i64;
                self.staging.schedule(Staged::Click {
                    request,
                    ts: ts + delay,
                });
            }
            if !self.rng.random_bool(p.feature_missing_fraction) {
                let fts = ts + self.rng.random_range(-skew..=skew);
                let payload_seed = self.rng.random();
                self.staging.schedule(Staged::Feature {
                    request,
                    ts: fts,
                    payload_seed,
                });
            }
        }
    }
}

/// A stored exposure or click.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StoredEvent {
    /// The exposure.
    Exposure {
        /// Event time.
        ts: i64,
        /// Item shown.
        item: u64,
        /// Body.
        payload: String,
    },
    /// A click.
    Click {
        /// Event time.
        ts: i64,
    },
}

impl StoredEvent {
    fn ts(&self) -> i64 {
        match self {
            StoredEvent::Exposure { ts, .. } | StoredEvent::Click { ts } => *ts,
        }
    }
}

/// A stored feature snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredFeature {
    /// Event time.
    pub ts: i64,
    /// Features.
    pub payload: String,
}

/// The feature-concatenation job.
pub struct FeatureConcat {
    events: ListState<StoredEvent>,
    feature: ValueState<StoredFeature>,
    timers: TimerService,
    delay: i64,
    watermarks: WatermarkGenerator,
    params: FeatureConcatParams,
    counters: Counters,
    fingerprint: SetFingerprint,
    samples: Option<Vec<(u64, u64)>>,
}

impl FeatureConcat {
    /// Registers the job's state; with `collect`, samples are kept for the self-check.
    ///
    /// # Errors
    /// Backend errors.
    pub fn new(
        backend: &mut dyn StateBackend,
        params: &FeatureConcatParams,
        collect: bool,
    ) -> Result<Self> {
        Ok(FeatureConcat {
            events: ListState::register(backend, "concat/events")?,
            feature: ValueState::register(backend, "concat/feature")?,
            timers: TimerService::register(backend, "concat/expiry")?,
            delay: millis(params.timer_delay),
            watermarks: WatermarkGenerator::new(
                millis(params.out_of_orderness),
                millis(params.watermark_interval),
            ),
            params: params.clone(),
            counters: Counters::new(),
            fingerprint: SetFingerprint::default(),
            samples: collect.then(Vec::new),
        })
    }

    fn bump(&mut self, name: &str) {
        *self.counters.entry(name.to_string()).or_default() += 1;
    }

    /// Emits a sample if `events` holds the exposure; returns whether it did.
    fn emit(&mut self, request: u64, events: &[StoredEvent], how: &str) -> bool {
        if !events
            .iter()
            .any(|e| matches!(e, StoredEvent::Exposure { .. }))
        {
            return false;
        }
        let clicks = events
            .iter()
            .filter(|e| matches!(e, StoredEvent::Click { .. }))
            .count() as u64;
        self.fingerprint.add(&[request, clicks]);
        if let Some(s) = self.samples.as_mut() {
            s.push((request, clicks));
        }
        self.bump("samples_joined");
        self.bump(how);
        true
    }

    fn store(
        &mut self,
        backend: &mut dyn StateBackend,
        request: u64,
        event: StoredEvent,
    ) -> Result<()> {
        let ctx = KeyContext::new(&*backend, &request)?;
        let expire_at = event.ts().saturating_add(self.delay);
        self.events.add(backend, &ctx, &event)?;
        self.timers.register_timer(backend, &ctx, expire_at)
    }

    fn on_feature(
        &mut self,
        backend: &mut dyn StateBackend,
        request: u64,
        feature: StoredFeature,
    ) -> Result<()> {
        let ctx = KeyContext::new(&*backend, &request)?;
        let stored = self.events.get(&*backend, &ctx)?;
        if self.emit(request, &stored, "joined_on_feature") {
            self.events.clear(backend, &ctx)?;
            for e in &stored {
                self.timers
                    .delete_timer(backend, &ctx, e.ts().saturating_add(self.delay))?;
            }
            return Ok(());
        }
        let expire_at = feature.ts.saturating_add(self.delay);
        self.feature.set(backend, &ctx, &feature)?;
        self.timers.register_timer(backend, &ctx, expire_at)
    }

    fn advance(&mut self, backend: &mut dyn StateBackend, watermark: i64) -> Result<()> {
        loop {
            let due = self.timers.pop_due(backend, watermark, 1024)?;
            // Each fired request is cleared below, so a later timer of the same request in
            // this batch finds nothing: it is skipped, which keeps the reads made up front
            // for the whole batch (one multi-get per state, read in parallel by backends on
            // slow storage) equal to reads made one timer after another.
            let mut fired = HashSet::with_capacity(due.len());
            let contexts: Vec<&KeyContext> = due
                .iter()
                .map(|(_, ctx)| ctx)
                .filter(|ctx| fired.insert(ctx.key_bytes()))
                .collect();
            let features = self.feature.get_many(&*backend, &contexts)?;
            let stored = self.events.get_many(&*backend, &contexts)?;
            for ((ctx, feature), stored) in contexts.into_iter().zip(features).zip(stored) {
                let request: u64 = ctx.key()?;
                if feature.is_none() {
                    // No feature yet: whatever is stored expires (if this was its last timer,
                    // the list is empty and nothing is written).
                    if !stored.is_empty() {
                        self.bump("expired_without_feature");
                        self.events.clear(backend, ctx)?;
                    }
                    continue;
                }
                if !self.emit(request, &stored, "joined_on_timer") {
                    self.bump("expired_without_exposure");
                }
                self.events.clear(backend, ctx)?;
                self.feature.clear(backend, ctx)?;
            }
            if due.len() < 1024 {
                return Ok(());
            }
        }
    }
}

impl Operator for FeatureConcat {
    fn handle(&mut self, backend: &mut dyn StateBackend, event: Event) -> Result<()> {
        let event = &event;
        let ts = event.ts();
        if self.watermarks.is_late(ts) {
            self.bump(&format!("late_{}", event.kind()));
        } else {
            match event {
                Event::Exposure {
                    request,
                    ts,
                    item,
                    payload,
                } => {
                    self.bump("exposures");
                    let e = StoredEvent::Exposure {
                        ts: *ts,
                        item: *item,
                        payload: payload.clone(),
                    };
                    self.store(backend, *request, e)?;
                }
                Event::ExposureClick { request, ts } => {
                    self.bump("clicks");
                    self.store(backend, *request, StoredEvent::Click { ts: *ts })?;
                }
                Event::Feature {
                    request,
                    ts,
                    payload,
                } => {
                    self.bump("features");
                    let f = StoredFeature {
                        ts: *ts,
                        payload: payload.clone(),
                    };
                    self.on_feature(backend, *request, f)?;
                }
                other => return Err(wrong_event("feature-concat", other)),
            }
        }
        Ok(())
    }

    /// A feature reads its request's stored events (written up to the join's delay before,
    /// so likely out of memory): named ahead. Exposures and clicks only append.
    fn prefetch(&self, backend: &dyn StateBackend, event: &Event) -> Result<()> {
        if let Event::Feature { request, .. } = event {
            let ctx = KeyContext::new(backend, request)?;
            backend.prefetch(&[ctx.scope(self.events.id())])?;
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
        c.insert("samples_fingerprint".into(), self.fingerprint.value());
        c
    }

    fn check(&self, input: &[Event]) -> Option<Vec<CheckOutcome>> {
        let samples = self.samples.as_ref()?;
        let late = late_flags(
            input,
            millis(self.params.out_of_orderness),
            millis(self.params.watermark_interval),
        );
        // Per request: exposure ts, feature ts, number of clicks (non-late only).
        let mut exposure: HashMap<u64, i64> = HashMap::new();
        let mut feature: HashMap<u64, i64> = HashMap::new();
        let mut clicks: HashMap<u64, u64> = HashMap::new();
        for (e, &is_late) in input.iter().zip(&late) {
            if is_late {
                continue;
            }
            match e {
                Event::Exposure { request, ts, .. } => {
                    exposure.insert(*request, *ts);
                }
                Event::Feature { request, ts, .. } => {
                    feature.insert(*request, *ts);
                }
                Event::ExposureClick { request, .. } => *clicks.entry(*request).or_default() += 1,
                _ => {}
            }
        }
        let both: HashSet<u64> = exposure
            .keys()
            .filter(|r| feature.contains_key(r))
            .copied()
            .collect();
        // Safe margin: the two parts arrive well within each other's timer.
        let margin = self.delay
            - millis(self.params.out_of_orderness)
            - millis(self.params.watermark_interval);
        let certain: HashSet<u64> = both
            .iter()
            .filter(|r| (exposure[r] - feature[r]).abs() < margin)
            .copied()
            .collect();
        let joined: HashSet<u64> = samples.iter().map(|s| s.0).collect();
        let bad_clicks = samples
            .iter()
            .filter(|(r, c)| *c > clicks.get(r).copied().unwrap_or(0))
            .count();
        let rate = if both.is_empty() {
            1.0
        } else {
            joined.intersection(&both).count() as f64 / both.len() as f64
        };
        Some(vec![
            CheckOutcome::equal(
                "each request joined at most once",
                samples.len(),
                joined.len(),
            ),
            CheckOutcome::equal(
                "joined requests had exposure and feature",
                0,
                joined.difference(&both).count(),
            ),
            CheckOutcome::equal(
                "requests that must join and did not",
                0,
                certain.difference(&joined).count(),
            ),
            CheckOutcome::equal("samples with more clicks than the input", 0, bad_clicks),
            CheckOutcome {
                name: "join rate of requests whose feature arrived > 99%".into(),
                passed: rate > 0.99,
                expected: "> 0.99".into(),
                actual: format!("{rate:.5}"),
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::InstanceConfig;

    #[test]
    fn self_check_passes_and_state_is_empty_at_the_end() {
        let params = FeatureConcatParams {
            late_fraction: 0.01,
            click_fraction: 0.3,
            feature_size: 64,
            ..Default::default()
        };
        let scale = super::super::test_scale(15 * 60, 1, 20.0);
        let input: Vec<Event> = FeatureConcatGenerator::new(&params, &scale, 5)
            .unwrap()
            .collect();
        let mut backend = MemoryBackend::open(InstanceConfig::single(32).unwrap()).unwrap();
        let mut op = FeatureConcat::new(&mut backend, &params, true).unwrap();
        for e in &input {
            op.process(&mut backend, e.clone()).unwrap();
        }
        op.finish(&mut backend).unwrap();
        let checks = op.check(&input).unwrap();
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        let c = op.counters();
        assert!(
            c["joined_on_feature"] > 1000 && c["joined_on_timer"] > 1000,
            "{c:?}"
        );
        assert!(c["expired_without_feature"] > 0, "{c:?}");
        let mut live = 0;
        for id in [op.events.id(), op.feature.id()] {
            statekit_backend::StateRead::scan_state(
                &backend,
                id,
                statekit_backend::KeyGroupRange::all(32).unwrap(),
                &mut |_| {
                    live += 1;
                    Ok(statekit_backend::Visit::Continue)
                },
            )
            .unwrap();
        }
        assert_eq!(live, 0, "all state expires");
    }

    #[test]
    fn the_staging_area_is_sized_once_for_what_the_generator_looks_ahead() {
        // A tenth of the reference rate; small payloads, as only the staging area is under
        // test.
        let params = FeatureConcatParams {
            feature_size: 8,
            exposure_size: 8,
            ..Default::default()
        };
        let scale = super::super::test_scale(75, 1, 2_000.0);
        let mut generator = FeatureConcatGenerator::new(&params, &scale, 5).unwrap();
        let reserved = generator.staging.reserved();
        // 30 s ahead: ~60,000 exposures and ~60,000 features staged at once.
        assert!(
            (120_000..200_000).contains(&reserved),
            "reserved {reserved}"
        );
        let events = generator.by_ref().count();
        assert!(events > 290_000, "{events} events");
        assert_eq!(generator.staging.reserved(), reserved, "it never grew");
    }

    #[test]
    fn an_extreme_rate_reserves_a_bounded_staging_area() {
        let params = FeatureConcatParams {
            click_fraction: 1.0,
            click_delay_mean: Duration::from_secs(86_400),
            ..Default::default()
        };
        let scale = super::super::test_scale(86_400, 1, 1e12);
        assert_eq!(staged_at_once(&params, &scale), STAGING_RESERVE_LIMIT);
        let tiny = super::super::test_scale(1, 1, 3.0);
        assert_eq!(
            staged_at_once(&params, &tiny),
            9,
            "never more than the whole input"
        );
    }
}

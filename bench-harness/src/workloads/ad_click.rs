//! ad-click-interval-join: ad displays joined with the clicks of the same user that come
//! within 20 minutes after them (seed 001 of `WORKLOADS.md`).

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp, Zipf};
use serde::{Deserialize, Serialize};
use statekit_backend::typed::KeyContext;
use statekit_backend::{Error, Result, StateBackend};

use super::{
    decode_progress, encode_progress, wrong_event, ArrivalQueue, CheckOutcome, Disorder, Operator,
    ScaleSpec, EPOCH_MS,
};
use crate::event::{Click, Display, Event};
use crate::operators::interval_join::{IntervalJoin, JoinBounds, JoinProgress};
use crate::util::{de_duration, millis, mix64, payload, Counters, SetFingerprint};
use crate::watermark::WatermarkGenerator;

/// The workload's parameters (`[params]` of its profile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdClickParams {
    /// A click joins the displays of its user in `[click.ts - window, click.ts]`.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub window: Duration,
    /// Allowed disorder of arrivals; the watermark trails the largest timestamp by this.
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
    /// Granularity of cleanup timers.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub cleanup_bucket: Duration,
    /// Zipf exponent of user popularity.
    pub zipf_exponent: f64,
    /// Fraction of displays that get a click.
    pub click_fraction: f64,
    /// Mean of the exponential delay from display to click.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub click_delay_mean: Duration,
    /// Fraction of clicks delayed beyond the window (they must not join their display).
    pub beyond_window_fraction: f64,
    /// Fraction of events that arrive later than the allowed disorder (dropped as late).
    pub late_fraction: f64,
    /// Smallest display payload, bytes.
    pub payload_min: usize,
    /// Largest display payload, bytes.
    pub payload_max: usize,
}

impl Default for AdClickParams {
    fn default() -> Self {
        AdClickParams {
            window: Duration::from_secs(20 * 60),
            out_of_orderness: Duration::from_secs(5),
            watermark_interval: Duration::from_millis(200),
            cleanup_bucket: Duration::from_secs(1),
            zipf_exponent: 0.6,
            click_fraction: 0.03,
            click_delay_mean: Duration::from_secs(60),
            beyond_window_fraction: 0.01,
            late_fraction: 0.0005,
            payload_min: 300,
            payload_max: 600,
        }
    }
}

impl AdClickParams {
    /// Checks the values; errors name the field.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field and the rule it breaks.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let frac = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err((
                    name.to_string(),
                    format!("must be a fraction in [0, 1], not {v}"),
                ))
            }
        };
        frac("click_fraction", self.click_fraction)?;
        frac("beyond_window_fraction", self.beyond_window_fraction)?;
        frac("late_fraction", self.late_fraction)?;
        if self.zipf_exponent < 0.0 || !self.zipf_exponent.is_finite() {
            return Err((
                "zipf_exponent".into(),
                "must be a finite number >= 0".into(),
            ));
        }
        if self.payload_min > self.payload_max || self.payload_max > 64 << 20 {
            return Err((
                "payload_max".into(),
                format!(
                    "must be >= payload_min ({}) and at most 64 MiB, not {}",
                    self.payload_min, self.payload_max
                ),
            ));
        }
        if self.watermark_interval.is_zero() || self.cleanup_bucket.is_zero() {
            return Err((
                "watermark_interval".into(),
                "intervals must be positive".into(),
            ));
        }
        if self.click_delay_mean.is_zero() {
            return Err(("click_delay_mean".into(), "must be positive".into()));
        }
        Ok(())
    }
}

/// Generates displays at a steady rate over Zipf-popular users, clicks on some of them after
/// an exponential delay, and delivers both with bounded disorder. Deterministic from the seed.
pub struct AdClickGenerator {
    rng: rand_chacha::ChaCha8Rng,
    params: AdClickParams,
    users: Zipf<f64>,
    delay: Exp<f64>,
    rate: f64,
    total: u64,
    next: u64,
    end_ts: i64,
    next_click_id: u64,
    clicks: BinaryHeap<std::cmp::Reverse<(i64, u64, u64, u64)>>,
    arrivals: ArrivalQueue,
    disorder: Disorder,
}

impl AdClickGenerator {
    /// A generator of `scale` with `params`, from `seed`.
    ///
    /// # Errors
    /// `InvalidArgument` for parameters the distributions reject.
    pub fn new(params: &AdClickParams, scale: &ScaleSpec, seed: u64) -> Result<Self> {
        let users = Zipf::new(scale.keys.max(1) as f64, params.zipf_exponent)
            .map_err(|e| Error::invalid(format!("zipf over {} users: {e}", scale.keys)))?;
        let delay = Exp::new(1.0 / params.click_delay_mean.as_secs_f64().max(1e-3))
            .map_err(|e| Error::invalid(format!("click delay: {e}")))?;
        if scale.events_per_sec <= 0.0 || !scale.events_per_sec.is_finite() {
            return Err(Error::invalid("events_per_sec must be positive"));
        }
        Ok(AdClickGenerator {
            rng: super::rng(seed, 1),
            params: params.clone(),
            users,
            delay,
            rate: scale.events_per_sec,
            total: scale.main_events(),
            next: 0,
            end_ts: EPOCH_MS.saturating_add(millis(scale.duration)),
            next_click_id: 0,
            clicks: BinaryHeap::new(),
            arrivals: ArrivalQueue::default(),
            disorder: Disorder {
                out_of_orderness_ms: millis(params.out_of_orderness),
                late_fraction: params.late_fraction,
            },
        })
    }

    fn display_ts(&self, index: u64) -> i64 {
        EPOCH_MS + (index as f64 * 1000.0 / self.rate) as i64
    }

    fn make_display(&mut self, index: u64) -> Display {
        let ts = self.display_ts(index);
        let rank = self.users.sample(&mut self.rng) as u64;
        let len = self
            .rng
            .random_range(self.params.payload_min..=self.params.payload_max);
        let display = Display {
            id: index + 1,
            user: mix64(rank),
            ts,
            ad: self.rng.random_range(1..=50_000),
            payload: payload(&mut self.rng, len),
        };
        if self.rng.random_bool(self.params.click_fraction) {
            let window = millis(self.params.window);
            let delay = if self.rng.random_bool(self.params.beyond_window_fraction) {
                window + self.rng.random_range(1..=window.max(2) / 2)
            } else {
                self.delay.sample(&mut self.rng) as i64
            };
            let click_ts = ts.saturating_add(delay);
            if click_ts < self.end_ts {
                self.next_click_id += 1;
                self.clicks.push(std::cmp::Reverse((
                    click_ts,
                    self.next_click_id,
                    display.user,
                    display.id,
                )));
            }
        }
        display
    }
}

impl Iterator for AdClickGenerator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            let horizon = if self.next < self.total {
                self.display_ts(self.next)
            } else {
                i64::MAX
            };
            while let Some(std::cmp::Reverse((ts, id, user, display))) = self.clicks.peek().copied()
            {
                if ts > horizon {
                    break;
                }
                self.clicks.pop();
                let click = Event::Click(Click {
                    id,
                    user,
                    ts,
                    display,
                });
                self.arrivals.push(&mut self.rng, self.disorder, click);
            }
            if let Some(event) = self.arrivals.pop_ready(horizon) {
                return Some(event);
            }
            if self.next >= self.total {
                debug_assert!(self.arrivals.is_empty() && self.clicks.is_empty());
                return None;
            }
            let display = self.make_display(self.next);
            self.next += 1;
            self.arrivals
                .push(&mut self.rng, self.disorder, Event::Display(display));
        }
    }
}

/// A display as buffered by the join (the user and timestamp are in the state's key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BufferedDisplay {
    /// Display id.
    pub id: u64,
    /// Ad id.
    pub ad: u64,
    /// Body: the input's UTF-8 text, kept as bytes. Reading it back from state then needs no
    /// UTF-8 check (which was a quarter of a click's scan on the memory backend), as Flink's
    /// `BinaryStringData` is read back without one; the encoding is the same as a string's.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A click as buffered by the join.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BufferedClick {
    /// Click id.
    pub id: u64,
    /// The display it came from.
    pub display: u64,
}

/// What [`AdClickJoin`] keeps outside its keyed state.
#[derive(Serialize, Deserialize)]
struct AdClickProgress {
    watermarks: WatermarkGenerator,
    fingerprint: SetFingerprint,
    watermarks_emitted: u64,
    join: JoinProgress,
}

/// The ad-click job: an [`IntervalJoin`] of displays and clicks keyed by user, with
/// watermarks every `watermark_interval` of event time.
pub struct AdClickJoin {
    join: IntervalJoin<BufferedDisplay, BufferedClick>,
    watermarks: WatermarkGenerator,
    params: AdClickParams,
    fingerprint: SetFingerprint,
    pairs: Option<Vec<(u64, u64)>>,
    /// With `pairs`: of each joined display, its id and [`display_digest`] of what the join
    /// read back from state, for the self-check to compare with the input.
    read_back: Option<Vec<(u64, u64)>>,
    watermarks_emitted: u64,
}

/// A digest of a display's ad and payload: what the join reads back from state must be what
/// the input held.
fn display_digest(ad: u64, payload: &[u8]) -> u64 {
    mix64(ad ^ xxhash_rust::xxh3::xxh3_64(payload))
}

impl AdClickJoin {
    /// Registers the job's state in `backend`. With `collect`, every joined
    /// `(display id, click id)` pair is kept for [`AdClickJoin::pairs`] and the self-check.
    ///
    /// # Errors
    /// As [`IntervalJoin::register`].
    pub fn new(
        backend: &mut dyn StateBackend,
        params: &AdClickParams,
        collect: bool,
    ) -> Result<Self> {
        let bounds = JoinBounds::new(0, millis(params.window))?;
        Ok(AdClickJoin {
            join: IntervalJoin::register(
                backend,
                "ad-click",
                bounds,
                millis(params.cleanup_bucket),
            )?,
            watermarks: WatermarkGenerator::new(
                millis(params.out_of_orderness),
                millis(params.watermark_interval),
            ),
            params: params.clone(),
            fingerprint: SetFingerprint::default(),
            pairs: collect.then(Vec::new),
            read_back: collect.then(Vec::new),
            watermarks_emitted: 0,
        })
    }

    /// The joined pairs, if collected.
    pub fn pairs(&self) -> Option<&[(u64, u64)]> {
        self.pairs.as_deref()
    }

    fn advance(&mut self, backend: &mut dyn StateBackend, watermark: i64) -> Result<()> {
        self.watermarks_emitted += 1;
        self.join.advance_watermark(backend, watermark)
    }
}

impl Operator for AdClickJoin {
    fn handle(&mut self, backend: &mut dyn StateBackend, event: Event) -> Result<()> {
        let fingerprint = &mut self.fingerprint;
        let pairs = &mut self.pairs;
        let read_back = &mut self.read_back;
        // The digest of the display read back from state goes into the fingerprint, so
        // backends that return different payloads differ at every scale.
        let mut emit = |display: &BufferedDisplay, click: u64| {
            let digest = display_digest(display.ad, &display.payload);
            fingerprint.add(&[display.id, click, digest]);
            if let (Some(p), Some(r)) = (pairs.as_mut(), read_back.as_mut()) {
                p.push((display.id, click));
                r.push((display.id, digest));
            }
        };
        match event {
            Event::Display(d) => {
                let user = KeyContext::new(&*backend, &d.user)?;
                let buffered = BufferedDisplay {
                    id: d.id,
                    ad: d.ad,
                    payload: d.payload.into_bytes(),
                };
                self.join
                    .process_left(backend, &user, d.ts, buffered, |_, l, _, r| emit(l, r.id))?;
            }
            Event::Click(c) => {
                let user = KeyContext::new(&*backend, &c.user)?;
                let buffered = BufferedClick {
                    id: c.id,
                    display: c.display,
                };
                self.join
                    .process_right(backend, &user, c.ts, buffered, |_, l, _, r| emit(l, r.id))?;
            }
            other => return Err(wrong_event("ad-click-interval-join", &other)),
        }
        Ok(())
    }

    /// A click reads its user's displays, which may have left memory long ago: named ahead.
    /// A display reads its user's clicks, a small state that stays in memory: not named, as a
    /// hint per display would cost more than it saves.
    fn prefetch(&self, backend: &dyn StateBackend, event: &Event) -> Result<()> {
        if let Event::Click(c) = event {
            let user = KeyContext::new(backend, &c.user)?;
            self.join.prefetch_right(backend, &user)?;
        }
        Ok(())
    }

    crate::workloads::watermark_plumbing!();

    fn save_progress(&self) -> Result<Vec<u8>> {
        encode_progress(&AdClickProgress {
            watermarks: self.watermarks.clone(),
            fingerprint: self.fingerprint,
            watermarks_emitted: self.watermarks_emitted,
            join: self.join.progress(),
        })
    }

    fn load_progress(&mut self, bytes: &[u8]) -> Result<()> {
        let p: AdClickProgress = decode_progress(bytes)?;
        self.watermarks = p.watermarks;
        self.fingerprint = p.fingerprint;
        self.watermarks_emitted = p.watermarks_emitted;
        self.join.resume(p.join);
        Ok(())
    }

    fn counters(&self) -> Counters {
        let s = self.join.stats();
        Counters::from([
            ("displays".into(), s.left_elements),
            ("clicks".into(), s.right_elements),
            ("late_displays".into(), s.late_left),
            ("late_clicks".into(), s.late_right),
            ("joined_pairs".into(), s.joined_pairs),
            ("joined_pairs_fingerprint".into(), self.fingerprint.value()),
            ("cleanup_timers_fired".into(), s.cleanup_timers),
            ("watermarks".into(), self.watermarks_emitted),
        ])
    }

    fn check(&self, input: &[Event]) -> Option<Vec<CheckOutcome>> {
        let actual_pairs = self.pairs.as_ref()?;
        let expected = reference_join(input, &self.params);
        let actual: HashSet<(u64, u64)> = actual_pairs.iter().copied().collect();
        let s = self.join.stats();
        let missing = expected.pairs.difference(&actual).count();
        let extra = actual.difference(&expected.pairs).count();
        let wrong_payloads = self
            .read_back
            .as_ref()?
            .iter()
            .filter(|(id, digest)| expected.display_digests.get(id) != Some(digest))
            .count();
        Some(vec![
            CheckOutcome::equal(
                "joined pairs (count)",
                expected.pairs.len() as u64,
                s.joined_pairs,
            ),
            CheckOutcome::equal(
                "joined pairs missing / unexpected",
                (0, 0),
                (missing, extra),
            ),
            CheckOutcome::equal("no pair emitted twice", actual_pairs.len(), actual.len()),
            CheckOutcome::equal(
                "joined displays whose ad or payload read back from state differs from the input",
                0,
                wrong_payloads,
            ),
            CheckOutcome::equal(
                "late displays / clicks",
                (expected.late_displays, expected.late_clicks),
                (s.late_left, s.late_right),
            ),
        ])
    }
}

/// The expected result of the join, computed without state: which events are late, and the
/// pairs by a nested loop over each user's displays and clicks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceJoin {
    /// `(display id, click id)` pairs.
    pub pairs: HashSet<(u64, u64)>,
    /// Of each non-late display, the digest of its ad and payload.
    pub display_digests: HashMap<u64, u64>,
    /// Displays that arrived behind the watermark.
    pub late_displays: u64,
    /// Clicks that arrived behind the watermark.
    pub late_clicks: u64,
}

/// Computes [`ReferenceJoin`] for `input` in arrival order.
pub fn reference_join(input: &[Event], params: &AdClickParams) -> ReferenceJoin {
    let ooo = millis(params.out_of_orderness);
    let interval = millis(params.watermark_interval).max(1);
    let window = millis(params.window);
    let (mut max_ts, mut watermark, mut next_emit) = (i64::MIN, i64::MIN, i64::MIN);
    // Per user: (ts, id) of its non-late displays and clicks.
    type Sides = (Vec<(i64, u64)>, Vec<(i64, u64)>);
    let mut by_user: HashMap<u64, Sides> = HashMap::new();
    let mut out = ReferenceJoin::default();
    for event in input {
        let ts = event.ts();
        let late = ts < watermark;
        match event {
            Event::Display(_) if late => out.late_displays += 1,
            Event::Click(_) if late => out.late_clicks += 1,
            Event::Display(d) => {
                out.display_digests
                    .insert(d.id, display_digest(d.ad, d.payload.as_bytes()));
                by_user.entry(d.user).or_default().0.push((d.ts, d.id));
            }
            Event::Click(c) => by_user.entry(c.user).or_default().1.push((c.ts, c.id)),
            _ => {}
        }
        max_ts = max_ts.max(ts);
        if max_ts >= next_emit {
            next_emit = (max_ts.div_euclid(interval) + 1) * interval;
            watermark = watermark.max(max_ts - ooo);
        }
    }
    for (displays, clicks) in by_user.values() {
        for &(dts, did) in displays {
            for &(cts, cid) in clicks {
                if dts <= cts && cts <= dts + window {
                    out.pairs.insert((did, cid));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::InstanceConfig;

    #[test]
    fn generator_is_deterministic_and_disordered_within_bounds() {
        let params = AdClickParams {
            late_fraction: 0.0,
            ..AdClickParams::default()
        };
        let scale = super::super::test_scale(120, 200, 50.0);
        let a: Vec<Event> = AdClickGenerator::new(&params, &scale, 7).unwrap().collect();
        let b: Vec<Event> = AdClickGenerator::new(&params, &scale, 7).unwrap().collect();
        assert_eq!(a, b);
        let displays = a.iter().filter(|e| matches!(e, Event::Display(_))).count();
        assert_eq!(displays, 6000);
        let mut max = i64::MIN;
        let mut disordered = 0;
        for e in &a {
            assert!(
                e.ts() >= max.saturating_sub(5_000),
                "disorder beyond 5 s: {e:?} after max {max}"
            );
            disordered += usize::from(e.ts() < max);
            max = max.max(e.ts());
        }
        assert!(disordered > 100, "the stream must be out of order");
        let c: Vec<Event> = AdClickGenerator::new(&params, &scale, 8).unwrap().collect();
        assert_ne!(a, c);
    }

    #[test]
    fn self_check_passes_at_small_scale() {
        let params = AdClickParams {
            late_fraction: 0.01,
            click_fraction: 0.2,
            ..AdClickParams::default()
        };
        let scale = super::super::test_scale(40 * 60, 50, 5.0);
        let input: Vec<Event> = AdClickGenerator::new(&params, &scale, 3).unwrap().collect();
        let mut backend = MemoryBackend::open(InstanceConfig::single(32).unwrap()).unwrap();
        let mut op = AdClickJoin::new(&mut backend, &params, true).unwrap();
        for e in &input {
            op.process(&mut backend, e.clone()).unwrap();
        }
        op.finish(&mut backend).unwrap();
        let checks = op.check(&input).unwrap();
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        let c = op.counters();
        assert!(
            c["joined_pairs"] > 1000 && c["late_displays"] > 0 && c["cleanup_timers_fired"] > 0,
            "{c:?}"
        );
    }

    #[test]
    fn self_check_catches_payloads_that_differ_from_the_input() {
        let params = AdClickParams {
            late_fraction: 0.0,
            click_fraction: 0.2,
            ..AdClickParams::default()
        };
        let scale = super::super::test_scale(5 * 60, 50, 5.0);
        let input: Vec<Event> = AdClickGenerator::new(&params, &scale, 5).unwrap().collect();
        let mut backend = MemoryBackend::open(InstanceConfig::single(32).unwrap()).unwrap();
        let mut op = AdClickJoin::new(&mut backend, &params, true).unwrap();
        for e in &input {
            op.process(&mut backend, e.clone()).unwrap();
        }
        op.finish(&mut backend).unwrap();
        // What state returned no longer matches the input of one joined display: as if the
        // backend had returned another payload for it.
        let joined = op.pairs().unwrap()[0].0;
        let mut altered = input.clone();
        for e in &mut altered {
            if let Event::Display(d) = e {
                if d.id == joined {
                    d.payload.push('x');
                }
            }
        }
        let failed: Vec<String> = op
            .check(&altered)
            .unwrap()
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            failed,
            ["joined displays whose ad or payload read back from state differs from the input"]
        );
    }
}

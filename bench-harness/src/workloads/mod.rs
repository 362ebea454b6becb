//! The four reference workloads (see `WORKLOADS.md`): for each, its parameters, a
//! deterministic generator, the operator that runs it on a backend, and an independent
//! computation of the expected results for the self-check.

pub mod ad_click;
mod arrival;
pub mod daily_uv;
pub mod feature_concat;
pub mod sliding_window;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statekit_backend::{Result, StateBackend};

use crate::watermark::WatermarkGenerator;

use crate::event::Event;
use crate::util::Counters;

pub(crate) use arrival::{ArrivalQueue, Disorder, Staging, Timestamped};

/// The size knobs of one scale of a profile (the workload's semantics live in its params).
/// Read from a profile's `[scales.NAME]` table, whose omitted fields take the workload's
/// defaults (see [`crate::profile`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleSpec {
    /// Simulated event time covered by the input.
    #[serde(serialize_with = "ser_duration")]
    pub duration: Duration,
    /// Number of distinct keys (users, requests in flight, hexagons, devices per day).
    pub keys: u64,
    /// Events per second of event time on the main stream.
    pub events_per_sec: f64,
    /// The memory budget given to backends that take one (`256MiB`); reports compare peak
    /// resident memory against it.
    pub memory_budget: Option<u64>,
    /// Whether runs keep their input and outputs to check them against an independent
    /// computation (only sensible at small scales).
    pub self_check: bool,
    /// Take a checkpoint every this much event time, if set.
    #[serde(serialize_with = "ser_opt_duration")]
    pub checkpoint_interval: Option<Duration>,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn ser_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

impl ScaleSpec {
    /// Number of main-stream events the scale generates.
    pub fn main_events(&self) -> u64 {
        (self.duration.as_secs_f64() * self.events_per_sec).round() as u64
    }
}

/// The outcome of one self-check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// What was checked.
    pub name: String,
    /// Whether the operator's results matched the independent computation.
    pub passed: bool,
    /// What the independent computation expected.
    pub expected: String,
    /// What the operator produced.
    pub actual: String,
}

impl CheckOutcome {
    /// A check of two values for equality.
    pub fn equal<T: PartialEq + std::fmt::Debug>(name: &str, expected: T, actual: T) -> Self {
        CheckOutcome {
            name: name.to_string(),
            passed: expected == actual,
            expected: format!("{expected:?}"),
            actual: format!("{actual:?}"),
        }
    }
}

/// A streaming operator the harness drives: events in arrival order, then the end of input.
pub trait Operator {
    /// The state work of one event (late ones are dropped and counted inside); the
    /// watermark is advanced by [`Operator::process`] afterwards.
    ///
    /// # Errors
    /// Backend errors; `InvalidArgument` for an event kind this operator does not take.
    /// The event comes by value: an operator that buffers its payload keeps it without a
    /// copy (for ad-click, copying each display's body was 4% of the memory backend's run).
    fn handle(&mut self, backend: &mut dyn StateBackend, event: Event) -> Result<()>;

    /// Names the state `event` will read, some events before it is handled
    /// ([`crate::prefetch_window`]), so a backend with slow storage can load it meanwhile
    /// ([`StateRead::prefetch`](statekit_backend::StateRead::prefetch)). A hint: the
    /// results do not depend on it. Default: nothing.
    ///
    /// # Errors
    /// The backend's, for a key it does not own.
    fn prefetch(&self, backend: &dyn StateBackend, event: &Event) -> Result<()> {
        let _ = (backend, event);
        Ok(())
    }

    /// Fires what the watermark `watermark` makes due (timers, windows, cleanup).
    ///
    /// # Errors
    /// Backend errors.
    fn on_watermark(&mut self, backend: &mut dyn StateBackend, watermark: i64) -> Result<()>;

    /// The operator's watermark generator.
    fn watermarks(&self) -> &WatermarkGenerator;

    /// The operator's watermark generator, to advance it.
    fn watermarks_mut(&mut self) -> &mut WatermarkGenerator;

    /// The result counters: equal on every backend for the same input.
    fn counters(&self) -> Counters;

    /// Checks the collected outputs against an independent computation on `input` (the
    /// same events, in arrival order). `None` if outputs were not collected.
    fn check(&self, input: &[Event]) -> Option<Vec<CheckOutcome>>;

    /// The states that outlive the final watermark by design (a dictionary kept forever,
    /// say); every other state must be empty once the final watermark has fired.
    fn kept_states(&self) -> &'static [&'static str] {
        &[]
    }

    /// What the operator keeps outside its keyed state (watermark, counters, fingerprints,
    /// id counters), for a checkpoint: with the backend's checkpoint and the source's offset
    /// it is all a restore needs. Outputs collected for the self-check are not included.
    ///
    /// # Errors
    /// Encoding errors.
    fn save_progress(&self) -> Result<Vec<u8>>;

    /// Resumes from [`Operator::save_progress`]'s bytes after the backend was restored from
    /// the same checkpoint.
    ///
    /// # Errors
    /// `Corruption` for bytes that do not decode.
    fn load_progress(&mut self, bytes: &[u8]) -> Result<()>;

    /// Processes one event, then advances the watermark if the event moves it (a late
    /// event never moves it back).
    ///
    /// # Errors
    /// As [`Operator::handle`] and [`Operator::on_watermark`].
    fn process(&mut self, backend: &mut dyn StateBackend, event: Event) -> Result<()> {
        let ts = event.ts();
        self.handle(backend, event)?;
        if let Some(wm) = self.watermarks_mut().observe(ts) {
            self.on_watermark(backend, wm)?;
        }
        Ok(())
    }

    /// Advances to a watermark that comes from outside rather than from the operator's own
    /// generator (an engine's input frontier, in a distributed run): elements below it are
    /// late from now on, and what it makes due fires.
    ///
    /// # Errors
    /// As [`Operator::on_watermark`].
    fn advance_watermark(&mut self, backend: &mut dyn StateBackend, watermark: i64) -> Result<()> {
        self.watermarks_mut().advance_to(watermark);
        self.on_watermark(backend, watermark)
    }

    /// Ends the input: the watermark goes to the end of time, every timer fires.
    ///
    /// # Errors
    /// Backend errors.
    fn finish(&mut self, backend: &mut dyn StateBackend) -> Result<()> {
        let wm = self.watermarks_mut().finish();
        self.on_watermark(backend, wm)
    }

    /// The current watermark (for checkpoint scheduling).
    fn watermark(&self) -> i64 {
        self.watermarks().current()
    }
}

/// The watermark plumbing of an [`Operator`] whose generator is its `watermarks` field and
/// whose inherent `advance(backend, watermark)` fires what a watermark makes due.
macro_rules! watermark_plumbing {
    () => {
        fn on_watermark(
            &mut self,
            backend: &mut dyn statekit_backend::StateBackend,
            watermark: i64,
        ) -> statekit_backend::Result<()> {
            self.advance(backend, watermark)
        }

        fn watermarks(&self) -> &crate::watermark::WatermarkGenerator {
            &self.watermarks
        }

        fn watermarks_mut(&mut self) -> &mut crate::watermark::WatermarkGenerator {
            &mut self.watermarks
        }
    };
}
pub(crate) use watermark_plumbing;

/// The progress of an operator whose results are counters and a fingerprint (feature-concat,
/// sliding-window, daily-uv), plus an id counter if it keeps one.
#[derive(Serialize, Deserialize)]
pub(crate) struct CountersProgress {
    pub(crate) watermarks: crate::watermark::WatermarkGenerator,
    pub(crate) counters: Counters,
    pub(crate) fingerprint: crate::util::SetFingerprint,
    #[serde(default)]
    pub(crate) next_id: u32,
}

impl CountersProgress {
    /// Encodes the parts an operator keeps outside its state.
    pub(crate) fn save(
        watermarks: &crate::watermark::WatermarkGenerator,
        counters: &Counters,
        fingerprint: crate::util::SetFingerprint,
        next_id: u32,
    ) -> Result<Vec<u8>> {
        encode_progress(&CountersProgress {
            watermarks: watermarks.clone(),
            counters: counters.clone(),
            fingerprint,
            next_id,
        })
    }
}

/// Encodes an operator's progress (see [`Operator::save_progress`]).
pub(crate) fn encode_progress<T: Serialize>(progress: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(progress).map_err(|e| {
        statekit_backend::Error::new(
            statekit_backend::ErrorKind::Internal,
            format!("encoding operator progress: {e}"),
        )
    })
}

/// Decodes an operator's progress.
pub(crate) fn decode_progress<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        statekit_backend::Error::corruption(format!("operator progress does not decode: {e}"))
    })
}

pub(crate) fn wrong_event(workload: &str, event: &Event) -> statekit_backend::Error {
    statekit_backend::Error::invalid(format!(
        "event kind '{}' is not an input of the {workload} workload",
        event.kind()
    ))
}

/// The first event time of generated streams (2023-11-14T22:13:20Z): realistic epoch
/// milliseconds, so file dumps look like real topics.
pub const EPOCH_MS: i64 = 1_700_000_000_000;

#[cfg(test)]
pub(crate) fn test_scale(duration_s: u64, keys: u64, rate: f64) -> ScaleSpec {
    ScaleSpec {
        duration: Duration::from_secs(duration_s),
        keys,
        events_per_sec: rate,
        memory_budget: None,
        self_check: true,
        checkpoint_interval: None,
    }
}

/// The random source of generators: ChaCha8, portable and stable across platforms and
/// releases, so a seed names the same stream everywhere.
pub(crate) fn rng(seed: u64, stream: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(crate::util::mix64(seed ^ crate::util::mix64(stream)))
}

/// The independent watermark of the self-checks: which events of `input` (in arrival order)
/// are late, written out separately from [`crate::watermark::WatermarkGenerator`].
pub(crate) fn late_flags(input: &[Event], out_of_orderness_ms: i64, interval_ms: i64) -> Vec<bool> {
    let interval = interval_ms.max(1);
    let (mut max_ts, mut watermark, mut next_emit) = (i64::MIN, i64::MIN, i64::MIN);
    input
        .iter()
        .map(|e| {
            let late = e.ts() < watermark;
            max_ts = max_ts.max(e.ts());
            if max_ts >= next_emit {
                next_emit = (max_ts.div_euclid(interval) + 1) * interval;
                watermark = watermark.max(max_ts - out_of_orderness_ms);
            }
            late
        })
        .collect()
}

/// Rounds `t` down to a multiple of `step`.
pub(crate) fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step.max(1)) * step.max(1)
}

pub(crate) fn check_fraction(name: &str, v: f64) -> std::result::Result<(), (String, String)> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err((
            name.to_string(),
            format!("must be a fraction in [0, 1], not {v}"),
        ))
    }
}

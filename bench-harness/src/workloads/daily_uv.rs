//! daily-uv: unique devices per dimension value and day (seed 002 of `WORKLOADS.md`).
//!
//! - A dictionary state maps each device id (a 36-byte UUID string) to a compact integer:
//!   a point lookup per event and an insert when absent; large, random, no locality.
//! - The mapped ids of each dimension value are appended (a merge, no read) to a pending
//!   list per flush bucket (1 minute). When the bucket's timer fires, the dimension's bitmap
//!   of the day (a roaring bitmap, up to MBs) is read, the pending ids are added, the
//!   bitmap is written back and its cardinality is emitted.
//! - At the end of the day a timer clears the day's bitmaps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use rand::Rng;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use statekit_backend::typed::{KeyContext, ListState, TimerService, ValueState};
use statekit_backend::{Error, Result, StateBackend};

use super::{
    check_fraction, decode_progress, floor_to, late_flags, wrong_event, ArrivalQueue, CheckOutcome,
    CountersProgress, Disorder, Operator, ScaleSpec, EPOCH_MS,
};
use crate::event::Event;
use crate::util::{de_duration, millis, mix64, Counters, SetFingerprint};
use crate::watermark::WatermarkGenerator;

/// The workload's parameters. `keys` of the scale is the number of distinct devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DailyUvParams {
    /// Number of dimension values.
    pub dimensions: u32,
    /// How often the bitmaps are updated and cardinalities emitted.
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub flush_interval: Duration,
    /// Length of a "day" (shorter in quick scales so that day changes are exercised).
    #[serde(
        deserialize_with = "de_duration",
        serialize_with = "super::ser_duration"
    )]
    pub day: Duration,
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

impl Default for DailyUvParams {
    fn default() -> Self {
        DailyUvParams {
            dimensions: 1000,
            flush_interval: Duration::from_secs(60),
            day: Duration::from_secs(86_400),
            out_of_orderness: Duration::from_secs(5),
            watermark_interval: Duration::from_millis(200),
            late_fraction: 0.0005,
        }
    }
}

impl DailyUvParams {
    /// Checks the values; errors name the field.
    ///
    /// # Errors
    /// `(field, message)` for the first bad field.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        check_fraction("late_fraction", self.late_fraction)?;
        if self.dimensions == 0 {
            return Err(("dimensions".into(), "must be at least 1".into()));
        }
        let (flush, day) = (millis(self.flush_interval), millis(self.day));
        if flush <= 0 || day <= 0 || day % flush != 0 {
            return Err((
                "flush_interval".into(),
                "must be positive and divide day".into(),
            ));
        }
        if self.watermark_interval.is_zero() {
            return Err(("watermark_interval".into(), "must be positive".into()));
        }
        Ok(())
    }
}

/// The UUID text of device number `n`.
pub fn device_id(n: u64) -> String {
    let a = mix64(n);
    let b = mix64(a ^ 0x5bd1_e995);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// Generates visits of uniformly random devices under uniformly random dimension values.
pub struct DailyUvGenerator {
    rng: rand_chacha::ChaCha8Rng,
    dimensions: u32,
    devices: u64,
    rate: f64,
    total: u64,
    next: u64,
    arrivals: ArrivalQueue,
    disorder: Disorder,
}

impl DailyUvGenerator {
    /// A generator of `scale` from `seed`.
    ///
    /// # Errors
    /// Never today; kept fallible like the other generators.
    pub fn new(params: &DailyUvParams, scale: &ScaleSpec, seed: u64) -> Result<Self> {
        Ok(DailyUvGenerator {
            rng: super::rng(seed, 4),
            dimensions: params.dimensions.max(1),
            devices: scale.keys.max(1),
            rate: scale.events_per_sec,
            total: scale.main_events(),
            next: 0,
            arrivals: ArrivalQueue::default(),
            disorder: Disorder {
                out_of_orderness_ms: millis(params.out_of_orderness),
                late_fraction: params.late_fraction,
            },
        })
    }
}

impl Iterator for DailyUvGenerator {
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
            let device = device_id(self.rng.random_range(0..self.devices));
            let dimension = self.rng.random_range(0..self.dimensions);
            self.arrivals.push(
                &mut self.rng,
                self.disorder,
                Event::Visit {
                    device,
                    dimension,
                    ts,
                },
            );
        }
    }
}

/// One emitted cardinality: (dimension, flush time) -> distinct devices of the day so far.
pub type UvKey = (u32, i64);

/// The daily-UV job.
pub struct DailyUv {
    dictionary: ValueState<u32>,
    pending: ListState<u32>,
    bitmaps: ValueState<serde_bytes::ByteBuf>,
    flushes: TimerService,
    day_ends: TimerService,
    next_id: u32,
    flush: i64,
    day: i64,
    watermarks: WatermarkGenerator,
    params: DailyUvParams,
    counters: Counters,
    fingerprint: SetFingerprint,
    emitted: Option<BTreeMap<UvKey, u64>>,
}

impl DailyUv {
    /// Registers the job's state; with `collect`, cardinalities are kept for the self-check.
    ///
    /// # Errors
    /// Backend errors.
    pub fn new(
        backend: &mut dyn StateBackend,
        params: &DailyUvParams,
        collect: bool,
    ) -> Result<Self> {
        Ok(DailyUv {
            dictionary: ValueState::register(backend, "uv/dictionary")?,
            pending: ListState::register(backend, "uv/pending")?,
            bitmaps: ValueState::register(backend, "uv/bitmaps")?,
            flushes: TimerService::register(backend, "uv/flush")?,
            day_ends: TimerService::register(backend, "uv/day-end")?,
            next_id: 0,
            flush: millis(params.flush_interval).max(1),
            day: millis(params.day).max(1),
            watermarks: WatermarkGenerator::new(
                millis(params.out_of_orderness),
                millis(params.watermark_interval),
            ),
            params: params.clone(),
            counters: Counters::new(),
            fingerprint: SetFingerprint::default(),
            emitted: collect.then(BTreeMap::new),
        })
    }

    fn bump(&mut self, name: &str, by: u64) {
        *self.counters.entry(name.to_string()).or_default() += by;
    }

    /// The compact id of a device, assigned on first sight. (Ids only need to be unique per
    /// instance; a real job would keep the counter in operator state.)
    fn map_device(&mut self, backend: &mut dyn StateBackend, device: &str) -> Result<u32> {
        let ctx = KeyContext::new(&*backend, &device.to_string())?;
        if let Some(id) = self.dictionary.get(&*backend, &ctx)? {
            return Ok(id);
        }
        let id = self.next_id;
        self.next_id = id.checked_add(1).ok_or_else(|| {
            Error::new(
                statekit_backend::ErrorKind::ResourceExhausted,
                "more than 2^32 devices in one instance",
            )
        })?;
        self.dictionary.set(backend, &ctx, &id)?;
        self.bump("devices_mapped", 1);
        Ok(id)
    }

    fn on_flush(
        &mut self,
        backend: &mut dyn StateBackend,
        at: i64,
        ctx: &KeyContext,
    ) -> Result<()> {
        let dimension: u32 = ctx.key()?;
        let ids = self.pending.get(&*backend, ctx)?;
        self.pending.clear(backend, ctx)?;
        let day = floor_to(at - 1, self.day);
        let day_ctx = ctx.with_namespace(&day);
        let mut bitmap = match self.bitmaps.get(&*backend, &day_ctx)? {
            Some(bytes) => RoaringBitmap::deserialize_from(&bytes[..]).map_err(|e| {
                Error::corruption(format!("bitmap of dimension {dimension}, day {day}: {e}"))
            })?,
            None => {
                self.day_ends
                    .register_timer(backend, &day_ctx, day + self.day)?;
                RoaringBitmap::new()
            }
        };
        bitmap.extend(ids);
        let mut bytes = Vec::with_capacity(bitmap.serialized_size());
        bitmap.serialize_into(&mut bytes).map_err(|e| {
            Error::new(
                statekit_backend::ErrorKind::Internal,
                format!("bitmap encoding: {e}"),
            )
        })?;
        self.bump("bitmap_bytes_written", bytes.len() as u64);
        self.bitmaps
            .set(backend, &day_ctx, &serde_bytes::ByteBuf::from(bytes))?;
        let cardinality = bitmap.len();
        self.bump("cardinalities_emitted", 1);
        self.fingerprint
            .add(&[u64::from(dimension), at as u64, cardinality]);
        if let Some(e) = self.emitted.as_mut() {
            e.insert((dimension, at), cardinality);
        }
        Ok(())
    }

    fn advance(&mut self, backend: &mut dyn StateBackend, watermark: i64) -> Result<()> {
        loop {
            let due = self.flushes.pop_due(backend, watermark, 1024)?;
            for (at, ctx) in &due {
                self.on_flush(backend, *at, ctx)?;
            }
            let ends = self.day_ends.pop_due(backend, watermark, 1024)?;
            for (_, ctx) in &ends {
                self.bitmaps.clear(backend, ctx)?;
            }
            if due.len() < 1024 && ends.len() < 1024 {
                return Ok(());
            }
        }
    }
}

impl Operator for DailyUv {
    fn kept_states(&self) -> &'static [&'static str] {
        // Device ids keep their integer for good: a device seen on any later day maps to
        // the same bit.
        &["uv/dictionary"]
    }

    fn handle(&mut self, backend: &mut dyn StateBackend, event: Event) -> Result<()> {
        let event = &event;
        let Event::Visit {
            device,
            dimension,
            ts,
        } = event
        else {
            return Err(wrong_event("daily-uv", event));
        };
        let ts = *ts;
        if self.watermarks.is_late(ts) {
            self.bump("late_events", 1);
        } else {
            let id = self.map_device(backend, device)?;
            let bucket = floor_to(ts, self.flush);
            let ctx = KeyContext::new(&*backend, dimension)?.with_namespace(&bucket);
            self.pending.add(backend, &ctx, &id)?;
            self.flushes
                .register_timer(backend, &ctx, bucket + self.flush)?;
            self.bump("visits", 1);
        }
        Ok(())
    }

    crate::workloads::watermark_plumbing!();

    fn save_progress(&self) -> Result<Vec<u8>> {
        CountersProgress::save(
            &self.watermarks,
            &self.counters,
            self.fingerprint,
            self.next_id,
        )
    }

    fn load_progress(&mut self, bytes: &[u8]) -> Result<()> {
        let p: CountersProgress = decode_progress(bytes)?;
        (self.watermarks, self.counters, self.fingerprint) =
            (p.watermarks, p.counters, p.fingerprint);
        self.next_id = p.next_id;
        Ok(())
    }

    fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.insert("cardinalities_fingerprint".into(), self.fingerprint.value());
        c
    }

    fn check(&self, input: &[Event]) -> Option<Vec<CheckOutcome>> {
        let actual = self.emitted.as_ref()?;
        let late = late_flags(
            input,
            millis(self.params.out_of_orderness),
            millis(self.params.watermark_interval),
        );
        // Distinct devices per (dimension, day), grown bucket by bucket in time order.
        let mut visits: BTreeMap<(u32, i64), Vec<&str>> = BTreeMap::new();
        for (e, &is_late) in input.iter().zip(&late) {
            if let (
                Event::Visit {
                    device,
                    dimension,
                    ts,
                },
                false,
            ) = (e, is_late)
            {
                visits
                    .entry((*dimension, floor_to(*ts, self.flush)))
                    .or_default()
                    .push(device);
            }
        }
        let mut expected: BTreeMap<UvKey, u64> = BTreeMap::new();
        let mut seen: HashMap<(u32, i64), HashSet<&str>> = HashMap::new();
        for ((dimension, bucket), devices) in &visits {
            let day = floor_to(*bucket, self.day);
            let set = seen.entry((*dimension, day)).or_default();
            set.extend(devices.iter().copied());
            expected.insert((*dimension, bucket + self.flush), set.len() as u64);
        }
        let wrong = expected
            .iter()
            .filter(|(k, v)| actual.get(k) != Some(v))
            .count();
        Some(vec![
            CheckOutcome::equal("cardinalities emitted", expected.len(), actual.len()),
            CheckOutcome::equal("cardinalities missing or wrong", 0, wrong),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::InstanceConfig;

    #[test]
    fn device_ids_look_like_uuids() {
        let id = device_id(1);
        assert_eq!(id.len(), 36);
        assert_ne!(device_id(1), device_id(2));
    }

    #[test]
    fn self_check_passes_across_days() {
        let params = DailyUvParams {
            dimensions: 20,
            day: Duration::from_secs(600),
            late_fraction: 0.01,
            ..Default::default()
        };
        let scale = super::super::test_scale(25 * 60, 3000, 20.0);
        let input: Vec<Event> = DailyUvGenerator::new(&params, &scale, 11)
            .unwrap()
            .collect();
        let mut backend = MemoryBackend::open(InstanceConfig::single(32).unwrap()).unwrap();
        let mut op = DailyUv::new(&mut backend, &params, true).unwrap();
        for e in &input {
            op.process(&mut backend, e.clone()).unwrap();
        }
        op.finish(&mut backend).unwrap();
        let checks = op.check(&input).unwrap();
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        let c = op.counters();
        assert!(
            c["late_events"] > 0 && c["cardinalities_emitted"] > 400,
            "{c:?}"
        );
    }
}

//! Event-time watermarks, generated the way Flink's bounded-out-of-orderness strategy does.

/// Tracks the largest event time seen and emits a watermark of `max_ts - out_of_orderness`
/// each time the largest event time crosses the next multiple of the emission interval
/// (Flink emits periodically in processing time; the harness simulates event time, so the
/// period is measured in event time).
///
/// An element is *late* if its timestamp is below the watermark current at its arrival.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WatermarkGenerator {
    out_of_orderness: i64,
    interval: i64,
    max_ts: i64,
    current: i64,
    next_emit: i64,
}

impl WatermarkGenerator {
    /// A generator allowing `out_of_orderness_ms` of disorder, emitting every `interval_ms`
    /// (at least 1) of event time.
    pub fn new(out_of_orderness_ms: i64, interval_ms: i64) -> Self {
        WatermarkGenerator {
            out_of_orderness: out_of_orderness_ms.max(0),
            interval: interval_ms.max(1),
            max_ts: i64::MIN,
            current: i64::MIN,
            next_emit: i64::MIN,
        }
    }

    /// The current watermark (`i64::MIN` before the first emission).
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Whether an element with timestamp `ts` arriving now is late.
    pub fn is_late(&self, ts: i64) -> bool {
        ts < self.current
    }

    /// Observes an element's timestamp; returns the new watermark if one is emitted.
    pub fn observe(&mut self, ts: i64) -> Option<i64> {
        self.max_ts = self.max_ts.max(ts);
        if self.max_ts < self.next_emit {
            return None;
        }
        self.next_emit = self
            .max_ts
            .div_euclid(self.interval)
            .saturating_add(1)
            .saturating_mul(self.interval);
        let candidate = self.max_ts.saturating_sub(self.out_of_orderness);
        if candidate > self.current {
            self.current = candidate;
            Some(candidate)
        } else {
            None
        }
    }

    /// Takes a watermark decided outside (by an engine, from its input frontier): elements
    /// below it are late from now on. Never moves the watermark back.
    pub fn advance_to(&mut self, watermark: i64) {
        self.current = self.current.max(watermark);
    }

    /// Ends the input: the watermark jumps to `i64::MAX`, which fires every timer.
    pub fn finish(&mut self) -> i64 {
        self.current = i64::MAX;
        i64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_once_per_interval_of_event_time() {
        let mut w = WatermarkGenerator::new(5_000, 200);
        assert_eq!(w.observe(10_000), Some(5_000));
        assert_eq!(w.observe(10_100), None, "same 200 ms period");
        assert_eq!(w.observe(9_000), None, "out of order, max unchanged");
        assert!(!w.is_late(5_000));
        assert!(w.is_late(4_999));
        assert_eq!(w.observe(10_250), Some(5_250));
        assert_eq!(w.finish(), i64::MAX);
    }

    #[test]
    fn a_watermark_from_outside_makes_earlier_elements_late_and_never_goes_back() {
        let mut w = WatermarkGenerator::new(5_000, 200);
        w.advance_to(7_000);
        assert!(w.is_late(6_999));
        assert!(!w.is_late(7_000));
        w.advance_to(3_000);
        assert_eq!(w.current(), 7_000);
    }
}

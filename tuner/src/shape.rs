//! What the tuner reads about a workload: per state, what it does per second of stream.

use serde::{Deserialize, Serialize};
use statekit_backend::StateKind;

/// The state access of a job, per state, in rates per second of the stream the figures were
/// taken from (event time for a profile, recorded time for a trace).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadShape {
    /// Where the figures come from (profile and scale, or trace file), for the explanation.
    pub source: String,
    /// Seconds of stream the figures cover.
    pub seconds: f64,
    /// One entry per state (timer queues included).
    pub states: Vec<StateShape>,
}

/// What one state does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateShape {
    /// The state's name (its column family is `state:<name>`).
    pub name: String,
    /// Value, list, map, ... or timers.
    pub kind: StateKind,
    /// Time to live of its entries, if any.
    pub ttl_ms: Option<u64>,
    /// Operations per second.
    pub rates: OpRates,
    /// Share of point reads that found nothing (0..=1).
    pub get_miss_ratio: f64,
    /// Entries a scan visits, on average.
    pub scan_entries: f64,
    /// Stored keys a range delete covers, on average (0 if unknown or none).
    pub range_delete_keys: f64,
    /// Bytes of a stored key (scope and user key), mean.
    pub key_bytes: f64,
    /// Bytes of a written value (put value or merge operand), mean.
    pub value_bytes: f64,
    /// Bytes of a written value, 99th percentile.
    pub value_bytes_p99: f64,
    /// Distinct keys written over the figures' span.
    pub distinct_keys: u64,
    /// Share of accesses that go to the most accessed 1% of keys (0..=1; 0.01 is uniform).
    pub hot_key_share: f64,
    /// Live bytes (keys and values) at the largest point.
    pub live_bytes: u64,
    /// Growth of live bytes per second over the second half of the span (0: steady).
    pub live_growth_bytes_per_sec: f64,
}

/// Operations per second of one state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OpRates {
    /// Puts.
    pub puts: f64,
    /// Merges (list appends).
    pub merges: f64,
    /// Point reads (get and multi-get keys).
    pub gets: f64,
    /// Point deletes.
    pub deletes: f64,
    /// Range deletes.
    pub range_deletes: f64,
    /// Bounded scans and whole-state iterations.
    pub scans: f64,
    /// Of `scans`, those that leave one scope's forward order: reverse scans and
    /// whole-state iterations (a hash memtable must copy itself for each).
    #[serde(default)]
    pub cross_scope_scans: f64,
    /// Timers registered (timer queues only).
    pub timers_registered: f64,
    /// Timers fired or deleted (timer queues only).
    pub timers_removed: f64,
}

impl OpRates {
    /// Every rate multiplied by `factor` (counts to rates with `1 / seconds`, a sample's
    /// rates to the full stream's).
    pub fn scaled(self, factor: f64) -> OpRates {
        OpRates {
            puts: self.puts * factor,
            merges: self.merges * factor,
            gets: self.gets * factor,
            deletes: self.deletes * factor,
            range_deletes: self.range_deletes * factor,
            scans: self.scans * factor,
            cross_scope_scans: self.cross_scope_scans * factor,
            timers_registered: self.timers_registered * factor,
            timers_removed: self.timers_removed * factor,
        }
    }

    /// Writes of entries per second: puts, merges, and timer registrations.
    pub fn entry_writes(&self) -> f64 {
        self.puts + self.merges + self.timers_registered
    }

    /// Removals per second: point deletes and removed timers.
    pub fn removals(&self) -> f64 {
        self.deletes + self.timers_removed
    }

    /// Reads per second: point reads and scans.
    pub fn reads(&self) -> f64 {
        self.gets + self.scans
    }
}

impl StateShape {
    /// An idle state of `kind` (every figure zero), to fill in.
    pub fn new(name: impl Into<String>, kind: StateKind) -> Self {
        StateShape {
            name: name.into(),
            kind,
            ttl_ms: None,
            rates: OpRates::default(),
            get_miss_ratio: 0.0,
            scan_entries: 0.0,
            range_delete_keys: 0.0,
            key_bytes: 0.0,
            value_bytes: 0.0,
            value_bytes_p99: 0.0,
            distinct_keys: 0,
            hot_key_share: 0.01,
            live_bytes: 0,
            live_growth_bytes_per_sec: 0.0,
        }
    }

    /// Bytes written into memtables per second (an entry costs its key, its value and
    /// RocksDB's 8-byte sequence number and type, plus 16 bytes of skiplist node).
    pub fn write_bytes_per_sec(&self) -> f64 {
        let entry = self.key_bytes + self.value_bytes + 24.0;
        let removal = self.key_bytes + 24.0;
        self.rates.entry_writes() * entry
            + (self.rates.removals() + self.rates.range_deletes) * removal
    }
}

impl WorkloadShape {
    /// Total live bytes over all states.
    pub fn live_bytes(&self) -> u64 {
        self.states.iter().map(|s| s.live_bytes).sum()
    }

    /// Total memtable bytes written per second.
    pub fn write_bytes_per_sec(&self) -> f64 {
        self.states
            .iter()
            .map(StateShape::write_bytes_per_sec)
            .sum()
    }

    /// Checks the figures: finite, non-negative, ratios within 0..=1, unique names.
    ///
    /// # Errors
    /// A message naming the state and figure.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.seconds.is_finite() && self.seconds > 0.0) {
            return Err(format!("seconds = {} must be positive", self.seconds));
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.states {
            if !names.insert(&s.name) {
                return Err(format!("state '{}' is listed twice", s.name));
            }
            let r = &s.rates;
            let figures = [
                ("rates.puts", r.puts),
                ("rates.merges", r.merges),
                ("rates.gets", r.gets),
                ("rates.deletes", r.deletes),
                ("rates.range_deletes", r.range_deletes),
                ("rates.scans", r.scans),
                ("rates.timers_registered", r.timers_registered),
                ("rates.timers_removed", r.timers_removed),
                ("scan_entries", s.scan_entries),
                ("range_delete_keys", s.range_delete_keys),
                ("key_bytes", s.key_bytes),
                ("value_bytes", s.value_bytes),
                ("value_bytes_p99", s.value_bytes_p99),
                ("live_growth_bytes_per_sec", s.live_growth_bytes_per_sec),
            ];
            for (what, v) in figures {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("state '{}': {what} = {v} must be >= 0", s.name));
                }
            }
            for (what, v) in [
                ("get_miss_ratio", s.get_miss_ratio),
                ("hot_key_share", s.hot_key_share),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("state '{}': {what} = {v} must be in 0..=1", s.name));
                }
            }
        }
        Ok(())
    }
}

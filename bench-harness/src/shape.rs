//! The tuner's input from what a job did: a [`WorkloadShape`] computed from a trace (recorded
//! by the harness or imported from Gadget) or from a profile (run at a sample scale, recorded,
//! then extrapolated to the scale asked for).
//!
//! The builder replays the trace's operations against a model of the live keys (ordered per
//! scope, so that a range delete knows the keys it covers and a get without a recorded
//! answer knows whether it hits), and counts per state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::path::Path;

use statekit_backend::{Result, StateKind, WriteOp};
use statekit_tuner::{OpRates, StateShape, WorkloadShape};

use crate::trace::{TraceHeader, TraceOp, TraceReader};

/// Live-size samples taken every this many records, for the growth figure.
const SAMPLE_EVERY: u64 = 1 << 14;

type ScopeKey = (u16, Vec<u8>, Vec<u8>);
type TimerKey = (i64, u16, Vec<u8>, Vec<u8>);

#[derive(Default)]
struct StateAcc {
    name: String,
    kind: Option<StateKind>,
    ttl_ms: Option<u64>,
    rates: OpRates,
    get_misses: f64,
    scanned: f64,
    range_covered: f64,
    key_bytes: f64,
    value_bytes: f64,
    written: f64,
    value_sizes: Vec<u32>,
    distinct: HashSet<u64>,
    accesses: HashMap<u64, u32>,
    live: BTreeMap<ScopeKey, BTreeMap<Vec<u8>, u64>>,
    timers: BTreeSet<TimerKey>,
    live_bytes: u64,
    peak_live: u64,
}

/// Computes a [`WorkloadShape`] from trace operations fed in order.
#[derive(Default)]
pub struct ShapeBuilder {
    states: Vec<StateAcc>,
    registered: usize,
    records: u64,
    last_micros: u64,
    /// (micros, live bytes per state) every [`SAMPLE_EVERY`] records.
    samples: Vec<(u64, Vec<u64>)>,
}

impl ShapeBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every record of the trace at `path`; returns its header.
    ///
    /// # Errors
    /// As [`TraceReader`]: the file, a corrupt record or a bad checksum, named.
    pub fn read_trace(&mut self, path: &Path) -> Result<TraceHeader> {
        let mut reader = TraceReader::open(path)?;
        while let Some(record) = reader.next_record()? {
            self.add(record.micros, &record.op);
        }
        Ok(reader.header())
    }

    fn state(&mut self, index: usize) -> &mut StateAcc {
        if self.states.len() <= index {
            self.states.resize_with(index + 1, StateAcc::default);
        }
        let s = &mut self.states[index];
        if s.name.is_empty() {
            s.name = format!("state{index}");
        }
        s
    }

    /// Adds one operation, recorded `micros` after the trace started.
    pub fn add(&mut self, micros: u64, op: &TraceOp) {
        self.records += 1;
        self.last_micros = self.last_micros.max(micros);
        match op {
            TraceOp::RegisterState(desc) => {
                // Ids are handed out densely in registration order; registering a name
                // again returns its id.
                let index = self
                    .states
                    .iter()
                    .position(|s| s.kind.is_some() && s.name == desc.name)
                    .unwrap_or(self.registered);
                if index == self.registered {
                    self.registered += 1;
                }
                let s = self.state(index);
                s.name = desc.name.clone();
                s.kind = Some(desc.kind);
                s.ttl_ms = desc.ttl.map(|t| t.millis);
            }
            TraceOp::Get {
                scope,
                user_key,
                found,
            } => {
                let s = self.state(scope.state.index());
                s.rates.gets += 1.0;
                let key = scope_key(scope);
                s.touch(&key, user_key);
                let hit = match found {
                    Some(f) => f.is_some(),
                    None => s.holds(&key, user_key),
                };
                if !hit {
                    s.get_misses += 1.0;
                }
            }
            TraceOp::MultiGet { requests, hits } => {
                let mut misses_by_state: HashMap<usize, (f64, f64)> = HashMap::new();
                for (scope, user_key) in requests {
                    let s = self.state(scope.state.index());
                    let key = scope_key(scope);
                    s.touch(&key, user_key);
                    let hit = s.holds(&key, user_key);
                    let e = misses_by_state.entry(scope.state.index()).or_default();
                    e.0 += 1.0;
                    if !hit {
                        e.1 += 1.0;
                    }
                }
                let total: f64 = misses_by_state.values().map(|v| v.0).sum();
                for (index, (n, misses)) in misses_by_state {
                    let s = self.state(index);
                    s.rates.gets += n;
                    // A recorded hit count wins over the model, spread by request share.
                    s.get_misses += match hits {
                        Some(h) => (total - *h as f64).max(0.0) * n / total.max(1.0),
                        None => misses,
                    };
                }
            }
            TraceOp::Prefetch { .. } | TraceOp::Checkpoint { .. } | TraceOp::Restore { .. } => {}
            TraceOp::Scan {
                scope,
                lower,
                upper,
                visited,
                reverse,
            } => {
                let s = self.state(scope.state.index());
                s.rates.scans += 1.0;
                if *reverse {
                    s.rates.cross_scope_scans += 1.0;
                }
                let key = scope_key(scope);
                let n = match visited {
                    Some(v) => *v as f64,
                    None => s.live.get(&key).map_or(0, |m| {
                        m.range::<Vec<u8>, _>((lower.clone(), upper.clone()))
                            .count()
                    }) as f64,
                };
                s.scanned += n;
                *s.accesses.entry(hash_scope(&key)).or_default() += 1;
            }
            TraceOp::ScanState { state, visited, .. } => {
                let s = self.state(state.index());
                s.rates.scans += 1.0;
                s.rates.cross_scope_scans += 1.0;
                s.scanned += *visited as f64;
            }
            TraceOp::Write(w) => self.write(w),
            TraceOp::WriteBatch(ops) => {
                for w in ops {
                    self.write(w);
                }
            }
            TraceOp::RegisterTimer { queue, timer } => {
                let s = self.state(queue.index());
                s.kind.get_or_insert(StateKind::Timers);
                s.rates.timers_registered += 1.0;
                let entry = timer_key(timer);
                let bytes = timer_bytes(&entry);
                s.note_write(bytes as f64, 0, hash_timer(&entry));
                if s.timers.insert(entry) {
                    s.live_bytes += bytes;
                }
                s.peak_live = s.peak_live.max(s.live_bytes);
            }
            TraceOp::DeleteTimer { queue, timer } => {
                let s = self.state(queue.index());
                s.rates.timers_removed += 1.0;
                let entry = timer_key(timer);
                if s.timers.remove(&entry) {
                    s.live_bytes -= timer_bytes(&entry);
                }
            }
            TraceOp::PopTimers {
                queue,
                watermark,
                popped,
                ..
            } => {
                let s = self.state(queue.index());
                s.rates.timers_removed += *popped as f64;
                s.rates.scans += 1.0;
                s.scanned += *popped as f64;
                for _ in 0..*popped {
                    match s.timers.first() {
                        Some(first) if first.0 <= *watermark => {
                            let bytes = timer_bytes(first);
                            s.timers.pop_first();
                            s.live_bytes -= bytes;
                        }
                        _ => break,
                    }
                }
            }
            TraceOp::NextTimer { queue } | TraceOp::ScanTimers { queue, .. } => {
                let s = self.state(queue.index());
                s.rates.scans += 1.0;
            }
            TraceOp::ClearState { state } => {
                // One range delete over the whole state.
                let s = self.state(state.index());
                s.rates.range_deletes += 1.0;
                s.range_covered += s.live.values().map(|m| m.len() as f64).sum::<f64>();
                s.live.clear();
                s.live_bytes = 0;
            }
            TraceOp::ClearTimers { queue, cleared } => {
                let s = self.state(queue.index());
                s.rates.timers_removed += *cleared as f64;
                s.timers.clear();
                s.live_bytes = 0;
            }
        }
        if self.records % SAMPLE_EVERY == 0 {
            let live = self.states.iter().map(|s| s.live_bytes).collect();
            self.samples.push((micros, live));
        }
    }

    fn write(&mut self, w: &WriteOp) {
        match w {
            WriteOp::Put {
                scope,
                user_key,
                value,
            } => {
                let s = self.state(scope.state.index());
                s.rates.puts += 1.0;
                let key = scope_key(scope);
                let key_len = key_bytes(&key, user_key);
                s.note_write(key_len as f64, value.len(), hash_key(&key, user_key));
                let old = s
                    .live
                    .entry(key)
                    .or_default()
                    .insert(user_key.clone(), key_len + value.len() as u64);
                s.live_bytes = s.live_bytes + key_len + value.len() as u64 - old.unwrap_or(0);
                s.peak_live = s.peak_live.max(s.live_bytes);
            }
            WriteOp::Merge {
                scope,
                user_key,
                operand: value,
            } => {
                let s = self.state(scope.state.index());
                s.rates.merges += 1.0;
                let key = scope_key(scope);
                let key_len = key_bytes(&key, user_key);
                s.note_write(key_len as f64, value.len(), hash_key(&key, user_key));
                let entry = s
                    .live
                    .entry(key)
                    .or_default()
                    .entry(user_key.clone())
                    .or_insert(0);
                let added = if *entry == 0 { key_len } else { 0 } + value.len() as u64;
                *entry += added;
                s.live_bytes += added;
                s.peak_live = s.peak_live.max(s.live_bytes);
            }
            WriteOp::Delete { scope, user_key } => {
                let s = self.state(scope.state.index());
                s.rates.deletes += 1.0;
                let key = scope_key(scope);
                s.touch(&key, user_key);
                if let Some(m) = s.live.get_mut(&key) {
                    if let Some(size) = m.remove(user_key) {
                        s.live_bytes -= size;
                    }
                    if m.is_empty() {
                        s.live.remove(&key);
                    }
                }
            }
            WriteOp::DeleteRange {
                scope,
                lower,
                upper,
            } => {
                let s = self.state(scope.state.index());
                s.rates.range_deletes += 1.0;
                let key = scope_key(scope);
                *s.accesses.entry(hash_scope(&key)).or_default() += 1;
                if let Some(m) = s.live.get_mut(&key) {
                    let lo = lower.clone().map_or(Bound::Unbounded, Bound::Included);
                    let hi = upper.clone().map_or(Bound::Unbounded, Bound::Excluded);
                    let doomed: Vec<Vec<u8>> = m
                        .range::<Vec<u8>, _>((lo, hi))
                        .map(|(k, _)| k.clone())
                        .collect();
                    s.range_covered += doomed.len() as f64;
                    for k in doomed {
                        if let Some(size) = m.remove(&k) {
                            s.live_bytes -= size;
                        }
                    }
                    if m.is_empty() {
                        s.live.remove(&key);
                    }
                }
            }
        }
    }

    /// The shape, with rates per second of `seconds` (the stream's span; the trace's own
    /// recorded span when `None`), described as `source`.
    pub fn finish(self, source: &str, seconds: Option<f64>) -> WorkloadShape {
        let seconds = seconds.unwrap_or(self.last_micros as f64 / 1e6).max(1e-3);
        let half = self.last_micros / 2;
        let mid = self
            .samples
            .iter()
            .min_by_key(|(t, _)| t.abs_diff(half))
            .cloned();
        let states = self
            .states
            .into_iter()
            .enumerate()
            .filter(|(_, s)| s.kind.is_some() || s.written > 0.0 || s.rates.reads() > 0.0)
            .map(|(i, s)| {
                let growth = match &mid {
                    Some((t, live)) if *t < self.last_micros => {
                        let before = live.get(i).copied().unwrap_or(0) as f64;
                        let span = (self.last_micros - t) as f64 / self.last_micros as f64;
                        ((s.live_bytes as f64 - before) / (seconds * span)).max(0.0)
                    }
                    _ => 0.0,
                };
                s.into_shape(seconds, growth)
            })
            .collect();
        WorkloadShape {
            source: source.to_string(),
            seconds,
            states,
        }
    }
}

impl StateAcc {
    fn note_write(&mut self, key_len: f64, value_len: usize, hash: u64) {
        self.written += 1.0;
        self.key_bytes += key_len;
        self.value_bytes += value_len as f64;
        self.value_sizes.push(value_len as u32);
        self.distinct.insert(hash);
        *self.accesses.entry(hash).or_default() += 1;
    }

    /// Whether the model holds `user_key` in scope `key`: a read without a recorded answer
    /// hits or misses by it.
    fn holds(&self, key: &ScopeKey, user_key: &[u8]) -> bool {
        self.live.get(key).is_some_and(|m| m.contains_key(user_key))
    }

    fn touch(&mut self, key: &ScopeKey, user_key: &[u8]) {
        *self.accesses.entry(hash_key(key, user_key)).or_default() += 1;
    }

    fn into_shape(mut self, seconds: f64, growth: f64) -> StateShape {
        let r = self.rates;
        let written = self.written.max(1.0);
        self.value_sizes.sort_unstable();
        let p99 = self
            .value_sizes
            .get(self.value_sizes.len() * 99 / 100)
            .copied()
            .unwrap_or(0);
        let mut counts: Vec<u32> = self.accesses.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let top = counts.len().div_ceil(100);
        let hot: u64 = counts.iter().take(top).map(|&c| u64::from(c)).sum();
        StateShape {
            name: self.name,
            kind: self.kind.unwrap_or(StateKind::Map),
            ttl_ms: self.ttl_ms,
            rates: r.scaled(1.0 / seconds),
            get_miss_ratio: if r.gets > 0.0 {
                (self.get_misses / r.gets).clamp(0.0, 1.0)
            } else {
                0.0
            },
            scan_entries: if r.scans > 0.0 {
                self.scanned / r.scans
            } else {
                0.0
            },
            range_delete_keys: if r.range_deletes > 0.0 {
                self.range_covered / r.range_deletes
            } else {
                0.0
            },
            key_bytes: self.key_bytes / written,
            value_bytes: self.value_bytes / written,
            value_bytes_p99: f64::from(p99),
            distinct_keys: self.distinct.len() as u64,
            hot_key_share: if total > 0 {
                hot as f64 / total as f64
            } else {
                0.01
            },
            live_bytes: self.peak_live,
            live_growth_bytes_per_sec: growth,
        }
    }
}

fn scope_key(scope: &statekit_backend::ScopeBuf) -> ScopeKey {
    (scope.key_group, scope.key.clone(), scope.namespace.clone())
}

/// Bytes of a stored key: key group, key and namespace with their lengths, and user key.
fn key_bytes(key: &ScopeKey, user_key: &[u8]) -> u64 {
    (2 + 2 + key.1.len() + key.2.len() + user_key.len()) as u64
}

fn timer_key(timer: &statekit_backend::Timer) -> TimerKey {
    (
        timer.timestamp,
        timer.key_group,
        timer.key.clone(),
        timer.namespace.clone(),
    )
}

fn timer_bytes(t: &TimerKey) -> u64 {
    (8 + 2 + 2 + t.2.len() + t.3.len()) as u64
}

fn hash_key(key: &ScopeKey, user_key: &[u8]) -> u64 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    h.update(&key.0.to_le_bytes());
    h.update(&(key.1.len() as u32).to_le_bytes());
    h.update(&key.1);
    h.update(&(key.2.len() as u32).to_le_bytes());
    h.update(&key.2);
    h.update(user_key);
    h.digest()
}

fn hash_scope(key: &ScopeKey) -> u64 {
    hash_key(key, b"\xffscope")
}

fn hash_timer(t: &TimerKey) -> u64 {
    hash_key(&(t.1, t.2.clone(), t.3.clone()), &t.0.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use statekit_backend::{ScopeBuf, StateDescriptor, StateId, Timer};

    use super::*;

    fn scope(key: &[u8]) -> ScopeBuf {
        ScopeBuf {
            state: StateId::from_index(0),
            key_group: 3,
            key: key.to_vec(),
            namespace: Vec::new(),
        }
    }

    fn put(key: &[u8], user_key: &[u8], len: usize) -> TraceOp {
        TraceOp::Write(WriteOp::Put {
            scope: scope(key),
            user_key: user_key.to_vec(),
            value: vec![0; len],
        })
    }

    #[test]
    fn counts_rates_misses_scans_and_range_delete_widths() {
        let mut b = ShapeBuilder::new();
        let ops = vec![
            TraceOp::RegisterState(StateDescriptor::new("buffer", StateKind::Map)),
            TraceOp::RegisterState(StateDescriptor::new("timers", StateKind::Timers)),
            put(b"u1", b"a", 10),
            put(b"u1", b"b", 10),
            put(b"u1", b"c", 10),
            put(b"u2", b"a", 30),
            TraceOp::Get {
                scope: scope(b"u1"),
                user_key: b"a".to_vec(),
                found: None,
            },
            TraceOp::Get {
                scope: scope(b"u9"),
                user_key: b"a".to_vec(),
                found: None,
            },
            TraceOp::Scan {
                scope: scope(b"u1"),
                lower: Bound::Included(b"a".to_vec()),
                upper: Bound::Excluded(b"c".to_vec()),
                reverse: false,
                visited: None,
            },
            TraceOp::Write(WriteOp::DeleteRange {
                scope: scope(b"u1"),
                lower: Some(b"a".to_vec()),
                upper: None,
            }),
            TraceOp::RegisterTimer {
                queue: StateId::from_index(1),
                timer: Timer {
                    timestamp: 5,
                    key_group: 3,
                    key: b"u1".to_vec(),
                    namespace: Vec::new(),
                },
            },
            TraceOp::PopTimers {
                queue: StateId::from_index(1),
                watermark: 10,
                limit: 100,
                popped: 1,
            },
        ];
        for (i, op) in ops.iter().enumerate() {
            b.add(i as u64 * 100_000, op);
        }
        let shape = b.finish("unit", Some(2.0));
        assert_eq!(shape.states.len(), 2);
        let s = &shape.states[0];
        assert_eq!(s.name, "buffer");
        assert_eq!(s.rates.puts, 2.0, "4 puts over 2 s");
        assert_eq!(s.rates.gets, 1.0);
        assert_eq!(s.get_miss_ratio, 0.5, "u9 was never written");
        assert_eq!(s.scan_entries, 2.0, "a and b lie in [a, c)");
        assert_eq!(s.range_delete_keys, 3.0);
        assert_eq!(s.distinct_keys, 4);
        assert_eq!(s.value_bytes, 15.0);
        // Keys: 2 + 2 + 2 + 0 + 1 = 7 bytes; the peak held all four entries.
        assert_eq!(s.live_bytes, 4 * 7 + 60);
        let t = &shape.states[1];
        assert_eq!(t.kind, StateKind::Timers);
        assert_eq!(t.rates.timers_registered, 0.5);
        assert_eq!(t.rates.timers_removed, 0.5);
    }
}

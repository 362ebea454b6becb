//! Metrics as a wrapper: [`Metered`] counts every state operation of any backend and times
//! a random sample of them into an HDR histogram per state and operation kind (Flink's state
//! latency tracking, per state, samples too); [`ResourceSampler`] samples resident memory
//! and disk usage over time on a background thread.

mod call_sampler;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use call_sampler::CallSampler;
pub use call_sampler::TIME_ONE_IN;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use statekit_backend::backend::{EntryVisitor, StateVisitor};
use statekit_backend::{
    BackendStats, CheckpointHandle, CheckpointSize, Checkpointing, Direction, KeyGroupRange,
    Result, Scope, StateBackend, StateDescriptor, StateId, StateRead, StateWrite, Timer,
    TimerStore, UserKeyRange, Visit, WriteBatch,
};

/// The kinds of state operation, as counted and timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Point read.
    Get,
    /// Batched point reads.
    MultiGet,
    /// Prefetch hint.
    Prefetch,
    /// Bounded range read in one scope.
    Scan,
    /// Iteration over a whole state.
    ScanState,
    /// Point write.
    Put,
    /// Append.
    Merge,
    /// Point delete.
    Delete,
    /// Range delete.
    DeleteRange,
    /// Atomic write batch.
    WriteBatch,
    /// Timer registration.
    RegisterTimer,
    /// Timer deletion.
    DeleteTimer,
    /// Popping due timers.
    PopTimers,
    /// Peeking at the next timer.
    NextTimer,
    /// Iterating timers.
    ScanTimers,
    /// Removing every entry of a state at once.
    ClearState,
    /// Removing every timer of a queue at once.
    ClearTimers,
    /// Checkpoint.
    Checkpoint,
    /// Restore.
    Restore,
}

impl OpKind {
    /// Every kind, in order.
    pub const ALL: [OpKind; 19] = [
        OpKind::Get,
        OpKind::MultiGet,
        OpKind::Prefetch,
        OpKind::Scan,
        OpKind::ScanState,
        OpKind::Put,
        OpKind::Merge,
        OpKind::Delete,
        OpKind::DeleteRange,
        OpKind::WriteBatch,
        OpKind::RegisterTimer,
        OpKind::DeleteTimer,
        OpKind::PopTimers,
        OpKind::NextTimer,
        OpKind::ScanTimers,
        OpKind::ClearState,
        OpKind::ClearTimers,
        OpKind::Checkpoint,
        OpKind::Restore,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::MultiGet => "multi_get",
            OpKind::Prefetch => "prefetch",
            OpKind::Scan => "scan",
            OpKind::ScanState => "scan_state",
            OpKind::Put => "put",
            OpKind::Merge => "merge",
            OpKind::Delete => "delete",
            OpKind::DeleteRange => "delete_range",
            OpKind::WriteBatch => "write_batch",
            OpKind::RegisterTimer => "register_timer",
            OpKind::DeleteTimer => "delete_timer",
            OpKind::PopTimers => "pop_timers",
            OpKind::NextTimer => "next_timer",
            OpKind::ScanTimers => "scan_timers",
            OpKind::ClearState => "clear_state",
            OpKind::ClearTimers => "clear_timers",
            OpKind::Checkpoint => "checkpoint",
            OpKind::Restore => "restore",
        }
    }

    /// Whether calls of this kind are frequent enough (one or more per event) that timing
    /// one in [`TIME_ONE_IN`] describes them: the others are rare and each one is timed.
    fn sampled(self) -> bool {
        matches!(
            self,
            OpKind::Get
                | OpKind::Prefetch
                | OpKind::Scan
                | OpKind::Put
                | OpKind::Merge
                | OpKind::Delete
                | OpKind::DeleteRange
                | OpKind::RegisterTimer
                | OpKind::DeleteTimer
                | OpKind::NextTimer
        )
    }
}

/// Latency and volume of one operation kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpSummary {
    /// Calls.
    pub count: u64,
    /// Calls timed: the latencies below are of these ([`TIME_ONE_IN`]). Results written
    /// before sampling have none and timed every call.
    #[serde(default)]
    pub timed: u64,
    /// Errors returned.
    pub errors: u64,
    /// Mean latency, ns.
    pub mean_ns: f64,
    /// Median latency, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Maximum, ns.
    pub max_ns: u64,
}

/// Totals of the data moved through the backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Logical bytes written, the same for every backend: of each put, merge and delete
    /// (alone or in a batch) its scope's key and namespace, user key and value or operand;
    /// of each timer registered or removed its key, namespace and 8-byte time.
    pub bytes_written: u64,
    /// Value bytes returned by reads and scans.
    pub bytes_read: u64,
    /// Entries visited by scans.
    pub entries_scanned: u64,
    /// Point reads that found a value.
    pub get_hits: u64,
    /// Point reads that found nothing.
    pub get_misses: u64,
}

struct KindMetrics {
    /// The timed calls' latencies.
    histogram: Histogram<u64>,
    calls: u64,
    errors: u64,
}

impl KindMetrics {
    fn summary(&self) -> OpSummary {
        let h = &self.histogram;
        OpSummary {
            count: self.calls,
            timed: h.len(),
            errors: self.errors,
            mean_ns: h.mean(),
            p50_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        }
    }
}

/// The metrics of every kind for one state (or for calls of no single state).
type KindSlots = [Option<KindMetrics>; OpKind::ALL.len()];

/// The name under which [`OpMetrics::by_state`] reports calls that belong to no single state:
/// write batches spanning states, checkpoints and restores.
pub const NO_SINGLE_STATE: &str = "(no single state)";

/// Per-state, per-kind histograms and volumes of a [`Metered`] backend.
#[derive(Default)]
pub struct OpMetrics {
    /// Slot 0: calls of no single state; slot `i + 1`: calls on the state of index `i`.
    /// Within a slot, indexed by `OpKind as usize` (the order of [`OpKind::ALL`]): a call
    /// finds its histogram with two indexings, no search. One histogram per call, so timing
    /// by state costs nothing over timing by kind; kind totals merge the states' at the end.
    slots: Vec<KindSlots>,
    volume: Volume,
}

/// The slot of [`OpMetrics::slots`] for calls on `state`.
fn slot_index(state: Option<StateId>) -> usize {
    state.map_or(0, |s| s.index() + 1)
}

impl OpMetrics {
    /// Whether a call of `kind` on `state` was timed before.
    fn has_timed(&self, kind: OpKind, state: Option<StateId>) -> bool {
        self.slots
            .get(slot_index(state))
            .and_then(|slot| slot[kind as usize].as_ref())
            .is_some_and(|m| !m.histogram.is_empty())
    }

    /// Counts one call, with its time if it was timed.
    fn record(&mut self, kind: OpKind, state: Option<StateId>, nanos: Option<u64>, ok: bool) {
        let index = slot_index(state);
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, Default::default);
        }
        let slot = &mut self.slots[index][kind as usize];
        let m = match slot {
            Some(m) => m,
            // 3 significant digits from 1 ns to an hour (a stall longer than that is
            // recorded as an hour).
            None => match Histogram::new_with_bounds(1, 3_600_000_000_000, 3) {
                Ok(histogram) => slot.insert(KindMetrics {
                    histogram,
                    calls: 0,
                    errors: 0,
                }),
                Err(_) => return,
            },
        };
        m.calls += 1;
        if let Some(nanos) = nanos {
            m.histogram.saturating_record(nanos.max(1));
        }
        if !ok {
            m.errors += 1;
        }
    }

    /// The kinds called so far, each with its metrics merged over the states, in
    /// [`OpKind::ALL`] order.
    fn by_kind(&self) -> Vec<(OpKind, KindMetrics)> {
        OpKind::ALL
            .iter()
            .enumerate()
            .filter_map(|(i, kind)| {
                let mut merged: Option<KindMetrics> = None;
                for m in self.slots.iter().filter_map(|slot| slot[i].as_ref()) {
                    match &mut merged {
                        // Same bounds everywhere, so adding cannot fail.
                        Some(into) => {
                            let _ = into.histogram.add(&m.histogram);
                            into.calls += m.calls;
                            into.errors += m.errors;
                        }
                        None => {
                            merged = Some(KindMetrics {
                                histogram: m.histogram.clone(),
                                calls: m.calls,
                                errors: m.errors,
                            })
                        }
                    }
                }
                merged.map(|m| (*kind, m))
            })
            .collect()
    }

    /// Calls per kind.
    pub fn counts(&self) -> BTreeMap<OpKind, u64> {
        let mut counts = BTreeMap::new();
        for slot in &self.slots {
            for (kind, m) in OpKind::ALL.iter().zip(slot) {
                if let Some(m) = m {
                    *counts.entry(*kind).or_insert(0) += m.calls;
                }
            }
        }
        counts
    }

    /// Total calls.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    /// The summaries per kind, keyed by kind name.
    pub fn summaries(&self) -> BTreeMap<String, OpSummary> {
        self.by_kind()
            .iter()
            .map(|(k, m)| (k.name().to_string(), m.summary()))
            .collect()
    }

    /// The summaries per state and kind: state name (`names[i]` for the state of index
    /// `i`, [`NO_SINGLE_STATE`] for calls of none), then kind name.
    pub fn by_state(&self, names: &[String]) -> BTreeMap<String, BTreeMap<String, OpSummary>> {
        let mut out: BTreeMap<String, BTreeMap<String, OpSummary>> = BTreeMap::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let name = match index {
                0 => NO_SINGLE_STATE.to_string(),
                i => names
                    .get(i - 1)
                    .cloned()
                    .unwrap_or_else(|| format!("state {}", i - 1)),
            };
            for (kind, m) in OpKind::ALL.iter().zip(slot) {
                if let Some(m) = m {
                    out.entry(name.clone())
                        .or_default()
                        .insert(kind.name().to_string(), m.summary());
                }
            }
        }
        out
    }

    /// Data volumes.
    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// Adds `other`'s calls and volumes to these: metrics of two phases make the whole run's.
    pub fn absorb(&mut self, other: OpMetrics) {
        if other.slots.len() > self.slots.len() {
            self.slots.resize_with(other.slots.len(), Default::default);
        }
        for (our_slot, their_slot) in self.slots.iter_mut().zip(other.slots) {
            for (ours, theirs) in our_slot.iter_mut().zip(their_slot) {
                let Some(theirs) = theirs else { continue };
                match ours {
                    Some(ours) => {
                        // Same bounds on both sides, so adding cannot fail.
                        let _ = ours.histogram.add(&theirs.histogram);
                        ours.calls += theirs.calls;
                        ours.errors += theirs.errors;
                    }
                    None => *ours = Some(theirs),
                }
            }
        }
        let (v, o) = (&mut self.volume, other.volume);
        v.bytes_written += o.bytes_written;
        v.bytes_read += o.bytes_read;
        v.entries_scanned += o.entries_scanned;
        v.get_hits += o.get_hits;
        v.get_misses += o.get_misses;
    }
}

/// A backend wrapper that counts every operation and times a sample of them
/// ([`TIME_ONE_IN`]). Reads take `&self`, so the metrics sit in a `RefCell` (one operator
/// thread drives a backend, and a backend is `Send`, not shared). Times come from the CPU's
/// time-stamp counter ([`quanta`]): a call to the system clock cost about 50 ns here, twice
/// per operation, 5% of a memory-backend run.
pub struct Metered<B: StateBackend + ?Sized> {
    inner: Box<B>,
    metrics: RefCell<OpMetrics>,
    clock: Clock,
}

/// What [`measure`] needs besides the call: the time source and the choice of calls to time.
struct Clock {
    time: quanta::Clock,
    sampler: CallSampler,
}

impl<B: StateBackend + ?Sized> Metered<B> {
    /// Wraps `inner`.
    pub fn new(inner: Box<B>) -> Self {
        Metered {
            inner,
            metrics: RefCell::new(OpMetrics::default()),
            clock: Clock {
                time: quanta::Clock::new(),
                sampler: CallSampler::new(),
            },
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Takes the metrics collected so far, leaving empty ones.
    pub fn take_metrics(&self) -> OpMetrics {
        self.metrics.take()
    }

    /// The latency summaries so far, per kind (the metrics keep counting).
    pub fn summaries(&self) -> BTreeMap<String, OpSummary> {
        self.metrics.borrow().summaries()
    }

    /// Unwraps the backend.
    pub fn into_inner(self) -> Box<B> {
        self.inner
    }

    fn timed<T>(
        &self,
        kind: OpKind,
        state: Option<StateId>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        measure(&self.clock, &self.metrics, kind, state, f, |_, _| {})
    }

    fn add_volume(&self, f: impl FnOnce(&mut Volume)) {
        f(&mut self.metrics.borrow_mut().volume);
    }
}

/// Runs `f`, counts it under `kind` and `state` (`None`: no single state) with its time if
/// it is one of the calls timed, and lets `volume` count what a successful call moved. The
/// metrics are borrowed only outside `f`, so a visitor inside `f` may call the backend
/// again. A function of the fields, not a method, so that `f` can borrow the wrapped backend
/// mutably.
fn measure<T>(
    clock: &Clock,
    metrics: &RefCell<OpMetrics>,
    kind: OpKind,
    state: Option<StateId>,
    f: impl FnOnce() -> Result<T>,
    volume: impl FnOnce(&T, &mut Volume),
) -> Result<T> {
    let timed = !kind.sampled() || clock.sampler.next() || !metrics.borrow().has_timed(kind, state);
    let (out, nanos) = if timed {
        let start = clock.time.raw();
        let out = f();
        let nanos = clock.time.delta_as_nanos(start, clock.time.raw());
        (out, Some(nanos))
    } else {
        (f(), None)
    };
    let mut metrics = metrics.borrow_mut();
    metrics.record(kind, state, nanos, out.is_ok());
    if let Ok(value) = &out {
        volume(value, &mut metrics.volume);
    }
    out
}

/// The one state all of a call's parts are on, if there is one.
fn single_state(mut states: impl Iterator<Item = StateId>) -> Option<StateId> {
    let first = states.next()?;
    states.all(|s| s == first).then_some(first)
}

/// Counts one point read's result: a hit and its bytes, or a miss.
fn count_read(value: Option<&[u8]>, v: &mut Volume) {
    match value {
        Some(value) => {
            v.get_hits += 1;
            v.bytes_read += value.len() as u64;
        }
        None => v.get_misses += 1,
    }
}

impl<B: StateBackend + ?Sized> StateRead for Metered<B> {
    fn get(&self, scope: Scope<'_>, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::Get,
            Some(scope.state),
            || self.inner.get(scope, user_key),
            |out, v| count_read(out.as_deref(), v),
        )
    }

    fn multi_get(&self, requests: &[(Scope<'_>, &[u8])]) -> Result<Vec<Option<Vec<u8>>>> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::MultiGet,
            single_state(requests.iter().map(|(scope, _)| scope.state)),
            || self.inner.multi_get(requests),
            |out, v| {
                for r in out {
                    count_read(r.as_deref(), v);
                }
            },
        )
    }

    fn prefetch(&self, scopes: &[Scope<'_>]) -> Result<()> {
        self.timed(
            OpKind::Prefetch,
            single_state(scopes.iter().map(|scope| scope.state)),
            || self.inner.prefetch(scopes),
        )
    }

    fn scan(
        &self,
        scope: Scope<'_>,
        range: UserKeyRange<'_>,
        direction: Direction,
        visitor: &mut EntryVisitor<'_>,
    ) -> Result<()> {
        let (mut entries, mut bytes) = (0u64, 0u64);
        // The visitor's own time (the operator's work) is inside the measured scan time,
        // as it is for a real iterator.
        let out = self.timed(OpKind::Scan, Some(scope.state), || {
            self.inner.scan(scope, range, direction, &mut |k, v| {
                entries += 1;
                bytes += v.len() as u64;
                visitor(k, v)
            })
        });
        self.add_volume(|v| {
            v.entries_scanned += entries;
            v.bytes_read += bytes;
        });
        out
    }

    fn scan_state(
        &self,
        state: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut StateVisitor<'_>,
    ) -> Result<()> {
        let mut entries = 0u64;
        let out = self.timed(OpKind::ScanState, Some(state), || {
            self.inner.scan_state(state, key_groups, &mut |e| {
                entries += 1;
                visitor(e)
            })
        });
        self.add_volume(|v| v.entries_scanned += entries);
        out
    }
}

fn batch_bytes(batch: &WriteBatch) -> u64 {
    batch
        .ops()
        .iter()
        .map(|op| {
            let scope = op.scope().as_scope();
            match op {
                statekit_backend::WriteOp::Put {
                    user_key, value, ..
                } => write_bytes(scope, user_key, value),
                statekit_backend::WriteOp::Merge {
                    user_key, operand, ..
                } => write_bytes(scope, user_key, operand),
                statekit_backend::WriteOp::Delete { user_key, .. } => {
                    write_bytes(scope, user_key, &[])
                }
                // A range delete's size depends on the backend (a tombstone, or a delete per
                // key it finds): counted as its scope, once.
                statekit_backend::WriteOp::DeleteRange { .. } => write_bytes(scope, &[], &[]),
            }
        })
        .sum()
}

/// The logical bytes of one write, the same for every backend: the scope's key and
/// namespace, the user key and the value (or operand; empty for a delete). The write
/// amplification's denominator.
fn write_bytes(scope: Scope<'_>, user_key: &[u8], value: &[u8]) -> u64 {
    (scope.key.len() + scope.namespace.len() + user_key.len() + value.len()) as u64
}

/// The logical bytes of a timer registration or removal: its key, namespace and timestamp.
fn timer_bytes(timer: &Timer) -> u64 {
    (timer.key.len() + timer.namespace.len() + std::mem::size_of::<i64>()) as u64
}

impl<B: StateBackend + ?Sized> StateWrite for Metered<B> {
    fn put(&mut self, scope: Scope<'_>, user_key: &[u8], value: &[u8]) -> Result<()> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::Put,
            Some(scope.state),
            || self.inner.put(scope, user_key, value),
            |_, v| v.bytes_written += write_bytes(scope, user_key, value),
        )
    }

    fn merge(&mut self, scope: Scope<'_>, user_key: &[u8], operand: &[u8]) -> Result<()> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::Merge,
            Some(scope.state),
            || self.inner.merge(scope, user_key, operand),
            |_, v| v.bytes_written += write_bytes(scope, user_key, operand),
        )
    }

    fn delete(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::Delete,
            Some(scope.state),
            || self.inner.delete(scope, user_key),
            |_, v| v.bytes_written += write_bytes(scope, user_key, &[]),
        )
    }

    fn delete_range(&mut self, scope: Scope<'_>, range: UserKeyRange<'_>) -> Result<()> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::DeleteRange,
            Some(scope.state),
            || self.inner.delete_range(scope, range),
            |_, v| v.bytes_written += write_bytes(scope, &[], &[]),
        )
    }

    fn write(&mut self, batch: WriteBatch) -> Result<()> {
        let bytes = batch_bytes(&batch);
        let state = single_state(batch.ops().iter().map(|op| op.scope().state));
        measure(
            &self.clock,
            &self.metrics,
            OpKind::WriteBatch,
            state,
            || self.inner.write(batch),
            |_, v| v.bytes_written += bytes,
        )
    }
}

impl<B: StateBackend + ?Sized> TimerStore for Metered<B> {
    fn register_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::RegisterTimer,
            Some(queue),
            || self.inner.register_timer(queue, timer),
            |_, v| v.bytes_written += timer_bytes(timer),
        )
    }

    fn delete_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::DeleteTimer,
            Some(queue),
            || self.inner.delete_timer(queue, timer),
            |_, v| v.bytes_written += timer_bytes(timer),
        )
    }

    fn pop_due_timers(
        &mut self,
        queue: StateId,
        watermark: i64,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::PopTimers,
            Some(queue),
            || self.inner.pop_due_timers(queue, watermark, limit),
            // Popping removes the timers: a write, as delete_timer is.
            |popped, v| v.bytes_written += popped.iter().map(timer_bytes).sum::<u64>(),
        )
    }

    fn next_timer(&self, queue: StateId) -> Result<Option<i64>> {
        self.timed(OpKind::NextTimer, Some(queue), || {
            self.inner.next_timer(queue)
        })
    }

    fn scan_timers(
        &self,
        queue: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut dyn FnMut(&Timer) -> Result<Visit>,
    ) -> Result<()> {
        self.timed(OpKind::ScanTimers, Some(queue), || {
            self.inner.scan_timers(queue, key_groups, visitor)
        })
    }

    fn clear_timers(&mut self, queue: StateId) -> Result<u64> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::ClearTimers,
            Some(queue),
            || self.inner.clear_timers(queue),
            |_, _| {},
        )
    }
}

impl<B: StateBackend + ?Sized> Checkpointing for Metered<B> {
    fn checkpoint(&mut self, checkpoint_id: u64) -> Result<CheckpointHandle> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::Checkpoint,
            None,
            || self.inner.checkpoint(checkpoint_id),
            |_, _| {},
        )
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.inner.notify_checkpoint_complete(checkpoint_id)
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
        self.inner.notify_checkpoint_aborted(checkpoint_id)
    }

    fn restore(&mut self, handles: &[CheckpointHandle]) -> Result<()> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::Restore,
            None,
            || self.inner.restore(handles),
            |_, _| {},
        )
    }
    fn checkpoint_size(&self, handle: &CheckpointHandle) -> Result<Option<CheckpointSize>> {
        // Not a state operation: measuring is not timed.
        self.inner.checkpoint_size(handle)
    }
}

impl<B: StateBackend + ?Sized> StateBackend for Metered<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn max_parallelism(&self) -> u16 {
        self.inner.max_parallelism()
    }
    fn key_group_range(&self) -> KeyGroupRange {
        self.inner.key_group_range()
    }
    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId> {
        self.inner.register_state(descriptor)
    }
    fn states(&self) -> Vec<StateDescriptor> {
        self.inner.states()
    }
    fn clear_state(&mut self, state: StateId) -> Result<()> {
        measure(
            &self.clock,
            &self.metrics,
            OpKind::ClearState,
            Some(state),
            || self.inner.clear_state(state),
            |_, _| {},
        )
    }
    fn stats(&self) -> Result<BackendStats> {
        self.inner.stats()
    }
}

/// One sample of resource use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// Seconds since the run started.
    pub t: f64,
    /// Resident memory of the process, bytes.
    pub rss_bytes: u64,
    /// Bytes under the run's working directory.
    pub disk_bytes: u64,
    /// Events processed so far.
    pub events: u64,
}

/// Samples resident memory (sysinfo) and disk usage of a directory on a background thread.
pub struct ResourceSampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<ResourceSample>>>,
}

impl ResourceSampler {
    /// Starts sampling every `interval`; `events` is read for the event count of each sample.
    pub fn start(dir: PathBuf, interval: Duration, events: Arc<AtomicU64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            let mut disk = 0u64;
            let mut last_disk = None::<Instant>;
            loop {
                // Walking a RocksDB directory is not free: at most once a second.
                if last_disk.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    disk = dir_size(&dir);
                    last_disk = Some(Instant::now());
                }
                samples.push(ResourceSample {
                    t: start.elapsed().as_secs_f64(),
                    rss_bytes: current_rss(),
                    disk_bytes: disk,
                    events: events.load(Ordering::Relaxed),
                });
                if stop2.load(Ordering::Relaxed) {
                    return samples;
                }
                std::thread::park_timeout(interval);
            }
        });
        ResourceSampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and returns the samples (a last one is taken at the stop).
    pub fn finish(mut self) -> Vec<ResourceSample> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => {
                h.thread().unpark();
                h.join().unwrap_or_default()
            }
            None => Vec::new(),
        }
    }
}

impl Drop for ResourceSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The peak resident memory of this process since it started, bytes: the kernel's
/// high-water mark (`VmHWM`), which catches peaks between samples. 0 where the OS does not
/// say (not Linux).
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|kib| kib.trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The resident memory of this process, bytes (0 if the OS does not say).
pub fn current_rss() -> u64 {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    let Ok(pid) = sysinfo::get_current_pid() else {
        return 0;
    };
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    sys.process(pid).map_or(0, sysinfo::Process::memory)
}

/// Bytes of the regular files under `dir` (0 if it does not exist).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::typed::{KeyContext, MapState};
    use statekit_backend::InstanceConfig;

    #[test]
    fn frequent_calls_are_counted_all_and_timed_one_in_eight_rare_ones_all() {
        use statekit_backend::{key_group_of, StateKind, WriteBatch};
        let inner = MemoryBackend::open(InstanceConfig::single(8).unwrap()).unwrap();
        let mut b: Metered<dyn StateBackend> = Metered::new(Box::new(inner));
        let state = b
            .register_state(&StateDescriptor::new("m", StateKind::Map))
            .unwrap();
        let key_group = key_group_of(b"key", 8);
        let scope = Scope {
            state,
            key_group,
            key: b"key",
            namespace: b"",
        };
        let puts = 80_000u32;
        for i in 0..puts {
            b.put(scope, &i.to_be_bytes(), b"v").unwrap();
        }
        let batches = 20u32;
        for i in 0..batches {
            let mut batch = WriteBatch::new();
            batch.delete(scope, &i.to_be_bytes());
            b.write(batch).unwrap();
        }
        // One get: the first call of its kind is timed, whatever the sampler says.
        b.get(scope, b"none").unwrap();
        let summaries = b.take_metrics().summaries();
        let put = &summaries["put"];
        assert_eq!(put.count, u64::from(puts));
        let expected = f64::from(puts / TIME_ONE_IN);
        assert!(
            (put.timed as f64 - expected).abs() < expected * 0.05,
            "{} of {} puts timed",
            put.timed,
            put.count
        );
        assert!(put.p50_ns > 0 && put.p99_ns >= put.p50_ns);
        let batch = &summaries["write_batch"];
        assert_eq!((batch.count, batch.timed), (20, 20));
        let get = &summaries["get"];
        assert_eq!((get.count, get.timed), (1, 1));
    }

    #[test]
    fn every_call_is_counted() {
        let inner = MemoryBackend::open(InstanceConfig::single(8).unwrap()).unwrap();
        let mut b: Metered<dyn StateBackend> = Metered::new(Box::new(inner));
        let m: MapState<u32, u32> = MapState::register(&mut b, "m").unwrap();
        let ctx = KeyContext::new(&b, &1u32).unwrap();
        for i in 0..10 {
            m.put(&mut b, &ctx, &i, &i).unwrap();
        }
        assert_eq!(m.get(&b, &ctx, &3).unwrap(), Some(3));
        assert_eq!(m.get(&b, &ctx, &30).unwrap(), None);
        assert_eq!(m.range(&b, &ctx, 2..5).unwrap().len(), 3);
        let metrics = b.take_metrics();
        let counts = metrics.counts();
        assert_eq!(counts[&OpKind::Put], 10);
        assert_eq!(counts[&OpKind::Get], 2);
        assert_eq!(counts[&OpKind::Scan], 1);
        assert_eq!(metrics.volume().entries_scanned, 3);
        assert_eq!(
            (metrics.volume().get_hits, metrics.volume().get_misses),
            (1, 1)
        );
        let s = &metrics.summaries()["put"];
        assert!(s.p50_ns > 0 && s.p99_ns >= s.p50_ns && s.max_ns >= s.p999_ns);
        assert!(current_rss() > 0);
    }

    #[test]
    fn logical_bytes_count_every_write_alike_alone_or_batched() {
        use statekit_backend::{key_group_of, StateKind, WriteBatch};
        let open = || {
            let inner = MemoryBackend::open(InstanceConfig::single(8).unwrap()).unwrap();
            let mut b: Metered<dyn StateBackend> = Metered::new(Box::new(inner));
            let state = b
                .register_state(&StateDescriptor::new("m", StateKind::Map))
                .unwrap();
            let timers = b
                .register_state(&StateDescriptor::new("t", StateKind::Timers))
                .unwrap();
            (b, state, timers)
        };
        let key_group = key_group_of(b"key", 8);
        let scope = |state| Scope {
            state,
            key_group,
            key: b"key",
            namespace: b"ns",
        };
        // key 3 + namespace 2 + user key 2 + value 5; a delete without the value.
        let (mut alone, state, timers) = open();
        alone.put(scope(state), b"uk", b"value").unwrap();
        alone.delete(scope(state), b"uk").unwrap();
        let (mut batched, state_b, _) = open();
        let mut batch = WriteBatch::new();
        batch.put(scope(state_b), b"uk", b"value");
        batch.delete(scope(state_b), b"uk");
        batched.write(batch).unwrap();
        let volume = |b: &Metered<dyn StateBackend>| b.take_metrics().volume().bytes_written;
        assert_eq!(volume(&alone), 12 + 7);
        assert_eq!(volume(&batched), 12 + 7);
        // A timer counts its key, namespace and time when registered and when popped.
        let timer = Timer {
            timestamp: 5,
            key_group,
            key: b"key".to_vec(),
            namespace: b"ns".to_vec(),
        };
        alone.register_timer(timers, &timer).unwrap();
        assert_eq!(alone.pop_due_timers(timers, 10, 10).unwrap().len(), 1);
        assert_eq!(volume(&alone), 2 * (3 + 2 + 8));
    }

    #[test]
    fn calls_are_timed_per_state_and_kind_totals_merge_the_states() {
        use statekit_backend::{key_group_of, StateKind, WriteBatch};
        let inner = MemoryBackend::open(InstanceConfig::single(8).unwrap()).unwrap();
        let mut b: Metered<dyn StateBackend> = Metered::new(Box::new(inner));
        let left = b
            .register_state(&StateDescriptor::new("left", StateKind::Map))
            .unwrap();
        let right = b
            .register_state(&StateDescriptor::new("right", StateKind::Map))
            .unwrap();
        let timers = b
            .register_state(&StateDescriptor::new("cleanup", StateKind::Timers))
            .unwrap();
        let key_group = key_group_of(b"key", 8);
        let scope = |state| Scope {
            state,
            key_group,
            key: b"key",
            namespace: b"",
        };
        for _ in 0..3 {
            b.put(scope(left), b"k", b"v").unwrap();
        }
        b.put(scope(right), b"k", b"v").unwrap();
        b.scan(
            scope(right),
            UserKeyRange::all(),
            Direction::Forward,
            &mut |_, _| Ok(Visit::Continue),
        )
        .unwrap();
        let timer = Timer {
            timestamp: 1,
            key_group,
            key: b"key".to_vec(),
            namespace: Vec::new(),
        };
        b.register_timer(timers, &timer).unwrap();
        // A batch on one state is that state's; one spanning two is no single state's.
        let mut one = WriteBatch::new();
        one.delete(scope(left), b"k");
        b.write(one).unwrap();
        let mut both = WriteBatch::new();
        both.delete(scope(left), b"k");
        both.delete(scope(right), b"k");
        b.write(both).unwrap();

        let names: Vec<String> = b.states().into_iter().map(|d| d.name).collect();
        let metrics = b.take_metrics();
        let by_state = metrics.by_state(&names);
        let count = |state: &str, kind: &str| by_state[state].get(kind).map_or(0, |s| s.count);
        assert_eq!(count("left", "put"), 3);
        assert_eq!(count("right", "put"), 1);
        assert_eq!(count("right", "scan"), 1);
        assert_eq!(count("left", "scan"), 0);
        assert_eq!(count("cleanup", "register_timer"), 1);
        assert_eq!(count("left", "write_batch"), 1);
        assert_eq!(count(NO_SINGLE_STATE, "write_batch"), 1);
        // Kind totals are the states' together, and absorbing keeps both apart and whole.
        assert_eq!(metrics.summaries()["put"].count, 4);
        assert_eq!(metrics.summaries()["write_batch"].count, 2);
        assert_eq!(metrics.total(), 8);
        let mut twice = OpMetrics::default();
        twice.absorb(b.take_metrics());
        let again = {
            b.put(scope(right), b"k", b"v").unwrap();
            b.take_metrics()
        };
        twice.absorb(again);
        twice.absorb(metrics);
        assert_eq!(twice.by_state(&names)["right"]["put"].count, 2);
        assert_eq!(twice.summaries()["put"].count, 5);
    }
}

//! The state backend contract: what a Flink-style keyed operator needs from its state store,
//! and nothing that belongs to one storage engine.
//!
//! # The state model
//! An entry is addressed by *state* (a registered name), *key group* (see
//! [`crate::keygroup`]), *key* (the operator's partitioning key), *namespace* (a window, or
//! empty) and *user key* (the map key of map state; empty for value and list state). The
//! first four form a [`Scope`]; inside one scope, entries are ordered by user key bytes, so
//! every range read is a bounded seek inside one scope, never a scan over a whole key.
//!
//! # Capabilities
//! [`StateBackend`] is the umbrella over small capability traits: [`StateRead`],
//! [`StateWrite`], [`TimerStore`] and [`Checkpointing`]. All are object safe: the harness picks
//! a backend at run time as `Box<dyn StateBackend>`, while an engine that knows its backend
//! uses the concrete type and pays no dynamic dispatch.
//!
//! # Why the trait is synchronous
//! A remote backend may be 10-100 ms from its data, so the trait must let it hide latency.
//! It is synchronous with two batched entry points instead of being `async`:
//! - [`StateRead::multi_get`] takes many point reads at once, so a backend can issue them
//!   concurrently (the remote backend overlaps its object-store requests);
//! - [`StateRead::prefetch`] is a hint that the listed scopes will be read soon, so a backend
//!   can start loading them while the operator works on earlier events.
//!
//! Keyed operators process one element at a time per key, in order (the Flink model). An
//! async trait would force an executor into every engine and every backend, box every future
//! behind `dyn`, and make the local backends (where a read is a microsecond) slower, to buy
//! nothing that batching does not already give: an engine that wants overlap gathers the keys
//! of a micro-batch of elements and calls `multi_get`/`prefetch` once, which is what Flink 2.0's
//! asynchronous state API does under the hood. A backend that is async inside (the remote one)
//! blocks on its own runtime at this boundary.
//!
//! # TTL
//! A state may carry a time-to-live (processing time, from the backend's
//! [`Clock`](crate::clock::Clock)). Every write sets the entry's expiry to `now + ttl`
//! (Flink's `OnCreateAndWrite`); an expired entry is never returned (Flink's
//! `NeverReturnExpired`) and a merge onto an expired entry starts afresh. How expired entries
//! are physically removed is each backend's business.
//!
//! # Merge
//! `merge` appends: the new value is the live old value followed by the operand. List state
//! encodes each element length-prefixed, so an append never reads the old list; RocksDB maps
//! this onto a merge operator. Only list and map states take merges
//! ([`StateKind::takes_merges`]); a value is then either appended to or written whole, never
//! both, which is what lets a backend remove expired whole values safely.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointHandle;
use crate::error::{Error, Result};
use crate::keygroup::{KeyGroup, KeyGroupRange};

/// Identifies a registered state inside one backend instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateId(u32);

impl StateId {
    /// The id with index `index` (ids are handed out densely from 0 in registration order).
    pub fn from_index(index: u32) -> Self {
        StateId(index)
    }

    /// The dense index of this id.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a state holds. Backends store all kinds as bytes; the kind tells them (and the
/// tuner and reports) how the state is accessed, and timer queues are stored apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// One value per key and namespace.
    Value,
    /// An appendable list per key and namespace.
    List,
    /// An ordered map per key and namespace.
    Map,
    /// A value combined by a reduce function.
    Reducing,
    /// An accumulator combined by an aggregate function.
    Aggregating,
    /// An event-time timer queue (registered timers, popped in time order).
    Timers,
}

impl StateKind {
    /// Whether [`StateWrite::merge`] applies: list state appends elements, map state appends
    /// to the list under a user key. Value, reducing and aggregating states hold one whole
    /// value (written with `put`): a backend can then remove an expired one without looking
    /// for appends that might have extended it.
    pub fn takes_merges(self) -> bool {
        matches!(self, StateKind::List | StateKind::Map)
    }
}

/// Time-to-live of a state's entries, in milliseconds of processing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ttl {
    /// How long an entry lives after its last write.
    pub millis: u64,
}

/// The declaration of a named state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateDescriptor {
    /// The state's name, unique within a backend instance.
    pub name: String,
    /// What the state holds.
    pub kind: StateKind,
    /// Expiry of entries, if any.
    pub ttl: Option<Ttl>,
}

impl StateDescriptor {
    /// A state without TTL.
    pub fn new(name: impl Into<String>, kind: StateKind) -> Self {
        StateDescriptor {
            name: name.into(),
            kind,
            ttl: None,
        }
    }

    /// Sets a time-to-live.
    pub fn with_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.ttl = Some(Ttl {
            millis: ttl.as_millis() as u64,
        });
        self
    }
}

/// Where a set of entries lives: state, key group, key and namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope<'a> {
    /// The state.
    pub state: StateId,
    /// The key group of `key`; must be `key_group_of(key, max_parallelism)`.
    pub key_group: KeyGroup,
    /// The encoded key.
    pub key: &'a [u8],
    /// The encoded namespace (empty for "no namespace").
    pub namespace: &'a [u8],
}

impl Scope<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> ScopeBuf {
        ScopeBuf {
            state: self.state,
            key_group: self.key_group,
            key: self.key.to_vec(),
            namespace: self.namespace.to_vec(),
        }
    }
}

/// An owned [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeBuf {
    /// The state.
    pub state: StateId,
    /// The key group of `key`.
    pub key_group: KeyGroup,
    /// The encoded key.
    pub key: Vec<u8>,
    /// The encoded namespace.
    pub namespace: Vec<u8>,
}

impl ScopeBuf {
    /// Borrows it as a [`Scope`].
    pub fn as_scope(&self) -> Scope<'_> {
        Scope {
            state: self.state,
            key_group: self.key_group,
            key: &self.key,
            namespace: &self.namespace,
        }
    }
}

/// A range of user keys inside one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserKeyRange<'a> {
    /// Lower bound.
    pub lower: Bound<&'a [u8]>,
    /// Upper bound.
    pub upper: Bound<&'a [u8]>,
}

impl<'a> UserKeyRange<'a> {
    /// Every user key.
    pub fn all() -> Self {
        UserKeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }

    /// A range with the given bounds.
    pub fn new(lower: Bound<&'a [u8]>, upper: Bound<&'a [u8]>) -> Self {
        UserKeyRange { lower, upper }
    }

    /// `lower..=upper`.
    pub fn inclusive(lower: &'a [u8], upper: &'a [u8]) -> Self {
        UserKeyRange::new(Bound::Included(lower), Bound::Included(upper))
    }

    /// `lower..upper`.
    pub fn half_open(lower: &'a [u8], upper: &'a [u8]) -> Self {
        UserKeyRange::new(Bound::Included(lower), Bound::Excluded(upper))
    }

    /// `[lower, upper)` with `None` for an open end: the range of a batch's
    /// [`WriteOp::DeleteRange`], the inverse of [`UserKeyRange::to_half_open`].
    pub fn from_half_open(lower: Option<&'a [u8]>, upper: Option<&'a [u8]>) -> Self {
        UserKeyRange::new(
            lower.map_or(Bound::Unbounded, Bound::Included),
            upper.map_or(Bound::Unbounded, Bound::Excluded),
        )
    }

    /// Whether `user_key` lies inside the range.
    pub fn contains(&self, user_key: &[u8]) -> bool {
        let above = match self.lower {
            Bound::Included(l) => user_key >= l,
            Bound::Excluded(l) => user_key > l,
            Bound::Unbounded => true,
        };
        let below = match self.upper {
            Bound::Included(u) => user_key <= u,
            Bound::Excluded(u) => user_key < u,
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Whether no key can lie inside the range (for example `b..a`, or `a..a`).
    pub fn is_empty(&self) -> bool {
        match (self.lower, self.upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u))
            | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
            _ => false,
        }
    }

    /// The same keys as `[lower, upper)` with owned bounds (`None` = open), the form of
    /// [`WriteBatch::delete_range`]: the smallest key above `k` is `k` followed by a zero
    /// byte, so an excluded lower or included upper bound `k` becomes `k ++ [0]`.
    pub fn to_half_open(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let successor = |k: &[u8]| {
            let mut next = Vec::with_capacity(k.len() + 1);
            next.extend_from_slice(k);
            next.push(0);
            next
        };
        let lower = match self.lower {
            Bound::Included(l) => Some(l.to_vec()),
            Bound::Excluded(l) => Some(successor(l)),
            Bound::Unbounded => None,
        };
        let upper = match self.upper {
            Bound::Included(u) => Some(successor(u)),
            Bound::Excluded(u) => Some(u.to_vec()),
            Bound::Unbounded => None,
        };
        (lower, upper)
    }
}

/// The user keys that start with a prefix, as an owned bounded range: prefix iteration is a
/// bounded seek like any other range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRange {
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
}

impl PrefixRange {
    /// The range of keys starting with `prefix`.
    pub fn new(prefix: &[u8]) -> Self {
        PrefixRange {
            lower: prefix.to_vec(),
            upper: prefix_successor(prefix),
        }
    }

    /// Borrows it as a [`UserKeyRange`].
    pub fn as_range(&self) -> UserKeyRange<'_> {
        UserKeyRange {
            lower: Bound::Included(&self.lower),
            upper: match &self.upper {
                Some(u) => Bound::Excluded(u),
                None => Bound::Unbounded,
            },
        }
    }
}

/// The smallest byte string greater than every string starting with `prefix`, or `None` if
/// there is none (the prefix is empty or all 0xFF).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xFF {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// The order of a range scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Ascending user keys.
    #[default]
    Forward,
    /// Descending user keys.
    Reverse,
}

/// What a scan visitor wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Go on with the next entry.
    Continue,
    /// End the scan.
    Stop,
}

/// A visitor of user-key/value pairs inside one scope.
pub type EntryVisitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<Visit> + 'v;

/// One live entry, as seen by [`StateRead::scan_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Key group.
    pub key_group: KeyGroup,
    /// Encoded key.
    pub key: &'a [u8],
    /// Encoded namespace.
    pub namespace: &'a [u8],
    /// User key (empty for value and list state).
    pub user_key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
    /// Processing time (ms) at which the entry expires, if its state has a TTL.
    pub expires_at: Option<u64>,
}

/// A visitor of whole entries.
pub type StateVisitor<'v> = dyn FnMut(&EntryRef<'_>) -> Result<Visit> + 'v;

/// One write in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set a value.
    Put {
        /// Where.
        scope: ScopeBuf,
        /// User key.
        user_key: Vec<u8>,
        /// New value.
        value: Vec<u8>,
    },
    /// Append to a value.
    Merge {
        /// Where.
        scope: ScopeBuf,
        /// User key.
        user_key: Vec<u8>,
        /// Bytes to append.
        operand: Vec<u8>,
    },
    /// Remove a value.
    Delete {
        /// Where.
        scope: ScopeBuf,
        /// User key.
        user_key: Vec<u8>,
    },
    /// Remove the user keys in `[lower, upper)` (`None` = unbounded) of a scope.
    DeleteRange {
        /// Where.
        scope: ScopeBuf,
        /// Inclusive lower bound.
        lower: Option<Vec<u8>>,
        /// Exclusive upper bound.
        upper: Option<Vec<u8>>,
    },
}

impl WriteOp {
    /// The scope the operation writes to.
    pub fn scope(&self) -> &ScopeBuf {
        match self {
            WriteOp::Put { scope, .. }
            | WriteOp::Merge { scope, .. }
            | WriteOp::Delete { scope, .. }
            | WriteOp::DeleteRange { scope, .. } => scope,
        }
    }
}

/// Writes applied all together or not at all by [`StateWrite::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, scope: Scope<'_>, user_key: &[u8], value: &[u8]) -> &mut Self {
        self.ops.push(WriteOp::Put {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
            value: value.to_vec(),
        });
        self
    }

    /// Adds an append.
    pub fn merge(&mut self, scope: Scope<'_>, user_key: &[u8], operand: &[u8]) -> &mut Self {
        self.ops.push(WriteOp::Merge {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
            operand: operand.to_vec(),
        });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, scope: Scope<'_>, user_key: &[u8]) -> &mut Self {
        self.ops.push(WriteOp::Delete {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
        });
        self
    }

    /// Adds a range delete of `[lower, upper)`.
    pub fn delete_range(
        &mut self,
        scope: Scope<'_>,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
    ) -> &mut Self {
        self.ops.push(WriteOp::DeleteRange {
            scope: scope.to_owned(),
            lower: lower.map(<[u8]>::to_vec),
            upper: upper.map(<[u8]>::to_vec),
        });
        self
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Takes the operations out.
    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A registered event-time timer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timer {
    /// When it fires (event time, ms).
    pub timestamp: i64,
    /// Key group of `key`.
    pub key_group: KeyGroup,
    /// Encoded key.
    pub key: Vec<u8>,
    /// Encoded namespace.
    pub namespace: Vec<u8>,
}

/// Statistics any backend can report; fields a backend does not know stay `None`.
/// Engine-specific detail (RocksDB's per-level figures, say) lives in the backend's own type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendStats {
    /// Bytes of memory the backend holds for state (caches, memtables, heap maps): the sum
    /// of [`BackendStats::memory_by_component`], each byte counted once.
    pub memory_bytes: Option<u64>,
    /// What [`BackendStats::memory_bytes`] is made of, by the backend's own names (for
    /// RocksDB: cached blocks, memtables, table readers outside the cache). Components that
    /// are part of another are named `... (within X)` and not added again; a high-water
    /// mark shown beside its gauge is named `... (not added)`.
    #[serde(default)]
    pub memory_by_component: std::collections::BTreeMap<String, u64>,
    /// Bytes the backend's state occupies in storage: on local disk, or in the object store
    /// for the remote backend (measured by listing it, so for `file://` and S3 alike).
    pub disk_bytes: Option<u64>,
    /// Logical bytes of live keys and values.
    pub live_data_bytes: Option<u64>,
    /// Bytes of keys and values written by the user.
    pub user_bytes_written: Option<u64>,
    /// Bytes written to storage (local disk, or the object store for the remote backend)
    /// by flushes and compactions.
    pub disk_bytes_written: Option<u64>,
    /// Data-block cache hits (RocksDB's block cache, SlateDB's block cache): data blocks
    /// only, so that rates compare across backends (index and filter lookups differ in
    /// number and pinning between them).
    pub cache_hits: Option<u64>,
    /// Data-block cache misses.
    pub cache_misses: Option<u64>,
    /// Index and filter block lookups in the block cache that hit. Their rate says whether
    /// the state's indexes and filters still fit the cache (a miss reads a whole index or
    /// filter); it does not compare across backends, whose pinning differs.
    #[serde(default)]
    pub meta_cache_hits: Option<u64>,
    /// Index and filter block lookups in the block cache that missed.
    #[serde(default)]
    pub meta_cache_misses: Option<u64>,
    /// Microseconds writes were stalled.
    pub write_stall_micros: Option<u64>,
    /// Backend-specific counters by the backend's own names, for tools that know the
    /// backend (the tuner's advisor reads RocksDB's: `rocksdb.l0-files`,
    /// `rocksdb.bloom.filter.useful`, ...).
    #[serde(default)]
    pub details: std::collections::BTreeMap<String, u64>,
}

/// Point and range reads.
pub trait StateRead {
    /// The value under `user_key` in `scope`, if present and not expired.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown state or a key group this instance does not own;
    /// `Unavailable`/`Corruption` from the storage underneath.
    fn get(&self, scope: Scope<'_>, user_key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Many point reads at once, results in request order. Backends with slow storage
    /// overlap the reads; the default runs them one by one.
    ///
    /// # Errors
    /// As [`StateRead::get`]; the first error fails the whole call.
    fn multi_get(&self, requests: &[(Scope<'_>, &[u8])]) -> Result<Vec<Option<Vec<u8>>>> {
        requests.iter().map(|(s, k)| self.get(*s, k)).collect()
    }

    /// A hint that these scopes will be read soon. Backends with slow storage start loading
    /// them; others ignore it.
    ///
    /// # Errors
    /// Only for invalid arguments; a failed prefetch is not an error.
    fn prefetch(&self, scopes: &[Scope<'_>]) -> Result<()> {
        let _ = scopes;
        Ok(())
    }

    /// Visits the live entries of `scope` whose user keys lie in `range`, in `direction`
    /// order, until the visitor says stop. Only the range is read: no entry outside it is
    /// decoded or visited.
    ///
    /// # Errors
    /// As [`StateRead::get`], or the visitor's own error.
    fn scan(
        &self,
        scope: Scope<'_>,
        range: UserKeyRange<'_>,
        direction: Direction,
        visitor: &mut EntryVisitor<'_>,
    ) -> Result<()>;

    /// Visits every live entry of `state` in `key_groups` (intersected with the owned
    /// range), key group by key group in ascending order; within a key group the order is the
    /// backend's. For snapshots, migrations and debugging.
    ///
    /// # Errors
    /// As [`StateRead::get`], or the visitor's own error.
    fn scan_state(
        &self,
        state: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut StateVisitor<'_>,
    ) -> Result<()>;
}

/// Writes. Single writes are atomic on their own; [`StateWrite::write`] makes a batch atomic.
pub trait StateWrite {
    /// Sets the value under `user_key` and refreshes its TTL.
    ///
    /// # Errors
    /// As [`StateRead::get`].
    fn put(&mut self, scope: Scope<'_>, user_key: &[u8], value: &[u8]) -> Result<()>;

    /// Appends `operand` to the live value under `user_key` (or stores it if there is none)
    /// and refreshes its TTL.
    ///
    /// # Errors
    /// As [`StateRead::get`]; `InvalidArgument` for a state that takes no merges
    /// ([`StateKind::takes_merges`]).
    fn merge(&mut self, scope: Scope<'_>, user_key: &[u8], operand: &[u8]) -> Result<()>;

    /// Removes the value under `user_key`, if any.
    ///
    /// # Errors
    /// As [`StateRead::get`].
    fn delete(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()>;

    /// Removes every user key of `scope` in `range`, without reading them: how operators
    /// clean up expired intervals.
    ///
    /// # Errors
    /// As [`StateRead::get`].
    fn delete_range(&mut self, scope: Scope<'_>, range: UserKeyRange<'_>) -> Result<()>;

    /// Applies all operations of `batch` or none of them.
    ///
    /// # Errors
    /// If any operation is invalid, nothing is applied.
    fn write(&mut self, batch: WriteBatch) -> Result<()>;
}

/// Event-time timers, persisted with the state and restored with it.
pub trait TimerStore {
    /// Registers a timer in the queue `queue` (a state of kind [`StateKind::Timers`]).
    /// Registering the same timer twice keeps one.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown queue or a key group this instance does not own.
    fn register_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()>;

    /// Removes a timer if it is registered.
    ///
    /// # Errors
    /// As [`TimerStore::register_timer`].
    fn delete_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()>;

    /// Removes and returns up to `limit` timers with `timestamp <= watermark`, earliest
    /// first (ties in key group, key, namespace order). Call again until it returns fewer
    /// than `limit`: firing a timer may register new due ones.
    ///
    /// # Errors
    /// As [`TimerStore::register_timer`].
    fn pop_due_timers(
        &mut self,
        queue: StateId,
        watermark: i64,
        limit: usize,
    ) -> Result<Vec<Timer>>;

    /// The earliest registered timestamp of the queue, if any.
    ///
    /// # Errors
    /// As [`TimerStore::register_timer`].
    fn next_timer(&self, queue: StateId) -> Result<Option<i64>>;

    /// Removes every timer of `queue` without firing it and returns how many there were:
    /// with [`StateBackend::clear_state`], how an operator whose timers only clean up drops
    /// them all at once. The default pops them in batches.
    ///
    /// # Errors
    /// As [`TimerStore::register_timer`].
    fn clear_timers(&mut self, queue: StateId) -> Result<u64> {
        let mut cleared = 0;
        loop {
            let popped = self.pop_due_timers(queue, i64::MAX, CLEAR_BATCH)?.len();
            cleared += popped as u64;
            if popped < CLEAR_BATCH {
                return Ok(cleared);
            }
        }
    }

    /// Visits the timers of `queue` in `key_groups`, in time order within each key group.
    ///
    /// # Errors
    /// As [`TimerStore::register_timer`], or the visitor's error.
    fn scan_timers(
        &self,
        queue: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut dyn FnMut(&Timer) -> Result<Visit>,
    ) -> Result<()>;
}

/// Snapshots to and restores from the backend's checkpoint storage.
pub trait Checkpointing {
    /// Writes a consistent snapshot of all state and timers as checkpoint `checkpoint_id`.
    /// Nothing of it is visible (restorable) until the call returns a handle.
    ///
    /// # Errors
    /// `InvalidArgument` if `checkpoint_id` is not greater than the last one taken;
    /// `Unavailable`/`ResourceExhausted` from the checkpoint storage, in which case no handle
    /// exists and the backend's state is unchanged.
    ///
    /// The checkpoint is *pending* until the engine confirms it
    /// ([`Checkpointing::notify_checkpoint_complete`]) or aborts it: until then no older
    /// checkpoint is deleted. An engine with a single instance confirms right after this
    /// returns.
    fn checkpoint(&mut self, checkpoint_id: u64) -> Result<CheckpointHandle>;

    /// The engine's word that checkpoint `checkpoint_id` completed everywhere (Flink's
    /// `notifyCheckpointComplete`). Confirms it and every older pending checkpoint (engines
    /// may skip notifications), then deletes the oldest confirmed checkpoints beyond
    /// [`InstanceConfig::retained_checkpoints`](crate::InstanceConfig). Deleting is best
    /// effort: a failed delete leaves garbage, never a broken checkpoint. A notification for
    /// a checkpoint already out of retention does nothing.
    ///
    /// # Errors
    /// `NotFound` for a checkpoint this instance did not take or has had aborted.
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()>;

    /// The engine's word that checkpoint `checkpoint_id` will never count (another task
    /// failed): deletes it if this instance completed it, and nothing else. Aborting a
    /// checkpoint this instance never completed does nothing.
    ///
    /// # Errors
    /// `InvalidArgument` for a confirmed checkpoint.
    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()>;

    /// Replaces the backend's state by the union of the snapshots behind `handles`,
    /// clipped to the key groups this instance owns. Handles may come from instances of a
    /// different parallelism (rescaling); together they must cover the owned range.
    ///
    /// States registered before the restore keep their [`StateId`]s (and stay registered,
    /// empty, if the checkpoint lacks them); the checkpoint's other states follow, in its
    /// order.
    ///
    /// # Errors
    /// `NotFound` for a missing checkpoint, `Corruption` for a failed checksum,
    /// `Incompatible` for an unknown format version or a different backend's format, or a
    /// checkpoint state with a registered state's name but another kind or TTL. On error the
    /// backend holds no partial state.
    fn restore(&mut self, handles: &[CheckpointHandle]) -> Result<()>;

    /// What checkpoint `handle`, taken by this instance, occupies in storage, if the backend
    /// measures it; `None` by default (and for handles of other instances). The harness
    /// measures other backends' checkpoints by what they add to a local directory.
    ///
    /// # Errors
    /// `Unavailable` when the storage cannot be read.
    fn checkpoint_size(&self, handle: &CheckpointHandle) -> Result<Option<CheckpointSize>> {
        let _ = handle;
        Ok(None)
    }
}

/// What a checkpoint occupies in storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSize {
    /// Bytes of everything the checkpoint references, data shared with earlier checkpoints
    /// included: what a restore from it reads.
    pub total_bytes: u64,
    /// Bytes it references that the instance's previous checkpoint did not: what it added.
    pub added_bytes: u64,
}

/// A keyed state backend: the one contract a stream engine programs against.
pub trait StateBackend: StateRead + StateWrite + TimerStore + Checkpointing + Send {
    /// A short name of the implementation ("memory", "rocksdb", "remote").
    fn name(&self) -> &'static str;

    /// The max parallelism (number of key groups) of the job.
    fn max_parallelism(&self) -> u16;

    /// The key groups this instance owns.
    fn key_group_range(&self) -> KeyGroupRange;

    /// Registers a state, or returns the id of an already registered one of the same name.
    ///
    /// # Errors
    /// `Incompatible` if a state of that name exists with another kind or TTL;
    /// `InvalidArgument` for an empty name.
    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId>;

    /// The registered states, indexed by [`StateId::index`].
    fn states(&self) -> Vec<StateDescriptor>;

    /// Statistics for reports and tuning.
    ///
    /// # Errors
    /// `Unavailable` if the engine underneath cannot be asked.
    fn stats(&self) -> Result<BackendStats> {
        Ok(BackendStats::default())
    }

    /// Removes every entry of the key/value state `state` in the owned key groups: what an
    /// operator does when all of a state's entries expire at once (the final watermark of a
    /// bounded input makes every cleanup due). The default deletes entry by entry; backends
    /// that can drop a whole state at once do.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown state or a timer queue; storage errors as
    /// [`StateWrite::write`]. Nothing is half cleared by a failed call that reports an
    /// invalid argument; a storage error may leave some entries, which a retry removes.
    fn clear_state(&mut self, state: StateId) -> Result<()> {
        // One key group at a time, so the keys held between the scan and the deletes are a
        // group's, not the whole state's.
        let owned = self.key_group_range();
        for group in owned.start..=owned.end {
            let mut doomed = Vec::new();
            let one = KeyGroupRange {
                start: group,
                end: group,
            };
            self.scan_state(state, one, &mut |e| {
                doomed.push((
                    ScopeBuf {
                        state,
                        key_group: e.key_group,
                        key: e.key.to_vec(),
                        namespace: e.namespace.to_vec(),
                    },
                    e.user_key.to_vec(),
                ));
                Ok(Visit::Continue)
            })?;
            for chunk in doomed.chunks(CLEAR_BATCH) {
                let mut batch = WriteBatch::new();
                for (scope, user_key) in chunk {
                    batch.delete(scope.as_scope(), user_key);
                }
                self.write(batch)?;
            }
        }
        Ok(())
    }
}

/// Deletes per write when [`StateBackend::clear_state`] and [`TimerStore::clear_timers`]
/// fall back to removing entries one by one.
const CLEAR_BATCH: usize = 1024;

/// Checks that `state` is a registered key/value state, not a timer queue: what calls on a
/// whole state ([`StateRead::scan_state`], [`StateBackend::clear_state`]) check first.
///
/// # Errors
/// `InvalidArgument` naming the state id.
pub fn check_kv_state(state: StateId, states: &[StateDescriptor]) -> Result<()> {
    match states.get(state.index()) {
        Some(d) if d.kind != StateKind::Timers => Ok(()),
        _ => Err(Error::invalid(format!(
            "state id {} is not a registered key/value state",
            state.index()
        ))),
    }
}

/// Checks a scope against a backend's owned range and registered states: the validation
/// every backend performs before touching storage.
///
/// # Errors
/// `InvalidArgument` naming the state or key group.
pub fn check_scope(
    scope: &Scope<'_>,
    owned: KeyGroupRange,
    states: &[StateDescriptor],
    want_timers: bool,
) -> Result<()> {
    let Some(desc) = states.get(scope.state.index()) else {
        return Err(Error::invalid(format!(
            "state id {} is not registered ({} states are)",
            scope.state.index(),
            states.len()
        )));
    };
    if (desc.kind == StateKind::Timers) != want_timers {
        return Err(Error::invalid(format!(
            "state '{}' is a {:?} state and cannot be used as {}",
            desc.name,
            desc.kind,
            if want_timers {
                "a timer queue"
            } else {
                "key/value state"
            }
        )));
    }
    if !owned.contains(scope.key_group) {
        return Err(Error::invalid(format!(
            "key group {} of state '{}' is not owned by this instance (it owns {owned})",
            scope.key_group, desc.name
        )));
    }
    Ok(())
}

/// Checks that the state a merge addresses takes merges (see [`StateKind::takes_merges`]);
/// call after [`check_scope`].
///
/// # Errors
/// `InvalidArgument` naming the state and its kind.
pub fn check_merge(scope: &Scope<'_>, states: &[StateDescriptor]) -> Result<()> {
    match states.get(scope.state.index()) {
        Some(desc) if !desc.kind.takes_merges() => Err(Error::invalid(format!(
            "state '{}' is a {:?} state: only list and map states take merges (appends); \
             write its whole value with put",
            desc.name, desc.kind
        ))),
        _ => Ok(()),
    }
}

/// The states of an instance after a restore: those registered before it keep their ids (a
/// handle taken before the restore must address the same state after it), followed by the
/// restored states not registered yet, in the checkpoint's order.
///
/// # Errors
/// `Incompatible` if a restored state has the name of a registered one with another kind or
/// TTL.
pub fn states_after_restore(
    registered: &[StateDescriptor],
    restored: &[StateDescriptor],
) -> Result<Vec<StateDescriptor>> {
    let mut states = registered.to_vec();
    for d in restored {
        if resolve_registration(&states, d)?.1 {
            states.push(d.clone());
        }
    }
    Ok(states)
}

/// Checks a descriptor against those already registered and returns the id to use: the
/// registration logic every backend shares.
///
/// # Errors
/// As [`StateBackend::register_state`].
pub fn resolve_registration(
    existing: &[StateDescriptor],
    descriptor: &StateDescriptor,
) -> Result<(StateId, bool)> {
    if descriptor.name.is_empty() {
        return Err(Error::invalid("a state name must not be empty"));
    }
    if let Some(pos) = existing.iter().position(|d| d.name == descriptor.name) {
        let old = &existing[pos];
        if old.kind != descriptor.kind || old.ttl != descriptor.ttl {
            return Err(Error::new(
                crate::ErrorKind::Incompatible,
                format!(
                    "state '{}' is registered as {:?} with ttl {:?}, not {:?} with ttl {:?}",
                    old.name, old.kind, old.ttl, descriptor.kind, descriptor.ttl
                ),
            ));
        }
        return Ok((StateId(pos as u32), false));
    }
    Ok((StateId(existing.len() as u32), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_edges() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn range_contains_and_empty() {
        let r = UserKeyRange::half_open(b"b", b"d");
        assert!(!r.contains(b"a"));
        assert!(r.contains(b"b"));
        assert!(r.contains(b"c\xff"));
        assert!(!r.contains(b"d"));
        assert!(UserKeyRange::half_open(b"b", b"b").is_empty());
        assert!(!UserKeyRange::inclusive(b"b", b"b").is_empty());
        assert!(UserKeyRange::inclusive(b"c", b"b").is_empty());
        assert!(!UserKeyRange::all().is_empty());
        let p = PrefixRange::new(b"ab");
        assert!(p.as_range().contains(b"ab"));
        assert!(p.as_range().contains(b"ab\xff\xff"));
        assert!(!p.as_range().contains(b"ac"));
    }

    fn bound(kind: u8, key: &[u8]) -> Bound<&[u8]> {
        match kind % 3 {
            0 => Bound::Included(key),
            1 => Bound::Excluded(key),
            _ => Bound::Unbounded,
        }
    }

    proptest::proptest! {
        #[test]
        fn half_open_form_holds_the_same_keys(
            lower in proptest::collection::vec(0u8..3, 0..4),
            upper in proptest::collection::vec(0u8..3, 0..4),
            kinds in (0u8..3, 0u8..3),
            key in proptest::collection::vec(0u8..3, 0..5),
        ) {
            let range = UserKeyRange::new(bound(kinds.0, &lower), bound(kinds.1, &upper));
            let (lo, hi) = range.to_half_open();
            let half_open = UserKeyRange::from_half_open(lo.as_deref(), hi.as_deref());
            proptest::prop_assert_eq!(range.contains(&key), half_open.contains(&key));
        }
    }
}

//! The in-memory backend: statekit's counterpart of Flink's `HashMapStateBackend`.
//!
//! Per state and key group, a hash map from (key, namespace) to an ordered map of user keys:
//! point operations are one hash lookup plus one B-tree lookup, range reads are a B-tree
//! range inside one scope, and restoring a key-group sub-range moves whole key groups.
//! Checkpoints are full snapshots in the backend-neutral format.
//!
//! TTL: expired entries are never returned; they are dropped when overwritten, skipped by
//! snapshots, and swept incrementally (one key group of one TTL state every
//! [`SWEEP_EVERY_WRITES`] writes), so memory held by expired state stays bounded without a
//! stop-the-world pass.

use std::collections::BTreeSet;

use hashbrown::hash_map::EntryRef as MapEntry;
use hashbrown::{Equivalent, HashMap};

use crate::backend::{
    check_kv_state, check_merge, check_scope, resolve_registration, BackendStats, Checkpointing,
    Direction, EntryRef, EntryVisitor, Scope, StateBackend, StateDescriptor, StateId, StateKind,
    StateRead, StateVisitor, StateWrite, Timer, TimerStore, UserKeyRange, Visit, WriteBatch,
    WriteOp,
};
use crate::checkpoint::{delete_location, CheckpointLog};
use crate::checkpoint::{
    handles_for_range, read_full_snapshot, write_full_snapshot, CheckpointHandle, SnapshotRecord,
};
use crate::error::{Error, Result};
use crate::instance::InstanceConfig;
use crate::keygroup::{KeyGroup, KeyGroupRange};

mod group_timers;
mod key_and_namespace;
mod user_map;

use group_timers::GroupTimers;
use key_and_namespace::KeyAndNamespace;
use user_map::{Slot, UserMap};

/// Values below this many bytes grow by exactly what a merge appends; longer ones double.
const EXACT_GROWTH_BELOW: usize = 4096;

/// Operations of a batch whose state is read ahead together before they are applied (see
/// `MemoryBackend::warm`).
const WARM_AHEAD: usize = 8;

/// How many writes pass between two incremental TTL sweeps.
pub const SWEEP_EVERY_WRITES: u64 = 1024;

/// A scope's key and namespace (see [`KeyAndNamespace`]).
type ScopeKey = KeyAndNamespace;

/// Borrowed form of [`ScopeKey`], so lookups need no allocation. Its derived `Hash` hashes
/// the two slices exactly as `ScopeKey`'s does.
#[derive(Hash)]
struct ScopeKeyRef<'a> {
    key: &'a [u8],
    namespace: &'a [u8],
}

impl<'a> ScopeKeyRef<'a> {
    fn of(scope: &Scope<'a>) -> Self {
        ScopeKeyRef {
            key: scope.key,
            namespace: scope.namespace,
        }
    }
}

impl Equivalent<ScopeKey> for ScopeKeyRef<'_> {
    fn equivalent(&self, other: &ScopeKey) -> bool {
        self.key == other.key() && self.namespace == other.namespace()
    }
}

impl From<&ScopeKeyRef<'_>> for ScopeKey {
    fn from(r: &ScopeKeyRef<'_>) -> Self {
        KeyAndNamespace::new(r.key, r.namespace)
    }
}

type KeyGroupMap = HashMap<ScopeKey, UserMap>;

/// The [`Timer`] at `timestamp` of `scope` in `key_group`.
fn timer_of(timestamp: i64, key_group: KeyGroup, scope: &KeyAndNamespace) -> Timer {
    Timer {
        timestamp,
        key_group,
        key: scope.key().to_vec(),
        namespace: scope.namespace().to_vec(),
    }
}

/// A timer queue partitioned by key group (Flink's `KeyGroupPartitionedPriorityQueue`): one
/// ordered [`GroupTimers`] per key group, so snapshots and rescaling touch only the wanted
/// groups, and an ordered set of each group's earliest timer to pop across groups in global
/// order.
#[derive(Debug, Default)]
struct TimerQueue {
    groups: Vec<GroupTimers>,
    /// The time of each group's first timer (`None` while it has none): what `heads` holds
    /// for it, kept here so a registration compares with it instead of walking the set's
    /// leftmost path, a few cache misses per call with a million timers.
    firsts: Vec<Option<i64>>,
    /// `(timestamp, key group)` of the first timer of every non-empty group.
    heads: BTreeSet<(i64, KeyGroup)>,
}

impl TimerQueue {
    fn new(groups: usize) -> Self {
        TimerQueue {
            groups: (0..groups).map(|_| GroupTimers::default()).collect(),
            firsts: vec![None; groups],
            heads: BTreeSet::new(),
        }
    }

    /// Adds the timer at `ts` of `scope` to one group (nothing if it is there already); it
    /// becomes the group's head only if it is earlier than the head.
    fn insert(&mut self, index: usize, key_group: KeyGroup, ts: i64, scope: KeyAndNamespace) {
        if self.groups[index].insert(ts, scope) {
            let first = self.firsts[index];
            if first.is_none_or(|f| ts < f) {
                self.set_first(index, key_group, first, Some(ts));
            }
        }
    }

    /// Runs `change`, which may remove timers, on one group's set and keeps `heads` in step
    /// with its first timer.
    fn update_group<R>(
        &mut self,
        index: usize,
        key_group: KeyGroup,
        change: impl FnOnce(&mut GroupTimers) -> R,
    ) -> R {
        let group = &mut self.groups[index];
        let result = change(group);
        let after = group.first_time();
        let before = self.firsts[index];
        if before != after {
            self.set_first(index, key_group, before, after);
        }
        result
    }

    fn set_first(
        &mut self,
        index: usize,
        key_group: KeyGroup,
        before: Option<i64>,
        after: Option<i64>,
    ) {
        if let Some(ts) = before {
            self.heads.remove(&(ts, key_group));
        }
        if let Some(ts) = after {
            self.heads.insert((ts, key_group));
        }
        self.firsts[index] = after;
    }
}

/// The hash map of the scope's state and key group (the caller checked the scope). A
/// function of the fields, so the caller can keep reading the configuration meanwhile.
fn key_group_map<'a>(
    tables: &'a mut [Table],
    config: &InstanceConfig,
    scope: &Scope<'_>,
) -> &'a mut KeyGroupMap {
    let Table::Kv(groups) = &mut tables[scope.state.index()] else {
        unreachable!("callers check the scope first")
    };
    &mut groups[config.group_index(scope.key_group)]
}

/// The scope's map, created empty if it has none (the caller checked the scope). A function
/// of the fields, as [`key_group_map`] is.
fn user_map_in<'a>(
    tables: &'a mut [Table],
    config: &InstanceConfig,
    scope: &Scope<'_>,
) -> &'a mut UserMap {
    key_group_map(tables, config, scope)
        .entry_ref(&ScopeKeyRef::of(scope))
        .or_default()
}

/// Processing time for TTL checks, read from the clock only when an entry has an expiry,
/// and then once: most states have no TTL, and a clock read per merge and per scan was
/// about 1% of an ad-click run on this backend.
struct LazyNow<'a> {
    config: &'a InstanceConfig,
    now: std::cell::OnceCell<u64>,
}

impl<'a> LazyNow<'a> {
    fn new(config: &'a InstanceConfig) -> Self {
        LazyNow {
            config,
            now: std::cell::OnceCell::new(),
        }
    }

    /// Whether `slot` has not expired.
    fn live(&self, slot: &Slot) -> bool {
        slot.expires_at()
            .is_none_or(|_| slot.live(*self.now.get_or_init(|| self.config.now_millis())))
    }
}

#[derive(Debug)]
enum Table {
    Kv(Vec<KeyGroupMap>),
    Timers(TimerQueue),
}

/// The in-memory state backend.
#[derive(Debug)]
pub struct MemoryBackend {
    config: InstanceConfig,
    states: Vec<StateDescriptor>,
    tables: Vec<Table>,
    checkpoints: CheckpointLog,
    writes: u64,
    sweep_cursor: usize,
    user_bytes_written: u64,
}

impl MemoryBackend {
    /// A new, empty backend.
    ///
    /// # Errors
    /// `InvalidArgument` if the configuration is invalid.
    pub fn open(config: InstanceConfig) -> Result<Self> {
        config.validate()?;
        Ok(MemoryBackend {
            config,
            states: Vec::new(),
            tables: Vec::new(),
            checkpoints: CheckpointLog::default(),
            writes: 0,
            sweep_cursor: 0,
            user_bytes_written: 0,
        })
    }

    fn expiry(&self, state: StateId) -> Option<u64> {
        self.config.expiry(self.states[state.index()].ttl)
    }

    fn user_map(&self, scope: &Scope<'_>) -> Result<Option<&UserMap>> {
        check_scope(scope, self.config.key_groups, &self.states, false)?;
        Ok(self.checked_user_map(scope))
    }

    /// The scope's map, if it has one (the caller checked the scope).
    fn checked_user_map(&self, scope: &Scope<'_>) -> Option<&UserMap> {
        let Table::Kv(groups) = &self.tables[scope.state.index()] else {
            unreachable!("callers check the scope first")
        };
        groups[self.config.group_index(scope.key_group)].get(&ScopeKeyRef::of(scope))
    }

    /// The hash map of the scope's state and key group (the caller checked the scope).
    fn key_group_map_mut(&mut self, scope: &Scope<'_>) -> &mut KeyGroupMap {
        key_group_map(&mut self.tables, &self.config, scope)
    }

    fn user_map_mut(&mut self, scope: &Scope<'_>) -> &mut UserMap {
        user_map_in(&mut self.tables, &self.config, scope)
    }

    /// Runs `change` on the scope's map if it has one, and drops the map if that left it
    /// empty, so removed keys free their hash slot: one hash lookup, and none of the
    /// allocation `user_map_mut` makes for a scope that does not exist.
    fn remove_in_scope(&mut self, scope: &Scope<'_>, change: impl FnOnce(&mut UserMap)) {
        let probe = ScopeKeyRef::of(scope);
        if let MapEntry::Occupied(mut entry) = self.key_group_map_mut(scope).entry_ref(&probe) {
            change(entry.get_mut());
            if entry.get().is_empty() {
                entry.remove();
            }
        }
    }

    fn apply(&mut self, op: WriteOp) {
        match op {
            WriteOp::Put {
                scope,
                user_key,
                value,
            } => self.apply_put(&scope.as_scope(), &user_key, value),
            WriteOp::Merge {
                scope,
                user_key,
                operand,
            } => self.apply_merge(&scope.as_scope(), &user_key, &operand),
            WriteOp::Delete { scope, user_key } => {
                self.remove_in_scope(&scope.as_scope(), |map| map.remove(&user_key));
            }
            WriteOp::DeleteRange {
                scope,
                lower,
                upper,
            } => {
                let range = UserKeyRange::from_half_open(lower.as_deref(), upper.as_deref());
                self.apply_delete_range(&scope.as_scope(), range);
            }
        }
        self.after_write();
    }

    fn apply_put(&mut self, scope: &Scope<'_>, user_key: &[u8], value: Vec<u8>) {
        self.user_bytes_written += (user_key.len() + value.len()) as u64;
        let expires_at = self.expiry(scope.state);
        self.user_map_mut(scope)
            .insert(user_key, Slot::new(value, expires_at));
    }

    fn apply_merge(&mut self, scope: &Scope<'_>, user_key: &[u8], operand: &[u8]) {
        self.user_bytes_written += (user_key.len() + operand.len()) as u64;
        let expires_at = self.expiry(scope.state);
        let now = LazyNow::new(&self.config);
        let slot = user_map_in(&mut self.tables, &self.config, scope)
            .get_or_insert_with(user_key, || Slot::new(Vec::new(), expires_at));
        if !now.live(slot) {
            slot.value.clear();
        }
        // Small lists grow exactly: jemalloc's size classes (25% apart) amortise the copies,
        // and a list appended a few times keeps no doubling slack. Long ones (a hot key's
        // buffer) double, or every append would copy the whole list.
        if slot.value.len() < EXACT_GROWTH_BELOW {
            slot.value.reserve_exact(operand.len());
        }
        slot.value.extend_from_slice(operand);
        slot.set_expires_at(expires_at);
    }

    fn apply_delete_range(&mut self, scope: &Scope<'_>, range: UserKeyRange<'_>) {
        if range.is_empty() {
            return;
        }
        self.remove_in_scope(scope, |map| map.remove_range(range.lower, range.upper));
    }

    /// Reads what applying `op` will read first (its scope's hash slot and its entries), so
    /// that the cache misses of a batch's next operations overlap instead of coming one after
    /// another: the cleanup deletes of fired timers hit scopes written long before, each two
    /// to four misses, most of a delete's time. The caller checked the operation's scope.
    fn warm(&self, op: &WriteOp) {
        let map = self.checked_user_map(&op.scope().as_scope());
        std::hint::black_box(map.map(UserMap::first_key_len));
    }

    fn after_write(&mut self) {
        self.writes += 1;
        if self.writes % SWEEP_EVERY_WRITES == 0 {
            self.sweep_expired_step();
        }
    }

    /// Removes the expired entries of one key group of one TTL state, moving a cursor over
    /// all of them.
    fn sweep_expired_step(&mut self) {
        let ttl_states: Vec<usize> = (0..self.states.len())
            .filter(|&i| self.states[i].ttl.is_some())
            .collect();
        if ttl_states.is_empty() {
            return;
        }
        let groups = self.config.key_groups.len();
        let cursor = self.sweep_cursor % (ttl_states.len() * groups);
        self.sweep_cursor = cursor + 1;
        let now = self.config.now_millis();
        if let Table::Kv(tables) = &mut self.tables[ttl_states[cursor / groups]] {
            let group = &mut tables[cursor % groups];
            group.retain(|_, map| {
                map.retain(|slot| slot.live(now));
                !map.is_empty()
            });
        }
    }

    fn check_timer(&self, queue: StateId, timer: &Timer) -> Result<()> {
        let scope = Scope {
            state: queue,
            key_group: timer.key_group,
            key: &timer.key,
            namespace: &timer.namespace,
        };
        check_scope(&scope, self.config.key_groups, &self.states, true)
    }

    fn timer_queue(&self, queue: StateId) -> Result<&TimerQueue> {
        match self.tables.get(queue.index()) {
            Some(Table::Timers(q)) => Ok(q),
            _ => Err(Error::invalid(format!(
                "state id {} is not a registered timer queue",
                queue.index()
            ))),
        }
    }

    fn timer_queue_mut(&mut self, queue: StateId) -> &mut TimerQueue {
        match &mut self.tables[queue.index()] {
            Table::Timers(q) => q,
            Table::Kv(_) => unreachable!("callers check the queue first"),
        }
    }

    fn new_table(&self, kind: StateKind) -> Table {
        let groups = self.config.key_groups.len();
        if kind == StateKind::Timers {
            Table::Timers(TimerQueue::new(groups))
        } else {
            Table::Kv((0..groups).map(|_| KeyGroupMap::default()).collect())
        }
    }
}

impl StateRead for MemoryBackend {
    fn get(&self, scope: Scope<'_>, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        let now = LazyNow::new(&self.config);
        Ok(self
            .user_map(&scope)?
            .and_then(|m| m.get(user_key))
            .filter(|slot| now.live(slot))
            .map(|slot| slot.value.clone()))
    }

    fn scan(
        &self,
        scope: Scope<'_>,
        range: UserKeyRange<'_>,
        direction: Direction,
        visitor: &mut EntryVisitor<'_>,
    ) -> Result<()> {
        let Some(map) = self.user_map(&scope)? else {
            return Ok(());
        };
        if range.is_empty() {
            return Ok(());
        }
        let now = LazyNow::new(&self.config);
        let iter = map.range(range.lower, range.upper);
        let mut visit = |(k, slot): (&[u8], &Slot)| -> Result<Visit> {
            if now.live(slot) {
                visitor(k, &slot.value)
            } else {
                Ok(Visit::Continue)
            }
        };
        match direction {
            Direction::Forward => {
                for entry in iter {
                    if visit(entry)? == Visit::Stop {
                        break;
                    }
                }
            }
            Direction::Reverse => {
                for entry in iter.rev() {
                    if visit(entry)? == Visit::Stop {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn scan_state(
        &self,
        state: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut StateVisitor<'_>,
    ) -> Result<()> {
        let Some(Table::Kv(groups)) = self.tables.get(state.index()) else {
            return Err(Error::invalid(format!(
                "state id {} is not a registered key/value state",
                state.index()
            )));
        };
        let Some(range) = key_groups.intersect(&self.config.key_groups) else {
            return Ok(());
        };
        let now = self.config.now_millis();
        for kg in range.iter() {
            for (scope, map) in &groups[self.config.group_index(kg)] {
                for (user_key, slot) in map.iter() {
                    if !slot.live(now) {
                        continue;
                    }
                    let entry = EntryRef {
                        key_group: kg,
                        key: scope.key(),
                        namespace: scope.namespace(),
                        user_key,
                        value: &slot.value,
                        expires_at: slot.expires_at(),
                    };
                    if visitor(&entry)? == Visit::Stop {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

impl StateWrite for MemoryBackend {
    fn put(&mut self, scope: Scope<'_>, user_key: &[u8], value: &[u8]) -> Result<()> {
        check_scope(&scope, self.config.key_groups, &self.states, false)?;
        self.apply_put(&scope, user_key, value.to_vec());
        self.after_write();
        Ok(())
    }

    fn merge(&mut self, scope: Scope<'_>, user_key: &[u8], operand: &[u8]) -> Result<()> {
        check_scope(&scope, self.config.key_groups, &self.states, false)?;
        check_merge(&scope, &self.states)?;
        self.apply_merge(&scope, user_key, operand);
        self.after_write();
        Ok(())
    }

    fn delete(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()> {
        check_scope(&scope, self.config.key_groups, &self.states, false)?;
        self.remove_in_scope(&scope, |map| map.remove(user_key));
        self.after_write();
        Ok(())
    }

    fn delete_range(&mut self, scope: Scope<'_>, range: UserKeyRange<'_>) -> Result<()> {
        check_scope(&scope, self.config.key_groups, &self.states, false)?;
        self.apply_delete_range(&scope, range);
        self.after_write();
        Ok(())
    }

    fn write(&mut self, batch: WriteBatch) -> Result<()> {
        // Validate everything first: applying in memory cannot fail afterwards, which is
        // what makes the batch atomic.
        for op in batch.ops() {
            check_scope(
                &op.scope().as_scope(),
                self.config.key_groups,
                &self.states,
                false,
            )?;
            if matches!(op, WriteOp::Merge { .. }) {
                check_merge(&op.scope().as_scope(), &self.states)?;
            }
        }
        let mut ops = batch.into_ops().into_iter();
        while ops.len() > 0 {
            for op in ops.as_slice().iter().take(WARM_AHEAD) {
                self.warm(op);
            }
            for op in ops.by_ref().take(WARM_AHEAD) {
                self.apply(op);
            }
        }
        Ok(())
    }
}

impl TimerStore for MemoryBackend {
    fn register_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        self.check_timer(queue, timer)?;
        let index = self.config.group_index(timer.key_group);
        self.timer_queue_mut(queue).insert(
            index,
            timer.key_group,
            timer.timestamp,
            KeyAndNamespace::new(&timer.key, &timer.namespace),
        );
        Ok(())
    }

    fn delete_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        self.check_timer(queue, timer)?;
        let index = self.config.group_index(timer.key_group);
        self.timer_queue_mut(queue)
            .update_group(index, timer.key_group, |g| {
                g.remove(
                    timer.timestamp,
                    &KeyAndNamespace::new(&timer.key, &timer.namespace),
                )
            });
        Ok(())
    }

    fn pop_due_timers(
        &mut self,
        queue: StateId,
        watermark: i64,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        self.timer_queue(queue)?;
        let start = self.config.key_groups.start;
        let q = self.timer_queue_mut(queue);
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(&(ts, key_group)) = q.heads.first() else {
                break;
            };
            if ts > watermark {
                break;
            }
            let index = usize::from(key_group - start);
            if let Some((timestamp, scope)) =
                q.update_group(index, key_group, GroupTimers::pop_first)
            {
                due.push(timer_of(timestamp, key_group, &scope));
            }
        }
        Ok(due)
    }

    fn next_timer(&self, queue: StateId) -> Result<Option<i64>> {
        Ok(self.timer_queue(queue)?.heads.first().map(|&(ts, _)| ts))
    }

    fn clear_timers(&mut self, queue: StateId) -> Result<u64> {
        let cleared = self
            .timer_queue(queue)?
            .groups
            .iter()
            .map(|g| g.len() as u64)
            .sum();
        *self.timer_queue_mut(queue) = TimerQueue::new(self.config.key_groups.len());
        Ok(cleared)
    }

    fn scan_timers(
        &self,
        queue: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut dyn FnMut(&Timer) -> Result<Visit>,
    ) -> Result<()> {
        let q = self.timer_queue(queue)?;
        let Some(range) = key_groups.intersect(&self.config.key_groups) else {
            return Ok(());
        };
        for kg in range.iter() {
            for (timestamp, scope) in q.groups[self.config.group_index(kg)].iter() {
                if visitor(&timer_of(timestamp, kg, scope))? == Visit::Stop {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl Checkpointing for MemoryBackend {
    fn checkpoint(&mut self, checkpoint_id: u64) -> Result<CheckpointHandle> {
        self.checkpoints.check_next(checkpoint_id)?;
        let storage = self.config.storage()?.clone();
        let handle = write_full_snapshot(
            self,
            self.config.operator_id.as_deref(),
            self.name(),
            &self.states,
            self.config.max_parallelism,
            self.config.key_groups,
            storage.as_ref(),
            checkpoint_id,
        )?;
        self.checkpoints.taken(handle.clone());
        Ok(handle)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let retired = self
            .checkpoints
            .confirm(checkpoint_id, self.config.retained_checkpoints)?;
        let storage = self.config.storage()?;
        for old in retired {
            // Best effort: a failed delete leaves garbage, never a broken checkpoint.
            let _ = delete_location(storage.as_ref(), &old.location);
        }
        Ok(())
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
        if let Some(aborted) = self.checkpoints.abort(checkpoint_id)? {
            let _ = delete_location(self.config.storage()?.as_ref(), &aborted.location);
        }
        Ok(())
    }

    fn restore(&mut self, handles: &[CheckpointHandle]) -> Result<()> {
        let storage = self.config.storage()?.clone();
        let owned = self.config.key_groups;
        let handles = handles_for_range(handles, owned)?;
        // Build the restored state beside the current one and swap only when every block
        // has been read and verified: a failed restore leaves the backend as it was.
        let mut fresh = MemoryBackend::open(self.config.clone())?;
        // States registered before the restore keep their ids.
        for d in &self.states {
            fresh.register_state(d)?;
        }
        for handle in handles {
            let snapshot = read_full_snapshot(storage.as_ref(), handle)?;
            if snapshot.max_parallelism() != self.config.max_parallelism {
                return Err(Error::invalid(format!(
                    "checkpoint {} was written with max parallelism {}, this instance has {}",
                    handle.checkpoint_id,
                    snapshot.max_parallelism(),
                    self.config.max_parallelism
                )));
            }
            let ids = snapshot
                .states()
                .iter()
                .map(|d| fresh.register_state(d))
                .collect::<Result<Vec<_>>>()?;
            let Some(range) = handle.key_groups.intersect(&owned) else {
                continue;
            };
            // A snapshot whose checksums hold can still contradict itself (a bug, or a
            // file written by something else): every record is checked against the
            // snapshot's own state list and this instance's key groups.
            let inconsistent = |what: String| {
                Error::corruption(format!(
                    "checkpoint {} at {}: {what}",
                    handle.checkpoint_id, handle.location
                ))
            };
            let id_of = |state: usize| {
                ids.get(state).copied().ok_or_else(|| {
                    inconsistent(format!(
                        "a record of state #{state}, but the snapshot lists {} states",
                        ids.len()
                    ))
                })
            };
            snapshot.read(storage.as_ref(), range, &mut |record| {
                match record {
                    SnapshotRecord::Entry { state, entry } => {
                        let scope = Scope {
                            state: id_of(state)?,
                            key_group: entry.key_group,
                            key: entry.key,
                            namespace: entry.namespace,
                        };
                        check_scope(&scope, owned, &fresh.states, false)
                            .map_err(|e| inconsistent(e.message().to_string()))?;
                        fresh.user_map_mut(&scope).insert(
                            entry.user_key,
                            Slot::new(entry.value.to_vec(), entry.expires_at),
                        );
                    }
                    SnapshotRecord::Timer { state, timer } => {
                        fresh
                            .register_timer(id_of(state)?, &timer)
                            .map_err(|e| inconsistent(e.message().to_string()))?;
                    }
                }
                Ok(())
            })?;
        }
        fresh.checkpoints = std::mem::take(&mut self.checkpoints);
        *self = fresh;
        Ok(())
    }
}

impl StateBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn max_parallelism(&self) -> u16 {
        self.config.max_parallelism
    }

    fn key_group_range(&self) -> KeyGroupRange {
        self.config.key_groups
    }

    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId> {
        let (id, is_new) = resolve_registration(&self.states, descriptor)?;
        if is_new {
            self.tables.push(self.new_table(descriptor.kind));
            self.states.push(descriptor.clone());
        }
        Ok(id)
    }

    fn states(&self) -> Vec<StateDescriptor> {
        self.states.clone()
    }

    /// Drops the state's maps whole: freeing its entries without a lookup each, about a
    /// fifth of what deleting them one by one cost at the end of an ad-click run.
    fn clear_state(&mut self, state: StateId) -> Result<()> {
        check_kv_state(state, &self.states)?;
        self.tables[state.index()] = self.new_table(self.states[state.index()].kind);
        Ok(())
    }

    fn stats(&self) -> Result<BackendStats> {
        // Live data is what the state holds as a flat key-value set, as any backend stores
        // it: per entry its key, namespace, user key and value; per timer its timestamp, key
        // and namespace. The heap figures add what the maps and sets cost around them.
        let mut live = 0u64;
        let (mut maps, mut timers) = (0u64, 0u64);
        for table in &self.tables {
            match table {
                Table::Kv(groups) => {
                    for (scope, map) in groups.iter().flatten() {
                        let scope_bytes = scope.len() as u64;
                        // The hash slot (scope key and map) and the scope's key bytes.
                        let slot = std::mem::size_of::<(ScopeKey, UserMap)>() as u64;
                        maps += slot + scope.heap_bytes() as u64 + map.overhead_bytes() as u64;
                        for (k, slot) in map.iter() {
                            live += scope_bytes + (k.len() + slot.value.len()) as u64;
                            maps += (k.len() + slot.value.capacity()) as u64;
                        }
                    }
                }
                Table::Timers(q) => {
                    for group in &q.groups {
                        live += group
                            .iter()
                            .map(|(_, scope)| 8 + scope.len() as u64)
                            .sum::<u64>();
                        timers += group.heap_bytes() as u64;
                    }
                }
            }
        }
        let heap = maps + timers;
        // No storage: bytes stored and written to storage are not zero but meaningless, so
        // write and space amplification come out as n/a rather than 0.
        Ok(BackendStats {
            memory_bytes: Some(heap),
            memory_by_component: [
                ("state maps (estimated)".to_string(), maps),
                ("timers (estimated)".to_string(), timers),
            ]
            .into_iter()
            .collect(),
            live_data_bytes: Some(live),
            user_bytes_written: Some(self.user_bytes_written),
            ..BackendStats::default()
        })
    }
}

#[cfg(test)]
mod tests;

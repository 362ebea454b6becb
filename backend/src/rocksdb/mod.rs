//! The embedded RocksDB backend: statekit's counterpart of Flink's
//! `EmbeddedRocksDBStateBackend`.
//!
//! - One column family per registered state (timer queues included); keys laid out so that
//!   every read is a bounded seek (the layout is described in `keys.rs`).
//! - Merge (list append) is a RocksDB merge operator; TTL is an expiry prefix on values, read
//!   by the merge operator and a compaction filter.
//! - One process-wide memory budget ([`RocksDbResources`]).
//! - Configuration as data ([`RocksDbConfig`], TOML and `OPTIONS` files, presets).
//! - Incremental checkpoints: a RocksDB checkpoint (hard links), then only SST files the
//!   previous checkpoints do not already hold are uploaded (see `checkpoint.rs`).
//! - The WAL is off by default: durability comes from checkpoints, as in Flink.
//!
//! # TTL and merges
//! A merge operand carries the expiry of its write (`write time + ttl`), so the merge operator
//! knows each operand's write time and decides, independently of when it runs, whether the
//! value before it had expired (then the append starts afresh, like the in-memory backend).
//! Removing expired entries must never remove a base that a newer append still extends:
//! `ttl.rs` says how.

mod apply;
mod checkpoint;
mod kept_iterators;
mod keys;
mod prefetcher;
mod resources;
mod stats;
mod ttl;

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, MergeOperands, Options, ReadOptions,
    WriteOptions, DB,
};

pub use crate::rocksdb_config::{
    options_file, BackendOptions, CfOptions, CompactionStyle, Compression, DbOptions,
    DeletionTriggeredCompaction, IndexType, InfoLogLevel, PinningTier, Preset, RocksDbConfig,
    StateOptions, TableOptions, DEFAULT_SCOPE_FILTER_BITS, SCOPE_EXTRACTOR_NAME,
};
pub use checkpoint::{CheckpointStats, ROCKSDB_FORMAT};
pub use resources::{MemoryBudget, RocksDbResources};
pub use stats::RocksDbStats;

use crate::backend::{
    check_kv_state, check_merge, check_scope, resolve_registration, BackendStats, Direction,
    EntryRef, EntryVisitor, Scope, StateBackend, StateDescriptor, StateId, StateKind, StateRead,
    StateVisitor, StateWrite, Timer, TimerStore, UserKeyRange, Visit, WriteBatch, WriteOp,
};
use crate::checkpoint::CheckpointLog;
use crate::error::{Error, ErrorKind, Result};
use crate::instance::InstanceConfig;
use crate::keygroup::KeyGroupRange;
use crate::pending_timers::PendingTimers;
use kept_iterators::DbWithIterators;
use keys::{
    decode_entry_key, decode_timer_key, entry_key, key_group_bounds, scope_bounds, scope_prefix,
    split_expiry, timer_due_upper, timer_index_bounds, timer_time_key, with_expiry, TIMER_BY_TIME,
};
use ttl::{ttl_merge, SweepCursor, TtlClock, TtlFilterFactory};

/// Everything a RocksDB backend instance needs beyond [`InstanceConfig`].
#[derive(Debug, Clone)]
pub struct RocksDbSettings {
    /// Local working directory; each instance creates its own subdirectory in it and
    /// removes it when dropped.
    pub local_dir: PathBuf,
    /// The shared cache and write buffer manager (the memory budget).
    pub resources: Arc<RocksDbResources>,
    /// RocksDB options.
    pub config: RocksDbConfig,
    /// Write a WAL (off by default: checkpoints make state durable).
    pub wal: bool,
}

/// Default of [`BackendOptions::point_delete_limit`]: always a range tombstone.
///
/// A range tombstone is a blind write, but every flush and non-bottommost compaction that
/// writes one estimates its covered bytes over the overlapping files of every lower level
/// (`compensated_range_deletion_size`: an index lookup per file). With index blocks pinned
/// (the backend's default, see `cf_options`) that is cheap; unpinned, it re-reads index blocks
/// for every one of millions of tiny tombstones (an interval join's cleanup timers): 560 s of
/// write stalls in a standard ad-click run under direct I/O. Point deletes must first read the
/// range, a disk read per range delete under direct I/O (the same run's cleanup phase took
/// over 10 minutes instead of one). Without pinning and with the page cache on, point deletes
/// won: 396 s and no stalls against 474 s with 152 s of stalls.
pub const DEFAULT_POINT_DELETE_LIMIT: usize = 0;

/// Default of `memtable_max_range_deletions`: a memtable holding this many range tombstones
/// is flushed. Every read merges the memtable's range tombstones, re-fragmented after each new
/// one, so a workload that interleaves range deletes and reads pays for all of them on every
/// read: quadratic in the tombstones, and sliding-window-demand's quick scale did not finish
/// in 15 minutes (97% of the time fragmenting). Bounded, a read's share stays constant; a
/// flush per thousand range deletes is cheap beside that. RocksDB's default is no bound (the
/// presets keep it).
pub const DEFAULT_MEMTABLE_MAX_RANGE_DELETIONS: u32 = 1000;

impl RocksDbSettings {
    /// Settings with RocksDB's default options, no WAL.
    pub fn new(local_dir: impl Into<PathBuf>, resources: Arc<RocksDbResources>) -> Self {
        RocksDbSettings {
            local_dir: local_dir.into(),
            resources,
            config: RocksDbConfig::default(),
            wal: false,
        }
    }

    /// Sets the RocksDB options.
    pub fn with_config(mut self, config: RocksDbConfig) -> Self {
        self.config = config;
        self
    }

    /// Turns the WAL on or off.
    pub fn with_wal(mut self, wal: bool) -> Self {
        self.wal = wal;
        self
    }
}

/// A visitor of raw RocksDB keys and values.
type RawVisitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<Visit> + 'v;

/// Removes a directory when dropped; declared after the DB in [`OpenDb`] so it runs after
/// the DB is closed.
#[derive(Debug)]
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An open DB and the directory it owns.
struct OpenDb {
    db: DbWithIterators,
    options: Options,
    /// Options of column families created after opening: `create_cf` does not keep what
    /// they reference (the compaction filter), so they must live as long as the DB.
    cf_options: Vec<Options>,
    _dir: DirGuard,
}

impl OpenDb {
    fn create_cf(&mut self, name: &str, opts: Options) -> Result<()> {
        self.db.create_cf(name, &opts)?;
        self.cf_options.push(opts);
        Ok(())
    }
}

/// The RocksDB state backend.
pub struct RocksDbBackend {
    config: InstanceConfig,
    settings: RocksDbSettings,
    open: OpenDb,
    states: Vec<StateDescriptor>,
    cf_names: Vec<String>,
    /// Per state, whether its scans keep an iterator (it has the scope prefix extractor).
    keeps_iterator: Vec<bool>,
    write_opts: WriteOptions,
    checkpoints: CheckpointLog,
    incremental: checkpoint::Incremental,
    /// Per timer queue, a key at or below every firing-order key of the queue: pops seek
    /// from there instead of over the tombstones of popped timers.
    timer_floor: Vec<Option<Vec<u8>>>,
    /// Timer registrations not yet written (without a WAL only): see `pending_timers.rs`.
    pending_timers: RefCell<PendingTimers>,
    ttl_clock: TtlClock,
    sweep: SweepCursor,
    generation: u64,
    uid: String,
    user_bytes_written: u64,
    // Declared last: the instance directory goes after the DB inside it is closed.
    instance_dir: DirGuard,
}

impl fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbBackend")
            .field("key_groups", &self.config.key_groups)
            .field("dir", &self.instance_dir.0)
            .field("states", &self.states.len())
            .finish()
    }
}

/// Maps a RocksDB error to a statekit error, naming what was being done.
pub(crate) fn rocks_err(what: impl fmt::Display, e: ::rocksdb::Error) -> Error {
    use ::rocksdb::ErrorKind as K;
    let message = e.to_string();
    let kind = match e.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::Corruption => ErrorKind::Corruption,
        K::InvalidArgument | K::NotSupported => ErrorKind::InvalidArgument,
        K::IOError if message.contains("No space") => ErrorKind::ResourceExhausted,
        K::IOError | K::Busy | K::TimedOut | K::TryAgain | K::Incomplete => ErrorKind::Unavailable,
        K::ShutdownInProgress | K::Aborted => ErrorKind::Closed,
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("{what}: rocksdb: {message}"))
}

/// A random hex id: names instance directories and shared checkpoint files, which must not
/// collide across processes and restores.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut a = std::collections::hash_map::RandomState::new().build_hasher();
    a.write_u32(std::process::id());
    let mut b = std::collections::hash_map::RandomState::new().build_hasher();
    b.write_u64(a.finish());
    format!("{:016x}{:08x}", a.finish(), b.finish() as u32)
}

fn cf_name(state: &str) -> String {
    format!("{}{state}", options_file::STATE_CF_PREFIX)
}

/// Appends operands to a value: list state's merge, without a TTL.
fn concat_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let len = existing.map_or(0, <[u8]>::len) + operands.iter().map(<[u8]>::len).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    if let Some(e) = existing {
        out.extend_from_slice(e);
    }
    for op in operands {
        out.extend_from_slice(op);
    }
    Some(out)
}

/// What [`RocksDbBackend::visit_scope`] walks: one state's scope, its entries' keys after a
/// prefix of `prefix_len` bytes, up to `upper` (exclusive) if set.
struct ScopeScan<'a> {
    state: StateId,
    prefix_len: usize,
    upper: Option<&'a [u8]>,
    direction: Direction,
    now: u64,
}

/// Whether a state's column family has the scope prefix extractor (and filters of scopes):
/// key/value states unless the configuration turns `scope_prefix_filter` off.
fn has_scope_extractor(settings: &RocksDbSettings, desc: &StateDescriptor) -> bool {
    desc.kind != StateKind::Timers
        && settings.config.for_state(&desc.name).0.scope_prefix_filter != Some(false)
}

/// Column-family options for a state.
///
/// # Errors
/// `InvalidArgument` if RocksDB refuses an option set through its options string.
fn cf_options(
    settings: &RocksDbSettings,
    desc: &StateDescriptor,
    clock: &TtlClock,
) -> Result<Options> {
    let mut cf = settings.config.for_state(&desc.name).0;
    cf.memtable_max_range_deletions
        .get_or_insert(DEFAULT_MEMTABLE_MAX_RANGE_DELETIONS);
    let scoped = has_scope_extractor(settings, desc);
    if !scoped {
        // A hash memtable hashes scope prefixes; timer queues have none.
        cf.hash_skiplist_buckets = None;
    }
    // Options the C API has no setter for go through RocksDB's options-string parser, on
    // fresh options (the copy it returns keeps nothing Rust must keep alive; everything
    // below is set on the copy). Setting them on the open column family instead would only
    // reach its next memtable.
    let string_options = cf
        .string_options()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    let mut opts = Options::default()
        .get_options_from_string(&string_options)
        .map_err(|e| {
            Error::invalid(format!(
                "RocksDB options '{string_options}' of state '{}': {e}",
                desc.name
            ))
        })?;
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&settings.resources.cache);
    // The memory model: index and filter blocks count against the budget, with high
    // priority; L0's stay pinned: every lookup reads them, and so does the size estimate of
    // every range tombstone a flush or compaction writes (see DEFAULT_POINT_DELETE_LIMIT).
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_unpartitioned_pinning_tier(::rocksdb::BlockBasedTablePinningTier::All);
    // Partitioned index and filters with only their top level pinned (Flink's
    // `partitioned-index-filters`): whole pinned indexes grow with the state (about 1% of
    // it) and, pinned, cannot be evicted, so a state far beyond the budget would break it;
    // partitions are cached with high priority and evicted like any block. At 8x the budget
    // (ad-click standard scale, 2 GiB of state, 256 MiB) both ran at the same speed and peak
    // RSS: 26.0k and 29.0k events/s partitioned, 27.3k and 27.4k whole, 315-320 MiB.
    table.set_index_type(::rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_pin_top_level_index_and_filter(true);
    // Filters of scopes (`CfOptions::scope_prefix_filter`): every read of a key/value state
    // is a scan or get inside one scope, and most files lack most scopes. Set before the
    // configuration is applied, so its filter and whole-key settings win.
    if scoped {
        table.set_bloom_filter(DEFAULT_SCOPE_FILTER_BITS, false);
        table.set_whole_key_filtering(false);
        opts.set_prefix_extractor(::rocksdb::SliceTransform::create(
            SCOPE_EXTRACTOR_NAME,
            keys::scope_prefix_of,
            Some(keys::has_scope_prefix),
        ));
    }
    settings
        .config
        .apply_state(&desc.name, &mut opts, &mut table);
    opts.set_block_based_table_factory(&table);
    if desc.kind != StateKind::Timers {
        match desc.ttl {
            None => opts.set_merge_operator("statekit.append", concat_merge, concat_merge),
            Some(ttl) => {
                let ttl = ttl.millis;
                opts.set_merge_operator(
                    "statekit.append_ttl",
                    move |_k: &[u8], e: Option<&[u8]>, o: &MergeOperands| ttl_merge(ttl, e, o),
                    // Two operands cannot be combined without the value under them.
                    |_k: &[u8], _e: Option<&[u8]>, _o: &MergeOperands| None,
                );
                opts.set_compaction_filter_factory(TtlFilterFactory::new(
                    clock.clone(),
                    desc.kind.takes_merges(),
                ));
            }
        }
    }
    Ok(opts)
}

impl RocksDbBackend {
    /// Opens a new, empty instance in a fresh directory under `settings.local_dir`.
    ///
    /// # Errors
    /// `InvalidArgument` for an invalid configuration; I/O errors naming the directory.
    pub fn open(config: InstanceConfig, settings: RocksDbSettings) -> Result<Self> {
        config.validate()?;
        settings.config.validate()?;
        let uid = random_id();
        let instance_dir = settings.local_dir.join(format!(
            "rocksdb-kg{:05}-{:05}-{uid}",
            config.key_groups.start, config.key_groups.end
        ));
        std::fs::create_dir_all(&instance_dir).map_err(|e| Error::io(instance_dir.display(), e))?;
        let instance_dir = DirGuard(instance_dir);
        let ttl_clock = TtlClock::new(config.clock.clone());
        let open = open_db(&settings, &ttl_clock, &instance_dir.0.join("db-0"), &[])?;
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(!settings.wal);
        Ok(RocksDbBackend {
            incremental: checkpoint::Incremental::new(&config, &uid),
            config,
            settings,
            open,
            states: Vec::new(),
            cf_names: Vec::new(),
            keeps_iterator: Vec::new(),
            write_opts,
            checkpoints: CheckpointLog::default(),
            timer_floor: Vec::new(),
            pending_timers: RefCell::default(),
            ttl_clock,
            sweep: SweepCursor::default(),
            generation: 0,
            uid,
            user_bytes_written: 0,
            instance_dir,
        })
    }

    /// The directory of the current DB.
    pub fn db_path(&self) -> &Path {
        self.open.db.db().path()
    }

    /// The settings this instance was opened with.
    pub fn settings(&self) -> &RocksDbSettings {
        &self.settings
    }

    /// Hands the live entries of one scope to `visitor`, from the iterator's position on
    /// in the scan's direction, until the scope's end, `scan.upper` or the visitor stops.
    fn visit_scope(
        &self,
        iter: &mut kept_iterators::ForwardIterator<'_>,
        scan: &ScopeScan<'_>,
        visitor: &mut EntryVisitor<'_>,
    ) -> Result<()> {
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if scan.upper.is_some_and(|u| k >= u) {
                break;
            }
            if let Some(payload) = self.live(scan.state, v, scan.now)? {
                if visitor(&k[scan.prefix_len..], payload)? == Visit::Stop {
                    break;
                }
            }
            match scan.direction {
                Direction::Forward => iter.next(),
                Direction::Reverse => iter.prev(),
            }
        }
        Ok(())
    }

    /// After a put or merge: kept iterators too old are released (kept_iterators.rs) and
    /// the write counts towards the TTL sweep (ttl.rs).
    fn after_user_write(&mut self) {
        self.open.db.release_iterators_if_stale();
        self.after_write();
    }

    fn db(&self) -> &DB {
        self.open.db.db()
    }

    /// Flushes memtables and compacts every state fully: maintenance after bulk loads or
    /// large deletions, and a way to make on-disk figures comparable in measurements.
    ///
    /// # Errors
    /// RocksDB errors naming the DB directory.
    pub fn compact(&self) -> Result<()> {
        self.ttl_clock.full_flush_starts();
        self.flush_all()?;
        for name in &self.cf_names {
            if let Some(cf) = self.db().cf_handle(name) {
                self.db().compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            }
        }
        Ok(())
    }

    fn now(&self) -> u64 {
        self.config.clock.now_millis()
    }

    fn cf(&self, state: StateId) -> Result<&ColumnFamily> {
        let name = &self.cf_names[state.index()];
        self.db().cf_handle(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("column family '{name}' is not open"),
            )
        })
    }

    fn ttl_of(&self, state: StateId) -> Option<u64> {
        self.states[state.index()].ttl.map(|t| t.millis)
    }

    /// The live payload of a stored value, or `None` if it has expired.
    fn live<'v>(&self, state: StateId, stored: &'v [u8], now: u64) -> Result<Option<&'v [u8]>> {
        if self.ttl_of(state).is_none() {
            return Ok(Some(stored));
        }
        let (exp, payload) = split_expiry(stored)
            .map_err(|e| e.context(format!("state '{}'", self.states[state.index()].name)))?;
        Ok((now < exp).then_some(payload))
    }

    fn encode_value(&self, state: StateId, value: &[u8]) -> Vec<u8> {
        match self.ttl_of(state) {
            Some(ttl) => with_expiry(self.now().saturating_add(ttl), value),
            None => value.to_vec(),
        }
    }

    fn check_kv(&self, scope: &Scope<'_>) -> Result<()> {
        check_scope(scope, self.config.key_groups, &self.states, false)
    }

    fn check_queue(&self, queue: StateId) -> Result<()> {
        match self.states.get(queue.index()) {
            Some(d) if d.kind == StateKind::Timers => Ok(()),
            _ => Err(Error::invalid(format!(
                "state id {} is not a registered timer queue",
                queue.index()
            ))),
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

    /// Adds one operation to a RocksDB batch; returns the user bytes it writes.
    ///
    /// `written` collects the keys the batch puts or merges when its range deletes may be
    /// written as point deletes: those must remove the batch's own earlier writes too, as a
    /// tombstone would.
    fn add_op(
        &self,
        batch: &mut ::rocksdb::WriteBatch,
        op: &WriteOp,
        written: Option<&mut Vec<(StateId, Vec<u8>)>>,
    ) -> Result<u64> {
        let scope = op.scope().as_scope();
        let cf = self.cf(scope.state)?;
        Ok(match op {
            WriteOp::Put {
                user_key, value, ..
            } => {
                let key = entry_key(&scope, user_key);
                batch.put_cf(cf, &key, self.encode_value(scope.state, value));
                if let Some(written) = written {
                    written.push((scope.state, key));
                }
                (user_key.len() + value.len()) as u64
            }
            WriteOp::Merge {
                user_key, operand, ..
            } => {
                let key = entry_key(&scope, user_key);
                batch.merge_cf(cf, &key, self.encode_value(scope.state, operand));
                if let Some(written) = written {
                    written.push((scope.state, key));
                }
                (user_key.len() + operand.len()) as u64
            }
            WriteOp::Delete { user_key, .. } => {
                batch.delete_cf(cf, entry_key(&scope, user_key));
                0
            }
            WriteOp::DeleteRange { lower, upper, .. } => {
                let range = UserKeyRange::from_half_open(lower.as_deref(), upper.as_deref());
                if let Some((lo, Some(hi))) = scope_bounds(&scope_prefix(&scope), &range) {
                    let written = written.map_or(&[][..], |w| w.as_slice());
                    self.add_range_delete(batch, scope.state, lo, hi, written)?;
                }
                0
            }
        })
    }

    /// Whether scans read the blocks their seek needs from each level in parallel
    /// (`BackendOptions::async_io`).
    fn async_io(&self) -> bool {
        self.settings.config.backend.async_io.unwrap_or(true)
    }

    /// Threads that read prefetched scopes (`RocksDbConfig::prefetch_threads`).
    fn prefetch_threads(&self) -> usize {
        self.settings.config.prefetch_threads()
    }

    fn point_delete_limit(&self) -> usize {
        self.settings
            .config
            .backend
            .point_delete_limit
            .unwrap_or(DEFAULT_POINT_DELETE_LIMIT)
    }

    /// Adds the deletion of raw keys `[lo, hi)` of one state to a batch: point deletes of the
    /// stored keys and of the batch's own earlier writes (`written`) in range when there are
    /// at most [`BackendOptions::point_delete_limit`] stored keys, else one range tombstone.
    fn add_range_delete(
        &self,
        batch: &mut ::rocksdb::WriteBatch,
        state: StateId,
        lo: Vec<u8>,
        hi: Vec<u8>,
        written: &[(StateId, Vec<u8>)],
    ) -> Result<()> {
        let cf = self.cf(state)?;
        let limit = self.point_delete_limit();
        let mut stored = Vec::new();
        if limit > 0 {
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(lo.clone());
            ro.set_iterate_upper_bound(hi.clone());
            ro.set_total_order_seek(true);
            let mut iter = self.db().raw_iterator_cf_opt(cf, ro);
            iter.seek_to_first();
            while let Some(k) = iter.key() {
                if stored.len() == limit {
                    break;
                }
                stored.push(k.to_vec());
                iter.next();
            }
            iter.status()
                .map_err(|e| rocks_err("range delete scan", e))?;
            if !iter.valid() {
                let in_range = |k: &[u8]| lo.as_slice() <= k && k < hi.as_slice();
                for key in &stored {
                    batch.delete_cf(cf, key);
                }
                for (_, key) in written.iter().filter(|(s, k)| *s == state && in_range(k)) {
                    batch.delete_cf(cf, key);
                }
                return Ok(());
            }
        }
        batch.delete_range_cf(cf, lo, hi);
        Ok(())
    }

    /// Writes the held timer registrations in one batch; they stay held if the write fails.
    fn write_pending_timers(&self) -> Result<()> {
        let mut pending = self.pending_timers.borrow_mut();
        if pending.is_empty() {
            return Ok(());
        }
        let mut batch = ::rocksdb::WriteBatch::default();
        for (queue, key) in pending.in_write_order() {
            batch.put_cf(self.cf(StateId::from_index(queue as u32))?, key, b"");
        }
        self.write_batch(batch)?;
        pending.clear();
        Ok(())
    }

    fn write_batch(&self, batch: ::rocksdb::WriteBatch) -> Result<()> {
        self.db()
            .write_opt(batch, &self.write_opts)
            .map_err(|e| rocks_err(format!("write to {}", self.db_path().display()), e))?;
        self.open.db.release_iterators_if_stale();
        Ok(())
    }

    /// Reads a scope the way Flink's RocksDB backend reads map state: an iterator seeks to
    /// the scope's prefix without an upper bound, checks every key for the prefix and filters
    /// user keys in the visitor's range. Kept only so benchmarks can compare it with
    /// [`StateRead::scan`]'s bounded seek; engines should never use it.
    ///
    /// # Errors
    /// As [`StateRead::scan`].
    pub fn scan_prefix_filtered(
        &self,
        scope: Scope<'_>,
        range: UserKeyRange<'_>,
        visitor: &mut EntryVisitor<'_>,
    ) -> Result<()> {
        self.check_kv(&scope)?;
        let prefix = scope_prefix(&scope);
        let now = self.now();
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        let mut iter = self.db().raw_iterator_cf_opt(self.cf(scope.state)?, ro);
        iter.seek(&prefix);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            let user_key = &k[prefix.len()..];
            if range.contains(user_key) {
                if let Some(payload) = self.live(scope.state, v, now)? {
                    if visitor(user_key, payload)? == Visit::Stop {
                        break;
                    }
                }
            }
            iter.next();
        }
        iter.status().map_err(|e| rocks_err("prefix scan", e))
    }

    /// Iterates `[lower, upper)` of a column family, handing raw keys and values to `f`.
    fn for_each_raw(
        &self,
        cf: &ColumnFamily,
        lower: Vec<u8>,
        upper: Vec<u8>,
        f: &mut RawVisitor<'_>,
    ) -> Result<()> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(lower);
        ro.set_iterate_upper_bound(upper);
        // The range may span scopes: no prefix filtering.
        ro.set_total_order_seek(true);
        let mut iter = self.db().raw_iterator_cf_opt(cf, ro);
        iter.seek_to_first();
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if f(k, v)? == Visit::Stop {
                return Ok(());
            }
            iter.next();
        }
        iter.status()
            .map_err(|e| rocks_err(format!("iterating {}", self.db_path().display()), e))
    }
}

/// Opens (or creates) a DB at `path` with the column families of `states`.
fn open_db(
    settings: &RocksDbSettings,
    clock: &TtlClock,
    path: &Path,
    states: &[StateDescriptor],
) -> Result<OpenDb> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path.display(), e))?;
    let guard = DirGuard(path.to_path_buf());
    let options = db_options(settings);
    let mut descriptors = vec![ColumnFamilyDescriptor::new(
        ::rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
        Options::default(),
    )];
    for desc in states {
        descriptors.push(ColumnFamilyDescriptor::new(
            cf_name(&desc.name),
            cf_options(settings, desc, clock)?,
        ));
    }
    let db = DB::open_cf_descriptors(&options, path, descriptors)
        .map_err(|e| rocks_err(format!("opening RocksDB at {}", path.display()), e))?;
    let open = OpenDb {
        db: DbWithIterators::wrap(db),
        options,
        cf_options: Vec::new(),
        _dir: guard,
    };
    Ok(open)
}

fn db_options(settings: &RocksDbSettings) -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_write_buffer_manager(&settings.resources.write_buffers);
    options.enable_statistics();
    // Compaction input buffers live outside the cache: bounded by the budget (see
    // `budgeted_compaction_readahead`) unless the configuration sets them.
    options.set_compaction_readahead_size(crate::rocksdb_config::budgeted_compaction_readahead(
        settings.resources.budget().total_bytes,
    ) as usize);
    settings.config.apply_db(&mut options);
    options
}

impl StateRead for RocksDbBackend {
    /// Hands the scopes to the prefetch threads (prefetcher.rs), which read them through the
    /// block cache; nothing without prefetch threads (`RocksDbConfig::prefetch_threads`).
    fn prefetch(&self, scopes: &[Scope<'_>]) -> Result<()> {
        for scope in scopes {
            self.check_kv(scope)?;
        }
        let reads = scopes.iter().filter_map(|scope| {
            let prefix = scope_prefix(scope);
            let (lower, upper) = scope_bounds(&prefix, &UserKeyRange::all())?;
            let state = scope.state.index();
            Some(prefetcher::ScopeRead {
                cf: self.cf_names[state].as_str().into(),
                lower,
                // A kept iterator reads to the scope's end with no bound, so a block past it
                // too: the prefetch reads the same blocks.
                upper: if self.keeps_iterator[state] {
                    None
                } else {
                    upper
                },
            })
        });
        self.open
            .db
            .prefetch(reads, self.prefetch_threads(), self.async_io());
        Ok(())
    }

    fn get(&self, scope: Scope<'_>, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_kv(&scope)?;
        self.open.db.release_iterators_if_stale();
        let key = entry_key(&scope, user_key);
        let stored = self
            .db()
            .get_pinned_cf(self.cf(scope.state)?, &key)
            .map_err(|e| rocks_err("get", e))?;
        match stored {
            None => Ok(None),
            Some(v) => Ok(self.live(scope.state, &v, self.now())?.map(<[u8]>::to_vec)),
        }
    }

    fn multi_get(&self, requests: &[(Scope<'_>, &[u8])]) -> Result<Vec<Option<Vec<u8>>>> {
        self.open.db.release_iterators_if_stale();
        let mut keys = Vec::with_capacity(requests.len());
        for (scope, user_key) in requests {
            self.check_kv(scope)?;
            keys.push((self.cf(scope.state)?, entry_key(scope, user_key)));
        }
        let now = self.now();
        let results = self
            .db()
            .multi_get_cf(keys.iter().map(|(cf, k)| (*cf, k.as_slice())));
        results
            .into_iter()
            .zip(requests)
            .map(
                |(r, (scope, _))| match r.map_err(|e| rocks_err("multi_get", e))? {
                    None => Ok(None),
                    Some(v) => Ok(self.live(scope.state, &v, now)?.map(<[u8]>::to_vec)),
                },
            )
            .collect()
    }

    fn scan(
        &self,
        scope: Scope<'_>,
        range: UserKeyRange<'_>,
        direction: Direction,
        visitor: &mut EntryVisitor<'_>,
    ) -> Result<()> {
        self.check_kv(&scope)?;
        let prefix = scope_prefix(&scope);
        let Some((lower, upper)) = scope_bounds(&prefix, &range) else {
            return Ok(());
        };
        let visited = ScopeScan {
            state: scope.state,
            prefix_len: prefix.len(),
            upper: upper.as_deref(),
            direction,
            now: self.now(),
        };
        if direction == Direction::Forward && self.keeps_iterator[scope.state.index()] {
            // A kept iterator (kept_iterators.rs), sought to the lower bound; it ends at the
            // scope's last key (the prefix extractor's), and a tighter upper bound is
            // checked here.
            let state = scope.state.index();
            let cf_name = &self.cf_names[state];
            return self.open.db.with_forward_iterator(
                state,
                cf_name,
                &lower,
                self.async_io(),
                |iter| {
                    self.visit_scope(iter, &visited, visitor)?;
                    iter.status()
                        .map_err(|e| kept_iterators::scan_error(cf_name, e))
                },
            );
        }
        let mut ro = ReadOptions::default();
        ro.set_async_io(self.async_io());
        ro.set_iterate_lower_bound(lower);
        if let Some(upper) = upper.clone() {
            ro.set_iterate_upper_bound(upper);
        }
        // Forward, the seek key is in the scope, so a prefix filter may skip files; reverse,
        // RocksDB seeks back from the upper bound, the next scope, so it must not.
        match direction {
            Direction::Forward => ro.set_prefix_same_as_start(true),
            Direction::Reverse => ro.set_total_order_seek(true),
        }
        let mut iter = self.db().raw_iterator_cf_opt(self.cf(scope.state)?, ro);
        match direction {
            Direction::Forward => iter.seek_to_first(),
            Direction::Reverse => iter.seek_to_last(),
        }
        self.visit_scope(&mut iter, &visited, visitor)?;
        iter.status().map_err(|e| rocks_err("scan", e))
    }

    fn scan_state(
        &self,
        state: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut StateVisitor<'_>,
    ) -> Result<()> {
        check_kv_state(state, &self.states)?;
        let Some(range) = key_groups.intersect(&self.config.key_groups) else {
            return Ok(());
        };
        let (lower, upper) = key_group_bounds(range);
        let now = self.now();
        let has_ttl = self.ttl_of(state).is_some();
        self.for_each_raw(self.cf(state)?, lower, upper, &mut |k, v| {
            let Some(payload) = self.live(state, v, now)? else {
                return Ok(Visit::Continue);
            };
            let d = decode_entry_key(k)?;
            let entry = EntryRef {
                key_group: d.key_group,
                key: d.key,
                namespace: d.namespace,
                user_key: d.user_key,
                value: payload,
                expires_at: if has_ttl {
                    Some(split_expiry(v)?.0)
                } else {
                    None
                },
            };
            visitor(&entry)
        })
    }
}

impl StateWrite for RocksDbBackend {
    fn put(&mut self, scope: Scope<'_>, user_key: &[u8], value: &[u8]) -> Result<()> {
        self.check_kv(&scope)?;
        self.user_bytes_written += (user_key.len() + value.len()) as u64;
        let value = self.encode_value(scope.state, value);
        self.db()
            .put_cf_opt(
                self.cf(scope.state)?,
                entry_key(&scope, user_key),
                value,
                &self.write_opts,
            )
            .map_err(|e| rocks_err("put", e))?;
        self.after_user_write();
        Ok(())
    }

    fn merge(&mut self, scope: Scope<'_>, user_key: &[u8], operand: &[u8]) -> Result<()> {
        self.check_kv(&scope)?;
        check_merge(&scope, &self.states)?;
        self.user_bytes_written += (user_key.len() + operand.len()) as u64;
        let operand = self.encode_value(scope.state, operand);
        self.db()
            .merge_cf_opt(
                self.cf(scope.state)?,
                entry_key(&scope, user_key),
                operand,
                &self.write_opts,
            )
            .map_err(|e| rocks_err("merge", e))?;
        self.after_user_write();
        Ok(())
    }

    fn delete(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()> {
        self.check_kv(&scope)?;
        self.db()
            .delete_cf_opt(
                self.cf(scope.state)?,
                entry_key(&scope, user_key),
                &self.write_opts,
            )
            .map_err(|e| rocks_err("delete", e))?;
        self.open.db.release_iterators_if_stale();
        Ok(())
    }

    fn delete_range(&mut self, scope: Scope<'_>, range: UserKeyRange<'_>) -> Result<()> {
        self.check_kv(&scope)?;
        let Some((lower, Some(upper))) = scope_bounds(&scope_prefix(&scope), &range) else {
            return Ok(());
        };
        let mut batch = ::rocksdb::WriteBatch::default();
        self.add_range_delete(&mut batch, scope.state, lower, upper, &[])?;
        self.write_batch(batch)
    }

    fn write(&mut self, batch: WriteBatch) -> Result<()> {
        for op in batch.ops() {
            self.check_kv(&op.scope().as_scope())?;
            if matches!(op, WriteOp::Merge { .. }) {
                check_merge(&op.scope().as_scope(), &self.states)?;
            }
        }
        // Only range deletes written as point deletes need the batch's own keys.
        let track_writes = self.point_delete_limit() > 0
            && batch
                .ops()
                .iter()
                .any(|op| matches!(op, WriteOp::DeleteRange { .. }));
        let mut written = Vec::new();
        let mut rb = ::rocksdb::WriteBatch::default();
        let mut bytes = 0;
        for op in batch.ops() {
            bytes += self.add_op(&mut rb, op, track_writes.then_some(&mut written))?;
        }
        self.write_batch(rb)?;
        self.user_bytes_written += bytes;
        self.after_write();
        Ok(())
    }
}

impl TimerStore for RocksDbBackend {
    fn register_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        self.check_timer(queue, timer)?;
        let time_key = timer_time_key(timer);
        let floor = &mut self.timer_floor[queue.index()];
        if floor.as_ref().is_some_and(|f| time_key < *f) {
            *floor = Some(time_key.clone());
        }
        if self.settings.wal {
            // With a WAL every write is logged as it is made: nothing is held back.
            let cf = self.cf(queue)?;
            return self
                .db()
                .put_cf_opt(cf, &time_key, b"", &self.write_opts)
                .map_err(|e| rocks_err("register timer", e));
        }
        if self
            .pending_timers
            .get_mut()
            .add(queue.index(), time_key)
            .full
        {
            self.write_pending_timers()?;
        }
        Ok(())
    }

    fn delete_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        self.check_timer(queue, timer)?;
        let cf = self.cf(queue)?;
        let time_key = timer_time_key(timer);
        self.db()
            .delete_cf_opt(cf, &time_key, &self.write_opts)
            .map_err(|e| rocks_err("delete timer", e))?;
        self.pending_timers
            .get_mut()
            .remove(queue.index(), time_key);
        Ok(())
    }

    fn pop_due_timers(
        &mut self,
        queue: StateId,
        watermark: i64,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        self.check_queue(queue)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.write_pending_timers()?;
        let cf = self.cf(queue)?;
        let lower = self.timer_floor[queue.index()]
            .clone()
            .unwrap_or_else(|| vec![TIMER_BY_TIME]);
        let mut due = Vec::new();
        let mut last_key = None;
        self.for_each_raw(cf, lower, timer_due_upper(watermark), &mut |k, _| {
            due.push(decode_timer_key(k)?);
            last_key = Some(k.to_vec());
            Ok(if due.len() >= limit {
                Visit::Stop
            } else {
                Visit::Continue
            })
        })?;
        if due.is_empty() {
            return Ok(due);
        }
        let mut batch = ::rocksdb::WriteBatch::default();
        for t in &due {
            batch.delete_cf(cf, timer_time_key(t));
        }
        self.write_batch(batch)?;
        self.timer_floor[queue.index()] = last_key;
        Ok(due)
    }

    /// Counts the queue's timers by reading their keys, then drops them with one range
    /// delete: no tombstone per timer, as popping them wrote.
    fn clear_timers(&mut self, queue: StateId) -> Result<u64> {
        self.check_queue(queue)?;
        self.write_pending_timers()?;
        let (lower, upper) = timer_index_bounds();
        let cf = self.cf(queue)?;
        let mut cleared = 0u64;
        self.for_each_raw(cf, lower.clone(), upper.clone(), &mut |_, _| {
            cleared += 1;
            Ok(Visit::Continue)
        })?;
        if cleared > 0 {
            let mut batch = ::rocksdb::WriteBatch::default();
            self.add_range_delete(&mut batch, queue, lower, upper, &[])?;
            self.write_batch(batch)?;
        }
        self.timer_floor[queue.index()] = None;
        Ok(cleared)
    }

    fn next_timer(&self, queue: StateId) -> Result<Option<i64>> {
        self.check_queue(queue)?;
        self.write_pending_timers()?;
        let lower = self.timer_floor[queue.index()]
            .clone()
            .unwrap_or_else(|| vec![TIMER_BY_TIME]);
        let mut next = None;
        let (_, upper) = timer_index_bounds();
        self.for_each_raw(self.cf(queue)?, lower, upper, &mut |k, _| {
            next = Some(decode_timer_key(k)?.timestamp);
            Ok(Visit::Stop)
        })?;
        Ok(next)
    }

    fn scan_timers(
        &self,
        queue: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut dyn FnMut(&Timer) -> Result<Visit>,
    ) -> Result<()> {
        self.check_queue(queue)?;
        self.write_pending_timers()?;
        let Some(range) = key_groups.intersect(&self.config.key_groups) else {
            return Ok(());
        };
        // One index in firing order: its timers of `range` are in time order per key group.
        let (lower, upper) = timer_index_bounds();
        self.for_each_raw(self.cf(queue)?, lower, upper, &mut |k, _| {
            let timer = decode_timer_key(k)?;
            if range.contains(timer.key_group) {
                visitor(&timer)
            } else {
                Ok(Visit::Continue)
            }
        })
    }
}

impl StateBackend for RocksDbBackend {
    fn name(&self) -> &'static str {
        "rocksdb"
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
            self.settings.resources.budget().check_fixed_needs(
                self.states.len() + 1,
                self.settings.config.cf.arena_block_size(),
            )?;
            let name = cf_name(&descriptor.name);
            let opts = cf_options(&self.settings, descriptor, &self.ttl_clock)?;
            self.open.create_cf(&name, opts)?;
            self.keeps_iterator
                .push(has_scope_extractor(&self.settings, descriptor));
            self.states.push(descriptor.clone());
            self.cf_names.push(name);
            self.timer_floor.push(None);
        }
        Ok(id)
    }

    fn states(&self) -> Vec<StateDescriptor> {
        self.states.clone()
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(self.rocksdb_stats()?.to_backend_stats())
    }

    /// One range delete over the state's owned key groups instead of a tombstone per entry.
    fn clear_state(&mut self, state: StateId) -> Result<()> {
        check_kv_state(state, &self.states)?;
        let (lower, upper) = key_group_bounds(self.config.key_groups);
        let mut batch = ::rocksdb::WriteBatch::default();
        self.add_range_delete(&mut batch, state, lower, upper, &[])?;
        self.write_batch(batch)?;
        self.after_write();
        Ok(())
    }
}

#[cfg(test)]
mod tests;

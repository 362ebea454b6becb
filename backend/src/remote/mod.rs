//! The remote-object backend: primary state in object storage (S3, GCS, Azure, a local
//! directory) through `object_store`, with a local block cache; statekit's counterpart of
//! Flink 2.0's disaggregated ForSt backend.
//!
//! # Why SlateDB
//! The engine underneath is [SlateDB](https://slatedb.io) 0.18, an embedded LSM tree whose
//! tables, manifest and checkpoints live in an `object_store` store. It was chosen over writing
//! an LSM here because it already has every piece this backend needs, each tested upstream:
//! - ordered keys with bounded ascending *and descending* range scans (statekit's `scan`);
//! - a merge operator (statekit's append-merge, see `keys.rs` for how TTL composes with it);
//! - atomic write batches (statekit's `write`);
//! - checkpoints that pin a consistent manifest without copying data, and **clones from one
//!   or several checkpoints with a projection range per source**: statekit's keys start with
//!   their key group, so restore and rescaling (key-group clipping, union of handles) are a
//!   metadata operation, with no byte of state copied or downloaded;
//! - an in-memory block/index/filter cache (moka) with a byte budget, shareable across
//!   instances, and an optional on-disk cache of object-store data;
//! - retries of object-store calls and conditional (compare-and-swap) manifest updates, so a
//!   failed or ambiguous call never leaves a half-visible state.
//!
//! SlateDB 0.18 depends on `object_store` 0.14.2, the version this crate uses directly, so one
//! store type serves both. What SlateDB lacks, and how it is bridged:
//! - no range delete: `delete_range` scans the keys in the range (only the range) and deletes
//!   them in one atomic batch; a write holding many range deletes (a batch of cleanup
//!   timers) scans their ranges on the calling thread and the background workers at once;
//! - its TTL uses its own clock and cannot express "a merge onto an expired value starts
//!   afresh"; statekit keeps expiry in its records instead (clock from
//!   [`InstanceConfig::clock`]), and removes expired entries with an incremental sweep, as the
//!   memory backend does. A compaction filter cannot do that removal safely: an expired base
//!   may still be extended by a newer append that lives in another table.
//!
//! # Durability
//! The write-ahead log is off: writes between checkpoints live in the memtable (and in L0
//! tables once it fills) and need not survive a crash, as the trait allows. For the same
//! reason timer registrations are held in memory and written in batches (`pending_timers.rs`),
//! before any read of a timer queue and before a checkpoint. A checkpoint flushes the
//! memtable, pins the manifest as a SlateDB checkpoint, and only then writes the
//! statekit `MANIFEST` into the instance's [`CheckpointStorage`]. That manifest is the only
//! thing that makes a checkpoint visible; restore on a fresh machine needs the handle, the
//! checkpoint storage and the object store, nothing local.
//!
//! [`CheckpointStorage`]: crate::checkpoint::CheckpointStorage
//!
//! # Layout in the store
//! Each opened or restored instance is its own SlateDB database under
//! `<url>/instances/<uuid>`. A database stays in the store while checkpoints reference it;
//! retention deletes the statekit manifest and the SlateDB checkpoint, and SlateDB's garbage
//! collector removes tables no checkpoint needs any more, once
//! [`RemoteConfig::replaced_tables_kept_secs`] have passed since compaction replaced them.
//!
//! # Threads
//! The trait is synchronous; every call blocks on a process-wide current-thread tokio
//! runtime driven by the calling thread, which saves two cross-thread wake-ups per write
//! (6.3x end to end); the databases' uploads, compaction and garbage collection run on a
//! separate multi-thread runtime, on the other cores (`runtime.rs` has the measurements).
//! `multi_get` runs its reads concurrently (up to [`RemoteConfig::max_concurrent_reads`] in
//! flight); `prefetch` spawns scans on the background runtime that warm the block cache
//! while later calls run. A `file://` store reads its tables with `pread` on the thread that
//! needs the block instead of through tokio's blocking pool (`local_files.rs`). Calling the
//! backend from inside an async runtime is an error, not a deadlock.

mod cache;
mod checkpointing;
mod config;
mod faults;
mod flush_wait;
mod keys;
mod local_files;
mod runtime;
mod sizes;
mod stats;
mod storage;
mod store;
mod sweep;
mod table_writes;
mod timers;
mod writes;

pub use checkpointing::PinnedCheckpoint;
pub use config::{RemoteConfig, Scheme, Size, DEFAULT_TOML, UPLOAD_RESERVE_DIVISOR};
pub use faults::{FaultPlan, FaultyObjectStore};
pub use storage::ObjectStoreCheckpointStorage;
pub use store::RemoteStore;
pub use sweep::SWEEP_EVERY_WRITES;

use std::cell::RefCell;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use slatedb::config::{ReadOptions, ScanOptions};
use slatedb::{Db, IterationOrder};
use slatedb_common::metrics::DefaultMetricsRecorder;
use tokio::sync::Semaphore;

use crate::backend::{
    check_kv_state, check_scope, resolve_registration, BackendStats, Direction, EntryRef,
    EntryVisitor, Scope, StateBackend, StateDescriptor, StateId, StateKind, StateRead,
    StateVisitor, UserKeyRange, Visit,
};
use crate::checkpoint::CheckpointLog;
use crate::error::{Error, ErrorKind, Result};
use crate::instance::InstanceConfig;
use crate::keygroup::KeyGroupRange;
use crate::pending_timers::PendingTimers;

use keys::{
    decode_record, entries_prefix, entry_key, prefix_range, scope_prefix, split_entry_key,
    state_tag, suffix_range, user_range,
};
use sweep::SweepCursor;
use timers::TimerHeads;

/// A visitor of raw (key, record) pairs.
type RawVisitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<Visit> + 'v;

/// The checkpoint format of the remote backend.
pub const REMOTE_FORMAT: &str = "statekit-remote-v1";

/// The backend's name in handles and reports.
pub const NAME: &str = "remote";

/// How many entries one prefetch of a scope warms at most.
const PREFETCH_ENTRIES: usize = 4096;

/// Largest key or value SlateDB accepts.
const MAX_ITEM_BYTES: usize = u32::MAX as usize - 64;

/// Maps a SlateDB error onto statekit's kinds, naming `what`.
fn slate_error(what: impl fmt::Display, e: slatedb::Error) -> Error {
    use slatedb::ErrorKind as K;
    let kind = match e.kind() {
        K::Closed(_) => ErrorKind::Closed,
        K::Unavailable => ErrorKind::Unavailable,
        K::Invalid => ErrorKind::InvalidArgument,
        K::Data => ErrorKind::Corruption,
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("{what}: {e}")).with_source(e)
}

/// The remote-object state backend.
pub struct RemoteBackend {
    config: InstanceConfig,
    store: RemoteStore,
    db: Arc<Db>,
    db_rel: String,
    states: Vec<StateDescriptor>,
    tags: Vec<u64>,
    timers: Vec<Option<TimerHeads>>,
    /// Timer registrations not yet written: see `pending_timers.rs`.
    pending_timers: RefCell<PendingTimers>,
    checkpoints: CheckpointLog,
    writes: u64,
    sweep: SweepCursor,
    user_bytes_written: u64,
    /// Heap the writes since the last forced flush hold in memtables, as
    /// [`memtable_heap`](writes::memtable_heap) estimates it.
    unflushed_heap: u64,
    prefetch_slots: Arc<Semaphore>,
    /// SlateDB's counters for this instance's database (cache, flushes, compaction).
    metrics: Arc<DefaultMetricsRecorder>,
    /// The SlateDB manifest each checkpoint of this instance's database pinned, by checkpoint
    /// id: what [`Checkpointing::checkpoint_size`] lists the tables of. A restore starts a
    /// new database, and with it an empty map.
    ///
    /// [`Checkpointing::checkpoint_size`]: crate::backend::Checkpointing::checkpoint_size
    checkpoint_manifests: std::collections::BTreeMap<u64, u64>,
}

impl fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteBackend")
            .field("store", &self.store)
            .field("db", &self.db_rel)
            .field("key_groups", &self.config.key_groups)
            .field("states", &self.states.len())
            .finish_non_exhaustive()
    }
}

impl RemoteBackend {
    /// A new, empty instance: a fresh database in the store `remote` names.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad configuration; `Unavailable` if the store cannot be
    /// reached.
    pub fn open(config: InstanceConfig, remote: &RemoteConfig) -> Result<Self> {
        Self::open_in(config, &RemoteStore::connect(remote)?)
    }

    /// A new, empty instance in an existing store connection (its block cache is shared).
    ///
    /// # Errors
    /// As [`RemoteBackend::open`].
    pub fn open_in(config: InstanceConfig, store: &RemoteStore) -> Result<Self> {
        config.validate()?;
        let (db_rel, db_path) = store.new_db_path();
        Self::open_database(config, store, db_rel, &db_path)
    }

    /// An instance on the database at `db_path` (`db_rel` relative to the store's root),
    /// creating it if new, with no state registered yet.
    fn open_database(
        config: InstanceConfig,
        store: &RemoteStore,
        db_rel: String,
        db_path: &Path,
    ) -> Result<Self> {
        let metrics = Arc::new(DefaultMetricsRecorder::new());
        let db = runtime::on_background(store.open_db(
            db_path,
            runtime::caller_handle()?,
            Arc::clone(&metrics),
        ))?
        .map_err(|e| slate_error(format!("opening {}/{db_rel}", store.describe), e))?;
        Ok(Self::from_parts(
            config,
            store.clone(),
            Arc::new(db),
            db_rel,
            metrics,
        ))
    }

    fn from_parts(
        config: InstanceConfig,
        store: RemoteStore,
        db: Arc<Db>,
        db_rel: String,
        metrics: Arc<DefaultMetricsRecorder>,
    ) -> Self {
        let slots = store.config.max_concurrent_reads;
        RemoteBackend {
            config,
            store,
            db,
            db_rel,
            states: Vec::new(),
            tags: Vec::new(),
            timers: Vec::new(),
            pending_timers: RefCell::default(),
            checkpoints: CheckpointLog::default(),
            writes: 0,
            sweep: SweepCursor::default(),
            user_bytes_written: 0,
            unflushed_heap: 0,
            prefetch_slots: Arc::new(Semaphore::new(slots)),
            metrics,
            checkpoint_manifests: std::collections::BTreeMap::new(),
        }
    }

    /// The store connection.
    pub fn store(&self) -> &RemoteStore {
        &self.store
    }

    /// The path of this instance's database relative to the store's root.
    pub fn database_path(&self) -> &str {
        &self.db_rel
    }

    /// Runs SlateDB's garbage collection of this instance's database once, now: expired
    /// checkpoints, then tables and manifests nothing needs any more (it also runs in the
    /// background, every [`RemoteConfig::replaced_tables_kept_secs`] / 4, at most a minute).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn collect_garbage(&self) -> Result<()> {
        let path = self.store.path_of(&self.db_rel);
        runtime::block_on(self.store.admin(&path).run_gc_once(self.store.gc_options()))?
            .map_err(|e| slate_error(format!("collecting garbage in {}", self.what()), e))
    }

    fn what(&self) -> String {
        format!("{}/{}", self.store.describe, self.db_rel)
    }

    fn expiry(&self, state: StateId) -> Option<u64> {
        self.config.expiry(self.states[state.index()].ttl)
    }

    /// Validates a key/value scope and returns its key prefix.
    fn kv_prefix(&self, scope: &Scope<'_>) -> Result<Vec<u8>> {
        check_scope(scope, self.config.key_groups, &self.states, false)?;
        Ok(scope_prefix(scope, self.tags[scope.state.index()]))
    }

    fn read_options() -> ReadOptions {
        ReadOptions {
            cache_blocks: true,
            ..ReadOptions::default()
        }
    }

    fn scan_options(order: IterationOrder) -> ScanOptions {
        ScanOptions {
            cache_blocks: true,
            order,
            ..ScanOptions::default()
        }
    }

    fn check_size(what: &str, len: usize) -> Result<()> {
        if len > MAX_ITEM_BYTES {
            return Err(Error::invalid(format!(
                "{what} of {len} bytes exceeds the remote backend's limit of {MAX_ITEM_BYTES}"
            )));
        }
        Ok(())
    }

    /// Visits the raw (key, record) pairs of a byte range, in `order`, until `f` says stop.
    /// With `scope`, every key of `range` starts with that scope prefix, and tables whose
    /// Bloom filter rules the scope out are skipped.
    fn scan_raw(
        &self,
        scope: Option<&[u8]>,
        range: (Bound<Bytes>, Bound<Bytes>),
        order: IterationOrder,
        f: &mut RawVisitor<'_>,
    ) -> Result<()> {
        if keys::is_empty(&range) {
            return Ok(());
        }
        let what = self.what();
        let db = &self.db;
        let options = Self::scan_options(order);
        runtime::block_on(async {
            let it = match scope {
                Some(prefix) => {
                    db.scan_prefix_with_options(prefix, suffix_range(prefix, &range), &options)
                        .await
                }
                None => db.scan_with_options(range, &options).await,
            };
            let mut it = it.map_err(|e| slate_error(format!("scan of {what}"), e))?;
            while let Some(kv) = it
                .next()
                .await
                .map_err(|e| slate_error(format!("scan of {what}"), e))?
            {
                if f(&kv.key, &kv.value)? == Visit::Stop {
                    break;
                }
            }
            Ok(())
        })?
    }

    /// Runs SlateDB's `work` (a flush, a checkpoint) to completion, failing once the store
    /// has completed no table write for `flush_timeout_secs` (see `flush_wait.rs`); `what`
    /// names it in errors.
    fn within_flush_timeout<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = std::result::Result<T, slatedb::Error>>,
    ) -> Result<T> {
        self.wait_while_store_progresses(work)?
            .map_err(|_| flush_wait::flush_made_no_progress(what, self.store.flush_timeout()))?
            .map_err(|e| slate_error(what, e))
    }

    /// Blocks on `work` until it finishes or the store completes no table write for
    /// `flush_timeout_secs` (flush_wait.rs).
    fn wait_while_store_progresses<F: std::future::Future>(
        &self,
        work: F,
    ) -> Result<std::result::Result<F::Output, flush_wait::NoProgress>> {
        let quiet = self.store.flush_timeout();
        let counts = self.store.table_writes.clone();
        // The timer must be created inside the runtime.
        runtime::block_on(flush_wait::wait_while_progressing(work, quiet, move || {
            counts.total()
        }))
    }

    fn register_in(&mut self, descriptor: &StateDescriptor) -> Result<StateId> {
        let (id, is_new) = resolve_registration(&self.states, descriptor)?;
        if is_new {
            let tag = state_tag(&descriptor.name);
            if let Some(other) = self.states.iter().zip(&self.tags).find(|(_, t)| **t == tag) {
                return Err(Error::new(
                    ErrorKind::Incompatible,
                    format!(
                        "states '{}' and '{}' share a 64-bit name hash; rename one",
                        other.0.name, descriptor.name
                    ),
                ));
            }
            self.states.push(descriptor.clone());
            self.tags.push(tag);
            self.timers.push(
                (descriptor.kind == StateKind::Timers)
                    .then(|| TimerHeads::new(self.config.key_groups.len())),
            );
        }
        Ok(id)
    }

    fn close_db(&self) {
        let db = Arc::clone(&self.db);
        // Best effort, and bounded as every flush is (flush_wait.rs): a failure or a store
        // that accepts no writes leaves unflushed (never checkpointed) writes behind, which
        // the trait allows to be lost.
        let _ = self.wait_while_store_progresses(async move { db.close().await });
    }
}

impl Drop for RemoteBackend {
    fn drop(&mut self) {
        self.close_db();
    }
}

impl StateRead for RemoteBackend {
    fn get(&self, scope: Scope<'_>, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = entry_key(&self.kv_prefix(&scope)?, user_key);
        let what = self.what();
        let got = runtime::block_on(self.db.get_with_options(&key, &Self::read_options()))?
            .map_err(|e| slate_error(format!("get from {what}"), e))?;
        let now = self.config.now_millis();
        match got {
            None => Ok(None),
            Some(bytes) => {
                let r = decode_record(&bytes).map_err(|e| e.context(&what))?;
                Ok(r.live(now).then(|| r.payload.to_vec()))
            }
        }
    }

    fn multi_get(&self, requests: &[(Scope<'_>, &[u8])]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys = requests
            .iter()
            .map(|(scope, uk)| Ok(entry_key(&self.kv_prefix(scope)?, uk)))
            .collect::<Result<Vec<_>>>()?;
        let what = self.what();
        let db = &self.db;
        let opts = Self::read_options();
        let opts = &opts;
        let values: Vec<Option<Bytes>> = runtime::block_on(
            futures::stream::iter(keys)
                .map(|k| async move { db.get_with_options(&k, opts).await })
                .buffered(self.store.config.max_concurrent_reads)
                .try_collect(),
        )?
        .map_err(|e| slate_error(format!("multi_get from {what}"), e))?;
        let now = self.config.now_millis();
        values
            .into_iter()
            .map(|v| match v {
                None => Ok(None),
                Some(bytes) => {
                    let r = decode_record(&bytes).map_err(|e| e.context(&what))?;
                    Ok(r.live(now).then(|| r.payload.to_vec()))
                }
            })
            .collect()
    }

    fn prefetch(&self, scopes: &[Scope<'_>]) -> Result<()> {
        let prefixes = scopes
            .iter()
            .map(|s| self.kv_prefix(s))
            .collect::<Result<Vec<_>>>()?;
        let Ok(handle) = runtime::handle() else {
            return Ok(());
        };
        for prefix in prefixes {
            // A hint: when all slots are busy the prefetch is dropped, never queued.
            let Ok(permit) = Arc::clone(&self.prefetch_slots).try_acquire_owned() else {
                break;
            };
            let db = Arc::clone(&self.db);
            handle.spawn(async move {
                let _permit = permit;
                let opts = Self::scan_options(IterationOrder::Ascending);
                if let Ok(mut it) = db.scan_prefix_with_options(&prefix, .., &opts).await {
                    let mut n = 0;
                    while let Ok(Some(_)) = it.next().await {
                        n += 1;
                        if n >= PREFETCH_ENTRIES {
                            break;
                        }
                    }
                }
            });
        }
        Ok(())
    }

    fn scan(
        &self,
        scope: Scope<'_>,
        range: UserKeyRange<'_>,
        direction: Direction,
        visitor: &mut EntryVisitor<'_>,
    ) -> Result<()> {
        let prefix = self.kv_prefix(&scope)?;
        let Some(bounds) = user_range(&prefix, &range) else {
            return Ok(());
        };
        let order = match direction {
            Direction::Forward => IterationOrder::Ascending,
            Direction::Reverse => IterationOrder::Descending,
        };
        let now = self.config.now_millis();
        self.scan_raw(Some(&prefix), bounds, order, &mut |k, v| {
            let r = decode_record(v)?;
            if !r.live(now) {
                return Ok(Visit::Continue);
            }
            visitor(&k[prefix.len()..], r.payload)
        })
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
        let tag = self.tags[state.index()];
        let now = self.config.now_millis();
        for kg in range.iter() {
            let mut stopped = false;
            self.scan_raw(
                None,
                prefix_range(&entries_prefix(kg, tag)),
                IterationOrder::Ascending,
                &mut |k, v| {
                    let r = decode_record(v)?;
                    if !r.live(now) {
                        return Ok(Visit::Continue);
                    }
                    let (key, namespace, user_key) = split_entry_key(k)?;
                    let entry = EntryRef {
                        key_group: kg,
                        key,
                        namespace,
                        user_key,
                        value: r.payload,
                        expires_at: r.expires_at,
                    };
                    let next = visitor(&entry)?;
                    stopped = next == Visit::Stop;
                    Ok(next)
                },
            )?;
            if stopped {
                break;
            }
        }
        Ok(())
    }
}

impl StateBackend for RemoteBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn max_parallelism(&self) -> u16 {
        self.config.max_parallelism
    }

    fn key_group_range(&self) -> KeyGroupRange {
        self.config.key_groups
    }

    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId> {
        self.register_in(descriptor)
    }

    fn states(&self) -> Vec<StateDescriptor> {
        self.states.clone()
    }

    fn stats(&self) -> Result<BackendStats> {
        self.collect_stats()
    }
}

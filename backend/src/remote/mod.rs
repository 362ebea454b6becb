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
//! tables once it fills) and need not survive a crash, as the trait allows. A checkpoint
//! flushes the memtable, pins the manifest as a SlateDB checkpoint, and only then writes the
//! statekit `MANIFEST` into the instance's [`CheckpointStorage`]. That manifest is the only
//! thing that makes a checkpoint visible; restore on a fresh machine needs the handle, the
//! checkpoint storage and the object store, nothing local.
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
mod config;
mod faults;
mod keys;
mod local_files;
mod runtime;
mod sizes;
mod storage;
mod table_writes;

pub use config::{RemoteConfig, Scheme, Size, DEFAULT_TOML, UPLOAD_RESERVE_DIVISOR};
pub use faults::{FaultPlan, FaultyObjectStore};
pub use storage::ObjectStoreCheckpointStorage;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use slatedb::admin::Admin;
use slatedb::config::{
    CheckpointOptions, CheckpointScope, CompactorOptions, GarbageCollectorDirectoryOptions,
    GarbageCollectorOptions, ReadOptions, ScanOptions, Settings,
};
use slatedb::db_cache::{DbCache, SplitCache};

use cache::MeasuredCache;
use slatedb::{BloomFilterPolicy, CloneSourceSpec, Db, IterationOrder};
use slatedb_common::metrics::{DefaultMetricsRecorder, MetricValue, Metrics};
use tokio::sync::Semaphore;

use crate::backend::{
    check_merge, check_scope, resolve_registration, states_after_restore, BackendStats,
    CheckpointSize, Checkpointing, Direction, EntryRef, EntryVisitor, Scope, StateBackend,
    StateDescriptor, StateId, StateKind, StateRead, StateVisitor, StateWrite, Timer, TimerStore,
    UserKeyRange, Visit, WriteBatch, WriteOp,
};
use crate::checkpoint::{
    checkpoint_location, decode_manifest, encode_manifest, handles_for_range, read_full_snapshot,
    CheckpointHandle, CheckpointStorage, SnapshotRecord, FULL_FORMAT,
};
use crate::checkpoint::{delete_location, CheckpointLog};
use crate::error::{Error, ErrorKind, Result};
use crate::instance::InstanceConfig;
use crate::keygroup::{KeyGroup, KeyGroupRange};

use keys::{
    decode_record, decode_timer, encode_append, encode_value, entries_prefix, entry_key,
    key_group_span, prefix_range, scope_prefix, split_entry_key, state_tag, suffix_range,
    timer_key, timers_after, timers_from, timers_prefix, user_range, AppendOperator,
    ScopePrefixExtractor,
};

/// A raw key range and the scope prefix every key in it starts with.
type ScopedRange = (Vec<u8>, (Bound<Bytes>, Bound<Bytes>));

/// From how many range deletes in one write their scans run on several threads.
const PARALLEL_SCANS_FROM: usize = 16;

/// The keys that exist in `ranges`, one prefix scan each.
async fn keys_in(
    db: &Db,
    ranges: &[ScopedRange],
) -> std::result::Result<Vec<Bytes>, slatedb::Error> {
    let options = RemoteBackend::scan_options(IterationOrder::Ascending);
    let mut keys = Vec::new();
    for (prefix, range) in ranges {
        let mut it = db
            .scan_prefix_with_options(prefix, suffix_range(prefix, range), &options)
            .await?;
        while let Some(kv) = it.next().await? {
            keys.push(kv.key);
        }
    }
    Ok(keys)
}

/// A visitor of raw (key, record) pairs.
type RawVisitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<Visit> + 'v;

/// The checkpoint format of the remote backend.
pub const REMOTE_FORMAT: &str = "statekit-remote-v1";

/// The backend's name in handles and reports.
pub const NAME: &str = "remote";

/// A SlateDB checkpoint pinning an instance's database (see
/// [`RemoteBackend::pinned_checkpoints`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedCheckpoint {
    /// Its name (`statekit-<id>` for statekit's checkpoints).
    pub name: Option<String>,
    /// When it expires (Unix ms), `None` for never.
    pub expires_at_unix_ms: Option<i64>,
}

/// How long the SlateDB checkpoint behind a statekit checkpoint lives until the checkpoint's
/// MANIFEST is written; then it is made permanent. Far longer than writing one small file.
const UNCONFIRMED_PIN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// How many writes pass between two incremental TTL sweep steps.
pub const SWEEP_EVERY_WRITES: u64 = 1024;

/// How many entries one TTL sweep step reads at most.
const SWEEP_BATCH: usize = 512;

/// How many entries one prefetch of a scope warms at most.
const PREFETCH_ENTRIES: usize = 4096;

/// Bloom filter bits per key (whole keys and scope prefixes): about 1% false positives, as
/// SlateDB's and RocksDB's defaults.
const BLOOM_BITS_PER_KEY: u32 = 10;

/// The longest pause between garbage collections of replaced tables.
const GC_MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Largest key or value SlateDB accepts.
const MAX_ITEM_BYTES: usize = u32::MAX as usize - 64;

/// A connection to the object store a [`RemoteConfig`] names, with the block cache shared by
/// every instance opened through it. Cheap to clone.
#[derive(Clone)]
pub struct RemoteStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    describe: String,
    cache: Arc<dyn DbCache>,
    /// The two parts of `cache`, to measure them.
    data_cache: Arc<MeasuredCache>,
    meta_cache: Arc<MeasuredCache>,
    /// Bytes each database wrote as tables, counted on the way to `store`.
    table_writes: table_writes::TableWriteCounts,
    config: RemoteConfig,
    scheme: Scheme,
}

impl fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStore")
            .field("url", &self.describe)
            .field("root", &self.root.as_ref())
            .field("block_cache", &self.config.block_cache)
            .finish_non_exhaustive()
    }
}

impl RemoteStore {
    /// Connects to the store `config` names (credentials from the environment).
    ///
    /// # Errors
    /// `InvalidArgument` for a bad configuration, an I/O error for a local directory that
    /// cannot be created.
    pub fn connect(config: &RemoteConfig) -> Result<Self> {
        let (store, root) = config.build_object_store()?;
        Self::with_object_store(config, store, root)
    }

    /// Uses `store` (for example a [`FaultyObjectStore`] around a real one) with `config`'s
    /// cache and engine settings; `root` is the path inside `store` for everything.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad configuration.
    pub fn with_object_store(
        config: &RemoteConfig,
        store: Arc<dyn ObjectStore>,
        root: Path,
    ) -> Result<Self> {
        config.validate()?;
        let (_, scheme) = config.parsed_url()?;
        let (data_bytes, meta_bytes) = config.cache_split();
        let data_cache = Arc::new(MeasuredCache::new(data_bytes));
        let meta_cache = Arc::new(MeasuredCache::new(meta_bytes));
        let cache = SplitCache::new()
            .with_block_cache(Some(Arc::clone(&data_cache) as Arc<dyn DbCache>))
            .with_meta_cache(Some(Arc::clone(&meta_cache) as Arc<dyn DbCache>))
            .build();
        let counter = table_writes::TableWriteCounter::new(store);
        let table_writes = counter.counts();
        Ok(RemoteStore {
            store: Arc::new(counter),
            root,
            describe: config.describe(),
            cache: Arc::new(cache),
            data_cache,
            meta_cache,
            table_writes,
            config: config.clone(),
            scheme,
        })
    }

    /// The object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// Checkpoint storage under `sub` of this store, for this or any other backend.
    pub fn checkpoint_storage(&self, sub: &str) -> ObjectStoreCheckpointStorage {
        let mut root = self.root.clone();
        for seg in sub.split('/').filter(|s| !s.is_empty()) {
            root = root.join(seg);
        }
        ObjectStoreCheckpointStorage::new(
            Arc::clone(&self.store),
            root,
            format!("{}/{sub}", self.describe.trim_end_matches('/')),
        )
    }

    fn new_db_path(&self) -> (String, Path) {
        let name = uuid::Uuid::new_v4().to_string();
        let rel = format!("instances/{name}");
        (rel.clone(), self.path_of(&rel))
    }

    fn path_of(&self, rel: &str) -> Path {
        let mut p = self.root.clone();
        for seg in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(seg);
        }
        p
    }

    fn admin(&self, path: &Path) -> Admin {
        Admin::builder(path.clone(), Arc::clone(&self.store)).build()
    }

    /// How long a flush (a checkpoint's, or closing's) may take before it is an error.
    fn flush_timeout(&self) -> Duration {
        Duration::from_secs(self.config.flush_timeout_secs)
    }

    fn replaced_tables_kept(&self) -> Duration {
        Duration::from_secs(self.config.replaced_tables_kept_secs)
    }

    /// What SlateDB's garbage collector deletes, and how often it looks.
    fn gc_options(&self) -> GarbageCollectorOptions {
        let kept = self.replaced_tables_kept();
        GarbageCollectorOptions {
            compacted_options: Some(GarbageCollectorDirectoryOptions {
                // Often enough that garbage lives not much longer than `kept`.
                interval: Some((kept / 4).clamp(Duration::from_secs(1), GC_MAX_INTERVAL)),
                min_age: kept,
                dry_run: false,
            }),
            // Boundary files need conditional overwrites, which a local directory lacks; without
            // them SlateDB never deletes old manifests there. They guard against a suspended
            // second writer, and each database here has a single writer.
            boundary_files_enabled: self.scheme != Scheme::File,
            ..GarbageCollectorOptions::default()
        }
    }

    /// Opens (creating if new) the database at `path`; call on the background runtime, which
    /// its compaction, uploads and garbage collection then run on.
    async fn open_db(
        &self,
        path: &Path,
        writer: tokio::runtime::Handle,
        metrics: Arc<DefaultMetricsRecorder>,
    ) -> std::result::Result<Db, slatedb::Error> {
        let mut settings = Settings {
            wal_enabled: false,
            l0_sst_size_bytes: usize::try_from(self.config.memtable.0).unwrap_or(usize::MAX),
            // SlateDB counts encoded bytes, about half the heap of a typical entry (key and
            // value of a few hundred bytes; see MEMTABLE_ENTRY_OVERHEAD): half the budget in
            // its terms, so that large entries do not fill twice the memory the backend's own
            // heap bound allows for small ones. It must exceed one memtable.
            max_unflushed_bytes: usize::try_from(
                (self.config.max_unflushed.0 / 2).max(self.config.memtable.0 + 1),
            )
            .unwrap_or(usize::MAX),
            ..Settings::default()
        };
        // The compactor pins its inputs with a checkpoint of this lifetime.
        settings.compactor_options = Some(self.compactor_options());
        settings.garbage_collector_options = Some(self.gc_options());
        if let Some(dir) = &self.config.disk_cache_dir {
            if self.config.disk_cache.0 > 0 {
                settings.object_store_cache_options.root_folder = Some(dir.clone());
                settings.object_store_cache_options.max_cache_size_bytes =
                    Some(usize::try_from(self.config.disk_cache.0).unwrap_or(usize::MAX));
            }
        }
        Db::builder(path.clone(), Arc::clone(&self.store))
            .with_settings(settings)
            .with_sst_block_size(self.config.sst_block_size().unwrap_or_default())
            .with_merge_operator(Arc::new(AppendOperator))
            .with_filter_policies(vec![Arc::new(
                BloomFilterPolicy::new(BLOOM_BITS_PER_KEY)
                    .with_prefix_extractor(Arc::new(ScopePrefixExtractor)),
            )])
            .with_write_runtime(writer)
            .with_metrics_recorder(metrics)
            .with_db_cache(
                Arc::clone(&self.cache),
                xxhash_rust::xxh3::xxh3_64(path.as_ref().as_bytes()),
            )
            .build()
            .await
    }
}

impl RemoteStore {
    /// The compactor's settings: its checkpoint lifetime, and its memory bounded by
    /// [`RemoteConfig::compaction_memory`].
    fn compactor_options(&self) -> CompactorOptions {
        let mut options = CompactorOptions {
            checkpoint_lifetime: self.replaced_tables_kept(),
            ..CompactorOptions::default()
        };
        let memory = usize::try_from(self.config.compaction_memory.0).unwrap_or(usize::MAX);
        if memory < 1 << 30 {
            // One compaction, unsplit: its output table (half the memory) is built in
            // memory, its inputs are read ahead 1 MiB at a time.
            options.max_concurrent_compactions = 1;
            if let Some(worker) = options.worker.as_mut() {
                worker.max_concurrent_compactions = 1;
                worker.max_subcompactions = 1;
                worker.max_sst_size = memory / 2;
                worker.max_fetch_tasks = 1;
                worker.bytes_to_fetch = 1 << 20;
            }
        }
        options
    }
}

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

/// The statekit manifest of a remote checkpoint, written last into checkpoint storage.
#[derive(Debug, Serialize, Deserialize)]
struct RemoteManifest {
    format: String,
    backend: String,
    checkpoint_id: u64,
    max_parallelism: u16,
    key_groups: KeyGroupRange,
    states: Vec<StateDescriptor>,
    /// The store URL, for messages (no credentials).
    store: String,
    /// The database, relative to the store's root.
    db_path: String,
    /// The SlateDB checkpoint pinning the database's state.
    slatedb_checkpoint: uuid::Uuid,
}

/// Per timer queue: the earliest timestamp of each owned key group, and those heads in
/// firing order, so `pop_due_timers` and `next_timer` never scan across key groups.
#[derive(Debug, Clone)]
struct TimerHeads {
    heads: Vec<Option<i64>>,
    order: BTreeSet<(i64, KeyGroup)>,
}

impl TimerHeads {
    fn new(groups: usize) -> Self {
        TimerHeads {
            heads: vec![None; groups],
            order: BTreeSet::new(),
        }
    }

    fn set(&mut self, index: usize, kg: KeyGroup, head: Option<i64>) {
        if let Some(old) = self.heads[index].take() {
            self.order.remove(&(old, kg));
        }
        if let Some(new) = head {
            self.order.insert((new, kg));
        }
        self.heads[index] = head;
    }
}

#[derive(Debug, Default)]
struct SweepCursor {
    step: usize,
    after: Option<Vec<u8>>,
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
    checkpoints: CheckpointLog,
    writes: u64,
    sweep: SweepCursor,
    user_bytes_written: u64,
    /// Heap the writes since the last forced flush hold in memtables, as
    /// [`memtable_heap`] estimates it.
    unflushed_heap: u64,
    prefetch_slots: Arc<Semaphore>,
    /// SlateDB's counters for this instance's database (cache, flushes, compaction).
    metrics: Arc<DefaultMetricsRecorder>,
    /// The SlateDB manifest each checkpoint of this instance's database pinned, by checkpoint
    /// id: what [`Checkpointing::checkpoint_size`] lists the tables of. A restore starts a
    /// new database, and with it an empty map.
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

    /// The sum of SlateDB's metric `name` for this instance's database (over its labels, or
    /// only those carrying `label`), e.g. `slatedb.db.sst_filter_negative_count` with
    /// `("kind", "prefix")`: diagnostics beyond [`StateBackend::stats`].
    pub fn engine_metric(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        metric_sum(&self.metrics.snapshot(), name, label.as_slice())
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

    /// The SlateDB checkpoints that pin this instance's database, oldest first: those of
    /// statekit's checkpoints (named `statekit-<id>`, no expiry once complete) and those
    /// that clones restored from them hold. For inspecting what keeps tables alive.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn pinned_checkpoints(&self) -> Result<Vec<PinnedCheckpoint>> {
        let path = self.store.path_of(&self.db_rel);
        let listed = runtime::block_on(self.store.admin(&path).list_checkpoints(None))?
            .map_err(|e| slate_error(format!("listing the checkpoints of {}", self.what()), e))?;
        Ok(listed
            .into_iter()
            .map(|c| PinnedCheckpoint {
                name: c.name,
                expires_at_unix_ms: c.expire_time.map(|t| t.timestamp_millis()),
            })
            .collect())
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

    fn commit(&self, batch: slatedb::WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let what = self.what();
        runtime::block_on(self.db.write(batch))?
            .map(|_| ())
            .map_err(|e| slate_error(format!("write to {what}"), e))
    }

    /// The keys that exist now under the range deletes among `ops`.
    ///
    /// Each range is one scan bounded by its scope, so tables whose Bloom filter rules the
    /// scope out are skipped. Many ranges (the cleanup of a batch of fired timers) are split
    /// between the calling thread and the background runtime's workers: the scans are CPU
    /// work on cached blocks, the calling thread is the bottleneck, and the other cores
    /// mostly idle. (One iterator seeking from range to range measured slower: a seek
    /// positions every memtable and table, where a scope's Bloom filters skip most.)
    fn keys_under_range_deletes(&self, ops: &[WriteOp]) -> Result<BTreeSet<Vec<u8>>> {
        let mut ranges = Vec::new();
        for op in ops {
            if let WriteOp::DeleteRange { lower, upper, .. } = op {
                let prefix = self.kv_prefix(&op.scope().as_scope())?;
                let range = UserKeyRange::from_half_open(lower.as_deref(), upper.as_deref());
                if let Some(bounds) = user_range(&prefix, &range) {
                    ranges.push((prefix, bounds));
                }
            }
        }
        // Most writes have no range delete: no runtime entry, no allocation.
        if ranges.is_empty() {
            return Ok(BTreeSet::new());
        }
        let what = self.what();
        let lanes = runtime::cores();
        let mut spawned = Vec::new();
        if ranges.len() >= PARALLEL_SCANS_FROM && lanes > 1 {
            if let Ok(handle) = runtime::handle() {
                for lane in 1..lanes {
                    let share: Vec<ScopedRange> =
                        ranges.iter().skip(lane).step_by(lanes).cloned().collect();
                    let db = Arc::clone(&self.db);
                    spawned.push(handle.spawn(async move { keys_in(&db, &share).await }));
                }
                ranges = ranges.into_iter().step_by(lanes).collect();
            }
        }
        let scan_error = |e| slate_error(format!("scan of {what} for a range delete"), e);
        let mut keys: BTreeSet<Vec<u8>> = runtime::block_on(keys_in(&self.db, &ranges))?
            .map_err(scan_error)?
            .into_iter()
            .map(|k| k.to_vec())
            .collect();
        for task in spawned {
            let found = runtime::block_on(task)?
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("a range delete's scan of {what} failed: {e}"),
                    )
                })?
                .map_err(scan_error)?;
            keys.extend(found.into_iter().map(|k| k.to_vec()));
        }
        Ok(keys)
    }

    /// Adds the operation to a SlateDB batch; `touched` collects the keys written earlier in
    /// the same batch, so a range delete also removes them.
    fn stage(
        &mut self,
        batch: &mut slatedb::WriteBatch,
        touched: &mut BTreeSet<Vec<u8>>,
        existing: &BTreeSet<Vec<u8>>,
        op: &WriteOp,
    ) -> Result<()> {
        let scope = op.scope().as_scope();
        let prefix = self.kv_prefix(&scope)?;
        match op {
            WriteOp::Put {
                user_key, value, ..
            } => {
                let key = entry_key(&prefix, user_key);
                self.unflushed_heap += memtable_heap(key.len() + value.len(), 1);
                batch.put(&key, encode_value(self.expiry(scope.state), value));
                self.user_bytes_written += (user_key.len() + value.len()) as u64;
                touched.insert(key);
            }
            WriteOp::Merge {
                user_key, operand, ..
            } => {
                let key = entry_key(&prefix, user_key);
                self.unflushed_heap += memtable_heap(key.len() + operand.len(), 1);
                batch.merge(
                    &key,
                    encode_append(self.config.now_millis(), self.expiry(scope.state), operand),
                );
                self.user_bytes_written += (user_key.len() + operand.len()) as u64;
                touched.insert(key);
            }
            WriteOp::Delete { user_key, .. } => {
                let key = entry_key(&prefix, user_key);
                self.unflushed_heap += memtable_heap(key.len(), 1);
                batch.delete(&key);
                touched.insert(key);
            }
            WriteOp::DeleteRange { lower, upper, .. } => {
                let range = UserKeyRange::from_half_open(lower.as_deref(), upper.as_deref());
                let Some(bounds) = user_range(&prefix, &range) else {
                    return Ok(());
                };
                let bounds = (as_slice_bound(&bounds.0), as_slice_bound(&bounds.1));
                let mut doomed: Vec<Vec<u8>> = touched.range::<[u8], _>(bounds).cloned().collect();
                doomed.extend(existing.range::<[u8], _>(bounds).cloned());
                for key in doomed {
                    self.unflushed_heap += memtable_heap(key.len(), 1);
                    batch.delete(&key);
                    touched.insert(key);
                }
            }
        }
        Ok(())
    }

    fn validate_op(&self, op: &WriteOp) -> Result<()> {
        check_scope(
            &op.scope().as_scope(),
            self.config.key_groups,
            &self.states,
            false,
        )?;
        match op {
            WriteOp::Put {
                user_key, value, ..
            } => {
                Self::check_size("key", user_key.len() + op.scope().key.len())?;
                Self::check_size("value", value.len())
            }
            WriteOp::Merge {
                user_key, operand, ..
            } => {
                check_merge(&op.scope().as_scope(), &self.states)?;
                Self::check_size("key", user_key.len() + op.scope().key.len())?;
                Self::check_size("merge operand", operand.len())
            }
            WriteOp::Delete { .. } | WriteOp::DeleteRange { .. } => Ok(()),
        }
    }

    fn apply_ops(&mut self, ops: Vec<WriteOp>) -> Result<()> {
        for op in &ops {
            self.validate_op(op)?;
        }
        // Read before anything is staged: a range delete removes what exists now plus what
        // the batch itself wrote before it (`touched`).
        let existing = self.keys_under_range_deletes(&ops)?;
        let mut batch = slatedb::WriteBatch::new();
        let mut touched = BTreeSet::new();
        for op in &ops {
            self.stage(&mut batch, &mut touched, &existing, op)?;
        }
        self.commit(batch)?;
        for _ in &ops {
            self.after_write();
        }
        self.bound_unflushed()
    }

    /// Flushes the memtables when the writes since the last such flush hold more heap than
    /// `max_unflushed` allows: SlateDB's own bound counts encoded bytes, which small entries
    /// overrun many times over (see [`MEMTABLE_ENTRY_OVERHEAD`]). The flush waits for the
    /// upload, which is the backpressure.
    fn bound_unflushed(&mut self) -> Result<()> {
        if self.unflushed_heap < self.store.config.max_unflushed.0 {
            return Ok(());
        }
        self.unflushed_heap = 0;
        let what = format!("flushing memtables of {}", self.what());
        self.within_flush_timeout(
            &what,
            self.db.flush_with_options(slatedb::config::FlushOptions {
                flush_type: slatedb::config::FlushType::MemTable,
            }),
        )
    }

    /// Runs SlateDB's `work` (a flush, a checkpoint) to completion within
    /// `flush_timeout_secs`; `what` names it in errors.
    fn within_flush_timeout<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = std::result::Result<T, slatedb::Error>>,
    ) -> Result<T> {
        let deadline = self.store.flush_timeout();
        // The timer must be created inside the runtime.
        runtime::block_on(async { tokio::time::timeout(deadline, work).await })?
            .map_err(|_| flush_timed_out(what, deadline))?
            .map_err(|e| slate_error(what, e))
    }

    fn after_write(&mut self) {
        self.writes += 1;
        if self.writes % SWEEP_EVERY_WRITES == 0 {
            // Hygiene only: a failed sweep step leaves expired entries for the next one and
            // must not fail the write that triggered it.
            let _ = self.sweep_step();
        }
    }

    /// Deletes the expired entries among the next [`SWEEP_BATCH`] entries of one key group of
    /// one TTL state, moving a cursor over all of them.
    fn sweep_step(&mut self) -> Result<()> {
        let ttl_states: Vec<usize> = (0..self.states.len())
            .filter(|&i| self.states[i].ttl.is_some() && self.states[i].kind != StateKind::Timers)
            .collect();
        if ttl_states.is_empty() {
            return Ok(());
        }
        let groups = self.config.key_groups.len();
        let step = self.sweep.step % (ttl_states.len() * groups);
        let state = ttl_states[step / groups];
        let kg = self.config.key_groups.start + (step % groups) as KeyGroup;
        let prefix = entries_prefix(kg, self.tags[state]);
        let (lower, upper) = prefix_range(&prefix);
        let lower = match self.sweep.after.take() {
            Some(after) => Bound::Excluded(Bytes::from(after)),
            None => lower,
        };
        let now = self.config.now_millis();
        let mut seen = 0;
        let mut last = None;
        let (mut deleted, mut deleted_bytes) = (0, 0);
        let mut batch = slatedb::WriteBatch::new();
        self.scan_raw(
            None,
            (lower, upper),
            IterationOrder::Ascending,
            &mut |k, v| {
                seen += 1;
                if !decode_record(v)?.live(now) {
                    batch.delete(k);
                    deleted_bytes += k.len();
                    deleted += 1;
                }
                last = Some(k.to_vec());
                Ok(if seen >= SWEEP_BATCH {
                    Visit::Stop
                } else {
                    Visit::Continue
                })
            },
        )?;
        self.commit(batch)?;
        self.unflushed_heap += memtable_heap(deleted_bytes, deleted);
        if seen >= SWEEP_BATCH {
            self.sweep.after = last;
        } else {
            self.sweep.step = step + 1;
        }
        Ok(())
    }

    fn timer_state(&self, queue: StateId) -> Result<u64> {
        match self.states.get(queue.index()) {
            Some(d) if d.kind == StateKind::Timers => Ok(self.tags[queue.index()]),
            _ => Err(Error::invalid(format!(
                "state id {} is not a registered timer queue",
                queue.index()
            ))),
        }
    }

    fn check_timer(&self, queue: StateId, timer: &Timer) -> Result<u64> {
        let scope = Scope {
            state: queue,
            key_group: timer.key_group,
            key: &timer.key,
            namespace: &timer.namespace,
        };
        check_scope(&scope, self.config.key_groups, &self.states, true)?;
        Ok(self.tags[queue.index()])
    }

    /// The earliest timer of key group `kg` at or after `from` (a bound below which it has
    /// none).
    fn first_timer(&self, tag: u64, kg: KeyGroup, from: i64) -> Result<Option<Timer>> {
        let mut first = None;
        self.scan_raw(
            None,
            timers_from(kg, tag, from),
            IterationOrder::Ascending,
            &mut |k, _| {
                first = Some(decode_timer(kg, k)?);
                Ok(Visit::Stop)
            },
        )?;
        Ok(first)
    }

    /// Reads the head of every owned key group of every timer queue, concurrently.
    fn load_timer_heads(&mut self) -> Result<()> {
        let groups = self.config.key_groups.len();
        let owned = self.config.key_groups;
        let what = self.what();
        let mut timers = Vec::with_capacity(self.states.len());
        for (i, desc) in self.states.iter().enumerate() {
            if desc.kind != StateKind::Timers {
                timers.push(None);
                continue;
            }
            let tag = self.tags[i];
            let db = &self.db;
            let firsts: Vec<(KeyGroup, Option<i64>)> = runtime::block_on(
                futures::stream::iter(owned.iter())
                    .map(|kg| async move {
                        let mut it = db
                            .scan_with_options(
                                prefix_range(&timers_prefix(kg, tag)),
                                &Self::scan_options(IterationOrder::Ascending),
                            )
                            .await?;
                        let head = it.next().await?;
                        Ok::<_, slatedb::Error>((kg, head.map(|kv| kv.key)))
                    })
                    .buffered(self.store.config.max_concurrent_reads)
                    .map(|r| {
                        let (kg, key) =
                            r.map_err(|e| slate_error(format!("timers of {what}"), e))?;
                        let ts = key
                            .map(|k| decode_timer(kg, &k))
                            .transpose()?
                            .map(|t| t.timestamp);
                        Ok::<_, Error>((kg, ts))
                    })
                    .try_collect(),
            )??;
            let mut heads = TimerHeads::new(groups);
            for (kg, ts) in firsts {
                heads.set(usize::from(kg - owned.start), kg, ts);
            }
            timers.push(Some(heads));
        }
        self.timers = timers;
        Ok(())
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

    fn manifest_of(
        storage: &dyn CheckpointStorage,
        handle: &CheckpointHandle,
    ) -> Result<RemoteManifest> {
        let path = handle.manifest_path();
        let bytes = storage
            .get(&path)
            .map_err(|e| e.context(format!("checkpoint {} manifest", handle.checkpoint_id)))?;
        let manifest: RemoteManifest = decode_manifest(&bytes, &path)?;
        if manifest.format != REMOTE_FORMAT || manifest.key_groups != handle.key_groups {
            return Err(Error::new(
                ErrorKind::Incompatible,
                format!(
                    "{path}: manifest says format {} key groups {}, handle says {} {}",
                    manifest.format, manifest.key_groups, handle.format, handle.key_groups
                ),
            ));
        }
        Ok(manifest)
    }

    /// Deletes a checkpoint that fell out of retention or was aborted: its manifest first (so it is never
    /// restorable half-deleted), then the SlateDB checkpoint that pins its tables.
    fn drop_checkpoint(
        &self,
        storage: &dyn CheckpointStorage,
        handle: &CheckpointHandle,
    ) -> Result<()> {
        let manifest = Self::manifest_of(storage, handle)?;
        delete_location(storage, &handle.location)?;
        let path = self.store.path_of(&manifest.db_path);
        let what = format!("{}/{}", self.store.describe, manifest.db_path);
        runtime::block_on(
            self.store
                .admin(&path)
                .delete_checkpoint(manifest.slatedb_checkpoint),
        )?
        .map_err(|e| slate_error(format!("deleting a checkpoint of {what}"), e))
    }

    /// Builds the restored instance beside this one; `self` is untouched until it succeeds.
    fn build_restored(&self, handles: &[CheckpointHandle]) -> Result<RemoteBackend> {
        let storage = self.config.storage()?.clone();
        let owned = self.config.key_groups;
        let mut overlapping: Vec<&CheckpointHandle> = handles_for_range(handles, owned)?;
        overlapping.sort_by_key(|h| (h.key_groups.start, h.key_groups.end));
        let mut sources: Vec<CloneSourceSpec> = Vec::new();
        let mut fulls = Vec::new();
        // States registered before the restore keep their ids.
        let mut states: Vec<StateDescriptor> = self.states.clone();
        let mut merge_states = |incoming: &[StateDescriptor]| -> Result<()> {
            states = states_after_restore(&states, incoming)?;
            Ok(())
        };
        // Give every owned key group to exactly one handle: clone sources must not overlap.
        let mut next: u32 = u32::from(owned.start);
        for handle in overlapping {
            let Some(clip) = handle.key_groups.intersect(&owned) else {
                continue;
            };
            if u32::from(clip.end) < next {
                continue;
            }
            let clip = KeyGroupRange {
                start: clip.start.max(next as KeyGroup),
                end: clip.end,
            };
            next = u32::from(clip.end) + 1;
            let mp_mismatch = |mp: u16| {
                Error::invalid(format!(
                    "checkpoint {} was written with max parallelism {mp}, this instance has {}",
                    handle.checkpoint_id, self.config.max_parallelism
                ))
            };
            match handle.format.as_str() {
                REMOTE_FORMAT => {
                    let manifest = Self::manifest_of(storage.as_ref(), handle)?;
                    if manifest.max_parallelism != self.config.max_parallelism {
                        return Err(mp_mismatch(manifest.max_parallelism));
                    }
                    merge_states(&manifest.states)?;
                    let path = self.store.path_of(&manifest.db_path);
                    let listed = runtime::block_on(self.store.admin(&path).list_checkpoints(None))?
                        .map_err(|e| {
                            let e = slate_error(
                                format!(
                                    "checkpoint {}: database {}/{}",
                                    handle.checkpoint_id, self.store.describe, manifest.db_path
                                ),
                                e,
                            );
                            if e.kind() == ErrorKind::InvalidArgument {
                                Error::new(ErrorKind::NotFound, e.message().to_string())
                            } else {
                                e
                            }
                        })?;
                    if !listed.iter().any(|c| c.id == manifest.slatedb_checkpoint) {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "checkpoint {}: SlateDB checkpoint {} of {}/{} no longer exists \
                                 (deleted by retention?)",
                                handle.checkpoint_id,
                                manifest.slatedb_checkpoint,
                                self.store.describe,
                                manifest.db_path
                            ),
                        ));
                    }
                    sources.push(
                        CloneSourceSpec::with_checkpoint(path, manifest.slatedb_checkpoint)
                            .with_projection_range(key_group_span(clip)),
                    );
                }
                FULL_FORMAT => {
                    let snapshot = read_full_snapshot(storage.as_ref(), handle)?;
                    if snapshot.max_parallelism() != self.config.max_parallelism {
                        return Err(mp_mismatch(snapshot.max_parallelism()));
                    }
                    merge_states(snapshot.states())?;
                    fulls.push((snapshot, clip));
                }
                other => {
                    return Err(Error::new(
                        ErrorKind::Incompatible,
                        format!(
                            "checkpoint {} has format '{other}'; the remote backend restores \
                             {REMOTE_FORMAT} and {FULL_FORMAT}",
                            handle.checkpoint_id
                        ),
                    ))
                }
            }
        }

        let (db_rel, db_path) = self.store.new_db_path();
        let what = format!("{}/{db_rel}", self.store.describe);
        let mut sources = sources.into_iter();
        if let Some(first) = sources.next() {
            let mut clone = self
                .store
                .admin(&db_path)
                .create_clone_builder_from_source(first);
            for s in sources {
                clone = clone.with_source(s);
            }
            runtime::block_on(clone.build())?
                .map_err(|e| slate_error(format!("cloning checkpoints into {what}"), e))?;
        }
        let mut fresh = Self::open_database(self.config.clone(), &self.store, db_rel, &db_path)?;
        for d in &states {
            fresh.register_in(d)?;
        }
        for (snapshot, clip) in fulls {
            let ids = snapshot
                .states()
                .iter()
                .map(|d| fresh.register_in(d))
                .collect::<Result<Vec<_>>>()?;
            let mut batch = slatedb::WriteBatch::new();
            let mut pending = 0usize;
            snapshot.read(storage.as_ref(), clip, &mut |record| {
                match record {
                    SnapshotRecord::Entry { state, entry } => {
                        let scope = Scope {
                            state: ids[state],
                            key_group: entry.key_group,
                            key: entry.key,
                            namespace: entry.namespace,
                        };
                        let key = entry_key(
                            &scope_prefix(&scope, fresh.tags[ids[state].index()]),
                            entry.user_key,
                        );
                        batch.put(&key, encode_value(entry.expires_at, entry.value));
                        pending += key.len() + entry.value.len();
                    }
                    SnapshotRecord::Timer { state, timer } => {
                        let key = timer_key(fresh.tags[ids[state].index()], &timer);
                        batch.put(&key, encode_value(None, &[]));
                        pending += key.len();
                    }
                }
                if pending >= 4 << 20 {
                    fresh.commit(std::mem::take(&mut batch))?;
                    pending = 0;
                }
                Ok(())
            })?;
            fresh.commit(batch)?;
        }
        fresh.load_timer_heads()?;
        Ok(fresh)
    }

    fn close_db(&self) {
        let db = Arc::clone(&self.db);
        // Best effort, and bounded: a failure or a store that accepts no writes leaves
        // unflushed (never checkpointed) writes behind, which the trait allows to be lost.
        let deadline = self.store.flush_timeout();
        let _ = runtime::block_on(async move { tokio::time::timeout(deadline, db.close()).await });
    }
}

/// Heap a memtable entry holds beyond its key and value: SlateDB's skiplist node and row
/// entry and the headers of its key and value bytes. SlateDB bounds unflushed writes by their
/// encoded size (key + value + 11 bytes), a fraction of their heap for small entries: a heap
/// profile of ad-click at a 256 MiB budget had 100 MB of memtables where SlateDB counted under
/// 64 MiB, and the end-of-input drain's millions of small deletes took the run 100 MiB over
/// its budget.
const MEMTABLE_ENTRY_OVERHEAD: usize = 160;

/// The heap `entries` memtable entries of `bytes` key and value bytes hold.
fn memtable_heap(bytes: usize, entries: usize) -> u64 {
    (bytes + entries * MEMTABLE_ENTRY_OVERHEAD) as u64
}

/// A flush that did not finish within the configured time: the store refuses writes (full,
/// or unreachable beyond SlateDB's retries) or is far too slow.
fn flush_timed_out(what: &str, deadline: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "{what}: SlateDB's flush did not finish within {} s (flush_timeout_secs): the \
             object store refuses writes (full? unreachable?) or is far too slow; nothing \
             after the last completed checkpoint is durable",
            deadline.as_secs()
        ),
    )
}

/// What a read costs as the state grows: the tables every read may probe (L0 tables and
/// sorted runs, from the database's manifest now; SlateDB's own gauges lag it until the next
/// compaction) and, by SlateDB's metric names, the index and filter lookups in the block
/// cache. An index miss reads and verifies a whole table index: when those misses climb, the
/// metadata part of the cache no longer holds the state's indexes and filters.
fn read_amplification_details(
    metrics: &Metrics,
    manifest: &slatedb::VersionedManifest,
) -> std::collections::BTreeMap<String, u64> {
    let mut details = std::collections::BTreeMap::new();
    details.insert("slatedb.l0_ssts".to_string(), manifest.l0().len() as u64);
    details.insert(
        "slatedb.sorted_runs".to_string(),
        manifest.compacted().len() as u64,
    );
    for kind in ["index", "filter"] {
        for result in ["hit", "miss"] {
            details.insert(
                format!("slatedb.db_cache.{kind}.{result}"),
                metric_sum(
                    metrics,
                    "slatedb.db_cache.access_count",
                    &[("entry_kind", kind), ("result", result)],
                ),
            );
        }
    }
    details
}

/// The sum of the metrics named `name` that carry every label of `labels`.
fn metric_sum(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    metrics
        .by_name(name)
        .into_iter()
        .filter(|m| {
            labels
                .iter()
                .all(|(k, v)| m.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|m| match m.value {
            MetricValue::Counter(c) => c,
            MetricValue::Gauge(g) | MetricValue::UpDownCounter(g) => u64::try_from(g).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn as_slice_bound(b: &Bound<Bytes>) -> Bound<&[u8]> {
    match b {
        Bound::Included(x) => Bound::Included(x.as_ref()),
        Bound::Excluded(x) => Bound::Excluded(x.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
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
        match self.states.get(state.index()) {
            Some(d) if d.kind != StateKind::Timers => {}
            _ => {
                return Err(Error::invalid(format!(
                    "state id {} is not a registered key/value state",
                    state.index()
                )))
            }
        }
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

impl StateWrite for RemoteBackend {
    fn put(&mut self, scope: Scope<'_>, user_key: &[u8], value: &[u8]) -> Result<()> {
        self.apply_ops(vec![WriteOp::Put {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
            value: value.to_vec(),
        }])
    }

    fn merge(&mut self, scope: Scope<'_>, user_key: &[u8], operand: &[u8]) -> Result<()> {
        self.apply_ops(vec![WriteOp::Merge {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
            operand: operand.to_vec(),
        }])
    }

    fn delete(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()> {
        self.apply_ops(vec![WriteOp::Delete {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
        }])
    }

    fn delete_range(&mut self, scope: Scope<'_>, range: UserKeyRange<'_>) -> Result<()> {
        let (lower, upper) = range.to_half_open();
        self.apply_ops(vec![WriteOp::DeleteRange {
            scope: scope.to_owned(),
            lower,
            upper,
        }])
    }

    fn write(&mut self, batch: WriteBatch) -> Result<()> {
        self.apply_ops(batch.into_ops())
    }
}

impl TimerStore for RemoteBackend {
    fn register_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        let tag = self.check_timer(queue, timer)?;
        let key = timer_key(tag, timer);
        let what = self.what();
        runtime::block_on(self.db.put(&key, encode_value(None, &[])))?
            .map_err(|e| slate_error(format!("timer write to {what}"), e))?;
        self.unflushed_heap += memtable_heap(key.len(), 1);
        self.bound_unflushed()?;
        let index = self.config.group_index(timer.key_group);
        if let Some(heads) = self.timers[queue.index()].as_mut() {
            if heads.heads[index].is_none_or(|h| timer.timestamp < h) {
                heads.set(index, timer.key_group, Some(timer.timestamp));
            }
        }
        Ok(())
    }

    fn delete_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        let tag = self.check_timer(queue, timer)?;
        let key = timer_key(tag, timer);
        let what = self.what();
        runtime::block_on(self.db.delete(&key))?
            .map_err(|e| slate_error(format!("timer delete in {what}"), e))?;
        self.unflushed_heap += memtable_heap(key.len(), 1);
        self.bound_unflushed()?;
        let index = self.config.group_index(timer.key_group);
        let head = self.timers[queue.index()]
            .as_ref()
            .and_then(|h| h.heads[index]);
        if head == Some(timer.timestamp) {
            let first = self
                .first_timer(tag, timer.key_group, timer.timestamp)?
                .map(|t| t.timestamp);
            if let Some(heads) = self.timers[queue.index()].as_mut() {
                heads.set(index, timer.key_group, first);
            }
        }
        Ok(())
    }

    fn pop_due_timers(
        &mut self,
        queue: StateId,
        watermark: i64,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        let tag = self.timer_state(queue)?;
        // Every popped timer is deleted in one batch at the end (one write, not one per key
        // group); the heads are restored if that write fails, so no timer is lost.
        let saved = self.timers[queue.index()].clone();
        let mut batch = slatedb::WriteBatch::new();
        // The last key taken per key group: a group visited again in this call resumes
        // after it, as its deletes are not written yet.
        let mut resume: HashMap<KeyGroup, Vec<u8>> = HashMap::new();
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(heads) = self.timers[queue.index()].as_ref() else {
                break;
            };
            let mut order = heads.order.iter();
            let Some(&(ts, kg)) = order.next() else {
                break;
            };
            if ts > watermark {
                break;
            }
            // Take timers of this key group while they come before the best head of any other.
            let rival = order.next().copied();
            let mut taken = Vec::new();
            let mut new_head = None;
            let room = limit - due.len();
            // No live timer of this key group is earlier than its head.
            let range = match resume.get(&kg) {
                Some(last) => timers_after(kg, tag, last),
                None => timers_from(kg, tag, ts),
            };
            let scanned = self.scan_raw(None, range, IterationOrder::Ascending, &mut |k, _| {
                let t = decode_timer(kg, k)?;
                let before_rival = rival.is_none_or(|r| (t.timestamp, kg) < r);
                if taken.len() < room && t.timestamp <= watermark && before_rival {
                    taken.push(t);
                    Ok(Visit::Continue)
                } else {
                    new_head = Some(t.timestamp);
                    Ok(Visit::Stop)
                }
            });
            if let Err(e) = scanned {
                self.timers[queue.index()] = saved;
                return Err(e);
            }
            for t in &taken {
                let key = timer_key(tag, t);
                self.unflushed_heap += memtable_heap(key.len(), 1);
                batch.delete(key);
            }
            if let Some(last) = taken.last() {
                resume.insert(kg, timer_key(tag, last));
            }
            let index = self.config.group_index(kg);
            if let Some(heads) = self.timers[queue.index()].as_mut() {
                heads.set(index, kg, new_head);
            }
            // An empty take means the head was stale (nothing left at it): fixed now.
            due.extend(taken);
        }
        if let Err(e) = self.commit(batch) {
            self.timers[queue.index()] = saved;
            return Err(e);
        }
        self.bound_unflushed()?;
        Ok(due)
    }

    fn next_timer(&self, queue: StateId) -> Result<Option<i64>> {
        self.timer_state(queue)?;
        Ok(self.timers[queue.index()]
            .as_ref()
            .and_then(|h| h.order.first().map(|(ts, _)| *ts)))
    }

    fn scan_timers(
        &self,
        queue: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut dyn FnMut(&Timer) -> Result<Visit>,
    ) -> Result<()> {
        let tag = self.timer_state(queue)?;
        let Some(range) = key_groups.intersect(&self.config.key_groups) else {
            return Ok(());
        };
        let heads = self.timers[queue.index()].as_ref();
        for kg in range.iter() {
            if heads.is_some_and(|h| h.heads[self.config.group_index(kg)].is_none()) {
                continue;
            }
            let mut stopped = false;
            self.scan_raw(
                None,
                prefix_range(&timers_prefix(kg, tag)),
                IterationOrder::Ascending,
                &mut |k, _| {
                    let next = visitor(&decode_timer(kg, k)?)?;
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

impl Checkpointing for RemoteBackend {
    fn checkpoint(&mut self, checkpoint_id: u64) -> Result<CheckpointHandle> {
        self.checkpoints.check_next(checkpoint_id)?;
        let storage = self.config.storage()?.clone();
        let location = checkpoint_location(
            self.config.operator_id.as_deref(),
            NAME,
            checkpoint_id,
            self.config.key_groups,
        );
        let what = self.what();
        // The pin expires unless this checkpoint completes: a crash before its MANIFEST is
        // written (nothing can ever restore it) must not keep its tables forever.
        let options = CheckpointOptions {
            name: Some(format!("statekit-{checkpoint_id}")),
            lifetime: Some(UNCONFIRMED_PIN_LIFETIME),
            ..CheckpointOptions::default()
        };
        let created = self.within_flush_timeout(
            &format!("checkpoint {checkpoint_id} of {what}"),
            self.db.create_checkpoint(CheckpointScope::All, &options),
        )?;
        let manifest = RemoteManifest {
            format: REMOTE_FORMAT.to_string(),
            backend: NAME.to_string(),
            checkpoint_id,
            max_parallelism: self.config.max_parallelism,
            key_groups: self.config.key_groups,
            states: self.states.clone(),
            store: self.store.describe.clone(),
            db_path: self.db_rel.clone(),
            slatedb_checkpoint: created.id,
        };
        self.checkpoint_manifests
            .insert(checkpoint_id, created.manifest_id);
        let manifest_path = format!("{location}/MANIFEST");
        let admin = self.store.admin(&self.store.path_of(&self.db_rel));
        // Takes a failed checkpoint back. The MANIFEST put may have taken effect with its
        // response lost: unpin the SlateDB checkpoint only once the manifest is surely gone,
        // so a visible manifest never points at nothing.
        let take_back = || {
            if storage.delete(&manifest_path).is_ok() {
                let _ = runtime::block_on(admin.delete_checkpoint(created.id));
            }
        };
        if let Err(e) = storage.put(&manifest_path, &encode_manifest(&manifest)?) {
            take_back();
            return Err(e.context(format!(
                "checkpoint {checkpoint_id} to {}/{location}",
                storage.describe()
            )));
        }
        // The MANIFEST is durable: the pin now lasts until retention drops it. If it cannot be
        // made permanent, the checkpoint fails and is taken back like a failed MANIFEST put.
        if let Err(e) = runtime::block_on(admin.refresh_checkpoint(created.id, None))?
            .map_err(|e| slate_error(format!("checkpoint {checkpoint_id} of {what}"), e))
        {
            take_back();
            return Err(e.context("making its SlateDB checkpoint permanent"));
        }
        let handle = CheckpointHandle {
            checkpoint_id,
            backend: NAME.to_string(),
            format: REMOTE_FORMAT.to_string(),
            location,
            key_groups: self.config.key_groups,
        };
        self.checkpoints.taken(handle.clone());
        Ok(handle)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let retired = self
            .checkpoints
            .confirm(checkpoint_id, self.config.retained_checkpoints)?;
        let storage = self.config.storage()?.clone();
        for old in retired {
            // Best effort: a failed delete leaves garbage, never a broken checkpoint.
            let _ = self.drop_checkpoint(storage.as_ref(), &old);
        }
        Ok(())
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
        if let Some(aborted) = self.checkpoints.abort(checkpoint_id)? {
            let storage = self.config.storage()?.clone();
            let _ = self.drop_checkpoint(storage.as_ref(), &aborted);
        }
        Ok(())
    }

    fn restore(&mut self, handles: &[CheckpointHandle]) -> Result<()> {
        let mut fresh = self.build_restored(handles)?;
        fresh.checkpoints = std::mem::take(&mut self.checkpoints);
        std::mem::swap(self, &mut fresh);
        // `fresh` now holds the old instance; dropping it closes its database.
        drop(fresh);
        Ok(())
    }

    /// Lists the store: the tables the checkpoint's manifest references, with their sizes
    /// in the store; added are those the previous checkpoint's manifest did not list (all of
    /// them if that manifest is gone).
    fn checkpoint_size(&self, handle: &CheckpointHandle) -> Result<Option<CheckpointSize>> {
        let Some(&manifest_id) = self.checkpoint_manifests.get(&handle.checkpoint_id) else {
            return Ok(None);
        };
        let previous = self
            .checkpoint_manifests
            .range(..handle.checkpoint_id)
            .next_back()
            .map(|(_, &m)| m);
        let what = format!("checkpoint {} of {}", handle.checkpoint_id, self.what());
        let store = Arc::clone(&self.store.store);
        let db = self.store.path_of(&self.db_rel);
        let admin = self.store.admin(&db);
        runtime::block_on(async move {
            let read = |id| admin.read_manifest(Some(id));
            let manifest = read(manifest_id)
                .await
                .map_err(|e| slate_error(format!("reading the manifest of {what}"), e))?
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("{what}: manifest {manifest_id} is gone"),
                    )
                })?;
            let (tables, external) = sizes::tables_of(&manifest);
            let mut table_sizes = sizes::table_sizes(store.as_ref(), &db).await?;
            for other in external {
                table_sizes.extend(sizes::table_sizes(store.as_ref(), &Path::from(other)).await?);
            }
            let total_bytes = sizes::bytes_of(&tables, &table_sizes);
            // A manifest garbage collection already removed counts as "nothing before".
            let before = match previous {
                Some(id) => read(id).await.ok().flatten(),
                None => None,
            };
            let added_bytes = match before {
                Some(m) => {
                    let (old, _) = sizes::tables_of(&m);
                    let new: std::collections::HashSet<String> =
                        tables.difference(&old).cloned().collect();
                    sizes::bytes_of(&new, &table_sizes)
                }
                None => total_bytes,
            };
            Ok(Some(CheckpointSize {
                total_bytes,
                added_bytes,
            }))
        })?
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
        let m = self.metrics.snapshot();
        let cache = "slatedb.db_cache.access_count";
        // What the database holds in the store now: every object under its prefix (tables,
        // manifests, checkpoints' pins), listed, so S3 and file:// stores report alike.
        let db = self.store.path_of(&self.db_rel);
        // Bytes this instance's database wrote as whole tables: memtable flushes plus
        // compaction output, as RocksDB counts its files (the WAL is off).
        let uploaded = self.store.table_writes.of(&db);
        let stored = runtime::block_on(sizes::bytes_under(self.store.store.as_ref(), &db))??;
        // The block cache is shared by every instance of the store; memtables and unflushed
        // writes are this instance's (SlateDB's gauge: active and immutable memtables).
        let (data, meta) = runtime::block_on(async {
            (
                self.store.data_cache.bytes().await,
                self.store.meta_cache.bytes().await,
            )
        })?;
        let unflushed = metric_sum(&m, "slatedb.db.total_mem_size_bytes", &[]);
        // Tables and parts handed to the object store and not yet written: the store's, so
        // shared by its instances like the cache. Their high-water mark shows what the
        // uploads cost at their worst, which a gauge read now would miss.
        let uploading = self.store.table_writes.in_flight();
        let counted = data + meta + unflushed + uploading;
        let memory_by_component: std::collections::BTreeMap<String, u64> = [
            ("block cache: data blocks".to_string(), data),
            (
                "block cache: index, filter and stats blocks".to_string(),
                meta,
            ),
            ("memtables and unflushed writes".to_string(), unflushed),
            ("uploads in flight".to_string(), uploading),
            (
                "uploads in flight: most since open (not added)".to_string(),
                self.store.table_writes.peak_in_flight(),
            ),
        ]
        .into_iter()
        .collect();
        let details = read_amplification_details(&m, &self.db.manifest());
        let lookups = |result: &str| {
            ["index", "filter"]
                .iter()
                .filter_map(|kind| details.get(&format!("slatedb.db_cache.{kind}.{result}")))
                .sum()
        };
        Ok(BackendStats {
            memory_bytes: Some(counted),
            memory_by_component,
            disk_bytes: Some(stored),
            user_bytes_written: Some(self.user_bytes_written),
            disk_bytes_written: Some(uploaded),
            // Data blocks only, as for RocksDB: index and filter lookups would count once
            // per table probed and inflate the rate.
            cache_hits: Some(metric_sum(
                &m,
                cache,
                &[("entry_kind", "data_block"), ("result", "hit")],
            )),
            cache_misses: Some(metric_sum(
                &m,
                cache,
                &[("entry_kind", "data_block"), ("result", "miss")],
            )),
            meta_cache_hits: Some(lookups("hit")),
            meta_cache_misses: Some(lookups("miss")),
            details,
            ..BackendStats::default()
        })
    }
}

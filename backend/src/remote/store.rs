//! The connection to an object store that instances open their databases through, and the
//! SlateDB settings (cache, compaction, garbage collection, filters) every database gets.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::ObjectStore;
use slatedb::admin::Admin;
use slatedb::config::{
    CompactorOptions, GarbageCollectorDirectoryOptions, GarbageCollectorOptions, Settings,
};
use slatedb::db_cache::{DbCache, SplitCache};
use slatedb::{BloomFilterPolicy, Db};
use slatedb_common::metrics::DefaultMetricsRecorder;

use super::cache::MeasuredCache;
use super::keys::{AppendOperator, ScopePrefixExtractor};
use super::{table_writes, ObjectStoreCheckpointStorage, RemoteConfig, Scheme};
use crate::error::Result;

/// Bloom filter bits per key (whole keys and scope prefixes): about 1% false positives, as
/// SlateDB's and RocksDB's defaults.
const BLOOM_BITS_PER_KEY: u32 = 10;

/// The longest pause between garbage collections of replaced tables.
const GC_MAX_INTERVAL: Duration = Duration::from_secs(60);

/// A connection to the object store a [`RemoteConfig`] names, with the block cache shared by
/// every instance opened through it. Cheap to clone.
#[derive(Clone)]
pub struct RemoteStore {
    pub(super) store: Arc<dyn ObjectStore>,
    root: Path,
    pub(super) describe: String,
    cache: Arc<dyn DbCache>,
    /// The two parts of `cache`, to measure them.
    pub(super) data_cache: Arc<MeasuredCache>,
    pub(super) meta_cache: Arc<MeasuredCache>,
    /// Bytes each database wrote as tables, counted on the way to `store`.
    pub(super) table_writes: table_writes::TableWriteCounts,
    pub(super) config: RemoteConfig,
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
    ///
    /// [`FaultyObjectStore`]: super::FaultyObjectStore
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

    pub(super) fn new_db_path(&self) -> (String, Path) {
        let name = uuid::Uuid::new_v4().to_string();
        let rel = format!("instances/{name}");
        (rel.clone(), self.path_of(&rel))
    }

    pub(super) fn path_of(&self, rel: &str) -> Path {
        let mut p = self.root.clone();
        for seg in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(seg);
        }
        p
    }

    pub(super) fn admin(&self, path: &Path) -> Admin {
        Admin::builder(path.clone(), Arc::clone(&self.store)).build()
    }

    /// How long a flush (a checkpoint's, or closing's) may take before it is an error.
    pub(super) fn flush_timeout(&self) -> Duration {
        Duration::from_secs(self.config.flush_timeout_secs)
    }

    fn replaced_tables_kept(&self) -> Duration {
        Duration::from_secs(self.config.replaced_tables_kept_secs)
    }

    /// What SlateDB's garbage collector deletes, and how often it looks.
    pub(super) fn gc_options(&self) -> GarbageCollectorOptions {
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
    pub(super) async fn open_db(
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
                    .with_prefix_extractor(Arc::new(ScopePrefixExtractor))
                    .with_whole_key_filtering(self.config.whole_key_filter),
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

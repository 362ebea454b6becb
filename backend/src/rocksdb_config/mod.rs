//! RocksDB configuration as plain data, usable without compiling RocksDB.
//!
//! [`RocksDbConfig`] holds the DB options, the column-family options applied to every
//! state's column family, overrides of both per state name ([`StateOptions`]), and the
//! block-based table options, each field named exactly as in a RocksDB `OPTIONS` file, each
//! `None` meaning "RocksDB's default". It is what the tuner produces and what a person
//! edits: it reads from TOML ([`RocksDbConfig::load`]; an option left out keeps its default,
//! and `default.toml` beside this file lists every option at the value a statekit backend
//! then runs with), reads from and writes to the `OPTIONS` INI format ([`options_file`]);
//! the RocksDB backend (feature `rocksdb`) applies it to `rocksdb::Options`.
//!
//! Named presets ([`Preset`]) are the baselines a tuner must beat.
//!
//! The memory budget is not part of this data: block cache and write buffer manager are
//! process-wide (the RocksDB backend's `RocksDbResources`), and the backend sets
//! `cache_index_and_filter_blocks`, `cache_index_and_filter_blocks_with_high_priority` and
//! `pin_l0_filter_and_index_blocks_in_cache` to true, `unpartitioned_pinning` to `kAll`, and
//! partitions index and filters (`index_type = kTwoLevelIndexSearch`, `partition_filters`)
//! before applying the config, so a config that sets them explicitly overrides them (and
//! leaves the budget's guarantee). How the budget is split is data here
//! ([`BackendOptions::write_buffer_ratio`]).

pub mod options_file;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config_file::{self, FieldError};
use crate::error::{Error, Result};

/// RocksDB options for a backend instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RocksDbConfig {
    /// `[DBOptions]`.
    pub db: DbOptions,
    /// `[CFOptions "default"]`, applied to the column family of every state.
    pub cf: CfOptions,
    /// `[TableOptions/BlockBasedTable "default"]`.
    pub table: TableOptions,
    /// How statekit uses RocksDB (`[backend]`; not RocksDB options, so not in `OPTIONS`
    /// files).
    pub backend: BackendOptions,
    /// Overrides per state name (`[states.<name>.cf]`, `[states.<name>.table]`): each state
    /// has its own access pattern. An option a state leaves unset takes the `cf` / `table`
    /// value above.
    pub states: BTreeMap<String, StateOptions>,
}

/// Options of one state's column family that differ from the config's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateOptions {
    /// Column-family options.
    pub cf: CfOptions,
    /// Block-based table options.
    pub table: TableOptions,
}

/// How the statekit backend uses RocksDB.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendOptions {
    /// A bounded range delete that covers at most this many stored keys is written as point
    /// deletes of those keys instead of a range tombstone; 0: always a tombstone. Default
    /// the RocksDB backend's `DEFAULT_POINT_DELETE_LIMIT`, whose
    /// documentation says when each is cheaper.
    pub point_delete_limit: Option<usize>,
    /// Share of the memory budget memtables may take (Flink's
    /// `state.backend.rocksdb.memory.write-buffer-ratio`); the rest is block cache. Default
    /// 0.5. Applies when the process's budget is built from this config.
    pub write_buffer_ratio: Option<f64>,
    /// Bytes per second that flushes and compactions may write (RocksDB's rate limiter, in
    /// auto-tuned mode: it adapts below this bound to the demand); `None`: unlimited. Not
    /// an `OPTIONS` file option.
    pub rate_limit_bytes_per_sec: Option<u64>,
    /// A scan's seek reads the blocks it misses in the cache from every level at once
    /// (RocksDB's `async_io`, on io_uring) instead of one level after the other: a scan of
    /// a scope spread over several levels waits for one disk read instead of several.
    /// Default true. Not an `OPTIONS` file option (a read option).
    pub async_io: Option<bool>,
    /// Threads that read the scopes an operator says it will read soon
    /// ([`StateRead::prefetch`](crate::StateRead::prefetch)) through the block cache while
    /// it works on earlier elements; 0: such hints are ignored. Unset:
    /// [`DEFAULT_PREFETCH_THREADS`] with direct reads, none without (see
    /// [`RocksDbConfig::prefetch_threads`]). Not an `OPTIONS` file option.
    pub prefetch_threads: Option<usize>,
}

/// DB-wide options (the `[DBOptions]` section).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbOptions {
    /// Background flush and compaction threads.
    pub max_background_jobs: Option<i32>,
    /// Parallel threads of one compaction job.
    pub max_subcompactions: Option<u32>,
    /// Table files kept open (-1: all).
    pub max_open_files: Option<i32>,
    /// fsync instead of fdatasync.
    pub use_fsync: Option<bool>,
    /// Verbosity of RocksDB's LOG file.
    pub info_log_level: Option<InfoLogLevel>,
    /// Seconds between statistics dumps to the LOG (0: never).
    pub stats_dump_period_sec: Option<u32>,
    /// LOG files kept.
    pub keep_log_file_num: Option<u64>,
    /// Size at which the LOG file rolls (0: never).
    pub max_log_file_size: Option<u64>,
    /// O_DIRECT for user reads: the page cache no longer holds state outside the budget.
    pub use_direct_reads: Option<bool>,
    /// O_DIRECT for flush and compaction I/O.
    pub use_direct_io_for_flush_and_compaction: Option<bool>,
    /// Readahead of compaction input (needed with direct I/O). Unset: RocksDB's 2 MiB, or
    /// with a memory budget [`budgeted_compaction_readahead`] of it.
    pub compaction_readahead_size: Option<u64>,
    /// Incremental sync of data files every this many bytes (0: off).
    pub bytes_per_sync: Option<u64>,
    /// Total size of WAL files before column families are flushed.
    pub max_total_wal_size: Option<u64>,
    /// Let one writer's memtable inserts run concurrently with others'.
    pub allow_concurrent_memtable_write: Option<bool>,
    /// Pipelined WAL and memtable writes.
    pub enable_pipelined_write: Option<bool>,
}

/// Column-family options (the `[CFOptions "default"]` section).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CfOptions {
    /// Size of one memtable.
    pub write_buffer_size: Option<u64>,
    /// Memtables (active and immutable) before writes stall.
    pub max_write_buffer_number: Option<i32>,
    /// Immutable memtables merged into one L0 file.
    pub min_write_buffer_number_to_merge: Option<i32>,
    /// Compaction style.
    pub compaction_style: Option<CompactionStyle>,
    /// Number of levels.
    pub num_levels: Option<i32>,
    /// L0 files that trigger an L0 compaction.
    pub level0_file_num_compaction_trigger: Option<i32>,
    /// L0 files at which writes slow down.
    pub level0_slowdown_writes_trigger: Option<i32>,
    /// L0 files at which writes stop.
    pub level0_stop_writes_trigger: Option<i32>,
    /// Target size of an L1 file.
    pub target_file_size_base: Option<u64>,
    /// Growth of the target file size per level.
    pub target_file_size_multiplier: Option<i32>,
    /// Size of L1.
    pub max_bytes_for_level_base: Option<u64>,
    /// Growth of level size per level.
    pub max_bytes_for_level_multiplier: Option<f64>,
    /// Size levels from the last one up (less space amplification).
    pub level_compaction_dynamic_level_bytes: Option<bool>,
    /// Largest compaction input.
    pub max_compaction_bytes: Option<u64>,
    /// Pending compaction bytes at which writes slow down.
    pub soft_pending_compaction_bytes_limit: Option<u64>,
    /// Pending compaction bytes at which writes stop.
    pub hard_pending_compaction_bytes_limit: Option<u64>,
    /// Compression of all levels (unless `compression_per_level` is set).
    pub compression: Option<Compression>,
    /// Compression of the last level.
    pub bottommost_compression: Option<Compression>,
    /// Compression per level, L0 first.
    pub compression_per_level: Option<Vec<Compression>>,
    /// No filters on the last level (for workloads whose reads mostly hit).
    pub optimize_filters_for_hits: Option<bool>,
    /// Disable background compactions.
    pub disable_auto_compactions: Option<bool>,
    /// Range tombstones a memtable holds before it is flushed (0: no limit): reads merge
    /// every tombstone in the memtable over their range. Unset: the backend's
    /// `DEFAULT_MEMTABLE_MAX_RANGE_DELETIONS` (1000).
    pub memtable_max_range_deletions: Option<u32>,
    /// Size of a memtable's prefix Bloom filter as a share of `write_buffer_size` (0: none,
    /// RocksDB's default; at most 0.25), over the prefixes of the state's prefix extractor
    /// (`scope_prefix_filter`): a scan of a scope the memtable lacks then skips its skip-list
    /// seek. Allocated whole in the memtable's arena when the memtable is created, so a
    /// share of `write_buffer_size` per memtable of every state, counted with the memtables
    /// even while they are nearly empty: at small budgets it can outgrow them. On ad-click's
    /// 3.7M-event stream at 256 MiB (page cache), 0.05 made the runs 1.09x faster (twice,
    /// alternated); not on by default, as at an 8 MiB budget it took the memtables to 17.6 MiB.
    pub memtable_prefix_bloom_size_ratio: Option<f64>,
    /// The memtable as a hash of small skip lists, one per bucket of scopes (RocksDB's
    /// `HashSkipList`, over the scope prefix of `scope_prefix_filter`), with this many
    /// buckets; `0` or unset: one skip list (RocksDB's default). An insert then searches a
    /// list of its scope's few entries instead of one list of the whole memtable (on
    /// ad-click's displays at 256 MiB, 4.7-5.2 -> 2.8-3.2 us a merge: a large list costs a
    /// cache miss per level). The cost: a read that leaves its scope (a reverse scan, a
    /// whole-state scan) and every flush first copy the memtable's entries into one sorted
    /// list, outside the memtable's accounted memory (peak RSS 10-25 MiB higher there, with
    /// 63 MiB memtables). With the memtable capped so that copy stays small (32 MiB here),
    /// whole runs were 1.28x and 1.56x as fast with direct I/O and within the noise with the
    /// page cache; so only for states read forward within scopes (the tuner's rule). Ignored
    /// for timer queues (they
    /// have no scope prefix). Needs `db.allow_concurrent_memtable_write = false` (one
    /// writer at a time).
    pub hash_skiplist_buckets: Option<u64>,
    /// Seconds after which a file's data is compacted down whatever the level sizes say
    /// (0: never), so expired or deleted entries are dropped.
    pub ttl: Option<u64>,
    /// Seconds after which a file is recompacted (0: never): compaction filters (statekit's
    /// TTL filter of value, reducing and aggregating states) see every entry this often.
    pub periodic_compaction_seconds: Option<u64>,
    /// Values of at least `min_blob_size` bytes go to blob files (BlobDB): compaction then
    /// moves only references.
    pub enable_blob_files: Option<bool>,
    /// Smallest value stored in a blob file.
    pub min_blob_size: Option<u64>,
    /// Size of a blob file.
    pub blob_file_size: Option<u64>,
    /// Compression of blob files.
    pub blob_compression_type: Option<Compression>,
    /// Relocate live blobs out of old blob files during compaction.
    pub enable_blob_garbage_collection: Option<bool>,
    /// statekit's prefix extractor: the prefix of an entry key is its scope (key group, key,
    /// namespace), so filters hold scopes, and a scan of a scope or a point read skips every
    /// file without it. On (unset) for key/value states: their filters are then prefix
    /// Bloom filters of [`DEFAULT_SCOPE_FILTER_BITS`] bits per key unless
    /// `bloom_filter_bits_per_key` says otherwise, without whole keys unless
    /// `whole_key_filtering` says so. `false` (every preset): no extractor, filters of
    /// whole keys only. An `OPTIONS` file cannot load a statekit extractor, so it is not
    /// written there; RocksDB's own files show it as `prefix_extractor=statekit.scope`.
    pub scope_prefix_filter: Option<bool>,
    /// Compact a file once a sliding window of its entries holds many deletions (RocksDB's
    /// `CompactOnDeletionCollector`). Not an `OPTIONS` file option: RocksDB does not write
    /// table-property collectors there.
    pub compact_on_deletion: Option<DeletionTriggeredCompaction>,
}

/// The name of statekit's scope prefix extractor ([`CfOptions::scope_prefix_filter`]), as
/// RocksDB records it in table properties and `OPTIONS` files.
pub const SCOPE_EXTRACTOR_NAME: &str = "statekit.scope";

/// Bits per key of the prefix Bloom filters of [`CfOptions::scope_prefix_filter`] when no
/// filter is configured: 1% false positives. Prefixes are scopes, so the filter holds one
/// entry per scope and file (fewer than the entries when scopes hold many).
pub const DEFAULT_SCOPE_FILTER_BITS: f64 = 10.0;

/// Prefetch threads of a DB that reads with direct I/O, unless the config says otherwise
/// ([`RocksDbConfig::prefetch_threads`]). A prefetch waits for the disk, not the CPU: two
/// threads keep two scopes' reads in flight while the operator works, and a queue holds the
/// rest.
pub const DEFAULT_PREFETCH_THREADS: usize = 2;

/// Most prefetch threads a config may ask for: they wait for the disk, and more than a
/// disk's queue could serve would only cost memory.
pub const MAX_PREFETCH_THREADS: usize = 64;

/// Flink's default share of the memory budget for memtables
/// (`state.backend.rocksdb.memory.write-buffer-ratio`).
pub const DEFAULT_WRITE_BUFFER_RATIO: f64 = 0.5;

/// The compaction readahead a backend with a memory budget of `budget_bytes` runs with when
/// its configuration leaves `compaction_readahead_size` unset: `budget / 512`, a multiple of
/// 4 KiB between 256 KiB and RocksDB's default of 2 MiB.
///
/// Every input file of a running compaction holds a readahead buffer of this size outside
/// the block cache, and an L0 compaction reads every L0 file at once: up to
/// `level0_slowdown_writes_trigger` (20) of them plus one per lower level, about 26 buffers.
/// At `budget / 512` they take at most 5% of the budget, half of the 10% allowed beyond it;
/// RocksDB's 2 MiB would take 52 MiB, 20% of a 256 MiB budget (a large ad-click run at
/// 256 MiB peaked 3.4 MiB over its allowance during such a compaction). The floor keeps
/// reads long enough to stay sequential on a disk.
pub fn budgeted_compaction_readahead(budget_bytes: u64) -> u64 {
    const FLOOR: u64 = 256 << 10;
    const CEILING: u64 = 2 << 20;
    (budget_bytes / 512 / 4096 * 4096).clamp(FLOOR, CEILING)
}

/// When RocksDB's `CompactOnDeletionCollector` marks a file for compaction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionTriggeredCompaction {
    /// Entries in the sliding window.
    pub window_size: usize,
    /// Deletions within one window that mark the file.
    pub deletion_trigger: usize,
    /// Or: deletions over all entries of the file at least this ratio (0: off).
    pub deletion_ratio: f64,
}

/// Block-based table options (the `[TableOptions/BlockBasedTable "default"]` section).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableOptions {
    /// Uncompressed size of a data block.
    pub block_size: Option<u64>,
    /// Size of a partition of partitioned indexes and filters.
    pub metadata_block_size: Option<u64>,
    /// Index and filter blocks live in the block cache (and count against the budget).
    pub cache_index_and_filter_blocks: Option<bool>,
    /// ... in its high-priority pool.
    pub cache_index_and_filter_blocks_with_high_priority: Option<bool>,
    /// L0 index and filter blocks stay pinned in the cache.
    pub pin_l0_filter_and_index_blocks_in_cache: Option<bool>,
    /// The top level of partitioned indexes and filters stays pinned.
    pub pin_top_level_index_and_filter: Option<bool>,
    /// Which tables keep their whole (unpartitioned) index and filter blocks pinned in the
    /// cache (`metadata_cache_options.unpartitioned_pinning`). `kAll` keeps RocksDB from
    /// re-reading index blocks to estimate range tombstone sizes at every flush and
    /// compaction; the pinned blocks count against the budget and grow with the state.
    pub unpartitioned_pinning: Option<PinningTier>,
    /// Index structure.
    pub index_type: Option<IndexType>,
    /// Partition filters (with `kTwoLevelIndexSearch`).
    pub partition_filters: Option<bool>,
    /// SST format version.
    pub format_version: Option<i32>,
    /// Keys between restart points in a data block.
    pub block_restart_interval: Option<i32>,
    /// Filters hold whole keys.
    pub whole_key_filtering: Option<bool>,
    /// Size filter blocks to the allocator.
    pub optimize_filters_for_memory: Option<bool>,
    /// A Bloom filter with this many bits per key (`filter_policy=bloomfilter:N:false` in
    /// an OPTIONS file); `None`: no filter.
    pub bloom_filter_bits_per_key: Option<f64>,
}

/// Compression algorithms compiled into this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// None.
    #[serde(rename = "kNoCompression")]
    None,
    /// Snappy.
    #[serde(rename = "kSnappyCompression")]
    Snappy,
    /// LZ4.
    #[serde(rename = "kLZ4Compression")]
    Lz4,
    /// LZ4HC.
    #[serde(rename = "kLZ4HCCompression")]
    Lz4hc,
    /// Zstandard.
    #[serde(rename = "kZSTD")]
    Zstd,
}

/// Compaction styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompactionStyle {
    /// Leveled compaction.
    #[serde(rename = "kCompactionStyleLevel")]
    Level,
    /// Universal (tiered) compaction.
    #[serde(rename = "kCompactionStyleUniversal")]
    Universal,
    /// FIFO compaction.
    #[serde(rename = "kCompactionStyleFIFO")]
    Fifo,
}

/// LOG verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum InfoLogLevel {
    #[serde(rename = "DEBUG_LEVEL")]
    Debug,
    #[serde(rename = "INFO_LEVEL")]
    Info,
    #[serde(rename = "WARN_LEVEL")]
    Warn,
    #[serde(rename = "ERROR_LEVEL")]
    Error,
    #[serde(rename = "FATAL_LEVEL")]
    Fatal,
    #[serde(rename = "HEADER_LEVEL")]
    Header,
}

/// Index structures of block-based tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndexType {
    /// One binary-searched index block per file.
    #[serde(rename = "kBinarySearch")]
    BinarySearch,
    /// Hash index (needs a prefix extractor).
    #[serde(rename = "kHashSearch")]
    HashSearch,
    /// Partitioned index.
    #[serde(rename = "kTwoLevelIndexSearch")]
    TwoLevelIndexSearch,
}

/// Which tables' metadata blocks stay pinned in the block cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinningTier {
    /// As the older `pin_*` options say.
    #[serde(rename = "kFallback")]
    Fallback,
    /// None.
    #[serde(rename = "kNone")]
    None,
    /// Tables written by flush and similarly small, hot ones.
    #[serde(rename = "kFlushedAndSimilar")]
    FlushedAndSimilar,
    /// All tables.
    #[serde(rename = "kAll")]
    All,
}

/// The named baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// RocksDB's own defaults (within the budget's memory model).
    RocksdbDefaults,
    /// Flink's `PredefinedOptions.DEFAULT`.
    FlinkDefault,
    /// Flink's `PredefinedOptions.SPINNING_DISK_OPTIMIZED`.
    FlinkSpinningDiskOptimized,
    /// Flink's `PredefinedOptions.SPINNING_DISK_OPTIMIZED_HIGH_MEM`.
    FlinkSpinningDiskOptimizedHighMem,
    /// Flink's `PredefinedOptions.FLASH_SSD_OPTIMIZED`.
    FlinkFlashSsdOptimized,
    /// RocksDB's `OptimizeLevelStyleCompaction(memtable_memory_budget)`.
    OptimizeLevelStyleCompaction {
        /// The memtable memory budget in bytes.
        memtable_memory_budget: u64,
    },
}

impl Preset {
    /// Every preset, with a 512 MiB budget for the one that takes a budget.
    pub fn all() -> Vec<Preset> {
        vec![
            Preset::RocksdbDefaults,
            Preset::FlinkDefault,
            Preset::FlinkSpinningDiskOptimized,
            Preset::FlinkSpinningDiskOptimizedHighMem,
            Preset::FlinkFlashSsdOptimized,
            Preset::OptimizeLevelStyleCompaction {
                memtable_memory_budget: 512 << 20,
            },
        ]
    }
}

const MIB: u64 = 1 << 20;

/// RocksDB's option naming the memtable representation.
pub(crate) const MEMTABLE_FACTORY: &str = "memtable_factory";

/// Most buckets a hash memtable may have: 8 bytes each, allocated whole in every memtable.
pub const MAX_HASH_SKIPLIST_BUCKETS: u64 = 1 << 24;

/// `memtable_factory`'s value for a hash of skip lists with `buckets` buckets (RocksDB's
/// `NewHashSkipListRepFactory` defaults for the lists' height and branching).
pub(crate) fn hash_skiplist_factory(buckets: u64) -> String {
    format!(
        "{{id=HashSkipListRepFactory;bucket_count={buckets};skiplist_height=4;branching_factor=4}}"
    )
}

impl CfOptions {
    /// The options RocksDB's C API has no setter for, as name and value: the backend sets
    /// them through RocksDB's options-string parser.
    pub fn string_options(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(v) = self.memtable_max_range_deletions {
            out.push(("memtable_max_range_deletions", v.to_string()));
        }
        if let Some(n) = self.hash_skiplist_buckets.filter(|n| *n > 0) {
            out.push((MEMTABLE_FACTORY, hash_skiplist_factory(n)));
        }
        out
    }

    /// The memtable arena block RocksDB derives from `write_buffer_size` (its default,
    /// 64 MiB, when unset): an eighth of it, at most 1 MiB, rounded up to 4 KiB. Every column
    /// family that is written holds at least one.
    pub fn arena_block_size(&self) -> u64 {
        let write_buffer = self.write_buffer_size.unwrap_or(64 << 20);
        (write_buffer / 8).min(1 << 20).div_ceil(4096) * 4096
    }
}

impl RocksDbConfig {
    /// The prefetch threads a backend with this config runs: `backend.prefetch_threads` if
    /// set, else [`DEFAULT_PREFETCH_THREADS`] when it reads with direct I/O
    /// (`db.use_direct_reads`) and none when it reads through the page cache. There a read
    /// of recent state is a memory copy, and a prefetch repeats the scan's work on a thread
    /// that competes with the operator: on ad-click's 3.7M-event stream at 256 MiB on 2
    /// cores, prefetching made the page-cache runs 0.80x as fast (a prefetch hint cost the
    /// operator 34 us, mostly the woken thread taking its core) where it made the direct
    /// I/O runs 1.2-1.3x as fast.
    pub fn prefetch_threads(&self) -> usize {
        self.backend
            .prefetch_threads
            .unwrap_or(if self.db.use_direct_reads == Some(true) {
                DEFAULT_PREFETCH_THREADS
            } else {
                0
            })
    }

    /// The configuration of a named preset. Every preset keeps whole (unpartitioned) index
    /// and filter blocks and unbounded range tombstones in memtables, as RocksDB and Flink do
    /// by default, rather than statekit's partitioned ones and bound, and scans that read one
    /// level after the other (Flink's iterators do not set `async_io`) and no prefetching
    /// (Flink's RocksDB backend reads state when an element needs it): they are the
    /// baselines people run today.
    pub fn preset(preset: Preset) -> Self {
        let mut config = Self::preset_options(preset);
        config
            .table
            .index_type
            .get_or_insert(IndexType::BinarySearch);
        config.table.partition_filters.get_or_insert(false);
        config.cf.memtable_max_range_deletions.get_or_insert(0);
        config.cf.scope_prefix_filter.get_or_insert(false);
        config.backend.async_io.get_or_insert(false);
        config.backend.prefetch_threads.get_or_insert(0);
        config
    }

    fn preset_options(preset: Preset) -> Self {
        // Every Flink preset turns off fsync (state is made durable by checkpoints, not by the
        // local disk), quiets the LOG and stops statistics dumps into it.
        let flink_db = |parallelism: Option<i32>, max_open_files: Option<i32>| DbOptions {
            // Flink calls setIncreaseParallelism(4), which sets max_background_jobs (the thread
            // pools follow it since RocksDB 6).
            max_background_jobs: parallelism,
            max_open_files,
            use_fsync: Some(false),
            info_log_level: Some(InfoLogLevel::Header),
            stats_dump_period_sec: Some(0),
            ..DbOptions::default()
        };
        match preset {
            Preset::RocksdbDefaults => RocksDbConfig::default(),
            Preset::FlinkDefault => RocksDbConfig {
                db: flink_db(None, None),
                ..RocksDbConfig::default()
            },
            Preset::FlinkSpinningDiskOptimized => RocksDbConfig {
                db: flink_db(Some(4), Some(-1)),
                cf: CfOptions {
                    compaction_style: Some(CompactionStyle::Level),
                    level_compaction_dynamic_level_bytes: Some(true),
                    ..CfOptions::default()
                },
                ..RocksDbConfig::default()
            },
            Preset::FlinkSpinningDiskOptimizedHighMem => RocksDbConfig {
                db: flink_db(Some(4), Some(-1)),
                cf: CfOptions {
                    compaction_style: Some(CompactionStyle::Level),
                    level_compaction_dynamic_level_bytes: Some(true),
                    target_file_size_base: Some(256 * MIB),
                    // Flink: 4 x target file size.
                    max_bytes_for_level_base: Some(1024 * MIB),
                    write_buffer_size: Some(64 * MIB),
                    min_write_buffer_number_to_merge: Some(3),
                    max_write_buffer_number: Some(4),
                    ..CfOptions::default()
                },
                table: TableOptions {
                    // Flink also sets a 256 MiB block cache per column family; here the cache
                    // is the shared, budgeted one.
                    block_size: Some(128 << 10),
                    // Flink's `new BloomFilter()`: 10 bits per key.
                    bloom_filter_bits_per_key: Some(10.0),
                    ..TableOptions::default()
                },
                ..RocksDbConfig::default()
            },
            Preset::FlinkFlashSsdOptimized => RocksDbConfig {
                db: flink_db(Some(4), Some(-1)),
                ..RocksDbConfig::default()
            },
            Preset::OptimizeLevelStyleCompaction {
                memtable_memory_budget: budget,
            } => {
                // The numbers and reasons of RocksDB's ColumnFamilyOptions::
                // OptimizeLevelStyleCompaction, as data.
                let mut per_level = vec![Compression::None; 2];
                // Only levels >= 2 are compressed (LZ4 is compiled in).
                per_level.extend([Compression::Lz4; 5]);
                RocksDbConfig {
                    cf: CfOptions {
                        // Four memtables make up the budget.
                        write_buffer_size: Some(budget / 4),
                        // Two memtables are merged per flush to L0.
                        min_write_buffer_number_to_merge: Some(2),
                        // Up to 50% extra memory in the worst case, fewer write stalls.
                        max_write_buffer_number: Some(6),
                        // Each L0 file is about budget/2: compact L0 once it holds the budget.
                        level0_file_num_compaction_trigger: Some(2),
                        // Not too many files.
                        target_file_size_base: Some(budget / 8),
                        // L1 as large as L0, so L0->L1 compactions are quick.
                        max_bytes_for_level_base: Some(budget),
                        compaction_style: Some(CompactionStyle::Level),
                        compression_per_level: Some(per_level),
                        ..CfOptions::default()
                    },
                    ..RocksDbConfig::default()
                }
            }
        }
    }

    /// Parses and validates `text`, the contents of the TOML file `path` (named in errors).
    /// Every omitted option keeps its default (`default.toml` beside this file lists them).
    ///
    /// # Errors
    /// `InvalidArgument` naming the file, line, column and field of a syntax error, an
    /// unknown key, a value of the wrong type or a value out of range.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let config: RocksDbConfig = config_file::parse(path, text)?;
        config.check().map_err(|e| e.at(path, text))?;
        Ok(config)
    }

    /// Reads and validates the TOML file at `path`.
    ///
    /// # Errors
    /// As [`RocksDbConfig::parse`], or an I/O error naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::parse(path, &config_file::read(path)?)
    }

    /// Renders the configuration as TOML.
    ///
    /// # Errors
    /// `Internal` if serialization fails (it cannot for this type).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| Error::new(crate::ErrorKind::Internal, format!("config to TOML: {e}")))
    }

    /// Checks value ranges RocksDB would reject or misbehave with.
    ///
    /// # Errors
    /// `InvalidArgument` naming the key.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(Error::from)
    }

    /// What [`RocksDbConfig::validate`] checks, with the field each error concerns.
    fn check(&self) -> std::result::Result<(), FieldError> {
        check_cf("cf", &self.cf)?;
        check_table("table", &self.table)?;
        for (name, state) in &self.states {
            if name.is_empty() {
                return Err(FieldError::new("states", "a state name must not be empty"));
            }
            check_cf(&format!("states.{name}.cf"), &state.cf)?;
            check_table(&format!("states.{name}.table"), &state.table)?;
        }
        self.check_hash_memtables()?;
        if matches!(self.db.max_background_jobs, Some(n) if n < 1) {
            return Err(FieldError::new(
                "db.max_background_jobs",
                "must be at least 1",
            ));
        }
        if matches!(self.backend.write_buffer_ratio, Some(r) if !(r > 0.0 && r < 1.0)) {
            return Err(FieldError::new(
                "backend.write_buffer_ratio",
                "must be in (0, 1)",
            ));
        }
        if self.backend.rate_limit_bytes_per_sec == Some(0) {
            return Err(FieldError::new(
                "backend.rate_limit_bytes_per_sec",
                "must be greater than 0 (leave it out for no limit)",
            ));
        }
        if matches!(self.backend.prefetch_threads, Some(n) if n > MAX_PREFETCH_THREADS) {
            return Err(FieldError::new(
                "backend.prefetch_threads",
                format!("must be at most {MAX_PREFETCH_THREADS}"),
            ));
        }
        Ok(())
    }

    /// A hash memtable needs the scope prefix it hashes and one writer at a time.
    fn check_hash_memtables(&self) -> std::result::Result<(), FieldError> {
        let states = self
            .states
            .keys()
            .map(|name| (format!("states.{name}.cf"), self.for_state(name).0));
        for (prefix, cf) in std::iter::once(("cf".to_string(), self.cf.clone())).chain(states) {
            if cf.hash_skiplist_buckets.unwrap_or(0) == 0 {
                continue;
            }
            if cf.scope_prefix_filter == Some(false) {
                return Err(FieldError::new(
                    format!("{prefix}.hash_skiplist_buckets"),
                    "a hash memtable hashes scopes: it needs scope_prefix_filter (not false)",
                ));
            }
            if self.db.allow_concurrent_memtable_write != Some(false) {
                return Err(FieldError::new(
                    "db.allow_concurrent_memtable_write",
                    format!(
                        "must be false when {prefix}.hash_skiplist_buckets is set: RocksDB's \
                         hash memtables take one writer at a time"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The column-family and table options of state `name`: its overrides over the defaults.
    pub fn for_state(&self, name: &str) -> (CfOptions, TableOptions) {
        match self.states.get(name) {
            None => (self.cf.clone(), self.table.clone()),
            Some(state) => (
                overlay(&self.cf, &state.cf),
                overlay(&self.table, &state.table),
            ),
        }
    }
}

/// `over`'s set options on top of `base`'s.
fn overlay<T: Serialize + serde::de::DeserializeOwned + Clone>(base: &T, over: &T) -> T {
    let (Ok(serde_json::Value::Object(mut merged)), Ok(serde_json::Value::Object(top))) =
        (serde_json::to_value(base), serde_json::to_value(over))
    else {
        return base.clone();
    };
    for (key, value) in top {
        if !value.is_null() {
            merged.insert(key, value);
        }
    }
    serde_json::from_value(serde_json::Value::Object(merged)).unwrap_or_else(|_| base.clone())
}

/// `full` without the options whose value equals `base`'s: what a state overrides.
pub(crate) fn difference<T: Serialize + serde::de::DeserializeOwned + Default>(
    base: &T,
    full: &T,
) -> T {
    let (Ok(serde_json::Value::Object(base)), Ok(serde_json::Value::Object(full))) =
        (serde_json::to_value(base), serde_json::to_value(full))
    else {
        return T::default();
    };
    let kept = full
        .into_iter()
        .filter(|(key, value)| !value.is_null() && base.get(key) != Some(value))
        .collect();
    serde_json::from_value(serde_json::Value::Object(kept)).unwrap_or_default()
}

fn check_cf(prefix: &str, cf: &CfOptions) -> std::result::Result<(), FieldError> {
    let field = |name: &str| format!("{prefix}.{name}");
    let positive = |name: &str, v: Option<u64>| match v {
        Some(0) => Err(FieldError::new(field(name), "must be greater than 0")),
        _ => Ok(()),
    };
    positive("write_buffer_size", cf.write_buffer_size)?;
    positive("target_file_size_base", cf.target_file_size_base)?;
    positive("max_bytes_for_level_base", cf.max_bytes_for_level_base)?;
    positive("blob_file_size", cf.blob_file_size)?;
    if matches!(cf.max_write_buffer_number, Some(n) if n < 2) {
        return Err(FieldError::new(
            field("max_write_buffer_number"),
            "must be at least 2",
        ));
    }
    if matches!(cf.min_write_buffer_number_to_merge, Some(n) if n < 1) {
        return Err(FieldError::new(
            field("min_write_buffer_number_to_merge"),
            "must be at least 1",
        ));
    }
    if matches!(cf.num_levels, Some(n) if !(1..=64).contains(&n)) {
        return Err(FieldError::new(field("num_levels"), "must be in 1..=64"));
    }
    if matches!(cf.memtable_prefix_bloom_size_ratio, Some(r) if !(0.0..=0.25).contains(&r)) {
        return Err(FieldError::new(
            field("memtable_prefix_bloom_size_ratio"),
            "must be in 0..=0.25",
        ));
    }
    if matches!(cf.hash_skiplist_buckets, Some(n) if n > MAX_HASH_SKIPLIST_BUCKETS) {
        return Err(FieldError::new(
            field("hash_skiplist_buckets"),
            format!("must be at most {MAX_HASH_SKIPLIST_BUCKETS} (8 bytes each, per memtable)"),
        ));
    }
    if matches!(cf.max_bytes_for_level_multiplier, Some(m) if !(m > 0.0 && m.is_finite())) {
        return Err(FieldError::new(
            field("max_bytes_for_level_multiplier"),
            "must be positive",
        ));
    }
    if let (Some(l0), Some(slowdown)) = (
        cf.level0_file_num_compaction_trigger,
        cf.level0_slowdown_writes_trigger,
    ) {
        if slowdown < l0 {
            return Err(FieldError::new(
                field("level0_slowdown_writes_trigger"),
                format!("{slowdown} is below level0_file_num_compaction_trigger = {l0}"),
            ));
        }
    }
    if let Some(d) = cf.compact_on_deletion {
        if d.window_size == 0 || d.deletion_trigger > d.window_size {
            return Err(FieldError::new(
                field("compact_on_deletion"),
                "window_size must be positive and at least deletion_trigger",
            ));
        }
        if !(0.0..=1.0).contains(&d.deletion_ratio) {
            return Err(FieldError::new(
                field("compact_on_deletion.deletion_ratio"),
                "must be in 0..=1",
            ));
        }
    }
    Ok(())
}

fn check_table(prefix: &str, table: &TableOptions) -> std::result::Result<(), FieldError> {
    if table.block_size == Some(0) {
        return Err(FieldError::new(
            format!("{prefix}.block_size"),
            "must be greater than 0",
        ));
    }
    if matches!(table.bloom_filter_bits_per_key, Some(b) if !(0.0..=100.0).contains(&b)) {
        return Err(FieldError::new(
            format!("{prefix}.bloom_filter_bits_per_key"),
            "must be in 0..=100",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_readahead_is_a_512th_of_the_budget_within_bounds() {
        assert_eq!(budgeted_compaction_readahead(64 << 20), 256 << 10);
        assert_eq!(budgeted_compaction_readahead(128 << 20), 256 << 10);
        assert_eq!(budgeted_compaction_readahead(256 << 20), 512 << 10);
        assert_eq!(budgeted_compaction_readahead(300 << 20), 600 << 10);
        assert_eq!(budgeted_compaction_readahead(1 << 30), 2 << 20);
        assert_eq!(budgeted_compaction_readahead(64 << 30), 2 << 20);
        // A multiple of 4 KiB, as direct I/O wants.
        assert_eq!(budgeted_compaction_readahead((300 << 20) + 12345) % 4096, 0);
    }

    #[test]
    fn prefetch_threads_default_to_two_with_direct_reads_only() {
        let mut config = RocksDbConfig::default();
        assert_eq!(config.prefetch_threads(), 0);
        config.db.use_direct_reads = Some(true);
        assert_eq!(config.prefetch_threads(), DEFAULT_PREFETCH_THREADS);
        config.backend.prefetch_threads = Some(0);
        assert_eq!(config.prefetch_threads(), 0);
        config.db.use_direct_reads = Some(false);
        config.backend.prefetch_threads = Some(3);
        assert_eq!(config.prefetch_threads(), 3);
        for preset in Preset::all() {
            let mut preset = RocksDbConfig::preset(preset);
            preset.db.use_direct_reads = Some(true);
            assert_eq!(preset.prefetch_threads(), 0);
        }
        let err = parse("[backend]\nprefetch_threads = 65\n", "p.toml").unwrap_err();
        assert!(
            err.to_string().contains("backend.prefetch_threads"),
            "{err}"
        );
    }

    fn parse(text: &str, file: &str) -> Result<RocksDbConfig> {
        RocksDbConfig::parse(Path::new(file), text)
    }

    #[test]
    fn toml_round_trip_and_errors_name_file_line_and_key() {
        for preset in Preset::all() {
            let config = RocksDbConfig::preset(preset);
            let text = config.to_toml().unwrap();
            assert_eq!(parse(&text, "t.toml").unwrap(), config, "{text}");
        }
        let msg = parse(
            "[cf]\nwrite_buffer_size = 1\n\nwrite_bufer = 3\n",
            "job.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("job.toml:4:1: field `cf.write_bufer`"),
            "{msg}"
        );
        let msg = parse("[cf]\ncompression = \"kFoo\"\n", "j.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("j.toml:2:15: field `cf.compression`") && msg.contains("kFoo"),
            "{msg}"
        );
        let msg = parse("[cf]\nwrite_buffer_size = 0\n", "j.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("j.toml:2:21: field `cf.write_buffer_size`: must be greater than 0"),
            "{msg}"
        );
    }

    #[test]
    fn a_minimal_file_keeps_every_other_default() {
        assert_eq!(parse("", "empty.toml").unwrap(), RocksDbConfig::default());
        let c = parse("[cf]\nwrite_buffer_size = 33554432\n", "m.toml").unwrap();
        assert_eq!(
            c,
            RocksDbConfig {
                cf: CfOptions {
                    write_buffer_size: Some(32 << 20),
                    ..CfOptions::default()
                },
                ..RocksDbConfig::default()
            }
        );
    }
}

//! Applying [`RocksDbConfig`] (plain data, `crate::rocksdb_config`) to `rocksdb::Options`.

use ::rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, BlockBasedTablePinningTier, DBCompactionStyle,
    DBCompressionType, LogLevel, Options,
};

use crate::rocksdb_config::{
    CfOptions, CompactionStyle, Compression, IndexType, InfoLogLevel, PinningTier, RocksDbConfig,
    TableOptions,
};

/// The rate limiter's refill period and fairness: RocksDB's defaults.
const RATE_LIMIT_REFILL_MICROS: i64 = 100_000;
const RATE_LIMIT_FAIRNESS: i32 = 10;

impl RocksDbConfig {
    /// Applies the DB options.
    pub fn apply_db(&self, opts: &mut Options) {
        let d = &self.db;
        if let Some(v) = d.max_background_jobs {
            opts.set_max_background_jobs(v);
        }
        if let Some(v) = d.max_subcompactions {
            opts.set_max_subcompactions(v);
        }
        if let Some(v) = d.max_open_files {
            opts.set_max_open_files(v);
        }
        if let Some(v) = d.use_fsync {
            opts.set_use_fsync(v);
        }
        if let Some(v) = d.info_log_level {
            opts.set_log_level(match v {
                InfoLogLevel::Debug => LogLevel::Debug,
                InfoLogLevel::Info => LogLevel::Info,
                InfoLogLevel::Warn => LogLevel::Warn,
                InfoLogLevel::Error => LogLevel::Error,
                InfoLogLevel::Fatal => LogLevel::Fatal,
                InfoLogLevel::Header => LogLevel::Header,
            });
        }
        if let Some(v) = d.stats_dump_period_sec {
            opts.set_stats_dump_period_sec(v);
        }
        if let Some(v) = d.keep_log_file_num {
            opts.set_keep_log_file_num(v as usize);
        }
        if let Some(v) = d.max_log_file_size {
            opts.set_max_log_file_size(v as usize);
        }
        if let Some(v) = d.use_direct_reads {
            opts.set_use_direct_reads(v);
        }
        if let Some(v) = d.use_direct_io_for_flush_and_compaction {
            opts.set_use_direct_io_for_flush_and_compaction(v);
        }
        if let Some(v) = d.compaction_readahead_size {
            opts.set_compaction_readahead_size(v as usize);
        }
        if let Some(v) = d.bytes_per_sync {
            opts.set_bytes_per_sync(v);
        }
        if let Some(v) = d.max_total_wal_size {
            opts.set_max_total_wal_size(v);
        }
        if let Some(v) = d.allow_concurrent_memtable_write {
            opts.set_allow_concurrent_memtable_write(v);
        }
        if let Some(v) = d.enable_pipelined_write {
            opts.set_enable_pipelined_write(v);
        }
        if let Some(rate) = self.backend.rate_limit_bytes_per_sec {
            opts.set_auto_tuned_ratelimiter(
                i64::try_from(rate).unwrap_or(i64::MAX),
                RATE_LIMIT_REFILL_MICROS,
                RATE_LIMIT_FAIRNESS,
            );
        }
    }

    /// Applies the column-family and table options of state `name` (its overrides over the
    /// defaults) to `opts` and `table`; the caller installs `table` afterwards (it also
    /// carries the shared cache). `memtable_max_range_deletions` has no setter in RocksDB's C
    /// API: the backend sets it through the options string ([`CfOptions::string_options`]).
    pub fn apply_state(&self, name: &str, opts: &mut Options, table: &mut BlockBasedOptions) {
        let (cf, t) = self.for_state(name);
        apply_cf(&cf, opts);
        apply_table(&t, table);
    }
}

fn apply_cf(c: &CfOptions, opts: &mut Options) {
    if let Some(v) = c.write_buffer_size {
        opts.set_write_buffer_size(v as usize);
    }
    if let Some(v) = c.max_write_buffer_number {
        opts.set_max_write_buffer_number(v);
    }
    if let Some(v) = c.min_write_buffer_number_to_merge {
        opts.set_min_write_buffer_number_to_merge(v);
    }
    if let Some(v) = c.compaction_style {
        opts.set_compaction_style(match v {
            CompactionStyle::Level => DBCompactionStyle::Level,
            CompactionStyle::Universal => DBCompactionStyle::Universal,
            CompactionStyle::Fifo => DBCompactionStyle::Fifo,
        });
    }
    if let Some(v) = c.num_levels {
        opts.set_num_levels(v);
    }
    if let Some(v) = c.level0_file_num_compaction_trigger {
        opts.set_level_zero_file_num_compaction_trigger(v);
    }
    if let Some(v) = c.level0_slowdown_writes_trigger {
        opts.set_level_zero_slowdown_writes_trigger(v);
    }
    if let Some(v) = c.level0_stop_writes_trigger {
        opts.set_level_zero_stop_writes_trigger(v);
    }
    if let Some(v) = c.target_file_size_base {
        opts.set_target_file_size_base(v);
    }
    if let Some(v) = c.target_file_size_multiplier {
        opts.set_target_file_size_multiplier(v);
    }
    if let Some(v) = c.max_bytes_for_level_base {
        opts.set_max_bytes_for_level_base(v);
    }
    if let Some(v) = c.max_bytes_for_level_multiplier {
        opts.set_max_bytes_for_level_multiplier(v);
    }
    if let Some(v) = c.memtable_prefix_bloom_size_ratio {
        opts.set_memtable_prefix_bloom_ratio(v);
    }
    if let Some(v) = c.level_compaction_dynamic_level_bytes {
        opts.set_level_compaction_dynamic_level_bytes(v);
    }
    if let Some(v) = c.max_compaction_bytes {
        opts.set_max_compaction_bytes(v);
    }
    if let Some(v) = c.soft_pending_compaction_bytes_limit {
        opts.set_soft_pending_compaction_bytes_limit(v as usize);
    }
    if let Some(v) = c.hard_pending_compaction_bytes_limit {
        opts.set_hard_pending_compaction_bytes_limit(v as usize);
    }
    if let Some(v) = c.compression {
        opts.set_compression_type(v.into());
    }
    if let Some(v) = c.bottommost_compression {
        opts.set_bottommost_compression_type(v.into());
    }
    if let Some(v) = &c.compression_per_level {
        let levels: Vec<DBCompressionType> = v.iter().map(|&c| c.into()).collect();
        opts.set_compression_per_level(&levels);
    }
    if let Some(v) = c.optimize_filters_for_hits {
        opts.set_optimize_filters_for_hits(v);
    }
    if let Some(v) = c.disable_auto_compactions {
        opts.set_disable_auto_compactions(v);
    }
    if let Some(v) = c.ttl {
        opts.set_ttl(v);
    }
    if let Some(v) = c.periodic_compaction_seconds {
        opts.set_periodic_compaction_seconds(v);
    }
    if let Some(v) = c.enable_blob_files {
        opts.set_enable_blob_files(v);
    }
    if let Some(v) = c.min_blob_size {
        opts.set_min_blob_size(v);
    }
    if let Some(v) = c.blob_file_size {
        opts.set_blob_file_size(v);
    }
    if let Some(v) = c.blob_compression_type {
        opts.set_blob_compression_type(v.into());
    }
    if let Some(v) = c.enable_blob_garbage_collection {
        opts.set_enable_blob_gc(v);
    }
    if let Some(d) = c.compact_on_deletion {
        opts.add_compact_on_deletion_collector_factory(
            d.window_size,
            d.deletion_trigger,
            d.deletion_ratio,
        );
    }
}

fn apply_table(t: &TableOptions, table: &mut BlockBasedOptions) {
    if let Some(v) = t.block_size {
        table.set_block_size(v as usize);
    }
    if let Some(v) = t.metadata_block_size {
        table.set_metadata_block_size(v as usize);
    }
    if let Some(v) = t.cache_index_and_filter_blocks {
        table.set_cache_index_and_filter_blocks(v);
    }
    if let Some(v) = t.cache_index_and_filter_blocks_with_high_priority {
        table.set_cache_index_and_filter_blocks_with_high_priority(v);
    }
    if let Some(v) = t.pin_l0_filter_and_index_blocks_in_cache {
        table.set_pin_l0_filter_and_index_blocks_in_cache(v);
    }
    if let Some(v) = t.pin_top_level_index_and_filter {
        table.set_pin_top_level_index_and_filter(v);
    }
    if let Some(v) = t.unpartitioned_pinning {
        table.set_unpartitioned_pinning_tier(match v {
            PinningTier::Fallback => BlockBasedTablePinningTier::Fallback,
            PinningTier::None => BlockBasedTablePinningTier::None,
            PinningTier::FlushedAndSimilar => BlockBasedTablePinningTier::FlushAndSimilar,
            PinningTier::All => BlockBasedTablePinningTier::All,
        });
    }
    if let Some(v) = t.index_type {
        table.set_index_type(match v {
            IndexType::BinarySearch => BlockBasedIndexType::BinarySearch,
            IndexType::HashSearch => BlockBasedIndexType::HashSearch,
            IndexType::TwoLevelIndexSearch => BlockBasedIndexType::TwoLevelIndexSearch,
        });
    }
    if let Some(v) = t.partition_filters {
        table.set_partition_filters(v);
    }
    if let Some(v) = t.format_version {
        table.set_format_version(v);
    }
    if let Some(v) = t.block_restart_interval {
        table.set_block_restart_interval(v);
    }
    if let Some(v) = t.whole_key_filtering {
        table.set_whole_key_filtering(v);
    }
    if let Some(v) = t.optimize_filters_for_memory {
        table.set_optimize_filters_for_memory(v);
    }
    if let Some(v) = t.bloom_filter_bits_per_key {
        table.set_bloom_filter(v, false);
    }
}

impl From<Compression> for DBCompressionType {
    fn from(c: Compression) -> Self {
        match c {
            Compression::None => DBCompressionType::None,
            Compression::Snappy => DBCompressionType::Snappy,
            Compression::Lz4 => DBCompressionType::Lz4,
            Compression::Lz4hc => DBCompressionType::Lz4hc,
            Compression::Zstd => DBCompressionType::Zstd,
        }
    }
}

//! Statistics of the RocksDB backend, as a plain struct readable at any time.

use ::rocksdb::statistics::Ticker;
use serde::{Deserialize, Serialize};

use super::{rocks_err, RocksDbBackend};
use crate::backend::BackendStats;
use crate::error::Result;

/// RocksDB figures of one backend instance (cache figures are those of the shared cache).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RocksDbStats {
    /// Block cache hits of this instance, data blocks only: index and filter blocks are read
    /// once per table probed and, in L0, pinned outside the count, so counting them would
    /// make rates incomparable across configurations and backends.
    pub block_cache_hits: u64,
    /// Block cache misses of this instance, data blocks only.
    pub block_cache_misses: u64,
    /// Bytes in the shared block cache (including memtable reservations charged to it).
    pub block_cache_usage: u64,
    /// Bytes of pinned entries in the shared block cache.
    pub block_cache_pinned_usage: u64,
    /// Capacity of the shared block cache.
    pub block_cache_capacity: u64,
    /// Bytes of this instance's memtables.
    pub memtable_bytes: u64,
    /// Bytes of memtables of every instance sharing the write buffer manager (charged to the
    /// shared block cache, so part of `block_cache_usage`).
    pub shared_memtable_bytes: u64,
    /// Bytes table readers hold outside the block cache (RocksDB's
    /// `estimate-table-readers-mem`: index and filter blocks not cached, reader objects).
    #[serde(default)]
    pub table_readers_bytes: u64,
    /// Bytes of keys and values written by the user (RocksDB's count, with its framing).
    pub user_bytes_written: u64,
    /// Bytes written by flushes.
    pub flush_bytes_written: u64,
    /// Bytes written by compactions.
    pub compaction_bytes_written: u64,
    /// (flush + compaction bytes) / user bytes; 0 before anything was written.
    pub write_amplification: f64,
    /// Microseconds writes were stalled.
    pub stall_micros: u64,
    /// Estimated bytes compactions have yet to rewrite.
    pub pending_compaction_bytes: u64,
    /// Estimated bytes of live data.
    pub live_data_bytes: u64,
    /// Bytes of all SST files on disk (including those kept for checkpoints in progress).
    pub sst_bytes: u64,
    /// Bytes of the SST files of the current version.
    pub live_sst_bytes: u64,
    /// Files in level 0, over all states.
    pub l0_files: u64,
    /// Column families (states) open.
    pub column_families: usize,
    /// RocksDB's tickers the tuner's advisor reads, by RocksDB's names: filter and index
    /// block cache hits and misses, Bloom filter outcomes of point reads and of scans.
    pub tickers: std::collections::BTreeMap<String, u64>,
}

/// The tickers [`RocksDbStats::tickers`] holds.
const ADVISOR_TICKERS: [Ticker; 11] = [
    Ticker::BlockCacheIndexHit,
    Ticker::BlockCacheIndexMiss,
    Ticker::BlockCacheFilterHit,
    Ticker::BlockCacheFilterMiss,
    Ticker::BloomFilterUseful,
    Ticker::BloomFilterFullPositive,
    Ticker::BloomFilterFullTruePositive,
    // Scans of a scope that a prefix filter answered (filtered: the file was skipped).
    Ticker::NonLastLevelSeekFiltered,
    Ticker::NonLastLevelSeekFilterMatch,
    Ticker::LastLevelSeekFiltered,
    Ticker::LastLevelSeekFilterMatch,
];

impl RocksDbStats {
    /// The sum of `tickers` among [`RocksDbStats::tickers`].
    fn ticker_sum(&self, tickers: &[Ticker]) -> u64 {
        tickers
            .iter()
            .filter_map(|t| self.tickers.get(t.name()))
            .sum()
    }

    /// The engine-neutral subset. Memory is the shared cache's usage (which holds the
    /// memtables' reservations: counting memtables on top would count them twice) plus what
    /// table readers hold outside it.
    pub fn to_backend_stats(&self) -> BackendStats {
        let memtables = self.shared_memtable_bytes.min(self.block_cache_usage);
        let memory_by_component = [
            (
                "block cache: blocks".to_string(),
                self.block_cache_usage - memtables,
            ),
            ("block cache: memtables".to_string(), memtables),
            (
                "block cache: pinned (within the two above)".to_string(),
                self.block_cache_pinned_usage,
            ),
            (
                "table readers outside the cache".to_string(),
                self.table_readers_bytes,
            ),
        ]
        .into_iter()
        .collect();
        BackendStats {
            memory_bytes: Some(self.block_cache_usage + self.table_readers_bytes),
            memory_by_component,
            disk_bytes: Some(self.sst_bytes),
            live_data_bytes: Some(self.live_data_bytes),
            user_bytes_written: Some(self.user_bytes_written),
            disk_bytes_written: Some(self.flush_bytes_written + self.compaction_bytes_written),
            cache_hits: Some(self.block_cache_hits),
            cache_misses: Some(self.block_cache_misses),
            meta_cache_hits: Some(
                self.ticker_sum(&[Ticker::BlockCacheIndexHit, Ticker::BlockCacheFilterHit]),
            ),
            meta_cache_misses: Some(
                self.ticker_sum(&[Ticker::BlockCacheIndexMiss, Ticker::BlockCacheFilterMiss]),
            ),
            write_stall_micros: Some(self.stall_micros),
            details: self
                .tickers
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .chain([
                    ("rocksdb.l0-files".to_string(), self.l0_files),
                    (
                        "rocksdb.estimate-pending-compaction-bytes".to_string(),
                        self.pending_compaction_bytes,
                    ),
                    (
                        "rocksdb.block.cache.data.hit".to_string(),
                        self.block_cache_hits,
                    ),
                    (
                        "rocksdb.block.cache.data.miss".to_string(),
                        self.block_cache_misses,
                    ),
                    ("rocksdb.stall.micros".to_string(), self.stall_micros),
                ])
                .collect(),
        }
    }
}

impl RocksDbBackend {
    /// Reads the statistics now.
    ///
    /// # Errors
    /// `Internal`/`Unavailable` if RocksDB cannot report a property.
    pub fn rocksdb_stats(&self) -> Result<RocksDbStats> {
        let db = self.db();
        let opts = &self.open.options;
        let resources = &self.settings.resources;
        let mut s = RocksDbStats {
            block_cache_hits: opts.get_ticker_count(Ticker::BlockCacheDataHit),
            block_cache_misses: opts.get_ticker_count(Ticker::BlockCacheDataMiss),
            block_cache_usage: resources.cache_usage(),
            block_cache_pinned_usage: resources.cache_pinned_usage(),
            block_cache_capacity: resources.budget().cache_capacity(),
            shared_memtable_bytes: resources.memtable_usage(),
            flush_bytes_written: opts.get_ticker_count(Ticker::FlushWriteBytes),
            compaction_bytes_written: opts.get_ticker_count(Ticker::CompactWriteBytes),
            stall_micros: opts.get_ticker_count(Ticker::StallMicros),
            // Statekit's own count: RocksDB's BYTES_WRITTEN includes WAL framing and is not
            // counted when the WAL is off.
            user_bytes_written: self.user_bytes_written,
            column_families: self.cf_names.len(),
            tickers: ADVISOR_TICKERS
                .iter()
                .map(|t| (t.name().to_string(), opts.get_ticker_count(*t)))
                .collect(),
            ..RocksDbStats::default()
        };
        for name in &self.cf_names {
            let Some(cf) = db.cf_handle(name) else {
                continue;
            };
            let int = |prop: &str| -> Result<u64> {
                Ok(db
                    .property_int_value_cf(cf, prop)
                    .map_err(|e| rocks_err(format!("property {prop} of '{name}'"), e))?
                    .unwrap_or(0))
            };
            s.memtable_bytes += int("rocksdb.cur-size-all-mem-tables")?;
            s.table_readers_bytes += int("rocksdb.estimate-table-readers-mem")?;
            s.live_data_bytes += int("rocksdb.estimate-live-data-size")?;
            s.sst_bytes += int("rocksdb.total-sst-files-size")?;
            s.live_sst_bytes += int("rocksdb.live-sst-files-size")?;
            s.pending_compaction_bytes += int("rocksdb.estimate-pending-compaction-bytes")?;
            s.l0_files += db
                .property_value_cf(cf, "rocksdb.num-files-at-level0")
                .map_err(|e| rocks_err(format!("L0 file count of '{name}'"), e))?
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        if s.user_bytes_written > 0 {
            s.write_amplification = (s.flush_bytes_written + s.compaction_bytes_written) as f64
                / s.user_bytes_written as f64;
        }
        Ok(s)
    }
}

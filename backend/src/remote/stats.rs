//! What the backend reports about itself: memory by component, bytes stored and written,
//! cache hit rates and read amplification, from SlateDB's metrics and the store.

use slatedb_common::metrics::{MetricValue, Metrics};

use super::{runtime, sizes, RemoteBackend};
use crate::backend::BackendStats;
use crate::error::Result;

impl RemoteBackend {
    /// The sum of SlateDB's metric `name` for this instance's database (over its labels, or
    /// only those carrying `label`), e.g. `slatedb.db.sst_filter_negative_count` with
    /// `("kind", "prefix")`: diagnostics beyond [`StateBackend::stats`].
    ///
    /// [`StateBackend::stats`]: crate::backend::StateBackend::stats
    pub fn engine_metric(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        metric_sum(&self.metrics.snapshot(), name, label.as_slice())
    }

    /// What [`StateBackend::stats`] reports.
    ///
    /// [`StateBackend::stats`]: crate::backend::StateBackend::stats
    pub(super) fn collect_stats(&self) -> Result<BackendStats> {
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

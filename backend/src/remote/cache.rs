//! SlateDB's block cache, one that can say how many bytes it holds.
//!
//! SlateDB's own `MokaCache` keeps its moka cache private, so the bytes it holds cannot be
//! read, and a budget nobody can see is one nobody can check. This is the same cache (moka,
//! bounded by the bytes of its entries) with [`MeasuredCache::bytes`]; the backend's
//! statistics report it per part (data blocks, and index, filter and stats blocks).

use async_trait::async_trait;
use slatedb::db_cache::{CachedEntry, CachedKey, DbCache};

/// A moka cache bounded by the bytes of its entries.
pub(crate) struct MeasuredCache {
    inner: moka::future::Cache<CachedKey, CachedEntry>,
}

impl MeasuredCache {
    /// A cache that holds at most `max_bytes` of entries.
    pub(crate) fn new(max_bytes: u64) -> Self {
        MeasuredCache {
            inner: moka::future::Cache::builder()
                .weigher(|_, v: &CachedEntry| u32::try_from(v.size()).unwrap_or(u32::MAX))
                .max_capacity(max_bytes)
                .build(),
        }
    }

    /// Bytes of the entries held, after the cache's pending evictions are applied (moka
    /// applies them in batches, so its figure lags the inserts otherwise).
    pub(crate) async fn bytes(&self) -> u64 {
        self.inner.run_pending_tasks().await;
        self.inner.weighted_size()
    }
}

#[async_trait]
impl DbCache for MeasuredCache {
    async fn get_block(&self, key: &CachedKey) -> Result<Option<CachedEntry>, slatedb::Error> {
        Ok(self.inner.get(key).await)
    }

    async fn get_index(&self, key: &CachedKey) -> Result<Option<CachedEntry>, slatedb::Error> {
        Ok(self.inner.get(key).await)
    }

    async fn get_filter(&self, key: &CachedKey) -> Result<Option<CachedEntry>, slatedb::Error> {
        Ok(self.inner.get(key).await)
    }

    async fn get_stats(&self, key: &CachedKey) -> Result<Option<CachedEntry>, slatedb::Error> {
        Ok(self.inner.get(key).await)
    }

    async fn insert(&self, key: CachedKey, value: CachedEntry) {
        self.inner.insert(key, value).await;
    }

    async fn remove(&self, key: &CachedKey) {
        self.inner.remove(key).await;
    }

    fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

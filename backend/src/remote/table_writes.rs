//! Counts the bytes each database writes as tables: whole objects under its `compacted/`
//! directory (memtable flushes and compaction output alike), counted when the write
//! completes. SlateDB's own counters measure flushes as whole tables but compaction output
//! as data sections only; RocksDB's count whole files, so this is the figure both backends'
//! write amplification can share.
//!
//! It also measures the bytes handed to the store and not yet written (uploads in flight):
//! SlateDB's upload buffers live outside its block cache and memtable gauges, and at small
//! budgets they are a visible part of the process's memory.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// The directory SlateDB keeps a database's tables in, under the database's path.
const TABLES_DIR: &str = "/compacted/";

/// Bytes written as tables, by database path.
#[derive(Debug, Default)]
struct Tally(Mutex<HashMap<String, u64>>);

impl Tally {
    fn add(&self, location: &str, bytes: u64) {
        if let Some(at) = location.find(TABLES_DIR) {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            *map.entry(location[..at].to_string()).or_default() += bytes;
        }
    }

    fn total(&self) -> u64 {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.values().sum()
    }

    fn of(&self, db: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(db.trim_end_matches('/')).copied().unwrap_or(0)
    }
}

/// Bytes handed to the store by writes that have not completed, and the most there were.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicU64,
    peak: AtomicU64,
}

impl InFlight {
    /// Counts `bytes` until the returned guard drops (the write completed, failed or was
    /// cancelled).
    fn start(self: &Arc<Self>, bytes: u64) -> InFlightGuard {
        let now = self.now.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        InFlightGuard {
            gauge: Arc::clone(self),
            bytes,
        }
    }
}

struct InFlightGuard {
    gauge: Arc<InFlight>,
    bytes: u64,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.gauge.now.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// An object store that passes every call through, counts table writes and measures the
/// uploads in flight.
#[derive(Debug)]
pub(crate) struct TableWriteCounter {
    inner: Arc<dyn ObjectStore>,
    tally: Arc<Tally>,
    in_flight: Arc<InFlight>,
}

impl TableWriteCounter {
    /// Wraps `inner`.
    pub(crate) fn new(inner: Arc<dyn ObjectStore>) -> Self {
        TableWriteCounter {
            inner,
            tally: Arc::default(),
            in_flight: Arc::default(),
        }
    }

    /// A handle that reads the counts after the store has been shared.
    pub(crate) fn counts(&self) -> TableWriteCounts {
        TableWriteCounts {
            tally: Arc::clone(&self.tally),
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

/// Reads what a [`TableWriteCounter`] counted.
#[derive(Debug, Clone)]
pub(crate) struct TableWriteCounts {
    tally: Arc<Tally>,
    in_flight: Arc<InFlight>,
}

impl TableWriteCounts {
    /// Bytes written as tables by the database at `db` (its path in the store).
    pub(crate) fn of(&self, db: &Path) -> u64 {
        self.tally.of(db.as_ref())
    }

    /// Bytes written as tables by every database of the store: what shows the store still
    /// accepts writes while a flush waits.
    pub(crate) fn total(&self) -> u64 {
        self.tally.total()
    }

    /// Bytes of writes to the store (every database's, any object) not yet completed.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.now.load(Ordering::Relaxed)
    }

    /// The most [`TableWriteCounts::in_flight`] has been since the store was opened.
    pub(crate) fn peak_in_flight(&self) -> u64 {
        self.in_flight.peak.load(Ordering::Relaxed)
    }
}

impl fmt::Display for TableWriteCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableWriteCounter({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for TableWriteCounter {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let bytes = payload.content_length() as u64;
        let _in_flight = self.in_flight.start(bytes);
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.tally.add(location.as_ref(), bytes);
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountedUpload {
            inner,
            tally: Arc::clone(&self.tally),
            in_flight: Arc::clone(&self.in_flight),
            location: location.to_string(),
            bytes: 0,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct CountedUpload {
    inner: Box<dyn MultipartUpload>,
    tally: Arc<Tally>,
    in_flight: Arc<InFlight>,
    location: String,
    bytes: u64,
}

#[async_trait]
impl MultipartUpload for CountedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let bytes = data.content_length() as u64;
        self.bytes += bytes;
        let guard = self.in_flight.start(bytes);
        let part = self.inner.put_part(data);
        Box::pin(async move {
            let _in_flight = guard;
            part.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await?;
        self.tally.add(&self.location, self.bytes);
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[test]
    fn counts_whole_tables_per_database_and_nothing_else() {
        let counter = TableWriteCounter::new(Arc::new(InMemory::new()));
        let counts = counter.counts();
        futures::executor::block_on(async {
            let put = |p: &str, n: usize| {
                let path = Path::from(p);
                let store = &counter;
                async move { store.put(&path, vec![0u8; n].into()).await.unwrap() }
            };
            put("root/db-a/compacted/01.sst", 100).await;
            put("root/db-a/compacted/02.sst", 50).await;
            put("root/db-a/manifest/00001.manifest", 7).await;
            put("root/db-b/compacted/01.sst", 30).await;
            let mut upload = counter
                .put_multipart(&Path::from("root/db-a/compacted/03.sst"))
                .await
                .unwrap();
            // The largest single write so far: 100 bytes.
            assert_eq!(counts.peak_in_flight(), 100);
            let first = upload.put_part(vec![0u8; 60].into());
            let second = upload.put_part(vec![0u8; 50].into());
            // Handed over, not written yet: in flight, together.
            assert_eq!(counts.in_flight(), 110);
            first.await.unwrap();
            assert_eq!(counts.in_flight(), 50);
            second.await.unwrap();
            assert_eq!(counts.in_flight(), 0);
            assert_eq!(counts.peak_in_flight(), 110);
            // Not complete yet: nothing counted.
            assert_eq!(counts.of(&Path::from("root/db-a")), 150);
            upload.complete().await.unwrap();
        });
        assert_eq!(counts.of(&Path::from("root/db-a")), 260);
        assert_eq!(counts.of(&Path::from("root/db-b")), 30);
        assert_eq!(counts.of(&Path::from("root/db-c")), 0);
    }
}

//! The local-directory object store (`file://` URLs), with table reads on the calling thread.
//!
//! `object_store`'s `LocalFileSystem` sends every read to tokio's blocking pool (inside a
//! runtime it must not block): a table block read is an open and an `fstat` on one pool
//! thread, then the read on another, with the reading task parked in between. A remote
//! backend whose state outgrows its block cache reads blocks all the time, and profiling
//! ad-click at standard rates with a 256 MiB cache showed the calling thread parked in
//! `epoll_wait` and the pool threads in futex wake-ups for those hand-offs.
//!
//! Table files (`.sst`) are immutable once written and their names are never reused, so this
//! store keeps them open and reads them with `pread` right where the read is asked for, as
//! RocksDB reads its files on the thread that needs the block. A read of a page-cached block
//! takes microseconds, less than one hand-off. Everything else (writes, lists, deletes, and
//! reads of manifests, which are replaced by rename) goes to `LocalFileSystem` unchanged.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, Metadata};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Open table files kept at most; past it the set starts over (reopening is one `open`).
const MAX_OPEN_TABLES: usize = 2048;

const STORE: &str = "LocalFileSystem";

/// An open table file and what `get` reports about it.
#[derive(Debug)]
struct OpenTable {
    file: File,
    meta: ObjectMeta,
}

/// A `LocalFileSystem` whose table reads run inline on the calling thread (see the module
/// docs).
#[derive(Debug)]
pub(crate) struct LocalFiles {
    inner: LocalFileSystem,
    open: Arc<Mutex<OpenTables>>,
}

type OpenTables = HashMap<Path, Arc<OpenTable>>;

fn forget_in(open: &Mutex<OpenTables>, location: &Path) {
    open.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(location);
}

impl LocalFiles {
    /// Wraps `inner`, a store rooted at the backend's directory.
    pub(crate) fn new(inner: LocalFileSystem) -> Self {
        LocalFiles {
            inner,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn is_table(location: &Path) -> bool {
        location.extension() == Some("sst")
    }

    fn forget(&self, location: &Path) {
        forget_in(&self.open, location);
    }

    fn table(&self, location: &Path) -> object_store::Result<Arc<OpenTable>> {
        if let Some(open) = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(location)
        {
            return Ok(Arc::clone(open));
        }
        let path = self.inner.path_to_filesystem(location)?;
        let file = File::open(&path).map_err(|e| io_error(location, e))?;
        let metadata = file.metadata().map_err(|e| io_error(location, e))?;
        let table = Arc::new(OpenTable {
            file,
            meta: object_meta(location, &metadata),
        });
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= MAX_OPEN_TABLES {
            open.clear();
        }
        open.insert(location.clone(), Arc::clone(&table));
        Ok(table)
    }

    /// Serves a table read inline.
    fn get_table(&self, location: &Path, options: &GetOptions) -> object_store::Result<GetResult> {
        let table = self.table(location)?;
        let meta = table.meta.clone();
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r.as_range(meta.size).map_err(|e| generic(location, e))?,
            None => 0..meta.size,
        };
        let bytes = if options.head {
            Bytes::new()
        } else {
            read_at(&table.file, location, range.clone())?
        };
        let range = if options.head { 0..0 } else { range };
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes: Attributes::default(),
            extensions: options.extensions.clone(),
        })
    }
}

fn io_error(location: &Path, e: std::io::Error) -> object_store::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        object_store::Error::NotFound {
            path: location.to_string(),
            source: Box::new(e),
        }
    } else {
        generic(location, e)
    }
}

fn generic(
    location: &Path,
    e: impl std::error::Error + Send + Sync + 'static,
) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: format!("{location}: {e}").into(),
    }
}

/// The metadata `LocalFileSystem` reports, with its ETag scheme (inode, mtime, size), so
/// both paths describe a file alike.
fn object_meta(location: &Path, metadata: &Metadata) -> ObjectMeta {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0u64;
    ObjectMeta {
        location: location.clone(),
        last_modified: chrono::DateTime::from_timestamp(
            i64::try_from(modified.as_secs()).unwrap_or(i64::MAX),
            modified.subsec_nanos(),
        )
        .unwrap_or_default(),
        size: metadata.len(),
        e_tag: Some(format!(
            "\"{inode:x}-{:x}-{:x}\"",
            modified.as_micros(),
            metadata.len()
        )),
        version: None,
    }
}

fn read_at(file: &File, location: &Path, range: Range<u64>) -> object_store::Result<Bytes> {
    let len = usize::try_from(range.end - range.start).map_err(|e| generic(location, e))?;
    let mut buf = vec![0; len];
    read_exact_at(file, &mut buf, range.start).map_err(|e| io_error(location, e))?;
    Ok(Bytes::from(buf))
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file.try_clone()?;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

impl fmt::Display for LocalFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalFiles({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for LocalFiles {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.forget(location);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.forget(location);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if Self::is_table(location) && options.version.is_none() {
            return self.get_table(location, &options);
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if !Self::is_table(location) {
            return self.inner.get_ranges(location, ranges).await;
        }
        let table = self.table(location)?;
        ranges
            .iter()
            .map(|r| {
                if r.end > table.meta.size || r.start > r.end {
                    return Err(generic(
                        location,
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!(
                                "range {r:?} outside the {} bytes of the file",
                                table.meta.size
                            ),
                        ),
                    ));
                }
                read_at(&table.file, location, r.clone())
            })
            .collect()
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Forgotten before and after the delete: a read racing it may have reopened the file.
        let before = Arc::clone(&self.open);
        let after = Arc::clone(&self.open);
        let locations = locations
            .inspect(move |p| p.iter().for_each(|p| forget_in(&before, p)))
            .boxed();
        self.inner
            .delete_stream(locations)
            .inspect(move |p| p.iter().for_each(|p| forget_in(&after, p)))
            .boxed()
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
        self.forget(to);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.forget(from);
        self.forget(to);
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{GetRange, ObjectStoreExt};

    fn run<F: std::future::Future>(fut: F) -> F::Output {
        // Inside a runtime, where `LocalFileSystem` would hand reads to the blocking pool.
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(fut)
    }

    fn stores(dir: &std::path::Path) -> (LocalFiles, LocalFileSystem) {
        let plain = || LocalFileSystem::new_with_prefix(dir).expect("store");
        (LocalFiles::new(plain()), plain())
    }

    fn ranged(range: Range<u64>) -> GetOptions {
        GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        }
    }

    #[test]
    fn table_reads_match_the_plain_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, plain) = stores(dir.path());
        let table = Path::from("db/compacted/01.sst");
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        run(async {
            files
                .put(&table, PutPayload::from(content.clone()))
                .await
                .expect("put");
            for range in [0..1, 100..4196, 9_000..10_000] {
                let ours = files
                    .get_opts(&table, ranged(range.clone()))
                    .await
                    .expect("get");
                let theirs = plain
                    .get_opts(&table, ranged(range.clone()))
                    .await
                    .expect("get");
                assert_eq!(ours.meta, theirs.meta);
                assert_eq!(ours.range, range);
                assert_eq!(
                    ours.bytes().await.expect("bytes"),
                    theirs.bytes().await.expect("bytes")
                );
            }
            let head = files
                .get_opts(
                    &table,
                    GetOptions {
                        head: true,
                        ..GetOptions::default()
                    },
                )
                .await
                .expect("head");
            assert_eq!(head.meta.size, 10_000);
            let whole = files
                .get(&table)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            assert_eq!(whole.as_ref(), content.as_slice());
            let parts = files
                .get_ranges(&table, &[5..9, 0..2])
                .await
                .expect("ranges");
            assert_eq!(
                parts,
                vec![
                    Bytes::from(content[5..9].to_vec()),
                    Bytes::from(content[0..2].to_vec())
                ]
            );
        });
    }

    #[test]
    fn bad_table_reads_are_errors_naming_the_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, _) = stores(dir.path());
        let table = Path::from("db/compacted/02.sst");
        run(async {
            let missing = files.get_opts(&table, ranged(0..4)).await;
            assert!(
                matches!(&missing, Err(object_store::Error::NotFound { path, .. }) if path.contains("02.sst")),
                "{missing:?}"
            );
            files
                .put(&table, PutPayload::from(vec![7u8; 16]))
                .await
                .expect("put");
            let beyond = files.get_opts(&table, ranged(8..32)).await.map(|r| r.range);
            // A range past the end is cut to the file, as LocalFileSystem does.
            assert_eq!(beyond.expect("get"), 8..16);
            let start_past_end = files.get_opts(&table, ranged(20..32)).await;
            assert!(
                start_past_end.is_err(),
                "{:?}",
                start_past_end.map(|r| r.range)
            );
            let ranges = files.get_ranges(&table, &[8..32, 0..1]).await;
            assert!(ranges.unwrap_err().to_string().contains("02.sst"));
            let stale = GetOptions {
                if_match: Some("not-the-etag".into()),
                ..ranged(0..4)
            };
            assert!(matches!(
                files.get_opts(&table, stale).await,
                Err(object_store::Error::Precondition { .. })
            ));
        });
    }

    #[test]
    fn deletes_and_overwrites_are_seen_by_later_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, _) = stores(dir.path());
        let table = Path::from("db/compacted/03.sst");
        run(async {
            for content in [vec![1u8; 8], vec![2u8; 4]] {
                files
                    .put(&table, PutPayload::from(content.clone()))
                    .await
                    .expect("put");
                let read = files.get(&table).await.expect("get").bytes().await;
                assert_eq!(read.expect("bytes").as_ref(), content.as_slice());
            }
            files.delete(&table).await.expect("delete");
            assert!(matches!(
                files.get(&table).await,
                Err(object_store::Error::NotFound { .. })
            ));
        });
    }
}

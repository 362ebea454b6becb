//! [`CheckpointStorage`] on any `object_store` store: checkpoints of every backend (memory,
//! RocksDB, remote) can go to S3, GCS, Azure or a local directory through it.

use std::path::Path as FsPath;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::config::{store_error, RemoteConfig};
use super::runtime::block_on;
use crate::checkpoint::CheckpointStorage;
use crate::error::{Error, Result};

/// Checkpoint storage under a prefix of an object store. Every `put` is a single atomic
/// object-store PUT, so a reader sees a whole object or none.
#[derive(Debug, Clone)]
pub struct ObjectStoreCheckpointStorage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    describe: String,
}

impl ObjectStoreCheckpointStorage {
    /// Storage under `root` of `store`; `describe` names it in messages (a URL, never a
    /// secret).
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, describe: impl Into<String>) -> Self {
        ObjectStoreCheckpointStorage {
            store,
            root,
            describe: describe.into(),
        }
    }

    /// Storage under `sub` (for example `"checkpoints"`) of the store a remote configuration
    /// names.
    ///
    /// # Errors
    /// As [`RemoteConfig::build_object_store`].
    pub fn from_config(config: &RemoteConfig, sub: &str) -> Result<Self> {
        let (store, root) = config.build_object_store()?;
        let root = join(&root, sub)?;
        Ok(Self::new(
            store,
            root,
            format!("{}/{sub}", config.describe().trim_end_matches('/')),
        ))
    }

    fn resolve(&self, path: &str) -> Result<Path> {
        let clean = !path.is_empty()
            && path
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
        if !clean {
            return Err(Error::invalid(format!(
                "checkpoint path '{path}' must be relative, without '..' or empty segments \
                 (storage {})",
                self.describe
            )));
        }
        join(&self.root, path)
    }

    fn what(&self, path: &str) -> String {
        format!("{}/{path}", self.describe)
    }
}

fn join(root: &Path, rel: &str) -> Result<Path> {
    let mut out = root.clone();
    for seg in rel.split('/').filter(|s| !s.is_empty()) {
        out = out.join(seg);
    }
    Ok(out)
}

impl CheckpointStorage for ObjectStoreCheckpointStorage {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn put(&self, path: &str, data: &[u8]) -> Result<()> {
        let location = self.resolve(path)?;
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(data));
        block_on(self.store.put(&location, payload))?
            .map(|_| ())
            .map_err(|e| store_error(self.what(path), e))
    }

    fn put_file(&self, path: &str, local: &FsPath) -> Result<u64> {
        let data = std::fs::read(local).map_err(|e| Error::io(local.display(), e))?;
        self.put(path, &data)?;
        Ok(data.len() as u64)
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        let location = self.resolve(path)?;
        block_on(async {
            let got = self.store.get(&location).await?;
            got.bytes().await
        })?
        .map(|b| b.to_vec())
        .map_err(|e| store_error(self.what(path), e))
    }

    fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let location = self.resolve(path)?;
        let end = offset
            .checked_add(len)
            .ok_or_else(|| Error::invalid(format!("{}: range overflows", self.what(path))))?;
        let bytes = block_on(self.store.get_range(&location, offset..end))?
            .map_err(|e| store_error(self.what(path), e))?;
        if bytes.len() as u64 != len {
            return Err(Error::corruption(format!(
                "{}: wanted {len} bytes at {offset}, got {}",
                self.what(path),
                bytes.len()
            )));
        }
        Ok(bytes.to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let base = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.resolve(prefix)?
        };
        let metas: Vec<_> = block_on(self.store.list(Some(&base)).try_collect::<Vec<_>>())?
            .map_err(|e| store_error(self.what(prefix), e))?;
        let mut out: Vec<String> = metas
            .into_iter()
            .filter_map(|m| {
                m.location.prefix_match(&self.root).map(|parts| {
                    parts
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                })
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let location = self.resolve(path)?;
        match block_on(self.store.head(&location))? {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error(self.what(path), e)),
        }
    }

    fn delete(&self, path: &str) -> Result<()> {
        let location = self.resolve(path)?;
        match block_on(self.store.delete(&location))? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(self.what(path), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn put_get_list_delete_on_a_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let config = RemoteConfig::local(dir.path());
        let s = ObjectStoreCheckpointStorage::from_config(&config, "checkpoints").unwrap();
        s.put("chk-1/a/data", b"hello").unwrap();
        s.put("chk-1/a/MANIFEST", b"m").unwrap();
        assert_eq!(s.get("chk-1/a/data").unwrap(), b"hello");
        assert_eq!(s.get_range("chk-1/a/data", 1, 3).unwrap(), b"ell");
        assert!(s.get_range("chk-1/a/data", 3, 3).is_err());
        assert_eq!(
            s.list("chk-1").unwrap(),
            vec!["chk-1/a/MANIFEST", "chk-1/a/data"]
        );
        assert!(s.exists("chk-1/a/data").unwrap());
        s.delete("chk-1/a/data").unwrap();
        s.delete("chk-1/a/MANIFEST").unwrap();
        s.delete("chk-1/a/MANIFEST").unwrap();
        assert!(s.list("chk-1").unwrap().is_empty());
        assert!(!s.exists("chk-1/a/data").unwrap());
        assert_eq!(s.get("nope").unwrap_err().kind(), ErrorKind::NotFound);
        for bad in ["../x", "/etc/passwd", "", "a//b"] {
            assert_eq!(
                s.put(bad, b"x").unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
    }
}

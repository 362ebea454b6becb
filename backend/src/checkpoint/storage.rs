//! Where checkpoints are written: a small synchronous object-store-like interface, and its
//! local-directory implementation. Object storage plugs in behind the same trait.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// A flat namespace of immutable objects addressed by `/`-separated relative paths.
///
/// Every `put` is atomic: a reader sees the whole object or none of it.
pub trait CheckpointStorage: Send + Sync + std::fmt::Debug {
    /// A printable name of the storage (URL or directory), for error messages.
    fn describe(&self) -> String;

    /// Stores `data` at `path`, replacing any object there.
    ///
    /// # Errors
    /// `Unavailable`/`ResourceExhausted` on storage failure; nothing is visible then.
    fn put(&self, path: &str, data: &[u8]) -> Result<()>;

    /// Stores the local file `local` at `path`, returning its size.
    ///
    /// # Errors
    /// As [`CheckpointStorage::put`], or `NotFound` if `local` is missing.
    fn put_file(&self, path: &str, local: &Path) -> Result<u64> {
        let data = fs::read(local).map_err(|e| Error::io(local.display(), e))?;
        self.put(path, &data)?;
        Ok(data.len() as u64)
    }

    /// Reads a whole object.
    ///
    /// # Errors
    /// `NotFound` if it does not exist, `Unavailable` on storage failure.
    fn get(&self, path: &str) -> Result<Vec<u8>>;

    /// Reads `len` bytes at `offset` of an object.
    ///
    /// # Errors
    /// As [`CheckpointStorage::get`]; `Corruption` if the object is shorter.
    fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let all = self.get(path)?;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= all.len() as u64)
            .ok_or_else(|| {
                Error::corruption(format!(
                    "{}: {path} has {} bytes, wanted {len} at {offset}",
                    self.describe(),
                    all.len()
                ))
            })?;
        Ok(all[offset as usize..end as usize].to_vec())
    }

    /// Copies an object to the local file `local`.
    ///
    /// # Errors
    /// As [`CheckpointStorage::get`], or an I/O error on `local`.
    fn get_to_file(&self, path: &str, local: &Path) -> Result<u64> {
        let data = self.get(path)?;
        fs::write(local, &data).map_err(|e| Error::io(local.display(), e))?;
        Ok(data.len() as u64)
    }

    /// Lists the paths under `prefix` (a directory-like prefix, without trailing `/`).
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Whether an object exists.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    fn exists(&self, path: &str) -> Result<bool>;

    /// Deletes an object; deleting a missing one is not an error.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    fn delete(&self, path: &str) -> Result<()>;
}

/// Checkpoint storage in a local directory (or a mounted shared file system).
#[derive(Debug, Clone)]
pub struct LocalDirStorage {
    root: PathBuf,
}

impl LocalDirStorage {
    /// Storage rooted at `root`, created if missing.
    ///
    /// # Errors
    /// An I/O error naming `root` if it cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| Error::io(root.display(), e))?;
        Ok(LocalDirStorage { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory of `target` and returns it; every directory it creates is made
    /// durable in its parent, so that after a power loss a synced file is still reachable.
    fn create_dirs(&self, target: &Path) -> Result<PathBuf> {
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        let mut missing = Vec::new();
        let mut d = dir.as_path();
        while !d.exists() && d != self.root {
            missing.push(d.to_path_buf());
            match d.parent() {
                Some(parent) => d = parent,
                None => break,
            }
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        for created in missing.iter().rev() {
            if let Some(parent) = created.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(dir)
    }

    /// Renames a synced temporary file over `target` and syncs the directory, so the rename
    /// itself survives a power loss.
    fn rename_durably(&self, tmp: &Path, target: &Path, dir: &Path) -> Result<()> {
        fs::rename(tmp, target).map_err(|e| {
            let _ = fs::remove_file(tmp);
            Error::io(target.display(), e)
        })?;
        sync_dir(dir)
    }

    fn resolve(&self, path: &str) -> Result<PathBuf> {
        let rel = Path::new(path);
        let clean = !path.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !clean {
            return Err(Error::invalid(format!(
                "checkpoint path '{path}' must be relative, without '..' (storage {})",
                self.describe()
            )));
        }
        Ok(self.root.join(rel))
    }
}

impl CheckpointStorage for LocalDirStorage {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn put(&self, path: &str, data: &[u8]) -> Result<()> {
        let target = self.resolve(path)?;
        let dir = self.create_dirs(&target)?;
        // Write a temporary file and rename it over the target: readers never see a
        // partial object, and a failed write (disk full) leaves only the temporary behind.
        let mut tmp = tempfile_in(&dir)?;
        let written = tmp
            .1
            .write_all(data)
            .and_then(|()| tmp.1.sync_all())
            .map_err(|e| Error::io(target.display(), e));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp.0);
            return Err(e);
        }
        self.rename_durably(&tmp.0, &target, &dir)
    }

    fn put_file(&self, path: &str, local: &Path) -> Result<u64> {
        let target = self.resolve(path)?;
        let dir = self.create_dirs(&target)?;
        let tmp = tempfile_in(&dir)?;
        drop(tmp.1);
        let copied = fs::copy(local, &tmp.0)
            .and_then(|n| fs::File::open(&tmp.0)?.sync_all().map(|()| n))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp.0);
                Error::io(
                    format!("copy {} -> {}", local.display(), target.display()),
                    e,
                )
            })?;
        self.rename_durably(&tmp.0, &target, &dir)?;
        Ok(copied)
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        let target = self.resolve(path)?;
        fs::read(&target).map_err(|e| Error::io(target.display(), e))
    }

    fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let target = self.resolve(path)?;
        let mut file = fs::File::open(&target).map_err(|e| Error::io(target.display(), e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(target.display(), e))?;
        let mut buf = vec![0; usize::try_from(len).map_err(|_| Error::invalid("range too large"))?];
        file.read_exact(&mut buf).map_err(|e| {
            Error::io(target.display(), e).context(format!("reading {len} bytes at {offset}"))
        })?;
        Ok(buf)
    }

    fn get_to_file(&self, path: &str, local: &Path) -> Result<u64> {
        let target = self.resolve(path)?;
        fs::copy(&target, local).map_err(|e| {
            Error::io(
                format!("copy {} -> {}", target.display(), local.display()),
                e,
            )
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.resolve(prefix)?
        };
        let mut out = Vec::new();
        if !dir.exists() {
            return Ok(out);
        }
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).map_err(|e| Error::io(d.display(), e))? {
                let entry = entry.map_err(|e| Error::io(d.display(), e))?;
                let path = entry.path();
                let name = entry.file_name();
                if name.to_string_lossy().starts_with(TMP_PREFIX) {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.resolve(path)?.is_file())
    }

    fn delete(&self, path: &str) -> Result<()> {
        let target = self.resolve(path)?;
        match fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(target.display(), e)),
        }
        // Remove directories left empty, up to the root.
        let mut dir = target.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

const TMP_PREFIX: &str = ".tmp-";

fn tempfile_in(dir: &Path) -> Result<(PathBuf, fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(dir.display(), e)),
        }
    }
    Err(Error::new(
        ErrorKind::Internal,
        format!("{}: could not create a temporary file", dir.display()),
    ))
}

/// Fsyncs a directory: makes the entries created or renamed in it durable.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStorage::new(dir.path()).unwrap();
        s.put("chk-1/a/data", b"hello").unwrap();
        s.put("chk-1/a/MANIFEST", b"m").unwrap();
        assert_eq!(s.get("chk-1/a/data").unwrap(), b"hello");
        assert_eq!(s.get_range("chk-1/a/data", 1, 3).unwrap(), b"ell");
        assert!(s.get_range("chk-1/a/data", 3, 3).is_err());
        assert_eq!(
            s.list("chk-1").unwrap(),
            vec!["chk-1/a/MANIFEST", "chk-1/a/data"]
        );
        s.delete("chk-1/a/data").unwrap();
        s.delete("chk-1/a/MANIFEST").unwrap();
        s.delete("chk-1/a/MANIFEST").unwrap();
        assert!(s.list("chk-1").unwrap().is_empty());
        assert_eq!(s.get("nope").unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn paths_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStorage::new(dir.path()).unwrap();
        for bad in ["../x", "/etc/passwd", "", "a/../../b"] {
            assert_eq!(
                s.put(bad, b"x").unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }
}

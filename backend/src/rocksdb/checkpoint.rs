//! Incremental checkpoints and restore (with rescaling) of the RocksDB backend.
//!
//! A checkpoint flushes the memtables, takes a RocksDB checkpoint (hard links of the live
//! files) in the instance directory, and uploads:
//! - SST and blob files, which RocksDB never modifies and names uniquely within a DB, as
//!   *shared* files under `shared/<instance>/`, unless an earlier checkpoint of this instance
//!   (or the checkpoint it was restored from) already holds them;
//! - the DB's MANIFEST, CURRENT and OPTIONS files as *private* files of the checkpoint;
//! - last, statekit's `MANIFEST` listing every file with size and CRC32C.
//!
//! Shared files are reference-counted over the retained checkpoints; when a checkpoint falls
//! out of retention, the shared files no retained checkpoint references are deleted, but only
//! those this instance uploaded: files inherited through a restore may be referenced by the
//! checkpoints of other instances (after a rescale, several instances share them), so they
//! are left to whoever manages the checkpoints restored from.
//!
//! Restore picks the handle with the largest overlap with the owned key groups as the base,
//! downloads its files and opens them as the new DB (no rewrite), clips the key groups
//! outside the owned range with `delete_range`, then copies the owned key groups of every
//! other handle into it through bounded iterators (Flink's approach to rescaling). Full
//! snapshots ([`FULL_FORMAT`]) restore by inserting their records, so a job can move from the
//! in-memory backend to this one. Everything happens in a new directory; the current DB is
//! replaced only once all of it has succeeded.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use ::rocksdb::{checkpoint::Checkpoint, ColumnFamilyDescriptor, FlushOptions, Options, DB};
use serde::{Deserialize, Serialize};

use super::keys::{
    entry_key, key_group_bounds, timer_index_bounds, timer_time_key, with_expiry, TIMER_BY_GROUP,
};
use super::{cf_name, cf_options, open_db, random_id, rocks_err, OpenDb, RocksDbBackend};
use crate::backend::{
    resolve_registration, states_after_restore, Checkpointing, Scope, StateBackend,
    StateDescriptor, StateId, StateKind,
};
use crate::checkpoint::{
    checkpoint_location, delete_location, encode_manifest, handles_for_range,
    read_checked_manifest, read_full_snapshot, under_operator, CheckpointHandle, CheckpointStorage,
    ManifestHeader, ManifestIdentity, SnapshotRecord, FULL_FORMAT,
};
use crate::error::{Error, ErrorKind, Result};
use crate::instance::InstanceConfig;
use crate::keygroup::KeyGroupRange;

/// The format name of the RocksDB backend's incremental checkpoints.
pub const ROCKSDB_FORMAT: &str = "statekit-rocksdb-incremental-v1";

/// Flush a restore copy batch at this size.
const COPY_BATCH_BYTES: usize = 4 << 20;

/// What the last checkpoint did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStats {
    /// The checkpoint id.
    pub checkpoint_id: u64,
    /// Files the checkpoint consists of.
    pub files_total: usize,
    /// Files uploaded by this checkpoint.
    pub files_uploaded: usize,
    /// Shared (SST) files reused from earlier checkpoints.
    pub files_reused: usize,
    /// Bytes of all files of the checkpoint.
    pub bytes_total: u64,
    /// Bytes uploaded by this checkpoint.
    pub bytes_uploaded: u64,
    /// Wall time of the checkpoint call.
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileEntry {
    /// The file's name in the DB directory.
    name: String,
    /// Its path in the checkpoint storage.
    path: String,
    size: u64,
    crc32c: u32,
    shared: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct IncrementalManifest {
    #[serde(flatten)]
    header: ManifestHeader,
    files: Vec<FileEntry>,
}

impl ManifestIdentity for IncrementalManifest {
    fn header(&self) -> &ManifestHeader {
        &self.header
    }
}

/// Bookkeeping of shared files across checkpoints.
#[derive(Debug)]
pub(crate) struct Incremental {
    /// Shared files already in the storage, by local file name: reused if still live.
    known: HashMap<String, FileEntry>,
    /// References from retained checkpoints, by storage path.
    refs: HashMap<String, u32>,
    /// Shared paths of each retained checkpoint, oldest first.
    retained: VecDeque<(u64, Vec<String>)>,
    /// Storage prefixes of the shared files this instance uploaded (one per DB generation).
    own_prefixes: Vec<String>,
    /// The prefix new shared files go to.
    current_prefix: String,
    last: Option<CheckpointStats>,
}

impl Incremental {
    pub(crate) fn new(config: &InstanceConfig, uid: &str) -> Self {
        let prefix = shared_prefix(config, uid);
        Incremental {
            known: HashMap::new(),
            refs: HashMap::new(),
            retained: VecDeque::new(),
            own_prefixes: vec![prefix.clone()],
            current_prefix: prefix,
            last: None,
        }
    }

    fn owns(&self, path: &str) -> bool {
        self.own_prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    }
}

/// Where an instance's shared files go: under its operator id, in a directory of its own
/// (the uid changes with every restore).
fn shared_prefix(config: &InstanceConfig, uid: &str) -> String {
    let key_groups = config.key_groups;
    under_operator(
        config.operator_id.as_deref(),
        format!(
            "shared/rocksdb-kg{:05}-{:05}-{uid}/",
            key_groups.start, key_groups.end
        ),
    )
}

fn is_shared_file(name: &str) -> bool {
    name.ends_with(".sst") || name.ends_with(".blob")
}

/// CRC32C of a local file, streamed.
fn file_crc(path: &Path) -> Result<(u64, u32)> {
    let mut file = fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut crc, mut len) = (0u32, 0u64);
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io(path.display(), e))?;
        if n == 0 {
            return Ok((len, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len += n as u64;
    }
}

impl RocksDbBackend {
    /// What the last successful checkpoint uploaded and reused.
    pub fn last_checkpoint_stats(&self) -> Option<&CheckpointStats> {
        self.incremental.last.as_ref()
    }

    pub(super) fn flush_all(&self) -> Result<()> {
        self.write_pending_timers()?;
        // Kept iterators would pin the memtables about to be flushed.
        self.open.db.release_iterators();
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        let cfs = self
            .cf_names
            .iter()
            .filter_map(|n| self.db().cf_handle(n))
            .collect::<Vec<_>>();
        if cfs.is_empty() {
            return Ok(());
        }
        self.db()
            .flush_cfs_opt(&cfs, &fo)
            .map_err(|e| rocks_err(format!("flushing {}", self.db_path().display()), e))
    }

    fn take_checkpoint(&mut self, checkpoint_id: u64) -> Result<CheckpointHandle> {
        let started = Instant::now();
        self.checkpoints.check_next(checkpoint_id)?;
        let storage = self.config.storage()?.clone();
        // Without a WAL the memtables exist nowhere else: flush them into SST files first.
        self.flush_all()?;
        let local = self
            .instance_dir
            .0
            .join(format!("checkpoint-{checkpoint_id}"));
        if local.exists() {
            fs::remove_dir_all(&local).map_err(|e| Error::io(local.display(), e))?;
        }
        Checkpoint::new(self.db())
            .and_then(|c| c.create_checkpoint(&local))
            .map_err(|e| rocks_err(format!("RocksDB checkpoint into {}", local.display()), e))?;
        let location = checkpoint_location(
            self.config.operator_id.as_deref(),
            self.name(),
            checkpoint_id,
            self.config.key_groups,
        );
        let mut uploaded: Vec<String> = Vec::new();
        let result = self.upload(
            storage.as_ref(),
            &local,
            &location,
            checkpoint_id,
            &mut uploaded,
        );
        let _ = fs::remove_dir_all(&local);
        let (manifest, mut stats) = match result {
            Ok(r) => r,
            Err(e) => {
                // Nothing may reference what this attempt uploaded: remove it, the manifest
                // first (its put may have taken effect with its response lost). If that
                // delete fails, the files stay, so a visible manifest never points at nothing.
                let manifest = format!("{location}/MANIFEST");
                if storage.delete(&manifest).is_ok() {
                    for path in uploaded.iter().filter(|p| **p != manifest) {
                        let _ = storage.delete(path);
                    }
                }
                return Err(e.context(format!(
                    "checkpoint {checkpoint_id} to {}/{location}",
                    storage.describe()
                )));
            }
        };
        let shared: Vec<String> = manifest
            .files
            .iter()
            .filter(|f| f.shared)
            .map(|f| f.path.clone())
            .collect();
        for path in &shared {
            *self.incremental.refs.entry(path.clone()).or_insert(0) += 1;
        }
        self.incremental.known = manifest
            .files
            .iter()
            .filter(|f| f.shared)
            .map(|f| (f.name.clone(), f.clone()))
            .collect();
        self.incremental.retained.push_back((checkpoint_id, shared));
        let handle = CheckpointHandle {
            checkpoint_id,
            backend: self.name().to_string(),
            format: ROCKSDB_FORMAT.to_string(),
            location,
            key_groups: self.config.key_groups,
        };
        self.checkpoints.taken(handle.clone());
        stats.duration = started.elapsed();
        self.incremental.last = Some(stats);
        Ok(handle)
    }

    /// Uploads the files of a local RocksDB checkpoint, then the manifest.
    fn upload(
        &self,
        storage: &dyn CheckpointStorage,
        local: &Path,
        location: &str,
        checkpoint_id: u64,
        uploaded: &mut Vec<String>,
    ) -> Result<(IncrementalManifest, CheckpointStats)> {
        let mut names = Vec::new();
        for entry in fs::read_dir(local).map_err(|e| Error::io(local.display(), e))? {
            let entry = entry.map_err(|e| Error::io(local.display(), e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        let mut stats = CheckpointStats {
            checkpoint_id,
            ..CheckpointStats::default()
        };
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let file = local.join(&name);
            let shared = is_shared_file(&name);
            let size = fs::metadata(&file)
                .map_err(|e| Error::io(file.display(), e))?
                .len();
            let reuse = shared
                .then(|| self.incremental.known.get(&name))
                .flatten()
                .filter(|known| known.size == size);
            let entry = match reuse {
                Some(known) => {
                    stats.files_reused += 1;
                    known.clone()
                }
                None => {
                    let path = if shared {
                        format!("{}{name}", self.incremental.current_prefix)
                    } else {
                        format!("{location}/{name}")
                    };
                    let (len, crc32c) = file_crc(&file)?;
                    uploaded.push(path.clone());
                    let put = storage.put_file(&path, &file)?;
                    if put != len {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            format!("{path}: uploaded {put} bytes of {len} (file changed?)"),
                        ));
                    }
                    stats.files_uploaded += 1;
                    stats.bytes_uploaded += len;
                    FileEntry {
                        name,
                        path,
                        size: len,
                        crc32c,
                        shared,
                    }
                }
            };
            stats.bytes_total += entry.size;
            files.push(entry);
        }
        stats.files_total = files.len();
        let manifest = IncrementalManifest {
            header: ManifestHeader {
                format: ROCKSDB_FORMAT.to_string(),
                backend: self.name().to_string(),
                checkpoint_id,
                max_parallelism: self.config.max_parallelism,
                key_groups: self.config.key_groups,
                states: self.states.clone(),
            },
            files,
        };
        let path = format!("{location}/MANIFEST");
        uploaded.push(path.clone());
        storage.put(&path, &encode_manifest(&manifest)?)?;
        Ok((manifest, stats))
    }

    /// Deletes a checkpoint that fell out of retention or was aborted, and the shared files this instance
    /// owns that no retained checkpoint references any more. Best effort: a failed delete
    /// leaves garbage, never a broken checkpoint.
    fn release(&mut self, storage: &dyn CheckpointStorage, old: &CheckpointHandle) {
        let _ = delete_location(storage, &old.location);
        let Some(pos) = self
            .incremental
            .retained
            .iter()
            .position(|(id, _)| *id == old.checkpoint_id)
        else {
            return;
        };
        let Some((_, shared)) = self.incremental.retained.remove(pos) else {
            return;
        };
        for path in shared {
            let Some(count) = self.incremental.refs.get_mut(&path) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.incremental.refs.remove(&path);
                let still_live = self.incremental.known.values().any(|f| f.path == path);
                if self.incremental.owns(&path) && !still_live {
                    let _ = storage.delete(&path);
                }
            }
        }
    }

    fn restore_from(&mut self, handles: &[CheckpointHandle]) -> Result<()> {
        let storage = self.config.storage()?.clone();
        let owned = self.config.key_groups;
        let handles = handles_for_range(handles, owned)?;
        for h in &handles {
            if h.format != ROCKSDB_FORMAT && h.format != FULL_FORMAT {
                return Err(Error::new(
                    ErrorKind::Incompatible,
                    format!(
                        "checkpoint {} at {} has format '{}'; the rocksdb backend restores \
                         {ROCKSDB_FORMAT} and {FULL_FORMAT}",
                        h.checkpoint_id, h.location, h.format
                    ),
                ));
            }
        }
        // Read every incremental manifest first: a missing or corrupt one fails the restore
        // before anything is downloaded.
        let mut manifests = Vec::with_capacity(handles.len());
        for h in &handles {
            manifests.push(if h.format == ROCKSDB_FORMAT {
                Some(read_manifest(
                    storage.as_ref(),
                    h,
                    self.config.max_parallelism,
                )?)
            } else {
                None
            });
        }
        // The old DB's kept iterators would pin its files while the new one is built.
        self.open.db.release_iterators();
        let generation = self.generation + 1;
        let work = self.instance_dir.0.join(format!("restore-{generation}"));
        let result = self.build_restored(storage.as_ref(), &handles, &manifests, generation, &work);
        let _ = fs::remove_dir_all(&work);
        let (open, states) = result?;
        // Success: swap in the new DB (the old one is closed and its directory removed).
        self.open = open;
        self.cf_names = states.iter().map(|d| cf_name(&d.name)).collect();
        self.keeps_iterator = states
            .iter()
            .map(|d| super::has_scope_extractor(&self.settings, d))
            .collect();
        self.timer_floor = vec![None; states.len()];
        self.pending_timers.get_mut().clear();
        self.states = states;
        self.generation = generation;
        self.uid = random_id();
        let prefix = shared_prefix(&self.config, &self.uid);
        self.incremental.own_prefixes.push(prefix.clone());
        self.incremental.current_prefix = prefix;
        // Restore never claims the checkpoint's files (Flink's NO_CLAIM mode): the job or
        // instance that uploaded them deletes them when its own retention drops them, and
        // nothing tells it that this instance references them. So the first checkpoint
        // after a restore uploads every file anew under this instance's own prefix, and its
        // checkpoints never depend on anyone else's.
        self.incremental.known = HashMap::new();
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn build_restored(
        &self,
        storage: &dyn CheckpointStorage,
        handles: &[&CheckpointHandle],
        manifests: &[Option<IncrementalManifest>],
        generation: u64,
        work: &Path,
    ) -> Result<(OpenDb, Vec<StateDescriptor>)> {
        let owned = self.config.key_groups;
        let db_path = self.instance_dir.0.join(format!("db-{generation}"));
        if db_path.exists() {
            fs::remove_dir_all(&db_path).map_err(|e| Error::io(db_path.display(), e))?;
        }
        // The base: the incremental checkpoint overlapping most of the owned range.
        let base = manifests
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
            .max_by_key(|(_, m)| m.header.key_groups.intersect(&owned).map_or(0, |r| r.len()));
        let mut states: Vec<StateDescriptor> = Vec::new();
        let mut open = match base {
            Some((_, m)) => {
                fs::create_dir_all(&db_path).map_err(|e| Error::io(db_path.display(), e))?;
                if let Err(e) = download(storage, m, &db_path) {
                    let _ = fs::remove_dir_all(&db_path);
                    return Err(e);
                }
                states = m.header.states.clone();
                // From here on the opened DB's guard removes the directory on any error.
                let open = open_db(&self.settings, &self.ttl_clock, &db_path, &states)?;
                clip(open.db.db(), &states, owned)?;
                open
            }
            None => open_db(&self.settings, &self.ttl_clock, &db_path, &[])?,
        };
        for (i, handle) in handles.iter().enumerate() {
            if base.is_some_and(|(b, _)| b == i) {
                continue;
            }
            let Some(range) = handle.key_groups.intersect(&owned) else {
                continue;
            };
            match &manifests[i] {
                Some(m) => {
                    let ids = register_all(&mut open, &mut states, &m.header.states, self)?;
                    let dir = work.join(format!("source-{i}"));
                    fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
                    download(storage, m, &dir)?;
                    copy_range(
                        self,
                        open.db.db(),
                        &states,
                        &ids,
                        &dir,
                        &m.header.states,
                        range,
                    )?;
                    let _ = fs::remove_dir_all(&dir);
                }
                None => {
                    let snapshot = read_full_snapshot(storage, handle)?;
                    if snapshot.max_parallelism() != self.config.max_parallelism {
                        return Err(Error::invalid(format!(
                            "checkpoint {} was written with max parallelism {}, this instance \
                             has {}",
                            handle.checkpoint_id,
                            snapshot.max_parallelism(),
                            self.config.max_parallelism
                        )));
                    }
                    let ids = register_all(&mut open, &mut states, snapshot.states(), self)?;
                    import_full(open.db.db(), &states, &ids, storage, &snapshot, range)?;
                }
            }
        }
        // States registered before the restore keep their ids; those the checkpoints lack
        // get empty column families.
        let ordered = states_after_restore(&self.states, &states)?;
        for d in &ordered {
            if !states.iter().any(|s| s.name == d.name) {
                let opts = cf_options(&self.settings, d, &self.ttl_clock)?;
                open.create_cf(&cf_name(&d.name), opts)?;
            }
        }
        Ok((open, ordered))
    }
}

fn read_manifest(
    storage: &dyn CheckpointStorage,
    handle: &CheckpointHandle,
    max_parallelism: u16,
) -> Result<IncrementalManifest> {
    let m: IncrementalManifest = read_checked_manifest(storage, handle, ROCKSDB_FORMAT)?;
    if m.header.max_parallelism != max_parallelism {
        return Err(Error::invalid(format!(
            "checkpoint {} was written with max parallelism {}, this instance has {}",
            handle.checkpoint_id, m.header.max_parallelism, max_parallelism
        )));
    }
    Ok(m)
}

/// Downloads every file of a checkpoint into `dir`, checking sizes and checksums.
fn download(storage: &dyn CheckpointStorage, m: &IncrementalManifest, dir: &Path) -> Result<()> {
    for f in &m.files {
        if f.name.contains('/') || f.name.starts_with('.') {
            return Err(Error::corruption(format!(
                "checkpoint {}: file name '{}' is not a plain file name",
                m.header.checkpoint_id, f.name
            )));
        }
        let local = dir.join(&f.name);
        storage.get_to_file(&f.path, &local)?;
        let (len, crc) = file_crc(&local)?;
        if len != f.size || crc != f.crc32c {
            return Err(Error::corruption(format!(
                "{}{}: {len} bytes with crc32c {crc:08x}, the manifest of checkpoint {} says \
                 {} bytes with {:08x}",
                storage.describe(),
                f.path,
                m.header.checkpoint_id,
                f.size,
                f.crc32c
            )));
        }
    }
    Ok(())
}

/// Registers `incoming` states into the DB being restored, returning their ids there.
fn register_all(
    open: &mut OpenDb,
    states: &mut Vec<StateDescriptor>,
    incoming: &[StateDescriptor],
    backend: &RocksDbBackend,
) -> Result<Vec<StateId>> {
    incoming
        .iter()
        .map(|d| {
            let (id, is_new) = resolve_registration(states, d)?;
            if is_new {
                let name = cf_name(&d.name);
                let opts = cf_options(&backend.settings, d, &backend.ttl_clock)?;
                open.create_cf(&name, opts)?;
                states.push(d.clone());
            }
            Ok(id)
        })
        .collect()
}

/// Removes everything outside `owned` from every state of a restored DB.
fn clip(db: &DB, states: &[StateDescriptor], owned: KeyGroupRange) -> Result<()> {
    let (lo, hi) = key_group_bounds(owned);
    for desc in states {
        let name = cf_name(&desc.name);
        let cf = db.cf_handle(&name).ok_or_else(|| {
            Error::corruption(format!("restored DB lacks column family '{name}'"))
        })?;
        let err = |e| rocks_err(format!("clipping '{name}' to key groups {owned}"), e);
        if desc.kind == StateKind::Timers {
            // The firing-order index mixes key groups: read it whole. The per-group index of
            // earlier versions' checkpoints goes with one range delete.
            let mut batch = ::rocksdb::WriteBatch::default();
            batch.delete_range_cf(cf, [TIMER_BY_GROUP], [TIMER_BY_GROUP + 1]);
            let (lower, upper) = timer_index_bounds();
            let mut ro = ::rocksdb::ReadOptions::default();
            ro.set_iterate_lower_bound(lower);
            ro.set_iterate_upper_bound(upper);
            let mut iter = db.raw_iterator_cf_opt(cf, ro);
            iter.seek_to_first();
            while let Some(k) = iter.key() {
                let t = super::keys::decode_timer_key(k)?;
                if !owned.contains(t.key_group) {
                    batch.delete_cf(cf, k);
                }
                iter.next();
            }
            iter.status().map_err(err)?;
            db.write_without_wal(batch).map_err(err)?;
        } else {
            if owned.start > 0 {
                db.delete_range_cf(cf, &[0u8, 0][..], &lo[..])
                    .map_err(err)?;
            }
            db.delete_range_cf(cf, &hi[..], &[0xFFu8][..])
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Copies the entries of `range` from a downloaded checkpoint in `dir` into `target`.
fn copy_range(
    backend: &RocksDbBackend,
    target: &DB,
    target_states: &[StateDescriptor],
    ids: &[StateId],
    dir: &Path,
    source_states: &[StateDescriptor],
    range: KeyGroupRange,
) -> Result<()> {
    let mut descriptors = vec![ColumnFamilyDescriptor::new(
        ::rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
        Options::default(),
    )];
    for d in source_states {
        descriptors.push(ColumnFamilyDescriptor::new(
            cf_name(&d.name),
            cf_options(&backend.settings, d, &backend.ttl_clock)?,
        ));
    }
    let source = DB::open_cf_descriptors_read_only(&Options::default(), dir, descriptors, false)
        .map_err(|e| rocks_err(format!("opening checkpoint copy {}", dir.display()), e))?;
    for (d, id) in source_states.iter().zip(ids) {
        let name = cf_name(&d.name);
        let src = source
            .cf_handle(&name)
            .ok_or_else(|| Error::corruption(format!("checkpoint lacks column family '{name}'")))?;
        let dst_name = cf_name(&target_states[id.index()].name);
        let dst = target
            .cf_handle(&dst_name)
            .ok_or_else(|| Error::new(ErrorKind::Internal, format!("'{dst_name}' is not open")))?;
        let (lo, hi) = if d.kind == StateKind::Timers {
            timer_index_bounds()
        } else {
            key_group_bounds(range)
        };
        let mut ro = ::rocksdb::ReadOptions::default();
        ro.set_total_order_seek(true);
        ro.set_iterate_lower_bound(lo);
        ro.set_iterate_upper_bound(hi);
        let mut iter = source.raw_iterator_cf_opt(src, ro);
        iter.seek_to_first();
        let mut batch = ::rocksdb::WriteBatch::default();
        let err = |e| rocks_err(format!("copying '{name}' from {}", dir.display()), e);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if d.kind == StateKind::Timers {
                if range.contains(super::keys::decode_timer_key(k)?.key_group) {
                    batch.put_cf(dst, k, b"");
                }
            } else {
                batch.put_cf(dst, k, v);
            }
            if batch.size_in_bytes() >= COPY_BATCH_BYTES {
                target
                    .write_without_wal(std::mem::take(&mut batch))
                    .map_err(err)?;
            }
            iter.next();
        }
        iter.status().map_err(err)?;
        target.write_without_wal(batch).map_err(err)?;
    }
    Ok(())
}

/// Inserts the records of `range` of a full snapshot.
fn import_full(
    target: &DB,
    states: &[StateDescriptor],
    ids: &[StateId],
    storage: &dyn CheckpointStorage,
    snapshot: &crate::checkpoint::FullSnapshot,
    range: KeyGroupRange,
) -> Result<()> {
    let cfs = ids
        .iter()
        .map(|id| {
            let name = cf_name(&states[id.index()].name);
            target
                .cf_handle(&name)
                .ok_or_else(|| Error::new(ErrorKind::Internal, format!("'{name}' is not open")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut batch = ::rocksdb::WriteBatch::default();
    let err = |e| rocks_err("importing a full snapshot", e);
    snapshot.read(storage, range, &mut |record| {
        match record {
            SnapshotRecord::Entry { state, entry } => {
                let id = ids[state];
                let scope = Scope {
                    state: id,
                    key_group: entry.key_group,
                    key: entry.key,
                    namespace: entry.namespace,
                };
                let value = match states[id.index()].ttl {
                    Some(_) => with_expiry(entry.expires_at.unwrap_or(u64::MAX), entry.value),
                    None => entry.value.to_vec(),
                };
                batch.put_cf(cfs[state], entry_key(&scope, entry.user_key), value);
            }
            SnapshotRecord::Timer { state, timer } => {
                batch.put_cf(cfs[state], timer_time_key(&timer), b"");
            }
        }
        if batch.size_in_bytes() >= COPY_BATCH_BYTES {
            target
                .write_without_wal(std::mem::take(&mut batch))
                .map_err(err)?;
        }
        Ok(())
    })?;
    target.write_without_wal(batch).map_err(err)
}

impl Checkpointing for RocksDbBackend {
    fn checkpoint(&mut self, checkpoint_id: u64) -> Result<CheckpointHandle> {
        self.take_checkpoint(checkpoint_id)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let retired = self
            .checkpoints
            .confirm(checkpoint_id, self.config.retained_checkpoints)?;
        let storage = self.config.storage()?.clone();
        for old in retired {
            self.release(storage.as_ref(), &old);
        }
        Ok(())
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
        if let Some(aborted) = self.checkpoints.abort(checkpoint_id)? {
            let storage = self.config.storage()?.clone();
            self.release(storage.as_ref(), &aborted);
        }
        Ok(())
    }

    fn restore(&mut self, handles: &[CheckpointHandle]) -> Result<()> {
        self.restore_from(handles)
    }
}

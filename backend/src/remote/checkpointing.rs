//! Checkpoints and restore: pinning the database as a SlateDB checkpoint behind a statekit
//! manifest, retiring old ones, and rebuilding an instance from checkpoint handles.

use std::sync::Arc;

use object_store::path::Path;
use serde::{Deserialize, Serialize};
use slatedb::config::{CheckpointOptions, CheckpointScope};
use slatedb::CloneSourceSpec;

use super::keys::{encode_value, entry_key, key_group_span, scope_prefix, timer_key};
use super::{runtime, sizes, slate_error, RemoteBackend, NAME, REMOTE_FORMAT};
use crate::backend::{states_after_restore, CheckpointSize, Checkpointing, Scope, StateDescriptor};
use crate::checkpoint::{
    checkpoint_location, delete_location, encode_manifest, handles_for_range,
    read_checked_manifest, read_full_snapshot, CheckpointHandle, CheckpointStorage, ManifestHeader,
    ManifestIdentity, SnapshotRecord, FULL_FORMAT,
};
use crate::error::{Error, ErrorKind, Result};
use crate::keygroup::{KeyGroup, KeyGroupRange};

/// A SlateDB checkpoint pinning an instance's database (see
/// [`RemoteBackend::pinned_checkpoints`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedCheckpoint {
    /// Its name (`statekit-<id>` for statekit's checkpoints).
    pub name: Option<String>,
    /// When it expires (Unix ms), `None` for never.
    pub expires_at_unix_ms: Option<i64>,
}

/// How long the SlateDB checkpoint behind a statekit checkpoint lives until the checkpoint's
/// MANIFEST is written; then it is made permanent. Far longer than writing one small file.
const UNCONFIRMED_PIN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// The statekit manifest of a remote checkpoint, written last into checkpoint storage.
#[derive(Debug, Serialize, Deserialize)]
struct RemoteManifest {
    #[serde(flatten)]
    header: ManifestHeader,
    /// The store URL, for messages (no credentials).
    store: String,
    /// The database, relative to the store's root.
    db_path: String,
    /// The SlateDB checkpoint pinning the database's state.
    slatedb_checkpoint: uuid::Uuid,
}

impl ManifestIdentity for RemoteManifest {
    fn header(&self) -> &ManifestHeader {
        &self.header
    }
}

impl RemoteBackend {
    /// The SlateDB checkpoints that pin this instance's database, oldest first: those of
    /// statekit's checkpoints (named `statekit-<id>`, no expiry once complete) and those
    /// that clones restored from them hold. For inspecting what keeps tables alive.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn pinned_checkpoints(&self) -> Result<Vec<PinnedCheckpoint>> {
        let path = self.store.path_of(&self.db_rel);
        let listed = runtime::block_on(self.store.admin(&path).list_checkpoints(None))?
            .map_err(|e| slate_error(format!("listing the checkpoints of {}", self.what()), e))?;
        Ok(listed
            .into_iter()
            .map(|c| PinnedCheckpoint {
                name: c.name,
                expires_at_unix_ms: c.expire_time.map(|t| t.timestamp_millis()),
            })
            .collect())
    }

    fn manifest_of(
        storage: &dyn CheckpointStorage,
        handle: &CheckpointHandle,
    ) -> Result<RemoteManifest> {
        read_checked_manifest(storage, handle, REMOTE_FORMAT)
    }

    /// Deletes a checkpoint that fell out of retention or was aborted: its manifest first (so it is never
    /// restorable half-deleted), then the SlateDB checkpoint that pins its tables.
    fn drop_checkpoint(
        &self,
        storage: &dyn CheckpointStorage,
        handle: &CheckpointHandle,
    ) -> Result<()> {
        let manifest = Self::manifest_of(storage, handle)?;
        delete_location(storage, &handle.location)?;
        let path = self.store.path_of(&manifest.db_path);
        let what = format!("{}/{}", self.store.describe, manifest.db_path);
        runtime::block_on(
            self.store
                .admin(&path)
                .delete_checkpoint(manifest.slatedb_checkpoint),
        )?
        .map_err(|e| slate_error(format!("deleting a checkpoint of {what}"), e))
    }

    /// Builds the restored instance beside this one; `self` is untouched until it succeeds.
    fn build_restored(&self, handles: &[CheckpointHandle]) -> Result<RemoteBackend> {
        let storage = self.config.storage()?.clone();
        let owned = self.config.key_groups;
        let mut overlapping: Vec<&CheckpointHandle> = handles_for_range(handles, owned)?;
        overlapping.sort_by_key(|h| (h.key_groups.start, h.key_groups.end));
        let mut sources: Vec<CloneSourceSpec> = Vec::new();
        let mut fulls = Vec::new();
        // States registered before the restore keep their ids.
        let mut states: Vec<StateDescriptor> = self.states.clone();
        let mut merge_states = |incoming: &[StateDescriptor]| -> Result<()> {
            states = states_after_restore(&states, incoming)?;
            Ok(())
        };
        // Give every owned key group to exactly one handle: clone sources must not overlap.
        let mut next: u32 = u32::from(owned.start);
        for handle in overlapping {
            let Some(clip) = handle.key_groups.intersect(&owned) else {
                continue;
            };
            if u32::from(clip.end) < next {
                continue;
            }
            let clip = KeyGroupRange {
                start: clip.start.max(next as KeyGroup),
                end: clip.end,
            };
            next = u32::from(clip.end) + 1;
            let mp_mismatch = |mp: u16| {
                Error::invalid(format!(
                    "checkpoint {} was written with max parallelism {mp}, this instance has {}",
                    handle.checkpoint_id, self.config.max_parallelism
                ))
            };
            match handle.format.as_str() {
                REMOTE_FORMAT => {
                    let manifest = Self::manifest_of(storage.as_ref(), handle)?;
                    if manifest.header.max_parallelism != self.config.max_parallelism {
                        return Err(mp_mismatch(manifest.header.max_parallelism));
                    }
                    merge_states(&manifest.header.states)?;
                    let path = self.store.path_of(&manifest.db_path);
                    let listed = runtime::block_on(self.store.admin(&path).list_checkpoints(None))?
                        .map_err(|e| {
                            let e = slate_error(
                                format!(
                                    "checkpoint {}: database {}/{}",
                                    handle.checkpoint_id, self.store.describe, manifest.db_path
                                ),
                                e,
                            );
                            if e.kind() == ErrorKind::InvalidArgument {
                                Error::new(ErrorKind::NotFound, e.message().to_string())
                            } else {
                                e
                            }
                        })?;
                    if !listed.iter().any(|c| c.id == manifest.slatedb_checkpoint) {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "checkpoint {}: SlateDB checkpoint {} of {}/{} no longer exists \
                                 (deleted by retention?)",
                                handle.checkpoint_id,
                                manifest.slatedb_checkpoint,
                                self.store.describe,
                                manifest.db_path
                            ),
                        ));
                    }
                    sources.push(
                        CloneSourceSpec::with_checkpoint(path, manifest.slatedb_checkpoint)
                            .with_projection_range(key_group_span(clip)),
                    );
                }
                FULL_FORMAT => {
                    let snapshot = read_full_snapshot(storage.as_ref(), handle)?;
                    if snapshot.max_parallelism() != self.config.max_parallelism {
                        return Err(mp_mismatch(snapshot.max_parallelism()));
                    }
                    merge_states(snapshot.states())?;
                    fulls.push((snapshot, clip));
                }
                other => {
                    return Err(Error::new(
                        ErrorKind::Incompatible,
                        format!(
                            "checkpoint {} has format '{other}'; the remote backend restores \
                             {REMOTE_FORMAT} and {FULL_FORMAT}",
                            handle.checkpoint_id
                        ),
                    ))
                }
            }
        }

        let (db_rel, db_path) = self.store.new_db_path();
        let what = format!("{}/{db_rel}", self.store.describe);
        let mut sources = sources.into_iter();
        if let Some(first) = sources.next() {
            let mut clone = self
                .store
                .admin(&db_path)
                .create_clone_builder_from_source(first);
            for s in sources {
                clone = clone.with_source(s);
            }
            runtime::block_on(clone.build())?
                .map_err(|e| slate_error(format!("cloning checkpoints into {what}"), e))?;
        }
        let mut fresh = Self::open_database(self.config.clone(), &self.store, db_rel, &db_path)?;
        for d in &states {
            fresh.register_in(d)?;
        }
        for (snapshot, clip) in fulls {
            let ids = snapshot
                .states()
                .iter()
                .map(|d| fresh.register_in(d))
                .collect::<Result<Vec<_>>>()?;
            let mut batch = slatedb::WriteBatch::new();
            let mut pending = 0usize;
            snapshot.read(storage.as_ref(), clip, &mut |record| {
                match record {
                    SnapshotRecord::Entry { state, entry } => {
                        let scope = Scope {
                            state: ids[state],
                            key_group: entry.key_group,
                            key: entry.key,
                            namespace: entry.namespace,
                        };
                        let key = entry_key(
                            &scope_prefix(&scope, fresh.tags[ids[state].index()]),
                            entry.user_key,
                        );
                        batch.put(&key, encode_value(entry.expires_at, entry.value));
                        pending += key.len() + entry.value.len();
                    }
                    SnapshotRecord::Timer { state, timer } => {
                        let key = timer_key(fresh.tags[ids[state].index()], &timer);
                        batch.put(&key, encode_value(None, &[]));
                        pending += key.len();
                    }
                }
                if pending >= 4 << 20 {
                    fresh.commit(std::mem::take(&mut batch))?;
                    pending = 0;
                }
                Ok(())
            })?;
            fresh.commit(batch)?;
        }
        fresh.load_timer_heads()?;
        Ok(fresh)
    }
}

impl Checkpointing for RemoteBackend {
    fn checkpoint(&mut self, checkpoint_id: u64) -> Result<CheckpointHandle> {
        self.checkpoints.check_next(checkpoint_id)?;
        let storage = self.config.storage()?.clone();
        let location = checkpoint_location(
            self.config.operator_id.as_deref(),
            NAME,
            checkpoint_id,
            self.config.key_groups,
        );
        let what = self.what();
        self.write_pending_timers()?;
        // The pin expires unless this checkpoint completes: a crash before its MANIFEST is
        // written (nothing can ever restore it) must not keep its tables forever.
        let options = CheckpointOptions {
            name: Some(format!("statekit-{checkpoint_id}")),
            lifetime: Some(UNCONFIRMED_PIN_LIFETIME),
            ..CheckpointOptions::default()
        };
        let created = self.within_flush_timeout(
            &format!("checkpoint {checkpoint_id} of {what}"),
            self.db.create_checkpoint(CheckpointScope::All, &options),
        )?;
        let manifest = RemoteManifest {
            header: ManifestHeader {
                format: REMOTE_FORMAT.to_string(),
                backend: NAME.to_string(),
                checkpoint_id,
                max_parallelism: self.config.max_parallelism,
                key_groups: self.config.key_groups,
                states: self.states.clone(),
            },
            store: self.store.describe.clone(),
            db_path: self.db_rel.clone(),
            slatedb_checkpoint: created.id,
        };
        self.checkpoint_manifests
            .insert(checkpoint_id, created.manifest_id);
        let manifest_path = format!("{location}/MANIFEST");
        let admin = self.store.admin(&self.store.path_of(&self.db_rel));
        // Takes a failed checkpoint back. The MANIFEST put may have taken effect with its
        // response lost: unpin the SlateDB checkpoint only once the manifest is surely gone,
        // so a visible manifest never points at nothing.
        let take_back = || {
            if storage.delete(&manifest_path).is_ok() {
                let _ = runtime::block_on(admin.delete_checkpoint(created.id));
            }
        };
        if let Err(e) = storage.put(&manifest_path, &encode_manifest(&manifest)?) {
            take_back();
            return Err(e.context(format!(
                "checkpoint {checkpoint_id} to {}/{location}",
                storage.describe()
            )));
        }
        // The MANIFEST is durable: the pin now lasts until retention drops it. If it cannot be
        // made permanent, the checkpoint fails and is taken back like a failed MANIFEST put.
        if let Err(e) = runtime::block_on(admin.refresh_checkpoint(created.id, None))?
            .map_err(|e| slate_error(format!("checkpoint {checkpoint_id} of {what}"), e))
        {
            take_back();
            return Err(e.context("making its SlateDB checkpoint permanent"));
        }
        let handle = CheckpointHandle {
            checkpoint_id,
            backend: NAME.to_string(),
            format: REMOTE_FORMAT.to_string(),
            location,
            key_groups: self.config.key_groups,
        };
        self.checkpoints.taken(handle.clone());
        Ok(handle)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let retired = self
            .checkpoints
            .confirm(checkpoint_id, self.config.retained_checkpoints)?;
        let storage = self.config.storage()?.clone();
        for old in retired {
            // Best effort: a failed delete leaves garbage, never a broken checkpoint.
            let _ = self.drop_checkpoint(storage.as_ref(), &old);
        }
        Ok(())
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
        if let Some(aborted) = self.checkpoints.abort(checkpoint_id)? {
            let storage = self.config.storage()?.clone();
            let _ = self.drop_checkpoint(storage.as_ref(), &aborted);
        }
        Ok(())
    }

    fn restore(&mut self, handles: &[CheckpointHandle]) -> Result<()> {
        let mut fresh = self.build_restored(handles)?;
        fresh.checkpoints = std::mem::take(&mut self.checkpoints);
        std::mem::swap(self, &mut fresh);
        // `fresh` now holds the old instance; dropping it closes its database.
        drop(fresh);
        Ok(())
    }

    /// Lists the store: the tables the checkpoint's manifest references, with their sizes
    /// in the store; added are those the previous checkpoint's manifest did not list (all of
    /// them if that manifest is gone).
    fn checkpoint_size(&self, handle: &CheckpointHandle) -> Result<Option<CheckpointSize>> {
        let Some(&manifest_id) = self.checkpoint_manifests.get(&handle.checkpoint_id) else {
            return Ok(None);
        };
        let previous = self
            .checkpoint_manifests
            .range(..handle.checkpoint_id)
            .next_back()
            .map(|(_, &m)| m);
        let what = format!("checkpoint {} of {}", handle.checkpoint_id, self.what());
        let store = Arc::clone(&self.store.store);
        let db = self.store.path_of(&self.db_rel);
        let admin = self.store.admin(&db);
        runtime::block_on(async move {
            let read = |id| admin.read_manifest(Some(id));
            let manifest = read(manifest_id)
                .await
                .map_err(|e| slate_error(format!("reading the manifest of {what}"), e))?
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("{what}: manifest {manifest_id} is gone"),
                    )
                })?;
            let (tables, external) = sizes::tables_of(&manifest);
            let mut table_sizes = sizes::table_sizes(store.as_ref(), &db).await?;
            for other in external {
                table_sizes.extend(sizes::table_sizes(store.as_ref(), &Path::from(other)).await?);
            }
            let total_bytes = sizes::bytes_of(&tables, &table_sizes);
            // A manifest garbage collection already removed counts as "nothing before".
            let before = match previous {
                Some(id) => read(id).await.ok().flatten(),
                None => None,
            };
            let added_bytes = match before {
                Some(m) => {
                    let (old, _) = sizes::tables_of(&m);
                    let new: std::collections::HashSet<String> =
                        tables.difference(&old).cloned().collect();
                    sizes::bytes_of(&new, &table_sizes)
                }
                None => total_bytes,
            };
            Ok(Some(CheckpointSize {
                total_bytes,
                added_bytes,
            }))
        })?
    }
}

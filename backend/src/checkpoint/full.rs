//! The full snapshot format: every live entry and timer, grouped by key group.
//!
//! It is backend neutral: any backend can write it through [`StateRead`] and [`TimerStore`],
//! and any backend can restore it, so a job can move between backends through a checkpoint.
//! Layout under the checkpoint's location:
//! - `data-NNNNN`: parts of about [`PART_TARGET_BYTES`] (a part ends after the key-group
//!   block that reaches it), each a run of key-group blocks;
//! - `MANIFEST` (written last): format, states, and per key group the part, offset, length
//!   and CRC32C of its block, so a restore of a key-group sub-range reads only its blocks.
//!
//! A block is a sequence of records:
//! `1 | state varint | key | namespace | user key | value | expiry varint` (byte strings
//! varint-length-prefixed, expiry 0 for none else ms + 1) or
//! `2 | state varint | timestamp i64 order-preserving | key | namespace`.

use serde::{Deserialize, Serialize};

use super::{
    checkpoint_location, encode_manifest, read_checked_manifest, CheckpointHandle,
    CheckpointStorage, ManifestHeader, ManifestIdentity,
};
use crate::backend::{
    EntryRef, StateDescriptor, StateId, StateKind, StateRead, Timer, TimerStore, Visit,
};
use crate::codec::{get_length_prefixed, get_varint, put_length_prefixed, put_varint, KeyCodec};
use crate::error::{Error, ErrorKind, Result};
use crate::keygroup::{KeyGroup, KeyGroupRange};

/// The format name of full snapshots.
pub const FULL_FORMAT: &str = "statekit-full-v1";

/// Target size of one data part. A part is built in memory before it is written, so this
/// bounds what a checkpoint adds to the process's memory (with one key group's block); at
/// 64 MiB a memory backend's peak RSS grew by ~70 MiB at every checkpoint.
pub const PART_TARGET_BYTES: usize = 8 << 20;

const TAG_ENTRY: u8 = 1;
const TAG_TIMER: u8 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct FullManifest {
    #[serde(flatten)]
    header: ManifestHeader,
    parts: Vec<String>,
    blocks: Vec<BlockInfo>,
    entries: u64,
    timers: u64,
    data_bytes: u64,
}

impl ManifestIdentity for FullManifest {
    fn header(&self) -> &ManifestHeader {
        &self.header
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct BlockInfo {
    key_group: KeyGroup,
    part: u32,
    offset: u64,
    len: u64,
    crc32c: u32,
}

/// One record of a full snapshot, handed to the restoring backend.
#[derive(Debug)]
pub enum SnapshotRecord<'a> {
    /// A live entry of state number `state` (an index into [`FullSnapshot::states`]).
    Entry {
        /// Index of the state in the snapshot's state list.
        state: usize,
        /// The entry.
        entry: EntryRef<'a>,
    },
    /// A timer of queue number `state`.
    Timer {
        /// Index of the timer queue in the snapshot's state list.
        state: usize,
        /// The timer.
        timer: Timer,
    },
}

/// Writes a full snapshot of `backend`'s states and timers in `key_groups` and returns its
/// handle. The manifest goes last; on error no handle exists and stray parts are removed.
///
/// # Errors
/// Errors of the backend's scans or of the storage.
#[allow(clippy::too_many_arguments)]
pub fn write_full_snapshot<B: StateRead + TimerStore + ?Sized>(
    backend: &B,
    operator_id: Option<&str>,
    backend_name: &str,
    states: &[StateDescriptor],
    max_parallelism: u16,
    key_groups: KeyGroupRange,
    storage: &dyn CheckpointStorage,
    checkpoint_id: u64,
) -> Result<CheckpointHandle> {
    let location = checkpoint_location(operator_id, backend_name, checkpoint_id, key_groups);
    let mut manifest = FullManifest {
        header: ManifestHeader {
            format: FULL_FORMAT.to_string(),
            backend: backend_name.to_string(),
            checkpoint_id,
            max_parallelism,
            key_groups,
            states: states.to_vec(),
        },
        parts: Vec::new(),
        blocks: Vec::new(),
        entries: 0,
        timers: 0,
        data_bytes: 0,
    };
    let result = write_parts(
        backend,
        states,
        key_groups,
        storage,
        &location,
        &mut manifest,
    )
    .and_then(|()| {
        storage.put(
            &format!("{location}/MANIFEST"),
            &encode_manifest(&manifest)?,
        )
    });
    if let Err(e) = result {
        for part in &manifest.parts {
            let _ = storage.delete(&format!("{location}/{part}"));
        }
        return Err(e.context(format!(
            "checkpoint {checkpoint_id} to {}/{location}",
            storage.describe()
        )));
    }
    Ok(CheckpointHandle {
        checkpoint_id,
        backend: backend_name.to_string(),
        format: FULL_FORMAT.to_string(),
        location,
        key_groups,
    })
}

fn write_parts<B: StateRead + TimerStore + ?Sized>(
    backend: &B,
    states: &[StateDescriptor],
    key_groups: KeyGroupRange,
    storage: &dyn CheckpointStorage,
    location: &str,
    manifest: &mut FullManifest,
) -> Result<()> {
    let mut part = Vec::new();
    let flush = |part: &mut Vec<u8>, manifest: &mut FullManifest| -> Result<()> {
        let name = format!("data-{:05}", manifest.parts.len());
        storage.put(&format!("{location}/{name}"), part)?;
        manifest.data_bytes += part.len() as u64;
        manifest.parts.push(name);
        part.clear();
        Ok(())
    };
    for kg in key_groups.iter() {
        let start = part.len();
        let only = KeyGroupRange { start: kg, end: kg };
        for (index, desc) in states.iter().enumerate() {
            let id = StateId::from_index(index as u32);
            if desc.kind == StateKind::Timers {
                backend.scan_timers(id, only, &mut |t| {
                    part.push(TAG_TIMER);
                    put_varint(&mut part, index as u64);
                    t.timestamp.encode_key(&mut part);
                    put_length_prefixed(&mut part, &t.key);
                    put_length_prefixed(&mut part, &t.namespace);
                    manifest.timers += 1;
                    Ok(Visit::Continue)
                })?;
            } else {
                backend.scan_state(id, only, &mut |e| {
                    part.push(TAG_ENTRY);
                    put_varint(&mut part, index as u64);
                    put_length_prefixed(&mut part, e.key);
                    put_length_prefixed(&mut part, e.namespace);
                    put_length_prefixed(&mut part, e.user_key);
                    put_length_prefixed(&mut part, e.value);
                    put_varint(&mut part, e.expires_at.map_or(0, |t| t.saturating_add(1)));
                    manifest.entries += 1;
                    Ok(Visit::Continue)
                })?;
            }
        }
        if part.len() > start {
            manifest.blocks.push(BlockInfo {
                key_group: kg,
                part: manifest.parts.len() as u32,
                offset: start as u64,
                len: (part.len() - start) as u64,
                crc32c: crc32c::crc32c(&part[start..]),
            });
        }
        if part.len() >= PART_TARGET_BYTES {
            flush(&mut part, manifest)?;
        }
    }
    if !part.is_empty() {
        flush(&mut part, manifest)?;
    }
    Ok(())
}

/// An opened full snapshot: its manifest has been read and verified.
#[derive(Debug)]
pub struct FullSnapshot {
    manifest: FullManifest,
    location: String,
}

/// Opens the snapshot behind `handle`, verifying the manifest's checksum and format.
///
/// # Errors
/// `NotFound` if the manifest is missing (the checkpoint never completed), `Corruption` if it
/// fails its checksum, `Incompatible` if it is not a full snapshot.
pub fn read_full_snapshot(
    storage: &dyn CheckpointStorage,
    handle: &CheckpointHandle,
) -> Result<FullSnapshot> {
    let path = handle.manifest_path();
    if handle.format != FULL_FORMAT {
        return Err(Error::new(
            ErrorKind::Incompatible,
            format!("{path}: format '{}' is not {FULL_FORMAT}", handle.format),
        ));
    }
    let manifest: FullManifest = read_checked_manifest(storage, handle, FULL_FORMAT)?;
    Ok(FullSnapshot {
        manifest,
        location: handle.location.clone(),
    })
}

impl FullSnapshot {
    /// The states the snapshot holds, in record index order.
    pub fn states(&self) -> &[StateDescriptor] {
        &self.manifest.header.states
    }

    /// The max parallelism of the job that wrote it.
    pub fn max_parallelism(&self) -> u16 {
        self.manifest.header.max_parallelism
    }

    /// Number of entries and timers in the whole snapshot.
    pub fn counts(&self) -> (u64, u64) {
        (self.manifest.entries, self.manifest.timers)
    }

    /// Reads the records of the key groups in `key_groups`, checking each block's checksum
    /// before decoding it.
    ///
    /// # Errors
    /// `Corruption` naming the part and key group on a checksum or decoding failure;
    /// storage errors; the visitor's errors.
    pub fn read(
        &self,
        storage: &dyn CheckpointStorage,
        key_groups: KeyGroupRange,
        visitor: &mut dyn FnMut(SnapshotRecord<'_>) -> Result<()>,
    ) -> Result<()> {
        for block in &self.manifest.blocks {
            if !key_groups.contains(block.key_group) {
                continue;
            }
            let part = self
                .manifest
                .parts
                .get(block.part as usize)
                .ok_or_else(|| Error::corruption("block refers to a missing part"))?;
            let path = format!("{}/{part}", self.location);
            let bytes = storage.get_range(&path, block.offset, block.len)?;
            if crc32c::crc32c(&bytes) != block.crc32c {
                return Err(Error::corruption(format!(
                    "{path}: checksum mismatch in key group {} ({} bytes at {})",
                    block.key_group, block.len, block.offset
                )));
            }
            self.decode_block(block.key_group, &bytes, visitor)
                .map_err(|e| e.context(format!("{path}, key group {}", block.key_group)))?;
        }
        Ok(())
    }

    fn decode_block(
        &self,
        key_group: KeyGroup,
        mut input: &[u8],
        visitor: &mut dyn FnMut(SnapshotRecord<'_>) -> Result<()>,
    ) -> Result<()> {
        let states = self.manifest.header.states.len();
        while let Some((&tag, rest)) = input.split_first() {
            input = rest;
            let state = get_varint(&mut input)? as usize;
            if state >= states {
                return Err(Error::corruption(format!(
                    "record names state {state} of {states}"
                )));
            }
            match tag {
                TAG_ENTRY => {
                    let key = get_length_prefixed(&mut input)?;
                    let namespace = get_length_prefixed(&mut input)?;
                    let user_key = get_length_prefixed(&mut input)?;
                    let value = get_length_prefixed(&mut input)?;
                    let expiry = get_varint(&mut input)?;
                    let entry = EntryRef {
                        key_group,
                        key,
                        namespace,
                        user_key,
                        value,
                        expires_at: expiry.checked_sub(1),
                    };
                    visitor(SnapshotRecord::Entry { state, entry })?;
                }
                TAG_TIMER => {
                    let timestamp = i64::decode_key(&mut input)?;
                    let key = get_length_prefixed(&mut input)?.to_vec();
                    let namespace = get_length_prefixed(&mut input)?.to_vec();
                    let timer = Timer {
                        timestamp,
                        key_group,
                        key,
                        namespace,
                    };
                    visitor(SnapshotRecord::Timer { state, timer })?;
                }
                other => return Err(Error::corruption(format!("unknown record tag {other}"))),
            }
        }
        Ok(())
    }
}

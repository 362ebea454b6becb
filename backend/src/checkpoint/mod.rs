//! Checkpoints: handles, the storage they are written to, and the backend-neutral full
//! snapshot format.
//!
//! A checkpoint of one backend instance lives under one *location* (a path inside a
//! [`CheckpointStorage`]). Its `MANIFEST` is written last, carries a checksum of itself and of
//! every data block, and is the only thing that makes the checkpoint visible: a crash or an
//! error while writing leaves at most unreferenced data files, never a checkpoint that
//! restores to something half written.

mod full;
mod retention;
mod storage;

pub use full::{
    read_full_snapshot, write_full_snapshot, FullSnapshot, SnapshotRecord, FULL_FORMAT,
};
pub use retention::{delete_location, CheckpointLog};
pub use storage::{CheckpointStorage, LocalDirStorage};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::keygroup::KeyGroupRange;

/// What a completed checkpoint of one instance returns: enough to restore it, on any
/// machine that can reach the checkpoint storage. Serializable so engines can keep it in
/// their own checkpoint metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckpointHandle {
    /// The engine's checkpoint id.
    pub checkpoint_id: u64,
    /// The backend that wrote it ("memory", "rocksdb", ...).
    pub backend: String,
    /// The snapshot format (for example [`FULL_FORMAT`]).
    pub format: String,
    /// The directory of the checkpoint inside the checkpoint storage.
    pub location: String,
    /// The key groups it holds.
    pub key_groups: KeyGroupRange,
}

impl CheckpointHandle {
    /// The path of this checkpoint's manifest.
    pub fn manifest_path(&self) -> String {
        format!("{}/MANIFEST", self.location)
    }
}

/// The directory for checkpoint `id` of the instance owning `key_groups`, under the
/// operator's id if it has one.
pub fn checkpoint_location(
    operator_id: Option<&str>,
    backend: &str,
    checkpoint_id: u64,
    key_groups: KeyGroupRange,
) -> String {
    under_operator(
        operator_id,
        format!(
            "chk-{checkpoint_id:012}/{backend}-kg{:05}-{:05}",
            key_groups.start, key_groups.end
        ),
    )
}

/// `path` inside the operator's directory of the checkpoint storage, if it has an id
/// ([`InstanceConfig::operator_id`](crate::InstanceConfig::operator_id)).
pub(crate) fn under_operator(operator_id: Option<&str>, path: String) -> String {
    match operator_id {
        Some(operator) => format!("{operator}/{path}"),
        None => path,
    }
}

/// Checks that a set of handles covers `owned` and returns those that overlap it.
///
/// # Errors
/// `InvalidArgument` if some owned key group is in none of the handles.
pub fn handles_for_range(
    handles: &[CheckpointHandle],
    owned: KeyGroupRange,
) -> Result<Vec<&CheckpointHandle>> {
    let overlapping: Vec<&CheckpointHandle> = handles
        .iter()
        .filter(|h| h.key_groups.intersect(&owned).is_some())
        .collect();
    for kg in owned.iter() {
        if !overlapping.iter().any(|h| h.key_groups.contains(kg)) {
            return Err(Error::invalid(format!(
                "restore handles do not cover key group {kg} of the owned range {owned}"
            )));
        }
    }
    Ok(overlapping)
}

/// Writes a manifest: a header line with the checksum of the JSON body, then the body.
pub(crate) fn encode_manifest<T: Serialize>(manifest: &T) -> Result<Vec<u8>> {
    let body = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("manifest encoding: {e}")))?;
    let mut out = format!(
        "{MANIFEST_MAGIC} crc32c={:08x} len={}\n",
        crc32c::crc32c(&body),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads a manifest written by [`encode_manifest`], checking its checksum.
pub(crate) fn decode_manifest<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &str,
) -> Result<T> {
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| Error::corruption(format!("{path}: manifest has no header line")))?;
    let header = std::str::from_utf8(&bytes[..newline])
        .map_err(|_| Error::corruption(format!("{path}: manifest header is not UTF-8")))?;
    let body = &bytes[newline + 1..];
    let mut parts = header.split(' ');
    if parts.next() != Some(MANIFEST_MAGIC) {
        return Err(Error::new(
            ErrorKind::Incompatible,
            format!("{path}: not a statekit manifest (header '{header}')"),
        ));
    }
    let field = |name: &str, part: Option<&str>| -> Result<String> {
        part.and_then(|p| p.strip_prefix(name))
            .map(str::to_string)
            .ok_or_else(|| Error::corruption(format!("{path}: manifest header lacks {name}")))
    };
    let crc = u32::from_str_radix(&field("crc32c=", parts.next())?, 16)
        .map_err(|_| Error::corruption(format!("{path}: bad manifest checksum field")))?;
    let len: usize = field("len=", parts.next())?
        .parse()
        .map_err(|_| Error::corruption(format!("{path}: bad manifest length field")))?;
    if body.len() != len || crc32c::crc32c(body) != crc {
        return Err(Error::corruption(format!(
            "{path}: manifest checksum mismatch (truncated or modified)"
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::corruption(format!("{path}: manifest does not parse: {e}")))
}

/// What every manifest says about itself: the fields all checkpoint formats share, written
/// flattened into each format's manifest (so its JSON keys are the format's own top-level
/// keys) and checked against the handle that names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestHeader {
    /// The checkpoint format it was written in.
    pub(crate) format: String,
    /// The backend that wrote it.
    pub(crate) backend: String,
    /// The checkpoint it describes.
    pub(crate) checkpoint_id: u64,
    /// The writer's maximum parallelism: key groups only mean the same under the same one.
    pub(crate) max_parallelism: u16,
    /// The key groups it covers.
    pub(crate) key_groups: KeyGroupRange,
    /// The states registered when it was taken.
    pub(crate) states: Vec<crate::backend::StateDescriptor>,
}

/// A manifest with a [`ManifestHeader`].
pub(crate) trait ManifestIdentity {
    /// Its header.
    fn header(&self) -> &ManifestHeader;
}

/// Reads the manifest behind `handle` from `storage` ([`decode_manifest`]) and checks that it
/// is in `format` and covers the handle's key groups.
///
/// # Errors
/// The storage's error (`NotFound`: the checkpoint never completed), `Corruption` from
/// [`decode_manifest`], `Incompatible` for another format or other key groups.
pub(crate) fn read_checked_manifest<T>(
    storage: &dyn CheckpointStorage,
    handle: &CheckpointHandle,
    format: &str,
) -> Result<T>
where
    T: serde::de::DeserializeOwned + ManifestIdentity,
{
    let path = handle.manifest_path();
    let bytes = storage
        .get(&path)
        .map_err(|e| e.context(format!("checkpoint {} manifest", handle.checkpoint_id)))?;
    let manifest: T = decode_manifest(&bytes, &path)?;
    let header = manifest.header();
    if header.format != format || header.key_groups != handle.key_groups {
        return Err(Error::new(
            ErrorKind::Incompatible,
            format!(
                "{path}: manifest says format {} key groups {}, handle says {} {}",
                header.format, header.key_groups, handle.format, handle.key_groups
            ),
        ));
    }
    Ok(manifest)
}

const MANIFEST_MAGIC: &str = "statekit-manifest-v1";

#[cfg(test)]
mod tests {
    use super::*;

    /// Manifests written before the header was shared had its fields at the top level of
    /// their JSON; flattened, they stay there, so those checkpoints still restore.
    #[test]
    fn header_fields_stay_top_level_keys_of_a_manifest() {
        #[derive(Serialize, Deserialize)]
        struct Manifest {
            #[serde(flatten)]
            header: ManifestHeader,
            files: Vec<String>,
        }
        let manifest = Manifest {
            header: ManifestHeader {
                format: "f".into(),
                backend: "b".into(),
                checkpoint_id: 7,
                max_parallelism: 128,
                key_groups: KeyGroupRange::new(0, 127).unwrap(),
                states: vec![crate::backend::StateDescriptor::new(
                    "s",
                    crate::backend::StateKind::Value,
                )],
            },
            files: vec!["x".into()],
        };
        let json = serde_json::to_value(&manifest).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "backend",
                "checkpoint_id",
                "files",
                "format",
                "key_groups",
                "max_parallelism",
                "states"
            ]
        );
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back.header.checkpoint_id, 7);
        assert_eq!(back.header.key_groups, manifest.header.key_groups);
        assert_eq!(back.header.states, manifest.header.states);
    }

    #[test]
    fn manifest_checksum_catches_changes() {
        let bytes = encode_manifest(&vec![1u32, 2, 3]).unwrap();
        let back: Vec<u32> = decode_manifest(&bytes, "m").unwrap();
        assert_eq!(back, vec![1, 2, 3]);
        let mut bad = bytes.clone();
        let last = bad.len() - 2;
        bad[last] ^= 1;
        let err = decode_manifest::<Vec<u32>>(&bad, "chk/MANIFEST").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption);
        assert!(err.to_string().contains("chk/MANIFEST"));
        let truncated = &bytes[..bytes.len() - 1];
        assert!(decode_manifest::<Vec<u32>>(truncated, "m").is_err());
        assert_eq!(
            decode_manifest::<Vec<u32>>(b"garbage\n[]", "m")
                .unwrap_err()
                .kind(),
            ErrorKind::Incompatible
        );
    }

    #[test]
    fn handles_must_cover_the_owned_range() {
        let h = |s, e| CheckpointHandle {
            checkpoint_id: 1,
            backend: "memory".into(),
            format: FULL_FORMAT.into(),
            location: String::new(),
            key_groups: KeyGroupRange::new(s, e).unwrap(),
        };
        let handles = [h(0, 63), h(64, 127)];
        let owned = KeyGroupRange::new(40, 90).unwrap();
        assert_eq!(handles_for_range(&handles, owned).unwrap().len(), 2);
        let owned = KeyGroupRange::new(0, 10).unwrap();
        assert_eq!(handles_for_range(&handles, owned).unwrap().len(), 1);
        assert!(handles_for_range(&handles[..1], KeyGroupRange::new(60, 70).unwrap()).is_err());
    }
}

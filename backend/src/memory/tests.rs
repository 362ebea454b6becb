use std::sync::Arc;

use super::*;
use crate::checkpoint::{decode_manifest, encode_manifest, CheckpointStorage, LocalDirStorage};
use crate::{key_group_of, ErrorKind};

/// A full snapshot whose checksums hold but whose manifest says a state is a timer queue while
/// its records are map entries: restore reports Corruption instead of panicking, and the
/// instance keeps its state.
#[test]
fn a_consistent_checksum_over_an_inconsistent_snapshot_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalDirStorage::new(dir.path()).unwrap());
    let config = InstanceConfig::single(16)
        .unwrap()
        .with_checkpoint_storage(storage.clone());
    let mut b = MemoryBackend::open(config.clone()).unwrap();
    let map = b
        .register_state(&StateDescriptor::new("m", StateKind::Map))
        .unwrap();
    let scope = Scope {
        state: map,
        key_group: key_group_of(b"k", 16),
        key: b"k",
        namespace: b"",
    };
    b.put(scope, b"u", b"v").unwrap();
    let handle = b.checkpoint(1).unwrap();

    let path = handle.manifest_path();
    let mut manifest: serde_json::Value =
        decode_manifest(&storage.get(&path).unwrap(), &path).unwrap();
    manifest["states"][0]["kind"] = "timers".into();
    storage
        .put(&path, &encode_manifest(&manifest).unwrap())
        .unwrap();

    let mut r = MemoryBackend::open(config).unwrap();
    let other = r
        .register_state(&StateDescriptor::new("other", StateKind::Value))
        .unwrap();
    let other_scope = Scope {
        state: other,
        ..scope
    };
    r.put(other_scope, b"", b"kept").unwrap();
    let err = r.restore(&[handle]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(err.to_string().contains("checkpoint 1"), "{err}");
    assert_eq!(r.get(other_scope, b"").unwrap(), Some(b"kept".to_vec()));
}

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

/// A clock that counts how often it is read.
#[derive(Debug, Default)]
struct CountingClock {
    reads: std::sync::atomic::AtomicU64,
}

impl crate::clock::Clock for CountingClock {
    fn now_millis(&self) -> u64 {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        1_000
    }
}

/// Merges, reads and scans of a state without TTL never read the clock (one read per call
/// was measurable on the interval join); a state with TTL still reads it and expires.
#[test]
fn only_entries_with_an_expiry_read_the_clock() {
    let clock = Arc::new(CountingClock::default());
    let config = InstanceConfig::single(16)
        .unwrap()
        .with_clock(clock.clone());
    let mut b = MemoryBackend::open(config).unwrap();
    let list = b
        .register_state(&StateDescriptor::new("l", StateKind::Map))
        .unwrap();
    let scope = Scope {
        state: list,
        key_group: key_group_of(b"k", 16),
        key: b"k",
        namespace: b"",
    };
    for _ in 0..3 {
        b.merge(scope, b"u", b"x").unwrap();
    }
    assert_eq!(b.get(scope, b"u").unwrap(), Some(b"xxx".to_vec()));
    let mut seen = 0;
    b.scan(
        scope,
        UserKeyRange::all(),
        Direction::Forward,
        &mut |_, _| {
            seen += 1;
            Ok(Visit::Continue)
        },
    )
    .unwrap();
    assert_eq!(seen, 1);
    let reads = || clock.reads.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(reads(), 0);

    let ttl = b
        .register_state(
            &StateDescriptor::new("t", StateKind::Map)
                .with_ttl(std::time::Duration::from_millis(10)),
        )
        .unwrap();
    let scope = Scope {
        state: ttl,
        ..scope
    };
    b.merge(scope, b"u", b"x").unwrap();
    assert!(reads() > 0);
    assert_eq!(b.get(scope, b"u").unwrap(), Some(b"x".to_vec()));
}

//! The conformance suite and the model test against the remote backend on the embedded
//! default store: a local directory through `object_store`, no server.
#![cfg(feature = "remote")]

use std::sync::Arc;

use statekit_backend::remote::{RemoteBackend, RemoteConfig, RemoteStore, Size};
use statekit_backend::{CheckpointStorage, InstanceConfig, Result};

struct Remote {
    store: RemoteStore,
    _dir: tempfile::TempDir,
}

impl statekit_tests::BackendFactory for Remote {
    type Backend = RemoteBackend;

    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the store");
        let config = RemoteConfig {
            block_cache: Size(64 << 20),
            ..RemoteConfig::local(dir.path())
        };
        let store = RemoteStore::connect(&config).expect("a local store");
        Remote { store, _dir: dir }
    }

    fn open(&self, config: InstanceConfig) -> Result<RemoteBackend> {
        RemoteBackend::open_in(config, &self.store)
    }

    fn checkpoint_storage(&self) -> Option<Arc<dyn CheckpointStorage>> {
        Some(Arc::new(self.store.checkpoint_storage("checkpoints")))
    }
}

statekit_tests::conformance_suite!(Remote);

/// SlateDB's counters reach `stats()`, and a scan of a scope that holds nothing is answered
/// by the scope-prefix Bloom filters of the uploaded tables instead of reading them.
#[test]
fn stats_count_uploads_and_prefix_filters_skip_empty_scopes() -> Result<()> {
    use statekit_backend::{
        Checkpointing, Direction, Scope, StateBackend, StateDescriptor, StateKind, StateRead,
        StateWrite, UserKeyRange, Visit,
    };
    let remote = <Remote as statekit_tests::BackendFactory>::new();
    let storage = Arc::new(remote.store.checkpoint_storage("checkpoints"));
    let mut b = RemoteBackend::open_in(
        InstanceConfig::single(128)?.with_checkpoint_storage(storage),
        &remote.store,
    )?;
    let state = b.register_state(&StateDescriptor::new("s", StateKind::Map))?;
    let scope = |key: &'static [u8]| Scope {
        state,
        key_group: 7,
        key,
        namespace: b"",
    };
    // Two scopes around the empty one (keys of one length, which the key's length prefix
    // would otherwise order first), so the table's key range covers it and only the filter
    // can rule it out.
    for i in 0u32..1000 {
        b.put(scope(b"a"), &i.to_be_bytes(), &[7; 100])?;
        b.put(scope(b"c"), &i.to_be_bytes(), &[7; 100])?;
    }
    // A checkpoint flushes the memtable: the entries are now in an uploaded table.
    b.checkpoint(1)?;
    let stats = b.stats()?;
    assert_eq!(stats.user_bytes_written, Some(2000 * 104));
    assert!(
        stats.disk_bytes_written.unwrap_or(0) >= 2000 * 104,
        "{stats:?}"
    );

    let skipped = |b: &RemoteBackend| {
        b.engine_metric(
            "slatedb.db.sst_filter_negative_count",
            Some(("kind", "prefix")),
        )
    };
    let entries = |b: &RemoteBackend, key: &'static [u8]| -> Result<usize> {
        let mut seen = 0;
        b.scan(
            scope(key),
            UserKeyRange::all(),
            Direction::Forward,
            &mut |_, _| {
                seen += 1;
                Ok(Visit::Continue)
            },
        )?;
        Ok(seen)
    };
    let before = skipped(&b);
    assert_eq!(entries(&b, b"b")?, 0);
    assert!(
        skipped(&b) > before,
        "the empty scope's scan consulted no filter"
    );
    assert_eq!(entries(&b, b"c")?, 1000);
    let stats = b.stats()?;
    assert!(
        stats.cache_hits.unwrap_or(0) + stats.cache_misses.unwrap_or(0) > 0,
        "{stats:?}"
    );
    Ok(())
}

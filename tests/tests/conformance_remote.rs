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

/// A statekit checkpoint's SlateDB pin is created with an expiry (a crash before the
/// checkpoint's MANIFEST must not pin tables forever) and made permanent once the MANIFEST is
/// written: a completed checkpoint's pin never expires.
#[test]
fn a_completed_checkpoint_pins_its_tables_for_good() -> Result<()> {
    use statekit_backend::{key_group_of, Checkpointing, Scope, StateDescriptor, StateKind};
    use statekit_backend::{StateBackend, StateWrite};
    let remote = <Remote as statekit_tests::BackendFactory>::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = InstanceConfig::single(16)?.with_checkpoint_storage(Arc::new(
        statekit_backend::LocalDirStorage::new(dir.path())?,
    ));
    let mut b = RemoteBackend::open_in(config, &remote.store)?;
    let s = b.register_state(&StateDescriptor::new("m", StateKind::Map))?;
    let scope = Scope {
        state: s,
        key_group: key_group_of(b"k", 16),
        key: b"k",
        namespace: b"",
    };
    b.put(scope, b"u", b"v")?;
    b.checkpoint(7)?;
    let pins = b.pinned_checkpoints()?;
    let pin = pins
        .iter()
        .find(|p| p.name.as_deref() == Some("statekit-7"))
        .expect("checkpoint 7 pins its database");
    assert_eq!(pin.expires_at_unix_ms, None, "{pins:?}");
    Ok(())
}

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
    // Every scan probed a filter (and the found scope an index) through the cache; the
    // flushed state sits in L0 tables or sorted runs, which every read may probe.
    assert!(
        stats.meta_cache_hits.unwrap_or(0) + stats.meta_cache_misses.unwrap_or(0) > 0,
        "{stats:?}"
    );
    let tables = |name: &str| stats.details.get(name).copied();
    assert!(
        tables("slatedb.l0_ssts").unwrap_or(0) + tables("slatedb.sorted_runs").unwrap_or(0) > 0,
        "{:?}",
        stats.details
    );
    Ok(())
}

/// With `replaced_tables_kept_secs` = 1, SlateDB's garbage collector deletes tables that
/// compaction replaced and no retained checkpoint needs, and nothing else: a clone restored
/// before the collection, and fresh restores of retained checkpoints after it, all read their
/// exact state from the files (through new connections, so no cached block hides a deleted
/// table).
#[test]
fn garbage_collection_keeps_what_checkpoints_and_clones_need() -> Result<()> {
    use statekit_backend::{
        Checkpointing, Scope, StateBackend, StateDescriptor, StateKind, StateRead, StateWrite,
    };
    const KEYS: u32 = 2000;
    let dir = tempfile::tempdir().expect("a temporary directory for the store");
    let config = RemoteConfig {
        block_cache: Size(8 << 20),
        memtable: Size(1 << 20),
        max_unflushed: Size(4 << 20),
        replaced_tables_kept_secs: 1,
        ..RemoteConfig::local(dir.path())
    };
    let connect = || -> Result<(RemoteStore, InstanceConfig)> {
        let store = RemoteStore::connect(&config)?;
        let storage = Arc::new(store.checkpoint_storage("checkpoints"));
        let instance = InstanceConfig::single(128)?.with_checkpoint_storage(storage);
        Ok((store, instance))
    };
    let descriptor = StateDescriptor::new("s", StateKind::Map);
    let key = |i: u32| i.to_be_bytes();
    let scope = |state, i: u32| Scope {
        state,
        key_group: (i % 128) as u16,
        key: b"k",
        namespace: b"",
    };
    // Every key of the state holds `round` (600 bytes of it).
    let holds = |b: &RemoteBackend, state, round: u8| -> Result<bool> {
        for i in 0..KEYS {
            if b.get(scope(state, i), &key(i))? != Some(vec![round; 600]) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    // The compacted-table files in the store (not the WAL's), by name.
    let tables = || -> std::collections::BTreeSet<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut std::collections::BTreeSet<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "sst")
                    && path.parent().is_some_and(|p| p.ends_with("compacted"))
                {
                    out.insert(path);
                }
            }
        }
        let mut out = std::collections::BTreeSet::new();
        walk(dir.path(), &mut out);
        out
    };

    let (store, instance) = connect()?;
    let mut b = RemoteBackend::open_in(instance, &store)?;
    let state = b.register_state(&descriptor)?;
    let mut handles = Vec::new();
    let mut first_round_tables = None;
    for round in 1..=8u8 {
        for i in 0..KEYS {
            b.put(scope(state, i), &key(i), &[round; 600])?;
        }
        handles.push(b.checkpoint(u64::from(round))?);
        b.notify_checkpoint_complete(u64::from(round))?;
        if round == 1 {
            first_round_tables = Some(tables());
        }
        if round == 4 {
            // The L0 tables of rounds 1-4 get merged into a sorted run; the gauge moves
            // once the result is in the manifest.
            let waited = std::time::Instant::now();
            while b.engine_metric("slatedb.compactor.last_compaction_timestamp_sec", None) == 0 {
                assert!(
                    waited.elapsed() < std::time::Duration::from_secs(60),
                    "no compaction within 60 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    let first_round_tables = first_round_tables.expect("round 1 ran");
    assert!(!first_round_tables.is_empty(), "round 1 wrote no table");
    // Checkpoints 6-8 are retained (3 by default), 1-5 retired: the L0 tables of rounds 1-4,
    // compacted and needed by no retained checkpoint, are garbage.
    let (clone_store, clone_instance) = connect()?;
    let mut early_clone = RemoteBackend::open_in(clone_instance, &clone_store)?;
    early_clone.restore(&handles[5..6])?;
    let early_state = early_clone.register_state(&descriptor)?;

    // Past the compactor's checkpoint lifetime and the tables' minimum age.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    b.collect_garbage()?;
    let left = tables();
    let kept: Vec<_> = first_round_tables.intersection(&left).collect();
    assert!(kept.is_empty(), "replaced tables not deleted: {kept:?}");

    assert!(holds(&b, state, 8)?, "the live instance lost data");
    // Restored before the collection, read (from a cold cache) after it.
    assert!(
        holds(&early_clone, early_state, 6)?,
        "a clone made before the collection lost data"
    );
    let (fresh_store, fresh_instance) = connect()?;
    for (handle, round) in [(&handles[5], 6), (&handles[7], 8)] {
        let mut restored = RemoteBackend::open_in(fresh_instance.clone(), &fresh_store)?;
        restored.restore(std::slice::from_ref(handle))?;
        let state = restored.register_state(&descriptor)?;
        assert!(
            holds(&restored, state, round)?,
            "checkpoint {round} restored after the collection lost data"
        );
    }
    Ok(())
}

/// `block_size` reaches SlateDB's tables: the index of a table written with 1 KiB blocks
/// (a first key per block) is several times that of the same entries in 64 KiB blocks.
#[test]
fn the_configured_block_size_is_the_tables_block_size() -> Result<()> {
    use statekit_backend::{
        Checkpointing, Scope, StateBackend, StateDescriptor, StateKind, StateRead, StateWrite,
    };
    let cached_metadata_after_one_lookup = |block_size: u64| -> Result<u64> {
        let dir = tempfile::tempdir().expect("a temporary directory for the store");
        let config = RemoteConfig {
            block_size: Size(block_size),
            ..RemoteConfig::local(dir.path())
        };
        let store = RemoteStore::connect(&config)?;
        let storage = Arc::new(store.checkpoint_storage("checkpoints"));
        let mut b = RemoteBackend::open_in(
            InstanceConfig::single(128)?.with_checkpoint_storage(storage),
            &store,
        )?;
        let state = b.register_state(&StateDescriptor::new("s", StateKind::Map))?;
        let scope = Scope {
            state,
            key_group: 7,
            key: b"k",
            namespace: b"",
        };
        for i in 0u32..5000 {
            b.put(scope, &i.to_be_bytes(), &[7; 100])?;
        }
        // A checkpoint flushes the memtable: the lookup below reads the uploaded table's
        // index and filter.
        b.checkpoint(1)?;
        assert_eq!(b.get(scope, &2500u32.to_be_bytes())?, Some(vec![7; 100]));
        Ok(b.stats()?.memory_by_component["block cache: index, filter and stats blocks"])
    };
    let small = cached_metadata_after_one_lookup(1 << 10)?;
    let large = cached_metadata_after_one_lookup(64 << 10)?;
    assert!(
        small > 3 * large,
        "metadata cached: {small} bytes with 1 KiB blocks, {large} with 64 KiB"
    );
    Ok(())
}

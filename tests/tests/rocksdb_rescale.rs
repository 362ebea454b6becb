//! Rescaling the RocksDB backend with real SST files: two instances at parallelism 2, with
//! map, list (merge), TTL and timer state, checkpointed and restored into parallelism 3 and
//! one. Every entry and timer must land in exactly one new instance, unchanged, and the
//! first checkpoint after the restore must reuse the SST files it inherited.
#![cfg(feature = "rocksdb")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use statekit_backend::clock::ManualClock;
use statekit_backend::rocksdb::{MemoryBudget, RocksDbBackend, RocksDbResources, RocksDbSettings};
use statekit_backend::{
    key_group_of, Checkpointing, InstanceConfig, KeyGroupRange, LocalDirStorage, Scope,
    StateBackend, StateDescriptor, StateId, StateKind, StateRead, StateWrite, Timer, TimerStore,
    Visit,
};

const MAX_PAR: u16 = 128;
const KEYS: u32 = 3_000;

type Entries = BTreeMap<(String, Vec<u8>, Vec<u8>, Vec<u8>), Vec<u8>>;

fn states(b: &mut RocksDbBackend) -> [StateId; 4] {
    [
        b.register_state(&StateDescriptor::new("map", StateKind::Map))
            .unwrap(),
        b.register_state(&StateDescriptor::new("list", StateKind::List))
            .unwrap(),
        b.register_state(
            &StateDescriptor::new("ttl", StateKind::Value).with_ttl(Duration::from_secs(3600)),
        )
        .unwrap(),
        b.register_state(&StateDescriptor::new("timers", StateKind::Timers))
            .unwrap(),
    ]
}

fn dump(b: &RocksDbBackend) -> (Entries, Vec<Timer>) {
    let mut entries = Entries::new();
    let range = b.key_group_range();
    for (i, desc) in b.states().iter().enumerate() {
        if desc.kind == StateKind::Timers {
            continue;
        }
        b.scan_state(StateId::from_index(i as u32), range, &mut |e| {
            assert!(range.contains(e.key_group), "entry outside the owned range");
            let k = (
                desc.name.clone(),
                e.key.to_vec(),
                e.namespace.to_vec(),
                e.user_key.to_vec(),
            );
            assert!(entries.insert(k, e.value.to_vec()).is_none());
            Ok(Visit::Continue)
        })
        .unwrap();
    }
    let mut timers = Vec::new();
    b.scan_timers(StateId::from_index(3), range, &mut |t| {
        timers.push(t.clone());
        Ok(Visit::Continue)
    })
    .unwrap();
    (entries, timers)
}

#[test]
fn rescale_two_to_three_and_one_with_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalDirStorage::new(dir.path().join("checkpoints")).unwrap());
    let resources = RocksDbResources::new(MemoryBudget::new(64 << 20)).unwrap();
    let clock = ManualClock::new(1_000_000);
    let open = |range: KeyGroupRange| {
        let config = InstanceConfig::single(MAX_PAR)
            .unwrap()
            .with_key_groups(range)
            .with_checkpoint_storage(storage.clone())
            .with_clock(Arc::new(clock.clone()));
        RocksDbBackend::open(
            config,
            RocksDbSettings::new(dir.path().join("local"), resources.clone()),
        )
        .unwrap()
    };
    let mut handles = Vec::new();
    let mut expected_entries = Entries::new();
    let mut expected_timers = Vec::new();
    for index in 0..2 {
        let range = KeyGroupRange::for_operator(u32::from(MAX_PAR), 2, index).unwrap();
        let mut b = open(range);
        let [map, list, ttl, timers] = states(&mut b);
        for i in 0..KEYS {
            let key = format!("user-{i}").into_bytes();
            let kg = key_group_of(&key, MAX_PAR);
            if !range.contains(kg) {
                continue;
            }
            let scope = |state| Scope {
                state,
                key_group: kg,
                key: &key,
                namespace: b"w",
            };
            for ts in 0..(i % 4) {
                b.put(scope(map), &ts.to_be_bytes(), &[i as u8; 40])
                    .unwrap();
            }
            b.merge(scope(list), b"", b"a").unwrap();
            b.merge(scope(list), b"", &i.to_be_bytes()).unwrap();
            b.put(scope(ttl), b"", b"fresh").unwrap();
            let t = Timer {
                timestamp: i64::from(i % 11),
                key_group: kg,
                key: key.clone(),
                namespace: b"w".to_vec(),
            };
            b.register_timer(timers, &t).unwrap();
            if i % 500 == 0 {
                // Several flushes, so the checkpoint holds several SST files per state.
                b.checkpoint(u64::from(i) + 1).unwrap();
            }
        }
        let (entries, timers) = dump(&b);
        expected_entries.extend(entries);
        expected_timers.extend(timers);
        handles.push(b.checkpoint(10_000).unwrap());
    }
    assert!(expected_entries.len() > 3 * KEYS as usize);
    for parallelism in [3u32, 1] {
        let mut entries = Entries::new();
        let mut timers = Vec::new();
        for index in 0..parallelism {
            let range =
                KeyGroupRange::for_operator(u32::from(MAX_PAR), parallelism, index).unwrap();
            let mut b = open(range);
            b.restore(&handles).unwrap();
            let (e, t) = dump(&b);
            for (k, v) in e {
                assert!(entries.insert(k, v).is_none(), "entry in two instances");
            }
            timers.extend(t);
            // Settle compactions first: one that finished between the two checkpoints below
            // replaced every file the first uploaded (seen once on a loaded machine).
            b.compact().unwrap();
            // The rescaled instance does not claim what it inherited (other instances restore
            // the same files): its first checkpoint uploads its own copy, later ones are
            // incremental on top of it.
            b.checkpoint(20_000 + u64::from(index)).unwrap();
            let first = b.last_checkpoint_stats().unwrap().clone();
            assert_eq!(first.files_reused, 0, "p={parallelism} #{index}: {first:?}");
            assert_eq!(first.files_uploaded, first.files_total);
            b.checkpoint(30_000 + u64::from(index)).unwrap();
            let second = b.last_checkpoint_stats().unwrap();
            assert!(
                second.files_reused > 0,
                "p={parallelism} #{index}: {second:?}"
            );
        }
        assert_eq!(entries, expected_entries, "p={parallelism}");
        timers.sort();
        let mut want = expected_timers.clone();
        want.sort();
        assert_eq!(timers, want, "p={parallelism}");
    }
}

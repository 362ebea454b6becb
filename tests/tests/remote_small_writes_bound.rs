//! Scenario: many small writes (timers, deletes: what an end-of-input drain writes) must not
//! pile up in the remote backend's memtables beyond `max_unflushed`. SlateDB bounds unflushed
//! writes by their encoded size, about 41 bytes for a 30-byte key, while each such entry
//! holds a couple of hundred bytes of heap; the backend bounds the heap too, and flushes.
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use statekit_backend::remote::{RemoteBackend, RemoteConfig, Size};
use statekit_backend::{
    key_group_of, InstanceConfig, StateBackend, StateDescriptor, StateKind, Timer, TimerStore,
};

#[test]
fn small_writes_are_flushed_by_their_heap_not_their_encoded_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RemoteConfig::local(dir.path());
    // SlateDB alone would freeze a memtable at 3 MiB of encoded bytes: 70,000 such timers.
    config.memtable = Size(3 << 20);
    config.max_unflushed = Size(4 << 20);
    let mut b = RemoteBackend::open(InstanceConfig::single(16).unwrap(), &config).unwrap();
    let timers = b
        .register_state(&StateDescriptor::new("cleanup", StateKind::Timers))
        .unwrap();
    // 30,000 timers of 8-byte keys: about 1.2 MB encoded, but over 4 MiB of memtable heap.
    for i in 0..30_000u64 {
        let key = i.to_be_bytes().to_vec();
        let timer = Timer {
            timestamp: i as i64,
            key_group: key_group_of(&key, 16),
            key,
            namespace: Vec::new(),
        };
        b.register_timer(timers, &timer).unwrap();
    }
    let written = b.stats().unwrap().disk_bytes_written.unwrap();
    assert!(
        written > 0,
        "the memtable's heap passed max_unflushed: it must have been flushed to tables"
    );
    // Nothing lost by the flushes.
    assert_eq!(
        b.pop_due_timers(timers, i64::MAX, 100_000).unwrap().len(),
        30_000
    );
}

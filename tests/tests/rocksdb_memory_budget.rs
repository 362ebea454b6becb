//! The RocksDB backend keeps its accounted memory within its budget when the state is far
//! larger than the budget: an interval-join-like access pattern (puts under timestamps,
//! bounded scans, cleanup by range deletes of old buckets) writes about 16x the budget, and
//! the backend's own accounting (the shared cache with the memtables charged to it, plus
//! table readers outside it) never exceeds the budget by more than the documented 10%.

#![cfg(feature = "rocksdb")]
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use statekit_backend::rocksdb::{MemoryBudget, RocksDbBackend, RocksDbResources, RocksDbSettings};
use statekit_backend::{
    key_group_of, Direction, InstanceConfig, Scope, StateBackend, StateDescriptor, StateKind,
    StateRead, StateWrite, UserKeyRange, Visit, WriteBatch,
};

const BUDGET: u64 = 8 << 20;
const MAX_PAR: u16 = 128;

#[test]
fn accounted_memory_stays_within_the_budget_with_state_far_larger() {
    let dir = tempfile::tempdir().unwrap();
    let resources = RocksDbResources::new(MemoryBudget::new(BUDGET)).unwrap();
    let mut b = RocksDbBackend::open(
        InstanceConfig::single(MAX_PAR).unwrap(),
        RocksDbSettings::new(dir.path(), resources),
    )
    .unwrap();
    let left = b
        .register_state(&StateDescriptor::new("left", StateKind::Map))
        .unwrap();
    let right = b
        .register_state(&StateDescriptor::new("right", StateKind::Map))
        .unwrap();
    let keys = 20_000u64;
    let value = vec![0x5au8; 400];
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut written = 0u64;
    let mut worst = 0u64;
    // 128 MiB of values, 16x the budget, keyed by (user, timestamp).
    let total = (128u64 << 20).div_ceil(value.len() as u64);
    for n in 0..total {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let user = (rng % keys).to_be_bytes();
        let scope = |state| Scope {
            state,
            key_group: key_group_of(&user, MAX_PAR),
            key: &user,
            namespace: &[],
        };
        let ts = n.to_be_bytes();
        let state = if n % 2 == 0 { left } else { right };
        b.put(scope(state), &ts, &value).unwrap();
        written += value.len() as u64;
        // The other side's recent window, as a join reads it.
        let lower = n.saturating_sub(5_000).to_be_bytes();
        let other = if n % 2 == 0 { right } else { left };
        b.scan(
            scope(other),
            UserKeyRange::new(
                std::ops::Bound::Included(&lower),
                std::ops::Bound::Unbounded,
            ),
            Direction::Forward,
            &mut |_, _| Ok(Visit::Continue),
        )
        .unwrap();
        // Cleanup: every 1,024 events, one range delete per key of a batch of keys, as
        // fired cleanup timers do.
        if n % 1_024 == 1_023 {
            let upper = n.saturating_sub(50_000).to_be_bytes();
            let mut batch = WriteBatch::new();
            for k in 0..256u64 {
                let user = ((n / 1_024 * 256 + k) % keys).to_be_bytes();
                for state in [left, right] {
                    let scope = Scope {
                        state,
                        key_group: key_group_of(&user, MAX_PAR),
                        key: &user,
                        namespace: &[],
                    };
                    batch.delete_range(scope, None, Some(&upper));
                }
            }
            b.write(batch).unwrap();
        }
        if n % 16_384 == 0 {
            let accounted = b.stats().unwrap().memory_bytes.unwrap();
            worst = worst.max(accounted);
        }
    }
    let stats = b.stats().unwrap();
    worst = worst.max(stats.memory_bytes.unwrap());
    assert!(written >= 16 * BUDGET, "the state must dwarf the budget");
    assert!(
        worst <= BUDGET + BUDGET / 10,
        "accounted memory peaked at {worst} bytes against a budget of {BUDGET} (+10%): {:?}",
        stats.memory_by_component
    );
}

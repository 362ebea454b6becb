//! The conformance cases. Each is generic over a [`BackendFactory`] and panics on a
//! violation (they are test code).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use statekit_backend::backend::PrefixRange;
use statekit_backend::clock::ManualClock;
use statekit_backend::{
    key_group_of, CheckpointHandle, CheckpointStorage, Checkpointing, Direction, ErrorKind,
    InstanceConfig, KeyGroupRange, LocalDirStorage, Scope, StateBackend, StateDescriptor, StateId,
    StateKind, StateRead, StateWrite, Timer, TimerStore, UserKeyRange, Visit, WriteBatch,
};

use crate::BackendFactory;

/// Max parallelism of the suite's jobs.
pub const MAX_PARALLELISM: u16 = 64;

/// The environment of one case: a factory, checkpoint storage and a manual clock.
pub struct Harness<F: BackendFactory> {
    pub factory: F,
    pub storage: Arc<dyn CheckpointStorage>,
    pub clock: ManualClock,
    _dir: tempfile::TempDir,
}

impl<F: BackendFactory> Harness<F> {
    pub fn new() -> Self {
        let factory = F::new();
        let dir = tempfile::tempdir().unwrap();
        let storage = factory.checkpoint_storage().unwrap_or_else(|| {
            Arc::new(LocalDirStorage::new(dir.path().join("checkpoints")).unwrap())
        });
        Harness {
            factory,
            storage,
            clock: ManualClock::new(1_000_000),
            _dir: dir,
        }
    }

    pub fn config(&self, key_groups: KeyGroupRange) -> InstanceConfig {
        InstanceConfig::single(MAX_PARALLELISM)
            .unwrap()
            .with_key_groups(key_groups)
            .with_checkpoint_storage(self.storage.clone())
            .with_clock(Arc::new(self.clock.clone()))
    }

    /// An instance owning every key group.
    pub fn open(&self) -> F::Backend {
        self.open_range(KeyGroupRange::all(u32::from(MAX_PARALLELISM)).unwrap())
    }

    pub fn open_range(&self, key_groups: KeyGroupRange) -> F::Backend {
        self.factory.open(self.config(key_groups)).unwrap()
    }
}

impl<F: BackendFactory> Default for Harness<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// An owned address of one entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Addr {
    pub key: Vec<u8>,
    pub namespace: Vec<u8>,
}

impl Addr {
    pub fn new(key: &[u8], namespace: &[u8]) -> Self {
        Addr {
            key: key.to_vec(),
            namespace: namespace.to_vec(),
        }
    }

    pub fn scope(&self, state: StateId) -> Scope<'_> {
        Scope {
            state,
            key_group: key_group_of(&self.key, MAX_PARALLELISM),
            key: &self.key,
            namespace: &self.namespace,
        }
    }
}

fn map_state<B: StateBackend>(b: &mut B, name: &str) -> StateId {
    b.register_state(&StateDescriptor::new(name, StateKind::Map))
        .unwrap()
}

fn scan_all<B: StateBackend>(
    b: &B,
    scope: Scope<'_>,
    range: UserKeyRange<'_>,
    direction: Direction,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    b.scan(scope, range, direction, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(Visit::Continue)
    })
    .unwrap();
    out
}

fn keys_of(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.clone()).collect()
}

/// Everything a backend holds, by state name, for comparisons across instances.
pub type Dump = BTreeMap<(String, u16, Vec<u8>, Vec<u8>, Vec<u8>), (Vec<u8>, Option<u64>)>;

/// All live entries and timers of `b` in `key_groups`.
pub fn dump<B: StateBackend + ?Sized>(
    b: &B,
    key_groups: KeyGroupRange,
) -> (Dump, BTreeSet<(String, Timer)>) {
    let mut entries = Dump::new();
    let mut timers = BTreeSet::new();
    for (i, desc) in b.states().iter().enumerate() {
        let id = StateId::from_index(i as u32);
        if desc.kind == StateKind::Timers {
            b.scan_timers(id, key_groups, &mut |t| {
                timers.insert((desc.name.clone(), t.clone()));
                Ok(Visit::Continue)
            })
            .unwrap();
        } else {
            b.scan_state(id, key_groups, &mut |e| {
                let k = (
                    desc.name.clone(),
                    e.key_group,
                    e.key.to_vec(),
                    e.namespace.to_vec(),
                    e.user_key.to_vec(),
                );
                let prev = entries.insert(k, (e.value.to_vec(), e.expires_at));
                assert!(prev.is_none(), "scan_state visited an entry twice");
                Ok(Visit::Continue)
            })
            .unwrap();
        }
    }
    (entries, timers)
}

/// Fills a backend with a mix of states, namespaces, TTL entries, lists and timers.
fn populate<B: StateBackend>(b: &mut B, keys: u32) {
    let map = map_state(b, "map");
    let list = b
        .register_state(&StateDescriptor::new("list", StateKind::List))
        .unwrap();
    let ttl = b
        .register_state(
            &StateDescriptor::new("ttl", StateKind::Value)
                .with_ttl(std::time::Duration::from_secs(3600)),
        )
        .unwrap();
    let timers = b
        .register_state(&StateDescriptor::new("timers", StateKind::Timers))
        .unwrap();
    for i in 0..keys {
        let key = format!("user-{i}").into_bytes();
        for ns in [&b""[..], b"window-1"] {
            let a = Addr::new(&key, ns);
            for ts in 0..(i % 5) {
                b.put(
                    a.scope(map),
                    &u64::from(ts).to_be_bytes(),
                    format!("v{i}-{ts}").as_bytes(),
                )
                .unwrap();
            }
            b.merge(a.scope(list), b"", b"first").unwrap();
            b.merge(a.scope(list), b"", b"second").unwrap();
            b.put(a.scope(ttl), b"", &i.to_le_bytes()).unwrap();
            let t = Timer {
                timestamp: i64::from(i % 7) * 1000,
                key_group: a.scope(timers).key_group,
                key: key.clone(),
                namespace: ns.to_vec(),
            };
            b.register_timer(timers, &t).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Point operations

pub fn get_of_missing_entry_is_none<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let a = Addr::new(b"k", b"");
    assert_eq!(b.get(a.scope(s), b"uk").unwrap(), None);
    assert_eq!(b.get(a.scope(s), b"").unwrap(), None);
}

pub fn put_overwrites_and_delete_removes<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let a = Addr::new(b"k", b"ns");
    b.put(a.scope(s), b"uk", b"one").unwrap();
    assert_eq!(
        b.get(a.scope(s), b"uk").unwrap().as_deref(),
        Some(&b"one"[..])
    );
    b.put(a.scope(s), b"uk", b"two").unwrap();
    assert_eq!(
        b.get(a.scope(s), b"uk").unwrap().as_deref(),
        Some(&b"two"[..])
    );
    b.delete(a.scope(s), b"uk").unwrap();
    assert_eq!(b.get(a.scope(s), b"uk").unwrap(), None);
    // Deleting what is not there is fine.
    b.delete(a.scope(s), b"uk").unwrap();
    b.delete(Addr::new(b"never", b"").scope(s), b"x").unwrap();
}

pub fn empty_and_16_mib_values<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let a = Addr::new(b"k", b"");
    b.put(a.scope(s), b"empty", b"").unwrap();
    assert_eq!(b.get(a.scope(s), b"empty").unwrap(), Some(Vec::new()));
    let big: Vec<u8> = (0..16 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    b.put(a.scope(s), b"big", &big).unwrap();
    assert!(b.get(a.scope(s), b"big").unwrap() == Some(big.clone()));
    let scanned = scan_all(&b, a.scope(s), UserKeyRange::all(), Direction::Forward);
    assert_eq!(keys_of(&scanned), vec![b"big".to_vec(), b"empty".to_vec()]);
    assert!(scanned[0].1 == big);
    // An empty value is present, not absent: it must survive a checkpoint too.
    let handle = b.checkpoint(1).unwrap();
    let mut restored = h.open();
    restored.restore(&[handle]).unwrap();
    assert_eq!(
        restored.get(a.scope(s), b"empty").unwrap(),
        Some(Vec::new())
    );
    assert!(restored.get(a.scope(s), b"big").unwrap() == Some(big));
}

pub fn binary_and_unicode_keys<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let keys: [&[u8]; 6] = [
        b"",
        b"\x00",
        b"\x00\x00\xff",
        b"\xff\xff\xff\xff",
        "用户-🦀".as_bytes(),
        b"plain",
    ];
    for (i, key) in keys.iter().enumerate() {
        let a = Addr::new(key, "名前空間".as_bytes());
        for uk in keys {
            b.put(a.scope(s), uk, &[i as u8]).unwrap();
        }
    }
    for (i, key) in keys.iter().enumerate() {
        let a = Addr::new(key, "名前空間".as_bytes());
        for uk in keys {
            assert_eq!(
                b.get(a.scope(s), uk).unwrap(),
                Some(vec![i as u8]),
                "{key:?}/{uk:?}"
            );
        }
        let mut sorted: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        sorted.sort();
        let scanned = scan_all(&b, a.scope(s), UserKeyRange::all(), Direction::Forward);
        assert_eq!(keys_of(&scanned), sorted, "user keys ascend bytewise");
    }
}

pub fn scopes_are_isolated<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s1 = map_state(&mut b, "s1");
    let s2 = map_state(&mut b, "s2");
    // Pairs whose naive concatenation collides: ("a", "bc") and ("ab", "c").
    let a = Addr::new(b"a", b"bc");
    let c = Addr::new(b"ab", b"c");
    b.put(a.scope(s1), b"x", b"a").unwrap();
    b.put(c.scope(s1), b"x", b"c").unwrap();
    b.put(a.scope(s2), b"x", b"s2").unwrap();
    assert_eq!(b.get(a.scope(s1), b"x").unwrap(), Some(b"a".to_vec()));
    assert_eq!(b.get(c.scope(s1), b"x").unwrap(), Some(b"c".to_vec()));
    assert_eq!(b.get(a.scope(s2), b"x").unwrap(), Some(b"s2".to_vec()));
    assert_eq!(b.get(c.scope(s2), b"x").unwrap(), None);
    // A scope's scan and range delete never see a neighbour's entries.
    assert_eq!(
        scan_all(&b, a.scope(s1), UserKeyRange::all(), Direction::Forward).len(),
        1
    );
    b.delete_range(a.scope(s1), UserKeyRange::all()).unwrap();
    assert_eq!(b.get(c.scope(s1), b"x").unwrap(), Some(b"c".to_vec()));
    assert_eq!(b.get(a.scope(s2), b"x").unwrap(), Some(b"s2".to_vec()));
    // A key that is a prefix of another key.
    let short = Addr::new(b"user", b"");
    let long = Addr::new(b"user1", b"");
    b.put(short.scope(s1), b"k", b"short").unwrap();
    b.put(long.scope(s1), b"k", b"long").unwrap();
    let scanned = scan_all(&b, short.scope(s1), UserKeyRange::all(), Direction::Reverse);
    assert_eq!(scanned, vec![(b"k".to_vec(), b"short".to_vec())]);
}

pub fn merge_appends<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = b
        .register_state(&StateDescriptor::new("list", StateKind::List))
        .unwrap();
    let a = Addr::new(b"k", b"");
    b.merge(a.scope(s), b"", b"ab").unwrap();
    assert_eq!(b.get(a.scope(s), b"").unwrap(), Some(b"ab".to_vec()));
    b.merge(a.scope(s), b"", b"").unwrap();
    b.merge(a.scope(s), b"", b"cd").unwrap();
    assert_eq!(b.get(a.scope(s), b"").unwrap(), Some(b"abcd".to_vec()));
    b.put(a.scope(s), b"", b"x").unwrap();
    b.merge(a.scope(s), b"", b"y").unwrap();
    assert_eq!(b.get(a.scope(s), b"").unwrap(), Some(b"xy".to_vec()));
    b.delete(a.scope(s), b"").unwrap();
    b.merge(a.scope(s), b"", b"z").unwrap();
    assert_eq!(b.get(a.scope(s), b"").unwrap(), Some(b"z".to_vec()));
    for i in 0..500u32 {
        b.merge(a.scope(s), b"", &i.to_be_bytes()).unwrap();
    }
    let v = b.get(a.scope(s), b"").unwrap().unwrap();
    assert_eq!(v.len(), 1 + 500 * 4);
    assert_eq!(&v[v.len() - 4..], &499u32.to_be_bytes());
}

/// Only list and map states take merges: a value is appended to or written whole, never both,
/// which is what lets a backend drop an expired whole value without looking for appends.
pub fn merges_only_onto_list_and_map_states<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let list = b
        .register_state(&StateDescriptor::new("list", StateKind::List))
        .unwrap();
    let a = Addr::new(b"k", b"");
    for kind in [
        StateKind::Value,
        StateKind::Reducing,
        StateKind::Aggregating,
    ] {
        let s = b
            .register_state(&StateDescriptor::new(format!("{kind:?}"), kind))
            .unwrap();
        let err = b.merge(a.scope(s), b"", b"x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{kind:?}: {err}");
        assert!(err.to_string().contains(&format!("{kind:?}")), "{err}");
        let mut batch = WriteBatch::new();
        batch.merge(a.scope(list), b"", b"first");
        batch.merge(a.scope(s), b"", b"x");
        assert_eq!(
            b.write(batch).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(b.get(a.scope(s), b"").unwrap(), None);
        assert_eq!(
            b.get(a.scope(list), b"").unwrap(),
            None,
            "a rejected batch writes nothing"
        );
    }
}

/// Each append refreshes the whole value's TTL, so a chain of appends outlives its base's own
/// expiry; no backend's removal of expired entries (a sweep, a compaction) may cut it.
pub fn ttl_append_chain_outlives_its_base<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let ttl = std::time::Duration::from_millis(100);
    let s = b
        .register_state(&StateDescriptor::new("list", StateKind::List).with_ttl(ttl))
        .unwrap();
    let chain = Addr::new(b"chain", b"");
    b.put(chain.scope(s), b"", b"a").unwrap();
    for (i, operand) in [b"b", b"c", b"d"].into_iter().enumerate() {
        h.clock.advance(99);
        // Enough other writes for every backend's periodic sweep of expired entries to pass
        // over the chain's key, some of them expiring.
        for n in 0..3_000u32 {
            let other = format!("other-{i}-{n}");
            b.merge(Addr::new(other.as_bytes(), b"").scope(s), b"", b"o")
                .unwrap();
        }
        b.merge(chain.scope(s), b"", operand).unwrap();
    }
    h.clock.advance(53);
    assert_eq!(
        b.get(chain.scope(s), b"").unwrap(),
        Some(b"abcd".to_vec()),
        "the chain is live until 100 ms after its last append"
    );
    let handle = b.checkpoint(1).unwrap();
    let mut restored = h.open();
    restored.restore(&[handle]).unwrap();
    assert_eq!(
        restored.get(chain.scope(s), b"").unwrap(),
        Some(b"abcd".to_vec())
    );
    h.clock.advance(47);
    assert_eq!(restored.get(chain.scope(s), b"").unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Ranges

/// Bounds and the timestamps a range over them must hold.
type RangeCase<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>, Vec<u64>);

fn ts_key(ts: u64) -> [u8; 8] {
    ts.to_be_bytes()
}

pub fn scan_bounds_and_directions<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let a = Addr::new(b"k", b"");
    for ts in (10..=50).step_by(10) {
        b.put(a.scope(s), &ts_key(ts), &ts.to_le_bytes()).unwrap();
    }
    let (k20, k40) = (ts_key(20), ts_key(40));
    let (k15, k45) = (ts_key(15), ts_key(45));
    let cases: Vec<RangeCase<'_>> = vec![
        (
            Bound::Included(&k20),
            Bound::Included(&k40),
            vec![20, 30, 40],
        ),
        (Bound::Excluded(&k20), Bound::Included(&k40), vec![30, 40]),
        (Bound::Included(&k20), Bound::Excluded(&k40), vec![20, 30]),
        (Bound::Excluded(&k20), Bound::Excluded(&k40), vec![30]),
        (Bound::Unbounded, Bound::Excluded(&k40), vec![10, 20, 30]),
        (Bound::Excluded(&k20), Bound::Unbounded, vec![30, 40, 50]),
        (
            Bound::Included(&k15),
            Bound::Included(&k45),
            vec![20, 30, 40],
        ),
        (Bound::Unbounded, Bound::Unbounded, vec![10, 20, 30, 40, 50]),
        (Bound::Included(&k40), Bound::Included(&k20), vec![]),
        (Bound::Included(&k20), Bound::Excluded(&k20), vec![]),
        (Bound::Excluded(&k20), Bound::Excluded(&k20), vec![]),
        (Bound::Included(&k20), Bound::Included(&k20), vec![20]),
    ];
    for (lower, upper, want) in cases {
        let range = UserKeyRange::new(lower, upper);
        let want_keys: Vec<Vec<u8>> = want.iter().map(|t| ts_key(*t).to_vec()).collect();
        let fwd = scan_all(&b, a.scope(s), range, Direction::Forward);
        assert_eq!(keys_of(&fwd), want_keys, "forward {lower:?}..{upper:?}");
        let mut rev_want = want_keys.clone();
        rev_want.reverse();
        let rev = scan_all(&b, a.scope(s), range, Direction::Reverse);
        assert_eq!(keys_of(&rev), rev_want, "reverse {lower:?}..{upper:?}");
        for (k, v) in &fwd {
            assert_eq!(
                &v[..],
                &u64::from_be_bytes(k[..].try_into().unwrap()).to_le_bytes()
            );
        }
    }
    // A scan of a scope that never existed is empty, not an error.
    let none = scan_all(
        &b,
        Addr::new(b"nobody", b"").scope(s),
        UserKeyRange::all(),
        Direction::Reverse,
    );
    assert!(none.is_empty());
}

pub fn scan_stops_and_propagates_errors<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let a = Addr::new(b"k", b"");
    for ts in 0..100u64 {
        b.put(a.scope(s), &ts_key(ts), b"v").unwrap();
    }
    let mut seen = Vec::new();
    b.scan(
        a.scope(s),
        UserKeyRange::all(),
        Direction::Reverse,
        &mut |k, _| {
            seen.push(k.to_vec());
            Ok(if seen.len() == 3 {
                Visit::Stop
            } else {
                Visit::Continue
            })
        },
    )
    .unwrap();
    assert_eq!(
        seen,
        vec![
            ts_key(99).to_vec(),
            ts_key(98).to_vec(),
            ts_key(97).to_vec()
        ]
    );
    let err = b
        .scan(
            a.scope(s),
            UserKeyRange::all(),
            Direction::Forward,
            &mut |_, _| Err(statekit_backend::Error::invalid("visitor says no")),
        )
        .unwrap_err();
    assert!(err.to_string().contains("visitor says no"));
}

pub fn prefix_iteration<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let a = Addr::new(b"k", b"");
    let uks: [&[u8]; 8] = [
        b"a",
        b"ab",
        b"ab\x00",
        b"ab\xff",
        b"abc",
        b"ac",
        b"\xff",
        b"\xff\xff\x01",
    ];
    for uk in uks {
        b.put(a.scope(s), uk, uk).unwrap();
    }
    let prefix = PrefixRange::new(b"ab");
    let got = scan_all(&b, a.scope(s), prefix.as_range(), Direction::Forward);
    assert_eq!(
        keys_of(&got),
        vec![
            b"ab".to_vec(),
            b"ab\x00".to_vec(),
            b"abc".to_vec(),
            b"ab\xff".to_vec()
        ]
    );
    let prefix = PrefixRange::new(b"\xff");
    let got = scan_all(&b, a.scope(s), prefix.as_range(), Direction::Reverse);
    assert_eq!(
        keys_of(&got),
        vec![b"\xff\xff\x01".to_vec(), b"\xff".to_vec()]
    );
}

pub fn delete_range_bounds<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let a = Addr::new(b"k", b"");
    let other = Addr::new(b"k", b"other-ns");
    let fill = |b: &mut F::Backend| {
        for ts in 0..10u64 {
            b.put(a.scope(s), &ts_key(ts), b"v").unwrap();
            b.put(other.scope(s), &ts_key(ts), b"v").unwrap();
        }
    };
    let remaining = |b: &F::Backend| -> Vec<u64> {
        scan_all(b, a.scope(s), UserKeyRange::all(), Direction::Forward)
            .iter()
            .map(|(k, _)| u64::from_be_bytes(k[..].try_into().unwrap()))
            .collect()
    };
    let (k3, k6) = (ts_key(3), ts_key(6));
    let cases: Vec<RangeCase<'_>> = vec![
        (
            Bound::Included(&k3),
            Bound::Excluded(&k6),
            vec![0, 1, 2, 6, 7, 8, 9],
        ),
        (
            Bound::Included(&k3),
            Bound::Included(&k6),
            vec![0, 1, 2, 7, 8, 9],
        ),
        (
            Bound::Excluded(&k3),
            Bound::Included(&k6),
            vec![0, 1, 2, 3, 7, 8, 9],
        ),
        (
            Bound::Unbounded,
            Bound::Excluded(&k3),
            vec![3, 4, 5, 6, 7, 8, 9],
        ),
        (
            Bound::Excluded(&k6),
            Bound::Unbounded,
            vec![0, 1, 2, 3, 4, 5, 6],
        ),
        (
            Bound::Included(&k6),
            Bound::Excluded(&k3),
            (0..10).collect(),
        ),
        (Bound::Unbounded, Bound::Unbounded, vec![]),
    ];
    for (lower, upper, want) in cases {
        fill(&mut b);
        b.delete_range(a.scope(s), UserKeyRange::new(lower, upper))
            .unwrap();
        assert_eq!(remaining(&b), want, "{lower:?}..{upper:?}");
        assert_eq!(
            scan_all(&b, other.scope(s), UserKeyRange::all(), Direction::Forward).len(),
            10,
            "other namespace untouched"
        );
    }
}

/// Entries of `dump` by state name.
fn dumped_states(d: &Dump) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (state, ..) in d.keys() {
        *out.entry(state.clone()).or_default() += 1;
    }
    out
}

pub fn clear_state_and_clear_timers_remove_all_and_only_theirs<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    populate(&mut b, 300);
    let all = b.key_group_range();
    let ids: BTreeMap<String, StateId> = b
        .states()
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.clone(), StateId::from_index(i as u32)))
        .collect();
    let (map, timers) = (ids["map"], ids["timers"]);
    let other_timers = b
        .register_state(&StateDescriptor::new("other-timers", StateKind::Timers))
        .unwrap();
    let t = |ts: i64, key: &[u8]| Timer {
        timestamp: ts,
        key_group: key_group_of(key, MAX_PARALLELISM),
        key: key.to_vec(),
        namespace: Vec::new(),
    };
    b.register_timer(other_timers, &t(5, b"kept")).unwrap();
    let (before, before_timers) = dump(&b, all);
    let snapshot = b.checkpoint(1).unwrap();

    // Wrong kinds and unknown ids are errors that change nothing.
    assert!(b.clear_state(timers).is_err(), "a queue is not a k/v state");
    assert!(b.clear_timers(map).is_err(), "a k/v state is not a queue");
    assert!(b.clear_state(StateId::from_index(99)).is_err());
    assert!(b.clear_timers(StateId::from_index(99)).is_err());
    assert_eq!(dump(&b, all), (before.clone(), before_timers.clone()));

    // `populate` registers 600 distinct timers in "timers": all are counted and removed.
    assert_eq!(b.clear_timers(timers).unwrap(), 600);
    assert_eq!(b.next_timer(timers).unwrap(), None);
    assert!(b.pop_due_timers(timers, i64::MAX, 10).unwrap().is_empty());
    assert_eq!(b.clear_timers(timers).unwrap(), 0, "nothing left to clear");
    b.clear_state(map).unwrap();
    let (after, after_timers) = dump(&b, all);
    let mut want = dumped_states(&before);
    want.remove("map");
    assert_eq!(dumped_states(&after), want, "only the map state is empty");
    assert_eq!(
        after,
        before
            .iter()
            .filter(|(k, _)| k.0 != "map")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Dump>(),
        "the other states keep every entry and value"
    );
    let kept: BTreeSet<_> = [("other-timers".to_string(), t(5, b"kept"))].into();
    assert_eq!(after_timers, kept);

    // Both stay usable: new entries and timers are read and popped as usual.
    let a = Addr::new(b"user-1", b"");
    b.put(a.scope(map), b"new", b"v").unwrap();
    assert_eq!(b.get(a.scope(map), b"new").unwrap(), Some(b"v".to_vec()));
    b.register_timer(timers, &t(-3, b"late")).unwrap();
    b.register_timer(timers, &t(7, b"later")).unwrap();
    assert_eq!(b.next_timer(timers).unwrap(), Some(-3));
    let popped = b.pop_due_timers(timers, i64::MAX, 10).unwrap();
    assert_eq!(popped, vec![t(-3, b"late"), t(7, b"later")]);

    // A checkpoint after the clear holds what is left; the one before still holds it all.
    let cleared = dump(&b, all);
    let handle = b.checkpoint(2).unwrap();
    let mut restored = h.open();
    restored.restore(std::slice::from_ref(&handle)).unwrap();
    assert_eq!(dump(&restored, all), cleared);
    let mut earlier = h.open();
    earlier.restore(std::slice::from_ref(&snapshot)).unwrap();
    assert_eq!(dump(&earlier, all), (before, before_timers));
}

pub fn multi_get_keeps_request_order<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let addrs: Vec<Addr> = (0..50u32)
        .map(|i| Addr::new(&i.to_be_bytes(), b""))
        .collect();
    for (i, a) in addrs.iter().enumerate() {
        if i % 3 != 0 {
            b.put(a.scope(s), b"uk", &[i as u8]).unwrap();
        }
    }
    let requests: Vec<(Scope<'_>, &[u8])> = addrs
        .iter()
        .rev()
        .map(|a| (a.scope(s), &b"uk"[..]))
        .collect();
    let got = b.multi_get(&requests).unwrap();
    for (j, value) in got.iter().enumerate() {
        let i = addrs.len() - 1 - j;
        let want = (i % 3 != 0).then(|| vec![i as u8]);
        assert_eq!(value, &want, "request {j}");
    }
    b.prefetch(&addrs.iter().map(|a| a.scope(s)).collect::<Vec<_>>())
        .unwrap();
    assert!(b.multi_get(&[]).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Key groups, validation, registration

fn key_in_group(key_group: u16) -> Vec<u8> {
    (0u32..)
        .map(|i| format!("key-{i}").into_bytes())
        .find(|k| key_group_of(k, MAX_PARALLELISM) == key_group)
        .unwrap()
}

pub fn key_group_boundaries<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let owned = KeyGroupRange::new(10, 20).unwrap();
    let mut b = h.open_range(owned);
    assert_eq!(b.key_group_range(), owned);
    assert_eq!(b.max_parallelism(), MAX_PARALLELISM);
    let s = map_state(&mut b, "s");
    for kg in [10u16, 11, 19, 20] {
        let a = Addr::new(&key_in_group(kg), b"");
        b.put(a.scope(s), b"uk", &[kg as u8]).unwrap();
    }
    for kg in [0u16, 9, 21, 63] {
        let a = Addr::new(&key_in_group(kg), b"");
        let err = b.put(a.scope(s), b"uk", b"x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "key group {kg}");
        assert!(err.to_string().contains(&kg.to_string()), "{err}");
        assert_eq!(
            b.get(a.scope(s), b"uk").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    // Iteration over a sub-range sees exactly its key groups, in ascending order.
    let mut seen = Vec::new();
    b.scan_state(s, KeyGroupRange::new(11, 19).unwrap(), &mut |e| {
        seen.push(e.key_group);
        Ok(Visit::Continue)
    })
    .unwrap();
    assert_eq!(seen, vec![11, 19]);
    let mut all = Vec::new();
    b.scan_state(
        s,
        KeyGroupRange::all(u32::from(MAX_PARALLELISM)).unwrap(),
        &mut |e| {
            all.push(e.key_group);
            Ok(Visit::Continue)
        },
    )
    .unwrap();
    assert_eq!(all, vec![10, 11, 19, 20]);
    let mut first = Vec::new();
    b.scan_state(s, owned, &mut |e| {
        first.push(e.key_group);
        Ok(Visit::Stop)
    })
    .unwrap();
    assert_eq!(first, vec![10]);
}

pub fn invalid_arguments_are_errors<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let q = b
        .register_state(&StateDescriptor::new("q", StateKind::Timers))
        .unwrap();
    let a = Addr::new(b"k", b"");
    let unknown = StateId::from_index(99);
    for err in [
        b.get(a.scope(unknown), b"x").unwrap_err(),
        b.put(a.scope(unknown), b"x", b"v").unwrap_err(),
        b.merge(a.scope(unknown), b"x", b"v").unwrap_err(),
        b.delete(a.scope(unknown), b"x").unwrap_err(),
        b.delete_range(a.scope(unknown), UserKeyRange::all())
            .unwrap_err(),
        b.put(a.scope(q), b"x", b"v").unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    }
    let timer = Timer {
        timestamp: 1,
        key_group: a.scope(s).key_group,
        key: b"k".to_vec(),
        namespace: Vec::new(),
    };
    assert_eq!(
        b.register_timer(s, &timer).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        b.register_timer(unknown, &timer).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let err = b
        .scan(
            a.scope(unknown),
            UserKeyRange::all(),
            Direction::Forward,
            &mut |_, _| Ok(Visit::Continue),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // Nothing was written by the failed calls.
    assert_eq!(dump(&b, b.key_group_range()).0.len(), 0);
}

pub fn state_registration<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let d = StateDescriptor::new("s", StateKind::Map);
    let id = b.register_state(&d).unwrap();
    assert_eq!(b.register_state(&d).unwrap(), id);
    let other = b
        .register_state(&StateDescriptor::new("t", StateKind::Value))
        .unwrap();
    assert_ne!(other, id);
    let clash = b
        .register_state(&StateDescriptor::new("s", StateKind::List))
        .unwrap_err();
    assert_eq!(clash.kind(), ErrorKind::Incompatible);
    let ttl_clash = b
        .register_state(&d.clone().with_ttl(std::time::Duration::from_secs(1)))
        .unwrap_err();
    assert_eq!(ttl_clash.kind(), ErrorKind::Incompatible);
    assert_eq!(
        b.register_state(&StateDescriptor::new("", StateKind::Map))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let names: Vec<String> = b.states().into_iter().map(|d| d.name).collect();
    assert_eq!(names, vec!["s", "t"]);
}

// ---------------------------------------------------------------------------------------------
// TTL and timers

pub fn ttl_expiry<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let ttl = std::time::Duration::from_secs(10);
    let s = b
        .register_state(&StateDescriptor::new("ttl", StateKind::Map).with_ttl(ttl))
        .unwrap();
    let plain = map_state(&mut b, "plain");
    let a = Addr::new(b"k", b"");
    b.put(a.scope(s), b"old", b"1").unwrap();
    b.put(a.scope(plain), b"old", b"1").unwrap();
    h.clock.advance(6_000);
    b.put(a.scope(s), b"young", b"2").unwrap();
    b.merge(a.scope(s), b"list", b"a").unwrap();
    h.clock.advance(5_000); // "old" is 11 s old, "young" 5 s
    assert_eq!(
        b.get(a.scope(s), b"old").unwrap(),
        None,
        "expired value is never returned"
    );
    assert_eq!(b.get(a.scope(plain), b"old").unwrap(), Some(b"1".to_vec()));
    assert_eq!(b.get(a.scope(s), b"young").unwrap(), Some(b"2".to_vec()));
    let keys = keys_of(&scan_all(
        &b,
        a.scope(s),
        UserKeyRange::all(),
        Direction::Forward,
    ));
    assert_eq!(keys, vec![b"list".to_vec(), b"young".to_vec()]);
    let got = b
        .multi_get(&[(a.scope(s), &b"old"[..]), (a.scope(s), &b"young"[..])])
        .unwrap();
    assert_eq!(got, vec![None, Some(b"2".to_vec())]);
    // A write refreshes the TTL.
    b.put(a.scope(s), b"young", b"3").unwrap();
    h.clock.advance(9_000);
    assert_eq!(b.get(a.scope(s), b"young").unwrap(), Some(b"3".to_vec()));
    // A merge onto an expired value starts afresh.
    assert_eq!(b.get(a.scope(s), b"list").unwrap(), None);
    b.merge(a.scope(s), b"list", b"b").unwrap();
    assert_eq!(b.get(a.scope(s), b"list").unwrap(), Some(b"b".to_vec()));
    // Exactly at the expiry instant the entry is gone.
    h.clock.advance(1_000);
    assert_eq!(b.get(a.scope(s), b"young").unwrap(), None);
    let mut live = 0;
    b.scan_state(s, b.key_group_range(), &mut |e| {
        assert!(e.expires_at.is_some());
        live += 1;
        Ok(Visit::Continue)
    })
    .unwrap();
    assert_eq!(live, 1, "only the re-merged list is live");
    // Expired entries do not come back through a checkpoint.
    let handle = b.checkpoint(1).unwrap();
    let mut restored = h.open();
    restored.restore(&[handle]).unwrap();
    assert_eq!(restored.get(a.scope(s), b"young").unwrap(), None);
    assert_eq!(
        restored.get(a.scope(s), b"list").unwrap(),
        Some(b"b".to_vec())
    );
    h.clock.advance(10_000);
    assert_eq!(
        restored.get(a.scope(s), b"list").unwrap(),
        None,
        "expiry survives restore"
    );
}

pub fn timers_fire_in_order<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let q = b
        .register_state(&StateDescriptor::new("timers", StateKind::Timers))
        .unwrap();
    let q2 = b
        .register_state(&StateDescriptor::new("other-timers", StateKind::Timers))
        .unwrap();
    let timer = |ts: i64, key: &str, ns: &[u8]| Timer {
        timestamp: ts,
        key_group: key_group_of(key.as_bytes(), MAX_PARALLELISM),
        key: key.as_bytes().to_vec(),
        namespace: ns.to_vec(),
    };
    assert_eq!(b.next_timer(q).unwrap(), None);
    let mut registered = Vec::new();
    for (i, ts) in [50i64, -20, 10, 10, 30, 10, i64::MIN, i64::MAX]
        .iter()
        .enumerate()
    {
        let t = timer(*ts, &format!("key-{}", i % 4), b"");
        b.register_timer(q, &t).unwrap();
        registered.push(t);
    }
    // Same timer twice is one timer.
    b.register_timer(q, &registered[0]).unwrap();
    b.register_timer(q2, &timer(0, "other", b"w")).unwrap();
    b.delete_timer(q, &registered[4]).unwrap(); // the one at 30
    b.delete_timer(q, &timer(12345, "never", b"")).unwrap();
    assert_eq!(b.next_timer(q).unwrap(), Some(i64::MIN));

    let mut want: Vec<Timer> = registered.clone();
    want.remove(4);
    want.sort();
    want.dedup();
    let first = b.pop_due_timers(q, 10, 2).unwrap();
    assert_eq!(first, want[..2].to_vec());
    let rest_due = b.pop_due_timers(q, 10, 100).unwrap();
    let due_count = want.iter().filter(|t| t.timestamp <= 10).count();
    assert_eq!(rest_due, want[2..due_count].to_vec());
    assert!(b.pop_due_timers(q, 10, 100).unwrap().is_empty());
    assert_eq!(b.next_timer(q).unwrap(), Some(50));
    // A timer registered at or below the watermark during firing is due at once.
    b.register_timer(q, &timer(5, "late", b"ns")).unwrap();
    assert_eq!(
        b.pop_due_timers(q, 10, 100).unwrap(),
        vec![timer(5, "late", b"ns")]
    );
    let mut scanned = Vec::new();
    b.scan_timers(q, b.key_group_range(), &mut |t| {
        scanned.push(t.timestamp);
        Ok(Visit::Continue)
    })
    .unwrap();
    scanned.sort();
    assert_eq!(scanned, vec![50, i64::MAX]);
    let all = b.pop_due_timers(q, i64::MAX, 100).unwrap();
    assert_eq!(
        all.iter().map(|t| t.timestamp).collect::<Vec<_>>(),
        vec![50, i64::MAX]
    );
    assert_eq!(b.pop_due_timers(q2, -1, 10).unwrap(), vec![]);
    assert_eq!(
        b.pop_due_timers(q2, 0, 10).unwrap(),
        vec![timer(0, "other", b"w")]
    );
    // Key groups interleaved in time: one pop alternates between them and returns each
    // timer once, in time order.
    let in_group = |ts: i64, kg: u16| Timer {
        timestamp: ts,
        key_group: kg,
        key: key_in_group(kg),
        namespace: vec![],
    };
    let interleaved: Vec<Timer> = (1..=6)
        .map(|ts| in_group(ts, if ts % 2 == 1 { 3 } else { 7 }))
        .collect();
    for t in interleaved.iter().rev() {
        b.register_timer(q2, t).unwrap();
    }
    assert_eq!(b.pop_due_timers(q2, 4, 100).unwrap(), interleaved[..4]);
    assert_eq!(b.next_timer(q2).unwrap(), Some(5));
    assert_eq!(b.pop_due_timers(q2, 10, 100).unwrap(), interleaved[4..]);
    assert_eq!(b.next_timer(q2).unwrap(), None);
    // Foreign key groups are rejected.
    let narrow = h.open_range(KeyGroupRange::new(0, 0).unwrap());
    let mut narrow = narrow;
    let nq = narrow
        .register_state(&StateDescriptor::new("timers", StateKind::Timers))
        .unwrap();
    let foreign = Timer {
        timestamp: 1,
        key_group: 5,
        key: key_in_group(5),
        namespace: vec![],
    };
    assert_eq!(
        narrow.register_timer(nq, &foreign).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

// ---------------------------------------------------------------------------------------------
// Batches

/// A backend may hold registrations back and write them together (the RocksDB and remote
/// backends do): every read of the queue and every checkpoint must see them, a deleted one
/// must not come back, the head search after deleting the head must find a held one, and a
/// restore must not carry the replaced state's registrations over.
pub fn timer_registrations_are_seen_by_every_read_and_by_checkpoints<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let q = b
        .register_state(&StateDescriptor::new("timers", StateKind::Timers))
        .unwrap();
    let key = |i: u32| i.to_be_bytes().to_vec();
    let timer = |ts: i64, key: Vec<u8>| Timer {
        timestamp: ts,
        key_group: key_group_of(&key, MAX_PARALLELISM),
        key,
        namespace: Vec::new(),
    };
    for i in 0..10u32 {
        b.register_timer(q, &timer(100 + i64::from(i), key(i)))
            .unwrap();
    }
    b.register_timer(q, &timer(100, key(0))).unwrap();
    b.delete_timer(q, &timer(101, key(1))).unwrap();
    assert_eq!(b.next_timer(q).unwrap(), Some(100));
    // Deleting a key group's head looks for its next timer, held ones included.
    b.register_timer(q, &timer(150, key(0))).unwrap();
    b.delete_timer(q, &timer(100, key(0))).unwrap();
    b.register_timer(q, &timer(50, b"early".to_vec())).unwrap();
    assert_eq!(b.next_timer(q).unwrap(), Some(50));
    let mut scanned = 0;
    b.scan_timers(q, b.key_group_range(), &mut |_| {
        scanned += 1;
        Ok(Visit::Continue)
    })
    .unwrap();
    assert_eq!(
        scanned, 10,
        "8 left of the first 10, the one at 150 and the early one"
    );

    // A checkpoint right after registering holds the registrations.
    b.register_timer(q, &timer(200, b"late".to_vec())).unwrap();
    let handle = b.checkpoint(1).unwrap();
    b.register_timer(q, &timer(300, b"after the checkpoint".to_vec()))
        .unwrap();
    let mut restored = h.open();
    restored.restore(std::slice::from_ref(&handle)).unwrap();
    let popped = |b: &mut F::Backend| -> Vec<i64> {
        b.pop_due_timers(q, i64::MAX, usize::MAX)
            .unwrap()
            .iter()
            .map(|t| t.timestamp)
            .collect()
    };
    let expected = [50, 102, 103, 104, 105, 106, 107, 108, 109, 150, 200];
    assert_eq!(popped(&mut restored), expected);
    // Restoring into the original drops what it held since the checkpoint.
    b.restore(&[handle]).unwrap();
    assert_eq!(popped(&mut b), expected);
}

pub fn write_batch_is_atomic<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let owned = KeyGroupRange::new(0, 31).unwrap();
    let mut b = h.open_range(owned);
    let s = map_state(&mut b, "s");
    let mine = Addr::new(&key_in_group(3), b"");
    let foreign = Addr::new(&key_in_group(40), b"");
    b.put(mine.scope(s), b"keep", b"old").unwrap();
    for i in 0..5u8 {
        b.put(mine.scope(s), &[b'r', i], b"r").unwrap();
    }
    let mut bad = WriteBatch::new();
    bad.put(mine.scope(s), b"a", b"1")
        .delete(mine.scope(s), b"keep")
        .put(foreign.scope(s), b"b", b"2");
    let err = b.write(bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        b.get(mine.scope(s), b"a").unwrap(),
        None,
        "no part of a failed batch applies"
    );
    assert_eq!(
        b.get(mine.scope(s), b"keep").unwrap(),
        Some(b"old".to_vec())
    );

    let mut good = WriteBatch::new();
    good.put(mine.scope(s), b"a", b"1")
        .merge(mine.scope(s), b"a", b"2")
        .delete(mine.scope(s), b"keep")
        .delete_range(mine.scope(s), Some(&[b'r', 1]), Some(&[b'r', 4]))
        .put(mine.scope(s), b"z", b"last");
    assert_eq!(good.len(), 5);
    b.write(good).unwrap();
    assert_eq!(
        b.get(mine.scope(s), b"a").unwrap(),
        Some(b"12".to_vec()),
        "ops apply in order"
    );
    assert_eq!(b.get(mine.scope(s), b"keep").unwrap(), None);
    let keys = keys_of(&scan_all(
        &b,
        mine.scope(s),
        UserKeyRange::all(),
        Direction::Forward,
    ));
    assert_eq!(
        keys,
        vec![b"a".to_vec(), vec![b'r', 0], vec![b'r', 4], b"z".to_vec()]
    );
    b.write(WriteBatch::new()).unwrap();
}

/// A batch of many range deletes over many keys and key groups, in no particular order, with
/// overlaps, empty scopes and writes before and after them: what a batch of fired cleanup
/// timers writes.
pub fn range_deletes_in_one_batch<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let s = map_state(&mut b, "s");
    let t = map_state(&mut b, "t");
    let addrs: Vec<Addr> = (0..24u32)
        .map(|i| Addr::new(format!("user-{i}").as_bytes(), b""))
        .collect();
    // Expected entries per (state, addr index): the timestamps left.
    let mut want: BTreeMap<(StateId, usize), BTreeSet<u64>> = BTreeMap::new();
    for (i, a) in addrs.iter().enumerate() {
        for state in [s, t] {
            // Every third key of `t` holds nothing: its deletes find an empty scope.
            if state == t && i % 3 == 0 {
                continue;
            }
            for ts in 0..12u64 {
                b.put(a.scope(state), &ts_key(ts), b"v").unwrap();
                want.entry((state, i)).or_default().insert(ts);
            }
        }
    }
    let mut batch = WriteBatch::new();
    // Scopes in reverse order, so the batch is not sorted by key.
    for (i, a) in addrs.iter().enumerate().rev() {
        let (lo, hi) = ((i % 5) as u64, (i % 5) as u64 + 4);
        for state in [s, t] {
            // A put inside the range before the delete goes with it.
            batch.put(a.scope(state), &ts_key(lo + 1), b"new");
            batch.delete_range(a.scope(state), Some(&ts_key(lo)), Some(&ts_key(hi)));
            // An overlapping second range on the same scope.
            batch.delete_range(a.scope(state), Some(&ts_key(hi - 1)), Some(&ts_key(hi + 1)));
            if let Some(left) = want.get_mut(&(state, i)) {
                left.retain(|ts| !(lo..=hi).contains(ts));
            }
            // A put after the deletes, inside their ranges, stays.
            if i % 2 == 0 {
                batch.put(a.scope(state), &ts_key(lo), b"after");
                want.entry((state, i)).or_default().insert(lo);
            }
        }
    }
    b.write(batch).unwrap();
    for (i, a) in addrs.iter().enumerate() {
        for state in [s, t] {
            let got: BTreeSet<u64> =
                scan_all(&b, a.scope(state), UserKeyRange::all(), Direction::Forward)
                    .iter()
                    .map(|(k, _)| u64::from_be_bytes(k[..].try_into().unwrap()))
                    .collect();
            let expected = want.get(&(state, i)).cloned().unwrap_or_default();
            assert_eq!(got, expected, "state {state:?}, key {i}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints, restore, rescale

pub fn checkpoint_then_restore_equals_original<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    populate(&mut b, 300);
    let all = b.key_group_range();
    let before = dump(&b, all);
    assert!(
        before.0.len() > 1000 && before.1.len() == 600,
        "populate wrote state"
    );
    let handle = b.checkpoint(7).unwrap();
    assert_eq!(handle.checkpoint_id, 7);
    assert_eq!(handle.key_groups, all);
    // The checkpoint is a snapshot: later writes do not leak into it.
    let map = map_state(&mut b, "map");
    b.put(Addr::new(b"after", b"").scope(map), b"x", b"y")
        .unwrap();
    let mut restored = h.open();
    restored.restore(std::slice::from_ref(&handle)).unwrap();
    assert_eq!(dump(&restored, all), before);
    // The handle survives serialization (engines store it in their own metadata).
    let json = serde_json_roundtrip(&handle);
    let mut again = h.open();
    again.restore(&[json]).unwrap();
    assert_eq!(dump(&again, all), before);
}

fn serde_json_roundtrip(handle: &CheckpointHandle) -> CheckpointHandle {
    let text = serde_json::to_string(handle).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn restore_of_a_key_group_sub_range<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    populate(&mut b, 200);
    let handle = b.checkpoint(1).unwrap();
    let sub = KeyGroupRange::new(17, 40).unwrap();
    let mut part = h.open_range(sub);
    part.restore(&[handle]).unwrap();
    let (want_entries, want_timers) = dump(&b, sub);
    assert!(!want_entries.is_empty());
    let (entries, timers) = dump(
        &part,
        KeyGroupRange::all(u32::from(MAX_PARALLELISM)).unwrap(),
    );
    assert_eq!(entries, want_entries);
    assert_eq!(timers, want_timers);
    assert!(entries.keys().all(|k| sub.contains(k.1)));
}

pub fn rescale_two_to_three_and_one<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let max = u32::from(MAX_PARALLELISM);
    let keys = 400u32;
    let map_of = |b: &mut F::Backend| map_state(b, "map");
    // Two instances at parallelism 2, each writing the keys it owns.
    let mut handles = Vec::new();
    for index in 0..2 {
        let range = KeyGroupRange::for_operator(max, 2, index).unwrap();
        let mut b = h.open_range(range);
        let map = map_of(&mut b);
        for i in 0..keys {
            let key = format!("user-{i}").into_bytes();
            let a = Addr::new(&key, b"");
            if range.contains(a.scope(map).key_group) {
                b.put(a.scope(map), b"uk", format!("value-{i}").as_bytes())
                    .unwrap();
            }
        }
        handles.push(b.checkpoint(1).unwrap());
    }
    for parallelism in [3u32, 1] {
        let mut seen = BTreeMap::new();
        for index in 0..parallelism {
            let range = KeyGroupRange::for_operator(max, parallelism, index).unwrap();
            let mut b = h.open_range(range);
            b.restore(&handles).unwrap();
            let map = map_of(&mut b);
            b.scan_state(map, range, &mut |e| {
                let prev = seen.insert(e.key.to_vec(), (index, e.value.to_vec()));
                assert!(prev.is_none(), "key in two instances after rescale");
                assert!(range.contains(e.key_group));
                Ok(Visit::Continue)
            })
            .unwrap();
            // And point reads work in the new layout.
            for i in (0..keys).step_by(37) {
                let key = format!("user-{i}").into_bytes();
                let a = Addr::new(&key, b"");
                if range.contains(a.scope(map).key_group) {
                    assert_eq!(
                        b.get(a.scope(map), b"uk").unwrap(),
                        Some(format!("value-{i}").into_bytes())
                    );
                }
            }
        }
        assert_eq!(
            seen.len(),
            keys as usize,
            "every key in exactly one instance (p={parallelism})"
        );
        for (key, (_, value)) in &seen {
            let i = String::from_utf8(key.clone())
                .unwrap()
                .trim_start_matches("user-")
                .to_string();
            assert_eq!(value, format!("value-{i}").as_bytes());
        }
    }
    // Handles that do not cover the owned range are refused.
    let mut b = h.open();
    let err = b.restore(&handles[..1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

/// A handle taken before a restore addresses the same state after it, whatever order the
/// checkpoint registered its states in; a restored state of the same name with another kind
/// is refused and leaves the instance as it was.
pub fn restore_keeps_state_ids<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut original = h.open();
    let first = map_state(&mut original, "first");
    let second = map_state(&mut original, "second");
    let a = Addr::new(b"k", b"");
    original.put(a.scope(first), b"u", b"FIRST").unwrap();
    original.put(a.scope(second), b"u", b"SECOND").unwrap();
    let handle = original.checkpoint(1).unwrap();

    let mut b = h.open();
    let only_here = map_state(&mut b, "only-here");
    let second_here = map_state(&mut b, "second");
    b.put(a.scope(only_here), b"u", b"gone after the restore")
        .unwrap();
    b.restore(std::slice::from_ref(&handle)).unwrap();
    assert_eq!(
        b.get(a.scope(second_here), b"u").unwrap(),
        Some(b"SECOND".to_vec()),
        "the handle registered before the restore still addresses 'second'"
    );
    assert_eq!(b.get(a.scope(only_here), b"u").unwrap(), None);
    let first_here = map_state(&mut b, "first");
    assert_eq!(
        b.get(a.scope(first_here), b"u").unwrap(),
        Some(b"FIRST".to_vec())
    );
    let names: Vec<String> = b.states().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["only-here", "second", "first"]);

    let mut clash = h.open();
    let value = clash
        .register_state(&StateDescriptor::new("first", StateKind::Value))
        .unwrap();
    clash.put(a.scope(value), b"", b"kept").unwrap();
    let err = clash.restore(std::slice::from_ref(&handle)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incompatible, "{err}");
    assert_eq!(
        clash.get(a.scope(value), b"").unwrap(),
        Some(b"kept".to_vec())
    );
}

pub fn restore_replaces_later_writes<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    populate(&mut b, 50);
    let all = b.key_group_range();
    let at_checkpoint = dump(&b, all);
    let handle = b.checkpoint(1).unwrap();
    let map = map_state(&mut b, "map");
    let a = Addr::new(b"user-1", b"");
    b.put(a.scope(map), b"later", b"x").unwrap();
    b.delete_range(Addr::new(b"user-2", b"").scope(map), UserKeyRange::all())
        .unwrap();
    b.register_state(&StateDescriptor::new("added-later", StateKind::Value))
        .unwrap();
    b.restore(&[handle]).unwrap();
    assert_eq!(dump(&b, all), at_checkpoint);
    // The backend is fully usable after restore, including new checkpoints.
    let map = map_state(&mut b, "map");
    b.put(a.scope(map), b"after-restore", b"y").unwrap();
    b.checkpoint(2).unwrap();
}

pub fn incomplete_or_damaged_checkpoints_are_rejected<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    populate(&mut b, 40);
    let all = b.key_group_range();
    let handle = b.checkpoint(1).unwrap();
    let manifest = handle.manifest_path();
    let original = h.storage.get(&manifest).unwrap();

    let mut target = h.open();
    let map = map_state(&mut target, "map");
    target
        .put(Addr::new(b"mine", b"").scope(map), b"x", b"kept")
        .unwrap();
    let before = dump(&target, all);

    // A checkpoint whose manifest was never written does not exist.
    h.storage.delete(&manifest).unwrap();
    let err = target.restore(std::slice::from_ref(&handle)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        dump(&target, all),
        before,
        "a failed restore changes nothing"
    );

    // A damaged manifest is corruption, named as such.
    let mut damaged = original.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x20;
    h.storage.put(&manifest, &damaged).unwrap();
    let err = target.restore(std::slice::from_ref(&handle)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert_eq!(dump(&target, all), before);

    // Truncated manifest.
    h.storage
        .put(&manifest, &original[..original.len() / 3])
        .unwrap();
    assert!(target.restore(std::slice::from_ref(&handle)).is_err());
    assert_eq!(dump(&target, all), before);

    // Every data file the checkpoint stored beside its manifest, flipped or truncated, fails
    // the restore with an error naming it, and changes nothing.
    h.storage.put(&manifest, &original).unwrap();
    let data_files: Vec<String> = h
        .storage
        .list(&handle.location)
        .unwrap()
        .into_iter()
        .chain(h.storage.list("shared").unwrap())
        .filter(|p| !p.ends_with("MANIFEST"))
        .collect();
    for path in &data_files {
        let intact = h.storage.get(path).unwrap();
        if intact.is_empty() {
            continue;
        }
        let mut flipped = intact.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        for (what, bytes) in [("flipped", flipped), ("truncated", intact[..at].to_vec())] {
            h.storage.put(path, &bytes).unwrap();
            let err = target.restore(std::slice::from_ref(&handle)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corruption, "{what} {path}: {err}");
            let file = path.rsplit('/').next().unwrap_or(path);
            assert!(err.to_string().contains(file), "{what} {path}: {err}");
            assert_eq!(dump(&target, all), before, "{what} {path}");
        }
        h.storage.put(path, &intact).unwrap();
    }

    // Restored intact, it works.
    target.restore(&[handle]).unwrap();
    assert_eq!(dump(&target, all), dump(&b, all));
}

pub fn checkpoint_ids_increase_and_old_ones_are_retired<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let map = map_state(&mut b, "map");
    let a = Addr::new(b"k", b"");
    let mut handles = Vec::new();
    for id in 1..=5u64 {
        b.put(a.scope(map), b"v", &id.to_be_bytes()).unwrap();
        handles.push(b.checkpoint(id).unwrap());
        b.notify_checkpoint_complete(id).unwrap();
    }
    assert_eq!(
        b.checkpoint(5).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        b.checkpoint(3).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // The default retention keeps the last three.
    for (i, handle) in handles.iter().enumerate() {
        let mut r = h.open();
        let result = r.restore(std::slice::from_ref(handle));
        if i < 2 {
            assert_eq!(
                result.unwrap_err().kind(),
                ErrorKind::NotFound,
                "checkpoint {} retired",
                i + 1
            );
        } else {
            result.unwrap();
            let map = map_state(&mut r, "map");
            assert_eq!(
                r.get(a.scope(map), b"v").unwrap(),
                Some((i as u64 + 1).to_be_bytes().to_vec())
            );
        }
    }
}

/// A checkpoint completed on one instance counts only once the engine confirms it: until
/// then no older checkpoint is deleted, and an aborted one is deleted alone. (Deleting at
/// local completion lost checkpoint 1 below as soon as checkpoint 4 completed locally, and
/// with one retained checkpoint an aborted checkpoint deleted the last good one.)
pub fn retention_waits_for_the_engine<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let mut b = h.open();
    let map = map_state(&mut b, "map");
    let a = Addr::new(b"k", b"");
    let mut handles = Vec::new();
    for id in 1..=4u64 {
        b.put(a.scope(map), b"v", &id.to_be_bytes()).unwrap();
        handles.push(b.checkpoint(id).unwrap());
        if id <= 3 {
            b.notify_checkpoint_complete(id).unwrap();
        }
    }
    let restores = |handle: &CheckpointHandle| {
        let mut r = h.open();
        match r.restore(std::slice::from_ref(handle)) {
            Ok(()) => {
                let map = map_state(&mut r, "map");
                let v = r.get(a.scope(map), b"v").unwrap().unwrap();
                assert_eq!(v, handle.checkpoint_id.to_be_bytes(), "contents");
                true
            }
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => panic!("restore of checkpoint {}: {e}", handle.checkpoint_id),
        }
    };
    let restorable = |handles: &[CheckpointHandle]| -> Vec<u64> {
        handles
            .iter()
            .filter(|h| restores(h))
            .map(|h| h.checkpoint_id)
            .collect()
    };
    // Three confirmed (the default retention), one pending: all four are kept.
    assert_eq!(restorable(&handles), [1, 2, 3, 4]);
    b.notify_checkpoint_aborted(4).unwrap();
    assert_eq!(
        restorable(&handles),
        [1, 2, 3],
        "the aborted one goes alone"
    );
    assert_eq!(
        b.notify_checkpoint_complete(4).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Aborting a checkpoint this instance never completed is no error.
    b.notify_checkpoint_aborted(99).unwrap();
    b.put(a.scope(map), b"v", &5u64.to_be_bytes()).unwrap();
    handles.push(b.checkpoint(5).unwrap());
    b.notify_checkpoint_complete(5).unwrap();
    assert_eq!(restorable(&handles), [2, 3, 5]);
    assert_eq!(
        b.notify_checkpoint_aborted(5).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // A late notification of a retired checkpoint changes nothing.
    b.notify_checkpoint_complete(1).unwrap();
    assert_eq!(restorable(&handles), [2, 3, 5]);
}

/// Two operators with the same parallelism share one checkpoint storage: with their own
/// operator ids, checkpoints of the same id do not overwrite each other (without, the second
/// operator's checkpoint 1 replaced the first's).
pub fn operators_sharing_a_storage_keep_their_checkpoints_apart<F: BackendFactory>() {
    let h = Harness::<F>::new();
    let all = KeyGroupRange::all(u32::from(MAX_PARALLELISM)).unwrap();
    let open = |operator: &str| {
        h.factory
            .open(h.config(all).with_operator_id(operator))
            .unwrap()
    };
    let a = Addr::new(b"k", b"");
    let mut handles = Vec::new();
    for operator in ["job-1/join", "job-1/window"] {
        let mut b = open(operator);
        let map = map_state(&mut b, "map");
        b.put(a.scope(map), b"v", operator.as_bytes()).unwrap();
        let handle = b.checkpoint(1).unwrap();
        b.notify_checkpoint_complete(1).unwrap();
        assert!(handle.location.starts_with(operator), "{}", handle.location);
        handles.push((operator, handle));
    }
    for (operator, handle) in &handles {
        let mut r = open(operator);
        r.restore(std::slice::from_ref(handle)).unwrap();
        let map = map_state(&mut r, "map");
        assert_eq!(
            r.get(a.scope(map), b"v").unwrap(),
            Some(operator.as_bytes().to_vec())
        );
    }
    for bad in ["", "../up", "a//b", "white space"] {
        let err = h
            .factory
            .open(h.config(all).with_operator_id(bad))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}: {err}");
    }
}

/// The differential property test: random operation sequences against the backend and the
/// model must give identical results.
pub fn differential_against_model<F: BackendFactory>() {
    crate::model::run_differential::<F>();
}

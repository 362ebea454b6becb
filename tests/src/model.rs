//! A trivially correct model of the state backend contract, and the differential test that
//! runs random operation sequences against a backend and the model.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use statekit_backend::{
    key_group_of, Checkpointing, Direction, Scope, StateBackend, StateDescriptor, StateId,
    StateKind, StateRead, StateWrite, Timer, TimerStore, UserKeyRange, Visit, WriteBatch,
};

use crate::conformance::{dump, Harness, MAX_PARALLELISM};
use crate::BackendFactory;

/// TTL of state 1 in the model run, in ms.
const TTL_MS: u64 = 1_000;

const KEYS: [&[u8]; 6] = [b"", b"a", b"ab", b"\x00", b"\xff\xff", "ü".as_bytes()];
const NAMESPACES: [&[u8]; 2] = [b"", b"w"];

/// One entry address in the model's small universe.
#[derive(Debug, Clone, Copy)]
pub struct At {
    state: usize,
    key: usize,
    ns: usize,
}

impl At {
    fn scope(self, ids: &[StateId]) -> Scope<'static> {
        Scope {
            state: ids[self.state],
            key_group: key_group_of(KEYS[self.key], MAX_PARALLELISM),
            key: KEYS[self.key],
            namespace: NAMESPACES[self.ns],
        }
    }
}

/// A bound on user keys.
#[derive(Debug, Clone)]
pub enum B {
    In(Vec<u8>),
    Ex(Vec<u8>),
    Un,
}

impl B {
    fn as_bound(&self) -> Bound<&[u8]> {
        match self {
            B::In(k) => Bound::Included(k),
            B::Ex(k) => Bound::Excluded(k),
            B::Un => Bound::Unbounded,
        }
    }
}

/// One operation of a random sequence.
#[derive(Debug, Clone)]
pub enum Op {
    Put(At, Vec<u8>, Vec<u8>),
    Merge(At, Vec<u8>, Vec<u8>),
    Delete(At, Vec<u8>),
    DeleteRange(At, B, B),
    Get(At, Vec<u8>),
    MultiGet(Vec<(At, Vec<u8>)>),
    Scan(At, B, B, bool, usize),
    Batch(Vec<Op>),
    RegisterTimer(usize, usize, i64),
    DeleteTimer(usize, usize, i64),
    PopTimers(i64, usize),
    Advance(u64),
    CheckpointRestore,
}

fn at() -> impl Strategy<Value = At> {
    (0..2usize, 0..KEYS.len(), 0..NAMESPACES.len()).prop_map(|(state, key, ns)| At {
        state,
        key,
        ns,
    })
}

fn user_key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0xff)],
        0..3,
    )
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..6)
}

fn bound() -> impl Strategy<Value = B> {
    prop_oneof![
        user_key().prop_map(B::In),
        user_key().prop_map(B::Ex),
        Just(B::Un)
    ]
}

fn write_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (at(), user_key(), value()).prop_map(|(a, k, v)| Op::Put(a, k, v)),
        2 => (at(), user_key(), value()).prop_map(|(a, k, v)| Op::Merge(a, k, v)),
        2 => (at(), user_key()).prop_map(|(a, k)| Op::Delete(a, k)),
        1 => (at(), bound(), bound()).prop_map(|(a, l, u)| Op::DeleteRange(a, l, u)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        9 => write_op(),
        3 => (at(), user_key()).prop_map(|(a, k)| Op::Get(a, k)),
        1 => proptest::collection::vec((at(), user_key()), 0..5).prop_map(Op::MultiGet),
        3 => (at(), bound(), bound(), any::<bool>(), 1..5usize)
            .prop_map(|(a, l, u, rev, limit)| Op::Scan(a, l, u, rev, limit)),
        1 => proptest::collection::vec(write_op(), 0..5).prop_map(Op::Batch),
        // Several range deletes in one batch (one pass over the store in the remote backend).
        1 => proptest::collection::vec(
            prop_oneof![
                3 => (at(), bound(), bound()).prop_map(|(a, l, u)| Op::DeleteRange(a, l, u)),
                1 => write_op(),
            ],
            2..6
        )
        .prop_map(Op::Batch),
        2 => (0..KEYS.len(), 0..NAMESPACES.len(), -3..6i64)
            .prop_map(|(k, n, t)| Op::RegisterTimer(k, n, t)),
        1 => (0..KEYS.len(), 0..NAMESPACES.len(), -3..6i64)
            .prop_map(|(k, n, t)| Op::DeleteTimer(k, n, t)),
        1 => (-3..6i64, 1..4usize).prop_map(|(w, l)| Op::PopTimers(w, l)),
        2 => (0..700u64).prop_map(Op::Advance),
        1 => Just(Op::CheckpointRestore),
    ]
}

type Entry = (usize, Vec<u8>, Vec<u8>, Vec<u8>);

/// The model: a sorted map with expiry times, and a sorted set of timers.
#[derive(Debug, Default)]
pub struct Model {
    data: BTreeMap<Entry, (Vec<u8>, Option<u64>)>,
    timers: BTreeSet<Timer>,
    now: u64,
}

fn contains(lower: &B, upper: &B, k: &[u8]) -> bool {
    UserKeyRange::new(lower.as_bound(), upper.as_bound()).contains(k)
}

impl Model {
    fn entry(a: At, uk: &[u8]) -> Entry {
        (
            a.state,
            KEYS[a.key].to_vec(),
            NAMESPACES[a.ns].to_vec(),
            uk.to_vec(),
        )
    }

    fn expiry(&self, state: usize) -> Option<u64> {
        (state == 1).then_some(self.now + TTL_MS)
    }

    fn live(&self, slot: &(Vec<u8>, Option<u64>)) -> bool {
        slot.1.is_none_or(|t| self.now < t)
    }

    fn get(&self, a: At, uk: &[u8]) -> Option<Vec<u8>> {
        self.data
            .get(&Self::entry(a, uk))
            .filter(|s| self.live(s))
            .map(|s| s.0.clone())
    }

    fn write(&mut self, op: &Op) {
        match op {
            Op::Put(a, k, v) => {
                let exp = self.expiry(a.state);
                self.data.insert(Self::entry(*a, k), (v.clone(), exp));
            }
            Op::Merge(a, k, v) => {
                let mut value = self.get(*a, k).unwrap_or_default();
                value.extend_from_slice(v);
                let exp = self.expiry(a.state);
                self.data.insert(Self::entry(*a, k), (value, exp));
            }
            Op::Delete(a, k) => {
                self.data.remove(&Self::entry(*a, k));
            }
            Op::DeleteRange(a, l, u) => {
                let scope = Self::entry(*a, b"");
                self.data.retain(|e, _| {
                    !(e.0 == scope.0 && e.1 == scope.1 && e.2 == scope.2 && contains(l, u, &e.3))
                });
            }
            _ => unreachable!("not a write"),
        }
    }

    fn scan(&self, a: At, l: &B, u: &B, reverse: bool, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let scope = Self::entry(a, b"");
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = self
            .data
            .iter()
            .filter(|(e, s)| {
                e.0 == scope.0
                    && e.1 == scope.1
                    && e.2 == scope.2
                    && contains(l, u, &e.3)
                    && self.live(s)
            })
            .map(|(e, s)| (e.3.clone(), s.0.clone()))
            .collect();
        if reverse {
            out.reverse();
        }
        out.truncate(limit);
        out
    }
}

fn timer(key: usize, ns: usize, ts: i64) -> Timer {
    Timer {
        timestamp: ts,
        key_group: key_group_of(KEYS[key], MAX_PARALLELISM),
        key: KEYS[key].to_vec(),
        namespace: NAMESPACES[ns].to_vec(),
    }
}

fn apply_write<S: StateBackend>(
    backend: &mut S,
    ids: &[StateId],
    op: &Op,
) -> statekit_backend::Result<()> {
    match op {
        Op::Put(a, k, v) => backend.put(a.scope(ids), k, v),
        Op::Merge(a, k, v) => backend.merge(a.scope(ids), k, v),
        Op::Delete(a, k) => backend.delete(a.scope(ids), k),
        Op::DeleteRange(a, l, u) => {
            backend.delete_range(a.scope(ids), UserKeyRange::new(l.as_bound(), u.as_bound()))
        }
        _ => unreachable!("not a write"),
    }
}

fn add_to_batch(batch: &mut WriteBatch, ids: &[StateId], op: &Op) {
    match op {
        Op::Put(a, k, v) => batch.put(a.scope(ids), k, v),
        Op::Merge(a, k, v) => batch.merge(a.scope(ids), k, v),
        Op::Delete(a, k) => batch.delete(a.scope(ids), k),
        Op::DeleteRange(a, l, u) => {
            let (lower, upper) = UserKeyRange::new(l.as_bound(), u.as_bound()).to_half_open();
            batch.delete_range(a.scope(ids), lower.as_deref(), upper.as_deref())
        }
        _ => unreachable!("not a write"),
    };
}

fn register<S: StateBackend>(b: &mut S) -> (Vec<StateId>, StateId) {
    let plain = b
        .register_state(&StateDescriptor::new("plain", StateKind::Map))
        .unwrap();
    let ttl = b
        .register_state(
            &StateDescriptor::new("ttl", StateKind::Map)
                .with_ttl(std::time::Duration::from_millis(TTL_MS)),
        )
        .unwrap();
    let timers = b
        .register_state(&StateDescriptor::new("timers", StateKind::Timers))
        .unwrap();
    (vec![plain, ttl], timers)
}

fn run_case<F: BackendFactory>(ops: &[Op]) -> Result<(), TestCaseError> {
    let h = Harness::<F>::new();
    let mut backend = h.open();
    let (mut ids, mut queue) = register(&mut backend);
    let mut model = Model {
        now: 1_000_000,
        ..Model::default()
    };
    let mut next_checkpoint = 1;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Put(..) | Op::Merge(..) | Op::Delete(..) | Op::DeleteRange(..) => {
                apply_write(&mut backend, &ids, op).unwrap();
                model.write(op);
            }
            Op::Get(a, k) => {
                prop_assert_eq!(
                    backend.get(a.scope(&ids), k).unwrap(),
                    model.get(*a, k),
                    "step {}: {:?}",
                    step,
                    op
                );
            }
            Op::MultiGet(reqs) => {
                let requests: Vec<(Scope<'_>, &[u8])> = reqs
                    .iter()
                    .map(|(a, k)| (a.scope(&ids), k.as_slice()))
                    .collect();
                let want: Vec<Option<Vec<u8>>> =
                    reqs.iter().map(|(a, k)| model.get(*a, k)).collect();
                prop_assert_eq!(backend.multi_get(&requests).unwrap(), want, "step {}", step);
            }
            Op::Scan(a, l, u, reverse, limit) => {
                let mut got = Vec::new();
                let direction = if *reverse {
                    Direction::Reverse
                } else {
                    Direction::Forward
                };
                backend
                    .scan(
                        a.scope(&ids),
                        UserKeyRange::new(l.as_bound(), u.as_bound()),
                        direction,
                        &mut |k, v| {
                            got.push((k.to_vec(), v.to_vec()));
                            Ok(if got.len() == *limit {
                                Visit::Stop
                            } else {
                                Visit::Continue
                            })
                        },
                    )
                    .unwrap();
                prop_assert_eq!(
                    got,
                    model.scan(*a, l, u, *reverse, *limit),
                    "step {}: {:?}",
                    step,
                    op
                );
            }
            Op::Batch(writes) => {
                let mut batch = WriteBatch::new();
                for w in writes {
                    add_to_batch(&mut batch, &ids, w);
                }
                backend.write(batch).unwrap();
                for w in writes {
                    model.write(w);
                }
            }
            Op::RegisterTimer(k, n, ts) => {
                backend.register_timer(queue, &timer(*k, *n, *ts)).unwrap();
                model.timers.insert(timer(*k, *n, *ts));
            }
            Op::DeleteTimer(k, n, ts) => {
                backend.delete_timer(queue, &timer(*k, *n, *ts)).unwrap();
                model.timers.remove(&timer(*k, *n, *ts));
            }
            Op::PopTimers(watermark, limit) => {
                let got = backend.pop_due_timers(queue, *watermark, *limit).unwrap();
                let want: Vec<Timer> = model
                    .timers
                    .iter()
                    .filter(|t| t.timestamp <= *watermark)
                    .take(*limit)
                    .cloned()
                    .collect();
                for t in &want {
                    model.timers.remove(t);
                }
                prop_assert_eq!(got, want, "step {}", step);
                prop_assert_eq!(
                    backend.next_timer(queue).unwrap(),
                    model.timers.first().map(|t| t.timestamp)
                );
            }
            Op::Advance(ms) => {
                h.clock.advance(*ms);
                model.now += ms;
            }
            Op::CheckpointRestore => {
                let handle = backend.checkpoint(next_checkpoint).unwrap();
                next_checkpoint += 1;
                backend = h.open();
                backend.restore(&[handle]).unwrap();
                (ids, queue) = register(&mut backend);
            }
        }
    }
    // Finally the whole content, with expiry times, must match.
    let (entries, timers) = dump(&backend, backend.key_group_range());
    let names = ["plain", "ttl"];
    let want: BTreeMap<_, _> = model
        .data
        .iter()
        .filter(|(_, s)| model.live(s))
        .map(|(e, s)| {
            let kg = key_group_of(&e.1, MAX_PARALLELISM);
            (
                (
                    names[e.0].to_string(),
                    kg,
                    e.1.clone(),
                    e.2.clone(),
                    e.3.clone(),
                ),
                s.clone(),
            )
        })
        .collect();
    prop_assert_eq!(entries, want);
    let want_timers: BTreeSet<_> = model
        .timers
        .iter()
        .map(|t| ("timers".to_string(), t.clone()))
        .collect();
    prop_assert_eq!(timers, want_timers);
    Ok(())
}

/// Runs `PROPTEST_CASES` (default 64) random sequences of up to 60 operations.
pub fn run_differential<F: BackendFactory>() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(op(), 1..60);
    if let Err(e) = runner.run(&strategy, |ops| run_case::<F>(&ops)) {
        panic!("backend differs from the model: {e}");
    }
}

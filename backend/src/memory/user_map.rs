//! The user keys of one scope (state, key, namespace) of the memory backend.
//!
//! Most scopes of keyed operator state hold a handful of entries (a value, a few buffered
//! lists), while a few hold thousands (a hot key's map). A `BTreeMap` allocates a whole node
//! (11 slots, about 700 bytes with these types) for its first entry, which dominated the
//! backend's memory on a million keys with one or two entries each; so a scope starts as a
//! sorted vector, sized to its entries, and becomes a B-tree only when it grows past
//! [`SMALL_MAX`] entries, where the vector's O(n) inserts would start to cost.

use std::cmp::Ordering;
use std::collections::{btree_map, BTreeMap};
use std::ops::Bound;

use smallvec::SmallVec;

use crate::backend::UserKeyRange;

/// Key bytes, kept inline up to 16 bytes (an encoded `u64` or timestamp is 8), so comparing
/// keys during a lookup reads no other cache line: on a million keys, chasing a pointer to
/// each compared key was a quarter of the memory backend's time.
pub(super) type KeyBytes = SmallVec<[u8; 16]>;

/// One stored value. 32 bytes: an expiry is a plain `u64` with [`Slot::NEVER`] for none,
/// where an `Option<u64>` took 16 bytes, for every entry of the state.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) value: Vec<u8>,
    expires: u64,
}

impl Slot {
    /// The expiry of an entry that never expires. A real expiry this late (584 million
    /// years of milliseconds) means the same.
    const NEVER: u64 = u64::MAX;

    pub(super) fn new(value: Vec<u8>, expires_at: Option<u64>) -> Self {
        Slot {
            value,
            expires: expires_at.unwrap_or(Self::NEVER),
        }
    }

    /// When the value expires (ms), `None` for never.
    pub(super) fn expires_at(&self) -> Option<u64> {
        (self.expires != Self::NEVER).then_some(self.expires)
    }

    pub(super) fn set_expires_at(&mut self, expires_at: Option<u64>) {
        self.expires = expires_at.unwrap_or(Self::NEVER);
    }

    /// Whether the value has not expired at `now` (ms).
    pub(super) fn live(&self, now: u64) -> bool {
        self.expires_at().is_none_or(|t| now < t)
    }
}

/// Entries above which a scope moves from a sorted vector to a B-tree.
pub(super) const SMALL_MAX: usize = 16;

/// The entries of one scope, ordered by user key.
#[derive(Debug, Clone)]
pub(super) enum UserMap {
    /// At most [`SMALL_MAX`] entries, sorted by key.
    Small(Vec<(KeyBytes, Slot)>),
    /// More entries.
    Large(BTreeMap<KeyBytes, Slot>),
}

impl Default for UserMap {
    fn default() -> Self {
        UserMap::Small(Vec::new())
    }
}

impl UserMap {
    pub(super) fn is_empty(&self) -> bool {
        match self {
            UserMap::Small(v) => v.is_empty(),
            UserMap::Large(m) => m.is_empty(),
        }
    }

    /// The length of the first key, if any: a read of the entries' memory, for warming it.
    pub(super) fn first_key_len(&self) -> Option<usize> {
        match self {
            UserMap::Small(v) => v.first().map(|(k, _)| k.len()),
            UserMap::Large(m) => m.first_key_value().map(|(k, _)| k.len()),
        }
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&Slot> {
        match self {
            UserMap::Small(v) => position(v, key).ok().map(|i| &v[i].1),
            UserMap::Large(m) => m.get(key),
        }
    }

    /// The slot under `key`, inserting `make()` first if there is none.
    pub(super) fn get_or_insert_with(
        &mut self,
        key: &[u8],
        make: impl FnOnce() -> Slot,
    ) -> &mut Slot {
        if matches!(self, UserMap::Small(v) if v.len() >= SMALL_MAX && self.get(key).is_none()) {
            self.grow();
        }
        match self {
            UserMap::Small(v) => match position(v, key) {
                Ok(i) => &mut v[i].1,
                Err(i) => {
                    // Grow by one: most scopes stay at one or two entries.
                    v.reserve_exact(1);
                    v.insert(i, (KeyBytes::from_slice(key), make()));
                    &mut v[i].1
                }
            },
            UserMap::Large(m) => m.entry(KeyBytes::from_slice(key)).or_insert_with(make),
        }
    }

    /// Sets `key` to `slot`.
    pub(super) fn insert(&mut self, key: &[u8], slot: Slot) {
        let mut slot = Some(slot);
        let stored = self.get_or_insert_with(key, || slot.take().expect("inserted once"));
        if let Some(new) = slot {
            *stored = new;
        }
    }

    pub(super) fn remove(&mut self, key: &[u8]) {
        match self {
            UserMap::Small(v) => {
                if let Ok(i) = position(v, key) {
                    v.remove(i);
                    // Give back what the removed entries held: a long-lived scope that once
                    // held many entries should not keep their room.
                    if v.capacity() > 2 * v.len() + 1 {
                        v.shrink_to_fit();
                    }
                }
            }
            UserMap::Large(m) => {
                m.remove(key);
                self.shrink_if_small();
            }
        }
    }

    /// Removes the keys in `(lower, upper)`; an inverted range removes nothing.
    pub(super) fn remove_range(&mut self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) {
        // BTreeMap::range panics on an inverted range (the vector's bounds just cross).
        if UserKeyRange::new(lower, upper).is_empty() {
            return;
        }
        match self {
            UserMap::Small(v) => {
                let (from, to) = small_bounds(v, lower, upper);
                if from < to {
                    v.drain(from..to);
                    v.shrink_to_fit();
                }
            }
            UserMap::Large(m) => {
                let doomed: Vec<KeyBytes> = m
                    .range::<[u8], _>((lower, upper))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    m.remove(&k);
                }
                self.shrink_if_small();
            }
        }
    }

    /// The entries with keys in `(lower, upper)`, ascending (reversible).
    pub(super) fn range<'a>(&'a self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Range<'a> {
        match self {
            UserMap::Small(v) => {
                let (from, to) = small_bounds(v, lower, upper);
                Range::Small(v[from..to.max(from)].iter())
            }
            UserMap::Large(m) => {
                // BTreeMap::range panics on an inverted range; an empty one reads nothing.
                if UserKeyRange::new(lower, upper).is_empty() {
                    return Range::Small([].iter());
                }
                Range::Large(m.range::<[u8], _>((lower, upper)))
            }
        }
    }

    /// Every entry, ascending.
    pub(super) fn iter(&self) -> Range<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// Keeps the entries for which `keep` says so.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) {
        match self {
            UserMap::Small(v) => v.retain(|(_, s)| keep(s)),
            UserMap::Large(m) => {
                m.retain(|_, s| keep(s));
                self.shrink_if_small();
            }
        }
    }

    /// Bytes of heap this map holds beyond its keys and values, estimated from the layout.
    pub(super) fn overhead_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(KeyBytes, Slot)>();
        match self {
            UserMap::Small(v) => v.capacity() * entry,
            // A B-tree node holds up to 11 entries and is about two thirds full.
            UserMap::Large(m) => m.len() * entry * 3 / 2,
        }
    }

    fn grow(&mut self) {
        if let UserMap::Small(v) = self {
            *self = UserMap::Large(std::mem::take(v).into_iter().collect());
        }
    }

    /// Back to a vector once a B-tree has shrunk to half of [`SMALL_MAX`] (not at
    /// `SMALL_MAX` itself, so a scope at the edge does not convert on every write).
    fn shrink_if_small(&mut self) {
        if let UserMap::Large(m) = self {
            if m.len() <= SMALL_MAX / 2 {
                *self = UserMap::Small(std::mem::take(m).into_iter().collect());
            }
        }
    }
}

/// Where `key` is in a sorted vector's entries (`Err`: where it would go). The ends are
/// tried first: operators append state in time order and clean it up oldest first, so most
/// writes land past the last entry and most deletes hit the first, and each probe of a
/// binary search is a cache miss in a scope not touched for minutes.
fn position(v: &[(KeyBytes, Slot)], key: &[u8]) -> Result<usize, usize> {
    let (Some((first, _)), Some((last, _))) = (v.first(), v.last()) else {
        return Err(0);
    };
    match compare_keys(last, key) {
        Ordering::Less => return Err(v.len()),
        Ordering::Equal => return Ok(v.len() - 1),
        Ordering::Greater => {}
    }
    match compare_keys(first, key) {
        Ordering::Greater => Err(0),
        Ordering::Equal => Ok(0),
        Ordering::Less => v[1..v.len() - 1]
            .binary_search_by(|(k, _)| compare_keys(k, key))
            .map(|i| i + 1)
            .map_err(|i| i + 1),
    }
}

/// Byte order of two keys. Eight-byte keys (an encoded timestamp or `u64`, most user keys)
/// are compared as big-endian integers, which is the same order without a call to `memcmp`.
pub(super) fn compare_keys(a: &[u8], b: &[u8]) -> Ordering {
    match (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) {
        (Ok(a), Ok(b)) => u64::from_be_bytes(a).cmp(&u64::from_be_bytes(b)),
        _ => a.cmp(b),
    }
}

/// The index range of a sorted vector's entries inside `(lower, upper)`.
fn small_bounds(
    v: &[(KeyBytes, Slot)],
    lower: Bound<&[u8]>,
    upper: Bound<&[u8]>,
) -> (usize, usize) {
    let from = match lower {
        Bound::Included(l) => v.partition_point(|(k, _)| compare_keys(k, l).is_lt()),
        Bound::Excluded(l) => v.partition_point(|(k, _)| compare_keys(k, l).is_le()),
        Bound::Unbounded => 0,
    };
    let to = match upper {
        Bound::Included(u) => v.partition_point(|(k, _)| compare_keys(k, u).is_le()),
        Bound::Excluded(u) => v.partition_point(|(k, _)| compare_keys(k, u).is_lt()),
        Bound::Unbounded => v.len(),
    };
    (from, to)
}

/// Entries of a [`UserMap`] in key order.
pub(super) enum Range<'a> {
    Small(std::slice::Iter<'a, (KeyBytes, Slot)>),
    Large(btree_map::Range<'a, KeyBytes, Slot>),
}

impl<'a> Iterator for Range<'a> {
    type Item = (&'a [u8], &'a Slot);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Range::Small(it) => it.next().map(|(k, s)| (&**k, s)),
            Range::Large(it) => it.next().map(|(k, s)| (&**k, s)),
        }
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Range::Small(it) => it.next_back().map(|(k, s)| (&**k, s)),
            Range::Large(it) => it.next_back().map(|(k, s)| (&**k, s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An entry of a small scope is 56 bytes: the key inline and a 32-byte slot whose
    /// "never expires" is a sentinel, not an `Option`'s extra word.
    #[test]
    fn an_entry_takes_56_bytes_and_keeps_its_expiry() {
        assert_eq!(std::mem::size_of::<(KeyBytes, Slot)>(), 56);
        let mut s = Slot::new(vec![1], None);
        assert_eq!(s.expires_at(), None);
        assert!(s.live(u64::MAX - 1));
        s.set_expires_at(Some(10));
        assert_eq!(s.expires_at(), Some(10));
        assert!(s.live(9) && !s.live(10));
        assert_eq!(Slot::new(vec![], Some(0)).expires_at(), Some(0));
    }

    fn slot(v: u8) -> Slot {
        Slot::new(vec![v], None)
    }

    fn bound(kind: u8, key: &[u8]) -> Bound<&[u8]> {
        match kind % 3 {
            0 => Bound::Included(key),
            1 => Bound::Excluded(key),
            _ => Bound::Unbounded,
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>, u8),
        Remove(Vec<u8>),
        RemoveRange(u8, Vec<u8>, u8, Vec<u8>),
        Retain(u8),
    }

    /// Short keys collide often; eight-byte ones take the integer comparison, with bytes
    /// that differ in the high bit.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(0u8..4, 0..3),
            prop::collection::vec(prop::sample::select(vec![0u8, 1, 0x7f, 0x80, 0xff]), 8),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (key(), any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => key().prop_map(Op::Remove),
            1 => (any::<u8>(), key(), any::<u8>(), key())
                .prop_map(|(a, l, b, u)| Op::RemoveRange(a, l, b, u)),
            1 => any::<u8>().prop_map(Op::Retain),
        ]
    }

    proptest! {
        /// Every operation and every range read (both directions) agrees with a `BTreeMap`,
        /// across the switches between the vector and the B-tree.
        #[test]
        fn behaves_like_a_btree_map(
            ops in prop::collection::vec(op(), 0..120),
            reads in prop::collection::vec((any::<u8>(), key(), any::<u8>(), key()), 8),
        ) {
            let mut map = UserMap::default();
            let mut model: BTreeMap<Vec<u8>, u8> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        map.insert(&k, slot(v));
                        model.insert(k, v);
                    }
                    Op::Remove(k) => {
                        map.remove(&k);
                        model.remove(&k);
                    }
                    Op::RemoveRange(a, l, b, u) => {
                        let (lo, hi) = (bound(a, &l), bound(b, &u));
                        map.remove_range(lo, hi);
                        if !UserKeyRange::new(lo, hi).is_empty() {
                            let doomed: Vec<Vec<u8>> =
                                model.range::<[u8], _>((lo, hi)).map(|(k, _)| k.clone()).collect();
                            for k in doomed {
                                model.remove(&k);
                            }
                        }
                    }
                    Op::Retain(m) => {
                        map.retain(|s| s.value[0] % 3 != m % 3);
                        model.retain(|_, v| *v % 3 != m % 3);
                    }
                }
                prop_assert_eq!(map.is_empty(), model.is_empty());
                let all: Vec<(Vec<u8>, u8)> = map.iter().map(|(k, s)| (k.to_vec(), s.value[0])).collect();
                let want: Vec<(Vec<u8>, u8)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
                prop_assert_eq!(all, want);
            }
            for (a, l, b, u) in reads {
                let (lo, hi) = (bound(a, &l), bound(b, &u));
                let got: Vec<Vec<u8>> = map.range(lo, hi).map(|(k, _)| k.to_vec()).collect();
                let back: Vec<Vec<u8>> = map.range(lo, hi).rev().map(|(k, _)| k.to_vec()).collect();
                let want: Vec<Vec<u8>> = if UserKeyRange::new(lo, hi).is_empty() {
                    Vec::new()
                } else {
                    model.range::<[u8], _>((lo, hi)).map(|(k, _)| k.clone()).collect()
                };
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(back.into_iter().rev().collect::<Vec<_>>(), want);
                for k in [&l, &u] {
                    prop_assert_eq!(map.get(k).map(|s| s.value[0]), model.get(k).copied());
                }
            }
        }
    }

    #[test]
    fn an_inverted_range_removes_nothing_from_either_layout() {
        let mut map = UserMap::default();
        for i in 0..=SMALL_MAX as u8 {
            map.insert(&[i], slot(i));
            let (lower, upper) = ([3u8], [1u8]);
            map.remove_range(Bound::Included(&lower), Bound::Included(&upper));
            map.remove_range(Bound::Excluded(&lower), Bound::Excluded(&lower));
            assert_eq!(map.iter().count(), i as usize + 1);
        }
        assert!(matches!(map, UserMap::Large(_)));
    }

    #[test]
    fn one_entry_holds_one_slot_not_a_tree_node() {
        let mut map = UserMap::default();
        map.insert(b"k", slot(1));
        assert!(matches!(&map, UserMap::Small(v) if v.capacity() == 1));
        for i in 0..=SMALL_MAX as u8 {
            map.insert(&[i], slot(i));
        }
        assert!(matches!(map, UserMap::Large(_)));
        for i in 0..=SMALL_MAX as u8 {
            map.remove(&[i]);
        }
        assert!(matches!(&map, UserMap::Small(v) if v.len() == 1));
    }
}

//! One key group's timers, grouped by time.
//!
//! Operators register timers at few distinct times near the watermark (a join's cleanup
//! bucket, a window's end), many scopes at each. So the group is an ordered map from time
//! (an integer: a small tree whose recent end stays in the CPU cache) to the scopes with a
//! timer then: a short sorted vector while there are few, a B-tree set when many (a window
//! end every key shares). A single set of `(time, scope)` pairs, as before, compared scopes
//! at every level of a tree of all the group's timers on each registration: about a tenth
//! of an ad-click run's operator thread on this backend.

use std::collections::{btree_map, BTreeMap, BTreeSet};

use smallvec::SmallVec;

use super::key_and_namespace::KeyAndNamespace;

/// Scopes at one time kept in a vector up to this many; a set beyond (a vector's insert
/// moves the elements after it).
const FEW_SCOPES: usize = 32;

/// The scopes at one time while few: one inline (timers at distinct times allocate
/// nothing), more in a heap buffer, sorted in descending order so the earliest pops from the
/// end.
type FewScopes = SmallVec<[KeyAndNamespace; 1]>;

/// The scopes with a timer at one time.
#[derive(Debug)]
enum Scopes {
    /// Empty only in passing, before its time is removed.
    Few(FewScopes),
    Many(BTreeSet<KeyAndNamespace>),
}

impl Scopes {
    /// Adds `scope`; false if it was there.
    fn insert(&mut self, scope: KeyAndNamespace) -> bool {
        match self {
            Scopes::Few(few) => match few.binary_search_by(|probe| scope.cmp(probe)) {
                Ok(_) => false,
                Err(at) if few.len() < FEW_SCOPES => {
                    few.insert(at, scope);
                    true
                }
                Err(_) => {
                    let mut many: BTreeSet<_> = few.drain(..).collect();
                    many.insert(scope);
                    *self = Scopes::Many(many);
                    true
                }
            },
            Scopes::Many(many) => many.insert(scope),
        }
    }

    /// Removes `scope`; false if it was not there.
    fn remove(&mut self, scope: &KeyAndNamespace) -> bool {
        match self {
            Scopes::Few(few) => match few.binary_search_by(|probe| scope.cmp(probe)) {
                Ok(at) => {
                    few.remove(at);
                    true
                }
                Err(_) => false,
            },
            Scopes::Many(many) => many.remove(scope),
        }
    }

    /// Removes and returns the first scope in order.
    fn pop_first(&mut self) -> Option<KeyAndNamespace> {
        match self {
            Scopes::Few(few) => few.pop(),
            Scopes::Many(many) => many.pop_first(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Scopes::Few(few) => few.is_empty(),
            Scopes::Many(many) => many.is_empty(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Scopes::Few(few) => few.len(),
            Scopes::Many(many) => many.len(),
        }
    }

    /// The scopes in ascending order.
    fn iter(&self) -> ScopesIter<'_> {
        match self {
            Scopes::Few(few) => ScopesIter::Few(few.iter().rev()),
            Scopes::Many(many) => ScopesIter::Many(many.iter()),
        }
    }

    /// Heap bytes: the vector's buffer or the set's nodes (about two thirds of a B-tree
    /// node's slots are used), and the scopes' own.
    fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<KeyAndNamespace>();
        let structure = match self {
            Scopes::Few(few) if few.spilled() => few.capacity() * slot,
            Scopes::Few(_) => 0,
            Scopes::Many(many) => many.len() * slot * 3 / 2,
        };
        structure + self.iter().map(KeyAndNamespace::heap_bytes).sum::<usize>()
    }
}

/// [`Scopes::iter`].
enum ScopesIter<'a> {
    Few(std::iter::Rev<std::slice::Iter<'a, KeyAndNamespace>>),
    Many(std::collections::btree_set::Iter<'a, KeyAndNamespace>),
}

impl<'a> Iterator for ScopesIter<'a> {
    type Item = &'a KeyAndNamespace;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ScopesIter::Few(few) => few.next(),
            ScopesIter::Many(many) => many.next(),
        }
    }
}

/// One key group's timers, in `(time, scope)` order; each `(time, scope)` at most once.
#[derive(Debug, Default)]
pub(super) struct GroupTimers {
    by_time: BTreeMap<i64, Scopes>,
}

impl GroupTimers {
    /// Adds a timer; false if it was there already.
    pub(super) fn insert(&mut self, time: i64, scope: KeyAndNamespace) -> bool {
        match self.by_time.entry(time) {
            btree_map::Entry::Occupied(mut at) => at.get_mut().insert(scope),
            btree_map::Entry::Vacant(at) => {
                at.insert(Scopes::Few(smallvec::smallvec![scope]));
                true
            }
        }
    }

    /// Removes a timer; false if there was none.
    pub(super) fn remove(&mut self, time: i64, scope: &KeyAndNamespace) -> bool {
        let btree_map::Entry::Occupied(mut at) = self.by_time.entry(time) else {
            return false;
        };
        let removed = at.get_mut().remove(scope);
        if at.get().is_empty() {
            at.remove();
        }
        removed
    }

    /// Removes and returns the first timer.
    pub(super) fn pop_first(&mut self) -> Option<(i64, KeyAndNamespace)> {
        let mut first = self.by_time.first_entry()?;
        let time = *first.key();
        let scope = first.get_mut().pop_first();
        if first.get().is_empty() {
            first.remove();
        }
        scope.map(|scope| (time, scope))
    }

    /// How many timers the group holds.
    pub(super) fn len(&self) -> usize {
        self.by_time.values().map(Scopes::len).sum()
    }

    /// The time of the first timer.
    pub(super) fn first_time(&self) -> Option<i64> {
        self.by_time.keys().next().copied()
    }

    /// Every timer in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (i64, &KeyAndNamespace)> + '_ {
        self.by_time
            .iter()
            .flat_map(|(&time, scopes)| scopes.iter().map(move |scope| (time, scope)))
    }

    /// Heap bytes, estimated: the time map's entries (as a B-tree node slot each) and the
    /// scopes at each time.
    pub(super) fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(i64, Scopes)>() * 3 / 2;
        self.by_time
            .values()
            .map(|scopes| entry + scopes.heap_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scope(key: u8, namespace: u8) -> KeyAndNamespace {
        KeyAndNamespace::new(&[key], &[namespace])
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64, u8, u8),
        Remove(i64, u8, u8),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few times and many scopes, so some times pass from a vector to a set.
        prop_oneof![
            4 => (0i64..4, 0u8..60, 0u8..2).prop_map(|(t, k, n)| Op::Insert(t, k, n)),
            2 => (0i64..4, 0u8..60, 0u8..2).prop_map(|(t, k, n)| Op::Remove(t, k, n)),
            1 => Just(Op::Pop),
        ]
    }

    proptest! {
        /// Every operation agrees with one ordered set of `(time, scope)` pairs, and so does
        /// the order of iteration and of pops.
        #[test]
        fn agrees_with_an_ordered_set(ops in proptest::collection::vec(op(), 0..400)) {
            let mut timers = GroupTimers::default();
            let mut model: BTreeSet<(i64, KeyAndNamespace)> = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(t, k, n) => {
                        prop_assert_eq!(timers.insert(t, scope(k, n)), model.insert((t, scope(k, n))));
                    }
                    Op::Remove(t, k, n) => {
                        prop_assert_eq!(timers.remove(t, &scope(k, n)), model.remove(&(t, scope(k, n))));
                    }
                    Op::Pop => prop_assert_eq!(timers.pop_first(), model.pop_first()),
                }
                prop_assert_eq!(timers.first_time(), model.first().map(|(t, _)| *t));
            }
            let listed: Vec<(i64, KeyAndNamespace)> =
                timers.iter().map(|(t, s)| (t, s.clone())).collect();
            prop_assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
        }
    }

    /// A timer at a time of its own takes one map entry and, for a key and namespace of up
    /// to 16 bytes, no allocation of its own: a million keys' cleanup timers are the
    /// backend's second-largest structure.
    #[test]
    fn a_lone_short_timer_allocates_nothing_of_its_own() {
        assert_eq!(std::mem::size_of::<Scopes>(), 48);
        let mut timers = GroupTimers::default();
        timers.insert(7, KeyAndNamespace::new(&42u64.to_be_bytes(), b""));
        let Scopes::Few(few) = &timers.by_time[&7] else {
            panic!("one scope is few")
        };
        assert!(!few.spilled());
        assert_eq!(
            timers.heap_bytes(),
            std::mem::size_of::<(i64, Scopes)>() * 3 / 2
        );
    }

    #[test]
    fn a_crowded_time_moves_to_a_set_and_keeps_its_order() {
        let mut timers = GroupTimers::default();
        for k in (0..100u8).rev() {
            assert!(timers.insert(5, scope(k, 0)));
        }
        assert!(!timers.insert(5, scope(42, 0)), "a duplicate is not added");
        assert!(matches!(timers.by_time[&5], Scopes::Many(_)));
        let popped: Vec<u8> = std::iter::from_fn(|| timers.pop_first())
            .map(|(t, s)| {
                assert_eq!(t, 5);
                s.key()[0]
            })
            .collect();
        assert_eq!(popped, (0..100).collect::<Vec<_>>());
        assert_eq!(timers.first_time(), None);
        assert_eq!(timers.heap_bytes(), 0);
    }
}

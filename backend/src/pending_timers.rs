//! Timer registrations held back and written together, by the backends that store timers
//! in an LSM tree (RocksDB, SlateDB).
//!
//! An operator registers a timer for nearly every element (the interval join: one per
//! element, at the end of its cleanup bucket). Written one by one, that is a store write
//! per element on top of the element's own. Held here until a read of the timer queues needs
//! them (a pop, a scan, a delete that looks for the next head), a flush or checkpoint, or
//! [`PendingTimers::LIMIT`] are held, they are written as one batch: duplicates dropped, and
//! the keys in order, which a memtable inserts cheaply (its skip list starts every insert
//! from where the previous one ended).
//!
//! Nothing is lost by holding them: without a WAL the memtables they would be written to
//! exist only in memory too, and every path that makes state durable or visible (checkpoint,
//! flush, every timer read) writes them first.

use std::collections::BTreeSet;

/// What holding one registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// It was not held already (a duplicate adds nothing to write).
    pub(crate) new: bool,
    /// [`PendingTimers::LIMIT`] is reached: write them now.
    pub(crate) full: bool,
}

/// Registrations not yet written, in key order per queue.
#[derive(Debug, Default)]
pub(crate) struct PendingTimers {
    /// `(queue index, timer key)`.
    keys: BTreeSet<(usize, Vec<u8>)>,
}

impl PendingTimers {
    /// How many registrations are held at most (about 60 bytes each): past it they are
    /// written.
    pub(crate) const LIMIT: usize = 4096;

    /// Holds a registration.
    pub(crate) fn add(&mut self, queue: usize, key: Vec<u8>) -> Held {
        let new = self.keys.insert((queue, key));
        Held {
            new,
            full: self.keys.len() >= Self::LIMIT,
        }
    }

    /// Forgets a held registration (the timer was deleted).
    pub(crate) fn remove(&mut self, queue: usize, key: Vec<u8>) {
        self.keys.remove(&(queue, key));
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Forgets everything held (the DB it was meant for was replaced).
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
    }

    /// Everything held as `(queue index, key)` puts, in key order per queue.
    pub(crate) fn in_write_order(&self) -> impl Iterator<Item = (usize, &[u8])> {
        self.keys
            .iter()
            .map(|(queue, key)| (*queue, key.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_held_once_and_keys_come_out_in_order() {
        let mut p = PendingTimers::default();
        let held = |new| Held { new, full: false };
        assert_eq!(p.add(0, vec![0, 3]), held(true));
        assert_eq!(p.add(0, vec![0, 1]), held(true));
        assert_eq!(p.add(0, vec![0, 3]), held(false));
        assert_eq!(p.add(1, vec![0, 2]), held(true));
        p.remove(1, vec![0, 2]);
        assert_eq!(p.add(1, vec![0, 0]), held(true));
        assert_eq!(
            p.in_write_order().collect::<Vec<_>>(),
            vec![(0, &[0, 1][..]), (0, &[0, 3][..]), (1, &[0, 0][..])]
        );
        p.clear();
        assert!(p.is_empty());
    }

    #[test]
    fn reaching_the_limit_says_so() {
        let mut p = PendingTimers::default();
        for i in 0..PendingTimers::LIMIT - 1 {
            assert!(!p.add(0, (i as u32).to_be_bytes().to_vec()).full);
        }
        assert!(p.add(0, vec![0xFF; 5]).full);
        p.clear();
        assert!(p.is_empty());
    }
}

//! Timer registrations held back and written together.
//!
//! An operator registers a timer for nearly every element (the interval join: one per
//! element, at the end of its cleanup bucket), and each registration is two index keys
//! (`keys.rs`). Written one by one, that is a RocksDB write per element on top of the
//! element's own, and the per-key-group index keys land at random places of the memtable's
//! skip list. Held here until a read of the timer queues needs them (a pop, `next_timer`, a
//! scan), a flush or checkpoint, or [`PendingTimers::LIMIT`] are held, they are written as
//! one batch: duplicates dropped, and each index's keys in order, which the memtable inserts
//! cheaply (its skip list starts every insert from where the previous one ended).
//!
//! Nothing is lost by holding them: without a WAL the memtables they would be written to
//! exist only in memory too, and every path that makes state durable or visible (checkpoint,
//! flush, every timer read) writes them first.

use std::collections::BTreeMap;

/// Registrations not yet written, in key order per queue.
#[derive(Debug, Default)]
pub(crate) struct PendingTimers {
    /// `(queue index, firing-order key)` -> per-key-group key.
    keys: BTreeMap<(usize, Vec<u8>), Vec<u8>>,
}

impl PendingTimers {
    /// How many registrations are held at most (about 100 bytes each): past it they are
    /// written.
    pub(crate) const LIMIT: usize = 4096;

    /// Holds a registration; true when [`PendingTimers::LIMIT`] is reached.
    pub(crate) fn add(&mut self, queue: usize, time_key: Vec<u8>, group_key: Vec<u8>) -> bool {
        self.keys.insert((queue, time_key), group_key);
        self.keys.len() >= Self::LIMIT
    }

    /// Forgets a held registration (the timer was deleted).
    pub(crate) fn remove(&mut self, queue: usize, time_key: Vec<u8>) {
        self.keys.remove(&(queue, time_key));
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Forgets everything held (the DB it was meant for was replaced).
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
    }

    /// Everything held as `(queue index, key)` puts: every firing-order key in order, then
    /// every per-key-group key in order, so each index is written front to back.
    pub(crate) fn in_write_order(&self) -> Vec<(usize, &[u8])> {
        let mut by_group = Vec::with_capacity(self.keys.len());
        let mut out = Vec::with_capacity(self.keys.len() * 2);
        for ((queue, time_key), group_key) in &self.keys {
            out.push((*queue, time_key.as_slice()));
            by_group.push((*queue, group_key.as_slice()));
        }
        by_group.sort_unstable();
        out.extend(by_group);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_held_once_and_each_index_comes_out_in_order() {
        let mut p = PendingTimers::default();
        assert!(!p.add(0, vec![0, 3], vec![1, 9]));
        assert!(!p.add(0, vec![0, 1], vec![1, 7]));
        assert!(!p.add(0, vec![0, 3], vec![1, 9]));
        assert!(!p.add(1, vec![0, 2], vec![1, 1]));
        p.remove(1, vec![0, 2]);
        assert!(!p.add(1, vec![0, 5], vec![1, 0]));
        assert_eq!(
            p.in_write_order(),
            vec![
                (0, &[0, 1][..]),
                (0, &[0, 3][..]),
                (1, &[0, 5][..]),
                (0, &[1, 7][..]),
                (0, &[1, 9][..]),
                (1, &[1, 0][..]),
            ]
        );
        p.clear();
        assert!(p.is_empty());
    }

    #[test]
    fn reaching_the_limit_says_so() {
        let mut p = PendingTimers::default();
        for i in 0..PendingTimers::LIMIT - 1 {
            assert!(!p.add(0, (i as u32).to_be_bytes().to_vec(), vec![]));
        }
        assert!(p.add(0, vec![0xFF; 5], vec![]));
        p.clear();
        assert!(p.is_empty());
    }
}

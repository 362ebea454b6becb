//! The DB and one forward iterator per column family kept between scans.
//!
//! Creating a RocksDB iterator builds a merging iterator over the memtables and every level
//! and destroying it tears that down again; for the short scans of keyed state (a scope that
//! is usually small or absent) that was a sixth of the operator thread in a profile of the
//! interval join. A kept iterator is refreshed instead, which costs a sequence-number update
//! while the column family's version is unchanged, and re-sought.
//!
//! Only states with the scope prefix extractor keep iterators: their iterator stops at the
//! end of the sought scope by itself (`prefix_same_as_start`). Without the extractor that
//! option does nothing, and an iterator without an upper bound would walk past the scope
//! over the next scopes' tombstones, so those states keep the bounded iterator per scan.
//!
//! A kept iterator pins the version it last read: memtables flushed and files compacted
//! since stay alive (in memory, charged to the write-buffer manager, and on disk) until it is
//! refreshed or dropped. Every iterator is dropped once [`RELEASE_AFTER_WRITES`] keys have
//! been written since the last release (checked at every read and write of the backend), at
//! every full flush (checkpoints, compaction) and before a restore. Iterators release their
//! versions' obsolete files on a background thread, not the operator's.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use ::rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, DB};

use super::prefetcher::{Prefetcher, ScopeRead};
use super::rocks_err;
use crate::{Error, ErrorKind, Result};

/// Keys written (sequence numbers) after which every kept iterator is dropped.
pub(crate) const RELEASE_AFTER_WRITES: u64 = 1 << 16;

/// A forward iterator of one column family, usable across scans.
pub(crate) type ForwardIterator<'db> = DBRawIteratorWithThreadMode<'db, DB>;

/// The iterators kept over a DB, one slot per column family (by state index).
pub(crate) struct IteratorSlots<'db> {
    slots: RefCell<Vec<Option<ForwardIterator<'db>>>>,
    /// The DB's latest sequence number when the slots were last emptied.
    released_at: Cell<u64>,
}

self_cell::self_cell!(
    /// The DB and the iterators borrowing it, in one value. The DB is shared with the
    /// prefetch threads (prefetcher.rs).
    struct DbCell {
        owner: Arc<DB>,
        #[not_covariant]
        dependent: IteratorSlots,
    }
);

impl DbCell {
    fn wrap(db: Arc<DB>) -> Self {
        let released_at = db.latest_sequence_number();
        DbCell::new(db, |_| IteratorSlots {
            slots: RefCell::new(Vec::new()),
            released_at: Cell::new(released_at),
        })
    }
}

/// An open DB, the iterators kept over it and the threads prefetching from it.
pub(crate) struct DbWithIterators {
    /// Started at the first prefetch, stopped before the DB is needed alone or closed.
    prefetcher: RefCell<PrefetchThreads>,
    /// `None` only inside [`DbWithIterators::create_cf`], which needs the DB alone.
    cell: Option<DbCell>,
}

/// The prefetch threads of a DB, if started.
enum PrefetchThreads {
    /// None started yet.
    NotStarted,
    Running(Prefetcher),
    /// Not to be started: configured off, or the threads could not be started.
    Off,
}

impl DbWithIterators {
    /// Wraps an open DB; no iterator is kept yet.
    pub(crate) fn wrap(db: DB) -> Self {
        DbWithIterators {
            prefetcher: RefCell::new(PrefetchThreads::NotStarted),
            cell: Some(DbCell::wrap(Arc::new(db))),
        }
    }

    /// Hands scopes to the prefetch threads, starting `threads` of them (with `async_io`)
    /// at the first call; `threads == 0` ignores every call.
    pub(crate) fn prefetch(
        &self,
        reads: impl IntoIterator<Item = ScopeRead>,
        threads: usize,
        async_io: bool,
    ) {
        let mut prefetcher = self.prefetcher.borrow_mut();
        if matches!(*prefetcher, PrefetchThreads::NotStarted) {
            *prefetcher = if threads == 0 {
                PrefetchThreads::Off
            } else {
                // Threads that cannot be started cost the hints only.
                match Prefetcher::start(self.cell().borrow_owner(), threads, async_io) {
                    Ok(running) => PrefetchThreads::Running(running),
                    Err(_) => PrefetchThreads::Off,
                }
            };
        }
        if let PrefetchThreads::Running(running) = &*prefetcher {
            for read in reads {
                running.send(read);
            }
        }
    }

    /// Waits until the prefetch threads have read every scope handed to them (for tests).
    #[cfg(test)]
    pub(crate) fn wait_for_prefetches(&self) {
        if let PrefetchThreads::Running(running) = &*self.prefetcher.borrow() {
            running.wait_idle();
        }
    }

    /// Stops the prefetch threads, which hold the DB; the next prefetch starts them again.
    fn stop_prefetching(&self) {
        let mut prefetcher = self.prefetcher.borrow_mut();
        if let PrefetchThreads::Running(running) =
            std::mem::replace(&mut *prefetcher, PrefetchThreads::NotStarted)
        {
            running.stop();
        }
    }

    fn cell(&self) -> &DbCell {
        // Taken only for the span of `create_cf`, which puts it back before returning unless
        // RocksDB panicked inside it.
        self.cell
            .as_ref()
            .expect("the DB was lost by a panic while creating a column family")
    }

    /// The DB.
    pub(crate) fn db(&self) -> &DB {
        self.cell().borrow_owner()
    }

    /// Creates a column family. Creating one needs the DB alone, so the prefetch threads
    /// are stopped and the kept iterators, which borrow it, dropped first.
    ///
    /// # Errors
    /// RocksDB's, naming the column family.
    pub(crate) fn create_cf(&mut self, name: &str, opts: &::rocksdb::Options) -> Result<()> {
        self.stop_prefetching();
        let Some(cell) = self.cell.take() else {
            unreachable!("the DB was lost by a panic while creating a column family");
        };
        let mut db = cell.into_owner();
        let created = match Arc::get_mut(&mut db) {
            Some(alone) => alone
                .create_cf(name, opts)
                .map_err(|e| rocks_err(format!("creating column family '{name}'"), e)),
            None => Err(Error::new(
                ErrorKind::Internal,
                format!("creating column family '{name}': the DB is still shared"),
            )),
        };
        self.cell = Some(DbCell::wrap(db));
        created
    }

    /// Drops every kept iterator if [`RELEASE_AFTER_WRITES`] keys were written since the
    /// last release: a cheap check (one atomic read in RocksDB) for every read and write.
    pub(crate) fn release_iterators_if_stale(&self) {
        self.cell().with_dependent(|db, kept| {
            let latest = db.latest_sequence_number();
            if latest.saturating_sub(kept.released_at.get()) > RELEASE_AFTER_WRITES {
                kept.slots.borrow_mut().clear();
                kept.released_at.set(latest);
            }
        });
    }

    /// Drops every kept iterator, and with them the versions they pin.
    pub(crate) fn release_iterators(&self) {
        self.cell().with_dependent(|db, kept| {
            kept.slots.borrow_mut().clear();
            kept.released_at.set(db.latest_sequence_number());
        });
    }

    /// Runs `scan` with a forward iterator of column family `cf_name` (slot `slot`) that
    /// sees every write so far and is positioned at the first key at or after `seek`.
    /// The iterator filters by prefix (`prefix_same_as_start`): it ends at the last key of
    /// `seek`'s prefix, and callers check any tighter upper bound themselves. With
    /// `async_io` a new iterator reads the blocks of a seek's levels in parallel.
    ///
    /// The iterator is taken out of its slot while `scan` runs, so a scan that starts
    /// another scan of the same column family (from a visitor) gets an iterator of its own.
    pub(crate) fn with_forward_iterator<R>(
        &self,
        slot: usize,
        cf_name: &str,
        seek: &[u8],
        async_io: bool,
        scan: impl FnOnce(&mut ForwardIterator<'_>) -> Result<R>,
    ) -> Result<R> {
        self.release_iterators_if_stale();
        self.cell().with_dependent(|db, kept| {
            let mut taken = kept.slots.borrow_mut().get_mut(slot).and_then(Option::take);
            // A failed refresh leaves the iterator unusable: make a new one.
            if let Some(iter) = taken.as_mut() {
                if iter.refresh().is_err() {
                    taken = None;
                }
            }
            let mut iter = match taken {
                Some(iter) => iter,
                None => {
                    let cf = db.cf_handle(cf_name).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Internal,
                            format!("column family '{cf_name}' is not open"),
                        )
                    })?;
                    let mut ro = ReadOptions::default();
                    // The seek key is in one scope: the prefix filters may skip files, and
                    // the iterator ends at the scope's last key.
                    ro.set_prefix_same_as_start(true);
                    // Dropping a version deletes its obsolete files: not on this thread.
                    ro.set_background_purge_on_iterator_cleanup(true);
                    ro.set_async_io(async_io);
                    db.raw_iterator_cf_opt(cf, ro)
                }
            };
            iter.seek(seek);
            let result = scan(&mut iter);
            // An iterator after an error (its own, or the visitor's) is not kept: the next
            // scan starts afresh.
            if result.is_ok() && iter.status().is_ok() {
                let mut slots = kept.slots.borrow_mut();
                if slots.len() <= slot {
                    slots.resize_with(slot + 1, || None);
                }
                slots[slot] = Some(iter);
            }
            result
        })
    }

    /// How many iterators are kept (for tests).
    #[cfg(test)]
    pub(crate) fn kept_iterators(&self) -> usize {
        self.cell()
            .with_dependent(|_, kept| kept.slots.borrow().iter().flatten().count())
    }
}

impl Drop for DbWithIterators {
    /// The prefetch threads hold the DB: they stop before it closes, so it closes here.
    fn drop(&mut self) {
        self.stop_prefetching();
    }
}

/// The error of a kept iterator's scan, naming the column family.
pub(crate) fn scan_error(cf_name: &str, e: ::rocksdb::Error) -> Error {
    rocks_err(format!("scan of column family '{cf_name}'"), e)
}

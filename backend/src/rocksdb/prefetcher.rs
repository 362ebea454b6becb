//! Scopes read ahead on background threads: the RocksDB backend's [`StateRead::prefetch`].
//!
//! A keyed operator that knows which scopes its next elements will read (the interval join's
//! clicks read their user's displays) names them ahead. A prefetch thread then reads each
//! scope once through the block cache, so the operator's own scan finds the blocks there
//! instead of waiting for the disk: with direct I/O a scan of state spread over several
//! levels waits for a few random reads, and the operator's thread is otherwise idle while it
//! does. The blocks count against the block cache like any other, so the memory budget holds.
//!
//! Hints only: a full queue drops them, and a prefetch's errors are ignored (the operator's
//! scan reports them). The threads share the DB through an `Arc`; whatever needs the DB alone
//! (creating a column family, closing it) stops them first.
//!
//! [`StateRead::prefetch`]: crate::StateRead::prefetch

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ::rocksdb::{ReadOptions, DB};

/// Scopes waiting for a prefetch thread; more are dropped. The harness names scopes 1,024
/// elements ahead (about 30 of ad-click's clicks), so a longer queue would only hold hints
/// that come too late.
const QUEUE: usize = 256;

/// Entries one prefetch visits at most: enough for the scopes of keyed state, and a bound on
/// the work a hint can cause on a scope that grew huge.
const MAX_ENTRIES: usize = 4096;

/// One scope to read: the key range `[lower, upper)` of a column family.
pub(crate) struct ScopeRead {
    /// The column family's name.
    pub cf: Arc<str>,
    /// The scope's first key.
    pub lower: Vec<u8>,
    /// The key after the scope's last; `None`: the read ends where the prefix extractor's
    /// prefix does (`prefix_same_as_start`), as the backend's kept iterators do.
    pub upper: Option<Vec<u8>>,
}

/// The running prefetch threads of one DB.
pub(crate) struct Prefetcher {
    requests: SyncSender<ScopeRead>,
    threads: Vec<JoinHandle<()>>,
    /// Scopes sent and not yet read.
    pending: Arc<AtomicUsize>,
}

impl Prefetcher {
    /// Starts `threads` threads reading from `db`; `async_io` as the backend's scans.
    ///
    /// # Errors
    /// The operating system's, if a thread cannot be started (any started are stopped).
    pub(crate) fn start(db: &Arc<DB>, threads: usize, async_io: bool) -> std::io::Result<Self> {
        let (requests, queue) = sync_channel::<ScopeRead>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let pending = Arc::new(AtomicUsize::new(0));
        let mut started = Prefetcher {
            requests,
            threads: Vec::with_capacity(threads),
            pending,
        };
        for i in 0..threads {
            let db = Arc::clone(db);
            let queue = Arc::clone(&queue);
            let pending = Arc::clone(&started.pending);
            let spawned = std::thread::Builder::new()
                .name(format!("statekit-prefetch-{i}"))
                .spawn(move || serve(&db, &queue, &pending, async_io));
            match spawned {
                Ok(thread) => started.threads.push(thread),
                Err(e) => {
                    // Joined, so that none holds the DB any longer.
                    started.stop();
                    return Err(e);
                }
            }
        }
        Ok(started)
    }

    /// Queues a scope; dropped if the queue is full.
    pub(crate) fn send(&self, read: ScopeRead) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        match self.requests.try_send(read) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until every queued scope has been read (for tests).
    #[cfg(test)]
    pub(crate) fn wait_idle(&self) {
        while self.pending.load(Ordering::Acquire) > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Stops the threads once they finish the scope each is reading; queued ones are dropped.
    pub(crate) fn stop(self) {
        let Prefetcher {
            requests, threads, ..
        } = self;
        drop(requests);
        for thread in threads {
            // A thread that panicked has already stopped; its panic is RocksDB's and was
            // printed.
            let _ = thread.join();
        }
    }
}

/// A prefetch thread: reads scopes until the sender is dropped.
fn serve(db: &DB, queue: &Mutex<Receiver<ScopeRead>>, pending: &AtomicUsize, async_io: bool) {
    loop {
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(read) = next else { return };
        read_scope(db, &read, async_io);
        pending.fetch_sub(1, Ordering::Release);
    }
}

/// Reads one scope's entries through the block cache, which keeps the blocks.
///
/// With `async_io` the seek reads the first block of every level at once, but RocksDB does
/// not always keep a block read that way in the cache (a test here saw one of four left
/// out), so a second, synchronous pass reads what the first did not keep: on hits only, it
/// costs a few microseconds.
fn read_scope(db: &DB, read: &ScopeRead, async_io: bool) {
    let Some(cf) = db.cf_handle(&read.cf) else {
        return;
    };
    let passes: &[bool] = if async_io { &[true, false] } else { &[false] };
    for &async_pass in passes {
        let mut ro = ReadOptions::default();
        ro.set_async_io(async_pass);
        // The seek key is in the scope: prefix filters may skip files (states with the
        // scope prefix extractor); an upper bound ends the read at the scope's end for the
        // others.
        ro.set_prefix_same_as_start(true);
        if let Some(upper) = &read.upper {
            ro.set_iterate_upper_bound(upper.clone());
        }
        let mut iter = db.raw_iterator_cf_opt(cf, ro);
        iter.seek(&read.lower);
        let mut visited = 0;
        while iter.valid() && visited < MAX_ENTRIES {
            // The value is read too: with blob files it lives apart from the key.
            let _ = iter.value();
            iter.next();
            visited += 1;
        }
    }
}

//! The process-wide memory budget (Flink's managed-memory model).
//!
//! One LRU block cache and one `WriteBufferManager` charged to it are shared by every column
//! family of every [`super::RocksDbBackend`] built from the same [`RocksDbResources`]: data,
//! index and filter blocks and memtables all count against one capacity, so the budget
//! holds however many states and instances a process runs.
//!
//! The split follows Flink's `RocksDBMemoryControllerUtils`: with a budget `B` and a write
//! buffer ratio `r`, the cache gets `(3 - r) * B / 3` and the write buffer manager
//! `2 * r * B / 3`. The write buffer manager flushes once memtables reach 7/8 of its size
//! and lets a mutable memtable overshoot by up to 1.5x, which is why it gets 2/3 of its
//! share; what it reserves is charged to the same cache, so cache + memtables stay near `B`.
//!
//! Memory outside the budget (the fixed overhead): each RocksDB instance's background threads
//! and their stacks, table-reader objects, the LRU cache's metadata, iterator and merge
//! buffers, and allocator slack. It does not grow with the state size. Measured with
//! `backend/examples/rocksdb_memory.rs` (jemalloc, two instances with four states each, 2 GiB
//! of state against a 256 MiB budget): peak RSS 300 MiB = 1.1 x budget + 19 MiB, of which
//! 12 MiB is the process before any RocksDB instance opens. Budget for 1.1 x B + 20 MiB, plus
//! a few MiB per additional instance. The C API does not expose the LRU cache's high-priority
//! pool ratio, so it stays at RocksDB's default (0.5 of the cache): index and filter blocks,
//! cached with high priority, are evicted only after data blocks.
//!
//! # A strict capacity or an admitted overshoot
//! The cache does not use `strict_capacity_limit`. With it, an insert that finds the cache
//! full of entries in use fails, and so does the read that needed the block: a job would
//! fail on a cache miss instead of running a little over its budget. Without it, what cannot
//! be evicted may overshoot the capacity, so the design keeps that small and bounded: the
//! memtables the write buffer manager reserves (bounded by its size, and charged to the
//! cache), the blocks open iterators hold (one scan at a time per operator), and the pinned
//! metadata. Pinned metadata is what would grow with the state, so indexes and filters are
//! partitioned and only their top level (a few hundred bytes per file) and L0's are pinned;
//! the partitions are evicted like data blocks. What the allowance of 10% covers beyond the
//! cache: compaction and flush buffers, the table readers, and the allocator's slack.
//!
//! # The allocator
//! With the `rocksdb` feature, jemalloc is the process's `malloc` (rust-rocksdb's `jemalloc`
//! feature links it unprefixed). By default it keeps freed pages for 10 s before giving them
//! back, and compactions and cache evictions free a lot, so a budgeted process should return
//! them sooner, and from fewer arenas (the prefetch threads would otherwise get their own):
//! `MALLOC_CONF=background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0,narenas:1` (what
//! the `statekit` tool gives the processes of its runs; the harness's `isolation.rs` has the
//! measurements) keeps a 3.7M-event ad-click run at 256 MiB at 283-289 MiB, where 10 s peaked
//! at 306-308 MiB and 1 s at up to 316 MiB with the page cache.

use std::sync::Arc;

use ::rocksdb::{Cache, WriteBufferManager};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How much memory RocksDB may use in this process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemoryBudget {
    /// Total bytes for block cache plus memtables.
    pub total_bytes: u64,
    /// Share of the budget memtables may take (Flink's `write-buffer-ratio`, default 0.5).
    pub write_buffer_ratio: f64,
    /// Stall writes when memtables exceed their share instead of overshooting it.
    pub stall_writes_at_limit: bool,
}

impl MemoryBudget {
    /// A budget of `total_bytes` with Flink's default ratio.
    pub fn new(total_bytes: u64) -> Self {
        MemoryBudget {
            total_bytes,
            write_buffer_ratio: crate::rocksdb_config::DEFAULT_WRITE_BUFFER_RATIO,
            stall_writes_at_limit: false,
        }
    }

    /// Block cache capacity: `(3 - r) * B / 3`.
    pub fn cache_capacity(&self) -> u64 {
        ((3.0 - self.write_buffer_ratio) * self.total_bytes as f64 / 3.0) as u64
    }

    /// Write buffer manager size: `2 * r * B / 3`.
    pub fn write_buffer_manager_size(&self) -> u64 {
        (2.0 * self.write_buffer_ratio * self.total_bytes as f64 / 3.0) as u64
    }

    /// Memtable bytes the write buffer manager lets grow before it flushes: 7/8 of its size.
    pub fn mutable_memtable_limit(&self) -> u64 {
        self.write_buffer_manager_size() / 8 * 7
    }

    /// Checks the budget against what it must hold whatever the state's size: each column
    /// family that is written holds at least one memtable arena block, and the write buffer
    /// manager can only flush a memtable, not shrink it below that. Flink logs a warning for
    /// the same condition; this is an error, because the budget would be broken silently.
    ///
    /// # Errors
    /// `InvalidArgument` naming the figures and what to change.
    pub fn check_fixed_needs(&self, column_families: usize, arena_block_size: u64) -> Result<()> {
        let needs = column_families as u64 * arena_block_size;
        if needs > self.mutable_memtable_limit() {
            return Err(Error::invalid(format!(
                "memory budget of {} cannot hold the fixed needs of {column_families} states: \
                 one memtable arena block of {} each is {}, above the {} its write-buffer share \
                 (write_buffer_ratio {}) lets memtables hold; raise the budget or the ratio, or \
                 lower write_buffer_size (arena blocks are 1/8 of it, at most 1 MiB)",
                bytesize::ByteSize(self.total_bytes).display().iec(),
                bytesize::ByteSize(arena_block_size).display().iec(),
                bytesize::ByteSize(needs).display().iec(),
                bytesize::ByteSize(self.mutable_memtable_limit())
                    .display()
                    .iec(),
                self.write_buffer_ratio
            )));
        }
        Ok(())
    }

    /// Checks the values.
    ///
    /// # Errors
    /// `InvalidArgument` naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if self.total_bytes < 1 << 20 {
            return Err(Error::invalid(format!(
                "memory budget total_bytes = {} is below the 1 MiB minimum",
                self.total_bytes
            )));
        }
        if !(self.write_buffer_ratio > 0.0 && self.write_buffer_ratio < 1.0) {
            return Err(Error::invalid(format!(
                "memory budget write_buffer_ratio = {} must be in (0, 1)",
                self.write_buffer_ratio
            )));
        }
        Ok(())
    }
}

/// The block cache and write buffer manager shared by backends: create one per process (or
/// per memory pool) and hand clones of the `Arc` to every backend.
pub struct RocksDbResources {
    budget: MemoryBudget,
    pub(crate) cache: Cache,
    pub(crate) write_buffers: WriteBufferManager,
}

impl std::fmt::Debug for RocksDbResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbResources")
            .field("budget", &self.budget)
            .field("cache_usage", &self.cache.get_usage())
            .field("memtable_usage", &self.write_buffers.get_usage())
            .finish()
    }
}

impl RocksDbResources {
    /// Creates the shared cache and write buffer manager for `budget`.
    ///
    /// # Errors
    /// `InvalidArgument` for an invalid budget.
    pub fn new(budget: MemoryBudget) -> Result<Arc<Self>> {
        budget.validate()?;
        let cache = Cache::new_lru_cache(budget.cache_capacity() as usize);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            budget.write_buffer_manager_size() as usize,
            budget.stall_writes_at_limit,
            cache.clone(),
        );
        Ok(Arc::new(RocksDbResources {
            budget,
            cache,
            write_buffers,
        }))
    }

    /// The budget.
    pub fn budget(&self) -> MemoryBudget {
        self.budget
    }

    /// Bytes the block cache holds, including memtable reservations charged to it.
    pub fn cache_usage(&self) -> u64 {
        self.cache.get_usage() as u64
    }

    /// Bytes of pinned cache entries.
    pub fn cache_pinned_usage(&self) -> u64 {
        self.cache.get_pinned_usage() as u64
    }

    /// Bytes of memtables across all instances.
    pub fn memtable_usage(&self) -> u64 {
        self.write_buffers.get_usage() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_split() {
        let b = MemoryBudget::new(300 << 20);
        assert_eq!(b.cache_capacity(), 250 << 20);
        assert_eq!(b.write_buffer_manager_size(), 100 << 20);
        assert!(MemoryBudget::new(10).validate().is_err());
        let r = RocksDbResources::new(b).unwrap();
        assert_eq!(r.budget(), b);
    }

    #[test]
    fn fixed_needs_name_the_figures() {
        // 3 MiB: the write buffer manager gets 1 MiB, memtables may hold 896 KiB.
        let b = MemoryBudget::new(3 << 20);
        assert!(b.check_fixed_needs(3, 256 << 10).is_ok());
        let e = b.check_fixed_needs(4, 1 << 20).unwrap_err().to_string();
        assert!(
            e.contains("4 states") && e.contains("1.0 MiB each is 4.0 MiB"),
            "{e}"
        );
        assert!(MemoryBudget::new(256 << 20)
            .check_fixed_needs(64, 1 << 20)
            .is_ok());
    }
}

//! TTL on RocksDB: the append merge of values with an expiry, and how expired entries are
//! physically removed without ever removing one that is still live.
//!
//! A merge refreshes the whole value's expiry (the trait's TTL semantics), so a chain of
//! appends keeps a value alive long after its base would have expired on its own: TTL 100,
//! `a` at 0, appends at 99, 198 and 297 read back `abcd` at 350. A compaction that sees the
//! base without those newer operands (they sit in L0 or the memtable while an L1→L2 or a
//! periodic compaction rewrites the base's file) cannot know that, so:
//! - states that take no merges (value, reducing, aggregating) are filtered in every
//!   compaction: their newest value is the whole truth;
//! - states that take merges (list, map) are filtered only in a full manual compaction started
//!   by [`RocksDbBackend::compact`](super::RocksDbBackend::compact): it flushes first, so every
//!   operand written before its start is in the compaction's input and merged with its base
//!   before the filter sees the result; an entry that expired before that start cannot be
//!   extended by any later operand;
//! - between such compactions an incremental sweep reads a few merged entries of those states
//!   per thousand writes and deletes the expired ones (as the memory and remote backends do).

use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ::rocksdb::compaction_filter::{CompactionFilter, Decision};
use ::rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};
use ::rocksdb::MergeOperands;

use super::keys::{key_group_bounds, split_expiry, with_expiry};
use crate::backend::{StateId, Visit};
use crate::clock::SharedClock;
use crate::error::Result;

/// How many writes pass between two sweep steps.
pub(super) const SWEEP_EVERY_WRITES: u64 = 1024;

/// How many entries one sweep step reads at most.
pub(super) const SWEEP_BATCH: usize = 512;

/// The clock TTL is judged by, and how far the last full compaction reaches back.
#[derive(Clone)]
pub(super) struct TtlClock {
    clock: SharedClock,
    /// Processing time just before the last [`super::RocksDbBackend::compact`] flushed: every
    /// write before it was in the files that compaction read.
    flushed_before: Arc<AtomicU64>,
}

impl TtlClock {
    pub(super) fn new(clock: SharedClock) -> Self {
        TtlClock {
            clock,
            flushed_before: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Processing time now, in ms.
    pub(super) fn now_millis(&self) -> u64 {
        self.clock.now_millis()
    }

    /// Records that a full flush starts now; call before flushing for a full compaction.
    pub(super) fn full_flush_starts(&self) {
        self.flushed_before
            .fetch_max(self.clock.now_millis(), Ordering::SeqCst);
    }
}

/// Appends operands to a TTL value: an operand written when the value had expired starts
/// it afresh. Each operand's write time is its expiry minus the TTL.
pub(super) fn ttl_merge(
    ttl: u64,
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut acc: Option<(u64, Vec<u8>)> = match existing {
        Some(v) => {
            let (exp, payload) = split_expiry(v).ok()?;
            Some((exp, payload.to_vec()))
        }
        None => None,
    };
    for op in operands {
        // A malformed operand fails the merge, which RocksDB reports as corruption.
        let (exp, payload) = split_expiry(op).ok()?;
        let written_at = exp.saturating_sub(ttl);
        match &mut acc {
            Some((old_exp, value)) if *old_exp > written_at => {
                value.extend_from_slice(payload);
                *old_exp = exp;
            }
            _ => acc = Some((exp, payload.to_vec())),
        }
    }
    acc.map(|(exp, value)| with_expiry(exp, &value))
}

/// Creates the TTL filter of each compaction of one state's column family.
pub(super) struct TtlFilterFactory {
    clock: TtlClock,
    takes_merges: bool,
}

impl TtlFilterFactory {
    pub(super) fn new(clock: TtlClock, takes_merges: bool) -> Self {
        TtlFilterFactory {
            clock,
            takes_merges,
        }
    }
}

impl CompactionFilterFactory for TtlFilterFactory {
    type Filter = TtlFilter;

    fn create(&mut self, context: CompactionFilterContext) -> TtlFilter {
        let now = self.clock.now_millis();
        let removes_expired_before = if !self.takes_merges {
            Some(now)
        } else if context.is_full_compaction && context.is_manual_compaction {
            Some(self.clock.flushed_before.load(Ordering::SeqCst).min(now))
        } else {
            None
        };
        TtlFilter {
            removes_expired_before,
        }
    }

    fn name(&self) -> &CStr {
        c"statekit.ttl"
    }
}

/// Removes entries that expired before a time at which removing them is safe (see the module
/// documentation); keeps everything in compactions where nothing is.
pub(super) struct TtlFilter {
    removes_expired_before: Option<u64>,
}

impl CompactionFilter for TtlFilter {
    fn filter(&mut self, _level: u32, _key: &[u8], value: &[u8]) -> Decision {
        match (self.removes_expired_before, split_expiry(value)) {
            (Some(before), Ok((exp, _))) if exp <= before => Decision::Remove,
            // A malformed value is kept for reads to report, never silently dropped.
            _ => Decision::Keep,
        }
    }

    fn name(&self) -> &CStr {
        c"statekit.ttl"
    }
}

/// Where the incremental sweep of expired entries continues.
#[derive(Debug, Default)]
pub(super) struct SweepCursor {
    /// Writes since the instance opened.
    pub(super) writes: u64,
    /// Index into the swept states, over all of them in turn.
    pub(super) step: usize,
    /// The last raw key the current state's sweep read, if it stopped part-way.
    pub(super) after: Option<Vec<u8>>,
}

impl super::RocksDbBackend {
    /// Counts a write and, every [`SWEEP_EVERY_WRITES`], takes one sweep step.
    pub(super) fn after_write(&mut self) {
        self.sweep.writes += 1;
        if self.sweep.writes % SWEEP_EVERY_WRITES == 0 {
            // Hygiene only: a failed step leaves expired entries for the next one and must not
            // fail the write that triggered it.
            let _ = self.sweep_step();
        }
    }

    /// Deletes the expired entries among the next [`SWEEP_BATCH`] entries of one TTL state
    /// that takes merges, moving a cursor over all of them.
    fn sweep_step(&mut self) -> Result<()> {
        let swept: Vec<StateId> = (0..self.states.len())
            .filter(|&i| self.states[i].ttl.is_some() && self.states[i].kind.takes_merges())
            .map(|i| StateId::from_index(i as u32))
            .collect();
        if swept.is_empty() {
            return Ok(());
        }
        let state = swept[self.sweep.step % swept.len()];
        let (lower, upper) = key_group_bounds(self.config.key_groups);
        let lower = self.sweep.after.take().map_or(lower, |mut after| {
            // The smallest key after the last one read.
            after.push(0);
            after
        });
        let cf = self.cf(state)?;
        let now = self.ttl_clock.now_millis();
        let mut seen = 0;
        let mut last = None;
        let mut batch = ::rocksdb::WriteBatch::default();
        self.for_each_raw(cf, lower, upper, &mut |k, v| {
            seen += 1;
            if split_expiry(v)?.0 <= now {
                batch.delete_cf(cf, k);
            }
            last = Some(k.to_vec());
            Ok(if seen >= SWEEP_BATCH {
                Visit::Stop
            } else {
                Visit::Continue
            })
        })?;
        self.write_batch(batch)?;
        if seen >= SWEEP_BATCH {
            self.sweep.after = last;
        } else {
            self.sweep.step += 1;
        }
        Ok(())
    }
}

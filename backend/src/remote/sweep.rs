//! The incremental TTL sweep: every [`SWEEP_EVERY_WRITES`] writes, one step deletes the
//! expired entries among a bounded batch of one key group of one TTL state.

use std::ops::Bound;

use bytes::Bytes;
use slatedb::IterationOrder;

use super::keys::{decode_record, entries_prefix, prefix_range};
use super::writes::memtable_heap;
use super::RemoteBackend;
use crate::backend::{StateKind, Visit};
use crate::error::Result;
use crate::keygroup::KeyGroup;

/// How many writes pass between two incremental TTL sweep steps.
pub const SWEEP_EVERY_WRITES: u64 = 1024;

/// How many entries one TTL sweep step reads at most.
const SWEEP_BATCH: usize = 512;

#[derive(Debug, Default)]
pub(super) struct SweepCursor {
    step: usize,
    after: Option<Vec<u8>>,
}

impl RemoteBackend {
    pub(super) fn after_write(&mut self) {
        self.writes += 1;
        if self.writes % SWEEP_EVERY_WRITES == 0 {
            // Hygiene only: a failed sweep step leaves expired entries for the next one and
            // must not fail the write that triggered it.
            let _ = self.sweep_step();
        }
    }

    /// Deletes the expired entries among the next [`SWEEP_BATCH`] entries of one key group of
    /// one TTL state, moving a cursor over all of them.
    fn sweep_step(&mut self) -> Result<()> {
        let ttl_states: Vec<usize> = (0..self.states.len())
            .filter(|&i| self.states[i].ttl.is_some() && self.states[i].kind != StateKind::Timers)
            .collect();
        if ttl_states.is_empty() {
            return Ok(());
        }
        let groups = self.config.key_groups.len();
        let step = self.sweep.step % (ttl_states.len() * groups);
        let state = ttl_states[step / groups];
        let kg = self.config.key_groups.start + (step % groups) as KeyGroup;
        let prefix = entries_prefix(kg, self.tags[state]);
        let (lower, upper) = prefix_range(&prefix);
        let lower = match self.sweep.after.take() {
            Some(after) => Bound::Excluded(Bytes::from(after)),
            None => lower,
        };
        let now = self.config.now_millis();
        let mut seen = 0;
        let mut last = None;
        let (mut deleted, mut deleted_bytes) = (0, 0);
        let mut batch = slatedb::WriteBatch::new();
        self.scan_raw(
            None,
            (lower, upper),
            IterationOrder::Ascending,
            &mut |k, v| {
                seen += 1;
                if !decode_record(v)?.live(now) {
                    batch.delete(k);
                    deleted_bytes += k.len();
                    deleted += 1;
                }
                last = Some(k.to_vec());
                Ok(if seen >= SWEEP_BATCH {
                    Visit::Stop
                } else {
                    Visit::Continue
                })
            },
        )?;
        self.commit(batch)?;
        self.unflushed_heap += memtable_heap(deleted_bytes, deleted);
        if seen >= SWEEP_BATCH {
            self.sweep.after = last;
        } else {
            self.sweep.step = step + 1;
        }
        Ok(())
    }
}

//! The write path: staging puts, merges and deletes (range deletes as scans) into one atomic
//! SlateDB batch, and bounding the heap unflushed writes hold.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use slatedb::{Db, IterationOrder};

use super::keys::{encode_append, encode_value, entry_key, suffix_range, user_range};
use super::{runtime, slate_error, RemoteBackend};
use crate::backend::{
    check_merge, check_scope, Scope, StateWrite, UserKeyRange, WriteBatch, WriteOp,
};
use crate::error::{Error, ErrorKind, Result};

/// A raw key range and the scope prefix every key in it starts with.
type ScopedRange = (Vec<u8>, (Bound<Bytes>, Bound<Bytes>));

/// From how many range deletes in one write their scans run on several threads.
const PARALLEL_SCANS_FROM: usize = 16;

/// The keys that exist in `ranges`, one prefix scan each.
async fn keys_in(
    db: &Db,
    ranges: &[ScopedRange],
) -> std::result::Result<Vec<Bytes>, slatedb::Error> {
    let options = RemoteBackend::scan_options(IterationOrder::Ascending);
    let mut keys = Vec::new();
    for (prefix, range) in ranges {
        let mut it = db
            .scan_prefix_with_options(prefix, suffix_range(prefix, range), &options)
            .await?;
        while let Some(kv) = it.next().await? {
            keys.push(kv.key);
        }
    }
    Ok(keys)
}

impl RemoteBackend {
    pub(super) fn commit(&self, batch: slatedb::WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let what = self.what();
        runtime::block_on(self.db.write(batch))?
            .map(|_| ())
            .map_err(|e| slate_error(format!("write to {what}"), e))
    }

    /// The keys that exist now under the range deletes among `ops`.
    ///
    /// Each range is one scan bounded by its scope, so tables whose Bloom filter rules the
    /// scope out are skipped. Many ranges (the cleanup of a batch of fired timers) are split
    /// between the calling thread and the background runtime's workers: the scans are CPU
    /// work on cached blocks, the calling thread is the bottleneck, and the other cores
    /// mostly idle. (One iterator seeking from range to range measured slower: a seek
    /// positions every memtable and table, where a scope's Bloom filters skip most.)
    fn keys_under_range_deletes(&self, ops: &[WriteOp]) -> Result<BTreeSet<Vec<u8>>> {
        let mut ranges = Vec::new();
        for op in ops {
            if let WriteOp::DeleteRange { lower, upper, .. } = op {
                let prefix = self.kv_prefix(&op.scope().as_scope())?;
                let range = UserKeyRange::from_half_open(lower.as_deref(), upper.as_deref());
                if let Some(bounds) = user_range(&prefix, &range) {
                    ranges.push((prefix, bounds));
                }
            }
        }
        // Most writes have no range delete: no runtime entry, no allocation.
        if ranges.is_empty() {
            return Ok(BTreeSet::new());
        }
        let what = self.what();
        let lanes = runtime::cores();
        let mut spawned = Vec::new();
        if ranges.len() >= PARALLEL_SCANS_FROM && lanes > 1 {
            if let Ok(handle) = runtime::handle() {
                for lane in 1..lanes {
                    let share: Vec<ScopedRange> =
                        ranges.iter().skip(lane).step_by(lanes).cloned().collect();
                    let db = Arc::clone(&self.db);
                    spawned.push(handle.spawn(async move { keys_in(&db, &share).await }));
                }
                ranges = ranges.into_iter().step_by(lanes).collect();
            }
        }
        let scan_error = |e| slate_error(format!("scan of {what} for a range delete"), e);
        let mut keys: BTreeSet<Vec<u8>> = runtime::block_on(keys_in(&self.db, &ranges))?
            .map_err(scan_error)?
            .into_iter()
            .map(|k| k.to_vec())
            .collect();
        for task in spawned {
            let found = runtime::block_on(task)?
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("a range delete's scan of {what} failed: {e}"),
                    )
                })?
                .map_err(scan_error)?;
            keys.extend(found.into_iter().map(|k| k.to_vec()));
        }
        Ok(keys)
    }

    /// Adds the operation to a SlateDB batch; `touched` collects the keys written earlier in
    /// the same batch, so a range delete also removes them.
    fn stage(
        &mut self,
        batch: &mut slatedb::WriteBatch,
        touched: &mut BTreeSet<Vec<u8>>,
        existing: &BTreeSet<Vec<u8>>,
        op: &WriteOp,
    ) -> Result<()> {
        let scope = op.scope().as_scope();
        let prefix = self.kv_prefix(&scope)?;
        match op {
            WriteOp::Put {
                user_key, value, ..
            } => {
                let key = entry_key(&prefix, user_key);
                self.unflushed_heap += memtable_heap(key.len() + value.len(), 1);
                batch.put(&key, encode_value(self.expiry(scope.state), value));
                self.user_bytes_written += (user_key.len() + value.len()) as u64;
                touched.insert(key);
            }
            WriteOp::Merge {
                user_key, operand, ..
            } => {
                let key = entry_key(&prefix, user_key);
                self.unflushed_heap += memtable_heap(key.len() + operand.len(), 1);
                batch.merge(
                    &key,
                    encode_append(self.config.now_millis(), self.expiry(scope.state), operand),
                );
                self.user_bytes_written += (user_key.len() + operand.len()) as u64;
                touched.insert(key);
            }
            WriteOp::Delete { user_key, .. } => {
                let key = entry_key(&prefix, user_key);
                self.unflushed_heap += memtable_heap(key.len(), 1);
                batch.delete(&key);
                touched.insert(key);
            }
            WriteOp::DeleteRange { lower, upper, .. } => {
                let range = UserKeyRange::from_half_open(lower.as_deref(), upper.as_deref());
                let Some(bounds) = user_range(&prefix, &range) else {
                    return Ok(());
                };
                let bounds = (as_slice_bound(&bounds.0), as_slice_bound(&bounds.1));
                let mut doomed: Vec<Vec<u8>> = touched.range::<[u8], _>(bounds).cloned().collect();
                doomed.extend(existing.range::<[u8], _>(bounds).cloned());
                for key in doomed {
                    self.unflushed_heap += memtable_heap(key.len(), 1);
                    batch.delete(&key);
                    touched.insert(key);
                }
            }
        }
        Ok(())
    }

    fn validate_op(&self, op: &WriteOp) -> Result<()> {
        check_scope(
            &op.scope().as_scope(),
            self.config.key_groups,
            &self.states,
            false,
        )?;
        match op {
            WriteOp::Put {
                user_key, value, ..
            } => {
                Self::check_size("key", user_key.len() + op.scope().key.len())?;
                Self::check_size("value", value.len())
            }
            WriteOp::Merge {
                user_key, operand, ..
            } => {
                check_merge(&op.scope().as_scope(), &self.states)?;
                Self::check_size("key", user_key.len() + op.scope().key.len())?;
                Self::check_size("merge operand", operand.len())
            }
            WriteOp::Delete { .. } | WriteOp::DeleteRange { .. } => Ok(()),
        }
    }

    pub(super) fn apply_ops(&mut self, ops: Vec<WriteOp>) -> Result<()> {
        for op in &ops {
            self.validate_op(op)?;
        }
        // Read before anything is staged: a range delete removes what exists now plus what
        // the batch itself wrote before it (`touched`).
        let existing = self.keys_under_range_deletes(&ops)?;
        let mut batch = slatedb::WriteBatch::new();
        let mut touched = BTreeSet::new();
        for op in &ops {
            self.stage(&mut batch, &mut touched, &existing, op)?;
        }
        self.commit(batch)?;
        for _ in &ops {
            self.after_write();
        }
        self.bound_unflushed()
    }

    /// Flushes the memtables when the writes since the last such flush hold more heap than
    /// `max_unflushed` allows: SlateDB's own bound counts encoded bytes, which small entries
    /// overrun many times over (see [`MEMTABLE_ENTRY_OVERHEAD`]). The flush waits for the
    /// upload, which is the backpressure.
    pub(super) fn bound_unflushed(&mut self) -> Result<()> {
        if self.unflushed_heap < self.store.config.max_unflushed.0 {
            return Ok(());
        }
        self.unflushed_heap = 0;
        let what = format!("flushing memtables of {}", self.what());
        self.within_flush_timeout(
            &what,
            self.db.flush_with_options(slatedb::config::FlushOptions {
                flush_type: slatedb::config::FlushType::MemTable,
            }),
        )
    }
}

/// Heap a memtable entry holds beyond its key and value: SlateDB's skiplist node and row
/// entry and the headers of its key and value bytes. SlateDB bounds unflushed writes by their
/// encoded size (key + value + 11 bytes), a fraction of their heap for small entries: a heap
/// profile of ad-click at a 256 MiB budget had 100 MB of memtables where SlateDB counted under
/// 64 MiB, and the end-of-input drain's millions of small deletes took the run 100 MiB over
/// its budget.
const MEMTABLE_ENTRY_OVERHEAD: usize = 160;

/// The heap `entries` memtable entries of `bytes` key and value bytes hold.
pub(super) fn memtable_heap(bytes: usize, entries: usize) -> u64 {
    (bytes + entries * MEMTABLE_ENTRY_OVERHEAD) as u64
}

fn as_slice_bound(b: &Bound<Bytes>) -> Bound<&[u8]> {
    match b {
        Bound::Included(x) => Bound::Included(x.as_ref()),
        Bound::Excluded(x) => Bound::Excluded(x.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl StateWrite for RemoteBackend {
    fn put(&mut self, scope: Scope<'_>, user_key: &[u8], value: &[u8]) -> Result<()> {
        self.apply_ops(vec![WriteOp::Put {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
            value: value.to_vec(),
        }])
    }

    fn merge(&mut self, scope: Scope<'_>, user_key: &[u8], operand: &[u8]) -> Result<()> {
        self.apply_ops(vec![WriteOp::Merge {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
            operand: operand.to_vec(),
        }])
    }

    fn delete(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()> {
        self.apply_ops(vec![WriteOp::Delete {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
        }])
    }

    fn delete_range(&mut self, scope: Scope<'_>, range: UserKeyRange<'_>) -> Result<()> {
        let (lower, upper) = range.to_half_open();
        self.apply_ops(vec![WriteOp::DeleteRange {
            scope: scope.to_owned(),
            lower,
            upper,
        }])
    }

    fn write(&mut self, batch: WriteBatch) -> Result<()> {
        self.apply_ops(batch.into_ops())
    }
}

//! [`RecordingBackend`]: a wrapper that records every operation of any backend.

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use statekit_backend::backend::{EntryVisitor, StateVisitor};
use statekit_backend::{
    BackendStats, CheckpointHandle, Checkpointing, Direction, Error, KeyGroupRange, Result, Scope,
    StateBackend, StateDescriptor, StateId, StateRead, StateWrite, Timer, TimerStore, UserKeyRange,
    Visit, WriteBatch, WriteOp,
};

use super::{TraceOp, TraceWriter};

/// A backend wrapper that records every operation to a [`TraceWriter`]. The writer is shared
/// so the caller can finish it after the run. A failed trace write fails the operation being
/// recorded, so a full disk ends the run with a clear error instead of a silently short trace.
pub struct RecordingBackend<B: StateBackend + ?Sized> {
    inner: Box<B>,
    writer: Arc<Mutex<Option<TraceWriter>>>,
}

impl<B: StateBackend + ?Sized> RecordingBackend<B> {
    /// Wraps `inner`, recording to `writer`. States registered before wrapping are recorded
    /// at once, so a replay knows them.
    ///
    /// # Errors
    /// I/O errors of the trace.
    pub fn new(inner: Box<B>, writer: Arc<Mutex<Option<TraceWriter>>>) -> Result<Self> {
        let me = RecordingBackend { inner, writer };
        for d in me.inner.states() {
            me.rec(|| TraceOp::RegisterState(d.clone()))?;
        }
        Ok(me)
    }

    fn rec(&self, op: impl FnOnce() -> TraceOp) -> Result<()> {
        let mut guard = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_mut() {
            Some(w) => w.record(&op()),
            None => Err(Error::new(
                statekit_backend::ErrorKind::Closed,
                "the trace was already finished",
            )),
        }
    }
}

fn owned_bound(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    b.map(<[u8]>::to_vec)
}

impl<B: StateBackend + ?Sized> StateRead for RecordingBackend<B> {
    fn get(&self, scope: Scope<'_>, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        let out = self.inner.get(scope, user_key)?;
        let found = Some(out.as_ref().map(|v| v.len() as u64));
        self.rec(|| TraceOp::Get {
            scope: scope.to_owned(),
            user_key: user_key.to_vec(),
            found,
        })?;
        Ok(out)
    }

    fn multi_get(&self, requests: &[(Scope<'_>, &[u8])]) -> Result<Vec<Option<Vec<u8>>>> {
        let out = self.inner.multi_get(requests)?;
        let hits = out.iter().filter(|v| v.is_some()).count() as u64;
        self.rec(|| TraceOp::MultiGet {
            requests: requests
                .iter()
                .map(|(s, k)| (s.to_owned(), k.to_vec()))
                .collect(),
            hits: Some(hits),
        })?;
        Ok(out)
    }

    fn prefetch(&self, scopes: &[Scope<'_>]) -> Result<()> {
        self.inner.prefetch(scopes)?;
        self.rec(|| TraceOp::Prefetch {
            scopes: scopes.iter().map(Scope::to_owned).collect(),
        })
    }

    fn scan(
        &self,
        scope: Scope<'_>,
        range: UserKeyRange<'_>,
        direction: Direction,
        visitor: &mut EntryVisitor<'_>,
    ) -> Result<()> {
        let mut visited = 0u64;
        let out = self.inner.scan(scope, range, direction, &mut |k, v| {
            visited += 1;
            visitor(k, v)
        });
        self.rec(|| TraceOp::Scan {
            scope: scope.to_owned(),
            lower: owned_bound(range.lower),
            upper: owned_bound(range.upper),
            reverse: direction == Direction::Reverse,
            visited: Some(visited),
        })?;
        out
    }

    fn scan_state(
        &self,
        state: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut StateVisitor<'_>,
    ) -> Result<()> {
        let mut visited = 0u64;
        let out = self.inner.scan_state(state, key_groups, &mut |e| {
            visited += 1;
            visitor(e)
        });
        self.rec(|| TraceOp::ScanState {
            state,
            key_groups,
            visited,
        })?;
        out
    }
}

impl<B: StateBackend + ?Sized> StateWrite for RecordingBackend<B> {
    fn put(&mut self, scope: Scope<'_>, user_key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(scope, user_key, value)?;
        self.rec(|| {
            TraceOp::Write(WriteOp::Put {
                scope: scope.to_owned(),
                user_key: user_key.to_vec(),
                value: value.to_vec(),
            })
        })
    }

    fn merge(&mut self, scope: Scope<'_>, user_key: &[u8], operand: &[u8]) -> Result<()> {
        self.inner.merge(scope, user_key, operand)?;
        self.rec(|| {
            TraceOp::Write(WriteOp::Merge {
                scope: scope.to_owned(),
                user_key: user_key.to_vec(),
                operand: operand.to_vec(),
            })
        })
    }

    fn delete(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()> {
        self.inner.delete(scope, user_key)?;
        self.rec(|| {
            TraceOp::Write(WriteOp::Delete {
                scope: scope.to_owned(),
                user_key: user_key.to_vec(),
            })
        })
    }

    fn delete_range(&mut self, scope: Scope<'_>, range: UserKeyRange<'_>) -> Result<()> {
        self.inner.delete_range(scope, range)?;
        // Normalise to the batch form `[lower, upper)`: the typed API only issues those.
        let lower = match range.lower {
            Bound::Included(k) => Some(k.to_vec()),
            // The smallest key after `k` is `k` followed by a zero byte.
            Bound::Excluded(k) => Some([k, &[0u8]].concat()),
            Bound::Unbounded => None,
        };
        let upper = match range.upper {
            Bound::Excluded(k) => Some(k.to_vec()),
            Bound::Included(k) => Some([k, &[0u8]].concat()),
            Bound::Unbounded => None,
        };
        self.rec(|| {
            TraceOp::Write(WriteOp::DeleteRange {
                scope: scope.to_owned(),
                lower,
                upper,
            })
        })
    }

    fn write(&mut self, batch: WriteBatch) -> Result<()> {
        let ops = batch.ops().to_vec();
        self.inner.write(batch)?;
        self.rec(|| TraceOp::WriteBatch(ops))
    }
}

impl<B: StateBackend + ?Sized> TimerStore for RecordingBackend<B> {
    fn register_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        self.inner.register_timer(queue, timer)?;
        self.rec(|| TraceOp::RegisterTimer {
            queue,
            timer: timer.clone(),
        })
    }

    fn delete_timer(&mut self, queue: StateId, timer: &Timer) -> Result<()> {
        self.inner.delete_timer(queue, timer)?;
        self.rec(|| TraceOp::DeleteTimer {
            queue,
            timer: timer.clone(),
        })
    }

    fn pop_due_timers(
        &mut self,
        queue: StateId,
        watermark: i64,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        let out = self.inner.pop_due_timers(queue, watermark, limit)?;
        self.rec(|| TraceOp::PopTimers {
            queue,
            watermark,
            limit: limit as u64,
            popped: out.len() as u64,
        })?;
        Ok(out)
    }

    fn clear_timers(&mut self, queue: StateId) -> Result<u64> {
        let cleared = self.inner.clear_timers(queue)?;
        self.rec(|| TraceOp::ClearTimers { queue, cleared })?;
        Ok(cleared)
    }

    fn next_timer(&self, queue: StateId) -> Result<Option<i64>> {
        let out = self.inner.next_timer(queue)?;
        self.rec(|| TraceOp::NextTimer { queue })?;
        Ok(out)
    }

    fn scan_timers(
        &self,
        queue: StateId,
        key_groups: KeyGroupRange,
        visitor: &mut dyn FnMut(&Timer) -> Result<Visit>,
    ) -> Result<()> {
        self.inner.scan_timers(queue, key_groups, visitor)?;
        self.rec(|| TraceOp::ScanTimers { queue, key_groups })
    }
}

impl<B: StateBackend + ?Sized> Checkpointing for RecordingBackend<B> {
    fn checkpoint(&mut self, checkpoint_id: u64) -> Result<CheckpointHandle> {
        let h = self.inner.checkpoint(checkpoint_id)?;
        self.rec(|| TraceOp::Checkpoint { id: checkpoint_id })?;
        Ok(h)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.inner.notify_checkpoint_complete(checkpoint_id)
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
        self.inner.notify_checkpoint_aborted(checkpoint_id)
    }

    fn restore(&mut self, handles: &[CheckpointHandle]) -> Result<()> {
        self.inner.restore(handles)?;
        self.rec(|| TraceOp::Restore {
            handles: handles.len() as u64,
        })
    }
}

impl<B: StateBackend + ?Sized> StateBackend for RecordingBackend<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn max_parallelism(&self) -> u16 {
        self.inner.max_parallelism()
    }
    fn key_group_range(&self) -> KeyGroupRange {
        self.inner.key_group_range()
    }
    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId> {
        let known = self.inner.states().len();
        let id = self.inner.register_state(descriptor)?;
        if id.index() >= known {
            self.rec(|| TraceOp::RegisterState(descriptor.clone()))?;
        }
        Ok(id)
    }
    fn states(&self) -> Vec<StateDescriptor> {
        self.inner.states()
    }
    fn stats(&self) -> Result<BackendStats> {
        self.inner.stats()
    }
    fn clear_state(&mut self, state: StateId) -> Result<()> {
        self.inner.clear_state(state)?;
        self.rec(|| TraceOp::ClearState { state })
    }
}

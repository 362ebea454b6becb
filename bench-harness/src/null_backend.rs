//! [`NullBackend`]: a backend that stores nothing, to measure the harness itself.
//!
//! The same input through the same operator on this backend costs everything a real run
//! costs outside the state store (reading or generating the input, the operator's own
//! buffers, the self-check's copy of the input, metrics), so its peak resident memory is
//! the harness's footprint a run's memory is judged against.

use statekit_backend::backend::{resolve_registration, EntryVisitor, StateVisitor};
use statekit_backend::{
    CheckpointHandle, Checkpointing, InstanceConfig, KeyGroupRange, Result, Scope, StateBackend,
    StateDescriptor, StateId, StateRead, StateWrite, Timer, TimerStore, UserKeyRange, Visit,
    WriteBatch,
};

/// Accepts every write and forgets it; every read finds nothing; no timer ever fires.
pub struct NullBackend {
    config: InstanceConfig,
    states: Vec<StateDescriptor>,
}

impl NullBackend {
    /// A null backend for the instance `config`.
    pub fn new(config: InstanceConfig) -> Self {
        NullBackend {
            config,
            states: Vec::new(),
        }
    }
}

impl StateRead for NullBackend {
    fn get(&self, _scope: Scope<'_>, _user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    fn scan(
        &self,
        _scope: Scope<'_>,
        _range: UserKeyRange<'_>,
        _direction: statekit_backend::Direction,
        _visitor: &mut EntryVisitor<'_>,
    ) -> Result<()> {
        Ok(())
    }

    fn scan_state(
        &self,
        _state: StateId,
        _key_groups: KeyGroupRange,
        _visitor: &mut StateVisitor<'_>,
    ) -> Result<()> {
        Ok(())
    }
}

impl StateWrite for NullBackend {
    fn put(&mut self, _scope: Scope<'_>, _user_key: &[u8], _value: &[u8]) -> Result<()> {
        Ok(())
    }

    fn merge(&mut self, _scope: Scope<'_>, _user_key: &[u8], _operand: &[u8]) -> Result<()> {
        Ok(())
    }

    fn delete(&mut self, _scope: Scope<'_>, _user_key: &[u8]) -> Result<()> {
        Ok(())
    }

    fn delete_range(&mut self, _scope: Scope<'_>, _range: UserKeyRange<'_>) -> Result<()> {
        Ok(())
    }

    fn write(&mut self, _batch: WriteBatch) -> Result<()> {
        Ok(())
    }
}

impl TimerStore for NullBackend {
    fn register_timer(&mut self, _queue: StateId, _timer: &Timer) -> Result<()> {
        Ok(())
    }

    fn delete_timer(&mut self, _queue: StateId, _timer: &Timer) -> Result<()> {
        Ok(())
    }

    fn pop_due_timers(
        &mut self,
        _queue: StateId,
        _watermark: i64,
        _limit: usize,
    ) -> Result<Vec<Timer>> {
        Ok(Vec::new())
    }

    fn next_timer(&self, _queue: StateId) -> Result<Option<i64>> {
        Ok(None)
    }

    fn scan_timers(
        &self,
        _queue: StateId,
        _key_groups: KeyGroupRange,
        _visitor: &mut dyn FnMut(&Timer) -> Result<Visit>,
    ) -> Result<()> {
        Ok(())
    }
}

impl Checkpointing for NullBackend {
    /// A handle to an empty checkpoint (nothing is written anywhere).
    fn checkpoint(&mut self, checkpoint_id: u64) -> Result<CheckpointHandle> {
        Ok(CheckpointHandle {
            checkpoint_id,
            backend: self.name().to_string(),
            format: "none".into(),
            location: String::new(),
            key_groups: self.config.key_groups,
        })
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    fn notify_checkpoint_aborted(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    fn restore(&mut self, _handles: &[CheckpointHandle]) -> Result<()> {
        Ok(())
    }
}

impl StateBackend for NullBackend {
    fn name(&self) -> &'static str {
        "null"
    }

    fn max_parallelism(&self) -> u16 {
        self.config.max_parallelism
    }

    fn key_group_range(&self) -> KeyGroupRange {
        self.config.key_groups
    }

    fn register_state(&mut self, descriptor: &StateDescriptor) -> Result<StateId> {
        let (id, is_new) = resolve_registration(&self.states, descriptor)?;
        if is_new {
            self.states.push(descriptor.clone());
        }
        Ok(id)
    }

    fn states(&self) -> Vec<StateDescriptor> {
        self.states.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statekit_backend::typed::{KeyContext, MapState};

    #[test]
    fn stores_nothing() {
        let mut b = NullBackend::new(InstanceConfig::single(8).unwrap());
        let m: MapState<i64, String> = MapState::register(&mut b, "m").unwrap();
        let again: MapState<i64, String> = MapState::register(&mut b, "m").unwrap();
        let ctx = KeyContext::new(&b, &1u64).unwrap();
        m.put(&mut b, &ctx, &1, &"x".into()).unwrap();
        assert_eq!(again.get(&b, &ctx, &1).unwrap(), None);
        assert!(m.range(&b, &ctx, ..).unwrap().is_empty());
        assert_eq!(b.states().len(), 1);
    }
}

//! Which of an instance's checkpoints may be deleted, decided by the engine's word.
//!
//! A checkpoint that completes on one instance is only *pending*: the engine may still abort
//! it (another task failed). Deleting older checkpoints at local completion would, with one
//! retained checkpoint, delete the last good one for a checkpoint that never counts. So:
//! - a locally completed checkpoint is pending and deletes nothing;
//! - the engine's confirmation of checkpoint `n` confirms every pending checkpoint up to `n`
//!   (engines may skip notifications of older ones) and then deletes the oldest confirmed
//!   ones beyond the retained count;
//! - the engine's abort of a pending checkpoint deletes it alone.

use std::collections::VecDeque;

use crate::checkpoint::{CheckpointHandle, CheckpointStorage};
use crate::error::{Error, ErrorKind, Result};

/// Bookkeeping of an instance's checkpoints: ids must increase; pending ones wait for the
/// engine; only the last `retained` confirmed ones are kept.
#[derive(Debug, Default)]
pub struct CheckpointLog {
    pending: VecDeque<CheckpointHandle>,
    confirmed: VecDeque<CheckpointHandle>,
    last_id: Option<u64>,
}

impl CheckpointLog {
    /// Checks that `checkpoint_id` is newer than every checkpoint taken.
    ///
    /// # Errors
    /// `InvalidArgument` otherwise.
    pub fn check_next(&self, checkpoint_id: u64) -> Result<()> {
        match self.last_id {
            Some(last) if last >= checkpoint_id => Err(Error::invalid(format!(
                "checkpoint id {checkpoint_id} is not greater than the last one taken ({last})"
            ))),
            _ => Ok(()),
        }
    }

    /// Records a locally completed checkpoint: pending until the engine confirms or aborts it.
    pub fn taken(&mut self, handle: CheckpointHandle) {
        self.last_id = Some(handle.checkpoint_id);
        self.pending.push_back(handle);
    }

    /// Confirms checkpoint `checkpoint_id` and every pending one before it; returns the
    /// confirmed checkpoints that fall out of retention, oldest first.
    ///
    /// # Errors
    /// `NotFound` for a checkpoint this instance has not taken, or has had aborted.
    pub fn confirm(
        &mut self,
        checkpoint_id: u64,
        retained: usize,
    ) -> Result<Vec<CheckpointHandle>> {
        let known = self
            .pending
            .iter()
            .chain(&self.confirmed)
            .any(|h| h.checkpoint_id == checkpoint_id);
        if !known {
            // Older than every retained confirmed checkpoint: it already fell out of
            // retention (a late or repeated notification), nothing to do.
            if self
                .confirmed
                .front()
                .is_some_and(|oldest| checkpoint_id < oldest.checkpoint_id)
            {
                return Ok(Vec::new());
            }
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "checkpoint {checkpoint_id} cannot be confirmed: this instance has no such \
                     pending checkpoint (pending: {:?})",
                    self.pending_ids()
                ),
            ));
        }
        while self
            .pending
            .front()
            .is_some_and(|h| h.checkpoint_id <= checkpoint_id)
        {
            if let Some(h) = self.pending.pop_front() {
                self.confirmed.push_back(h);
            }
        }
        let excess = self.confirmed.len().saturating_sub(retained.max(1));
        Ok(self.confirmed.drain(..excess).collect())
    }

    /// Takes back a pending checkpoint the engine aborted; `None` if this instance has no
    /// such pending checkpoint (engines abort checkpoints an instance never completed).
    ///
    /// # Errors
    /// `InvalidArgument` for a checkpoint already confirmed: it may be restored from.
    pub fn abort(&mut self, checkpoint_id: u64) -> Result<Option<CheckpointHandle>> {
        if self
            .confirmed
            .iter()
            .any(|h| h.checkpoint_id == checkpoint_id)
        {
            return Err(Error::invalid(format!(
                "checkpoint {checkpoint_id} was confirmed and cannot be aborted"
            )));
        }
        let position = self
            .pending
            .iter()
            .position(|h| h.checkpoint_id == checkpoint_id);
        Ok(position.and_then(|p| self.pending.remove(p)))
    }

    /// Confirmed checkpoints, oldest first, then pending ones.
    pub fn kept(&self) -> impl Iterator<Item = &CheckpointHandle> {
        self.confirmed.iter().chain(&self.pending)
    }

    fn pending_ids(&self) -> Vec<u64> {
        self.pending.iter().map(|h| h.checkpoint_id).collect()
    }
}

/// Deletes every object of a checkpoint location (retention and aborts).
///
/// # Errors
/// Storage errors.
pub fn delete_location(storage: &dyn CheckpointStorage, location: &str) -> Result<()> {
    // The manifest goes first, so a partly deleted checkpoint is never restorable.
    storage.delete(&format!("{location}/MANIFEST"))?;
    for path in storage.list(location)? {
        storage.delete(&path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygroup::KeyGroupRange;

    fn handle(id: u64) -> CheckpointHandle {
        CheckpointHandle {
            checkpoint_id: id,
            backend: "test".into(),
            format: "test".into(),
            location: format!("chk-{id}"),
            key_groups: KeyGroupRange { start: 0, end: 0 },
        }
    }

    fn ids(handles: &[CheckpointHandle]) -> Vec<u64> {
        handles.iter().map(|h| h.checkpoint_id).collect()
    }

    #[test]
    fn nothing_is_deleted_before_the_engine_confirms() {
        let mut log = CheckpointLog::default();
        log.taken(handle(1));
        assert!(log.confirm(1, 1).unwrap().is_empty());
        log.taken(handle(2));
        log.taken(handle(3));
        // 2 and 3 are pending: checkpoint 1 stays, the last confirmed one.
        assert_eq!(ids(&log.kept().cloned().collect::<Vec<_>>()), [1, 2, 3]);
        // The engine aborts 3: it goes, 1 stays.
        assert_eq!(log.abort(3).unwrap().map(|h| h.checkpoint_id), Some(3));
        // Confirming 2 retires 1.
        assert_eq!(ids(&log.confirm(2, 1).unwrap()), [1]);
        assert_eq!(ids(&log.kept().cloned().collect::<Vec<_>>()), [2]);
    }

    #[test]
    fn a_confirmation_covers_older_pending_checkpoints() {
        let mut log = CheckpointLog::default();
        for id in 1..=4 {
            log.taken(handle(id));
        }
        assert_eq!(ids(&log.confirm(3, 2).unwrap()), [1]);
        assert_eq!(ids(&log.kept().cloned().collect::<Vec<_>>()), [2, 3, 4]);
        // Late or repeated notifications are harmless.
        assert!(log.confirm(1, 2).unwrap().is_empty());
        assert!(log.confirm(3, 2).unwrap().is_empty());
    }

    #[test]
    fn unknown_confirmations_and_aborts_of_confirmed_checkpoints_are_errors() {
        let mut log = CheckpointLog::default();
        log.taken(handle(5));
        assert_eq!(log.confirm(6, 1).unwrap_err().kind(), ErrorKind::NotFound);
        assert!(log.abort(6).unwrap().is_none(), "never completed here");
        log.confirm(5, 1).unwrap();
        assert_eq!(log.abort(5).unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            log.check_next(5).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        log.check_next(6).unwrap();
    }
}

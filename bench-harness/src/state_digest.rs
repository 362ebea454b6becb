//! What a backend holds, summed up: every entry and timer of every registered state,
//! counted and fingerprinted. The crash test compares it across restores; a bench run checks
//! that the final watermark left nothing behind.

use serde::{Deserialize, Serialize};
use statekit_backend::backend::EntryRef;
use statekit_backend::{Result, StateBackend, StateDescriptor, StateKind, Timer, Visit};
use xxhash_rust::xxh3::xxh3_64 as h;

use crate::util::SetFingerprint;

/// An order-independent fingerprint of everything a backend holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFingerprint {
    /// Key/value entries.
    pub entries: u64,
    /// Registered timers.
    pub timers: u64,
    /// Fingerprint of the entries and timers.
    pub fingerprint: u64,
}

/// Fingerprints every entry and timer of every state the backend holds.
///
/// # Errors
/// Backend errors.
pub fn state_fingerprint(backend: &dyn StateBackend) -> Result<StateFingerprint> {
    state_fingerprint_of(backend, |_| true)
}

/// [`state_fingerprint`] of the states `include` accepts.
///
/// # Errors
/// Backend errors.
pub fn state_fingerprint_of(
    backend: &dyn StateBackend,
    include: impl Fn(&StateDescriptor) -> bool,
) -> Result<StateFingerprint> {
    let mut fp = SetFingerprint::default();
    let (mut entries, mut timers) = (0u64, 0u64);
    let range = backend.key_group_range();
    for (index, desc) in backend.states().iter().enumerate() {
        if !include(desc) {
            continue;
        }
        let id = statekit_backend::StateId::from_index(index as u32);
        let name = h(desc.name.as_bytes());
        if desc.kind == StateKind::Timers {
            backend.scan_timers(id, range, &mut |t| {
                timers += 1;
                let [a, b, c, d] = timer_digest(t);
                fp.add(&[name, a, b, c, d]);
                Ok(Visit::Continue)
            })?;
        } else {
            backend.scan_state(id, range, &mut |e| {
                entries += 1;
                let [a, b, c, d, f] = entry_digest(e);
                fp.add(&[name, a, b, c, d, f]);
                Ok(Visit::Continue)
            })?;
        }
    }
    Ok(StateFingerprint {
        entries,
        timers,
        fingerprint: fp.value(),
    })
}

/// The parts of a stored entry a fingerprint folds: key group, and digests of key, namespace,
/// user key and value.
pub fn entry_digest(e: &EntryRef<'_>) -> [u64; 5] {
    [
        u64::from(e.key_group),
        h(e.key),
        h(e.namespace),
        h(e.user_key),
        h(e.value),
    ]
}

/// The parts of a timer a fingerprint folds: time, key group, and digests of key and
/// namespace.
pub fn timer_digest(t: &Timer) -> [u64; 4] {
    [
        t.timestamp as u64,
        u64::from(t.key_group),
        h(&t.key),
        h(&t.namespace),
    ]
}

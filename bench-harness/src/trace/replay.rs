//! [`replay`]: a trace's operations against any backend, reporting reads that diverge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statekit_backend::{
    Direction, Error, Result, Scope, ScopeBuf, StateBackend, StateId, UserKeyRange, Visit,
    WriteBatch, WriteOp,
};

use super::{TraceOp, TraceReader};
use crate::state_digest::{entry_digest, timer_digest};
use crate::util::{mix64, SetFingerprint};
use xxhash_rust::xxh3::xxh3_64 as h;

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySummary {
    /// Records read.
    pub records: u64,
    /// Operations per kind as recorded in the trace.
    pub recorded_ops: BTreeMap<String, u64>,
    /// Reads whose result differs from the recording (found vs not, entries, timers).
    pub divergent_reads: u64,
    /// Records that could not be replayed (restores; checkpoints without storage).
    pub skipped: u64,
    /// A fingerprint of every read's result in order (values, scanned entries, timers
    /// popped or scanned, the next timer): two backends given the same trace must agree on
    /// it whatever the recording holds.
    pub read_results: u64,
}

/// Folds one read's result digest into the running fingerprint.
fn fold(summary: &mut ReplaySummary, digest: u64) {
    summary.read_results = mix64(summary.read_results ^ digest);
}

/// The digest of a point read's result: none, or the value.
fn value_digest(value: Option<&[u8]>) -> u64 {
    value.map_or(0, |v| h(v) | 1)
}

/// Replays a trace against `backend` (a fresh instance with the trace's max parallelism and
/// key groups). States are registered as recorded; their ids are mapped to the backend's.
/// Scans stop after as many entries as the recorded reader visited. Checkpoints are taken
/// only with `checkpoints` (the backend then needs checkpoint storage); otherwise skipped.
///
/// # Errors
/// Corrupt traces (naming record and offset) and backend errors.
pub fn replay(
    reader: &mut TraceReader,
    backend: &mut dyn StateBackend,
    checkpoints: bool,
    mut progress: impl FnMut(u64),
) -> Result<ReplaySummary> {
    let mut summary = ReplaySummary::default();
    let mut ids: Vec<StateId> = Vec::new();
    let map = |ids: &[StateId], s: StateId| -> Result<StateId> {
        ids.get(s.index()).copied().ok_or_else(|| {
            Error::corruption(format!(
                "trace uses state #{} before registering it",
                s.index()
            ))
        })
    };
    while let Some(record) = reader.next_record()? {
        summary.records += 1;
        if summary.records % 65_536 == 0 {
            progress(summary.records);
        }
        if let Some(k) = record.op.kind() {
            *summary
                .recorded_ops
                .entry(k.name().to_string())
                .or_default() += 1;
        }
        let remap = |ids: &[StateId], s: &ScopeBuf| -> Result<ScopeBuf> {
            Ok(ScopeBuf {
                state: map(ids, s.state)?,
                ..s.clone()
            })
        };
        let remap_op = |ids: &[StateId], op: &WriteOp| -> Result<WriteOp> {
            Ok(match op.clone() {
                WriteOp::Put {
                    scope,
                    user_key,
                    value,
                } => WriteOp::Put {
                    scope: remap(ids, &scope)?,
                    user_key,
                    value,
                },
                WriteOp::Merge {
                    scope,
                    user_key,
                    operand,
                } => WriteOp::Merge {
                    scope: remap(ids, &scope)?,
                    user_key,
                    operand,
                },
                WriteOp::Delete { scope, user_key } => WriteOp::Delete {
                    scope: remap(ids, &scope)?,
                    user_key,
                },
                WriteOp::DeleteRange {
                    scope,
                    lower,
                    upper,
                } => WriteOp::DeleteRange {
                    scope: remap(ids, &scope)?,
                    lower,
                    upper,
                },
            })
        };
        match &record.op {
            TraceOp::RegisterState(d) => ids.push(backend.register_state(d)?),
            TraceOp::Get {
                scope,
                user_key,
                found,
            } => {
                let s = remap(&ids, scope)?;
                let got = backend.get(s.as_scope(), user_key)?;
                fold(&mut summary, value_digest(got.as_deref()));
                if found.is_some_and(|f| f.is_some() != got.is_some()) {
                    summary.divergent_reads += 1;
                }
            }
            TraceOp::MultiGet { requests, hits } => {
                let owned: Vec<(ScopeBuf, &[u8])> = requests
                    .iter()
                    .map(|(s, k)| Ok((remap(&ids, s)?, k.as_slice())))
                    .collect::<Result<_>>()?;
                let reqs: Vec<(Scope<'_>, &[u8])> =
                    owned.iter().map(|(s, k)| (s.as_scope(), *k)).collect();
                let values = backend.multi_get(&reqs)?;
                for v in &values {
                    fold(&mut summary, value_digest(v.as_deref()));
                }
                let got = values.iter().filter(|v| v.is_some()).count() as u64;
                if hits.is_some_and(|h| h != got) {
                    summary.divergent_reads += 1;
                }
            }
            TraceOp::Prefetch { scopes } => {
                let owned: Vec<ScopeBuf> = scopes
                    .iter()
                    .map(|s| remap(&ids, s))
                    .collect::<Result<_>>()?;
                let refs: Vec<Scope<'_>> = owned.iter().map(ScopeBuf::as_scope).collect();
                backend.prefetch(&refs)?;
            }
            TraceOp::Scan {
                scope,
                lower,
                upper,
                reverse,
                visited,
            } => {
                let s = remap(&ids, scope)?;
                // As many entries as the recorded reader (or Gadget's iterator) visited; one
                // when the trace does not say.
                let limit = visited.unwrap_or(1);
                let mut seen = 0u64;
                let range = UserKeyRange::new(
                    lower.as_ref().map(Vec::as_slice),
                    upper.as_ref().map(Vec::as_slice),
                );
                let dir = if *reverse {
                    Direction::Reverse
                } else {
                    Direction::Forward
                };
                let mut digest = 0u64;
                backend.scan(s.as_scope(), range, dir, &mut |k, v| {
                    // In scan order, which every backend defines alike.
                    digest = mix64(digest ^ mix64(h(k) ^ h(v).rotate_left(1)));
                    seen += 1;
                    Ok(if seen >= limit {
                        Visit::Stop
                    } else {
                        Visit::Continue
                    })
                })?;
                fold(&mut summary, digest ^ seen);
                if visited.is_some_and(|v| v != seen) {
                    summary.divergent_reads += 1;
                }
            }
            TraceOp::ScanState {
                state,
                key_groups,
                visited,
            } => {
                let mut seen = 0u64;
                // As a set: the order across key groups and keys is the backend's.
                let mut entries = SetFingerprint::default();
                backend.scan_state(map(&ids, *state)?, *key_groups, &mut |e| {
                    seen += 1;
                    entries.add(&entry_digest(e));
                    Ok(Visit::Continue)
                })?;
                fold(&mut summary, entries.value() ^ seen);
                if seen != *visited {
                    summary.divergent_reads += 1;
                }
            }
            TraceOp::Write(op) => match remap_op(&ids, op)? {
                WriteOp::Put {
                    scope,
                    user_key,
                    value,
                } => backend.put(scope.as_scope(), &user_key, &value)?,
                WriteOp::Merge {
                    scope,
                    user_key,
                    operand,
                } => backend.merge(scope.as_scope(), &user_key, &operand)?,
                WriteOp::Delete { scope, user_key } => {
                    backend.delete(scope.as_scope(), &user_key)?
                }
                WriteOp::DeleteRange {
                    scope,
                    lower,
                    upper,
                } => {
                    let range = UserKeyRange::from_half_open(lower.as_deref(), upper.as_deref());
                    backend.delete_range(scope.as_scope(), range)?;
                }
            },
            TraceOp::WriteBatch(ops) => {
                let mut batch = WriteBatch::new();
                for op in ops {
                    match remap_op(&ids, op)? {
                        WriteOp::Put {
                            scope,
                            user_key,
                            value,
                        } => batch.put(scope.as_scope(), &user_key, &value),
                        WriteOp::Merge {
                            scope,
                            user_key,
                            operand,
                        } => batch.merge(scope.as_scope(), &user_key, &operand),
                        WriteOp::Delete { scope, user_key } => {
                            batch.delete(scope.as_scope(), &user_key)
                        }
                        WriteOp::DeleteRange {
                            scope,
                            lower,
                            upper,
                        } => {
                            batch.delete_range(scope.as_scope(), lower.as_deref(), upper.as_deref())
                        }
                    };
                }
                backend.write(batch)?;
            }
            TraceOp::RegisterTimer { queue, timer } => {
                backend.register_timer(map(&ids, *queue)?, timer)?
            }
            TraceOp::DeleteTimer { queue, timer } => {
                backend.delete_timer(map(&ids, *queue)?, timer)?
            }
            TraceOp::PopTimers {
                queue,
                watermark,
                limit,
                popped,
            } => {
                let got = backend.pop_due_timers(
                    map(&ids, *queue)?,
                    *watermark,
                    usize::try_from(*limit).unwrap_or(usize::MAX),
                )?;
                let mut timers = SetFingerprint::default();
                for t in &got {
                    timers.add(&timer_digest(t));
                }
                fold(&mut summary, timers.value() ^ got.len() as u64);
                if got.len() as u64 != *popped {
                    summary.divergent_reads += 1;
                }
            }
            TraceOp::ClearState { state } => backend.clear_state(map(&ids, *state)?)?,
            TraceOp::ClearTimers { queue, cleared } => {
                let got = backend.clear_timers(map(&ids, *queue)?)?;
                fold(&mut summary, got);
                if got != *cleared {
                    summary.divergent_reads += 1;
                }
            }
            TraceOp::NextTimer { queue } => {
                let next = backend.next_timer(map(&ids, *queue)?)?;
                fold(&mut summary, next.map_or(0, |t| mix64(t as u64) | 1));
            }
            TraceOp::ScanTimers { queue, key_groups } => {
                let mut timers = SetFingerprint::default();
                backend.scan_timers(map(&ids, *queue)?, *key_groups, &mut |t| {
                    timers.add(&timer_digest(t));
                    Ok(Visit::Continue)
                })?;
                fold(&mut summary, timers.value());
            }
            TraceOp::Checkpoint { id } => {
                if checkpoints {
                    backend.checkpoint(*id)?;
                    // A trace is replayed by one instance: its checkpoint is the job's.
                    backend.notify_checkpoint_complete(*id)?;
                } else {
                    summary.skipped += 1;
                }
            }
            TraceOp::Restore { .. } => summary.skipped += 1,
        }
    }
    progress(summary.records);
    Ok(summary)
}

//! State-access traces: a versioned, compact binary format, a [`RecordingBackend`] wrapper
//! that records every operation of any backend, [`replay`] of a trace against any backend,
//! and an importer for Gadget's text traces.
//!
//! # Format (version 1)
//! ```text
//! header  = "SKTRACE" version:u8 flags:u8 max_parallelism:u16le kg_start:u16le kg_end:u16le
//! record* = tag:u8 dt:varint fields...        (dt: microseconds since the previous record)
//! footer  = 0x7F records:varint crc32c:u32le  (crc of every byte before it)
//! ```
//! Integers are LEB128 varints (signed ones zigzag-encoded), byte strings are a varint length
//! and the bytes. A scope is `state key_group key namespace`; when a record's scope equals the
//! previous record's, the tag has bit 0x80 set and the scope is omitted (operators touch one
//! key several times per element, so this halves typical traces). With flag bit 0 set
//! ("sizes only"), values are stored as their length alone and replay writes deterministic
//! filler bytes of that length. With flag bit 1 set ("stream time"), `dt` counts the recorded
//! stream's event time (a harness run, whose generator outruns real time); without it, the
//! recording's wall clock (a live engine's, or an importer's). Reads carry what they returned (found or not, entries
//! visited, timers popped), so a replay can report where another backend diverges.
//!
//! | tag | record |
//! |-----|--------|
//! | 1 | register_state name kind ttl_ms+1 (0 = none) |
//! | 2 | get scope user_key found (0 unknown, 1 none, 2+len) |
//! | 3 | multi_get n (scope user_key)* hits+1 (0 unknown) |
//! | 4 | prefetch n scope* |
//! | 5 | scan scope lower upper reverse:u8 visited+1 (0 unknown) |
//! | 6 | scan_state state kg_start kg_end visited |
//! | 7 | put scope user_key value |
//! | 8 | merge scope user_key value |
//! | 9 | delete scope user_key |
//! | 10 | delete_range scope lower upper |
//! | 11 | write_batch n (op scope ...)* with ops 7..10 |
//! | 12 | register_timer queue ts:zigzag scope-less timer (kg key namespace) |
//! | 13 | delete_timer (as 12) |
//! | 14 | pop_timers queue watermark:zigzag limit popped |
//! | 15 | next_timer queue |
//! | 16 | scan_timers queue kg_start kg_end |
//! | 17 | checkpoint id |
//! | 18 | restore handles |
//! | 19 | clear_state state |
//! | 20 | clear_timers queue cleared |
//!
//! A bound is `0` (unbounded), `1 bytes` (included) or `2 bytes` (excluded).

mod gadget;
mod reader;
mod recording;
mod replay;
mod writer;

use std::ops::Bound;

use serde::{Deserialize, Serialize};
use statekit_backend::{
    Error, KeyGroupRange, Result, ScopeBuf, StateDescriptor, StateId, StateKind, Timer, WriteOp,
};

pub use gadget::{import_gadget, GadgetImport, GadgetSummary};
pub use reader::TraceReader;
pub use recording::RecordingBackend;
pub use replay::{replay, ReplaySummary};
pub use writer::{StreamClock, TraceWriter};

pub(crate) const MAGIC: &[u8; 7] = b"SKTRACE";
/// The trace format version this build writes and reads.
pub const TRACE_VERSION: u8 = 1;
pub(crate) const FLAG_SIZES_ONLY: u8 = 1;
pub(crate) const FLAG_STREAM_TIME: u8 = 2;
pub(crate) const SAME_SCOPE: u8 = 0x80;
pub(crate) const TAG_FOOTER: u8 = 0x7F;

/// A decoded trace operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceOp {
    /// A state was registered.
    RegisterState(StateDescriptor),
    /// Point read; `found` is the value length, `None` if absent, outer `None` if unknown.
    Get {
        /// Where.
        scope: ScopeBuf,
        /// User key.
        user_key: Vec<u8>,
        /// What it returned.
        found: Option<Option<u64>>,
    },
    /// Batched point reads.
    MultiGet {
        /// Requests.
        requests: Vec<(ScopeBuf, Vec<u8>)>,
        /// How many found a value, if known.
        hits: Option<u64>,
    },
    /// Prefetch hint.
    Prefetch {
        /// Scopes.
        scopes: Vec<ScopeBuf>,
    },
    /// Range read.
    Scan {
        /// Where.
        scope: ScopeBuf,
        /// Lower bound.
        lower: Bound<Vec<u8>>,
        /// Upper bound.
        upper: Bound<Vec<u8>>,
        /// Descending order.
        reverse: bool,
        /// Entries the reader visited before it stopped, if known.
        visited: Option<u64>,
    },
    /// Whole-state iteration.
    ScanState {
        /// State.
        state: StateId,
        /// Key groups.
        key_groups: KeyGroupRange,
        /// Entries visited.
        visited: u64,
    },
    /// A write (put, merge, delete or range delete).
    Write(WriteOp),
    /// An atomic batch.
    WriteBatch(Vec<WriteOp>),
    /// Timer registration.
    RegisterTimer {
        /// Queue.
        queue: StateId,
        /// Timer.
        timer: Timer,
    },
    /// Timer deletion.
    DeleteTimer {
        /// Queue.
        queue: StateId,
        /// Timer.
        timer: Timer,
    },
    /// Popping due timers.
    PopTimers {
        /// Queue.
        queue: StateId,
        /// Watermark.
        watermark: i64,
        /// Limit.
        limit: u64,
        /// Timers returned.
        popped: u64,
    },
    /// Peek at the next timer.
    NextTimer {
        /// Queue.
        queue: StateId,
    },
    /// Timer iteration.
    ScanTimers {
        /// Queue.
        queue: StateId,
        /// Key groups.
        key_groups: KeyGroupRange,
    },
    /// Checkpoint.
    Checkpoint {
        /// Id.
        id: u64,
    },
    /// Restore (not replayable: the handles belong to the recorded run).
    Restore {
        /// Number of handles.
        handles: u64,
    },
    /// Every entry of a state removed at once.
    ClearState {
        /// State.
        state: StateId,
    },
    /// Every timer of a queue removed at once.
    ClearTimers {
        /// Queue.
        queue: StateId,
        /// Timers it held.
        cleared: u64,
    },
}

impl TraceOp {
    /// The operation kind this record counts as (state registration counts as none).
    pub fn kind(&self) -> Option<crate::metrics::OpKind> {
        use crate::metrics::OpKind as K;
        Some(match self {
            TraceOp::RegisterState(_) => return None,
            TraceOp::Get { .. } => K::Get,
            TraceOp::MultiGet { .. } => K::MultiGet,
            TraceOp::Prefetch { .. } => K::Prefetch,
            TraceOp::Scan { .. } => K::Scan,
            TraceOp::ScanState { .. } => K::ScanState,
            TraceOp::Write(WriteOp::Put { .. }) => K::Put,
            TraceOp::Write(WriteOp::Merge { .. }) => K::Merge,
            TraceOp::Write(WriteOp::Delete { .. }) => K::Delete,
            TraceOp::Write(WriteOp::DeleteRange { .. }) => K::DeleteRange,
            TraceOp::WriteBatch(_) => K::WriteBatch,
            TraceOp::RegisterTimer { .. } => K::RegisterTimer,
            TraceOp::DeleteTimer { .. } => K::DeleteTimer,
            TraceOp::PopTimers { .. } => K::PopTimers,
            TraceOp::NextTimer { .. } => K::NextTimer,
            TraceOp::ScanTimers { .. } => K::ScanTimers,
            TraceOp::Checkpoint { .. } => K::Checkpoint,
            TraceOp::Restore { .. } => K::Restore,
            TraceOp::ClearState { .. } => K::ClearState,
            TraceOp::ClearTimers { .. } => K::ClearTimers,
        })
    }
}

/// One record: when (µs since the trace started) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// Microseconds since the start of the trace.
    pub micros: u64,
    /// The operation.
    pub op: TraceOp,
}

/// What a trace header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceHeader {
    /// Format version.
    pub version: u8,
    /// Values stored as sizes only.
    pub sizes_only: bool,
    /// Record times are the recorded stream's event time, not the recording's wall clock.
    #[serde(default)]
    pub stream_time: bool,
    /// Max parallelism of the recorded instance.
    pub max_parallelism: u16,
    /// Key groups of the recorded instance.
    pub key_groups: KeyGroupRange,
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn kind_code(k: StateKind) -> u64 {
    match k {
        StateKind::Value => 0,
        StateKind::List => 1,
        StateKind::Map => 2,
        StateKind::Reducing => 3,
        StateKind::Aggregating => 4,
        StateKind::Timers => 5,
    }
}

pub(crate) fn kind_from(code: u64) -> Result<StateKind> {
    Ok(match code {
        0 => StateKind::Value,
        1 => StateKind::List,
        2 => StateKind::Map,
        3 => StateKind::Reducing,
        4 => StateKind::Aggregating,
        5 => StateKind::Timers,
        c => return Err(Error::corruption(format!("unknown state kind code {c}"))),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::typed::{KeyContext, ListState, MapState, TimerService};
    use statekit_backend::InstanceConfig;
    use statekit_backend::{StateBackend, TimerStore};

    fn shared(w: TraceWriter) -> Arc<Mutex<Option<TraceWriter>>> {
        Arc::new(Mutex::new(Some(w)))
    }

    type SharedWriter = Arc<Mutex<Option<TraceWriter>>>;

    /// A memory backend recording to a trace at `path` (16 key groups), and its writer.
    fn recording_to(path: &std::path::Path) -> (RecordingBackend<dyn StateBackend>, SharedWriter) {
        let inner = MemoryBackend::open(InstanceConfig::single(16).unwrap()).unwrap();
        let writer =
            shared(TraceWriter::create(path, false, 16, KeyGroupRange::all(16).unwrap()).unwrap());
        let b = RecordingBackend::new(
            Box::new(inner) as Box<dyn StateBackend>,
            Arc::clone(&writer),
        )
        .unwrap();
        (b, writer)
    }

    /// An excluded lower bound was recorded as the prefix successor of the key, so a replay
    /// kept keys between the bound and that successor ("a\x01" after "a").
    #[test]
    fn a_range_delete_with_an_excluded_lower_bound_replays_as_recorded() {
        use statekit_backend::{key_group_of, Scope, StateDescriptor, StateKind, StateRead};
        use statekit_backend::{StateWrite, UserKeyRange};
        use std::ops::Bound;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sktrace");
        let (mut b, writer) = recording_to(&path);
        let s = b
            .register_state(&StateDescriptor::new("m", StateKind::Map))
            .unwrap();
        let scope = Scope {
            state: s,
            key_group: key_group_of(b"k", 16),
            key: b"k",
            namespace: b"",
        };
        for user_key in [&b"a"[..], b"a\x01", b"b"] {
            b.put(scope, user_key, b"v").unwrap();
        }
        let range = UserKeyRange {
            lower: Bound::Excluded(b"a"),
            upper: Bound::Excluded(b"b"),
        };
        b.delete_range(scope, range).unwrap();
        drop(b);
        writer.lock().unwrap().take().unwrap().finish().unwrap();
        let mut fresh = MemoryBackend::open(InstanceConfig::single(16).unwrap()).unwrap();
        replay(
            &mut TraceReader::open(&path).unwrap(),
            &mut fresh,
            false,
            |_| {},
        )
        .unwrap();
        assert_eq!(fresh.get(scope, b"a").unwrap(), Some(b"v".to_vec()));
        assert_eq!(fresh.get(scope, b"a\x01").unwrap(), None);
        assert_eq!(fresh.get(scope, b"b").unwrap(), Some(b"v".to_vec()));
    }

    /// A damaged trace is refused when it is opened, before any record reaches a backend
    /// (the checksum used to be checked only after the last record had been replayed).
    #[test]
    fn a_damaged_or_truncated_trace_is_refused_before_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sktrace");
        let (mut b, writer) = recording_to(&path);
        let m: MapState<u32, String> = MapState::register(&mut b, "m").unwrap();
        let ctx = KeyContext::new(&b, &9u64).unwrap();
        for i in 0..100 {
            m.put(&mut b, &ctx, &i, &format!("value {i}")).unwrap();
        }
        drop(b);
        writer.lock().unwrap().take().unwrap().finish().unwrap();
        let good = std::fs::read(&path).unwrap();
        TraceReader::open(&path).unwrap();

        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x10;
        std::fs::write(&path, &flipped).unwrap();
        let err = TraceReader::open(&path).err().unwrap();
        assert_eq!(err.kind(), statekit_backend::ErrorKind::Corruption);
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(err.to_string().contains("t.sktrace"), "{err}");

        std::fs::write(&path, &good[..good.len() - 10]).unwrap();
        let err = TraceReader::open(&path).err().unwrap();
        assert_eq!(err.kind(), statekit_backend::ErrorKind::Corruption, "{err}");
    }

    #[test]
    fn record_then_read_back_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sktrace");
        let (mut b, writer) = recording_to(&path);
        let m: MapState<i64, String> = MapState::register(&mut b, "m").unwrap();
        let l: ListState<u32> = ListState::register(&mut b, "l").unwrap();
        let t = TimerService::register(&mut b, "t").unwrap();
        let ctx = KeyContext::new(&b, &9u64).unwrap();
        m.put(&mut b, &ctx, &5, &"five".into()).unwrap();
        m.put(&mut b, &ctx, &-5, &"minus".into()).unwrap();
        assert_eq!(m.range(&b, &ctx, ..).unwrap().len(), 2);
        assert!(m.get(&b, &ctx, &6).unwrap().is_none());
        m.remove_range(&mut b, &ctx, ..0).unwrap();
        l.add(&mut b, &ctx, &3).unwrap();
        t.register_timer(&mut b, &ctx, -100).unwrap();
        assert_eq!(t.pop_due(&mut b, 0, 10).unwrap().len(), 1);
        t.register_timer(&mut b, &ctx, 7).unwrap();
        t.register_timer(&mut b, &ctx, 8).unwrap();
        assert_eq!(b.clear_timers(t.id()).unwrap(), 2);
        b.clear_state(l.id()).unwrap();
        drop(b);
        let records = writer.lock().unwrap().take().unwrap().finish().unwrap();

        let mut r = TraceReader::open(&path).unwrap();
        assert_eq!(r.header().max_parallelism, 16);
        let mut ops = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            ops.push(rec.op);
        }
        assert_eq!(ops.len() as u64, records);
        assert!(matches!(&ops[0], TraceOp::RegisterState(d) if d.name == "m"));
        assert!(ops.iter().any(|o| matches!(
            o,
            TraceOp::Scan {
                visited: Some(2),
                ..
            }
        )));
        assert!(ops.iter().any(|o| matches!(
            o,
            TraceOp::Get {
                found: Some(None),
                ..
            }
        )));
        assert!(ops.iter().any(|o| matches!(
            o,
            TraceOp::PopTimers {
                popped: 1,
                watermark: 0,
                ..
            }
        )));
        assert!(ops
            .iter()
            .any(|o| matches!(o, TraceOp::RegisterTimer { timer, .. } if timer.timestamp == -100)));
        assert!(ops
            .iter()
            .any(|o| matches!(o, TraceOp::ClearTimers { cleared: 2, .. })));
        assert!(ops
            .iter()
            .any(|o| matches!(o, TraceOp::ClearState { state } if state.index() == 1)));
        assert!(ops
            .iter()
            .any(|o| matches!(o, TraceOp::Write(WriteOp::Put { value, .. }) if value.len() == 5)));

        // Replaying on a fresh backend gives the same reads.
        let mut fresh = MemoryBackend::open(InstanceConfig::single(16).unwrap()).unwrap();
        let mut r = TraceReader::open(&path).unwrap();
        let s = replay(&mut r, &mut fresh, false, |_| {}).unwrap();
        assert_eq!(s.divergent_reads, 0);
        assert_eq!(s.records, records);

        // Damage is detected when the trace is opened (see also
        // a_damaged_or_truncated_trace_is_refused_before_replay).
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let err = TraceReader::open(&path).err().unwrap();
        assert_eq!(err.kind(), statekit_backend::ErrorKind::Corruption);
        std::fs::write(&path, &bytes[..n / 2]).unwrap();
        let err = TraceReader::open(&path).err().unwrap();
        assert!(err.to_string().contains("truncated"), "{err}");
        std::fs::write(&path, b"not a trace at all").unwrap();
        assert!(TraceReader::open(&path).is_err());
    }
}

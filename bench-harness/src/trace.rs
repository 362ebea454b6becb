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
//! filler bytes of that length. Reads carry what they returned (found or not, entries
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
//!
//! A bound is `0` (unbounded), `1 bytes` (included) or `2 bytes` (excluded).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use statekit_backend::backend::{EntryVisitor, StateVisitor};
use statekit_backend::codec::{get_varint, put_varint};
use statekit_backend::{
    key_group_of, BackendStats, CheckpointHandle, Checkpointing, Direction, Error, KeyGroupRange,
    Result, Scope, ScopeBuf, StateBackend, StateDescriptor, StateId, StateKind, StateRead,
    StateWrite, Timer, TimerStore, Ttl, UserKeyRange, Visit, WriteBatch, WriteOp,
};

const MAGIC: &[u8; 7] = b"SKTRACE";
/// The trace format version this build writes and reads.
pub const TRACE_VERSION: u8 = 1;
const FLAG_SIZES_ONLY: u8 = 1;
const SAME_SCOPE: u8 = 0x80;
const TAG_FOOTER: u8 = 0x7F;

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
    /// Max parallelism of the recorded instance.
    pub max_parallelism: u16,
    /// Key groups of the recorded instance.
    pub key_groups: KeyGroupRange,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn kind_code(k: StateKind) -> u64 {
    match k {
        StateKind::Value => 0,
        StateKind::List => 1,
        StateKind::Map => 2,
        StateKind::Reducing => 3,
        StateKind::Aggregating => 4,
        StateKind::Timers => 5,
    }
}

fn kind_from(code: u64) -> Result<StateKind> {
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

/// Writes a trace file.
pub struct TraceWriter {
    path: PathBuf,
    out: BufWriter<File>,
    crc: u32,
    buf: Vec<u8>,
    last_scope: Option<ScopeBuf>,
    last_micros: u64,
    records: u64,
    sizes_only: bool,
    start: Instant,
    counts: BTreeMap<String, u64>,
}

impl TraceWriter {
    /// Creates `path` and writes the header.
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn create(
        path: &Path,
        sizes_only: bool,
        max_parallelism: u16,
        key_groups: KeyGroupRange,
    ) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path.display(), e))?;
        let mut w = TraceWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            crc: 0,
            buf: Vec::with_capacity(256),
            last_scope: None,
            last_micros: 0,
            records: 0,
            sizes_only,
            start: Instant::now(),
            counts: BTreeMap::new(),
        };
        let mut header = MAGIC.to_vec();
        header.push(TRACE_VERSION);
        header.push(if sizes_only { FLAG_SIZES_ONLY } else { 0 });
        header.extend_from_slice(&max_parallelism.to_le_bytes());
        header.extend_from_slice(&key_groups.start.to_le_bytes());
        header.extend_from_slice(&key_groups.end.to_le_bytes());
        w.emit_raw(&header)?;
        Ok(w)
    }

    fn emit_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(self.path.display(), e))
    }

    fn bytes(buf: &mut Vec<u8>, b: &[u8]) {
        put_varint(buf, b.len() as u64);
        buf.extend_from_slice(b);
    }

    fn value(&mut self, v: &[u8]) {
        if self.sizes_only {
            put_varint(&mut self.buf, v.len() as u64);
        } else {
            Self::bytes(&mut self.buf, v);
        }
    }

    fn bound(buf: &mut Vec<u8>, b: Bound<&[u8]>) {
        match b {
            Bound::Unbounded => buf.push(0),
            Bound::Included(k) => {
                buf.push(1);
                Self::bytes(buf, k);
            }
            Bound::Excluded(k) => {
                buf.push(2);
                Self::bytes(buf, k);
            }
        }
    }

    fn scope_fields(buf: &mut Vec<u8>, s: &Scope<'_>) {
        put_varint(buf, s.state.index() as u64);
        put_varint(buf, u64::from(s.key_group));
        Self::bytes(buf, s.key);
        Self::bytes(buf, s.namespace);
    }

    /// Starts a record with a scope (compressed when equal to the previous one).
    fn begin_scoped(&mut self, tag: u8, scope: &Scope<'_>) {
        let same = self
            .last_scope
            .as_ref()
            .is_some_and(|l| l.as_scope() == *scope);
        self.begin(if same { tag | SAME_SCOPE } else { tag });
        if !same {
            Self::scope_fields(&mut self.buf, scope);
            self.last_scope = Some(scope.to_owned());
        }
    }

    fn begin(&mut self, tag: u8) {
        self.buf.clear();
        self.buf.push(tag);
        let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        put_varint(&mut self.buf, now.saturating_sub(self.last_micros));
        self.last_micros = now.max(self.last_micros);
    }

    fn end(&mut self, name: &str) -> Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let out = self.emit_raw(&buf);
        self.buf = buf;
        self.records += 1;
        *self.counts.entry(name.to_string()).or_default() += 1;
        out
    }

    fn write_op_fields(&mut self, op: &WriteOp) {
        match op {
            WriteOp::Put {
                scope,
                user_key,
                value,
            }
            | WriteOp::Merge {
                scope,
                user_key,
                operand: value,
            } => {
                Self::scope_fields(&mut self.buf, &scope.as_scope());
                Self::bytes(&mut self.buf, user_key);
                self.value(value);
            }
            WriteOp::Delete { scope, user_key } => {
                Self::scope_fields(&mut self.buf, &scope.as_scope());
                Self::bytes(&mut self.buf, user_key);
            }
            WriteOp::DeleteRange {
                scope,
                lower,
                upper,
            } => {
                Self::scope_fields(&mut self.buf, &scope.as_scope());
                let range = UserKeyRange::from_half_open(lower.as_deref(), upper.as_deref());
                Self::bound(&mut self.buf, range.lower);
                Self::bound(&mut self.buf, range.upper);
            }
        }
    }

    fn timer(&mut self, tag: u8, name: &str, queue: StateId, t: &Timer) -> Result<()> {
        self.begin(tag);
        put_varint(&mut self.buf, queue.index() as u64);
        put_varint(&mut self.buf, zigzag(t.timestamp));
        put_varint(&mut self.buf, u64::from(t.key_group));
        Self::bytes(&mut self.buf, &t.key);
        Self::bytes(&mut self.buf, &t.namespace);
        self.end(name)
    }

    /// Appends one record (`micros` of `record` is ignored: the writer's clock is used).
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn record(&mut self, op: &TraceOp) -> Result<()> {
        self.record_op(op, None)
    }

    /// Appends a record with an explicit time (importers).
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn record_at(&mut self, op: &TraceOp, micros: u64) -> Result<()> {
        self.record_op(op, Some(micros))
    }

    fn record_op(&mut self, op: &TraceOp, micros: Option<u64>) -> Result<()> {
        let name = op
            .kind()
            .map_or("register_state", crate::metrics::OpKind::name);
        match op {
            TraceOp::RegisterState(d) => {
                self.begin(1);
                Self::bytes(&mut self.buf, d.name.as_bytes());
                put_varint(&mut self.buf, kind_code(d.kind));
                put_varint(
                    &mut self.buf,
                    d.ttl.map_or(0, |t| t.millis.saturating_add(1)),
                );
            }
            TraceOp::Get {
                scope,
                user_key,
                found,
            } => {
                self.begin_scoped(2, &scope.as_scope());
                Self::bytes(&mut self.buf, user_key);
                put_varint(
                    &mut self.buf,
                    match found {
                        None => 0,
                        Some(None) => 1,
                        Some(Some(len)) => len.saturating_add(2),
                    },
                );
            }
            TraceOp::MultiGet { requests, hits } => {
                self.begin(3);
                put_varint(&mut self.buf, requests.len() as u64);
                for (s, k) in requests {
                    Self::scope_fields(&mut self.buf, &s.as_scope());
                    Self::bytes(&mut self.buf, k);
                }
                put_varint(&mut self.buf, hits.map_or(0, |h| h + 1));
            }
            TraceOp::Prefetch { scopes } => {
                self.begin(4);
                put_varint(&mut self.buf, scopes.len() as u64);
                for s in scopes {
                    Self::scope_fields(&mut self.buf, &s.as_scope());
                }
            }
            TraceOp::Scan {
                scope,
                lower,
                upper,
                reverse,
                visited,
            } => {
                self.begin_scoped(5, &scope.as_scope());
                Self::bound(&mut self.buf, lower.as_ref().map(Vec::as_slice));
                Self::bound(&mut self.buf, upper.as_ref().map(Vec::as_slice));
                self.buf.push(u8::from(*reverse));
                put_varint(&mut self.buf, visited.map_or(0, |v| v + 1));
            }
            TraceOp::ScanState {
                state,
                key_groups,
                visited,
            } => {
                self.begin(6);
                put_varint(&mut self.buf, state.index() as u64);
                put_varint(&mut self.buf, u64::from(key_groups.start));
                put_varint(&mut self.buf, u64::from(key_groups.end));
                put_varint(&mut self.buf, *visited);
            }
            TraceOp::Write(w) => {
                let (tag, scope) = match w {
                    WriteOp::Put { scope, .. } => (7, scope),
                    WriteOp::Merge { scope, .. } => (8, scope),
                    WriteOp::Delete { scope, .. } => (9, scope),
                    WriteOp::DeleteRange { scope, .. } => (10, scope),
                };
                self.begin_scoped(tag, &scope.as_scope());
                match w {
                    WriteOp::Put {
                        user_key, value, ..
                    }
                    | WriteOp::Merge {
                        user_key,
                        operand: value,
                        ..
                    } => {
                        Self::bytes(&mut self.buf, user_key);
                        self.value(value);
                    }
                    WriteOp::Delete { user_key, .. } => Self::bytes(&mut self.buf, user_key),
                    WriteOp::DeleteRange { lower, upper, .. } => {
                        let range =
                            UserKeyRange::from_half_open(lower.as_deref(), upper.as_deref());
                        Self::bound(&mut self.buf, range.lower);
                        Self::bound(&mut self.buf, range.upper);
                    }
                }
            }
            TraceOp::WriteBatch(ops) => {
                self.begin(11);
                put_varint(&mut self.buf, ops.len() as u64);
                for op in ops {
                    self.buf.push(match op {
                        WriteOp::Put { .. } => 7,
                        WriteOp::Merge { .. } => 8,
                        WriteOp::Delete { .. } => 9,
                        WriteOp::DeleteRange { .. } => 10,
                    });
                    self.write_op_fields(op);
                }
            }
            TraceOp::RegisterTimer { queue, timer } => return self.timer(12, name, *queue, timer),
            TraceOp::DeleteTimer { queue, timer } => return self.timer(13, name, *queue, timer),
            TraceOp::PopTimers {
                queue,
                watermark,
                limit,
                popped,
            } => {
                self.begin(14);
                put_varint(&mut self.buf, queue.index() as u64);
                put_varint(&mut self.buf, zigzag(*watermark));
                put_varint(&mut self.buf, *limit);
                put_varint(&mut self.buf, *popped);
            }
            TraceOp::NextTimer { queue } => {
                self.begin(15);
                put_varint(&mut self.buf, queue.index() as u64);
            }
            TraceOp::ScanTimers { queue, key_groups } => {
                self.begin(16);
                put_varint(&mut self.buf, queue.index() as u64);
                put_varint(&mut self.buf, u64::from(key_groups.start));
                put_varint(&mut self.buf, u64::from(key_groups.end));
            }
            TraceOp::Checkpoint { id } => {
                self.begin(17);
                put_varint(&mut self.buf, *id);
            }
            TraceOp::Restore { handles } => {
                self.begin(18);
                put_varint(&mut self.buf, *handles);
            }
        }
        if let Some(m) = micros {
            // Importers give absolute times: rewrite the delta written by `begin`.
            let tag = self.buf[0];
            let mut rest = self.buf.split_off(1);
            let mut r = &rest[..];
            let _ = get_varint(&mut r);
            let tail = r.to_vec();
            rest.clear();
            self.buf.truncate(0);
            self.buf.push(tag);
            put_varint(&mut self.buf, m.saturating_sub(self.last_micros));
            self.last_micros = m.max(self.last_micros);
            self.buf.extend_from_slice(&tail);
        }
        self.end(name)
    }

    /// Records per operation name so far.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Writes the footer and flushes; returns the number of records.
    ///
    /// # Errors
    /// I/O errors naming the path (a full disk is `ResourceExhausted`).
    pub fn finish(mut self) -> Result<u64> {
        let mut footer = vec![TAG_FOOTER];
        put_varint(&mut footer, self.records);
        self.emit_raw(&footer)?;
        let crc = self.crc.to_le_bytes();
        self.out
            .write_all(&crc)
            .map_err(|e| Error::io(self.path.display(), e))?;
        self.out
            .flush()
            .map_err(|e| Error::io(self.path.display(), e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(self.path.display(), e))?;
        Ok(self.records)
    }
}

/// Reads a trace file record by record, checking the footer's count and checksum at the end.
pub struct TraceReader {
    path: PathBuf,
    input: BufReader<File>,
    header: TraceHeader,
    crc: u32,
    offset: u64,
    records: u64,
    micros: u64,
    last_scope: Option<ScopeBuf>,
    done: bool,
    filler_seed: u64,
}

impl TraceReader {
    /// Opens a trace and reads its header.
    ///
    /// # Errors
    /// `NotFound`; `Corruption` for a file that is not a trace; `Incompatible` for another
    /// format version.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path.display(), e))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 15];
        input.read_exact(&mut head).map_err(|_| {
            Error::corruption(format!(
                "{}: not a statekit trace (shorter than its header)",
                path.display()
            ))
        })?;
        if &head[..7] != MAGIC {
            return Err(Error::corruption(format!(
                "{}: not a statekit trace (bad magic)",
                path.display()
            )));
        }
        if head[7] != TRACE_VERSION {
            return Err(Error::new(
                statekit_backend::ErrorKind::Incompatible,
                format!(
                    "{}: trace format version {} (this statekit reads {TRACE_VERSION})",
                    path.display(),
                    head[7]
                ),
            ));
        }
        let u16at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
        let key_groups = KeyGroupRange::new(u16at(11), u16at(13))
            .map_err(|e| Error::corruption(format!("{}: header: {e}", path.display())))?;
        let header = TraceHeader {
            version: head[7],
            sizes_only: head[8] & FLAG_SIZES_ONLY != 0,
            max_parallelism: u16at(9),
            key_groups,
        };
        if header.max_parallelism == 0 || key_groups.end >= header.max_parallelism {
            return Err(Error::corruption(format!(
                "{}: header: key groups {key_groups} do not fit max parallelism {}",
                path.display(),
                header.max_parallelism
            )));
        }
        Ok(TraceReader {
            path: path.to_path_buf(),
            input,
            header,
            crc: crc32c::crc32c(&head),
            offset: 15,
            records: 0,
            micros: 0,
            last_scope: None,
            done: false,
            filler_seed: 0,
        })
    }

    /// The header.
    pub fn header(&self) -> TraceHeader {
        self.header
    }

    fn err(&self, what: &str) -> Error {
        Error::corruption(format!(
            "{}: record {} at byte {}: {what}",
            self.path.display(),
            self.records + 1,
            self.offset
        ))
    }

    fn byte(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        self.input
            .read_exact(&mut b)
            .map_err(|_| self.err("truncated trace (no footer)"))?;
        self.crc = crc32c::crc32c_append(self.crc, &b);
        self.offset += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("overlong varint"))
    }

    fn bytes(&mut self) -> Result<Vec<u8>> {
        let len = self.varint()?;
        if len > 1 << 31 {
            return Err(self.err(&format!("implausible length {len}")));
        }
        let mut v = vec![0u8; len as usize];
        self.input
            .read_exact(&mut v)
            .map_err(|_| self.err("truncated trace (no footer)"))?;
        self.crc = crc32c::crc32c_append(self.crc, &v);
        self.offset += len;
        Ok(v)
    }

    fn value(&mut self) -> Result<Vec<u8>> {
        if !self.header.sizes_only {
            return self.bytes();
        }
        let len = self.varint()?;
        if len > 1 << 31 {
            return Err(self.err(&format!("implausible value size {len}")));
        }
        self.filler_seed = self.filler_seed.wrapping_add(1);
        Ok(filler(len as usize, self.filler_seed))
    }

    fn bound(&mut self) -> Result<Bound<Vec<u8>>> {
        Ok(match self.byte()? {
            0 => Bound::Unbounded,
            1 => Bound::Included(self.bytes()?),
            2 => Bound::Excluded(self.bytes()?),
            b => return Err(self.err(&format!("bad bound tag {b}"))),
        })
    }

    fn u16v(&mut self, what: &str) -> Result<u16> {
        let v = self.varint()?;
        u16::try_from(v).map_err(|_| self.err(&format!("{what} {v} out of range")))
    }

    fn state(&mut self) -> Result<StateId> {
        let v = self.varint()?;
        u32::try_from(v)
            .map(StateId::from_index)
            .map_err(|_| self.err("state id out of range"))
    }

    fn scope(&mut self) -> Result<ScopeBuf> {
        Ok(ScopeBuf {
            state: self.state()?,
            key_group: self.u16v("key group")?,
            key: self.bytes()?,
            namespace: self.bytes()?,
        })
    }

    fn scoped(&mut self, same: bool) -> Result<ScopeBuf> {
        if same {
            return self
                .last_scope
                .clone()
                .ok_or_else(|| self.err("'same scope' flag on the first scoped record"));
        }
        let s = self.scope()?;
        self.last_scope = Some(s.clone());
        Ok(s)
    }

    fn key_groups(&mut self) -> Result<KeyGroupRange> {
        let (a, b) = (self.u16v("key group")?, self.u16v("key group")?);
        KeyGroupRange::new(a, b).map_err(|e| self.err(&e.to_string()))
    }

    fn write_op(&mut self, tag: u8, scope: ScopeBuf) -> Result<WriteOp> {
        Ok(match tag {
            7 => WriteOp::Put {
                scope,
                user_key: self.bytes()?,
                value: self.value()?,
            },
            8 => WriteOp::Merge {
                scope,
                user_key: self.bytes()?,
                operand: self.value()?,
            },
            9 => WriteOp::Delete {
                scope,
                user_key: self.bytes()?,
            },
            10 => {
                let lower = match self.bound()? {
                    Bound::Included(k) => Some(k),
                    _ => None,
                };
                let upper = match self.bound()? {
                    Bound::Excluded(k) => Some(k),
                    _ => None,
                };
                WriteOp::DeleteRange {
                    scope,
                    lower,
                    upper,
                }
            }
            t => return Err(self.err(&format!("bad write tag {t}"))),
        })
    }

    fn timer(&mut self) -> Result<(StateId, Timer)> {
        let queue = self.state()?;
        let timestamp = unzigzag(self.varint()?);
        Ok((
            queue,
            Timer {
                timestamp,
                key_group: self.u16v("key group")?,
                key: self.bytes()?,
                namespace: self.bytes()?,
            },
        ))
    }

    /// The next record, `None` after a verified footer.
    ///
    /// # Errors
    /// `Corruption` naming the record and byte offset for a truncated or damaged trace.
    pub fn next_record(&mut self) -> Result<Option<TraceRecord>> {
        if self.done {
            return Ok(None);
        }
        let raw = self.byte()?;
        if raw == TAG_FOOTER {
            let count = self.varint()?;
            let expected = self.crc;
            let mut crc = [0u8; 4];
            self.input
                .read_exact(&mut crc)
                .map_err(|_| self.err("truncated footer"))?;
            if count != self.records {
                return Err(self.err(&format!(
                    "footer says {count} records, read {}",
                    self.records
                )));
            }
            if u32::from_le_bytes(crc) != expected {
                return Err(self.err("checksum mismatch"));
            }
            self.done = true;
            return Ok(None);
        }
        let (tag, same) = (raw & !SAME_SCOPE, raw & SAME_SCOPE != 0);
        self.micros = self.micros.saturating_add(self.varint()?);
        let op = match tag {
            1 => {
                let name = String::from_utf8(self.bytes()?)
                    .map_err(|_| self.err("state name is not UTF-8"))?;
                let kind = kind_from(self.varint()?)?;
                let ttl = self.varint()?;
                TraceOp::RegisterState(StateDescriptor {
                    name,
                    kind,
                    ttl: (ttl > 0).then(|| Ttl { millis: ttl - 1 }),
                })
            }
            2 => {
                let scope = self.scoped(same)?;
                let user_key = self.bytes()?;
                let found = match self.varint()? {
                    0 => None,
                    1 => Some(None),
                    n => Some(Some(n - 2)),
                };
                TraceOp::Get {
                    scope,
                    user_key,
                    found,
                }
            }
            3 => {
                let n = self.varint()?;
                let mut requests = Vec::new();
                for _ in 0..n {
                    requests.push((self.scope()?, self.bytes()?));
                }
                let hits = self.varint()?;
                TraceOp::MultiGet {
                    requests,
                    hits: hits.checked_sub(1),
                }
            }
            4 => {
                let n = self.varint()?;
                let mut scopes = Vec::new();
                for _ in 0..n {
                    scopes.push(self.scope()?);
                }
                TraceOp::Prefetch { scopes }
            }
            5 => {
                let scope = self.scoped(same)?;
                let (lower, upper) = (self.bound()?, self.bound()?);
                let reverse = self.byte()? != 0;
                let visited = self.varint()?.checked_sub(1);
                TraceOp::Scan {
                    scope,
                    lower,
                    upper,
                    reverse,
                    visited,
                }
            }
            6 => TraceOp::ScanState {
                state: self.state()?,
                key_groups: self.key_groups()?,
                visited: self.varint()?,
            },
            7..=10 => {
                let scope = self.scoped(same)?;
                TraceOp::Write(self.write_op(tag, scope)?)
            }
            11 => {
                let n = self.varint()?;
                let mut ops = Vec::new();
                for _ in 0..n {
                    let t = self.byte()?;
                    let scope = self.scope()?;
                    ops.push(self.write_op(t, scope)?);
                }
                TraceOp::WriteBatch(ops)
            }
            12 => {
                let (queue, timer) = self.timer()?;
                TraceOp::RegisterTimer { queue, timer }
            }
            13 => {
                let (queue, timer) = self.timer()?;
                TraceOp::DeleteTimer { queue, timer }
            }
            14 => TraceOp::PopTimers {
                queue: self.state()?,
                watermark: unzigzag(self.varint()?),
                limit: self.varint()?,
                popped: self.varint()?,
            },
            15 => TraceOp::NextTimer {
                queue: self.state()?,
            },
            16 => TraceOp::ScanTimers {
                queue: self.state()?,
                key_groups: self.key_groups()?,
            },
            17 => TraceOp::Checkpoint { id: self.varint()? },
            18 => TraceOp::Restore {
                handles: self.varint()?,
            },
            t => return Err(self.err(&format!("unknown record tag {t}"))),
        };
        self.records += 1;
        Ok(Some(TraceRecord {
            micros: self.micros,
            op,
        }))
    }
}

/// Deterministic, poorly compressible filler bytes for values recorded as sizes.
fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = crate::util::mix64(seed);
    while out.len() < len {
        x = crate::util::mix64(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A backend wrapper that records every operation to a [`TraceWriter`]. The writer is shared
/// so the caller can finish it after the run; the first write error is kept and reported by
/// [`RecordingBackend::take_error`] (and fails the operation), so a full disk ends the run
/// with a clear error instead of a silently short trace.
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
            Bound::Excluded(k) => {
                statekit_backend::backend::prefix_successor(k).or(Some(k.to_vec()))
            }
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
}

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
                let got = backend.get(s.as_scope(), user_key)?.map(|v| v.len() as u64);
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
                let got = backend
                    .multi_get(&reqs)?
                    .iter()
                    .filter(|v| v.is_some())
                    .count() as u64;
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
                // Gadget's seek/next visit one entry; a recorded scan as many as its reader did.
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
                backend.scan(s.as_scope(), range, dir, &mut |_, _| {
                    seen += 1;
                    Ok(if seen >= limit {
                        Visit::Stop
                    } else {
                        Visit::Continue
                    })
                })?;
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
                backend.scan_state(map(&ids, *state)?, *key_groups, &mut |_| {
                    seen += 1;
                    Ok(Visit::Continue)
                })?;
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
                if got.len() as u64 != *popped {
                    summary.divergent_reads += 1;
                }
            }
            TraceOp::NextTimer { queue } => {
                backend.next_timer(map(&ids, *queue)?)?;
            }
            TraceOp::ScanTimers { queue, key_groups } => {
                backend.scan_timers(map(&ids, *queue)?, *key_groups, &mut |_| {
                    Ok(Visit::Continue)
                })?;
            }
            TraceOp::Checkpoint { id } => {
                if checkpoints {
                    backend.checkpoint(*id)?;
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

/// Options of the Gadget importer.
#[derive(Debug, Clone, Copy)]
pub struct GadgetImport {
    /// Size of the values of put and merge (Gadget's trace carries none).
    pub value_size: usize,
    /// Max parallelism of the trace (keys are spread over its key groups).
    pub max_parallelism: u16,
}

/// Converts a Gadget text trace (`time op key user_key ...` per line, op one of put, get,
/// merge, delete, seek, next) into a statekit trace. Everything goes to one map state named
/// `gadget`: the key column is the key, the user-key column the map key. Values are sizes
/// only (`value_size`). `seek k u` becomes a scan from `u` that visits one entry, and `next`
/// one more single-entry scan from its user key: Gadget's iterator steps, without the
/// iterator. Gadget's time column becomes the record time in microseconds.
///
/// # Errors
/// `InvalidArgument` naming the file, line and column of a malformed line; I/O errors.
pub fn import_gadget(
    input: &Path,
    output: &Path,
    options: GadgetImport,
) -> Result<(u64, BTreeMap<String, u64>)> {
    let file = File::open(input).map_err(|e| Error::io(input.display(), e))?;
    let mp = options.max_parallelism.max(1);
    let all = KeyGroupRange::all(u32::from(mp))?;
    let mut w = TraceWriter::create(output, true, mp, all)?;
    let state = StateId::from_index(0);
    w.record_at(
        &TraceOp::RegisterState(StateDescriptor::new("gadget", StateKind::Map)),
        0,
    )?;
    let value = vec![0u8; options.value_size];
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(input.display(), e))?;
        let lineno = n + 1;
        let bad = |col: usize, what: &str| {
            Error::invalid(format!(
                "{}:{lineno}: column {col}: {what}",
                input.display()
            ))
        };
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() {
            continue;
        }
        if cols.len() < 4 {
            return Err(bad(cols.len() + 1, "expected `time op key user_key ...`"));
        }
        let micros: u64 = cols[0]
            .parse()
            .map_err(|_| bad(1, &format!("time '{}' is not an unsigned integer", cols[0])))?;
        let key = cols[2].as_bytes().to_vec();
        let user_key = cols[3].as_bytes().to_vec();
        let scope = ScopeBuf {
            state,
            key_group: key_group_of(&key, mp),
            key,
            namespace: Vec::new(),
        };
        let op = match cols[1] {
            "put" => TraceOp::Write(WriteOp::Put {
                scope,
                user_key,
                value: value.clone(),
            }),
            "merge" => TraceOp::Write(WriteOp::Merge {
                scope,
                user_key,
                operand: value.clone(),
            }),
            "get" => TraceOp::Get {
                scope,
                user_key,
                found: None,
            },
            "delete" => TraceOp::Write(WriteOp::Delete { scope, user_key }),
            "seek" | "next" => TraceOp::Scan {
                scope,
                lower: Bound::Included(user_key),
                upper: Bound::Unbounded,
                reverse: false,
                visited: None,
            },
            other => {
                return Err(bad(
                    2,
                    &format!(
                    "unknown operation '{other}' (expected put, get, merge, delete, seek or next)"
                ),
                ))
            }
        };
        w.record_at(&op, micros)?;
    }
    let counts = w.counts().clone();
    let records = w.finish()?;
    Ok((records, counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::typed::{KeyContext, ListState, MapState, TimerService};
    use statekit_backend::InstanceConfig;

    fn shared(w: TraceWriter) -> Arc<Mutex<Option<TraceWriter>>> {
        Arc::new(Mutex::new(Some(w)))
    }

    #[test]
    fn record_then_read_back_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sktrace");
        let inner = MemoryBackend::open(InstanceConfig::single(16).unwrap()).unwrap();
        let writer =
            shared(TraceWriter::create(&path, false, 16, KeyGroupRange::all(16).unwrap()).unwrap());
        let mut b = RecordingBackend::new(
            Box::new(inner) as Box<dyn StateBackend>,
            Arc::clone(&writer),
        )
        .unwrap();
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
            .any(|o| matches!(o, TraceOp::Write(WriteOp::Put { value, .. }) if value.len() == 5)));

        // Replaying on a fresh backend gives the same reads.
        let mut fresh = MemoryBackend::open(InstanceConfig::single(16).unwrap()).unwrap();
        let mut r = TraceReader::open(&path).unwrap();
        let s = replay(&mut r, &mut fresh, false, |_| {}).unwrap();
        assert_eq!(s.divergent_reads, 0);
        assert_eq!(s.records, records);

        // Damage is detected, with the place.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let mut r = TraceReader::open(&path).unwrap();
        let err = loop {
            match r.next_record() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("damage not detected"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), statekit_backend::ErrorKind::Corruption);
        std::fs::write(&path, &bytes[..n / 2]).unwrap();
        let mut r = TraceReader::open(&path).unwrap();
        let err = std::iter::from_fn(|| r.next_record().transpose())
            .find_map(Result::err)
            .unwrap();
        assert!(err.to_string().contains("truncated"), "{err}");
        std::fs::write(&path, b"not a trace at all").unwrap();
        assert!(TraceReader::open(&path).is_err());
    }

    #[test]
    fn gadget_sample_imports_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("g.log");
        std::fs::write(&input, "1 put 0000000001 0000000000 gadget gadgetFile\n2 get 0000000001 0000000000 gadget gadgetFile\n3 merge 0000000001 0000000000 gadget gadgetFile\n4 seek 0000000001 0000000000 gadget gadgetFile\n5 next 0000000001 0000000000 gadget gadgetFile\n6 delete 0000000001 0000000000 gadget gadgetFile\n").unwrap();
        let out = dir.path().join("g.sktrace");
        let (records, counts) = import_gadget(
            &input,
            &out,
            GadgetImport {
                value_size: 32,
                max_parallelism: 128,
            },
        )
        .unwrap();
        assert_eq!(records, 7);
        assert_eq!(counts["scan"], 2);
        let mut b = MemoryBackend::open(InstanceConfig::single(128).unwrap()).unwrap();
        let s = replay(&mut TraceReader::open(&out).unwrap(), &mut b, false, |_| {}).unwrap();
        assert_eq!(s.recorded_ops["put"], 1);
        assert_eq!(s.records, 7);

        std::fs::write(&input, "1 put k u\n2 scan k u\n").unwrap();
        let err = import_gadget(
            &input,
            &out,
            GadgetImport {
                value_size: 1,
                max_parallelism: 8,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("g.log:2: column 2") && err.contains("scan"),
            "{err}"
        );
    }
}

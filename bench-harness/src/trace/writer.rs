//! Writing a trace: the header, one encoded record per operation, the checksummed footer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use statekit_backend::codec::{get_varint, put_varint};
use statekit_backend::{
    Error, KeyGroupRange, Result, Scope, ScopeBuf, StateId, Timer, UserKeyRange, WriteOp,
};

use super::{
    kind_code, zigzag, TraceOp, FLAG_SIZES_ONLY, FLAG_STREAM_TIME, MAGIC, SAME_SCOPE, TAG_FOOTER,
    TRACE_VERSION,
};

/// The event time of the stream being recorded, as microseconds since the stream's first
/// event: whoever feeds the stream advances it, and a writer created with
/// [`TraceWriter::create_on_stream_clock`] stamps each record with it. A trace's rates are
/// then per second of the stream, however fast the recording ran (a generator at full speed
/// records minutes of event time in seconds).
#[derive(Debug, Clone, Default)]
pub struct StreamClock(Arc<AtomicU64>);

impl StreamClock {
    /// A clock at the stream's start.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock to `micros` since the stream's start; it never goes back, since
    /// events arrive out of order.
    pub fn advance_to(&self, micros: u64) {
        self.0.fetch_max(micros, Ordering::Relaxed);
    }

    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where a writer's record times come from.
enum Clock {
    /// The recording's wall clock, from this instant (a live engine's trace).
    Wall(Instant),
    /// The recorded stream's event time.
    Stream(StreamClock),
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
    clock: Clock,
    counts: BTreeMap<String, u64>,
}

impl TraceWriter {
    /// Creates `path` and writes the header; records are stamped with the wall clock.
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn create(
        path: &Path,
        sizes_only: bool,
        max_parallelism: u16,
        key_groups: KeyGroupRange,
    ) -> Result<Self> {
        let clock = Clock::Wall(Instant::now());
        Self::open(path, sizes_only, max_parallelism, key_groups, clock)
    }

    /// As [`TraceWriter::create`], but records are stamped with `clock`, the recorded
    /// stream's event time, and the header says so.
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn create_on_stream_clock(
        path: &Path,
        sizes_only: bool,
        max_parallelism: u16,
        key_groups: KeyGroupRange,
        clock: StreamClock,
    ) -> Result<Self> {
        let clock = Clock::Stream(clock);
        Self::open(path, sizes_only, max_parallelism, key_groups, clock)
    }

    fn open(
        path: &Path,
        sizes_only: bool,
        max_parallelism: u16,
        key_groups: KeyGroupRange,
        clock: Clock,
    ) -> Result<Self> {
        let mut flags = if sizes_only { FLAG_SIZES_ONLY } else { 0 };
        if matches!(clock, Clock::Stream(_)) {
            flags |= FLAG_STREAM_TIME;
        }
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
            clock,
            counts: BTreeMap::new(),
        };
        let mut header = MAGIC.to_vec();
        header.push(TRACE_VERSION);
        header.push(flags);
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
        let now = match &self.clock {
            Clock::Wall(start) => u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
            Clock::Stream(clock) => clock.now(),
        };
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
            TraceOp::ClearState { state } => {
                self.begin(19);
                put_varint(&mut self.buf, state.index() as u64);
            }
            TraceOp::ClearTimers { queue, cleared } => {
                self.begin(20);
                put_varint(&mut self.buf, queue.index() as u64);
                put_varint(&mut self.buf, *cleared);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

    use super::*;
    use crate::trace::TraceReader;

    #[test]
    fn records_carry_the_stream_clock_and_the_header_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sktrace");
        let clock = StreamClock::new();
        let groups = KeyGroupRange::all(16).unwrap();
        let mut w =
            TraceWriter::create_on_stream_clock(&path, true, 16, groups, clock.clone()).unwrap();
        let checkpoint = |id| TraceOp::Checkpoint { id };
        w.record(&checkpoint(1)).unwrap();
        clock.advance_to(90_000_000);
        // Out of order: the clock keeps the latest time it saw.
        clock.advance_to(85_000_000);
        w.record(&checkpoint(2)).unwrap();
        w.finish().unwrap();

        let mut r = TraceReader::open(&path).unwrap();
        assert!(r.header().stream_time && r.header().sizes_only);
        let micros: Vec<u64> = std::iter::from_fn(|| r.next_record().unwrap())
            .map(|rec| rec.micros)
            .collect();
        assert_eq!(micros, vec![0, 90_000_000]);

        let wall = dir.path().join("w.sktrace");
        TraceWriter::create(&wall, false, 16, groups)
            .unwrap()
            .finish()
            .unwrap();
        assert!(!TraceReader::open(&wall).unwrap().header().stream_time);
    }
}

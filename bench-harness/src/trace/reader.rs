//! Reading a trace record by record: the whole file's checksum is verified when it is opened,
//! before a single record reaches a backend, and the record count at the end.

use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use statekit_backend::{
    Error, KeyGroupRange, Result, ScopeBuf, StateDescriptor, StateId, Timer, Ttl, WriteOp,
};

use super::{
    kind_from, unzigzag, TraceHeader, TraceOp, TraceRecord, FLAG_SIZES_ONLY, FLAG_STREAM_TIME,
    MAGIC, SAME_SCOPE, TAG_FOOTER, TRACE_VERSION,
};

/// The largest value a sizes-only trace makes up on replay (values are not in the file, so
/// the file's size cannot bound them).
const MAX_FILLER_VALUE: u64 = 256 << 20;

/// Checks a trace's checksum (its last 4 bytes, crc32c of everything before them); returns
/// the number of bytes it covers.
fn verify_checksum(path: &Path) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(path.display(), e))?
        .len();
    // Header, footer tag, a one-byte count and the checksum at least.
    if len < 15 + 2 + 4 {
        return Err(Error::corruption(format!(
            "{}: not a statekit trace, or truncated ({len} bytes)",
            path.display()
        )));
    }
    let covered = len - 4;
    let mut reader = BufReader::with_capacity(1 << 20, (&mut file).take(covered));
    let mut crc = 0u32;
    loop {
        let chunk =
            std::io::BufRead::fill_buf(&mut reader).map_err(|e| Error::io(path.display(), e))?;
        if chunk.is_empty() {
            break;
        }
        crc = crc32c::crc32c_append(crc, chunk);
        let n = chunk.len();
        std::io::BufRead::consume(&mut reader, n);
    }
    let mut stored = [0u8; 4];
    file.read_exact(&mut stored)
        .map_err(|e| Error::io(path.display(), e))?;
    if u32::from_le_bytes(stored) != crc {
        return Err(Error::corruption(format!(
            "{}: checksum mismatch: the trace is damaged or truncated (crc32c of its first \
             {covered} bytes is {crc:08x}, its last 4 bytes say {:08x})",
            path.display(),
            u32::from_le_bytes(stored)
        )));
    }
    Ok(covered)
}

/// Reads a trace file record by record, its checksum verified on opening.
pub struct TraceReader {
    path: PathBuf,
    /// Bytes before the checksum: no length inside the file can exceed what is left of it.
    checked_len: u64,
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
    /// Opens a trace, verifies its checksum and reads its header.
    ///
    /// The checksum (the file's last 4 bytes, over everything before them) is checked in one
    /// streaming pass first: a damaged trace is refused before any of its records is
    /// replayed, not after a backend has applied them.
    ///
    /// # Errors
    /// `NotFound`; `Corruption` for a file that is not a trace or is damaged or truncated;
    /// `Incompatible` for another format version.
    pub fn open(path: &Path) -> Result<Self> {
        let checked_len = verify_checksum(path)?;
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
            stream_time: head[8] & FLAG_STREAM_TIME != 0,
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
            checked_len,
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
        let left = self.checked_len.saturating_sub(self.offset);
        if len > left {
            return Err(self.err(&format!(
                "a length of {len} bytes, but only {left} are left in the file"
            )));
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
        if len > MAX_FILLER_VALUE {
            return Err(self.err(&format!(
                "a value of {len} bytes; a sizes-only trace replays values up to \
                 {MAX_FILLER_VALUE} bytes"
            )));
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
            19 => TraceOp::ClearState {
                state: self.state()?,
            },
            20 => TraceOp::ClearTimers {
                queue: self.state()?,
                cleared: self.varint()?,
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

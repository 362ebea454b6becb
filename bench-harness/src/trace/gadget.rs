//! Importing Gadget's text traces (the state-access traces of the EuroSys'22 streaming
//! state-store benchmark harness) as statekit traces.
//!
//! Gadget writes one operation a line, fields separated by single spaces:
//! `counter op key value gadget gadgetFile`. The counter numbers the lines (it is not a time);
//! `op` is put, get, merge, delete, seek or next; keys are zero-padded digits to which an
//! operator may append an event time; the value field is a placeholder. At the end of a file
//! Gadget writes up to two lines with an empty key, which carry no operation.
//!
//! The mapping onto statekit's keyed model: everything goes to one map state named `gadget`.
//! The first [`GadgetImport::key_width`] bytes of a Gadget key are the keyed-state key (hashed
//! to a key group, as an engine would), the rest (an appended event time, or nothing) is the
//! map's user key. A `seek` followed by `next`s on the same key is one iteration: one bounded
//! scan from the key's user part that visits 1 + n entries, as Gadget's iterator did.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::Bound;
use std::path::Path;

use statekit_backend::{
    key_group_of, Error, KeyGroupRange, Result, ScopeBuf, StateDescriptor, StateId, StateKind,
    WriteOp,
};

use super::{TraceOp, TraceWriter};

/// Options of the Gadget importer.
#[derive(Debug, Clone, Copy)]
pub struct GadgetImport {
    /// Size of the values of put and merge (Gadget's trace carries none).
    pub value_size: usize,
    /// Max parallelism of the trace (keys are spread over its key groups).
    pub max_parallelism: u16,
    /// How many leading bytes of a Gadget key are the keyed-state key; the rest is the user
    /// key inside it. Gadget pads its ids to 10 digits, so 10 separates the id from an
    /// appended event time.
    pub key_width: usize,
}

impl Default for GadgetImport {
    fn default() -> Self {
        GadgetImport {
            value_size: 64,
            max_parallelism: 128,
            key_width: 10,
        }
    }
}

/// What an import read and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GadgetSummary {
    /// Lines read, blank ones included.
    pub lines: u64,
    /// Records written to the statekit trace (the state's registration included).
    pub records: u64,
    /// Records per operation kind (`get`, `put`, `merge`, `delete`, `scan`).
    pub ops: BTreeMap<String, u64>,
    /// Lines with an empty key (Gadget's end-of-file lines), skipped.
    pub skipped_empty_keys: u64,
    /// Gadget iterations (a `seek` and its `next`s): each one scan.
    pub scans: u64,
    /// Entries those scans visit (1 per `seek` plus 1 per `next`).
    pub scan_entries: u64,
    /// `next` lines not preceded by a `seek` on the same key; each starts a scan of its own
    /// (a trace cut in the middle of an iteration).
    pub nexts_without_seek: u64,
}

impl fmt::Display for GadgetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: Vec<String> = self.ops.iter().map(|(k, n)| format!("{k} {n}")).collect();
        write!(
            f,
            "{} lines -> {} records ({}); {} iterations as scans of {} entries in all; \
             skipped {} lines with an empty key",
            self.lines,
            self.records,
            ops.join(", "),
            self.scans,
            self.scan_entries,
            self.skipped_empty_keys
        )?;
        if self.nexts_without_seek > 0 {
            write!(f, "; {} `next`s without a `seek`", self.nexts_without_seek)?;
        }
        Ok(())
    }
}

/// An iteration being collected: a `seek` and the `next`s after it on the same key.
struct Iteration {
    gadget_key: Vec<u8>,
    scope: ScopeBuf,
    from: Vec<u8>,
    entries: u64,
}

/// Converts a Gadget text trace into a statekit trace (values as sizes only; every record
/// at time 0, since Gadget's first field counts lines, not time).
///
/// # Errors
/// `InvalidArgument` naming the file, line and column of a malformed line (too few fields,
/// a counter that is not a number, an unknown operation); I/O errors naming the file.
pub fn import_gadget(input: &Path, output: &Path, options: GadgetImport) -> Result<GadgetSummary> {
    let file = File::open(input).map_err(|e| Error::io(input.display(), e))?;
    let mp = options.max_parallelism.max(1);
    let mut w = TraceWriter::create(output, true, mp, KeyGroupRange::all(u32::from(mp))?)?;
    let state = StateId::from_index(0);
    w.record_at(
        &TraceOp::RegisterState(StateDescriptor::new("gadget", StateKind::Map)),
        0,
    )?;
    let mut summary = GadgetSummary::default();
    let mut pending: Option<Iteration> = None;
    let value = vec![0u8; options.value_size];

    let flush = |pending: &mut Option<Iteration>,
                 w: &mut TraceWriter,
                 summary: &mut GadgetSummary|
     -> Result<()> {
        if let Some(it) = pending.take() {
            summary.scans += 1;
            summary.scan_entries += it.entries;
            w.record_at(
                &TraceOp::Scan {
                    scope: it.scope,
                    lower: Bound::Included(it.from),
                    upper: Bound::Unbounded,
                    reverse: false,
                    visited: Some(it.entries),
                },
                0,
            )?;
        }
        Ok(())
    };

    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(input.display(), e))?;
        summary.lines += 1;
        let lineno = n + 1;
        let bad = |col: usize, what: &str| {
            Error::invalid(format!(
                "{}:{lineno}: column {col}: {what}",
                input.display()
            ))
        };
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.trim().is_empty() {
            continue;
        }
        // Single spaces separate the fields: an empty key shows as two spaces in a row.
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 4 {
            return Err(bad(
                fields.len() + 1,
                "expected `counter op key value ...` (Gadget's format, single spaces)",
            ));
        }
        fields[0].parse::<u64>().map_err(|_| {
            bad(
                1,
                &format!("counter '{}' is not an unsigned integer", fields[0]),
            )
        })?;
        let op = fields[1];
        if !matches!(op, "put" | "get" | "merge" | "delete" | "seek" | "next") {
            return Err(bad(
                2,
                &format!(
                    "unknown operation '{op}' (expected put, get, merge, delete, seek or next)"
                ),
            ));
        }
        let gadget_key = fields[2].as_bytes();
        if gadget_key.is_empty() {
            summary.skipped_empty_keys += 1;
            continue;
        }
        let split = gadget_key.len().min(options.key_width);
        let (key, user_key) = gadget_key.split_at(split);
        let scope = ScopeBuf {
            state,
            key_group: key_group_of(key, mp),
            key: key.to_vec(),
            namespace: Vec::new(),
        };
        if op == "next" {
            if let Some(it) = pending.as_mut().filter(|it| it.gadget_key == gadget_key) {
                it.entries += 1;
                continue;
            }
            summary.nexts_without_seek += 1;
        }
        flush(&mut pending, &mut w, &mut summary)?;
        let record = match op {
            "seek" | "next" => {
                pending = Some(Iteration {
                    gadget_key: gadget_key.to_vec(),
                    scope,
                    from: user_key.to_vec(),
                    entries: 1,
                });
                continue;
            }
            "put" => TraceOp::Write(WriteOp::Put {
                scope,
                user_key: user_key.to_vec(),
                value: value.clone(),
            }),
            "merge" => TraceOp::Write(WriteOp::Merge {
                scope,
                user_key: user_key.to_vec(),
                operand: value.clone(),
            }),
            "delete" => TraceOp::Write(WriteOp::Delete {
                scope,
                user_key: user_key.to_vec(),
            }),
            _ => TraceOp::Get {
                scope,
                user_key: user_key.to_vec(),
                found: None,
            },
        };
        w.record_at(&record, 0)?;
    }
    flush(&mut pending, &mut w, &mut summary)?;
    summary.ops = w.counts().clone();
    summary.records = w.finish()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{replay, TraceReader};
    use statekit_backend::memory::MemoryBackend;
    use statekit_backend::InstanceConfig;

    fn import(text: &str, options: GadgetImport) -> (Result<GadgetSummary>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("g.log");
        std::fs::write(&input, text).unwrap();
        (
            import_gadget(&input, &dir.path().join("g.sktrace"), options),
            dir,
        )
    }

    fn ops(dir: &tempfile::TempDir) -> Vec<TraceOp> {
        let mut r = TraceReader::open(&dir.path().join("g.sktrace")).unwrap();
        std::iter::from_fn(|| r.next_record().transpose())
            .map(|r| r.unwrap().op)
            .collect()
    }

    #[test]
    fn seek_and_nexts_on_one_key_are_one_scan() {
        let (summary, dir) = import(
            "1 put 00000000011000 0000000000 gadget gadgetFile\n\
             2 put 00000000012000 0000000000 gadget gadgetFile\n\
             3 seek 00000000011000 0000000000 gadget gadgetFile\n\
             4 next 00000000011000 0000000000 gadget gadgetFile\n\
             5 next 00000000011000 0000000000 gadget gadgetFile\n\
             6 get 0000000001 0000000000 gadget gadgetFile\n\
             7 next 0000000002 0000000000 gadget gadgetFile\n\
             8 seek 0000000001 0000000000 gadget gadgetFile\n\
             9 seek 0000000001 0000000000 gadget gadgetFile\n",
            GadgetImport::default(),
        );
        let summary = summary.unwrap();
        assert_eq!(summary.scans, 4, "{summary}");
        assert_eq!(summary.scan_entries, 3 + 1 + 1 + 1);
        assert_eq!(summary.nexts_without_seek, 1);
        assert_eq!(summary.ops["scan"], 4);
        assert_eq!(summary.records, 1 + 2 + 1 + 4);
        type ScanSeen = (Vec<u8>, Bound<Vec<u8>>, Option<u64>);
        let scans: Vec<ScanSeen> = ops(&dir)
            .into_iter()
            .filter_map(|op| match op {
                TraceOp::Scan {
                    scope,
                    lower,
                    visited,
                    ..
                } => Some((scope.key, lower, visited)),
                _ => None,
            })
            .collect();
        assert_eq!(
            scans[0],
            (
                b"0000000001".to_vec(),
                Bound::Included(b"1000".to_vec()),
                Some(3)
            )
        );
        assert_eq!(
            scans[1],
            (b"0000000002".to_vec(), Bound::Included(Vec::new()), Some(1))
        );

        let mut b = MemoryBackend::open(InstanceConfig::single(128).unwrap()).unwrap();
        let mut r = TraceReader::open(&dir.path().join("g.sktrace")).unwrap();
        let s = replay(&mut r, &mut b, false, |_| {}).unwrap();
        assert_eq!(s.records, summary.records);
        assert_eq!(s.recorded_ops["put"], 2);
        // The 3-entry iteration over 2 stored entries, and the lone `next` on a key never
        // written, find fewer entries than Gadget's iterator did.
        assert_eq!(s.divergent_reads, 2);
    }

    #[test]
    fn empty_keys_are_skipped_and_counted() {
        let (summary, _dir) = import(
            "1 put 0000000001 0000000000 gadget gadgetFile\n\
             2 put  0000000000 gadget gadgetFile\n\
             3 get  0000000000 gadget gadgetFile\n\n",
            GadgetImport::default(),
        );
        let summary = summary.unwrap();
        assert_eq!(summary.skipped_empty_keys, 2);
        assert_eq!(summary.lines, 4);
        assert_eq!(summary.ops["put"], 1);
        assert!(summary.to_string().contains("skipped 2 lines"), "{summary}");
    }

    #[test]
    fn the_counter_is_not_a_time() {
        let (summary, dir) = import(
            "7 put 0000000001 x gadget gadgetFile\n900000 get 0000000001 x gadget gadgetFile\n",
            GadgetImport::default(),
        );
        summary.unwrap();
        let mut r = TraceReader::open(&dir.path().join("g.sktrace")).unwrap();
        while let Some(rec) = r.next_record().unwrap() {
            assert_eq!(rec.micros, 0);
        }
    }

    #[test]
    fn malformed_lines_name_line_and_column() {
        let cases = [
            (
                "1 put 0000000001 v\n2 scan 0000000001 v\n",
                "g.log:2: column 2",
            ),
            (
                "1 put 0000000001 v\nx get 0000000001 v\n",
                "g.log:2: column 1",
            ),
            ("1 put 0000000001 v\n2 get\n", "g.log:2: column 3"),
            // Tabs are not Gadget's separator: the line has too few fields.
            ("1\tput\t0000000001\tv\n", "g.log:1: column 2"),
        ];
        for (text, want) in cases {
            let (result, _dir) = import(text, GadgetImport::default());
            let err = result.unwrap_err();
            assert_eq!(err.kind(), statekit_backend::ErrorKind::InvalidArgument);
            assert!(err.to_string().contains(want), "{text:?}: {err}");
        }
    }
}

//! The events of a CSV event file. Fields are split with SIMD (the `simd-csv` crate: 0.75 s
//! against the `csv` crate's 1.38 s for the 1.9 GB, 3.7M-event ad-click file), and the header
//! is mapped to [`Record`]'s columns once, so a record costs no name matching and no
//! allocation before the event takes what it keeps (a quoted payload is unescaped into a
//! buffer kept from record to record).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use statekit_backend::{Error, Result};

use super::{Event, Record, RECORD_COLUMNS};

/// The reader's buffer, bytes: one `read` per this much of the file.
const BUFFER: usize = 64 << 10;

/// The payload's index in [`RECORD_COLUMNS`].
const PAYLOAD: usize = 6;

/// Columns a record cannot do without; the others may be absent (empty in every record).
const REQUIRED: [&str; 3] = ["kind", "ts", "key"];

/// Reads the events of one CSV file.
pub(super) struct CsvEvents {
    path: PathBuf,
    reader: simd_csv::ZeroCopyReader<File>,
    /// For each of [`RECORD_COLUMNS`], the index of its field in the file's records.
    columns: [Option<usize>; RECORD_COLUMNS.len()],
    /// The last payload that needed unescaping.
    payload: Vec<u8>,
    /// After a malformed record the reader stands still on it: the events end there.
    failed: bool,
}

impl CsvEvents {
    /// Reads `file` (opened from `path`) and maps its header to [`Record`]'s columns.
    ///
    /// # Errors
    /// `InvalidArgument` naming the file and the column for a header with an unknown,
    /// repeated or missing column; an I/O error reading it.
    pub(super) fn new(path: &Path, file: File) -> Result<Self> {
        let mut reader = simd_csv::ZeroCopyReaderBuilder::with_capacity(BUFFER)
            .has_headers(true)
            .from_reader(file);
        let headers = reader
            .byte_headers()
            .map_err(|e| read_error(path, None, e))?;
        let mut columns = [None; RECORD_COLUMNS.len()];
        for (index, name) in headers.iter().enumerate() {
            let column = RECORD_COLUMNS
                .iter()
                .position(|c| c.as_bytes() == name)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{}:1: unknown column '{}' (the columns are {})",
                        path.display(),
                        String::from_utf8_lossy(name),
                        RECORD_COLUMNS.join(", ")
                    ))
                })?;
            if columns[column].replace(index).is_some() {
                return Err(Error::invalid(format!(
                    "{}:1: column '{}' appears twice",
                    path.display(),
                    RECORD_COLUMNS[column]
                )));
            }
        }
        for name in REQUIRED {
            let column = RECORD_COLUMNS.iter().position(|c| *c == name);
            if column.is_none_or(|c| columns[c].is_none()) {
                return Err(Error::invalid(format!(
                    "{}:1: the header has no column '{name}' (it needs {})",
                    path.display(),
                    REQUIRED.join(", ")
                )));
            }
        }
        Ok(CsvEvents {
            path: path.to_path_buf(),
            reader,
            columns,
            payload: Vec::new(),
            failed: false,
        })
    }

    /// The next event, `None` at the end of the file or after a record that could not be
    /// split into fields.
    pub(super) fn next_event(&mut self) -> Option<Result<Event>> {
        if self.failed {
            return None;
        }
        let start = self.reader.position();
        let record = match self.reader.read_byte_record() {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(e) => {
                self.failed = true;
                return Some(Err(read_error(&self.path, Some(start), e)));
            }
        };
        // In RECORD_COLUMNS order. The payload, quoted with escapes in files the writer wrote,
        // is unescaped into a buffer kept from record to record.
        let columns = &self.columns;
        let mut fields: [Option<Cow<'_, [u8]>>; RECORD_COLUMNS.len()] =
            std::array::from_fn(|c| match c {
                PAYLOAD => None,
                _ => columns[c].and_then(|i| record.unescape(i)),
            });
        fields[PAYLOAD] = columns[PAYLOAD]
            .and_then(|i| record.get(i))
            .map(|raw| match raw {
                [b'"', quoted @ .., b'"'] => {
                    Cow::Borrowed(unescape_into(quoted, &mut self.payload))
                }
                _ => Cow::Borrowed(raw),
            });
        let event = to_record(&fields).and_then(|r| {
            r.to_event()
                .map_err(|e| e.context(format!("record {:?}", r.kind)))
        });
        Some(event.map_err(|e| {
            e.context(format!(
                "{}:{}",
                self.path.display(),
                line_at(&self.path, start)
            ))
        }))
    }
}

/// A quoted `field` (its quotes removed) with each doubled quote made single: the field itself when it
/// has none, else `buffer` holding the result. Not `simd_csv`'s `unescape`, which allocates
/// per field: ad-click's payloads are all quoted JSON, and an allocation per display that the
/// reader frees at once made the operator's thread, not the reader's, fault in the state's
/// fresh memory.
fn unescape_into<'a>(field: &'a [u8], buffer: &'a mut Vec<u8>) -> &'a [u8] {
    let Some(first) = memchr::memchr(b'"', field) else {
        return field;
    };
    buffer.clear();
    let mut rest = field;
    let mut quote = first;
    loop {
        // Keep the quote, skip the one doubling it.
        buffer.extend_from_slice(&rest[..=quote]);
        rest = &rest[quote + 1..];
        if rest.first() == Some(&b'"') {
            rest = &rest[1..];
        }
        match memchr::memchr(b'"', rest) {
            Some(next) => quote = next,
            None => break,
        }
    }
    buffer.extend_from_slice(rest);
    buffer
}

/// The [`Record`] of one CSV record's fields, borrowed from them.
fn to_record<'a>(fields: &'a [Option<Cow<'_, [u8]>>]) -> Result<Record<&'a str>> {
    let text = |column: usize| -> Result<Option<&'a str>> {
        fields[column]
            .as_deref()
            .filter(|f| !f.is_empty())
            .map(|f| {
                simdutf8::basic::from_utf8(f).map_err(|_| {
                    Error::invalid(format!(
                        "column {}: not valid UTF-8",
                        RECORD_COLUMNS[column]
                    ))
                })
            })
            .transpose()
    };
    // `what` names the type in the error: "an integer", "an unsigned integer".
    fn number<T: std::str::FromStr>(
        column: usize,
        what: &str,
        text: Option<&str>,
    ) -> Result<Option<T>> {
        text.map(|t| {
            t.parse().map_err(|_| {
                Error::invalid(format!(
                    "column {}: '{t}' is not {what}",
                    RECORD_COLUMNS[column]
                ))
            })
        })
        .transpose()
    }
    const UNSIGNED: &str = "an unsigned integer";
    let kind = text(0)?.ok_or_else(|| Error::invalid("column kind is empty"))?;
    let ts =
        number(1, "an integer", text(1)?)?.ok_or_else(|| Error::invalid("column ts is empty"))?;
    Ok(Record {
        kind,
        ts,
        key: text(2)?.unwrap_or(""),
        id: number(3, UNSIGNED, text(3)?)?,
        r#ref: number(4, UNSIGNED, text(4)?)?,
        dim: number(5, UNSIGNED, text(5)?)?,
        payload: text(6)?,
    })
}

/// An error of the CSV reader, at byte `start` of the file if known.
fn read_error(path: &Path, start: Option<u64>, e: simd_csv::Error) -> Error {
    let message = e.to_string();
    match e.into_kind() {
        simd_csv::ErrorKind::Io(io) => Error::io(path.display(), io),
        _ => {
            let at = start.map_or(String::new(), |s| format!(":{}", line_at(path, s)));
            Error::invalid(format!("{}{at}: {message}", path.display()))
        }
    }
}

/// The line of the record starting at byte `start` of `path` (1 for the first line): counted
/// only for an error, by reading the file again, so that reading records counts no lines.
/// The reader's position may lie before blank lines, which the record's line skips.
fn line_at(path: &Path, start: u64) -> String {
    let count = || -> std::io::Result<u64> {
        let mut file = BufReader::new(File::open(path)?);
        let (mut line, mut at) = (1u64, 0u64);
        loop {
            let buf = file.fill_buf()?;
            if buf.is_empty() {
                return Ok(line);
            }
            let read = buf.len();
            for &b in buf {
                // Before `start` every newline counts; from it on, only leading blank lines.
                if at >= start && b != b'\n' && b != b'\r' {
                    return Ok(line);
                }
                line += u64::from(b == b'\n');
                at += 1;
            }
            file.consume(read);
        }
    };
    count().map_or_else(|_| format!("byte {start}"), |line| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<Event>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        std::fs::write(&path, text).unwrap();
        let file = File::open(&path).unwrap();
        let mut events = match CsvEvents::new(&path, file) {
            Ok(events) => events,
            Err(e) => return vec![Err(e)],
        };
        std::iter::from_fn(|| events.next_event()).collect()
    }

    fn error(text: &str, at: usize) -> String {
        read(text)[at].as_ref().unwrap_err().to_string()
    }

    const HEADER: &str = "kind,ts,key,id,ref,dim,payload\n";

    #[test]
    fn doubled_quotes_become_single() {
        let mut buffer = Vec::new();
        for (field, unescaped) in [
            (&b"plain"[..], &b"plain"[..]),
            (b"{\"\"a\"\":1}", b"{\"a\":1}"),
            (b"\"\"", b"\""),
            (b"x\"\"\"\"y", b"x\"\"y"),
            (b"", b""),
        ] {
            assert_eq!(unescape_into(field, &mut buffer), unescaped);
        }
    }

    #[test]
    fn errors_name_the_line_after_blank_and_multi_line_records() {
        let text = format!("{HEADER}display,1,7,1,3,,\"two\nlines\"\n\n\nclick,x,7,2,1,,\n");
        let events = read(&text);
        assert!(events[0].is_ok(), "{:?}", events[0]);
        let e = error(&text, 1);
        assert!(
            e.contains("events.csv:6") && e.contains("column ts: 'x'"),
            "{e}"
        );
    }

    #[test]
    fn a_record_with_too_few_fields_is_an_error_at_its_line() {
        let events = read(&format!(
            "{HEADER}click,1,7,2,1,,\nclick,2,7\nclick,3,7,2,1,,\n"
        ));
        // The reader stands still on a record it cannot split: the events end at it.
        assert_eq!(events.len(), 2);
        let e = events[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("events.csv:3"), "{e}");
    }

    #[test]
    fn headers_must_name_known_columns_once_and_the_required_ones() {
        for (header, expected) in [
            ("kind,ts,key,colour\n", "unknown column 'colour'"),
            ("kind,ts,key,ts\n", "column 'ts' appears twice"),
            ("kind,key,id\n", "no column 'ts'"),
        ] {
            let e = error(header, 0);
            assert!(e.contains("events.csv:1") && e.contains(expected), "{e}");
        }
    }

    #[test]
    fn absent_optional_columns_and_empty_fields_are_none() {
        let events = read("key,kind,ts\n9,exposure_click,5\n");
        assert_eq!(
            events[0].as_ref().unwrap(),
            &Event::ExposureClick { request: 9, ts: 5 }
        );
        let e = error("kind,ts,key,id\ndemand,5,9,\n", 0);
        assert!(e.contains("column id is empty"), "{e}");
    }

    #[test]
    fn negative_ids_and_invalid_utf8_are_errors() {
        let e = error(&format!("{HEADER}click,1,7,-2,1,,\n"), 0);
        assert!(
            e.contains("column id: '-2' is not an unsigned integer"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        let mut bytes = format!("{HEADER}display,1,7,1,3,,").into_bytes();
        bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
        std::fs::write(&path, bytes).unwrap();
        let mut events = CsvEvents::new(&path, File::open(&path).unwrap()).unwrap();
        let e = events.next_event().unwrap().unwrap_err().to_string();
        assert!(e.contains("column payload: not valid UTF-8"), "{e}");
    }
}

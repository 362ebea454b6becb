//! The input events of the reference workloads, and their file formats.
//!
//! Operators take events from a generator or from a file, so a user can run them on a dump
//! of their own topic. A file holds one event per line, either CSV with a header line or
//! JSON lines, with the same seven columns:
//!
//! | column    | type   | meaning |
//! |-----------|--------|---------|
//! | `kind`    | string | the event kind, see below |
//! | `ts`      | i64    | event time, milliseconds |
//! | `key`     | string | the partitioning key (a u64 in decimal, or a device id for `visit`) |
//! | `id`      | u64    | the event's own id, where the kind has one |
//! | `ref`     | u64    | an id the event refers to |
//! | `dim`     | u32    | a dimension value |
//! | `payload` | string | the event's body |
//!
//! Per kind (columns not listed are left empty):
//!
//! | kind             | workload               | key        | id         | ref        | dim       | payload |
//! |------------------|------------------------|------------|------------|------------|-----------|---------|
//! | `display`        | ad-click-interval-join | user id    | display id | ad id      |           | ad body |
//! | `click`          | ad-click-interval-join | user id    | click id   | display id |           |         |
//! | `exposure`       | feature-concat         | request id | item id    |            |           | body    |
//! | `exposure_click` | feature-concat         | request id |            |            |           |         |
//! | `feature`        | feature-concat         | request id |            |            |           | features|
//! | `demand`         | sliding-window-demand  | hexagon id | rider id   |            |           |         |
//! | `visit`          | daily-uv               | device id  |            |            | dimension |         |
//!
//! Lines are processed in file order: that is the arrival order, so a dump keeps the
//! out-of-orderness of the real topic.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use statekit_backend::{Error, Result};

mod csv_events;
use csv_events::CsvEvents;

/// An ad display (left side of the interval join).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Display {
    /// Unique display id.
    pub id: u64,
    /// The user it was shown to (the join key).
    pub user: u64,
    /// Event time, ms.
    pub ts: i64,
    /// The ad.
    pub ad: u64,
    /// The display's body.
    pub payload: String,
}

/// An ad click (right side of the interval join).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    /// Unique click id.
    pub id: u64,
    /// The user who clicked (the join key).
    pub user: u64,
    /// Event time, ms.
    pub ts: i64,
    /// The display the click came from (the join does not rely on it).
    pub display: u64,
}

/// An event of one of the reference workloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Ad display.
    Display(Display),
    /// Ad click.
    Click(Click),
    /// A recommended item was shown for a request.
    Exposure {
        /// Request id (the key).
        request: u64,
        /// Event time, ms.
        ts: i64,
        /// The item shown.
        item: u64,
        /// Body.
        payload: String,
    },
    /// A click on an exposure.
    ExposureClick {
        /// Request id (the key).
        request: u64,
        /// Event time, ms.
        ts: i64,
    },
    /// The feature snapshot of a request.
    Feature {
        /// Request id (the key).
        request: u64,
        /// Event time, ms.
        ts: i64,
        /// Features.
        payload: String,
    },
    /// A rider asked for a ride in a hexagon.
    Demand {
        /// Hexagon id (the key).
        hexagon: u64,
        /// Rider id.
        rider: u64,
        /// Event time, ms.
        ts: i64,
    },
    /// A device was seen under a dimension value.
    Visit {
        /// Device id (36-character UUID text).
        device: String,
        /// Dimension value.
        dimension: u32,
        /// Event time, ms.
        ts: i64,
    },
}

impl Event {
    /// Event time, ms.
    pub fn ts(&self) -> i64 {
        match self {
            Event::Display(d) => d.ts,
            Event::Click(c) => c.ts,
            Event::Exposure { ts, .. }
            | Event::ExposureClick { ts, .. }
            | Event::Feature { ts, .. }
            | Event::Demand { ts, .. }
            | Event::Visit { ts, .. } => *ts,
        }
    }

    /// The `kind` column value.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Display(_) => "display",
            Event::Click(_) => "click",
            Event::Exposure { .. } => "exposure",
            Event::ExposureClick { .. } => "exposure_click",
            Event::Feature { .. } => "feature",
            Event::Demand { .. } => "demand",
            Event::Visit { .. } => "visit",
        }
    }

    /// The flat record of this event.
    pub fn to_record(&self) -> Record {
        let mut r = Record {
            kind: self.kind().to_string(),
            ts: self.ts(),
            ..Record::default()
        };
        match self {
            Event::Display(d) => {
                r.key = d.user.to_string();
                r.id = Some(d.id);
                r.r#ref = Some(d.ad);
                r.payload = Some(d.payload.clone());
            }
            Event::Click(c) => {
                r.key = c.user.to_string();
                r.id = Some(c.id);
                r.r#ref = Some(c.display);
            }
            Event::Exposure {
                request,
                item,
                payload,
                ..
            } => {
                r.key = request.to_string();
                r.id = Some(*item);
                r.payload = Some(payload.clone());
            }
            Event::ExposureClick { request, .. } => r.key = request.to_string(),
            Event::Feature {
                request, payload, ..
            } => {
                r.key = request.to_string();
                r.payload = Some(payload.clone());
            }
            Event::Demand { hexagon, rider, .. } => {
                r.key = hexagon.to_string();
                r.id = Some(*rider);
            }
            Event::Visit {
                device, dimension, ..
            } => {
                r.key = device.clone();
                r.dim = Some(*dimension);
            }
        }
        r
    }
}

/// One line of an event file (see the module docs for the column mapping). Its text fields
/// are `String`s, or `&str`s borrowed from the line being read (`Record<&str>`), so reading
/// a file allocates only what the events keep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record<S = String> {
    /// Event kind.
    pub kind: S,
    /// Event time, ms.
    pub ts: i64,
    /// Partitioning key.
    pub key: S,
    /// Own id.
    #[serde(default)]
    pub id: Option<u64>,
    /// Referenced id.
    #[serde(default, rename = "ref")]
    pub r#ref: Option<u64>,
    /// Dimension.
    #[serde(default)]
    pub dim: Option<u32>,
    /// Body.
    #[serde(default)]
    pub payload: Option<S>,
}

impl<S: AsRef<str>> Record<S> {
    fn key_u64(&self) -> Result<u64> {
        self.key.as_ref().trim().parse().map_err(|_| {
            Error::invalid(format!(
                "column key: '{}' is not an unsigned integer (kind {} needs a numeric key)",
                self.key.as_ref(),
                self.kind.as_ref()
            ))
        })
    }

    fn need<T: Copy>(&self, value: Option<T>, column: &str) -> Result<T> {
        value.ok_or_else(|| {
            Error::invalid(format!(
                "column {column} is empty but kind {} needs it",
                self.kind.as_ref()
            ))
        })
    }

    /// The event this record describes.
    ///
    /// # Errors
    /// `InvalidArgument` naming the column that is missing or malformed.
    pub fn to_event(&self) -> Result<Event> {
        let ts = self.ts;
        let payload = || {
            self.payload
                .as_ref()
                .map_or_else(String::new, |p| p.as_ref().to_string())
        };
        Ok(match self.kind.as_ref() {
            "display" => Event::Display(Display {
                id: self.need(self.id, "id")?,
                user: self.key_u64()?,
                ts,
                ad: self.r#ref.unwrap_or(0),
                payload: payload(),
            }),
            "click" => Event::Click(Click {
                id: self.need(self.id, "id")?,
                user: self.key_u64()?,
                ts,
                display: self.r#ref.unwrap_or(0),
            }),
            "exposure" => Event::Exposure {
                request: self.key_u64()?,
                ts,
                item: self.id.unwrap_or(0),
                payload: payload(),
            },
            "exposure_click" => Event::ExposureClick {
                request: self.key_u64()?,
                ts,
            },
            "feature" => Event::Feature {
                request: self.key_u64()?,
                ts,
                payload: payload(),
            },
            "demand" => Event::Demand {
                hexagon: self.key_u64()?,
                rider: self.need(self.id, "id")?,
                ts,
            },
            "visit" => Event::Visit {
                device: self.key.as_ref().to_string(),
                dimension: self.need(self.dim, "dim")?,
                ts,
            },
            other => {
                return Err(Error::invalid(format!(
                    "column kind: unknown event kind '{other}' (expected display, click, \
                     exposure, exposure_click, feature, demand or visit)"
                )))
            }
        })
    }
}

/// The format of an event file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl FileFormat {
    /// The format implied by a file name: `.csv` is CSV, `.jsonl`/`.ndjson`/`.json` JSON lines.
    ///
    /// # Errors
    /// `InvalidArgument` for another extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Ok(FileFormat::Csv),
            Some("jsonl" | "ndjson" | "json") => Ok(FileFormat::JsonLines),
            _ => Err(Error::invalid(format!(
                "{}: cannot tell the format from the extension (use .csv or .jsonl)",
                path.display()
            ))),
        }
    }
}

/// [`Record`]'s fields in order: the columns of an event file as written.
const RECORD_COLUMNS: [&str; 7] = ["kind", "ts", "key", "id", "ref", "dim", "payload"];

/// Reads events from a CSV or JSON-lines file, lazily, one line at a time.
pub struct EventFileReader {
    path: PathBuf,
    inner: ReaderInner,
}

enum ReaderInner {
    Csv(Box<CsvEvents>),
    Json {
        lines: std::io::Lines<BufReader<File>>,
        line: u64,
    },
}

impl EventFileReader {
    /// Opens `path`; the format comes from its extension.
    ///
    /// # Errors
    /// `NotFound`/`InvalidArgument` naming the path.
    pub fn open(path: &Path) -> Result<Self> {
        let format = FileFormat::from_path(path)?;
        let file = File::open(path).map_err(|e| Error::io(path.display(), e))?;
        let inner = match format {
            FileFormat::Csv => ReaderInner::Csv(Box::new(CsvEvents::new(path, file)?)),
            FileFormat::JsonLines => ReaderInner::Json {
                lines: BufReader::new(file).lines(),
                line: 0,
            },
        };
        Ok(EventFileReader {
            path: path.to_path_buf(),
            inner,
        })
    }
}

impl Iterator for EventFileReader {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        match &mut self.inner {
            ReaderInner::Csv(events) => events.next_event(),
            ReaderInner::Json { lines, line } => loop {
                let path = self.path.display();
                let text = match lines.next()? {
                    Ok(t) => t,
                    Err(e) => return Some(Err(Error::io(&path, e))),
                };
                *line += 1;
                if text.trim().is_empty() {
                    continue;
                }
                let n = *line;
                return Some(
                    serde_json::from_str::<Record>(&text)
                        .map_err(|e| Error::invalid(format!("{path}:{n}: {e}")))
                        .and_then(|r| r.to_event().map_err(|e| e.context(format!("{path}:{n}")))),
                );
            },
        }
    }
}

/// Writes events to a CSV or JSON-lines file.
pub struct EventFileWriter {
    path: PathBuf,
    inner: WriterInner,
}

enum WriterInner {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Json(BufWriter<File>),
}

impl EventFileWriter {
    /// Creates `path` (format from its extension).
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn create(path: &Path) -> Result<Self> {
        let format = FileFormat::from_path(path)?;
        let file = File::create(path).map_err(|e| Error::io(path.display(), e))?;
        let w = BufWriter::with_capacity(1 << 20, file);
        let inner = match format {
            FileFormat::Csv => WriterInner::Csv(Box::new(csv::Writer::from_writer(w))),
            FileFormat::JsonLines => WriterInner::Json(w),
        };
        Ok(EventFileWriter {
            path: path.to_path_buf(),
            inner,
        })
    }

    /// Appends one event.
    ///
    /// # Errors
    /// I/O errors naming the path (a full disk is `ResourceExhausted`).
    pub fn write(&mut self, event: &Event) -> Result<()> {
        let record = event.to_record();
        let path = self.path.display();
        match &mut self.inner {
            WriterInner::Csv(w) => w.serialize(&record).map_err(|e| csv_error(&path, e)),
            WriterInner::Json(w) => {
                serde_json::to_writer(&mut *w, &record)
                    .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
                w.write_all(b"\n").map_err(|e| Error::io(&path, e))
            }
        }
    }

    /// Writes every event of `events` to a new file at `path`; returns how many.
    ///
    /// # Errors
    /// As [`EventFileWriter::create`] and [`EventFileWriter::write`].
    pub fn write_file(path: &Path, events: impl IntoIterator<Item = Event>) -> Result<u64> {
        let mut writer = EventFileWriter::create(path)?;
        let mut n = 0;
        for event in events {
            writer.write(&event)?;
            n += 1;
        }
        writer.finish()?;
        Ok(n)
    }

    /// Flushes and closes the file.
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn finish(self) -> Result<()> {
        let path = self.path.display();
        match self.inner {
            WriterInner::Csv(mut w) => w.flush().map_err(|e| Error::io(&path, e)),
            WriterInner::Json(mut w) => w.flush().map_err(|e| Error::io(&path, e)),
        }
    }
}

fn csv_error(path: &impl std::fmt::Display, e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        other => Error::invalid(format!("{path}: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Event> {
        vec![
            Event::Display(Display {
                id: 1,
                user: 7,
                ts: 1000,
                ad: 3,
                payload: "a,\"b\"\nc".into(),
            }),
            Event::Click(Click {
                id: 2,
                user: 7,
                ts: 1500,
                display: 1,
            }),
            Event::Exposure {
                request: 9,
                ts: 5,
                item: 4,
                payload: "x".into(),
            },
            Event::ExposureClick { request: 9, ts: 6 },
            Event::Feature {
                request: 9,
                ts: -3,
                payload: String::new(),
            },
            Event::Demand {
                hexagon: 11,
                rider: 12,
                ts: 13,
            },
            Event::Visit {
                device: "0b1c2d3e-0000-4000-8000-123456789abc".into(),
                dimension: 5,
                ts: 0,
            },
        ]
    }

    #[test]
    fn csv_and_jsonl_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["e.csv", "e.jsonl"] {
            let path = dir.path().join(name);
            let mut w = EventFileWriter::create(&path).unwrap();
            for e in samples() {
                w.write(&e).unwrap();
            }
            w.finish().unwrap();
            let back: Vec<Event> = EventFileReader::open(&path)
                .unwrap()
                .map(|e| e.unwrap())
                .collect();
            assert_eq!(back, samples(), "{name}");
        }
    }

    #[test]
    fn written_csv_header_is_the_columns_the_reader_knows() {
        // The reader maps a header's names to RECORD_COLUMNS; the writer derives its header
        // from Record's fields: they must agree, or files written here would not read back.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.csv");
        EventFileWriter::write_file(&path, samples()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().next(), Some(RECORD_COLUMNS.join(",").as_str()));
    }

    #[test]
    fn csv_columns_in_another_order_are_read_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("written.csv");
        EventFileWriter::write_file(&written, samples()).unwrap();
        // The same table with its columns reversed.
        let mut reader = csv::Reader::from_path(&written).unwrap();
        let reversed = dir.path().join("reversed.csv");
        let mut writer = csv::Writer::from_path(&reversed).unwrap();
        let flip = |r: &csv::ByteRecord| r.iter().rev().collect::<csv::ByteRecord>();
        writer
            .write_byte_record(&flip(reader.byte_headers().unwrap()))
            .unwrap();
        for record in reader.byte_records() {
            writer.write_byte_record(&flip(&record.unwrap())).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        let back: Vec<Event> = EventFileReader::open(&reversed)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(back, samples());
    }

    #[test]
    fn bad_lines_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{\"kind\":\"click\",\"ts\":1,\"key\":\"7\",\"id\":3}\n{\"kind\":\"click\",\"ts\":1,\"key\":\"u7\",\"id\":3}\n").unwrap();
        let results: Vec<Result<Event>> = EventFileReader::open(&path).unwrap().collect();
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("bad.jsonl:2") && err.contains("column key"),
            "{err}"
        );

        let csv_path = dir.path().join("bad.csv");
        std::fs::write(
            &csv_path,
            "kind,ts,key,id,ref,dim,payload\ndemand,notanumber,1,2,,,\n",
        )
        .unwrap();
        let err = EventFileReader::open(&csv_path)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.csv:2"), "{err}");
        assert!(EventFileReader::open(&dir.path().join("missing.csv")).is_err());
        assert!(EventFileReader::open(&dir.path().join("events.parquet")).is_err());
    }
}

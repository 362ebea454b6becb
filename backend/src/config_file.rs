//! Reading a TOML file a person wrote: the one loading path of statekit's configuration
//! files (remote and RocksDB backend configurations, workload profiles).
//!
//! Every error names the file, the line and column, and the field, as
//! `profiles/x.toml:16:8: field `scales.standard.keys`: must be at least 1`, both for what
//! serde rejects while parsing (an unknown field, a value of the wrong type) and for what a
//! type's own checks reject afterwards ([`FieldError`], located with [`FieldError::at`]).
//! Types read this way fill omitted fields with defaults (`#[serde(default)]`) and refuse
//! unknown ones (`#[serde(deny_unknown_fields)]`), so a typo is an error, never ignored.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::error::{Error, Result};

/// A value rejected by a check after parsing: the dotted path of its field (`"memtable"`,
/// `"cf.write_buffer_size"`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The dotted path of the field.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl FieldError {
    /// The error of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The error located in `text`, the contents of `path`: at the field's value if the file
    /// writes it, else at the nearest table of its path that it writes, else at the start.
    pub fn at(&self, path: &Path, text: &str) -> Error {
        let parts: Vec<&str> = self.field.split('.').collect();
        let span = (1..=parts.len())
            .rev()
            .find_map(|n| locate(text, &parts[..n]));
        located(path, text, span, Some(&self.field), &self.message)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl From<FieldError> for Error {
    /// An error without a place (for a configuration built in code, not read from a file).
    fn from(e: FieldError) -> Self {
        Error::invalid(e.to_string())
    }
}

/// Reads the file at `path`.
///
/// # Errors
/// An I/O error naming the file (`NotFound` for a missing one).
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))
}

/// Deserializes `text`, the contents of `path` (named in errors only).
///
/// # Errors
/// `InvalidArgument` naming the file, line, column and (where the error concerns one) the
/// field of a syntax error, an unknown field or a value of the wrong type.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let field = e.span().and_then(|span| field_at(text, span.start));
        located(path, text, e.span(), field.as_deref(), e.message().trim())
    })
}

/// Reads and deserializes the TOML file at `path`.
///
/// # Errors
/// As [`read`] and [`parse`].
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T> {
    parse(path, &read(path)?)
}

fn located(
    path: &Path,
    text: &str,
    span: Option<Range<usize>>,
    field: Option<&str>,
    message: &str,
) -> Error {
    let (line, col) = span.map_or((1, 1), |s| line_col(text, s.start));
    let field = field.map_or_else(String::new, |f| format!("field `{f}`: "));
    Error::invalid(format!("{}:{line}:{col}: {field}{message}", path.display()))
}

/// Line and column (1-based, in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The span of the value at the dotted path `parts`, if the text writes it.
fn locate(text: &str, parts: &[&str]) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut span = None;
    for (i, part) in parts.iter().enumerate() {
        let (_, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *part)?;
        span = Some(value.span());
        if i + 1 < parts.len() {
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return None,
            }
        }
    }
    span
}

/// The dotted path of the innermost key whose key or value covers byte `offset`.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_field(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// Pushes onto `path` the keys down to the one covering `offset`. A table's own span does
/// not cover the keys a `[header]` section gives it, so tables are searched whatever their
/// span.
fn find_field(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if key.span().contains(&offset) {
            return true;
        }
        if let DeValue::Table(inner) = value.get_ref() {
            if find_field(inner, offset, path) {
                return true;
            }
        }
        if value.span().contains(&offset) {
            return true;
        }
        path.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Doc {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        count: u32,
        ratio: f64,
    }

    fn parse_doc(text: &str) -> Result<Doc> {
        parse(Path::new("conf/x.toml"), text)
    }

    #[test]
    fn omitted_fields_take_defaults() {
        assert_eq!(parse_doc("").unwrap(), Doc::default());
        let d = parse_doc("[inner]\ncount = 3\n").unwrap();
        assert_eq!(d.inner.count, 3);
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let e = parse_doc("name = \"a\"\n\n[inner]\ncout = 3\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("conf/x.toml:4:1: field `inner.cout`: unknown field `cout`"),
            "{msg}"
        );
        let msg = parse_doc("[inner]\ncount = \"three\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("conf/x.toml:2:9: field `inner.count`:"),
            "{msg}"
        );
        let msg = parse_doc("name = [").unwrap_err().to_string();
        assert!(msg.contains(": conf/x.toml:1:9: "), "{msg}");
        // Columns count characters, not bytes.
        let msg = parse_doc("name = \"é\" \nnome = 1\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains(":2:1: field `nome`"), "{msg}");
    }

    #[test]
    fn checks_after_parsing_are_located() {
        let text = "name = \"a\"\n[inner]\nratio = -1.0\n";
        let e = FieldError::new("inner.ratio", "must be positive").at(Path::new("x.toml"), text);
        assert_eq!(
            e.message(),
            "x.toml:3:9: field `inner.ratio`: must be positive"
        );
        // A field the file leaves out is placed at its table, or at the start.
        let e = FieldError::new("inner.count", "must be set").at(Path::new("x.toml"), text);
        assert!(
            e.message().starts_with("x.toml:2:1: field `inner.count`"),
            "{e}"
        );
        let e = FieldError::new("other", "bad").at(Path::new("x.toml"), text);
        assert!(e.message().starts_with("x.toml:1:1: field `other`"), "{e}");
        let plain: Error = FieldError::new("inner.ratio", "must be positive").into();
        assert!(plain
            .to_string()
            .contains("field `inner.ratio`: must be positive"));
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("statekit.toml");
        let e = load::<Doc>(&path).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
        assert!(e.to_string().contains("statekit.toml"), "{e}");
    }
}

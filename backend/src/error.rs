//! The one error type of statekit's backends.
//!
//! A caller decides what to do from [`ErrorKind`]: fix the call, retry, fall back to an older
//! checkpoint, free resources. The message says what went wrong and where (state, file, key).

use std::fmt;

/// What a caller should do about an [`Error`], not which component raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The call itself is wrong (unknown state, key group not owned by this instance, bad
    /// range, malformed configuration). Retrying the same call fails again.
    InvalidArgument,
    /// A named thing (state, checkpoint, file) does not exist.
    NotFound,
    /// Stored data failed a checksum or could not be decoded. Restore from another checkpoint.
    Corruption,
    /// Stored data or a request uses a format or kind this version cannot accept.
    Incompatible,
    /// A transient failure of the storage underneath (I/O error, unreachable object store,
    /// timeout). The operation may succeed if retried; committed state is intact.
    Unavailable,
    /// Out of disk space or another resource. Free some and retry.
    ResourceExhausted,
    /// The backend was closed or is in a failed state and takes no more calls.
    Closed,
    /// A bug in statekit or an engine underneath it.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::ResourceExhausted)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::NotFound => "not found",
            ErrorKind::Corruption => "corruption",
            ErrorKind::Incompatible => "incompatible",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::ResourceExhausted => "resource exhausted",
            ErrorKind::Closed => "closed",
            ErrorKind::Internal => "internal error",
        };
        f.write_str(s)
    }
}

/// An error from a state backend or one of its parts.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a message that names what and where.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What the caller should do about it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorKind::Corruption`].
    pub fn corruption(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corruption, message)
    }

    /// An I/O error on `what` (a path or object name), classified by what the caller can do.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::StorageFull | Io::QuotaExceeded | Io::OutOfMemory => ErrorKind::ResourceExhausted,
            Io::InvalidData | Io::UnexpectedEof => ErrorKind::Corruption,
            Io::InvalidInput | Io::PermissionDenied | Io::NotADirectory | Io::IsADirectory => {
                ErrorKind::InvalidArgument
            }
            _ => ErrorKind::Unavailable,
        };
        Error::new(kind, format!("{what}: {err}")).with_source(err)
    }

    /// Prefixes the message with context (for example the file being read).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

/// The result type of statekit's backends.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_what_to_do() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let e = Error::io("/data/chk-1/state.sst", full);
        assert_eq!(e.kind(), ErrorKind::ResourceExhausted);
        assert!(e.kind().is_retryable());
        assert!(e.to_string().contains("/data/chk-1/state.sst"));
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(Error::io("x", missing).kind(), ErrorKind::NotFound);
    }

    #[test]
    fn context_prefixes_the_message() {
        let e = Error::corruption("bad checksum").context("chk-3/MANIFEST");
        assert_eq!(e.to_string(), "corruption: chk-3/MANIFEST: bad checksum");
    }
}

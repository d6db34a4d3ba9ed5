//! The library's error type.
//!
//! Expected outcomes (end of log, torn tail cut on recovery) are return values, not errors.
//! Every filesystem error carries the path it happened on.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in eventbus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fdatasync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// An earlier fsync (or a failed write that could not be undone) left the log in an unknown
    /// state; nothing more is written until the log is reopened (see PostgreSQL's "fsyncgate").
    #[error("event log {path} is poisoned after a failed {cause}; reopen it to recover")]
    Poisoned {
        /// The event set's directory.
        path: PathBuf,
        /// The failure that poisoned it.
        cause: String,
    },

    /// Stored data is damaged at a place where a crash cannot explain it (inside a sealed
    /// segment, before valid frames of the active segment, or a gap in the offset chain).
    #[error("corruption in {path} at byte {position}: {detail}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position in that file.
        position: u64,
        /// What is wrong.
        detail: String,
    },

    /// A record could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),

    /// A caller passed something invalid; `field` names it.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The offending field or argument.
        field: String,
        /// The rule that was broken.
        message: String,
    },

    /// The log was closed while the request was waiting.
    #[error("event log is closed")]
    Closed,

    /// A feature this build does not provide yet (e.g. a target type without an implementation).
    #[error("not supported: {0}")]
    Unsupported(String),

    /// A request the caller can fix, with a Tencent-style code (`InvalidParameterValue.Name`,
    /// `ResourceNotFound.EventSet`, `OperationDenied.ResourceImmutable`, ...) and, when one
    /// field is at fault, its JSON path (`$.name`, `$.entries[2].time`).
    #[error("{code}: {message}")]
    Rejected {
        /// What kind of refusal (maps to an HTTP status).
        kind: RejectKind,
        /// Tencent-style error code.
        code: String,
        /// What is wrong, for humans.
        message: String,
        /// The offending field, as a JSON path.
        path: Option<String>,
    },
}

/// The class of a [`Error::Rejected`]; the HTTP layer maps each to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// 400: malformed or invalid input.
    Invalid,
    /// 403: not allowed (immutable resource, reserved source, wrong producer).
    Denied,
    /// 404: no such resource.
    NotFound,
    /// 409: conflicts with current state (exists already, still in use).
    Conflict,
    /// 413: too large.
    TooLarge,
    /// 429/400: a configured limit would be exceeded.
    LimitExceeded,
}

impl Error {
    /// Wraps an I/O error with the operation and the path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A caller error naming the offending field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A refusal of `kind` with `code`, naming the offending field's JSON path if any.
    pub fn rejected(
        kind: RejectKind,
        code: impl Into<String>,
        path: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Error::Rejected {
            kind,
            code: code.into(),
            message: message.into(),
            path: path.map(str::to_string),
        }
    }

    /// The Tencent-style code of a rejection, if this is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A copy of this error (I/O errors keep their OS code), for reporting one failure to
    /// several requesters (a failed group commit, a failed put seen by concurrent puts).
    pub fn replicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Poisoned { path, cause } => Error::Poisoned {
                path: path.clone(),
                cause: cause.clone(),
            },
            Error::Corrupt {
                path,
                position,
                detail,
            } => Error::Corrupt {
                path: path.clone(),
                position: *position,
                detail: detail.clone(),
            },
            Error::Codec(m) => Error::Codec(m.clone()),
            Error::Invalid { field, message } => Error::Invalid {
                field: field.clone(),
                message: message.clone(),
            },
            Error::Closed => Error::Closed,
            Error::Unsupported(m) => Error::Unsupported(m.clone()),
            Error::Rejected {
                kind,
                code,
                message,
                path,
            } => Error::Rejected {
                kind: *kind,
                code: code.clone(),
                message: message.clone(),
                path: path.clone(),
            },
        }
    }

    /// True when the underlying cause is "no space left on device".
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

//! Errors of the storage engine. Every variant that concerns a file names it.

use std::path::PathBuf;

/// Result of storage operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the partition log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused an I/O operation.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the log was doing ("writing", "opening", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes failed validation where they cannot be a torn tail: a sealed segment, an
    /// index that disagrees with its segment, a read of bytes that were once valid.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged entry in that file.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// A configuration field has a value the log cannot run with.
    #[error("invalid log config: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An append was refused before anything was written.
    #[error("batch rejected: {0}")]
    InvalidBatch(&'static str),
    /// The batch is larger than `batch_bytes_max`.
    #[error("batch of {size} bytes exceeds the maximum of {max} bytes")]
    BatchTooLarge {
        /// Payload size of the refused batch.
        size: usize,
        /// The configured maximum.
        max: u32,
    },
    /// A read or truncation asked for an offset outside the log.
    #[error("offset {offset} is outside the log [{start}, {end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: u64,
        /// The log start offset.
        start: u64,
        /// The log end offset.
        end: u64,
    },
    /// An earlier write or sync failed; the log accepts no more appends until reopened, because
    /// what reached the disk is unknown.
    #[error("log {0} is failed after an earlier I/O error; reopen it to recover")]
    Failed(PathBuf),
    /// The log was closed.
    #[error("log {0} is closed")]
    Closed(PathBuf),
    /// The cleaner could not read a batch's records; the cleaning changed nothing.
    #[error("compacting {dir}: the batch at offset {offset} cannot be read: {reason}")]
    Unreadable {
        /// The log directory.
        dir: PathBuf,
        /// The batch's base offset.
        offset: u64,
        /// What the record format said.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Error {
        Error::Io { op, path: path.into(), source: source.into() }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt { path: path.into(), position, reason: reason.into() }
    }
}

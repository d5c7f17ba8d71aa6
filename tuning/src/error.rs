//! Errors of profile handling and host probing.

use std::path::PathBuf;

/// Result of tuning operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A profile field has a value that cannot be used (here, or on this host).
    #[error("profile field {field}: {reason}")]
    Field {
        /// The field, as `section.name`.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A profile is not valid TOML for the profile schema.
    #[error("profile {origin}: {message}")]
    Parse {
        /// File path or shipped name.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A sysfs or procfs file did not hold what the kernel documents.
    #[error("unexpected content in {path}: {reason}")]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A disk measurement failed.
    #[error("disk probe: {0}")]
    Probe(String),
    /// `rill tune apply` without root.
    #[error("applying kernel settings needs root")]
    NotRoot,
}

//! Broker errors: configuration and start-up failures. Per-request failures are protocol error
//! codes, not these.

/// Result of broker operations.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// What stopped the broker from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Bad configuration or profile.
    #[error("configuration: {0}")]
    Config(String),
    /// Metadata could not be read or written.
    #[error(transparent)]
    Metadata(#[from] crate::cluster::metadata::MetadataError),
    /// A partition log failed to open.
    #[error("opening partition {topic}/{partition}: {source}")]
    Log {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The storage error.
        #[source]
        source: rill_storage::Error,
    },
    /// A socket, thread or executor could not be set up.
    #[error("{0}")]
    Runtime(String),
}

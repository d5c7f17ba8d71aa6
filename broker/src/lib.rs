//! Rill's broker: composes `storage` and `net` into shards, one pinned glommio executor per core.
//!
//! Each shard owns the partitions the shard table gives it; a request for a partition owned
//! elsewhere travels to its owner over the glommio channel mesh. Shard 0 is also the controller:
//! it runs topic administration and persists the metadata. Every shard listens on the same
//! native-protocol and Kafka-protocol ports with SO_REUSEPORT.

mod admin_http;
mod cluster;
mod config;
mod error;
mod metrics;
mod partition;
mod process;
mod protocol;
mod server;
mod signal;

pub use crate::cluster::{consensus, metadata, state, transport};
pub use crate::partition::replica;

pub use crate::config::{BrokerConfig, ClusterConfig, ConfigFile, DEFAULT_CONFIG, OffsetsRetention};
pub use crate::error::{BrokerError, Result};
pub use crate::process::{exit_on_panic, raise_open_file_limit};
pub use crate::server::{RunningBroker, start};

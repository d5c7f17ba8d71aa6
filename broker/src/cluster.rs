//! Cluster state: what the node knows about topics, partitions and their placement, and the
//! controller that changes it. The lowest layer of the broker: it imports nothing from the
//! partition service or the protocol front ends above it.

pub mod consensus;
pub(crate) mod controller;
pub mod identity;
pub mod metadata;
pub(crate) mod metadata_group;
pub(crate) mod peers;
pub mod state;
pub(crate) mod status;
pub(crate) mod topic_config;
pub mod transport;

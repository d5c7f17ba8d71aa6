//! The partition service: shards owning partitions (logs, producer state, consumer-group
//! coordinators), routing of calls between them, and the per-connection ordering of effects.
//! Built on `cluster`; never imports the protocol front ends above it.

pub(crate) mod cleaner;
pub(crate) mod fetch;
pub(crate) mod group;
pub(crate) mod order;
pub(crate) mod producer;
pub mod replica;
pub(crate) mod replication;
pub(crate) mod routing;
pub(crate) mod shard;

//! Rill's broker: composes `storage` and `net` into shards, one glommio executor per core.
//!
//! Built so far: [`metadata`], the cluster-local topic catalogue and shard table (which shard
//! owns which partition), persisted crash-safely in the data directory. The shard runtime,
//! listeners and request handling arrive with the rest of the broker issue.

pub mod metadata;

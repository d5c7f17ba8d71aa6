//! Rill's broker: composes `storage` and `net` into shards, one glommio executor per core.
//!
//! Placeholder until the broker issue lands: nothing here yet.

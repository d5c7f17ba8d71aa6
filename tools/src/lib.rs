//! The `rill` command-line tool: serve, topic, produce, consume, bench, tune.
//!
//! Placeholder until the broker issue lands: only the workspace's tidy checks live here now.

//! The `rill` command-line tool: serve, topic, produce, consume, bench, tune.
//!
//! The binary lives in `main.rs`; this library holds nothing yet. The workspace tidy checks
//! run as this crate's tests.

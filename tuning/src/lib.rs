//! Per-host tuning profiles and the `rill tune` probe.
//!
//! Placeholder until the tuning issue lands: nothing here yet.

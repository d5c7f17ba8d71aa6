//! Rill's wire protocols (native rkyv framing and Kafka), sans-I/O; never touches disk.
//!
//! Placeholder until the broker issue lands: nothing here yet.

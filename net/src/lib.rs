//! Rill's wire protocols, sans-I/O: nothing here touches a socket or a disk.
//!
//! - [`connection`]: the server side of one connection: requests in, responses out, pipelined
//!   with an in-flight limit.
//! - [`consumer_protocol`]: Kafka's consumer protocol inside groups (subscriptions,
//!   assignments) and the `range` assignor, for Rill's own group members.
//! - [`frame`]: native-protocol framing (rkyv-archived header, checksummed payload) and a
//!   bounded streaming decoder.
//! - [`kafka`]: the server side of one Kafka-protocol connection: frames, request and response
//!   codecs (the `kafka-protocol` crate's), responses in request order.
//! - [`message`]: native request and response envelopes; record bytes ride after the envelope
//!   and are handed on as zero-copy `Bytes` slices.
//! - [`record_batch`]: Kafka RecordBatch v2, the one batch format Rill stores: header parsing
//!   and CRC checks for the broker, a small builder and decoder for the tools.

pub mod batch_records;
pub mod connection;
pub mod consumer_protocol;
pub mod frame;
pub mod kafka;
// rkyv derives archived and resolver types for the envelopes whose enum-variant fields carry
// no docs; the envelopes themselves are documented.
#[allow(missing_docs)]
pub mod message;
// As `message`: rkyv's derived types of the documented peer frames carry no docs.
#[allow(missing_docs)]
pub mod peer;
pub mod quic;
pub mod record_batch;
pub mod tls;

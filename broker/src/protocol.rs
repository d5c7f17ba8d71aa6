//! Protocol front ends: connections, and the Kafka and native request handlers that turn
//! requests into partition-service calls. The top layer: nothing below imports it.

pub(crate) mod connection;
pub(crate) mod kafka;
pub(crate) mod native;

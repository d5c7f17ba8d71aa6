//! Raw Kafka-protocol requests over a plain socket, for tests that send what no client would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, StrBytes};

/// One request frame: header and body as a client encodes them.
pub fn request<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Vec<u8> {
    rill_net::kafka::encode_request(key, version, correlation_id, "raw", body).unwrap().to_vec()
}

/// Reads one response frame; `None` if the broker closed the connection.
pub fn response(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

/// Sends one request to the broker at `addr` on a new connection and decodes its answer.
pub fn call<Req: Encodable, Resp: kafka_protocol::protocol::Decodable>(
    addr: &str,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    call_on(&mut TcpStream::connect(addr).unwrap(), key, version, body)
}

/// Sends one request on `stream` and decodes its answer.
pub fn call_on<Req: Encodable, Resp: kafka_protocol::protocol::Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    stream.write_all(&request(key, version, 1, body)).unwrap();
    let mut reply = bytes::Bytes::from(response(stream).expect("an answer"));
    <kafka_protocol::messages::ResponseHeader as kafka_protocol::protocol::Decodable>::decode(
        &mut reply,
        key.response_header_version(version),
    )
    .unwrap();
    Resp::decode(&mut reply, version).unwrap()
}

pub fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

/// A one-record uncompressed batch holding `value`.
pub fn value_batch(value: impl Into<bytes::Bytes>) -> bytes::Bytes {
    let mut builder = rill_net::record_batch::BatchBuilder::new();
    builder.push(&rill_net::record_batch::Record {
        timestamp_ms: 1,
        key: None,
        value: Some(value.into()),
        headers: Vec::new(),
    });
    builder.build()
}

/// `batch` with the header fields at the given byte positions overwritten and its CRC32C (at
/// 17, covering everything from the attributes at 21 on) made valid again.
pub fn restamp(batch: &[u8], fields: &[(usize, &[u8])]) -> bytes::Bytes {
    let mut bytes = batch.to_vec();
    for (at, value) in fields {
        bytes[*at..*at + value.len()].copy_from_slice(value);
    }
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes.into()
}

/// A one-record batch stamped with an idempotent producer's id, epoch and sequence (RecordBatch
/// v2: producer id at 43, epoch at 51, base sequence at 53).
pub fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, value: &'static [u8]) -> bytes::Bytes {
    let batch = value_batch(value);
    restamp(
        &batch,
        &[(43, &producer_id.to_be_bytes()), (51, &epoch.to_be_bytes()), (53, &sequence.to_be_bytes())],
    )
}

/// Sends one acks=all produce of `batch` to partition 0 of `topic`; returns (error, base offset).
/// A produce (acks=all) of `batch` to one partition.
pub fn produce_request(
    topic: &str,
    partition: i32,
    batch: bytes::Bytes,
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    let mut part = PartitionProduceData::default();
    part.index = partition;
    part.records = Some(batch);
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_data = vec![part];
    let mut produce = ProduceRequest::default();
    produce.acks = -1;
    produce.timeout_ms = 5000;
    produce.topic_data = vec![t];
    produce
}

pub fn produce_raw(stream: &mut TcpStream, topic: &str, batch: bytes::Bytes) -> (i16, i64) {
    let decoded: kafka_protocol::messages::ProduceResponse =
        call_on(stream, ApiKey::Produce, 9, &produce_request(topic, 0, batch));
    let p = &decoded.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

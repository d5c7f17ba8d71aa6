//! Hostile input through raw Kafka sockets against a real `rill serve`: batches with valid CRCs
//! and lying counts, and fetches that name one partition thousands of times. The broker refuses
//! or bounds each, writes nothing it should not, and keeps serving other clients.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::raw::*;
use common::*;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, StrBytes};

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// A one-record batch with its record count and last offset delta replaced (CRC made valid).
fn lying_batch(records_count: i32, last_offset_delta: i32) -> Bytes {
    let batch = value_batch(&b"liar"[..]);
    restamp(&batch, &[(23, &last_offset_delta.to_be_bytes()), (57, &records_count.to_be_bytes())])
}

/// A broker with a one-partition `topic`, and a Kafka connection to it.
fn broker_with_topic(topic: &str) -> (tempfile::TempDir, Broker, TcpStream) {
    let (tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", topic, "--partitions", "1"], None);
    let stream = connect(&broker.kafka);
    (tmp, broker, stream)
}

/// ListOffsets v7 for partition 0 of `topic` at `timestamp`: (error, offset).
fn list_offset(stream: &mut TcpStream, topic: &str, timestamp: i64) -> (i16, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseHeader, TopicName};
    let mut p = ListOffsetsPartition::default();
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions = vec![p];
    let mut r = ListOffsetsRequest::default();
    r.replica_id = kafka_protocol::messages::BrokerId(-1);
    r.topics = vec![t];
    use std::io::Write;
    stream.write_all(&request(ApiKey::ListOffsets, 7, 9, &r)).unwrap();
    let mut reply = Bytes::from(response(stream).expect("a ListOffsets response"));
    ResponseHeader::decode(&mut reply, ApiKey::ListOffsets.response_header_version(7)).unwrap();
    let decoded = ListOffsetsResponse::decode(&mut reply, 7).unwrap();
    let p = &decoded.topics[0].partitions[0];
    (p.error_code, p.offset)
}

#[test]
fn batches_with_lying_counts_are_refused_and_the_broker_keeps_serving() {
    let (_tmp, broker, mut s) = broker_with_topic("hostile");
    // Both counts at 2^31-1 (one record inside): INVALID_RECORD, and nothing is written, so a
    // later lookup by timestamp has nothing to size a vector from.
    assert_eq!(produce_raw(&mut s, "hostile", lying_batch(i32::MAX, i32::MAX)), (87, -1));
    assert_eq!(list_offset(&mut s, "hostile", 0), (0, -1), "nothing written, the broker alive");
    // One record claiming 2^31 offsets, many times over: each refused, no offsets taken.
    for _ in 0..50 {
        assert_eq!(produce_raw(&mut s, "hostile", lying_batch(1, i32::MAX)), (87, -1));
    }
    assert_eq!(list_offset(&mut s, "hostile", -1), (0, 0), "the log end has not moved");
    // Honest producers are served on the same and on other connections.
    assert_eq!(produce_raw(&mut s, "hostile", value_batch(b"honest".to_vec())), (0, 0));
    let mut other = connect(&broker.kafka);
    assert_eq!(produce_raw(&mut other, "hostile", value_batch(b"also".to_vec())), (0, 1));
    assert_eq!(list_offset(&mut other, "hostile", 0), (0, 0));
    assert_eq!(list_offset(&mut other, "hostile", -1), (0, 2));
}

#[test]
fn a_fetch_repeating_one_partition_stays_within_max_bytes() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseHeader, TopicName};
    use std::io::Write;
    let (_tmp, _broker, mut s) = broker_with_topic("big");
    const BATCH: usize = 50_000;
    for i in 0..40u8 {
        assert_eq!(produce_raw(&mut s, "big", value_batch(vec![i; BATCH])).0, 0);
    }
    let fetch = |repeats: usize, max_bytes: i32, partition_max_bytes: i32| {
        let mut p = FetchPartition::default();
        p.partition_max_bytes = partition_max_bytes;
        p.current_leader_epoch = -1;
        p.log_start_offset = -1;
        let mut t = FetchTopic::default();
        t.topic = TopicName(StrBytes::from_static_str("big"));
        t.partitions = vec![p; repeats];
        let mut r = FetchRequest::default();
        r.replica_id = kafka_protocol::messages::BrokerId(-1);
        r.max_wait_ms = 0;
        r.min_bytes = 1;
        r.max_bytes = max_bytes;
        r.session_epoch = -1;
        r.topics = vec![t];
        r
    };
    let mut send = |r: &FetchRequest| {
        s.write_all(&request(ApiKey::Fetch, 11, 3, r)).unwrap();
        let frame = response(&mut s).expect("a fetch response");
        let mut reply = Bytes::from(frame.clone());
        ResponseHeader::decode(&mut reply, ApiKey::Fetch.response_header_version(11)).unwrap();
        let decoded = FetchResponse::decode(&mut reply, 11).unwrap();
        let records: Vec<usize> = decoded.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .collect();
        (frame.len(), records)
    };
    // 4,500 copies of the partition, 1 byte each: only the first batch of the response may
    // exceed a limit, so the answer is one batch.
    let (frame, records) = send(&fetch(4_500, 1 << 20, 1));
    assert_eq!(records.len(), 4_500);
    assert_eq!(records.iter().filter(|r| **r > 0).count(), 1, "one part carries data");
    assert!(records[0] > BATCH, "the first batch comes back whatever its size");
    assert!(frame < 2 * BATCH + 4_500 * 64, "response of {frame} bytes");
    // 4,500 copies with 1 MiB each and max_bytes 1 MiB: at most 1 MiB of batches in all.
    let (_, records) = send(&fetch(4_500, 1 << 20, 1 << 20));
    let total: usize = records.iter().sum();
    assert!(total <= 1 << 20 && total > (1 << 20) - 2 * BATCH, "{total} bytes of batches");
    // A response of max_bytes 200 kB over 10 parts of 1 MiB: whole batches, at most 200 kB.
    let (_, records) = send(&fetch(10, 200_000, 1 << 20));
    let total: usize = records.iter().sum();
    assert!((150_000..=200_000).contains(&total), "{total} bytes of batches");
}

//! The fuzz targets' seed corpora (`net/fuzz/corpus/connection/` for the native protocol,
//! `net/fuzz/corpus/kafka/` for Kafka) are generated here from real messages, and these tests
//! keep the committed seeds identical to what the current encoders produce.
//! `RILL_WRITE_FUZZ_SEEDS=1` rewrites them after a format change.

use std::path::PathBuf;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rill_net::frame::encode_frame;
use rill_net::message::{self, Acks, FetchPart, OffsetSpec, ProducePart, RequestBody, TopicSettings};
use rill_net::record_batch::{BatchBuilder, Record};

fn frame(id: u64, body: &RequestBody, data: &[Bytes]) -> Vec<u8> {
    let payload: Bytes = message::encode_payload(body, data).concat().into();
    encode_frame(body.kind() as u16, id, &payload).to_vec()
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut builder = BatchBuilder::new();
    for i in 0..3 {
        builder.push(&Record {
            timestamp_ms: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from_static(b"value")),
            headers: vec![("h".into(), None)],
        });
    }
    let batch = builder.build();
    let produce = RequestBody::Produce {
        acks: Acks::Durable,
        timeout_ms: 1000,
        parts: vec![ProducePart {
            topic: "events".into(),
            partition: 0,
            records_at: 0,
            records_len: batch.len() as u32,
        }],
    };
    let create = RequestBody::CreateTopic {
        name: "events".into(),
        partitions: 8,
        replication_factor: 0,
        settings: TopicSettings { durability: Some("always".into()), ..TopicSettings::default() },
    };
    let fetch = RequestBody::Fetch {
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        parts: vec![FetchPart { topic: "events".into(), partition: 0, offset: 0, max_bytes: 1 << 20 }],
    };
    let offsets = RequestBody::ListOffsets {
        parts: vec![
            ("events".into(), 0, OffsetSpec::Earliest),
            ("events".into(), 1, OffsetSpec::Timestamp(5)),
        ],
    };
    let with_step = |step: u8, bytes: Vec<u8>| [vec![step], bytes].concat();
    let mut pipelined = frame(1, &create, &[]);
    pipelined.extend(frame(2, &produce, std::slice::from_ref(&batch)));
    pipelined.extend(frame(3, &fetch, &[]));
    vec![
        ("create", with_step(255, frame(1, &create, &[]))),
        ("produce", with_step(255, frame(2, &produce, std::slice::from_ref(&batch)))),
        ("fetch", with_step(7, frame(3, &fetch, &[]))),
        ("list-offsets", with_step(255, frame(4, &offsets, &[]))),
        ("list-topics", with_step(1, frame(5, &RequestBody::ListTopics, &[]))),
        ("pipelined", with_step(33, pipelined)),
    ]
}

/// One Kafka request frame as a client encodes it.
fn kafka_frame<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Vec<u8> {
    rill_net::kafka::encode_request(key, version, correlation_id, "seed", body).unwrap().to_vec()
}

fn kafka_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut builder = BatchBuilder::new();
    builder.push(&Record {
        timestamp_ms: 1,
        key: Some(Bytes::from_static(b"k")),
        value: None,
        headers: vec![],
    });
    let name = || TopicName(StrBytes::from_static_str("events"));
    let mut part = PartitionProduceData::default();
    part.records = Some(builder.build());
    let mut topic = TopicProduceData::default();
    topic.name = name();
    topic.partition_data = vec![part];
    let mut produce = ProduceRequest::default();
    produce.acks = -1;
    produce.topic_data = vec![topic];
    let mut fetch_part = FetchPartition::default();
    fetch_part.partition_max_bytes = 1 << 20;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = name();
    fetch_topic.partitions = vec![fetch_part];
    let mut fetch = FetchRequest::default();
    fetch.max_wait_ms = 500;
    fetch.max_bytes = 1 << 20;
    fetch.topics = vec![fetch_topic];
    let mut offsets_part = ListOffsetsPartition::default();
    offsets_part.timestamp = -2;
    let mut offsets_topic = ListOffsetsTopic::default();
    offsets_topic.name = name();
    offsets_topic.partitions = vec![offsets_part];
    let mut offsets = ListOffsetsRequest::default();
    offsets.topics = vec![offsets_topic];
    let mut creatable = CreatableTopic::default();
    creatable.name = name();
    creatable.num_partitions = 3;
    creatable.replication_factor = 1;
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![creatable];
    let mut metadata_topic = MetadataRequestTopic::default();
    metadata_topic.name = Some(name());
    let mut metadata = MetadataRequest::default();
    metadata.topics = Some(vec![metadata_topic]);
    let mut pipelined = kafka_frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
    pipelined.extend(kafka_frame(ApiKey::Metadata, 12, 2, &metadata));
    pipelined.extend(kafka_frame(ApiKey::Produce, 9, 3, &produce));
    let with_step = |step: u8, bytes: Vec<u8>| [vec![step], bytes].concat();
    vec![
        (
            "api-versions",
            with_step(255, kafka_frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default())),
        ),
        ("metadata-v1", with_step(255, kafka_frame(ApiKey::Metadata, 1, 2, &metadata))),
        ("metadata-v12", with_step(9, kafka_frame(ApiKey::Metadata, 12, 2, &metadata))),
        ("produce-v3", with_step(255, kafka_frame(ApiKey::Produce, 3, 3, &produce))),
        ("produce-v9", with_step(255, kafka_frame(ApiKey::Produce, 9, 3, &produce))),
        ("fetch-v4", with_step(255, kafka_frame(ApiKey::Fetch, 4, 4, &fetch))),
        ("fetch-v12", with_step(17, kafka_frame(ApiKey::Fetch, 12, 4, &fetch))),
        ("list-offsets", with_step(255, kafka_frame(ApiKey::ListOffsets, 7, 5, &offsets))),
        ("create-topics", with_step(255, kafka_frame(ApiKey::CreateTopics, 7, 6, &create))),
        ("pipelined", with_step(40, pipelined)),
    ]
}

#[test]
fn committed_seeds_match_the_encoders() {
    check_seeds("connection", seeds());
}

#[test]
fn committed_kafka_seeds_match_the_encoders() {
    check_seeds("kafka", kafka_seeds());
}

fn check_seeds(target: &str, seeds: Vec<(&'static str, Vec<u8>)>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let write = std::env::var_os("RILL_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes) in seeds {
        let path = dir.join(format!("seed-{name}"));
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(committed, bytes, "{} is stale; rerun with RILL_WRITE_FUZZ_SEEDS=1", path.display());
    }
}

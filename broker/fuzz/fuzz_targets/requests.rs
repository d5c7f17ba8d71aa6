//! Fuzz target: structured Produce, Fetch and ListOffsets requests (batches with valid CRCs and
//! deliberate lies, see `rill_broker_fuzz`) against a real in-process broker (two shards, a
//! four-partition topic, real files in a temporary directory), over one TCP connection per
//! input.
//!
//! Failures: a panic on any broker thread (the process exits, `exit_on_panic`), an allocation
//! beyond libFuzzer's RSS limit, a request left unanswered for 10 s (a hung shard), responses out
//! of order, or a fetch response larger than its `max_bytes` plus one batch.
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use libfuzzer_sys::fuzz_target;
use rill_broker::{BrokerConfig, OffsetsRetention};
use rill_broker_fuzz::{PARTITIONS, TOPIC, script};

/// The largest batch a script can produce is far below this; a fetch may exceed its
/// `max_bytes` by one batch (Kafka's rule), plus per-partition framing.
const ONE_BATCH_BYTES_MAX: usize = 64 << 10;

struct Fuzzed {
    kafka: SocketAddr,
    _dir: tempfile::TempDir,
    _broker: rill_broker::RunningBroker,
}

fn broker() -> &'static Fuzzed {
    static BROKER: OnceLock<Fuzzed> = OnceLock::new();
    BROKER.get_or_init(|| {
        rill_broker::exit_on_panic();
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut profile = rill_tuning::Profile::shipped("small-vm");
        profile.memory.cache_bytes_per_shard = 16 << 20;
        profile.memory.write_buffer_bytes_per_shard = 8 << 20;
        profile.memory.connection_buffer_bytes_per_shard = 16 << 20;
        profile.memory.io_memory_bytes_per_shard = 1 << 20;
        profile.io.read_chunk_bytes = 1 << 20;
        profile.log.segment_bytes = 1 << 20;
        profile.log.batch_bytes_max = 256 << 10;
        profile.log.durability = "never".into();
        profile.log.retention_check_interval_ms = 1_000;
        let config = BrokerConfig {
            data_dir: dir.path().join("data"),
            native_listen: "127.0.0.1:0".parse().unwrap(),
            kafka_listen: "127.0.0.1:0".parse().unwrap(),
            kafka_advertised: None,
            profile,
            cores: vec![0, 1],
            auto_create_partitions: None,
            offsets_retention: OffsetsRetention::default(),
        };
        let broker = rill_broker::start(config, Arc::new(AtomicBool::new(false))).expect("broker starts");
        let kafka = broker.kafka_addr;
        create_topic(kafka);
        Fuzzed { kafka, _dir: dir, _broker: broker }
    })
}

fn create_topic(kafka: SocketAddr) {
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.num_partitions = PARTITIONS;
    topic.replication_factor = 1;
    for (name, value) in [("retention.bytes", "4194304"), ("segment.bytes", "1048576")] {
        let mut config = CreatableTopicConfig::default();
        config.name = StrBytes::from_static_str(name);
        config.value = Some(StrBytes::from_static_str(value));
        topic.configs.push(config);
    }
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 10_000;
    let frame = rill_net::kafka::encode_request(ApiKey::CreateTopics, 4, 1, "fuzz", &request).unwrap();
    let mut stream = TcpStream::connect(kafka).unwrap();
    stream.write_all(&frame).unwrap();
    let frame = read_frame(&mut stream).expect("CreateTopics is answered");
    let mut body = bytes::Bytes::from(frame);
    ResponseHeader::decode(&mut body, ApiKey::CreateTopics.response_header_version(4)).unwrap();
    let response = CreateTopicsResponse::decode(&mut body, 4).unwrap();
    let created = &response.topics[0];
    assert_eq!(created.error_code, 0, "creating the topic: {:?}", created.error_message);
}

/// One response frame (without its length prefix); `None` if the broker closed the connection.
fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            panic!("the broker left a request unanswered for 10 s")
        }
        Err(_) => return None,
    }
    let len = i32::from_be_bytes(len);
    assert!(len >= 4, "response frame of {len} bytes");
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

fuzz_target!(|data: &[u8]| {
    let Some(script) = script(data, 8) else { return };
    let broker = broker();
    let mut stream = TcpStream::connect(broker.kafka).expect("the broker accepts connections");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut expected = Vec::new();
    for (i, request) in script.requests.iter().enumerate() {
        let correlation_id = i as i32 + 1;
        let Some(encoded) = request.encode(correlation_id) else { continue };
        if stream.write_all(&encoded.frame).is_err() {
            return;
        }
        if encoded.answered {
            let parts = match request {
                rill_broker_fuzz::Request::Fetch(f) => {
                    f.parts.len().min(8) * usize::from(f.repeat % 64).max(1)
                }
                _ => 0,
            };
            expected.push((correlation_id, encoded.key, encoded.fetch_max_bytes, parts));
        }
    }
    for (correlation_id, key, fetch_max_bytes, parts) in expected {
        // A connection the broker closed (a request it refused) ends the script.
        let Some(frame) = read_frame(&mut stream) else { return };
        let got = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(got, correlation_id, "{key:?} response out of order");
        if let Some(max_bytes) = fetch_max_bytes {
            let bound = usize::try_from(max_bytes).unwrap_or(0) + ONE_BATCH_BYTES_MAX + 64 * parts + 256;
            assert!(
                frame.len() <= bound,
                "fetch response of {} bytes for max_bytes {max_bytes}",
                frame.len()
            );
        }
    }
});

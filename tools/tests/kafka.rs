//! Existing Kafka clients against a real `rill serve`: kcat, confluent-kafka (librdkafka),
//! kafka-python, kafkajs and the Java client, unchanged, over the Kafka listener; raw sockets
//! for bad input.
//!
//! CI installs the clients (`.ci/run`); a missing one fails its test with the install hint.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::clients::{client, java_clients};
use common::raw::*;
use common::*;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka");

fn script(name: &str) -> String {
    format!("{SCRIPTS}/{name}")
}

/// Every record of a topic as kcat prints it: partition, offset, key, value.
fn kcat_all(bootstrap: &str, topic: &str) -> Vec<(u32, u64, String, String)> {
    let out = client(
        "kcat",
        &["-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\n"],
        None,
    );
    out.lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let p = f.next().unwrap().parse().unwrap();
            let o = f.next().unwrap().parse().unwrap();
            (p, o, f.next().unwrap().to_string(), f.next().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn kcat_lists_produces_and_consumes_100k_keyed_messages_exactly() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "keyed", "--partitions", "8"], None);
    let listing = client("kcat", &["-b", &broker.kafka, "-L"], None);
    assert!(listing.contains("topic \"keyed\" with 8 partitions"), "{listing}");
    assert!(listing.contains("broker 0 at 127.0.0.1:"), "{listing}");
    let input: String = (0..100_000).map(|i| format!("k{}:{i}\n", i % 1000)).collect();
    client("kcat", &["-b", &broker.kafka, "-P", "-t", "keyed", "-K:"], Some(input.as_bytes()));
    let records = kcat_all(&broker.kafka, "keyed");
    assert_eq!(records.len(), 100_000);
    let mut partition_of: HashMap<&str, u32> = HashMap::new();
    let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut seen = vec![false; 100_000];
    for (p, offset, key, value) in &records {
        let n: usize = value.parse().unwrap();
        assert_eq!(*key, format!("k{}", n % 1000), "key and value stay together");
        assert!(!std::mem::replace(&mut seen[n], true), "value {n} twice");
        assert_eq!(*partition_of.entry(key).or_insert(*p), *p, "one key, one partition");
        per_partition.entry(*p).or_default().push(*offset);
        // kcat sends in input order: within a partition, later offsets hold later values.
        let _ = n;
    }
    assert!(seen.iter().all(|s| *s));
    assert!(per_partition.len() > 1, "keys spread over partitions");
    for (p, offsets) in &per_partition {
        assert_eq!(*offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "partition {p} dense, in order");
    }
    for p in per_partition.keys() {
        let values: Vec<usize> = records.iter().filter(|r| r.0 == *p).map(|r| r.3.parse().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "partition {p} keeps the send order");
    }
}

/// Runs a client script against a new broker with a one-partition `topic`; it must print `ok`.
fn script_passes(name: &str, topic: &str) {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", topic, "--partitions", "1"], None);
    let out = client("python3", &[&script(name), &broker.kafka, topic], None);
    assert_eq!(out.trim(), "ok");
}

#[test]
fn aiokafka_round_trips_compressed_batches_with_seeks() {
    script_passes("aiokafka_round_trip.py", "aio");
}

#[test]
fn acks_0_writes_without_answering() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "fire", "--partitions", "1"], None);
    let input: String = (0..5000).map(|i| format!("{i}\n")).collect();
    client("kcat", &["-b", &broker.kafka, "-P", "-t", "fire", "-X", "acks=0"], Some(input.as_bytes()));
    // Nothing acknowledges these: wait until they are all readable.
    let mut records = Vec::new();
    for _ in 0..50 {
        records = kcat_all(&broker.kafka, "fire");
        if records.len() == 5000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let values: Vec<usize> = records.iter().map(|r| r.3.parse().unwrap()).collect();
    assert_eq!(values, (0..5000).collect::<Vec<_>>());
}

#[test]
fn confluent_kafka_idempotent_producer_seeks_and_admin() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    let out = client("python3", &[&script("confluent_basics.py"), &broker.kafka], None);
    assert_eq!(out.trim(), "ok");
}

/// The Java client (kafka-clients from Maven Central): its admin describes the cluster,
/// creates a topic, lists offsets and committed offsets, alters and describes a config and
/// deletes the topic; an idempotent lz4 producer gets dense offsets; a group consumer reads
/// every record once and commits.
#[test]
fn the_java_client_admin_idempotent_producer_and_group_consumer() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    let k = broker.kafka.as_str();
    let out = java_clients(k, k, k, "java", 1);
    assert!(out.starts_with("ok 600"), "{out}");
}

#[test]
fn kafka_python_round_trips_gzip_lz4_and_zstd_batches() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "codecs", "--partitions", "2"], None);
    let out = client("python3", &[&script("kafka_python_compression.py"), &broker.kafka, "codecs"], None);
    assert_eq!(out.trim(), "ok");
    // librdkafka reads the same compressed batches (stored as produced).
    assert_eq!(kcat_all(&broker.kafka, "codecs").len(), 8000);
}

#[test]
fn kafkajs_produces_compressed_batches_that_kcat_reads_back() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    assert!(
        Path::new(SCRIPTS).join("node_modules/kafkajs").exists(),
        "run `npm ci` in tools/tests/kafka (.ci/run does)"
    );
    let out = client("node", &[&script("kafkajs_round_trip.js"), &broker.kafka, "js"], None);
    assert!(out.trim().ends_with("ok"), "{out}");
    let records = kcat_all(&broker.kafka, "js");
    assert_eq!(records.len(), 3000);
    for (p, _, key, value) in &records {
        let mut parts = key.splitn(3, '-');
        let (codec, batch, i) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(*value, format!("{codec} value {batch}/{i} ").repeat(5));
        assert_eq!(*p, i.parse::<u32>().unwrap() % 2);
    }
}

#[test]
fn the_same_data_through_both_protocols() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "both", "--partitions", "1"], None);
    client(
        "kcat",
        &["-b", &broker.kafka, "-P", "-t", "both", "-K:"],
        Some(b"a:from kcat 1\nb:from kcat 2\n"),
    );
    broker.rill(&["produce", "--topic", "both", "--key-separator", ":"], Some("c:from rill 3\n"));
    let native = broker.rill(&["consume", "--topic", "both", "--key-separator", ":"], None);
    assert_eq!(native, "a:from kcat 1\nb:from kcat 2\nc:from rill 3\n");
    let kafka: Vec<String> =
        kcat_all(&broker.kafka, "both").into_iter().map(|r| format!("{}:{}", r.2, r.3)).collect();
    assert_eq!(kafka, ["a:from kcat 1", "b:from kcat 2", "c:from rill 3"]);
}

#[test]
fn malformed_kafka_requests_close_only_their_connection_and_write_nothing() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiVersionsRequest, ProduceRequest, TopicName};

    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "safe", "--partitions", "1"], None);
    let connect = || {
        let s = TcpStream::connect(&broker.kafka).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // A good client keeps a connection open throughout.
    let mut good = connect();
    good.write_all(&request(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default())).unwrap();
    assert!(response(&mut good).is_some());

    let mut garbage: Vec<Vec<u8>> = vec![
        (-1i32).to_be_bytes().to_vec(),
        (1i32 << 30).to_be_bytes().to_vec(),
        [&8i32.to_be_bytes()[..], &[0x7F, 0x7F, 0, 0, 0, 0, 0, 9]].concat(),
        [&8i32.to_be_bytes()[..], &[0, 3, 0x7F, 0, 0, 0, 0, 9]].concat(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ];
    // A Metadata v1 whose topic array claims two billion entries.
    let mut absurd = request(ApiKey::Metadata, 1, 5, &kafka_protocol::messages::MetadataRequest::default());
    let at = absurd.len() - 4;
    absurd[at..].copy_from_slice(&0x7FFF_FFF0i32.to_be_bytes());
    garbage.push(absurd);
    // A length that promises more than is sent, then the client goes quiet and closes.
    garbage.push([&100i32.to_be_bytes()[..], &[0, 18, 0, 3]].concat());
    for bytes in &garbage {
        let mut bad = connect();
        bad.write_all(bytes).unwrap();
        if bytes.len() >= 8 && i32::from_be_bytes(bytes[..4].try_into().unwrap()) == 100 {
            bad.shutdown(std::net::Shutdown::Write).unwrap();
        }
        assert!(closed(&mut bad), "{bytes:?} closes its connection");
    }

    // A produce whose batch CRC is wrong is refused with CORRUPT_MESSAGE; nothing is written.
    let mut batch = rill_net::record_batch::BatchBuilder::new();
    batch.push(&rill_net::record_batch::Record {
        timestamp_ms: 0,
        key: None,
        value: Some(bytes::Bytes::from_static(b"x")),
        headers: Vec::new(),
    });
    let mut bytes = batch.build().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    let mut part = PartitionProduceData::default();
    part.index = 0;
    part.records = Some(bytes.into());
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("safe"));
    topic.partition_data = vec![part];
    let mut produce = ProduceRequest::default();
    produce.acks = -1;
    produce.timeout_ms = 5000;
    produce.topic_data = vec![topic];
    let mut bad = connect();
    bad.write_all(&request(ApiKey::Produce, 9, 77, &produce)).unwrap();
    let reply = response(&mut bad).expect("an error answer, not a closed connection");
    let text = format!("{reply:?}");
    assert_eq!(i32::from_be_bytes(reply[..4].try_into().unwrap()), 77);
    // The partition's error code (2, CORRUPT_MESSAGE) follows its index; base offset -1.
    let needle = [0u8, 0, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    assert!(reply.windows(needle.len()).any(|w| w == needle), "CORRUPT_MESSAGE for partition 0: {text}");
    let offsets = client("kcat", &["-b", &broker.kafka, "-Q", "-t", "safe:0:-1"], None);
    assert!(offsets.contains("safe [0] offset 0"), "nothing written: {offsets}");

    // FindCoordinator for a transaction (not supported) is answered (at v3) with
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED, fatal in the clients that speak v3, not a closed
    // connection; for a group, with this node.
    for (key_type, expected) in [(1i8, 53i16), (0, 0)] {
        let mut find = kafka_protocol::messages::FindCoordinatorRequest::default();
        find.key = StrBytes::from_static_str("some-key");
        find.key_type = key_type;
        good.write_all(&request(ApiKey::FindCoordinator, 3, 3, &find)).unwrap();
        let mut reply = bytes::Bytes::from(response(&mut good).expect("an answer"));
        use kafka_protocol::protocol::Decodable;
        kafka_protocol::messages::ResponseHeader::decode(
            &mut reply,
            ApiKey::FindCoordinator.response_header_version(3),
        )
        .unwrap();
        let decoded = kafka_protocol::messages::FindCoordinatorResponse::decode(&mut reply, 3).unwrap();
        assert_eq!(decoded.error_code, expected, "key type {key_type}");
    }
    // The good connection still works.
    good.write_all(&request(ApiKey::ApiVersions, 3, 2, &ApiVersionsRequest::default())).unwrap();
    let reply = response(&mut good).unwrap();
    assert_eq!(i32::from_be_bytes(reply[..4].try_into().unwrap()), 2);
}

#[test]
fn idempotent_producer_across_a_kill_9_restart_loses_and_duplicates_nothing() {
    let (_tmp, dir) = data_dir();
    let kafka_listen = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    broker.rill(&["topic", "create", "restart", "--partitions", "2"], None);
    const COUNT: usize = 60_000;
    let mut producer = Command::new("timeout")
        .args([
            "180",
            "python3",
            &script("confluent_restart.py"),
            &broker.kafka,
            "restart",
            &COUNT.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 (CI installs confluent-kafka)");
    let mut lines = BufReader::new(producer.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("progress"), "{first}");
    broker.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(producer.wait().unwrap().success(), "producer failed: {rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some(format!("acked {COUNT}").as_str()));
    let records = kcat_all(&broker.kafka, "restart");
    let mut counts = vec![0u32; COUNT];
    for r in &records {
        counts[r.3.parse::<usize>().unwrap()] += 1;
    }
    let lost = counts.iter().filter(|c| **c == 0).count();
    let doubled = counts.iter().filter(|c| **c > 1).count();
    assert_eq!((lost, doubled), (0, 0), "{} records for {COUNT} messages", records.len());
    for p in 0..2u32 {
        let values: Vec<usize> = records.iter().filter(|r| r.0 == p).map(|r| r.3.parse().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "partition {p} in send order");
    }
}

#[test]
fn idempotent_retries_are_acknowledged_once_even_after_a_kill_9_restart() {
    let (_tmp, dir) = data_dir();
    let kafka_listen = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    broker.rill(&["topic", "create", "idem", "--partitions", "1"], None);
    let mut s = TcpStream::connect(&broker.kafka).unwrap();
    let pid = 4242;
    assert_eq!(produce_raw(&mut s, "idem", idempotent_batch(pid, 0, 0, b"zero")), (0, 0));
    assert_eq!(
        produce_raw(&mut s, "idem", idempotent_batch(pid, 0, 0, b"zero")),
        (0, 0),
        "a retry is a duplicate"
    );
    assert_eq!(
        produce_raw(&mut s, "idem", idempotent_batch(pid, 0, 5, b"gap")).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(produce_raw(&mut s, "idem", idempotent_batch(pid, 0, 1, b"one")), (0, 1));
    assert_eq!(
        produce_raw(&mut s, "idem", idempotent_batch(pid, -1, 2, b"old")).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
    drop(s);
    broker.kill9();
    let broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    let mut s = TcpStream::connect(&broker.kafka).unwrap();
    // The retry of a batch acknowledged before the crash is recognised from the log.
    assert_eq!(produce_raw(&mut s, "idem", idempotent_batch(pid, 0, 1, b"one")), (0, 1));
    assert_eq!(produce_raw(&mut s, "idem", idempotent_batch(pid, 0, 2, b"two")), (0, 2));
    let values: Vec<String> = kcat_all(&broker.kafka, "idem").into_iter().map(|r| r.3).collect();
    assert_eq!(values, ["zero", "one", "two"]);
}

/// A produce (v3+) carrying two record batches for one partition is refused with
/// INVALID_RECORD and writes nothing, as Kafka's ProduceRequest validation does ("exactly one
/// record batch" per partition); one batch is taken. (Before, both batches were appended.)
#[test]
fn a_produce_with_two_batches_for_one_partition_is_refused() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "single", "--partitions", "1"], None);
    let mut s = TcpStream::connect(&broker.kafka).unwrap();
    let two: Vec<u8> = [value_batch(&b"first"[..]), value_batch(&b"second"[..])].concat();
    assert_eq!(produce_raw(&mut s, "single", bytes::Bytes::from(two)).0, 87);
    assert_eq!(produce_raw(&mut s, "single", value_batch(&b"alone"[..])), (0, 0));
    let values: Vec<String> = kcat_all(&broker.kafka, "single").into_iter().map(|r| r.3).collect();
    assert_eq!(values, ["alone"]);
}

/// OffsetForLeaderEpoch (KIP-101/KIP-320, v2-v4, advertised in ApiVersions): epoch 0, the only
/// one a single node has had, ends at the log end; a later epoch has no end (-1, -1); a current
/// epoch newer than the broker's is UNKNOWN_LEADER_EPOCH; an unknown topic is
/// UNKNOWN_TOPIC_OR_PARTITION. (Before, the API was not served: clients could not detect
/// truncation.)
#[test]
fn offset_for_leader_epoch_answers_as_a_single_leader_epoch() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        ApiVersionsRequest, ApiVersionsResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
        TopicName,
    };
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "epochs", "--partitions", "1"], None);
    let mut s = TcpStream::connect(&broker.kafka).unwrap();
    for value in [&b"a"[..], b"b", b"c"] {
        assert_eq!(produce_raw(&mut s, "epochs", value_batch(value)).0, 0);
    }
    let versions: ApiVersionsResponse =
        call(&broker.kafka, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let advertised =
        versions.api_keys.iter().find(|k| k.api_key == ApiKey::OffsetForLeaderEpoch as i16).unwrap();
    assert_eq!((advertised.min_version, advertised.max_version), (2, 4));
    let ask = |topic: &'static str, current: i32, epoch: i32, v: i16| {
        let mut p = OffsetForLeaderPartition::default();
        p.partition = 0;
        p.current_leader_epoch = current;
        p.leader_epoch = epoch;
        let mut t = OffsetForLeaderTopic::default();
        t.topic = TopicName(StrBytes::from_static_str(topic));
        t.partitions = vec![p];
        let mut r = OffsetForLeaderEpochRequest::default();
        r.replica_id = kafka_protocol::messages::BrokerId(-1);
        r.topics = vec![t];
        let answer: OffsetForLeaderEpochResponse = call(&broker.kafka, ApiKey::OffsetForLeaderEpoch, v, &r);
        let e = &answer.topics[0].partitions[0];
        (e.error_code, e.leader_epoch, e.end_offset)
    };
    for v in [2, 3, 4] {
        assert_eq!(ask("epochs", 0, 0, v), (0, 0, 3), "v{v}");
        assert_eq!(ask("epochs", -1, 0, v), (0, 0, 3), "v{v}: no current epoch to check");
        assert_eq!(ask("epochs", 0, 3, v), (0, -1, -1), "v{v}: a later epoch");
        assert_eq!(ask("epochs", 5, 0, v), (74, -1, -1), "v{v}: the client knows a newer leader");
        assert_eq!(ask("absent", 0, 0, v), (3, -1, -1), "v{v}");
    }
}

/// ElectLeaders (v0-v2) and ListPartitionReassignments (v0), advertised: the preferred replica
/// leads every partition, so an election is ELECTION_NOT_NEEDED for each partition named,
/// UNKNOWN_TOPIC_OR_PARTITION for one that does not exist, and "all partitions" lists nothing;
/// no reassignment is in progress. (Before, neither API was served.)
#[test]
fn elect_leaders_and_list_partition_reassignments_give_a_single_node_s_answers() {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{
        ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
        ListPartitionReassignmentsResponse, TopicName,
    };
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "led", "--partitions", "2"], None);
    for v in [0, 1, 2] {
        let mut named = TopicPartitions::default();
        named.topic = TopicName(StrBytes::from_static_str("led"));
        named.partitions = vec![0, 1, 7];
        let mut absent = TopicPartitions::default();
        absent.topic = TopicName(StrBytes::from_static_str("absent"));
        absent.partitions = vec![0];
        let mut r = ElectLeadersRequest::default();
        r.election_type = if v >= 1 { 1 } else { 0 };
        r.topic_partitions = Some(vec![named, absent]);
        r.timeout_ms = 5000;
        let answer: ElectLeadersResponse = call(&broker.kafka, ApiKey::ElectLeaders, v, &r);
        let codes: Vec<Vec<(i32, i16)>> = answer
            .replica_election_results
            .iter()
            .map(|t| t.partition_result.iter().map(|p| (p.partition_id, p.error_code)).collect())
            .collect();
        assert_eq!(codes, vec![vec![(0, 84), (1, 84), (7, 3)], vec![(0, 3)]], "v{v}");
        r.topic_partitions = None;
        let all: ElectLeadersResponse = call(&broker.kafka, ApiKey::ElectLeaders, v, &r);
        assert!(all.replica_election_results.is_empty() && all.error_code == 0, "v{v}");
    }
    let mut r = ListPartitionReassignmentsRequest::default();
    r.topics = None;
    r.timeout_ms = 5000;
    let none: ListPartitionReassignmentsResponse =
        call(&broker.kafka, ApiKey::ListPartitionReassignments, 0, &r);
    assert_eq!((none.error_code, none.topics.len()), (0, 0));
}

#[test]
fn a_second_broker_on_a_taken_kafka_port_is_refused() {
    let (_tmp, dir) = data_dir();
    let kafka_listen = format!("127.0.0.1:{}", free_port());
    let first = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    let (_tmp2, other) = data_dir();
    let out = Command::new(RILL)
        .args(["serve", "--native-listen", "127.0.0.1:0", "--kafka-listen", &kafka_listen])
        .args(["--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&other)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success(), "SO_REUSEPORT must not let two brokers share a port");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another broker"), "{stderr}");
    // The first broker is untouched.
    client("kcat", &["-b", &first.kafka, "-L"], None);
}

/// A single node's cluster id (Metadata, DescribeCluster) is Kafka-shaped, written once to
/// the data directory's node.toml and kept across restarts; another directory is another
/// cluster. (Before, every broker answered the constant "rill-single-node".)
#[test]
fn a_single_node_keeps_its_cluster_id_across_restarts() {
    use kafka_protocol::messages::{
        DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    };
    let cluster_id = |kafka: &str| {
        let m: MetadataResponse = call(kafka, ApiKey::Metadata, 12, &MetadataRequest::default());
        let d: DescribeClusterResponse =
            call(kafka, ApiKey::DescribeCluster, 0, &DescribeClusterRequest::default());
        let id = m.cluster_id.expect("a cluster id").to_string();
        assert_eq!(d.cluster_id.as_str(), id);
        id
    };
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    let id = cluster_id(&broker.kafka);
    assert_eq!(id.len(), 22, "16 bytes in URL-safe base64, as Kafka's: {id}");
    assert!(std::fs::read_to_string(dir.join("node.toml")).unwrap().contains(&id));
    broker.stop();
    let broker = Broker::start(&dir);
    assert_eq!(cluster_id(&broker.kafka), id);
    let (_tmp2, other) = data_dir();
    let second = Broker::start(&other);
    assert_ne!(cluster_id(&second.kafka), id);
}

#[test]
fn bench_over_the_kafka_protocol_reports_consistent_figures() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    let r = bench_json(&[
        "--protocol",
        "kafka",
        "--broker",
        &broker.kafka,
        "--warmup-s",
        "0",
        "--duration-s",
        "1",
        "--partitions",
        "4",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--batch-bytes",
        "65536",
        "--consume-backlog",
    ]);
    let published = r["published_msgs"].as_u64().unwrap();
    assert!(published > 1000, "{r}");
    assert_eq!(r["consumed_msgs"].as_u64().unwrap(), published, "consumers see every message");
    assert!(r["backlog_consume_mb_per_s"].as_f64().unwrap() > 0.0, "{r}");
    // The bench's topic is an ordinary topic to every other client.
    let listing = client("kcat", &["-b", &broker.kafka, "-L"], None);
    assert!(listing.contains("with 4 partitions"), "{listing}");
}

#[test]
fn old_message_formats_are_refused_with_unsupported_version() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "magic", "--partitions", "1"], None);
    let mut batch = idempotent_batch(-1, -1, -1, b"v").to_vec();
    batch[16] = 1; // magic 1: a v1 message set
    let mut s = TcpStream::connect(&broker.kafka).unwrap();
    assert_eq!(produce_raw(&mut s, "magic", batch.into()), (35, -1), "UNSUPPORTED_VERSION");
    assert!(kcat_all(&broker.kafka, "magic").is_empty(), "nothing written");
}

#[test]
fn topics_are_auto_created_only_when_enabled_and_asked_for() {
    let (_tmp, dir) = data_dir();
    // Off by default, as in Redpanda: a producer to an unknown topic fails, nothing is created.
    let broker = Broker::start(&dir);
    let mut producer = Command::new("timeout")
        .args(["60", "kcat", "-b", &broker.kafka, "-P", "-t", "typo", "-X", "message.timeout.ms=3000"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    producer.stdin.take().unwrap().write_all(b"lost\n").unwrap();
    let out = producer.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "delivery fails: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(broker.rill(&["topic", "list"], None), "", "nothing was created");
    broker.stop();

    // On: a producer's first send creates the topic with default_partitions.
    let broker = Broker::start_args(
        &dir,
        Path::new("small-vm"),
        "127.0.0.1:0",
        &["--auto-create-topics", "--default-partitions", "3"],
    );
    let input: String = (0..300).map(|i| format!("k{i}:v{i}\n")).collect();
    client("kcat", &["-b", &broker.kafka, "-P", "-t", "fresh", "-K:"], Some(input.as_bytes()));
    let describe = broker.rill(&["topic", "describe", "fresh"], None);
    assert!(describe.starts_with("topic fresh: 3 partitions"), "{describe}");
    assert_eq!(kcat_all(&broker.kafka, "fresh").len(), 300);
    let listing = client("kcat", &["-b", &broker.kafka, "-L", "-t", "fresh"], None);
    assert!(listing.contains("topic \"fresh\" with 3 partitions"), "{listing}");
    // A consumer does not ask for creation (librdkafka's allow.auto.create.topics=false).
    let _ = Command::new("timeout")
        .args([
            "20",
            "kcat",
            "-b",
            &broker.kafka,
            "-C",
            "-t",
            "ghost",
            "-e",
            "-X",
            "topic.metadata.refresh.interval.ms=500",
        ])
        .output()
        .unwrap();
    assert_eq!(broker.rill(&["topic", "list"], None), "fresh\n", "the consumer created nothing");
}

#[test]
fn admin_clients_alter_topic_configs_and_they_take_effect() {
    let (tmp, dir) = data_dir();
    // Small batches and a quick retention check, so segments are small and deletions prompt.
    let profile = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/profiles/small-vm.toml"),
    )
    .unwrap()
    .replace("batch_bytes_max = 8388608", "batch_bytes_max = 1048576")
    .replace("retention_check_interval_ms = 30000", "retention_check_interval_ms = 200")
    .replace("name = \"small-vm\"", "name = \"quick-retention\"");
    assert!(
        profile.contains("batch_bytes_max = 1048576") && profile.contains("= 200\n"),
        "the test edits the profile"
    );
    let path = tmp.path().join("quick-retention.toml");
    std::fs::write(&path, profile).unwrap();
    let broker = Broker::start_with_profile(&dir, &path);
    let out = client("python3", &[&script("confluent_alter_configs.py"), &broker.kafka], None);
    assert!(out.starts_with("ok "), "{out}");
    eprintln!("alter configs: {out}");
    // The altered settings are the topic's from now on, across a restart.
    let describe = broker.rill(&["topic", "describe", "altered"], None);
    assert!(describe.contains("retention_bytes=4194304"), "{describe}");
    broker.stop();
    let broker = Broker::start_with_profile(&dir, &path);
    let describe = broker.rill(&["topic", "describe", "altered"], None);
    assert!(
        describe.contains("retention_bytes=4194304 ") && describe.contains("segment_bytes=default"),
        "{describe}"
    );
    // The same through the native protocol: `rill topic alter` changes only what it names.
    broker.rill(
        &["topic", "alter", "altered", "--retention-ms", "3600000", "--durability", "interval:5"],
        None,
    );
    let describe = broker.rill(&["topic", "describe", "altered"], None);
    let settings = describe.lines().nth(1).unwrap();
    assert_eq!(
        settings,
        "settings: segment_bytes=default retention_ms=3600000 retention_bytes=4194304 durability=interval:5"
    );
    broker.rill(&["topic", "alter", "altered", "--retention-bytes", "default"], None);
    let describe = broker.rill(&["topic", "describe", "altered"], None);
    assert!(describe.contains(" retention_bytes=default "), "{describe}");
    let input: String = (0..10).map(|i| format!("{i}\n")).collect();
    broker.rill(&["produce", "--topic", "altered"], Some(&input));
    assert!(broker.rill(&["consume", "--topic", "altered"], None).ends_with("9\n"), "still serving");
    // Bad values are refused with one clear line, and change nothing.
    // (Kafka's smallest segment.bytes is 14; 1000 is accepted, as by Kafka.)
    for bad in [&["--segment-bytes", "13"][..], &["--durability", "sometimes"], &["--retention-ms", "soon"]] {
        let out = Command::new(RILL)
            .args(["--broker", &broker.addr, "topic", "alter", "altered"])
            .args(bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("rill: "), "{bad:?}");
    }
    assert_eq!(
        broker.rill(&["topic", "describe", "altered"], None).lines().nth(1).unwrap(),
        settings.replace(" retention_bytes=4194304", " retention_bytes=default")
    );
    broker.rill(&["topic", "alter", "altered", "--retention-ms", "-1"], None);
    let describe = broker.rill(&["topic", "describe", "altered"], None);
    assert!(describe.contains(" retention_ms=unlimited "), "{describe}");
    broker.rill(&["topic", "create", "forever", "--retention-bytes", "-1"], None);
    let describe = broker.rill(&["topic", "describe", "forever"], None);
    assert!(describe.contains(" retention_bytes=unlimited "), "{describe}");
}

#[test]
fn list_offsets_finds_the_record_with_the_largest_timestamp() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    let out = client("python3", &[&script("confluent_max_timestamp.py"), &broker.kafka], None);
    assert_eq!(out.trim(), "ok");
}

#[test]
fn a_connections_produces_and_commits_take_effect_in_order() {
    script_passes("confluent_ordering.py", "ordered");
}

#[test]
fn an_idempotent_retry_after_kill_9_and_several_segments_gets_its_first_offset() {
    let (_tmp, dir) = data_dir();
    let kafka_listen = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    broker.rill(&["topic", "create", "rolled", "--partitions", "1", "--segment-bytes", "9437184"], None);
    let mut s = TcpStream::connect(&broker.kafka).unwrap();
    // Producer 77's batch is written; say its acknowledgement is lost.
    assert_eq!(produce_raw(&mut s, "rolled", idempotent_batch(77, 0, 0, b"first")), (0, 0));
    // Other producers fill several segments (of 9 MiB: a segment holds the largest batch).
    for i in 0..45u8 {
        assert_eq!(produce_raw(&mut s, "rolled", value_batch(vec![i; 1 << 20])), (0, 1 + i as i64));
    }
    drop(s);
    broker.kill9();
    let segments = std::fs::read_dir(dir.join("topics/rolled/0"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count();
    assert!(segments >= 5, "{segments} segments written in between");
    let broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    let mut s = TcpStream::connect(&broker.kafka).unwrap();
    // The retry gets the first copy's offset back and writes nothing: the next batch lands
    // at the log end of before the crash.
    assert_eq!(produce_raw(&mut s, "rolled", idempotent_batch(77, 0, 0, b"first")), (0, 0));
    assert_eq!(produce_raw(&mut s, "rolled", idempotent_batch(77, 0, 1, b"second")), (0, 46));
}

//! A node with many partitions starts and serves within a low open-file limit: segment files
//! are opened through each shard's bounded cache instead of one descriptor per segment, and
//! connections are capped so that they never take the descriptors a log needs.

mod common;

use common::{Broker, data_dir};

const PARTITIONS: usize = 10_000;
/// The limit the broker runs under (soft and hard), a tenth of the partition count.
const OPEN_FILES: u32 = 1024;

/// End offsets by partition, from `rill topic describe` (`u64::MAX` where a partition is not
/// listed with offsets, as an offline one is not).
fn end_offsets(broker: &Broker) -> Vec<u64> {
    let out = broker.rill(&["topic", "describe", "p"], None);
    let mut ends = vec![u64::MAX; PARTITIONS];
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(partition) = fields.first().and_then(|f| f.parse::<usize>().ok()) else { continue };
        if let Some(end) = fields.get(3).and_then(|f| f.parse::<u64>().ok()) {
            ends[partition] = end;
        }
    }
    ends
}

fn one_record_each(broker: &Broker, round: usize) {
    let lines: String = (0..PARTITIONS).map(|i| format!("round{round}-{i}\n")).collect();
    broker.rill(&["produce", "--topic", "p", "--batch-records", "1", "--acks", "leader"], Some(&lines));
}

/// 10,000 keyed records with the producer's defaults (durable acks, batches of many
/// partitions in each request): every partition's write and sync in flight at once.
fn keyed_records(broker: &Broker) {
    let lines: String = (0..PARTITIONS).map(|i| format!("k{i}:v{i}\n")).collect();
    broker.rill(&["produce", "--topic", "p", "--key-separator", ":"], Some(&lines));
}

fn phase(t: &std::time::Instant, name: &str) {
    eprintln!("{:>7.1} s  {name}", t.elapsed().as_secs_f64());
}

#[test]
fn ten_thousand_partitions_start_and_serve_under_a_low_open_file_limit() {
    let t = std::time::Instant::now();
    let (_tmp, dir) = data_dir();
    let broker = Broker::start_limited(&dir, OPEN_FILES);
    broker.rill(&["topic", "create", "p", "--partitions", &PARTITIONS.to_string()], None);
    phase(&t, "created");
    one_record_each(&broker, 0);
    phase(&t, "produced");
    assert!(end_offsets(&broker).iter().all(|&end| end == 1), "every partition took its record");
    broker.stop();
    phase(&t, "stopped");

    let broker = Broker::start_limited(&dir, OPEN_FILES);
    phase(&t, "restarted");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", broker.child.id())).unwrap().count();
    assert!(fds < OPEN_FILES as usize, "{fds} descriptors open");
    let ends = end_offsets(&broker);
    let wrong: Vec<usize> = (0..PARTITIONS).filter(|&p| ends[p] != 1).collect();
    assert!(
        wrong.is_empty(),
        "{} partitions lost their record or are offline, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    one_record_each(&broker, 1);
    phase(&t, "produced again");
    assert!(
        end_offsets(&broker).iter().all(|&end| end == 2),
        "every partition takes appends after the restart"
    );
    keyed_records(&broker);
    phase(&t, "produced keyed");
    let total: u64 = end_offsets(&broker).iter().sum();
    assert_eq!(total, 3 * PARTITIONS as u64, "every keyed record was taken");
    for partition in [0, 1, 4_321, PARTITIONS - 1] {
        let out = broker.rill(&["consume", "--topic", "p", "--partition", &partition.to_string()], None);
        let expected: Vec<String> = (0..2).map(|round| format!("round{round}-{partition}")).collect();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..2], expected, "partition {partition} reads back");
        assert!(lines[2..].iter().all(|l| l.starts_with('v')), "partition {partition}: {lines:?}");
    }
    phase(&t, "consumed");
    broker.stop();
}

/// Under `ulimit -n 256`, a client opening hundreds of connections gets only the share of
/// descriptors the segment files leave (the rest are refused at once), so the broker can still
/// create a topic and write to every partition over a connection it kept. (Before, connections
/// took every descriptor and the topic's files could not be created.)
#[test]
fn connections_never_take_the_descriptors_logs_need() {
    use common::raw::{call_on, produce_request, value_batch};
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{
        ApiKey, CreateTopicsRequest, CreateTopicsResponse, ProduceResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let (_tmp, dir) = data_dir();
    let broker = Broker::start_limited(&dir, 256);
    let mut first = std::net::TcpStream::connect(&broker.kafka).unwrap();
    first.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let _: kafka_protocol::messages::ApiVersionsResponse =
        call_on(&mut first, ApiKey::ApiVersions, 3, &kafka_protocol::messages::ApiVersionsRequest::default());
    // Hold 400 more connections (some are refused: the broker closes them).
    let held: Vec<std::net::TcpStream> =
        (0..400).filter_map(|_| std::net::TcpStream::connect(&broker.kafka).ok()).collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("late"));
    topic.num_partitions = 40;
    topic.replication_factor = 1;
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![topic];
    create.timeout_ms = 30_000;
    let created: CreateTopicsResponse = call_on(&mut first, ApiKey::CreateTopics, 5, &create);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0].error_message);
    for partition in 0..40 {
        let produce = produce_request("late", partition, value_batch(&b"kept"[..]));
        let r: ProduceResponse = call_on(&mut first, ApiKey::Produce, 9, &produce);
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "partition {partition}");
    }
    drop(held);
}

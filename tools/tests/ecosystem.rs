//! The Kafka ecosystem beyond plain producers and consumers, against a real `rill serve`: the
//! Java AdminClient's topic and log APIs (validateOnly, deleteRecords, describeLogDirs), and
//! transactional producers, which must fail at once while Rill has no transactions.

mod common;

use std::path::Path;
use std::time::Duration;

use common::clients::{client, java, kafka_script};
use common::*;

/// Rill has no transactions yet: a transactional producer of librdkafka, kafka-python and the
/// Java client fails `initTransactions()` at once with a fatal error saying so (it used to get
/// COORDINATOR_NOT_AVAILABLE, which they retry for a minute), and idempotent producers still
/// work beside it.
#[test]
fn transactional_producers_fail_at_once_with_a_clear_error() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "plain", "--partitions", "1"], None);
    let out = client("python3", &[&kafka_script("transactions_refused.py"), &broker.kafka, "plain"], None);
    assert!(out.starts_with("ok "), "{out}");
    let out = java("Transactions.java", &[&broker.kafka]);
    assert!(out.starts_with("ok "), "{out}");
}

/// The Java AdminClient: createTopics validateOnly checks and creates nothing; deleteRecords
/// moves a partition's log start inside a segment (listOffsets earliest and consumers follow
/// it); describeLogDirs gives the data directory with every partition's size. The deletion
/// survives a kill -9: after the restart the log still starts there.
#[test]
fn java_admin_validates_deletes_records_and_describes_log_dirs() {
    let (_tmp, dir) = data_dir();
    let kafka_listen = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    let out = java("AdminApis.java", &[&broker.kafka, "admin-apis"]);
    assert!(out.starts_with("ok "), "{out}");
    broker.kill9();
    let broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    let described = broker.rill(&["topic", "describe", "admin-apis"], None);
    let row: Vec<&str> = described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"0"))
        .unwrap_or_else(|| panic!("{described}"));
    assert_eq!((row[2], row[3]), ("40", "100"), "{described}");
    let first = client(
        "kcat",
        &[
            "-b",
            &broker.kafka,
            "-C",
            "-t",
            "admin-apis",
            "-p",
            "0",
            "-o",
            "beginning",
            "-c",
            "1",
            "-q",
            "-f",
            "%o %s\n",
        ],
        None,
    );
    assert_eq!(first.trim(), "40 v40");
}

/// Kafka's topic-config catalogue with confluent-kafka: every name accepted with Kafka's
/// validation and described with source and synonyms, describe-then-create round trips, and the
/// configs Rill enforces take effect (tools/tests/kafka/topic_configs.py); segment.bytes=10000
/// gives small segments on disk.
#[test]
fn kafka_topic_configs_are_validated_described_round_tripped_and_enforced() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    let out = client("python3", &[&kafka_script("topic_configs.py"), &broker.kafka], None);
    assert_eq!(out.trim(), "ok");
    let partition = dir.join("topics").join("source").join("0");
    let segments = std::fs::read_dir(&partition)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count();
    // 40 batches of over 300 bytes with 10,000-byte segments.
    assert!(segments >= 2, "{segments} segments in {}", partition.display());
}

/// A profile that checks for partitions to compact every 200 ms (the shipped ones: 15 s).
fn quick_cleaner_profile(dir: &Path) -> std::path::PathBuf {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../tuning/profiles/small-vm.toml");
    let text = std::fs::read_to_string(shipped).unwrap();
    assert!(text.contains("check_interval_ms = 15000"), "the shipped profile's cleaner interval");
    let path = dir.join("quick-cleaner.toml");
    std::fs::write(&path, text.replace("check_interval_ms = 15000", "check_interval_ms = 200")).unwrap();
    path
}

type Acked = std::collections::BTreeMap<String, (u64, String)>;

/// Runs tools/tests/kafka/compaction.py `produce`; the latest acknowledged (offset, value) of
/// each key.
fn produce_round(bootstrap: &str, round: u32, latest: &mut Acked) {
    let out = client(
        "python3",
        &[&kafka_script("compaction.py"), "produce", bootstrap, "compacted", &round.to_string()],
        None,
    );
    for line in out.lines().filter_map(|l| l.strip_prefix("acked ")) {
        let f: Vec<&str> = line.splitn(3, ' ').collect();
        let offset: u64 = f[1].parse().unwrap();
        if latest.get(f[0]).is_none_or(|(o, _)| *o < offset) {
            latest.insert(f[0].to_string(), (offset, f[2].to_string()));
        }
    }
}

/// Every record the topic holds now: (offset, key, value).
fn read_back(bootstrap: &str) -> Vec<(u64, String, String)> {
    let out = client("python3", &[&kafka_script("compaction.py"), "check", bootstrap, "compacted"], None);
    out.lines()
        .filter_map(|l| l.strip_prefix("record "))
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, ' ').collect();
            (f[0].parse().unwrap(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// What compaction may leave: each key's latest acknowledged value at its acknowledged offset,
/// once, and older versions only where the cleaner has not been yet; offsets ascending.
fn check_compacted(records: &[(u64, String, String)], latest: &Acked) {
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0), "offsets ascend, none twice");
    for (key, (offset, value)) in latest {
        if value == "-" {
            continue; // a tombstone may be gone
        }
        let found = records.iter().find(|(o, _, _)| o == offset);
        assert_eq!(found.map(|(_, k, v)| (k, v)), Some((key, value)), "{key}'s latest at {offset}");
    }
    for (offset, key, _) in records {
        let (latest_offset, _) = latest.get(key).unwrap_or_else(|| panic!("unknown key {key}"));
        assert!(offset <= latest_offset, "{key} at {offset} after its latest {latest_offset}");
    }
}

/// Compaction with confluent-kafka: a keyless record is refused; keyed records (plain and lz4
/// batches) and tombstones go to a compacted topic with 4,000-byte segments; the cleaner keeps
/// the latest value of every key at its original offset and removes older ones, and tombstones
/// disappear after delete.retention.ms. Then kill -9 while the cleaner runs, several times: after
/// each restart every key's latest value is still there once, at its offset.
#[test]
fn compaction_keeps_the_latest_value_of_every_key_and_survives_kill_9() {
    let (tmp, dir) = data_dir();
    let profile = quick_cleaner_profile(tmp.path());
    let kafka_listen = format!("127.0.0.1:{}", free_port());
    let broker = Broker::start_with(&dir, &profile, &kafka_listen);
    let mut latest = Acked::new();
    produce_round(&broker.kafka, 0, &mut latest);
    let written: u64 = 200 + 5 + 60;
    // The cleaner runs every 200 ms: wait until the old versions of the sealed keys are gone.
    let started = std::time::Instant::now();
    let records = loop {
        let records = read_back(&broker.kafka);
        let versions = records.iter().filter(|(_, k, _)| k.starts_with('k')).count();
        // 20 keys (5 of them tombstones, which may be gone too).
        if versions <= 20 {
            break records;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not compacted: {versions} versions of 20 keys");
        std::thread::sleep(Duration::from_millis(300));
    };
    check_compacted(&records, &latest);
    assert!((records.len() as u64) < written, "{} of {written} records left", records.len());
    // Tombstones go after delete.retention.ms (1.5 s) and a later cleaning.
    let started = std::time::Instant::now();
    loop {
        let records = read_back(&broker.kafka);
        check_compacted(&records, &latest);
        let deleted: Vec<_> =
            records.iter().filter(|(_, k, _)| k.starts_with('k') && k.as_str() < "k05").collect();
        if deleted.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "tombstones stay: {deleted:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // kill -9 while the cleaner rewrites (it runs every 200 ms; the kills land 0-350 ms after a
    // round of writes): nothing acknowledged is lost or doubled. RILL_SLOW=1: 30 rounds.
    let mut broker = broker;
    let rounds = if std::env::var("RILL_SLOW").is_ok_and(|v| v == "1") { 30 } else { 3 };
    for round in 1..=rounds {
        produce_round(&broker.kafka, round, &mut latest);
        std::thread::sleep(Duration::from_millis(50 * (round as u64 * 7 % 8)));
        broker.kill9();
        broker = Broker::start_with(&dir, &profile, &kafka_listen);
        check_compacted(&read_back(&broker.kafka), &latest);
    }
}

/// Kafka Streams (kafka-streams from Maven Central): a KTable count and a windowed count behind a
/// repartition run against Rill; stopped, its state directory deleted and restarted, it restores
/// the same counts from Rill's compacted changelogs (tools/tests/java/Streams.java).
#[test]
fn kafka_streams_restores_its_stores_from_compacted_changelogs() {
    let (tmp, dir) = data_dir();
    let profile = quick_cleaner_profile(tmp.path());
    let broker = Broker::start_with(&dir, &profile, &format!("127.0.0.1:{}", free_port()));
    let state = tmp.path().join("streams-state");
    let out = java("Streams.java", &[&broker.kafka, state.to_str().unwrap()]);
    assert!(out.starts_with("ok 20"), "{out}");
}

/// A Kafka Connect distributed worker (connect-runtime's ConnectDistributed), started as its
/// own JVM process with its REST API on loopback.
struct ConnectWorker {
    child: std::process::Child,
    rest: String,
}

impl ConnectWorker {
    fn start(dir: &Path, bootstrap: &str, rest_port: u16) -> ConnectWorker {
        let props = dir.join("worker.properties");
        std::fs::write(
            &props,
            format!(
                "bootstrap.servers={bootstrap}\n\
                 group.id=rill-connect\n\
                 listeners=http://127.0.0.1:{rest_port}\n\
                 key.converter=org.apache.kafka.connect.storage.StringConverter\n\
                 value.converter=org.apache.kafka.connect.storage.StringConverter\n\
                 config.storage.topic=connect-configs\n\
                 offset.storage.topic=connect-offsets\n\
                 status.storage.topic=connect-status\n\
                 config.storage.replication.factor=1\n\
                 offset.storage.replication.factor=1\n\
                 status.storage.replication.factor=1\n\
                 offset.flush.interval.ms=500\n\
                 scheduled.rebalance.max.delay.ms=1000\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("connect-{rest_port}.log"))).unwrap();
        let child = std::process::Command::new("java")
            .args([
                "-cp",
                &common::clients::java_classpath_of("java/connect"),
                "org.apache.kafka.connect.cli.ConnectDistributed",
            ])
            .arg(&props)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("java (scripts/test-deps.sh installs a JDK)");
        let worker = ConnectWorker { child, rest: format!("127.0.0.1:{rest_port}") };
        let started = std::time::Instant::now();
        while worker.http("GET", "/connectors", None).is_none_or(|(status, _)| status != 200) {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the Connect worker's REST API never answered"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        worker
    }

    /// One HTTP request to the worker's REST API: (status, body), or None if it cannot connect.
    fn http(&self, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.rest).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.rest,
            body.len()
        );
        s.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((status, body))
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ConnectWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of the sink file once it holds `count` distinct ones (every source line, perhaps some
/// twice: Connect delivers at least once across a kill).
fn sink_lines(path: &Path, count: usize) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let distinct: std::collections::BTreeSet<&String> = lines.iter().collect();
        if distinct.len() >= count {
            return lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "sink holds {} of {count} lines",
            distinct.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Kafka Connect: a distributed worker starts against Rill (its config, offset and status topics
/// compacted, as it insists), runs a file source into a topic and a file sink out of it through
/// its REST API; killed with kill -9 and restarted, it resumes from its stored offsets and the
/// sink file ends up holding every source line.
#[test]
fn kafka_connect_runs_file_connectors_and_resumes_after_kill_9() {
    let (tmp, dir) = data_dir();
    let profile = quick_cleaner_profile(tmp.path());
    let broker = Broker::start_with(&dir, &profile, &format!("127.0.0.1:{}", free_port()));
    let (source, sink) = (tmp.path().join("source.txt"), tmp.path().join("sink.txt"));
    let write_lines = |range: std::ops::Range<u32>| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&source).unwrap();
        for i in range {
            writeln!(f, "line {i:04}").unwrap();
        }
    };
    write_lines(0..100);
    let rest_port = free_port();
    let worker = ConnectWorker::start(tmp.path(), &broker.kafka, rest_port);
    let described = broker.rill(&["topic", "describe", "connect-offsets"], None);
    assert!(described.contains("topic connect-offsets: 25 partitions"), "{described}");
    // Rill does not auto-create topics by default: the source has Connect create its topic
    // (KIP-158's topic.creation.*), through the admin API.
    let connector = |name: &str, class: &str, file: &Path, topic_key: &str| {
        let creation = if topic_key == "topic" {
            r#","topic.creation.default.replication.factor":"1","topic.creation.default.partitions":"2""#
        } else {
            ""
        };
        format!(
            r#"{{"name":"{name}","config":{{"connector.class":"{class}","tasks.max":"1","file":"{}","{topic_key}":"lines"{creation}}}}}"#,
            file.display()
        )
    };
    for (name, class, file, key) in [
        ("source", "org.apache.kafka.connect.file.FileStreamSourceConnector", &source, "topic"),
        ("sink", "org.apache.kafka.connect.file.FileStreamSinkConnector", &sink, "topics"),
    ] {
        let (status, body) =
            worker.http("POST", "/connectors", Some(&connector(name, class, file, key))).unwrap();
        assert_eq!(status, 201, "creating {name}: {body}");
    }
    sink_lines(&sink, 100);
    worker.kill9();
    write_lines(100..200);
    let worker = ConnectWorker::start(tmp.path(), &broker.kafka, rest_port);
    let (status, body) = worker.http("GET", "/connectors", None).unwrap();
    assert!(status == 200 && body.contains("source") && body.contains("sink"), "{body}");
    let lines = sink_lines(&sink, 200);
    let expected: Vec<String> = (0..200).map(|i| format!("line {i:04}")).collect();
    let mut distinct: Vec<String> = lines.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct, expected, "every source line reached the sink");
    drop(worker);
}

/// Runs one of Kafka's command-line tools (a main class of kafka-tools 4.4) with `java -cp`;
/// its stdout.
fn kafka_tool(class: &str, args: &[&str]) -> String {
    let classpath = common::clients::java_classpath_of("java");
    let mut all = vec!["-cp", classpath.as_str(), class];
    all.extend_from_slice(args);
    client("java", &all, None)
}

/// Kafka's command-line tools against Rill: ProducerPerformance writes, ConsumerPerformance
/// reads in a group, kafka-consumer-groups describes the group's offsets and lag and resets them,
/// kafka-configs alters and describes a topic config, kafka-delete-records moves a log start and
/// kafka-log-dirs describes the partitions' sizes. Prints the two performance tools' lines.
#[test]
fn kafka_command_line_tools_work_unchanged() {
    let (tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    let b = broker.kafka.as_str();
    broker.rill(&["topic", "create", "tools", "--partitions", "3"], None);
    let produced = kafka_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--topic",
            "tools",
            "--num-records",
            "30000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={b}"),
            "acks=all",
        ],
    );
    let summary = produced.lines().last().unwrap_or_default();
    assert!(summary.starts_with("30000 records sent"), "{produced}");
    eprintln!("ProducerPerformance: {summary}");
    let consumed = kafka_tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        &[
            "--bootstrap-server",
            b,
            "--topic",
            "tools",
            "--num-records",
            "30000",
            "--group",
            "perf",
            "--timeout",
            "60000",
        ],
    );
    eprintln!("ConsumerPerformance: {}", consumed.trim());
    let data = consumed.lines().last().unwrap_or_default();
    // start, end, MB, MB/s, messages, messages/s, ...
    assert_eq!(data.split(',').map(str::trim).nth(4), Some("30000"), "{consumed}");
    let groups = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    let described = kafka_tool(groups, &["--bootstrap-server", b, "--describe", "--group", "perf"]);
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    let rows: Vec<Vec<&str>> = described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&"perf") && f.get(1) == Some(&"tools"))
        .collect();
    assert_eq!(rows.len(), 3, "{described}");
    let committed: u64 = rows.iter().map(|r| r[3].parse::<u64>().unwrap()).sum();
    assert_eq!(committed, 30000, "{described}");
    assert!(rows.iter().all(|r| r[5] == "0"), "no lag: {described}");
    let reset = kafka_tool(
        groups,
        &[
            "--bootstrap-server",
            b,
            "--reset-offsets",
            "--group",
            "perf",
            "--topic",
            "tools",
            "--to-earliest",
            "--execute",
        ],
    );
    let after: Vec<Vec<&str>> = reset
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&"perf") && f.get(1) == Some(&"tools"))
        .collect();
    assert!(after.len() == 3 && after.iter().all(|r| r[3] == "0"), "{reset}");
    let configs = "org.apache.kafka.tools.ConfigCommand";
    kafka_tool(
        configs,
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "topics",
            "--entity-name",
            "tools",
            "--alter",
            "--add-config",
            "retention.ms=3600000",
        ],
    );
    let config = kafka_tool(
        configs,
        &["--bootstrap-server", b, "--entity-type", "topics", "--entity-name", "tools", "--describe"],
    );
    assert!(config.contains("retention.ms=3600000"), "{config}");
    let offsets = tmp.path().join("delete.json");
    std::fs::write(&offsets, r#"{"partitions":[{"topic":"tools","partition":0,"offset":10}],"version":1}"#)
        .unwrap();
    let deleted = kafka_tool(
        "org.apache.kafka.tools.DeleteRecordsCommand",
        &["--bootstrap-server", b, "--offset-json-file", offsets.to_str().unwrap()],
    );
    assert!(deleted.contains("tools-0") && deleted.contains("low_watermark: 10"), "{deleted}");
    let dirs = kafka_tool(
        "org.apache.kafka.tools.LogDirsCommand",
        &["--bootstrap-server", b, "--describe", "--topic-list", "tools"],
    );
    let json = dirs.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{dirs}"));
    let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
    let partitions =
        parsed["brokers"][0]["logDirs"][0]["partitions"].as_array().unwrap_or_else(|| panic!("{json}"));
    assert_eq!(partitions.len(), 3, "{json}");
    assert!(partitions.iter().all(|p| p["size"].as_u64().unwrap_or(0) > 0), "{json}");
}

//! The admin listener of a real `rill serve` under real Kafka clients: `/metrics` passes
//! `promtool check metrics` and its figures equal what the clients did (records and bytes
//! produced and fetched, high watermarks, a group's committed offsets, lag and members); a
//! group id with quotes and a newline cannot break the format; a real Prometheus server scrapes
//! it and a PromQL query for lag returns what the test committed; every metric the shipped
//! Grafana dashboard queries exists; readiness answers 503 while the shards open their logs and
//! while a graceful stop drains.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka");
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/rill-dashboard.json");

/// `GET path` on `addr`: the status code and body (the listener closes every connection).
fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Samples of an exposition by their series as written (`name{labels}`).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test-deps.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn value(all: &BTreeMap<String, f64>, series: &str) -> f64 {
    *all.get(series).unwrap_or_else(|| panic!("no {series} in\n{all:#?}"))
}

/// Percent-encodes a URL query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[test]
fn metrics_equal_what_kafka_clients_did_and_prometheus_scrapes_them() {
    let (tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "watched", "--partitions", "3"], None);
    let lag = 7;
    let mut traffic = Command::new("python3")
        .arg(format!("{SCRIPTS}/metrics_traffic.py"))
        .args([&broker.kafka, "watched", "3", "readers", &lag.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(traffic.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let did: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));

    // An error answered: metadata of a topic that does not exist (UNKNOWN_TOPIC_OR_PARTITION).
    let mut request = kafka_protocol::messages::MetadataRequest::default();
    let mut unknown = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    unknown.name = Some(kafka_protocol::messages::TopicName(
        kafka_protocol::protocol::StrBytes::from_static_str("absent"),
    ));
    request.topics = Some(vec![unknown]);
    let answer: kafka_protocol::messages::MetadataResponse =
        common::raw::call(&broker.kafka, kafka_protocol::messages::ApiKey::Metadata, 9, &request);
    assert_eq!(answer.topics[0].error_code, 3);

    let (status, text) = get(&broker.admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    promtool_check(&text);
    assert!(!text.lines().any(|l| l.starts_with("rill_fake_metric")), "a group id broke the format:\n{text}");
    let all = samples(&text);
    assert_eq!(value(&all, r#"rill_kafka_records_produced_total{topic="watched"}"#), 3000.0);
    assert_eq!(value(&all, r#"rill_kafka_records_fetched_total{topic="watched"}"#), 3000.0);
    // The stored batches are the produced ones, fetched back unchanged and once each.
    let produced = value(&all, r#"rill_kafka_request_bytes_total{topic="watched",request="produce"}"#);
    assert!(produced > 3000.0 * 10.0, "{produced}");
    assert_eq!(value(&all, r#"rill_kafka_request_bytes_total{topic="watched",request="consume"}"#), produced);
    assert_eq!(value(&all, r#"rill_kafka_partitions{topic="watched"}"#), 3.0);
    assert_eq!(value(&all, r#"rill_kafka_consumer_group_consumers{group="readers"}"#), 1.0);
    for p in 0..3 {
        let high = did["high"][p.to_string()].as_f64().unwrap();
        let committed = did["committed"][p.to_string()].as_f64().unwrap();
        assert_eq!(high - committed, lag as f64);
        let labels = format!(r#"topic="watched",partition="{p}""#);
        assert_eq!(value(&all, &format!("rill_kafka_max_offset{{{labels}}}")), high);
        assert_eq!(value(&all, &format!("rill_kafka_log_start_offset{{{labels}}}")), 0.0);
        assert!(value(&all, &format!("rill_storage_log_size_bytes{{{labels}}}")) > 0.0);
        let group = format!(r#"group="readers",{labels}"#);
        assert_eq!(value(&all, &format!("rill_kafka_consumer_group_committed_offset{{{group}}}")), committed);
        assert_eq!(value(&all, &format!("rill_kafka_consumer_group_lag{{{group}}}")), lag as f64);
    }
    assert!(value(&all, r#"rill_kafka_request_latency_seconds_count{request="produce"}"#) >= 1.0);
    assert!(value(&all, r#"rill_kafka_request_latency_seconds_count{request="group"}"#) >= 1.0);
    assert!(value(&all, "rill_storage_written_bytes_total") >= produced);
    assert!(value(&all, "rill_storage_disk_total_bytes") >= value(&all, "rill_storage_disk_free_bytes"));
    assert!(value(&all, r#"rill_rpc_active_connections{shard="0",server="kafka"}"#) >= 0.0);
    let unknown_topic: f64 = all
        .iter()
        .filter(|(k, _)| k.starts_with("rill_kafka_errors_total{") && k.contains(r#"code="3""#))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(unknown_topic, 1.0, "UNKNOWN_TOPIC_OR_PARTITION answered once");

    // Every metric the shipped dashboard queries is in the exposition.
    let dashboard = std::fs::read_to_string(DASHBOARD).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("rill_") {
                let name: String =
                    rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[at + name.len()..];
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s).filter(|f| text.contains(&format!("# TYPE {f} histogram")))
                    })
                    .unwrap_or(&name)
                    .to_string();
                queried.push(family);
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for family in &queried {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {family}, which /metrics lacks"
        );
    }

    // A real Prometheus scrapes the broker; PromQL computes the lag from two series.
    let port = free_port();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: rill\n    static_configs:\n      - targets: ['{}']\n",
            broker.admin
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tmp.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian's package; scripts/test-deps.sh installs it)");
    let query = encode(
        r#"sum(rill_kafka_max_offset{topic="watched"} - ignoring(group) group_right rill_kafka_consumer_group_committed_offset{group="readers"})"#,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        if let Ok((200, body)) = get(&format!("127.0.0.1:{port}"), &format!("/api/v1/query?query={query}")) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(sample) = v["data"]["result"].as_array().and_then(|r| r.first()) {
                break sample["value"][1].as_str().unwrap().to_string();
            }
        }
        assert!(Instant::now() < deadline, "Prometheus never had the series");
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(answer, (3 * lag).to_string(), "lag over the three partitions");
    drop(traffic.stdin.take());
    assert!(traffic.wait().unwrap().success());
}

/// Status of the readiness endpoint: `Some((code, body))`, or `None` while nothing listens.
fn ready(addr: &str) -> Option<(u16, String)> {
    get(addr, "/v1/status/ready").ok()
}

#[test]
fn readiness_is_503_while_the_shards_open_their_logs_and_while_a_stop_drains() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "many", "--partitions", "1500"], None);
    broker.stop();
    let admin = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(RILL)
        .args([
            "serve",
            "--native-listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--profile",
            "small-vm",
        ])
        .args(["--admin-listen", &admin])
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(answer) = ready(&admin) {
            if seen.last() != Some(&answer) {
                seen.push(answer.clone());
            }
            if answer.0 == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never ready: {seen:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(seen.first(), Some(&(503, r#"{"status":"booting"}"#.to_string())), "{seen:?}");
    assert_eq!(seen.last(), Some(&(200, r#"{"status":"ready"}"#.to_string())));
    assert_eq!(get(&admin, "/v1/status/live").unwrap(), (200, r#"{"status":"live"}"#.to_string()));
    assert_eq!(get(&admin, "/nothing").unwrap().0, 404);

    // SIGTERM: the shards close 1,500 logs; readiness says so until the listener goes.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc_kill(child.id() as i32, 15) };
    let mut stopping = false;
    while let Some(answer) = ready(&admin) {
        if answer == (503, r#"{"status":"stopping"}"#.to_string()) {
            stopping = true;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(stopping, "readiness never answered stopping");
}

/// `--log-format json` writes one JSON object per line; the start-up banner names the version,
/// the listeners, the shards and the data directory, and the full profile is logged only at
/// debug level.
#[test]
fn the_start_up_banner_is_short_and_json_logs_parse() {
    let (_tmp, dir) = data_dir();
    let mut child = Command::new(RILL)
        .args([
            "--log-format",
            "json",
            "serve",
            "--native-listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
        ])
        .args(["--admin-listen", "127.0.0.1:0", "--profile", "small-vm", "--data-dir"])
        .arg(&dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let record: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let message = record["fields"]["message"].as_str().unwrap_or_default().to_string();
        assert!(record["level"].is_string() && record["timestamp"].is_string(), "{line}");
        let done = message.contains("shards on cores");
        messages.push(message);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = messages.join("\n");
    assert!(text.contains(&format!("rill {} node 0 (single node)", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(
        text.contains("listeners: kafka 127.0.0.1:") && text.contains("admin http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains(&format!("data directory {}, profile small-vm", dir.display())), "{text}");
    assert!(!text.contains("tuning profile"), "the whole profile is a debug record:\n{text}");
}

//! The broker as users run it: a real `rill serve` process on a loopback port with a temporary
//! data directory, driven by the `rill` CLI and by raw sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::frame::{FrameDecoder, encode_frame};
use rill_net::message::{ERROR_KIND, ErrorCode, ResponseBody, decode_response};

mod common;

use common::*;

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn produce_consume_round_trip_over_partitions_and_shards() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "orders", "--partitions", "8"], None);
    let input: String = (0..2000).map(|i| format!("key-{}:value-{i}\n", i % 37)).collect();
    broker.rill(
        &["produce", "--topic", "orders", "--key-separator", ":", "--batch-records", "100"],
        Some(&input),
    );
    let records = json_lines(&broker.rill(&["consume", "--topic", "orders", "--format", "json"], None));
    assert_eq!(records.len(), 2000);
    let describe = broker.rill(&["topic", "describe", "orders"], None);
    assert!(describe.contains("8 partitions"), "{describe}");
    let shards: std::collections::BTreeSet<&str> =
        describe.lines().skip(3).filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(shards.len(), 2, "partitions spread over both shards: {describe}");
    // Every key lives in one partition, and within a partition values keep their order.
    let mut partition_of = std::collections::HashMap::new();
    let mut last = std::collections::HashMap::new();
    for r in &records {
        let key = r["key"].as_str().unwrap().to_string();
        let partition = r["partition"].as_u64().unwrap();
        assert_eq!(*partition_of.entry(key.clone()).or_insert(partition), partition, "{key}");
        let n: u64 = r["value"].as_str().unwrap().strip_prefix("value-").unwrap().parse().unwrap();
        let prev = last.insert((partition, key), n);
        assert!(prev.is_none_or(|p| p < n), "order within a partition");
    }
    let all: std::collections::BTreeSet<u64> =
        records.iter().map(|r| r["value"].as_str().unwrap()[6..].parse().unwrap()).collect();
    assert_eq!(all.len(), 2000);
    broker.stop();
}

#[test]
fn long_poll_consumer_wakes_on_produce() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "live"], None);
    let consumer = Command::new(RILL)
        .args(["--broker", &broker.addr, "consume", "--topic", "live", "--follow", "--max-messages", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    broker.rill(&["produce", "--topic", "live"], Some("hello\n"));
    let out = consumer.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "hello\n");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn restart_and_kill9_keep_every_acknowledged_record() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "durable", "--partitions", "3"], None);
    let first: String = (0..500).map(|i| format!("a{i}\n")).collect();
    broker.rill(&["produce", "--topic", "durable"], Some(&first));
    broker.stop();
    let broker = Broker::start(&dir);
    assert_eq!(broker.rill(&["consume", "--topic", "durable"], None).lines().count(), 500);
    let second: String = (0..500).map(|i| format!("b{i}\n")).collect();
    // The CLI exits 0 only after every batch was acknowledged (acks durable).
    broker.rill(&["produce", "--topic", "durable", "--batch-records", "7"], Some(&second));
    broker.kill9();
    let broker = Broker::start(&dir);
    let out = broker.rill(&["consume", "--topic", "durable"], None);
    let lines: std::collections::BTreeSet<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1000);
    assert!((0..500).all(|i| lines.contains(format!("b{i}").as_str())));
    assert_eq!(broker.rill(&["topic", "list"], None), "durable\n");
}

#[test]
fn malformed_frames_close_only_that_connection() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "t"], None);
    // A well-framed request of an unknown kind gets an error reply and the connection stays.
    let mut raw = TcpStream::connect(&broker.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(&encode_frame(4242, 7, b"??")).unwrap();
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut buf = [0u8; 4096];
    let frame = loop {
        if let Some(f) = decoder.next_frame().unwrap() {
            break f;
        }
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "connection stays open after an unknown kind");
        decoder.feed(&buf[..n]);
    };
    assert_eq!((frame.kind, frame.request_id), (ERROR_KIND, 7));
    match decode_response(&frame.payload).unwrap().0 {
        ResponseBody::Status { error, .. } => assert_eq!(error, ErrorCode::Unsupported),
        other => panic!("{other:?}"),
    }
    // Garbage ends that connection only.
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);
    // An oversize frame header is refused before its payload arrives.
    let mut big = TcpStream::connect(&broker.addr).unwrap();
    let header = rill_net::frame::encode_header(6, 1, &[&vec![0u8; 100][..]]);
    let mut lying = header.to_vec();
    lying[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    big.write_all(&lying).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = big.read_to_end(&mut rest);
    // Other clients are unaffected.
    broker.rill(&["produce", "--topic", "t"], Some("still works\n"));
    assert_eq!(broker.rill(&["consume", "--topic", "t"], None), "still works\n");
    drop(Bytes::new());
}

#[test]
fn bench_reports_consistent_figures() {
    let (tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    let plot = tmp.path().join("latency.svg");
    let r = bench_json(&[
        "--broker",
        &broker.addr,
        "--warmup-s",
        "0",
        "--duration-s",
        "1",
        "--plot",
        plot.to_str().unwrap(),
        "--partitions",
        "4",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--batch-bytes",
        "65536",
    ]);
    let published = r["published_msgs"].as_u64().unwrap();
    assert!(published > 1000, "{r}");
    assert_eq!(
        r["consumed_msgs"].as_u64().unwrap(),
        published,
        "consumers see every message published in the window"
    );
    for which in ["publish_latency_us", "end_to_end_latency_us"] {
        let p = &r[which];
        let (p50, p99, p9999, max) = (
            p["p50"].as_u64().unwrap(),
            p["p99"].as_u64().unwrap(),
            p["p9999"].as_u64().unwrap(),
            p["max"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= p9999 && p9999 <= max, "{which}: {p}");
    }
    let mb = r["publish_mb_per_s"].as_f64().unwrap();
    let msgs = r["publish_msgs_per_s"].as_f64().unwrap();
    assert!((mb * 1e6 / msgs - 1000.0).abs() < 1.0, "MB/s and msg/s agree on 1000-byte messages");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2, "publish and end-to-end curves");
    broker.stop();
}

#[test]
fn bad_configuration_is_one_clear_error() {
    let (_tmp, dir) = data_dir();
    let cases: [(&[&str], &str); 7] = [
        (&["--profile", "no-such-profile"], "profile"),
        (&["--cores", "0,999"], "cpu.cores"),
        (&["--native-listen", "not-an-address"], "native_listen"),
        (&["--kafka-listen", "nowhere"], "kafka_listen"),
        (&["--kafka-advertised", "host-without-port"], "kafka_advertised"),
        (&["--config", "/nonexistent/rill.toml"], "rill.toml"),
        (&["--auto-create-topics", "--default-partitions", "0"], "default_partitions"),
    ];
    for (args, mention) in cases {
        let out = Command::new(RILL)
            .arg("serve")
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("rill: ") && last.contains(mention), "{args:?}: {stderr}");
    }
    let bad_toml = dir.parent().unwrap().join("bad.toml");
    std::fs::write(&bad_toml, "data_dir = 5\n").unwrap();
    let out = Command::new(RILL).args(["serve", "--config"]).arg(&bad_toml).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
    std::fs::write(&bad_toml, "offsets_retention_ms = 0\n").unwrap();
    let out = Command::new(RILL)
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&bad_toml)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("offsets_retention_ms"));
}

#[test]
fn a_tight_connection_budget_slows_clients_without_losing_or_stalling() {
    let (tmp, dir) = data_dir();
    // One request's worth of connection memory for the whole shard, and many producers.
    let profile = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/profiles/small-vm.toml"),
    )
    .unwrap()
    .replace("connection_buffer_bytes_per_shard = 67108864", "connection_buffer_bytes_per_shard = 9437184")
    .replace("request_bytes_max = 16777216", "request_bytes_max = 9437184")
    .replace("name = \"small-vm\"", "name = \"tight\"");
    assert!(profile.contains("9437184\n") && profile.contains("tight"), "the test edits the shipped profile");
    let profile_path = tmp.path().join("tight.toml");
    std::fs::write(&profile_path, profile).unwrap();
    let broker = Broker::start_with_profile(&dir, &profile_path);
    let r = bench_json(
        &["--broker", &broker.addr, "--warmup-s", "0", "--duration-s", "2", "--partitions", "4"]
            .into_iter()
            .chain(["--producers", "6", "--consumers", "2", "--inflight", "8"])
            .collect::<Vec<_>>(),
    );
    let published = r["published_msgs"].as_u64().unwrap();
    assert!(published > 0);
    assert_eq!(r["consumed_msgs"].as_u64().unwrap(), published);
    broker.stop();
}

#[test]
fn pipelining_beyond_the_inflight_limit_answers_everything() {
    use rill_net::message::{RequestBody, encode_payload};
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    // small-vm allows 64 requests in flight; send 300 in one write and then only read.
    let mut wire = Vec::new();
    for id in 1..=300u64 {
        let payload: Bytes = encode_payload(&RequestBody::ListTopics, &[]).concat().into();
        wire.extend_from_slice(&encode_frame(RequestBody::ListTopics.kind() as u16, id, &payload));
    }
    let mut raw = TcpStream::connect(&broker.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(&wire).unwrap();
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = [0u8; 65536];
    while seen.len() < 300 {
        while let Some(frame) = decoder.next_frame().unwrap() {
            assert!(seen.insert(frame.request_id), "answered twice: {}", frame.request_id);
        }
        if seen.len() == 300 {
            break;
        }
        let n = raw.read(&mut buf).expect("every pipelined request is answered");
        assert!(n > 0);
        decoder.feed(&buf[..n]);
    }
    assert_eq!(seen, (1..=300).collect());
}

/// A data directory from before the metadata group (a `metadata.toml` without
/// `applied_index`, no `raft/` directory) upgrades in place: its topics and records are all
/// there, the group starts from it, and it takes new topics, across another restart too.
#[test]
fn a_data_directory_from_before_the_metadata_group_upgrades_in_place() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "old", "--partitions", "3"], None);
    let lines: String = (0..300).map(|i| format!("r{i}\n")).collect();
    broker.rill(&["produce", "--topic", "old"], Some(&lines));
    broker.stop();
    // Make it look as the previous version left it.
    std::fs::remove_dir_all(dir.join("raft")).unwrap();
    let metadata = std::fs::read_to_string(dir.join("metadata.toml")).unwrap();
    assert!(metadata.contains("applied_index"), "{metadata}");
    let old: String =
        metadata.lines().filter(|l| !l.starts_with("applied_index")).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("metadata.toml"), old).unwrap();
    let broker = Broker::start(&dir);
    assert!(dir.join("raft/metadata/journal").exists(), "the group's journal is created");
    assert_eq!(broker.rill(&["consume", "--topic", "old"], None).lines().count(), 300);
    broker.rill(&["topic", "create", "new", "--partitions", "2"], None);
    broker.rill(&["produce", "--topic", "new"], Some("n1\n"));
    broker.kill9();
    let broker = Broker::start(&dir);
    assert_eq!(broker.rill(&["topic", "list"], None), "new\nold\n");
    assert_eq!(broker.rill(&["consume", "--topic", "old"], None).lines().count(), 300);
    assert_eq!(broker.rill(&["consume", "--topic", "new"], None), "n1\n");
}

//! Recovery point and the offline repair tools against a real `rill serve`: a bit flip in
//! acknowledged, cleanly stopped data keeps only that partition offline (KAFKA_STORAGE_ERROR)
//! and truncates nothing; `rill storage verify` names the file and byte; `rill storage truncate`
//! is the operator's repair.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use common::raw::{produce_raw, value_batch};
use common::*;

const KAFKA_STORAGE_ERROR: i16 = 56;

fn rill_offline(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(RILL).args(args).env("RUST_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn lines(n: usize, tag: &str) -> String {
    (0..n).map(|i| format!("{tag}-{i:06}\n")).collect()
}

fn segment_of(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn a_bit_flip_in_acknowledged_data_is_reported_never_truncated_and_repaired_by_the_operator() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "acked", "--partitions", "1"], None);
    broker.rill(&["topic", "create", "other", "--partitions", "1"], None);
    broker.rill(&["produce", "--topic", "acked", "--batch-records", "100"], Some(&lines(40_000, "a")));
    broker.rill(&["produce", "--topic", "other"], Some(&lines(100, "o")));
    broker.stop();

    // One flipped bit in the middle of the (active) segment of acked/0.
    let part = dir.join("topics").join("acked").join("0");
    let segment = segment_of(&part);
    let mut bytes = std::fs::read(&segment).unwrap();
    let len_before = bytes.len();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(&segment, &bytes).unwrap();

    let broker = Broker::start(&dir);
    // The damaged partition is offline with a storage error; nothing was cut.
    let mut kafka = TcpStream::connect(&broker.kafka).unwrap();
    let (code, _) = produce_raw(&mut kafka, "acked", value_batch(&b"after"[..]));
    assert_eq!(code, KAFKA_STORAGE_ERROR, "a produce to the damaged partition");
    assert_eq!(std::fs::metadata(&segment).unwrap().len() as usize, len_before, "nothing truncated");
    // Kafka Metadata, from whichever shard answers, shows it without a leader, its replica
    // offline (as Kafka shows a partition whose log directory failed); the other is led.
    for _ in 0..4 {
        let metadata = kafka_metadata(&broker.kafka);
        let partition = |topic: &str| {
            let t = metadata.topics.iter().find(|t| t.name.as_ref().unwrap().0.as_str() == topic).unwrap();
            let p = &t.partitions[0];
            (p.error_code, p.leader_id.0, p.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>())
        };
        assert_eq!(partition("acked"), (5, -1, vec![0]), "LEADER_NOT_AVAILABLE, replica 0 offline");
        assert_eq!(partition("other"), (0, 0, vec![]));
    }
    // Other partitions serve.
    assert_eq!(broker.rill(&["consume", "--topic", "other"], None).lines().count(), 100);
    assert_eq!(produce_raw(&mut kafka, "other", value_batch(&b"more"[..])), (0, 100));
    // The repair tools refuse to touch a running broker's files.
    let (ok, _, err) = rill_offline(&["storage", "truncate", part.to_str().unwrap(), "--at", "0"]);
    assert!(!ok && err.contains("in use"), "{err}");
    broker.stop();

    // verify names the file, the byte and the repair, and exits 1.
    let (ok, out, err) = rill_offline(&["storage", "verify", dir.to_str().unwrap()]);
    assert!(!ok, "verify exits 1 on damage: {out}");
    let damaged: Vec<&str> = out.lines().filter(|l| l.starts_with("DAMAGED")).collect();
    assert_eq!(damaged.len(), 1, "{out}{err}");
    assert!(damaged[0].contains(segment.to_str().unwrap()), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("ok")).count(), out.lines().count() - 1, "{out}");
    let at: u64 = damaged[0].rsplit("--at ").next().unwrap().trim().parse().unwrap();
    let position: usize =
        damaged[0].split(" at byte ").nth(1).unwrap().split(':').next().unwrap().parse().unwrap();
    assert!(position <= middle && middle - position < 4096, "damage at {position}, flip at {middle}");
    assert!(at > 0 && at < 40_000 && at.is_multiple_of(100), "{at}");

    // Truncating above the damage would keep it: refused, naming the highest safe offset.
    let (ok, _, err) = rill_offline(&["storage", "truncate", part.to_str().unwrap(), "--at", "40000"]);
    assert!(!ok && err.contains(&format!("truncate at {at} or lower")), "{err}");
    // The operator's explicit repair, then everything below the cut serves again.
    let (ok, out, err) =
        rill_offline(&["storage", "truncate", part.to_str().unwrap(), "--at", &at.to_string()]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = rill_offline(&["storage", "verify", dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    let broker = Broker::start(&dir);
    let consumed = broker.rill(&["consume", "--topic", "acked"], None);
    let expected: Vec<String> = (0..at).map(|i| format!("a-{i:06}")).collect();
    assert_eq!(consumed.lines().collect::<Vec<_>>(), expected);
    let mut kafka = TcpStream::connect(&broker.kafka).unwrap();
    let (code, offset) = produce_raw(&mut kafka, "acked", value_batch(&b"after"[..]));
    assert_eq!((code, offset), (0, at as i64));
}

/// Kafka Metadata (v12) for every topic, on a new connection (so that each call may land on
/// another shard).
fn kafka_metadata(kafka: &str) -> kafka_protocol::messages::MetadataResponse {
    let mut all = kafka_protocol::messages::MetadataRequest::default();
    all.topics = None;
    common::raw::call(kafka, kafka_protocol::messages::ApiKey::Metadata, 12, &all)
}

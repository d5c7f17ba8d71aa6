//! The Kafka ecosystem beyond plain producers and consumers, against a real `rill serve`: the
//! Java AdminClient's topic and log APIs (validateOnly, deleteRecords, describeLogDirs), and
//! transactional producers, which must fail at once while Rill has no transactions.

mod common;

use std::path::Path;

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

//! Running the real Kafka clients the tests drive (kcat, python3, node, java) as programs.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");

/// Runs a client command (under `timeout`), asserting it succeeds; returns its stdout.
pub fn client(program: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new("timeout")
        .arg("180")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test-deps.sh installs it)"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.unwrap_or_default().to_vec();
    let feeder = std::thread::spawn(move || input.write_all(&data));
    let out: Output = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The path of a script under tools/tests/kafka.
pub fn kafka_script(name: &str) -> String {
    format!("{TESTS}/kafka/{name}")
}

/// Runs tools/tests/java/KafkaClients.java (the Java client: admin on `admin`, producer on
/// `producer`, consumer on `consumer`, expecting `brokers` brokers) with the class path
/// scripts/test-deps.sh resolved; returns its stdout.
pub fn java_clients(admin: &str, producer: &str, consumer: &str, topic: &str, brokers: u32) -> String {
    java("KafkaClients.java", &[admin, producer, consumer, topic, &brokers.to_string()])
}

/// Runs the single-file Java program tools/tests/java/`program` with `args` on the class path
/// scripts/test-deps.sh resolved (kafka-clients and friends from Maven Central); returns its
/// stdout.
pub fn java(program: &str, args: &[&str]) -> String {
    let classpath = java_classpath();
    let program = format!("{TESTS}/java/{program}");
    let mut all = vec!["-cp", classpath.as_str(), program.as_str()];
    all.extend_from_slice(args);
    client("java", &all, None)
}

/// The class path scripts/test-deps.sh resolved with Maven under tools/tests/`project`
/// (`java`: kafka-clients and kafka-streams; `java/connect`: a Kafka Connect worker with the
/// file connectors).
pub fn java_classpath_of(project: &str) -> String {
    std::fs::read_to_string(format!("{TESTS}/{project}/classpath.txt"))
        .unwrap_or_else(|e| {
            panic!("tools/tests/{project}/classpath.txt (scripts/test-deps.sh resolves it with Maven): {e}")
        })
        .trim()
        .to_string()
}

fn java_classpath() -> String {
    java_classpath_of("java")
}

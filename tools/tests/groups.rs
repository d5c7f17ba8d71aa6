//! Consumer groups through real Kafka clients against a real `rill serve`: confluent-kafka,
//! kafka-python and kafkajs group consumers; committed offsets across restarts and kill -9.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka");

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("180")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test-deps.sh installs it)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn script(name: &str) -> String {
    format!("{SCRIPTS}/{name}")
}

fn produce(broker: &Broker, topic: &str, count: usize) {
    let input: String = (0..count).map(|i| format!("{i}\n")).collect();
    let mut child = Command::new("kcat")
        .args(["-b", &broker.kafka, "-P", "-t", topic])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

fn three_members(strategy: &str) {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "shared", "--partitions", "6"], None);
    let out = run("python3", &[&script("confluent_group.py"), &broker.kafka, "shared", "three", strategy]);
    assert!(out.starts_with("ok"), "{out}");
}

#[test]
fn three_members_share_six_partitions_and_take_over_a_leaver_s_range() {
    three_members("range");
}

#[test]
fn three_members_share_six_partitions_and_take_over_a_leaver_s_roundrobin() {
    three_members("roundrobin");
}

#[test]
fn three_members_share_six_partitions_and_take_over_a_leaver_s_cooperative_sticky() {
    three_members("cooperative-sticky");
}

#[test]
fn committed_offsets_survive_a_clean_restart_and_a_kill_9() {
    let (_tmp, dir) = data_dir();
    let kafka_listen = format!("127.0.0.1:{}", free_port());
    let mut broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    broker.rill(&["topic", "create", "resume", "--partitions", "2"], None);
    produce(&broker, "resume", 3000);
    // Per partition: the next offset after what earlier runs consumed and committed.
    let mut next: std::collections::HashMap<String, u64> = Default::default();
    for (round, crash) in [(0, false), (1, true), (2, false)] {
        let out = run("python3", &[&script("group_resume.py"), &broker.kafka, "resume", "res", "1000"]);
        let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(r["count"], 1000, "round {round}: {r}");
        for (p, first) in r["first"].as_object().unwrap() {
            let expected = next.get(p).copied().unwrap_or(0);
            assert_eq!(
                first.as_u64().unwrap(),
                expected,
                "round {round}, partition {p} resumes at its commit: {r}"
            );
        }
        for (p, n) in r["next"].as_object().unwrap() {
            next.insert(p.clone(), n.as_u64().unwrap());
        }
        assert_eq!(next.values().sum::<u64>(), 1000 * (round + 1) as u64);
        if crash {
            broker.kill9();
        } else {
            broker.stop();
        }
        broker = Broker::start_with(&dir, Path::new("small-vm"), &kafka_listen);
    }
}

#[test]
fn kafka_python_and_kafkajs_group_consumers_receive_assignments() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "py", "--partitions", "3"], None);
    broker.rill(&["topic", "create", "js", "--partitions", "3"], None);
    produce(&broker, "py", 600);
    produce(&broker, "js", 600);
    let out = run("python3", &[&script("kafka_python_group.py"), &broker.kafka, "py", "pyg", "600"]);
    assert_eq!(out.trim(), "ok [0, 1, 2]");
    assert!(Path::new(SCRIPTS).join("node_modules/kafkajs").exists(), "run `npm ci` in tools/tests/kafka");
    let out = run("node", &[&script("kafkajs_group.js"), &broker.kafka, "js", "jsg", "600"]);
    assert_eq!(out.trim(), "ok [0,1,2]");
}

#[test]
fn rill_group_describes_members_offsets_and_lag_and_resets_and_deletes() {
    use std::io::BufRead;
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "lagging", "--partitions", "2"], None);
    produce(&broker, "lagging", 300);
    let out = run("python3", &[&script("group_resume.py"), &broker.kafka, "lagging", "ops", "100"]);
    assert!(out.contains("\"count\": 100"), "{out}");
    assert_eq!(broker.rill(&["group", "list"], None), "ops\tEmpty\n");
    // With a live member: its partitions and the lag per partition.
    let mut member = Command::new("python3")
        .args([&script("group_member.py"), &broker.kafka, "lagging", "ops", "describer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(member.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "assigned 2");
    let describe = broker.rill(&["group", "describe", "ops"], None);
    assert!(describe.starts_with("group ops: Stable, 1 members, assignor range"), "{describe}");
    let member_line = describe.lines().nth(2).unwrap();
    assert!(member_line.contains("\tdescriber\t/127.0.0.1\tlagging-0,lagging-1"), "{describe}");
    let rows = offset_rows(&describe);
    assert_eq!(rows.len(), 2, "both assigned partitions are listed: {describe}");
    let ends: i64 = rows.iter().map(|r| r[3].parse::<i64>().unwrap()).sum();
    assert_eq!(ends, 300, "{describe}");
    let committed: i64 = rows.iter().filter_map(|r| r[2].parse::<i64>().ok()).sum();
    let lag: i64 = rows.iter().filter_map(|r| r[4].parse::<i64>().ok()).sum();
    let uncommitted_ends: i64 =
        rows.iter().filter(|r| r[2] == "-").map(|r| r[3].parse::<i64>().unwrap()).sum();
    assert_eq!(committed, 100, "{describe}");
    assert_eq!(lag, 200 - uncommitted_ends, "lag = log end - committed where committed: {describe}");
    assert!(rows.iter().all(|r| r[5].starts_with("describer")), "owner shown: {describe}");
    // A group with members can be neither reset nor deleted.
    let refused =
        Command::new(RILL).args(["--broker", &broker.addr, "group", "delete", "ops"]).output().unwrap();
    assert!(!refused.status.success());
    drop(member.stdin.take());
    assert!(member.wait().unwrap().success());
    broker.rill(&["group", "reset-offsets", "ops", "--topic", "lagging", "--to", "earliest"], None);
    let describe = broker.rill(&["group", "describe", "ops"], None);
    let lag: i64 = offset_rows(&describe).iter().map(|r| r[4].parse::<i64>().unwrap()).sum();
    assert_eq!(lag, 300, "reset to earliest: everything is lag again\n{describe}");
    broker.rill(&["group", "delete", "ops"], None);
    assert_eq!(broker.rill(&["group", "list"], None), "");
}

/// The rows of `rill group describe`'s offsets table.
fn offset_rows(describe: &str) -> Vec<Vec<&str>> {
    describe
        .lines()
        .skip_while(|l| !l.starts_with("TOPIC\t"))
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect()
}

#[test]
fn admin_clients_list_describe_alter_delete_group_offsets_and_groups() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "admin", "--partitions", "2"], None);
    produce(&broker, "admin", 200);
    run("python3", &[&script("group_resume.py"), &broker.kafka, "admin", "adm", "150"]);
    let out = run("python3", &[&script("confluent_group_admin.py"), &broker.kafka, "admin", "adm"]);
    assert_eq!(out.trim(), "ok");
    assert_eq!(broker.rill(&["group", "list"], None), "");
}

#[test]
fn a_killed_member_s_partitions_move_after_its_session_times_out() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "crashy", "--partitions", "2"], None);
    let member = |name: &str| {
        let mut child = Command::new("python3")
            .args([&script("group_member.py"), &broker.kafka, "crashy", "crash", name, "6000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    };
    let (mut a, mut a_lines) = member("a");
    assert_eq!(a_lines.next().unwrap().unwrap(), "assigned 2");
    let (mut b, mut b_lines) = member("b");
    assert_eq!(b_lines.next().unwrap().unwrap(), "assigned 1", "b joins and takes one partition");
    assert_eq!(a_lines.next().unwrap().unwrap(), "assigned 1");
    // kill -9: no LeaveGroup; the coordinator notices when the session times out.
    a.kill().unwrap();
    a.wait().unwrap();
    let killed = Instant::now();
    assert_eq!(b_lines.next().unwrap().unwrap(), "assigned 2", "b takes over a's partition");
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?} with a 6 s session timeout");
    drop(b.stdin.take());
    assert!(b.wait().unwrap().success());
}

#[test]
fn rill_consume_group_resumes_and_shares_partitions_with_kafka_clients() {
    use std::io::BufRead;
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "native", "--partitions", "4"], None);
    produce(&broker, "native", 1000);
    // Without --follow: read what is there, commit, leave; the next run resumes.
    let first = broker.rill(&["consume", "--topic", "native", "--group", "ng"], None);
    assert_eq!(first.lines().count(), 1000);
    let input: String = (1000..1500).map(|i| format!("{i}\n")).collect();
    broker.rill(&["produce", "--topic", "native"], Some(&input));
    let second = broker.rill(&["consume", "--topic", "native", "--group", "ng"], None);
    let mut all: Vec<u64> = first.lines().chain(second.lines()).map(|l| l.parse().unwrap()).collect();
    assert_eq!(second.lines().count(), 500, "the second run starts at the commits");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1500);
    // A native member and a Kafka client in one group split the partitions.
    let mut native = Command::new(RILL)
        .args(["--broker", &broker.addr, "consume", "--topic", "native", "--group", "mixed", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut native_lines = std::io::BufReader::new(native.stdout.take().unwrap()).lines();
    let mut seen = 0;
    while seen < 1500 {
        native_lines.next().unwrap().unwrap();
        seen += 1;
    }
    let mut kafka = Command::new("python3")
        .args([&script("group_member.py"), &broker.kafka, "native", "mixed", "kafka-member", "10000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(kafka.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "assigned 2", "the Kafka client gets half of the partitions");
    let describe = broker.rill(&["group", "describe", "mixed"], None);
    assert!(describe.contains("2 members"), "{describe}");
    assert!(describe.contains("rill-consume") && describe.contains("kafka-member"), "{describe}");
    drop(kafka.stdin.take());
    assert!(kafka.wait().unwrap().success());
    native.kill().unwrap();
    native.wait().unwrap();
}

#[test]
fn bench_with_a_consumer_group_counts_every_message_across_a_rebalance() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    let r = bench_json(&[
        "--broker",
        &broker.addr,
        "--warmup-s",
        "1",
        "--duration-s",
        "3",
        "--partitions",
        "8",
        "--producers",
        "2",
        "--consumers",
        "3",
        "--batch-bytes",
        "65536",
        "--consumer-group",
        "--rebalance-at-s",
        "1",
    ]);
    let published = r["published_msgs"].as_u64().unwrap();
    assert!(published > 1000, "{r}");
    assert_eq!(r["consumed_msgs"].as_u64().unwrap(), published, "nothing lost or doubled: {r}");
    let rebalance = r["rebalance_ms"].as_f64().expect("a member left and the rebalance was timed");
    assert!(rebalance > 0.0, "{r}");
}

#[test]
fn deleting_a_topic_deletes_its_committed_offsets() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "reborn", "--partitions", "2"], None);
    broker.rill(&["topic", "create", "kept"], None);
    produce(&broker, "reborn", 300);
    produce(&broker, "kept", 50);
    assert_eq!(broker.rill(&["consume", "--topic", "reborn", "--group", "g"], None).lines().count(), 300);
    assert_eq!(broker.rill(&["consume", "--topic", "kept", "--group", "g"], None).lines().count(), 50);
    broker.rill(&["topic", "delete", "reborn"], None);
    let describe = broker.rill(&["group", "describe", "g"], None);
    assert!(!describe.contains("reborn"), "the deleted topic's offsets are gone: {describe}");
    assert!(describe.contains("kept"), "{describe}");
    broker.rill(&["topic", "create", "reborn", "--partitions", "2"], None);
    produce(&broker, "reborn", 500);
    // After a restart too: the deletion was written to the offsets log.
    broker.stop();
    let broker = Broker::start(&dir);
    let again = broker.rill(&["consume", "--topic", "reborn", "--group", "g"], None);
    assert_eq!(again.lines().count(), 500, "the new topic is read from its start, not from the old commits");
    assert_eq!(broker.rill(&["consume", "--topic", "kept", "--group", "g"], None), "", "other commits stay");
}

#[test]
fn offsets_of_a_group_without_members_expire_after_the_offsets_retention() {
    let (tmp, dir) = data_dir();
    let config = tmp.path().join("rill.toml");
    std::fs::write(&config, "offsets_retention_ms = 5000\noffsets_retention_check_interval_ms = 200\n")
        .unwrap();
    let broker = Broker::start_args(
        &dir,
        Path::new("small-vm"),
        "127.0.0.1:0",
        &["--config", config.to_str().unwrap()],
    );
    broker.rill(&["topic", "create", "expiring"], None);
    produce(&broker, "expiring", 100);
    assert_eq!(
        broker.rill(&["consume", "--topic", "expiring", "--group", "gone"], None).lines().count(),
        100
    );
    assert_eq!(broker.rill(&["consume", "--topic", "expiring", "--group", "gone"], None), "", "it resumes");
    assert_eq!(broker.rill(&["group", "list"], None), "gone\tEmpty\n");
    // A group with a live member keeps its offsets however long it lives.
    let mut member = Command::new(RILL)
        .args(["--broker", &broker.addr, "consume", "--topic", "expiring", "--group", "stay", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(member.stdout.as_mut().unwrap()), &mut first)
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while broker.rill(&["group", "list"], None) != "stay\tStable\n" {
        assert!(std::time::Instant::now() < deadline, "the empty group and its offsets expire");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let describe = broker.rill(&["group", "describe", "stay"], None);
    assert!(describe.contains("expiring"), "the live group's offsets stay: {describe}");
    member.kill().unwrap();
    member.wait().unwrap();
    // Expired: the group starts over from --from (earliest).
    assert_eq!(
        broker.rill(&["consume", "--topic", "expiring", "--group", "gone"], None).lines().count(),
        100
    );
}

#[test]
fn a_second_instance_of_a_static_member_fences_the_first() {
    let (_tmp, dir) = data_dir();
    let broker = Broker::start(&dir);
    broker.rill(&["topic", "create", "fenced", "--partitions", "2"], None);
    let out = run("python3", &[&script("confluent_static_fencing.py"), &broker.kafka, "fenced"]);
    assert_eq!(out.trim(), "ok");
}

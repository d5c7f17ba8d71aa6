//! Partition replication with real processes (issue 14): three `rill serve` nodes in their own
//! network namespaces, a topic with three replicas per partition, a real Kafka client
//! (confluent-kafka's idempotent producer with acks=all, and a consumer) running the checker in
//! `kafka/replication_checker.py` while the test kills leaders with SIGKILL and restarts them,
//! cuts a leader off the network (its veth down) and heals it, and freezes one with SIGSTOP
//! past the election timeout.
//!
//! The checker fails if an acknowledged record is missing, moved or duplicated, if a
//! partition's records are out of produce order, or if anything a consumer saw during the
//! faults disappeared. `RILL_SLOW=1` runs more fault rounds.

#[path = "common/clients.rs"]
mod clients;
mod netns;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clients::kafka_script;
use netns::{Net, Node, eventually, seeds, tls_dir};

/// The leader of each partition of `topic` as `node`'s Kafka metadata names it.
fn leaders(node: &Node, topic: &str) -> Vec<Option<u32>> {
    let out =
        Command::new("kcat").args(["-b", &node.kafka(), "-L", "-t", topic, "-m", "5"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut leaders = Vec::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with("partition ")) {
        let leader =
            line.split("leader ").nth(1).and_then(|r| r.split(',').next()).and_then(|l| l.parse().ok());
        leaders.push(leader);
    }
    leaders
}

/// Creates `topic` with three replicas per partition through `node`; false if that failed
/// (or true if it exists already).
/// The in-sync replicas of each partition of `topic` as `node`'s Kafka metadata names them.
fn in_sync(node: &Node, topic: &str) -> Vec<Vec<u32>> {
    let out =
        Command::new("kcat").args(["-b", &node.kafka(), "-L", "-t", topic, "-m", "5"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("partition "))
        .map(|l| {
            let isrs = l.split("isrs: ").nth(1).unwrap_or("");
            isrs.split(',').filter_map(|n| n.trim().parse().ok()).collect()
        })
        .collect()
}

fn create_replicated(node: &Node, topic: &str, partitions: u32) -> bool {
    let script = format!(
        "from confluent_kafka.admin import AdminClient, NewTopic\n\
         a = AdminClient({{'bootstrap.servers': '{}'}})\n\
         a.create_topics([NewTopic('{topic}', {partitions}, 3)])['{topic}'].result(30)\n",
        node.kafka()
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    out.status.success() || String::from_utf8_lossy(&out.stderr).contains("TOPIC_ALREADY_EXISTS")
}

/// Three nodes and a topic of `partitions` partitions with three replicas each, every one in
/// sync. Dropped in field order: files last.
struct Replicated {
    tmp: tempfile::TempDir,
    net: Net,
    tls: std::path::PathBuf,
    seeds: String,
    nodes: Vec<Node>,
}

impl Replicated {
    fn start(topic: &str, partitions: usize) -> Replicated {
        let tmp = tempfile::tempdir().unwrap();
        let net = Net::new(3);
        let tls = tls_dir(tmp.path(), 3);
        let seeds = seeds(&net, 3);
        let nodes: Vec<Node> = (1..=3).map(|i| Node::start(&net, i, tmp.path(), &tls, &seeds)).collect();
        eventually(Duration::from_secs(60), "a controller", || {
            nodes.iter().all(|n| n.controller().is_some()).then_some(())
        });
        eventually(Duration::from_secs(60), "the topic", || {
            create_replicated(&nodes[0], topic, partitions as u32).then_some(())
        });
        // Every replica in sync once all have heard from their leaders.
        eventually(Duration::from_secs(60), "three in-sync replicas per partition", || {
            let isr = in_sync(&nodes[1], topic);
            (isr.len() == partitions && isr.iter().all(|r| r.len() == 3)).then_some(())
        });
        Replicated { tmp, net, tls, seeds, nodes }
    }
}

#[test]
fn acknowledged_records_survive_leader_kills_isolation_and_a_frozen_leader() {
    let slow = std::env::var("RILL_SLOW").is_ok_and(|v| v == "1");
    let topic = "replicated";
    let Replicated { tmp, net, tls, seeds, mut nodes } = Replicated::start(topic, 3);

    let rounds = if slow { 8 } else { 2 };
    let seconds = 8 + rounds * 11;
    let bootstrap: Vec<String> = nodes.iter().map(|n| n.kafka()).collect();
    let checker = Command::new("timeout")
        .args(["600", "python3", &kafka_script("replication_checker.py")])
        .args([&bootstrap.join(","), topic, "3", &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    for round in 0..rounds {
        // Kill -9 the leader of one partition, wait past an election, bring it back.
        let partition = round % 3;
        let alive = round % 3;
        let leader = eventually(Duration::from_secs(30), "a leader", || {
            leaders(&nodes[alive], topic).get(partition).copied().flatten()
        });
        let i = (leader - 1) as usize;
        eprintln!("round {round}: kill -9 node {leader}, leader of partition {partition}");
        nodes[i].kill9();
        if round == 0 {
            // The dead replica leaves the in-sync set of every partition (the other leaders
            // stop hearing from it), and the cluster counts them under-replicated.
            let other = (i + 1) % 3;
            eventually(Duration::from_secs(20), "the dead replica out of sync", || {
                let isr = in_sync(&nodes[other], topic);
                (isr.len() == 3 && isr.iter().all(|r| r.len() == 2 && !r.contains(&leader))).then_some(())
            });
            let status = nodes[other].rill(&["cluster", "status"]).unwrap();
            assert!(status.contains("under-replicated partitions: 3"), "{status}");
            // And the leaders' metrics count one replica out of sync per partition.
            eventually(Duration::from_secs(20), "under-replicated replicas in the metrics", || {
                let total: f64 = (1..=3u32)
                    .filter(|n| *n != leader)
                    .filter_map(|n| metric(&net, n, "rill_kafka_under_replicated_replicas"))
                    .sum();
                (total == 3.0).then_some(())
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        nodes[i] = Node::start(&net, leader, tmp.path(), &tls, &seeds);
        std::thread::sleep(Duration::from_secs(3));
        if round % 2 == 0 {
            // Cut a leader off from the other nodes and the clients past the election
            // timeout, then heal: the majority elects a new leader and goes on; the old one
            // cannot commit alone, and truncates what it took that was not committed.
            let leader = eventually(Duration::from_secs(30), "a leader", || {
                leaders(&nodes[alive], topic).get((partition + 2) % 3).copied().flatten()
            });
            eprintln!("round {round}: isolate node {leader} for 5 s");
            net.isolate(leader);
            std::thread::sleep(Duration::from_secs(5));
            net.heal(leader);
            std::thread::sleep(Duration::from_secs(2));
        } else {
            // Freeze a leader past the election timeout: it must not acknowledge anything
            // after it lost its leadership.
            let leader = eventually(Duration::from_secs(30), "a leader", || {
                leaders(&nodes[0], topic).get((partition + 1) % 3).copied().flatten()
            });
            let pid = nodes[(leader - 1) as usize].child.id().to_string();
            eprintln!("round {round}: SIGSTOP node {leader} for 4 s");
            Command::new("kill").args(["-STOP", &pid]).status().unwrap();
            std::thread::sleep(Duration::from_secs(4));
            Command::new("kill").args(["-CONT", &pid]).status().unwrap();
        }
    }
    let out = checker.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let logs: Vec<String> = nodes
        .iter()
        .map(|n| {
            let log = n.log_text();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            format!("node {} (newest first):\n{}", n.id, tail.join("\n"))
        })
        .collect();
    assert!(
        out.status.success() && stdout.starts_with("ok "),
        "checker failed after {:?}: {stdout}{}\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr),
        logs.join("\n")
    );
    eprintln!("checker: {stdout}");
}

/// The sum of a metric over a node's `/metrics` (its admin listener, inside its namespace).
fn metric(net: &Net, node: u32, name: &str) -> Option<f64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &net.namespace(node), "python3", "-c"])
        .arg("import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9644/metrics').read().decode())")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Idle partition groups hibernate (no ticks and no heartbeats: every node reports all its
/// groups in `rill_raft_groups_hibernating`), and still fail over: kill -9 of a node wakes the
/// groups it led on the others (its link is lost), they elect new leaders, and every partition
/// takes and serves records again.
#[test]
fn idle_groups_hibernate_and_still_fail_over() {
    let topic = "idle";
    let Replicated { tmp: _tmp, net, tls: _, seeds: _, mut nodes } = Replicated::start(topic, 6);
    let produce = |bootstrap: &str, count: u32| {
        let script = format!(
            "from confluent_kafka import Producer\n\
             p = Producer({{'bootstrap.servers': '{bootstrap}', 'acks': 'all', 'enable.idempotence': True,\n\
                           'topic.metadata.refresh.interval.ms': 500}})\n\
             acked = []\n\
             for i in range({count}):\n\
             \x20   p.produce('{topic}', value=b'v%d' % i, partition=i % 6,\n\
             \x20             on_delivery=lambda e, m: acked.append(m) if e is None else None)\n\
             p.flush(60)\n\
             assert len(acked) == {count}, len(acked)\n"
        );
        let out = Command::new("timeout").args(["120", "python3", "-c", &script]).output().unwrap();
        assert!(out.status.success(), "producing: {}", String::from_utf8_lossy(&out.stderr));
    };
    let all: Vec<String> = nodes.iter().map(|n| n.kafka()).collect();
    produce(&all.join(","), 60);
    // Idle now: every group on every node hibernates within a few seconds.
    eventually(Duration::from_secs(30), "every group hibernating", || {
        (1..=3)
            .all(|i| {
                let groups = metric(&net, i, "rill_raft_groups");
                groups == Some(6.0) && metric(&net, i, "rill_raft_groups_hibernating") == groups
            })
            .then_some(())
    });
    let leader = leaders(&nodes[0], topic)[0].unwrap();
    eprintln!("all groups hibernate; kill -9 node {leader}");
    let killed_at = Instant::now();
    nodes[(leader - 1) as usize].kill9();
    let survivor = &nodes[(leader % 3) as usize];
    eventually(Duration::from_secs(30), "new leaders for every partition", || {
        let l = leaders(survivor, topic);
        (l.len() == 6 && l.iter().all(|n| n.is_some_and(|n| n != leader))).then_some(())
    });
    eprintln!("every partition led by a live node {:?} after the kill", killed_at.elapsed());
    let alive: Vec<String> = nodes.iter().filter(|n| n.id != leader).map(|n| n.kafka()).collect();
    produce(&alive.join(","), 120);
    let read = Command::new("kcat")
        .args(["-b", &alive.join(","), "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"])
        .output()
        .unwrap();
    let values = String::from_utf8_lossy(&read.stdout);
    assert_eq!(values.lines().count(), 180, "{values}");

    // A topic's settings change reopens its partitions' logs and groups on every node (from
    // the state their journals hold); they go on taking and serving records.
    let script = format!(
        "from confluent_kafka.admin import AdminClient, ConfigResource\n\
         a = AdminClient({{'bootstrap.servers': '{}'}})\n\
         r = ConfigResource('topic', '{topic}', set_config={{'retention.ms': '86400000'}})\n\
         [f.result(30) for f in a.alter_configs([r]).values()]\n",
        alive.join(",")
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "altering: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_secs(1));
    produce(&alive.join(","), 60);
    let read = Command::new("kcat")
        .args(["-b", &alive.join(","), "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"])
        .output()
        .unwrap();
    let values = String::from_utf8_lossy(&read.stdout);
    assert_eq!(values.lines().count(), 240, "{values}");
}

/// kafkajs and kafka-python, unchanged, through leader failovers: each client's idempotent
/// acks=all producer writes to every partition while the test kills the leaders of two
/// partitions in turn (restarting each); every value a client saw acknowledged is in the log
/// once, at the offset it was acknowledged at.
#[test]
fn kafkajs_and_kafka_python_produce_through_leader_kills() {
    let topic = "clients";
    let Replicated { tmp, net, tls, seeds, mut nodes } = Replicated::start(topic, 3);
    let bootstrap: Vec<String> = nodes.iter().map(|n| n.kafka()).collect();
    let bootstrap = bootstrap.join(",");
    let seconds = "20";
    let spawn = |program: &str, script: &str| {
        Command::new("timeout")
            .args(["240", program, &kafka_script(script), &bootstrap, topic, "3", seconds])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let clients = [spawn("node", "failover_kafkajs.js"), spawn("python3", "failover_kafka_python.py")];
    std::thread::sleep(Duration::from_secs(4));
    for partition in [0usize, 1] {
        let leader = eventually(Duration::from_secs(30), "a leader", || {
            leaders(&nodes[2 - partition], topic).get(partition).copied().flatten()
        });
        eprintln!("kill -9 node {leader}, leader of partition {partition}");
        nodes[(leader - 1) as usize].kill9();
        std::thread::sleep(Duration::from_secs(4));
        nodes[(leader - 1) as usize] = Node::start(&net, leader, tmp.path(), &tls, &seeds);
        std::thread::sleep(Duration::from_secs(3));
    }
    let mut acked = Vec::new();
    for (client, name) in clients.into_iter().zip(["kafkajs", "kafka-python"]) {
        let out = client.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim_end().ends_with("done"),
            "{name} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            stdout.lines().rev().take(5).collect::<Vec<_>>().join("\n")
        );
        let before = acked.len();
        for line in stdout.lines().filter(|l| l.starts_with("acked ")) {
            let f: Vec<&str> = line.split(' ').collect();
            acked.push((f[1].to_string(), f[2].parse::<u32>().unwrap(), f[3].parse::<u64>().unwrap()));
        }
        assert!(acked.len() - before > 100, "{name} had {} values acknowledged", acked.len() - before);
    }
    let read = Command::new("kcat")
        .args(["-b", &bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %s\n"])
        .output()
        .unwrap();
    let mut log = std::collections::BTreeMap::new();
    let mut values = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&read.stdout).lines() {
        let f: Vec<&str> = line.splitn(3, ' ').collect();
        assert!(values.insert(f[2].to_string()), "{} is in the log twice", f[2]);
        log.insert((f[0].parse::<u32>().unwrap(), f[1].parse::<u64>().unwrap()), f[2].to_string());
    }
    for (value, partition, offset) in &acked {
        assert_eq!(log.get(&(*partition, *offset)), Some(value), "acknowledged at {partition}/{offset}");
    }
    eprintln!("{} acknowledged values, {} in the log", acked.len(), log.len());
}

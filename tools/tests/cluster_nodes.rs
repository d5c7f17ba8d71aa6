//! Real clusters: `rill serve` nodes as separate processes, each in its own network namespace
//! (see `netns/mod.rs`), driven by the CLI and kcat from outside.
//!
//! - Three and five nodes elect a controller; every node's Kafka metadata lists all of them; a
//!   topic created through any node exists on all; kill -9 of the controller: another is
//!   elected and topics can be created again (the time it takes is printed); the killed node
//!   restarts and catches up; `rill cluster status` names the new controller and the dead node.
//! - A network partition: the isolated controller cannot change metadata, the majority can,
//!   and after healing the isolated node has the majority's change.
//! - A node with a certificate from another CA is never admitted, one whose certificate names
//!   another node id does not start, and neither does a data directory started as another node
//!   or with another cluster's CA (its `node.toml`).
//! - `rill cluster add-node` and `serve --join` grow the cluster; `remove-node` shrinks it.
//! - Kafka clients (confluent-kafka, kcat, kafka-python, kafkajs, the Java client): admin
//!   clients, idempotent producers and consumer groups, each bootstrapped from a different node,
//!   use every node.

#[path = "common/clients.rs"]
mod clients;
mod netns;
#[path = "common/raw.rs"]
mod raw;

use std::time::{Duration, Instant};

use clients::{client, java_clients, kafka_script};
use netns::{Net, Node, eventually, seeds, tls_dir};

/// Waits until every running node's Kafka metadata lists `count` brokers and one controller;
/// returns the controller.
fn agreed_controller(nodes: &[&Node], count: usize) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metadata: Vec<String> = nodes.iter().map(|n| n.kcat_metadata()).collect();
        if metadata.iter().all(|m| m.contains(&format!(" {count} brokers:"))) {
            let mut controllers: Vec<Option<u32>> =
                metadata.iter().map(|m| netns::controller_in(m)).collect();
            controllers.dedup();
            if let [Some(controller)] = controllers[..] {
                return controller;
            }
        }
        if Instant::now() > deadline {
            let views: Vec<String> = nodes
                .iter()
                .zip(&metadata)
                .map(|(n, m)| {
                    let log = n.log_text();
                    let tail: Vec<&str> = log.lines().rev().take(12).collect();
                    format!("node {}:\n{m}\nlog tail (newest first):\n{}", n.id, tail.join("\n"))
                })
                .collect();
            panic!("no controller every node names with {count} brokers:\n{}", views.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nodes 1..=count started together, agreed on a controller. Dropped in field order: the
/// processes first, then their namespaces, then their files.
struct Cluster {
    nodes: Vec<Node>,
    tls: std::path::PathBuf,
    _net: Net,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn start(count: u32) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let net = Net::new(count);
        let tls = tls_dir(tmp.path(), count);
        let seeds = seeds(&net, count);
        let nodes: Vec<Node> = (1..=count).map(|i| Node::start(&net, i, tmp.path(), &tls, &seeds)).collect();
        agreed_controller(&nodes.iter().collect::<Vec<_>>(), count as usize);
        Cluster { nodes, tls, _net: net, _tmp: tmp }
    }
}

/// Creates `topic` through `node`, retrying while the cluster elects; returns the time taken.
/// An attempt that failed on the client's side (a timeout while the controller changed) may
/// still have been committed, as with Kafka's CreateTopics: a retry that then finds the topic
/// with its three partitions counts as done.
fn create_eventually(node: &Node, topic: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut failed_before = None;
    loop {
        match node.rill(&["topic", "create", topic, "--partitions", "3"]) {
            Ok(_) => return started.elapsed(),
            Err(e) if e.contains("TopicExists") && failed_before.is_some() => {
                eprintln!("creating {topic}: an earlier attempt failed ({failed_before:?}) but took effect");
                let described = node.rill(&["topic", "describe", topic]).unwrap();
                assert!(described.contains(&format!("topic {topic}: 3 partitions")), "{described}");
                return started.elapsed();
            }
            Err(e) => {
                assert!(started.elapsed() < timeout, "creating {topic} through node {}: {e}", node.id);
                failed_before = Some(e);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn failover(count: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let net = Net::new(count);
    let tls = tls_dir(tmp.path(), count);
    let seeds = seeds(&net, count);
    let mut nodes: Vec<Node> = (1..=count).map(|i| Node::start(&net, i, tmp.path(), &tls, &seeds)).collect();
    let controller = agreed_controller(&nodes.iter().collect::<Vec<_>>(), count as usize);
    // A topic created through the last node (forwarded to the controller) is on every node,
    // its partitions led by different nodes.
    create_eventually(&nodes[count as usize - 1], "first", Duration::from_secs(20));
    for node in &nodes {
        eventually(Duration::from_secs(10), "the topic on every node", || {
            let metadata = node.kcat_metadata();
            metadata.contains("topic \"first\" with 3 partitions").then_some(())
        });
    }
    let leaders: std::collections::BTreeSet<String> = nodes[0]
        .kcat_metadata()
        .lines()
        .filter(|l| l.trim_start().starts_with("partition "))
        .filter_map(|l| l.split("leader ").nth(1).map(|r| r.split(',').next().unwrap().to_string()))
        .collect();
    assert_eq!(leaders.len(), 3, "three partitions, three leaders: {leaders:?}");
    // kill -9 of the controller; a survivor takes admin requests again after an election; the
    // killed node restarts and catches up. One round, or 20 with RILL_SLOW=1 (the figures in
    // README's Performance section).
    let rounds = if std::env::var("RILL_SLOW").is_ok_and(|v| v == "1") { 20 } else { 1 };
    let mut controller = controller;
    let mut took = Vec::new();
    for round in 0..rounds {
        let dead = controller as usize - 1;
        nodes[dead].kill9();
        let survivor = &nodes[(dead + 1) % count as usize];
        let topic = format!("after-kill-{round}");
        took.push(create_eventually(survivor, &topic, Duration::from_secs(20)));
        let others: Vec<&Node> =
            nodes.iter().enumerate().filter(|(i, _)| *i != dead).map(|(_, n)| n).collect();
        let new_controller = agreed_controller(&others, count as usize);
        assert_ne!(new_controller, controller, "a new controller is elected");
        // `rill cluster status` at a survivor names the new controller and the dead node down.
        let survivor = &nodes[(dead + 1) % count as usize];
        eventually(Duration::from_secs(10), "the status showing the dead node down", || {
            let status = survivor.rill(&["cluster", "status"]).ok()?;
            let down = status
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([controller.to_string().as_str(), "down"]));
            (status.contains(&format!("controller: node {new_controller}")) && down).then_some(())
        });
        nodes[dead] = Node::start(&net, controller, tmp.path(), &tls, &seeds);
        eventually(Duration::from_secs(20), "the restarted node catching up", || {
            nodes[dead].view().contains(&format!("[topics.{topic}]")).then_some(())
        });
        controller = agreed_controller(&nodes.iter().collect::<Vec<_>>(), count as usize);
    }
    took.sort();
    eprintln!(
        "failover with {count} nodes over {rounds} kill -9 of the controller: topic creation works again after median {} ms, max {} ms",
        took[took.len() / 2].as_millis(),
        took[took.len() - 1].as_millis()
    );
}

#[test]
fn three_nodes_fail_over_after_the_controller_is_killed_and_it_catches_up() {
    failover(3);
}

#[test]
fn five_nodes_fail_over_after_the_controller_is_killed_and_it_catches_up() {
    failover(5);
}

#[test]
fn an_isolated_controller_cannot_change_metadata_and_catches_up_after_healing() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Net::new(3);
    let tls = tls_dir(tmp.path(), 3);
    let seeds = seeds(&net, 3);
    let nodes: Vec<Node> = (1..=3).map(|i| Node::start(&net, i, tmp.path(), &tls, &seeds)).collect();
    let controller = agreed_controller(&nodes.iter().collect::<Vec<_>>(), 3);
    let isolated = &nodes[controller as usize - 1];
    let majority: Vec<&Node> = nodes.iter().filter(|n| n.id != controller).collect();
    net.isolate(controller);
    // The majority elects a controller of its own and changes metadata.
    create_eventually(majority[0], "majority", Duration::from_secs(30));
    // The isolated node's own admin request cannot commit (it is run inside its namespace,
    // the only place that still reaches it).
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &net.namespace(controller), netns::RILL, "topic", "create", "minority"])
        .args(["--broker", &isolated.native()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the minority side created a topic");
    eprintln!("minority side refused: {}", String::from_utf8_lossy(&out.stderr).trim());
    assert!(!isolated.view().contains("[topics.majority]"));
    net.heal(controller);
    eventually(Duration::from_secs(30), "the healed node catching up", || {
        isolated.view().contains("[topics.majority]").then_some(())
    });
    for node in &nodes {
        assert!(!node.view().contains("[topics.minority]"), "node {} has the minority's topic", node.id);
    }
}

#[test]
fn nodes_of_another_ca_or_claiming_another_id_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Net::new(4);
    let tls = tls_dir(tmp.path(), 3);
    let seeds3 = seeds(&net, 3);
    let mut nodes: Vec<Node> = (1..=3).map(|i| Node::start(&net, i, tmp.path(), &tls, &seeds3)).collect();
    agreed_controller(&nodes.iter().collect::<Vec<_>>(), 3);
    // Node 4, with a certificate from another CA, dials the three and is refused by all.
    let stranger_dir = tmp.path().join("stranger");
    let foreign = tls_dir(&stranger_dir, 4);
    let stranger = Node::start(&net, 4, &stranger_dir, &foreign, &seeds(&net, 4));
    std::thread::sleep(Duration::from_secs(4));
    assert!(!stranger.log_text().contains("cluster peer connected"), "{}", stranger.log_text());
    for node in &nodes {
        assert!(!node.log_text().contains("peer=4"), "node {} admitted the stranger", node.id);
    }
    assert!(nodes[0].kcat_metadata().contains(" 3 brokers:"));
    // A process claiming id 2 with node 3's certificate never starts.
    let impostor_tls = tmp.path().join("impostor");
    std::fs::create_dir_all(&impostor_tls).unwrap();
    std::fs::copy(tls.join("ca.pem"), impostor_tls.join("ca.pem")).unwrap();
    std::fs::copy(tls.join("node-3.pem"), impostor_tls.join("node-2.pem")).unwrap();
    std::fs::copy(tls.join("node-3.key"), impostor_tls.join("node-2.key")).unwrap();
    let impostor_data = tmp.path().join("impostor-data");
    let output = refused_start(&net, 4, &impostor_data, 2, &impostor_tls, &seeds3);
    assert!(output.contains("node-2.pem names node 3, not this node (2)"), "{output}");
    // Node 3's data directory (its Raft votes and log) started as node 2, with node 2's own
    // certificate, is refused: the directory's node.toml names node 3.
    nodes[2].kill9();
    let node3_data = nodes[2].data.clone();
    let output = refused_start(&net, 3, &node3_data, 2, &tls, &seeds3);
    assert!(output.contains("belongs to node 3 (its node.toml), not node 2"), "{output}");
    // With another CA's certificates (the stranger's), the directory is another cluster's.
    let output = refused_start(&net, 3, &node3_data, 3, &foreign, &seeds3);
    assert!(output.contains("belongs to cluster"), "{output}");
}

/// Runs `rill serve` as node `id` in namespace `slot` on `data` with the certificates in `tls`
/// (other ports than the node that ran there, its own admin port), expecting it to refuse to
/// start; returns what it printed.
fn refused_start(
    net: &Net,
    slot: u32,
    data: &std::path::Path,
    id: u32,
    tls: &std::path::Path,
    seeds: &str,
) -> String {
    let ip = net.ip(slot);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &net.namespace(slot), netns::RILL, "serve", "--profile", "small-vm"])
        .args(["--cores", "0", "--data-dir", data.to_str().unwrap()])
        .args(["--native-listen", &format!("{ip}:9301"), "--kafka-listen", &format!("{ip}:9093")])
        .args(["--admin-listen", "127.0.0.1:0", "--node-id", &id.to_string()])
        .args(["--cluster-listen", &format!("{ip}:9501"), "--seeds", seeds])
        .args(["--cluster-tls-dir", tls.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "node {id} started on {}", data.display());
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Kafka clients against three nodes: confluent-kafka's admin client creates a topic through
/// one node (forwarded to the controller), a producer bootstrapped from another writes to every
/// partition (each led by a different node) and a consumer bootstrapped from the third reads
/// every record back.
#[test]
fn kafka_clients_use_every_node_of_a_three_node_cluster() {
    let cluster = Cluster::start(3);
    let nodes = &cluster.nodes;
    let script = r#"
import sys
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
admin_node, producer_node, consumer_node = sys.argv[1:4]
admin = AdminClient({"bootstrap.servers": admin_node})
admin.create_topics([NewTopic("spread", 6, 1)])["spread"].result(30)
meta = admin.list_topics(timeout=10)
assert len(meta.brokers) == 3, meta.brokers
leaders = sorted({p.leader for p in meta.topics["spread"].partitions.values()})
assert leaders == [1, 2, 3], leaders
producer = Producer({"bootstrap.servers": producer_node, "acks": "all", "enable.idempotence": True})
acked = []
for i in range(600):
    producer.produce("spread", value=b"v%d" % i, partition=i % 6,
                     on_delivery=lambda err, msg: acked.append(msg) if err is None else sys.exit("delivery: %s" % err))
producer.flush(30)
assert len(acked) == 600, len(acked)
consumer = Consumer({"bootstrap.servers": consumer_node, "group.id": "spread-readers",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.subscribe(["spread"])
seen = set()
import time
deadline = time.time() + 60
while len(seen) < 600 and time.time() < deadline:
    msg = consumer.poll(1.0)
    if msg is not None and msg.error() is None:
        seen.add(msg.value())
consumer.close()
assert len(seen) == 600, len(seen)
print("ok", len(acked), len(seen))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &nodes[0].kafka(), &nodes[1].kafka(), &nodes[2].kafka()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok 600 600"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The other Kafka clients against three nodes, each bootstrapped from one node and finding the
/// others through metadata: kcat lists every broker, produces keyed messages through one node
/// and reads all of them back through another; kafka-python round-trips every codec and reads
/// through a consumer group; kafkajs creates a topic, produces idempotently and consumes in a
/// group; the Java client (kafka-clients from Maven Central) describes the cluster, creates a
/// topic, produces idempotently, consumes in a group and commits, alters a config and deletes
/// the topic, with its admin, producer and consumer on three different nodes.
#[test]
fn kcat_kafka_python_kafkajs_and_the_java_client_use_every_node() {
    let cluster = Cluster::start(3);
    let nodes = &cluster.nodes;
    let [a, b, c] = [nodes[0].kafka(), nodes[1].kafka(), nodes[2].kafka()];

    // kcat: metadata from any node lists all three; keyed messages produced through node 2
    // land on partitions led by every node and are read back through node 3.
    let listed = client("kcat", &["-b", &c, "-L", "-m", "10"], None);
    assert!(listed.contains(" 3 brokers:"), "{listed}");
    nodes[0].rill(&["topic", "create", "kcat", "--partitions", "6"]).unwrap();
    let input: String = (0..3000).map(|i| format!("k{i}:value {i}\n")).collect();
    client("kcat", &["-b", &b, "-P", "-t", "kcat", "-K", ":", "-X", "acks=all"], Some(input.as_bytes()));
    let read = client(
        "kcat",
        &["-b", &c, "-C", "-t", "kcat", "-o", "beginning", "-e", "-q", "-f", "%p %k %s\n"],
        None,
    );
    let mut partitions = std::collections::BTreeSet::new();
    let mut keys = std::collections::BTreeSet::new();
    for line in read.lines() {
        let mut f = line.splitn(3, ' ');
        partitions.insert(f.next().unwrap().to_string());
        let key = f.next().unwrap().to_string();
        assert_eq!(f.next().unwrap(), format!("value {}", &key[1..]), "{line}");
        assert!(keys.insert(key), "{line} read twice");
    }
    assert_eq!(keys.len(), 3000, "kcat read {} of 3000", keys.len());
    assert!(partitions.len() > 3, "keys hashed to partitions {partitions:?}");

    // kafka-python: every codec through node 1 to a topic made through node 2,
    // then a group consumer bootstrapped from node 3.
    nodes[1].rill(&["topic", "create", "py", "--partitions", "3"]).unwrap();
    let out = client("python3", &[&kafka_script("kafka_python_compression.py"), &a, "py"], None);
    assert!(out.contains("ok"), "{out}");
    let out = client("python3", &[&kafka_script("kafka_python_group.py"), &c, "py", "pyg", "8000"], None);
    assert!(out.contains("ok"), "{out}");

    // kafkajs: its admin creates a topic through node 2 and produces idempotently; a group
    // consumer bootstrapped from node 1 reads every message.
    let out = client("node", &[&kafka_script("kafkajs_round_trip.js"), &b, "js"], None);
    assert!(out.contains("ok"), "{out}");
    let out = client("node", &[&kafka_script("kafkajs_group.js"), &a, "js", "jsg", "3000"], None);
    assert!(out.contains("ok"), "{out}");

    // The Java client, admin on node 3, producer on node 1, consumer on node 2.
    let out = java_clients(&c, &a, &b, "java", 3);
    assert!(out.starts_with("ok 600"), "{out}");
}

/// Sends one Kafka request to `node` and decodes its answer.
fn kafka_call<Req, Resp>(node: &Node, key: kafka_protocol::messages::ApiKey, version: i16, body: &Req) -> Resp
where
    Req: kafka_protocol::protocol::Encodable,
    Resp: kafka_protocol::protocol::Decodable,
{
    raw::call(&node.kafka(), key, version, body)
}

/// Every node names the same coordinator for a group; the group's requests sent to any other
/// node get NOT_COORDINATOR (clients then find the coordinator again), so a group's state
/// lives on one node only. (Before, every node served every group.) Every node names the same
/// cluster id, the one its CA gives.
#[test]
fn group_requests_to_a_node_that_does_not_coordinate_the_group_get_not_coordinator() {
    use kafka_protocol::messages::{
        ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
        OffsetFetchRequest, OffsetFetchResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    let cluster = Cluster::start(3);
    let nodes = &cluster.nodes;
    // Every node names the cluster by its CA (Metadata and DescribeCluster).
    let ca = std::fs::read_to_string(cluster.tls.join("ca.pem")).unwrap();
    let id = rill_net::tls::cluster_id(&ca).unwrap();
    for n in nodes {
        let m: kafka_protocol::messages::MetadataResponse =
            kafka_call(n, ApiKey::Metadata, 12, &kafka_protocol::messages::MetadataRequest::default());
        assert_eq!(m.cluster_id.as_deref(), Some(id.as_str()), "node {}", n.id);
        let d: kafka_protocol::messages::DescribeClusterResponse = kafka_call(
            n,
            ApiKey::DescribeCluster,
            0,
            &kafka_protocol::messages::DescribeClusterRequest::default(),
        );
        assert_eq!(d.cluster_id.as_str(), id, "node {}", n.id);
    }
    for group in ["orders", "payments", "audit", "g4"] {
        let mut find = FindCoordinatorRequest::default();
        find.key = StrBytes::from_string(group.to_string());
        let named: Vec<i32> = nodes
            .iter()
            .map(|n| {
                let r: FindCoordinatorResponse = kafka_call(n, ApiKey::FindCoordinator, 3, &find);
                assert_eq!(r.error_code, 0, "{group} at node {}", n.id);
                r.node_id.0
            })
            .collect();
        assert!(named.iter().all(|c| *c == named[0]), "{group}: coordinators {named:?}");
        for n in nodes {
            let coordinator = n.id as i32 == named[0];
            let mut fetch = OffsetFetchRequest::default();
            fetch.group_id = StrBytes::from_string(group.to_string()).into();
            let r: OffsetFetchResponse = kafka_call(n, ApiKey::OffsetFetch, 5, &fetch);
            assert_eq!(r.error_code, if coordinator { 0 } else { 16 }, "{group} offsets at node {}", n.id);
            let mut beat = HeartbeatRequest::default();
            beat.group_id = StrBytes::from_string(group.to_string()).into();
            beat.member_id = StrBytes::from_static_str("nobody");
            let r: HeartbeatResponse = kafka_call(n, ApiKey::Heartbeat, 3, &beat);
            // The coordinator knows no such member (whatever it answers, it is not
            // NOT_COORDINATOR); the others are not the group's coordinator.
            assert_eq!(
                r.error_code == 16,
                !coordinator,
                "{group} heartbeat at node {}: {}",
                n.id,
                r.error_code
            );
        }
    }
}

/// KIP-951: a produce (v10+) sent to a node that does not lead the partition is answered
/// NOT_LEADER_OR_FOLLOWER with the current leader's id and epoch and that leader's endpoint, so
/// the client goes there without a metadata round trip; the leader itself takes the batch.
/// (Before, the answer named no leader.)
#[test]
fn a_produce_to_a_node_that_does_not_lead_the_partition_names_the_leader() {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, ProduceResponse};
    let cluster = Cluster::start(3);
    let nodes = &cluster.nodes;
    nodes[0].rill(&["topic", "create", "routed", "--partitions", "3"]).unwrap();
    // Null topics: all of them.
    let mut all = MetadataRequest::default();
    all.topics = None;
    let leaders: Vec<i32> = eventually(Duration::from_secs(30), "every node knows the topic", || {
        let views: Vec<MetadataResponse> =
            nodes.iter().map(|n| kafka_call(n, ApiKey::Metadata, 12, &all)).collect();
        let leaders: Vec<Vec<i32>> = views
            .iter()
            .map(|m| {
                let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "routed"));
                t.map(|t| t.partitions.iter().map(|p| p.leader_id.0).collect()).unwrap_or_default()
            })
            .collect();
        (leaders[0].len() == 3 && leaders.iter().all(|l| *l == leaders[0])).then(|| leaders[0].clone())
    });
    let brokers: MetadataResponse = kafka_call(&nodes[0], ApiKey::Metadata, 12, &all);
    for node in nodes {
        for (partition, leader) in leaders.iter().enumerate() {
            let produce = raw::produce_request("routed", partition as i32, raw::value_batch(&b"routed"[..]));
            let r: ProduceResponse = kafka_call(node, ApiKey::Produce, 10, &produce);
            let answer = &r.responses[0].partition_responses[0];
            if *leader == node.id as i32 {
                assert_eq!(answer.error_code, 0, "the leader (node {}) takes partition {partition}", node.id);
                assert!(r.node_endpoints.is_empty());
                continue;
            }
            assert_eq!(answer.error_code, 6, "node {} does not lead partition {partition}", node.id);
            assert_eq!(answer.current_leader.leader_id.0, *leader, "node {} names the leader", node.id);
            assert_eq!(answer.current_leader.leader_epoch, 0);
            let known = brokers.brokers.iter().find(|b| b.node_id.0 == *leader).unwrap();
            assert_eq!(r.node_endpoints.len(), 1, "{:?}", r.node_endpoints);
            let endpoint = &r.node_endpoints[0];
            assert_eq!(
                (endpoint.node_id.0, endpoint.host.as_str(), endpoint.port),
                (*leader, known.host.as_str(), known.port)
            );
        }
    }
}

/// `rill cluster add-node` makes a fourth node a voter; started with `--join` it catches up
/// from the controller, registers, and takes partitions; `remove-node` is refused while it holds
/// replicas and done once it holds none.
#[test]
fn a_node_is_added_catches_up_takes_partitions_and_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Net::new(4);
    let tls = tls_dir(tmp.path(), 4);
    let seeds3 = seeds(&net, 3);
    let nodes: Vec<Node> = (1..=3).map(|i| Node::start(&net, i, tmp.path(), &tls, &seeds3)).collect();
    agreed_controller(&nodes.iter().collect::<Vec<_>>(), 3);
    create_eventually(&nodes[0], "before", Duration::from_secs(20));
    nodes[1].rill(&["cluster", "add-node", "--node-id", "4"]).unwrap();
    let fourth = Node::start_with(&net, 4, tmp.path(), &tls, &seeds(&net, 4), &["--join"]);
    eventually(Duration::from_secs(20), "the new node catching up", || {
        fourth.view().contains("[topics.before]").then_some(())
    });
    agreed_controller(&[&nodes[0], &nodes[1], &nodes[2], &fourth], 4);
    create_eventually(&fourth, "after", Duration::from_secs(20));
    let status = fourth.rill(&["cluster", "status"]).unwrap();
    let line = status.lines().find(|l| l.split_whitespace().next() == Some("4")).unwrap();
    assert!(line.contains("alive"), "{status}");
    let refused = nodes[0].rill(&["cluster", "remove-node", "--node-id", "4"]).unwrap_err();
    assert!(refused.contains("still holds"), "{refused}");
    nodes[0].rill(&["topic", "delete", "after"]).unwrap();
    nodes[0].rill(&["cluster", "remove-node", "--node-id", "4"]).unwrap();
    eventually(Duration::from_secs(10), "three brokers again", || {
        nodes[2].kcat_metadata().contains(" 3 brokers:").then_some(())
    });
    // The three go on without it.
    create_eventually(&nodes[2], "without-four", Duration::from_secs(20));
}

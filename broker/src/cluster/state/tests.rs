//! Tests of the cluster state: placement, command checks, the local view and snapshots.

use super::*;
use crate::cluster::consensus::StateMachine;

fn cluster(nodes: &[(NodeId, u32)]) -> ClusterState {
    let mut state = ClusterState::default();
    for &(id, shard_count) in nodes {
        let info = NodeInfo {
            shard_count,
            cluster_address: format!("10.0.0.{id}:9500"),
            kafka_address: format!("10.0.0.{id}:9092"),
        };
        state.apply_command(Command::RegisterNode { id, info }).unwrap();
    }
    state
}

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn create(state: &mut ClusterState, topic: &str, count: u32, rf: u32) -> Vec<Vec<Replica>> {
    let partitions = state.place(count, Some(rf), None).unwrap();
    let command = Command::CreateTopic {
        name: name(topic),
        settings: TopicSettings::default(),
        partitions: partitions.clone(),
    };
    state.apply_command(command).unwrap();
    partitions
}

#[test]
fn placement_spreads_replicas_over_nodes_and_shards_and_rotates_leaders() {
    let mut state = cluster(&[(1, 2), (2, 2), (3, 2)]);
    let placed = create(&mut state, "t", 6, 3);
    let mut leaders = BTreeMap::new();
    let mut per_shard = BTreeMap::new();
    for replicas in &placed {
        let mut nodes: Vec<NodeId> = replicas.iter().map(|r| r.node).collect();
        nodes.sort_unstable();
        assert_eq!(nodes, vec![1, 2, 3], "three distinct nodes per partition");
        *leaders.entry(replicas[0].node).or_insert(0) += 1;
        for r in replicas {
            *per_shard.entry((r.node, r.shard)).or_insert(0) += 1;
        }
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "leaders rotate: {leaders:?}");
    assert!(per_shard.values().all(|&n| n == 3), "every shard holds 3 of the 18 replicas: {per_shard:?}");
    // RF 1: one replica per partition, spread evenly over the nodes.
    let placed = create(&mut state, "u", 9, 1);
    let mut per_node = BTreeMap::new();
    for replicas in &placed {
        assert_eq!(replicas.len(), 1);
        *per_node.entry(replicas[0].node).or_insert(0) += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
}

#[test]
fn replication_factors_and_assignments_the_cluster_cannot_hold_are_refused() {
    let state = cluster(&[(1, 1), (2, 1), (3, 1)]);
    for rf in [0, 4] {
        let (code, why) = state.place(1, Some(rf), None).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidReplicationFactor, "{why}");
    }
    let refused =
        |assignment: Vec<Vec<NodeId>>, count| state.place(count, None, Some(&assignment)).unwrap_err().0;
    assert_eq!(refused(vec![vec![1, 4]], 1), ErrorCode::InvalidReplicaAssignment, "unknown node");
    assert_eq!(refused(vec![vec![1, 1]], 1), ErrorCode::InvalidReplicaAssignment, "repeated node");
    assert_eq!(refused(vec![vec![1, 2], vec![3]], 2), ErrorCode::InvalidReplicaAssignment, "uneven sizes");
    assert_eq!(refused(vec![vec![1]], 2), ErrorCode::InvalidReplicaAssignment, "one list per partition");
    assert_eq!(refused(vec![vec![]], 1), ErrorCode::InvalidReplicaAssignment, "empty list");
    let placed = state.place(2, None, Some(&[vec![3, 1], vec![2, 3]])).unwrap();
    let nodes: Vec<Vec<NodeId>> = placed.iter().map(|r| r.iter().map(|r| r.node).collect()).collect();
    assert_eq!(nodes, vec![vec![3, 1], vec![2, 3]], "explicit assignments keep their order (leader first)");
}

#[test]
fn commands_are_checked_again_when_applied() {
    let mut state = cluster(&[(1, 2)]);
    let partitions = state.place(2, Some(1), None).unwrap();
    let create = Command::CreateTopic { name: name("t"), settings: TopicSettings::default(), partitions };
    assert_eq!(state.apply_command(create.clone()), Ok(()));
    // A racing second create of the same name fails on every node alike.
    assert_eq!(state.apply_command(create).unwrap_err().0, ErrorCode::TopicExists);
    let bad =
        Command::AddPartitions { name: name("t"), partitions: vec![vec![Replica { node: 1, shard: 5 }]] };
    assert_eq!(state.apply_command(bad).unwrap_err().0, ErrorCode::InvalidReplicaAssignment);
    assert_eq!(
        state.apply_command(Command::DeleteTopic { name: name("x") }).unwrap_err().0,
        ErrorCode::UnknownTopic
    );
    assert_eq!(state.apply_command(Command::RemoveNode { id: 1 }).unwrap_err().0, ErrorCode::InvalidRequest);
    state.apply_command(Command::DeleteTopic { name: name("t") }).unwrap();
    assert_eq!(state.apply_command(Command::RemoveNode { id: 1 }), Ok(()));
    // Undecodable bytes are refused by the state machine, not a crash.
    assert_eq!(StateMachine::apply(&mut state, 9, b"{not json").unwrap_err().0, ErrorCode::InvalidRequest);
}

#[test]
fn a_node_with_fewer_shards_moves_only_the_replicas_of_its_lost_shards() {
    let mut state = cluster(&[(1, 4), (2, 4)]);
    create(&mut state, "t", 8, 2);
    let before = state.clone();
    let info = NodeInfo { shard_count: 2, ..state.nodes[&1].clone() };
    state.apply_command(Command::RegisterNode { id: 1, info }).unwrap();
    for (old, new) in before.topics[&name("t")]
        .partitions
        .iter()
        .flatten()
        .zip(state.topics[&name("t")].partitions.iter().flatten())
    {
        assert_eq!(old.node, new.node);
        if old.node == 2 || old.shard < 2 {
            assert_eq!(old, new, "a replica on a kept shard stays");
        } else {
            assert!(new.shard < 2);
        }
    }
}

#[test]
fn a_single_node_directory_becomes_cluster_state_and_back() {
    let mut metadata = Metadata::new(3);
    metadata
        .create_topic(name("a"), 4, TopicSettings { retention_ms: Some(5), ..Default::default() })
        .unwrap();
    metadata.create_topic(name("b"), 2, TopicSettings::default()).unwrap();
    let info =
        NodeInfo { shard_count: 3, cluster_address: String::new(), kafka_address: "localhost:9092".into() };
    let state = ClusterState::from_local(&metadata, 0, info);
    let view = state.local_view(0);
    assert_eq!(view.shard_count, 3);
    for (n, topic) in &metadata.topics {
        assert_eq!(view.topics[n].shards, topic.shards);
        assert_eq!(view.topics[n].settings, topic.settings);
        assert!(view.topics[n].replicas.iter().all(|r| r == &vec![0]));
    }
    // The snapshot image restores the same state.
    let mut restored = ClusterState::default();
    restored.restore(&state.snapshot()).unwrap();
    assert_eq!(restored, state);
    assert!(restored.restore(b"garbage").is_err());
    // Commands round-trip through their log encoding.
    let command = Command::AlterTopic { name: name("a"), settings: TopicSettings::default() };
    assert_eq!(Command::decode(&command.encode()), Ok(command));
}

//! The cluster's replicated state: the metadata Raft group's state machine.
//!
//! [`ClusterState`] holds the nodes (id, addresses, shard count), the topics with their settings,
//! and every partition's replicas as `(node, shard)` pairs, which is the whole cluster's shard
//! table. It changes only by applying a [`Command`] committed in the metadata group, so every
//! node holds the same state at the same index. The controller decides placement *before* it
//! proposes ([`ClusterState::place`]), so a command carries its replicas and applying it does
//! no choosing; applying checks again what may have changed since the proposal (a topic created
//! twice by racing requests is refused the second time, on every node alike).
//!
//! Each node derives its own view, [`Metadata`], from it ([`ClusterState::local_view`]): the
//! topics, and for the partitions it holds a replica of, the shard that owns them.

use std::collections::BTreeMap;

use rill_net::message::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::cluster::metadata::{
    Metadata, PARTITIONS_PER_TOPIC_MAX, PartitionLeader, Topic, TopicName, TopicSettings,
};

/// A node's id (Kafka's broker id).
pub type NodeId = u32;

/// One replica of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Replica {
    /// The node holding it.
    pub node: NodeId,
    /// The shard of that node that owns it.
    pub shard: u32,
}

/// A member node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Shards the node runs.
    pub shard_count: u32,
    /// Its cluster (QUIC) address, `host:port`; empty for an embedded single node.
    #[serde(default)]
    pub cluster_address: String,
    /// The Kafka address clients are told to use, `host:port`.
    #[serde(default)]
    pub kafka_address: String,
}

/// A topic in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTopic {
    /// Settings.
    pub settings: TopicSettings,
    /// Each partition's replicas; the first is the preferred leader.
    pub partitions: Vec<Vec<Replica>>,
    /// Each replicated partition's leader as last reported, with its epoch (the partition
    /// group's Raft term); shorter than `partitions` until every one has been reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaders: Vec<Option<PartitionLeader>>,
}

/// The metadata group's state (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Nodes by id.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Topics by name.
    pub topics: BTreeMap<TopicName, ClusterTopic>,
}

/// A change to the cluster state, as the metadata group's log carries it (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A node joins or announces new addresses or a new shard count; its replicas on shards it
    /// no longer runs move to its least-loaded shards.
    RegisterNode {
        /// The node.
        id: NodeId,
        /// What it announces.
        info: NodeInfo,
    },
    /// A node leaves the cluster (it holds no replica).
    RemoveNode {
        /// The node.
        id: NodeId,
    },
    /// Creates a topic with these replicas per partition.
    CreateTopic {
        /// Its name.
        name: TopicName,
        /// Settings.
        settings: TopicSettings,
        /// Replicas of each partition.
        partitions: Vec<Vec<Replica>>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Its name.
        name: TopicName,
    },
    /// Appends partitions to a topic.
    AddPartitions {
        /// The topic.
        name: TopicName,
        /// Replicas of each new partition.
        partitions: Vec<Vec<Replica>>,
    },
    /// Replaces a topic's settings.
    AlterTopic {
        /// The topic.
        name: TopicName,
        /// The new settings.
        settings: TopicSettings,
    },
    /// Partition leaders as their groups elected them, with their in-sync replicas. A report
    /// older than the one held (a lower epoch) is ignored.
    SetLeaders {
        /// The reports.
        leaders: Vec<(TopicName, u32, PartitionLeader)>,
    },
}

/// Why a command or a placement was refused: the error code clients get and a message.
pub type Refusal = (ErrorCode, String);

impl Command {
    /// The command as the log stores it.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("commands serialize")
    }

    /// A command read from the log.
    pub fn decode(bytes: &[u8]) -> Result<Command, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("undecodable metadata command: {e}"))
    }
}

impl ClusterState {
    /// The state of an existing single node's metadata (`metadata.toml`): node `node` with
    /// every partition on it, on the shard it has now.
    pub fn from_local(metadata: &Metadata, node: NodeId, info: NodeInfo) -> ClusterState {
        let topics = metadata
            .topics
            .iter()
            .map(|(name, topic)| {
                let partitions = topic.shards.iter().map(|&shard| vec![Replica { node, shard }]).collect();
                (
                    name.clone(),
                    ClusterTopic { settings: topic.settings.clone(), partitions, leaders: Vec::new() },
                )
            })
            .collect();
        ClusterState {
            nodes: BTreeMap::from([(node, NodeInfo { shard_count: metadata.shard_count, ..info })]),
            topics,
        }
    }

    /// What node `node` serves: every topic, and for each partition the shard of `node` that
    /// owns it (partitions `node` holds no replica of get shard 0 and are not opened there).
    pub fn local_view(&self, node: NodeId) -> Metadata {
        let shard_count = self.nodes.get(&node).map_or(1, |n| n.shard_count.max(1));
        let mut metadata = Metadata::new(shard_count);
        metadata.node = node;
        // A node alone advertises its own address (it may change with every start).
        if self.nodes.keys().any(|&n| n != node) {
            metadata.nodes = self.nodes.iter().map(|(id, n)| (*id, n.kafka_address.clone())).collect();
        }
        for (name, topic) in &self.topics {
            let shards = topic
                .partitions
                .iter()
                .map(|replicas| replicas.iter().find(|r| r.node == node).map_or(0, |r| r.shard))
                .collect();
            // Empty when this node holds every partition alone (a single node), as
            // `metadata.toml` has always had it.
            let alone = topic.partitions.iter().all(|r| r.len() == 1 && r[0].node == node);
            let replicas = if alone {
                Vec::new()
            } else {
                topic.partitions.iter().map(|r| r.iter().map(|r| r.node).collect()).collect()
            };
            let leaders = if alone {
                Vec::new()
            } else {
                let unknown = PartitionLeader { node: u32::MAX, epoch: 0, isr: Vec::new() };
                topic.leaders.iter().map(|l| l.clone().unwrap_or_else(|| unknown.clone())).collect()
            };
            metadata
                .topics
                .insert(name.clone(), Topic { shards, settings: topic.settings.clone(), replicas, leaders });
        }
        metadata
    }

    /// Replicas per node and, within each node, per shard.
    fn load(&self) -> BTreeMap<NodeId, Vec<u64>> {
        let mut load: BTreeMap<NodeId, Vec<u64>> =
            self.nodes.iter().map(|(id, n)| (*id, vec![0; n.shard_count.max(1) as usize])).collect();
        for topic in self.topics.values() {
            for replica in topic.partitions.iter().flatten() {
                if let Some(shard) =
                    load.get_mut(&replica.node).and_then(|s| s.get_mut(replica.shard as usize))
                {
                    *shard += 1;
                }
            }
        }
        load
    }

    /// Places `count` new partitions with `replication_factor` replicas each, or with the
    /// replica nodes given (`assignment`, one list per partition, checked): replicas go to
    /// the nodes with the fewest replicas, leaders rotate over them, and within a node to its
    /// least-loaded shard.
    pub fn place(
        &self,
        count: u32,
        replication_factor: Option<u32>,
        assignment: Option<&[Vec<NodeId>]>,
    ) -> Result<Vec<Vec<Replica>>, Refusal> {
        let mut load = self.load();
        if self.nodes.is_empty() {
            return Err((ErrorCode::InvalidReplicationFactor, "the cluster has no nodes".into()));
        }
        let mut nodes_of = Vec::with_capacity(count as usize);
        if let Some(assignment) = assignment {
            if assignment.len() != count as usize {
                return Err((
                    ErrorCode::InvalidReplicaAssignment,
                    format!("{} replica lists for {count} partitions", assignment.len()),
                ));
            }
            let width = assignment.first().map_or(0, Vec::len);
            for (i, replicas) in assignment.iter().enumerate() {
                let refuse =
                    |why: String| Err((ErrorCode::InvalidReplicaAssignment, format!("partition {i}: {why}")));
                if replicas.is_empty() || replicas.len() != width {
                    return refuse("every partition needs the same, non-zero number of replicas".into());
                }
                if let Some(unknown) = replicas.iter().find(|n| !self.nodes.contains_key(n)) {
                    return refuse(format!("node {unknown} is not in the cluster"));
                }
                let mut sorted = replicas.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() != replicas.len() {
                    return refuse("a node appears twice".into());
                }
                nodes_of.push(replicas.clone());
            }
        } else {
            let rf = replication_factor.unwrap_or(1);
            if rf == 0 || rf as usize > self.nodes.len() {
                return Err((
                    ErrorCode::InvalidReplicationFactor,
                    format!(
                        "replication factor {rf} is not between 1 and the {} nodes of the cluster",
                        self.nodes.len()
                    ),
                ));
            }
            let mut per_node: BTreeMap<NodeId, u64> =
                load.iter().map(|(n, s)| (*n, s.iter().sum())).collect();
            let mut leaders: BTreeMap<NodeId, u64> = self.nodes.keys().map(|n| (*n, 0)).collect();
            for replicas in self.topics.values().flat_map(|t| t.partitions.iter()) {
                if let Some(count) = replicas.first().and_then(|r| leaders.get_mut(&r.node)) {
                    *count += 1;
                }
            }
            for _ in 0..count {
                let mut by_load: Vec<(u64, NodeId)> = per_node.iter().map(|(n, l)| (*l, *n)).collect();
                by_load.sort_unstable();
                let mut chosen: Vec<NodeId> = by_load.iter().take(rf as usize).map(|(_, n)| *n).collect();
                // The chosen node leading the fewest partitions leads this one.
                let lead = (0..chosen.len()).min_by_key(|&i| (leaders[&chosen[i]], i)).expect("rf >= 1");
                chosen.swap(0, lead);
                *leaders.get_mut(&chosen[0]).expect("a known node") += 1;
                for n in &chosen {
                    *per_node.get_mut(n).expect("a known node") += 1;
                }
                nodes_of.push(chosen);
            }
        }
        let mut placed = Vec::with_capacity(nodes_of.len());
        for nodes in nodes_of {
            let replicas = nodes
                .iter()
                .map(|&node| {
                    let shards = load.get_mut(&node).expect("a known node");
                    let (shard, _) =
                        shards.iter().enumerate().min_by_key(|(i, l)| (**l, *i)).expect("a shard");
                    shards[shard] += 1;
                    Replica { node, shard: shard as u32 }
                })
                .collect();
            placed.push(replicas);
        }
        Ok(placed)
    }

    /// Applies a committed command (deterministic: every node reaches the same state).
    pub fn apply_command(&mut self, command: Command) -> Result<(), Refusal> {
        match command {
            Command::RegisterNode { id, info } => {
                let shard_count = info.shard_count.max(1);
                self.nodes.insert(id, NodeInfo { shard_count, ..info });
                self.fit_shards(id, shard_count);
                Ok(())
            }
            Command::RemoveNode { id } => {
                if self.topics.values().flat_map(|t| t.partitions.iter().flatten()).any(|r| r.node == id) {
                    return Err((ErrorCode::InvalidRequest, format!("node {id} still holds replicas")));
                }
                self.nodes.remove(&id).map(|_| ()).ok_or((ErrorCode::InvalidRequest, format!("no node {id}")))
            }
            Command::CreateTopic { name, settings, partitions } => {
                if self.topics.contains_key(&name) {
                    return Err((ErrorCode::TopicExists, format!("topic {name} already exists")));
                }
                self.check_replicas(&partitions, partitions.len())?;
                self.topics.insert(name, ClusterTopic { settings, partitions, leaders: Vec::new() });
                Ok(())
            }
            Command::DeleteTopic { name } => self
                .topics
                .remove(&name)
                .map(|_| ())
                .ok_or((ErrorCode::UnknownTopic, format!("unknown topic {name}"))),
            Command::AddPartitions { name, partitions } => {
                let existing = self.topics.get(&name).map(|t| t.partitions.len());
                let existing = existing.ok_or((ErrorCode::UnknownTopic, format!("unknown topic {name}")))?;
                self.check_replicas(&partitions, existing + partitions.len())?;
                self.topics.get_mut(&name).expect("checked above").partitions.extend(partitions);
                Ok(())
            }
            Command::AlterTopic { name, settings } => {
                let topic = self
                    .topics
                    .get_mut(&name)
                    .ok_or((ErrorCode::UnknownTopic, format!("unknown topic {name}")))?;
                topic.settings = settings;
                Ok(())
            }
            Command::SetLeaders { leaders } => {
                for (name, partition, leader) in leaders {
                    let Some(topic) = self.topics.get_mut(&name) else { continue };
                    let p = partition as usize;
                    let replicas =
                        topic.partitions.get(p).map(|r| r.iter().map(|r| r.node).collect::<Vec<_>>());
                    let Some(replicas) = replicas.filter(|r| r.contains(&leader.node)) else { continue };
                    if !leader.isr.iter().all(|n| replicas.contains(n)) {
                        continue;
                    }
                    if topic.leaders.len() <= p {
                        topic.leaders.resize(p + 1, None);
                    }
                    if topic.leaders[p].as_ref().is_none_or(|held| leader.epoch >= held.epoch) {
                        topic.leaders[p] = Some(leader);
                    }
                }
                Ok(())
            }
        }
    }

    fn check_replicas(&self, partitions: &[Vec<Replica>], total: usize) -> Result<(), Refusal> {
        if partitions.is_empty() || total > PARTITIONS_PER_TOPIC_MAX as usize {
            return Err((
                ErrorCode::InvalidConfig,
                format!("invalid partition count: {total} is not between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        for replicas in partitions {
            let known = |r: &Replica| self.nodes.get(&r.node).is_some_and(|n| r.shard < n.shard_count);
            if replicas.is_empty() || !replicas.iter().all(known) {
                return Err((
                    ErrorCode::InvalidReplicaAssignment,
                    "a replica names an unknown node or shard".into(),
                ));
            }
        }
        Ok(())
    }

    /// Moves node `id`'s replicas on shards it no longer runs to its least-loaded shards (the
    /// order, topics by name then partitions, makes it the same on every node).
    fn fit_shards(&mut self, id: NodeId, shard_count: u32) {
        let mut load = vec![0u64; shard_count as usize];
        for replica in self.topics.values().flat_map(|t| t.partitions.iter().flatten()) {
            if replica.node == id && replica.shard < shard_count {
                load[replica.shard as usize] += 1;
            }
        }
        for replica in self.topics.values_mut().flat_map(|t| t.partitions.iter_mut().flatten()) {
            if replica.node == id && replica.shard >= shard_count {
                let (shard, _) = load.iter().enumerate().min_by_key(|(i, l)| (**l, *i)).expect("a shard");
                load[shard] += 1;
                replica.shard = shard as u32;
            }
        }
    }
}

impl crate::cluster::consensus::StateMachine for ClusterState {
    type Outcome = Result<(), Refusal>;

    fn apply(&mut self, index: u64, command: &[u8]) -> Result<(), Refusal> {
        match Command::decode(command) {
            Ok(command) => self.apply_command(command),
            Err(e) => {
                // Every node refuses the same bytes alike, so the state stays the same everywhere.
                tracing::error!(index, error = %e, "metadata command refused");
                Err((ErrorCode::InvalidRequest, e))
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("cluster state serializes")
    }

    fn restore(&mut self, image: &[u8]) -> Result<(), String> {
        *self =
            serde_json::from_slice(image).map_err(|e| format!("undecodable cluster state snapshot: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "state/tests.rs"]
mod tests;

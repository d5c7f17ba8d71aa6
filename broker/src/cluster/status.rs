//! `rill cluster status`: the cluster as the controller shard of the answering node sees it.

use rill_net::message::{NodeStatus, ResponseBody};

use crate::cluster::metadata_group::MetadataGroup;
use crate::cluster::state::NodeId;

/// Nodes, liveness (this node and those it has a live link to), replicas and leaders per node,
/// and the partitions that have fewer in-sync replicas than replicas (all with more than one,
/// until partition data is replicated).
pub(crate) fn cluster_status(group: &MetadataGroup, linked: &[NodeId]) -> ResponseBody {
    let state = group.state();
    let mut nodes: Vec<NodeStatus> = state
        .nodes
        .iter()
        .map(|(id, info)| NodeStatus {
            id: *id,
            kafka_address: info.kafka_address.clone(),
            cluster_address: info.cluster_address.clone(),
            shards: info.shard_count,
            alive: *id == group.node() || linked.contains(id),
            replicas: 0,
            leaders: 0,
        })
        .collect();
    let mut under_replicated = 0;
    for topic in state.topics.values() {
        for (p, replicas) in topic.partitions.iter().enumerate() {
            // The leader its group reported, else the preferred (first) replica.
            let reported = topic.leaders.get(p).cloned().flatten();
            let leader = reported.as_ref().map_or(replicas.first().map(|r| r.node), |l| Some(l.node));
            for replica in replicas {
                if let Some(node) = nodes.iter_mut().find(|n| n.id == replica.node) {
                    node.replicas += 1;
                    node.leaders += u32::from(Some(replica.node) == leader);
                }
            }
            // Fewer replicas in sync than it has, as its leader last reported.
            if replicas.len() > 1 {
                let in_sync = reported.map_or(1, |l| l.isr.len());
                under_replicated += u32::from(in_sync < replicas.len());
            }
        }
    }
    ResponseBody::ClusterStatus {
        controller: group.leader(),
        answered_by: group.node(),
        nodes,
        under_replicated,
    }
}

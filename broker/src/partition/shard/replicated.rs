//! The shard's side of partition replication: frames to and from other nodes (through shard
//! 0), leadership reports, and produce and fetch on a replicated partition.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rill_net::message::{Acks, ErrorCode};
use rill_net::peer::Incoming;

use super::{Shard, ShardRequest};
use crate::cluster::controller::{AdminOp, CONTROLLER};
use crate::cluster::metadata::{Metadata, PartitionLeader, TopicName};
use crate::cluster::metadata_group::raft_id;
use crate::cluster::state::NodeId;
use crate::partition::replication::{SlotHost, decode, group_id};

/// How long leadership reports gather before they go to the controller together. Each report
/// is a metadata commit that every node adopts (a new view of every topic), so with thousands
/// of partitions electing at once they must come in few, large batches.
const REPORT_EVERY: Duration = Duration::from_millis(300);

impl Shard {
    /// Hands frames to the peer links (shard 0 only).
    pub(super) fn send_frames_here(&self, frames: Vec<(NodeId, Vec<Bytes>)>) {
        let Some(peers) = self.peers.borrow().clone() else { return };
        for (to, frame) in frames {
            peers.send_frame(to, frame);
        }
    }

    /// Shard 0: the shard owning each partition group of this node, from `metadata`.
    pub(super) fn route_groups(&self, metadata: &Metadata) {
        let mut routes = std::collections::HashMap::new();
        for (name, topic) in &metadata.topics {
            for (p, shard) in topic.shards.iter().enumerate() {
                let p = p as u32;
                if metadata.is_replicated(topic, p) && metadata.is_local(topic, p) {
                    routes.insert(group_id(name, p), *shard as usize);
                }
            }
        }
        *self.group_routes.borrow_mut() = routes;
    }

    /// Shard 0: a partition group's frame from node `peer`, passed to the shard owning the
    /// group.
    pub(crate) fn receive_partition_frame(self: &Rc<Self>, peer: NodeId, incoming: Incoming) {
        let (group, message) = match decode(peer, incoming) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::warn!(peer, %error, "a partition group's frame dropped");
                return;
            }
        };
        if message.to() != raft_id(self.metadata().node) {
            tracing::warn!(peer, to = message.to(), "a partition group's frame for another node dropped");
            return;
        }
        let Some(target) = self.group_routes.borrow().get(&group).copied() else {
            // A group this node does not (or no longer, or not yet) hold: its sender retries.
            return;
        };
        if target == self.index {
            if let Some(slot) = self.replication.by_group(group) {
                slot.deliver(message);
            }
            return;
        }
        let shard = self.clone();
        glommio::spawn_local(async move {
            shard.call(target, ShardRequest::ReplicaIn(group, message)).await;
        })
        .detach();
    }

    /// Shard 0: a peer's link came up or was lost; every shard wakes the hibernating groups
    /// that node is a member of.
    pub(crate) fn node_changed(self: &Rc<Self>, node: NodeId) {
        self.replication.node_changed(node);
        for target in (0..self.count).filter(|t| *t != self.index) {
            let shard = self.clone();
            glommio::spawn_local(async move {
                shard.call(target, ShardRequest::NodeChanged(node)).await;
            })
            .detach();
        }
    }

    /// Shard 0: queues a leadership report and makes sure the reporting task runs.
    pub(super) fn queue_leader_report(
        self: &Rc<Self>,
        topic: TopicName,
        partition: u32,
        term: u64,
        isr: Vec<NodeId>,
    ) {
        let mut reports = self.leader_reports.borrow_mut();
        let held = reports.entry((topic, partition)).or_insert((term, isr.clone()));
        if term >= held.0 {
            *held = (term, isr);
        }
        drop(reports);
        if !self.reporting.replace(true) {
            glommio::spawn_local(report_leaders(self.clone())).detach();
        }
    }

    /// A produce on a replicated partition this node leads: the batches are proposed to its
    /// group and answered once the acks asked for are met.
    pub(super) async fn produce_replicated(
        self: &Shard,
        slot: &Rc<crate::partition::replication::Slot>,
        ticket: crate::partition::order::Ticket,
        proposals: Vec<(rill_net::record_batch::BatchHeader, crate::partition::replica::Proposal)>,
        acks: Acks,
        min_insync: u32,
    ) -> Result<u64, ErrorCode> {
        if !slot.leading() {
            return Err(if slot.failed() { ErrorCode::StorageError } else { ErrorCode::NotLeaderOrFollower });
        }
        if acks == Acks::Durable && min_insync as usize > slot.in_sync() {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        ticket.turn().await;
        let key = (slot.topic.clone(), slot.partition);
        let idempotent = proposals.iter().any(|(h, _)| h.producer_id >= 0 && h.base_sequence >= 0);
        let leader_only = acks != Acks::Durable;
        let producers = if idempotent {
            let producers = self
                .producers
                .borrow_mut()
                .entry(key.clone())
                .or_insert_with(|| {
                    Rc::new(crate::partition::producer::Producers::new(self.producer_count.clone()))
                })
                .clone();
            producers.ensure_loaded(slot.log()).await.map_err(super::storage_error)?;
            let refs: Vec<&rill_net::record_batch::BatchHeader> = proposals.iter().map(|(h, _)| h).collect();
            producers.admit(&refs)?;
            match producers.check(&refs) {
                crate::partition::producer::Verdict::Append => {}
                crate::partition::producer::Verdict::Reject(code) => return Err(code),
                crate::partition::producer::Verdict::Duplicate(base) => {
                    drop(ticket);
                    let count: u64 = proposals.iter().map(|(h, _)| h.offset_count() as u64).sum();
                    return wait_reached(slot, base + count, leader_only).await.map(|()| base);
                }
            }
            Some(producers)
        } else {
            None
        };
        let mut pending = Vec::with_capacity(proposals.len());
        let mut headers = Vec::with_capacity(proposals.len());
        for (header, proposal) in proposals {
            pending.push(slot.propose(proposal, leader_only));
            headers.push(header);
        }
        if let Some(producers) = &producers {
            // Sequences are recorded at the offsets the leader will give the batches, before
            // the next request of the partition is checked.
            for (header, p) in headers.iter().zip(pending.iter_mut()) {
                match p.proposed.recv().await {
                    Some(Ok(proposed)) => producers.record(header, proposed.base_offset),
                    Some(Err(code)) => return Err(code),
                    None => return Err(ErrorCode::NotLeaderOrFollower),
                }
            }
        }
        drop(ticket);
        let mut first = None;
        for p in pending {
            let base = match p.reply.recv().await {
                Some(Ok(base)) => base,
                Some(Err(code)) => {
                    // A batch that lost its place leaves producer state that the log does not
                    // hold: it is rebuilt from the log on the next produce.
                    self.producers.borrow_mut().remove(&key);
                    return Err(code);
                }
                None => return Err(ErrorCode::NotLeaderOrFollower),
            };
            first.get_or_insert(base);
        }
        first.ok_or(ErrorCode::InvalidRequest)
    }
}

/// Waits until the partition's high watermark (or, `leader_only`, its log) reaches `end`.
async fn wait_reached(
    slot: &crate::partition::replication::Slot,
    end: u64,
    leader_only: bool,
) -> Result<(), ErrorCode> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let advanced = slot.advanced.changed();
        let reached =
            if leader_only { slot.log().log_end_offset() >= end } else { slot.high_watermark() >= end };
        if reached {
            return Ok(());
        }
        if !slot.leading() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(ErrorCode::Timeout);
        }
        let wait = (deadline - now).min(Duration::from_millis(100));
        futures_lite::future::or(advanced, glommio::timer::sleep(wait)).await;
    }
}

/// Shard 0's task: reports the leaders queued to the controller, together, until none is
/// left; a failed report is tried again.
async fn report_leaders(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(REPORT_EVERY).await;
        let reports = std::mem::take(&mut *shard.leader_reports.borrow_mut());
        if reports.is_empty() || shard.shutting_down() {
            shard.reporting.set(false);
            return;
        }
        let node = shard.metadata().node;
        let leaders: Vec<_> = reports
            .iter()
            .map(|((t, p), (term, isr))| {
                (t.clone(), *p, PartitionLeader { node, epoch: *term, isr: isr.clone() })
            })
            .collect();
        if let Err((code, message)) =
            crate::cluster::controller::run(&shard, AdminOp::SetLeaders { leaders }).await
        {
            tracing::debug!(?code, %message, "reporting partition leaders failed; trying again");
            {
                let mut queued = shard.leader_reports.borrow_mut();
                for (key, report) in reports {
                    // A newer report queued meanwhile wins.
                    queued.entry(key).or_insert(report);
                }
            }
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl SlotHost for Shard {
    fn send_frames(self: &Rc<Self>, frames: Vec<(NodeId, Vec<Bytes>)>) {
        if self.index == CONTROLLER {
            self.send_frames_here(frames);
            return;
        }
        let shard = self.clone();
        glommio::spawn_local(async move {
            shard.call(CONTROLLER, ShardRequest::PeerSend(frames)).await;
        })
        .detach();
    }

    fn report_leader(self: &Rc<Self>, topic: TopicName, partition: u32, term: u64, isr: Vec<NodeId>) {
        if self.reported_terms.borrow().get(&(topic.clone(), partition)) != Some(&term) {
            // The producers' state of a partition this node now leads is rebuilt from its log,
            // which holds every batch the group has (the previous leader's included).
            self.producers.borrow_mut().remove(&(topic.clone(), partition));
            self.reported_terms.borrow_mut().insert((topic.clone(), partition), term);
        }
        if self.index == CONTROLLER {
            self.queue_leader_report(topic, partition, term, isr);
            return;
        }
        let shard = self.clone();
        glommio::spawn_local(async move {
            shard.call(CONTROLLER, ShardRequest::ReportLeader { topic, partition, term, isr }).await;
        })
        .detach();
    }

    fn group_failed(self: &Rc<Self>, topic: &TopicName, partition: u32, reason: String) {
        let key = (topic.clone(), partition);
        self.replication.close(topic, partition);
        self.logs.borrow_mut().remove(&key);
        self.offline.borrow_mut().insert(key, reason);
    }

    fn node(&self) -> NodeId {
        self.metadata().node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_differ_by_topic_and_partition_and_are_never_the_metadata_group() {
        let a = TopicName::new("orders").unwrap();
        let b = TopicName::new("orders1").unwrap();
        let ids = [group_id(&a, 0), group_id(&a, 1), group_id(&b, 0), group_id(&b, 1)];
        for (i, x) in ids.iter().enumerate() {
            assert_ne!(*x, 0);
            for y in &ids[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(group_id(&a, 7), group_id(&a, 7), "stable");
    }
}

//! The group service: the operations a consumer group's coordinator shard runs (`GroupOp`),
//! and their replies, for both protocol front ends. The coordinator itself is `group.rs`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;

use super::{Committed, Coordinator, JoinRequest, JoinResult, SyncResult, errors};
use crate::cluster::metadata::Metadata;

/// Work for a group's coordinator shard.
pub(crate) enum GroupOp {
    Join(JoinRequest),
    Sync {
        group: String,
        generation: i32,
        member_id: String,
        instance_id: Option<String>,
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        group: String,
        generation: i32,
        member_id: String,
        instance_id: Option<String>,
    },
    Leave {
        group: String,
        members: Vec<(String, Option<String>)>,
    },
    Commit {
        group: String,
        generation: i32,
        member_id: String,
        instance_id: Option<String>,
        entries: Vec<(String, i32, Committed)>,
    },
    Fetch {
        group: String,
        partitions: Option<Vec<(String, i32)>>,
    },
    List,
    Describe {
        group: String,
    },
    Delete {
        group: String,
    },
    /// Deletes committed offsets of partitions no member is assigned; one code per partition.
    DeleteOffsets {
        group: String,
        partitions: Vec<(String, i32)>,
    },
    Restore(Vec<(String, String, i32, Committed)>),
}

/// A member as DescribeGroups shows it.
pub(crate) struct MemberView {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

pub(crate) enum GroupReply {
    Join(JoinResult),
    Sync(SyncResult),
    Code(i16),
    Codes(Vec<i16>),
    /// Per requested (or every committed) partition: its commit, if any. Or an error.
    Offsets(Result<Vec<(String, i32, Option<Committed>)>, i16>),
    /// (group id, protocol type, state).
    List(Vec<(String, String, String)>),
    /// State, protocol type, protocol, members; `None` if the coordinator knows no such group.
    Describe(Option<(String, String, String, Vec<MemberView>)>),
}

/// Runs a group operation on this (the coordinator) shard.
pub(crate) async fn run(c: Rc<Coordinator>, metadata: impl Fn() -> Rc<Metadata>, op: GroupOp) -> GroupReply {
    match op {
        GroupOp::Join(r) => GroupReply::Join(c.join(r).await),
        GroupOp::Sync { group, generation, member_id, instance_id, assignments } => {
            let member = (member_id.as_str(), instance_id.as_deref());
            GroupReply::Sync(c.sync(&group, generation, member, assignments).await)
        }
        GroupOp::Heartbeat { group, generation, member_id, instance_id } => {
            GroupReply::Code(c.heartbeat(&group, generation, &member_id, instance_id.as_deref()))
        }
        GroupOp::Leave { group, members } => GroupReply::Codes(c.leave(&group, &members)),
        GroupOp::Commit { group, generation, member_id, instance_id, entries } => {
            let check = c.check_commit(&group, generation, &member_id, instance_id.as_deref());
            if check != 0 {
                return GroupReply::Code(check);
            }
            // Checked here too, on the coordinator: the connection's shard may not have applied
            // a topic's deletion yet, and offsets of deleted topics must not come back.
            let live = live_topics(metadata());
            let entries: Vec<_> = entries
                .into_iter()
                .filter(|(t, _, _)| live(t))
                .map(|(t, p, committed)| (group.clone(), t, p, committed))
                .collect();
            GroupReply::Code(c.persist(&entries).await.err().unwrap_or(0))
        }
        GroupOp::Fetch { group, partitions } => {
            let offsets = c.offsets.borrow();
            let committed = offsets.get(&group);
            let out = match partitions {
                Some(parts) => parts
                    .into_iter()
                    .map(|(t, p)| {
                        let found = committed.and_then(|m| m.get(&(t.clone(), p))).cloned();
                        (t, p, found)
                    })
                    .collect(),
                None => committed
                    .map(|m| m.iter().map(|((t, p), v)| (t.clone(), *p, Some(v.clone()))).collect())
                    .unwrap_or_default(),
            };
            GroupReply::Offsets(Ok(out))
        }
        GroupOp::List => {
            let groups = c.groups.borrow();
            let mut out: Vec<(String, String, String)> = groups
                .values()
                .map(|g| (g.id.clone(), g.protocol_type.clone(), g.phase.name().to_string()))
                .collect();
            // Groups known only by their committed offsets are listed as Empty.
            for id in c.offsets.borrow().keys() {
                if !groups.contains_key(id) {
                    out.push((id.clone(), "consumer".into(), "Empty".into()));
                }
            }
            GroupReply::List(out)
        }
        GroupOp::Describe { group } => {
            let groups = c.groups.borrow();
            GroupReply::Describe(match groups.get(&group) {
                Some(g) => {
                    let members = g
                        .members
                        .values()
                        .map(|m| MemberView {
                            id: m.id.clone(),
                            instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: m
                                .protocols
                                .iter()
                                .find(|(n, _)| *n == g.protocol)
                                .map(|(_, b)| b.clone())
                                .unwrap_or_default(),
                            assignment: m.assignment.clone(),
                        })
                        .collect();
                    Some((g.phase.name().to_string(), g.protocol_type.clone(), g.protocol.clone(), members))
                }
                None if c.offsets.borrow().contains_key(&group) => {
                    Some(("Empty".into(), "consumer".into(), String::new(), Vec::new()))
                }
                None => None,
            })
        }
        GroupOp::Delete { group } => GroupReply::Code(c.delete(&group).await),
        GroupOp::DeleteOffsets { group, partitions } => {
            let subscribed: Vec<String> = c
                .groups
                .borrow()
                .get(&group)
                .map(|g| g.members.values().flat_map(|m| assigned(&m.assignment)).map(|(t, _)| t).collect())
                .unwrap_or_default();
            let known = c.groups.borrow().contains_key(&group) || c.offsets.borrow().contains_key(&group);
            if !known {
                return GroupReply::Codes(vec![errors::GROUP_ID_NOT_FOUND; partitions.len()]);
            }
            let deletable: Vec<(String, i32)> =
                partitions.iter().filter(|(t, _)| !subscribed.contains(t)).cloned().collect();
            let written = c.tombstone(&group, &deletable).await;
            GroupReply::Codes(
                partitions
                    .iter()
                    .map(|(t, _)| match (&written, subscribed.contains(t)) {
                        (_, true) => errors::GROUP_SUBSCRIBED_TO_TOPIC,
                        (Err(code), false) => *code,
                        (Ok(()), false) => 0,
                    })
                    .collect(),
            )
        }
        GroupOp::Restore(entries) => {
            // The shard's own log may still be opening.
            for _ in 0..10_000 {
                if c.is_open() {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            let live = live_topics(metadata());
            let entries = entries.into_iter().filter(|(_, t, _, _)| live(t)).collect();
            GroupReply::Code(c.restore(entries).await.err().unwrap_or(0))
        }
    }
}

/// Whether a topic named so exists in `metadata` (this shard's, now).
fn live_topics(metadata: Rc<Metadata>) -> impl Fn(&str) -> bool {
    move |t: &str| metadata.has_topic(t)
}

/// Partitions in a consumer-protocol assignment (empty if it is not one).
pub(crate) fn assigned(bytes: &Bytes) -> Vec<(String, u32)> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let mut buf = bytes.clone();
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    match ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p as u32)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

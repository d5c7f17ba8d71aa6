//! Native-protocol group administration (`rill group ...`) and the members of native group
//! consumers (`rill consume --group`).

use std::rc::Rc;

use bytes::Bytes;
use rill_net::message::{ErrorCode, GroupMemberInfo, GroupOffsetInfo, OffsetSpec, ResponseBody};

use crate::partition::group::ops::assigned;
use crate::partition::group::ops::{GroupOp, GroupReply};
use crate::partition::group::{Committed, now_ms};
use crate::partition::routing::call_group;

use crate::partition::routing::route;
use crate::partition::shard::{Shard, ShardReply, ShardRequest};
use crate::protocol::native::Response;

fn status(error: ErrorCode, message: impl Into<String>) -> Response {
    (ResponseBody::Status { error, message: message.into() }, Vec::new())
}

/// A member operation of a native group consumer (`rill consume --group`).
pub(crate) async fn member(shard: &Rc<Shard>, body: rill_net::message::RequestBody) -> Response {
    use rill_net::message::RequestBody as R;
    let reply = |body| (body, Vec::new());
    match body {
        R::JoinGroup { group, member_id, client_id, session_timeout_ms, protocol_type, protocols } => {
            let request = crate::partition::group::JoinRequest {
                group: group.clone(),
                member_id,
                instance_id: None,
                client_id,
                client_host: String::new(),
                session_timeout_ms: session_timeout_ms.min(i32::MAX as u32) as i32,
                rebalance_timeout_ms: session_timeout_ms.min(i32::MAX as u32) as i32,
                protocol_type,
                protocols: protocols.into_iter().map(|(n, m)| (n, Bytes::from(m))).collect(),
                require_known_member_id: false,
            };
            let r = match call_group(shard, &group, GroupOp::Join(request)).await {
                Some(GroupReply::Join(r)) => r,
                _ => crate::partition::group::JoinResult { error: 15, ..Default::default() },
            };
            reply(ResponseBody::Joined {
                error: r.error,
                generation: r.generation,
                protocol: r.protocol,
                leader: r.leader,
                member_id: r.member_id,
                members: r.members.into_iter().map(|(id, _, m)| (id, m.to_vec())).collect(),
            })
        }
        R::SyncGroup { group, generation, member_id, assignments } => {
            let assignments = assignments.into_iter().map(|(m, a)| (m, Bytes::from(a))).collect();
            let op =
                GroupOp::Sync { group: group.clone(), generation, member_id, instance_id: None, assignments };
            let (error, assignment) = match call_group(shard, &group, op).await {
                Some(GroupReply::Sync(r)) => r,
                _ => (15, Bytes::new()),
            };
            reply(ResponseBody::Synced { error, assignment: assignment.to_vec() })
        }
        R::Heartbeat { group, generation, member_id } => {
            let op = GroupOp::Heartbeat { group: group.clone(), generation, member_id, instance_id: None };
            let error = match call_group(shard, &group, op).await {
                Some(GroupReply::Code(c)) => c,
                _ => 15,
            };
            reply(ResponseBody::GroupCode { error })
        }
        R::LeaveGroup { group, member_id } => {
            let op = GroupOp::Leave { group: group.clone(), members: vec![(member_id, None)] };
            let error = match call_group(shard, &group, op).await {
                Some(GroupReply::Codes(c)) => c.first().copied().unwrap_or(0),
                _ => 15,
            };
            reply(ResponseBody::GroupCode { error })
        }
        R::CommitOffsets { group, generation, member_id, offsets } => {
            let now = now_ms();
            let entries = offsets
                .into_iter()
                .map(|(t, p, offset)| {
                    let c = Committed { offset, leader_epoch: -1, metadata: String::new(), commit_ms: now };
                    (t, p as i32, c)
                })
                .collect();
            let op =
                GroupOp::Commit { group: group.clone(), generation, member_id, instance_id: None, entries };
            let error = match call_group(shard, &group, op).await {
                Some(GroupReply::Code(c)) => c,
                _ => 15,
            };
            reply(ResponseBody::GroupCode { error })
        }
        R::FetchOffsets { group, parts } => {
            let partitions = Some(parts.into_iter().map(|(t, p)| (t, p as i32)).collect());
            let parts =
                match call_group(shard, &group, GroupOp::Fetch { group: group.clone(), partitions }).await {
                    Some(GroupReply::Offsets(Ok(found))) => {
                        found.into_iter().map(|(t, p, c)| (t, p as u32, c.map_or(-1, |c| c.offset))).collect()
                    }
                    _ => return status(ErrorCode::ShuttingDown, "coordinator unavailable"),
                };
            reply(ResponseBody::Committed { parts })
        }
        other => {
            status(ErrorCode::InvalidRequest, format!("{:?} is not a group member request", other.kind()))
        }
    }
}

pub(crate) async fn list(shard: &Rc<Shard>) -> Response {
    let mut groups = Vec::new();
    for owner in 0..shard.count {
        if let ShardReply::Group(GroupReply::List(list)) =
            shard.call(owner, ShardRequest::Group(GroupOp::List)).await
        {
            groups.extend(list.into_iter().map(|(id, _, state)| (id, state)));
        }
    }
    groups.sort();
    (ResponseBody::Groups { groups }, Vec::new())
}

pub(crate) async fn describe(shard: &Rc<Shard>, group: String) -> Response {
    let described = match call_group(shard, &group, GroupOp::Describe { group: group.clone() }).await {
        Some(GroupReply::Describe(d)) => d,
        _ => return status(ErrorCode::ShuttingDown, "coordinator unavailable"),
    };
    let Some((state, _, protocol, members)) = described else {
        return status(ErrorCode::UnknownTopic, format!("no group {group}"));
    };
    let committed =
        match call_group(shard, &group, GroupOp::Fetch { group: group.clone(), partitions: None }).await {
            Some(GroupReply::Offsets(Ok(c))) => c,
            _ => Vec::new(),
        };
    // Committed partitions, then assigned ones without a commit (committed -1).
    let mut wanted: Vec<(String, i32, i64)> =
        committed.into_iter().filter_map(|(t, p, c)| c.map(|c| (t, p, c.offset))).collect();
    for m in &members {
        for (t, p) in assigned(&m.assignment) {
            if !wanted.iter().any(|(wt, wp, _)| *wt == t && *wp == p as i32) {
                wanted.push((t, p as i32, -1));
            }
        }
    }
    wanted.sort();
    let mut offsets = Vec::new();
    for (topic, partition, committed) in wanted {
        let log_end = match route(shard, &topic, partition as u32) {
            Ok((name, owner)) => match shard
                .call(owner, ShardRequest::State { topic: name, partition: partition as u32 })
                .await
            {
                ShardReply::State(Ok((_, end))) => end,
                _ => 0,
            },
            Err(_) => 0,
        };
        offsets.push(GroupOffsetInfo { topic, partition: partition as u32, committed, log_end });
    }
    let members = members
        .into_iter()
        .map(|m| GroupMemberInfo {
            partitions: assigned(&m.assignment),
            member_id: m.id,
            client_id: m.client_id,
            client_host: m.client_host,
        })
        .collect();
    (ResponseBody::Group { group, state, protocol, members, offsets }, Vec::new())
}

pub(crate) async fn delete(shard: &Rc<Shard>, group: String) -> Response {
    match call_group(shard, &group, GroupOp::Delete { group: group.clone() }).await {
        Some(GroupReply::Code(0)) => status(ErrorCode::None, "ok"),
        Some(GroupReply::Code(68)) => status(ErrorCode::InvalidRequest, format!("group {group} has members")),
        Some(GroupReply::Code(69)) => status(ErrorCode::UnknownTopic, format!("no group {group}")),
        _ => status(ErrorCode::StorageError, "deleting the group failed"),
    }
}

pub(crate) async fn reset(shard: &Rc<Shard>, group: String, topic: String, to: OffsetSpec) -> Response {
    let partitions = match crate::cluster::metadata::TopicName::new(&topic)
        .ok()
        .and_then(|n| shard.metadata().topics.get(&n).cloned())
    {
        Some(t) => t.shards.len() as u32,
        None => return status(ErrorCode::UnknownTopic, format!("no topic {topic}")),
    };
    let mut entries = Vec::new();
    for partition in 0..partitions {
        let Ok((name, owner)) = route(shard, &topic, partition) else { continue };
        let offset =
            match shard.call(owner, ShardRequest::ListOffset { topic: name, partition, spec: to }).await {
                ShardReply::Offset(Ok(o)) if o >= 0 => o,
                // No record at or after the timestamp: the end.
                ShardReply::Offset(Ok(_)) => match shard
                    .call(
                        owner,
                        ShardRequest::ListOffset {
                            topic: crate::cluster::metadata::TopicName::new(&topic).expect("valid"),
                            partition,
                            spec: OffsetSpec::Latest,
                        },
                    )
                    .await
                {
                    ShardReply::Offset(Ok(o)) => o,
                    _ => return status(ErrorCode::StorageError, "reading offsets failed"),
                },
                _ => return status(ErrorCode::StorageError, "reading offsets failed"),
            };
        let committed = Committed { offset, leader_epoch: -1, metadata: String::new(), commit_ms: now_ms() };
        entries.push((topic.clone(), partition as i32, committed));
    }
    let op = GroupOp::Commit {
        group: group.clone(),
        generation: -1,
        member_id: String::new(),
        instance_id: None,
        entries,
    };
    match call_group(shard, &group, op).await {
        Some(GroupReply::Code(0)) => status(ErrorCode::None, "ok"),
        Some(GroupReply::Code(25)) => {
            status(ErrorCode::InvalidRequest, format!("group {group} has members; stop them first"))
        }
        _ => status(ErrorCode::StorageError, "committing the offsets failed"),
    }
}

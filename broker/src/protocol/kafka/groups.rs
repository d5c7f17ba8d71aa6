//! Kafka consumer-group requests: each is routed to the group's coordinator shard as a
//! `GroupOp` and answered from its `GroupReply`. The coordinator itself is `group.rs`.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName as KafkaTopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_net::kafka::code;

use crate::partition::group::ops::{GroupOp, GroupReply};
use crate::partition::group::{Committed, JoinRequest, JoinResult, now_ms};
use crate::partition::routing::call_group;
use crate::partition::shard::{Shard, ShardReply, ShardRequest};

/// A group operation on this node's coordinator, or `None` when another node coordinates the
/// group (answered NOT_COORDINATOR, so the client finds the coordinator again) or the
/// coordinator cannot answer.
async fn group_call(shard: &Rc<Shard>, group: &str, op: GroupOp) -> Option<GroupReply> {
    if !super::cluster_info::coordinates(shard, group) {
        return None;
    }
    call_group(shard, group, op).await
}

/// The error of a group operation [`group_call`] could not run.
fn unavailable(shard: &Shard, group: &str) -> i16 {
    if super::cluster_info::coordinates(shard, group) {
        code::COORDINATOR_NOT_AVAILABLE
    } else {
        code::NOT_COORDINATOR
    }
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub(crate) async fn join_group(
    shard: &Rc<Shard>,
    r: JoinGroupRequest,
    v: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    let request = JoinRequest {
        group: r.group_id.0.to_string(),
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|i| i.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: r.session_timeout_ms,
        rebalance_timeout_ms: if v >= 1 { r.rebalance_timeout_ms } else { r.session_timeout_ms },
        protocol_type: r.protocol_type.to_string(),
        protocols: r.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: v >= 4,
    };
    let group = request.group.clone();
    let result = match group_call(shard, &group, GroupOp::Join(request)).await {
        Some(GroupReply::Join(result)) => result,
        _ => JoinResult { error: unavailable(shard, &group), ..JoinResult::default() },
    };
    let mut response = JoinGroupResponse::default();
    response.error_code = result.error;
    response.generation_id = if result.error == 0 { result.generation } else { -1 };
    response.protocol_name = Some(s(result.protocol));
    if v >= 7 && result.error == 0 {
        response.protocol_type = Some(s(result.protocol_type));
    }
    response.leader = s(result.leader);
    response.member_id = s(result.member_id);
    response.members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = s(id);
            if v >= 5 {
                m.group_instance_id = instance.map(s);
            }
            m.metadata = metadata;
            m
        })
        .collect();
    response
}

pub(crate) async fn sync_group(shard: &Rc<Shard>, r: SyncGroupRequest) -> SyncGroupResponse {
    let group = r.group_id.0.to_string();
    let op = GroupOp::Sync {
        group: group.clone(),
        generation: r.generation_id,
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|i| i.to_string()),
        assignments: r.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect(),
    };
    let (error, assignment) = match group_call(shard, &group, op).await {
        Some(GroupReply::Sync(result)) => result,
        _ => (unavailable(shard, &group), Bytes::new()),
    };
    let mut response = SyncGroupResponse::default();
    response.error_code = error;
    response.assignment = assignment;
    response
}

pub(crate) async fn heartbeat(shard: &Rc<Shard>, r: HeartbeatRequest) -> HeartbeatResponse {
    let group = r.group_id.0.to_string();
    let op = GroupOp::Heartbeat {
        group: group.clone(),
        generation: r.generation_id,
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|i| i.to_string()),
    };
    let mut response = HeartbeatResponse::default();
    response.error_code = match group_call(shard, &group, op).await {
        Some(GroupReply::Code(code)) => code,
        _ => unavailable(shard, &group),
    };
    response
}

pub(crate) async fn leave_group(shard: &Rc<Shard>, r: LeaveGroupRequest, v: i16) -> LeaveGroupResponse {
    let group = r.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        r.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
            .collect()
    } else {
        vec![(r.member_id.to_string(), None)]
    };
    let codes =
        match group_call(shard, &group, GroupOp::Leave { group: group.clone(), members: members.clone() })
            .await
        {
            Some(GroupReply::Codes(codes)) => codes,
            _ => vec![unavailable(shard, &group); members.len()],
        };
    let mut response = LeaveGroupResponse::default();
    if v >= 3 {
        response.members = members
            .into_iter()
            .zip(&codes)
            .map(|((id, instance), code)| {
                let mut m = MemberResponse::default();
                m.member_id = s(id);
                m.group_instance_id = instance.map(s);
                m.error_code = *code;
                m
            })
            .collect();
    } else {
        response.error_code = codes.first().copied().unwrap_or(0);
    }
    response
}

pub(crate) async fn offset_commit(shard: &Rc<Shard>, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = r.group_id.0.to_string();
    let now = now_ms();
    let mut entries = Vec::new();
    let mut unknown = Vec::new();
    for t in &r.topics {
        let topic = t.name.0.to_string();
        let partitions = crate::cluster::metadata::TopicName::new(&topic)
            .ok()
            .and_then(|n| shard.metadata().topics.get(&n).map(|t| t.shards.len() as i32));
        for p in &t.partitions {
            if partitions.is_none_or(|n| p.partition_index < 0 || p.partition_index >= n) {
                unknown.push((topic.clone(), p.partition_index));
                continue;
            }
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let committed = Committed {
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata,
                commit_ms: now,
            };
            entries.push((topic.clone(), p.partition_index, committed));
        }
    }
    let error = if entries.is_empty() {
        0
    } else {
        let op = GroupOp::Commit {
            group: group.clone(),
            generation: r.generation_id_or_member_epoch,
            member_id: r.member_id.to_string(),
            instance_id: r.group_instance_id.map(|i| i.to_string()),
            entries,
        };
        match group_call(shard, &group, op).await {
            Some(GroupReply::Code(code)) => code,
            _ => unavailable(shard, &group),
        }
    };
    let mut response = OffsetCommitResponse::default();
    for t in r.topics {
        let mut topic = OffsetCommitResponseTopic::default();
        let name = t.name.0.to_string();
        topic.name = t.name;
        for p in t.partitions {
            let mut part = OffsetCommitResponsePartition::default();
            part.partition_index = p.partition_index;
            part.error_code = if unknown.contains(&(name.clone(), p.partition_index)) {
                code::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                error
            };
            topic.partitions.push(part);
        }
        response.topics.push(topic);
    }
    response
}

pub(crate) async fn offset_fetch(shard: &Rc<Shard>, r: OffsetFetchRequest, v: i16) -> OffsetFetchResponse {
    let group = r.group_id.0.to_string();
    let partitions = r.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.0.to_string(), *p)))
            .collect::<Vec<_>>()
    });
    let mut response = OffsetFetchResponse::default();
    let found = match group_call(shard, &group, GroupOp::Fetch { group: group.clone(), partitions }).await {
        Some(GroupReply::Offsets(Ok(found))) => found,
        _ => {
            if v >= 2 {
                response.error_code = unavailable(shard, &group);
            }
            return response;
        }
    };
    for (topic, partition, committed) in found {
        let mut part = OffsetFetchResponsePartition::default();
        part.partition_index = partition;
        match committed {
            Some(c) => {
                part.committed_offset = c.offset;
                if v >= 5 {
                    part.committed_leader_epoch = c.leader_epoch;
                }
                part.metadata = Some(s(c.metadata));
            }
            None => {
                part.committed_offset = -1;
                if v >= 5 {
                    part.committed_leader_epoch = -1;
                }
                part.metadata = Some(s(""));
            }
        }
        match response.topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(part),
            None => {
                let mut t = OffsetFetchResponseTopic::default();
                t.name = KafkaTopicName(s(topic));
                t.partitions.push(part);
                response.topics.push(t);
            }
        }
    }
    response
}

pub(crate) async fn list_groups(shard: &Rc<Shard>, r: ListGroupsRequest, v: i16) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    for owner in 0..shard.count {
        if let ShardReply::Group(GroupReply::List(groups)) =
            shard.call(owner, ShardRequest::Group(GroupOp::List)).await
        {
            for (id, protocol_type, state) in groups {
                if v >= 4
                    && !r.states_filter.is_empty()
                    && !r.states_filter.iter().any(|f| f.as_str() == state)
                {
                    continue;
                }
                let mut g = ListedGroup::default();
                g.group_id = GroupId(s(id));
                g.protocol_type = s(protocol_type);
                if v >= 4 {
                    g.group_state = s(state);
                }
                response.groups.push(g);
            }
        }
    }
    response
}

pub(crate) async fn describe_groups(
    shard: &Rc<Shard>,
    r: DescribeGroupsRequest,
    v: i16,
) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for id in r.groups {
        let group = id.0.to_string();
        let mut d = DescribedGroup::default();
        d.group_id = id;
        match group_call(shard, &group, GroupOp::Describe { group: group.clone() }).await {
            Some(GroupReply::Describe(Some((state, protocol_type, protocol, members)))) => {
                d.group_state = s(state);
                d.protocol_type = s(protocol_type);
                d.protocol_data = s(protocol);
                d.members = members
                    .into_iter()
                    .map(|m| {
                        let mut out = DescribedGroupMember::default();
                        out.member_id = s(m.id);
                        if v >= 4 {
                            out.group_instance_id = m.instance_id.map(s);
                        }
                        out.client_id = s(m.client_id);
                        out.client_host = s(m.client_host);
                        out.member_metadata = m.metadata;
                        out.member_assignment = m.assignment;
                        out
                    })
                    .collect();
            }
            // Kafka describes an unknown group as Dead with no members.
            Some(GroupReply::Describe(None)) => d.group_state = s("Dead"),
            _ => d.error_code = unavailable(shard, &group),
        }
        response.groups.push(d);
    }
    response
}

pub(crate) async fn offset_delete(shard: &Rc<Shard>, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = r.group_id.0.to_string();
    let partitions: Vec<(String, i32)> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), p.partition_index)))
        .collect();
    let op = GroupOp::DeleteOffsets { group: group.clone(), partitions: partitions.clone() };
    let mut response = OffsetDeleteResponse::default();
    let codes = match group_call(shard, &group, op).await {
        Some(GroupReply::Codes(codes)) => codes,
        _ => {
            response.error_code = unavailable(shard, &group);
            return response;
        }
    };
    if codes.iter().all(|c| *c == crate::partition::group::errors::GROUP_ID_NOT_FOUND) && !codes.is_empty() {
        response.error_code = crate::partition::group::errors::GROUP_ID_NOT_FOUND;
        return response;
    }
    let mut codes = codes.into_iter();
    for t in r.topics {
        let mut topic = OffsetDeleteResponseTopic::default();
        topic.name = t.name;
        for p in t.partitions {
            let mut part = OffsetDeleteResponsePartition::default();
            part.partition_index = p.partition_index;
            part.error_code = codes.next().unwrap_or(0);
            topic.partitions.push(part);
        }
        response.topics.push(topic);
    }
    response
}

pub(crate) async fn delete_groups(shard: &Rc<Shard>, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for id in r.groups_names {
        let group = id.0.to_string();
        let mut result = DeletableGroupResult::default();
        result.group_id = id;
        result.error_code = match group_call(shard, &group, GroupOp::Delete { group: group.clone() }).await {
            Some(GroupReply::Code(code)) => code,
            _ => unavailable(shard, &group),
        };
        response.results.push(result);
    }
    response
}

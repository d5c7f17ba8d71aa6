//! Where a request goes: a partition's owning shard, and the controller for topic
//! administration.

use std::rc::Rc;

use rill_net::message::ErrorCode;

use crate::cluster::controller::{AdminOp, CONTROLLER};
use crate::cluster::metadata::TopicName;
use crate::partition::group::coordinator_shard;
use crate::partition::group::ops::{GroupOp, GroupReply};
use crate::partition::shard::{Shard, ShardReply, ShardRequest};

/// The topic's name and the shard that owns `partition` of it.
pub(crate) fn route(shard: &Shard, topic: &str, partition: u32) -> Result<(TopicName, usize), ErrorCode> {
    let name = TopicName::new(topic).map_err(|_| ErrorCode::UnknownTopic)?;
    let owner = shard.owner(&name, partition)?;
    Ok((name, owner))
}

/// Runs a topic administration operation on the controller.
pub(crate) async fn admin_op(shard: &Rc<Shard>, op: AdminOp) -> Result<(), (ErrorCode, String)> {
    match shard.call(CONTROLLER, ShardRequest::Admin(op)).await {
        ShardReply::Admin(result) => result,
        _ => Err((ErrorCode::ShuttingDown, "unexpected reply".into())),
    }
}

/// Runs a group operation on the group's coordinator shard; `None` if that shard is stopping.
pub(crate) async fn call_group(shard: &Rc<Shard>, group: &str, op: GroupOp) -> Option<GroupReply> {
    let owner = coordinator_shard(group, shard.count);
    match shard.call(owner, ShardRequest::Group(op)).await {
        ShardReply::Group(reply) => Some(reply),
        _ => None,
    }
}

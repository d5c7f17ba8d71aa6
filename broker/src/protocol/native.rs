//! Native-protocol requests to broker operations: routing each partition to its owning shard
//! and assembling the response.

pub(crate) mod groups;

use std::rc::Rc;

use bytes::Bytes;
use rill_net::message::{
    ErrorCode, FetchPart, FetchResult, PartitionInfo, ProduceResult, RequestBody, ResponseBody, range,
};
use rill_net::record_batch;

use crate::cluster::controller::{AdminOp, CONTROLLER};
use crate::cluster::metadata::TopicName;
use crate::cluster::topic_config::SettingsChange;
use crate::partition::fetch::fetch_outcomes;
use crate::partition::order::Order;
use crate::partition::routing::{admin_op, route};
use crate::partition::shard::{FetchOutcome, Shard, ShardReply, ShardRequest};

/// A response: its envelope and the data chunks its record ranges point into.
pub(crate) type Response = (ResponseBody, Vec<Bytes>);

fn status(error: ErrorCode, message: impl Into<String>) -> Response {
    (ResponseBody::Status { error, message: message.into() }, Vec::new())
}

/// A native request's topic settings as the metadata keeps them.
fn settings_of(s: rill_net::message::TopicSettings) -> crate::cluster::metadata::TopicSettings {
    crate::cluster::metadata::TopicSettings {
        segment_bytes: s.segment_bytes,
        retention_ms: s.retention_ms.map(|v| v.min(crate::cluster::metadata::UNLIMITED)),
        retention_bytes: s.retention_bytes.map(|v| v.min(crate::cluster::metadata::UNLIMITED)),
        durability: s.durability,
        configs: Default::default(),
    }
}

/// Handles one request once `order` gives it its turn. A produce is done with the order once
/// its appends hold their places; requests that change nothing, at once; the others when they
/// end (their effect is the whole request).
pub(crate) async fn handle(shard: &Rc<Shard>, body: RequestBody, data: Bytes, order: Order) -> Response {
    order.turn().await;
    let reads_only = matches!(
        body,
        RequestBody::Fetch { .. }
            | RequestBody::ListOffsets { .. }
            | RequestBody::ListTopics
            | RequestBody::ClusterStatus
            | RequestBody::DescribeTopic { .. }
            | RequestBody::ListGroups
            | RequestBody::DescribeGroup { .. }
    );
    if reads_only {
        order.done();
    }
    match body {
        RequestBody::CreateTopic { name, partitions, replication_factor, settings } => {
            let settings = settings_of(settings);
            match TopicName::new(&name) {
                Ok(name) => {
                    let op = AdminOp::Create {
                        name,
                        partitions,
                        replication_factor: (replication_factor > 0).then_some(replication_factor),
                        assignment: None,
                        settings,
                        validate_only: false,
                    };
                    admin(shard, op).await
                }
                Err(e) => status(ErrorCode::InvalidTopicName, e.to_string()),
            }
        }
        RequestBody::DeleteTopic { name } => match TopicName::new(&name) {
            Ok(name) => admin(shard, AdminOp::Delete { name }).await,
            Err(e) => status(ErrorCode::UnknownTopic, e.to_string()),
        },
        RequestBody::AlterTopic { name, settings } => {
            let settings = settings_of(settings);
            match TopicName::new(&name) {
                Ok(name) => {
                    let change = SettingsChange::Native(settings);
                    admin(shard, AdminOp::Alter { name, change }).await
                }
                Err(e) => status(ErrorCode::UnknownTopic, e.to_string()),
            }
        }
        RequestBody::AddPartitions { name, total } => match TopicName::new(&name) {
            Ok(name) => {
                let op = AdminOp::AddPartitions { name, total, assignment: None, validate_only: false };
                admin(shard, op).await
            }
            Err(e) => status(ErrorCode::UnknownTopic, e.to_string()),
        },
        RequestBody::AddNode { id } => admin(shard, AdminOp::AddNode { id }).await,
        RequestBody::RemoveNode { id } => admin(shard, AdminOp::RemoveNode { id }).await,
        RequestBody::ClusterStatus => match shard.call(CONTROLLER, ShardRequest::ClusterStatus).await {
            ShardReply::ClusterStatus(body) => (*body, Vec::new()),
            _ => status(ErrorCode::ShuttingDown, "the controller shard is stopping"),
        },
        RequestBody::ListTopics => {
            let names = shard.metadata().topics.keys().map(|n| n.to_string()).collect();
            (ResponseBody::Topics { names }, Vec::new())
        }
        RequestBody::DescribeTopic { name } => describe(shard, &name).await,
        RequestBody::Produce { parts, acks, .. } => produce(shard, parts, acks, &data, order).await,
        RequestBody::Fetch { max_wait_ms, min_bytes, max_bytes, parts } => {
            fetch(shard, parts, max_wait_ms, min_bytes, max_bytes).await
        }
        RequestBody::ListOffsets { parts } => {
            let mut tasks = Vec::new();
            for (topic, partition, spec) in parts {
                let shard = shard.clone();
                tasks.push(glommio::spawn_local(async move {
                    let result = match route(&shard, &topic, partition) {
                        Ok((name, owner)) => {
                            match shard
                                .call(owner, ShardRequest::ListOffset { topic: name, partition, spec })
                                .await
                            {
                                ShardReply::Offset(r) => r,
                                _ => Err(ErrorCode::ShuttingDown),
                            }
                        }
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(offset) => (topic, partition, ErrorCode::None, offset),
                        Err(e) => (topic, partition, e, -1),
                    }
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            (ResponseBody::Offsets { parts: out }, Vec::new())
        }
        RequestBody::ListGroups => groups::list(shard).await,
        RequestBody::DescribeGroup { group } => groups::describe(shard, group).await,
        RequestBody::DeleteGroup { group } => groups::delete(shard, group).await,
        RequestBody::ResetOffsets { group, topic, to } => groups::reset(shard, group, topic, to).await,
        body @ (RequestBody::JoinGroup { .. }
        | RequestBody::SyncGroup { .. }
        | RequestBody::Heartbeat { .. }
        | RequestBody::LeaveGroup { .. }
        | RequestBody::CommitOffsets { .. }
        | RequestBody::FetchOffsets { .. }) => groups::member(shard, body).await,
    }
}

async fn admin(shard: &Rc<Shard>, op: AdminOp) -> Response {
    match admin_op(shard, op).await {
        Ok(()) => status(ErrorCode::None, "ok"),
        Err((code, message)) => status(code, message),
    }
}

async fn describe(shard: &Rc<Shard>, name: &str) -> Response {
    let Ok(topic_name) = TopicName::new(name) else {
        return status(ErrorCode::UnknownTopic, "no such topic");
    };
    let metadata = shard.metadata();
    let Some(topic) = metadata.topics.get(&topic_name) else {
        return status(ErrorCode::UnknownTopic, "no such topic");
    };
    let mut partitions = Vec::new();
    for (partition, owner) in topic.shards.iter().enumerate() {
        let request = ShardRequest::State { topic: topic_name.clone(), partition: partition as u32 };
        let (log_start, log_end) = match shard.call(*owner as usize, request).await {
            ShardReply::State(Ok(state)) => state,
            _ => (0, 0),
        };
        partitions.push(PartitionInfo { partition: partition as u32, shard: *owner, log_start, log_end });
    }
    let s = &topic.settings;
    let settings = rill_net::message::TopicSettings {
        segment_bytes: s.segment_bytes,
        retention_ms: s.retention_ms,
        retention_bytes: s.retention_bytes,
        durability: s.durability.clone(),
    };
    (ResponseBody::Topic { name: name.to_string(), settings, partitions }, Vec::new())
}

async fn produce(
    shard: &Rc<Shard>,
    parts: Vec<rill_net::message::ProducePart>,
    acks: rill_net::message::Acks,
    data: &Bytes,
    order: Order,
) -> Response {
    let mut tasks = Vec::new();
    // One share of the order per part, dropped once the part is placed (or refused).
    let order = Rc::new(order);
    for part in parts {
        let (shard, placement) = (shard.clone(), order.clone());
        let records =
            range(data, part.records_at, part.records_len).expect("ranges were validated at decode");
        tasks.push(glommio::spawn_local(async move {
            let result = async {
                let (name, owner) = route(&shard, &part.topic, part.partition)?;
                let batches = record_batch::split_produced(&records).map_err(|_| ErrorCode::CorruptBatch)?;
                if batches.is_empty() {
                    return Err(ErrorCode::CorruptBatch);
                }
                let request = ShardRequest::Produce { topic: name, partition: part.partition, batches, acks };
                match shard.call_placed(owner, request, move || drop(placement)).await {
                    ShardReply::Produced(r) => r.map(|a| a.base),
                    _ => Err(ErrorCode::ShuttingDown),
                }
            }
            .await;
            let (error, base_offset) = match result {
                Ok(base) => (ErrorCode::None, base),
                Err(e) => (e, 0),
            };
            ProduceResult { topic: part.topic, partition: part.partition, error, base_offset }
        }));
    }
    drop(order);
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await);
    }
    (ResponseBody::Produced { parts: results }, Vec::new())
}

/// Fetch with Kafka's long-poll: answer at once if `min_bytes` are there; otherwise wait until
/// any partition gets data or `max_wait_ms` passes, then read all partitions again.
async fn fetch(
    shard: &Rc<Shard>,
    parts: Vec<FetchPart>,
    max_wait_ms: u32,
    min_bytes: u32,
    max_bytes: u32,
) -> Response {
    let outcomes = fetch_outcomes(shard, &parts, max_wait_ms, min_bytes, max_bytes).await;
    assemble(parts, outcomes)
}

fn assemble(parts: Vec<FetchPart>, outcomes: Vec<FetchOutcome>) -> Response {
    let mut data = Vec::new();
    let mut at = 0u64;
    let mut results = Vec::new();
    for (part, mut outcome) in parts.into_iter().zip(outcomes) {
        let mut len = outcome.bytes() as u64;
        // `fetch_outcomes` bounds the response by the profile's maximum; should a part still not
        // fit the envelope's 32-bit ranges, it goes without its batches rather than panicking.
        if at + len > u32::MAX as u64 {
            outcome.batches.clear();
            len = 0;
        }
        results.push(FetchResult {
            topic: part.topic,
            partition: part.partition,
            error: outcome.error,
            log_start: outcome.log_start,
            high_watermark: outcome.high_watermark,
            records_at: at as u32,
            records_len: len as u32,
        });
        at += len;
        data.extend(outcome.batches);
    }
    (ResponseBody::Fetched { parts: results }, data)
}

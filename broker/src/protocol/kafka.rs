//! Kafka-protocol requests to broker operations.
//!
//! The same shard operations serve both protocols: a Kafka produce becomes the same
//! `ShardRequest::Produce` of RecordBatch v2 bytes as a native one, and a Kafka fetch returns the
//! stored batches unchanged. Rill is a single node here: node 0 leads every partition, with
//! itself as the only replica. Fields a version does not have are left at their defaults (the
//! codec refuses to encode a field the requested version lacks).

pub(crate) mod cluster_info;
pub(crate) mod configs;
pub(crate) mod describe_configs;
pub(crate) mod errors;
pub(crate) mod groups;
pub(crate) mod log_dirs;
pub(crate) mod records;
pub(crate) mod topics;

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use rill_net::kafka::{KafkaIncoming, KafkaRequest, code, encode_response};
use rill_net::message::ErrorCode;

use self::cluster_info::{api_versions, describe_cluster, find_coordinator, metadata};
use self::describe_configs::describe_configs;
use self::records::{fetch, init_producer_id, list_offsets, produce};
use self::topics::{create_partitions, create_topics, delete_topics};
use crate::partition::order::Order;
use crate::partition::shard::Shard;

/// Handles one request once `order` gives it its turn; `None` when it gets no response
/// (produce with acks=0). A produce is done with the order once its appends hold their places;
/// requests that change nothing, at once; the others (group and admin requests) when they end.
pub(crate) async fn handle(
    shard: &Rc<Shard>,
    incoming: KafkaIncoming,
    peer: &str,
    order: Order,
) -> Option<Bytes> {
    let KafkaIncoming { api_key, api_version: v, correlation_id: id, request, client_id, .. } = incoming;
    let started = std::time::Instant::now();
    let frame = respond(shard, api_key, v, id, request, client_id, peer, order).await;
    shard.metrics.borrow_mut().request(api_key as i16, started.elapsed());
    frame
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    shard: &Rc<Shard>,
    api_key: ApiKey,
    v: i16,
    id: i32,
    request: KafkaRequest,
    client_id: Option<StrBytes>,
    peer: &str,
    order: Order,
) -> Option<Bytes> {
    order.turn().await;
    let reads_only = matches!(
        request,
        KafkaRequest::ApiVersions(_)
            | KafkaRequest::ApiVersionsTooNew
            | KafkaRequest::Fetch(_)
            | KafkaRequest::ListOffsets(_)
            | KafkaRequest::OffsetForLeaderEpoch(_)
            | KafkaRequest::ElectLeaders(_)
            | KafkaRequest::ListPartitionReassignments(_)
            | KafkaRequest::DescribeLogDirs(_)
            | KafkaRequest::DescribeProducers(_)
            | KafkaRequest::DescribeConfigs(_)
            | KafkaRequest::DescribeCluster(_)
            | KafkaRequest::FindCoordinator(_)
            | KafkaRequest::OffsetFetch(_)
            | KafkaRequest::ListGroups(_)
            | KafkaRequest::DescribeGroups(_)
    );
    if reads_only {
        order.done();
    }
    let frame = match request {
        KafkaRequest::ApiVersions(_) => encode_response(api_key, v, id, &api_versions(code::NONE)),
        KafkaRequest::ApiVersionsTooNew => {
            encode_response(ApiKey::ApiVersions, 0, id, &api_versions(code::UNSUPPORTED_VERSION))
        }
        KafkaRequest::Metadata(r) => counted(shard, api_key, v, id, &metadata(shard, r, v).await),
        KafkaRequest::Produce(r) => {
            let silent = r.acks == 0;
            let response = produce(shard, r, v, order).await;
            if silent {
                return None;
            }
            encode_response(api_key, v, id, &response)
        }
        KafkaRequest::Fetch(r) => encode_response(api_key, v, id, &fetch(shard, r, v).await),
        KafkaRequest::ListOffsets(r) => counted(shard, api_key, v, id, &list_offsets(shard, r, v).await),
        KafkaRequest::CreateTopics(r) => counted(shard, api_key, v, id, &create_topics(shard, r, v).await),
        KafkaRequest::DeleteTopics(r) => counted(shard, api_key, v, id, &delete_topics(shard, r, v).await),
        KafkaRequest::CreatePartitions(r) => {
            counted(shard, api_key, v, id, &create_partitions(shard, r).await)
        }
        KafkaRequest::DescribeConfigs(r) => counted(shard, api_key, v, id, &describe_configs(shard, r, v)),
        KafkaRequest::AlterConfigs(r) => {
            counted(shard, api_key, v, id, &configs::alter_configs(shard, r).await)
        }
        KafkaRequest::IncrementalAlterConfigs(r) => {
            counted(shard, api_key, v, id, &configs::incremental_alter_configs(shard, r).await)
        }
        KafkaRequest::DescribeCluster(_) => encode_response(api_key, v, id, &describe_cluster(shard, v)),
        KafkaRequest::InitProducerId(r) => counted(shard, api_key, v, id, &init_producer_id(shard, r)),
        KafkaRequest::FindCoordinator(r) => counted(shard, api_key, v, id, &find_coordinator(shard, r, v)),
        KafkaRequest::JoinGroup(r) => {
            let client_id = client_id.as_ref().map_or("", |c| c.as_str());
            let response = groups::join_group(shard, r, v, client_id, peer).await;
            counted(shard, api_key, v, id, &response)
        }
        KafkaRequest::SyncGroup(r) => counted(shard, api_key, v, id, &groups::sync_group(shard, r).await),
        KafkaRequest::Heartbeat(r) => counted(shard, api_key, v, id, &groups::heartbeat(shard, r).await),
        KafkaRequest::LeaveGroup(r) => {
            counted(shard, api_key, v, id, &groups::leave_group(shard, r, v).await)
        }
        KafkaRequest::OffsetCommit(r) => {
            counted(shard, api_key, v, id, &groups::offset_commit(shard, r).await)
        }
        KafkaRequest::OffsetFetch(r) => {
            counted(shard, api_key, v, id, &groups::offset_fetch(shard, r, v).await)
        }
        KafkaRequest::ListGroups(r) => {
            counted(shard, api_key, v, id, &groups::list_groups(shard, r, v).await)
        }
        KafkaRequest::DescribeGroups(r) => {
            counted(shard, api_key, v, id, &groups::describe_groups(shard, r, v).await)
        }
        KafkaRequest::DeleteGroups(r) => {
            counted(shard, api_key, v, id, &groups::delete_groups(shard, r).await)
        }
        KafkaRequest::OffsetDelete(r) => {
            counted(shard, api_key, v, id, &groups::offset_delete(shard, r).await)
        }
        KafkaRequest::OffsetForLeaderEpoch(r) => {
            counted(shard, api_key, v, id, &records::offset_for_leader_epoch(shard, r).await)
        }
        KafkaRequest::ElectLeaders(r) => counted(shard, api_key, v, id, &topics::elect_leaders(shard, r)),
        KafkaRequest::DeleteRecords(r) => {
            counted(shard, api_key, v, id, &log_dirs::delete_records(shard, r).await)
        }
        KafkaRequest::DescribeLogDirs(r) => {
            counted(shard, api_key, v, id, &log_dirs::describe_log_dirs(shard, r, v).await)
        }
        KafkaRequest::DescribeProducers(r) => {
            counted(shard, api_key, v, id, &log_dirs::describe_producers(shard, r).await)
        }
        KafkaRequest::ListPartitionReassignments(_) => {
            counted(shard, api_key, v, id, &topics::list_partition_reassignments())
        }
    };
    match frame {
        Ok(frame) => Some(frame),
        Err(error) => {
            // A response the codec refuses is a bug here, not the client's: answer nothing
            // rather than something malformed, and say so.
            tracing::error!(%error, ?api_key, version = v, "encoding a Kafka response failed");
            None
        }
    }
}

/// Counts the response's error codes on the shard, then encodes it.
fn counted<R: errors::ErrorCodes + kafka_protocol::protocol::Encodable>(
    shard: &Shard,
    api_key: ApiKey,
    v: i16,
    id: i32,
    response: &R,
) -> Result<Bytes, rill_net::kafka::KafkaError> {
    let mut metrics = shard.metrics.borrow_mut();
    response.each(&mut |code| metrics.error(code));
    drop(metrics);
    encode_response(api_key, v, id, response)
}

/// The Kafka error code for a broker error.
pub(crate) fn kafka_code(e: ErrorCode) -> i16 {
    match e {
        ErrorCode::None => code::NONE,
        ErrorCode::UnknownTopic | ErrorCode::UnknownPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode::OffsetOutOfRange => code::OFFSET_OUT_OF_RANGE,
        ErrorCode::InvalidRequest => code::INVALID_REQUEST,
        ErrorCode::TopicExists => code::TOPIC_ALREADY_EXISTS,
        ErrorCode::InvalidTopicName => code::INVALID_TOPIC_EXCEPTION,
        ErrorCode::CorruptBatch => code::CORRUPT_MESSAGE,
        ErrorCode::BatchTooLarge => code::MESSAGE_TOO_LARGE,
        ErrorCode::Unsupported => code::UNSUPPORTED_VERSION,
        ErrorCode::StorageError => code::KAFKA_STORAGE_ERROR,
        ErrorCode::Timeout => code::REQUEST_TIMED_OUT,
        // Clients refresh metadata and retry: right while the broker restarts.
        ErrorCode::ShuttingDown => code::NOT_LEADER_OR_FOLLOWER,
        ErrorCode::InvalidConfig => code::INVALID_CONFIG,
        ErrorCode::OutOfOrderSequence => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        ErrorCode::InvalidProducerEpoch => code::INVALID_PRODUCER_EPOCH,
        ErrorCode::InvalidReplicationFactor => code::INVALID_REPLICATION_FACTOR,
        ErrorCode::InvalidReplicaAssignment => code::INVALID_REPLICA_ASSIGNMENT,
        ErrorCode::NotController => code::NOT_CONTROLLER,
        ErrorCode::NotLeaderOrFollower => code::NOT_LEADER_OR_FOLLOWER,
        ErrorCode::NotEnoughReplicas => code::NOT_ENOUGH_REPLICAS,
        ErrorCode::InvalidRecord => code::INVALID_RECORD,
        ErrorCode::PolicyViolation => code::POLICY_VIOLATION,
    }
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn broker_address(shard: &Shard) -> (StrBytes, i32) {
    let (host, port) = shard.kafka_advertised();
    (str_bytes(host), port as i32)
}

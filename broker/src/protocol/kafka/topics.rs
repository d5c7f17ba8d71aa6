//! Kafka topic administration: CreateTopics, DeleteTopics and CreatePartitions, run by the
//! controller; ElectLeaders and ListPartitionReassignments, answered from the metadata.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, ElectLeadersRequest, ElectLeadersResponse,
    ListPartitionReassignmentsResponse, TopicName as KafkaTopicName,
};
use rill_net::kafka::code;
use rill_net::message::ErrorCode;

use crate::cluster::controller::AdminOp;
use crate::cluster::metadata::TopicName;
use crate::cluster::topic_config::topic_settings;
use crate::partition::routing::admin_op;
use crate::partition::shard::Shard;

/// The one node of a single-node cluster.
use super::{kafka_code, str_bytes};

pub(crate) async fn create_topics(shard: &Rc<Shard>, r: CreateTopicsRequest, v: i16) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    for t in r.topics {
        let mut result = CreatableTopicResult::default();
        result.name = t.name.clone();
        // Explicit assignments (Kafka: with num_partitions and replication_factor both -1).
        let mut assignments: Vec<_> = t.assignments.iter().collect();
        assignments.sort_by_key(|a| a.partition_index);
        let partitions = if !assignments.is_empty() {
            assignments.len() as i32
        } else if t.num_partitions == -1 {
            1
        } else {
            t.num_partitions
        };
        let replication_factor = match assignments.first() {
            Some(a) => a.broker_ids.len() as i16,
            None if t.replication_factor == -1 => 1,
            None => t.replication_factor,
        };
        let configs: Vec<(String, Option<String>)> =
            t.configs.iter().map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))).collect();
        let outcome: Result<(), (i16, String)> = async {
            let name = TopicName::new(t.name.0.as_str())
                .map_err(|e| (code::INVALID_TOPIC_EXCEPTION, e.to_string()))?;
            let assignment = if assignments.is_empty() {
                None
            } else {
                if t.num_partitions != -1 || t.replication_factor != -1 {
                    return Err((
                        code::INVALID_REQUEST,
                        "Both numPartitions or replicationFactor and replicasAssignments were set. \
                         Both cannot be used at the same time."
                            .into(),
                    ));
                }
                if assignments.iter().enumerate().any(|(i, a)| a.partition_index != i as i32) {
                    return Err((
                        code::INVALID_REPLICA_ASSIGNMENT,
                        "partitions should be a consecutive 0-based integer sequence".into(),
                    ));
                }
                Some(node_lists(assignments.iter().map(|a| &a.broker_ids[..]))?)
            };
            if partitions <= 0 {
                return Err((code::INVALID_PARTITIONS, "partition count must be positive".into()));
            }
            if assignment.is_none() && t.replication_factor != -1 && t.replication_factor <= 0 {
                return Err((
                    code::INVALID_REPLICATION_FACTOR,
                    "Replication factor must be larger than 0, or -1 to use the default value.".into(),
                ));
            }
            let settings = topic_settings(&configs).map_err(|e| (code::INVALID_CONFIG, e))?;
            let op = AdminOp::Create {
                name,
                partitions: partitions as u32,
                replication_factor: assignment.is_none().then_some(replication_factor as u32),
                assignment,
                settings,
                validate_only: r.validate_only,
            };
            admin_op(shard, op).await.map_err(|(e, m)| (kafka_code(e), m))
        }
        .await;
        if let Err((error, message)) = outcome {
            result.error_code = error;
            result.error_message = Some(str_bytes(message));
        }
        if v >= 5 {
            let ok = result.error_code == code::NONE;
            result.num_partitions = if ok { partitions } else { -1 };
            result.replication_factor = if ok { replication_factor } else { -1 };
        }
        response.topics.push(result);
    }
    response
}

pub(crate) async fn delete_topics(shard: &Rc<Shard>, r: DeleteTopicsRequest, v: i16) -> DeleteTopicsResponse {
    let mut names: Vec<Option<String>> = r.topic_names.iter().map(|n| Some(n.0.to_string())).collect();
    if v >= 6 {
        names = r.topics.iter().map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect();
    }
    let mut response = DeleteTopicsResponse::default();
    for name in names {
        let mut result = DeletableTopicResult::default();
        let outcome = match &name {
            None => {
                Err((code::UNKNOWN_TOPIC_ID, "Rill names topics; topic ids are not supported".to_string()))
            }
            Some(n) => match TopicName::new(n) {
                Err(e) => Err((code::UNKNOWN_TOPIC_OR_PARTITION, e.to_string())),
                Ok(name) => {
                    admin_op(shard, AdminOp::Delete { name }).await.map_err(|(e, m)| (kafka_code(e), m))
                }
            },
        };
        result.name = name.map(|n| KafkaTopicName(str_bytes(n)));
        if let Err((error, message)) = outcome {
            result.error_code = error;
            if v >= 5 {
                result.error_message = Some(str_bytes(message));
            }
        }
        response.responses.push(result);
    }
    response
}

pub(crate) async fn create_partitions(
    shard: &Rc<Shard>,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for t in r.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = t.name.clone();
        let outcome: Result<(), (i16, String)> = async {
            let name = TopicName::new(t.name.0.as_str())
                .map_err(|e| (code::UNKNOWN_TOPIC_OR_PARTITION, e.to_string()))?;
            let current = shard
                .metadata()
                .topics
                .get(&name)
                .map(|t| t.shards.len() as i32)
                .ok_or((code::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {name}")))?;
            if t.count <= current {
                return Err((
                    code::INVALID_PARTITIONS,
                    format!("topic has {current} partitions; asked for {}", t.count),
                ));
            }
            let assignment = match t.assignments.as_ref().filter(|a| !a.is_empty()) {
                Some(lists) => Some(node_lists(lists.iter().map(|a| &a.broker_ids[..]))?),
                None => None,
            };
            let op = AdminOp::AddPartitions {
                name,
                total: t.count as u32,
                assignment,
                validate_only: r.validate_only,
            };
            admin_op(shard, op).await.map_err(|(e, m)| {
                let code =
                    if e == ErrorCode::InvalidConfig { code::INVALID_PARTITIONS } else { kafka_code(e) };
                (code, m)
            })
        }
        .await;
        if let Err((error, message)) = outcome {
            result.error_code = error;
            result.error_message = Some(str_bytes(message));
        }
        response.results.push(result);
    }
    response
}

/// Kafka broker-id lists as node ids; a negative id is refused.
fn node_lists<'a>(
    lists: impl Iterator<Item = &'a [kafka_protocol::messages::BrokerId]>,
) -> Result<Vec<Vec<u32>>, (i16, String)> {
    lists
        .map(|ids| {
            ids.iter()
                .map(|id| {
                    u32::try_from(id.0).map_err(|_| {
                        (code::INVALID_REPLICA_ASSIGNMENT, format!("broker id {} is not valid", id.0))
                    })
                })
                .collect()
        })
        .collect()
}

/// ElectLeaders: every partition's leader is its preferred (first) replica, as placement made
/// it and no failover has moved it yet, so a preferred or unclean election is never needed:
/// ELECTION_NOT_NEEDED for each partition named, UNKNOWN_TOPIC_OR_PARTITION for what does not
/// exist, and for "all partitions" no results at all (Kafka lists only partitions it elected or
/// failed to).
pub(crate) fn elect_leaders(shard: &Shard, r: ElectLeadersRequest) -> ElectLeadersResponse {
    let mut response = ElectLeadersResponse::default();
    let catalogue = shard.metadata();
    for topic in r.topic_partitions.unwrap_or_default() {
        let known =
            TopicName::new(topic.topic.0.as_str()).ok().and_then(|n| catalogue.topics.get(&n).cloned());
        let mut result = ReplicaElectionResult::default();
        result.topic = topic.topic.clone();
        for partition in topic.partitions {
            let mut p = PartitionResult::default();
            p.partition_id = partition;
            let exists =
                known.as_ref().is_some_and(|t| partition >= 0 && (partition as usize) < t.shards.len());
            if exists {
                p.error_code = code::ELECTION_NOT_NEEDED;
                p.error_message = Some(str_bytes("the preferred replica is already the leader"));
            } else {
                p.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
            }
            result.partition_result.push(p);
        }
        response.replica_election_results.push(result);
    }
    response
}

/// ListPartitionReassignments: no reassignment is ever in progress (moving replicas comes with
/// partition replication), so the answer lists none, for all topics or the ones named.
pub(crate) fn list_partition_reassignments() -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
}

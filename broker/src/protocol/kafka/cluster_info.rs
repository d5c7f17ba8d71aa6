//! Kafka APIs about the cluster itself: ApiVersions, Metadata (with topic auto-creation),
//! DescribeCluster and FindCoordinator.

use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    MetadataRequest, MetadataResponse, TopicName as KafkaTopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_net::kafka::{code, supported_versions};
use rill_net::message::ErrorCode;

use crate::cluster::controller::AdminOp;
use crate::cluster::metadata::{TopicName, TopicSettings};
use crate::partition::routing::admin_op;
use crate::partition::shard::Shard;

use super::{broker_address, str_bytes};

/// Every node clients can use, with its Kafka address: the cluster's nodes, or this node alone.
pub(crate) fn brokers(shard: &Shard) -> Vec<(i32, StrBytes, i32)> {
    let view = shard.metadata();
    if view.nodes.is_empty() {
        let (host, port) = broker_address(shard);
        return vec![(view.node as i32, host, port)];
    }
    view.nodes
        .iter()
        .filter_map(|(id, address)| {
            let (host, port) = address.rsplit_once(':')?;
            Some((*id as i32, str_bytes(host.to_string()), port.parse().ok()?))
        })
        .collect()
}

/// The node coordinating `group`: one chosen by the group's name among the nodes, so every
/// client of a group finds the same one (this node on a single node).
fn coordinator_of(shard: &Shard, group: &str) -> (i32, StrBytes, i32) {
    let brokers = brokers(shard);
    let hash =
        group.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    brokers[(hash % brokers.len() as u64) as usize].clone()
}

/// Whether this node coordinates `group` (always, on a single node).
pub(crate) fn coordinates(shard: &Shard, group: &str) -> bool {
    coordinator_of(shard, group).0 == shard.metadata().node as i32
}

pub(crate) fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = supported_versions()
        .iter()
        .map(|&(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = key as i16;
            v.min_version = min;
            v.max_version = max;
            v
        })
        .collect();
    r
}

pub(crate) async fn metadata(shard: &Rc<Shard>, r: MetadataRequest, v: i16) -> MetadataResponse {
    let mut response = MetadataResponse::default();
    for (id, host, port) in brokers(shard) {
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = BrokerId(id);
        broker.host = host;
        broker.port = port;
        response.brokers.push(broker);
    }
    let catalogue = shard.metadata();
    let node = catalogue.node as i32;
    if v >= 2 {
        response.cluster_id = Some(str_bytes(shard.cluster_id().to_string()));
    }
    if v >= 1 {
        // Any node takes admin requests (it forwards them); the controller is named when known.
        response.controller_id = BrokerId(shard.controller().map_or(node, |c| c as i32));
    }
    let names: Vec<String> = match r.topics {
        // v0 asks for every topic with an empty list; later versions with null.
        None => catalogue.topics.keys().map(|n| n.to_string()).collect(),
        Some(topics) if topics.is_empty() && v == 0 => {
            catalogue.topics.keys().map(|n| n.to_string()).collect()
        }
        Some(topics) => topics.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect(),
    };
    // Versions before 4 cannot say no; later ones carry the client's wish.
    let may_create = v < 4 || r.allow_auto_topic_creation;
    let catalogue = match shard.auto_create_partitions() {
        Some(partitions) if may_create => auto_create(shard, &names, partitions).await.unwrap_or(catalogue),
        _ => catalogue,
    };
    for name in names {
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(KafkaTopicName(str_bytes(name.clone())));
        match TopicName::new(&name) {
            Err(_) => topic.error_code = code::INVALID_TOPIC_EXCEPTION,
            Ok(n) => match catalogue.topics.get(&n) {
                None => topic.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
                Some(t) => {
                    topic.partitions = (0..t.shards.len() as i32)
                        .map(|p| {
                            let mut part = MetadataResponsePartition::default();
                            part.partition_index = p;
                            let leader = catalogue.leader(t, p as u32) as i32;
                            part.leader_id = BrokerId(leader);
                            if v >= 7 {
                                part.leader_epoch = 0;
                            }
                            part.replica_nodes = match t.replicas.get(p as usize) {
                                Some(nodes) => nodes.iter().map(|n| BrokerId(*n as i32)).collect(),
                                None => vec![BrokerId(leader)],
                            };
                            part.isr_nodes = catalogue
                                .in_sync_replicas(t, p as u32)
                                .into_iter()
                                .map(|n| BrokerId(n as i32))
                                .collect();
                            if shard.is_offline(&n, p as u32) {
                                // Its log failed to open here: no leader, the replica offline
                                // (Kafka's answer for a partition whose log directory failed).
                                part.error_code = code::LEADER_NOT_AVAILABLE;
                                part.leader_id = BrokerId(-1);
                                if v >= 5 {
                                    part.offline_replicas = vec![BrokerId(leader)];
                                }
                            }
                            part
                        })
                        .collect();
                }
            },
        }
        response.topics.push(topic);
    }
    response
}

/// Creates those of `names` that are valid and unknown, with `partitions` partitions and default
/// settings (Kafka's auto.create.topics.enable); returns the metadata after, if anything changed.
pub(crate) async fn auto_create(
    shard: &Rc<Shard>,
    names: &[String],
    partitions: u32,
) -> Option<Rc<crate::cluster::metadata::Metadata>> {
    let mut created = false;
    for name in names {
        let Ok(name) = TopicName::new(name) else { continue };
        if shard.metadata().topics.contains_key(&name) {
            continue;
        }
        let op = AdminOp::Create {
            name: name.clone(),
            partitions,
            replication_factor: None,
            assignment: None,
            settings: TopicSettings::default(),
            validate_only: false,
        };
        match admin_op(shard, op).await {
            Ok(()) => {
                tracing::info!(topic = %name, partitions, "auto-created topic");
                created = true;
            }
            // Another connection created it meanwhile.
            Err((ErrorCode::TopicExists, _)) => created = true,
            Err((_, message)) => tracing::warn!(topic = %name, %message, "auto-creating a topic failed"),
        }
    }
    created.then(|| shard.metadata())
}

pub(crate) fn describe_cluster(shard: &Rc<Shard>, v: i16) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(shard.cluster_id().to_string());
    response.controller_id = BrokerId(shard.controller().map_or(shard.metadata().node as i32, |c| c as i32));
    if v >= 1 {
        response.endpoint_type = 1;
    }
    for (id, host, port) in brokers(shard) {
        let mut broker = DescribeClusterBroker::default();
        broker.broker_id = BrokerId(id);
        broker.host = host;
        broker.port = port;
        response.brokers.push(broker);
    }
    response
}

/// What a transactional producer is told.
pub(crate) const TRANSACTIONS_UNSUPPORTED: &str =
    "Rill does not support transactions yet: use an idempotent producer without transactional.id";

/// Groups (key type 0) are coordinated by this node (the shard is Rill's business);
/// transactions (key type 1) are not supported.
pub(crate) fn find_coordinator(
    shard: &Rc<Shard>,
    r: FindCoordinatorRequest,
    v: i16,
) -> FindCoordinatorResponse {
    // Until transactions exist, a transaction coordinator lookup gets an error the client
    // treats as fatal at once (they retry COORDINATOR_NOT_AVAILABLE for as long as
    // `initTransactions()` may block, a minute by default), with a message that says why.
    // Clients differ in what is fatal: librdkafka (v0-v2) gives up only on
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED, and prints the message with it; the Java client
    // (v4+, batched lookups) gives up on any error that is not retriable but shows the message
    // only for errors other than the authorization ones, so it gets UNSUPPORTED_VERSION.
    // Other key types (share groups) are not coordinated here: INVALID_REQUEST.
    let refusal = match r.key_type {
        0 => None,
        1 if v >= 4 => Some((code::UNSUPPORTED_VERSION, TRANSACTIONS_UNSUPPORTED)),
        1 => Some((code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, TRANSACTIONS_UNSUPPORTED)),
        _ => Some((code::INVALID_REQUEST, "unknown coordinator key type")),
    };
    let mut response = FindCoordinatorResponse::default();
    if v >= 4 {
        for key in r.coordinator_keys {
            let mut c = Coordinator::default();
            if let Some((error, message)) = refusal {
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = error;
                c.error_message = Some(str_bytes(message));
            } else {
                let (id, host, port) = coordinator_of(shard, &key);
                c.node_id = BrokerId(id);
                c.host = host;
                c.port = port;
            }
            c.key = key;
            response.coordinators.push(c);
        }
    } else if let Some((error, message)) = refusal {
        response.error_code = error;
        if v >= 1 {
            response.error_message = Some(str_bytes(message));
        }
        response.node_id = BrokerId(-1);
        response.port = -1;
    } else {
        let (id, host, port) = coordinator_of(shard, &r.key);
        response.node_id = BrokerId(id);
        response.host = host;
        response.port = port;
    }
    response
}

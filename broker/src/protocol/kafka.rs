//! Kafka-protocol requests to broker operations.
//!
//! The same shard operations serve both protocols: a Kafka produce becomes the same
//! `ShardRequest::Produce` of RecordBatch v2 bytes as a native one, and a Kafka fetch returns the
//! stored batches unchanged. Rill is a single node here: node 0 leads every partition, with
//! itself as the only replica. Fields a version does not have are left at their defaults (the
//! codec refuses to encode a field the requested version lacks).

pub(crate) mod configs;
pub(crate) mod groups;

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterResponse, DescribeConfigsRequest, DescribeConfigsResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, ProducerId, TopicName as KafkaTopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_net::kafka::{KafkaIncoming, KafkaRequest, code, encode_response, supported_versions};
use rill_net::message::{Acks, ErrorCode, FetchPart, OffsetSpec};
use rill_net::record_batch::{self, BatchError};

use crate::cluster::controller::AdminOp;
use crate::cluster::metadata::{TopicName, TopicSettings, UNLIMITED};
use crate::cluster::topic_config::topic_settings;
use crate::partition::fetch::fetch_outcomes;
use crate::partition::order::Order;
use crate::partition::routing::{admin_op, route};
use crate::partition::shard::{Shard, ShardReply, ShardRequest};

/// The one node of a single-node cluster.
const NODE_ID: i32 = 0;
const CLUSTER_ID: &str = "rill-single-node";

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
    order.turn().await;
    let reads_only = matches!(
        request,
        KafkaRequest::ApiVersions(_)
            | KafkaRequest::ApiVersionsTooNew
            | KafkaRequest::Fetch(_)
            | KafkaRequest::ListOffsets(_)
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
        KafkaRequest::Metadata(r) => encode_response(api_key, v, id, &metadata(shard, r, v).await),
        KafkaRequest::Produce(r) => {
            let silent = r.acks == 0;
            let response = produce(shard, r, v, order).await;
            if silent {
                return None;
            }
            encode_response(api_key, v, id, &response)
        }
        KafkaRequest::Fetch(r) => encode_response(api_key, v, id, &fetch(shard, r, v).await),
        KafkaRequest::ListOffsets(r) => encode_response(api_key, v, id, &list_offsets(shard, r, v).await),
        KafkaRequest::CreateTopics(r) => encode_response(api_key, v, id, &create_topics(shard, r, v).await),
        KafkaRequest::DeleteTopics(r) => encode_response(api_key, v, id, &delete_topics(shard, r, v).await),
        KafkaRequest::CreatePartitions(r) => {
            encode_response(api_key, v, id, &create_partitions(shard, r).await)
        }
        KafkaRequest::DescribeConfigs(r) => encode_response(api_key, v, id, &describe_configs(shard, r, v)),
        KafkaRequest::AlterConfigs(r) => {
            encode_response(api_key, v, id, &configs::alter_configs(shard, r).await)
        }
        KafkaRequest::IncrementalAlterConfigs(r) => {
            encode_response(api_key, v, id, &configs::incremental_alter_configs(shard, r).await)
        }
        KafkaRequest::DescribeCluster(_) => encode_response(api_key, v, id, &describe_cluster(shard, v)),
        KafkaRequest::InitProducerId(r) => encode_response(api_key, v, id, &init_producer_id(shard, r)),
        KafkaRequest::FindCoordinator(r) => encode_response(api_key, v, id, &find_coordinator(shard, r, v)),
        KafkaRequest::JoinGroup(r) => {
            let client_id = client_id.as_ref().map_or("", |c| c.as_str());
            let response = groups::join_group(shard, r, v, client_id, peer).await;
            encode_response(api_key, v, id, &response)
        }
        KafkaRequest::SyncGroup(r) => encode_response(api_key, v, id, &groups::sync_group(shard, r).await),
        KafkaRequest::Heartbeat(r) => encode_response(api_key, v, id, &groups::heartbeat(shard, r).await),
        KafkaRequest::LeaveGroup(r) => {
            encode_response(api_key, v, id, &groups::leave_group(shard, r, v).await)
        }
        KafkaRequest::OffsetCommit(r) => {
            encode_response(api_key, v, id, &groups::offset_commit(shard, r).await)
        }
        KafkaRequest::OffsetFetch(r) => {
            encode_response(api_key, v, id, &groups::offset_fetch(shard, r, v).await)
        }
        KafkaRequest::ListGroups(r) => {
            encode_response(api_key, v, id, &groups::list_groups(shard, r, v).await)
        }
        KafkaRequest::DescribeGroups(r) => {
            encode_response(api_key, v, id, &groups::describe_groups(shard, r, v).await)
        }
        KafkaRequest::DeleteGroups(r) => {
            encode_response(api_key, v, id, &groups::delete_groups(shard, r).await)
        }
        KafkaRequest::OffsetDelete(r) => {
            encode_response(api_key, v, id, &groups::offset_delete(shard, r).await)
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
        ErrorCode::ShuttingDown => 6, // NOT_LEADER_OR_FOLLOWER
        ErrorCode::InvalidConfig => code::INVALID_CONFIG,
        ErrorCode::OutOfOrderSequence => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        ErrorCode::InvalidProducerEpoch => code::INVALID_PRODUCER_EPOCH,
    }
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn api_versions(error_code: i16) -> ApiVersionsResponse {
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

fn broker_address(shard: &Shard) -> (StrBytes, i32) {
    let (host, port) = shard.kafka_advertised();
    (str_bytes(host), port as i32)
}

async fn metadata(shard: &Rc<Shard>, r: MetadataRequest, v: i16) -> MetadataResponse {
    let (host, port) = broker_address(shard);
    let mut response = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(NODE_ID);
    broker.host = host;
    broker.port = port;
    response.brokers = vec![broker];
    if v >= 2 {
        response.cluster_id = Some(str_bytes(CLUSTER_ID));
    }
    if v >= 1 {
        response.controller_id = BrokerId(NODE_ID);
    }
    let catalogue = shard.metadata();
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
                            part.leader_id = BrokerId(NODE_ID);
                            if v >= 7 {
                                part.leader_epoch = 0;
                            }
                            part.replica_nodes = vec![BrokerId(NODE_ID)];
                            part.isr_nodes = vec![BrokerId(NODE_ID)];
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
async fn auto_create(
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
        let op = AdminOp::Create { name: name.clone(), partitions, settings: TopicSettings::default() };
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

fn batch_error_code(e: BatchError) -> i16 {
    match e {
        BatchError::UnsupportedMagic(_) => code::UNSUPPORTED_VERSION,
        // Kafka's InvalidRecordException: well-formed bytes whose contents break the rules.
        BatchError::Inconsistent(_) | BatchError::BadRecord(_) => code::INVALID_RECORD,
        _ => code::CORRUPT_MESSAGE,
    }
}

async fn produce(shard: &Rc<Shard>, r: ProduceRequest, v: i16, order: Order) -> ProduceResponse {
    let acks = match r.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::Durable),
        _ => None,
    };
    let mut tasks = Vec::new();
    // One share of the order per part, dropped once the part is placed (or refused).
    let order = Rc::new(order);
    for topic in r.topic_data {
        let name = topic.name.0.to_string();
        for part in topic.partition_data {
            let (shard, name, placement) = (shard.clone(), name.clone(), order.clone());
            tasks.push(glommio::spawn_local(async move {
                let index = part.index;
                let result: Result<u64, i16> = async {
                    let acks = acks.ok_or(code::INVALID_REQUIRED_ACKS)?;
                    let (topic, owner) = route(&shard, &name, index as u32).map_err(kafka_code)?;
                    let records = part.records.unwrap_or_default();
                    let batches = record_batch::split_produced(&records).map_err(batch_error_code)?;
                    if batches.is_empty() {
                        return Err(code::CORRUPT_MESSAGE);
                    }
                    let request = ShardRequest::Produce { topic, partition: index as u32, batches, acks };
                    match shard.call_placed(owner, request, move || drop(placement)).await {
                        ShardReply::Produced(r) => r.map_err(kafka_code),
                        _ => Err(kafka_code(ErrorCode::ShuttingDown)),
                    }
                }
                .await;
                let mut response = PartitionProduceResponse::default();
                response.index = index;
                match result {
                    Ok(base) => response.base_offset = base as i64,
                    Err(error) => {
                        response.error_code = error;
                        response.base_offset = -1;
                    }
                }
                if v >= 2 {
                    response.log_append_time_ms = -1;
                }
                if v >= 5 {
                    response.log_start_offset = -1;
                }
                (name, response)
            }));
        }
    }
    drop(order);
    let mut response = ProduceResponse::default();
    for t in tasks {
        let (name, part) = t.await;
        match response.responses.iter_mut().find(|r| r.name.0.as_str() == name) {
            Some(topic) => topic.partition_responses.push(part),
            None => {
                let mut topic = TopicProduceResponse::default();
                topic.name = KafkaTopicName(str_bytes(name));
                topic.partition_responses.push(part);
                response.responses.push(topic);
            }
        }
    }
    response
}

async fn fetch(shard: &Rc<Shard>, r: FetchRequest, v: i16) -> FetchResponse {
    let mut response = FetchResponse::default();
    if v >= 7 && r.session_id != 0 {
        // Rill creates no fetch sessions, so an incremental fetch names one it does not have.
        response.error_code = code::FETCH_SESSION_ID_NOT_FOUND;
        return response;
    }
    let mut parts = Vec::new();
    for topic in &r.topics {
        for p in &topic.partitions {
            parts.push(FetchPart {
                topic: topic.topic.0.to_string(),
                partition: p.partition as u32,
                offset: p.fetch_offset.max(0) as u64,
                max_bytes: p.partition_max_bytes.max(0) as u32,
            });
        }
    }
    let bad_offsets: Vec<bool> =
        r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.fetch_offset < 0)).collect();
    let max_wait = r.max_wait_ms.max(0) as u32;
    let outcomes =
        fetch_outcomes(shard, &parts, max_wait, r.min_bytes.max(0) as u32, r.max_bytes.max(0) as u32).await;
    for ((part, outcome), bad_offset) in parts.into_iter().zip(outcomes).zip(bad_offsets) {
        let mut data = PartitionData::default();
        data.partition_index = part.partition as i32;
        data.error_code = if bad_offset { code::OFFSET_OUT_OF_RANGE } else { kafka_code(outcome.error) };
        let known = outcome.error != ErrorCode::UnknownTopic && outcome.error != ErrorCode::UnknownPartition;
        data.high_watermark = if known { outcome.high_watermark as i64 } else { -1 };
        data.last_stable_offset = data.high_watermark;
        if v >= 5 {
            data.log_start_offset = if known { outcome.log_start as i64 } else { -1 };
        }
        data.aborted_transactions = Some(Vec::new());
        if v >= 11 {
            data.preferred_read_replica = BrokerId(-1);
        }
        data.records = Some(concat(outcome.batches));
        match response.responses.last_mut() {
            Some(topic) if topic.topic.0.as_str() == part.topic => topic.partitions.push(data),
            _ => {
                let mut topic = FetchableTopicResponse::default();
                topic.topic = KafkaTopicName(str_bytes(part.topic));
                topic.partitions.push(data);
                response.responses.push(topic);
            }
        }
    }
    response
}

/// One `Bytes` of a partition's stored batches (no copy when there is one).
fn concat(batches: Vec<Bytes>) -> Bytes {
    match batches.len() {
        0 => Bytes::new(),
        1 => batches.into_iter().next().expect("one"),
        _ => {
            let mut out = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
            for b in batches {
                out.extend_from_slice(&b);
            }
            out.freeze()
        }
    }
}

async fn list_offsets(shard: &Rc<Shard>, r: ListOffsetsRequest, v: i16) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    for topic in r.topics {
        let name = topic.name.0.to_string();
        let mut out = ListOffsetsTopicResponse::default();
        out.name = topic.name.clone();
        for p in topic.partitions {
            let mut part = ListOffsetsPartitionResponse::default();
            part.partition_index = p.partition_index;
            let result = list_offset(shard, &name, p.partition_index as u32, p.timestamp, v).await;
            match result {
                Ok((timestamp, offset)) => {
                    part.timestamp = timestamp;
                    part.offset = offset;
                    if v >= 4 {
                        part.leader_epoch = 0;
                    }
                }
                Err(error) => {
                    part.error_code = error;
                    part.timestamp = -1;
                    part.offset = -1;
                }
            }
            out.partitions.push(part);
        }
        response.topics.push(out);
    }
    response
}

/// `(timestamp, offset)` for a ListOffsets query: -2 earliest (-4 earliest local), -1 latest,
/// -3 (v7+) the record with the largest timestamp, otherwise the first record whose timestamp
/// is at least the given one.
async fn list_offset(
    shard: &Rc<Shard>,
    topic: &str,
    partition: u32,
    timestamp: i64,
    v: i16,
) -> Result<(i64, i64), i16> {
    let (name, owner) = route(shard, topic, partition).map_err(kafka_code)?;
    let spec = match timestamp {
        -2 | -4 => OffsetSpec::Earliest,
        -1 => OffsetSpec::Latest,
        -3 if v >= 7 => OffsetSpec::MaxTimestamp,
        ts if ts >= 0 => OffsetSpec::Timestamp(ts),
        _ => return Err(code::UNSUPPORTED_VERSION),
    };
    let request = ShardRequest::ListOffset { topic: name.clone(), partition, spec };
    let offset = match shard.call(owner, request).await {
        ShardReply::Offset(r) => r.map_err(kafka_code)?,
        _ => return Err(kafka_code(ErrorCode::ShuttingDown)),
    };
    let target = match spec {
        OffsetSpec::Timestamp(target) => Some(target),
        OffsetSpec::MaxTimestamp => None,
        _ => return Ok((-1, offset)),
    };
    if offset < 0 {
        return Ok((-1, -1));
    }
    // The log knows the first batch reaching the timestamp; find the record within it.
    let request = ShardRequest::Fetch {
        topic: name,
        partition,
        offset: offset as u64,
        max_bytes: 1,
        min_one: true,
        wait_ms: 0,
    };
    let batch = match shard.call(owner, request).await {
        ShardReply::Fetched(outcome) => outcome.batches.into_iter().next(),
        _ => None,
    };
    let Some(target) = target else {
        // The largest timestamp: its first record, or for a compressed batch (not searched
        // without decompressing) the batch's last offset, as Kafka's shallow index has it.
        let Some(batch) = batch else { return Ok((-1, -1)) };
        let header = record_batch::parse_header(&batch).map_err(|_| code::CORRUPT_MESSAGE)?;
        let found = record_batch::decode_records(&batch).ok().and_then(|records| {
            let max = records.iter().map(|(_, r)| r.timestamp_ms).max()?;
            records.into_iter().find(|(_, r)| r.timestamp_ms == max).map(|(o, r)| (r.timestamp_ms, o))
        });
        let last = header.base_offset + header.last_offset_delta as i64;
        return Ok(found.unwrap_or((header.max_timestamp, last)));
    };
    let found = batch.and_then(|b| record_batch::decode_records(&b).ok()).and_then(|records| {
        records.into_iter().find(|(_, r)| r.timestamp_ms >= target).map(|(o, r)| (r.timestamp_ms, o))
    });
    // A compressed batch cannot be searched without decompressing it: its base offset stands.
    Ok(found.unwrap_or((target, offset)))
}

async fn create_topics(shard: &Rc<Shard>, r: CreateTopicsRequest, v: i16) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    for t in r.topics {
        let mut result = CreatableTopicResult::default();
        result.name = t.name.clone();
        let partitions = if t.num_partitions == -1 { 1 } else { t.num_partitions };
        let configs: Vec<(String, Option<String>)> =
            t.configs.iter().map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))).collect();
        let outcome: Result<(), (i16, String)> = async {
            let name = TopicName::new(t.name.0.as_str())
                .map_err(|e| (code::INVALID_TOPIC_EXCEPTION, e.to_string()))?;
            if partitions <= 0 {
                return Err((code::INVALID_PARTITIONS, "partition count must be positive".into()));
            }
            if t.replication_factor != -1 && t.replication_factor != 1 {
                return Err((
                    code::INVALID_REPLICATION_FACTOR,
                    "a single-node cluster keeps one replica".into(),
                ));
            }
            if !t.assignments.is_empty() {
                return Err((code::INVALID_REQUEST, "manual replica assignment is not supported".into()));
            }
            let settings = topic_settings(&configs).map_err(|e| (code::INVALID_CONFIG, e))?;
            if r.validate_only {
                if shard.metadata().topics.contains_key(&name) {
                    return Err((code::TOPIC_ALREADY_EXISTS, format!("topic {name} already exists")));
                }
                return Ok(());
            }
            let op = AdminOp::Create { name, partitions: partitions as u32, settings };
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
            result.replication_factor = if ok { 1 } else { -1 };
        }
        response.topics.push(result);
    }
    response
}

async fn delete_topics(shard: &Rc<Shard>, r: DeleteTopicsRequest, v: i16) -> DeleteTopicsResponse {
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

async fn create_partitions(shard: &Rc<Shard>, r: CreatePartitionsRequest) -> CreatePartitionsResponse {
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
            if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
                return Err((code::INVALID_REQUEST, "manual replica assignment is not supported".into()));
            }
            if r.validate_only {
                return Ok(());
            }
            let op = AdminOp::AddPartitions { name, total: t.count as u32 };
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

/// A described config: name, value, source.
type ConfigEntry = (&'static str, String, i8);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn describe_configs(shard: &Rc<Shard>, r: DescribeConfigsRequest, v: i16) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    let profile = shard.profile();
    let defaults = profile.log_config();
    for resource in r.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let entries: Result<Vec<ConfigEntry>, (i16, String)> = match resource.resource_type {
            RESOURCE_TOPIC => {
                let name = resource.resource_name.to_string();
                let catalogue = shard.metadata();
                let topic = TopicName::new(&name).ok().and_then(|n| catalogue.topics.get(&n).cloned());
                match topic {
                    None => Err((code::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {name}"))),
                    Some(topic) => {
                        let s = &topic.settings;
                        let source = |set: bool| if set { SOURCE_DYNAMIC_TOPIC } else { SOURCE_DEFAULT };
                        // What the log runs with: the topic's setting, else the default;
                        // -1 for no limit either way.
                        let limit = |set: Option<u64>, default: Option<u64>| match set {
                            Some(UNLIMITED) => -1,
                            Some(v) => v as i64,
                            None => default.map_or(-1, |v| v as i64),
                        };
                        let retention_ms = limit(s.retention_ms, defaults.retention_age_ms_max);
                        let retention_bytes = limit(s.retention_bytes, defaults.retention_bytes_max);
                        Ok(vec![
                            ("cleanup.policy", "delete".to_string(), SOURCE_DEFAULT),
                            ("compression.type", "producer".to_string(), SOURCE_DEFAULT),
                            ("retention.ms", retention_ms.to_string(), source(s.retention_ms.is_some())),
                            (
                                "retention.bytes",
                                retention_bytes.to_string(),
                                source(s.retention_bytes.is_some()),
                            ),
                            (
                                "segment.bytes",
                                s.segment_bytes.unwrap_or(defaults.segment_size_bytes_max).to_string(),
                                source(s.segment_bytes.is_some()),
                            ),
                            ("max.message.bytes", defaults.batch_bytes_max.to_string(), SOURCE_DEFAULT),
                            ("min.insync.replicas", "1".to_string(), SOURCE_DEFAULT),
                            ("message.timestamp.type", "CreateTime".to_string(), SOURCE_DEFAULT),
                            (
                                "rill.durability",
                                s.durability.clone().unwrap_or_else(|| profile.log.durability.clone()),
                                source(s.durability.is_some()),
                            ),
                        ])
                    }
                }
            }
            RESOURCE_BROKER => Ok(vec![
                ("broker.id", NODE_ID.to_string(), SOURCE_STATIC_BROKER),
                ("num.partitions", "1".to_string(), SOURCE_DEFAULT),
                ("default.replication.factor", "1".to_string(), SOURCE_DEFAULT),
                ("min.insync.replicas", "1".to_string(), SOURCE_DEFAULT),
                ("auto.create.topics.enable", "false".to_string(), SOURCE_DEFAULT),
                ("message.max.bytes", defaults.batch_bytes_max.to_string(), SOURCE_STATIC_BROKER),
                ("log.segment.bytes", defaults.segment_size_bytes_max.to_string(), SOURCE_STATIC_BROKER),
                (
                    "log.retention.ms",
                    defaults.retention_age_ms_max.map_or(-1, |v| v as i64).to_string(),
                    SOURCE_DEFAULT,
                ),
            ]),
            other => Err((code::INVALID_REQUEST, format!("resource type {other} is not supported"))),
        };
        match entries {
            Err((error, message)) => {
                result.error_code = error;
                result.error_message = Some(str_bytes(message));
            }
            Ok(entries) => {
                let wanted = resource.configuration_keys.as_ref();
                for (name, value, source) in entries {
                    if wanted.is_some_and(|keys| !keys.iter().any(|k| k.as_str() == name)) {
                        continue;
                    }
                    let mut entry = DescribeConfigsResourceResult::default();
                    entry.name = str_bytes(name);
                    entry.value = Some(str_bytes(value));
                    entry.read_only = resource.resource_type == RESOURCE_BROKER;
                    entry.config_source = source;
                    if v >= 3 {
                        entry.config_type =
                            if name.ends_with(".ms") || name.ends_with(".bytes") { 5 } else { 2 };
                    }
                    result.configs.push(entry);
                }
            }
        }
        response.results.push(result);
    }
    response
}

fn describe_cluster(shard: &Rc<Shard>, v: i16) -> DescribeClusterResponse {
    let (host, port) = broker_address(shard);
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(CLUSTER_ID);
    response.controller_id = BrokerId(NODE_ID);
    if v >= 1 {
        response.endpoint_type = 1;
    }
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = BrokerId(NODE_ID);
    broker.host = host;
    broker.port = port;
    response.brokers = vec![broker];
    response
}

fn init_producer_id(shard: &Rc<Shard>, r: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    if r.transactional_id.is_some() {
        tracing::info!("InitProducerId with a transactional id refused: transactions are not supported");
        response.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        response.producer_id = ProducerId(-1);
        response.producer_epoch = -1;
        return response;
    }
    // KIP-360: a producer that knows its id asks for a bumped epoch.
    if r.producer_id.0 >= 0 && r.producer_epoch >= 0 && r.producer_epoch < i16::MAX {
        response.producer_id = r.producer_id;
        response.producer_epoch = r.producer_epoch + 1;
    } else {
        response.producer_id = ProducerId(shard.producer_ids.next());
        response.producer_epoch = 0;
    }
    response
}

/// Groups (key type 0) are coordinated by this node (the shard is Rill's business);
/// transactions (key type 1) are not supported.
fn find_coordinator(shard: &Rc<Shard>, r: FindCoordinatorRequest, v: i16) -> FindCoordinatorResponse {
    let (host, port) = broker_address(shard);
    let supported = r.key_type == 0;
    let message = "transactions are not supported";
    let mut response = FindCoordinatorResponse::default();
    if v >= 4 {
        for key in r.coordinator_keys {
            let mut c = Coordinator::default();
            c.key = key;
            if supported {
                c.node_id = BrokerId(NODE_ID);
                c.host = host.clone();
                c.port = port;
            } else {
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = code::COORDINATOR_NOT_AVAILABLE;
                c.error_message = Some(str_bytes(message));
            }
            response.coordinators.push(c);
        }
    } else if supported {
        response.node_id = BrokerId(NODE_ID);
        response.host = host;
        response.port = port;
    } else {
        response.error_code = code::COORDINATOR_NOT_AVAILABLE;
        if v >= 1 {
            response.error_message = Some(str_bytes(message));
        }
        response.node_id = BrokerId(-1);
        response.port = -1;
    }
    response
}

//! Kafka APIs that move records: Produce, Fetch, ListOffsets, and InitProducerId for
//! idempotent producers.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{
    NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProduceRequest,
    ProduceResponse, ProducerId, TopicName as KafkaTopicName,
};
use rill_net::kafka::code;
use rill_net::message::{Acks, ErrorCode, FetchPart, OffsetSpec};
use rill_net::record_batch::{self, BatchError};

use crate::partition::fetch::fetch_outcomes;
use crate::partition::order::Order;
use crate::partition::routing::route;
use crate::partition::shard::{Appended, Shard, ShardReply, ShardRequest};

/// The one node of a single-node cluster.
use super::cluster_info::brokers;
use super::{kafka_code, str_bytes};
use crate::cluster::metadata::TopicName;

pub(crate) fn batch_error_code(e: BatchError) -> i16 {
    match e {
        BatchError::UnsupportedMagic(_) => code::UNSUPPORTED_VERSION,
        // Kafka's InvalidRecordException: well-formed bytes whose contents break the rules.
        BatchError::Inconsistent(_) | BatchError::BadRecord(_) => code::INVALID_RECORD,
        _ => code::CORRUPT_MESSAGE,
    }
}

pub(crate) async fn produce(shard: &Rc<Shard>, r: ProduceRequest, v: i16, order: Order) -> ProduceResponse {
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
                let result: Result<Appended, i16> = async {
                    let acks = acks.ok_or(code::INVALID_REQUIRED_ACKS)?;
                    let (topic, owner) = route(&shard, &name, index as u32).map_err(kafka_code)?;
                    let records = part.records.unwrap_or_default();
                    let batches = record_batch::split_produced(&records).map_err(batch_error_code)?;
                    if batches.is_empty() {
                        return Err(code::CORRUPT_MESSAGE);
                    }
                    // Kafka's ProduceRequest validation (v3+, the versions served): exactly one
                    // record batch per partition.
                    if batches.len() > 1 {
                        return Err(code::INVALID_RECORD);
                    }
                    let count: u64 = batches.iter().map(|(h, _)| h.records_count.max(0) as u64).sum();
                    let request = ShardRequest::Produce { topic, partition: index as u32, batches, acks };
                    let appended = match shard.call_placed(owner, request, move || drop(placement)).await {
                        ShardReply::Produced(r) => r.map_err(kafka_code),
                        _ => Err(kafka_code(ErrorCode::ShuttingDown)),
                    }?;
                    shard.metrics.borrow_mut().records(&name, true, count, records.len() as u64);
                    Ok(appended)
                }
                .await;
                let mut response = PartitionProduceResponse::default();
                response.index = index;
                // The append time of a LogAppendTime topic's batches (v2+) and the log start
                // offset (v5+), as Kafka answers them; -1 otherwise.
                let (mut append_time, mut log_start) = (-1, -1);
                match result {
                    Ok(a) => {
                        response.base_offset = a.base as i64;
                        (append_time, log_start) = (a.log_append_time_ms, a.log_start as i64);
                    }
                    Err(error) => {
                        shard.metrics.borrow_mut().error(error);
                        response.error_code = error;
                        response.base_offset = -1;
                    }
                }
                if v >= 2 {
                    response.log_append_time_ms = append_time;
                }
                if v >= 5 {
                    response.log_start_offset = log_start;
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
    if v >= 10 {
        name_leaders(shard, &mut response);
    }
    response
}

/// KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER names its current leader and epoch, and
/// the response carries that leader's endpoint, so the client re-routes without a metadata
/// round trip.
fn name_leaders(shard: &Shard, response: &mut ProduceResponse) {
    let catalogue = shard.metadata();
    let mut named = std::collections::BTreeSet::new();
    for topic in &mut response.responses {
        let Some(t) = TopicName::new(topic.name.0.as_str()).ok().and_then(|n| catalogue.topics.get(&n))
        else {
            continue;
        };
        for part in &mut topic.partition_responses {
            let leader = catalogue.leader(t, part.index as u32);
            if part.error_code == code::NOT_LEADER_OR_FOLLOWER && leader != catalogue.node {
                part.current_leader.leader_id = BrokerId(leader as i32);
                part.current_leader.leader_epoch = 0;
                named.insert(leader as i32);
            }
        }
    }
    response.node_endpoints = brokers(shard)
        .into_iter()
        .filter(|(id, _, _)| named.contains(id))
        .map(|(id, host, port)| {
            let mut endpoint = NodeEndpoint::default();
            endpoint.node_id = BrokerId(id);
            endpoint.host = host;
            endpoint.port = port;
            endpoint
        })
        .collect();
}

pub(crate) async fn fetch(shard: &Rc<Shard>, r: FetchRequest, v: i16) -> FetchResponse {
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
        if !outcome.batches.is_empty() {
            let count: u64 = outcome
                .batches
                .iter()
                .filter_map(|b| record_batch::parse_header(b).ok())
                .map(|h| h.records_count.max(0) as u64)
                .sum();
            shard.metrics.borrow_mut().records(&part.topic, false, count, outcome.bytes() as u64);
        }
        shard.metrics.borrow_mut().error(data.error_code);
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

/// OffsetForLeaderEpoch (KIP-101/KIP-320): the end offset of a leader epoch. Every partition
/// here has had one leader epoch, 0 (no replication yet), so epoch 0 ends at the log end, a
/// later or undefined epoch has no end (-1, -1, as Kafka answers), and a client that believes in
/// a newer current epoch than 0 gets UNKNOWN_LEADER_EPOCH.
pub(crate) async fn offset_for_leader_epoch(
    shard: &Rc<Shard>,
    r: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in r.topics {
        let mut result = OffsetForLeaderTopicResult::default();
        result.topic = topic.topic.clone();
        for p in topic.partitions {
            let mut end = EpochEndOffset::default();
            end.partition = p.partition;
            end.leader_epoch = -1;
            end.end_offset = -1;
            let answer = async {
                let (name, owner) =
                    route(shard, topic.topic.0.as_str(), p.partition as u32).map_err(kafka_code)?;
                if p.current_leader_epoch > 0 {
                    return Err(code::UNKNOWN_LEADER_EPOCH);
                }
                match shard
                    .call(owner, ShardRequest::State { topic: name, partition: p.partition as u32 })
                    .await
                {
                    ShardReply::State(state) => state.map_err(kafka_code),
                    _ => Err(kafka_code(ErrorCode::ShuttingDown)),
                }
            }
            .await;
            match answer {
                Ok((_, log_end)) if p.leader_epoch == 0 => {
                    end.leader_epoch = 0;
                    end.end_offset = log_end as i64;
                }
                Ok(_) => {}
                Err(error) => end.error_code = error,
            }
            result.partitions.push(end);
        }
        response.topics.push(result);
    }
    response
}

/// One `Bytes` of a partition's stored batches (no copy when there is one).
pub(crate) fn concat(batches: Vec<Bytes>) -> Bytes {
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

pub(crate) async fn list_offsets(shard: &Rc<Shard>, r: ListOffsetsRequest, v: i16) -> ListOffsetsResponse {
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
pub(crate) async fn list_offset(
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

pub(crate) fn init_producer_id(shard: &Rc<Shard>, r: InitProducerIdRequest) -> InitProducerIdResponse {
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

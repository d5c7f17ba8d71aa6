//! Kafka's log-directory APIs: DeleteRecords (move partitions' log start, on their owning
//! shards), DescribeLogDirs (this node's data directory, its file system's size, and the size
//! of every partition log it holds) and DescribeProducers (a partition's idempotent producers).

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, TopicName as KafkaTopicName,
};
use rill_net::message::ErrorCode;

use super::{kafka_code, str_bytes};
use crate::cluster::metadata::TopicName;
use crate::partition::routing::route;
use crate::partition::shard::{Shard, ShardReply, ShardRequest};

/// Each partition's log start moves to the offset asked for (-1: the high watermark) on the
/// shard that owns it; the answer is the new low watermark. Kafka's errors: an unknown topic or
/// partition UNKNOWN_TOPIC_OR_PARTITION, an offset beyond the high watermark
/// OFFSET_OUT_OF_RANGE, a partition another node leads NOT_LEADER_OR_FOLLOWER.
pub(crate) async fn delete_records(shard: &Rc<Shard>, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic in r.topics {
        let mut out = DeleteRecordsTopicResult::default();
        out.name = topic.name.clone();
        for p in topic.partitions {
            let mut part = DeleteRecordsPartitionResult::default();
            part.partition_index = p.partition_index;
            let outcome = async {
                let partition = u32::try_from(p.partition_index).map_err(|_| ErrorCode::UnknownPartition)?;
                let (name, owner) = route(shard, &topic.name.0, partition)?;
                let request = ShardRequest::DeleteRecords { topic: name, partition, offset: p.offset };
                match shard.call(owner, request).await {
                    ShardReply::Offset(result) => result,
                    _ => Err(ErrorCode::ShuttingDown),
                }
            }
            .await;
            match outcome {
                Ok(low_watermark) => part.low_watermark = low_watermark,
                Err(error) => {
                    part.error_code = kafka_code(error);
                    part.low_watermark = -1;
                }
            }
            out.partitions.push(part);
        }
        response.topics.push(out);
    }
    response
}

/// One result for this node's data directory: the partitions asked for (all when `topics` is
/// null) that this node holds, with their log sizes; unknown ones are left out, as Kafka does.
/// v4 adds the file system's total and usable bytes.
pub(crate) async fn describe_log_dirs(
    shard: &Rc<Shard>,
    r: DescribeLogDirsRequest,
    v: i16,
) -> DescribeLogDirsResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> =
        r.topics.map(|ts| ts.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    let mut held: BTreeMap<TopicName, Vec<(u32, u64)>> = BTreeMap::new();
    for index in 0..shard.count {
        if let ShardReply::LogSizes(sizes) = shard.call(index, ShardRequest::LogSizes).await {
            for (topic, partition, size) in sizes {
                held.entry(topic).or_default().push((partition, size));
            }
        }
    }
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = str_bytes(shard.data_dir().display().to_string());
    for (topic, mut partitions) in held {
        let asked = match &wanted {
            None => None,
            Some(w) => match w.get(topic.as_str()) {
                Some(asked) => Some(asked),
                None => continue,
            },
        };
        partitions.sort_unstable();
        let mut out = DescribeLogDirsTopic::default();
        out.name = KafkaTopicName(str_bytes(topic.to_string()));
        for (partition, size) in partitions {
            if asked.is_some_and(|a| !a.contains(&(partition as i32))) {
                continue;
            }
            let mut p = DescribeLogDirsPartition::default();
            p.partition_index = partition as i32;
            p.partition_size = size as i64;
            // No replica of a partition is behind its own log: nothing is being moved.
            p.offset_lag = 0;
            p.is_future_key = false;
            out.partitions.push(p);
        }
        if !out.partitions.is_empty() {
            result.topics.push(out);
        }
    }
    if v >= 4 {
        let (free, total) = rill_storage::disk_space(shard.data_dir());
        result.total_bytes = total as i64;
        result.usable_bytes = free as i64;
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results.push(result);
    response
}

/// Each partition's active idempotent producers, from the shard that owns it: id, epoch, last
/// sequence and last append time; no transactions, so no coordinator epoch or open transaction
/// (-1 both). Unknown partitions UNKNOWN_TOPIC_OR_PARTITION, another node's
/// NOT_LEADER_OR_FOLLOWER.
pub(crate) async fn describe_producers(
    shard: &Rc<Shard>,
    r: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    for topic in r.topics {
        let mut out = TopicResponse::default();
        out.name = topic.name.clone();
        for index in topic.partition_indexes {
            let mut part = PartitionResponse::default();
            part.partition_index = index;
            let outcome = async {
                let partition = u32::try_from(index).map_err(|_| ErrorCode::UnknownPartition)?;
                let (name, owner) = route(shard, &topic.name.0, partition)?;
                match shard.call(owner, ShardRequest::DescribeProducers { topic: name, partition }).await {
                    ShardReply::Producers(result) => result,
                    _ => Err(ErrorCode::ShuttingDown),
                }
            }
            .await;
            match outcome {
                Ok(producers) => {
                    for (id, epoch, last_sequence, last_ms) in producers {
                        let mut p = ProducerState::default();
                        p.producer_id = ProducerId(id);
                        p.producer_epoch = epoch as i32;
                        p.last_sequence = last_sequence;
                        p.last_timestamp = last_ms;
                        p.coordinator_epoch = -1;
                        p.current_txn_start_offset = -1;
                        part.active_producers.push(p);
                    }
                }
                Err(error) => {
                    part.error_code = kafka_code(error);
                    part.error_message = Some(str_bytes(format!("{error:?}")));
                }
            }
            out.partitions.push(part);
        }
        response.topics.push(out);
    }
    response
}

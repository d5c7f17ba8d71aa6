//! A pipelined Kafka-protocol client on glommio, for `rill bench --protocol kafka`: it speaks to
//! any Kafka-compatible broker and takes and returns the native envelopes, so the load generator
//! runs the same code over either protocol. Requests are encoded with the `kafka-protocol`
//! crate; responses come back in request order (Kafka's rule) and are matched by correlation id.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::client::Patch;
use bytes::{Buf, Bytes, BytesMut};
use futures_lite::io::AsyncReadExt;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rill_net::message::{
    self, Acks, ErrorCode, FetchResult, OffsetSpec, ProduceResult, RequestBody, ResponseBody,
};

/// Versions used: the newest that every Kafka-compatible broker of the last years serves and
/// that still name topics.
const PRODUCE_V: i16 = 9;
const FETCH_V: i16 = 12;
const LIST_OFFSETS_V: i16 = 7;
const CREATE_TOPICS_V: i16 = 7;
const DELETE_TOPICS_V: i16 = 6;

type Reply = anyhow::Result<(ResponseBody, Bytes)>;

struct Pending {
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    reply: LocalSender<Reply>,
}

/// One connection to a Kafka-compatible broker.
pub struct KafkaClient {
    frames: LocalSender<Bytes>,
    pending: Rc<RefCell<VecDeque<Pending>>>,
    next_id: Cell<i32>,
    tasks: RefCell<Vec<glommio::task::JoinHandle<()>>>,
}

impl KafkaClient {
    /// Connects and starts the response reader.
    pub async fn connect(addr: &str) -> anyhow::Result<Rc<KafkaClient>> {
        let (stream, read_half) = crate::native_client::connect_halves(addr).await?;
        let pending = Rc::new(RefCell::new(VecDeque::new()));
        let reader = glommio::spawn_local(read_loop(read_half, pending.clone())).detach();
        let (frames, writer) = crate::native_client::spawn_writer::<Bytes>(stream);
        Ok(Rc::new(KafkaClient {
            frames,
            pending,
            next_id: Cell::new(1),
            tasks: RefCell::new(vec![reader, writer]),
        }))
    }

    /// Sends a produce with acks none (no response comes).
    pub async fn send_only(
        &self,
        body: &RequestBody,
        data: &[Bytes],
        patch: Option<Patch>,
    ) -> anyhow::Result<()> {
        let (key, _, _, frame) = self.encode(body, data)?;
        anyhow::ensure!(key == ApiKey::Produce, "only a produce goes unanswered");
        let frame = patch_records(frame, data, patch)?;
        self.frames.send(frame).await.map_err(|_| anyhow::anyhow!("connection closed"))
    }

    /// Sends a request and waits for its response, translated to the native envelope.
    pub async fn call(&self, body: &RequestBody, data: &[Bytes], patch: Option<Patch>) -> Reply {
        let (key, version, correlation_id, frame) = self.encode(body, data)?;
        let frame = patch_records(frame, data, patch)?;
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().push_back(Pending { correlation_id, key, version, reply: tx });
        if self.frames.send(frame).await.is_err() {
            anyhow::bail!("connection closed");
        }
        rx.recv().await.unwrap_or_else(|| Err(anyhow::anyhow!("connection closed")))
    }

    /// Encodes a request frame; returns its API, version and correlation id with it.
    fn encode(&self, body: &RequestBody, data: &[Bytes]) -> anyhow::Result<(ApiKey, i16, i32, Bytes)> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1).max(1));
        let name = |t: &str| TopicName(StrBytes::from_string(t.to_string()));
        let (key, version, frame) = match body {
            RequestBody::CreateTopic { name: topic, partitions, replication_factor, settings } => {
                let mut t = CreatableTopic::default();
                t.name = name(topic);
                t.num_partitions = *partitions as i32;
                t.replication_factor = if *replication_factor > 0 { *replication_factor as i16 } else { -1 };
                let mut config = |k: &str, v: String| {
                    let mut c = CreatableTopicConfig::default();
                    c.name = StrBytes::from_string(k.to_string());
                    c.value = Some(StrBytes::from_string(v));
                    t.configs.push(c);
                };
                if let Some(d) = &settings.durability {
                    config("rill.durability", d.clone());
                }
                if let Some(b) = settings.segment_bytes {
                    config("segment.bytes", b.to_string());
                }
                if let Some(ms) = settings.retention_ms {
                    config("retention.ms", ms.to_string());
                }
                let mut r = CreateTopicsRequest::default();
                r.topics = vec![t];
                r.timeout_ms = 30_000;
                (ApiKey::CreateTopics, CREATE_TOPICS_V, frame(ApiKey::CreateTopics, CREATE_TOPICS_V, id, &r)?)
            }
            RequestBody::DeleteTopic { name: topic } => {
                let mut t = DeleteTopicState::default();
                t.name = Some(name(topic));
                let mut r = DeleteTopicsRequest::default();
                r.topics = vec![t];
                r.timeout_ms = 30_000;
                (ApiKey::DeleteTopics, DELETE_TOPICS_V, frame(ApiKey::DeleteTopics, DELETE_TOPICS_V, id, &r)?)
            }
            RequestBody::Produce { acks, timeout_ms, parts } => {
                let payload: Bytes = if data.len() == 1 { data[0].clone() } else { data.concat().into() };
                let mut r = ProduceRequest::default();
                r.acks = match acks {
                    Acks::None => 0,
                    Acks::Leader => 1,
                    Acks::Durable => -1,
                };
                r.timeout_ms = *timeout_ms as i32;
                for p in parts {
                    let mut part = PartitionProduceData::default();
                    part.index = p.partition as i32;
                    part.records = Some(message::range(&payload, p.records_at, p.records_len)?);
                    let mut t = TopicProduceData::default();
                    t.name = name(&p.topic);
                    t.partition_data = vec![part];
                    r.topic_data.push(t);
                }
                (ApiKey::Produce, PRODUCE_V, frame(ApiKey::Produce, PRODUCE_V, id, &r)?)
            }
            RequestBody::Fetch { max_wait_ms, min_bytes, max_bytes, parts } => {
                let mut r = FetchRequest::default();
                r.replica_id = kafka_protocol::messages::BrokerId(-1);
                r.max_wait_ms = *max_wait_ms as i32;
                r.min_bytes = *min_bytes as i32;
                r.max_bytes = *max_bytes as i32;
                r.session_epoch = -1;
                for p in parts {
                    let mut part = FetchPartition::default();
                    part.partition = p.partition as i32;
                    part.fetch_offset = p.offset as i64;
                    part.partition_max_bytes = p.max_bytes as i32;
                    part.log_start_offset = -1;
                    part.current_leader_epoch = -1;
                    part.last_fetched_epoch = -1;
                    let mut t = FetchTopic::default();
                    t.topic = name(&p.topic);
                    t.partitions = vec![part];
                    r.topics.push(t);
                }
                (ApiKey::Fetch, FETCH_V, frame(ApiKey::Fetch, FETCH_V, id, &r)?)
            }
            RequestBody::ListOffsets { parts } => {
                let mut r = ListOffsetsRequest::default();
                r.replica_id = kafka_protocol::messages::BrokerId(-1);
                for (topic, partition, spec) in parts {
                    let mut part = ListOffsetsPartition::default();
                    part.partition_index = *partition as i32;
                    part.current_leader_epoch = -1;
                    part.timestamp = match spec {
                        OffsetSpec::Earliest => -2,
                        OffsetSpec::Latest => -1,
                        OffsetSpec::Timestamp(ts) => *ts,
                        OffsetSpec::MaxTimestamp => -3,
                    };
                    let mut t = ListOffsetsTopic::default();
                    t.name = name(topic);
                    t.partitions = vec![part];
                    r.topics.push(t);
                }
                (ApiKey::ListOffsets, LIST_OFFSETS_V, frame(ApiKey::ListOffsets, LIST_OFFSETS_V, id, &r)?)
            }
            other => anyhow::bail!("{:?} has no Kafka translation in the load generator", other.kind()),
        };
        Ok((key, version, id, frame))
    }
}

impl Drop for KafkaClient {
    fn drop(&mut self) {
        for task in self.tasks.borrow_mut().drain(..) {
            task.cancel();
        }
    }
}

/// Applies `patch` to the one data piece where the codec copied it into `frame` (it ends the
/// frame but for a few tag bytes).
fn patch_records(frame: Bytes, data: &[Bytes], patch: Option<Patch>) -> anyhow::Result<Bytes> {
    let Some(patch) = patch else { return Ok(frame) };
    let [records] = data else { anyhow::bail!("a patched produce carries one data piece") };
    let mut frame = frame.try_into_mut().map_err(|_| anyhow::anyhow!("an encoded frame is not shared"))?;
    let (len, probe) = (records.len(), records.len().min(64));
    let last =
        frame.len().checked_sub(len).ok_or_else(|| anyhow::anyhow!("records longer than the frame"))?;
    let at = (last.saturating_sub(16)..=last)
        .rev()
        .find(|&p| frame[p..p + probe] == records[..probe])
        .ok_or_else(|| anyhow::anyhow!("records not found at the end of the frame"))?;
    patch(&mut frame[at..at + len]);
    Ok(frame.freeze())
}

fn frame<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &R) -> anyhow::Result<Bytes> {
    Ok(rill_net::kafka::encode_request(key, version, correlation_id, "rill-bench", body)?)
}

async fn read_loop(mut stream: TcpStream, pending: Rc<RefCell<VecDeque<Pending>>>) {
    let mut buffer = BytesMut::new();
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        while buffer.len() >= 4 {
            let len = i32::from_be_bytes(buffer[..4].try_into().expect("4 bytes"));
            if len < 0 {
                pending.borrow_mut().clear();
                return;
            }
            if buffer.len() < 4 + len as usize {
                buffer.reserve(4 + len as usize - buffer.len());
                break;
            }
            buffer.advance(4);
            let body = buffer.split_to(len as usize).freeze();
            let Some(waiter) = pending.borrow_mut().pop_front() else { return };
            let reply = decode(body, &waiter);
            let _ = waiter.reply.try_send(reply);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                pending.borrow_mut().clear();
                return;
            }
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Native error for a Kafka error code (what the load generator needs to tell apart).
fn native_error(code: i16) -> ErrorCode {
    match code {
        0 => ErrorCode::None,
        1 => ErrorCode::OffsetOutOfRange,
        3 => ErrorCode::UnknownTopic,
        36 => ErrorCode::TopicExists,
        _ => ErrorCode::InvalidRequest,
    }
}

fn decode(mut body: Bytes, waiter: &Pending) -> Reply {
    let header = ResponseHeader::decode(&mut body, waiter.key.response_header_version(waiter.version))?;
    anyhow::ensure!(
        header.correlation_id == waiter.correlation_id,
        "response {} for request {}",
        header.correlation_id,
        waiter.correlation_id
    );
    let status = |code: i16, message: Option<&StrBytes>| ResponseBody::Status {
        error: native_error(code),
        message: message.map(|m| m.to_string()).unwrap_or_default(),
    };
    Ok(match waiter.key {
        ApiKey::CreateTopics => {
            let r = CreateTopicsResponse::decode(&mut body, waiter.version)?;
            let t = r.topics.first().ok_or_else(|| anyhow::anyhow!("no topic in CreateTopics response"))?;
            (status(t.error_code, t.error_message.as_ref()), Bytes::new())
        }
        ApiKey::DeleteTopics => {
            let r = DeleteTopicsResponse::decode(&mut body, waiter.version)?;
            let t =
                r.responses.first().ok_or_else(|| anyhow::anyhow!("no topic in DeleteTopics response"))?;
            (status(t.error_code, t.error_message.as_ref()), Bytes::new())
        }
        ApiKey::Produce => {
            let r = ProduceResponse::decode(&mut body, waiter.version)?;
            let parts = r
                .responses
                .iter()
                .flat_map(|t| {
                    t.partition_responses.iter().map(|p| ProduceResult {
                        topic: t.name.0.to_string(),
                        partition: p.index as u32,
                        error: native_error(p.error_code),
                        base_offset: p.base_offset.max(0) as u64,
                    })
                })
                .collect();
            (ResponseBody::Produced { parts }, Bytes::new())
        }
        ApiKey::Fetch => {
            let r = FetchResponse::decode(&mut body, waiter.version)?;
            anyhow::ensure!(r.error_code == 0, "fetch failed with error {}", r.error_code);
            let mut data = Vec::new();
            let mut parts = Vec::new();
            let mut at = 0u32;
            for t in &r.responses {
                for p in &t.partitions {
                    let records = p.records.clone().unwrap_or_default();
                    parts.push(FetchResult {
                        topic: t.topic.0.to_string(),
                        partition: p.partition_index as u32,
                        error: native_error(p.error_code),
                        log_start: p.log_start_offset.max(0) as u64,
                        high_watermark: p.high_watermark.max(0) as u64,
                        records_at: at,
                        records_len: records.len() as u32,
                    });
                    at += records.len() as u32;
                    data.push(records);
                }
            }
            // One partition (the common case) needs no copy.
            let data = if data.len() == 1 { data.pop().expect("one") } else { data.concat().into() };
            (ResponseBody::Fetched { parts }, data)
        }
        ApiKey::ListOffsets => {
            let r = ListOffsetsResponse::decode(&mut body, waiter.version)?;
            let parts = r
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        (t.name.0.to_string(), p.partition_index as u32, native_error(p.error_code), p.offset)
                    })
                })
                .collect();
            (ResponseBody::Offsets { parts }, Bytes::new())
        }
        other => anyhow::bail!("unexpected response to {other:?}"),
    })
}

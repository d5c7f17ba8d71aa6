//! A structure-aware generator of Kafka Produce, Fetch and ListOffsets requests for fuzzing a
//! real broker.
//!
//! Byte-level fuzzing of a Kafka socket almost never gets past a RecordBatch's CRC32C, so the
//! broker's validation, storage and read paths stay unexplored. Here the fuzzer's bytes choose a
//! *structure* ([`Script`]): requests, batches and records, with deliberate lies (counts, offset
//! deltas, record lengths, timestamps, producer fields, trailing or missing bytes) applied to an
//! otherwise well-formed batch. The CRC is computed last, so every batch reaches the checks
//! behind it. Requests are encoded with the `kafka-protocol` codecs the broker decodes with.

use arbitrary::{Arbitrary, Unstructured};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

/// The topic every script talks to (created by the target with [`PARTITIONS`] partitions).
pub const TOPIC: &str = "fuzz";
pub const PARTITIONS: i32 = 4;

/// A connection's worth of requests.
#[derive(Arbitrary, Debug)]
pub struct Script {
    pub requests: Vec<Request>,
}

#[derive(Arbitrary, Debug)]
pub enum Request {
    Produce(Produce),
    Fetch(Fetch),
    ListOffsets(ListOffsets),
}

#[derive(Arbitrary, Debug)]
pub struct Produce {
    pub version: u8,
    pub acks: Acks,
    pub parts: Vec<ProducePart>,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

#[derive(Arbitrary, Debug)]
pub struct ProducePart {
    pub partition: Partition,
    /// Batches concatenated in the part's records field.
    pub batches: Vec<BatchSpec>,
    /// Bytes appended after the batches.
    pub trailing: Vec<u8>,
}

/// A partition index: mostly real ones, sometimes not.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Partition {
    Real(u8),
    Any(i32),
}

impl Partition {
    fn index(self) -> i32 {
        match self {
            Partition::Real(p) => i32::from(p) % PARTITIONS,
            Partition::Any(p) => p,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct BatchSpec {
    pub records: Vec<RecordSpec>,
    /// Compression codec bits (0 none; others mark the records section as compressed, which it
    /// then is not).
    pub codec: u8,
    pub timestamp_type_log_append: bool,
    pub transactional: bool,
    pub control: bool,
    pub base_timestamp: Timestamp,
    /// `None`: not idempotent.
    pub producer: Option<(u8, i16, i32)>,
    pub lies: Vec<Lie>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Timestamp {
    Now,
    Small(u16),
    Any(i64),
}

impl Timestamp {
    fn value(self) -> i64 {
        match self {
            Timestamp::Now => 1_764_633_600_000,
            Timestamp::Small(t) => i64::from(t),
            Timestamp::Any(t) => t,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct RecordSpec {
    pub timestamp_delta: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A deliberate inconsistency, applied before the CRC is computed.
#[derive(Arbitrary, Debug)]
pub enum Lie {
    RecordsCount(i32),
    LastOffsetDelta(i32),
    BatchLength(i32),
    MaxTimestamp(i64),
    PartitionLeaderEpoch(i32),
    Magic(i8),
    /// Overwrite one byte of the records section (a length, a varint, a count).
    RecordByte {
        at: u16,
        value: u8,
    },
    /// Cut the records section short.
    Truncate(u16),
    /// Leave the CRC wrong.
    BadCrc,
}

#[derive(Arbitrary, Debug)]
pub struct Fetch {
    pub version: u8,
    pub max_bytes: i32,
    pub min_bytes: i8,
    pub max_wait_ms: u8,
    pub parts: Vec<FetchPart>,
    /// Repeat the whole partition list this many times (the response must still respect
    /// `max_bytes`).
    pub repeat: u8,
}

#[derive(Arbitrary, Debug)]
pub struct FetchPart {
    pub partition: Partition,
    pub offset: Offset,
    pub partition_max_bytes: i32,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Offset {
    Small(u8),
    Any(i64),
}

impl Offset {
    fn value(self) -> i64 {
        match self {
            Offset::Small(o) => i64::from(o),
            Offset::Any(o) => o,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct ListOffsets {
    pub version: u8,
    pub isolation_level: i8,
    pub parts: Vec<(Partition, ListTimestamp)>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ListTimestamp {
    Latest,
    Earliest,
    MaxTimestamp,
    At(Timestamp),
}

impl ListTimestamp {
    fn value(self) -> i64 {
        match self {
            ListTimestamp::Latest => -1,
            ListTimestamp::Earliest => -2,
            ListTimestamp::MaxTimestamp => -3,
            ListTimestamp::At(t) => t.value(),
        }
    }
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            buf.put_u8(z as u8);
            return;
        }
        buf.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

fn put_bytes(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// Bounds that keep one script small (the broker's limits are far above them).
const RECORDS_MAX: usize = 16;
const FIELD_BYTES_MAX: usize = 512;

fn clip(bytes: &Option<Vec<u8>>) -> Option<&[u8]> {
    bytes.as_deref().map(|b| &b[..b.len().min(FIELD_BYTES_MAX)])
}

impl BatchSpec {
    /// A RecordBatch v2 with the spec's lies and (unless [`Lie::BadCrc`]) a valid CRC32C.
    pub fn encode(&self) -> Bytes {
        let mut records = BytesMut::new();
        let count = self.records.len().min(RECORDS_MAX);
        for (i, r) in self.records.iter().take(RECORDS_MAX).enumerate() {
            let mut body = BytesMut::new();
            body.put_i8(0);
            put_varint(&mut body, i64::from(r.timestamp_delta));
            put_varint(&mut body, i as i64);
            put_bytes(&mut body, clip(&r.key));
            put_bytes(&mut body, clip(&r.value));
            let headers = &r.headers[..r.headers.len().min(4)];
            put_varint(&mut body, headers.len() as i64);
            for (name, value) in headers {
                put_bytes(&mut body, Some(&name[..name.len().min(64)]));
                put_bytes(&mut body, clip(value));
            }
            put_varint(&mut records, body.len() as i64);
            records.put_slice(&body);
        }
        let mut records = records.to_vec();
        let mut attributes = i16::from(self.codec % 5);
        if self.timestamp_type_log_append {
            attributes |= 0x08;
        }
        if self.transactional {
            attributes |= 0x10;
        }
        if self.control {
            attributes |= 0x20;
        }
        let base_timestamp = self.base_timestamp.value();
        let max_timestamp = self
            .records
            .iter()
            .take(RECORDS_MAX)
            .map(|r| base_timestamp.wrapping_add(i64::from(r.timestamp_delta)))
            .max()
            .unwrap_or(base_timestamp);
        let (producer_id, epoch, sequence) = match self.producer {
            Some((id, epoch, sequence)) => (i64::from(id), epoch, sequence),
            None => (-1, -1, -1),
        };
        let mut records_count = count as i32;
        let mut last_offset_delta = (count as i32 - 1).max(0);
        let mut max_ts = max_timestamp;
        let mut leader_epoch = -1;
        let mut magic = 2i8;
        let mut batch_length = None;
        let mut bad_crc = false;
        for lie in self.lies.iter().take(4) {
            match *lie {
                Lie::RecordsCount(n) => records_count = n,
                Lie::LastOffsetDelta(n) => last_offset_delta = n,
                Lie::BatchLength(n) => batch_length = Some(n),
                Lie::MaxTimestamp(t) => max_ts = t,
                Lie::PartitionLeaderEpoch(e) => leader_epoch = e,
                Lie::Magic(m) => magic = m,
                Lie::RecordByte { at, value } => {
                    if !records.is_empty() {
                        let at = usize::from(at) % records.len();
                        records[at] = value;
                    }
                }
                Lie::Truncate(n) => {
                    let keep = records.len().saturating_sub(usize::from(n));
                    records.truncate(keep);
                }
                Lie::BadCrc => bad_crc = true,
            }
        }
        let mut batch = BytesMut::with_capacity(61 + records.len());
        batch.put_i64(0); // base offset: the broker assigns it
        let length = 49 + records.len() as i32;
        batch.put_i32(batch_length.unwrap_or(length));
        batch.put_i32(leader_epoch);
        batch.put_i8(magic);
        batch.put_u32(0); // CRC, below
        batch.put_i16(attributes);
        batch.put_i32(last_offset_delta);
        batch.put_i64(base_timestamp);
        batch.put_i64(max_ts);
        batch.put_i64(producer_id);
        batch.put_i16(epoch);
        batch.put_i32(sequence);
        batch.put_i32(records_count);
        batch.put_slice(&records);
        let crc = crc32c::crc32c(&batch[21..]) ^ u32::from(bad_crc);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch.freeze()
    }
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// Versions the broker serves for each API (a fuzzed version is folded into this range).
fn version(v: u8, min: i16, max: i16) -> i16 {
    min + (i16::from(v) % (max - min + 1))
}

/// An encoded request, the Kafka API it belongs to, and whether the broker answers it.
pub struct Encoded {
    pub frame: Bytes,
    pub key: ApiKey,
    pub answered: bool,
    /// For fetches: the request's `max_bytes` (a response may exceed it by one batch only).
    pub fetch_max_bytes: Option<i32>,
}

impl Request {
    /// `None` if the chosen version cannot carry a chosen field (the codec refuses it).
    pub fn encode(&self, correlation_id: i32) -> Option<Encoded> {
        match self {
            Request::Produce(p) => {
                let v = version(p.version, 3, 9);
                let mut request = ProduceRequest::default();
                request.acks = match p.acks {
                    Acks::None => 0,
                    Acks::Leader => 1,
                    Acks::All => -1,
                };
                request.timeout_ms = 5_000;
                let mut topic = TopicProduceData::default();
                topic.name = topic_name();
                for part in p.parts.iter().take(4) {
                    let mut records = BytesMut::new();
                    for batch in part.batches.iter().take(4) {
                        records.put_slice(&batch.encode());
                    }
                    records.put_slice(&part.trailing[..part.trailing.len().min(64)]);
                    let mut data = PartitionProduceData::default();
                    data.index = part.partition.index();
                    data.records = Some(records.freeze());
                    topic.partition_data.push(data);
                }
                request.topic_data = vec![topic];
                let frame =
                    rill_net::kafka::encode_request(ApiKey::Produce, v, correlation_id, "fuzz", &request)
                        .ok()?;
                Some(Encoded {
                    frame,
                    key: ApiKey::Produce,
                    answered: p.acks != Acks::None,
                    fetch_max_bytes: None,
                })
            }
            Request::Fetch(f) => {
                let v = version(f.version, 4, 12);
                let mut request = FetchRequest::default();
                request.replica_id = kafka_protocol::messages::BrokerId(-1);
                request.max_wait_ms = i32::from(f.max_wait_ms % 50);
                request.min_bytes = i32::from(f.min_bytes);
                request.max_bytes = f.max_bytes;
                let mut topic = FetchTopic::default();
                topic.topic = topic_name();
                let repeat = usize::from(f.repeat % 64).max(1);
                for _ in 0..repeat {
                    for part in f.parts.iter().take(8) {
                        let mut p = FetchPartition::default();
                        p.partition = part.partition.index();
                        p.fetch_offset = part.offset.value();
                        p.partition_max_bytes = part.partition_max_bytes;
                        p.log_start_offset = -1;
                        topic.partitions.push(p);
                    }
                }
                request.topics = vec![topic];
                let frame =
                    rill_net::kafka::encode_request(ApiKey::Fetch, v, correlation_id, "fuzz", &request)
                        .ok()?;
                Some(Encoded {
                    frame,
                    key: ApiKey::Fetch,
                    answered: true,
                    fetch_max_bytes: Some(f.max_bytes),
                })
            }
            Request::ListOffsets(l) => {
                let v = version(l.version, 1, 7);
                let mut request = ListOffsetsRequest::default();
                request.replica_id = kafka_protocol::messages::BrokerId(-1);
                if v >= 2 {
                    request.isolation_level = l.isolation_level.rem_euclid(2);
                }
                let mut topic = ListOffsetsTopic::default();
                topic.name = topic_name();
                for (partition, timestamp) in l.parts.iter().take(8) {
                    let mut p = ListOffsetsPartition::default();
                    p.partition_index = partition.index();
                    p.timestamp = timestamp.value();
                    topic.partitions.push(p);
                }
                request.topics = vec![topic];
                let frame =
                    rill_net::kafka::encode_request(ApiKey::ListOffsets, v, correlation_id, "fuzz", &request)
                        .ok()?;
                Some(Encoded { frame, key: ApiKey::ListOffsets, answered: true, fetch_max_bytes: None })
            }
        }
    }
}

/// Reads a script from fuzzer bytes (at most `requests_max` requests).
pub fn script(data: &[u8], requests_max: usize) -> Option<Script> {
    let mut u = Unstructured::new(data);
    let mut script = Script::arbitrary(&mut u).ok()?;
    script.requests.truncate(requests_max);
    Some(script)
}

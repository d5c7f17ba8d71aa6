//! Native-protocol messages: rkyv-archived envelopes, with record bytes after them.
//!
//! A frame's payload is `[u32 LE envelope length][envelope][data]`. The envelope is the rkyv
//! archive of a request or response struct; it is validated (bytecheck) in place before use,
//! because it comes from the network. Record batches are not in the envelope: it names byte
//! ranges of `data`, and decoding hands those ranges on as `Bytes` slices of the receive buffer,
//! so batches travel from socket to log (and back) without a copy or a re-encode.

use bytes::{BufMut, Bytes, BytesMut};
use rkyv::rancor;

/// Request kinds. A response uses the request's kind with [`RESPONSE_BIT`] set.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Create a topic.
    CreateTopic = 1,
    /// Delete a topic.
    DeleteTopic = 2,
    /// List topic names.
    ListTopics = 3,
    /// Describe a topic's partitions and settings.
    DescribeTopic = 4,
    /// Grow a topic's partition count.
    AddPartitions = 5,
    /// Append batches to partitions.
    Produce = 6,
    /// Read batches from partitions, long-polling.
    Fetch = 7,
    /// Earliest, latest or by-timestamp offsets.
    ListOffsets = 8,
    /// List consumer groups.
    ListGroups = 9,
    /// A consumer group's members, assignments, committed offsets and lag.
    DescribeGroup = 10,
    /// Delete an empty consumer group and its offsets.
    DeleteGroup = 11,
    /// Move an empty group's committed offsets of a topic.
    ResetOffsets = 12,
    /// Join a consumer group (Kafka's JoinGroup).
    JoinGroup = 13,
    /// Hand out or receive a group's assignment (Kafka's SyncGroup).
    SyncGroup = 14,
    /// Stay in a group (Kafka's Heartbeat).
    Heartbeat = 15,
    /// Leave a group.
    LeaveGroup = 16,
    /// Commit a member's offsets.
    CommitOffsets = 17,
    /// Read a group's committed offsets.
    FetchOffsets = 18,
    /// Replace a topic's settings.
    AlterTopic = 19,
    /// The cluster's nodes, their liveness and partitions, and the controller.
    ClusterStatus = 20,
    /// Make a node a voter of the cluster's metadata group.
    AddNode = 21,
    /// Take a node out of the cluster.
    RemoveNode = 22,
}

/// Set in a response frame's kind.
pub const RESPONSE_BIT: u16 = 0x8000;
/// Kind of an error response to a request that could not be decoded at all.
pub const ERROR_KIND: u16 = 0xFFFF;

impl Kind {
    /// The kind for a frame kind number, if known.
    pub fn from_u16(v: u16) -> Option<Kind> {
        use Kind::*;
        [
            CreateTopic,
            DeleteTopic,
            ListTopics,
            DescribeTopic,
            AddPartitions,
            Produce,
            Fetch,
            ListOffsets,
            ListGroups,
            DescribeGroup,
            DeleteGroup,
            ResetOffsets,
            JoinGroup,
            SyncGroup,
            Heartbeat,
            LeaveGroup,
            CommitOffsets,
            FetchOffsets,
            AlterTopic,
            ClusterStatus,
            AddNode,
            RemoveNode,
        ]
        .into_iter()
        .find(|k| *k as u16 == v)
    }
}

/// Per-request and per-partition error codes.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
#[repr(u16)]
pub enum ErrorCode {
    /// Success.
    None = 0,
    /// The topic does not exist.
    UnknownTopic = 1,
    /// The partition does not exist.
    UnknownPartition = 2,
    /// The offset is outside the log.
    OffsetOutOfRange = 3,
    /// The request is malformed.
    InvalidRequest = 4,
    /// The topic already exists.
    TopicExists = 5,
    /// The topic name is not allowed.
    InvalidTopicName = 6,
    /// A batch failed validation (length, magic, CRC).
    CorruptBatch = 7,
    /// A batch exceeds the limit.
    BatchTooLarge = 8,
    /// The request kind or version is not supported.
    Unsupported = 9,
    /// The broker could not read or write its storage.
    StorageError = 10,
    /// The request waited longer than its timeout.
    Timeout = 11,
    /// The broker is shutting down.
    ShuttingDown = 12,
    /// Invalid topic settings or partition count.
    InvalidConfig = 13,
    /// An idempotent producer's batch is not the next in its sequence.
    OutOfOrderSequence = 14,
    /// An idempotent producer's epoch is older than the partition has seen.
    InvalidProducerEpoch = 15,
    /// A replication factor the cluster cannot satisfy.
    InvalidReplicationFactor = 16,
    /// Replica assignments that name unknown nodes, repeat one, or differ in size.
    InvalidReplicaAssignment = 17,
    /// The request needs the controller, and none is reachable.
    NotController = 18,
    /// Another node leads the partition (clients refresh their metadata).
    NotLeaderOrFollower = 19,
    /// A durable produce to a partition with fewer in-sync replicas than its
    /// `min.insync.replicas`.
    NotEnoughReplicas = 20,
    /// A record the topic cannot take (a keyless record on a compacted topic).
    InvalidRecord = 21,
    /// An operation the topic's policy forbids (DeleteRecords on a compacted topic).
    PolicyViolation = 22,
}

/// Optional per-topic settings; `None` takes the broker's default.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicSettings {
    /// Segment size.
    pub segment_bytes: Option<u64>,
    /// Retention by age; [`RETENTION_UNLIMITED`] keeps everything, `None` is the default.
    pub retention_ms: Option<u64>,
    /// Retention by size per partition; as `retention_ms`.
    pub retention_bytes: Option<u64>,
    /// `always`, `never` or `interval:<ms>`.
    pub durability: Option<String>,
}

/// A retention setting that keeps everything (Kafka's `-1`); larger values mean the same.
pub const RETENTION_UNLIMITED: u64 = i64::MAX as u64;

/// When a produce is acknowledged.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Acks {
    /// No response at all.
    None = 0,
    /// After the leader appended (written to its disk).
    Leader = 1,
    /// After the topic's durability policy is met.
    Durable = 2,
}

/// One partition's batches in a produce request: a range of the frame's data.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProducePart {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// Start of the records in the data section.
    pub records_at: u32,
    /// Length of the records.
    pub records_len: u32,
}

/// Which offset ListOffsets asks for.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// The first offset whose batch max timestamp reaches this.
    Timestamp(i64),
    /// The base offset of the first batch holding the log's largest timestamp (Kafka's -3).
    MaxTimestamp,
}

/// One partition of a fetch request.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FetchPart {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// First offset wanted.
    pub offset: u64,
    /// Byte budget for this partition.
    pub max_bytes: u32,
}

/// A request envelope.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// Create a topic.
    CreateTopic {
        /// Name (Kafka's rules: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`).
        name: String,
        /// Partition count.
        partitions: u32,
        /// Replicas per partition (0: the cluster's default, one).
        replication_factor: u32,
        /// Settings.
        settings: TopicSettings,
    },
    /// Delete a topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// List topics.
    ListTopics,
    /// Describe a topic.
    DescribeTopic {
        /// Name.
        name: String,
    },
    /// Grow a topic to `total` partitions.
    AddPartitions {
        /// Name.
        name: String,
        /// New partition count.
        total: u32,
    },
    /// Append batches.
    Produce {
        /// When to answer.
        acks: Acks,
        /// How long to wait for durability before answering `Timeout`.
        timeout_ms: u32,
        /// Partitions and their record ranges.
        parts: Vec<ProducePart>,
    },
    /// Read batches.
    Fetch {
        /// Longest wait for `min_bytes`.
        max_wait_ms: u32,
        /// Answer once this many bytes are available (or at `max_wait_ms`).
        min_bytes: u32,
        /// Byte budget of the whole response.
        max_bytes: u32,
        /// Partitions.
        parts: Vec<FetchPart>,
    },
    /// Look up offsets.
    ListOffsets {
        /// Partitions and what to look up.
        parts: Vec<(String, u32, OffsetSpec)>,
    },
    /// List consumer groups.
    ListGroups,
    /// Describe a consumer group.
    DescribeGroup {
        /// Group id.
        group: String,
    },
    /// Delete a consumer group with no members, and its committed offsets.
    DeleteGroup {
        /// Group id.
        group: String,
    },
    /// Set a group's committed offsets for every partition of a topic (the group must have no
    /// members).
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Where to: earliest, latest, or the offset for a timestamp.
        to: OffsetSpec,
    },
    /// Join a consumer group; answered when the group's rebalance completes.
    JoinGroup {
        /// Group id.
        group: String,
        /// Empty on the first join.
        member_id: String,
        /// Client id (shown by `rill group describe`).
        client_id: String,
        /// Session timeout.
        session_timeout_ms: u32,
        /// Protocol type, e.g. `consumer`.
        protocol_type: String,
        /// Assignment protocols with this member's metadata, preferred first.
        protocols: Vec<(String, Vec<u8>)>,
    },
    /// The leader hands out assignments; every member gets its own.
    SyncGroup {
        /// Group id.
        group: String,
        /// Generation from the join.
        generation: i32,
        /// Member id.
        member_id: String,
        /// From the leader: member id and assignment bytes.
        assignments: Vec<(String, Vec<u8>)>,
    },
    /// Stay in the group.
    Heartbeat {
        /// Group id.
        group: String,
        /// Generation.
        generation: i32,
        /// Member id.
        member_id: String,
    },
    /// Leave the group.
    LeaveGroup {
        /// Group id.
        group: String,
        /// Member id.
        member_id: String,
    },
    /// Commit offsets (generation -1 and an empty member id for a group with no members).
    CommitOffsets {
        /// Group id.
        group: String,
        /// Generation.
        generation: i32,
        /// Member id.
        member_id: String,
        /// Topic, partition, next offset to read.
        offsets: Vec<(String, u32, i64)>,
    },
    /// Read committed offsets.
    FetchOffsets {
        /// Group id.
        group: String,
        /// Topic and partition.
        parts: Vec<(String, u32)>,
    },
    /// Replace a topic's settings (those left `None` return to the broker's defaults).
    AlterTopic {
        /// Name.
        name: String,
        /// The topic's new settings.
        settings: TopicSettings,
    },
    /// The cluster's status as the answering node sees it.
    ClusterStatus,
    /// Add node `id` to the cluster (start it with `--join` afterwards).
    AddNode {
        /// The node.
        id: u32,
    },
    /// Remove node `id` from the cluster (refused while it holds replicas).
    RemoveNode {
        /// The node.
        id: u32,
    },
}

impl RequestBody {
    /// The frame kind of this request.
    pub fn kind(&self) -> Kind {
        match self {
            RequestBody::CreateTopic { .. } => Kind::CreateTopic,
            RequestBody::DeleteTopic { .. } => Kind::DeleteTopic,
            RequestBody::ListTopics => Kind::ListTopics,
            RequestBody::DescribeTopic { .. } => Kind::DescribeTopic,
            RequestBody::AddPartitions { .. } => Kind::AddPartitions,
            RequestBody::Produce { .. } => Kind::Produce,
            RequestBody::Fetch { .. } => Kind::Fetch,
            RequestBody::ListOffsets { .. } => Kind::ListOffsets,
            RequestBody::ListGroups => Kind::ListGroups,
            RequestBody::DescribeGroup { .. } => Kind::DescribeGroup,
            RequestBody::DeleteGroup { .. } => Kind::DeleteGroup,
            RequestBody::ResetOffsets { .. } => Kind::ResetOffsets,
            RequestBody::JoinGroup { .. } => Kind::JoinGroup,
            RequestBody::SyncGroup { .. } => Kind::SyncGroup,
            RequestBody::Heartbeat { .. } => Kind::Heartbeat,
            RequestBody::LeaveGroup { .. } => Kind::LeaveGroup,
            RequestBody::CommitOffsets { .. } => Kind::CommitOffsets,
            RequestBody::FetchOffsets { .. } => Kind::FetchOffsets,
            RequestBody::AlterTopic { .. } => Kind::AlterTopic,
            RequestBody::ClusterStatus => Kind::ClusterStatus,
            RequestBody::AddNode { .. } => Kind::AddNode,
            RequestBody::RemoveNode { .. } => Kind::RemoveNode,
        }
    }
}

/// One node in a cluster status.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node id.
    pub id: u32,
    /// Its Kafka address.
    pub kafka_address: String,
    /// Its cluster (QUIC) address.
    pub cluster_address: String,
    /// Shards it runs.
    pub shards: u32,
    /// Whether the answering node has a live link to it (or is it).
    pub alive: bool,
    /// Partition replicas it holds.
    pub replicas: u32,
    /// Partitions it leads.
    pub leaders: u32,
}

/// A partition as described to clients.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Index.
    pub partition: u32,
    /// Owning shard.
    pub shard: u32,
    /// First offset present.
    pub log_start: u64,
    /// Next offset to be written.
    pub log_end: u64,
}

/// One partition's result in a produce response.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProduceResult {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Outcome.
    pub error: ErrorCode,
    /// Base offset of the first batch appended.
    pub base_offset: u64,
}

/// One partition's result in a fetch response; its batches are a range of the data section.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FetchResult {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Outcome.
    pub error: ErrorCode,
    /// Log start offset.
    pub log_start: u64,
    /// Log end offset (high watermark on a single node).
    pub high_watermark: u64,
    /// Start of the batches in the data section.
    pub records_at: u32,
    /// Length of the batches.
    pub records_len: u32,
}

/// A consumer-group member as described to clients.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GroupMemberInfo {
    /// Member id.
    pub member_id: String,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Assigned partitions (decoded from the consumer protocol's assignment).
    pub partitions: Vec<(String, u32)>,
}

/// A group's committed offset for one partition, with the partition's end.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GroupOffsetInfo {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Committed offset, -1 for an assigned partition with no commit yet.
    pub committed: i64,
    /// Log end offset (lag = log end - committed).
    pub log_end: u64,
}

/// A response envelope.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// Outcome of a request with no other payload.
    Status {
        /// Outcome.
        error: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// Topic names.
    Topics {
        /// Names.
        names: Vec<String>,
    },
    /// The cluster's status.
    ClusterStatus {
        /// The controller, if the answering node knows one.
        controller: Option<u32>,
        /// The node that answered.
        answered_by: u32,
        /// Every member node.
        nodes: Vec<NodeStatus>,
        /// Partitions with fewer in-sync replicas than replicas.
        under_replicated: u32,
    },
    /// A topic.
    Topic {
        /// Name.
        name: String,
        /// Settings as stored.
        settings: TopicSettings,
        /// Partitions.
        partitions: Vec<PartitionInfo>,
    },
    /// Produce results.
    Produced {
        /// Per partition.
        parts: Vec<ProduceResult>,
    },
    /// Fetch results.
    Fetched {
        /// Per partition.
        parts: Vec<FetchResult>,
    },
    /// ListOffsets results: topic, partition, error, offset (-1 if none).
    Offsets {
        /// Per partition.
        parts: Vec<(String, u32, ErrorCode, i64)>,
    },
    /// Consumer groups: id and state.
    Groups {
        /// Groups.
        groups: Vec<(String, String)>,
    },
    /// A consumer group.
    Group {
        /// Group id.
        group: String,
        /// State (Empty, Stable, PreparingRebalance, CompletingRebalance, Dead).
        state: String,
        /// Assignment protocol (range, roundrobin, cooperative-sticky, ...).
        protocol: String,
        /// Members.
        members: Vec<GroupMemberInfo>,
        /// Committed offsets.
        offsets: Vec<GroupOffsetInfo>,
    },
    /// A JoinGroup's answer (`error` is a Kafka group error code, 0 for none).
    Joined {
        /// Kafka error code.
        error: i16,
        /// Generation.
        generation: i32,
        /// Chosen protocol.
        protocol: String,
        /// Leader's member id.
        leader: String,
        /// This member's id.
        member_id: String,
        /// For the leader: every member's id and metadata.
        members: Vec<(String, Vec<u8>)>,
    },
    /// A SyncGroup's answer.
    Synced {
        /// Kafka error code.
        error: i16,
        /// This member's assignment.
        assignment: Vec<u8>,
    },
    /// A group operation's Kafka error code (0 for none).
    GroupCode {
        /// Kafka error code.
        error: i16,
    },
    /// Committed offsets: topic, partition, offset (-1 if none).
    Committed {
        /// Per partition.
        parts: Vec<(String, u32, i64)>,
    },
}

/// Why a payload is not a valid message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Shorter than its envelope length prefix says.
    #[error("message truncated")]
    Truncated,
    /// The envelope failed rkyv validation.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// A record range points outside the data section.
    #[error("record range outside the message")]
    BadRange,
    /// The envelope does not match the frame kind.
    #[error("envelope does not match frame kind {0}")]
    KindMismatch(u16),
}

/// Encodes an envelope and its data into frame payload chunks: prefix+envelope, then data.
pub fn encode_payload<T>(envelope: &T, data: &[Bytes]) -> Vec<Bytes>
where
    T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                rkyv::util::AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rancor::Error,
            >,
        >,
{
    let archived = rkyv::to_bytes::<rancor::Error>(envelope).expect("envelopes archive");
    let mut head = BytesMut::with_capacity(4 + archived.len());
    head.put_u32_le(archived.len() as u32);
    head.extend_from_slice(&archived);
    let mut out = vec![head.freeze()];
    out.extend(data.iter().filter(|d| !d.is_empty()).cloned());
    out
}

/// Splits a payload into its envelope bytes and data section.
fn split(payload: &Bytes) -> Result<(Bytes, Bytes), MessageError> {
    if payload.len() < 4 {
        return Err(MessageError::Truncated);
    }
    let len = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes")) as usize;
    let end = 4usize.checked_add(len).filter(|e| *e <= payload.len()).ok_or(MessageError::Truncated)?;
    Ok((payload.slice(4..end), payload.slice(end..)))
}

/// Decodes a request payload (validating the envelope) into the body and its data section.
pub fn decode_request(kind: u16, payload: &Bytes) -> Result<(RequestBody, Bytes), MessageError> {
    let (envelope, data) = split(payload)?;
    let body = rkyv::from_bytes::<RequestBody, rancor::Error>(&envelope)
        .map_err(|e| MessageError::Malformed(e.to_string()))?;
    if body.kind() as u16 != kind {
        return Err(MessageError::KindMismatch(kind));
    }
    if let RequestBody::Produce { parts, .. } = &body {
        for p in parts {
            range(&data, p.records_at, p.records_len)?;
        }
    }
    Ok((body, data))
}

/// Decodes a response payload into the body and its data section.
pub fn decode_response(payload: &Bytes) -> Result<(ResponseBody, Bytes), MessageError> {
    let (envelope, data) = split(payload)?;
    let body = rkyv::from_bytes::<ResponseBody, rancor::Error>(&envelope)
        .map_err(|e| MessageError::Malformed(e.to_string()))?;
    if let ResponseBody::Fetched { parts } = &body {
        for p in parts {
            range(&data, p.records_at, p.records_len)?;
        }
    }
    Ok((body, data))
}

/// The zero-copy slice `[at, at + len)` of `data`.
pub fn range(data: &Bytes, at: u32, len: u32) -> Result<Bytes, MessageError> {
    let (at, len) = (at as usize, len as usize);
    let end = at.checked_add(len).filter(|e| *e <= data.len()).ok_or(MessageError::BadRange)?;
    Ok(data.slice(at..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_round_trip_keeps_records_zero_copy() {
        let records = Bytes::from(vec![7u8; 300]);
        let body = RequestBody::Produce {
            acks: Acks::Durable,
            timeout_ms: 5000,
            parts: vec![
                ProducePart { topic: "t".into(), partition: 0, records_at: 0, records_len: 100 },
                ProducePart { topic: "t".into(), partition: 1, records_at: 100, records_len: 200 },
            ],
        };
        let chunks = encode_payload(&body, std::slice::from_ref(&records));
        let payload: Bytes = chunks.concat().into();
        let (decoded, data) = decode_request(Kind::Produce as u16, &payload).unwrap();
        assert_eq!(decoded, body);
        let slice = range(&data, 100, 200).unwrap();
        assert_eq!(slice.len(), 200);
        // The slice points into the payload buffer: no copy was made.
        let base = payload.as_ptr() as usize;
        assert!((slice.as_ptr() as usize) >= base && (slice.as_ptr() as usize) < base + payload.len());
    }

    #[test]
    fn lies_are_refused() {
        let body = RequestBody::Produce {
            acks: Acks::Leader,
            timeout_ms: 1,
            parts: vec![ProducePart {
                topic: "t".into(),
                partition: 0,
                records_at: 10,
                records_len: 1 << 30,
            }],
        };
        let payload: Bytes = encode_payload(&body, &[Bytes::from_static(b"short")]).concat().into();
        assert_eq!(decode_request(Kind::Produce as u16, &payload).unwrap_err(), MessageError::BadRange);
        assert_eq!(decode_request(Kind::Fetch as u16, &payload).unwrap_err(), MessageError::KindMismatch(7));
        let garbage = Bytes::from_static(&[8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(matches!(decode_request(1, &garbage), Err(MessageError::Malformed(_))));
        assert_eq!(
            decode_request(1, &Bytes::from_static(&[255, 255, 255, 255])),
            Err(MessageError::Truncated)
        );
    }
}

//! The server side of one Kafka-protocol connection, sans-I/O.
//!
//! Frames are a big-endian `i32` length and that many bytes: a request header and a request
//! body, both decoded with the `kafka-protocol` crate's codecs. Kafka clients pipeline requests
//! and expect the responses in request order, so each decoded request takes a slot and
//! responses leave in slot order whatever order they are given in. A produce with `acks=0`
//! takes a slot that [`KafkaConnection::complete_silently`] frees without a response.
//!
//! Errors that leave the byte stream unusable (a negative or oversize length, a header that
//! does not decode, an unknown API key or a version outside what [`supported_versions`]
//! advertises) close the connection, as Kafka does; an `ApiVersions` request of a newer version
//! than Rill knows is answered with version 0 and `UNSUPPORTED_VERSION`, as KIP-511 asks.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest, DescribeProducersRequest,
    ElectLeadersRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest,
    ProduceRequest, RequestHeader, ResponseHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Kafka error codes Rill answers with.
#[allow(missing_docs)]
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_FETCH_SIZE: i16 = 4;
    /// The partition has no leader now (its only replica's log is offline, or an election runs).
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    /// The partition is led by another broker (or this one is stopping).
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// The group is coordinated by another broker (find it again with FindCoordinator).
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const INVALID_RECORD: i16 = 87;
    /// The client's leader epoch is newer than the broker's.
    pub const UNKNOWN_LEADER_EPOCH: i16 = 74;
    /// The preferred replica already leads the partition.
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
}

/// The APIs Rill serves and the version range of each (capped below versions that address
/// topics by id only, which Rill's metadata does not have).
pub fn supported_versions() -> &'static [(ApiKey, i16, i16)] {
    &[
        (ApiKey::Produce, 3, 12),
        (ApiKey::Fetch, 4, 12),
        (ApiKey::ListOffsets, 1, 9),
        (ApiKey::Metadata, 0, 12),
        (ApiKey::FindCoordinator, 0, 4),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::AlterConfigs, 0, 2),
        (ApiKey::IncrementalAlterConfigs, 0, 1),
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::CreateTopics, 2, 7),
        (ApiKey::DeleteTopics, 1, 6),
        (ApiKey::InitProducerId, 0, 4),
        (ApiKey::CreatePartitions, 0, 3),
        (ApiKey::DescribeCluster, 0, 1),
        (ApiKey::OffsetCommit, 2, 8),
        (ApiKey::OffsetFetch, 1, 7),
        (ApiKey::JoinGroup, 0, 7),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::LeaveGroup, 0, 4),
        (ApiKey::SyncGroup, 0, 4),
        (ApiKey::DescribeGroups, 0, 5),
        (ApiKey::ListGroups, 0, 4),
        (ApiKey::DeleteGroups, 0, 2),
        (ApiKey::OffsetDelete, 0, 0),
        (ApiKey::OffsetForLeaderEpoch, 2, 4),
        (ApiKey::ElectLeaders, 0, 2),
        (ApiKey::ListPartitionReassignments, 0, 0),
        (ApiKey::DeleteRecords, 0, 2),
        (ApiKey::DescribeLogDirs, 1, 4),
        (ApiKey::DescribeProducers, 0, 0),
    ]
}

fn version_range(key: ApiKey) -> Option<(i16, i16)> {
    supported_versions().iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| (min, max))
}

/// A decoded request body.
#[allow(missing_docs)]
#[derive(Debug)]
pub enum KafkaRequest {
    ApiVersions(ApiVersionsRequest),
    /// An `ApiVersions` of a version newer than Rill's: answer v0 with `UNSUPPORTED_VERSION`.
    ApiVersionsTooNew,
    Metadata(MetadataRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    CreatePartitions(CreatePartitionsRequest),
    DescribeConfigs(DescribeConfigsRequest),
    AlterConfigs(AlterConfigsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    DescribeCluster(DescribeClusterRequest),
    InitProducerId(InitProducerIdRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    ElectLeaders(ElectLeadersRequest),
    ListPartitionReassignments(ListPartitionReassignmentsRequest),
    DeleteRecords(DeleteRecordsRequest),
    DescribeLogDirs(DescribeLogDirsRequest),
    DescribeProducers(DescribeProducersRequest),
}

/// One request taken from the connection.
#[derive(Debug)]
pub struct KafkaIncoming {
    /// Pass back to [`KafkaConnection::respond`] or [`KafkaConnection::complete_silently`].
    pub slot: u64,
    /// The API, version and correlation id the response must carry.
    pub api_key: ApiKey,
    /// The request's version.
    pub api_version: i16,
    /// Echoed in the response header.
    pub correlation_id: i32,
    /// The client's id, if it sent one.
    pub client_id: Option<kafka_protocol::protocol::StrBytes>,
    /// Bytes of the whole frame (for memory accounting).
    pub frame_bytes: usize,
    /// The body.
    pub request: KafkaRequest,
}

/// Why a connection must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    /// The length prefix is negative or larger than allowed.
    #[error("frame length {0} outside 0..={1}")]
    FrameLength(i64, u32),
    /// The API key is not one Rill serves.
    #[error("unsupported API key {0}")]
    UnknownApi(i16),
    /// The version is outside the advertised range.
    #[error("unsupported version {1} of API {0:?}")]
    UnsupportedVersion(ApiKey, i16),
    /// The header or body does not decode.
    #[error("malformed {0}")]
    Malformed(String),
}

/// Decodes one frame's contents (header and body, without the length prefix).
pub fn decode_request(mut frame: Bytes) -> Result<(RequestHeader, ApiKey, KafkaRequest), KafkaError> {
    if frame.len() < 8 {
        return Err(KafkaError::Malformed(format!("request of {} bytes", frame.len())));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| KafkaError::UnknownApi(raw_key))?;
    let (min, max) = version_range(key).ok_or(KafkaError::UnknownApi(raw_key))?;
    if key == ApiKey::ApiVersions && version > max {
        // The header of a newer ApiVersions may not decode with our rules: read what v0 has.
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let mut header = RequestHeader::default();
        header.request_api_key = raw_key;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        return Ok((header, key, KafkaRequest::ApiVersionsTooNew));
    }
    if version < min || version > max {
        return Err(KafkaError::UnsupportedVersion(key, version));
    }
    let header_version = key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| KafkaError::Malformed(format!("{key:?} v{version} header: {e}")))?;
    let body = &mut frame;
    let request = match key {
        ApiKey::ApiVersions => KafkaRequest::ApiVersions(decode_body(body, key, version)?),
        ApiKey::Metadata => KafkaRequest::Metadata(decode_body(body, key, version)?),
        ApiKey::Produce => KafkaRequest::Produce(decode_body(body, key, version)?),
        ApiKey::Fetch => KafkaRequest::Fetch(decode_body(body, key, version)?),
        ApiKey::ListOffsets => KafkaRequest::ListOffsets(decode_body(body, key, version)?),
        ApiKey::CreateTopics => KafkaRequest::CreateTopics(decode_body(body, key, version)?),
        ApiKey::DeleteTopics => KafkaRequest::DeleteTopics(decode_body(body, key, version)?),
        ApiKey::CreatePartitions => KafkaRequest::CreatePartitions(decode_body(body, key, version)?),
        ApiKey::DescribeConfigs => KafkaRequest::DescribeConfigs(decode_body(body, key, version)?),
        ApiKey::AlterConfigs => KafkaRequest::AlterConfigs(decode_body(body, key, version)?),
        ApiKey::IncrementalAlterConfigs => {
            KafkaRequest::IncrementalAlterConfigs(decode_body(body, key, version)?)
        }
        ApiKey::DescribeCluster => KafkaRequest::DescribeCluster(decode_body(body, key, version)?),
        ApiKey::InitProducerId => KafkaRequest::InitProducerId(decode_body(body, key, version)?),
        ApiKey::FindCoordinator => KafkaRequest::FindCoordinator(decode_body(body, key, version)?),
        ApiKey::JoinGroup => KafkaRequest::JoinGroup(decode_body(body, key, version)?),
        ApiKey::SyncGroup => KafkaRequest::SyncGroup(decode_body(body, key, version)?),
        ApiKey::Heartbeat => KafkaRequest::Heartbeat(decode_body(body, key, version)?),
        ApiKey::LeaveGroup => KafkaRequest::LeaveGroup(decode_body(body, key, version)?),
        ApiKey::OffsetCommit => KafkaRequest::OffsetCommit(decode_body(body, key, version)?),
        ApiKey::OffsetFetch => KafkaRequest::OffsetFetch(decode_body(body, key, version)?),
        ApiKey::ListGroups => KafkaRequest::ListGroups(decode_body(body, key, version)?),
        ApiKey::DescribeGroups => KafkaRequest::DescribeGroups(decode_body(body, key, version)?),
        ApiKey::DeleteGroups => KafkaRequest::DeleteGroups(decode_body(body, key, version)?),
        ApiKey::OffsetDelete => KafkaRequest::OffsetDelete(decode_body(body, key, version)?),
        ApiKey::OffsetForLeaderEpoch => KafkaRequest::OffsetForLeaderEpoch(decode_body(body, key, version)?),
        ApiKey::ElectLeaders => KafkaRequest::ElectLeaders(decode_body(body, key, version)?),
        ApiKey::ListPartitionReassignments => {
            KafkaRequest::ListPartitionReassignments(decode_body(body, key, version)?)
        }
        ApiKey::DeleteRecords => KafkaRequest::DeleteRecords(decode_body(body, key, version)?),
        ApiKey::DescribeLogDirs => KafkaRequest::DescribeLogDirs(decode_body(body, key, version)?),
        ApiKey::DescribeProducers => KafkaRequest::DescribeProducers(decode_body(body, key, version)?),
        _ => return Err(KafkaError::UnknownApi(raw_key)),
    };
    Ok((header, key, request))
}

fn decode_body<T: Decodable>(body: &mut Bytes, key: ApiKey, version: i16) -> Result<T, KafkaError> {
    let value = T::decode(body, version)
        .map_err(|e| KafkaError::Malformed(format!("{key:?} v{version} body: {e}")))?;
    // Trailing bytes are ignored, as Kafka's own parser does: librdkafka 2.x sends three extra
    // bytes after a Metadata v12 body that asks for every topic.
    Ok(value)
}

/// Encodes a response frame: length prefix, response header, body.
pub fn encode_response<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, KafkaError> {
    let header_version = key.response_header_version(version);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let fail = |e: String| KafkaError::Malformed(format!("encoding {key:?} v{version}: {e}"));
    let size = header.compute_size(header_version).map_err(|e| fail(e.to_string()))?
        + body.compute_size(version).map_err(|e| fail(e.to_string()))?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).map_err(|e| fail(e.to_string()))?;
    body.encode(&mut out, version).map_err(|e| fail(e.to_string()))?;
    assert_eq!(out.len(), 4 + size, "compute_size agrees with encode");
    Ok(out.freeze())
}

/// Encodes a request frame as a client sends it: length prefix, request header (with
/// `client_id`), body. For Rill's own clients (the load generator) and tests.
pub fn encode_request<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &R,
) -> Result<Bytes, KafkaError> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(kafka_protocol::protocol::StrBytes::from_string(client_id.to_string()));
    let fail = |e: String| KafkaError::Malformed(format!("encoding {key:?} v{version} request: {e}"));
    let header_version = key.request_header_version(version);
    let size = header.compute_size(header_version).map_err(|e| fail(e.to_string()))?
        + body.compute_size(version).map_err(|e| fail(e.to_string()))?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).map_err(|e| fail(e.to_string()))?;
    body.encode(&mut out, version).map_err(|e| fail(e.to_string()))?;
    Ok(out.freeze())
}

/// Limits of one Kafka connection.
#[derive(Clone, Copy, Debug)]
pub struct KafkaLimits {
    /// Largest request frame accepted.
    pub frame_bytes_max: u32,
    /// Unanswered requests before reading pauses.
    pub max_inflight: usize,
}

/// Protocol state of one Kafka connection.
#[derive(Debug)]
pub struct KafkaConnection {
    limits: KafkaLimits,
    buffer: BytesMut,
    /// Slot number of `pending[0]`.
    first_slot: u64,
    next_slot: u64,
    /// Responses by slot from `first_slot`: `None` until given; a silent completion is an
    /// empty frame, dropped when its turn comes.
    pending: VecDeque<Option<Bytes>>,
    outgoing: VecDeque<Bytes>,
    outgoing_bytes: usize,
    closing: Option<KafkaError>,
}

impl KafkaConnection {
    /// A new connection.
    pub fn new(limits: KafkaLimits) -> KafkaConnection {
        assert!(limits.max_inflight > 0, "a connection must allow one request");
        KafkaConnection {
            limits,
            buffer: BytesMut::new(),
            first_slot: 0,
            next_slot: 0,
            pending: VecDeque::new(),
            outgoing: VecDeque::new(),
            outgoing_bytes: 0,
            closing: None,
        }
    }

    /// Whether the driver should read more bytes now.
    pub fn wants_read(&self) -> bool {
        self.closing.is_none() && self.pending.len() < self.limits.max_inflight
    }

    /// Feeds received bytes.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next request, or `Ok(None)` when more bytes are needed or the in-flight limit is
    /// reached. An error is returned (again on every call) once the stream is unusable; the
    /// driver flushes `poll_transmit` and closes.
    pub fn poll_request(&mut self) -> Result<Option<KafkaIncoming>, KafkaError> {
        if let Some(e) = &self.closing {
            return Err(e.clone());
        }
        if self.pending.len() >= self.limits.max_inflight || self.buffer.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([self.buffer[0], self.buffer[1], self.buffer[2], self.buffer[3]]);
        if len < 0 || len as u32 > self.limits.frame_bytes_max {
            return Err(self.close(KafkaError::FrameLength(len as i64, self.limits.frame_bytes_max)));
        }
        let len = len as usize;
        if self.buffer.len() < 4 + len {
            // Reserve the rest of the frame at once rather than growing step by step.
            self.buffer.reserve(4 + len - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(4);
        let frame = self.buffer.split_to(len).freeze();
        match decode_request(frame) {
            Ok((header, api_key, request)) => {
                let slot = self.next_slot;
                self.next_slot += 1;
                self.pending.push_back(None);
                Ok(Some(KafkaIncoming {
                    slot,
                    api_key,
                    api_version: header.request_api_version,
                    correlation_id: header.correlation_id,
                    client_id: header.client_id,
                    frame_bytes: 4 + len,
                    request,
                }))
            }
            Err(e) => Err(self.close(e)),
        }
    }

    fn close(&mut self, e: KafkaError) -> KafkaError {
        self.closing = Some(e.clone());
        e
    }

    /// Queues the encoded response frame of the request in `slot`.
    pub fn respond(&mut self, slot: u64, frame: Bytes) {
        self.fill(slot, frame);
    }

    /// Ends the request in `slot` without a response (produce with `acks=0`).
    pub fn complete_silently(&mut self, slot: u64) {
        self.fill(slot, Bytes::new());
    }

    fn fill(&mut self, slot: u64, frame: Bytes) {
        assert!(slot >= self.first_slot && slot < self.next_slot, "slot {slot} is not in flight");
        let at = (slot - self.first_slot) as usize;
        assert!(self.pending[at].is_none(), "slot {slot} answered twice");
        self.pending[at] = Some(frame);
        while let Some(Some(_)) = self.pending.front() {
            let frame = self.pending.pop_front().flatten().expect("checked");
            self.first_slot += 1;
            if !frame.is_empty() {
                self.outgoing_bytes += frame.len();
                self.outgoing.push_back(frame);
            }
        }
    }

    /// The next bytes to write, in order; `None` when nothing is ready.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let frame = self.outgoing.pop_front()?;
        self.outgoing_bytes -= frame.len();
        Some(frame)
    }

    /// Bytes received and not yet decoded.
    pub fn partial_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Bytes of responses ready and not yet taken, plus those waiting for an earlier slot.
    pub fn outgoing_bytes(&self) -> usize {
        self.outgoing_bytes + self.pending.iter().flatten().map(Bytes::len).sum::<usize>()
    }

    /// Requests taken and not yet answered.
    pub fn inflight(&self) -> usize {
        self.pending.iter().filter(|p| p.is_none()).count()
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{ApiVersionsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    const LIMITS: KafkaLimits = KafkaLimits { frame_bytes_max: 1 << 20, max_inflight: 4 };

    /// A request frame as a client encodes it.
    fn frame<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Vec<u8> {
        encode_request(key, version, correlation_id, "test", body).unwrap().to_vec()
    }

    fn metadata(topics: &[&str]) -> MetadataRequest {
        let mut r = MetadataRequest::default();
        r.topics = Some(
            topics
                .iter()
                .map(|t| {
                    let mut topic = MetadataRequestTopic::default();
                    topic.name = Some(TopicName(StrBytes::from_string(t.to_string())));
                    topic
                })
                .collect(),
        );
        r
    }

    #[test]
    fn requests_decode_across_split_reads_and_responses_leave_in_request_order() {
        let mut conn = KafkaConnection::new(LIMITS);
        let mut bytes = frame(ApiKey::Metadata, 12, 7, &metadata(&["a", "b"]));
        bytes.extend(frame(ApiKey::ApiVersions, 3, 8, &ApiVersionsRequest::default()));
        for chunk in bytes.chunks(5) {
            conn.receive(chunk);
        }
        let first = conn.poll_request().unwrap().unwrap();
        let second = conn.poll_request().unwrap().unwrap();
        assert!(conn.poll_request().unwrap().is_none());
        assert_eq!((first.correlation_id, first.api_key), (7, ApiKey::Metadata));
        assert_eq!(first.client_id.as_ref().map(|c| c.as_str()), Some("test"));
        let KafkaRequest::Metadata(m) = &first.request else { panic!("{:?}", first.request) };
        assert_eq!(m.topics.as_ref().unwrap().len(), 2);
        assert_eq!((second.correlation_id, second.api_key), (8, ApiKey::ApiVersions));
        // The second answer is ready first but waits for the first.
        conn.respond(second.slot, Bytes::from_static(b"second"));
        assert!(conn.poll_transmit().is_none());
        assert_eq!(conn.inflight(), 1);
        conn.respond(first.slot, Bytes::from_static(b"first"));
        assert_eq!(conn.poll_transmit().unwrap(), "first");
        assert_eq!(conn.poll_transmit().unwrap(), "second");
        assert_eq!(conn.outgoing_bytes(), 0);
    }

    #[test]
    fn silent_completions_keep_the_order_and_the_in_flight_limit_holds() {
        let mut conn = KafkaConnection::new(LIMITS);
        for id in 0..6 {
            conn.receive(&frame(ApiKey::ApiVersions, 3, id, &ApiVersionsRequest::default()));
        }
        let slots: Vec<u64> = (0..4).map(|_| conn.poll_request().unwrap().unwrap().slot).collect();
        assert!(!conn.wants_read());
        assert!(conn.poll_request().unwrap().is_none(), "in-flight limit");
        conn.complete_silently(slots[0]);
        conn.respond(slots[2], Bytes::from_static(b"2"));
        conn.respond(slots[1], Bytes::from_static(b"1"));
        assert_eq!(conn.poll_transmit().unwrap(), "1");
        assert_eq!(conn.poll_transmit().unwrap(), "2");
        assert!(conn.poll_transmit().is_none());
        assert!(conn.poll_request().unwrap().is_some(), "room again");
    }

    #[test]
    fn bad_lengths_unknown_apis_and_versions_close_the_connection() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            ((-5i32).to_be_bytes().to_vec(), "frame length"),
            (((1 << 20) + 1i32).to_be_bytes().to_vec(), "frame length"),
            ([&8i32.to_be_bytes()[..], &[0x03, 0xE7, 0, 0, 0, 0, 0, 1]].concat(), "unsupported API key"),
            (frame(ApiKey::Metadata, 13, 1, &MetadataRequest::default()), "unsupported version"),
            (frame(ApiKey::Produce, 13, 1, &ProduceRequest::default()), "unsupported version"),
            ([&3i32.to_be_bytes()[..], &[0, 3, 0]].concat(), "malformed"),
            // An EndTxn: a real API that Rill does not serve.
            ([&8i32.to_be_bytes()[..], &[0, 26, 0, 1, 0, 0, 0, 1]].concat(), "unsupported API key"),
        ];
        for (bytes, expected) in cases {
            let mut conn = KafkaConnection::new(LIMITS);
            conn.receive(&bytes);
            let e = conn.poll_request().unwrap_err();
            assert!(e.to_string().contains(expected), "{e} for {bytes:?}");
            assert!(!conn.wants_read());
            assert!(conn.poll_request().is_err(), "stays closed");
        }
    }

    #[test]
    fn absurd_array_counts_are_refused_without_allocating() {
        // Metadata v1: a topics array (int32 count) claiming two billion entries.
        let mut bytes = frame(ApiKey::Metadata, 1, 1, &metadata(&[]));
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&0x7FFF_FFF0i32.to_be_bytes());
        let mut conn = KafkaConnection::new(LIMITS);
        conn.receive(&bytes);
        assert!(conn.poll_request().unwrap_err().to_string().contains("exceeds"));
        // Metadata v12: a compact array (varint count) claiming the same.
        let mut bytes = frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
        let tail = bytes.split_off(bytes.len() - 4); // null topics, two bools, tags
        bytes.extend([0xF1, 0xFF, 0xFF, 0xFF, 0x07]);
        bytes.extend(&tail[1..]);
        let len = bytes.len() as i32 - 4;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        let mut conn = KafkaConnection::new(LIMITS);
        conn.receive(&bytes);
        assert!(conn.poll_request().unwrap_err().to_string().contains("exceeds"));
    }

    #[test]
    fn a_newer_api_versions_is_answered_not_closed() {
        let mut conn = KafkaConnection::new(LIMITS);
        conn.receive(&frame(ApiKey::ApiVersions, 3, 42, &ApiVersionsRequest::default()));
        let mut bytes = conn.buffer.split().to_vec();
        bytes[6..8].copy_from_slice(&9i16.to_be_bytes()); // version 9
        conn.receive(&bytes);
        let incoming = conn.poll_request().unwrap().unwrap();
        assert!(matches!(incoming.request, KafkaRequest::ApiVersionsTooNew));
        assert_eq!(incoming.correlation_id, 42);
        let mut response = ApiVersionsResponse::default();
        response.error_code = code::UNSUPPORTED_VERSION;
        let out = encode_response(ApiKey::ApiVersions, 0, 42, &response).unwrap();
        assert_eq!(i32::from_be_bytes(out[..4].try_into().unwrap()) as usize, out.len() - 4);
        assert_eq!(i32::from_be_bytes(out[4..8].try_into().unwrap()), 42);
        assert_eq!(i16::from_be_bytes(out[8..10].try_into().unwrap()), code::UNSUPPORTED_VERSION);
    }

    #[test]
    fn every_advertised_version_is_one_the_codec_has() {
        for &(key, min, max) in supported_versions() {
            let range = key.valid_versions();
            assert!(range.min <= min && max <= range.max, "{key:?} {min}..={max} vs {range}");
        }
    }
}

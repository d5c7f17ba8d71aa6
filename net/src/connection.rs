//! The server side of one native-protocol connection, sans-I/O.
//!
//! The driver (a glommio task owning the socket) feeds received bytes in, takes decoded
//! requests out, hands responses back, and writes whatever `poll_transmit` yields. Many requests
//! may be in flight; responses may be given in any order and are matched by request id. When
//! `max_inflight` requests are unanswered, `wants_read` turns false: the driver stops reading
//! and TCP pushes back on the client.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

use crate::frame::{FrameDecoder, FrameError, encode_header};
use crate::message::{self, ERROR_KIND, ErrorCode, Kind, RESPONSE_BIT, RequestBody, ResponseBody};

/// What the driver gets out of the connection.
#[derive(Debug)]
pub enum Incoming {
    /// A decoded request; answer it with [`ServerConnection::respond`] (unless it is a produce
    /// with `Acks::None`, which is answered by [`ServerConnection::complete_silently`]).
    Request {
        /// Pairs the response with the request.
        request_id: u64,
        /// The request.
        body: RequestBody,
        /// The data section its record ranges point into.
        data: Bytes,
    },
}

/// Limits of one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Largest frame payload accepted.
    pub frame_bytes_max: u32,
    /// Unanswered requests before reading pauses.
    pub max_inflight: usize,
}

/// Protocol state of one connection.
#[derive(Debug)]
pub struct ServerConnection {
    decoder: FrameDecoder,
    limits: ConnectionLimits,
    inflight: HashSet<u64>,
    outgoing: VecDeque<Bytes>,
    closing: Option<FrameError>,
}

impl ServerConnection {
    /// A new connection.
    pub fn new(limits: ConnectionLimits) -> ServerConnection {
        assert!(limits.max_inflight > 0, "a connection must allow one request");
        ServerConnection {
            decoder: FrameDecoder::new(limits.frame_bytes_max),
            limits,
            inflight: HashSet::new(),
            outgoing: VecDeque::new(),
            closing: None,
        }
    }

    /// Whether the driver should read more bytes now.
    pub fn wants_read(&self) -> bool {
        self.closing.is_none() && self.inflight.len() < self.limits.max_inflight
    }

    /// Feeds received bytes.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.decoder.feed(bytes);
    }

    /// The next request, or `Ok(None)` when more bytes are needed or the in-flight limit is
    /// reached. Requests that are well framed but malformed, of unknown kind, or that reuse a
    /// request id in flight are answered here with an error response and skipped. A framing
    /// error is returned once; the driver flushes `poll_transmit` and closes.
    pub fn poll_request(&mut self) -> Result<Option<Incoming>, FrameError> {
        loop {
            if let Some(e) = &self.closing {
                return Err(e.clone());
            }
            if self.inflight.len() >= self.limits.max_inflight {
                return Ok(None);
            }
            let frame = match self.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.closing = Some(e.clone());
                    return Err(e);
                }
            };
            if Kind::from_u16(frame.kind).is_none() {
                self.reject(
                    frame.request_id,
                    ERROR_KIND,
                    ErrorCode::Unsupported,
                    format!("unknown request kind {}", frame.kind),
                );
                continue;
            }
            if self.inflight.contains(&frame.request_id) {
                let message = format!("request id {} is already in flight", frame.request_id);
                self.reject(frame.request_id, ERROR_KIND, ErrorCode::InvalidRequest, message);
                continue;
            }
            match message::decode_request(frame.kind, &frame.payload) {
                Ok((body, data)) => {
                    self.inflight.insert(frame.request_id);
                    return Ok(Some(Incoming::Request { request_id: frame.request_id, body, data }));
                }
                Err(e) => {
                    self.reject(
                        frame.request_id,
                        frame.kind | RESPONSE_BIT,
                        ErrorCode::InvalidRequest,
                        e.to_string(),
                    );
                }
            }
        }
    }

    fn reject(&mut self, request_id: u64, kind: u16, error: ErrorCode, message: String) {
        let body = ResponseBody::Status { error, message };
        self.queue(kind, request_id, &body, &[]);
    }

    /// Queues the response to an in-flight request. `data` holds the record bytes its envelope
    /// points into (fetch), sent without copying.
    pub fn respond(&mut self, request_id: u64, kind: Kind, body: &ResponseBody, data: &[Bytes]) {
        assert!(
            self.inflight.remove(&request_id),
            "response to request {request_id}, which is not in flight"
        );
        self.queue(kind as u16 | RESPONSE_BIT, request_id, body, data);
    }

    /// Ends an in-flight request that gets no response (produce with `Acks::None`).
    pub fn complete_silently(&mut self, request_id: u64) {
        assert!(self.inflight.remove(&request_id), "request {request_id} is not in flight");
    }

    fn queue(&mut self, kind: u16, request_id: u64, body: &ResponseBody, data: &[Bytes]) {
        let chunks = message::encode_payload(body, data);
        let slices: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
        let header = encode_header(kind, request_id, &slices);
        self.outgoing.push_back(Bytes::copy_from_slice(&header));
        self.outgoing.extend(chunks);
    }

    /// The next bytes to write, in order; `None` when nothing is queued.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.outgoing.pop_front()
    }

    /// Bytes of a request received in part and not yet decoded.
    pub fn partial_bytes(&self) -> usize {
        self.decoder.buffered()
    }

    /// Bytes of responses queued and not yet taken by `poll_transmit`.
    pub fn outgoing_bytes(&self) -> usize {
        self.outgoing.iter().map(Bytes::len).sum()
    }

    /// Requests decoded and not yet answered.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;
    use crate::message::{Acks, ProducePart, decode_response};

    fn limits() -> ConnectionLimits {
        ConnectionLimits { frame_bytes_max: 1 << 20, max_inflight: 2 }
    }

    fn request(id: u64, body: &RequestBody, data: &[Bytes]) -> Bytes {
        let payload: Bytes = message::encode_payload(body, data).concat().into();
        encode_frame(body.kind() as u16, id, &payload)
    }

    /// Collects the transmitted bytes and decodes them as response frames.
    fn responses(conn: &mut ServerConnection) -> Vec<(u16, u64, ResponseBody, Bytes)> {
        let mut wire = Vec::new();
        while let Some(chunk) = conn.poll_transmit() {
            wire.extend_from_slice(&chunk);
        }
        let mut decoder = FrameDecoder::new(1 << 20);
        decoder.feed(&wire);
        let mut out = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            let (body, data) = decode_response(&frame.payload).unwrap();
            out.push((frame.kind, frame.request_id, body, data));
        }
        out
    }

    #[test]
    fn pipelined_requests_answered_out_of_order_with_back_pressure() {
        let mut conn = ServerConnection::new(limits());
        for id in 1..=3 {
            conn.receive(&request(id, &RequestBody::ListTopics, &[]));
        }
        let mut ids = Vec::new();
        while let Some(Incoming::Request { request_id, .. }) = conn.poll_request().unwrap() {
            ids.push(request_id);
        }
        assert_eq!(ids, [1, 2], "the in-flight limit holds the third request back");
        assert!(!conn.wants_read());
        conn.respond(2, Kind::ListTopics, &ResponseBody::Topics { names: vec!["b".into()] }, &[]);
        assert!(conn.wants_read());
        let Some(Incoming::Request { request_id: 3, .. }) = conn.poll_request().unwrap() else { panic!() };
        conn.respond(1, Kind::ListTopics, &ResponseBody::Topics { names: vec!["a".into()] }, &[]);
        conn.respond(3, Kind::ListTopics, &ResponseBody::Topics { names: vec![] }, &[]);
        let got: Vec<u64> = responses(&mut conn).iter().map(|r| r.1).collect();
        assert_eq!(got, [2, 1, 3]);
        assert_eq!(conn.inflight(), 0);
    }

    #[test]
    fn bad_requests_get_error_replies_and_the_connection_goes_on() {
        let mut conn = ServerConnection::new(limits());
        conn.receive(&encode_frame(999, 7, b"whatever"));
        conn.receive(&encode_frame(Kind::Produce as u16, 8, b"\x02\x00\x00\x00xx"));
        let lying = RequestBody::Produce {
            acks: Acks::Leader,
            timeout_ms: 1,
            parts: vec![ProducePart { topic: "t".into(), partition: 0, records_at: 0, records_len: 99 }],
        };
        conn.receive(&request(9, &lying, &[]));
        conn.receive(&request(10, &RequestBody::ListTopics, &[]));
        let Some(Incoming::Request { request_id: 10, .. }) = conn.poll_request().unwrap() else { panic!() };
        let replies = responses(&mut conn);
        let codes: Vec<(u64, ErrorCode)> = replies
            .iter()
            .map(|(_, id, body, _)| match body {
                ResponseBody::Status { error, .. } => (*id, *error),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            [(7, ErrorCode::Unsupported), (8, ErrorCode::InvalidRequest), (9, ErrorCode::InvalidRequest)]
        );
        // Garbage framing ends the connection after what was already queued.
        conn.receive(b"GET / HTTP/1.1\r\n\r\n");
        assert!(conn.poll_request().is_err());
        assert!(!conn.wants_read());
    }

    #[test]
    fn fetch_data_is_sent_without_copying() {
        let mut conn = ServerConnection::new(limits());
        let body = RequestBody::Fetch { max_wait_ms: 0, min_bytes: 0, max_bytes: 100, parts: vec![] };
        conn.receive(&request(1, &body, &[]));
        conn.poll_request().unwrap().unwrap();
        let batch = Bytes::from(vec![3u8; 64]);
        let reply = ResponseBody::Fetched { parts: vec![] };
        conn.respond(1, Kind::Fetch, &reply, std::slice::from_ref(&batch));
        let chunks: Vec<Bytes> = std::iter::from_fn(|| conn.poll_transmit()).collect();
        assert!(chunks.iter().any(|c| c.as_ptr() == batch.as_ptr()), "the batch goes out as its own chunk");
    }
}

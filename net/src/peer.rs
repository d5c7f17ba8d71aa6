//! Frames between cluster nodes, on their long-lived QUIC streams.
//!
//! A frame is `archive_len: u32 LE | payload_len: u32 LE | rkyv archive of a PeerFrame |
//! payload`. The archive is the envelope; the payload carries bulk bytes (a Raft message's
//! entries, which in the partition groups are record batches) as they are, cut into the parts
//! the envelope declares, so they are never re-encoded: the sender hands them to QUIC as the
//! `Bytes` it holds, and the receiver slices them out of the stream's buffer.
//!
//! [`PeerReader`] cuts a stream's bytes into frames, refusing lengths above its maximum before
//! buffering anything for them, an archive that fails rkyv's validation, and declared parts
//! that do not add up to the payload (a peer is authenticated by mutual TLS, but its bytes are
//! still checked).

use bytes::{Buf, Bytes, BytesMut};
use rkyv::rancor;

/// Bytes before each frame's archive: the archive's length and the payload's.
pub const PEER_FRAME_HEADER_BYTES: usize = 8;

/// What nodes say to each other.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PeerFrame {
    /// The first frame on a stream: who is speaking (checked against the certificate).
    Hello {
        /// The sender's node id.
        node: u32,
    },
    /// A Raft message of group `group` (0: metadata), as `raft` encodes it (protobuf), without
    /// its bulk data: the entries' data (and a snapshot's) ride in the payload, one part each.
    Raft {
        /// The Raft group.
        group: u64,
        /// The encoded message, its entries' data left empty.
        message: Vec<u8>,
        /// The length of each payload part, in the order of the message's entries (then the
        /// snapshot's data, if the message carries one).
        parts: Vec<u32>,
    },
    /// An admin request forwarded to the controller (JSON).
    Admin {
        /// Matches the reply to the request.
        id: u64,
        /// The encoded request.
        request: Vec<u8>,
    },
    /// A member of partition group `group` asks another for its log from `offset` up to
    /// `until` (to fill the gap a snapshot left, see `rill_broker::replica`).
    FetchLog {
        /// The partition group.
        group: u64,
        /// The asking member's Raft id.
        from: u64,
        /// The asked member's Raft id.
        to: u64,
        /// The first offset wanted.
        offset: u64,
        /// The snapshot's end offset.
        until: u64,
    },
    /// The answer to [`PeerFrame::FetchLog`]: stored batches from `offset`, their bytes in the
    /// payload, one part each.
    LogChunk {
        /// The partition group.
        group: u64,
        /// The answering member's Raft id.
        from: u64,
        /// The asking member's Raft id.
        to: u64,
        /// The offset asked for.
        offset: u64,
        /// Each batch's header fields, in order.
        batches: Vec<ChunkBatch>,
        /// The length of each batch's bytes.
        parts: Vec<u32>,
    },
    /// A partition group's idle leader tells a follower that it stops heartbeating: the
    /// follower stops its election timer too, until any message of the group, or the loss of
    /// the leader's node, wakes it.
    Hibernate {
        /// The partition group.
        group: u64,
        /// The leader's Raft id.
        from: u64,
        /// The follower's Raft id.
        to: u64,
        /// The leader's term.
        term: u64,
    },
    /// The controller's answer to [`PeerFrame::Admin`].
    AdminReply {
        /// The request's id.
        id: u64,
        /// The outcome (`ErrorCode::None`: done).
        code: crate::message::ErrorCode,
        /// Why it failed.
        message: String,
    },
}

/// A stored batch's header fields in a [`PeerFrame::LogChunk`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkBatch {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offsets the batch takes.
    pub record_count: u32,
    /// First record timestamp.
    pub first_timestamp_ms: i64,
    /// Largest record timestamp.
    pub max_timestamp_ms: i64,
    /// The leader epoch (Raft term) it was written in.
    pub leader_epoch: i32,
    /// Its Raft index.
    pub raft_index: u64,
}

/// Why a stream's bytes are not frames; the stream (and its connection) should be closed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerFrameError {
    /// A frame claims more bytes than the reader accepts.
    #[error("peer frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The claimed length.
        len: u64,
        /// The maximum.
        max: usize,
    },
    /// The archive fails validation.
    #[error("invalid peer frame: {0}")]
    Invalid(String),
    /// The parts the envelope declares do not add up to the payload.
    #[error("peer frame declares {declared} payload bytes in its parts but carries {carried}")]
    Parts {
        /// The sum of the declared parts.
        declared: u64,
        /// The payload's length.
        carried: usize,
    },
}

impl PeerFrame {
    /// The payload part lengths this frame declares.
    pub fn parts(&self) -> &[u32] {
        match self {
            PeerFrame::Raft { parts, .. } | PeerFrame::LogChunk { parts, .. } => parts,
            _ => &[],
        }
    }

    /// The frame without payload (for frames that declare no parts).
    pub fn encode(&self) -> Vec<Bytes> {
        self.encode_with(Vec::new())
    }

    /// The frame as chunks to write in order: the header and envelope, then `parts`
    /// untouched. The parts must be the ones the envelope declares.
    pub fn encode_with(&self, parts: Vec<Bytes>) -> Vec<Bytes> {
        let declared = self.parts();
        assert!(
            declared.len() == parts.len() && declared.iter().zip(&parts).all(|(d, p)| *d as usize == p.len()),
            "a peer frame's parts are the ones its envelope declares"
        );
        let archive = rkyv::to_bytes::<rancor::Error>(self).expect("peer frames archive");
        let payload: usize = parts.iter().map(Bytes::len).sum();
        let mut head = Vec::with_capacity(PEER_FRAME_HEADER_BYTES + archive.len());
        head.extend_from_slice(&(archive.len() as u32).to_le_bytes());
        head.extend_from_slice(
            &u32::try_from(payload).expect("a peer frame's payload fits u32").to_le_bytes(),
        );
        head.extend_from_slice(&archive);
        let mut out = Vec::with_capacity(1 + parts.len());
        out.push(Bytes::from(head));
        out.extend(parts.into_iter().filter(|p| !p.is_empty()));
        out
    }
}

/// A frame as received: its envelope and its payload cut into the declared parts.
#[derive(Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The envelope.
    pub frame: PeerFrame,
    /// The payload parts, in the order the envelope declares them.
    pub parts: Vec<Bytes>,
}

/// Cuts one stream's bytes into frames.
#[derive(Debug)]
pub struct PeerReader {
    buffer: BytesMut,
    max: usize,
}

impl PeerReader {
    /// A reader accepting frames of at most `max` bytes (envelope and payload together).
    pub fn new(max: usize) -> PeerReader {
        PeerReader { buffer: BytesMut::new(), max }
    }

    /// Takes bytes from the stream; returns the frames they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Incoming>, PeerFrameError> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while self.buffer.len() >= PEER_FRAME_HEADER_BYTES {
            let archive_len = u32::from_le_bytes(self.buffer[..4].try_into().expect("4 bytes")) as usize;
            let payload_len = u32::from_le_bytes(self.buffer[4..8].try_into().expect("4 bytes")) as usize;
            let len = archive_len as u64 + payload_len as u64;
            if len > self.max as u64 {
                return Err(PeerFrameError::TooLarge { len, max: self.max });
            }
            if self.buffer.len() < PEER_FRAME_HEADER_BYTES + archive_len + payload_len {
                break;
            }
            self.buffer.advance(PEER_FRAME_HEADER_BYTES);
            let archive = self.buffer.split_to(archive_len);
            let frame = rkyv::from_bytes::<PeerFrame, rancor::Error>(&archive)
                .map_err(|e| PeerFrameError::Invalid(e.to_string()))?;
            let declared: u64 = frame.parts().iter().map(|p| u64::from(*p)).sum();
            if declared != payload_len as u64 {
                return Err(PeerFrameError::Parts { declared, carried: payload_len });
            }
            let mut payload = self.buffer.split_to(payload_len).freeze();
            let parts = frame.parts().iter().map(|p| payload.split_to(*p as usize)).collect();
            frames.push(Incoming { frame, parts });
        }
        Ok(frames)
    }

    /// Bytes held for an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raft(group: u64, parts: &[&'static [u8]]) -> (PeerFrame, Vec<Bytes>) {
        let lens = parts.iter().map(|p| p.len() as u32).collect();
        (
            PeerFrame::Raft { group, message: vec![1, 2, 3], parts: lens },
            parts.iter().map(|p| Bytes::from_static(p)).collect(),
        )
    }

    #[test]
    fn frames_round_trip_in_any_cut_with_their_payload_parts() {
        let frames = [
            (PeerFrame::Hello { node: 3 }, vec![]),
            raft(0, &[]),
            raft(9, &[b"batch one", b"", b"batch three"]),
            (PeerFrame::FetchLog { group: 9, from: 2, to: 3, offset: 40, until: 90 }, vec![]),
            (PeerFrame::Hibernate { group: 9, from: 2, to: 3, term: 4 }, vec![]),
            (
                PeerFrame::LogChunk {
                    group: 9,
                    from: 3,
                    to: 2,
                    offset: 40,
                    batches: vec![ChunkBatch {
                        base_offset: 40,
                        record_count: 2,
                        first_timestamp_ms: 5,
                        max_timestamp_ms: 6,
                        leader_epoch: 3,
                        raft_index: 17,
                    }],
                    parts: vec![5],
                },
                vec![Bytes::from_static(b"bytes")],
            ),
            (PeerFrame::Admin { id: 7, request: b"{}".to_vec() }, vec![]),
            (
                PeerFrame::AdminReply {
                    id: 7,
                    code: crate::message::ErrorCode::TopicExists,
                    message: "exists".into(),
                },
                vec![],
            ),
        ];
        let bytes: Vec<u8> =
            frames.iter().flat_map(|(f, p)| f.encode_with(p.clone())).flat_map(|c| c.to_vec()).collect();
        for cut in [1, 3, 7, 8, 13, bytes.len()] {
            let mut reader = PeerReader::new(1 << 20);
            let mut got = Vec::new();
            for piece in bytes.chunks(cut) {
                got.extend(reader.push(piece).unwrap());
            }
            let want: Vec<Incoming> = frames
                .iter()
                .map(|(frame, parts)| Incoming { frame: frame.clone(), parts: parts.clone() })
                .collect();
            assert_eq!(got, want, "pieces of {cut}");
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn the_payload_is_written_as_the_bytes_given() {
        let batch = Bytes::from(vec![7u8; 4096]);
        let (frame, _) = raft(1, &[]);
        let PeerFrame::Raft { group, message, .. } = frame else { unreachable!() };
        let frame = PeerFrame::Raft { group, message, parts: vec![4096] };
        let chunks = frame.encode_with(vec![batch.clone()]);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].as_ptr(), batch.as_ptr(), "the batch is not copied into the frame");
    }

    #[test]
    #[should_panic(expected = "parts are the ones its envelope declares")]
    fn undeclared_parts_are_a_bug_of_the_sender() {
        let (frame, _) = raft(1, &[b"abc"]);
        frame.encode_with(vec![Bytes::from_static(b"abcd")]);
    }

    fn header(archive: usize, payload: usize) -> Vec<u8> {
        let mut out = (archive as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&(payload as u32).to_le_bytes());
        out
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_buffered_for_it() {
        let mut reader = PeerReader::new(16);
        assert_eq!(
            reader.push(&header(u32::MAX as usize, u32::MAX as usize)),
            Err(PeerFrameError::TooLarge { len: 2 * u32::MAX as u64, max: 16 })
        );
        let mut reader = PeerReader::new(16);
        assert!(matches!(reader.push(&header(8, 9)), Err(PeerFrameError::TooLarge { len: 17, .. })));

        let mut reader = PeerReader::new(1 << 20);
        let mut garbage = header(8, 0);
        garbage.extend_from_slice(&[0xff; 8]);
        assert!(matches!(reader.push(&garbage), Err(PeerFrameError::Invalid(_))));

        // An envelope whose parts claim more (or less) than the payload carries.
        for (declared, carried) in [(10u32, 4usize), (2, 4)] {
            let frame = PeerFrame::Raft { group: 0, message: vec![], parts: vec![declared] };
            let archive = rkyv::to_bytes::<rancor::Error>(&frame).unwrap();
            let mut bytes = header(archive.len(), carried);
            bytes.extend_from_slice(&archive);
            bytes.extend(std::iter::repeat_n(0u8, carried));
            let mut reader = PeerReader::new(1 << 20);
            assert_eq!(
                reader.push(&bytes),
                Err(PeerFrameError::Parts { declared: declared.into(), carried })
            );
        }
        // Parts on a frame that declares none are the same mismatch.
        let archive = rkyv::to_bytes::<rancor::Error>(&PeerFrame::Hello { node: 1 }).unwrap();
        let mut bytes = header(archive.len(), 3);
        bytes.extend_from_slice(&archive);
        bytes.extend_from_slice(b"xyz");
        let mut reader = PeerReader::new(1 << 20);
        assert_eq!(reader.push(&bytes), Err(PeerFrameError::Parts { declared: 0, carried: 3 }));
    }
}

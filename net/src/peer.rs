//! Frames between cluster nodes, on their long-lived QUIC streams.
//!
//! A frame is `len: u32 LE | rkyv archive of a PeerFrame`. [`PeerReader`] cuts a stream's bytes
//! into frames, refusing a length above its maximum before buffering anything for it, and an
//! archive that fails rkyv's validation (a peer is authenticated by mutual TLS, but its bytes
//! are still checked).

use bytes::{Buf, BytesMut};
use rkyv::rancor;

/// Bytes before each frame's archive.
pub const PEER_FRAME_HEADER_BYTES: usize = 4;

/// What nodes say to each other.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PeerFrame {
    /// The first frame on a stream: who is speaking (checked against the certificate).
    Hello {
        /// The sender's node id.
        node: u32,
    },
    /// A Raft message of group `group` (0: metadata), as `raft` encodes it (protobuf).
    Raft {
        /// The Raft group.
        group: u64,
        /// The encoded message.
        message: Vec<u8>,
    },
    /// An admin request forwarded to the controller (JSON).
    Admin {
        /// Matches the reply to the request.
        id: u64,
        /// The encoded request.
        request: Vec<u8>,
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

/// Why a stream's bytes are not frames; the stream (and its connection) should be closed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerFrameError {
    /// A frame claims more bytes than the reader accepts.
    #[error("peer frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The claimed length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The archive fails validation.
    #[error("invalid peer frame: {0}")]
    Invalid(String),
}

impl PeerFrame {
    /// The frame with its length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let archive = rkyv::to_bytes::<rancor::Error>(self).expect("peer frames archive");
        let mut out = Vec::with_capacity(PEER_FRAME_HEADER_BYTES + archive.len());
        out.extend_from_slice(&(archive.len() as u32).to_le_bytes());
        out.extend_from_slice(&archive);
        out
    }
}

/// Cuts one stream's bytes into frames.
#[derive(Debug)]
pub struct PeerReader {
    buffer: BytesMut,
    max: usize,
}

impl PeerReader {
    /// A reader accepting frames of at most `max` bytes.
    pub fn new(max: usize) -> PeerReader {
        PeerReader { buffer: BytesMut::new(), max }
    }

    /// Takes bytes from the stream; returns the frames they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<PeerFrame>, PeerFrameError> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while self.buffer.len() >= PEER_FRAME_HEADER_BYTES {
            let len = u32::from_le_bytes(self.buffer[..4].try_into().expect("4 bytes")) as usize;
            if len > self.max {
                return Err(PeerFrameError::TooLarge { len, max: self.max });
            }
            if self.buffer.len() < PEER_FRAME_HEADER_BYTES + len {
                break;
            }
            self.buffer.advance(PEER_FRAME_HEADER_BYTES);
            let body = self.buffer.split_to(len);
            let frame = rkyv::from_bytes::<PeerFrame, rancor::Error>(&body)
                .map_err(|e| PeerFrameError::Invalid(e.to_string()))?;
            frames.push(frame);
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

    #[test]
    fn frames_round_trip_in_any_cut_and_bad_input_is_refused() {
        let frames = vec![
            PeerFrame::Hello { node: 3 },
            PeerFrame::Raft { group: 0, message: vec![1, 2, 3] },
            PeerFrame::Admin { id: 7, request: b"{}".to_vec() },
            PeerFrame::AdminReply {
                id: 7,
                code: crate::message::ErrorCode::TopicExists,
                message: "exists".into(),
            },
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
        for cut in [1, 3, 7, bytes.len()] {
            let mut reader = PeerReader::new(1 << 20);
            let mut got = Vec::new();
            for piece in bytes.chunks(cut) {
                got.extend(reader.push(piece).unwrap());
            }
            assert_eq!(got, frames, "pieces of {cut}");
            assert_eq!(reader.buffered(), 0);
        }
        let mut reader = PeerReader::new(16);
        assert_eq!(
            reader.push(&u32::MAX.to_le_bytes()),
            Err(PeerFrameError::TooLarge { len: u32::MAX as usize, max: 16 })
        );
        let mut reader = PeerReader::new(1 << 20);
        let mut garbage = 8u32.to_le_bytes().to_vec();
        garbage.extend_from_slice(&[0xff; 8]);
        assert!(matches!(reader.push(&garbage), Err(PeerFrameError::Invalid(_))));
    }
}

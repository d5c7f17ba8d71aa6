//! Native-protocol framing: a fixed 32-byte rkyv-archived header, then the payload.
//!
//! The header carries the frame kind, the request id that pairs a response with its request
//! (many requests may be in flight on one connection), the payload length and two checksums:
//! crc32c of the payload and crc32c of the header itself. The decoder is sans-I/O: it is fed
//! bytes and hands out frames whose payloads are `Bytes` slices of its receive buffer.

use bytes::{Buf, Bytes, BytesMut};
use rkyv::rancor;

/// Size of the archived frame header.
pub const FRAME_HEADER_BYTES: usize = 32;

/// "RILN" as a little-endian u32.
const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"RILN");
const FRAME_VERSION: u16 = 1;

#[derive(rkyv::Archive, rkyv::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
struct FrameHeader {
    magic: u32,
    version: u16,
    kind: u16,
    request_id: u64,
    payload_len: u32,
    payload_crc: u32,
    header_crc: u32,
    reserved: u32,
}

const _: () = assert!(std::mem::size_of::<ArchivedFrameHeader>() == FRAME_HEADER_BYTES);
const HEADER_CRC_AT: usize = std::mem::offset_of!(ArchivedFrameHeader, header_crc);

/// A decoded frame: its kind, request id and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is (a request or response kind).
    pub kind: u16,
    /// Pairs a response with its request.
    pub request_id: u64,
    /// The payload, a slice of the receive buffer.
    pub payload: Bytes,
}

/// Why a byte stream is not a valid frame sequence. Every variant ends the connection: after it
/// the stream cannot be resynchronised.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first bytes are not a Rill frame (another protocol, or garbage).
    #[error("not a Rill frame (bad magic {0:#010x})")]
    BadMagic(u32),
    /// A frame version this build does not speak.
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u16),
    /// The header's own checksum failed.
    #[error("frame header checksum mismatch")]
    BadHeaderChecksum,
    /// The payload is larger than this side accepts.
    #[error("frame payload of {len} bytes exceeds the maximum of {max}")]
    Oversize {
        /// Declared length.
        len: u32,
        /// Configured maximum.
        max: u32,
    },
    /// The payload checksum failed.
    #[error("frame payload checksum mismatch (request {request_id})")]
    BadPayloadChecksum {
        /// The frame's request id.
        request_id: u64,
    },
}

/// Encodes the header of a frame whose payload is `payload` (possibly several chunks, sent with
/// one vectored write). Returns the header bytes.
pub fn encode_header(kind: u16, request_id: u64, payload: &[&[u8]]) -> [u8; FRAME_HEADER_BYTES] {
    let len: usize = payload.iter().map(|c| c.len()).sum();
    let len = u32::try_from(len).expect("frame payloads are bounded far below 4 GiB");
    let payload_crc = payload.iter().fold(0u32, |crc, chunk| crc32c::crc32c_append(crc, chunk));
    let header = FrameHeader {
        magic: FRAME_MAGIC,
        version: FRAME_VERSION,
        kind,
        request_id,
        payload_len: len,
        payload_crc,
        header_crc: 0,
        reserved: 0,
    };
    let archived = rkyv::to_bytes::<rancor::Error>(&header).expect("fixed-size header archives");
    let mut out = [0u8; FRAME_HEADER_BYTES];
    out.copy_from_slice(&archived);
    let crc = crc32c::crc32c(&out);
    out[HEADER_CRC_AT..HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Encodes a whole frame into one buffer (tests and small messages).
pub fn encode_frame(kind: u16, request_id: u64, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&encode_header(kind, request_id, &[payload]));
    out.extend_from_slice(payload);
    out.freeze()
}

/// Splits a byte stream into frames. Bounded: it never buffers more than one frame of at most
/// `payload_bytes_max` plus a header.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    payload_bytes_max: u32,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder refusing payloads above `payload_bytes_max`.
    pub fn new(payload_bytes_max: u32) -> FrameDecoder {
        FrameDecoder { buffer: BytesMut::new(), payload_bytes_max, failed: false }
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After an error the decoder
    /// returns that error forever.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.failed {
            return Err(FrameError::BadMagic(0));
        }
        let result = self.decode();
        if result.is_err() {
            self.failed = true;
            self.buffer = BytesMut::new();
        }
        result
    }

    fn decode(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buffer.len() < FRAME_HEADER_BYTES {
            // Reject garbage as soon as the magic is visibly wrong.
            let seen = self.buffer.len().min(4);
            if self.buffer[..seen] != FRAME_MAGIC.to_le_bytes()[..seen] {
                let mut magic = [0u8; 4];
                magic[..seen].copy_from_slice(&self.buffer[..seen]);
                return Err(FrameError::BadMagic(u32::from_le_bytes(magic)));
            }
            return Ok(None);
        }
        let raw: [u8; FRAME_HEADER_BYTES] = self.buffer[..FRAME_HEADER_BYTES].try_into().expect("sized");
        let h =
            rkyv::access::<ArchivedFrameHeader, rancor::Error>(&raw).map_err(|_| FrameError::BadMagic(0))?;
        if h.magic.to_native() != FRAME_MAGIC {
            return Err(FrameError::BadMagic(h.magic.to_native()));
        }
        let mut zeroed = raw;
        zeroed[HEADER_CRC_AT..HEADER_CRC_AT + 4].fill(0);
        if crc32c::crc32c(&zeroed) != h.header_crc.to_native() {
            return Err(FrameError::BadHeaderChecksum);
        }
        if h.version.to_native() != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion(h.version.to_native()));
        }
        let len = h.payload_len.to_native();
        if len > self.payload_bytes_max {
            return Err(FrameError::Oversize { len, max: self.payload_bytes_max });
        }
        if self.buffer.len() < FRAME_HEADER_BYTES + len as usize {
            self.buffer.reserve(FRAME_HEADER_BYTES + len as usize - self.buffer.len());
            return Ok(None);
        }
        let (kind, request_id, crc) =
            (h.kind.to_native(), h.request_id.to_native(), h.payload_crc.to_native());
        self.buffer.advance(FRAME_HEADER_BYTES);
        let payload = self.buffer.split_to(len as usize).freeze();
        if crc32c::crc32c(&payload) != crc {
            return Err(FrameError::BadPayloadChecksum { request_id });
        }
        Ok(Some(Frame { kind, request_id, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_snapshot() {
        const PAYLOAD_CRC_AT: usize = std::mem::offset_of!(ArchivedFrameHeader, payload_crc);
        let header = encode_header(7, 0x0102_0304_0506_0708, &[b"ab", b"c"]);
        let hex: String = header.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&hex[..40], "52494c4e01000700080706050403020103000000");
        let crc = u32::from_le_bytes(header[PAYLOAD_CRC_AT..PAYLOAD_CRC_AT + 4].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(b"abc"));
    }

    #[test]
    fn frames_split_anywhere_decode_whole() {
        let mut stream = Vec::new();
        for i in 0..20u64 {
            stream.extend_from_slice(&encode_frame(i as u16, i, &vec![i as u8; i as usize * 37]));
        }
        for step in [1usize, 3, 31, 32, 33, 1000] {
            let mut decoder = FrameDecoder::new(1 << 20);
            let mut frames = Vec::new();
            for chunk in stream.chunks(step) {
                decoder.feed(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(frames.len(), 20, "step {step}");
            for (i, f) in frames.iter().enumerate() {
                assert_eq!((f.kind, f.request_id, f.payload.len()), (i as u16, i as u64, i * 37));
            }
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn damage_is_detected() {
        let frame = encode_frame(1, 9, b"payload bytes");
        for byte in 0..frame.len() {
            let mut damaged = frame.to_vec();
            damaged[byte] ^= 0x10;
            let mut decoder = FrameDecoder::new(1 << 20);
            decoder.feed(&damaged);
            assert!(decoder.next_frame().is_err(), "flip in byte {byte} not caught");
            assert!(decoder.next_frame().is_err(), "errors are sticky");
        }
        let mut decoder = FrameDecoder::new(4);
        decoder.feed(&frame);
        assert_eq!(decoder.next_frame(), Err(FrameError::Oversize { len: 13, max: 4 }));
        let mut decoder = FrameDecoder::new(1 << 20);
        decoder.feed(b"GET / HTTP/1.1\r\n");
        assert!(matches!(decoder.next_frame(), Err(FrameError::BadMagic(_))));
    }
}

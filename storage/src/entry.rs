//! The stored entry: a fixed 64-byte rkyv-archived header followed by the batch payload.
//!
//! The header is archived with rkyv's `little_endian` and `unaligned` features, so its archived
//! form has one layout on every host, needs no alignment, and is read in place from whatever
//! buffer the disk or the cache hands us. The checksum is crc32c over the header (with its `crc`
//! field zeroed) followed by the payload, so a flipped bit anywhere in the entry is caught.

use rkyv::rancor;

/// Size of the archived header in bytes.
pub const ENTRY_HEADER_BYTES: usize = 64;

/// "RILL" read as a little-endian u32: the first bytes of every entry.
pub(crate) const ENTRY_MAGIC: u32 = u32::from_le_bytes(*b"RILL");
/// Entries of a log that is not replicated: `reserved` is zero.
pub(crate) const ENTRY_VERSION: u16 = 1;
/// Entries of a replicated log: `reserved` holds the entry's Raft index (never zero). A log may
/// hold both: a single node's entries, then the replicated ones after it joined a cluster.
pub(crate) const ENTRY_VERSION_REPLICATED: u16 = 2;

/// The header of one stored batch.
#[derive(rkyv::Archive, rkyv::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    pub magic: u32,
    pub version: u16,
    pub flags: u16,
    pub payload_len: u32,
    pub record_count: u32,
    pub base_offset: u64,
    pub leader_epoch: i32,
    pub crc: u32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub append_time_ms: i64,
    pub reserved: u64,
}

const _: () = assert!(std::mem::size_of::<ArchivedEntryHeader>() == ENTRY_HEADER_BYTES);
const _: () = assert!(std::mem::align_of::<ArchivedEntryHeader>() == 1);
const CRC_FIELD: usize = std::mem::offset_of!(ArchivedEntryHeader, crc);

/// A header decoded from stored bytes, after its structural checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryMeta {
    pub base_offset: u64,
    pub record_count: u32,
    pub payload_len: u32,
    pub leader_epoch: i32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub append_time_ms: i64,
    /// The Raft index of the entry in its partition's replicated log; 0 for an entry of a log
    /// that was not replicated when it was written.
    pub raft_index: u64,
    pub crc: u32,
}

impl EntryMeta {
    /// One past the last offset in the batch.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + self.record_count as u64
    }

    /// Header plus payload.
    pub fn entry_bytes(&self) -> u64 {
        ENTRY_HEADER_BYTES as u64 + self.payload_len as u64
    }
}

/// Encodes the header for `meta` and `payload`, computing the checksum.
#[cfg(test)]
pub(crate) fn encode_header(meta: &EntryMeta, payload: &[u8]) -> [u8; ENTRY_HEADER_BYTES] {
    assert_eq!(meta.payload_len as usize, payload.len());
    encode_header_with(meta, crc32c::crc32c(payload))
}

/// Encodes the header for `meta` and a payload of `meta.payload_len` bytes whose crc32c is
/// `payload_crc`.
pub(crate) fn encode_header_with(meta: &EntryMeta, payload_crc: u32) -> [u8; ENTRY_HEADER_BYTES] {
    assert!(meta.record_count > 0);
    let header = EntryHeader {
        magic: ENTRY_MAGIC,
        version: if meta.raft_index == 0 { ENTRY_VERSION } else { ENTRY_VERSION_REPLICATED },
        flags: 0,
        payload_len: meta.payload_len,
        record_count: meta.record_count,
        base_offset: meta.base_offset,
        leader_epoch: meta.leader_epoch,
        crc: 0,
        first_timestamp_ms: meta.first_timestamp_ms,
        max_timestamp_ms: meta.max_timestamp_ms,
        append_time_ms: meta.append_time_ms,
        reserved: meta.raft_index,
    };
    let archived = rkyv::to_bytes::<rancor::Error>(&header).expect("fixed-size header archives");
    let mut out = [0u8; ENTRY_HEADER_BYTES];
    out.copy_from_slice(&archived);
    let crc = crc32c::crc32c_combine(header_checksum(&out), payload_crc, meta.payload_len as usize);
    out[CRC_FIELD..CRC_FIELD + 4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// crc32c of the header with its crc field taken as zero.
fn header_checksum(header: &[u8; ENTRY_HEADER_BYTES]) -> u32 {
    let crc = crc32c::crc32c(&header[..CRC_FIELD]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &header[CRC_FIELD + 4..])
}

/// crc32c of the header with its crc field taken as zero, then the payload.
fn checksum(header: &[u8; ENTRY_HEADER_BYTES], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(header_checksum(header), payload)
}

/// Why bytes at some position are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryFault {
    /// Fewer than a header's bytes remain.
    ShortHeader,
    /// The header is all zero bytes: the padding after the last entry of a block written by
    /// direct I/O, not damage.
    Zeroed,
    /// Magic, version or a field is wrong: not an entry, or a damaged one.
    BadHeader(&'static str),
    /// The payload runs past the available bytes.
    ShortPayload { needed: u64 },
    /// The checksum does not match.
    BadChecksum { stored: u32, computed: u32 },
}

impl std::fmt::Display for EntryFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryFault::ShortHeader => write!(f, "entry header cut short"),
            EntryFault::Zeroed => write!(f, "zero bytes where an entry header belongs"),
            EntryFault::BadHeader(what) => write!(f, "bad entry header: {what}"),
            EntryFault::ShortPayload { needed } => write!(f, "entry needs {needed} bytes, file ends first"),
            EntryFault::BadChecksum { stored, computed } => {
                write!(f, "crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
        }
    }
}

/// Reads the header at the start of `bytes` in place and checks its structure (not the payload).
pub(crate) fn decode_header(bytes: &[u8]) -> Result<EntryMeta, EntryFault> {
    let Some(raw) = bytes.get(..ENTRY_HEADER_BYTES) else {
        return Err(EntryFault::ShortHeader);
    };
    if raw.iter().all(|&b| b == 0) {
        return Err(EntryFault::Zeroed);
    }
    let h = rkyv::access::<ArchivedEntryHeader, rancor::Error>(raw)
        .map_err(|_| EntryFault::BadHeader("archive validation"))?;
    if h.magic.to_native() != ENTRY_MAGIC {
        return Err(EntryFault::BadHeader("magic"));
    }
    let raft_index = match h.version.to_native() {
        ENTRY_VERSION => 0,
        ENTRY_VERSION_REPLICATED if h.reserved.to_native() == 0 => {
            return Err(EntryFault::BadHeader("replicated entry without a raft index"));
        }
        ENTRY_VERSION_REPLICATED => h.reserved.to_native(),
        _ => return Err(EntryFault::BadHeader("version")),
    };
    if h.record_count.to_native() == 0 {
        return Err(EntryFault::BadHeader("zero record count"));
    }
    if h.max_timestamp_ms.to_native() < h.first_timestamp_ms.to_native() {
        return Err(EntryFault::BadHeader("max timestamp before first"));
    }
    Ok(EntryMeta {
        base_offset: h.base_offset.to_native(),
        record_count: h.record_count.to_native(),
        payload_len: h.payload_len.to_native(),
        leader_epoch: h.leader_epoch.to_native(),
        first_timestamp_ms: h.first_timestamp_ms.to_native(),
        max_timestamp_ms: h.max_timestamp_ms.to_native(),
        append_time_ms: h.append_time_ms.to_native(),
        raft_index,
        crc: h.crc.to_native(),
    })
}

/// Decodes and fully verifies the entry at the start of `bytes`; returns its header.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<EntryMeta, EntryFault> {
    let meta = decode_header(bytes)?;
    let len = meta.entry_bytes();
    if (bytes.len() as u64) < len {
        return Err(EntryFault::ShortPayload { needed: len });
    }
    let header: &[u8; ENTRY_HEADER_BYTES] = bytes[..ENTRY_HEADER_BYTES].try_into().expect("sized");
    let computed = checksum(header, &bytes[ENTRY_HEADER_BYTES..len as usize]);
    if computed != meta.crc {
        return Err(EntryFault::BadChecksum { stored: meta.crc, computed });
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(payload: &[u8]) -> EntryMeta {
        EntryMeta {
            base_offset: 0x0102_0304_0506_0708,
            record_count: 3,
            payload_len: payload.len() as u32,
            leader_epoch: 7,
            first_timestamp_ms: 1_700_000_000_000,
            max_timestamp_ms: 1_700_000_000_005,
            append_time_ms: 1_700_000_000_009,
            raft_index: 0,
            crc: 0,
        }
    }

    #[test]
    fn round_trip() {
        let payload = b"hello, rill";
        let header = encode_header(&meta(payload), payload);
        let mut entry = header.to_vec();
        entry.extend_from_slice(payload);
        let decoded = decode_entry(&entry).unwrap();
        assert_eq!(decoded, EntryMeta { crc: decoded.crc, ..meta(payload) });
    }

    /// The on-disk layout is a format: changing it needs a new version, not a silent edit.
    #[test]
    fn layout_snapshot() {
        let payload = b"p";
        let header = encode_header(&meta(payload), payload);
        let hex: String = header.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "52494c4c",
                "0100",
                "0000",
                "01000000",
                "03000000",
                "0807060504030201",
                "07000000",
                "173588a6",
                "0068e5cf8b010000",
                "0568e5cf8b010000",
                "0968e5cf8b010000",
                "0000000000000000"
            )
        );
    }

    /// A replicated entry is version 2 with its Raft index in the reserved word; everything
    /// else is laid out as in version 1.
    #[test]
    fn replicated_layout_snapshot() {
        let payload = b"p";
        let meta = EntryMeta { raft_index: 0x1122_3344_5566_7788, ..meta(payload) };
        let header = encode_header(&meta, payload);
        let hex: String = header.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&hex[8..12], "0200");
        assert_eq!(&hex[112..], "8877665544332211");
        let mut entry = header.to_vec();
        entry.extend_from_slice(payload);
        let decoded = decode_entry(&entry).unwrap();
        assert_eq!(decoded, EntryMeta { crc: decoded.crc, ..meta });
    }

    #[test]
    fn replicated_entry_without_index_is_refused() {
        let payload = b"p";
        let mut header = encode_header(&meta(payload), payload);
        header[4] = 2;
        assert!(matches!(
            decode_header(&header),
            Err(EntryFault::BadHeader("replicated entry without a raft index"))
        ));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let payload = b"0123456789abcdef";
        let mut entry = encode_header(&meta(payload), payload).to_vec();
        entry.extend_from_slice(payload);
        for bit in 0..entry.len() * 8 {
            let mut damaged = entry.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_entry(&damaged).is_err(), "bit {bit} not caught");
        }
    }

    #[test]
    fn short_input() {
        let payload = b"abc";
        let mut entry = encode_header(&meta(payload), payload).to_vec();
        entry.extend_from_slice(payload);
        assert_eq!(decode_entry(&entry[..10]), Err(EntryFault::ShortHeader));
        assert!(matches!(decode_entry(&entry[..66]), Err(EntryFault::ShortPayload { .. })));
        assert_eq!(decode_header(&[0u8; 64]), Err(EntryFault::Zeroed));
        let mut not_magic = [0u8; 64];
        not_magic[5] = 1;
        assert!(matches!(decode_header(&not_magic), Err(EntryFault::BadHeader("magic"))));
    }
}

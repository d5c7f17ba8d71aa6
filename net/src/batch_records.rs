//! Record-level work on a stored RecordBatch v2, for log compaction: the batch's records
//! (decompressed within a byte budget) with their offsets, timestamps, keys and whether each is
//! a tombstone, and the batch rebuilt with only the records a cleaner keeps.
//!
//! A rebuilt batch keeps its base offset, last offset delta, base timestamp, attributes (the
//! codec among them), producer fields and leader epoch, as Kafka's cleaner keeps them: offsets
//! never move, so retained records are copied byte for byte (their deltas are relative to the
//! unchanged base) and recompressed with the batch's codec; the record count, max timestamp
//! (CreateTime batches: the largest kept), length and CRC are recomputed. Decompression reads at
//! most the budget and fails beyond it, so a batch that inflates without bound costs no memory.

use std::io::Read;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use crate::record_batch::{BATCH_HEADER_BYTES, BatchError, BatchHeader, parse_stored_batch, read_varlong};

const CODEC_NONE: u8 = 0;
const CODEC_GZIP: u8 = 1;
const CODEC_SNAPPY: u8 = 2;
const CODEC_LZ4: u8 = 3;
const CODEC_ZSTD: u8 = 4;
/// Attribute bits: 3 the timestamp type (LogAppendTime), 5 a control batch.
const LOG_APPEND_TIME_BIT: i16 = 1 << 3;
const CONTROL_BIT: i16 = 1 << 5;
/// The smallest encoded record: length, attributes, timestamp and offset deltas, key and value
/// lengths, header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;

/// One record of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView {
    /// The record's offset.
    pub offset: u64,
    /// The record's timestamp (base timestamp plus its delta).
    pub timestamp_ms: i64,
    /// The record's key (compacted topics refuse keyless records).
    pub key: Option<Bytes>,
    /// A null value: a tombstone on a compacted topic.
    pub tombstone: bool,
    /// Where the encoded record (its length varint included) lies in the records bytes.
    raw: Range<usize>,
}

/// A batch's header and records.
#[derive(Debug)]
pub struct BatchRecords {
    /// The batch's header.
    pub header: BatchHeader,
    /// The records section, decompressed.
    records_bytes: Bytes,
    /// The records in order.
    pub records: Vec<RecordView>,
}

/// What is left of a batch once a cleaner chose its records.
#[derive(Debug, PartialEq, Eq)]
pub enum Retained {
    /// Every record is kept: the batch as it was.
    All,
    /// Some are: the rebuilt batch.
    Some(Bytes),
    /// None is.
    Nothing,
}

/// The code of a codec Rill cannot read.
fn unknown_codec(codec: u8) -> BatchError {
    BatchError::BadRecord(match codec {
        5..=7 => "unknown compression codec",
        _ => "unreadable compression codec",
    })
}

/// Decompresses `compressed` (a batch's records section in `codec`) into at most `max` bytes.
fn decompress(codec: u8, compressed: &[u8], max: usize) -> Result<Bytes, BatchError> {
    let too_big = BatchError::BadRecord("records decompress beyond the budget");
    let bad = BatchError::BadRecord("records do not decompress");
    let mut out = Vec::new();
    let limit = max as u64 + 1;
    let read = match codec {
        CODEC_NONE => return Ok(Bytes::copy_from_slice(compressed)),
        CODEC_GZIP => flate2::read::GzDecoder::new(compressed).take(limit).read_to_end(&mut out),
        CODEC_LZ4 => lz4::Decoder::new(compressed).and_then(|d| d.take(limit).read_to_end(&mut out)),
        CODEC_ZSTD => {
            zstd::stream::read::Decoder::new(compressed).and_then(|d| d.take(limit).read_to_end(&mut out))
        }
        CODEC_SNAPPY => return snappy_decompress(compressed, max),
        other => return Err(unknown_codec(other)),
    };
    read.map_err(|_| bad)?;
    if out.len() > max {
        return Err(too_big);
    }
    Ok(out.into())
}

/// Kafka's snappy: xerial's framing (a 16-byte header, then blocks each preceded by its
/// compressed length), or one raw snappy block from clients that skip the framing.
fn snappy_decompress(compressed: &[u8], max: usize) -> Result<Bytes, BatchError> {
    const MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
    let bad = BatchError::BadRecord("records do not decompress");
    let too_big = BatchError::BadRecord("records decompress beyond the budget");
    let block = |input: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(input).map_err(|_| bad.clone())?;
        if out.len() + len > max {
            return Err(too_big.clone());
        }
        let at = out.len();
        out.resize(at + len, 0);
        let written = snap::raw::Decoder::new().decompress(input, &mut out[at..]).map_err(|_| bad.clone())?;
        out.truncate(at + written);
        Ok(())
    };
    let mut out = Vec::new();
    if compressed.len() < 16 || &compressed[..8] != MAGIC {
        block(compressed, &mut out)?;
        return Ok(out.into());
    }
    let mut at = 16;
    while at < compressed.len() {
        let len_bytes: [u8; 4] = compressed.get(at..at + 4).ok_or(bad.clone())?.try_into().expect("4 bytes");
        let len = u32::from_be_bytes(len_bytes) as usize;
        at += 4;
        let input = compressed.get(at..at.checked_add(len).ok_or(bad.clone())?).ok_or(bad.clone())?;
        block(input, &mut out)?;
        at += len;
    }
    Ok(out.into())
}

/// Compresses `records` with `codec` (Kafka's framings, from the kafka-protocol crate).
fn compress(codec: u8, records: &[u8]) -> Result<Bytes, BatchError> {
    let mut out = BytesMut::new();
    let fill = |buf: &mut BytesMut| -> anyhow::Result<()> {
        buf.put_slice(records);
        Ok(())
    };
    let done = match codec {
        CODEC_NONE => return Ok(Bytes::copy_from_slice(records)),
        CODEC_GZIP => Gzip::compress(&mut out, fill),
        CODEC_SNAPPY => Snappy::compress(&mut out, fill),
        CODEC_LZ4 => Lz4::compress(&mut out, fill),
        CODEC_ZSTD => Zstd::compress(&mut out, fill),
        other => return Err(unknown_codec(other)),
    };
    done.map_err(|_| BatchError::BadRecord("records do not compress"))?;
    Ok(out.freeze())
}

/// A 128-bit digest of a record key (the first half of its SHA-256), the key map's entry: two
/// keys collide with negligible probability, so a cleaner never takes one key's record for
/// another's.
pub fn key_digest(key: &[u8]) -> [u8; 16] {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    digest.as_ref()[..16].try_into().expect("SHA-256 has 32 bytes")
}

/// A batch without records whose offsets span `[base, base + span)` (what a compacted segment
/// keeps where every record of a range went): Kafka's clients read past it to its last offset.
pub fn empty_batch(base: u64, span: u32) -> Bytes {
    assert!(span >= 1 && span <= i32::MAX as u32, "an empty batch spans 1 to 2^31 - 1 offsets");
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES);
    out.put_i64(base as i64);
    out.put_i32((BATCH_HEADER_BYTES - 12) as i32);
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2); // magic
    out.put_u32(0); // crc, below
    out.put_i16(0); // attributes
    out.put_i32(span as i32 - 1); // last offset delta
    out.put_i64(-1); // base timestamp: none
    out.put_i64(-1); // max timestamp: none
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(0); // records
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// A nullable varint-prefixed field of a record: `None` for -1.
fn nullable(bytes: &Bytes, at: &mut usize, end: usize) -> Result<Option<Bytes>, BatchError> {
    let len = read_varlong(bytes, at)?;
    if len < 0 {
        return Ok(None);
    }
    let stop = usize::try_from(len)
        .ok()
        .and_then(|n| at.checked_add(n))
        .filter(|stop| *stop <= end)
        .ok_or(BatchError::BadRecord("field runs past the record"))?;
    let field = bytes.slice(*at..stop);
    *at = stop;
    Ok(Some(field))
}

/// The records of `batch` (its length and CRC checked; an empty batch has none), decompressed
/// into at most `decompressed_max` bytes.
pub fn decode(batch: &Bytes, decompressed_max: usize) -> Result<BatchRecords, BatchError> {
    let header = parse_stored_batch(batch)?;
    let records_bytes = decompress(header.compression(), &batch[BATCH_HEADER_BYTES..], decompressed_max)?;
    let count =
        usize::try_from(header.records_count).map_err(|_| BatchError::Inconsistent("record count"))?;
    let mut records = Vec::with_capacity(count.min(records_bytes.len() / RECORD_BYTES_MIN));
    let mut at = 0usize;
    for _ in 0..count {
        let start = at;
        let len = read_varlong(&records_bytes, &mut at)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|end| *end <= records_bytes.len())
            .ok_or(BatchError::BadRecord("record length"))?;
        at += 1; // attributes
        let timestamp_delta = read_varlong(&records_bytes, &mut at)?;
        let offset_delta = read_varlong(&records_bytes, &mut at)?;
        if !(0..=header.last_offset_delta as i64).contains(&offset_delta) {
            return Err(BatchError::BadRecord("offset delta outside the batch"));
        }
        let key = nullable(&records_bytes, &mut at, end)?;
        let tombstone = nullable(&records_bytes, &mut at, end)?.is_none();
        if at > end {
            return Err(BatchError::BadRecord("record length disagrees with its fields"));
        }
        at = end;
        records.push(RecordView {
            offset: (header.base_offset + offset_delta) as u64,
            timestamp_ms: header.base_timestamp.saturating_add(timestamp_delta),
            key,
            tombstone,
            raw: start..end,
        });
    }
    if at != records_bytes.len() {
        return Err(BatchError::BadRecord("bytes after the last record"));
    }
    Ok(BatchRecords { header, records_bytes, records })
}

impl BatchRecords {
    /// Whether this is a control batch (transaction markers): a cleaner keeps those whole.
    pub fn is_control(&self) -> bool {
        self.header.attributes & CONTROL_BIT != 0
    }

    /// `batch` (the bytes this was decoded from) with only the records `keep` selects.
    pub fn retain(&self, batch: &Bytes, keep: impl Fn(&RecordView) -> bool) -> Result<Retained, BatchError> {
        let kept: Vec<&RecordView> = self.records.iter().filter(|r| keep(r)).collect();
        if kept.len() == self.records.len() {
            return Ok(Retained::All);
        }
        if kept.is_empty() {
            return Ok(Retained::Nothing);
        }
        let mut records = Vec::with_capacity(kept.iter().map(|r| r.raw.len()).sum());
        for r in &kept {
            records.extend_from_slice(&self.records_bytes[r.raw.clone()]);
        }
        let body = compress(self.header.compression(), &records)?;
        let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + body.len());
        out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
        out.extend_from_slice(&body);
        let length = i32::try_from(out.len() - 12).map_err(|_| BatchError::BadLength)?;
        out[8..12].copy_from_slice(&length.to_be_bytes());
        if self.header.attributes & LOG_APPEND_TIME_BIT == 0 {
            let max = kept.iter().map(|r| r.timestamp_ms).max().expect("some kept");
            out[35..43].copy_from_slice(&max.to_be_bytes());
        }
        out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(Retained::Some(out.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::{
        Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    use super::*;

    fn batch(compression: Compression, base: i64, keys: &[(&str, Option<&str>)]) -> Bytes {
        let records: Vec<KRecord> = keys
            .iter()
            .enumerate()
            .map(|(i, (k, v))| KRecord {
                transactional: false,
                control: false,
                partition_leader_epoch: 3,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: i as i32,
                timestamp: 1_000 + i as i64 * 10,
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut out = BytesMut::new();
        RecordBatchEncoder::encode(&mut out, &records, &RecordEncodeOptions { version: 2, compression })
            .unwrap();
        out.freeze()
    }

    #[test]
    fn a_rebuilt_batch_keeps_offsets_and_codec_and_every_client_reads_it() {
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let keys = [("a", Some("1")), ("b", Some("2")), ("a", Some("3")), ("c", None), ("b", Some("5"))];
            let original = batch(compression, 100, &keys);
            let decoded = decode(&original, 1 << 20).unwrap();
            let seen: Vec<(u64, &str, bool)> = decoded
                .records
                .iter()
                .map(|r| (r.offset, std::str::from_utf8(r.key.as_ref().unwrap()).unwrap(), r.tombstone))
                .collect();
            assert_eq!(
                seen,
                [
                    (100, "a", false),
                    (101, "b", false),
                    (102, "a", false),
                    (103, "c", true),
                    (104, "b", false)
                ]
            );
            assert_eq!(decoded.retain(&original, |_| true).unwrap(), Retained::All);
            assert_eq!(decoded.retain(&original, |_| false).unwrap(), Retained::Nothing);
            // Keep the latest of each key: offsets 102, 103, 104.
            let Retained::Some(rebuilt) = decoded.retain(&original, |r| r.offset >= 102).unwrap() else {
                panic!("{compression:?}: expected a rebuilt batch")
            };
            let header = crate::record_batch::parse_batch(&rebuilt).expect("a valid batch: length and CRC");
            assert_eq!(header.base_offset, 100, "{compression:?}");
            assert_eq!(header.last_offset_delta, 4);
            assert_eq!(header.records_count, 3);
            assert_eq!(header.compression(), decoded.header.compression());
            assert_eq!((header.producer_id, header.base_sequence), (7, 0));
            assert_eq!(header.max_timestamp, 1_040);
            // kafka-protocol's decoder (a client's view) reads the same records at the same offsets.
            let mut bytes = rebuilt.clone();
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            let got: Vec<(i64, Option<Bytes>)> =
                set.records.iter().map(|r| (r.offset, r.value.clone())).collect();
            assert_eq!(
                got,
                [(102, Some(Bytes::from_static(b"3"))), (103, None), (104, Some(Bytes::from_static(b"5")))],
                "{compression:?}"
            );
        }
    }

    #[test]
    fn an_empty_batch_is_a_valid_batch_spanning_its_offsets() {
        let b = empty_batch(1_000, 37);
        let header = parse_stored_batch(&b).expect("valid length and CRC");
        assert!(decode(&b, 1 << 10).unwrap().records.is_empty());
        assert_eq!((header.base_offset, header.last_offset_delta, header.records_count), (1_000, 36, 0));
        let mut bytes = b.clone();
        assert!(RecordBatchDecoder::decode(&mut bytes).unwrap().records.is_empty());
        assert_ne!(key_digest(b"a"), key_digest(b"b"));
    }

    #[test]
    fn decompression_stops_at_the_budget() {
        let keys: Vec<(String, Option<&str>)> =
            (0..2000).map(|i| (format!("key-{i:05}"), Some("v"))).collect();
        let keys: Vec<(&str, Option<&str>)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let b = batch(compression, 0, &keys);
            assert!(decode(&b, 1 << 20).is_ok());
            assert!(matches!(decode(&b, 1000), Err(BatchError::BadRecord(_))), "{compression:?}");
        }
    }
}

//! Kafka RecordBatch v2 (magic 2): the one batch format Rill stores and serves.
//!
//! The broker only parses the 61-byte batch header and checks its CRC32C (which covers the
//! attributes through the end of the batch, and so not the base offset the broker patches in).
//! Records stay as produced, compressed or not. The small builder and record decoder here serve
//! the bundled tools and the load generator; they handle uncompressed batches.
//!
//! ```text
//! 0 base_offset i64 | 8 batch_length i32 | 12 partition_leader_epoch i32 | 16 magic i8
//! 17 crc u32 | 21 attributes i16 | 23 last_offset_delta i32 | 27 base_timestamp i64
//! 35 max_timestamp i64 | 43 producer_id i64 | 51 producer_epoch i16 | 53 base_sequence i32
//! 57 records_count i32 | 61 records...
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// Size of the fixed batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Byte position of the base offset (the field the log patches).
pub const BASE_OFFSET_AT: usize = 0;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;

/// Why bytes are not an acceptable record batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Shorter than a header, or the length field disagrees with the bytes present.
    #[error("record batch is truncated or its length field is wrong")]
    BadLength,
    /// Not magic 2 (v0/v1 message sets are not supported).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The CRC32C does not match.
    #[error("record batch CRC mismatch")]
    BadCrc,
    /// Record count or offset delta out of range.
    #[error("record batch header is inconsistent: {0}")]
    Inconsistent(&'static str),
    /// Records could not be decoded (tools only).
    #[error("record decoding failed: {0}")]
    BadRecord(&'static str),
    /// A compressed batch was given to the tools' decoder.
    #[error("compressed batches (codec {0}) are stored as produced but not decoded here")]
    Compressed(u8),
}

/// The parsed header of one record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Base offset as stored (assigned by the broker).
    pub base_offset: i64,
    /// Bytes of the whole batch, header included.
    pub total_bytes: usize,
    /// Leader epoch field.
    pub partition_leader_epoch: i32,
    /// Attributes: compression in bits 0-2, timestamp type bit 3, transactional bit 4, control 5.
    pub attributes: i16,
    /// Offset of the last record relative to the base.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchHeader {
    /// Offsets the batch takes.
    pub fn offset_count(&self) -> u32 {
        self.last_offset_delta as u32 + 1
    }

    /// Compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Where a batch's CRC coverage starts: its CRC field is the crc32c of `batch[CRC_COVERS_FROM..]`
/// (everything after the base offset, length, leader epoch, magic and the CRC itself).
pub const CRC_COVERS_FROM: usize = ATTRIBUTES_AT;

const MAX_TIMESTAMP_AT: usize = 35;
/// Bit 3 of the attributes: the batch's timestamps are the broker's append time.
const LOG_APPEND_TIME_BIT: i16 = 1 << 3;

/// A batch stamped with the broker's append time, as Kafka stamps batches of a
/// `message.timestamp.type=LogAppendTime` topic: the timestamp-type attribute set, the max
/// timestamp `now_ms` (which clients then report for every record), the CRC recomputed. The
/// records are not touched.
pub fn with_log_append_time(batch: &[u8], now_ms: i64) -> Result<Bytes, BatchError> {
    if batch.len() < BATCH_HEADER_BYTES {
        return Err(BatchError::BadLength);
    }
    let mut out = BytesMut::from(batch);
    let attributes = be_i16(&out, ATTRIBUTES_AT) | LOG_APPEND_TIME_BIT;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// The CRC field of a batch. For a batch [`parse_batch`] or [`split_batches`] accepted, this is
/// the crc32c of `batch[CRC_COVERS_FROM..]`, so whoever stores it need not read the bytes again.
pub fn crc_field(batch: &[u8]) -> Result<u32, BatchError> {
    let field = batch.get(CRC_AT..CRC_AT + 4).ok_or(BatchError::BadLength)?;
    Ok(u32::from_be_bytes(field.try_into().expect("4 bytes")))
}

/// Parses and fully validates the single batch that `bytes` must be exactly.
pub fn parse_batch(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(bytes)?;
    if header.total_bytes != bytes.len() {
        return Err(BatchError::BadLength);
    }
    let crc = u32::from_be_bytes(bytes[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[ATTRIBUTES_AT..]) != crc {
        return Err(BatchError::BadCrc);
    }
    Ok(header)
}

/// Parses a batch header (no CRC check: use on batches already validated, e.g. stored ones).
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = header_fields(bytes)?;
    if header.records_count <= 0 {
        return Err(BatchError::Inconsistent("no records"));
    }
    Ok(header)
}

/// Parses and checks (length, CRC) a stored batch, which unlike a produced one may hold no
/// records: compaction leaves empty batches spanning the offsets whose records it removed.
pub fn parse_stored_batch(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = header_fields(bytes)?;
    if header.total_bytes != bytes.len() {
        return Err(BatchError::BadLength);
    }
    let crc = u32::from_be_bytes(bytes[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[ATTRIBUTES_AT..]) != crc {
        return Err(BatchError::BadCrc);
    }
    Ok(header)
}

/// The header's fields, checked against each other; a record count of 0 is allowed here.
fn header_fields(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    if bytes.len() < BATCH_HEADER_BYTES {
        return Err(BatchError::BadLength);
    }
    let batch_length = be_i32(bytes, 8);
    if batch_length < (BATCH_HEADER_BYTES - 12) as i32 {
        return Err(BatchError::BadLength);
    }
    let magic = bytes[16] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let header = BatchHeader {
        base_offset: be_i64(bytes, 0),
        total_bytes: batch_length as usize + 12,
        partition_leader_epoch: be_i32(bytes, 12),
        attributes: be_i16(bytes, ATTRIBUTES_AT),
        last_offset_delta: be_i32(bytes, 23),
        base_timestamp: be_i64(bytes, 27),
        max_timestamp: be_i64(bytes, 35),
        producer_id: be_i64(bytes, 43),
        producer_epoch: be_i16(bytes, 51),
        base_sequence: be_i32(bytes, 53),
        records_count: be_i32(bytes, 57),
    };
    if header.records_count < 0 || header.last_offset_delta < 0 {
        return Err(BatchError::Inconsistent("negative record count or offset delta"));
    }
    if header.last_offset_delta < header.records_count - 1 {
        return Err(BatchError::Inconsistent("last offset delta below record count"));
    }
    Ok(header)
}

/// Splits a buffer of concatenated batches (a produce request's records) into validated
/// batches, each a zero-copy slice.
pub fn split_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    split_with(records, parse_batch)
}

/// Splits a producer's records as [`split_batches`] does, holding each batch to what Kafka's
/// `LogValidator` accepts from a producer ([`validate_produced`]).
pub fn split_produced(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    split_with(records, validate_produced)
}

fn split_with(
    records: &Bytes,
    check: fn(&[u8]) -> Result<BatchHeader, BatchError>,
) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let header = parse_header(&records[at..])?;
        let end = at
            .checked_add(header.total_bytes)
            .filter(|e| *e <= records.len())
            .ok_or(BatchError::BadLength)?;
        let batch = records.slice(at..end);
        check(&batch)?;
        out.push((header, batch));
        at = end;
    }
    Ok(out)
}

/// The fewest bytes one record can take: length, attributes, timestamp delta, offset delta,
/// key length, value length and header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;

/// Validates a batch as it arrives from a producer, as Kafka's `LogValidator` does, on top of
/// [`parse_batch`]: the record count must equal the offsets the batch spans
/// (`last_offset_delta + 1`), and for an uncompressed batch every record must lie within the
/// batch, carry offset delta 0, 1, 2, ... in order, and have length fields that agree with its
/// contents, with nothing after the last record. (Stored batches may have gaps after
/// compaction; this check is for produced ones only.) Allocates nothing.
pub fn validate_produced(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_batch(bytes)?;
    if header.last_offset_delta as i64 + 1 != header.records_count as i64 {
        return Err(BatchError::Inconsistent("record count differs from the offsets the batch spans"));
    }
    if header.compression() != 0 {
        return Ok(header);
    }
    let records = header.records_count as usize;
    if records > (bytes.len() - BATCH_HEADER_BYTES) / RECORD_BYTES_MIN {
        return Err(BatchError::Inconsistent("more records than the batch has bytes for"));
    }
    let mut at = BATCH_HEADER_BYTES;
    for index in 0..records {
        let len = read_varlong(bytes, &mut at)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|end| *end <= bytes.len())
            .ok_or(BatchError::BadRecord("record length runs past the batch"))?;
        let record = &bytes[..end];
        if at >= end {
            return Err(BatchError::BadRecord("empty record"));
        }
        at += 1; // attributes
        read_varlong(record, &mut at)?; // timestamp delta
        if read_varlong(record, &mut at)? != index as i64 {
            return Err(BatchError::BadRecord("record offset deltas are not 0, 1, 2, ..."));
        }
        skip_nullable(record, &mut at)?; // key
        skip_nullable(record, &mut at)?; // value
        let headers = read_varlong(record, &mut at)?;
        if headers < 0 {
            return Err(BatchError::BadRecord("negative header count"));
        }
        for _ in 0..headers {
            if at >= end {
                return Err(BatchError::BadRecord("header count runs past the record"));
            }
            if !skip_nullable(record, &mut at)? {
                return Err(BatchError::BadRecord("null header key"));
            }
            skip_nullable(record, &mut at)?;
        }
        if at != end {
            return Err(BatchError::BadRecord("record length disagrees with its fields"));
        }
    }
    if at != bytes.len() {
        return Err(BatchError::BadRecord("bytes after the last record"));
    }
    Ok(header)
}

/// Reads a zigzag varlong at `*at` of `bytes`, moving `*at` past it.
pub(crate) fn read_varlong(bytes: &[u8], at: &mut usize) -> Result<i64, BatchError> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *bytes.get(*at).ok_or(BatchError::BadRecord("truncated varint"))?;
        *at += 1;
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(BatchError::BadRecord("varint too long"))
}

/// Skips a varlong-length-prefixed field (-1: null) within `bytes`; whether it was non-null.
fn skip_nullable(bytes: &[u8], at: &mut usize) -> Result<bool, BatchError> {
    match read_varlong(bytes, at)? {
        -1 => Ok(false),
        n if n >= 0 => {
            *at = usize::try_from(n)
                .ok()
                .and_then(|n| at.checked_add(n))
                .filter(|end| *end <= bytes.len())
                .ok_or(BatchError::BadRecord("field runs past the record"))?;
            Ok(true)
        }
        _ => Err(BatchError::BadRecord("negative length")),
    }
}

/// One record, as the tools see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Absolute timestamp, ms.
    pub timestamp_ms: i64,
    /// Key, if any.
    pub key: Option<Bytes>,
    /// Value, if any (None is a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Builds one uncompressed batch.
#[derive(Debug)]
pub struct BatchBuilder {
    records: BytesMut,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> BatchBuilder {
        BatchBuilder { records: BytesMut::new(), count: 0, base_timestamp: None, max_timestamp: i64::MIN }
    }

    /// Records added so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch would have now.
    pub fn size_bytes(&self) -> usize {
        BATCH_HEADER_BYTES + self.records.len()
    }

    /// Adds a record.
    pub fn push(&mut self, record: &Record) {
        let base = *self.base_timestamp.get_or_insert(record.timestamp_ms);
        self.max_timestamp = self.max_timestamp.max(record.timestamp_ms);
        let mut body = BytesMut::new();
        body.put_i8(0);
        put_varlong(&mut body, record.timestamp_ms - base);
        put_varlong(&mut body, self.count as i64);
        put_nullable(&mut body, record.key.as_deref());
        put_nullable(&mut body, record.value.as_deref());
        put_varlong(&mut body, record.headers.len() as i64);
        for (k, v) in &record.headers {
            put_nullable(&mut body, Some(k.as_bytes()));
            put_nullable(&mut body, v.as_deref());
        }
        put_varlong(&mut self.records, body.len() as i64);
        self.records.extend_from_slice(&body);
        self.count += 1;
    }

    /// The finished batch, base offset 0 (the broker assigns it).
    pub fn build(self) -> Bytes {
        assert!(self.count > 0, "a batch has at least one record");
        let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + self.records.len());
        out.put_i64(0);
        out.put_i32((BATCH_HEADER_BYTES - 12 + self.records.len()) as i32);
        out.put_i32(-1);
        out.put_i8(2);
        out.put_u32(0);
        out.put_i16(0);
        out.put_i32(self.count - 1);
        out.put_i64(self.base_timestamp.expect("set by push"));
        out.put_i64(self.max_timestamp);
        out.put_i64(-1);
        out.put_i16(-1);
        out.put_i32(-1);
        out.put_i32(self.count);
        out.extend_from_slice(&self.records);
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }
}

/// The value of the first record of an uncompressed batch, without decoding the others (the
/// load generator reads its send timestamp from there).
pub fn first_value(batch: &Bytes) -> Result<Option<Bytes>, BatchError> {
    let header = parse_header(batch)?;
    if header.compression() != 0 {
        return Err(BatchError::Compressed(header.compression()));
    }
    let mut cursor = Cursor { bytes: batch, at: BATCH_HEADER_BYTES };
    cursor.varlong()?;
    cursor.take(1)?;
    cursor.varlong()?;
    cursor.varlong()?;
    cursor.nullable()?;
    cursor.nullable()
}

/// Decodes the records of an uncompressed batch (tools); offsets are base + index.
pub fn decode_records(batch: &Bytes) -> Result<Vec<(i64, Record)>, BatchError> {
    let header = parse_batch(batch)?;
    if header.compression() != 0 {
        return Err(BatchError::Compressed(header.compression()));
    }
    let mut cursor = Cursor { bytes: batch, at: BATCH_HEADER_BYTES };
    // The count is the batch's claim: capacity is bounded by the records its bytes can hold.
    let fits = (batch.len() - BATCH_HEADER_BYTES) / RECORD_BYTES_MIN;
    let mut out = Vec::with_capacity((header.records_count as usize).min(fits));
    for _ in 0..header.records_count {
        let len = cursor.varlong()?;
        let end = cursor.at.checked_add(usize::try_from(len).map_err(|_| BatchError::BadRecord("length"))?);
        let end = end.filter(|e| *e <= batch.len()).ok_or(BatchError::BadRecord("length"))?;
        cursor.take(1)?;
        let ts_delta = cursor.varlong()?;
        let offset_delta = cursor.varlong()?;
        let key = cursor.nullable()?;
        let value = cursor.nullable()?;
        let count = cursor.varlong()?;
        if !(0..=1_000_000).contains(&count) {
            return Err(BatchError::BadRecord("header count"));
        }
        // Each header takes at least two bytes (key and value lengths).
        let mut headers = Vec::with_capacity((count as usize).min(end.saturating_sub(cursor.at) / 2));
        for _ in 0..count {
            let k = cursor.nullable()?.ok_or(BatchError::BadRecord("null header key"))?;
            let k = String::from_utf8(k.to_vec()).map_err(|_| BatchError::BadRecord("header key utf-8"))?;
            headers.push((k, cursor.nullable()?));
        }
        if cursor.at != end {
            return Err(BatchError::BadRecord("record length disagrees with its fields"));
        }
        let record = Record { timestamp_ms: header.base_timestamp + ts_delta, key, value, headers };
        out.push((header.base_offset + offset_delta, record));
    }
    Ok(out)
}

struct Cursor<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<Bytes, BatchError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(BatchError::BadRecord("truncated"))?;
        let out = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(out)
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        read_varlong(self.bytes, &mut self.at)
    }

    fn nullable(&mut self) -> Result<Option<Bytes>, BatchError> {
        match self.varlong()? {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(self.take(n as usize)?)),
            _ => Err(BatchError::BadRecord("negative length")),
        }
    }
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn put_nullable(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: i64) -> Record {
        Record {
            timestamp_ms: 1_700_000_000_000 + i * 3,
            key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![i as u8; i as usize * 10])),
            headers: vec![("h".to_string(), Some(Bytes::from_static(b"v"))), ("null".to_string(), None)],
        }
    }

    #[test]
    fn build_parse_decode_round_trip() {
        let mut builder = BatchBuilder::new();
        for i in 0..20 {
            builder.push(&record(i));
        }
        let mut batch = BytesMut::from(&builder.build()[..]);
        batch[..8].copy_from_slice(&1000i64.to_be_bytes());
        let batch = batch.freeze();
        let header = parse_batch(&batch).unwrap();
        assert_eq!((header.base_offset, header.records_count, header.offset_count()), (1000, 20, 20));
        assert_eq!(header.max_timestamp, 1_700_000_000_000 + 19 * 3);
        assert_eq!(first_value(&batch).unwrap(), record(0).value);
        let records = decode_records(&batch).unwrap();
        for (i, (offset, r)) in records.iter().enumerate() {
            assert_eq!((*offset, r), (1000 + i as i64, &record(i as i64)));
        }
    }

    #[test]
    fn any_flip_in_checked_fields_is_caught() {
        let mut builder = BatchBuilder::new();
        builder.push(&record(5));
        let batch = builder.build();
        // The base offset (0..8) and leader epoch (12..16) sit outside the CRC on purpose.
        for byte in (8..12).chain(16..batch.len()) {
            let mut damaged = batch.to_vec();
            damaged[byte] ^= 0x04;
            assert!(parse_batch(&damaged).is_err(), "byte {byte}");
        }
        assert_eq!(parse_batch(&batch[..60]), Err(BatchError::BadLength));
        let mut v1 = batch.to_vec();
        v1[16] = 1;
        assert_eq!(parse_batch(&v1), Err(BatchError::UnsupportedMagic(1)));
    }

    /// `batch` with bytes `at..` replaced by `with` (the batch length and CRC fixed up), as a
    /// hostile producer would send it: valid CRC, lying contents.
    fn forged(batch: &[u8], at: usize, with: &[u8], truncate_to: Option<usize>) -> Vec<u8> {
        let mut out = batch.to_vec();
        out[at..at + with.len()].copy_from_slice(with);
        if let Some(len) = truncate_to {
            out.truncate(len);
        }
        let len = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn produced_batches_are_held_to_kafkas_rules() {
        let mut builder = BatchBuilder::new();
        for i in 0..3 {
            builder.push(&record(i));
        }
        let batch = builder.build();
        assert_eq!(validate_produced(&batch).unwrap().records_count, 3);
        let max = i32::MAX.to_be_bytes();
        // Both counts at 2^31-1: consistent with each other, not with the bytes.
        let mut lying = forged(&batch, 23, &max, None);
        lying = forged(&lying, 57, &max, None);
        assert!(parse_batch(&lying).is_ok(), "the header alone cannot tell");
        assert!(matches!(validate_produced(&lying), Err(BatchError::Inconsistent(_))));
        // decode_records refuses it without sizing anything from the claim.
        assert!(decode_records(&Bytes::from(lying)).is_err());
        // One record claiming 2^31 offsets.
        let wide = forged(&batch, 23, &max, None);
        assert!(matches!(validate_produced(&wide), Err(BatchError::Inconsistent(_))));
        // Fewer records claimed than present, with a matching delta: trailing bytes.
        let short = forged(&forged(&batch, 23, &1i32.to_be_bytes(), None), 57, &2i32.to_be_bytes(), None);
        assert!(matches!(validate_produced(&short), Err(BatchError::BadRecord(_))));
        // A record whose offset delta is not its index (record 0's delta is at 61 + 3).
        let mut moved = batch.to_vec();
        assert_eq!(moved[BATCH_HEADER_BYTES + 3], 0, "record 0: delta 0, zigzag 0");
        moved[BATCH_HEADER_BYTES + 3] = 4; // zigzag 2
        assert!(matches!(validate_produced(&forged(&moved, 0, &[0], None)), Err(BatchError::BadRecord(_))));
        // A record length that runs past the batch.
        let long = forged(&batch, BATCH_HEADER_BYTES, &[0x7e], None);
        assert!(validate_produced(&long).is_err());
        // Truncated in the middle of the last record.
        let cut = forged(&batch, 0, &[0], Some(batch.len() - 3));
        assert!(validate_produced(&cut).is_err());
        // A compressed batch is checked by its header only.
        let mut lz4 = batch.to_vec();
        lz4[ATTRIBUTES_AT + 1] |= 3;
        assert!(validate_produced(&forged(&lz4, 0, &[0], None)).is_ok());
    }

    #[test]
    fn split_concatenated_batches() {
        let mut all = BytesMut::new();
        for n in 1..4 {
            let mut b = BatchBuilder::new();
            for i in 0..n {
                b.push(&record(i));
            }
            all.extend_from_slice(&b.build());
        }
        let all = all.freeze();
        let batches = split_batches(&all).unwrap();
        assert_eq!(batches.iter().map(|(h, _)| h.records_count).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(split_batches(&all.slice(..all.len() - 1)), Err(BatchError::BadLength));
    }
}

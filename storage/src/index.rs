//! Sparse indexes of one segment: offset -> file position, and timestamp -> file position.
//!
//! Both live in memory for every open segment and are written to `<base>.index` and
//! `<base>.timeindex` once, when the segment is sealed. The active segment's indexes are rebuilt
//! by the recovery scan at open, so a crash can never leave an index ahead of its segment.
//!
//! File layout (little-endian): a 64-byte header, then fixed-size entries. The header also
//! carries the sealed segment's summary, so opening a log never scans sealed segments.
//! ```text
//! 0  magic u32 | 4 version u16 | 6 entry_bytes u16 | 8 entry_count u32 | 12 reserved u32
//! 16 segment_bytes u64 | 24 end_offset u64 | 32 max_timestamp_ms i64 | 40 first_append_ms i64
//! 48 last_append_ms i64 | 56 crc32c u32 (of header with crc zeroed, then entries) | 60 zero u32
//! ```

/// One sparse offset-index entry: the entry starting `position` bytes into the segment has base
/// offset `segment base + relative_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time-index entry: the entry at `position` is the first in the segment whose max timestamp
/// reaches `timestamp_ms` (a new running maximum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
    pub position: u32,
}

/// Which file: offset index or time index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexKind {
    Offset,
    Time,
}

impl IndexKind {
    pub fn extension(self) -> &'static str {
        match self {
            IndexKind::Offset => "index",
            IndexKind::Time => "timeindex",
        }
    }

    fn magic(self) -> u32 {
        match self {
            IndexKind::Offset => u32::from_le_bytes(*b"RIDX"),
            IndexKind::Time => u32::from_le_bytes(*b"RTIX"),
        }
    }

    fn entry_bytes(self) -> usize {
        match self {
            IndexKind::Offset => 8,
            IndexKind::Time => 16,
        }
    }
}

const INDEX_HEADER_BYTES: usize = 64;
const CRC_AT: usize = 56;

/// What a sealed segment's index header records about the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub segment_bytes: u64,
    pub end_offset: u64,
    pub max_timestamp_ms: i64,
    pub first_append_ms: i64,
    pub last_append_ms: i64,
}
const INDEX_VERSION: u16 = 1;

/// Both sparse indexes of a segment, plus the bookkeeping that decides when to add entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    running_max_timestamp_ms: Option<i64>,
}

impl SegmentIndex {
    /// Records an entry appended at `position`; adds index entries when due.
    pub fn observe(
        &mut self,
        interval_bytes: u32,
        relative_offset: u32,
        position: u32,
        entry_bytes: u64,
        max_timestamp_ms: i64,
    ) {
        if self.offsets.is_empty() || self.bytes_since_offset_entry >= interval_bytes as u64 {
            self.offsets.push(OffsetEntry { relative_offset, position });
            self.bytes_since_offset_entry = 0;
        }
        self.bytes_since_offset_entry += entry_bytes;

        let new_max = self.running_max_timestamp_ms.is_none_or(|m| max_timestamp_ms > m);
        if new_max {
            self.running_max_timestamp_ms = Some(max_timestamp_ms);
            if self.times.is_empty() || self.bytes_since_time_entry >= interval_bytes as u64 {
                self.times.push(TimeEntry { timestamp_ms: max_timestamp_ms, relative_offset, position });
                self.bytes_since_time_entry = 0;
            }
        }
        self.bytes_since_time_entry += entry_bytes;
    }

    /// Position of the last indexed entry whose base offset is at most `relative_offset`.
    pub fn position_for_offset(&self, relative_offset: u32) -> u32 {
        let i = self.offsets.partition_point(|e| e.relative_offset <= relative_offset);
        if i == 0 { 0 } else { self.offsets[i - 1].position }
    }

    /// A position from which a forward scan finds the first entry whose max timestamp is at least
    /// `timestamp_ms`: the last time entry whose running maximum is still below it.
    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> u32 {
        let i = self.times.partition_point(|e| e.timestamp_ms < timestamp_ms);
        if i == 0 { 0 } else { self.times[i - 1].position }
    }

    /// Encodes one index as a file image for a segment of `segment_bytes` bytes.
    pub fn encode(&self, kind: IndexKind, summary: &SegmentSummary) -> Vec<u8> {
        let count = match kind {
            IndexKind::Offset => self.offsets.len(),
            IndexKind::Time => self.times.len(),
        };
        let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + count * kind.entry_bytes());
        out.extend_from_slice(&kind.magic().to_le_bytes());
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&(kind.entry_bytes() as u16).to_le_bytes());
        out.extend_from_slice(&(count as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&summary.segment_bytes.to_le_bytes());
        out.extend_from_slice(&summary.end_offset.to_le_bytes());
        out.extend_from_slice(&summary.max_timestamp_ms.to_le_bytes());
        out.extend_from_slice(&summary.first_append_ms.to_le_bytes());
        out.extend_from_slice(&summary.last_append_ms.to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        match kind {
            IndexKind::Offset => {
                for e in &self.offsets {
                    out.extend_from_slice(&e.relative_offset.to_le_bytes());
                    out.extend_from_slice(&e.position.to_le_bytes());
                }
            }
            IndexKind::Time => {
                for e in &self.times {
                    out.extend_from_slice(&e.timestamp_ms.to_le_bytes());
                    out.extend_from_slice(&e.relative_offset.to_le_bytes());
                    out.extend_from_slice(&e.position.to_le_bytes());
                }
            }
        }
        let crc = crc32c::crc32c(&out);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a file image into `self`; returns the segment size it was written for. Any damage
    /// is reported as `Err(reason)`: the caller rebuilds the index from the segment.
    pub fn decode_into(&mut self, kind: IndexKind, bytes: &[u8]) -> Result<SegmentSummary, &'static str> {
        let header = bytes.get(..INDEX_HEADER_BYTES).ok_or("shorter than its header")?;
        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        if u32_at(header, 0) != kind.magic() {
            return Err("bad magic");
        }
        if u16::from_le_bytes([header[4], header[5]]) != INDEX_VERSION {
            return Err("unknown version");
        }
        if u16::from_le_bytes([header[6], header[7]]) as usize != kind.entry_bytes() {
            return Err("wrong entry size");
        }
        let count = u32_at(header, 8) as usize;
        let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
        let summary = SegmentSummary {
            segment_bytes: u64_at(16),
            end_offset: u64_at(24),
            max_timestamp_ms: u64_at(32) as i64,
            first_append_ms: u64_at(40) as i64,
            last_append_ms: u64_at(48) as i64,
        };
        let segment_bytes = summary.segment_bytes;
        let end = INDEX_HEADER_BYTES + count * kind.entry_bytes();
        if bytes.len() != end {
            return Err("length disagrees with entry count");
        }
        let mut zeroed = bytes.to_vec();
        zeroed[CRC_AT..CRC_AT + 4].fill(0);
        if crc32c::crc32c(&zeroed) != u32_at(header, CRC_AT) {
            return Err("checksum mismatch");
        }
        let body = &bytes[INDEX_HEADER_BYTES..];
        match kind {
            IndexKind::Offset => {
                self.offsets = body
                    .chunks_exact(8)
                    .map(|c| OffsetEntry { relative_offset: u32_at(c, 0), position: u32_at(c, 4) })
                    .collect();
                let increasing = self
                    .offsets
                    .windows(2)
                    .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
                if !increasing || self.offsets.first().is_some_and(|e| e.position != 0) {
                    return Err("entries out of order");
                }
            }
            IndexKind::Time => {
                self.times = body
                    .chunks_exact(16)
                    .map(|c| TimeEntry {
                        timestamp_ms: i64::from_le_bytes(c[0..8].try_into().unwrap()),
                        relative_offset: u32_at(c, 8),
                        position: u32_at(c, 12),
                    })
                    .collect();
                let increasing = self
                    .times
                    .windows(2)
                    .all(|w| w[0].timestamp_ms < w[1].timestamp_ms && w[0].position < w[1].position);
                if !increasing {
                    return Err("entries out of order");
                }
            }
        }
        if self.offsets.iter().any(|e| e.position as u64 >= segment_bytes)
            || self.times.iter().any(|e| e.position as u64 >= segment_bytes)
        {
            return Err("entry points past the segment");
        }
        self.running_max_timestamp_ms = self.times.last().map(|e| e.timestamp_ms);
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        let mut index = SegmentIndex::default();
        let mut position = 0u32;
        for i in 0..100u32 {
            let ts = [5, 3, 9, 9, 12, 1, 20][i as usize % 7] + i as i64;
            index.observe(1000, i * 2, position, 300, ts);
            position += 300;
        }
        index
    }

    #[test]
    fn sparse_offset_lookup() {
        let index = sample();
        assert!(index.offsets.len() > 5 && index.offsets.len() < 50);
        assert_eq!(index.position_for_offset(0), 0);
        for e in &index.offsets {
            assert_eq!(index.position_for_offset(e.relative_offset), e.position);
            assert_eq!(index.position_for_offset(e.relative_offset + 1), e.position);
        }
    }

    #[test]
    fn file_round_trip_and_damage() {
        let index = sample();
        let summary = SegmentSummary {
            segment_bytes: 30_000,
            end_offset: 200,
            max_timestamp_ms: 119,
            first_append_ms: 5,
            last_append_ms: 6,
        };
        for kind in [IndexKind::Offset, IndexKind::Time] {
            let image = index.encode(kind, &summary);
            let mut decoded = SegmentIndex::default();
            assert_eq!(decoded.decode_into(kind, &image), Ok(summary));
            match kind {
                IndexKind::Offset => assert_eq!(decoded.offsets, index.offsets),
                IndexKind::Time => assert_eq!(decoded.times, index.times),
            }
            for bit in 0..image.len() * 8 {
                let mut damaged = image.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                assert!(SegmentIndex::default().decode_into(kind, &damaged).is_err(), "{bit}");
            }
            assert!(SegmentIndex::default().decode_into(kind, &image[..image.len() - 1]).is_err());
        }
    }
}

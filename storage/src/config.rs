//! Per-log configuration: sizes, ages and the durability policy, checked once at open.

use std::time::Duration;

use crate::error::{Error, Result};

/// The unit of direct I/O: every write offset and length is a multiple of this.
///
/// 4 KiB is the logical block size of every NVMe drive we target and a multiple of the 512-byte
/// sectors of older devices, so it is safe everywhere.
pub const BLOCK_BYTES: usize = 4096;

/// Most sparse index entries one segment may need: bounds each segment's in-memory indexes to
/// about 1.5 MiB (8-byte offset entries plus 16-byte time entries).
pub const INDEX_ENTRIES_PER_SEGMENT_MAX: u64 = 1 << 16;

/// When an append counts as acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after the write reached the device and `fdatasync` returned. Survives power
    /// loss. Appends that arrive while a sync is in flight share the next one (group commit).
    Always,
    /// Acknowledge once the write reached the device (O_DIRECT, so not the page cache); a
    /// background task calls `fdatasync` every this many milliseconds. Survives a process crash;
    /// a power loss can lose up to one interval.
    IntervalMs(u64),
    /// Acknowledge once the write reached the device; `fdatasync` only when a segment is sealed,
    /// on [`crate::Log::sync`] and on close.
    Never,
}

/// Settings of one partition log. Every buffer the log holds is bounded by a field here.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A segment is sealed and a new one started before it would grow past this (a segment's
    /// first entry may be larger: it is then the segment's only one).
    pub segment_size_bytes_max: u64,
    /// A segment is sealed on the first append after it has been open this long.
    pub segment_age_ms_max: u64,
    /// Sealed segments whose newest entry was appended longer ago than this are deleted by
    /// [`crate::Log::enforce_retention`]. `None` keeps them forever.
    pub retention_age_ms_max: Option<u64>,
    /// Oldest sealed segments are deleted while the log is larger than this. `None`: no limit.
    pub retention_bytes_max: Option<u64>,
    /// When an append is acknowledged.
    pub durability: Durability,
    /// Largest payload accepted in one append.
    pub batch_bytes_max: u32,
    /// Appends wait (back-pressure) while this many bytes are queued for the next write.
    /// Multiple of [`BLOCK_BYTES`].
    pub write_buffer_bytes_max: usize,
    /// Bytes of recently appended batches kept in memory to serve tail reads without disk I/O.
    pub cache_bytes_max: usize,
    /// A sparse offset-index entry is added after at least this many bytes of entries. A read
    /// scans at most about this many bytes past the indexed position.
    pub index_interval_bytes: u32,
    /// Bytes read per disk read while scanning a segment (recovery, index rebuild), and the
    /// size of the read-ahead chunks of catch-up reads. Multiple of [`BLOCK_BYTES`].
    pub read_chunk_bytes: usize,
    /// A reader catching up from disk keeps this many `read_chunk_bytes` chunks past its
    /// position loading (within a per-shard cap), so the disk never waits for the reader.
    /// 0 reads on demand only.
    pub read_ahead_chunks: usize,
    /// When the disk is idle and less than half a write buffer is queued, the flusher waits up
    /// to this long for more appends to share the write. 0 writes at once (group commit then
    /// forms only while a write is in flight).
    pub group_commit_window_us: u64,
    /// While appends move the durable end, the recovery-point checkpoint is rewritten at most
    /// this often (Kafka's `log.flush.offset.checkpoint.interval.ms`); also at close and after
    /// truncations. After a crash, damage in the active segment below the checkpoint is an
    /// error, beyond it a torn tail that recovery truncates.
    pub recovery_checkpoint_interval_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_size_bytes_max: 1 << 30,
            segment_age_ms_max: 7 * 24 * 3600 * 1000,
            retention_age_ms_max: Some(7 * 24 * 3600 * 1000),
            retention_bytes_max: None,
            durability: Durability::Always,
            batch_bytes_max: 8 << 20,
            write_buffer_bytes_max: 16 << 20,
            cache_bytes_max: 32 << 20,
            index_interval_bytes: 64 << 10,
            read_chunk_bytes: 8 << 20,
            read_ahead_chunks: 2,
            group_commit_window_us: 0,
            recovery_checkpoint_interval_ms: 60_000,
        }
    }
}

impl LogConfig {
    /// Checks the fields against each other; the first problem is returned naming its field.
    pub fn validate(&self) -> Result<()> {
        let entry_max = self.batch_bytes_max as u64 + crate::entry::ENTRY_HEADER_BYTES as u64;
        // A roll threshold, as Kafka's segment.bytes: a segment rolls before an entry would take
        // it past the threshold, and a first entry larger than the threshold is its segment's
        // only one. Byte positions (u32 in the indexes) must stay below 4 GiB.
        if self.segment_size_bytes_max == 0 {
            return Err(invalid("segment_size_bytes_max", "must be non-zero"));
        }
        if self.segment_size_bytes_max + entry_max > u32::MAX as u64 {
            return Err(invalid("segment_size_bytes_max", "plus the largest batch must stay below 4 GiB"));
        }
        if self.write_buffer_bytes_max == 0 || !self.write_buffer_bytes_max.is_multiple_of(BLOCK_BYTES) {
            return Err(invalid("write_buffer_bytes_max", "must be a non-zero multiple of 4096"));
        }
        if self.read_chunk_bytes == 0 || !self.read_chunk_bytes.is_multiple_of(BLOCK_BYTES) {
            return Err(invalid("read_chunk_bytes", "must be a non-zero multiple of 4096"));
        }
        if self.batch_bytes_max == 0 {
            return Err(invalid("batch_bytes_max", "must be non-zero"));
        }
        if entry_max > self.write_buffer_bytes_max as u64 {
            return Err(invalid("batch_bytes_max", "a batch plus its header must fit the write buffer"));
        }
        if self.index_interval_bytes == 0 {
            return Err(invalid("index_interval_bytes", "must be non-zero"));
        }
        if (self.segment_size_bytes_max + entry_max) / self.index_interval_bytes as u64
            > INDEX_ENTRIES_PER_SEGMENT_MAX
        {
            return Err(invalid(
                "index_interval_bytes",
                "too small for the segment size: a segment would need over 65536 index entries",
            ));
        }
        if self.segment_age_ms_max == 0 {
            return Err(invalid("segment_age_ms_max", "must be non-zero"));
        }
        if self.group_commit_window_us > 1_000_000 {
            return Err(invalid("group_commit_window_us", "must be at most one second"));
        }
        if self.recovery_checkpoint_interval_ms == 0 {
            return Err(invalid("recovery_checkpoint_interval_ms", "must be non-zero"));
        }
        if let Durability::IntervalMs(0) = self.durability {
            return Err(invalid("durability", "interval_ms must be non-zero"));
        }
        Ok(())
    }

    pub(crate) fn sync_interval(&self) -> Option<Duration> {
        match self.durability {
            Durability::IntervalMs(ms) => Some(Duration::from_millis(ms)),
            _ => None,
        }
    }
}

fn invalid(field: &'static str, reason: &'static str) -> Error {
    Error::InvalidConfig { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        LogConfig::default().validate().unwrap();
    }

    #[test]
    fn misaligned_values_name_their_field() {
        type Mutation = fn(&mut LogConfig);
        let cases: [(&str, Mutation); 5] = [
            ("segment_size_bytes_max", |c| c.segment_size_bytes_max = 0),
            ("write_buffer_bytes_max", |c| c.write_buffer_bytes_max = 1000),
            ("read_chunk_bytes", |c| c.read_chunk_bytes = 0),
            ("batch_bytes_max", |c| c.batch_bytes_max = 1 << 30),
            ("durability", |c| c.durability = Durability::IntervalMs(0)),
        ];
        for (field, mutate) in cases {
            let mut config = LogConfig::default();
            mutate(&mut config);
            match config.validate() {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}

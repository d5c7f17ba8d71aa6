//! Log compaction (Kafka's `cleanup.policy=compact`): the latest record of every key is kept,
//! older ones go, tombstones go once `delete.retention.ms` has passed since the cleaner first
//! kept them (KIP-534's delete horizon, kept per segment in `cleaner.state` rather than in the
//! batches, so record timestamps are never re-encoded).
//!
//! The storage does not read records: a [`Compactor`] (the broker's, over RecordBatch v2) lists a
//! batch's records and rebuilds it with the ones kept. A cleaning:
//! 1. takes the sealed segments whose last append is older than the minimum compaction lag;
//!    the dirty ones are those from `cleaned_to` on;
//! 2. maps each key of the dirty segments to its latest offset, within the key-map budget
//!    (whole segments only: where the budget ends, the cleaning ends);
//! 3. rewrites each segment up to the mapped end, from the log start: a record stays if no later
//!    record of its key is mapped; a segment in which nothing changes is left alone.
//!
//! Offsets never move and the storage's entries stay contiguous: a kept entry's span reaches
//! back over the removed entries before it, so a Kafka batch may start after its entry's base
//! (clients see the gaps of a compacted topic), and always ends where its entry ends (a reader
//! at any offset of the span gets a batch whose last offset reaches it). Removed entries after a
//! segment's last kept one, or a whole segment's, are spanned by an empty batch.
//!
//! Crash safety: a segment's replacement is written to `<base>.cleaned` and synced, renamed to
//! `<base>.swap` (directory synced), then over `<base>.log`. Recovery removes `.cleaned` files
//! and completes `.swap` renames, so a kill -9 at any point leaves either the old segment or the
//! new one, never a mix, and never loses or duplicates a record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::config::BLOCK_BYTES;
use crate::disk::{self, Disk, Mode};
use crate::entry::{self, ENTRY_HEADER_BYTES, EntryMeta};
use crate::error::{Error, Result};
use crate::log::{Log, StoredBatch};
use crate::segment::{self, Segment, align_up};

/// One record of a batch as the cleaner needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedRecord {
    /// The record's offset.
    pub offset: u64,
    /// A 128-bit hash of the key; `None` for a record without one, which a cleaning removes
    /// (as Kafka's cleaner does).
    pub key: Option<[u8; 16]>,
    /// A null value.
    pub tombstone: bool,
}

/// What is left of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Every record: the batch unchanged.
    All,
    /// The batch rebuilt with some records.
    Some(Bytes),
    /// No record.
    Nothing,
}

/// The record format, for the cleaner.
pub trait Compactor {
    /// The batch's records; `Err` if it cannot be read (the cleaning stops, nothing changes).
    fn records(&self, batch: &Bytes) -> std::result::Result<Vec<KeyedRecord>, String>;
    /// The batch with only the records whose offsets `keep` accepts.
    fn retain(&self, batch: &Bytes, keep: &dyn Fn(u64) -> bool) -> std::result::Result<Kept, String>;
    /// A batch without records whose offsets span `[base, base + span)`.
    fn empty_batch(&self, base: u64, span: u32) -> Bytes;
}

/// How a cleaning runs.
#[derive(Clone, Debug)]
pub struct CompactionOptions {
    /// The key map's memory budget.
    pub key_map_bytes_max: usize,
    /// Segments appended to more recently than this stay as they are (`min.compaction.lag.ms`).
    pub min_lag_ms: u64,
    /// How long a tombstone stays after a cleaning first kept it (`delete.retention.ms`).
    pub delete_retention_ms: u64,
    /// Clean only when dirty bytes are at least this share of the cleanable bytes
    /// (`min.cleanable.dirty.ratio`)...
    pub min_dirty_ratio: f64,
    /// ...unless the oldest dirty segment was appended to longer ago than this
    /// (`max.compaction.lag.ms`).
    pub max_lag_ms: u64,
    /// Rewrite at most this many bytes per second (`None`: no limit).
    pub bytes_per_second_max: Option<u64>,
}

/// What a cleaning did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompactionReport {
    /// Whether it ran (false: nothing dirty enough).
    pub cleaned: bool,
    /// Dirty share of the cleanable bytes before it.
    pub dirty_ratio: f64,
    /// Segments rewritten.
    pub segments_rewritten: usize,
    /// Records removed (tombstones included).
    pub records_removed: u64,
    /// Tombstones removed.
    pub tombstones_removed: u64,
    /// Bytes of the rewritten segments before.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments after.
    pub bytes_after: u64,
    /// The log is clean below this offset.
    pub cleaned_to: u64,
}

/// Bytes the key map takes per key (hash, offset and the table's overhead).
const KEY_MAP_ENTRY_BYTES: usize = 40;
/// The cleaner's state file in the log directory.
pub(crate) const STATE_FILE: &str = "cleaner.state";
const STATE_MAGIC: &[u8; 8] = b"RILLCS01";
/// Batches read at a time while cleaning.
const READ_BYTES: usize = 1 << 20;

/// What the cleaner remembers: the log is clean below `cleaned_to`, and when each cleaned
/// segment's tombstones were first kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CleanerState {
    pub cleaned_to: u64,
    /// Each cleaned segment: base offset, the time of its first cleaning, tombstones it kept.
    pub segments: Vec<(u64, i64, u64)>,
}

impl CleanerState {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.segments.len() * 24);
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&self.cleaned_to.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u64).to_le_bytes());
        for (base, ms, tombstones) in &self.segments {
            out.extend_from_slice(&base.to_le_bytes());
            out.extend_from_slice(&ms.to_le_bytes());
            out.extend_from_slice(&tombstones.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(image: &[u8]) -> std::result::Result<CleanerState, &'static str> {
        if image.len() < 28 || &image[..8] != STATE_MAGIC {
            return Err("not a cleaner state");
        }
        let (body, crc) = image.split_at(image.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("checksum mismatch");
        }
        let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let count = word(16) as usize;
        if body.len() != 24 + count.saturating_mul(24) {
            return Err("wrong length");
        }
        let at = |i: usize, field: usize| word(24 + i * 24 + field * 8);
        let segments = (0..count).map(|i| (at(i, 0), at(i, 1) as i64, at(i, 2))).collect();
        Ok(CleanerState { cleaned_to: word(8), segments })
    }

    fn first_cleaned(&self, base: u64) -> Option<i64> {
        self.segments.iter().find(|(b, _, _)| *b == base).map(|(_, ms, _)| *ms)
    }

    /// Whether a cleaned segment keeps tombstones whose delete horizon has passed.
    fn tombstones_due(&self, now: i64, retention_ms: u64) -> bool {
        self.segments.iter().any(|(_, first, n)| *n > 0 && now.saturating_sub(*first) >= retention_ms as i64)
    }
}

pub(crate) async fn read_state(disk: &Disk, dir: &Path) -> Result<CleanerState> {
    let path = dir.join(STATE_FILE);
    match segment::read_whole_file(disk, &path).await? {
        None => Ok(CleanerState::default()),
        Some(image) => CleanerState::decode(&image).or_else(|reason| {
            // Starting over only costs a cleaning: everything is taken as dirty again.
            tracing::warn!(file = %path.display(), reason, "ignoring a damaged cleaner state");
            Ok(CleanerState::default())
        }),
    }
}

async fn write_state(disk: &Disk, dir: &Path, state: &CleanerState) -> Result<()> {
    segment::write_file_atomically(disk, &dir.join(STATE_FILE), &state.encode()).await?;
    segment::sync_dir(disk, dir).await
}

/// The replacement files of the segment at `base`.
pub(crate) fn cleaned_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(segment::file_name(base, "cleaned"))
}
pub(crate) fn swap_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(segment::file_name(base, "swap"))
}

/// Writes a segment file sequentially through aligned DMA writes.
struct SegmentWriter {
    file: disk::File,
    path: PathBuf,
    /// The aligned file position `pending` starts at.
    at: u64,
    pending: Vec<u8>,
    len: u64,
}

impl SegmentWriter {
    async fn create(disk: &Disk, path: PathBuf) -> Result<SegmentWriter> {
        let file =
            disk.open(&path, Mode::CreateTruncate).await.map_err(|e| Error::io("creating", &path, e))?;
        Ok(SegmentWriter { file, path, at: 0, pending: Vec::new(), len: 0 })
    }

    async fn push(&mut self, header: &[u8], payload: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(header);
        self.pending.extend_from_slice(payload);
        self.len += (header.len() + payload.len()) as u64;
        if self.pending.len() >= READ_BYTES {
            self.write(false).await?;
        }
        Ok(())
    }

    /// Writes what is pending: whole blocks only, or (`last`) everything, zero-padded.
    async fn write(&mut self, last: bool) -> Result<()> {
        let whole = if last { self.pending.len() } else { self.pending.len() / BLOCK_BYTES * BLOCK_BYTES };
        if whole == 0 {
            return Ok(());
        }
        let mut buf = disk::alloc_buffer(align_up(whole as u64) as usize);
        let bytes = buf.as_bytes_mut();
        bytes[..whole].copy_from_slice(&self.pending[..whole]);
        bytes[whole..].fill(0);
        self.file.write_at(buf, self.at).await.map_err(|e| Error::io("writing", &self.path, e))?;
        self.pending.drain(..whole);
        self.at += whole as u64;
        Ok(())
    }

    async fn finish(mut self) -> Result<u64> {
        self.write(true).await?;
        let path = self.path.clone();
        self.file.truncate(self.len).await.map_err(|e| Error::io("truncating", &path, e))?;
        self.file.fdatasync().await.map_err(|e| Error::io("syncing", &path, e))?;
        self.file.close().await.map_err(|e| Error::io("closing", &path, e))?;
        Ok(self.len)
    }
}

/// An entry waiting for its span's end (the next kept entry's start, or the segment's end).
struct Held {
    base: u64,
    batch: StoredBatch,
}

impl Log {
    /// Compacts the log once (see the module documentation); the maintenance right is held
    /// throughout, so retention, truncation and close wait, while appends go on.
    pub async fn compact(
        &self,
        compactor: &dyn Compactor,
        options: &CompactionOptions,
    ) -> Result<CompactionReport> {
        self.acquire_maintenance().await?;
        let result = self.compact_locked(compactor, options).await;
        self.release_maintenance();
        result
    }

    async fn compact_locked(
        &self,
        compactor: &dyn Compactor,
        options: &CompactionOptions,
    ) -> Result<CompactionReport> {
        let (disk, dir) = (self.inner.disk.clone(), self.inner.dir.clone());
        let mut state = read_state(&disk, &dir).await?;
        let now = self.inner.clock.now_ms();
        // 1. The cleanable segments: sealed, and older than the minimum lag.
        let cleanable: Vec<Rc<Segment>> = {
            let s = self.inner.state.borrow();
            let sealed = s.segments.values().take(s.segments.len() - 1);
            sealed
                .take_while(|seg| {
                    seg.last_append_ms
                        .get()
                        .is_none_or(|t| now.saturating_sub(t) >= options.min_lag_ms as i64)
                })
                .cloned()
                .collect()
        };
        let mut report = CompactionReport { cleaned_to: state.cleaned_to, ..Default::default() };
        let total: u64 = cleanable.iter().map(|s| s.len_bytes.get()).sum();
        let dirty: Vec<&Rc<Segment>> =
            cleanable.iter().filter(|s| s.end_offset.get() > state.cleaned_to).collect();
        let dirty_bytes: u64 = dirty.iter().map(|s| s.len_bytes.get()).sum();
        if total > 0 {
            report.dirty_ratio = dirty_bytes as f64 / total as f64;
        }
        let overdue = dirty.first().is_some_and(|seg| {
            seg.last_append_ms
                .get()
                .is_some_and(|t| now.saturating_sub(t) >= options.max_lag_ms.min(i64::MAX as u64) as i64)
        });
        let dirty_enough = !dirty.is_empty() && (report.dirty_ratio >= options.min_dirty_ratio || overdue);
        // Tombstones past their horizon are a reason to clean on their own (KIP-534).
        if !dirty_enough && !state.tombstones_due(now, options.delete_retention_ms) {
            return Ok(report);
        }
        let dirty = if dirty_enough { dirty } else { Vec::new() };
        // 2. The key map over whole dirty segments, within the budget.
        let keys_max = (options.key_map_bytes_max / KEY_MAP_ENTRY_BYTES).max(1);
        let mut map: HashMap<[u8; 16], u64> = HashMap::new();
        let mut mapped_end = None;
        'segments: for seg in &dirty {
            // A segment is mapped whole or not at all; the map never outgrows the budget.
            let mut segment_keys: HashMap<[u8; 16], u64> = HashMap::new();
            let mut offset = seg.base_offset.max(self.log_start_offset());
            while offset < seg.end_offset.get() {
                let batches = self.read_segment(seg, offset).await?;
                let Some(last) = batches.last() else { break };
                offset = last.end_offset();
                for b in &batches {
                    let records =
                        compactor.records(&b.payload).map_err(|reason| self.unreadable(b, reason))?;
                    for r in records {
                        let Some(key) = r.key else { continue };
                        segment_keys.insert(key, r.offset);
                        if segment_keys.len() + map.len() > keys_max
                            && segment_keys.keys().filter(|k| !map.contains_key(*k)).count() + map.len()
                                > keys_max
                        {
                            if mapped_end.is_none() {
                                tracing::warn!(dir = %dir.display(), segment = seg.base_offset, keys_max,
                                    "the key map budget cannot hold one segment's keys: not compacting");
                            }
                            break 'segments;
                        }
                    }
                }
            }
            map.extend(segment_keys);
            mapped_end = Some(seg.end_offset.get());
        }
        let mapped_end = match mapped_end {
            Some(end) => end,
            None if dirty.is_empty() => state.cleaned_to,
            None => return Ok(report),
        };
        // 3. Rewrite every segment up to the mapped end.
        let horizon_passed = |base: u64| {
            state
                .first_cleaned(base)
                .is_some_and(|t| now.saturating_sub(t) >= options.delete_retention_ms as i64)
        };
        let mut first_cleaned = Vec::new();
        for seg in cleanable.iter().take_while(|s| s.end_offset.get() <= mapped_end) {
            let drop_tombstones = horizon_passed(seg.base_offset);
            let outcome = self.rewrite(seg, compactor, &map, drop_tombstones, options).await?;
            report.records_removed += outcome.removed;
            report.tombstones_removed += outcome.tombstones_removed;
            if outcome.rewritten {
                report.segments_rewritten += 1;
                report.bytes_before += outcome.bytes_before;
                report.bytes_after += outcome.bytes_after;
            }
            let first = state.first_cleaned(seg.base_offset).unwrap_or(now);
            first_cleaned.push((seg.base_offset, first, outcome.tombstones_kept));
        }
        state.cleaned_to = mapped_end;
        state.segments = first_cleaned;
        write_state(&disk, &dir, &state).await?;
        report.cleaned = true;
        report.cleaned_to = mapped_end;
        tracing::info!(dir = %dir.display(), segments = report.segments_rewritten, removed = report.records_removed,
            bytes_before = report.bytes_before, bytes_after = report.bytes_after, "compacted");
        Ok(report)
    }

    /// Batches of `seg` from `offset` (its own, never the next segment's).
    async fn read_segment(&self, seg: &Segment, offset: u64) -> Result<Vec<StoredBatch>> {
        let config = &self.inner.config;
        let batches =
            seg.read_batches(offset, READ_BYTES, seg.len_bytes.get(), config.read_chunk_bytes, 0).await?;
        Ok(batches.into_iter().filter(|b| b.end_offset() <= seg.end_offset.get()).collect())
    }

    fn unreadable(&self, batch: &StoredBatch, reason: String) -> Error {
        Error::Unreadable { dir: self.inner.dir.clone(), offset: batch.base_offset, reason }
    }

    /// Rewrites one segment with the records the key map keeps; leaves it alone if nothing
    /// changes.
    async fn rewrite(
        &self,
        seg: &Rc<Segment>,
        compactor: &dyn Compactor,
        map: &HashMap<[u8; 16], u64>,
        drop_tombstones: bool,
        options: &CompactionOptions,
    ) -> Result<Rewrite> {
        let (disk, dir) = (&self.inner.disk, &self.inner.dir);
        let mut outcome = Rewrite { bytes_before: seg.len_bytes.get(), ..Default::default() };
        let mut kept: Vec<StoredBatch> = Vec::new();
        let mut offset = seg.base_offset.max(self.log_start_offset());
        // A first pass decides; the rewrite holds at most the segment's kept batches.
        while offset < seg.end_offset.get() {
            let batches = self.read_segment(seg, offset).await?;
            let Some(last) = batches.last() else { break };
            offset = last.end_offset();
            for b in batches {
                let records = compactor.records(&b.payload).map_err(|reason| self.unreadable(&b, reason))?;
                let doomed: Vec<(u64, bool)> = records
                    .iter()
                    .filter(|r| match r.key {
                        None => true,
                        Some(key) => {
                            let superseded = map.get(&key).is_some_and(|latest| *latest > r.offset);
                            superseded || (r.tombstone && drop_tombstones)
                        }
                    })
                    .map(|r| (r.offset, r.tombstone))
                    .collect();
                let tombstones = records.iter().filter(|r| r.tombstone).count() as u64;
                outcome.tombstones_kept += tombstones - doomed.iter().filter(|(_, t)| *t).count() as u64;
                if doomed.is_empty() {
                    kept.push(b);
                    continue;
                }
                outcome.removed += doomed.len() as u64;
                outcome.tombstones_removed += doomed.iter().filter(|(_, t)| *t).count() as u64;
                let keep = |o: u64| !doomed.iter().any(|(d, _)| *d == o);
                match compactor.retain(&b.payload, &keep).map_err(|reason| self.unreadable(&b, reason))? {
                    Kept::All => kept.push(b),
                    Kept::Some(payload) => kept.push(StoredBatch { payload, ..b }),
                    Kept::Nothing => {}
                }
            }
        }
        if outcome.removed == 0 {
            return Ok(outcome);
        }
        // The replacement, entries contiguous: each reaches back to the previous one's end.
        let (base, end) = (seg.base_offset, seg.end_offset.get());
        let cleaned = cleaned_path(dir, base);
        let mut writer = SegmentWriter::create(disk, cleaned.clone()).await?;
        // Each entry is held until the next kept one shows it is not the last.
        let mut held: Option<Held> = None;
        let mut next = base;
        let throttle_from = std::time::Instant::now();
        let mut written = 0u64;
        for b in kept {
            if let Some(h) = held.take() {
                let own_end = h.batch.end_offset();
                write_spanned(&mut writer, &h, own_end).await?;
            }
            written += b.payload.len() as u64;
            let entry_base = next;
            next = b.end_offset();
            held = Some(Held { base: entry_base, batch: b });
            throttle(options, throttle_from, written).await;
        }
        // Removed entries after the last kept one (or all of them) are spanned by empty
        // batches: a reader at any offset gets a batch whose last offset reaches it, as Kafka's
        // clients need to move on.
        let trailing_from = match held {
            Some(h) => {
                let own_end = h.batch.end_offset();
                write_spanned(&mut writer, &h, own_end).await?;
                own_end
            }
            None => base,
        };
        let mut at = trailing_from;
        while at < end {
            let span = (end - at).min(i32::MAX as u64) as u32;
            let batch = StoredBatch {
                base_offset: at,
                record_count: span,
                first_timestamp_ms: seg.max_timestamp_ms.get().unwrap_or(0),
                max_timestamp_ms: seg.max_timestamp_ms.get().unwrap_or(0),
                append_time_ms: seg.last_append_ms.get().unwrap_or(0),
                leader_epoch: 0,
                raft_index: 0,
                payload: compactor.empty_batch(at, span),
            };
            write_spanned(&mut writer, &Held { base: at, batch }, at + span as u64).await?;
            at += span as u64;
        }
        let len = writer.finish().await?;
        outcome.bytes_after = len;
        outcome.rewritten = true;
        // Swap: `.cleaned` → `.swap` (a complete replacement recovery finishes installing),
        // old indexes gone, `.swap` → `.log`.
        // Readers that still hold the old segment keep reading the old file.
        *seg.retired.borrow_mut() = Some(seg.file.get().await?);
        let swap = swap_path(dir, base);
        disk.rename(&cleaned, &swap).await.map_err(|e| Error::io("renaming", &cleaned, e))?;
        segment::sync_dir(disk, dir).await?;
        seg.remove_indexes().await?;
        disk.rename(&swap, &seg.path).await.map_err(|e| Error::io("renaming", &swap, e))?;
        segment::sync_dir(disk, dir).await?;
        let replacement = Segment::open(disk, seg.path.clone(), base).await?;
        replacement.sealed.set(true);
        let config = &self.inner.config;
        let (good_end, scan) =
            replacement.rebuild(len, config.index_interval_bytes, config.read_chunk_bytes).await?;
        if let segment::ScanEnd::Damaged { position, fault } = scan {
            return Err(replacement.damaged(position, fault));
        }
        assert_eq!(good_end, len, "the replacement scans whole");
        replacement.write_indexes().await?;
        let replacement = Rc::new(replacement);
        assert_eq!(replacement.end_offset.get(), end, "a cleaned segment keeps its offsets");
        {
            let mut s = self.inner.state.borrow_mut();
            s.segments.insert(base, replacement);
            // The cache holds a contiguous run of the newest entries: those of this segment go,
            // with any older ones.
            s.cache.trim_front(end);
        }
        self.inner.readahead.borrow_mut().take();
        Ok(outcome)
    }
}

#[derive(Default)]
struct Rewrite {
    rewritten: bool,
    tombstones_kept: u64,
    removed: u64,
    tombstones_removed: u64,
    bytes_before: u64,
    bytes_after: u64,
}

async fn write_spanned(writer: &mut SegmentWriter, held: &Held, span_end: u64) -> Result<()> {
    let b = &held.batch;
    assert!(span_end > held.base, "an entry spans at least one offset");
    let meta = EntryMeta {
        base_offset: held.base,
        record_count: u32::try_from(span_end - held.base).expect("a span fits u32"),
        payload_len: u32::try_from(b.payload.len()).expect("a batch fits u32"),
        leader_epoch: b.leader_epoch,
        first_timestamp_ms: b.first_timestamp_ms,
        max_timestamp_ms: b.max_timestamp_ms,
        append_time_ms: b.append_time_ms,
        raft_index: b.raft_index,
        crc: 0,
    };
    let header = entry::encode_header_with(&meta, crc32c::crc32c(&b.payload));
    debug_assert_eq!(header.len(), ENTRY_HEADER_BYTES);
    writer.push(&header, &b.payload).await
}

/// Sleeps so that `written` bytes since `from` stay within the rate.
async fn throttle(options: &CompactionOptions, from: std::time::Instant, written: u64) {
    let Some(rate) = options.bytes_per_second_max.filter(|r| *r > 0) else { return };
    let due = std::time::Duration::from_secs_f64(written as f64 / rate as f64);
    if let Some(wait) = due.checked_sub(from.elapsed()) {
        glommio::timer::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_refuses_damage() {
        let state = CleanerState { cleaned_to: 77, segments: vec![(0, 5, 0), (40, 9, 3)] };
        let image = state.encode();
        assert_eq!(CleanerState::decode(&image), Ok(state));
        for i in 0..image.len() {
            let mut bad = image.clone();
            bad[i] ^= 1;
            assert!(CleanerState::decode(&bad).is_err(), "flip in byte {i}");
        }
    }
}

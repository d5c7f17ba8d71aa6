//! The partition log: ordered segments, group-committed direct-I/O appends, reads, recovery.
//!
//! A `Log` belongs to one shard and is driven by that shard's glommio executor; it is `!Send` and
//! uses no locks. Appends are queued in memory and written by a flusher task, one write in flight
//! at a time: every append that arrives while a write is in flight joins the next write (group
//! commit). Offsets are assigned when an append is queued, so they are dense and ordered.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::cache::BatchCache;
use crate::checkpoint::{self, RecoveryPoint};
use crate::clock::Clock;
use crate::config::{BLOCK_BYTES, Durability, LogConfig};
use crate::disk::Disk;
use crate::entry::{self, ENTRY_HEADER_BYTES, EntryMeta};
use crate::error::{Error, Result};
use crate::flush::{Pending, flusher, interval_sync, sync_written};
use crate::log_start;
use crate::notify::Notify;
use crate::recovery;
use crate::segment::{self, Segment};

/// One batch handed to [`Log::append`].
#[derive(Clone, Debug)]
pub struct Batch {
    /// The batch bytes, stored and returned unchanged except for the base-offset patch.
    pub payload: Bytes,
    /// Number of records in the batch; the batch takes this many offsets.
    pub record_count: u32,
    /// Timestamp of the first record.
    pub first_timestamp_ms: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp_ms: i64,
    /// Leader epoch of the appender (replication); 0 on a single node.
    pub leader_epoch: i32,
    /// If set, the log writes the assigned base offset as a big-endian i64 at this byte position
    /// of the payload before storing it (Kafka's RecordBatch v2 keeps its base offset outside
    /// its CRC for exactly this).
    pub base_offset_field: Option<usize>,
    /// If set, `(from, crc)`: the crc32c of `payload[from..]`, which the caller already knows
    /// (Kafka's batch CRC covers the bytes from the attributes on, and the broker has checked
    /// it). The log then checksums only `payload[..from]` and combines the two instead of reading
    /// the whole payload again. The base-offset field must lie before `from`. The caller must
    /// have checked the value against the bytes: a wrong one gives the entry a checksum that
    /// disagrees with them, so disk reads refuse it and recovery reports it as damage once it is
    /// below the recovery point, while the cache serves the bytes as given.
    pub known_suffix_crc: Option<(usize, u32)>,
    /// The batch's Raft index in its partition's replicated log (stored in the entry header and
    /// returned by reads); 0 for a log that is not replicated.
    pub raft_index: u64,
}

/// A batch as stored, returned by reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records.
    pub record_count: u32,
    /// Timestamp of the first record.
    pub first_timestamp_ms: i64,
    /// Largest record timestamp.
    pub max_timestamp_ms: i64,
    /// When the log accepted the batch (the log's clock).
    pub append_time_ms: i64,
    /// Leader epoch given at append.
    pub leader_epoch: i32,
    /// Raft index given at append (0: not replicated).
    pub raft_index: u64,
    /// The stored batch bytes.
    pub payload: Bytes,
}

impl StoredBatch {
    /// One past the last offset in the batch.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + self.record_count as u64
    }

    pub(crate) fn from_entry(meta: &EntryMeta, payload: Bytes) -> StoredBatch {
        StoredBatch {
            base_offset: meta.base_offset,
            record_count: meta.record_count,
            first_timestamp_ms: meta.first_timestamp_ms,
            max_timestamp_ms: meta.max_timestamp_ms,
            append_time_ms: meta.append_time_ms,
            leader_epoch: meta.leader_epoch,
            raft_index: meta.raft_index,
            payload,
        }
    }
}

/// What [`Log::enforce_retention`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Whole segments deleted.
    pub segments_deleted: usize,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start_offset: u64,
}

/// Sizes of a log, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Segment files on disk, the active one included.
    pub segments: usize,
    /// Bytes of entries on disk.
    pub size_bytes: u64,
    /// Bytes held by the recent-batch cache.
    pub cache_bytes: usize,
    /// The cache's budget.
    pub cache_bytes_max: usize,
    /// Bytes queued for the next write.
    pub pending_bytes: usize,
    /// Appends wait while this many bytes are queued.
    pub write_buffer_bytes_max: usize,
}

/// A partition log. Cloning gives another handle to the same log.
#[derive(Clone)]
pub struct Log {
    pub(crate) inner: Rc<Inner>,
}

/// Batches queued by [`Log::enqueue_all`], not yet known to be written.
#[must_use = "an append is acknowledged only after `wait`"]
pub struct Enqueued {
    log: Log,
    /// Base offset of each batch.
    pub bases: Vec<u64>,
    end: u64,
}

impl Enqueued {
    /// Waits until the batches are written (and, with `durable` under `Durability::Always`,
    /// synced); returns their base offsets.
    pub async fn wait(self, durable: bool) -> Result<Vec<u64>> {
        let durable = durable && self.log.inner.config.durability == Durability::Always;
        self.log.wait_for(self.end, durable).await?;
        Ok(self.bases)
    }
}

/// A disk read started ahead of the reader that will ask for it.
pub(crate) struct ReadAhead {
    offset: u64,
    bytes_max: usize,
    /// The log's truncation count when it started: after a truncation its bytes may be gone.
    truncations: u64,
    task: glommio::task::JoinHandle<Result<Vec<StoredBatch>>>,
}

pub(crate) struct Inner {
    /// This log, for tasks that must not keep it alive.
    pub me: std::rc::Weak<Inner>,
    /// At most one read-ahead per log, of at most one read's size.
    pub readahead: RefCell<Option<ReadAhead>>,
    pub dir: PathBuf,
    pub config: LogConfig,
    pub clock: Rc<dyn Clock>,
    /// Where the files live (the host's file system, or a simulated disk in tests).
    pub disk: Disk,
    pub state: RefCell<State>,
    /// Signalled whenever written/durable offsets move, the queue drains, or the log fails.
    pub changed: Notify,
}

pub(crate) struct State {
    /// Segments on disk by base offset; the last one is the active segment.
    pub segments: BTreeMap<u64, Rc<Segment>>,
    pub log_start: u64,
    /// Next offset to assign (queued appends included).
    pub next_offset: u64,
    /// One past the last offset on disk: what readers may see.
    pub written_end: u64,
    /// One past the last offset covered by a completed fdatasync.
    pub durable_end: u64,
    /// Where the durable data ends in the segment files (the recovery point to checkpoint).
    pub durable_point: RecoveryPoint,
    /// What the checkpoint file says, if it exists.
    pub checkpointed: Option<RecoveryPoint>,
    /// The segment the next append goes to, which the flusher may not have created yet.
    pub logical_base: u64,
    pub logical_bytes: u64,
    pub logical_opened_ms: i64,
    pub pending: VecDeque<Pending>,
    pub pending_bytes: usize,
    /// Appends wait while this many bytes are queued: `LogConfig::write_buffer_bytes_max`
    /// until [`Log::set_memory_limits`] changes it.
    pub write_buffer_bytes_max: usize,
    /// Bytes of the active segment's partial last block, rewritten by the next write.
    pub tail: Vec<u8>,
    pub flushing: bool,
    /// Truncation or close in progress: appends wait.
    pub exclusive: bool,
    /// Tasks waiting for exclusive access; appends wait too, so the queue drains.
    pub exclusive_wanted: u32,
    /// Retention, truncation or close in progress: they exclude one another.
    pub maintenance: bool,
    /// Bumped by every truncation, so a sync that started before one cannot claim offsets that
    /// the truncation removed.
    pub truncations: u64,
    /// Sealed segments whose index files are being written in the background.
    pub index_writes: usize,
    pub failed: bool,
    pub closed: bool,
    pub cache: BatchCache,
}

impl State {
    pub fn active(&self) -> &Rc<Segment> {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    pub(crate) fn find_segment(&self, offset: u64) -> Option<Rc<Segment>> {
        self.segments.range(..=offset).next_back().map(|(_, s)| s.clone())
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering from any crash: the active
    /// segment's torn tail is truncated, missing or stale indexes are rebuilt, and damage in
    /// sealed segments is an error that names the file and byte offset.
    pub async fn open(dir: impl Into<PathBuf>, config: LogConfig, clock: Rc<dyn Clock>) -> Result<Log> {
        Log::open_on(Disk::Direct, dir, config, clock).await
    }

    /// [`Log::open`] on `disk` (a [`Disk::Simulated`] one in power-loss tests).
    pub async fn open_on(
        disk: Disk,
        dir: impl Into<PathBuf>,
        config: LogConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Log> {
        config.validate()?;
        let dir = dir.into();
        let dir =
            disk.create_dir(dir.clone()).await.map_err(|e| Error::io("creating log directory", dir, e))?;
        let recovered = recovery::recover(&disk, &dir, &config).await?;
        let active =
            recovered.segments.values().next_back().expect("recovery leaves an active segment").clone();
        let end = active.end_offset.get();
        let len = active.len_bytes.get();
        let first_base = *recovered.segments.keys().next().expect("non-empty");
        let log_start = match log_start::read(&disk, &dir).await? {
            Some(persisted) if persisted > end => {
                tracing::warn!(dir = %dir.display(), persisted, end,
                    "the persisted log start lies beyond the recovered log end; starting at the end");
                end.max(first_base)
            }
            Some(persisted) => persisted.max(first_base),
            None => first_base,
        };
        let state = State {
            log_start,
            next_offset: end,
            written_end: end,
            durable_end: end,
            durable_point: RecoveryPoint { segment_base: active.base_offset, position: len, end_offset: end },
            checkpointed: recovered.checkpointed,
            logical_base: active.base_offset,
            logical_bytes: len,
            logical_opened_ms: active.first_append_ms.get().unwrap_or_else(|| clock.now_ms()),
            pending: VecDeque::new(),
            pending_bytes: 0,
            write_buffer_bytes_max: config.write_buffer_bytes_max,
            tail: recovered.tail,
            flushing: false,
            exclusive: false,
            exclusive_wanted: 0,
            maintenance: false,
            truncations: 0,
            index_writes: 0,
            failed: false,
            closed: false,
            cache: BatchCache::new(config.cache_bytes_max),
            segments: recovered.segments,
        };
        let inner = Rc::new_cyclic(|me| Inner {
            me: me.clone(),
            readahead: RefCell::new(None),
            dir,
            disk,
            config,
            clock,
            state: RefCell::new(state),
            changed: Notify::default(),
        });
        if let Some(interval) = inner.config.sync_interval() {
            glommio::spawn_local(interval_sync(Rc::downgrade(&inner), interval)).detach();
        }
        let every = std::time::Duration::from_millis(inner.config.recovery_checkpoint_interval_ms);
        glommio::spawn_local(checkpoint_periodically(Rc::downgrade(&inner), every)).detach();
        let log = Log { inner };
        // A crash after a deletion's log start was recorded may have left segments below it.
        log.remove_segments_below_start().await?;
        Ok(log)
    }

    /// Writes the recovery-point checkpoint if the durable end moved since the last one. The log
    /// does this by itself at close, after truncations and every
    /// `recovery_checkpoint_interval_ms`.
    pub async fn checkpoint(&self) -> Result<()> {
        self.acquire_maintenance().await?;
        let result = self.checkpoint_locked().await;
        self.release_maintenance();
        result
    }

    /// Writes the checkpoint; the caller holds maintenance (no truncation can run meanwhile).
    pub(crate) async fn checkpoint_locked(&self) -> Result<()> {
        let point = {
            let s = self.inner.state.borrow();
            if s.checkpointed == Some(s.durable_point) {
                return Ok(());
            }
            s.durable_point
        };
        checkpoint::write(&self.inner.disk, &self.inner.dir, &point).await?;
        self.inner.state.borrow_mut().checkpointed = Some(point);
        Ok(())
    }

    /// The recovery point last written to the checkpoint file, if any.
    pub fn checkpointed(&self) -> Option<RecoveryPoint> {
        self.inner.state.borrow().checkpointed
    }

    /// Appends a batch and returns its base offset once the log's durability policy is met.
    /// A refused batch (empty, too large) leaves the log untouched.
    pub async fn append(&self, batch: Batch) -> Result<u64> {
        let durable = self.inner.config.durability == Durability::Always;
        self.append_inner(batch, durable).await
    }

    /// Appends a batch and returns its base offset once it is written to the disk, whatever
    /// the durability policy (Kafka's acks=1: the leader has it, a power loss may lose it
    /// before the next sync).
    pub async fn append_written(&self, batch: Batch) -> Result<u64> {
        self.append_inner(batch, false).await
    }

    async fn append_inner(&self, batch: Batch, durable: bool) -> Result<u64> {
        let bases = self.append_batches(vec![batch], durable).await?;
        Ok(bases[0])
    }

    /// Appends several batches as one unit: every batch is checked first (one refused batch
    /// leaves the log untouched), all are queued back to back with consecutive offsets, and the
    /// future resolves when the last one meets the policy (`durable`: the log's durability
    /// policy; otherwise written). Returns their base offsets.
    pub async fn append_all(&self, batches: Vec<Batch>, durable: bool) -> Result<Vec<u64>> {
        let durable = durable && self.inner.config.durability == Durability::Always;
        self.append_batches(batches, durable).await
    }

    async fn append_batches(&self, batches: Vec<Batch>, durable: bool) -> Result<Vec<u64>> {
        self.enqueue_all(batches).await?.wait(durable).await
    }

    /// The first half of [`Log::append_all`]: waits for room in the write buffer, then assigns
    /// offsets to all `batches` and queues them (nothing else can interleave). Appends whose
    /// `enqueue_all` calls return in some order take offsets in that order, so a caller that
    /// must order appends (idempotent producers) serializes only this half and waits for the
    /// writes with [`Enqueued::wait`] outside its critical section.
    pub async fn enqueue_all(&self, batches: Vec<Batch>) -> Result<Enqueued> {
        if batches.is_empty() {
            return Err(Error::InvalidBatch("no batches"));
        }
        let sizes = batches.iter().map(|b| self.check_batch(b)).collect::<Result<Vec<u64>>>()?;
        let total: u64 = sizes.iter().sum();
        loop {
            {
                let s = self.inner.state.borrow();
                self.check_usable(&s)?;
                let fits =
                    s.pending_bytes == 0 || s.pending_bytes + total as usize <= s.write_buffer_bytes_max;
                if fits && !s.exclusive && s.exclusive_wanted == 0 {
                    break;
                }
            }
            self.inner.changed.changed().await;
        }
        // Synchronous from here to the last enqueue: no other append can interleave.
        let mut bases = Vec::with_capacity(batches.len());
        let mut end = 0;
        for (batch, size) in batches.into_iter().zip(sizes) {
            let (base, batch_end) = self.enqueue(batch, size);
            bases.push(base);
            end = batch_end;
        }
        self.kick();
        Ok(Enqueued { log: self.clone(), bases, end })
    }

    fn check_batch(&self, batch: &Batch) -> Result<u64> {
        if batch.record_count == 0 {
            return Err(Error::InvalidBatch("zero records"));
        }
        if batch.payload.is_empty() {
            return Err(Error::InvalidBatch("empty payload"));
        }
        if batch.payload.len() > self.inner.config.batch_bytes_max as usize {
            return Err(Error::BatchTooLarge {
                size: batch.payload.len(),
                max: self.inner.config.batch_bytes_max,
            });
        }
        if batch.max_timestamp_ms < batch.first_timestamp_ms {
            return Err(Error::InvalidBatch("max timestamp before first timestamp"));
        }
        if let Some(at) = batch.base_offset_field
            && at.checked_add(8).is_none_or(|end| end > batch.payload.len())
        {
            return Err(Error::InvalidBatch("base offset field outside the payload"));
        }
        if let Some((from, _)) = batch.known_suffix_crc {
            if from > batch.payload.len() {
                return Err(Error::InvalidBatch("known CRC range outside the payload"));
            }
            if batch.base_offset_field.is_some_and(|at| at + 8 > from) {
                return Err(Error::InvalidBatch("known CRC range covers the base offset field"));
            }
        }
        let next = self.inner.state.borrow().next_offset;
        if next.checked_add(batch.record_count as u64).is_none_or(|end| end > i64::MAX as u64) {
            return Err(Error::InvalidBatch("offsets exhausted"));
        }
        Ok(ENTRY_HEADER_BYTES as u64 + batch.payload.len() as u64)
    }

    pub(crate) fn check_usable(&self, s: &State) -> Result<()> {
        if s.failed {
            return Err(Error::Failed(self.inner.dir.clone()));
        }
        if s.closed {
            return Err(Error::Closed(self.inner.dir.clone()));
        }
        Ok(())
    }

    /// Assigns offsets, encodes the header and queues the entry. Synchronous: no other task runs
    /// between the offset assignment and the queueing, so queue order is offset order.
    fn enqueue(&self, batch: Batch, entry_bytes: u64) -> (u64, u64) {
        let config = &self.inner.config;
        let now = self.inner.clock.now_ms();
        let mut s = self.inner.state.borrow_mut();
        let too_big = s.logical_bytes + entry_bytes > config.segment_size_bytes_max;
        let too_old = now.saturating_sub(s.logical_opened_ms) >= config.segment_age_ms_max as i64;
        // Index entries hold offsets relative to the segment base as u32.
        let too_many = s.next_offset + batch.record_count as u64 - s.logical_base > u32::MAX as u64;
        if s.logical_bytes > 0 && (too_big || too_old || too_many) {
            s.logical_base = s.next_offset;
            s.logical_bytes = 0;
        }
        if s.logical_bytes == 0 {
            s.logical_opened_ms = now;
        }
        s.logical_bytes += entry_bytes;

        let base = s.next_offset;
        let payload = match batch.base_offset_field {
            None => batch.payload,
            Some(at) => {
                let mut patched = bytes::BytesMut::from(&batch.payload[..]);
                patched[at..at + 8].copy_from_slice(&(base as i64).to_be_bytes());
                patched.freeze()
            }
        };
        let meta = EntryMeta {
            base_offset: base,
            record_count: batch.record_count,
            payload_len: payload.len() as u32,
            leader_epoch: batch.leader_epoch,
            first_timestamp_ms: batch.first_timestamp_ms,
            max_timestamp_ms: batch.max_timestamp_ms,
            append_time_ms: now,
            raft_index: batch.raft_index,
            crc: 0,
        };
        let payload_crc = match batch.known_suffix_crc {
            Some((from, crc)) => {
                crc32c::crc32c_combine(crc32c::crc32c(&payload[..from]), crc, payload.len() - from)
            }
            None => crc32c::crc32c(&payload),
        };
        let header = entry::encode_header_with(&meta, payload_crc);
        s.next_offset = meta.end_offset();
        s.pending_bytes += entry_bytes as usize;
        s.cache.push(StoredBatch::from_entry(&meta, payload.clone()));
        let segment_base = s.logical_base;
        s.pending.push_back(Pending { segment_base, header, meta, payload });
        (base, meta.end_offset())
    }

    /// Starts the flusher task unless one is running.
    fn kick(&self) {
        let mut s = self.inner.state.borrow_mut();
        if s.flushing || s.pending.is_empty() {
            return;
        }
        s.flushing = true;
        drop(s);
        glommio::spawn_local(flusher(self.inner.clone())).detach();
    }

    /// Waits until `end` is written (or durable).
    /// Waits until every offset below `end` is written (with `durable`, under
    /// `Durability::Always`, also synced): an acknowledgement for a batch appended earlier.
    pub async fn wait_stored(&self, end: u64, durable: bool) -> Result<()> {
        let durable = durable && self.inner.config.durability == Durability::Always;
        self.wait_for(end, durable).await
    }

    async fn wait_for(&self, end: u64, durable: bool) -> Result<()> {
        loop {
            {
                let s = self.inner.state.borrow();
                let reached = if durable { s.durable_end >= end } else { s.written_end >= end };
                if reached {
                    return Ok(());
                }
                if s.failed {
                    return Err(Error::Failed(self.inner.dir.clone()));
                }
            }
            self.inner.changed.changed().await;
        }
    }

    /// Reads batches starting with the one that contains `offset`, up to about `bytes_max` bytes
    /// of payload (always at least one whole batch, as Kafka fetch does). Only written batches
    /// are visible. Reading at the log end returns an empty list.
    pub async fn read(&self, offset: u64, bytes_max: usize) -> Result<Vec<StoredBatch>> {
        {
            let s = self.inner.state.borrow();
            if offset < s.log_start || offset > s.written_end {
                return Err(Error::OffsetOutOfRange { offset, start: s.log_start, end: s.written_end });
            }
            if offset == s.written_end {
                return Ok(Vec::new());
            }
            if let Some(batches) = s.cache.read(offset, s.written_end, bytes_max) {
                crate::io_stats::with(|s| s.cache_hits += 1);
                return Ok(batches);
            }
        }
        crate::io_stats::with(|s| s.cache_misses += 1);
        let ahead = self.inner.readahead.borrow_mut().take();
        let truncations = self.inner.state.borrow().truncations;
        let batches = match ahead {
            Some(ahead)
                if ahead.offset == offset
                    && ahead.bytes_max == bytes_max
                    && ahead.truncations == truncations =>
            {
                match ahead.task.await {
                    Some(Ok(batches)) if !batches.is_empty() => batches,
                    _ => read_disk(&self.inner, offset, bytes_max).await?,
                }
            }
            _ => read_disk(&self.inner, offset, bytes_max).await?,
        };
        // A read-ahead may have raced a truncation that has not finished: never show more than
        // what is written now.
        let end = self.inner.state.borrow().written_end;
        let mut batches: Vec<StoredBatch> = batches.into_iter().filter(|b| b.end_offset() <= end).collect();
        if batches.is_empty() && offset < end {
            batches = read_disk(&self.inner, offset, bytes_max).await?;
        }
        if let Some(last) = batches.last() {
            self.start_readahead(last.end_offset(), bytes_max);
        }
        Ok(batches)
    }

    /// A reader that went to the disk usually comes back for what follows: read it now, while
    /// the caller sends this answer, unless the cache already holds it.
    fn start_readahead(&self, offset: u64, bytes_max: usize) {
        {
            let s = self.inner.state.borrow();
            if s.exclusive || offset >= s.written_end || s.cache.read(offset, s.written_end, 1).is_some() {
                return;
            }
        }
        let truncations = self.inner.state.borrow().truncations;
        let inner = self.inner.clone();
        let task = glommio::spawn_local(async move { read_disk(&inner, offset, bytes_max).await }).detach();
        *self.inner.readahead.borrow_mut() = Some(ReadAhead { offset, bytes_max, truncations, task });
    }

    /// Base offset of the first batch whose max timestamp is at least `timestamp_ms`, or `None`
    /// if no written batch reaches it.
    /// Batches wholly below the log start are not looked at; one that straddles it answers the
    /// log start.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>> {
        let (segments, start): (Vec<Rc<Segment>>, u64) = {
            let s = self.inner.state.borrow();
            (s.segments.values().cloned().collect(), s.log_start)
        };
        for segment in segments {
            if segment.max_timestamp_ms.get().is_none_or(|max| max < timestamp_ms)
                || segment.end_offset.get() <= start
            {
                continue;
            }
            let limit = segment.len_bytes.get();
            if let Some(offset) =
                segment.find_timestamp(timestamp_ms, start, limit, self.inner.config.read_chunk_bytes).await?
            {
                return Ok(Some(offset.max(start)));
            }
        }
        Ok(None)
    }

    /// The largest record timestamp of the written batches, if there are any.
    pub fn max_timestamp_ms(&self) -> Option<i64> {
        self.inner.state.borrow().segments.values().filter_map(|s| s.max_timestamp_ms.get()).max()
    }

    /// The first offset still in the log: the first segment's base, or beyond it after
    /// [`Log::delete_records_before`].
    pub fn log_start_offset(&self) -> u64 {
        self.inner.state.borrow().log_start
    }

    /// One past the last offset written to disk; readers see exactly `[start, end)`.
    pub fn log_end_offset(&self) -> u64 {
        self.inner.state.borrow().written_end
    }

    /// One past the last offset covered by a completed `fdatasync`.
    pub fn durable_end_offset(&self) -> u64 {
        self.inner.state.borrow().durable_end
    }

    /// Waits until the log holds data at `offset` (its end has moved past it), or `timeout`
    /// passes, or the log fails or closes; returns whether data is there. Long-polling fetches
    /// park here instead of polling.
    pub async fn wait_for_data(&self, offset: u64, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            {
                let s = self.inner.state.borrow();
                if s.written_end > offset {
                    return true;
                }
                if s.failed || s.closed {
                    return false;
                }
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let changed = self.inner.changed.changed();
            let timer = glommio::timer::sleep(deadline - now);
            futures_lite::future::or(changed, timer).await;
        }
    }

    /// Base offset of the segment appends go to now (a change means the log rolled).
    pub fn active_segment_base(&self) -> u64 {
        self.inner.state.borrow().logical_base
    }

    /// The offset the next append will get (queued appends included).
    pub fn next_offset(&self) -> u64 {
        self.inner.state.borrow().next_offset
    }

    /// Sizes, for metrics.
    pub fn stats(&self) -> LogStats {
        let s = self.inner.state.borrow();
        LogStats {
            segments: s.segments.len(),
            size_bytes: s.segments.values().map(|seg| seg.len_bytes.get()).sum(),
            cache_bytes: s.cache.bytes(),
            cache_bytes_max: s.cache.bytes_max(),
            pending_bytes: s.pending_bytes,
            write_buffer_bytes_max: s.write_buffer_bytes_max,
        }
    }

    /// Changes the log's memory budgets while it runs (its shard's budget is shared by however
    /// many partitions it holds now): a smaller cache evicts at once, a smaller write buffer
    /// makes appends wait until the queue fits it. The write buffer must be a non-zero multiple
    /// of [`BLOCK_BYTES`] that holds the largest batch.
    pub fn set_memory_limits(&self, cache_bytes_max: usize, write_buffer_bytes_max: usize) -> Result<()> {
        let config = LogConfig { cache_bytes_max, write_buffer_bytes_max, ..self.inner.config.clone() };
        config.validate()?;
        let mut s = self.inner.state.borrow_mut();
        s.cache.set_bytes_max(cache_bytes_max);
        s.write_buffer_bytes_max = write_buffer_bytes_max;
        drop(s);
        self.inner.changed.notify_all();
        Ok(())
    }

    /// Writes everything queued so far and makes it durable.
    pub async fn sync(&self) -> Result<()> {
        let target = self.inner.state.borrow().next_offset;
        self.kick();
        self.wait_for(target, false).await?;
        sync_written(&self.inner).await?;
        // Sealed segments' index files, written in the background, are part of what is synced.
        while self.inner.state.borrow().index_writes > 0 {
            self.inner.changed.changed().await;
        }
        Ok(())
    }

    /// Waits until no retention, truncation or close runs, then claims the right to run one.
    pub(crate) async fn acquire_maintenance(&self) -> Result<()> {
        loop {
            {
                let mut s = self.inner.state.borrow_mut();
                self.check_usable(&s)?;
                if !s.maintenance {
                    s.maintenance = true;
                    return Ok(());
                }
            }
            self.inner.changed.changed().await;
        }
    }

    pub(crate) fn release_maintenance(&self) {
        self.inner.state.borrow_mut().maintenance = false;
        self.inner.changed.notify_all();
    }

    /// Stops new appends, waits for the queue to drain and the flusher to stop, then holds the
    /// log exclusively.
    pub(crate) async fn acquire_exclusive(&self) -> Result<()> {
        self.inner.state.borrow_mut().exclusive_wanted += 1;
        let result = loop {
            {
                let mut s = self.inner.state.borrow_mut();
                if let Err(e) = self.check_usable(&s) {
                    break Err(e);
                }
                if !s.exclusive && !s.flushing && s.pending.is_empty() && s.index_writes == 0 {
                    s.exclusive = true;
                    break Ok(());
                }
            }
            self.kick();
            self.inner.changed.changed().await;
        };
        self.inner.state.borrow_mut().exclusive_wanted -= 1;
        self.inner.changed.notify_all();
        result
    }

    pub(crate) fn release_exclusive(&self, failed: bool) {
        let mut s = self.inner.state.borrow_mut();
        s.exclusive = false;
        s.failed |= failed;
        drop(s);
        self.inner.changed.notify_all();
    }

    /// Reads every entry of every segment and checks its checksum and offset order; the first
    /// damage found is returned as [`Error::Corrupt`] naming the file and byte offset.
    pub async fn verify(&self) -> Result<()> {
        let segments: Vec<Rc<Segment>> = self.inner.state.borrow().segments.values().cloned().collect();
        let mut expected = segments.first().map(|s| s.base_offset).unwrap_or(0);
        for segment in segments {
            let (end, walked) = segment.walk(expected, u64::MAX, self.inner.config.read_chunk_bytes).await?;
            if let segment::Walked::Damaged { position, reason } = walked {
                return Err(Error::corrupt(&segment.path, position, reason));
            }
            expected = end;
        }
        Ok(())
    }

    /// Writes and syncs everything queued, trims the active segment to its exact length, and
    /// refuses further appends.
    pub async fn close(&self) -> Result<()> {
        self.sync().await?;
        self.acquire_maintenance().await?;
        if let Err(e) = self.acquire_exclusive().await {
            self.release_maintenance();
            return Err(e);
        }
        let active = self.inner.state.borrow().active().clone();
        let result = async {
            active.truncate_file(active.len_bytes.get()).await?;
            active.sync().await?;
            // Everything is durable now: the next open trusts the whole log.
            self.checkpoint_locked().await
        }
        .await;
        let mut s = self.inner.state.borrow_mut();
        s.closed = true;
        s.exclusive = false;
        s.maintenance = false;
        drop(s);
        self.inner.changed.notify_all();
        result
    }

    /// Base offset of the oldest segment holding a batch appended (by the log's clock) at or
    /// after `since_ms`, or the log end if none does: where a reader that needs every batch
    /// appended since then starts.
    pub fn first_offset_appended_since(&self, since_ms: i64) -> u64 {
        let s = self.inner.state.borrow();
        let first =
            s.segments.iter().find(|(_, seg)| seg.last_append_ms.get().is_some_and(|t| t >= since_ms));
        first.map_or(s.written_end, |(base, _)| (*base).max(s.log_start))
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// Background task of every log: rewrites the checkpoint every `every` while the durable end
/// moves.
async fn checkpoint_periodically(inner: std::rc::Weak<Inner>, every: std::time::Duration) {
    loop {
        glommio::timer::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        {
            let s = inner.state.borrow();
            if s.closed || s.failed {
                return;
            }
            if s.checkpointed == Some(s.durable_point) || s.maintenance {
                continue;
            }
        }
        let log = Log { inner };
        match log.checkpoint().await {
            Ok(()) => {}
            Err(Error::Closed(_) | Error::Failed(_)) => return,
            Err(error) => {
                // Not fatal: the older checkpoint claims less, which is still true.
                tracing::warn!(dir = %log.inner.dir.display(), %error, "writing the recovery-point checkpoint failed");
            }
        }
    }
}

/// Reads batches from the segment holding `offset` (or the next one), up to what is written.
async fn read_disk(inner: &Inner, offset: u64, bytes_max: usize) -> Result<Vec<StoredBatch>> {
    let (mut segment, end) = {
        let s = inner.state.borrow();
        if offset < s.log_start || offset >= s.written_end {
            return Ok(Vec::new());
        }
        (s.find_segment(offset).expect("offset within the log has a segment"), s.written_end)
    };
    loop {
        let limit = segment.len_bytes.get();
        let batches = segment
            .read_batches(
                offset,
                bytes_max,
                limit,
                inner.config.read_chunk_bytes,
                inner.config.read_ahead_chunks,
            )
            .await?;
        let batches: Vec<_> = batches.into_iter().filter(|b| b.end_offset() <= end).collect();
        if !batches.is_empty() {
            return Ok(batches);
        }
        // The offset lies past this segment's end: the next segment holds it.
        let next = {
            let s = inner.state.borrow();
            s.segments.range(segment.base_offset + 1..).next().map(|(_, seg)| seg.clone())
        };
        match next {
            Some(next) if next.base_offset <= offset => segment = next,
            _ => return Ok(Vec::new()),
        }
    }
}

const _: () = assert!(BLOCK_BYTES.is_power_of_two());

//! Maintenance of a log: truncation (replication's divergence repair) and retention. Both hold
//! the maintenance right; truncation also holds the log exclusively.

use crate::checkpoint::{self, RecoveryPoint};
use crate::entry;
use crate::error::{Error, Result};
use crate::log::{Log, RetentionReport};
use crate::log_start;
use crate::recovery;
use crate::segment::{self, Segment};

impl Log {
    /// Removes every batch whose offsets reach `offset` or beyond (replication uses this when a
    /// follower diverged). If `offset` falls inside a batch, that whole batch goes. Returns the
    /// new log end offset. Appends wait while it runs.
    pub async fn truncate(&self, offset: u64) -> Result<u64> {
        {
            let s = self.inner.state.borrow();
            if offset < s.log_start {
                return Err(Error::OffsetOutOfRange { offset, start: s.log_start, end: s.written_end });
            }
        }
        self.acquire_maintenance().await?;
        if let Err(e) = self.acquire_exclusive().await {
            self.release_maintenance();
            return Err(e);
        }
        self.inner.readahead.borrow_mut().take();
        let result = self.truncate_exclusive(offset).await;
        // Past the argument checks, any error left the files in an unknown state.
        let failed = matches!(&result, Err(e) if !matches!(e, Error::OffsetOutOfRange { .. }));
        self.release_exclusive(failed);
        self.release_maintenance();
        result
    }

    async fn truncate_exclusive(&self, offset: u64) -> Result<u64> {
        // Invalidate read-aheads and syncs that started before the cut, before any await.
        self.inner.state.borrow_mut().truncations += 1;
        let (segment, later) = {
            let s = self.inner.state.borrow();
            if offset < s.log_start {
                return Err(Error::OffsetOutOfRange { offset, start: s.log_start, end: s.written_end });
            }
            if offset >= s.written_end {
                return Ok(s.written_end);
            }
            let segment = s.find_segment(offset).expect("offset within the log");
            let later: Vec<_> =
                s.segments.range(segment.base_offset + 1..).map(|(_, seg)| seg.clone()).collect();
            (segment, later)
        };
        let config = &self.inner.config;
        // Newest first, so a crash part-way leaves a log that is a prefix of the old one; the
        // directory is synced before the cut so removed segments cannot reappear beside it.
        for seg in later.iter().rev() {
            remove_segment_files(seg).await?;
            self.inner.state.borrow_mut().segments.remove(&seg.base_offset);
        }
        // The checkpoint may claim bytes beyond the cut: it goes (durably) before them.
        segment::remove_snapshots_above(&self.inner.disk, &self.inner.dir, offset).await?;
        checkpoint::remove(&self.inner.disk, &self.inner.dir).await?;
        self.inner.state.borrow_mut().checkpointed = None;
        let cut = cut_position(&segment, offset, config.read_chunk_bytes).await?;
        segment.remove_indexes().await?;
        // Readers stop at the cut before the file shrinks under them.
        segment.len_bytes.set(cut);
        {
            let mut s = self.inner.state.borrow_mut();
            s.written_end = s.written_end.min(offset);
        }
        segment.truncate_file(cut).await?;
        segment.sync().await?;
        segment::sync_dir(&self.inner.disk, &self.inner.dir).await?;
        segment.sealed.set(false);
        let (len, end) = segment.rebuild(cut, config.index_interval_bytes, config.read_chunk_bytes).await?;
        if !matches!(end, segment::ScanEnd::Clean) || len != cut {
            return Err(segment.damaged(len, entry::EntryFault::BadHeader("rescan after truncation")));
        }
        segment.len_bytes.set(cut);
        let tail = recovery::read_tail(&segment).await?;
        let new_end = segment.end_offset.get();
        {
            let mut s = self.inner.state.borrow_mut();
            s.truncations += 1;
            s.next_offset = new_end;
            s.written_end = new_end;
            s.durable_end = new_end;
            s.durable_point =
                RecoveryPoint { segment_base: segment.base_offset, position: cut, end_offset: new_end };
            s.logical_base = segment.base_offset;
            s.logical_bytes = cut;
            s.logical_opened_ms = segment.first_append_ms.get().unwrap_or_else(|| self.inner.clock.now_ms());
            s.tail = tail;
            s.cache.truncate(new_end);
        }
        self.checkpoint_locked().await?;
        Ok(new_end)
    }

    /// Deletes whole sealed segments, oldest first, while the oldest is older than
    /// `retention_age_ms_max` (by its newest append time) or the log is larger than
    /// `retention_bytes_max`. The active segment is never deleted.
    pub async fn enforce_retention(&self) -> Result<RetentionReport> {
        self.acquire_maintenance().await?;
        let result = self.retention_locked().await;
        self.release_maintenance();
        result
    }

    async fn retention_locked(&self) -> Result<RetentionReport> {
        let config = &self.inner.config;
        let now = self.inner.clock.now_ms();
        let doomed = {
            let s = self.inner.state.borrow();
            let mut size: u64 = s.segments.values().map(|seg| seg.len_bytes.get()).sum();
            let mut doomed = Vec::new();
            for seg in s.segments.values().take(s.segments.len() - 1) {
                let age = now.saturating_sub(seg.last_append_ms.get().unwrap_or(now));
                let too_old = config.retention_age_ms_max.is_some_and(|max| age >= max as i64);
                let too_big = config.retention_bytes_max.is_some_and(|max| size > max);
                if !(too_old || too_big) {
                    break;
                }
                size -= seg.len_bytes.get();
                doomed.push(seg.clone());
            }
            doomed
        };
        let mut report = RetentionReport::default();
        for seg in &doomed {
            let next_start = seg.end_offset.get();
            {
                let mut s = self.inner.state.borrow_mut();
                let oldest = s.segments.keys().next() == Some(&seg.base_offset);
                assert!(oldest && s.segments.len() > 1, "retention deletes only the oldest sealed segment");
                s.segments.remove(&seg.base_offset);
                s.log_start = s.log_start.max(next_start);
                let start = s.log_start;
                s.cache.trim_front(start);
            }
            remove_segment_files(seg).await?;
            report.segments_deleted += 1;
            report.bytes_deleted += seg.len_bytes.get();
        }
        if !doomed.is_empty() {
            segment::sync_dir(&self.inner.disk, &self.inner.dir).await?;
            tracing::info!(dir = %self.inner.dir.display(), segments = report.segments_deleted,
                bytes = report.bytes_deleted, "retention deleted segments");
        }
        report.log_start_offset = self.log_start_offset();
        Ok(report)
    }
}

impl Log {
    /// Deletes every record below `offset` (Kafka's DeleteRecords): the log start moves there,
    /// durably (see [`crate::log_start`]), even inside a segment; segments wholly below it are
    /// removed. An `offset` at or below the log start changes nothing; one beyond the log end
    /// is [`Error::OffsetOutOfRange`]. Returns the log start after the call (Kafka's low
    /// watermark).
    pub async fn delete_records_before(&self, offset: u64) -> Result<u64> {
        self.acquire_maintenance().await?;
        let result = self.delete_records_locked(offset).await;
        self.release_maintenance();
        result
    }

    async fn delete_records_locked(&self, offset: u64) -> Result<u64> {
        {
            let s = self.inner.state.borrow();
            if offset > s.written_end {
                return Err(Error::OffsetOutOfRange { offset, start: s.log_start, end: s.written_end });
            }
            if offset <= s.log_start {
                return Ok(s.log_start);
            }
        }
        // Recorded before anything changes: an acknowledged deletion must survive a crash.
        log_start::write(&self.inner.disk, &self.inner.dir, offset).await?;
        {
            let mut s = self.inner.state.borrow_mut();
            s.log_start = s.log_start.max(offset);
            s.cache.trim_front(offset);
        }
        tracing::info!(dir = %self.inner.dir.display(), log_start = offset, "records deleted below a new log start");
        self.remove_segments_below_start_locked().await?;
        Ok(self.log_start_offset())
    }

    /// Removes the sealed segments that hold nothing at or beyond the log start (left by a
    /// crash between recording a deletion and removing them).
    pub(crate) async fn remove_segments_below_start(&self) -> Result<()> {
        self.acquire_maintenance().await?;
        let result = self.remove_segments_below_start_locked().await;
        self.release_maintenance();
        result
    }

    async fn remove_segments_below_start_locked(&self) -> Result<()> {
        let doomed: Vec<_> = {
            let s = self.inner.state.borrow();
            let sealed = s.segments.values().take(s.segments.len() - 1);
            sealed.take_while(|seg| seg.end_offset.get() <= s.log_start).cloned().collect()
        };
        for seg in &doomed {
            {
                let mut s = self.inner.state.borrow_mut();
                let oldest = s.segments.keys().next() == Some(&seg.base_offset);
                assert!(oldest && s.segments.len() > 1, "only the oldest sealed segment goes");
                s.segments.remove(&seg.base_offset);
            }
            remove_segment_files(seg).await?;
        }
        if !doomed.is_empty() {
            segment::sync_dir(&self.inner.disk, &self.inner.dir).await?;
        }
        Ok(())
    }
}

/// Finds the byte position in `segment` of the first entry whose offsets reach `offset`.
async fn cut_position(segment: &Segment, offset: u64, chunk_bytes: usize) -> Result<u64> {
    let relative = u32::try_from(offset - segment.base_offset).unwrap_or(u32::MAX);
    let start = segment.index.borrow().position_for_offset(relative) as u64;
    let limit = segment.len_bytes.get();
    let mut cut = limit;
    let end = segment
        .scan(start, limit, chunk_bytes, |meta, position, _| {
            if meta.end_offset() > offset {
                cut = position;
                return segment::Visit::Stop;
            }
            segment::Visit::Continue
        })
        .await?;
    if let segment::ScanEnd::Damaged { position, fault } = end {
        return Err(segment.damaged(position, fault));
    }
    Ok(cut)
}

async fn remove_segment_files(segment: &Segment) -> Result<()> {
    segment::remove_if_exists(segment.file.disk(), &segment.path).await?;
    segment.remove_indexes().await
}

//! The write path behind `Log::append`: the flusher task, group commit and segment rolls.
//!
//! The flusher takes every queued entry bound for one segment, copies them into one aligned DMA
//! buffer that starts with the segment's partial last block, and writes it. It builds the next
//! buffer while the previous write is in flight, so copying overlaps the disk; writes are still
//! issued one at a time because consecutive writes share that partial block. Under
//! `Durability::Always` the sync of one write runs while the next write is in flight.

use std::rc::{Rc, Weak};

use bytes::Bytes;
use glommio::io::DmaBuffer;

use crate::checkpoint::RecoveryPoint;
use crate::config::Durability;
use crate::disk;
use crate::entry::{self, ENTRY_HEADER_BYTES, EntryMeta};
use crate::error::{Error, Result};
use crate::log::Inner;
use crate::segment::{self, Segment, align_down, align_up};

/// An entry queued for the flusher.
pub(crate) struct Pending {
    pub segment_base: u64,
    pub header: [u8; ENTRY_HEADER_BYTES],
    pub meta: EntryMeta,
    pub payload: Bytes,
}

/// A write built from a group of entries, not yet complete.
struct Write {
    segment: Rc<Segment>,
    group: Vec<Pending>,
    start_len: u64,
    new_len: u64,
    /// The partial last block after this write.
    new_tail: Vec<u8>,
    expected_bytes: usize,
}

struct InFlight {
    write: Write,
    task: glommio::task::JoinHandle<std::io::Result<usize>>,
}

/// The flusher task: writes queued entries until the queue is empty; on an I/O error the log is
/// failed and every waiter learns it.
pub(crate) async fn flusher(inner: Rc<Inner>) {
    if let Err(error) = pipeline(&inner).await {
        tracing::error!(dir = %inner.dir.display(), %error, "log write failed; the log refuses appends until reopened");
        let mut s = inner.state.borrow_mut();
        s.failed = true;
        let written = s.written_end;
        s.cache.truncate(written);
        s.pending.clear();
        s.pending_bytes = 0;
    }
    inner.state.borrow_mut().flushing = false;
    inner.changed.notify_all();
}

async fn pipeline(inner: &Inner) -> Result<()> {
    let always = inner.config.durability == Durability::Always;
    let mut in_flight: Option<InFlight> = None;
    loop {
        if in_flight.is_none() {
            group_commit_window(inner).await;
        }
        let group = take_group(inner);
        let Some(first) = group.first() else {
            let Some(w) = in_flight.take() else { return Ok(()) };
            finish(inner, w).await?;
            if always {
                sync_written(inner).await?;
            }
            continue;
        };
        let segment_base = first.segment_base;
        // Where the segment will stand once the write in flight completes.
        let (mut segment, mut len, mut tail) = match &in_flight {
            Some(w) => (w.write.segment.clone(), w.write.new_len, w.write.new_tail.clone()),
            None => {
                let s = inner.state.borrow();
                let active = s.active().clone();
                let len = active.len_bytes.get();
                (active, len, s.tail.clone())
            }
        };
        if segment.base_offset != segment_base {
            if let Some(w) = in_flight.take() {
                finish(inner, w).await?;
            }
            segment = roll(inner, &segment, segment_base).await?;
            (len, tail) = (0, Vec::new());
        }
        let (write, buf) = prepare(segment, len, &tail, group);
        if let Some(w) = in_flight.take() {
            finish(inner, w).await?;
        }
        in_flight = Some(start(write, buf));
        // Let the write task submit before this task does more work.
        glommio::executor().yield_task_queue_now().await;
        if always {
            // Syncs the writes finished so far while the new one is in flight.
            sync_written(inner).await?;
        }
    }
}

/// With the disk idle and little queued, waits up to the configured window for more appends.
async fn group_commit_window(inner: &Inner) {
    let window = inner.config.group_commit_window_us;
    if window == 0 {
        return;
    }
    let little = {
        let s = inner.state.borrow();
        !s.pending.is_empty() && s.pending_bytes < s.write_buffer_bytes_max / 2
    };
    if little {
        glommio::timer::sleep(std::time::Duration::from_micros(window)).await;
    }
}

/// Takes the queued entries bound for the same segment as the oldest one.
fn take_group(inner: &Inner) -> Vec<Pending> {
    let mut s = inner.state.borrow_mut();
    let Some(first) = s.pending.front() else { return Vec::new() };
    let base = first.segment_base;
    let n = s.pending.iter().take_while(|p| p.segment_base == base).count();
    let group: Vec<Pending> = s.pending.drain(..n).collect();
    let bytes: u64 = group.iter().map(|p| p.meta.entry_bytes()).sum();
    s.pending_bytes -= bytes as usize;
    drop(s);
    // The queue has room again: back-pressured appends may fill the next write meanwhile.
    inner.changed.notify_all();
    group
}

/// Copies `tail` and the group into one aligned buffer for the segment at length `start_len`.
fn prepare(segment: Rc<Segment>, start_len: u64, tail: &[u8], group: Vec<Pending>) -> (Write, DmaBuffer) {
    let write_pos = align_down(start_len);
    assert_eq!(write_pos + tail.len() as u64, start_len, "tail block mirrors the segment end");
    let group_bytes: u64 = group.iter().map(|p| p.meta.entry_bytes()).sum();
    let total = tail.len() as u64 + group_bytes;
    let mut buf = disk::alloc_buffer(align_up(total) as usize);
    let bytes = buf.as_bytes_mut();
    bytes[..tail.len()].copy_from_slice(tail);
    let mut at = tail.len();
    for p in &group {
        bytes[at..at + ENTRY_HEADER_BYTES].copy_from_slice(&p.header);
        at += ENTRY_HEADER_BYTES;
        bytes[at..at + p.payload.len()].copy_from_slice(&p.payload);
        at += p.payload.len();
    }
    bytes[at..].fill(0);
    // Assert what goes to disk right before it goes: each header decodes to what was queued.
    let mut check = tail.len();
    for p in &group {
        let decoded = entry::decode_header(&bytes[check..]).expect("queued header decodes");
        assert_eq!(EntryMeta { crc: 0, ..decoded }, p.meta, "queued entry encodes its metadata");
        check += p.meta.entry_bytes() as usize;
    }
    let new_len = start_len + group_bytes;
    let new_tail_from = (align_down(new_len) - write_pos) as usize;
    let new_tail = bytes[new_tail_from..at].to_vec();
    let expected_bytes = buf.len();
    (Write { segment, group, start_len, new_len, new_tail, expected_bytes }, buf)
}

fn start(write: Write, buf: DmaBuffer) -> InFlight {
    let file = write.segment.file.clone();
    let position = align_down(write.start_len);
    let task = glommio::spawn_local(async move {
        let open = file.get().await.map_err(std::io::Error::other)?;
        open.write_at(buf, position).await
    })
    .detach();
    InFlight { write, task }
}

/// Waits for a write and publishes its entries to readers.
async fn finish(inner: &Inner, in_flight: InFlight) -> Result<()> {
    let InFlight { write, task } = in_flight;
    let segment = &write.segment;
    let written = match task.await {
        Some(result) => result.map_err(|e| Error::io("writing segment", &segment.path, e))?,
        None => {
            let e = std::io::Error::other("write task was cancelled");
            return Err(Error::io("writing segment", &segment.path, e));
        }
    };
    if written != write.expected_bytes {
        let e = std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write: {written} of {} bytes", write.expected_bytes),
        );
        return Err(Error::io("writing segment", &segment.path, e));
    }
    assert_eq!(segment.len_bytes.get(), write.start_len, "writes complete in order");
    let mut position = write.start_len;
    for p in &write.group {
        segment.observe(&p.meta, position, inner.config.index_interval_bytes);
        position += p.meta.entry_bytes();
    }
    segment.len_bytes.set(write.new_len);
    let mut s = inner.state.borrow_mut();
    s.tail = write.new_tail;
    s.written_end = segment.end_offset.get();
    drop(s);
    inner.changed.notify_all();
    Ok(())
}

/// Seals `old` and creates the segment starting at `base`.
///
/// The old segment is trimmed and synced before the new one exists; its index files follow in
/// the background (a crash before they land only means a rebuild scan at the next open), so a
/// roll costs appends one fdatasync and one directory sync, not five.
async fn roll(inner: &Inner, old: &Rc<Segment>, base: u64) -> Result<Rc<Segment>> {
    assert_eq!(old.end_offset.get(), base, "a new segment starts where the old one ends");
    old.truncate_file(old.len_bytes.get()).await?;
    old.sync().await?;
    old.sealed.set(true);
    start_index_write(inner, old.clone());
    let new = Rc::new(Segment::create(&inner.disk, &inner.dir, base).await?);
    segment::sync_dir(&inner.disk, &inner.dir).await?;
    let mut s = inner.state.borrow_mut();
    // Everything before the new segment is in sealed, synced segments.
    s.durable_end = s.durable_end.max(base);
    s.durable_point = RecoveryPoint { segment_base: base, position: 0, end_offset: base };
    s.tail.clear();
    s.segments.insert(base, new.clone());
    drop(s);
    inner.changed.notify_all();
    Ok(new)
}

/// Writes a sealed segment's index files in a background task; truncation waits for it.
fn start_index_write(inner: &Inner, segment: Rc<Segment>) {
    inner.state.borrow_mut().index_writes += 1;
    let weak = inner.me.clone();
    glommio::spawn_local(async move {
        if let Err(error) = segment.write_indexes().await {
            tracing::warn!(segment = %segment.path.display(), %error, "index write failed; it will be rebuilt at the next open");
        }
        if let Some(inner) = weak.upgrade() {
            inner.state.borrow_mut().index_writes -= 1;
            inner.changed.notify_all();
        }
    })
    .detach();
}

/// fdatasyncs the active segment and advances the durable offset to what was written before.
pub(crate) async fn sync_written(inner: &Inner) -> Result<()> {
    let (active, written, truncations) = {
        let s = inner.state.borrow();
        (s.active().clone(), s.written_end, s.truncations)
    };
    // The active segment's length and `written_end` move together in `finish`.
    let position = active.len_bytes.get();
    if inner.state.borrow().durable_end >= written {
        return Ok(());
    }
    if let Err(e) = active.sync().await {
        // After a failed fdatasync the kernel may have dropped the dirty state: a later sync
        // could succeed without the data being durable, so the log must not go on.
        inner.state.borrow_mut().failed = true;
        inner.changed.notify_all();
        return Err(e);
    }
    let mut s = inner.state.borrow_mut();
    if s.truncations != truncations {
        // A truncation ran meanwhile and synced what it kept; `written` may no longer exist.
        return Ok(());
    }
    s.durable_end = s.durable_end.max(written);
    if written > s.durable_point.end_offset {
        s.durable_point = RecoveryPoint { segment_base: active.base_offset, position, end_offset: written };
    }
    drop(s);
    inner.changed.notify_all();
    Ok(())
}

/// Background task of `Durability::IntervalMs`: syncs written data every interval.
pub(crate) async fn interval_sync(inner: Weak<Inner>, interval: std::time::Duration) {
    loop {
        glommio::timer::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        {
            let s = inner.state.borrow();
            if s.closed || s.failed {
                return;
            }
        }
        if let Err(error) = sync_written(&inner).await {
            tracing::error!(dir = %inner.dir.display(), %error, "periodic sync failed");
            inner.state.borrow_mut().failed = true;
            inner.changed.notify_all();
            return;
        }
    }
}

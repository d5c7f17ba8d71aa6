//! One segment file: `<base_offset:020>.log`, its in-memory indexes, scanning and reading.
//!
//! A segment is either *active* (the log appends to it; its length grows as writes complete) or
//! *sealed* (truncated to its exact length, synced, indexes written). Reads never go past
//! `len_bytes`, the end of the last completed write, so a reader never sees unflushed bytes.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use crate::config::BLOCK_BYTES;
use crate::disk::{self, Disk, Mode};
use crate::entry::{self, ENTRY_HEADER_BYTES, EntryFault, EntryMeta};
use crate::error::{Error, Result};
use crate::index::{IndexKind, SegmentIndex, SegmentSummary};
use crate::log::StoredBatch;
use crate::open_files::FileHandle;
use crate::prefetch::Prefetcher;
use bytes::Bytes;

/// The name of a file of the log directory named by an offset: `<offset:020>.<extension>`
/// (segments, their indexes, the broker's producer snapshots).
pub fn offset_file_name(offset: u64, extension: &str) -> String {
    format!("{offset:020}.{extension}")
}

/// Parses `<20 digits>.<extension>` into its offset.
pub fn parse_offset_file_name(name: &str, extension: &str) -> Option<u64> {
    let digits = name.strip_suffix(extension)?.strip_suffix('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn file_name(base_offset: u64, extension: &str) -> String {
    offset_file_name(base_offset, extension)
}

/// Parses `<20 digits>.log` into its base offset.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    parse_offset_file_name(name, "log")
}

pub(crate) fn align_down(v: u64) -> u64 {
    v & !(BLOCK_BYTES as u64 - 1)
}

pub(crate) fn align_up(v: u64) -> u64 {
    align_down(v + BLOCK_BYTES as u64 - 1)
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub path: PathBuf,
    /// The file, open while the shard's open-file cache holds it.
    pub file: FileHandle,
    /// Bytes of complete entries on disk.
    pub len_bytes: Cell<u64>,
    /// One past the last offset of the entries on disk.
    pub end_offset: Cell<u64>,
    pub index: RefCell<SegmentIndex>,
    /// Largest record max-timestamp of the entries on disk.
    pub max_timestamp_ms: Cell<Option<i64>>,
    /// Append time of the oldest entry (segment roll by age).
    pub first_append_ms: Cell<Option<i64>>,
    /// Append time of the newest entry (retention by age).
    pub last_append_ms: Cell<Option<i64>>,
    pub sealed: Cell<bool>,
    /// Set when compaction replaced the file: keeps the old file open (so the handle is never
    /// reopened by path onto the replacement) for readers still holding this segment.
    pub retired: RefCell<Option<crate::open_files::FileRef>>,
    /// Read-ahead for readers walking this segment from disk.
    prefetch: Prefetcher,
}

/// Where a forward scan of a segment stopped.
#[derive(Debug)]
pub(crate) enum ScanEnd {
    /// Reached the scan limit exactly at an entry boundary.
    Clean,
    /// The entry at `position` is damaged or torn.
    Damaged { position: u64, fault: EntryFault },
    /// The visitor asked to stop before the entry at `position`.
    Stopped { position: u64 },
}

/// Where [`Segment::walk`] stopped.
#[derive(Debug)]
pub(crate) enum Walked {
    /// Every entry up to the file end is whole and in offset order.
    Clean,
    /// The entry at `position` is the first whose offsets reach the walk's `until`.
    Reached { position: u64 },
    /// The entry at `position` is damaged or breaks the offset sequence.
    Damaged { position: u64, reason: String },
}

/// What the scan visitor says after each entry.
pub(crate) enum Visit {
    Continue,
    Stop,
}

impl Segment {
    pub async fn create(disk: &Disk, dir: &Path, base_offset: u64) -> Result<Segment> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = FileHandle::open(disk, path, Mode::CreateNew).await?;
        Ok(Segment::new(base_offset, file, 0))
    }

    pub async fn open(disk: &Disk, path: PathBuf, base_offset: u64) -> Result<Segment> {
        Segment::open_mode(disk, path, base_offset, Mode::ReadWrite).await
    }

    /// Opens a segment for reading only (the offline verifier never changes a file).
    pub async fn open_read_only(disk: &Disk, path: PathBuf, base_offset: u64) -> Result<Segment> {
        Segment::open_mode(disk, path, base_offset, Mode::Read).await
    }

    async fn open_mode(disk: &Disk, path: PathBuf, base_offset: u64, mode: Mode) -> Result<Segment> {
        let file = FileHandle::open(disk, path, mode).await?;
        let open = file.get().await?;
        let size = open.size().await.map_err(|e| Error::io("sizing segment", file.path(), e))?;
        drop(open);
        Ok(Segment::new(base_offset, file, size))
    }

    fn new(base_offset: u64, file: FileHandle, len_bytes: u64) -> Segment {
        Segment {
            base_offset,
            path: file.path().to_path_buf(),
            file,
            len_bytes: Cell::new(len_bytes),
            end_offset: Cell::new(base_offset),
            index: RefCell::new(SegmentIndex::default()),
            max_timestamp_ms: Cell::new(None),
            first_append_ms: Cell::new(None),
            last_append_ms: Cell::new(None),
            sealed: Cell::new(false),
            retired: RefCell::new(None),
            prefetch: Prefetcher::default(),
        }
    }

    pub fn index_path(&self, kind: IndexKind) -> PathBuf {
        self.path.with_extension(kind.extension())
    }

    /// Records an entry now on disk at `position`.
    pub fn observe(&self, meta: &EntryMeta, position: u64, interval_bytes: u32) {
        assert_eq!(meta.base_offset, self.end_offset.get(), "entries must be contiguous");
        let relative = u32::try_from(meta.base_offset - self.base_offset).expect("relative offset fits u32");
        let position32 = u32::try_from(position).expect("segment position fits u32");
        self.index.borrow_mut().observe(
            interval_bytes,
            relative,
            position32,
            meta.entry_bytes(),
            meta.max_timestamp_ms,
        );
        self.end_offset.set(meta.end_offset());
        let max = self.max_timestamp_ms.get().map_or(meta.max_timestamp_ms, |m| m.max(meta.max_timestamp_ms));
        self.max_timestamp_ms.set(Some(max));
        let last = self.last_append_ms.get().map_or(meta.append_time_ms, |m| m.max(meta.append_time_ms));
        self.last_append_ms.set(Some(last));
        if self.first_append_ms.get().is_none() {
            self.first_append_ms.set(Some(meta.append_time_ms));
        }
    }

    /// Reads `[position, position + len)` with aligned direct I/O.
    pub async fn read_bytes(&self, position: u64, len: usize) -> Result<Bytes> {
        let file = self.file.get().await?;
        file.read_at(position, len).await.map_err(|e| Error::io("reading segment", &self.path, e))
    }

    /// Walks entries from `position` up to `limit`, verifying each checksum, calling `visit` with
    /// each entry's header, position and bytes. Stops at the first damaged entry.
    pub async fn scan(
        &self,
        mut position: u64,
        limit: u64,
        chunk_bytes: usize,
        mut visit: impl FnMut(&EntryMeta, u64, &[u8]) -> Visit,
    ) -> Result<ScanEnd> {
        let mut chunk = Bytes::new();
        let mut chunk_start = position;
        while position < limit {
            let mut at = (position - chunk_start) as usize;
            if at + ENTRY_HEADER_BYTES > chunk.len() {
                let len = chunk_bytes.min((limit - position) as usize);
                chunk = self.read_bytes(position, len).await?;
                chunk_start = position;
                at = 0;
            }
            let meta = match entry::decode_header(&chunk[at..]) {
                Ok(meta) => meta,
                Err(fault) => return Ok(ScanEnd::Damaged { position, fault }),
            };
            let entry_len = meta.entry_bytes();
            if position + entry_len > limit {
                let fault = EntryFault::ShortPayload { needed: entry_len };
                return Ok(ScanEnd::Damaged { position, fault });
            }
            if at + entry_len as usize > chunk.len() {
                let len = (entry_len as usize).max(chunk_bytes.min((limit - position) as usize));
                chunk = self.read_bytes(position, len).await?;
                chunk_start = position;
                at = 0;
            }
            let bytes = &chunk[at..at + entry_len as usize];
            if let Err(fault) = entry::decode_entry(bytes) {
                return Ok(ScanEnd::Damaged { position, fault });
            }
            if let Visit::Stop = visit(&meta, position, bytes) {
                return Ok(ScanEnd::Stopped { position });
            }
            position += entry_len;
        }
        Ok(ScanEnd::Clean)
    }

    /// Rebuilds the in-memory state from the file by scanning `[0, limit)`. Returns where the scan
    /// ended; the caller decides whether damage is a torn tail or corruption.
    /// Walks the entries from the start checking checksums and that each starts where the one
    /// before ended (the first at `first`), stopping before the first entry whose offsets reach
    /// `until`. Returns one past the last whole entry's offsets, and where it stopped.
    pub async fn walk(&self, first: u64, until: u64, chunk_bytes: usize) -> Result<(u64, Walked)> {
        let mut expected = first;
        let mut stop = None;
        let end = self
            .scan(0, self.len_bytes.get(), chunk_bytes, |meta, position, _| {
                if meta.base_offset != expected {
                    stop = Some(Walked::Damaged { position, reason: "offsets out of order".into() });
                    return Visit::Stop;
                }
                if meta.end_offset() > until {
                    stop = Some(Walked::Reached { position });
                    return Visit::Stop;
                }
                expected = meta.end_offset();
                Visit::Continue
            })
            .await?;
        let walked = match (stop, end) {
            (Some(stop), _) => stop,
            (None, ScanEnd::Damaged { position, fault }) => {
                Walked::Damaged { position, reason: fault.to_string() }
            }
            (None, _) => Walked::Clean,
        };
        Ok((expected, walked))
    }

    pub async fn rebuild(
        &self,
        limit: u64,
        interval_bytes: u32,
        chunk_bytes: usize,
    ) -> Result<(u64, ScanEnd)> {
        *self.index.borrow_mut() = SegmentIndex::default();
        self.end_offset.set(self.base_offset);
        self.max_timestamp_ms.set(None);
        self.first_append_ms.set(None);
        self.last_append_ms.set(None);
        let mut good_end = 0u64;
        let mut discontinuity = None;
        let end = self
            .scan(0, limit, chunk_bytes, |meta, position, _| {
                if meta.base_offset != self.end_offset.get() {
                    discontinuity = Some(position);
                    return Visit::Stop;
                }
                self.observe(meta, position, interval_bytes);
                good_end = position + meta.entry_bytes();
                Visit::Continue
            })
            .await?;
        let end = match (end, discontinuity) {
            (ScanEnd::Stopped { position }, Some(_)) => ScanEnd::Damaged {
                position,
                fault: EntryFault::BadHeader("base offset does not follow the previous entry"),
            },
            (end, _) => end,
        };
        Ok((good_end, end))
    }

    /// Reads batches starting with the one that contains `offset`, up to `bytes_max` (at least
    /// one batch), never past `len_limit` bytes into the file. Disk reads are at most
    /// `chunk_bytes_max` long, except one that must hold a single larger entry. With
    /// `read_ahead_chunks` > 0, reads come from (and keep ahead) the segment's prefetcher.
    pub async fn read_batches(
        &self,
        offset: u64,
        bytes_max: usize,
        len_limit: u64,
        chunk_bytes_max: usize,
        read_ahead_chunks: usize,
    ) -> Result<Vec<StoredBatch>> {
        let relative = u32::try_from(offset.saturating_sub(self.base_offset)).unwrap_or(u32::MAX);
        let mut position = self.index.borrow().position_for_offset(relative) as u64;
        let want = bytes_max
            .saturating_add(ENTRY_HEADER_BYTES * 2)
            .clamp(BLOCK_BYTES * 16, chunk_bytes_max.max(BLOCK_BYTES * 16));
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while position < len_limit {
            let mut chunk =
                self.read_from(position, want, len_limit, chunk_bytes_max, read_ahead_chunks).await?;
            let mut at = 0usize;
            loop {
                let meta = match entry::decode_header(&chunk[at..]) {
                    Ok(meta) => meta,
                    Err(EntryFault::ShortHeader) if at > 0 => break,
                    Err(fault) => return Err(self.damaged(position + at as u64, fault)),
                };
                let entry_len = meta.entry_bytes() as usize;
                if position + (at + entry_len) as u64 > len_limit {
                    let fault = EntryFault::ShortPayload { needed: entry_len as u64 };
                    return Err(self.damaged(position + at as u64, fault));
                }
                if at + entry_len > chunk.len() {
                    if at > 0 {
                        break; // The next read starts at this entry.
                    }
                    // A single entry larger than the read: read exactly it.
                    chunk = self.read_bytes(position, entry_len).await?;
                    continue;
                }
                if meta.end_offset() > offset {
                    if !out.is_empty() && bytes + meta.payload_len as usize > bytes_max {
                        return Ok(out);
                    }
                    let entry = chunk.slice(at..at + entry_len);
                    let batch = self.verified(&entry, position + at as u64)?;
                    bytes += batch.payload.len();
                    out.push(batch);
                }
                at += entry_len;
                if at == chunk.len() || (!out.is_empty() && bytes >= bytes_max) {
                    break;
                }
            }
            position += at as u64;
            if !out.is_empty() && bytes >= bytes_max {
                break;
            }
        }
        Ok(out)
    }

    /// Bytes from `position`, holding at least one whole entry (or its header if the entry is
    /// larger than `want`): the rest of a prefetched chunk, else a direct read of up to `want`.
    async fn read_from(
        &self,
        position: u64,
        want: usize,
        len_limit: u64,
        chunk_bytes: usize,
        read_ahead_chunks: usize,
    ) -> Result<Bytes> {
        let left = (len_limit - position) as usize;
        if read_ahead_chunks > 0 {
            let chunk_bytes = chunk_bytes as u64;
            let window =
                self.prefetch.window(&self.file, position, len_limit, chunk_bytes, read_ahead_chunks).await;
            if let Some(window) = window {
                // An entry (or header) cut by the chunk's end continues in the next chunks, which
                // are usually loaded already: join just that entry.
                let mut joined: Option<bytes::BytesMut> = None;
                loop {
                    let have = joined.as_ref().map_or(window.len(), |j| j.len());
                    let head = joined.as_deref().unwrap_or(&window);
                    let need = match entry::decode_header(head) {
                        Ok(meta) => (meta.entry_bytes() as usize).min(left),
                        Err(EntryFault::ShortHeader) => ENTRY_HEADER_BYTES.min(left),
                        // Damage: the caller's decode reports it at this position.
                        Err(_) => return Ok(joined.map_or(window, |j| j.freeze())),
                    };
                    if have >= need {
                        return Ok(joined.map_or(window, |j| j.freeze()));
                    }
                    let at = position + have as u64;
                    let next =
                        self.prefetch.window(&self.file, at, len_limit, chunk_bytes, read_ahead_chunks).await;
                    let Some(next) = next else {
                        return self.read_bytes(position, need.max(want.min(left))).await;
                    };
                    let j = joined.get_or_insert_with(|| bytes::BytesMut::from(&window[..]));
                    j.extend_from_slice(&next[..(need - have).min(next.len())]);
                }
            }
        }
        self.read_bytes(position, want.min(left)).await
    }

    /// Verifies the entry in `entry` (read from `position`) and returns it as a batch whose
    /// payload shares the read buffer.
    fn verified(&self, entry: &Bytes, position: u64) -> Result<StoredBatch> {
        let meta = entry::decode_entry(entry).map_err(|fault| self.damaged(position, fault))?;
        Ok(StoredBatch::from_entry(&meta, entry.slice(ENTRY_HEADER_BYTES..)))
    }

    pub fn damaged(&self, position: u64, fault: EntryFault) -> Error {
        Error::corrupt(&self.path, position, fault.to_string())
    }

    /// Loads the sealed indexes and the segment summary from disk; `Err(reason)` if either index
    /// is missing, damaged, or written for a different segment length.
    pub async fn load_indexes(&self) -> Result<std::result::Result<(), String>> {
        let mut index = SegmentIndex::default();
        let mut summaries = Vec::with_capacity(2);
        for kind in [IndexKind::Offset, IndexKind::Time] {
            let path = self.index_path(kind);
            let image = match read_whole_file(self.file.disk(), &path).await? {
                Some(image) => image,
                None => return Ok(Err(format!("{} is missing", path.display()))),
            };
            match index.decode_into(kind, &image) {
                Ok(summary) if summary.segment_bytes == self.len_bytes.get() => summaries.push(summary),
                Ok(summary) => {
                    return Ok(Err(format!(
                        "{} was written for {} segment bytes, file has {}",
                        path.display(),
                        summary.segment_bytes,
                        self.len_bytes.get()
                    )));
                }
                Err(reason) => return Ok(Err(format!("{}: {reason}", path.display()))),
            }
        }
        if summaries[0] != summaries[1] || summaries[0].end_offset <= self.base_offset {
            return Ok(Err(format!("indexes of {} disagree", self.path.display())));
        }
        let summary = summaries[0];
        *self.index.borrow_mut() = index;
        self.end_offset.set(summary.end_offset);
        self.max_timestamp_ms.set(Some(summary.max_timestamp_ms));
        self.first_append_ms.set(Some(summary.first_append_ms));
        self.last_append_ms.set(Some(summary.last_append_ms));
        Ok(Ok(()))
    }

    fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            segment_bytes: self.len_bytes.get(),
            end_offset: self.end_offset.get(),
            max_timestamp_ms: self.max_timestamp_ms.get().unwrap_or(i64::MIN),
            first_append_ms: self.first_append_ms.get().unwrap_or(0),
            last_append_ms: self.last_append_ms.get().unwrap_or(0),
        }
    }

    /// Writes both index files for a sealed segment, crash-safely (temp file, sync, rename).
    pub async fn write_indexes(&self) -> Result<()> {
        for kind in [IndexKind::Offset, IndexKind::Time] {
            let image = self.index.borrow().encode(kind, &self.summary());
            write_file_atomically(self.file.disk(), &self.index_path(kind), &image).await?;
        }
        Ok(())
    }

    pub async fn remove_indexes(&self) -> Result<()> {
        for kind in [IndexKind::Offset, IndexKind::Time] {
            let path = self.index_path(kind);
            remove_if_exists(self.file.disk(), &path).await?;
        }
        Ok(())
    }

    pub async fn truncate_file(&self, len: u64) -> Result<()> {
        self.prefetch.invalidate();
        let file = self.file.get().await?;
        file.truncate(len).await.map_err(|e| Error::io("truncating segment", &self.path, e))
    }

    pub async fn sync(&self) -> Result<()> {
        let file = self.file.get().await?;
        file.fdatasync().await.map_err(|e| Error::io("syncing segment", &self.path, e))
    }

    /// Finds the first entry whose max timestamp is at least `timestamp_ms` and whose offsets
    /// reach past `min_end_offset`; returns its base offset.
    pub async fn find_timestamp(
        &self,
        timestamp_ms: i64,
        min_end_offset: u64,
        len_limit: u64,
        chunk_bytes: usize,
    ) -> Result<Option<u64>> {
        let start = self.index.borrow().position_for_timestamp(timestamp_ms) as u64;
        let mut found = None;
        let end = self
            .scan(start, len_limit, chunk_bytes, |meta, _, _| {
                if meta.max_timestamp_ms >= timestamp_ms && meta.end_offset() > min_end_offset {
                    found = Some(meta.base_offset);
                    return Visit::Stop;
                }
                Visit::Continue
            })
            .await?;
        if let ScanEnd::Damaged { position, fault } = end {
            return Err(self.damaged(position, fault));
        }
        Ok(found)
    }
}

/// Reads a small file whole; `None` if it does not exist.
pub(crate) async fn read_whole_file(disk: &Disk, path: &Path) -> Result<Option<Vec<u8>>> {
    disk.read_whole(path).await.map_err(|e| Error::io("reading", path, e))
}

/// Writes `image` to `path` via a synced temporary file and a rename.
pub(crate) async fn write_file_atomically(disk: &Disk, path: &Path, image: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let file = disk.open(&tmp, Mode::CreateTruncate).await.map_err(|e| Error::io("creating", &tmp, e))?;
    let mut buf = disk::alloc_buffer(align_up(image.len() as u64).max(BLOCK_BYTES as u64) as usize);
    buf.as_bytes_mut().fill(0);
    buf.as_bytes_mut()[..image.len()].copy_from_slice(image);
    file.write_at(buf, 0).await.map_err(|e| Error::io("writing", &tmp, e))?;
    file.truncate(image.len() as u64).await.map_err(|e| Error::io("truncating", &tmp, e))?;
    file.fdatasync().await.map_err(|e| Error::io("syncing", &tmp, e))?;
    file.close().await.map_err(|e| Error::io("closing", &tmp, e))?;
    disk.rename(&tmp, path).await.map_err(|e| Error::io("renaming", &tmp, e))?;
    Ok(())
}

/// Removes a file; a file that is already gone is not an error.
pub(crate) async fn remove_if_exists(disk: &Disk, path: &Path) -> Result<()> {
    match disk.remove(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// Removes the broker's producer snapshots (`<offset:020>.snapshot`, see `rill-broker`'s
/// `producer/snapshot.rs`) above `offset`: a truncation to `offset` makes them describe batches
/// that are gone.
pub(crate) async fn remove_snapshots_above(disk: &Disk, dir: &Path, offset: u64) -> Result<()> {
    let names = disk.list(dir).await.map_err(|e| Error::io("listing", dir, e))?;
    for name in names {
        if parse_offset_file_name(&name, "snapshot").is_some_and(|o| o > offset) {
            remove_if_exists(disk, &dir.join(name)).await?;
        }
    }
    Ok(())
}

/// Syncs a directory so that file creations, renames and removals in it are durable.
pub(crate) async fn sync_dir(disk: &Disk, dir: &Path) -> Result<()> {
    disk.sync_dir(dir).await.map_err(|e| Error::io("syncing directory", dir, e))
}

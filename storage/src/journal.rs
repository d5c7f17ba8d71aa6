//! A journal: one append-only file of opaque, checksummed records.
//!
//! The cluster's Raft groups keep their log and hard state in one (`rill-broker`'s
//! `cluster/raft_log.rs` decides what the records mean); it goes through the same [`Disk`] seam
//! as the partition logs, so the power-loss model tests it too.
//!
//! A record on disk is `len: u32 LE | crc32c(len bytes, payload): u32 LE | payload`. Appends go
//! after the last record: the file's last partial block is kept in memory and rewritten whole
//! with the new records (direct I/O writes whole aligned blocks), and the rest of the block is
//! zeros, which read as the end. [`Journal::sync`] makes everything appended so far durable.
//! Opening reads records up to the first one that is torn or fails its checksum (what a crash
//! during an unsynced append leaves), returns them, and cuts the file there, so a later append
//! never lands behind garbage. [`Journal::rewrite`] replaces the whole file atomically (a synced
//! temporary file renamed over it), which is how a Raft group compacts its log below a snapshot.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::config::BLOCK_BYTES;
use crate::disk::{self, Disk, File, Mode};
use crate::error::{Error, Result};
use crate::segment;

/// Bytes before each record's payload.
pub const JOURNAL_RECORD_HEADER_BYTES: usize = 8;
/// The largest payload a journal accepts (a record claiming more is damage).
pub const JOURNAL_RECORD_BYTES_MAX: usize = 64 << 20;

/// An append-only file of checksummed records (see the module documentation).
#[derive(Debug)]
pub struct Journal {
    disk: Disk,
    path: PathBuf,
    file: File,
    /// Bytes of valid records in the file.
    end: u64,
    /// The file's bytes from the start of the block holding `end` up to `end`.
    tail: Vec<u8>,
    /// Appended but not yet synced.
    unsynced: bool,
    /// A write or sync failed: what reached the disk is unknown until the journal is reopened.
    failed: bool,
}

fn block_start(position: u64) -> u64 {
    position - position % BLOCK_BYTES as u64
}

fn checksum(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

/// Appends one encoded record to `out`.
fn encode_into(out: &mut Vec<u8>, payload: &[u8]) -> Result<()> {
    if payload.is_empty() || payload.len() > JOURNAL_RECORD_BYTES_MAX {
        return Err(Error::InvalidBatch("a journal record holds 1 byte to 64 MiB"));
    }
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The records at the start of `image` that are whole and intact, and the bytes they take.
fn decode(image: &[u8]) -> (Vec<Bytes>, usize) {
    let image = Bytes::copy_from_slice(image);
    let mut records = Vec::new();
    let mut at = 0;
    while image.len() - at >= JOURNAL_RECORD_HEADER_BYTES {
        let len = u32::from_le_bytes(image[at..at + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(image[at + 4..at + 8].try_into().expect("4 bytes"));
        let body = at + JOURNAL_RECORD_HEADER_BYTES;
        if len == 0 || len as usize > JOURNAL_RECORD_BYTES_MAX || len as usize > image.len() - body {
            break;
        }
        let payload = image.slice(body..body + len as usize);
        if checksum(len, &payload) != crc {
            break;
        }
        records.push(payload);
        at = body + len as usize;
    }
    (records, at)
}

impl Journal {
    /// Opens the journal at `path` (creating an empty one, durably, if there is none) and
    /// returns it with the records it holds.
    pub async fn open(disk: Disk, path: impl Into<PathBuf>) -> Result<(Journal, Vec<Bytes>)> {
        let path = path.into();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let dir = disk.create_dir(dir).await.map_err(|e| Error::io("creating", &path, e))?;
        let path = dir.join(
            path.file_name()
                .ok_or(Error::InvalidConfig { field: "journal path", reason: "has no file name" })?,
        );
        // A temporary file left by a crash during `rewrite` is either incomplete or already
        // renamed; either way the journal itself is the truth.
        segment::remove_if_exists(&disk, &temporary(&path)).await?;
        let image = segment::read_whole_file(&disk, &path).await?;
        let file = match image {
            Some(_) => disk.open(&path, Mode::ReadWrite).await,
            None => disk.open(&path, Mode::CreateNew).await,
        }
        .map_err(|e| Error::io("opening", &path, e))?;
        if image.is_none() {
            segment::sync_dir(&disk, &dir).await?;
        }
        let image = image.unwrap_or_default();
        let (records, end) = decode(&image);
        if end < image.len() && image[end..].iter().any(|&b| b != 0) {
            tracing::warn!(
                journal = %path.display(),
                kept = end,
                dropped = image.len() - end,
                "journal ends in a torn or damaged record; cutting it there"
            );
        }
        let tail = image[block_start(end as u64) as usize..end].to_vec();
        let journal = Journal { disk, path, file, end: end as u64, tail, unsynced: false, failed: false };
        if (end as u64) < image.len() as u64 {
            // Cut the damage so that zeros follow the last record, durably, before anything is
            // appended after it.
            journal.file.truncate(end as u64).await.map_err(|e| Error::io("truncating", &journal.path, e))?;
            journal.file.fdatasync().await.map_err(|e| Error::io("syncing", &journal.path, e))?;
        }
        Ok((journal, records))
    }

    /// Appends records; they are durable after the next [`Journal::sync`].
    pub async fn append(&mut self, records: &[&[u8]]) -> Result<()> {
        self.check()?;
        if records.is_empty() {
            return Ok(());
        }
        let mut image = std::mem::take(&mut self.tail);
        let start = block_start(self.end);
        for record in records {
            if let Err(e) = encode_into(&mut image, record) {
                image.truncate((self.end - start) as usize);
                self.tail = image;
                return Err(e);
            }
        }
        let new_end = start + image.len() as u64;
        let mut buf = disk::alloc_buffer(segment::align_up(image.len() as u64) as usize);
        buf.as_bytes_mut().fill(0);
        buf.as_bytes_mut()[..image.len()].copy_from_slice(&image);
        let written = self.file.write_at(buf, start).await;
        let keep_from = (block_start(new_end) - start) as usize;
        match written {
            Ok(_) => {
                self.tail = image.split_off(keep_from);
                self.end = new_end;
                self.unsynced = true;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(Error::io("writing", &self.path, e))
            }
        }
    }

    /// Makes every appended record durable.
    pub async fn sync(&mut self) -> Result<()> {
        self.check()?;
        if self.unsynced {
            if let Err(e) = self.file.fdatasync().await {
                self.failed = true;
                return Err(Error::io("syncing", &self.path, e));
            }
            self.unsynced = false;
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        if self.failed { Err(Error::Failed(self.path.clone())) } else { Ok(()) }
    }

    /// Replaces the journal's contents with `records`, atomically and durably: after a crash it
    /// holds either the old records or exactly these.
    pub async fn rewrite(&mut self, records: &[&[u8]]) -> Result<()> {
        self.check()?;
        let mut image = Vec::new();
        for record in records {
            encode_into(&mut image, record)?;
        }
        let tmp = temporary(&self.path);
        let file =
            self.disk.open(&tmp, Mode::CreateTruncate).await.map_err(|e| Error::io("creating", &tmp, e))?;
        let mut buf =
            disk::alloc_buffer(segment::align_up(image.len() as u64).max(BLOCK_BYTES as u64) as usize);
        buf.as_bytes_mut().fill(0);
        buf.as_bytes_mut()[..image.len()].copy_from_slice(&image);
        file.write_at(buf, 0).await.map_err(|e| Error::io("writing", &tmp, e))?;
        file.truncate(image.len() as u64).await.map_err(|e| Error::io("truncating", &tmp, e))?;
        file.fdatasync().await.map_err(|e| Error::io("syncing", &tmp, e))?;
        file.close().await.map_err(|e| Error::io("closing", &tmp, e))?;
        if let Err(e) = self.disk.rename(&tmp, &self.path).await {
            // Whether the rename reached the directory is unknown.
            self.failed = true;
            return Err(Error::io("renaming", &tmp, e));
        }
        let dir = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.failed = true;
        segment::sync_dir(&self.disk, &dir).await?;
        let file = self
            .disk
            .open(&self.path, Mode::ReadWrite)
            .await
            .map_err(|e| Error::io("opening", &self.path, e))?;
        self.failed = false;
        let old = std::mem::replace(&mut self.file, file);
        let _ = old.close().await;
        self.end = image.len() as u64;
        self.tail = image[block_start(self.end) as usize..].to_vec();
        self.unsynced = false;
        Ok(())
    }

    /// Bytes of records in the file.
    pub fn len_bytes(&self) -> u64 {
        self.end
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file (appended records not yet synced may be lost).
    pub async fn close(self) -> Result<()> {
        self.file.close().await.map_err(|e| Error::io("closing", &self.path, e))
    }
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_stops_at_the_first_torn_or_damaged_record() {
        let mut image = Vec::new();
        for payload in [&b"one"[..], b"two", b"three"] {
            encode_into(&mut image, payload).unwrap();
        }
        let whole = image.len();
        let (records, end) = decode(&image);
        assert_eq!(records, vec![Bytes::from("one"), Bytes::from("two"), Bytes::from("three")]);
        assert_eq!(end, whole);
        // Every cut inside the last record keeps the first two.
        for cut in whole - 12..whole {
            let (records, end) = decode(&image[..cut]);
            assert_eq!(records.len(), 2, "cut at {cut}");
            assert_eq!(end, whole - 13);
        }
        // A flipped bit in the second record ends the journal after the first.
        for i in 11..22 {
            let mut bad = image.clone();
            bad[i] ^= 0x04;
            assert_eq!(decode(&bad).0.len(), 1, "flip in byte {i}");
        }
        // Zeros after the records are the end, not damage.
        image.resize(whole + 100, 0);
        assert_eq!(decode(&image), (records, whole));
    }

    #[test]
    fn empty_and_oversized_records_are_refused() {
        let mut out = Vec::new();
        assert!(encode_into(&mut out, b"").is_err());
        assert!(out.is_empty());
        // A header claiming more than the limit reads as damage.
        let mut image = ((JOURNAL_RECORD_BYTES_MAX + 1) as u32).to_le_bytes().to_vec();
        image.extend_from_slice(&[0; 12]);
        assert_eq!(decode(&image).1, 0);
    }
}

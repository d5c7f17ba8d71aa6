//! The recovery point: how far a log is known durable (Kafka's recovery-point checkpoint).
//!
//! Every segment before the active one was synced when it was sealed. Within the active
//! segment, `recovery-point.checkpoint` records a byte position below which everything was
//! covered by a completed `fdatasync`. It is rewritten (temporary file, sync, rename) at clean
//! close, after a truncation, and at most once per `recovery_checkpoint_interval_ms` while
//! appends move the durable end. At open, damage in the active segment beyond the recovery point
//! is a torn tail and is truncated; damage below it can only be corruption, so the log refuses
//! to open and names the file and byte offset.
//!
//! A truncation removes the file (and syncs the directory) before it cuts, so a checkpoint never
//! claims bytes that a truncation removed. A lost rename leaves the older checkpoint, which
//! claims less: still true.

use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::error::Result;
use crate::segment;

/// The checkpoint's file name in the log directory.
pub const CHECKPOINT_FILE: &str = "recovery-point.checkpoint";

const MAGIC: &[u8; 8] = b"RILLRP01";
const IMAGE_BYTES: usize = 8 + 3 * 8 + 4;

/// Bytes `[0, position)` of the segment starting at `segment_base` are durable; they hold the
/// offsets below `end_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// Base offset of the segment the position is in.
    pub segment_base: u64,
    /// Byte position in that segment: every entry before it is durable.
    pub position: u64,
    /// One past the last offset before `position`.
    pub end_offset: u64,
}

impl RecoveryPoint {
    /// The file image: magic, the three fields little-endian, crc32c of what precedes.
    pub fn encode(&self) -> Vec<u8> {
        let mut image = Vec::with_capacity(IMAGE_BYTES);
        image.extend_from_slice(MAGIC);
        image.extend_from_slice(&self.segment_base.to_le_bytes());
        image.extend_from_slice(&self.position.to_le_bytes());
        image.extend_from_slice(&self.end_offset.to_le_bytes());
        let crc = crc32c::crc32c(&image);
        image.extend_from_slice(&crc.to_le_bytes());
        image
    }

    /// Decodes a file image; `Err(reason)` if it is not one.
    pub fn decode(image: &[u8]) -> std::result::Result<RecoveryPoint, &'static str> {
        if image.len() != IMAGE_BYTES {
            return Err("wrong length");
        }
        if &image[..8] != MAGIC {
            return Err("wrong magic");
        }
        let (body, crc) = image.split_at(IMAGE_BYTES - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("checksum mismatch");
        }
        let field = |i: usize| u64::from_le_bytes(image[8 + i * 8..16 + i * 8].try_into().expect("8 bytes"));
        let point = RecoveryPoint { segment_base: field(0), position: field(1), end_offset: field(2) };
        if point.end_offset < point.segment_base {
            return Err("end offset before the segment base");
        }
        Ok(point)
    }
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

/// Reads the checkpoint of the log in `dir`. A missing file is `None`; a damaged one is
/// `None` with a warning (recovery then trusts only the sealed segments, as before checkpoints).
pub(crate) async fn read(disk: &Disk, dir: &Path) -> Result<Option<RecoveryPoint>> {
    let path = path(dir);
    let Some(image) = segment::read_whole_file(disk, &path).await? else { return Ok(None) };
    match RecoveryPoint::decode(&image) {
        Ok(point) => Ok(Some(point)),
        Err(reason) => {
            tracing::warn!(file = %path.display(), reason, "ignoring a damaged recovery-point checkpoint");
            Ok(None)
        }
    }
}

/// Replaces the checkpoint of the log in `dir` (temporary file, sync, rename).
pub(crate) async fn write(disk: &Disk, dir: &Path, point: &RecoveryPoint) -> Result<()> {
    segment::write_file_atomically(disk, &path(dir), &point.encode()).await
}

/// Removes the checkpoint and makes the removal durable.
pub(crate) async fn remove(disk: &Disk, dir: &Path) -> Result<()> {
    segment::remove_if_exists(disk, &path(dir)).await?;
    segment::sync_dir(disk, dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let point = RecoveryPoint { segment_base: 7, position: 4096, end_offset: 90 };
        let image = point.encode();
        assert_eq!(RecoveryPoint::decode(&image), Ok(point));
        for i in 0..image.len() {
            let mut bad = image.clone();
            bad[i] ^= 0x10;
            assert!(RecoveryPoint::decode(&bad).is_err(), "flip in byte {i}");
        }
        assert!(RecoveryPoint::decode(&image[..image.len() - 1]).is_err());
    }
}

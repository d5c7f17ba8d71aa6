//! The persisted log start offset: where a log begins once records were deleted from its front
//! (Kafka's DeleteRecords, the `log-start-offset-checkpoint`), which may lie inside a segment.
//!
//! Retention deletes whole segments, and a log whose first segment starts at its log start
//! needs no file. A deletion that ends inside a segment writes `log-start.offset` (temporary
//! file, sync, rename, directory sync) before the log start moves in memory and before any
//! segment wholly below it is removed, so an acknowledged deletion survives a crash and a crash
//! part-way leaves segments that the next open removes. At open the log start is the larger of
//! the first segment's base and the file's offset, and never beyond the log end (a torn tail
//! lost in a crash takes the deleted offsets with it).

use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::segment;

/// The file's name in the log directory.
pub const LOG_START_FILE: &str = "log-start.offset";

const MAGIC: &[u8; 8] = b"RILLLS01";
const IMAGE_BYTES: usize = 8 + 8 + 4;

fn path(dir: &Path) -> PathBuf {
    dir.join(LOG_START_FILE)
}

/// The file image: magic, the offset little-endian, crc32c of what precedes.
pub(crate) fn encode(offset: u64) -> Vec<u8> {
    let mut image = Vec::with_capacity(IMAGE_BYTES);
    image.extend_from_slice(MAGIC);
    image.extend_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&image);
    image.extend_from_slice(&crc.to_le_bytes());
    image
}

/// Decodes a file image; `Err(reason)` if it is not one.
pub(crate) fn decode(image: &[u8]) -> std::result::Result<u64, &'static str> {
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
    Ok(u64::from_le_bytes(image[8..16].try_into().expect("8 bytes")))
}

/// Reads the persisted log start of the log in `dir`; `None` if there is no file. A damaged
/// file is an error naming it: silently starting lower would hand deleted records back.
pub(crate) async fn read(disk: &Disk, dir: &Path) -> Result<Option<u64>> {
    let path = path(dir);
    let Some(image) = segment::read_whole_file(disk, &path).await? else { return Ok(None) };
    decode(&image).map(Some).map_err(|reason| Error::corrupt(&path, 0, format!("log start file: {reason}")))
}

/// Durably records `offset` as the log start of the log in `dir`.
pub(crate) async fn write(disk: &Disk, dir: &Path, offset: u64) -> Result<()> {
    segment::write_file_atomically(disk, &path(dir), &encode(offset)).await?;
    segment::sync_dir(disk, dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let image = encode(123_456);
        assert_eq!(decode(&image), Ok(123_456));
        for i in 0..image.len() {
            let mut bad = image.clone();
            bad[i] ^= 0x01;
            assert!(decode(&bad).is_err(), "flip in byte {i}");
        }
        assert!(decode(&image[..image.len() - 1]).is_err());
    }
}

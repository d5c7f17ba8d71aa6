//! Producer-state snapshots (Kafka's `<offset>.snapshot` files in the partition directory).
//!
//! A snapshot holds the partition's producer table as it stood with every batch below its
//! offset applied. It is written when the partition's active segment changes (a roll) and at a
//! clean close, once the table was loaded in this run; the rebuild after a restart starts from
//! the newest snapshot at or below the log end and replays only the batches after it. A
//! snapshot beyond the log end (the log lost an unsynced tail, or was truncated) is ignored; the
//! storage truncations remove snapshots above their cut.
//!
//! Layout (little-endian): magic `RILLPS01`, end offset u64, producer count u32, then per
//! producer: id i64, epoch i16, last append ms i64, recent count u8, and per recent batch first
//! sequence i32, last sequence i32, base offset u64; then crc32c of everything before.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use super::{BATCHES_KEPT, ProducerState, Recent};

const MAGIC: &[u8; 8] = b"RILLPS01";
const EXTENSION: &str = "snapshot";
/// Snapshots kept per partition (the newest, and one before it).
const KEPT: usize = 2;

pub(super) fn encode(end_offset: u64, table: &HashMap<i64, ProducerState>) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + table.len() * 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&end_offset.to_le_bytes());
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for (id, state) in table {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&state.epoch.to_le_bytes());
        out.extend_from_slice(&state.last_ms.to_le_bytes());
        out.push(state.recent.len() as u8);
        for r in &state.recent {
            out.extend_from_slice(&r.first_seq.to_le_bytes());
            out.extend_from_slice(&r.last_seq.to_le_bytes());
            out.extend_from_slice(&r.base_offset.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A reader of fixed-size fields that fails (`None`) past the end.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
}

pub(super) fn decode(image: &[u8]) -> Option<(u64, HashMap<i64, ProducerState>)> {
    let (body, crc) = image.split_at_checked(image.len().checked_sub(4)?)?;
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut f = Fields(body);
    if &f.take::<8>()? != MAGIC {
        return None;
    }
    let end_offset = u64::from_le_bytes(f.take()?);
    let count = u32::from_le_bytes(f.take()?) as usize;
    // Each producer takes at least 19 bytes: the count is checked against them.
    if count > f.0.len() / 19 {
        return None;
    }
    let mut table = HashMap::with_capacity(count);
    for _ in 0..count {
        let id = i64::from_le_bytes(f.take()?);
        let epoch = i16::from_le_bytes(f.take()?);
        let last_ms = i64::from_le_bytes(f.take()?);
        let n = f.take::<1>()?[0] as usize;
        if n > BATCHES_KEPT {
            return None;
        }
        let mut recent = VecDeque::with_capacity(n);
        for _ in 0..n {
            recent.push_back(Recent {
                first_seq: i32::from_le_bytes(f.take()?),
                last_seq: i32::from_le_bytes(f.take()?),
                base_offset: u64::from_le_bytes(f.take()?),
            });
        }
        table.insert(id, ProducerState { epoch, recent, last_ms });
    }
    f.0.is_empty().then_some((end_offset, table))
}

fn snapshots(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(offset) =
            rill_storage::parse_offset_file_name(&entry.file_name().to_string_lossy(), EXTENSION)
        {
            found.push((offset, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Writes a snapshot image (temporary file, fsync, rename, directory sync) and removes all but
/// the newest `KEPT`. Blocking: run it with `spawn_blocking`.
pub(super) fn write(dir: &Path, end_offset: u64, image: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(rill_storage::offset_file_name(end_offset, EXTENSION));
    let tmp = path.with_extension("snapshot.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(image)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    let all = snapshots(dir)?;
    for (_, old) in all.iter().rev().skip(KEPT) {
        match std::fs::remove_file(old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The newest valid snapshot at or below `log_end`. Blocking.
pub(super) fn read_newest(dir: &Path, log_end: u64) -> Option<(u64, HashMap<i64, ProducerState>)> {
    let all = snapshots(dir).ok()?;
    for (offset, path) in all.into_iter().rev().filter(|(o, _)| *o <= log_end) {
        match std::fs::read(&path).ok().and_then(|image| decode(&image)) {
            Some((end, table)) if end == offset => return Some((end, table)),
            _ => tracing::warn!(file = %path.display(), "ignoring an unreadable producer snapshot"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let mut table = HashMap::new();
        let recent =
            (0..3).map(|i| Recent { first_seq: i * 10, last_seq: i * 10 + 9, base_offset: 100 + i as u64 });
        table.insert(7, ProducerState { epoch: 2, recent: recent.collect(), last_ms: 1234 });
        table.insert(-5, ProducerState { epoch: 0, recent: VecDeque::new(), last_ms: 0 });
        let image = encode(42, &table);
        let (end, back) = decode(&image).unwrap();
        assert_eq!(end, 42);
        assert_eq!(back.len(), 2);
        assert_eq!(back[&7].recent, table[&7].recent);
        assert_eq!((back[&7].epoch, back[&7].last_ms), (2, 1234));
        for i in 0..image.len() {
            let mut bad = image.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_none(), "flip in byte {i}");
        }
        for len in 0..image.len() {
            assert!(decode(&image[..len]).is_none(), "cut at {len}");
        }
    }
}

//! Opening a log after a clean stop or a crash.
//!
//! Sealed segments are trusted through their index files (which record the segment's exact
//! length and summary); a missing or stale index is rebuilt by a full checksum scan, and any
//! damage found there is an error. The active (last) segment is always scanned. Below the
//! recovery point (see [`crate::checkpoint`]) every entry must be whole: damage there is an
//! error naming the file and byte offset, and nothing is truncated. Beyond it, the first entry
//! that is torn, fails its checksum, or breaks the offset sequence marks the torn tail of a
//! crash, and the file is truncated there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::checkpoint::{self, RecoveryPoint};
use crate::config::LogConfig;
use crate::disk::{self, Disk};
use crate::entry::EntryFault;
use crate::error::{Error, Result};
use crate::segment::{self, ScanEnd, Segment, align_down};

pub(crate) struct Recovered {
    pub segments: BTreeMap<u64, Rc<Segment>>,
    pub tail: Vec<u8>,
    /// What the checkpoint file says now.
    pub checkpointed: Option<RecoveryPoint>,
}

pub(crate) async fn recover(disk: &Disk, dir: &Path, config: &LogConfig) -> Result<Recovered> {
    let bases = list_segments(disk, dir).await?;
    disk.prime_device_probe(dir).await?;
    let mut segments = BTreeMap::new();
    if bases.is_empty() {
        // A checkpoint without segments describes files that are gone.
        segment::remove_if_exists(disk, &checkpoint::path(dir)).await?;
        let segment = Segment::create(disk, dir, 0).await?;
        segment::sync_dir(disk, dir).await?;
        segments.insert(0, Rc::new(segment));
        return Ok(Recovered { segments, tail: Vec::new(), checkpointed: None });
    }
    let checkpointed = checkpoint::read(disk, dir).await?;
    let (last, sealed) = bases.split_last().expect("non-empty");
    let mut previous: Option<Rc<Segment>> = None;
    for (base, path) in sealed {
        let segment = Rc::new(open_sealed(disk, path.clone(), *base, config).await?);
        check_follows(previous.as_deref(), *base)?;
        previous = Some(segment.clone());
        segments.insert(*base, segment);
    }
    let (base, path) = last;
    check_follows(previous.as_deref(), *base)?;
    let durable_position = match checkpointed {
        Some(point) if point.segment_base > *base => {
            return Err(Error::corrupt(
                checkpoint::path(dir),
                0,
                format!(
                    "the recovery point lies in a segment starting at offset {}, but the last segment starts at {base}",
                    point.segment_base
                ),
            ));
        }
        Some(point) if point.segment_base == *base => point.position,
        // Everything before the active segment was synced when it was sealed.
        _ => 0,
    };
    let active = open_active(disk, path.clone(), *base, config, durable_position).await?;
    if let Some(point) = checkpointed.filter(|p| p.segment_base == *base)
        && active.end_offset.get() < point.end_offset
    {
        return Err(Error::corrupt(
            &active.path,
            active.len_bytes.get(),
            format!(
                "the segment ends at offset {} below its recovery point {}",
                active.end_offset.get(),
                point.end_offset
            ),
        ));
    }
    let tail = read_tail(&active).await?;
    segments.insert(*base, Rc::new(active));
    Ok(Recovered { segments, tail, checkpointed })
}

/// The segment before one starting at `next_base` must end exactly there: a gap means lost
/// data, an overlap means duplicated offsets. The error names the earlier file, whose end is
/// where the damage shows.
fn check_follows(previous: Option<&Segment>, next_base: u64) -> Result<()> {
    match previous {
        Some(prev) if prev.end_offset.get() != next_base => Err(Error::corrupt(
            &prev.path,
            prev.len_bytes.get(),
            format!(
                "segment ends at offset {} but the next segment starts at {next_base}",
                prev.end_offset.get()
            ),
        )),
        _ => Ok(()),
    }
}

/// Segment files in `dir` by base offset; leftover temporary files and orphaned indexes removed,
/// and a compaction's swap that a crash interrupted completed (see [`crate::compaction`]).
async fn list_segments(disk: &Disk, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let (names, _) = segment_files(disk, dir).await?;
    let mut swapped = false;
    for name in &names {
        let Some(base) = segment::parse_offset_file_name(name, "swap") else { continue };
        // A complete, synced replacement: install it (its stale indexes go first).
        let log = dir.join(segment::file_name(base, "log"));
        for kind in ["index", "timeindex"] {
            segment::remove_if_exists(disk, &log.with_extension(kind)).await?;
        }
        tracing::info!(file = %dir.join(name).display(), "completing an interrupted compaction swap");
        disk.rename(&dir.join(name), &log).await.map_err(|e| Error::io("renaming", dir.join(name), e))?;
        swapped = true;
    }
    if swapped {
        segment::sync_dir(disk, dir).await?;
    }
    let (names, bases) = segment_files(disk, dir).await?;
    for name in &names {
        let stem_base =
            name.split('.').next().and_then(|stem| segment::parse_segment_name(&format!("{stem}.log")));
        let orphan_index = (name.ends_with(".index") || name.ends_with(".timeindex"))
            && stem_base.is_some_and(|b| !bases.iter().any(|(base, _)| *base == b));
        if name.ends_with(".tmp") || name.ends_with(".cleaned") || name == disk::PROBE_FILE || orphan_index {
            tracing::info!(file = %dir.join(name).display(), "removing leftover file");
            segment::remove_if_exists(disk, &dir.join(name)).await?;
        }
    }
    Ok(bases)
}

/// Every file name in `dir`, and the segment files among them by base offset.
pub(crate) async fn segment_files(disk: &Disk, dir: &Path) -> Result<(Vec<String>, Vec<(u64, PathBuf)>)> {
    let names = disk.list(dir).await.map_err(|e| Error::io("listing log directory", dir, e))?;
    let mut bases: Vec<(u64, PathBuf)> =
        names.iter().filter_map(|n| segment::parse_segment_name(n).map(|b| (b, dir.join(n)))).collect();
    bases.sort();
    Ok((names, bases))
}

async fn open_sealed(disk: &Disk, path: PathBuf, base: u64, config: &LogConfig) -> Result<Segment> {
    let segment = Segment::open(disk, path, base).await?;
    segment.sealed.set(true);
    match segment.load_indexes().await? {
        Ok(()) => return Ok(segment),
        Err(reason) => tracing::warn!(segment = %segment.path.display(), %reason, "rebuilding index"),
    }
    let size = segment.len_bytes.get();
    let (good_end, end) = segment.rebuild(size, config.index_interval_bytes, config.read_chunk_bytes).await?;
    if let ScanEnd::Damaged { position, fault } = end {
        return Err(segment.damaged(position, fault));
    }
    assert_eq!(good_end, size, "a clean scan ends at the file end");
    if segment.end_offset.get() == base {
        return Err(Error::corrupt(&segment.path, 0, "sealed segment holds no entries"));
    }
    segment.write_indexes().await?;
    Ok(segment)
}

/// Opens and scans the active segment; its first `durable_position` bytes must be whole entries.
async fn open_active(
    disk: &Disk,
    path: PathBuf,
    base: u64,
    config: &LogConfig,
    durable_position: u64,
) -> Result<Segment> {
    let segment = Segment::open(disk, path, base).await?;
    let size = segment.len_bytes.get();
    if size < durable_position {
        return Err(Error::corrupt(
            &segment.path,
            size,
            format!("the file has {size} bytes but its first {durable_position} were recorded durable"),
        ));
    }
    let (good_end, end) = segment.rebuild(size, config.index_interval_bytes, config.read_chunk_bytes).await?;
    if let ScanEnd::Damaged { position, fault } = end {
        assert_eq!(position, good_end, "damage is found right after the last good entry");
        if position < durable_position {
            // Not a torn write: these bytes were synced. Nothing is truncated; the operator
            // decides (`rill storage verify`, `rill storage truncate`).
            return Err(segment.damaged(position, fault));
        }
        if fault == EntryFault::Zeroed {
            // The zero padding of the last direct-I/O block (the log was not closed cleanly);
            // possibly followed by a torn write, which the checksum chain already excluded.
            tracing::info!(segment = %segment.path.display(), position, discarded_bytes = size - position,
                "trimming the active segment's unwritten tail");
        } else {
            tracing::warn!(
                segment = %segment.path.display(),
                position,
                discarded_bytes = size - position,
                %fault,
                "truncating torn tail of the active segment"
            );
        }
        segment.truncate_file(good_end).await?;
    }
    // An active segment's indexes live in memory; files left by an earlier seal are stale.
    segment.remove_indexes().await?;
    segment.len_bytes.set(good_end);
    segment.sync().await?;
    Ok(segment)
}

/// The bytes of the segment's partial last block, which the next write rewrites.
pub(crate) async fn read_tail(segment: &Segment) -> Result<Vec<u8>> {
    let len = segment.len_bytes.get();
    let from = align_down(len);
    if from == len {
        return Ok(Vec::new());
    }
    Ok(segment.read_bytes(from, (len - from) as usize).await?.to_vec())
}

//! Offline inspection and repair of a log directory (`rill storage verify`, `rill storage
//! truncate`), for a log the broker refused to open. Neither runs beside a broker using the
//! directory.
//!
//! [`verify_dir`] changes nothing: it reads every entry of every segment, checks checksums and
//! the offset sequence, and classifies the first damage against the recovery point. Damage
//! beyond the recovery point of the active segment is the torn tail of a crash, which the next
//! open truncates by itself; any other damage needs the operator. [`truncate_dir`] is the
//! explicit repair: it removes everything from an offset on, which may be below acknowledged
//! data, so only an operator asks for it.

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, RecoveryPoint};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::recovery;
use crate::segment::{self, Segment, Walked};

/// Bytes read per disk read while verifying.
const CHUNK_BYTES: usize = 1 << 20;

/// The first damage [`verify_dir`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The damaged file.
    pub path: PathBuf,
    /// Byte offset of the damaged entry in that file.
    pub position: u64,
    /// What check failed.
    pub reason: String,
    /// Every offset below this is whole: `rill storage truncate --at` this offset (or lower)
    /// repairs the log.
    pub good_end_offset: u64,
    /// Beyond the recovery point of the active segment: a torn tail the next open truncates.
    pub torn_tail: bool,
}

/// What [`verify_dir`] found in one log directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The log directory.
    pub dir: PathBuf,
    /// Segment files.
    pub segments: usize,
    /// Base offset of the first segment.
    pub start_offset: u64,
    /// One past the last whole entry before any damage.
    pub end_offset: u64,
    /// The recovery point the checkpoint records, if any.
    pub recovery_point: Option<RecoveryPoint>,
    /// The first damage, if any.
    pub damage: Option<Damage>,
}

impl VerifyReport {
    /// Whether the log needs the operator (damage that recovery will not repair by itself).
    pub fn needs_repair(&self) -> bool {
        self.damage.as_ref().is_some_and(|d| !d.torn_tail)
    }
}

/// Reads and checks every entry of the logs in `dirs`, changing nothing. Must run on a glommio
/// executor.
pub async fn verify_dirs(dirs: &[PathBuf]) -> Result<Vec<VerifyReport>> {
    // glommio decides on the first DMA open whether the device polls, by reading that file's
    // first block (see `disk::prime_device_probe`): make it one that has data, read-only.
    'prime: for dir in dirs {
        for (_, path) in recovery::segment_files(&Disk::Direct, dir).await?.1 {
            if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
                let file =
                    glommio::io::DmaFile::open(&path).await.map_err(|e| Error::io("opening", &path, e))?;
                file.close().await.map_err(|e| Error::io("closing", &path, e))?;
                break 'prime;
            }
        }
    }
    let mut reports = Vec::with_capacity(dirs.len());
    for dir in dirs {
        reports.push(verify_dir(dir).await?);
    }
    Ok(reports)
}

async fn verify_dir(dir: &Path) -> Result<VerifyReport> {
    let (_, bases) = recovery::segment_files(&Disk::Direct, dir).await?;
    let recovery_point = checkpoint::read(&Disk::Direct, dir).await?;
    let mut report = VerifyReport {
        dir: dir.to_path_buf(),
        segments: bases.len(),
        start_offset: bases.first().map_or(0, |b| b.0),
        end_offset: bases.first().map_or(0, |b| b.0),
        recovery_point,
        damage: None,
    };
    let last = bases.len().saturating_sub(1);
    for (i, (base, path)) in bases.iter().enumerate() {
        let segment = Segment::open_read_only(&Disk::Direct, path.clone(), *base).await?;
        let durable = match recovery_point {
            _ if i < last => u64::MAX,
            Some(point) if point.segment_base == *base => point.position,
            Some(point) if point.segment_base > *base => u64::MAX,
            _ => 0,
        };
        let damage = |position: u64, reason: String, good_end_offset: u64| Damage {
            path: path.clone(),
            position,
            reason,
            good_end_offset,
            torn_tail: position >= durable,
        };
        if *base != report.end_offset {
            report.damage = Some(damage(
                0,
                format!("segment starts at offset {base} but the one before ends at {}", report.end_offset),
                report.end_offset,
            ));
            return Ok(report);
        }
        let size = segment.len_bytes.get();
        let (expected, walked) = segment.walk(*base, u64::MAX, CHUNK_BYTES).await?;
        report.end_offset = expected;
        if let Walked::Damaged { position, reason } = walked {
            report.damage = Some(damage(position, reason, expected));
            return Ok(report);
        }
        if size < durable && durable != u64::MAX {
            let reason = format!("the file has {size} bytes but its first {durable} were recorded durable");
            report.damage = Some(Damage { torn_tail: false, ..damage(size, reason, expected) });
            return Ok(report);
        }
    }
    Ok(report)
}

/// What [`truncate_dir`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncateReport {
    /// The log end offset afterwards.
    pub end_offset: u64,
    /// Whole segment files removed.
    pub segments_removed: usize,
    /// Bytes cut from the segment that now ends the log.
    pub bytes_cut: u64,
}

/// Removes every entry whose offsets reach `at` or beyond (an entry that straddles `at` goes
/// whole), even in sealed segments and even if damaged, as an operator's explicit repair.
/// Refuses if damage lies below `at` (truncating there would keep it), or if `at` is below the
/// first segment. Crash-safe: the checkpoint goes first, then the later segments newest first,
/// then the cut. Must run on a glommio executor.
pub async fn truncate_dir(dir: &Path, at: u64) -> Result<TruncateReport> {
    let (_, bases) = recovery::segment_files(&Disk::Direct, dir).await?;
    Disk::Direct.prime_device_probe(dir).await?;
    let Some(first) = bases.first() else {
        return Err(Error::OffsetOutOfRange { offset: at, start: 0, end: 0 });
    };
    if at < first.0 {
        return Err(Error::OffsetOutOfRange { offset: at, start: first.0, end: first.0 });
    }
    let keep = bases.iter().rposition(|(base, _)| *base <= at).expect("the first segment starts at or below");
    let (base, path) = bases[keep].clone();
    let segment = Segment::open(&Disk::Direct, path.clone(), base).await?;
    let size = segment.len_bytes.get();
    // Cut at the first entry that reaches `at` (it goes, with everything after it).
    let (expected, walked) = segment.walk(base, at, CHUNK_BYTES).await?;
    let cut = match walked {
        Walked::Reached { position } => position,
        // Damage right at `at`: it goes with the rest.
        Walked::Damaged { position, .. } if expected == at => position,
        Walked::Damaged { position, reason } => {
            return Err(Error::corrupt(
                &path,
                position,
                format!("{reason}; offsets from {expected} on are damaged: truncate at {expected} or lower"),
            ));
        }
        Walked::Clean => size,
    };
    segment::remove_snapshots_above(&Disk::Direct, dir, expected).await?;
    checkpoint::remove(&Disk::Direct, dir).await?;
    let later = &bases[keep + 1..];
    for (later_base, later_path) in later.iter().rev() {
        let doomed = Segment::open(&Disk::Direct, later_path.clone(), *later_base).await?;
        segment::remove_if_exists(&Disk::Direct, &doomed.path).await?;
        doomed.remove_indexes().await?;
    }
    if !later.is_empty() {
        segment::sync_dir(&Disk::Direct, dir).await?;
    }
    // The kept segment becomes the active one: its sealed indexes no longer describe it.
    segment.remove_indexes().await?;
    segment.truncate_file(cut).await?;
    segment.sync().await?;
    segment::sync_dir(&Disk::Direct, dir).await?;
    tracing::info!(dir = %dir.display(), at, segments_removed = later.len(), bytes_cut = size - cut,
        "log truncated by the operator");
    Ok(TruncateReport { end_offset: expected, segments_removed: later.len(), bytes_cut: size - cut })
}

/// The lock file in a broker's data directory.
pub const DATA_DIR_LOCK_FILE: &str = ".lock";

/// An exclusive lock on a data directory (Kafka's `.lock`): held by a running broker for its
/// whole life, and by the offline repair tools, so that neither runs beside the other.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    /// Takes the lock on `data_dir`, creating the lock file if needed; fails at once (naming
    /// the directory) if another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock> {
        let path = data_dir.join(DATA_DIR_LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("opening lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::io(
                "locking",
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the data directory is in use by another process (a running broker?)",
                ),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("locking", &path, e)),
        }
    }

    /// The data directory holding `log_dir` (the nearest ancestor with a lock file), if any.
    pub fn data_dir_of(log_dir: &Path) -> Option<PathBuf> {
        log_dir.ancestors().find(|d| d.join(DATA_DIR_LOCK_FILE).is_file()).map(Path::to_path_buf)
    }
}

//! Fault injection on real files: truncations and bit flips at random positions. In the active
//! segment, damage beyond the recovery point (a torn tail of a crash) is truncated exactly there;
//! damage below it, and any damage in a sealed segment, is reported with its file and byte
//! offset and nothing is truncated.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rill_storage::{CHECKPOINT_FILE, Durability, ENTRY_HEADER_BYTES, Error, ManualClock, RecoveryPoint};

/// An entry as laid out on disk, found by walking the headers (payload length at byte 8).
#[derive(Clone, Debug)]
struct Laid {
    file: PathBuf,
    position: u64,
    len: u64,
    base: u64,
    end: u64,
}

fn lay_out(dir: &Path) -> Vec<Laid> {
    let mut out = Vec::new();
    let files = segment_files(dir, "log");
    for (i, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        let mut position = 0usize;
        while position + ENTRY_HEADER_BYTES <= bytes.len() {
            let h = &bytes[position..position + ENTRY_HEADER_BYTES];
            if h.iter().all(|b| *b == 0) {
                break; // the zero padding of an active segment that was not closed
            }
            let payload_len = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
            let records = u32::from_le_bytes(h[12..16].try_into().unwrap()) as u64;
            let base = u64::from_le_bytes(h[16..24].try_into().unwrap());
            let len = (ENTRY_HEADER_BYTES + payload_len) as u64;
            out.push(Laid { file: file.clone(), position: position as u64, len, base, end: base + records });
            position += len as usize;
        }
        if i + 1 < files.len() {
            assert_eq!(position, bytes.len(), "sealed segments are trimmed to whole entries");
        }
    }
    out
}

/// How the pristine log was left.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    /// `close`: the recovery point covers everything.
    Clean,
    /// Synced, checkpointed, then more appends written (and synced) and the process gone without
    /// a close: the recovery point lies inside the active segment, entries beyond it.
    Crash,
}

/// Builds a pristine log of several segments and returns its directory and layout.
fn pristine(stop: Stop) -> (tempfile::TempDir, Vec<Laid>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, small_config(Durability::Never), &clock).await;
        for i in 0..120u64 {
            let base = log.next_offset();
            log.append(batch(payload_for(base, 200 + (i as usize * 977) % 5000), 1 + (i % 4) as u32, 0))
                .await
                .unwrap();
        }
        match stop {
            Stop::Clean => log.close().await.unwrap(),
            Stop::Crash => {
                log.sync().await.unwrap();
                log.checkpoint().await.unwrap();
                for i in 0..6u64 {
                    let base = log.next_offset();
                    log.append(batch(payload_for(base, 300 + i as usize * 100), 1, 0)).await.unwrap();
                }
                log.sync().await.unwrap();
            }
        }
    });
    let laid = lay_out(dir.path());
    assert!(segment_files(dir.path(), "log").len() >= 4);
    (dir, laid)
}

/// The recovery point the checkpoint file records.
fn recovery_point(dir: &Path) -> RecoveryPoint {
    RecoveryPoint::decode(&std::fs::read(dir.join(CHECKPOINT_FILE)).unwrap()).unwrap()
}

/// The active segment of a crashed pristine log, its recovery point within it, and where its
/// entries end (the zero padding after them is not data).
fn crashed_active(dir: &Path, laid: &[Laid]) -> (PathBuf, u64, u64) {
    let active = segment_files(dir, "log").pop().unwrap();
    let point = recovery_point(dir);
    let in_active: Vec<&Laid> = laid.iter().filter(|l| l.file == active).collect();
    assert_eq!(point.segment_base, in_active[0].base, "the checkpoint lies in the active segment");
    let data_end = in_active.last().map(|l| l.position + l.len).unwrap();
    assert!(point.position > 0 && point.position < data_end, "entries on both sides of {point:?}");
    (active, point.position, data_end)
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

fn flip_bit(file: &Path, bit: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
    std::fs::write(file, bytes).unwrap();
}

/// Opens the damaged log and returns (end offset, all batches) or the open error.
fn reopen(dir: &Path) -> Result<(u64, Vec<rill_storage::StoredBatch>), Error> {
    let path = dir.to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let clock: std::rc::Rc<dyn rill_storage::Clock> = std::rc::Rc::new(clock);
        let log = rill_storage::Log::open(&path, small_config(Durability::Always), clock).await?;
        let mut all = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            for b in log.read(offset, 64 << 10).await? {
                offset = b.end_offset();
                all.push(b);
            }
        }
        log.verify().await?;
        // The log still takes appends after recovery.
        let end = log.log_end_offset();
        assert_eq!(log.append(batch(payload_for(end, 10), 1, 0)).await?, end);
        Ok((end, all))
    })
}

fn check_prefix(all: &[rill_storage::StoredBatch], laid: &[Laid], end: u64) {
    let expected: Vec<&Laid> = laid.iter().filter(|l| l.end <= end).collect();
    assert_eq!(all.len(), expected.len());
    for (b, l) in all.iter().zip(expected) {
        assert_eq!(b.base_offset, l.base);
        assert_eq!(b.payload, payload_for(l.base, (l.len as usize) - ENTRY_HEADER_BYTES));
    }
}

fn damaged_entry<'a>(laid: &'a [Laid], file: &Path, byte: u64) -> &'a Laid {
    laid.iter().find(|l| l.file == file && l.position <= byte && byte < l.position + l.len).unwrap()
}

#[test]
fn active_segment_cut_beyond_the_recovery_point_recovers_to_last_whole_entry() {
    let (pristine, laid) = pristine(Stop::Crash);
    let (active, point, data_end) = crashed_active(pristine.path(), &laid);
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    for _ in 0..30 {
        let dir = copy_dir(pristine.path());
        let cut = rng.random_range(point..data_end);
        let file = dir.path().join(active.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(cut).unwrap();
        let in_active: Vec<&Laid> = laid.iter().filter(|l| l.file == active).collect();
        let expected_end = in_active
            .iter()
            .filter(|l| l.position + l.len <= cut)
            .map(|l| l.end)
            .next_back()
            .unwrap_or(in_active[0].base);
        let (end, all) = reopen(dir.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(end, expected_end, "cut at {cut}");
        check_prefix(&all, &laid, end);
    }
}

#[test]
fn active_segment_bit_flip_beyond_the_recovery_point_truncates_at_the_damaged_entry() {
    let (pristine, laid) = pristine(Stop::Crash);
    let (active, point, data_end) = crashed_active(pristine.path(), &laid);
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    for _ in 0..30 {
        let dir = copy_dir(pristine.path());
        let bit = rng.random_range(point * 8..data_end * 8);
        flip_bit(&dir.path().join(active.file_name().unwrap()), bit);
        let hit = damaged_entry(&laid, &active, bit / 8);
        let (end, all) = reopen(dir.path()).unwrap_or_else(|e| panic!("bit {bit}: {e}"));
        assert_eq!(end, hit.base, "flip in entry at {} must truncate there", hit.position);
        check_prefix(&all, &laid, end);
    }
}

/// Opens a damaged copy expecting `Corrupt` at `position` of `file`, and checks that nothing in
/// the directory changed.
fn expect_reported(dir: &Path, file: &Path, position: Option<u64>, what: &str) {
    let before: Vec<(PathBuf, Vec<u8>)> =
        segment_files(dir, "log").into_iter().map(|f| (f.clone(), std::fs::read(&f).unwrap())).collect();
    match reopen(dir) {
        Err(Error::Corrupt { path, position: at, .. }) => {
            assert_eq!(path, file, "{what}");
            if let Some(position) = position {
                assert_eq!(at, position, "{what}");
            }
        }
        other => panic!("{what}: expected Corrupt, got {:?}", other.map(|r| r.0)),
    }
    for (f, bytes) in before {
        assert!(std::fs::read(&f).unwrap() == bytes, "{what}: {} changed", f.display());
    }
}

#[test]
fn active_segment_damage_below_the_recovery_point_is_reported_and_nothing_is_truncated() {
    let (pristine, laid) = pristine(Stop::Crash);
    let (active, point, _) = crashed_active(pristine.path(), &laid);
    let mut rng = StdRng::seed_from_u64(0x5eed_0006);
    for round in 0..30 {
        let dir = copy_dir(pristine.path());
        let file = dir.path().join(active.file_name().unwrap());
        if round % 3 == 0 {
            let cut = rng.random_range(0..point);
            std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(cut).unwrap();
            expect_reported(dir.path(), &file, None, &format!("cut at {cut}"));
        } else {
            let bit = rng.random_range(0..point * 8);
            flip_bit(&file, bit);
            let hit = damaged_entry(&laid, &active, bit / 8);
            expect_reported(dir.path(), &file, Some(hit.position), &format!("bit {bit}"));
        }
    }
}

/// The reported defect: acknowledged, cleanly stopped, one bit flipped in the middle of the
/// active segment. Recovery used to truncate there and drop everything after it.
#[test]
fn after_a_clean_close_damage_anywhere_in_the_active_segment_is_reported() {
    let (pristine, laid) = pristine(Stop::Clean);
    let active = segment_files(pristine.path(), "log").pop().unwrap();
    let active_len = std::fs::metadata(&active).unwrap().len();
    assert_eq!(recovery_point(pristine.path()).position, active_len);
    let mut rng = StdRng::seed_from_u64(0x5eed_0007);
    for _ in 0..30 {
        let dir = copy_dir(pristine.path());
        let bit = rng.random_range(0..active_len * 8);
        let file = dir.path().join(active.file_name().unwrap());
        flip_bit(&file, bit);
        let hit = damaged_entry(&laid, &active, bit / 8);
        expect_reported(dir.path(), &file, Some(hit.position), &format!("bit {bit}"));
    }
}

/// Without a checkpoint (a log from before checkpoints, or one whose checkpoint was lost),
/// the whole active segment is treated as possibly torn, as before.
#[test]
fn without_a_checkpoint_the_active_segment_tail_is_truncated() {
    let (pristine, laid) = pristine(Stop::Clean);
    let dir = copy_dir(pristine.path());
    std::fs::remove_file(dir.path().join(CHECKPOINT_FILE)).unwrap();
    let active = segment_files(dir.path(), "log").pop().unwrap();
    let in_active: Vec<&Laid> = laid.iter().filter(|l| l.file.file_name() == active.file_name()).collect();
    let victim = in_active[in_active.len() / 2];
    flip_bit(&active, (victim.position + victim.len / 2) * 8);
    let (end, all) = reopen(dir.path()).unwrap();
    assert_eq!(end, victim.base);
    check_prefix(&all, &laid, end);
}

#[test]
fn sealed_segment_bit_flip_is_reported_with_file_and_position() {
    let (pristine, laid) = pristine(Stop::Clean);
    let sealed = segment_files(pristine.path(), "log");
    let sealed = &sealed[..sealed.len() - 1];
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    for round in 0..40 {
        let dir = copy_dir(pristine.path());
        let victim = &sealed[rng.random_range(0..sealed.len())];
        let len = std::fs::metadata(victim).unwrap().len();
        let bit = rng.random_range(0..len * 8);
        let file = dir.path().join(victim.file_name().unwrap());
        flip_bit(&file, bit);
        // Half the rounds also lose the index, so the damage is met by the rebuild scan at open.
        if round % 2 == 1 {
            std::fs::remove_file(file.with_extension("index")).unwrap();
        }
        let hit =
            laid.iter().find(|l| &l.file == victim && l.position <= bit / 8 && bit / 8 < l.position + l.len);
        let hit = hit.unwrap();
        match reopen(dir.path()) {
            Err(Error::Corrupt { path, position, .. }) => {
                assert_eq!(path, file, "bit {bit}");
                assert_eq!(position, hit.position, "bit {bit}");
            }
            other => {
                panic!("bit {bit} in {}: expected Corrupt, got {:?}", victim.display(), other.map(|r| r.0))
            }
        }
    }
}

#[test]
fn sealed_segment_truncation_is_reported_never_dropped() {
    let (pristine, _laid) = pristine(Stop::Clean);
    let sealed = segment_files(pristine.path(), "log");
    let sealed = &sealed[..sealed.len() - 1];
    let mut rng = StdRng::seed_from_u64(0x5eed_0004);
    for _ in 0..30 {
        let dir = copy_dir(pristine.path());
        let victim = &sealed[rng.random_range(0..sealed.len())];
        let len = std::fs::metadata(victim).unwrap().len();
        let cut = rng.random_range(0..len);
        let file = dir.path().join(victim.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(cut).unwrap();
        match reopen(dir.path()) {
            Err(Error::Corrupt { path, .. }) => assert_eq!(path, file, "cut {cut}"),
            other => {
                panic!("cut {cut} of {}: expected Corrupt, got {:?}", victim.display(), other.map(|r| r.0))
            }
        }
    }
}

#[test]
fn damaged_index_is_rebuilt_without_loss() {
    let (pristine, laid) = pristine(Stop::Crash);
    let mut rng = StdRng::seed_from_u64(0x5eed_0005);
    for _ in 0..20 {
        let dir = copy_dir(pristine.path());
        let mut indexes = segment_files(dir.path(), "index");
        indexes.extend(segment_files(dir.path(), "timeindex"));
        let victim = &indexes[rng.random_range(0..indexes.len())];
        let len = std::fs::metadata(victim).unwrap().len();
        flip_bit(victim, rng.random_range(0..len * 8));
        let (end, all) = reopen(dir.path()).unwrap();
        assert_eq!(end, laid.last().unwrap().end);
        check_prefix(&all, &laid, end);
    }
}

#[test]
fn missing_middle_segment_is_an_error() {
    let (pristine, _) = pristine(Stop::Clean);
    let dir = copy_dir(pristine.path());
    let files = segment_files(dir.path(), "log");
    std::fs::remove_file(&files[1]).unwrap();
    match reopen(dir.path()) {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert_eq!(path, files[0]);
            assert!(reason.contains("next segment starts"), "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|r| r.0)),
    }
}

/// A truncation moves the recovery point back before it cuts: a crash right after it must not
/// find a checkpoint claiming the removed bytes.
#[test]
fn a_truncation_moves_the_recovery_point_back() {
    let (pristine, laid) = pristine(Stop::Clean);
    let dir = copy_dir(pristine.path());
    let path = dir.path().to_path_buf();
    let cut = laid[laid.len() - 3].base;
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, small_config(Durability::Always), &clock).await;
        assert_eq!(log.truncate(cut).await.unwrap(), cut);
        assert_eq!(log.checkpointed().map(|p| p.end_offset), Some(cut));
        // Gone without a close.
    });
    assert_eq!(recovery_point(dir.path()).end_offset, cut);
    let (end, all) = reopen(dir.path()).unwrap();
    assert_eq!(end, cut);
    check_prefix(&all, &laid, end);
}

//! Fault injection on real files: truncations and bit flips at random positions. Damage at the
//! active segment's tail is truncated exactly there; damage in a sealed segment is reported with
//! its file and byte offset, never silently dropped.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rill_storage::{Durability, ENTRY_HEADER_BYTES, Error, ManualClock};

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
    for file in segment_files(dir, "log") {
        let bytes = std::fs::read(&file).unwrap();
        let mut position = 0usize;
        while position + ENTRY_HEADER_BYTES <= bytes.len() {
            let h = &bytes[position..position + ENTRY_HEADER_BYTES];
            let payload_len = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
            let records = u32::from_le_bytes(h[12..16].try_into().unwrap()) as u64;
            let base = u64::from_le_bytes(h[16..24].try_into().unwrap());
            let len = (ENTRY_HEADER_BYTES + payload_len) as u64;
            out.push(Laid { file: file.clone(), position: position as u64, len, base, end: base + records });
            position += len as usize;
        }
        assert_eq!(position, bytes.len(), "closed logs are trimmed to whole entries");
    }
    out
}

/// Builds a pristine log of several segments and returns its directory and layout.
fn pristine() -> (tempfile::TempDir, Vec<Laid>) {
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
        log.close().await.unwrap();
    });
    let laid = lay_out(dir.path());
    assert!(segment_files(dir.path(), "log").len() >= 4);
    (dir, laid)
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

#[test]
fn active_segment_truncated_anywhere_recovers_to_last_whole_entry() {
    let (pristine, laid) = pristine();
    let active = segment_files(pristine.path(), "log").pop().unwrap();
    let active_len = std::fs::metadata(&active).unwrap().len();
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    for _ in 0..40 {
        let dir = copy_dir(pristine.path());
        let cut = rng.random_range(0..active_len);
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
fn active_segment_bit_flip_truncates_at_the_damaged_entry() {
    let (pristine, laid) = pristine();
    let active = segment_files(pristine.path(), "log").pop().unwrap();
    let active_len = std::fs::metadata(&active).unwrap().len();
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    for _ in 0..40 {
        let dir = copy_dir(pristine.path());
        let bit = rng.random_range(0..active_len * 8);
        flip_bit(&dir.path().join(active.file_name().unwrap()), bit);
        let hit =
            laid.iter().find(|l| l.file == active && l.position <= bit / 8 && bit / 8 < l.position + l.len);
        let hit = hit.unwrap();
        let (end, all) = reopen(dir.path()).unwrap_or_else(|e| panic!("bit {bit}: {e}"));
        assert_eq!(end, hit.base, "flip in entry at {} must truncate there", hit.position);
        check_prefix(&all, &laid, end);
    }
}

#[test]
fn sealed_segment_bit_flip_is_reported_with_file_and_position() {
    let (pristine, laid) = pristine();
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
    let (pristine, _laid) = pristine();
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
    let (pristine, laid) = pristine();
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
    let (pristine, _) = pristine();
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

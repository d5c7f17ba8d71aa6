//! Log compaction against real files, with a toy record format (the broker's Compactor reads
//! RecordBatch v2; the storage only needs the trait): the latest record of each key stays at its
//! offset, older ones go, tombstones go after the delete retention, recent segments wait for
//! the minimum lag, the key map stays within its budget, and a crash part-way (a `.cleaned` or
//! `.swap` file left behind) loses and duplicates nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use rill_storage::{CompactionOptions, Compactor, Durability, Kept, KeyedRecord, Log, ManualClock};

/// Payload: base offset (u64, patched by the log), then per record: offset delta (u32), key
/// (u8), tombstone (u8).
struct Toy;

fn toy(records: &[(u32, u8, bool)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u64(0);
    for (delta, key, tomb) in records {
        b.put_u32(*delta);
        b.put_u8(*key);
        b.put_u8(*tomb as u8);
    }
    b.freeze()
}

fn parse(batch: &Bytes) -> (u64, Vec<(u32, u8, bool)>) {
    let base = u64::from_be_bytes(batch[..8].try_into().unwrap());
    let records = batch[8..]
        .chunks(6)
        .map(|c| (u32::from_be_bytes(c[..4].try_into().unwrap()), c[4], c[5] == 1))
        .collect();
    (base, records)
}

impl Compactor for Toy {
    fn records(&self, batch: &Bytes) -> Result<Vec<KeyedRecord>, String> {
        let (base, records) = parse(batch);
        Ok(records
            .into_iter()
            .map(|(delta, key, tombstone)| KeyedRecord {
                offset: base + delta as u64,
                key: Some([key; 16]),
                tombstone,
            })
            .collect())
    }

    fn retain(&self, batch: &Bytes, keep: &dyn Fn(u64) -> bool) -> Result<Kept, String> {
        let (base, records) = parse(batch);
        let kept: Vec<_> = records.iter().copied().filter(|(d, _, _)| keep(base + *d as u64)).collect();
        Ok(match kept.len() {
            0 => Kept::Nothing,
            n if n == records.len() => Kept::All,
            _ => {
                let mut b = BytesMut::from(&toy(&kept)[..]);
                b[..8].copy_from_slice(&base.to_be_bytes());
                Kept::Some(b.freeze())
            }
        })
    }

    fn empty_batch(&self, base: u64, _span: u32) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u64(base);
        b.freeze()
    }
}

fn options() -> CompactionOptions {
    CompactionOptions {
        key_map_bytes_max: 1 << 20,
        min_lag_ms: 0,
        delete_retention_ms: 1_000,
        min_dirty_ratio: 0.0,
        max_lag_ms: u64::MAX,
        bytes_per_second_max: None,
    }
}

fn batch_of(records: &[(u32, u8, bool)], ts: i64) -> rill_storage::Batch {
    let mut b = batch(toy(records), records.iter().map(|r| r.0).max().unwrap() + 1, ts);
    b.base_offset_field = Some(0);
    b
}

/// Every record the log holds: offset to (key, tombstone).
async fn contents(log: &Log) -> BTreeMap<u64, (u8, bool)> {
    let mut out = BTreeMap::new();
    for b in read_all(log).await {
        let (base, records) = parse(&b.payload);
        assert!(b.base_offset <= base, "a batch lies within its entry's span");
        for (delta, key, tomb) in records {
            let offset = base + delta as u64;
            assert!(offset < b.end_offset());
            assert!(out.insert(offset, (key, tomb)).is_none(), "offset {offset} twice");
        }
    }
    out
}

/// Appends `count` batches of two records each, key `(i * 2 + j) % keys`, tombstones where
/// `tomb(offset)`.
async fn fill(log: &Log, count: u32, keys: u8, tomb: impl Fn(u64) -> bool) -> BTreeMap<u64, (u8, bool)> {
    let mut written = BTreeMap::new();
    for _ in 0..count {
        let base = log.next_offset();
        let records: Vec<(u32, u8, bool)> =
            (0..2u32).map(|j| (j, ((base + j as u64) % keys as u64) as u8, tomb(base + j as u64))).collect();
        log.append(batch_of(&records, 0)).await.unwrap();
        for (d, k, t) in records {
            written.insert(base + d as u64, (k, t));
        }
    }
    written
}

/// What compaction must leave: the latest record of each key among `written` below `cleaned`
/// (tombstones too unless `drop_tombstones`), everything from `cleaned` on.
fn expected(
    written: &BTreeMap<u64, (u8, bool)>,
    cleaned: u64,
    drop_tombstones: bool,
) -> BTreeMap<u64, (u8, bool)> {
    let mut latest: BTreeMap<u8, u64> = BTreeMap::new();
    for (o, (k, _)) in written.iter().filter(|(o, _)| **o < cleaned) {
        latest.insert(*k, *o);
    }
    written
        .iter()
        .filter(|(o, (k, t))| **o >= cleaned || (latest[k] == **o && !(*t && drop_tombstones)))
        .map(|(o, v)| (*o, *v))
        .collect()
}

fn small(dir: &Path) -> (std::path::PathBuf, rill_storage::LogConfig) {
    let mut config = small_config(Durability::Always);
    config.segment_size_bytes_max = 2 << 10;
    (dir.to_path_buf(), config)
}

#[test]
fn the_latest_record_of_each_key_stays_at_its_offset_and_older_ones_go() {
    let dir = tempfile::tempdir().unwrap();
    let (path, config) = small(dir.path());
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, config.clone(), &clock).await;
        let written = fill(&log, 300, 10, |_| false).await;
        let end = log.log_end_offset();
        let segments = log.stats().segments;
        assert!(segments > 10, "{segments}");
        let report = log.compact(&Toy, &options()).await.unwrap();
        assert!(report.cleaned && report.segments_rewritten > 0, "{report:?}");
        let cleaned = report.cleaned_to;
        assert_eq!(cleaned, log.active_segment_base(), "everything sealed is clean");
        assert_eq!(contents(&log).await, expected(&written, cleaned, false));
        assert_eq!(log.log_end_offset(), end, "offsets never move");
        assert!(report.bytes_after < report.bytes_before, "{report:?}");
        // Appends go on; a second cleaning with nothing new changes nothing.
        let more = fill(&log, 5, 10, |_| false).await;
        let again =
            log.compact(&Toy, &CompactionOptions { min_dirty_ratio: 0.99, ..options() }).await.unwrap();
        assert!(!again.cleaned, "{again:?}");
        log.close().await.unwrap();
        // Reopened: the same records; the log verifies.
        let log = open(&path, config.clone(), &clock).await;
        let mut all = written.clone();
        all.extend(more);
        assert_eq!(contents(&log).await, expected(&all, cleaned, false));
        log.verify().await.unwrap();
        // A fetch from inside a removed range starts at the next kept record.
        let now = contents(&log).await;
        let gap = (0..cleaned).find(|o| !now.contains_key(o)).unwrap();
        // As a Kafka client does: read, move past the last batch, until a record comes.
        let mut at = gap;
        let next = loop {
            let read = log.read(at, 1).await.unwrap();
            assert!(read[0].base_offset <= at && at < read[0].end_offset(), "the entry spanning {at}");
            let (base, records) = parse(&read[0].payload);
            if let Some(o) = records.iter().map(|r| base + r.0 as u64).find(|o| *o >= at) {
                break o;
            }
            at = read[0].end_offset();
        };
        assert_eq!(Some(next), now.range(gap..).next().map(|(o, _)| *o), "then the next kept record");
    });
}

#[test]
fn tombstones_go_after_the_delete_retention_and_empty_segments_keep_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (path, config) = small(dir.path());
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, config.clone(), &clock).await;
        // Keys 0-3 written, then every key deleted: the latest of each is a tombstone.
        let mut written = fill(&log, 100, 4, |_| false).await;
        written.extend(fill(&log, 4, 4, |_| true).await);
        fill(&log, 100, 200, |_| false).await; // later, other keys, so the tombstones are sealed
        let first = log.compact(&Toy, &options()).await.unwrap();
        let cleaned = first.cleaned_to;
        let after_first = contents(&log).await;
        let tombstones: Vec<_> = after_first.iter().filter(|(o, (_, t))| **o < cleaned && *t).collect();
        assert_eq!(tombstones.len(), 4, "kept by the first cleaning: {tombstones:?}");
        // Before the retention passes they stay; after it, the next cleaning removes them.
        clock.advance_ms(500);
        log.compact(&Toy, &options()).await.unwrap();
        assert_eq!(contents(&log).await.values().filter(|(_, t)| *t).count(), 4);
        clock.advance_ms(600);
        let last = log.compact(&Toy, &options()).await.unwrap();
        assert_eq!(last.tombstones_removed, 4, "{last:?}");
        let now = contents(&log).await;
        assert!(now.iter().all(|(o, (k, _))| *o >= cleaned || *k >= 4), "keys 0-3 are gone entirely");
        // Segments left without records still span their offsets: the log reads through.
        assert!(log.stats().segments > 1);
        log.close().await.unwrap();
        let log = open(&path, config, &clock).await;
        assert_eq!(contents(&log).await, now);
        log.verify().await.unwrap();
    });
}

#[test]
fn recent_segments_wait_for_the_lag_and_the_key_map_stays_in_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (path, config) = small(dir.path());
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, config.clone(), &clock).await;
        fill(&log, 100, 10, |_| false).await;
        clock.advance_ms(10_000);
        let old_end = log.active_segment_base();
        let written = fill(&log, 100, 10, |_| false).await;
        let lagged = log.compact(&Toy, &CompactionOptions { min_lag_ms: 5_000, ..options() }).await.unwrap();
        assert!(lagged.cleaned_to <= old_end, "{lagged:?}");
        let recent = contents(&log).await;
        assert!(
            written.iter().all(|(o, v)| *o < lagged.cleaned_to || recent.get(o) == Some(v)),
            "recent data untouched"
        );
        // A budget of a few keys: at most the segments whose keys fit are mapped.
        let dir2 = tempfile::tempdir().unwrap();
        let log2 = open(dir2.path(), config.clone(), &clock).await;
        fill(&log2, 100, 250, |_| false).await;
        let tight = log2
            .compact(&Toy, &CompactionOptions { key_map_bytes_max: 40 * 100, ..options() })
            .await
            .unwrap();
        assert!(
            tight.cleaned && tight.cleaned_to > 0 && tight.cleaned_to < log2.active_segment_base(),
            "{tight:?}"
        );
    });
}

#[test]
fn a_crash_during_a_swap_leaves_the_old_segment_or_the_new_one() {
    let dirty = tempfile::tempdir().unwrap();
    let clean = tempfile::tempdir().unwrap();
    let (dirty_path, config) = small(dirty.path());
    let clean_path = clean.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&dirty_path, config.clone(), &clock).await;
        let written = fill(&log, 200, 10, |_| false).await;
        log.close().await.unwrap();
        for f in std::fs::read_dir(&dirty_path).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, clean_path.join(f.file_name().unwrap())).unwrap();
        }
        let log = open(&clean_path, config.clone(), &clock).await;
        let cleaned_to = log.compact(&Toy, &options()).await.unwrap().cleaned_to;
        let compacted = contents(&log).await;
        log.close().await.unwrap();
        // A leftover `.cleaned` (the crash came before the swap): removed, the old data stays.
        let first = segment_files(&clean_path, "log")[0].clone();
        let cleaned_copy = dirty_path.join(first.file_name().unwrap()).with_extension("cleaned");
        std::fs::copy(&first, &cleaned_copy).unwrap();
        let log = open(&dirty_path, config.clone(), &clock).await;
        assert!(!cleaned_copy.exists());
        assert_eq!(contents(&log).await, written);
        log.close().await.unwrap();
        // A `.swap` of every cleaned segment (the crash came after the swaps were written): the
        // open completes them, and the result is the compacted log.
        for seg in segment_files(&clean_path, "log") {
            let base_name = seg.file_name().unwrap().to_owned();
            if dirty_path.join(&base_name).exists()
                && seg != *segment_files(&clean_path, "log").last().unwrap()
            {
                std::fs::copy(&seg, dirty_path.join(base_name).with_extension("swap")).unwrap();
            }
        }
        let log = open(&dirty_path, config, &clock).await;
        let got = contents(&log).await;
        assert_eq!(
            got.range(..cleaned_to).collect::<Vec<_>>(),
            compacted.range(..cleaned_to).collect::<Vec<_>>()
        );
        assert_eq!(
            got.range(cleaned_to..).collect::<Vec<_>>(),
            written.range(cleaned_to..).collect::<Vec<_>>()
        );
        assert!(segment_files(&dirty_path, "swap").is_empty());
        log.verify().await.unwrap();
    });
}

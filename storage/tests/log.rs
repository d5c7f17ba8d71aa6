//! Behaviour of the partition log against real files.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use rill_storage::{Durability, Error, ManualClock};

#[test]
fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(1_000);
        let log = open(&path, small_config(Durability::Always), &clock).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
        let mut expected = Vec::new();
        for i in 0..50u32 {
            let records = 1 + i % 5;
            let base = log.next_offset();
            let payload = payload_for(base, 100 + i as usize * 37);
            let got = log.append(batch(payload.clone(), records, 1_000 + i as i64)).await.unwrap();
            assert_eq!(got, base);
            expected.push((base, records, payload));
        }
        assert_eq!(log.durable_end_offset(), log.log_end_offset());
        let check = |batches: Vec<rill_storage::StoredBatch>| {
            assert_eq!(batches.len(), expected.len());
            for (b, (base, records, payload)) in batches.iter().zip(&expected) {
                assert_eq!((b.base_offset, b.record_count, &b.payload), (*base, *records, payload));
            }
        };
        check(read_all(&log).await);
        let end = log.log_end_offset();
        log.close().await.unwrap();
        assert!(matches!(log.append(batch(Bytes::from_static(b"x"), 1, 0)).await, Err(Error::Closed(_))));

        let log = open(&path, small_config(Durability::Always), &clock).await;
        assert_eq!(log.log_end_offset(), end);
        check(read_all(&log).await);
        // A read from the middle of a batch starts with that batch.
        let third = &expected[3];
        let batches = log.read(third.0 + third.1 as u64 - 1, 1).await.unwrap();
        assert_eq!(batches[0].base_offset, third.0);
        assert_eq!(batches.len(), 1, "byte budget respected after the first batch");
        assert!(matches!(log.read(end + 1, 100).await, Err(Error::OffsetOutOfRange { .. })));
        assert!(log.read(end, 100).await.unwrap().is_empty());
        log.verify().await.unwrap();
    });
}

#[test]
fn rolls_by_size_and_age_and_writes_sealed_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, small_config(Durability::IntervalMs(5)), &clock).await;
        for i in 0..40u64 {
            let base = log.next_offset();
            log.append(batch(payload_for(base, 4000), 2, i as i64)).await.unwrap();
        }
        let by_size = log.stats().segments;
        assert!(by_size >= 3, "64 KiB segments roll under 160 KB of appends: {by_size}");
        clock.advance_ms(3_600_000);
        log.append(batch(payload_for(log.next_offset(), 10), 1, 50)).await.unwrap();
        assert_eq!(log.stats().segments, by_size + 1, "age roll");
        log.sync().await.unwrap();
        let logs = segment_files(&path, "log");
        assert_eq!(logs.len(), by_size + 1);
        assert_eq!(segment_files(&path, "index").len(), by_size, "sealed segments have indexes");
        assert_eq!(segment_files(&path, "timeindex").len(), by_size);
        for f in &logs {
            let stem = f.file_stem().unwrap().to_str().unwrap();
            assert_eq!(stem.len(), 20);
        }
        let all = read_all(&log).await;
        assert_eq!(all.len(), 41);
        log.close().await.unwrap();
        // Reopen with indexes removed: they are rebuilt from the segments.
        for f in segment_files(&path, "index") {
            std::fs::remove_file(f).unwrap();
        }
        let log = open(&path, small_config(Durability::Never), &clock).await;
        assert_eq!(read_all(&log).await, all);
        assert_eq!(segment_files(&path, "index").len(), by_size);
    });
}

#[test]
fn offset_for_timestamp_finds_first_batch_reaching_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, small_config(Durability::Never), &clock).await;
        // Timestamps go up and down, as producers' clocks do.
        let stamps: Vec<i64> = (0..200).map(|i| 1000 + i * 10 + if i % 7 == 0 { -500 } else { 0 }).collect();
        let mut bases = Vec::new();
        for &ts in &stamps {
            let base = log.next_offset();
            bases.push(base);
            let mut b = batch(payload_for(base, 900), 3, ts - 5);
            b.max_timestamp_ms = ts;
            log.append(b).await.unwrap();
        }
        log.sync().await.unwrap();
        for probe in [i64::MIN, 0, 995, 1000, 1001, 1500, 2990, 2991, 2999, 3000] {
            let expected = stamps.iter().position(|&ts| ts >= probe).map(|i| bases[i]);
            assert_eq!(log.offset_for_timestamp(probe).await.unwrap(), expected, "probe {probe}");
        }
    });
}

#[test]
fn bad_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let config = small_config(Durability::Always);
        let log = open(&path, config.clone(), &clock).await;
        let too_big = Bytes::from(vec![1u8; config.batch_bytes_max as usize + 1]);
        assert!(matches!(log.append(batch(too_big, 1, 0)).await, Err(Error::BatchTooLarge { .. })));
        assert!(matches!(
            log.append(batch(Bytes::from_static(b"x"), 0, 0)).await,
            Err(Error::InvalidBatch(_))
        ));
        assert!(matches!(log.append(batch(Bytes::new(), 1, 0)).await, Err(Error::InvalidBatch(_))));
        let mut b = batch(Bytes::from_static(b"short"), 1, 0);
        b.base_offset_field = Some(0);
        assert!(matches!(log.append(b).await, Err(Error::InvalidBatch(_))));
        let mut b = batch(Bytes::from_static(b"x"), 1, 10);
        b.max_timestamp_ms = 9;
        assert!(matches!(log.append(b).await, Err(Error::InvalidBatch(_))));
        assert_eq!((log.next_offset(), log.log_end_offset(), log.stats().size_bytes), (0, 0, 0));

        let mut bad = config.clone();
        bad.segment_size_bytes_max = 0;
        let clock: Rc<dyn rill_storage::Clock> = Rc::new(clock);
        match rill_storage::Log::open(&path, bad, clock).await {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "segment_size_bytes_max"),
            other => panic!("expected InvalidConfig, got {:?}", other.map(|_| ())),
        }
    });
}

#[test]
fn base_offset_is_patched_into_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, small_config(Durability::Always), &clock).await;
        for _ in 0..3 {
            let mut b = batch(Bytes::from(vec![0xAA; 61]), 4, 0);
            b.base_offset_field = Some(0);
            log.append(b).await.unwrap();
        }
        log.close().await.unwrap();
        let log = open(&path, small_config(Durability::Always), &clock).await;
        for b in read_all(&log).await {
            assert_eq!(i64::from_be_bytes(b.payload[..8].try_into().unwrap()), b.base_offset as i64);
            assert!(b.payload[8..].iter().all(|&x| x == 0xAA));
        }
    });
}

#[test]
fn concurrent_appends_share_writes_and_keep_order() {
    let cases = [
        (Durability::Always, 0),
        (Durability::Always, 300),
        (Durability::IntervalMs(2), 0),
        (Durability::Never, 50),
    ];
    for (durability, window_us) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let clock = ManualClock::new(0);
            let config =
                rill_storage::LogConfig { group_commit_window_us: window_us, ..small_config(durability) };
            let log = open(&path, config, &clock).await;
            let mut tasks = Vec::new();
            for t in 0..16u64 {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut acked = Vec::new();
                    for i in 0..25u64 {
                        let len = 50 + ((t * 31 + i * 17) % 3000) as usize;
                        let payload = Bytes::from(
                            format!("{t}:{i}:")
                                .into_bytes()
                                .into_iter()
                                .chain(std::iter::repeat_n(t as u8, len))
                                .collect::<Vec<u8>>(),
                        );
                        let base = log.append(batch(payload.clone(), 1 + (i % 3) as u32, 0)).await.unwrap();
                        acked.push((base, payload));
                    }
                    acked
                }));
            }
            let mut acked = Vec::new();
            for t in tasks {
                acked.extend(t.await);
            }
            acked.sort_by_key(|(b, _)| *b);
            log.sync().await.unwrap();
            let all = read_all(&log).await;
            assert_eq!(all.len(), acked.len());
            for (b, (base, payload)) in all.iter().zip(&acked) {
                assert_eq!((b.base_offset, &b.payload), (*base, payload));
            }
            assert_eq!(log.durable_end_offset(), log.log_end_offset());
            log.verify().await.unwrap();
        });
    }
}

#[test]
fn read_ahead_serves_catch_up_reads_and_never_stale_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        // One large active segment read in 16 KiB chunks: entries straddle chunk ends, some
        // entries are larger than a chunk.
        let config = rill_storage::LogConfig {
            segment_size_bytes_max: 4 << 20,
            write_buffer_bytes_max: 256 << 10,
            ..small_config(Durability::Never)
        };
        let log = open(&path, config.clone(), &clock).await;
        let mut expected = Vec::new();
        for i in 0..200usize {
            let base = log.next_offset();
            let len = [700, 3000, 9000, 15000, 16384][i % 5];
            log.append(batch(payload_for(base, len), 1, 0)).await.unwrap();
            expected.push((base, payload_for(base, len)));
        }
        log.sync().await.unwrap();
        // Reopen so nothing comes from the cache: every read goes through the read-ahead.
        log.close().await.unwrap();
        let log = open(&path, config.clone(), &clock).await;
        let check = |got: &[rill_storage::StoredBatch], want: &[(u64, Bytes)]| {
            assert_eq!(got.len(), want.len());
            for (b, (base, payload)) in got.iter().zip(want) {
                assert_eq!((b.base_offset, &b.payload), (*base, payload));
            }
        };
        check(&read_all(&log).await, &expected);
        // Read half, so chunks past the reader are loaded, then cut below them and write other
        // bytes at the same positions: reads must show the new bytes.
        let mut offset = 0;
        while offset < expected[100].0 {
            offset = log.read(offset, 32 << 10).await.unwrap().last().unwrap().end_offset();
        }
        let cut = expected[60].0;
        assert_eq!(log.truncate(cut).await.unwrap(), cut);
        expected.truncate(60);
        for i in 0..100usize {
            let base = log.next_offset();
            let len = 5000 + i;
            log.append(batch(payload_for(base ^ 0xFFFF, len), 1, 0)).await.unwrap();
            expected.push((base, payload_for(base ^ 0xFFFF, len)));
        }
        log.sync().await.unwrap();
        check(&read_all(&log).await, &expected);
        log.close().await.unwrap();
        let log = open(&path, config, &clock).await;
        check(&read_all(&log).await, &expected);
        log.verify().await.unwrap();
    });
}

#[test]
fn truncate_removes_suffix_and_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, small_config(Durability::Always), &clock).await;
        let mut bases = Vec::new();
        for _ in 0..60 {
            let base = log.next_offset();
            bases.push(base);
            log.append(batch(payload_for(base, 3000), 2, 0)).await.unwrap();
        }
        let segments = log.stats().segments;
        assert!(segments > 2);
        // Cut into the middle of a batch in an early, sealed segment.
        let target = bases[10] + 1;
        let end = log.truncate(target).await.unwrap();
        assert_eq!(end, bases[10]);
        assert_eq!(log.log_end_offset(), bases[10]);
        assert!(log.stats().segments < segments);
        let all = read_all(&log).await;
        assert_eq!(all.len(), 10);
        // New appends continue at the cut, and everything survives a reopen.
        let base = log.append(batch(payload_for(end, 123), 1, 0)).await.unwrap();
        assert_eq!(base, end);
        log.close().await.unwrap();
        let log = open(&path, small_config(Durability::Always), &clock).await;
        let all = read_all(&log).await;
        assert_eq!(all.len(), 11);
        assert_eq!(all[10].payload, payload_for(end, 123));
        log.verify().await.unwrap();
        assert_eq!(log.truncate(1_000_000).await.unwrap(), log.log_end_offset());
        // Truncating to the start empties the log; it keeps accepting appends.
        assert_eq!(log.truncate(0).await.unwrap(), 0);
        assert_eq!((log.stats().segments, log.stats().size_bytes), (1, 0));
        assert_eq!(log.append(batch(payload_for(0, 10), 1, 0)).await.unwrap(), 0);
    });
}

#[test]
fn retention_by_age_and_size_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let mut config = small_config(Durability::Never);
        config.retention_age_ms_max = Some(10_000);
        config.retention_bytes_max = Some(200 << 10);
        let log = open(&path, config.clone(), &clock).await;
        for _ in 0..100 {
            let base = log.next_offset();
            log.append(batch(payload_for(base, 5000), 1, 0)).await.unwrap();
        }
        log.sync().await.unwrap();
        let before = log.stats();
        assert!(before.size_bytes > 400 << 10);
        let report = log.enforce_retention().await.unwrap();
        assert!(report.segments_deleted > 0);
        let after = log.stats();
        assert!(after.size_bytes <= 200 << 10, "{after:?}");
        assert_eq!(report.log_start_offset, log.log_start_offset());
        assert!(log.log_start_offset() > 0);
        assert!(matches!(log.read(0, 10).await, Err(Error::OffsetOutOfRange { .. })));
        let kept = read_all(&log).await;
        assert_eq!(kept.first().unwrap().base_offset, log.log_start_offset());
        assert_eq!(kept.last().unwrap().end_offset(), log.log_end_offset());
        assert_eq!(segment_files(&path, "log").len(), after.segments);
        // Everything but the active segment ages out.
        clock.advance_ms(10_000);
        log.enforce_retention().await.unwrap();
        assert_eq!(log.stats().segments, 1);
        log.close().await.unwrap();
        let log = open(&path, config, &clock).await;
        assert_eq!(read_all(&log).await.len() as u64, log.log_end_offset() - log.log_start_offset());
    });
}

#[test]
fn long_poll_wakes_on_append_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, small_config(Durability::Always), &clock).await;
        let started = std::time::Instant::now();
        assert!(!log.wait_for_data(0, std::time::Duration::from_millis(30)).await, "nothing to read");
        assert!(started.elapsed() >= std::time::Duration::from_millis(30));
        let waiter = glommio::spawn_local({
            let log = log.clone();
            async move { log.wait_for_data(0, std::time::Duration::from_secs(10)).await }
        });
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        let started = std::time::Instant::now();
        log.append(batch(payload_for(0, 100), 1, 0)).await.unwrap();
        assert!(waiter.await, "the append wakes the waiter");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(log.wait_for_data(0, std::time::Duration::ZERO).await);
        log.close().await.unwrap();
        assert!(!log.wait_for_data(1, std::time::Duration::from_secs(10)).await, "closed logs do not park");
    });
}

/// DeleteRecords: the log start moves inside a segment and stays there across a clean close
/// and across a crash (the log dropped without closing), reads below it are out of range,
/// segments wholly below it go, a lower or equal offset changes nothing, and an offset beyond
/// the end is refused.
#[test]
fn deleting_records_moves_the_log_start_durably_even_inside_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let config = small_config(Durability::Always);
        let log = open(&path, config.clone(), &clock).await;
        let mut stamps = Vec::new();
        for i in 0..60 {
            let base = log.next_offset();
            log.append(batch(payload_for(base, 5000), 2, 1_000 + i)).await.unwrap();
            stamps.push((base, 1_000 + i));
        }
        let end = log.log_end_offset();
        let segments = log.stats().segments;
        assert!(segments > 3, "{segments} segments");
        assert!(matches!(log.delete_records_before(end + 1).await, Err(Error::OffsetOutOfRange { .. })));
        // Inside a batch, in a segment after the first.
        let target = 45;
        assert_eq!(log.delete_records_before(target).await.unwrap(), target);
        assert_eq!(log.log_start_offset(), target);
        assert!(log.stats().segments < segments, "segments below the start are removed");
        assert!(matches!(log.read(target - 1, 100).await, Err(Error::OffsetOutOfRange { .. })));
        let first = log.read(target, 100).await.unwrap();
        assert!(first[0].base_offset <= target && target < first[0].end_offset());
        assert_eq!(log.delete_records_before(10).await.unwrap(), target, "lower changes nothing");
        // A timestamp below everything answers the log start, not a deleted batch.
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some(target));
        let later = stamps.iter().find(|(base, _)| *base > target).unwrap();
        assert_eq!(log.offset_for_timestamp(later.1).await.unwrap(), Some(later.0));
        log.close().await.unwrap();
        let log = open(&path, config.clone(), &clock).await;
        assert_eq!(log.log_start_offset(), target, "after a clean close");
        // Crash: the log is dropped without closing.
        assert_eq!(log.delete_records_before(77).await.unwrap(), 77);
        drop(log);
        let log = open(&path, config.clone(), &clock).await;
        assert_eq!(log.log_start_offset(), 77, "after a crash");
        assert!(matches!(log.read(76, 100).await, Err(Error::OffsetOutOfRange { .. })));
        let kept = read_all(&log).await;
        assert_eq!(kept.last().unwrap().end_offset(), end);
        // Everything: the log is empty and appends go on at the end.
        assert_eq!(log.delete_records_before(end).await.unwrap(), end);
        assert_eq!(log.stats().segments, 1);
        assert_eq!(log.append(batch(payload_for(end, 100), 1, 5_000)).await.unwrap(), end);
        log.close().await.unwrap();
        let log = open(&path, config, &clock).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end + 1));
    });
}

/// A crash after a deletion was recorded but before the segments below it were removed: the
/// next open removes them.
#[test]
fn segments_left_below_a_recorded_log_start_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let config = small_config(Durability::Always);
        let log = open(&path, config.clone(), &clock).await;
        for _ in 0..40 {
            let base = log.next_offset();
            log.append(batch(payload_for(base, 5000), 1, 0)).await.unwrap();
        }
        log.close().await.unwrap();
        let before = segment_files(&path, "log");
        for f in std::fs::read_dir(&path).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, copied.join(f.file_name().unwrap())).unwrap();
        }
        let log = open(&path, config.clone(), &clock).await;
        log.delete_records_before(30).await.unwrap();
        log.close().await.unwrap();
        // The copy gets the recorded log start but keeps every segment.
        std::fs::copy(path.join(rill_storage::LOG_START_FILE), copied.join(rill_storage::LOG_START_FILE))
            .unwrap();
        assert_eq!(segment_files(&copied, "log").len(), before.len());
        let log = open(&copied, config, &clock).await;
        assert_eq!(log.log_start_offset(), 30);
        assert_eq!(
            segment_files(&copied, "log"),
            segment_files(&path, "log")
                .iter()
                .map(|p| copied.join(p.file_name().unwrap()))
                .collect::<Vec<_>>()
        );
        assert_eq!(read_all(&log).await.last().unwrap().end_offset(), 40);
    });
}

/// A log written by a single node, then replicated: the first entries carry no Raft index
/// (version 1), the later ones theirs (version 2); both kinds read back, from the cache and
/// from the disk after a reopen, and recovery accepts the mix.
#[test]
fn raft_indexes_are_stored_beside_unreplicated_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(1_000);
        let log = open(&path, small_config(Durability::Always), &clock).await;
        for i in 0..40u64 {
            let mut b = batch(payload_for(i, 300), 2, 1_000);
            if i >= 10 {
                // Raft indexes leave gaps where control entries sit elsewhere.
                b.raft_index = 100 + 2 * i;
                b.leader_epoch = 7;
            }
            log.append(b).await.unwrap();
        }
        let check = |batches: Vec<rill_storage::StoredBatch>| {
            assert_eq!(batches.len(), 40);
            for (i, b) in batches.iter().enumerate() {
                let i = i as u64;
                let (index, epoch) = if i >= 10 { (100 + 2 * i, 7) } else { (0, 0) };
                assert_eq!((b.raft_index, b.leader_epoch, b.base_offset), (index, epoch, 2 * i), "batch {i}");
            }
        };
        check(read_all(&log).await);
        log.close().await.unwrap();
        let log = open(&path, small_config(Durability::Always), &clock).await;
        check(read_all(&log).await);
        log.verify().await.unwrap();
    });
}

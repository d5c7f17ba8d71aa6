//! Edge cases found in review: large entries on the disk read path, offset counts that overflow
//! a segment's relative offsets, and maintenance racing appends.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use rill_storage::{Durability, ENTRY_HEADER_BYTES, Error, LogConfig, ManualClock};

fn big_config() -> LogConfig {
    LogConfig {
        segment_size_bytes_max: 4 << 20,
        batch_bytes_max: 512 << 10,
        write_buffer_bytes_max: 1 << 20,
        cache_bytes_max: 0,
        index_interval_bytes: 256 << 10,
        read_chunk_bytes: 64 << 10,
        ..small_config(Durability::Never)
    }
}

#[test]
fn disk_reads_around_entries_larger_than_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, big_config(), &clock).await;
        let sizes = [100usize, 200_000, 100, 300_000, 50, 70_000, 10, 500_000, 20, 30];
        let mut expected = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let base = log.next_offset();
            let records = 1 + i as u32 % 3;
            log.append(batch(payload_for(base, len), records, 0)).await.unwrap();
            expected.push((base, records, payload_for(base, len)));
        }
        log.close().await.unwrap();
        // Reopened: the cache is empty and every read goes to disk.
        let log = open(&path, big_config(), &clock).await;
        for bytes_max in [1usize, 1000, 150_000, 400_000, 2 << 20] {
            for (i, (base, records, _)) in expected.iter().enumerate() {
                for offset in [*base, base + *records as u64 - 1] {
                    let got = log.read(offset, bytes_max).await.unwrap();
                    assert_eq!(got[0].base_offset, *base, "offset {offset} bytes_max {bytes_max}");
                    let mut total = 0;
                    for (k, b) in got.iter().enumerate() {
                        assert_eq!(b.payload, expected[i + k].2, "batch {} via offset {offset}", i + k);
                        total += b.payload.len();
                    }
                    assert!(got.len() == 1 || total <= bytes_max);
                }
            }
        }
        log.verify().await.unwrap();
    });
}

#[test]
fn huge_record_counts_roll_before_relative_offsets_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, small_config(Durability::Always), &clock).await;
        for _ in 0..5 {
            log.append(batch(payload_for(0, 10), 1 << 31, 0)).await.unwrap();
        }
        assert!(log.stats().segments >= 3, "{:?}", log.stats());
        log.close().await.unwrap();
        let log = open(&path, small_config(Durability::Always), &clock).await;
        assert_eq!(log.log_end_offset(), 5 << 31);
        assert_eq!(read_all(&log).await.len(), 5);
        assert_eq!(log.truncate(3 << 31).await.unwrap(), 3 << 31);
        log.verify().await.unwrap();
    });
}

#[test]
fn retention_truncate_and_appends_race_safely() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let config = LogConfig { retention_bytes_max: Some(100 << 10), ..small_config(Durability::Never) };
        let log = open(&path, config.clone(), &clock).await;
        for _ in 0..80 {
            let base = log.next_offset();
            log.append(batch(payload_for(base, 4000), 1, 0)).await.unwrap();
        }
        let appender = {
            let log = log.clone();
            glommio::spawn_local(async move {
                for _ in 0..40 {
                    let base = log.next_offset();
                    log.append(batch(payload_for(base, 3000), 1, 0)).await.unwrap();
                }
            })
        };
        let start = log.log_start_offset();
        let target = log.log_end_offset() - 5;
        let retention = glommio::spawn_local({
            let log = log.clone();
            async move { log.enforce_retention().await.unwrap() }
        });
        let truncation = glommio::spawn_local({
            let log = log.clone();
            async move { log.truncate(target).await.unwrap() }
        });
        retention.await;
        truncation.await;
        appender.await;
        assert!(log.log_start_offset() >= start);
        log.verify().await.unwrap();
        let all = read_all(&log).await;
        assert_eq!(all.last().unwrap().end_offset(), log.log_end_offset());
        // An argument error leaves the log usable.
        let below = log.log_start_offset() - 1;
        assert!(matches!(log.truncate(below).await, Err(Error::OffsetOutOfRange { .. })));
        log.append(batch(Bytes::from_static(b"still open"), 1, 0)).await.unwrap();
        log.close().await.unwrap();
        let log = open(&path, config, &clock).await;
        assert_eq!(read_all(&log).await.len(), all.len() + 1);
    });
}

#[test]
fn close_completes_under_steady_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let log = open(&path, small_config(Durability::Always), &clock).await;
        let acked = Rc::new(std::cell::Cell::new(0u64));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (log, acked) = (log.clone(), acked.clone());
            tasks.push(glommio::spawn_local(async move {
                loop {
                    match log.append(batch(payload_for(0, 2000), 1, 0)).await {
                        Ok(base) => acked.set(acked.get().max(base + 1)),
                        Err(Error::Closed(_)) => return,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        glommio::timer::sleep(std::time::Duration::from_millis(30)).await;
        log.close().await.unwrap();
        for t in tasks {
            t.await;
        }
        let acked = acked.get();
        assert!(acked > 0);
        let log = open(&path, small_config(Durability::Always), &clock).await;
        assert!(log.log_end_offset() >= acked, "every acknowledged append survives close");
    });
}

/// A batch whose bytes from `from` on have a known CRC, with a base-offset field at 0.
fn hinted(payload: Bytes, from: usize, crc: u32) -> rill_storage::Batch {
    rill_storage::Batch {
        base_offset_field: Some(0),
        known_suffix_crc: Some((from, crc)),
        raft_index: 0,
        ..batch(payload, 1, 0)
    }
}

#[test]
fn a_known_suffix_crc_replaces_reading_the_payload_and_a_wrong_one_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let clock = ManualClock::new(0);
        let config = big_config();
        let log = open(&path, config.clone(), &clock).await;
        let payload = payload_for(7, 100_000);
        let crc = crc32c::crc32c(&payload[21..]);
        log.append(hinted(payload.clone(), 21, crc)).await.unwrap();
        log.append(hinted(payload.clone(), payload.len(), 0)).await.unwrap();
        // Ranges that do not fit, or that cover the base offset the log patches, are refused.
        for (from, why) in [(payload.len() + 1, "outside"), (4, "covers")] {
            match log.append(hinted(payload.clone(), from, crc)).await {
                Err(Error::InvalidBatch(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("from {from}: {other:?}"),
            }
        }
        // A wrong CRC: the entry is stored, but its checksum no longer matches its bytes.
        log.append(hinted(payload.clone(), 21, crc ^ 1)).await.unwrap();
        log.close().await.unwrap();
        // The close made it durable: recovery reports the bad entry (the third) and cuts nothing.
        match rill_storage::Log::open(&path, config.clone(), Rc::new(clock.clone())).await {
            Err(Error::Corrupt { position, reason, .. }) => {
                assert_eq!(position, 2 * (ENTRY_HEADER_BYTES as u64 + payload.len() as u64));
                assert!(reason.contains("crc32c"), "{reason}");
            }
            Ok(_) => panic!("a checksum mismatch below the recovery point must not open"),
            Err(e) => panic!("reopen: {e}"),
        }
    });
}

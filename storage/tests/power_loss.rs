//! Power loss on a simulated disk with a volatile write cache ([`rill_storage::SimDisk`]).
//!
//! Each case runs concurrent appenders (and the odd explicit sync) on a log whose segments roll
//! every few batches, cuts the power at a random file operation (in the middle of a write, a
//! roll, a checkpoint, an index write), powers the disk back on with what a real device would
//! have kept (unsynced writes dropped or torn sector by sector, unsynced directory changes
//! partly lost), reopens and checks:
//! - recovery is clean: the log opens, verifies, and takes appends again;
//! - every batch present is one that was appended, at the offset it was acknowledged at;
//! - what is lost is a suffix: the log holds every acknowledged batch below its end;
//! - under `always`, nothing acknowledged is lost; under every policy, nothing acknowledged
//!   before a completed `sync` is lost.
//!
//! The seed of a failing case is in the panic message; `RILL_POWER_LOSS_CASES` sets the number
//! of cases per policy (`RILL_SLOW=1` runs ten times as many).

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::{batch, run, small_config};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill_storage::{Clock, Disk, Durability, Log, LogConfig, SimDisk, SystemClock};

#[derive(Default)]
struct Record {
    /// Payload -> acknowledged base offset, for every acknowledged append.
    acked: HashMap<Bytes, u64>,
    /// Every payload an appender tried (acknowledged or not).
    tried: HashMap<Bytes, ()>,
    /// Offsets acknowledged before the last completed explicit sync ended: none may be lost.
    synced_end: u64,
}

fn payload(writer: u64, seq: u64, len: usize) -> Bytes {
    let mut bytes = vec![0u8; len.max(16)];
    bytes[..8].copy_from_slice(&writer.to_le_bytes());
    bytes[8..16].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in bytes[16..].iter_mut().enumerate() {
        *b = (writer as u8).wrapping_mul(31).wrapping_add(seq as u8).wrapping_add(i as u8);
    }
    bytes.into()
}

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_size_bytes_max: 12 << 10,
        batch_bytes_max: 4 << 10,
        recovery_checkpoint_interval_ms: 1,
        ..small_config(durability)
    }
}

async fn case(seed: u64, durability: Durability) {
    let mut rng = StdRng::seed_from_u64(seed);
    let sim = SimDisk::new(seed);
    let dir = PathBuf::from("/sim/partition-0");
    let clock: Rc<dyn Clock> = Rc::new(SystemClock);
    let cfg = config(durability);
    let log =
        Rc::new(Log::open_on(Disk::Simulated(sim.clone()), &dir, cfg.clone(), clock.clone()).await.unwrap());
    let record = Rc::new(RefCell::new(Record::default()));
    sim.cut_after(sim.ops() + rng.random_range(1..900));
    let mut writers = Vec::new();
    for writer in 0..3u64 {
        let (log, record) = (log.clone(), record.clone());
        let mut rng = StdRng::seed_from_u64(seed ^ ((writer + 1) * 0x9E37_79B9));
        writers.push(glommio::spawn_local(async move {
            for seq in 0..80u64 {
                let body = payload(writer, seq, rng.random_range(16..3000));
                let records = rng.random_range(1..5u32);
                record.borrow_mut().tried.insert(body.clone(), ());
                let Ok(base) = log.append(batch(body.clone(), records, seq as i64)).await else { return };
                record.borrow_mut().acked.insert(body, base);
                if rng.random_ratio(1, 25) {
                    let end = log.log_end_offset();
                    if log.sync().await.is_err() {
                        return;
                    }
                    let mut r = record.borrow_mut();
                    r.synced_end = r.synced_end.max(end);
                }
                if rng.random_ratio(1, 8) {
                    glommio::timer::sleep(Duration::from_micros(rng.random_range(10..300))).await;
                }
            }
        }));
    }
    for w in writers {
        w.await;
    }
    // The workload may end before the armed operation: then the cut comes now, with whatever
    // the background tasks (interval syncs, checkpoints, index writes) left unsynced.
    sim.cut_now();
    drop(log);
    sim.restart();

    let reopened = Log::open_on(Disk::Simulated(sim.clone()), &dir, cfg.clone(), clock.clone())
        .await
        .unwrap_or_else(|e| panic!("seed {seed} {durability:?}: recovery failed: {e}"));
    reopened.verify().await.unwrap_or_else(|e| panic!("seed {seed}: verify after recovery: {e}"));
    let r = record.take();
    let mut present: BTreeMap<u64, Bytes> = BTreeMap::new();
    let mut offset = reopened.log_start_offset();
    assert_eq!(offset, 0, "seed {seed}: nothing was removed from the front");
    while offset < reopened.log_end_offset() {
        for b in reopened.read(offset, 64 << 10).await.unwrap() {
            assert_eq!(b.base_offset, offset, "seed {seed}: batches are contiguous");
            assert!(r.tried.contains_key(&b.payload), "seed {seed}: batch at {offset} was never appended");
            if let Some(&acked_at) = r.acked.get(&b.payload) {
                assert_eq!(acked_at, b.base_offset, "seed {seed}: batch moved from its acknowledged offset");
            }
            offset = b.end_offset();
            present.insert(b.base_offset, b.payload);
        }
    }
    let end = reopened.log_end_offset();
    for (body, &at) in &r.acked {
        let lost = present.get(&at) != Some(body);
        if at < end {
            assert!(
                !lost,
                "seed {seed} {durability:?}: acknowledged batch at {at} below the end {end} is gone"
            );
        }
        if durability == Durability::Always {
            assert!(!lost, "seed {seed}: acknowledged durable batch at {at} lost (end {end})");
        }
        if at < r.synced_end {
            assert!(!lost, "seed {seed}: batch at {at} acknowledged before a sync to {} lost", r.synced_end);
        }
    }
    if std::env::var("RILL_POWER_LOSS_STATS").is_ok() {
        let lost = r.acked.values().filter(|&&at| at >= end).count();
        eprintln!(
            "seed {seed} {durability:?}: ops {} acked {} lost {lost} end {end} segments {}",
            sim.ops(),
            r.acked.len(),
            reopened.stats().segments
        );
    }
    // The recovered log takes appends and keeps them across a clean close.
    let base = reopened.append(batch(payload(9, 0, 100), 1, 0)).await.unwrap();
    assert_eq!(base, end, "seed {seed}: the next append follows the recovered end");
    reopened.close().await.unwrap();
    let again = Log::open_on(Disk::Simulated(sim), &dir, cfg, clock).await.unwrap();
    assert_eq!(again.log_end_offset(), end + 1, "seed {seed}: a clean close keeps everything");
    again.close().await.unwrap();
}

fn cases() -> u64 {
    let base = std::env::var("RILL_POWER_LOSS_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(150);
    if std::env::var("RILL_SLOW").is_ok_and(|v| v == "1") { base * 10 } else { base }
}

fn run_cases(durability: Durability, salt: u64) {
    let n = cases();
    run(move || async move {
        for i in 0..n {
            case(salt * 1_000_003 + i, durability).await;
        }
    });
}

#[test]
fn always_loses_nothing_acknowledged() {
    run_cases(Durability::Always, 1);
}

#[test]
fn interval_loses_only_a_suffix() {
    run_cases(Durability::IntervalMs(1), 2);
}

#[test]
fn never_loses_only_a_suffix() {
    run_cases(Durability::Never, 3);
}

/// A cut with no operation in flight after a clean close loses nothing, whatever the policy.
#[test]
fn a_clean_close_is_durable() {
    run(|| async {
        for durability in [Durability::Always, Durability::IntervalMs(50), Durability::Never] {
            let sim = SimDisk::new(7);
            let dir = PathBuf::from("/sim/closed");
            let clock: Rc<dyn Clock> = Rc::new(SystemClock);
            let log = Log::open_on(Disk::Simulated(sim.clone()), &dir, config(durability), clock.clone())
                .await
                .unwrap();
            for seq in 0..40 {
                log.append(batch(payload(0, seq, 900), 1, 0)).await.unwrap();
            }
            log.close().await.unwrap();
            sim.restart();
            let log = Log::open_on(Disk::Simulated(sim), &dir, config(durability), clock).await.unwrap();
            assert_eq!(log.log_end_offset(), 40, "{durability:?}");
            log.close().await.unwrap();
        }
    });
}

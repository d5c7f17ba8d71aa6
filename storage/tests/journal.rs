//! The journal ([`rill_storage::Journal`]) on real files and on the power-loss disk model.
//!
//! The power-loss case appends random records (some syncs, some rewrites), cuts the power at a
//! random file operation, restarts the disk and reopens: the journal must open, hold a prefix of
//! what was appended since the last completed rewrite, lose nothing that a completed `sync` or
//! `rewrite` covered, and take appends again. `RILL_POWER_LOSS_CASES` sets the number of cases
//! (`RILL_SLOW=1` runs ten times as many); a failure names its seed.

mod common;

use bytes::Bytes;
use common::run;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill_storage::{Disk, Journal, SimDisk};

fn record(seed: u64, n: u64, len: usize) -> Vec<u8> {
    (0..len.max(1)).map(|i| (seed as u8).wrapping_mul(13) ^ (n as u8).wrapping_add(i as u8)).collect()
}

#[test]
fn records_survive_reopening_on_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft").join("journal");
    run(move || async move {
        let (mut journal, records) = Journal::open(Disk::Direct, &path).await.unwrap();
        assert!(records.is_empty());
        // Records that straddle blocks, and many small ones in one block.
        let mut all: Vec<Vec<u8>> = Vec::new();
        for n in 0..300u64 {
            let r = record(1, n, (n as usize * 37) % 9000);
            journal.append(&[&r]).await.unwrap();
            all.push(r);
            if n % 50 == 0 {
                journal.sync().await.unwrap();
            }
        }
        journal.sync().await.unwrap();
        journal.close().await.unwrap();
        let (mut journal, records) = Journal::open(Disk::Direct, &path).await.unwrap();
        assert_eq!(records.iter().map(|r| r.to_vec()).collect::<Vec<_>>(), all);
        // Rewrite to two records, append one more, reopen.
        journal.rewrite(&[b"snapshot", b"state"]).await.unwrap();
        journal.append(&[b"after"]).await.unwrap();
        journal.sync().await.unwrap();
        journal.close().await.unwrap();
        let (_journal, records) = Journal::open(Disk::Direct, &path).await.unwrap();
        assert_eq!(records, vec![Bytes::from("snapshot"), Bytes::from("state"), Bytes::from("after")]);
    });
}

#[test]
fn a_damaged_record_ends_the_journal_and_appends_go_after_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let path2 = path.clone();
    run(move || async move {
        let (mut journal, _) = Journal::open(Disk::Direct, &path).await.unwrap();
        journal.append(&[b"first", b"second", b"third"]).await.unwrap();
        journal.sync().await.unwrap();
        journal.close().await.unwrap();
    });
    // Flip a byte inside "third" (header 8 bytes each: 8+5, 8+6, 8+...).
    let mut bytes = std::fs::read(&path2).unwrap();
    bytes[13 + 14 + 9] ^= 0xff;
    std::fs::write(&path2, &bytes).unwrap();
    run(move || async move {
        let (mut journal, records) = Journal::open(Disk::Direct, &path2).await.unwrap();
        assert_eq!(records, vec![Bytes::from("first"), Bytes::from("second")]);
        journal.append(&[b"fourth"]).await.unwrap();
        journal.sync().await.unwrap();
        journal.close().await.unwrap();
        let (_j, records) = Journal::open(Disk::Direct, &path2).await.unwrap();
        assert_eq!(records, vec![Bytes::from("first"), Bytes::from("second"), Bytes::from("fourth")]);
    });
}

fn cases() -> u64 {
    let base = std::env::var("RILL_POWER_LOSS_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    if std::env::var("RILL_SLOW").is_ok_and(|v| v == "1") { base * 10 } else { base }
}

async fn power_loss_case(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let sim = SimDisk::new(seed);
    let disk = Disk::Simulated(sim.clone());
    let path = std::path::PathBuf::from("/sim/raft/journal");
    let (mut journal, _) = Journal::open(disk.clone(), &path).await.unwrap();
    sim.cut_after(sim.ops() + rng.random_range(1..120));
    // What the journal must hold after a crash: `base` (the last completed rewrite) followed by
    // a prefix of `appended` of at least `durable` records.
    let mut base: Vec<Vec<u8>> = Vec::new();
    let mut appended: Vec<Vec<u8>> = Vec::new();
    let mut durable = 0;
    // A rewrite in flight: after a crash the journal holds either the old or the new records.
    let mut rewriting: Option<Vec<Vec<u8>>> = None;
    for n in 0.. {
        let choice = rng.random_range(0..10);
        let result = if choice < 7 {
            let count = rng.random_range(1..4);
            let records: Vec<Vec<u8>> =
                (0..count).map(|i| record(seed, n * 4 + i, rng.random_range(1..6000))).collect();
            appended.extend(records.iter().cloned());
            let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
            journal.append(&refs).await
        } else if choice < 9 {
            let result = journal.sync().await;
            if result.is_ok() {
                durable = appended.len();
            }
            result
        } else {
            let records: Vec<Vec<u8>> =
                (0..rng.random_range(1..3)).map(|i| record(seed, 1_000_000 + n * 4 + i, 700)).collect();
            rewriting = Some(records.clone());
            let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
            let result = journal.rewrite(&refs).await;
            if result.is_ok() {
                base = rewriting.take().unwrap();
                appended.clear();
                durable = 0;
            }
            result
        };
        if result.is_err() {
            assert!(!sim.is_powered(), "seed {seed}: an operation failed with the power on: {result:?}");
            break;
        }
    }
    drop(journal);
    sim.restart();
    let (mut journal, records) =
        Journal::open(disk.clone(), &path).await.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let records: Vec<Vec<u8>> = records.iter().map(|r| r.to_vec()).collect();
    let holds = |base: &[Vec<u8>], appended: &[Vec<u8>], durable: usize| {
        records.len() >= base.len() + durable
            && records.len() <= base.len() + appended.len()
            && records[..base.len()] == *base
            && records[base.len()..] == appended[..records.len() - base.len()]
    };
    let ok = holds(&base, &appended, durable) || rewriting.as_ref().is_some_and(|new| records == *new);
    assert!(ok, "seed {seed}: the journal holds {} records, not the ones expected", records.len());
    journal.append(&[b"again"]).await.unwrap();
    journal.sync().await.unwrap();
    drop(journal);
    let (_journal, again) = Journal::open(disk, &path).await.unwrap();
    assert_eq!(again.len(), records.len() + 1, "seed {seed}");
    assert_eq!(again.last().unwrap(), &Bytes::from("again"), "seed {seed}");
}

#[test]
fn power_loss_keeps_every_synced_record_and_a_clean_prefix() {
    let cases = cases();
    run(move || async move {
        for seed in 0..cases {
            power_loss_case(seed).await;
        }
    });
}

//! The real crash test: `rill-perf ack-writer` appends from several tasks and prints every
//! acknowledged batch; we kill it with SIGKILL at random moments, reopen the log, and check that
//! every acknowledged batch reads back byte-identical, offsets have no gaps or duplicates, and
//! the log takes new appends. `RILL_SLOW=1` runs 200 rounds; CI runs fewer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use rill_storage::{Batch, Clock, Log, LogConfig, SystemClock};

#[derive(Clone, Copy, Debug)]
struct Ack {
    base: u64,
    records: u32,
    task: u32,
    seq: u64,
    len: usize,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut f = line.strip_prefix("ack ")?.split(' ');
    Some(Ack {
        base: f.next()?.parse().ok()?,
        records: f.next()?.parse().ok()?,
        task: f.next()?.parse().ok()?,
        seq: f.next()?.parse().ok()?,
        len: f.next()?.parse().ok()?,
    })
}

/// Runs the writer for `run_for`, SIGKILLs it, and returns the acknowledgements it printed.
fn crash_once(dir: &Path, durability: &str, run_for: Duration) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rill-perf"))
        .args(["ack-writer", "--dir", dir.to_str().unwrap(), "--durability", durability])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ack-writer starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(run_for);
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    reader.join().unwrap();
    // A line cut by the kill has no newline and fails to parse: it was never fully reported.
    rx.try_iter().filter_map(|l| parse_ack(&l)).collect()
}

/// Reopens the log and checks every acknowledged batch; returns the log end offset.
fn verify(dir: &Path, acked: &BTreeMap<u64, Ack>) -> u64 {
    let dir = dir.to_path_buf();
    let acked = acked.clone();
    let handle = glommio::LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .spawn(move || async move {
            let clock: Rc<dyn Clock> = Rc::new(SystemClock);
            let config = LogConfig {
                segment_size_bytes_max: 256 << 10,
                batch_bytes_max: 64 << 10,
                write_buffer_bytes_max: 256 << 10,
                ..LogConfig::default()
            };
            let log = Log::open(&dir, config, clock).await.expect("recovery succeeds");
            let mut found = BTreeMap::new();
            let mut offset = log.log_start_offset();
            while offset < log.log_end_offset() {
                for b in log.read(offset, 1 << 20).await.expect("read after recovery") {
                    assert_eq!(b.base_offset, offset, "no gaps or duplicates");
                    offset = b.end_offset();
                    found.insert(b.base_offset, b);
                }
            }
            for (base, ack) in &acked {
                let b = found.get(base).unwrap_or_else(|| panic!("acknowledged batch at {base} lost"));
                assert_eq!(b.record_count, ack.records, "batch at {base}");
                let expected = rill_perf::ack_payload(*base, ack.task, ack.seq, ack.len);
                assert!(b.payload == expected, "batch at {base} differs from what was acknowledged");
            }
            let end = log.log_end_offset();
            let batch = Batch {
                payload: rill_perf::ack_payload(0, 99, 0, 100),
                record_count: 1,
                first_timestamp_ms: 0,
                max_timestamp_ms: 0,
                leader_epoch: 0,
                base_offset_field: Some(0),
                known_suffix_crc: None,
                raft_index: 0,
            };
            assert_eq!(log.append(batch).await.expect("append after recovery"), end);
            log.close().await.unwrap();
            end + 1
        })
        .unwrap();
    handle.join().unwrap()
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    let rounds = if std::env::var_os("RILL_SLOW").is_some() { 200 } else { 24 };
    let seed = std::env::var("RILL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xC0FFEE);
    let mut rng = StdRng::seed_from_u64(seed);
    let policies = ["always", "interval:5", "never"];
    let mut dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, Ack> = BTreeMap::new();
    let mut total_acked = 0usize;
    for round in 0..rounds {
        if round % 12 == 0 {
            dir = tempfile::tempdir().unwrap();
            acked.clear();
        }
        let durability = policies[round % policies.len()];
        let run_for = Duration::from_millis(rng.random_range(5..250));
        let new = crash_once(dir.path(), durability, run_for);
        total_acked += new.len();
        for ack in new {
            assert!(acked.insert(ack.base, ack).is_none(), "offset {} acknowledged twice", ack.base);
        }
        let end = verify(dir.path(), &acked);
        // The batch appended by `verify` is not acknowledged to anyone; forget nothing else.
        assert!(acked.keys().next_back().is_none_or(|&b| b < end));
        // The verifier's own append took offset end - 1; record it so later rounds check it too.
        acked.insert(end - 1, Ack { base: end - 1, records: 1, task: 99, seq: 0, len: 100 });
    }
    assert!(total_acked > rounds * 5, "the writer made progress: {total_acked} acks in {rounds} rounds");
}

//! Segment files go through the shard's bounded open-file cache: many logs with several
//! segments each keep at most the bound open, and everything still reads and appends.

mod common;

use std::path::PathBuf;
use std::rc::Rc;

use common::{batch, payload_for, run, small_config};
use rill_storage::{Clock, Disk, Durability, Log, LogConfig, SimDisk, SystemClock};

const LOGS: usize = 40;
const BOUND: usize = 8;

fn config() -> LogConfig {
    LogConfig {
        segment_size_bytes_max: 8 << 10,
        batch_bytes_max: 2 << 10,
        ..small_config(Durability::Always)
    }
}

#[test]
fn many_logs_keep_at_most_the_bound_open() {
    run(|| async {
        rill_storage::set_open_files_max(BOUND);
        let sim = SimDisk::new(1);
        let clock: Rc<dyn Clock> = Rc::new(SystemClock);
        let dirs: Vec<PathBuf> = (0..LOGS).map(|i| PathBuf::from(format!("/sim/p{i}"))).collect();
        let mut logs = Vec::new();
        for dir in &dirs {
            logs.push(
                Log::open_on(Disk::Simulated(sim.clone()), dir, config(), clock.clone()).await.unwrap(),
            );
            assert!(rill_storage::open_files_now() <= BOUND);
        }
        // Interleaved appends: every log's active segment is touched again after many others.
        for round in 0..30u64 {
            for log in &logs {
                let base = log.log_end_offset();
                assert_eq!(log.append(batch(payload_for(base, 1000), 1, round as i64)).await.unwrap(), base);
                assert!(rill_storage::open_files_now() <= BOUND);
            }
        }
        // Every log's write and sync in flight at once (a produce touching every partition):
        // the appends wait for files in turn instead of opening one each.
        let logs = Rc::new(logs);
        let mut tasks = Vec::new();
        for i in 0..LOGS {
            let logs = logs.clone();
            tasks.push(glommio::spawn_local(async move {
                let log = &logs[i];
                let base = log.log_end_offset();
                assert_eq!(log.append(batch(payload_for(base, 1000), 1, 30)).await.unwrap(), base);
            }));
        }
        for task in tasks {
            task.await;
        }
        assert!(sim.open_files().1 <= BOUND + 4, "peak {} with concurrent appends", sim.open_files().1);
        let logs = Rc::try_unwrap(logs).ok().expect("tasks are done");
        for log in &logs {
            assert!(log.stats().segments >= 3, "segments rolled");
            log.sync().await.unwrap();
        }
        // Reads from the first segments (not cached, long evicted) reopen them.
        for log in &logs {
            let batches = common::read_all(log).await;
            assert_eq!(batches.len(), 31);
            for b in batches {
                assert_eq!(b.payload, payload_for(b.base_offset, 1000));
            }
        }
        let (_, peak) = sim.open_files();
        // The cached segment files plus what single operations hold briefly (a temporary index
        // or checkpoint file being written, a read in flight).
        assert!(peak <= BOUND + 4, "{peak} files were open at once with a bound of {BOUND}");
        for log in &logs {
            log.close().await.unwrap();
        }
        // Reopening every log after a clean close keeps within the bound too.
        for dir in &dirs {
            let log = Log::open_on(Disk::Simulated(sim.clone()), dir, config(), clock.clone()).await.unwrap();
            assert_eq!(log.log_end_offset(), 31);
            log.close().await.unwrap();
        }
        assert!(sim.open_files().1 <= BOUND + 4);
    });
}

//! Helpers shared by the storage integration tests.
#![allow(dead_code, missing_docs)]

use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use rill_storage::{Batch, Clock, Durability, Log, LogConfig, ManualClock};

/// Runs `f` on a fresh glommio executor with a small io_memory (the host's locked-memory limit
/// is 8 MiB).
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("executor thread")
}

/// A small configuration that rolls segments often.
pub fn small_config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_size_bytes_max: 64 << 10,
        segment_age_ms_max: 3_600_000,
        retention_age_ms_max: None,
        retention_bytes_max: None,
        durability,
        batch_bytes_max: 16 << 10,
        write_buffer_bytes_max: 64 << 10,
        cache_bytes_max: 32 << 10,
        index_interval_bytes: 1024,
        read_chunk_bytes: 16 << 10,
        read_ahead_chunks: 2,
        group_commit_window_us: 0,
        recovery_checkpoint_interval_ms: 60_000,
    }
}

/// Deterministic payload for a batch starting at `base`: its content is a function of `base`
/// and `len`, so a reader can check bytes without remembering them.
pub fn payload_for(base: u64, len: usize) -> Bytes {
    let mut x = base.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

pub fn batch(payload: Bytes, records: u32, ts: i64) -> Batch {
    Batch {
        payload,
        record_count: records,
        first_timestamp_ms: ts,
        max_timestamp_ms: ts,
        leader_epoch: 0,
        base_offset_field: None,
        known_suffix_crc: None,
        raft_index: 0,
    }
}

pub async fn open(dir: &Path, config: LogConfig, clock: &ManualClock) -> Log {
    let clock: Rc<dyn Clock> = Rc::new(clock.clone());
    Log::open(dir, config, clock).await.expect("log opens")
}

/// Reads the whole log from its start.
pub async fn read_all(log: &Log) -> Vec<rill_storage::StoredBatch> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let batches = log.read(offset, 32 << 10).await.expect("read");
        assert!(!batches.is_empty(), "read at {offset} below the end returned nothing");
        for b in batches {
            assert!(
                b.base_offset <= offset && offset < b.end_offset(),
                "batch {} at {offset}",
                b.base_offset
            );
            offset = b.end_offset();
            out.push(b);
        }
    }
    out
}

pub fn segment_files(dir: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

//! `rill-perf ack-writer`: appends batches from several tasks forever and prints a line for each
//! acknowledged one: `ack <base> <records> <task> <seq> <len>`. A crash test kills it at random
//! and checks that every printed batch reads back byte-identical.

use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use rill_storage::{Batch, Clock, Durability, Log, LogConfig, SystemClock};

/// Arguments of `rill-perf ack-writer`.
#[derive(clap::Args, Debug)]
pub struct AckWriterArgs {
    /// Log directory (created if missing, recovered if present).
    #[arg(long)]
    pub dir: PathBuf,
    /// `always`, `never` or `interval:<ms>`.
    #[arg(long, default_value = "always", value_parser = rill_tuning::parse_durability)]
    pub durability: Durability,
    /// Concurrent appending tasks.
    #[arg(long, default_value_t = 4)]
    pub tasks: u32,
    /// Segment size (small, so crashes land around rolls too).
    #[arg(long, default_value_t = 256 << 10)]
    pub segment_bytes: u64,
}

/// The payload of batch `seq` of `task`: 8 bytes for the base offset the log patches in, the
/// task, sequence and length, then bytes derived from them. Anyone can regenerate it.
pub fn ack_payload(base: u64, task: u32, seq: u64, len: usize) -> Bytes {
    assert!(len >= 24);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(base as i64).to_be_bytes());
    out.extend_from_slice(&task.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((task as u64) << 32) ^ len as u64 | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out.into()
}

/// Runs the ack writer until killed.
pub fn run_ack_writer(args: AckWriterArgs) -> anyhow::Result<()> {
    crate::on_executor(move || async move {
        let config = LogConfig {
            segment_size_bytes_max: args.segment_bytes,
            batch_bytes_max: 64 << 10,
            write_buffer_bytes_max: 256 << 10,
            cache_bytes_max: 1 << 20,
            durability: args.durability,
            ..LogConfig::default()
        };
        let clock: Rc<dyn Clock> = Rc::new(SystemClock);
        let log = Log::open(&args.dir, config, clock).await?;
        println!("ready {}", log.log_end_offset());
        let mut tasks = Vec::new();
        for task in 0..args.tasks {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move { append_forever(log, task).await }));
        }
        for t in tasks {
            t.await?;
        }
        anyhow::Ok(())
    })?
}

async fn append_forever(log: Log, task: u32) -> anyhow::Result<()> {
    for seq in 0u64.. {
        let len = 24 + ((seq * 7919 + task as u64 * 104_729) % 20_000) as usize;
        let records = 1 + (seq % 7) as u32;
        let batch = Batch {
            payload: ack_payload(0, task, seq, len),
            record_count: records,
            first_timestamp_ms: seq as i64,
            max_timestamp_ms: seq as i64,
            leader_epoch: 0,
            base_offset_field: Some(0),
            known_suffix_crc: None,
            raft_index: 0,
        };
        let base = log.append(batch).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ack {base} {records} {task} {seq} {len}")?;
        out.flush()?;
    }
    Ok(())
}

//! `rill-perf storage`: the device's raw aligned O_DIRECT sequential write bandwidth and the
//! partition log's append throughput and latency under each durability policy, in one run, so
//! the log's figures read as a fraction of what the disk gave at that moment.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::io::OpenOptions;
use hdrhistogram::Histogram;
use rill_storage::{Batch, Clock, Durability, Log, LogConfig, SystemClock};

/// Arguments of `rill-perf storage`.
#[derive(clap::Args, Debug, Clone)]
pub struct StorageBenchArgs {
    /// Scratch directory on the disk under test (emptied before and after).
    #[arg(long, default_value = "./data/bench-storage")]
    pub dir: PathBuf,
    /// Bytes written by each run, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub total_mib: u64,
    /// Batch size in KiB (also the raw write size).
    #[arg(long, default_value_t = 1024)]
    pub batch_kib: usize,
    /// Record size: a batch holds batch / record records.
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    /// Appends in flight at once (producers sharing the log). The log keeps one write in
    /// flight, as the raw baseline does.
    #[arg(long, default_value_t = 4)]
    pub appenders: usize,
    /// Interval of the `interval_ms` policy.
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
    /// Times the whole sequence runs; each figure is the median over rounds, so a burst of
    /// noise on a shared disk moves one round, not the ratio.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Take the log settings (segment size, buffers, index interval, group-commit window) from
    /// this tuning profile (shipped name or file) instead of the storage defaults.
    #[arg(long)]
    pub profile: Option<String>,
    /// Override the log's read-ahead depth (chunks loading ahead of a catch-up reader; 0: none).
    #[arg(long)]
    pub read_ahead_chunks: Option<usize>,
}

struct Row {
    name: String,
    bytes: u64,
    elapsed: Duration,
    latency_us: Option<Histogram<u64>>,
    /// The row this one is compared with (raw write for writes, raw read for reads).
    baseline: usize,
}

/// Index of the raw-write row; writes compare with it.
const RAW_WRITE: usize = 0;
/// Index of the raw-read row; reads compare with it.
const RAW_READ: usize = 2;

impl Row {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// One row of the final table: the median throughput over rounds and every round's latencies.
struct Summary {
    name: String,
    mb_per_s: f64,
    latency_us: Option<Histogram<u64>>,
    baseline: usize,
}

fn summarize(rounds: Vec<Vec<Row>>) -> Vec<Summary> {
    let mut out: Vec<Summary> = Vec::new();
    for i in 0..rounds[0].len() {
        let mut rates: Vec<f64> = rounds.iter().map(|r| r[i].mb_per_s()).collect();
        rates.sort_by(f64::total_cmp);
        let mut latency: Option<Histogram<u64>> = None;
        for round in &rounds {
            if let Some(h) = &round[i].latency_us {
                match &mut latency {
                    Some(all) => all.add(h).expect("same histogram bounds"),
                    None => latency = Some(h.clone()),
                }
            }
        }
        out.push(Summary {
            name: rounds[0][i].name.clone(),
            mb_per_s: rates[rates.len() / 2],
            latency_us: latency,
            baseline: rounds[0][i].baseline,
        });
    }
    out
}

/// Runs the benchmark and prints a Markdown table.
pub fn run_storage_bench(args: StorageBenchArgs) -> anyhow::Result<()> {
    let rounds = args.rounds.max(1);
    let all = crate::on_executor(move || async move {
        let mut all = Vec::new();
        for _ in 0..rounds {
            all.push(bench(args.clone()).await?);
        }
        anyhow::Ok(all)
    })??;
    let rows = summarize(all);
    println!("median of {rounds} rounds; latencies over all rounds; writes vs raw write, reads vs raw read");
    println!("| run | MB/s | vs raw | p50 µs | p99 µs | p99.9 µs | max µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let pct = row.mb_per_s / rows[row.baseline].mb_per_s * 100.0;
        match &row.latency_us {
            Some(h) => println!(
                "| {} | {:.0} | {:.0}% | {} | {} | {} | {} |",
                row.name,
                row.mb_per_s,
                pct,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            ),
            None => println!("| {} | {:.0} | {:.0}% | | | | |", row.name, row.mb_per_s, pct),
        }
    }
    Ok(())
}

async fn bench(args: StorageBenchArgs) -> anyhow::Result<Vec<Row>> {
    let batch_bytes = args.batch_kib << 10;
    anyhow::ensure!(batch_bytes.is_multiple_of(4096), "--batch-kib must be a multiple of 4");
    anyhow::ensure!(args.record_bytes > 0 && args.record_bytes <= batch_bytes, "bad --record-bytes");
    let total = args.total_mib << 20;
    reset_dir(&args.dir)?;
    let mut rows = vec![
        raw_write(&args.dir, total, batch_bytes, false).await?,
        raw_write(&args.dir, total, batch_bytes, true).await?,
        raw_read(&args.dir, total, batch_bytes).await?,
    ];
    for durability in [Durability::Always, Durability::IntervalMs(args.interval_ms), Durability::Never] {
        rows.extend(log_append(&args, durability, total, batch_bytes).await?);
    }
    std::fs::remove_dir_all(&args.dir)?;
    Ok(rows)
}

fn reset_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Sequential aligned O_DIRECT writes, one in flight (queue depth 1), optionally each followed
/// by fdatasync.
async fn raw_write(dir: &Path, total: u64, write_bytes: usize, sync_each: bool) -> anyhow::Result<Row> {
    let path = dir.join("raw.bin");
    // A non-empty file first, so glommio's per-device iopoll probe reads real data.
    std::fs::write(&path, [0u8; 4096])?;
    let file = OpenOptions::new().read(true).write(true).dma_open(&path).await.map_err(io)?;
    let mut latency = Histogram::<u64>::new(3)?;
    let start = Instant::now();
    let mut pos = 0u64;
    // One filled buffer written again and again, as fio does: the baseline measures the disk,
    // not the allocator or memset.
    let mut buf = file.alloc_dma_buffer(write_bytes);
    buf.as_bytes_mut().fill(0x5A);
    let buf = Rc::new(buf);
    while pos < total {
        let t = Instant::now();
        let n = file.write_rc_at(buf.clone(), pos).await.map_err(io)?;
        anyhow::ensure!(n == write_bytes, "short write");
        if sync_each {
            file.fdatasync().await.map_err(io)?;
        }
        latency.record(t.elapsed().as_micros() as u64)?;
        pos += write_bytes as u64;
    }
    if !sync_each {
        file.fdatasync().await.map_err(io)?;
    }
    let elapsed = start.elapsed();
    file.close().await.map_err(io)?;
    std::fs::remove_file(&path)?;
    let name = if sync_each { "raw O_DIRECT write + fdatasync each, QD1" } else { "raw O_DIRECT write, QD1" };
    Ok(Row {
        name: format!("{name}, {} KiB", write_bytes >> 10),
        bytes: pos,
        elapsed,
        latency_us: Some(latency),
        baseline: RAW_WRITE,
    })
}

/// Writes a file, then reads it back sequentially with aligned O_DIRECT reads, one in flight.
async fn raw_read(dir: &Path, total: u64, read_bytes: usize) -> anyhow::Result<Row> {
    let path = dir.join("raw-read.bin");
    std::fs::write(&path, [0u8; 4096])?;
    let file = OpenOptions::new().read(true).write(true).dma_open(&path).await.map_err(io)?;
    let mut buf = file.alloc_dma_buffer(read_bytes);
    buf.as_bytes_mut().fill(0x5A);
    let buf = Rc::new(buf);
    let mut pos = 0u64;
    while pos < total {
        file.write_rc_at(buf.clone(), pos).await.map_err(io)?;
        pos += read_bytes as u64;
    }
    file.fdatasync().await.map_err(io)?;
    let mut latency = Histogram::<u64>::new(3)?;
    let start = Instant::now();
    let mut pos = 0u64;
    while pos < total {
        let t = Instant::now();
        let read = file.read_at_aligned(pos, read_bytes).await.map_err(io)?;
        anyhow::ensure!(read.len() == read_bytes, "short read");
        latency.record(t.elapsed().as_micros() as u64)?;
        pos += read_bytes as u64;
    }
    let elapsed = start.elapsed();
    file.close().await.map_err(io)?;
    std::fs::remove_file(&path)?;
    Ok(Row {
        name: format!("raw O_DIRECT read, QD1, {} KiB", read_bytes >> 10),
        bytes: pos,
        elapsed,
        latency_us: Some(latency),
        baseline: RAW_READ,
    })
}

async fn log_append(
    args: &StorageBenchArgs,
    durability: Durability,
    total: u64,
    batch_bytes: usize,
) -> anyhow::Result<Vec<Row>> {
    let dir = args.dir.join("log");
    reset_dir(&dir)?;
    let config = match &args.profile {
        Some(name) => LogConfig {
            durability,
            retention_age_ms_max: None,
            ..rill_tuning::Profile::load(name)?.log_config()
        },
        None => LogConfig {
            durability,
            batch_bytes_max: batch_bytes as u32,
            write_buffer_bytes_max: (batch_bytes * args.appenders.max(2)).next_multiple_of(4096) + 4096,
            cache_bytes_max: 64 << 20,
            retention_age_ms_max: None,
            ..LogConfig::default()
        },
    };
    let config =
        LogConfig { read_ahead_chunks: args.read_ahead_chunks.unwrap_or(config.read_ahead_chunks), ..config };
    anyhow::ensure!(batch_bytes <= config.batch_bytes_max as usize, "batch larger than the profile allows");
    let clock: Rc<dyn Clock> = Rc::new(SystemClock);
    let log = Log::open(&dir, config, clock).await?;
    let payload: Bytes = (0..batch_bytes).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>().into();
    let records = (batch_bytes / args.record_bytes) as u32;
    let sent = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.appenders {
        let (log, payload, sent) = (log.clone(), payload.clone(), sent.clone());
        tasks.push(glommio::spawn_local(async move {
            let mut latency = Histogram::<u64>::new(3).expect("histogram");
            while sent.get() < total {
                sent.set(sent.get() + payload.len() as u64);
                let batch = Batch {
                    payload: payload.clone(),
                    record_count: records,
                    first_timestamp_ms: 0,
                    max_timestamp_ms: 0,
                    leader_epoch: 0,
                    base_offset_field: None,
                    known_suffix_crc: None,
                    raft_index: 0,
                };
                let t = Instant::now();
                log.append(batch).await?;
                latency.record(t.elapsed().as_micros() as u64)?;
            }
            anyhow::Ok(latency)
        }));
    }
    let mut latency = Histogram::<u64>::new(3)?;
    for t in tasks {
        latency.add(t.await?)?;
    }
    let elapsed = start.elapsed();
    let bytes = sent.get();
    let read_row = match durability {
        Durability::Never => Some(read_back(&log, batch_bytes).await?),
        _ => None,
    };
    log.close().await?;
    drop(log);
    std::fs::remove_dir_all(&dir)?;
    let policy = match durability {
        Durability::Always => "always".to_string(),
        Durability::IntervalMs(ms) => format!("interval_ms={ms}"),
        Durability::Never => "never".to_string(),
    };
    let settings = args.profile.as_deref().map_or("defaults".to_string(), |p| format!("profile {p}"));
    let name = format!(
        "log append {policy}, {} KiB batches of {} B records, {} in flight, {settings}",
        batch_bytes >> 10,
        args.record_bytes,
        args.appenders
    );
    let mut rows = vec![Row { name, bytes, elapsed, latency_us: Some(latency), baseline: RAW_WRITE }];
    rows.extend(read_row);
    Ok(rows)
}

/// Reads the whole log from its start, as a consumer catching up does (8 MiB fetches).
async fn read_back(log: &Log, batch_bytes: usize) -> anyhow::Result<Row> {
    let mut latency = Histogram::<u64>::new(3)?;
    let start = Instant::now();
    let mut offset = log.log_start_offset();
    let mut bytes = 0u64;
    while offset < log.log_end_offset() {
        let t = Instant::now();
        let batches = log.read(offset, 8 << 20).await?;
        latency.record(t.elapsed().as_micros() as u64)?;
        anyhow::ensure!(!batches.is_empty(), "read at {offset} returned nothing");
        for b in batches {
            bytes += b.payload.len() as u64;
            offset = b.end_offset();
        }
    }
    Ok(Row {
        name: format!("log read from the start (catch-up, 8 MiB reads of {} KiB batches)", batch_bytes >> 10),
        bytes,
        elapsed: start.elapsed(),
        latency_us: Some(latency),
        baseline: RAW_READ,
    })
}

fn io(e: glommio::GlommioError<()>) -> std::io::Error {
    e.into()
}

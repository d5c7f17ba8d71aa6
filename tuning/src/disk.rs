//! The disk probe: what the data disk does under io_uring O_DIRECT, as Redpanda's iotune does.
//!
//! Sequential 1 MiB writes and reads at a fixed queue depth, random 4 KiB reads and writes at
//! several queue depths, and the latency of a 4 KiB write followed by fdatasync. Each queue
//! depth is that many glommio tasks issuing one operation at a time on one DmaFile.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};

use crate::error::{Error, Result};
use crate::profile::{Measured, QueueDepthFigure};

/// How long and how hard to probe.
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    /// Directory on the disk to measure; a scratch file is made there and removed.
    pub dir: PathBuf,
    /// Size of the scratch file (sequential passes write and read it whole).
    pub file_bytes: u64,
    /// Queue depth of the sequential passes.
    pub seq_queue_depth: u32,
    /// Queue depths of the random passes.
    pub random_queue_depths: Vec<u32>,
    /// Duration of each random pass.
    pub random_duration: Duration,
    /// Samples of write + fdatasync.
    pub fdatasync_samples: u32,
}

impl ProbeSettings {
    /// The full probe: 2 GiB file, QD 1/4/16/64 for 2 s each (about half a minute in all).
    pub fn full(dir: PathBuf) -> ProbeSettings {
        ProbeSettings {
            dir,
            file_bytes: 2 << 30,
            seq_queue_depth: 4,
            random_queue_depths: vec![1, 4, 16, 64],
            random_duration: Duration::from_secs(2),
            fdatasync_samples: 200,
        }
    }

    /// A quick probe for tests: 256 MiB, QD 1/8 for 300 ms each.
    pub fn quick(dir: PathBuf) -> ProbeSettings {
        ProbeSettings {
            dir,
            file_bytes: 256 << 20,
            seq_queue_depth: 4,
            random_queue_depths: vec![1, 8],
            random_duration: Duration::from_millis(300),
            fdatasync_samples: 50,
        }
    }
}

const SEQ_BLOCK: usize = 1 << 20;
const RANDOM_BLOCK: usize = 4096;

/// Runs the probe on its own glommio executor, reporting each step to `progress`.
pub fn probe_disk(settings: ProbeSettings, progress: impl Fn(&str) + Send + 'static) -> Result<Measured> {
    anyhow_free(settings.file_bytes >= SEQ_BLOCK as u64 * 4, "file_bytes must be at least 4 MiB")?;
    anyhow_free(settings.seq_queue_depth > 0, "seq_queue_depth must be positive")?;
    let handle = glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .name("rill-tune-probe")
        .spawn(move || async move { run(settings, progress).await })
        .map_err(|e| Error::Probe(format!("starting executor: {e}")))?;
    handle.join().map_err(|e| Error::Probe(format!("probe thread: {e:?}")))?
}

fn anyhow_free(ok: bool, message: &str) -> Result<()> {
    if ok { Ok(()) } else { Err(Error::Probe(message.to_string())) }
}

async fn run(settings: ProbeSettings, progress: impl Fn(&str)) -> Result<Measured> {
    std::fs::create_dir_all(&settings.dir).map_err(|e| io_err("creating", &settings.dir, e))?;
    let path = settings.dir.join(".rill-tune-probe.bin");
    // A non-empty file before the first DMA open, so glommio's iopoll probe reads real data.
    std::fs::write(&path, [0u8; 4096]).map_err(|e| io_err("writing", &path, e))?;
    let file = Rc::new(
        OpenOptions::new().read(true).write(true).dma_open(&path).await.map_err(|e| glommio_err(&path, e))?,
    );
    let result = measure(&settings, &file, &path, &progress).await;
    let _ = file.close_rc().await;
    let _ = std::fs::remove_file(&path);
    result
}

async fn measure(
    settings: &ProbeSettings,
    file: &Rc<DmaFile>,
    path: &Path,
    progress: &impl Fn(&str),
) -> Result<Measured> {
    let blocks = settings.file_bytes / SEQ_BLOCK as u64;
    // Allocate the file's extents first, as fio does, so the writes measure the device rather
    // than the filesystem's extending-write path.
    file.pre_allocate(settings.file_bytes, false).await.map_err(|e| glommio_err(path, e))?;
    progress(&format!("sequential 1 MiB writes at QD {} over {} MiB", settings.seq_queue_depth, blocks));
    let elapsed =
        sequential(file, blocks, settings.seq_queue_depth, true).await.map_err(|e| glommio_err(path, e))?;
    file.fdatasync().await.map_err(|e| glommio_err(path, e))?;
    let seq_write_mb_s = (blocks * SEQ_BLOCK as u64) as f64 / elapsed.as_secs_f64() / 1e6;
    progress(&format!("sequential 1 MiB reads at QD {}", settings.seq_queue_depth));
    let elapsed =
        sequential(file, blocks, settings.seq_queue_depth, false).await.map_err(|e| glommio_err(path, e))?;
    let seq_read_mb_s = (blocks * SEQ_BLOCK as u64) as f64 / elapsed.as_secs_f64() / 1e6;
    let mut measured = Measured { seq_write_mb_s, seq_read_mb_s, ..Measured::default() };
    let slots = settings.file_bytes / RANDOM_BLOCK as u64;
    for write in [false, true] {
        for &qd in &settings.random_queue_depths {
            let kind = if write { "writes" } else { "reads" };
            progress(&format!("random 4 KiB {kind} at QD {qd}"));
            let ops = random(file, slots, qd, settings.random_duration, write)
                .await
                .map_err(|e| glommio_err(path, e))?;
            let figure = QueueDepthFigure {
                queue_depth: qd,
                iops: ops as f64 / settings.random_duration.as_secs_f64(),
            };
            if write { measured.rand_write_iops.push(figure) } else { measured.rand_read_iops.push(figure) }
        }
    }
    progress("4 KiB write + fdatasync latency");
    let mut samples = Vec::with_capacity(settings.fdatasync_samples as usize);
    for i in 0..settings.fdatasync_samples as u64 {
        let mut buf = file.alloc_dma_buffer(RANDOM_BLOCK);
        buf.as_bytes_mut().fill(i as u8);
        let t = Instant::now();
        file.write_at(buf, (i % slots) * RANDOM_BLOCK as u64).await.map_err(|e| glommio_err(path, e))?;
        file.fdatasync().await.map_err(|e| glommio_err(path, e))?;
        samples.push(t.elapsed().as_micros() as u64);
    }
    samples.sort_unstable();
    measured.fdatasync_p50_us = samples[samples.len() / 2];
    measured.fdatasync_p99_us = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    Ok(measured)
}

/// Writes or reads `blocks` 1 MiB blocks in order with `qd` operations in flight.
async fn sequential(file: &Rc<DmaFile>, blocks: u64, qd: u32, write: bool) -> glommio::Result<Duration, ()> {
    let next = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..qd {
        let (file, next) = (file.clone(), next.clone());
        // One filled buffer per task, written again and again: the probe measures the disk,
        // not the allocator or memset.
        let mut buf = file.alloc_dma_buffer(SEQ_BLOCK);
        buf.as_bytes_mut().fill(task as u8 | 1);
        let buf = Rc::new(buf);
        tasks.push(glommio::spawn_local(async move {
            loop {
                let block = next.get();
                if block >= blocks {
                    return glommio::Result::<(), ()>::Ok(());
                }
                next.set(block + 1);
                let pos = block * SEQ_BLOCK as u64;
                if write {
                    file.write_rc_at(buf.clone(), pos).await?;
                } else {
                    file.read_at_aligned(pos, SEQ_BLOCK).await?;
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(start.elapsed())
}

/// Random 4 KiB operations over the file for `duration` with `qd` in flight; returns the count.
async fn random(
    file: &Rc<DmaFile>,
    slots: u64,
    qd: u32,
    duration: Duration,
    write: bool,
) -> glommio::Result<u64, ()> {
    let done = Rc::new(Cell::new(0u64));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for task in 0..qd as u64 {
        let (file, done) = (file.clone(), done.clone());
        let buf = Rc::new(file.alloc_dma_buffer(RANDOM_BLOCK));
        tasks.push(glommio::spawn_local(async move {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (task + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pos = (x % slots) * RANDOM_BLOCK as u64;
                if write {
                    file.write_rc_at(buf.clone(), pos).await?;
                } else {
                    file.read_at_aligned(pos, RANDOM_BLOCK).await?;
                }
                done.set(done.get() + 1);
            }
            glommio::Result::<(), ()>::Ok(())
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(done.get())
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::Io { op, path: path.to_path_buf(), source: e }
}

fn glommio_err(path: &Path, e: glommio::GlommioError<()>) -> Error {
    io_err("probing", path, e.into())
}

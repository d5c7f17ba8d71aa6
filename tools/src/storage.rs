//! `rill storage verify|truncate`: offline inspection and repair of partition logs.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use rill_storage::{DataDirLock, VerifyReport};

/// The `rill storage` subcommands.
#[derive(Subcommand)]
pub enum StorageCommand {
    /// Read every entry of every log under DIR (a data directory or one partition's directory)
    /// and report damage with its file, byte offset and the offset a repair truncates at.
    /// Changes nothing; exits 1 if a log needs repair.
    Verify {
        /// A data directory or a log directory.
        dir: PathBuf,
    },
    /// Remove every record at or after OFFSET from the log in DIR (one partition's
    /// directory), damaged or not: the explicit repair after `verify`. Records removed are
    /// lost even if they were acknowledged. The broker must be stopped.
    Truncate {
        /// A partition's log directory (data/topics/TOPIC/PARTITION).
        dir: PathBuf,
        /// The first offset to remove.
        #[arg(long)]
        at: u64,
    },
}

pub fn run(cmd: StorageCommand) -> anyhow::Result<()> {
    match cmd {
        StorageCommand::Verify { dir } => verify(&dir),
        StorageCommand::Truncate { dir, at } => truncate(&dir, at),
    }
}

/// Log directories at or under `dir`: directories holding segment files.
fn log_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut has_segments = false;
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                has_segments = true;
            }
        }
        if has_segments {
            out.push(d);
        }
    }
    out.sort();
    Ok(out)
}

fn verify(dir: &Path) -> anyhow::Result<()> {
    let data_dir = DataDirLock::data_dir_of(dir);
    let _lock = match &data_dir {
        Some(d) => Some(DataDirLock::acquire(d).context("verify reads a stopped broker's files")?),
        None => None,
    };
    let dirs = log_dirs(dir)?;
    if dirs.is_empty() {
        bail!("no log segments under {}", dir.display());
    }
    let reports: Vec<VerifyReport> = rill_perf::on_executor_unpinned(move || async move {
        rill_storage::verify_dirs(&dirs).await.map_err(|e| e.to_string())
    })?
    .map_err(|e| anyhow::anyhow!(e))?;
    let mut damaged = 0;
    for r in &reports {
        match &r.damage {
            None => println!(
                "ok       {}: {} segments, offsets {}..{}",
                r.dir.display(),
                r.segments,
                r.start_offset,
                r.end_offset
            ),
            Some(d) if d.torn_tail => println!(
                "torn     {}: {} at byte {}: {} (beyond the recovery point: the next start truncates it, \
                 the log ends at offset {})",
                r.dir.display(),
                d.path.display(),
                d.position,
                d.reason,
                d.good_end_offset
            ),
            Some(d) => {
                damaged += 1;
                println!(
                    "DAMAGED  {}: {} at byte {}: {}; offsets below {} are whole. The broker keeps this \
                     partition offline; repair: rill storage truncate {} --at {}",
                    r.dir.display(),
                    d.path.display(),
                    d.position,
                    d.reason,
                    d.good_end_offset,
                    r.dir.display(),
                    d.good_end_offset
                );
            }
        }
    }
    if damaged > 0 {
        bail!("{damaged} of {} logs need repair", reports.len());
    }
    Ok(())
}

fn truncate(dir: &Path, at: u64) -> anyhow::Result<()> {
    let data_dir = DataDirLock::data_dir_of(dir);
    let _lock = match &data_dir {
        Some(d) => Some(DataDirLock::acquire(d).context("stop the broker before repairing its files")?),
        None => None,
    };
    let owned = dir.to_path_buf();
    let report = rill_perf::on_executor_unpinned(move || async move {
        rill_storage::truncate_dir(&owned, at).await.map_err(|e| e.to_string())
    })?
    .map_err(|e| anyhow::anyhow!(e))
    .with_context(|| format!("truncating {}", dir.display()))?;
    println!(
        "truncated {}: the log now ends at offset {} ({} segment files removed, {} bytes cut)",
        dir.display(),
        report.end_offset,
        report.segments_removed,
        report.bytes_cut
    );
    Ok(())
}

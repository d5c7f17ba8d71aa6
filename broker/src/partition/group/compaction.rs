//! The offsets log's directory life: opening it, and compacting it by rewriting only the latest
//! commit per key into a sibling directory swapped in by two renames.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use rill_storage::Log;

use super::{Committed, Coordinator, GATE_PERMITS, commit_batch};

impl Coordinator {
    /// Opens the offsets log in `dir` (finishing or undoing a compaction a crash interrupted)
    /// and replays it; see [`Coordinator::open`].
    pub async fn open_dir(
        self: &Rc<Self>,
        dir: &Path,
        config: rill_storage::LogConfig,
        shard: usize,
        shards: usize,
    ) -> Result<Vec<(String, String, i32, Committed)>, String> {
        let log = open_tidied(dir, config.clone()).await?;
        let foreign = self.open(log, shard, shards).await.map_err(|e| e.to_string())?;
        // Only now: `is_open` tells writers (restores from other shards) to go ahead.
        *self.place.borrow_mut() = Some((dir.to_path_buf(), config));
        Ok(foreign)
    }

    /// Rewrites the offsets log with only the latest commit per key: a new log beside it, then
    /// two renames (a crash between them is finished at the next open). It holds the whole
    /// gate, so commits, deletions and expiry wait for it. If it fails after the current log
    /// was closed for the swap, the log is reopened from whichever copy is whole, so commits go
    /// on.
    pub async fn compact(&self) -> Result<(), String> {
        let Some((dir, config)) = self.place.borrow().clone() else { return Ok(()) };
        let _all = self.gate.acquire_permit(GATE_PERMITS).await.map_err(|_| "closed".to_string())?;
        let result = self.compact_locked(&dir, &config).await;
        if result.is_err() && self.log.borrow().is_none() && self.place.borrow().is_some() {
            match open_tidied(&dir, config).await {
                Ok(log) => *self.log.borrow_mut() = Some(log),
                Err(error) => {
                    tracing::error!(%error, "reopening the group offsets log after a failed compaction")
                }
            }
        }
        result
    }

    async fn compact_locked(&self, dir: &Path, config: &rill_storage::LogConfig) -> Result<(), String> {
        let entries: Vec<(String, String, i32, Committed)> = self
            .offsets
            .borrow()
            .iter()
            .flat_map(|(g, m)| m.iter().map(move |((t, p), c)| (g.clone(), t.clone(), *p, c.clone())))
            .collect();
        let (compact, old) = (sibling(dir, "compact"), sibling(dir, "old"));
        let clock: Rc<dyn rill_storage::Clock> = Rc::new(rill_storage::SystemClock);
        let fresh = Log::open(&compact, config.clone(), clock.clone()).await.map_err(|e| e.to_string())?;
        for chunk in entries.chunks(1000) {
            fresh.append(commit_batch(chunk)?).await.map_err(|e| e.to_string())?;
        }
        fresh.sync().await.map_err(|e| e.to_string())?;
        fresh.close().await.map_err(|e| e.to_string())?;
        let current = self.log.borrow_mut().take();
        if let Some(current) = current {
            current.close().await.map_err(|e| e.to_string())?;
        }
        let (d, c, o) = (dir.to_path_buf(), compact, old);
        glommio::executor()
            .spawn_blocking(move || -> std::io::Result<()> {
                std::fs::rename(&d, &o)?;
                std::fs::rename(&c, &d)?;
                if let Some(parent) = d.parent() {
                    std::fs::File::open(parent)?.sync_all()?;
                }
                std::fs::remove_dir_all(&o)
            })
            .await
            .map_err(|e| format!("swapping in the compacted {}: {e}", dir.display()))?;
        let log = Log::open(dir, config.clone(), clock).await.map_err(|e| e.to_string())?;
        *self.log.borrow_mut() = Some(log);
        Ok(())
    }

    /// Starts a compaction in the background when the log has grown well past its live data.
    pub(super) fn maybe_compact(self: &Rc<Self>) {
        let Some(size) = self.log.borrow().as_ref().map(|l| l.stats().size_bytes) else { return };
        let live: u64 = self.offsets.borrow().values().map(|m| m.len() as u64 * 128).sum();
        if self.compacting.get() || size < self.compact_bytes_min.get().max(4 * live) {
            return;
        }
        self.compacting.set(true);
        let me = self.clone();
        glommio::spawn_local(async move {
            if let Err(error) = me.compact().await {
                tracing::error!(%error, "compacting the group offsets log failed");
            }
            me.compacting.set(false);
        })
        .detach();
    }
}

/// Finishes or undoes a compaction that was interrupted (a crash, an error), then opens the log.
async fn open_tidied(dir: &Path, config: rill_storage::LogConfig) -> Result<Log, String> {
    let (compact, old) = (sibling(dir, "compact"), sibling(dir, "old"));
    let (d, c, o) = (dir.to_path_buf(), compact, old);
    glommio::executor()
        .spawn_blocking(move || -> std::io::Result<()> {
            if !d.exists() && c.exists() {
                // Stopped between the two renames: the compacted copy is complete.
                std::fs::rename(&c, &d)?;
            }
            for leftover in [&c, &o] {
                if leftover.exists() {
                    std::fs::remove_dir_all(leftover)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("tidying {}: {e}", dir.display()))?;
    let clock: Rc<dyn rill_storage::Clock> = Rc::new(rill_storage::SystemClock);
    Log::open(dir, config, clock).await.map_err(|e| format!("opening {}: {e}", dir.display()))
}

pub(super) fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

//! The per-shard bounded cache of open segment files.
//!
//! A node with 10,000 partitions and several segments each would need tens of thousands of
//! file descriptors if every segment kept its file open. Instead a segment holds a
//! [`FileHandle`]: its path and, while cached, its open file. Each shard (thread) keeps at most
//! [`open_files_max`] segment files open; opening one more closes the least recently used.
//! An operation in flight holds its own reference, so eviction never closes a file under a read
//! or write: the descriptor closes when that operation ends. A file reopened after eviction
//! sees the same inode, and `fdatasync` is per inode on Linux, so a sync through a new
//! descriptor covers writes made through an earlier one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use crate::disk::{Disk, File, Mode};
use crate::error::{Error, Result};

/// Segment files a shard keeps open when nothing else is set.
pub const OPEN_FILES_MAX_DEFAULT: usize = 1024;

thread_local! {
    static OPEN: RefCell<OpenFiles> = const {
        RefCell::new(OpenFiles { max: OPEN_FILES_MAX_DEFAULT, lru: BTreeMap::new(), next_stamp: 0 })
    };
}

struct OpenFiles {
    max: usize,
    /// Cached files by last use, oldest first.
    lru: BTreeMap<u64, Weak<Slot>>,
    next_stamp: u64,
}

/// Sets how many segment files this thread (shard) keeps open; closes the excess now.
pub fn set_open_files_max(max: usize) {
    assert!(max > 0, "at least one segment file must be open at a time");
    OPEN.with(|open| open.borrow_mut().max = max);
    evict_excess();
}

/// How many segment files this thread keeps open at most.
pub fn open_files_max() -> usize {
    OPEN.with(|open| open.borrow().max)
}

/// Segment files this thread holds open in its cache now.
pub fn open_files_cached() -> usize {
    OPEN.with(|open| open.borrow().lru.len())
}

struct Slot {
    disk: Disk,
    path: PathBuf,
    mode: Mode,
    file: RefCell<Option<Rc<File>>>,
    /// Key in the LRU while the file is cached.
    stamp: Cell<Option<u64>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(stamp) = self.stamp.take() {
            // During thread teardown the cache may already be gone; nothing to update then.
            let _ = OPEN.try_with(|open| open.borrow_mut().lru.remove(&stamp));
        }
        // Dropping a glommio file closes it asynchronously; a drop may happen outside the
        // executor (thread teardown), where no task can be spawned.
        drop(self.file.take());
    }
}

/// A segment's file, open while cached.
#[derive(Clone)]
pub(crate) struct FileHandle(Rc<Slot>);

impl std::fmt::Debug for FileHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHandle")
            .field("path", &self.0.path)
            .field("open", &self.0.file.borrow().is_some())
            .finish()
    }
}

impl FileHandle {
    /// A handle for a file just opened (or created) with `mode`; later opens use `Read` or
    /// `ReadWrite` accordingly.
    pub fn new(disk: Disk, path: PathBuf, mode: Mode, file: File) -> FileHandle {
        let mode = if mode == Mode::Read { Mode::Read } else { Mode::ReadWrite };
        let slot = Rc::new(Slot { disk, path, mode, file: RefCell::new(None), stamp: Cell::new(None) });
        cache(&slot, Rc::new(file));
        FileHandle(slot)
    }

    /// Opens `path` with `mode` through the cache.
    pub async fn open(disk: &Disk, path: PathBuf, mode: Mode) -> Result<FileHandle> {
        let file = disk.open(&path, mode).await.map_err(|e| Error::io("opening segment", &path, e))?;
        Ok(FileHandle::new(disk.clone(), path, mode, file))
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    pub fn disk(&self) -> &Disk {
        &self.0.disk
    }

    /// The open file, reopened if the cache closed it.
    pub async fn get(&self) -> Result<Rc<File>> {
        if let Some(file) = self.cached() {
            return Ok(file);
        }
        let slot = &self.0;
        let file = slot
            .disk
            .open(&slot.path, slot.mode)
            .await
            .map_err(|e| Error::io("reopening segment", &slot.path, e))?;
        if let Some(raced) = self.cached() {
            // Another task reopened it meanwhile: keep one descriptor.
            close_in_background(Rc::new(file));
            return Ok(raced);
        }
        let file = Rc::new(file);
        cache(slot, file.clone());
        Ok(file)
    }

    /// The file if it is open, marked as just used.
    fn cached(&self) -> Option<Rc<File>> {
        let file = self.0.file.borrow().clone()?;
        let stamp = self.0.stamp.get().expect("a cached file has a stamp");
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            let weak = open.lru.remove(&stamp).expect("stamped files are in the lru");
            let now = open.next_stamp;
            open.next_stamp += 1;
            open.lru.insert(now, weak);
            self.0.stamp.set(Some(now));
        });
        Some(file)
    }
}

fn cache(slot: &Rc<Slot>, file: Rc<File>) {
    assert!(slot.file.borrow().is_none(), "a slot caches one file");
    *slot.file.borrow_mut() = Some(file);
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let stamp = open.next_stamp;
        open.next_stamp += 1;
        open.lru.insert(stamp, Rc::downgrade(slot));
        slot.stamp.set(Some(stamp));
    });
    evict_excess();
}

/// Closes the least recently used files beyond the bound.
fn evict_excess() {
    loop {
        let victim = OPEN.with(|open| {
            let mut open = open.borrow_mut();
            if open.lru.len() <= open.max {
                return None;
            }
            open.lru.pop_first().map(|(_, weak)| weak)
        });
        let Some(weak) = victim else { return };
        if let Some(slot) = weak.upgrade() {
            slot.stamp.set(None);
            if let Some(file) = slot.file.take() {
                close_in_background(file);
            }
        }
    }
}

/// Closes a file once no operation holds it (the last holder's drop closes it otherwise).
fn close_in_background(file: Rc<File>) {
    if let Ok(file) = Rc::try_unwrap(file) {
        match file {
            File::Direct(_) => {
                glommio::spawn_local(async move {
                    if let Err(error) = file.close().await {
                        tracing::warn!(%error, "closing a segment file failed");
                    }
                })
                .detach();
            }
            File::Simulated(_) => drop(file),
        }
    }
}

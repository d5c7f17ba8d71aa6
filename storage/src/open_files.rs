//! The per-shard bound on open segment files.
//!
//! A node with 10,000 partitions and several segments each would need tens of thousands of
//! file descriptors if every segment kept its file open. Instead a segment holds a
//! [`FileHandle`]: its path and, while cached, its open file. Each shard (thread) has at most
//! [`open_files_max`] segment files open at once, in use or idle: every open file holds one
//! permit of the shard's semaphore. Opening one more closes the least recently used idle file;
//! if every open file is in use (a produce touching thousands of partitions), the opener waits
//! in FIFO order for one to be released. An operation holds one file at a time, so waiting
//! cannot deadlock. A file reopened after eviction is the same inode, and `fdatasync` is per
//! inode on Linux, so a sync through a new descriptor covers writes made through an earlier one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use glommio::sync::{Semaphore, StaticPermit};

use crate::disk::{Disk, File, Mode};
use crate::error::{Error, Result};

/// Segment files a shard keeps open when nothing else is set.
pub const OPEN_FILES_MAX_DEFAULT: usize = 1024;

thread_local! {
    static OPEN: RefCell<OpenFiles> = RefCell::new(OpenFiles::new(OPEN_FILES_MAX_DEFAULT));
}

struct OpenFiles {
    max: usize,
    /// One permit per open segment file.
    permits: Rc<Semaphore>,
    /// Cached files by last use, oldest first.
    lru: BTreeMap<u64, Weak<Slot>>,
    next_stamp: u64,
    /// Openers waiting for a permit: an operation that lets go of a file then closes an idle
    /// one for them (cached idle files keep their permits otherwise).
    waiting: usize,
}

impl OpenFiles {
    fn new(max: usize) -> OpenFiles {
        OpenFiles {
            max,
            permits: Rc::new(Semaphore::new(max as u64)),
            lru: BTreeMap::new(),
            next_stamp: 0,
            waiting: 0,
        }
    }
}

/// Sets how many segment files this thread (shard) may have open at once. Call it before the
/// thread opens any log.
pub fn set_open_files_max(max: usize) {
    assert!(max > 0, "at least one segment file must be open at a time");
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        assert!(open.lru.is_empty(), "set the open-file bound before opening logs");
        *open = OpenFiles::new(max);
    });
}

/// How many segment files this thread may have open at once.
pub fn open_files_max() -> usize {
    OPEN.with(|open| open.borrow().max)
}

/// Segment files this thread has open now (cached or in use).
pub fn open_files_now() -> usize {
    OPEN.with(|open| {
        let open = open.borrow();
        open.max - open.permits.available() as usize
    })
}

/// An open segment file and the permit it holds.
pub(crate) struct OpenFile {
    file: File,
    _permit: StaticPermit,
}

/// An operation's hold on an open segment file (eviction never closes it meanwhile).
pub(crate) struct FileRef(Option<Rc<OpenFile>>);

impl std::fmt::Debug for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileRef")
    }
}

impl Deref for FileRef {
    type Target = File;

    fn deref(&self) -> &File {
        &self.0.as_ref().expect("held until dropped").file
    }
}

impl Drop for FileRef {
    fn drop(&mut self) {
        drop(self.0.take());
        let waiting = OPEN.try_with(|open| open.borrow().waiting).unwrap_or(0);
        if waiting > 0 {
            evict_one_idle();
        }
    }
}

struct Slot {
    disk: Disk,
    path: PathBuf,
    mode: Mode,
    file: RefCell<Option<Rc<OpenFile>>>,
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
    /// Opens (or creates, with `Mode::CreateNew`) `path` within the shard's bound; later
    /// reopens use `Read` or `ReadWrite` as `mode` allows.
    pub async fn open(disk: &Disk, path: PathBuf, mode: Mode) -> Result<FileHandle> {
        let reopen = if mode == Mode::Read { Mode::Read } else { Mode::ReadWrite };
        let slot = Rc::new(Slot {
            disk: disk.clone(),
            path,
            mode: reopen,
            file: RefCell::new(None),
            stamp: Cell::new(None),
        });
        let handle = FileHandle(slot);
        handle.open_as(mode).await?;
        Ok(handle)
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    pub fn disk(&self) -> &Disk {
        &self.0.disk
    }

    /// The open file, reopened if the bound closed it.
    pub async fn get(&self) -> Result<FileRef> {
        let file = match self.cached() {
            Some(file) => file,
            None => self.open_as(self.0.mode).await?,
        };
        Ok(FileRef(Some(file)))
    }

    async fn open_as(&self, mode: Mode) -> Result<Rc<OpenFile>> {
        let slot = &self.0;
        let permit = acquire().await;
        if let Some(raced) = self.cached() {
            // Another task opened it while this one waited for a permit.
            return Ok(raced);
        }
        let op = if mode == Mode::CreateNew { "creating segment" } else { "opening segment" };
        let file = slot.disk.open(&slot.path, mode).await.map_err(|e| Error::io(op, &slot.path, e))?;
        let file = Rc::new(OpenFile { file, _permit: permit });
        if let Some(raced) = self.cached() {
            close_in_background(file);
            return Ok(raced);
        }
        *slot.file.borrow_mut() = Some(file.clone());
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            let stamp = open.next_stamp;
            open.next_stamp += 1;
            open.lru.insert(stamp, Rc::downgrade(slot));
            slot.stamp.set(Some(stamp));
        });
        Ok(file)
    }

    /// The file if it is open, marked as just used.
    fn cached(&self) -> Option<Rc<OpenFile>> {
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

/// A permit for one more open file: free, or freed by closing the least recently used idle
/// file, or (every open file in use) the next one released.
async fn acquire() -> StaticPermit {
    loop {
        let permits = OPEN.with(|open| open.borrow().permits.clone());
        if let Ok(permit) = permits.try_acquire_static_permit(1) {
            return permit;
        }
        if !evict_one_idle() {
            let _waiting = Waiting::new();
            return permits.acquire_static_permit(1).await.expect("the semaphore is never closed");
        }
    }
}

/// Counts an opener waiting for a permit while it lives.
struct Waiting;

impl Waiting {
    fn new() -> Waiting {
        OPEN.with(|open| open.borrow_mut().waiting += 1);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let _ = OPEN.try_with(|open| open.borrow_mut().waiting -= 1);
    }
}

/// Closes the least recently used file that no operation holds; false if there is none.
fn evict_one_idle() -> bool {
    let victim = OPEN.with(|open| {
        let open = open.borrow();
        open.lru.iter().find_map(|(stamp, weak)| {
            let slot = weak.upgrade()?;
            let idle = slot.file.borrow().as_ref().is_some_and(|f| Rc::strong_count(f) == 1);
            idle.then_some((*stamp, slot))
        })
    });
    let Some((stamp, slot)) = victim else { return false };
    OPEN.with(|open| open.borrow_mut().lru.remove(&stamp));
    slot.stamp.set(None);
    if let Some(file) = slot.file.take() {
        close_in_background(file);
    }
    true
}

/// Closes a file once no operation holds it (the last holder's drop closes it otherwise); its
/// permit returns when the close is done.
fn close_in_background(file: Rc<OpenFile>) {
    let Ok(OpenFile { file, _permit: permit }) = Rc::try_unwrap(file) else { return };
    match file {
        File::Direct(_) => {
            glommio::spawn_local(async move {
                if let Err(error) = file.close().await {
                    tracing::warn!(%error, "closing a segment file failed");
                }
                drop(permit);
            })
            .detach();
        }
        File::Simulated(_) => drop((file, permit)),
    }
}

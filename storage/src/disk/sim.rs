//! A simulated disk with a volatile write cache, for power-loss tests.
//!
//! The model is POSIX's contract, not any one file system's kindness:
//! - A file's writes and truncations are durable once an `fdatasync` of that file completes
//!   (after it, or when a cut lands before it, each is kept, dropped, or torn at random: a write
//!   may keep any subset of its 512-byte sectors, as a device cache reorders and loses them).
//! - Creations, renames and removals in a directory are durable once that directory is synced.
//!   Before that, a cut keeps a prefix of them in the order they happened (a journaling file
//!   system commits namespace changes in order). A file whose creation was lost is gone, data
//!   and all.
//!
//! [`SimDisk::cut_after`] arms a power cut at the n-th mutating operation; [`SimDisk::cut_now`]
//! cuts at once. After a cut every operation fails with an I/O error until [`SimDisk::restart`]
//! powers the disk back on with what survived. Every operation yields to the executor first, so
//! tasks interleave around "I/O" as they do on a real device.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::Mode;

/// Sector size of the simulated device: a torn write keeps or loses whole sectors.
const SECTOR_BYTES: usize = 512;

/// A simulated disk; clones share it.
#[derive(Clone)]
pub struct SimDisk(Rc<RefCell<State>>);

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.borrow();
        f.debug_struct("SimDisk").field("ops", &s.ops).field("powered", &s.powered).finish()
    }
}

struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    dirs: BTreeMap<PathBuf, Dir>,
    /// Mutating operations performed since creation.
    ops: u64,
    cut_at: Option<u64>,
    powered: bool,
    /// Bumped by every restart: handles opened before it are dead.
    boot: u64,
    open_now: usize,
    open_peak: usize,
    rng: fastrand::Rng,
}

#[derive(Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Data operations since the last completed fdatasync, oldest first.
    pending: Vec<DataOp>,
}

enum DataOp {
    Write { position: usize, bytes: Vec<u8> },
    Truncate(usize),
}

#[derive(Default)]
struct Dir {
    current: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    /// Namespace operations since the last directory sync, oldest first.
    pending: Vec<NameOp>,
}

#[derive(Clone)]
enum NameOp {
    Link(String, u64),
    Unlink(String),
    Rename(String, String),
}

fn apply_name_op(entries: &mut BTreeMap<String, u64>, op: &NameOp) {
    match op {
        NameOp::Link(name, inode) => {
            entries.insert(name.clone(), *inode);
        }
        NameOp::Unlink(name) => {
            entries.remove(name);
        }
        NameOp::Rename(from, to) => {
            if let Some(inode) = entries.remove(from) {
                entries.insert(to.clone(), inode);
            }
        }
    }
}

fn apply_data_op(image: &mut Vec<u8>, op: &DataOp) {
    match op {
        DataOp::Write { position, bytes } => write_into(image, *position, bytes),
        DataOp::Truncate(len) => image.resize(*len, 0),
    }
}

fn write_into(image: &mut Vec<u8>, position: usize, bytes: &[u8]) {
    if image.len() < position + bytes.len() {
        image.resize(position + bytes.len(), 0);
    }
    image[position..position + bytes.len()].copy_from_slice(bytes);
}

fn power_off() -> io::Error {
    io::Error::other("simulated power cut: the disk is off")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

fn split(path: &Path) -> (PathBuf, String) {
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (dir, name)
}

impl State {
    /// Counts a mutating operation; cuts the power if this is the armed one.
    fn mutate(&mut self) -> io::Result<()> {
        if !self.powered {
            return Err(power_off());
        }
        self.ops += 1;
        if self.cut_at.is_some_and(|at| self.ops >= at) {
            self.cut();
            return Err(power_off());
        }
        Ok(())
    }

    fn check_powered(&self) -> io::Result<()> {
        if self.powered { Ok(()) } else { Err(power_off()) }
    }

    fn lookup(&self, path: &Path) -> Option<u64> {
        let (dir, name) = split(path);
        self.dirs.get(&dir)?.current.get(&name).copied()
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(dir))
    }

    /// What survives a power loss now.
    fn cut(&mut self) {
        self.powered = false;
        self.cut_at = None;
        for inode in self.inodes.values_mut() {
            let mut image = std::mem::take(&mut inode.durable);
            for op in &inode.pending {
                match self.rng.u8(0..4) {
                    0 | 1 => apply_data_op(&mut image, op),
                    2 => {}
                    _ => match op {
                        DataOp::Write { position, bytes } => {
                            for (i, sector) in bytes.chunks(SECTOR_BYTES).enumerate() {
                                if self.rng.bool() {
                                    write_into(&mut image, position + i * SECTOR_BYTES, sector);
                                }
                            }
                        }
                        DataOp::Truncate(_) => {}
                    },
                }
            }
            inode.pending.clear();
            inode.current = image.clone();
            inode.durable = image;
        }
        for dir in self.dirs.values_mut() {
            let kept = self.rng.usize(0..=dir.pending.len());
            for op in &dir.pending[..kept] {
                apply_name_op(&mut dir.durable, op);
            }
            dir.pending.clear();
            dir.current = dir.durable.clone();
        }
        let linked: std::collections::HashSet<u64> =
            self.dirs.values().flat_map(|d| d.durable.values().copied()).collect();
        self.inodes.retain(|inode, _| linked.contains(inode));
    }
}

impl SimDisk {
    /// A powered, empty disk whose power cuts draw from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk(Rc::new(RefCell::new(State {
            inodes: HashMap::new(),
            next_inode: 1,
            dirs: BTreeMap::new(),
            ops: 0,
            cut_at: None,
            powered: true,
            boot: 0,
            open_now: 0,
            open_peak: 0,
            rng: fastrand::Rng::with_seed(seed),
        })))
    }

    /// Mutating operations (writes, truncations, syncs, creations, renames, removals)
    /// performed so far.
    pub fn ops(&self) -> u64 {
        self.0.borrow().ops
    }

    /// Cuts the power when the operation count reaches `ops` (that operation fails and does
    /// not happen).
    pub fn cut_after(&self, ops: u64) {
        self.0.borrow_mut().cut_at = Some(ops);
    }

    /// Cuts the power now.
    pub fn cut_now(&self) {
        let mut s = self.0.borrow_mut();
        if s.powered {
            s.cut();
        }
    }

    /// Whether the disk is on (false between a cut and [`SimDisk::restart`]).
    pub fn is_powered(&self) -> bool {
        self.0.borrow().powered
    }

    /// Powers the disk back on after a cut, with what survived it. Files opened before are dead.
    pub fn restart(&self) {
        let mut s = self.0.borrow_mut();
        if s.powered {
            s.cut();
        }
        s.powered = true;
        s.boot += 1;
    }

    /// Files open now, and the most that were open at once.
    pub fn open_files(&self) -> (usize, usize) {
        let s = self.0.borrow();
        (s.open_now, s.open_peak)
    }

    /// The current contents of a file (what a read would see), if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.0.borrow();
        s.lookup(path).map(|inode| s.inodes[&inode].current.clone())
    }

    /// Replaces a file's contents durably (tests that damage stored bytes).
    pub fn set_contents(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        let inode = s.lookup(path).ok_or_else(|| not_found(path))?;
        let inode = s.inodes.get_mut(&inode).expect("linked inodes exist");
        inode.current = bytes.clone();
        inode.durable = bytes;
        inode.pending.clear();
        Ok(())
    }

    pub(crate) async fn open(&self, path: &Path, mode: Mode) -> io::Result<SimFile> {
        futures_lite::future::yield_now().await;
        let mut s = self.0.borrow_mut();
        let existing = s.lookup(path);
        let inode = match (mode, existing) {
            (Mode::Read | Mode::ReadWrite, Some(inode)) => {
                s.check_powered()?;
                inode
            }
            (Mode::Read | Mode::ReadWrite, None) => {
                s.check_powered()?;
                return Err(not_found(path));
            }
            (Mode::CreateNew, Some(_)) => {
                s.check_powered()?;
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, path.display().to_string()));
            }
            (Mode::CreateTruncate, Some(inode)) => {
                s.mutate()?;
                let file = s.inodes.get_mut(&inode).expect("linked inodes exist");
                file.current.clear();
                file.pending.push(DataOp::Truncate(0));
                inode
            }
            (Mode::CreateNew | Mode::CreateTruncate, None) => {
                s.mutate()?;
                let (dir, name) = split(path);
                let inode = s.next_inode;
                s.next_inode += 1;
                let d = s.dir_mut(&dir)?;
                d.current.insert(name.clone(), inode);
                d.pending.push(NameOp::Link(name, inode));
                s.inodes.insert(inode, Inode::default());
                inode
            }
        };
        s.open_now += 1;
        s.open_peak = s.open_peak.max(s.open_now);
        let boot = s.boot;
        Ok(SimFile { disk: self.clone(), inode, boot, writable: mode != Mode::Read })
    }

    pub(crate) async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        futures_lite::future::yield_now().await;
        let s = self.0.borrow();
        s.check_powered()?;
        let d = s.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(d.current.keys().cloned().collect())
    }

    pub(crate) async fn read_whole(&self, path: &Path) -> io::Result<Vec<u8>> {
        futures_lite::future::yield_now().await;
        let s = self.0.borrow();
        s.check_powered()?;
        let inode = s.lookup(path).ok_or_else(|| not_found(path))?;
        Ok(s.inodes[&inode].current.clone())
    }

    pub(crate) async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        futures_lite::future::yield_now().await;
        let mut s = self.0.borrow_mut();
        s.mutate()?;
        let (dir, from_name) = split(from);
        let (to_dir, to_name) = split(to);
        assert_eq!(dir, to_dir, "the log renames only within a directory");
        let d = s.dir_mut(&dir)?;
        let inode = d.current.remove(&from_name).ok_or_else(|| not_found(from))?;
        d.current.insert(to_name.clone(), inode);
        d.pending.push(NameOp::Rename(from_name, to_name));
        Ok(())
    }

    pub(crate) async fn remove(&self, path: &Path) -> io::Result<()> {
        futures_lite::future::yield_now().await;
        let mut s = self.0.borrow_mut();
        s.mutate()?;
        let (dir, name) = split(path);
        let d = s.dir_mut(&dir)?;
        d.current.remove(&name).ok_or_else(|| not_found(path))?;
        d.pending.push(NameOp::Unlink(name));
        Ok(())
    }

    pub(crate) async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        futures_lite::future::yield_now().await;
        let mut s = self.0.borrow_mut();
        s.mutate()?;
        let d = s.dir_mut(dir)?;
        d.durable = d.current.clone();
        d.pending.clear();
        Ok(())
    }

    /// Directories are durable once created (the log's parent directories are the
    /// operator's).
    pub(crate) async fn create_dir(&self, dir: PathBuf) -> io::Result<PathBuf> {
        futures_lite::future::yield_now().await;
        let mut s = self.0.borrow_mut();
        s.check_powered()?;
        if !dir.is_absolute() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "simulated paths are absolute"));
        }
        s.dirs.entry(dir.clone()).or_default();
        Ok(dir)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    Sync,
}

/// An open file of a [`SimDisk`].
pub(crate) struct SimFile {
    disk: SimDisk,
    inode: u64,
    boot: u64,
    writable: bool,
}

impl std::fmt::Debug for SimFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFile").field("inode", &self.inode).finish()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        self.disk.0.borrow_mut().open_now -= 1;
    }
}

impl SimFile {
    /// Runs `f` on the file's inode; `access` says whether the call changes the disk
    /// (counted, and where an armed cut lands) and whether it needs a writable handle.
    fn with<T>(&self, access: Access, f: impl FnOnce(&mut Inode) -> T) -> io::Result<T> {
        let mut s = self.disk.0.borrow_mut();
        if access != Access::Read {
            if access == Access::Write && !self.writable {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, "opened read-only"));
            }
            s.mutate()?;
        } else {
            s.check_powered()?;
        }
        if s.boot != self.boot {
            return Err(io::Error::other("file handle from before a power cut"));
        }
        // An unlinked file stays readable and writable through open handles, as in POSIX.
        let inode = s.inodes.get_mut(&self.inode).ok_or_else(|| io::Error::other("inode is gone"))?;
        Ok(f(inode))
    }

    pub async fn read_at(&self, position: u64, len: usize) -> io::Result<Bytes> {
        futures_lite::future::yield_now().await;
        self.with(Access::Read, |inode| {
            let from = (position as usize).min(inode.current.len());
            let to = (from + len).min(inode.current.len());
            Bytes::copy_from_slice(&inode.current[from..to])
        })
    }

    pub async fn write_at(&self, bytes: &[u8], position: u64) -> io::Result<usize> {
        futures_lite::future::yield_now().await;
        assert!(
            position.is_multiple_of(SECTOR_BYTES as u64) && bytes.len().is_multiple_of(SECTOR_BYTES),
            "direct I/O writes are aligned"
        );
        self.with(Access::Write, |inode| {
            write_into(&mut inode.current, position as usize, bytes);
            inode.pending.push(DataOp::Write { position: position as usize, bytes: bytes.to_vec() });
            bytes.len()
        })
    }

    pub async fn truncate(&self, len: u64) -> io::Result<()> {
        futures_lite::future::yield_now().await;
        self.with(Access::Write, |inode| {
            inode.current.resize(len as usize, 0);
            inode.pending.push(DataOp::Truncate(len as usize));
        })
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        futures_lite::future::yield_now().await;
        self.with(Access::Sync, |inode| {
            inode.durable = inode.current.clone();
            inode.pending.clear();
        })
    }

    pub async fn size(&self) -> io::Result<u64> {
        futures_lite::future::yield_now().await;
        self.with(Access::Read, |inode| inode.current.len() as u64)
    }
}

//! The storage crate's one seam to the file system.
//!
//! Every file operation of the log (open, read, write, fdatasync, truncate, rename, remove,
//! directory listing and sync) goes through a [`Disk`]. Production uses [`Disk::Direct`]:
//! glommio DMA files (io_uring, O_DIRECT) and glommio's directory calls, exactly the calls the
//! log made before the seam existed. [`Disk::Simulated`] is an in-memory device with a volatile
//! write cache (see [`sim`]): tests cut its power at any operation and reopen the log on what
//! survived, as a real power loss would leave it.

pub mod sim;

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::config::BLOCK_BYTES;
use crate::error::{Error, Result};

pub use sim::SimDisk;

/// Where a log's files live.
#[derive(Clone, Debug, Default)]
pub enum Disk {
    /// The host's file system through glommio DMA files (O_DIRECT, io_uring).
    #[default]
    Direct,
    /// An in-memory device that loses unsynced writes at a simulated power cut.
    Simulated(SimDisk),
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    ReadWrite,
    /// Create; the file must not exist.
    CreateNew,
    /// Create or empty an existing file (temporary files written whole).
    CreateTruncate,
}

/// An open file of a [`Disk`].
#[derive(Debug)]
pub(crate) enum File {
    Direct(DmaFile),
    Simulated(sim::SimFile),
}

impl File {
    /// Reads `[position, position + len)`, shorter at the end of the file.
    pub async fn read_at(&self, position: u64, len: usize) -> io::Result<Bytes> {
        let read = match self {
            File::Direct(file) => {
                let read = file.read_at(position, len).await?;
                Bytes::copy_from_slice(&read)
            }
            File::Simulated(file) => file.read_at(position, len).await?,
        };
        crate::io_stats::with(|s| s.bytes_read += read.len() as u64);
        Ok(read)
    }

    /// Writes the whole aligned buffer at the aligned `position`; returns the bytes written.
    pub async fn write_at(&self, buf: DmaBuffer, position: u64) -> io::Result<usize> {
        let started = std::time::Instant::now();
        let written = match self {
            File::Direct(file) => file.write_at(buf, position).await?,
            File::Simulated(file) => file.write_at(buf.as_bytes(), position).await?,
        };
        crate::io_stats::with(|s| {
            s.bytes_written += written as u64;
            s.writes.observe(started.elapsed());
        });
        Ok(written)
    }

    pub async fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            File::Direct(file) => Ok(file.truncate(len).await?),
            File::Simulated(file) => file.truncate(len).await,
        }
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        let started = std::time::Instant::now();
        match self {
            File::Direct(file) => file.fdatasync().await?,
            File::Simulated(file) => file.fdatasync().await?,
        }
        crate::io_stats::with(|s| s.fsyncs.observe(started.elapsed()));
        Ok(())
    }

    pub async fn size(&self) -> io::Result<u64> {
        match self {
            File::Direct(file) => Ok(file.file_size().await?),
            File::Simulated(file) => file.size().await,
        }
    }

    pub async fn close(self) -> io::Result<()> {
        match self {
            File::Direct(file) => Ok(file.close().await?),
            File::Simulated(file) => {
                drop(file);
                Ok(())
            }
        }
    }
}

/// A buffer suitable for [`File::write_at`] (aligned for direct I/O).
pub(crate) fn alloc_buffer(len: usize) -> DmaBuffer {
    glommio::allocate_dma_buffer(len)
}

impl Disk {
    pub(crate) async fn open(&self, path: &Path, mode: Mode) -> io::Result<File> {
        match self {
            Disk::Direct => {
                let mut options = OpenOptions::new();
                match mode {
                    Mode::Read => options.read(true),
                    Mode::ReadWrite => options.read(true).write(true),
                    Mode::CreateNew => options.read(true).write(true).create_new(true),
                    Mode::CreateTruncate => options.write(true).create(true).truncate(true),
                };
                Ok(File::Direct(options.dma_open(path).await?))
            }
            Disk::Simulated(sim) => Ok(File::Simulated(sim.open(path, mode).await?)),
        }
    }

    /// The names in a directory.
    pub(crate) async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        match self {
            Disk::Direct => {
                let owned = dir.to_path_buf();
                glommio::executor()
                    .spawn_blocking(move || -> io::Result<Vec<String>> {
                        let mut names = Vec::new();
                        for entry in std::fs::read_dir(&owned)? {
                            names.push(entry?.file_name().to_string_lossy().into_owned());
                        }
                        Ok(names)
                    })
                    .await
            }
            Disk::Simulated(sim) => sim.list(dir).await,
        }
    }

    /// Reads a small file whole; `None` if it does not exist.
    pub(crate) async fn read_whole(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let read = match self {
            Disk::Direct => {
                let owned = path.to_path_buf();
                glommio::executor().spawn_blocking(move || std::fs::read(owned)).await
            }
            Disk::Simulated(sim) => sim.read_whole(path).await,
        };
        match read {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Renames within one directory (durable once the directory is synced).
    pub(crate) async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Disk::Direct => Ok(glommio::io::rename(from, to).await?),
            Disk::Simulated(sim) => sim.rename(from, to).await,
        }
    }

    pub(crate) async fn remove(&self, path: &Path) -> io::Result<()> {
        match self {
            Disk::Direct => Ok(glommio::io::remove(path).await?),
            Disk::Simulated(sim) => sim.remove(path).await,
        }
    }

    /// Makes creations, renames and removals in `dir` durable.
    pub(crate) async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self {
            Disk::Direct => {
                let d = glommio::io::Directory::open(dir).await?;
                d.sync().await?;
                Ok(d.close().await?)
            }
            Disk::Simulated(sim) => sim.sync_dir(dir).await,
        }
    }

    /// Creates `dir` (and its parents) if needed, durably, and returns its absolute path
    /// (glommio's directory calls misbehave on relative paths).
    pub(crate) async fn create_dir(&self, dir: PathBuf) -> io::Result<PathBuf> {
        match self {
            Disk::Direct => {
                glommio::executor()
                    .spawn_blocking(move || {
                        let existed = dir.is_dir();
                        std::fs::create_dir_all(&dir)?;
                        let dir = std::fs::canonicalize(&dir)?;
                        if !existed {
                            // Make the new directory's entry durable in its parent before any
                            // data lands.
                            if let Some(parent) = dir.parent() {
                                std::fs::File::open(parent)?.sync_all()?;
                            }
                        }
                        Ok(dir)
                    })
                    .await
            }
            Disk::Simulated(sim) => sim.create_dir(dir).await,
        }
    }

    /// Makes glommio's per-thread iopoll probe look at real data on `dir`'s device (see
    /// [`prime_device_probe`]); nothing to do for a simulated disk.
    pub(crate) async fn prime_device_probe(&self, dir: &Path) -> Result<()> {
        match self {
            Disk::Direct => prime_device_probe(dir).await,
            Disk::Simulated(_) => Ok(()),
        }
    }
}

thread_local! {
    static PROBED_DEVICES: std::cell::RefCell<std::collections::HashSet<u64>> =
        std::cell::RefCell::new(Default::default());
}

/// Makes glommio's per-thread iopoll probe look at real data on `dir`'s device.
///
/// glommio decides, on the first DMA open per device and thread, whether the device supports
/// polled I/O by reading the first block of that file. If that file is empty (a new segment) the
/// read succeeds trivially, the device is wrongly marked pollable, and every later read fails
/// with EOPNOTSUPP on devices without poll queues (virtio disks, most VMs). Opening a non-empty
/// file first makes the probe answer truthfully.
async fn prime_device_probe(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).map_err(|e| Error::io("inspecting", dir, e))?.dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let path = dir.join(PROBE_FILE);
    let owned = path.clone();
    glommio::executor()
        .spawn_blocking(move || std::fs::write(owned, [0u8; BLOCK_BYTES]))
        .await
        .map_err(|e| Error::io("writing", &path, e))?;
    let file = DmaFile::open(&path).await.map_err(|e| Error::io("opening", &path, e))?;
    file.close().await.map_err(|e| Error::io("closing", &path, e))?;
    std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
    PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

/// The probe file's name; recovery removes one left by a crash.
pub(crate) const PROBE_FILE: &str = ".rill-device-probe";

/// Free and total bytes of the file system holding `dir` (0, 0 if it cannot be read).
pub fn disk_space(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return (0, 0) };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs reads a NUL-terminated path and writes one statvfs into a valid pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return (0, 0);
    }
    let block = st.f_frsize as u64;
    (st.f_bavail as u64 * block, st.f_blocks as u64 * block)
}

//! Facts about the host: CPUs, memory, and the disk behind the data directory.
//!
//! Read below configurable roots (`/sys`, `/proc`) so tests can feed recorded snapshots.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::topology::{CpuTopology, read_trimmed};

/// Where sysfs and procfs are mounted (`/sys`, `/proc` on a live host).
#[derive(Clone, Debug)]
pub struct HostRoots {
    /// sysfs mount point.
    pub sys: PathBuf,
    /// procfs mount point.
    pub proc: PathBuf,
}

impl Default for HostRoots {
    fn default() -> Self {
        HostRoots { sys: PathBuf::from("/sys"), proc: PathBuf::from("/proc") }
    }
}

/// What a profile needs to know about a host.
#[derive(Clone, Debug)]
pub struct HostFacts {
    /// The host's name, for derived profile names.
    pub hostname: String,
    /// CPUs.
    pub topology: CpuTopology,
    /// MemTotal.
    pub memory_bytes: u64,
}

impl HostFacts {
    /// Reads the live host.
    pub fn read() -> Result<HostFacts> {
        HostFacts::read_at(&HostRoots::default())
    }

    /// Reads a host whose sysfs and procfs are at `roots`.
    pub fn read_at(roots: &HostRoots) -> Result<HostFacts> {
        let topology = CpuTopology::read(&roots.sys)?;
        let memory_bytes = mem_total(&roots.proc.join("meminfo"))?;
        let hostname = std::fs::read_to_string(roots.proc.join("sys/kernel/hostname"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "this host".to_string());
        Ok(HostFacts { hostname, topology, memory_bytes })
    }
}

fn mem_total(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        op: "reading",
        path: path.into(),
        source: e,
    })?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"));
    let kib = line
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| Error::Sysfs { path: path.into(), reason: "no MemTotal line".into() })?;
    Ok(kib * 1024)
}

/// The block device and filesystem behind a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskFacts {
    /// The directory asked about.
    pub dir: PathBuf,
    /// Filesystem type from the mount table.
    pub fs_type: String,
    /// Mount point holding the directory.
    pub mount_point: PathBuf,
    /// Block device name (`nvme0n1`, `vda`), the whole disk rather than a partition.
    pub device: Option<String>,
    /// Whether the kernel reports the device as rotational.
    pub rotational: Option<bool>,
    /// Available I/O schedulers, the active one first.
    pub schedulers: Vec<String>,
    /// Queue `nr_requests`.
    pub nr_requests: Option<u32>,
    /// `write back` or `write through`.
    pub write_cache: Option<String>,
    /// Logical block size in bytes.
    pub logical_block_bytes: Option<u32>,
}

impl DiskFacts {
    /// The active I/O scheduler.
    pub fn scheduler(&self) -> Option<&str> {
        self.schedulers.first().map(String::as_str)
    }

    /// Inspects the live host's disk behind `dir`.
    pub fn read(dir: &Path) -> Result<DiskFacts> {
        use std::os::unix::fs::MetadataExt;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::Io {
            op: "resolving",
            path: dir.into(),
            source: e,
        })?;
        let dev = std::fs::metadata(&dir)
            .map_err(|e| Error::Io { op: "inspecting", path: dir.clone(), source: e })?
            .dev();
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        DiskFacts::from_parts(&dir, &mountinfo, Path::new("/sys"), major, minor)
    }

    /// Builds the facts from a mount table and a sysfs root.
    pub fn from_parts(dir: &Path, mountinfo: &str, sys: &Path, major: u32, minor: u32) -> Result<DiskFacts> {
        let (mount_point, fs_type) =
            mount_of(dir, mountinfo).unwrap_or_else(|| (PathBuf::from("/"), "unknown".into()));
        let mut facts = DiskFacts {
            dir: dir.to_path_buf(),
            fs_type,
            mount_point,
            device: None,
            rotational: None,
            schedulers: Vec::new(),
            nr_requests: None,
            write_cache: None,
            logical_block_bytes: None,
        };
        let Some(device_dir) = whole_disk_dir(sys, major, minor) else { return Ok(facts) };
        facts.device = device_dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let queue = device_dir.join("queue");
        facts.rotational = read_trimmed(&queue.join("rotational")).ok().map(|v| v == "1");
        facts.nr_requests = read_trimmed(&queue.join("nr_requests")).ok().and_then(|v| v.parse().ok());
        facts.write_cache = read_trimmed(&queue.join("write_cache")).ok();
        facts.logical_block_bytes =
            read_trimmed(&queue.join("logical_block_size")).ok().and_then(|v| v.parse().ok());
        if let Ok(line) = read_trimmed(&queue.join("scheduler")) {
            facts.schedulers = parse_schedulers(&line);
        }
        Ok(facts)
    }
}

/// `none [mq-deadline] kyber` -> `["mq-deadline", "none", "kyber"]` (active first).
pub fn parse_schedulers(line: &str) -> Vec<String> {
    let mut active = None;
    let mut others = Vec::new();
    for word in line.split_whitespace() {
        match word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            Some(w) => active = Some(w.to_string()),
            None => others.push(word.to_string()),
        }
    }
    active.into_iter().chain(others).collect()
}

/// The longest mount point that contains `dir`, with its filesystem type.
fn mount_of(dir: &Path, mountinfo: &str) -> Option<(PathBuf, String)> {
    let mut best: Option<(PathBuf, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(mount), Some(fs)) = (fields.get(4), fields.get(dash + 1)) else { continue };
        let mount = PathBuf::from(mount.replace("\\040", " "));
        if dir.starts_with(&mount)
            && best.as_ref().is_none_or(|(b, _)| mount.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((mount, fs.to_string()));
        }
    }
    best
}

/// `/sys/dev/block/M:m`, resolved, and lifted from a partition to its disk.
fn whole_disk_dir(sys: &Path, major: u32, minor: u32) -> Option<PathBuf> {
    let link = sys.join(format!("dev/block/{major}:{minor}"));
    let dir = std::fs::canonicalize(&link).ok()?;
    if dir.join("partition").exists() { dir.parent().map(Path::to_path_buf) } else { Some(dir) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedulers_active_first() {
        assert_eq!(parse_schedulers("none [mq-deadline] kyber bfq"), ["mq-deadline", "none", "kyber", "bfq"]);
        assert_eq!(parse_schedulers("[none] mq-deadline"), ["none", "mq-deadline"]);
    }

    #[test]
    fn mount_lookup_takes_longest_prefix() {
        let table = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                     30 27 0:26 / /work/data rw - xfs /dev/nvme0n1p1 rw\n";
        let (mount, fs) = mount_of(Path::new("/work/data/topic/0"), table).unwrap();
        assert_eq!((mount, fs.as_str()), (PathBuf::from("/work/data"), "xfs"));
        let (mount, fs) = mount_of(Path::new("/home"), table).unwrap();
        assert_eq!((mount, fs.as_str()), (PathBuf::from("/"), "ext4"));
    }
}

//! `rill tune check` and `apply`: the host's kernel and device settings against the profile's.
//!
//! Each setting becomes a `Finding`: what the host has, what the profile wants, whether that is
//! fine, and the exact command that would change it. `apply` writes only the findings that are
//! not fine and that a sysfs/procfs write can fix; it needs root and changes nothing unasked.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::{DiskFacts, HostRoots, parse_schedulers};
use crate::profile::Profile;
use crate::topology::read_trimmed;

/// Whether a setting is as the profile wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// As wanted.
    Ok,
    /// Differs; the command would fix it.
    Advice,
    /// The host does not expose it (a VM without cpufreq, say).
    NotApplicable,
}

/// One compared setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What is compared.
    pub setting: String,
    /// The host's value.
    pub current: String,
    /// The profile's wish.
    pub wanted: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The shell command that applies the wish.
    pub command: Option<String>,
    /// The file `apply` writes, and what it writes.
    write: Option<(PathBuf, String)>,
}

impl Finding {
    fn new(
        setting: impl Into<String>,
        current: impl Into<String>,
        wanted: impl Into<String>,
        ok: bool,
    ) -> Finding {
        Finding {
            setting: setting.into(),
            current: current.into(),
            wanted: wanted.into(),
            verdict: if ok { Verdict::Ok } else { Verdict::Advice },
            command: None,
            write: None,
        }
    }

    fn not_applicable(setting: impl Into<String>, wanted: impl Into<String>, why: &str) -> Finding {
        Finding { verdict: Verdict::NotApplicable, ..Finding::new(setting, why, wanted, true) }
    }

    /// A fix that writes `value` to `path`, shown as `echo value > shown_path`.
    fn fix_by_write(mut self, roots: &HostRoots, relative: &str, under_sys: bool, value: String) -> Finding {
        let (root, shown_root) = if under_sys { (&roots.sys, "/sys") } else { (&roots.proc, "/proc") };
        if self.verdict == Verdict::Advice {
            self.command = Some(format!("echo {value} > {shown_root}/{relative}"));
            self.write = Some((root.join(relative), value));
        }
        self
    }
}

/// Compares the host with the profile. `disk` is the data directory's disk, if known;
/// `shard_cpus` the CPUs the profile runs shards on.
pub fn check(
    profile: &Profile,
    roots: &HostRoots,
    disk: Option<&DiskFacts>,
    shard_cpus: &[usize],
) -> Vec<Finding> {
    let k = &profile.kernel;
    let mut out = Vec::new();
    match disk.and_then(|d| d.device.clone()) {
        Some(device) => {
            let queue = format!("block/{device}/queue");
            let path = roots.sys.join(&queue).join("scheduler");
            match read_trimmed(&path).map(|l| parse_schedulers(&l)) {
                Ok(list) if !list.contains(&k.io_scheduler) => out.push(Finding::not_applicable(
                    format!("{device} I/O scheduler"),
                    &k.io_scheduler,
                    &format!("{} (wanted one not offered)", list.join(" ")),
                )),
                Ok(list) => {
                    let ok = list[0] == k.io_scheduler;
                    let f = Finding::new(format!("{device} I/O scheduler"), &list[0], &k.io_scheduler, ok);
                    out.push(f.fix_by_write(
                        roots,
                        &format!("{queue}/scheduler"),
                        true,
                        k.io_scheduler.clone(),
                    ));
                }
                Err(_) => out.push(Finding::not_applicable(
                    format!("{device} I/O scheduler"),
                    &k.io_scheduler,
                    "not exposed",
                )),
            }
            match read_trimmed(&roots.sys.join(&queue).join("nr_requests"))
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
            {
                Some(n) => {
                    let f = Finding::new(
                        format!("{device} nr_requests"),
                        n.to_string(),
                        format!(">= {}", k.nr_requests_min),
                        n >= k.nr_requests_min,
                    );
                    out.push(f.fix_by_write(
                        roots,
                        &format!("{queue}/nr_requests"),
                        true,
                        k.nr_requests_min.to_string(),
                    ));
                }
                None => out.push(Finding::not_applicable(
                    format!("{device} nr_requests"),
                    k.nr_requests_min.to_string(),
                    "not exposed",
                )),
            }
        }
        None => out.push(Finding::not_applicable(
            "data disk",
            "a block device",
            "no block device behind the data directory",
        )),
    }

    let thp = "kernel/mm/transparent_hugepage/enabled";
    match read_trimmed(&roots.sys.join(thp)).map(|l| parse_schedulers(&l)) {
        Ok(modes) => {
            let f = Finding::new(
                "transparent huge pages",
                &modes[0],
                &k.transparent_hugepages,
                modes[0] == k.transparent_hugepages,
            );
            out.push(f.fix_by_write(roots, thp, true, k.transparent_hugepages.clone()));
        }
        Err(_) => out.push(Finding::not_applicable(
            "transparent huge pages",
            &k.transparent_hugepages,
            "not exposed",
        )),
    }

    out.push(sysctl_max(roots, "vm.swappiness", k.swappiness_max as u64));
    out.push(sysctl_min(roots, "fs.aio-max-nr", k.aio_max_nr_min));
    out.push(sysctl_min(roots, "net.core.rmem_max", k.socket_buffer_max_min));
    out.push(sysctl_min(roots, "net.core.wmem_max", k.socket_buffer_max_min));
    match read_number(roots, "sys/kernel/io_uring_disabled") {
        Some(v) => {
            let f = Finding::new("kernel.io_uring_disabled", v.to_string(), "0", v == 0);
            out.push(f.fix_by_write(roots, "sys/kernel/io_uring_disabled", false, "0".into()));
        }
        None => out.push(Finding::not_applicable(
            "kernel.io_uring_disabled",
            "0",
            "not present (io_uring always on)",
        )),
    }

    for cpu in shard_cpus {
        let rel = format!("devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor");
        match read_trimmed(&roots.sys.join(&rel)) {
            Ok(g) => {
                let f = Finding::new(format!("cpu{cpu} governor"), &g, &k.cpu_governor, g == k.cpu_governor);
                out.push(f.fix_by_write(roots, &rel, true, k.cpu_governor.clone()));
            }
            Err(_) => {
                out.push(Finding::not_applicable(
                    "CPU governor",
                    &k.cpu_governor,
                    "no cpufreq (VM or fixed clock)",
                ));
                break;
            }
        }
    }

    let memlock = memlock_bytes();
    let wanted = k.memlock_bytes_min.max(profile.memory.io_memory_bytes_per_shard);
    let mut f = Finding::new(
        "locked-memory limit (RLIMIT_MEMLOCK)",
        memlock.map_or("unlimited".to_string(), |b| format!("{b} bytes")),
        format!(">= {wanted} bytes"),
        memlock.is_none_or(|b| b >= wanted),
    );
    if f.verdict == Verdict::Advice {
        f.command = Some("ulimit -l unlimited  # or LimitMEMLOCK=infinity in the systemd unit".into());
    }
    out.push(f);
    out
}

fn read_number(roots: &HostRoots, relative: &str) -> Option<u64> {
    read_trimmed(&roots.proc.join(relative)).ok()?.split_whitespace().next()?.parse().ok()
}

fn sysctl_path(name: &str) -> String {
    format!("sys/{}", name.replace('.', "/"))
}

fn sysctl_min(roots: &HostRoots, name: &str, min: u64) -> Finding {
    sysctl_bound(roots, name, min, true)
}

fn sysctl_max(roots: &HostRoots, name: &str, max: u64) -> Finding {
    sysctl_bound(roots, name, max, false)
}

fn sysctl_bound(roots: &HostRoots, name: &str, bound: u64, at_least: bool) -> Finding {
    let rel = sysctl_path(name);
    let wanted = if at_least { format!(">= {bound}") } else { format!("<= {bound}") };
    match read_number(roots, &rel) {
        Some(v) => {
            let ok = if at_least { v >= bound } else { v <= bound };
            let mut f = Finding::new(name, v.to_string(), wanted, ok);
            if !ok {
                f.command = Some(format!("sysctl -w {name}={bound}"));
                f.write = Some((roots.proc.join(&rel), bound.to_string()));
            }
            f
        }
        None => Finding::not_applicable(name, wanted, "not present"),
    }
}

fn memlock_bytes() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

/// Applies every fixable finding that is not fine. `require_root` is false only in tests that
/// point the roots at a scratch directory. Returns the findings applied.
pub fn apply(findings: &[Finding], require_root: bool) -> Result<Vec<Finding>> {
    // SAFETY: geteuid has no preconditions.
    if require_root && unsafe { libc::geteuid() } != 0 {
        return Err(Error::NotRoot);
    }
    let mut applied = Vec::new();
    for f in findings.iter().filter(|f| f.verdict == Verdict::Advice) {
        let Some((path, value)) = &f.write else { continue };
        std::fs::write(path, value).map_err(|e| Error::Io {
            op: "writing",
            path: path.clone(),
            source: e,
        })?;
        applied.push(f.clone());
    }
    Ok(applied)
}

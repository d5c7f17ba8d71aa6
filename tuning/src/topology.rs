//! CPU topology from sysfs: online CPUs, physical cores, SMT siblings, NUMA nodes.
//!
//! Everything is read below a root directory (normally `/sys`), so tests parse recorded
//! snapshots of other hosts.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// One logical CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// Logical CPU id.
    pub id: usize,
    /// Physical package (socket).
    pub package: u32,
    /// Core id within the package.
    pub core: u32,
    /// NUMA node.
    pub node: u32,
}

/// The host's CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuTopology {
    /// Online CPUs by id.
    pub cpus: Vec<Cpu>,
}

impl CpuTopology {
    /// Reads the topology below `sys_root` (`/sys` on a live host).
    pub fn read(sys_root: &Path) -> Result<CpuTopology> {
        let cpu_dir = sys_root.join("devices/system/cpu");
        let online = parse_cpu_list(&read_trimmed(&cpu_dir.join("online"))?)
            .map_err(|reason| Error::Sysfs { path: cpu_dir.join("online"), reason })?;
        let nodes = read_nodes(&sys_root.join("devices/system/node"))?;
        let mut cpus = Vec::with_capacity(online.len());
        for id in online {
            let topo = cpu_dir.join(format!("cpu{id}/topology"));
            let number = |name: &str| -> Result<u32> {
                let path = topo.join(name);
                let text = read_trimmed(&path)?;
                text.parse::<i64>()
                    .map(|v| v.max(0) as u32)
                    .map_err(|_| Error::Sysfs { path, reason: format!("not a number: {text:?}") })
            };
            let package = number("physical_package_id")?;
            let core = number("core_id")?;
            let node = nodes.get(&id).copied().unwrap_or(0);
            cpus.push(Cpu { id, package, core, node });
        }
        Ok(CpuTopology { cpus })
    }

    /// Online CPU ids, ascending.
    pub fn online(&self) -> Vec<usize> {
        self.cpus.iter().map(|c| c.id).collect()
    }

    /// Physical cores: (package, core) pairs, each with its CPUs (SMT siblings).
    pub fn physical_cores(&self) -> BTreeMap<(u32, u32), Vec<usize>> {
        let mut cores: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
        for cpu in &self.cpus {
            cores.entry((cpu.package, cpu.core)).or_default().push(cpu.id);
        }
        cores
    }

    /// Whether any physical core runs more than one hardware thread.
    pub fn smt(&self) -> bool {
        self.physical_cores().values().any(|siblings| siblings.len() > 1)
    }

    /// NUMA nodes with their CPUs.
    pub fn numa_nodes(&self) -> BTreeMap<u32, Vec<usize>> {
        let mut nodes: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for cpu in &self.cpus {
            nodes.entry(cpu.node).or_default().push(cpu.id);
        }
        nodes
    }

    /// The lowest-numbered CPU of every physical core, ordered so that consecutive shards
    /// alternate NUMA nodes (shard i and i+1 land on different nodes when there are several).
    pub fn one_per_physical_core(&self) -> Vec<usize> {
        let mut per_node: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for siblings in self.physical_cores().values() {
            let first = *siblings.iter().min().expect("a core has a CPU");
            let node = self.cpus.iter().find(|c| c.id == first).expect("listed").node;
            per_node.entry(node).or_default().push(first);
        }
        for cpus in per_node.values_mut() {
            cpus.sort_unstable();
        }
        let mut out = Vec::new();
        let longest = per_node.values().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for cpus in per_node.values() {
                if let Some(&cpu) = cpus.get(i) {
                    out.push(cpu);
                }
            }
        }
        out
    }
}

fn read_nodes(node_dir: &Path) -> Result<BTreeMap<usize, u32>> {
    let mut map = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(node_dir) else { return Ok(map) };
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::Io { op: "listing", path: node_dir.to_path_buf(), source: e })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(node) = name.strip_prefix("node").and_then(|n| n.parse::<u32>().ok()) else { continue };
        let path = entry.path().join("cpulist");
        let cpus = parse_cpu_list(&read_trimmed(&path)?).map_err(|reason| Error::Sysfs { path, reason })?;
        for cpu in cpus {
            map.insert(cpu, node);
        }
    }
    Ok(map)
}

pub(crate) fn read_trimmed(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| Error::Io {
        op: "reading",
        path: path.to_path_buf(),
        source: e,
    })
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str) -> std::result::Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list element {part:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a > 65_536 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11").unwrap(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }
}

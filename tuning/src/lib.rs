//! Per-host tuning profiles and the `rill tune` probe.
//!
//! A [`Profile`] (TOML) holds every performance-relevant broker setting: shard cores, per-shard
//! memory budgets, io_uring depth, log defaults, network limits, and the kernel settings the
//! host should have. [`probe_disk`] measures the data disk, [`probe_stalls`] how often the host
//! takes busy CPUs away (the floor under tail latency), [`HostFacts`] and [`DiskFacts`]
//! read the host, and [`check`] compares the host's kernel settings with a profile's.

mod check;
mod disk;
mod error;
mod host;
mod profile;
mod stalls;
mod topology;

pub use crate::check::{Finding, Verdict, apply, check};
pub use crate::disk::{ProbeSettings, probe_disk};
pub use crate::error::{Error, Result};
pub use crate::host::{DiskFacts, HostFacts, HostRoots, parse_schedulers};
pub use crate::profile::{
    ClusterSection, CompactionSection, CorePolicy, CoreSelection, CpuSection, IoSection, KernelSection,
    LOG_WRITE_BUFFER_BYTES_MAX, LogSection, Measured, MemorySection, NetworkSection, Profile,
    QueueDepthFigure, SHIPPED, parse_durability,
};
pub use crate::stalls::{
    CpuStalls, STALL_PROBE_SECONDS_MAX, StallCounter, StallSettings, allowed_cpus, probe_stalls,
};
pub use crate::topology::{Cpu, CpuTopology, parse_cpu_list};

//! The tuning profile: every performance-relevant broker setting, kept as TOML per host.
//!
//! A profile says which cores run shards, how much memory each shard may use and for what,
//! how the logs write, and what the network layer allows. It also records the kernel settings
//! the host should have (`rill tune check` compares them) and, when made by `rill tune probe`,
//! what the disk measured. Every broker default comes from here.

use std::path::Path;

use rill_storage::{BLOCK_BYTES, Durability, LogConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host::HostFacts;

/// A tuning profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// A name for logs and summaries.
    pub name: String,
    /// Which cores run shards.
    pub cpu: CpuSection,
    /// Per-shard memory budgets.
    pub memory: MemorySection,
    /// io_uring and direct-I/O settings.
    pub io: IoSection,
    /// Partition log defaults.
    pub log: LogSection,
    /// Network limits and socket buffers.
    pub network: NetworkSection,
    /// Node-to-node links (QUIC) of a cluster. Profiles from before clusters take the defaults.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// The log cleaner of compacted topics. Profiles from before compaction take the defaults.
    #[serde(default)]
    pub compaction: CompactionSection,
    /// Kernel and device settings the host should have.
    pub kernel: KernelSection,
    /// What `rill tune probe` measured, if it made this profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
}

/// Shard placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSection {
    /// `"all"` (every online CPU), `"physical"` (one hyperthread per physical core, spread over
    /// NUMA nodes), or an explicit list of CPU ids.
    pub cores: CoreSelection,
}

/// Which CPUs run shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CoreSelection {
    /// `"all"` or `"physical"`.
    Policy(CorePolicy),
    /// Explicit CPU ids.
    List(Vec<usize>),
}

/// A core-selection policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorePolicy {
    /// Every online CPU, SMT siblings included.
    All,
    /// One CPU per physical core.
    Physical,
}

/// Memory budgets, per shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySection {
    /// Recent-batch cache shared by the shard's partitions.
    pub cache_bytes_per_shard: u64,
    /// Queued-append buffers of the shard's partitions together. Multiple of 4096.
    pub write_buffer_bytes_per_shard: u64,
    /// Receive and send buffers of the shard's connections together.
    pub connection_buffer_bytes_per_shard: u64,
    /// glommio's registered io_memory per shard (locked memory). Multiple of 4096.
    pub io_memory_bytes_per_shard: u64,
}

/// io_uring settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoSection {
    /// Entries of each shard's io_uring rings.
    pub uring_queue_depth: u32,
    /// Largest single disk read (fetches that miss the cache, scans). Multiple of 4096.
    pub read_chunk_bytes: u64,
    /// Chunks of `read_chunk_bytes` loading ahead of a consumer catching up from disk (0: read
    /// on demand only). Each shard holds at most 64 MiB of them.
    #[serde(default = "default_read_ahead_chunks")]
    pub read_ahead_chunks: u32,
    /// Messages each shard-to-shard channel holds before senders wait.
    pub shard_channel_depth: u32,
}

/// Partition log defaults (topics may override).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Segment size. Multiple of 4096.
    pub segment_bytes: u64,
    /// How long the flusher may wait for more appends before a small write.
    pub group_commit_window_us: u64,
    /// `"always"`, `"never"` or `"interval:<ms>"`.
    pub durability: String,
    /// Largest batch accepted.
    pub batch_bytes_max: u64,
    /// Bytes between sparse index entries.
    pub index_interval_bytes: u64,
    /// How often each shard applies retention to its logs.
    pub retention_check_interval_ms: u64,
    /// How often each log writes its recovery point (what fdatasync covered) while appends
    /// go on, besides at close and after a truncation (Kafka's
    /// `log.flush.offset.checkpoint.interval.ms`); recovery after a crash re-reads at most what
    /// was written since. Absent from older profile files: 60,000.
    #[serde(default = "default_recovery_checkpoint_interval_ms")]
    pub recovery_checkpoint_interval_ms: u64,
}

fn default_recovery_checkpoint_interval_ms() -> u64 {
    60_000
}

/// Network settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// SO_SNDBUF of client sockets.
    pub socket_send_buffer_bytes: u64,
    /// SO_RCVBUF of client sockets.
    pub socket_recv_buffer_bytes: u64,
    /// Requests a connection may have in flight before the broker stops reading it.
    pub max_inflight_requests: u32,
    /// Connections per shard before new ones are refused.
    pub max_connections_per_shard: u32,
    /// Largest request frame accepted; a larger one closes its connection.
    pub request_bytes_max: u32,
    /// Largest fetch response built, whatever a client asks for.
    pub fetch_response_bytes_max: u32,
    /// Bytes read from a client socket per read call.
    pub socket_read_chunk_bytes: u32,
    /// Longest long-poll a fetch may ask for; longer waits are cut to this.
    pub fetch_wait_ms_max: u32,
}

/// Node-to-node links: QUIC flow-control windows, datagram sizes, liveness, queues.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Bytes a peer may send on one stream ahead of this node's reader.
    pub stream_window_bytes: u32,
    /// Bytes a peer may send on all streams of a link ahead of this node's reader.
    pub connection_window_bytes: u32,
    /// Bytes this node keeps in flight unacknowledged on a link.
    pub send_window_bytes: u64,
    /// UDP payload of a link's first packets (1,200 to `mtu_max`).
    pub initial_mtu: u16,
    /// Largest UDP payload path-MTU discovery tries (8,952 suits 9,000-byte jumbo frames).
    pub mtu_max: u16,
    /// A link silent this long is lost (its peer is dead or cut off).
    pub idle_timeout_ms: u64,
    /// How often an idle link sends a keep-alive (below `idle_timeout_ms`).
    pub keep_alive_ms: u64,
    /// Send and receive many datagrams per system call (UDP GSO/GRO) where the kernel can.
    pub segmentation_offload: bool,
    /// Bytes of frames queued for one peer before sends that may be dropped are refused.
    pub peer_queue_bytes: u64,
    /// SO_SNDBUF and SO_RCVBUF of the node's UDP socket (the kernel caps them at
    /// `net.core.wmem_max` and `rmem_max`, which `kernel.socket_buffer_max_min` asks for).
    pub socket_buffer_bytes: u64,
}

impl Default for ClusterSection {
    /// Windows for a datacenter network (10 Gb/s with 1 ms of round trip holds 1.25 MB in
    /// flight, so 16 MiB per stream leaves room for 100 Gb/s), discovery up to jumbo frames.
    fn default() -> ClusterSection {
        ClusterSection {
            stream_window_bytes: 16 << 20,
            connection_window_bytes: 64 << 20,
            send_window_bytes: 64 << 20,
            initial_mtu: 1_452,
            mtu_max: 8_952,
            idle_timeout_ms: 3_000,
            keep_alive_ms: 500,
            segmentation_offload: true,
            peer_queue_bytes: 32 << 20,
            socket_buffer_bytes: 4 << 20,
        }
    }
}

/// The log cleaner (Kafka's `log.cleaner.*`): one per shard, cleaning that shard's compacted
/// partitions one at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionSection {
    /// Memory of the key map (latest offset per key) of one cleaning; a log whose dirty part
    /// holds more keys is cleaned in several passes (`log.cleaner.dedupe.buffer.size`).
    pub key_map_bytes_per_shard: u64,
    /// How often a shard looks for partitions to clean (`log.cleaner.backoff.ms`).
    pub check_interval_ms: u64,
    /// Bytes a shard's cleaner rewrites per second at most
    /// (`log.cleaner.io.max.bytes.per.second`); 0: no limit.
    pub bytes_per_second_max: u64,
}

impl Default for CompactionSection {
    fn default() -> CompactionSection {
        CompactionSection {
            key_map_bytes_per_shard: 64 << 20,
            check_interval_ms: 15_000,
            bytes_per_second_max: 0,
        }
    }
}

/// Kernel and device settings the profile wants; `rill tune check` compares the host's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSection {
    /// I/O scheduler of the data disk (`none` for NVMe).
    pub io_scheduler: String,
    /// Minimum `nr_requests` of the data disk's queue.
    pub nr_requests_min: u32,
    /// Transparent huge pages mode (`never` or `madvise`).
    pub transparent_hugepages: String,
    /// Maximum `vm.swappiness`.
    pub swappiness_max: u32,
    /// CPU frequency governor (`performance`).
    pub cpu_governor: String,
    /// Minimum `fs.aio-max-nr`.
    pub aio_max_nr_min: u64,
    /// Minimum locked-memory limit (RLIMIT_MEMLOCK) for io_memory.
    pub memlock_bytes_min: u64,
    /// Minimum `net.core.rmem_max` and `wmem_max`.
    pub socket_buffer_max_min: u64,
}

/// Disk figures from `rill tune probe`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    /// Sequential 1 MiB O_DIRECT writes, MB/s.
    pub seq_write_mb_s: f64,
    /// Sequential 1 MiB O_DIRECT reads, MB/s.
    pub seq_read_mb_s: f64,
    /// Random 4 KiB reads per second, by queue depth.
    pub rand_read_iops: Vec<QueueDepthFigure>,
    /// Random 4 KiB writes per second, by queue depth.
    pub rand_write_iops: Vec<QueueDepthFigure>,
    /// 4 KiB write + fdatasync, median microseconds.
    pub fdatasync_p50_us: u64,
    /// 4 KiB write + fdatasync, 99th percentile microseconds.
    pub fdatasync_p99_us: u64,
    /// What each shard CPU lost while all of them spun at once (absent in older profiles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_stalls: Vec<crate::stalls::CpuStalls>,
}

/// A figure at one queue depth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDepthFigure {
    /// Operations in flight.
    pub queue_depth: u32,
    /// Operations per second.
    pub iops: f64,
}

/// Most read-ahead chunks a profile may ask for (the shard's 64 MiB cap binds long before).
const READ_AHEAD_CHUNKS_MAX: u32 = 64;

fn default_read_ahead_chunks() -> u32 {
    LogConfig::default().read_ahead_chunks as u32
}

/// Most bytes one partition log queues for its next write, whatever the shard's budget.
pub const LOG_WRITE_BUFFER_BYTES_MAX: u64 = 32 << 20;

/// Profiles shipped with Rill, by name.
pub const SHIPPED: [(&str, &str); 2] = [
    ("small-vm", include_str!("../profiles/small-vm.toml")),
    ("nvme-server", include_str!("../profiles/nvme-server.toml")),
];

impl Profile {
    /// Parses a profile from TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile> {
        let profile: Profile = toml::from_str(text)
            .map_err(|e| Error::Parse { origin: origin.to_string(), message: e.to_string() })?;
        profile.check_shape()?;
        Ok(profile)
    }

    /// Loads a shipped profile by name, or a profile file by path.
    pub fn load(name_or_path: &str) -> Result<Profile> {
        if let Some((_, text)) = SHIPPED.iter().find(|(name, _)| *name == name_or_path) {
            return Profile::parse(text, name_or_path);
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            op: "reading profile",
            path: path.to_path_buf(),
            source: e,
        })?;
        Profile::parse(&text, name_or_path)
    }

    /// The profile as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("profiles serialize")
    }

    /// Checks values that must hold on any host: alignment, non-zero sizes, a known durability.
    pub fn check_shape(&self) -> Result<()> {
        let aligned = [
            ("memory.write_buffer_bytes_per_shard", self.memory.write_buffer_bytes_per_shard),
            ("memory.io_memory_bytes_per_shard", self.memory.io_memory_bytes_per_shard),
            ("io.read_chunk_bytes", self.io.read_chunk_bytes),
            ("log.segment_bytes", self.log.segment_bytes),
        ];
        for (field, value) in aligned {
            if value == 0 || value % BLOCK_BYTES as u64 != 0 {
                return Err(field_error(field, format!("{value} is not a non-zero multiple of 4096")));
            }
        }
        let positive = [
            ("memory.cache_bytes_per_shard", self.memory.cache_bytes_per_shard),
            ("memory.connection_buffer_bytes_per_shard", self.memory.connection_buffer_bytes_per_shard),
            ("io.uring_queue_depth", self.io.uring_queue_depth as u64),
            ("log.batch_bytes_max", self.log.batch_bytes_max),
            ("log.index_interval_bytes", self.log.index_interval_bytes),
            ("network.socket_send_buffer_bytes", self.network.socket_send_buffer_bytes),
            ("network.socket_recv_buffer_bytes", self.network.socket_recv_buffer_bytes),
            ("network.max_inflight_requests", self.network.max_inflight_requests as u64),
            ("network.max_connections_per_shard", self.network.max_connections_per_shard as u64),
            ("network.request_bytes_max", self.network.request_bytes_max as u64),
            ("network.fetch_response_bytes_max", self.network.fetch_response_bytes_max as u64),
            ("network.socket_read_chunk_bytes", self.network.socket_read_chunk_bytes as u64),
            ("network.fetch_wait_ms_max", self.network.fetch_wait_ms_max as u64),
            ("io.shard_channel_depth", self.io.shard_channel_depth as u64),
            ("log.retention_check_interval_ms", self.log.retention_check_interval_ms),
            ("log.recovery_checkpoint_interval_ms", self.log.recovery_checkpoint_interval_ms),
            ("cluster.stream_window_bytes", self.cluster.stream_window_bytes as u64),
            ("cluster.connection_window_bytes", self.cluster.connection_window_bytes as u64),
            ("cluster.send_window_bytes", self.cluster.send_window_bytes),
            ("cluster.idle_timeout_ms", self.cluster.idle_timeout_ms),
            ("cluster.keep_alive_ms", self.cluster.keep_alive_ms),
            ("cluster.peer_queue_bytes", self.cluster.peer_queue_bytes),
            ("cluster.socket_buffer_bytes", self.cluster.socket_buffer_bytes),
            ("compaction.key_map_bytes_per_shard", self.compaction.key_map_bytes_per_shard),
            ("compaction.check_interval_ms", self.compaction.check_interval_ms),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(field_error(field, "must be greater than zero".to_string()));
            }
        }
        if self.io.read_ahead_chunks > READ_AHEAD_CHUNKS_MAX {
            return Err(field_error(
                "io.read_ahead_chunks",
                format!("{} is more than {READ_AHEAD_CHUNKS_MAX}", self.io.read_ahead_chunks),
            ));
        }
        if !self.io.uring_queue_depth.is_power_of_two() {
            return Err(field_error("io.uring_queue_depth", "must be a power of two".to_string()));
        }
        self.durability()?;
        if (self.network.request_bytes_max as u64) < self.log.batch_bytes_max + 4096 {
            return Err(field_error(
                "network.request_bytes_max",
                "must hold one batch of log.batch_bytes_max".into(),
            ));
        }
        if (self.memory.connection_buffer_bytes_per_shard) < self.network.request_bytes_max as u64 {
            return Err(field_error(
                "memory.connection_buffer_bytes_per_shard",
                "must hold at least one request of network.request_bytes_max".into(),
            ));
        }
        let cluster = &self.cluster;
        if cluster.initial_mtu < 1_200 || cluster.mtu_max < cluster.initial_mtu {
            return Err(field_error(
                "cluster.initial_mtu",
                format!(
                    "{} must be at least 1200 (QUIC's minimum) and at most cluster.mtu_max ({})",
                    cluster.initial_mtu, cluster.mtu_max
                ),
            ));
        }
        if cluster.keep_alive_ms >= cluster.idle_timeout_ms {
            return Err(field_error(
                "cluster.keep_alive_ms",
                format!(
                    "{} must be below cluster.idle_timeout_ms ({})",
                    cluster.keep_alive_ms, cluster.idle_timeout_ms
                ),
            ));
        }
        if cluster.stream_window_bytes > cluster.connection_window_bytes {
            return Err(field_error(
                "cluster.stream_window_bytes",
                "must not exceed cluster.connection_window_bytes".into(),
            ));
        }
        if let CoreSelection::List(list) = &self.cpu.cores
            && list.is_empty()
        {
            return Err(field_error("cpu.cores", "lists no CPU".to_string()));
        }
        self.log_config().validate().map_err(|e| field_error("log", e.to_string()))?;
        Ok(())
    }

    /// Checks the profile against a host: cores that exist, memory the host has.
    pub fn check_host(&self, host: &HostFacts) -> Result<()> {
        self.check_shape()?;
        let cores = self.shard_cores(host)?;
        let per_shard = self.memory.cache_bytes_per_shard
            + self.memory.write_buffer_bytes_per_shard
            + self.memory.connection_buffer_bytes_per_shard
            + self.memory.io_memory_bytes_per_shard;
        let total = per_shard.saturating_mul(cores.len() as u64);
        if total > host.memory_bytes {
            return Err(field_error(
                "memory",
                format!(
                    "{} shards x {per_shard} bytes = {total} bytes, more than the host's {} bytes",
                    cores.len(),
                    host.memory_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The CPUs that run shards on `host`, in order.
    pub fn shard_cores(&self, host: &HostFacts) -> Result<Vec<usize>> {
        let topology = &host.topology;
        match &self.cpu.cores {
            CoreSelection::Policy(CorePolicy::All) => Ok(topology.online()),
            CoreSelection::Policy(CorePolicy::Physical) => Ok(topology.one_per_physical_core()),
            CoreSelection::List(list) => {
                let online = topology.online();
                if let Some(missing) = list.iter().find(|c| !online.contains(c)) {
                    return Err(field_error(
                        "cpu.cores",
                        format!(
                            "CPU {missing} is not online on this host (online: {})",
                            format_cpus(&online)
                        ),
                    ));
                }
                let mut seen = list.clone();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() != list.len() {
                    return Err(field_error("cpu.cores", "lists a CPU twice".to_string()));
                }
                Ok(list.clone())
            }
        }
    }

    /// The durability policy named in `log.durability`.
    pub fn durability(&self) -> Result<Durability> {
        parse_durability(&self.log.durability).map_err(|m| field_error("log.durability", m))
    }

    /// Log defaults for one partition on a shard that holds `partitions` partitions.
    pub fn log_config_for(&self, partitions: u64) -> LogConfig {
        let partitions = partitions.max(1);
        let block = BLOCK_BYTES as u64;
        let entry_max = self.log.batch_bytes_max + rill_storage::ENTRY_HEADER_BYTES as u64;
        // A shard's write budget is shared by its partitions, but one log never queues more than
        // LOG_WRITE_BUFFER_BYTES_MAX: larger writes only add latency and page faults.
        let share = (self.memory.write_buffer_bytes_per_shard / partitions).min(LOG_WRITE_BUFFER_BYTES_MAX);
        let write_buffer = (share / block * block).max(entry_max.next_multiple_of(block));
        LogConfig {
            segment_size_bytes_max: self.log.segment_bytes,
            durability: self.durability().unwrap_or(Durability::Always),
            batch_bytes_max: self.log.batch_bytes_max.min(u32::MAX as u64) as u32,
            write_buffer_bytes_max: write_buffer as usize,
            cache_bytes_max: (self.memory.cache_bytes_per_shard / partitions) as usize,
            index_interval_bytes: self.log.index_interval_bytes.min(u32::MAX as u64) as u32,
            read_chunk_bytes: self.io.read_chunk_bytes as usize,
            read_ahead_chunks: self.io.read_ahead_chunks as usize,
            group_commit_window_us: self.log.group_commit_window_us,
            recovery_checkpoint_interval_ms: self.log.recovery_checkpoint_interval_ms,
            ..LogConfig::default()
        }
    }

    /// Log defaults for a shard's single partition.
    pub fn log_config(&self) -> LogConfig {
        self.log_config_for(1)
    }

    /// A profile derived from the host: every online physical core (all CPUs on small hosts),
    /// memory budgets scaled to the host's memory, NVMe-style kernel wishes.
    pub fn derive(host: &HostFacts) -> Profile {
        let physical = host.topology.one_per_physical_core();
        let small = host.topology.online().len() <= 4;
        let cores = if small { CorePolicy::All } else { CorePolicy::Physical };
        let shards = if small { host.topology.online().len() } else { physical.len() }.max(1) as u64;
        // Leave half the memory to the kernel and everything else; split the rest per shard.
        let per_shard = host.memory_bytes / 2 / shards;
        let mib = 1u64 << 20;
        // The cache fills with fresh memory first, and every fresh page costs a fault on the
        // append path; a modest cache reaches steady state (reusing freed memory) quickly.
        let cache = (per_shard / 16).clamp(64 * mib, 1 << 30) / mib * mib;
        let write = (per_shard / 8).clamp(16 * mib, 256 * mib) / mib * mib;
        let conn = (per_shard / 16).clamp(8 * mib, 256 * mib) / mib * mib;
        let base = if small { Profile::shipped("small-vm") } else { Profile::shipped("nvme-server") };
        Profile {
            name: format!("derived from {}", host.hostname),
            cpu: CpuSection { cores: CoreSelection::Policy(cores) },
            memory: MemorySection {
                cache_bytes_per_shard: cache,
                write_buffer_bytes_per_shard: write,
                connection_buffer_bytes_per_shard: conn,
                io_memory_bytes_per_shard: base.memory.io_memory_bytes_per_shard,
            },
            measured: None,
            ..base
        }
    }

    /// A shipped profile by name; panics on an unknown name (programmer error).
    pub fn shipped(name: &str) -> Profile {
        let (_, text) = SHIPPED.iter().find(|(n, _)| *n == name).expect("known shipped profile");
        Profile::parse(text, name).expect("shipped profiles are valid")
    }
}

/// Parses `always`, `never` or `interval:<ms>`.
pub fn parse_durability(s: &str) -> std::result::Result<Durability, String> {
    match s {
        "always" => Ok(Durability::Always),
        "never" => Ok(Durability::Never),
        _ => s
            .strip_prefix("interval:")
            .and_then(|ms| ms.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Durability::IntervalMs)
            .ok_or_else(|| format!("expected always, never or interval:<ms>, got {s:?}")),
    }
}

fn field_error(field: &'static str, reason: String) -> Error {
    Error::Field { field, reason }
}

fn format_cpus(cpus: &[usize]) -> String {
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

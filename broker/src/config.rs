//! Broker configuration: a TOML file and flags, over an embedded single-node default.

pub use crate::partition::group::OffsetsRetention;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rill_tuning::{HostFacts, Profile};
use serde::Deserialize;

use crate::error::{BrokerError, Result};

/// The embedded default: a single node on localhost with data under `./data`.
pub const DEFAULT_CONFIG: &str = r#"
# Rill broker configuration (embedded default).
data_dir = "./data"
native_listen = "127.0.0.1:9300"
kafka_listen = "127.0.0.1:9092"
# The admin HTTP listener: GET /metrics (Prometheus), /v1/status/ready, /v1/status/live.
admin_listen = "127.0.0.1:9644"
# One series per partition in /metrics (max offset, log start, log size, group offsets and
# lag); false aggregates them by topic, for nodes with very many partitions.
# metrics_per_partition = true
# The address Kafka clients are told to connect to (Metadata, FindCoordinator); default: the
# Kafka listen address (with the bound port when the listen port is 0).
# kafka_advertised = "broker1.example.com:9092"
# A shipped profile name (small-vm, nvme-server) or a profile file; absent: derived from the host.
# profile = "small-vm"
# Override the profile's shard CPUs.
# cores = [0, 1]
# Create a topic when a Kafka client asks for its metadata and allows it (a producer's first
# send), as Kafka's auto.create.topics.enable does; off, as in Redpanda: unknown topics are errors.
# auto_create_topics = false
# Partitions of an auto-created topic (Kafka's num.partitions).
# default_partitions = 1
# Committed offsets of a consumer group without members expire this long after both their
# commit and the group's emptying (Kafka's offsets.retention.minutes: 7 days), checked this often.
# offsets_retention_ms = 604800000
# offsets_retention_check_interval_ms = 600000
# Cluster mode (all four together; without them the node is a cluster of one). This node's id,
# its QUIC address for the other nodes, the initial members as id@host:port (this node
# included), and the directory holding ca.pem, node-<id>.pem and node-<id>.key (made by
# `rill cluster ca init` and `rill cluster cert issue`).
# node_id = 1
# cluster_listen = "10.0.0.1:9500"
# seeds = ["1@10.0.0.1:9500", "2@10.0.0.2:9500", "3@10.0.0.3:9500"]
# cluster_tls_dir = "./cluster-tls"
# A node added to a running cluster (`rill cluster add-node --node-id N` first) starts with
# join = true and an id above every seed's; it gets the cluster's metadata from the controller.
# join = false
"#;

/// The file form of the configuration; every field optional over the default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Native protocol listen address.
    pub native_listen: Option<String>,
    /// Kafka protocol listen address.
    pub kafka_listen: Option<String>,
    /// Kafka address advertised to clients, `host:port`.
    pub kafka_advertised: Option<String>,
    /// Admin HTTP listen address (metrics, health).
    pub admin_listen: Option<String>,
    /// Per-partition metric series (else aggregated by topic).
    pub metrics_per_partition: Option<bool>,
    /// Profile name or path.
    pub profile: Option<String>,
    /// Shard CPUs.
    pub cores: Option<Vec<usize>>,
    /// Create unknown topics on a Kafka client's metadata request that allows it.
    pub auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic.
    pub default_partitions: Option<u32>,
    /// Offset retention of groups without members, ms.
    pub offsets_retention_ms: Option<u64>,
    /// How often expired offsets are looked for, ms.
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// This node's id (cluster mode).
    pub node_id: Option<u32>,
    /// The QUIC address other nodes reach this one at.
    pub cluster_listen: Option<String>,
    /// The initial members, `id@host:port`.
    pub seeds: Option<Vec<String>>,
    /// Directory of the cluster CA certificate and this node's certificate and key.
    pub cluster_tls_dir: Option<PathBuf>,
    /// Join an existing cluster (after `rill cluster add-node`) instead of forming a new one.
    pub join: Option<bool>,
}

/// The resolved configuration the broker runs with.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Data directory (metadata and topic logs).
    pub data_dir: PathBuf,
    /// Native protocol listen address; every shard binds it with SO_REUSEPORT.
    pub native_listen: SocketAddr,
    /// Kafka protocol listen address; every shard binds it with SO_REUSEPORT.
    pub kafka_listen: SocketAddr,
    /// Host and port Kafka clients are told to use; `None`: the bound Kafka address.
    pub kafka_advertised: Option<(String, u16)>,
    /// The admin HTTP listener (metrics, health); bound by shard 0 alone.
    pub admin_listen: SocketAddr,
    /// One metric series per partition (else per topic).
    pub metrics_per_partition: bool,
    /// Tuning profile.
    pub profile: Profile,
    /// CPUs running shards, in shard order.
    pub cores: Vec<usize>,
    /// With auto-creation on: the partitions of an auto-created topic.
    pub auto_create_partitions: Option<u32>,
    /// Offset retention of groups without members, and the check interval.
    pub offsets_retention: OffsetsRetention,
    /// Cluster mode; `None`: the embedded single node (a cluster of one, node 0).
    pub cluster: Option<ClusterConfig>,
}

/// A node's cluster settings.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id.
    pub node_id: u32,
    /// Where this node's QUIC endpoint listens.
    pub listen: SocketAddr,
    /// The initial members (this node included), by id.
    pub seeds: std::collections::BTreeMap<u32, SocketAddr>,
    /// The directory of `ca.pem`, `node-<id>.pem` and `node-<id>.key`.
    pub tls_dir: PathBuf,
    /// Join an existing cluster: start with no voters and wait for the controller.
    pub join: bool,
}

impl ConfigFile {
    /// Parses a configuration file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ConfigFile> {
        toml::from_str(text).map_err(|e| BrokerError::Config(format!("{origin}: {e}")))
    }

    /// Reads a configuration file.
    pub fn read(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BrokerError::Config(format!("reading {}: {e}", path.display())))?;
        ConfigFile::parse(&text, &path.display().to_string())
    }

    /// Fields set in `other` win.
    pub fn overlay(self, other: ConfigFile) -> ConfigFile {
        ConfigFile {
            data_dir: other.data_dir.or(self.data_dir),
            native_listen: other.native_listen.or(self.native_listen),
            kafka_listen: other.kafka_listen.or(self.kafka_listen),
            kafka_advertised: other.kafka_advertised.or(self.kafka_advertised),
            admin_listen: other.admin_listen.or(self.admin_listen),
            metrics_per_partition: other.metrics_per_partition.or(self.metrics_per_partition),
            profile: other.profile.or(self.profile),
            cores: other.cores.or(self.cores),
            auto_create_topics: other.auto_create_topics.or(self.auto_create_topics),
            default_partitions: other.default_partitions.or(self.default_partitions),
            offsets_retention_ms: other.offsets_retention_ms.or(self.offsets_retention_ms),
            offsets_retention_check_interval_ms: other
                .offsets_retention_check_interval_ms
                .or(self.offsets_retention_check_interval_ms),
            node_id: other.node_id.or(self.node_id),
            cluster_listen: other.cluster_listen.or(self.cluster_listen),
            seeds: other.seeds.or(self.seeds),
            cluster_tls_dir: other.cluster_tls_dir.or(self.cluster_tls_dir),
            join: other.join.or(self.join),
        }
    }

    /// Resolves against the embedded default and the host: the profile is loaded (or derived)
    /// and checked against the host, the address parsed, the cores checked.
    pub fn resolve(self, host: &HostFacts) -> Result<BrokerConfig> {
        let file = ConfigFile::parse(DEFAULT_CONFIG, "embedded default")?.overlay(self);
        let cluster = cluster_config(&file)?;
        let listen = file.native_listen.expect("the default sets it");
        let native_listen = listen
            .parse()
            .map_err(|_| BrokerError::Config(format!("native_listen: {listen:?} is not an address:port")))?;
        let listen = file.kafka_listen.expect("the default sets it");
        let kafka_listen = listen
            .parse()
            .map_err(|_| BrokerError::Config(format!("kafka_listen: {listen:?} is not an address:port")))?;
        let listen = file.admin_listen.clone().expect("the default sets it");
        let admin_listen = listen
            .parse()
            .map_err(|_| BrokerError::Config(format!("admin_listen: {listen:?} is not an address:port")))?;
        let kafka_advertised = match file.kafka_advertised {
            None => None,
            Some(text) => Some(parse_host_port(&text).ok_or_else(|| {
                BrokerError::Config(format!(
                    "kafka_advertised: {text:?} is not host:port with a port above 0"
                ))
            })?),
        };
        let mut profile = match &file.profile {
            Some(name) => Profile::load(name).map_err(|e| BrokerError::Config(e.to_string()))?,
            None => Profile::derive(host),
        };
        if let Some(cores) = file.cores {
            profile.cpu.cores = rill_tuning::CoreSelection::List(cores);
        }
        profile.check_host(host).map_err(|e| BrokerError::Config(e.to_string()))?;
        let cores = profile.shard_cores(host).map_err(|e| BrokerError::Config(e.to_string()))?;
        let partitions = file.default_partitions.unwrap_or(1);
        if !(1..=crate::cluster::metadata::PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(BrokerError::Config(format!(
                "default_partitions: {partitions} is not between 1 and {}",
                crate::cluster::metadata::PARTITIONS_PER_TOPIC_MAX
            )));
        }
        let defaults = OffsetsRetention::default();
        let offsets_retention = OffsetsRetention {
            retention_ms: file.offsets_retention_ms.unwrap_or(defaults.retention_ms),
            check_interval_ms: file.offsets_retention_check_interval_ms.unwrap_or(defaults.check_interval_ms),
        };
        for (field, value) in [
            ("offsets_retention_ms", offsets_retention.retention_ms),
            ("offsets_retention_check_interval_ms", offsets_retention.check_interval_ms),
        ] {
            if !(1..=i64::MAX as u64).contains(&value) {
                return Err(BrokerError::Config(format!("{field}: {value} must be above 0")));
            }
        }
        Ok(BrokerConfig {
            cluster,
            offsets_retention,
            auto_create_partitions: file.auto_create_topics.unwrap_or(false).then_some(partitions),
            data_dir: file.data_dir.expect("the default sets it"),
            native_listen,
            kafka_listen,
            kafka_advertised,
            admin_listen,
            metrics_per_partition: file.metrics_per_partition.unwrap_or(true),
            profile,
            cores,
        })
    }
}

/// `host:port` with a non-empty host and a port above 0.
fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port > 0).then(|| (host.to_string(), port))
}

fn cluster_config(file: &ConfigFile) -> Result<Option<ClusterConfig>> {
    let bad = |m: String| BrokerError::Config(m);
    let (node_id, listen, seeds, tls_dir) =
        match (&file.node_id, &file.cluster_listen, &file.seeds, &file.cluster_tls_dir) {
            (None, None, None, None) => return Ok(None),
            (Some(n), Some(l), Some(s), Some(t)) => (*n, l, s, t),
            _ => return Err(bad("node_id, cluster_listen, seeds and cluster_tls_dir go together".into())),
        };
    if node_id >= i32::MAX as u32 {
        return Err(bad(format!("node_id: {node_id} is not a Kafka broker id")));
    }
    let listen: SocketAddr =
        listen.parse().map_err(|_| bad(format!("cluster_listen: {listen:?} is not an address:port")))?;
    let mut members = std::collections::BTreeMap::new();
    for seed in seeds {
        let parsed = seed
            .split_once('@')
            .and_then(|(id, addr)| Some((id.parse::<u32>().ok()?, addr.parse::<SocketAddr>().ok()?)));
        let (id, addr) = parsed.ok_or_else(|| bad(format!("seeds: {seed:?} is not id@address:port")))?;
        if members.insert(id, addr).is_some() {
            return Err(bad(format!("seeds: node {id} appears twice")));
        }
    }
    if !members.contains_key(&node_id) {
        return Err(bad(format!("seeds: they must include this node ({node_id})")));
    }
    let join = file.join.unwrap_or(false);
    if join && members.keys().any(|&id| id > node_id) {
        return Err(bad(format!(
            "join: a joining node dials the members, so its id ({node_id}) must be above every seed's"
        )));
    }
    Ok(Some(ClusterConfig { node_id, listen, seeds: members, tls_dir: tls_dir.clone(), join }))
}

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
    /// Tuning profile.
    pub profile: Profile,
    /// CPUs running shards, in shard order.
    pub cores: Vec<usize>,
    /// With auto-creation on: the partitions of an auto-created topic.
    pub auto_create_partitions: Option<u32>,
    /// Offset retention of groups without members, and the check interval.
    pub offsets_retention: OffsetsRetention,
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
            profile: other.profile.or(self.profile),
            cores: other.cores.or(self.cores),
            auto_create_topics: other.auto_create_topics.or(self.auto_create_topics),
            default_partitions: other.default_partitions.or(self.default_partitions),
            offsets_retention_ms: other.offsets_retention_ms.or(self.offsets_retention_ms),
            offsets_retention_check_interval_ms: other
                .offsets_retention_check_interval_ms
                .or(self.offsets_retention_check_interval_ms),
        }
    }

    /// Resolves against the embedded default and the host: the profile is loaded (or derived)
    /// and checked against the host, the address parsed, the cores checked.
    pub fn resolve(self, host: &HostFacts) -> Result<BrokerConfig> {
        let file = ConfigFile::parse(DEFAULT_CONFIG, "embedded default")?.overlay(self);
        let listen = file.native_listen.expect("the default sets it");
        let native_listen = listen
            .parse()
            .map_err(|_| BrokerError::Config(format!("native_listen: {listen:?} is not an address:port")))?;
        let listen = file.kafka_listen.expect("the default sets it");
        let kafka_listen = listen
            .parse()
            .map_err(|_| BrokerError::Config(format!("kafka_listen: {listen:?} is not an address:port")))?;
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
            offsets_retention,
            auto_create_partitions: file.auto_create_topics.unwrap_or(false).then_some(partitions),
            data_dir: file.data_dir.expect("the default sets it"),
            native_listen,
            kafka_listen,
            kafka_advertised,
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

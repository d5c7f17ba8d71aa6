//! Topics, their settings, and the shard table, persisted crash-safely.
//!
//! `Metadata` is plain data with sans-I/O operations (create, delete, add partitions, adapt to a
//! new shard count); `MetadataStore` reads and writes it as `metadata.toml` in the data
//! directory with write-to-temp, fsync, rename, fsync-directory, so a crash leaves either the
//! old or the new file, never a torn one. Partitions are placed on the shard with the fewest
//! partitions when created, and keep their shard across restarts.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of metadata operations.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The name breaks Kafka's topic-name rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A topic of that name exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// No topic of that name.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// A partition count that cannot be used.
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    /// The file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid metadata.
    #[error("metadata file {path} is damaged: {message}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// Most partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 100_000;
/// Longest topic name (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// A topic name that follows Kafka's rules: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or
/// `..` (which would be directory names).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(String);

impl TopicName {
    /// Validates a name.
    pub fn new(name: &str) -> Result<TopicName, MetadataError> {
        let invalid = |reason| MetadataError::InvalidName { name: name.to_string(), reason };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.len() > TOPIC_NAME_BYTES_MAX {
            return Err(invalid("longer than 249 characters"));
        }
        if name == "." || name == ".." {
            return Err(invalid("'.' and '..' are not allowed"));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
            return Err(invalid("only ASCII letters, digits, '.', '_' and '-' are allowed"));
        }
        Ok(TopicName(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TopicName {
    type Error = MetadataError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TopicName::new(&s)
    }
}

impl From<TopicName> for String {
    fn from(n: TopicName) -> String {
        n.0
    }
}

/// Per-topic settings; `None` takes the broker default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    /// Segment size.
    pub segment_bytes: Option<u64>,
    /// Retention by age; [`UNLIMITED`] keeps everything (Kafka's -1), `None` is the default.
    pub retention_ms: Option<u64>,
    /// Retention by size, per partition; [`UNLIMITED`] and `None` as for `retention_ms`.
    pub retention_bytes: Option<u64>,
    /// `always`, `never` or `interval:<ms>`.
    pub durability: Option<String>,
    /// Every other Kafka topic config set on the topic, by name, validated and normalised
    /// against the catalogue (`topic_config::catalogue`); what Rill enforces is read from here
    /// where it acts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, String>,
}

/// A retention setting that keeps everything (Kafka's `-1`). `i64::MAX`, as the metadata file
/// (TOML) holds signed 64-bit integers.
pub const UNLIMITED: u64 = rill_net::message::RETENTION_UNLIMITED;

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// The shard owning each partition, by partition index (on this node, for the partitions
    /// it holds a replica of).
    pub shards: Vec<u32>,
    /// Settings.
    pub settings: TopicSettings,
    /// The nodes holding each partition's replicas, leader first; empty when this node holds
    /// every partition (a single node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Vec<u32>>,
    /// Each replicated partition's leader as its group last reported it (node `u32::MAX`: none
    /// reported yet, the first replica is taken); may be shorter than `replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaders: Vec<PartitionLeader>,
}

/// A replicated partition's leader as its group reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLeader {
    /// The leading node.
    pub node: u32,
    /// The leader epoch (the group's Raft term).
    pub epoch: u64,
    /// The replicas in sync as the leader sees them (itself and the followers it heard from
    /// within the election timeout), Kafka's ISR.
    pub isr: Vec<u32>,
}

/// The node's topics and shard table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Shards the table was made for.
    pub shard_count: u32,
    /// The metadata group's index this view was taken at (0 before the group existed): at
    /// start-up the node adopts the group's view only once the group has reached it, so a
    /// group that has not yet replayed its log never makes the node drop a topic it has.
    #[serde(default)]
    pub applied_index: u64,
    /// This node's id (0 for a single node).
    #[serde(default)]
    pub node: u32,
    /// Every node's Kafka address (`host:port`) by id; empty for a single node, which
    /// advertises its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<u32, String>,
    /// Topics by name.
    pub topics: BTreeMap<TopicName, Topic>,
}

impl Metadata {
    /// Whether two views place the same topics the same way and know the same nodes (whatever
    /// their index).
    pub fn same_placement(&self, other: &Metadata) -> bool {
        self.shard_count == other.shard_count
            && self.topics == other.topics
            && self.node == other.node
            && self.nodes == other.nodes
    }

    /// Whether this node holds a replica of `partition` of `topic`.
    pub fn is_local(&self, topic: &Topic, partition: u32) -> bool {
        topic.replicas.get(partition as usize).is_none_or(|r| r.contains(&self.node))
    }

    /// The node leading `partition` of `topic`: the one its group last reported, else its first
    /// replica (this node on a single node).
    pub fn leader(&self, topic: &Topic, partition: u32) -> u32 {
        match topic.leaders.get(partition as usize) {
            Some(l) if l.node != u32::MAX => l.node,
            _ => topic.replicas.get(partition as usize).and_then(|r| r.first().copied()).unwrap_or(self.node),
        }
    }

    /// The leader epoch of `partition` of `topic` as last reported (0 before any report, and on
    /// partitions that are not replicated).
    pub fn leader_epoch(&self, topic: &Topic, partition: u32) -> u64 {
        topic.leaders.get(partition as usize).filter(|l| l.node != u32::MAX).map_or(0, |l| l.epoch)
    }

    /// The in-sync replicas of `partition` of `topic` as its leader last reported them (the
    /// leader alone before any report, and on partitions that are not replicated).
    pub fn in_sync_replicas(&self, topic: &Topic, partition: u32) -> Vec<u32> {
        match topic.leaders.get(partition as usize) {
            Some(l) if l.node != u32::MAX && !l.isr.is_empty() => l.isr.clone(),
            _ => vec![self.leader(topic, partition)],
        }
    }

    /// Whether `partition` of `topic` has more than one replica (a Raft group serves it).
    pub fn is_replicated(&self, topic: &Topic, partition: u32) -> bool {
        topic.replicas.get(partition as usize).is_some_and(|r| r.len() > 1)
    }

    /// Whether a topic of this name exists (an invalid name never does).
    pub fn has_topic(&self, name: &str) -> bool {
        TopicName::new(name).is_ok_and(|n| self.topics.contains_key(&n))
    }

    /// Empty metadata for `shard_count` shards.
    pub fn new(shard_count: u32) -> Metadata {
        assert!(shard_count > 0, "a broker has at least one shard");
        Metadata { shard_count, applied_index: 0, node: 0, nodes: BTreeMap::new(), topics: BTreeMap::new() }
    }

    /// Partitions per shard.
    pub fn load_per_shard(&self) -> Vec<u64> {
        let mut load = vec![0u64; self.shard_count as usize];
        for topic in self.topics.values() {
            for &shard in &topic.shards {
                load[shard as usize] += 1;
            }
        }
        load
    }

    fn least_loaded(load: &[u64]) -> u32 {
        let (shard, _) = load.iter().enumerate().min_by_key(|(i, l)| (**l, *i)).expect("shards exist");
        shard as u32
    }

    /// Creates a topic, placing each partition on the least-loaded shard.
    pub fn create_topic(
        &mut self,
        name: TopicName,
        partitions: u32,
        settings: TopicSettings,
    ) -> Result<&Topic, MetadataError> {
        check_partitions(partitions)?;
        if self.topics.contains_key(&name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        let mut load = self.load_per_shard();
        let shards = (0..partitions)
            .map(|_| {
                let shard = Metadata::least_loaded(&load);
                load[shard as usize] += 1;
                shard
            })
            .collect();
        Ok(self.topics.entry(name).or_insert(Topic {
            shards,
            settings,
            replicas: Vec::new(),
            leaders: Vec::new(),
        }))
    }

    /// Replaces a topic's settings (partitions and placement stay).
    pub fn alter_topic(
        &mut self,
        name: &TopicName,
        settings: TopicSettings,
    ) -> Result<&Topic, MetadataError> {
        let topic = self.topics.get_mut(name).ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        topic.settings = settings;
        Ok(topic)
    }

    /// Deletes a topic; returns it.
    pub fn delete_topic(&mut self, name: &TopicName) -> Result<Topic, MetadataError> {
        self.topics.remove(name).ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))
    }

    /// Grows a topic to `total` partitions (never shrinks, as in Kafka).
    pub fn add_partitions(&mut self, name: &TopicName, total: u32) -> Result<&Topic, MetadataError> {
        check_partitions(total)?;
        let mut load = self.load_per_shard();
        let topic = self.topics.get_mut(name).ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        if total <= topic.shards.len() as u32 {
            return Err(MetadataError::InvalidPartitions(format!(
                "topic {name} has {} partitions; the new count must be larger",
                topic.shards.len()
            )));
        }
        while topic.shards.len() < total as usize {
            let shard = Metadata::least_loaded(&load);
            load[shard as usize] += 1;
            topic.shards.push(shard);
        }
        Ok(topic)
    }

    /// Adapts the table to a broker now running `shard_count` shards: partitions on shards that
    /// still exist stay; the others move to the least-loaded shards. Returns how many moved.
    pub fn adapt_to_shards(&mut self, shard_count: u32) -> usize {
        assert!(shard_count > 0, "a broker has at least one shard");
        self.shard_count = shard_count;
        let mut load = vec![0u64; shard_count as usize];
        for topic in self.topics.values() {
            for &s in topic.shards.iter().filter(|s| **s < shard_count) {
                load[s as usize] += 1;
            }
        }
        let mut moved = 0;
        for topic in self.topics.values_mut() {
            for shard in topic.shards.iter_mut().filter(|s| **s >= shard_count) {
                *shard = Metadata::least_loaded(&load);
                load[*shard as usize] += 1;
                moved += 1;
            }
        }
        moved
    }

    /// The directory of a partition's log under the data directory.
    pub fn partition_dir(data_dir: &Path, topic: &TopicName, partition: u32) -> PathBuf {
        data_dir.join("topics").join(topic.as_str()).join(partition.to_string())
    }
}

fn check_partitions(n: u32) -> Result<(), MetadataError> {
    if n == 0 || n > PARTITIONS_PER_TOPIC_MAX {
        return Err(MetadataError::InvalidPartitions(format!(
            "{n} is not between 1 and {PARTITIONS_PER_TOPIC_MAX}"
        )));
    }
    Ok(())
}

/// `metadata.toml` in the data directory.
#[derive(Clone, Debug)]
pub struct MetadataStore {
    path: PathBuf,
}

impl MetadataStore {
    /// The store of the data directory `dir`.
    pub fn new(dir: &Path) -> MetadataStore {
        MetadataStore { path: dir.join("metadata.toml") }
    }

    /// Reads the metadata, or `None` if the file does not exist (a new node).
    pub fn load(&self) -> Result<Option<Metadata>, MetadataError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(MetadataError::Io { op: "reading", path: self.path.clone(), source: e }),
        };
        let damaged = |message: String| MetadataError::Damaged { path: self.path.clone(), message };
        let metadata: Metadata = toml::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        if metadata.shard_count == 0 {
            return Err(damaged("shard_count is 0".into()));
        }
        for (name, topic) in &metadata.topics {
            if topic.shards.iter().any(|s| *s >= metadata.shard_count) {
                return Err(damaged(format!("topic {name} names a shard beyond shard_count")));
            }
            check_partitions(topic.shards.len() as u32).map_err(|e| damaged(format!("topic {name}: {e}")))?;
        }
        Ok(Some(metadata))
    }

    /// Writes the metadata crash-safely: temp file, fsync, rename, fsync of the directory.
    /// Blocking: call it from a blocking thread, not a reactor.
    pub fn save(&self, metadata: &Metadata) -> Result<(), MetadataError> {
        use std::io::Write;
        let io = |op, e| MetadataError::Io { op, path: self.path.clone(), source: e };
        let dir = self.path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).map_err(|e| io("creating directory for", e))?;
        let tmp = self.path.with_extension("toml.tmp");
        let text = format!(
            "# Rill node metadata: topics and the shard table. Written by the broker; edit only while it is stopped.\n{}",
            toml::to_string_pretty(metadata).expect("metadata serializes")
        );
        let mut file = std::fs::File::create(&tmp).map_err(|e| io("creating", e))?;
        file.write_all(text.as_bytes()).map_err(|e| io("writing", e))?;
        file.sync_all().map_err(|e| io("syncing", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io("renaming", e))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing directory of", e))?;
        Ok(())
    }
}

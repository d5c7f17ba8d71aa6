//! Load-generator workloads, in the spirit of the OpenMessaging Benchmark: topics, partitions,
//! producers, consumers, message and batch sizes, rate, duration, acks, key distribution.
//! A workload is a TOML file (see `perf/workloads/`) or flags; flags override the file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How producers spread batches over partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Keys {
    /// No keys: each producer cycles through partitions batch by batch.
    None,
    /// A random key per batch: a random partition.
    Random,
    /// Keys taken in turn: partitions in turn across all producers.
    RoundRobin,
}

/// A workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Name shown in reports.
    pub name: String,
    /// Topics, named `<topic_prefix>-<i>`; recreated at the start.
    pub topics: u32,
    /// Partitions per topic.
    pub partitions_per_topic: u32,
    /// Replicas per partition (0: the broker's default; more than 1 needs a cluster).
    pub replication_factor: u32,
    /// Use the topics as they are instead of recreating them (made beforehand, e.g. on a
    /// cluster, with the broker pointed at their leader).
    pub existing_topics: bool,
    /// Topic name prefix.
    pub topic_prefix: String,
    /// Durability policy of the created topics: always, never, interval:<ms>.
    pub topic_durability: String,
    /// Producer connections.
    pub producers: u32,
    /// Consumer connections (0: produce only).
    pub consumers: u32,
    /// Bytes per message.
    pub message_bytes: u32,
    /// Bytes per batch (messages per batch = batch_bytes / message_bytes).
    pub batch_bytes: u32,
    /// With a target rate, a partial batch is sent after this long (fractions allowed, as in
    /// librdkafka's `linger.ms`).
    pub linger_ms: f64,
    /// Target messages per second over all producers; 0 = as fast as possible.
    pub rate_msgs_per_s: u64,
    /// Produce requests each producer keeps in flight.
    pub inflight_per_producer: u32,
    /// `durable`, `leader` or `none`.
    pub acks: String,
    /// Partition choice.
    pub keys: Keys,
    /// Seconds of load before measuring.
    pub warmup_s: u64,
    /// Seconds measured.
    pub duration_s: u64,
    /// Stop measuring after this many bytes instead (0: use the duration).
    pub total_bytes: u64,
    /// After the run, read everything produced again from the earliest offset and report the
    /// catch-up read throughput (consumers that fell behind, or replay).
    pub consume_backlog: bool,
    /// Consumers join one consumer group (native protocol) and share the partitions through
    /// it, instead of taking fixed partitions.
    pub consumer_group: bool,
    /// With a consumer group: this many seconds into the measured window one consumer leaves,
    /// and the time until all its partitions are owned again is reported (0: nobody leaves).
    pub rebalance_at_s: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            name: "default".into(),
            topics: 1,
            partitions_per_topic: 1,
            replication_factor: 0,
            existing_topics: false,
            topic_prefix: "bench".into(),
            topic_durability: "always".into(),
            producers: 1,
            consumers: 1,
            message_bytes: 1000,
            batch_bytes: 1 << 20,
            linger_ms: 5.0,
            rate_msgs_per_s: 0,
            inflight_per_producer: 4,
            acks: "durable".into(),
            keys: Keys::None,
            warmup_s: 2,
            duration_s: 10,
            total_bytes: 0,
            consume_backlog: false,
            consumer_group: false,
            rebalance_at_s: 0.0,
        }
    }
}

/// Flags of `rill bench`; each set flag overrides the workload file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct WorkloadArgs {
    /// Workload TOML file (see perf/workloads/).
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Topics.
    #[arg(long)]
    pub topics: Option<u32>,
    /// Topic name prefix (topics are `<prefix>-<i>`).
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Partitions per topic.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Replicas per partition.
    #[arg(long)]
    pub replication_factor: Option<u32>,
    /// Producer connections.
    #[arg(long)]
    pub producers: Option<u32>,
    /// Consumer connections.
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Message size in bytes.
    #[arg(long)]
    pub message_bytes: Option<u32>,
    /// Batch size in bytes.
    #[arg(long)]
    pub batch_bytes: Option<u32>,
    /// Linger in ms, fractions allowed (with a target rate).
    #[arg(long)]
    pub linger_ms: Option<f64>,
    /// Target messages per second (0 = max).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Produce requests in flight per producer.
    #[arg(long)]
    pub inflight: Option<u32>,
    /// durable, leader or none.
    #[arg(long)]
    pub acks: Option<String>,
    /// Durability policy of the bench topics.
    #[arg(long)]
    pub topic_durability: Option<String>,
    /// Partition choice.
    #[arg(long, value_enum)]
    pub keys: Option<Keys>,
    /// Warm-up seconds.
    #[arg(long)]
    pub warmup_s: Option<u64>,
    /// Measured seconds.
    #[arg(long)]
    pub duration_s: Option<u64>,
    /// Measure this many bytes instead of a duration.
    #[arg(long)]
    pub total_bytes: Option<u64>,
    /// Afterwards, re-read everything from the earliest offset and report that throughput.
    #[arg(long)]
    pub consume_backlog: bool,
    /// Consumers share the partitions as one consumer group (native protocol).
    #[arg(long)]
    pub consumer_group: bool,
    /// Use the topics as they are (made beforehand) instead of recreating them.
    #[arg(long)]
    pub existing_topics: bool,
    /// With --consumer-group: one consumer leaves this many seconds into the measured window;
    /// the rebalance time is reported.
    #[arg(long)]
    pub rebalance_at_s: Option<f64>,
}

impl WorkloadArgs {
    /// The workload: file (if any) with flags applied, validated.
    pub fn resolve(&self) -> anyhow::Result<Workload> {
        let mut w = match &self.workload {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
            None => Workload::default(),
        };
        macro_rules! set {
            ($($flag:ident => $field:ident),*) => { $(if let Some(v) = self.$flag.clone() { w.$field = v; })* };
        }
        set!(topics => topics, topic_prefix => topic_prefix, partitions => partitions_per_topic, replication_factor => replication_factor,
            producers => producers, consumers => consumers,
            message_bytes => message_bytes, batch_bytes => batch_bytes, linger_ms => linger_ms, rate => rate_msgs_per_s,
            inflight => inflight_per_producer, acks => acks, topic_durability => topic_durability, keys => keys,
            warmup_s => warmup_s, duration_s => duration_s, total_bytes => total_bytes);
        w.consume_backlog |= self.consume_backlog;
        w.consumer_group |= self.consumer_group;
        w.existing_topics |= self.existing_topics;
        if let Some(at) = self.rebalance_at_s {
            w.rebalance_at_s = at;
        }
        w.validate()?;
        Ok(w)
    }
}

impl Workload {
    /// Refuses impossible workloads with a message naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.topics >= 1, "topics must be at least 1");
        anyhow::ensure!(self.partitions_per_topic >= 1, "partitions_per_topic must be at least 1");
        anyhow::ensure!(self.producers >= 1, "producers must be at least 1");
        anyhow::ensure!(
            self.rebalance_at_s == 0.0
                || (self.consumer_group && self.consumers >= 2 && self.rebalance_at_s > 0.0),
            "rebalance_at_s needs consumer_group and at least 2 consumers"
        );
        anyhow::ensure!(
            self.message_bytes >= 16,
            "message_bytes must be at least 16 (it carries a timestamp)"
        );
        anyhow::ensure!(self.batch_bytes >= self.message_bytes, "batch_bytes must hold at least one message");
        anyhow::ensure!(self.batch_bytes <= 8 << 20, "batch_bytes must be at most 8 MiB");
        anyhow::ensure!(self.inflight_per_producer >= 1, "inflight_per_producer must be at least 1");
        anyhow::ensure!(
            self.linger_ms.is_finite() && (0.0..=60_000.0).contains(&self.linger_ms),
            "linger_ms must be between 0 and 60000"
        );
        anyhow::ensure!(
            ["durable", "leader", "none"].contains(&self.acks.as_str()),
            "acks must be durable, leader or none"
        );
        anyhow::ensure!(
            self.duration_s >= 1 || self.total_bytes > 0,
            "duration_s or total_bytes must be set"
        );
        Ok(())
    }

    /// Messages per batch.
    pub fn batch_messages(&self) -> u32 {
        (self.batch_bytes / self.message_bytes).max(1)
    }

    /// Topic names.
    pub fn topic_names(&self) -> Vec<String> {
        (0..self.topics).map(|i| format!("{}-{i}", self.topic_prefix)).collect()
    }
}

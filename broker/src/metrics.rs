//! Prometheus metrics: counters each shard keeps for itself, merged and written out at scrape
//! time.
//!
//! A shard's [`ShardMetrics`] are plain cells on its own thread (no locks, no atomics on the
//! data path). A scrape of the admin listener asks every shard for a [`ShardSnapshot`] (its
//! counters, the gauges of the partitions it owns and the groups it coordinates, its storage
//! I/O and CPU time) over the shard mesh, and [`render`] writes them in Prometheus' text
//! exposition format. Names follow Redpanda's public metrics with a `rill_` prefix. Label
//! values are escaped, so a topic or group name cannot break the format; client ids are never
//! labels, and topics and groups are bounded by the broker's own limits.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use rill_storage::{Histogram, IoStats, LATENCY_BOUNDS_S};

/// The API families of `rill_kafka_request_latency_seconds`' `request` label.
pub(crate) fn family(api_key: i16) -> &'static str {
    match api_key {
        0 => "produce",
        1 => "consume",
        2 => "list_offsets",
        3 => "metadata",
        8..=16 | 42 | 47 => "group",
        18 => "api_versions",
        19..=21 | 37 | 32 | 33 | 43 | 44 | 46 | 60 => "admin",
        22 => "init_producer_id",
        _ => "other",
    }
}

/// One shard's counters (see the module documentation).
#[derive(Default)]
pub(crate) struct ShardMetrics {
    latency: BTreeMap<&'static str, Histogram>,
    /// Records and bytes produced and fetched, by topic (looked up by `&str`: no allocation
    /// per request once a topic is known).
    topics: HashMap<String, TopicCounters>,
    /// Kafka error codes answered (partition-level for produce and fetch).
    errors: BTreeMap<i16, u64>,
    /// Open connections by protocol.
    connections: BTreeMap<&'static str, i64>,
}

impl ShardMetrics {
    /// A Kafka request of `api_key` took `elapsed`.
    pub fn request(&mut self, api_key: i16, elapsed: Duration) {
        self.latency.entry(family(api_key)).or_default().observe(elapsed);
    }

    /// `records` records in `bytes` bytes were produced to (or fetched from) `topic`.
    pub fn records(&mut self, topic: &str, produced: bool, records: u64, bytes: u64) {
        let counters = match self.topics.get_mut(topic) {
            Some(c) => c,
            None => self.topics.entry(topic.to_string()).or_default(),
        };
        let side = &mut counters.0[usize::from(!produced)];
        side.records += records;
        side.bytes += bytes;
    }

    /// A Kafka error code was answered.
    pub fn error(&mut self, code: i16) {
        if code != 0 {
            *self.errors.entry(code).or_default() += 1;
        }
    }

    /// A connection of `protocol` opened (`+1`) or closed (`-1`).
    pub fn connection(&mut self, protocol: &'static str, change: i64) {
        *self.connections.entry(protocol).or_default() += change;
    }

    /// Forgets the series of topics that no longer exist.
    pub fn retain_topics(&mut self, exists: impl Fn(&str) -> bool) {
        self.topics.retain(|t, _| exists(t));
    }
}

/// Records and bytes of one side (produced, fetched) of a topic.
#[derive(Clone, Copy, Default)]
struct Side {
    records: u64,
    bytes: u64,
}

/// A topic's traffic: produced, then fetched.
#[derive(Clone, Copy, Default)]
struct TopicCounters([Side; 2]);

/// A partition's gauges, from its owner.
#[derive(Clone, Debug)]
pub(crate) struct PartitionGauges {
    pub topic: String,
    pub partition: u32,
    pub high_watermark: u64,
    pub log_start: u64,
    pub size_bytes: u64,
}

/// A consumer group's gauges, from its coordinator.
#[derive(Clone, Debug)]
pub(crate) struct GroupGauges {
    pub group: String,
    pub consumers: u64,
    /// Committed offsets by (topic, partition).
    pub committed: Vec<(String, u32, i64)>,
}

/// What one shard reports at a scrape.
pub(crate) struct ShardSnapshot {
    pub shard: usize,
    pub cpu_seconds: f64,
    latency: BTreeMap<&'static str, Histogram>,
    topics: Vec<(String, TopicCounters)>,
    errors: BTreeMap<i16, u64>,
    connections: BTreeMap<&'static str, i64>,
    pub io: IoStats,
    pub partitions: Vec<PartitionGauges>,
    pub groups: Vec<GroupGauges>,
    /// Partition Raft groups the shard drives, and how many of them hibernate.
    pub raft_groups: (usize, usize),
}

impl ShardSnapshot {
    /// The counters of `metrics`, with the gauges the shard gathered.
    pub fn new(
        shard: usize,
        metrics: &ShardMetrics,
        partitions: Vec<PartitionGauges>,
        groups: Vec<GroupGauges>,
    ) -> ShardSnapshot {
        ShardSnapshot {
            shard,
            cpu_seconds: thread_cpu_seconds(),
            latency: metrics.latency.clone(),
            topics: metrics.topics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            errors: metrics.errors.clone(),
            connections: metrics.connections.clone(),
            io: rill_storage::io_stats(),
            partitions,
            groups,
            raft_groups: (0, 0),
        }
    }
}

/// CPU time of the calling thread (a shard's: busy time, whatever it ran).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc == 0 { ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9 } else { 0.0 }
}

/// Node-wide figures the scraping shard adds.
pub(crate) struct NodeFigures {
    pub uptime: Duration,
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
    /// One series per partition (`metrics_per_partition`), or per topic.
    pub per_partition: bool,
    /// Replicas out of sync over the replicated partitions this node leads (as their leaders
    /// last reported them).
    pub under_replicated_replicas: u64,
}

/// Escapes a label value (backslash, double quote and newline, as the format requires).
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// `(group, topic, partition, value)` rows, one series each, or summed by (group, topic).
    fn group_series(&mut self, name: &str, rows: &[(&str, &str, u32, i64)], per_partition: bool) {
        if per_partition {
            for (group, topic, partition, v) in rows {
                let p = partition.to_string();
                self.sample(name, &[("group", group), ("topic", topic), ("partition", &p)], *v as f64);
            }
            return;
        }
        let mut sums: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for (group, topic, _, v) in rows {
            *sums.entry((group, topic)).or_default() += v;
        }
        for ((group, topic), v) in sums {
            self.sample(name, &[("group", group), ("topic", topic)], v as f64);
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BOUNDS_S.iter().enumerate() {
            cumulative += h.counts[i];
            let le = bound.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with_le, h.count() as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum_s);
        self.sample(&format!("{name}_count"), labels, h.count() as f64);
    }
}

/// The exposition of every shard's snapshot and the node's figures.
pub(crate) fn render(shards: &[ShardSnapshot], node: &NodeFigures) -> String {
    let mut w = Writer { out: String::new() };

    let mut latency: BTreeMap<&str, Histogram> = BTreeMap::new();
    let mut bytes: BTreeMap<(String, &str), u64> = BTreeMap::new();
    let mut produced: BTreeMap<String, u64> = BTreeMap::new();
    let mut fetched: BTreeMap<String, u64> = BTreeMap::new();
    let mut io = IoStats::default();
    for s in shards {
        for (family, h) in &s.latency {
            latency.entry(family).or_default().merge(h);
        }
        for (topic, c) in &s.topics {
            let [produce, consume] = c.0;
            *bytes.entry((topic.clone(), "produce")).or_default() += produce.bytes;
            *bytes.entry((topic.clone(), "consume")).or_default() += consume.bytes;
            *produced.entry(topic.clone()).or_default() += produce.records;
            *fetched.entry(topic.clone()).or_default() += consume.records;
        }
        io.merge(&s.io);
    }
    let mut partitions: Vec<&PartitionGauges> = shards.iter().flat_map(|s| &s.partitions).collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let mut groups: Vec<&GroupGauges> = shards.iter().flat_map(|s| &s.groups).collect();
    groups.sort_by(|a, b| a.group.cmp(&b.group));

    w.family("rill_kafka_request_latency_seconds", "histogram", "Kafka request latency by API family.");
    for (family, h) in &latency {
        w.histogram("rill_kafka_request_latency_seconds", &[("request", family)], h);
    }
    w.family(
        "rill_kafka_request_bytes_total",
        "counter",
        "Record batch bytes produced and fetched, by topic.",
    );
    for ((topic, request), v) in &bytes {
        w.sample("rill_kafka_request_bytes_total", &[("topic", topic), ("request", request)], *v as f64);
    }
    w.family("rill_kafka_records_produced_total", "counter", "Records produced, by topic.");
    for (topic, v) in &produced {
        w.sample("rill_kafka_records_produced_total", &[("topic", topic)], *v as f64);
    }
    w.family("rill_kafka_records_fetched_total", "counter", "Records fetched, by topic.");
    for (topic, v) in &fetched {
        w.sample("rill_kafka_records_fetched_total", &[("topic", topic)], *v as f64);
    }

    let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &partitions {
        *per_topic.entry(&p.topic).or_default() += 1;
    }
    w.family("rill_kafka_partitions", "gauge", "Partitions this node leads, by topic.");
    for (topic, n) in &per_topic {
        w.sample("rill_kafka_partitions", &[("topic", topic)], *n as f64);
    }
    let hw: HashMap<(&str, u32), u64> =
        partitions.iter().map(|p| ((p.topic.as_str(), p.partition), p.high_watermark)).collect();
    type Gauge = fn(&PartitionGauges) -> u64;
    let series: [(&str, &str, Gauge); 3] = [
        ("rill_kafka_max_offset", "High watermark (the next offset to be written).", |p| p.high_watermark),
        ("rill_kafka_log_start_offset", "The first offset a consumer can read.", |p| p.log_start),
        ("rill_storage_log_size_bytes", "Bytes of the partition's log on disk.", |p| p.size_bytes),
    ];
    for (name, help, value) in series {
        w.family(name, "gauge", help);
        if node.per_partition {
            for p in &partitions {
                let partition = p.partition.to_string();
                w.sample(name, &[("topic", &p.topic), ("partition", &partition)], value(p) as f64);
            }
        } else {
            let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
            for p in &partitions {
                *sums.entry(&p.topic).or_default() += value(p);
            }
            for (topic, v) in sums {
                w.sample(name, &[("topic", topic)], v as f64);
            }
        }
    }

    // (group, topic, partition, value) rows of a group's committed offsets, and of its lag where
    // this node leads the partition.
    let committed: Vec<(&str, &str, u32, i64)> = groups
        .iter()
        .flat_map(|g| g.committed.iter().map(|(t, p, offset)| (g.group.as_str(), t.as_str(), *p, *offset)))
        .collect();
    let lag: Vec<(&str, &str, u32, i64)> = committed
        .iter()
        .filter_map(|&(g, t, p, offset)| hw.get(&(t, p)).map(|hw| (g, t, p, (*hw as i64 - offset).max(0))))
        .collect();
    w.family("rill_kafka_consumer_group_committed_offset", "gauge", "A group's committed offset.");
    w.group_series("rill_kafka_consumer_group_committed_offset", &committed, node.per_partition);
    w.family(
        "rill_kafka_consumer_group_lag",
        "gauge",
        "Records between a group's committed offset and the high watermark (partitions led here).",
    );
    w.group_series("rill_kafka_consumer_group_lag", &lag, node.per_partition);
    w.family("rill_kafka_consumer_group_consumers", "gauge", "Members of a consumer group.");
    for g in &groups {
        w.sample("rill_kafka_consumer_group_consumers", &[("group", &g.group)], g.consumers as f64);
    }

    w.family("rill_storage_disk_free_bytes", "gauge", "Free bytes of the data directory's file system.");
    w.sample("rill_storage_disk_free_bytes", &[], node.disk_free_bytes as f64);
    w.family("rill_storage_disk_total_bytes", "gauge", "Size of the data directory's file system.");
    w.sample("rill_storage_disk_total_bytes", &[], node.disk_total_bytes as f64);
    w.family("rill_storage_write_latency_seconds", "histogram", "Latency of segment and index writes.");
    w.histogram("rill_storage_write_latency_seconds", &[], &io.writes);
    w.family("rill_storage_fsync_latency_seconds", "histogram", "Latency of fdatasync calls.");
    w.histogram("rill_storage_fsync_latency_seconds", &[], &io.fsyncs);
    let io_counters = [
        ("rill_storage_written_bytes_total", "Bytes written to log files.", io.bytes_written),
        ("rill_storage_read_bytes_total", "Bytes read from log files.", io.bytes_read),
        ("rill_storage_cache_hits_total", "Log reads served from the batch cache.", io.cache_hits),
        ("rill_storage_cache_misses_total", "Log reads that went to disk.", io.cache_misses),
    ];
    for (name, help, v) in io_counters {
        w.family(name, "counter", help);
        w.sample(name, &[], v as f64);
    }

    w.family("rill_cpu_busy_seconds_total", "counter", "CPU time of each shard's thread.");
    for s in shards {
        w.sample("rill_cpu_busy_seconds_total", &[("shard", &s.shard.to_string())], s.cpu_seconds);
    }
    w.family("rill_rpc_active_connections", "gauge", "Open client connections, by shard and protocol.");
    for s in shards {
        let shard = s.shard.to_string();
        for server in ["kafka", "native"] {
            let open = s.connections.get(server).copied().unwrap_or(0);
            w.sample("rill_rpc_active_connections", &[("shard", &shard), ("server", server)], open as f64);
        }
    }
    w.family(
        "rill_raft_groups",
        "gauge",
        "Partition Raft groups a shard drives (replicated partitions it holds).",
    );
    for s in shards {
        w.sample("rill_raft_groups", &[("shard", &s.shard.to_string())], s.raft_groups.0 as f64);
    }
    w.family(
        "rill_raft_groups_hibernating",
        "gauge",
        "Partition Raft groups that hibernate (idle: no ticks, no heartbeats).",
    );
    for s in shards {
        w.sample("rill_raft_groups_hibernating", &[("shard", &s.shard.to_string())], s.raft_groups.1 as f64);
    }
    w.family("rill_kafka_errors_total", "counter", "Kafka error codes answered, by shard and code.");
    for s in shards {
        let shard = s.shard.to_string();
        for (code, n) in &s.errors {
            w.sample("rill_kafka_errors_total", &[("shard", &shard), ("code", &code.to_string())], *n as f64);
        }
    }
    w.family(
        "rill_kafka_under_replicated_replicas",
        "gauge",
        "Replicas out of the in-sync set, over the replicated partitions this node leads.",
    );
    w.sample("rill_kafka_under_replicated_replicas", &[], node.under_replicated_replicas as f64);
    w.family("rill_application_uptime_seconds_total", "counter", "Seconds since the broker started.");
    w.sample("rill_application_uptime_seconds_total", &[], node.uptime.as_secs_f64());
    w.family("rill_application_build", "gauge", "The running build (always 1).");
    w.sample("rill_application_build", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_cannot_break_the_format() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut m = ShardMetrics::default();
        m.records("evil\"} 1\nrill_fake 2", true, 3, 30);
        let snap = ShardSnapshot::new(0, &m, vec![], vec![]);
        let text = render(
            &[snap],
            &NodeFigures {
                uptime: Duration::ZERO,
                disk_free_bytes: 1,
                disk_total_bytes: 2,
                per_partition: true,
                under_replicated_replicas: 0,
            },
        );
        assert!(!text.lines().any(|l| l.starts_with("rill_fake")), "{text}");
        assert!(
            text.contains("rill_kafka_records_produced_total{topic=\"evil\\\"} 1\\nrill_fake 2\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn lag_is_the_high_watermark_less_the_committed_offset() {
        let m = ShardMetrics::default();
        let p = |partition, hw| PartitionGauges {
            topic: "t".into(),
            partition,
            high_watermark: hw,
            log_start: 0,
            size_bytes: 10,
        };
        let owner = ShardSnapshot::new(0, &m, vec![p(0, 100), p(1, 50)], vec![]);
        let coordinator = ShardSnapshot::new(
            1,
            &m,
            vec![],
            vec![GroupGauges {
                group: "g".into(),
                consumers: 2,
                committed: vec![("t".into(), 0, 60), ("t".into(), 1, 50)],
            }],
        );
        let node = NodeFigures {
            uptime: Duration::from_secs(5),
            disk_free_bytes: 1,
            disk_total_bytes: 2,
            per_partition: true,
            under_replicated_replicas: 0,
        };
        let shards = [owner, coordinator];
        let text = render(&shards, &node);
        assert!(
            text.contains("rill_kafka_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 40\n"),
            "{text}"
        );
        assert!(
            text.contains("rill_kafka_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"1\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("rill_kafka_consumer_group_consumers{group=\"g\"} 2\n"));
        assert!(text.contains("rill_kafka_partitions{topic=\"t\"} 2\n"));
        let text = render(&shards, &NodeFigures { per_partition: false, ..node });
        assert!(text.contains("rill_kafka_max_offset{topic=\"t\"} 150\n"), "{text}");
        assert!(text.contains("rill_kafka_consumer_group_lag{group=\"g\",topic=\"t\"} 40\n"), "{text}");
        assert!(!text.contains("partition=\""), "{text}");
    }
}

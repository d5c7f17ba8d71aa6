//! Kafka's topic-config catalogue: every topic config name Kafka 4 knows, its type, Kafka's
//! validation of values, the broker config it defaults from (its synonym), and whether Rill acts
//! on it. CreateTopics and the AlterConfigs APIs validate against it as Kafka does (unknown names
//! and bad values are INVALID_CONFIG, with Kafka's wording), the topic stores what was set, and
//! DescribeConfigs reports every entry with its source and synonyms, so the configs described for
//! one topic create another.

/// Kafka's config types, as DescribeConfigs v3+ numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Kafka's validator of a config's value.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Check {
    Any,
    AtLeast(i64),
    Between(i64, i64),
    /// A double in [0, 1].
    Ratio,
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these.
    ListOf(&'static [&'static str]),
    /// `*`, or a comma-separated list of `partition:broker` pairs.
    ThrottledReplicas,
}

/// What Rill does with a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Enforced as Kafka enforces it.
    Enforced,
    /// Stored and described; no effect on Rill (README says why for each).
    Stored,
}

/// One topic config.
#[derive(Debug)]
pub(crate) struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub check: Check,
    /// Kafka's default, where the broker's value does not come from Rill's profile.
    pub default: &'static str,
    /// The broker config it defaults from (empty: none).
    pub broker: &'static str,
    pub effect: Effect,
    pub doc: &'static str,
    /// `doc` with the note that Rill only stores it, for DescribeConfigs' documentation.
    pub stored_doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";
const INT_MAX: &str = "2147483647";

macro_rules! def {
    ($name:literal, $kind:ident, $check:expr, $default:expr, $broker:literal, $effect:ident, $doc:literal) => {
        Def {
            name: $name,
            kind: Kind::$kind,
            check: $check,
            default: $default,
            broker: $broker,
            effect: Effect::$effect,
            doc: $doc,
            stored_doc: concat!($doc, " Rill stores it; it has no effect there."),
        }
    };
}

/// The catalogue, in Kafka's order of `TopicConfig`.
pub(crate) const CATALOGUE: &[Def] = &[
    def!(
        "segment.bytes",
        Int,
        Check::AtLeast(14),
        "1073741824",
        "log.segment.bytes",
        Enforced,
        "The size at which a partition's active segment is rolled."
    ),
    def!(
        "segment.ms",
        Long,
        Check::AtLeast(1),
        "604800000",
        "log.roll.ms",
        Enforced,
        "The age at which a partition's active segment is rolled, even if not full."
    ),
    def!(
        "segment.jitter.ms",
        Long,
        Check::AtLeast(0),
        "0",
        "log.roll.jitter.ms",
        Stored,
        "Random jitter subtracted from segment.ms."
    ),
    def!(
        "segment.index.bytes",
        Int,
        Check::AtLeast(4),
        "10485760",
        "log.index.size.max.bytes",
        Stored,
        "The size of a segment's offset index."
    ),
    def!(
        "flush.messages",
        Long,
        Check::AtLeast(1),
        LONG_MAX,
        "log.flush.interval.messages",
        Stored,
        "Messages written before the log is fsynced (Rill: rill.durability)."
    ),
    def!(
        "flush.ms",
        Long,
        Check::AtLeast(0),
        LONG_MAX,
        "log.flush.interval.ms",
        Stored,
        "Time before the log is fsynced (Rill: rill.durability)."
    ),
    def!(
        "retention.bytes",
        Long,
        Check::Any,
        "-1",
        "log.retention.bytes",
        Enforced,
        "The size a partition may grow to before its oldest segments are deleted; -1: no limit."
    ),
    def!(
        "retention.ms",
        Long,
        Check::AtLeast(-1),
        "604800000",
        "log.retention.ms",
        Enforced,
        "How long a segment is kept after its last append; -1: no limit."
    ),
    def!(
        "remote.storage.enable",
        Boolean,
        Check::Any,
        "false",
        "",
        Stored,
        "Tiered storage for the topic (Rill has none: true is refused)."
    ),
    def!(
        "local.retention.ms",
        Long,
        Check::AtLeast(-2),
        "-2",
        "log.local.retention.ms",
        Stored,
        "Local retention with tiered storage; -2: retention.ms."
    ),
    def!(
        "local.retention.bytes",
        Long,
        Check::AtLeast(-2),
        "-2",
        "log.local.retention.bytes",
        Stored,
        "Local retention with tiered storage; -2: retention.bytes."
    ),
    def!(
        "remote.log.copy.disable",
        Boolean,
        Check::Any,
        "false",
        "",
        Stored,
        "Stops copying segments to tiered storage."
    ),
    def!(
        "remote.copy.lag.ms",
        Long,
        Check::AtLeast(-1),
        "-1",
        "",
        Stored,
        "Time-based eligibility of a segment for tiered storage."
    ),
    def!(
        "remote.copy.lag.bytes",
        Long,
        Check::AtLeast(-1),
        "-1",
        "",
        Stored,
        "Size-based eligibility of a segment for tiered storage."
    ),
    def!(
        "remote.log.delete.on.disable",
        Boolean,
        Check::Any,
        "false",
        "",
        Stored,
        "Deletes tiered segments when tiered storage is turned off."
    ),
    def!(
        "max.message.bytes",
        Int,
        Check::AtLeast(0),
        "1048588",
        "message.max.bytes",
        Enforced,
        "The largest record batch the partition accepts (MESSAGE_TOO_LARGE beyond)."
    ),
    def!(
        "max.decompressed.message.bytes",
        Int,
        Check::AtLeast(1),
        INT_MAX,
        "",
        Stored,
        "The largest decompressed record the broker accepts."
    ),
    def!(
        "index.interval.bytes",
        Int,
        Check::AtLeast(0),
        "4096",
        "log.index.interval.bytes",
        Stored,
        "Bytes between offset index entries (Rill: the profile's index interval)."
    ),
    def!(
        "file.delete.delay.ms",
        Long,
        Check::AtLeast(0),
        "60000",
        "log.segment.delete.delay.ms",
        Stored,
        "Delay before a deleted segment's file is removed (Rill removes at once)."
    ),
    def!(
        "delete.retention.ms",
        Long,
        Check::AtLeast(0),
        "86400000",
        "log.cleaner.delete.retention.ms",
        Enforced,
        "How long tombstones are kept on a compacted topic."
    ),
    def!(
        "min.compaction.lag.ms",
        Long,
        Check::AtLeast(0),
        "0",
        "log.cleaner.min.compaction.lag.ms",
        Enforced,
        "The minimum time a record stays uncompacted."
    ),
    def!(
        "max.compaction.lag.ms",
        Long,
        Check::AtLeast(1),
        LONG_MAX,
        "log.cleaner.max.compaction.lag.ms",
        Enforced,
        "The maximum time a record stays uncompacted."
    ),
    def!(
        "min.cleanable.dirty.ratio",
        Double,
        Check::Ratio,
        "0.5",
        "log.cleaner.min.cleanable.ratio",
        Enforced,
        "The share of a log not yet compacted above which it is cleaned."
    ),
    def!(
        "cleanup.policy",
        List,
        Check::ListOf(&["compact", "delete"]),
        "delete",
        "log.cleanup.policy",
        Enforced,
        "delete (retention by age and size) and/or compact (the latest record of each key is kept)."
    ),
    def!(
        "unclean.leader.election.enable",
        Boolean,
        Check::Any,
        "false",
        "unclean.leader.election.enable",
        Stored,
        "Whether a replica outside the ISR may become leader (Rill never does)."
    ),
    def!(
        "min.insync.replicas",
        Int,
        Check::AtLeast(1),
        "1",
        "min.insync.replicas",
        Enforced,
        "acks=all produces fail with NOT_ENOUGH_REPLICAS when fewer replicas are in sync."
    ),
    def!(
        "compression.type",
        String,
        Check::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "producer",
        "compression.type",
        Stored,
        "The codec batches are stored with (Rill stores batches as produced)."
    ),
    def!(
        "compression.gzip.level",
        Int,
        Check::Between(-1, 9),
        "-1",
        "compression.gzip.level",
        Stored,
        "The gzip level when compression.type=gzip."
    ),
    def!(
        "compression.lz4.level",
        Int,
        Check::Between(1, 17),
        "9",
        "compression.lz4.level",
        Stored,
        "The lz4 level when compression.type=lz4."
    ),
    def!(
        "compression.zstd.level",
        Int,
        Check::Between(-131072, 22),
        "3",
        "compression.zstd.level",
        Stored,
        "The zstd level when compression.type=zstd."
    ),
    def!(
        "preallocate",
        Boolean,
        Check::Any,
        "false",
        "log.preallocate",
        Stored,
        "Preallocate segment files."
    ),
    def!(
        "message.timestamp.type",
        String,
        Check::OneOf(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
        "log.message.timestamp.type",
        Enforced,
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock."
    ),
    def!(
        "message.timestamp.before.max.ms",
        Long,
        Check::AtLeast(0),
        LONG_MAX,
        "log.message.timestamp.before.max.ms",
        Stored,
        "How far in the past a CreateTime timestamp may be."
    ),
    def!(
        "message.timestamp.after.max.ms",
        Long,
        Check::AtLeast(0),
        "3600000",
        "log.message.timestamp.after.max.ms",
        Stored,
        "How far in the future a CreateTime timestamp may be."
    ),
    def!(
        "message.downconversion.enable",
        Boolean,
        Check::Any,
        "true",
        "log.message.downconversion.enable",
        Stored,
        "No effect since Kafka 4.0."
    ),
    def!(
        "errors.deadletterqueue.group.enable",
        Boolean,
        Check::Any,
        "false",
        "",
        Stored,
        "Whether share groups may use the topic as a dead-letter queue."
    ),
    def!(
        "leader.replication.throttled.replicas",
        List,
        Check::ThrottledReplicas,
        "",
        "",
        Stored,
        "Replicas whose leader-side replication is throttled."
    ),
    def!(
        "follower.replication.throttled.replicas",
        List,
        Check::ThrottledReplicas,
        "",
        "",
        Stored,
        "Replicas whose follower-side replication is throttled."
    ),
];

/// The catalogue entry of `name`.
pub(crate) fn find(name: &str) -> Option<&'static Def> {
    CATALOGUE.iter().find(|d| d.name == name)
}

impl Def {
    /// Checks `value` as Kafka's `ConfigDef` does; answers it normalised (trimmed, lists without
    /// spaces) or Kafka's message.
    pub fn validate(&self, value: &str) -> Result<String, String> {
        let invalid = |why: String| format!("Invalid value {value} for configuration {}: {why}", self.name);
        let v = value.trim();
        let number = |bits: u32| -> Result<i64, String> {
            let n: i64 = v.parse().map_err(|_| {
                invalid(format!("Not a number of type {}", if bits == 32 { "INT" } else { "LONG" }))
            })?;
            if bits == 32 && i32::try_from(n).is_err() {
                return Err(invalid("Not a number of type INT".into()));
            }
            Ok(n)
        };
        let normalised = match self.kind {
            Kind::Boolean => match v.to_ascii_lowercase().as_str() {
                "true" => "true".to_string(),
                "false" => "false".to_string(),
                _ => return Err(invalid("Expected value to be either true or false".into())),
            },
            Kind::Int | Kind::Long => {
                let n = number(if self.kind == Kind::Int { 32 } else { 64 })?;
                match self.check {
                    Check::AtLeast(min) if n < min => {
                        return Err(invalid(format!("Value must be at least {min}")));
                    }
                    Check::Between(min, _) if n < min => {
                        return Err(invalid(format!("Value must be at least {min}")));
                    }
                    Check::Between(_, max) if n > max => {
                        return Err(invalid(format!("Value must be no more than {max}")));
                    }
                    _ => {}
                }
                n.to_string()
            }
            Kind::Double => {
                let d: f64 = v.parse().map_err(|_| invalid("Not a number of type DOUBLE".into()))?;
                if matches!(self.check, Check::Ratio) && !(0.0..=1.0).contains(&d) {
                    return Err(invalid(if d < 0.0 {
                        "Value must be at least 0".into()
                    } else {
                        "Value must be no more than 1".into()
                    }));
                }
                v.to_string()
            }
            Kind::String => match self.check {
                Check::OneOf(allowed) if !allowed.contains(&v) => {
                    return Err(invalid(format!("String must be one of: {}", allowed.join(", "))));
                }
                _ => v.to_string(),
            },
            Kind::List => {
                let items: Vec<&str> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
                match self.check {
                    Check::ListOf(allowed) => {
                        if items.is_empty() {
                            return Err(invalid("Empty list".into()));
                        }
                        if let Some(bad) = items.iter().find(|i| !allowed.contains(i)) {
                            return Err(invalid(format!(
                                "Invalid value {bad} for configuration {}: String must be one of: {}",
                                self.name,
                                allowed.join(", ")
                            )));
                        }
                    }
                    Check::ThrottledReplicas => {
                        let pair = |i: &&str| {
                            let mut parts = i.split(':');
                            let ok = |p: Option<&str>| p.is_some_and(|p| p.trim().parse::<u32>().is_ok());
                            ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
                        };
                        if !(items == ["*"] || items.iter().all(pair)) {
                            return Err(invalid(
                                "must be the literal '*' or a list of replicas in the following format: \
                                 [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                                    .into(),
                            ));
                        }
                    }
                    _ => {}
                }
                items.join(",")
            }
        };
        Ok(normalised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_as_kafka_checks_them() {
        let ok = |name: &str, value: &str| find(name).unwrap().validate(value);
        assert_eq!(ok("segment.bytes", "10000"), Ok("10000".into()));
        assert!(ok("segment.bytes", "13").unwrap_err().contains("at least 14"));
        assert!(ok("segment.bytes", "4294967296").unwrap_err().contains("type INT"));
        assert_eq!(ok("retention.ms", " -1 "), Ok("-1".into()));
        assert!(ok("retention.ms", "-2").is_err());
        assert!(ok("retention.ms", "soon").unwrap_err().contains("Not a number of type LONG"));
        assert_eq!(ok("preallocate", "TRUE"), Ok("true".into()));
        assert!(ok("preallocate", "yes").is_err());
        assert_eq!(ok("min.cleanable.dirty.ratio", "0.01"), Ok("0.01".into()));
        assert!(ok("min.cleanable.dirty.ratio", "1.5").is_err());
        assert_eq!(ok("cleanup.policy", "compact, delete"), Ok("compact,delete".into()));
        assert!(ok("cleanup.policy", "shred").is_err());
        assert!(ok("compression.type", "brotli").is_err());
        assert!(ok("message.timestamp.type", "logappendtime").is_err(), "case matters, as in Kafka");
        assert_eq!(ok("leader.replication.throttled.replicas", "0:1, 1:2"), Ok("0:1,1:2".into()));
        assert_eq!(ok("leader.replication.throttled.replicas", "*"), Ok("*".into()));
        assert!(ok("leader.replication.throttled.replicas", "0-1").is_err());
        assert!(ok("compression.zstd.level", "23").unwrap_err().contains("no more than 22"));
        assert!(find("log.retention.ms").is_none(), "broker configs are not topic configs");
    }
}

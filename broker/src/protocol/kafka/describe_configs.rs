//! Kafka's DescribeConfigs: a topic's configs (every entry of Kafka's topic-config catalogue,
//! with the value the topic runs with, its source and its synonyms) and a broker's configs under
//! Kafka's names (what Connect, Debezium and UIs read), from the configuration file and the
//! tuning profile.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use rill_net::kafka::code;

use super::configs::RESOURCE_TOPIC;
use super::str_bytes;
use crate::cluster::metadata::{TopicName, TopicSettings};
use crate::cluster::topic_config::catalogue::{CATALOGUE, Effect, Kind};
use crate::cluster::topic_config::pairs;
use crate::partition::shard::Shard;

const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One described config.
struct Described {
    name: String,
    value: String,
    source: i8,
    kind: Kind,
    doc: &'static str,
    read_only: bool,
    synonyms: Vec<(String, String, i8)>,
}

/// Whether a broker resource's name is this node: its id, or empty (the cluster default).
fn broker_named(name: &str, node: u32) -> bool {
    name.is_empty() || name.parse::<u32>() == Ok(node)
}

/// The broker-level value of a topic config's default: from the profile where Rill has one
/// (a static broker config), else Kafka's default.
fn broker_default(shard: &Shard, topic_config: &str, kafka_default: &str) -> (String, i8) {
    let log = shard.profile().log_config();
    let limit = |v: Option<u64>| v.map_or(-1, |v| v as i64).to_string();
    let from_profile = match topic_config {
        "segment.bytes" => Some(log.segment_size_bytes_max.to_string()),
        "segment.ms" => Some(log.segment_age_ms_max.to_string()),
        "retention.ms" => Some(limit(log.retention_age_ms_max)),
        "retention.bytes" => Some(limit(log.retention_bytes_max)),
        "max.message.bytes" => Some(log.batch_bytes_max.to_string()),
        "index.interval.bytes" => Some(log.index_interval_bytes.to_string()),
        _ => None,
    };
    match from_profile {
        Some(value) => (value, SOURCE_STATIC_BROKER),
        None => (kafka_default.to_string(), SOURCE_DEFAULT),
    }
}

/// Every catalogue entry for a topic, and Rill's own `rill.durability`.
fn topic_configs(shard: &Shard, settings: &TopicSettings) -> Vec<Described> {
    let set = pairs(settings);
    let topic_value = |name: &str| set.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.clone());
    let mut out: Vec<Described> = CATALOGUE
        .iter()
        .map(|def| {
            let (broker_value, broker_source) = broker_default(shard, def.name, def.default);
            let mut synonyms = Vec::new();
            let topic = topic_value(def.name);
            if let Some(v) = &topic {
                synonyms.push((def.name.to_string(), v.clone(), SOURCE_DYNAMIC_TOPIC));
            }
            if !def.broker.is_empty() {
                synonyms.push((def.broker.to_string(), broker_value.clone(), broker_source));
            }
            let (value, source) = match topic {
                Some(v) => (v, SOURCE_DYNAMIC_TOPIC),
                None => (broker_value, broker_source),
            };
            let doc = match def.effect {
                Effect::Enforced => def.doc,
                Effect::Stored => def.stored_doc,
            };
            Described {
                name: def.name.to_string(),
                value,
                source,
                kind: def.kind,
                doc,
                read_only: false,
                synonyms,
            }
        })
        .collect();
    let (durability, source) = match &settings.durability {
        Some(d) => (d.clone(), SOURCE_DYNAMIC_TOPIC),
        None => (shard.profile().log.durability.clone(), SOURCE_STATIC_BROKER),
    };
    out.push(Described {
        name: "rill.durability".into(),
        value: durability,
        source,
        kind: Kind::String,
        doc: "When Rill acknowledges a write: always (after fsync), never, or interval:<ms>.",
        read_only: false,
        synonyms: Vec::new(),
    });
    out
}

/// This node's broker configs under Kafka's names.
fn broker_configs(shard: &Shard) -> Vec<Described> {
    let node = shard.metadata().node;
    let log = shard.profile().log_config();
    let (host, port) = shard.kafka_advertised();
    let auto_create = shard.auto_create_partitions();
    let retention = shard.offsets_retention();
    let fixed = |name: &str, value: String, kind: Kind| Described {
        name: name.into(),
        value,
        source: SOURCE_STATIC_BROKER,
        kind,
        doc: "",
        read_only: true,
        synonyms: Vec::new(),
    };
    let default = |name: &str, value: &str, kind: Kind| Described {
        source: SOURCE_DEFAULT,
        ..fixed(name, value.into(), kind)
    };
    let limit = |v: Option<u64>| v.map_or(-1, |v| v as i64).to_string();
    vec![
        fixed("broker.id", node.to_string(), Kind::Int),
        fixed("node.id", node.to_string(), Kind::Int),
        fixed("advertised.listeners", format!("PLAINTEXT://{host}:{port}"), Kind::String),
        fixed("log.dirs", shard.data_dir().display().to_string(), Kind::String),
        fixed("num.partitions", auto_create.unwrap_or(1).to_string(), Kind::Int),
        fixed("auto.create.topics.enable", auto_create.is_some().to_string(), Kind::Boolean),
        default("default.replication.factor", "1", Kind::Int),
        default("min.insync.replicas", "1", Kind::Int),
        default("delete.topic.enable", "true", Kind::Boolean),
        default("unclean.leader.election.enable", "false", Kind::Boolean),
        default("inter.broker.protocol.version", "4.0-IV3", Kind::String),
        default("log.cleanup.policy", "delete", Kind::List),
        default("log.cleaner.enable", "false", Kind::Boolean),
        default("compression.type", "producer", Kind::String),
        default("log.message.timestamp.type", "CreateTime", Kind::String),
        fixed("message.max.bytes", log.batch_bytes_max.to_string(), Kind::Int),
        fixed("log.segment.bytes", log.segment_size_bytes_max.to_string(), Kind::Int),
        fixed("log.roll.ms", log.segment_age_ms_max.to_string(), Kind::Long),
        fixed("log.retention.ms", limit(log.retention_age_ms_max), Kind::Long),
        fixed("log.retention.bytes", limit(log.retention_bytes_max), Kind::Long),
        fixed("log.index.interval.bytes", log.index_interval_bytes.to_string(), Kind::Int),
        fixed("offsets.retention.minutes", (retention.retention_ms / 60_000).to_string(), Kind::Int),
        fixed("offsets.retention.check.interval.ms", retention.check_interval_ms.to_string(), Kind::Long),
        default("offsets.topic.replication.factor", "1", Kind::Int),
        default("transaction.state.log.replication.factor", "1", Kind::Int),
        default("transaction.state.log.min.isr", "1", Kind::Int),
        default("group.initial.rebalance.delay.ms", "0", Kind::Int),
    ]
}

pub(crate) fn describe_configs(
    shard: &Rc<Shard>,
    r: DescribeConfigsRequest,
    v: i16,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    let node = shard.metadata().node;
    for resource in r.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let entries: Result<Vec<Described>, (i16, String)> = match resource.resource_type {
            RESOURCE_TOPIC => {
                let name = resource.resource_name.to_string();
                let catalogue = shard.metadata();
                match TopicName::new(&name).ok().and_then(|n| catalogue.topics.get(&n)) {
                    None => Err((code::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {name}"))),
                    Some(topic) => Ok(topic_configs(shard, &topic.settings)),
                }
            }
            // This node's configs, under its id or the empty name (Kafka's cluster default);
            // Kafka refuses another broker's id (clients send that request to that broker).
            RESOURCE_BROKER if !broker_named(&resource.resource_name, node) => Err((
                code::INVALID_REQUEST,
                format!(
                    "unexpected broker id, expected {node} or empty string, but received {}",
                    resource.resource_name
                ),
            )),
            RESOURCE_BROKER => Ok(broker_configs(shard)),
            other => Err((code::INVALID_REQUEST, format!("resource type {other} is not supported"))),
        };
        match entries {
            Err((error, message)) => {
                result.error_code = error;
                result.error_message = Some(str_bytes(message));
            }
            Ok(entries) => {
                let wanted = resource.configuration_keys.as_ref();
                for d in entries {
                    if wanted.is_some_and(|keys| !keys.iter().any(|k| k.as_str() == d.name)) {
                        continue;
                    }
                    let mut entry = DescribeConfigsResourceResult::default();
                    entry.value = Some(str_bytes(d.value));
                    entry.read_only = d.read_only;
                    entry.config_source = d.source;
                    if r.include_synonyms {
                        entry.synonyms = d
                            .synonyms
                            .into_iter()
                            .map(|(name, value, source)| {
                                let mut s = DescribeConfigsSynonym::default();
                                s.name = str_bytes(name);
                                s.value = Some(str_bytes(value));
                                s.source = source;
                                s
                            })
                            .collect();
                    }
                    if v >= 3 {
                        entry.config_type = d.kind as i8;
                        if r.include_documentation && !d.doc.is_empty() {
                            entry.documentation = Some(str_bytes(d.doc));
                        }
                    }
                    entry.name = str_bytes(d.name);
                    result.configs.push(entry);
                }
            }
        }
        response.results.push(result);
    }
    response
}

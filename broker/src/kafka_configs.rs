//! Kafka's AlterConfigs and IncrementalAlterConfigs for topics: what `kafka-configs --alter`,
//! `rpk topic alter-config` and the admin clients' `alter_configs` send.
//!
//! The new settings are validated like CreateTopics' (the same config names and values) and
//! against the profile, then replace the topic's settings through the controller; every shard
//! reopens its partitions of the topic with the new log configuration. Broker configs are
//! static (the configuration file and the tuning profile) and cannot be changed this way.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, alter_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use rill_net::kafka::code;

use crate::handler::admin_op;
use crate::metadata::{TopicName, TopicSettings};
use crate::shard::{AdminOp, Shard};

const RESOURCE_TOPIC: i8 = 2;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// IncrementalAlterConfigs: SET and DELETE per config; the others keep their values.
pub(crate) async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in r.resources {
        let changes: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = alter(shard, resource.resource_type, &resource.resource_name, r.validate_only, |current| {
            let mut configs: BTreeMap<String, Option<String>> = pairs(&current).into_iter().collect();
            for (name, operation, value) in changes {
                match operation {
                    OP_SET => {
                        configs.insert(name, value);
                    }
                    OP_DELETE => {
                        configs.remove(&name);
                    }
                    _ => {
                        return Err((
                            code::INVALID_REQUEST,
                            format!("{name}: APPEND and SUBTRACT apply to list configs, and Rill's topic configs are single values"),
                        ));
                    }
                }
            }
            parse(&configs.into_iter().collect::<Vec<_>>())
        })
        .await;
        let mut result = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err((error, message)) = outcome {
            result.error_code = error;
            result.error_message = Some(StrBytes::from_string(message));
        }
        response.responses.push(result);
    }
    response
}

/// AlterConfigs: the configs given become the topic's whole set (the others return to their
/// defaults), as in Kafka.
pub(crate) async fn alter_configs(shard: &Rc<Shard>, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in r.resources {
        let configs: Vec<(String, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = alter(shard, resource.resource_type, &resource.resource_name, r.validate_only, |_| {
            parse(&configs)
        })
        .await;
        let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err((error, message)) = outcome {
            result.error_code = error;
            result.error_message = Some(StrBytes::from_string(message));
        }
        response.responses.push(result);
    }
    response
}

/// Computes a topic's new settings from its current ones with `change`, checks them, and
/// (unless `validate_only`) has the controller apply them.
async fn alter(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(TopicSettings) -> Result<TopicSettings, (i16, String)>,
) -> Result<(), (i16, String)> {
    if resource_type != RESOURCE_TOPIC {
        return Err((
            code::INVALID_REQUEST,
            "only topic configs can be changed; broker settings come from rill.toml and the tuning profile"
                .into(),
        ));
    }
    let topic = TopicName::new(name).map_err(|e| (code::INVALID_TOPIC_EXCEPTION, e.to_string()))?;
    let current = shard
        .metadata()
        .topics
        .get(&topic)
        .map(|t| t.settings.clone())
        .ok_or_else(|| (code::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {name}")))?;
    let settings = change(current)?;
    crate::shard::log_config(shard.profile(), &settings, 1)
        .map_err(|reason| (code::INVALID_CONFIG, format!("invalid topic settings: {reason}")))?;
    if validate_only {
        return Ok(());
    }
    admin_op(shard, AdminOp::Alter { name: topic, settings })
        .await
        .map_err(|(e, m)| (crate::kafka::kafka_code(e), m))
}

fn parse(configs: &[(String, Option<String>)]) -> Result<TopicSettings, (i16, String)> {
    crate::kafka::topic_settings(configs).map_err(|e| (code::INVALID_CONFIG, e))
}

/// The settings a topic has set, as Kafka config pairs.
fn pairs(s: &TopicSettings) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut push = |name: &str, value: Option<String>| {
        if value.is_some() {
            out.push((name.to_string(), value));
        }
    };
    push("retention.ms", s.retention_ms.map(|v| v.to_string()));
    push("retention.bytes", s.retention_bytes.map(|v| v.to_string()));
    push("segment.bytes", s.segment_bytes.map(|v| v.to_string()));
    push("rill.durability", s.durability.clone());
    out
}

//! Kafka's AlterConfigs and IncrementalAlterConfigs for topics: what `kafka-configs --alter`,
//! `rpk topic alter-config` and the admin clients' `alter_configs` send.
//!
//! A change is checked here for its form (operations, duplicates), then the controller computes
//! the new settings from the topic's current ones under its admin lock (so concurrent
//! incremental changes both land), validates them like CreateTopics' configs and against the
//! profile, and has every shard reopen its partitions of the topic with them. Broker configs are
//! static (the configuration file and the tuning profile) and cannot be changed this way.

use std::collections::HashSet;
use std::rc::Rc;

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, alter_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use rill_net::kafka::code;

use crate::cluster::controller::AdminOp;
use crate::cluster::metadata::TopicName;
use crate::cluster::topic_config::{SettingsChange, log_config, topic_settings};
use crate::partition::routing::admin_op;
use crate::partition::shard::Shard;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// IncrementalAlterConfigs: SET and DELETE per config; the others keep their values.
pub(crate) async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let duplicates =
        duplicate_resources(r.resources.iter().map(|res| (res.resource_type, &res.resource_name)));
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in r.resources {
        let outcome = if duplicates.contains(&(resource.resource_type, resource.resource_name.to_string())) {
            Err((code::INVALID_REQUEST, "the resource is named more than once".to_string()))
        } else {
            match incremental_change(&resource.configs) {
                Ok(change) => {
                    alter(shard, resource.resource_type, &resource.resource_name, r.validate_only, change)
                        .await
                }
                Err(e) => Err(e),
            }
        };
        let mut result = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        (result.resource_type, result.resource_name) = (resource.resource_type, resource.resource_name);
        (result.error_code, result.error_message) = error_fields(outcome);
        response.responses.push(result);
    }
    response
}

/// The change an IncrementalAlterConfigs resource asks for, with Kafka's error codes for
/// malformed ones.
fn incremental_change(
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<SettingsChange, (i16, String)> {
    let mut seen = HashSet::new();
    let mut changes = Vec::new();
    for c in configs {
        let name = c.name.to_string();
        if !seen.insert(name.clone()) {
            return Err((code::INVALID_REQUEST, format!("{name} is named more than once")));
        }
        let value = c.value.as_ref().map(|v| v.to_string());
        match (c.config_operation, value) {
            (OP_SET, Some(v)) => changes.push((name, Some(v))),
            (OP_SET, None) => return Err((code::INVALID_REQUEST, format!("SET {name} without a value"))),
            (OP_DELETE, _) => changes.push((name, None)),
            (OP_APPEND | OP_SUBTRACT, _) => {
                return Err((
                    code::INVALID_CONFIG,
                    format!(
                        "{name}: APPEND and SUBTRACT apply to list configs; Rill's topic configs are single values"
                    ),
                ));
            }
            (op, _) => {
                return Err((code::INVALID_REQUEST, format!("unknown config operation {op} for {name}")));
            }
        }
    }
    Ok(SettingsChange::Incremental(changes))
}

/// AlterConfigs: the configs given become the topic's whole set (the others return to their
/// defaults), as in Kafka.
pub(crate) async fn alter_configs(shard: &Rc<Shard>, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let duplicates =
        duplicate_resources(r.resources.iter().map(|res| (res.resource_type, &res.resource_name)));
    let mut response = AlterConfigsResponse::default();
    for resource in r.resources {
        let configs: Vec<(String, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let mut names = HashSet::new();
        let outcome = if duplicates.contains(&(resource.resource_type, resource.resource_name.to_string())) {
            Err((code::INVALID_REQUEST, "the resource is named more than once".to_string()))
        } else if let Some((name, _)) = configs.iter().find(|(n, _)| !names.insert(n.clone())) {
            Err((code::INVALID_REQUEST, format!("{name} is named more than once")))
        } else {
            match topic_settings(&configs) {
                Ok(settings) => {
                    let change = SettingsChange::Replace(settings);
                    alter(shard, resource.resource_type, &resource.resource_name, r.validate_only, change)
                        .await
                }
                Err(e) => Err((code::INVALID_CONFIG, e)),
            }
        };
        let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
        (result.resource_type, result.resource_name) = (resource.resource_type, resource.resource_name);
        (result.error_code, result.error_message) = error_fields(outcome);
        response.responses.push(result);
    }
    response
}

/// A resource's error code and message.
fn error_fields(outcome: Result<(), (i16, String)>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (code::NONE, None),
        Err((error, message)) => (error, Some(StrBytes::from_string(message))),
    }
}

/// Resources a request names more than once (Kafka refuses each of them).
fn duplicate_resources<'a>(resources: impl Iterator<Item = (i8, &'a StrBytes)>) -> HashSet<(i8, String)> {
    let mut seen = HashSet::new();
    let mut duplicates = HashSet::new();
    for (kind, name) in resources {
        let key = (kind, name.to_string());
        if !seen.insert(key.clone()) {
            duplicates.insert(key);
        }
    }
    duplicates
}

/// Checks `change` against the topic's current settings and (unless `validate_only`) has the
/// controller apply it.
async fn alter(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: SettingsChange,
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
    // Checked here for a prompt answer; the controller computes and checks again under its lock.
    let settings = change.clone().apply(current).map_err(|e| (code::INVALID_CONFIG, e))?;
    log_config(shard.profile(), &settings, 1)
        .map_err(|reason| (code::INVALID_CONFIG, format!("invalid topic settings: {reason}")))?;
    if validate_only {
        return Ok(());
    }
    admin_op(shard, AdminOp::Alter { name: topic, change })
        .await
        .map_err(|(e, m)| (crate::protocol::kafka::kafka_code(e), m))
}

//! A topic's settings: Kafka config names to [`TopicSettings`] and back, changes to them, and
//! the log configuration they give a partition (checked against the tuning profile).

use std::collections::BTreeMap;

use rill_storage::LogConfig;
use rill_tuning::Profile;

use crate::cluster::metadata::{TopicSettings, UNLIMITED};

/// Topic configs Rill stores, and those it accepts only at the value it implements.
pub(crate) fn topic_settings(configs: &[(String, Option<String>)]) -> Result<TopicSettings, String> {
    let mut settings = TopicSettings::default();
    for (name, value) in configs {
        let value = value.as_deref().unwrap_or_default();
        let number =
            || value.parse::<u64>().map_err(|_| format!("{name}={value} is not a non-negative integer"));
        match name.as_str() {
            // Kafka's -1: no limit.
            "retention.ms" if value == "-1" => settings.retention_ms = Some(UNLIMITED),
            "retention.ms" => settings.retention_ms = Some(number()?.min(UNLIMITED)),
            "retention.bytes" if value == "-1" => settings.retention_bytes = Some(UNLIMITED),
            "retention.bytes" => settings.retention_bytes = Some(number()?.min(UNLIMITED)),
            "segment.bytes" => settings.segment_bytes = Some(number()?),
            "rill.durability" => settings.durability = Some(value.to_string()),
            "cleanup.policy" if value == "delete" => {}
            "compression.type" if value == "producer" => {}
            "min.insync.replicas" if value == "1" => {}
            "message.timestamp.type" if value == "CreateTime" => {}
            _ => return Err(format!("unsupported topic config {name}={value}")),
        }
    }
    Ok(settings)
}

/// How a topic's settings change.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum SettingsChange {
    /// The whole set (AlterConfigs, the native AlterTopic): what is not given returns to its
    /// default.
    Replace(TopicSettings),
    /// Kafka config names set (`Some`) or deleted (`None`); the others keep their values.
    Incremental(Vec<(String, Option<String>)>),
}

impl SettingsChange {
    /// The settings after the change; `Err` names what is wrong.
    pub fn apply(self, current: TopicSettings) -> Result<TopicSettings, String> {
        match self {
            SettingsChange::Replace(settings) => Ok(settings),
            SettingsChange::Incremental(changes) => {
                let mut configs: BTreeMap<String, Option<String>> = pairs(&current).into_iter().collect();
                for (name, value) in changes {
                    match value {
                        Some(v) => configs.insert(name, Some(v)),
                        None => configs.remove(&name),
                    };
                }
                topic_settings(&configs.into_iter().collect::<Vec<_>>())
            }
        }
    }
}

/// The settings a topic has set, as Kafka config pairs.
pub(crate) fn pairs(s: &TopicSettings) -> Vec<(String, Option<String>)> {
    let limit = |v: u64| if v == UNLIMITED { "-1".to_string() } else { v.to_string() };
    let mut out = Vec::new();
    let mut push = |name: &str, value: Option<String>| {
        if value.is_some() {
            out.push((name.to_string(), value));
        }
    };
    push("retention.ms", s.retention_ms.map(limit));
    push("retention.bytes", s.retention_bytes.map(limit));
    push("segment.bytes", s.segment_bytes.map(|v| v.to_string()));
    push("rill.durability", s.durability.clone());
    out
}

/// The log configuration of a partition: the profile's defaults for a shard holding `local`
/// partitions, overridden by the topic's settings.
pub(crate) fn log_config(
    profile: &Profile,
    settings: &TopicSettings,
    local: u64,
) -> Result<LogConfig, &'static str> {
    let mut config = profile.log_config_for(local.max(1));
    if let Some(bytes) = settings.segment_bytes {
        config.segment_size_bytes_max = bytes;
    }
    let limit = |v: u64| (v != UNLIMITED).then_some(v);
    if let Some(ms) = settings.retention_ms {
        config.retention_age_ms_max = limit(ms);
    }
    if let Some(bytes) = settings.retention_bytes {
        config.retention_bytes_max = limit(bytes);
    }
    if let Some(d) = &settings.durability {
        config.durability = rill_tuning::parse_durability(d)
            .map_err(|_| "durability must be always, never or interval:<ms>")?;
    }
    match config.validate() {
        Ok(()) => Ok(config),
        Err(rill_storage::Error::InvalidConfig { reason, .. }) => Err(reason),
        Err(_) => Err("invalid settings"),
    }
}

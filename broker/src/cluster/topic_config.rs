//! A topic's settings: Kafka config names to [`TopicSettings`] and back, changes to them, and
//! the log configuration they give a partition (checked against the tuning profile).

use std::collections::BTreeMap;

use rill_storage::LogConfig;
use rill_tuning::Profile;

use crate::cluster::metadata::{TopicSettings, UNLIMITED};

pub(crate) mod catalogue;

/// A topic's settings from Kafka topic configs, each name and value checked against Kafka's
/// catalogue as Kafka checks them (INVALID_CONFIG with Kafka's wording otherwise), plus Rill's own
/// `rill.durability`. Configs Rill cannot honour at any value it is given are refused with the
/// reason (`cleanup.policy=compact` until the cleaner exists, `remote.storage.enable=true`).
pub(crate) fn topic_settings(configs: &[(String, Option<String>)]) -> Result<TopicSettings, String> {
    let mut settings = TopicSettings::default();
    for (name, value) in configs {
        let Some(value) = value.as_deref() else {
            return Err(format!("Null value not supported for topic configs: {name}"));
        };
        if name == "rill.durability" {
            settings.durability = Some(value.to_string());
            continue;
        }
        let def = catalogue::find(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
        let value = def.validate(value)?;
        let number = || value.parse::<i64>().expect("validated as a number");
        match name.as_str() {
            // Kafka's -1 (and for retention.bytes any negative): no limit.
            "retention.ms" | "retention.bytes" => {
                let limit = if number() < 0 { UNLIMITED } else { (number() as u64).min(UNLIMITED) };
                if name == "retention.ms" {
                    settings.retention_ms = Some(limit);
                } else {
                    settings.retention_bytes = Some(limit);
                }
            }
            "segment.bytes" => settings.segment_bytes = Some(number() as u64),
            "remote.storage.enable" if value == "true" => {
                return Err("Tiered Storage functionality is disabled in the broker".to_string());
            }
            _ => {
                settings.configs.insert(name.clone(), value);
            }
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
    /// Rill's typed settings (the native AlterTopic): they replace the topic's, and the other
    /// Kafka configs keep their values.
    Native(TopicSettings),
}

impl SettingsChange {
    /// The settings after the change; `Err` names what is wrong.
    pub fn apply(self, current: TopicSettings) -> Result<TopicSettings, String> {
        match self {
            SettingsChange::Replace(settings) => Ok(settings),
            SettingsChange::Native(settings) => Ok(TopicSettings { configs: current.configs, ..settings }),
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
    out.extend(s.configs.iter().map(|(name, value)| (name.clone(), Some(value.clone()))));
    out
}

/// A stored config's value, parsed (the catalogue validated it).
pub(crate) fn stored<T: std::str::FromStr>(settings: &TopicSettings, name: &str) -> Option<T> {
    settings.configs.get(name).and_then(|v| v.parse().ok())
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
        if bytes < 14 {
            return Err("segment.bytes must be at least 14, as in Kafka");
        }
        config.segment_size_bytes_max = bytes;
    }
    let limit = |v: u64| (v != UNLIMITED).then_some(v);
    if let Some(ms) = settings.retention_ms {
        config.retention_age_ms_max = limit(ms);
    }
    if let Some(bytes) = settings.retention_bytes {
        config.retention_bytes_max = limit(bytes);
    }
    // A compacted topic without `delete` keeps its segments whatever their age or size.
    let policy = settings.configs.get("cleanup.policy");
    if policy.is_some_and(|p| !p.split(',').any(|p| p == "delete")) {
        config.retention_age_ms_max = None;
        config.retention_bytes_max = None;
    }
    if let Some(ms) = stored::<u64>(settings, "segment.ms") {
        config.segment_age_ms_max = ms;
    }
    if let Some(bytes) = stored::<u32>(settings, "max.message.bytes") {
        config.batch_bytes_max = bytes;
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

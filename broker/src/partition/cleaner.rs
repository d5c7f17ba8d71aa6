//! The log cleaner of compacted topics (`cleanup.policy` with `compact`): each shard checks its
//! compacted partitions every `compaction.check_interval_ms` of the profile and cleans them one
//! at a time with the storage's [`Log::compact`], reading RecordBatch v2 through
//! [`rill_net::batch_records`]. Also the produce-side rule of compacted topics: every record
//! needs a key (Kafka refuses keyless records with INVALID_RECORD).

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rill_net::batch_records::{self, Retained};
use rill_net::message::ErrorCode;
use rill_storage::{CompactionOptions, Compactor, Kept, KeyedRecord, Log};

use crate::cluster::metadata::TopicSettings;
use crate::cluster::topic_config::catalogue;
use crate::cluster::topic_config::stored;
use crate::partition::shard::Shard;

/// Decompressed bytes one batch may take while the cleaner or a produce reads its records:
/// beyond it the batch is refused (a produce) or left alone (a cleaning).
pub(crate) const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// Whether a topic's cleanup policy compacts it.
pub(crate) fn compacts(settings: &TopicSettings) -> bool {
    settings.configs.get("cleanup.policy").is_some_and(|p| p.split(',').any(|p| p == "compact"))
}

/// Whether a topic's cleanup policy deletes by retention (the default, and `compact,delete`).
pub(crate) fn deletes(settings: &TopicSettings) -> bool {
    settings.configs.get("cleanup.policy").is_none_or(|p| p.split(',').any(|p| p == "delete"))
}

/// Refuses a produced batch with a keyless record, for a compacted topic.
pub(crate) fn check_keys(batch: &Bytes) -> Result<(), ErrorCode> {
    let records =
        batch_records::decode(batch, DECOMPRESSED_BYTES_MAX).map_err(|_| ErrorCode::InvalidRecord)?;
    if records.records.iter().any(|r| r.key.is_none()) {
        return Err(ErrorCode::InvalidRecord);
    }
    Ok(())
}

/// Kafka's record format for the storage's cleaner.
pub(crate) struct KafkaCompactor;

impl Compactor for KafkaCompactor {
    fn records(&self, batch: &Bytes) -> Result<Vec<KeyedRecord>, String> {
        let records = batch_records::decode(batch, DECOMPRESSED_BYTES_MAX).map_err(|e| e.to_string())?;
        if records.is_control() {
            // Transaction markers are kept as they are (a record without a key is removed).
            return Ok(Vec::new());
        }
        Ok(records
            .records
            .iter()
            .map(|r| KeyedRecord {
                offset: r.offset,
                key: r.key.as_deref().map(batch_records::key_digest),
                tombstone: r.tombstone,
            })
            .collect())
    }

    fn retain(&self, batch: &Bytes, keep: &dyn Fn(u64) -> bool) -> Result<Kept, String> {
        let records = batch_records::decode(batch, DECOMPRESSED_BYTES_MAX).map_err(|e| e.to_string())?;
        Ok(match records.retain(batch, |r| keep(r.offset)).map_err(|e| e.to_string())? {
            Retained::All => Kept::All,
            Retained::Some(bytes) => Kept::Some(bytes),
            Retained::Nothing => Kept::Nothing,
        })
    }

    fn empty_batch(&self, base: u64, span: u32) -> Bytes {
        batch_records::empty_batch(base, span)
    }
}

/// A topic config's value as the cleaner uses it: the topic's, else Kafka's default.
fn config<T: std::str::FromStr>(settings: &TopicSettings, name: &str) -> T {
    stored(settings, name)
        .or_else(|| catalogue::find(name).and_then(|d| d.default.parse().ok()))
        .expect("catalogue defaults parse")
}

/// The options of a cleaning of a partition of a topic with `settings`.
fn options(shard: &Shard, settings: &TopicSettings) -> CompactionOptions {
    let profile = &shard.profile().compaction;
    CompactionOptions {
        key_map_bytes_max: profile.key_map_bytes_per_shard as usize,
        min_lag_ms: config(settings, "min.compaction.lag.ms"),
        delete_retention_ms: config(settings, "delete.retention.ms"),
        min_dirty_ratio: config(settings, "min.cleanable.dirty.ratio"),
        max_lag_ms: config(settings, "max.compaction.lag.ms"),
        bytes_per_second_max: (profile.bytes_per_second_max > 0).then_some(profile.bytes_per_second_max),
    }
}

/// Starts the shard's cleaner task.
pub(crate) fn start(shard: &Rc<Shard>) {
    let weak = Rc::downgrade(shard);
    let interval = Duration::from_millis(shard.profile().compaction.check_interval_ms);
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(interval).await;
            let Some(shard) = weak.upgrade() else { return };
            if shard.shutting_down() {
                return;
            }
            let metadata = shard.metadata();
            let work: Vec<(Log, CompactionOptions)> = shard
                .logs_by_partition()
                .into_iter()
                .filter_map(|((topic, _), log)| {
                    let settings = &metadata.topics.get(&topic)?.settings;
                    compacts(settings).then(|| (log, options(&shard, settings)))
                })
                .collect();
            drop(shard);
            for (log, options) in work {
                match log.compact(&KafkaCompactor, &options).await {
                    Ok(_) | Err(rill_storage::Error::Closed(_)) => {}
                    Err(error) => tracing::warn!(dir = %log.dir().display(), %error, "compaction failed"),
                }
            }
        }
    })
    .detach();
}

//! The controller: topic administration on shard 0.
//!
//! One admin operation runs at a time. It changes a copy of the metadata, persists it
//! (`metadata.toml`, crash-safe), then has every shard adopt it (opening or removing logs), and
//! only then answers. A crash after the save and before every shard applied it is repaired at
//! start-up, when shards open exactly the partitions the saved metadata gives them and orphaned
//! topic directories are removed.

use std::rc::Rc;

use rill_net::message::ErrorCode;

use crate::cluster::metadata::{Metadata, MetadataError, MetadataStore};
use crate::partition::shard::{AdminOp, CONTROLLER, Shard, ShardRequest, log_config};

/// Runs an admin operation; only the controller shard calls this.
pub(crate) async fn run(shard: &Rc<Shard>, op: AdminOp) -> Result<(), (ErrorCode, String)> {
    assert_eq!(shard.index, CONTROLLER, "admin operations run on the controller shard");
    if shard.shutting_down() {
        return Err((ErrorCode::ShuttingDown, "broker is shutting down".into()));
    }
    let _permit =
        shard.admin_lock().acquire_permit(1).await.map_err(|_| (ErrorCode::ShuttingDown, "closed".into()))?;
    let mut metadata: Metadata = (*shard.metadata()).clone();
    let profile_check = |settings: &crate::cluster::metadata::TopicSettings| {
        log_config(shard.profile(), settings, 1)
            .map(|_| ())
            .map_err(|reason| (ErrorCode::InvalidConfig, format!("invalid topic settings: {reason}")))
    };
    let deleted = match &op {
        AdminOp::Delete { name } => Some(name.clone()),
        _ => None,
    };
    let result = match op {
        AdminOp::Create { name, partitions, settings } => {
            profile_check(&settings)?;
            metadata.create_topic(name, partitions, settings).map(|_| ())
        }
        AdminOp::Delete { name } => metadata.delete_topic(&name).map(|_| ()),
        AdminOp::AddPartitions { name, total } => metadata.add_partitions(&name, total).map(|_| ()),
        AdminOp::Alter { name, change } => {
            // Computed here, under the admin lock, from the settings as they are now: two
            // concurrent incremental changes both land.
            let current = metadata.topics.get(&name).map(|t| t.settings.clone());
            let current = current.ok_or_else(|| (ErrorCode::UnknownTopic, format!("no topic {name}")))?;
            let settings = change.apply(current).map_err(|m| (ErrorCode::InvalidConfig, m))?;
            profile_check(&settings)?;
            metadata.alter_topic(&name, settings).map(|_| ())
        }
    };
    result.map_err(|e| (error_code(&e), e.to_string()))?;
    let store = MetadataStore::new(shard.data_dir());
    let to_save = metadata.clone();
    glommio::executor()
        .spawn_blocking(move || store.save(&to_save))
        .await
        .map_err(|e| (ErrorCode::StorageError, e.to_string()))?;
    let mut tasks = Vec::new();
    for target in 0..shard.count {
        let (shard, metadata) = (shard.clone(), metadata.clone());
        tasks.push(glommio::spawn_local(
            async move { shard.call(target, ShardRequest::Apply(metadata)).await },
        ));
    }
    for task in tasks {
        task.await;
    }
    if let Some(name) = deleted {
        // Every shard has removed its partitions; the topic's directory goes last.
        let dir = shard.data_dir().join("topics").join(name.as_str());
        let _ = glommio::executor().spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }
    Ok(())
}

fn error_code(e: &MetadataError) -> ErrorCode {
    match e {
        MetadataError::InvalidName { .. } => ErrorCode::InvalidTopicName,
        MetadataError::TopicExists(_) => ErrorCode::TopicExists,
        MetadataError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        MetadataError::InvalidPartitions(_) => ErrorCode::InvalidConfig,
        MetadataError::Io { .. } | MetadataError::Damaged { .. } => ErrorCode::StorageError,
    }
}

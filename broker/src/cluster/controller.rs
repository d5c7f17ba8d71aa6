//! The controller: topic administration on shard 0.
//!
//! One admin operation runs at a time. It changes a copy of the metadata, persists it
//! (`metadata.toml`, crash-safe), then has every shard adopt it (opening or removing logs), and
//! only then answers. A crash after the save and before every shard applied it is repaired at
//! start-up, when shards open exactly the partitions the saved metadata gives them and orphaned
//! topic directories are removed.

use std::path::Path;
use std::rc::Rc;

use rill_net::message::ErrorCode;
use rill_tuning::Profile;

use crate::cluster::metadata::{Metadata, MetadataError, MetadataStore};
use crate::cluster::metadata::{TopicName, TopicSettings};
use crate::cluster::topic_config::{SettingsChange, log_config};

/// The controller (topic administration, metadata persistence) lives on shard 0.
pub(crate) const CONTROLLER: usize = 0;

/// Topic administration, run by the controller.
pub(crate) enum AdminOp {
    Create {
        name: TopicName,
        partitions: u32,
        settings: TopicSettings,
    },
    Delete {
        name: TopicName,
    },
    AddPartitions {
        name: TopicName,
        total: u32,
    },
    /// Change a topic's settings.
    Alter {
        name: TopicName,
        change: SettingsChange,
    },
}

/// What the controller needs from the shard it runs on (the partition service implements it,
/// so this layer does not import that one).
pub(crate) trait ControllerHost: 'static {
    /// This shard's index.
    fn index(&self) -> usize;
    /// Shards in the node.
    fn shard_count(&self) -> usize;
    fn shutting_down(&self) -> bool;
    /// Held while an admin operation runs: one at a time.
    fn admin_lock(&self) -> &glommio::sync::Semaphore;
    /// The metadata this shard has adopted.
    fn metadata(&self) -> Rc<Metadata>;
    fn profile(&self) -> &Profile;
    fn data_dir(&self) -> &Path;
    /// Has shard `target` adopt `metadata` (open and remove its logs) and waits for it.
    async fn apply_on(self: Rc<Self>, target: usize, metadata: Metadata);
}

/// Runs an admin operation; only the controller shard calls this.
pub(crate) async fn run<H: ControllerHost>(shard: &Rc<H>, op: AdminOp) -> Result<(), (ErrorCode, String)> {
    assert_eq!(shard.index(), CONTROLLER, "admin operations run on the controller shard");
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
    for target in 0..shard.shard_count() {
        let (shard, metadata) = (shard.clone(), metadata.clone());
        tasks.push(glommio::spawn_local(shard.apply_on(target, metadata)));
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

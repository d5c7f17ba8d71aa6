//! The controller: topic administration on shard 0, through the metadata Raft group.
//!
//! One admin operation runs at a time on a node. The controller checks it against the cluster
//! state as last applied (names, partition counts, settings against the profile), places new
//! partitions ([`ClusterState::place`]), and proposes the resulting command; it answers once the
//! command is committed and applied here, which includes every shard of this node adopting the
//! new view ([`adopt`]: `metadata.toml` saved, logs opened or removed). A crash after the commit
//! and before the shards adopted it is repaired at start-up: the group replays its log and the
//! shards adopt the view it gives.

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use rill_net::message::ErrorCode;
use rill_tuning::Profile;

use crate::cluster::metadata::{Metadata, MetadataStore, PARTITIONS_PER_TOPIC_MAX};
use crate::cluster::metadata::{TopicName, TopicSettings};
use crate::cluster::metadata_group::{GroupHost, MetadataGroup};
use crate::cluster::peers::Peers;
use crate::cluster::state::{Command, NodeId, NodeInfo, Refusal};
use crate::cluster::topic_config::{SettingsChange, log_config};

/// The controller (topic administration, metadata persistence) lives on shard 0.
pub(crate) const CONTROLLER: usize = 0;

/// Topic administration, run by the controller (forwarded to it as JSON).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum AdminOp {
    Create {
        name: TopicName,
        partitions: u32,
        /// `None`: the default (1).
        replication_factor: Option<u32>,
        /// The replica nodes of each partition, leader first (instead of a replication factor).
        assignment: Option<Vec<Vec<NodeId>>>,
        settings: TopicSettings,
        /// Check everything, change nothing.
        validate_only: bool,
    },
    Delete {
        name: TopicName,
    },
    AddPartitions {
        name: TopicName,
        total: u32,
        /// The replica nodes of each new partition.
        assignment: Option<Vec<Vec<NodeId>>>,
        validate_only: bool,
    },
    /// Change a topic's settings.
    Alter {
        name: TopicName,
        change: SettingsChange,
    },
    /// A node announces itself (addresses, shard count).
    RegisterNode {
        id: NodeId,
        info: NodeInfo,
    },
    /// Make a node a voter of the metadata group (it was started with `--join`).
    AddNode {
        id: NodeId,
    },
    /// Take a node out of the cluster (refused while it holds replicas).
    RemoveNode {
        id: NodeId,
    },
    /// Partition leaders elected by their groups, with their in-sync replicas.
    SetLeaders {
        leaders: Vec<(TopicName, u32, crate::cluster::metadata::PartitionLeader)>,
    },
}

/// What the controller needs from the shard it runs on (the partition service implements it,
/// so this layer does not import that one).
pub(crate) trait ControllerHost: GroupHost {
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
    /// The metadata group's driver, once this shard has opened it.
    fn metadata_group(&self) -> Option<Rc<MetadataGroup>>;
    /// The links to the other nodes (cluster mode).
    fn peers(&self) -> Option<Rc<Peers>>;
}

/// Runs an admin operation, forwarding it to the controller when another node is the
/// controller; only the controller shard calls this.
pub(crate) async fn run<H: ControllerHost>(shard: &Rc<H>, op: AdminOp) -> Result<(), Refusal> {
    run_here_or_forward(shard, op, true).await
}

/// Runs an admin operation another node forwarded: never forwarded again.
pub(crate) async fn run_forwarded<H: ControllerHost>(shard: &Rc<H>, op: AdminOp) -> Result<(), Refusal> {
    run_here_or_forward(shard, op, false).await
}

async fn run_here_or_forward<H: ControllerHost>(
    shard: &Rc<H>,
    op: AdminOp,
    may_forward: bool,
) -> Result<(), Refusal> {
    assert_eq!(shard.index(), CONTROLLER, "admin operations run on the controller shard");
    if shard.shutting_down() {
        return Err((ErrorCode::ShuttingDown, "broker is shutting down".into()));
    }
    let _permit =
        shard.admin_lock().acquire_permit(1).await.map_err(|_| (ErrorCode::ShuttingDown, "closed".into()))?;
    let group = metadata_group(shard).await?;
    // Checks hold only against the latest state: this node must lead and have applied all.
    // Elsewhere the request goes to the controller, again if the controller changes meanwhile.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if group.wait_caught_up(Duration::from_secs(5)).await {
            break;
        }
        let leader = group.leader().filter(|l| *l != group.node());
        let (Some(leader), Some(peers), true) = (leader, shard.peers(), may_forward) else {
            let leader = group.leader().map_or("none".to_string(), |l| format!("node {l}"));
            return Err((
                ErrorCode::NotController,
                format!("this node is not the controller (controller: {leader})"),
            ));
        };
        match peers.forward(leader, &op).await {
            Err((ErrorCode::NotController, _)) if std::time::Instant::now() < deadline => {
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
    let state = group.state();
    let profile_check = |settings: &TopicSettings| {
        log_config(shard.profile(), settings, 1)
            .map(|_| ())
            .map_err(|reason| (ErrorCode::InvalidConfig, format!("invalid topic settings: {reason}")))
    };
    let unknown = |name: &TopicName| (ErrorCode::UnknownTopic, format!("unknown topic {name}"));
    let (command, validate_only) = match op {
        AdminOp::AddNode { id } => {
            if group.voters().contains(&id) {
                return Ok(());
            }
            return group.propose_membership(id, true).await;
        }
        AdminOp::RemoveNode { id } => {
            let held = state
                .topics
                .values()
                .flat_map(|t| t.partitions.iter().flatten())
                .filter(|r| r.node == id)
                .count();
            if held > 0 {
                return Err((
                    ErrorCode::InvalidRequest,
                    format!(
                        "node {id} still holds {held} replicas, which have nowhere to go (reassignment is not built yet)"
                    ),
                ));
            }
            if !group.voters().contains(&id) && !state.nodes.contains_key(&id) {
                return Err((ErrorCode::InvalidRequest, format!("node {id} is not in the cluster")));
            }
            if group.voters().contains(&id) {
                group.propose_membership(id, false).await?;
            }
            if !state.nodes.contains_key(&id) {
                return Ok(());
            }
            (Command::RemoveNode { id }, false)
        }
        AdminOp::Create { name, partitions, replication_factor, assignment, settings, validate_only } => {
            profile_check(&settings)?;
            check_partitions(partitions)?;
            if state.topics.contains_key(&name) {
                return Err((ErrorCode::TopicExists, format!("topic {name} already exists")));
            }
            let partitions = state.place(partitions, replication_factor, assignment.as_deref())?;
            (Command::CreateTopic { name, settings, partitions }, validate_only)
        }
        AdminOp::Delete { name } => {
            if !state.topics.contains_key(&name) {
                return Err(unknown(&name));
            }
            (Command::DeleteTopic { name }, false)
        }
        AdminOp::AddPartitions { name, total, assignment, validate_only } => {
            let topic = state.topics.get(&name).ok_or_else(|| unknown(&name))?;
            check_partitions(total)?;
            let current = topic.partitions.len() as u32;
            if total <= current {
                return Err((
                    ErrorCode::InvalidConfig,
                    format!(
                        "invalid partition count: topic {name} has {current} partitions; the new count must be larger"
                    ),
                ));
            }
            let replication_factor = topic.partitions.first().map(|r| r.len() as u32);
            let partitions = state.place(total - current, replication_factor, assignment.as_deref())?;
            (Command::AddPartitions { name, partitions }, validate_only)
        }
        AdminOp::Alter { name, change } => {
            // Computed here, under the admin lock, from the settings as they are now: two
            // concurrent incremental changes both land.
            let current =
                state.topics.get(&name).map(|t| t.settings.clone()).ok_or_else(|| unknown(&name))?;
            let settings = change.apply(current).map_err(|m| (ErrorCode::InvalidConfig, m))?;
            profile_check(&settings)?;
            (Command::AlterTopic { name, settings }, false)
        }
        AdminOp::RegisterNode { id, info } => {
            if state.nodes.get(&id) == Some(&info) {
                return Ok(());
            }
            (Command::RegisterNode { id, info }, false)
        }
        AdminOp::SetLeaders { leaders } => {
            // Only what changes the table is proposed.
            let leaders: Vec<_> = leaders
                .into_iter()
                .filter(|(name, partition, leader)| {
                    let held =
                        state.topics.get(name).and_then(|t| t.leaders.get(*partition as usize).cloned());
                    state.topics.contains_key(name)
                        && held.flatten().is_none_or(|held| {
                            leader.epoch > held.epoch || (leader.epoch == held.epoch && *leader != held)
                        })
                })
                .collect();
            if leaders.is_empty() {
                return Ok(());
            }
            (Command::SetLeaders { leaders }, false)
        }
    };
    if validate_only {
        return Ok(());
    }
    group.propose(command).await
}

/// The metadata group, waiting a little for a shard that is still opening it.
async fn metadata_group<H: ControllerHost>(shard: &Rc<H>) -> Result<Rc<MetadataGroup>, Refusal> {
    for _ in 0..1000 {
        if let Some(group) = shard.metadata_group() {
            return Ok(group);
        }
        if shard.shutting_down() {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    Err((ErrorCode::NotController, "the metadata group is not open".into()))
}

fn check_partitions(n: u32) -> Result<(), Refusal> {
    if n == 0 || n > PARTITIONS_PER_TOPIC_MAX {
        return Err((
            ErrorCode::InvalidConfig,
            format!("invalid partition count: {n} is not between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
        ));
    }
    Ok(())
}

/// Has every shard of the node adopt `view`: saves it as `metadata.toml` (a readable copy of
/// what the group's log says; the log is the truth), has each shard open and remove its logs,
/// then removes the directories of topics that are gone.
pub(crate) async fn adopt<H: ControllerHost>(shard: Rc<H>, view: Metadata) {
    let previous = shard.metadata();
    let store = MetadataStore::new(shard.data_dir());
    let to_save = view.clone();
    if let Err(error) = glommio::executor().spawn_blocking(move || store.save(&to_save)).await {
        // The group's log holds the change; the file is rewritten at the next one.
        tracing::warn!(%error, "saving metadata.toml failed");
    }
    let mut tasks = Vec::new();
    for target in 0..shard.shard_count() {
        let (shard, view) = (shard.clone(), view.clone());
        tasks.push(glommio::spawn_local(shard.apply_on(target, view)));
    }
    for task in tasks {
        task.await;
    }
    for name in previous.topics.keys().filter(|n| !view.topics.contains_key(*n)) {
        // Every shard has removed its partitions; the topic's directory goes last.
        let dir = shard.data_dir().join("topics").join(name.as_str());
        let _ = glommio::executor().spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }
}

/// Where the metadata group keeps its journal in a data directory.
pub(crate) fn journal_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("raft").join("metadata").join("journal")
}

//! One shard: the partition logs it owns, its copy of the metadata, and messages to and from
//! the other shards.
//!
//! Every operation on a partition runs on the partition's owning shard. A shard that receives a
//! request for a partition it does not own sends a `ShardRequest` over the glommio channel mesh
//! and awaits the `ShardReply`; nothing is shared between shards but these messages.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use rill_net::message::{Acks, ErrorCode, OffsetSpec};
use rill_net::record_batch::BatchHeader;
use rill_storage::{Clock, Log, LogConfig, SystemClock};
use rill_tuning::Profile;

use crate::cluster::metadata::{Metadata, TopicName};
use crate::cluster::topic_config::log_config;
use crate::partition::producer::Producers;

/// Logs a stopping shard closes at once.
const CLOSING_AT_ONCE: usize = 16;

/// A message on the shard mesh.
pub(crate) enum Msg {
    Request { from: usize, token: u64, request: ShardRequest },
    Reply { token: u64, reply: ShardReply },
}

/// Work for a partition's owner (or, for `Admin`, for the controller shard 0).
/// The in-sync replicas of a partition this node leads: itself, until partition data is
/// replicated (issue 14's Raft groups).
const IN_SYNC_REPLICAS: u32 = 1;

pub(crate) enum ShardRequest {
    Produce {
        topic: TopicName,
        partition: u32,
        /// As `record_batch::split_produced` returned them: each batch's CRC and counts were checked.
        batches: Vec<(BatchHeader, Bytes)>,
        acks: Acks,
    },
    Fetch {
        topic: TopicName,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        /// Whether the first batch comes back even when it is larger than `max_bytes` (Kafka's
        /// rule for the first partition with data); otherwise only batches that fit.
        min_one: bool,
        wait_ms: u32,
    },
    ListOffset {
        topic: TopicName,
        partition: u32,
        spec: OffsetSpec,
    },
    State {
        topic: TopicName,
        partition: u32,
    },
    /// Kafka DeleteRecords: the log start moves to `offset` (-1: the high watermark).
    DeleteRecords {
        topic: TopicName,
        partition: u32,
        offset: i64,
    },
    /// The size of every log the shard holds (Kafka DescribeLogDirs).
    LogSizes,
    /// A partition's active idempotent producers (Kafka DescribeProducers).
    DescribeProducers {
        topic: TopicName,
        partition: u32,
    },
    Admin(crate::cluster::controller::AdminOp),
    /// The cluster status (the controller shard).
    ClusterStatus,
    Apply(Metadata),
    /// Work for a consumer group's coordinator.
    Group(crate::partition::group::ops::GroupOp),
    /// This shard's metrics, for a scrape.
    Metrics,
    /// Shard `shard`'s offline partitions (see `shard/offline.rs`).
    Offline {
        shard: usize,
        partitions: Vec<(TopicName, u32)>,
    },
    /// Frames of partition groups for other nodes (to shard 0, which holds the links).
    PeerSend(Vec<(crate::cluster::state::NodeId, Vec<Bytes>)>),
    /// A partition group's message from another node, for the shard that owns the group.
    ReplicaIn(u64, crate::partition::replica::ReplicaMessage),
    /// A peer node's link came up or was lost: hibernating groups it is a member of wake.
    NodeChanged(crate::cluster::state::NodeId),
    /// A partition's replica on this node became its leader (to shard 0, which reports it).
    ReportLeader {
        topic: TopicName,
        partition: u32,
        term: u64,
        isr: Vec<crate::cluster::state::NodeId>,
    },
}

/// Where a produce's batches went.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Appended {
    /// The first batch's base offset.
    pub base: u64,
    /// The broker's timestamp stamped on the batches of a LogAppendTime topic, else -1.
    pub log_append_time_ms: i64,
    /// The partition's log start offset after the append.
    pub log_start: u64,
}

/// What a fetch found on the owner.
pub(crate) struct FetchOutcome {
    pub error: ErrorCode,
    pub log_start: u64,
    pub high_watermark: u64,
    pub batches: Vec<Bytes>,
}

impl FetchOutcome {
    /// Bytes of the batches.
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }

    /// Keeps the longest prefix of the batches that fits in `max_bytes`.
    pub fn within(mut self, max_bytes: usize) -> FetchOutcome {
        let mut used = 0usize;
        let keep = self
            .batches
            .iter()
            .take_while(|b| {
                used = used.saturating_add(b.len());
                used <= max_bytes
            })
            .count();
        self.batches.truncate(keep);
        self
    }
}

pub(crate) enum ShardReply {
    Produced(Result<Appended, ErrorCode>),
    Fetched(FetchOutcome),
    Offset(Result<i64, ErrorCode>),
    State(Result<(u64, u64), ErrorCode>),
    LogSizes(Vec<(TopicName, u32, u64)>),
    /// Producer id, epoch, last sequence, last append time (ms).
    Producers(Result<Vec<(i64, i16, i32, i64)>, ErrorCode>),
    Admin(Result<(), (ErrorCode, String)>),
    ClusterStatus(Box<rill_net::message::ResponseBody>),
    Applied,
    Group(crate::partition::group::ops::GroupReply),
    Metrics(Box<crate::metrics::ShardSnapshot>),
}

/// A leadership report queued on shard 0: the term and the in-sync replicas.
type LeaderReport = (u64, Vec<crate::cluster::state::NodeId>);

pub(crate) struct Shard {
    pub index: usize,
    pub count: usize,
    data_dir: PathBuf,
    profile: Profile,
    metadata: RefCell<Rc<Metadata>>,
    logs: RefCell<HashMap<(TopicName, u32), Log>>,
    /// Owned partitions whose log failed to open (damage below its recovery point, an I/O
    /// error), with the reason: clients get KAFKA_STORAGE_ERROR, the other partitions serve.
    offline: RefCell<HashMap<(TopicName, u32), String>>,
    /// What every shard (this one too) last said of its `offline` partitions.
    offline_known: RefCell<offline::OfflineKnown>,
    /// The partition count the open logs' memory shares were computed for.
    memory_shared_by: Cell<u64>,
    /// Idempotent-producer state of owned partitions (created on first use).
    producers: RefCell<HashMap<(TopicName, u32), Rc<Producers>>>,
    /// Idempotent producers tracked by all of them (bounded, see `producer.rs`).
    producer_count: Rc<Cell<usize>>,
    /// The order of appends to each owned partition (created on first use).
    sequencers: RefCell<HashMap<(TopicName, u32), Rc<crate::partition::order::Sequencer>>>,
    senders: Senders<Msg>,
    /// Mesh peer id of each shard index.
    peer_of: Vec<usize>,
    waiters: RefCell<HashMap<u64, LocalSender<ShardReply>>>,
    next_token: Cell<u64>,
    admin: glommio::sync::Semaphore,
    /// Metadata applications run one at a time, in the order they were asked for.
    applying: glommio::sync::Semaphore,
    /// Fired once the broker starts stopping (a watcher task turns the flag into this).
    pub stopping: crate::signal::Signal,
    /// Bytes the shard's connections hold (partial and in-flight requests, queued responses).
    connection_bytes: Cell<usize>,
    pub shutdown: Arc<AtomicBool>,
    /// Host and port Kafka clients are told to connect to.
    kafka_advertised: RefCell<(String, u16)>,
    /// With auto-creation on: partitions of a topic a Kafka client's metadata request creates.
    auto_create_partitions: Cell<Option<u32>>,
    /// Offset retention of this shard's groups.
    offsets_retention: Cell<crate::partition::group::OffsetsRetention>,
    /// Producer ids handed out by this shard (InitProducerId).
    pub producer_ids: crate::partition::producer::IdAllocator,
    /// The consumer groups this shard coordinates.
    pub groups: Rc<crate::partition::group::Coordinator>,
    /// The metadata Raft group's driver (the controller shard only, once opened).
    metadata_group: RefCell<Option<Rc<crate::cluster::metadata_group::MetadataGroup>>>,
    /// Links to the other nodes (the controller shard in cluster mode).
    peers: RefCell<Option<Rc<crate::cluster::peers::Peers>>>,
    /// The controller's node id as the controller shard last saw it (-1: unknown).
    controller: RefCell<Arc<std::sync::atomic::AtomicI64>>,
    /// The cluster id Kafka clients are told (the data directory's `node.toml`).
    cluster_id: RefCell<Rc<str>>,
    /// This shard's counters (see `metrics.rs`).
    pub metrics: RefCell<crate::metrics::ShardMetrics>,
    /// The replicated partitions this shard owns: their Raft groups.
    pub replication: crate::partition::replication::Replication,
    /// On shard 0: the shard owning each partition group of this node.
    group_routes: RefCell<HashMap<u64, usize>>,
    /// On shard 0: leaders to report to the controller, and whether the reporting task runs.
    leader_reports: RefCell<BTreeMap<(TopicName, u32), LeaderReport>>,
    reporting: Cell<bool>,
    /// The term each partition this shard leads was last reported in (producer state is
    /// rebuilt once per term).
    reported_terms: RefCell<HashMap<(TopicName, u32), u64>>,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        data_dir: PathBuf,
        profile: Profile,
        metadata: Metadata,
        senders: Senders<Msg>,
        peer_of: Vec<usize>,
        shutdown: Arc<AtomicBool>,
    ) -> Shard {
        Shard {
            index,
            count: peer_of.len(),
            data_dir,
            profile,
            metadata: RefCell::new(Rc::new(metadata)),
            logs: RefCell::new(HashMap::new()),
            offline: RefCell::new(HashMap::new()),
            offline_known: RefCell::default(),
            memory_shared_by: Cell::new(0),
            producers: RefCell::new(HashMap::new()),
            sequencers: RefCell::new(HashMap::new()),
            producer_count: Rc::default(),
            producer_ids: crate::partition::producer::IdAllocator::new(index),
            groups: Rc::new(crate::partition::group::Coordinator::default()),
            kafka_advertised: RefCell::new((String::new(), 0)),
            auto_create_partitions: Cell::new(None),
            offsets_retention: Cell::new(crate::partition::group::OffsetsRetention::default()),
            senders,
            peer_of,
            waiters: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            admin: glommio::sync::Semaphore::new(1),
            applying: glommio::sync::Semaphore::new(1),
            connection_bytes: Cell::new(0),
            stopping: crate::signal::Signal::default(),
            shutdown,
            metadata_group: RefCell::new(None),
            peers: RefCell::new(None),
            controller: RefCell::new(Arc::new(std::sync::atomic::AtomicI64::new(-1))),
            cluster_id: RefCell::new(Rc::from("")),
            metrics: RefCell::default(),
            replication: Default::default(),
            group_routes: RefCell::default(),
            leader_reports: RefCell::default(),
            reporting: Cell::new(false),
            reported_terms: RefCell::default(),
        }
    }

    /// Shares the cell the controller shard keeps the controller's id in.
    pub fn set_controller_cell(&self, cell: Arc<std::sync::atomic::AtomicI64>) {
        *self.controller.borrow_mut() = cell;
    }

    /// The controller's node id, if one is known.
    pub fn controller(&self) -> Option<u32> {
        u32::try_from(self.controller.borrow().load(std::sync::atomic::Ordering::Relaxed)).ok()
    }

    /// Sets the cluster id (at start-up, from the data directory's identity).
    pub fn set_cluster_id(&self, id: &str) {
        *self.cluster_id.borrow_mut() = Rc::from(id);
    }

    /// The cluster id Kafka clients are told.
    pub fn cluster_id(&self) -> Rc<str> {
        self.cluster_id.borrow().clone()
    }

    /// Installs the links to the other nodes (the controller shard, at start-up).
    pub fn set_peers(&self, peers: Rc<crate::cluster::peers::Peers>) {
        *self.peers.borrow_mut() = Some(peers);
    }

    /// Installs the metadata group's driver (the controller shard, at start-up).
    pub fn set_metadata_group(&self, group: Rc<crate::cluster::metadata_group::MetadataGroup>) {
        *self.metadata_group.borrow_mut() = Some(group);
    }

    pub fn metadata(&self) -> Rc<Metadata> {
        self.metadata.borrow().clone()
    }

    /// The owner of a partition, or the error a client gets.
    pub fn owner(&self, topic: &TopicName, partition: u32) -> Result<usize, ErrorCode> {
        let metadata = self.metadata.borrow();
        let t = metadata.topics.get(topic).ok_or(ErrorCode::UnknownTopic)?;
        let shard =
            t.shards.get(partition as usize).map(|s| *s as usize).ok_or(ErrorCode::UnknownPartition)?;
        // A replicated partition held here goes to its replica, which knows whether it leads
        // now (the metadata learns of a new leader a moment after its group elected it).
        let replicated_here = metadata.is_replicated(t, partition) && metadata.is_local(t, partition);
        if metadata.leader(t, partition) != metadata.node && !replicated_here {
            // Another node leads it: clients refresh their metadata and go there.
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        Ok(shard)
    }

    /// Starts the tasks that receive mesh messages, apply retention, and watch for shutdown.
    pub fn start(self: &Rc<Self>, mut receivers: Receivers<Msg>) {
        let watcher = Rc::downgrade(self);
        glommio::spawn_local(async move {
            // One timer per shard turns the signal handler's flag into a wake-up for every
            // connection, instead of each idle connection polling the flag.
            loop {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                let Some(shard) = watcher.upgrade() else { return };
                if shard.shutdown.load(Ordering::Relaxed) {
                    shard.stopping.fire();
                    return;
                }
            }
        })
        .detach();
        for (_, receiver) in receivers.streams() {
            let shard = self.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = receiver.recv().await {
                    shard.dispatch(msg);
                }
            })
            .detach();
        }
        let groups = Rc::downgrade(&self.groups);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(250)).await;
                let Some(groups) = groups.upgrade() else { return };
                groups.expire_sessions();
            }
        })
        .detach();
        let shard = Rc::downgrade(self);
        glommio::spawn_local(async move {
            // Ticks of at most a second, so a configured interval applies at once.
            let mut last = std::time::Instant::now();
            loop {
                let Some(retention) = shard.upgrade().map(|s| s.offsets_retention.get()) else { return };
                let interval = Duration::from_millis(retention.check_interval_ms);
                glommio::timer::sleep(interval.min(Duration::from_secs(1))).await;
                let Some(shard) = shard.upgrade() else { return };
                if last.elapsed() < interval || !shard.groups.is_open() {
                    continue;
                }
                last = std::time::Instant::now();
                let now = crate::partition::group::now_ms();
                match shard.groups.expire_offsets(now, retention.retention_ms as i64).await {
                    Ok((0, 0)) => {}
                    Ok((offsets, groups)) => {
                        tracing::info!(
                            shard = shard.index,
                            offsets,
                            groups,
                            "expired committed offsets and empty groups"
                        )
                    }
                    Err(code) => tracing::error!(shard = shard.index, code, "expiring committed offsets"),
                }
            }
        })
        .detach();
        crate::partition::cleaner::start(self);
        let shard = Rc::downgrade(self);
        let interval = Duration::from_millis(self.profile.log.retention_check_interval_ms);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(interval).await;
                let Some(shard) = shard.upgrade() else { return };
                let logs: Vec<Log> = shard.logs.borrow().values().cloned().collect();
                for log in logs {
                    if let Err(error) = log.enforce_retention().await {
                        tracing::error!(dir = %log.dir().display(), %error, "retention failed");
                    }
                }
            }
        })
        .detach();
    }

    fn dispatch(self: &Rc<Self>, msg: Msg) {
        match msg {
            Msg::Request { from, token, request } => {
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let reply = shard.handle(request).await;
                    let peer = shard.peer_of[from];
                    if shard.senders.send_to(peer, Msg::Reply { token, reply }).await.is_err() {
                        tracing::warn!(shard = shard.index, to = from, "reply dropped: peer gone");
                    }
                })
                .detach();
            }
            Msg::Reply { token, reply } => {
                if let Some(tx) = self.waiters.borrow_mut().remove(&token) {
                    let _ = tx.try_send(reply);
                }
            }
        }
    }

    /// Runs `request` on shard `target`: here if it is this shard, else over the mesh.
    pub async fn call(self: &Rc<Self>, target: usize, request: ShardRequest) -> ShardReply {
        self.call_placed(target, request, || {}).await
    }

    /// [`Shard::call`], calling `placed` once the request holds its place in the owner's
    /// order: here, after its first poll (a produce takes its partition's ticket there); on
    /// another shard, once the message is in the mesh channel, which delivers in order to a
    /// FIFO task queue (see `order.rs`).
    pub async fn call_placed(
        self: &Rc<Self>,
        target: usize,
        request: ShardRequest,
        placed: impl FnOnce(),
    ) -> ShardReply {
        if target == self.index {
            let mut handling = std::pin::pin!(self.handle(request));
            let first = futures_lite::future::poll_once(handling.as_mut()).await;
            placed();
            return match first {
                Some(reply) => reply,
                None => handling.await,
            };
        }
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        self.waiters.borrow_mut().insert(token, tx);
        let msg = Msg::Request { from: self.index, token, request };
        let sent = self.senders.send_to(self.peer_of[target], msg).await;
        placed();
        if sent.is_err() {
            self.waiters.borrow_mut().remove(&token);
            return ShardReply::Admin(Err((ErrorCode::ShuttingDown, "shard unavailable".into())));
        }
        match rx.recv().await {
            Some(reply) => reply,
            None => ShardReply::Admin(Err((ErrorCode::ShuttingDown, "shard unavailable".into()))),
        }
    }

    async fn handle(self: &Rc<Self>, request: ShardRequest) -> ShardReply {
        match request {
            ShardRequest::Produce { topic, partition, batches, acks } => {
                ShardReply::Produced(self.produce_local(&topic, partition, batches, acks).await)
            }
            ShardRequest::Fetch { topic, partition, offset, max_bytes, min_one, wait_ms } => {
                let fetched = self.fetch_local(&topic, partition, offset, max_bytes, wait_ms).await;
                ShardReply::Fetched(if min_one { fetched } else { fetched.within(max_bytes as usize) })
            }
            ShardRequest::ListOffset { topic, partition, spec } => {
                ShardReply::Offset(self.offset_local(&topic, partition, spec).await)
            }
            ShardRequest::Metrics => {
                let partitions = self
                    .logs
                    .borrow()
                    .iter()
                    .map(|((topic, partition), log)| crate::metrics::PartitionGauges {
                        topic: topic.to_string(),
                        partition: *partition,
                        high_watermark: self
                            .replication
                            .slot(topic, *partition)
                            .map_or(log.log_end_offset(), |s| s.high_watermark()),
                        log_start: log.log_start_offset(),
                        size_bytes: log.stats().size_bytes,
                    })
                    .collect();
                let groups = self.groups.gauges();
                let metrics = self.metrics.borrow();
                let mut snapshot =
                    crate::metrics::ShardSnapshot::new(self.index, &metrics, partitions, groups);
                snapshot.raft_groups = self.replication.counts();
                ShardReply::Metrics(Box::new(snapshot))
            }
            ShardRequest::DeleteRecords { topic, partition, offset } => {
                ShardReply::Offset(self.delete_records_local(&topic, partition, offset).await)
            }
            ShardRequest::LogSizes => ShardReply::LogSizes(self.log_sizes()),
            ShardRequest::DescribeProducers { topic, partition } => {
                ShardReply::Producers(self.describe_producers_local(&topic, partition).await)
            }
            ShardRequest::State { topic, partition } => ShardReply::State(
                self.log(&topic, partition).map(|log| (log.log_start_offset(), log.log_end_offset())),
            ),
            ShardRequest::Admin(op) => ShardReply::Admin(crate::cluster::controller::run(self, op).await),
            ShardRequest::Apply(metadata) => {
                self.apply(metadata).await;
                self.announce_offline().await;
                ShardReply::Applied
            }
            ShardRequest::Offline { shard, partitions } => {
                self.learn_offline(shard, partitions);
                ShardReply::Applied
            }
            ShardRequest::ClusterStatus => {
                let group = self.metadata_group.borrow().clone();
                let linked = self.peers.borrow().as_ref().map(|p| p.linked()).unwrap_or_default();
                ShardReply::ClusterStatus(Box::new(match group {
                    Some(group) => crate::cluster::status::cluster_status(&group, &linked),
                    None => rill_net::message::ResponseBody::Status {
                        error: ErrorCode::NotController,
                        message: "the metadata group is not open".into(),
                    },
                }))
            }
            ShardRequest::Group(op) => ShardReply::Group(
                crate::partition::group::ops::run(self.groups.clone(), || self.metadata(), op).await,
            ),
            ShardRequest::PeerSend(frames) => {
                self.send_frames_here(frames);
                ShardReply::Applied
            }
            ShardRequest::ReplicaIn(group, message) => {
                if let Some(slot) = self.replication.by_group(group) {
                    slot.deliver(message);
                }
                ShardReply::Applied
            }
            ShardRequest::NodeChanged(node) => {
                self.replication.node_changed(node);
                ShardReply::Applied
            }
            ShardRequest::ReportLeader { topic, partition, term, isr } => {
                self.queue_leader_report(topic, partition, term, isr);
                ShardReply::Applied
            }
        }
    }

    fn log(&self, topic: &TopicName, partition: u32) -> Result<Log, ErrorCode> {
        match self.logs.borrow().get(&(topic.clone(), partition)) {
            Some(log) => Ok(log.clone()),
            None if self.offline.borrow().contains_key(&(topic.clone(), partition)) => {
                Err(ErrorCode::StorageError)
            }
            None => Err(self.owner(topic, partition).err().unwrap_or(ErrorCode::UnknownPartition)),
        }
    }

    /// Adopts new metadata: opens logs for partitions this shard now owns, closes and removes
    /// the logs of partitions that no longer exist.
    pub async fn apply(self: &Rc<Self>, metadata: Metadata) {
        let Ok(_permit) = self.applying.acquire_permit(1).await else { return };
        let metadata = Rc::new(metadata);
        let previous = std::mem::replace(&mut *self.metadata.borrow_mut(), metadata.clone());
        let owned: Vec<(TopicName, u32)> = metadata
            .topics
            .iter()
            .flat_map(|(name, t)| {
                let metadata = &metadata;
                t.shards
                    .iter()
                    .enumerate()
                    .filter(move |(p, s)| **s as usize == self.index && metadata.is_local(t, *p as u32))
                    .map(|(p, _)| (name.clone(), p as u32))
            })
            .collect();
        let gone: Vec<(TopicName, u32)> =
            self.logs.borrow().keys().filter(|k| !metadata.topics.contains_key(&k.0)).cloned().collect();
        let gone_offline: Vec<(TopicName, u32)> =
            self.offline.borrow().keys().filter(|k| !metadata.topics.contains_key(&k.0)).cloned().collect();
        for key in gone_offline {
            self.offline.borrow_mut().remove(&key);
            let dir = Metadata::partition_dir(&self.data_dir, &key.0, key.1);
            let removed = glommio::executor().spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            if let Err(error) = removed {
                tracing::error!(topic = %key.0, partition = key.1, %error, "removing a deleted offline partition");
            }
        }
        self.metrics
            .borrow_mut()
            .retain_topics(|t| TopicName::new(t).is_ok_and(|t| metadata.topics.contains_key(&t)));
        for key in gone {
            self.replication.forget(&key.0, key.1).await;
            self.producers.borrow_mut().remove(&key);
            self.sequencers.borrow_mut().remove(&key);
            let log = self.logs.borrow_mut().remove(&key);
            if let Some(log) = log {
                let _ = log.close().await;
                let dir = log.dir().to_path_buf();
                let removed = glommio::executor().spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                if let Err(error) = removed {
                    tracing::error!(topic = %key.0, partition = key.1, %error, "removing a deleted partition");
                }
            }
        }
        if self.groups.is_open() {
            self.forget_deleted_topics(&metadata).await;
        }
        // Partitions of topics whose settings changed reopen with the new log configuration
        // (appends and fetches meanwhile get a retriable error).
        let altered: Vec<(TopicName, u32)> = self
            .logs
            .borrow()
            .keys()
            .filter(|(t, _)| {
                let (old, new) = (previous.topics.get(t), metadata.topics.get(t));
                old.zip(new).is_some_and(|(o, n)| o.settings != n.settings)
            })
            .cloned()
            .collect();
        // One at a time, so each partition is offline only for its own close and open.
        for (topic, partition) in altered {
            // The group reopens with the log, from the state its journal holds.
            self.replication.close_and_wait(&topic, partition).await;
            let log = self.logs.borrow_mut().remove(&(topic.clone(), partition));
            if let Some(log) = log
                && let Err(error) = log.close().await
            {
                // Not reopened beside a log that may still be in use: the partition keeps
                // its old settings until the next start.
                tracing::error!(%topic, partition, %error, "closing a partition to reconfigure it failed");
                self.logs.borrow_mut().insert((topic, partition), log);
                continue;
            }
            self.open_partition(&metadata, topic, partition).await;
        }
        for (topic, partition) in owned {
            let key = (topic.clone(), partition);
            // An offline partition is not retried at every metadata change: the operator
            // repairs it and restarts.
            if self.logs.borrow().contains_key(&key) || self.offline.borrow().contains_key(&key) {
                continue;
            }
            self.open_partition(&metadata, topic, partition).await;
        }
        self.rebalance_memory(&metadata);
        if self.index == 0 {
            self.route_groups(&metadata);
        }
    }

    /// The shard's cache and write-buffer budgets are shared by the partitions it holds: when
    /// their number changes, every open log gets its new share (a log opened later already got
    /// it), so creating topics one by one never multiplies the budget.
    fn rebalance_memory(&self, metadata: &Metadata) {
        // A view taken before this node registered its shard count has fewer shards: none of
        // its partitions is on the others then.
        let local = metadata.load_per_shard().get(self.index).copied().unwrap_or(0);
        if self.memory_shared_by.replace(local) == local {
            return;
        }
        for ((topic, partition), log) in self.logs.borrow().iter() {
            let Some(t) = metadata.topics.get(topic) else { continue };
            let share = log_config(&self.profile, &t.settings, local)
                .map_err(|reason| reason.to_string())
                .and_then(|c| {
                    log.set_memory_limits(c.cache_bytes_max, c.write_buffer_bytes_max)
                        .map_err(|e| e.to_string())
                });
            if let Err(error) = share {
                tracing::warn!(%topic, partition, %error, "keeping a partition's memory budget");
            }
        }
    }

    /// The sum of the memory budgets of the shard's open logs: (cache, write buffers).
    #[cfg(test)]
    pub fn memory_budgets(&self) -> (usize, usize) {
        self.logs
            .borrow()
            .values()
            .map(|l| l.stats())
            .fold((0, 0), |(c, w), s| (c + s.cache_bytes_max, w + s.write_buffer_bytes_max))
    }

    /// Opens a partition's log into the shard's map; a failure is logged and the partition
    /// stays offline.
    async fn open_partition(self: &Rc<Self>, metadata: &Metadata, topic: TopicName, partition: u32) {
        match self.open_log(metadata, &topic, partition).await {
            Ok(log) => {
                let t = &metadata.topics[&topic];
                if metadata.is_replicated(t, partition) {
                    let voters = t.replicas[partition as usize].clone();
                    let path =
                        self.data_dir.join("raft").join("partitions").join(format!("shard-{}", self.index));
                    let opened = self
                        .replication
                        .open(self, path, topic.clone(), partition, log.clone(), &voters)
                        .await;
                    if let Err(error) = opened {
                        tracing::error!(%topic, partition, %error,
                            "partition group failed to open; the partition stays offline until the next start");
                        let _ = log.close().await;
                        self.offline.borrow_mut().insert((topic, partition), error);
                        return;
                    }
                }
                self.offline.borrow_mut().remove(&(topic.clone(), partition));
                self.logs.borrow_mut().insert((topic, partition), log);
            }
            Err(error) => {
                if matches!(error, rill_storage::Error::Corrupt { .. }) {
                    tracing::error!(%topic, partition, %error,
                        "partition log is damaged; it stays offline (KAFKA_STORAGE_ERROR to clients) until repaired: see `rill storage verify`");
                } else {
                    tracing::error!(%topic, partition, %error,
                        "partition log failed to open; it stays offline (KAFKA_STORAGE_ERROR to clients) until the next start");
                }
                self.offline.borrow_mut().insert((topic, partition), error.to_string());
            }
        }
    }

    async fn open_log(
        &self,
        metadata: &Metadata,
        topic: &TopicName,
        partition: u32,
    ) -> Result<Log, rill_storage::Error> {
        let settings = &metadata.topics[topic].settings;
        // A view taken before this node registered its shard count has fewer shards: none of
        // its partitions is on the others then.
        let local = metadata.load_per_shard().get(self.index).copied().unwrap_or(0);
        let config = log_config(&self.profile, settings, local)
            .map_err(|reason| rill_storage::Error::InvalidConfig { field: "topic settings", reason })?;
        let dir = Metadata::partition_dir(&self.data_dir, topic, partition);
        let clock: Rc<dyn Clock> = Rc::new(SystemClock);
        Log::open(dir, config, clock).await
    }

    /// Closes every log (flush, sync, trim); called at shutdown.
    pub async fn close_logs(&self) {
        self.replication.close_all().await;
        let logs: Vec<((TopicName, u32), Log)> = self.logs.borrow_mut().drain().collect();
        // Several at a time, so their fdatasyncs overlap in io_uring instead of queueing one
        // behind another (a shard with thousands of partitions stops in seconds, not minutes);
        // few enough that the checkpoint files they write stay within the descriptors kept
        // for such files.
        let mut logs = logs.into_iter().peekable();
        while logs.peek().is_some() {
            let closing: Vec<_> = logs
                .by_ref()
                .take(CLOSING_AT_ONCE)
                .map(|(key, log)| {
                    let producers = self.producers.borrow().get(&key).cloned();
                    glommio::spawn_local(async move {
                        if let Some(snapshot) = producers.and_then(|p| p.snapshot_due(&log, true)) {
                            crate::partition::producer::write_snapshot(&log, snapshot).await;
                        }
                        if let Err(error) = log.close().await {
                            tracing::error!(dir = %log.dir().display(), %error, "closing log");
                        }
                    })
                })
                .collect();
            for task in closing {
                task.await;
            }
        }
        self.groups.close().await;
    }

    /// Deletes the committed offsets this shard's groups hold for topics `metadata` no longer
    /// has (each shard does this for its own groups when a deletion is applied, and at start-up
    /// for a deletion that a crash interrupted).
    async fn forget_deleted_topics(&self, metadata: &Metadata) {
        match self.groups.forget_topics(|t| metadata.has_topic(t)).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(shard = self.index, offsets = n, "removed committed offsets of deleted topics")
            }
            Err(code) => {
                tracing::error!(shard = self.index, code, "removing committed offsets of deleted topics")
            }
        }
    }

    /// Opens this shard's consumer-group offsets log and replays it; commits replayed here for
    /// groups another shard now coordinates (the shard count changed) go to that shard.
    pub async fn open_groups(self: &Rc<Self>) -> Result<(), String> {
        let dir = self.data_dir.join("groups").join(format!("shard-{}", self.index));
        let config = LogConfig {
            durability: rill_storage::Durability::Always,
            segment_size_bytes_max: 64 << 20,
            retention_age_ms_max: None,
            retention_bytes_max: None,
            ..self.profile.log_config()
        };
        let foreign = self.groups.open_dir(&dir, config, self.index, self.count).await?;
        let metadata = self.metadata();
        self.forget_deleted_topics(&metadata).await;
        let mut by_owner: HashMap<usize, Vec<_>> = HashMap::new();
        for entry in foreign.into_iter().filter(|e| metadata.has_topic(&e.1)) {
            by_owner
                .entry(crate::partition::group::coordinator_shard(&entry.0, self.count))
                .or_default()
                .push(entry);
        }
        for (owner, entries) in by_owner {
            let mut moved: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
            for (group, topic, partition, _) in &entries {
                moved.entry(group.clone()).or_default().push((topic.clone(), *partition));
            }
            let op = crate::partition::group::ops::GroupOp::Restore(entries);
            match self.call(owner, ShardRequest::Group(op)).await {
                ShardReply::Group(crate::partition::group::ops::GroupReply::Code(0)) => {}
                _ => return Err(format!("moving committed offsets to shard {owner} failed")),
            }
            // The owner has them now: delete this log's copies, so a later start does not move
            // them again over whatever the owner has done since (a deletion, say).
            for (group, keys) in moved {
                self.groups
                    .tombstone(&group, &keys)
                    .await
                    .map_err(|code| format!("deleting moved offsets of group {group}: error {code}"))?;
            }
        }
        Ok(())
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    pub fn data_dir(&self) -> &PathBuf {
        &self.data_dir
    }

    /// Adjusts the bytes charged to the shard's connection budget.
    pub fn charge_connection_bytes(&self, delta: isize) {
        let now = self.connection_bytes.get() as isize + delta;
        assert!(now >= 0, "connection bytes never go negative");
        self.connection_bytes.set(now as usize);
    }

    /// Whether the shard's connections hold more than the profile's connection budget.
    pub fn connections_over_budget(&self) -> bool {
        self.connection_bytes.get() as u64 > self.profile.memory.connection_buffer_bytes_per_shard
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn admin_lock(&self) -> &glommio::sync::Semaphore {
        &self.admin
    }

    /// Host and port Kafka clients are told to connect to.
    pub fn kafka_advertised(&self) -> (String, u16) {
        self.kafka_advertised.borrow().clone()
    }

    pub fn auto_create_partitions(&self) -> Option<u32> {
        self.auto_create_partitions.get()
    }

    pub fn set_auto_create_partitions(&self, partitions: Option<u32>) {
        self.auto_create_partitions.set(partitions);
    }

    pub fn offsets_retention(&self) -> crate::partition::group::OffsetsRetention {
        self.offsets_retention.get()
    }

    pub fn set_offsets_retention(&self, retention: crate::partition::group::OffsetsRetention) {
        self.offsets_retention.set(retention);
    }

    pub fn set_kafka_advertised(&self, advertised: (String, u16)) {
        *self.kafka_advertised.borrow_mut() = advertised;
    }
}

impl crate::cluster::controller::ControllerHost for Shard {
    fn index(&self) -> usize {
        self.index
    }

    fn shard_count(&self) -> usize {
        self.count
    }

    fn shutting_down(&self) -> bool {
        Shard::shutting_down(self)
    }

    fn admin_lock(&self) -> &glommio::sync::Semaphore {
        Shard::admin_lock(self)
    }

    fn metadata(&self) -> Rc<Metadata> {
        Shard::metadata(self)
    }

    fn profile(&self) -> &Profile {
        Shard::profile(self)
    }

    fn data_dir(&self) -> &std::path::Path {
        Shard::data_dir(self)
    }

    async fn apply_on(self: Rc<Self>, target: usize, metadata: Metadata) {
        // The reply carries nothing: a shard that cannot open a log keeps it offline.
        let _ = self.call(target, ShardRequest::Apply(metadata)).await;
    }

    fn metadata_group(&self) -> Option<Rc<crate::cluster::metadata_group::MetadataGroup>> {
        self.metadata_group.borrow().clone()
    }

    fn peers(&self) -> Option<Rc<crate::cluster::peers::Peers>> {
        self.peers.borrow().clone()
    }
}

impl crate::cluster::metadata_group::GroupHost for Shard {
    async fn adopt(self: Rc<Self>, view: Metadata) {
        crate::cluster::controller::adopt(self, view).await;
    }
}

fn storage_error(e: rill_storage::Error) -> ErrorCode {
    use rill_storage::Error as E;
    match e {
        E::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        E::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        E::InvalidBatch(_) => ErrorCode::CorruptBatch,
        E::Closed(_) => ErrorCode::ShuttingDown,
        E::InvalidConfig { .. } => ErrorCode::InvalidConfig,
        E::Io { .. } | E::Corrupt { .. } | E::Failed(_) | E::Unreadable { .. } => ErrorCode::StorageError,
    }
}

mod log_admin;
mod offline;
mod produce;
mod read;
mod replicated;
#[cfg(test)]
mod tests;

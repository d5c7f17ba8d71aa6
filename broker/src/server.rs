//! Starting and stopping the broker: metadata, one pinned glommio executor per shard, the shard
//! mesh, and a native and a Kafka listener on every shard (SO_REUSEPORT, so the kernel spreads
//! connections).

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use rill_net::connection::ConnectionLimits;
use rill_net::kafka::KafkaLimits;

use crate::protocol::connection::{Kafka, Native};

use crate::cluster::metadata::{Metadata, MetadataStore};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::partition::shard::{Msg, Shard};

/// How long shutdown waits for connections to finish their in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A started broker.
pub struct RunningBroker {
    threads: Vec<std::thread::JoinHandle<()>>,
    shutdown: Arc<AtomicBool>,
    /// Where the native listener is bound (the actual port when 0 was asked for).
    pub native_addr: SocketAddr,
    /// Where the Kafka listener is bound.
    pub kafka_addr: SocketAddr,
    /// Where the admin HTTP listener is bound.
    pub admin_addr: SocketAddr,
    /// Number of shards.
    pub shards: usize,
    /// The data directory's lock, held until the shards have stopped.
    _lock: rill_storage::DataDirLock,
}

impl RunningBroker {
    /// Asks every shard to stop: stop accepting, finish in-flight requests, close the logs.
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }

    /// Waits until every shard has stopped.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts the broker; returns once every shard has opened its logs and listens.
/// Setting `shutdown` (a signal handler does) stops it gracefully.
pub fn start(config: BrokerConfig, shutdown: Arc<AtomicBool>) -> Result<RunningBroker> {
    rill_storage::retain_dma_buffer_memory(64 << 20);
    let shards = config.cores.len();
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| BrokerError::Runtime(format!("creating {}: {e}", config.data_dir.display())))?;
    let lock = rill_storage::DataDirLock::acquire(&config.data_dir)
        .map_err(|e| BrokerError::Runtime(format!("data directory {}: {e}", config.data_dir.display())))?;
    let cluster_id = match &config.cluster {
        Some(c) => {
            let path = c.tls_dir.join("ca.pem");
            let ca = std::fs::read_to_string(&path)
                .map_err(|e| BrokerError::Config(format!("reading {}: {e}", path.display())))?;
            let id = rill_net::tls::cluster_id(&ca)
                .map_err(|e| BrokerError::Config(format!("{}: {e}", path.display())))?;
            Some(id)
        }
        None => None,
    };
    let node_id = config.cluster.as_ref().map_or(0, |c| c.node_id);
    let identity = crate::cluster::identity::settle(&config.data_dir, node_id, cluster_id.as_deref())?;
    let metadata = prepare_metadata(&config.data_dir, shards)?;
    let open_segment_files = crate::process::segment_files_per_shard(shards);
    tracing::info!(node = identity.node_id, cluster = %identity.cluster_id, shards, cores = ?config.cores,
        profile = %config.profile.name, topics = metadata.topics.len(),
        open_segment_files_per_shard = open_segment_files, "starting");

    let mesh = MeshBuilder::<Msg, _>::full(shards, config.profile.io.shard_channel_depth as usize);
    let controller = Arc::new(std::sync::atomic::AtomicI64::new(-1));
    let peers: Arc<Vec<AtomicUsize>> = Arc::new((0..shards).map(|_| AtomicUsize::new(usize::MAX)).collect());
    let port = Arc::new(AtomicU16::new(0));
    let kafka_port = Arc::new(AtomicU16::new(0));
    let admin_port = Arc::new(AtomicU16::new(0));
    let started_at = Instant::now();
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let drained = Arc::new(AtomicUsize::new(0));
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    for (index, cpu) in config.cores.iter().copied().enumerate() {
        let ctx = ShardContext {
            index,
            open_segment_files,
            config: config.clone(),
            metadata: metadata.clone(),
            mesh: mesh.clone(),
            peers: peers.clone(),
            port: port.clone(),
            kafka_port: kafka_port.clone(),
            admin_port: admin_port.clone(),
            started_at,
            ready: ready.clone(),
            failed: failed.clone(),
            drained: drained.clone(),
            shutdown: shutdown.clone(),
            controller: controller.clone(),
            cluster_id: identity.cluster_id.clone(),
        };
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("rill-shard-{index}"))
            .io_memory(config.profile.memory.io_memory_bytes_per_shard as usize)
            .ring_depth(config.profile.io.uring_queue_depth as usize);
        let handle = match builder.spawn(move || shard_main(ctx)) {
            Ok(handle) => handle,
            Err(e) => {
                // Shards already started wait in the mesh for a peer that will never come; the
                // process is about to exit with this error, so they are left, not joined.
                failed.store(true, Ordering::Release);
                shutdown.store(true, Ordering::Relaxed);
                drop(threads);
                return Err(BrokerError::Runtime(format!("starting shard {index} on CPU {cpu}: {e}")));
            }
        };
        threads.push(std::thread::spawn(move || {
            let _ = handle.join();
        }));
    }
    let started = Instant::now();
    while ready.load(Ordering::Acquire) < shards {
        if failed.load(Ordering::Acquire) || started.elapsed() > Duration::from_secs(120) {
            shutdown.store(true, Ordering::Relaxed);
            for t in threads {
                let _ = t.join();
            }
            return Err(BrokerError::Runtime("a shard failed to start; see the log".into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let native_addr = SocketAddr::new(config.native_listen.ip(), port.load(Ordering::Acquire));
    let kafka_addr = SocketAddr::new(config.kafka_listen.ip(), kafka_port.load(Ordering::Acquire));
    let admin_addr = SocketAddr::new(config.admin_listen.ip(), admin_port.load(Ordering::Acquire));
    tracing::info!(%native_addr, %kafka_addr, %admin_addr, "listening (native and Kafka protocols, admin HTTP)");
    Ok(RunningBroker { threads, shutdown, native_addr, kafka_addr, admin_addr, shards, _lock: lock })
}

/// Loads the metadata (or starts empty), fits the shard table to this run's shard count,
/// saves it, and removes topic directories the metadata does not know (a delete interrupted
/// by a crash).
fn prepare_metadata(data_dir: &Path, shards: usize) -> Result<Metadata> {
    let store = MetadataStore::new(data_dir);
    let loaded = store.load()?;
    // The metadata group's journal is the truth; metadata.toml is the view the shards open
    // first. Without the file, nothing on disk is removed as unknown: the group's view,
    // adopted once it has replayed, says what exists.
    let journal = crate::cluster::controller::journal_path(data_dir);
    let trust_file = loaded.is_some() || !journal.exists();
    if !trust_file {
        tracing::warn!("metadata.toml is missing; the node takes its topics from the metadata group's log");
    }
    let mut metadata = loaded.unwrap_or_else(|| Metadata::new(shards as u32));
    if metadata.shard_count as usize != shards {
        let moved = metadata.adapt_to_shards(shards as u32);
        tracing::info!(shards, moved, "shard count changed; partitions of vanished shards moved");
    }
    store.save(&metadata)?;
    let topics_dir = data_dir.join("topics");
    let entries = if trust_file { std::fs::read_dir(&topics_dir).ok() } else { None };
    if let Some(entries) = entries {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let known =
                crate::cluster::metadata::TopicName::new(&name).ok().and_then(|n| metadata.topics.get(&n));
            match known {
                None => {
                    tracing::warn!(topic = %name, "removing data of a deleted topic");
                    let _ = std::fs::remove_dir_all(entry.path());
                }
                Some(topic) => remove_extra_partitions(&entry.path(), topic.shards.len()),
            }
        }
    }
    Ok(metadata)
}

fn remove_extra_partitions(dir: &Path, partitions: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let keep =
            entry.file_name().to_str().and_then(|n| n.parse::<usize>().ok()).is_some_and(|p| p < partitions);
        if !keep {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

struct ShardContext {
    index: usize,
    /// Segment files this shard keeps open (see `process::segment_files_per_shard`).
    open_segment_files: usize,
    config: BrokerConfig,
    metadata: Metadata,
    mesh: MeshBuilder<Msg, glommio::channels::channel_mesh::Full>,
    peers: Arc<Vec<AtomicUsize>>,
    port: Arc<AtomicU16>,
    kafka_port: Arc<AtomicU16>,
    /// The admin listener's bound port (shard 0 binds it alone).
    admin_port: Arc<AtomicU16>,
    started_at: Instant,
    ready: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
    /// Shards whose connections have finished; logs close only when every shard is drained,
    /// so no shard leaves while another still waits for its answer.
    drained: Arc<AtomicUsize>,
    shutdown: Arc<AtomicBool>,
    /// The controller's node id as shard 0 last saw it (-1: none known); read by every shard
    /// for Metadata and DescribeCluster, off the data path.
    controller: Arc<std::sync::atomic::AtomicI64>,
    /// The cluster id from the data directory's `node.toml`.
    cluster_id: String,
}

async fn shard_main(ctx: ShardContext) {
    if let Err(error) = run_shard(&ctx).await {
        tracing::error!(shard = ctx.index, %error, "shard failed");
        ctx.failed.store(true, Ordering::Release);
        ctx.shutdown.store(true, Ordering::Relaxed);
    }
}

async fn run_shard(ctx: &ShardContext) -> Result<()> {
    let (senders, receivers) =
        ctx.mesh.clone().join().await.map_err(|_| BrokerError::Runtime("joining the shard mesh".into()))?;
    ctx.peers[ctx.index].store(senders.peer_id(), Ordering::Release);
    while ctx.peers.iter().any(|p| p.load(Ordering::Acquire) == usize::MAX) {
        if ctx.failed.load(Ordering::Acquire) || ctx.shutdown.load(Ordering::Relaxed) {
            return Err(BrokerError::Runtime("another shard failed to start".into()));
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let peer_of: Vec<usize> = ctx.peers.iter().map(|p| p.load(Ordering::Acquire)).collect();
    rill_storage::set_open_files_max(ctx.open_segment_files);
    let shard = Rc::new(Shard::new(
        ctx.index,
        ctx.config.data_dir.clone(),
        ctx.config.profile.clone(),
        ctx.metadata.clone(),
        senders,
        peer_of,
        ctx.shutdown.clone(),
    ));
    shard.set_controller_cell(ctx.controller.clone());
    shard.set_cluster_id(&ctx.cluster_id);
    shard.start(receivers);
    if ctx.index == 0 {
        // First, so that readiness answers `booting` while the shards open their logs.
        let listener = bind(ctx, ctx.config.admin_listen, &ctx.admin_port).await?;
        let state = crate::admin_http::AdminState {
            ready: ctx.ready.clone(),
            shards: ctx.peers.len(),
            shutdown: ctx.shutdown.clone(),
            started: ctx.started_at,
            per_partition: ctx.config.metrics_per_partition,
        };
        glommio::spawn_local(crate::admin_http::serve(listener, shard.clone(), state)).detach();
    }
    shard.apply(ctx.metadata.clone()).await;
    shard.announce_offline().await;
    shard.open_groups().await.map_err(BrokerError::Runtime)?;
    let listener = bind(ctx, ctx.config.native_listen, &ctx.port).await?;
    let kafka_listener = bind(ctx, ctx.config.kafka_listen, &ctx.kafka_port).await?;
    let advertised = match &ctx.config.kafka_advertised {
        Some((host, port)) => (host.clone(), *port),
        None => (ctx.config.kafka_listen.ip().to_string(), ctx.kafka_port.load(Ordering::Acquire)),
    };
    shard.set_kafka_advertised(advertised.clone());
    let metadata_group = if ctx.index == crate::cluster::controller::CONTROLLER {
        Some(open_metadata_group(ctx, &shard, &advertised).await?)
    } else {
        None
    };
    shard.set_auto_create_partitions(ctx.config.auto_create_partitions);
    shard.set_offsets_retention(ctx.config.offsets_retention);
    ctx.ready.fetch_add(1, Ordering::AcqRel);
    let network = &ctx.config.profile.network;
    let limits = ConnectionLimits {
        frame_bytes_max: network.request_bytes_max,
        max_inflight: network.max_inflight_requests as usize,
    };
    let kafka_limits = KafkaLimits {
        frame_bytes_max: network.request_bytes_max,
        max_inflight: network.max_inflight_requests as usize,
    };
    let active = Rc::new(std::cell::Cell::new(0usize));
    let connections_max =
        crate::process::connections_per_shard(ctx.peers.len(), network.max_connections_per_shard as usize);
    if ctx.index == 0 && connections_max < network.max_connections_per_shard as usize {
        tracing::info!(
            connections_max,
            profile = network.max_connections_per_shard,
            "connections per shard held below the profile's cap by the open-file limit"
        );
    }
    let kafka_accept =
        glommio::spawn_local(accept_loop(ctx.index, shard.clone(), kafka_listener, active.clone(), {
            let max = connections_max;
            move |shard, stream| {
                let core = Kafka::new(kafka_limits, &stream);
                (max, crate::protocol::connection::serve(shard, stream, core))
            }
        }));
    accept_loop(ctx.index, shard.clone(), listener, active.clone(), {
        let max = connections_max;
        move |shard, stream| (max, crate::protocol::connection::serve(shard, stream, Native::new(limits)))
    })
    .await;
    kafka_accept.await;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while active.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    ctx.drained.fetch_add(1, Ordering::AcqRel);
    while ctx.drained.load(Ordering::Acquire) < ctx.peers.len() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    if let Some(group) = metadata_group {
        group.stop();
    }
    shard.close_logs().await;
    tracing::info!(shard = ctx.index, "stopped");
    Ok(())
}

/// Opens the metadata Raft group on the controller shard and starts its driver. A data
/// directory without a group journal (a new node, or one from before the group existed) starts
/// the group from its `metadata.toml`, as a snapshot at index 1 with this node as the only voter.
async fn open_metadata_group(
    ctx: &ShardContext,
    shard: &Rc<Shard>,
    advertised: &(String, u16),
) -> Result<Rc<crate::cluster::metadata_group::MetadataGroup>> {
    use crate::cluster::consensus::{Bootstrap, Group, GroupConfig, StateMachine};
    use crate::cluster::metadata_group::{MetadataGroup, raft_id};
    use crate::cluster::state::{ClusterState, NodeInfo};
    let cluster = ctx.config.cluster.as_ref();
    let node = cluster.map_or(0, |c| c.node_id);
    let info = NodeInfo {
        shard_count: ctx.peers.len() as u32,
        cluster_address: cluster.map(|c| c.listen.to_string()).unwrap_or_default(),
        kafka_address: format!("{}:{}", advertised.0, advertised.1),
    };
    let bootstrap = match cluster {
        None => {
            let initial = ClusterState::from_local(&ctx.metadata, node, info.clone());
            Bootstrap::Snapshot { index: 1, term: 1, voters: vec![raft_id(node)], data: initial.snapshot() }
        }
        Some(c) if c.join => Bootstrap::Join,
        Some(c) => Bootstrap::Voters(c.seeds.keys().map(|id| raft_id(*id)).collect()),
    };
    let path = crate::cluster::controller::journal_path(&ctx.config.data_dir);
    if cluster.is_some() && !path.exists() && !ctx.metadata.topics.is_empty() {
        return Err(BrokerError::Config(
            "this data directory holds a single node's topics; a new cluster starts from empty data \
             directories (a single node joins a cluster with `rill cluster add-node`, not yet built)"
                .into(),
        ));
    }
    let config = GroupConfig::new(raft_id(node));
    let group = Group::open(rill_storage::Disk::Direct, path, &config, bootstrap, ClusterState::default())
        .await
        .map_err(|e| BrokerError::Runtime(format!("opening the metadata group: {e}")))?;
    let driver = MetadataGroup::new(node, info, group.machine().clone(), ctx.controller.clone());
    shard.set_metadata_group(driver.clone());
    glommio::spawn_local(announce_loop(shard.clone(), driver.clone())).detach();
    if let Some(c) = cluster {
        let peers = start_peers(c, shard, &driver)?;
        shard.set_peers(peers.clone());
        let weak = Rc::downgrade(shard);
        peers.set_partition_handler(Box::new(move |peer, incoming| {
            if let Some(shard) = weak.upgrade() {
                shard.receive_partition_frame(peer, incoming);
            }
        }));
        let weak = Rc::downgrade(shard);
        peers.set_node_handler(Box::new(move |node| {
            if let Some(shard) = weak.upgrade() {
                shard.node_changed(node);
            }
        }));
        let stop_peers = peers.clone();
        glommio::spawn_local(async move {
            stop_peers.group_stopped_wait().await;
            stop_peers.stop();
        })
        .detach();
    }
    glommio::spawn_local(driver.clone().run(group, shard.clone(), ctx.metadata.clone())).detach();
    Ok(driver)
}

/// Binds the cluster listener and starts the links to the other nodes.
fn start_peers(
    cluster: &crate::config::ClusterConfig,
    shard: &Rc<Shard>,
    group: &Rc<crate::cluster::metadata_group::MetadataGroup>,
) -> Result<Rc<crate::cluster::peers::Peers>> {
    use crate::cluster::peers::Peers;
    let read = |name: String| {
        let path = cluster.tls_dir.join(&name);
        std::fs::read_to_string(&path)
            .map_err(|e| BrokerError::Config(format!("reading {}: {e}", path.display())))
    };
    let id = cluster.node_id;
    let ca = read("ca.pem".into())?;
    let pem =
        rill_net::tls::Pem { cert: read(format!("node-{id}.pem"))?, key: read(format!("node-{id}.key"))? };
    // A node presents only a certificate that names it: one claiming another id never starts.
    match rill_net::tls::pem_node_id(&pem.cert) {
        Some(named) if named == id => {}
        named => {
            let named = named.map_or("no node".to_string(), |n| format!("node {n}"));
            return Err(BrokerError::Config(format!(
                "node-{id}.pem names {named}, not this node ({id}); \
                 issue one with `rill cluster cert issue --node-id {id}`"
            )));
        }
    }
    let profile = &shard.profile().cluster;
    let node = rill_net::quic::Node::with_tuning(&ca, &pem, quic_tuning(profile))
        .map_err(|e| BrokerError::Config(format!("the cluster certificate of node {id}: {e}")))?;
    let transport = crate::cluster::transport::Transport::bind(
        cluster.listen,
        node,
        profile.socket_buffer_bytes as usize,
    )
    .map_err(|e| BrokerError::Runtime(format!("binding the cluster listener {}: {e}", cluster.listen)))?;
    let weak = Rc::downgrade(shard);
    let handler: crate::cluster::peers::AdminHandler = Box::new(move |op| {
        let shard = weak.upgrade();
        Box::pin(async move {
            match shard {
                Some(shard) => crate::cluster::controller::run_forwarded(&shard, op).await,
                None => Err((rill_net::message::ErrorCode::ShuttingDown, "stopping".into())),
            }
        })
    });
    tracing::info!(node = id, gso_segments = transport.gso_segments(), "cluster socket bound");
    let queue = profile.peer_queue_bytes as usize;
    let peers = Peers::new(id, transport, group.clone(), cluster.seeds.clone(), handler, queue);
    peers.start();
    tracing::info!(node = id, listen = %cluster.listen, seeds = cluster.seeds.len(), "cluster links started");
    Ok(peers)
}

/// The QUIC settings of the profile's `[cluster]` section.
pub fn quic_tuning(profile: &rill_tuning::ClusterSection) -> rill_net::quic::Tuning {
    rill_net::quic::Tuning {
        stream_window_bytes: profile.stream_window_bytes,
        connection_window_bytes: profile.connection_window_bytes,
        send_window_bytes: profile.send_window_bytes,
        initial_mtu: profile.initial_mtu,
        mtu_max: profile.mtu_max,
        idle_timeout: Duration::from_millis(profile.idle_timeout_ms),
        keep_alive: Duration::from_millis(profile.keep_alive_ms),
        segmentation_offload: profile.segmentation_offload,
        ..rill_net::quic::Tuning::default()
    }
}

/// Registers this node (addresses, shard count) through the controller (itself on a single
/// node, forwarded in a cluster) until the cluster state has it as it is, and again whenever
/// it differs (first start, new addresses, another shard count).
async fn announce_loop(shard: Rc<Shard>, group: Rc<crate::cluster::metadata_group::MetadataGroup>) {
    use crate::cluster::controller::AdminOp;
    while !group.stopped() {
        let registered = group.state().nodes.get(&group.node()) == Some(&group.announce);
        if !registered && group.leader().is_some() {
            let op = AdminOp::RegisterNode { id: group.node(), info: group.announce.clone() };
            if let Err((code, message)) = crate::cluster::controller::run(&shard, op).await {
                tracing::debug!(?code, %message, "registering this node failed; retrying");
            }
        }
        let pause = if registered { Duration::from_secs(1) } else { Duration::from_millis(100) };
        glommio::timer::sleep(pause).await;
    }
}

/// Accepts connections until the broker stops; each is served by the future `serve` makes,
/// while the shard has fewer than its maximum of connections (both protocols together).
async fn accept_loop<F, Fut>(
    index: usize,
    shard: Rc<Shard>,
    listener: TcpListener,
    active: Rc<std::cell::Cell<usize>>,
    serve: F,
) where
    F: Fn(Rc<Shard>, glommio::net::TcpStream) -> (usize, Fut),
    Fut: std::future::Future<Output = ()> + 'static,
{
    let mut failing = false;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.stopping.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let (max, served) = serve(shard.clone(), stream);
                if active.get() >= max {
                    tracing::warn!(shard = index, "connection refused: max_connections_per_shard reached");
                    continue;
                }
                active.set(active.get() + 1);
                let active = active.clone();
                glommio::spawn_local(async move {
                    served.await;
                    active.set(active.get() - 1);
                })
                .detach();
            }
            Some(Err(error)) => {
                // Out of descriptors (or another transient failure): the pending connection
                // stays queued and would fail again at once, so wait a little instead of
                // spinning, and say so once per episode rather than for every retry.
                if !failing {
                    tracing::warn!(shard = index, %error, "accept failed; retrying every 50 ms");
                }
                failing = true;
                glommio::timer::sleep(ACCEPT_RETRY).await;
                continue;
            }
        }
        failing = false;
    }
}

/// How long an accept loop waits after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Shard 0 binds first (learning the port when 0 was asked for); the others bind the same
/// address and port.
async fn bind(ctx: &ShardContext, mut addr: SocketAddr, port: &AtomicU16) -> Result<TcpListener> {
    if ctx.index != 0 {
        while port.load(Ordering::Acquire) == 0 {
            if ctx.failed.load(Ordering::Acquire) {
                return Err(BrokerError::Runtime("shard 0 failed to bind".into()));
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        addr.set_port(port.load(Ordering::Acquire));
    }
    if ctx.index == 0 && addr.port() != 0 && someone_listens(addr) {
        // SO_REUSEPORT would let this broker share the port with another live listener (say, a
        // second broker) and split its connections. (A plain bind is no test: right after a
        // crash the port still has closing connections, and it would refuse a legitimate restart.)
        return Err(BrokerError::Runtime(format!(
            "binding {addr}: another process is listening there (is another broker running?)"
        )));
    }
    let listener =
        TcpListener::bind(addr).map_err(|e| BrokerError::Runtime(format!("binding {addr}: {e}")))?;
    if ctx.index == 0 {
        let bound = listener.local_addr().map_err(|e| BrokerError::Runtime(e.to_string()))?.port();
        port.store(bound, Ordering::Release);
    }
    Ok(listener)
}

/// Whether something accepts connections on `addr` (a wildcard address is probed on loopback).
fn someone_listens(addr: SocketAddr) -> bool {
    let mut probe = addr;
    if addr.ip().is_unspecified() {
        probe.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
}

//! The controller shard's links to the other nodes, over the QUIC [`Transport`].
//!
//! One connection per pair of nodes, dialled by the node with the higher id (so two nodes
//! never race to connect each other), and on it one long-lived bidirectional stream that the
//! dialler opens with a [`PeerFrame::Hello`]. A peer is who its certificate says (the transport
//! checks it against the cluster CA); a frame claiming another sender is dropped. Each link has
//! its own queue and sender task, so one slow peer never holds back the others, and its queued
//! bytes are bounded: Raft messages beyond the bound are dropped (Raft resends), which is the
//! back-pressure a full flow-control window turns into.
//!
//! Frames carry the metadata group's Raft messages and admin requests forwarded to the
//! controller (and their answers).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use protobuf::Message as _;
use rill_net::message::ErrorCode;
use rill_net::peer::{Incoming, PeerFrame, PeerReader};
use rill_net::quic::{ConnectionHandle, Event, StreamId};
use rill_storage::Notify;

use crate::cluster::consensus::RaftMessage;
use crate::cluster::controller::AdminOp;
use crate::cluster::metadata_group::{MetadataGroup, node_of, raft_id};
use crate::cluster::state::{NodeId, Refusal};
use crate::cluster::transport::Transport;

/// The largest frame a peer may send.
const PEER_FRAME_BYTES_MAX: usize = 64 << 20;
/// How often a missing link is dialled again.
const REDIAL: Duration = Duration::from_secs(1);
/// How long a forwarded admin request waits for the controller's answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

type Reply = Result<(), Refusal>;
/// Runs an admin request forwarded by a peer (on the controller).
pub(crate) type AdminHandler = Box<dyn Fn(AdminOp) -> Pin<Box<dyn Future<Output = Reply>>>>;
/// Takes a frame of a partition group (Raft messages of groups other than 0, log fetches) from
/// a peer; the partition service installs it.
pub(crate) type PartitionHandler = Box<dyn Fn(NodeId, Incoming)>;
/// Told a peer's node id when its link comes up or is lost.
pub(crate) type NodeHandler = Box<dyn Fn(NodeId)>;

struct Link {
    connection: ConnectionHandle,
    stream: StreamId,
    /// Frames as the chunks to write (see [`PeerFrame::encode_with`]).
    queue: RefCell<VecDeque<Vec<Bytes>>>,
    queued: Cell<usize>,
    wake: Notify,
    closed: Cell<bool>,
}

/// The node's peer links (see the module documentation).
pub(crate) struct Peers {
    node: NodeId,
    transport: Rc<Transport>,
    group: Rc<MetadataGroup>,
    seeds: BTreeMap<NodeId, SocketAddr>,
    links: RefCell<BTreeMap<NodeId, Rc<Link>>>,
    /// The proven node of each connection.
    connections: RefCell<HashMap<ConnectionHandle, NodeId>>,
    /// Connections dialled and not yet connected or lost.
    dialling: RefCell<BTreeMap<NodeId, ConnectionHandle>>,
    readers: RefCell<HashMap<(ConnectionHandle, StreamId), PeerReader>>,
    pending: RefCell<HashMap<u64, LocalSender<Reply>>>,
    next_request: Cell<u64>,
    handler: AdminHandler,
    partitions: RefCell<Option<PartitionHandler>>,
    /// Told when a peer's link comes up or is lost.
    node_changes: RefCell<Option<NodeHandler>>,
    /// Bytes queued for one peer beyond which Raft messages are dropped (the profile's
    /// `cluster.peer_queue_bytes`).
    queued_bytes_max: usize,
}

impl Peers {
    pub(crate) fn new(
        node: NodeId,
        transport: Rc<Transport>,
        group: Rc<MetadataGroup>,
        seeds: BTreeMap<NodeId, SocketAddr>,
        handler: AdminHandler,
        queued_bytes_max: usize,
    ) -> Rc<Peers> {
        Rc::new(Peers {
            node,
            transport,
            group,
            seeds,
            links: RefCell::default(),
            connections: RefCell::default(),
            dialling: RefCell::default(),
            readers: RefCell::default(),
            pending: RefCell::default(),
            next_request: Cell::new(1),
            handler,
            partitions: RefCell::new(None),
            node_changes: RefCell::new(None),
            queued_bytes_max,
        })
    }

    /// Starts the tasks: the socket loop, dialling, receiving, and sending Raft messages.
    pub(crate) fn start(self: &Rc<Self>) {
        glommio::spawn_local(self.transport.clone().run()).detach();
        glommio::spawn_local(self.clone().dial_loop()).detach();
        glommio::spawn_local(self.clone().receive_loop()).detach();
        glommio::spawn_local(self.clone().raft_loop()).detach();
    }

    /// Stops the socket loop (and with it every task here).
    pub(crate) fn stop(&self) {
        self.transport.stop();
    }

    /// Nodes this node has a live link with.
    pub(crate) fn linked(&self) -> Vec<NodeId> {
        self.links.borrow().iter().filter(|(_, l)| !l.closed.get()).map(|(id, _)| *id).collect()
    }

    async fn dial_loop(self: Rc<Self>) {
        loop {
            // The seeds, and the nodes registered since (nodes added to the cluster).
            let mut known = self.seeds.clone();
            for (id, info) in &self.group.state().nodes {
                if let Ok(addr) = info.cluster_address.parse() {
                    known.entry(*id).or_insert(addr);
                }
            }
            let lower: Vec<(NodeId, SocketAddr)> =
                known.iter().filter(|(id, _)| **id < self.node).map(|(id, a)| (*id, *a)).collect();
            for (peer, addr) in lower {
                let linked =
                    self.links.borrow().contains_key(&peer) || self.dialling.borrow().contains_key(&peer);
                if !linked {
                    match self.transport.dial(addr, peer).await {
                        Ok(connection) => {
                            self.dialling.borrow_mut().insert(peer, connection);
                        }
                        Err(error) => tracing::warn!(peer, %addr, %error, "dialling a peer failed"),
                    }
                }
            }
            glommio::timer::sleep(REDIAL).await;
            if self.group_stopped() {
                return;
            }
        }
    }

    fn group_stopped(&self) -> bool {
        self.group.stopped()
    }

    /// Returns once the metadata group has stopped.
    pub(crate) async fn group_stopped_wait(&self) {
        while !self.group.stopped() {
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn receive_loop(self: Rc<Self>) {
        while let Some(event) = self.transport.next_event().await {
            match event {
                Event::Connected { connection, node } => {
                    self.connections.borrow_mut().insert(connection, node);
                    let dialled = self.dialling.borrow().get(&node) == Some(&connection);
                    if dialled {
                        self.dialling.borrow_mut().remove(&node);
                        if let Some(stream) = self.transport.open_stream(connection) {
                            let link = self.add_link(node, connection, stream);
                            self.enqueue(&link, PeerFrame::Hello { node: self.node }.encode(), true);
                        }
                    }
                    tracing::info!(peer = node, "cluster peer connected");
                    self.node_changed(node);
                }
                Event::Received { connection, stream, bytes } => {
                    let Some(peer) = self.connections.borrow().get(&connection).copied() else { continue };
                    let frames = {
                        let mut readers = self.readers.borrow_mut();
                        let reader = readers
                            .entry((connection, stream))
                            .or_insert_with(|| PeerReader::new(PEER_FRAME_BYTES_MAX));
                        reader.push(&bytes)
                    };
                    match frames {
                        Ok(frames) => {
                            for incoming in frames {
                                self.handle(peer, connection, stream, incoming);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(peer, %error, "a peer sent bytes that are not frames; its stream is dropped");
                            self.drop_connection(connection);
                        }
                    }
                }
                Event::Lost { connection, reason } => {
                    let peer = self.connections.borrow().get(&connection).copied();
                    if let Some(peer) = peer {
                        tracing::info!(peer, %reason, "cluster peer lost");
                    }
                    self.drop_connection(connection);
                    if let Some(peer) = peer {
                        self.node_changed(peer);
                    }
                }
            }
        }
    }

    fn drop_connection(&self, connection: ConnectionHandle) {
        self.connections.borrow_mut().remove(&connection);
        self.dialling.borrow_mut().retain(|_, c| *c != connection);
        self.readers.borrow_mut().retain(|(c, _), _| *c != connection);
        self.links.borrow_mut().retain(|_, link| {
            let keep = link.connection != connection;
            if !keep {
                link.closed.set(true);
                link.wake.notify_all();
            }
            keep
        });
    }

    fn add_link(self: &Rc<Self>, peer: NodeId, connection: ConnectionHandle, stream: StreamId) -> Rc<Link> {
        let link = Rc::new(Link {
            connection,
            stream,
            queue: RefCell::default(),
            queued: Cell::new(0),
            wake: Notify::default(),
            closed: Cell::new(false),
        });
        if let Some(old) = self.links.borrow_mut().insert(peer, link.clone()) {
            old.closed.set(true);
            old.wake.notify_all();
        }
        glommio::spawn_local(self.clone().send_loop(link.clone())).detach();
        link
    }

    fn handle(
        self: &Rc<Self>,
        peer: NodeId,
        connection: ConnectionHandle,
        stream: StreamId,
        incoming: Incoming,
    ) {
        let Incoming { frame, parts } = incoming;
        match frame {
            PeerFrame::Hello { node } => {
                if node != peer {
                    tracing::warn!(peer, claimed = node, "a peer's hello names another node; dropped");
                    return;
                }
                let current = self.links.borrow().get(&peer).map(|l| (l.connection, l.stream));
                if current != Some((connection, stream)) {
                    self.add_link(peer, connection, stream);
                }
            }
            PeerFrame::Raft { group: 0, message, .. } => match raft_message(&message, parts) {
                Ok(message) if message.from == raft_id(peer) && message.to == raft_id(self.node) => {
                    self.group.receive(message);
                }
                Ok(message) => {
                    tracing::warn!(
                        peer,
                        from = message.from,
                        to = message.to,
                        "a raft message with the wrong sender"
                    );
                }
                Err(error) => tracing::warn!(peer, %error, "an undecodable raft message"),
            },
            frame @ (PeerFrame::Raft { .. }
            | PeerFrame::FetchLog { .. }
            | PeerFrame::LogChunk { .. }
            | PeerFrame::Hibernate { .. }) => match self.partitions.borrow().as_ref() {
                Some(handler) => handler(peer, Incoming { frame, parts }),
                None => tracing::debug!(peer, "a partition group's frame before the partitions serve"),
            },
            PeerFrame::Admin { id, request } => {
                let peers = self.clone();
                glommio::spawn_local(async move {
                    let reply = match serde_json::from_slice::<AdminOp>(&request) {
                        Ok(op) => (peers.handler)(op).await,
                        Err(e) => {
                            Err((ErrorCode::InvalidRequest, format!("undecodable forwarded request: {e}")))
                        }
                    };
                    let (code, message) = match reply {
                        Ok(()) => (ErrorCode::None, String::new()),
                        Err((code, message)) => (code, message),
                    };
                    if let Some(link) = peers.links.borrow().get(&peer).cloned() {
                        peers.enqueue(&link, PeerFrame::AdminReply { id, code, message }.encode(), true);
                    }
                })
                .detach();
            }
            PeerFrame::AdminReply { id, code, message } => {
                if let Some(waiter) = self.pending.borrow_mut().remove(&id) {
                    let reply = if code == ErrorCode::None { Ok(()) } else { Err((code, message)) };
                    let _ = waiter.try_send(reply);
                }
            }
        }
    }

    /// Queues a frame for a peer; a Raft message (`must` false) is dropped when the queue is
    /// full.
    fn enqueue(&self, link: &Link, frame: Vec<Bytes>, must: bool) {
        let len: usize = frame.iter().map(Bytes::len).sum();
        if !must && link.queued.get() + len > self.queued_bytes_max {
            return;
        }
        link.queued.set(link.queued.get() + len);
        link.queue.borrow_mut().push_back(frame);
        link.wake.notify_all();
    }

    async fn send_loop(self: Rc<Self>, link: Rc<Link>) {
        loop {
            let woken = link.wake.changed();
            let next = link.queue.borrow_mut().pop_front();
            match next {
                Some(frame) => {
                    link.queued.set(link.queued.get() - frame.iter().map(Bytes::len).sum::<usize>());
                    if !self.transport.send_chunks_all(link.connection, link.stream, frame).await {
                        link.closed.set(true);
                    }
                }
                None if link.closed.get() => return,
                None => woken.await,
            }
            if link.closed.get() {
                return;
            }
        }
    }

    async fn raft_loop(self: Rc<Self>) {
        loop {
            let messages = self.group.outgoing().await;
            if messages.is_empty() {
                return;
            }
            for message in messages {
                let peer = node_of(message.to);
                let Some(link) = self.links.borrow().get(&peer).cloned() else { continue };
                self.enqueue(&link, raft_frame(0, message), false);
            }
        }
    }

    /// Installs what is told of a peer's link coming up or being lost.
    pub(crate) fn set_node_handler(&self, handler: NodeHandler) {
        *self.node_changes.borrow_mut() = Some(handler);
    }

    fn node_changed(&self, node: NodeId) {
        if let Some(handler) = self.node_changes.borrow().as_ref() {
            handler(node);
        }
    }

    /// Installs the handler of partition groups' frames.
    pub(crate) fn set_partition_handler(&self, handler: PartitionHandler) {
        *self.partitions.borrow_mut() = Some(handler);
    }

    /// Queues a partition group's frame for node `to`; dropped when the link is down or its
    /// queue full (Raft resends, a log fetch is asked again).
    pub(crate) fn send_frame(&self, to: NodeId, frame: Vec<Bytes>) {
        let Some(link) = self.links.borrow().get(&to).cloned() else { return };
        self.enqueue(&link, frame, false);
    }

    /// Sends an admin request to node `to` (the controller) and waits for its answer.
    pub(crate) async fn forward(&self, to: NodeId, op: &AdminOp) -> Reply {
        let Some(link) = self.links.borrow().get(&to).cloned() else {
            return Err((
                ErrorCode::NotController,
                format!("the controller (node {to}) is not reachable from here"),
            ));
        };
        let id = self.next_request.get();
        self.next_request.set(id + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, tx);
        let request = serde_json::to_vec(op).expect("admin requests serialize");
        self.enqueue(&link, PeerFrame::Admin { id, request }.encode(), true);
        let reply =
            async { rx.recv().await.unwrap_or(Err((ErrorCode::NotController, "link closed".into()))) };
        let timeout = async {
            glommio::timer::sleep(FORWARD_TIMEOUT).await;
            Err((ErrorCode::Timeout, format!("the controller (node {to}) did not answer in time")))
        };
        // A controller that dies or is deposed never answers: stop waiting once this node
        // knows of another leader, or the link is gone, so the caller can go to the new one.
        let deposed = async {
            loop {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                let linked = self.links.borrow().get(&to).is_some_and(|l| !l.closed.get());
                if self.group.leader() != Some(to) || !linked {
                    return Err((ErrorCode::NotController, format!("node {to} is no longer the controller")));
                }
            }
        };
        let timeout = futures_lite::future::or(timeout, deposed);
        let result = futures_lite::future::or(reply, timeout).await;
        self.pending.borrow_mut().remove(&id);
        result
    }
}

/// A Raft message as a frame: the entries' data (and a snapshot's) move, uncopied, into the
/// frame's payload parts, and the rest is encoded as the envelope's `message`.
pub(crate) fn raft_frame(group: u64, mut message: RaftMessage) -> Vec<Bytes> {
    let mut parts: Vec<Bytes> = message.entries.iter_mut().map(|e| std::mem::take(&mut e.data)).collect();
    if message.has_snapshot() {
        parts.push(std::mem::take(&mut message.mut_snapshot().data));
    }
    let lens = parts.iter().map(|p| u32::try_from(p.len()).expect("a raft entry fits u32")).collect();
    let encoded = message.write_to_bytes().expect("raft messages encode");
    PeerFrame::Raft { group, message: encoded, parts: lens }.encode_with(parts)
}

/// The Raft message of a frame: its envelope's `message` with the payload parts put back.
pub(crate) fn raft_message(encoded: &[u8], parts: Vec<Bytes>) -> Result<RaftMessage, String> {
    let mut message = RaftMessage::parse_from_bytes(encoded).map_err(|e| e.to_string())?;
    let snapshot = message.has_snapshot();
    if parts.len() != message.entries.len() + usize::from(snapshot) {
        return Err(format!(
            "{} payload parts for {} entries{}",
            parts.len(),
            message.entries.len(),
            if snapshot { " and a snapshot" } else { "" }
        ));
    }
    let mut parts = parts.into_iter();
    for (entry, data) in message.entries.iter_mut().zip(parts.by_ref()) {
        entry.data = data;
    }
    if let Some(data) = parts.next() {
        message.mut_snapshot().data = data;
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{Entry, MessageType};
    use rill_net::peer::PeerReader;

    use super::*;

    #[test]
    fn raft_messages_cross_as_envelope_and_untouched_entry_data() {
        let mut message = RaftMessage::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.from = 2;
        message.to = 3;
        message.term = 7;
        let data: Vec<Bytes> = vec![Bytes::from(vec![1u8; 3000]), Bytes::new(), Bytes::from_static(b"op")];
        for (i, d) in data.iter().enumerate() {
            message.entries.push(Entry {
                index: 10 + i as u64,
                term: 7,
                data: d.clone(),
                ..Default::default()
            });
        }
        message.mut_snapshot().data = Bytes::from_static(b"snapshot state");
        message.mut_snapshot().mut_metadata().index = 9;

        let chunks = raft_frame(4, message.clone());
        assert_eq!(chunks[1].as_ptr(), data[0].as_ptr(), "entry data is handed to QUIC uncopied");
        let wire: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let mut reader = PeerReader::new(1 << 20);
        let mut frames = reader.push(&wire).unwrap();
        assert_eq!(frames.len(), 1);
        let Incoming { frame, parts } = frames.pop().unwrap();
        let PeerFrame::Raft { group: 4, message: encoded, .. } = frame else { panic!("{frame:?}") };
        assert_eq!(raft_message(&encoded, parts).unwrap(), message);

        // An envelope whose entries do not match its parts is refused, not patched up.
        let PeerFrame::Raft { message: encoded, .. } = reader.push(&wire).unwrap().pop().unwrap().frame
        else {
            unreachable!()
        };
        let err = raft_message(&encoded, vec![Bytes::new()]).unwrap_err();
        assert!(err.contains("1 payload parts for 3 entries and a snapshot"), "{err}");
    }
}

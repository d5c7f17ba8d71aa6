//! The node-to-node QUIC transport's state machine, sans-I/O: a `quinn-proto` endpoint with
//! the cluster's mutual TLS ([`crate::tls`]), fed datagrams and the time by its caller (the
//! broker's glommio UDP loop, or a test moving datagrams in memory).
//!
//! A [`Node`] dials peers by node id and accepts them; the dialler's TLS checks that the server
//! names the node dialled, and the acceptor learns which node a client is from its certificate
//! as soon as the handshake ends ([`Event::Connected`] carries it). Long-lived bidirectional
//! streams carry the traffic; bytes come out as [`Event::Received`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{
    ClientConfig, Connection, DatagramEvent, Dir, Endpoint, EndpointConfig, ServerConfig, StreamEvent,
};
use rustls::pki_types::CertificateDer;

pub use quinn_proto::{ConnectionHandle, StreamId};

use crate::tls::{self, Pem, TlsError};

/// Flow-control windows and packet sizes of node-to-node connections (the tuning profile's
/// `[cluster]` section sets them per host).
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Bytes a peer may send on one stream ahead of the reader.
    pub stream_window_bytes: u32,
    /// Bytes a peer may send on all streams of a connection ahead of the reader.
    pub connection_window_bytes: u32,
    /// Bytes this side keeps unacknowledged in flight.
    pub send_window_bytes: u64,
    /// The UDP payload size of the first packets.
    pub initial_mtu: u16,
    /// The largest UDP payload MTU discovery tries (9,000 for jumbo-frame networks; loopback
    /// allows more).
    pub mtu_max: u16,
    /// A connection silent this long is lost (its peer is dead or cut off).
    pub idle_timeout: std::time::Duration,
    /// How often an otherwise idle connection sends a keep-alive.
    pub keep_alive: std::time::Duration,
    /// Send and receive many datagrams per system call (UDP GSO and GRO) where the kernel
    /// offers them.
    pub segmentation_offload: bool,
    /// Packets the peer may receive before it must acknowledge (QUIC's acknowledgement
    /// frequency extension; 1, QUIC's default, acknowledges every other packet). Fewer
    /// acknowledgements cost both ends less CPU in bulk transfer.
    pub ack_eliciting_threshold: u32,
}

impl Default for Tuning {
    /// Windows sized for a datacenter network (a 10 Gb/s link with 1 ms of round trip holds
    /// 1.25 MB in flight), MTU discovery up to jumbo frames.
    fn default() -> Tuning {
        Tuning {
            stream_window_bytes: 16 << 20,
            connection_window_bytes: 64 << 20,
            send_window_bytes: 64 << 20,
            initial_mtu: 1_452,
            mtu_max: 8_952,
            idle_timeout: std::time::Duration::from_secs(3),
            keep_alive: std::time::Duration::from_millis(500),
            segmentation_offload: true,
            ack_eliciting_threshold: 1,
        }
    }
}

impl Tuning {
    fn transport(&self) -> quinn_proto::TransportConfig {
        let mut t = quinn_proto::TransportConfig::default();
        t.stream_receive_window(self.stream_window_bytes.into())
            .receive_window(self.connection_window_bytes.into())
            .send_window(self.send_window_bytes)
            .initial_mtu(self.initial_mtu);
        let mut mtu = quinn_proto::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_max);
        t.mtu_discovery_config(Some(mtu));
        if let Ok(idle) = quinn_proto::IdleTimeout::try_from(self.idle_timeout) {
            t.max_idle_timeout(Some(idle));
        }
        t.keep_alive_interval(Some(self.keep_alive));
        t.enable_segmentation_offload(self.segmentation_offload);
        if self.ack_eliciting_threshold != 1 {
            let mut ack = quinn_proto::AckFrequencyConfig::default();
            ack.ack_eliciting_threshold(self.ack_eliciting_threshold.into());
            t.ack_frequency_config(Some(ack));
        }
        t
    }
}

/// Bytes to send: one datagram or, with `segment_size`, several of that size back to back
/// (the last may be shorter) for one segmentation-offload send.
#[derive(Debug)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The datagram or datagrams.
    pub bytes: Vec<u8>,
    /// The size of each datagram in `bytes`, when there are several.
    pub segment_size: Option<usize>,
    /// The ECN bits to mark the datagrams with.
    pub ecn: Option<u8>,
}

impl Transmit {
    /// The datagrams one by one (for a socket without segmentation offload).
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.chunks(self.segment_size.unwrap_or(self.bytes.len()).max(1))
    }
}

/// The largest UDP payload over IPv4, which bounds one segmentation-offload send.
const UDP_PAYLOAD_MAX: usize = 65_507;

/// What the caller learns from a [`Node`].
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A connection finished its handshake; `node` is the peer's id, proven by its certificate.
    /// On the dialling side this comes before the acceptor has checked the dialler's own
    /// certificate (TLS 1.3): a refused dialler sees [`Event::Lost`] right after.
    Connected {
        /// The connection.
        connection: ConnectionHandle,
        /// The peer's node id.
        node: u32,
    },
    /// Bytes arrived on a stream.
    Received {
        /// The connection.
        connection: ConnectionHandle,
        /// The stream.
        stream: StreamId,
        /// The bytes, in stream order.
        bytes: Bytes,
    },
    /// A connection ended (closed, refused, timed out); `reason` says why.
    Lost {
        /// The connection.
        connection: ConnectionHandle,
        /// What ended it.
        reason: String,
    },
}

struct Peer {
    conn: Connection,
    /// The node dialled (a client connection) or, once connected, the node proven.
    node: Option<u32>,
}

/// One node's QUIC endpoint.
pub struct Node {
    endpoint: Endpoint,
    client: ClientConfig,
    peers: HashMap<ConnectionHandle, Peer>,
    events: VecDeque<Event>,
    /// Datagrams one [`Transmit`] may carry (1 without segmentation offload).
    max_segments: usize,
    /// [`Tuning::segmentation_offload`].
    offload: bool,
}

/// Errors building a node.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// quinn refused the TLS configuration.
    #[error("quic crypto: {0}")]
    Crypto(String),
    /// A tuning value quinn refuses.
    #[error("quic tuning: {0}")]
    Tuning(String),
    /// quinn refused to dial.
    #[error("connecting: {0}")]
    Connect(#[from] quinn_proto::ConnectError),
}

impl Node {
    /// A node with the cluster CA certificate and its own certificate.
    pub fn new(ca_cert: &str, node: &Pem) -> Result<Node, QuicError> {
        Node::with_tuning(ca_cert, node, Tuning::default())
    }

    /// [`Node::new`] with explicit windows and packet sizes.
    pub fn with_tuning(ca_cert: &str, node: &Pem, tuning: Tuning) -> Result<Node, QuicError> {
        let server_tls = tls::server_config(ca_cert, node)?;
        let client_tls = tls::client_config(ca_cert, node)?;
        let server_crypto =
            QuicServerConfig::try_from(server_tls).map_err(|e| QuicError::Crypto(e.to_string()))?;
        let client_crypto =
            QuicClientConfig::try_from(client_tls).map_err(|e| QuicError::Crypto(e.to_string()))?;
        let transport = Arc::new(tuning.transport());
        let mut server = ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport.clone());
        let mut client = ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport);
        let mut endpoint_config = EndpointConfig::default();
        // The largest datagram this endpoint takes; MTU discovery never probes above it.
        endpoint_config
            .max_udp_payload_size(tuning.mtu_max.max(1_200))
            .map_err(|e| QuicError::Tuning(format!("mtu_max {}: {e}", tuning.mtu_max)))?;
        let endpoint = Endpoint::new(Arc::new(endpoint_config), Some(Arc::new(server)), true, None);
        Ok(Node {
            endpoint,
            client,
            peers: HashMap::new(),
            events: VecDeque::new(),
            max_segments: 1,
            offload: tuning.segmentation_offload,
        })
    }

    /// Starts a connection to node `node` at `remote`.
    pub fn dial(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        node: u32,
    ) -> Result<ConnectionHandle, QuicError> {
        let name = tls::node_dns_name(node);
        let (handle, conn) = self.endpoint.connect(now, self.client.clone(), remote, &name)?;
        self.peers.insert(handle, Peer { conn, node: Some(node) });
        Ok(handle)
    }

    /// Whether this node's tuning asks for segmentation offload (its socket loop uses GSO and
    /// GRO then, where the kernel has them).
    pub fn segmentation_offload(&self) -> bool {
        self.offload
    }

    /// Lets one [`Transmit`] carry up to `segments` datagrams (what the socket's segmentation
    /// offload takes; 1 turns it off).
    pub fn set_max_segments(&mut self, segments: usize) {
        self.max_segments = segments.max(1);
    }

    /// Takes a datagram that arrived from `from`, with the ECN bits it carried.
    pub fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ecn: Option<u8>,
        datagram: &[u8],
    ) -> Vec<Transmit> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let ecn = ecn.and_then(quinn_proto::EcnCodepoint::from_bits);
        match self.endpoint.handle(now, from, None, ecn, BytesMut::from(datagram), &mut buf) {
            Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                if let Some(peer) = self.peers.get_mut(&handle) {
                    peer.conn.handle_event(event);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                match self.endpoint.accept(incoming, now, &mut buf, None) {
                    Ok((handle, conn)) => {
                        self.peers.insert(handle, Peer { conn, node: None });
                    }
                    Err(e) => {
                        if let Some(transmit) = e.response {
                            out.push(transmit_of(&transmit, &buf));
                        }
                    }
                }
            }
            Some(DatagramEvent::Response(transmit)) => out.push(transmit_of(&transmit, &buf)),
            None => {}
        }
        out
    }

    /// Runs timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            if peer.conn.poll_timeout().is_some_and(|t| t <= now) {
                peer.conn.handle_timeout(now);
            }
        }
    }

    /// When [`Node::handle_timeout`] should run next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.peers.values_mut().filter_map(|p| p.conn.poll_timeout()).min()
    }

    /// Opens a bidirectional stream on a connection (`None` if the peer's limit is reached or
    /// the connection is gone).
    pub fn open_stream(&mut self, connection: ConnectionHandle) -> Option<StreamId> {
        self.peers.get_mut(&connection)?.conn.streams().open(Dir::Bi)
    }

    /// Writes as much of `bytes` as flow control allows; returns how much was taken (0 while
    /// the window is full), or `None` if the stream or connection can no longer be written.
    pub fn send(&mut self, connection: ConnectionHandle, stream: StreamId, bytes: &[u8]) -> Option<usize> {
        let peer = self.peers.get_mut(&connection)?;
        match peer.conn.send_stream(stream).write(bytes) {
            Ok(taken) => Some(taken),
            Err(quinn_proto::WriteError::Blocked) => Some(0),
            Err(_) => None,
        }
    }

    /// Writes as much of `chunks` as flow control allows, taking the `Bytes` as they are (no
    /// copy): chunks written whole are emptied, a chunk written in part keeps its rest. Returns
    /// the bytes taken (0 while the window is full), or `None` if the stream or connection can
    /// no longer be written.
    pub fn send_chunks(
        &mut self,
        connection: ConnectionHandle,
        stream: StreamId,
        chunks: &mut [Bytes],
    ) -> Option<usize> {
        let peer = self.peers.get_mut(&connection)?;
        match peer.conn.send_stream(stream).write_chunks(chunks) {
            Ok(written) => {
                for chunk in &mut chunks[..written.chunks] {
                    *chunk = Bytes::new();
                }
                Some(written.bytes)
            }
            Err(quinn_proto::WriteError::Blocked) => Some(0),
            Err(_) => None,
        }
    }

    /// Datagrams to send now, and events for the caller; call after every input.
    pub fn poll(&mut self, now: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        let handles: Vec<ConnectionHandle> = self.peers.keys().copied().collect();
        for handle in handles {
            self.drive(now, handle, &mut out);
        }
        out
    }

    /// The next event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn drive(&mut self, now: Instant, handle: ConnectionHandle, out: &mut Vec<Transmit>) {
        let Some(peer) = self.peers.get_mut(&handle) else { return };
        // Endpoint events may answer with connection events (new connection ids).
        while let Some(event) = peer.conn.poll_endpoint_events() {
            if let Some(reply) = self.endpoint.handle_event(handle, event) {
                peer.conn.handle_event(reply);
            }
        }
        let mut lost = None;
        while let Some(event) = peer.conn.poll() {
            match event {
                quinn_proto::Event::Connected => {
                    let certs = peer
                        .conn
                        .crypto_session()
                        .peer_identity()
                        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
                    let proven = certs.and_then(|certs| {
                        let cert = certs.first()?.clone();
                        match peer.node {
                            // The dialler's TLS already checked the name of the node dialled.
                            Some(node) => tls::certificate_names_node(&cert, node).then_some(node),
                            None => tls::certificate_node_id(&cert),
                        }
                    });
                    match proven {
                        Some(node) => {
                            peer.node = Some(node);
                            self.events.push_back(Event::Connected { connection: handle, node });
                        }
                        None => {
                            let reason = "the peer certificate names no node of this cluster";
                            peer.conn.close(now, 1u32.into(), Bytes::from_static(reason.as_bytes()));
                        }
                    }
                }
                quinn_proto::Event::ConnectionLost { reason } => lost = Some(reason.to_string()),
                quinn_proto::Event::Stream(StreamEvent::Readable { id }) => {
                    read_stream(&mut peer.conn, handle, id, &mut self.events);
                }
                quinn_proto::Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => {
                    while let Some(id) = peer.conn.streams().accept(Dir::Bi) {
                        read_stream(&mut peer.conn, handle, id, &mut self.events);
                    }
                }
                _ => {}
            }
        }
        // One offloaded send is one UDP datagram to the kernel before it splits it: at most
        // 65,507 bytes of payload, so jumbo-sized packets allow fewer segments per send.
        let segments = self.max_segments.min(UDP_PAYLOAD_MAX / usize::from(peer.conn.current_mtu()).max(1));
        // Room for a whole offloaded send, so quinn never grows the buffer packet by packet.
        let capacity = segments.max(1) * usize::from(peer.conn.current_mtu());
        let mut buf = Vec::with_capacity(capacity);
        while let Some(transmit) = peer.conn.poll_transmit(now, segments.max(1), &mut buf) {
            // The packets were written into `buf`: hand it over rather than copy it.
            buf.truncate(transmit.size);
            out.push(Transmit {
                to: transmit.destination,
                bytes: std::mem::replace(&mut buf, Vec::with_capacity(capacity)),
                segment_size: transmit.segment_size,
                ecn: transmit.ecn.map(|e| e as u8),
            });
        }
        if let Some(reason) = lost {
            self.events.push_back(Event::Lost { connection: handle, reason });
        }
        if peer.conn.is_drained() {
            self.peers.remove(&handle);
        }
    }
}

fn transmit_of(transmit: &quinn_proto::Transmit, buf: &[u8]) -> Transmit {
    Transmit {
        to: transmit.destination,
        bytes: buf[..transmit.size].to_vec(),
        segment_size: transmit.segment_size,
        ecn: transmit.ecn.map(|e| e as u8),
    }
}

/// Moves what a stream has received, in order, into `events`.
fn read_stream(conn: &mut Connection, handle: ConnectionHandle, id: StreamId, events: &mut VecDeque<Event>) {
    let mut stream = conn.recv_stream(id);
    let Ok(mut chunks) = stream.read(true) else { return };
    while let Ok(Some(chunk)) = chunks.next(usize::MAX) {
        events.push_back(Event::Received { connection: handle, stream: id, bytes: chunk.bytes });
    }
    // Whether the peer needs a window update is picked up by the next poll_transmit.
    let _ = chunks.finalize();
}

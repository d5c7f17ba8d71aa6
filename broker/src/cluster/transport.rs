//! The node-to-node transport's socket loop: one glommio UDP socket driving the sans-I/O
//! [`rill_net::quic::Node`] (QUIC with the cluster's mutual TLS).
//!
//! [`Transport::run`] is the loop: it waits for a datagram or the node's next timer, feeds it,
//! and sends what the node wants sent. Callers dial, open streams and write through the
//! transport; a write that flow control holds back waits for the loop to make progress (an
//! acknowledgement or window update arriving), so back-pressure reaches the writer.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::UdpSocket;
use rill_net::quic::{ConnectionHandle, StreamId};
use rill_net::quic::{Event, Node};
use rill_storage::Notify;

/// The largest UDP datagram read at once.
const DATAGRAM_BYTES_MAX: usize = 65_536;

/// A node's QUIC endpoint on a UDP socket.
pub struct Transport {
    socket: UdpSocket,
    node: RefCell<Node>,
    events: RefCell<VecDeque<Event>>,
    /// Signalled after every pass of the loop (bytes acknowledged, events queued) and at stop.
    progress: Notify,
    stopped: Cell<bool>,
}

impl Transport {
    /// Binds `addr` for `node`.
    pub fn bind(addr: SocketAddr, node: Node) -> io::Result<Rc<Transport>> {
        let socket = UdpSocket::bind(addr)?;
        Ok(Rc::new(Transport {
            socket,
            node: RefCell::new(node),
            events: RefCell::new(VecDeque::new()),
            progress: Notify::default(),
            stopped: Cell::new(false),
        }))
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    /// Runs the socket loop until [`Transport::stop`].
    pub async fn run(self: Rc<Self>) {
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
        while !self.stopped.get() {
            let timeout = self.node.borrow_mut().poll_timeout();
            let wait = timeout
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(100))
                .min(Duration::from_millis(100));
            let received =
                futures_lite::future::or(async { Some(self.socket.recv_from(&mut buf).await) }, async {
                    glommio::timer::sleep(wait).await;
                    None
                })
                .await;
            let now = Instant::now();
            let mut replies = Vec::new();
            match received {
                Some(Ok((len, from))) => replies = self.node.borrow_mut().receive(now, from, &buf[..len]),
                Some(Err(error)) => tracing::warn!(%error, "cluster socket receive failed"),
                None => self.node.borrow_mut().handle_timeout(now),
            }
            for (to, datagram) in replies {
                let _ = self.socket.send_to(&datagram, to).await;
            }
            self.flush().await;
        }
    }

    /// Ends [`Transport::run`] at its next wake-up.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.progress.notify_all();
    }

    /// Sends what the node has to send, and hands its events to waiters.
    async fn flush(&self) {
        let now = Instant::now();
        let datagrams = self.node.borrow_mut().poll(now);
        for (to, datagram) in datagrams {
            if let Err(error) = self.socket.send_to(&datagram, to).await {
                tracing::warn!(%error, %to, "cluster socket send failed");
            }
        }
        let mut node = self.node.borrow_mut();
        let mut events = self.events.borrow_mut();
        while let Some(event) = node.next_event() {
            events.push_back(event);
        }
        drop((node, events));
        self.progress.notify_all();
    }

    /// Starts a connection to node `node` at `remote`.
    pub async fn dial(
        &self,
        remote: SocketAddr,
        node: u32,
    ) -> Result<ConnectionHandle, rill_net::quic::QuicError> {
        let handle = self.node.borrow_mut().dial(Instant::now(), remote, node)?;
        self.flush().await;
        Ok(handle)
    }

    /// The next event (connections made and lost, bytes received).
    pub async fn next_event(&self) -> Option<Event> {
        loop {
            if let Some(event) = self.events.borrow_mut().pop_front() {
                return Some(event);
            }
            if self.stopped.get() {
                return None;
            }
            self.progress.changed().await;
        }
    }

    /// Opens a bidirectional stream.
    pub fn open_stream(&self, connection: ConnectionHandle) -> Option<StreamId> {
        self.node.borrow_mut().open_stream(connection)
    }

    /// Writes all of `bytes` to a stream, waiting while flow control holds them back; false if
    /// the stream or its connection ended first.
    pub async fn send_all(&self, connection: ConnectionHandle, stream: StreamId, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            let Some(taken) = self.node.borrow_mut().send(connection, stream, bytes) else { return false };
            bytes = &bytes[taken..];
            self.flush().await;
            if !bytes.is_empty() {
                if self.stopped.get() {
                    return false;
                }
                self.progress.changed().await;
            }
        }
        true
    }
}

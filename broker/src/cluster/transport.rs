//! The node-to-node transport's socket loop: one glommio UDP socket driving the sans-I/O
//! [`rill_net::quic::Node`] (QUIC with the cluster's mutual TLS).
//!
//! [`Transport::run`] is the loop: it waits for a datagram or the node's next timer, feeds it,
//! and sends what the node wants sent. Callers dial, open streams and write through the
//! transport; a write that flow control holds back waits for the loop to make progress (an
//! acknowledgement or window update arriving), so back-pressure reaches the writer.
//!
//! Datagrams move through `quinn-udp` (quinn's own socket layer): with segmentation offload
//! on and a kernel that has it, one `sendmsg` carries up to 64 datagrams (UDP GSO) and one
//! receive returns a run of datagrams from one sender (UDP GRO), each run split back at its
//! stride; ECN marks travel both ways. quinn-udp never waits: when the socket has nothing,
//! the loop waits on glommio (a peek through io_uring), and a send the socket cannot take
//! now goes through glommio datagram by datagram.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::net::UdpSocket;
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use rill_net::quic::{ConnectionHandle, StreamId};
use rill_net::quic::{Event, Node, Transmit};
use rill_storage::Notify;

/// Bytes of one receive slot: the largest UDP payload, which also bounds a GRO run.
const SLOT_BYTES: usize = 65_536;
/// Receive slots filled per system call.
const SLOTS: usize = 8;

/// A node's QUIC endpoint on a UDP socket.
pub struct Transport {
    socket: UdpSocket,
    udp: UdpSocketState,
    offload: bool,
    node: RefCell<Node>,
    events: RefCell<VecDeque<Event>>,
    /// Signalled after every pass of the loop (bytes acknowledged, events queued) and at stop.
    progress: Notify,
    stopped: Cell<bool>,
}

impl Transport {
    /// Binds `addr` for `node`, with UDP GSO and GRO where the kernel has them if the node's
    /// tuning asks for segmentation offload; `buffer_bytes` sizes the socket's send and
    /// receive buffers (the kernel caps them at `net.core.wmem_max` and `rmem_max`).
    pub fn bind(addr: SocketAddr, mut node: Node, buffer_bytes: usize) -> io::Result<Rc<Transport>> {
        let offload = node.segmentation_offload();
        let socket = UdpSocket::bind(addr)?;
        // SAFETY: the descriptor is the socket's, alive for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
        set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, buffer_bytes.min(i32::MAX as usize) as i32)?;
        set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, buffer_bytes.min(i32::MAX as usize) as i32)?;
        // quinn-udp's calls must not block the executor; glommio's own calls say MSG_DONTWAIT
        // or go through io_uring, which waits for a non-blocking socket by polling it.
        set_nonblocking(&fd)?;
        let udp = UdpSocketState::new(UdpSockRef::from(&fd))?;
        if offload {
            node.set_max_segments(udp.max_gso_segments());
        } else {
            // GRO off: a kernel without it refuses the option, which is what off means anyway.
            let _ = set_int(&fd, libc::SOL_UDP, libc::UDP_GRO, 0);
        }
        tracing::debug!(
            gso_segments = udp.max_gso_segments(),
            gro_segments = udp.gro_segments(),
            offload,
            "cluster socket"
        );
        Ok(Rc::new(Transport {
            socket,
            udp,
            offload,
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

    /// Datagrams one send carries (1 without segmentation offload).
    pub fn gso_segments(&self) -> usize {
        if self.offload { self.udp.max_gso_segments() } else { 1 }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is the socket's, which outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.socket.as_raw_fd()) }
    }

    /// Runs the socket loop until [`Transport::stop`].
    pub async fn run(self: Rc<Self>) {
        let mut slots = vec![vec![0u8; SLOT_BYTES]; SLOTS];
        let mut metas = [RecvMeta::default(); SLOTS];
        while !self.stopped.get() {
            let received = self.receive(&mut slots, &mut metas).await;
            if !received {
                let timeout = self.node.borrow_mut().poll_timeout();
                let wait = timeout
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(100))
                    .min(Duration::from_millis(100));
                let mut peek = [0u8; 1];
                let readable = futures_lite::future::or(
                    async { self.socket.peek_from(&mut peek).await.is_ok() },
                    async {
                        glommio::timer::sleep(wait).await;
                        false
                    },
                )
                .await;
                if readable {
                    continue;
                }
            }
            self.node.borrow_mut().handle_timeout(Instant::now());
            self.flush().await;
        }
    }

    /// Feeds the node every datagram the socket holds now; false if it held none.
    async fn receive(&self, slots: &mut [Vec<u8>], metas: &mut [RecvMeta]) -> bool {
        let mut bufs: Vec<IoSliceMut<'_>> = slots.iter_mut().map(|s| IoSliceMut::new(s)).collect();
        let count = match self.udp.recv(UdpSockRef::from(&self.fd()), &mut bufs, metas) {
            Ok(count) => count,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(error) => {
                tracing::warn!(%error, "cluster socket receive failed");
                return false;
            }
        };
        let now = Instant::now();
        let mut replies = Vec::new();
        {
            let mut node = self.node.borrow_mut();
            for (meta, buf) in metas.iter().zip(bufs.iter()).take(count) {
                let ecn = meta.ecn.map(|e| e as u8);
                for datagram in buf[..meta.len].chunks(meta.stride.max(1)) {
                    replies.extend(node.receive(now, meta.addr, ecn, datagram));
                }
            }
        }
        for reply in &replies {
            self.send(reply).await;
        }
        count > 0
    }

    /// Sends one transmit: one system call with segmentation offload, or datagram by datagram
    /// through glommio when the socket cannot take it now.
    async fn send(&self, transmit: &Transmit) {
        let udp_transmit = quinn_udp::Transmit {
            destination: transmit.to,
            ecn: transmit.ecn.and_then(quinn_udp::EcnCodepoint::from_bits),
            contents: &transmit.bytes,
            segment_size: transmit.segment_size,
            src_ip: None,
        };
        match self.udp.send(UdpSockRef::from(&self.fd()), &udp_transmit) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                for datagram in transmit.datagrams() {
                    if let Err(error) = self.socket.send_to(datagram, transmit.to).await {
                        tracing::warn!(%error, to = %transmit.to, "cluster socket send failed");
                    }
                }
            }
            // quinn-udp only returns WouldBlock; anything else is logged there and dropped
            // (QUIC retransmits).
            Err(error) => tracing::warn!(%error, to = %transmit.to, "cluster socket send failed"),
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
        let transmits = {
            let mut node = self.node.borrow_mut();
            // quinn-udp turns GSO off if the device refuses it.
            node.set_max_segments(self.gso_segments());
            node.poll(now)
        };
        for transmit in &transmits {
            self.send(transmit).await;
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

impl Transport {
    /// Writes `chunks` in order to a stream as the `Bytes` they are (record batches are not
    /// copied into a frame buffer), waiting while flow control holds them back; false if the
    /// stream or its connection ended first.
    pub async fn send_chunks_all(
        &self,
        connection: ConnectionHandle,
        stream: StreamId,
        mut chunks: Vec<Bytes>,
    ) -> bool {
        let mut first = 0;
        loop {
            while first < chunks.len() && chunks[first].is_empty() {
                first += 1;
            }
            if first == chunks.len() {
                return true;
            }
            let Some(taken) = self.node.borrow_mut().send_chunks(connection, stream, &mut chunks[first..])
            else {
                return false;
            };
            self.flush().await;
            if taken == 0 {
                if self.stopped.get() {
                    return false;
                }
                self.progress.changed().await;
            }
        }
    }
}

/// Sets an integer socket option.
fn set_int(fd: &BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads one c_int from a valid pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn set_nonblocking(fd: &BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor, with flags it returned.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

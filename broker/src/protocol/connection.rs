//! Drives one client connection of either protocol: socket bytes into the protocol's sans-I/O
//! core (`net::ServerConnection` for the native protocol, `net::kafka::KafkaConnection` for
//! Kafka), each request into its own task, responses back to the socket in the order the core
//! releases them (completion order for native, request order for Kafka). Each request's effect
//! waits for the previous request's (an `Order`), so they take effect in arrival order while
//! their waiting overlaps.
//!
//! A reader task feeds the protocol core and spawns request handlers; a writer task sends what
//! the core queues. Both share the stream through an `Rc<RefCell>` borrowed only inside a poll,
//! never across an await. When `max_inflight` requests are unanswered the reader stops reading,
//! so a fast client is slowed by TCP rather than by broker memory.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use rill_net::connection::{ConnectionLimits, Incoming, ServerConnection};
use rill_net::kafka::{KafkaConnection, KafkaIncoming, KafkaLimits};
use rill_net::message::{Acks, RequestBody};

use crate::partition::order::Order;
use crate::partition::shard::Shard;

/// The protocol half of a connection: its sans-I/O core and how its requests are handled.
pub(crate) trait Protocol: Sized + 'static {
    type Request: 'static;
    /// The protocol's name in metrics (`rill_rpc_active_connections{server=...}`).
    const NAME: &'static str;
    fn wants_read(&self) -> bool;
    fn receive(&mut self, bytes: &[u8]);
    /// The next request, its id, and the bytes it holds while handled; `Err` closes.
    fn poll_request(&mut self) -> Result<Option<(u64, Self::Request, usize)>, String>;
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn partial_bytes(&self) -> usize;
    fn outgoing_bytes(&self) -> usize;
    /// Handles one request and queues its answer (if it has one) on `conn`; its effect waits
    /// for `order`'s turn and says when it is placed (see `order.rs`).
    fn handle(
        shard: Rc<Shard>,
        conn: Rc<RefCell<Self>>,
        id: u64,
        request: Self::Request,
        order: Order,
    ) -> impl std::future::Future<Output = ()> + 'static;
}

/// The native protocol.
pub(crate) struct Native(pub ServerConnection);

impl Native {
    pub fn new(limits: ConnectionLimits) -> Native {
        Native(ServerConnection::new(limits))
    }
}

impl Protocol for Native {
    type Request = (RequestBody, Bytes);
    const NAME: &'static str = "native";
    fn wants_read(&self) -> bool {
        self.0.wants_read()
    }
    fn receive(&mut self, bytes: &[u8]) {
        self.0.receive(bytes)
    }
    fn poll_request(&mut self) -> Result<Option<(u64, Self::Request, usize)>, String> {
        match self.0.poll_request() {
            Ok(Some(Incoming::Request { request_id, body, data })) => {
                let held = data.len();
                Ok(Some((request_id, (body, data), held)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.0.poll_transmit()
    }
    fn partial_bytes(&self) -> usize {
        self.0.partial_bytes()
    }
    fn outgoing_bytes(&self) -> usize {
        self.0.outgoing_bytes()
    }
    async fn handle(
        shard: Rc<Shard>,
        conn: Rc<RefCell<Self>>,
        id: u64,
        (body, data): Self::Request,
        order: Order,
    ) {
        let silent = matches!(body, RequestBody::Produce { acks: Acks::None, .. });
        let kind = body.kind();
        let (response, data) = crate::protocol::native::handle(&shard, body, data, order).await;
        let mut c = conn.borrow_mut();
        if silent {
            c.0.complete_silently(id);
        } else {
            c.0.respond(id, kind, &response, &data);
        }
    }
}

/// The Kafka protocol, and the client's address (DescribeGroups shows it).
pub(crate) struct Kafka(pub KafkaConnection, pub Rc<str>);

impl Kafka {
    pub fn new(limits: KafkaLimits, stream: &TcpStream) -> Kafka {
        let peer = stream.peer_addr().map(|a| format!("/{}", a.ip())).unwrap_or_default();
        Kafka(KafkaConnection::new(limits), peer.into())
    }
}

impl Protocol for Kafka {
    type Request = KafkaIncoming;
    const NAME: &'static str = "kafka";
    fn wants_read(&self) -> bool {
        self.0.wants_read()
    }
    fn receive(&mut self, bytes: &[u8]) {
        self.0.receive(bytes)
    }
    fn poll_request(&mut self) -> Result<Option<(u64, Self::Request, usize)>, String> {
        match self.0.poll_request() {
            Ok(Some(incoming)) => Ok(Some((incoming.slot, incoming.frame_bytes, incoming)))
                .map(|o| o.map(|(slot, held, incoming)| (slot, incoming, held))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
    fn poll_transmit(&mut self) -> Option<Bytes> {
        self.0.poll_transmit()
    }
    fn partial_bytes(&self) -> usize {
        self.0.partial_bytes()
    }
    fn outgoing_bytes(&self) -> usize {
        self.0.outgoing_bytes()
    }
    async fn handle(
        shard: Rc<Shard>,
        conn: Rc<RefCell<Self>>,
        id: u64,
        request: Self::Request,
        order: Order,
    ) {
        let peer = conn.borrow().1.clone();
        match crate::protocol::kafka::handle(&shard, request, &peer, order).await {
            Some(frame) => conn.borrow_mut().0.respond(id, frame),
            None => conn.borrow_mut().0.complete_silently(id),
        }
    }
}

/// One stream shared by the reader and writer tasks of a connection.
#[derive(Clone)]
struct Shared(Rc<RefCell<TcpStream>>);

impl AsyncRead for Shared {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Shared {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

/// What one connection charges to its shard's connection budget: the bytes of requests it has
/// received (in part, or whole and being handled). Responses waiting to be sent are bounded per
/// connection instead, so a client that stops reading slows only itself.
struct Charge<P: Protocol> {
    shard: Rc<Shard>,
    conn: Rc<RefCell<P>>,
    /// Data sections of requests being handled.
    inflight_bytes: Cell<usize>,
    charged: Cell<usize>,
}

impl<P: Protocol> Charge<P> {
    /// Re-measures what the connection holds and updates the shard's total.
    fn update(&self) {
        let now = self.conn.borrow().partial_bytes() + self.inflight_bytes.get();
        self.shard.charge_connection_bytes(now as isize - self.charged.get() as isize);
        self.charged.set(now);
    }
}

impl<P: Protocol> Drop for Charge<P> {
    fn drop(&mut self) {
        self.shard.charge_connection_bytes(-(self.charged.get() as isize));
    }
}

/// Why a connection's reader stops.
enum Stop {
    /// The client closed, the read failed, the writer failed, or the broker is stopping.
    Closed,
    /// The client sent bytes that are not a valid frame sequence.
    Garbage,
}

/// Serves a connection until the client closes it, it sends garbage, or the broker stops.
///
/// Memory: while the shard's connections hold more request bytes than
/// `connection_buffer_bytes_per_shard`, connections that hold no partial request do not read;
/// those mid-request finish reading it (so the shard never deadlocks), which bounds the excess
/// by one request per such connection. Each connection stops taking requests while more than
/// two fetch responses' worth of its answers wait to be sent.
pub(crate) async fn serve<P: Protocol>(shard: Rc<Shard>, stream: TcpStream, core: P) {
    shard.metrics.borrow_mut().connection(P::NAME, 1);
    let _ = stream.set_nodelay(true);
    let network = &shard.profile().network;
    set_option(&stream, libc::SO_SNDBUF, network.socket_send_buffer_bytes);
    set_option(&stream, libc::SO_RCVBUF, network.socket_recv_buffer_bytes);
    set_option(&stream, libc::SO_KEEPALIVE, 1);
    let outgoing_max = 2 * network.fetch_response_bytes_max as usize;
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let stream = Shared(Rc::new(RefCell::new(stream)));
    let conn = Rc::new(RefCell::new(core));
    let (wake_tx, wake_rx) = local_channel::new_unbounded::<()>();
    let wake_tx = Rc::new(wake_tx);
    let running = Rc::new(Cell::new(0usize));
    let writer_failed = Rc::new(crate::signal::Signal::default());
    let charge = Rc::new(Charge {
        shard: shard.clone(),
        conn: conn.clone(),
        inflight_bytes: Cell::new(0),
        charged: Cell::new(0),
    });
    let writer =
        glommio::spawn_local(write_loop(stream.clone(), charge.clone(), wake_rx, writer_failed.clone()));
    let mut buf = vec![0u8; shard.profile().network.socket_read_chunk_bytes as usize];
    let mut reader = stream.clone();
    // The signal of the last request taken: each request's effect follows the previous one's.
    let last_order = RefCell::new(None);
    let spawn_handler = |id: u64, request: P::Request, held: usize| {
        let order = Order::next(&mut last_order.borrow_mut());
        running.set(running.get() + 1);
        charge.inflight_bytes.set(charge.inflight_bytes.get() + held);
        let (shard, conn, wake, running, charge) =
            (shard.clone(), conn.clone(), wake_tx.clone(), running.clone(), charge.clone());
        glommio::spawn_local(async move {
            P::handle(shard, conn, id, request, order).await;
            running.set(running.get() - 1);
            charge.inflight_bytes.set(charge.inflight_bytes.get() - held);
            charge.update();
            let _ = wake.try_send(());
        })
        .detach();
    };
    let stop = loop {
        if writer_failed.is_fired() {
            break Stop::Closed;
        }
        let backlogged = conn.borrow().outgoing_bytes() > outgoing_max;
        // Requests already received are decoded first: a client that pipelined more than the
        // in-flight limit may be waiting for answers without sending another byte.
        let mut garbage = false;
        while !backlogged && conn.borrow().wants_read() {
            let next = conn.borrow_mut().poll_request();
            match next {
                Ok(Some((id, request, held))) => spawn_handler(id, request, held),
                Ok(None) => break,
                Err(error) => {
                    tracing::info!(%peer, %error, "closing connection after a framing error");
                    garbage = true;
                    break;
                }
            }
        }
        charge.update();
        // Error replies queued by the protocol core go out at once.
        let _ = wake_tx.try_send(());
        if garbage {
            break Stop::Garbage;
        }
        let over_budget = shard.connections_over_budget() && conn.borrow().partial_bytes() == 0;
        if backlogged || !conn.borrow().wants_read() || (over_budget && !shard.shutting_down()) {
            glommio::timer::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let read = futures_lite::future::or(async { Some(reader.read(&mut buf).await) }, async {
            futures_lite::future::or(shard.stopping.wait(), writer_failed.wait()).await;
            None
        })
        .await;
        match read {
            Some(Ok(0)) | None => break Stop::Closed,
            Some(Ok(n)) => conn.borrow_mut().receive(&buf[..n]),
            Some(Err(error)) => {
                tracing::debug!(%peer, %error, "read failed");
                break Stop::Closed;
            }
        }
    };
    if let Stop::Garbage = stop {
        tracing::debug!(%peer, "connection closed after garbage");
    }
    while running.get() > 0 {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    drop(wake_tx);
    writer.await;
    // Dropping the last handles closes the socket.
    drop(reader);
    drop(stream);
    shard.metrics.borrow_mut().connection(P::NAME, -1);
}

async fn write_loop<P: Protocol>(
    mut stream: Shared,
    charge: Rc<Charge<P>>,
    wake: local_channel::LocalReceiver<()>,
    failed: Rc<crate::signal::Signal>,
) {
    let conn = charge.conn.clone();
    write_all_queued(&mut stream, &conn, &charge, &wake).await;
    failed.fire();
    // Whatever is still queued can no longer be sent.
    while conn.borrow_mut().poll_transmit().is_some() {}
}

async fn write_all_queued<P: Protocol>(
    stream: &mut Shared,
    conn: &Rc<RefCell<P>>,
    charge: &Charge<P>,
    wake: &local_channel::LocalReceiver<()>,
) {
    let mut small = Vec::with_capacity(64 << 10);
    loop {
        loop {
            let chunk = conn.borrow_mut().poll_transmit();
            let Some(chunk) = chunk else { break };
            // Coalesce small chunks (headers, envelopes); send large ones (batches) as they are.
            if chunk.len() < 16 << 10 {
                small.extend_from_slice(&chunk);
                if small.len() < 64 << 10 {
                    continue;
                }
            } else if !small.is_empty() {
                if stream.write_all(&small).await.is_err() {
                    return;
                }
                small.clear();
            }
            let out: &[u8] = if small.is_empty() { &chunk } else { &small };
            if stream.write_all(out).await.is_err() {
                return;
            }
            small.clear();
        }
        if !small.is_empty() {
            if stream.write_all(&small).await.is_err() {
                return;
            }
            small.clear();
        }
        // Sent bytes no longer count against the shard's connection budget.
        charge.update();
        if wake.recv().await.is_none() {
            // Drain what the last handlers queued, then stop.
            loop {
                let chunk = conn.borrow_mut().poll_transmit();
                let Some(chunk) = chunk else { break };
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = stream.flush().await;
            return;
        }
    }
}

/// Sets a socket option (buffer sizes from the profile, which the kernel caps at
/// `net.core.[rw]mem_max` as `rill tune check` reports; keepalive).
fn set_option(stream: &TcpStream, option: libc::c_int, value: u64) {
    let value = value.min(i32::MAX as u64) as libc::c_int;
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
    // SAFETY: setsockopt reads one c_int from a valid pointer for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), option, "setting a socket option");
    }
}

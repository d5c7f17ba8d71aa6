//! A pipelined native-protocol client on glommio, for the load generator: many requests in
//! flight on one connection, responses matched by request id.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use rill_net::frame::{FrameDecoder, encode_header};
use rill_net::message::{self, RequestBody, ResponseBody};

type Waiters = Rc<RefCell<HashMap<u64, LocalSender<anyhow::Result<(ResponseBody, Bytes)>>>>>;

/// One connection to a broker.
pub struct NativeClient {
    frames: LocalSender<Chunks>,
    waiters: Waiters,
    next_id: Cell<u64>,
    tasks: RefCell<Vec<glommio::task::JoinHandle<()>>>,
}

impl NativeClient {
    /// Connects and starts the response reader.
    pub async fn connect(addr: &str) -> anyhow::Result<Rc<NativeClient>> {
        let (stream, read_half) = connect_halves(addr).await?;
        let waiters: Waiters = Rc::new(RefCell::new(HashMap::new()));
        let reader = glommio::spawn_local(read_loop(read_half, waiters.clone())).detach();
        let (frames, writer) = spawn_writer::<Chunks>(stream);
        Ok(Rc::new(NativeClient {
            frames,
            waiters,
            next_id: Cell::new(1),
            tasks: RefCell::new(vec![reader, writer]),
        }))
    }

    /// Sends a request that gets no response (produce with acks none).
    pub async fn send_only(&self, body: &RequestBody, data: &[Bytes]) -> anyhow::Result<()> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.send_frame(id, body, data).await
    }

    /// Sends a request and waits for its response.
    pub async fn call(&self, body: &RequestBody, data: &[Bytes]) -> anyhow::Result<(ResponseBody, Bytes)> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        self.waiters.borrow_mut().insert(id, tx);
        if let Err(e) = self.send_frame(id, body, data).await {
            self.waiters.borrow_mut().remove(&id);
            return Err(e);
        }
        rx.recv().await.unwrap_or_else(|| Err(anyhow::anyhow!("connection closed")))
    }

    async fn send_frame(&self, id: u64, body: &RequestBody, data: &[Bytes]) -> anyhow::Result<()> {
        let chunks = message::encode_payload(body, data);
        let slices: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
        let header = Bytes::copy_from_slice(&encode_header(body.kind() as u16, id, &slices));
        let frame = Chunks::join(header, chunks);
        if self.frames.send(frame).await.is_err() {
            anyhow::bail!("connection closed");
        }
        Ok(())
    }
}

/// A frame as the pieces it was built from: large data sections (batches) are written from
/// the caller's buffers rather than copied into one frame; small pieces are joined, so a small
/// frame still costs one write.
pub(crate) struct Chunks(Vec<Bytes>);

/// Pieces at least this large are written on their own instead of being copied.
const CHUNK_COPY_BYTES_MAX: usize = 64 << 10;

impl Chunks {
    fn join(header: Bytes, pieces: Vec<Bytes>) -> Chunks {
        let mut out = Vec::new();
        let mut small = bytes::BytesMut::new();
        for piece in std::iter::once(header).chain(pieces) {
            if piece.len() < CHUNK_COPY_BYTES_MAX {
                small.extend_from_slice(&piece);
            } else {
                if !small.is_empty() {
                    out.push(small.split().freeze());
                }
                out.push(piece);
            }
        }
        if !small.is_empty() {
            out.push(small.freeze());
        }
        Chunks(out)
    }
}

/// What the writer task can send: one buffer or a frame in pieces.
pub(crate) trait Frame: 'static {
    fn pieces(&self) -> &[Bytes];
}

impl Frame for Chunks {
    fn pieces(&self) -> &[Bytes] {
        &self.0
    }
}

impl Frame for Bytes {
    fn pieces(&self) -> &[Bytes] {
        std::slice::from_ref(self)
    }
}

/// A task that writes every frame sent to it, in order, until the socket fails.
pub(crate) fn spawn_writer<F: Frame>(
    mut stream: TcpStream,
) -> (LocalSender<F>, glommio::task::JoinHandle<()>) {
    let (frames, queue) = local_channel::new_unbounded::<F>();
    let writer = glommio::spawn_local(async move {
        while let Some(frame) = queue.recv().await {
            for piece in frame.pieces() {
                if stream.write_all(piece).await.is_err() {
                    return;
                }
            }
        }
    })
    .detach();
    (frames, writer)
}

/// Connects with TCP_NODELAY and returns two handles on the socket: one to write, one to read
/// (a reader task and a writer task each own one).
pub(crate) async fn connect_halves(addr: &str) -> anyhow::Result<(TcpStream, TcpStream)> {
    let stream = TcpStream::connect(addr).await.map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| anyhow::anyhow!("set_nodelay: {e}"))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    // SAFETY: dup returns a new descriptor we own, closed when the stream drops.
    let dup = unsafe { libc::dup(fd) };
    anyhow::ensure!(dup >= 0, "dup failed: {}", std::io::Error::last_os_error());
    // SAFETY: `dup` is a fresh, owned, connected TCP socket descriptor.
    let read_half = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(dup) };
    Ok((stream, read_half))
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        for task in self.tasks.borrow_mut().drain(..) {
            task.cancel();
        }
    }
}

async fn read_loop(mut stream: TcpStream, waiters: Waiters) {
    let mut decoder = FrameDecoder::new(256 << 20);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let reply = message::decode_response(&frame.payload).map_err(anyhow::Error::from);
                    if let Some(tx) = waiters.borrow_mut().remove(&frame.request_id) {
                        let _ = tx.try_send(reply);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    waiters.borrow_mut().clear();
                    return;
                }
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => {
                waiters.borrow_mut().clear();
                return;
            }
            Ok(n) => decoder.feed(&buf[..n]),
        }
    }
}

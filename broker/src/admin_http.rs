//! The admin HTTP listener (Redpanda's admin port, default `127.0.0.1:9644`), served by shard 0
//! only, never on the data path: `GET /metrics` (Prometheus text exposition), `GET
//! /v1/status/ready` (200 `{"status":"ready"}` once every shard serves; 503 `booting` before
//! and `stopping` while a graceful stop drains) and `GET /v1/status/live`.
//!
//! Requests are parsed with `httparse`; a request's head is bounded (16 KiB) and must arrive
//! within a few seconds; every answer closes its connection.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::metrics::{NodeFigures, ShardSnapshot, render};
use crate::partition::shard::{Shard, ShardReply, ShardRequest};

/// The largest request head taken.
const HEAD_BYTES_MAX: usize = 16 << 10;
/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// What the listener reads the broker's state from.
#[derive(Clone)]
pub(crate) struct AdminState {
    /// Shards serving (every shard adds one once it listens).
    pub ready: Arc<AtomicUsize>,
    pub shards: usize,
    /// Set when a graceful stop begins.
    pub shutdown: Arc<AtomicBool>,
    pub started: Instant,
    pub per_partition: bool,
}

impl AdminState {
    /// `None` when ready, else why not.
    fn not_ready(&self) -> Option<&'static str> {
        if self.shutdown.load(Ordering::Relaxed) {
            Some("stopping")
        } else if self.ready.load(Ordering::Acquire) < self.shards {
            Some("booting")
        } else {
            None
        }
    }
}

/// Serves the listener until the executor ends.
pub(crate) async fn serve(listener: TcpListener, shard: Rc<Shard>, state: AdminState) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (shard, state) = (shard.clone(), state.clone());
                glommio::spawn_local(async move {
                    if let Err(error) = connection(stream, &shard, &state).await {
                        tracing::debug!(%error, "admin connection");
                    }
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(mut stream: TcpStream, shard: &Rc<Shard>, state: &AdminState) -> std::io::Result<()> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let (method, path) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = futures_lite::future::or(async { Some(stream.read(&mut buf).await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        match n {
            None => return Ok(()),
            Some(Ok(0)) => return Ok(()),
            Some(Ok(n)) => head.extend_from_slice(&buf[..n]),
            Some(Err(e)) => return Err(e),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                break (request.method.unwrap_or("").to_string(), request.path.unwrap_or("").to_string());
            }
            Ok(httparse::Status::Partial) if head.len() < HEAD_BYTES_MAX => continue,
            Ok(httparse::Status::Partial) => {
                return respond(&mut stream, 431, "text/plain", b"request head too large\n").await;
            }
            Err(e) => {
                return respond(&mut stream, 400, "text/plain", format!("bad request: {e}\n").as_bytes())
                    .await;
            }
        }
    };
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", b"only GET is served\n").await;
    }
    let path = path.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            let body = scrape(shard, state).await;
            respond(&mut stream, 200, "text/plain; version=0.0.4; charset=utf-8", body.as_bytes()).await
        }
        "/v1/status/ready" => match state.not_ready() {
            None => respond(&mut stream, 200, "application/json", br#"{"status":"ready"}"#).await,
            Some(why) => {
                respond(&mut stream, 503, "application/json", format!(r#"{{"status":"{why}"}}"#).as_bytes())
                    .await
            }
        },
        "/v1/status/live" => respond(&mut stream, 200, "application/json", br#"{"status":"live"}"#).await,
        _ => respond(&mut stream, 404, "text/plain", b"not found\n").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.close().await
}

/// Every shard's snapshot, rendered with the node's figures.
pub(crate) async fn scrape(shard: &Rc<Shard>, state: &AdminState) -> String {
    let mut snapshots: Vec<ShardSnapshot> = Vec::with_capacity(shard.count);
    for index in 0..shard.count {
        if let ShardReply::Metrics(snapshot) = shard.call(index, ShardRequest::Metrics).await {
            snapshots.push(*snapshot);
        }
    }
    let (free, total) = rill_storage::disk_space(shard.data_dir());
    render(
        &snapshots,
        &NodeFigures {
            uptime: state.started.elapsed(),
            disk_free_bytes: free,
            disk_total_bytes: total,
            per_partition: state.per_partition,
            under_replicated_replicas: under_replicated_replicas(&shard.metadata()),
        },
    )
}

/// Replicas out of sync over the replicated partitions `metadata` says this node leads.
fn under_replicated_replicas(metadata: &crate::cluster::metadata::Metadata) -> u64 {
    let mut out = 0;
    for topic in metadata.topics.values() {
        for (p, replicas) in topic.replicas.iter().enumerate() {
            let p = p as u32;
            if replicas.len() > 1 && metadata.leader(topic, p) == metadata.node {
                out += replicas.len().saturating_sub(metadata.in_sync_replicas(topic, p).len()) as u64;
            }
        }
    }
    out
}

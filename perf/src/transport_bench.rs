//! `rill-perf transport`: node-to-node QUIC (the cluster transport, mutual TLS) against plain
//! TCP between two executors on loopback, in the same run: bulk throughput over one long-lived
//! stream, round-trip latency of small messages, and the process CPU per GB moved.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::LocalExecutorBuilder;
use glommio::net::{TcpListener, TcpStream};
use rill_broker::transport::Transport;
use rill_net::quic::{Event, Node, Tuning};
use rill_net::tls;

/// Arguments of `rill-perf transport`.
#[derive(clap::Args, Clone, Debug)]
pub struct TransportBenchArgs {
    /// Bytes sent in the bulk test, in MiB.
    #[arg(long, default_value_t = 256)]
    pub total_mib: u64,
    /// Round trips of the latency test.
    #[arg(long, default_value_t = 2000)]
    pub round_trips: usize,
    /// Bytes of each latency message.
    #[arg(long, default_value_t = 64)]
    pub message_bytes: usize,
    /// QUIC's first UDP payload size.
    #[arg(long, default_value_t = 1452)]
    pub initial_mtu: u16,
    /// The largest UDP payload MTU discovery tries (1452 holds QUIC to a 1,500-byte network's
    /// datagrams).
    #[arg(long, default_value_t = 8952)]
    pub mtu_max: u16,
    /// SO_SNDBUF and SO_RCVBUF of the QUIC sockets (capped by net.core.wmem_max/rmem_max).
    #[arg(long, default_value_t = 4 << 20)]
    pub socket_buffer_bytes: usize,
    /// Packets QUIC's receiver may take before it must acknowledge (1: QUIC's default).
    #[arg(long, default_value_t = 1)]
    pub ack_eliciting_threshold: u32,
}

/// One transport's figures.
#[derive(Clone, Debug)]
pub struct TransportFigures {
    /// Bulk throughput, MB/s.
    pub mb_per_s: f64,
    /// Process CPU seconds per GB moved in the bulk test.
    pub cpu_s_per_gb: f64,
    /// Round-trip latency p50 and p99, µs.
    pub rtt_p50_us: f64,
    /// Round-trip p99, µs.
    pub rtt_p99_us: f64,
}

const CHUNK: usize = 64 << 10;

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e6
}

/// Runs `server` and `client` on two executors; `server` gets a channel to publish its address.
fn pair<S, C, SF, CF>(server: S, client: C) -> anyhow::Result<(Duration, Vec<Duration>)>
where
    S: FnOnce(mpsc::Sender<SocketAddr>) -> SF + Send + 'static,
    SF: std::future::Future<Output = anyhow::Result<()>> + 'static,
    C: FnOnce(SocketAddr) -> CF + Send + 'static,
    CF: std::future::Future<Output = anyhow::Result<(Duration, Vec<Duration>)>> + 'static,
{
    let (tx, rx) = mpsc::channel();
    let server = LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || server(tx))
        .map_err(std::io::Error::from)?;
    let addr = rx.recv_timeout(Duration::from_secs(10)).context("the server did not start")?;
    let client = LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || client(addr))
        .map_err(std::io::Error::from)?;
    let out = client.join().map_err(|e| anyhow::anyhow!("client executor: {e:?}"))??;
    server.join().map_err(|e| anyhow::anyhow!("server executor: {e:?}"))??;
    Ok(out)
}

async fn tcp_server(
    tx: mpsc::Sender<SocketAddr>,
    total: u64,
    message: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(std::io::Error::from)?;
    tx.send(listener.local_addr().map_err(std::io::Error::from)?)?;
    let mut stream = listener.accept().await.map_err(std::io::Error::from)?;
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < total {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("tcp client went away");
        }
        got += n as u64;
    }
    stream.write_all(b"done").await?;
    let mut msg = vec![0u8; message];
    for _ in 0..rounds {
        stream.read_exact(&mut msg).await?;
        stream.write_all(&msg).await?;
    }
    Ok(())
}

async fn tcp_client(
    addr: SocketAddr,
    total: u64,
    message: usize,
    rounds: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let mut stream = TcpStream::connect(addr).await.map_err(std::io::Error::from)?;
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    let chunk = vec![7u8; CHUNK];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(CHUNK as u64) as usize;
        stream.write_all(&chunk[..n]).await?;
        sent += n as u64;
    }
    let mut done = [0u8; 4];
    stream.read_exact(&mut done).await?;
    let bulk = start.elapsed();
    let msg = vec![1u8; message];
    let mut back = vec![0u8; message];
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        stream.write_all(&msg).await?;
        stream.read_exact(&mut back).await?;
        rtts.push(t.elapsed());
    }
    Ok((bulk, rtts))
}

/// Waits for the next event of `transport`, or fails after 10 s.
async fn event(transport: &Transport) -> anyhow::Result<Event> {
    let next = async { transport.next_event().await.context("transport stopped") };
    let timeout = async {
        glommio::timer::sleep(Duration::from_secs(10)).await;
        bail!("no transport event for 10 s")
    };
    futures_lite::future::or(next, timeout).await
}

/// A QUIC endpoint's settings: the state machine's and its socket's buffers.
#[derive(Clone, Copy)]
struct Quic {
    tuning: Tuning,
    buffer_bytes: usize,
}

/// A transport on a loopback port, its socket loop running on this executor.
fn start(ca: &tls::Pem, cert: &tls::Pem, quic: Quic) -> anyhow::Result<std::rc::Rc<Transport>> {
    let node = Node::with_tuning(&ca.cert, cert, quic.tuning)?;
    let transport = Transport::bind("127.0.0.1:0".parse()?, node, quic.buffer_bytes)?;
    glommio::spawn_local(transport.clone().run()).detach();
    Ok(transport)
}

async fn quic_server(
    tx: mpsc::Sender<SocketAddr>,
    ca: tls::Pem,
    cert: tls::Pem,
    total: u64,
    message: usize,
    rounds: usize,
    quic: Quic,
) -> anyhow::Result<()> {
    let transport = start(&ca, &cert, quic)?;
    tx.send(transport.local_addr()?)?;
    let mut got = 0u64;
    let mut reply_to = None;
    while got < total {
        if let Event::Received { connection, stream, bytes } = event(&transport).await? {
            got += bytes.len() as u64;
            reply_to = Some((connection, stream));
        }
    }
    let (connection, stream) = reply_to.expect("bytes arrived");
    transport.send_all(connection, stream, b"done").await;
    for _ in 0..rounds {
        let mut have = 0;
        while have < message {
            if let Event::Received { bytes, .. } = event(&transport).await? {
                have += bytes.len();
            }
        }
        transport.send_all(connection, stream, &vec![2u8; message]).await;
    }
    // Let the last datagrams leave before the loop stops.
    glommio::timer::sleep(Duration::from_millis(50)).await;
    transport.stop();
    Ok(())
}

async fn quic_client(
    addr: SocketAddr,
    ca: tls::Pem,
    cert: tls::Pem,
    total: u64,
    message: usize,
    rounds: usize,
    quic: Quic,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let transport = start(&ca, &cert, quic)?;
    let connection = transport.dial(addr, 1).await?;
    loop {
        match event(&transport).await? {
            Event::Connected { node: 1, .. } => break,
            Event::Lost { reason, .. } => bail!("connection refused: {reason}"),
            _ => {}
        }
    }
    let stream = transport.open_stream(connection).context("no stream")?;
    let chunk = vec![7u8; CHUNK];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(CHUNK as u64) as usize;
        if !transport.send_all(connection, stream, &chunk[..n]).await {
            bail!("transport stopped");
        }
        sent += n as u64;
    }
    let mut have = 0;
    while have < 4 {
        if let Event::Received { bytes, .. } = event(&transport).await? {
            have += bytes.len();
        }
    }
    let bulk = start.elapsed();
    let msg = vec![1u8; message];
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        transport.send_all(connection, stream, &msg).await;
        let mut have = 0;
        while have < message {
            if let Event::Received { bytes, .. } = event(&transport).await? {
                have += bytes.len();
            }
        }
        rtts.push(t.elapsed());
    }
    transport.stop();
    Ok((bulk, rtts))
}

fn figures(total: u64, cpu: f64, bulk: Duration, mut rtts: Vec<Duration>) -> TransportFigures {
    rtts.sort();
    TransportFigures {
        mb_per_s: total as f64 / 1e6 / bulk.as_secs_f64(),
        cpu_s_per_gb: cpu / (total as f64 / 1e9),
        rtt_p50_us: percentile(&rtts, 0.50),
        rtt_p99_us: percentile(&rtts, 0.99),
    }
}

/// Measures TCP, then QUIC without and with segmentation offload (GSO/GRO); returns the three
/// in that order.
pub fn measure_transports(args: &TransportBenchArgs) -> anyhow::Result<[TransportFigures; 3]> {
    let total = args.total_mib << 20;
    let (message, rounds) = (args.message_bytes.max(1), args.round_trips.max(1));
    let cpu = cpu_seconds();
    let (bulk, rtts) = pair(
        move |tx| tcp_server(tx, total, message, rounds),
        move |addr| tcp_client(addr, total, message, rounds),
    )?;
    let tcp = figures(total, cpu_seconds() - cpu, bulk, rtts);
    let ca = tls::generate_ca("bench")?;
    let (server_cert, client_cert) =
        (tls::issue_node_certificate(&ca, 1)?, tls::issue_node_certificate(&ca, 0)?);
    let mut quic = Vec::new();
    for offload in [false, true] {
        let (ca, ca2, server_cert, client_cert) =
            (ca.clone(), ca.clone(), server_cert.clone(), client_cert.clone());
        let tuning = Tuning {
            initial_mtu: args.initial_mtu,
            mtu_max: args.mtu_max.max(args.initial_mtu),
            segmentation_offload: offload,
            ack_eliciting_threshold: args.ack_eliciting_threshold,
            ..Tuning::default()
        };
        let tuning = Quic { tuning, buffer_bytes: args.socket_buffer_bytes };
        let cpu = cpu_seconds();
        let (bulk, rtts) = pair(
            move |tx| quic_server(tx, ca, server_cert, total, message, rounds, tuning),
            move |addr| quic_client(addr, ca2, client_cert, total, message, rounds, tuning),
        )?;
        quic.push(figures(total, cpu_seconds() - cpu, bulk, rtts));
    }
    let [plain, offload] = <[TransportFigures; 2]>::try_from(quic).expect("two runs");
    Ok([tcp, plain, offload])
}

/// `rill-perf transport`: prints both transports and their ratio.
pub fn run_transport_bench(args: TransportBenchArgs) -> anyhow::Result<()> {
    let [tcp, plain, offload] = measure_transports(&args)?;
    println!(
        "bulk {} MiB over one stream, {} round trips of {} B, loopback, two executors, QUIC MTU {}-{}",
        args.total_mib, args.round_trips, args.message_bytes, args.initial_mtu, args.mtu_max
    );
    println!("| transport | MB/s | CPU s per GB | RTT p50 µs | RTT p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    for (name, f) in [("TCP", &tcp), ("QUIC (mTLS), no offload", &plain), ("QUIC (mTLS), GSO/GRO", &offload)]
    {
        println!(
            "| {name} | {:.0} | {:.2} | {:.0} | {:.0} |",
            f.mb_per_s, f.cpu_s_per_gb, f.rtt_p50_us, f.rtt_p99_us
        );
    }
    for (name, quic) in [("no offload", &plain), ("GSO/GRO", &offload)] {
        println!(
            "QUIC {name}/TCP: throughput {:.2}x, CPU per GB {:.2}x, RTT p50 {:.2}x",
            quic.mb_per_s / tcp.mb_per_s,
            quic.cpu_s_per_gb / tcp.cpu_s_per_gb,
            quic.rtt_p50_us / tcp.rtt_p50_us
        );
    }
    Ok(())
}

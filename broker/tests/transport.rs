//! The cluster transport's socket loop on real UDP sockets (loopback), each node on its own
//! glommio executor: nodes of one CA connect and carry a stream's bytes in order, with flow
//! control holding the writer back, with and without UDP segmentation offload (GSO/GRO); a
//! node with a foreign CA's certificate is never admitted.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use glommio::LocalExecutorBuilder;
use rill_broker::transport::Transport;
use rill_net::quic::{Event, Node, Tuning};
use rill_net::tls::{self, Pem};

/// The next event, or `None` after `timeout`.
async fn event(t: &Transport, timeout: Duration) -> Option<Event> {
    let next = t.next_event();
    let timer = async {
        glommio::timer::sleep(timeout).await;
        None
    };
    futures_lite::future::or(next, timer).await
}

/// A transport on a loopback port, its socket loop running on this executor.
fn start(ca: &Pem, cert: &Pem, offload: bool) -> std::rc::Rc<Transport> {
    let tuning = Tuning { segmentation_offload: offload, ..Tuning::default() };
    let node = Node::with_tuning(&ca.cert, cert, tuning).unwrap();
    let t = Transport::bind("127.0.0.1:0".parse().unwrap(), node, 4 << 20).unwrap();
    glommio::spawn_local(t.clone().run()).detach();
    t
}

/// Runs node 1 as the acceptor; returns the bytes it received and the peer ids it admitted.
fn acceptor(
    ca: Pem,
    cert: Pem,
    expect_bytes: usize,
    tx: mpsc::Sender<SocketAddr>,
    offload: bool,
) -> (Vec<u8>, Vec<u32>) {
    LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let t = start(&ca, &cert, offload);
            tx.send(t.local_addr().unwrap()).unwrap();
            let (mut got, mut admitted) = (Vec::new(), Vec::new());
            while got.len() < expect_bytes {
                match event(&t, Duration::from_secs(3)).await {
                    Some(Event::Received { bytes, .. }) => got.extend_from_slice(&bytes),
                    Some(Event::Connected { node, .. }) => admitted.push(node),
                    Some(_) => {}
                    None => break,
                }
            }
            t.stop();
            (got, admitted)
        })
        .unwrap()
        .join()
        .unwrap()
}

/// A node dials node 1 at `addr` and writes `bytes` on one stream; returns whether its side of
/// the handshake completed and whether the connection was then lost. (In TLS 1.3 the client's
/// handshake ends before the server has checked the client's certificate: a refused client
/// sees its connection end right after.)
fn dialler(ca: Pem, cert: Pem, addr: SocketAddr, bytes: Vec<u8>, offload: bool) -> (bool, bool) {
    LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let t = start(&ca, &cert, offload);
            let conn = t.dial(addr, 1).await.unwrap();
            let connected = loop {
                match event(&t, Duration::from_secs(3)).await {
                    Some(Event::Connected { node: 1, .. }) => break true,
                    Some(Event::Lost { .. }) | None => break false,
                    Some(_) => {}
                }
            };
            let mut lost = !connected;
            // A refused dialler's connection may already be gone by now: no stream to open.
            let stream = if connected { t.open_stream(conn) } else { None };
            lost |= connected && stream.is_none();
            if let Some(stream) = stream {
                t.send_all(conn, stream, &bytes).await;
                // Stay up until the acceptor has read everything (it stops on its own), or
                // until the connection ends.
                while let Some(e) = event(&t, Duration::from_millis(500)).await {
                    if let Event::Lost { .. } = e {
                        lost = true;
                        break;
                    }
                }
            }
            t.stop();
            (connected, lost)
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Node 0 (segmentation offload `dialler_offload`) writes 20 MiB to node 1 (offload
/// `acceptor_offload`).
fn carry_a_stream(dialler_offload: bool, acceptor_offload: bool) {
    let ca = tls::generate_ca("t").unwrap();
    let (c0, c1) =
        (tls::issue_node_certificate(&ca, 0).unwrap(), tls::issue_node_certificate(&ca, 1).unwrap());
    // Larger than the stream window (16 MiB): the writer must wait for the reader.
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let (tx, rx) = mpsc::channel();
    let ca2 = ca.clone();
    let expect = data.len();
    let server = std::thread::spawn(move || acceptor(ca2, c1, expect, tx, acceptor_offload));
    let addr = rx.recv().unwrap();
    let (connected, lost) = dialler(ca, c0, addr, data.clone(), dialler_offload);
    assert!(connected && !lost, "node 0 connects to node 1 and stays connected");
    let (got, admitted) = server.join().unwrap();
    assert_eq!(admitted, vec![0], "node 1 admitted node 0, by its certificate");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the stream's bytes arrive whole and in order");
}

#[test]
fn two_nodes_carry_a_stream_in_order_over_udp() {
    carry_a_stream(false, false);
}

/// With UDP GSO, one send carries many datagrams and GRO hands runs of them back; a node with
/// offload talks to one without in both directions.
#[test]
fn segmentation_offload_carries_a_stream_in_order_and_mixes_with_plain_sockets() {
    carry_a_stream(true, true);
    carry_a_stream(true, false);
    carry_a_stream(false, true);
}

#[test]
fn a_node_with_a_foreign_certificate_is_not_admitted() {
    let ca = tls::generate_ca("t").unwrap();
    let foreign = tls::generate_ca("elsewhere").unwrap();
    let c1 = tls::issue_node_certificate(&ca, 1).unwrap();
    let stranger = tls::issue_node_certificate(&foreign, 0).unwrap();
    let (tx, rx) = mpsc::channel();
    let ca2 = ca.clone();
    let server = std::thread::spawn(move || acceptor(ca2, c1, 1, tx, true));
    let addr = rx.recv().unwrap();
    let (_, lost) = dialler(ca, stranger, addr, vec![1], true);
    assert!(lost, "the stranger's connection ends");
    let (got, admitted) = server.join().unwrap();
    assert!(admitted.is_empty() && got.is_empty(), "nothing from the stranger got through");
}

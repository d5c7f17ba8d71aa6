//! The QUIC transport's state machine with the cluster's mutual TLS, two or three nodes moving
//! datagrams in memory: nodes of one CA connect and learn each other's ids and exchange stream
//! bytes; a node with a certificate from another CA never connects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rill_net::quic::{Event, Node};
use rill_net::tls::{self, Pem};

struct Net {
    nodes: HashMap<SocketAddr, Node>,
    events: Vec<(SocketAddr, Event)>,
}

fn addr(i: u32) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

impl Net {
    /// Delivers datagrams until nothing moves (or `rounds` pass), collecting events.
    fn run(&mut self, rounds: usize) {
        let mut now = Instant::now();
        for _ in 0..rounds {
            let mut moved = false;
            let addrs: Vec<SocketAddr> = self.nodes.keys().copied().collect();
            let mut outgoing = Vec::new();
            for a in &addrs {
                let node = self.nodes.get_mut(a).unwrap();
                node.handle_timeout(now);
                for t in node.poll(now) {
                    assert!(t.segment_size.is_none(), "one datagram per transmit without offload");
                    outgoing.push((*a, t.to, t.bytes));
                }
                while let Some(e) = node.next_event() {
                    self.events.push((*a, e));
                }
            }
            for (from, to, datagram) in outgoing {
                moved = true;
                if let Some(node) = self.nodes.get_mut(&to) {
                    for t in node.receive(now, from, None, &datagram) {
                        assert_eq!(t.to, from);
                        if let Some(n) = self.nodes.get_mut(&from) {
                            n.receive(now, to, None, &t.bytes);
                        }
                    }
                }
            }
            if !moved {
                now += Duration::from_millis(50);
            }
        }
    }

    fn connected(&self, at: SocketAddr) -> Vec<u32> {
        self.events
            .iter()
            .filter(|(a, _)| *a == at)
            .filter_map(|(_, e)| match e {
                Event::Connected { node, .. } => Some(*node),
                _ => None,
            })
            .collect()
    }
}

fn node(ca: &Pem, cert: &Pem) -> Node {
    Node::new(&ca.cert, cert).unwrap()
}

#[test]
fn nodes_connect_learn_each_others_ids_and_exchange_stream_bytes() {
    let ca = tls::generate_ca("q").unwrap();
    let certs: Vec<Pem> = (0..2).map(|i| tls::issue_node_certificate(&ca, i).unwrap()).collect();
    let mut net = Net { nodes: HashMap::new(), events: Vec::new() };
    net.nodes.insert(addr(0), node(&ca, &certs[0]));
    net.nodes.insert(addr(1), node(&ca, &certs[1]));
    let now = Instant::now();
    let conn = net.nodes.get_mut(&addr(0)).unwrap().dial(now, addr(1), 1).unwrap();
    net.run(50);
    assert_eq!(net.connected(addr(0)), vec![1], "the dialler reached node 1");
    assert_eq!(net.connected(addr(1)), vec![0], "the acceptor knows the dialler is node 0");
    let dialler = net.nodes.get_mut(&addr(0)).unwrap();
    let stream = dialler.open_stream(conn).expect("a stream");
    let message = vec![7u8; 100_000];
    let mut sent = 0;
    for _ in 0..100 {
        sent += net
            .nodes
            .get_mut(&addr(0))
            .unwrap()
            .send(conn, stream, &message[sent..])
            .expect("the stream is open");
        net.run(5);
        if sent == message.len() {
            break;
        }
    }
    net.run(50);
    assert_eq!(sent, message.len(), "flow control let the whole message through");
    let received: usize = net
        .events
        .iter()
        .filter(|(a, _)| *a == addr(1))
        .map(|(_, e)| match e {
            Event::Received { bytes, .. } => bytes.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(received, message.len(), "every byte arrived");

    // The acceptor vanishes (a crashed node sends no close): the dialler's connection ends at its
    // idle timeout, and a write then says the stream is gone instead of "window full" forever.
    net.nodes.remove(&addr(1));
    net.run(1_000);
    assert!(
        net.events.iter().any(|(a, e)| *a == addr(0) && matches!(e, Event::Lost { .. })),
        "the dialler notices the silent peer"
    );
    assert_eq!(net.nodes.get_mut(&addr(0)).unwrap().send(conn, stream, b"late"), None);
}

#[test]
fn a_node_from_another_ca_never_connects() {
    let ca = tls::generate_ca("q").unwrap();
    let other = tls::generate_ca("other").unwrap();
    let good = tls::issue_node_certificate(&ca, 1).unwrap();
    let stranger = tls::issue_node_certificate(&other, 0).unwrap();
    let mut net = Net { nodes: HashMap::new(), events: Vec::new() };
    // The stranger trusts our CA (it knows our public certificate) but holds a foreign key pair.
    net.nodes.insert(addr(0), node(&ca, &stranger));
    net.nodes.insert(addr(1), node(&ca, &good));
    net.nodes.get_mut(&addr(0)).unwrap().dial(Instant::now(), addr(1), 1).unwrap();
    net.run(200);
    assert!(net.connected(addr(1)).is_empty(), "node 1 admitted a stranger: {:?}", net.events);
    assert!(
        net.events.iter().any(|(a, e)| *a == addr(0) && matches!(e, Event::Lost { .. })),
        "the stranger's connection ends: {:?}",
        net.events
    );
}

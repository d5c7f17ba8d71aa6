//! Cluster mutual TLS, handshakes run in memory between rustls client and server connections:
//! nodes with certificates from the cluster CA connect; a certificate from another CA, or one
//! naming another node than the one dialled or claimed, is refused.

use rill_net::tls::{self, Pem};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConnection, ServerConnection};

/// Runs a handshake of `dialler` (dialling node `dialled`) against `acceptor`; returns the
/// client certificate the acceptor saw, or the first side's error.
fn handshake(
    ca_for_client: &Pem,
    dialler: &Pem,
    dialled: u32,
    ca_for_server: &Pem,
    acceptor: &Pem,
) -> Result<CertificateDer<'static>, String> {
    let client_config = tls::client_config(&ca_for_client.cert, dialler).map_err(|e| e.to_string())?;
    let server_config = tls::server_config(&ca_for_server.cert, acceptor).map_err(|e| e.to_string())?;
    let mut client = ClientConnection::new(client_config, tls::server_name(dialled)).unwrap();
    let mut server = ServerConnection::new(server_config).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
        }
        server.process_new_packets().map_err(|e| format!("acceptor: {e}"))?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).unwrap();
        }
        client.process_new_packets().map_err(|e| format!("dialler: {e}"))?;
        if !client.is_handshaking() && !server.is_handshaking() {
            assert_eq!(client.alpn_protocol(), Some(tls::ALPN));
            let certs = server.peer_certificates().expect("a client certificate");
            return Ok(certs[0].clone().into_owned());
        }
    }
    Err("handshake did not finish".into())
}

struct Cluster {
    ca: Pem,
    nodes: Vec<Pem>,
}

fn cluster(name: &str, nodes: u32) -> Cluster {
    let ca = tls::generate_ca(name).unwrap();
    let nodes = (0..nodes).map(|id| tls::issue_node_certificate(&ca, id).unwrap()).collect();
    Cluster { ca, nodes }
}

#[test]
fn nodes_of_one_cluster_connect_and_the_acceptor_learns_the_peer_id() {
    let c = cluster("a", 3);
    let seen = handshake(&c.ca, &c.nodes[1], 2, &c.ca, &c.nodes[2]).expect("node 1 dials node 2");
    assert!(tls::certificate_names_node(&seen, 1), "the acceptor sees node 1's certificate");
    assert_eq!(tls::certificate_node_id(&seen), Some(1), "and reads node 1 from it");
    assert!(!tls::certificate_names_node(&seen, 0), "a claim to be node 0 is refused");
    assert!(!tls::certificate_names_node(&seen, 2));
    // Dialling works both ways and between any pair.
    handshake(&c.ca, &c.nodes[2], 0, &c.ca, &c.nodes[0]).expect("node 2 dials node 0");
}

#[test]
fn a_dialler_with_a_certificate_from_another_ca_is_refused() {
    let c = cluster("a", 2);
    let other = cluster("b", 2);
    // The dialler trusts the right CA but presents a certificate signed by another.
    let err = handshake(&c.ca, &other.nodes[0], 1, &c.ca, &c.nodes[1]).unwrap_err();
    assert!(err.starts_with("acceptor:"), "{err}");
}

#[test]
fn an_acceptor_with_a_certificate_from_another_ca_is_refused() {
    let c = cluster("a", 2);
    let other = cluster("b", 2);
    let err = handshake(&c.ca, &c.nodes[0], 1, &other.ca, &other.nodes[1]).unwrap_err();
    assert!(err.starts_with("dialler:"), "{err}");
}

#[test]
fn an_acceptor_that_is_not_the_node_dialled_is_refused() {
    let c = cluster("a", 3);
    // Dialling node 1, but node 2 answers (a wrong address, or a node claiming another's id).
    let err = handshake(&c.ca, &c.nodes[0], 1, &c.ca, &c.nodes[2]).unwrap_err();
    assert!(err.starts_with("dialler:") && err.contains("not valid for"), "{err}");
}

#[test]
fn a_ca_reloaded_from_its_pem_files_issues_certificates_that_chain() {
    let c = cluster("a", 1);
    let reloaded = Pem { cert: c.ca.cert.clone(), key: c.ca.key.clone() };
    let late = tls::issue_node_certificate(&reloaded, 7).unwrap();
    let seen = handshake(&c.ca, &late, 0, &c.ca, &c.nodes[0]).expect("a node added later connects");
    assert!(tls::certificate_names_node(&seen, 7));
    assert_eq!(tls::certificate_node_id(&seen), Some(7));
    let ca_cert = CertificateDer::from_pem_slice(c.ca.cert.as_bytes()).unwrap();
    assert_eq!(tls::certificate_node_id(&ca_cert), None, "the CA names no node");
}

#[test]
fn damaged_pem_is_a_clear_error() {
    let c = cluster("a", 1);
    let broken = Pem {
        cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        key: c.nodes[0].key.clone(),
    };
    let err = tls::server_config(&c.ca.cert, &broken).unwrap_err().to_string();
    assert!(!err.is_empty());
    let err = tls::client_config("not a pem", &c.nodes[0]).unwrap_err().to_string();
    assert!(err.contains("cluster CA certificate"), "{err}");
}

#[test]
fn a_cluster_id_is_the_same_for_every_holder_of_one_ca_and_differs_between_cas() {
    let a = cluster("a", 1);
    let b = cluster("a", 1);
    let id = tls::cluster_id(&a.ca.cert).unwrap();
    // Kafka's form: 16 bytes as URL-safe base64 without padding.
    assert_eq!(id.len(), 22, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{id}");
    assert_eq!(tls::cluster_id(&a.ca.cert.clone()).unwrap(), id);
    assert_ne!(tls::cluster_id(&b.ca.cert).unwrap(), id, "two CAs of the same name");
    assert!(tls::cluster_id("not a certificate").is_err());
    let random = tls::random_cluster_id();
    assert_eq!(random.len(), 22);
    assert_ne!(random, tls::random_cluster_id());
}

//! `rill cluster ca init` and `rill cluster cert issue` make files that the nodes' mutual TLS
//! accepts: certificates of one CA connect, each naming its node; nothing is overwritten; keys
//! are private to their owner.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rill_net::tls::{self, Pem};
use rustls::{ClientConnection, ServerConnection};

const RILL: &str = env!("CARGO_BIN_EXE_rill");

fn rill(args: &[&str]) -> std::process::Output {
    Command::new(RILL).args(args).output().expect("rill runs")
}

fn load(dir: &Path, stem: &str) -> Pem {
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{stem}.{ext}"))).unwrap();
    Pem { cert: read("pem"), key: read("key") }
}

/// Node `from` dials node `to` with the files on disk; returns the acceptor's verdict on the
/// peer's claimed id.
fn connect(ca: &Pem, from: (u32, &Pem), to: (u32, &Pem)) -> bool {
    let mut client =
        ClientConnection::new(tls::client_config(&ca.cert, from.1).unwrap(), tls::server_name(to.0)).unwrap();
    let mut server = ServerConnection::new(tls::server_config(&ca.cert, to.1).unwrap()).unwrap();
    while client.is_handshaking() || server.is_handshaking() {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut &buf[..]).unwrap();
        server.process_new_packets().expect("the acceptor admits the dialler");
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut &buf[..]).unwrap();
        client.process_new_packets().expect("the dialler admits the acceptor");
    }
    let peer = &server.peer_certificates().unwrap()[0];
    tls::certificate_names_node(peer, from.0)
}

#[test]
fn a_ca_and_node_certificates_from_the_command_line_connect_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let d = dir.to_str().unwrap();
    assert!(rill(&["cluster", "ca", "init", "--dir", d, "--name", "test"]).status.success());
    for id in ["1", "2"] {
        let out = rill(&["cluster", "cert", "issue", "--node-id", id, "--dir", d]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for key in ["ca.key", "node-1.key", "node-2.key"] {
        let mode = std::fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key} is readable by its owner only");
    }
    let ca = load(&dir, "ca");
    let (n1, n2) = (load(&dir, "node-1"), load(&dir, "node-2"));
    assert!(connect(&ca, (1, &n1), (2, &n2)), "node 2 sees node 1's certificate");
    assert!(connect(&ca, (2, &n2), (1, &n1)));

    // Nothing is replaced: a second CA would split the cluster, a second certificate for a
    // node would leave two valid keys.
    let again = rill(&["cluster", "ca", "init", "--dir", d]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a cluster CA"));
    assert_eq!(load(&dir, "ca").cert, ca.cert, "the CA is unchanged");
    assert!(!rill(&["cluster", "cert", "issue", "--node-id", "1", "--dir", d]).status.success());
    // Without a CA there is nothing to sign with.
    let empty = tmp.path().join("empty");
    let out = rill(&["cluster", "cert", "issue", "--node-id", "3", "--dir", empty.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rill cluster ca init"));
}

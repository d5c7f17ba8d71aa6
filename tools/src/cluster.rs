//! `rill cluster ca init|cert issue`: the cluster CA and node certificates for mutual TLS
//! between nodes (`rill_net::tls`); `rill cluster status`: nodes, liveness, the controller,
//! partitions and leaders per node, and what is under-replicated.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use rill_net::tls::{self, Pem};

/// The `rill cluster` subcommands.
#[derive(Subcommand)]
pub enum ClusterCommand {
    /// The cluster certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Node certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Nodes, their liveness as the asked node sees it, the controller, replicas and leaders
    /// per node, and the under-replicated partitions.
    Status,
    /// Add node N to the cluster as a voter of its metadata group; then start it with `rill
    /// serve --join` (its id above the seeds'), and it catches up from the controller.
    AddNode {
        /// The new node's id.
        #[arg(long)]
        node_id: u32,
    },
    /// Remove node N from the cluster (refused while it still holds replicas).
    RemoveNode {
        /// The node's id.
        #[arg(long)]
        node_id: u32,
    },
}

/// `rill cluster ca ...`
#[derive(Subcommand)]
pub enum CaCommand {
    /// Make a new cluster CA: DIR/ca.pem (give it to every node) and DIR/ca.key (keep it off
    /// the nodes; it signs node certificates). Refuses to replace an existing CA.
    Init {
        /// Directory for the CA files (created if needed).
        #[arg(long, default_value = "cluster-ca")]
        dir: PathBuf,
        /// A name for the cluster, written into the CA certificate.
        #[arg(long, default_value = "rill")]
        name: String,
    },
}

/// `rill cluster cert ...`
#[derive(Subcommand)]
pub enum CertCommand {
    /// Sign a certificate for node N with the CA in DIR: DIR/node-N.pem and DIR/node-N.key
    /// (the node presents them to its peers, which accept it as node N only).
    Issue {
        /// The node id the certificate names.
        #[arg(long)]
        node_id: u32,
        /// Directory holding ca.pem and ca.key; the node's files are written there too.
        #[arg(long, default_value = "cluster-ca")]
        dir: PathBuf,
    },
}

pub fn run(broker: &str, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Ca(CaCommand::Init { dir, name }) => ca_init(&dir, &name),
        ClusterCommand::Cert(CertCommand::Issue { node_id, dir }) => cert_issue(&dir, node_id),
        ClusterCommand::Status => status(broker),
        ClusterCommand::AddNode { node_id } => {
            crate::client::Client::connect(broker)?
                .call_status(&rill_net::message::RequestBody::AddNode { id: node_id })?;
            println!("node {node_id} added; start it with `rill serve --join`");
            Ok(())
        }
        ClusterCommand::RemoveNode { node_id } => {
            crate::client::Client::connect(broker)?
                .call_status(&rill_net::message::RequestBody::RemoveNode { id: node_id })?;
            println!("node {node_id} removed");
            Ok(())
        }
    }
}

fn status(broker: &str) -> anyhow::Result<()> {
    use rill_net::message::{RequestBody, ResponseBody};
    let mut client = crate::client::Client::connect(broker)?;
    match client.call(&RequestBody::ClusterStatus, &[])?.0 {
        ResponseBody::ClusterStatus { controller, answered_by, nodes, under_replicated } => {
            let controller = controller.map_or("none".to_string(), |c| format!("node {c}"));
            println!("controller: {controller} (as node {answered_by} sees it)");
            println!(
                "{:>5}  {:<6}  {:<22}  {:<22}  {:>6}  {:>8}  {:>7}",
                "node", "state", "kafka", "cluster", "shards", "replicas", "leaders"
            );
            for n in nodes {
                let state = if n.alive { "alive" } else { "down" };
                let cluster = if n.cluster_address.is_empty() { "-" } else { n.cluster_address.as_str() };
                println!(
                    "{:>5}  {:<6}  {:<22}  {:<22}  {:>6}  {:>8}  {:>7}",
                    n.id, state, n.kafka_address, cluster, n.shards, n.replicas, n.leaders
                );
            }
            println!("under-replicated partitions: {under_replicated}");
            Ok(())
        }
        ResponseBody::Status { error, message } => bail!("{error:?}: {message}"),
        other => bail!("unexpected response {other:?}"),
    }
}

/// Writes `contents` to a new file (never replacing one); `private` files are readable by their
/// owner only.
fn write_new(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(if private { 0o600 } else { 0o644 });
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))
}

fn ca_init(dir: &Path, name: &str) -> anyhow::Result<()> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert_path.exists() || key_path.exists() {
        bail!(
            "{} already holds a cluster CA; it is not replaced (nodes would stop trusting each other)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = tls::generate_ca(name).context("generating the cluster CA")?;
    write_new(&key_path, &ca.key, true)?;
    write_new(&cert_path, &ca.cert, false)?;
    println!(
        "cluster CA written: {} (for every node), {} (keep it private)",
        cert_path.display(),
        key_path.display()
    );
    Ok(())
}

fn cert_issue(dir: &Path, node_id: u32) -> anyhow::Result<()> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `rill cluster ca init` first)", path.display()))
    };
    let ca = Pem { cert: read("ca.pem")?, key: read("ca.key")? };
    let (cert_path, key_path) =
        (dir.join(format!("node-{node_id}.pem")), dir.join(format!("node-{node_id}.key")));
    if cert_path.exists() || key_path.exists() {
        bail!(
            "{} already exists; remove it first to issue a new certificate for node {node_id}",
            cert_path.display()
        );
    }
    let node = tls::issue_node_certificate(&ca, node_id).context("signing the node certificate")?;
    write_new(&key_path, &node.key, true)?;
    write_new(&cert_path, &node.cert, false)?;
    println!("certificate for node {node_id} written: {}, {}", cert_path.display(), key_path.display());
    Ok(())
}

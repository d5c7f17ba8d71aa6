//! `rill serve`: runs the broker until SIGTERM or SIGINT, then stops gracefully.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use rill_broker::ConfigFile;
use rill_tuning::HostFacts;

/// Arguments of `rill serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); flags override it, and it overrides the embedded default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Native-protocol listen address.
    #[arg(long)]
    native_listen: Option<String>,
    /// Kafka-protocol listen address (default 127.0.0.1:9092).
    #[arg(long)]
    kafka_listen: Option<String>,
    /// Kafka address advertised to clients, host:port (default: the Kafka listen address).
    #[arg(long)]
    kafka_advertised: Option<String>,
    /// Admin HTTP listen address: /metrics, /v1/status/ready, /v1/status/live (default
    /// 127.0.0.1:9644).
    #[arg(long)]
    admin_listen: Option<String>,
    /// Tuning profile: a shipped name (small-vm, nvme-server) or a file; default: derived.
    #[arg(long)]
    profile: Option<String>,
    /// CPUs to run shards on, e.g. 0,1 (overrides the profile).
    #[arg(long, value_delimiter = ',')]
    cores: Option<Vec<usize>>,
    /// Create a topic when a Kafka client's metadata request names it and allows creation (a
    /// producer's first send), as Kafka's auto.create.topics.enable; default off.
    #[arg(long)]
    auto_create_topics: bool,
    /// Partitions of an auto-created topic (default 1).
    #[arg(long)]
    default_partitions: Option<u32>,
    /// This node's id in a cluster (with --cluster-listen, --seeds and --cluster-tls-dir).
    #[arg(long)]
    node_id: Option<u32>,
    /// The QUIC address the other nodes reach this one at, e.g. 10.0.0.1:9500.
    #[arg(long)]
    cluster_listen: Option<String>,
    /// The initial members, this node included: id@host:port,...
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<String>>,
    /// Directory of ca.pem, node-<id>.pem and node-<id>.key (`rill cluster ca init`,
    /// `rill cluster cert issue`).
    #[arg(long)]
    cluster_tls_dir: Option<PathBuf>,
    /// Join a running cluster (after `rill cluster add-node --node-id N`) instead of forming one.
    #[arg(long)]
    join: bool,
}

/// Runs the broker in the foreground.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::read(path)?,
        None => ConfigFile::default(),
    };
    let flags = ConfigFile {
        data_dir: args.data_dir,
        native_listen: args.native_listen,
        kafka_listen: args.kafka_listen,
        kafka_advertised: args.kafka_advertised,
        admin_listen: args.admin_listen,
        profile: args.profile,
        cores: args.cores,
        auto_create_topics: args.auto_create_topics.then_some(true),
        default_partitions: args.default_partitions,
        node_id: args.node_id,
        cluster_listen: args.cluster_listen,
        seeds: args.seeds,
        cluster_tls_dir: args.cluster_tls_dir,
        join: args.join.then_some(true),
        ..ConfigFile::default()
    };
    rill_broker::exit_on_panic();
    match rill_broker::raise_open_file_limit() {
        Ok((before, after)) => tracing::info!(before, after, "open-file limit (RLIMIT_NOFILE)"),
        Err(error) => tracing::warn!(%error, "raising the open-file limit failed"),
    }
    let host = HostFacts::read().context("reading host facts")?;
    let config = file.overlay(flags).resolve(&host)?;
    tracing::debug!(profile = %config.profile.to_toml(), "tuning profile");
    let (data_dir, profile, cores) =
        (config.data_dir.clone(), config.profile.name.clone(), config.cores.clone());
    let node = config.cluster.as_ref().map_or("0 (single node)".to_string(), |c| c.node_id.to_string());
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone()).context("installing signal handlers")?;
    }
    let broker = rill_broker::start(config, shutdown)?;
    tracing::info!("rill {} node {node}", env!("CARGO_PKG_VERSION"));
    tracing::info!(
        "listeners: kafka {}, native {}, admin http://{}",
        broker.kafka_addr,
        broker.native_addr,
        broker.admin_addr
    );
    tracing::info!(
        "{} shards on cores {cores:?}, data directory {}, profile {profile}",
        broker.shards,
        data_dir.display()
    );
    println!("rill listening on {} (native protocol), {} shards", broker.native_addr, broker.shards);
    println!("rill listening on {} (kafka protocol)", broker.kafka_addr);
    println!("rill admin listening on http://{}", broker.admin_addr);
    broker.join();
    println!("rill stopped");
    Ok(())
}

//! `rill`: the command-line tool — run the broker, administer topics, produce and consume,
//! and tune the host.

mod client;
mod cluster;
mod consume;
mod consume_group;
mod group;
mod produce;
mod serve;
mod storage;
mod topic;
mod tune;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rill", version, about = "Rill streaming broker")]
struct Cli {
    /// Broker address for client commands (native protocol; default 127.0.0.1:9300; for
    /// `bench --protocol kafka` the default is 127.0.0.1:9092).
    #[arg(long, global = true)]
    broker: Option<String>,
    /// Log format on stderr: text, or json (one object per line, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (embedded single-node default: 127.0.0.1:9300, data under ./data).
    Serve(serve::ServeArgs),
    /// Create, list, describe, delete topics and add partitions.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Write lines from stdin or a file to a topic.
    Produce(produce::ProduceArgs),
    /// Print a topic's records from a start position, optionally following.
    Consume(consume::ConsumeArgs),
    /// List, describe, delete consumer groups and reset their offsets.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Load generator: run a workload against a broker and report throughput and latency.
    Bench(rill_perf::BenchArgs),
    /// Measure this host and manage tuning profiles.
    #[command(subcommand)]
    Tune(tune::TuneCommand),
    /// Verify and repair partition logs offline (the broker stopped).
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// Cluster administration: the cluster CA and node certificates, the cluster's status.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let native = cli.broker.clone().unwrap_or_else(|| "127.0.0.1:9300".to_string());
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Topic(cmd) => topic::run(&native, cmd),
        Command::Produce(args) => produce::run(&native, args),
        Command::Consume(args) => consume::run(&native, args),
        Command::Group(cmd) => group::run(&native, cmd),
        Command::Bench(mut args) => {
            args.broker = args.broker.or(cli.broker);
            rill_perf::run_bench_and_print(args)
        }
        Command::Tune(cmd) => tune::run(cmd),
        Command::Storage(cmd) => storage::run(cmd),
        Command::Cluster(cmd) => cluster::run(&native, cmd),
    };
    if let Err(error) = result {
        eprintln!("rill: {error:#}");
        std::process::exit(1);
    }
}

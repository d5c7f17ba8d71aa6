//! `rill-perf`: storage benchmark and stress tools.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rill-perf", about = "Rill benchmarks and storage stress tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Raw O_DIRECT write bandwidth vs the log's append throughput per durability policy.
    Storage(rill_perf::StorageBenchArgs),
    /// Appends forever and prints one line per acknowledged batch (for crash tests).
    AckWriter(rill_perf::AckWriterArgs),
    /// The load generator (also `rill bench`).
    Bench(Box<rill_perf::BenchArgs>),
    /// Node-to-node QUIC (mutual TLS) against TCP on loopback, in one run.
    Transport(rill_perf::TransportBenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Storage(args) => rill_perf::run_storage_bench(args),
        Command::AckWriter(args) => rill_perf::run_ack_writer(args),
        Command::Bench(args) => rill_perf::run_bench_and_print(*args),
        Command::Transport(args) => rill_perf::run_transport_bench(args),
    }
}

//! `rill`: the command-line tool. `rill tune` measures a host and manages tuning profiles.

mod tune;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rill", version, about = "Rill streaming broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure this host and manage tuning profiles.
    #[command(subcommand)]
    Tune(tune::TuneCommand),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Tune(cmd) => tune::run(cmd),
    };
    if let Err(error) = result {
        eprintln!("rill: {error:#}");
        std::process::exit(1);
    }
}

//! The `tradecast-sim` command line: thin, it parses arguments and calls the library.

use clap::Parser;

/// Tradecast simulated terminal: replays bars and drives a node over the EA link.
#[derive(Debug, Parser)]
#[command(name = "tradecast-sim", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("the simulated terminal arrives with the EA-side issue; nothing runs yet")
}

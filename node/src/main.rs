//! The `tradecast-node` command line: thin, it parses arguments and calls the library.

use clap::Parser;

/// Tradecast node: runs beside MetaTrader 5 and executes signals under the trader's own rules.
#[derive(Debug, Parser)]
#[command(name = "tradecast-node", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!(
        "the node's commands arrive with their issues (strategy, node core); nothing runs yet"
    )
}

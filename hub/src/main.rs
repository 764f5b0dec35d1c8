//! The `tradecast-hub` command line: thin, it parses arguments and calls the library.

use clap::Parser;

/// Tradecast hub: verifies provider-signed signals and fans them out to subscribers.
#[derive(Debug, Parser)]
#[command(name = "tradecast-hub", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("the hub's commands arrive with the hub foundations issue; nothing runs yet")
}

//! `tradecast`: the one-command local demo (hub + provider node + subscriber nodes + simulated
//! terminals on loopback). This is the only crate that may depend on the hub, the node and the
//! sim together.

use clap::{Parser, Subcommand};

/// Tradecast: provider-signed trade signals, verified and executed on the trader's own machine.
#[derive(Debug, Parser)]
#[command(name = "tradecast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system locally: a hub, a provider node and subscriber nodes, each beside a
    /// simulated MT5 terminal replaying the bundled EURUSD H1 bars.
    Demo,
}

/// What the demo will show once the sync issue lands; printed instead of pretending.
const DEMO_PLAN: &str = "\
The Tradecast demo is not available yet.

When it lands (the 'signals flow end to end' issue) it will start, on loopback and in
temporary folders with no database server:
  - a hub on SQLite,
  - a provider node running Fib-RSI v1 on the bundled EURUSD H1 bars,
  - two subscriber nodes with different policies (auto-copy at 1 % risk; manual approvals),
  - a simulated MT5 terminal beside each node, all on one simulated broker,
and print each signal as it is created, received, decided and filled, then a summary table.

Nothing was started.";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            eprintln!("{DEMO_PLAN}");
            std::process::exit(2);
        }
    }
}

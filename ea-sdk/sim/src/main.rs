//! The `tradecast-sim` command line: thin, it parses arguments and calls the library.

use std::path::PathBuf;

use clap::Parser;
use rust_decimal::Decimal;
use tradecast_protocol::ea::MarginMode;
use tradecast_sim::app::{self, SimConfig, Source};
use tradecast_sim::replay::Speed;

/// Tradecast simulated terminal: replays bars through a simulated MT5 broker and drives a node
/// over the EA link exactly as the MQL5 Expert Advisor does.
#[derive(Debug, Parser)]
#[command(name = "tradecast-sim", version, about)]
struct Cli {
    /// The node's EA-link address.
    #[arg(long, default_value = "http://127.0.0.1:7341")]
    node: String,
    /// EA key id (repeat with --secret for several terminals on one broker).
    #[arg(long = "key", required = true)]
    keys: Vec<String>,
    /// EA secret, in the same order as --key.
    #[arg(long = "secret", env = "TRADECAST_SIM_SECRET", required = true, hide_env_values = true)]
    secrets: Vec<String>,
    /// Bar file to replay (MT5 export or CSV).
    #[arg(long, conflicts_with = "generate")]
    csv: Option<PathBuf>,
    /// Replay this many generated H1 bars instead of a file.
    #[arg(long)]
    generate: Option<usize>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The symbol the bars are of.
    #[arg(long, default_value = "EURUSD")]
    symbol: String,
    /// Price digits of the symbol.
    #[arg(long, default_value_t = 5)]
    digits: u32,
    /// Bar-seconds per wall second, or `max` (lockstep with the node).
    #[arg(long, default_value = "max")]
    speed: Speed,
    /// Login of the first account.
    #[arg(long, default_value_t = 5_000_001)]
    login: u64,
    /// Initial balance (USD).
    #[arg(long, default_value = "10000")]
    balance: Decimal,
    /// Leverage (100 = 1:100).
    #[arg(long, default_value_t = 100)]
    leverage: u32,
    /// A netting account instead of hedging.
    #[arg(long)]
    netting: bool,
    /// The EA's magic input (high 32 bits of every Tradecast magic).
    #[arg(long, default_value_t = 20_260_101)]
    magic: u32,
    /// Spread in points.
    #[arg(long, default_value_t = 10)]
    spread: u32,
    /// Adverse slippage in points.
    #[arg(long, default_value_t = 0)]
    slippage: u32,
    /// Instant execution (requotes beyond the deviation).
    #[arg(long)]
    instant: bool,
    /// Broker server time minus UTC, seconds.
    #[arg(long, default_value_t = 7_200)]
    server_offset: i32,
    /// The bar file's times minus UTC, seconds.
    #[arg(long, default_value_t = 0)]
    file_offset: i32,
    /// Wall milliseconds between a send and its fill (the price may move meanwhile).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    anyhow::ensure!(cli.keys.len() == cli.secrets.len(), "give one --secret per --key");
    let source = match (cli.csv, cli.generate) {
        (Some(path), _) => Source::File(path),
        (None, Some(n)) => Source::Generated { seed: cli.seed, n },
        (None, None) => anyhow::bail!("give --csv FILE or --generate N"),
    };
    let cfg = SimConfig {
        node_url: cli.node,
        keys: cli.keys.into_iter().zip(cli.secrets).collect(),
        source,
        symbol: cli.symbol,
        digits: cli.digits,
        speed: cli.speed,
        first_login: cli.login,
        balance: cli.balance,
        leverage: cli.leverage,
        margin_mode: if cli.netting { MarginMode::Netting } else { MarginMode::Hedging },
        input_magic: cli.magic,
        spread_points: cli.spread,
        slippage_points: cli.slippage,
        instant_execution: cli.instant,
        server_utc_offset_s: cli.server_offset,
        file_utc_offset_s: cli.file_offset,
        send_latency_ms: cli.latency_ms,
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    let summary = app::run(cfg, rx).await?;
    let unreached: Vec<u64> =
        summary.terminals.iter().filter(|(_, s)| s.hellos == 0).map(|(login, _)| *login).collect();
    println!("bars replayed: {}, link errors: {}", summary.replay.bars, summary.replay.link_errors);
    for (login, s) in summary.terminals {
        println!(
            "account {login}: hellos {}, polls {}, sends {}, acks {}, found by look-up {}, ignored answers {}",
            s.hellos,
            s.polls,
            s.sends,
            s.acks.len(),
            s.found_by_lookup,
            s.ignored_answers
        );
    }
    anyhow::ensure!(unreached.is_empty(), "never reached the node for account(s) {unreached:?}");
    Ok(())
}

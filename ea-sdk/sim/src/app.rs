//! The command line's library half: builds one broker, one price stream and one terminal per EA
//! key from a typed [`SimConfig`], and runs the replay. `main.rs` only parses arguments into it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use tokio::sync::watch;
use tradecast_protocol::bars::ParseOptions;
use tradecast_protocol::ea::MarginMode;

use crate::broker::{AccountConfig, Broker, BrokerConfig, BrokerError, Execution, SymbolConfig};
use crate::feed::{Feed, FeedError, SpreadModel};
use crate::link::LinkError;
use crate::replay::{Replay, ReplayError, ReplaySummary, Speed};
use crate::terminal::{Faults, Terminal, TerminalConfig, TerminalStats};

/// Where the bars come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A bar file (MT5 export or CSV), read by the protocol's bar reader.
    File(PathBuf),
    /// A seeded random walk of this many H1 bars from 2017-04-24 00:00 UTC.
    Generated {
        /// The seed.
        seed: u64,
        /// How many bars.
        n: usize,
    },
}

/// Everything the simulator needs to run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The node's EA-link URL.
    pub node_url: String,
    /// One (key id, secret) per terminal; terminal `i` trades account `first_login + i`.
    pub keys: Vec<(String, String)>,
    /// The bars.
    pub source: Source,
    /// The symbol the bars are of.
    pub symbol: String,
    /// Price digits of the symbol.
    pub digits: u32,
    /// Replay speed.
    pub speed: Speed,
    /// The first account's login.
    pub first_login: u64,
    /// Initial balance of each account.
    pub balance: Decimal,
    /// Leverage.
    pub leverage: u32,
    /// Netting or hedging.
    pub margin_mode: MarginMode,
    /// The EA's magic input.
    pub input_magic: u32,
    /// Spread, points.
    pub spread_points: u32,
    /// Adverse slippage, points.
    pub slippage_points: u32,
    /// Instant execution (requotes) instead of market execution.
    pub instant_execution: bool,
    /// Broker server time minus UTC, seconds.
    pub server_utc_offset_s: i32,
    /// Offset of the bar file's times from UTC, seconds (MT5 exports are in server time).
    pub file_utc_offset_s: i32,
    /// Wall ms between an EA's send and the fill.
    pub send_latency_ms: u64,
}

/// Why the simulator could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The bar file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bar file is not valid.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// The broker refused the set-up.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The link client could not be built.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The replay stopped.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// No EA key was given.
    #[error("at least one --key/--secret pair is needed")]
    NoKeys,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The replay's figures.
    pub replay: ReplaySummary,
    /// Each terminal's login and figures.
    pub terminals: Vec<(u64, TerminalStats)>,
}

/// Builds the broker, feed and terminals and runs the replay until its end or `shutdown`.
pub async fn run(cfg: SimConfig, shutdown: watch::Receiver<bool>) -> Result<RunSummary, SimError> {
    if cfg.keys.is_empty() {
        return Err(SimError::NoKeys);
    }
    let spread = SpreadModel { base_points: cfg.spread_points, ..SpreadModel::default() };
    let feed = match &cfg.source {
        Source::File(path) => {
            let bytes = std::fs::read(path)
                .map_err(|source| SimError::Io { path: path.clone(), source })?;
            let options = ParseOptions { utc_offset_seconds: cfg.file_utc_offset_s };
            Feed::from_file(&cfg.symbol, &bytes, &options, spread, 1)?
        }
        Source::Generated { seed, n } => Feed::generated(
            &cfg.symbol,
            *seed,
            *n,
            1_492_992_000_000,
            3_600,
            Decimal::new(107_000, 5),
            cfg.digits,
            20,
            &crate::broker::forex_week(),
        )
        .with_spread(spread),
    };
    let mut broker = Broker::new(BrokerConfig {
        execution: if cfg.instant_execution { Execution::Instant } else { Execution::Market },
        slippage_points: cfg.slippage_points,
        server_utc_offset_s: cfg.server_utc_offset_s,
        ..BrokerConfig::default()
    });
    broker.add_symbol(SymbolConfig::forex(&cfg.symbol, cfg.digits));
    for i in 0..cfg.keys.len() {
        broker.open_account(AccountConfig {
            login: cfg.first_login + i as u64,
            currency: "USD".into(),
            leverage: cfg.leverage,
            margin_mode: cfg.margin_mode,
            balance: cfg.balance,
        })?;
    }
    let broker = Arc::new(Mutex::new(broker));
    let mut terminals = Vec::new();
    for (i, (key, secret)) in cfg.keys.iter().enumerate() {
        let mut tc = TerminalConfig::new(&cfg.node_url, key, secret, cfg.first_login + i as u64);
        tc.input_magic = cfg.input_magic;
        tc.send_latency_ms = cfg.send_latency_ms;
        if cfg.speed == Speed::Max {
            tc.poll_wait_override_ms = Some(0);
        }
        terminals.push(Terminal::new(tc, broker.clone(), Faults::default())?);
    }
    let replay = Replay::new(broker, vec![feed]);
    let (terminals, summary) = replay.run(terminals, cfg.speed, shutdown).await?;
    Ok(RunSummary {
        replay: summary,
        terminals: terminals.iter().map(|t| (t.config().login, t.stats().clone())).collect(),
    })
}

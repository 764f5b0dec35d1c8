//! `--realistic-terminal`: the demo's simulated broker and terminals with the behaviours of real
//! MT5 servers and terminals that issue 23 modelled, all on at once (each is off by default in
//! `tradecast-sim`; `ea-sdk/README.md`, *What real MT5 terminals and servers do*):
//!
//! - tickets that change: a netting reversal gives the position a new ticket, and swap is rolled
//!   over by re-opening every position (a new ticket each server midnight);
//! - the filling policy checked against the execution mode (market execution, EURUSD flagging
//!   IOC only: FOK and RETURN are refused with 10030);
//! - expiration modes checked (EURUSD flags GTC, DAY and SPECIFIED; no SPECIFIED_DAY);
//! - a dealer that requotes the EA's first [`CLOSE_ATTEMPTS`] requests to close each position,
//!   so the node's re-offer of a requoted close closes it;
//! - the broker's server clock switching from UTC+2 to UTC+3 halfway through the replayed bars
//!   (a daylight-saving change; not on its real date, so that a short sample crosses it);
//! - every terminal starting disconnected from the trade server (login 0) for its first cycles;
//! - alice's account on netting (the others hedging);
//! - 400 more symbols in Market Watch (no quotes), whose specs go in parts.
//!
//! None of these may change a decision or a fill of the demo: the same signals, decisions,
//! fills and P&L come out (`tests/demo`, `slow_demo_realistic_terminal_gives_the_same_decisions_and_fills`).
//! One could by design: a close the dealer requoted three times fills at the node's next offer,
//! a bar later, at that bar's price; in this sample that changes no P&L (the test compares it:
//! the copies close at their own SL/TP at the broker, which no dealer requotes). The DST switch once did change decisions: the node kept the
//! hello's offset for its server day, so after the switch a day's first state came an hour
//! before the node's day began and signals were refused ("the equity at the start of the
//! broker's server day is not known yet") until the EA learnt to say hello again on a switch.

use anyhow::bail;
use tradecast_protocol::bars::Bar;
use tradecast_protocol::ea::MarginMode;
use tradecast_sim::broker::{
    BrokerConfig, Execution, SYMBOL_EXPIRATION_DAY, SYMBOL_EXPIRATION_GTC,
    SYMBOL_EXPIRATION_SPECIFIED, SYMBOL_FILLING_IOC, SymbolConfig, market_watch,
};
use tradecast_sim::terminal::{CLOSE_ATTEMPTS, Terminal};

/// Symbols added to Market Watch beside EURUSD.
pub const MARKET_WATCH: usize = 400;
/// Server time minus UTC before and after the daylight-saving switch.
const OFFSET_BEFORE_S: i32 = 7_200;
const OFFSET_AFTER_S: i32 = 10_800;
/// Timer cycles each terminal spends disconnected at its start.
const DISCONNECTED_CYCLES: usize = 3;

/// The broker's settings: every real-MT5 option on, the daylight-saving switch at the open of
/// the bar halfway through `bars`.
pub fn broker_config(bars: &[Bar]) -> BrokerConfig {
    let dst_at = bars.get(bars.len() / 2).map(|b| b.time_unix_ms);
    BrokerConfig {
        execution: Execution::Market,
        check_filling: true,
        check_expiration: true,
        requote_closes: CLOSE_ATTEMPTS,
        new_ticket_on_reversal: true,
        reopen_on_rollover: true,
        server_utc_offset_s: OFFSET_BEFORE_S,
        dst_change: dst_at.map(|t| (t, OFFSET_AFTER_S)),
        ..BrokerConfig::default()
    }
}

/// EURUSD as a market-execution broker shows it, then [`MARKET_WATCH`] more symbols.
pub fn symbols() -> Vec<SymbolConfig> {
    let eurusd = SymbolConfig {
        filling_modes: SYMBOL_FILLING_IOC,
        expiration_modes: SYMBOL_EXPIRATION_GTC
            | SYMBOL_EXPIRATION_DAY
            | SYMBOL_EXPIRATION_SPECIFIED,
        ..SymbolConfig::forex("EURUSD", 5)
    };
    std::iter::once(eurusd).chain(market_watch(MARKET_WATCH)).collect()
}

/// The account's margin mode: alice nets (her policy holds one position at a time, so nothing
/// merges), the others hedge.
pub fn margin_mode(name: &str) -> MarginMode {
    if name == "alice" { MarginMode::Netting } else { MarginMode::Hedging }
}

/// Every terminal starts disconnected from the trade server: a few timer cycles without a
/// hello (it would carry login 0), then logged in.
pub async fn start_disconnected(terminals: &mut [Terminal]) -> anyhow::Result<()> {
    for t in terminals.iter_mut() {
        t.faults().set_disconnected(true);
        for _ in 0..DISCONNECTED_CYCLES {
            t.step().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if t.stats().hello_attempts != 0 || t.session_id().is_some() {
            bail!("a terminal said hello before it was logged in");
        }
        t.faults().set_disconnected(false);
    }
    Ok(())
}

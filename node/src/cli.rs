//! The `tradecast-node` command line: the clap definitions (one subcommand per verb, so `init`,
//! `run`, `status`, … join [`Command`] as they arrive) and what each subcommand does, writing to
//! a `Write` it is handed so tests can read it. `main.rs` only parses and calls [`run`].
//!
//! `backtest`: reads a bar file, runs Fib-RSI v1 and the trade simulation, prints the signals as
//! JSON lines (`--json`: one object per signal and nothing else on stdout) or as a table with the
//! summary, and with `--report DIR` writes the HTML/SVG report.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rust_decimal::Decimal;
use tradecast_protocol::bars::{self, BarFileError, ParseOptions, format_rfc3339};

use crate::backtest::{self, Backtest, BacktestError, Config, Outcome, Split, Summary};
use crate::display::{price, short_time};
use crate::orders::SymbolSpec;
use crate::report::{self, ReportError};
use crate::strategy::{Params, STRATEGY_ID, Signal};
use crate::timeframe::Timeframe;

/// Tradecast node: runs beside MetaTrader 5 and executes signals under the trader's own rules.
#[derive(Debug, Parser)]
#[command(name = "tradecast-node", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The command line from `args` (the program name first), with its exit status: what
/// `tradecast-node` runs, and what `tradecast demo` runs in each node process.
pub fn main_from<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = <Cli as clap::Parser>::parse_from(args);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let result = run(cli, &mut out, &mut err);
    let flushed = Write::flush(&mut out);
    match result.map_err(anyhow::Error::from).and(flushed.map_err(anyhow::Error::from)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(err, "tradecast-node: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The node's verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay a bar file through Fib-RSI v1 and simulate its trades.
    Backtest(BacktestArgs),
    /// Create a data dir: identity (OS CSPRNG), store, config file, local API token.
    Init(crate::commands::InitArgs),
    /// EA keys: `ea-key new` prints a key id and its secret, once.
    #[command(subcommand)]
    EaKey(crate::commands::EaKeyCommand),
    /// Run the node: the EA link and the local API on 127.0.0.1.
    Run(crate::commands::RunArgs),
    /// Show a running node's status (through its local API).
    Status(crate::commands::StatusArgs),
    /// Print the URL that opens the node's web UI (it carries the local token: open it on this
    /// machine, or through the SSH tunnel on the same port).
    UiUrl(crate::commands::StatusArgs),
    /// Enrol this node with a hub (a one-time code) and pin the hub's key.
    Enrol(crate::commands::EnrolArgs),
    /// The provider keys this node pinned from its feed; `--trust ID` trusts a new one (a second
    /// provider key is not acted on until you do). Run it with the node stopped.
    Providers(crate::commands::ProvidersArgs),
    /// What of the account's history the running node publishes to the hub (closed trades,
    /// equity, balance operations, daily summaries; all off by default): shows it, or changes it
    /// with `--on`/`--off`.
    Publish(crate::commands::PublishArgs),
}

/// `tradecast-node backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The bar file: an MT5 export or a CSV with a header (time, open, high, low, close).
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// Print one JSON object per signal per line, and nothing else.
    #[arg(long)]
    pub json: bool,
    /// The symbol's name, for the output (default: the file's name up to the first `-`, `_` or `.`).
    #[arg(long)]
    pub symbol: Option<String>,
    /// The bars' timeframe: M1, M5, M15, M30, H1, H4, D1 or W1. Labels the output and sets the
    /// signal expiry and holding times.
    #[arg(long, default_value = "H1")]
    pub timeframe: Timeframe,
    /// The file's clock minus UTC, seconds, for times written without an offset (MT5 exports
    /// are in broker server time, e.g. 7200 for UTC+2).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub utc_offset_seconds: i32,
    #[command(flatten)]
    pub strategy: StrategyArgs,
    #[command(flatten)]
    pub account: AccountArgs,
    /// Write an HTML report (equity, drawdown, price chart with trades) and SVG charts here.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

/// Every Fib-RSI v1 parameter (fib-rsi.md); the defaults are the locked ones.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Strategy (fib-rsi.md)")]
pub struct StrategyArgs {
    /// Wilder RSI period, bars.
    #[arg(long, default_value_t = 14)]
    pub rsi_period: usize,
    /// Wilder ATR period, bars.
    #[arg(long, default_value_t = 14)]
    pub atr_period: usize,
    /// Swing strength k: bars on each side.
    #[arg(long, default_value_t = 5)]
    pub swing_strength: usize,
    /// How far back a swing may lie, bars.
    #[arg(long, default_value_t = 120)]
    pub swing_lookback: usize,
    /// The zone's shallow edge, fraction of the leg.
    #[arg(long, default_value_t = 0.5)]
    pub zone_shallow: f64,
    /// The zone's deep edge (also the stop), fraction of the leg.
    #[arg(long, default_value_t = 0.786)]
    pub zone_deep: f64,
    /// RSI level a long needs crossed upwards.
    #[arg(long, default_value_t = 40.0)]
    pub long_cross: f64,
    /// RSI level a short needs crossed downwards.
    #[arg(long, default_value_t = 60.0)]
    pub short_cross: f64,
    /// Minimum leg range, in ATRs.
    #[arg(long, default_value_t = 1.5)]
    pub min_range_atr: f64,
    /// tp2's extension beyond the leg, fraction of the leg.
    #[arg(long, default_value_t = 0.272)]
    pub extension: f64,
    /// Minimum reward/risk to tp1 (the strategy's rule, and the order's after spread).
    #[arg(long, default_value_t = 1.0)]
    pub min_rr: f64,
}

impl From<&StrategyArgs> for Params {
    fn from(a: &StrategyArgs) -> Self {
        Params {
            rsi_period: a.rsi_period,
            atr_period: a.atr_period,
            swing_strength: a.swing_strength,
            swing_lookback: a.swing_lookback,
            zone_shallow: a.zone_shallow,
            zone_deep: a.zone_deep,
            long_cross: a.long_cross,
            short_cross: a.short_cross,
            min_range_atr: a.min_range_atr,
            extension: a.extension,
            min_rr: a.min_rr,
        }
    }
}

/// The simulated account and symbol.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Account and symbol")]
pub struct AccountArgs {
    /// Starting equity, account currency.
    #[arg(long, default_value = "10000")]
    pub equity: Decimal,
    /// Percent of equity risked per trade at the stop.
    #[arg(long, default_value = "1")]
    pub risk_pct: Decimal,
    /// Split each signal in two halves (tp1 and tp2, break-even stop after tp1).
    #[arg(long)]
    pub split: bool,
    /// Ask − bid in price units (e.g. 0.00012); the file's prices are bids.
    #[arg(long, default_value = "0")]
    pub spread: Decimal,
    /// Commission per lot, round turn, account currency.
    #[arg(long, default_value = "0")]
    pub commission: Decimal,
    /// Tick size (default: the smallest price step the file's decimals show, e.g. 0.00001).
    #[arg(long)]
    pub tick_size: Option<Decimal>,
    /// Account currency per tick per lot (1 for EURUSD on a USD account with 0.00001 ticks).
    #[arg(long, default_value = "1")]
    pub tick_value: Decimal,
    /// The broker's minimum volume, lots.
    #[arg(long, default_value = "0.01")]
    pub volume_min: Decimal,
    /// The broker's maximum volume, lots.
    #[arg(long, default_value = "100")]
    pub volume_max: Decimal,
    /// The broker's volume step, lots.
    #[arg(long, default_value = "0.01")]
    pub volume_step: Decimal,
    /// The broker's stops level, points.
    #[arg(long, default_value_t = 0)]
    pub stops_level: u32,
    /// Allow a new trade while one is open (the default is one position at a time).
    #[arg(long)]
    pub allow_overlap: bool,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The bar file could not be read.
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The bar file is malformed.
    #[error("{path}: {source}")]
    Bars { path: PathBuf, source: BarFileError },
    #[error(transparent)]
    Backtest(#[from] BacktestError),
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("writing the output: {0}")]
    Output(#[from] io::Error),
    /// A node command failed.
    #[error(transparent)]
    Node(#[from] crate::commands::CommandError),
    /// Enrolment failed.
    #[error(transparent)]
    Enrol(#[from] crate::sync::enrol::EnrolError),
    /// Listing or trusting provider keys failed.
    #[error(transparent)]
    Providers(#[from] crate::sync::ProvidersError),
}

/// Runs a parsed command line, writing its output to `out` and notes to `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    match cli.command {
        Command::Backtest(args) => backtest_command(&args, out, err),
        Command::Init(args) => Ok(crate::commands::init(&args, out)?),
        Command::EaKey(c) => Ok(crate::commands::ea_key(&c, out)?),
        Command::Run(args) => Ok(crate::commands::run(&args)?),
        Command::Status(args) => Ok(crate::commands::status(&args, out)?),
        Command::UiUrl(args) => {
            let url = crate::serve::ui_url(&args.data.data, args.api_listen)
                .map_err(crate::commands::CommandError::from)?;
            writeln!(out, "{url}").map_err(crate::commands::CommandError::from)?;
            Ok(())
        }
        Command::Enrol(args) => Ok(crate::commands::enrol_command(&args, out)?),
        Command::Providers(args) => Ok(crate::commands::providers_command(&args, out)?),
        Command::Publish(args) => Ok(crate::commands::publish(&args, out)?),
    }
}

/// The smallest step the prices' decimals show: 10^-(largest scale), at least 10^-8.
fn inferred_tick(bars: &[bars::Bar]) -> Decimal {
    let scale = bars
        .iter()
        .flat_map(|b| [b.open, b.high, b.low, b.close])
        .map(|d| d.normalize().scale())
        .max()
        .unwrap_or(5)
        .min(8);
    Decimal::new(1, scale)
}

fn backtest_command(
    a: &BacktestArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    let bytes =
        std::fs::read(&a.csv).map_err(|source| CliError::Read { path: a.csv.clone(), source })?;
    let options = ParseOptions { utc_offset_seconds: a.utc_offset_seconds };
    let bars = bars::parse_bars_with(&bytes, &options)
        .map_err(|source| CliError::Bars { path: a.csv.clone(), source })?;
    let symbol = a.symbol.clone().unwrap_or_else(|| {
        let stem = a.csv.file_name().and_then(|n| n.to_str()).unwrap_or("bars");
        stem.split(['-', '_', '.']).next().unwrap_or(stem).to_owned()
    });
    let acc = &a.account;
    let tick_size = acc.tick_size.unwrap_or_else(|| inferred_tick(&bars));
    let config = Config {
        params: Params::from(&a.strategy),
        timeframe: a.timeframe,
        spec: SymbolSpec {
            point: tick_size.min(inferred_tick(&bars)),
            tick_size,
            tick_value_loss: acc.tick_value,
            volume_min: acc.volume_min,
            volume_max: acc.volume_max,
            volume_step: acc.volume_step,
            stops_level_points: acc.stops_level,
        },
        equity: acc.equity,
        risk_pct: acc.risk_pct,
        split: if acc.split { Split::Halves } else { Split::Whole },
        spread: acc.spread,
        commission_per_lot: acc.commission,
        one_position: !acc.allow_overlap,
    };
    let result = backtest::run(&bars, &config)?;
    if a.json {
        for row in &result.rows {
            writeln!(out, "{}", signal_json(&row.signal))?;
        }
    } else {
        let title = Title { symbol: &symbol, timeframe: a.timeframe, bars: &bars };
        write_table(out, &title, &config, &result)?;
    }
    if let Some(dir) = &a.report {
        let title = format!("{symbol} {} — Fib-RSI v1 backtest", a.timeframe);
        let page = report::write(dir, &title, &bars, &config, &result)?;
        writeln!(err, "report written to {}", page.display())?;
    }
    Ok(())
}

/// The `--json` line of a signal: exactly `bar, time, side, entry, stop, tp1, tp2, swing_low,
/// swing_high, rsi, rr`, prices the strategy's f64 values themselves.
pub fn signal_json(s: &Signal) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        bar: usize,
        time: String,
        side: &'a str,
        entry: f64,
        stop: f64,
        tp1: f64,
        tp2: f64,
        swing_low: usize,
        swing_high: usize,
        rsi: f64,
        rr: f64,
    }
    let line = Line {
        bar: s.bar,
        time: format_rfc3339(s.time_unix_ms),
        side: s.side.as_str(),
        entry: s.entry,
        stop: s.stop,
        tp1: s.tp1,
        tp2: s.tp2,
        swing_low: s.swing_low,
        swing_high: s.swing_high,
        rsi: s.rsi,
        rr: s.rr,
    };
    // Finite numbers only (the strategy's values always are): serde_json writes NaN as null.
    serde_json::to_string(&line).unwrap_or_default()
}

struct Title<'a> {
    symbol: &'a str,
    timeframe: Timeframe,
    bars: &'a [bars::Bar],
}

fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "no losses".to_owned(), |v| format!("{v:.2}"))
}

fn write_table(out: &mut dyn Write, t: &Title<'_>, c: &Config, b: &Backtest) -> io::Result<()> {
    let (first, last) = match (t.bars.first(), t.bars.last()) {
        (Some(f), Some(l)) => (short_time(f.time_unix_ms), short_time(l.time_unix_ms)),
        _ => (String::new(), String::new()),
    };
    writeln!(
        out,
        "{STRATEGY_ID} backtest: {} {}, {} bars, {first} to {last} UTC",
        t.symbol, t.timeframe, b.n_bars
    )?;
    writeln!(
        out,
        "account: equity {}, risk {} % a trade, {}, spread {}, commission {} a lot, tick {} worth {}",
        c.equity,
        c.risk_pct,
        if c.split == Split::Halves { "halves at tp1/tp2" } else { "whole position at tp1" },
        c.spread,
        c.commission_per_lot,
        c.spec.tick_size,
        c.spec.tick_value_loss
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:>3} {:>6}  {:<16}  {:<4}  {:>10} {:>10} {:>10} {:>10}  {:>5} {:>5}  {:>6}  {:<28} {:>6} {:>10}",
        "#",
        "bar",
        "time (UTC)",
        "side",
        "entry",
        "stop",
        "tp1",
        "tp2",
        "rsi",
        "rr",
        "lots",
        "outcome",
        "R",
        "P&L"
    )?;
    for (n, row) in b.rows.iter().enumerate() {
        let s = &row.signal;
        write!(
            out,
            "{:>3} {:>6}  {:<16}  {:<4}  {:>10} {:>10} {:>10} {:>10}  {:>5.1} {:>5.2}  ",
            n + 1,
            s.bar,
            short_time(s.time_unix_ms),
            s.side.as_str(),
            price(s.entry),
            price(s.stop),
            price(s.tp1),
            price(s.tp2),
            s.rsi,
            s.rr
        )?;
        match &row.outcome {
            Outcome::Traded(tr) => {
                let outcome = format!(
                    "{} {} after {}h",
                    tr.close_reason().as_str(),
                    tr.exit_price().normalize(),
                    (tr.close_time_unix_ms - tr.open_time_unix_ms) / 3_600_000
                );
                writeln!(
                    out,
                    "{:>6}  {:<28} {:>+6.2} {:>+10.2}",
                    tr.order.volume.normalize().to_string(),
                    outcome,
                    tr.r,
                    tr.pnl_money
                )?;
            }
            Outcome::Skipped(why) => writeln!(out, "{:>6}  skipped: {why}", "-")?,
        }
    }
    writeln!(out)?;
    write_summary(out, &b.summary)
}

fn write_summary(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    writeln!(out, "summary")?;
    let rows: [(&str, String); 9] = [
        ("signals", format!("{} ({} traded, {} skipped)", s.n_signals, s.n_trades, s.n_skipped)),
        (
            "win rate",
            format!("{:.1} % ({} wins, {} losses)", s.win_rate * 100.0, s.n_wins, s.n_losses),
        ),
        (
            "profit factor",
            if s.n_trades == 0 {
                "no trades".to_owned()
            } else {
                format!("{} (in R: {})", ratio(s.profit_factor_money), ratio(s.profit_factor_r))
            },
        ),
        ("expectancy", format!("{:+.3} R, {:+.2} a trade", s.expectancy_r, s.expectancy_money)),
        (
            "net result",
            format!(
                "{:+.2} R, {:+.2} (equity {:.2} to {:.2}, commission {:.2})",
                s.total_r, s.net_profit_money, s.initial_equity, s.final_equity, s.commission_money
            ),
        ),
        (
            "max drawdown",
            format!(
                "{:.2} R, {:.2} ({:.2} % of the peak)",
                s.max_drawdown_r, s.max_drawdown_money, s.max_drawdown_pct
            ),
        ),
        ("longest losing streak", format!("{} trades", s.longest_losing_streak)),
        ("average holding time", format!("{:.1} h", s.avg_holding_hours)),
        ("bars", s.n_bars.to_string()),
    ];
    for (k, v) in rows {
        writeln!(out, "  {k:<22} {v}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_flag_defaults_are_the_locked_parameters() {
        let cli =
            Cli::try_parse_from(["tradecast-node", "backtest", "--csv", "x.csv"]).expect("parses");
        let Command::Backtest(a) = cli.command else { unreachable!("parsed as backtest") };
        assert_eq!(Params::from(&a.strategy), Params::default());
        assert_eq!(a.timeframe, Timeframe::H1);
    }

    #[test]
    fn every_parameter_has_a_flag() {
        let cli = Cli::try_parse_from([
            "tradecast-node",
            "backtest",
            "--csv",
            "x.csv",
            "--rsi-period=2",
            "--atr-period=3",
            "--swing-strength=4",
            "--swing-lookback=50",
            "--zone-shallow=0.4",
            "--zone-deep=0.9",
            "--long-cross=30",
            "--short-cross=70",
            "--min-range-atr=2",
            "--extension=0.5",
            "--min-rr=1.5",
            "--timeframe=m15",
            "--utc-offset-seconds=-3600",
        ])
        .expect("parses");
        let Command::Backtest(a) = cli.command else { unreachable!("parsed as backtest") };
        let want = Params {
            rsi_period: 2,
            atr_period: 3,
            swing_strength: 4,
            swing_lookback: 50,
            zone_shallow: 0.4,
            zone_deep: 0.9,
            long_cross: 30.0,
            short_cross: 70.0,
            min_range_atr: 2.0,
            extension: 0.5,
            min_rr: 1.5,
        };
        assert_eq!(Params::from(&a.strategy), want);
        assert_eq!(a.timeframe, Timeframe::M15);
        assert_eq!(a.utc_offset_seconds, -3600);
    }
}

//! The public track record of a provider's signals chain, and its export: the pure figures the
//! hub publishes and the offline verifier recomputes, from the same functions.
//!
//! # Basis: the signals chain, in R multiples
//!
//! A provider's chain (`StreamId::SIGNALS`) holds its `Signal`, `Modify` and `Close` records.
//! From those alone (no fills, no money) each signal's result is measured against the risk it
//! declared when it was signed:
//!
//! - **risk** = |entry − stop| of the `Signal` (its first stop: a later `Modify` of the stop does
//!   not change the risk the result is measured in);
//! - **move** of one close = (close price − entry) for a buy, (entry − close price) for a sell;
//! - a `Close` takes `fraction` of what remains open, so its **portion** of the whole position is
//!   remaining × fraction; the signal's **R** = Σ portion × move / risk and its **move** =
//!   Σ portion × move (price units), over its closes. A signal is a *trade* once what remains is
//!   zero; it is *open* before, and *unpriced* if a close carried no price (or the arithmetic
//!   overflowed): unpriced signals are counted, never scored;
//! - **pips** = move / pip, where pip = 0.01 for a six-letter currency pair quoted in JPY, 0.0001
//!   for any other six-letter pair, and n/a for other symbols;
//! - a signal is *opened* at its record's `created_at_ms` and *closed* at the `created_at_ms` of
//!   the record that closed what remained (one clock: the provider node's);
//! - a `Signal` whose id was seen before, and a `Modify`/`Close` of a signal that is not in the
//!   same author's chain before it (or that is already closed), or with a fraction outside
//!   (0, 1], count for nothing.
//!
//! # The figures ([`TrackFigures`]), over trades in closing order
//!
//! Per-trade R is rounded to [`R_DP`] places (half away from zero) first; every sum is of those
//! rounded values. A ratio without a denominator is `None` ("n/a" on the page), never NaN:
//! - win: R > 0; loss: R < 0; breakeven: R = 0;
//! - win rate = wins / trades (4 places); expectancy = Σ R / trades (6 places);
//! - profit factor = Σ R of wins / |Σ R of losses| (4 places; n/a without a loss);
//! - average win = Σ R of wins / wins, average loss = Σ R of losses / losses (6 places);
//! - best / worst = the largest / smallest R;
//! - longest win (loss) streak: most consecutive wins (losses); a breakeven ends both;
//! - max drawdown = the largest fall of the cumulative-R curve (starting at 0) from its running
//!   peak (0 without trades);
//! - trades per week = trades / weeks, weeks = max(last close − first open, 7 days) / 7 days
//!   (2 places);
//! - average holding time = Σ (close − open) / trades, whole ms rounded down;
//! - per symbol and per month (UTC, by the closing time): trades, wins, losses, Σ R, win rate,
//!   expectancy, as above.
//!
//! # The export ([`TrackExport`])
//!
//! One JSON file: the hub's key, per author device its key and its chain's records (base64 of
//! `Record::encode`) each with the hub's [`Receipt`], the delay's cutoff, and the figures the hub
//! published. Since the money figures ([`crate::track_money`]) it also carries, per provider
//! device that publishes its account history, that device's `StreamId::PUBLISHED` chain with
//! the receipts (`published`) and the money figures the hub showed (`money`, same order); both
//! default to empty, so an export written before still parses. [`verify_export`] checks every
//! signature, `seq`, `prev_hash` and receipt of both kinds of chain, recomputes all the figures
//! and names the first difference. No I/O here.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::chain::{ChainError, ChainTip};
use crate::domain::{Close, Side, Signal, SignalId};
use crate::identity::{DeviceId, IdentityKey};
use crate::receipt::Receipt;
use crate::record::{Body, Record, StreamId};
use crate::track_money::{self, MoneyFigures};
use crate::trust::TrustScore;

/// Decimal places of a trade's R and of every R figure.
pub const R_DP: u32 = 6;
/// Decimal places of the win rate and the profit factor.
pub const RATIO_DP: u32 = 4;
/// One week, ms.
pub const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
/// The `format` of an export file.
pub const EXPORT_FORMAT: &str = "tradecast-track-export/v1";
/// The `basis` of figures computed here.
pub const BASIS_SIGNALS_R: &str = "signals-chain-r";

/// Why figures cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// A sum over the trades overflowed the decimal range.
    #[error("a figure overflows the decimal range")]
    Overflow,
}

/// One closed signal, scored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeOutcome {
    /// The signal.
    pub signal_id: SignalId,
    /// Its author device.
    pub author: DeviceId,
    /// `seq` of the signal's record in the author's chain.
    pub signal_seq: u64,
    /// `seq` of the record that closed what remained.
    pub close_seq: u64,
    /// Canonical symbol.
    pub symbol: String,
    /// Direction.
    pub side: Side,
    /// Entry price of the signal.
    pub entry: Decimal,
    /// The signal's first stop (the risk).
    pub stop: Decimal,
    /// The signal record's `created_at_ms`.
    pub opened_at_ms: i64,
    /// The closing record's `created_at_ms`.
    pub closed_at_ms: i64,
    /// Result in R multiples, [`R_DP`] places.
    pub r: Decimal,
    /// Σ portion × move, price units.
    pub move_price: Decimal,
    /// `move_price` in pips (1 place), n/a for symbols that are not six-letter pairs.
    pub pips: Option<Decimal>,
}

/// Figures of a subset of trades (one symbol, one month).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFigures {
    /// The symbol, or the month as `YYYY-MM` (UTC).
    pub key: String,
    /// Trades.
    pub n_trades: u64,
    /// Trades with R > 0.
    pub n_wins: u64,
    /// Trades with R < 0.
    pub n_losses: u64,
    /// Σ R.
    pub total_r: Decimal,
    /// wins / trades.
    pub win_rate: Option<Decimal>,
    /// Σ R / trades.
    pub expectancy_r: Option<Decimal>,
}

/// Everything the hub publishes about a provider's signals chain (see the module docs for each
/// formula).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackFigures {
    /// What the figures are computed from ([`BASIS_SIGNALS_R`]).
    pub basis: String,
    /// Distinct signals in the chain(s).
    pub n_signals: u64,
    /// Signals with part of the position still open.
    pub n_open: u64,
    /// Signals closed without a price on some close (not scored).
    pub n_unpriced: u64,
    /// Scored (closed, priced) signals.
    pub n_trades: u64,
    /// Trades with R > 0.
    pub n_wins: u64,
    /// Trades with R < 0.
    pub n_losses: u64,
    /// Trades with R = 0.
    pub n_breakevens: u64,
    /// Σ R.
    pub total_r: Decimal,
    /// wins / trades.
    pub win_rate: Option<Decimal>,
    /// Σ R / trades.
    pub expectancy_r: Option<Decimal>,
    /// Σ R of wins / |Σ R of losses|.
    pub profit_factor_r: Option<Decimal>,
    /// Σ R of wins / wins.
    pub avg_win_r: Option<Decimal>,
    /// Σ R of losses / losses.
    pub avg_loss_r: Option<Decimal>,
    /// Largest R.
    pub best_r: Option<Decimal>,
    /// Smallest R.
    pub worst_r: Option<Decimal>,
    /// Largest fall of the cumulative-R curve from its running peak.
    pub max_drawdown_r: Decimal,
    /// Most consecutive wins.
    pub longest_win_streak: u64,
    /// Most consecutive losses.
    pub longest_loss_streak: u64,
    /// Trades per week.
    pub trades_per_week: Option<Decimal>,
    /// Mean of close − open, ms.
    pub avg_holding_ms: Option<i64>,
    /// Per symbol, by symbol.
    pub by_symbol: Vec<GroupFigures>,
    /// Per month of the closing time (UTC), oldest first.
    pub by_month: Vec<GroupFigures>,
    /// Every trade, in closing order.
    pub trades: Vec<TradeOutcome>,
}

fn round(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero).normalize()
}

/// The pip of a symbol (see the module docs).
pub fn pip_size(symbol: &str) -> Option<Decimal> {
    let pair = symbol.len() == 6 && symbol.bytes().all(|b| b.is_ascii_alphabetic());
    if !pair {
        return None;
    }
    if symbol[3..].eq_ignore_ascii_case("JPY") {
        Some(Decimal::new(1, 2))
    } else {
        Some(Decimal::new(1, 4))
    }
}

/// A signal being followed through the chain.
#[derive(Debug)]
struct Open {
    signal: Signal,
    seq: u64,
    opened_at_ms: i64,
    remaining: Decimal,
    r: Option<Decimal>,
    move_price: Option<Decimal>,
}

impl Open {
    /// Applies one close; `Some(true)` once nothing remains.
    fn close(&mut self, close: &Close) -> bool {
        if close.fraction <= Decimal::ZERO || close.fraction > Decimal::ONE {
            return false;
        }
        let Some(portion) = self.remaining.checked_mul(close.fraction) else {
            self.r = None;
            return false;
        };
        self.remaining = self.remaining.checked_sub(portion).unwrap_or(Decimal::ZERO);
        let risk = (self.signal.entry - self.signal.stop).abs();
        let scored = close.price.and_then(|price| {
            let raw = match self.signal.side {
                Side::Buy => price.checked_sub(self.signal.entry)?,
                Side::Sell => self.signal.entry.checked_sub(price)?,
            };
            let moved = portion.checked_mul(raw)?;
            let r = moved.checked_div(risk)?;
            Some((moved, r))
        });
        match (scored, self.r, self.move_price) {
            (Some((moved, r)), Some(acc_r), Some(acc_m)) => {
                self.r = acc_r.checked_add(r);
                self.move_price = acc_m.checked_add(moved);
            }
            _ => {
                self.r = None;
                self.move_price = None;
            }
        }
        self.remaining.is_zero()
    }
}

/// What the chain(s) say about every signal: the scored trades in closing order and the counts
/// of open and unpriced signals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainOutcomes {
    /// Distinct signals.
    pub n_signals: u64,
    /// Still open.
    pub n_open: u64,
    /// Closed without a price somewhere (or overflowing).
    pub n_unpriced: u64,
    /// Scored trades, in closing order.
    pub trades: Vec<TradeOutcome>,
}

/// Follows every signal of `chains` (each one author's records in `seq` order; other streams,
/// sealed and undecodable records count for nothing) to its outcome.
pub fn outcomes<'a>(chains: impl IntoIterator<Item = &'a [Record]>) -> ChainOutcomes {
    let mut out = ChainOutcomes::default();
    for records in chains {
        let mut open: HashMap<SignalId, Open> = HashMap::new();
        let mut seen: Vec<SignalId> = Vec::new();
        for record in records {
            let header = record.header();
            if header.stream != StreamId::SIGNALS || header.sealed {
                continue;
            }
            match record.body() {
                Ok(Body::Signal(signal)) => {
                    if seen.contains(&signal.id) {
                        continue;
                    }
                    seen.push(signal.id);
                    out.n_signals += 1;
                    let risk_known = signal.entry != signal.stop;
                    let zero = risk_known.then_some(Decimal::ZERO);
                    open.insert(
                        signal.id,
                        Open {
                            signal,
                            seq: header.seq,
                            opened_at_ms: header.created_at_ms,
                            remaining: Decimal::ONE,
                            r: zero,
                            move_price: zero,
                        },
                    );
                }
                Ok(Body::Close(close)) => {
                    let Some(o) = open.get_mut(&close.signal_id) else { continue };
                    if !o.close(&close) {
                        continue;
                    }
                    let Some(o) = open.remove(&close.signal_id) else { continue };
                    match (o.r, o.move_price) {
                        (Some(r), Some(move_price)) => {
                            let pips = pip_size(&o.signal.symbol)
                                .and_then(|pip| move_price.checked_div(pip))
                                .map(|p| round(p, 1));
                            out.trades.push(TradeOutcome {
                                signal_id: o.signal.id,
                                author: header.author,
                                signal_seq: o.seq,
                                close_seq: header.seq,
                                symbol: o.signal.symbol,
                                side: o.signal.side,
                                entry: o.signal.entry,
                                stop: o.signal.stop,
                                opened_at_ms: o.opened_at_ms,
                                closed_at_ms: header.created_at_ms,
                                r: round(r, R_DP),
                                move_price: move_price.normalize(),
                                pips,
                            });
                        }
                        _ => out.n_unpriced += 1,
                    }
                }
                _ => {}
            }
        }
        out.n_open += open.len() as u64;
    }
    out.trades.sort_by(|a, b| {
        (a.closed_at_ms, a.author, a.close_seq).cmp(&(b.closed_at_ms, b.author, b.close_seq))
    });
    out
}

/// `a / b` rounded to `dp`, n/a when `b` is zero.
fn ratio(a: Decimal, b: Decimal, dp: u32) -> Result<Option<Decimal>, TrackError> {
    if b.is_zero() {
        return Ok(None);
    }
    a.checked_div(b).map(|q| Some(round(q, dp))).ok_or(TrackError::Overflow)
}

fn sum<'a>(values: impl IntoIterator<Item = &'a Decimal>) -> Result<Decimal, TrackError> {
    values
        .into_iter()
        .try_fold(Decimal::ZERO, |acc, v| acc.checked_add(*v).ok_or(TrackError::Overflow))
}

fn group(key: String, trades: &[&TradeOutcome]) -> Result<GroupFigures, TrackError> {
    let n = trades.len() as u64;
    let n_wins = trades.iter().filter(|t| t.r > Decimal::ZERO).count() as u64;
    let n_losses = trades.iter().filter(|t| t.r < Decimal::ZERO).count() as u64;
    let total_r = sum(trades.iter().map(|t| &t.r))?.normalize();
    Ok(GroupFigures {
        key,
        n_trades: n,
        n_wins,
        n_losses,
        total_r,
        win_rate: ratio(Decimal::from(n_wins), Decimal::from(n), RATIO_DP)?,
        expectancy_r: ratio(total_r, Decimal::from(n), R_DP)?,
    })
}

/// `YYYY-MM` (UTC, proleptic Gregorian) of a unix-ms instant.
pub fn month_of(at_ms: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = at_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

/// The longest run of consecutive trades for which `pred` holds.
fn longest_run(trades: &[TradeOutcome], pred: impl Fn(&TradeOutcome) -> bool) -> u64 {
    let (mut best, mut run) = (0u64, 0u64);
    for t in trades {
        run = if pred(t) { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// The largest fall of the cumulative sum of `rs` (from 0) below its running peak.
pub fn max_drawdown(rs: impl IntoIterator<Item = Decimal>) -> Result<Decimal, TrackError> {
    let (mut cum, mut peak, mut worst) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for r in rs {
        cum = cum.checked_add(r).ok_or(TrackError::Overflow)?;
        peak = peak.max(cum);
        worst = worst.max(peak.checked_sub(cum).ok_or(TrackError::Overflow)?);
    }
    Ok(worst.normalize())
}

/// The figures of [`ChainOutcomes`] (formulas in the module docs).
pub fn figures(outcomes: ChainOutcomes) -> Result<TrackFigures, TrackError> {
    let trades = outcomes.trades;
    let n = trades.len() as u64;
    let n_dec = Decimal::from(n);
    let wins: Vec<Decimal> = trades.iter().map(|t| t.r).filter(|r| *r > Decimal::ZERO).collect();
    let losses: Vec<Decimal> = trades.iter().map(|t| t.r).filter(|r| *r < Decimal::ZERO).collect();
    let total_r = sum(trades.iter().map(|t| &t.r))?.normalize();
    let win_sum = sum(&wins)?;
    let loss_sum = sum(&losses)?;
    let profit_factor_r =
        if losses.is_empty() { None } else { ratio(win_sum, loss_sum.abs(), RATIO_DP)? };
    let trades_per_week = match (
        trades.iter().map(|t| t.opened_at_ms).min(),
        trades.iter().map(|t| t.closed_at_ms).max(),
    ) {
        (Some(first), Some(last)) => {
            let span = last.saturating_sub(first).max(WEEK_MS);
            let weeks = Decimal::from(span)
                .checked_div(Decimal::from(WEEK_MS))
                .ok_or(TrackError::Overflow)?;
            ratio(n_dec, weeks, 2)?
        }
        _ => None,
    };
    let avg_holding_ms = if n == 0 {
        None
    } else {
        let total: i128 =
            trades.iter().map(|t| i128::from(t.closed_at_ms) - i128::from(t.opened_at_ms)).sum();
        let avg = total.div_euclid(i128::from(n));
        Some(i64::try_from(avg).map_err(|_| TrackError::Overflow)?)
    };
    let mut by_symbol: BTreeMap<&str, Vec<&TradeOutcome>> = BTreeMap::new();
    let mut by_month: BTreeMap<String, Vec<&TradeOutcome>> = BTreeMap::new();
    for t in &trades {
        by_symbol.entry(t.symbol.as_str()).or_default().push(t);
        by_month.entry(month_of(t.closed_at_ms)).or_default().push(t);
    }
    let by_symbol = by_symbol
        .into_iter()
        .map(|(k, ts)| group(k.to_string(), &ts))
        .collect::<Result<Vec<_>, _>>()?;
    let by_month =
        by_month.into_iter().map(|(k, ts)| group(k, &ts)).collect::<Result<Vec<_>, _>>()?;
    Ok(TrackFigures {
        basis: BASIS_SIGNALS_R.to_string(),
        n_signals: outcomes.n_signals,
        n_open: outcomes.n_open,
        n_unpriced: outcomes.n_unpriced,
        n_trades: n,
        n_wins: wins.len() as u64,
        n_losses: losses.len() as u64,
        n_breakevens: trades.iter().filter(|t| t.r.is_zero()).count() as u64,
        total_r,
        win_rate: ratio(Decimal::from(wins.len() as u64), n_dec, RATIO_DP)?,
        expectancy_r: ratio(total_r, n_dec, R_DP)?,
        profit_factor_r,
        avg_win_r: ratio(win_sum, Decimal::from(wins.len() as u64), R_DP)?,
        avg_loss_r: ratio(loss_sum, Decimal::from(losses.len() as u64), R_DP)?,
        best_r: trades.iter().map(|t| t.r).max(),
        worst_r: trades.iter().map(|t| t.r).min(),
        max_drawdown_r: max_drawdown(trades.iter().map(|t| t.r))?,
        longest_win_streak: longest_run(&trades, |t| t.r > Decimal::ZERO),
        longest_loss_streak: longest_run(&trades, |t| t.r < Decimal::ZERO),
        trades_per_week,
        avg_holding_ms,
        by_symbol,
        by_month,
        trades,
    })
}

/// The cumulative-R curve: after each trade, (its closing time, Σ R so far).
pub fn cumulative_r(trades: &[TradeOutcome]) -> Vec<(i64, Decimal)> {
    let mut cum = Decimal::ZERO;
    trades
        .iter()
        .map(|t| {
            cum = cum.checked_add(t.r).unwrap_or(cum);
            (t.closed_at_ms, cum)
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// The export and its verification.

/// One record of an exported chain with the hub's receipt for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedRecord {
    /// `Record::encode`, standard base64 with padding.
    pub record: String,
    /// The hub's signed receipt.
    pub receipt: Receipt,
}

/// One author device's signals chain, from `seq` 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedChain {
    /// The author's identity key (its device id is derived from it).
    pub author_key: IdentityKey,
    /// Its records, in `seq` order.
    pub records: Vec<ExportedRecord>,
    /// The first missing `seq` when the hub holds records after a hole in this chain (nothing
    /// after a hole can be verified, so nothing after it is exported): then the records end
    /// just before it. The hub's word — records it holds but cannot publish are not in the
    /// file — and the trust score's chain continuity counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_at_seq: Option<u64>,
}

/// The export file of a provider's public track record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackExport {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The provider (the hub's account id).
    pub provider: String,
    /// The hub's identity key: every receipt is signed by it.
    pub hub_key: IdentityKey,
    /// When the hub wrote the export, unix ms.
    pub generated_at_ms: i64,
    /// The publication delay, ms.
    pub delay_ms: i64,
    /// Nothing received by the hub after this instant is included (generated − delay).
    pub cutoff_ms: i64,
    /// One chain per author device of the provider.
    pub chains: Vec<ExportedChain>,
    /// The figures the hub publishes.
    pub figures: TrackFigures,
    /// One published-stream chain per provider device that publishes its account history.
    #[serde(default)]
    pub published: Vec<ExportedChain>,
    /// The money figures of each published chain, in the same order.
    #[serde(default)]
    pub money: Vec<MoneyFigures>,
    /// The trust score the page shows, with its components ([`crate::trust`]); absent from
    /// exports written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustScore>,
}

/// Where a figure differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FigureDifference {
    /// JSON path of the figure (`figures.by_month[1].total_r`).
    pub path: String,
    /// What the export says.
    pub exported: String,
    /// What the records give.
    pub recomputed: String,
}

/// Why an export does not verify; each names what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Not JSON of the export's shape.
    #[error("not a track-record export: {0}")]
    Parse(String),
    /// Another format.
    #[error("unknown export format {0:?} (this verifier reads {EXPORT_FORMAT})")]
    Format(String),
    /// The export's hub key is not the one the caller pinned.
    #[error("the export's hub key is not the pinned hub key")]
    HubKey,
    /// Two chains of one author.
    #[error("chain {chain}: a second chain of author {author}")]
    DuplicateChain {
        /// Index of the chain.
        chain: usize,
        /// The author.
        author: DeviceId,
    },
    /// A record's bytes are not base64 or not a record.
    #[error("chain {chain} (author {author}), record {index}: {reason}")]
    Record {
        /// Index of the chain.
        chain: usize,
        /// The chain's author.
        author: DeviceId,
        /// Index of the record in the chain.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record breaks the chain: wrong author or stream, a `seq` gap or reorder, a
    /// `prev_hash` that is not the previous header's hash, or a bad signature.
    #[error("chain {chain} (author {author}), record {index}: {error}")]
    Chain {
        /// Index of the chain.
        chain: usize,
        /// The chain's author.
        author: DeviceId,
        /// Index of the record.
        index: usize,
        /// The chain error.
        error: ChainError,
    },
    /// A receipt is not the hub's signature over this record.
    #[error("chain {chain} (author {author}), seq {seq}: receipt {reason}")]
    Receipt {
        /// Index of the chain.
        chain: usize,
        /// The chain's author.
        author: DeviceId,
        /// The record's seq.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record the hub received after the cutoff is in the export.
    #[error(
        "chain {chain} (author {author}), seq {seq}: received at {received_at_ms}, after the cutoff {cutoff_ms}"
    )]
    NotDelayed {
        /// Index of the chain.
        chain: usize,
        /// The chain's author.
        author: DeviceId,
        /// The record's seq.
        seq: u64,
        /// Its receipt's time.
        received_at_ms: i64,
        /// The export's cutoff.
        cutoff_ms: i64,
    },
    /// Something wrong in a published-stream chain (the money figures' records).
    #[error("published stream: {0}")]
    Published(Box<ExportError>),
    /// The figures cannot be recomputed.
    #[error("figures: {0}")]
    Track(#[from] TrackError),
    /// A published figure is not what the records give.
    #[error("{}: the export says {}, the records give {}", .0.path, .0.exported, .0.recomputed)]
    Figure(FigureDifference),
}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The parsed export.
    pub export: TrackExport,
    /// The figures recomputed from its records.
    pub recomputed: TrackFigures,
    /// The money figures recomputed from its published chains.
    pub money: Vec<MoneyFigures>,
    /// The trust score recomputed from the figures, the declared gaps and the cutoff.
    pub trust: TrustScore,
    /// Records checked.
    pub n_records: usize,
}

/// Parses an export file.
pub fn parse_export(bytes: &[u8]) -> Result<TrackExport, ExportError> {
    let export: TrackExport =
        serde_json::from_slice(bytes).map_err(|e| ExportError::Parse(e.to_string()))?;
    if export.format != EXPORT_FORMAT {
        return Err(ExportError::Format(export.format));
    }
    Ok(export)
}

/// What [`check_records`] recomputes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recomputed {
    /// The R figures of the signals chains.
    pub figures: TrackFigures,
    /// The money figures of each published chain, in the export's order.
    pub money: Vec<MoneyFigures>,
    /// The trust score of the signals chains' figures.
    pub trust: TrustScore,
    /// Records checked (both kinds of chain).
    pub n_records: usize,
}

/// Checks `chains` as `stream` chains of distinct authors, every record's receipt against
/// `hub_key` and the cutoff; the decoded records per chain.
///
/// Two passes with the same outcome as checking record by record: the structure (base64, the
/// record's encoding, `seq` and `prev_hash` links, the receipt naming the record, the cutoff)
/// in file order up to its first error, then the two Ed25519 signatures of every record before
/// that point on every core ([`verify_signatures`]). The error reported is the one a
/// record-by-record check meets first: a bad signature before the structural error, else that
/// error.
fn check_chains(
    chains: &[ExportedChain],
    stream: StreamId,
    hub_key: &IdentityKey,
    cutoff_ms: i64,
) -> Result<Vec<(DeviceId, Vec<Record>)>, ExportError> {
    let mut out: Vec<(DeviceId, Vec<Record>)> = Vec::with_capacity(chains.len());
    // The first structural error. The records decoded before it (those in `out`) are the ones
    // a record-by-record check would have verified the signatures of before meeting it.
    let mut structural: Option<ExportError> = None;
    for (ci, chain) in chains.iter().enumerate() {
        let author = chain.author_key.device_id();
        if out.iter().any(|(a, _)| *a == author) {
            structural = Some(ExportError::DuplicateChain { chain: ci, author });
            break;
        }
        let (records, error) = chain_structure(ci, chain, stream, cutoff_ms);
        out.push((author, records));
        if error.is_some() {
            structural = error;
            break;
        }
    }
    verify_signatures(chains, &out, hub_key)?;
    match structural {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// One chain's structure in `seq` order ([`check_chains`]): its records decoded up to the first
/// structural error, and that error. A record whose receipt names another record, or that the
/// hub received after the cutoff, is among the records (a record-by-record check verifies its
/// signatures before those); one that does not decode or link is not.
fn chain_structure(
    ci: usize,
    chain: &ExportedChain,
    stream: StreamId,
    cutoff_ms: i64,
) -> (Vec<Record>, Option<ExportError>) {
    let author = chain.author_key.device_id();
    let mut tip = ChainTip::genesis(author, stream);
    let mut records = Vec::with_capacity(chain.records.len());
    for (index, item) in chain.records.iter().enumerate() {
        let bad = |reason: String| ExportError::Record { chain: ci, author, index, reason };
        let decoded = data_encoding::BASE64
            .decode(item.record.as_bytes())
            .map_err(|e| bad(format!("not base64: {e}")))
            .and_then(|b| Record::decode(&b).map_err(|e| bad(format!("not a record: {e}"))));
        let record = match decoded {
            Ok(r) => r,
            Err(e) => return (records, Some(e)),
        };
        tip = match tip.check_link(&record) {
            Ok(t) => t,
            Err(error) => {
                return (records, Some(ExportError::Chain { chain: ci, author, index, error }));
            }
        };
        let seq = record.header().seq;
        let after = if !item.receipt.covers(&record) {
            Some(ExportError::Receipt {
                chain: ci,
                author,
                seq,
                reason: "is for another record".into(),
            })
        } else if item.receipt.fields.received_at_ms > cutoff_ms {
            Some(ExportError::NotDelayed {
                chain: ci,
                author,
                seq,
                received_at_ms: item.receipt.fields.received_at_ms,
                cutoff_ms,
            })
        } else {
            None
        };
        records.push(record);
        if after.is_some() {
            return (records, after);
        }
    }
    if let Some(gap) = chain.gap_at_seq
        && gap != records.len() as u64 + 1
    {
        let e = ExportError::Record {
            chain: ci,
            author,
            index: records.len(),
            reason: format!(
                "the export declares a gap at seq {gap}, but its records end at seq {}",
                records.len()
            ),
        };
        return (records, Some(e));
    }
    (records, None)
}

/// The Ed25519 checks of [`check_chains`]: each record against its author's key and its receipt
/// against the hub's, spread over the machine's cores (scoped threads, no pool); the first
/// failure in file order.
fn verify_signatures(
    chains: &[ExportedChain],
    decoded: &[(DeviceId, Vec<Record>)],
    hub_key: &IdentityKey,
) -> Result<(), ExportError> {
    // (chain, index) of every decoded record, in file order.
    let jobs: Vec<(usize, usize)> = decoded
        .iter()
        .enumerate()
        .flat_map(|(ci, (_, records))| (0..records.len()).map(move |i| (ci, i)))
        .collect();
    let check = |&(ci, index): &(usize, usize)| -> Result<(), ExportError> {
        let (author, records) = &decoded[ci];
        let (record, chain) = (&records[index], &chains[ci]);
        let seq = record.header().seq;
        record.verify(&chain.author_key).map_err(|error| ExportError::Chain {
            chain: ci,
            author: *author,
            index,
            error: ChainError::Verify { seq, error },
        })?;
        chain.records[index].receipt.verify(hub_key).map_err(|e| ExportError::Receipt {
            chain: ci,
            author: *author,
            seq,
            reason: format!("does not verify with the hub key: {e}"),
        })
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    if threads < 2 || jobs.len() < 64 {
        return jobs.iter().try_for_each(check);
    }
    let per = jobs.len().div_ceil(threads);
    // Each part's first failure; parts are in file order, so the first one found wins.
    let firsts: Vec<Option<ExportError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().try_for_each(check).err()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Some(ExportError::Parse("a signature check stopped unexpectedly".into()))
                })
            })
            .collect()
    });
    match firsts.into_iter().flatten().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Checks every chain and receipt of `export` (against `pinned_hub_key` if given, else the
/// export's own hub key), the signals chains and the published chains alike, and recomputes
/// the figures from their records. Does not compare them.
pub fn check_records(
    export: &TrackExport,
    pinned_hub_key: Option<&IdentityKey>,
) -> Result<Recomputed, ExportError> {
    if pinned_hub_key.is_some_and(|k| *k != export.hub_key) {
        return Err(ExportError::HubKey);
    }
    let signals =
        check_chains(&export.chains, StreamId::SIGNALS, &export.hub_key, export.cutoff_ms)?;
    let published =
        check_chains(&export.published, StreamId::PUBLISHED, &export.hub_key, export.cutoff_ms)
            .map_err(|e| ExportError::Published(Box::new(e)))?;
    let n_records = signals.iter().chain(&published).map(|(_, r)| r.len()).sum();
    let figures = figures(outcomes(signals.iter().map(|(_, r)| r.as_slice())))?;
    let money = published
        .iter()
        .map(|(author, records)| track_money::money_figures(*author, records))
        .collect::<Result<Vec<_>, _>>()?;
    let gaps: Vec<Option<u64>> = export.chains.iter().map(|c| c.gap_at_seq).collect();
    let trust = crate::trust::score(&crate::trust::inputs(&figures, &gaps, export.cutoff_ms));
    Ok(Recomputed { figures, money, trust, n_records })
}

/// The first figure that differs between `exported` and `recomputed` (numbers compared as
/// decimals, so `1.50` equals `1.5`), fields in key order.
pub fn first_difference(
    exported: &TrackFigures,
    recomputed: &TrackFigures,
) -> Option<FigureDifference> {
    let a = serde_json::to_value(exported).unwrap_or_default();
    let b = serde_json::to_value(recomputed).unwrap_or_default();
    diff_values("figures", &a, &b)
}

/// The first money figure that differs (path `money[i].…`), compared like
/// [`first_difference`].
pub fn first_money_difference(
    exported: &[MoneyFigures],
    recomputed: &[MoneyFigures],
) -> Option<FigureDifference> {
    let a = serde_json::to_value(exported).unwrap_or_default();
    let b = serde_json::to_value(recomputed).unwrap_or_default();
    diff_values("money", &a, &b)
}

/// Whether the export's trust score differs from the recomputed one (path `trust.…`); an
/// export without one has nothing to compare.
pub fn trust_difference(
    exported: Option<&TrustScore>,
    recomputed: &TrustScore,
) -> Option<FigureDifference> {
    let a = serde_json::to_value(exported?).unwrap_or_default();
    let b = serde_json::to_value(recomputed).unwrap_or_default();
    diff_values("trust", &a, &b)
}

fn same_scalar(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    if let (Value::String(x), Value::String(y)) = (a, b)
        && let (Ok(x), Ok(y)) = (x.parse::<Decimal>(), y.parse::<Decimal>())
    {
        return x == y;
    }
    a == b
}

fn diff_values(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Option<FigureDifference> {
    use serde_json::Value;
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "n/a".into(),
        other => other.to_string(),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let vb = y.get(k).unwrap_or(&Value::Null);
                if let Some(d) = diff_values(&format!("{path}.{k}"), va, vb) {
                    return Some(d);
                }
            }
            y.iter()
                .filter(|(k, _)| !x.contains_key(*k))
                .find_map(|(k, vb)| diff_values(&format!("{path}.{k}"), &Value::Null, vb))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if let Some(d) = diff_values(&format!("{path}[{i}]"), va, vb) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| FigureDifference {
                path: format!("{path} (length)"),
                exported: x.len().to_string(),
                recomputed: y.len().to_string(),
            })
        }
        _ if same_scalar(a, b) => None,
        _ => Some(FigureDifference {
            path: path.to_string(),
            exported: show(a),
            recomputed: show(b),
        }),
    }
}

/// Verifies an export file completely: parse, every chain and receipt, then every figure.
pub fn verify_export(
    bytes: &[u8],
    pinned_hub_key: Option<&IdentityKey>,
) -> Result<Verified, ExportError> {
    let export = parse_export(bytes)?;
    let Recomputed { figures, money, trust, n_records } = check_records(&export, pinned_hub_key)?;
    if let Some(d) = first_difference(&export.figures, &figures)
        .or_else(|| first_money_difference(&export.money, &money))
        .or_else(|| trust_difference(export.trust.as_ref(), &trust))
    {
        return Err(ExportError::Figure(d));
    }
    Ok(Verified { export, recomputed: figures, money, trust, n_records })
}

/// A figure as shown on the page and by the verifier: a decimal, or `n/a`.
pub fn show(value: Option<Decimal>) -> String {
    value.map_or_else(|| "n/a".to_string(), |d| d.to_string())
}

/// The headline figures, (label, value), in the order the page and the verifier print them.
pub fn headline(f: &TrackFigures) -> Vec<(&'static str, String)> {
    vec![
        ("signals", f.n_signals.to_string()),
        ("trades (closed, priced)", f.n_trades.to_string()),
        ("open", f.n_open.to_string()),
        ("unpriced", f.n_unpriced.to_string()),
        (
            "wins / losses / breakevens",
            format!("{} / {} / {}", f.n_wins, f.n_losses, f.n_breakevens),
        ),
        ("total R", f.total_r.to_string()),
        ("win rate", show(f.win_rate)),
        ("expectancy R", show(f.expectancy_r)),
        ("profit factor R", show(f.profit_factor_r)),
        ("average win R", show(f.avg_win_r)),
        ("average loss R", show(f.avg_loss_r)),
        ("best R", show(f.best_r)),
        ("worst R", show(f.worst_r)),
        ("max drawdown R", f.max_drawdown_r.to_string()),
        ("longest win streak", f.longest_win_streak.to_string()),
        ("longest loss streak", f.longest_loss_streak.to_string()),
        ("trades per week", show(f.trades_per_week)),
        (
            "average holding time (ms)",
            f.avg_holding_ms.map_or_else(|| "n/a".to_string(), |m| m.to_string()),
        ),
    ]
}

/// What the verifier prints and whether it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierReport {
    /// The lines to print (the figures beside each other, then the verdict).
    pub text: String,
    /// Every check passed and every figure is equal.
    pub ok: bool,
}

/// The verifier's whole run over an export file's bytes: what `tradecast-verify` and
/// `tradecast-hub verify` print. The verdict's last line starts with `OK` or `FAILED`.
pub fn verifier_report(bytes: &[u8], pinned_hub_key: Option<&IdentityKey>) -> VerifierReport {
    use core::fmt::Write as _;
    let mut text = String::new();
    let fail = |mut text: String, e: &ExportError| {
        let _ = writeln!(text, "FAILED: {e}");
        VerifierReport { text, ok: false }
    };
    let export = match parse_export(bytes) {
        Ok(e) => e,
        Err(e) => return fail(text, &e),
    };
    let _ = writeln!(
        text,
        "provider {}, hub key {} (device {}), {} chain(s), cutoff {} ms (delay {} ms)",
        export.provider,
        hex::encode(export.hub_key.to_bytes()),
        export.hub_key.device_id(),
        export.chains.len(),
        export.cutoff_ms,
        export.delay_ms
    );
    let Recomputed { figures: recomputed, money, trust, n_records } =
        match check_records(&export, pinned_hub_key) {
            Ok(r) => r,
            Err(e) => return fail(text, &e),
        };
    let _ = writeln!(
        text,
        "{n_records} records: every signature, seq, previous hash and receipt checks"
    );
    let _ = writeln!(text, "{:<28} {:>16} {:>16}", "figure", "export", "records");
    for ((label, exported), (_, mine)) in
        headline(&export.figures).iter().zip(headline(&recomputed))
    {
        let mark = if *exported == mine { "" } else { "  <- differs" };
        let _ = writeln!(text, "{label:<28} {exported:>16} {mine:>16}{mark}");
    }
    if let Some(d) = first_difference(&export.figures, &recomputed) {
        return fail(text, &ExportError::Figure(d));
    }
    for (i, mine) in money.iter().enumerate() {
        let _ = writeln!(
            text,
            "money of device {} (published stream; {}):",
            mine.author,
            mine.kinds.describe()
        );
        let theirs = export.money.get(i).map(track_money::headline).unwrap_or_default();
        for (j, (label, value)) in track_money::headline(mine).into_iter().enumerate() {
            let exported = theirs.get(j).map_or("(missing)", |(_, v)| v.as_str());
            let mark = if exported == value { "" } else { "  <- differs" };
            let _ = writeln!(text, "  {label:<40} {exported:>16} {value:>16}{mark}");
        }
    }
    if let Some(d) = first_money_difference(&export.money, &money) {
        return fail(text, &ExportError::Figure(d));
    }
    let theirs =
        export.trust.as_ref().map_or_else(|| "(not in file)".into(), |t| t.score.to_string());
    let same = export.trust.as_ref().is_none_or(|t| t.score == trust.score);
    let mark = if same { "" } else { "  <- differs" };
    let _ = writeln!(text, "{:<28} {theirs:>16} {:>16}{mark}", "trust score (of 100)", trust.score);
    for c in &trust.components {
        let value = c.value.map_or_else(|| "n/a".to_string(), |v| v.to_string());
        let label = format!("{} (weight {})", c.name, c.weight);
        let _ = writeln!(text, "  {label:<43} {value:>16}");
    }
    if let Some(d) = trust_difference(export.trust.as_ref(), &trust) {
        return fail(text, &ExportError::Figure(d));
    }
    let _ = writeln!(
        text,
        "OK: {} trades, {} monthly and {} per-symbol rows, {} published account(s), every figure equal to the records",
        recomputed.n_trades,
        recomputed.by_month.len(),
        recomputed.by_symbol.len(),
        money.len()
    );
    VerifierReport { text, ok: true }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EntryKind, Modify, Timeframe};
    use crate::hash::ChainHash;
    use crate::identity::Identity;
    use crate::record::HeaderFields;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn provider() -> Identity {
        Identity::from_secret_bytes(&[7; 32], &[8; 32])
    }

    /// What happens in a test chain, in order.
    #[derive(Clone, Copy)]
    enum Ev {
        /// id, symbol, side, entry, stop, at
        Sig(u8, &'static str, Side, &'static str, &'static str, i64),
        /// id, fraction, price, at
        Close(u8, &'static str, Option<&'static str>, i64),
        /// id, new stop, at
        Mod(u8, &'static str, i64),
    }

    fn chain(who: &Identity, events: &[Ev]) -> Vec<Record> {
        let mut prev = ChainHash::GENESIS;
        let mut out = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            let (body, at) = match *ev {
                Ev::Sig(id, symbol, side, entry, stop, at) => {
                    let (entry, stop) = (d(entry), d(stop));
                    let tp1 = entry + (entry - stop);
                    let body = Body::Signal(Signal {
                        id: SignalId([id; 16]),
                        provider: who.device_id(),
                        strategy_id: "fib-rsi".into(),
                        strategy_version: 1,
                        symbol: symbol.into(),
                        timeframe: Timeframe::H1,
                        side,
                        entry_kind: EntryKind::Market,
                        entry,
                        stop,
                        tp1,
                        tp2: None,
                        bar_time_ms: at - HOUR,
                        expires_at_ms: at + HOUR,
                        leg: 1,
                        indicators: vec![],
                        rr: Decimal::ONE,
                    });
                    (body, at)
                }
                Ev::Close(id, fraction, price, at) => (
                    Body::Close(Close {
                        signal_id: SignalId([id; 16]),
                        fraction: d(fraction),
                        price: price.map(d),
                        reason: "test".into(),
                        at_ms: at,
                    }),
                    at,
                ),
                Ev::Mod(id, stop, at) => (
                    Body::Modify(Modify {
                        signal_id: SignalId([id; 16]),
                        stop: Some(d(stop)),
                        tp1: None,
                        tp2: None,
                        reason: "trail".into(),
                        at_ms: at,
                    }),
                    at,
                ),
            };
            let fields = HeaderFields {
                stream: StreamId::SIGNALS,
                seq: i as u64 + 1,
                prev_hash: prev,
                created_at_ms: at,
            };
            let record = Record::sign(who, fields, &body);
            prev = record.header_hash();
            out.push(record);
        }
        out
    }

    fn figs(events: &[Ev]) -> TrackFigures {
        let records = chain(&provider(), events);
        figures(outcomes([records.as_slice()])).unwrap()
    }

    /// A buy of EURUSD at 1.1000 with a 50-pip stop, closed whole at `price` an hour later.
    fn trade(id: u8, at: i64, price: &'static str) -> [Ev; 2] {
        [
            Ev::Sig(id, "EURUSD", Side::Buy, "1.1000", "1.0950", at),
            Ev::Close(id, "1", Some(price), at + HOUR),
        ]
    }

    fn rs(f: &TrackFigures) -> Vec<Decimal> {
        f.trades.iter().map(|t| t.r).collect()
    }

    #[test]
    fn zero_trades_every_ratio_is_na() {
        let f = figs(&[]);
        assert_eq!((f.n_signals, f.n_trades, f.n_open, f.n_unpriced), (0, 0, 0, 0));
        assert_eq!(f.total_r, Decimal::ZERO);
        for (name, v) in [
            ("win_rate", f.win_rate),
            ("expectancy", f.expectancy_r),
            ("profit_factor", f.profit_factor_r),
            ("avg_win", f.avg_win_r),
            ("avg_loss", f.avg_loss_r),
            ("best", f.best_r),
            ("worst", f.worst_r),
            ("per_week", f.trades_per_week),
        ] {
            assert_eq!(v, None, "{name}");
        }
        assert_eq!(f.avg_holding_ms, None);
        assert_eq!(f.max_drawdown_r, Decimal::ZERO);
        assert!(f.by_symbol.is_empty() && f.by_month.is_empty());
        assert!(headline(&f).iter().all(|(_, v)| !v.contains("NaN")));
    }

    #[test]
    fn one_winning_trade() {
        // +100 pips on a 50-pip risk: 2 R.
        let f = figs(&trade(1, T0, "1.1100"));
        assert_eq!(rs(&f), vec![d("2")]);
        let t = &f.trades[0];
        assert_eq!((t.move_price, t.pips), (d("0.01"), Some(d("100"))));
        assert_eq!((t.signal_seq, t.close_seq), (1, 2));
        assert_eq!(f.n_trades, 1);
        assert_eq!(f.win_rate, Some(d("1")));
        assert_eq!(f.expectancy_r, Some(d("2")));
        assert_eq!(f.profit_factor_r, None, "no loss: n/a");
        assert_eq!((f.avg_win_r, f.avg_loss_r), (Some(d("2")), None));
        assert_eq!((f.best_r, f.worst_r), (Some(d("2")), Some(d("2"))));
        assert_eq!(f.max_drawdown_r, Decimal::ZERO);
        assert_eq!((f.longest_win_streak, f.longest_loss_streak), (1, 0));
        // One hour of history counts as one week.
        assert_eq!(f.trades_per_week, Some(d("1")));
        assert_eq!(f.avg_holding_ms, Some(HOUR));
        assert_eq!(f.by_month.len(), 1);
        assert_eq!(f.by_month[0].key, "2026-01");
        assert_eq!(f.by_symbol[0].key, "EURUSD");
    }

    #[test]
    fn a_losing_streak() {
        // R: +1, -1, -1, -1, +2 — cumulative 1, 0, -1, -2, 0: drawdown 3 from the peak of 1.
        let prices = ["1.1050", "1.0950", "1.0950", "1.0950", "1.1100"];
        let events: Vec<Ev> = prices
            .iter()
            .enumerate()
            .flat_map(|(i, p)| trade(i as u8 + 1, T0 + i as i64 * DAY, p))
            .collect();
        let f = figs(&events);
        assert_eq!(rs(&f), ["1", "-1", "-1", "-1", "2"].map(d).to_vec());
        assert_eq!(f.total_r, Decimal::ZERO);
        assert_eq!(f.win_rate, Some(d("0.4")));
        assert_eq!(f.expectancy_r, Some(Decimal::ZERO));
        assert_eq!(f.profit_factor_r, Some(d("1")));
        assert_eq!((f.avg_win_r, f.avg_loss_r), (Some(d("1.5")), Some(d("-1"))));
        assert_eq!((f.best_r, f.worst_r), (Some(d("2")), Some(d("-1"))));
        assert_eq!(f.max_drawdown_r, d("3"));
        assert_eq!((f.longest_win_streak, f.longest_loss_streak), (1, 3));
        assert_eq!((f.n_wins, f.n_losses, f.n_breakevens), (2, 3, 0));
    }

    #[test]
    fn a_flat_period_leaves_no_month_row_and_counts_in_the_weeks() {
        // One trade on 1 January, one closing on 1 March: 59 days, 8.43 weeks, 2 trades.
        let mut events = trade(1, T0, "1.1100").to_vec();
        events.extend(trade(2, T0 + 59 * DAY - HOUR, "1.0950"));
        let f = figs(&events);
        let months: Vec<&str> = f.by_month.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(months, ["2026-01", "2026-03"]);
        assert_eq!(f.by_month[1].total_r, d("-1"));
        assert_eq!(f.by_month[1].win_rate, Some(Decimal::ZERO));
        // 2 / (59 / 7) = 0.2372…
        assert_eq!(f.trades_per_week, Some(d("0.24")));
        assert_eq!(f.max_drawdown_r, d("1"));
    }

    #[test]
    fn a_breakeven_is_neither_and_ends_streaks() {
        let events = [
            trade(1, T0, "1.1050"),
            // Closed at its entry: 0 R.
            trade(2, T0 + DAY, "1.1000"),
            trade(3, T0 + 2 * DAY, "1.1050"),
        ]
        .concat();
        let mut events = events;
        // A sell of USDJPY at 150.00 with a 1.00 stop, closed at 150.50: -0.5 R, -50 pips.
        events.push(Ev::Sig(4, "USDJPY", Side::Sell, "150.00", "151.00", T0 + 3 * DAY));
        events.push(Ev::Close(4, "1", Some("150.50"), T0 + 3 * DAY + HOUR));
        let f = figs(&events);
        assert_eq!(rs(&f), ["1", "0", "1", "-0.5"].map(d).to_vec());
        assert_eq!((f.n_wins, f.n_losses, f.n_breakevens), (2, 1, 1));
        assert_eq!(f.longest_win_streak, 1, "the breakeven ends the run");
        assert_eq!(f.win_rate, Some(d("0.5")));
        assert_eq!(f.expectancy_r, Some(d("0.375")));
        assert_eq!(f.profit_factor_r, Some(d("4")));
        assert_eq!(f.trades[3].pips, Some(d("-50")));
        assert_eq!(
            f.by_symbol.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(),
            ["EURUSD", "USDJPY"]
        );
        assert_eq!(f.by_symbol[0].expectancy_r, Some(d("0.666667")));
    }

    #[test]
    fn partial_closes_open_unpriced_and_ignored_records() {
        let events = [
            // Half at +1 R, the rest at entry, after a stop move that does not change the risk.
            Ev::Sig(1, "EURUSD", Side::Buy, "1.1000", "1.0900", T0),
            Ev::Mod(1, "1.1000", T0 + HOUR),
            Ev::Close(1, "0.5", Some("1.1100"), T0 + 2 * HOUR),
            Ev::Close(1, "1", Some("1.1000"), T0 + 3 * HOUR),
            // A close after the end counts for nothing.
            Ev::Close(1, "1", Some("1.2000"), T0 + 4 * HOUR),
            // Still open.
            Ev::Sig(2, "XAUUSD", Side::Buy, "2000", "1990", T0),
            Ev::Close(2, "0.5", Some("2010"), T0 + HOUR),
            // Closed without a price: unpriced.
            Ev::Sig(3, "EURUSD", Side::Sell, "1.1000", "1.1100", T0),
            Ev::Close(3, "1", None, T0 + HOUR),
            // A fraction out of range and a close of an unknown signal: nothing.
            Ev::Sig(4, "EURUSD", Side::Buy, "1.1000", "1.0900", T0),
            Ev::Close(4, "1.5", Some("1.2"), T0 + HOUR),
            Ev::Close(9, "1", Some("1.2"), T0 + HOUR),
            // The same id again: ignored.
            Ev::Sig(1, "EURUSD", Side::Sell, "1.1000", "1.1100", T0 + 5 * HOUR),
        ];
        let f = figs(&events);
        assert_eq!((f.n_signals, f.n_trades, f.n_open, f.n_unpriced), (4, 1, 2, 1));
        let t = &f.trades[0];
        assert_eq!((t.r, t.move_price, t.pips), (d("0.5"), d("0.005"), Some(d("50"))));
        assert_eq!(t.closed_at_ms, T0 + 3 * HOUR);
        assert_eq!(pip_size("XAUUSD"), Some(d("0.0001")), "six letters: read as a pair");
        assert_eq!(pip_size("US30"), None);
    }

    fn export_of(who: &Identity, hub: &Identity, records: &[Record]) -> TrackExport {
        let f = figures(outcomes([records])).unwrap();
        TrackExport {
            format: EXPORT_FORMAT.into(),
            provider: "provider-1".into(),
            hub_key: hub.identity_key(),
            generated_at_ms: T0 + 30 * DAY,
            delay_ms: HOUR,
            cutoff_ms: T0 + 30 * DAY - HOUR,
            chains: vec![exported(who, hub, records)],
            figures: f,
            published: vec![],
            money: vec![],
            trust: None,
        }
    }

    fn exported(who: &Identity, hub: &Identity, records: &[Record]) -> ExportedChain {
        ExportedChain {
            author_key: who.identity_key(),
            records: records
                .iter()
                .map(|r| ExportedRecord {
                    record: data_encoding::BASE64.encode(&r.encode()),
                    receipt: Receipt::sign(hub, r, r.header().created_at_ms + 5),
                })
                .collect(),
            gap_at_seq: None,
        }
    }

    /// The sample export with `who`'s published stream: a deposit of 1000, equity 1000, one
    /// trade of +50 − 1 commission, equity 1049 a day later.
    fn sample_with_money() -> (Identity, Identity, Vec<Record>, TrackExport) {
        use crate::domain::BalanceKind;
        use crate::track_money::tests::{Ev as M, published};
        let (who, hub, records) = sample();
        let mut export = export_of(&who, &hub, &records);
        let money = published(
            &who,
            &[
                M::Op(1, BalanceKind::Deposit, "1000", T0),
                M::Eq(T0 + HOUR, "1000", "1000"),
                M::Trade(5, "EURUSD", T0 + HOUR, T0 + 2 * HOUR, "50", "-1", "0"),
                M::Eq(T0 + DAY, "1049", "1049"),
            ],
        );
        export.published = vec![exported(&who, &hub, &money)];
        export.money = vec![track_money::money_figures(who.device_id(), &money).unwrap()];
        (who, hub, money, export)
    }

    #[test]
    fn the_signatures_checked_on_every_core_fail_at_the_first_record_in_file_order() {
        // 60 trades: 120 records, enough for the parallel signature pass.
        let who = provider();
        let hub = Identity::from_secret_bytes(&[9; 32], &[10; 32]);
        let other_hub = Identity::from_secret_bytes(&[11; 32], &[12; 32]);
        let events: Vec<Ev> =
            (0..60u8).flat_map(|i| trade(i, T0 + i64::from(i) * 2 * HOUR, "1.1100")).collect();
        let records = chain(&who, &events);
        let honest = export_of(&who, &hub, &records);
        assert_eq!(verify(&honest).unwrap().n_records, 120);
        // A receipt by another hub (a signature failure) at index `i`.
        let foreign = |e: &mut TrackExport, i: usize| {
            let r = &records[i];
            e.chains[0].records[i].receipt = Receipt::sign(&other_hub, r, r.header().created_at_ms);
        };
        // Another record's receipt (a structural failure) at index `i`.
        let misfiled = |e: &mut TrackExport, i: usize| {
            e.chains[0].records[i].receipt = e.chains[0].records[i - 1].receipt;
        };
        let seq_of = |err: ExportError| match err {
            ExportError::Receipt { seq, reason, .. } => (seq, reason),
            other => panic!("{other}"),
        };
        // Signature failures at 9 and 100: the earlier one, whichever core checked it.
        let mut e = honest.clone();
        foreign(&mut e, 100);
        foreign(&mut e, 9);
        let (seq, reason) = seq_of(verify(&e).unwrap_err());
        assert_eq!(seq, 10, "{reason}");
        assert!(reason.starts_with("does not verify with the hub key"), "{reason}");
        // A signature failure before a structural one: the signature's.
        let mut e = honest.clone();
        foreign(&mut e, 79);
        misfiled(&mut e, 89);
        assert_eq!(seq_of(verify(&e).unwrap_err()).0, 80);
        // A structural failure before a signature failure: the structural one.
        let mut e = honest.clone();
        misfiled(&mut e, 89);
        foreign(&mut e, 110);
        let (seq, reason) = seq_of(verify(&e).unwrap_err());
        assert_eq!((seq, reason.as_str()), (90, "is for another record"));
        // The same record's signature is checked before its receipt's fields.
        let mut e = honest;
        foreign(&mut e, 89);
        let mut wrong = e.chains[0].records[88].receipt;
        wrong.signature = e.chains[0].records[89].receipt.signature;
        e.chains[0].records[89].receipt = wrong;
        assert!(seq_of(verify(&e).unwrap_err()).1.starts_with("does not verify"));
    }

    #[test]
    fn the_trust_score_in_an_export_is_recomputed_and_a_changed_one_is_named() {
        let (who, hub, records) = sample();
        let mut honest = export_of(&who, &hub, &records);
        let want =
            crate::trust::score(&crate::trust::inputs(&honest.figures, &[None], honest.cutoff_ms));
        honest.trust = Some(want.clone());
        let v = verify(&honest).unwrap();
        assert_eq!(v.trust, want);
        let report = verifier_report(&serde_json::to_vec(&honest).unwrap(), None);
        assert!(report.ok, "{}", report.text);
        let line = "trust score (of 100)";
        assert!(
            report
                .text
                .lines()
                .any(|l| l.starts_with(line) && l.matches(&want.score.to_string()).count() == 2),
            "{}",
            report.text
        );
        assert!(report.text.contains("chain continuity (weight 15)"), "{}", report.text);

        // The page's score changed in the file: named, exit 1.
        let mut changed = honest.clone();
        if let Some(t) = changed.trust.as_mut() {
            t.score = t.score.wrapping_add(7) % 101;
        }
        let err = verify(&changed).unwrap_err();
        assert!(err.to_string().starts_with("trust.score: the export says"), "{err}");
        let report = verifier_report(&serde_json::to_vec(&changed).unwrap(), None);
        assert!(!report.ok && report.text.contains("<- differs"), "{}", report.text);

        // A declared gap lowers chain continuity, and must sit right after the last record.
        let mut gapped = honest.clone();
        gapped.chains[0].gap_at_seq = Some(records.len() as u64 + 1);
        let err = verify(&gapped).unwrap_err();
        assert!(err.to_string().starts_with("trust."), "the score the file says had no gap: {err}");
        let recomputed = crate::trust::score(&crate::trust::inputs(
            &gapped.figures,
            &[Some(records.len() as u64 + 1)],
            gapped.cutoff_ms,
        ));
        gapped.trust = Some(recomputed);
        assert!(verify(&gapped).is_ok());
        gapped.chains[0].gap_at_seq = Some(2);
        let err = verify(&gapped).unwrap_err();
        assert!(err.to_string().contains("declares a gap at seq 2"), "{err}");

        // An export from before the score: nothing to compare, the score is still printed.
        let mut old = honest;
        old.trust = None;
        let report = verifier_report(&serde_json::to_vec(&old).unwrap(), None);
        assert!(report.ok && report.text.contains("(not in file)"), "{}", report.text);
    }

    #[test]
    fn an_export_with_a_published_stream_verifies_and_tampering_is_named() {
        let (_, _, money, honest) = sample_with_money();
        let v = verify(&honest).unwrap();
        assert_eq!(v.n_records, 10);
        assert_eq!(v.money, honest.money);
        assert_eq!(v.money[0].twr_pct, Some(d("4.9")));
        assert_eq!(v.money[0].net_of_trades, d("49"));
        let report = verifier_report(&serde_json::to_vec(&honest).unwrap(), None);
        assert!(report.ok, "{}", report.text);
        assert!(report.text.contains("1 published account(s)"), "{}", report.text);
        assert!(
            report.text.contains(
                "publishes closed trades, equity points and balance operations; not daily summaries"
            ),
            "{}",
            report.text
        );

        let check = |export: TrackExport, expect: &str| {
            let e = verify(&export).unwrap_err().to_string();
            assert!(e.contains(expect), "{e:?} should contain {expect:?}");
        };
        // A flipped byte in a published record breaks its signature.
        let mut flipped = honest.clone();
        let mut bytes = money[2].encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        flipped.published[0].records[2].record = data_encoding::BASE64.encode(&bytes);
        check(flipped, "published stream: chain 0");
        // A dropped published record.
        let mut dropped = honest.clone();
        dropped.published[0].records.remove(1);
        check(dropped, "published stream: chain 0");
        let mut dropped = honest.clone();
        dropped.published[0].records.remove(1);
        check(dropped, "expected seq 2, got 3");
        // A receipt of the published stream from another hub key.
        let mut other = honest.clone();
        let stranger = Identity::from_secret_bytes(&[11; 32], &[12; 32]);
        other.published[0].records[3].receipt = Receipt::sign(&stranger, &money[3], T0);
        check(other, "published stream: chain 0 (author");
        // A signals chain passed off as the published one: wrong stream.
        let mut wrong = honest.clone();
        wrong.published[0] = wrong.chains[0].clone();
        check(wrong, "published stream: chain 0");
        // Changed money figures.
        let mut figure = honest.clone();
        figure.money[0].twr_pct = Some(d("9"));
        check(figure, "money[0].twr_pct: the export says 9, the records give 4.9");
        let mut dd = honest.clone();
        dd.money[0].max_drawdown = d("1");
        check(dd, "money[0].max_drawdown: the export says 1, the records give 0");
        let mut gone = honest.clone();
        gone.money.clear();
        check(gone, "money (length): the export says 0, the records give 1");
        let report = verifier_report(
            &serde_json::to_vec(&{
                let mut e = honest.clone();
                e.money[0].win_rate = Some(d("0.5"));
                e
            })
            .unwrap(),
            None,
        );
        assert!(!report.ok && report.text.contains("<- differs"), "{}", report.text);
    }

    #[test]
    fn an_export_written_before_the_money_figures_still_verifies() {
        let (who, hub, records) = sample();
        let export = export_of(&who, &hub, &records);
        let mut value = serde_json::to_value(&export).unwrap();
        let object = value.as_object_mut().unwrap();
        assert!(object.remove("published").is_some() && object.remove("money").is_some());
        let v = verify_export(&serde_json::to_vec(&value).unwrap(), None).unwrap();
        assert!(v.money.is_empty() && v.export.published.is_empty());
    }

    fn sample() -> (Identity, Identity, Vec<Record>) {
        let who = provider();
        let hub = Identity::from_secret_bytes(&[9; 32], &[10; 32]);
        let events = [
            trade(1, T0, "1.1100"),
            trade(2, T0 + DAY, "1.0950"),
            trade(3, T0 + 2 * DAY, "1.1000"),
        ]
        .concat();
        let records = chain(&who, &events);
        (who, hub, records)
    }

    fn verify(export: &TrackExport) -> Result<Verified, ExportError> {
        verify_export(&serde_json::to_vec(export).unwrap(), None)
    }

    #[test]
    fn an_honest_export_verifies() {
        let (who, hub, records) = sample();
        let export = export_of(&who, &hub, &records);
        let v = verify(&export).unwrap();
        assert_eq!(v.n_records, 6);
        assert_eq!(v.recomputed, export.figures);
        assert_eq!(v.recomputed.n_trades, 3);
        // Pinning the right key passes, another fails.
        let bytes = serde_json::to_vec(&export).unwrap();
        assert!(verify_export(&bytes, Some(&hub.identity_key())).is_ok());
        let e = verify_export(&bytes, Some(&who.identity_key())).unwrap_err();
        assert_eq!(e, ExportError::HubKey);
    }

    #[test]
    fn tampering_fails_with_a_message_naming_it() {
        let (who, hub, records) = sample();
        let honest = export_of(&who, &hub, &records);
        let check = |export: TrackExport, expect: &str| {
            let e = verify(&export).unwrap_err().to_string();
            assert!(e.contains(expect), "{e:?} should contain {expect:?}");
        };

        // A flipped byte in a record's body (its last byte) breaks the signature.
        let mut flipped = honest.clone();
        let mut bytes = records[2].encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        flipped.chains[0].records[2].record = data_encoding::BASE64.encode(&bytes);
        check(flipped, "chain 0");

        // A dropped record: a seq gap.
        let mut dropped = honest.clone();
        dropped.chains[0].records.remove(3);
        check(dropped, "expected seq 4, got 5");

        // A reordered pair.
        let mut reordered = honest.clone();
        reordered.chains[0].records.swap(1, 2);
        check(reordered, "expected seq 2, got 3");

        // A receipt signed by another hub key.
        let mut other = honest.clone();
        let stranger = Identity::from_secret_bytes(&[11; 32], &[12; 32]);
        other.chains[0].records[4].receipt = Receipt::sign(&stranger, &records[4], T0);
        check(other, "seq 5: receipt does not verify with the hub key");

        // A receipt of another record.
        let mut moved = honest.clone();
        moved.chains[0].records[4].receipt = moved.chains[0].records[3].receipt;
        check(moved, "seq 5: receipt is for another record");

        // A changed figure.
        let mut figure = honest.clone();
        figure.figures.win_rate = Some(d("0.9"));
        check(figure, "figures.win_rate: the export says 0.9, the records give 0.3333");
        let mut month = honest.clone();
        month.figures.by_month[0].total_r = d("7");
        check(month, "figures.by_month[0].total_r: the export says 7, the records give 1");
        let mut trade = honest.clone();
        trade.figures.trades.pop();
        check(trade, "figures.trades (length)");

        // A record received after the cutoff.
        let mut late = honest.clone();
        late.cutoff_ms = T0;
        check(late, "after the cutoff");

        // Not an export at all, or another format.
        assert!(matches!(verify_export(b"{\"x\":1", None), Err(ExportError::Parse(_))));
        let mut format = honest;
        format.format = "v0".into();
        check(format, "unknown export format");
    }

    #[test]
    fn equal_decimals_are_equal_figures() {
        let (who, hub, records) = sample();
        let export = export_of(&who, &hub, &records);
        let text = serde_json::to_string(&export)
            .unwrap()
            .replace("\"win_rate\":\"0.3333\"", "\"win_rate\":\"0.33330\"");
        assert!(text.contains("0.33330"));
        assert!(verify_export(text.as_bytes(), None).is_ok());
    }

    #[test]
    fn drawdown_and_months_by_hand() {
        for (rs, dd) in [
            (vec![], "0"),
            (vec!["-1"], "1"),
            (vec!["2", "-1", "-1", "3", "-4"], "4"),
            (vec!["1", "1", "1"], "0"),
        ] {
            assert_eq!(max_drawdown(rs.iter().map(|r| d(r))).unwrap(), d(dd), "{rs:?}");
        }
        for (at, month) in [
            (T0, "2026-01"),
            (T0 - 1, "2025-12"),
            (0, "1970-01"),
            (-1, "1969-12"),
            (951_782_400_000, "2000-02"), // 2000-02-29
            (951_868_800_000, "2000-03"),
            (T0 + 59 * DAY, "2026-03"),
        ] {
            assert_eq!(month_of(at), month, "{at}");
        }
    }
}

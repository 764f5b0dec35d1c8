//! Money figures of one account from what its trader chose to publish: the pure engine the hub
//! shows beside the R record ([`crate::track`]) and the offline verifier recomputes from the
//! records alone.
//!
//! # Basis: one device's published stream
//!
//! The input is one author device's chain on [`StreamId::PUBLISHED`] (unsealed, opt-in per data
//! kind on the node): `TradeClosed`, `EquityPoint`, `BalanceOperation` and `Summary` records.
//! Other streams, sealed and undecodable records count for nothing. Money is in the account's
//! deposit currency (the last `currency` a balance operation or summary named). Sealed private
//! records are never read: a figure whose data kind is not published is n/a, and
//! [`PublishedKinds`] says which kinds are.
//!
//! - A trade (one `TradeClosed`) counts once per `ticket` (the first record wins), a balance
//!   operation once per `deal`; every balance operation (deposit, withdrawal, credit, bonus,
//!   correction) is a **cash flow**, never performance.
//! - Equity points are taken in (`at_ms`, `seq`) order; a cash flow at `at_ms` t is part of
//!   every equity point at t or later.
//!
//! # Equity figures
//!
//! With E_i the equity of point i and C_i the sum of cash flows at or before it:
//! - **sub-period return** r_i = E_i / (E_{i−1} + C_i − C_{i−1}) − 1: the sub-periods are the
//!   intervals between consecutive equity points, so every deposit and withdrawal splits the
//!   curve, and a flow joins the capital at the start of the interval it happened in; a
//!   denominator ≤ 0 makes every return figure n/a. Each r is rounded to [`RETURN_DP`] places;
//! - **time-weighted return** = Π (1 + r_i) − 1, in % ([`PCT_DP`] places);
//! - **net profit** = E_last − E_first − (C_last − C_first) (cash flows removed);
//!   **absolute gain** = net profit / (E_first + deposits after the first point) in %, where
//!   deposits are the positive cash flows;
//! - **drawdown** at a point = peak − E, where the peak is the running maximum of equity,
//!   moved by every cash flow (a withdrawal of 500 lowers it by 500, so it is no loss, and a
//!   deposit does not hide a drawdown); in % of that peak (n/a for a peak ≤ 0). **Max
//!   drawdown** is the largest of each (money and % may come from different points);
//!   **current** is at the last point;
//! - **monthly return** (UTC month of the sub-period's end) = Π (1 + r_i) − 1 over its
//!   sub-periods, in %.
//!
//! # Daily returns and the ratios
//!
//! The daily return of UTC day k is taken from the last equity point of each day that has one:
//! d_k = D_k / (D_{k−1} + flows between them) − 1 (the sub-period formula over days; days
//! without a point have no return). With n ≥ 2 daily returns, mean m, sample standard deviation
//! s (n − 1), downside deviation s⁻ = √(Σ min(d, 0)² / n) and a risk-free rate of 0:
//! - **Sharpe** = m / s × √252; **Sortino** = m / s⁻ × √252;
//! - **Calmar** = (m × 252) / (max drawdown % / 100) (the arithmetic annualised return);
//! - each is n/a with fewer than 2 returns or a zero denominator, rounded to [`RATIO_DP`]
//!   places; square roots are a Decimal Newton iteration to 20 places.
//!
//! # Trade figures, over trades in closing order
//!
//! net = profit + commission + swap; a win has net > 0, a loss net < 0, a breakeven 0:
//! - win rate = wins / trades; profit factor = Σ net of wins / |Σ net of losses| (n/a without a
//!   loss); both [`RATIO_DP`] places;
//! - expectancy = Σ net / trades; average win (loss) = Σ net of wins (losses) / wins (losses);
//!   [`MONEY_DP`] places; best / worst = the largest / smallest net;
//! - streaks, trades per week and holding time as in [`crate::track`] (the times are the
//!   trade's `opened_at_ms` and `closed_at_ms`);
//! - per symbol, per weekday, per hour of day, per month and per weekday × hour (the heatmap):
//!   trades, wins, losses, Σ net and win rate, all by the closing time in UTC.
//!
//! Every ratio without a denominator is `None` ("n/a"), never NaN. No I/O here.

use std::collections::{BTreeMap, HashSet};

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::domain::{BalanceKind, EquityPoint, TradeClosed};
use crate::identity::DeviceId;
use crate::record::{Body, Record, StreamId};
use crate::track::{RATIO_DP, TrackError, WEEK_MS, month_of};

/// Decimal places of money averages (expectancy, average win and loss).
pub const MONEY_DP: u32 = 2;
/// Decimal places of every percentage.
pub const PCT_DP: u32 = 4;
/// Decimal places of each sub-period and daily return (a fraction).
pub const RETURN_DP: u32 = 12;
/// Trading days a year: the annualisation of the daily ratios.
pub const TRADING_DAYS: u32 = 252;
/// The `basis` of figures computed here.
pub const BASIS_PUBLISHED_MONEY: &str = "published-stream-money";
/// One day, ms.
pub const DAY_MS: i64 = 24 * 3600 * 1000;
/// The weekdays' names, Monday first (the index of [`HeatCell::weekday`]).
pub const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// How many records of each kind the device published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKinds {
    /// `TradeClosed` records (duplicates included).
    pub trades_closed: u64,
    /// `EquityPoint` records.
    pub equity_points: u64,
    /// `BalanceOperation` records (duplicates included).
    pub balance_operations: u64,
    /// `Summary` records.
    pub summaries: u64,
}

impl PublishedKinds {
    /// Nothing published at all.
    pub fn is_empty(&self) -> bool {
        *self == PublishedKinds::default()
    }

    /// "publishes closed trades and equity points; not balance operations or daily summaries".
    pub fn describe(&self) -> String {
        let all = [
            ("closed trades", self.trades_closed),
            ("equity points", self.equity_points),
            ("balance operations", self.balance_operations),
            ("daily summaries", self.summaries),
        ];
        let join = |names: Vec<&str>, word: &str| match names.as_slice() {
            [] => String::new(),
            [one] => (*one).to_string(),
            [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
        };
        let yes: Vec<&str> = all.iter().filter(|(_, n)| *n > 0).map(|(k, _)| *k).collect();
        let no: Vec<&str> = all.iter().filter(|(_, n)| *n == 0).map(|(k, _)| *k).collect();
        match (yes.is_empty(), no.is_empty()) {
            (true, _) => "publishes nothing".to_string(),
            (false, true) => format!("publishes {}", join(yes, "and")),
            (false, false) => format!("publishes {}; not {}", join(yes, "and"), join(no, "or")),
        }
    }
}

/// One point of the equity and balance curves, with the drawdown there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The point's `at_ms`.
    pub at_ms: i64,
    /// Balance.
    pub balance: Decimal,
    /// Equity.
    pub equity: Decimal,
    /// Flow-adjusted peak − equity.
    pub drawdown: Decimal,
    /// The drawdown in % of the peak.
    pub drawdown_pct: Option<Decimal>,
}

/// One cash flow (a balance operation), with the running sum of all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashFlow {
    /// When.
    pub at_ms: i64,
    /// The MT5 deal.
    pub deal: u64,
    /// Deposit, withdrawal, …
    pub kind: BalanceKind,
    /// Signed amount.
    pub amount: Decimal,
    /// Σ amount of every flow so far (the balance curve's steps).
    pub cumulative: Decimal,
}

/// The trades of one group (symbol, weekday, hour or month).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyGroup {
    /// The symbol, `Mon`…`Sun`, `00`…`23` or `YYYY-MM`.
    pub key: String,
    /// Trades.
    pub n_trades: u64,
    /// Net > 0.
    pub n_wins: u64,
    /// Net < 0.
    pub n_losses: u64,
    /// Σ net.
    pub net: Decimal,
    /// wins / trades.
    pub win_rate: Option<Decimal>,
}

/// One month: its trades and its time-weighted return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthFigures {
    /// `YYYY-MM`, UTC.
    pub key: String,
    /// Trades closed in the month.
    pub n_trades: u64,
    /// Σ net of those trades.
    pub net: Decimal,
    /// wins / trades.
    pub win_rate: Option<Decimal>,
    /// Π (1 + r) − 1 over the sub-periods ending in the month, %.
    pub return_pct: Option<Decimal>,
}

/// One heatmap cell: trades closed on a weekday in an hour (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeatCell {
    /// 0 = Monday … 6 = Sunday.
    pub weekday: u8,
    /// 0…23.
    pub hour: u8,
    /// Trades.
    pub n_trades: u64,
    /// Σ net.
    pub net: Decimal,
}

/// Everything computed from one device's published stream (formulas in the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyFigures {
    /// [`BASIS_PUBLISHED_MONEY`].
    pub basis: String,
    /// The device whose stream this is.
    pub author: DeviceId,
    /// The deposit currency, when a record named it.
    pub currency: Option<String>,
    /// What the device publishes.
    pub kinds: PublishedKinds,
    /// Equity at the first point.
    pub first_equity: Option<Decimal>,
    /// Equity at the last point.
    pub last_equity: Option<Decimal>,
    /// Balance at the last point.
    pub last_balance: Option<Decimal>,
    /// Σ positive cash flows (all of them).
    pub deposits: Decimal,
    /// Σ negative cash flows (all of them, negative).
    pub withdrawals: Decimal,
    /// E_last − E_first − flows between.
    pub net_profit: Option<Decimal>,
    /// net profit / (E_first + deposits between), %.
    pub absolute_gain_pct: Option<Decimal>,
    /// Time-weighted return, %.
    pub twr_pct: Option<Decimal>,
    /// Largest drawdown, money.
    pub max_drawdown: Decimal,
    /// Largest drawdown, %.
    pub max_drawdown_pct: Option<Decimal>,
    /// Drawdown at the last point, money.
    pub current_drawdown: Decimal,
    /// Drawdown at the last point, %.
    pub current_drawdown_pct: Option<Decimal>,
    /// Daily returns.
    pub n_daily_returns: u64,
    /// Their mean, %.
    pub mean_daily_return_pct: Option<Decimal>,
    /// m / s × √252.
    pub sharpe: Option<Decimal>,
    /// m / s⁻ × √252.
    pub sortino: Option<Decimal>,
    /// m × 252 / max drawdown.
    pub calmar: Option<Decimal>,
    /// Distinct trades.
    pub n_trades: u64,
    /// Net > 0.
    pub n_wins: u64,
    /// Net < 0.
    pub n_losses: u64,
    /// Net = 0.
    pub n_breakevens: u64,
    /// Σ net.
    pub net_of_trades: Decimal,
    /// Σ net of wins.
    pub gross_profit: Decimal,
    /// Σ net of losses.
    pub gross_loss: Decimal,
    /// Σ commission.
    pub commission: Decimal,
    /// Σ swap.
    pub swap: Decimal,
    /// wins / trades.
    pub win_rate: Option<Decimal>,
    /// gross profit / |gross loss|.
    pub profit_factor: Option<Decimal>,
    /// Σ net / trades.
    pub expectancy: Option<Decimal>,
    /// gross profit / wins.
    pub avg_win: Option<Decimal>,
    /// gross loss / losses.
    pub avg_loss: Option<Decimal>,
    /// Largest net.
    pub best: Option<Decimal>,
    /// Smallest net.
    pub worst: Option<Decimal>,
    /// Most consecutive wins.
    pub longest_win_streak: u64,
    /// Most consecutive losses.
    pub longest_loss_streak: u64,
    /// Trades per week.
    pub trades_per_week: Option<Decimal>,
    /// Mean of close − open, ms.
    pub avg_holding_ms: Option<i64>,
    /// Per symbol, by symbol.
    pub by_symbol: Vec<MoneyGroup>,
    /// Per weekday of the close, Monday first (days without trades left out).
    pub by_weekday: Vec<MoneyGroup>,
    /// Per hour of the close, `00` first (hours without trades left out).
    pub by_hour: Vec<MoneyGroup>,
    /// Per month, oldest first: months with a trade or a sub-period end.
    pub by_month: Vec<MonthFigures>,
    /// Weekday × hour cells with a trade.
    pub heatmap: Vec<HeatCell>,
    /// The equity and balance curves with the drawdown, in order.
    pub curve: Vec<CurvePoint>,
    /// Every cash flow, in order.
    pub cash_flows: Vec<CashFlow>,
}

fn round(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero).normalize()
}

fn ratio(a: Decimal, b: Decimal, dp: u32) -> Result<Option<Decimal>, TrackError> {
    if b.is_zero() {
        return Ok(None);
    }
    a.checked_div(b).map(|q| Some(round(q, dp))).ok_or(TrackError::Overflow)
}

fn add(a: Decimal, b: Decimal) -> Result<Decimal, TrackError> {
    a.checked_add(b).ok_or(TrackError::Overflow)
}

fn sum(values: impl IntoIterator<Item = Decimal>) -> Result<Decimal, TrackError> {
    values.into_iter().try_fold(Decimal::ZERO, add)
}

/// `x × 100` rounded to [`PCT_DP`].
fn pct(x: Decimal) -> Result<Decimal, TrackError> {
    x.checked_mul(Decimal::ONE_HUNDRED).map(|p| round(p, PCT_DP)).ok_or(TrackError::Overflow)
}

/// √x by Newton's iteration, to 20 places; `None` for x < 0.
pub fn sqrt(x: Decimal) -> Option<Decimal> {
    if x.is_sign_negative() && !x.is_zero() {
        return None;
    }
    if x.is_zero() {
        return Some(Decimal::ZERO);
    }
    let two = Decimal::TWO;
    let mut g = if x > Decimal::ONE { x } else { Decimal::ONE };
    for _ in 0..200 {
        let next = g.checked_add(x.checked_div(g)?)?.checked_div(two)?;
        if (next - g).abs() <= Decimal::new(1, 24) {
            return Some(round(next, 20));
        }
        g = next;
    }
    Some(round(g, 20))
}

/// 0 = Monday … 6 = Sunday (UTC) of a unix-ms instant (1970-01-01 was a Thursday).
pub fn weekday_of(at_ms: i64) -> u8 {
    (at_ms.div_euclid(DAY_MS) + 3).rem_euclid(7) as u8
}

/// 0…23 (UTC) of a unix-ms instant.
pub fn hour_of(at_ms: i64) -> u8 {
    (at_ms.rem_euclid(DAY_MS) / 3_600_000) as u8
}

/// `(a_prev + flow)`-based return of one sub-period, rounded to [`RETURN_DP`]; `None` when the
/// capital at its start is not positive.
fn sub_return(prev: Decimal, flow: Decimal, now: Decimal) -> Option<Decimal> {
    let start = prev.checked_add(flow)?;
    if start <= Decimal::ZERO {
        return None;
    }
    Some(round(now.checked_div(start)?.checked_sub(Decimal::ONE)?, RETURN_DP))
}

struct Trade {
    t: TradeClosed,
    seq: u64,
    net: Decimal,
}

struct Flow {
    at_ms: i64,
    seq: u64,
    deal: u64,
    kind: BalanceKind,
    amount: Decimal,
}

struct Acc {
    n: u64,
    wins: u64,
    losses: u64,
    net: Decimal,
}

impl Acc {
    fn new() -> Acc {
        Acc { n: 0, wins: 0, losses: 0, net: Decimal::ZERO }
    }
    fn push(&mut self, net: Decimal) -> Result<(), TrackError> {
        self.n += 1;
        self.wins += u64::from(net > Decimal::ZERO);
        self.losses += u64::from(net < Decimal::ZERO);
        self.net = add(self.net, net)?;
        Ok(())
    }
    fn group(self, key: String) -> Result<MoneyGroup, TrackError> {
        Ok(MoneyGroup {
            key,
            n_trades: self.n,
            n_wins: self.wins,
            n_losses: self.losses,
            net: self.net.normalize(),
            win_rate: ratio(Decimal::from(self.wins), Decimal::from(self.n), RATIO_DP)?,
        })
    }
}

fn longest_run(nets: &[Decimal], pred: impl Fn(Decimal) -> bool) -> u64 {
    let (mut best, mut run) = (0u64, 0u64);
    for n in nets {
        run = if pred(*n) { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// The money figures of `author`'s published chain `records` (in `seq` order; records of other
/// authors and streams count for nothing).
pub fn money_figures(author: DeviceId, records: &[Record]) -> Result<MoneyFigures, TrackError> {
    let mut kinds = PublishedKinds::default();
    let mut currency = None;
    let mut trades: Vec<Trade> = Vec::new();
    let mut tickets = HashSet::new();
    let mut flows: Vec<Flow> = Vec::new();
    let mut deals = HashSet::new();
    let mut points: Vec<(u64, EquityPoint)> = Vec::new();
    for record in records {
        let header = record.header();
        if header.stream != StreamId::PUBLISHED || header.sealed || header.author != author {
            continue;
        }
        match record.body() {
            Ok(Body::TradeClosed(t)) => {
                kinds.trades_closed += 1;
                if tickets.insert(t.ticket) {
                    let net = add(add(t.profit, t.commission)?, t.swap)?;
                    trades.push(Trade { t, seq: header.seq, net });
                }
            }
            Ok(Body::EquityPoint(p)) => {
                kinds.equity_points += 1;
                points.push((header.seq, p));
            }
            Ok(Body::BalanceOperation(op)) => {
                kinds.balance_operations += 1;
                currency = Some(op.currency.clone());
                if deals.insert(op.deal) {
                    flows.push(Flow {
                        at_ms: op.at_ms,
                        seq: header.seq,
                        deal: op.deal,
                        kind: op.kind,
                        amount: op.amount,
                    });
                }
            }
            Ok(Body::Summary(s)) => {
                kinds.summaries += 1;
                if s.currency.is_some() {
                    currency = s.currency;
                }
            }
            _ => {}
        }
    }
    trades.sort_by_key(|t| (t.t.closed_at_ms, t.seq));
    flows.sort_by_key(|f| (f.at_ms, f.seq));
    points.sort_by_key(|(seq, p)| (p.at_ms, *seq));

    let mut f = equity_figures(author, &points, &flows)?;
    f.currency = currency;
    f.kinds = kinds;
    trade_figures(&mut f, &trades)?;
    Ok(f)
}

/// The equity side: curve, cash flows, returns, drawdowns, ratios.
fn equity_figures(
    author: DeviceId,
    points: &[(u64, EquityPoint)],
    flows: &[Flow],
) -> Result<MoneyFigures, TrackError> {
    let mut cash_flows = Vec::with_capacity(flows.len());
    let mut cumulative = Decimal::ZERO;
    for fl in flows {
        cumulative = add(cumulative, fl.amount)?;
        cash_flows.push(CashFlow {
            at_ms: fl.at_ms,
            deal: fl.deal,
            kind: fl.kind,
            amount: fl.amount.normalize(),
            cumulative: cumulative.normalize(),
        });
    }
    let deposits = sum(flows.iter().map(|f| f.amount).filter(|a| *a > Decimal::ZERO))?;
    let withdrawals = sum(flows.iter().map(|f| f.amount).filter(|a| *a < Decimal::ZERO))?;

    // Walk the points, applying every flow at or before each.
    let mut curve = Vec::with_capacity(points.len());
    let mut next_flow = 0usize;
    let mut c = Decimal::ZERO; // Σ flows applied so far
    let mut deposits_after_first = Decimal::ZERO;
    let mut peak: Option<Decimal> = None;
    let mut prev: Option<(Decimal, Decimal)> = None; // (equity, C) of the previous point
    let mut growth = Some(Decimal::ONE);
    let mut months: BTreeMap<String, Option<Decimal>> = BTreeMap::new();
    let mut days: Vec<(i64, Decimal, Decimal)> = Vec::new(); // (day, last equity, C there)
    let (mut max_dd, mut max_dd_pct) = (Decimal::ZERO, None::<Decimal>);
    let mut first_c = Decimal::ZERO;
    for (_, p) in points {
        while let Some(fl) = flows.get(next_flow).filter(|fl| fl.at_ms <= p.at_ms) {
            c = add(c, fl.amount)?;
            if prev.is_some() && fl.amount > Decimal::ZERO {
                deposits_after_first = add(deposits_after_first, fl.amount)?;
            }
            if let Some(pk) = peak.as_mut() {
                *pk = add(*pk, fl.amount)?;
            }
            next_flow += 1;
        }
        match prev {
            Some((e_prev, c_prev)) => {
                let r = sub_return(e_prev, c - c_prev, p.equity);
                let month = months.entry(month_of(p.at_ms)).or_insert(Some(Decimal::ONE));
                let step = |g: Option<Decimal>| {
                    g.and_then(|g| g.checked_mul(Decimal::ONE.checked_add(r?)?))
                };
                growth = step(growth);
                *month = step(*month);
            }
            None => first_c = c,
        }
        let pk = peak.map_or(p.equity, |pk| pk.max(p.equity));
        peak = Some(pk);
        let dd = pk - p.equity;
        let dd_pct =
            if pk > Decimal::ZERO { ratio(dd, pk, 12)?.map(pct).transpose()? } else { None };
        max_dd = max_dd.max(dd);
        max_dd_pct = match (max_dd_pct, dd_pct) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let day = p.at_ms.div_euclid(DAY_MS);
        match days.last_mut() {
            Some(last) if last.0 == day => *last = (day, p.equity, c),
            _ => days.push((day, p.equity, c)),
        }
        curve.push(CurvePoint {
            at_ms: p.at_ms,
            balance: p.balance.normalize(),
            equity: p.equity.normalize(),
            drawdown: dd.normalize(),
            drawdown_pct: dd_pct,
        });
        prev = Some((p.equity, c));
    }
    let first_equity = points.first().map(|(_, p)| p.equity.normalize());
    let last = points.last().map(|(_, p)| p);
    let (net_profit, absolute_gain_pct) = match (first_equity, last) {
        (Some(e0), Some(l)) => {
            let np = l.equity.checked_sub(e0).and_then(|x| x.checked_sub(c - first_c));
            let np = np.ok_or(TrackError::Overflow)?;
            let capital = add(e0, deposits_after_first)?;
            let gain = if capital > Decimal::ZERO {
                ratio(np, capital, 12)?.map(pct).transpose()?
            } else {
                None
            };
            (Some(np.normalize()), gain)
        }
        _ => (None, None),
    };
    let twr_pct = match (points.len(), growth) {
        (0, _) | (_, None) => None,
        (_, Some(g)) => Some(pct(g - Decimal::ONE)?),
    };

    // Daily returns.
    let mut daily = Some(Vec::new());
    for w in days.windows(2) {
        let (_, d_prev, c_prev) = w[0];
        let (_, d_now, c_now) = w[1];
        daily = daily.and_then(|mut v: Vec<Decimal>| {
            v.push(sub_return(d_prev, c_now - c_prev, d_now)?);
            Some(v)
        });
    }
    let daily = daily.unwrap_or_default();
    let (mean_pct, sharpe, sortino, calmar) = ratios(&daily, max_dd_pct)?;

    let current = curve.last();
    Ok(MoneyFigures {
        basis: BASIS_PUBLISHED_MONEY.to_string(),
        author,
        currency: None,
        kinds: PublishedKinds::default(),
        first_equity,
        last_equity: last.map(|p| p.equity.normalize()),
        last_balance: last.map(|p| p.balance.normalize()),
        deposits: deposits.normalize(),
        withdrawals: withdrawals.normalize(),
        net_profit,
        absolute_gain_pct,
        twr_pct,
        max_drawdown: max_dd.normalize(),
        max_drawdown_pct: max_dd_pct,
        current_drawdown: current.map_or(Decimal::ZERO, |p| p.drawdown),
        current_drawdown_pct: current.and_then(|p| p.drawdown_pct),
        n_daily_returns: daily.len() as u64,
        mean_daily_return_pct: mean_pct,
        sharpe,
        sortino,
        calmar,
        n_trades: 0,
        n_wins: 0,
        n_losses: 0,
        n_breakevens: 0,
        net_of_trades: Decimal::ZERO,
        gross_profit: Decimal::ZERO,
        gross_loss: Decimal::ZERO,
        commission: Decimal::ZERO,
        swap: Decimal::ZERO,
        win_rate: None,
        profit_factor: None,
        expectancy: None,
        avg_win: None,
        avg_loss: None,
        best: None,
        worst: None,
        longest_win_streak: 0,
        longest_loss_streak: 0,
        trades_per_week: None,
        avg_holding_ms: None,
        by_symbol: vec![],
        by_weekday: vec![],
        by_hour: vec![],
        by_month: months
            .into_iter()
            .map(|(key, g)| {
                let return_pct = g.map(|g| pct(g - Decimal::ONE)).transpose()?;
                Ok(MonthFigures {
                    key,
                    n_trades: 0,
                    net: Decimal::ZERO,
                    win_rate: None,
                    return_pct,
                })
            })
            .collect::<Result<Vec<_>, TrackError>>()?,
        heatmap: vec![],
        curve,
        cash_flows,
    })
}

/// (mean daily return %, Sharpe, Sortino, Calmar) of the daily returns.
#[allow(clippy::type_complexity)]
fn ratios(
    daily: &[Decimal],
    max_dd_pct: Option<Decimal>,
) -> Result<(Option<Decimal>, Option<Decimal>, Option<Decimal>, Option<Decimal>), TrackError> {
    let n = daily.len();
    if n < 2 {
        return Ok((None, None, None, None));
    }
    let nd = Decimal::from(n as u64);
    let mean = sum(daily.iter().copied())?.checked_div(nd).ok_or(TrackError::Overflow)?;
    let sq = |x: Decimal| x.checked_mul(x).ok_or(TrackError::Overflow);
    let var = sum(daily.iter().map(|r| sq(*r - mean)).collect::<Result<Vec<_>, _>>()?)?
        .checked_div(Decimal::from(n as u64 - 1))
        .ok_or(TrackError::Overflow)?;
    let down =
        sum(daily.iter().map(|r| sq((*r).min(Decimal::ZERO))).collect::<Result<Vec<_>, _>>()?)?
            .checked_div(nd)
            .ok_or(TrackError::Overflow)?;
    let annual = sqrt(Decimal::from(TRADING_DAYS)).ok_or(TrackError::Overflow)?;
    let scaled = |den: Decimal| -> Result<Option<Decimal>, TrackError> {
        let den = sqrt(den).ok_or(TrackError::Overflow)?;
        if den.is_zero() {
            return Ok(None);
        }
        let q = mean.checked_div(den).and_then(|q| q.checked_mul(annual));
        q.map(|q| Some(round(q, RATIO_DP))).ok_or(TrackError::Overflow)
    };
    let calmar = match max_dd_pct {
        Some(dd) if !dd.is_zero() => {
            let yearly =
                mean.checked_mul(Decimal::from(TRADING_DAYS)).ok_or(TrackError::Overflow)?;
            let dd = dd.checked_div(Decimal::ONE_HUNDRED).ok_or(TrackError::Overflow)?;
            ratio(yearly, dd, RATIO_DP)?
        }
        _ => None,
    };
    Ok((Some(pct(mean)?), scaled(var)?, scaled(down)?, calmar))
}

/// The trade side: counts, ratios, streaks and the groups.
fn trade_figures(f: &mut MoneyFigures, trades: &[Trade]) -> Result<(), TrackError> {
    let nets: Vec<Decimal> = trades.iter().map(|t| t.net).collect();
    let n = nets.len() as u64;
    let nd = Decimal::from(n);
    let wins: Vec<Decimal> = nets.iter().copied().filter(|x| *x > Decimal::ZERO).collect();
    let losses: Vec<Decimal> = nets.iter().copied().filter(|x| *x < Decimal::ZERO).collect();
    let total = sum(nets.iter().copied())?;
    let gross_profit = sum(wins.iter().copied())?;
    let gross_loss = sum(losses.iter().copied())?;
    f.n_trades = n;
    f.n_wins = wins.len() as u64;
    f.n_losses = losses.len() as u64;
    f.n_breakevens = nets.iter().filter(|x| x.is_zero()).count() as u64;
    f.net_of_trades = total.normalize();
    f.gross_profit = gross_profit.normalize();
    f.gross_loss = gross_loss.normalize();
    f.commission = sum(trades.iter().map(|t| t.t.commission))?.normalize();
    f.swap = sum(trades.iter().map(|t| t.t.swap))?.normalize();
    f.win_rate = ratio(Decimal::from(f.n_wins), nd, RATIO_DP)?;
    f.profit_factor =
        if losses.is_empty() { None } else { ratio(gross_profit, gross_loss.abs(), RATIO_DP)? };
    f.expectancy = ratio(total, nd, MONEY_DP)?;
    f.avg_win = ratio(gross_profit, Decimal::from(f.n_wins), MONEY_DP)?;
    f.avg_loss = ratio(gross_loss, Decimal::from(f.n_losses), MONEY_DP)?;
    f.best = nets.iter().copied().max().map(|x| x.normalize());
    f.worst = nets.iter().copied().min().map(|x| x.normalize());
    f.longest_win_streak = longest_run(&nets, |x| x > Decimal::ZERO);
    f.longest_loss_streak = longest_run(&nets, |x| x < Decimal::ZERO);
    f.trades_per_week = match (
        trades.iter().map(|t| t.t.opened_at_ms).min(),
        trades.iter().map(|t| t.t.closed_at_ms).max(),
    ) {
        (Some(first), Some(last)) => {
            let span = last.saturating_sub(first).max(WEEK_MS);
            let weeks = Decimal::from(span)
                .checked_div(Decimal::from(WEEK_MS))
                .ok_or(TrackError::Overflow)?;
            ratio(nd, weeks, 2)?
        }
        _ => None,
    };
    f.avg_holding_ms = if n == 0 {
        None
    } else {
        let total: i128 = trades
            .iter()
            .map(|t| i128::from(t.t.closed_at_ms) - i128::from(t.t.opened_at_ms))
            .sum();
        Some(i64::try_from(total.div_euclid(i128::from(n))).map_err(|_| TrackError::Overflow)?)
    };

    let mut by_symbol: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut by_weekday: BTreeMap<u8, Acc> = BTreeMap::new();
    let mut by_hour: BTreeMap<u8, Acc> = BTreeMap::new();
    let mut by_month: BTreeMap<String, Acc> = BTreeMap::new();
    let mut heat: BTreeMap<(u8, u8), Acc> = BTreeMap::new();
    for t in trades {
        let at = t.t.closed_at_ms;
        let (wd, hr) = (weekday_of(at), hour_of(at));
        by_symbol.entry(t.t.symbol.as_str()).or_insert_with(Acc::new).push(t.net)?;
        by_weekday.entry(wd).or_insert_with(Acc::new).push(t.net)?;
        by_hour.entry(hr).or_insert_with(Acc::new).push(t.net)?;
        by_month.entry(month_of(at)).or_insert_with(Acc::new).push(t.net)?;
        heat.entry((wd, hr)).or_insert_with(Acc::new).push(t.net)?;
    }
    f.by_symbol =
        by_symbol.into_iter().map(|(k, a)| a.group(k.to_string())).collect::<Result<_, _>>()?;
    f.by_weekday = by_weekday
        .into_iter()
        .map(|(k, a)| a.group(WEEKDAYS[usize::from(k)].to_string()))
        .collect::<Result<_, _>>()?;
    f.by_hour =
        by_hour.into_iter().map(|(k, a)| a.group(format!("{k:02}"))).collect::<Result<_, _>>()?;
    f.heatmap = heat
        .into_iter()
        .map(|((weekday, hour), a)| HeatCell {
            weekday,
            hour,
            n_trades: a.n,
            net: a.net.normalize(),
        })
        .collect();
    // Merge the trades' months into the equity's months.
    let mut months: BTreeMap<String, MonthFigures> =
        std::mem::take(&mut f.by_month).into_iter().map(|m| (m.key.clone(), m)).collect();
    for (key, a) in by_month {
        let g = a.group(key.clone())?;
        let m = months.entry(key.clone()).or_insert(MonthFigures {
            key,
            n_trades: 0,
            net: Decimal::ZERO,
            win_rate: None,
            return_pct: None,
        });
        m.n_trades = g.n_trades;
        m.net = g.net;
        m.win_rate = g.win_rate;
    }
    f.by_month = months.into_values().collect();
    Ok(())
}

/// The headline money figures, (label, value), in the order the page and the verifier print
/// them.
pub fn headline(f: &MoneyFigures) -> Vec<(&'static str, String)> {
    use crate::track::show;
    let money = |d: Option<Decimal>| show(d);
    vec![
        ("currency", f.currency.clone().unwrap_or_else(|| "n/a".into())),
        ("equity (last)", money(f.last_equity)),
        ("balance (last)", money(f.last_balance)),
        ("deposits", f.deposits.to_string()),
        ("withdrawals", f.withdrawals.to_string()),
        ("net profit (equity, cash flows removed)", money(f.net_profit)),
        ("absolute gain %", show(f.absolute_gain_pct)),
        ("time-weighted return %", show(f.twr_pct)),
        ("max drawdown (equity)", f.max_drawdown.to_string()),
        ("max drawdown %", show(f.max_drawdown_pct)),
        ("current drawdown", f.current_drawdown.to_string()),
        ("current drawdown %", show(f.current_drawdown_pct)),
        ("daily returns", f.n_daily_returns.to_string()),
        ("Sharpe (daily, √252, rf 0)", show(f.sharpe)),
        ("Sortino (daily, √252, rf 0)", show(f.sortino)),
        ("Calmar", show(f.calmar)),
        ("trades", f.n_trades.to_string()),
        (
            "wins / losses / breakevens",
            format!("{} / {} / {}", f.n_wins, f.n_losses, f.n_breakevens),
        ),
        ("net of trades", f.net_of_trades.to_string()),
        ("win rate", show(f.win_rate)),
        ("profit factor", show(f.profit_factor)),
        ("expectancy", show(f.expectancy)),
        ("average win", show(f.avg_win)),
        ("average loss", show(f.avg_loss)),
        ("best trade", show(f.best)),
        ("worst trade", show(f.worst)),
        ("longest win streak", f.longest_win_streak.to_string()),
        ("longest loss streak", f.longest_loss_streak.to_string()),
        ("trades per week", show(f.trades_per_week)),
        (
            "average holding time (ms)",
            f.avg_holding_ms.map_or_else(|| "n/a".to_string(), |m| m.to_string()),
        ),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{BalanceOperation, Side, Summary};
    use crate::hash::ChainHash;
    use crate::identity::Identity;
    use crate::record::HeaderFields;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z, a Thursday
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    pub(crate) fn who() -> Identity {
        Identity::from_secret_bytes(&[21; 32], &[22; 32])
    }

    pub(crate) enum Ev {
        /// ticket, symbol, opened, closed, profit, commission, swap
        Trade(u64, &'static str, i64, i64, &'static str, &'static str, &'static str),
        /// at, balance, equity
        Eq(i64, &'static str, &'static str),
        /// deal, kind, amount, at
        Op(u64, BalanceKind, &'static str, i64),
        /// at
        Sum(i64),
    }

    fn body(id: &Identity, ev: &Ev) -> (Body, i64) {
        let device = id.device_id();
        match *ev {
            Ev::Trade(ticket, symbol, opened, closed, profit, commission, swap) => (
                Body::TradeClosed(TradeClosed {
                    signal_id: None,
                    device,
                    ticket,
                    symbol: symbol.into(),
                    side: Side::Buy,
                    volume: d("0.1"),
                    open_price: d("1.1"),
                    close_price: d("1.2"),
                    opened_at_ms: opened,
                    closed_at_ms: closed,
                    profit: d(profit),
                    commission: d(commission),
                    swap: d(swap),
                }),
                closed,
            ),
            Ev::Eq(at, balance, equity) => (
                Body::EquityPoint(EquityPoint {
                    device,
                    at_ms: at,
                    balance: d(balance),
                    equity: d(equity),
                }),
                at,
            ),
            Ev::Op(deal, kind, amount, at) => (
                Body::BalanceOperation(BalanceOperation {
                    device,
                    deal,
                    kind,
                    amount: d(amount),
                    currency: "USD".into(),
                    at_ms: at,
                    comment: String::new(),
                }),
                at,
            ),
            Ev::Sum(at) => (
                Body::Summary(Summary {
                    device,
                    day: "2026-01-01".into(),
                    at_ms: at,
                    balance: d("1"),
                    equity: d("1"),
                    open_positions: 0,
                    floating_pnl: Decimal::ZERO,
                    day_pnl: Decimal::ZERO,
                    currency: Some("EUR".into()),
                }),
                at,
            ),
        }
    }

    /// `events` signed in order into `id`'s published chain.
    pub(crate) fn published(id: &Identity, events: &[Ev]) -> Vec<Record> {
        let mut prev = ChainHash::GENESIS;
        events
            .iter()
            .enumerate()
            .map(|(i, ev)| {
                let (b, at) = body(id, ev);
                let fields = HeaderFields {
                    stream: StreamId::PUBLISHED,
                    seq: i as u64 + 1,
                    prev_hash: prev,
                    created_at_ms: at,
                };
                let r = Record::sign(id, fields, &b);
                prev = r.header_hash();
                r
            })
            .collect()
    }

    fn figs(events: &[Ev]) -> MoneyFigures {
        let id = who();
        money_figures(id.device_id(), &published(&id, events)).unwrap()
    }

    #[test]
    fn zero_trades_and_nothing_published_is_all_na() {
        let f = figs(&[]);
        assert!(f.kinds.is_empty());
        assert_eq!(f.kinds.describe(), "publishes nothing");
        for (name, v) in [
            ("net_profit", f.net_profit),
            ("gain", f.absolute_gain_pct),
            ("twr", f.twr_pct),
            ("dd%", f.max_drawdown_pct),
            ("sharpe", f.sharpe),
            ("sortino", f.sortino),
            ("calmar", f.calmar),
            ("win_rate", f.win_rate),
            ("pf", f.profit_factor),
            ("expectancy", f.expectancy),
            ("avg_win", f.avg_win),
            ("avg_loss", f.avg_loss),
            ("best", f.best),
            ("per_week", f.trades_per_week),
        ] {
            assert_eq!(v, None, "{name}");
        }
        assert_eq!((f.n_trades, f.max_drawdown, f.avg_holding_ms), (0, Decimal::ZERO, None));
        assert!(f.curve.is_empty() && f.by_month.is_empty() && f.heatmap.is_empty());
        assert!(headline(&f).iter().all(|(_, v)| !v.contains("NaN")));
    }

    #[test]
    fn one_trade() {
        // Closed Friday 2026-01-02 14:30 UTC after 2 h: 100 − 7 commission − 3 swap = 90.
        let close = T0 + DAY + 14 * HOUR + 30 * 60_000;
        let f = figs(&[Ev::Trade(7, "EURUSD", close - 2 * HOUR, close, "100", "-7", "-3")]);
        assert_eq!(
            f.kinds.describe(),
            "publishes closed trades; not equity points, balance operations or daily summaries"
        );
        assert_eq!((f.n_trades, f.n_wins, f.n_losses), (1, 1, 0));
        assert_eq!((f.net_of_trades, f.commission, f.swap), (d("90"), d("-7"), d("-3")));
        assert_eq!((f.win_rate, f.profit_factor), (Some(d("1")), None));
        assert_eq!((f.expectancy, f.avg_win, f.avg_loss), (Some(d("90")), Some(d("90")), None));
        assert_eq!((f.best, f.worst), (Some(d("90")), Some(d("90"))));
        assert_eq!(f.trades_per_week, Some(d("1")));
        assert_eq!(f.avg_holding_ms, Some(2 * HOUR));
        assert_eq!(f.heatmap, vec![HeatCell { weekday: 4, hour: 14, n_trades: 1, net: d("90") }]);
        assert_eq!(f.by_weekday[0].key, "Fri");
        assert_eq!(f.by_hour[0].key, "14");
        assert_eq!(f.by_month[0].key, "2026-01");
        assert_eq!((f.by_month[0].net, f.by_month[0].return_pct), (d("90"), None));
        // No equity published: the equity figures are n/a, not zero.
        assert_eq!((f.twr_pct, f.net_profit, f.sharpe), (None, None, None));
    }

    #[test]
    fn a_losing_streak_and_duplicate_tickets() {
        let t = |k: u64, p: &'static str| {
            Ev::Trade(
                k,
                if k.is_multiple_of(2) { "GBPUSD" } else { "EURUSD" },
                T0 + k as i64 * DAY,
                T0 + k as i64 * DAY + HOUR,
                p,
                "0",
                "0",
            )
        };
        let f = figs(&[
            t(1, "50"),
            t(2, "-20"),
            t(3, "-10"),
            // The same ticket again (a resend): counted once.
            t(3, "-10"),
            t(4, "-30"),
            t(5, "0"),
            t(6, "40"),
        ]);
        assert_eq!(f.kinds.trades_closed, 7);
        assert_eq!((f.n_trades, f.n_wins, f.n_losses, f.n_breakevens), (6, 2, 3, 1));
        assert_eq!(f.net_of_trades, d("30"));
        assert_eq!((f.gross_profit, f.gross_loss), (d("90"), d("-60")));
        assert_eq!(f.profit_factor, Some(d("1.5")));
        assert_eq!(f.win_rate, Some(d("0.3333")));
        assert_eq!(
            (f.expectancy, f.avg_win, f.avg_loss),
            (Some(d("5")), Some(d("45")), Some(d("-20")))
        );
        assert_eq!((f.longest_win_streak, f.longest_loss_streak), (1, 3));
        assert_eq!((f.best, f.worst), (Some(d("50")), Some(d("-30"))));
        let sym: Vec<(&str, u64, Decimal)> =
            f.by_symbol.iter().map(|g| (g.key.as_str(), g.n_trades, g.net)).collect();
        assert_eq!(sym, vec![("EURUSD", 3, d("40")), ("GBPUSD", 3, d("-10"))]);
        // 6 trades from 2 Jan 00:00 to 7 Jan 01:00: less than a week counts as one.
        assert_eq!(f.trades_per_week, Some(d("6")));
    }

    #[test]
    fn a_deposit_mid_period_is_no_performance() {
        // Day 0: 1000. Day 1: 1100 (+10 %). Day 2: +1000 deposit, equity 2200 (+4.7619 %: the
        // deposit joins at the start). Day 3: 2090 (−5 %).
        let f = figs(&[
            Ev::Op(1, BalanceKind::Deposit, "1000", T0),
            Ev::Eq(T0 + HOUR, "1000", "1000"),
            Ev::Eq(T0 + DAY, "1100", "1100"),
            Ev::Op(2, BalanceKind::Deposit, "1000", T0 + 2 * DAY),
            Ev::Eq(T0 + 2 * DAY + HOUR, "2100", "2200"),
            Ev::Eq(T0 + 3 * DAY, "2090", "2090"),
        ]);
        assert_eq!(f.currency.as_deref(), Some("USD"));
        assert_eq!((f.deposits, f.withdrawals), (d("2000"), d("0")));
        // 2090 − 1000 − 1000 deposited after the first point.
        assert_eq!(f.net_profit, Some(d("90")));
        assert_eq!(f.absolute_gain_pct, Some(d("4.5")));
        // 1.1 × (2200/2100) × 0.95 − 1 = 0.0947619…
        assert_eq!(f.twr_pct, Some(d("9.4762")));
        // The peak 1100 moves to 2100 with the deposit; 2200 is the new peak; 2090 is 110 below.
        assert_eq!(f.max_drawdown, d("110"));
        assert_eq!(f.max_drawdown_pct, Some(d("5")));
        assert_eq!((f.current_drawdown, f.current_drawdown_pct), (d("110"), Some(d("5"))));
        assert_eq!(f.curve[2].drawdown, d("0"));
        let flows: Vec<Decimal> = f.cash_flows.iter().map(|c| c.cumulative).collect();
        assert_eq!(flows, vec![d("1000"), d("2000")]);
        // Daily returns 0.1, 0.047619047619, −0.05: mean 0.032539682540 (3.254 %).
        assert_eq!(f.n_daily_returns, 3);
        assert_eq!(f.mean_daily_return_pct, Some(d("3.254")));
        // s = 0.0761284, s⁻ = √(0.0025 / 3) = 0.0288675; × √252 = 15.8745079.
        assert_eq!(f.sharpe, Some(d("6.7853")));
        assert_eq!(f.sortino, Some(d("17.8939")));
        // 0.0325396825397 × 252 / 0.05.
        assert_eq!(f.calmar, Some(d("164")));
        assert_eq!(f.by_month.len(), 1);
        assert_eq!(f.by_month[0].return_pct, f.twr_pct);
    }

    #[test]
    fn a_withdrawal_is_not_a_loss() {
        let f = figs(&[
            Ev::Eq(T0, "1000", "1000"),
            Ev::Eq(T0 + DAY, "1200", "1200"),
            Ev::Op(3, BalanceKind::Withdrawal, "-600", T0 + 2 * DAY),
            Ev::Eq(T0 + 2 * DAY + 1, "600", "600"),
        ]);
        assert_eq!(f.withdrawals, d("-600"));
        assert_eq!(f.net_profit, Some(d("200")));
        assert_eq!(f.twr_pct, Some(d("20")));
        assert_eq!((f.max_drawdown, f.max_drawdown_pct), (d("0"), Some(d("0"))));
        assert_eq!(f.current_drawdown, d("0"));
        // No drawdown: Calmar has no denominator.
        assert_eq!(f.calmar, None);
        // Returns 0.2 and 0: Sortino has no downside.
        assert_eq!(f.sortino, None);
        assert!(f.sharpe.is_some());
    }

    #[test]
    fn a_flat_period_has_no_volatility() {
        let f = figs(&[
            Ev::Eq(T0, "500", "500"),
            Ev::Eq(T0 + DAY, "500", "500"),
            Ev::Eq(T0 + 2 * DAY, "500", "500"),
            // A second point on the same day: only the day's last one counts.
            Ev::Eq(T0 + 2 * DAY + HOUR, "500", "500"),
            Ev::Sum(T0 + 3 * DAY),
        ]);
        assert_eq!(f.currency.as_deref(), Some("EUR"));
        assert_eq!(f.n_daily_returns, 2);
        assert_eq!(f.twr_pct, Some(d("0")));
        assert_eq!(f.mean_daily_return_pct, Some(d("0")));
        assert_eq!((f.sharpe, f.sortino, f.calmar), (None, None, None));
        assert_eq!(f.max_drawdown_pct, Some(d("0")));
        assert_eq!(
            f.kinds.describe(),
            "publishes equity points and daily summaries; not closed trades or balance operations"
        );
    }

    #[test]
    fn a_blown_account_and_a_zero_start_and_other_authors_count_for_nothing() {
        let f = figs(&[
            Ev::Eq(T0, "100", "100"),
            Ev::Eq(T0 + DAY, "0", "0"),
            Ev::Op(9, BalanceKind::Deposit, "100", T0 + 2 * DAY),
            Ev::Eq(T0 + 2 * DAY, "100", "100"),
        ]);
        // −100 % then 0 % on the new deposit: the time-weighted return is −100 %.
        assert_eq!(f.twr_pct, Some(d("-100")));
        assert_eq!(f.net_profit, Some(d("-100")));
        // The peak 100 moves to 200 with the deposit: still 100 (50 %) below it.
        assert_eq!((f.max_drawdown, f.max_drawdown_pct), (d("100"), Some(d("100"))));
        assert_eq!((f.current_drawdown, f.current_drawdown_pct), (d("100"), Some(d("50"))));
        // A sub-period starting from 0 capital has no return: every return figure is n/a.
        let f = figs(&[Ev::Eq(T0, "0", "0"), Ev::Eq(T0 + DAY, "10", "10")]);
        assert_eq!((f.twr_pct, f.absolute_gain_pct, f.sharpe), (None, None, None));
        assert_eq!(f.curve[0].drawdown_pct, None);
        let id = who();
        let other = Identity::from_secret_bytes(&[1; 32], &[2; 32]);
        let recs = published(&id, &[Ev::Eq(T0, "1", "1")]);
        assert!(money_figures(other.device_id(), &recs).unwrap().kinds.is_empty());
    }

    #[test]
    fn square_roots_and_calendars() {
        for (x, r) in [("0", "0"), ("4", "2"), ("0.0025", "0.05"), ("2", "1.41421356237309504880")]
        {
            assert_eq!(sqrt(d(x)), Some(d(r)), "{x}");
        }
        assert_eq!(sqrt(d("-1")), None);
        assert_eq!(weekday_of(T0), 3, "2026-01-01 is a Thursday");
        assert_eq!(weekday_of(0), 3);
        assert_eq!(weekday_of(-1), 2);
        assert_eq!(hour_of(T0 - 1), 23);
    }
}

//! `/p/{provider}`: a provider's public track record, no login, delayed and cacheable. A view
//! of the same [`TrackRecord`](super::TrackRecord) as the JSON API: headline figures, the
//! cumulative-R curve (inline SVG: no script, which the CSP would refuse inline anyway), the
//! monthly and per-symbol tables, the delayed signals each linking to its signed record, every
//! formula, and the commands to verify it offline.
//!
//! Then "Money (published by the provider)", per device that publishes its account history:
//! which data kinds it publishes, the headline money figures, the equity and balance curves and
//! the drawdown below them (inline SVG like the R curve), the cash flows, the monthly table, the
//! weekday × hour heatmap (a table shaded by CSS classes: the CSP refuses inline styles) and
//! the per-symbol table; a provider that publishes nothing gets one sentence saying so. Every
//! figure names its basis: R from the signals chain, money from the published stream.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use maud::{Markup, html};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive as _;
use tradecast_protocol::track::{self, GroupFigures};
use tradecast_protocol::track_money::{self, MoneyFigures, WEEKDAYS};

use super::api::{ProviderTrack, SIGNALS_LISTED};
use crate::analytics;
use crate::state::AppState;
use crate::ui::PageError;
use crate::ui::fmt;
use crate::ui::layout;

/// Width and height of the curve's drawing box.
const CURVE_W: u32 = 600;
const CURVE_H: u32 = 160;

/// The formulas, as the page states them (the module docs of `tradecast_protocol::track` are
/// the reference; the hub README repeats them).
const FORMULAS: &[(&str, &str)] = &[
    ("Risk", "|entry − stop| of the signal as signed (a later stop move does not change it)."),
    ("Move of a close", "close price − entry for a buy, entry − close price for a sell."),
    (
        "R of a signal",
        "Σ portion × move / risk over its closes, where a close of fraction f takes f of what remains; rounded to 6 places. A signal counts once nothing remains; a close without a price leaves it unpriced (counted, not scored).",
    ),
    (
        "Pips",
        "move / pip: 0.01 for a six-letter pair quoted in JPY, 0.0001 for other six-letter pairs, n/a otherwise.",
    ),
    ("Win, loss, breakeven", "R > 0, R < 0, R = 0."),
    ("Win rate", "wins / trades (4 places)."),
    ("Expectancy", "Σ R / trades (6 places)."),
    ("Profit factor", "Σ R of wins / |Σ R of losses| (4 places); n/a without a loss."),
    ("Average win / loss", "Σ R of wins / wins; Σ R of losses / losses."),
    ("Max drawdown", "the largest fall of the cumulative-R curve (from 0) below its running peak."),
    ("Streaks", "most consecutive wins (losses) in closing order; a breakeven ends both."),
    ("Trades per week", "trades / (max(last close − first open, 7 days) / 7 days), 2 places."),
    ("Holding time", "mean of close − open, where open and close are the records' created_at_ms."),
    ("Months", "by the closing time, UTC."),
];

/// The money formulas, as the page states them (`tradecast_protocol::track_money`'s module docs
/// are the reference; the hub README repeats them).
pub(crate) const MONEY_FORMULAS: &[(&str, &str)] = &[
    (
        "Basis",
        "only the records the provider's node signed into its opt-in published stream: closed trades, equity points, balance operations, daily summaries; never its private records. A ticket (deal) published twice counts once.",
    ),
    ("Net of a trade", "profit + commission + swap."),
    (
        "Cash flows",
        "every balance operation (deposit, withdrawal, credit, bonus, correction): never performance. A flow at time t is part of every equity point at t or later.",
    ),
    (
        "Sub-period return",
        "r = E_i / (E_{i−1} + flows between) − 1 between consecutive equity points: every deposit and withdrawal splits the curve; the flow joins the capital at the start of its interval. A start capital ≤ 0 makes every return n/a.",
    ),
    (
        "Time-weighted return",
        "Π (1 + r) − 1, in %; the monthly return is the same over the sub-periods ending in the month (UTC).",
    ),
    (
        "Net profit, absolute gain",
        "last equity − first equity − cash flows between; in % of (first equity + deposits between).",
    ),
    (
        "Drawdown",
        "running peak of equity − equity, the peak moved by every cash flow (a withdrawal is no loss, a deposit does not hide a drawdown); in % of that peak. Max: the largest (money and % separately); current: at the last point.",
    ),
    (
        "Daily returns",
        "from the last equity point of each UTC day that has one: D_k / (D_{k−1} + flows between) − 1.",
    ),
    (
        "Sharpe, Sortino, Calmar",
        "risk-free rate 0, at least 2 daily returns: Sharpe = mean / sample standard deviation × √252; Sortino = mean / √(Σ min(d, 0)² / n) × √252; Calmar = mean × 252 / max drawdown %. n/a without a denominator.",
    ),
    (
        "Trade statistics",
        "as for R above, on net money: win rate, profit factor (Σ wins / |Σ losses|), expectancy (Σ net / trades), average win and loss, best, worst, streaks, trades per week, holding time (the trade's open and close times); weekday, hour and month by the closing time, UTC.",
    ),
];

/// The heatmap's CSS class of a cell: `heat-pos-1`…`4` or `heat-neg-1`…`4` by |net| against
/// the largest |net| of any cell (quarters), `heat-0` for a net of zero.
fn heat_class(net: Decimal, max_abs: Decimal) -> String {
    if net.is_zero() || max_abs.is_zero() {
        return "heat-0".into();
    }
    let quarters = net.abs().checked_mul(Decimal::from(4)).and_then(|x| x.checked_div(max_abs));
    let level = quarters.and_then(|q| q.ceil().to_u8()).unwrap_or(4).clamp(1, 4);
    let sign = if net > Decimal::ZERO { "pos" } else { "neg" };
    format!("heat-{sign}-{level}")
}

fn heatmap(m: &MoneyFigures) -> Markup {
    let max_abs = m.heatmap.iter().map(|c| c.net.abs()).max().unwrap_or_default();
    html! {
        table.heatmap {
            caption { "Closed trades by weekday and hour of the close (UTC): count, shaded by net (green profit, red loss)" }
            thead { tr { th { "" } @for h in 0..24u8 { th.num { (format!("{h:02}")) } } } }
            tbody {
                @for (wd, name) in WEEKDAYS.iter().enumerate() {
                    tr {
                        th { (name) }
                        @for h in 0..24u8 {
                            @match m.heatmap.iter().find(|c| usize::from(c.weekday) == wd && c.hour == h) {
                                Some(c) => td class=(heat_class(c.net, max_abs))
                                    title=(format!("{name} {h:02}:00 UTC: {} trade(s), net {}", c.n_trades, c.net)) { (c.n_trades) },
                                None => td {},
                            }
                        }
                    }
                }
            }
        }
    }
}

fn money_curves(m: &MoneyFigures) -> Markup {
    let equity: Vec<Decimal> = m.curve.iter().map(|p| p.equity).collect();
    let balance: Vec<Decimal> = m.curve.iter().map(|p| p.balance).collect();
    let lo = equity.iter().chain(&balance).copied().min().unwrap_or_default();
    let hi = equity.iter().chain(&balance).copied().max().unwrap_or_default();
    let drawdown: Vec<Decimal> = m.curve.iter().map(|p| -p.drawdown).collect();
    // No drawdown at all: the flat line sits at the top (0), not at the bottom.
    let dd_lo = drawdown.iter().copied().min().unwrap_or_default().min(-Decimal::ONE);
    let view = format!("-4 -4 {} {}", CURVE_W + 8, CURVE_H + 8);
    let dd_h = CURVE_H / 2;
    let dd_view = format!("-4 -4 {} {}", CURVE_W + 8, dd_h + 8);
    html! {
        svg.equity viewBox=(view) width=(CURVE_W) height=(CURVE_H) role="img"
            aria-label="Equity (blue) and balance (grey) at each published equity point" xmlns="http://www.w3.org/2000/svg" {
            title { "Equity (blue) and balance (grey) at each published equity point" }
            polyline fill="none" stroke="#94a3b8" stroke-width="1.5" points=(analytics::series_points_in(&balance, (lo, hi), CURVE_W, CURVE_H)) {}
            polyline fill="none" stroke="#2563eb" stroke-width="2" points=(analytics::series_points_in(&equity, (lo, hi), CURVE_W, CURVE_H)) {}
        }
        svg.drawdown viewBox=(dd_view) width=(CURVE_W) height=(dd_h) role="img"
            aria-label="Drawdown of equity below its flow-adjusted peak" xmlns="http://www.w3.org/2000/svg" {
            title { "Drawdown of equity below its flow-adjusted peak" }
            polyline fill="none" stroke="#dc2626" stroke-width="1.5" points=(analytics::series_points_in(&drawdown, (dd_lo, Decimal::ZERO), CURVE_W, dd_h)) {}
        }
        p.note { "Equity from " (fmt::when(m.curve.first().map(|p| p.at_ms))) " to " (fmt::when(m.curve.last().map(|p| p.at_ms))) " UTC, "
            (m.curve.len()) " points; max drawdown " (m.max_drawdown) " (" (track::show(m.max_drawdown_pct)) " %)." }
    }
}

/// One published account's money figures (`subject` names who publishes it: "This provider",
/// "Your node"): headline, equity and drawdown, cash flows, months, heatmap, symbols. The public
/// page and the trader's own analytics in the Mini App show the same section.
pub(crate) fn money_section(i: usize, m: &MoneyFigures, subject: &str) -> Markup {
    let heading = html! { "Account of device " code { (m.author) } };
    money_section_headed(i, m, subject, heading)
}

/// [`money_section`] headed `account` instead of the device's id (a redacted share link).
pub(crate) fn money_section_as(i: usize, m: &MoneyFigures, subject: &str, account: &str) -> Markup {
    money_section_headed(i, m, subject, html! { (account) })
}

fn money_section_headed(i: usize, m: &MoneyFigures, subject: &str, heading: Markup) -> Markup {
    let cur = m.currency.clone().unwrap_or_default();
    html! {
        section.money id=(format!("money-{i}")) {
            h3 { (heading) @if !cur.is_empty() { " (" (cur) ")" } }
            p.kinds { (subject) " " (m.kinds.describe()) "." }
            table.money-headline {
                caption { "Money figures — basis: the published stream" }
                tbody {
                    @for (label, value) in track_money::headline(m) {
                        tr { th { (label) } td.num { (value) } }
                    }
                }
            }
            @if m.curve.is_empty() {
                p { "No equity points published: no equity curve, drawdown or returns." }
            } @else {
                h4 { "Equity and drawdown" }
                (money_curves(m))
            }
            @if !m.cash_flows.is_empty() {
                h4 { "Cash flows (never performance)" }
                table.cash-flows {
                    thead { tr { th { "At (UTC)" } th { "Kind" } th.num { "Amount" } th.num { "Σ so far" } } }
                    tbody { @for c in &m.cash_flows { tr {
                        td.nowrap { (fmt::when(Some(c.at_ms))) } td { (c.kind.as_str()) } td.num { (c.amount) } td.num { (c.cumulative) }
                    } } }
                }
            }
            @if !m.by_month.is_empty() {
                h4 { "By month (UTC)" }
                table.money-months {
                    thead { tr { th { "Month" } th.num { "Trades" } th.num { "Net" } th.num { "Win rate" } th.num { "Return %" } } }
                    tbody { @for g in &m.by_month { tr {
                        td { (g.key) } td.num { (g.n_trades) } td.num { (g.net) } td.num { (track::show(g.win_rate)) } td.num { (track::show(g.return_pct)) }
                    } } }
                }
            }
            @if m.heatmap.is_empty() {
                p { "No closed trades published: no trade statistics or heatmap." }
            } @else {
                h4 { "When trades close" }
                (heatmap(m))
                h4 { "By symbol" }
                table.money-symbols {
                    thead { tr { th { "Symbol" } th.num { "Trades" } th.num { "Wins" } th.num { "Losses" } th.num { "Net" } th.num { "Win rate" } } }
                    tbody { @for g in &m.by_symbol { tr {
                        td { (g.key) } td.num { (g.n_trades) } td.num { (g.n_wins) } td.num { (g.n_losses) } td.num { (g.net) } td.num { (track::show(g.win_rate)) }
                    } } }
                }
            }
        }
    }
}

/// The "Copy fidelity" section: how subscribers' nodes copied the signals.
fn fidelity(f: &crate::analytics::fidelity::CopyFidelity) -> Markup {
    let ms = |v: Option<i64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v} ms"));
    let pips = |v: Option<Decimal>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v} pips"));
    let rate = |v: Option<Decimal>| {
        v.map_or_else(
            || "n/a".to_string(),
            |v| format!("{} %", (v * Decimal::from(100)).round_dp(1)),
        )
    };
    html! {
        h2 #fidelity { "Copy fidelity (from subscribers' signed records)" }
        p {
            "How the subscribers' nodes copied these signals, from what each node signed: its decision "
            "and its fill. A delivery is one signal at one subscriber device; latency runs from the "
            "hub's receipt of the signal to the fill; slippage is the fill against the signal's entry, "
            "positive when worse for the trader. Delayed like the rest."
        }
        @if f.deliveries == 0 {
            p #fidelity-none { "No signal has reached a subscriber yet." }
        } @else {
            table #fidelity-figures {
                tbody {
                    tr { th { "Deliveries" } td.num { (f.deliveries) } }
                    tr { th { "Filled" } td.num { (f.filled) " (" (rate(f.fill_rate)) ")" } }
                    tr { th { "Declined (by the trader, the rules, or expired)" } td.num { (f.declined) } }
                    tr { th { "Approved, no fill reported" } td.num { (f.approved_unfilled) } }
                    tr { th { "No answer yet" } td.num { (f.no_answer) } }
                    tr { th { "Latency to fill, median / 90 %" } td.num { (ms(f.latency_ms_p50)) " / " (ms(f.latency_ms_p90)) } }
                    tr { th { "Slippage, median / 90 % (" (f.slippage_n) " fills)" } td.num { (pips(f.slippage_pips_p50)) " / " (pips(f.slippage_pips_p90)) } }
                }
            }
        }
    }
}

/// The "Money (published by the provider)" section.
fn money(t: &ProviderTrack) -> Markup {
    html! {
        h2 #money { "Money (published by the provider)" }
        p {
            "Basis: the account history the provider's node signed into its opt-in published stream "
            "(closed trades, equity points, balance operations), never its private records and never "
            "the signals chain; the R figures above are from the signals chain. Delayed like the rest."
        }
        @if t.money.is_empty() {
            p #money-none { "This provider publishes no account history (no closed trades, equity or balance operations): there are no money figures, only the R record above." }
        }
        @for (i, m) in t.money.iter().enumerate() { (money_section(i, m, "This provider")) }
    }
}

fn group_table(id: &str, first: &str, groups: &[GroupFigures]) -> Markup {
    html! {
        table id=(id) {
            thead { tr { th { (first) } th.num { "Trades" } th.num { "Wins" } th.num { "Losses" } th.num { "Σ R" } th.num { "Win rate" } th.num { "Expectancy R" } } }
            tbody {
                @for g in groups {
                    tr {
                        td { (g.key) }
                        td.num { (g.n_trades) }
                        td.num { (g.n_wins) }
                        td.num { (g.n_losses) }
                        td.num { (g.total_r) }
                        td.num { (track::show(g.win_rate)) }
                        td.num { (track::show(g.expectancy_r)) }
                    }
                }
                @if groups.is_empty() { tr { td colspan="7" { "No closed signals yet." } } }
            }
        }
    }
}

fn curve(trades: &[track::TradeOutcome]) -> Markup {
    let points = analytics::curve_points(trades, CURVE_W, CURVE_H);
    let view = format!("-4 -4 {} {}", CURVE_W + 8, CURVE_H + 8);
    html! {
        svg #curve viewBox=(view) width=(CURVE_W) height=(CURVE_H) role="img"
            aria-label="Cumulative R after each closed signal" xmlns="http://www.w3.org/2000/svg" {
            title { "Cumulative R after each closed signal" }
            polyline fill="none" stroke="#2563eb" stroke-width="2" points=(points) {}
        }
    }
}

/// The page's HTML for `t`, with `base` (scheme and host) in the verify commands.
pub fn render(t: &ProviderTrack, base: &str) -> Markup {
    let f = &t.figures;
    let export = format!("{base}{}", t.export_url);
    // An account created without a name shows its id.
    let name = match t.display_name.trim() {
        "" => format!("Provider {}", t.provider),
        n => n.to_string(),
    };
    let title = format!("{name} — track record");
    let body = html! {
        h1 { (name) }
        p {
            "The public record of this provider's signed signals, in R multiples (risk = |entry − stop|). "
            "Delayed by " (t.delay_s / 60) " min: nothing the hub received after "
            (fmt::when(Some(t.cutoff_ms))) " UTC is shown. Basis: the provider's signals chain "
            "(signals, modifications and closes with their prices), never numbers anyone typed in."
        }
        h2 { "Headline" }
        table #headline {
            caption { "R figures — basis: the signals chain" }
            tbody {
                @for (label, value) in track::headline(f) {
                    tr { th { (label) } td.num { (value) } }
                }
            }
        }
        h2 { "Cumulative R" }
        (curve(&f.trades))
        h2 { "By month (UTC)" }
        (group_table("months", "Month", &f.by_month))
        h2 { "By symbol" }
        (group_table("symbols", "Symbol", &f.by_symbol))
        (money(t))
        (fidelity(&t.copy_fidelity))
        h2 { "Signals (delayed, latest " (SIGNALS_LISTED) ")" }
        table #signals {
            thead { tr { th { "Received (UTC)" } th { "Symbol" } th { "Side" } th.num { "Entry" } th.num { "Stop" } th.num { "Target 1" } th.num { "R" } th { "Signed record" } } }
            tbody {
                @for s in &t.signals {
                    tr {
                        td.nowrap { (fmt::when(Some(s.received_at_ms))) }
                        td { (s.symbol) }
                        td { (s.side) }
                        td.num { (s.entry) }
                        td.num { (s.stop) }
                        td.num { (s.tp1) }
                        td.num { (track::show(s.r)) }
                        td { a href=(s.record_url) { "seq " (s.seq) } }
                    }
                }
                @if t.signals.is_empty() { tr { td colspan="8" { "No published signals yet." } } }
            }
        }
        h2 { "Chains" }
        table #chains {
            thead { tr { th { "Device" } th.num { "Published" } th.num { "Not yet published" } th { "Continuity" } } }
            tbody {
                @for c in &t.chains {
                    tr {
                        td { code { (c.author) } }
                        td.num { (c.n_published) }
                        td.num { (c.n_withheld) }
                        td { @match c.gap_at_seq { Some(s) => { "gap at seq " (s) }, None => "no gap" } }
                    }
                }
            }
        }
        (super::media::page_section(t, base))
        h2 { "How each figure is computed" }
        h3 { "R, from the signals chain" }
        dl #formulas {
            @for (name, text) in FORMULAS { dt { (name) } dd { (text) } }
        }
        h3 { "Money, from the published stream" }
        dl #money-formulas {
            @for (name, text) in MONEY_FORMULAS { dt { (name) } dd { (text) } }
        }
        h2 { "Verify it yourself" }
        p {
            "The export holds every published record of the chain, signed by the provider's "
            "device, with the hub's signed receipt for each, the keys, and the figures above. "
            "The verifier checks every signature, seq, previous hash and receipt, recomputes every "
            "figure from the records alone and prints both: equal, or it exits 1 naming the first difference."
        }
        pre #verify {
            "curl -o track.json " (export) "\n"
            "tradecast-verify track.json --hub-key " (t.hub_key) "\n"
            "# or: tradecast-hub verify track.json"
        }
        p { "JSON of this page: " a href=(format!("/public/v1/providers/{}", t.provider)) { "/public/v1/providers/" (t.provider) } }
    };
    layout::bare(&title, None, body)
}

/// `GET /p/{provider}`.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(provider): Path<String>,
) -> Result<Response, PageError> {
    let base = match &state.config.public_url {
        Some(u) => u.as_str().to_string(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            format!("http://{host}")
        }
    };
    let view = format!("page {base}");
    Ok(super::view(&state, &headers, &provider, &view, "text/html; charset=utf-8", |t| {
        Ok(render(&ProviderTrack::of(t), &base).into_string().into_bytes())
    })
    .await?)
}

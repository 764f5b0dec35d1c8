//! The dashboard: balance, equity and margin, the drawdown guard's lock, the signals waiting
//! for the trader (approve, reject, a countdown on the market clock), the open positions with
//! their floating P&L, the plan features the hub granted (hub-signed, verified against the pinned
//! key), and the equity chart's series (`/ui/equity.json`).

use maud::html;
use rust_decimal::Decimal;
use serde::Serialize;
use tradecast_protocol::ea;

use super::{PageResult, age, layout, money, notice_banner, signed_class};
use crate::policy::fmt_utc;
use crate::runtime::{AccountRow, Node, NodeError};

/// The dashboard.
pub fn dashboard(node: &Node, csrf: &str, notice: Option<Result<String, String>>) -> PageResult {
    let accounts = node.accounts()?;
    let acc: Option<&AccountRow> = accounts.first();
    let currency = acc.map(|a| a.currency.as_str()).unwrap_or("");
    // The market clock: the latest terminal time the EA reported (polls included).
    let market = match acc {
        Some(a) => node.market_ms(&a.account)?,
        None => 0,
    };
    let positions: Vec<_> = match acc {
        Some(a) => node.positions(&a.account)?.into_iter().filter(|p| p.open).collect(),
        None => Vec::new(),
    };
    let floating: Decimal = positions.iter().map(|p| p.profit).sum();
    let signals = node.signals()?;
    let waiting: Vec<_> =
        node.approvals()?.into_iter().filter(|a| a.pending.decided().is_none()).collect();
    // What the trader's plans give, as the hub signed it (verified against the pinned key).
    let grants = node.feature_grants_at(crate::clock::wall_ms())?;
    let gate = node.plan_gate_at(crate::clock::wall_ms())?;
    let now = crate::clock::wall_ms();
    let body = html! {
        (notice_banner(&notice))
        @if let Some(a) = acc.filter(|a| a.locked) {
            div.banner.lock id="guard-lock" {
                div {
                    strong { "Auto mode is locked by the drawdown guard. " }
                    (a.lock_reason) ". Tradecast closed what it had opened; new signals wait for your approval."
                }
                form.inline method="post" action="/ui/unlock" hx-post="/ui/unlock" hx-target="#main" hx-select="#main" hx-swap="outerHTML" hx-confirm="Unlock auto mode? Signals the rules accept will be executed again without asking you." {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" id="unlock" { "Unlock auto mode" }
                }
            }
        }
        @if let Some((instance, at)) = acc.and_then(|a| node.refused_ea(&a.account, now)) {
            div.banner.lock id="second-ea" {
                div {
                    strong { "A second Tradecast EA on this account was refused. " }
                    "EA " code { (instance) } " (another chart or another terminal logged in to this account) tried to connect "
                    (age(now, at)) " while this account's EA is polling. Two EAs would both execute every order: remove the one you do not use. "
                    "It is let in once the first stops."
                }
            }
        }
        div.cards {
            div.card { div.k { "Balance" } div.v { (money(acc.and_then(|a| a.balance), currency)) } }
            div.card { div.k { "Equity" } div.v { (money(acc.and_then(|a| a.equity), currency)) } }
            div.card { div.k { "Margin" } div.v { (money(acc.and_then(|a| a.margin), currency)) } }
            div.card { div.k { "Free margin" } div.v { (money(acc.and_then(|a| a.free_margin), currency)) } }
            div.card { div.k { "Floating P&L" } div class={ "v " (signed_class(floating)) } { (money(Some(floating), currency)) } }
        }
        section {
            h2 { "Pending signals" }
            @if waiting.is_empty() {
                div.empty { "No signal waits for you." }
            } @else {
                table {
                    tr { th { "Signal" } th { "Plan" } th { "Expires in" } th {} }
                    @for w in &waiting {
                        @let hex = w.pending.signal_id.to_hex();
                        @let sig = signals.iter().find(|s| s.signal.id == w.pending.signal_id);
                        tr id={ "pending-" (hex) } {
                            td {
                                @if let Some(s) = sig {
                                    strong { (s.signal.symbol) " " (s.signal.side.as_str()) } " "
                                    span.mute { (s.signal.timeframe.as_str()) " · entry " (s.signal.entry) " · SL " (s.signal.stop) " · TP " (s.signal.tp1) }
                                } @else { (hex) }
                            }
                            td { (w.line) }
                            td.countdown data-remaining-ms=((w.pending.expires_at_ms - market).max(0)) { (age(w.pending.expires_at_ms, market).replace(" ago", "")) }
                            td {
                                form.inline method="post" action={ "/ui/signals/" (hex) "/approve" } hx-post={ "/ui/signals/" (hex) "/approve" } hx-target="#main" hx-select="#main" hx-swap="outerHTML" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.approve type="submit" { "Approve" }
                                }
                                " "
                                form.inline method="post" action={ "/ui/signals/" (hex) "/reject" } hx-post={ "/ui/signals/" (hex) "/reject" } hx-target="#main" hx-select="#main" hx-swap="outerHTML" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.reject type="submit" { "Reject" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            div.head {
                h2 { "Open positions" }
                @if !positions.is_empty() {
                    form.inline method="post" action="/ui/close-all" hx-post="/ui/close-all" hx-target="#main" hx-select="#main" hx-swap="outerHTML" hx-confirm="Close every position and pending order Tradecast opened?" {
                        input type="hidden" name="csrf" value=(csrf);
                        button.reject type="submit" id="close-all" { "Close all" }
                    }
                }
            }
            @if positions.is_empty() {
                div.empty { "No open position." }
            } @else {
                table {
                    tr { th { "Symbol" } th { "Side" } th { "Lots" } th { "Open" } th { "SL" } th { "TP" } th { "Opened" } th { "Floating P&L" } }
                    @for p in &positions {
                        tr {
                            td { (p.symbol) }
                            td { (if p.side == ea::Side::Buy { "buy" } else { "sell" }) }
                            td { (p.volume) }
                            td { (p.open_price) }
                            td { (p.sl.map(|v| v.to_string()).unwrap_or_else(|| "—".into())) }
                            td { (p.tp.map(|v| v.to_string()).unwrap_or_else(|| "—".into())) }
                            td.mute { (fmt_utc(p.open_time_ms)) }
                            td class=(signed_class(p.profit)) { (money(Some(p.profit), currency)) }
                        }
                    }
                }
            }
        }
        section #plan {
            h2 { "Your plan" }
            @if gate == crate::policy::approval::PlanGate::ManualOnly {
                div.banner.warn id="no-auto-copy" { (crate::policy::approval::NO_AUTO_COPY) "." }
            }
            @if grants.is_empty() {
                div.empty { "No plan in force: signals from providers reach you once the hub grants one." }
            } @else {
                table {
                    tr { th { "Plan" } th { "Gives" } th { "Since (UTC)" } th { "Until (UTC)" } }
                    @for g in &grants {
                        tr {
                            td.mute { (g.plan_id.get(..8).unwrap_or(&g.plan_id)) }
                            td { (g.features.iter().map(|f| f.as_str().replace('_', "-")).collect::<Vec<_>>().join(", ")) }
                            td.mute { (fmt_utc(g.valid_from_ms)) }
                            td.mute { @match g.valid_until_ms { Some(t) => (fmt_utc(t)), None => "no end" } }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Equity and drawdown" }
            div id="equity-chart" {}
        }
    };
    layout(node, csrf, "Dashboard", body)
}

/// The equity chart's series: times (s), equity, balance, drawdown % below the running peak.
#[derive(Debug, Serialize)]
pub struct EquitySeries {
    pub t: Vec<i64>,
    pub equity: Vec<f64>,
    pub balance: Vec<f64>,
    pub drawdown: Vec<f64>,
}

/// The first account's equity points as chart series (floats only for drawing).
pub fn equity_series(node: &Node) -> Result<EquitySeries, NodeError> {
    use rust_decimal::prelude::ToPrimitive;
    let mut s = EquitySeries {
        t: Vec::new(),
        equity: Vec::new(),
        balance: Vec::new(),
        drawdown: Vec::new(),
    };
    let Some(acc) = node.accounts()?.into_iter().next() else { return Ok(s) };
    let mut peak = Decimal::ZERO;
    for p in node.equity(&acc.account)? {
        peak = peak.max(p.equity);
        let dd = if peak > Decimal::ZERO {
            ((peak - p.equity) / peak * Decimal::ONE_HUNDRED).to_f64().unwrap_or(0.0)
        } else {
            0.0
        };
        s.t.push(p.at_ms / 1_000);
        s.equity.push(p.equity.to_f64().unwrap_or(0.0));
        s.balance.push(p.balance.to_f64().unwrap_or(0.0));
        s.drawdown.push(dd);
    }
    Ok(s)
}

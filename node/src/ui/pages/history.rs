//! The history: closed trades, per-symbol stats (win rate, profit factor, costs included), and
//! P&L by day, week and month of the broker's server time; the links to download the closed
//! trades ([`crate::export`]).

use std::collections::BTreeMap;

use maud::{Markup, html};
use rust_decimal::Decimal;
use tradecast_protocol::ea::{self, DealEntry};

use super::{PageResult, layout, money, signed_class};
use crate::policy::fmt_utc;
use crate::runtime::Node;

/// Profit of a closing deal, costs included.
fn net(d: &ea::Deal) -> Decimal {
    d.profit + d.commission + d.swap + d.fee
}

/// One symbol's closed deals, costs included.
#[derive(Debug, Default, Clone, Copy)]
struct SymbolStats {
    closes: u32,
    won: u32,
    gross_profit: Decimal,
    gross_loss: Decimal,
}

impl SymbolStats {
    fn add(&mut self, net: Decimal) {
        self.closes += 1;
        if net > Decimal::ZERO {
            self.won += 1;
            self.gross_profit += net;
        } else {
            self.gross_loss += net;
        }
    }

    fn merge(self, o: &SymbolStats) -> SymbolStats {
        SymbolStats {
            closes: self.closes + o.closes,
            won: self.won + o.won,
            gross_profit: self.gross_profit + o.gross_profit,
            gross_loss: self.gross_loss + o.gross_loss,
        }
    }

    fn net(&self) -> Decimal {
        self.gross_profit + self.gross_loss
    }
}

fn stats_row(name: &str, st: &SymbolStats, currency: &str, total: bool) -> Markup {
    let rate = Decimal::from(st.won * 100)
        .checked_div(Decimal::from(st.closes.max(1)))
        .unwrap_or_default()
        .round_dp(0);
    let pf = if st.gross_loss.is_zero() {
        if st.gross_profit > Decimal::ZERO { "∞".to_owned() } else { "—".to_owned() }
    } else {
        (st.gross_profit / -st.gross_loss).round_dp(2).to_string()
    };
    let average = st.net().checked_div(Decimal::from(st.closes.max(1))).unwrap_or_default();
    html! {
        tr class=(if total { "total" } else { "" }) {
            td { (name) }
            td { (st.closes) }
            td { (st.won) }
            td { (rate) " %" }
            td.up { (money(Some(st.gross_profit), currency)) }
            td.down { (money(Some(st.gross_loss), currency)) }
            td { (pf) }
            td class=(signed_class(average)) { (money(Some(average), currency)) }
            td class=(signed_class(st.net())) { (money(Some(st.net()), currency)) }
        }
    }
}

/// The downloads of the closed trades ([`crate::export`]), once an EA said hello.
fn downloads(has_account: bool) -> Markup {
    html! {
        section id="export" {
            h2 { "Export" }
            @if has_account {
                p {
                    a #export-csv href="/history/export.csv" download { "Download for Myfxbook & journals (CSV)" }
                    " · "
                    a #export-json href="/history/export.json" download { "Download (JSON)" }
                }
                div.hint {
                    "Every closed trade; import the CSV as \"Myfxbook\" in your journal. Times are the broker's server time (CSV) or UTC (JSON); no login or account number is in either file."
                }
            } @else {
                div.empty { "Downloads appear once the EA has said hello." }
            }
        }
    }
}

/// The history: closed trades, per-symbol stats, P&L by day, week and month of the broker's
/// server time (the deal's UTC time plus the offset the EA reported at hello).
pub fn history(node: &Node, csrf: &str) -> PageResult {
    let accounts = node.accounts()?;
    let currency = accounts.first().map(|a| a.currency.clone()).unwrap_or_default();
    let mut deals: Vec<ea::Deal> = Vec::new();
    for a in &accounts {
        deals.extend(
            node.deal_list(&a.account)?.into_iter().filter(|d| {
                matches!(d.entry, DealEntry::Out | DealEntry::OutBy | DealEntry::Inout)
            }),
        );
    }
    let mut by_symbol: BTreeMap<String, SymbolStats> = BTreeMap::new();
    let mut by_day: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_week: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_month: BTreeMap<String, Decimal> = BTreeMap::new();
    let offset_ms = accounts.first().map(|a| i64::from(a.server_utc_offset_s) * 1_000).unwrap_or(0);
    for d in &deals {
        let p = net(d);
        by_symbol.entry(d.symbol.clone()).or_default().add(p);
        // The broker's server day, as MT5 shows it (the daily loss limit uses the same day).
        let server_ms = d.time_ms.saturating_add(offset_ms);
        if let Ok(dt) = jiff::Timestamp::from_millisecond(server_ms) {
            *by_day.entry(dt.strftime("%Y-%m-%d").to_string()).or_default() += p;
            *by_week.entry(dt.strftime("%G-W%V").to_string()).or_default() += p;
            *by_month.entry(dt.strftime("%Y-%m").to_string()).or_default() += p;
        }
    }
    let period = |title: &str, m: &BTreeMap<String, Decimal>| {
        html! {
            section {
                h2 { (title) }
                @if m.is_empty() { div.empty { "Nothing closed yet." } } @else {
                    table {
                        @for (k, v) in m.iter().rev().take(31) {
                            tr { td { (k) } td class=(signed_class(*v)) { (money(Some(*v), &currency)) } }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        (downloads(!accounts.is_empty()))
        section {
            h2 { "Per symbol" }
            @if by_symbol.is_empty() { div.empty { "No closed trade yet." } } @else {
                @let total = by_symbol.values().fold(SymbolStats::default(), |a, b| a.merge(b));
                table {
                    tr { th { "Symbol" } th { "Closes" } th { "Won" } th { "Win rate" } th { "Gross profit" } th { "Gross loss" } th { "Profit factor" } th { "Average" } th { "Net P&L" } }
                    @for (sym, st) in &by_symbol {
                        (stats_row(sym, st, &currency, false))
                    }
                    @if by_symbol.len() > 1 { (stats_row("All symbols", &total, &currency, true)) }
                }
            }
        }
        div.grid2 {
            (period("Daily P&L (broker's server day)", &by_day))
            div { (period("Weekly P&L", &by_week)) (period("Monthly P&L", &by_month)) }
        }
        section {
            h2 { "Closed trades" }
            @if deals.is_empty() { div.empty { "No closed trade yet." } } @else {
                table {
                    tr { th { "Closed" } th { "Symbol" } th { "Lots" } th { "Price" } th { "Net P&L" } }
                    @for d in deals.iter().rev().take(200) {
                        tr {
                            td.mute { (fmt_utc(d.time_ms)) }
                            td { (d.symbol) }
                            td { (d.volume) }
                            td { (d.price) }
                            td class=(signed_class(net(d))) { (money(Some(net(d)), &currency)) }
                        }
                    }
                }
            }
        }
    };
    layout(node, csrf, "History", body)
}

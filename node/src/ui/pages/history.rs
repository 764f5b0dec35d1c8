//! The history: closed trades, per-symbol stats (win rate, profit factor, costs included), and
//! P&L by day, week and month of the broker's server time; the links to download the closed
//! trades ([`crate::export`]).

use std::collections::BTreeMap;

use maud::{Markup, html};
use rust_decimal::Decimal;

use super::{PageResult, layout, money, signed_class};
use crate::export::ClosedTrade;
use crate::policy::fmt_utc;
use crate::runtime::Node;

/// One symbol's closed trades, costs included (the opening deal's share too). Sums are checked:
/// a trade whose figures would overflow them is not counted (no real account gets there).
#[derive(Debug, Default, Clone, Copy)]
struct SymbolStats {
    closes: u32,
    won: u32,
    gross_profit: Decimal,
    gross_loss: Decimal,
}

impl SymbolStats {
    fn add(&mut self, net: Decimal) {
        let (profit, loss) = if net > Decimal::ZERO {
            (self.gross_profit.checked_add(net), Some(self.gross_loss))
        } else {
            (Some(self.gross_profit), self.gross_loss.checked_add(net))
        };
        let (Some(profit), Some(loss)) = (profit, loss) else { return };
        self.closes = self.closes.saturating_add(1);
        if net > Decimal::ZERO {
            self.won = self.won.saturating_add(1);
        }
        (self.gross_profit, self.gross_loss) = (profit, loss);
    }

    fn merge(self, o: &SymbolStats) -> SymbolStats {
        SymbolStats {
            closes: self.closes.saturating_add(o.closes),
            won: self.won.saturating_add(o.won),
            gross_profit: self
                .gross_profit
                .checked_add(o.gross_profit)
                .unwrap_or(self.gross_profit),
            gross_loss: self.gross_loss.checked_add(o.gross_loss).unwrap_or(self.gross_loss),
        }
    }

    fn net(&self) -> Decimal {
        self.gross_profit.checked_add(self.gross_loss).unwrap_or_default()
    }
}

/// Adds `v` to `m[k]` (checked; an overflowing sum keeps its value).
fn bump(m: &mut BTreeMap<String, Decimal>, k: String, v: Decimal) {
    let e = m.entry(k).or_default();
    if let Some(sum) = e.checked_add(v) {
        *e = sum;
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
        st.gross_profit
            .checked_div(-st.gross_loss)
            .map_or_else(|| "—".to_owned(), |pf| pf.round_dp(2).to_string())
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

/// The history: closed trades (each closing deal paired with its opening, [`crate::export`]:
/// costs of both sides, the same rows as the export), per-symbol stats, P&L by day, week and
/// month of the broker's server time (the close's UTC time plus the offset the EA reported at
/// hello).
pub fn history(node: &Node, csrf: &str) -> PageResult {
    let accounts = node.accounts()?;
    let currency = accounts.first().map(|a| a.currency.clone()).unwrap_or_default();
    let mut trades: Vec<ClosedTrade> = Vec::new();
    let mut left_out = 0usize;
    for a in &accounts {
        let book = crate::export::pair(&node.deal_list(&a.account)?, &BTreeMap::new());
        left_out = left_out.saturating_add(book.n_left_out);
        trades.extend(book.trades);
    }
    trades.sort_by_key(|t| (t.close_time_ms, t.close_deal));
    let mut by_symbol: BTreeMap<String, SymbolStats> = BTreeMap::new();
    let mut by_day: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_week: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_month: BTreeMap<String, Decimal> = BTreeMap::new();
    let offset_ms = accounts.first().map(|a| i64::from(a.server_utc_offset_s) * 1_000).unwrap_or(0);
    for t in &trades {
        let Some(p) = t.net() else { continue };
        by_symbol.entry(t.symbol.clone()).or_default().add(p);
        // The broker's server day, as MT5 shows it (the daily loss limit uses the same day).
        let server_ms = t.close_time_ms.saturating_add(offset_ms);
        if let Ok(dt) = jiff::Timestamp::from_millisecond(server_ms) {
            bump(&mut by_day, dt.strftime("%Y-%m-%d").to_string(), p);
            bump(&mut by_week, dt.strftime("%G-W%V").to_string(), p);
            bump(&mut by_month, dt.strftime("%Y-%m").to_string(), p);
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
            @if trades.is_empty() { div.empty { "No closed trade yet." } } @else {
                table {
                    tr { th { "Closed" } th { "Symbol" } th { "Side" } th { "Lots" } th { "Open → close" } th { "Net P&L" } }
                    @for t in trades.iter().rev().take(200) {
                        tr {
                            td.mute { (fmt_utc(t.close_time_ms)) }
                            td { (t.symbol) }
                            td { (t.side.as_str()) }
                            td { (t.lots) }
                            td { (t.open_price) " → " (t.close_price) }
                            td class=(signed_class(t.net().unwrap_or_default())) { (money(t.net(), &currency)) }
                        }
                    }
                }
            }
            @if left_out > 0 {
                div.hint #left-out {
                    (left_out) " closing deal(s) are not counted: their position was opened before "
                    "the node first read this account's deals, so their opening costs are unknown."
                }
            }
        }
    };
    layout(node, csrf, "History", body)
}

//! The UI's pages, rendered from the node's store on every request: the layout (nav, health:
//! EA link, hub link, last signal age, signal→fill; the CSRF token in `hx-headers`), the
//! dashboard, the copy log, the history and the settings page ([`SettingsForm`], applied onto
//! the policy in force and validated before it is saved; EA keys; the hub connection).

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, html};
use rust_decimal::Decimal;
use serde::Serialize;
use tradecast_protocol::ea::{self, DealEntry};

use crate::clock::wall_ms;
use crate::orders::Split;
use crate::policy::PolicySettings;
use crate::policy::approval::ApprovalMode;
use crate::policy::fmt_utc;
use crate::policy::sizing::LotMode;
use crate::runtime::{AccountRow, Node};

fn layout(node: &Node, csrf: &str, active: &str, body: Markup) -> Markup {
    layout_with(node, csrf, active, true, body)
}

/// The order → fill times (wall clock, ms) of the latest filled orders opened from signals,
/// newest first: from the node's decision (a signal in auto mode, the trader's approval in
/// manual mode) to the EA's committed fill ack.
pub fn fill_times_ms(node: &Node, n: usize) -> Vec<i64> {
    let mut v: Vec<(i64, i64)> = node
        .accounts()
        .unwrap_or_default()
        .iter()
        .flat_map(|a| node.orders(&a.account).unwrap_or_default())
        .filter(|o| o.signal_id.is_some())
        .filter_map(|o| o.filled_at_ms.map(|f| (f, (f - o.created_at_ms).max(0))))
        .collect();
    v.sort_by_key(|(f, _)| std::cmp::Reverse(*f));
    v.into_iter().take(n).map(|(_, ms)| ms).collect()
}

fn duration_words(ms: i64) -> String {
    if ms < 1_000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1_000.0) }
}

/// The page frame. `live`: the main block re-renders on the node's changes (not on a form the
/// trader is editing).
fn layout_with(node: &Node, csrf: &str, active: &str, live: bool, body: Markup) -> Markup {
    let now = wall_ms();
    let link_up = node.link_up(now);
    let last_signal = node.signals().ok().and_then(|v| v.last().map(|s| s.signal.bar_time_ms));
    let accounts = node.accounts().unwrap_or_default();
    let market = accounts.first().map(|a| a.market_ms).unwrap_or(0);
    let hub = match crate::store::hub_pin::hub_pin(node.store()) {
        Ok(Some(_)) => match node.hub_connected() {
            Some(true) => (true, "connected"),
            Some(false) => (false, "offline"),
            None => (false, "sync off"),
        },
        Ok(None) => (false, "not enrolled"),
        Err(_) => (false, "pin damaged"),
    };
    let fills = fill_times_ms(node, 20);
    let fill = if fills.is_empty() {
        "—".to_owned()
    } else {
        let mut sorted = fills.clone();
        sorted.sort_unstable();
        format!(
            "{} (median {})",
            duration_words(fills[0]),
            duration_words(sorted[sorted.len() / 2])
        )
    };
    let headers = serde_json::json!({ "X-CSRF-Token": csrf }).to_string();
    let nav = [
        ("/", "Dashboard"),
        ("/copy-log", "Copy log"),
        ("/history", "History"),
        ("/settings", "Settings"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { "Tradecast · " (active) }
                link rel="stylesheet" href="/assets/vendor/uPlot.min.css";
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/vendor/htmx.min.js" defer {}
                script src="/assets/vendor/uPlot.iife.min.js" defer {}
                script src="/assets/app.js" defer {}
            }
            body hx-headers=(headers) {
                header {
                    span.brand { "Tradecast" }
                    nav {
                        @for (href, name) in nav {
                            a href=(href) class=@if name == active { "on" } { (name) }
                        }
                    }
                    div.health id="health" {
                        span title="The Tradecast EA in MetaTrader 5: an authenticated call within the silence limit" { span.dot.ok[link_up] {} "EA link " (if link_up { "up" } else { "down" }) }
                        span title="The QUIC session with your provider's hub" { span.dot.ok[hub.0] {} "Hub " (hub.1) }
                        span title="Market clock: the terminal's time" { "Last signal " (last_signal.map(|t| age(market.max(t), t)).unwrap_or_else(|| "none yet".into())) }
                        span title="From the node's decision (auto) or your approval (manual) to the EA's fill, latest and median of the last 20" { "Signal→fill " (fill) }
                        form.inline method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                @if live {
                    main id="main" hx-get=(nav.iter().find(|(_, n)| *n == active).map(|(h, _)| *h).unwrap_or("/"))
                        hx-trigger="tc-refresh from:body" hx-select="#main" hx-select-oob="#health" hx-swap="outerHTML" {
                        (body)
                    }
                } @else {
                    main id="main" { (body) }
                }
            }
        }
    }
}

/// How long ago `then_ms` was at `now_ms`, in words.
fn age(now_ms: i64, then_ms: i64) -> String {
    let s = (now_ms - then_ms).max(0) / 1_000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3_600 => format!("{} min ago", s / 60),
        3_600..86_400 => format!("{} h {} min ago", s / 3_600, (s % 3_600) / 60),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `1234567.891` as `1,234,567.89`: two decimals, thousands grouped.
fn amount(v: Decimal) -> String {
    let text = format!("{:.2}", v.round_dp(2));
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{frac}")
}

fn money(v: Option<Decimal>, currency: &str) -> String {
    match v {
        Some(v) => format!("{} {currency}", amount(v)),
        None => "—".into(),
    }
}

fn signed_class(v: Decimal) -> &'static str {
    if v > Decimal::ZERO {
        "up"
    } else if v < Decimal::ZERO {
        "down"
    } else {
        ""
    }
}

/// The page shown without a session.
pub fn signed_out() -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Tradecast · sign in" } link rel="stylesheet" href="/assets/app.css"; }
            body { main {
                section {
                    h2 { "Sign in" }
                    p { "Open the link that " code { "tradecast-node ui-url --data DIR" } " prints on this machine." }
                }
            } }
        }
    }
}

fn notice_banner(notice: &Option<Result<String, String>>) -> Markup {
    html! {
        @match notice {
            Some(Ok(m)) => div.banner.ok { (m) },
            Some(Err(m)) => div.banner.err { (m) },
            None => {},
        }
    }
}

/// The dashboard.
pub fn dashboard(node: &Node, csrf: &str, notice: Option<Result<String, String>>) -> Markup {
    let accounts = node.accounts().unwrap_or_default();
    let acc: Option<&AccountRow> = accounts.first();
    let currency = acc.map(|a| a.currency.as_str()).unwrap_or("");
    // The market clock: the latest terminal time the EA reported (polls included).
    let market = acc.and_then(|a| node.market_ms(&a.account).ok()).unwrap_or(0);
    let positions: Vec<_> = acc
        .and_then(|a| node.positions(&a.account).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.open)
        .collect();
    let floating: Decimal = positions.iter().map(|p| p.profit).sum();
    let signals = node.signals().unwrap_or_default();
    let waiting: Vec<_> = node
        .approvals()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.pending.decided().is_none())
        .collect();
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
                                    strong { (s.signal.symbol) " " (format!("{:?}", s.signal.side).to_lowercase()) } " "
                                    span.mute { (format!("{:?}", s.signal.timeframe)) " · entry " (s.signal.entry) " · SL " (s.signal.stop) " · TP " (s.signal.tp1) }
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
        section {
            h2 { "Equity and drawdown" }
            div id="equity-chart" {}
        }
    };
    layout(node, csrf, "Dashboard", body)
}

/// The copy log, newest first.
pub fn copy_log(node: &Node, csrf: &str) -> Markup {
    let mut log = node.copy_log().unwrap_or_default();
    log.reverse();
    let approvals = node.approvals().unwrap_or_default();
    let accounts = node.accounts().unwrap_or_default();
    let orders: Vec<_> =
        accounts.iter().flat_map(|a| node.orders(&a.account).unwrap_or_default()).collect();
    let body = html! {
        section {
            h2 { "Copy log" }
            @if log.is_empty() {
                div.empty { "No signal evaluated yet." }
            } @else {
                table {
                    tr { th { "Evaluated (market clock)" } th { "Signal" } th { "Outcome" } th { "Decision" } th { "MT5" } }
                    @for e in log.iter().take(500) {
                        @let decided = approvals.iter().find(|a| a.pending.signal_id == e.signal_id).and_then(|a| a.pending.decided().cloned());
                        @let sent: Vec<_> = orders.iter().filter(|o| o.signal_id == Some(e.signal_id)).collect();
                        tr {
                            td.mute { (fmt_utc(e.at_ms)) }
                            td { (e.canonical_symbol) }
                            td class=(if e.accepted { "" } else { "down" }) {
                                (e.line)
                                details {
                                    summary { "steps" }
                                    ul.steps {
                                        @for st in &e.steps {
                                            li class=(if st.passed { "" } else { "fail" }) { (st.rule.as_str()) ": " (st.detail) }
                                        }
                                    }
                                }
                            }
                            td { @if let Some(d) = decided { (format!("{:?}", d.decision).to_lowercase()) ": " span.mute { (d.reason) } } @else { span.warn { "waiting" } } }
                            td {
                                @for o in &sent {
                                    div { (format!("{:?}", o.state).to_lowercase()) @if let Some(rc) = o.retcode { " · " (rc) " " span.mute { (o.explained) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(node, csrf, "Copy log", body)
}

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

/// The history: closed trades, per-symbol stats, P&L by day, week and month of the broker's
/// server time (the deal's UTC time plus the offset the EA reported at hello).
pub fn history(node: &Node, csrf: &str) -> Markup {
    let accounts = node.accounts().unwrap_or_default();
    let currency = accounts.first().map(|a| a.currency.clone()).unwrap_or_default();
    let deals: Vec<ea::Deal> = accounts
        .iter()
        .flat_map(|a| node.deal_list(&a.account).unwrap_or_default())
        .filter(|d| matches!(d.entry, DealEntry::Out | DealEntry::OutBy | DealEntry::Inout))
        .collect();
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

/// A settings form as posted: every field by name (the last value wins, so a checkbox's hidden
/// `off` before it reads as off when unchecked), and the repeated per-symbol fields. A field
/// the form did not send keeps the policy's value.
#[derive(Debug, Default)]
pub struct SettingsForm {
    fields: BTreeMap<String, String>,
    /// Canonical symbols listed in the per-symbol table (`sym_listed`).
    listed: Vec<String>,
    /// Of those, the ones ticked to copy (`sym_on`).
    on: Vec<String>,
}

fn dec(name: &str, v: &str) -> Result<Decimal, String> {
    v.trim().parse::<Decimal>().map_err(|_| format!("{name}: {v:?} is not a number"))
}

fn int(name: &str, v: &str) -> Result<u32, String> {
    v.trim().parse::<u32>().map_err(|_| format!("{name}: {v:?} is not a whole number"))
}

/// A comma- or space-separated list of symbols, upper-cased.
fn symbol_list(v: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v.split([',', ' ', '\n', '\r', '\t']).map(|s| s.trim().to_uppercase()) {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The symbol map's text: one `EURUSD = EURUSD.m` per line (canonical = broker name).
fn symbol_map(v: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (i, line) in v.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((canonical, broker)) = line.split_once('=') else {
            return Err(format!(
                "symbol map, line {}: {line:?} is not `EURUSD = EURUSD.m` (provider's name = broker's name)",
                i + 1
            ));
        };
        let (canonical, broker) = (canonical.trim().to_uppercase(), broker.trim().to_owned());
        if canonical.is_empty() || broker.is_empty() || broker.contains(char::is_whitespace) {
            return Err(format!("symbol map, line {}: {line:?} needs a name on each side", i + 1));
        }
        map.insert(canonical, broker);
    }
    Ok(map)
}

impl SettingsForm {
    /// The form from its `application/x-www-form-urlencoded` pairs.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> SettingsForm {
        let mut f = SettingsForm::default();
        for (k, v) in pairs {
            match k.as_str() {
                "sym_listed" => f.listed.push(v.trim().to_uppercase()),
                "sym_on" => f.on.push(v.trim().to_uppercase()),
                _ => {
                    f.fields.insert(k, v);
                }
            }
        }
        f
    }

    /// The CSRF token the form carried.
    pub fn csrf(&self) -> Option<&str> {
        self.fields.get("csrf").map(String::as_str)
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str, current: bool) -> bool {
        match self.text(name) {
            Some(v) => v == "on",
            None => current,
        }
    }

    fn set_dec(&self, name: &str, label: &str, into: &mut Decimal) -> Result<(), String> {
        if let Some(v) = self.text(name) {
            *into = dec(label, v)?;
        }
        Ok(())
    }

    fn set_int(&self, name: &str, label: &str, into: &mut u32) -> Result<(), String> {
        if let Some(v) = self.text(name) {
            *into = int(label, v)?;
        }
        Ok(())
    }

    /// An optional decimal: blank is none.
    fn set_opt_dec(
        &self,
        name: &str,
        label: &str,
        into: &mut Option<Decimal>,
    ) -> Result<(), String> {
        if let Some(v) = self.text(name) {
            *into = if v.trim().is_empty() { None } else { Some(dec(label, v)?) };
        }
        Ok(())
    }

    /// The form applied onto `p`, validated.
    pub fn apply(&self, mut p: PolicySettings) -> Result<PolicySettings, String> {
        p.copying = self.flag("copying", p.copying);
        if let Some(mode) = self.text("approval_mode") {
            p.approval.mode = match mode {
                "auto" => ApprovalMode::Auto,
                _ => ApprovalMode::Manual,
            };
        }
        if self.text("consent").is_some() {
            p.approval.consent_version =
                if self.flag("consent", false) { p.approval.consent_version.max(1) } else { 0 };
        }
        p.approval.remote_approval = self.flag("remote_approval", p.approval.remote_approval);

        p.market_hours.enabled = self.flag("market_hours", p.market_hours.enabled);
        p.market_hours.broker_sessions =
            self.flag("broker_sessions", p.market_hours.broker_sessions);
        if let Some(v) = self.text("always_open") {
            p.market_hours.always_open = symbol_list(v);
        }
        self.set_int("max_signal_age_s", "max signal age", &mut p.max_signal_age_s)?;
        if let Some(v) = self.text("max_price_move_points") {
            p.max_price_move_points =
                if v.trim().is_empty() { None } else { Some(int("max price move", v)?) };
        }
        self.set_dec(
            "max_price_move_stop_fraction",
            "max price move (fraction of the stop distance)",
            &mut p.max_price_move_stop_fraction,
        )?;
        self.set_int("max_slippage_points", "max slippage", &mut p.max_slippage_points)?;
        p.copy_pending = self.flag("copy_pending", p.copy_pending);

        if let Some(v) = self.text("symbol_prefix") {
            p.symbols.prefix = v.trim().to_owned();
        }
        if let Some(v) = self.text("symbol_suffix") {
            p.symbols.suffix = v.trim().to_owned();
        }
        if let Some(v) = self.text("symbol_map") {
            p.symbols.map = symbol_map(v)?;
        }
        if let Some(v) = self.text("include") {
            p.symbols.include = symbol_list(v);
        }
        if let Some(v) = self.text("exclude") {
            p.symbols.exclude = symbol_list(v);
        }
        for sym in &self.listed {
            let rule = p.symbols.per_symbol.entry(sym.clone()).or_default();
            rule.enabled = self.on.contains(sym);
        }
        // A switch back on with no lot of its own is the default: no entry needed.
        p.symbols.per_symbol.retain(|_, r| !r.enabled || r.lot.is_some());

        if let Some(mode) = self.text("lot_mode") {
            let v = dec("lot value", self.text("lot_value").unwrap_or(""))?;
            p.lot = match mode {
                "fixed" => LotMode::Fixed { lots: v },
                "multiplier" => LotMode::Multiplier { factor: v },
                "proportional" => LotMode::Proportional {
                    lots: v,
                    per_balance: dec("balance step", self.text("per_balance").unwrap_or(""))?,
                },
                _ => LotMode::RiskPercent { percent: v },
            };
        }
        self.set_opt_dec("lot_min", "min lot", &mut p.lot_min)?;
        self.set_opt_dec("lot_max", "max lot", &mut p.lot_max)?;
        if let Some(v) = self.text("split") {
            p.split = if v == "halves" { Split::Halves } else { Split::Whole };
        }
        p.reverse = self.flag("reverse", p.reverse);
        p.copy_sl = self.flag("copy_sl", p.copy_sl);
        p.copy_tp = self.flag("copy_tp", p.copy_tp);
        p.copy_modifications = self.flag("copy_modifications", p.copy_modifications);
        p.copy_partial_closes = self.flag("copy_partial_closes", p.copy_partial_closes);

        self.set_int("max_open_positions", "max open positions", &mut p.risk.max_open_positions)?;
        self.set_int(
            "max_open_per_symbol",
            "max open per symbol",
            &mut p.risk.max_open_per_symbol,
        )?;
        self.set_dec("min_rr", "min reward/risk", &mut p.min_rr)?;
        self.set_dec("max_risk_pct", "max risk %", &mut p.max_risk_pct)?;
        self.set_dec(
            "daily_loss_limit_pct",
            "daily loss limit %",
            &mut p.risk.daily_loss_limit_pct,
        )?;
        self.set_opt_dec(
            "daily_loss_limit_money",
            "daily loss limit (money)",
            &mut p.risk.daily_loss_limit_money,
        )?;
        self.set_dec("drawdown_lock_pct", "drawdown lock %", &mut p.risk.drawdown_lock_pct)?;
        p.validate().map_err(|e| e.to_string())?;
        Ok(p)
    }
}

/// A checkbox that posts `off` when unticked (the hidden field before it).
fn check(name: &str, checked: bool, words: &str) -> Markup {
    html! {
        label.check {
            input type="hidden" name=(name) value="off";
            input type="checkbox" name=(name) value="on" checked[checked];
            " " (words)
        }
    }
}

/// A labelled text field with a hint under it.
fn field(name: &str, label: &str, value: &str, hint: &str) -> Markup {
    html! {
        label for=(name) { (label) }
        input id=(name) name=(name) value=(value);
        @if !hint.is_empty() { div.hint { (hint) } }
    }
}

/// One row of the per-symbol table: the provider's name, where it goes at the broker, the switch.
struct SymbolLine {
    canonical: String,
    broker: Result<String, String>,
    enabled: bool,
    /// Its own lot mode (`symbols.per_symbol.<SYM>.lot`), if any.
    lot: Option<LotMode>,
}

/// The canonical symbols the trader may want to switch: the ones signals came for, the ones the
/// policy names, and the broker's Market Watch read back through the prefix, suffix and map.
fn symbol_lines(node: &Node, p: &PolicySettings) -> Vec<SymbolLine> {
    let accounts = node.accounts().unwrap_or_default();
    let broker: Vec<String> =
        accounts.iter().flat_map(|a| a.symbols.iter().map(|s| s.symbol.clone())).collect();
    let mut names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for s in node.signals().unwrap_or_default() {
        names.insert(s.signal.symbol);
    }
    names.extend(p.symbols.per_symbol.keys().cloned());
    names.extend(p.symbols.include.iter().cloned());
    names.extend(p.symbols.map.keys().cloned());
    for b in &broker {
        if let Some((k, _)) = p.symbols.map.iter().find(|(_, v)| *v == b) {
            names.insert(k.clone());
        } else if let Some(c) = b
            .strip_prefix(p.symbols.prefix.as_str())
            .and_then(|x| x.strip_suffix(p.symbols.suffix.as_str()))
            && !c.is_empty()
            && !c.contains(['.', '#', '_'])
        {
            names.insert(c.to_owned());
        }
    }
    names
        .into_iter()
        .take(200)
        .map(|canonical| {
            let mapped = p.symbols.map_symbol(&canonical, broker.iter().map(String::as_str));
            let broker = match mapped {
                Ok(name) => Ok(name.to_owned()),
                Err(e) => Err(e.to_string()),
            };
            let rule = p.symbols.rule(&canonical);
            SymbolLine { canonical, broker, enabled: rule.enabled, lot: rule.lot }
        })
        .collect()
}

/// What the settings page shows once after an action: a saved policy, a new EA key's secret.
pub enum SettingsNotice {
    Saved(Result<String, String>),
    NewKey { key_id: String, secret: String },
}

/// The settings page.
pub fn settings(node: &Node, csrf: &str, notice: Option<SettingsNotice>) -> Markup {
    let p = node.policy().unwrap_or_default();
    let (lot_mode, lot_value, per_balance) = match &p.lot {
        LotMode::Fixed { lots } => ("fixed", lots.to_string(), String::new()),
        LotMode::Multiplier { factor } => ("multiplier", factor.to_string(), String::new()),
        LotMode::Proportional { lots, per_balance } => {
            ("proportional", lots.to_string(), per_balance.to_string())
        }
        LotMode::RiskPercent { percent } => ("risk_percent", percent.to_string(), String::new()),
    };
    let opt = |v: Option<Decimal>| v.map(|x| x.to_string()).unwrap_or_default();
    let map_text: String =
        p.symbols.map.iter().map(|(k, v)| format!("{k} = {v}\n")).collect::<String>();
    let lines = symbol_lines(node, &p);
    let full = toml::to_string_pretty(&p).unwrap_or_default();
    let keys = node.ea_key_ids();
    let hub = hub_view(node);
    let body = html! {
        @match &notice {
            Some(SettingsNotice::Saved(n)) => (notice_banner(&Some(n.clone()))),
            _ => {},
        }
        form method="post" action="/settings" hx-post="/settings" hx-target="#main" hx-select="#main" hx-swap="outerHTML" {
            input type="hidden" name="csrf" value=(csrf);
            div.grid3 {
                section {
                    h2 { "Copying and approval" }
                    (check("copying", p.copying, "Copy signals"))
                    label for="approval_mode" { "Approval" }
                    select id="approval_mode" name="approval_mode" {
                        option value="manual" selected[p.approval.mode == ApprovalMode::Manual] { "Manual: I approve each signal" }
                        option value="auto" selected[p.approval.mode == ApprovalMode::Auto] { "Automatic: the rules approve" }
                    }
                    (check("consent", p.approval.consent_version >= 1, "I accept the terms for automatic execution (auto mode needs this)"))
                    (check("remote_approval", p.approval.remote_approval, "Honour approvals from Telegram and the Mini App (only within these rules)"))
                    h2.sub { "Market and timing" }
                    (check("market_hours", p.market_hours.enabled, "Skip outside market hours and on holidays"))
                    (check("broker_sessions", p.market_hours.broker_sessions, "Respect the broker's sessions per symbol"))
                    (field("always_open", "Open around the clock", &p.market_hours.always_open.join(", "), "Symbols exempt from the FX week and holidays (crypto), comma-separated"))
                    (field("max_signal_age_s", "Ignore signals older than (s)", &p.max_signal_age_s.to_string(), "Market clock, from the close of the signal's bar"))
                    (field("max_price_move_points", "Max price move from the entry (points)", &p.max_price_move_points.map(|v| v.to_string()).unwrap_or_default(), "Blank: no limit in points"))
                    (field("max_price_move_stop_fraction", "Max price move (fraction of the stop distance)", &p.max_price_move_stop_fraction.to_string(), "0.25 = a quarter of entry→stop; 0: off"))
                    (field("max_slippage_points", "Max slippage (points)", &p.max_slippage_points.to_string(), "The deviation the EA accepts when it sends"))
                    (check("copy_pending", p.copy_pending, "Copy limit and stop entries as pending orders"))
                }
                section {
                    h2 { "Lot size" }
                    label for="lot_mode" { "Lot mode" }
                    select id="lot_mode" name="lot_mode" {
                        option value="risk_percent" selected[lot_mode == "risk_percent"] { "Risk % of equity at the stop" }
                        option value="fixed" selected[lot_mode == "fixed"] { "Fixed lots" }
                        option value="multiplier" selected[lot_mode == "multiplier"] { "Multiplier of the provider's lot" }
                        option value="proportional" selected[lot_mode == "proportional"] { "Lots per balance step" }
                    }
                    (field("lot_value", "Value (percent, lots or factor)", &lot_value, ""))
                    (field("per_balance", "Balance step (proportional mode)", &per_balance, "0.01 lots per 1000 of balance: value 0.01, step 1000"))
                    div.pair {
                        div { (field("lot_min", "Min lot", &opt(p.lot_min), "Blank: the broker's")) }
                        div { (field("lot_max", "Max lot", &opt(p.lot_max), "Blank: the broker's")) }
                    }
                    label for="split" { "Targets" }
                    select id="split" name="split" {
                        option value="whole" selected[p.split == Split::Whole] { "One position to the first target" }
                        option value="halves" selected[p.split == Split::Halves] { "Two halves, to the first and second target" }
                    }
                    (check("copy_sl", p.copy_sl, "Copy the stop loss"))
                    (check("copy_tp", p.copy_tp, "Copy the take profit"))
                    (check("reverse", p.reverse, "Reverse (trade against the provider)"))
                    (check("copy_modifications", p.copy_modifications, "Follow the provider's stop and target changes"))
                    (check("copy_partial_closes", p.copy_partial_closes, "Follow the provider's partial closes"))
                    h2.sub { "Risk" }
                    div.pair {
                        div { (field("max_open_positions", "Max open positions", &p.risk.max_open_positions.to_string(), "")) }
                        div { (field("max_open_per_symbol", "Max open per symbol", &p.risk.max_open_per_symbol.to_string(), "")) }
                    }
                    div.pair {
                        div { (field("min_rr", "Min reward/risk", &p.min_rr.to_string(), "To the first target, after spread")) }
                        div { (field("max_risk_pct", "Max risk per trade (%)", &p.max_risk_pct.to_string(), "Of equity, lost at the stop")) }
                    }
                    div.pair {
                        div { (field("daily_loss_limit_pct", "Daily loss limit (%)", &p.risk.daily_loss_limit_pct.to_string(), "Broker's server day; 0: off")) }
                        div { (field("daily_loss_limit_money", "Daily loss limit (money)", &opt(p.risk.daily_loss_limit_money), "Blank: none")) }
                    }
                    (field("drawdown_lock_pct", "Drawdown cap (% below peak equity)", &p.risk.drawdown_lock_pct.to_string(), "At it: no new position, the guard closes everything Tradecast opened and locks auto mode"))
                    @let guard = node.settings();
                    div.guard {
                        div { strong { "Drawdown guard: " } (p.risk.drawdown_lock_pct) " % below the peak"
                            @if let Some(d) = guard.daily_loss_max_pct { ", daily loss " (d) " %" } }
                        div.hint { "At the drawdown cap above the node closes everything Tradecast opened and locks auto mode until you unlock it; the EA keeps the floor on its own if the node goes silent. The guard's daily loss is daily_loss_max_pct in config.toml (read at start)." }
                    }
                }
                section {
                    h2 { "Symbols" }
                    div.pair {
                        div { (field("symbol_prefix", "Broker prefix", &p.symbols.prefix, "")) }
                        div { (field("symbol_suffix", "Broker suffix", &p.symbols.suffix, "EURUSD → EURUSD.m: .m")) }
                    }
                    label for="symbol_map" { "Symbol map (wins over prefix and suffix)" }
                    textarea id="symbol_map" name="symbol_map" rows="3" placeholder="GER40 = DE40.cash" { (map_text) }
                    div.hint { "One per line: provider's name = broker's name" }
                    (field("include", "Only copy", &p.symbols.include.join(", "), "Blank: every symbol"))
                    (field("exclude", "Never copy (comma-separated)", &p.symbols.exclude.join(", "), ""))
                    @if lines.is_empty() {
                        div.empty { "Symbols appear here once the EA reports the Market Watch or a signal arrives." }
                    } @else {
                        table.symbols {
                            tr { th { "Symbol" } th { "At the broker" } th { "Copy" } }
                            @for l in &lines {
                                tr {
                                    td {
                                        (l.canonical)
                                        @if let Some(lot) = &l.lot { div.hint { "own lot: " (lot) } }
                                    }
                                    td {
                                        @match &l.broker {
                                            Ok(name) => span { (name) },
                                            Err(why) => span.warn title=(why) { "not mapped" },
                                        }
                                    }
                                    td {
                                        input type="hidden" name="sym_listed" value=(l.canonical);
                                        input type="checkbox" name="sym_on" value=(l.canonical) checked[l.enabled] aria-label={ "Copy " (l.canonical) };
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.savebar { button.primary type="submit" { "Save settings" } span.mute { "The next signal is evaluated under what you save." } }
        }
        div.grid2 {
            section id="ea-keys" {
                h2 { "EA keys" }
                @if let Some(SettingsNotice::NewKey { key_id, secret }) = &notice {
                    div.banner.ok id="new-key" {
                        strong { "New EA key created. " }
                        "Paste both values into the Tradecast EA's inputs now: the secret is shown only this once and is stored sealed."
                        div.keypair {
                            span.k { "Key id" } code { (key_id) }
                            span.k { "Secret" } code id="new-secret" { (secret) }
                        }
                    }
                }
                p.mute { "The Tradecast EA in MetaTrader 5 signs every call with one of these keys. Revoke a key you no longer use: the EA holding it is refused at its next call." }
                @if keys.is_empty() {
                    div.empty { "No key yet: create one and paste it into the EA's inputs." }
                } @else {
                    table {
                        tr { th { "Key id" } th {} }
                        @for k in &keys {
                            tr {
                                td { code { (k) } }
                                td.right {
                                    form.inline method="post" action={ "/ui/ea-keys/" (k) "/revoke" } hx-post={ "/ui/ea-keys/" (k) "/revoke" } hx-target="#main" hx-select="#main" hx-swap="outerHTML" hx-confirm={ "Revoke " (k) "? The EA using it stops working until it gets a new key." } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.reject type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
                form method="post" action="/ui/ea-keys" hx-post="/ui/ea-keys" hx-target="#main" hx-select="#main" hx-swap="outerHTML" {
                    input type="hidden" name="csrf" value=(csrf);
                    p { button type="submit" id="new-ea-key" { "Create a key" } }
                }
            }
            section id="hub" {
                h2 { "Hub connection" }
                (hub)
            }
        }
        section {
            details {
                summary { "The whole policy in force (TOML; the same as GET /api/v1/policy)" }
                pre { (full) }
            }
        }
    };
    layout_with(node, csrf, "Settings", false, body)
}

/// The hub block of the settings page: enrolled or not, the pinned key, the link.
fn hub_view(node: &Node) -> Markup {
    let pin = crate::store::hub_pin::hub_pin(node.store());
    let device = node.device_id();
    html! {
        @match pin {
            Ok(Some(pin)) => {
                table.kv {
                    tr { td.mute { "Status" } td { (hub_status_words(node.hub_connected())) } }
                    tr { td.mute { "Hub address" } td { code { (pin.addr) } } }
                    tr { td.mute { "Hub key fingerprint" } td { code { (pin.key.device_id().to_text()) } } }
                    tr { td.mute { "This node's device id" } td { code { (device.to_text()) } } }
                }
                p.mute { "Compare the fingerprint with the one your provider's hub shows. Signals are verified with the provider's own key, whatever the hub says." }
            },
            Ok(None) => {
                p { "Not enrolled: this node trades only what it is given locally." }
                p.mute { "To receive your provider's signals, stop the node and run:" }
                pre { "tradecast-node enrol --data DIR --hub HOST:PORT --code CODE" }
                p.mute { "This node's device id: " code { (device.to_text()) } }
            },
            Err(e) => div.banner.err { "The hub pin in the store cannot be read: " (e) },
        }
    }
}

fn hub_status_words(connected: Option<bool>) -> Markup {
    html! {
        @match connected {
            Some(true) => { span.dot.ok {} "connected" },
            Some(false) => { span.dot {} "offline: reconnecting" },
            None => { span.dot.idle {} "enrolled, sync not running in this process" },
        }
    }
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
pub fn equity_series(node: &Node) -> EquitySeries {
    use rust_decimal::prelude::ToPrimitive;
    let mut s = EquitySeries {
        t: Vec::new(),
        equity: Vec::new(),
        balance: Vec::new(),
        drawdown: Vec::new(),
    };
    let Some(acc) = node.accounts().ok().and_then(|a| a.into_iter().next()) else { return s };
    let mut peak = Decimal::ZERO;
    for p in node.equity(&acc.account).unwrap_or_default() {
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
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn amounts_read_like_money() {
        for (v, want) in [
            ("0", "0.00"),
            ("5", "5.00"),
            ("999.994", "999.99"),
            ("1000", "1,000.00"),
            ("1234567.891", "1,234,567.89"),
            ("-1234.5", "-1,234.50"),
            ("-0.004", "0.00"),
            ("100000", "100,000.00"),
        ] {
            assert_eq!(amount(d(v)), want, "{v}");
        }
    }

    fn form(pairs: &[(&str, &str)]) -> SettingsForm {
        SettingsForm::from_pairs(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        )
    }

    #[test]
    fn a_form_changes_only_what_it_sends() {
        let base = PolicySettings::default();
        assert_eq!(form(&[("csrf", "x")]).apply(base.clone()), Ok(base.clone()));
        // A checkbox: the hidden `off`, then `on` when ticked; the last value wins.
        let p = form(&[("reverse", "off"), ("reverse", "on"), ("copy_tp", "off")])
            .apply(base.clone())
            .expect("valid");
        assert!(p.reverse && !p.copy_tp && p.copy_sl);
        // Optional numbers: blank is none.
        let p = form(&[("lot_max", "2"), ("max_price_move_points", "12")]).apply(base.clone());
        let p = p.expect("valid");
        assert_eq!((p.lot_max, p.max_price_move_points), (Some(d("2")), Some(12)));
        let p = form(&[("lot_max", " "), ("max_price_move_points", "")]).apply(p).expect("valid");
        assert_eq!((p.lot_max, p.max_price_move_points), (None, None));
    }

    #[test]
    fn symbol_lists_maps_and_switches() {
        let p = form(&[
            ("symbol_map", "ger40 = DE40.cash\n\n XAUUSD=GOLD "),
            ("include", "eurusd,GBPUSD  usdjpy\nEURUSD"),
            ("sym_listed", "EURUSD"),
            ("sym_listed", "usdjpy"),
            ("sym_on", "EURUSD"),
        ])
        .apply(PolicySettings::default())
        .expect("valid");
        assert_eq!(p.symbols.map.get("GER40").map(String::as_str), Some("DE40.cash"));
        assert_eq!(p.symbols.map.get("XAUUSD").map(String::as_str), Some("GOLD"));
        assert_eq!(p.symbols.include, vec!["EURUSD", "GBPUSD", "USDJPY"]);
        assert!(p.symbols.rule("EURUSD").enabled && !p.symbols.rule("USDJPY").enabled);
        assert!(!p.symbols.per_symbol.contains_key("EURUSD"), "on and no own lot: no entry");
        // Switched back on, the entry goes.
        let p = form(&[("sym_listed", "USDJPY"), ("sym_on", "USDJPY")]).apply(p).expect("valid");
        assert!(p.symbols.per_symbol.is_empty());
        for (text, want) in [
            ("EURUSD EURUSD.m", "symbol map, line 1"),
            ("EURUSD = EURUSD.m\n= GOLD", "symbol map, line 2"),
            ("EURUSD = EUR USD", "symbol map, line 1"),
        ] {
            let e = form(&[("symbol_map", text)]).apply(PolicySettings::default());
            assert!(e.as_ref().is_err_and(|m| m.starts_with(want)), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn bad_numbers_and_invalid_policies_are_refused_in_words() {
        let base = PolicySettings::default();
        for (pairs, want) in [
            (
                vec![("max_open_positions", "five")],
                "max open positions: \"five\" is not a whole number",
            ),
            (vec![("min_rr", "1,5")], "min reward/risk: \"1,5\" is not a number"),
            (vec![("lot_mode", "fixed"), ("lot_value", "0")], "must be above 0"),
            (vec![("lot_min", "2"), ("lot_max", "1")], "lot_min"),
            (vec![("lot_mode", "risk_percent"), ("lot_value", "1"), ("copy_sl", "off")], "copy_sl"),
        ] {
            let e = form(&pairs).apply(base.clone());
            assert!(e.as_ref().is_err_and(|m| m.contains(want)), "{pairs:?}: {e:?}");
        }
    }
}

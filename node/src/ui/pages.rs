//! The UI's pages, rendered from the node's store on every request: the layout (nav, health,
//! the CSRF token in `hx-headers`), the dashboard, the copy log, the history and the settings
//! form ([`SettingsForm`], applied onto the policy in force and validated before it is saved).

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, html};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tradecast_protocol::ea::{self, DealEntry};

use crate::policy::PolicySettings;
use crate::policy::approval::ApprovalMode;
use crate::policy::fmt_utc;
use crate::policy::sizing::LotMode;
use crate::runtime::{AccountRow, Node, wall_ms};

fn layout(node: &Node, csrf: &str, active: &str, body: Markup) -> Markup {
    let now = wall_ms();
    let link_up = node.link_up(now);
    let last_signal = node.signals().ok().and_then(|v| v.last().map(|s| s.signal.bar_time_ms));
    let accounts = node.accounts().unwrap_or_default();
    let market = accounts.first().map(|a| a.market_ms).unwrap_or(0);
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
                        span { span.dot.ok[link_up] {} "EA link " (if link_up { "up" } else { "down" }) }
                        span { "Last signal: " (last_signal.map(|t| age(market.max(t), t)).unwrap_or_else(|| "none yet".into())) }
                        span.mute { "Device " (node.device_id().fmt_short()) }
                    }
                }
                main id="main" hx-get=(nav.iter().find(|(_, n)| *n == active).map(|(h, _)| *h).unwrap_or("/"))
                    hx-trigger="tc-refresh from:body" hx-select="#main" hx-swap="outerHTML" {
                    (body)
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

fn money(v: Option<Decimal>, currency: &str) -> String {
    match v {
        Some(v) => format!("{} {currency}", v.round_dp(2)),
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
            div.banner.lock { "Auto mode is locked by the drawdown guard: " (a.lock_reason) ". Signals wait for you." }
        }
        div.cards {
            div.card { div.k { "Balance" } div.v { (money(acc.and_then(|a| a.balance), currency)) } }
            div.card { div.k { "Equity" } div.v { (money(acc.and_then(|a| a.equity), currency)) } }
            div.card { div.k { "Margin" } div.v { (money(acc.and_then(|a| a.margin), currency)) } }
            div.card { div.k { "Free margin" } div.v { (money(acc.and_then(|a| a.free_margin), currency)) } }
            div.card { div.k { "Floating P&L" } div.v class=(signed_class(floating)) { (money(Some(floating), currency)) } }
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
            h2 { "Open positions" }
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

/// The history: closed trades, per-symbol stats, P&L by day, week and month (server time of the
/// deal, UTC here).
pub fn history(node: &Node, csrf: &str) -> Markup {
    let accounts = node.accounts().unwrap_or_default();
    let currency = accounts.first().map(|a| a.currency.clone()).unwrap_or_default();
    let deals: Vec<ea::Deal> = accounts
        .iter()
        .flat_map(|a| node.deal_list(&a.account).unwrap_or_default())
        .filter(|d| matches!(d.entry, DealEntry::Out | DealEntry::OutBy | DealEntry::Inout))
        .collect();
    let mut by_symbol: BTreeMap<String, (u32, u32, Decimal)> = BTreeMap::new();
    let mut by_day: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_week: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_month: BTreeMap<String, Decimal> = BTreeMap::new();
    for d in &deals {
        let p = net(d);
        let e = by_symbol.entry(d.symbol.clone()).or_default();
        e.0 += 1;
        if p > Decimal::ZERO {
            e.1 += 1;
        }
        e.2 += p;
        if let Ok(ts) = jiff::Timestamp::from_millisecond(d.time_ms) {
            let dt = ts;
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
                table {
                    tr { th { "Symbol" } th { "Closes" } th { "Win rate" } th { "Net P&L" } }
                    @for (sym, (n, wins, pnl)) in &by_symbol {
                        tr {
                            td { (sym) }
                            td { (n) }
                            td { (format!("{:.0} %", f64::from(*wins) * 100.0 / f64::from((*n).max(1)))) }
                            td class=(signed_class(*pnl)) { (money(Some(*pnl), &currency)) }
                        }
                    }
                }
            }
        }
        div.grid2 {
            (period("Daily P&L", &by_day))
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

/// The settings form's fields (the policy's everyday keys; the rest keep their values).
#[derive(Debug, Default, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    pub csrf: Option<String>,
    #[serde(default)]
    pub copying: Option<String>,
    pub approval_mode: String,
    #[serde(default)]
    pub consent: Option<String>,
    #[serde(default)]
    pub remote_approval: Option<String>,
    pub lot_mode: String,
    pub lot_value: String,
    #[serde(default)]
    pub per_balance: String,
    pub max_open_positions: String,
    pub max_open_per_symbol: String,
    pub max_signal_age_s: String,
    pub min_rr: String,
    pub max_risk_pct: String,
    pub daily_loss_limit_pct: String,
    pub drawdown_lock_pct: String,
    #[serde(default)]
    pub symbol_prefix: String,
    #[serde(default)]
    pub symbol_suffix: String,
    #[serde(default)]
    pub exclude: String,
    #[serde(default)]
    pub reverse: Option<String>,
    #[serde(default)]
    pub copy_sl: Option<String>,
    #[serde(default)]
    pub copy_tp: Option<String>,
}

fn dec(name: &str, v: &str) -> Result<Decimal, String> {
    v.trim().parse::<Decimal>().map_err(|_| format!("{name}: {v:?} is not a number"))
}

fn int(name: &str, v: &str) -> Result<u32, String> {
    v.trim().parse::<u32>().map_err(|_| format!("{name}: {v:?} is not a whole number"))
}

impl SettingsForm {
    /// The form applied onto `p`, validated.
    pub fn apply(&self, mut p: PolicySettings) -> Result<PolicySettings, String> {
        p.copying = self.copying.is_some();
        p.approval.mode = match self.approval_mode.as_str() {
            "auto" => ApprovalMode::Auto,
            _ => ApprovalMode::Manual,
        };
        if self.consent.is_some() {
            p.approval.consent_version = p.approval.consent_version.max(1);
        } else {
            p.approval.consent_version = 0;
        }
        p.approval.remote_approval = self.remote_approval.is_some();
        let v = dec("lot value", &self.lot_value)?;
        p.lot = match self.lot_mode.as_str() {
            "fixed" => LotMode::Fixed { lots: v },
            "multiplier" => LotMode::Multiplier { factor: v },
            "proportional" => LotMode::Proportional {
                lots: v,
                per_balance: dec("per balance", &self.per_balance)?,
            },
            _ => LotMode::RiskPercent { percent: v },
        };
        p.risk.max_open_positions = int("max open positions", &self.max_open_positions)?;
        p.risk.max_open_per_symbol = int("max open per symbol", &self.max_open_per_symbol)?;
        p.max_signal_age_s = int("max signal age", &self.max_signal_age_s)?;
        p.min_rr = dec("min reward/risk", &self.min_rr)?;
        p.max_risk_pct = dec("max risk %", &self.max_risk_pct)?;
        p.risk.daily_loss_limit_pct = dec("daily loss limit %", &self.daily_loss_limit_pct)?;
        p.risk.drawdown_lock_pct = dec("drawdown lock %", &self.drawdown_lock_pct)?;
        p.symbols.prefix = self.symbol_prefix.trim().to_owned();
        p.symbols.suffix = self.symbol_suffix.trim().to_owned();
        p.symbols.exclude = self
            .exclude
            .split([',', ' '])
            .map(|s| s.trim().to_uppercase())
            .filter(|s| !s.is_empty())
            .collect();
        p.reverse = self.reverse.is_some();
        p.copy_sl = self.copy_sl.is_some();
        p.copy_tp = self.copy_tp.is_some();
        p.validate().map_err(|e| e.to_string())?;
        Ok(p)
    }
}

/// The settings page.
pub fn settings(node: &Node, csrf: &str, notice: Option<Result<String, String>>) -> Markup {
    let p = node.policy().unwrap_or_default();
    let (lot_mode, lot_value, per_balance) = match &p.lot {
        LotMode::Fixed { lots } => ("fixed", lots.to_string(), String::new()),
        LotMode::Multiplier { factor } => ("multiplier", factor.to_string(), String::new()),
        LotMode::Proportional { lots, per_balance } => {
            ("proportional", lots.to_string(), per_balance.to_string())
        }
        LotMode::RiskPercent { percent } => ("risk_percent", percent.to_string(), String::new()),
    };
    let full = toml::to_string_pretty(&p).unwrap_or_default();
    let body = html! {
        (notice_banner(&notice))
        form method="post" action="/settings" hx-post="/settings" hx-target="#main" hx-select="#main" hx-swap="outerHTML" {
            input type="hidden" name="csrf" value=(csrf);
            div.grid2 {
                section {
                    h2 { "Copying and approval" }
                    label { input type="checkbox" name="copying" checked[p.copying]; " Copy signals" }
                    label for="approval_mode" { "Approval" }
                    select id="approval_mode" name="approval_mode" {
                        option value="manual" selected[p.approval.mode == ApprovalMode::Manual] { "Manual: each signal waits for me until it expires" }
                        option value="auto" selected[p.approval.mode == ApprovalMode::Auto] { "Automatic: approve every signal the rules accept" }
                    }
                    label { input type="checkbox" name="consent" checked[p.approval.consent_version >= 1]; " I accept the terms for automatic execution (auto mode needs this)" }
                    label { input type="checkbox" name="remote_approval" checked[p.approval.remote_approval]; " Honour approvals from Telegram and the Mini App" }
                    h2 { "Symbols" }
                    label for="symbol_prefix" { "Broker prefix" } input id="symbol_prefix" name="symbol_prefix" value=(p.symbols.prefix);
                    label for="symbol_suffix" { "Broker suffix (EURUSD → EURUSD.m: .m)" } input id="symbol_suffix" name="symbol_suffix" value=(p.symbols.suffix);
                    label for="exclude" { "Never copy (comma-separated)" } input id="exclude" name="exclude" value=(p.symbols.exclude.join(", "));
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
                    label for="lot_value" { "Value (percent, lots or factor)" } input id="lot_value" name="lot_value" value=(lot_value);
                    label for="per_balance" { "Balance step (proportional mode)" } input id="per_balance" name="per_balance" value=(per_balance);
                    label { input type="checkbox" name="copy_sl" checked[p.copy_sl]; " Copy the stop loss" }
                    label { input type="checkbox" name="copy_tp" checked[p.copy_tp]; " Copy the take profit" }
                    label { input type="checkbox" name="reverse" checked[p.reverse]; " Reverse (trade against the provider)" }
                    h2 { "Risk" }
                    label for="max_open_positions" { "Max open positions" } input id="max_open_positions" name="max_open_positions" value=(p.risk.max_open_positions);
                    label for="max_open_per_symbol" { "Max open per symbol" } input id="max_open_per_symbol" name="max_open_per_symbol" value=(p.risk.max_open_per_symbol);
                    label for="max_signal_age_s" { "Max signal age (s)" } input id="max_signal_age_s" name="max_signal_age_s" value=(p.max_signal_age_s);
                    label for="min_rr" { "Min reward/risk" } input id="min_rr" name="min_rr" value=(p.min_rr);
                    label for="max_risk_pct" { "Max risk per trade (% of equity)" } input id="max_risk_pct" name="max_risk_pct" value=(p.max_risk_pct);
                    label for="daily_loss_limit_pct" { "Daily loss limit (%, 0: off)" } input id="daily_loss_limit_pct" name="daily_loss_limit_pct" value=(p.risk.daily_loss_limit_pct);
                    label for="drawdown_lock_pct" { "Drawdown lock (% below peak)" } input id="drawdown_lock_pct" name="drawdown_lock_pct" value=(p.risk.drawdown_lock_pct);
                }
            }
            p { button.primary type="submit" { "Save settings" } }
        }
        section {
            details {
                summary { "The whole policy in force (TOML; edit the rest in config.toml or through PUT /api/v1/policy)" }
                pre { (full) }
            }
        }
    };
    layout(node, csrf, "Settings", body)
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

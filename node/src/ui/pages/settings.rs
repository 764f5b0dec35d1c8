//! The settings page: the trader's plan as the hub tells it (with the buttons that open the
//! hub's billing pages through a device link), the whole copy policy as a form (posted back as a
//! [`super::SettingsForm`]), the per-symbol table, the drawdown guard, the EA keys and the hub
//! connection.

use maud::{Markup, html};
use rust_decimal::Decimal;

use super::{PageResult, layout_with, notice_banner};
use crate::orders::Split;
use crate::policy::PolicySettings;
use crate::policy::approval::{ApprovalMode, NO_AUTO_COPY, PlanGate};
use crate::policy::fmt_utc;
use crate::policy::sizing::LotMode;
use crate::runtime::{Node, NodeError};
use crate::store::PublishConsent;
use crate::sync::billing::HubBilling;

/// What the settings page knows of the trader's plan, read from the hub as the page loads.
#[derive(Debug, Clone)]
pub enum PlanView {
    /// Not enrolled with a hub: no plan applies.
    NotEnrolled,
    /// The hub's answer.
    Read(Box<HubBilling>),
    /// The hub could not be asked (why, in words): the page shows the grants held instead.
    Unreachable(String),
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
fn symbol_lines(node: &Node, p: &PolicySettings) -> Result<Vec<SymbolLine>, NodeError> {
    let accounts = node.accounts()?;
    let mut broker: Vec<String> = Vec::new();
    for a in &accounts {
        broker.extend(node.symbol_names(&a.account)?);
    }
    let mut names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for s in node.signals()? {
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
    Ok(names
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
        .collect())
}

/// What the settings page shows once after an action: a saved policy, a new EA key's secret.
pub enum SettingsNotice {
    Saved(Result<String, String>),
    NewKey { key_id: String, secret: String },
}

/// The settings page.
pub fn settings(
    node: &Node,
    csrf: &str,
    notice: Option<SettingsNotice>,
    plan: &PlanView,
) -> PageResult {
    let p = node.policy()?;
    let gate = node.plan_gate_at(crate::clock::wall_ms())?;
    let plan_section = plan_view(node, csrf, plan, gate)?;
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
    let lines = symbol_lines(node, &p)?;
    let full = toml::to_string_pretty(&p)
        .unwrap_or_else(|e| format!("# the policy cannot be written as TOML: {e}"));
    let keys = node.ea_key_ids();
    let hub = hub_view(node);
    let publishing = node.publish_consent()?;
    let body = html! {
        @match &notice {
            Some(SettingsNotice::Saved(n)) => (notice_banner(&Some(n.clone()))),
            _ => {},
        }
        (plan_section)
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
                    @if gate == PlanGate::ManualOnly { div.hint.warn id="no-auto-copy-hint" { (NO_AUTO_COPY) "." } }
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
            (publishing_view(csrf, &publishing))
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

/// What of the account's history goes to the hub unsealed: one box per data kind, all off until
/// the trader ticks them.
fn publishing_view(csrf: &str, consent: &PublishConsent) -> Markup {
    let words = |name: &str| match name {
        "closed-trades" => "Closed trades (symbol, size, prices, P&L)",
        "equity" => "Equity and balance curve",
        "balance-operations" => "Deposits, withdrawals, credits and bonuses",
        _ => "Daily summary (balance, equity, day's P&L)",
    };
    html! {
        section id="publishing" {
            h2 { "Publishing" }
            p.mute { "What you tick is sent to the hub unsealed and shown on your public track record (after the hub's delay), so anyone can check your results. What you leave unticked stays sealed: only your own devices can read it. A change applies to what happens from now on." }
            form method="post" action="/settings/publishing" hx-post="/settings/publishing" hx-target="#main" hx-select="#main" hx-swap="outerHTML" {
                input type="hidden" name="csrf" value=(csrf);
                @for (name, _, on) in consent.kinds() {
                    div { (check(name, on, words(name))) }
                }
                p { button type="submit" id="save-publishing" { "Save publishing" } }
            }
        }
    }
}

/// A button that opens the hub's page for `action` through a fresh device link (a POST on the
/// node: the link is signed when clicked and never sits in the page).
fn link_button(csrf: &str, action: &str, words: &str, id: &str) -> Markup {
    html! {
        form.inline method="post" action="/ui/plan/link" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="action" value=(action);
            button type="submit" id=(id) { (words) }
        }
    }
}

/// The plan section: the hub's answer (plan, state, date, buttons), or why it is missing and the
/// grants held; the plan gate's words when auto-copy is not included.
fn plan_view(node: &Node, csrf: &str, plan: &PlanView, gate: PlanGate) -> PageResult {
    let grants = node.feature_grants_at(crate::clock::wall_ms())?;
    Ok(html! {
        section id="plan" {
            h2 { "Your plan" }
            @if gate == PlanGate::ManualOnly {
                div.banner.warn id="no-auto-copy" { (NO_AUTO_COPY) "." }
            }
            @match plan {
                PlanView::NotEnrolled => {
                    p.mute { "Not enrolled with a hub: no plan applies to what this node is given locally." }
                },
                PlanView::Unreachable(why) => {
                    div.banner.err id="plan-unreachable" { "The hub could not be asked for your plan: " (why) }
                    @if grants.is_empty() {
                        div.empty { "No plan in force that the hub has granted." }
                    } @else {
                        p.mute { "What the hub last granted (hub-signed):" }
                        table {
                            tr { th { "Plan" } th { "Gives" } th { "Until (UTC)" } }
                            @for g in &grants {
                                tr {
                                    td.mute { (g.plan_id.get(..8).unwrap_or(&g.plan_id)) }
                                    td { (g.features.iter().map(|f| f.as_str().replace('_', "-")).collect::<Vec<_>>().join(", ")) }
                                    td.mute { @match g.valid_until_ms { Some(t) => (fmt_utc(t)), None => "no end" } }
                                }
                            }
                        }
                    }
                },
                PlanView::Read(b) => {
                    @if b.subscriptions.is_empty() {
                        div.empty id="no-subscription" { "No subscription yet." }
                    } @else {
                        table id="subscriptions" {
                            tr { th { "Plan" } th { "State" } th { "Date (UTC)" } }
                            @for s in &b.subscriptions {
                                @let (label, at) = s.date_words();
                                tr {
                                    td { (if s.plan_name.is_empty() { s.plan_id.as_str() } else { s.plan_name.as_str() }) }
                                    td { (s.status_words) }
                                    td { (label) " " (fmt_utc(at)) }
                                }
                            }
                        }
                    }
                    p {
                        @if b.stripe && b.card_subscribed() {
                            (link_button(csrf, "portal", "Manage card, plan or cancellation", "plan-portal")) " "
                        }
                        (link_button(csrf, "telegram-link", "Link Telegram", "plan-telegram"))
                        span.mute { " opens your account on the hub (invoices, devices, Telegram once the hub has it)" }
                    }
                    @if !b.offers.is_empty() {
                        h2.sub { "Plans on offer" }
                        table id="offers" {
                            tr { th { "Plan" } th { "Price" } th { "Gives" } th {} }
                            @for o in &b.offers {
                                tr {
                                    td { (o.title()) @if !o.provider_name.is_empty() { div.hint { (o.provider_name) } } }
                                    td { (o.price_words()) @if o.trial_days > 0 { div.hint { (o.trial_days) " days free" } } }
                                    td { (o.features.join(", ").replace('_', "-")) }
                                    td.right {
                                        @if b.holds(&o.id) {
                                            span.mute id=(format!("held-{}", o.id)) { "your plan" }
                                        } @else if o.door == "stripe" && b.stripe {
                                            (link_button(csrf, &format!("checkout:{}", o.id), "Subscribe", &format!("subscribe-{}", o.id)))
                                        } @else if o.door == "stripe" {
                                            span.mute { "card payments are not open on this hub" }
                                        } @else {
                                            span.mute { "paid with Telegram Stars in the hub's bot" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            }
        }
    })
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

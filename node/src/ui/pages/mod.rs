//! The UI's pages, rendered from the node's store on every request, one module per page:
//! [`dashboard`] (with the equity chart's series), [`copy_log`], [`history`], [`settings`]
//! (the page, EA keys, the hub connection) and [`settings_form`] (the posted form, applied onto
//! the policy in force and validated before it is saved). This module holds the layout (nav,
//! health: EA link, hub link, last signal age, signal→fill; the CSRF token in `hx-headers`),
//! the signed-out page, the page shown when the store fails, and the formatting they share.
//!
//! A page that cannot read the store is an `Err` ([`NodeError`]), never an empty table: the
//! handler answers 500 with [`store_failure`] and logs the cause once.

mod copy_log;
mod dashboard;
mod history;
mod settings;
mod settings_form;

use maud::{DOCTYPE, Markup, html};
use rust_decimal::Decimal;

use crate::clock::wall_ms;
use crate::runtime::{Node, NodeError};

pub use copy_log::copy_log;
pub use dashboard::{dashboard, equity_series};
pub use history::history;
pub use settings::{PlanView, SettingsNotice, settings};
pub use settings_form::SettingsForm;

/// What a page handler gets: the page, or why the store could not give what it shows.
pub type PageResult = Result<Markup, NodeError>;

pub(super) fn layout(node: &Node, csrf: &str, active: &str, body: Markup) -> PageResult {
    layout_with(node, csrf, active, true, body)
}

/// The order → fill times (wall clock, ms) of the latest filled orders opened from signals,
/// newest first: from the node's decision (a signal in auto mode, the trader's approval in
/// manual mode) to the EA's committed fill ack.
pub fn fill_times_ms(node: &Node, n: usize) -> Result<Vec<i64>, NodeError> {
    let mut v: Vec<(i64, i64)> = Vec::new();
    for a in node.accounts()? {
        v.extend(
            node.orders(&a.account)?
                .into_iter()
                .filter(|o| o.signal_id.is_some())
                .filter_map(|o| o.filled_at_ms.map(|f| (f, (f - o.created_at_ms).max(0)))),
        );
    }
    v.sort_by_key(|(f, _)| std::cmp::Reverse(*f));
    Ok(v.into_iter().take(n).map(|(_, ms)| ms).collect())
}

fn duration_words(ms: i64) -> String {
    if ms < 1_000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1_000.0) }
}

/// The page frame. `live`: the main block re-renders on the node's changes (not on a form the
/// trader is editing).
pub(super) fn layout_with(
    node: &Node,
    csrf: &str,
    active: &str,
    live: bool,
    body: Markup,
) -> PageResult {
    let now = wall_ms();
    let link_up = node.link_up(now);
    let last_signal = node.signals()?.last().map(|s| s.signal.bar_time_ms);
    let accounts = node.accounts()?;
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
    let fills = fill_times_ms(node, 20)?;
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
    Ok(html! {
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
    })
}

/// How long ago `then_ms` was at `now_ms`, in words.
pub(super) fn age(now_ms: i64, then_ms: i64) -> String {
    let s = (now_ms - then_ms).max(0) / 1_000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3_600 => format!("{} min ago", s / 60),
        3_600..86_400 => format!("{} h {} min ago", s / 3_600, (s % 3_600) / 60),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `1234567.891` as `1,234,567.89`: two decimals, thousands grouped.
pub(super) fn amount(v: Decimal) -> String {
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

pub(super) fn money(v: Option<Decimal>, currency: &str) -> String {
    match v {
        Some(v) => format!("{} {currency}", amount(v)),
        None => "—".into(),
    }
}

pub(super) fn signed_class(v: Decimal) -> &'static str {
    if v > Decimal::ZERO {
        "up"
    } else if v < Decimal::ZERO {
        "down"
    } else {
        ""
    }
}

/// The page shown when the store cannot be read: a failure, not an empty page. It needs nothing
/// from the store (the layout does), and says no more than that: the cause is in the node's log.
pub fn store_failure() -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Tradecast · store failure" } link rel="stylesheet" href="/assets/app.css"; }
            body { main {
                section id="store-failure" {
                    h2 { "This page cannot be shown" }
                    div.banner.err { "The node could not read its store, so it cannot show what it holds. The cause is in the node's log." }
                    p { "Reload the page to try again. If it keeps failing, stop the node and check its data directory (disk full, damaged file)." }
                }
            } }
        }
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

pub(super) fn notice_banner(notice: &Option<Result<String, String>>) -> Markup {
    html! {
        @match notice {
            Some(Ok(m)) => div.banner.ok { (m) },
            Some(Err(m)) => div.banner.err { (m) },
            None => {},
        }
    }
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
}

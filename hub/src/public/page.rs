//! `/p/{provider}`: a provider's public track record, no login, delayed and cacheable. A view
//! of the same [`TrackRecord`](super::TrackRecord) as the JSON API: headline figures, the
//! cumulative-R curve (inline SVG: no script, which the CSP would refuse inline anyway), the
//! monthly and per-symbol tables, the delayed signals each linking to its signed record, every
//! formula, and the commands to verify it offline.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use maud::{Markup, html};
use tradecast_protocol::track::{self, GroupFigures};

use super::api::{ProviderTrack, SIGNALS_LISTED};
use super::cached;
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
        dl #formulas {
            @for (name, text) in FORMULAS { dt { (name) } dd { (text) } }
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
    let t = super::track_record(
        &state.db,
        &state.hub_identity,
        &provider,
        state.now_ms(),
        state.config.public.delay_s,
    )
    .await?;
    let base = match &state.config.public_url {
        Some(u) => u.as_str().to_string(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            format!("http://{host}")
        }
    };
    let html = render(&ProviderTrack::of(&t), &base).into_string();
    Ok(cached(&headers, "text/html; charset=utf-8", html.into_bytes()))
}

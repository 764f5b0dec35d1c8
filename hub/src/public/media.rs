//! The public record's pictures and the trust widget (issue 18 parts 3 and 5), delayed like
//! everything public and cached through [`super::cached`] (strong `ETag`: a chart's bytes are
//! deterministic, so `If-None-Match` answers 304 until the cutoff moves):
//!
//! - `GET /public/v1/providers/{id}/equity.png`: the cumulative-R curve with its drawdown
//!   ([`crate::charts::equity`]);
//! - `GET /public/v1/signals/{id}/setup.png`: one signal's setup ([`crate::charts::setup`]),
//!   only once the signal is published (received before the cutoff, in its chain's published
//!   prefix), drawn with the `Modify` and `Close` records published by then; 404 otherwise;
//! - `GET /public/v1/providers/{id}/badge.svg`: the trust badge (name, trades, expectancy R,
//!   max drawdown R, track length, trust score, "verified by Tradecast");
//! - `GET /public/v1/providers/{id}/widget`: a small HTML page showing the badge and linking
//!   to `/p/{id}`, framable anywhere (its own CSP, `frame-ancestors *`, on this route only).
//!
//! `?theme=dark` draws a PNG for a dark background. [`page_section`] is what `/p/{provider}`
//! shows of this: the trust score with its inputs and formula, and the embed snippet.
//! [`signal_setup_png`] renders a setup without the delay, for callers that checked the reader
//! may see the signal now (the Telegram alert, the Mini App's approvals).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use tradecast_protocol::trust::{self, TrustInputs, TrustScore};
use tradecast_protocol::{Body, Close, DeviceId, Identity, Modify, Record, Signal, SignalId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::ProviderTrack;
use super::{TrackRecord, store};
use crate::api::extract::{Path, Query};
use crate::charts::{self, Theme};
use crate::db::{Db, DbError};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// The widget's Content-Security-Policy: nothing but the badge image, framable by any site.
pub const WIDGET_CSP: &str =
    "default-src 'none'; img-src 'self'; frame-ancestors *; base-uri 'none'; form-action 'none'";

/// The badge's size, px.
const BADGE_W: u32 = 360;
const BADGE_H: u32 = 128;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(equity_png))
        .routes(routes!(setup_png))
        .routes(routes!(badge_svg))
        .routes(routes!(widget))
}

/// `?theme=`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct ThemeQuery {
    /// `dark` for a dark background; anything else is light.
    pub theme: Option<String>,
}

/// The name a provider shows (its id when it has none).
fn name_of(id: &str, display_name: &str) -> String {
    match display_name.trim() {
        "" => format!("Provider {id}"),
        n => n.to_string(),
    }
}

/// The signal `id` and the `Modify` / `Close` records on it among `records` (one author's
/// chain, in order).
pub fn setup_in<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    id: SignalId,
) -> Option<(Signal, Vec<Modify>, Vec<Close>)> {
    let (mut signal, mut modifies, mut closes) = (None, Vec::new(), Vec::new());
    for r in records {
        match r.body() {
            Ok(Body::Signal(s)) if s.id == id => signal = Some(s),
            Ok(Body::Modify(m)) if m.signal_id == id => modifies.push(m),
            Ok(Body::Close(c)) if c.signal_id == id => closes.push(c),
            _ => {}
        }
    }
    signal.map(|s| (s, modifies, closes))
}

fn render_setup(s: &(Signal, Vec<Modify>, Vec<Close>), theme: Theme) -> Result<Vec<u8>, ApiError> {
    let setup = charts::setup::Setup { signal: &s.0, modifies: &s.1, closes: &s.2 };
    charts::setup::setup_png(&setup, theme).map_err(ApiError::internal)
}

/// The setup PNG of signal `signal_id` (hex) as the hub holds it now, with every `Modify` and
/// `Close` of its author's chain; `None` for an unknown signal. No delay: the caller has
/// checked that its reader may see this signal now.
pub async fn signal_setup_png(
    db: &Db,
    hub: &Identity,
    signal_id: &str,
    theme: Theme,
) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(id) = SignalId::from_hex(signal_id) else { return Ok(None) };
    let author: Option<String> = sqlx::query_scalar("SELECT author FROM signals WHERE id = $1")
        .bind(signal_id)
        .fetch_optional(db.pool())
        .await
        .map_err(DbError::from)?;
    let Some(author) = author.and_then(|a| DeviceId::parse(&a).ok()) else { return Ok(None) };
    let (committed, posted) = store::chain_records(db, hub, &author).await?;
    let mut items = committed;
    for p in posted {
        if !items.iter().any(|i| i.seq == p.seq) {
            items.push(p);
        }
    }
    items.sort_by_key(|i| i.seq);
    match setup_in(items.iter().map(|i| &i.record), id) {
        Some(s) => render_setup(&s, theme).map(Some),
        None => Ok(None),
    }
}

fn score_of(t: &ProviderTrack) -> (TrustInputs, TrustScore) {
    let gaps: Vec<Option<u64>> = t.chains.iter().map(|c| c.gap_at_seq).collect();
    (trust::inputs(&t.figures, &gaps, t.cutoff_ms), t.trust.clone())
}

/// The badge as SVG text.
pub fn badge(t: &ProviderTrack) -> String {
    let (inputs, score) = score_of(t);
    let name = name_of(&t.provider, &t.display_name);
    let f = &t.figures;
    let font = "DejaVu Sans, Verdana, Arial, sans-serif";
    let label = format!(
        "{name}: trust score {} of 100, {} trades, verified by Tradecast",
        score.score, f.n_trades
    );
    let view = format!("0 0 {BADGE_W} {BADGE_H}");
    // Two places on the badge (the page and the export carry the exact figures): the lines
    // must fit beside the score.
    let r2 = |d: rust_decimal::Decimal| {
        d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            .normalize()
    };
    let line1 = format!(
        "{} trades · expectancy {} R",
        f.n_trades,
        f.expectancy_r.map_or_else(|| "n/a".to_owned(), |e| r2(e).to_string())
    );
    let line2 =
        format!("max drawdown {} R · track {} days", r2(f.max_drawdown_r), inputs.track_days);
    // About what fits beside the score at 16 px bold.
    let short_name = if name.chars().count() > 28 {
        name.chars().take(27).collect::<String>() + "…"
    } else {
        name.clone()
    };
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(BADGE_W) height=(BADGE_H) viewBox=(view)
            role="img" aria-label=(label) font-family=(font) {
            title { (label) }
            rect x="0.5" y="0.5" width=(BADGE_W - 1) height=(BADGE_H - 1) rx="8" fill="#ffffff" stroke="#d1d5db" {}
            text x="16" y="30" font-size="16" font-weight="bold" fill="#111827" { (short_name) }
            text x="16" y="58" font-size="13" fill="#374151" { (line1) }
            text x="16" y="78" font-size="13" fill="#374151" { (line2) }
            text x="16" y="110" font-size="12" fill="#16a34a" { "✓ verified by Tradecast" }
            text x=(BADGE_W - 18) y="64" font-size="34" font-weight="bold" text-anchor="end" fill="#2563eb" { (score.score) }
            text x=(BADGE_W - 18) y="110" font-size="11" text-anchor="end" fill="#6b7280" { "trust score / 100" }
        }
    }
    .into_string()
}

/// What `/p/{provider}` shows of this module: the trust score with its inputs and formula, the
/// equity picture, and the embed snippet.
pub fn page_section(t: &ProviderTrack, base: &str) -> Markup {
    let (inputs, score) = score_of(t);
    let id = &t.provider;
    let widget = format!("{base}/public/v1/providers/{id}/widget");
    let badge_url = format!("{base}/public/v1/providers/{id}/badge.svg");
    let page = format!("{base}/p/{id}");
    let iframe = format!(
        "<iframe src=\"{widget}\" width=\"{}\" height=\"{}\" title=\"Verified track record\" style=\"border:0\"></iframe>",
        BADGE_W + 16,
        BADGE_H + 16
    );
    let img =
        format!("<a href=\"{page}\"><img src=\"{badge_url}\" alt=\"Verified track record\"></a>");
    html! {
        h2 { "Trust score" }
        p #trust-score { strong { (score.score) } " / 100" }
        table #trust {
            thead { tr { th { "Component" } th.num { "Weight" } th.num { "Value (0–1)" } th { "Input" } } }
            tbody {
                @for (c, input) in score.components.iter().zip([
                    format!("{} days since the first scored trade", inputs.track_days),
                    format!("max drawdown {} R", inputs.max_drawdown_r),
                    format!("{} of {} months positive", inputs.months_positive, inputs.months_total),
                    format!("{} of {} chains without a gap", inputs.chains_continuous, inputs.chains_total),
                    "not published yet".to_string(),
                ]) {
                    tr {
                        td { (c.name) }
                        td.num { (c.weight) }
                        td.num { (tradecast_protocol::track::show(c.value)) }
                        td { (input) }
                    }
                }
            }
        }
        p {
            "Formula: track length = days ÷ " (trust::FULL_LENGTH_DAYS) " (at most 1); drawdown = 1 − max drawdown R ÷ "
            (trust::ZERO_SCORE_DRAWDOWN_R) " (at least 0); consistency = positive months ÷ months with a closed trade; "
            "chain continuity = chains without a gap ÷ chains (a gap is the only way a published record can lack the hub's receipt); "
            "copy fidelity is n/a until subscribers' executions are published, so its weight is left out and the others re-normalised. "
            "Score = round(100 × Σ weight × value ÷ Σ weight that applies), half away from zero; 0 without a closed trade. "
            "The same code (tradecast_protocol::trust) can be run on the export."
        }
        h2 { "Equity and drawdown (picture)" }
        p { img src=(format!("/public/v1/providers/{id}/equity.png")) width=(charts::WIDTH) height=(charts::HEIGHT) alt="Cumulative R and its drawdown"; }
        h2 { "Embed this badge" }
        p { img src=(format!("/public/v1/providers/{id}/badge.svg")) width=(BADGE_W) height=(BADGE_H) alt="Trust badge"; }
        p { "Paste one of these into your site: the badge updates itself (delayed like this page)." }
        pre #embed { (iframe) "\n" (img) }
    }
}

/// The cumulative-R curve with its drawdown, as PNG. Delayed like the page.
#[utoipa::path(get, path = "/public/v1/providers/{id}/equity.png", tag = "public",
    params(("id" = String, Path, description = "the provider's account id"), ThemeQuery), responses(
    (status = 200, description = "the picture", content_type = "image/png"),
    (status = 304, description = "not modified (If-None-Match)"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn equity_png(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ThemeQuery>,
) -> Result<Response, ApiError> {
    let theme = Theme::parse(q.theme.as_deref());
    super::view(&state, &headers, &id, &format!("equity.png {theme:?}"), "image/png", |t| {
        let name = name_of(&t.provider.id, &t.provider.display_name);
        charts::equity::cumulative_r_png(&name, &t.figures, theme).map_err(ApiError::internal)
    })
    .await
}

/// One published signal's setup as PNG: only once the signal is public (after the delay).
#[utoipa::path(get, path = "/public/v1/signals/{id}/setup.png", tag = "public",
    params(("id" = String, Path, description = "the signal id (hex)"), ThemeQuery), responses(
    (status = 200, description = "the picture", content_type = "image/png"),
    (status = 304, description = "not modified (If-None-Match)"),
    (status = 404, description = "not-found: unknown, or not published yet", body = Problem, content_type = "application/problem+json"),
))]
async fn setup_png(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ThemeQuery>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("no published signal {id}"));
    let signal_id = SignalId::from_hex(&id).ok_or_else(not_found)?;
    let provider: Option<String> =
        sqlx::query_scalar("SELECT provider_user_id FROM signals WHERE id = $1")
            .bind(signal_id.to_hex())
            .fetch_optional(state.db.pool())
            .await
            .map_err(DbError::from)?;
    let provider = provider.ok_or_else(not_found)?;
    let theme = Theme::parse(q.theme.as_deref());
    let view = format!("setup.png {} {theme:?}", signal_id.to_hex());
    super::view(&state, &headers, &provider, &view, "image/png", |t| {
        let found =
            t.chains.iter().find_map(|c| setup_in(c.items.iter().map(|i| &i.record), signal_id));
        render_setup(&found.ok_or_else(not_found)?, theme)
    })
    .await
    .map_err(|e| match e {
        e @ ApiError::Internal(_) => e,
        _ => not_found(),
    })
}

/// The trust badge as SVG (name, trades, expectancy R, max drawdown R, track length, trust
/// score). Delayed like the page.
#[utoipa::path(get, path = "/public/v1/providers/{id}/badge.svg", tag = "public",
    params(("id" = String, Path, description = "the provider's account id")), responses(
    (status = 200, description = "the badge", content_type = "image/svg+xml"),
    (status = 304, description = "not modified (If-None-Match)"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn badge_svg(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    super::view(&state, &headers, &id, "badge.svg", "image/svg+xml", |t| {
        Ok(badge(&ProviderTrack::of(t)).into_bytes())
    })
    .await
}

/// The embeddable widget: the badge linking to the provider's page, framable by any site.
#[utoipa::path(get, path = "/public/v1/providers/{id}/widget", tag = "public",
    params(("id" = String, Path, description = "the provider's account id")), responses(
    (status = 200, description = "the widget's HTML", content_type = "text/html"),
    (status = 304, description = "not modified (If-None-Match)"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn widget(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut resp = super::view(&state, &headers, &id, "widget", "text/html; charset=utf-8", |t| {
        Ok(widget_html(t).into_string().into_bytes())
    })
    .await?;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(WIDGET_CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(resp)
}

/// The widget's page: the badge linking to the provider's page.
fn widget_html(t: &TrackRecord) -> Markup {
    let name = name_of(&t.provider.id, &t.provider.display_name);
    let id = &t.provider.id;
    html! {
        (PreEscaped("<!DOCTYPE html>"))
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (name) " — verified track record" }
            }
            body {
                a href=(format!("/p/{id}")) target="_blank" rel="noopener" {
                    img src=(format!("/public/v1/providers/{id}/badge.svg")) width=(BADGE_W) height=(BADGE_H)
                        alt=(format!("{name}: verified track record on Tradecast"));
                }
            }
        }
    }
}

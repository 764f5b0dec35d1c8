//! `/public/v1/…`: the public track record as JSON, without authentication, delayed like the
//! page (`public.delay_s`) and cacheable.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tradecast_protocol::{Body, track};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TrackRecord, cached, store};
use crate::analytics;
use crate::api::extract::Path;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// Signals listed by the JSON API and the page.
pub const SIGNALS_LISTED: usize = 200;
/// How many closed trades `GET /public/v1/providers/{id}` lists in `figures.trades` (the
/// latest; every trade is in the export): a record of 100,000 trades made a 30 MB answer.
pub const TRADES_LISTED: usize = 1_000;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(provider_figures))
        .routes(routes!(provider_export))
        .routes(routes!(record))
        .merge(super::media::router())
}

/// One published author device's chain, as counted.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainSummary {
    /// The device (text form).
    pub author: String,
    /// Its identity key (hex).
    pub author_key: String,
    /// Records published (seq 1..=n).
    pub n_published: u64,
    /// Records held but not yet published (received after the cutoff, or after a gap).
    pub n_withheld: u64,
    /// The first missing seq, if the hub holds records after a hole.
    pub gap_at_seq: Option<u64>,
}

impl ChainSummary {
    fn of(c: &analytics::PublishedChain) -> ChainSummary {
        ChainSummary {
            author: c.author().to_text(),
            author_key: hex::encode(c.author_key.to_bytes()),
            n_published: c.items.len() as u64,
            n_withheld: c.n_withheld,
            gap_at_seq: c.gap_at_seq,
        }
    }
}

/// One published signal.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublishedSignal {
    /// Signal id (hex).
    pub signal_id: String,
    /// Where its signed record is (`/public/v1/records/{hash}`).
    pub record_url: String,
    /// The record's header hash (hex).
    pub record_hash: String,
    /// The author device (text form).
    pub author: String,
    /// The record's seq.
    pub seq: u64,
    /// Symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Entry (decimal string).
    #[schema(value_type = String)]
    pub entry: rust_decimal::Decimal,
    /// Stop (decimal string).
    #[schema(value_type = String)]
    pub stop: rust_decimal::Decimal,
    /// First target (decimal string).
    #[schema(value_type = String)]
    pub tp1: rust_decimal::Decimal,
    /// The record's `created_at_ms`.
    pub created_at_ms: i64,
    /// When the hub committed it.
    pub received_at_ms: i64,
    /// Its result in R once closed and priced.
    #[schema(value_type = Option<String>)]
    pub r: Option<rust_decimal::Decimal>,
}

/// A provider's public track record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderTrack {
    /// The provider's account id.
    pub provider: String,
    /// Its display name.
    pub display_name: String,
    /// The publication delay, s.
    pub delay_s: u64,
    /// Nothing the hub received after this instant is included, unix ms.
    pub cutoff_ms: i64,
    /// The hub's identity key (hex): what every receipt verifies with.
    pub hub_key: String,
    /// The figures (the formulas are in the hub's README and on the page): decimal strings,
    /// `null` where a ratio has no denominator.
    #[schema(value_type = Object)]
    pub figures: track::TrackFigures,
    /// The published chains.
    pub chains: Vec<ChainSummary>,
    /// The latest published signals (at most 200), newest first.
    pub signals: Vec<PublishedSignal>,
    /// Per device that publishes its account history: the money figures from its published
    /// stream (basis `published-stream-money`; formulas in the hub's README and on the page),
    /// decimal strings, `null` where a ratio has no denominator. Empty when nothing is
    /// published.
    #[schema(value_type = Vec<Object>)]
    pub money: Vec<tradecast_protocol::track_money::MoneyFigures>,
    /// The published streams' chains.
    pub published_chains: Vec<ChainSummary>,
    /// The trust score with its components (formula in the hub's README and on the page; the
    /// export carries the same, and the verifier recomputes it).
    #[schema(value_type = Object)]
    pub trust: tradecast_protocol::trust::TrustScore,
    /// The export file.
    pub export_url: String,
    /// Closed trades left out of `figures.trades` (it lists the latest 1,000; every trade is in
    /// the export, and every figure counts them all).
    #[serde(default)]
    pub trades_not_listed: u64,
    /// How subscribers' nodes copied the signals: deliveries, fills, declines, latency and
    /// slippage, from their signed decisions and fills (delayed like the rest).
    #[serde(default)]
    pub copy_fidelity: crate::analytics::fidelity::CopyFidelity,
}

/// A published signed record with the hub's receipt.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicRecord {
    /// The provider's account id.
    pub provider: String,
    /// The author device (text form).
    pub author: String,
    /// The record's seq in the author's signals chain.
    pub seq: u64,
    /// Header hash (hex, BLAKE3).
    pub header_hash: String,
    /// The previous header's hash (hex).
    pub prev_hash: String,
    /// `created_at_ms` of the header.
    pub created_at_ms: i64,
    /// The record's kind.
    pub kind: String,
    /// The record's bytes (`Record::encode`), standard base64.
    pub record: String,
    /// The body as JSON.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// The hub's signed receipt.
    #[schema(value_type = Object)]
    pub receipt: tradecast_protocol::Receipt,
}

impl ProviderTrack {
    /// The JSON view of a [`TrackRecord`].
    pub fn of(t: &TrackRecord) -> ProviderTrack {
        let signals = analytics::signal_rows(&t.chains, &t.figures.trades, SIGNALS_LISTED)
            .into_iter()
            .map(|s| PublishedSignal {
                signal_id: s.signal_id.to_hex(),
                record_url: format!("/public/v1/records/{}", s.record_hash),
                record_hash: s.record_hash,
                author: s.author.to_text(),
                seq: s.seq,
                symbol: s.symbol,
                side: s.side.as_str().to_string(),
                entry: s.entry,
                stop: s.stop,
                tp1: s.tp1,
                created_at_ms: s.created_at_ms,
                received_at_ms: s.received_at_ms,
                r: s.r,
            })
            .collect();
        ProviderTrack {
            provider: t.provider.id.clone(),
            display_name: t.provider.display_name.clone(),
            delay_s: u64::try_from(t.delay_ms / 1000).unwrap_or(0),
            cutoff_ms: t.cutoff_ms,
            hub_key: hex::encode(t.hub_key.to_bytes()),
            figures: t.figures.clone(),
            chains: t.chains.iter().map(ChainSummary::of).collect(),
            signals,
            money: t.money.clone(),
            published_chains: t.published.iter().map(ChainSummary::of).collect(),
            trust: t.trust(),
            export_url: format!("/public/v1/providers/{}/export", t.provider.id),
            trades_not_listed: 0,
            copy_fidelity: t.fidelity.clone(),
        }
    }
}

fn json<T: Serialize>(request: &HeaderMap, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
    Ok(cached(request, "application/json", body))
}

/// A provider's published figures (signal-level, in R multiples), chains and latest signals,
/// and the money figures of each device that publishes its account history, delayed by
/// `public.delay_s`. No authentication; `Cache-Control: public` with an `ETag`.
#[utoipa::path(get, path = "/public/v1/providers/{id}", tag = "public",
    params(("id" = String, Path, description = "the provider's account id")), responses(
    (status = 200, body = ProviderTrack),
    (status = 304, description = "not modified (If-None-Match)"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn provider_figures(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    super::view(&state, &headers, &id, "json", "application/json", |t| {
        let mut answer = ProviderTrack::of(t);
        let n = answer.figures.trades.len();
        answer.figures.trades.drain(..n.saturating_sub(TRADES_LISTED));
        answer.trades_not_listed = n.saturating_sub(TRADES_LISTED) as u64;
        serde_json::to_vec(&answer).map_err(ApiError::internal)
    })
    .await
}

/// The provider's published chains, the hub's receipts, the keys and the figures in one file,
/// for `tradecast-verify` (or `tradecast-hub verify`). Delayed like the page.
#[utoipa::path(get, path = "/public/v1/providers/{id}/export", tag = "public",
    params(("id" = String, Path, description = "the provider's account id")), responses(
    (status = 200, description = "the export file (JSON, format tradecast-track-export/v1)", content_type = "application/json"),
    (status = 304, description = "not modified (If-None-Match)"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn provider_export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut resp = super::view(&state, &headers, &id, "export", "application/json", |t| {
        serde_json::to_vec(&t.export()).map_err(ApiError::internal)
    })
    .await?;
    let name = format!("attachment; filename=\"tradecast-track-{id}.json\"");
    if let Ok(v) = HeaderValue::from_str(&name) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// One published record of a provider — its signals chain, or the account history its devices
/// publish — by its header hash, with the hub's receipt. A record received after the cutoff is
/// not found yet.
#[utoipa::path(get, path = "/public/v1/records/{hash}", tag = "public",
    params(("hash" = String, Path, description = "the record's header hash, 64 hex digits")), responses(
    (status = 200, body = PublicRecord),
    (status = 304, description = "not modified (If-None-Match)"),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn record(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("no published record {hash}"));
    let well_formed =
        hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(not_found());
    }
    let cutoff = super::cutoff_at(state.now_ms(), state.config.public.delay_s);
    let (item, provider) = store::record_by_hash(&state.db, &state.hub_identity, &hash)
        .await?
        .filter(|(i, _)| i.received_at_ms <= cutoff)
        .ok_or_else(not_found)?;
    let header = item.record.header();
    // The signals chain carries signals, modifications and closes; the published stream closed
    // trades, equity points, balance operations and daily summaries; anything else is null.
    let body = match item.record.body() {
        Ok(Body::Signal(s)) => serde_json::to_value(s).ok(),
        Ok(Body::Modify(m)) => serde_json::to_value(m).ok(),
        Ok(Body::Close(c)) => serde_json::to_value(c).ok(),
        Ok(Body::TradeClosed(t)) => serde_json::to_value(t).ok(),
        Ok(Body::EquityPoint(e)) => serde_json::to_value(e).ok(),
        Ok(Body::BalanceOperation(b)) => serde_json::to_value(b).ok(),
        Ok(Body::Summary(s)) => serde_json::to_value(s).ok(),
        _ => None,
    }
    .unwrap_or(serde_json::Value::Null);
    let answer = PublicRecord {
        provider,
        author: header.author.to_text(),
        seq: header.seq,
        header_hash: item.record.header_hash().to_hex(),
        prev_hash: header.prev_hash.to_hex(),
        created_at_ms: header.created_at_ms,
        kind: header.kind.name().to_string(),
        record: data_encoding::BASE64.encode(&item.record.encode()),
        body,
        receipt: item.receipt,
    };
    json(&headers, &answer)
}

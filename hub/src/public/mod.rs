//! The public track record (issue 18, first slice: the signal-level record in R multiples): no
//! login, delayed by `public.delay_s`, cacheable.
//!
//! - `GET /p/{provider}` ([`page`]): the headline figures, the cumulative-R curve, the monthly
//!   and per-symbol tables, the delayed list of signals each linking to its signed record, the
//!   formulas, and how to verify it all offline.
//! - `GET /public/v1/providers/{id}` (the same figures as JSON), `…/{id}/export` (the chain,
//!   the receipts, the keys and the figures in one file that `tradecast-verify` checks) and
//!   `GET /public/v1/records/{hash}` (one signed record with its receipt) ([`api`]).
//!
//! Every view is built from one [`TrackRecord`] ([`track_record`]): the provider's signals
//! chains as the hub holds them (`store`), cut at the delay ([`crate::analytics`]), with the
//! figures of `tradecast_protocol::track`; and beside them, for each device that publishes its
//! account history, its published stream (`StreamId::PUBLISHED`, the same delay and prefix
//! rule) with the money figures of `tradecast_protocol::track_money`, each figure labelled
//! with its basis (R from the signals chain, money from the published stream). Nothing the hub received after the cutoff appears in
//! any of them. Answers carry `Cache-Control: public` and a strong `ETag` of their bytes
//! ([`cached`]); the cutoff moves once a minute, so a page is the same bytes for a minute.

pub mod api;
pub mod cache;
pub mod media;
pub mod page;
pub mod store;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tradecast_protocol::track::{
    EXPORT_FORMAT, ExportedChain, ExportedRecord, TrackExport, TrackFigures,
};
use tradecast_protocol::track_money::MoneyFigures;
use tradecast_protocol::trust::{self, TrustScore};
use tradecast_protocol::{Identity, IdentityKey};

use std::sync::Arc;

use crate::analytics::{self, PublishedChain};
use crate::db::{Db, DbError};
use crate::error::ApiError;
use crate::state::AppState;
use cache::Rendered;

/// How long a shared cache may keep a public answer, s.
pub const MAX_AGE_S: u64 = 60;

/// A provider's published track record at one cutoff.
#[derive(Debug, Clone)]
pub struct TrackRecord {
    /// The provider.
    pub provider: store::Provider,
    /// The hub's identity key (signs every receipt).
    pub hub_key: IdentityKey,
    /// `cutoff_ms + delay_ms`.
    pub generated_at_ms: i64,
    /// `public.delay_s` in ms.
    pub delay_ms: i64,
    /// Nothing received after this instant is included.
    pub cutoff_ms: i64,
    /// One published chain per device of the provider.
    pub chains: Vec<PublishedChain>,
    /// The figures of those chains.
    pub figures: TrackFigures,
    /// One published-stream chain per device that publishes its account history (cut at the
    /// same cutoff; devices with nothing published left out).
    pub published: Vec<PublishedChain>,
    /// The money figures of each published chain, in the same order.
    pub money: Vec<MoneyFigures>,
    /// How subscribers' nodes copied the signals (their signed decisions and fills).
    pub fidelity: analytics::fidelity::CopyFidelity,
}

/// The published track record of `provider_id` as of `now_ms`; 404 `not-found` for an account
/// that is not an enabled provider.
pub async fn track_record(
    db: &Db,
    hub: &Identity,
    provider_id: &str,
    now_ms: i64,
    delay_s: u64,
) -> Result<TrackRecord, ApiError> {
    let provider = store::provider(db, provider_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no provider {provider_id}")))?;
    let delay_ms = i64::try_from(delay_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let cutoff_ms = cutoff_at(now_ms, delay_s);
    let mut chains = Vec::new();
    let mut published = Vec::new();
    for key in store::device_keys(db, &provider.id).await? {
        let (committed, posted) = store::chain_records(db, hub, &key.device_id()).await?;
        if !(committed.is_empty() && posted.is_empty()) {
            chains.push(analytics::published_chain(key, committed, posted, cutoff_ms));
        }
        if let Some(chain) = published_chain(db, hub, key, cutoff_ms).await? {
            published.push(chain);
        }
    }
    let money = money_of(&published)?;
    let records: Vec<Vec<tradecast_protocol::Record>> =
        chains.iter().map(|c| c.items.iter().map(|i| i.record.clone()).collect()).collect();
    let figures = analytics::figures(analytics::outcomes(records.iter().map(Vec::as_slice)))
        .map_err(ApiError::internal)?;
    let fidelity =
        analytics::fidelity::copy_fidelity(&store::deliveries(db, &provider.id, cutoff_ms).await?);
    Ok(TrackRecord {
        fidelity,
        provider,
        hub_key: hub.identity_key(),
        generated_at_ms: cutoff_ms.saturating_add(delay_ms),
        delay_ms,
        cutoff_ms,
        chains,
        figures,
        published,
        money,
    })
}

/// The published-stream chain of the device with `key`, cut at `cutoff_ms`; `None` when it
/// published nothing up to then.
pub async fn published_chain(
    db: &Db,
    hub: &Identity,
    key: IdentityKey,
    cutoff_ms: i64,
) -> Result<Option<PublishedChain>, DbError> {
    let stream = store::published_records(db, hub, &key.device_id()).await?;
    let chain = analytics::published_chain(key, stream, Vec::new(), cutoff_ms);
    Ok((!chain.items.is_empty()).then_some(chain))
}

/// The money figures of each published chain, in the same order.
pub fn money_of(published: &[PublishedChain]) -> Result<Vec<MoneyFigures>, ApiError> {
    published
        .iter()
        .map(|c| {
            let records: Vec<tradecast_protocol::Record> =
                c.items.iter().map(|i| i.record.clone()).collect();
            analytics::money_figures(c.author(), &records)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)
}

impl TrackRecord {
    /// The export file's content.
    pub fn export(&self) -> TrackExport {
        TrackExport {
            format: EXPORT_FORMAT.to_string(),
            provider: self.provider.id.clone(),
            hub_key: self.hub_key,
            generated_at_ms: self.generated_at_ms,
            delay_ms: self.delay_ms,
            cutoff_ms: self.cutoff_ms,
            chains: self.chains.iter().map(exported_chain).collect(),
            figures: self.figures.clone(),
            published: self.published.iter().map(exported_chain).collect(),
            money: self.money.clone(),
            trust: Some(self.trust()),
        }
    }

    /// The trust score the page, the badge and the export show ([`trust::inputs`]: the figures,
    /// each signals chain's gap and the cutoff, so the verifier recomputes it from the file).
    pub fn trust(&self) -> TrustScore {
        let gaps: Vec<Option<u64>> = self.chains.iter().map(|c| c.gap_at_seq).collect();
        trust::score(&trust::inputs(&self.figures, &gaps, self.cutoff_ms))
    }
}

/// One published chain as the export carries it.
fn exported_chain(c: &PublishedChain) -> ExportedChain {
    ExportedChain {
        author_key: c.author_key,
        records: c
            .items
            .iter()
            .map(|i| ExportedRecord {
                record: data_encoding::BASE64.encode(&i.record.encode()),
                receipt: i.receipt,
            })
            .collect(),
        gap_at_seq: c.gap_at_seq,
    }
}

/// `body` with `Content-Type`, `Cache-Control: public, max-age=60` and a strong `ETag` of its
/// bytes; `304 Not Modified` when the request's `If-None-Match` names that tag.
pub fn cached(request: &HeaderMap, content_type: &'static str, body: Vec<u8>) -> Response {
    respond(request, content_type, &Rendered::new(body))
}

/// [`cached`] for a view rendered (and tagged) once.
pub fn respond(request: &HeaderMap, content_type: &'static str, view: &Rendered) -> Response {
    let tag = view.etag.as_str();
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        view.body.clone().into_response()
    };
    let h = resp.headers_mut();
    if !matches {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={MAX_AGE_S}"))
            .unwrap_or(HeaderValue::from_static("public")),
    );
    resp
}

/// The cutoff of the public views at `now_ms` under `delay_s`: nothing the hub received after
/// it is public.
pub fn cutoff_at(now_ms: i64, delay_s: u64) -> i64 {
    let delay_ms = i64::try_from(delay_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    analytics::cutoff_ms(now_ms, delay_ms)
}

/// `provider_id`'s track record at `now_ms`'s cutoff, built once per cutoff ([`cache`]).
async fn current(
    state: &AppState,
    provider_id: &str,
    now_ms: i64,
) -> Result<Arc<TrackRecord>, ApiError> {
    let delay_s = state.config.public.delay_s;
    state
        .public_cache
        .track(provider_id, cutoff_at(now_ms, delay_s), || {
            track_record(&state.db, &state.hub_identity, provider_id, now_ms, delay_s)
        })
        .await
}

/// `provider_id`'s `view` at the current cutoff, rendered once per cutoff from its track record
/// by `render` ([`cache`]), answered like [`cached`]. The clock is read once: the view and the
/// record it is rendered from are of the same cutoff.
pub async fn view(
    state: &AppState,
    request: &HeaderMap,
    provider_id: &str,
    view: &str,
    content_type: &'static str,
    render: impl FnOnce(&TrackRecord) -> Result<Vec<u8>, ApiError>,
) -> Result<Response, ApiError> {
    let now_ms = state.now_ms();
    let cutoff = cutoff_at(now_ms, state.config.public.delay_s);
    let rendered = state
        .public_cache
        .view(provider_id, view, cutoff, || async {
            let t = current(state, provider_id, now_ms).await?;
            render(&t)
        })
        .await?;
    Ok(respond(request, content_type, &rendered))
}

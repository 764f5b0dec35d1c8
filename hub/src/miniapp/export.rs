//! The trader's own records out of the Mini App: the closed trades their node published, as CSV
//! (for a spreadsheet or another tracker), and their equity curve, as PNG.
//!
//! Telegram downloads a file itself (`Telegram.WebApp.downloadFile`), without the session's
//! bearer token, so `POST /miniapp/app/export` (bearer and CSRF, like every action) answers a
//! link that carries its own proof: `/miniapp/download/{csv|png}?u=<account>&exp=<unix ms>&sig=…`,
//! an HMAC-SHA256 over the kind, the account and the expiry under a key derived from the hub's
//! secrets — valid [`VALID_MS`], on every instance of the hub, and naming nothing but what it
//! serves. Only what the trader published is in it (the hub never sees the rest).

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tradecast_protocol::{Body, Record, Side, TradeClosed};

use super::session::Session;
use crate::api::extract::{Path, Query, RequestId};
use crate::error::ApiError;
use crate::state::AppState;

/// How long a download link works.
pub const VALID_MS: i64 = 5 * 60_000;

/// What can be downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The published closed trades.
    Csv,
    /// The published equity curve.
    Png,
}

impl Kind {
    fn parse(text: &str) -> Option<Kind> {
        match text {
            "csv" => Some(Kind::Csv),
            "png" => Some(Kind::Png),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Csv => "csv",
            Kind::Png => "png",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Kind::Csv => "tradecast-trades.csv",
            Kind::Png => "tradecast-equity.png",
        }
    }
}

/// The link's signature (hex HMAC-SHA256 under the hub's keyed hash).
fn signature(state: &AppState, kind: Kind, user_id: &str, expires_ms: i64) -> String {
    let data = format!("{}\n{user_id}\n{expires_ms}", kind.as_str());
    hex::encode(state.secrets.keyed_hash(b"tradecast miniapp download\0", data.as_bytes()))
}

/// The export action's form.
#[derive(Debug, Default, Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    kind: String,
}

/// What the export action answers: a link for `Telegram.WebApp.downloadFile`.
#[derive(Debug, Serialize)]
pub struct Download {
    /// `download`.
    pub kind: &'static str,
    /// The link (relative to the hub), valid [`VALID_MS`].
    pub url: String,
    /// The file's name.
    pub file_name: &'static str,
}

/// `POST /miniapp/app/export` (`kind` = `csv` or `png`): a download link for the trader's own
/// published records. Needs the plan's `mini_app` and `analytics` (402 otherwise).
pub async fn export(
    State(state): State<AppState>,
    Session(mini): Session,
    headers: HeaderMap,
    form: Result<Form<ExportForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let l = super::pages::checked(&mini, &headers)?;
    let now = state.now_ms();
    for feature in ["mini_app", "analytics"] {
        crate::entitlements::require_feature(&state.db, &l.user_id, feature, now).await?;
    }
    let form = form.map(|Form(f)| f).map_err(|e| ApiError::InvalidBody(e.body_text()))?;
    let kind = Kind::parse(&form.kind)
        .ok_or_else(|| ApiError::Validation("`kind` is `csv` or `png`".into()))?;
    let expires = now.saturating_add(VALID_MS);
    let sig = signature(&state, kind, &l.user_id, expires);
    let url =
        format!("/miniapp/download/{}?u={}&exp={expires}&sig={sig}", kind.as_str(), l.user_id);
    let answer = Download { kind: "download", url, file_name: kind.file_name() };
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// `POST /miniapp/app/share`: a new redacted share link to the trader's published record
/// ([`crate::share`]), which the app hands to Telegram's share sheet. Needs the plan's `mini_app`
/// and `analytics` (402 otherwise).
pub async fn share(
    State(state): State<AppState>,
    Session(mini): Session,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let l = super::pages::checked(&mini, &headers)?;
    let now = state.now_ms();
    for feature in ["mini_app", "analytics"] {
        crate::entitlements::require_feature(&state.db, &l.user_id, feature, now).await?;
    }
    let new = crate::share::NewShareLink { label: Some("from Telegram".into()) };
    let link = crate::share::create(&state, &l.user_id, &new, &request_id).await?;
    let answer = serde_json::json!({ "kind": "share", "url": link.url });
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// The download link's query.
#[derive(Debug, Deserialize)]
pub struct Ticket {
    u: String,
    exp: i64,
    sig: String,
}

/// `GET /miniapp/download/{kind}`: the file, for a link [`export`] made less than
/// [`VALID_MS`] ago (401 `unauthenticated` for a forged or expired one).
pub async fn download(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Query(t): Query<Ticket>,
) -> Result<Response, ApiError> {
    let kind = Kind::parse(&kind).ok_or_else(|| ApiError::NotFound(format!("no {kind}")))?;
    let expected = signature(&state, kind, &t.u, t.exp);
    let genuine =
        expected.len() == t.sig.len() && bool::from(expected.as_bytes().ct_eq(t.sig.as_bytes()));
    if !genuine {
        return Err(ApiError::Unauthenticated("not a download link of this hub".into()));
    }
    if t.exp < state.now_ms() || t.exp > state.now_ms().saturating_add(VALID_MS) {
        return Err(ApiError::Unauthenticated("the download link has expired".into()));
    }
    let records = published(&state, &t.u).await?;
    let disposition = format!("attachment; filename=\"{}\"", kind.file_name());
    let (content_type, body) = match kind {
        Kind::Csv => ("text/csv; charset=utf-8", trades_csv(&records).into_bytes()),
        Kind::Png => ("image/png", equity_png(&records)?),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

/// Each of the account's devices with the records it published, in chain order (devices that
/// published nothing left out): what the Mini App's analytics and its downloads read.
pub(crate) async fn published_by_device(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<(tradecast_protocol::DeviceId, Vec<Record>)>, ApiError> {
    let mut out = Vec::new();
    for key in crate::public::store::device_keys(&state.db, user_id).await? {
        let author = key.device_id();
        let items =
            crate::public::store::published_records(&state.db, &state.hub_identity, &author)
                .await?;
        if !items.is_empty() {
            out.push((author, items.into_iter().map(|i| i.record).collect()));
        }
    }
    Ok(out)
}

/// Every record the account's devices published.
async fn published(state: &AppState, user_id: &str) -> Result<Vec<Record>, ApiError> {
    Ok(published_by_device(state, user_id).await?.into_iter().flat_map(|(_, r)| r).collect())
}

/// The closed trades in `records`, one per device and ticket (a ticket published twice counts
/// once, as in the track record), in closing order.
pub(crate) fn closed_trades(records: &[Record]) -> Vec<TradeClosed> {
    let mut trades: BTreeMap<(String, u64), TradeClosed> = BTreeMap::new();
    for r in records {
        if let Ok(Body::TradeClosed(t)) = r.body() {
            trades.entry((t.device.to_text(), t.ticket)).or_insert(t);
        }
    }
    let mut rows: Vec<TradeClosed> = trades.into_values().collect();
    rows.sort_by_key(|t| (t.closed_at_ms, t.ticket));
    rows
}

/// The closed trades as CSV, a row each ([`closed_trades`]). A field a spreadsheet could read
/// as a formula cannot occur: every field is a number, a time, an id or a broker's symbol,
/// quoted when it holds a comma or a quote.
pub fn trades_csv(records: &[Record]) -> String {
    let when = |ms: i64| crate::ui::fmt::when(Some(ms));
    let quote = |s: &str| {
        let s = s.trim_start_matches(['=', '+', '-', '@']);
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::from(
        "device,ticket,symbol,side,volume,open_time_utc,open_price,close_time_utc,close_price,profit,commission,swap,net\r\n",
    );
    for t in closed_trades(records) {
        let side = match t.side {
            Side::Buy => "buy",
            Side::Sell => "sell",
        };
        // Net of the trade; empty if the record's figures overflow (signed, but not trusted).
        let net = t.profit.checked_add(t.commission).and_then(|n| n.checked_add(t.swap));
        let net = net.map(|n| n.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{side},{},{},{},{},{},{},{},{},{net}\r\n",
            t.device.to_text(),
            t.ticket,
            quote(&t.symbol),
            t.volume,
            when(t.opened_at_ms),
            t.open_price,
            when(t.closed_at_ms),
            t.close_price,
            t.profit,
            t.commission,
            t.swap,
        ));
    }
    out
}

/// The equity curve of the published equity points (all devices, in time order).
fn equity_png(records: &[Record]) -> Result<Vec<u8>, ApiError> {
    let mut points: Vec<(i64, rust_decimal::Decimal)> = records
        .iter()
        .filter_map(|r| match r.body() {
            Ok(Body::EquityPoint(p)) => Some((p.at_ms, p.equity)),
            _ => None,
        })
        .collect();
    points.sort_by_key(|p| p.0);
    crate::charts::equity::equity_png("Your equity", "equity", &points, crate::charts::Theme::Light)
        .map_err(ApiError::internal)
}

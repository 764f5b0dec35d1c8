//! The local API on 127.0.0.1 (default `127.0.0.1:7342`): JSON under `/api/v1/`, for the CLI,
//! the UI and tests; the same listener serves the web UI ([`crate::ui`]) and refuses any request
//! whose `Host` is not the loopback address served. Every call needs `Authorization: Bearer <token>`, the token `init` wrote to
//! `<data>/api-token` (compared in constant time). Errors are problem+json (RFC 9457): 4xx say
//! what was wrong, 5xx stay generic and the cause is logged once.
//!
//! | call | does |
//! | --- | --- |
//! | `GET /api/v1/status` | device id, mode, EA link health, accounts with equity, floor, lock |
//! | `GET /api/v1/signals`, `POST /api/v1/signals` | list; submit one (the node signs it; `execute` also trades it) |
//! | `GET /api/v1/orders`, `/positions`, `/deals`, `/equity` | an account's book (`?account=login@server`) |
//! | `POST /api/v1/close-all`, `POST /api/v1/unlock` | the trader's close-all; unlock auto mode after the guard |
//! | `GET /api/v1/settings` | the settings in force |
//! | `GET /api/v1/ea-keys`, `POST /api/v1/ea-keys` | key ids; a new key (its secret shown once) |
//! | `DELETE /api/v1/ea-keys/{id}` | revoke a key: the EA holding it is refused from its next call (404 if unknown) |
//! | `POST /api/v1/signals/{id}/approve`, `/reject` | the trader's decision (`{user?, reason?, via?}`; `via` makes it a remote request); 409 when refused (expired, already decided, remote disabled, outside the policy) |
//! | `GET /api/v1/approvals`, `GET /api/v1/copy-log` | every signal's approval; every evaluation with its steps |
//! | `GET /api/v1/policy`, `PUT /api/v1/policy` | the copy policy in force; save a new one (JSON, validated) |
//! | `GET /api/v1/trades?format=csv\|json&from=YYYY-MM-DD&to=YYYY-MM-DD` | the account's closed trades as a file ([`crate::export`]): the Myfxbook CSV or Tradecast's JSON (the default), closes on those broker server days; 400 `invalid-date` / `invalid-format` |
//! | `GET /api/v1/records/{stream}?from=SEQ&limit=N` | the records this node signed on a stream (1 signals, 2 shared, 3 private, 4 device, 5 commands), oldest first, each as its wire bytes in hex: verify them against `status.sync.identity_key`, or compare with the hub's copy |

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tradecast_protocol::{EntryKind, Side, SignalId};
use zeroize::Zeroizing;

use crate::clock::wall_ms;
use crate::export::{self, ExportError, ExportQuery, QueryError};
use crate::keys;
use crate::policy::PolicySettings;
use crate::policy::approval::{Channel, Decider, DecisionRequest, Refused, Verdict};
use crate::runtime::{Node, NodeError};

#[derive(Clone)]
struct Api {
    node: Arc<Node>,
    token: Arc<Zeroizing<String>>,
}

/// An API error: problem+json.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("urn:tradecast:problem:{}", self.code),
            "title": self.code,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        (self.status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string())
            .into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Refused(m) => {
                ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "refused", detail: m }
            }
            NodeError::UnknownOrder(m) => {
                ApiError { status: StatusCode::NOT_FOUND, code: "unknown-order", detail: m }
            }
            NodeError::UnknownSignal(_) => ApiError {
                status: StatusCode::NOT_FOUND,
                code: "unknown-signal",
                detail: e.to_string(),
            },
            NodeError::Decision(r) => ApiError {
                status: StatusCode::CONFLICT,
                code: match r {
                    Refused::AlreadyDecided { .. } => "already-decided",
                    Refused::Expired { .. } => "signal-expired",
                    Refused::RemoteDisabled => "remote-approval-disabled",
                    Refused::OutsidePolicy { .. } => "outside-policy",
                    _ => "decision-refused",
                },
                detail: r.to_string(),
            },
            NodeError::Policy(p) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid-policy",
                detail: p.to_string(),
            },
            e => {
                tracing::error!(target: "tradecast::api", error = %e, "API call failed");
                ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "internal",
                    detail: "internal error".into(),
                }
            }
        }
    }
}

/// The router for the listener bound on `addr`: the API (bearer token) and the web UI
/// ([`crate::ui`], session cookie), both behind the Host check ([`crate::ui::guard`]).
pub fn router(node: Arc<Node>, token: Zeroizing<String>, addr: std::net::SocketAddr) -> Router {
    let ui = crate::ui::Ui::new(node.clone(), token.clone(), addr).router();
    api_router(node, token).merge(ui).layer(middleware::from_fn_with_state(addr, crate::ui::guard))
}

fn api_router(node: Arc<Node>, token: Zeroizing<String>) -> Router {
    let api = Api { node, token: Arc::new(token) };
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/signals", get(signals).post(submit_signal))
        .route("/api/v1/orders", get(orders))
        .route("/api/v1/positions", get(positions))
        .route("/api/v1/deals", get(deals))
        .route("/api/v1/equity", get(equity))
        .route("/api/v1/settings", get(settings))
        .route("/api/v1/ea-keys", get(ea_keys).post(new_ea_key))
        .route("/api/v1/ea-keys/{id}", axum::routing::delete(revoke_ea_key))
        .route("/api/v1/close-all", post(close_all))
        .route("/api/v1/unlock", post(unlock))
        .route("/api/v1/signals/{id}/approve", post(approve))
        .route("/api/v1/signals/{id}/reject", post(reject))
        .route("/api/v1/approvals", get(approvals))
        .route("/api/v1/feature-grants", get(feature_grants))
        .route("/api/v1/copy-log", get(copy_log))
        .route("/api/v1/policy", get(policy).put(set_policy))
        .route("/api/v1/publishing", get(publishing).put(set_publishing))
        .route("/api/v1/records/{stream}", get(records))
        .route("/api/v1/trades", get(trades))
        .layer(middleware::from_fn_with_state(api.clone(), auth))
        .with_state(api)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    token: Zeroizing<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    axum::serve(listener, router(node, token, addr)).with_graceful_shutdown(shutdown).await
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = given.as_bytes().ct_eq(api.token.as_bytes()).into();
    if !ok {
        return ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            detail: "Authorization: Bearer <the token in the data dir's api-token file>".into(),
        }
        .into_response();
    }
    next.run(req).await
}

#[derive(Debug, Deserialize)]
struct AccountQuery {
    account: Option<String>,
}

async fn status(State(api): State<Api>) -> Result<Response, ApiError> {
    Ok(Json(api.node.status(wall_ms())?).into_response())
}

async fn signals(State(api): State<Api>) -> Result<Response, ApiError> {
    Ok(Json(api.node.signals()?).into_response())
}

async fn orders(
    State(api): State<Api>,
    Query(q): Query<AccountQuery>,
) -> Result<Response, ApiError> {
    let account = api.node.pick_account(q.account.as_deref())?;
    Ok(Json(api.node.orders(&account)?).into_response())
}

async fn positions(
    State(api): State<Api>,
    Query(q): Query<AccountQuery>,
) -> Result<Response, ApiError> {
    let account = api.node.pick_account(q.account.as_deref())?;
    Ok(Json(api.node.positions(&account)?).into_response())
}

async fn deals(
    State(api): State<Api>,
    Query(q): Query<AccountQuery>,
) -> Result<Response, ApiError> {
    let account = api.node.pick_account(q.account.as_deref())?;
    Ok(Json(api.node.deal_list(&account)?).into_response())
}

async fn equity(
    State(api): State<Api>,
    Query(q): Query<AccountQuery>,
) -> Result<Response, ApiError> {
    let account = api.node.pick_account(q.account.as_deref())?;
    Ok(Json(api.node.equity(&account)?).into_response())
}

#[derive(Serialize)]
struct SettingsView {
    poll_wait_ms: u32,
    link_down_after_ms: i64,
    subscriptions: Vec<String>,
    mode: &'static str,
    self_trade: bool,
    /// The drawdown cap in force: the policy's `risk.drawdown_lock_pct` (kept under this name
    /// for the API's clients).
    drawdown_max_pct: Decimal,
    risk_pct: Decimal,
    ea_magic: u32,
}

async fn settings(State(api): State<Api>) -> Result<Json<SettingsView>, ApiError> {
    let s = api.node.settings();
    let policy = api.node.policy()?;
    Ok(Json(SettingsView {
        poll_wait_ms: s.poll_wait_ms,
        link_down_after_ms: s.link_down_after_ms,
        subscriptions: s.subscriptions.iter().map(|(a, t)| format!("{a}:{}", t.name())).collect(),
        mode: if s.provider { "provider" } else { "subscriber" },
        self_trade: s.self_trade,
        drawdown_max_pct: policy.risk.drawdown_lock_pct,
        risk_pct: s.risk_pct,
        ea_magic: s.ea_magic,
    }))
}

async fn ea_keys(State(api): State<Api>) -> Json<Vec<String>> {
    Json(api.node.ea_key_ids())
}

#[derive(Serialize)]
struct NewKey {
    key_id: String,
    secret: String,
}

async fn new_ea_key(State(api): State<Api>) -> Result<Response, ApiError> {
    let k = api.node.new_ea_key()?;
    let body = NewKey { key_id: k.key_id.clone(), secret: k.secret.to_string() };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn revoke_ea_key(
    State(api): State<Api>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    if api.node.revoke_ea_key(&id)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "no-such-key",
            detail: format!("no EA key {id}"),
        })
    }
}

#[derive(Debug, Deserialize)]
struct Reason {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

async fn close_all(
    State(api): State<Api>,
    body: Option<Json<Reason>>,
) -> Result<Response, ApiError> {
    let r = body.map(|b| b.0).unwrap_or(Reason { account: None, reason: None });
    let account = api.node.pick_account(r.account.as_deref())?;
    let reason = r.reason.unwrap_or_else(|| "the trader asked to close everything".into());
    let row = api.node.close_all(&account, &reason)?;
    Ok((StatusCode::ACCEPTED, Json(row)).into_response())
}

async fn unlock(State(api): State<Api>, body: Option<Json<Reason>>) -> Result<Response, ApiError> {
    let r = body.map(|b| b.0).unwrap_or(Reason { account: None, reason: None });
    let account = api.node.pick_account(r.account.as_deref())?;
    api.node.unlock(&account)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A signal posted by an external strategy (the node signs it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitSignal {
    /// `login@server`; default: the only account.
    #[serde(default)]
    pub account: Option<String>,
    pub symbol: String,
    /// `M1` … `W1`.
    pub timeframe: tradecast_protocol::Timeframe,
    pub side: Side,
    pub entry: Decimal,
    pub stop: Decimal,
    pub tp1: Decimal,
    #[serde(default)]
    pub tp2: Option<Decimal>,
    /// Market clock; default: one hour after the terminal's clock.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    /// `market` (default), `limit` or `stop`: a pending entry at `entry`.
    #[serde(default)]
    pub entry_kind: Option<EntryKind>,
    /// The open time of the bar the signal was made on (unix ms UTC, market clock); the signal
    /// is issued at its close. Default: the terminal's clock (issued now).
    #[serde(default)]
    pub bar_time_ms: Option<i64>,
    /// Trade it on this account too.
    #[serde(default)]
    pub execute: bool,
    /// Lots; default: sized by the risk setting.
    #[serde(default)]
    pub volume: Option<Decimal>,
}

async fn submit_signal(
    State(api): State<Api>,
    body: Result<Json<SubmitSignal>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(s) = body.map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid-body",
        detail: e.body_text(),
    })?;
    let wrong = |m: &str| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid-signal",
        detail: m.to_owned(),
    };
    let long = s.side == Side::Buy;
    if s.entry <= Decimal::ZERO || s.stop <= Decimal::ZERO || s.tp1 <= Decimal::ZERO {
        return Err(wrong("entry, stop and tp1 must be positive"));
    }
    let ordered = if long {
        s.stop < s.entry && s.entry < s.tp1
    } else {
        s.tp1 < s.entry && s.entry < s.stop
    };
    if !ordered {
        return Err(wrong("a buy needs stop < entry < tp1, a sell tp1 < entry < stop"));
    }
    if s.volume.is_some_and(|v| v <= Decimal::ZERO) {
        return Err(wrong("volume must be positive"));
    }
    let account = api.node.pick_account(s.account.as_deref())?;
    let market = api.node.market_ms(&account)?;
    let id = keys::random_bytes::<16>().map_err(NodeError::from)?;
    let risk = (s.entry - s.stop).abs();
    let rr =
        if risk.is_zero() { Decimal::ZERO } else { ((s.tp1 - s.entry).abs() / risk).round_dp(8) };
    let signal = tradecast_protocol::Signal {
        id: SignalId(*id),
        provider: api.node.device_id(),
        strategy_id: "external/api".into(),
        strategy_version: 1,
        symbol: s.symbol,
        timeframe: s.timeframe,
        side: s.side,
        entry_kind: s.entry_kind.unwrap_or(EntryKind::Market),
        entry: s.entry,
        stop: s.stop,
        tp1: s.tp1,
        tp2: s.tp2,
        bar_time_ms: s.bar_time_ms.unwrap_or(market),
        expires_at_ms: s.expires_at_ms.unwrap_or(market + 3_600_000),
        leg: 1,
        indicators: Vec::new(),
        rr,
    };
    let row = api.node.submit_signal(&account, signal, s.execute, s.volume)?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

/// A decision's body (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    /// Who decides; default `trader`.
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// Set by a relay (the hub, for Telegram or the Mini App): a remote request.
    #[serde(default)]
    via: Option<String>,
}

async fn decide(
    api: Api,
    id: String,
    verdict: Verdict,
    body: Option<Json<DecisionBody>>,
) -> Result<Response, ApiError> {
    let b = body.map(|b| b.0).unwrap_or_default();
    let user = b.user.unwrap_or_else(|| "trader".into());
    let by = match b.via {
        Some(via) => Decider::Remote { user, via },
        None => Decider::Trader { user, channel: Channel::LocalApi },
    };
    let request = DecisionRequest { verdict, by, reason: b.reason.unwrap_or_default() };
    let approval = api.node.decide(&id, &request)?;
    Ok(Json(approval).into_response())
}

async fn approve(
    State(api): State<Api>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response, ApiError> {
    decide(api, id, Verdict::Approve, body).await
}

async fn reject(
    State(api): State<Api>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response, ApiError> {
    decide(api, id, Verdict::Reject, body).await
}

async fn approvals(State(api): State<Api>) -> Result<Response, ApiError> {
    Ok(Json(api.node.approvals()?).into_response())
}

/// The plan features in force now, as the hub signed them (each grant verified against the
/// pinned hub key when it arrived).
async fn feature_grants(State(api): State<Api>) -> Result<Response, ApiError> {
    Ok(Json(api.node.feature_grants_at(crate::clock::wall_ms())?).into_response())
}

/// `?from=SEQ&limit=N` of the records export.
#[derive(Debug, Deserialize)]
struct RecordsQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

/// One record of `GET /api/v1/records/{stream}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedRecord {
    pub seq: u64,
    /// The record's kind in snake case (`signal`, `position_snapshot`, …).
    pub kind: String,
    pub created_at_ms: i64,
    pub sealed: bool,
    /// The record's wire bytes (header, signature, body), hex.
    pub record: String,
}

/// Most records one export call returns (a shorter page is the last).
pub const RECORDS_PAGE_MAX: usize = 1_000;

fn bad_request(detail: String) -> ApiError {
    ApiError { status: StatusCode::BAD_REQUEST, code: "bad-request", detail }
}

async fn records(
    State(api): State<Api>,
    stream: Result<axum::extract::Path<u32>, axum::extract::rejection::PathRejection>,
    query: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let stream = stream.map_err(|e| bad_request(format!("stream: {e}")))?.0;
    let q = query.map_err(|e| bad_request(e.body_text()))?.0;
    let stream = tradecast_protocol::StreamId(stream);
    if !(1..=5).contains(&stream.0) {
        return Err(bad_request(format!(
            "stream {} is not one a node writes (1 signals, 2 shared, 3 private, 4 device, 5 commands)",
            stream.0
        )));
    }
    let limit = q.limit.unwrap_or(RECORDS_PAGE_MAX).clamp(1, RECORDS_PAGE_MAX);
    let page = api.node.store().read().map_err(NodeError::from)?.outbox_page(
        stream,
        q.from.unwrap_or(1),
        limit,
    );
    let out: Vec<ExportedRecord> = page
        .map_err(NodeError::from)?
        .iter()
        .map(|r| {
            let h = r.header();
            ExportedRecord {
                seq: h.seq,
                kind: h.kind.name().to_owned(),
                created_at_ms: h.created_at_ms,
                sealed: h.sealed,
                record: hex::encode(r.encode()),
            }
        })
        .collect();
    Ok(Json(out).into_response())
}

/// The account's closed trades as a file to download, the same file the History page offers.
async fn trades(
    State(api): State<Api>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return Ok(QueryError::Malformed(e.body_text()).into_response()),
    };
    let (format, range) = match q.parse(None) {
        Ok(r) => r,
        Err(e) => return Ok(e.into_response()),
    };
    match export::download(&api.node, q.account.as_deref(), format, range, wall_ms()) {
        Ok(file) => Ok(file.into_response()),
        Err(ExportError::Node(e)) => Err(e.into()),
        Err(e) => {
            tracing::error!(target: "tradecast::api", error = %e, "trades not exported");
            Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal",
                detail: "internal error".into(),
            })
        }
    }
}

async fn copy_log(State(api): State<Api>) -> Result<Response, ApiError> {
    Ok(Json(api.node.copy_log()?).into_response())
}

async fn policy(State(api): State<Api>) -> Result<Response, ApiError> {
    Ok(Json(api.node.policy()?).into_response())
}

/// What the trader consented to publish, per data kind.
async fn publishing(State(api): State<Api>) -> Result<Response, ApiError> {
    Ok(Json(api.node.publish_consent()?).into_response())
}

/// Sets the consent (`{"closed_trades": bool, "equity": bool, "balance_operations": bool,
/// "daily_summary": bool}`; a field left out is off) for the history recorded from now on.
async fn set_publishing(
    State(api): State<Api>,
    body: Result<Json<crate::store::PublishConsent>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(consent) = body.map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid-body",
        detail: e.body_text(),
    })?;
    api.node.set_publish_consent(consent)?;
    Ok(Json(api.node.publish_consent()?).into_response())
}

async fn set_policy(
    State(api): State<Api>,
    body: Result<Json<PolicySettings>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(p) = body.map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid-body",
        detail: e.body_text(),
    })?;
    api.node.set_policy(&p)?;
    Ok(Json(api.node.policy()?).into_response())
}

//! The node's web UI, served on the local API's address: server-rendered HTML ([`maud`]) with a
//! little JS (`assets/app.js`: countdowns, the equity chart, live refresh) and vendored htmx and
//! uPlot (`assets/vendor/`, with their licences), all embedded in the binary, so `cargo build`
//! alone produces the UI.
//!
//! Pages: `/` (dashboard: balance/equity/margin, health, pending signals with approve/reject and
//! a countdown on the market clock, open positions with floating P&L, the equity and drawdown
//! chart), `/copy-log`, `/history` (closed trades, per-symbol stats, daily/weekly/monthly P&L;
//! `/history/export.csv` and `/history/export.json` download the closed trades, [`crate::export`]),
//! `/settings` (the trader's plan read from the hub, the whole copy policy, EA keys, the hub
//! connection), `/setup` (first-run setup,
//! [`setup`]). `/ui/events` is a server-sent-event stream (`refresh` on every change the node
//! commits, and every few seconds); the page's `<main>` and health header re-render through htmx
//! (not on the settings form). Actions (POST, CSRF-checked): approve/reject, unlock, close-all,
//! create/revoke an EA key, sign out.
//!
//! Safety of a loopback UI ([`guard`] on every request, API included):
//! - the `Host` header must name the loopback address and port served (DNS rebinding);
//! - `/login?token=<api token>` (the URL `tradecast-node ui-url` prints) opens a session: a
//!   random id in a `SameSite=Strict; HttpOnly` cookie, the token leaves the address bar by a
//!   redirect; the store keeps a BLAKE3 hash of each session id with its CSRF token (setting
//!   `ui.sessions`), so a session survives a restart and lasts 30 days or until sign-out;
//! - every state-changing request carries the session's CSRF token (`X-CSRF-Token` header, sent
//!   by htmx from the body's `hx-headers`, or the form's `csrf` field) and, when the browser sends
//!   one, an `Origin` equal to the served origin;
//! - every page carries a strict Content-Security-Policy ([`CSP`]): scripts and styles from the
//!   node only, nothing inline, no frames, forms post only to the node.
//!
//! Public API: [`Ui::new`], [`Ui::router`], [`guard`] (the Host check, also used by the API),
//! [`CSP`], [`SESSION_COOKIE`], [`login_url`].

mod pages;
pub mod setup;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::export::{ExportError, ExportQuery, Format, QueryError};
use crate::policy::approval::{Channel, Decider, DecisionRequest, Verdict};
use crate::runtime::Node;

/// The Content-Security-Policy of every UI response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tc_session";

const HTMX_JS: &str = include_str!("../../assets/vendor/htmx.min.js");
const HTMX_LICENSE: &str = include_str!("../../assets/vendor/htmx.LICENSE");
const UPLOT_JS: &str = include_str!("../../assets/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../../assets/vendor/uPlot.LICENSE");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");

/// The URL that opens the UI for the node serving the API on `api_addr`.
pub fn login_url(api_addr: SocketAddr, token: &str) -> String {
    format!("http://{api_addr}/login?token={token}")
}

/// The UI's state: the node, the API token (to open a session), the sessions and the address
/// served.
#[derive(Clone)]
pub struct Ui {
    node: Arc<Node>,
    token: Arc<Zeroizing<String>>,
    /// BLAKE3 of the session id (hex) → the session, mirrored in the store.
    sessions: Arc<Mutex<HashMap<String, StoredSession>>>,
    addr: SocketAddr,
}

/// A signed-in request's session.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    /// The key of the session in [`Ui::sessions`].
    key: String,
}

/// A session as kept in the store's settings (`ui.sessions`): only a hash of the cookie's id,
/// so the store file alone never holds a usable cookie.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct StoredSession {
    csrf: String,
    /// Wall clock when it was opened.
    created_ms: i64,
}

/// The store setting holding the sessions.
const SESSIONS_SETTING: &str = "ui.sessions";
/// A session lasts this long after its login (wall clock); then the trader opens the URL again.
pub const SESSION_TTL_MS: i64 = 30 * 86_400_000;
/// Most sessions kept (the oldest goes first).
const MAX_SESSIONS: usize = 16;

fn session_key(id: &str) -> String {
    blake3::hash(id.as_bytes()).to_hex().to_string()
}

impl Ui {
    /// The UI of `node`, served on `addr` (the bound address: the Host check needs its port).
    /// Sessions opened before a restart are read back from the store and stay valid until
    /// [`SESSION_TTL_MS`] after their login.
    pub fn new(node: Arc<Node>, token: Zeroizing<String>, addr: SocketAddr) -> Ui {
        let sessions = load_sessions(&node);
        Ui { node, token: Arc::new(token), sessions: Arc::new(Mutex::new(sessions)), addr }
    }

    /// Writes the sessions to the store (dropping expired ones first).
    fn persist(&self, sessions: &mut HashMap<String, StoredSession>) {
        let now = crate::clock::wall_ms();
        sessions.retain(|_, s| now.saturating_sub(s.created_ms) < SESSION_TTL_MS);
        while sessions.len() > MAX_SESSIONS {
            let Some(oldest) =
                sessions.iter().min_by_key(|(_, s)| s.created_ms).map(|(k, _)| k.clone())
            else {
                break;
            };
            sessions.remove(&oldest);
        }
        let text = match serde_json::to_string(&*sessions) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(target: "tradecast::ui", error = %e, "sessions not saved");
                return;
            }
        };
        if let Err(e) = self.node.store().write(|tx| tx.set_setting(SESSIONS_SETTING, &text)) {
            // Sessions then last until the node stops.
            tracing::error!(target: "tradecast::ui", error = %e, "sessions not saved");
        }
    }

    /// The UI's routes (pages, assets, login, events, actions); merge with the API's.
    pub fn router(self) -> Router {
        let pages = Router::new()
            .route("/", get(dashboard))
            .route("/copy-log", get(copy_log))
            .route("/history", get(history))
            .route("/history/export.csv", get(export_csv))
            .route("/history/export.json", get(export_json))
            .route("/settings", get(settings).post(save_settings))
            .route("/settings/publishing", post(save_publishing))
            .route("/ui/ea-keys", post(create_ea_key))
            .route("/ui/ea-keys/{id}/revoke", post(revoke_ea_key))
            .route("/ui/logout", post(logout))
            .route("/ui/unlock", post(unlock))
            .route("/ui/close-all", post(close_all))
            .route("/ui/plan/link", post(plan_link))
            .route("/ui/events", get(events))
            .route("/ui/equity.json", get(equity_json))
            .route("/ui/signals/{id}/approve", post(approve))
            .route("/ui/signals/{id}/reject", post(reject))
            .merge(setup::pages())
            .layer(middleware::from_fn_with_state(self.clone(), session_layer));
        Router::new()
            .route("/login", get(login))
            .route("/assets/app.js", get(|| async { asset("text/javascript", APP_JS) }))
            .route("/assets/app.css", get(|| async { asset("text/css", APP_CSS) }))
            .route(
                "/assets/vendor/htmx.min.js",
                get(|| async { asset("text/javascript", HTMX_JS) }),
            )
            .route(
                "/assets/vendor/htmx.LICENSE",
                get(|| async { asset("text/plain", HTMX_LICENSE) }),
            )
            .route(
                "/assets/vendor/uPlot.iife.min.js",
                get(|| async { asset("text/javascript", UPLOT_JS) }),
            )
            .route("/assets/vendor/uPlot.min.css", get(|| async { asset("text/css", UPLOT_CSS) }))
            .route(
                "/assets/vendor/uPlot.LICENSE",
                get(|| async { asset("text/plain", UPLOT_LICENSE) }),
            )
            .merge(setup::assets())
            .merge(pages)
            .layer(middleware::from_fn(security_headers))
            .with_state(self)
    }

    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let key = session_key(&id);
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let s = sessions.get(&key)?;
        if crate::clock::wall_ms().saturating_sub(s.created_ms) >= SESSION_TTL_MS {
            return None;
        }
        Some(Session { csrf: s.csrf.clone(), key })
    }
}

/// The sessions in the store; none when the setting is missing or unreadable (the trader signs
/// in again).
fn load_sessions(node: &Node) -> HashMap<String, StoredSession> {
    let text = node.store().read().and_then(|v| v.setting(SESSIONS_SETTING));
    match text {
        Ok(Some(t)) => serde_json::from_str(&t).unwrap_or_else(|e| {
            tracing::warn!(target: "tradecast::ui", error = %e, "stored UI sessions unreadable: signed out");
            HashMap::new()
        }),
        Ok(None) => HashMap::new(),
        Err(e) => {
            tracing::warn!(target: "tradecast::ui", error = %e, "stored UI sessions unreadable: signed out");
            HashMap::new()
        }
    }
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")], body)
        .into_response()
}

/// The value of cookie `name`, if sent.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn random_hex() -> Option<String> {
    crate::keys::random_bytes::<32>().ok().map(|b| hex::encode(*b))
}

fn plain(status: StatusCode, words: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], words.to_owned())
        .into_response()
}

/// Refuses a request whose `Host` is not the loopback address and port served (DNS
/// rebinding: a page on another site resolving its name to 127.0.0.1 sends its own name).
pub async fn guard(State(addr): State<SocketAddr>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !host_ok(host, addr) {
        tracing::warn!(target: "tradecast::api", host, "request refused: Host is not the loopback address served");
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "refused: the Host header must be the loopback address this node serves",
        );
    }
    next.run(req).await
}

/// Whether `host` names the served loopback address: `127.0.0.1:PORT`, `localhost:PORT` or
/// `[::1]:PORT` with the served port.
pub fn host_ok(host: &str, addr: SocketAddr) -> bool {
    let port = addr.port();
    let Some((name, p)) = host.rsplit_once(':') else { return false };
    if p.parse::<u16>().ok() != Some(port) {
        return false;
    }
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` WebKit (the desktop app's webview)
    // sends `Origin: null` on the UI's own form posts, which the Origin check must refuse. Other
    // sites still get no referrer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Pages need a session; a state-changing request also the CSRF token (checked in the handler,
/// which may read it from the form) and a same-origin `Origin` when one is sent.
async fn session_layer(State(ui): State<Ui>, mut req: Request, next: Next) -> Response {
    let Some(session) = ui.session(req.headers()) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            pages::signed_out().into_string(),
        )
            .into_response();
    };
    let changes =
        req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD;
    if changes
        && let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !origin.strip_prefix("http://").is_some_and(|h| host_ok(h, ui.addr))
    {
        return plain(StatusCode::FORBIDDEN, "refused: cross-site request (Origin)");
    }
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// The CSRF check: the header or the form field must equal the session's token.
fn csrf_ok(session: &Session, headers: &HeaderMap, field: Option<&str>) -> bool {
    let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).or(field).unwrap_or("");
    !given.is_empty() && bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes()))
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    token: String,
    /// Where to go once signed in: one of [`setup::next_allowed`]'s paths, else `/`.
    #[serde(default)]
    next: Option<String>,
}

async fn login(State(ui): State<Ui>, Query(q): Query<LoginQuery>) -> Response {
    let ok: bool = q.token.trim().as_bytes().ct_eq(ui.token.as_bytes()).into();
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            pages::signed_out().into_string(),
        )
            .into_response();
    }
    let (Some(id), Some(csrf)) = (random_hex(), random_hex()) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "no randomness; try again");
    };
    {
        let mut sessions = ui.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let created_ms = crate::clock::wall_ms();
        sessions.insert(session_key(&id), StoredSession { csrf, created_ms });
        ui.persist(&mut sessions);
    }
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL_MS / 1_000
    );
    let next = q.next.as_deref().filter(|n| setup::next_allowed(n)).unwrap_or("/");
    let mut resp = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn html(markup: maud::Markup) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// A rendered page with `status`, or, when the store could not be read, 500 and the page that
/// says so ([`pages::store_failure`]); the cause is logged here, once.
fn page(status: StatusCode, rendered: pages::PageResult) -> Response {
    match rendered {
        Ok(markup) => (status, html(markup)).into_response(),
        Err(e) => {
            tracing::error!(target: "tradecast::ui", error = %e, "page not rendered: the store failed");
            (StatusCode::INTERNAL_SERVER_ERROR, html(pages::store_failure())).into_response()
        }
    }
}

fn session_of(req: &axum::http::Extensions) -> Session {
    req.get::<Session>().cloned().unwrap_or(Session { csrf: String::new(), key: String::new() })
}

async fn dashboard(State(ui): State<Ui>, req: Request) -> Response {
    let s = session_of(req.extensions());
    page(StatusCode::OK, pages::dashboard(&ui.node, &s.csrf, None))
}

async fn copy_log(State(ui): State<Ui>, req: Request) -> Response {
    let s = session_of(req.extensions());
    page(StatusCode::OK, pages::copy_log(&ui.node, &s.csrf))
}

async fn history(State(ui): State<Ui>, req: Request) -> Response {
    let s = session_of(req.extensions());
    page(StatusCode::OK, pages::history(&ui.node, &s.csrf))
}

async fn export_csv(
    State(ui): State<Ui>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    export_file(&ui, Format::Csv, query)
}

async fn export_json(
    State(ui): State<Ui>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    export_file(&ui, Format::Json, query)
}

/// The History page's downloads ([`crate::export`]): a bad query is 400 problem+json, a store
/// failure the store-failure page, never an empty file.
fn export_file(
    ui: &Ui,
    format: Format,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return QueryError::Malformed(e.body_text()).into_response(),
    };
    let (format, range) = match q.parse(Some(format)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = crate::clock::wall_ms();
    match crate::export::download(&ui.node, q.account.as_deref(), format, range, now) {
        Ok(file) => file.into_response(),
        Err(ExportError::Node(crate::runtime::NodeError::Refused(words))) => {
            plain(StatusCode::UNPROCESSABLE_ENTITY, &words)
        }
        Err(e) => {
            tracing::error!(target: "tradecast::ui", error = %e, "trades not exported");
            (StatusCode::INTERNAL_SERVER_ERROR, html(pages::store_failure())).into_response()
        }
    }
}

async fn settings(State(ui): State<Ui>, req: Request) -> Response {
    let s = session_of(req.extensions());
    settings_page(&ui, &s.csrf, None, StatusCode::OK).await
}

/// The trader's plan, read from the hub now (5 s at most).
async fn plan_view(node: &Node) -> pages::PlanView {
    use crate::sync::billing::{self, BillingError};
    match billing::read_plan(node, crate::clock::wall_ms()).await {
        Ok(b) => pages::PlanView::Read(Box::new(b)),
        Err(BillingError::NotEnrolled) => pages::PlanView::NotEnrolled,
        Err(e) => {
            tracing::info!(target: "tradecast::ui", error = %e, "the plan was not read from the hub");
            pages::PlanView::Unreachable(e.to_string())
        }
    }
}

/// The settings page with the plan read from the hub.
async fn settings_page(
    ui: &Ui,
    csrf: &str,
    notice: Option<pages::SettingsNotice>,
    status: StatusCode,
) -> Response {
    let plan = plan_view(&ui.node).await;
    page(status, pages::settings(&ui.node, csrf, notice, &plan))
}

/// A plan button's form.
#[derive(Debug, Default, Deserialize)]
struct PlanLinkForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    action: String,
}

/// `POST /ui/plan/link`: a device link for the action (`checkout:<plan>`, `portal`,
/// `telegram-link`) signed now, answered with [`opening_page`].
async fn plan_link(
    State(ui): State<Ui>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<PlanLinkForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if !csrf_ok(&session, &headers, form.csrf.as_deref()) {
        return csrf_refused();
    }
    let Ok(action) = tradecast_protocol::device_link::Action::parse(&form.action) else {
        return plain(StatusCode::UNPROCESSABLE_ENTITY, "unknown plan action");
    };
    match crate::sync::billing::link(&ui.node, &action, crate::clock::wall_ms()) {
        Ok(Some(url)) => opening_page(&url),
        Ok(None) => plain(StatusCode::CONFLICT, "this node is not enrolled with a hub"),
        Err(e) => {
            tracing::error!(target: "tradecast::ui", error = %e, "device link not made: the store failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "the node could not read its store")
        }
    }
}

/// What a plan button's POST answers: a page that opens `url` (the hub's device link) at once
/// with a meta refresh, and the link itself to press if it does not. Not a 303 to the hub:
/// `form-action` governs every redirect of a form's submission, and the hub sends the browser on
/// to the payment processor's pages (Checkout, the Portal), whose origins no policy of this node
/// can list — a browser blocks the chain. A refresh is a navigation of its own, outside it.
fn opening_page(url: &str) -> Response {
    let markup = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(format!("0;url={url}"));
                title { "Opening the hub…" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body {
                main {
                    p { "Opening your account on the hub…" }
                    p { a #continue href=(url) { "Continue to the hub" } }
                }
            }
        }
    };
    (StatusCode::OK, html(markup)).into_response()
}

async fn equity_json(State(ui): State<Ui>) -> Response {
    match pages::equity_series(&ui.node) {
        Ok(series) => axum::Json(series).into_response(),
        Err(e) => {
            // 500 problem+json like the API's; the cause is logged here, once.
            tracing::error!(target: "tradecast::ui", error = %e, "equity series not read: the store failed");
            let body = serde_json::json!({
                "type": "urn:tradecast:problem:internal",
                "title": "internal",
                "status": 500,
                "detail": "the node could not read its store; see the node's log",
                "code": "internal",
            });
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/problem+json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// A decision from the dashboard.
#[derive(Debug, Default, Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

async fn decide(
    ui: Ui,
    session: Session,
    headers: HeaderMap,
    id: String,
    verdict: Verdict,
    form: DecisionForm,
) -> Response {
    if !csrf_ok(&session, &headers, form.csrf.as_deref()) {
        return csrf_refused();
    }
    let request = DecisionRequest {
        verdict,
        by: Decider::Trader { user: "trader".into(), channel: Channel::Ui },
        reason: form.reason.unwrap_or_default(),
    };
    let notice = match ui.node.decide(&id, &request) {
        Ok(a) => Ok(a.reason),
        Err(e) => Err(e.to_string()),
    };
    let status = if notice.is_ok() { StatusCode::OK } else { StatusCode::CONFLICT };
    page(status, pages::dashboard(&ui.node, &session.csrf, Some(notice)))
}

async fn approve(
    State(ui): State<Ui>,
    Path(id): Path<String>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<DecisionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    decide(ui, session, headers, id, Verdict::Approve, form.map(|f| f.0).unwrap_or_default()).await
}

async fn reject(
    State(ui): State<Ui>,
    Path(id): Path<String>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<DecisionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    decide(ui, session, headers, id, Verdict::Reject, form.map(|f| f.0).unwrap_or_default()).await
}

fn csrf_refused() -> Response {
    plain(StatusCode::FORBIDDEN, "refused: missing or wrong CSRF token; reload the page")
}

/// A button's POST (a form that carries only the CSRF token), checked: the handler gets the
/// signed-in session, or the request is refused with 403 before it runs.
struct Checked(Session);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Checked {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let session = req.extensions().get::<Session>().cloned().ok_or_else(csrf_refused)?;
        let headers = req.headers().clone();
        let form = Form::<TokenForm>::from_request(req, state).await.map(|f| f.0);
        if !csrf_ok(&session, &headers, form.unwrap_or_default().csrf.as_deref()) {
            return Err(csrf_refused());
        }
        Ok(Checked(session))
    }
}

async fn save_settings(
    State(ui): State<Ui>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = pages::SettingsForm::from_pairs(form.map(|f| f.0).unwrap_or_default());
    if !csrf_ok(&session, &headers, form.csrf()) {
        return csrf_refused();
    }
    let result = ui
        .node
        .policy()
        .map_err(|e| e.to_string())
        .and_then(|current| form.apply(current))
        .and_then(|p| ui.node.set_policy(&p).map_err(|e| e.to_string()));
    let status = if result.is_ok() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let notice =
        result.map(|_| "Saved: the next signal is evaluated under these settings.".to_owned());
    settings_page(&ui, &session.csrf, Some(pages::SettingsNotice::Saved(notice)), status).await
}

/// The Publishing form: one `on`/`off` field per data kind (the last value of a name wins, so
/// an unticked box's hidden `off` reads as off); a kind the form does not name is off.
async fn save_publishing(
    State(ui): State<Ui>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let pairs = form.map(|f| f.0).unwrap_or_default();
    let csrf = pairs.iter().rev().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
    if !csrf_ok(&session, &headers, csrf) {
        return csrf_refused();
    }
    let mut consent = crate::store::PublishConsent::default();
    for (name, value) in &pairs {
        consent.set(name, value == "on");
    }
    let result = ui.node.set_publish_consent(consent).map_err(|e| e.to_string());
    let status = if result.is_ok() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let notice = result.map(|_| {
        if consent.any() {
            "Saved: what you ticked is published from now on; the rest stays sealed.".to_owned()
        } else {
            "Saved: nothing is published; your history stays sealed.".to_owned()
        }
    });
    settings_page(&ui, &session.csrf, Some(pages::SettingsNotice::Saved(notice)), status).await
}

/// A form that carries only the CSRF token.
#[derive(Debug, Default, Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: Option<String>,
}

async fn create_ea_key(State(ui): State<Ui>, Checked(session): Checked) -> Response {
    let notice = match ui.node.new_ea_key() {
        Ok(k) => {
            pages::SettingsNotice::NewKey { key_id: k.key_id.clone(), secret: k.secret.to_string() }
        }
        Err(e) => {
            tracing::error!(target: "tradecast::ui", error = %e, "EA key not created");
            pages::SettingsNotice::Saved(Err(
                "The key could not be created; see the node's log.".into()
            ))
        }
    };
    settings_page(&ui, &session.csrf, Some(notice), StatusCode::OK).await
}

async fn revoke_ea_key(
    State(ui): State<Ui>,
    Path(id): Path<String>,
    Checked(session): Checked,
) -> Response {
    let (status, notice) = match ui.node.revoke_ea_key(&id) {
        Ok(true) => (
            StatusCode::OK,
            Ok(format!("Key {id} revoked: the EA holding it is refused from its next call.")),
        ),
        Ok(false) => (StatusCode::NOT_FOUND, Err(format!("No key {id}."))),
        Err(e) => {
            tracing::error!(target: "tradecast::ui", error = %e, "EA key not revoked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Err("The key could not be revoked; see the node's log.".into()),
            )
        }
    };
    settings_page(&ui, &session.csrf, Some(pages::SettingsNotice::Saved(notice)), status).await
}

async fn unlock(State(ui): State<Ui>, Checked(session): Checked) -> Response {
    account_action(ui, session, |node, account| {
        node.unlock(account)
            .map(|()| "Auto mode unlocked: accepted signals are approved by rule again.".to_owned())
    })
}

async fn close_all(State(ui): State<Ui>, Checked(session): Checked) -> Response {
    account_action(ui, session, |node, account| {
        node.close_all(account, "closed by the trader in the UI")
            .map(|_| "Close-all sent: the EA closes Tradecast's positions and pending orders at its next poll.".to_owned())
    })
}

/// A dashboard button acting on the account (the only one, as the dashboard shows it).
fn account_action(
    ui: Ui,
    session: Session,
    act: impl FnOnce(&Node, &str) -> Result<String, crate::runtime::NodeError>,
) -> Response {
    let notice =
        ui.node.pick_account(None).and_then(|a| act(&ui.node, &a)).map_err(|e| e.to_string());
    let status = if notice.is_ok() { StatusCode::OK } else { StatusCode::CONFLICT };
    page(status, pages::dashboard(&ui.node, &session.csrf, Some(notice)))
}

async fn logout(State(ui): State<Ui>, Checked(session): Checked) -> Response {
    {
        let mut sessions = ui.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(&session.key);
        ui.persist(&mut sessions);
    }
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        pages::signed_out().into_string(),
    )
        .into_response();
    let expire = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&expire) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn events(State(ui): State<Ui>) -> impl IntoResponse {
    let rx = ui.node.changes();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        // A change the node committed, or every 5 s (the market clock and link health move).
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        rx.borrow_and_update();
        Some((
            Ok::<Event, std::convert::Infallible>(Event::default().event("refresh").data("1")),
            rx,
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

//! The node's web UI, served on the local API's address: server-rendered HTML ([`maud`]) with a
//! little JS (`assets/app.js`: countdowns, the equity chart, live refresh) and vendored htmx and
//! uPlot (`assets/vendor/`, with their licences), all embedded in the binary, so `cargo build`
//! alone produces the UI.
//!
//! Pages: `/` (dashboard: balance/equity/margin, health, pending signals with approve/reject and
//! a countdown on the market clock, open positions with floating P&L, the equity and drawdown
//! chart), `/copy-log`, `/history` (closed trades, per-symbol stats, daily/weekly/monthly P&L),
//! `/settings` (the copy policy), `/setup` (first-run setup, [`setup`]). `/ui/events` is a server-sent-event stream (`refresh` on every
//! change the node commits, and every few seconds); the page's `<main>` re-renders through htmx.
//!
//! Safety of a loopback UI ([`guard`] on every request, API included):
//! - the `Host` header must name the loopback address and port served (DNS rebinding);
//! - `/login?token=<api token>` (the URL `tradecast-node ui-url` prints) opens a session: a
//!   random id in a `SameSite=Strict; HttpOnly` cookie, the token leaves the address bar by a
//!   redirect; sessions live in memory (a restart logs out);
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
    /// Session id → its CSRF token.
    sessions: Arc<Mutex<HashMap<String, String>>>,
    addr: SocketAddr,
}

/// A signed-in request's session.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
}

impl Ui {
    /// The UI of `node`, served on `addr` (the bound address: the Host check needs its port).
    pub fn new(node: Arc<Node>, token: Zeroizing<String>, addr: SocketAddr) -> Ui {
        Ui { node, token: Arc::new(token), sessions: Arc::new(Mutex::new(HashMap::new())), addr }
    }

    /// The UI's routes (pages, assets, login, events, actions); merge with the API's.
    pub fn router(self) -> Router {
        let pages = Router::new()
            .route("/", get(dashboard))
            .route("/copy-log", get(copy_log))
            .route("/history", get(history))
            .route("/settings", get(settings).post(save_settings))
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
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(&id).map(|csrf| Session { csrf: csrf.clone() })
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
    ui.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), csrf);
    let cookie = format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict");
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

fn session_of(req: &axum::http::Extensions) -> Session {
    req.get::<Session>().cloned().unwrap_or(Session { csrf: String::new() })
}

async fn dashboard(State(ui): State<Ui>, req: Request) -> Response {
    let s = session_of(req.extensions());
    html(pages::dashboard(&ui.node, &s.csrf, None))
}

async fn copy_log(State(ui): State<Ui>, req: Request) -> Response {
    let s = session_of(req.extensions());
    html(pages::copy_log(&ui.node, &s.csrf))
}

async fn history(State(ui): State<Ui>, req: Request) -> Response {
    let s = session_of(req.extensions());
    html(pages::history(&ui.node, &s.csrf))
}

async fn settings(State(ui): State<Ui>, req: Request) -> Response {
    let s = session_of(req.extensions());
    html(pages::settings(&ui.node, &s.csrf, None))
}

async fn equity_json(State(ui): State<Ui>) -> Response {
    axum::Json(pages::equity_series(&ui.node)).into_response()
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
        return plain(
            StatusCode::FORBIDDEN,
            "refused: missing or wrong CSRF token; reload the page",
        );
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
    (status, html(pages::dashboard(&ui.node, &session.csrf, Some(notice)))).into_response()
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

async fn save_settings(
    State(ui): State<Ui>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<pages::SettingsForm>,
) -> Response {
    if !csrf_ok(&session, &headers, form.csrf.as_deref()) {
        return plain(
            StatusCode::FORBIDDEN,
            "refused: missing or wrong CSRF token; reload the page",
        );
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
    (status, html(pages::settings(&ui.node, &session.csrf, Some(notice)))).into_response()
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

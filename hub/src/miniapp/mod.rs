//! The Telegram Mini App (issue 19, first slice): pages served by the hub at `/miniapp`, opened
//! from the bot's Web App button.
//!
//! - [`init_data`]: the validator of Telegram's raw `initData` (HMAC under the bot token, the
//!   Ed25519 `signature`, freshness), with vectors computed by an independent Python script
//!   (`hub/tests/fixtures/miniapp/vectors.py`).
//! - [`api`]: `POST /api/v1/miniapp/session` (`Authorization: tma <initData>` → a bearer
//!   session), in the OpenAPI document.
//! - [`session`]: the sessions, stored hashed in SQL (`miniapp_sessions`, migration 0024). Not a
//!   signed stateless token: a stored session can be ended (its row deleted) and the table is
//!   pruned, while a stateless one would live until its expiry whatever happens; the account
//!   behind it is read on every request either way, so storage costs one indexed read.
//! - [`pages`]: the entry page (Telegram's WebApp script, vendored from `@twa-dev/sdk`, reads
//!   `Telegram.WebApp.initData` and exchanges it), then views loaded by htmx with the bearer
//!   token in `hx-headers`: **Plan & payment**, **Approvals**, **Analytics**; actions (Stars
//!   invoice, Stripe checkout, portal) are POSTs carrying the session's CSRF token.
//!
//! Every page route ([`router`]) answers with [`CSP`] (the console's policy, except that
//! `https://web.telegram.org` may frame these pages) and without `X-Frame-Options`. The
//! console's cookie checks do not apply: nothing here reads a cookie. With Telegram off (no bot
//! token or `telegram.mode = off`) every route answers 404.

pub mod api;
pub mod export;
pub mod init_data;
pub mod pages;
pub mod session;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

/// The Content-Security-Policy of the Mini App's pages: the console's, framed by Telegram Web.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
form-action 'self'; frame-ancestors https://web.telegram.org; base-uri 'none'";

/// The answer of every Mini App route when Telegram is off on this hub.
pub fn off() -> ApiError {
    ApiError::NotFound("the Mini App: Telegram is not set up on this hub".into())
}

/// The Mini App's pages, to merge into the hub's app (`api::app`).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/miniapp", get(pages::entry))
        .route("/miniapp/app/approvals/events", get(pages::approval_events))
        .route("/miniapp/app/{view}", get(pages::view))
        .route("/miniapp/app/stars", post(pages::stars))
        .route("/miniapp/app/checkout", post(pages::checkout))
        .route("/miniapp/app/portal", post(pages::portal))
        .route("/miniapp/app/decide", post(pages::decide))
        .route("/miniapp/app/export", post(export::export))
        .route("/miniapp/app/share", post(export::share))
        .route("/miniapp/download/{kind}", get(export::download))
        .route_layer(axum::extract::DefaultBodyLimit::max(state.config.http.body_limit_bytes))
        .route_layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_telegram_web_may_frame_the_mini_app() {
        assert!(super::CSP.contains("frame-ancestors https://web.telegram.org;"));
        // The rest is the console's policy.
        let console = crate::ui::CSP.replace("frame-ancestors 'none'", "");
        let mini = super::CSP.replace("frame-ancestors https://web.telegram.org", "");
        assert_eq!(console, mini);
    }
}

//! The hub's pages: server-rendered HTML ([`maud`]) with vendored htmx and uPlot, embedded in
//! the binary with their licences ([`assets`]), so `cargo build` alone builds every page. This
//! module is the shell other issues add their pages into: the [`layout`] (navigation by role,
//! notice area, footer), the cookie [`session`] of hub accounts, the [`login`] pages, the error
//! view ([`PageError`]) and the console's [`overview`] at `/`. One module per page, each a view
//! of the API's domain functions: [`subscribers`], [`providers`] (and plans), [`operations`],
//! [`outbox`] (and jobs), [`broadcasts`] (Telegram), [`revenue`], [`audit`], the subscriber's [`account`];
//! [`fmt`] shows times and money.
//!
//! Safety, on every route of [`router`]:
//! - the `Host` header must be `public_url`'s host or a loopback name with the served port
//!   (DNS rebinding: a page on another site resolving its name to the hub sends its own name),
//!   else 421;
//! - a state-changing request (anything but GET/HEAD) is refused (403) when the browser says it
//!   is cross-site: a `Sec-Fetch-Site` other than `same-origin` or `none`, or an `Origin` that is
//!   not the requested host; with a session it must also carry the session's CSRF token;
//! - every answer carries a strict Content-Security-Policy ([`CSP`]: scripts, styles and
//!   connections from the hub only, nothing inline, no frames, forms post only to the hub),
//!   `nosniff`, `X-Frame-Options: DENY` and `no-store` (assets excepted);
//! - a page reads the account from the store on every request: a demoted, disabled or removed
//!   account loses access at once.
//!
//! The JSON API is not behind these checks: it authenticates by bearer token or HMAC, never by
//! cookie.

pub mod account;
pub mod assets;
pub mod audit;
pub mod broadcasts;
pub mod fmt;
pub mod layout;
pub mod login;
pub mod operations;
pub mod outbox;
pub mod overview;
pub mod providers;
pub mod revenue;
pub mod session;
pub mod subscribers;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::affiliates::pages as affiliates;
use crate::config::{PublicUrl, split_authority};
use crate::db::DbError;
use crate::error::ApiError;
use crate::state::AppState;

/// The Content-Security-Policy of every page and asset.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages' routes with their checks, to merge into the hub's app (`api::app`). `served` is
/// the bound address: loopback names are accepted in `Host` with its port only.
pub fn router(state: &AppState, served: SocketAddr) -> Router<AppState> {
    let hosts = Hosts { public: state.config.public_url.clone(), port: served.port() };
    Router::new()
        .route("/", get(overview::show))
        .route("/audit", get(audit::show))
        .route("/operations", get(operations::show))
        .route("/outbox", get(outbox::show))
        .route("/broadcasts", get(broadcasts::show).post(broadcasts::send))
        .route("/b/{token}", get(broadcasts::click))
        .route("/broadcasts/channels", post(broadcasts::add_channel))
        .route("/broadcasts/channels/{id}/{action}", post(broadcasts::channel_action))
        .route("/broadcasts/guides", post(broadcasts::add_guide))
        .route("/broadcasts/tips", post(broadcasts::add_tip))
        .route("/broadcasts/{kind}/{id}/delete", post(broadcasts::delete_content))
        .route("/outbox/{id}/retry", post(outbox::retry))
        .route("/outbox/{id}/discard", post(outbox::discard))
        .route("/revenue", get(revenue::show))
        .route("/providers", get(providers::show))
        .route("/providers/{id}", get(providers::provider))
        .route("/provider", get(providers::own))
        .route("/events/overview", get(overview::live))
        .route("/providers/quarantine/release", post(providers::release))
        .route("/subscribers", get(subscribers::search))
        .route("/subscribers/{id}", get(subscribers::show))
        .route("/subscribers/{id}/disable", post(subscribers::disable))
        .route("/subscribers/{id}/enable", post(subscribers::enable))
        .route("/subscribers/{id}/grant", post(subscribers::grant))
        .route("/subscribers/{id}/subscriptions/{subscription}/refund", post(subscribers::refund))
        .route("/subscribers/{id}/devices/{device}/revoke", post(subscribers::revoke_device))
        .route(
            "/subscribers/{id}/entitlements/{entitlement}/revoke",
            post(subscribers::revoke_entitlement),
        )
        .route("/account", get(account::show))
        .route("/affiliate", get(affiliates::mine))
        .route("/affiliate/join", post(affiliates::join))
        .route("/affiliate/codes", post(affiliates::add_code))
        .route("/affiliates", get(affiliates::console))
        .route("/affiliates/settings", post(affiliates::save_settings))
        .route("/affiliates/payouts", post(affiliates::run_payout))
        .route("/affiliates/payouts/{run}/paid", post(affiliates::mark_paid))
        .route("/affiliates/payouts/{run}/csv", get(affiliates::csv))
        .route("/affiliates/holds/{id}/{verb}", post(affiliates::decide_hold))
        .route("/affiliates/{id}", get(affiliates::statement))
        .route("/affiliates/{id}/{verb}", post(affiliates::decide))
        .route("/account/checkout", post(account::checkout))
        .route("/account/portal", post(account::portal))
        .route("/account/enrolment-code", post(account::enrolment_code))
        .route("/account/telegram-link", post(account::telegram_link))
        .route("/account/stars", post(account::stars))
        .route("/account/telegram-unlink", post(account::telegram_unlink))
        .route("/account/share-links", post(crate::share::create_form))
        .route("/account/share-links/{id}/revoke", post(crate::share::revoke_form))
        .route("/billing/return", get(account::billing_return))
        .route("/signup", get(account::signup_form).post(account::signup))
        .route("/device-link", get(account::device_link))
        .route("/login", get(login::form).post(login::login))
        .route("/logout", post(login::logout))
        .route("/p/{provider}", get(crate::public::page::show))
        .route("/s/{token}", get(crate::share::page))
        .route("/assets/{*path}", get(assets::serve))
        .route_layer(axum::extract::DefaultBodyLimit::max(state.config.http.body_limit_bytes))
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::affiliates::track_ref))
        .route_layer(middleware::from_fn(same_site_only))
        .route_layer(middleware::from_fn(move |req, next| host_guard(hosts.clone(), req, next)))
        .route_layer(middleware::from_fn(security_headers))
}

/// The `Host` values the pages answer.
#[derive(Debug, Clone)]
struct Hosts {
    public: Option<PublicUrl>,
    port: u16,
}

impl Hosts {
    /// `public_url`'s host (and port), or `127.0.0.1`, `localhost` or `[::1]` with the served
    /// port.
    fn allow(&self, host: &str) -> bool {
        if self.public.as_ref().is_some_and(|u| u.matches_host(host)) {
            return true;
        }
        split_authority(host, 80).is_some_and(|(name, port)| {
            port == self.port && matches!(name.as_str(), "127.0.0.1" | "localhost" | "[::1]")
        })
    }
}

async fn host_guard(hosts: Hosts, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !hosts.allow(host) {
        tracing::warn!(target: "tradecast_hub::ui", host, "page refused: Host is not the hub's");
        return layout::error_page(
            StatusCode::MISDIRECTED_REQUEST,
            "Wrong address",
            "This hub answers its pages under its public_url's host or a loopback address only.",
        );
    }
    next.run(req).await
}

/// Whether a state-changing request comes from the hub's own pages, as far as the browser says
/// (a request without `Sec-Fetch-Site` and `Origin`, from a script or an old browser, passes;
/// the CSRF token still guards every signed-in action).
fn same_site(req: &Request) -> bool {
    let h = req.headers();
    let text = |name| h.get(name).map(|v: &HeaderValue| v.to_str().unwrap_or("?"));
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else { return true };
    let host = text(header::HOST.as_str()).unwrap_or("");
    let (authority, port) = match (origin.strip_prefix("https://"), origin.strip_prefix("http://"))
    {
        (Some(a), _) => (a, 443),
        (_, Some(a)) => (a, 80),
        _ => return false, // `null` and anything else
    };
    match (split_authority(authority, port), split_authority(host, port)) {
        (Some(o), Some(h)) => o == h,
        _ => false,
    }
}

async fn same_site_only(req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD) && !same_site(&req) {
        tracing::warn!(target: "tradecast_hub::ui", path = req.uri().path(), "cross-site request refused");
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "Cross-site request refused",
            "The console only accepts forms sent from its own pages.",
        );
    }
    next.run(req).await
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`: the pages' own posts keep a usable `Origin` (under `no-referrer` some
    // engines send `Origin: null`, which the cross-site check refuses); other sites get nothing.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A page that failed: rendered as the error page with the status of the API's error kind. A
/// 5xx says nothing of its cause (logged once, here, with the request's id in the span).
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl PageError {
    /// A signed-in action without the session's CSRF token.
    pub fn csrf() -> PageError {
        PageError(ApiError::Forbidden(
            "The form's security token is missing or wrong; reload the page and try again.".into(),
        ))
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<DbError> for PageError {
    fn from(e: DbError) -> Self {
        PageError(ApiError::from(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = e.status();
        let title = status.canonical_reason().unwrap_or("Error");
        if let ApiError::Internal(cause) = &e {
            tracing::error!(target: "tradecast_hub::error", error = %cause, "page failed");
        } else if status.is_server_error() {
            tracing::warn!(target: "tradecast_hub::error", kind = e.kind(), "page failed");
        }
        let detail = if status.is_server_error() {
            "The hub could not answer this page. The X-Request-Id of this answer identifies the \
             failure in the hub's log."
                .to_string()
        } else {
            e.to_string()
        };
        let mut resp = layout::error_page(status, title, &detail);
        if let Some(s) = e.problem().retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_the_public_url_or_loopback_with_the_port() {
        let local = Hosts { public: None, port: 7480 };
        let public = Hosts { public: PublicUrl::parse("https://hub.example.com").ok(), port: 7480 };
        let check =
            |hosts: &Hosts, host: &str, ok: bool| assert_eq!(hosts.allow(host), ok, "{host}");
        for (host, ok) in [
            ("127.0.0.1:7480", true),
            ("localhost:7480", true),
            ("LOCALHOST:7480", true),
            ("[::1]:7480", true),
            ("127.0.0.1:7481", false),
            ("127.0.0.1", false),
            ("evil.example.com:7480", false),
            ("hub.example.com", false),
            ("", false),
        ] {
            check(&local, host, ok);
        }
        check(&public, "hub.example.com", true);
        check(&public, "hub.example.com:443", true);
        check(&public, "127.0.0.1:7480", true);
        check(&public, "evil.example.com", false);
    }

    #[test]
    fn cross_site_posts_are_told_apart() {
        let check = |headers: &[(&str, &str)], ok: bool| {
            let mut req = Request::new(axum::body::Body::empty());
            req.headers_mut().insert(header::HOST, HeaderValue::from_static("hub.example.com"));
            for (k, v) in headers {
                req.headers_mut().insert(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            assert_eq!(same_site(&req), ok, "{headers:?}");
        };
        check(&[], true);
        check(&[("sec-fetch-site", "same-origin")], true);
        check(&[("sec-fetch-site", "none")], true);
        check(&[("sec-fetch-site", "same-site")], false);
        check(&[("sec-fetch-site", "cross-site")], false);
        check(&[("origin", "https://hub.example.com")], true);
        check(&[("origin", "http://hub.example.com")], true);
        check(&[("origin", "https://hub.example.com:443")], true);
        check(&[("origin", "https://evil.example.com")], false);
        check(&[("origin", "https://hub.example.com.evil.com")], false);
        check(&[("origin", "null")], false);
        check(&[("origin", "https://hub.example.com"), ("sec-fetch-site", "cross-site")], false);
    }
}

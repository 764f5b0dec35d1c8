//! Affiliates: referral codes and links, attribution (first touch inside a window), commissions
//! booked from the billing ledger in the ledger's own transaction, the holding period, payouts,
//! and fraud signals that hold a commission for the owner's review.
//!
//! - [`money`]: the pure commission arithmetic (basis points, half-even rounding in minor units,
//!   Stars converted at `billing.xtr_rate`).
//! - [`store`]: the programme's settings, affiliates, codes, clicks, referrals, commission
//!   entries, holds and payouts (SQL, both backends; migration 0040).
//! - [`api`]: the JSON API under `/api/v1/affiliates/…`; [`pages`]: `/affiliate` (an account's
//!   own) and `/affiliates` (the owner's console).
//!
//! The ledger calls [`on_invoice_paid`] for each invoice it sees paid for the first time and
//! [`on_refund`] for each refund it sees, inside its transaction: a commission exists exactly
//! when its invoice does.

pub mod api;
pub mod money;
pub mod pages;
pub mod store;

pub use store::{on_invoice_paid, on_refund};

use crate::db::DbError;
use crate::error::ApiError;

/// What went wrong in the affiliates' domain; converted to a problem at the HTTP edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AffiliateError {
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A value the programme refuses.
    #[error("{0}")]
    Validation(String),
    /// No such affiliate, code, hold or payout run.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the stored state (already an affiliate, already decided, …).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
}

impl From<sqlx::Error> for AffiliateError {
    fn from(e: sqlx::Error) -> Self {
        AffiliateError::Db(DbError::from(e))
    }
}

impl From<AffiliateError> for ApiError {
    fn from(e: AffiliateError) -> Self {
        match e {
            AffiliateError::Db(d) => ApiError::from(d),
            AffiliateError::Validation(m) => ApiError::Validation(m),
            AffiliateError::NotFound(m) => ApiError::NotFound(m),
            AffiliateError::Conflict(m) => ApiError::Conflict(m),
            AffiliateError::Forbidden(m) => ApiError::Forbidden(m),
        }
    }
}

impl From<AffiliateError> for crate::ui::PageError {
    fn from(e: AffiliateError) -> Self {
        crate::ui::PageError(ApiError::from(e))
    }
}

/// The cookie that carries a web first touch: `<code>.<touched_at_ms>`.
pub const REF_COOKIE: &str = "tc_ref";

/// The keyed hash of a client address (no address is stored in clear): HMAC-SHA256 keyed with
/// the hub's API-key wrapping secret over a label and the address, hex, 32 characters.
pub fn ip_hash(state: &crate::state::AppState, ip: std::net::IpAddr) -> String {
    let out = state
        .secrets
        .keyed_hash(b"tradecast affiliates client address\0", ip.to_string().as_bytes());
    hex::encode(&out[..16])
}

/// Parses the [`REF_COOKIE`] value: a valid code and its touch time.
pub fn parse_ref_cookie(value: &str) -> Option<(String, i64)> {
    let (code, at) = value.rsplit_once('.')?;
    let at: i64 = at.parse().ok()?;
    (crate::billing::api::valid_referral(code) && at > 0).then(|| (code.to_string(), at))
}

/// The [`REF_COOKIE`] of a request's `Cookie` headers.
pub fn ref_cookie(headers: &axum::http::HeaderMap) -> Option<(String, i64)> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == REF_COOKIE)
        .and_then(|(_, v)| parse_ref_cookie(v))
}

/// The `?ref=<code>` of a query string, if it is a valid code.
pub fn ref_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "ref")
        .map(|(_, v)| v)
        .filter(|v| crate::billing::api::valid_referral(v))
}

/// The pages' layer for affiliate links: a `GET` of `/`, `/signup` or `/p/…` with `?ref=<code>`
/// of a live code counts a click (the address as a keyed hash) and, unless the browser already
/// carries a first touch, sets the first-party [`REF_COOKIE`] (`SameSite=Lax`, `HttpOnly`,
/// `Max-Age` = the attribution window; `Secure` under an https `public_url`).
pub async fn track_ref(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    crate::api::extract::ClientIp(ip): crate::api::extract::ClientIp,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    let public = path == "/" || path == "/signup" || path.starts_with("/p/");
    let code = (req.method() == axum::http::Method::GET && public)
        .then(|| ref_param(req.uri().query()).map(str::to_string))
        .flatten();
    let Some(code) = code else { return next.run(req).await };
    let touched = ref_cookie(req.headers()).is_some();
    let mut resp = next.run(req).await;
    let counted = store::click(&state, &code, "web", Some(&ip_hash(&state, ip))).await;
    let window = match (counted, touched) {
        (Ok(true), false) => store::settings(&state).await.map(|s| s.window_days).ok(),
        (Err(e), _) => {
            tracing::warn!(error = %e, "affiliate click not counted");
            None
        }
        _ => None,
    };
    if let Some(days) = window {
        let secure = state.config.public_url.as_ref().is_some_and(|u| u.is_https());
        let value = format!(
            "{REF_COOKIE}={code}.{}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax{}",
            state.now_ms(),
            days.saturating_mul(86_400),
            if secure { "; Secure" } else { "" }
        );
        // A valid code is letters, digits, `_` and `-` only.
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            resp.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
    }
    resp
}

/// Registers the affiliates' jobs, hourly: pending commissions past their holding period become
/// payable; the scheduled payout run starts when its day has come.
pub fn register_jobs(jobs: &mut crate::jobs::Scheduler) {
    let hourly = || crate::jobs::Schedule::Every(std::time::Duration::from_secs(3600));
    if let Err(e) =
        jobs.register("affiliates.mature", hourly(), std::sync::Arc::new(store::MatureJob))
    {
        tracing::error!(error = %e, "affiliates job not registered");
    }
    let job = std::sync::Arc::new(store::PayoutScheduleJob);
    if let Err(e) = jobs.register("affiliates.payout_schedule", hourly(), job) {
        tracing::error!(error = %e, "affiliates payout schedule job not registered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ref_cookie_is_a_code_and_a_time() {
        assert_eq!(
            parse_ref_cookie("aff_1.1700000000000"),
            Some(("aff_1".into(), 1_700_000_000_000))
        );
        assert_eq!(parse_ref_cookie("a.b.5"), None, "a dot is not in a code");
        assert_eq!(parse_ref_cookie("aff_1"), None);
        assert_eq!(parse_ref_cookie("aff_1.-5"), None);
        assert_eq!(parse_ref_cookie(".5"), None);
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_static("x=1; tc_ref=bob.42; y=2"),
        );
        assert_eq!(ref_cookie(&h), Some(("bob".into(), 42)));
        assert_eq!(ref_param(Some("a=1&ref=bob_1")), Some("bob_1"));
        assert_eq!(ref_param(Some("ref=b%20b")), None);
        assert_eq!(ref_param(None), None);
    }
}

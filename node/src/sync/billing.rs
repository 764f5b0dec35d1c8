//! The trader's plan as the hub tells it, for the settings page, and the device links that
//! open the hub's billing pages (system.md, "Names fixed now").
//!
//! [`read_plan`] sends `GET /api/v1/devices/{id}/billing` signed with this node's identity key
//! (`Authorization: Tradecast-Device …`, [`device_link::sign_request`]; no hub password) to
//! the hub's HTTP base: its `public_url` once it has answered one (kept in the store's setting
//! `hub.public_url`), else `http://{addr}` of the pin; 5 s timeout. [`link`] builds a fresh
//! device link (`{base}/device-link?device=…&action=…&ts=…&sig=…`, valid 5 minutes, single use)
//! under the same base, since the hub checks its pages' `Host` against its `public_url`.

use std::time::Duration;

use serde::Deserialize;
use tradecast_protocol::device_link::{self, Action};

use crate::runtime::Node;
use crate::store::StoreError;
use crate::store::hub_pin::SETTING_HUB_ADDR;

/// The store setting that keeps the hub's answered `public_url`.
pub(crate) const SETTING_HUB_PUBLIC_URL: &str = "hub.public_url";

/// How long a read may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// One subscription of the trader's account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PlanSubscription {
    /// The plan's id.
    pub plan_id: String,
    /// The plan's name.
    #[serde(default)]
    pub plan_name: String,
    /// `trialing`, `active`, `past_due`, `canceled`, `expired`, `refunded`, `incomplete`.
    pub status: String,
    /// The state in the hub's words.
    pub status_words: String,
    /// `stripe` or `telegram_stars`.
    pub door: String,
    /// The renewal date (or the end, when set to cancel), unix ms.
    pub current_period_end_ms: i64,
    /// Set to end at the period's end.
    #[serde(default)]
    pub cancel_at_period_end: bool,
    /// The trial's end.
    #[serde(default)]
    pub trial_end_ms: Option<i64>,
    /// What is paid for reaches here (grace included), unix ms.
    pub covered_until_ms: i64,
}

impl PlanSubscription {
    /// Whether it still gives something (not expired, refunded or never paid).
    pub fn is_current(&self) -> bool {
        matches!(self.status.as_str(), "trialing" | "active" | "past_due" | "canceled")
    }

    /// What the date means: "Renews", "Ends", "Trial ends", "Grace ends", "Ended".
    pub fn date_words(&self) -> (&'static str, i64) {
        match self.status.as_str() {
            "trialing" if !self.cancel_at_period_end => {
                ("Trial ends", self.trial_end_ms.unwrap_or(self.current_period_end_ms))
            }
            "active" if !self.cancel_at_period_end => ("Renews", self.current_period_end_ms),
            "past_due" => ("Grace ends", self.covered_until_ms),
            "trialing" | "active" | "canceled" => ("Ends", self.current_period_end_ms),
            _ => ("Ended", self.covered_until_ms),
        }
    }
}

/// A plan on offer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PlanOffer {
    /// The plan's id (the `checkout:<id>` action).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Price per period, minor units.
    pub price_minor: i64,
    /// ISO 4217 or `XTR` (Telegram Stars, whole stars).
    pub currency: String,
    /// The period, days.
    pub period_days: i64,
    /// Free days before the first charge.
    #[serde(default)]
    pub trial_days: i64,
    /// The protocol's feature names it grants.
    #[serde(default)]
    pub features: Vec<String>,
    /// The provider's name.
    #[serde(default)]
    pub provider_name: String,
    /// `stripe` (a card) or `telegram_stars`.
    pub door: String,
    /// The product the plan sells (hubs before products: absent).
    #[serde(default)]
    pub product_name: String,
}

impl PlanOffer {
    /// "Product — plan" when the plan is one of a product's ways to buy it, else the plan's name.
    pub fn title(&self) -> String {
        if self.product_name.is_empty() || self.product_name == self.name {
            self.name.clone()
        } else {
            format!("{} — {}", self.product_name, self.name)
        }
    }

    /// The price in words: "49.00 USD / 30 days", "250 XTR / 30 days".
    pub fn price_words(&self) -> String {
        let amount = if self.currency == "XTR" {
            self.price_minor.to_string()
        } else {
            format!("{}.{:02}", self.price_minor / 100, (self.price_minor % 100).abs())
        };
        format!("{amount} {} / {} days", self.currency, self.period_days)
    }
}

/// The hub's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HubBilling {
    /// This device, as the hub names it.
    pub device: String,
    /// The account's subscriptions, newest first.
    pub subscriptions: Vec<PlanSubscription>,
    /// The plans on offer.
    pub offers: Vec<PlanOffer>,
    /// Whether Stripe sells (card checkout, the portal).
    pub stripe: bool,
    /// The hub's public URL, when it has one.
    pub public_url: Option<String>,
}

impl HubBilling {
    /// Whether a card subscription is current (the portal manages it).
    pub fn card_subscribed(&self) -> bool {
        self.subscriptions.iter().any(|s| s.door == "stripe" && s.is_current())
    }

    /// Whether a current subscription is on `plan_id` (its offer needs no Subscribe button).
    pub fn holds(&self, plan_id: &str) -> bool {
        self.subscriptions.iter().any(|s| s.plan_id == plan_id && s.is_current())
    }
}

/// Why the plan could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BillingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not enrolled with a hub.
    #[error("this node is not enrolled with a hub")]
    NotEnrolled,
    /// The hub could not be reached in time.
    #[error("the hub at {base} cannot be reached: {message}")]
    Unreachable { base: String, message: String },
    /// The hub refused (revoked device, bad clock …).
    #[error("the hub refused ({status}): {detail}")]
    Refused { status: u16, detail: String },
    /// The answer is not the documented JSON.
    #[error("the hub's answer is not a plan: {0}")]
    BadAnswer(String),
    /// The answer is not signed by the hub key pinned at enrolment (another server answered,
    /// or something on the way changed it): nothing of it is used.
    #[error("the answer from {base} is not signed by the pinned hub key: ignored")]
    Unsigned { base: String },
}

/// `http://{addr}` for a pinned `HOST:PORT` (an `http://` or `https://` prefix kept as given).
pub fn http_base(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{addr}")
    }
}

/// The hub's HTTP base: its answered `public_url`, else the pinned address; `None` when not
/// enrolled.
pub fn hub_base(node: &Node) -> Result<Option<String>, StoreError> {
    let view = node.store().read()?;
    let Some(addr) = view.setting(SETTING_HUB_ADDR)? else { return Ok(None) };
    Ok(Some(match view.setting(SETTING_HUB_PUBLIC_URL)? {
        Some(url) if !url.is_empty() => url,
        _ => http_base(&addr),
    }))
}

/// A device-signed `GET {base}{path}` to the hub (`device_link::sign_request` at `now_ms`),
/// answered 200 with a body of at most 256 KiB signed by the pinned hub key for that path
/// (`device_link::verify_answer`): the answer's bytes. The billing read and the enrolment's
/// fingerprint-key read both go through it.
pub async fn device_get(
    node: &Node,
    base: &str,
    path: &str,
    timeout: Duration,
    now_ms: i64,
) -> Result<Vec<u8>, BillingError> {
    let pinned = crate::store::hub_pin::hub_pin(node.store())
        .map_err(|e| BillingError::BadAnswer(e.to_string()))?
        .ok_or(BillingError::NotEnrolled)?;
    let auth = device_link::sign_request(node.identity(), "GET", path, now_ms);
    let unreachable = |e: reqwest::Error| BillingError::Unreachable {
        base: base.to_string(),
        message: e.to_string(),
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(unreachable)?;
    let resp = client
        .get(format!("{}{path}", base.trim_end_matches('/')))
        .header(reqwest::header::AUTHORIZATION, auth)
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status().as_u16();
    let hub_sig = resp
        .headers()
        .get(device_link::ANSWER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(BillingError::BadAnswer("the answer is too large".into()));
    }
    let bytes = resp.bytes().await.map_err(unreachable)?;
    if bytes.len() > MAX_ANSWER {
        return Err(BillingError::BadAnswer("the answer is too large".into()));
    }
    if status != 200 {
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("detail").or(v.get("title")).and_then(|d| d.as_str()).map(String::from)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into());
        return Err(BillingError::Refused { status, detail });
    }
    let signed = hub_sig
        .is_some_and(|sig| device_link::verify_answer(&pinned.key, path, now_ms, &bytes, &sig));
    if !signed {
        return Err(BillingError::Unsigned { base: base.to_string() });
    }
    Ok(bytes.to_vec())
}

/// The billing read at `base` for this node, signed at `now_ms`.
pub async fn fetch(node: &Node, base: &str, now_ms: i64) -> Result<HubBilling, BillingError> {
    let path = format!("/api/v1/devices/{}/billing", node.device_id().to_text());
    let bytes = device_get(node, base, &path, TIMEOUT, now_ms).await?;
    let answer: HubBilling =
        serde_json::from_slice(&bytes).map_err(|e| BillingError::BadAnswer(e.to_string()))?;
    if answer.device != node.device_id().to_text() {
        return Err(BillingError::BadAnswer("the answer names another device".into()));
    }
    if let Some(url) = &answer.public_url
        && !valid_base(url)
    {
        return Err(BillingError::BadAnswer(format!("`{url}` is not a base URL")));
    }
    Ok(answer)
}

/// Whether `url` may serve as the base of device links: `http(s)://` and an authority of
/// letters, digits, `.`, `-`, `:`, `[`, `]` (no path, query, credentials or spaces), optionally
/// followed by a path of the same characters and `/`.
pub fn valid_base(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    !authority.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]/_".contains(&b))
}

/// Reads the plan: through the stored `public_url` (falling back to the pinned address when
/// that cannot be reached), remembering the `public_url` the hub answers.
pub async fn read_plan(node: &Node, now_ms: i64) -> Result<HubBilling, BillingError> {
    let Some(base) = hub_base(node)? else { return Err(BillingError::NotEnrolled) };
    let pinned = node.store().read()?.setting(SETTING_HUB_ADDR)?.map(|a| http_base(&a));
    let answer = match fetch(node, &base, now_ms).await {
        Err(BillingError::Unreachable { .. }) if pinned.as_ref().is_some_and(|p| *p != base) => {
            let fallback = pinned.unwrap_or_default();
            fetch(node, &fallback, now_ms).await?
        }
        other => other?,
    };
    let url = answer.public_url.clone().unwrap_or_default();
    let stored = node.store().read()?.setting(SETTING_HUB_PUBLIC_URL)?.unwrap_or_default();
    if stored != url {
        node.store().write(|tx| tx.set_setting(SETTING_HUB_PUBLIC_URL, &url))?;
    }
    Ok(answer)
}

/// A device link for `action`, signed now (wall clock `now_ms`) under the hub's base; `None`
/// when not enrolled.
pub fn link(node: &Node, action: &Action, now_ms: i64) -> Result<Option<String>, StoreError> {
    Ok(hub_base(node)?.map(|base| device_link::url(&base, node.identity(), action, now_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases() {
        assert_eq!(http_base("127.0.0.1:7400"), "http://127.0.0.1:7400");
        assert_eq!(http_base("https://hub.example.com/"), "https://hub.example.com");
        assert!(valid_base("https://hub.example.com"));
        assert!(valid_base("http://[::1]:8080/hub"));
        for bad in ["ftp://x", "https://", "https://a b", "https://u@h", "https://h?x", "h:1"] {
            assert!(!valid_base(bad), "{bad}");
        }
    }

    #[test]
    fn dates_and_prices_in_words() {
        let s = PlanSubscription {
            plan_id: "p".into(),
            plan_name: "Gold".into(),
            status: "active".into(),
            status_words: "active".into(),
            door: "stripe".into(),
            current_period_end_ms: 10,
            cancel_at_period_end: false,
            trial_end_ms: None,
            covered_until_ms: 20,
        };
        assert_eq!(s.date_words(), ("Renews", 10));
        let c =
            PlanSubscription { cancel_at_period_end: true, status: "canceled".into(), ..s.clone() };
        assert_eq!(c.date_words(), ("Ends", 10));
        let p = PlanSubscription { status: "past_due".into(), ..s.clone() };
        assert_eq!(p.date_words(), ("Grace ends", 20));
        let e = PlanSubscription { status: "expired".into(), ..s };
        assert_eq!(e.date_words(), ("Ended", 20));
        assert!(!e.is_current());
        let o = PlanOffer {
            id: "p".into(),
            name: "Gold".into(),
            price_minor: 4905,
            currency: "USD".into(),
            period_days: 30,
            trial_days: 0,
            features: vec![],
            provider_name: String::new(),
            door: "stripe".into(),
            product_name: "Gold".into(),
        };
        assert_eq!(o.price_words(), "49.05 USD / 30 days");
        assert_eq!(o.title(), "Gold", "a product's only plan named like it");
        let yearly = PlanOffer { name: "Yearly".into(), ..o.clone() };
        assert_eq!(yearly.title(), "Gold — Yearly");
        let stars = PlanOffer { price_minor: 250, currency: "XTR".into(), ..o };
        assert_eq!(stars.price_words(), "250 XTR / 30 days");
    }
}

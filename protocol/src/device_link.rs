//! Device links: how a node opens one of the hub's web pages for its trader without a hub
//! password (system.md, "Names fixed now").
//!
//! The node signs `(device, action, ts)` with its identity key and opens
//! `{public_url}/device-link?device=…&action=…&ts=…&sig=…` in the browser. The hub checks the
//! signature against the enrolled device's key, that `ts` is within [`VALID_MS`] of its clock,
//! and that the link was not used before (single use), then acts for the device's account.
//!
//! Actions: `checkout:<plan id>`, `portal`, `telegram-link`.
//!
//! The same key also authenticates a node's reads of its own hub routes (its plan:
//! `GET /api/v1/devices/{device}/billing`) without a hub password: [`sign_request`] makes the
//! `Authorization: Tradecast-Device ts=<unix ms>,sig=<base64url>` header over
//! `"{METHOD}\n{path}\n{ts}"` under [`REQUEST_DOMAIN`], and [`verify_request`] checks it within
//! [`VALID_MS`]. Such a header is not single-use: a replay within the window reads the same
//! answer again, which is acceptable for a read-only route (use it for nothing else).

use data_encoding::BASE64URL_NOPAD;

use crate::identity::{DeviceId, Identity, IdentityKey, Signature};

/// The signature's domain tag.
pub const DOMAIN: &[u8] = b"tradecast/device-link/v1\n";

/// How long a link is valid after (and before, for clock skew) its `ts`: 5 minutes.
pub const VALID_MS: i64 = 5 * 60 * 1000;

/// The path on the hub.
pub const PATH: &str = "/device-link";

/// What a link asks the hub to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open Stripe Checkout for this plan.
    Checkout(String),
    /// Open the Stripe Customer Portal.
    Portal,
    /// Link the account to Telegram.
    TelegramLink,
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The action is not one of the three.
    #[error("unknown action")]
    UnknownAction,
    /// The signature is not base64url of 64 bytes, or does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `ts` is more than five minutes away from the hub's clock.
    #[error("the link has expired")]
    Expired,
}

impl Action {
    /// Parses `checkout:<plan>`, `portal` or `telegram-link` (a plan id is 1-64 letters, digits,
    /// `_` or `-`).
    pub fn parse(text: &str) -> Result<Action, LinkError> {
        match text {
            "portal" => Ok(Action::Portal),
            "telegram-link" => Ok(Action::TelegramLink),
            other => {
                let plan = other.strip_prefix("checkout:").ok_or(LinkError::UnknownAction)?;
                let ok = (1..=64).contains(&plan.len())
                    && plan.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if ok {
                    Ok(Action::Checkout(plan.to_string()))
                } else {
                    Err(LinkError::UnknownAction)
                }
            }
        }
    }

    /// The action's text, as signed and sent.
    pub fn as_text(&self) -> String {
        match self {
            Action::Checkout(plan) => format!("checkout:{plan}"),
            Action::Portal => "portal".into(),
            Action::TelegramLink => "telegram-link".into(),
        }
    }
}

fn message(device: &DeviceId, action: &str, ts_ms: i64) -> Vec<u8> {
    format!("{}\n{action}\n{ts_ms}", device.to_text()).into_bytes()
}

/// The link's query string (`device=…&action=…&ts=…&sig=…`), signed by `identity` at `ts_ms`.
pub fn query(identity: &Identity, action: &Action, ts_ms: i64) -> String {
    let device = identity.device_id();
    let action = action.as_text();
    let sig = identity.sign(DOMAIN, &message(&device, &action, ts_ms));
    format!(
        "device={}&action={}&ts={ts_ms}&sig={}",
        device.to_text(),
        action.replace(':', "%3A"),
        BASE64URL_NOPAD.encode(&sig.0)
    )
}

/// The whole URL under `base` (the hub's `public_url`, no trailing `/`).
pub fn url(base: &str, identity: &Identity, action: &Action, ts_ms: i64) -> String {
    format!("{}{PATH}?{}", base.trim_end_matches('/'), query(identity, action, ts_ms))
}

/// Checks a link's parts against the device's enrolled `key` at the hub's `now_ms`.
pub fn verify(
    key: &IdentityKey,
    action: &str,
    ts_ms: i64,
    sig: &str,
    now_ms: i64,
) -> Result<Action, LinkError> {
    let parsed = Action::parse(action)?;
    let bytes = BASE64URL_NOPAD.decode(sig.as_bytes()).map_err(|_| LinkError::BadSignature)?;
    let sig: [u8; 64] = bytes.try_into().map_err(|_| LinkError::BadSignature)?;
    if !key.verify(DOMAIN, &message(&key.device_id(), action, ts_ms), &Signature(sig)) {
        return Err(LinkError::BadSignature);
    }
    if (now_ms - ts_ms).abs() > VALID_MS {
        return Err(LinkError::Expired);
    }
    Ok(parsed)
}

/// The domain tag of a device-signed HTTP request (not a link's).
pub const REQUEST_DOMAIN: &[u8] = b"tradecast/device-request/v1\n";

/// The `Authorization` scheme of a device-signed request.
pub const AUTH_SCHEME: &str = "Tradecast-Device";

/// Why a device-signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestAuthError {
    /// No `Authorization: Tradecast-Device ts=…,sig=…` header, or one that does not parse.
    #[error("missing or malformed Tradecast-Device authorization")]
    Malformed,
    /// The signature is not base64url of 64 bytes, or does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `ts` is more than five minutes away from the hub's clock.
    #[error("the signature is stale")]
    Expired,
}

fn request_message(method: &str, path: &str, ts_ms: i64) -> Vec<u8> {
    format!("{}\n{path}\n{ts_ms}", method.to_ascii_uppercase()).into_bytes()
}

/// The `Authorization` header value for `method path` (the path alone, no query) at `ts_ms`:
/// `Tradecast-Device ts=<ts_ms>,sig=<base64url Ed25519>`.
pub fn sign_request(identity: &Identity, method: &str, path: &str, ts_ms: i64) -> String {
    let sig = identity.sign(REQUEST_DOMAIN, &request_message(method, path, ts_ms));
    format!("{AUTH_SCHEME} ts={ts_ms},sig={}", BASE64URL_NOPAD.encode(&sig.0))
}

/// Checks an `Authorization` header of `method path` against the device's enrolled `key` at the
/// hub's `now_ms`. A replay within [`VALID_MS`] passes: only for read-only routes.
pub fn verify_request(
    key: &IdentityKey,
    method: &str,
    path: &str,
    header: &str,
    now_ms: i64,
) -> Result<i64, RequestAuthError> {
    let params = header
        .trim()
        .strip_prefix(AUTH_SCHEME)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(RequestAuthError::Malformed)?;
    let (mut ts, mut sig) = (None, None);
    for part in params.split(',') {
        match part.trim().split_once('=') {
            Some(("ts", v)) if ts.is_none() => ts = Some(v),
            Some(("sig", v)) if sig.is_none() => sig = Some(v),
            _ => return Err(RequestAuthError::Malformed),
        }
    }
    let (Some(ts), Some(sig)) = (ts, sig) else { return Err(RequestAuthError::Malformed) };
    let ts_ms: i64 = ts.parse().map_err(|_| RequestAuthError::Malformed)?;
    let bytes =
        BASE64URL_NOPAD.decode(sig.as_bytes()).map_err(|_| RequestAuthError::BadSignature)?;
    let sig: [u8; 64] = bytes.try_into().map_err(|_| RequestAuthError::BadSignature)?;
    if !key.verify(REQUEST_DOMAIN, &request_message(method, path, ts_ms), &Signature(sig)) {
        return Err(RequestAuthError::BadSignature);
    }
    if now_ms.saturating_sub(ts_ms).saturating_abs() > VALID_MS {
        return Err(RequestAuthError::Expired);
    }
    Ok(ts_ms)
}

/// The domain tag of the hub's signature over its answer to a device-signed request.
pub const ANSWER_DOMAIN: &[u8] = b"tradecast/device-answer/v1\n";

/// The header carrying that signature (base64url Ed25519 by the hub's identity key).
pub const ANSWER_HEADER: &str = "x-tradecast-hub-signature";

fn answer_message(path: &str, request_ts_ms: i64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{path}\n{request_ts_ms}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// The hub's signature over `body`, its answer to the device's request of `path` signed at
/// `request_ts_ms`: the node checks it against the hub key it pinned at enrolment, so an answer
/// (and the `public_url` in it, the base of its device links) cannot come from anyone else, nor
/// be an old answer replayed.
pub fn sign_answer(hub: &Identity, path: &str, request_ts_ms: i64, body: &[u8]) -> String {
    BASE64URL_NOPAD.encode(&hub.sign(ANSWER_DOMAIN, &answer_message(path, request_ts_ms, body)).0)
}

/// Whether `sig` is the pinned hub's signature over `body` for the request of `path` at
/// `request_ts_ms`.
pub fn verify_answer(
    hub: &IdentityKey,
    path: &str,
    request_ts_ms: i64,
    body: &[u8],
    sig: &str,
) -> bool {
    let Ok(bytes) = BASE64URL_NOPAD.decode(sig.trim().as_bytes()) else { return false };
    let Ok(sig) = <[u8; 64]>::try_from(bytes) else { return false };
    hub.verify(ANSWER_DOMAIN, &answer_message(path, request_ts_ms, body), &Signature(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_verifies_only_with_its_hub_request_and_body() {
        let hub = Identity::generate(&mut rand::rng());
        let other = Identity::generate(&mut rand::rng());
        let sig = sign_answer(&hub, "/p", 7, b"{}");
        assert!(verify_answer(&hub.identity_key(), "/p", 7, b"{}", &sig));
        assert!(!verify_answer(&other.identity_key(), "/p", 7, b"{}", &sig));
        assert!(!verify_answer(&hub.identity_key(), "/q", 7, b"{}", &sig));
        assert!(!verify_answer(&hub.identity_key(), "/p", 8, b"{}", &sig));
        assert!(!verify_answer(&hub.identity_key(), "/p", 7, b"{ }", &sig));
        assert!(!verify_answer(&hub.identity_key(), "/p", 7, b"{}", "not base64"));
    }

    #[test]
    fn a_signed_request_verifies_only_for_its_method_path_key_and_time() {
        let id = Identity::generate(&mut rand::rng());
        let key = id.identity_key();
        let path = format!("/api/v1/devices/{}/billing", id.device_id().to_text());
        let h = sign_request(&id, "GET", &path, 5_000_000);
        assert!(h.starts_with("Tradecast-Device ts=5000000,sig="));
        assert_eq!(verify_request(&key, "GET", &path, &h, 5_000_000 + VALID_MS), Ok(5_000_000));
        assert_eq!(verify_request(&key, "get", &path, &h, 5_000_000), Ok(5_000_000));
        assert_eq!(
            verify_request(&key, "POST", &path, &h, 5_000_000),
            Err(RequestAuthError::BadSignature)
        );
        assert_eq!(
            verify_request(&key, "GET", "/api/v1/devices/x/billing", &h, 5_000_000),
            Err(RequestAuthError::BadSignature)
        );
        let other = Identity::generate(&mut rand::rng()).identity_key();
        assert_eq!(
            verify_request(&other, "GET", &path, &h, 5_000_000),
            Err(RequestAuthError::BadSignature)
        );
        assert_eq!(
            verify_request(&key, "GET", &path, &h, 5_000_000 + VALID_MS + 1),
            Err(RequestAuthError::Expired)
        );
        // A link's signature is not a request's (domain tags differ).
        let link = query(&id, &Action::Portal, 5_000_000);
        let link_sig = link.rsplit_once("sig=").map(|(_, s)| s).unwrap_or_default();
        let forged = format!("Tradecast-Device ts=5000000,sig={link_sig}");
        assert_eq!(
            verify_request(&key, "GET", &path, &forged, 5_000_000),
            Err(RequestAuthError::BadSignature)
        );
        let ts_changed = h.replace("ts=5000000", "ts=5000001");
        assert_eq!(
            verify_request(&key, "GET", &path, &ts_changed, 5_000_000),
            Err(RequestAuthError::BadSignature)
        );
        for bad in [
            "",
            "Bearer x",
            "Tradecast-Device",
            "Tradecast-Device ts=1",
            "Tradecast-Device ts=x,sig=AA",
            "Tradecast-Device ts=1,sig=AA,ts=2",
        ] {
            assert_eq!(
                verify_request(&key, "GET", &path, bad, 5_000_000),
                Err(RequestAuthError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify_request(&key, "GET", &path, "Tradecast-Device ts=1,sig=!!", 5_000_000),
            Err(RequestAuthError::BadSignature)
        );
    }

    fn parts(q: &str) -> std::collections::HashMap<String, String> {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.replace("%3A", ":")))
            .collect()
    }

    #[test]
    fn a_signed_link_verifies_once_and_only_unchanged_and_fresh() {
        let id = Identity::generate(&mut rand::rng());
        let key = id.identity_key();
        let q = parts(&query(&id, &Action::Checkout("plan_1".into()), 1_000_000));
        assert_eq!(q["device"], id.device_id().to_text());
        let ok = verify(&key, &q["action"], 1_000_000, &q["sig"], 1_000_000 + VALID_MS);
        assert_eq!(ok, Ok(Action::Checkout("plan_1".into())));
        // Another action, another time, another key, a stale or early clock: refused.
        assert_eq!(
            verify(&key, "portal", 1_000_000, &q["sig"], 1_000_000),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(&key, &q["action"], 1_000_001, &q["sig"], 1_000_000),
            Err(LinkError::BadSignature)
        );
        let other = Identity::generate(&mut rand::rng()).identity_key();
        assert_eq!(
            verify(&other, &q["action"], 1_000_000, &q["sig"], 1_000_000),
            Err(LinkError::BadSignature)
        );
        let late = 1_000_000 + VALID_MS + 1;
        assert_eq!(verify(&key, &q["action"], 1_000_000, &q["sig"], late), Err(LinkError::Expired));
        let early = 1_000_000 - VALID_MS - 1;
        assert_eq!(
            verify(&key, &q["action"], 1_000_000, &q["sig"], early),
            Err(LinkError::Expired)
        );
        assert_eq!(
            verify(&key, &q["action"], 1_000_000, "!!", 1_000_000),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(&key, &q["action"], 1_000_000, "AAAA", 1_000_000),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn actions_parse_strictly() {
        assert_eq!(Action::parse("portal"), Ok(Action::Portal));
        assert_eq!(Action::parse("telegram-link"), Ok(Action::TelegramLink));
        assert_eq!(Action::parse("checkout:abc-1_2"), Ok(Action::Checkout("abc-1_2".into())));
        for bad in ["", "checkout:", "checkout:a b", "checkout:../x", "Portal", "delete"] {
            assert_eq!(Action::parse(bad), Err(LinkError::UnknownAction), "{bad}");
        }
    }
}

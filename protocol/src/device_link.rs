//! Device links: how a node opens one of the hub's web pages for its trader without a hub
//! password (system.md, "Names fixed now").
//!
//! The node signs `(device, action, ts)` with its identity key and opens
//! `{public_url}/device-link?device=…&action=…&ts=…&sig=…` in the browser. The hub checks the
//! signature against the enrolled device's key, that `ts` is within [`VALID_MS`] of its clock,
//! and that the link was not used before (single use), then acts for the device's account.
//!
//! Actions: `checkout:<plan id>`, `portal`, `telegram-link`.

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

#[cfg(test)]
mod tests {
    use super::*;

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

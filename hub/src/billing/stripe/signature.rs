//! Stripe webhook signatures and the few fields of an event the hub reads.
//!
//! `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>…][,v0=…]`: each `v1` is HMAC-SHA256 of
//! `"{t}.{raw body}"` keyed by the whole `whsec_…` string. Stripe sends several `v1` while an
//! endpoint's secret is being rolled, so a signature is accepted when ANY `v1` matches
//! (async-stripe's `construct_event` keeps only the last one: it is not used here). The
//! timestamp must be within [`TOLERANCE_S`] of now, both ways; every comparison is constant-time.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far `t` may be from now, either way (Stripe's libraries use 300 s).
pub const TOLERANCE_S: i64 = 300;

/// Why a webhook's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("no Stripe-Signature header")]
    Missing,
    /// The header has no `t`, a `t` that is not a number, or no `v1` of 64 hex digits.
    #[error("malformed Stripe-Signature header")]
    Malformed,
    /// `t` is more than the tolerance away from now.
    #[error("Stripe-Signature timestamp outside the tolerance")]
    Stale,
    /// No `v1` is the HMAC of this body at this `t`.
    #[error("no Stripe-Signature v1 matches the body")]
    Mismatch,
}

/// The signature Stripe computes: hex HMAC-SHA256 of `"{t}.{body}"` keyed by `secret`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, t, body))
}

fn mac(secret: &str, t: i64, body: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// Verifies a `Stripe-Signature` header against the raw body at `now_s` (unix seconds).
pub fn verify(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t: Option<i64> = None;
    let mut v1: Vec<[u8; 32]> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            return Err(SignatureError::Malformed);
        };
        match k {
            "t" => {
                if t.is_some() {
                    return Err(SignatureError::Malformed);
                }
                t = Some(v.parse().map_err(|_| SignatureError::Malformed)?);
            }
            "v1" => {
                let mut sig = [0u8; 32];
                // A v1 that is not 32 bytes of hex cannot match: skip it (Stripe may add
                // schemes; only v1 is checked), but require at least one well-formed v1.
                if hex::decode_to_slice(v, &mut sig).is_ok() {
                    v1.push(sig);
                }
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_s - t).abs() > TOLERANCE_S {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, t, body);
    let mut any = subtle::Choice::from(0u8);
    for sig in &v1 {
        any |= sig.ct_eq(&expected);
    }
    if bool::from(any) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// The fields of a Stripe event the hub reads: events are triggers, the state is re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    /// `evt_…`: stored in the transaction that applies the event (a duplicate is a no-op).
    pub id: String,
    /// `type`, e.g. `invoice.paid`; any string (unknown types are answered 200 and ignored).
    pub event_type: String,
    /// `created`, unix seconds.
    pub created_s: i64,
    /// `data.object.object`, e.g. `subscription`.
    pub object_type: String,
    /// `data.object.id`.
    pub object_id: String,
    /// `data.object.customer` (a string or an expanded object's id), or `data.object.id` when
    /// the object is a customer.
    pub customer: Option<String>,
    /// `data.object.charge` of an object that names its charge but not its customer (a
    /// dispute): the customer is the charge's.
    pub charge: Option<String>,
}

/// Why an event body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed Stripe event: {0}")]
pub struct EventError(String);

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: RawObject,
}

#[derive(Deserialize)]
struct RawObject {
    id: String,
    object: String,
    #[serde(default)]
    customer: Option<serde_json::Value>,
    #[serde(default)]
    charge: Option<serde_json::Value>,
}

/// Reads an event's id, type, time, object and customer; tolerant of unknown types and fields.
pub fn parse_event(body: &[u8]) -> Result<EventRef, EventError> {
    let raw: RawEvent = serde_json::from_slice(body).map_err(|e| EventError(e.to_string()))?;
    let customer = if raw.data.object.object == "customer" {
        Some(raw.data.object.id.clone())
    } else {
        match raw.data.object.customer {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Object(o)) => {
                o.get("id").and_then(|v| v.as_str()).map(str::to_owned)
            }
            _ => None,
        }
    };
    let charge = match raw.data.object.charge {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Object(o)) => {
            o.get("id").and_then(|v| v.as_str()).map(str::to_owned)
        }
        _ => None,
    };
    Ok(EventRef {
        id: raw.id,
        charge,
        event_type: raw.event_type,
        created_s: raw.created,
        object_type: raw.data.object.object,
        object_id: raw.data.object.id,
        customer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret_0123456789";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"invoice.paid"}"#;
    const NOW: i64 = 1_780_000_000;

    /// An independent computation of the expected signature (not through `sign`).
    fn independent(secret: &str, t: i64, body: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        let mut payload = format!("{t}.").into_bytes();
        payload.extend_from_slice(body);
        m.update(&payload);
        hex::encode(m.finalize().into_bytes())
    }

    #[test]
    fn sign_is_hmac_of_t_dot_body() {
        assert_eq!(sign(SECRET, NOW, BODY), independent(SECRET, NOW, BODY));
    }

    #[test]
    fn valid() {
        let h = format!("t={NOW},v1={}", independent(SECRET, NOW, BODY));
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW), Ok(()));
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW + TOLERANCE_S), Ok(()));
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW - TOLERANCE_S), Ok(()));
    }

    #[test]
    fn several_v1_one_right() {
        let good = independent(SECRET, NOW, BODY);
        let other = independent("whsec_old", NOW, BODY);
        for h in [
            format!("t={NOW},v1={other},v1={good}"),
            format!("t={NOW},v1={good},v1={other}"),
            format!("t={NOW},v1={other},v0=abc,v1={good},v1={other}"),
        ] {
            assert_eq!(verify(SECRET, Some(&h), BODY, NOW), Ok(()), "{h}");
        }
    }

    #[test]
    fn wrong() {
        let other = independent("whsec_other", NOW, BODY);
        let h = format!("t={NOW},v1={other}");
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW), Err(SignatureError::Mismatch));
        // Signed for another time.
        let h = format!("t={NOW},v1={}", independent(SECRET, NOW - 1, BODY));
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stale_and_future() {
        let t = NOW - TOLERANCE_S - 1;
        let h = format!("t={t},v1={}", independent(SECRET, t, BODY));
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW), Err(SignatureError::Stale));
        let t = NOW + TOLERANCE_S + 1;
        let h = format!("t={t},v1={}", independent(SECRET, t, BODY));
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW), Err(SignatureError::Stale));
    }

    #[test]
    fn malformed() {
        let good = independent(SECRET, NOW, BODY);
        for h in [
            String::new(),
            format!("v1={good}"),
            format!("t=abc,v1={good}"),
            format!("t={NOW}"),
            format!("t={NOW},v1=zz"),
            format!("t={NOW},v0={good}"),
            format!("t={NOW};v1={good}"),
            format!("t={NOW},t={NOW},v1={good}"),
        ] {
            assert_eq!(
                verify(SECRET, Some(&h), BODY, NOW),
                Err(SignatureError::Malformed),
                "{h:?}"
            );
        }
    }

    #[test]
    fn missing() {
        assert_eq!(verify(SECRET, None, BODY, NOW), Err(SignatureError::Missing));
    }

    #[test]
    fn body_changed_by_one_byte() {
        let h = format!("t={NOW},v1={}", independent(SECRET, NOW, BODY));
        let mut body = BODY.to_vec();
        for i in [0, body.len() / 2, body.len() - 1] {
            body[i] ^= 1;
            assert_eq!(verify(SECRET, Some(&h), &body, NOW), Err(SignatureError::Mismatch));
            body[i] ^= 1;
        }
        assert_eq!(verify(SECRET, Some(&h), &body, NOW), Ok(()));
    }

    #[test]
    fn parse_event_reads_the_trigger() {
        let e = parse_event(
            br#"{"id":"evt_1","object":"event","api_version":"x","created":1700000000,
                "data":{"object":{"id":"sub_1","object":"subscription","customer":"cus_1","x":{}}},
                "livemode":false,"pending_webhooks":1,"request":{"id":null},"type":"customer.subscription.updated"}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            EventRef {
                id: "evt_1".into(),
                event_type: "customer.subscription.updated".into(),
                created_s: 1_700_000_000,
                object_type: "subscription".into(),
                object_id: "sub_1".into(),
                customer: Some("cus_1".into()),
                charge: None,
            }
        );
        let e = parse_event(
            br#"{"id":"evt_3","type":"charge.dispute.created","created":1,"data":{"object":{"id":"du_1","object":"dispute","charge":"ch_7"}}}"#,
        )
        .unwrap();
        assert_eq!((e.customer, e.charge.as_deref()), (None, Some("ch_7")));
        let e = parse_event(
            br#"{"id":"evt_2","type":"customer.created","created":1,"data":{"object":{"id":"cus_9","object":"customer"}}}"#,
        )
        .unwrap();
        assert_eq!(e.customer.as_deref(), Some("cus_9"));
        let e = parse_event(
            br#"{"id":"evt_3","type":"some.future.type","created":1,"data":{"object":{"id":"x_1","object":"thing","customer":{"id":"cus_2","object":"customer"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            (e.event_type.as_str(), e.customer.as_deref()),
            ("some.future.type", Some("cus_2"))
        );
        let e = parse_event(
            br#"{"id":"evt_4","type":"product.created","created":1,"data":{"object":{"id":"prod_1","object":"product"}}}"#,
        )
        .unwrap();
        assert_eq!(e.customer, None);
        assert!(parse_event(b"{}").is_err());
        assert!(parse_event(b"not json").is_err());
    }
}

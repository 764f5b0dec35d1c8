//! Webhook delivery as Stripe does it: each event POSTed to the endpoint with
//! `Stripe-Signature: t=…,v1=…` (HMAC-SHA256 of `"{t}.{body}"` keyed by the whole `whsec_…`),
//! retried with backoff on a non-2xx answer or a connection failure; the duplicate, reorder and
//! drop switches of [`Delivery`] apply.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{Delivered, Delivery, Shared};

/// `Stripe-Signature` for a payload at `t` (unix seconds).
pub fn signature_header(secret: &str, t: i64, payload: &[u8]) -> String {
    let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return format!("t={t}"),
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(payload);
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

fn wall_clock_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Hands one action's events to delivery (in the background).
pub(crate) fn deliver(shared: &Arc<Shared>, events: Vec<Value>) {
    if events.is_empty() {
        return;
    }
    let switches: Delivery = *shared.delivery.lock().unwrap_or_else(|e| e.into_inner());
    let Some(url) = shared.webhook_url.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return;
    };
    if switches.drop {
        let mut d = shared.dropped.lock().unwrap_or_else(|e| e.into_inner());
        d.extend(events.iter().filter_map(|e| e["id"].as_str().map(str::to_owned)));
        return;
    }
    let mut batch = events;
    if switches.reorder {
        batch.reverse();
    }
    if switches.duplicate {
        batch = batch.into_iter().flat_map(|e| [e.clone(), e]).collect();
    }
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let shared = shared.clone();
    tokio::spawn(async move {
        for e in batch {
            send(&shared, &url, e, 1).await;
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
}

/// The first attempt; a failure hands the event to a retry task (later events go on).
async fn send(shared: &Arc<Shared>, url: &str, event: Value, attempt: u32) {
    if attempt_once(shared, url, &event, attempt).await || shared.max_attempts <= 1 {
        return;
    }
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let shared = shared.clone();
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut attempt = attempt;
        loop {
            tokio::time::sleep(shared.retry_base * 2u32.saturating_pow(attempt - 1)).await;
            attempt += 1;
            if attempt_once(&shared, &url, &event, attempt).await || attempt >= shared.max_attempts
            {
                break;
            }
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
}

/// One POST of an event, recorded; `true` on a 2xx answer.
async fn attempt_once(shared: &Shared, url: &str, event: &Value, attempt: u32) -> bool {
    let payload = match serde_json::to_vec_pretty(event) {
        Ok(p) => p,
        Err(_) => return true,
    };
    let sig = signature_header(&shared.webhook_secret, wall_clock_s(), &payload);
    let r = shared
        .http
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .header("stripe-signature", sig)
        .header("user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
        .body(payload)
        .send()
        .await;
    let status = r.as_ref().ok().map(|r| r.status().as_u16());
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    shared.deliveries.lock().unwrap_or_else(|e| e.into_inner()).push(Delivered {
        event_id: event["id"].as_str().unwrap_or_default().to_owned(),
        event_type: event["type"].as_str().unwrap_or_default().to_owned(),
        attempt,
        status,
        ok,
    });
    ok
}

/// The default pause before the second attempt (doubled each time).
pub const RETRY_BASE: Duration = Duration::from_millis(200);

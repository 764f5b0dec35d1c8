//! Enrolment with a hub: the node's `DeviceKeys` record and a one-time code go to the hub's
//! `POST /api/v1/devices/enrol`; the hub's identity key in the answer is pinned in the store,
//! with the deployment's account-fingerprint key the answer carries (a hub before that key
//! sends none). A node enrolled before it reads the key once at start
//! ([`learn_fingerprint_key`]: `GET /api/v1/devices/{id}/account-fingerprint-key`, signed with
//! the identity key like the billing read, the answer checked against the pinned hub key).
//!
//! The answer must name this very device (the id derived from our key) and carry a well-formed
//! hub key whose device id matches the one it states; otherwise nothing is pinned. The request
//! goes over plain HTTP to `http://HOST:PORT` (loopback or a trusted network; the code is
//! single-use and short-lived, and the keys record is public by design); an `https://` prefix
//! on `--hub` is used as given.

use std::sync::Arc;
use std::time::Duration;

use tradecast_protocol::{Body, DeviceId, DeviceKeys, IdentityKey, Kind, Record, StreamId};

use crate::runtime::{Node, NodeError};
use crate::store::hub_pin::{
    HubPin, SETTING_HUB_ADDR, SETTING_HUB_DEVICE_ID, SETTING_HUB_KEY, SETTING_HUB_TLS_NAME,
};
use crate::store::{Store, StoreError};

/// Largest enrolment answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Why enrolment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `init` was not run.
    #[error("the data dir has no identity: run `tradecast-node init` first")]
    NoIdentity,
    /// The hub could not be reached.
    #[error("cannot reach the hub at {addr}: {message}")]
    Unreachable { addr: String, message: String },
    /// The hub refused (bad or used code, already enrolled, rate limited …).
    #[error("the hub refused the enrolment ({status}): {detail}")]
    Refused { status: u16, detail: String },
    /// The hub's answer is not what an enrolment returns; nothing was pinned.
    #[error("the hub's answer is not a valid enrolment: {0}")]
    BadAnswer(String),
    /// The async runtime could not start, or the output could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The store already holds a hub pin.
    #[error("this node is already enrolled with a hub ({0}); use a new data dir")]
    OtherHub(String),
    /// The fingerprint key was asked for without a pinned hub.
    #[error("this node is not enrolled with a hub")]
    NotEnrolled,
    /// The node could not keep what the hub answered.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// What enrolment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// This device.
    pub device_id: DeviceId,
    /// The pinned hub.
    pub hub: HubPin,
    /// The hub's device id (its key's fingerprint), for a person to compare.
    pub hub_device_id: DeviceId,
}

#[derive(serde::Deserialize)]
struct Answer {
    device: AnswerDevice,
    hub_identity_key: String,
    hub_device_id: String,
    /// Set when the hub's QUIC endpoint has a WebPKI certificate for this DNS name.
    #[serde(default)]
    quic_tls_name: Option<String>,
    /// The deployment's account-fingerprint key (64 hex; absent from a hub before it).
    #[serde(default)]
    account_fingerprint_key: Option<String>,
}

#[derive(serde::Deserialize)]
struct AnswerDevice {
    id: String,
}

/// The node's `DeviceKeys` record: the first one on its `DEVICE` stream, appended if missing.
fn device_keys_record(store: &Store, label: &str, now_ms: i64) -> Result<Record, EnrolError> {
    let identity = store.read()?.identity()?.ok_or(EnrolError::NoIdentity)?;
    let existing = store.read()?.outbox(StreamId::DEVICE)?;
    if let Some(r) = existing.into_iter().find(|r| r.header().kind == Kind::DeviceKeys) {
        return Ok(r);
    }
    let keys = DeviceKeys {
        identity: identity.identity_key(),
        sealing: identity.sealing_public_key(),
        label: label.to_string(),
        at_ms: now_ms,
        account_fingerprint: None,
    };
    Ok(store.write(|tx| {
        tx.append_record(&identity, StreamId::DEVICE, &Body::DeviceKeys(keys), now_ms)
    })?)
}

fn base_url(hub: &str) -> String {
    if hub.starts_with("http://") || hub.starts_with("https://") {
        hub.trim_end_matches('/').to_string()
    } else {
        format!("http://{hub}")
    }
}

/// Enrols this node with the hub at `hub` (`HOST:PORT`, or a comma-separated list of the
/// instances of one hub: the first is asked, all are pinned with its key) using `code`, and
/// pins the hub's key.
pub async fn enrol(
    store: &Store,
    hub: &str,
    code: &str,
    label: &str,
    now_ms: i64,
) -> Result<Enrolment, EnrolError> {
    if let Some(pin) =
        crate::store::hub_pin::hub_pin(store).map_err(|e| EnrolError::BadAnswer(e.to_string()))?
    {
        // Enrolling again would silently move the node to another hub (or repeat this one,
        // which the hub refuses as already enrolled): refuse here.
        return Err(EnrolError::OtherHub(pin.key.device_id().to_text()));
    }
    let addrs = crate::store::hub_pin::split_addrs(hub);
    let hub = addrs.first().map(String::as_str).unwrap_or(hub);
    let record = device_keys_record(store, label, now_ms)?;
    let device_id = record.header().author;
    let unreachable = |e: reqwest::Error| EnrolError::Unreachable {
        addr: hub.to_string(),
        message: e.to_string(),
    };
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(20)).build().map_err(unreachable)?;
    let body = serde_json::json!({
        "code": code,
        "keys_record": data_encoding::BASE64.encode(&record.encode()),
    });
    let resp = client
        .post(format!("{}/api/v1/devices/enrol", base_url(hub)))
        .json(&body)
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(unreachable)?;
    if bytes.len() > MAX_ANSWER {
        return Err(EnrolError::BadAnswer(format!("{} bytes", bytes.len())));
    }
    if status != 201 {
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("detail").or(v.get("title")).and_then(|d| d.as_str()).map(String::from)
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
            });
        return Err(EnrolError::Refused { status, detail });
    }
    let answer: Answer =
        serde_json::from_slice(&bytes).map_err(|e| EnrolError::BadAnswer(e.to_string()))?;
    if answer.device.id != device_id.to_text() {
        return Err(EnrolError::BadAnswer(format!(
            "the hub enrolled {} instead of this device {}",
            answer.device.id,
            device_id.to_text()
        )));
    }
    let key = IdentityKey::from_hex(&answer.hub_identity_key)
        .map_err(|e| EnrolError::BadAnswer(format!("hub key: {e}")))?;
    let hub_device_id = key.device_id();
    if hub_device_id.to_text() != answer.hub_device_id {
        return Err(EnrolError::BadAnswer("the hub's device id does not match its key".into()));
    }
    let tls_name = answer.quic_tls_name;
    if let Some(name) = &tls_name
        && !tradecast_quic::is_dns_name(name)
    {
        return Err(EnrolError::BadAnswer(format!("`{name}` is not a DNS name")));
    }
    let fingerprint_key = match answer.account_fingerprint_key.as_deref() {
        None => None,
        Some(text) => {
            Some(crate::store::hub_pin::parse_fingerprint_key(text).ok_or_else(|| {
                EnrolError::BadAnswer("the account fingerprint key is not 64 hex digits".into())
            })?)
        }
    };
    let hub_addr = if addrs.is_empty() { hub.to_string() } else { addrs.join(",") };
    store.write(|tx| {
        tx.set_setting(SETTING_HUB_ADDR, &hub_addr)?;
        tx.set_setting(SETTING_HUB_KEY, &hex::encode(key.to_bytes()))?;
        if let Some(name) = &tls_name {
            tx.set_setting(SETTING_HUB_TLS_NAME, name)?;
        }
        if let Some(k) = &fingerprint_key {
            crate::store::hub_pin::set_fingerprint_key(tx, k)?;
        }
        tx.set_setting(SETTING_HUB_DEVICE_ID, &hub_device_id.to_text())
    })?;
    Ok(Enrolment { device_id, hub: HubPin { addr: hub_addr, key, tls_name }, hub_device_id })
}

/// How long a read of the fingerprint key may take.
const FINGERPRINT_KEY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(serde::Deserialize)]
struct FingerprintKeyAnswer {
    device: String,
    account_fingerprint_key: String,
}

/// Reads the deployment's account-fingerprint key from the pinned hub (its HTTP base:
/// [`crate::sync::billing::hub_base`]) with a request signed by this node's identity key at
/// `now_ms`, checks the answer is signed by the pinned hub key and names this device, and hands
/// the key to the node ([`Node::learn_fingerprint_key`]: kept in the store, the current EA's
/// account fingerprinted). Whether that appended a `DeviceKeys` record.
pub async fn fetch_fingerprint_key(node: &Node, now_ms: i64) -> Result<bool, EnrolError> {
    let base = crate::sync::billing::hub_base(node)?.ok_or(EnrolError::NotEnrolled)?;
    let path = format!("/api/v1/devices/{}/account-fingerprint-key", node.device_id().to_text());
    // A key from anyone but the pinned hub would split this device's fingerprints from those
    // of every other device of the deployment: the answer must be the pinned hub's.
    use crate::sync::billing::{BillingError, device_get};
    let bytes = device_get(node, &base, &path, FINGERPRINT_KEY_TIMEOUT, now_ms).await.map_err(
        |e| match e {
            BillingError::Store(e) => EnrolError::Store(e),
            BillingError::NotEnrolled => EnrolError::NotEnrolled,
            BillingError::Unreachable { base, message } => {
                EnrolError::Unreachable { addr: base, message }
            }
            BillingError::Refused { status, detail } => EnrolError::Refused { status, detail },
            BillingError::BadAnswer(m) => EnrolError::BadAnswer(m),
            BillingError::Unsigned { .. } => {
                EnrolError::BadAnswer("the answer is not signed by the pinned hub key".into())
            }
        },
    )?;
    let answer: FingerprintKeyAnswer =
        serde_json::from_slice(&bytes).map_err(|e| EnrolError::BadAnswer(e.to_string()))?;
    if answer.device != node.device_id().to_text() {
        return Err(EnrolError::BadAnswer("the answer names another device".into()));
    }
    let key = crate::store::hub_pin::parse_fingerprint_key(&answer.account_fingerprint_key)
        .ok_or_else(|| {
            EnrolError::BadAnswer("the account fingerprint key is not 64 hex digits".into())
        })?;
    Ok(node.learn_fingerprint_key(&key, now_ms)?)
}

/// First wait between reads of the fingerprint key; doubled after each failure up to
/// [`FINGERPRINT_KEY_RETRY_MAX`].
const FINGERPRINT_KEY_RETRY: Duration = Duration::from_secs(5);
const FINGERPRINT_KEY_RETRY_MAX: Duration = Duration::from_secs(3_600);

/// Until this enrolled node holds the hub's account-fingerprint key, reads it
/// ([`fetch_fingerprint_key`]), retrying with backoff (5 s doubling to an hour: a hub down, or
/// one before the route, answers later); returns at once when the key is known. `serve` runs it
/// beside the sync client and ends it with the node.
pub async fn learn_fingerprint_key(node: Arc<Node>) {
    let mut wait = FINGERPRINT_KEY_RETRY;
    loop {
        match crate::store::hub_pin::has_fingerprint_key(node.store()) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(target: "tradecast::sync", error = %e,
                    "the account fingerprint key could not be looked up in the store");
                return;
            }
        }
        match fetch_fingerprint_key(&node, crate::clock::wall_ms()).await {
            Ok(_) => {
                tracing::info!(target: "tradecast::sync",
                    "the hub's account fingerprint key is kept");
                return;
            }
            Err(e) => {
                tracing::warn!(target: "tradecast::sync", error = %e, retry_s = wait.as_secs(),
                    "the hub's account fingerprint key could not be read");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(FINGERPRINT_KEY_RETRY_MAX);
    }
}

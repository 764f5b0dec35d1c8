//! The v2 test vectors (`protocol/tests/vectors/v2.json`): one chain per (author, stream) with
//! every record kind in the version-2 layout — the provider's signals, the subscriber's shared
//! records (a `Pending`, an `Approval` decided remotely with its lots, two `RequestAnswer`s),
//! its `DeviceKeys` with an account fingerprint, its published history (`TradeClosed`,
//! `EquityPoint`, `BalanceOperation`, `Summary`), the hub's `ApprovalRequest` and
//! `FeatureGrant` — plus the new kinds sealed on the private stream and the fingerprint's
//! inputs. Every intermediate value is written out, as in v1. Pure.

use serde_json::{Value, json};

use super::vector_signal_id;
use super::{dec, derived, identities_json, pretty, provider_bodies, vector_identity};
use crate::domain::{
    ACCOUNT_FINGERPRINT_CONTEXT, AccountFingerprint, AnswerOutcome, Approval, ApprovalRequest,
    BalanceKind, BalanceOperation, Channel, DecidedBy, Decision, DeviceKeys, EquityPoint, Feature,
    FeatureGrant, GrantId, Pending, RefusalReason, RemoteDecision, RequestAnswer, RequestId,
    RiskPreview, Side, Summary, TradeClosed,
};
use crate::hash::{CHAIN_HASH_NAME, ChainHash};
use crate::identity::Identity;
use crate::receipt::RECEIPT_DOMAIN;
use crate::record::{
    Body, HeaderFields, Kind, MAX_BODY_LEN, MAX_HEADER_LEN, MIN_VERSION, RECORD_DOMAIN, Record,
    Signer, StreamId, VERSION,
};
use crate::seal::{self, STREAM_KEY_SALT, StreamKey};

const T0: i64 = 1_764_000_000_000;

fn id16(label: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&derived(label)[..16]);
    out
}

/// The fingerprint key the vectors' hub hands out, and the account it fingerprints.
pub fn fingerprint_inputs() -> ([u8; 32], &'static str, u64) {
    (derived("fingerprint-key"), "Demo-Server", 5_012_345)
}

/// The value of a body as its domain type's JSON.
fn body_json(body: &Body) -> Value {
    let value = match body {
        Body::Signal(v) => serde_json::to_value(v),
        Body::Modify(v) => serde_json::to_value(v),
        Body::Close(v) => serde_json::to_value(v),
        Body::Approval(v) => serde_json::to_value(v),
        Body::Execution(v) => serde_json::to_value(v),
        Body::PositionSnapshot(v) => serde_json::to_value(v),
        Body::TradeClosed(v) => serde_json::to_value(v),
        Body::EquityPoint(v) => serde_json::to_value(v),
        Body::Heartbeat(v) => serde_json::to_value(v),
        Body::DeviceKeys(v) => serde_json::to_value(v),
        Body::Receipt(v) => serde_json::to_value(v),
        Body::Command(v) => serde_json::to_value(v),
        Body::ApprovalRequest(v) => serde_json::to_value(v),
        Body::RequestAnswer(v) => serde_json::to_value(v),
        Body::Pending(v) => serde_json::to_value(v),
        Body::FeatureGrant(v) => serde_json::to_value(v),
        Body::BalanceOperation(v) => serde_json::to_value(v),
        Body::Summary(v) => serde_json::to_value(v),
    };
    value.unwrap_or(Value::Null)
}

/// The subscriber's shared records: a pending signal, the hub's request answered, the approval.
fn shared_bodies(me: &Identity) -> Vec<Body> {
    let (signal_id, device) = (vector_signal_id(), me.device_id());
    let request_id = RequestId(id16("request/1"));
    vec![
        Body::Pending(Pending {
            signal_id,
            device,
            expires_at_ms: T0 + 3_600_000,
            min_lots: dec(1, 2),
            max_lots: dec(50, 2),
            risk_preview: Some(RiskPreview {
                lots: dec(10, 2),
                risk_money: dec(2400, 2),
                risk_percent: dec(24, 2),
                currency: "USD".into(),
            }),
            blocking: vec![],
            at_ms: T0 + 1_000,
        }),
        Body::RequestAnswer(RequestAnswer {
            request_id: RequestId(id16("request/0")),
            signal_id,
            device,
            outcome: AnswerOutcome::Refused(RefusalReason::PriceMoved),
            at_ms: T0 + 20_000,
        }),
        Body::Approval(Approval {
            signal_id,
            device,
            decision: Decision::Approved,
            decided_by: DecidedBy::Remote { request_id },
            consent_version: 2,
            reason: "approved from Telegram".into(),
            decided_at_ms: T0 + 30_000,
            lots: Some(dec(10, 2)),
        }),
        Body::RequestAnswer(RequestAnswer {
            request_id,
            signal_id,
            device,
            outcome: AnswerOutcome::Applied,
            at_ms: T0 + 30_000,
        }),
    ]
}

fn device_bodies(me: &Identity) -> Vec<Body> {
    let (key, server, login) = fingerprint_inputs();
    vec![Body::DeviceKeys(DeviceKeys {
        identity: me.identity_key(),
        sealing: me.sealing_public_key(),
        label: "trader pc".into(),
        at_ms: T0,
        account_fingerprint: Some(AccountFingerprint::compute(&key, server, login)),
    })]
}

fn published_bodies(me: &Identity) -> Vec<Body> {
    let device = me.device_id();
    vec![
        Body::BalanceOperation(BalanceOperation {
            device,
            deal: 90_000_001,
            kind: BalanceKind::Deposit,
            amount: dec(1_000_000, 2),
            currency: "USD".into(),
            at_ms: T0 - 86_400_000,
            comment: "initial deposit".into(),
        }),
        Body::TradeClosed(TradeClosed {
            signal_id: Some(vector_signal_id()),
            device,
            ticket: 123_456_789,
            symbol: "EURUSD".into(),
            side: Side::Buy,
            volume: dec(10, 2),
            open_price: dec(108_251, 5),
            close_price: dec(108_610, 5),
            opened_at_ms: T0 + 31_000,
            closed_at_ms: T0 + 2_700_000,
            profit: dec(3590, 2),
            commission: dec(-70, 2),
            swap: dec(0, 2),
        }),
        Body::EquityPoint(EquityPoint {
            device,
            at_ms: T0 + 2_760_000,
            balance: dec(1_003_520, 2),
            equity: dec(1_003_520, 2),
        }),
        Body::Summary(Summary {
            device,
            day: "2025-11-24".into(),
            at_ms: T0 + 36_000_000,
            balance: dec(1_003_520, 2),
            equity: dec(1_003_520, 2),
            open_positions: 0,
            floating_pnl: dec(0, 2),
            day_pnl: dec(3520, 2),
            currency: Some("USD".into()),
        }),
    ]
}

fn hub_bodies(to: &Identity) -> Vec<Body> {
    vec![
        Body::FeatureGrant(FeatureGrant {
            grant_id: GrantId(id16("grant/1")),
            device: to.device_id(),
            plan_id: "pro-monthly".into(),
            features: vec![Feature::Signals, Feature::AutoCopy, Feature::Telegram],
            valid_from_ms: T0 - 86_400_000,
            valid_until_ms: Some(T0 + 29 * 86_400_000),
            issued_at_ms: T0 - 86_400_000,
        }),
        Body::ApprovalRequest(ApprovalRequest {
            request_id: RequestId(id16("request/1")),
            signal_id: vector_signal_id(),
            device: to.device_id(),
            decision: RemoteDecision::Approved,
            lots: Some(dec(10, 2)),
            expires_at_ms: T0 + 3_600_000,
            channel: Channel::Telegram,
            telegram_user_id: Some(424_242),
            requested_at_ms: T0 + 25_000,
        }),
    ]
}

fn chain_json(name: &str, author: &Identity, stream: StreamId, bodies: &[Body]) -> Value {
    let mut prev = ChainHash::GENESIS;
    let mut records = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let seq = i as u64 + 1;
        let fields = HeaderFields {
            stream,
            seq,
            prev_hash: prev,
            created_at_ms: T0 + 500 + i as i64 * 1_000,
        };
        let record = Record::sign(author, fields, body);
        records.push(json!({
            "kind": record.header().kind as u8,
            "kind_name": record.header().kind.name(),
            "seq": seq,
            "created_at_ms": fields.created_at_ms,
            "header": hex::encode(record.header_bytes()),
            "body": hex::encode(record.body_bytes()),
            "body_json": body_json(body),
            "signed_bytes": hex::encode(record.signed_bytes()),
            "signature": hex::encode(record.signature().0),
            "record": hex::encode(record.encode()),
            "header_hash": record.header_hash().to_hex(),
            "body_hash": record.header().body_hash.to_hex(),
            "prev_hash": prev.to_hex(),
        }));
        prev = record.header_hash();
    }
    json!({
        "name": name,
        "author_public": hex::encode(author.identity_key().to_bytes()),
        "stream": stream.0,
        "records": records,
    })
}

/// The whole v2 vector file as JSON.
pub fn generate() -> Value {
    let identities: Vec<Identity> = (0..3).map(vector_identity).collect();
    let (provider, subscriber, hub) = (&identities[0], &identities[1], &identities[2]);
    let chains = vec![
        chain_json(
            "provider signals",
            provider,
            StreamId::SIGNALS,
            &provider_bodies(provider, vector_signal_id()),
        ),
        chain_json("subscriber shared", subscriber, StreamId::SHARED, &shared_bodies(subscriber)),
        chain_json("subscriber device", subscriber, StreamId::DEVICE, &device_bodies(subscriber)),
        chain_json(
            "subscriber published",
            subscriber,
            StreamId::PUBLISHED,
            &published_bodies(subscriber),
        ),
        chain_json("hub requests", hub, StreamId::HUB_REQUESTS, &hub_bodies(subscriber)),
    ];

    let secrets = subscriber.to_secret_bytes();
    let private = published_bodies(subscriber);
    let sealed: Vec<Value> = private
        .iter()
        .enumerate()
        .filter(|(_, b)| b.kind().since_version() == 2)
        .map(|(i, body)| {
            let seq = i as u64 + 1;
            let stream = StreamId::PRIVATE;
            let author = subscriber.device_id();
            let key = StreamKey::derive(subscriber, &author, stream);
            let mut nonce = [0u8; seal::NONCE_LEN];
            nonce.copy_from_slice(&derived(&format!("v2/nonce/{i}"))[..seal::NONCE_LEN]);
            let plaintext = body.encode();
            let carried = seal::seal_with_nonce(&key, &author, stream, seq, &plaintext, &nonce);
            json!({
                "kind": body.kind() as u8,
                "author_device_id_hex": author.to_hex(),
                "stream": stream.0,
                "seq": seq,
                "x25519_secret": hex::encode(*secrets.x25519_secret),
                "hkdf_salt": hex::encode(STREAM_KEY_SALT),
                "hkdf_info": hex::encode(seal::stream_key_info(&author, stream)),
                "stream_key": hex::encode(*key.to_bytes()),
                "nonce": hex::encode(nonce),
                "aad": hex::encode(seal::seal_aad(&author, stream, seq)),
                "plaintext": hex::encode(&plaintext),
                "ciphertext": hex::encode(&carried[seal::NONCE_LEN..]),
            })
        })
        .collect();

    let (key, server, login) = fingerprint_inputs();
    let mut input = ACCOUNT_FINGERPRINT_CONTEXT.to_vec();
    input.extend_from_slice(&(server.len() as u32).to_le_bytes());
    input.extend_from_slice(server.as_bytes());
    input.extend_from_slice(&login.to_le_bytes());
    let fingerprint = json!({
        "key": hex::encode(key),
        "broker_server": server,
        "login": login,
        "input": hex::encode(&input),
        "fingerprint": AccountFingerprint::compute(&key, server, login).to_hex(),
    });

    let kinds: Vec<Value> = Kind::ALL
        .iter()
        .map(|k| {
            json!({
                "tag": *k as u8,
                "name": k.name(),
                "since_version": k.since_version(),
                "signer": match k.signer() { Signer::Device => "device", Signer::Hub => "hub" },
                "streams": k.streams().iter().map(|s| s.0).collect::<Vec<_>>(),
            })
        })
        .collect();

    json!({
        "format": "tradecast records v2",
        "version": VERSION,
        "min_version_read": MIN_VERSION,
        "hash": CHAIN_HASH_NAME,
        "record_domain": String::from_utf8_lossy(RECORD_DOMAIN),
        "receipt_domain": String::from_utf8_lossy(RECEIPT_DOMAIN),
        "limits": { "max_header_len": MAX_HEADER_LEN, "max_body_len": MAX_BODY_LEN },
        "notes": [
            "Everything in v1.json's notes holds; the header's version byte is 2.",
            "A reader accepts versions 1 and 2. Under version 1, approval (4) and device_keys (10) bodies lack their last field (lots; account_fingerprint) and decided_by has no remote variant; kinds 13 to 18 do not exist.",
            "Version-2 changes to old kinds: approval gains lots: Option<Decimal> after decided_at_ms, and decided_by gains variant 2 remote { request_id [u8;16] }; device_keys gains account_fingerprint: Option<[u8;32]> after at_ms.",
            "The record domain tag is unchanged: it names the scheme (tag || header); the version byte is inside the signed header.",
            "Each chain is one (author, stream): seq from 1, prev_hash of seq 1 is zeros. The hub requests chain is the hub's (identity 2), addressed to the subscriber (identity 1).",
            "body_json is the body's domain value in the JSON of the HTTP APIs (decimals as strings, ids and keys as hex, device ids in text form).",
            "account_fingerprint = BLAKE3 keyed with key (32 bytes) over input = 'tradecast/account-fingerprint/v1' || len(broker_server) u32 LE || broker_server UTF-8 || login u64 LE."
        ],
        "kinds": kinds,
        "identity": identities_json(&identities),
        "chains": chains,
        "sealed": sealed,
        "account_fingerprint": fingerprint,
    })
}

/// The v2 file's text: pretty JSON and a final newline.
pub fn generate_text() -> String {
    pretty(&generate())
}

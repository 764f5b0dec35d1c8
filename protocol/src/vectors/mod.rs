//! The test vectors of the wire format, generated from fixed keys so any other implementation
//! can check itself against them: `protocol/tests/vectors/v1.json` (record version 1, kept as
//! the compatibility vectors: this crate still reads and verifies every record in it) and
//! `v2.json` ([`v2`]: every kind in the version-2 layout, the hub-signed requests, the account
//! fingerprint).
//!
//! Regenerate with
//! `cargo run -p tradecast-protocol --bin tradecast-vectors -- v1 > protocol/tests/vectors/v1.json`
//! (and `v2`); the crate's tests fail if a file and its generator disagree, and re-derive every
//! value in the files from their keys with the primitive crates alone. Pure: fixed inputs, no
//! I/O.

pub mod v2;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::domain::{Close, EntryKind, IndicatorValue, Modify, Side, Signal, SignalId, Timeframe};
use crate::domain::{EquityPoint, Position, PositionSnapshot};
use crate::hash::{CHAIN_HASH_NAME, ChainHash};
use crate::identity::Identity;
use crate::receipt::{RECEIPT_DOMAIN, Receipt};
use crate::record::{
    Body, HeaderFields, MAX_BODY_LEN, MAX_HEADER_LEN, RECORD_DOMAIN, Record, StreamId,
};
use crate::seal::{self, STREAM_KEY_SALT, StreamKey};

pub(crate) fn derived(label: &str) -> [u8; 32] {
    *blake3::hash(format!("tradecast/vectors/v1/{label}").as_bytes()).as_bytes()
}

/// The fixed identity `i` of the vectors.
pub fn vector_identity(i: u32) -> Identity {
    Identity::from_secret_bytes(&derived(&format!("ed25519/{i}")), &derived(&format!("x25519/{i}")))
}

pub(crate) fn dec(mantissa: i64, scale: u32) -> Decimal {
    Decimal::new(mantissa, scale)
}

/// The signal id of the vectors.
pub(crate) fn vector_signal_id() -> SignalId {
    SignalId(derived("signal/1")[..16].try_into().unwrap_or([0; 16]))
}

/// The provider's signal, modification and close of the vectors.
pub(crate) fn provider_bodies(author: &Identity, signal_id: SignalId) -> Vec<Body> {
    vec![
        Body::Signal(Signal {
            id: signal_id,
            provider: author.device_id(),
            strategy_id: "fib-rsi".into(),
            strategy_version: 3,
            symbol: "EURUSD".into(),
            timeframe: Timeframe::H1,
            side: Side::Buy,
            entry_kind: EntryKind::Limit,
            entry: dec(108_250, 5),
            stop: dec(108_010, 5),
            tp1: dec(108_610, 5),
            tp2: Some(dec(108_970, 5)),
            bar_time_ms: 1_764_000_000_000,
            expires_at_ms: 1_764_003_600_000,
            leg: 1,
            indicators: vec![IndicatorValue { name: "rsi".into(), value: dec(2743, 2) }],
            rr: dec(15, 1),
        }),
        Body::Modify(Modify {
            signal_id,
            stop: Some(dec(108_250, 5)),
            tp1: None,
            tp2: None,
            reason: "break-even".into(),
            at_ms: 1_764_001_800_000,
        }),
        Body::Close(Close {
            signal_id,
            fraction: dec(1, 0),
            price: Some(dec(108_610, 5)),
            reason: "tp1".into(),
            at_ms: 1_764_002_700_000,
        }),
    ]
}

/// The identities' keys and ids as JSON.
pub(crate) fn identities_json(identities: &[Identity]) -> Vec<Value> {
    identities
        .iter()
        .map(|id| {
            let secrets = id.to_secret_bytes();
            json!({
                "ed25519_seed": hex::encode(*secrets.ed25519_seed),
                "ed25519_public": hex::encode(id.identity_key().to_bytes()),
                "x25519_secret": hex::encode(*secrets.x25519_secret),
                "x25519_public": hex::encode(id.sealing_public_key().0),
                "device_id_hex": id.device_id().to_hex(),
                "device_id_text": id.device_id().to_text(),
            })
        })
        .collect()
}

/// The whole v1 vector file as JSON.
pub fn generate() -> Value {
    let identities: Vec<Identity> = (0..3).map(vector_identity).collect();
    let identity_json = identities_json(&identities);

    let author = &identities[0];
    let signal_id = vector_signal_id();
    let bodies = provider_bodies(author, signal_id);
    let mut prev = ChainHash::GENESIS;
    let mut records_json = Vec::new();
    let mut records = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let seq = i as u64 + 1;
        let fields = HeaderFields {
            stream: StreamId::SIGNALS,
            seq,
            prev_hash: prev,
            created_at_ms: 1_764_000_000_500 + i as i64 * 900_000,
        };
        // Version 1 can carry these bodies: signing cannot fail.
        let Ok(record) = Record::sign_versioned(author, 1, fields, body) else { continue };
        records_json.push(json!({
            "kind": record.header().kind as u8,
            "stream": StreamId::SIGNALS.0,
            "seq": seq,
            "created_at_ms": fields.created_at_ms,
            "author_public": hex::encode(author.identity_key().to_bytes()),
            "header": hex::encode(record.header_bytes()),
            "body": hex::encode(record.body_bytes()),
            "signed_bytes": hex::encode(record.signed_bytes()),
            "signature": hex::encode(record.signature().0),
            "record": hex::encode(record.encode()),
            "header_hash": record.header_hash().to_hex(),
            "body_hash": record.header().body_hash.to_hex(),
            "prev_hash": prev.to_hex(),
        }));
        prev = record.header_hash();
        records.push(record);
    }

    let hub = &identities[2];
    let receipt = Receipt::sign(hub, &records[0], 1_764_000_000_731);
    let mut receipt_signed = RECEIPT_DOMAIN.to_vec();
    receipt_signed.extend_from_slice(&receipt.fields.encode());
    let receipt_json = json!({
        "hub_public": hex::encode(hub.identity_key().to_bytes()),
        "header_hash": records[0].header_hash().to_hex(),
        "received_at_ms": receipt.fields.received_at_ms,
        "signed_bytes": hex::encode(&receipt_signed),
        "signature": hex::encode(receipt.signature.0),
    });

    let owner = &identities[1];
    let plaintexts = [
        Body::EquityPoint(EquityPoint {
            device: owner.device_id(),
            at_ms: 1_764_000_060_000,
            balance: dec(1_000_000, 2),
            equity: dec(1_001_250, 2),
        }),
        Body::PositionSnapshot(PositionSnapshot {
            device: owner.device_id(),
            at_ms: 1_764_000_120_000,
            balance: dec(1_000_000, 2),
            equity: dec(1_001_250, 2),
            margin: dec(10_825, 2),
            positions: vec![Position {
                ticket: 123_456_789,
                signal_id: Some(signal_id),
                symbol: "EURUSD".into(),
                side: Side::Buy,
                volume: dec(10, 2),
                open_price: dec(108_251, 5),
                stop: Some(dec(108_010, 5)),
                tp: Some(dec(108_610, 5)),
                profit: dec(1250, 2),
                opened_at_ms: 1_764_000_001_000,
            }],
        }),
    ];
    let secrets = owner.to_secret_bytes();
    let sealed_json: Vec<Value> = plaintexts
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let seq = i as u64 + 1;
            let stream = StreamId::PRIVATE;
            let key = StreamKey::derive(owner, &owner.device_id(), stream);
            let mut nonce = [0u8; seal::NONCE_LEN];
            nonce.copy_from_slice(&derived(&format!("nonce/{i}"))[..seal::NONCE_LEN]);
            let plaintext = body.encode_for(1).unwrap_or_default();
            let sealed =
                seal::seal_with_nonce(&key, &owner.device_id(), stream, seq, &plaintext, &nonce);
            json!({
                "kind": body.kind() as u8,
                "author_device_id_hex": owner.device_id().to_hex(),
                "stream": stream.0,
                "seq": seq,
                "x25519_secret": hex::encode(*secrets.x25519_secret),
                "hkdf_salt": hex::encode(STREAM_KEY_SALT),
                "hkdf_info": hex::encode(seal::stream_key_info(&owner.device_id(), stream)),
                "stream_key": hex::encode(*key.to_bytes()),
                "nonce": hex::encode(nonce),
                "aad": hex::encode(seal::seal_aad(&owner.device_id(), stream, seq)),
                "plaintext": hex::encode(&plaintext),
                "ciphertext": hex::encode(&sealed[seal::NONCE_LEN..]),
            })
        })
        .collect();

    json!({
        "format": "tradecast records v1",
        "hash": CHAIN_HASH_NAME,
        "record_domain": String::from_utf8_lossy(RECORD_DOMAIN),
        "receipt_domain": String::from_utf8_lossy(RECEIPT_DOMAIN),
        "limits": { "max_header_len": MAX_HEADER_LEN, "max_body_len": MAX_BODY_LEN },
        "notes": [
            "All byte strings are lowercase hex.",
            "device_id = SHA-256(ed25519_public)[0..20]; device_id_text = RFC 4648 base32 (no padding) of it, 4 groups of 8 characters each followed by a Luhn mod 32 check character, joined by '-'.",
            "header = postcard(version u8, kind u8, author [u8;20], stream varint u32, seq varint u64, prev_hash [u8;32], body_hash [u8;32], sealed bool, created_at_ms zigzag-varint i64).",
            "signed_bytes = record_domain || header; signature = Ed25519 (RFC 8032) over signed_bytes.",
            "record = version u8 || kind u8 || varint(len header) || header || signature (64) || varint(len body) || body; varints are minimal LEB128.",
            "header_hash = BLAKE3(header); body_hash = BLAKE3(body as carried); prev_hash of seq 1 is 32 zero bytes.",
            "stream_key = HKDF-SHA256(salt = hkdf_salt, ikm = x25519_secret, info = hkdf_info = 'tradecast/stream/v1' || author [u8;20] || stream u32 big-endian), 32 bytes.",
            "aad = postcard(author [u8;20], stream varint u32, seq varint u64); sealed body as carried = nonce (24) || ciphertext; ciphertext = XChaCha20-Poly1305(stream_key, nonce, aad, plaintext), tag included.",
            "receipt signed_bytes = receipt_domain || postcard(hub [u8;20], header_hash [u8;32], author [u8;20], stream varint u32, seq varint u64, received_at_ms zigzag-varint i64)."
        ],
        "identity": identity_json,
        "records": records_json,
        "receipt": receipt_json,
        "sealed": sealed_json,
    })
}

/// The v1 file's text: pretty JSON and a final newline.
pub fn generate_text() -> String {
    pretty(&generate())
}

pub(crate) fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

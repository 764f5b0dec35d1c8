//! The v2 test vectors: the file matches its generator, and every value in it is re-derived from
//! the keys with the primitive crates alone, as another implementation would from the JSON, the
//! notes and protocol.md; then this crate reads every record back (the hub's requests through
//! `verify_hub_request`) and the JSON of every body parses as its domain type.

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::vectors::{arr, bytes, check_sealed_vector, read_varint, varint};

const FILE: &str = include_str!("../vectors/v2.json");

fn vectors() -> Value {
    serde_json::from_str(FILE).expect("v2.json is JSON")
}

#[test]
fn the_v2_file_is_what_the_generator_prints() {
    assert_eq!(
        FILE,
        tradecast_protocol::vectors::v2::generate_text(),
        "regenerate: cargo run -p tradecast-protocol --bin tradecast-vectors -- v2 > protocol/tests/vectors/v2.json"
    );
}

#[test]
fn every_v2_chain_re_derives_verifies_and_decodes() {
    let v = vectors();
    assert_eq!(v["version"], 2);
    assert_eq!(v["min_version_read"], 1);
    let domain = v["record_domain"].as_str().unwrap().as_bytes().to_vec();
    assert_eq!(domain, b"tradecast/record/v1", "the domain tag did not change");
    let mut kinds_seen = std::collections::BTreeSet::new();
    let chains = v["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 5);
    for chain in chains {
        let author_public = arr::<32>(&chain["author_public"]);
        let stream = chain["stream"].as_u64().unwrap();
        let mut prev = vec![0u8; 32];
        for (i, r) in chain["records"].as_array().unwrap().iter().enumerate() {
            let header = bytes(&r["header"]);
            let body = bytes(&r["body"]);
            let mut pos = 0;
            assert_eq!(header[0], 2, "version");
            let kind = header[1];
            assert_eq!(u64::from(kind), r["kind"].as_u64().unwrap());
            kinds_seen.insert(kind);
            pos += 2;
            assert_eq!(&header[pos..pos + 20], &Sha256::digest(author_public)[..20]);
            pos += 20;
            assert_eq!(read_varint(&header, &mut pos), stream);
            let seq = read_varint(&header, &mut pos);
            assert_eq!(seq, i as u64 + 1);
            assert_eq!(&header[pos..pos + 32], &prev[..]);
            pos += 32;
            assert_eq!(&header[pos..pos + 32], blake3::hash(&body).as_bytes());
            pos += 32;
            assert_eq!(header[pos], 0, "published, shared and hub streams are unsealed");
            pos += 1;
            let zigzag = read_varint(&header, &mut pos);
            let created = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
            assert_eq!(created, r["created_at_ms"].as_i64().unwrap());
            assert_eq!(pos, header.len());
            assert_eq!(bytes(&r["prev_hash"]), prev);
            assert_eq!(bytes(&r["body_hash"]), blake3::hash(&body).as_bytes());
            let header_hash = blake3::hash(&header).as_bytes().to_vec();
            assert_eq!(bytes(&r["header_hash"]), header_hash);
            let mut signed = domain.clone();
            signed.extend_from_slice(&header);
            assert_eq!(bytes(&r["signed_bytes"]), signed);
            let key = VerifyingKey::from_bytes(&author_public).unwrap();
            let signature = Signature::from_bytes(&arr(&r["signature"]));
            key.verify_strict(&signed, &signature).expect("signature verifies");
            let mut record = vec![2, kind];
            varint(&mut record, header.len() as u64);
            record.extend_from_slice(&header);
            record.extend_from_slice(&signature.to_bytes());
            varint(&mut record, body.len() as u64);
            record.extend_from_slice(&body);
            assert_eq!(bytes(&r["record"]), record);
            // This crate agrees, and the body's JSON is the same value.
            let decoded = tradecast_protocol::Record::decode(&record).unwrap();
            let crate_key = tradecast_protocol::IdentityKey::from_bytes(&author_public).unwrap();
            decoded.verify(&crate_key).unwrap();
            let kind_t = decoded.header().kind;
            assert!(kind_t.allowed_on(decoded.header().stream), "{kind_t:?} on {stream}");
            assert_eq!(r["kind_name"], kind_t.name());
            let body_value = decoded.body().unwrap();
            assert_eq!(json_of(&body_value), r["body_json"]);
            prev = header_hash;
        }
    }
    // Every kind but the receipt, command, execution, position snapshot and heartbeat (whose
    // layout did not change and which v1 or the session vectors cover) is in a v2 chain.
    for kind in [1u8, 2, 3, 4, 7, 8, 10, 13, 14, 15, 16, 17, 18] {
        assert!(kinds_seen.contains(&kind), "kind {kind} has a v2 vector");
    }
}

fn json_of(body: &tradecast_protocol::Body) -> Value {
    use tradecast_protocol::Body as B;
    match body {
        B::Signal(v) => serde_json::to_value(v),
        B::Modify(v) => serde_json::to_value(v),
        B::Close(v) => serde_json::to_value(v),
        B::Approval(v) => serde_json::to_value(v),
        B::TradeClosed(v) => serde_json::to_value(v),
        B::EquityPoint(v) => serde_json::to_value(v),
        B::DeviceKeys(v) => serde_json::to_value(v),
        B::ApprovalRequest(v) => serde_json::to_value(v),
        B::RequestAnswer(v) => serde_json::to_value(v),
        B::Pending(v) => serde_json::to_value(v),
        B::FeatureGrant(v) => serde_json::to_value(v),
        B::BalanceOperation(v) => serde_json::to_value(v),
        B::Summary(v) => serde_json::to_value(v),
        other => panic!("no v2 vector of {:?}", other.kind()),
    }
    .unwrap()
}

#[test]
fn the_hubs_requests_verify_for_the_subscriber_only() {
    let v = vectors();
    let hub =
        tradecast_protocol::IdentityKey::from_bytes(&arr(&v["identity"][2]["ed25519_public"]))
            .unwrap();
    let subscriber: [u8; 20] = arr(&v["identity"][1]["device_id_hex"]);
    let provider: [u8; 20] = arr(&v["identity"][0]["device_id_hex"]);
    let chain =
        v["chains"].as_array().unwrap().iter().find(|c| c["name"] == "hub requests").unwrap();
    assert_eq!(chain["stream"], 8);
    for r in chain["records"].as_array().unwrap() {
        let record = tradecast_protocol::Record::decode(&bytes(&r["record"])).unwrap();
        let me = tradecast_protocol::DeviceId(subscriber);
        tradecast_protocol::verify_hub_request(&record, &hub, me, 1_764_000_000_000)
            .expect("for the subscriber");
        let other = tradecast_protocol::DeviceId(provider);
        assert!(tradecast_protocol::verify_hub_request(&record, &hub, other, 0).is_err());
    }
}

#[test]
fn the_account_fingerprint_re_derives() {
    let v = vectors();
    let f = &v["account_fingerprint"];
    let key: [u8; 32] = arr(&f["key"]);
    let server = f["broker_server"].as_str().unwrap();
    let login = f["login"].as_u64().unwrap();
    let mut input = b"tradecast/account-fingerprint/v1".to_vec();
    input.extend_from_slice(&(server.len() as u32).to_le_bytes());
    input.extend_from_slice(server.as_bytes());
    input.extend_from_slice(&login.to_le_bytes());
    assert_eq!(bytes(&f["input"]), input);
    let out = blake3::keyed_hash(&key, &input);
    assert_eq!(bytes(&f["fingerprint"]), out.as_bytes());
    assert_eq!(tradecast_protocol::account_fingerprint(&key, server, login), *out.as_bytes());
    // The subscriber's DeviceKeys carries it.
    let chain =
        v["chains"].as_array().unwrap().iter().find(|c| c["name"] == "subscriber device").unwrap();
    assert_eq!(chain["records"][0]["body_json"]["account_fingerprint"], f["fingerprint"]);
}

#[test]
fn the_new_kinds_seal_and_open_on_the_private_stream() {
    let v = vectors();
    let sealed = v["sealed"].as_array().unwrap();
    assert_eq!(sealed.len(), 2, "balance operation and summary");
    for s in sealed {
        let kind = check_sealed_vector(s);
        assert_eq!(kind.since_version(), 2);
    }
}

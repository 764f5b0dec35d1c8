//! The v1 test vectors (the compatibility vectors: this crate writes version 2 and still reads
//! and verifies every v1 record): the file matches its generator, and every value in it is re-derived
//! from the keys with the primitive crates alone (ed25519-dalek, x25519-dalek, sha2, blake3,
//! hkdf, chacha20poly1305), the way another implementation would, written from the JSON and
//! protocol.md — not by calling this crate's encoders.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

const FILE: &str = include_str!("../vectors/v1.json");

fn vectors() -> Value {
    serde_json::from_str(FILE).expect("v1.json is JSON")
}

pub(crate) fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("lowercase hex")
}

pub(crate) fn arr<const N: usize>(v: &Value) -> [u8; N] {
    bytes(v).try_into().expect("length")
}

#[test]
fn the_file_is_what_the_generator_prints() {
    assert_eq!(
        FILE,
        tradecast_protocol::vectors::generate_text(),
        "regenerate: cargo run -p tradecast-protocol --bin tradecast-vectors -- v1 > protocol/tests/vectors/v1.json"
    );
}

/// Luhn mod 32 over the RFC 4648 base32 alphabet, written again from the notes.
fn luhn32(digits: &[u8]) -> u8 {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut factor = 2;
    let mut sum = 0;
    for c in digits.iter().rev() {
        let code = ALPHABET.iter().position(|a| a == c).unwrap() as u32;
        let addend = factor * code;
        sum += addend / 32 + addend % 32;
        factor = 3 - factor;
    }
    ALPHABET[((32 - sum % 32) % 32) as usize]
}

#[test]
fn identities_re_derive_from_their_secrets() {
    let v = vectors();
    assert_eq!(v["hash"], "blake3");
    let identities = v["identity"].as_array().unwrap();
    assert!(identities.len() >= 2);
    for id in identities {
        let signing = SigningKey::from_bytes(&arr(&id["ed25519_seed"]));
        let public = signing.verifying_key().to_bytes();
        assert_eq!(public.to_vec(), bytes(&id["ed25519_public"]));
        let secret = x25519_dalek::StaticSecret::from(arr::<32>(&id["x25519_secret"]));
        let x_public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        assert_eq!(x_public.to_vec(), bytes(&id["x25519_public"]));
        let device = Sha256::digest(public)[..20].to_vec();
        assert_eq!(device, bytes(&id["device_id_hex"]));
        let plain = data_encoding::BASE32_NOPAD.encode(&device);
        let text: Vec<String> = plain
            .as_bytes()
            .chunks(8)
            .map(|g| format!("{}{}", String::from_utf8_lossy(g), luhn32(g) as char))
            .collect();
        assert_eq!(text.join("-"), id["device_id_text"].as_str().unwrap());
        let parsed: tradecast_protocol::DeviceId = text.join("-").parse().unwrap();
        assert_eq!(parsed.0.to_vec(), device);
    }
}

pub(crate) fn varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

pub(crate) fn read_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

#[test]
fn records_re_derive_verify_and_chain() {
    let v = vectors();
    let domain = v["record_domain"].as_str().unwrap().as_bytes().to_vec();
    assert_eq!(domain, b"tradecast/record/v1");
    let records = v["records"].as_array().unwrap();
    assert!(records.len() >= 3);
    let mut prev = vec![0u8; 32];
    for (i, r) in records.iter().enumerate() {
        let author_public = arr::<32>(&r["author_public"]);
        let header = bytes(&r["header"]);
        let body = bytes(&r["body"]);
        // The header, field by field.
        let mut pos = 0;
        assert_eq!(header[0], 1, "version");
        assert_eq!(u64::from(header[1]), r["kind"].as_u64().unwrap());
        pos += 2;
        let author = &header[pos..pos + 20];
        pos += 20;
        assert_eq!(author, &Sha256::digest(author_public)[..20]);
        assert_eq!(read_varint(&header, &mut pos), r["stream"].as_u64().unwrap());
        let seq = read_varint(&header, &mut pos);
        assert_eq!(seq, r["seq"].as_u64().unwrap());
        assert_eq!(seq, i as u64 + 1, "seq counts from 1 without gaps");
        let prev_in_header = &header[pos..pos + 32];
        pos += 32;
        let body_hash_in_header = &header[pos..pos + 32];
        pos += 32;
        assert_eq!(header[pos], 0, "not sealed");
        pos += 1;
        let zigzag = read_varint(&header, &mut pos);
        let created = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        assert_eq!(created, r["created_at_ms"].as_i64().unwrap());
        assert_eq!(pos, header.len(), "nothing after created_at_ms");
        // Hashes and the chain.
        assert_eq!(prev_in_header, &prev[..]);
        assert_eq!(bytes(&r["prev_hash"]), prev);
        assert_eq!(body_hash_in_header, blake3::hash(&body).as_bytes());
        assert_eq!(bytes(&r["body_hash"]), blake3::hash(&body).as_bytes());
        let header_hash = blake3::hash(&header).as_bytes().to_vec();
        assert_eq!(bytes(&r["header_hash"]), header_hash);
        // The signature covers the domain tag followed by the header.
        let mut signed = domain.clone();
        signed.extend_from_slice(&header);
        assert_eq!(bytes(&r["signed_bytes"]), signed);
        let key = VerifyingKey::from_bytes(&author_public).unwrap();
        let signature = Signature::from_bytes(&arr(&r["signature"]));
        key.verify_strict(&signed, &signature).expect("signature verifies");
        // The record's layout.
        let mut record = vec![1, header[1]];
        varint(&mut record, header.len() as u64);
        record.extend_from_slice(&header);
        record.extend_from_slice(&signature.to_bytes());
        varint(&mut record, body.len() as u64);
        record.extend_from_slice(&body);
        assert_eq!(bytes(&r["record"]), record);
        // And this crate agrees.
        let decoded = tradecast_protocol::Record::decode(&record).unwrap();
        let crate_key = tradecast_protocol::IdentityKey::from_bytes(&author_public).unwrap();
        decoded.verify(&crate_key).unwrap();
        decoded.body().unwrap();
        prev = header_hash;
    }
}

#[test]
fn the_receipt_verifies_under_its_own_domain() {
    let v = vectors();
    let r = &v["receipt"];
    let signed = bytes(&r["signed_bytes"]);
    let domain = v["receipt_domain"].as_str().unwrap().as_bytes();
    assert!(signed.starts_with(domain));
    let hub = arr::<32>(&r["hub_public"]);
    let fields = &signed[domain.len()..];
    assert_eq!(&fields[..20], &Sha256::digest(hub)[..20], "hub device id");
    assert_eq!(fields[20..52].to_vec(), bytes(&r["header_hash"]));
    assert_eq!(bytes(&r["header_hash"]), bytes(&v["records"][0]["header_hash"]));
    let key = VerifyingKey::from_bytes(&hub).unwrap();
    key.verify_strict(&signed, &Signature::from_bytes(&arr(&r["signature"]))).unwrap();
}

#[test]
fn sealed_bodies_re_derive_open_and_seal_again() {
    let v = vectors();
    let sealed = v["sealed"].as_array().unwrap();
    assert!(!sealed.is_empty());
    for s in sealed {
        check_sealed_vector(s);
    }
}

/// Re-derives one sealed-body vector from its inputs (HKDF stream key, AAD), opens it, seals it
/// again to the same bytes, refuses a changed AAD and decodes the plaintext as its kind; returns
/// the kind. Shared by the v1 and v2 vector files.
pub(crate) fn check_sealed_vector(s: &Value) -> tradecast_protocol::Kind {
    let author = bytes(&s["author_device_id_hex"]);
    let stream = s["stream"].as_u64().unwrap() as u32;
    let seq = s["seq"].as_u64().unwrap();
    let salt = bytes(&s["hkdf_salt"]);
    assert_eq!(salt, b"tradecast/stream-key/v1");
    let mut info = b"tradecast/stream/v1".to_vec();
    info.extend_from_slice(&author);
    info.extend_from_slice(&stream.to_be_bytes());
    assert_eq!(bytes(&s["hkdf_info"]), info);
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), &bytes(&s["x25519_secret"]));
    let mut key = [0u8; 32];
    hk.expand(&info, &mut key).unwrap();
    assert_eq!(bytes(&s["stream_key"]), key);
    let mut aad = author.clone();
    varint(&mut aad, u64::from(stream));
    varint(&mut aad, seq);
    assert_eq!(bytes(&s["aad"]), aad);
    let cipher = XChaCha20Poly1305::new((&key).into());
    let nonce = XNonce::from(arr::<24>(&s["nonce"]));
    let ciphertext = bytes(&s["ciphertext"]);
    let plaintext = cipher.decrypt(&nonce, Payload { msg: &ciphertext, aad: &aad }).expect("opens");
    assert_eq!(bytes(&s["plaintext"]), plaintext);
    let again = cipher.encrypt(&nonce, Payload { msg: &plaintext, aad: &aad }).unwrap();
    assert_eq!(again, ciphertext);
    // The plaintext is the body of its kind, and a changed AAD does not open.
    let kind = tradecast_protocol::Kind::from_u8(s["kind"].as_u64().unwrap() as u8).unwrap();
    tradecast_protocol::Body::decode(kind, &plaintext).unwrap();
    let mut wrong = aad.clone();
    *wrong.last_mut().unwrap() ^= 1;
    assert!(cipher.decrypt(&nonce, Payload { msg: &ciphertext, aad: &wrong }).is_err());
    kind
}

//! The HMAC-SHA256 request and answer signatures of the EA link (`ea-link.md`, Authentication),
//! also used by the hub's signals API. Pure functions: the callers bring the clock and nonces.
//!
//! A request is signed over
//! `method ␊ path ␊ timestamp ␊ nonce ␊ hex(SHA-256(body))` and an answer over
//! `status ␊ request nonce ␊ hex(SHA-256(body))`, both with the ASCII bytes of the secret as the
//! HMAC key and lowercase hex everywhere. The verifier checks, in this order: the headers are
//! present and well formed, the timestamp is fresh (±30 s of `now_ms`, not older than the
//! verifier's `start_ms`), the signature matches (constant time). Replay is the caller's memory:
//! [`NonceCache`] is a bounded, clock-free set of the nonces seen in the freshness window; record
//! a nonce only *after* the signature verified, so that an unsigned request cannot burn one.
//!
//! The unknown-key check is the caller's too (it owns the key store); [`AuthError::UnknownKey`]
//! exists so that every refusal maps to one problem code.

use std::collections::{BTreeSet, HashSet};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The key id header.
pub const HEADER_KEY: &str = "X-Tradecast-Key";
/// The timestamp header: unix ms UTC, decimal digits.
pub const HEADER_TIMESTAMP: &str = "X-Tradecast-Timestamp";
/// The nonce header: 16–64 characters of `[A-Za-z0-9_-]`.
pub const HEADER_NONCE: &str = "X-Tradecast-Nonce";
/// The signature header, on requests and on answers: 64 lowercase hex digits.
pub const HEADER_SIGNATURE: &str = "X-Tradecast-Signature";

/// How far a request timestamp may be from the verifier's clock, either way.
pub const FRESHNESS_MS: i64 = 30_000;
/// Shortest nonce accepted.
pub const NONCE_LEN_MIN: usize = 16;
/// Longest nonce accepted.
pub const NONCE_LEN_MAX: usize = 64;
/// Longest timestamp header accepted (an i64 of unix ms has at most 19 digits).
const TIMESTAMP_LEN_MAX: usize = 19;
/// Length of a hex HMAC-SHA256.
const SIGNATURE_HEX_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a request or an answer was refused. Every variant maps to a problem code
/// ([`AuthError::code`]) the node puts in its 401 problem+json body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A required header is absent (the name is the header's).
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    /// The timestamp header is not 1–19 decimal digits.
    #[error("the timestamp header is not unix milliseconds in decimal")]
    MalformedTimestamp,
    /// The nonce is not 16–64 characters of `[A-Za-z0-9_-]`.
    #[error("the nonce is not 16-64 characters of [A-Za-z0-9_-]")]
    MalformedNonce,
    /// The signature header is not 64 lowercase hex digits.
    #[error("the signature is not 64 lowercase hex digits")]
    MalformedSignature,
    /// The timestamp is more than 30 s behind the verifier's clock.
    #[error("the timestamp is more than 30 s old")]
    Stale,
    /// The timestamp is more than 30 s ahead of the verifier's clock.
    #[error("the timestamp is more than 30 s in the future")]
    Future,
    /// The timestamp is older than the verifier's start (a replay across a restart).
    #[error("the timestamp is older than the verifier's start")]
    BeforeStart,
    /// The nonce was already seen within the freshness window.
    #[error("the nonce was already used")]
    Replayed,
    /// The key id is not known to the verifier.
    #[error("unknown key")]
    UnknownKey,
    /// The signature does not match.
    #[error("wrong signature")]
    BadSignature,
    /// The nonce cache is full of live nonces; the request is refused rather than remembered
    /// badly (a bounded memory, never an unbounded one).
    #[error("too many requests in the freshness window")]
    NonceCacheFull,
}

impl AuthError {
    /// The stable problem code for this refusal (`type`/`code` of the 401 problem+json body).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingHeader(_) => "missing-header",
            AuthError::MalformedTimestamp => "malformed-timestamp",
            AuthError::MalformedNonce => "malformed-nonce",
            AuthError::MalformedSignature => "malformed-signature",
            AuthError::Stale => "stale-timestamp",
            AuthError::Future => "future-timestamp",
            AuthError::BeforeStart => "timestamp-before-start",
            AuthError::Replayed => "replayed-nonce",
            AuthError::UnknownKey => "unknown-key",
            AuthError::BadSignature => "bad-signature",
            AuthError::NonceCacheFull => "nonce-cache-full",
        }
    }
}

/// Lowercase hex of SHA-256 of the body (the empty body hashes the empty string).
pub fn body_hash_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The exact request string to sign: `METHOD␊path␊timestamp␊nonce␊hex(sha256(body))`.
///
/// `method` is upper-cased here so that a caller passing `post` signs what the verifier sees;
/// `path` is the path with its query and without the host, byte for byte as sent.
pub fn request_string_to_sign(
    method: &str,
    path: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path,
        timestamp,
        nonce,
        body_hash_hex(body)
    )
}

/// The exact answer string to sign: `status␊request nonce␊hex(sha256(body))`.
pub fn response_string_to_sign(status: u16, request_nonce: &str, body: &[u8]) -> String {
    format!("{}\n{}\n{}", status, request_nonce, body_hash_hex(body))
}

fn mac(secret: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts a key of any length (long keys are hashed, short ones padded), so
    // `new_from_slice` cannot fail for HMAC-SHA256; the fallback keeps this panic-free anyway.
    let Ok(mut m) = HmacSha256::new_from_slice(secret) else {
        return [0u8; 32];
    };
    m.update(message);
    let out = m.finalize().into_bytes();
    let mut a = [0u8; 32];
    a.copy_from_slice(&out);
    a
}

/// The lowercase hex request signature.
pub fn sign_request(
    secret: &[u8],
    method: &str,
    path: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let s = request_string_to_sign(method, path, timestamp, nonce, body);
    hex::encode(mac(secret, s.as_bytes()))
}

/// The lowercase hex answer signature.
pub fn sign_response(secret: &[u8], status: u16, request_nonce: &str, body: &[u8]) -> String {
    let s = response_string_to_sign(status, request_nonce, body);
    hex::encode(mac(secret, s.as_bytes()))
}

/// Checks a nonce's shape: 16–64 characters of `[A-Za-z0-9_-]`.
pub fn check_nonce(nonce: &str) -> Result<(), AuthError> {
    let ok_len = (NONCE_LEN_MIN..=NONCE_LEN_MAX).contains(&nonce.len());
    let ok_chars = nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok_len && ok_chars { Ok(()) } else { Err(AuthError::MalformedNonce) }
}

/// Parses the timestamp header: 1–19 ASCII digits, unix ms. No sign, no spaces.
pub fn parse_timestamp(timestamp: &str) -> Result<i64, AuthError> {
    if timestamp.is_empty()
        || timestamp.len() > TIMESTAMP_LEN_MAX
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(AuthError::MalformedTimestamp);
    }
    timestamp.parse::<i64>().map_err(|_| AuthError::MalformedTimestamp)
}

/// The freshness rule: within ±[`FRESHNESS_MS`] of `now_ms` and not before `start_ms` (the
/// verifier's own start, which makes an in-memory nonce cache safe across restarts).
pub fn check_freshness(timestamp_ms: i64, now_ms: i64, start_ms: i64) -> Result<(), AuthError> {
    if timestamp_ms < start_ms {
        return Err(AuthError::BeforeStart);
    }
    if timestamp_ms < now_ms.saturating_sub(FRESHNESS_MS) {
        return Err(AuthError::Stale);
    }
    if timestamp_ms > now_ms.saturating_add(FRESHNESS_MS) {
        return Err(AuthError::Future);
    }
    Ok(())
}

fn decode_signature(signature: &str) -> Result<[u8; 32], AuthError> {
    if signature.len() != SIGNATURE_HEX_LEN
        || !signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(AuthError::MalformedSignature);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(signature, &mut out).map_err(|_| AuthError::MalformedSignature)?;
    Ok(out)
}

fn check_mac(secret: &[u8], message: &[u8], signature: &str) -> Result<(), AuthError> {
    let given = decode_signature(signature)?;
    let expected = mac(secret, message);
    if bool::from(expected.ct_eq(&given)) { Ok(()) } else { Err(AuthError::BadSignature) }
}

/// The four authentication headers of a request, as received (any may be missing).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeaders<'a> {
    /// `X-Tradecast-Key`.
    pub key: Option<&'a str>,
    /// `X-Tradecast-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `X-Tradecast-Nonce`.
    pub nonce: Option<&'a str>,
    /// `X-Tradecast-Signature`.
    pub signature: Option<&'a str>,
}

/// The well-formed headers of a request, before the key is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedHeaders<'a> {
    /// The key id, to look the secret up with.
    pub key_id: &'a str,
    /// The timestamp header text (signed as is).
    pub timestamp: &'a str,
    /// The timestamp as unix ms.
    pub timestamp_ms: i64,
    /// The nonce, shape-checked.
    pub nonce: &'a str,
    /// The signature header text (shape is checked at verification).
    pub signature: &'a str,
}

impl<'a> RequestHeaders<'a> {
    /// Checks that all four headers are present and the timestamp and nonce well formed.
    pub fn parse(&self) -> Result<ParsedHeaders<'a>, AuthError> {
        let key_id = self.key.ok_or(AuthError::MissingHeader(HEADER_KEY))?;
        let timestamp = self.timestamp.ok_or(AuthError::MissingHeader(HEADER_TIMESTAMP))?;
        let nonce = self.nonce.ok_or(AuthError::MissingHeader(HEADER_NONCE))?;
        let signature = self.signature.ok_or(AuthError::MissingHeader(HEADER_SIGNATURE))?;
        if key_id.is_empty() {
            return Err(AuthError::MissingHeader(HEADER_KEY));
        }
        let timestamp_ms = parse_timestamp(timestamp)?;
        check_nonce(nonce)?;
        Ok(ParsedHeaders { key_id, timestamp, timestamp_ms, nonce, signature })
    }
}

/// Verifies a request whose key id the caller has already resolved to `secret`: freshness, then
/// the signature in constant time. The caller then records the nonce in its [`NonceCache`]
/// (after, never before, so an unsigned request cannot burn a nonce).
pub fn verify_request(
    secret: &[u8],
    headers: &ParsedHeaders<'_>,
    method: &str,
    path: &str,
    body: &[u8],
    now_ms: i64,
    start_ms: i64,
) -> Result<(), AuthError> {
    check_freshness(headers.timestamp_ms, now_ms, start_ms)?;
    let s = request_string_to_sign(method, path, headers.timestamp, headers.nonce, body);
    check_mac(secret, s.as_bytes(), headers.signature)
}

/// Verifies an answer's signature (the EA's side). `signature` is `None` when the header is
/// missing: that answer is ignored like a wrongly signed one.
pub fn verify_response(
    secret: &[u8],
    status: u16,
    request_nonce: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), AuthError> {
    let signature = signature.ok_or(AuthError::MissingHeader(HEADER_SIGNATURE))?;
    let s = response_string_to_sign(status, request_nonce, body);
    check_mac(secret, s.as_bytes(), signature)
}

/// The nonces seen within the freshness window, in memory, bounded. Clock-free: the caller
/// passes `now_ms`. A nonce is kept until its request's timestamp falls out of the window
/// (after that the freshness rule refuses the request anyway).
#[derive(Debug)]
pub struct NonceCache {
    seen: HashSet<String>,
    by_time: BTreeSet<(i64, String)>,
    capacity: usize,
}

impl NonceCache {
    /// A cache that remembers at most `capacity` live nonces.
    pub fn new(capacity: usize) -> Self {
        NonceCache { seen: HashSet::new(), by_time: BTreeSet::new(), capacity }
    }

    /// Number of nonces remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(FRESHNESS_MS);
        while let Some(first) = self.by_time.first() {
            if first.0 >= horizon {
                break;
            }
            if let Some((_, nonce)) = self.by_time.pop_first() {
                self.seen.remove(&nonce);
            }
        }
    }

    /// Records `nonce` (of a request stamped `timestamp_ms`), refusing it if seen in the window.
    pub fn check_and_insert(
        &mut self,
        nonce: &str,
        timestamp_ms: i64,
        now_ms: i64,
    ) -> Result<(), AuthError> {
        self.expire(now_ms);
        if self.seen.contains(nonce) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::NonceCacheFull);
        }
        self.seen.insert(nonce.to_owned());
        self.by_time.insert((timestamp_ms, nonce.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"tcs_3q2XbW9pLk7vN1mZ";
    const NONCE: &str = "n0nce_ABCDEFGHIJ-123";

    fn headers<'a>(ts: &'a str, sig: &'a str) -> ParsedHeaders<'a> {
        RequestHeaders {
            key: Some("key1"),
            timestamp: Some(ts),
            nonce: Some(NONCE),
            signature: Some(sig),
        }
        .parse()
        .expect("well-formed test headers")
    }

    #[test]
    fn string_to_sign_is_exact() {
        let s = request_string_to_sign("post", "/ea/v1/poll?x=1", "1700000000000", NONCE, b"");
        assert_eq!(
            s,
            "POST\n/ea/v1/poll?x=1\n1700000000000\nn0nce_ABCDEFGHIJ-123\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let r = response_string_to_sign(200, NONCE, b"{}");
        assert_eq!(
            r,
            "200\nn0nce_ABCDEFGHIJ-123\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    /// RFC 4231 test case 2 checks the HMAC construction itself.
    #[test]
    fn hmac_matches_rfc4231() {
        let out = hex::encode(mac(b"Jefe", b"what do ya want for nothing?"));
        assert_eq!(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn request_roundtrip_and_tamper() {
        let ts = "1700000000000";
        let body = br#"{"wait_ms":500}"#;
        let sig = sign_request(SECRET, "POST", "/ea/v1/poll", ts, NONCE, body);
        assert_eq!(sig.len(), 64);
        assert!(sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let h = headers(ts, &sig);
        let now = 1_700_000_000_000;
        assert_eq!(verify_request(SECRET, &h, "POST", "/ea/v1/poll", body, now, 0), Ok(()));
        let check = |secret: &[u8], path: &str, body: &[u8], expect: AuthError| {
            assert_eq!(verify_request(secret, &h, "POST", path, body, now, 0), Err(expect));
        };
        check(b"other", "/ea/v1/poll", body, AuthError::BadSignature);
        check(SECRET, "/ea/v1/ack", body, AuthError::BadSignature);
        check(SECRET, "/ea/v1/poll", b"{\"wait_ms\":501}", AuthError::BadSignature);
        assert_eq!(
            verify_request(SECRET, &h, "GET", "/ea/v1/poll", body, now, 0),
            Err(AuthError::BadSignature)
        );
        let upper = sig.to_ascii_uppercase();
        let hu = headers(ts, &upper);
        assert_eq!(
            verify_request(SECRET, &hu, "POST", "/ea/v1/poll", body, now, 0),
            Err(AuthError::MalformedSignature)
        );
        let short = &sig[..63];
        let hs = headers(ts, short);
        assert_eq!(
            verify_request(SECRET, &hs, "POST", "/ea/v1/poll", body, now, 0),
            Err(AuthError::MalformedSignature)
        );
    }

    #[test]
    fn freshness_rules() {
        let check = |ts: i64, now: i64, start: i64, expect: Result<(), AuthError>| {
            assert_eq!(check_freshness(ts, now, start), expect, "ts={ts} now={now} start={start}");
        };
        check(100_000, 100_000, 0, Ok(()));
        check(70_000, 100_000, 0, Ok(()));
        check(69_999, 100_000, 0, Err(AuthError::Stale));
        check(130_000, 100_000, 0, Ok(()));
        check(130_001, 100_000, 0, Err(AuthError::Future));
        check(99_999, 100_000, 100_000, Err(AuthError::BeforeStart));
        check(i64::MAX, i64::MAX, 0, Ok(()));
        check(i64::MIN, 0, i64::MIN, Err(AuthError::Stale));
    }

    #[test]
    fn header_shapes() {
        let check = |h: RequestHeaders<'_>, expect: Option<AuthError>| {
            assert_eq!(h.parse().err(), expect);
        };
        let good = RequestHeaders {
            key: Some("k"),
            timestamp: Some("1"),
            nonce: Some("abcdefghijklmnop"),
            signature: Some("00"),
        };
        check(good, None);
        check(RequestHeaders { key: None, ..good }, Some(AuthError::MissingHeader(HEADER_KEY)));
        check(RequestHeaders { key: Some(""), ..good }, Some(AuthError::MissingHeader(HEADER_KEY)));
        check(
            RequestHeaders { timestamp: None, ..good },
            Some(AuthError::MissingHeader(HEADER_TIMESTAMP)),
        );
        check(RequestHeaders { nonce: None, ..good }, Some(AuthError::MissingHeader(HEADER_NONCE)));
        check(
            RequestHeaders { signature: None, ..good },
            Some(AuthError::MissingHeader(HEADER_SIGNATURE)),
        );
        for ts in ["", "-1", "+1", " 1", "1.5", "12345678901234567890", "1e3", "١٢"] {
            check(
                RequestHeaders { timestamp: Some(ts), ..good },
                Some(AuthError::MalformedTimestamp),
            );
        }
        for n in [
            "short",
            "abcdefghijklmno",
            "abcdefghijklmnop!",
            "abcdefghijklmnop ",
            "äbcdefghijklmnopq",
            &"a".repeat(65),
        ] {
            check(RequestHeaders { nonce: Some(n), ..good }, Some(AuthError::MalformedNonce));
        }
        for n in ["abcdefghijklmnop", "A-_0123456789xyz", &"z".repeat(64)] {
            check(RequestHeaders { nonce: Some(n), ..good }, None);
        }
    }

    #[test]
    fn response_roundtrip() {
        let body = br#"{"ok":true}"#;
        let sig = sign_response(SECRET, 200, NONCE, body);
        assert_eq!(verify_response(SECRET, 200, NONCE, body, Some(&sig)), Ok(()));
        let check = |status, nonce, body: &[u8], sig: Option<&str>, expect| {
            assert_eq!(verify_response(SECRET, status, nonce, body, sig), Err(expect));
        };
        check(201, NONCE, body, Some(&sig), AuthError::BadSignature);
        check(200, "another_nonce_123456", body, Some(&sig), AuthError::BadSignature);
        check(200, NONCE, b"{\"ok\":false}", Some(&sig), AuthError::BadSignature);
        check(200, NONCE, body, None, AuthError::MissingHeader(HEADER_SIGNATURE));
        check(200, NONCE, body, Some("zz"), AuthError::MalformedSignature);
    }

    #[test]
    fn nonce_cache_window_and_bound() {
        let mut c = NonceCache::new(3);
        assert_eq!(c.check_and_insert("aaaaaaaaaaaaaaaa", 1_000, 1_000), Ok(()));
        assert_eq!(c.check_and_insert("aaaaaaaaaaaaaaaa", 1_000, 2_000), Err(AuthError::Replayed));
        assert_eq!(c.check_and_insert("bbbbbbbbbbbbbbbb", 2_000, 2_000), Ok(()));
        assert_eq!(c.check_and_insert("cccccccccccccccc", 3_000, 3_000), Ok(()));
        assert_eq!(
            c.check_and_insert("dddddddddddddddd", 3_000, 3_000),
            Err(AuthError::NonceCacheFull)
        );
        // 31 s later the first one has left the window and its slot is free again.
        assert_eq!(c.check_and_insert("dddddddddddddddd", 31_500, 31_500), Ok(()));
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.check_and_insert("aaaaaaaaaaaaaaaa", 31_500, 31_500),
            Err(AuthError::NonceCacheFull)
        );
        assert_eq!(c.check_and_insert("aaaaaaaaaaaaaaaa", 40_000, 40_000), Ok(()));
        assert!(!c.is_empty());
    }

    #[test]
    fn every_error_has_a_distinct_code() {
        let all = [
            AuthError::MissingHeader(HEADER_KEY),
            AuthError::MalformedTimestamp,
            AuthError::MalformedNonce,
            AuthError::MalformedSignature,
            AuthError::Stale,
            AuthError::Future,
            AuthError::BeforeStart,
            AuthError::Replayed,
            AuthError::UnknownKey,
            AuthError::BadSignature,
            AuthError::NonceCacheFull,
        ];
        let codes: HashSet<_> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Header parsing and verification never panic on any header text.
            #[test]
            fn verify_never_panics(ts in ".{0,24}", nonce in ".{0,80}", sig in ".{0,80}",
                                   body in proptest::collection::vec(any::<u8>(), 0..64)) {
                let h = RequestHeaders { key: Some("k"), timestamp: Some(&ts), nonce: Some(&nonce), signature: Some(&sig) };
                if let Ok(p) = h.parse() {
                    let _ = verify_request(b"s", &p, "POST", "/ea/v1/poll", &body, p.timestamp_ms, 0);
                }
                let _ = verify_response(b"s", 200, &nonce, &body, Some(&sig));
            }

            /// What one side signs the other verifies; any other body does not.
            #[test]
            fn sign_then_verify(secret in proptest::collection::vec(any::<u8>(), 0..100),
                                body in proptest::collection::vec(any::<u8>(), 0..200),
                                ts in 0i64..4_000_000_000_000, query in "[a-z=&]{0,12}") {
                let path = format!("/ea/v1/state?{query}");
                let tss = ts.to_string();
                let nonce = "abcdefghijklmnop_-";
                let sig = sign_request(&secret, "POST", &path, &tss, nonce, &body);
                let h = RequestHeaders { key: Some("k"), timestamp: Some(&tss), nonce: Some(nonce), signature: Some(&sig) };
                let p = h.parse().expect("well formed");
                prop_assert_eq!(verify_request(&secret, &p, "POST", &path, &body, ts, 0), Ok(()));
                let mut other = body.clone();
                other.push(0);
                prop_assert_eq!(verify_request(&secret, &p, "POST", &path, &other, ts, 0), Err(AuthError::BadSignature));
                let rs = sign_response(&secret, 200, nonce, &body);
                prop_assert_eq!(verify_response(&secret, 200, nonce, &body, Some(&rs)), Ok(()));
            }
        }
    }
}

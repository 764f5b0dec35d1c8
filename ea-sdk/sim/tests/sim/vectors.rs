//! The shared HMAC vectors (`ea-sdk/vectors/hmac*.json`, produced by an independent HMAC
//! implementation) checked against the verifier every node uses and the sim's own signer, byte
//! for byte on the wire.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use serde::Deserialize;
use tradecast_protocol::link_auth::{self, AuthError, RequestHeaders};
use tradecast_sim::link::{LinkClient, Tamper};

#[derive(Debug, Deserialize)]
struct RequestVector {
    method: String,
    path: String,
    timestamp: String,
    nonce: String,
    body: String,
    secret: String,
    signature: String,
}

#[derive(Debug, Deserialize)]
struct ResponseVector {
    status: u16,
    nonce: String,
    body: String,
    secret: String,
    signature: String,
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("vectors")
}

fn load<T: serde::de::DeserializeOwned>(name: &str) -> Vec<T> {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn request_vectors_cover_the_required_cases() {
    let v: Vec<RequestVector> = load("hmac.json");
    assert!(v.len() >= 5);
    assert!(v.iter().any(|x| x.body.is_empty()), "one with an empty body");
    assert!(v.iter().any(|x| !x.body.is_ascii()), "one with non-ASCII text");
    assert!(v.iter().any(|x| x.path.contains('?')), "a path with a query");
    assert!(v.iter().any(|x| !x.path.contains('?')), "a path without a query");
    let r: Vec<ResponseVector> = load("hmac-response.json");
    assert!(r.len() >= 3);
}

#[test]
fn request_vectors_verify_and_sign() {
    for v in load::<RequestVector>("hmac.json") {
        let ts: i64 = v.timestamp.parse().expect("vector timestamp");
        assert_eq!(
            link_auth::sign_request(
                v.secret.as_bytes(),
                &v.method,
                &v.path,
                &v.timestamp,
                &v.nonce,
                v.body.as_bytes()
            ),
            v.signature,
            "{v:?}"
        );
        let headers = RequestHeaders {
            key: Some("k"),
            timestamp: Some(&v.timestamp),
            nonce: Some(&v.nonce),
            signature: Some(&v.signature),
        };
        let parsed = headers.parse().expect("vector headers are well formed");
        assert_eq!(
            link_auth::verify_request(
                v.secret.as_bytes(),
                &parsed,
                &v.method,
                &v.path,
                v.body.as_bytes(),
                ts,
                0
            ),
            Ok(())
        );
        // One flipped body byte, one other secret: refused.
        let mut body = v.body.clone().into_bytes();
        body.push(b' ');
        assert_eq!(
            link_auth::verify_request(
                v.secret.as_bytes(),
                &parsed,
                &v.method,
                &v.path,
                &body,
                ts,
                0
            ),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            link_auth::verify_request(
                b"other",
                &parsed,
                &v.method,
                &v.path,
                v.body.as_bytes(),
                ts,
                0
            ),
            Err(AuthError::BadSignature)
        );
    }
}

#[test]
fn response_vectors_verify_and_sign() {
    for v in load::<ResponseVector>("hmac-response.json") {
        assert_eq!(
            link_auth::sign_response(v.secret.as_bytes(), v.status, &v.nonce, v.body.as_bytes()),
            v.signature
        );
        assert_eq!(
            link_auth::verify_response(
                v.secret.as_bytes(),
                v.status,
                &v.nonce,
                v.body.as_bytes(),
                Some(&v.signature)
            ),
            Ok(())
        );
        assert_eq!(
            link_auth::verify_response(
                v.secret.as_bytes(),
                v.status + 1,
                &v.nonce,
                v.body.as_bytes(),
                Some(&v.signature)
            ),
            Err(AuthError::BadSignature)
        );
    }
}

type Seen = Arc<Mutex<Vec<(String, HeaderMap, Vec<u8>)>>>;

/// The sim's client, on the wire: the headers and body a server receives match the vectors.
#[tokio::test]
async fn the_sims_signer_sends_the_vectors_bytes() {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let seen = s2.clone();
        async move {
            let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
            seen.lock().expect("lock").push((path, headers, body.to_vec()));
            "{}"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let vectors = load::<RequestVector>("hmac.json");
    for v in &vectors {
        let client =
            LinkClient::new(&format!("http://{addr}"), "key-1", &v.secret).expect("client");
        let t = Tamper {
            timestamp: Some(v.timestamp.clone()),
            nonce: Some(v.nonce.clone()),
            ..Tamper::default()
        };
        client
            .send_raw(&v.path, v.body.as_bytes(), Duration::from_secs(5), &t)
            .await
            .expect("local server answers");
    }
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), vectors.len());
    for (v, (path, headers, body)) in vectors.iter().zip(seen.iter()) {
        let h = |n: &str| headers.get(n).and_then(|x| x.to_str().ok()).map(str::to_owned);
        assert_eq!(path, &v.path);
        assert_eq!(body, v.body.as_bytes(), "no trailing NUL, UTF-8 as is");
        assert_eq!(h(link_auth::HEADER_SIGNATURE).as_deref(), Some(v.signature.as_str()));
        assert_eq!(h(link_auth::HEADER_TIMESTAMP).as_deref(), Some(v.timestamp.as_str()));
        assert_eq!(h(link_auth::HEADER_NONCE).as_deref(), Some(v.nonce.as_str()));
        assert_eq!(h(link_auth::HEADER_KEY).as_deref(), Some("key-1"));
    }
    server.abort();
}

#[test]
fn fresh_nonces_are_well_formed_and_unique() {
    let c = LinkClient::new("http://127.0.0.1:9", "k", "s").expect("client");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1_000 {
        let n = c.nonce();
        assert_eq!(link_auth::check_nonce(&n), Ok(()));
        assert!(seen.insert(n));
    }
}

fn mql5_sources() -> String {
    let dir = vectors_dir().join("..").join("mql5");
    let mut text = std::fs::read_to_string(dir.join("TradecastEA.mq5")).expect("TradecastEA.mq5");
    for inc in ["Crypto.mqh", "Json.mqh", "Link.mqh", "Trade.mqh"] {
        text.push_str(&std::fs::read_to_string(dir.join("Tradecast").join(inc)).expect("include"));
    }
    text
}

/// The EA refuses to start unless its HMAC reproduces these vectors: keep the two in step.
#[test]
fn the_eas_self_test_uses_the_shared_vectors() {
    let src = std::fs::read_to_string(
        vectors_dir().join("..").join("mql5").join("Tradecast").join("Crypto.mqh"),
    )
    .expect("Crypto.mqh");
    let req = load::<RequestVector>("hmac.json");
    let resp = load::<ResponseVector>("hmac-response.json");
    // The last request vector has a key longer than the 64-byte HMAC block (issue 23: the
    // self-test never exercised one).
    let long = req.last().expect("vectors");
    assert!(long.secret.len() > 64 && src.contains(long.secret.as_str()));
    for sig in [&req[0].signature, &req[1].signature, &resp[0].signature, &long.signature] {
        assert!(src.contains(sig.as_str()), "Crypto.mqh's self-test lacks {sig}");
    }
}

/// Issue 23, item 5: some builds' `CryptEncode` refuse zero-length data, so `TcSha256` answers
/// an empty input (every empty body, and the self-test's) with the known digest before calling
/// it. The constant in Crypto.mqh must be SHA-256 of nothing.
#[test]
fn the_eas_sha256_answers_an_empty_input_with_the_known_digest() {
    let src = std::fs::read_to_string(
        vectors_dir().join("..").join("mql5").join("Tradecast").join("Crypto.mqh"),
    )
    .expect("Crypto.mqh");
    let decl = src.find("TC_SHA256_EMPTY[32] = {").expect("Crypto.mqh defines TC_SHA256_EMPTY");
    let body = &src[decl..];
    let list = &body[body.find('{').expect("{") + 1..body.find('}').expect("}")];
    let bytes: Vec<u8> = list
        .split(',')
        .map(|b| u8::from_str_radix(b.trim().trim_start_matches("0x"), 16).expect("a hex byte"))
        .collect();
    assert_eq!(bytes, sha256(b""), "TC_SHA256_EMPTY is not SHA-256 of the empty input");
    let f = src.find("bool TcSha256(").expect("TcSha256");
    let f = &src[f..];
    let guard = f.find("ArraySize(data) == 0").expect("TcSha256 checks for an empty input");
    let crypt = f.find("CryptEncode(").expect("TcSha256 calls CryptEncode");
    assert!(guard < crypt, "the empty-input answer must come before CryptEncode");
    assert!(f[guard..crypt].contains("TC_SHA256_EMPTY"), "the empty input gets the constant");
}

/// Every MQL5 function the README's rule table names is defined in the EA's sources, so the
/// table cannot point a reviewer at something that is not there.
#[test]
fn the_readme_table_names_only_functions_that_exist() {
    let readme =
        std::fs::read_to_string(vectors_dir().join("..").join("README.md")).expect("README");
    let src = mql5_sources();
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("## Every rule of ea-link.md"))
        .take_while(|l| !l.starts_with("## tradecast-sim"))
        .filter(|l| l.starts_with("| "))
        .collect();
    assert!(table.len() >= 46, "the table has {} rows", table.len());
    let mut named = 0;
    for line in table {
        for (i, token) in line.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let first = token.split("::").next().unwrap_or(token);
            let is_fn =
                (first.starts_with("Tc") || first.starts_with("CTc") || first.starts_with("On"))
                    && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !is_fn {
                continue;
            }
            for name in token.split("::") {
                named += 1;
                let defined = src.lines().any(|l| is_definition(l, name));
                assert!(defined, "README names `{token}`, which the MQL5 sources do not define");
            }
        }
    }
    assert!(named >= 40, "only {named} functions named");
}

/// Whether `line` defines `name`: `type [*]name(` (a return type, no keyword, not a call), or
/// `class name` / `struct name`.
fn is_definition(line: &str, name: &str) -> bool {
    let l = line.trim();
    if l.starts_with(&format!("class {name}")) || l.starts_with(&format!("struct {name}")) {
        return true;
    }
    let Some(at) = l.find(&format!("{name}(")) else { return false };
    let prefix = l[..at].trim_end_matches(['*', '&', ' ']);
    let before_ok = l[..at].chars().last().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
    let type_like = !prefix.is_empty()
        && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '*');
    let keyword = ["return", "if", "else", "while", "for", "switch", "case", "delete", "new"]
        .iter()
        .any(|k| prefix.split_whitespace().next() == Some(*k));
    before_ok && type_like && !keyword && !l.ends_with(';')
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    unhex(&link_auth::body_hash_hex(bytes))
}

/// `TcHmacSha256` of Crypto.mqh step by step (64-byte block, longer keys hashed first, zero
/// padding, 0x36/0x5c pads) on SHA-256 alone, as the EA builds it on `CryptEncode`.
fn hmac_as_the_ea_builds_it(key: &[u8], msg: &[u8]) -> String {
    let mut k = if key.len() > 64 { sha256(key) } else { key.to_vec() };
    k.resize(64, 0);
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend(sha256(&inner));
    link_auth::body_hash_hex(&outer)
}

#[test]
fn the_eas_hmac_construction_reproduces_every_vector() {
    let reqs = load::<RequestVector>("hmac.json");
    assert!(
        reqs.iter().any(|v| v.secret.len() > 64),
        "one vector must exercise a key longer than the block"
    );
    for v in reqs {
        let msg = link_auth::request_string_to_sign(
            &v.method,
            &v.path,
            &v.timestamp,
            &v.nonce,
            v.body.as_bytes(),
        );
        assert_eq!(
            hmac_as_the_ea_builds_it(v.secret.as_bytes(), msg.as_bytes()),
            v.signature,
            "{v:?}"
        );
    }
    for v in load::<ResponseVector>("hmac-response.json") {
        let msg = link_auth::response_string_to_sign(v.status, &v.nonce, v.body.as_bytes());
        assert_eq!(hmac_as_the_ea_builds_it(v.secret.as_bytes(), msg.as_bytes()), v.signature);
    }
}

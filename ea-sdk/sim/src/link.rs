//! The EA side of the link's transport: signed POSTs to the node, answers whose signature is
//! checked before anything in them is believed (`ea-link.md`, Authentication). The same bytes as
//! the MQL5 EA's `TcWebRequest`: the four `X-Tradecast-*` headers, the body without a trailing
//! NUL, a timeout of `wait_ms + 2 s` for polls.
//!
//! [`LinkClient::send_raw`] also lets the conformance suite send what an EA must never send
//! (stale stamps, replayed nonces, wrong signatures, malformed bodies).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tradecast_protocol::ea::{self, BodyError, Call, Problem};
use tradecast_protocol::link_auth::{
    self, HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};

use crate::feed::Rng;

/// The wall clock as the EA reads it (`TimeGMT()`), unix ms.
pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Why a call produced no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// No answer: refused connection, reset, or the timeout passed.
    #[error("no answer from the node: {0}")]
    Transport(String),
    /// The answer had no signature: ignored, it may come from whatever grabbed the port.
    #[error("unsigned answer (status {0}) ignored")]
    Unsigned(u16),
    /// An unsigned 401 `unknown-key`: the node cannot sign for a key it does not know. Nothing
    /// in it is acted on (it is unsigned); only the journal names the likely cause.
    #[error(
        "the node does not know the key id {0:?} (an unsigned 401 unknown-key: a node cannot \
         sign for a key it does not know). Check InpKeyId against the key id `ea-key new` \
         printed for this node's data dir"
    )]
    UnknownKey(String),
    /// The answer's signature is wrong: ignored.
    #[error("wrongly signed answer (status {0}) ignored")]
    BadSignature(u16),
    /// A signed refusal (4xx/5xx) with its problem body if it had one.
    #[error("node answered {status}: {}", problem.as_ref().map(|p| p.code.as_str()).unwrap_or("no problem body"))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem+json body.
        problem: Option<Box<Problem>>,
    },
    /// A signed 200 whose body does not decode.
    #[error("answer body: {0}")]
    Body(#[from] BodyError),
    /// The EA's inputs are refused at start (`OnInit` answers `INIT_PARAMETERS_INCORRECT`).
    #[error("the EA's inputs are refused: {0}")]
    Inputs(String),
}

impl LinkError {
    /// The problem code of a signed refusal, if that is what this is.
    pub fn problem_code(&self) -> Option<&str> {
        match self {
            LinkError::Refused { problem: Some(p), .. } => Some(&p.code),
            _ => None,
        }
    }
}

/// What the conformance suite may change in a request (all `None`: a correct request).
#[derive(Debug, Clone, Default)]
pub struct Tamper {
    /// Send this timestamp header instead of the wall clock's.
    pub timestamp: Option<String>,
    /// Send this nonce instead of a fresh one.
    pub nonce: Option<String>,
    /// Send this signature instead of the right one.
    pub signature: Option<String>,
    /// Send this key id.
    pub key_id: Option<String>,
    /// Sign with this secret.
    pub secret: Option<Vec<u8>>,
    /// Leave the four headers out.
    pub unsigned: bool,
}

/// A raw answer, its signature already checked.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Whether the answer's signature verified against our secret and nonce.
    pub signature_ok: bool,
    /// Whether the answer carried a signature header at all.
    pub signed: bool,
    /// The nonce the request carried.
    pub nonce: String,
    /// The answer's `Content-Type`.
    pub content_type: Option<String>,
}

/// A signed client for one EA install (key id + secret).
#[derive(Debug)]
pub struct LinkClient {
    http: reqwest::Client,
    base: String,
    key_id: String,
    secret: Vec<u8>,
    counter: AtomicU64,
    seed: u64,
}

impl LinkClient {
    /// A client for the node at `base_url` (`http://127.0.0.1:7341`).
    pub fn new(base_url: &str, key_id: &str, secret: &str) -> Result<LinkClient, LinkError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(2)
            .build()
            .map_err(|e| LinkError::Transport(e.to_string()))?;
        Ok(LinkClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            key_id: key_id.to_owned(),
            secret: secret.as_bytes().to_vec(),
            counter: AtomicU64::new(0),
            seed: wall_ms() as u64 ^ u64::from(std::process::id()).rotate_left(32),
        })
    }

    /// A fresh nonce: 24 characters of `[0-9a-f]`, unique per client and process.
    pub fn nonce(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng::new(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        format!("{:016x}{:08x}", rng.next_u64(), n as u32)
    }

    /// POSTs `body` to `path`, signed (or tampered as asked), and checks the answer's signature.
    pub async fn send_raw(
        &self,
        path: &str,
        body: &[u8],
        timeout: Duration,
        tamper: &Tamper,
    ) -> Result<RawAnswer, LinkError> {
        let timestamp = tamper.timestamp.clone().unwrap_or_else(|| wall_ms().to_string());
        let nonce = tamper.nonce.clone().unwrap_or_else(|| self.nonce());
        let secret = tamper.secret.as_deref().unwrap_or(&self.secret);
        let signature = tamper.signature.clone().unwrap_or_else(|| {
            link_auth::sign_request(secret, "POST", path, &timestamp, &nonce, body)
        });
        let mut req = self
            .http
            .post(format!("{}{}", self.base, path))
            .timeout(timeout)
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if !tamper.unsigned {
            req = req
                .header(HEADER_KEY, tamper.key_id.as_deref().unwrap_or(&self.key_id))
                .header(HEADER_TIMESTAMP, &timestamp)
                .header(HEADER_NONCE, &nonce)
                .header(HEADER_SIGNATURE, &signature);
        }
        let resp = req.send().await.map_err(|e| LinkError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let answer_sig =
            resp.headers().get(HEADER_SIGNATURE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = resp.bytes().await.map_err(|e| LinkError::Transport(e.to_string()))?;
        let body = bytes.to_vec();
        let signature_ok =
            link_auth::verify_response(&self.secret, status, &nonce, &body, answer_sig.as_deref())
                .is_ok();
        Ok(RawAnswer {
            status,
            body,
            signature_ok,
            signed: answer_sig.is_some(),
            nonce,
            content_type,
        })
    }

    /// One call as the EA makes it: a signed request, a signed answer or an error. An unsigned
    /// or wrongly signed answer is never believed, whatever its status.
    pub async fn call<Req: Serialize, Ans: DeserializeOwned>(
        &self,
        call: Call,
        req: &Req,
        timeout: Duration,
    ) -> Result<Ans, LinkError> {
        let body = ea::encode(req);
        let answer = self.call_bytes(call, body, timeout).await?;
        Ok(ea::decode(&answer)?)
    }

    /// [`LinkClient::call`] on encoded bodies: the signed 200 answer's body.
    pub async fn call_bytes(
        &self,
        call: Call,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        let a = self.send_raw(call.path(), &body, timeout, &Tamper::default()).await?;
        if !a.signed {
            // `CTcLink::Post`: the one unsigned answer a real node gives, named in the journal.
            let unknown_key = a.status == 401
                && ea::decode::<Problem>(&a.body)
                    .is_ok_and(|p| p.code == link_auth::AuthError::UnknownKey.code());
            if unknown_key {
                return Err(LinkError::UnknownKey(self.key_id.clone()));
            }
            return Err(LinkError::Unsigned(a.status));
        }
        if !a.signature_ok {
            return Err(LinkError::BadSignature(a.status));
        }
        refused_or_body(a.status, a.body)
    }
}

/// A signed answer: its body when the status is 200, else the refusal with its problem.
pub fn refused_or_body(status: u16, body: Vec<u8>) -> Result<Vec<u8>, LinkError> {
    if status != 200 {
        return Err(LinkError::Refused { status, problem: ea::decode(&body).ok().map(Box::new) });
    }
    Ok(body)
}

/// What a [`crate::terminal::Terminal`]'s EA speaks the link over, and the clock it reads
/// (`TimeGMT()`): the real HTTP link ([`LinkClient`], the OS clock), or a transport that hands
/// the call to a node in the same process on a simulated clock (`tradecast::node_sim`), where
/// every call completes at once and a terminal's step needs no runtime.
pub trait Transport: Send {
    /// One call with an encoded request: the signed 200 answer's body, or why there is none.
    fn call_bytes(
        &mut self,
        call: Call,
        body: Vec<u8>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, LinkError>> + Send;

    /// The wall clock as the EA reads it, unix ms.
    fn wall_ms(&self) -> i64;

    /// A new connection after the terminal restarted (the EA's memory is gone).
    fn restart(&mut self) -> Result<(), LinkError>;
}

impl Transport for LinkClient {
    fn call_bytes(
        &mut self,
        call: Call,
        body: Vec<u8>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, LinkError>> + Send {
        LinkClient::call_bytes(self, call, body, timeout)
    }

    fn wall_ms(&self) -> i64 {
        wall_ms()
    }

    fn restart(&mut self) -> Result<(), LinkError> {
        let secret = String::from_utf8_lossy(&self.secret).into_owned();
        *self = LinkClient::new(&self.base, &self.key_id, &secret)?;
        Ok(())
    }
}

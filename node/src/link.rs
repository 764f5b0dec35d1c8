//! The EA link server (`ea-link.md`): HTTP/1.1 on 127.0.0.1, every call a signed POST under
//! `/ea/v1/`, every answer signed.
//!
//! One handler does it all, in this order, so that nothing is processed for a refused request:
//! read the body (over 256 KiB: 413), authenticate (headers, freshness ±30 s and not before the
//! node's start, the key, the HMAC in constant time, then the nonce: 401), decode the body (400
//! naming the field, `trailing-nul`), then the call (409 `hello-required`, `poll-in-flight`):
//! the poll by the driver's long-poll ([`crate::runtime::Node::poll`]), every other call by the
//! node's sans-IO core ([`crate::runtime::Node::handle_call`]) on a blocking thread, since it
//! commits with fsync before it answers. Every answer to a request whose key is known is signed
//! over status, request nonce and body. Errors are RFC 9457 problem+json ([`ea::Problem`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tradecast_protocol::ea::{self, Call, Problem};
use tradecast_protocol::link_auth::{self, AuthError, RequestHeaders};
use zeroize::Zeroizing;

use crate::clock::wall_ms;
use crate::runtime::Node;

/// The link's router (no listener: [`serve`] binds one; tests may `oneshot` it).
pub fn router(node: Arc<Node>) -> Router {
    Router::new().fallback(handle).with_state(node)
}

/// Serves the link on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    problem: bool,
}

impl Answer {
    fn ok<T: Serialize>(value: &T) -> Answer {
        Answer { status: StatusCode::OK, body: ea::encode(value), problem: false }
    }

    fn problem(p: Problem) -> Answer {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
        Answer { status, body: ea::encode(&p), problem: true }
    }
}

fn auth_problem(e: &AuthError) -> Problem {
    Problem::new(401, e.code(), "unauthorized", e.to_string())
}

async fn handle(State(node): State<Arc<Node>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let nonce = header_str(&headers, link_auth::HEADER_NONCE).unwrap_or("").to_owned();
    let key_id = header_str(&headers, link_auth::HEADER_KEY).unwrap_or("").to_owned();
    let secret = node.ea_secret(&key_id);
    let answer = answer(&node, &parts.method, &parts.uri, &headers, body, secret.as_ref()).await;
    respond(answer, secret.as_ref(), &nonce)
}

fn respond(a: Answer, secret: Option<&Zeroizing<Vec<u8>>>, nonce: &str) -> Response {
    let ct = if a.problem { "application/problem+json" } else { "application/json" };
    let mut resp =
        (a.status, [(header::CONTENT_TYPE, ct)], Body::from(a.body.clone())).into_response();
    if let Some(secret) = secret {
        let sig = link_auth::sign_response(secret, a.status.as_u16(), nonce, &a.body);
        if let Ok(v) = HeaderValue::from_str(&sig) {
            resp.headers_mut().insert(link_auth::HEADER_SIGNATURE, v);
        }
    }
    resp
}

async fn answer(
    node: &Arc<Node>,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Body,
    secret: Option<&Zeroizing<Vec<u8>>>,
) -> Answer {
    let bytes: Bytes = match axum::body::to_bytes(body, ea::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Answer::problem(Problem::new(
                413,
                "body-too-large",
                "request body too large",
                format!("a body may be at most {} bytes", ea::MAX_BODY_BYTES),
            ));
        }
    };
    let now = wall_ms();
    let h = RequestHeaders {
        key: header_str(headers, link_auth::HEADER_KEY),
        timestamp: header_str(headers, link_auth::HEADER_TIMESTAMP),
        nonce: header_str(headers, link_auth::HEADER_NONCE),
        signature: header_str(headers, link_auth::HEADER_SIGNATURE),
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let verified = h.parse().and_then(|p| {
        let secret = secret.ok_or(AuthError::UnknownKey)?;
        link_auth::verify_request(secret, &p, method.as_str(), path, &bytes, now, node.start_ms())?;
        node.check_nonce(p.nonce, p.timestamp_ms, now)
    });
    if let Err(e) = verified {
        tracing::warn!(target: "tradecast::link", code = e.code(), path = %uri.path(), "request refused");
        return Answer::problem(auth_problem(&e));
    }
    node.seen(now);
    let Some(call) = Call::from_path(uri.path()) else {
        return Answer::problem(Problem::new(
            404,
            "unknown-call",
            "no such call",
            uri.path().to_owned(),
        ));
    };
    if method != Method::POST {
        return Answer::problem(Problem::new(405, "method", "POST only", method.to_string()));
    }
    if call == Call::Poll {
        // The long-poll waits on the async side (the driver's watch); what it commits is small.
        return match ea::decode(&bytes) {
            Ok(b) => match node.poll(b).await {
                Ok(a) => Answer::ok(&a),
                Err(e) => Answer::problem(e.link_problem()),
            },
            Err(e) => Answer::problem(Problem::from_body_error(&e)),
        };
    }
    // Every other call is the core's, committed with fsync: off the async workers.
    let core = Arc::clone(node);
    let now = crate::clock::Now::wall(now);
    match tokio::task::spawn_blocking(move || core.handle_call(now, call, &bytes)).await {
        Ok(a) => Answer {
            status: StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: a.body,
            problem: a.problem,
        },
        Err(e) => {
            tracing::error!(target: "tradecast::link", error = %e, "link call did not finish");
            Answer::problem(Problem::new(
                500,
                "internal",
                "internal error",
                "the node could not commit this; retry",
            ))
        }
    }
}

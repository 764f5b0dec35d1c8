//! The HTTP edge: request ids (`X-Request-Id`, generated when absent, echoed on every answer and
//! present in every log line of the request's span), request metrics per route, a timeout,
//! the per-IP token bucket on `/api`, problem+json for unknown routes and methods, and serving
//! on a listener with graceful shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// The request-id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Copy, Debug)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        axum::http::HeaderValue::from_str(&crate::ids::random_hex(12)).ok().map(RequestId::new)
    }
}

/// Wraps the API router with the edge layers.
pub fn edge(router: Router<AppState>, state: AppState) -> Router {
    let timeout_ms = state.config.http.request_timeout_ms;
    let in_flight =
        std::sync::Arc::new(tokio::sync::Semaphore::new(state.config.http.max_in_flight));
    router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), per_ip_limit))
        .layer(middleware::from_fn(move |req, next| timeout(timeout_ms, req, next)))
        .layer(middleware::from_fn(move |req, next| shed(in_flight.clone(), req, next)))
        .layer(middleware::from_fn(record_metrics))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id =
                        req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    let span = tracing::info_span!(
                        "request",
                        request_id = %id,
                        method = %req.method(),
                        path = %req.uri().path(),
                        otel.name = %format!("{} {}", req.method(), req.uri().path()),
                        otel.kind = "server",
                        http.response.status_code = tracing::field::Empty,
                    );
                    #[cfg(feature = "otel")]
                    crate::telemetry::otel::continue_trace(&span, req.headers());
                    span
                })
                .on_request(())
                .on_response(|res: &Response, latency: Duration, span: &tracing::Span| {
                    span.record("http.response.status_code", res.status().as_u16());
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_ms = latency.as_millis() as u64,
                        "request done"
                    );
                }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .with_state(state)
}

async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn timeout(timeout_ms: u64, req: Request, next: Next) -> Response {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Answers 503 `overloaded` when `max_in_flight` requests are already being handled, before
/// doing any work for this one; operations routes always pass.
async fn shed(
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(req.uri().path(), "/health" | "/ready" | "/metrics")
        || crate::billing::api::is_webhook(req.uri().path())
    {
        return next.run(req).await;
    }
    match in_flight.try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::Overloaded.into_response(),
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!(crate::telemetry::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(crate::telemetry::HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

async fn per_ip_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/api/") && !crate::billing::api::is_webhook(req.uri().path()) {
        let (parts, body) = req.into_parts();
        let ip = crate::api::extract::client_ip(&parts);
        if let Err(e) = crate::api::extract::enforce(
            &state,
            &format!("ip:{ip}"),
            state.config.rate_limits.per_ip,
        )
        .await
        {
            return e.into_response();
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    next.run(req).await
}

/// Serves `app` on `listener` until `shutdown` resolves, with the peer address available to
/// extractors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

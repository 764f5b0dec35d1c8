//! Operations routes: `/health` (the process answers), `/ready` (database reachable and every
//! migration applied), `/metrics` (Prometheus text), and the HTML rendering of the OpenAPI
//! document served at `/api/v1/docs`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// `{"status": …}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics_text))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Status)))]
async fn health() -> axum::Json<Status> {
    axum::Json(Status { status: "ok" })
}

/// Readiness: the database answers and every embedded migration is applied.
#[utoipa::path(get, path = "/ready", tag = "ops", responses(
    (status = 200, body = Status),
    (status = 503, description = "database unreachable or not migrated", body = crate::error::Problem,
     content_type = "application/problem+json")
))]
async fn ready(State(state): State<AppState>) -> Result<axum::Json<Status>, ApiError> {
    match state.db.ready().await {
        Ok(()) => Ok(axum::Json(Status { status: "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Err(ApiError::Unavailable)
        }
    }
}

/// Prometheus metrics: requests and latency per route, signals ingested, devices, fan-out lag,
/// and the business gauges of [`crate::scrape`] (refreshed here, at scrape time).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics_text(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let now = state.now_ms();
    let gauges = crate::devices::gauges(&state.db, now).await?;
    metrics::gauge!(crate::telemetry::DEVICES_ACTIVE).set(gauges.devices_active as f64);
    metrics::gauge!(crate::telemetry::DEVICES_CONNECTED)
        .set(state.quic_peers.connected().len() as f64);
    metrics::gauge!(crate::telemetry::FANOUT_QUEUED).set(gauges.fanout_queued as f64);
    metrics::gauge!(crate::telemetry::FANOUT_LAG).set(gauges.fanout_lag_ms as f64 / 1000.0);
    let billing = &state.config.billing;
    crate::scrape::refresh(&state.db, &billing.currency, billing.xtr_rate).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A plain HTML page listing every operation of `openapi` with its parameters, body and answers.
pub fn docs_page(openapi: &utoipa::openapi::OpenApi) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tradecast hub API</title>\
         <style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}\
         code{background:#f3f3f3;padding:0 .2rem}section{border-top:1px solid #ddd;padding:.5rem 0}\
         .m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}</style></head><body>\
         <h1>Tradecast hub API</h1><p>Machine-readable: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>. \
         Errors are <code>application/problem+json</code>; the <code>type</code> is \
         <code>urn:tradecast:problem:&lt;kind&gt;</code>.</p>",
    );
    let value = serde_json::to_value(openapi).unwrap_or_default();
    if let Some(paths) = value.get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            let Some(ops) = item.as_object() else { continue };
            for (method, op) in ops {
                let summary = op.get("summary").and_then(|s| s.as_str()).unwrap_or("");
                let description = op.get("description").and_then(|s| s.as_str()).unwrap_or("");
                out.push_str(&format!(
                    "<section><p><span class=\"m\">{}</span><code>{}</code></p><p>{}</p>",
                    escape(method),
                    escape(path),
                    escape(if summary.is_empty() { description } else { summary })
                ));
                if let Some(body) = op.get("requestBody") {
                    out.push_str(&format!(
                        "<p>Body: <code>{}</code></p>",
                        escape(&schema_names(body))
                    ));
                }
                if let Some(responses) = op.get("responses").and_then(|r| r.as_object()) {
                    out.push_str("<ul>");
                    for (status, r) in responses {
                        let d = r.get("description").and_then(|d| d.as_str()).unwrap_or("");
                        out.push_str(&format!(
                            "<li><code>{}</code> {} <code>{}</code></li>",
                            escape(status),
                            escape(d),
                            escape(&schema_names(r))
                        ));
                    }
                    out.push_str("</ul>");
                }
                out.push_str("</section>");
            }
        }
    }
    out.push_str("</body></html>");
    out
}

fn schema_names(v: &serde_json::Value) -> String {
    let mut names = Vec::new();
    fn walk(v: &serde_json::Value, names: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    names.push(r.rsplit('/').next().unwrap_or(r).to_string());
                }
                m.values().for_each(|x| walk(x, names));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, names)),
            _ => {}
        }
    }
    walk(v, &mut names);
    names.dedup();
    names.join(", ")
}

//! Logs and metrics. The binary installs a JSON (or pretty) `tracing` subscriber whose lines
//! carry the fields of the current request span, the request id among them; the library itself
//! never installs a subscriber. Metrics go to one process-wide Prometheus recorder, rendered by
//! `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;

/// Requests per method, route and status.
pub const HTTP_REQUESTS: &str = "tradecast_http_requests_total";
/// Request latency per method and route, seconds.
pub const HTTP_DURATION: &str = "tradecast_http_request_duration_seconds";
/// Signals accepted and stored (new ones, not duplicates).
pub const SIGNALS_INGESTED: &str = "tradecast_signals_ingested_total";
/// Signals refused, by problem kind.
pub const SIGNALS_REJECTED: &str = "tradecast_signals_rejected_total";
/// Devices with a live sync connection (the QUIC endpoint sets it; 0 until it runs).
pub const DEVICES_CONNECTED: &str = "tradecast_devices_connected";
/// Enrolled, unrevoked devices.
pub const DEVICES_ACTIVE: &str = "tradecast_devices_active";
/// Age of the oldest undelivered fan-out entry, seconds (0 when the queue is empty).
pub const FANOUT_LAG: &str = "tradecast_fanout_lag_seconds";
/// Undelivered fan-out entries.
pub const FANOUT_QUEUED: &str = "tradecast_fanout_queued";
/// Rate-limit backend failures (requests let through).
pub const RATE_LIMIT_ERRORS: &str = "tradecast_rate_limit_backend_errors_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use. If another recorder
/// was installed first (an embedding application), the hub renders its own empty registry.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_DURATION.into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(crate::scrape::FANOUT_DELIVERY.into()),
                        &[
                            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                            300.0, 3600.0,
                        ],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics shows only its own"
                );
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status");
    metrics::describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "HTTP request latency");
    metrics::describe_counter!(SIGNALS_INGESTED, "Signals accepted and stored");
    metrics::describe_counter!(SIGNALS_REJECTED, "Signals refused, by problem kind");
    metrics::describe_gauge!(DEVICES_CONNECTED, "Devices with a live sync connection");
    metrics::describe_gauge!(DEVICES_ACTIVE, "Enrolled, unrevoked devices");
    metrics::describe_gauge!(
        FANOUT_LAG,
        metrics::Unit::Seconds,
        "Age of the oldest undelivered fan-out entry"
    );
    metrics::describe_gauge!(FANOUT_QUEUED, "Undelivered fan-out entries");
    metrics::describe_counter!(RATE_LIMIT_ERRORS, "Rate-limit backend failures");
    metrics::gauge!(DEVICES_CONNECTED).set(0.0);
    crate::scrape::describe();
}

/// Installs the global `tracing` subscriber for the binary (`RUST_LOG` filters, default info).
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if result.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
}

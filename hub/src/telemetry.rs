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

/// What keeps the tracing pipeline alive: dropping it flushes and stops the trace exporter
/// (hold it for the process's life).
#[derive(Default)]
pub struct TracingGuard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for TracingGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingGuard").finish_non_exhaustive()
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("tradecast-hub: traces not all sent at exit: {e}");
        }
    }
}

/// Installs the global `tracing` subscriber for the binary (`RUST_LOG` filters, default info):
/// log lines to stderr, and with `telemetry.otlp_traces_url` (a hub built with the `otel`
/// feature) the spans to that OpenTelemetry collector. Fails only when traces are asked for and
/// cannot be sent (no `otel` feature, an exporter that cannot be built).
pub fn init_tracing(
    format: LogFormat,
    telemetry: &crate::config::TelemetryConfig,
) -> Result<TracingGuard, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, Registry};
    type Boxed = Box<dyn Layer<Registry> + Send + Sync>;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt: Boxed = match format {
        LogFormat::Json => {
            fmt.json().with_current_span(true).with_span_list(false).flatten_event(true).boxed()
        }
        LogFormat::Pretty => fmt.boxed(),
    };
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut layers: Vec<Boxed> = vec![fmt];
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut guard = TracingGuard::default();
    if let Some(url) = &telemetry.otlp_traces_url {
        #[cfg(feature = "otel")]
        {
            let name = telemetry.service_name.as_deref().unwrap_or("tradecast-hub");
            let (layer, provider) = otel::layer(url, name)?;
            layers.push(layer);
            guard.provider = Some(provider);
        }
        #[cfg(not(feature = "otel"))]
        {
            return Err(format!(
                "telemetry.otlp_traces_url is set ({url}) but this hub was built without the \
                 `otel` feature: build it with `cargo build --release -p tradecast-hub \
                 --features otel`, or remove the setting"
            ));
        }
    }
    if tracing_subscriber::registry().with(layers.with_filter(filter)).try_init().is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
    Ok(guard)
}

/// The OpenTelemetry side (feature `otel`): the exporter, the layer, and the request span's
/// parent from the caller's `traceparent`.
#[cfg(feature = "otel")]
pub mod otel {
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::{Layer, Registry};

    /// The layer that turns spans into OpenTelemetry spans sent to `url` (OTLP/HTTP, protobuf,
    /// batched on the SDK's own thread), and the provider to shut down at exit.
    pub fn layer(
        url: &str,
        service_name: &str,
    ) -> Result<(Box<dyn Layer<Registry> + Send + Sync>, SdkTracerProvider), String> {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| format!("telemetry.otlp_traces_url: cannot build the exporter: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_string())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("tradecast-hub");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
        Ok((layer, provider))
    }

    struct Headers<'a>(&'a axum::http::HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(axum::http::HeaderName::as_str).collect()
        }
    }

    /// Makes `span` continue the W3C trace context (`traceparent`, `tracestate`) of `headers`,
    /// when they carry a valid one.
    pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let cx = TraceContextPropagator::new().extract(&Headers(headers));
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
}

//! OpenTelemetry traces (feature `otel`): the `tradecast-hub` binary, built with the feature and
//! configured with `telemetry.otlp_traces_url`, sends its spans over OTLP/HTTP (protobuf) to a
//! collector stand-in that checks each export as a collector would (method, path, content type,
//! a body that decodes as an `ExportTraceServiceRequest`) and answers as one. A request carrying
//! a W3C `traceparent` shows up as a server span of that trace, named by method and path, with
//! its status code, and the resource names the service.
//!
//! `cargo test -p tradecast-hub --features otel --test otel` (.ci/test runs it with the slow
//! suites).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

const BIN: &str = env!("CARGO_BIN_EXE_tradecast-hub");

/// What the stand-in received: every export, decoded; and what it refused.
#[derive(Default)]
struct Received {
    exports: Vec<ExportTraceServiceRequest>,
    refused: Vec<String>,
}

async fn export(
    axum::extract::State(got): axum::extract::State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], Vec<u8>) {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let refuse = |got: &Arc<Mutex<Received>>, why: String| {
        got.lock().unwrap().refused.push(why);
        (StatusCode::BAD_REQUEST, [("content-type", "text/plain")], Vec::new())
    };
    if ct != "application/x-protobuf" {
        return refuse(&got, format!("content-type {ct:?}"));
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(req) => {
            got.lock().unwrap().exports.push(req);
            let answer = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
            (StatusCode::OK, [("content-type", "application/x-protobuf")], answer)
        }
        Err(e) => refuse(&got, format!("not an ExportTraceServiceRequest: {e}")),
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(v: Option<&AnyValue>) -> Option<String> {
    match v? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

struct Hub {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_in_the_callers_trace() {
    // The collector stand-in.
    let got = Arc::new(Mutex::new(Received::default()));
    let app = axum::Router::new().route("/v1/traces", post(export)).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The hub, built with `otel`, pointed at it.
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("TRADECAST_HUB_TELEMETRY__OTLP_TRACES_URL", format!("http://{collector}/v1/traces"))
        .env("TRADECAST_HUB_TELEMETRY__SERVICE_NAME", "hub-under-test")
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(home.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let hub = Hub { child, lines };
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let found = hub.lines.lock().unwrap().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["message"] == "hub listening").then(|| v["addr"].as_str().map(str::to_owned))?
        });
        if let Some(a) = found {
            break a;
        }
        assert!(Instant::now() < deadline, "hub did not start: {:#?}", hub.lines.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // A request in the caller's trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/ready"))
        .header("traceparent", format!("00-{trace_id}-{parent_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // One without: a trace of its own.
    let r = reqwest::get(format!("http://{addr}/api/v1/nope")).await.unwrap();
    assert_eq!(r.status(), 404);

    // The batch processor exports within its schedule (5 s by default).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ready, nope, service) = loop {
        let spans: Vec<_> = {
            let g = got.lock().unwrap();
            assert!(g.refused.is_empty(), "the collector refused: {:?}", g.refused);
            g.exports
                .iter()
                .flat_map(|e| e.resource_spans.iter())
                .flat_map(|rs| {
                    let service = rs
                        .resource
                        .as_ref()
                        .and_then(|r| text(attr(&r.attributes, "service.name")));
                    rs.scope_spans.iter().flat_map(move |ss| {
                        let service = service.clone();
                        ss.spans.iter().map(move |s| (service.clone(), s.clone()))
                    })
                })
                .collect()
        };
        let ready = spans.iter().find(|(_, s)| s.name == "GET /ready").cloned();
        let nope = spans.iter().find(|(_, s)| s.name == "GET /api/v1/nope").cloned();
        if let (Some(ready), Some(nope)) = (ready, nope) {
            break (ready.1, nope.1, ready.0);
        }
        assert!(
            Instant::now() < deadline,
            "no request spans exported: {:?}",
            spans.iter().map(|(_, s)| s.name.clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(service.as_deref(), Some("hub-under-test"));
    assert_eq!(hex(&ready.trace_id), trace_id, "the caller's trace continues");
    assert_eq!(hex(&ready.parent_span_id), parent_span, "under the caller's span");
    assert_eq!(ready.kind, SpanKind::Server as i32);
    assert_eq!(text(attr(&ready.attributes, "http.response.status_code")).as_deref(), Some("200"));
    assert_eq!(text(attr(&ready.attributes, "path")).as_deref(), Some("/ready"));
    assert!(text(attr(&ready.attributes, "request_id")).is_some_and(|id| id.len() == 24));
    assert!(ready.end_time_unix_nano >= ready.start_time_unix_nano);
    assert_ne!(hex(&nope.trace_id), trace_id, "a request without traceparent starts its own");
    assert!(nope.parent_span_id.is_empty());
    assert_eq!(text(attr(&nope.attributes, "http.response.status_code")).as_deref(), Some("404"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! The Grafana dashboards against a real Prometheus (Debian's `prometheus`): a hub with some
//! activity (a provider's signals fanned out to an entitled subscriber's device and acked, a
//! background job, webhook answers), scraped every second; every panel's query must return data.
//! The alerting rules are checked and unit-tested with `promtool`. Slow suite (`slow_` prefix):
//! `.ci/run` installs the package; without it (and without TRADECAST_SLOW=1) the test says so.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tradecast_hub::jobs::{Job, Schedule, Scheduler};

use crate::helpers::{Backend, TestHub, free_port, post_signal, provider_kit, signal};

const DASHBOARDS: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/../installers/grafana/tradecast-business.json"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/../installers/grafana/tradecast-operations.json"),
];
const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../installers/prometheus");

struct Tick;
impl Job for Tick {
    fn run<'a>(
        &'a self,
        _: &'a tradecast_hub::state::AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async { Ok("tick".to_string()) })
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(bin: &str) -> bool {
    Command::new(bin).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Every panel's `(title, expr)` with the `$instance` variable matching any instance.
fn panel_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in DASHBOARDS {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap().replace("$instance", ".*");
                out.push((p["title"].as_str().unwrap_or("?").to_string(), expr));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_every_dashboard_panel_returns_data_from_a_real_prometheus() {
    let slow = std::env::var("TRADECAST_SLOW").is_ok_and(|v| v == "1");
    if !(have("prometheus") && have("promtool")) {
        assert!(
            !slow,
            "TRADECAST_SLOW=1 needs `prometheus` and `promtool` (.ci/run installs them)"
        );
        eprintln!("skipped: prometheus/promtool not installed (apt-get install prometheus)");
        return;
    }
    // The rules: valid, and their unit tests pass.
    for args in
        [["check", "rules", "tradecast.rules.yml"], ["test", "rules", "tradecast.rules.test.yml"]]
    {
        let out = Command::new("promtool").args(args).current_dir(RULES_DIR).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    let hub = TestHub::start(Backend::Sqlite).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let sub = hub.user(&owner, "subscriber").await;
    let (_, device) = hub.enrol(&sub, "alice's node").await;
    hub.post(
        "/api/v1/entitlements",
        Some(&owner.token),
        json!({ "user_id": sub.user_id, "plan_id": kit.plan_id }),
    )
    .await
    .ok(201);
    let mut jobs = Scheduler::new();
    jobs.register("test.tick", Schedule::Every(Duration::from_secs(1)), Arc::new(Tick)).unwrap();
    let scheduler = jobs.start(hub.state().clone());

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tradecast-hub\n    static_configs:\n      - targets: ['{}']\n",
            hub.addr
        ),
    )
    .unwrap();
    let prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http.get(format!("{api}/-/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "prometheus did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Activity over several scrapes: signals fanned out to the device and acked (the delivery
    // histogram), webhook answers (the hub has no webhook secrets: 409s), the job ticking.
    let log = tradecast_protocol::DeviceId::parse(&kit.device_id).unwrap();
    let mut acked = 0;
    for seq in 1..=4u64 {
        let s = signal(&kit.identity, hub.clock.now_ms());
        post_signal(&hub, &kit, &s, seq).await.1.ok(201);
        let tip = tradecast_hub::relay::tip(&hub.db, &log).await.unwrap();
        let ack = tradecast_hub::relay::CursorMove {
            device: device.clone(),
            provider_device: kit.device_id.clone(),
            from: acked,
            to: tip,
            at_ms: hub.clock.now_ms() + 40,
        };
        tradecast_hub::relay::write_batch(&hub.db, &[ack]).await.unwrap();
        acked = tip;
        for path in ["/api/v1/telegram/webhook", "/api/v1/billing/stripe/webhook"] {
            hub.post_raw(path, "application/json", b"{}".to_vec()).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // Another signal left queued (the lag and backlog panels).
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 5).await.1.ok(201);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut empty = Vec::new();
    let queries = panel_queries();
    assert!(queries.len() >= 15, "{queries:?}");
    for (title, expr) in &queries {
        let r: Value = http
            .get(
                reqwest::Url::parse_with_params(&format!("{api}/api/v1/query"), [("query", expr)])
                    .unwrap(),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"], "success", "{title}: {expr}: {r}");
        if r["data"]["result"].as_array().is_none_or(Vec::is_empty) {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "panels without data: {empty:#?}");
    scheduler.stop().await;
    drop(prom);
    hub.stop().await;
}

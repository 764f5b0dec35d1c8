//! The trader's story through the app's window, for any build of the app (the cargo-built
//! binary, or the one the `.deb` installed).
//!
//! The node runs in provider mode with self-trading and manual approval: it computes Fib-RSI on
//! the bars the simulated terminal pushes and its first signal (bar 211 of the EURUSD sample,
//! 2017-05-02 04:00, a sell) waits for the trader. The sim first replays the bars up to that one
//! at full speed and stops, so the market clock (the terminal's) stands still while the signal
//! waits; then a second run from that bar at 30 bar-seconds per second (one H1 bar every two
//! minutes) keeps quotes coming while the trader approves, and fills the order.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tradecast_node::config::{Config, Mode};

use crate::driver::{Display, Driver, Kid, free_port};

/// The sample's first 212 bars end with the signal bar (2017-05-02 04:00); the second part
/// starts again at that bar so the terminal's clock does not pass the signal's expiry.
fn write_parts(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let text =
        std::fs::read_to_string(crate::root().join("testdata/EURUSD-H1.csv")).expect("sample");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[212].starts_with("2017-05-02 04:00:00"), "the sample changed: {}", lines[212]);
    let part1 = dir.join("part1.csv");
    let part2 = dir.join("part2.csv");
    std::fs::write(&part1, lines[..213].join("\n") + "\n").expect("part1");
    let mut second = vec![lines[0]];
    second.extend(&lines[212..400]);
    std::fs::write(&part2, second.join("\n") + "\n").expect("part2");
    (part1, part2)
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("api");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("json")
    }

    async fn until(&self, what: &str, secs: u64, path: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.get(path).await;
            if f(&v) {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn sim_cmd(sim: &Path, ea: &str, key: &str, secret: &str, csv: &Path, speed: &str) -> Command {
    let mut c = Command::new(sim);
    c.args(["--node", ea, "--key", key, "--csv"])
        .arg(csv)
        .args(["--speed", speed])
        .env("TRADECAST_SIM_SECRET", secret)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Runs the story against `app`; screenshots are named `desktop-TAG-*.png`.
pub async fn run(app: &Path, sim: &Path, tag: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = Config {
        ea_listen: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
        api_listen: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
        mode: Mode::Provider,
        self_trade: true,
        ..Config::default()
    };
    config.write(&data).expect("config.toml");
    let (part1, part2) = write_parts(dir.path());

    let display = Display::start();
    let log = crate::artifacts().join(format!("desktop-{tag}-app.log"));
    let args = vec!["--data".to_owned(), data.display().to_string()];
    let d = Driver::start(&display, app, &args, &log).await;

    // First run: the app made the data dir and opened the setup page.
    d.until(
        "the setup page",
        90,
        "return location.pathname === '/setup' && !!document.getElementById('step-identity')",
    )
    .await;
    let api = Api {
        base: format!("http://{}", config.api_listen),
        token: std::fs::read_to_string(data.join("api-token"))
            .expect("api-token")
            .trim()
            .to_owned(),
        http: reqwest::Client::builder().no_proxy().build().expect("client"),
    };
    assert!(
        d.url().await.starts_with(&format!("http://{}/", config.api_listen)),
        "the window shows the node's origin"
    );
    assert!(!d.url().await.contains("token="), "the token left the address bar");
    let device = api.get("/api/v1/status").await["device_id"].as_str().expect("device").to_owned();
    let shown = d.js("return document.querySelector('#step-identity code').textContent").await;
    assert_eq!(shown.as_str(), Some(device.as_str()), "step 1 shows this node's identity");
    d.screenshot(&format!("{tag}-1-setup")).await;

    // A second start hands over to the running app and exits: no second node.
    let second_log = crate::artifacts().join(format!("desktop-{tag}-second.log"));
    let second = Command::new(app)
        .args(&args)
        .env("DISPLAY", &display.name)
        .env("DBUS_SESSION_BUS_ADDRESS", &display.bus)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&second_log).expect("log"))
        .spawn()
        .expect("second start");
    let mut second = Kid(second);
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = second.0.try_wait().expect("wait") {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited.is_some_and(|s| s.success()), "the second start did not exit: {exited:?}");
    let second_text = std::fs::read_to_string(&second_log).unwrap_or_default();
    assert!(!second_text.contains("node ready"), "a second node started: {second_text}");
    assert_eq!(
        api.get("/api/v1/status").await["device_id"],
        device.as_str(),
        "the first still serves"
    );

    // Step 2: stay standalone.
    d.click("#stay-standalone").await;
    d.until("standalone recorded", 30, "return !!document.querySelector('#step-hub.done') && !!document.querySelector('.banner.ok')").await;

    // Step 3: the EA key, shown once.
    d.click("#create-ea-key").await;
    d.until("the new EA key", 30, "return !!document.getElementById('ea-secret')").await;
    let key_id = d.js("return document.getElementById('ea-key-id').value").await;
    let secret = d.js("return document.getElementById('ea-secret').value").await;
    let ea_url = d.js("return document.getElementById('ea-url').value").await;
    let (key_id, secret) = (key_id.as_str().expect("key id"), secret.as_str().expect("secret"));
    assert!(key_id.starts_with("ea_") && secret.starts_with("tcs_"), "{key_id}");
    assert_eq!(
        ea_url.as_str(),
        Some(format!("http://{}", config.ea_listen).as_str()),
        "the exact MT5 URL"
    );
    let keys = api.get("/api/v1/ea-keys").await;
    assert_eq!(keys, serde_json::json!([key_id]), "the key exists in the node");
    d.click("button[data-copy='ea-secret']").await;
    d.until(
        "the copy button's answer",
        10,
        "return document.querySelector(\"button[data-copy='ea-secret']\").textContent === 'Copied'",
    )
    .await;
    d.screenshot(&format!("{tag}-2-ea-key")).await;

    // The simulated terminal connects with that key and pushes bars up to the signal bar.
    let ea = format!("http://{}", config.ea_listen);
    let out = sim_cmd(sim, &ea, key_id, secret, &part1, "max").output().expect("sim");
    assert!(out.status.success(), "sim phase 1 failed");
    d.until("the EA shown connected", 20, "return !!document.querySelector('#ea-status .dot.ok') && !!document.querySelector('#mt5-num.ok')")
        .await;
    d.js("document.getElementById('step-mt5').scrollIntoView(); return true").await;
    d.until("step 4 in view", 5, "return window.scrollY > 0").await;
    // Let WebKit paint the scrolled view before the screenshot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.screenshot(&format!("{tag}-3-mt5-connected")).await;

    // Back on the page: the secret is shown no more.
    d.js("location.href = '/setup'; return true").await;
    d.until("the setup page again", 20, "return location.pathname === '/setup' && document.readyState === 'complete' && !!document.getElementById('step-mt5')").await;
    let again = d.js("return document.getElementById('ea-secret') === null && !document.documentElement.innerHTML.includes('tcs_')").await;
    assert_eq!(again, Value::Bool(true), "the secret is shown only once");

    // Finish: the dashboard, with the signal the node made waiting for approval.
    d.click("#finish-setup").await;
    d.until(
        "the pending signal on the dashboard",
        30,
        "return location.pathname === '/' && !!document.querySelector('button.approve')",
    )
    .await;
    let approvals = api.get("/api/v1/approvals").await;
    let waiting: Vec<&Value> = approvals
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a["pending"]["state"] == "waiting")
        .collect();
    assert_eq!(waiting.len(), 1, "{approvals}");
    d.screenshot(&format!("{tag}-4-pending-signal")).await;

    // Quotes flow again; the trader approves in the window.
    let _sim2 = Kid(sim_cmd(sim, &ea, key_id, secret, &part2, "30").spawn().expect("sim phase 2"));
    api.until("the EA link back up", 30, "/api/v1/status", |v| v["link_up"] == true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.click("button.approve").await;
    let positions = api
        .until("the position open", 60, "/api/v1/positions", |v| {
            v.as_array().is_some_and(|a| a.iter().any(|p| p["open"] == true))
        })
        .await;
    assert_eq!(positions[0]["symbol"], "EURUSD", "{positions}");
    assert_eq!(positions[0]["side"], "sell", "{positions}");
    d.until("the position on the dashboard", 30, "return !document.querySelector('button.approve') && !document.body.textContent.includes('No open position.')").await;
    d.screenshot(&format!("{tag}-5-position")).await;

    d.click("header nav a[href='/copy-log']").await;
    d.until(
        "the copy log",
        20,
        "return location.pathname === '/copy-log' && document.readyState === 'complete'",
    )
    .await;
    d.screenshot(&format!("{tag}-6-copy-log")).await;

    // Navigation away from the node's origin is refused by the shell.
    d.js("location.href = 'https://example.com/'; return true").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let url = d.url().await;
    assert!(url.starts_with(&format!("http://{}/", config.api_listen)), "left the origin: {url}");

    d.quit().await;
    drop(display);
    // Secrets never reach the logs.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains(secret), "the EA secret is in {}", log.display());
    assert!(!text.contains(&api.token), "the API token is in {}", log.display());
    assert!(!text.contains("panicked"), "a panic in {}", log.display());
    assert!(text.contains("node ready"), "the app did not log its start: {}", log.display());
}

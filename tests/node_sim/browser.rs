//! The web UI in a real browser (the slow suite): Debian's chromium, headless, driven through
//! chromedriver's WebDriver API (plain HTTP + JSON), against a real node beside the simulated
//! terminal. The trader opens the login URL, sees a pending signal with its countdown, clicks
//! Approve, and sees the position open; changes the lot mode in the settings form and sees the
//! next order sized by it; watches the drawdown guard trip (the lock appears in the open page by
//! itself) and unlocks it; reads skips in the copy log; makes an EA key. A whole-page screenshot
//! of every page goes to `test-artifacts/`. Each test ends its WebDriver session before it
//! stops chromedriver, on a failure too, and checks that no process of its browser is left
//! ([`Driver`]).
//! Needs `chromium` and `chromium-driver` (apt); `.ci/run` installs them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tradecast_node::policy::approval::ApprovalMode;
use tradecast_sim::terminal::lock;

use crate::TestNode;
use crate::rig::{Rig, free_addr};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, its one WebDriver session and the headless chromium it started, on a profile
/// folder of their own (`--user-data-dir`) whose path also marks every process of that browser:
/// on its command line, or in its environment (chromedriver passes its environment on to
/// chromium, which passes it to its crash handlers; its zygotes clear theirs but their children
/// carry the profile flag). However the test ends — at its end through [`Driver::quit`], or
/// unwinding from a failed assertion through `Drop` — the session is ended first
/// (`DELETE /session/{id}`: chromedriver closes the browser), then chromedriver is stopped, then
/// whatever process of that browser is still there after a while is killed: killing
/// chromedriver alone would orphan the browser.
pub(crate) struct Driver {
    chromedriver: Child,
    addr: SocketAddr,
    base: String,
    /// None until the session is made, and again once it is ended.
    session: Option<String>,
    http: reqwest::Client,
    profile: tempfile::TempDir,
}

/// The environment variable that marks the browser's processes (its value: the profile path).
const MARK_VAR: &str = "TRADECAST_BROWSER_TEST_PROFILE";
/// Longest the browser's processes may take to end once the session is ended.
const BROWSER_END_LIMIT: Duration = Duration::from_secs(15);

impl Drop for Driver {
    fn drop(&mut self) {
        let left = self.end();
        if !left.is_empty() {
            eprintln!("browser processes still running after the session ended, killed: {left:#?}");
        }
    }
}

impl Driver {
    pub(crate) async fn start() -> Driver {
        let addr = free_addr();
        let profile = tempfile::Builder::new()
            .prefix("tradecast-browser-test-")
            .tempdir()
            .expect("profile dir");
        let chromedriver = Command::new("chromedriver")
            .arg(format!("--port={}", addr.port()))
            .env(MARK_VAR, profile.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver)");
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        // From here on a failure drops the guard: chromedriver stopped, nothing of it left.
        let mut driver = Driver { chromedriver, addr, base, session: None, http, profile };
        for _ in 0..100 {
            if driver.http.get(format!("{}/status", driver.base)).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1366,1000", "--hide-scrollbars",
                         format!("--user-data-dir={}", driver.profile.path().display())]
            }
        }}});
        let v: Value = driver
            .http
            .post(format!("{}/session", driver.base))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned();
        driver.session = Some(session);
        driver
    }

    /// Ends the session, stops chromedriver and checks that no process of the browser is left.
    pub(crate) fn quit(mut self) {
        let left = self.end();
        assert!(left.is_empty(), "browser processes left after the session ended: {left:#?}");
    }

    /// Ends the session (`DELETE /session/{id}`), stops chromedriver, waits (bounded) for the
    /// browser's processes to end and kills those that did not; returns what it had to kill.
    fn end(&mut self) -> Vec<String> {
        if let Some(id) = self.session.take()
            && let Err(e) = delete_session(self.addr, &id)
        {
            eprintln!("DELETE /session/{id}: {e}");
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
        let started = std::time::Instant::now();
        loop {
            let left = marked_processes(self.profile.path());
            if left.is_empty() {
                return Vec::new();
            }
            if started.elapsed() > BROWSER_END_LIMIT {
                for (pid, _) in &left {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                return left.into_iter().map(|(pid, cmd)| format!("{pid} {cmd}")).collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session());
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.expect("webdriver").json().await.expect("json");
        assert!(v["value"]["error"].is_null(), "webdriver {path}: {v}");
        v["value"].clone()
    }

    fn session(&self) -> &str {
        self.session.as_deref().expect("a session")
    }

    pub(crate) async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub(crate) async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Runs the next commands in the page's `index`th frame (an `<iframe>`).
    pub(crate) async fn frame(&self, index: u16) {
        self.cmd(reqwest::Method::POST, "/frame", Some(json!({ "id": index }))).await;
    }

    /// Back to the top-level page after [`Driver::frame`].
    pub(crate) async fn top_frame(&self) {
        self.cmd(reqwest::Method::POST, "/frame", Some(json!({ "id": null }))).await;
    }

    pub(crate) async fn click(&self, css: &str) {
        let e = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let id = e[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {e}")).to_owned();
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// Saves a PNG screenshot of the whole page under `test-artifacts/` (the window grown to
    /// the page's height for the shot); its path.
    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        self.screenshot_sized(name, 1366, 1000).await
    }

    /// The window's size from now on (a phone's: 390 × 844).
    pub(crate) async fn resize(&self, width: i64, height: i64) {
        let rect = Some(json!({"width": width, "height": height}));
        self.cmd(reqwest::Method::POST, "/window/rect", rect).await;
    }

    /// [`Driver::screenshot`] of a window `width` wide, at least `height` high, that size again
    /// after the shot.
    pub(crate) async fn screenshot_sized(&self, name: &str, width: i64, height: i64) -> PathBuf {
        let full = self
            .js("return document.documentElement.scrollHeight")
            .await
            .as_i64()
            .unwrap_or(height)
            .clamp(height, 4000);
        let rect = |h: i64| Some(json!({"width": width, "height": h}));
        self.cmd(reqwest::Method::POST, "/window/rect", rect(full + 90)).await;
        self.js("window.scrollTo(0, 0); return true;").await;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        self.cmd(reqwest::Method::POST, "/window/rect", rect(height)).await;
        let png = base64(v.as_str().expect("base64"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("ui-{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// The browser console's messages so far.
    pub(crate) async fn console(&self) -> Vec<String> {
        let url = format!("{}/session/{}/se/log", self.base, self.session());
        let v: Value = self
            .http
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("log")
            .json()
            .await
            .expect("json");
        v["value"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["message"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Waits until `script` returns true (bounded).
    pub(crate) async fn until(&self, script: &str) -> bool {
        for _ in 0..50 {
            if self.js(script).await == json!(true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// `DELETE /session/{id}` over a plain blocking connection (it runs in `Drop`, which cannot
/// await): chromedriver answers once it has closed the browser. The answer is read up to its
/// `Content-Length`: chromedriver keeps the connection open after it, `Connection: close` or not.
fn delete_session(addr: SocketAddr, id: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        conn,
        "DELETE /session/{id} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = conn.read(&mut chunk)?;
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer);
        let complete = text.find("\r\n\r\n").is_some_and(|head| {
            let body_len = text[..head]
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            answer.len() >= head + 4 + body_len
        });
        if n == 0 || complete {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(text.into_owned()));
    }
    Ok(())
}

/// Running processes (pid, command line) that carry `profile`: in their command line (the
/// browser's `--user-data-dir`) or their environment ([`MARK_VAR`]). A zombie has neither.
fn marked_processes(profile: &std::path::Path) -> Vec<(i32, String)> {
    use std::os::unix::ffi::OsStrExt;
    let needle = profile.as_os_str().as_bytes();
    let has = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if has(&cmdline) || has(&environ) {
            let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, cmd.chars().take(160).collect()));
        }
    }
    found
}

/// Standard base64 (the screenshot), no crate needed.
fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_browser_approves_a_pending_signal_and_sees_the_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), |c| c.policy.approval.mode = ApprovalMode::Manual).await;
    let mut rig = Rig::new(&node.ea_url(), &node.key_id, &node.secret, 800);
    for _ in 0..120 {
        rig.replay.advance().expect("advance");
        rig.catch_up(20).await;
    }
    let ask = lock(&rig.broker).quote("EURUSD").expect("quote").ask;
    let (status, v) = node
        .api(
            reqwest::Method::POST,
            "/api/v1/signals",
            Some(json!({
                "symbol": "EURUSD", "timeframe": "H1", "side": "buy",
                "entry": ask.to_string(), "stop": (ask - Decimal::new(150, 4)).to_string(),
                "tp1": (ask + Decimal::new(300, 4)).to_string(), "volume": "0.20", "execute": true
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["signal"]["id"].as_str().expect("id").to_owned();

    let b = Driver::start().await;
    b.go(&tradecast_node::ui::login_url(node.running.api_addr, &node.token)).await;
    assert!(
        b.until(&format!("return !!document.getElementById('pending-{id}')")).await,
        "pending row"
    );
    assert!(
        b.until("return !!document.querySelector('#equity-chart canvas')").await,
        "uPlot drew the equity chart"
    );
    // The countdown runs in the browser (app.js), on the market clock's remaining time.
    let countdown = b.js("return document.querySelector('.countdown').textContent").await;
    assert!(countdown.as_str().is_some_and(|t| t.ends_with('s')), "{countdown}");
    let shot = b.screenshot("dashboard-pending").await;
    println!("screenshot: {}", shot.display());

    // Approve in the page (htmx posts with the CSRF header and the form's token).
    b.click(&format!("#pending-{id} button.approve")).await;
    assert!(
        b.until("return document.body.textContent.includes('approved in the UI')").await,
        "the decision shows"
    );
    let a = node.running.node.approvals().expect("approvals");
    let a = a.iter().find(|a| a.pending.signal_id.to_hex() == id).expect("approval");
    assert_eq!(
        a.pending.decided().map(|d| d.decision),
        Some(tradecast_protocol::Decision::Approved)
    );
    for _ in 0..4 {
        let _ = rig.terminal.step().await;
    }
    assert_eq!(rig.open_positions().len(), 1, "filled at the broker");
    // Live: the server-sent refresh (or a reload) shows the position.
    b.go(&node.api_url("/")).await;
    assert!(
        b.until("return document.body.textContent.includes('0.20') && !document.querySelector('.countdown')").await,
        "the open position is listed and nothing waits"
    );
    b.screenshot("dashboard-position").await;
    for page in ["copy-log", "history", "settings"] {
        b.go(&node.api_url(&format!("/{page}"))).await;
        assert!(b.until("return document.readyState === 'complete'").await);
        b.screenshot(page).await;
    }
    b.go(&node.api_url("/copy-log")).await;
    assert!(
        b.until("return document.body.textContent.includes('accepted: EURUSD buy 0.20 lots')")
            .await
    );

    // The trader changes the lot mode in the settings form; the next signal is sized by it.
    b.go(&node.api_url("/settings")).await;
    assert!(b.until("return !!document.getElementById('lot_mode')").await);
    b.js("document.getElementById('lot_mode').value = 'fixed'; document.getElementById('lot_value').value = '0.05'; return true;").await;
    b.click("button.primary").await;
    assert!(
        b.until("return document.body.textContent.includes('Saved')").await,
        "saved in the page"
    );
    b.screenshot("settings-saved").await;
    let ask = lock(&rig.broker).quote("EURUSD").expect("quote").ask;
    let (status, v) = node
        .api(
            reqwest::Method::POST,
            "/api/v1/signals",
            Some(json!({
                "symbol": "EURUSD", "timeframe": "H1", "side": "buy",
                "entry": ask.to_string(), "stop": (ask - Decimal::new(150, 4)).to_string(),
                "tp1": (ask + Decimal::new(300, 4)).to_string(), "volume": "0.20", "execute": true
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let second = v["signal"]["id"].as_str().expect("id").to_owned();
    b.go(&node.api_url("/")).await;
    assert!(b.until(&format!("return !!document.getElementById('pending-{second}')")).await);
    assert!(
        b.until("return document.body.textContent.includes('accepted: EURUSD buy 0.05 lots')")
            .await
    );
    b.click(&format!("#pending-{second} button.approve")).await;
    assert!(b.until("return document.body.textContent.includes('approved in the UI')").await);
    for _ in 0..4 {
        let _ = rig.terminal.step().await;
    }
    let mut volumes: Vec<Decimal> = rig.open_positions().iter().map(|p| p.volume).collect();
    volumes.sort();
    assert_eq!(
        volumes,
        vec![Decimal::new(5, 2), Decimal::new(20, 2)],
        "the next order used the new lot mode"
    );
    // The strict CSP let every script and style of the page run: no violation in the console.
    let console = b.console().await;
    let violations: Vec<_> = console
        .iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Refused"))
        .collect();
    assert!(violations.is_empty(), "{violations:#?}");
    // Nothing of the browser is left: the session ended, chromedriver stopped.
    b.quit();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_browser_shows_the_drawdown_lock_live_and_the_trader_unlocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A 1 % cap, auto mode: a 3-lot position trips it within a few bars.
    let node =
        TestNode::start(dir.path(), |c| c.policy.risk.drawdown_lock_pct = Decimal::ONE).await;
    let mut rig = Rig::new(&node.ea_url(), &node.key_id, &node.secret, 800);
    for _ in 0..30 {
        rig.replay.advance().expect("advance");
        rig.catch_up(20).await;
    }
    let b = Driver::start().await;
    b.go(&tradecast_node::ui::login_url(node.running.api_addr, &node.token)).await;
    assert!(b.until("return document.body.textContent.includes('No open position.')").await);

    let ask = lock(&rig.broker).quote("EURUSD").expect("quote").ask;
    let (status, v) = node
        .api(
            reqwest::Method::POST,
            "/api/v1/signals",
            Some(json!({
                "symbol": "EURUSD", "timeframe": "H1", "side": "buy",
                "entry": ask.to_string(), "stop": (ask - Decimal::new(200, 4)).to_string(),
                "tp1": (ask + Decimal::new(200, 4)).to_string(), "volume": "3.00", "execute": true
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    for _ in 0..3 {
        let _ = rig.terminal.step().await;
    }
    assert_eq!(rig.open_positions().len(), 1);
    // Live: the page shows the position without a reload (server-sent refresh).
    assert!(b.until("return !!document.getElementById('close-all')").await, "position listed");
    b.screenshot("dashboard-open-position").await;

    let account = node.running.node.pick_account(None).expect("account");
    let mut locked = false;
    for _ in 0..400 {
        rig.replay.advance().expect("advance");
        let _ = rig.terminal.step().await;
        if node.running.node.account(&account).expect("account").expect("row").locked {
            locked = true;
            break;
        }
    }
    assert!(locked, "the guard never tripped");
    for _ in 0..2 {
        let _ = rig.terminal.step().await;
    }
    assert!(rig.open_positions().is_empty(), "the guard flattened Tradecast's book");
    // The lock appears in the open page by itself (SSE → htmx re-render), with its reason.
    assert!(
        b.until("var e = document.getElementById('guard-lock'); return !!e && e.textContent.includes('drawdown guard: equity')").await,
        "the lock banner"
    );
    assert!(b.until("return document.body.textContent.includes('No open position.')").await);
    let shot = b.screenshot("dashboard-locked").await;
    println!("screenshot: {}", shot.display());

    // The trader unlocks from the banner (a confirm dialog first).
    b.click("#unlock").await;
    b.cmd(reqwest::Method::POST, "/alert/accept", Some(json!({}))).await;
    assert!(
        b.until("return document.body.textContent.includes('Auto mode unlocked') && !document.getElementById('guard-lock')").await,
        "unlocked in the page"
    );
    assert!(!node.running.node.account(&account).expect("account").expect("row").locked);

    // Skips read as sentences in the copy log, each with its steps.
    let market = node.running.node.market_ms(&account).expect("market");
    let ask = lock(&rig.broker).quote("EURUSD").expect("quote").ask;
    for extra in
        [json!({"expires_at_ms": market - 90_000}), json!({"bar_time_ms": market - 7_200_000})]
    {
        let mut body = json!({
            "symbol": "EURUSD", "timeframe": "H1", "side": "sell",
            "entry": ask.to_string(), "stop": (ask + Decimal::new(200, 4)).to_string(),
            "tp1": (ask - Decimal::new(300, 4)).to_string(), "volume": "0.10", "execute": true
        });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, v) = node.api(reqwest::Method::POST, "/api/v1/signals", Some(body)).await;
        assert_eq!(status, 201, "{v}");
        assert!(v["skipped"].as_str().is_some_and(|l| l.starts_with("skipped: signal")), "{v}");
    }
    b.go(&node.api_url("/copy-log")).await;
    assert!(
        b.until("return document.body.textContent.includes('skipped: signal expired 90 s ago')")
            .await
    );
    assert!(
        b.until(
            "return document.body.textContent.includes('skipped: signal 3600 s old, limit 60 s')"
        )
        .await
    );
    b.js("document.querySelector('details').open = true; return true;").await;
    b.screenshot("copy-log-skips").await;

    // The closing deal is in the history; a new EA key shows its secret once.
    b.go(&node.api_url("/history")).await;
    assert!(b.until("return document.body.textContent.includes('EURUSD')").await);
    b.screenshot("history-after-guard").await;
    b.go(&node.api_url("/settings")).await;
    b.click("#new-ea-key").await;
    assert!(b.until("return !!document.getElementById('new-secret')").await, "the secret shows");
    b.screenshot("settings-new-key").await;
    let console = b.console().await;
    let violations: Vec<_> = console
        .iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Refused"))
        .collect();
    assert!(violations.is_empty(), "{violations:#?}");
    // Nothing of the browser is left: the session ended, chromedriver stopped.
    b.quit();
}

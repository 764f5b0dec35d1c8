//! A minimal WebDriver client for WebKitWebDriver (plain HTTP + JSON over a keep-alive client),
//! and the display it needs: its own Xvfb (`-displayfd`) and session bus, so tests never share
//! a display.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A child process killed on drop.
pub struct Kid(pub Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Xvfb server on a free display, and a session bus (the tray, notifications and the
/// single-instance lock use D-Bus).
pub struct Display {
    _xvfb: Kid,
    _bus: Kid,
    pub name: String,
    pub bus: String,
}

impl Display {
    pub fn start() -> Display {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1366x900x24", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (apt-get install xvfb xauth)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("Xvfb stdout");
        BufReader::new(stdout).read_line(&mut line).expect("Xvfb display number");
        let n: u32 = line.trim().parse().unwrap_or_else(|_| panic!("Xvfb said {line:?}"));
        let xvfb = Kid(child);
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (apt-get install dbus-x11)");
        let mut address = String::new();
        let stdout = bus.stdout.take().expect("dbus stdout");
        BufReader::new(stdout).read_line(&mut address).expect("bus address");
        assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");
        Display {
            _xvfb: xvfb,
            _bus: Kid(bus),
            name: format!(":{n}"),
            bus: address.trim().to_owned(),
        }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A WebDriver session on a WebKitWebDriver that launched `app`. Ended by [`Driver::quit`],
/// or, when a test fails before it, by `Drop` (the session is deleted before the driver is
/// killed, so the app it launched never outlives the test).
pub struct Driver {
    _driver: Kid,
    base: String,
    session: String,
    http: reqwest::Client,
    ended: bool,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Drop cannot await, and may run inside the test's runtime: the DELETE gets a thread
        // and a runtime of its own. WebKitWebDriver answers once it has closed the app.
        let url = format!("{}/session/{}", self.base, self.session);
        let ended = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let r = reqwest::Client::new()
                    .delete(url)
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                    .ok()?;
                Some(r.status())
            })
        })
        .join();
        if !matches!(&ended, Ok(Some(s)) if s.is_success()) {
            eprintln!("DELETE /session/{}: {ended:?}", self.session);
        }
    }
}

impl Driver {
    /// Starts WebKitWebDriver on `display` (and its session bus), and a session that
    /// launches `app` with `args`; the app's and the driver's output go to `log`.
    pub async fn start(display: &Display, app: &Path, args: &[String], log: &Path) -> Driver {
        let port = free_port();
        let log_file = std::fs::File::create(log).expect("log file");
        let child = Command::new("WebKitWebDriver")
            .arg(format!("--port={port}"))
            .env("DISPLAY", &display.name)
            .env("DBUS_SESSION_BUS_ADDRESS", &display.bus)
            .env("TAURI_WEBVIEW_AUTOMATION", "true")
            .env("RUST_LOG", "info")
            // A trader's session has a locale; without one WebKit reports the language "C",
            // which `Intl` refuses (uPlot's date formatting throws and the chart stays empty).
            .env("LANG", "en_US.UTF-8")
            .env_remove("WAYLAND_DISPLAY")
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("WebKitWebDriver (apt-get install webkit2gtk-driver dbus-x11)");
        let driver = Kid(child);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .no_proxy()
            .build()
            .expect("http client");
        let mut up = false;
        for _ in 0..200 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "WebKitWebDriver did not start");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "webkitgtk:browserOptions": {"binary": app.display().to_string(), "args": args}
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}; see {}", log.display()))
            .to_owned();
        Driver { _driver: driver, base, session, http, ended: false }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.expect("webdriver").json().await.expect("json");
        assert!(v["value"]["error"].is_null(), "webdriver {path}: {v}");
        v["value"].clone()
    }

    /// Runs `script` (a function body) and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
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

    /// Waits until `script` returns true; panics with `what` after `secs`.
    pub async fn until(&self, what: &str, secs: u64, script: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            // A navigation in progress makes a script fail: retry until the deadline.
            let url = format!("{}/session/{}/execute/sync", self.base, self.session);
            let v: Option<Value> =
                match self.http.post(url).json(&json!({"script": script, "args": []})).send().await
                {
                    Ok(r) => r.json().await.ok(),
                    Err(_) => None,
                };
            if v.as_ref().is_some_and(|v| v["value"] == json!(true)) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {v:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Saves a PNG screenshot of the window as `test-artifacts/desktop-NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64(v.as_str().expect("base64"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = crate::artifacts().join(format!("desktop-{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the session (WebKitWebDriver closes the app).
    pub async fn quit(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        self.ended = true;
    }
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

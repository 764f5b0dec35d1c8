//! The `tradecast-hub` binary itself: `serve` with no flags on a fresh machine (SQLite in the
//! platform data dir), production mode refusing missing or weak secrets, config errors naming
//! the field, `migrate`, `admin create-owner` and `audit verify` on both backends, and no
//! secret ever written to the logs.

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestDb};
use crate::on_both;

const BIN: &str = env!("CARGO_BIN_EXE_tradecast-hub");

/// A command with a clean environment (no TRADECAST_HUB_* from the caller).
fn hub_cmd(home: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "debug,hyper=info,h2=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A running hub process whose log lines are collected.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Proc { child, lines }
    }

    /// Waits for the "hub listening" line and returns the address.
    fn addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            for l in self.lines.lock().unwrap().iter() {
                if let Ok(v) = serde_json::from_str::<Value>(l)
                    && v["message"] == "hub listening"
                {
                    return v["addr"].as_str().unwrap().to_string();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hub did not start: {:#?}", self.lines.lock().unwrap());
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let lines = self.lines.lock().unwrap().clone();
        assert!(status.success(), "exit {status}: {lines:#?}");
        lines
    }
}

fn run(mut cmd: Command, stdin: Option<&str>) -> (i32, String) {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_flags_starts_on_sqlite_in_the_data_dir() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = hub_cmd(home.path());
    cmd.arg("serve");
    let proc = Proc::spawn(cmd);
    let addr = proc.addr();
    assert_eq!(addr, "127.0.0.1:7480", "loopback on the default port");
    let r = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
    let lines = proc.stop();
    let data = home.path().join(".local/share/tradecast-hub");
    assert!(data.join("hub.sqlite3").is_file());
    assert!(data.join("secrets/jwt_signing_keys").is_file());
    // Every line is JSON; the request's lines carry its id.
    for l in &lines {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
    assert!(
        lines.iter().any(|l| l.contains("\"path\":\"/ready\"") && l.contains("\"request_id\":\"")),
        "{lines:#?}"
    );
}

#[test]
fn production_refuses_missing_and_weak_secrets() {
    let home = tempfile::tempdir().unwrap();
    let mut c = hub_cmd(home.path());
    c.args(["serve", "--production", "--listen", "127.0.0.1:0", "--data"]).arg(home.path());
    let (code, out) = run(c, None);
    assert_ne!(code, 0);
    assert!(out.contains("secret `jwt_signing_keys` is missing"), "{out}");

    let mut c = hub_cmd(home.path());
    c.args(["serve", "--production", "--listen", "127.0.0.1:0", "--data"]).arg(home.path());
    c.env("TRADECAST_HUB_SECRET_JWT_SIGNING_KEYS", format!("k1:{}", "ab".repeat(32)));
    c.env("TRADECAST_HUB_SECRET_API_KEY_WRAPPING_KEY", tradecast_hub::ids::random_hex(32));
    c.env("TRADECAST_HUB_SECRET_HUB_IDENTITY_KEY", tradecast_hub::ids::random_hex(32));
    let (code, out) = run(c, None);
    assert_ne!(code, 0);
    assert!(out.contains("secret `jwt_signing_keys` is too weak"), "{out}");
    assert!(!out.contains(&"ab".repeat(32)), "the weak value itself must not be printed: {out}");
}

#[test]
fn config_errors_name_the_field() {
    let home = tempfile::tempdir().unwrap();
    for (var, value, field) in [
        ("TRADECAST_HUB_HTTP__REQUEST_TIMEOUT_MS", "soon", "http.request_timeout_ms"),
        ("TRADECAST_HUB_LISTEN", "everywhere", "listen"),
        ("TRADECAST_HUB_COLOUR", "blue", "colour"),
        ("TRADECAST_HUB_AUTH__LOGIN_LOCK_FAILURES", "1", "auth.login_lock_failures"),
        (
            "TRADECAST_HUB_TELEMETRY__OTLP_TRACES_URL",
            "ftp://collector",
            "telemetry.otlp_traces_url",
        ),
    ] {
        let mut c = hub_cmd(home.path());
        c.arg("serve").env(var, value);
        let (code, out) = run(c, None);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(field), "{var}: {out}");
    }
    let file = home.path().join("hub.toml");
    std::fs::write(&file, "[rate_limits.per_ip]\nburst = \"lots\"\nper_minute = 1\n").unwrap();
    let mut c = hub_cmd(home.path());
    c.arg("--config").arg(&file).arg("serve");
    let (code, out) = run(c, None);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("rate_limits.per_ip.burst"), "{out}");
}

/// Traces asked for from a hub built without the `otel` feature: refused at start, saying how
/// to build one that sends them (never silently dropped).
#[cfg(not(feature = "otel"))]
#[test]
fn traces_without_the_otel_feature_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let mut c = hub_cmd(home.path());
    c.args(["serve", "--listen", "127.0.0.1:0"])
        .env("TRADECAST_HUB_TELEMETRY__OTLP_TRACES_URL", "http://127.0.0.1:4318/v1/traces");
    let (code, out) = run(c, None);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("without the `otel` feature") && out.contains("--features otel"), "{out}");
}

on_both!(cli_migrate_create_owner_and_verify, secrets_never_reach_the_logs);

async fn cli_migrate_create_owner_and_verify(b: Backend) {
    let db = TestDb::new(b).await;
    let home = tempfile::tempdir().unwrap();
    let cmd = |args: &[&str]| {
        let mut c = hub_cmd(home.path());
        c.args(args).args(["--database-url", &db.url]);
        c
    };
    let (code, out) = run(cmd(&["migrate"]), None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("migrations applied"), "{out}");
    let (code, out) = run(cmd(&["migrate"]), None);
    assert_eq!(code, 0, "idempotent: {out}");
    let (code, out) =
        run(cmd(&["admin", "create-owner", "--email", "Boss@Example.com"]), Some("short\n"));
    assert_ne!(code, 0);
    assert!(out.contains("at least 12 characters"), "{out}");
    let (code, out) = run(
        cmd(&["admin", "create-owner", "--email", "Boss@Example.com"]),
        Some("a long owner password\n"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("owner created: boss@example.com"), "{out}");
    let (code, out) = run(
        cmd(&["admin", "create-owner", "--email", "second@example.com"]),
        Some("a long owner password\n"),
    );
    assert_ne!(code, 0);
    assert!(out.contains("an owner exists already"), "{out}");
    let (code, out) = run(cmd(&["audit", "verify"]), None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit chain ok: 1 entries"), "{out}");
    // Altered history (protection dropped first, as only a superuser could): exit status 1.
    let tamper = tradecast_hub::db::Db::connect(&db.url, 1).await.unwrap();
    let drop_trigger = match b {
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update",
        Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
    };
    sqlx::raw_sql(drop_trigger).execute(tamper.pool()).await.unwrap();
    sqlx::query("UPDATE audit_log SET detail = '{}' WHERE seq = 1")
        .execute(tamper.pool())
        .await
        .unwrap();
    tamper.close().await;
    let (code, out) = run(cmd(&["audit", "verify"]), None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("audit chain BROKEN: audit chain broken at seq 1"), "{out}");
}

async fn secrets_never_reach_the_logs(b: Backend) {
    let db = TestDb::new(b).await;
    let home = tempfile::tempdir().unwrap();
    let jwt = format!("kid1:{}", tradecast_hub::ids::random_hex(32));
    let wrap = tradecast_hub::ids::random_hex(32);
    let ident = tradecast_hub::ids::random_hex(32);
    let password = "correct horse battery staple";
    let with_env = |c: &mut Command| {
        c.args(["--database-url", &db.url])
            .env("TRADECAST_HUB_SECRET_JWT_SIGNING_KEYS", &jwt)
            .env("TRADECAST_HUB_SECRET_API_KEY_WRAPPING_KEY", &wrap)
            .env("TRADECAST_HUB_SECRET_HUB_IDENTITY_KEY", &ident)
            .env("TRADECAST_HUB_AUTH__ARGON2_MEMORY_KIB", "19456");
    };
    let mut c = hub_cmd(home.path());
    c.args(["admin", "create-owner", "--email", "owner@example.com"]);
    with_env(&mut c);
    let (code, cli_out) = run(c, Some(&format!("{password}\n")));
    assert_eq!(code, 0, "{cli_out}");

    let mut c = hub_cmd(home.path());
    c.args(["serve", "--production", "--listen", "127.0.0.1:0"]);
    with_env(&mut c);
    let proc = Proc::spawn(c);
    let base = format!("http://{}", proc.addr());
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": "owner@example.com", "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().expect("logged in").to_string();
    let refresh = login["refresh_token"].as_str().unwrap().to_string();
    // A provider with an API key: the key's secret is in one response only.
    let provider_pw = "provider password 1";
    let r = http
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&access)
        .json(&json!({ "email": "p@example.com", "password": provider_pw, "role": "provider" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let p: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": "p@example.com", "password": provider_pw }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key: Value = http
        .post(format!("{base}/api/v1/api-keys"))
        .bearer_auth(p["access_token"].as_str().unwrap())
        .json(&json!({ "label": "x" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_secret = key["secret"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A failed login with the password in the email field.
    http.post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": password, "password": "x" }))
        .send()
        .await
        .unwrap();
    let mut lines = proc.stop();
    lines.push(cli_out);
    assert!(lines.len() > 10, "expected a debug log: {lines:#?}");
    let all = lines.join("\n");
    let refresh_secret = refresh.split('.').nth(1).unwrap();
    for (what, secret) in [
        ("jwt seed", &jwt[5..]),
        ("wrapping key", wrap.as_str()),
        ("identity key", ident.as_str()),
        ("password", password),
        ("provider password", provider_pw),
        ("access token", access.as_str()),
        ("refresh token", refresh_secret),
        ("API key secret", api_secret.as_str()),
        ("database URL", db.url.as_str()),
    ] {
        assert!(!all.contains(secret), "{what} appears in the logs");
    }
}

//! The test harness: fresh databases per test, a hub on a random port, an HTTP client with
//! problem+json assertions, and builders for accounts, devices, plans and signed records.

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tradecast_hub::config::Config;
use tradecast_hub::db::Db;
use tradecast_hub::ids::Clock;
use tradecast_hub::secrets::HubSecrets;
use tradecast_protocol::{
    Body, ChainHash, DeviceKeys, EntryKind, HeaderFields, Identity, Record, Side, Signal, SignalId,
    StreamId, Timeframe,
};

/// Runs `async fn $name(backend: Backend)` once per backend, as `$name::sqlite` and
/// `$name::postgres`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_admin_url() -> String {
    std::env::var("TRADECAST_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TRADECAST_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn random_hex(n: usize) -> String {
    tradecast_hub::ids::random_hex(n)
}

/// A fresh, empty database; a PostgreSQL one is dropped when this is dropped (even when the
/// test panicked).
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                TestDb { url: Db::sqlite_url_in(dir.path()), pg_name: None, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let name = format!("tc_hub_test_{}", random_hex(8));
                admin_sql(&format!("CREATE DATABASE {name}")).await;
                let base = pg_admin_url();
                let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
                TestDb { url, pg_name: Some(name), _dir: None }
            }
        }
    }
}

async fn admin_sql(sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&pg_admin_url())
        .await
        .expect("PostgreSQL at TRADECAST_TEST_PG");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside any runtime guarantee (maybe while unwinding): use our own.
            std::thread::spawn(move || {
                let rt =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(admin_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
            })
            .join()
            .ok();
        }
    }
}

/// A loopback port free now (for a hub whose `public_url` must be known before it starts).
/// Chosen below the kernel's ephemeral range (32768+), so no socket another test opens on port 0
/// can take it between this check and the hub's bind.
pub fn free_port() -> u16 {
    loop {
        let bytes = tradecast_hub::ids::random_bytes(2);
        let port = 20_000 + u16::from_le_bytes([bytes[0], bytes[1]]) % 10_000;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
}

/// Config for tests: port 0, cheap password hashing, the given database.
pub fn test_config(db_url: &str) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(tradecast_hub::config::RedactedUrl::new(db_url)),
        ..Default::default()
    };
    c.auth.argon2_memory_kib = 64;
    c.auth.argon2_iterations = 1;
    c
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("debug,sqlx=info,hyper=info").try_init();
    }
}

/// A running hub with its own database and an HTTP client.
pub struct TestHub {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub started: Option<tradecast_hub::Started>,
    pub clock: Clock,
    pub db: Db,
    /// The database's URL and the secrets: what another instance of this hub shares.
    pub db_url: String,
    pub secrets: HubSecrets,
    // Dropped last: the database outlives the hub (`None` on a second instance).
    pub _test_db: Option<TestDb>,
}

impl TestHub {
    pub async fn start(backend: Backend) -> TestHub {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestHub {
        Self::start_with_secrets(backend, tweak, |_| {}).await
    }

    /// A hub whose config and secrets (the integrations' among them) the test sets.
    pub async fn start_with_secrets(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        tweak_secrets: impl FnOnce(&mut HubSecrets),
    ) -> TestHub {
        init_logs();
        let test_db = TestDb::new(backend).await;
        let mut config = test_config(&test_db.url);
        tweak(&mut config);
        config.validate().expect("test config is valid");
        let db = tradecast_hub::open_db(&config).await.unwrap();
        let clock = Clock::default();
        let mut secrets = HubSecrets::generate_ephemeral();
        tweak_secrets(&mut secrets);
        let started = tradecast_hub::start_with(config, secrets.clone(), db.clone(), clock.clone())
            .await
            .unwrap();
        TestHub {
            addr: started.addr,
            http: reqwest::Client::new(),
            started: Some(started),
            clock,
            db,
            db_url: test_db.url.clone(),
            secrets,
            _test_db: Some(test_db),
        }
    }

    /// Another instance of this hub: the same database and secrets (so the same hub identity,
    /// which nodes pin), its own ports, memory and cluster id. Stop it before the first.
    pub async fn start_instance(&self, tweak: impl FnOnce(&mut Config)) -> TestHub {
        let mut config = test_config(&self.db_url);
        tweak(&mut config);
        config.validate().expect("test config is valid");
        let db = tradecast_hub::open_db(&config).await.unwrap();
        let started =
            tradecast_hub::start_with(config, self.secrets.clone(), db.clone(), self.clock.clone())
                .await
                .unwrap();
        TestHub {
            addr: started.addr,
            http: reqwest::Client::new(),
            started: Some(started),
            clock: self.clock.clone(),
            db,
            db_url: self.db_url.clone(),
            secrets: self.secrets.clone(),
            _test_db: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn state(&self) -> &tradecast_hub::state::AppState {
        &self.started.as_ref().unwrap().state
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut r = self.http.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        Resp::from(r.send().await.unwrap()).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut r = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        Resp::from(r.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.send("POST", path, token, Some(body)).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let r = self.http.post(self.url(path)).header("content-type", content_type).body(body);
        Resp::from(r.send().await.unwrap()).await
    }

    /// Creates the owner directly in the store (as `admin create-owner` does) and logs in.
    pub async fn owner(&self) -> Session {
        let email = format!("owner-{}@example.com", random_hex(4));
        let password = "owner password 123";
        let new = tradecast_hub::accounts::NewUser {
            email: &email,
            password,
            role: tradecast_hub::accounts::Role::Owner,
            display_name: "Owner",
        };
        let user = tradecast_hub::accounts::create_user(
            &self.db,
            &self.state().config.auth,
            self.clock.now_ms(),
            &new,
            "test",
            "test",
        )
        .await
        .unwrap();
        let mut s = self.login(&email, password).await;
        s.user_id = user.id;
        s
    }

    pub async fn login(&self, email: &str, password: &str) -> Session {
        let r = self
            .post("/api/v1/auth/login", None, json!({ "email": email, "password": password }))
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {email}: {}", r.body);
        let me = self.get("/api/v1/me", Some(r.body["access_token"].as_str().unwrap())).await;
        Session {
            token: r.body["access_token"].as_str().unwrap().to_string(),
            refresh: r.body["refresh_token"].as_str().unwrap().to_string(),
            user_id: me.body["id"].as_str().unwrap().to_string(),
            email: email.to_string(),
            password: password.to_string(),
        }
    }

    /// An account with `role`, created by `admin` through the API, logged in.
    pub async fn user(&self, admin: &Session, role: &str) -> Session {
        let email = format!("{role}-{}@example.com", random_hex(4));
        let password = format!("{role} password 123");
        let r = self
            .post(
                "/api/v1/users",
                Some(&admin.token),
                json!({ "email": email, "password": password, "role": role }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        self.login(&email, &password).await
    }

    /// A plan `who` (a provider) offers: `name`, 49.00 `currency` every 30 days; its id.
    pub async fn plan(&self, who: &Session, name: &str, currency: &str) -> String {
        let body =
            json!({ "name": name, "price_minor": 4900, "currency": currency, "period_days": 30 });
        let r = self.post("/api/v1/plans", Some(&who.token), body).await;
        r.ok(201)["id"].as_str().unwrap().to_string()
    }

    /// Enrols a fresh node identity for `who`; returns the identity and the device id (text).
    pub async fn enrol(&self, who: &Session, label: &str) -> (Identity, String) {
        let identity = new_identity();
        let code = self.post("/api/v1/devices/enrolment-codes", Some(&who.token), json!({})).await;
        assert_eq!(code.status, StatusCode::CREATED, "{}", code.body);
        let r = self
            .post(
                "/api/v1/devices/enrol",
                None,
                json!({ "code": code.body["code"], "keys_record": keys_record(&identity, label, self.clock.now_ms()) }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let id = r.body["device"]["id"].as_str().unwrap().to_string();
        assert_eq!(id, identity.device_id().to_text());
        (identity, id)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.started.take() {
            s.stop().await.unwrap();
        }
    }
}

/// A logged-in account.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub refresh: String,
    pub user_id: String,
    pub email: String,
    pub password: String,
}

/// A response with its JSON (or text) body.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, body, text }
    }

    /// Asserts an RFC 9457 problem of `kind` with `status`.
    #[track_caller]
    pub fn problem(&self, status: u16, kind: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} {kind}, got {}: {}",
            self.status,
            self.text
        );
        assert_eq!(
            self.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(self.body["type"], format!("urn:tradecast:problem:{kind}"), "{}", self.text);
        assert_eq!(self.body["status"], status, "{}", self.text);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string(), "{}", self.text);
        assert!(self.headers.contains_key("x-request-id"), "no X-Request-Id");
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        &self.body
    }
}

pub fn new_identity() -> Identity {
    let seed: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().unwrap();
    let x: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().unwrap();
    Identity::from_secret_bytes(&seed, &x)
}

pub fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

/// A self-signed `DeviceKeys` record, base64.
pub fn keys_record(identity: &Identity, label: &str, now_ms: i64) -> String {
    let keys = DeviceKeys {
        identity: identity.identity_key(),
        sealing: identity.sealing_public_key(),
        label: label.to_string(),
        at_ms: now_ms,
        account_fingerprint: None,
    };
    let fields = HeaderFields {
        stream: StreamId::DEVICE,
        seq: 1,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: now_ms,
    };
    b64(&Record::sign(identity, fields, &Body::DeviceKeys(keys)).encode())
}

/// A well-formed buy signal of `provider`, created at `now_ms`.
pub fn signal(provider: &Identity, now_ms: i64) -> Signal {
    let d = |s: &str| s.parse().unwrap();
    Signal {
        id: SignalId(tradecast_hub::ids::random_bytes(16).try_into().unwrap()),
        provider: provider.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        side: Side::Buy,
        entry_kind: EntryKind::Market,
        entry: d("1.09128"),
        stop: d("1.08900"),
        tp1: d("1.09500"),
        tp2: Some(d("1.09800")),
        bar_time_ms: now_ms - 3_600_000,
        expires_at_ms: now_ms + 600_000,
        leg: 1,
        indicators: vec![],
        rr: d("1.63"),
    }
}

pub fn fields(seq: u64, now_ms: i64) -> HeaderFields {
    HeaderFields {
        stream: StreamId::SIGNALS,
        seq,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: now_ms,
    }
}

/// Everything needed to post signals: a provider with a device, a plan and an API key.
pub struct ProviderKit {
    pub session: Session,
    pub identity: Identity,
    pub device_id: String,
    pub plan_id: String,
    pub key_id: String,
    pub secret: String,
}

pub async fn provider_kit(hub: &TestHub, admin: &Session) -> ProviderKit {
    let session = hub.user(admin, "provider").await;
    let (identity, device_id) = hub.enrol(&session, "provider node").await;
    let plan = hub
        .post(
            "/api/v1/plans",
            Some(&session.token),
            json!({ "name": "Gold", "price_minor": 4900, "currency": "USD", "period_days": 30 }),
        )
        .await;
    let plan_id = plan.ok(201)["id"].as_str().unwrap().to_string();
    let key =
        hub.post("/api/v1/api-keys", Some(&session.token), json!({ "label": "script" })).await;
    let key_id = key.ok(201)["id"].as_str().unwrap().to_string();
    let secret = key.body["secret"].as_str().unwrap().to_string();
    ProviderKit { session, identity, device_id, plan_id, key_id, secret }
}

/// Posts `body` to the signals API signed with (`key_id`, `secret`) at `timestamp_ms`.
pub async fn post_signal_raw(
    hub: &TestHub,
    key_id: &str,
    secret: &str,
    body: Vec<u8>,
    timestamp_ms: i64,
    nonce: &str,
) -> Resp {
    let path = tradecast_hub::signals::client::SIGNALS_PATH;
    let headers = tradecast_hub::signals::client::auth_headers(
        key_id,
        secret,
        path,
        &body,
        timestamp_ms,
        nonce,
    );
    let mut r = hub.http.post(hub.url(path)).header("content-type", "application/json").body(body);
    for (k, v) in headers {
        r = r.header(k, v);
    }
    Resp::from(r.send().await.unwrap()).await
}

pub fn nonce() -> String {
    random_hex(16)
}

/// Signs and posts `signal` as record `seq` of the kit's provider.
pub async fn post_signal(
    hub: &TestHub,
    kit: &ProviderKit,
    signal: &Signal,
    seq: u64,
) -> (Record, Resp) {
    let now = hub.clock.now_ms();
    let (record, body) =
        tradecast_hub::signals::client::signal_body(&kit.identity, fields(seq, now), signal);
    let r = post_signal_raw(hub, &kit.key_id, &kit.secret, body, now, &nonce()).await;
    (record, r)
}

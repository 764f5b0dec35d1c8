//! The hub's one typed [`Config`]: defaults, then a TOML file, then `TRADECAST_HUB_*`
//! environment variables, then command-line flags; validated once at start, with errors that
//! name the field.
//!
//! Secrets are not part of this struct (see `secrets`), except the database and Redis URLs,
//! which may carry passwords: they are wrapped in [`RedactedUrl`] so `Debug` never shows them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variables with this prefix override config fields: `TRADECAST_HUB_LISTEN`,
/// and nested fields with `__`: `TRADECAST_HUB_HTTP__REQUEST_TIMEOUT_MS`.
pub const ENV_PREFIX: &str = "TRADECAST_HUB_";

/// Environment variables under [`ENV_PREFIX`] that are not config fields.
const ENV_NOT_CONFIG: &[&str] = &["CONFIG", "SECRET_", "LOG"];

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not match the schema (the message names the field).
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A field has a value the hub refuses.
    #[error("invalid configuration: `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The platform has no data directory and none was given.
    #[error("invalid configuration: `data_dir`: no platform data directory; pass --data DIR")]
    NoDataDir,
}

/// Development generates missing secrets into the data dir; production refuses to start
/// without strong ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Missing secrets are generated and kept in `<data_dir>/secrets/`.
    #[default]
    Development,
    /// Every secret must be provided and strong; weak password hashing is refused.
    Production,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, with the request id of the span it was logged in.
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

/// A URL that may contain a password. `Debug` and `Display` show only the scheme.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        RedactedUrl(url.into())
    }
    /// The URL itself, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The scheme (`postgres`, `sqlite`, `redis`), safe to log.
    pub fn scheme(&self) -> &str {
        self.0.split_once(':').map(|(s, _)| s).unwrap_or("?")
    }
}

impl std::fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://[redacted]", self.scheme())
    }
}

/// The whole configuration. Every field has a safe default; units are in the names.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `development` (default) or `production`.
    pub mode: Mode,
    /// Address of the HTTP API. Default `127.0.0.1:7480`: loopback only.
    pub listen: SocketAddr,
    /// Address of the nodes' QUIC endpoint (UDP). Default: `listen`'s IP and port over UDP.
    pub quic_listen: Option<SocketAddr>,
    /// A WebPKI certificate for the QUIC endpoint (`[quic_tls]`). Default: none, the hub
    /// presents a self-signed certificate for its identity key, which nodes pin.
    pub quic_tls: Option<QuicTlsConfig>,
    /// Where the SQLite file and development secrets live. Default: the platform data dir
    /// (`~/.local/share/tradecast-hub` on Linux).
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL; default: SQLite `hub.sqlite3` in `data_dir`.
    pub database_url: Option<RedactedUrl>,
    /// Maximum connections in the database pool. Default 8.
    pub database_max_connections: u32,
    /// `redis://[:password@]host[:port][/db]` to share rate limits between hub instances; default: in-process buckets.
    pub redis_url: Option<RedactedUrl>,
    /// Prefix of the rate-limit keys in Redis (hubs sharing limits use the same). Default
    /// `tradecast:rl:`.
    pub redis_key_prefix: String,
    /// A directory holding one file per secret (Docker/Kubernetes style), read before env.
    pub secrets_dir: Option<PathBuf>,
    /// `json` (default) or `pretty`.
    pub log_format: LogFormat,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Accounts, tokens and password hashing.
    pub auth: AuthConfig,
    /// Token buckets.
    pub rate_limits: RateLimitConfig,
    /// The signals API.
    pub signals: SignalsConfig,
    /// Device enrolment.
    pub devices: DevicesConfig,
    /// The hub's externally reachable base URL (`https://hub.example.com`), for links, webhooks
    /// and the console: its host is the one `Host` the pages answer besides loopback names, and
    /// an `https` URL makes the session cookie `Secure`. Default: none (loopback only).
    pub public_url: Option<PublicUrl>,
    /// The owner's console (`[console]`).
    pub console: ConsoleConfig,
    /// Several instances on one PostgreSQL (`[cluster]`).
    pub cluster: ClusterConfig,
    /// Stripe (`[stripe]`): on when the `stripe_secret_key` secret is set.
    pub stripe: StripeConfig,
    /// The Telegram bot (`[telegram]`): on when `mode` is not `off` and the
    /// `telegram_bot_token` secret is set.
    pub telegram: TelegramConfig,
    /// Plans, subscriptions and dunning (`[billing]`).
    pub billing: BillingConfig,
    /// The outbox runner and the job scheduler (`[outbox]`).
    pub outbox: OutboxConfig,
    /// The public track-record pages, their JSON API and export (`[public]`).
    pub public: PublicConfig,
    /// Traces to an OpenTelemetry collector (`[telemetry]`; needs the `otel` build feature).
    pub telemetry: TelemetryConfig,
}

/// Where the hub sends its traces (OTLP over HTTP, protobuf): every HTTP request is a server
/// span (a `traceparent` header continues the caller's trace), with the spans inside it.
/// Needs a hub built with `--features otel`; a hub built without it refuses to start with
/// `otlp_traces_url` set rather than drop the traces silently.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces` (an
    /// OpenTelemetry Collector, Jaeger, Tempo). Default: none (no traces).
    pub otlp_traces_url: Option<String>,
    /// `service.name` of the spans. Default `tradecast-hub`.
    pub service_name: Option<String>,
}

/// What the public track record shows, and when.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicConfig {
    /// The publication delay, s: nothing the hub received less than this long ago appears on a
    /// provider's public page, in its JSON API or its export, so nothing public hands out a paid
    /// signal before its subscribers had it. 60 s to 30 days; default 3600 (1 h).
    pub delay_s: u64,
}

impl Default for PublicConfig {
    fn default() -> Self {
        PublicConfig { delay_s: 3600 }
    }
}

/// The outbox runner and the job scheduler: polling, leases, retries and each outside
/// service's limits. The limits are per hub instance (in-process token buckets), except
/// Telegram's overall rate, which is also one bucket in Redis shared by every instance when
/// `redis_url` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// How often an idle channel looks for due messages, ms. Default 1000.
    pub poll_interval_ms: u64,
    /// How long a claimed message is leased to the instance sending it, ms; a message whose
    /// lease expired unsent is claimed again and counted as redelivered. Default 60 000.
    pub lease_ms: u64,
    /// Messages one channel claims at a time (and sends concurrently), 1-1000. Default 32.
    pub batch: u32,
    /// Attempts after which a message that keeps failing is a dead letter. Default 10.
    pub max_attempts: u32,
    /// Backoff of the first retry, ms; doubles per attempt, with jitter. Default 2000.
    pub backoff_base_ms: u64,
    /// Longest backoff, ms. Default 3 600 000 (1 h).
    pub backoff_cap_ms: u64,
    /// Telegram: messages per second overall. Default 30.
    pub telegram_per_s: u32,
    /// Telegram: messages per minute to one private chat. Default 60 (1/s).
    pub telegram_per_chat_per_min: u32,
    /// Telegram: messages per minute to one group or channel (a chat id starting with `-`).
    /// Default 20.
    pub telegram_per_group_per_min: u32,
    /// Stripe: requests per second. Default 25.
    pub stripe_per_s: u32,
    /// How often the job scheduler looks for due jobs, ms. Default 5000.
    pub jobs_poll_interval_ms: u64,
    /// How long a running job's lease lasts, ms; renewed while it runs, taken over by another
    /// instance once expired (its instance died). Default 300 000.
    pub jobs_lease_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            poll_interval_ms: 1000,
            lease_ms: 60_000,
            batch: 32,
            max_attempts: 10,
            backoff_base_ms: 2000,
            backoff_cap_ms: 3_600_000,
            telegram_per_s: 30,
            telegram_per_chat_per_min: 60,
            telegram_per_group_per_min: 20,
            stripe_per_s: 25,
            jobs_poll_interval_ms: 5000,
            jobs_lease_ms: 300_000,
        }
    }
}

/// Where the hub reaches Stripe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    /// Stripe's API base URL. Default `https://api.stripe.com`; tests and the demo point it at
    /// the stand-in (`tradecast-standins`).
    pub api_base_url: String,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig { api_base_url: "https://api.stripe.com".into() }
    }
}

/// How the bot receives Telegram's updates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    /// No bot (default).
    #[default]
    Off,
    /// Telegram POSTs updates to `{public_url}/api/v1/telegram/webhook` (needs `public_url`
    /// and the `telegram_webhook_secret` secret); the hub calls `setWebhook` at start.
    Webhook,
    /// The hub long-polls `getUpdates` (no public HTTPS address needed); with several
    /// instances exactly one polls at a time.
    Polling,
}

/// Where and how the hub reaches the Telegram Bot API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// `off` (default), `webhook` or `polling`.
    pub mode: TelegramMode,
    /// The Bot API's base URL; the client calls `{api_base_url}/bot{token}/{method}`. Default
    /// `https://api.telegram.org`; tests and the demo point it at the stand-in.
    pub api_base_url: String,
    /// The bot's username without `@` (for `t.me/<bot>?start=…` links). Default: asked of
    /// Telegram (`getMe`) at start.
    pub bot_username: Option<String>,
    /// How long a link code (`/start <code>`) stays valid, seconds. Default 900 (15 minutes).
    pub link_code_ttl_s: u64,
    /// The Ed25519 public key (64 hex digits) the Mini App's initData `signature` is checked
    /// against. Default: Telegram's production key (tests set their own).
    pub miniapp_public_key: Option<String>,
    /// How long a trader's node must be offline (no sync session) before the bot tells them,
    /// seconds. Default 600 (10 minutes); between 60 and 86400.
    pub offline_after_s: u64,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            mode: TelegramMode::Off,
            api_base_url: "https://api.telegram.org".into(),
            bot_username: None,
            link_code_ttl_s: 900,
            miniapp_public_key: None,
            offline_after_s: 600,
        }
    }
}

/// Plans, subscriptions and dunning.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// How long a subscription whose renewal failed keeps its entitlements (`past_due`) before
    /// it expires. Default 7 days.
    pub grace_period_days: u32,
    /// The hub's account currency (ISO 4217), in which revenue and commissions are reported.
    /// Default `USD`.
    pub currency: String,
    /// One Telegram Star in the account currency (a decimal, e.g. `0.013`): the one rate
    /// billing, affiliates and the console use to report Stars. Default `0.013`.
    pub xtr_rate: rust_decimal::Decimal,
    /// Days before a paid period or trial ends that its holder is reminded on Telegram (0: no
    /// reminders). Default 3.
    pub reminder_days: u32,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            grace_period_days: 7,
            currency: "USD".into(),
            xtr_rate: rust_decimal::Decimal::new(13, 3),
            reminder_days: 3,
        }
    }
}

/// How instances sharing one PostgreSQL tell each other what they committed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `postgres` (LISTEN/NOTIFY on the hub's database), `nats` (JetStream at `nats_url`) or
    /// `none`. Default: `postgres` on a PostgreSQL store, `none` on SQLite (one instance).
    pub bus: Option<BusKind>,
    /// `nats://host:4222` when `bus = "nats"`.
    pub nats_url: Option<RedactedUrl>,
    /// The JetStream stream (and, lowercased, its subject prefix); the instances of one
    /// deployment use the same. Default `TRADECAST_CLUSTER`.
    pub nats_stream: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { bus: None, nats_url: None, nats_stream: "TRADECAST_CLUSTER".into() }
    }
}

/// The cluster bus backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    /// No bus: a single instance.
    None,
    /// PostgreSQL LISTEN/NOTIFY.
    Postgres,
    /// NATS JetStream.
    Nats,
}

impl BusKind {
    /// The configuration's text.
    pub fn as_str(self) -> &'static str {
        match self {
            BusKind::None => "none",
            BusKind::Postgres => "postgres",
            BusKind::Nats => "nats",
        }
    }
}

/// The owner's console.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// How long a console session lasts after its login (absolute, not sliding). Default
    /// 28 800 s (8 h).
    pub session_ttl_s: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig { session_ttl_s: 8 * 3600 }
    }
}

/// An absolute `http` or `https` base URL with a host and no query or fragment, parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicUrl {
    url: String,
    https: bool,
    host: String,
    port: u16,
}

impl PublicUrl {
    /// Parses `raw` (a trailing `/` is dropped).
    pub fn parse(raw: &str) -> Result<PublicUrl, String> {
        let url = raw.trim().trim_end_matches('/').to_string();
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("must start with http:// or https://".into());
        };
        if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must be a base URL without query, fragment or spaces".into());
        }
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@') {
            return Err("must not carry credentials".into());
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = split_authority(authority, default_port)
            .ok_or_else(|| "must name a host (and an optional port)".to_string())?;
        Ok(PublicUrl { url, https, host, port })
    }

    /// The URL as configured, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Whether the URL is `https` (the console's cookie is then `Secure`).
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Whether a request's `Host` header value names this URL's host and port (the port may be
    /// omitted when it is the scheme's default).
    pub fn matches_host(&self, host_header: &str) -> bool {
        let default_port = if self.https { 443 } else { 80 };
        split_authority(host_header, default_port)
            .is_some_and(|(h, p)| h == self.host && p == self.port)
    }
}

/// `host[:port]` (or `[v6]:port`) lowercased, with `default_port` when none is given.
pub fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.to_ascii_lowercase();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        let port = match after {
            "" => default_port,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        (format!("[{inside}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.clone(), default_port),
        }
    };
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    ok.then_some((host, port))
}

impl TryFrom<String> for PublicUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        PublicUrl::parse(&s)
    }
}

impl From<PublicUrl> for String {
    fn from(u: PublicUrl) -> String {
        u.url
    }
}

/// HTTP limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body on ordinary routes. Default 65 536 bytes.
    pub body_limit_bytes: usize,
    /// Largest body on `POST /api/v1/signals`. Default 32 768 bytes (32 KiB).
    pub signal_body_limit_bytes: usize,
    /// A request that takes longer is answered 503 `timeout`. Default 10 000 ms.
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are answered 503 `overloaded` at once (`/health`,
    /// `/ready` and `/metrics` are exempt). Default 1 024.
    pub max_in_flight: usize,
}

/// Accounts, tokens and password hashing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of an access token (JWT). Default 900 s.
    pub access_token_ttl_s: u64,
    /// Lifetime of a refresh token. Default 2 592 000 s (30 days).
    pub refresh_token_ttl_s: u64,
    /// Argon2id memory cost. Default 19 456 KiB (OWASP minimum); production refuses less.
    pub argon2_memory_kib: u32,
    /// Argon2id iterations. Default 2; production refuses less.
    pub argon2_iterations: u32,
    /// Failed logins (per email) allowed before delays start. Default 3.
    pub login_free_failures: u32,
    /// First delay after `login_free_failures`; doubles with each further failure. Default 1 s.
    pub login_delay_base_s: u64,
    /// Failed logins that lock the account. Default 10.
    pub login_lock_failures: u32,
    /// How long a lock lasts. Default 900 s.
    pub login_lock_s: u64,
    /// Failures older than this are forgotten. Default 3 600 s.
    pub login_failure_window_s: u64,
}

/// One token bucket: `burst` tokens, refilled at `per_minute` tokens a minute.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate.
    pub per_minute: u32,
}

/// Token buckets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Every `/api` request, per client IP. Default 120 burst, 1 200/min.
    pub per_ip: BucketConfig,
    /// Every authenticated request, per account. Default 120 burst, 1 200/min.
    pub per_account: BucketConfig,
    /// Login attempts per client IP. Default 10 burst, 30/min.
    pub login_per_ip: BucketConfig,
    /// Signal posts per provider API key. Default 60 burst, 600/min.
    pub signals_per_key: BucketConfig,
}

/// The signals API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// A signal is refused when received more than this after (or before) its
    /// `created_at_ms`. Default 60 000 ms.
    pub max_age_ms: u64,
}

/// The QUIC endpoint's WebPKI certificate (`[quic_tls]`): a public CA's chain for the hub's DNS
/// name. Nodes enrolled from then on check that chain and name (against their system's trust
/// anchors, plus their `hub_ca_file`) instead of pinning the self-signed identity certificate;
/// the hub's identity key is still pinned for its receipts. Nodes enrolled before keep pinning.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuicTlsConfig {
    /// PEM certificate chain, leaf first (e.g. Let's Encrypt's `fullchain.pem`).
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (e.g. `privkey.pem`).
    pub key_file: PathBuf,
    /// The DNS name the certificate is for; nodes verify it (told at enrolment).
    pub server_name: String,
}

/// Device enrolment.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// Lifetime of an enrolment code. Default 600 s.
    pub enrolment_code_ttl_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Development,
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            quic_listen: None,
            quic_tls: None,
            data_dir: None,
            database_url: None,
            database_max_connections: 8,
            redis_url: None,
            redis_key_prefix: "tradecast:rl:".into(),
            secrets_dir: None,
            log_format: LogFormat::Json,
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            rate_limits: RateLimitConfig::default(),
            signals: SignalsConfig::default(),
            devices: DevicesConfig::default(),
            public_url: None,
            console: ConsoleConfig::default(),
            cluster: ClusterConfig::default(),
            stripe: StripeConfig::default(),
            telegram: TelegramConfig::default(),
            billing: BillingConfig::default(),
            outbox: OutboxConfig::default(),
            public: PublicConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit_bytes: 64 * 1024,
            signal_body_limit_bytes: 32 * 1024,
            request_timeout_ms: 10_000,
            max_in_flight: 1024,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_ttl_s: 900,
            refresh_token_ttl_s: 30 * 24 * 3600,
            argon2_memory_kib: ARGON2_MIN_MEMORY_KIB,
            argon2_iterations: ARGON2_MIN_ITERATIONS,
            login_free_failures: 3,
            login_delay_base_s: 1,
            login_lock_failures: 10,
            login_lock_s: 900,
            login_failure_window_s: 3600,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_ip: BucketConfig { burst: 120, per_minute: 1200 },
            per_account: BucketConfig { burst: 120, per_minute: 1200 },
            login_per_ip: BucketConfig { burst: 10, per_minute: 30 },
            signals_per_key: BucketConfig { burst: 60, per_minute: 600 },
        }
    }
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig { max_age_ms: 60_000 }
    }
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig { enrolment_code_ttl_s: 600 }
    }
}

/// OWASP's minimum Argon2id parameters (m = 19 MiB, t = 2, p = 1).
pub const ARGON2_MIN_MEMORY_KIB: u32 = 19_456;
/// See [`ARGON2_MIN_MEMORY_KIB`].
pub const ARGON2_MIN_ITERATIONS: u32 = 2;

/// Command-line values that override everything else (only those given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--quic-listen`.
    pub quic_listen: Option<SocketAddr>,
    /// `--data`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--redis-url`.
    pub redis_url: Option<String>,
    /// `--production`.
    pub production: bool,
}

impl Config {
    /// Loads defaults ← `file` ← environment (`env` yields `(name, value)` pairs, normally
    /// `std::env::vars()`) ← `overrides`, then validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        // Every layer is merged into the defaults, so a layer may set one field of a table.
        let mut table = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Parse(format!("defaults: {e}")))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            let from_file =
                text.parse::<toml::Table>().map_err(|e| ConfigError::Parse(e.to_string()))?;
            merge(&mut table, from_file);
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            if ENV_NOT_CONFIG.iter().any(|p| rest.starts_with(p)) {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            set_path(&mut table, &path, env_value(&value)).map_err(|()| {
                ConfigError::Parse(format!("environment variable {name} conflicts with a table"))
            })?;
        }
        let s = |v: String| toml::Value::String(v);
        if let Some(l) = overrides.listen {
            table.insert("listen".into(), s(l.to_string()));
        }
        if let Some(l) = overrides.quic_listen {
            table.insert("quic_listen".into(), s(l.to_string()));
        }
        if let Some(d) = &overrides.data_dir {
            table.insert("data_dir".into(), s(d.display().to_string()));
        }
        if let Some(u) = &overrides.database_url {
            table.insert("database_url".into(), s(u.clone()));
        }
        if let Some(u) = &overrides.redis_url {
            table.insert("redis_url".into(), s(u.clone()));
        }
        if overrides.production {
            table.insert("mode".into(), s("production".into()));
        }
        let config: Config = table.try_into().map_err(|e: toml::de::Error| {
            ConfigError::Parse(e.to_string().trim_end().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but are unacceptable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(field: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid { field, reason: reason.into() })
        }
        if let Some(url) = &self.database_url
            && !matches!(url.scheme(), "postgres" | "postgresql" | "sqlite")
        {
            return bad("database_url", "must start with postgres://, postgresql:// or sqlite:");
        }
        if let Some(url) = &self.telemetry.otlp_traces_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad("telemetry.otlp_traces_url", "must be an http:// or https:// URL");
        }
        if self.telemetry.service_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return bad("telemetry.service_name", "must not be empty");
        }
        if let Some(url) = &self.redis_url
            && url.scheme() != "redis"
        {
            return bad("redis_url", "must start with redis://");
        }
        let postgres = self
            .database_url
            .as_ref()
            .is_some_and(|u| matches!(u.scheme(), "postgres" | "postgresql"));
        match self.cluster.bus {
            Some(BusKind::Postgres) if !postgres => {
                return bad("cluster.bus", "`postgres` needs a PostgreSQL `database_url`");
            }
            Some(BusKind::Nats) if self.cluster.nats_url.is_none() => {
                return bad("cluster.nats_url", "is required when cluster.bus = \"nats\"");
            }
            _ => {}
        }
        if let Some(url) = &self.cluster.nats_url
            && !matches!(url.scheme(), "nats" | "tls")
        {
            return bad("cluster.nats_url", "must start with nats:// or tls://");
        }
        let stream = &self.cluster.nats_stream;
        if stream.is_empty()
            || stream.len() > 64
            || !stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return bad("cluster.nats_stream", "must be 1-64 letters, digits, `_` or `-`");
        }
        if !(self.stripe.api_base_url.starts_with("https://")
            || self.stripe.api_base_url.starts_with("http://"))
        {
            return bad("stripe.api_base_url", "must start with https:// or http://");
        }
        let t = &self.telegram;
        if !(t.api_base_url.starts_with("https://") || t.api_base_url.starts_with("http://")) {
            return bad("telegram.api_base_url", "must start with https:// or http://");
        }
        let username_ok = |n: &str| {
            (5..=32).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if t.bot_username.as_deref().is_some_and(|n| !username_ok(n)) {
            return bad("telegram.bot_username", "must be 5-32 letters, digits or `_` (no `@`)");
        }
        if !(60..=86_400).contains(&t.link_code_ttl_s) {
            return bad("telegram.link_code_ttl_s", "must be between 60 and 86400");
        }
        if !(60..=86_400).contains(&t.offline_after_s) {
            return bad("telegram.offline_after_s", "must be between 60 and 86400");
        }
        if t.miniapp_public_key.is_some()
            && crate::miniapp::init_data::public_key(t.miniapp_public_key.as_deref()).is_err()
        {
            return bad("telegram.miniapp_public_key", "must be an Ed25519 key of 64 hex digits");
        }
        if t.mode == TelegramMode::Webhook && self.public_url.is_none() {
            return bad(
                "telegram.mode",
                "`webhook` needs `public_url` (Telegram must reach the hub); use `polling` without one",
            );
        }
        if self.billing.reminder_days > 30 {
            return bad("billing.reminder_days", "must be at most 30");
        }
        if self.billing.grace_period_days > 60 {
            return bad("billing.grace_period_days", "must be at most 60");
        }
        let cur = &self.billing.currency;
        if cur.len() != 3 || !cur.bytes().all(|b| b.is_ascii_uppercase()) || cur == "XTR" {
            return bad("billing.currency", "must be an ISO 4217 code such as USD (not XTR)");
        }
        if self.billing.xtr_rate <= rust_decimal::Decimal::ZERO {
            return bad("billing.xtr_rate", "must be a positive decimal");
        }
        let o = &self.outbox;
        if !(10..=60_000).contains(&o.poll_interval_ms) {
            return bad("outbox.poll_interval_ms", "must be between 10 and 60000");
        }
        if !(100..=86_400_000).contains(&o.lease_ms) {
            return bad("outbox.lease_ms", "must be between 100 and 86400000");
        }
        if !(1..=1000).contains(&o.batch) {
            return bad("outbox.batch", "must be between 1 and 1000");
        }
        if !(1..=1000).contains(&o.max_attempts) {
            return bad("outbox.max_attempts", "must be between 1 and 1000");
        }
        if o.backoff_base_ms == 0 || o.backoff_cap_ms < o.backoff_base_ms {
            return bad("outbox.backoff_cap_ms", "must be at least backoff_base_ms (> 0)");
        }
        for (field, v) in [
            ("outbox.telegram_per_s", o.telegram_per_s),
            ("outbox.telegram_per_chat_per_min", o.telegram_per_chat_per_min),
            ("outbox.telegram_per_group_per_min", o.telegram_per_group_per_min),
            ("outbox.stripe_per_s", o.stripe_per_s),
        ] {
            if !(1..=100_000).contains(&v) {
                return bad(field, "must be between 1 and 100000");
            }
        }
        if !(10..=3_600_000).contains(&o.jobs_poll_interval_ms) {
            return bad("outbox.jobs_poll_interval_ms", "must be between 10 and 3600000");
        }
        if !(100..=86_400_000).contains(&o.jobs_lease_ms) {
            return bad("outbox.jobs_lease_ms", "must be between 100 and 86400000");
        }
        if self.database_max_connections == 0 || self.database_max_connections > 512 {
            return bad("database_max_connections", "must be between 1 and 512");
        }
        let h = &self.http;
        if !(1024..=16 * 1024 * 1024).contains(&h.body_limit_bytes) {
            return bad("http.body_limit_bytes", "must be between 1024 and 16777216");
        }
        if !(1024..=1024 * 1024).contains(&h.signal_body_limit_bytes) {
            return bad("http.signal_body_limit_bytes", "must be between 1024 and 1048576");
        }
        if !(100..=600_000).contains(&h.request_timeout_ms) {
            return bad("http.request_timeout_ms", "must be between 100 and 600000");
        }
        if !(1..=1_000_000).contains(&h.max_in_flight) {
            return bad("http.max_in_flight", "must be between 1 and 1000000");
        }
        let a = &self.auth;
        if !(10..=86_400).contains(&a.access_token_ttl_s) {
            return bad("auth.access_token_ttl_s", "must be between 10 and 86400");
        }
        if a.refresh_token_ttl_s < a.access_token_ttl_s {
            return bad("auth.refresh_token_ttl_s", "must be at least auth.access_token_ttl_s");
        }
        if a.argon2_memory_kib < 8 || a.argon2_iterations == 0 {
            return bad("auth.argon2_memory_kib", "argon2 needs at least 8 KiB and 1 iteration");
        }
        if self.mode == Mode::Production
            && (a.argon2_memory_kib < ARGON2_MIN_MEMORY_KIB
                || a.argon2_iterations < ARGON2_MIN_ITERATIONS)
        {
            return bad(
                "auth.argon2_memory_kib",
                format!(
                    "production refuses password hashing weaker than m={ARGON2_MIN_MEMORY_KIB} KiB, t={ARGON2_MIN_ITERATIONS}"
                ),
            );
        }
        if a.login_lock_failures <= a.login_free_failures {
            return bad(
                "auth.login_lock_failures",
                "must be greater than auth.login_free_failures",
            );
        }
        if a.login_lock_s == 0 || a.login_delay_base_s == 0 {
            return bad("auth.login_lock_s", "login delays and locks must be at least 1 s");
        }
        let r = &self.rate_limits;
        for (field, b) in [
            ("rate_limits.per_ip", r.per_ip),
            ("rate_limits.per_account", r.per_account),
            ("rate_limits.login_per_ip", r.login_per_ip),
            ("rate_limits.signals_per_key", r.signals_per_key),
        ] {
            if b.burst == 0 || b.per_minute == 0 {
                return bad(field, "burst and per_minute must be at least 1");
            }
        }
        if !(1_000..=3_600_000).contains(&self.signals.max_age_ms) {
            return bad("signals.max_age_ms", "must be between 1000 and 3600000");
        }
        if let Some(t) = &self.quic_tls
            && !tradecast_quic::is_dns_name(&t.server_name)
        {
            return bad("quic_tls.server_name", "must be the DNS name the certificate is for");
        }
        if !(30..=86_400).contains(&self.devices.enrolment_code_ttl_s) {
            return bad("devices.enrolment_code_ttl_s", "must be between 30 and 86400");
        }
        if !(60..=30 * 86_400).contains(&self.public.delay_s) {
            return bad("public.delay_s", "must be between 60 and 2592000");
        }
        if !(60..=30 * 86_400).contains(&self.console.session_ttl_s) {
            return bad("console.session_ttl_s", "must be between 60 and 2592000");
        }
        Ok(())
    }

    /// The data directory: `data_dir`, or the platform's (`dirs::data_dir()/tradecast-hub`).
    pub fn resolved_data_dir(&self) -> Result<PathBuf, ConfigError> {
        match &self.data_dir {
            Some(d) => Ok(d.clone()),
            None => platform_data_dir(|k| std::env::var_os(k))
                .map(|d| d.join("tradecast-hub"))
                .ok_or(ConfigError::NoDataDir),
        }
    }
}

/// The platform's per-user data directory, from the environment (what the `dirs` crate does,
/// without its MPL-licensed dependency): `$XDG_DATA_HOME` or `~/.local/share` on Linux and
/// other Unix, `~/Library/Application Support` on macOS, `%LOCALAPPDATA%` on Windows.
pub fn platform_data_dir(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let absolute = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if cfg!(windows) {
        return absolute(var("LOCALAPPDATA"));
    }
    let home = absolute(var("HOME"));
    if cfg!(target_os = "macos") {
        return home.map(|h| h.join("Library").join("Application Support"));
    }
    absolute(var("XDG_DATA_HOME")).or_else(|| home.map(|h| h.join(".local").join("share")))
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// An environment value as TOML: integers and booleans as such, anything else a string.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), ()> {
    match path {
        [] => Err(()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("tc-hub-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{}.toml", crate::ids::random_hex(8)));
        std::fs::write(&file, toml_text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let out = Config::load(Some(&file), env, &Overrides::default());
        std::fs::remove_file(&file).unwrap();
        out
    }

    fn check_err(toml_text: &str, env: &[(&str, &str)], expect_in_message: &str) {
        let err = load(toml_text, env).expect_err("config should be refused").to_string();
        assert!(err.contains(expect_in_message), "{err:?} should contain {expect_in_message:?}");
    }

    #[test]
    fn defaults_are_safe() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7480".parse().unwrap());
        assert_eq!(c.mode, Mode::Development);
        assert_eq!(c.http.signal_body_limit_bytes, 32 * 1024);
        assert_eq!(c.auth.argon2_memory_kib, ARGON2_MIN_MEMORY_KIB);
    }

    #[test]
    fn file_then_env_then_flags() {
        let c = load(
            "listen = \"127.0.0.1:9000\"\n[http]\nrequest_timeout_ms = 5000\n",
            &[("TRADECAST_HUB_HTTP__REQUEST_TIMEOUT_MS", "7000"), ("OTHER", "x")],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.http.request_timeout_ms, 7000);
        let o = Overrides { listen: Some("127.0.0.1:9100".parse().unwrap()), ..Default::default() };
        let c = Config::load(None, [("TRADECAST_HUB_LISTEN".into(), "127.0.0.1:9050".into())], &o)
            .unwrap();
        assert_eq!(c.listen.port(), 9100);
    }

    #[test]
    fn one_field_of_a_table_can_be_set() {
        let c = load(
            "[rate_limits.per_ip]\nburst = 7\n",
            &[("TRADECAST_HUB_RATE_LIMITS__LOGIN_PER_IP__BURST", "99")],
        )
        .unwrap();
        assert_eq!(c.rate_limits.per_ip, BucketConfig { burst: 7, per_minute: 1200 });
        assert_eq!(c.rate_limits.login_per_ip, BucketConfig { burst: 99, per_minute: 30 });
        assert_eq!(c.auth.login_lock_s, 900);
    }

    #[test]
    fn errors_name_the_field() {
        check_err("[http]\nrequest_timeout_ms = \"soon\"\n", &[], "http.request_timeout_ms");
        check_err("listen = \"nowhere\"\n", &[], "listen");
        let tls = |name: &str| {
            format!(
                "[quic_tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nserver_name = \"{name}\"\n"
            )
        };
        check_err(&tls("127.0.0.1"), &[], "quic_tls.server_name");
        check_err(&tls("not a name"), &[], "quic_tls.server_name");
        check_err("[quic_tls]\ncert_file = \"c.pem\"\n", &[], "key_file");
        assert!(load(&tls("hub.example.com"), &[]).is_ok());
        check_err("colour = 1\n", &[], "colour");
        check_err("[telegram]\nmode = \"webhook\"\n", &[], "telegram.mode");
        check_err("[telegram]\nmode = \"carrier-pigeon\"\n", &[], "telegram");
        check_err("[telegram]\nbot_username = \"@tradecast_bot\"\n", &[], "telegram.bot_username");
        check_err("[telegram]\napi_base_url = \"ftp://x\"\n", &[], "telegram.api_base_url");
        let tg = load(
            "public_url = \"https://hub.example.com\"\n[telegram]\nmode = \"webhook\"\nbot_username = \"tradecast_bot\"\n",
            &[("TRADECAST_HUB_TELEGRAM__LINK_CODE_TTL_S", "600")],
        )
        .unwrap();
        assert_eq!(tg.telegram.mode, TelegramMode::Webhook);
        assert_eq!(tg.telegram.link_code_ttl_s, 600);
        check_err("", &[("TRADECAST_HUB_HTTP__BODY_LIMIT_BYTES", "big")], "http.body_limit_bytes");
        check_err("[http]\nrequest_timeout_ms = 5\n", &[], "`http.request_timeout_ms`");
        check_err("[rate_limits.per_ip]\nburst = 0\nper_minute = 1\n", &[], "`rate_limits.per_ip`");
        check_err("database_url = \"mysql://x\"\n", &[], "`database_url`");
        check_err(
            "mode = \"production\"\n[auth]\nargon2_memory_kib = 1024\n",
            &[],
            "`auth.argon2_memory_kib`",
        );
        check_err("mode = \"staging\"\n", &[], "mode");
        check_err("[rate_limits.per_ip]\nburst = 5\nper_minute = 1\nspeed = 2\n", &[], "speed");
        check_err("public_url = \"ftp://hub.example.com\"\n", &[], "public_url");
        check_err("public_url = \"https://\"\n", &[], "public_url");
        check_err("public_url = \"https://a@hub.example.com\"\n", &[], "public_url");
        check_err("[console]\nsession_ttl_s = 5\n", &[], "`console.session_ttl_s`");
    }

    #[test]
    fn public_delay_defaults_to_an_hour_and_is_bounded() {
        assert_eq!(load("", &[]).unwrap().public.delay_s, 3600);
        let c = load("[public]\ndelay_s = 900\n", &[]).unwrap();
        assert_eq!(c.public.delay_s, 900);
        let c = load("", &[("TRADECAST_HUB_PUBLIC__DELAY_S", "7200")]).unwrap();
        assert_eq!(c.public.delay_s, 7200);
        check_err("[public]\ndelay_s = 0\n", &[], "`public.delay_s`");
        check_err("[public]\ndelay_s = 2592001\n", &[], "`public.delay_s`");
        check_err("[public]\ndelay = 60\n", &[], "delay");
    }

    #[test]
    fn public_url_names_the_console_host() {
        let c = load("public_url = \"https://Hub.Example.com/\"\n", &[]).unwrap();
        let u = c.public_url.unwrap();
        assert_eq!(u.as_str(), "https://Hub.Example.com");
        assert!(u.is_https());
        for (host, ok) in [
            ("hub.example.com", true),
            ("HUB.example.com:443", true),
            ("hub.example.com:8443", false),
            ("evil.example.com", false),
            ("hub.example.com.evil.com", false),
            ("", false),
        ] {
            assert_eq!(u.matches_host(host), ok, "{host}");
        }
        let u = PublicUrl::parse("http://[::1]:8080/hub").unwrap();
        assert!(!u.is_https());
        assert!(u.matches_host("[::1]:8080") && !u.matches_host("[::1]"));
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn data_dir_follows_xdg() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).into())
        };
        let check = |pairs: &'static [(&'static str, &'static str)], expect: Option<&str>| {
            assert_eq!(platform_data_dir(env(pairs)), expect.map(PathBuf::from), "{pairs:?}");
        };
        check(&[("HOME", "/home/a")], Some("/home/a/.local/share"));
        check(&[("HOME", "/home/a"), ("XDG_DATA_HOME", "/x")], Some("/x"));
        check(&[("HOME", "/home/a"), ("XDG_DATA_HOME", "rel")], Some("/home/a/.local/share"));
        check(&[], None);
    }

    #[test]
    fn urls_are_redacted_in_debug() {
        let c = load("database_url = \"postgres://hub:hunter2@db/hub\"\n", &[]).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("postgres://[redacted]"), "{debug}");
    }
}

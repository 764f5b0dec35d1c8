//! `tradecast-hub`: the central service that verifies provider-signed signals and fans them out.
//!
//! It depends on `tradecast-protocol` only among our crates: never on the node or the sim.
//! This crate owns the HTTP API (`api`, `http`), the SQL store (`db`, migrations embedded from
//! `migrations/`), accounts (`accounts`, `tokens`), abuse controls (`ratelimit`), the audit
//! chain (`audit`), devices, plans, signals and approvals. [`start`] runs a hub on a listener;
//! [`run`] is what `tradecast-hub serve` calls. [`quic`] is the nodes' QUIC endpoint, started
//! beside the HTTP listener. [`ui`] is the owner's console: server-rendered pages on the HTTP
//! listener, with a cookie session of hub accounts. [`backup`] is `backup` and `restore`.
//! [`outbox`] sends what the hub owes outside services (rows committed with their cause, a
//! runner with per-service limits, retries and dead letters); [`jobs`] runs background jobs once
//! per due time across instances. Both start with the hub ([`Extensions`] gives them their
//! deliverers and jobs) and stop with it. [`public`] is the provider's public track record
//! (`/p/{provider}`, `/public/v1/…`, delayed by `public.delay_s`), computed by [`analytics`]
//! with the protocol crate's `track` functions, which `tradecast-hub verify` runs offline.

pub mod accounts;
pub mod affiliates;
pub mod analytics;
pub mod api;
pub mod apikeys;
pub mod approvals;
pub mod audit;
pub mod backup;
pub mod billing;
pub mod charts;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod db;
pub mod devices;
pub mod entitlements;
pub mod error;
pub mod features;
pub mod feed;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod miniapp;
pub mod outbox;
pub mod plans;
pub mod public;
pub mod quic;
pub mod ratelimit;
pub mod relay;
pub mod scrape;
pub mod secrets;
pub mod share;
pub mod signals;
pub mod state;
pub mod telegram;
pub mod telemetry;
pub mod tokens;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

use crate::config::{Config, ConfigError};
use crate::db::{Db, DbError};
use crate::ids::Clock;
use crate::ratelimit::{LimitError, MemoryLimiter, RateLimiter, RedisLimiter};
use crate::secrets::{DirSecrets, EnvSecrets, HubSecrets, SecretError, SecretProvider};
use crate::state::{AppState, Inner};
use crate::tokens::JwtKeys;

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Configuration refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Secrets missing, malformed or weak.
    #[error(transparent)]
    Secrets(#[from] SecretError),
    /// Database unreachable or migrations failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Redis unreachable.
    #[error("rate limiter: {0}")]
    Limiter(#[from] LimitError),
    /// The listener could not be bound, or the data dir created.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The QUIC endpoint could not start.
    #[error(transparent)]
    Quic(#[from] quic::QuicError),
    /// The cluster bus did not connect.
    #[error("{0}")]
    Cluster(#[from] cluster::BusError),
    /// The Stripe client could not be built from `[stripe]` and its secret.
    #[error("stripe: {0}")]
    Stripe(#[from] billing::stripe::StripeError),
}

/// The database URL the config selects: `database_url`, or SQLite in the data dir.
pub fn database_url(config: &Config) -> Result<String, StartError> {
    match &config.database_url {
        Some(url) => Ok(url.expose().to_string()),
        None => {
            let dir = config.resolved_data_dir()?;
            std::fs::create_dir_all(&dir)?;
            Ok(Db::sqlite_url_in(&dir))
        }
    }
}

/// Connects to the configured database and applies pending migrations.
pub async fn open_db(config: &Config) -> Result<Db, StartError> {
    let db = Db::connect(&database_url(config)?, config.database_max_connections).await?;
    db.migrate().await?;
    Ok(db)
}

/// The secret providers of `config`: `secrets_dir` first, then the environment.
pub fn secret_providers(
    config: &Config,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<Box<dyn SecretProvider>> {
    let mut providers: Vec<Box<dyn SecretProvider>> = Vec::new();
    if let Some(dir) = &config.secrets_dir {
        providers.push(Box::new(DirSecrets::new(dir)));
    }
    providers.push(Box::new(EnvSecrets::new(env)));
    providers
}

/// Loads the hub's secrets as `config.mode` requires (development generates missing ones into
/// `<data_dir>/secrets`).
pub fn load_secrets(
    config: &Config,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<HubSecrets, StartError> {
    let generated = config.resolved_data_dir()?.join("secrets");
    Ok(HubSecrets::load(&secret_providers(config, env), config.mode, &generated)?)
}

/// The hub's protocol identity from its secret seed. The X25519 half is derived from the seed
/// under its own domain tag, so one secret carries both.
pub fn hub_identity(secrets: &HubSecrets) -> tradecast_protocol::Identity {
    let mut h = sha2::Sha256::new();
    h.update(b"tradecast/hub/x25519/v1");
    h.update(&secrets.hub_identity_key[..]);
    let mut x = zeroize::Zeroizing::new([0u8; 32]);
    x.copy_from_slice(&h.finalize());
    tradecast_protocol::Identity::from_secret_bytes(&secrets.hub_identity_key, &x)
}

/// Builds the shared state on an open, migrated database.
pub async fn build_state(
    config: Config,
    secrets: HubSecrets,
    db: Db,
    clock: Clock,
) -> Result<AppState, StartError> {
    let limiter: Arc<dyn RateLimiter> = match &config.redis_url {
        Some(url) => Arc::new(RedisLimiter::connect(url.expose(), &config.redis_key_prefix).await?),
        None => Arc::new(MemoryLimiter::new()),
    };
    let jwt = JwtKeys::new(&secrets);
    let hub_identity = hub_identity(&secrets);
    let started_at_ms = clock.now_ms();
    let cluster = cluster::Cluster::connect(&config, &db).await?;
    let billing = billing::Billing::new(&config, &secrets.integrations)?;
    let telegram = telegram::Telegram::new(&config, &secrets.integrations)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let relay_cursors = relay::CursorWriter::start(db.clone());
    Ok(AppState(Arc::new(Inner {
        relay_cursors,
        config,
        db,
        jwt,
        secrets,
        hub_identity,
        limiter,
        clock,
        metrics: telemetry::metrics_handle(),
        quic_peers: quic::Peers::default(),
        feed_bell: feed::FeedBell::default(),
        relay: relay::Registry::default(),
        entitlement_changes: entitlements::Changes::default(),
        cluster,
        billing,
        telegram,
        started_at_ms,
        outbox_bell: tokio::sync::Notify::new(),
        public_cache: Default::default(),
    })))
}

/// A hub serving on a socket.
#[derive(Debug)]
pub struct Started {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The bound QUIC (UDP) address of the nodes' endpoint.
    pub quic_addr: SocketAddr,
    /// The shared state (tests reach the database and the clock through it).
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    janitor: tokio::task::JoinHandle<()>,
    cluster_tasks: Vec<tokio::task::JoinHandle<()>>,
    telegram_tasks: Vec<tokio::task::JoinHandle<()>>,
    quic: Option<quic::QuicHub>,
    runner: Option<outbox::RunnerHandle>,
    scheduler: Option<jobs::SchedulerHandle>,
    /// SQLite: the data's lock, held shared while the hub runs (restore refuses meanwhile).
    _lock: Option<backup::DataLock>,
}

impl Started {
    /// Stops accepting, finishes in-flight requests, closes the pool.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.janitor.abort();
        if let Some(r) = self.runner.take() {
            r.stop().await;
        }
        if let Some(s) = self.scheduler.take() {
            s.stop().await;
        }
        for t in self.cluster_tasks.iter().chain(&self.telegram_tasks) {
            t.abort();
        }
        if let Some(q) = self.quic.take() {
            q.stop().await;
        }
        self.state.relay_cursors.flush().await;
        let result = match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        self.state.db.close().await;
        result
    }

    /// Resolves when the server task ends by itself (an I/O error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Opens the database, builds the state and serves on `config.listen`.
pub async fn start(config: Config, secrets: HubSecrets) -> Result<Started, StartError> {
    let db = open_db(&config).await?;
    start_with_extensions(config, secrets, db, Clock::default(), Extensions::production()).await
}

/// What the integrations add to a hub at its start: the outbox's deliverers (a channel
/// without one keeps its messages queued) and the background jobs. The default adds nothing.
#[derive(Default)]
pub struct Extensions {
    /// One deliverer per channel the hub sends (Telegram, Stripe).
    pub deliverers: Vec<(outbox::Channel, Arc<dyn outbox::Deliver>)>,
    /// The jobs this instance runs (once per due time across instances).
    pub jobs: jobs::Scheduler,
}

impl Extensions {
    /// What a served hub runs: billing's nightly reconciliation with Stripe (a no-op while
    /// Stripe is off).
    pub fn production() -> Extensions {
        let mut ext = Extensions::default();
        billing::register_jobs(&mut ext.jobs);
        telegram::register_jobs(&mut ext.jobs);
        affiliates::register_jobs(&mut ext.jobs);
        ext
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channels: Vec<_> = self.deliverers.iter().map(|(c, _)| *c).collect();
        f.debug_struct("Extensions")
            .field("deliverers", &channels)
            .field("jobs", &self.jobs)
            .finish()
    }
}

/// [`start`] on an already opened, migrated database and a given clock.
pub async fn start_with(
    config: Config,
    secrets: HubSecrets,
    db: Db,
    clock: Clock,
) -> Result<Started, StartError> {
    start_with_extensions(config, secrets, db, clock, Extensions::default()).await
}

/// [`start_with`] plus the outbox's deliverers and the background jobs of `ext`.
pub async fn start_with_extensions(
    config: Config,
    secrets: HubSecrets,
    db: Db,
    clock: Clock,
    ext: Extensions,
) -> Result<Started, StartError> {
    let lock = match backup::sqlite_path(&database_url(&config)?) {
        Some(path) => {
            Some(backup::DataLock::serve(&path).map_err(|e| std::io::Error::other(e.to_string()))?)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let state = build_state(config, secrets, db, clock).await?;
    let mut cluster_tasks = cluster::spawn(&state);
    cluster_tasks.push(relay::spawn_refresher(&state));
    cluster_tasks.push(relay::spawn_tip_watch(&state, relay::TIP_WATCH));
    // The outcome rows a crash left out, written in the background.
    let sweep = state.clone();
    cluster_tasks.push(tokio::spawn(async move {
        match relay::write_missing_expected(&sweep.db, sweep.now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "wrote the outcome rows of signals relayed before a crash"),
            Err(e) => tracing::warn!(error = %e, "writing missing outcome rows failed"),
        }
    }));
    let quic = start_quic(&state, addr)?;
    let quic_addr = quic.addr;
    let app = api::app(state.clone(), addr);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(http::serve(listener, app, async move {
        let _ = rx.await;
    }));
    let janitor_state = state.clone();
    let janitor = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = signals::prune_nonces(&janitor_state.db, janitor_state.now_ms()).await {
                tracing::warn!(error = %e, "pruning HMAC nonces failed");
            }
            if let Err(e) = ui::session::prune(&janitor_state.db, janitor_state.now_ms()).await {
                tracing::warn!(error = %e, "pruning expired console sessions failed");
            }
            if let Err(e) =
                ui::account::prune_links(&janitor_state.db, janitor_state.now_ms()).await
            {
                tracing::warn!(error = %e, "pruning used device links failed");
            }
            if let Err(e) = miniapp::session::prune(&janitor_state.db, janitor_state.now_ms()).await
            {
                tracing::warn!(error = %e, "pruning ended Mini App sessions failed");
            }
            if let Err(e) = telegram::prune(&janitor_state.db, janitor_state.now_ms()).await {
                tracing::warn!(error = %e, "pruning Telegram link codes and updates failed");
            }
        }
    });
    let mut deliverers = ext.deliverers;
    // The bot sends its own outbox rows (unless the caller brought a Telegram deliverer).
    if let Some(bot) = state.telegram.bot()
        && !deliverers.iter().any(|(c, _)| *c == outbox::Channel::Telegram)
    {
        let d = telegram::bot::Deliverer::new(bot.clone(), state.clone());
        deliverers.push((outbox::Channel::Telegram, Arc::new(d)));
    }
    let runner = outbox::Runner::start(state.clone(), deliverers);
    let telegram_tasks = telegram::start(&state);
    let scheduler = ext.jobs.start(state.clone());
    tracing::info!(%addr, backend = ?state.db.backend(), mode = ?state.config.mode, "hub listening");
    tracing::info!(
        %quic_addr,
        hub_device_id = %state.hub_identity.device_id().to_text(),
        "hub quic endpoint listening (nodes pin this key)"
    );
    Ok(Started {
        addr,
        quic_addr,
        state,
        shutdown: Some(tx),
        task,
        janitor,
        cluster_tasks,
        telegram_tasks,
        quic: Some(quic),
        runner: Some(runner),
        scheduler: Some(scheduler),
        _lock: lock,
    })
}

/// Starts the QUIC endpoint on `quic_listen`, or by default on the HTTP address's IP and port
/// over UDP (an ephemeral UDP port when that one is taken and the HTTP port was ephemeral).
fn start_quic(state: &AppState, http_addr: SocketAddr) -> Result<quic::QuicHub, StartError> {
    if let Some(addr) = state.config.quic_listen {
        return Ok(quic::start(state.clone(), addr)?);
    }
    match quic::start(state.clone(), http_addr) {
        Ok(q) => Ok(q),
        Err(quic::QuicError::Io(_)) if state.config.listen.port() == 0 => {
            Ok(quic::start(state.clone(), SocketAddr::new(http_addr.ip(), 0))?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `tradecast-hub serve`: starts and runs until `shutdown` resolves.
pub async fn run(
    config: Config,
    env: impl IntoIterator<Item = (String, String)>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let secrets = load_secrets(&config, env)?;
    let mut hub = start(config, secrets).await?;
    tokio::select! {
        r = hub.wait() => return Ok(r?),
        () = shutdown => {}
    }
    tracing::info!("shutting down");
    hub.stop().await?;
    Ok(())
}

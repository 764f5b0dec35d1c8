//! Starting and running a node: `init` (identity, store, config, API token in a data dir),
//! `ea-key new`, and [`run`], which opens the store, binds the EA link and the local API on
//! loopback and serves both until shutdown. The binaries (CLI, desktop shell) call these; tests
//! call [`start`] to get the bound addresses back.
//!
//! For the desktop shell: [`start`] hands back the bound addresses and the node (shut it down
//! with the [`tokio_util_shutdown::Shutdown`] it was given, then [`Running::join`]); a started
//! node writes [`RUNNING_FILE`] into its data dir (process id and both addresses, no secret) and
//! [`Running::join`] removes it, so another process finds a node that already owns the data dir
//! with [`running_node`] and talks to it through the local API instead of opening the store
//! twice. The EA link's URL is also kept in the store ([`EA_URL_SETTING`]) for the UI's setup
//! page, which must tell the trader the exact URL to allow in MT5.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::clock::wall_ms;
use crate::config::{Config, ConfigError, TOKEN_FILE};
use crate::keys::{self, EaKey};
use crate::runtime::{self, Node, NodeError};
use crate::store::{self, Store, StoreError};

/// The file a started node writes into its data dir (JSON [`RunningNode`]) and removes when it
/// stops. A crash leaves it behind: readers check that the node answers before they trust it.
pub const RUNNING_FILE: &str = "running.json";

pub use crate::store::EA_URL_SETTING;

/// What [`RUNNING_FILE`] says: which process serves the data dir, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunningNode {
    /// The node's process id.
    pub pid: u32,
    /// The local API's bound address (API and web UI).
    pub api_addr: SocketAddr,
    /// The EA link's bound address.
    pub ea_addr: SocketAddr,
}

/// The node that says it owns `data` ([`RUNNING_FILE`]), if the file is there and well formed.
/// The file may be stale (a crash): ask the API before trusting it. A damaged file is `None`.
pub fn running_node(data: &Path) -> Option<RunningNode> {
    let text = std::fs::read_to_string(data.join(RUNNING_FILE)).ok()?;
    match serde_json::from_str::<RunningNode>(&text) {
        Ok(r) if r.api_addr.ip().is_loopback() && r.ea_addr.ip().is_loopback() => Some(r),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(target: "tradecast::node", error = %e, "ignoring a damaged {RUNNING_FILE}");
            None
        }
    }
}

/// Why starting or running failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node refused.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A file or a socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Creates a data dir: config with defaults (if none), store with a fresh identity, API token.
/// Returns the device id's text form.
pub fn init(data: &Path) -> Result<String, RunError> {
    std::fs::create_dir_all(data).map_err(io(format!("create {}", data.display())))?;
    if !data.join(crate::config::FILE_NAME).exists() {
        Config::default().write(data)?;
    }
    let holidays = data.join(crate::config::HOLIDAYS_FILE);
    if !holidays.exists() {
        std::fs::write(&holidays, crate::policy::calendar::default_calendar_toml())
            .map_err(io(format!("write {}", holidays.display())))?;
    }
    let store = Store::open(&data.join(store::FILE_NAME))?;
    let id = runtime::init_store(&store)?;
    let token = keys::new_api_token().map_err(NodeError::from)?;
    write_private(&data.join(TOKEN_FILE), token.as_bytes())?;
    Ok(id.to_text())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(format!("write {}", path.display())))?;
    f.write_all(bytes).map_err(io(format!("write {}", path.display())))?;
    f.sync_all().map_err(io(format!("sync {}", path.display())))
}

/// Reads the local API token of a data dir.
pub fn api_token(data: &Path) -> Result<Zeroizing<String>, RunError> {
    let path = data.join(TOKEN_FILE);
    let t = std::fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))?;
    Ok(Zeroizing::new(t.trim().to_owned()))
}

/// The URL that opens the web UI of the data dir's node (`api_listen`, else the config's).
pub fn ui_url(data: &Path, api_listen: Option<SocketAddr>) -> Result<String, RunError> {
    let config = Config::load(data)?;
    let token = api_token(data)?;
    Ok(crate::ui::login_url(api_listen.unwrap_or(config.api_listen), &token))
}

/// Makes an EA key in a data dir whose node is not running (the store is locked while it runs;
/// then use the API's `POST /api/v1/ea-keys`).
pub fn new_ea_key(data: &Path) -> Result<EaKey, RunError> {
    let store = Store::open(&data.join(store::FILE_NAME))?;
    let identity = store.read()?.identity()?.ok_or(StoreError::NotInitialized)?;
    let key = keys::new_ea_key().map_err(NodeError::from)?;
    let sealed = keys::seal_secret(&identity, &key.key_id, &key.secret).map_err(NodeError::from)?;
    store.write(|tx| tx.put_ea_key(&key.key_id, &sealed))?;
    Ok(key)
}

/// A started node: its addresses and the node itself.
#[derive(Debug)]
pub struct Running {
    /// The EA link's bound address.
    pub ea_addr: SocketAddr,
    /// The local API's bound address.
    pub api_addr: SocketAddr,
    /// The node.
    pub node: Arc<Node>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The data dir, whose [`RUNNING_FILE`] `join` removes.
    data: PathBuf,
}

impl Running {
    /// Waits for both servers to end (after shutdown), then removes [`RUNNING_FILE`].
    pub async fn join(self) -> Result<(), RunError> {
        let mut result = Ok(());
        for t in self.tasks {
            let r = match t.await {
                Ok(r) => r.map_err(io("serve")),
                Err(e) => {
                    Err(RunError::Io { what: "serve".into(), source: std::io::Error::other(e) })
                }
            };
            if result.is_ok() {
                result = r;
            }
        }
        let _ = std::fs::remove_file(self.data.join(RUNNING_FILE));
        result
    }
}

/// Opens the data dir's store, binds both listeners and spawns the servers. Shutdown when
/// `shutdown` is cancelled.
pub async fn start(
    data: &Path,
    config: &Config,
    shutdown: tokio_util_shutdown::Shutdown,
) -> Result<Running, RunError> {
    let mut settings = config.settings()?;
    settings.calendar = crate::config::load_calendar(data)?;
    if let Some(old) = config.drawdown_max_pct {
        tracing::warn!(target: "tradecast::guard", drawdown_max_pct = %old, "drawdown_max_pct in config.toml is no longer a setting (read once, when the store was upgraded): the drawdown cap is the policy's risk.drawdown_lock_pct; remove the key");
    }
    let store = Store::open(&data.join(store::FILE_NAME))?;
    let node = Node::new(store, settings, wall_ms())?;
    let token = api_token(data)?;
    let ea = tokio::net::TcpListener::bind(config.ea_listen)
        .await
        .map_err(io(format!("bind the EA link on {}", config.ea_listen)))?;
    let api = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .map_err(io(format!("bind the API on {}", config.api_listen)))?;
    let ea_addr = ea.local_addr().map_err(io("EA link address"))?;
    let api_addr = api.local_addr().map_err(io("API address"))?;
    let ea_url = format!("http://{ea_addr}");
    node.store().write(|tx| tx.set_setting(EA_URL_SETTING, &ea_url))?;
    let running = RunningNode { pid: std::process::id(), api_addr, ea_addr };
    let json = serde_json::to_vec(&running).map_err(|e| io("running file")(e.into()))?;
    write_private(&data.join(RUNNING_FILE), &json)?;
    tracing::info!(target: "tradecast::node", device = %node.device_id().fmt_short(), %ea_addr, %api_addr,
        mode = if node.settings().provider { "provider" } else { "subscriber" }, "node running");
    let s1 = shutdown.clone();
    let t1 = tokio::spawn(crate::link::serve(ea, node.clone(), async move { s1.wait().await }));
    let s2 = shutdown.clone();
    let t2 =
        tokio::spawn(crate::api::serve(api, node.clone(), token, async move { s2.wait().await }));
    let s3 = shutdown.clone();
    let watched = node.clone();
    let t3 = tokio::spawn(async move {
        watch_ea_link(watched, async move { s3.wait().await }).await;
        Ok(())
    });
    let mut tasks = vec![t1, t2, t3];
    if let Some(t) = start_sync(&node, config.hub_ca_file.as_deref(), shutdown.clone()).await? {
        tasks.push(t);
    }
    Ok(Running { ea_addr, api_addr, node, tasks, data: data.to_owned() })
}

/// Watches the EA link until `stop` resolves, signing its changes for the hub
/// ([`Node::report_ea_link`]): the first look after the link's silence limit (an EA that
/// reconnects within it after the node's start was never down), then every 5 s.
async fn watch_ea_link(node: Arc<Node>, stop: impl std::future::Future<Output = ()>) {
    let first = Duration::from_millis(node.settings().link_down_after_ms.max(0).unsigned_abs());
    let every = Duration::from_secs(5);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {
                if let Err(e) = node.report_ea_link(wall_ms()) {
                    tracing::warn!(target: "tradecast::node", error = %e, "EA link state not signed");
                }
            }
        }
    }
}

/// Starts the QUIC sync client when the node enrolled with a hub (the pinned hub in the store);
/// it runs until `shutdown`. A hub that refuses the device (revoked, upgrade needed) stops the
/// client with that error in the log; the node keeps running offline.
async fn start_sync(
    node: &Arc<Node>,
    hub_ca_file: Option<&Path>,
    shutdown: tokio_util_shutdown::Shutdown,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, RunError> {
    let pin = crate::store::hub_pin::hub_pin(node.store()).map_err(|e| RunError::Io {
        what: "read the hub pin".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let Some(pin) = pin else {
        tracing::info!(target: "tradecast::node", "not enrolled with a hub: running standalone");
        return Ok(None);
    };
    // Every instance of the hub, in the pinned order (one address for most hubs).
    let mut addrs = Vec::new();
    for text in pin.addrs() {
        let addr = tokio::net::lookup_host(&text)
            .await
            .map_err(io(format!("resolve the hub address {text}")))?
            .next()
            .ok_or_else(|| RunError::Io {
                what: format!("resolve the hub address {text}"),
                source: std::io::Error::other("no address"),
            })?;
        addrs.push(addr);
    }
    let identity =
        node.store().read()?.identity()?.ok_or(crate::store::StoreError::NotInitialized)?;
    let host: Arc<dyn crate::sync::driver::SyncHost> = node.clone();
    let mut sync_config = crate::sync::driver::SyncConfig::default();
    if let Some(server_name) = pin.tls_name.clone() {
        let roots = tradecast_quic::webpki_roots(hub_ca_file).map_err(|e| RunError::Io {
            what: "load the trust anchors for the hub's certificate".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        sync_config.tls =
            Some(tradecast_quic::HubTrust::WebPki { server_name, roots: Arc::new(roots) });
    }
    let sync = crate::sync::driver::spawn_failover(host, identity, pin.key, addrs, sync_config);
    tracing::info!(target: "tradecast::node", hub = %pin.addr, "syncing with the hub over QUIC");
    // The UI's health and settings show whether the session is up.
    node.set_hub_link(sync.connected());
    // Every commit of the node may have appended records: nudge the client at once instead of
    // leaving it to its tip poll.
    let nudge = sync.nudger();
    let mut changes = node.changes();
    let forward = tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            nudge.notify_one();
        }
    });
    // A node enrolled before the hub handed out its account-fingerprint key reads it once.
    let fingerprint_key = tokio::spawn(crate::sync::enrol::learn_fingerprint_key(node.clone()));
    Ok(Some(tokio::spawn(async move {
        shutdown.wait().await;
        forward.abort();
        fingerprint_key.abort();
        if let Err(e) = sync.stop().await {
            tracing::error!(target: "tradecast::node", error = %e, "the hub refused this node");
        }
        Ok(())
    })))
}

/// Runs a node until Ctrl-C / SIGTERM.
pub async fn run(data: PathBuf, config: Config) -> Result<(), RunError> {
    let shutdown = tokio_util_shutdown::Shutdown::new();
    let running = start(&data, &config, shutdown.clone()).await?;
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(target: "tradecast::node", "shutting down");
        trigger.trigger();
    });
    running.join().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub mod tokio_util_shutdown {
    //! A cloneable shutdown signal (a `watch` channel), so the node needs no extra crate.

    /// Cloneable; [`Shutdown::trigger`] wakes every [`Shutdown::wait`].
    #[derive(Debug, Clone)]
    pub struct Shutdown {
        tx: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    }

    impl Default for Shutdown {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Shutdown {
        /// Not triggered yet.
        pub fn new() -> Self {
            let (tx, _) = tokio::sync::watch::channel(false);
            Shutdown { tx: std::sync::Arc::new(tx) }
        }

        /// Triggers it.
        pub fn trigger(&self) {
            self.tx.send_replace(true);
        }

        /// Resolves once triggered.
        pub async fn wait(&self) {
            let mut rx = self.tx.subscribe();
            let _ = rx.wait_for(|v| *v).await;
        }
    }
}

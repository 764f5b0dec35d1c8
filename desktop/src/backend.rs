//! Where the app's node runs, and the one way the app talks to it.
//!
//! [`open`] makes the data dir on first run (identity, store, config, API token: the node's own
//! `init`), then either attaches to a node that already owns the data dir (a `tradecast-node run`
//! daemon, found through its `running.json` and confirmed by an authenticated API call) or starts
//! the node library in this process on the same data dir and config. Either way the app gets a
//! [`Link`]: the node's loopback API address and token. The window, the tray and the
//! notifications all go through that local API (the same calls `tradecast-node status` and the
//! web UI make), so the shell has no second implementation of anything and behaves the same
//! in both modes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tradecast_node::config::Config;
use tradecast_node::policy::PolicySettings;
use tradecast_node::policy::copy_log::CopyLogEntry;
use tradecast_node::runtime::{ApprovalRow, SignalRow, Status};
use tradecast_node::serve::{self, Running, tokio_util_shutdown::Shutdown};
use tradecast_protocol::ea::Deal;
use zeroize::Zeroizing;

/// Largest API answer read (the copy log and the deals grow; a few MB is far beyond a year).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Why the node could not be opened or reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The node's library refused (config, store, bind …).
    #[error(transparent)]
    Node(#[from] serve::RunError),
    /// The data dir has a store but no API token: it was not made by `init`.
    #[error("{0} has a store but no api-token file; restore it or use another data dir")]
    NoToken(PathBuf),
    /// An API call failed.
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The node did not answer (stopped, or busy beyond the timeout).
    #[error("the node at {addr} did not answer: {message}")]
    Unreachable {
        /// The API address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// The node answered with an error (its problem+json detail).
    #[error("the node refused {path} ({status}): {detail}")]
    Refused {
        /// The call.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The node's words.
        detail: String,
    },
    /// The answer was not what the call returns.
    #[error("the node's answer to {path} is not valid: {message}")]
    BadAnswer {
        /// The call.
        path: String,
        /// What was wrong.
        message: String,
    },
}

/// The node's local API: address and token. `Debug` never shows the token.
#[derive(Clone)]
pub struct Link {
    api_addr: SocketAddr,
    token: std::sync::Arc<Zeroizing<String>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("api_addr", &self.api_addr).finish_non_exhaustive()
    }
}

impl Link {
    /// A link to the API on `api_addr` with `token`.
    pub fn new(api_addr: SocketAddr, token: Zeroizing<String>) -> Link {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Link { api_addr, token: std::sync::Arc::new(token), http }
    }

    /// The API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The node's origin, `http://127.0.0.1:PORT`: the only one the window may show.
    pub fn origin(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The URL that opens a UI session and lands on `/ui/start` (the setup page until setup is
    /// done, then the dashboard). It carries the token: never log it.
    pub fn start_url(&self) -> String {
        format!("{}&next=/ui/start", tradecast_node::ui::login_url(self.api_addr, &self.token))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, LinkError> {
        let url = format!("{}{path}", self.origin());
        let mut req = self.http.request(method, url).bearer_auth(self.token.as_str());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let unreachable = |e: reqwest::Error| LinkError::Unreachable {
            addr: self.api_addr,
            message: e.to_string(),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if bytes.len() > MAX_ANSWER {
            return Err(LinkError::BadAnswer { path: path.into(), message: "too large".into() });
        }
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return Err(LinkError::Refused { path: path.into(), status: status.as_u16(), detail });
        }
        let bytes = if bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes)
            .map_err(|e| LinkError::BadAnswer { path: path.into(), message: e.to_string() })
    }

    /// `GET /api/v1/status`.
    pub async fn status(&self) -> Result<Status, LinkError> {
        self.call(reqwest::Method::GET, "/api/v1/status", None).await
    }

    /// `GET /api/v1/signals`.
    pub async fn signals(&self) -> Result<Vec<SignalRow>, LinkError> {
        self.call(reqwest::Method::GET, "/api/v1/signals", None).await
    }

    /// `GET /api/v1/approvals`.
    pub async fn approvals(&self) -> Result<Vec<ApprovalRow>, LinkError> {
        self.call(reqwest::Method::GET, "/api/v1/approvals", None).await
    }

    /// `GET /api/v1/copy-log`.
    pub async fn copy_log(&self) -> Result<Vec<CopyLogEntry>, LinkError> {
        self.call(reqwest::Method::GET, "/api/v1/copy-log", None).await
    }

    /// `GET /api/v1/deals?account=…`.
    pub async fn deals(&self, account: &str) -> Result<Vec<Deal>, LinkError> {
        let path = format!("/api/v1/deals?account={}", encode_query(account));
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `GET /api/v1/policy`.
    pub async fn policy(&self) -> Result<PolicySettings, LinkError> {
        self.call(reqwest::Method::GET, "/api/v1/policy", None).await
    }

    /// `PUT /api/v1/policy` (the node validates it).
    pub async fn set_policy(&self, policy: &PolicySettings) -> Result<PolicySettings, LinkError> {
        let body = serde_json::to_value(policy).map_err(|e| LinkError::BadAnswer {
            path: "/api/v1/policy".into(),
            message: e.to_string(),
        })?;
        self.call(reqwest::Method::PUT, "/api/v1/policy", Some(body)).await
    }

    /// `POST /api/v1/close-all` for `account`: the node closes every position and pending
    /// order Tradecast opened there.
    pub async fn close_all(&self, account: &str) -> Result<serde_json::Value, LinkError> {
        let body = serde_json::json!({
            "account": account,
            "reason": "the trader asked to close everything (desktop tray)",
        });
        self.call(reqwest::Method::POST, "/api/v1/close-all", Some(body)).await
    }
}

/// Percent-encodes a query value (`login@server` has `@`; servers may have spaces).
fn encode_query(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Where the node runs.
#[derive(Debug)]
pub enum Backend {
    /// In this process; stopped with the app.
    InProcess {
        /// The started node.
        running: Box<Running>,
        /// Stops it.
        shutdown: Shutdown,
    },
    /// Another process (a `tradecast-node run` daemon) owns the data dir; it keeps running
    /// when the app quits.
    Attached {
        /// The daemon's process id, as its `running.json` says.
        pid: u32,
    },
}

impl Backend {
    /// Stops an in-process node (waits for its servers to end); nothing for an attached one.
    pub async fn stop(self) {
        if let Backend::InProcess { running, shutdown } = self {
            shutdown.trigger();
            if let Err(e) = running.join().await {
                tracing::warn!(target: "tradecast::desktop", error = %e, "node stopped with an error");
            }
        }
    }

    /// `in-process` or `attached to pid N`, for the tray and the log.
    pub fn describe(&self) -> String {
        match self {
            Backend::InProcess { .. } => "node running in the app".into(),
            Backend::Attached { pid } => format!("attached to the node service (pid {pid})"),
        }
    }
}

/// An opened node: how to reach it, where it runs, and whether its data dir was made now.
#[derive(Debug)]
pub struct Opened {
    /// The local API.
    pub link: Link,
    /// Where it runs.
    pub backend: Backend,
    /// The data dir was created by this start (first run).
    pub created: bool,
}

/// The default data dir: `%LOCALAPPDATA%\Tradecast` on Windows, `~/.local/share/tradecast` on
/// Linux (the same as `tradecast-node`'s documented one, so app and daemon share it).
pub fn default_data_dir() -> Option<PathBuf> {
    let base = dirs::data_local_dir()?;
    Some(base.join(if cfg!(windows) { "Tradecast" } else { "tradecast" }))
}

/// Opens the node of `data`: makes the data dir on first run, attaches to a daemon that owns it,
/// or starts the node in this process. Must run inside a tokio runtime.
pub async fn open(data: &Path) -> Result<Opened, BackendError> {
    let store = data.join(tradecast_node::store::FILE_NAME);
    let created = !store.exists();
    if created {
        let device = serve::init(data)?;
        tracing::info!(target: "tradecast::desktop", data = %data.display(), device, "first run: data dir created");
    }
    if !data.join(tradecast_node::config::TOKEN_FILE).exists() {
        return Err(BackendError::NoToken(data.to_owned()));
    }
    let token = serve::api_token(data)?;
    if let Some(r) = serve::running_node(data) {
        let link = Link::new(r.api_addr, token.clone());
        match link.status().await {
            Ok(_) => {
                tracing::info!(target: "tradecast::desktop", pid = r.pid, api = %r.api_addr, "attached to the running node");
                return Ok(Opened { link, backend: Backend::Attached { pid: r.pid }, created });
            }
            Err(e) => {
                tracing::info!(target: "tradecast::desktop", error = %e, "running.json is stale; starting the node here");
            }
        }
    }
    let config = Config::load(data).map_err(serve::RunError::from)?;
    let shutdown = Shutdown::new();
    let running = serve::start(data, &config, shutdown.clone()).await?;
    let link = Link::new(running.api_addr, token);
    Ok(Opened {
        link,
        backend: Backend::InProcess { running: Box::new(running), shutdown },
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        let check = |v: &str, e: &str| assert_eq!(encode_query(v), e, "{v}");
        check("5000001@Tradecast-Sim", "5000001%40Tradecast-Sim");
        check("1@Broker Live 2", "1%40Broker%20Live%202");
        check("", "");
    }

    #[test]
    fn debug_of_a_link_never_shows_the_token() {
        let link = Link::new(
            "127.0.0.1:7342".parse().expect("addr"),
            Zeroizing::new("tok-secret-1".into()),
        );
        let shown = format!("{link:?}");
        assert!(!shown.contains("tok-secret-1"), "{shown}");
        assert!(shown.contains("127.0.0.1:7342"), "{shown}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_run_starts_in_process_and_a_second_open_attaches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("node");
        // Free ports: the defaults may be taken on a CI machine.
        let config = Config {
            ea_listen: "127.0.0.1:0".parse().expect("addr"),
            api_listen: "127.0.0.1:0".parse().expect("addr"),
            ..Config::default()
        };
        std::fs::create_dir_all(&data).expect("mkdir");
        config.write(&data).expect("config");
        let first = open(&data).await.expect("first open");
        assert!(first.created);
        assert!(matches!(first.backend, Backend::InProcess { .. }));
        let status = first.link.status().await.expect("status");
        assert_eq!(status.mode, "subscriber");
        // The node wrote running.json: a second open attaches instead of opening the store.
        let second = open(&data).await.expect("second open");
        assert!(!second.created);
        assert!(matches!(second.backend, Backend::Attached { pid } if pid == std::process::id()));
        assert_eq!(second.link.api_addr(), first.link.api_addr());
        assert_eq!(second.link.status().await.expect("status").device_id, status.device_id);
        first.backend.stop().await;
        assert!(!data.join(serve::RUNNING_FILE).exists(), "running.json removed at stop");
        // With the node gone a stale file is ignored and the node starts here again.
        std::fs::write(
            data.join(serve::RUNNING_FILE),
            format!(
                r#"{{"pid":1,"api_addr":"{}","ea_addr":"127.0.0.1:9"}}"#,
                second.link.api_addr()
            ),
        )
        .expect("stale file");
        let third = open(&data).await.expect("third open");
        assert!(matches!(third.backend, Backend::InProcess { .. }));
        third.backend.stop().await;
    }
}

//! The node's verbs on the command line: `init`, `ea-key new`, `run`, `status` (clap args and
//! what each does). Settings resolve as: `config.toml` in the data dir, then `TRADECAST_*`
//! environment variables, then flags (clap reads both into the same `Option`s).
//!
//! `run` installs the tracing subscriber (text or JSON lines) because it is the binary's body;
//! the rest of the library never does. Secrets never reach a log: `ea-key new` writes its
//! secret to stdout only, and nothing logs a secret or the API token.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use rust_decimal::Decimal;

use crate::config::{Config, LogFormat, Mode};
use crate::serve::{self, RunError};
use crate::store::{PublishConsent, Store};
use crate::sync::ProvidersError;
use crate::sync::enrol::{EnrolError, enrol};

/// Why a node command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Starting or running the node failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// The running node could not be asked.
    #[error("the node's API at {addr}: {message}")]
    Api {
        /// Where it was asked.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
}

/// The data dir argument shared by every verb.
#[derive(Debug, Clone, Args)]
pub struct DataArg {
    /// The node's data dir (store, config, API token).
    #[arg(long, env = "TRADECAST_DATA", value_name = "DIR")]
    pub data: PathBuf,
}

/// `tradecast-node init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub data: DataArg,
}

/// `tradecast-node ea-key …`.
#[derive(Debug, Subcommand)]
pub enum EaKeyCommand {
    /// Make a key for one EA install: prints its id and secret once (paste both into the EA).
    New(EaKeyNewArgs),
}

/// `tradecast-node ea-key new`.
#[derive(Debug, Args)]
pub struct EaKeyNewArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// Print `{"key_id": …, "secret": …}` and nothing else.
    #[arg(long)]
    pub json: bool,
}

/// `tradecast-node run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The EA link's address (loopback only).
    #[arg(long, env = "TRADECAST_EA_LISTEN", value_name = "ADDR")]
    pub ea_listen: Option<SocketAddr>,
    /// The local API's address (loopback only).
    #[arg(long, env = "TRADECAST_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,
    /// Provider (runs the strategy, publishes signals) or subscriber.
    #[arg(long, env = "TRADECAST_MODE", value_enum)]
    pub mode: Option<Mode>,
    /// Also execute this node's own signals on its account.
    #[arg(long, env = "TRADECAST_SELF_TRADE")]
    pub self_trade: bool,
    /// Log lines as text or JSON.
    #[arg(long, env = "TRADECAST_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Long-poll wait the EA is told to use, ms.
    #[arg(long, env = "TRADECAST_POLL_WAIT_MS")]
    pub poll_wait_ms: Option<u32>,
    /// Daily loss limit, percent below the equity at the start of the broker's day.
    #[arg(long, env = "TRADECAST_DAILY_LOSS_MAX_PCT")]
    pub daily_loss_max_pct: Option<Decimal>,
    /// Bar subscriptions, `SYMBOL:TIMEFRAME`, comma separated.
    #[arg(long, env = "TRADECAST_SUBSCRIPTIONS", value_delimiter = ',')]
    pub subscriptions: Option<Vec<String>>,
}

/// `tradecast-node status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The running node's API address, when `run` was told another than the config's.
    #[arg(long, env = "TRADECAST_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

/// `init`: prints the device id.
pub fn init(args: &InitArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let id = serve::init(&args.data.data)?;
    writeln!(out, "{id}")?;
    Ok(())
}

/// `ea-key new`: prints the key id and secret once.
pub fn ea_key(c: &EaKeyCommand, out: &mut dyn Write) -> Result<(), CommandError> {
    let EaKeyCommand::New(args) = c;
    let key = serve::new_ea_key(&args.data.data)?;
    if args.json {
        let v = serde_json::json!({ "key_id": key.key_id, "secret": key.secret.as_str() });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "key id: {}", key.key_id)?;
        writeln!(out, "secret: {}", key.secret.as_str())?;
        writeln!(out, "Paste both into the EA's inputs now: the secret is not shown again.")?;
    }
    Ok(())
}

/// The config of a data dir with the flags and environment applied.
pub fn resolve(args: &RunArgs) -> Result<Config, CommandError> {
    let mut c = Config::load(&args.data.data).map_err(RunError::from)?;
    if let Some(a) = args.ea_listen {
        c.ea_listen = a;
    }
    if let Some(a) = args.api_listen {
        c.api_listen = a;
    }
    if let Some(m) = args.mode {
        c.mode = m;
    }
    if args.self_trade {
        c.self_trade = true;
    }
    if let Some(f) = args.log_format {
        c.log_format = f;
    }
    if let Some(w) = args.poll_wait_ms {
        c.poll_wait_ms = w;
    }
    if let Some(d) = args.daily_loss_max_pct {
        c.daily_loss_max_pct = Some(d);
    }
    if let Some(s) = &args.subscriptions {
        c.subscriptions = s.clone();
    }
    Ok(c)
}

/// Installs the process's tracing subscriber: `RUST_LOG` filter (default `info`), text or JSON
/// lines on stderr.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second installation (tests calling twice) is refused by tracing; that is harmless.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// `run`: serves until Ctrl-C / SIGTERM.
pub fn run(args: &RunArgs) -> Result<(), CommandError> {
    let config = resolve(args)?;
    init_tracing(config.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| RunError::Io { what: "start the runtime".into(), source })?;
    rt.block_on(serve::run(args.data.data.clone(), config))?;
    Ok(())
}

/// A GET to the local API with the data dir's token; the body.
pub fn api_get(data: &Path, addr: SocketAddr, path: &str) -> Result<String, CommandError> {
    api_call(data, addr, "GET", path, None)
}

/// A request to the local API with the data dir's token (and a JSON body); the answer's body
/// when it is a 200, else the status and body as the error.
pub fn api_call(
    data: &Path,
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<String, CommandError> {
    let token = serve::api_token(data)?;
    let err = |m: String| CommandError::Api { addr, message: m };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| err(format!("not running? {e}")))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| err(e.to_string()))?;
    let body = json.unwrap_or("");
    let content = if json.is_some() {
        format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len())
    } else {
        String::new()
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n{content}Connection: close\r\n\r\n{body}",
        token.as_str()
    );
    s.write_all(req.as_bytes()).map_err(|e| err(e.to_string()))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| err("no HTTP answer".into()))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(err(format!("{status}: {body}")));
    }
    // Chunked bodies are not expected from the API (axum sends a length for JSON).
    Ok(body.to_owned())
}

/// `tradecast-node publish`: what of the account's history the running node publishes.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The running node's API address, when `run` was told another than the config's.
    #[arg(long, env = "TRADECAST_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,
    /// Publish these, comma-separated: `closed-trades`, `equity`, `balance-operations`,
    /// `daily-summary`, or `all`.
    #[arg(long, value_name = "KINDS", value_delimiter = ',')]
    pub on: Vec<String>,
    /// Stop publishing these (same names; `all` for everything).
    #[arg(long, value_name = "KINDS", value_delimiter = ',')]
    pub off: Vec<String>,
}

/// Shows (and with `--on`/`--off` changes, through the running node's local API) what the node
/// publishes unsealed to the hub: closed trades, the equity curve, balance operations, daily
/// summaries. Everything is off until the trader turns it on; what is off is sealed for the
/// trader's own devices. A change applies to the history recorded from then on.
pub fn publish(args: &PublishArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let config = Config::load(&args.data.data).map_err(RunError::from)?;
    let addr = args.api_listen.unwrap_or(config.api_listen);
    let bad = |message: String| CommandError::Api { addr, message };
    let read = |body: &str| {
        serde_json::from_str::<PublishConsent>(body)
            .map_err(|e| bad(format!("unexpected answer: {e}")))
    };
    let mut consent = read(&api_get(&args.data.data, addr, "/api/v1/publishing")?)?;
    if !args.on.is_empty() || !args.off.is_empty() {
        for (names, on) in [(&args.on, true), (&args.off, false)] {
            for name in names.iter().map(|n| n.trim()) {
                if name == "all" {
                    consent = if on { PublishConsent::ALL } else { PublishConsent::default() };
                } else if !consent.set(name, on) {
                    return Err(bad(format!(
                        "`{name}` is not a data kind (closed-trades, equity, balance-operations, daily-summary, all)"
                    )));
                }
            }
        }
        let json = serde_json::to_string(&consent).map_err(|e| bad(e.to_string()))?;
        consent =
            read(&api_call(&args.data.data, addr, "PUT", "/api/v1/publishing", Some(&json))?)?;
    }
    for (name, _, on) in consent.kinds() {
        let state = if on {
            "published (unsealed, public after the hub's delay)"
        } else {
            "private (sealed)"
        };
        writeln!(out, "{name:<19} {state}")?;
    }
    Ok(())
}

/// `status`.
pub fn status(args: &StatusArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let config = Config::load(&args.data.data).map_err(RunError::from)?;
    let addr = args.api_listen.unwrap_or(config.api_listen);
    let body = api_get(&args.data.data, addr, "/api/v1/status")?;
    if args.json {
        writeln!(out, "{body}")?;
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    writeln!(out, "device     {}", v["device_id"].as_str().unwrap_or("?"))?;
    writeln!(out, "mode       {}", v["mode"].as_str().unwrap_or("?"))?;
    let up = v["link_up"].as_bool().unwrap_or(false);
    writeln!(out, "EA link    {}", if up { "up" } else { "DOWN (no EA call recently)" })?;
    if let Some(accounts) = v["accounts"].as_array() {
        for a in accounts {
            writeln!(
                out,
                "account    {}  equity {}  floor {}  {}",
                a["account"].as_str().unwrap_or("?"),
                a["equity"].as_str().unwrap_or("-"),
                a["equity_floor"].as_str().unwrap_or("-"),
                if a["locked"].as_bool().unwrap_or(false) {
                    format!("LOCKED: {}", a["lock_reason"].as_str().unwrap_or(""))
                } else {
                    "auto mode unlocked".to_owned()
                }
            )?;
        }
    }
    Ok(())
}

/// `tradecast-node enrol`.
#[derive(Debug, clap::Args)]
pub struct EnrolArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The hub, `HOST:PORT` (its HTTP API; QUIC on the same port over UDP). A hub run as several
    /// instances: every address, comma-separated; the node syncs with the first that answers
    /// and moves to the next when it stops answering.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT…]")]
    pub hub: String,
    /// The enrolment code the hub showed (`XXXXX-XXXXX`).
    #[arg(long)]
    pub code: String,
    /// A name for this device in the hub's list.
    #[arg(long, default_value = "tradecast-node")]
    pub label: String,
}

/// Runs `enrol` and prints this device's id and the pinned hub key's fingerprint.
pub fn enrol_command(args: &EnrolArgs, out: &mut dyn std::io::Write) -> Result<(), EnrolError> {
    let store = Store::open(&args.data.data.join(crate::store::FILE_NAME))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let now_ms = crate::clock::wall_ms();
    let e = rt.block_on(enrol(&store, &args.hub, &args.code, &args.label, now_ms))?;
    writeln!(out, "enrolled {}", e.device_id.to_text())?;
    writeln!(out, "hub {} pinned, key {}", e.hub.addr, e.hub_device_id.to_text())?;
    if let Some(name) = &e.hub.tls_name {
        writeln!(out, "the hub's QUIC certificate is checked as {name}'s (WebPKI)")?;
    }
    Ok(())
}

/// `tradecast-node providers`: the provider keys this node pinned from its feed.
#[derive(Debug, clap::Args)]
pub struct ProvidersArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// Trust this pinned key (its device id, as listed): its signals are acted on from now on.
    /// Check the id with your provider first: a new key may be a new device of theirs, or
    /// someone else.
    #[arg(long, value_name = "DEVICE_ID")]
    pub trust: Option<String>,
    /// Release a quarantined source (`relay:<device id>` or `inbox`, as listed): the hub sent
    /// two different records at one position of it. Release it only once the hub's operator
    /// has explained and fixed it; its items are taken again from the next session.
    #[arg(long, value_name = "SOURCE")]
    pub release_source: Option<String>,
}

/// Lists the pinned provider keys (and trusts one with `--trust`). The node must be stopped
/// (its store is locked while it runs).
pub fn providers_command(
    args: &ProvidersArgs,
    out: &mut dyn std::io::Write,
) -> Result<(), ProvidersError> {
    let store = Store::open(&args.data.data.join(crate::store::FILE_NAME))?;
    if let Some(text) = &args.trust {
        let id = text
            .trim()
            .parse::<tradecast_protocol::DeviceId>()
            .map_err(|_| ProvidersError::BadId(text.clone()))?;
        let trusted = store.write(|tx| {
            let Some(mut a) = tx.author(&id)? else { return Ok(false) };
            a.trusted = true;
            tx.put_author(&a)?;
            Ok(true)
        })?;
        if !trusted {
            return Err(ProvidersError::Unknown(text.clone()));
        }
        writeln!(out, "trusted {}", id.to_text())?;
    }
    if let Some(text) = &args.release_source {
        let source = tradecast_protocol::session::Source::from_text(text.trim())
            .ok_or_else(|| ProvidersError::BadSource(text.clone()))?;
        if !store.write(|tx| tx.release_source(source))? {
            return Err(ProvidersError::NotQuarantined(text.clone()));
        }
        writeln!(out, "released {}", source.to_text())?;
    }
    let view = store.read()?;
    let authors = view.authors()?;
    if authors.is_empty() {
        writeln!(out, "no provider key pinned yet (the first one arrives with its first signal)")?;
    }
    for a in authors {
        writeln!(
            out,
            "{}  {:<9}  {}  (pinned at feed item {})",
            a.key.device_id().to_text(),
            if a.trusted { "trusted" } else { "NOT TRUSTED" },
            a.label,
            a.pinned_at_seq
        )?;
    }
    for h in view.held_sources(0)? {
        let state = match h.quarantined_at_ms {
            Some(at) => format!("QUARANTINED since {at} (release with --release-source)"),
            None => "ok".to_string(),
        };
        writeln!(out, "source {}  item {}  {state}", h.source.to_text(), h.committed)?;
    }
    Ok(())
}

//! `tradecast demo`: the whole system on loopback, in temporary data dirs, with no database
//! server — a hub on SQLite, a provider node running Fib-RSI v1 on its own simulated terminal,
//! and two subscriber nodes with different policies beside simulated terminals of their own, all
//! terminals on one simulated broker replaying the bundled EURUSD H1 bars (the market clock of
//! every node).
//!
//! Everything talks as in production: the hub's HTTP API for accounts, plans, entitlements and
//! enrolment codes; each node enrols with its own code and syncs over QUIC with the pinned hub
//! key; the provider's signals travel, signed by the provider, through the hub's feed to every
//! entitled subscriber node, which verifies them itself, runs its policy and has its terminal
//! execute them over the signed EA link. The manual subscriber's approvals are clicks through its
//! local API (every other signal; the rest are left to expire and show the skip).
//!
//! **Lockstep.** After each bar the replay waits until every node has taken it in, every record
//! the provider signed is committed at the hub, every subscriber has committed its whole feed
//! and every terminal has polled what that caused — so every run gives the same signals,
//! decisions and fills. `--speed` only paces the bars in wall time (`max`: no pause).
//!
//! What is printed comes from the records each party signed (the provider's signals, each
//! subscriber's approvals and executions) and from the broker's deals, never from the demo's
//! own bookkeeping: [`Report`] is what the end-to-end tests assert on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tradecast_node::runtime::Node;
use tradecast_node::serve::tokio_util_shutdown::Shutdown;
use tradecast_protocol::bars::ParseOptions;
use tradecast_protocol::ea::{self, DealEntry, MarginMode};
use tradecast_protocol::{Body, Decision, Record, Side, Signal, SignalId, StreamId};
use tradecast_sim::broker::{AccountConfig, Broker, BrokerConfig, SymbolConfig};
use tradecast_sim::feed::{Feed, SpreadModel};
use tradecast_sim::replay::{Replay, Speed};
use tradecast_sim::terminal::{Faults, SharedBroker, Terminal, TerminalConfig, lock};

/// The bundled sample: EURUSD H1 (provenance in `testdata/README.md`).
pub const EURUSD_H1: &[u8] = include_bytes!("../testdata/EURUSD-H1.csv");
/// Bar-seconds per wall second of the default pace: the whole sample in about a minute.
pub const DEFAULT_SPEED: f64 = 300_000.0;
/// The EA's `input_magic` in every simulated terminal.
const MAGIC: u32 = 20_260_101;
/// Starting balance of every account, USD.
const BALANCE: i64 = 10_000;
/// A point of EURUSD at 5 digits.
const POINT: Decimal = Decimal::from_parts(1, 0, 0, false, 5);
/// Subscribers that copy by rule (their fills measure the signal→fill latency).
const AUTO_SUBSCRIBERS: [&str; 1] = ["alice"];
/// Longest a bar may take to settle across all parties before the demo says so.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bar pace: `max`, or bar-seconds per wall second.
    pub speed: Speed,
    /// Replay only the first `bars` bars of the sample.
    pub bars: Option<usize>,
    /// Stop when the replay ends instead of serving the UIs until Ctrl-C.
    pub exit_when_done: bool,
    /// Keep the data dirs here instead of a temporary folder.
    pub data: Option<PathBuf>,
    /// Faults to inject (the end-to-end tests; `--lossy` on the command line).
    pub faults: FaultPlan,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            speed: Speed::Factor(DEFAULT_SPEED),
            bars: None,
            exit_when_done: false,
            data: None,
            faults: FaultPlan::default(),
        }
    }
}

/// Faults a run injects. The report must come out the same as without them.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Every node reaches the hub's QUIC endpoint through a proxy that drops, delays and
    /// duplicates datagrams ([`crate::lossy`]).
    pub lossy: Option<crate::lossy::Faults>,
    /// Stop the hub after this bar and start it again on the same data dir and addresses
    /// `hub_down_bars` bars later (the nodes work offline meanwhile and catch up).
    pub restart_hub_at_bar: Option<usize>,
    /// Bars the hub stays down.
    pub hub_down_bars: usize,
    /// Stop this subscriber's node after this bar and start it again at once on the same data
    /// dir and addresses (its terminal says hello again).
    pub restart_node_at_bar: Option<(String, usize)>,
}

/// One provider signal and what became of it.
#[derive(Debug, Clone)]
pub struct SignalReport {
    pub number: usize,
    pub signal: Signal,
    /// Wall clock of the provider's signed record.
    pub created_at_ms: i64,
    /// When the hub committed it (wall clock), if it did.
    pub hub_received_at_ms: Option<i64>,
    /// Per subscriber name.
    pub subscribers: BTreeMap<String, SubscriberOutcome>,
}

/// What one subscriber did with one signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriberOutcome {
    /// The signal reached the node (feed committed, verified against the provider's key).
    pub received: bool,
    /// The node's skip line, if the policy skipped it.
    pub skipped: Option<String>,
    /// The signed decision.
    pub decision: Option<Decision>,
    /// Fills (executions with a price): (price, volume, wall ms of the execution record).
    pub fills: Vec<(Decimal, Decimal, i64)>,
    /// Executions the terminal refused: retcodes.
    pub refused: Vec<u32>,
}

/// One subscriber's totals.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberTotals {
    pub name: String,
    pub policy: String,
    pub received: usize,
    pub approved: usize,
    pub filled: usize,
    pub skipped: usize,
    /// Closed profit and loss in the account currency (deals of Tradecast's magic).
    pub pnl: Decimal,
    /// The same in R: each closed copy's exit against its fill, in units of the signal's
    /// entry–stop distance, volume-weighted per signal and summed.
    pub pnl_r: Decimal,
    /// Tradecast positions still open at the end.
    pub open_positions: usize,
    /// Entry deals per order number (exactly-once: every value is 1).
    pub entries_per_order: BTreeMap<u32, usize>,
}

/// Everything the demo saw.
#[derive(Debug, Clone)]
pub struct Report {
    pub bars: usize,
    pub signals: Vec<SignalReport>,
    pub subscribers: Vec<SubscriberTotals>,
    /// Signal→fill latency in wall ms over every fill: p50, p99, max.
    pub latency_ms: Option<(i64, i64, i64)>,
    /// Every stream the hub holds verified as a chain (author signatures, seq, prev hash).
    pub chains_verified: usize,
    /// Records the hub holds, all streams.
    pub hub_records: usize,
    /// Streams whose records the hub does not all hold at the end (empty: everything synced).
    pub unsynced: Vec<String>,
    /// What the lossy proxy did, when there was one.
    pub lossy: Option<crate::lossy::Counts>,
    /// The provider's signals-stream records (signals, modifications, closes) and how many of
    /// them it holds the hub's verified receipt for.
    pub provider_records: usize,
    pub provider_receipts: usize,
    /// Each node's hub link as its own health page shows it, at the end.
    pub hub_links: Vec<(String, Option<bool>)>,
}

/// A running node of the demo.
struct DemoNode {
    name: String,
    policy: String,
    data: PathBuf,
    running: tradecast_node::serve::Running,
    shutdown: Shutdown,
    login: u64,
    device: tradecast_protocol::DeviceId,
    api_token: String,
    config: tradecast_node::config::Config,
}

impl DemoNode {
    /// Stops the node and starts it again on the same data dir and addresses.
    async fn restart(self) -> anyhow::Result<DemoNode> {
        let DemoNode {
            name,
            policy,
            data,
            running,
            shutdown,
            login,
            device,
            api_token,
            mut config,
        } = self;
        config.ea_listen = running.ea_addr;
        config.api_listen = running.api_addr;
        shutdown.trigger();
        running.join().await?;
        let shutdown = Shutdown::new();
        let running = tradecast_node::serve::start(&data, &config, shutdown.clone()).await?;
        Ok(DemoNode { name, policy, data, running, shutdown, login, device, api_token, config })
    }

    fn node(&self) -> &Arc<Node> {
        &self.running.node
    }
}

/// The demo's hub: the server and an owner session.
struct DemoHub {
    started: tradecast_hub::Started,
    http: reqwest::Client,
    owner_token: String,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn hub_server(
    dir: &Path,
    listen: SocketAddr,
    quic_listen: Option<SocketAddr>,
) -> anyhow::Result<tradecast_hub::Started> {
    let mut config = tradecast_hub::config::Config {
        listen,
        quic_listen,
        data_dir: Some(dir.to_owned()),
        ..Default::default()
    };
    // Demo accounts on a throwaway hub: light password hashing keeps the start quick.
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    // Development mode keeps its generated secrets in the data dir: a restart keeps the key.
    let secrets = tradecast_hub::load_secrets(&config, std::iter::empty())?;
    Ok(tradecast_hub::start(config, secrets).await?)
}

impl DemoHub {
    async fn start(dir: &Path) -> anyhow::Result<DemoHub> {
        let started = hub_server(dir, "127.0.0.1:0".parse()?, None).await?;
        let new = tradecast_hub::accounts::NewUser {
            email: "owner@demo.invalid",
            password: "demo owner password",
            role: tradecast_hub::accounts::Role::Owner,
            display_name: "Owner",
        };
        let state = &started.state;
        tradecast_hub::accounts::create_user(
            &state.db,
            &state.config.auth,
            wall_ms(),
            &new,
            "demo",
            "demo",
        )
        .await?;
        let http = reqwest::Client::new();
        let mut hub = DemoHub { started, http, owner_token: String::new() };
        hub.owner_token = hub.login("owner@demo.invalid", "demo owner password").await?;
        Ok(hub)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.started.addr)
    }

    async fn call(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
        let r = self.http.post(self.url(path)).bearer_auth(token).json(&body).send().await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("hub answered {status} to POST {path}: {body}");
        }
        Ok(body)
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await?;
        let body: Value = r.json().await?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("login of {email} refused: {body}"))
    }

    /// Creates an account with `role` and returns (user id, access token).
    async fn user(&self, name: &str, role: &str) -> anyhow::Result<(String, String)> {
        let email = format!("{name}@demo.invalid");
        let password = format!("{name} demo password");
        let created = self
            .call(
                "/api/v1/users",
                &self.owner_token,
                json!({ "email": email, "password": password, "role": role, "display_name": name }),
            )
            .await?;
        let id = created["id"].as_str().ok_or_else(|| anyhow!("no user id"))?.to_owned();
        Ok((id, self.login(&email, &password).await?))
    }

    async fn enrolment_code(&self, token: &str) -> anyhow::Result<String> {
        let body = self.call("/api/v1/devices/enrolment-codes", token, json!({})).await?;
        body["code"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no code: {body}"))
    }
}

/// A node's config: loopback on free ports, the EA told not to hold its polls (lockstep).
fn node_config(mode: &str, extra: &str) -> anyhow::Result<tradecast_node::config::Config> {
    let text = format!(
        "ea_listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\nmode = \"{mode}\"\n\
         poll_wait_ms = 0\n{extra}"
    );
    toml::from_str(&text).context("demo node config")
}

#[allow(clippy::too_many_arguments)]
async fn start_node(
    root: &Path,
    hub: &DemoHub,
    name: &str,
    token: &str,
    login: u64,
    config: tradecast_node::config::Config,
    policy: &str,
    quic_via: Option<SocketAddr>,
) -> anyhow::Result<(DemoNode, tradecast_node::keys::EaKey)> {
    let data = root.join(name);
    std::fs::create_dir_all(&data)?;
    tradecast_node::serve::init(&data)?;
    let code = hub.enrolment_code(token).await?;
    {
        let store =
            tradecast_node::store::Store::open(&data.join(tradecast_node::store::FILE_NAME))?;
        tradecast_node::sync::enrol::enrol(
            &store,
            &hub.started.addr.to_string(),
            &code,
            &format!("{name}'s node"),
            wall_ms(),
        )
        .await?;
        if let Some(via) = quic_via {
            tradecast_node::sync::move_hub(&store, &via.to_string())?;
        }
    }
    let key = tradecast_node::serve::new_ea_key(&data)?;
    let shutdown = Shutdown::new();
    let running = tradecast_node::serve::start(&data, &config, shutdown.clone()).await?;
    let device = running.node.device_id();
    let api_token = tradecast_node::serve::api_token(&data)?.to_string();
    let node = DemoNode {
        name: name.to_owned(),
        policy: policy.to_owned(),
        data,
        running,
        shutdown,
        login,
        device,
        api_token,
        config,
    };
    Ok((node, key))
}

/// Steps a terminal until its node has taken in everything (bounded); the failed steps.
async fn catch_up(t: &mut Terminal) -> usize {
    let mut errors = 0;
    for _ in 0..50 {
        match t.step().await {
            Ok(()) if t.caught_up() => break,
            Ok(()) => {}
            Err(e) => {
                errors += 1;
                tracing::warn!(target: "tradecast::demo", error = %e, "terminal step failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                if errors >= 5 {
                    break;
                }
            }
        }
    }
    errors
}

/// Where the records stand: the provider's signals-stream tip at home and at the hub, and each
/// subscriber's committed feed against the hub's tip for it.
async fn marks(hub: &DemoHub, provider: &DemoNode, subs: &[DemoNode]) -> anyhow::Result<Vec<u64>> {
    let db = &hub.started.state.db;
    let home = provider.node().store().read()?.outbox_from(StreamId::SIGNALS, 1)?.len() as u64;
    let at_hub =
        tradecast_hub::quic::store::committed(db, &provider.device, StreamId::SIGNALS).await?;
    let mut out = vec![home, at_hub];
    for s in subs {
        let (tip, _) = tradecast_hub::feed::marks(db, &s.device.to_text()).await?;
        let mine = s.node().store().read()?.inbox_watermark()?;
        out.push(tip);
        out.push(mine);
    }
    Ok(out)
}

fn settled(m: &[u64]) -> bool {
    m.chunks(2).all(|pair| pair.first() == pair.get(1))
}

/// Runs rounds of terminal steps until every party has taken in everything and nothing moves.
async fn settle(
    hub: Option<&DemoHub>,
    provider: &DemoNode,
    subs: &[DemoNode],
    terminals: &mut [Terminal],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last: Option<Vec<u64>> = None;
    loop {
        // Subscribers' terminals first: each subscriber holds the bar's quote before the
        // provider's node closes the bar and signs a signal, so a signal is always judged on the
        // price of its own bar (the provider's terminal is the first).
        for t in terminals.iter_mut().rev() {
            catch_up(t).await;
        }
        // With the hub down the nodes work offline: only the terminals are waited for.
        let m = match hub {
            Some(hub) => marks(hub, provider, subs).await?,
            None => Vec::new(),
        };
        if settled(&m) && last.as_ref() == Some(&m) && terminals.iter().all(Terminal::caught_up) {
            return Ok(());
        }
        if started.elapsed() > SETTLE_LIMIT {
            tracing::warn!(target: "tradecast::demo", marks = ?m, "a bar did not settle in time; going on");
            return Ok(());
        }
        if !settled(&m) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        last = Some(m);
    }
}

/// The provider's signed signals so far: (signal, record created_at_ms).
fn provider_signals(provider: &DemoNode) -> anyhow::Result<Vec<(Signal, i64)>> {
    let records = provider.node().store().read()?.outbox_from(StreamId::SIGNALS, 1)?;
    Ok(records
        .iter()
        .filter_map(|r| match r.body() {
            Ok(Body::Signal(s)) => Some((s, r.header().created_at_ms)),
            _ => None,
        })
        .collect())
}

/// A subscriber's shared-stream records (approvals and executions it signed).
fn shared_records(node: &DemoNode) -> anyhow::Result<Vec<Record>> {
    Ok(node.node().store().read()?.outbox_from(StreamId::SHARED, 1)?)
}

fn outcome_of(
    node: &DemoNode,
    id: SignalId,
    shared: &[Record],
) -> anyhow::Result<SubscriberOutcome> {
    let mut o = SubscriberOutcome::default();
    let hex = id.to_hex();
    if let Some(row) = node.node().signals()?.into_iter().find(|r| r.signal.id == id) {
        o.received = true;
        if !row.skipped.is_empty() {
            o.skipped = Some(row.skipped);
        }
    }
    for r in shared {
        match r.body() {
            Ok(Body::Approval(a)) if a.signal_id == id => o.decision = Some(a.decision),
            Ok(Body::Execution(e)) if e.signal_id == id => match e.fill_price {
                Some(p) if e.retcode == 10009 || e.retcode == 10010 => {
                    o.fills.push((p, e.volume, r.header().created_at_ms));
                }
                _ => o.refused.push(e.retcode),
            },
            _ => {}
        }
    }
    if o.skipped.is_none()
        && o.decision.is_none()
        && let Some(a) =
            node.node().approvals()?.into_iter().find(|a| a.pending.signal_id.to_hex() == hex)
        && a.line.starts_with("skipped")
    {
        o.skipped = Some(a.line);
    }
    Ok(o)
}

fn fmt_market(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn side_word(side: Side) -> &'static str {
    match side {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    }
}

/// Prints each party's progress on each signal once, as it happens.
#[derive(Default)]
struct Narrator {
    printed: BTreeSet<String>,
}

impl Narrator {
    fn once(&mut self, key: String, line: String, out: &mut dyn FnMut(&str)) {
        if self.printed.insert(key) {
            out(&line);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn narrate(
    narrator: &mut Narrator,
    hub: Option<&DemoHub>,
    provider: &DemoNode,
    subs: &[DemoNode],
    market_ms: i64,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let t = fmt_market(market_ms);
    let pad = " ".repeat(t.len() + 2);
    for (i, (s, created)) in provider_signals(provider)?.into_iter().enumerate() {
        let n = i + 1;
        let hex = s.id.to_hex();
        narrator.once(
            format!("{hex}:created"),
            format!(
                "[{t}] signal {n:>2}  {} {} {:?}  entry {}  stop {}  tp {}  rr {}  — signed by the provider",
                s.symbol,
                side_word(s.side),
                s.entry_kind,
                s.entry.round_dp(5),
                s.stop.round_dp(5),
                s.tp1.round_dp(5),
                s.rr.round_dp(2)
            ),
            out,
        );
        let stored = match hub {
            Some(hub) => tradecast_hub::signals::stored_by_id(
                &hub.started.state.db,
                &hub.started.state.hub_identity,
                &hex,
            )
            .await
            .map_err(|e| anyhow!("hub: {e:?}"))?,
            None => None,
        };
        if let Some(stored) = stored {
            let s0 = stored.0;
            narrator.once(
                format!("{hex}:hub"),
                format!(
                    "{pad}hub       verified, queued for {} subscriber device(s) (+{} ms)",
                    s0.n_devices_queued,
                    s0.received_at_ms - created
                ),
                out,
            );
        }
        for sub in subs {
            let shared = shared_records(sub)?;
            let o = outcome_of(sub, s.id, &shared)?;
            let name = format!("{:<9}", sub.name);
            if o.received {
                narrator.once(
                    format!("{hex}:{}:received", sub.name),
                    format!("{pad}{name} received, provider signature verified on its own machine"),
                    out,
                );
            }
            if let Some(why) = &o.skipped {
                narrator.once(
                    format!("{hex}:{}:skipped", sub.name),
                    format!("{pad}{name} {why}"),
                    out,
                );
            }
            if let Some(d) = o.decision {
                let words = match d {
                    Decision::Approved => "approved (signed by the node)",
                    Decision::Rejected if o.skipped.is_some() => "rejected by its policy (signed)",
                    Decision::Rejected => "rejected (signed by the node)",
                    Decision::Expired => "expired without a decision (nothing sent)",
                };
                narrator.once(
                    format!("{hex}:{}:decided", sub.name),
                    format!("{pad}{name} {words}"),
                    out,
                );
            }
            for (k, (price, volume, at)) in o.fills.iter().enumerate() {
                let slip = ((*price - s.entry) / POINT).round_dp(1);
                narrator.once(
                    format!("{hex}:{}:fill{k}", sub.name),
                    format!(
                        "{pad}{name} filled {volume} lots at {price} (slippage {slip} points, {} ms after the signal)",
                        at - created
                    ),
                    out,
                );
            }
            for (k, retcode) in o.refused.iter().enumerate() {
                narrator.once(
                    format!("{hex}:{}:refused{k}", sub.name),
                    format!("{pad}{name} refused by the terminal: retcode {retcode}"),
                    out,
                );
            }
        }
        let _ = n;
    }
    Ok(())
}

/// The manual subscriber's scripted clicks: approves every other waiting signal through its
/// local API (as the UI's button does) and leaves the others to expire.
async fn click(
    node: &DemoNode,
    http: &reqwest::Client,
    clicked: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    for a in node.node().approvals()? {
        let hex = a.pending.signal_id.to_hex();
        if a.pending.decided().is_some() || clicked.contains(&hex) {
            continue;
        }
        let n = clicked.len();
        clicked.insert(hex.clone());
        if n % 2 == 1 {
            continue; // left to expire
        }
        let url = format!("http://{}/api/v1/signals/{hex}/approve", node.running.api_addr);
        let r = http
            .post(url)
            .bearer_auth(&node.api_token)
            .json(&json!({ "user": "demo click", "reason": "approved in the demo" }))
            .send()
            .await?;
        if !r.status().is_success() {
            tracing::warn!(target: "tradecast::demo", status = %r.status(), "approval refused");
        }
    }
    Ok(())
}

fn totals(
    node: &DemoNode,
    broker: &SharedBroker,
    signals: &[SignalReport],
) -> anyhow::Result<SubscriberTotals> {
    let b = lock(broker);
    let deals = b.deals(node.login, i64::MIN, i64::MAX).map_err(|e| anyhow!("{e:?}"))?;
    let open = b
        .positions(node.login)
        .map_err(|e| anyhow!("{e:?}"))?
        .into_iter()
        .filter(|p| ea::is_tradecast_magic(p.magic, MAGIC))
        .count();
    drop(b);
    let ours: Vec<&ea::Deal> =
        deals.iter().filter(|d| ea::is_tradecast_magic(d.magic, MAGIC)).collect();
    let mut entries_per_order = BTreeMap::new();
    for d in &ours {
        if d.entry == DealEntry::In {
            *entries_per_order.entry(ea::split_magic(d.magic).1).or_insert(0usize) += 1;
        }
    }
    let pnl: Decimal = ours
        .iter()
        .filter(|d| d.entry != DealEntry::In)
        .map(|d| d.profit + d.commission + d.swap + d.fee)
        .sum();
    // R: map each position to its signal through the node's orders (the order number is in the
    // magic), then weigh each exit by its volume.
    let account = node.node().accounts()?.into_iter().next().map(|a| a.account);
    let orders = match &account {
        Some(a) => node.node().orders(a)?,
        None => Vec::new(),
    };
    let by_no: BTreeMap<u32, SignalId> =
        orders.iter().filter_map(|o| o.signal_id.map(|s| (o.order_no, s))).collect();
    let mut pnl_r = Decimal::ZERO;
    for entry in ours.iter().filter(|d| d.entry == DealEntry::In) {
        let Some(id) = by_no.get(&ea::split_magic(entry.magic).1) else { continue };
        let Some(sr) = signals.iter().find(|s| s.signal.id == *id) else { continue };
        let risk = (sr.signal.entry - sr.signal.stop).abs();
        if risk.is_zero() || entry.volume.is_zero() {
            continue;
        }
        let long = entry.kind == ea::DealKind::Buy;
        for exit in
            ours.iter().filter(|d| d.entry != DealEntry::In && d.position_id == entry.position_id)
        {
            let moved = if long { exit.price - entry.price } else { entry.price - exit.price };
            pnl_r += moved / risk * (exit.volume / entry.volume);
        }
    }
    let mut t = SubscriberTotals {
        name: node.name.clone(),
        policy: node.policy.clone(),
        received: 0,
        approved: 0,
        filled: 0,
        skipped: 0,
        pnl,
        pnl_r: pnl_r.round_dp(2),
        open_positions: open,
        entries_per_order,
    };
    for s in signals {
        if let Some(o) = s.subscribers.get(&node.name) {
            t.received += usize::from(o.received);
            t.approved += usize::from(o.decision == Some(Decision::Approved));
            t.filled += usize::from(!o.fills.is_empty());
            t.skipped += usize::from(o.skipped.is_some());
        }
    }
    Ok(t)
}

fn percentile(sorted: &[i64], p: usize) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Verifies every chain the hub holds: signatures against the enrolled keys, `seq` from 1 with
/// no gap, each `prev_hash` the previous header's hash. Returns (streams, records).
const STREAMS: [StreamId; 5] =
    [StreamId::SIGNALS, StreamId::SHARED, StreamId::PRIVATE, StreamId::DEVICE, StreamId::COMMANDS];

/// Waits (bounded) until the hub holds every record of every node's outbox; returns the streams
/// that still differ, as "name stream N: local L, hub H".
async fn wait_synced(hub: &DemoHub, nodes: &[&DemoNode]) -> anyhow::Result<Vec<String>> {
    let db = &hub.started.state.db;
    let started = Instant::now();
    loop {
        let mut behind = Vec::new();
        for node in nodes {
            let view = node.node().store().read()?;
            for stream in STREAMS {
                let local = view.outbox_from(stream, 1)?.len() as u64;
                let at_hub =
                    tradecast_hub::quic::store::committed(db, &node.device, stream).await?;
                if local != at_hub {
                    behind.push(format!(
                        "{} stream {}: local {local}, hub {at_hub}",
                        node.name, stream.0
                    ));
                }
            }
        }
        if behind.is_empty() || started.elapsed() > SETTLE_LIMIT {
            return Ok(behind);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn verify_hub_chains(hub: &DemoHub, nodes: &[&DemoNode]) -> anyhow::Result<(usize, usize)> {
    let db = &hub.started.state.db;
    let (mut streams, mut records) = (0, 0);
    for node in nodes {
        let key = node.node().identity_key();
        for stream in STREAMS {
            let held = tradecast_hub::quic::store::records(db, &node.device, stream).await?;
            if held.is_empty() {
                continue;
            }
            let mut prev = tradecast_protocol::ChainHash::GENESIS;
            for (i, r) in held.iter().enumerate() {
                r.verify(&key).map_err(|e| anyhow!("{} stream {}: {e}", node.name, stream.0))?;
                let h = r.header();
                if h.seq != i as u64 + 1 || h.prev_hash != prev {
                    bail!("{}'s stream {} breaks at seq {}", node.name, stream.0, h.seq);
                }
                prev = r.header_hash();
            }
            streams += 1;
            records += held.len();
        }
    }
    Ok((streams, records))
}

/// Runs the demo; `out` gets every line meant for the person watching.
pub async fn run(opts: &Options, out: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
    let tmp;
    let root = match &opts.data {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    out(
        "Starting the Tradecast demo on 127.0.0.1 (data in temporary folders, no database server).",
    );
    let hub_dir = root.join("hub");
    let hub = DemoHub::start(&hub_dir).await?;
    let proxy = match opts.faults.lossy {
        Some(f) => Some(crate::lossy::start(hub.started.quic_addr, f).await?),
        None => None,
    };
    let via = proxy.as_ref().map(|p| p.addr);
    let (provider_id, provider_token) = hub.user("provider", "provider").await?;
    let plan = hub
        .call(
            "/api/v1/plans",
            &provider_token,
            json!({ "name": "Fib-RSI EURUSD", "price_minor": 4900, "currency": "USD", "period_days": 30 }),
        )
        .await?;
    let plan_id = plan["id"].as_str().ok_or_else(|| anyhow!("no plan id"))?.to_owned();
    let _ = provider_id;

    let mut nodes = Vec::new();
    let mut keys = Vec::new();
    let provider_policy = "provider: Fib-RSI v1 on EURUSD H1, trades its own signals";
    let (provider, key) = start_node(
        &root,
        &hub,
        "provider",
        &provider_token,
        9_000_001,
        node_config(
            "provider",
            "self_trade = true\n[policy.approval]\nmode = \"auto\"\nconsent_version = 1\n",
        )?,
        provider_policy,
        via,
    )
    .await?;
    keys.push(key);
    let subscribers = [
        (
            "alice",
            9_000_002u64,
            "auto-copy, 1 % of equity at risk",
            "[policy]\nlot = { mode = \"risk_percent\", percent = \"1\" }\n[policy.approval]\nmode = \"auto\"\nconsent_version = 1\n",
        ),
        (
            "bob",
            9_000_003u64,
            "manual approvals, 0.10 lots fixed",
            "[policy]\nlot = { mode = \"fixed\", lots = \"0.10\" }\n[policy.approval]\nmode = \"manual\"\n",
        ),
    ];
    for (name, login, policy, extra) in subscribers {
        let (user_id, token) = hub.user(name, "subscriber").await?;
        hub.call(
            "/api/v1/entitlements",
            &hub.owner_token,
            json!({ "user_id": user_id, "plan_id": plan_id }),
        )
        .await?;
        let (node, key) = start_node(
            &root,
            &hub,
            name,
            &token,
            login,
            node_config("subscriber", extra)?,
            policy,
            via,
        )
        .await?;
        nodes.push(node);
        keys.push(key);
    }
    let mut subs = nodes;

    // One broker, one price stream, one terminal per node.
    let mut broker = Broker::new(BrokerConfig::default());
    broker.add_symbol(SymbolConfig::forex("EURUSD", 5));
    for login in std::iter::once(provider.login).chain(subs.iter().map(|s| s.login)) {
        broker
            .open_account(AccountConfig {
                login,
                currency: "USD".into(),
                leverage: 100,
                margin_mode: MarginMode::Hedging,
                balance: Decimal::from(BALANCE),
            })
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    let broker: SharedBroker = Arc::new(Mutex::new(broker));
    let mut terminals = Vec::new();
    for (node, key) in std::iter::once(&provider).chain(subs.iter()).zip(keys.iter()) {
        let mut tc = TerminalConfig::new(
            &format!("http://{}", node.running.ea_addr),
            &key.key_id,
            &key.secret,
            node.login,
        );
        tc.input_magic = MAGIC;
        tc.poll_wait_override_ms = Some(0);
        terminals.push(
            Terminal::new(tc, broker.clone(), Faults::default()).map_err(|e| anyhow!("{e:?}"))?,
        );
    }
    let text = std::str::from_utf8(EURUSD_H1)?;
    let n_lines = opts.bars.map_or(usize::MAX, |b| b.saturating_add(1));
    let head: Vec<&str> = text.lines().take(n_lines).collect();
    let spread = SpreadModel { base_points: 10, ..SpreadModel::default() };
    let feed = Feed::from_file(
        "EURUSD",
        head.join("\n").as_bytes(),
        &ParseOptions { utc_offset_seconds: 0 },
        spread,
        1,
    )
    .map_err(|e| anyhow!("{e}"))?;
    let bar_seconds = feed.bar_seconds();
    let total_bars = feed.len();
    let mut replay = Replay::new(broker.clone(), vec![feed]);

    out(&format!(
        "hub       http://{}  (QUIC {}, key {})",
        hub.started.addr,
        hub.started.quic_addr,
        hub.started.state.hub_identity.device_id().fmt_short()
    ));
    for n in std::iter::once(&provider).chain(subs.iter()) {
        let url = tradecast_node::ui::login_url(n.running.api_addr, &n.api_token);
        out(&format!("{:<9} {url}  ({})", n.name, n.policy));
    }
    out(&format!(
        "Replaying {total_bars} EURUSD H1 bars at {} on one simulated broker.\n",
        match opts.speed {
            Speed::Max => "full speed (lockstep)".to_string(),
            Speed::Factor(f) => format!("{f} bar-seconds per second"),
        }
    ));

    if let Some(p) = &proxy {
        out(&format!(
            "(every node reaches the hub's QUIC endpoint through a lossy proxy on {})",
            p.addr
        ));
    }
    let http = reqwest::Client::new();
    let mut narrator = Narrator::default();
    let mut clicked = BTreeSet::new();
    let mut bars = 0usize;
    // The hub restarts on the same data dir and addresses.
    let hub_addrs = (hub.started.addr, hub.started.quic_addr);
    let mut hub = Some(hub);
    let mut hub_back_at: Option<usize> = None;
    let mut stopped_hub: Option<(reqwest::Client, String)> = None;
    loop {
        let bar_started = Instant::now();
        settle(hub.as_ref(), &provider, &subs, &mut terminals).await?;
        if let Some(bob) = subs.iter().find(|s| s.name == "bob") {
            let before = clicked.len();
            click(bob, &http, &mut clicked).await?;
            if clicked.len() != before {
                settle(hub.as_ref(), &provider, &subs, &mut terminals).await?;
            }
        }
        let market = lock(&broker).time_ms();
        narrate(&mut narrator, hub.as_ref(), &provider, &subs, market, out).await?;
        // Faults, between bars.
        if opts.faults.restart_hub_at_bar == Some(bars)
            && let Some(h) = hub.take()
        {
            out(&format!("[{}] hub stopped: the nodes go on offline", fmt_market(market)));
            let DemoHub { started, http: http_c, owner_token } = h;
            started.stop().await?;
            hub_back_at = Some(bars + opts.faults.hub_down_bars.max(1));
            stopped_hub = Some((http_c, owner_token));
        }
        if hub_back_at == Some(bars)
            && let Some((http_c, owner_token)) = stopped_hub.take()
        {
            let started = hub_server(&hub_dir, hub_addrs.0, Some(hub_addrs.1)).await?;
            hub = Some(DemoHub { started, http: http_c, owner_token });
            out(&format!("[{}] hub back on the same data dir and addresses", fmt_market(market)));
        }
        if let Some((name, at)) = &opts.faults.restart_node_at_bar
            && *at == bars
            && let Some(i) = subs.iter().position(|s| &s.name == name)
        {
            let node = subs.remove(i);
            subs.insert(i, node.restart().await?);
            out(&format!("[{}] {name}'s node stopped and started again", fmt_market(market)));
        }
        if !replay.advance().map_err(|e| anyhow!("{e}"))? {
            break;
        }
        bars += 1;
        if let Speed::Factor(f) = opts.speed {
            let period = Duration::from_secs_f64((bar_seconds as f64 / f).max(0.0));
            if let Some(rest) = period.checked_sub(bar_started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
    }
    if let Some((http_c, owner_token)) = stopped_hub.take() {
        let started = hub_server(&hub_dir, hub_addrs.0, Some(hub_addrs.1)).await?;
        hub = Some(DemoHub { started, http: http_c, owner_token });
    }
    let hub = hub.ok_or_else(|| anyhow!("the hub is not running"))?;
    // Past the last bar: one more settle so every close and record is in.
    settle(Some(&hub), &provider, &subs, &mut terminals).await?;
    let market = lock(&broker).time_ms();
    narrate(&mut narrator, Some(&hub), &provider, &subs, market, out).await?;

    // The report, from signed records and the broker's deals.
    let mut signals = Vec::new();
    for (i, (s, created)) in provider_signals(&provider)?.into_iter().enumerate() {
        let stored = tradecast_hub::signals::stored_by_id(
            &hub.started.state.db,
            &hub.started.state.hub_identity,
            &s.id.to_hex(),
        )
        .await
        .map_err(|e| anyhow!("hub: {e:?}"))?;
        let mut per = BTreeMap::new();
        for sub in &subs {
            per.insert(sub.name.clone(), outcome_of(sub, s.id, &shared_records(sub)?)?);
        }
        signals.push(SignalReport {
            number: i + 1,
            signal: s,
            created_at_ms: created,
            hub_received_at_ms: stored.map(|(x, _)| x.received_at_ms),
            subscribers: per,
        });
    }
    let mut totals_v = Vec::new();
    for sub in &subs {
        totals_v.push(totals(sub, &broker, &signals)?);
    }
    // Latency of the machines only: the auto-copy subscriber's fills (a manual approval waits
    // for a person).
    let mut lat: Vec<i64> = signals
        .iter()
        .flat_map(|s| {
            s.subscribers
                .iter()
                .filter(|(name, _)| AUTO_SUBSCRIBERS.contains(&name.as_str()))
                .flat_map(move |(_, o)| o.fills.iter().map(move |f| f.2 - s.created_at_ms))
        })
        .collect();
    lat.sort_unstable();
    let latency_ms = (!lat.is_empty())
        .then(|| (percentile(&lat, 50), percentile(&lat, 99), *lat.last().unwrap_or(&0)));
    let all: Vec<&DemoNode> = std::iter::once(&provider).chain(subs.iter()).collect();
    let unsynced = wait_synced(&hub, &all).await?;
    // The receipts come back through the provider's feed: wait (bounded) for the last ones.
    let provider_records = provider.node().store().read()?.outbox_from(StreamId::SIGNALS, 1)?.len();
    let receipts_since = Instant::now();
    let mut provider_receipts;
    loop {
        provider_receipts = provider.node().store().read()?.receipts(StreamId::SIGNALS)?.len();
        if provider_receipts >= provider_records || receipts_since.elapsed() > SETTLE_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (chains_verified, hub_records) = verify_hub_chains(&hub, &all).await?;
    let report = Report {
        bars,
        signals,
        subscribers: totals_v,
        latency_ms,
        chains_verified,
        hub_records,
        unsynced,
        lossy: proxy.as_ref().map(crate::lossy::Proxy::counts),
        provider_records,
        provider_receipts,
        hub_links: all.iter().map(|n| (n.name.clone(), n.node().hub_connected())).collect(),
    };
    print_summary(&report, out);

    if !opts.exit_when_done {
        out(
            "\nThe replay is over; the hub and the nodes keep serving their pages. Ctrl-C stops the demo.",
        );
        tokio::signal::ctrl_c().await.ok();
    }
    for n in std::iter::once(&provider).chain(subs.iter()) {
        n.shutdown.trigger();
    }
    for n in std::iter::once(provider).chain(subs) {
        let name = n.name.clone();
        if let Err(e) = n.running.join().await {
            tracing::warn!(target: "tradecast::demo", node = %name, error = %e, "node stop");
        }
        let _ = n.data;
    }
    hub.started.stop().await?;
    Ok(report)
}

fn print_summary(r: &Report, out: &mut dyn FnMut(&str)) {
    out("");
    out(&format!("Summary — {} bars, {} signals signed by the provider", r.bars, r.signals.len()));
    out(
        "subscriber  policy                              received approved filled skipped  P&L (USD)   P&L (R)  open",
    );
    for t in &r.subscribers {
        out(&format!(
            "{:<11} {:<35} {:>8} {:>8} {:>6} {:>7} {:>10} {:>9} {:>5}",
            t.name,
            t.policy,
            t.received,
            t.approved,
            t.filled,
            t.skipped,
            t.pnl.round_dp(2),
            t.pnl_r,
            t.open_positions
        ));
    }
    match r.latency_ms {
        Some((p50, p99, max)) => out(&format!(
            "signal → fill latency, auto-copy (wall clock, the provider's signed signal to the subscriber's signed execution): p50 {p50} ms, p99 {p99} ms, max {max} ms"
        )),
        None => out("signal → fill latency: no fills"),
    }
    out(&format!(
        "hub: {} records in {} chains, every one verified (signatures, seq, previous hash)",
        r.hub_records, r.chains_verified
    ));
    out(&format!(
        "provider: the hub's signed receipt held for {} of its {} track-record records",
        r.provider_receipts, r.provider_records
    ));
    if let Some(c) = r.lossy {
        out(&format!(
            "lossy proxy: {} datagrams forwarded, {} dropped, {} duplicated",
            c.forwarded, c.dropped, c.duplicated
        ));
    }
    if r.unsynced.is_empty() {
        out("every record each node signed is at the hub, once");
    } else {
        out(&format!("not yet at the hub: {}", r.unsynced.join("; ")));
    }
}

//! `tradecast demo`: the whole system on loopback, in temporary data dirs, with no database
//! server — a hub on SQLite, a provider node running Fib-RSI v1 on its own simulated terminal,
//! and two subscriber nodes with different policies beside simulated terminals of their own, all
//! terminals on one simulated broker replaying the bundled EURUSD H1 bars (the market clock of
//! every node).
//!
//! The hub and every node run in processes of their own ([`crate::procs`]: this program's
//! hidden `hub` and `node` commands, the same code as `tradecast-hub` and `tradecast-node`),
//! which the fault tests kill with SIGKILL. The demo sees a node only through its local API and
//! the hub through its API and its SQLite file. However the demo ends, none of them outlives it
//! and its temporary data goes ([`run`], and `crate::procs` for a demo killed outright).
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
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tradecast_node::api::{ExportedRecord, RECORDS_PAGE_MAX};
use tradecast_node::runtime::{ApprovalRow, OrderRow, SignalRow, Status};
use tradecast_protocol::bars::ParseOptions;
use tradecast_protocol::ea::{self, DealEntry, MarginMode};
use tradecast_protocol::{
    Body, Decision, DeviceId, IdentityKey, Record, Side, Signal, SignalId, StreamId,
};

use crate::procs::{DataRoot, Proc, STOP_GRACE, StopSignal};
use tradecast_sim::broker::{AccountConfig, Broker, BrokerConfig, SymbolConfig};
use tradecast_sim::feed::{Feed, SpreadModel};
use tradecast_sim::replay::{Replay, Speed};
use tradecast_sim::terminal::{Faults, SharedBroker, Terminal, TerminalConfig, lock};

pub mod realistic;

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

/// alice's Telegram user id in the stand-in.
const ALICE_TELEGRAM: i64 = 424_242;
/// bob's.
const BOB_TELEGRAM: i64 = 434_343;

/// A bot message on one narration line.
fn one_line(text: &str) -> String {
    let joined: String =
        text.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" / ");
    match joined.char_indices().nth(150) {
        Some((i, _)) => format!("{}…", &joined[..i]),
        None => joined,
    }
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bar pace: `max`, or bar-seconds per wall second.
    pub speed: Speed,
    /// Replay only the first `bars` bars of the sample.
    pub bars: Option<usize>,
    /// Stop when the replay ends instead of serving the UIs until asked to stop.
    pub exit_when_done: bool,
    /// Keep the data dirs here instead of a temporary folder.
    pub data: Option<PathBuf>,
    /// Faults to inject (the end-to-end tests; `--lossy` on the command line).
    pub faults: FaultPlan,
    /// The simulated broker and terminals behave like real MT5 ones in every way issue 23
    /// modelled ([`realistic`]; `--realistic-terminal`): the same decisions and fills.
    pub realistic_terminal: bool,
    /// The `tradecast` executable whose hidden `hub` and `node` commands run the hub and the
    /// nodes, each in a process of its own (normally this very program).
    pub program: PathBuf,
    /// After the summary, wait for the hub's public delay and run the offline verifier on the
    /// provider's public export (60–120 s more; on by default; tests that compare several runs
    /// leave it to the one that checks it).
    pub public_record: bool,
    /// Who plays bob in the Telegram Mini App when he approves a signal there: `None`, the
    /// demo itself, over HTTP as the app's page does; the browser test hands Chromium.
    pub miniapp_hand: Option<MiniAppHand>,
    /// Who visits the public track record after the run (with `public_record`): `None`, the
    /// demo reads it over HTTP; the browser test hands Chromium.
    pub public_hand: Option<PublicHand>,
}

/// What a trader's hand does in the Mini App: given the address Telegram's client opens (the
/// app's URL with the signed launch data in the fragment, `startapp=approve_<signal>`), approve
/// the signal it shows at the size the trader's rules propose and wait for the node's answer;
/// returns the answer's words as the app shows them.
#[derive(Clone)]
pub struct MiniAppHand(pub Arc<dyn Fn(String) -> HandFuture + Send + Sync>);

/// The future a [`MiniAppHand`] or a [`PublicHand`] returns: what its user saw, in words.
pub type HandFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>> + Send>>;

/// A stranger's hand on the public track record, once the public delay has passed the run:
/// given the addresses of [`PublicVisit`], opens them as a visitor does (the browser test hands
/// Chromium) and says what they saw.
#[derive(Clone)]
pub struct PublicHand(pub Arc<dyn Fn(PublicVisit) -> HandFuture + Send + Sync>);

impl std::fmt::Debug for PublicHand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicHand(..)")
    }
}

/// The public addresses of the demo's run a stranger can open.
#[derive(Debug, Clone)]
pub struct PublicVisit {
    /// The provider's public page, `/p/{provider}`.
    pub page: String,
    /// Its export (the file the verifier reads).
    pub export: String,
    /// The embeddable trust widget.
    pub widget: String,
    /// The provider's redacted share link of its own account.
    pub share: String,
    /// The hub's identity key (hex), to pin in the verifier.
    pub hub_key: String,
}

impl std::fmt::Debug for MiniAppHand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MiniAppHand(..)")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            speed: Speed::Factor(DEFAULT_SPEED),
            bars: None,
            exit_when_done: false,
            data: None,
            faults: FaultPlan::default(),
            realistic_terminal: false,
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tradecast")),
            public_record: true,
            miniapp_hand: None,
            public_hand: None,
        }
    }
}

/// Faults a run injects. The report must come out the same as without them.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Every node reaches the hub's QUIC endpoint through a proxy that drops, delays and
    /// duplicates datagrams ([`crate::lossy`]).
    pub lossy: Option<crate::lossy::Faults>,
    /// Kill the hub's process (SIGKILL) after this bar and start a new one on the same data
    /// dir and addresses `hub_down_bars` bars later (the nodes work offline meanwhile and catch
    /// up).
    pub kill_hub_at_bar: Option<usize>,
    /// Bars the hub stays down.
    pub hub_down_bars: usize,
    /// Kill this subscriber's node process (SIGKILL) after this bar and start a new one at once
    /// on the same data dir and addresses (its terminal says hello again).
    pub kill_node_at_bar: Option<(String, usize)>,
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
    /// Streams whose records a hub receipt does not cover up to the last at the end, as
    /// "name stream N: receipted to R of T" (empty: the hub vouched for every record).
    pub unreceipted: Vec<String>,
    /// Bars that did not settle within the limit (a party stuck, or a link waiting out a
    /// timeout): 0 in a healthy run, faults included.
    pub settle_timeouts: usize,
    /// The figures of the hub console's overview as the owner sees them after signing in with
    /// the browser's form (`fig-…` element id without the prefix → value).
    pub console: BTreeMap<String, i64>,
    /// The overview's MRR as shown (`52.25 USD`), if it showed one.
    pub console_mrr: Option<String>,
    /// The referrer's pending commission after alice's payment, minor units of USD.
    pub affiliate_pending: Option<i64>,
    /// This month's USD revenue after alice's payment as the owner's revenue page shows it:
    /// gross, processor fees, affiliate commissions, net.
    pub revenue_month: Option<[String; 4]>,
    /// Each subscriber's plan features in force at the end, as its node holds them: hub-signed
    /// FeatureGrants the node verified against its pinned hub key (name → feature names).
    pub plans: Vec<(String, Vec<String>)>,
    /// The hub's subscriptions at the end: (subscriber, how paid, state, renewal unix ms).
    pub subscriptions: Vec<(String, String, String, i64)>,
    /// Money taken, by currency, in minor units (paid minus refunded).
    pub revenue: Vec<(String, i64)>,
    /// Stripe's webhooks to the hub: (accepted, refused) delivery attempts.
    pub stripe_webhooks: (usize, usize),
    /// What the Telegram bot sent alice (texts, oldest first).
    pub telegram_to_alice: Vec<String>,
    /// Bot API calls the stand-in refused for flood limits (429).
    pub telegram_429: usize,
    /// The provider's public track record: its page, and the offline verifier's run over the
    /// export a stranger downloads once the public delay has passed the whole run (after the
    /// summary: `None` only if the demo was stopped before).
    pub public_record: Option<PublicRecord>,
}

/// The public track record as a stranger meets it at the end of the demo.
#[derive(Debug, Clone)]
pub struct PublicRecord {
    /// `/p/{provider}` on the demo's hub.
    pub page: String,
    /// The export's address.
    pub export: String,
    /// Records in the export.
    pub records: usize,
    /// The verifier's report (`tradecast-verify`'s output) and verdict.
    pub verifier: tradecast_protocol::track::VerifierReport,
    /// The provider's redacted share link and the accounts its page shows.
    pub share: (String, usize),
    /// What the stranger's hand saw ([`Options::public_hand`]), if one visited.
    pub visited: Option<String>,
}

/// A running node of the demo: a process of its own (`tradecast node run`), seen only through
/// its local API, as the trader's UI and CLI see it.
struct DemoNode {
    name: String,
    policy: String,
    data: PathBuf,
    proc: Option<Proc>,
    ea_addr: SocketAddr,
    api_addr: SocketAddr,
    login: u64,
    device: DeviceId,
    /// The node's identity key, as its status states it: every record it exports must verify.
    key: IdentityKey,
    api_token: String,
    http: reqwest::Client,
    /// The records the node signed, per stream, as read so far (an outbox only grows).
    records: Mutex<BTreeMap<u32, Vec<Record>>>,
}

impl DemoNode {
    /// Starts a node's process on its data dir (`tradecast node run --data DIR`) and waits
    /// until its API answers.
    async fn spawn(
        program: &Path,
        name: &str,
        data: &Path,
        api_addr: SocketAddr,
        api_token: &str,
        http: &reqwest::Client,
    ) -> anyhow::Result<Proc> {
        let args: [&OsStr; 4] =
            ["node".as_ref(), "run".as_ref(), "--data".as_ref(), data.as_os_str()];
        let mut proc = Proc::spawn(program, &args, &format!("{name}'s node"))?;
        let url = format!("http://{api_addr}/api/v1/status");
        proc.ready(http, &url, Some(api_token)).await?;
        Ok(proc)
    }

    /// `kill -9` of the node's process, and a new one on the same data dir and addresses.
    async fn kill_and_restart(&mut self, program: &Path) -> anyhow::Result<()> {
        if let Some(p) = self.proc.take() {
            p.kill()?;
        }
        let (data, addr, token) = (&self.data, self.api_addr, &self.api_token);
        self.proc = Some(Self::spawn(program, &self.name, data, addr, token, &self.http).await?);
        Ok(())
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("http://{}{path}", self.api_addr);
        let r = self.http.get(&url).bearer_auth(&self.api_token).send().await?;
        let status = r.status();
        if !status.is_success() {
            bail!("{}'s node answered {status} to GET {path}: {}", self.name, r.text().await?);
        }
        Ok(r.json().await?)
    }

    async fn status(&self) -> anyhow::Result<Status> {
        self.get("/api/v1/status").await
    }

    /// What the trader ticks on the node's Settings → Publishing (the same `PUT` the page and
    /// `tradecast-node publish` make).
    async fn set_publishing(
        &self,
        consent: tradecast_node::store::PublishConsent,
    ) -> anyhow::Result<()> {
        let url = format!("http://{}/api/v1/publishing", self.api_addr);
        let r = self.http.put(&url).bearer_auth(&self.api_token).json(&consent).send().await?;
        let status = r.status();
        if !status.is_success() {
            bail!(
                "{}'s node answered {status} to PUT /api/v1/publishing: {}",
                self.name,
                r.text().await?
            );
        }
        Ok(())
    }

    /// Its closed trades as the History page's download gives them (Myfxbook's CSV layout).
    async fn trades_csv(&self) -> anyhow::Result<String> {
        let url = format!("http://{}/api/v1/trades?format=csv", self.api_addr);
        let r = self.http.get(url).bearer_auth(&self.api_token).send().await?;
        Ok(r.error_for_status()?.text().await?)
    }

    async fn signals(&self) -> anyhow::Result<Vec<SignalRow>> {
        self.get("/api/v1/signals").await
    }

    async fn approvals(&self) -> anyhow::Result<Vec<ApprovalRow>> {
        self.get("/api/v1/approvals").await
    }

    /// Every record the node signed on `stream`, each verified against its key.
    async fn records(&self, stream: StreamId) -> anyhow::Result<Vec<Record>> {
        let have = self.lock_records()?.get(&stream.0).map_or(0, Vec::len);
        let mut fresh = Vec::new();
        loop {
            let from = have + fresh.len() + 1;
            let page: Vec<ExportedRecord> =
                self.get(&format!("/api/v1/records/{}?from={from}", stream.0)).await?;
            let n = page.len();
            for row in page {
                let bytes = hex::decode(&row.record)?;
                let r = Record::decode(&bytes).map_err(|e| anyhow!("{}: {e}", self.name))?;
                r.verify(&self.key)
                    .map_err(|e| anyhow!("{}'s record {}: {e}", self.name, row.seq))?;
                fresh.push(r);
            }
            if n < RECORDS_PAGE_MAX {
                break;
            }
        }
        let mut all = self.lock_records()?;
        let v = all.entry(stream.0).or_default();
        if v.len() == have {
            v.extend(fresh);
        }
        Ok(v.clone())
    }

    fn lock_records(
        &self,
    ) -> anyhow::Result<std::sync::MutexGuard<'_, BTreeMap<u32, Vec<Record>>>> {
        self.records.lock().map_err(|_| anyhow!("records cache poisoned"))
    }
}

/// What one node's pages show at a moment, for the narration and the report.
struct Snapshot {
    signals: Vec<SignalRow>,
    approvals: Vec<ApprovalRow>,
    /// The shared-stream records it signed (approvals and executions).
    shared: Vec<Record>,
}

impl Snapshot {
    async fn of(node: &DemoNode) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            signals: node.signals().await?,
            approvals: node.approvals().await?,
            shared: node.records(StreamId::SHARED).await?,
        })
    }
}

/// The demo's hub: a process of its own (`tradecast hub serve`) on a SQLite file this process
/// also reads (to wait for it and to check its chains), and an owner session.
struct DemoHub {
    proc: Option<Proc>,
    /// The Stripe stand-in the hub sells through (in this process; it outlives hub restarts).
    stripe: tradecast_standins::stripe::StripeStandin,
    /// The Telegram Bot API stand-in the hub's bot talks to (and the demo's Telegram users).
    telegram: tradecast_standins::telegram::TelegramStandin,
    config_file: PathBuf,
    addr: SocketAddr,
    quic_addr: SocketAddr,
    db: tradecast_hub::db::Db,
    identity: tradecast_protocol::Identity,
    http: reqwest::Client,
    owner_token: String,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A loopback address with a free TCP port.
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A loopback port free over TCP and UDP both: the hub's HTTP API and its QUIC endpoint share
/// it, as by default (a node enrolled at `HOST:PORT` syncs with UDP `HOST:PORT`).
fn free_tcp_and_udp() -> anyhow::Result<SocketAddr> {
    for _ in 0..50 {
        let addr = free_addr()?;
        if std::net::UdpSocket::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    bail!("no loopback port free over both TCP and UDP")
}

impl DemoHub {
    async fn start(program: &Path, dir: &Path) -> anyhow::Result<DemoHub> {
        std::fs::create_dir_all(dir)?;
        let addr = free_tcp_and_udp()?;
        let quic_addr = addr;
        let config_file = dir.join("hub.toml");
        let data = toml::Value::String(dir.display().to_string());
        // Demo accounts on a throwaway hub: light password hashing keeps the start quick.
        // Stripe: the stand-in, with its keys in the hub's secrets directory as an operator
        // would deploy real ones.
        let stripe = tradecast_standins::stripe::StripeStandin::start(Default::default())
            .await
            .context("start the Stripe stand-in")?;
        let integrations = dir.join("integrations");
        std::fs::create_dir_all(&integrations)?;
        std::fs::write(integrations.join("stripe_secret_key"), stripe.secret_key())?;
        std::fs::write(integrations.join("stripe_webhook_secret"), stripe.webhook_secret())?;
        // Telegram: the Bot API stand-in, the bot's token and webhook secret as secrets; the
        // hub sets its webhook at start.
        let telegram = tradecast_standins::telegram::TelegramStandin::start(Default::default())
            .await
            .context("start the Telegram stand-in")?;
        std::fs::write(integrations.join("telegram_bot_token"), telegram.token())?;
        std::fs::write(
            integrations.join("telegram_webhook_secret"),
            tradecast_hub::ids::random_hex(16),
        )?;
        let telegram_api = toml::Value::String(telegram.base_url().to_string());
        // The key Telegram signs Mini App launch data with (the stand-in's own in the demo).
        let miniapp_key = telegram.web_app_public_key();
        let secrets_dir = toml::Value::String(integrations.display().to_string());
        let stripe_api = toml::Value::String(stripe.base_url().to_string());
        std::fs::write(
            &config_file,
            format!(
                "listen = \"{addr}\"\ndata_dir = {data}\npublic_url = \"http://{addr}\"\n\
                 secrets_dir = {secrets_dir}\n\n\
                 [auth]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\n\
                 [stripe]\napi_base_url = {stripe_api}\n\n\
                 [telegram]\nmode = \"webhook\"\napi_base_url = {telegram_api}\n\
                 miniapp_public_key = \"{miniapp_key}\"\n\n\
                 [public]\ndelay_s = {PUBLIC_DELAY_S}\n"
            ),
        )?;
        stripe.set_webhook_url(format!("http://{addr}/api/v1/billing/stripe/webhook"));
        let config = tradecast_hub::config::Config::load(
            Some(&config_file),
            std::iter::empty(),
            &tradecast_hub::config::Overrides::default(),
        )?;
        // The owner account, as an operator creates it: `admin create-owner`, password on stdin.
        let conf = config_file.as_os_str();
        let email_arg = format!("--email={}", DEMO_OWNER.0);
        let args: [&OsStr; 6] = [
            "hub".as_ref(),
            "--config".as_ref(),
            conf,
            "admin".as_ref(),
            "create-owner".as_ref(),
            email_arg.as_ref(),
        ];
        Proc::run_with_input(program, &args, &format!("{}\n", DEMO_OWNER.1))
            .context("create the hub's owner")?;
        let http = reqwest::Client::new();
        let proc = Self::spawn(program, &config_file, addr, &http).await?;
        let db = tradecast_hub::open_db(&config).await?;
        let identity =
            tradecast_hub::hub_identity(&tradecast_hub::load_secrets(&config, std::iter::empty())?);
        let mut hub = DemoHub {
            proc: Some(proc),
            stripe,
            telegram,
            config_file,
            addr,
            quic_addr,
            db,
            identity,
            http,
            owner_token: String::new(),
        };
        hub.owner_token = hub.login(DEMO_OWNER.0, DEMO_OWNER.1).await?;
        // The owner registered the hub's Mini App with BotFather as the bot's Main Mini App
        // (the links of the bot's approval messages open it).
        hub.telegram
            .set_main_mini_app(&hub.url("/miniapp"))
            .map_err(|e| anyhow!("telegram: {e}"))?;
        Ok(hub)
    }

    async fn spawn(
        program: &Path,
        config_file: &Path,
        addr: SocketAddr,
        http: &reqwest::Client,
    ) -> anyhow::Result<Proc> {
        let args: [&OsStr; 4] =
            ["hub".as_ref(), "--config".as_ref(), config_file.as_os_str(), "serve".as_ref()];
        let mut proc = Proc::spawn(program, &args, "hub")?;
        proc.ready(http, &format!("http://{addr}/health"), None).await?;
        Ok(proc)
    }

    fn up(&self) -> bool {
        self.proc.is_some()
    }

    /// `kill -9` of the hub's process.
    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(p) = self.proc.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// A new hub process on the same data dir and addresses.
    async fn restart(&mut self, program: &Path) -> anyhow::Result<()> {
        self.proc = Some(Self::spawn(program, &self.config_file, self.addr, &self.http).await?);
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
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

    /// Signs in to the hub's console as a browser does (the login form, the session cookie) and
    /// reads the overview's figures: what the owner sees at `/`.
    /// The provider's public export once the hub's public delay has passed `after_ms` (so it
    /// holds the whole run), run through the offline verifier with the hub's key pinned, as a
    /// stranger would run `tradecast-verify export.json --hub-key KEY`.
    async fn public_record(
        &self,
        provider_id: &str,
        share: &str,
        after_ms: i64,
        hand: Option<&PublicHand>,
        out: &mut dyn FnMut(&str),
    ) -> anyhow::Result<PublicRecord> {
        let export = self.url(&format!("/public/v1/providers/{provider_id}/export"));
        out(&format!(
            "waiting for the hub's public delay ({PUBLIC_DELAY_S} s) to pass the run's last record, so the public track record holds the whole run"
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(PUBLIC_DELAY_S * 2 + 30);
        // The cutoff is `now − delay` rounded down to a minute: it passes `after_ms` at the
        // first whole minute after `after_ms + delay`. Sleep until then; ask again every 2 s.
        let minute = 60_000;
        let delay_ms = i64::try_from(PUBLIC_DELAY_S * 1000).unwrap_or(i64::MAX);
        let passes_at = (after_ms + delay_ms).div_euclid(minute) * minute + minute;
        let wait_ms = u64::try_from(passes_at - wall_ms()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let bytes = loop {
            let bytes = self.http.get(&export).send().await?.error_for_status()?.bytes().await?;
            let parsed = tradecast_protocol::track::parse_export(&bytes)
                .map_err(|e| anyhow!("the hub's export does not parse: {e}"))?;
            if parsed.cutoff_ms >= after_ms || std::time::Instant::now() > deadline {
                break bytes;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        let parsed = tradecast_protocol::track::parse_export(&bytes)
            .map_err(|e| anyhow!("the hub's export does not parse: {e}"))?;
        let records = parsed.chains.iter().map(|c| c.records.len()).sum();
        let verifier =
            tradecast_protocol::track::verifier_report(&bytes, Some(&self.identity.identity_key()));
        // The redacted share link: its money sections, one per publishing account.
        let shared = self.http.get(share).send().await?.error_for_status()?.text().await?;
        let accounts = shared.matches("<section class=\"money\"").count();
        let page = self.url(&format!("/p/{provider_id}"));
        let visited = match hand {
            Some(hand) => {
                let visit = PublicVisit {
                    page: page.clone(),
                    export: export.clone(),
                    widget: self.url(&format!("/public/v1/providers/{provider_id}/widget")),
                    share: share.to_owned(),
                    hub_key: hex::encode(self.identity.identity_key().to_bytes()),
                };
                Some((hand.0)(visit).await.context("the stranger's visit")?)
            }
            None => None,
        };
        Ok(PublicRecord {
            page,
            export,
            records,
            verifier,
            share: (share.to_owned(), accounts),
            visited,
        })
    }

    async fn console_overview(
        &self,
        email: &str,
        password: &str,
    ) -> anyhow::Result<(BTreeMap<String, i64>, Option<String>)> {
        let b = self.browser_session(email, password, None).await?;
        let page = b
            .client
            .get(self.url("/"))
            .header(reqwest::header::COOKIE, &b.cookie)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let mrr = page
            .split_once("id=\"fig-mrr\">")
            .and_then(|(_, rest)| rest.split_once('<'))
            .map(|(v, _)| v.trim().to_owned());
        Ok((console_figures(&page), mrr))
    }

    /// The owner broadcasts `text` with a button to every linked account from the console's
    /// Broadcasts page, as in a browser; how many accounts it was queued for.
    async fn broadcast(&self, text: &str, button: (&str, &str)) -> anyhow::Result<String> {
        let mut b = self.browser_session(DEMO_OWNER.0, DEMO_OWNER.1, None).await?;
        b.csrf = b.csrf_of(&self.url("/broadcasts")).await?.0;
        let form = [
            ("csrf", b.csrf.as_str()),
            ("segment", "all"),
            ("body", text),
            ("cta_label", button.0),
            ("cta_url", button.1),
        ];
        let r = b.post(self.url("/broadcasts"), form_body(&form)?).await?;
        let to = location(&r).context("the broadcast was refused")?;
        Ok(to.rsplit('=').next().unwrap_or("?").to_owned())
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
        let (email, password) = demo_credentials(name);
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

    /// The owner runs a referral programme (20 % of each payment for 12 months, affiliates
    /// approved by the owner); `name` joins it and is approved. Returns (name's token, code).
    async fn affiliate_programme(&self, name: &str) -> anyhow::Result<(String, String)> {
        let settings = json!({
            "approval_required": true, "window_days": 60, "holding_days": 30,
            "refund_rate_bp": 5000, "refund_min_invoices": 20, "burst_signups": 50,
            "burst_minutes": 60, "tiers": [],
            "schemes": [{ "plan_id": "*", "kind": "percent", "percent_bp": 2000, "months": 12 }],
            "thresholds": [{ "currency": "USD", "min_minor": 5000 }],
        });
        let r = self
            .http
            .put(self.url("/api/v1/affiliates/settings"))
            .bearer_auth(&self.owner_token)
            .json(&settings)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("affiliate settings refused: {}", r.text().await.unwrap_or_default());
        }
        let (_, token) = self.user(name, "subscriber").await?;
        let joined = self.call("/api/v1/affiliates/me", &token, json!({})).await?;
        let id = joined["affiliate"]["id"]
            .as_str()
            .or_else(|| joined["id"].as_str())
            .ok_or_else(|| anyhow!("no affiliate id: {joined}"))?
            .to_owned();
        let decided = self
            .call(
                &format!("/api/v1/affiliates/{id}/decision"),
                &self.owner_token,
                json!({ "approve": true }),
            )
            .await?;
        let code = decided["codes"][0]
            .as_str()
            .ok_or_else(|| anyhow!("no affiliate code: {decided}"))?
            .to_owned();
        Ok((token, code))
    }

    /// `token`'s affiliate balance pending in `currency`, minor units.
    async fn affiliate_pending(&self, token: &str, currency: &str) -> anyhow::Result<i64> {
        let me: Value = self
            .http
            .get(self.url("/api/v1/affiliates/me"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(me["balances"]
            .as_array()
            .and_then(|b| b.iter().find(|x| x["currency"] == currency))
            .and_then(|x| x["pending_minor"].as_i64())
            .unwrap_or(0))
    }

    /// This month's revenue in `currency` as the owner's `/revenue` page shows it (the same
    /// figures as `GET /api/v1/console/revenue`): gross, processor fees, affiliate commissions
    /// and net, two decimals.
    async fn revenue_this_month(&self, currency: &str) -> anyhow::Result<[String; 4]> {
        let token = self.login(DEMO_OWNER.0, DEMO_OWNER.1).await?;
        let r: Value = self
            .http
            .get(self.url("/api/v1/console/revenue"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let month = r["currencies"]
            .as_array()
            .and_then(|c| c.iter().find(|x| x["currency"] == currency))
            .and_then(|c| c["months"].as_array())
            .and_then(|m| m.last())
            .ok_or_else(|| anyhow!("no {currency} revenue this month: {r}"))?;
        let field = |k: &str| month[k].as_str().unwrap_or("?").to_owned();
        Ok([field("gross"), field("processor_fees"), field("affiliate"), field("net")])
    }

    /// An account signs up on the hub's `/signup` page (`sign_up_as`: its name) or signs in at
    /// `/login`, as a browser does: a client that does not follow redirects, the session
    /// cookie, and the account page's CSRF token.
    async fn browser_session(
        &self,
        email: &str,
        password: &str,
        sign_up_as: Option<&str>,
    ) -> anyhow::Result<Browser> {
        self.browser_session_via(email, password, sign_up_as, None).await
    }

    /// [`Self::browser_session`], the sign-up reached through a referrer's link
    /// (`/signup?ref=<code>`: the hub counts the click and sets its `tc_ref` cookie, which the
    /// browser sends back with the form).
    async fn browser_session_via(
        &self,
        email: &str,
        password: &str,
        sign_up_as: Option<&str>,
        referral: Option<&str>,
    ) -> anyhow::Result<Browser> {
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if referral.is_some() {
            // A referred visitor's browser is on their own machine: another loopback address
            // here (the hub holds a commission when the sign-up comes from the address the
            // referrer applied from: a self-referral).
            builder = builder.local_address(std::net::IpAddr::from([127, 0, 0, 2]));
        }
        let client = builder.build()?;
        let mut b = Browser { client, cookie: String::new(), csrf: String::new() };
        if let Some(code) = referral {
            let r = b.client.get(self.url(&format!("/signup?ref={code}"))).send().await?;
            b.cookie = r
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| v.starts_with("tc_ref="))
                .and_then(|v| v.split(';').next())
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the referral link set no cookie: {}", r.status()))?;
        }
        let (path, mut fields) = match sign_up_as {
            Some(name) => {
                ("/signup", vec![("email", email), ("password", password), ("display_name", name)])
            }
            None => ("/login", vec![("email", email), ("password", password)]),
        };
        if let Some(code) = referral {
            fields.push(("ref", code));
        }
        let r = b.post(self.url(path), form_body(&fields)?).await?;
        b.cookie = r
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("tc_hub_session="))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{email} got no session at {path}: {}", r.status()))?;
        b.csrf = b.csrf_of(&self.url("/account")).await?.0;
        Ok(b)
    }

    /// A trader's way in, as a browser takes it: sign up on the hub's page, subscribe to
    /// `plan_id` by card (the hub sends the browser to Stripe's Checkout, here the stand-in's,
    /// the card is typed there, Stripe sends it back to the hub), then sign in to the API for
    /// the node's enrolment. Returns (user id, access token).
    async fn sign_up_and_subscribe(
        &self,
        name: &str,
        plan_id: &str,
        referral: Option<&str>,
    ) -> anyhow::Result<(String, String)> {
        let (email, password) = demo_credentials(name);
        let b = self.browser_session_via(&email, &password, Some(name), referral).await?;
        let to_checkout = b
            .post(
                self.url("/account/checkout"),
                form_body(&[("csrf", &b.csrf), ("plan_id", plan_id)])?,
            )
            .await?;
        let checkout = location(&to_checkout)?;
        b.client.get(&checkout).send().await?.error_for_status()?;
        let paid = b
            .client
            .post(&checkout)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("card_number", "4242 4242 4242 4242"),
                ("exp", "12 / 34"),
                ("cvc", "123"),
            ])?)
            .send()
            .await?;
        let back = location(&paid).context("the card was not accepted")?;
        let done = b.client.get(&back).header(reqwest::header::COOKIE, &b.cookie).send().await?;
        if location(&done)? != "/account?checkout=done" {
            bail!("{name}'s checkout did not complete");
        }
        let token = self.login(&email, &password).await?;
        let me: Value =
            self.http.get(self.url("/api/v1/me")).bearer_auth(&token).send().await?.json().await?;
        let id = me["id"].as_str().ok_or_else(|| anyhow!("no user id"))?.to_owned();
        Ok((id, token))
    }

    /// `name` links Telegram as a user does: the account page's "Link Telegram" gives a one-time
    /// `t.me/<bot>?start=<code>` link, the user opens it and presses Start (`/start <code>`).
    /// Returns the link (without its code) once the bot has answered.
    async fn link_telegram(&self, name: &str, tg_user: i64) -> anyhow::Result<String> {
        let (email, password) = demo_credentials(name);
        let mut b = self.browser_session(&email, &password, None).await?;
        // The hub learns its bot's username from Telegram (getMe) just after it starts.
        for _ in 0..100 {
            let (csrf, page) = b.csrf_of(&self.url("/account")).await?;
            b.csrf = csrf;
            if page.contains("Link Telegram") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r =
            b.post(self.url("/account/telegram-link"), form_body(&[("csrf", &b.csrf)])?).await?;
        let link = location(&r).context("no Telegram link")?;
        let (base, code) =
            link.split_once("?start=").ok_or_else(|| anyhow!("not a deep link: {link}"))?;
        self.telegram_user(name, tg_user)?;
        let t = &self.telegram;
        t.user_says(tg_user, &format!("/start {code}")).map_err(|e| anyhow!("{e}"))?;
        self.bot_said(name, tg_user, "Linked to").await?;
        Ok(format!("{base}?start=…"))
    }

    /// The Telegram user `tg_user` opens the bot's Mini App: the page exchanges Telegram's
    /// signed launch data for a session (`POST /api/v1/miniapp/session`, `Authorization: tma
    /// …`) and loads the plan view with it, as Telegram's client does. Returns the plan line the
    /// trader sees (the plan's name, its door and renewal).
    async fn open_miniapp(&self, tg_user: i64) -> anyhow::Result<String> {
        let now_s = i64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        )?;
        let init = self
            .telegram
            .web_app_init_data(tg_user, now_s, None)
            .map_err(|e| anyhow!("telegram: {e}"))?;
        let token = self.miniapp_session(&init).await?;
        let page = self
            .http
            .get(self.url("/miniapp/app/plan"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        // The first plan row: `<b>name</b><div class="hint">door · renewal UTC</div>`.
        let name = page
            .split_once("<b>")
            .and_then(|(_, rest)| rest.split_once("</b>"))
            .map(|(name, _)| name.to_string())
            .ok_or_else(|| anyhow!("the Mini App's plan view shows no plan"))?;
        let hint = page
            .split_once("<div class=\"hint\">")
            .and_then(|(_, rest)| rest.split_once("</div>"))
            .map(|(hint, _)| hint.replace("&amp;", "&"))
            .unwrap_or_default();
        Ok(format!("{name} — {hint}"))
    }

    /// The Mini App's page exchanging Telegram's signed launch data (`init`) for a session of a
    /// linked account: its bearer token.
    async fn miniapp_session(&self, init: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .post(self.url("/api/v1/miniapp/session"))
            .header("Authorization", format!("tma {init}"))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 201, "Mini App session: {}", r.status());
        let session: Value = r.json().await?;
        anyhow::ensure!(session["linked"] == true, "the Telegram user is not linked: {session}");
        let token = session["token"].as_str().ok_or_else(|| anyhow!("no session token"))?;
        Ok(token.to_owned())
    }

    /// `name` signs up on the hub's page, opens the bot in Telegram, presses "Pay with Telegram
    /// Stars" for `plan_id` on the account page and pays the invoice in Telegram. Returns the
    /// account's API token once the bot has thanked them (the ledger holds the subscription).
    async fn sign_up_and_pay_stars(
        &self,
        name: &str,
        plan_id: &str,
        tg_user: i64,
    ) -> anyhow::Result<String> {
        let (email, password) = demo_credentials(name);
        let b = self.browser_session(&email, &password, Some(name)).await?;
        let r = b
            .post(
                self.url("/account/stars"),
                form_body(&[("csrf", &b.csrf), ("plan_id", plan_id)])?,
            )
            .await?;
        let invoice = location(&r).context("no Stars invoice")?;
        self.telegram_user(name, tg_user)?;
        let t = &self.telegram;
        t.user_says(tg_user, "/start").map_err(|e| anyhow!("{e}"))?;
        match t.pay(tg_user, &invoice).await.map_err(|e| anyhow!("{e}"))? {
            tradecast_standins::telegram::PayOutcome::Paid(_) => {}
            other => bail!("{name}'s Stars payment did not go through: {other:?}"),
        }
        self.bot_said(name, tg_user, "Payment received").await?;
        self.login(&email, &password).await
    }

    /// `name`'s Telegram user in the stand-in (`@<name>_trades`).
    fn telegram_user(&self, name: &str, tg_user: i64) -> anyhow::Result<()> {
        let display = format!("{}{}", name[..1].to_uppercase(), &name[1..]);
        match self.telegram.user(tg_user, &display, Some(&format!("{name}_trades"))) {
            // Already in the stand-in's world (bob paid with Stars before he links).
            Ok(()) | Err(tradecast_standins::telegram::WorldError::Taken(_)) => Ok(()),
            Err(e) => Err(anyhow!("telegram user: {e}")),
        }
    }

    /// Waits for the bot to say something containing `needle` in `name`'s chat.
    async fn bot_said(&self, name: &str, tg_user: i64, needle: &str) -> anyhow::Result<()> {
        let said = |m: &tradecast_standins::telegram::ChatMessage| {
            m.from_user.is_none() && m.text.as_deref().is_some_and(|t| t.contains(needle))
        };
        self.telegram
            .wait_for_message(tg_user, said, SETTLE_LIMIT)
            .await
            .map(|_| ())
            .ok_or_else(|| anyhow!("the bot did not tell {name} {needle:?}"))
    }

    async fn enrolment_code(&self, token: &str) -> anyhow::Result<String> {
        let body = self.call("/api/v1/devices/enrolment-codes", token, json!({})).await?;
        body["code"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no code: {body}"))
    }
}

/// A demo user's e-mail and password.
fn demo_credentials(name: &str) -> (String, String) {
    (format!("{name}@demo.invalid"), format!("{name} demo password"))
}

/// A demo user's browser on the hub's pages: no redirects followed, the session cookie, the
/// latest CSRF token.
struct Browser {
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Browser {
    /// POSTs a form with the session cookie (if any).
    async fn post(&self, url: String, body: String) -> reqwest::Result<reqwest::Response> {
        let mut r = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if !self.cookie.is_empty() {
            r = r.header(reqwest::header::COOKIE, &self.cookie);
        }
        r.send().await
    }

    /// The page at `url` and its form's CSRF token.
    async fn csrf_of(&self, url: &str) -> anyhow::Result<(String, String)> {
        let page = self
            .client
            .get(url)
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await?
            .text()
            .await?;
        let at = page.find("name=\"csrf\" value=\"").ok_or_else(|| anyhow!("no form"))? + 19;
        let csrf = page[at..].split('"').next().unwrap_or_default().to_owned();
        Ok((csrf, page))
    }
}

/// A redirect's target.
fn location(r: &reqwest::Response) -> anyhow::Result<String> {
    r.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no redirect: {}", r.status()))
}

/// `application/x-www-form-urlencoded`, as a browser posts a form (encoded by the URL parser's
/// query serializer).
fn form_body(pairs: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut u = reqwest::Url::parse("http://form.invalid/")?;
    u.query_pairs_mut().extend_pairs(pairs);
    Ok(u.query().unwrap_or_default().to_owned())
}

/// A node's config: loopback on the given ports, the EA told not to hold its polls (lockstep).
fn node_config(
    mode: &str,
    extra: &str,
    ea: SocketAddr,
    api: SocketAddr,
) -> anyhow::Result<tradecast_node::config::Config> {
    let text = format!(
        "ea_listen = \"{ea}\"\napi_listen = \"{api}\"\nmode = \"{mode}\"\n\
         poll_wait_ms = 0\n{extra}"
    );
    toml::from_str(&text).context("demo node config")
}

/// Sets up a node's data dir as a trader would (init, enrol with a code, an EA key, the
/// settings file) and starts its process.
#[allow(clippy::too_many_arguments)]
async fn start_node(
    program: &Path,
    root: &Path,
    hub: &DemoHub,
    name: &str,
    token: &str,
    login: u64,
    (mode, extra): (&str, &str),
    policy: &str,
    quic_via: Option<SocketAddr>,
) -> anyhow::Result<(DemoNode, tradecast_node::keys::EaKey)> {
    let data = root.join(name);
    std::fs::create_dir_all(&data)?;
    tradecast_node::serve::init(&data)?;
    let (ea_addr, api_addr) = {
        // Both held at once, so they differ.
        let (a, b) = (
            std::net::TcpListener::bind("127.0.0.1:0")?,
            std::net::TcpListener::bind("127.0.0.1:0")?,
        );
        (a.local_addr()?, b.local_addr()?)
    };
    node_config(mode, extra, ea_addr, api_addr)?.write(&data)?;
    let code = hub.enrolment_code(token).await?;
    {
        let store =
            tradecast_node::store::Store::open(&data.join(tradecast_node::store::FILE_NAME))?;
        tradecast_node::sync::enrol::enrol(
            &store,
            &hub.addr.to_string(),
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
    let api_token = tradecast_node::serve::api_token(&data)?.to_string();
    let http = reqwest::Client::new();
    let proc = DemoNode::spawn(program, name, &data, api_addr, &api_token, &http).await?;
    let status: Status = http
        .get(format!("http://{api_addr}/api/v1/status"))
        .bearer_auth(&api_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let node_key = IdentityKey::from_hex(&status.sync.identity_key)?;
    let device = node_key.device_id();
    if device.to_text() != status.device_id {
        bail!("{name}'s node states a key that is not its device's");
    }
    let node = DemoNode {
        name: name.to_owned(),
        policy: policy.to_owned(),
        data,
        proc: Some(proc),
        ea_addr,
        api_addr,
        login,
        device,
        key: node_key,
        api_token,
        http,
        records: Mutex::new(BTreeMap::new()),
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

/// A stream's tip in a node's status (0 before its first record).
fn tip(status: &Status, stream: StreamId) -> u64 {
    status.sync.streams.iter().find(|s| s.stream == stream.0).map_or(0, |s| s.tip)
}

/// What the nodes' statuses say moved: every stream tip and feed watermark, in order. The
/// narration runs again only when this changes.
fn progress(statuses: &[Status]) -> Vec<u64> {
    statuses
        .iter()
        .flat_map(|s| {
            std::iter::once(s.sync.inbox_watermark).chain(s.sync.streams.iter().map(|x| x.tip))
        })
        .collect()
}

/// What the hub holds, read while the nodes are asked for their statuses ([`marks`] pairs the
/// two): the provider's signals-stream tip, and per subscriber its feed's tip and, for each
/// provider relay log, the last entry it may see.
struct HubMarks {
    at_hub: u64,
    subs: Vec<(u64, Vec<(tradecast_protocol::DeviceId, u64)>)>,
}

async fn hub_marks(
    hub: &DemoHub,
    provider: &DemoNode,
    subs: &[DemoNode],
) -> anyhow::Result<HubMarks> {
    let db = &hub.db;
    let at_hub =
        tradecast_hub::quic::store::committed(db, &provider.device, StreamId::SIGNALS).await?;
    let mut out = HubMarks { at_hub, subs: Vec::new() };
    for s in subs {
        let device = s.device.to_text();
        let (tip, _) = tradecast_hub::feed::marks(db, &device).await?;
        out.subs.push((tip, tradecast_hub::relay::visible_tips(db, &device).await?));
    }
    Ok(out)
}

/// Where the records stand: the provider's signals-stream tip at home and at the hub, and each
/// subscriber's committed feed against the hub's tip for it, in pairs. `statuses`: provider
/// first.
fn marks(at: &HubMarks, statuses: &[Status]) -> Vec<u64> {
    let home = statuses.first().map_or(0, |s| tip(s, StreamId::SIGNALS));
    let mut out = vec![home, at.at_hub];
    for ((feed_tip, logs), st) in at.subs.iter().zip(statuses.iter().skip(1)) {
        out.push(*feed_tip);
        out.push(st.sync.inbox_watermark);
        // The providers' relay logs: the last entry this subscriber may see, and its cursor.
        for (log, seen) in logs {
            let source = tradecast_protocol::session::Source::Relay(*log).to_text();
            let held =
                st.sync.relays.iter().find(|r| r.source == source).map_or(0, |r| r.committed);
            out.push(*seen);
            out.push(held);
        }
    }
    out
}

fn settled(m: &[u64]) -> bool {
    m.chunks(2).all(|pair| pair.first() == pair.get(1))
}

/// Every node's status, provider first (asked of all of them at once).
async fn statuses(provider: &DemoNode, subs: &[DemoNode]) -> anyhow::Result<Vec<Status>> {
    let all = std::iter::once(provider).chain(subs).map(DemoNode::status);
    futures::future::try_join_all(all).await
}

/// Runs rounds of terminal steps until every party has taken in everything and nothing moves;
/// returns what the nodes' statuses say then ([`progress`]). A bar that does not settle within
/// [`SETTLE_LIMIT`] is counted in `timeouts` and the replay goes on.
async fn settle(
    hub: &DemoHub,
    provider: &DemoNode,
    subs: &[DemoNode],
    terminals: &mut [Terminal],
    timeouts: &mut usize,
) -> anyhow::Result<Vec<u64>> {
    let started = Instant::now();
    let mut last: Option<Vec<u64>> = None;
    loop {
        // Subscribers' terminals first: each subscriber holds the bar's quote before the
        // provider's node closes the bar and signs a signal, so a signal is always judged on the
        // price of its own bar (the provider's terminal is the first).
        // (The subscribers' terminals side by side: each steps its own node.)
        if let Some((first, rest)) = terminals.split_first_mut() {
            futures::future::join_all(rest.iter_mut().map(catch_up)).await;
            catch_up(first).await;
        }
        // With the hub down the nodes work offline: only the terminals are waited for.
        let (st, mut m) = if hub.up() {
            let (st, at) = tokio::join!(statuses(provider, subs), hub_marks(hub, provider, subs));
            let st = st?;
            let m = marks(&at?, &st);
            (st, m)
        } else {
            (statuses(provider, subs).await?, Vec::new())
        };
        let done = settled(&m);
        m.extend(progress(&st));
        if done && last.as_ref() == Some(&m) && terminals.iter().all(Terminal::caught_up) {
            return Ok(progress(&st));
        }
        if started.elapsed() > SETTLE_LIMIT {
            tracing::warn!(target: "tradecast::demo", marks = ?m, "a bar did not settle in time; going on");
            *timeouts += 1;
            return Ok(progress(&st));
        }
        if !done {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        last = Some(m);
    }
}

/// The provider's signed signals so far: (signal, record created_at_ms).
async fn provider_signals(provider: &DemoNode) -> anyhow::Result<Vec<(Signal, i64)>> {
    let records = provider.records(StreamId::SIGNALS).await?;
    Ok(records
        .iter()
        .filter_map(|r| match r.body() {
            Ok(Body::Signal(s)) => Some((s, r.header().created_at_ms)),
            _ => None,
        })
        .collect())
}

fn outcome_of(seen: &Snapshot, id: SignalId) -> SubscriberOutcome {
    let mut o = SubscriberOutcome::default();
    if let Some(row) = seen.signals.iter().find(|r| r.signal.id == id) {
        o.received = true;
        if !row.skipped.is_empty() {
            o.skipped = Some(row.skipped.clone());
        }
    }
    for r in &seen.shared {
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
        && let Some(a) = seen.approvals.iter().find(|a| a.pending.signal_id == id)
        && a.line.starts_with("skipped")
    {
        o.skipped = Some(a.line.clone());
    }
    o
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
    hub: &DemoHub,
    provider: &DemoNode,
    subs: &[DemoNode],
    market_ms: i64,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let t = fmt_market(market_ms);
    let pad = " ".repeat(t.len() + 2);
    let mut seen = Vec::new();
    for sub in subs {
        seen.push(Snapshot::of(sub).await?);
    }
    for (i, (s, created)) in provider_signals(provider).await?.into_iter().enumerate() {
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
        // The hub's file is read even while its process is down: what it committed is there.
        let stored = tradecast_hub::signals::stored_by_id(&hub.db, &hub.identity, &hex)
            .await
            .map_err(|e| anyhow!("hub: {e:?}"))?;
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
        for (sub, seen) in subs.iter().zip(&seen) {
            let o = outcome_of(seen, s.id);
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
    // What the bot sends alice, as she sees it in Telegram.
    for m in hub.telegram.messages_to(ALICE_TELEGRAM) {
        // A picture's caption is its text (the new-signal alerts carry the setup's chart).
        let picture = m.caption.as_ref().map(|c| format!("[chart] {c}"));
        if let (Some(text), None) = (m.text.as_ref().or(picture.as_ref()), m.from_user) {
            narrator.once(
                format!("tg:{}", m.message_id),
                format!("{pad}telegram  bot → alice: {}", one_line(text)),
                out,
            );
        }
    }
    Ok(())
}

/// The manual subscriber's scripted clicks: approves every other waiting signal — the first one
/// by pressing the Telegram bot's button ([`approve_by_telegram`]), the second in the Telegram
/// Mini App opened from the bot's message ([`approve_in_miniapp`]), the others through its local
/// API (as the UI's button does) — and leaves the others to expire.
async fn click(
    hub: &DemoHub,
    node: &DemoNode,
    clicked: &mut BTreeSet<String>,
    hand: Option<&MiniAppHand>,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    for a in node.approvals().await? {
        let hex = a.pending.signal_id.to_hex();
        if a.pending.decided().is_some() || clicked.contains(&hex) {
            continue;
        }
        let n = clicked.len();
        clicked.insert(hex.clone());
        if n % 2 == 1 {
            continue; // left to expire
        }
        if n == 0 {
            approve_by_telegram(hub, node, &hex, out).await?;
            continue;
        }
        if n == 2 {
            approve_in_miniapp(hub, node, &hex, hand, out).await?;
            continue;
        }
        let url = format!("http://{}/api/v1/signals/{hex}/approve", node.api_addr);
        let r = node
            .http
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

/// bob (remote approval on) approves signal `hex` from Telegram as a user does: his node's
/// signed `Pending` made the hub's bot post it with Approve / Reject buttons in his private
/// chat; he presses Approve; the hub signs an `ApprovalRequest` into his device's inbox, his node
/// decides it under its own policy and answers, and the bot edits the message with the outcome.
/// Prints the bot's message and the outcome.
async fn approve_by_telegram(
    hub: &DemoHub,
    node: &DemoNode,
    hex: &str,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let t = &hub.telegram;
    let waiting = |m: &tradecast_standins::telegram::ChatMessage| {
        m.from_user.is_none()
            && !m.callback_data().is_empty()
            && m.text.as_deref().is_some_and(|t| t.contains("Signal waiting for your decision"))
    };
    let post = t
        .wait_for_message(BOB_TELEGRAM, waiting, SETTLE_LIMIT)
        .await
        .ok_or_else(|| anyhow!("the bot posted no approval message to bob"))?;
    let text = post.text.clone().unwrap_or_default();
    out(&format!("telegram  bot → bob: {}", one_line(&text)));
    let rows = post.reply_markup.as_ref().and_then(|k| k["inline_keyboard"].as_array());
    let approve = rows
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_array())
        .flatten()
        .find(|b| b["text"].as_str().is_some_and(|l| l.starts_with("✅ Approve")))
        .and_then(|b| b["callback_data"].as_str())
        .ok_or_else(|| anyhow!("no Approve button on the bot's message: {text}"))?
        .to_owned();
    t.press(BOB_TELEGRAM, BOB_TELEGRAM, post.message_id, &approve)
        .map_err(|e| anyhow!("telegram press: {e}"))?;
    out(
        "bob pressed ✅ Approve on the bot's message: the hub signed the request into his device's inbox",
    );
    // His node decides under its own rules and signs the approval and its answer.
    let approval = decided(node, hex).await?;
    let edited = t
        .wait_for_message(
            BOB_TELEGRAM,
            |m| {
                m.message_id == post.message_id
                    && m.text
                        .as_deref()
                        .is_some_and(|t| t.contains("Applied") || t.contains("Refused"))
            },
            SETTLE_LIMIT,
        )
        .await
        .and_then(|m| m.text)
        .unwrap_or_default();
    // The outcome's line of the edited message (the node's signed answer, in the bot's words).
    let edited = edited
        .lines()
        .find(|l| l.contains("Applied") || l.contains("Refused"))
        .unwrap_or("(the bot has not edited it yet)");
    out(&format!(
        "bob's node {} signal {} by remote request via telegram ({} lots, within its own rules); the bot's message now says: {}",
        match approval.decision {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
            Decision::Expired => "let expire",
        },
        &hex[..8],
        approval.lots.map_or("no".into(), |l| l.normalize().to_string()),
        one_line(edited)
    ));
    Ok(())
}

/// The node's signed decision on signal `hex`, once it has one.
async fn decided(node: &DemoNode, hex: &str) -> anyhow::Result<tradecast_protocol::Approval> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let row = node.approvals().await?.into_iter().find(|a| a.pending.signal_id.to_hex() == hex);
        if let Some(a) = row.and_then(|r| r.pending.decided().cloned()) {
            return Ok(a);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{}'s node did not decide signal {hex}",
            node.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// bob approves signal `hex` in the Telegram Mini App: he taps "📱 Open in the app" on the bot's
/// message about it; Telegram opens the hub's Mini App with its signed launch data
/// (`startapp=approve_<signal>`); the app shows that signal and he approves it at the size his
/// rules propose; the hub signs the request into his device's inbox exactly as for the bot's
/// button, his node decides under its own rules, and the app shows the node's signed answer.
/// `hand` plays him (Chromium in the browser test); without one the demo does what the app's
/// page does, over HTTP.
async fn approve_in_miniapp(
    hub: &DemoHub,
    node: &DemoNode,
    hex: &str,
    hand: Option<&MiniAppHand>,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let t = &hub.telegram;
    let start = format!("approve_{hex}");
    let has_link = |m: &tradecast_standins::telegram::ChatMessage| {
        m.from_user.is_none() && m.url_buttons().iter().any(|(_, u)| u.ends_with(&start))
    };
    let post = t
        .wait_for_message(BOB_TELEGRAM, has_link, SETTLE_LIMIT)
        .await
        .ok_or_else(|| anyhow!("the bot's message on signal {hex} has no Mini App link"))?;
    let (label, link) = post
        .url_buttons()
        .into_iter()
        .find(|(_, u)| u.ends_with(&start))
        .ok_or_else(|| anyhow!("no Mini App link"))?;
    let theme = json!({"bg_color": "#ffffff", "text_color": "#000000", "hint_color": "#999999",
                       "link_color": "#2481cc", "button_color": "#2481cc", "button_text_color": "#ffffff",
                       "secondary_bg_color": "#efeff3"});
    let launch =
        t.open_mini_app_link(BOB_TELEGRAM, &link, &theme).map_err(|e| anyhow!("telegram: {e}"))?;
    let shown = match hand {
        Some(hand) => (hand.0)(launch).await.context("bob's hand in the Mini App")?,
        None => miniapp_approve_over_http(hub, node, &launch, hex).await?,
    };
    let approval = decided(node, hex).await?;
    out(&format!(
        "bob tapped \"{label}\" on the bot's message ({link}): Telegram opened the Mini App on signal {}, he pressed Approve; his node {} it ({} lots, within its own rules) and the app shows: {}",
        &hex[..8],
        match approval.decision {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
            Decision::Expired => "let expire",
        },
        approval.lots.map_or("no".into(), |l| l.normalize().to_string()),
        one_line(&shown)
    ));
    Ok(())
}

/// What the Mini App's page does when bob approves from it, over HTTP: exchanges the launch
/// data for a session, loads the Approvals view on the signal, posts the main button's
/// decision with the view's CSRF token, and reads the view until the node's answer shows.
async fn miniapp_approve_over_http(
    hub: &DemoHub,
    node: &DemoNode,
    launch: &str,
    hex: &str,
) -> anyhow::Result<String> {
    let fragment = launch.split_once('#').map(|(_, f)| f).unwrap_or_default();
    let fragment = reqwest::Url::parse(&format!("http://launch.invalid/?{fragment}"))?;
    let init = fragment
        .query_pairs()
        .find(|(k, _)| k == "tgWebAppData")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| anyhow!("no launch data in {launch}"))?;
    let token = hub.miniapp_session(&init).await?;
    let view = |h: &DemoHub| {
        h.http
            .get(h.url(&format!("/miniapp/app/approvals?signal={hex}")))
            .bearer_auth(&token)
            .send()
    };
    let page = view(hub).await?.error_for_status()?.text().await?;
    let attr = |page: &str, name: &str| {
        page.split_once(&format!("{name}=\""))
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(v, _)| v.to_owned())
    };
    let csrf = attr(&page, "data-csrf").ok_or_else(|| anyhow!("the view has no CSRF token"))?;
    let device = node.device.to_text();
    let r = hub
        .http
        .post(hub.url("/miniapp/app/decide"))
        .bearer_auth(&token)
        .header("X-CSRF-Token", csrf)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(&[("signal_id", hex), ("device_id", &device), ("decision", "approved")])?)
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 201, "Mini App decision: {}", r.status());
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let page = view(hub).await?.error_for_status()?.text().await?;
        if let Some((_, rest)) = page.split_once("<p class=\"answer\">")
            && let Some((answer, _)) = rest.split_once("</p>")
            && (answer.contains("Applied") || answer.contains("Refused"))
        {
            return Ok(answer.replace("&amp;", "&"));
        }
        anyhow::ensure!(Instant::now() < deadline, "the Mini App never showed the node's answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn totals(
    node: &DemoNode,
    broker: &SharedBroker,
    signals: &[SignalReport],
) -> anyhow::Result<SubscriberTotals> {
    let orders: Vec<OrderRow> = node.get("/api/v1/orders").await?;
    let (deals, open) = {
        let b = lock(broker);
        let deals = b.deals(node.login, i64::MIN, i64::MAX).map_err(|e| anyhow!("{e:?}"))?;
        let open = b
            .positions(node.login)
            .map_err(|e| anyhow!("{e:?}"))?
            .into_iter()
            .filter(|p| ea::is_tradecast_magic(p.magic, MAGIC))
            .count();
        (deals, open)
    };
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
    let started = Instant::now();
    loop {
        let mut behind = Vec::new();
        for node in nodes {
            let status = node.status().await?;
            for stream in STREAMS {
                let local = tip(&status, stream);
                let at_hub =
                    tradecast_hub::quic::store::committed(&hub.db, &node.device, stream).await?;
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
    let (mut streams, mut records) = (0, 0);
    for node in nodes {
        for stream in STREAMS {
            let held = tradecast_hub::quic::store::records(&hub.db, &node.device, stream).await?;
            if held.is_empty() {
                continue;
            }
            let mut prev = tradecast_protocol::ChainHash::GENESIS;
            for (i, r) in held.iter().enumerate() {
                r.verify(&node.key)
                    .map_err(|e| anyhow!("{} stream {}: {e}", node.name, stream.0))?;
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

/// The demo was stopped by a signal before the replay ended: its processes are stopped and its
/// temporary data removed, as at the end of a whole run.
#[derive(Debug)]
pub struct Interrupted(pub StopSignal);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by {} before the replay ended", self.0.name())
    }
}

impl std::error::Error for Interrupted {}

/// Runs the demo; `out` gets every line meant for the person watching. `shutdown` resolves when
/// the demo is asked to stop (the command line passes [`crate::procs::Shutdown::first`]:
/// SIGINT, SIGTERM or SIGHUP): before the replay's end the demo stops at once and returns
/// [`Interrupted`]; after it, unless `exit_when_done`, the demo serves its pages until then.
/// Either way every process is stopped the same way (the nodes, then the hub; SIGTERM, then
/// SIGKILL past [`STOP_GRACE`]) and then the temporary data is removed.
pub async fn run(
    opts: &Options,
    shutdown: impl Future<Output = StopSignal>,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    // Dropped last: the processes that use it are stopped first.
    let root = match &opts.data {
        Some(d) => DataRoot::kept(d)?,
        None => DataRoot::temporary(&opts.program)?,
    };
    out(&format!(
        "Starting the Tradecast demo on 127.0.0.1 (data in {}, {}; no database server).",
        root.path().display(),
        if root.is_temporary() { "removed when the demo stops" } else { "kept" }
    ));
    let mut shutdown = std::pin::pin!(shutdown);
    let (report, parties) = tokio::select! {
        r = Box::pin(replay(opts, root.path(), out)) => r?,
        // The replay is dropped before this runs, and with it every process it started, each
        // stopped as `Parties::stop` stops them (`Proc`'s `Drop`).
        signal = &mut shutdown => return Err(Interrupted(signal).into()),
    };
    if !opts.exit_when_done {
        out(
            "\nThe replay is over; the hub and the nodes keep serving their pages. Ctrl-C stops the demo.",
        );
        shutdown.await;
    }
    parties.stop().await?;
    Ok(report)
}

/// The processes of a finished replay, serving their pages until the demo stops (fields in
/// the order they stop when dropped: the nodes, then the hub).
struct Parties {
    /// The provider, then the subscribers.
    nodes: Vec<DemoNode>,
    hub: DemoHub,
    /// The lossy proxy between the nodes and the hub, if any: it keeps forwarding meanwhile.
    _proxy: Option<crate::lossy::Proxy>,
}

impl Parties {
    /// SIGTERM: each process finishes what it has in hand; the nodes first, so that they hand
    /// the hub theirs, the hub last.
    async fn stop(self) -> anyhow::Result<()> {
        let Parties { nodes, mut hub, _proxy } = self;
        for n in nodes {
            if let Some(p) = n.proc
                && !p.stop(STOP_GRACE).await?
            {
                tracing::warn!(target: "tradecast::demo", node = %n.name, "did not stop in time; killed");
            }
        }
        if let Some(p) = hub.proc.take()
            && !p.stop(STOP_GRACE).await?
        {
            tracing::warn!(target: "tradecast::demo", "the hub did not stop in time; killed");
        }
        Ok(())
    }
}

/// Starts every party in `root`, replays the bars and reports; returns the report and the
/// parties, still running.
async fn replay(
    opts: &Options,
    root: &Path,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<(Report, Parties)> {
    let program = opts.program.as_path();
    let mut hub = DemoHub::start(program, &root.join("hub")).await?;
    let proxy = match opts.faults.lossy {
        Some(f) => Some(crate::lossy::start(hub.quic_addr, f).await?),
        None => None,
    };
    let via = proxy.as_ref().map(|p| p.addr);
    let (provider_id, provider_token) = hub.user("provider", "provider").await?;
    // The provider's product, sold two ways: by card every 30 days, and for Telegram Stars.
    let product = hub
        .call(
            "/api/v1/products",
            &provider_token,
            json!({ "name": "Fib-RSI EURUSD", "description": "Every Fib-RSI v1 signal on EURUSD H1, signed by the provider's node." }),
        )
        .await?;
    let product_id = product["id"].as_str().ok_or_else(|| anyhow!("no product id"))?.to_owned();
    let plan = hub
        .call(
            "/api/v1/plans",
            &provider_token,
            json!({ "name": "Fib-RSI EURUSD", "price_minor": 4900, "currency": "USD", "period_days": 30,
                    "features": ["signals", "auto_copy", "telegram", "mini_app"], "product_id": product_id }),
        )
        .await?;
    let plan_id = plan["id"].as_str().ok_or_else(|| anyhow!("no plan id"))?.to_owned();
    // The same signals sold for Telegram Stars: 250 ⭐ every 30 days.
    let stars_plan = hub
        .call(
            "/api/v1/plans",
            &provider_token,
            json!({ "name": "Fib-RSI EURUSD ⭐", "price_minor": 250, "currency": "XTR", "period_days": 30,
                    "features": ["signals", "auto_copy", "telegram", "mini_app"], "product_id": product_id }),
        )
        .await?;
    let stars_plan_id = stars_plan["id"].as_str().ok_or_else(|| anyhow!("no plan id"))?.to_owned();
    out(
        "the provider put its product \"Fib-RSI EURUSD\" on offer with two plans: 49.00 USD / 30 days by card, 250 ⭐ / 30 days in Telegram Stars (the hub's account page shows both under the product)",
    );

    let mut nodes = Vec::new();
    let mut keys = Vec::new();
    let provider_policy = "provider: Fib-RSI v1 on EURUSD H1, trades its own signals";
    let (provider, key) = start_node(
        program,
        root,
        &hub,
        "provider",
        &provider_token,
        9_000_001,
        (
            "provider",
            "self_trade = true\n[policy.approval]\nmode = \"auto\"\nconsent_version = 1\n",
        ),
        provider_policy,
        via,
    )
    .await?;
    keys.push(key);
    provider.set_publishing(tradecast_node::store::PublishConsent::ALL).await?;
    out(
        "the provider ticked Settings → Publishing on its node: its closed trades, equity curve, balance operations and daily summaries go to the hub unsealed, for the money figures of its public track record (the subscribers publish nothing: theirs stay sealed)",
    );
    let share = hub
        .call("/api/v1/share-links", &provider_token, json!({ "label": "for the demo" }))
        .await?;
    let share_link = share["url"].as_str().ok_or_else(|| anyhow!("no share link"))?.to_owned();
    out(&format!(
        "the provider made a redacted share link of its account (POST /api/v1/share-links; the account page's \"Share your record\" does the same): {share_link} (its money figures, delayed, with no name, device or ticket on it; revocable)"
    ));
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
            "manual approvals (remote approval on), 0.10 lots fixed",
            "[policy]\nlot = { mode = \"fixed\", lots = \"0.10\" }\n[policy.approval]\nmode = \"manual\"\nremote_approval = true\n",
        ),
    ];
    // A referrer brings alice: the owner's programme pays 20 % of her payments.
    let (rita_token, rita_code) = hub.affiliate_programme("rita").await?;
    out(&format!(
        "rita joined the owner's referral programme (20 % of each payment for 12 months) and was approved: her link is {}/signup?ref={rita_code}",
        hub.url("")
    ));
    let mut affiliate_pending = None;
    let mut revenue_month = None;
    for (name, login, policy, extra) in subscribers {
        // alice pays by card through Stripe Checkout; bob pays with Telegram Stars.
        let token = if name == "alice" {
            let (_, token) = hub.sign_up_and_subscribe(name, &plan_id, Some(&rita_code)).await?;
            out(&format!(
                "alice followed rita's link, signed up on the hub's page and subscribed to \"Fib-RSI EURUSD\" (49.00 USD / 30 days) by card in Stripe Checkout (the stand-in at {}): her plan is active",
                hub.stripe.base_url()
            ));
            let pending = hub.affiliate_pending(&rita_token, "USD").await?;
            affiliate_pending = Some(pending);
            out(&format!(
                "rita's affiliate page (/affiliate) shows {} pending for alice's payment (20 % of 49.00 USD), payable after the 30-day holding period",
                tradecast_hub::ui::fmt::money(pending, "USD")
            ));
            let [gross, fees, affiliate, net] = hub.revenue_this_month("USD").await?;
            revenue_month = Some([gross.clone(), fees.clone(), affiliate.clone(), net.clone()]);
            out(&format!(
                "the owner's revenue page (/revenue) this month: gross {gross} USD − Stripe's fees {fees} (read from its balance transactions) − affiliate commissions {affiliate} = net {net} USD"
            ));
            let link = hub.link_telegram(name, ALICE_TELEGRAM).await?;
            hub.telegram
                .user_says(ALICE_TELEGRAM, "/status")
                .map_err(|e| anyhow!("telegram: {e}"))?;
            out(&format!(
                "alice linked Telegram from her account page ({link}, one-time) and asked the bot /status: it answers in her private chat"
            ));
            let plan_line = hub.open_miniapp(ALICE_TELEGRAM).await?;
            out(&format!(
                "alice opened the bot's Mini App ({}): Telegram's signed launch data became her session, and Plan & payment shows {plan_line}",
                hub.url("/miniapp")
            ));
            token
        } else {
            let token = hub.sign_up_and_pay_stars(name, &stars_plan_id, BOB_TELEGRAM).await?;
            out(
                "bob signed up on the hub's page, pressed \"Pay with Telegram Stars\" and paid the invoice in Telegram (250 ⭐ / 30 days, the Bot API stand-in): his plan is active",
            );
            // Linked, so his node's pending signals reach him with buttons (remote approval).
            let link = hub.link_telegram(name, BOB_TELEGRAM).await?;
            out(&format!(
                "bob linked Telegram from his account page ({link}, one-time): his node's waiting signals come to his chat with Approve / Reject buttons"
            ));
            token
        };
        let (node, key) = start_node(
            program,
            root,
            &hub,
            name,
            &token,
            login,
            ("subscriber", extra),
            policy,
            via,
        )
        .await?;
        nodes.push(node);
        keys.push(key);
    }
    let mut subs = nodes;

    let text = std::str::from_utf8(EURUSD_H1)?;
    let n_lines = opts.bars.map_or(usize::MAX, |b| b.saturating_add(1));
    let head: Vec<&str> = text.lines().take(n_lines).collect();
    // One broker, one price stream, one terminal per node.
    let mut broker = match opts.realistic_terminal {
        true => {
            let bars = tradecast_protocol::bars::parse_bars(head.join("\n").as_bytes())
                .map_err(|e| anyhow!("{e}"))?;
            let mut b = Broker::new(realistic::broker_config(&bars));
            for s in realistic::symbols() {
                b.add_symbol(s);
            }
            b
        }
        false => {
            let mut b = Broker::new(BrokerConfig::default());
            b.add_symbol(SymbolConfig::forex("EURUSD", 5));
            b
        }
    };
    for node in std::iter::once(&provider).chain(subs.iter()) {
        let margin_mode = match opts.realistic_terminal {
            true => realistic::margin_mode(&node.name),
            false => MarginMode::Hedging,
        };
        broker
            .open_account(AccountConfig {
                login: node.login,
                currency: "USD".into(),
                leverage: 100,
                margin_mode,
                balance: Decimal::from(BALANCE),
            })
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    let broker: SharedBroker = Arc::new(Mutex::new(broker));
    let mut terminals = Vec::new();
    for (node, key) in std::iter::once(&provider).chain(subs.iter()).zip(keys.iter()) {
        let mut tc = TerminalConfig::new(
            &format!("http://{}", node.ea_addr),
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
    if opts.realistic_terminal {
        realistic::start_disconnected(&mut terminals).await?;
    }
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
        "hub       http://{}/  (QUIC {}, key {}; console: sign in as {} with \"{}\")",
        hub.addr,
        hub.quic_addr,
        hub.identity.device_id().fmt_short(),
        DEMO_OWNER.0,
        DEMO_OWNER.1,
    ));
    for n in std::iter::once(&provider).chain(subs.iter()) {
        let url = tradecast_node::ui::login_url(n.api_addr, &n.api_token);
        out(&format!("{:<9} {url}  ({})", n.name, n.policy));
    }
    out(&format!(
        "Replaying {total_bars} EURUSD H1 bars at {} on one simulated broker.\n",
        match opts.speed {
            Speed::Max => "full speed (lockstep)".to_string(),
            Speed::Factor(f) => format!("{f} bar-seconds per second"),
        }
    ));

    if opts.realistic_terminal {
        out(&format!(
            "(realistic terminal: tickets that change, filling and expiration modes checked, a dealer that requotes closes, a server DST change mid-replay, terminals that start disconnected, alice on netting, {} more Market Watch symbols)",
            realistic::MARKET_WATCH
        ));
    }
    if let Some(p) = &proxy {
        out(&format!(
            "(every node reaches the hub's QUIC endpoint through a lossy proxy on {})",
            p.addr
        ));
    }
    let mut narrator = Narrator::default();
    let mut clicked = BTreeSet::new();
    let mut narrated: Option<Vec<u64>> = None;
    let mut settle_timeouts = 0;
    let mut bars = 0usize;
    let mut hub_back_at: Option<usize> = None;
    loop {
        let bar_started = Instant::now();
        let mut moved =
            settle(&hub, &provider, &subs, &mut terminals, &mut settle_timeouts).await?;
        // Clicks and narration only when a node's records moved (every line comes from them).
        if narrated.as_ref() != Some(&moved) {
            if let Some(bob) = subs.iter().find(|s| s.name == "bob") {
                let before = clicked.len();
                click(&hub, bob, &mut clicked, opts.miniapp_hand.as_ref(), out).await?;
                if clicked.len() != before {
                    moved = settle(&hub, &provider, &subs, &mut terminals, &mut settle_timeouts)
                        .await?;
                }
            }
            let market = lock(&broker).time_ms();
            narrate(&mut narrator, &hub, &provider, &subs, market, out).await?;
            narrated = Some(moved);
        }
        let market = lock(&broker).time_ms();
        // Faults, between bars: kill -9, and a new process on the same data dir and addresses.
        if opts.faults.kill_hub_at_bar == Some(bars) && hub.up() {
            hub.kill()?;
            out(&format!("[{}] hub killed (SIGKILL): the nodes go on offline", fmt_market(market)));
            hub_back_at = Some(bars + opts.faults.hub_down_bars.max(1));
        }
        if hub_back_at == Some(bars) {
            hub.restart(program).await?;
            hub_back_at = None;
            out(&format!("[{}] hub back on the same data dir and addresses", fmt_market(market)));
        }
        if let Some((name, at)) = &opts.faults.kill_node_at_bar
            && *at == bars
            && let Some(node) = subs.iter_mut().find(|s| &s.name == name)
        {
            node.kill_and_restart(program).await?;
            out(&format!(
                "[{}] {name}'s node killed (SIGKILL) and started again",
                fmt_market(market)
            ));
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
    if !hub.up() {
        hub.restart(program).await?;
    }
    // Past the last bar: one more settle so every close and record is in.
    settle(&hub, &provider, &subs, &mut terminals, &mut settle_timeouts).await?;
    let market = lock(&broker).time_ms();
    narrate(&mut narrator, &hub, &provider, &subs, market, out).await?;

    // The report, from signed records and the broker's deals.
    let mut signals = Vec::new();
    let mut seen = Vec::new();
    for sub in &subs {
        seen.push(Snapshot::of(sub).await?);
    }
    for (i, (s, created)) in provider_signals(&provider).await?.into_iter().enumerate() {
        let stored = tradecast_hub::signals::stored_by_id(&hub.db, &hub.identity, &s.id.to_hex())
            .await
            .map_err(|e| anyhow!("hub: {e:?}"))?;
        let mut per = BTreeMap::new();
        for (sub, seen) in subs.iter().zip(&seen) {
            per.insert(sub.name.clone(), outcome_of(seen, s.id));
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
        totals_v.push(totals(sub, &broker, &signals).await?);
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
    let receipts_since = Instant::now();
    let (provider_records, provider_receipts) = loop {
        let status = provider.status().await?;
        let signals = status.sync.streams.iter().find(|s| s.stream == StreamId::SIGNALS.0);
        let (n, held) = signals.map_or((0, 0), |s| (s.tip as usize, s.receipts as usize));
        if held >= n || receipts_since.elapsed() > SETTLE_LIMIT {
            break (n, held);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Every other stream: the hub's receipt for the last record of each batch comes back too.
    let unreceipted = loop {
        let mut short = Vec::new();
        for n in &all {
            for s in n.status().await?.sync.streams {
                if s.receipted_to < s.tip {
                    short.push(format!(
                        "{} stream {}: receipted to {} of {}",
                        n.name, s.stream, s.receipted_to, s.tip
                    ));
                }
            }
        }
        if short.is_empty() || receipts_since.elapsed() > SETTLE_LIMIT {
            break short;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (chains_verified, hub_records) = verify_hub_chains(&hub, &all).await?;
    let mut hub_links = Vec::new();
    for n in &all {
        hub_links.push((n.name.clone(), n.status().await?.sync.hub_connected));
    }
    let (console, console_mrr) = hub.console_overview(DEMO_OWNER.0, DEMO_OWNER.1).await?;
    let mut plans = Vec::new();
    for n in &subs {
        let grants: Vec<tradecast_protocol::FeatureGrant> = n.get("/api/v1/feature-grants").await?;
        let mut features: Vec<String> =
            grants.iter().flat_map(|g| g.features.iter().map(|f| f.as_str().to_string())).collect();
        features.sort();
        features.dedup();
        plans.push((n.name.clone(), features));
    }
    let mut subscriptions = Vec::new();
    for (name, _, _, _) in subscribers {
        let email = format!("{name}@demo.invalid");
        let found = tradecast_hub::accounts::search_users(&hub.db, &email, 1, 0).await?;
        let Some(id) = found.into_iter().find(|u| u.email == email).map(|u| u.id) else {
            continue;
        };
        for s in tradecast_hub::billing::ledger::subscriptions_of(&hub.db, &id).await? {
            let door = s.door.as_str().to_owned();
            subscriptions.push((
                name.to_owned(),
                door,
                s.status.as_str().to_owned(),
                s.current_period_end_ms,
            ));
        }
    }
    let revenue = tradecast_hub::billing::ledger::revenue(&hub.db).await?;
    hub.stripe.settle(SETTLE_LIMIT).await;
    let deliveries = hub.stripe.deliveries();
    let accepted = deliveries.iter().filter(|d| d.ok).count();
    let stripe_webhooks = (accepted, deliveries.len() - accepted);
    // The owner's weekly note, from the console's Broadcasts page to every linked account.
    let sent = hub
        .broadcast(
            "This week on Fib-RSI EURUSD: the replay is over. Your app kept every decision within your own rules.",
            ("See the track record", &hub.url(&format!("/p/{provider_id}"))),
        )
        .await?;
    hub.bot_said("alice", ALICE_TELEGRAM, "This week on Fib-RSI").await?;
    out(&format!(
        "the owner broadcast a note with a button from the console's Broadcasts page: queued for {sent} linked account(s)"
    ));
    // The bot's new-signal alerts run every 2 s on the hub: wait for one per signal.
    let alerts = |t: &tradecast_standins::telegram::TelegramStandin| {
        t.messages_to(ALICE_TELEGRAM)
            .iter()
            .filter(|m| {
                m.from_user.is_none()
                    && m.text
                        .as_deref()
                        .or(m.caption.as_deref())
                        .is_some_and(|t| t.contains("from provider"))
            })
            .count()
    };
    let deadline = std::time::Instant::now() + SETTLE_LIMIT;
    while alerts(&hub.telegram) < signals.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    narrate(&mut narrator, &hub, &provider, &subs, market, out).await?;
    let telegram_to_alice: Vec<String> = hub
        .telegram
        .messages_to(ALICE_TELEGRAM)
        .into_iter()
        .filter(|m| m.from_user.is_none())
        .filter_map(|m| m.text.or(m.caption))
        .collect();
    let telegram_429 = hub.telegram.n_too_many();
    let run_ended_ms = wall_ms();
    let mut report = Report {
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
        hub_links,
        settle_timeouts,
        unreceipted,
        console,
        console_mrr,
        affiliate_pending,
        revenue_month,
        plans,
        subscriptions,
        revenue,
        stripe_webhooks,
        telegram_to_alice,
        telegram_429,
        public_record: None,
    };
    print_summary(&report, out);
    if let Some(bob) = subs.iter().find(|s| s.name == "bob") {
        let csv = bob.trades_csv().await?;
        let rows = csv.lines().count().saturating_sub(1);
        let header = csv.lines().next().unwrap_or_default();
        out(&format!(
            "bob's node, History → \"Download for Myfxbook & journals (CSV)\": {rows} closed trade(s) under Myfxbook's header ({}…)",
            header.split(',').take(4).collect::<Vec<_>>().join(",")
        ));
    }
    if opts.public_record {
        let hand = opts.public_hand.as_ref();
        let public = hub.public_record(&provider_id, &share_link, run_ended_ms, hand, out).await?;
        print_public_record(&public, out);
        report.public_record = Some(public);
    }
    let nodes = std::iter::once(provider).chain(subs).collect();
    Ok((report, Parties { nodes, hub, _proxy: proxy }))
}

/// The demo hub's public delay (the shortest the hub allows): the public track record shows
/// what the hub received more than this long ago.
const PUBLIC_DELAY_S: u64 = 60;

/// The hub owner's account on the demo's throwaway hub: e-mail and password.
const DEMO_OWNER: (&str, &str) = ("owner@demo.invalid", "demo owner password");

/// The console overview's figures: every `id="fig-NAME">VALUE<` of the page.
fn console_figures(page: &str) -> BTreeMap<String, i64> {
    page.split("id=\"fig-")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.split_once('>')?.1.split_once('<')?.0;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
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
    if r.settle_timeouts > 0 {
        out(&format!(
            "{} bar(s) did not settle within {} s (see the warnings above)",
            r.settle_timeouts,
            SETTLE_LIMIT.as_secs()
        ));
    }
    out(&format!(
        "plans as each subscriber's node holds them (hub-signed grants, verified against the pinned hub key): {}",
        r.plans
            .iter()
            .map(|(name, f)| if f.is_empty() {
                format!("{name} none")
            } else {
                format!("{name} {}", f.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    ));
    if r.unreceipted.is_empty() {
        out("every node holds the hub's signed receipt covering every record it signed");
    } else {
        out(&format!("not covered by a hub receipt yet: {}", r.unreceipted.join("; ")));
    }
    if r.unsynced.is_empty() {
        out("every record each node signed is at the hub, once");
    } else {
        out(&format!("not yet at the hub: {}", r.unsynced.join("; ")));
    }
    let subs: Vec<String> = r
        .subscriptions
        .iter()
        .map(|(name, door, status, renews)| {
            let day = jiff::Timestamp::from_millisecond(*renews)
                .map_or_else(|_| "?".to_owned(), |t| t.strftime("%Y-%m-%d").to_string());
            format!("{name} by {door}, {status}, renews {day}")
        })
        .collect();
    let paid: Vec<String> = r
        .revenue
        .iter()
        .map(|(cur, minor)| match cur.as_str() {
            "XTR" => format!("{minor} XTR (Telegram Stars)"),
            _ => format!("{}.{:02} {cur}", minor / 100, minor % 100),
        })
        .collect();
    out(&format!(
        "billing: subscriptions {}; revenue {}; Stripe webhooks {} accepted, {} refused",
        if subs.is_empty() { "none".to_owned() } else { subs.join("; ") },
        if paid.is_empty() { "none".to_owned() } else { paid.join(", ") },
        r.stripe_webhooks.0,
        r.stripe_webhooks.1,
    ));
    let alerts = r.telegram_to_alice.iter().filter(|t| t.contains("from provider")).count();
    let account = r
        .telegram_to_alice
        .iter()
        .filter(|t| ["Filled", "Not filled", "Skipped", "Closed:"].iter().any(|w| t.contains(w)))
        .count();
    out(&format!(
        "telegram: alice linked; the bot sent her {} messages ({} new-signal alerts, {} about her own fills, skips and closes), {} refused for flood limits",
        r.telegram_to_alice.len(),
        alerts,
        account,
        r.telegram_429
    ));
    let fig = |k: &str| r.console.get(k).map_or("?".to_owned(), i64::to_string);
    out(&format!(
        "hub console (the owner, signed in): {} subscriber and {} provider accounts, {} devices, {} signals today, {} plan(s)",
        fig("accounts-subscriber"),
        fig("accounts-provider"),
        fig("devices-active"),
        fig("signals-today"),
        fig("plans-active"),
    ));
    let alarms: i64 =
        r.console.iter().filter(|(k, _)| k.starts_with("alarm-")).map(|(_, v)| *v).sum();
    out(&format!(
        "hub console overview: MRR {}, {} live subscription(s) ({} active), {} new this month, {} alarm(s); revenue by month at /revenue",
        r.console_mrr.as_deref().unwrap_or("?"),
        fig("subscriptions-live"),
        fig("status-active"),
        fig("new-month"),
        alarms,
    ));
}

/// The public track record's lines: the page, the export, and the verifier's output on it.
fn print_public_record(p: &PublicRecord, out: &mut dyn FnMut(&str)) {
    out(&format!(
        "public track record: {} (no login; the export a stranger downloads: {}, {} records)",
        p.page, p.export, p.records
    ));
    out(&format!(
        "redacted share link: {} shows {} published account(s) as \"Account 1\"…, no name",
        p.share.0, p.share.1
    ));
    if let Some(seen) = &p.visited {
        out(&format!("a stranger's browser: {}", one_line(seen)));
    }
    out("verifier (tradecast-verify on that export, the hub's key pinned, offline):");
    for line in p.verifier.text.lines() {
        out(&format!("  {line}"));
    }
}

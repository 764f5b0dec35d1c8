//! The node's state machine behind the EA link and the local API: accounts and EA sessions,
//! orders (due → sent → acked / rejected / unknown / expired), reconciliation of `state` and
//! `deals` pushes, bars with cursors and backfill requests, the drawdown guard, provider mode
//! (the streaming Fib-RSI engine on the EA's closed bars) and the records for the hub.
//!
//! Every method that changes state commits it in one durable store transaction before it returns,
//! so the HTTP layer ([`crate::link`], [`crate::api`]) answers only facts that are on disk. One
//! mutex serializes those transactions with the in-memory session table, so an ack and a poll
//! can never interleave on the same order. Times: `now_ms` is the wall clock (freshness, link
//! health); the market clock is the terminal time the EA reports (expiry, 10018 retries, equity
//! minutes, signals).
//!
//! It owns no socket; [`crate::link`] and [`crate::api`] are the edges. This file is the driver:
//! the [`Node`] with its lock and in-memory state, the long-poll (a tokio watch), the hub link's
//! flag, and the injected wall clock and id source ([`Node::with_sources`]). [`core`] is the
//! sans-IO face of the EA link (`handle_*(now, input) -> answer`, [`Node::poll_event`]); it and
//! the files below but [`intake`] and [`feed`] import no tokio and read no clock. One
//! `impl Node` per responsibility lives in the submodules: [`rows`] (the row schema),
//! [`mt5`] (retcodes, trading sessions, tick values), [`ea_session`] (EA keys, nonces, hello),
//! [`offer`] (what the long-poll offers, queueing orders), [`ack`], [`reconcile`] (`deals` and
//! `state` pushes), [`guard`] (drawdown guard, daily loss), [`bars`], [`provider`] (provider
//! mode), [`intake`] (signals through the copy policy, approvals), [`feed`] (the downstream feed)
//! and [`status`] (status and reads).

pub mod ack;
pub mod bars;
pub mod core;
pub mod ea_health;
pub mod ea_session;
pub mod feed;
pub mod guard;
pub mod intake;
pub mod mt5;
pub mod offer;
pub mod provider;
pub mod reconcile;
pub mod remote;
pub mod rows;
pub mod status;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rust_decimal::Decimal;
use tradecast_protocol::ea::{self, Poll, PollAnswer};
use tradecast_protocol::link_auth::NonceCache;
use tradecast_protocol::{Body, DeviceId, Identity};
use zeroize::Zeroizing;

use crate::keys;
use crate::policy::approval::Refused;
use crate::policy::calendar::HolidayCalendar;
use crate::policy::{self, PolicySettings};
use crate::store::{Store, StoreError};
use crate::strategy::Engine;

/// The wall clock, re-exported for the callers of `runtime::wall_ms` (it lives in [`crate::clock`]).
pub use crate::clock::wall_ms;
use crate::clock::{Clock, IdSource, OsIds, SystemClock};
pub use ack::{
    CLOSE_REQUOTE_FIRST_MS, CLOSE_REQUOTE_MAX_MS, REQUOTE_RETRIES, close_requote_backoff_ms,
    is_requote,
};
pub use core::CoreEvent;
pub use feed::{FeedOutcome, FeedRefusal};
pub use mt5::{explain_retcode, gap_in_session, next_open};
pub use rows::{
    AccountRow, AckFacts, ApprovalRow, OrderAction, OrderRow, OrderState, PositionRow, SignalRow,
};
pub use status::{AccountStatus, Status, StreamStatus, SyncStatus};

/// A poll is held at most this long, whatever the EA asks.
pub const POLL_WAIT_MAX_MS: u32 = 30_000;

/// The node's settings that the runtime needs (parsed from [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The long-poll wait the EA is told to ask for.
    pub poll_wait_ms: u32,
    /// The link is down after this much silence (wall clock).
    pub link_down_after_ms: i64,
    /// Bar subscriptions: (broker symbol, timeframe).
    pub subscriptions: Vec<(String, ea::Timeframe)>,
    /// Provider mode: run Fib-RSI on the subscribed bars and publish signals.
    pub provider: bool,
    /// Also execute the signals this node makes.
    pub self_trade: bool,
    /// The guard's drawdown cap of schema 1 (`drawdown_max_pct` in `config.toml`, else 20),
    /// merged once into the policy's `risk.drawdown_lock_pct` when the store was upgraded from
    /// it (the stricter wins): since schema 2 the policy's rule is the only drawdown setting.
    pub upgrade_drawdown_max_pct: Decimal,
    /// The guard's optional daily loss limit: percent below the equity at the start of the broker's
    /// server day.
    pub daily_loss_max_pct: Option<Decimal>,
    /// Percent of equity risked per trade when the node sizes an order.
    pub risk_pct: Decimal,
    /// The EA's `input_magic` (the magic's high 32 bits), to tell Tradecast's positions apart.
    pub ea_magic: u32,
    /// The copy policy in force until the trader saves another ([`Node::set_policy`]).
    pub policy: PolicySettings,
    /// The holiday calendar (`holidays.toml` in the data dir).
    pub calendar: HolidayCalendar,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            poll_wait_ms: ea::DEFAULT_POLL_WAIT_MS,
            link_down_after_ms: 10_000,
            subscriptions: vec![("EURUSD".to_owned(), ea::Timeframe::H1)],
            provider: false,
            self_trade: false,
            upgrade_drawdown_max_pct: Decimal::from(20),
            daily_loss_max_pct: None,
            risk_pct: Decimal::ONE,
            ea_magic: 20_260_101,
            policy: PolicySettings::default(),
            calendar: HolidayCalendar::default_calendar(),
        }
    }
}

/// Why a link or API call was refused; the edges map each to a status and a problem code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No current session with this id: the EA must say hello (409 `hello-required`).
    #[error("no session {0:?}: say hello first")]
    HelloRequired(String),
    /// A second poll while one is in flight in the session (409 `poll-in-flight`).
    #[error("a poll is already in flight in this session")]
    PollInFlight,
    /// The ack names an order the node does not have (404 `unknown-order`).
    #[error("no order {0:?} on this account")]
    UnknownOrder(String),
    /// The request is well formed but cannot be done (422, with words).
    #[error("{0}")]
    Refused(String),
    /// The store failed (500; nothing was told to the peer).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret could not be made or opened.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// No signal with this id waits for, or had, an approval on this node (404).
    #[error("no signal {0} to decide")]
    UnknownSignal(String),
    /// A decision the approval refused: after expiry, a second one, remote while disabled,
    /// outside the policy (409, the trader's words).
    #[error("{0}")]
    Decision(Refused),
    /// Policy settings that do not validate (422).
    #[error(transparent)]
    Policy(#[from] policy::SettingsError),
    /// A hello from a second EA instance while the account's first still polls (409
    /// `another-ea`): two EAs would both execute every order the node offers.
    #[error(
        "account {account} already has a Tradecast EA attached (instance {polling}, polling \
         now): two EAs on one account would both execute every order. Remove this one, or the \
         other (another chart or another terminal on this account)"
    )]
    AnotherEa {
        /// The account.
        account: String,
        /// The instance that polls.
        polling: String,
    },
}

// ---------------------------------------------------------------------------------------------
// In memory.

#[derive(Debug)]
struct Session {
    account: String,
    poll_in_flight: bool,
    /// The EA instance that said hello (`None` from EAs before 1.2).
    instance: Option<String>,
    /// The wall clock when its hello was answered or its last poll ended.
    last_poll_ms: i64,
}

#[derive(Default)]
struct AccountMem {
    /// Commands that need no ack (backfill), offered at the next poll.
    commands: Vec<ea::Command>,
    /// Gaps already asked for: (series, from).
    asked: HashSet<(String, i64)>,
    /// Provider mode: one engine per series, and the last bar fed.
    engines: HashMap<String, (Engine, i64)>,
    /// The terminal's clock at the last poll (market clock).
    market_ms: i64,
    /// The latest quote per broker symbol, from the last closed bar the EA pushed.
    quotes: BTreeMap<String, (i64, crate::orders::Quote)>,
    /// When (market clock) the node last asked the EA for a symbol's spec.
    spec_asked_ms: HashMap<String, i64>,
    /// The last hello refused because another EA instance polls this account: the refused
    /// instance and when (wall clock).
    refused_ea: Option<(String, i64)>,
}

struct Inner {
    secrets: Secrets,
    nonces: NonceCache,
    sessions: HashMap<String, Session>,
    /// Live session ids per account, oldest first.
    current: HashMap<String, Vec<String>>,
    accounts: HashMap<String, AccountMem>,
    last_seen_ms: Option<i64>,
}

/// The node: store, identity, settings and the in-memory session state.
pub struct Node {
    store: Store,
    identity: Identity,
    settings: Settings,
    start_ms: i64,
    inner: Mutex<Inner>,
    /// The wall clock where a call does not pass it ([`crate::clock::SystemClock`] when serving).
    clock: Box<dyn Clock>,
    /// Order, session and signal ids ([`crate::clock::OsIds`] when serving).
    ids: Mutex<Box<dyn IdSource>>,
    /// What the driver must do, from the core's changes ([`Node::poll_event`]); its own lock,
    /// taken after (never while waiting for) the state's.
    events: Mutex<core::Events>,
    work: tokio::sync::watch::Sender<u64>,
    /// The sync driver's connected flag, once one runs ([`Node::set_hub_link`]).
    hub_link: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("device", &self.identity.device_id().fmt_short()).finish()
    }
}

/// Reads the identity and opens the EA secrets of a store.
type Secrets = HashMap<String, Zeroizing<Vec<u8>>>;

fn load(store: &Store) -> Result<(Identity, Secrets), NodeError> {
    let view = store.read()?;
    let identity = view.identity()?.ok_or(StoreError::NotInitialized)?;
    let mut secrets = HashMap::new();
    for (key_id, sealed) in view.ea_keys()? {
        let secret = keys::open_secret(&identity, &key_id, &sealed)?;
        secrets.insert(key_id, secret);
    }
    Ok((identity, secrets))
}

impl Node {
    /// A node over an initialized store. `start_ms` is the wall clock at start: EA requests
    /// stamped earlier are refused (the nonce cache is memory only).
    pub fn new(store: Store, settings: Settings, start_ms: i64) -> Result<Arc<Node>, NodeError> {
        Node::with_sources(store, settings, start_ms, Box::new(SystemClock), Box::new(OsIds))
    }

    /// A node whose wall clock and ids come from `clock` and `ids` (a simulation: a
    /// [`crate::clock::ManualClock`] and [`crate::clock::SeededIds`]).
    pub fn with_sources(
        store: Store,
        settings: Settings,
        start_ms: i64,
        clock: Box<dyn Clock>,
        ids: Box<dyn IdSource>,
    ) -> Result<Arc<Node>, NodeError> {
        let (identity, secrets) = load(&store)?;
        merge_drawdown_cap(&store, &settings)?;
        let (work, _) = tokio::sync::watch::channel(0);
        Ok(Arc::new(Node {
            store,
            identity,
            settings,
            start_ms,
            inner: Mutex::new(Inner {
                secrets,
                nonces: NonceCache::new(100_000),
                sessions: HashMap::new(),
                current: HashMap::new(),
                accounts: HashMap::new(),
                last_seen_ms: None,
            }),
            clock,
            ids: Mutex::new(ids),
            events: Mutex::new(core::Events::default()),
            work,
            hub_link: std::sync::OnceLock::new(),
        }))
    }

    /// The device id.
    pub fn device_id(&self) -> DeviceId {
        self.identity.device_id()
    }

    /// The device's identity (signs device links and device-authenticated hub reads).
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The device's public identity key (to verify its records).
    pub fn identity_key(&self) -> tradecast_protocol::IdentityKey {
        self.identity.identity_key()
    }

    /// The body of one of this node's records, opened if it is sealed.
    pub fn open_record(&self, record: &tradecast_protocol::Record) -> Option<Body> {
        if record.header().sealed {
            let key = tradecast_protocol::StreamKey::derive(
                &self.identity,
                &self.identity.device_id(),
                record.header().stream,
            );
            record.open(&key).ok()
        } else {
            record.body().ok()
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Wakes on every change the node commits that the EA or the UI should see.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.work.subscribe()
    }

    /// The store (read views for the API).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// When the node started (wall clock).
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the state it guards is rebuilt from the
        // store on restart, so recovering the guard is safe.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the waiting polls and the UI: something they should see was committed. Also noted
    /// for [`Node::poll_event`].
    fn wake(&self) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).wake = true;
        self.work.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Hands the node the hub session's connected flag (the sync driver's), for status and UI.
    pub fn set_hub_link(&self, connected: tokio::sync::watch::Receiver<bool>) {
        let _ = self.hub_link.set(connected);
    }

    /// Whether the hub session is connected; `None` when no sync driver runs in this process.
    pub fn hub_connected(&self) -> Option<bool> {
        self.hub_link.get().map(|rx| *rx.borrow())
    }

    /// The long-poll: answers as soon as something is due, or after `wait_ms` (at most
    /// [`POLL_WAIT_MAX_MS`]) with nothing. One poll per session in flight.
    pub async fn poll(&self, p: Poll) -> Result<PollAnswer, NodeError> {
        let account = {
            let mut inner = self.lock();
            let account = self.session_account(&inner, &p.session_id)?;
            let s = inner
                .sessions
                .get_mut(&p.session_id)
                .ok_or_else(|| NodeError::HelloRequired(p.session_id.clone()))?;
            if s.poll_in_flight {
                return Err(NodeError::PollInFlight);
            }
            s.poll_in_flight = true;
            account
        };
        let _flag = InFlight { node: self, session_id: &p.session_id };
        let wait = Duration::from_millis(u64::from(p.wait_ms.min(POLL_WAIT_MAX_MS)));
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.work.subscribe();
        loop {
            rx.borrow_and_update();
            let answer =
                self.take_due(&account, &p.session_id, p.terminal_time_ms, self.clock.wall_ms())?;
            if !answer.orders.is_empty()
                || !answer.commands.is_empty()
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(answer);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                // Deadline: one last look, then answer.
                continue;
            }
        }
    }

    fn poll_done(&self, session_id: &str) {
        let now = self.clock.wall_ms();
        if let Some(s) = self.lock().sessions.get_mut(session_id) {
            s.poll_in_flight = false;
            s.last_poll_ms = now;
        }
    }
}

/// After the upgrade to schema 2: the guard's old drawdown cap and the policy's drawdown lock
/// become one setting, the policy's `risk.drawdown_lock_pct`, with the stricter (lower) value of
/// the two, so a trader's cap never silently loosens. Saved as the trader's policy when it
/// changes; runs once (the upgrade's mark is removed in the same transaction).
fn merge_drawdown_cap(store: &Store, settings: &Settings) -> Result<(), NodeError> {
    store.write(|tx| {
        if tx.setting(crate::store::DRAWDOWN_MERGE_PENDING)?.is_none() {
            return Ok(());
        }
        let mut policy: PolicySettings = match tx.setting(intake::POLICY_KEY)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Row { table: "settings", message: e.to_string() })?,
            None => settings.policy.clone(),
        };
        let old_cap = settings.upgrade_drawdown_max_pct;
        if old_cap < policy.risk.drawdown_lock_pct {
            tracing::warn!(target: "tradecast::guard", old_cap = %old_cap, policy = %policy.risk.drawdown_lock_pct, "the guard's drawdown cap was stricter than the policy's drawdown lock: the policy's is now {old_cap} %");
            policy.risk.drawdown_lock_pct = old_cap;
            let text = serde_json::to_string(&policy)
                .map_err(|e| StoreError::Row { table: "settings", message: e.to_string() })?;
            tx.set_setting(intake::POLICY_KEY, &text)?;
        }
        tx.remove_setting(crate::store::DRAWDOWN_MERGE_PENDING)?;
        Ok(())
    })?;
    Ok(())
}

/// 12 characters of Crockford base32 from 60 random bits of the OS CSPRNG: the order ids of
/// the signal-intake and feed modules ([`intake`], [`feed`]), which the fan-out work owns. The
/// core's own orders take theirs from the node's [`IdSource`] ([`Node::new_order_id`]).
fn new_order_id() -> Result<String, keys::KeyError> {
    order_id_from(&mut OsIds)
}

fn order_id_from(ids: &mut dyn IdSource) -> Result<String, keys::KeyError> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut b = Zeroizing::new([0u8; 8]);
    ids.fill(&mut b[..])?;
    let n = u64::from_le_bytes(*b);
    Ok((0..12).map(|i| char::from(ALPHABET[((n >> (i * 5)) & 31) as usize])).collect())
}

impl Node {
    /// A fresh order id from the node's [`IdSource`].
    fn new_order_id(&self) -> Result<String, keys::KeyError> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        order_id_from(ids.as_mut())
    }

    /// A fresh session id (`s_` and 24 hex digits) from the node's [`IdSource`].
    fn new_session_id(&self) -> Result<String, keys::KeyError> {
        let mut b = Zeroizing::new([0u8; 12]);
        self.random(&mut b[..])?;
        Ok(format!("s_{}", hex::encode(&b[..])))
    }

    /// Fresh bytes from the node's [`IdSource`].
    fn random(&self, out: &mut [u8]) -> Result<(), keys::KeyError> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).fill(out)
    }

    /// The wall clock the node was built with.
    pub fn wall_ms(&self) -> i64 {
        self.clock.wall_ms()
    }
}

/// Clears a session's poll-in-flight flag when the poll ends (answered, failed or dropped).
struct InFlight<'a> {
    node: &'a Node,
    session_id: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.node.poll_done(self.session_id);
    }
}

/// Initializes a data dir's store: a fresh identity from the OS CSPRNG. Returns the device id.
pub fn init_store(store: &Store) -> Result<DeviceId, NodeError> {
    let identity = keys::new_identity()?;
    let id = identity.device_id();
    store.write(|tx| tx.put_identity(&identity))?;
    Ok(id)
}

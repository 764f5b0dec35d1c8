//! One simulated terminal: an account on the shared [`Broker`] driven over the real EA link the
//! way the MQL5 EA does it (`ea-link.md`): hello, then a loop of bar/deal/state pushes and a
//! long-poll; every order and trading command looked up by its magic before it is sent and again
//! after an unknown outcome; acks with MT5's own retcodes; the equity floor enforced on its own
//! when the node is silent.
//!
//! Memory versus state: the broker (positions, orders, deals) is the trade server's and
//! survives a terminal crash; everything in [`Terminal`] itself (session, cursors, floor, what
//! was pushed) is the EA's memory and is lost by [`Faults::crash`].
//!
//! Fault controls ([`Faults`], shareable with a test while the terminal runs): go silent, answer
//! the next sends with any retcode, requote, time out after filling (the outcome `unknown`,
//! optionally hidden from the next look-up as a lagging history would), fill partially, crash
//! and restart.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rust_decimal::Decimal;
use tradecast_protocol::ea::{
    self, Ack, AckAnswer, Bars, BarsAnswer, Call, CloseAllScope, Command, DealEntry, Deals,
    DealsAnswer, FloorBreach, Hello, HelloAnswer, LinkBar, MarginMode, Order, Outcome, Poll,
    PollAnswer, Side, State, StateAnswer, TickValue, Timeframe,
};

use crate::broker::{
    Broker, Filling, SYMBOL_EXPIRATION_DAY, SYMBOL_EXPIRATION_GTC, SYMBOL_EXPIRATION_SPECIFIED,
    SYMBOL_EXPIRATION_SPECIFIED_DAY, SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC, TradeAction,
    TradeRequest, TradeResult, TypeTime,
};
use crate::link::{LinkClient, LinkError, Transport};
use crate::retcode;

/// The broker every terminal of a simulation shares (one price stream). Never held across an
/// await.
pub type SharedBroker = Arc<Mutex<Broker>>;

/// Locks the broker; a poisoned lock (a panicked test thread) still yields the data, which the
/// broker keeps consistent between calls.
pub fn lock(b: &SharedBroker) -> MutexGuard<'_, Broker> {
    b.lock().unwrap_or_else(|e| e.into_inner())
}

/// Most deals pushed in one call.
const DEALS_PER_PUSH: usize = 500;
/// Most bars pushed in one call.
const BARS_PER_PUSH: usize = 1_000;
/// Bytes of symbol specs a hello carries at most (`TC_HELLO_SPEC_BYTES`): past it the other
/// symbols' specs follow in the state pushes, so a Market Watch of hundreds of symbols never
/// makes a hello over the node's 256 KiB body limit (a spec is written while the specs so far
/// are under the budget, so one spec may go past it).
pub const HELLO_SPEC_BYTES: usize = 160 * 1024;
/// Bytes of symbol specs one state push carries at most (`TC_STATE_SPEC_BYTES`), the same way.
pub const STATE_SPEC_BYTES: usize = 128 * 1024;
/// The first wait after a failed hello (`TC_RETRY_FIRST_MS`); it doubles at each failure.
pub const RETRY_FIRST_MS: i64 = 1_000;
/// The longest wait between hellos the node refused (`TC_RETRY_MAX_MS`). A hello nothing
/// answered (the node not running, or being restarted) is tried again at the next cycle: it
/// costs the node nothing, the journal says it once a minute, and a restarted node is found
/// again at once.
pub const RETRY_MAX_MS: i64 = 30_000;
/// The first wait after equity-floor closes that failed (`TC_FLOOR_RETRY_FIRST_MS`).
pub const FLOOR_RETRY_FIRST_MS: i64 = 5_000;
/// The longest wait between equity-floor attempts (`TC_FLOOR_RETRY_MAX_MS`): a market closed
/// for the weekend is tried every 5 minutes, not every cycle.
pub const FLOOR_RETRY_MAX_MS: i64 = 300_000;
/// One journal line per kind of failure at most this often (`TC_JOURNAL_EVERY_MS`); the next
/// line says how many were left out.
pub const JOURNAL_EVERY_MS: i64 = 60_000;
/// How many times a close is sent when the dealer requotes (`TC_CLOSE_ATTEMPTS`).
pub const CLOSE_ATTEMPTS: u32 = 3;
/// How far back the look-up reads the deals history (`TC_LOOKUP_HISTORY_DAYS`, 30 days): on a
/// netting account an order merged into a position is found only by its deal, and an order
/// offered again after a long outage (an EA stopped over a holiday) may be days old; a day was
/// not enough and such an order was sent twice.
pub const LOOKUP_HISTORY_MS: i64 = 30 * 86_400_000;
/// After a failed removal of an expired pending order, the next try waits this long (server
/// time, `TC_EXPIRE_RETRY_S`): a market closed at the expiry is not asked every cycle.
pub const EXPIRE_RETRY_MS: i64 = 60_000;

/// The longest poll wait the EA's input takes (the node holds a poll at most 30 s).
pub const POLL_WAIT_MAX_MS: u32 = 30_000;
/// A state whose positions, orders and balance did not change is pushed again after this long
/// on the terminal's clock (`InpStateEverySec`, 5; MQL5 reads `TimeTradeServer()`, which runs
/// with the PC's clock between ticks and over weekends, as the sim's broker clock does).
pub const STATE_EVERY_MS: i64 = 5_000;
/// A state is pushed at once when equity moved by this share of the equity last pushed
/// (`TC_STATE_EQUITY_MOVE`, 0.1 %: the node's equity points sample the same move). Smaller
/// moves wait for [`STATE_EVERY_MS`]: live profit alone no longer makes a push every cycle.
pub const STATE_EQUITY_MOVE: Decimal = Decimal::from_parts(1, 0, 0, false, 3);
/// The journal line of a hello refused because another EA polls the account (409
/// `another-ea`).
pub const ANOTHER_EA_LINE: &str = "another Tradecast EA (another chart, or another terminal \
    logged in to this account) is connected to the node: this one waits and says hello again \
    once the other stops. Two EAs on one account would both execute every order: remove one";

/// A terminal's settings: the EA's inputs plus the account it runs on.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// The node's base URL (`http://127.0.0.1:7341`).
    pub node_url: String,
    /// The EA key id.
    pub key_id: String,
    /// The EA secret (ASCII, as displayed by the node).
    pub secret: String,
    /// The broker account.
    pub login: u64,
    /// The EA's magic input: the high 32 bits of every Tradecast magic.
    pub input_magic: u32,
    /// Deviation in points when an order does not say.
    pub max_slippage_points: u32,
    /// The allow-list of symbols (empty: every broker symbol).
    pub symbols: Vec<String>,
    /// The EA version reported at hello.
    pub ea_version: String,
    /// The terminal build reported at hello.
    pub terminal_build: u32,
    /// The node is "silent" after this long without a signed 200 answer (a refusal does not
    /// count): the EA then enforces the equity floor on its own.
    pub floor_silence_ms: i64,
    /// Overrides the node's poll wait (0 in `--speed max` replays so a bar is not held up).
    pub poll_wait_override_ms: Option<u32>,
    /// Wall time between the EA's `OrderSend` and the trade server's fill (the round trip to
    /// the broker): in a `Speed::Factor` replay the price moves meanwhile, so the fill is at the
    /// price current after it.
    pub send_latency_ms: u64,
    /// Which EA this is, sent at hello (`TcInstance`: the MQL5 EA hashes the terminal's data
    /// path and the chart's id, both stable across re-inits and restarts). A second terminal
    /// config on the same account — another chart, another terminal — needs another one; a
    /// terminal restarted from the same config keeps it.
    pub instance: String,
}

impl TerminalConfig {
    /// `OnInit`'s check of the inputs: a magic of 0 (the magic of hand trades and of EAs that
    /// set none: Tradecast's positions could not be told apart) and negative periods are
    /// refused, as `INIT_PARAMETERS_INCORRECT`.
    pub fn check_inputs(&self) -> Result<(), String> {
        if self.input_magic == 0 {
            return Err("InpMagic must not be 0".into());
        }
        if self.floor_silence_ms < 0 {
            return Err("InpFloorSilenceSec must not be negative".into());
        }
        if self.poll_wait_override_ms.is_some_and(|w| w > POLL_WAIT_MAX_MS) {
            return Err(format!("InpPollWaitMs must be 0 to {POLL_WAIT_MAX_MS}"));
        }
        Ok(())
    }

    /// Defaults for everything but the link credentials and the login: magic 20260101,
    /// 10 points of deviation, every symbol, 10 s of silence before the floor acts.
    pub fn new(node_url: &str, key_id: &str, secret: &str, login: u64) -> TerminalConfig {
        TerminalConfig {
            instance: format!("{login}-chart-1"),
            node_url: node_url.to_owned(),
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
            login,
            input_magic: 20_260_101,
            max_slippage_points: 10,
            symbols: Vec::new(),
            ea_version: concat!("tradecast-sim ", env!("CARGO_PKG_VERSION")).to_owned(),
            terminal_build: 4_755,
            floor_silence_ms: 10_000,
            poll_wait_override_ms: None,
            send_latency_ms: 0,
        }
    }
}

#[derive(Debug, Default)]
struct FaultState {
    silent: bool,
    forced: VecDeque<u32>,
    requotes: u32,
    timeouts_after_fill: VecDeque<bool>,
    partial: VecDeque<Decimal>,
    crash: bool,
    disconnected: bool,
}

/// Fault controls, cloneable and shared with the test that drives a terminal.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<FaultState>>);

impl Faults {
    fn state(&self) -> MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops (or resumes) every call to the node: the EA hangs, the terminal keeps trading.
    pub fn set_silent(&self, silent: bool) {
        self.state().silent = silent;
    }

    /// Whether the terminal is silent.
    pub fn is_silent(&self) -> bool {
        self.state().silent
    }

    /// The next send answers `retcode` without trading (10012/10031 make the outcome unknown).
    pub fn force_retcode(&self, retcode: u32) {
        self.state().forced.push_back(retcode);
    }

    /// The next `n` market sends are requoted (10004).
    pub fn requote_next(&self, n: u32) {
        self.state().requotes += n;
    }

    /// The next send is carried out by the server but the terminal sees 10012 (timeout). With
    /// `visible_to_lookup` false the following look-up misses it too (the history lags), so the
    /// ack says `unknown`; the look-up after that finds it.
    pub fn timeout_after_fill(&self, visible_to_lookup: bool) {
        self.state().timeouts_after_fill.push_back(visible_to_lookup);
    }

    /// The next market send fills only `fraction` of its volume (10010).
    pub fn partial_fill(&self, fraction: Decimal) {
        self.state().partial.push_back(fraction);
    }

    /// Disconnects (or connects) the terminal from the trade server, as at a terminal's start
    /// before it has logged in: `TERMINAL_CONNECTED` is false, `ACCOUNT_LOGIN` reads 0 and
    /// tick values read 0.
    pub fn set_disconnected(&self, disconnected: bool) {
        self.state().disconnected = disconnected;
    }

    /// Whether the terminal is disconnected from the trade server.
    pub fn is_disconnected(&self) -> bool {
        self.state().disconnected
    }

    /// Crashes the terminal: at its next step it restarts with no memory (the broker's state,
    /// positions and history, is kept).
    pub fn crash(&self) {
        self.state().crash = true;
    }

    /// How many send faults are armed and not yet used (forced retcodes, requotes, timeouts
    /// after a fill, partial fills).
    pub fn pending_send_faults(&self) -> usize {
        let s = self.state();
        s.forced.len() + s.requotes as usize + s.timeouts_after_fill.len() + s.partial.len()
    }
}

/// What the terminal did, for tests and the CLI's summary.
#[derive(Debug, Clone, Default)]
pub struct TerminalStats {
    /// Hellos answered.
    pub hellos: u32,
    /// Polls answered.
    pub polls: u32,
    /// Trade requests sent to the broker.
    pub sends: u32,
    /// Look-ups that found the order already there (no send).
    pub found_by_lookup: u32,
    /// Acks the node accepted, in order.
    pub acks: Vec<Ack>,
    /// Answers ignored for a missing or wrong signature.
    pub ignored_answers: u32,
    /// Restarts after a crash.
    pub restarts: u32,
    /// Floor breaches the EA handled on its own.
    pub floor_breaches: u32,
    /// Hellos sent (answered or not).
    pub hello_attempts: u32,
    /// Lines the EA printed to the journal about link failures (after rate limiting).
    pub journal_lines: u32,
    /// The last [`JOURNAL_KEPT`] of those lines.
    pub journal: std::collections::VecDeque<String>,
    /// State pushes the node answered.
    pub state_pushes: u32,
}

/// How many journal lines [`TerminalStats::journal`] keeps.
pub const JOURNAL_KEPT: usize = 64;

#[derive(Debug, Clone)]
struct LinkSession {
    id: String,
    poll_wait_ms: u32,
    bars_from: BTreeMap<(String, Timeframe), i64>,
    bars_pushed: BTreeMap<(String, Timeframe), i64>,
    deals_from_ms: i64,
    deals_pushed: BTreeSet<u64>,
}

/// The EA's memory: lost on a crash.
#[derive(Debug, Default)]
struct Memory {
    session: Option<LinkSession>,
    equity_floor: Option<Decimal>,
    /// Specs to send in the next state pushes, in order: those the node asked for and those
    /// past the hello's budget.
    spec_requests: Vec<String>,
    backfills: Vec<(String, Timeframe, i64, i64)>,
    floor_breach: Option<FloorBreach>,
    last_contact_wall_ms: i64,
    hidden_from_lookup: HashSet<u64>,
    /// The last state pushed without what moves with prices ([`state_fingerprint`]), its
    /// terminal time and its equity.
    last_state: Vec<u8>,
    last_state_time_ms: i64,
    last_state_equity: Decimal,
    /// The broker's server day (days since the epoch in server time) of the last state push.
    last_state_day: Option<i64>,
    last_poll_idle: bool,
    /// Failed hellos in a row, and the wall time before which no hello is sent.
    hello_failures: u32,
    hello_next_wall_ms: i64,
    /// Floor attempts with failed closes in a row, and the wall time before the next.
    floor_failures: u32,
    floor_next_wall_ms: i64,
    /// Per kind of journal line: when it was last printed, and how many were left out since.
    journal: BTreeMap<String, (i64, u32)>,
    /// The jitter's xorshift state (`MathRand` in the EA).
    jitter: u64,
    /// The server's UTC offsets the EA has seen, each with the server time (ms) it was first
    /// seen at, oldest first (`g_offFrom`, `g_offVal`).
    offsets: Vec<(i64, i32)>,
    /// Pending orders placed with a lifetime longer than the node asked for (the symbol does
    /// not allow `SPECIFIED`): (order ticket, the node's expiry, UTC ms), removed by the EA then
    /// (`g_expTicket`, `g_expAt`). Lost on a restart: the broker's DAY or SPECIFIED_DAY
    /// lifetime still ends them that day.
    own_expiries: Vec<(u64, i64)>,
}

/// `TcBackoffMs`: `first` doubled per earlier failure, at most `max`, then jittered to between
/// half and all of it so that many terminals do not retry in step.
fn backoff_ms(failures: u32, first: i64, max: i64, rng: &mut u64) -> i64 {
    let full = first.saturating_mul(1i64 << failures.saturating_sub(1).min(20)).min(max);
    // xorshift64
    let mut x = (*rng).max(1);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *rng = x;
    let half = full / 2;
    half + (x % (half.max(1) as u64 + 1)) as i64
}

/// `TcStateBody(false)`: the state without what moves with every price (terminal time, equity,
/// margin, free margin, positions' current price and profit, tick values): it changes when a
/// position or order opens, closes or changes, a swap is charged, or the balance changes.
fn state_fingerprint(s: &State) -> State {
    State {
        terminal_time_ms: 0,
        equity: Decimal::ZERO,
        margin: Decimal::ZERO,
        free_margin: Decimal::ZERO,
        positions: s
            .positions
            .iter()
            .map(|p| ea::Position {
                price_current: Decimal::ZERO,
                profit: Decimal::ZERO,
                ..p.clone()
            })
            .collect(),
        tick_values: Vec::new(),
        ..s.clone()
    }
}

/// What the look-up found for a magic.
#[derive(Debug, Clone, Default)]
struct Found {
    order_ticket: Option<u64>,
    deal_ticket: Option<u64>,
    position_id: Option<u64>,
    price: Option<Decimal>,
    volume: Option<Decimal>,
    time_ms: Option<i64>,
}

/// One simulated terminal with its EA, speaking the link over `L` (the real HTTP link by
/// default; see [`Transport`]).
#[derive(Debug)]
pub struct Terminal<L = LinkClient> {
    cfg: TerminalConfig,
    broker: SharedBroker,
    link: L,
    faults: Faults,
    mem: Memory,
    stats: TerminalStats,
}

impl Terminal<LinkClient> {
    /// A terminal on `broker`'s account `cfg.login`, not yet introduced to the node.
    pub fn new(
        cfg: TerminalConfig,
        broker: SharedBroker,
        faults: Faults,
    ) -> Result<Terminal, LinkError> {
        let link = LinkClient::new(&cfg.node_url, &cfg.key_id, &cfg.secret)?;
        Terminal::with_transport(cfg, broker, faults, link)
    }
}

impl<L: Transport> Terminal<L> {
    /// A terminal speaking the link over `link` (`cfg.node_url` is not used).
    pub fn with_transport(
        cfg: TerminalConfig,
        broker: SharedBroker,
        faults: Faults,
        link: L,
    ) -> Result<Terminal<L>, LinkError> {
        cfg.check_inputs().map_err(LinkError::Inputs)?;
        let mem = Memory { jitter: cfg.login, ..Memory::default() };
        Ok(Terminal { cfg, broker, link, faults, mem, stats: TerminalStats::default() })
    }

    /// The transport.
    pub fn transport(&self) -> &L {
        &self.link
    }

    /// The transport, to change (a simulation's faults on the link).
    pub fn transport_mut(&mut self) -> &mut L {
        &mut self.link
    }

    fn wall_ms(&self) -> i64 {
        self.link.wall_ms()
    }

    /// The fault controls.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// What the terminal did so far.
    pub fn stats(&self) -> &TerminalStats {
        &self.stats
    }

    /// The settings.
    pub fn config(&self) -> &TerminalConfig {
        &self.cfg
    }

    /// The shared broker.
    pub fn broker(&self) -> &SharedBroker {
        &self.broker
    }

    /// The current session id, if the node has answered a hello.
    pub fn session_id(&self) -> Option<&str> {
        self.mem.session.as_ref().map(|s| s.id.as_str())
    }

    /// The equity floor the node set.
    pub fn equity_floor(&self) -> Option<Decimal> {
        self.mem.equity_floor
    }

    /// Whether the node has taken in everything: a session, every closed bar of every
    /// subscription pushed, and the last poll brought nothing to do.
    pub fn caught_up(&self) -> bool {
        let Some(s) = &self.mem.session else { return false };
        if !self.mem.last_poll_idle || !self.mem.backfills.is_empty() {
            return false;
        }
        let b = lock(&self.broker);
        s.bars_from.iter().all(|((sym, tf), from)| {
            let last = s.bars_pushed.get(&(sym.clone(), *tf)).copied().unwrap_or(i64::MIN);
            b.bars(sym, *tf, *from, i64::MAX)
                .map(|bars| bars.iter().all(|bar| bar.time_unix_ms <= last))
                .unwrap_or(true)
        })
    }

    fn wait_ms(&self) -> u32 {
        self.cfg.poll_wait_override_ms.unwrap_or_else(|| {
            self.mem.session.as_ref().map(|s| s.poll_wait_ms).unwrap_or(ea::DEFAULT_POLL_WAIT_MS)
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.wait_ms()) + u64::from(ea::EA_TIMEOUT_SLACK_MS))
    }

    fn market_ms(&self) -> i64 {
        lock(&self.broker).time_ms()
    }

    /// `TcNoteOffset`, every cycle: reads `TimeTradeServer() - TimeGMT()` and remembers a change
    /// (a broker's daylight-saving switch) with the server time it was seen at.
    fn note_offset(&mut self) {
        let b = lock(&self.broker);
        let now = b.time_ms();
        let offset = b.server_utc_offset_at(now);
        drop(b);
        if self.mem.offsets.last().is_none_or(|(_, o)| *o != offset) {
            // A switch while introduced: say hello again, so that the node's server day (its
            // daily loss rules) follows the new offset too (`TcCycle`).
            if !self.mem.offsets.is_empty() {
                self.mem.session = None;
            }
            self.mem.offsets.push((now + i64::from(offset) * 1_000, offset));
        }
    }

    /// `TcUtcMs`: a time MT5 shows in server time (a bar's, a deal's), converted to UTC with the
    /// offset the EA knew for that server time. MT5 shows `utc` as `utc` + the offset then.
    fn ea_utc(&self, b: &Broker, utc_ms: i64) -> i64 {
        let server = utc_ms + i64::from(b.server_utc_offset_at(utc_ms)) * 1_000;
        let offset = self
            .mem
            .offsets
            .iter()
            .rev()
            .find(|(from, _)| *from <= server)
            .or(self.mem.offsets.first())
            .map(|(_, o)| *o)
            .unwrap_or_else(|| b.server_utc_offset_at(utc_ms));
        server - i64::from(offset) * 1_000
    }

    /// `TcJournal`: prints a link failure to the journal, one line per `kind` a minute at most;
    /// the next line printed says how many like it were left out.
    fn journal(&mut self, kind: &str, message: &str) {
        let now = self.wall_ms();
        let entry = self.mem.journal.entry(kind.to_owned()).or_insert((i64::MIN / 2, 0));
        if now - entry.0 < JOURNAL_EVERY_MS {
            entry.1 += 1;
            return;
        }
        let left_out = std::mem::take(&mut entry.1);
        entry.0 = now;
        self.stats.journal_lines += 1;
        if self.stats.journal.len() == JOURNAL_KEPT {
            self.stats.journal.pop_front();
        }
        self.stats.journal.push_back(message.to_owned());
        tracing::warn!(target: "tradecast_sim::journal", left_out, "{message}");
    }

    /// One signed call; a 409 `hello-required` drops the session, an unsigned or wrongly signed
    /// answer is counted and ignored.
    async fn call<Req: serde::Serialize, Ans: serde::de::DeserializeOwned>(
        &mut self,
        call: Call,
        req: &Req,
    ) -> Result<Ans, LinkError> {
        let timeout = self.timeout();
        let r = match self.link.call_bytes(call, ea::encode(req), timeout).await {
            Ok(body) => ea::decode(&body).map_err(LinkError::from),
            Err(e) => Err(e),
        };
        match &r {
            // Only a signed 200 shows the node alive and doing its job (`TcCall`): a refusal
            // (401, 413, 500, …) must not hold off the EA's own equity floor.
            Ok(_) => {
                self.mem.last_contact_wall_ms = self.wall_ms();
            }
            Err(e @ (LinkError::Unsigned(_) | LinkError::BadSignature(_))) => {
                self.stats.ignored_answers += 1;
                let msg = format!("answer ignored from {call:?}: {e}");
                self.journal("signature", &msg);
            }
            Err(e @ LinkError::UnknownKey(_)) => {
                self.stats.ignored_answers += 1;
                let msg = e.to_string();
                self.journal("unknown-key", &msg);
            }
            Err(e) if e.problem_code() == Some(ea::PROBLEM_HELLO_REQUIRED) => {}
            Err(e) if e.problem_code() == Some(ea::PROBLEM_ANOTHER_EA) => {
                self.journal("another-ea", ANOTHER_EA_LINE);
            }
            Err(e) => {
                let kind = match e {
                    LinkError::Transport(_) => "no-answer".to_owned(),
                    LinkError::Refused { status, .. } => format!("refused-{status}"),
                    _ => "body".to_owned(),
                };
                let msg = format!("{call:?}: {e}");
                self.journal(&kind, &msg);
            }
        }
        if let Err(e) = &r
            && e.problem_code() == Some(ea::PROBLEM_HELLO_REQUIRED)
        {
            self.mem.session = None;
        }
        r
    }

    /// One cycle of the EA's timer: restart after a crash, the floor, hello if needed, pushes,
    /// one poll and everything it brought.
    pub async fn step(&mut self) -> Result<(), LinkError> {
        if std::mem::take(&mut self.faults.state().crash) {
            self.mem =
                Memory { jitter: self.cfg.login ^ self.wall_ms() as u64, ..Memory::default() };
            self.link.restart()?;
            self.stats.restarts += 1;
        }
        self.note_offset();
        self.enforce_floor_if_node_silent();
        self.expire_own_orders();
        if self.faults.is_silent() {
            return Ok(());
        }
        if self.mem.session.is_none() {
            // `TcTerminalReady`: no hello before the terminal is connected and logged in (it
            // would carry login 0 and zero tick values).
            if self.faults.is_disconnected() {
                return Ok(());
            }
            // `TcCycle`: after a failed hello, wait (1 s doubling to 30 s, jittered) before the
            // next; the hello is not rebuilt and re-sent every timer tick.
            if self.wall_ms() < self.mem.hello_next_wall_ms {
                return Ok(());
            }
            if let Err(e) = self.hello().await {
                if !matches!(e, LinkError::Transport(_)) {
                    self.mem.hello_failures += 1;
                    let wait = backoff_ms(
                        self.mem.hello_failures,
                        RETRY_FIRST_MS,
                        RETRY_MAX_MS,
                        &mut self.mem.jitter,
                    );
                    self.mem.hello_next_wall_ms = self.wall_ms() + wait;
                }
                return Err(e);
            }
            self.mem.hello_failures = 0;
            self.mem.hello_next_wall_ms = 0;
        }
        self.push_bars().await?;
        self.push_deals().await?;
        self.push_state(false).await?;
        let answer = self.poll().await?;
        let busy = !answer.orders.is_empty() || !answer.commands.is_empty();
        self.mem.last_poll_idle = !busy;
        for order in answer.orders {
            self.execute_order(order).await?;
        }
        for command in answer.commands {
            self.execute_command(command).await?;
        }
        if busy || !self.mem.spec_requests.is_empty() {
            self.push_bars().await?;
            self.push_deals().await?;
            self.push_state(true).await?;
        }
        Ok(())
    }

    /// Introduces the account (and reports a floor breach the EA handled alone). The symbols
    /// with positions or pending orders come first; specs past [`HELLO_SPEC_BYTES`] follow in
    /// the state pushes.
    pub async fn hello(&mut self) -> Result<(), LinkError> {
        let (hello, rest) = {
            let b = lock(&self.broker);
            let info =
                b.account_info(self.cfg.login).map_err(|e| LinkError::Transport(e.to_string()))?;
            let held: BTreeSet<String> = b
                .positions(self.cfg.login)
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.symbol)
                .chain(b.orders(self.cfg.login).unwrap_or_default().into_iter().map(|o| o.symbol))
                .collect();
            let mut names: Vec<String> = b
                .symbol_names()
                .into_iter()
                .filter(|s| self.cfg.symbols.is_empty() || self.cfg.symbols.contains(s))
                .collect();
            names.sort_by_key(|s| !held.contains(s));
            let mut specs = Vec::new();
            let mut rest = Vec::new();
            let mut used = 0;
            for name in names {
                let Some(spec) = b.symbol_spec(&name, &info.currency) else { continue };
                if used < HELLO_SPEC_BYTES {
                    used += ea::encode(&spec).len() + 1;
                    specs.push(spec);
                } else {
                    rest.push(name);
                }
            }
            // Before the terminal has logged in, MT5 reports login 0 and zero tick values.
            if self.faults.is_disconnected() {
                for spec in &mut specs {
                    spec.tick_value_profit = Decimal::ZERO;
                    spec.tick_value_loss = Decimal::ZERO;
                }
            }
            let hello = Hello {
                login: if self.faults.is_disconnected() { 0 } else { self.cfg.login },
                server: b.config().server.clone(),
                company: b.config().company.clone(),
                currency: info.currency.clone(),
                leverage: info.leverage,
                margin_mode: info.margin_mode,
                terminal_build: self.cfg.terminal_build,
                ea_version: self.cfg.ea_version.clone(),
                server_utc_offset_s: b.server_utc_offset_at(b.time_ms()),
                terminal_time_ms: b.time_ms(),
                symbols: specs,
                floor_breach: self.mem.floor_breach.clone(),
                instance: Some(self.cfg.instance.clone()),
            };
            (hello, rest)
        };
        self.stats.hello_attempts += 1;
        let a: HelloAnswer = self.call(Call::Hello, &hello).await?;
        self.stats.hellos += 1;
        self.mem.floor_breach = None;
        for name in rest {
            if !self.mem.spec_requests.contains(&name) {
                self.mem.spec_requests.push(name);
            }
        }
        self.mem.equity_floor = a.equity_floor;
        let mut bars_from = BTreeMap::new();
        for s in &a.subscriptions {
            bars_from.insert((s.symbol.clone(), s.timeframe), i64::MIN);
        }
        for c in &a.bars_from {
            bars_from.insert((c.symbol.clone(), c.timeframe), c.from_ms);
        }
        self.mem.session = Some(LinkSession {
            id: a.session_id,
            poll_wait_ms: a.poll_wait_ms,
            bars_from,
            bars_pushed: BTreeMap::new(),
            deals_from_ms: a.deals_from_ms,
            deals_pushed: BTreeSet::new(),
        });
        Ok(())
    }

    async fn poll(&mut self) -> Result<PollAnswer, LinkError> {
        let Some(s) = &self.mem.session else { return Ok(empty_poll()) };
        let req = Poll {
            session_id: s.id.clone(),
            wait_ms: self.wait_ms(),
            terminal_time_ms: self.market_ms(),
        };
        let a: PollAnswer = self.call(Call::Poll, &req).await?;
        self.stats.polls += 1;
        self.mem.equity_floor = a.equity_floor;
        Ok(a)
    }

    async fn push_bars(&mut self) -> Result<(), LinkError> {
        let Some(s) = self.mem.session.clone() else { return Ok(()) };
        let mut bars: Vec<LinkBar> = Vec::new();
        let mut pushed = s.bars_pushed.clone();
        {
            let b = lock(&self.broker);
            let backfills = std::mem::take(&mut self.mem.backfills);
            for (sym, tf, from, to) in backfills {
                for bar in b.bars(&sym, tf, from, to).unwrap_or_default() {
                    bars.push(link_bar(&sym, tf, &bar, self.ea_utc(&b, bar.time_unix_ms)));
                }
            }
            for ((sym, tf), from) in &s.bars_from {
                let last = pushed.get(&(sym.clone(), *tf)).copied().unwrap_or(i64::MIN);
                for bar in b.bars(sym, *tf, *from, i64::MAX).unwrap_or_default() {
                    if bar.time_unix_ms > last && bars.len() < BARS_PER_PUSH {
                        bars.push(link_bar(sym, *tf, &bar, self.ea_utc(&b, bar.time_unix_ms)));
                        pushed.insert((sym.clone(), *tf), bar.time_unix_ms);
                    }
                }
            }
        }
        if bars.is_empty() {
            return Ok(());
        }
        let req = Bars { session_id: s.id.clone(), bars };
        let a: BarsAnswer = self.call(Call::Bars, &req).await?;
        if let Some(sess) = &mut self.mem.session {
            sess.bars_pushed = pushed;
            for c in a.bars_from {
                sess.bars_from.insert((c.symbol, c.timeframe), c.from_ms);
            }
        }
        Ok(())
    }

    async fn push_deals(&mut self) -> Result<(), LinkError> {
        let Some(s) = self.mem.session.clone() else { return Ok(()) };
        let deals: Vec<_> = {
            let b = lock(&self.broker);
            b.deals(self.cfg.login, s.deals_from_ms, i64::MAX)
                .unwrap_or_default()
                .into_iter()
                .filter(|d| !s.deals_pushed.contains(&d.deal_ticket))
                .take(DEALS_PER_PUSH)
                .map(|d| ea::Deal { time_ms: self.ea_utc(&b, d.time_ms), ..d })
                .collect()
        };
        if deals.is_empty() {
            return Ok(());
        }
        let tickets: Vec<u64> = deals.iter().map(|d| d.deal_ticket).collect();
        let req = Deals { session_id: s.id.clone(), from_ms: s.deals_from_ms, deals };
        let a: DealsAnswer = self.call(Call::Deals, &req).await?;
        if let Some(sess) = &mut self.mem.session {
            sess.deals_pushed.extend(tickets);
            sess.deals_from_ms = a.deals_from_ms;
        }
        Ok(())
    }

    /// The state body, and how many entries of the spec queue it took in.
    fn state_body(&self, session_id: &str) -> Result<(State, usize), LinkError> {
        let b = lock(&self.broker);
        let login = self.cfg.login;
        let info = b.account_info(login).map_err(|e| LinkError::Transport(e.to_string()))?;
        let positions = b.positions(login).unwrap_or_default();
        let pending = b.orders(login).unwrap_or_default();
        let traded: BTreeSet<&str> = positions
            .iter()
            .map(|p| p.symbol.as_str())
            .chain(pending.iter().map(|o| o.symbol.as_str()))
            .collect();
        let tick_values = traded
            .iter()
            .filter_map(|s| {
                b.tick_values(s, &info.currency).map(|(p, l)| TickValue {
                    symbol: (*s).to_owned(),
                    tick_value_profit: p.round_dp(8).normalize(),
                    tick_value_loss: l.round_dp(8).normalize(),
                })
            })
            .collect();
        let mut specs = Vec::new();
        let mut used = 0;
        let mut consumed = 0;
        for name in &self.mem.spec_requests {
            if used >= STATE_SPEC_BYTES {
                break;
            }
            consumed += 1;
            if let Some(spec) = b.symbol_spec(name, &info.currency) {
                used += ea::encode(&spec).len() + 1;
                specs.push(spec);
            }
        }
        let state = State {
            session_id: session_id.to_owned(),
            terminal_time_ms: b.time_ms(),
            balance: info.balance,
            equity: info.equity,
            margin: info.margin,
            free_margin: info.free_margin,
            credit: info.credit,
            positions,
            pending,
            tick_values,
            specs,
        };
        Ok((state, consumed))
    }

    /// `TcPushState`: pushes the state when `force`d (after a trade), when its positions,
    /// orders or balance changed, when equity moved by [`STATE_EQUITY_MOVE`] since the last
    /// push, after [`STATE_EVERY_MS`] on the terminal's clock, or on the first cycle of a new
    /// server day (the node's daily loss rules start the day from its first state). A price
    /// change alone (profit, current prices, margin, tick values) waits for one of those.
    async fn push_state(&mut self, force: bool) -> Result<(), LinkError> {
        let Some(id) = self.mem.session.as_ref().map(|s| s.id.clone()) else { return Ok(()) };
        let (state, consumed) = self.state_body(&id)?;
        // The server day at the terminal's time, with the offset in force then (a broker's DST
        // change moves it).
        let offset_ms =
            i64::from(lock(&self.broker).server_utc_offset_at(state.terminal_time_ms)) * 1_000;
        let day = state.terminal_time_ms.saturating_add(offset_ms).div_euclid(86_400_000);
        let fingerprint = ea::encode(&state_fingerprint(&state));
        // Either way: the server clock jumps back an hour at a DST change.
        let stale = state.terminal_time_ms.abs_diff(self.mem.last_state_time_ms)
            >= STATE_EVERY_MS.unsigned_abs();
        let new_day = self.mem.last_state_day != Some(day);
        let last = self.mem.last_state_equity;
        let moved = if last > Decimal::ZERO {
            (state.equity - last).abs() >= last * STATE_EQUITY_MOVE
        } else {
            state.equity != last
        };
        if !force
            && !stale
            && !new_day
            && !moved
            && fingerprint == self.mem.last_state
            && state.specs.is_empty()
        {
            return Ok(());
        }
        let _: StateAnswer = self.call(Call::State, &state).await?;
        self.stats.state_pushes += 1;
        self.mem.last_state = fingerprint;
        self.mem.last_state_time_ms = state.terminal_time_ms;
        self.mem.last_state_equity = state.equity;
        self.mem.last_state_day = Some(day);
        // The specs sent leave the queue; the rest go in the next push.
        self.mem.spec_requests.drain(..consumed.min(self.mem.spec_requests.len()));
        Ok(())
    }

    async fn ack(&mut self, ack: Ack) -> Result<(), LinkError> {
        let _: AckAnswer = self.call(Call::Ack, &ack).await?;
        if ack.found_by_lookup {
            self.stats.found_by_lookup += 1;
        }
        self.stats.acks.push(ack);
        Ok(())
    }

    fn session_id_owned(&self) -> String {
        self.mem.session.as_ref().map(|s| s.id.clone()).unwrap_or_default()
    }

    /// The look-up by magic: open positions, pending orders, the last day's deals (netting:
    /// deals first, since merged positions keep the first order's magic).
    fn lookup(&mut self, magic: u64) -> Option<Found> {
        if self.mem.hidden_from_lookup.remove(&magic) {
            return None;
        }
        let b = lock(&self.broker);
        let login = self.cfg.login;
        let netting =
            b.account_info(login).map(|i| i.margin_mode == MarginMode::Netting).unwrap_or(false);
        // `TcLookupDeals`: the newest deal with the magic that opened or reversed a position
        // (entry in/inout) — an SL/TP close carries the position's magic too, and its price is
        // not the fill's — else the newest with the magic.
        let by_deals = || {
            let deals: Vec<_> = b
                .deals(login, b.time_ms() - LOOKUP_HISTORY_MS, i64::MAX)
                .unwrap_or_default()
                .into_iter()
                .filter(|d| d.magic == magic)
                .collect();
            let opening =
                deals.iter().rev().find(|d| matches!(d.entry, DealEntry::In | DealEntry::Inout));
            opening.or(deals.last()).cloned().map(|d| Found {
                order_ticket: Some(d.order_ticket),
                deal_ticket: Some(d.deal_ticket),
                position_id: Some(d.position_id),
                price: Some(d.price),
                volume: Some(d.volume),
                time_ms: Some(d.time_ms),
            })
        };
        if netting && let Some(f) = by_deals() {
            return Some(f);
        }
        if let Some(p) =
            b.positions(login).unwrap_or_default().into_iter().find(|p| p.magic == magic)
        {
            return Some(Found {
                order_ticket: Some(p.position_id),
                deal_ticket: None,
                position_id: Some(p.position_id),
                price: Some(p.open_price),
                volume: Some(p.volume),
                time_ms: Some(p.open_time_ms),
            });
        }
        if let Some(o) = b.orders(login).unwrap_or_default().into_iter().find(|o| o.magic == magic)
        {
            return Some(Found {
                order_ticket: Some(o.order_ticket),
                price: Some(o.price),
                volume: Some(o.volume),
                time_ms: Some(o.time_setup_ms),
                ..Found::default()
            });
        }
        by_deals()
    }

    /// Waits the configured round trip to the trade server.
    async fn latency(&self) {
        if self.cfg.send_latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.cfg.send_latency_ms)).await;
        }
    }

    /// `OrderSend` with the faults applied; `None` is "no result at all".
    fn send(&mut self, req: &TradeRequest) -> Option<TradeResult> {
        self.stats.sends += 1;
        let mut f = self.faults.state();
        if let Some(code) = f.forced.pop_front() {
            return Some(TradeResult {
                retcode: code,
                comment: retcode::describe(code).into(),
                ..TradeResult::default()
            });
        }
        if req.action == TradeAction::Deal && f.requotes > 0 {
            f.requotes -= 1;
            let mut r = TradeResult { retcode: retcode::REQUOTE, ..TradeResult::default() };
            r.comment = retcode::describe(retcode::REQUOTE).into();
            return Some(r);
        }
        if let Some(visible) = f.timeouts_after_fill.pop_front() {
            drop(f);
            let r = lock(&self.broker).send(self.cfg.login, req);
            if retcode::is_success(r.retcode) && !visible {
                self.mem.hidden_from_lookup.insert(req.magic);
            }
            return Some(TradeResult {
                retcode: retcode::TIMEOUT,
                comment: retcode::describe(retcode::TIMEOUT).into(),
                ..TradeResult::default()
            });
        }
        let partial = if req.action == TradeAction::Deal { f.partial.pop_front() } else { None };
        drop(f);
        let mut b = lock(&self.broker);
        Some(match partial {
            Some(frac) => b.send_partial(self.cfg.login, req, req.volume * frac),
            None => b.send(self.cfg.login, req),
        })
    }

    /// Turns a send's result into an ack: success → done; 10012, 10031 or no result → look up
    /// again (done if found, unknown if not); anything else → rejected.
    fn settle(&mut self, order_id: &str, magic: u64, result: Option<TradeResult>) -> Ack {
        let session_id = self.session_id_owned();
        match result {
            Some(r) if retcode::is_success(r.retcode) => Ack {
                session_id,
                order_id: order_id.to_owned(),
                outcome: Outcome::Done,
                retcode: r.retcode,
                message: r.comment,
                found_by_lookup: false,
                order_ticket: (r.order != 0).then_some(r.order),
                deal_ticket: (r.deal != 0).then_some(r.deal),
                position_id: (r.position_id != 0).then_some(r.position_id),
                price: (r.deal != 0 || r.order != 0).then_some(r.price),
                volume: (r.deal != 0 || r.order != 0).then_some(r.volume),
                time_ms: Some(r.time_ms),
            },
            Some(r) if !retcode::is_unknown(r.retcode) => Ack {
                session_id,
                order_id: order_id.to_owned(),
                outcome: Outcome::Rejected,
                retcode: r.retcode,
                message: r.comment,
                found_by_lookup: false,
                order_ticket: None,
                deal_ticket: None,
                position_id: None,
                price: None,
                volume: None,
                time_ms: None,
            },
            other => {
                let code = other.as_ref().map(|r| r.retcode).unwrap_or(0);
                match self.lookup(magic) {
                    Some(f) => found_ack(session_id, order_id, f),
                    None => Ack {
                        session_id,
                        order_id: order_id.to_owned(),
                        outcome: Outcome::Unknown,
                        retcode: code,
                        message: retcode::describe(code).to_owned(),
                        found_by_lookup: false,
                        order_ticket: None,
                        deal_ticket: None,
                        position_id: None,
                        price: None,
                        volume: None,
                        time_ms: None,
                    },
                }
            }
        }
    }

    async fn execute_order(&mut self, o: Order) -> Result<(), LinkError> {
        let magic = ea::magic(self.cfg.input_magic, o.order_no);
        if let Some(f) = self.lookup(magic) {
            let ack = found_ack(self.session_id_owned(), &o.order_id, f);
            return self.ack(ack).await;
        }
        let (type_time, expiration_ms) = if o.kind.is_market() {
            (TypeTime::Gtc, None)
        } else {
            self.type_time(&o.symbol, o.expiration_ms)
        };
        let req = TradeRequest {
            action: if o.kind.is_market() { TradeAction::Deal } else { TradeAction::Pending },
            symbol: o.symbol.clone(),
            volume: o.volume,
            kind: o.kind,
            price: o.price,
            sl: o.sl,
            tp: o.tp,
            deviation_points: o.max_slippage_points.unwrap_or(self.cfg.max_slippage_points),
            magic,
            comment: ea::order_comment(&o.order_id),
            position: None,
            order: None,
            type_time,
            expiration_ms,
            filling: self.filling(&o.symbol, o.kind),
        };
        self.latency().await;
        let result = self.send(&req);
        // A lifetime longer than asked (no SPECIFIED on this symbol): the EA removes the order
        // at the node's expiry itself.
        if let (Some(r), Some(wanted)) = (&result, o.expiration_ms)
            && r.retcode == retcode::PLACED
            && type_time != TypeTime::Specified
        {
            self.mem.own_expiries.push((r.order, wanted));
        }
        let ack = self.settle(&o.order_id, magic, result);
        self.ack(ack).await
    }

    async fn execute_command(&mut self, c: Command) -> Result<(), LinkError> {
        match c {
            Command::Close { order_id, order_no, position_id, symbol: _, volume } => {
                let magic = ea::magic(self.cfg.input_magic, order_no);
                if let Some(f) = self.lookup(magic) {
                    let ack = found_ack(self.session_id_owned(), &order_id, f);
                    return self.ack(ack).await;
                }
                let pos = lock(&self.broker)
                    .positions(self.cfg.login)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|p| p.position_id == position_id);
                let result = match pos {
                    None => Some(TradeResult {
                        retcode: retcode::POSITION_CLOSED,
                        comment: retcode::describe(retcode::POSITION_CLOSED).into(),
                        ..TradeResult::default()
                    }),
                    Some(p) => {
                        let req = self.close_request(&p, volume, magic, &order_id);
                        self.latency().await;
                        self.send_close(&req)
                    }
                };
                let ack = self.settle(&order_id, magic, result);
                self.ack(ack).await
            }
            Command::Modify { order_id, order_no, position_id, order_ticket, sl, tp } => {
                let magic = ea::magic(self.cfg.input_magic, order_no);
                let (action, symbol) = {
                    let b = lock(&self.broker);
                    match (position_id, order_ticket) {
                        (Some(id), _) => (
                            TradeAction::Sltp,
                            b.positions(self.cfg.login)
                                .unwrap_or_default()
                                .into_iter()
                                .find(|p| p.position_id == id)
                                .map(|p| p.symbol),
                        ),
                        (None, Some(t)) => (
                            TradeAction::Modify,
                            b.orders(self.cfg.login)
                                .unwrap_or_default()
                                .into_iter()
                                .find(|o| o.order_ticket == t)
                                .map(|o| o.symbol),
                        ),
                        (None, None) => (TradeAction::Sltp, None),
                    }
                };
                let result = match symbol {
                    None => Some(TradeResult {
                        retcode: if action == TradeAction::Sltp {
                            retcode::POSITION_CLOSED
                        } else {
                            retcode::INVALID_ORDER
                        },
                        ..TradeResult::default()
                    }),
                    Some(symbol) => {
                        let req = TradeRequest {
                            action,
                            sl,
                            tp,
                            magic,
                            comment: ea::order_comment(&order_id),
                            position: position_id.map(|id| self.position_ticket(id).unwrap_or(id)),
                            order: order_ticket,
                            ..TradeRequest::market(&symbol, ea::OrderKind::Buy, Decimal::ZERO)
                        };
                        let mut r = self.send(&req);
                        // "No changes" means the levels are already what the node wants.
                        if let Some(res) = &mut r
                            && res.retcode == retcode::NO_CHANGES
                        {
                            res.retcode = retcode::DONE;
                        }
                        // An unknown outcome is settled by reading the levels back.
                        if r.as_ref().is_none_or(|res| retcode::is_unknown(res.retcode))
                            && self.levels_are(position_id, order_ticket, sl, tp)
                        {
                            r = Some(TradeResult {
                                retcode: retcode::DONE,
                                position_id: position_id.unwrap_or(0),
                                ..TradeResult::default()
                            });
                        }
                        r
                    }
                };
                let mut ack = self.settle(&order_id, u64::MAX, result);
                ack.message = retcode::describe(ack.retcode).to_owned();
                self.ack(ack).await
            }
            Command::CloseAll { order_id, scope } => {
                let ack = self.close_all(&order_id, scope);
                self.ack(ack).await
            }
            Command::RequestSpec { symbols } => {
                for name in symbols {
                    if !self.mem.spec_requests.contains(&name) {
                        self.mem.spec_requests.push(name);
                    }
                }
                Ok(())
            }
            Command::Backfill { symbol, timeframe, from_ms, to_ms } => {
                self.mem.backfills.push((symbol, timeframe, from_ms, to_ms));
                self.push_bars().await
            }
        }
    }

    fn levels_are(
        &self,
        position_id: Option<u64>,
        order_ticket: Option<u64>,
        sl: Option<Decimal>,
        tp: Option<Decimal>,
    ) -> bool {
        let b = lock(&self.broker);
        if let Some(id) = position_id {
            return b
                .positions(self.cfg.login)
                .unwrap_or_default()
                .iter()
                .any(|p| p.position_id == id && p.sl == sl && p.tp == tp);
        }
        order_ticket.is_some_and(|t| {
            b.orders(self.cfg.login)
                .unwrap_or_default()
                .iter()
                .any(|o| o.order_ticket == t && o.sl == sl && o.tp == tp)
        })
    }

    fn close_request(
        &self,
        p: &ea::Position,
        volume: Option<Decimal>,
        magic: u64,
        order_id: &str,
    ) -> TradeRequest {
        let kind = match p.side {
            Side::Buy => ea::OrderKind::Sell,
            Side::Sell => ea::OrderKind::Buy,
        };
        TradeRequest {
            deviation_points: self.cfg.max_slippage_points,
            magic,
            comment: ea::order_comment(order_id),
            // MT5 wants the position's ticket, which is not its identifier after a netting
            // reversal or a re-opening swap rollover (`TcClosePosition`).
            position: Some(self.position_ticket(p.position_id).unwrap_or(p.position_id)),
            filling: self.filling(&p.symbol, kind),
            ..TradeRequest::market(&p.symbol, kind, volume.unwrap_or(p.volume))
        }
    }

    /// `TcFilling`: the filling policy for an order of `kind`, from the symbol's
    /// `SYMBOL_TRADE_EXEMODE` and `SYMBOL_FILLING_MODE`. Limit orders: RETURN. Market and stop
    /// orders: FOK if allowed, else IOC if allowed, else FOK under instant or request execution
    /// (always allowed there), else RETURN (exchange execution, or a symbol with no flag).
    fn filling(&self, symbol: &str, kind: ea::OrderKind) -> Filling {
        if matches!(kind, ea::OrderKind::BuyLimit | ea::OrderKind::SellLimit) {
            return Filling::Return;
        }
        let b = lock(&self.broker);
        let modes = b.symbol(symbol).map(|s| s.filling_modes).unwrap_or(0);
        if modes & SYMBOL_FILLING_FOK != 0 {
            Filling::Fok
        } else if modes & SYMBOL_FILLING_IOC != 0 {
            Filling::Ioc
        } else if b.config().execution.requotes() {
            Filling::Fok
        } else {
            Filling::Return
        }
    }

    /// `TcTypeTime`: the lifetime of a pending order from the symbol's `SYMBOL_EXPIRATION_MODE`
    /// (MT5 refuses a mode it does not flag with 10022) and the node's expiry, if any. With an
    /// expiry: SPECIFIED if allowed (exactly the node's), else SPECIFIED_DAY (the end of that
    /// server day), else DAY (the end of today), else GTC; the EA removes an order that would
    /// outlive the node's expiry itself ([`Terminal::expire_own_orders`]). Without one: GTC,
    /// else DAY. A symbol that flags nothing gets the old choice and the server's answer.
    fn type_time(&self, symbol: &str, expiration_ms: Option<i64>) -> (TypeTime, Option<i64>) {
        let modes = lock(&self.broker).symbol(symbol).map(|s| s.expiration_modes).unwrap_or(0);
        let has = |flag: u32| modes & flag != 0;
        let t = match expiration_ms {
            None if !has(SYMBOL_EXPIRATION_GTC) && has(SYMBOL_EXPIRATION_DAY) => TypeTime::Day,
            None => TypeTime::Gtc,
            Some(_) if has(SYMBOL_EXPIRATION_SPECIFIED) || modes == 0 => TypeTime::Specified,
            Some(_) if has(SYMBOL_EXPIRATION_SPECIFIED_DAY) => TypeTime::SpecifiedDay,
            Some(_) if has(SYMBOL_EXPIRATION_DAY) => TypeTime::Day,
            Some(_) => TypeTime::Gtc,
        };
        (t, expiration_ms)
    }

    /// `TcExpireOwn`, every cycle: removes the pending orders the EA placed with a longer
    /// lifetime than the node asked for once the node's expiry has passed. An order gone
    /// already (filled, expired, removed by hand) is forgotten; a removal refused (the market
    /// closed) is tried again [`EXPIRE_RETRY_MS`] later.
    fn expire_own_orders(&mut self) {
        if self.mem.own_expiries.is_empty() {
            return;
        }
        let now = self.market_ms();
        let login = self.cfg.login;
        let mut keep = Vec::new();
        for (ticket, at) in std::mem::take(&mut self.mem.own_expiries) {
            let order = lock(&self.broker)
                .orders(login)
                .unwrap_or_default()
                .into_iter()
                .find(|o| o.order_ticket == ticket);
            let Some(o) = order else { continue };
            if now < at {
                keep.push((ticket, at));
                continue;
            }
            let req = TradeRequest {
                action: TradeAction::Remove,
                order: Some(ticket),
                magic: o.magic,
                ..TradeRequest::market(&o.symbol, o.kind, o.volume)
            };
            let code = self.send(&req).map(|r| r.retcode).unwrap_or(0);
            if !retcode::is_success(code) && code != retcode::INVALID_ORDER {
                keep.push((ticket, now + EXPIRE_RETRY_MS));
            }
        }
        self.mem.own_expiries = keep;
    }

    /// `TcClosePosition`'s retries: a close answered with a requote (10004), "prices changed"
    /// (10020) or "no quotes" (10021) is sent again at the current price, at most
    /// [`CLOSE_ATTEMPTS`] times in all. A requoted close is not a decision, so it is not final.
    fn send_close(&mut self, req: &TradeRequest) -> Option<TradeResult> {
        let mut r = self.send(req);
        for _ in 1..CLOSE_ATTEMPTS {
            match &r {
                Some(res) if is_requote(res.retcode) => r = self.send(req),
                _ => break,
            }
        }
        r
    }

    /// `TcSelectPosition`: the open position whose `POSITION_IDENTIFIER` is `position_id`,
    /// found by walking the positions (`PositionGetTicket(i)`), and its `POSITION_TICKET`.
    fn position_ticket(&self, position_id: u64) -> Option<u64> {
        lock(&self.broker).position_ticket(self.cfg.login, position_id)
    }

    /// Closes the positions and deletes the pending orders with Tradecast's magic (or all with
    /// `everything`). Done when nothing of that scope is left; otherwise rejected with the first
    /// failure's retcode (the node sends it again).
    fn close_all(&mut self, order_id: &str, scope: CloseAllScope) -> Ack {
        let (positions, orders) = {
            let b = lock(&self.broker);
            (
                b.positions(self.cfg.login).unwrap_or_default(),
                b.orders(self.cfg.login).unwrap_or_default(),
            )
        };
        let input_magic = self.cfg.input_magic;
        let ours =
            |m: u64| scope == CloseAllScope::Everything || ea::is_tradecast_magic(m, input_magic);
        let magic = ea::magic(self.cfg.input_magic, 0);
        let mut first_failure: Option<u32> = None;
        for p in positions.iter().filter(|p| ours(p.magic)) {
            let req = self.close_request(p, None, magic, order_id);
            let r = self.send_close(&req);
            let code = r.map(|r| r.retcode).unwrap_or(0);
            if !retcode::is_success(code) {
                first_failure.get_or_insert(code);
            }
        }
        for o in orders.iter().filter(|o| ours(o.magic)) {
            let req = TradeRequest {
                action: TradeAction::Remove,
                order: Some(o.order_ticket),
                magic,
                ..TradeRequest::market(&o.symbol, o.kind, o.volume)
            };
            let r = self.send(&req);
            let code = r.map(|r| r.retcode).unwrap_or(0);
            if !retcode::is_success(code) {
                first_failure.get_or_insert(code);
            }
        }
        let (outcome, code) = match first_failure {
            None => (Outcome::Done, retcode::DONE),
            Some(c) if retcode::is_unknown(c) => (Outcome::Unknown, c),
            Some(c) => (Outcome::Rejected, c),
        };
        Ack {
            session_id: self.session_id_owned(),
            order_id: order_id.to_owned(),
            outcome,
            retcode: code,
            message: retcode::describe(code).to_owned(),
            found_by_lookup: false,
            order_ticket: None,
            deal_ticket: None,
            position_id: None,
            price: None,
            volume: None,
            time_ms: Some(self.market_ms()),
        }
    }

    /// The EA's own guard: when the node has been silent for `floor_silence_ms` and equity is
    /// below the floor, close Tradecast's positions and remember it for the next hello.
    fn enforce_floor_if_node_silent(&mut self) {
        let Some(floor) = self.mem.equity_floor else { return };
        if self.wall_ms() - self.mem.last_contact_wall_ms < self.cfg.floor_silence_ms {
            return;
        }
        let (equity, positions, orders) = {
            let b = lock(&self.broker);
            let Ok(info) = b.account_info(self.cfg.login) else { return };
            (
                info.equity,
                b.positions(self.cfg.login).unwrap_or_default(),
                b.orders(self.cfg.login).unwrap_or_default(),
            )
        };
        let ours: Vec<_> = positions
            .into_iter()
            .filter(|p| ea::is_tradecast_magic(p.magic, self.cfg.input_magic))
            .collect();
        // Tradecast's pending orders go too: one left would open a position after the floor.
        let our_orders: Vec<_> = orders
            .into_iter()
            .filter(|o| ea::is_tradecast_magic(o.magic, self.cfg.input_magic))
            .collect();
        if equity >= floor || (ours.is_empty() && our_orders.is_empty()) {
            self.mem.floor_failures = 0;
            self.mem.floor_next_wall_ms = 0;
            return;
        }
        // After closes that failed (10018 all weekend, …) the next attempt waits: 5 s doubling
        // to 5 min, jittered; not every cycle.
        if self.wall_ms() < self.mem.floor_next_wall_ms {
            return;
        }
        let magic = ea::magic(self.cfg.input_magic, 0);
        let (mut n_closed, mut n_removed, mut n_failed) = (0u32, 0u32, 0u32);
        for p in &ours {
            let req = self.close_request(p, None, magic, "equity-floor");
            match self.send_close(&req) {
                Some(r) if retcode::is_success(r.retcode) => n_closed += 1,
                _ => n_failed += 1,
            }
        }
        for o in &our_orders {
            let req = TradeRequest {
                action: TradeAction::Remove,
                order: Some(o.order_ticket),
                magic,
                ..TradeRequest::market(&o.symbol, o.kind, o.volume)
            };
            match self.send(&req) {
                Some(r) if retcode::is_success(r.retcode) => n_removed += 1,
                _ => n_failed += 1,
            }
        }
        tracing::warn!(target: "tradecast_sim::floor", %equity, %floor, n_closed, n_removed, n_failed, "equity below the floor while the node is silent: closed Tradecast's positions and deleted its pending orders");
        if n_failed > 0 {
            self.mem.floor_failures += 1;
            let wait = backoff_ms(
                self.mem.floor_failures,
                FLOOR_RETRY_FIRST_MS,
                FLOOR_RETRY_MAX_MS,
                &mut self.mem.jitter,
            );
            self.mem.floor_next_wall_ms = self.wall_ms() + wait;
        } else {
            self.mem.floor_failures = 0;
            self.mem.floor_next_wall_ms = 0;
        }
        self.stats.floor_breaches += 1;
        let prev = self.mem.floor_breach.take();
        self.mem.floor_breach = Some(FloorBreach {
            time_ms: prev.as_ref().map(|b| b.time_ms).unwrap_or_else(|| self.market_ms()),
            equity,
            floor,
            n_closed: n_closed + prev.as_ref().map(|b| b.n_closed).unwrap_or(0),
            n_failed,
        });
        // The breach is reported at the next hello.
        self.mem.session = None;
    }
}

fn empty_poll() -> PollAnswer {
    PollAnswer { orders: Vec::new(), commands: Vec::new(), equity_floor: None }
}

fn link_bar(
    symbol: &str,
    timeframe: Timeframe,
    bar: &tradecast_protocol::bars::Bar,
    time_ms: i64,
) -> LinkBar {
    LinkBar {
        symbol: symbol.to_owned(),
        timeframe,
        time_ms,
        open: bar.open,
        high: bar.high,
        low: bar.low,
        close: bar.close,
        tick_volume: 0,
        spread_points: None,
    }
}

fn found_ack(session_id: String, order_id: &str, f: Found) -> Ack {
    Ack {
        session_id,
        order_id: order_id.to_owned(),
        outcome: Outcome::Done,
        retcode: retcode::DONE,
        message: "found by magic look-up".to_owned(),
        found_by_lookup: true,
        order_ticket: f.order_ticket,
        deal_ticket: f.deal_ticket,
        position_id: f.position_id,
        price: f.price,
        volume: f.volume,
        time_ms: f.time_ms,
    }
}

/// 10004 requote, 10020 prices changed, 10021 no quotes: worth sending again at once.
fn is_requote(code: u32) -> bool {
    matches!(code, retcode::REQUOTE | retcode::PRICE_CHANGED | retcode::PRICE_OFF)
}

//! The seeded simulation of one node and one terminal: the node's sans-IO core
//! ([`Node::handle_call`]) on redb over a simulated disk, the sim's broker and its terminal (the
//! real EA logic of `tradecast_sim::terminal`, speaking the link through [`SimLink`] instead of
//! HTTP), simulated time (a [`ManualClock`] and the broker's bars), no tokio and no wall clock.
//!
//! A seed picks everything: the prices (a random walk with gaps through the stops), the signals
//! and the provider's closes, and the faults — the EA silent, the EA restarting, duplicate and
//! reordered deals pushes, requotes (10004, 10020, 10021), partial fills, timeouts after a fill,
//! the node crashing (after committing a call whose answer is then lost, or before committing
//! it) and restarting from what its disk had synced. After every terminal step the properties
//! are checked ([`Property`]); the first violation ends the seed with its step and words.
//!
//! Each property has a sabotage switch ([`Sabotage`]) that breaks the world on purpose, so a
//! test proves its checker fires. `tradecast node-sim --seeds A..B` runs a range.

mod disk;
mod link;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use tradecast_node::clock::{ManualClock, SeededIds};
use tradecast_node::policy::PolicySettings;
use tradecast_node::runtime::{self, Node, OrderAction, OrderState, Settings};
use tradecast_node::store::Store;
use tradecast_protocol::bars::Bar;
use tradecast_protocol::ea::{self, DealEntry, MarginMode, OrderKind, Timeframe};
use tradecast_protocol::{
    Body, ChainHash, DeviceKeys, EntryKind, HeaderFields, Identity, IndicatorValue, Record, Side,
    Signal, SignalId, StreamId,
};
use tradecast_sim::broker::{AccountConfig, Broker, BrokerConfig, SymbolConfig, TradeRequest};
use tradecast_sim::terminal::{Faults, SharedBroker, Terminal, TerminalConfig, lock};

pub use disk::SimDisk;
pub use link::SimLink;
use link::{LinkState, run_now};

/// The simulated account.
pub const LOGIN: u64 = 8_000_001;
/// The EA's magic input.
pub const MAGIC: u32 = 20_260_101;
const SYMBOL: &str = "EURUSD";
/// Wednesday 2026-03-04 12:00 UTC: the market is open for the whole run.
const START_MS: i64 = 1_772_625_600_000;
/// M1 bars.
const BAR_MS: i64 = 60_000;
/// The wall clock moves this much per terminal step (the EA's timer).
const STEP_WALL_MS: i64 = 500;
/// After the provider's close, a position of that signal may still be open this long on the
/// market clock (a requoted close is offered again after a backoff of up to a minute).
const CLOSE_GRACE_MS: i64 = 5 * 60_000;
/// Terminal steps per simulation step, at most.
const MAX_TERMINAL_STEPS: u64 = 3;

/// What is checked after every terminal step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Property {
    /// No order of the node is executed twice: at most one `in` deal per Tradecast order.
    NoDoubleExecution,
    /// Every fill is accounted: once the node has taken in everything, each Tradecast `in`
    /// deal's order is acked in the node, and the node's open positions are the broker's.
    EveryFillAccounted,
    /// No position of a signal is open (once the node has taken everything in, a grace on the
    /// market clock later) after the provider closed it.
    FlatAfterProviderClose,
    /// After the guard trips, the account has no Tradecast position after the next poll.
    GuardFlatWithinOnePoll,
    /// The node's balance and equity are the broker's after each completed step.
    EquityReconciles,
}

impl Property {
    /// Every property.
    pub const ALL: [Property; 5] = [
        Property::NoDoubleExecution,
        Property::EveryFillAccounted,
        Property::FlatAfterProviderClose,
        Property::GuardFlatWithinOnePoll,
        Property::EquityReconciles,
    ];

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Property::NoDoubleExecution => "no-double-execution",
            Property::EveryFillAccounted => "every-fill-accounted",
            Property::FlatAfterProviderClose => "flat-after-provider-close",
            Property::GuardFlatWithinOnePoll => "guard-flat-within-one-poll",
            Property::EquityReconciles => "equity-reconciles",
        }
    }
}

/// A switch that breaks the world on purpose so that one property's checker must fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// A broken EA: each order it fills is sent to the broker a second time with its magic.
    SendTwice,
    /// A hand of the broker opens a position with a Tradecast magic the node never made.
    ForeignFill,
    /// The link loses every `Close` command the node offers.
    DropCloses,
    /// The link loses every `CloseAll` command the node offers.
    DropCloseAll,
    /// The EA reports equity one unit higher than the broker's.
    SkewEquity,
}

impl Sabotage {
    /// Every switch.
    pub const ALL: [Sabotage; 5] = [
        Sabotage::SendTwice,
        Sabotage::ForeignFill,
        Sabotage::DropCloses,
        Sabotage::DropCloseAll,
        Sabotage::SkewEquity,
    ];

    /// The property this switch breaks.
    pub fn breaks(self) -> Property {
        match self {
            Sabotage::SendTwice => Property::NoDoubleExecution,
            Sabotage::ForeignFill => Property::EveryFillAccounted,
            Sabotage::DropCloses => Property::FlatAfterProviderClose,
            Sabotage::DropCloseAll => Property::GuardFlatWithinOnePoll,
            Sabotage::SkewEquity => Property::EquityReconciles,
        }
    }

    /// Its name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Sabotage::SendTwice => "send-twice",
            Sabotage::ForeignFill => "foreign-fill",
            Sabotage::DropCloses => "drop-closes",
            Sabotage::DropCloseAll => "drop-close-all",
            Sabotage::SkewEquity => "skew-equity",
        }
    }

    /// The switch named `s`.
    pub fn parse(s: &str) -> Option<Sabotage> {
        Sabotage::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// How one seed runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Simulation steps (each: an action picked by the seed, then one to three terminal steps).
    pub steps: u32,
    /// A switch that breaks one property on purpose.
    pub sabotage: Option<Sabotage>,
}

impl Default for Options {
    fn default() -> Self {
        Options { steps: 200, sabotage: None }
    }
}

/// What a seed did (all runs of a seed give the same figures).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Terminal steps run (properties were checked after each).
    pub terminal_steps: u64,
    /// Bars the broker replayed (gaps included).
    pub bars: u64,
    /// Gaps (a bar opening far from the last close).
    pub gaps: u64,
    /// Signals submitted.
    pub signals: u64,
    /// Tradecast `in` deals at the broker.
    pub fills: u64,
    /// Provider closes sent through the feed.
    pub provider_closes: u64,
    /// Guard trips.
    pub guard_trips: u64,
    /// Guard trips whose flat check ran (the others found send faults armed at the trip).
    pub guard_checks: u64,
    /// Node crashes (and restarts).
    pub node_crashes: u64,
    /// EA restarts.
    pub ea_restarts: u64,
    /// Steps of EA silence.
    pub silent_steps: u64,
    /// Deals pushes duplicated or reordered.
    pub deals_tampered: u64,
    /// Send faults armed (requotes, forced retcodes, partial fills, timeouts).
    pub send_faults: u64,
}

/// Why a seed failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// The simulation step.
    pub step: u32,
    /// The property, or `None` for a failure of the simulation itself.
    pub property: Option<Property>,
    /// In words.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = self.property.map_or("simulation", Property::as_str);
        write!(f, "seed {} step {}: {what}: {}", self.seed, self.step, self.detail)
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness of the world (the node's ids have their own seeded source).

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ---------------------------------------------------------------------------------------------
// The world.

/// The copy policy of the simulation: auto mode, the provider's lot as sent, no reward/risk or
/// price-move limits, a 15 % drawdown lock (gaps through the stops trip it), a daily loss limit
/// of 60 %.
fn sim_policy() -> PolicySettings {
    use tradecast_node::policy::{approval::ApprovalMode, sizing::LotMode};
    let mut p = PolicySettings::default();
    p.approval.mode = ApprovalMode::Auto;
    p.approval.consent_version = 1;
    p.lot = LotMode::Multiplier { factor: Decimal::ONE };
    p.min_rr = Decimal::ZERO;
    p.max_risk_pct = Decimal::ONE_HUNDRED;
    p.max_price_move_stop_fraction = Decimal::ZERO;
    p.risk.max_open_positions = 10;
    p.risk.max_open_per_symbol = 10;
    p.risk.drawdown_lock_pct = Decimal::from(15);
    // A run is hours of one server day: the default daily loss limit would skip every signal
    // after the first bad gap.
    p.risk.daily_loss_limit_pct = Decimal::from(60);
    p
}

fn settings() -> Settings {
    Settings {
        subscriptions: vec![(SYMBOL.to_owned(), Timeframe::M1)],
        ea_magic: MAGIC,
        policy: sim_policy(),
        ..Settings::default()
    }
}

struct World {
    seed: u64,
    opts: Options,
    rng: Rng,
    clock: ManualClock,
    broker: SharedBroker,
    disk: SimDisk,
    link: SimLink,
    terminal: Terminal<SimLink>,
    faults: Faults,
    provider: Identity,
    feed_seq: u64,
    /// The node stays down this many more steps after a crash.
    down_for: u32,
    restarts: u64,
    silent_for: u32,
    last_close: Decimal,
    bar_time: i64,
    /// Signals submitted, and the market time of each provider close.
    signals: Vec<SignalId>,
    closed: BTreeMap<SignalId, i64>,
    report: Report,
    sabotaged_orders: BTreeSet<u32>,
}

fn account_name() -> String {
    format!("{LOGIN}@{}", BrokerConfig::default().server)
}

fn sim_err(seed: u64, step: u32, detail: impl std::fmt::Display) -> Violation {
    Violation { seed, step, property: None, detail: detail.to_string() }
}

fn start_node(
    disk: &SimDisk,
    clock: &ManualClock,
    seed: u64,
    restarts: u64,
) -> Result<Arc<Node>, String> {
    let store = Store::open_backend(disk.clone()).map_err(|e| format!("store: {e}"))?;
    if store.read().map_err(|e| e.to_string())?.identity().map_err(|e| e.to_string())?.is_none() {
        runtime::init_store(&store).map_err(|e| format!("init: {e}"))?;
    }
    use tradecast_node::clock::Clock;
    let ids = SeededIds::new(seed ^ restarts.wrapping_mul(0xA24B_AED4_963E_E407));
    Node::with_sources(store, settings(), clock.wall_ms(), Box::new(clock.clone()), Box::new(ids))
        .map_err(|e| format!("node: {e}"))
}

fn provider_identity(seed: u64) -> Identity {
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    let mut r = Rng(seed ^ 0x5EED);
    for chunk in a.chunks_mut(8).chain(b.chunks_mut(8)) {
        chunk.copy_from_slice(&r.next().to_le_bytes());
    }
    Identity::from_secret_bytes(&a, &b)
}

impl World {
    fn new(seed: u64, opts: Options) -> Result<World, Violation> {
        let clock = ManualClock::at(START_MS);
        let mut broker = Broker::new(BrokerConfig::default());
        broker.add_symbol(SymbolConfig::forex(SYMBOL, 5));
        broker
            .open_account(AccountConfig {
                login: LOGIN,
                currency: "USD".into(),
                leverage: 100,
                margin_mode: MarginMode::Hedging,
                balance: Decimal::from(10_000),
            })
            .map_err(|e| sim_err(seed, 0, format!("account: {e}")))?;
        let broker: SharedBroker = Arc::new(Mutex::new(broker));
        let disk = SimDisk::default();
        let node = start_node(&disk, &clock, seed, 0).map_err(|e| sim_err(seed, 0, e))?;
        let faults = Faults::default();
        let link = SimLink {
            state: Arc::new(Mutex::new(LinkState {
                node: Some(node),
                sabotage: opts.sabotage,
                faults: faults.clone(),
                ..LinkState::default()
            })),
            clock: clock.clone(),
        };
        let mut tc = TerminalConfig::new("sim://node", "ea_sim", "sim secret", LOGIN);
        tc.input_magic = MAGIC;
        tc.poll_wait_override_ms = Some(0);
        tc.floor_silence_ms = 60_000;
        let terminal = Terminal::with_transport(tc, broker.clone(), faults.clone(), link.clone())
            .map_err(|e| sim_err(seed, 0, format!("terminal: {e}")))?;
        let mut w = World {
            seed,
            opts,
            rng: Rng(seed),
            clock,
            broker,
            disk,
            link,
            terminal,
            faults,
            provider: provider_identity(seed),
            feed_seq: 0,
            down_for: 0,
            restarts: 0,
            silent_for: 0,
            last_close: Decimal::new(110_000, 5),
            bar_time: START_MS - 20 * BAR_MS,
            signals: Vec::new(),
            closed: BTreeMap::new(),
            report: Report::default(),
            sabotaged_orders: BTreeSet::new(),
        };
        for _ in 0..20 {
            w.bar(false).map_err(|e| sim_err(seed, 0, e))?;
        }
        let keys = Body::DeviceKeys(DeviceKeys {
            identity: w.provider.identity_key(),
            sealing: w.provider.sealing_public_key(),
            label: "simulated provider".into(),
            at_ms: START_MS,
            account_fingerprint: None,
        });
        w.feed(StreamId::DEVICE, &keys).map_err(|e| sim_err(seed, 0, e))?;
        Ok(w)
    }

    fn node(&self) -> Option<Arc<Node>> {
        self.link.state().node.clone()
    }

    fn feed(&mut self, stream: StreamId, body: &Body) -> Result<(), String> {
        let Some(node) = self.node() else { return Ok(()) };
        self.feed_seq += 1;
        let fields = HeaderFields {
            stream,
            seq: self.feed_seq,
            prev_hash: ChainHash::GENESIS,
            created_at_ms: self.bar_time,
        };
        let record = Record::sign(&self.provider, fields, body);
        node.receive_feed(self.feed_seq, &record).map_err(|e| format!("feed: {e}"))?;
        Ok(())
    }

    /// One M1 bar: a random walk, or with `gap` an open far from the last close.
    fn bar(&mut self, gap: bool) -> Result<(), String> {
        let pip = Decimal::new(1, 4);
        let step = |r: &mut Rng, n: u64| Decimal::from(r.below(2 * n + 1) as i64 - n as i64) * pip;
        let mut open = self.last_close;
        if gap {
            let size = Decimal::from(100 + self.rng.below(300) as i64) * pip;
            open = if self.rng.chance(50) { open + size } else { open - size };
            self.report.gaps += 1;
        }
        let close = (open + step(&mut self.rng, 8)).max(Decimal::new(50_000, 5));
        let high = open.max(close) + step(&mut self.rng, 3).abs();
        let low = (open.min(close) - step(&mut self.rng, 3).abs()).max(Decimal::new(40_000, 5));
        self.bar_time += BAR_MS;
        let bar = Bar { time_unix_ms: self.bar_time, open, high, low, close };
        lock(&self.broker).on_bar(SYMBOL, &bar, 10, 60).map_err(|e| format!("bar: {e}"))?;
        self.last_close = close;
        self.clock.set(self.clock_after_bar());
        self.report.bars += 1;
        Ok(())
    }

    fn clock_after_bar(&self) -> i64 {
        use tradecast_node::clock::Clock;
        self.clock.wall_ms().max(self.bar_time + BAR_MS)
    }

    fn submit_signal(&mut self) -> Result<(), String> {
        let Some(node) = self.node() else { return Ok(()) };
        let Some(q) = lock(&self.broker).quote(SYMBOL) else { return Ok(()) };
        let buy = self.rng.chance(50);
        let pip = Decimal::new(1, 4);
        // Most stops are near (a gap goes through them); one in four is wide, so a gap can
        // take equity under the guard's floor with the position still open.
        let pips =
            if self.rng.chance(25) { 200 + self.rng.below(300) } else { 10 + self.rng.below(30) };
        let dist = Decimal::from(pips as i64) * pip;
        let entry = if buy { q.ask } else { q.bid };
        let (stop, tp) =
            if buy { (entry - dist, entry + dist) } else { (entry + dist, entry - dist) };
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.seed.to_le_bytes());
        id[8..].copy_from_slice(&(self.report.signals + 1).to_le_bytes());
        let signal = Signal {
            id: SignalId(id),
            provider: self.provider.device_id(),
            strategy_id: "sim".into(),
            strategy_version: 1,
            symbol: SYMBOL.into(),
            timeframe: tradecast_protocol::Timeframe::M1,
            side: if buy { Side::Buy } else { Side::Sell },
            entry_kind: EntryKind::Market,
            entry,
            stop,
            tp1: tp,
            tp2: None,
            bar_time_ms: self.bar_time,
            expires_at_ms: self.bar_time + BAR_MS * (2 + self.rng.below(30) as i64),
            leg: 1,
            indicators: vec![IndicatorValue { name: "rsi".into(), value: Decimal::from(30) }],
            rr: Decimal::ONE,
        };
        let volume = Decimal::new(10 + self.rng.below(290) as i64, 2);
        let account = account_name();
        if node.account(&account).map_err(|e| e.to_string())?.is_none() {
            return Ok(());
        }
        node.handle_submitted_signal(&account, signal, true, Some(volume))
            .map_err(|e| format!("submit: {e}"))?;
        self.signals.push(SignalId(id));
        self.report.signals += 1;
        Ok(())
    }

    fn provider_close(&mut self) -> Result<(), String> {
        let Some(node) = self.node() else { return Ok(()) };
        // Mostly a signal with a position open here (wide stops would otherwise pile up to
        // the policy's position limit), sometimes any signal not closed yet.
        let held: BTreeSet<SignalId> = node
            .positions(&account_name())
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|p| p.open)
            .filter_map(|p| p.signal_id)
            .collect();
        let mut open: Vec<SignalId> =
            self.signals.iter().filter(|s| !self.closed.contains_key(s)).copied().collect();
        if self.rng.chance(80) && open.iter().any(|s| held.contains(s)) {
            open.retain(|s| held.contains(s));
        }
        if open.is_empty() {
            return Ok(());
        }
        let id = open[self.rng.below(open.len() as u64) as usize];
        let close = tradecast_protocol::Close {
            signal_id: id,
            fraction: Decimal::ONE,
            price: None,
            reason: "provider".into(),
            at_ms: self.bar_time,
        };
        self.feed(StreamId::SIGNALS, &Body::Close(close))?;
        let market = lock(&self.broker).time_ms();
        self.closed.insert(id, market);
        self.report.provider_closes += 1;
        Ok(())
    }

    fn crash_node(&mut self) {
        let mut st = self.link.state();
        match self.rng.below(3) {
            0 => {
                st.node = None;
                st.crashed = true;
            }
            1 => st.crash_after_next_call = true,
            _ => st.crash_before_next_call = true,
        }
        drop(st);
        self.down_for = self.rng.below(3) as u32;
    }

    /// A crashed node's disk loses what it had not synced; the node starts again on it.
    fn restart_node_if_due(&mut self) -> Result<(), String> {
        let crashed = std::mem::take(&mut self.link.state().crashed);
        if crashed {
            self.disk.crash();
            self.report.node_crashes += 1;
            self.restarts += 1;
        }
        if self.link.state().node.is_some() {
            return Ok(());
        }
        if self.down_for > 0 {
            self.down_for -= 1;
            return Ok(());
        }
        self.disk.reboot();
        let node = start_node(&self.disk, &self.clock, self.seed, self.restarts)?;
        self.link.state().node = Some(node);
        Ok(())
    }

    fn arm_send_fault(&mut self) {
        // One armed at a time, as a broker has them: faults piled up while nothing was sent
        // would hit one close after another (halving a position below the volume step).
        if self.link.state().trip.is_some() || self.faults.pending_send_faults() > 0 {
            return;
        }
        match self.rng.below(5) {
            0 => self.faults.requote_next(1 + self.rng.below(3) as u32),
            1 => self.faults.force_retcode([10004, 10020, 10021][self.rng.below(3) as usize]),
            2 => self.faults.partial_fill(Decimal::new(5, 1)),
            // A forced refusal of another kind hits whichever send comes next, a close too,
            // which no broker refuses for money: the refusals are the requotes above.
            _ => self.faults.timeout_after_fill(self.rng.chance(50)),
        }
        self.report.send_faults += 1;
    }

    fn sabotage_world(&mut self) {
        let Some(s) = self.opts.sabotage else { return };
        match s {
            Sabotage::SendTwice => {
                // Every Tradecast entry the EA made is sent again with its magic.
                let deals = lock(&self.broker).deals(LOGIN, i64::MIN, i64::MAX).unwrap_or_default();
                for d in deals {
                    let no = ea::split_magic(d.magic).1;
                    if d.entry == DealEntry::In
                        && ea::is_tradecast_magic(d.magic, MAGIC)
                        && self.sabotaged_orders.insert(no)
                    {
                        let kind = if d.kind == ea::DealKind::Buy {
                            OrderKind::Buy
                        } else {
                            OrderKind::Sell
                        };
                        let req = TradeRequest {
                            magic: d.magic,
                            ..TradeRequest::market(SYMBOL, kind, d.volume)
                        };
                        let _ = lock(&self.broker).send(LOGIN, &req);
                    }
                }
            }
            Sabotage::ForeignFill => {
                if self.report.terminal_steps == 20 {
                    let req = TradeRequest {
                        magic: ea::magic(MAGIC, 999_999),
                        ..TradeRequest::market(SYMBOL, OrderKind::Buy, Decimal::new(1, 1))
                    };
                    let _ = lock(&self.broker).send(LOGIN, &req);
                }
            }
            Sabotage::DropCloses | Sabotage::DropCloseAll | Sabotage::SkewEquity => {}
        }
    }

    fn step(&mut self, step: u32) -> Result<(), Violation> {
        let seed = self.seed;
        let e = |d: String| sim_err(seed, step, d);
        self.restart_node_if_due().map_err(e)?;
        let roll = self.rng.below(100);
        match roll {
            0..=34 => self.bar(false).map_err(e)?,
            35..=37 => self.bar(true).map_err(e)?,
            38..=49 => self.submit_signal().map_err(e)?,
            50..=55 => self.provider_close().map_err(e)?,
            56..=58 => self.silent_for = 1 + self.rng.below(6) as u32,
            59..=60 => {
                self.faults.crash();
                self.report.ea_restarts += 1;
            }
            61..=62 => self.crash_node(),
            63..=72 => self.arm_send_fault(),
            73..=75 => {
                let mut st = self.link.state();
                if self.rng.chance(50) {
                    st.duplicate_next_deals = true;
                } else {
                    st.reorder_next_deals = true;
                }
                self.report.deals_tampered += 1;
            }
            76..=77 => {
                if let Some(node) = self.node()
                    && node.account(&account_name()).ok().flatten().is_some_and(|a| a.locked)
                    && self.link.state().trip.is_none()
                {
                    node.unlock(&account_name()).map_err(|x| e(x.to_string()))?;
                }
            }
            _ => {}
        }
        self.faults.set_silent(self.silent_for > 0);
        if self.silent_for > 0 {
            self.silent_for -= 1;
            self.report.silent_steps += 1;
        }
        let n = 1 + self.rng.below(MAX_TERMINAL_STEPS);
        for _ in 0..n {
            self.clock.advance(STEP_WALL_MS);
            let polls_before = self.link.state().polls_answered;
            self.sabotage_world();
            let result = run_now(self.terminal.step())
                .ok_or_else(|| e("a terminal step waited: the simulation never waits".into()))?;
            self.report.terminal_steps += 1;
            self.check(step, result.is_ok(), polls_before)?;
        }
        Ok(())
    }

    fn violation(&self, step: u32, property: Property, detail: String) -> Violation {
        Violation { seed: self.seed, step, property: Some(property), detail }
    }

    /// The properties, after a terminal step (`ok`: the step reached its end).
    fn check(&mut self, step: u32, ok: bool, polls_before: u64) -> Result<(), Violation> {
        let account = account_name();
        let (deals, positions, info, market) = {
            let b = lock(&self.broker);
            (
                b.deals(LOGIN, i64::MIN, i64::MAX).unwrap_or_default(),
                b.positions(LOGIN).unwrap_or_default(),
                b.account_info(LOGIN).ok(),
                b.time_ms(),
            )
        };
        // No order executed twice.
        let mut entries: BTreeMap<u32, u32> = BTreeMap::new();
        for d in deals
            .iter()
            .filter(|d| d.entry == DealEntry::In && ea::is_tradecast_magic(d.magic, MAGIC))
        {
            *entries.entry(ea::split_magic(d.magic).1).or_default() += 1;
        }
        self.report.fills = entries.values().map(|n| u64::from(*n)).sum();
        if let Some((no, n)) = entries.iter().find(|(_, n)| **n > 1) {
            return Err(self.violation(
                step,
                Property::NoDoubleExecution,
                format!("order number {no} has {n} entry deals at the broker"),
            ));
        }
        let ours: Vec<&ea::Position> =
            positions.iter().filter(|p| ea::is_tradecast_magic(p.magic, MAGIC)).collect();
        // The guard: flat after the first poll that followed its trip.
        let trip = self.link.state().trip;
        if let Some((polls_at_trip, faults_armed)) = trip {
            let polls = self.link.state().polls_answered;
            if polls > polls_at_trip && polls > polls_before && ok {
                self.link.state().trip = None;
                self.report.guard_trips = self.link.state().trips;
                if !faults_armed {
                    self.report.guard_checks += 1;
                    if !ours.is_empty() {
                        return Err(self.violation(step, Property::GuardFlatWithinOnePoll, format!(
                            "{} Tradecast position(s) still open after the poll that followed the guard's trip",
                            ours.len()
                        )));
                    }
                }
            }
        }
        self.report.guard_trips = self.link.state().trips;
        let Some(node) = self.node() else { return Ok(()) };
        if !ok || self.faults.is_silent() {
            return Ok(());
        }
        // Equity and balance: the node's last state push is the broker's now.
        let row = node.account(&account).map_err(|x| sim_err(self.seed, step, x))?;
        if let (Some(row), Some(info)) = (&row, &info)
            && (row.balance != Some(info.balance) || row.equity != Some(info.equity))
        {
            return Err(self.violation(
                step,
                Property::EquityReconciles,
                format!(
                    "node balance {:?} equity {:?}, broker balance {} equity {}",
                    row.balance, row.equity, info.balance, info.equity
                ),
            ));
        }
        if !self.terminal.caught_up() {
            return Ok(());
        }
        // Every fill accounted, once everything is taken in.
        let orders = node.orders(&account).map_err(|x| sim_err(self.seed, step, x))?;
        let by_no: BTreeMap<u32, &runtime::OrderRow> =
            orders.iter().map(|o| (o.order_no, o)).collect();
        for no in entries.keys() {
            match by_no.get(no) {
                Some(o)
                    if o.state == OrderState::Acked && matches!(o.action, OrderAction::Open(_)) => {
                }
                Some(o) => {
                    return Err(self.violation(
                        step,
                        Property::EveryFillAccounted,
                        format!(
                            "order {} (number {no}) filled at the broker, {} in the node",
                            o.order_id,
                            o.state.as_str()
                        ),
                    ));
                }
                None => {
                    return Err(self.violation(
                        step,
                        Property::EveryFillAccounted,
                        format!("an entry deal with order number {no} the node has no order for"),
                    ));
                }
            }
        }
        let node_open: BTreeMap<u64, Decimal> = node
            .positions(&account)
            .map_err(|x| sim_err(self.seed, step, x))?
            .into_iter()
            .filter(|p| p.open)
            .map(|p| (p.position_id, p.volume))
            .collect();
        let broker_open: BTreeMap<u64, Decimal> =
            ours.iter().map(|p| (p.position_id, p.volume)).collect();
        if node_open != broker_open {
            return Err(self.violation(
                step,
                Property::EveryFillAccounted,
                format!("open positions: node {node_open:?}, broker {broker_open:?}"),
            ));
        }
        // No position of a signal the provider closed, a grace later.
        for p in &ours {
            let no = ea::split_magic(p.magic).1;
            let Some(signal) = by_no.get(&no).and_then(|o| o.signal_id) else { continue };
            if let Some(at) = self.closed.get(&signal)
                && market > at + CLOSE_GRACE_MS
            {
                let theirs: Vec<String> = orders
                    .iter()
                    .filter(|o| o.signal_id == Some(signal))
                    .map(|o| {
                        format!(
                            "{} {:?} {} ({})",
                            o.order_no,
                            o.action,
                            o.state.as_str(),
                            o.explained
                        )
                    })
                    .collect();
                return Err(self.violation(
                    step,
                    Property::FlatAfterProviderClose,
                    format!(
                        "position {} of signal {} open {} s after the provider closed it; the \
                     node's orders of that signal: {}",
                        p.position_id,
                        signal.to_hex(),
                        (market - at) / 1_000,
                        theirs.join("; ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Runs one seed; its report, or the first violation.
pub fn run_seed(seed: u64, opts: &Options) -> Result<Report, Violation> {
    let mut w = World::new(seed, *opts)?;
    for step in 1..=opts.steps {
        w.step(step)?;
    }
    Ok(w.report)
}

/// Whether a property's checker fires under its sabotage switch: the first seed in `seeds`
/// whose run breaks `sabotage.breaks()`.
pub fn sabotage_fires(
    sabotage: Sabotage,
    seeds: std::ops::Range<u64>,
    steps: u32,
) -> Option<Violation> {
    let opts = Options { steps, sabotage: Some(sabotage) };
    seeds.into_iter().find_map(|seed| match run_seed(seed, &opts) {
        Err(v) if v.property == Some(sabotage.breaks()) => Some(v),
        _ => None,
    })
}

impl Report {
    /// Adds another seed's figures.
    pub fn add(&mut self, r: &Report) {
        self.terminal_steps += r.terminal_steps;
        self.bars += r.bars;
        self.gaps += r.gaps;
        self.signals += r.signals;
        self.fills += r.fills;
        self.provider_closes += r.provider_closes;
        self.guard_trips += r.guard_trips;
        self.guard_checks += r.guard_checks;
        self.node_crashes += r.node_crashes;
        self.ea_restarts += r.ea_restarts;
        self.silent_steps += r.silent_steps;
        self.deals_tampered += r.deals_tampered;
        self.send_faults += r.send_faults;
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "terminal steps {}, bars {} ({} gaps), signals {}, fills {}, provider closes {}, \
             guard trips {} ({} checked flat), node crashes {}, EA restarts {}, silent steps {}, \
             deals pushes tampered {}, send faults {}",
            self.terminal_steps,
            self.bars,
            self.gaps,
            self.signals,
            self.fills,
            self.provider_closes,
            self.guard_trips,
            self.guard_checks,
            self.node_crashes,
            self.ea_restarts,
            self.silent_steps,
            self.deals_tampered,
            self.send_faults
        )
    }
}

//! The deterministic simulator of the sync session (protocol.md, "What the simulator must
//! prove").
//!
//! One `u64` seed drives everything: a node and a hub, each a [`NodeSession`]/[`HubSession`]
//! over a durable store, talk over a link that drops, duplicates, reorders, delays and corrupts
//! frames; either side crashes and restarts keeping only what it had committed; the node is
//! sometimes restored from an older backup; an adversary injects equivocating records (validly
//! signed, same `seq`, other content) and tampers with record bytes inside well-formed frames.
//! Then the faults stop and the run must converge. For every seed it checks:
//!
//! 1. every record the node appended is committed at the hub exactly once, in order, and the
//!    stored chain verifies with the node's key;
//! 2. downstream, per source (the provider's relay log, shared, where some entries are for other
//!    devices; the device's inbox): the node commits exactly the entries meant for it, each once,
//!    in log order, every one the hub's, and never one meant for another device — whatever the
//!    hub's batched cursor writes lost in a crash;
//! 3. every injected equivocation raised its alarm at once, and no alarm was raised otherwise;
//! 4. every corrupted or tampered frame was refused (a violation closed the session, or the
//!    record was dropped as a harmless duplicate/gap) and nothing tampered was ever committed;
//!    no violation without tampering;
//! 5. nothing panicked, and the stores' constraints (append in order, idempotent duplicates)
//!    never fired.
//!
//! [`Sabotage`] breaks one property on purpose so tests can see each checker fire. Records are
//! signed once per process and signature checks are memoized ([`MemoCheck`]) so thousands of
//! seeds run in seconds even in debug builds. Pure: seeded RNG, simulated time, no I/O.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Mutex, OnceLock};

use chacha20::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use rust_decimal::Decimal;

use crate::chain::ChainTip;
use crate::domain::{EntryKind, EquityPoint, Side, Signal, SignalId, Timeframe};
use crate::hash::ChainHash;
use crate::identity::{Identity, IdentityKey};
use crate::record::{Body, HeaderFields, Record, StreamId, VerifyError};
use crate::seal::StreamKey;
use crate::session::wire::{self, FeedItemWire, Message};
use crate::session::{
    Alarm, Backoff, CloseReason, FeedItem, HubAction, HubEvent, HubSession, HubSetup, LocalSource,
    LocalStream, LogEntry, NodeAction, NodeEvent, NodeSession, NodeSetup, RecordCheck,
    SessionConfig, Source, SourceStart, StoredStream,
};

/// A property broken on purpose, to see its checker fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sabotage {
    /// The hub's store keeps a record twice.
    HubCommitsTwice,
    /// The hub's store loses one record but reports it committed.
    HubLosesCommit,
    /// The node's store commits feed items without order (swaps two).
    NodeReordersFeed,
    /// A restored node appends before it learnt its tips.
    NodeAppendsBeforeTips,
    /// The hub's equivocation alarms are swallowed.
    HideEquivocationAlarm,
    /// The hub's store keeps a tampered copy of a record.
    HubStoresTampered,
    /// Violations caused by corrupted frames are swallowed (the session is not closed).
    IgnoreCorruption,
    /// The simulation panics midway.
    Panic,
    /// The hub's driver never hands over one entry meant for the device (a skipped item).
    HubSkipsItem,
    /// After a crash the hub's relay log holds another record at a seq the node already has.
    HubRenumbers,
}

impl Sabotage {
    pub const ALL: [Sabotage; 10] = [
        Sabotage::HubCommitsTwice,
        Sabotage::HubLosesCommit,
        Sabotage::NodeReordersFeed,
        Sabotage::NodeAppendsBeforeTips,
        Sabotage::HideEquivocationAlarm,
        Sabotage::HubStoresTampered,
        Sabotage::IgnoreCorruption,
        Sabotage::Panic,
        Sabotage::HubSkipsItem,
        Sabotage::HubRenumbers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sabotage::HubCommitsTwice => "hub-commits-twice",
            Sabotage::HubLosesCommit => "hub-loses-commit",
            Sabotage::NodeReordersFeed => "node-reorders-feed",
            Sabotage::NodeAppendsBeforeTips => "node-appends-before-tips",
            Sabotage::HideEquivocationAlarm => "hide-equivocation-alarm",
            Sabotage::HubStoresTampered => "hub-stores-tampered",
            Sabotage::IgnoreCorruption => "ignore-corruption",
            Sabotage::Panic => "panic",
            Sabotage::HubSkipsItem => "hub-skips-item",
            Sabotage::HubRenumbers => "hub-renumbers",
        }
    }

    pub fn parse(name: &str) -> Option<Sabotage> {
        Sabotage::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Knobs of one run. [`SimOptions::for_seed`] derives everything else from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    pub seed: u64,
    pub sabotage: Option<Sabotage>,
    /// No faults at all (throughput measurement).
    pub calm: bool,
    /// Record a trace of events (printed on failure by the runner).
    pub trace: bool,
}

impl SimOptions {
    pub fn for_seed(seed: u64) -> SimOptions {
        SimOptions { seed, sabotage: None, calm: false, trace: false }
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    pub seed: u64,
    pub events: u64,
    pub sim_time_ms: i64,
    pub records_committed: u64,
    pub feed_committed: u64,
    /// Downstream entries meant for the device (the rest of the shared log is for others).
    pub feed_meant: u64,
    pub frames_sent: u64,
    pub connections: u64,
    pub crashes: u64,
    pub restores: u64,
    pub equivocations_injected: u64,
    pub tampered_frames: u64,
    pub violations_caught: u64,
}

/// A seed that broke a property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFailure {
    pub seed: u64,
    pub property: String,
    /// The last trace lines, when tracing was on.
    pub trace: Vec<String>,
}

impl core::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "seed {}: {}", self.seed, self.property)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared, memoized material: identities, signed records, signature checks.

const NODE_IDENTITIES: usize = 2;
const PROVIDER: usize = NODE_IDENTITIES;
const HUB: usize = NODE_IDENTITIES + 1;

fn identities() -> &'static [Identity] {
    static IDS: OnceLock<Vec<Identity>> = OnceLock::new();
    IDS.get_or_init(|| {
        (0..=HUB)
            .map(|i| Identity::generate(&mut ChaCha8Rng::seed_from_u64(0x5eed_0000 + i as u64)))
            .collect()
    })
}

static SIGNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static VERIFIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many records this process signed and verified for real (memo misses), for the
/// throughput figures.
pub fn crypto_counters() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (SIGNED.load(Relaxed), VERIFIED.load(Relaxed))
}

type RecordKey = (usize, u32, u64, [u8; 32], u32);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The record `author` writes at (stream, seq) after `prev`, content `variant`. Deterministic
/// (Ed25519 signatures and the seeded nonce are), memoized per process.
pub fn sim_record(
    author: usize,
    stream: StreamId,
    seq: u64,
    prev: ChainHash,
    variant: u32,
) -> Record {
    static MEMO: OnceLock<Mutex<HashMap<RecordKey, Record>>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let key = (author, stream.0, seq, prev.0, variant);
    if let Some(r) = lock(memo).get(&key) {
        return r.clone();
    }
    SIGNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let identity = &identities()[author];
    let fields = HeaderFields {
        stream,
        seq,
        prev_hash: prev,
        created_at_ms: 1_764_000_000_000 + seq as i64,
    };
    let tag = u64::from(variant) << 32 | seq;
    let record = if stream == StreamId::PRIVATE {
        let body = Body::EquityPoint(EquityPoint {
            device: identity.device_id(),
            at_ms: fields.created_at_ms,
            balance: Decimal::new(1_000_000 + tag as i64 % 1000, 2),
            equity: Decimal::new(999_000 + seq as i64, 2),
        });
        let key = StreamKey::derive(identity, &identity.device_id(), stream);
        let mut rng = ChaCha8Rng::seed_from_u64(tag ^ (author as u64) << 56);
        Record::sign_sealed(identity, fields, &body, &key, &mut rng)
    } else {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&tag.to_be_bytes());
        id[8] = author as u8;
        id[9..13].copy_from_slice(&stream.0.to_be_bytes());
        let body = Body::Signal(Signal {
            id: SignalId(id),
            provider: identity.device_id(),
            strategy_id: "fib-rsi".into(),
            strategy_version: 1,
            symbol: "EURUSD".into(),
            timeframe: Timeframe::H1,
            side: if seq.is_multiple_of(2) { Side::Buy } else { Side::Sell },
            entry_kind: EntryKind::Market,
            entry: Decimal::new(108_250 + tag as i64 % 97, 5),
            stop: Decimal::new(108_010, 5),
            tp1: Decimal::new(108_610, 5),
            tp2: None,
            bar_time_ms: fields.created_at_ms,
            expires_at_ms: fields.created_at_ms + 3_600_000,
            leg: 1,
            indicators: Vec::new(),
            rr: Decimal::new(15, 1),
        });
        Record::sign(identity, fields, &body)
    };
    lock(memo).insert(key, record.clone());
    record
}

/// A [`RecordCheck`] that verifies each distinct (key, header, signature) once per process.
/// Author and body hash are checked every time; only the Ed25519 verification is memoized,
/// which is sound because it is a pure function of those bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoCheck;

impl RecordCheck for MemoCheck {
    fn verify(&mut self, record: &Record, key: &IdentityKey) -> Result<(), VerifyError> {
        type Memo = Mutex<HashMap<[u8; 32], Result<(), VerifyError>>>;
        static MEMO: OnceLock<Memo> = OnceLock::new();
        let memo = MEMO.get_or_init(Default::default);
        if key.device_id() != record.header().author {
            return record.verify(key);
        }
        if ChainHash::of(record.body_bytes()) != record.header().body_hash {
            return Err(VerifyError::BodyHashMismatch);
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&key.to_bytes());
        hasher.update(record.header_bytes());
        hasher.update(&record.signature().0);
        let memo_key = *hasher.finalize().as_bytes();
        if let Some(result) = lock(memo).get(&memo_key) {
            return result.clone();
        }
        VERIFIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = record.verify(key);
        lock(memo).insert(memo_key, result.clone());
        result
    }
}

// ---------------------------------------------------------------------------------------------
// The world.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side2 {
    Node,
    Hub,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    None,
    /// Random bytes flipped (the frame check must catch it).
    Corrupt,
    /// A record inside re-encoded with a changed byte, frame check valid.
    Record,
    /// A validly signed conflicting record (equivocation).
    Equivocation,
}

#[derive(Debug)]
enum Ev {
    Deliver { to: Side2, conn: u64, bytes: Vec<u8>, tamper: Tamper },
    Timer { side: Side2, conn: u64, at: i64 },
    HubCommitDone { epoch: u64, conn: u64, record: Record },
    NodeFeedCommitDone { epoch: u64, conn: u64, source: Source, item: FeedItem },
    Append { stream: StreamId },
    FeedAppend { source: Source },
    FlushCursors { epoch: u64 },
    Crash { side: Side2, restore: bool },
    Restart { side: Side2 },
    Connect,
    InjectEquivocation,
    InjectFeedEquivocation,
    Calm,
    CheckConverged,
}

#[derive(Clone)]
struct NodeStore {
    /// Records durably in the outbox, by stream and seq.
    streams: BTreeMap<StreamId, BTreeMap<u64, Record>>,
    /// The tip each stream continues from (differs from the last record after adopting).
    tips: BTreeMap<StreamId, (u64, ChainHash)>,
    /// Committed items per source, in `seq` order.
    feeds: BTreeMap<Source, Vec<(u64, Record)>>,
    quarantined_sources: BTreeSet<Source>,
}

struct HubStore {
    streams: BTreeMap<StreamId, Vec<Record>>,
    quarantined: BTreeSet<StreamId>,
    /// Each source's log (index = seq - 1): the record and whether it is meant for the device.
    logs: BTreeMap<Source, Vec<(Record, bool)>>,
    /// Cursors as persisted; `cursor_batch` holds acks not yet written (lost in a crash).
    cursors: BTreeMap<Source, u64>,
    cursor_batch: BTreeMap<Source, u64>,
    flush_scheduled: bool,
}

/// The provider's relay log and the device's inbox, the two sources of every run.
fn sim_sources() -> [Source; 2] {
    [Source::Relay(identities()[PROVIDER].device_id()), Source::Inbox]
}

/// Who writes the records of a source (the hub writes the inbox).
fn source_author(source: Source) -> usize {
    match source {
        Source::Relay(_) => PROVIDER,
        Source::Inbox => HUB,
    }
}

/// The stream a source's records are chained on.
fn source_stream(source: Source) -> StreamId {
    match source {
        Source::Relay(_) => StreamId::SIGNALS,
        Source::Inbox => StreamId::HUB_REQUESTS,
    }
}

struct World {
    opt: SimOptions,
    rng: ChaCha8Rng,
    now: i64,
    queue: BinaryHeap<Reverse<(i64, u64)>>,
    events: HashMap<u64, Ev>,
    next_event: u64,
    cfg: SessionConfig,
    author: usize,
    // link faults
    p_drop: u32,
    p_dup: u32,
    p_corrupt: u32,
    p_tamper: u32,
    latency_ms: i64,
    jitter_ms: i64,
    calm: bool,
    // processes
    node_up: bool,
    hub_up: bool,
    node_epoch: u64,
    hub_epoch: u64,
    node_inflight: u64,
    hub_inflight: u64,
    node_commit_tail: i64,
    hub_commit_tail: i64,
    node_restored: bool,
    node_tips_known: bool,
    variant: u32,
    conn: u64,
    node: Option<NodeSession<MemoCheck>>,
    hub: Option<HubSession<MemoCheck>>,
    node_timer: Option<i64>,
    hub_timer: Option<i64>,
    connect_scheduled: bool,
    backoff: Backoff,
    // durable state
    ns: NodeStore,
    hs: HubStore,
    /// Snapshots of the node's store, the backups a restore picks from.
    backups: Vec<NodeStore>,
    // plan
    appends_left: BTreeMap<StreamId, u64>,
    feed_left: u64,
    /// The relay entry the sabotaged driver skips.
    skipped: Option<u64>,
    // expectations and findings
    expected_alarms: u64,
    alarms_seen: u64,
    sabotage_fired: bool,
    report: SimReport,
    trace: Vec<String>,
    failure: Option<String>,
}

const CHAOS_MS: i64 = 30_000;
const CALM_LIMIT_MS: i64 = 180_000;

impl World {
    fn new(opt: SimOptions) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(opt.seed);
        let calm = opt.calm;
        let pick = |rng: &mut ChaCha8Rng, n: u64| rng.next_u64() % n.max(1);
        let cfg = SessionConfig {
            window: 1 + pick(&mut rng, 48),
            batch_records: 1 + pick(&mut rng, 24) as usize,
            batch_bytes: 1024 + pick(&mut rng, 64 * 1024) as usize,
            retransmit_ms: 300 + pick(&mut rng, 2000) as i64,
            hello_retry_ms: 500 + pick(&mut rng, 2000) as i64,
            heartbeat_ms: 2_000 + pick(&mut rng, 3000) as i64,
            dead_after_ms: 8_000 + pick(&mut rng, 8000) as i64,
            recent_hashes: 4096,
        };
        let author = pick(&mut rng, NODE_IDENTITIES as u64) as usize;
        let faulty = !calm;
        let mut w = World {
            opt,
            cfg,
            author,
            p_drop: if faulty { pick(&mut rng, 250) as u32 } else { 0 },
            p_dup: if faulty { pick(&mut rng, 150) as u32 } else { 0 },
            p_corrupt: if faulty && pick(&mut rng, 3) == 0 { pick(&mut rng, 30) as u32 } else { 0 },
            p_tamper: if faulty && pick(&mut rng, 3) == 0 { pick(&mut rng, 60) as u32 } else { 0 },
            latency_ms: 1 + pick(&mut rng, 60) as i64,
            jitter_ms: if faulty { pick(&mut rng, 400) as i64 } else { 0 },
            calm,
            rng,
            now: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            node_up: true,
            hub_up: true,
            node_epoch: 0,
            hub_epoch: 0,
            node_inflight: 0,
            hub_inflight: 0,
            node_commit_tail: 0,
            hub_commit_tail: 0,
            node_restored: false,
            node_tips_known: true,
            variant: 0,
            conn: 0,
            node: None,
            hub: None,
            node_timer: None,
            hub_timer: None,
            connect_scheduled: false,
            backoff: Backoff::new(50, 5_000),
            ns: NodeStore {
                streams: BTreeMap::new(),
                tips: BTreeMap::new(),
                feeds: BTreeMap::new(),
                quarantined_sources: BTreeSet::new(),
            },
            hs: HubStore {
                streams: BTreeMap::new(),
                quarantined: BTreeSet::new(),
                logs: sim_sources().into_iter().map(|s| (s, Vec::new())).collect(),
                cursors: BTreeMap::new(),
                cursor_batch: BTreeMap::new(),
                flush_scheduled: false,
            },
            backups: Vec::new(),
            appends_left: BTreeMap::new(),
            feed_left: 0,
            skipped: None,
            expected_alarms: 0,
            alarms_seen: 0,
            sabotage_fired: false,
            report: SimReport { seed: opt.seed, ..SimReport::default() },
            trace: Vec::new(),
            failure: None,
        };
        w.backups.push(w.ns.clone());
        w.plan();
        w
    }

    fn roll(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && (self.rng.next_u32() % 1000) < per_mille
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn schedule(&mut self, at: i64, ev: Ev) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, ev);
        self.queue.push(Reverse((at.max(self.now), id)));
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.opt.trace {
            let line = format!("{:>7} {}", self.now, line());
            self.trace.push(line);
        }
    }

    fn fail(&mut self, property: String) {
        if self.failure.is_none() {
            self.log(|| format!("FAIL {property}"));
            self.failure = Some(property);
        }
    }

    fn plan(&mut self) {
        let signals = if self.calm { 100 } else { self.below(25) };
        let private = if self.calm { 50 } else { self.below(13) };
        let feed = if self.calm { 100 } else { self.below(17) };
        let span = if self.calm { 2_000 } else { CHAOS_MS - 5_000 };
        for (stream, n) in [(StreamId::SIGNALS, signals), (StreamId::PRIVATE, private)] {
            self.appends_left.insert(stream, n);
            for _ in 0..n {
                let at = self.below(span as u64) as i64;
                self.schedule(at, Ev::Append { stream });
            }
        }
        self.feed_left = feed;
        for i in 0..feed {
            let at = self.below(span as u64) as i64;
            // Two of three entries go to the shared relay log, the rest to the inbox.
            let source = sim_sources()[usize::from(i % 3 == 2)];
            self.schedule(at, Ev::FeedAppend { source });
        }
        self.schedule(0, Ev::Connect);
        self.connect_scheduled = true;
        if !self.calm {
            for side in [Side2::Node, Side2::Hub] {
                for _ in 0..self.below(4) {
                    let at = self.below(CHAOS_MS as u64) as i64;
                    let restore = side == Side2::Node && self.below(5) == 0;
                    self.schedule(at, Ev::Crash { side, restore });
                }
            }
            if self.below(6) == 0 {
                let at = 2_000 + self.below(CHAOS_MS as u64) as i64;
                self.schedule(at, Ev::InjectEquivocation);
            }
            if self.below(8) == 0 {
                let at = 2_000 + self.below(CHAOS_MS as u64) as i64;
                self.schedule(at, Ev::InjectFeedEquivocation);
            }
        }
        let calm_at = if self.calm { 0 } else { CHAOS_MS };
        self.schedule(calm_at, Ev::Calm);
    }

    fn run(&mut self) {
        while let Some(Reverse((at, id))) = self.queue.pop() {
            if self.failure.is_some() {
                return;
            }
            let Some(ev) = self.events.remove(&id) else { continue };
            self.now = at;
            self.report.events += 1;
            if self.now > CHAOS_MS + CALM_LIMIT_MS {
                self.fail("liveness: not converged within the calm period".into());
                return;
            }
            if self.opt.sabotage == Some(Sabotage::Panic) && self.report.events == 100 {
                panic!("sabotage: a panic in the middle of seed {}", self.opt.seed);
            }
            self.step(ev);
            if self.report.events > 2_000_000 {
                self.fail("runaway: more than 2M events".into());
                return;
            }
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, conn, bytes, tamper } => {
                if conn == self.conn {
                    self.deliver(to, &bytes, tamper);
                }
            }
            Ev::Timer { side, conn, at } => {
                let current = match side {
                    Side2::Node => self.node_timer,
                    Side2::Hub => self.hub_timer,
                };
                if conn == self.conn && current == Some(at) {
                    match side {
                        Side2::Node => self.node_handle(NodeEvent::TimerFired, Tamper::None),
                        Side2::Hub => self.hub_handle(HubEvent::TimerFired, Tamper::None),
                    }
                }
            }
            Ev::HubCommitDone { epoch, conn, record } => {
                if epoch != self.hub_epoch {
                    return; // the hub crashed before the commit was durable
                }
                self.hub_inflight -= 1;
                let header = *record.header();
                self.hub_store_commit(record);
                if conn == self.conn && self.hub.is_some() {
                    let ev = HubEvent::Committed { stream: header.stream, seq: header.seq };
                    self.hub_handle(ev, Tamper::None);
                }
            }
            Ev::NodeFeedCommitDone { epoch, conn, source, item } => {
                if epoch != self.node_epoch {
                    return;
                }
                self.node_inflight -= 1;
                let seq = item.seq;
                self.node_store_feed(source, item);
                if conn == self.conn && self.node.is_some() {
                    self.node_handle(NodeEvent::FeedCommitted { source, seq }, Tamper::None);
                }
            }
            Ev::Append { stream } => self.append(stream),
            Ev::FeedAppend { source } => {
                if !self.hub_up {
                    let at = self.now + 100 + self.below(500) as i64;
                    self.schedule(at, Ev::FeedAppend { source });
                    return;
                }
                let log = self.hs.logs.entry(source).or_default();
                let seq = log.len() as u64 + 1;
                let prev = log.last().map_or(ChainHash::GENESIS, |(r, _)| r.header_hash());
                let record = sim_record(source_author(source), source_stream(source), seq, prev, 0);
                // Entries of the shared log are for this device only in part (others' plans).
                let mine = source == Source::Inbox || seq == 1 || self.below(3) != 0;
                self.hs.logs.entry(source).or_default().push((record.clone(), mine));
                self.feed_left -= 1;
                self.log(|| format!("hub log {source} append {seq} (for the device: {mine})"));
                if self.hub.is_some() {
                    let entry = self.handed(source, seq).then(|| LogEntry::new(seq, &record));
                    self.hub_handle(HubEvent::SourceGrew { source, seq, entry }, Tamper::None);
                }
            }
            Ev::FlushCursors { epoch } => {
                if epoch == self.hub_epoch {
                    self.hs.flush_scheduled = false;
                    for (source, seq) in std::mem::take(&mut self.hs.cursor_batch) {
                        let c = self.hs.cursors.entry(source).or_default();
                        *c = (*c).max(seq);
                    }
                }
            }
            Ev::Crash { side, restore } => self.crash(side, restore),
            Ev::Restart { side } => {
                match side {
                    Side2::Node => self.node_up = true,
                    Side2::Hub => self.hub_up = true,
                }
                self.log(|| format!("{side:?} restarts"));
                self.ensure_connect(0);
            }
            Ev::Connect => {
                self.connect_scheduled = false;
                self.connect();
            }
            Ev::InjectEquivocation => self.inject_equivocation(),
            Ev::InjectFeedEquivocation => self.inject_feed_equivocation(),
            Ev::Calm => {
                self.calm = true;
                self.p_drop = 0;
                self.p_dup = 0;
                self.p_corrupt = 0;
                self.p_tamper = 0;
                self.jitter_ms = 0;
                for side in [Side2::Node, Side2::Hub] {
                    let up = match side {
                        Side2::Node => self.node_up,
                        Side2::Hub => self.hub_up,
                    };
                    if !up {
                        self.schedule(self.now, Ev::Restart { side });
                    }
                }
                self.schedule(self.now + 1_000, Ev::CheckConverged);
            }
            Ev::CheckConverged => {
                if self.converged() {
                    self.queue.clear();
                    self.events.clear();
                } else {
                    self.schedule(self.now + 1_000, Ev::CheckConverged);
                }
            }
        }
    }

    // ---- processes and connections

    fn crash(&mut self, side: Side2, restore: bool) {
        let up = match side {
            Side2::Node => self.node_up,
            Side2::Hub => self.hub_up,
        };
        if !up || self.calm {
            return;
        }
        self.report.crashes += 1;
        self.log(|| format!("{side:?} crashes (restore from backup: {restore})"));
        self.disconnect();
        match side {
            Side2::Node => {
                self.node_up = false;
                self.node_epoch += 1;
                self.node_inflight = 0;
                if restore {
                    self.restore_node();
                }
            }
            Side2::Hub => {
                self.hub_up = false;
                self.hub_epoch += 1;
                self.hub_inflight = 0;
                // Cursor writes are batched: what was not flushed is lost.
                self.hs.cursor_batch.clear();
                self.hs.flush_scheduled = false;
                if self.opt.sabotage == Some(Sabotage::HubRenumbers) {
                    self.renumber_relay();
                }
            }
        }
        let at = self.now + 100 + self.below(3_000) as i64;
        self.schedule(at, Ev::Restart { side });
    }

    /// The node's disk is lost and restored from an older backup: one of the snapshots taken
    /// along the way (the empty store included).
    fn restore_node(&mut self) {
        self.report.restores += 1;
        let pick = self.below(self.backups.len() as u64) as usize;
        if let Some(backup) = self.backups.get(pick) {
            self.ns = backup.clone();
        }
        self.node_restored = true;
        self.node_tips_known = self.opt.sabotage == Some(Sabotage::NodeAppendsBeforeTips);
        // New content from now on: what was lost is not rewritten identically.
        self.variant += 1;
    }

    fn disconnect(&mut self) {
        if self.node.is_none() && self.hub.is_none() {
            return;
        }
        self.log(|| "connection closed".into());
        self.node = None;
        self.hub = None;
        self.node_timer = None;
        self.hub_timer = None;
        self.conn += 1;
        let delay = self.backoff.next_delay_ms(&mut self.rng) as i64;
        self.ensure_connect(delay);
    }

    fn ensure_connect(&mut self, delay: i64) {
        if !self.connect_scheduled {
            self.connect_scheduled = true;
            self.schedule(self.now + delay, Ev::Connect);
        }
    }

    fn connect(&mut self) {
        if self.node.is_some() || !self.node_up || !self.hub_up {
            return;
        }
        if self.node_inflight > 0 || self.hub_inflight > 0 {
            // Drivers build a new session only after the previous one's commits settled.
            self.ensure_connect(20);
            return;
        }
        self.conn += 1;
        self.report.connections += 1;
        self.log(|| "connect".into());
        let ids = identities();
        let node_key = ids[self.author].identity_key();
        let hub_key = ids[HUB].identity_key();
        let streams = self
            .ns
            .tips
            .iter()
            .map(|(stream, (seq, hash))| LocalStream {
                stream: *stream,
                tip_seq: *seq,
                tip_hash: *hash,
                unacked: self
                    .ns
                    .streams
                    .get(stream)
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default(),
            })
            .collect();
        let sources = self
            .ns
            .feeds
            .iter()
            .map(|(source, items)| LocalSource {
                source: *source,
                committed: items.last().map_or(0, |(seq, _)| *seq),
                recent: items.iter().map(|(seq, r)| (*seq, r.header_hash())).collect(),
                quarantined: self.ns.quarantined_sources.contains(source),
            })
            .collect();
        let restored =
            self.node_restored && self.opt.sabotage != Some(Sabotage::NodeAppendsBeforeTips);
        let node = NodeSession::new(
            self.cfg,
            NodeSetup {
                identity: node_key,
                hub: hub_key,
                streams,
                sources,
                authors: vec![ids[PROVIDER].identity_key()],
                restored,
            },
            MemoCheck,
        );
        let stored = self
            .hs
            .streams
            .iter()
            .map(|(stream, records)| StoredStream {
                stream: *stream,
                committed: records.len() as u64,
                recent: records.iter().map(|r| (r.header().seq, r.header_hash())).collect(),
                quarantined: self.hs.quarantined.contains(stream),
            })
            .collect();
        let sources = self
            .hs
            .logs
            .iter()
            .map(|(source, log)| SourceStart {
                source: *source,
                acked: self.hs.cursors.get(source).copied().unwrap_or(0),
                tip: log.len() as u64,
            })
            .collect();
        let hub = HubSession::new(
            self.cfg,
            HubSetup { hub: hub_key, peer: node_key, streams: stored, sources },
            MemoCheck,
            self.now,
        );
        self.node = Some(node);
        self.hub = Some(hub);
        self.drain_hub(Tamper::None);
        self.node_handle(NodeEvent::Connected, Tamper::None);
    }

    // ---- the link

    fn transmit(&mut self, to: Side2, bytes: Vec<u8>) {
        self.report.frames_sent += 1;
        if self.roll(self.p_drop) {
            self.log(|| format!("drop frame to {to:?}"));
            return;
        }
        let copies = if self.roll(self.p_dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut bytes = bytes.clone();
            let mut tamper = Tamper::None;
            if self.roll(self.p_corrupt) && !bytes.is_empty() {
                let i = self.below(bytes.len() as u64) as usize;
                let flip = 1 + self.below(255) as u8;
                bytes[i] ^= flip;
                tamper = Tamper::Corrupt;
            } else if self.roll(self.p_tamper)
                && let Some(t) = self.tamper_record(&bytes)
            {
                bytes = t;
                tamper = Tamper::Record;
            }
            if tamper != Tamper::None {
                self.report.tampered_frames += 1;
            }
            let delay = self.latency_ms + self.below(self.jitter_ms as u64 + 1) as i64;
            let at = self.now + delay;
            self.schedule(at, Ev::Deliver { to, conn: self.conn, bytes, tamper });
        }
    }

    /// Changes one byte inside one record of a Records/Feed frame and re-seals the frame.
    fn tamper_record(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let mut message = wire::decode(frame).ok()?;
        let record = match &mut message {
            Message::Records { records } if !records.is_empty() => {
                let i = self.below(records.len() as u64) as usize;
                &mut records[i]
            }
            Message::Feed { items, .. } if !items.is_empty() => {
                let i = self.below(items.len() as u64) as usize;
                &mut items[i].record
            }
            _ => return None,
        };
        let at = self.below(record.len() as u64) as usize;
        record[at] ^= 1 + self.below(255) as u8;
        Some(wire::encode(&message))
    }

    fn deliver(&mut self, to: Side2, bytes: &[u8], tamper: Tamper) {
        match to {
            Side2::Node if self.node.is_some() => {
                self.node_handle(NodeEvent::BytesReceived(bytes), tamper);
            }
            Side2::Hub if self.hub.is_some() => {
                self.hub_handle(HubEvent::BytesReceived(bytes), tamper);
            }
            _ => {}
        }
    }

    // ---- node driver

    fn append(&mut self, stream: StreamId) {
        let gated = !self.node_tips_known;
        if !self.node_up || gated {
            let at = self.now + 100 + self.below(400) as i64;
            self.schedule(at, Ev::Append { stream });
            return;
        }
        let (tip_seq, tip_hash) =
            self.ns.tips.get(&stream).copied().unwrap_or((0, ChainHash::GENESIS));
        let record = sim_record(self.author, stream, tip_seq + 1, tip_hash, self.variant);
        self.ns.streams.entry(stream).or_default().insert(tip_seq + 1, record.clone());
        self.ns.tips.insert(stream, (tip_seq + 1, record.header_hash()));
        if let Some(left) = self.appends_left.get_mut(&stream) {
            *left = left.saturating_sub(1);
        }
        self.log(|| format!("node append {stream:?} seq {}", tip_seq + 1));
        if self.below(4) == 0 {
            self.backups.push(self.ns.clone());
        }
        if let Some(node) = self.node.as_mut() {
            if let Err(e) = node.handle(self.now, NodeEvent::RecordAppended(record)) {
                if self.opt.sabotage == Some(Sabotage::NodeAppendsBeforeTips) {
                    self.sabotage_fired = true;
                    // The sabotaged driver drops the session's refusal on the floor.
                } else {
                    self.fail(format!("the session refused an append the driver made: {e}"));
                }
            }
            self.drain_node(Tamper::None);
        }
    }

    fn node_handle(&mut self, ev: NodeEvent<'_>, tamper: Tamper) {
        let Some(node) = self.node.as_mut() else { return };
        if let Err(e) = node.handle(self.now, ev) {
            self.fail(format!("node session refused an event: {e}"));
        }
        self.drain_node(tamper);
    }

    fn drain_node(&mut self, tamper: Tamper) {
        while let Some(action) = self.node.as_mut().and_then(NodeSession::poll_action) {
            match action {
                NodeAction::Send(bytes) => self.transmit(Side2::Hub, bytes),
                NodeAction::SetTimer { at_ms } => {
                    self.node_timer = Some(at_ms);
                    self.schedule(
                        at_ms,
                        Ev::Timer { side: Side2::Node, conn: self.conn, at: at_ms },
                    );
                }
                NodeAction::CommitFeed { source, item } => {
                    self.node_inflight += 1;
                    // A store commits in order: completions are FIFO.
                    let at = (self.now + 1 + self.below(30) as i64).max(self.node_commit_tail);
                    self.node_commit_tail = at;
                    let (epoch, conn) = (self.node_epoch, self.conn);
                    self.schedule(at, Ev::NodeFeedCommitDone { epoch, conn, source, item });
                }
                NodeAction::AdoptTip { stream, seq, header_hash } => {
                    self.log(|| format!("node adopts tip {stream:?} {seq}"));
                    self.ns.tips.insert(stream, (seq, header_hash));
                    // Drop superseded local records (a real node would fetch the hub's copies).
                    let hub = self.hs.streams.get(&stream);
                    if let Some(local) = self.ns.streams.get_mut(&stream) {
                        local.retain(|s, r| {
                            *s <= seq
                                && hub
                                    .and_then(|h| h.get(*s as usize - 1))
                                    .is_some_and(|h| h.header_hash() == r.header_hash())
                        });
                    }
                }
                NodeAction::TipsKnown => {
                    self.node_tips_known = true;
                    self.node_restored = false;
                    self.backoff.reset();
                }
                NodeAction::QuarantineSource(source) => {
                    self.ns.quarantined_sources.insert(source);
                }
                NodeAction::Acked { .. } | NodeAction::KeyPinned(_) => {}
                NodeAction::LoadRecords { stream, from_seq } => {
                    let records: Vec<Record> = self
                        .ns
                        .streams
                        .get(&stream)
                        .map(|m| m.range(from_seq..).map(|(_, r)| r.clone()).collect())
                        .unwrap_or_default();
                    if let Some(node) = self.node.as_mut() {
                        let _ = node.handle(self.now, NodeEvent::RecordsLoaded(records));
                    }
                }
                NodeAction::Alarm(alarm) => self.on_alarm(alarm, tamper),
                NodeAction::Close(reason) => {
                    if matches!(reason, CloseReason::Violation(_)) {
                        if self.opt.sabotage == Some(Sabotage::IgnoreCorruption) {
                            self.sabotage_fired = true;
                            continue;
                        }
                        self.on_violation(Side2::Node, &reason, tamper);
                    }
                    self.log(|| format!("node closes: {reason}"));
                    self.disconnect();
                    return;
                }
            }
        }
        self.check_tamper_outcome(Side2::Node, tamper);
    }

    fn node_store_feed(&mut self, source: Source, item: FeedItem) {
        let hash = item.record.header_hash();
        // Only entries of the hub's log meant for this device, as the hub holds them.
        let entry = self.hs.logs.get(&source).and_then(|l| l.get(item.seq as usize - 1));
        match entry {
            Some((r, true)) if r.header_hash() == hash => {}
            Some((_, false)) => {
                self.fail(format!("node committed {source} {} meant for another device", item.seq));
                return;
            }
            _ => {
                self.fail(format!("node committed {source} {} that is not the hub's", item.seq));
                return;
            }
        }
        let reorder = self.opt.sabotage == Some(Sabotage::NodeReordersFeed);
        let items = self.ns.feeds.entry(source).or_default();
        let last = items.last().map_or(0, |(seq, _)| *seq);
        if item.seq > last {
            if reorder && !items.is_empty() {
                self.sabotage_fired = true;
                let at = items.len() - 1;
                items.insert(at, (item.seq, item.record));
            } else {
                items.push((item.seq, item.record));
            }
        } else {
            match items.iter().find(|(seq, _)| *seq == item.seq) {
                Some((_, r)) if r.header_hash() == hash => {}
                _ => self.fail(format!(
                    "node store: {source} item {} committed out of order or twice (after {last})",
                    item.seq
                )),
            }
        }
        let in_order = self.ns.feeds[&source].windows(2).all(|w| w[0].0 < w[1].0);
        if !in_order {
            self.fail(format!("node store: {source} items out of order"));
        }
    }

    // ---- hub driver

    fn hub_handle(&mut self, ev: HubEvent<'_>, tamper: Tamper) {
        let Some(hub) = self.hub.as_mut() else { return };
        hub.handle(self.now, ev);
        self.drain_hub(tamper);
    }

    fn drain_hub(&mut self, tamper: Tamper) {
        while let Some(action) = self.hub.as_mut().and_then(HubSession::poll_action) {
            match action {
                HubAction::Send(bytes) => self.transmit(Side2::Node, bytes),
                HubAction::SetTimer { at_ms } => {
                    self.hub_timer = Some(at_ms);
                    self.schedule(
                        at_ms,
                        Ev::Timer { side: Side2::Hub, conn: self.conn, at: at_ms },
                    );
                }
                HubAction::Commit { record, .. } => {
                    if tamper == Tamper::Record && !self.node_chain_has(&record) {
                        self.fail("a tampered record reached the hub's commit".into());
                    }
                    self.hub_inflight += 1;
                    let at = (self.now + 1 + self.below(30) as i64).max(self.hub_commit_tail);
                    self.hub_commit_tail = at;
                    let ev = Ev::HubCommitDone { epoch: self.hub_epoch, conn: self.conn, record };
                    self.schedule(at, ev);
                }
                HubAction::CursorAcked { source, seq } => {
                    let c = self.hs.cursor_batch.entry(source).or_default();
                    *c = (*c).max(seq);
                    if !self.hs.flush_scheduled {
                        self.hs.flush_scheduled = true;
                        let at = self.now + 1 + self.below(50) as i64;
                        self.schedule(at, Ev::FlushCursors { epoch: self.hub_epoch });
                    }
                }
                HubAction::LoadSource { source, after, max } => {
                    // One page: up to `max` entries for the device, and at most a few dozen
                    // entries looked at, so catch-up goes through several pages.
                    let page = 1 + self.below(24);
                    let tip = self.hs.logs.get(&source).map_or(0, |l| l.len() as u64);
                    let mut entries = Vec::new();
                    let mut scanned_to = after;
                    while scanned_to < tip && scanned_to < after + page && entries.len() < max {
                        scanned_to += 1;
                        if self.handed(source, scanned_to) {
                            let record = &self.hs.logs[&source][scanned_to as usize - 1].0;
                            entries.push(LogEntry::new(scanned_to, record));
                        }
                    }
                    if let Some(hub) = self.hub.as_mut() {
                        let ev = HubEvent::SourceLoaded { source, after, entries, scanned_to };
                        hub.handle(self.now, ev);
                    }
                }
                HubAction::Quarantine { stream, .. } => {
                    self.hs.quarantined.insert(stream);
                }
                HubAction::CheckStored { record } => {
                    let h = *record.header();
                    let stored =
                        self.hs.streams.get(&h.stream).and_then(|v| v.get(h.seq as usize - 1));
                    if let Some(known) = stored.map(Record::header_hash)
                        && known != record.header_hash()
                        && let Some(hub) = self.hub.as_mut()
                    {
                        let (stream, seq, offered) = (h.stream, h.seq, record.header_hash());
                        hub.handle(
                            self.now,
                            HubEvent::StoredDiffers { stream, seq, known, offered },
                        );
                    }
                }
                HubAction::Alarm(alarm) => {
                    if self.opt.sabotage == Some(Sabotage::HideEquivocationAlarm)
                        && matches!(alarm, Alarm::Equivocation { .. })
                    {
                        self.sabotage_fired = true;
                        continue;
                    }
                    self.on_alarm(alarm, tamper);
                }
                HubAction::Close(reason) => {
                    if matches!(reason, CloseReason::Violation(_)) {
                        if self.opt.sabotage == Some(Sabotage::IgnoreCorruption) {
                            self.sabotage_fired = true;
                            continue;
                        }
                        self.on_violation(Side2::Hub, &reason, tamper);
                    }
                    self.log(|| format!("hub closes: {reason}"));
                    self.disconnect();
                    return;
                }
            }
        }
        self.check_tamper_outcome(Side2::Hub, tamper);
    }

    /// Whether the hub's driver hands entry `seq` of `source` to the device: meant for it, and
    /// not the one the sabotaged driver skips.
    fn handed(&mut self, source: Source, seq: u64) -> bool {
        let mine = self
            .hs
            .logs
            .get(&source)
            .and_then(|l| l.get(seq as usize - 1))
            .is_some_and(|(_, mine)| *mine);
        if mine
            && self.opt.sabotage == Some(Sabotage::HubSkipsItem)
            && matches!(source, Source::Relay(_))
            && seq >= 2
            && *self.skipped.get_or_insert(seq) == seq
        {
            self.sabotage_fired = true;
            return false;
        }
        mine
    }

    /// The sabotaged hub comes back with another record at the last relay entry the node holds.
    fn renumber_relay(&mut self) {
        let source = sim_sources()[0];
        let Some(&(seq, _)) = self.ns.feeds.get(&source).and_then(|items| items.last()) else {
            return;
        };
        let Some(log) = self.hs.logs.get_mut(&source) else { return };
        let i = seq as usize - 1;
        let prev = if i == 0 { ChainHash::GENESIS } else { log[i - 1].0.header_hash() };
        log[i].0 = sim_record(PROVIDER, StreamId::SIGNALS, seq, prev, 30_000 + seq as u32);
        self.sabotage_fired = true;
        self.log(|| format!("sabotage: the hub re-numbers {source} at {seq}"));
    }

    /// Whether `record` is one the node really appended (at any time).
    fn node_chain_has(&self, record: &Record) -> bool {
        let header = record.header();
        let mut prev = ChainHash::GENESIS;
        if header.seq > 1 {
            match self.hs.streams.get(&header.stream).and_then(|v| v.get(header.seq as usize - 2)) {
                Some(r) => prev = r.header_hash(),
                None => return true, // cannot tell here; the final chain check decides
            }
        }
        (0..=self.variant).any(|v| {
            sim_record(self.author, header.stream, header.seq, prev, v).header_hash()
                == record.header_hash()
        })
    }

    fn hub_store_commit(&mut self, record: Record) {
        let header = *record.header();
        let stored = self.hs.streams.entry(header.stream).or_default();
        let tip = stored.len() as u64;
        match self.opt.sabotage {
            Some(Sabotage::HubCommitsTwice) if header.seq == tip + 1 && header.seq == 3 => {
                self.sabotage_fired = true;
                stored.push(record.clone());
                stored.push(record);
                return;
            }
            Some(Sabotage::HubLosesCommit) if header.seq == tip + 1 && header.seq == 2 => {
                self.sabotage_fired = true;
                // Pretend: the next commit will look like seq 2.
                stored.push(sim_record(self.author, header.stream, 2, header.prev_hash, 999));
                return;
            }
            Some(Sabotage::HubStoresTampered) if header.seq == tip + 1 && header.seq == 2 => {
                self.sabotage_fired = true;
                let mut bytes = record.encode();
                let sig_at = 2 + 1 + record.header_bytes().len();
                bytes[sig_at] ^= 1;
                if let Ok(tampered) = Record::decode(&bytes) {
                    stored.push(tampered);
                }
                return;
            }
            _ => {}
        }
        if header.seq == tip + 1 {
            stored.push(record);
            self.report.records_committed += 1;
        } else if header.seq <= tip {
            if stored[header.seq as usize - 1].header_hash() != record.header_hash() {
                self.fail(format!(
                    "hub store: conflicting record at {:?} {}",
                    header.stream, header.seq
                ));
            }
        } else {
            self.fail(format!("hub store: commit out of order ({} after {tip})", header.seq));
        }
    }

    // ---- adversary

    fn inject_equivocation(&mut self) {
        let committed = self.hs.streams.get(&StreamId::SIGNALS).map_or(0, Vec::len) as u64;
        let open = self.hub.as_ref().is_some_and(HubSession::is_open);
        if !open || committed == 0 || self.hs.quarantined.contains(&StreamId::SIGNALS) {
            if self.now < CHAOS_MS {
                let at = self.now + 500;
                self.schedule(at, Ev::InjectEquivocation);
            }
            return;
        }
        let seq = 1 + self.below(committed);
        let stored = &self.hs.streams[&StreamId::SIGNALS];
        let prev =
            if seq == 1 { ChainHash::GENESIS } else { stored[seq as usize - 2].header_hash() };
        let alt = sim_record(self.author, StreamId::SIGNALS, seq, prev, 10_000 + seq as u32);
        self.report.equivocations_injected += 1;
        self.expected_alarms += 1;
        self.log(|| format!("inject equivocation at SIGNALS {seq}"));
        let frame = wire::encode(&Message::Records { records: vec![alt.encode()] });
        let before = self.alarms_seen;
        self.hub_handle(HubEvent::BytesReceived(&frame), Tamper::Equivocation);
        if self.alarms_seen == before && self.failure.is_none() {
            self.fail(format!("equivocation at SIGNALS seq {seq} was not detected"));
        }
    }

    fn inject_feed_equivocation(&mut self) {
        let open = self.node.as_ref().is_some_and(NodeSession::is_open);
        let held: Vec<Source> = self
            .ns
            .feeds
            .iter()
            .filter(|(s, items)| !items.is_empty() && !self.ns.quarantined_sources.contains(*s))
            .map(|(s, _)| *s)
            .collect();
        if !open || held.is_empty() {
            if self.now < CHAOS_MS {
                let at = self.now + 500;
                self.schedule(at, Ev::InjectFeedEquivocation);
            }
            return;
        }
        let source = held[self.below(held.len() as u64) as usize];
        let n = self.ns.feeds[&source].len() as u64;
        let i = self.below(n) as usize;
        let items = &self.ns.feeds[&source];
        let seq = items[i].0;
        let prev_seq = if i == 0 { 0 } else { items[i - 1].0 };
        let log = &self.hs.logs[&source];
        let prev =
            if seq == 1 { ChainHash::GENESIS } else { log[seq as usize - 2].0.header_hash() };
        let author = source_author(source);
        let alt = sim_record(author, source_stream(source), seq, prev, 20_000 + seq as u32);
        self.report.equivocations_injected += 1;
        self.expected_alarms += 1;
        self.log(|| format!("inject feed equivocation at {source} {seq}"));
        let frame = wire::encode(&Message::Feed {
            source,
            items: vec![FeedItemWire { seq, prev_seq, record: alt.encode() }],
        });
        let before = self.alarms_seen;
        self.node_handle(NodeEvent::BytesReceived(&frame), Tamper::Equivocation);
        if self.alarms_seen == before && self.failure.is_none() {
            self.fail(format!("feed equivocation at {source} {seq} was not detected"));
        }
        if self.failure.is_none() && !self.ns.quarantined_sources.contains(&source) {
            self.fail(format!("feed equivocation at {source} {seq} did not quarantine it"));
        }
    }

    fn on_alarm(&mut self, alarm: Alarm, tamper: Tamper) {
        self.log(|| format!("ALARM {alarm:?}"));
        let injected = tamper == Tamper::Equivocation
            && matches!(alarm, Alarm::Equivocation { .. } | Alarm::FeedEquivocation { .. });
        // The node hears that its stream is quarantined: a consequence, not a new finding.
        let consequence =
            matches!(alarm, Alarm::Refused { stream, .. } if self.hs.quarantined.contains(&stream));
        if injected {
            self.alarms_seen += 1;
        } else if !consequence {
            self.fail(format!("unexpected alarm: {alarm:?}"));
        }
    }

    fn on_violation(&mut self, side: Side2, reason: &CloseReason, tamper: Tamper) {
        if matches!(tamper, Tamper::Corrupt | Tamper::Record) {
            self.report.violations_caught += 1;
        } else {
            self.fail(format!("{side:?} closed for a violation without tampering: {reason}"));
        }
    }

    /// Called when a delivery did not close the session.
    fn check_tamper_outcome(&mut self, side: Side2, tamper: Tamper) {
        if tamper == Tamper::Corrupt {
            // Corruption may only pass unnoticed if the frame check collided (2^-64).
            self.fail(format!("a corrupted frame to {side:?} was accepted"));
        }
    }

    // ---- convergence and the final checks

    fn converged(&self) -> bool {
        if self.appends_left.values().any(|n| *n > 0) || self.feed_left > 0 {
            return false;
        }
        if self.node_inflight > 0 || self.hub_inflight > 0 {
            return false;
        }
        for (stream, (tip, _)) in &self.ns.tips {
            if self.hs.quarantined.contains(stream) {
                continue;
            }
            if self.hs.streams.get(stream).map_or(0, Vec::len) as u64 != *tip {
                return false;
            }
        }
        self.hs.logs.iter().all(|(source, log)| {
            let meant = log.iter().filter(|(_, mine)| *mine).count();
            self.ns.quarantined_sources.contains(source)
                || self.ns.feeds.get(source).map_or(0, Vec::len) == meant
        })
    }

    fn final_checks(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if !self.converged() {
            self.fail("liveness: the run ended without converging".into());
            return;
        }
        if self.alarms_seen != self.expected_alarms {
            self.fail(format!(
                "{} equivocations injected, {} alarms raised",
                self.expected_alarms, self.alarms_seen
            ));
            return;
        }
        let ids = identities();
        let node_key = ids[self.author].identity_key();
        for (stream, (tip, tip_hash)) in self.ns.tips.clone() {
            let stored = self.hs.streams.get(&stream).cloned().unwrap_or_default();
            if let Err(e) = memo_verify_chain(&stored, &node_key, stream) {
                self.fail(format!("hub chain of {stream:?} does not verify: {e}"));
                return;
            }
            let quarantined = self.hs.quarantined.contains(&stream);
            if !quarantined {
                if stored.len() as u64 != tip {
                    self.fail(format!(
                        "hub holds {} of {stream:?}, node appended {tip}",
                        stored.len()
                    ));
                    return;
                }
                if tip > 0 && stored[tip as usize - 1].header_hash() != tip_hash {
                    self.fail(format!("hub tip of {stream:?} differs from the node's"));
                    return;
                }
            }
            if let Some(local) = self.ns.streams.get(&stream) {
                for (seq, record) in local {
                    match stored.get(*seq as usize - 1) {
                        Some(r) if r.header_hash() == record.header_hash() => {}
                        None if quarantined => {}
                        _ => {
                            self.fail(format!("node's {stream:?} seq {seq} is not the hub's"));
                            return;
                        }
                    }
                }
            }
        }
        let mut committed = 0;
        for (source, log) in &self.hs.logs {
            let meant: Vec<(u64, ChainHash)> = log
                .iter()
                .enumerate()
                .filter(|(_, (_, mine))| *mine)
                .map(|(i, (r, _))| (i as u64 + 1, r.header_hash()))
                .collect();
            let held = self.ns.feeds.get(source).cloned().unwrap_or_default();
            let key = ids[source_author(*source)].identity_key();
            for (seq, record) in &held {
                if let Err(e) = MemoCheck.verify(record, &key) {
                    self.fail(format!("node's {source} item {seq} does not verify: {e}"));
                    return;
                }
            }
            let held: Vec<(u64, ChainHash)> =
                held.iter().map(|(seq, r)| (*seq, r.header_hash())).collect();
            let quarantined = self.ns.quarantined_sources.contains(source);
            let n = held.len();
            if n > meant.len() || held[..] != meant[..n] || (!quarantined && n != meant.len()) {
                self.fail(format!(
                    "node's {source} ({n} items) is not the hub's entries for it ({})",
                    meant.len()
                ));
                return;
            }
            committed += n as u64;
            self.report.feed_meant += meant.len() as u64;
        }
        self.report.feed_committed = committed;
        self.report.sim_time_ms = self.now;
    }
}

/// [`verify_chain`](crate::chain::verify_chain) with memoized signature checks (each distinct
/// record is still verified for real once per process).
fn memo_verify_chain(
    records: &[Record],
    key: &IdentityKey,
    stream: StreamId,
) -> Result<(), crate::chain::ChainError> {
    let mut tip = ChainTip::genesis(key.device_id(), stream);
    for record in records {
        tip = tip.check_link(record)?;
        MemoCheck.verify(record, key).map_err(|error| crate::chain::ChainError::Verify {
            seq: record.header().seq,
            error,
        })?;
    }
    Ok(())
}

/// Runs one seed. Returns what happened, or the first property that broke.
pub fn run(opt: SimOptions) -> Result<SimReport, SimFailure> {
    let mut world = World::new(opt);
    world.run();
    world.final_checks();
    if opt.sabotage.is_some() && !world.sabotage_fired && world.failure.is_none() {
        // The sabotage found nothing to break in this seed (e.g. no restore happened).
        return Ok(world.report);
    }
    match world.failure.take() {
        None => Ok(world.report),
        Some(property) => {
            let start = world.trace.len().saturating_sub(400);
            Err(SimFailure { seed: opt.seed, property, trace: world.trace.split_off(start) })
        }
    }
}

/// Runs one seed and turns a panic into a failure too.
pub fn run_catching(opt: SimOptions) -> Result<SimReport, SimFailure> {
    match std::panic::catch_unwind(|| run(opt)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(SimFailure {
                seed: opt.seed,
                property: format!("panicked: {message}"),
                trace: vec![],
            })
        }
    }
}

/// The command that replays `seed` with a trace.
pub fn replay_command(seed: u64, sabotage: Option<Sabotage>) -> String {
    let sabotage = sabotage.map(|s| format!(" --sabotage {}", s.name())).unwrap_or_default();
    format!(
        "cargo run --release -p tradecast-protocol --bin tradecast-syncsim -- --seeds {seed}..{} --trace{sabotage}",
        seed + 1
    )
}

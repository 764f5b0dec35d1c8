//! The hub's side of a session: upstream receiver of one node's records, downstream sender of
//! the sources that node follows. Sans-IO: events in, actions out (see the parent module).
//!
//! Per source the session keeps the node's cursor (`acked`), how far into the log it has
//! looked for this device (`scanned`: every entry up to it was either handed over or is not
//! for this device), and at most `window` items handed over but not acknowledged, each with the
//! `prev_seq` the node checks. Live entries arrive as [`HubEvent::SourceGrew`] (the driver says
//! whether this device may see it); a session that fell behind — a page of catch-up still
//! outstanding, its window full, or an entry it never heard of — asks the driver for the next
//! page with [`HubAction::LoadSource`] instead, so a slow node costs a bounded amount of memory.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::node::cfg_clamped;
use super::wire::{self, FeedItemWire, Message, RefusedReason, Source, SourceCursor, StreamMark};
use super::{Alarm, CloseReason, LogEntry, Recent, RecordCheck, SessionConfig, Violation};
use crate::hash::ChainHash;
use crate::identity::{DeviceId, IdentityKey};
use crate::record::{Record, StreamId};

/// What happened to the hub's session.
#[derive(Debug)]
pub enum HubEvent<'a> {
    /// One frame from the node.
    BytesReceived(&'a [u8]),
    /// The timer set by the last [`HubAction::SetTimer`] fired.
    TimerFired,
    /// The driver durably committed the records of `stream` up to `seq` (in order).
    Committed { stream: StreamId, seq: u64 },
    /// The driver committed entry `seq` of `source`; `entry` is `Some` when this device may
    /// see it, `None` when it is for others (it only moves the known tip).
    SourceGrew { source: Source, seq: u64, entry: Option<LogEntry> },
    /// The page asked for with [`HubAction::LoadSource`]: the entries this device may see in
    /// `(after, scanned_to]`, in `seq` order (`scanned_to` is the last entry the driver
    /// looked at, seen or not; no progress means the log ends at `after`).
    SourceLoaded { source: Source, after: u64, entries: Vec<LogEntry>, scanned_to: u64 },
    /// The log of `source` holds entries up to `tip` that the driver did not hand over live
    /// (another hub instance appended them, or live entries were dropped for a full queue):
    /// the session reads them with [`HubAction::LoadSource`] pages.
    SourceTip { source: Source, tip: u64 },
    /// The device may now see a source it did not follow when the session began (a grant):
    /// its stored cursor and the source's tip.
    SourceAdded(SourceStart),
    /// The answer to [`HubAction::CheckStored`] when the store holds another record at that
    /// `seq` (header hash `known`): the node equivocated below the remembered hashes.
    StoredDiffers { stream: StreamId, seq: u64, known: ChainHash, offered: ChainHash },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubAction {
    /// Send this frame to the node.
    Send(Vec<u8>),
    /// Call back with `TimerFired` at this instant (replaces earlier timers).
    SetTimer { at_ms: i64 },
    /// Durably commit this verified record (the next of its chain), sign its receipt, then
    /// report [`HubEvent::Committed`]. Committing a record already stored with the same header
    /// hash must succeed without a second copy.
    Commit { record: Record, received_at_ms: i64 },
    /// The node has durably committed `source` up to `seq` (persist the cursor; batching is
    /// fine: after a crash a lagging cursor only means items sent again, which the node drops).
    CursorAcked { source: Source, seq: u64 },
    /// Read the entries of `source` after `after` that this device may see, at most `max` of
    /// them (stop early at a page boundary if you like), and report them with
    /// [`HubEvent::SourceLoaded`].
    LoadSource { source: Source, after: u64, max: usize },
    /// A validly signed record of the node at a `seq` older than the hashes the session
    /// remembers (already acknowledged): compare it with the stored record's header hash and
    /// answer [`HubEvent::StoredDiffers`] when they differ (nothing when they match).
    CheckStored { record: Record },
    /// Persist: this stream is quarantined until a person decides.
    Quarantine { author: DeviceId, stream: StreamId },
    /// Raise an alarm to a person.
    Alarm(Alarm),
    /// Close the connection; the session is over.
    Close(CloseReason),
}

/// What the hub durably holds of one of the node's streams.
#[derive(Debug, Clone)]
pub struct StoredStream {
    pub stream: StreamId,
    /// Highest committed `seq` (0 for none).
    pub committed: u64,
    /// (seq, header hash) of recent committed records, including `committed`'s.
    pub recent: Vec<(u64, ChainHash)>,
    pub quarantined: bool,
}

/// Everything a hub session starts from.
#[derive(Debug, Clone)]
pub struct HubSetup {
    /// The hub's own key (sent in `Welcome`).
    pub hub: IdentityKey,
    /// The node's key, as authenticated by the transport.
    pub peer: IdentityKey,
    pub streams: Vec<StoredStream>,
    /// Every source this device may receive from, with its stored cursor.
    pub sources: Vec<SourceStart>,
}

/// A source a device follows, as the hub's store knows it when the session begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceStart {
    pub source: Source,
    /// The device's cursor as persisted (it may lag the node's after a crash).
    pub acked: u64,
    /// The source's last committed `seq`.
    pub tip: u64,
}

#[derive(Debug)]
struct Inbound {
    committed: u64,
    pending: u64,
    pending_hash: ChainHash,
    recent: Recent,
    quarantined: bool,
    resend_asked_at: Option<i64>,
}

#[derive(Debug)]
struct SourceOut {
    /// The node's committed cursor.
    acked: u64,
    /// The cursor as persisted (no `CursorAcked` at or below it).
    persisted: u64,
    /// Every entry up to here was handed over (held or acked) or is not for this device.
    scanned: u64,
    /// The highest `seq` known to be in the log.
    tip: u64,
    /// The `seq` of the last item handed over: the next item's `prev_seq`.
    last_given: u64,
    /// Items handed over and not acknowledged: seq → (prev_seq, encoded record).
    held: BTreeMap<u64, (u64, std::sync::Arc<[u8]>)>,
    /// Send held items from here.
    next: u64,
    sent_max: u64,
    last_progress: i64,
    loading: bool,
}

impl SourceOut {
    fn new(start: SourceStart) -> SourceOut {
        SourceOut {
            acked: start.acked,
            persisted: start.acked,
            scanned: start.acked,
            tip: start.tip.max(start.acked),
            last_given: start.acked,
            held: BTreeMap::new(),
            next: start.acked + 1,
            sent_max: start.acked,
            last_progress: 0,
            loading: false,
        }
    }

    /// Takes entry `seq` into the view (held when the device may see it).
    fn take(&mut self, seq: u64, entry: Option<LogEntry>) {
        if let Some(entry) = entry {
            self.held.insert(seq, (self.last_given, entry.record));
            self.last_given = seq;
        }
        self.scanned = seq;
        self.tip = self.tip.max(seq);
    }

    fn in_flight(&self) -> bool {
        self.sent_max > self.acked
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    AwaitHello,
    Open,
    Closed,
}

/// The hub's side of one node's connection.
pub struct HubSession<C: RecordCheck> {
    cfg: SessionConfig,
    hub: IdentityKey,
    peer: IdentityKey,
    peer_device: DeviceId,
    check: C,
    phase: Phase,
    streams: BTreeMap<StreamId, Inbound>,
    sources: BTreeMap<Source, SourceOut>,
    last_rx: i64,
    last_tx: i64,
    ping_nonce: u64,
    out: VecDeque<HubAction>,
    timer: Option<i64>,
}

impl<C: RecordCheck> HubSession<C> {
    /// A session for a connection that just came up (at `now`).
    pub fn new(cfg: SessionConfig, setup: HubSetup, check: C, now: i64) -> Self {
        let cfg = cfg_clamped(cfg);
        let streams = setup
            .streams
            .into_iter()
            .map(|s| {
                let recent = Recent::new(cfg.recent_hashes, s.recent);
                let tip_hash = if s.committed == 0 {
                    ChainHash::GENESIS
                } else {
                    recent.get(s.committed).unwrap_or_default()
                };
                (
                    s.stream,
                    Inbound {
                        committed: s.committed,
                        pending: s.committed,
                        pending_hash: tip_hash,
                        recent,
                        quarantined: s.quarantined,
                        resend_asked_at: None,
                    },
                )
            })
            .collect();
        let sources = setup
            .sources
            .into_iter()
            .map(|start| {
                let mut out = SourceOut::new(start);
                out.last_progress = now;
                (start.source, out)
            })
            .collect();
        let mut session = HubSession {
            cfg,
            hub: setup.hub,
            peer: setup.peer,
            peer_device: setup.peer.device_id(),
            check,
            phase: Phase::AwaitHello,
            streams,
            sources,
            last_rx: now,
            last_tx: now,
            ping_nonce: 0,
            out: VecDeque::new(),
            timer: None,
        };
        session.arm_timer(now);
        session
    }

    pub fn poll_action(&mut self) -> Option<HubAction> {
        self.out.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the node's `Hello` was accepted (records are processed from then on).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    pub fn handle(&mut self, now: i64, event: HubEvent<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        match event {
            HubEvent::BytesReceived(bytes) => {
                self.last_rx = now;
                match wire::decode(bytes) {
                    Ok(message) => self.on_message(now, message),
                    Err(e) => self.close(CloseReason::Violation(Violation::Frame(e))),
                }
            }
            HubEvent::TimerFired => self.on_timer(now),
            HubEvent::Committed { stream, seq } => {
                if let Some(s) = self.streams.get_mut(&stream)
                    && seq > s.committed
                    && seq <= s.pending
                {
                    s.committed = seq;
                    if self.phase == Phase::Open {
                        self.send(now, &Message::Ack { stream, seq });
                    }
                }
            }
            HubEvent::SourceGrew { source, seq, entry } => {
                let open = self.phase == Phase::Open;
                let window = self.cfg.window;
                if let Some(out) = self.sources.get_mut(&source) {
                    // Taken live only when it continues the view at once, with room in the
                    // window; otherwise the next page of catch-up reads it from the store.
                    let room = (out.held.len() as u64) < window || entry.is_none();
                    if open && !out.loading && seq == out.scanned + 1 && room {
                        out.take(seq, entry);
                    } else {
                        out.tip = out.tip.max(seq);
                    }
                    self.pump_source(now, source);
                }
            }
            HubEvent::SourceLoaded { source, after, entries, scanned_to } => {
                if let Some(out) = self.sources.get_mut(&source)
                    && out.loading
                {
                    out.loading = false;
                    if after == out.scanned {
                        let progress = scanned_to > after;
                        for entry in entries {
                            if entry.seq > out.scanned && entry.seq <= scanned_to {
                                out.take(entry.seq, Some(entry));
                            }
                        }
                        if progress {
                            out.scanned = out.scanned.max(scanned_to);
                            out.tip = out.tip.max(scanned_to);
                        } else {
                            // The store ends here: what we thought was the tip is not (yet)
                            // readable; the next SourceGrew moves it again.
                            out.tip = out.scanned;
                        }
                    }
                    self.pump_source(now, source);
                }
            }
            HubEvent::StoredDiffers { stream, seq, known, offered } => {
                let quarantined = self.streams.get(&stream).is_none_or(|s| s.quarantined);
                if !quarantined {
                    self.quarantine(now, stream, seq, RefusedReason::Equivocation);
                    let author = self.peer_device;
                    let alarm = Alarm::Equivocation { author, stream, seq, known, offered };
                    self.out.push_back(HubAction::Alarm(alarm));
                }
            }
            HubEvent::SourceTip { source, tip } => {
                if let Some(out) = self.sources.get_mut(&source)
                    && tip > out.tip
                {
                    out.tip = tip;
                    self.pump_source(now, source);
                }
            }
            HubEvent::SourceAdded(start) => {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.sources.entry(start.source)
                {
                    let mut out = SourceOut::new(start);
                    out.last_progress = now;
                    slot.insert(out);
                    self.pump_source(now, start.source);
                }
            }
        }
        self.arm_timer(now);
    }

    fn on_message(&mut self, now: i64, message: Message) {
        match message {
            Message::Hello { device, identity, cursors } => {
                self.on_hello(now, device, identity, cursors);
            }
            Message::Records { records } => {
                if self.phase == Phase::Open {
                    self.on_records(now, records);
                }
            }
            Message::FeedAck { source, seq } => {
                if self.phase != Phase::Open {
                    return;
                }
                let Some(out) = self.sources.get_mut(&source) else {
                    return self.close(CloseReason::Violation(Violation::OutOfRange));
                };
                // Only a seq this session sent (or the cursor itself) can be acknowledged.
                let sent = seq <= out.sent_max && (seq == out.acked || out.held.contains_key(&seq));
                if seq > out.acked && !sent {
                    return self.close(CloseReason::Violation(Violation::OutOfRange));
                }
                if seq > out.acked {
                    out.acked = seq;
                    out.held.retain(|s, _| *s > seq);
                    out.last_progress = now;
                    if out.next <= seq {
                        out.next = seq + 1;
                    }
                    if seq > out.persisted {
                        out.persisted = seq;
                        self.out.push_back(HubAction::CursorAcked { source, seq });
                    }
                }
                self.pump_source(now, source);
            }
            Message::FeedResend { source, from_seq } => {
                if let Some(out) = self.sources.get_mut(&source) {
                    let from = from_seq.max(out.acked + 1);
                    if from < out.next {
                        out.next = from;
                        out.last_progress = now;
                    }
                    self.pump_source(now, source);
                }
            }
            Message::Ping { nonce } => self.send(now, &Message::Pong { nonce }),
            Message::Pong { .. } => {}
            Message::Welcome { .. }
            | Message::Ack { .. }
            | Message::Resend { .. }
            | Message::Refused { .. }
            | Message::Feed { .. } => self.close(CloseReason::Violation(Violation::Unexpected)),
        }
    }

    fn on_hello(
        &mut self,
        now: i64,
        device: DeviceId,
        identity: IdentityKey,
        cursors: Vec<SourceCursor>,
    ) {
        if identity != self.peer || device != self.peer_device {
            self.close(CloseReason::Violation(Violation::WrongPeer));
            return;
        }
        let first = self.phase == Phase::AwaitHello;
        self.phase = Phase::Open;
        let marks: Vec<StreamMark> = self
            .streams
            .iter()
            .filter(|(_, s)| s.committed > 0)
            .map(|(stream, s)| StreamMark {
                stream: *stream,
                seq: s.committed,
                header_hash: s.recent.get(s.committed).unwrap_or_default(),
            })
            .collect();
        self.send(now, &Message::Welcome { hub: self.hub.device_id(), identity: self.hub, marks });
        if !first {
            return;
        }
        let cursors: BTreeMap<Source, u64> =
            cursors.into_iter().map(|c| (c.source, c.seq)).collect();
        for (source, out) in self.sources.iter_mut() {
            // The node's word wins: lower after a restore from a backup (send again what it
            // lost), higher when the hub's persisted cursor lagged behind a crash.
            let mark = cursors.get(source).copied().unwrap_or(0);
            if mark > out.tip {
                self.out.push_back(HubAction::Alarm(Alarm::FeedMarkBeyondTip {
                    source: *source,
                    mark,
                    tip: out.tip,
                }));
                self.phase = Phase::Closed;
                self.out.push_back(HubAction::Close(CloseReason::Violation(Violation::OutOfRange)));
                return;
            }
            if mark > out.persisted {
                out.persisted = mark;
                self.out.push_back(HubAction::CursorAcked { source: *source, seq: mark });
            }
            out.acked = mark;
            out.scanned = mark;
            out.last_given = mark;
            out.held.clear();
            out.loading = false;
            out.next = mark + 1;
            out.sent_max = mark;
            out.last_progress = now;
        }
        let sources: Vec<Source> = self.sources.keys().copied().collect();
        for source in sources {
            self.pump_source(now, source);
        }
    }

    fn on_records(&mut self, now: i64, records: Vec<Vec<u8>>) {
        let mut ack: BTreeSet<StreamId> = BTreeSet::new();
        let mut refused: BTreeSet<StreamId> = BTreeSet::new();
        let mut gapped: BTreeSet<StreamId> = BTreeSet::new();
        for bytes in records {
            let record = match Record::decode(&bytes) {
                Ok(r) => r,
                Err(e) => return self.close(CloseReason::Violation(Violation::Record(e))),
            };
            let header = *record.header();
            if header.author != self.peer_device {
                return self.close(CloseReason::Violation(Violation::WrongAuthor));
            }
            if header.seq == 0 {
                return self.close(CloseReason::Violation(Violation::OutOfRange));
            }
            if gapped.contains(&header.stream) {
                continue;
            }
            let s = self.streams.entry(header.stream).or_insert_with(|| Inbound {
                committed: 0,
                pending: 0,
                pending_hash: ChainHash::GENESIS,
                recent: Recent::new(self.cfg.recent_hashes, []),
                quarantined: false,
                resend_asked_at: None,
            });
            if s.quarantined {
                if refused.insert(header.stream) {
                    let message = Message::Refused {
                        stream: header.stream,
                        seq: header.seq,
                        reason: RefusedReason::Quarantined,
                    };
                    self.send(now, &message);
                }
                continue;
            }
            let hash = record.header_hash();
            let s = self.streams.get_mut(&header.stream).expect("inserted above");
            if header.seq <= s.pending {
                match s.recent.get(header.seq) {
                    Some(known) if known == hash => {
                        if header.seq <= s.committed {
                            ack.insert(header.stream);
                        }
                        continue;
                    }
                    Some(known) => {
                        // Only a validly signed conflict is equivocation; anything else is
                        // corruption or forgery of the peer's bytes.
                        if let Err(e) = self.check.verify(&record, &self.peer) {
                            return self.close(CloseReason::Violation(Violation::Signature(e)));
                        }
                        self.quarantine(
                            now,
                            header.stream,
                            header.seq,
                            RefusedReason::Equivocation,
                        );
                        self.out.push_back(HubAction::Alarm(Alarm::Equivocation {
                            author: header.author,
                            stream: header.stream,
                            seq: header.seq,
                            known,
                            offered: hash,
                        }));
                        refused.insert(header.stream);
                        continue;
                    }
                    None => {
                        // Older than the remembered hashes: acknowledged (the mark covers
                        // it), and checked against the store, whose answer can still raise
                        // equivocation.
                        if let Err(e) = self.check.verify(&record, &self.peer) {
                            return self.close(CloseReason::Violation(Violation::Signature(e)));
                        }
                        self.out.push_back(HubAction::CheckStored { record });
                        ack.insert(header.stream);
                        continue;
                    }
                }
            }
            if let Err(e) = self.check.verify(&record, &self.peer) {
                return self.close(CloseReason::Violation(Violation::Signature(e)));
            }
            let s = self.streams.get_mut(&header.stream).expect("inserted above");
            if header.seq > s.pending + 1 {
                gapped.insert(header.stream);
                let asked_recently =
                    s.resend_asked_at.is_some_and(|at| now < at + self.cfg.retransmit_ms);
                if !asked_recently {
                    s.resend_asked_at = Some(now);
                    let message =
                        Message::Resend { stream: header.stream, from_seq: s.pending + 1 };
                    self.send(now, &message);
                }
                continue;
            }
            if header.prev_hash != s.pending_hash {
                self.quarantine(now, header.stream, header.seq, RefusedReason::BrokenChain);
                self.out.push_back(HubAction::Alarm(Alarm::BrokenChain {
                    author: header.author,
                    stream: header.stream,
                    seq: header.seq,
                }));
                refused.insert(header.stream);
                continue;
            }
            s.pending = header.seq;
            s.pending_hash = hash;
            s.resend_asked_at = None;
            s.recent.insert(header.seq, hash);
            self.out.push_back(HubAction::Commit { record, received_at_ms: now });
        }
        for stream in ack {
            if let Some(s) = self.streams.get(&stream)
                && s.committed > 0
            {
                let seq = s.committed;
                self.send(now, &Message::Ack { stream, seq });
            }
        }
    }

    fn quarantine(&mut self, now: i64, stream: StreamId, seq: u64, reason: RefusedReason) {
        if let Some(s) = self.streams.get_mut(&stream) {
            if s.quarantined {
                return;
            }
            s.quarantined = true;
            // Records accepted but not yet committed stay in flight to the store; nothing
            // further is accepted.
        }
        self.out.push_back(HubAction::Quarantine { author: self.peer_device, stream });
        self.send(now, &Message::Refused { stream, seq, reason });
    }

    fn on_timer(&mut self, now: i64) {
        if self.phase == Phase::Open {
            let mut due = Vec::new();
            for (source, out) in self.sources.iter_mut() {
                if out.in_flight() && now >= out.last_progress + self.cfg.retransmit_ms {
                    out.next = out.acked + 1;
                    out.last_progress = now;
                    due.push(*source);
                }
            }
            for source in due {
                self.pump_source(now, source);
            }
        }
        if now >= self.last_rx + self.cfg.dead_after_ms {
            self.close(CloseReason::DeadPeer);
            return;
        }
        if self.phase == Phase::Open && now >= self.last_tx + self.cfg.heartbeat_ms {
            self.ping_nonce += 1;
            let nonce = self.ping_nonce;
            self.send(now, &Message::Ping { nonce });
        }
    }

    /// Sends the held items from `next`, batched, and asks for the next page of catch-up when
    /// the window has room and the view is behind the tip.
    fn pump_source(&mut self, now: i64, source: Source) {
        if self.phase != Phase::Open {
            return;
        }
        let Some(out) = self.sources.get_mut(&source) else { return };
        let mut frames: Vec<Message> = Vec::new();
        let mut batch: Vec<FeedItemWire> = Vec::new();
        let mut batch_bytes = 0usize;
        for (seq, (prev_seq, bytes)) in out.held.range(out.next..) {
            if !batch.is_empty()
                && (batch.len() >= self.cfg.batch_records
                    || batch_bytes + bytes.len() > self.cfg.batch_bytes)
            {
                frames.push(Message::Feed { source, items: std::mem::take(&mut batch) });
                batch_bytes = 0;
            }
            batch_bytes += bytes.len();
            batch.push(FeedItemWire { seq: *seq, prev_seq: *prev_seq, record: bytes.to_vec() });
            if out.sent_max <= out.acked {
                out.last_progress = now;
            }
            out.sent_max = out.sent_max.max(*seq);
            out.next = seq + 1;
        }
        if !batch.is_empty() {
            frames.push(Message::Feed { source, items: batch });
        }
        let room = self.cfg.window.saturating_sub(out.held.len() as u64);
        if !out.loading && out.scanned < out.tip && room > 0 {
            out.loading = true;
            let (after, max) = (out.scanned, usize::try_from(room).unwrap_or(usize::MAX));
            self.out.push_back(HubAction::LoadSource { source, after, max });
        }
        for frame in frames {
            self.send(now, &frame);
        }
    }

    fn send(&mut self, now: i64, message: &Message) {
        self.last_tx = now;
        self.out.push_back(HubAction::Send(wire::encode(message)));
    }

    fn close(&mut self, reason: CloseReason) {
        self.phase = Phase::Closed;
        self.out.push_back(HubAction::Close(reason));
    }

    fn arm_timer(&mut self, now: i64) {
        if self.phase == Phase::Closed {
            return;
        }
        let mut at = self.last_rx + self.cfg.dead_after_ms;
        if self.phase == Phase::Open {
            at = at.min(self.last_tx + self.cfg.heartbeat_ms);
            for out in self.sources.values() {
                if out.in_flight() {
                    at = at.min(out.last_progress + self.cfg.retransmit_ms);
                }
            }
        }
        let at = at.max(now + 1);
        if self.timer != Some(at) {
            self.timer = Some(at);
            self.out.push_back(HubAction::SetTimer { at_ms: at });
        }
    }
}

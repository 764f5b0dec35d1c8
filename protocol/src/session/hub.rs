//! The hub's side of a session: upstream receiver of one node's records, downstream sender of
//! that node's feed. Sans-IO: events in, actions out (see the parent module).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::node::cfg_clamped;
use super::wire::{self, FeedItemWire, Message, RefusedReason, StreamMark};
use super::{Alarm, CloseReason, FeedItem, Recent, RecordCheck, SessionConfig, Violation};
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
    /// The driver durably appended an item to this device's feed.
    FeedAppended(Box<FeedItem>),
    /// Feed items the session asked for with [`HubAction::LoadFeed`], in `seq` order.
    FeedLoaded(Vec<FeedItem>),
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
    /// The node has durably committed its feed up to `seq` (persist it).
    FeedAcked { seq: u64 },
    /// Load this device's feed items from `from_seq` to the tip and report them with
    /// [`HubEvent::FeedLoaded`].
    LoadFeed { from_seq: u64 },
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
    /// The node's feed: last acknowledged `seq`, the tip, and the items above the ack.
    pub feed_acked: u64,
    pub feed_tip: u64,
    pub feed_unacked: Vec<FeedItem>,
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
struct FeedOut {
    acked: u64,
    tip: u64,
    held: BTreeMap<u64, FeedItem>,
    next: u64,
    sent_max: u64,
    last_progress: i64,
    loading: bool,
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
    feed: FeedOut,
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
        let held = setup
            .feed_unacked
            .into_iter()
            .filter(|i| i.seq > setup.feed_acked)
            .map(|i| (i.seq, i))
            .collect();
        let mut session = HubSession {
            cfg,
            hub: setup.hub,
            peer: setup.peer,
            peer_device: setup.peer.device_id(),
            check,
            phase: Phase::AwaitHello,
            streams,
            feed: FeedOut {
                acked: setup.feed_acked,
                tip: setup.feed_tip.max(setup.feed_acked),
                held,
                next: setup.feed_acked + 1,
                sent_max: setup.feed_acked,
                last_progress: now,
                loading: false,
            },
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
            HubEvent::FeedAppended(item) => {
                if item.seq == self.feed.tip + 1 {
                    self.feed.tip = item.seq;
                    self.feed.held.insert(item.seq, *item);
                    self.pump_feed(now);
                }
            }
            HubEvent::FeedLoaded(items) => {
                for item in items {
                    if item.seq > self.feed.acked && item.seq <= self.feed.tip {
                        self.feed.held.insert(item.seq, item);
                    }
                }
                self.feed.loading = false;
                self.pump_feed(now);
            }
        }
        self.arm_timer(now);
    }

    fn on_message(&mut self, now: i64, message: Message) {
        match message {
            Message::Hello { device, identity, feed_mark, .. } => {
                self.on_hello(now, device, identity, feed_mark);
            }
            Message::Records { records } => {
                if self.phase == Phase::Open {
                    self.on_records(now, records);
                }
            }
            Message::FeedAck { seq } => {
                if self.phase != Phase::Open {
                    return;
                }
                if seq > self.feed.sent_max.max(self.feed.acked) {
                    self.close(CloseReason::Violation(Violation::OutOfRange));
                    return;
                }
                if seq > self.feed.acked {
                    self.feed.acked = seq;
                    self.feed.held.retain(|s, _| *s > seq);
                    self.feed.last_progress = now;
                    if self.feed.next <= seq {
                        self.feed.next = seq + 1;
                    }
                    self.out.push_back(HubAction::FeedAcked { seq });
                }
                self.pump_feed(now);
            }
            Message::FeedResend { from_seq } => {
                let from = from_seq.max(self.feed.acked + 1);
                if from < self.feed.next {
                    self.feed.next = from;
                    self.feed.last_progress = now;
                }
                self.pump_feed(now);
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

    fn on_hello(&mut self, now: i64, device: DeviceId, identity: IdentityKey, feed_mark: u64) {
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
        if feed_mark > self.feed.tip {
            self.out.push_back(HubAction::Alarm(Alarm::FeedMarkBeyondTip {
                mark: feed_mark,
                tip: self.feed.tip,
            }));
            self.close(CloseReason::Violation(Violation::OutOfRange));
            return;
        }
        if feed_mark < self.feed.acked {
            // The node was restored from a backup: send again what it lost.
            self.feed.acked = feed_mark;
            self.feed.loading = true;
            self.out.push_back(HubAction::LoadFeed { from_seq: feed_mark + 1 });
        } else if feed_mark > self.feed.acked {
            self.feed.acked = feed_mark;
            self.feed.held.retain(|s, _| *s > feed_mark);
            self.out.push_back(HubAction::FeedAcked { seq: feed_mark });
        }
        self.feed.next = self.feed.acked + 1;
        self.feed.sent_max = self.feed.acked;
        self.feed.last_progress = now;
        self.pump_feed(now);
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
                        // Older than the remembered hashes: the store's unique (author,
                        // stream, seq) constraint is the last line; treat as a duplicate.
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
        if self.phase == Phase::Open
            && self.feed.sent_max > self.feed.acked
            && now >= self.feed.last_progress + self.cfg.retransmit_ms
        {
            self.feed.next = self.feed.acked + 1;
            self.feed.last_progress = now;
            self.pump_feed(now);
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

    fn pump_feed(&mut self, now: i64) {
        if self.phase != Phase::Open || self.feed.loading {
            return;
        }
        let mut frames: Vec<Message> = Vec::new();
        let mut batch: Vec<FeedItemWire> = Vec::new();
        let mut batch_bytes = 0usize;
        while self.feed.next <= self.feed.tip && self.feed.next <= self.feed.acked + self.cfg.window
        {
            let Some(item) = self.feed.held.get(&self.feed.next) else {
                self.feed.loading = true;
                self.out.push_back(HubAction::LoadFeed { from_seq: self.feed.next });
                break;
            };
            let bytes = item.record.encode();
            if !batch.is_empty()
                && (batch.len() >= self.cfg.batch_records
                    || batch_bytes + bytes.len() > self.cfg.batch_bytes)
            {
                frames.push(Message::Feed { items: std::mem::take(&mut batch) });
                batch_bytes = 0;
            }
            batch_bytes += bytes.len();
            batch.push(FeedItemWire { seq: item.seq, record: bytes });
            if self.feed.sent_max <= self.feed.acked {
                self.feed.last_progress = now;
            }
            self.feed.sent_max = self.feed.sent_max.max(self.feed.next);
            self.feed.next += 1;
        }
        if !batch.is_empty() {
            frames.push(Message::Feed { items: batch });
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
            if self.feed.sent_max > self.feed.acked {
                at = at.min(self.feed.last_progress + self.cfg.retransmit_ms);
            }
        }
        let at = at.max(now + 1);
        if self.timer != Some(at) {
            self.timer = Some(at);
            self.out.push_back(HubAction::SetTimer { at_ms: at });
        }
    }
}

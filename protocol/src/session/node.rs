//! The node's side of a session: upstream sender of its outbox, downstream receiver of the
//! sources it follows. Sans-IO: events in, actions out (see the parent module).
//!
//! Per source the node holds its committed cursor and the header hashes of recent items. An
//! item is taken when its `prev_seq` is exactly what the node holds last (holes are entries for
//! others); a `prev_seq` beyond it is loss (ask again from the cursor); one below it means the
//! hub's view of the source changed, and two records under one `(source, seq)` are the hub
//! equivocating: both quarantine the source and raise an alarm. A relay log carries only its
//! provider's records.

use std::collections::{BTreeMap, VecDeque};

use super::wire::{self, FeedItemWire, Message, Source, SourceCursor, StreamMark};
use super::{Alarm, CloseReason, FeedItem, Recent, RecordCheck, SessionConfig, Violation};
use crate::hash::ChainHash;
use crate::identity::{DeviceId, IdentityKey};
use crate::record::{Body, Record, StreamId};

/// What happened to the node's session.
#[derive(Debug)]
pub enum NodeEvent<'a> {
    /// The transport is up: the session says `Hello`.
    Connected,
    /// One frame from the hub.
    BytesReceived(&'a [u8]),
    /// The timer set by the last [`NodeAction::SetTimer`] fired.
    TimerFired,
    /// The driver durably appended `record` to its outbox (at the tip the session knows).
    RecordAppended(Record),
    /// Records the session asked for with [`NodeAction::LoadRecords`], in `seq` order.
    RecordsLoaded(Vec<Record>),
    /// The driver durably committed the items of `source` up to `seq`.
    FeedCommitted { source: Source, seq: u64 },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// Send this frame to the hub.
    Send(Vec<u8>),
    /// Call back with `TimerFired` at this instant (replaces earlier timers).
    SetTimer { at_ms: i64 },
    /// Durably commit this item of `source`, then report [`NodeEvent::FeedCommitted`].
    CommitFeed { source: Source, item: FeedItem },
    /// A restored node learns its stream tip from the hub: append after it, and drop local
    /// records above the common prefix (they never reached the hub and are superseded).
    AdoptTip { stream: StreamId, seq: u64, header_hash: ChainHash },
    /// The tips are known: appends are allowed from now on.
    TipsKnown,
    /// The hub has committed up to `seq` (the driver may record it as a hint).
    Acked { stream: StreamId, seq: u64 },
    /// Load outbox records of `stream` from `from_seq` to the tip and report them with
    /// [`NodeEvent::RecordsLoaded`].
    LoadRecords { stream: StreamId, from_seq: u64 },
    /// A key pinned on first sight from a self-signed `DeviceKeys` feed record.
    KeyPinned(IdentityKey),
    /// Persist: `source` is quarantined (the hub equivocated on it or re-numbered it).
    QuarantineSource(Source),
    /// Raise an alarm to a person.
    Alarm(Alarm),
    /// Close the connection; the session is over (reconnect with a new one after a backoff).
    Close(CloseReason),
}

/// Why an append was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// A restored node must learn its tips from the hub before it appends.
    #[error("stream tips unknown: wait for the hub's Welcome")]
    TipsUnknown,
    /// The record is not the next of its stream.
    #[error("not the next record of the stream: expected seq {expected}")]
    NotNext { expected: u64 },
    /// The record is not authored by this node.
    #[error("record of another author")]
    WrongAuthor,
}

/// What the node durably holds of one stream when a session starts.
#[derive(Debug, Clone)]
pub struct LocalStream {
    pub stream: StreamId,
    pub tip_seq: u64,
    pub tip_hash: ChainHash,
    /// The outbox records the hub may not have committed yet (at least those above the last
    /// ack the node saw), in `seq` order, ending at the tip.
    pub unacked: Vec<Record>,
}

/// Everything a node session starts from.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub identity: IdentityKey,
    /// The hub's key, pinned at enrolment.
    pub hub: IdentityKey,
    pub streams: Vec<LocalStream>,
    /// What the node holds of every source it has received from.
    pub sources: Vec<LocalSource>,
    /// Authors whose feed records this node accepts (pinned provider keys).
    pub authors: Vec<IdentityKey>,
    /// The node was restored from a backup: no append before the hub's tips are known.
    pub restored: bool,
}

/// What the node durably holds of one source when a session starts.
#[derive(Debug, Clone)]
pub struct LocalSource {
    pub source: Source,
    /// Highest committed `seq`.
    pub committed: u64,
    /// (seq, header hash) of recent committed items, including `committed`'s.
    pub recent: Vec<(u64, ChainHash)>,
    /// Quarantined ([`NodeAction::QuarantineSource`]): nothing more is committed from it until
    /// a person decides.
    pub quarantined: bool,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    Idle,
    Hello { sent_at: i64 },
    Open,
    Closed,
}

#[derive(Debug)]
struct Up {
    tip_seq: u64,
    tip_hash: ChainHash,
    held: BTreeMap<u64, Record>,
    acked: u64,
    next: u64,
    sent_max: u64,
    last_progress: i64,
    quarantined: bool,
    loading: bool,
}

#[derive(Debug)]
struct FeedIn {
    committed: u64,
    pending: u64,
    recent: Recent,
    resend_asked_at: Option<i64>,
    quarantined: bool,
}

/// The node's side of one connection to the hub.
pub struct NodeSession<C: RecordCheck> {
    cfg: SessionConfig,
    me: DeviceId,
    identity: IdentityKey,
    hub: IdentityKey,
    check: C,
    phase: Phase,
    streams: BTreeMap<StreamId, Up>,
    sources: BTreeMap<Source, FeedIn>,
    authors: BTreeMap<DeviceId, IdentityKey>,
    restored: bool,
    tips_known: bool,
    last_rx: i64,
    last_tx: i64,
    ping_nonce: u64,
    out: VecDeque<NodeAction>,
    timer: Option<i64>,
}

impl<C: RecordCheck> NodeSession<C> {
    pub fn new(cfg: SessionConfig, setup: NodeSetup, check: C) -> Self {
        let mut streams = BTreeMap::new();
        for local in setup.streams {
            let held: BTreeMap<u64, Record> =
                local.unacked.into_iter().map(|r| (r.header().seq, r)).collect();
            streams.insert(
                local.stream,
                Up {
                    tip_seq: local.tip_seq,
                    tip_hash: local.tip_hash,
                    held,
                    acked: 0,
                    next: 1,
                    sent_max: 0,
                    last_progress: 0,
                    quarantined: false,
                    loading: false,
                },
            );
        }
        let mut authors: BTreeMap<DeviceId, IdentityKey> =
            setup.authors.into_iter().map(|k| (k.device_id(), k)).collect();
        authors.insert(setup.hub.device_id(), setup.hub);
        NodeSession {
            cfg: cfg_clamped(cfg),
            me: setup.identity.device_id(),
            identity: setup.identity,
            hub: setup.hub,
            check,
            phase: Phase::Idle,
            streams,
            sources: setup
                .sources
                .into_iter()
                .map(|s| {
                    let feed = FeedIn {
                        committed: s.committed,
                        pending: s.committed,
                        recent: Recent::new(cfg.recent_hashes, s.recent),
                        resend_asked_at: None,
                        quarantined: s.quarantined,
                    };
                    (s.source, feed)
                })
                .collect(),
            authors,
            restored: setup.restored,
            tips_known: !setup.restored,
            last_rx: 0,
            last_tx: 0,
            ping_nonce: 0,
            out: VecDeque::new(),
            timer: None,
        }
    }

    /// The next action for the driver, in order.
    pub fn poll_action(&mut self) -> Option<NodeAction> {
        self.out.pop_front()
    }

    /// Whether the session has closed (the driver drops the connection).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the hub's `Welcome` arrived on this connection.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether appends are allowed (always, unless restored and the hub has not answered yet).
    pub fn tips_known(&self) -> bool {
        self.tips_known
    }

    /// The local tip of `stream` (seq, header hash) the next append must extend.
    pub fn tip(&self, stream: StreamId) -> (u64, ChainHash) {
        self.streams.get(&stream).map_or((0, ChainHash::GENESIS), |u| (u.tip_seq, u.tip_hash))
    }

    /// Feeds one event. Only `RecordAppended` can be refused (the record is then not taken).
    pub fn handle(&mut self, now: i64, event: NodeEvent<'_>) -> Result<(), AppendError> {
        if self.phase == Phase::Closed {
            return Ok(());
        }
        match event {
            NodeEvent::Connected => {
                self.last_rx = now;
                self.send_hello(now);
            }
            NodeEvent::BytesReceived(bytes) => {
                self.last_rx = now;
                match wire::decode(bytes) {
                    Ok(message) => self.on_message(now, message),
                    Err(e) => self.close(CloseReason::Violation(Violation::Frame(e))),
                }
            }
            NodeEvent::TimerFired => self.on_timer(now),
            NodeEvent::RecordAppended(record) => self.append(now, record)?,
            NodeEvent::RecordsLoaded(records) => {
                for record in records {
                    let header = *record.header();
                    if header.author != self.me {
                        continue;
                    }
                    if let Some(up) = self.streams.get_mut(&header.stream) {
                        if header.seq > up.acked && header.seq <= up.tip_seq {
                            up.held.insert(header.seq, record);
                        }
                        up.loading = false;
                    }
                }
                self.pump(now);
            }
            NodeEvent::FeedCommitted { source, seq } => {
                if let Some(feed) = self.sources.get_mut(&source)
                    && seq > feed.committed
                    && seq <= feed.pending
                {
                    feed.committed = seq;
                    self.send(now, &Message::FeedAck { source, seq });
                }
            }
        }
        self.arm_timer(now);
        Ok(())
    }

    fn append(&mut self, now: i64, record: Record) -> Result<(), AppendError> {
        if !self.tips_known {
            return Err(AppendError::TipsUnknown);
        }
        let header = *record.header();
        if header.author != self.me {
            return Err(AppendError::WrongAuthor);
        }
        let up = self.streams.entry(header.stream).or_insert_with(|| Up {
            tip_seq: 0,
            tip_hash: ChainHash::GENESIS,
            held: BTreeMap::new(),
            acked: 0,
            next: 1,
            sent_max: 0,
            last_progress: now,
            quarantined: false,
            loading: false,
        });
        let expected = up.tip_seq + 1;
        if header.seq != expected || header.prev_hash != up.tip_hash {
            return Err(AppendError::NotNext { expected });
        }
        up.tip_seq = header.seq;
        up.tip_hash = record.header_hash();
        up.held.insert(header.seq, record);
        self.pump(now);
        Ok(())
    }

    fn send_hello(&mut self, now: i64) {
        let cursors = self
            .sources
            .iter()
            .filter(|(_, feed)| feed.committed > 0)
            .take(wire::MAX_SOURCES)
            .map(|(source, feed)| SourceCursor {
                source: *source,
                seq: feed.committed,
                header_hash: feed.recent.get(feed.committed).unwrap_or_default(),
            })
            .collect();
        let hello = Message::Hello { device: self.me, identity: self.identity, cursors };
        self.send(now, &hello);
        self.phase = Phase::Hello { sent_at: now };
    }

    fn on_message(&mut self, now: i64, message: Message) {
        match message {
            Message::Welcome { hub, identity, marks } => self.on_welcome(now, hub, identity, marks),
            Message::Ack { stream, seq } => self.on_ack(now, stream, seq),
            Message::Resend { stream, from_seq } => {
                if let Some(up) = self.streams.get_mut(&stream) {
                    let from = from_seq.max(up.acked + 1);
                    if from < up.next {
                        up.next = from;
                        up.last_progress = now;
                    }
                }
                self.pump(now);
            }
            Message::Refused { stream, seq, reason } => {
                if let Some(up) = self.streams.get_mut(&stream)
                    && !up.quarantined
                {
                    up.quarantined = true;
                    self.out.push_back(NodeAction::Alarm(Alarm::Refused { stream, seq, reason }));
                }
            }
            Message::Feed { source, items } => self.on_feed(now, source, items),
            Message::Ping { nonce } => self.send(now, &Message::Pong { nonce }),
            Message::Pong { .. } => {}
            Message::Hello { .. }
            | Message::Records { .. }
            | Message::FeedAck { .. }
            | Message::FeedResend { .. } => {
                self.close(CloseReason::Violation(Violation::Unexpected));
            }
        }
    }

    fn on_welcome(
        &mut self,
        now: i64,
        hub: DeviceId,
        identity: IdentityKey,
        marks: Vec<StreamMark>,
    ) {
        if identity != self.hub || hub != self.hub.device_id() {
            self.close(CloseReason::Violation(Violation::WrongPeer));
            return;
        }
        if self.phase == Phase::Open {
            // A duplicated Welcome: the marks are at most as new as what we have learnt since.
            return;
        }
        self.phase = Phase::Open;
        let marks: BTreeMap<StreamId, StreamMark> =
            marks.into_iter().map(|m| (m.stream, m)).collect();
        for stream in marks.keys() {
            if !self.streams.contains_key(stream) {
                self.streams.insert(
                    *stream,
                    Up {
                        tip_seq: 0,
                        tip_hash: ChainHash::GENESIS,
                        held: BTreeMap::new(),
                        acked: 0,
                        next: 1,
                        sent_max: 0,
                        last_progress: now,
                        quarantined: false,
                        loading: false,
                    },
                );
            }
        }
        let streams: Vec<StreamId> = self.streams.keys().copied().collect();
        for stream in streams {
            let mark =
                marks.get(&stream).map_or((0, ChainHash::GENESIS), |m| (m.seq, m.header_hash));
            let Some(up) = self.streams.get_mut(&stream) else { continue };
            let ours = if mark.0 == 0 || mark.0 > up.tip_seq {
                None
            } else if mark.0 == up.tip_seq {
                Some(up.tip_hash)
            } else {
                up.held.get(&mark.0).map(Record::header_hash)
            };
            let forked = ours.is_some_and(|h| h != mark.1);
            if mark.0 > up.tip_seq || (forked && self.restored) {
                // The hub is ahead, or a restored node's backup holds records that never
                // reached the hub and were superseded: never reuse a seq, continue after the
                // hub's tip (the driver drops its local records above the common prefix).
                if !self.restored {
                    self.out.push_back(NodeAction::Alarm(Alarm::HubAhead {
                        stream,
                        local_seq: up.tip_seq,
                        hub_seq: mark.0,
                    }));
                }
                up.tip_seq = mark.0;
                up.tip_hash = mark.1;
                up.held.clear();
                self.out.push_back(NodeAction::AdoptTip {
                    stream,
                    seq: mark.0,
                    header_hash: mark.1,
                });
            } else if forked {
                up.quarantined = true;
                self.out.push_back(NodeAction::Alarm(Alarm::Forked { stream, seq: mark.0 }));
            }
            up.acked = mark.0;
            up.held.retain(|seq, _| *seq > mark.0);
            up.next = mark.0 + 1;
            up.sent_max = mark.0;
            up.last_progress = now;
            if up.next <= up.tip_seq && !up.held.contains_key(&up.next) && !up.loading {
                up.loading = true;
                self.out.push_back(NodeAction::LoadRecords { stream, from_seq: up.next });
            }
        }
        if !self.tips_known {
            self.tips_known = true;
        }
        self.out.push_back(NodeAction::TipsKnown);
        self.pump(now);
    }

    fn on_ack(&mut self, now: i64, stream: StreamId, seq: u64) {
        let Some(up) = self.streams.get_mut(&stream) else {
            self.close(CloseReason::Violation(Violation::OutOfRange));
            return;
        };
        if seq > up.sent_max.max(up.acked) {
            self.close(CloseReason::Violation(Violation::OutOfRange));
            return;
        }
        if seq > up.acked {
            up.acked = seq;
            up.held.retain(|s, _| *s > seq);
            up.last_progress = now;
            if up.next <= seq {
                up.next = seq + 1;
            }
            self.out.push_back(NodeAction::Acked { stream, seq });
        }
        self.pump(now);
    }

    fn on_feed(&mut self, now: i64, source: Source, items: Vec<FeedItemWire>) {
        if self.phase != Phase::Open {
            return;
        }
        let feed = self.sources.entry(source).or_insert_with(|| FeedIn {
            committed: 0,
            pending: 0,
            recent: Recent::new(self.cfg.recent_hashes, []),
            resend_asked_at: None,
            quarantined: false,
        });
        if feed.quarantined {
            return;
        }
        for item in items {
            let record = match Record::decode(&item.record) {
                Ok(r) => r,
                Err(e) => {
                    self.close(CloseReason::Violation(Violation::Record(e)));
                    return;
                }
            };
            if item.seq == 0 || item.prev_seq >= item.seq {
                self.close(CloseReason::Violation(Violation::OutOfRange));
                return;
            }
            if let Source::Relay(provider) = source
                && record.header().author != provider
            {
                self.close(CloseReason::Violation(Violation::WrongAuthor));
                return;
            }
            let hash = record.header_hash();
            let Some(feed) = self.sources.get_mut(&source) else { return };
            if item.seq <= feed.pending {
                match feed.recent.get(item.seq) {
                    Some(known) if known == hash => {
                        if item.seq <= feed.committed {
                            let seq = feed.committed;
                            self.send(now, &Message::FeedAck { source, seq });
                        }
                        continue;
                    }
                    Some(known) => {
                        if !self.verify_feed_record(&record) {
                            return;
                        }
                        let alarm =
                            Alarm::FeedEquivocation { source, seq: item.seq, known, offered: hash };
                        self.quarantine_source(source, alarm);
                        return;
                    }
                    // Older than what we remember: already committed long ago.
                    None => continue,
                }
            }
            if item.prev_seq > feed.pending {
                let asked_recently =
                    feed.resend_asked_at.is_some_and(|at| now < at + self.cfg.retransmit_ms);
                if !asked_recently {
                    feed.resend_asked_at = Some(now);
                    let from_seq = feed.pending + 1;
                    self.send(now, &Message::FeedResend { source, from_seq });
                }
                return;
            }
            if item.prev_seq < feed.pending {
                let held = feed.pending;
                if !self.verify_feed_record(&record) {
                    return;
                }
                let alarm = Alarm::FeedInconsistent {
                    source,
                    seq: item.seq,
                    prev_seq: item.prev_seq,
                    held,
                };
                self.quarantine_source(source, alarm);
                return;
            }
            if !self.verify_feed_record(&record) {
                return;
            }
            let Some(feed) = self.sources.get_mut(&source) else { return };
            feed.pending = item.seq;
            feed.resend_asked_at = None;
            feed.recent.insert(item.seq, hash);
            let item = FeedItem { seq: item.seq, record };
            self.out.push_back(NodeAction::CommitFeed { source, item });
        }
    }

    fn quarantine_source(&mut self, source: Source, alarm: Alarm) {
        if let Some(feed) = self.sources.get_mut(&source) {
            feed.quarantined = true;
        }
        self.out.push_back(NodeAction::QuarantineSource(source));
        self.out.push_back(NodeAction::Alarm(alarm));
    }

    /// Verifies a feed record against the pinned key of its author, pinning a self-signed
    /// `DeviceKeys` record's key on first sight. Closes the session on failure.
    fn verify_feed_record(&mut self, record: &Record) -> bool {
        let author = record.header().author;
        let key = match self.authors.get(&author) {
            Some(key) => *key,
            None => match record.body() {
                Ok(Body::DeviceKeys(keys)) if keys.identity.device_id() == author => {
                    self.authors.insert(author, keys.identity);
                    self.out.push_back(NodeAction::KeyPinned(keys.identity));
                    keys.identity
                }
                _ => {
                    self.close(CloseReason::Violation(Violation::UnknownAuthor(author)));
                    return false;
                }
            },
        };
        match self.check.verify(record, &key) {
            Ok(()) => true,
            Err(e) => {
                self.close(CloseReason::Violation(Violation::Signature(e)));
                false
            }
        }
    }

    fn on_timer(&mut self, now: i64) {
        match self.phase {
            Phase::Hello { sent_at } if now >= sent_at + self.cfg.hello_retry_ms => {
                self.send_hello(now);
            }
            Phase::Open => {
                for up in self.streams.values_mut() {
                    if up.sent_max > up.acked && now >= up.last_progress + self.cfg.retransmit_ms {
                        up.next = up.acked + 1;
                        up.last_progress = now;
                    }
                }
                self.pump(now);
            }
            _ => {}
        }
        if now >= self.last_rx + self.cfg.dead_after_ms {
            self.close(CloseReason::DeadPeer);
            return;
        }
        if now >= self.last_tx + self.cfg.heartbeat_ms {
            self.ping_nonce += 1;
            let nonce = self.ping_nonce;
            self.send(now, &Message::Ping { nonce });
        }
    }

    /// Sends what the windows allow, batched.
    fn pump(&mut self, now: i64) {
        if self.phase != Phase::Open {
            return;
        }
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut frames: Vec<Message> = Vec::new();
        let mut need_load: Vec<(StreamId, u64)> = Vec::new();
        for (stream, up) in self.streams.iter_mut() {
            if up.quarantined || up.loading {
                continue;
            }
            while up.next <= up.tip_seq && up.next <= up.acked + self.cfg.window {
                let Some(record) = up.held.get(&up.next) else {
                    need_load.push((*stream, up.next));
                    up.loading = true;
                    break;
                };
                let bytes = record.encode();
                if !batch.is_empty()
                    && (batch.len() >= self.cfg.batch_records
                        || batch_bytes + bytes.len() > self.cfg.batch_bytes)
                {
                    frames.push(Message::Records { records: std::mem::take(&mut batch) });
                    batch_bytes = 0;
                }
                batch_bytes += bytes.len();
                batch.push(bytes);
                if up.sent_max < up.acked + 1 {
                    up.last_progress = now;
                }
                up.sent_max = up.sent_max.max(up.next);
                up.next += 1;
            }
        }
        if !batch.is_empty() {
            frames.push(Message::Records { records: batch });
        }
        for (stream, from_seq) in need_load {
            self.out.push_back(NodeAction::LoadRecords { stream, from_seq });
        }
        for frame in frames {
            self.send(now, &frame);
        }
    }

    fn send(&mut self, now: i64, message: &Message) {
        self.last_tx = now;
        self.out.push_back(NodeAction::Send(wire::encode(message)));
    }

    fn close(&mut self, reason: CloseReason) {
        self.phase = Phase::Closed;
        self.out.push_back(NodeAction::Close(reason));
    }

    fn arm_timer(&mut self, now: i64) {
        if self.phase == Phase::Closed || self.phase == Phase::Idle {
            return;
        }
        let mut at =
            (self.last_rx + self.cfg.dead_after_ms).min(self.last_tx + self.cfg.heartbeat_ms);
        if let Phase::Hello { sent_at } = self.phase {
            at = at.min(sent_at + self.cfg.hello_retry_ms);
        }
        for up in self.streams.values() {
            if up.sent_max > up.acked {
                at = at.min(up.last_progress + self.cfg.retransmit_ms);
            }
        }
        let at = at.max(now + 1);
        if self.timer != Some(at) {
            self.timer = Some(at);
            self.out.push_back(NodeAction::SetTimer { at_ms: at });
        }
    }
}

pub(super) fn cfg_clamped(mut cfg: SessionConfig) -> SessionConfig {
    cfg.window = cfg.window.max(1);
    cfg.batch_records = cfg.batch_records.clamp(1, wire::MAX_BATCH_RECORDS);
    cfg.batch_bytes = cfg.batch_bytes.clamp(1, wire::MAX_FRAME_LEN / 2);
    cfg.retransmit_ms = cfg.retransmit_ms.max(1);
    cfg.hello_retry_ms = cfg.hello_retry_ms.max(1);
    cfg.heartbeat_ms = cfg.heartbeat_ms.max(1);
    cfg.dead_after_ms = cfg.dead_after_ms.max(cfg.heartbeat_ms + 1);
    cfg
}

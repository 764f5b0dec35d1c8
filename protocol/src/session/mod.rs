//! The sans-IO sync session between a node and the hub (protocol.md, "The sync session").
//!
//! Two directions, one model (the FIX session layer, kept small):
//!
//! - **Upstream** (node outbox → hub): the node's [`NodeSession`] sends its records, `seq` 1, 2,
//!   3 … per stream; the hub's [`HubSession`] verifies and chains them, asks the driver to
//!   commit them ([`HubAction::Commit`]) and acknowledges the highest contiguous `seq` only after
//!   the driver reports the durable commit ([`HubEvent::Committed`]). After every reconnect the
//!   node says `Hello`, the hub answers `Welcome` with its committed marks and the node resends
//!   from there. Same `seq` and header hash below the mark: a duplicate, acked and dropped. Same
//!   `seq`, different header hash (validly signed): equivocation — refused, alarmed, and the
//!   stream quarantined until a person decides. A gap asks for a resend from the mark.
//! - **Downstream** (version 2, protocol.md "Downstream, version 2"): every record a node
//!   receives belongs to a [`Source`] — a provider's relay log shared by all its subscribers, or
//!   the device's own inbox — with a `seq` the hub assigned when it committed the entry. The
//!   node's `Hello` carries its cursor per source; the [`HubSession`] sends the entries this
//!   device may see from there (`Feed{source, items}`, each item naming the `prev_seq` of the
//!   previous item this device was sent, so holes left by entries for others are not loss), the
//!   [`NodeSession`] verifies each record against its pinned author keys, asks the driver to
//!   commit it ([`NodeAction::CommitFeed`]) and acknowledges `(source, seq)` after
//!   [`NodeEvent::FeedCommitted`]; the hub resends what is unacknowledged. The hub's driver
//!   hands live entries to every session already encoded ([`LogEntry`]: one encoding shared by
//!   all sessions) and reads the store only for catch-up ([`HubAction::LoadSource`]), in pages.
//!
//! Both sides: a window bounds unacknowledged records, records are batched per frame,
//! go-back-N retransmission after a timeout covers lost frames, heartbeats detect a dead peer,
//! and [`Backoff`] spaces reconnects exponentially with jitter from the handed RNG. A restored
//! node (`restored = true`) refuses appends until the hub's `Welcome` told it its stream tips
//! ([`NodeAction::AdoptTip`], [`NodeAction::TipsKnown`]), so it never reuses a `seq`.
//!
//! Drivers: call `handle(now_ms, event)` and drain `poll_action()` until `None`, doing what each
//! action says; arm one timer at the latest [`NodeAction::SetTimer`]/[`HubAction::SetTimer`] and
//! feed `TimerFired`. Time is an argument, randomness is handed in; no I/O here.

mod hub;
mod node;
pub mod wire;

pub use hub::{HubAction, HubEvent, HubSession, HubSetup, SourceStart, StoredStream};
pub use node::{
    AppendError, LocalSource, LocalStream, NodeAction, NodeEvent, NodeSession, NodeSetup,
};
pub use wire::{Source, SourceCursor};

use crate::hash::ChainHash;
use crate::identity::{DeviceId, IdentityKey};
use crate::record::{DecodeError, Record, StreamId, VerifyError};
use wire::{FrameError, RefusedReason};

/// Limits and timers of a session. Times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Records sent but not acknowledged, per stream (and per source downstream; the hub holds
    /// at most this many items of a source per session). Default 64.
    pub window: u64,
    /// Records per frame. Default 32, at most [`wire::MAX_BATCH_RECORDS`].
    pub batch_records: usize,
    /// Bytes of records per frame (a single larger record still goes alone). Default 256 KiB.
    pub batch_bytes: usize,
    /// Without ack progress for this long, send again from the mark (go-back-N). Default 2 s.
    pub retransmit_ms: i64,
    /// Resend `Hello` this often until `Welcome` arrives. Default 2 s.
    pub hello_retry_ms: i64,
    /// Send a ping when nothing was sent for this long. Default 5 s.
    pub heartbeat_ms: i64,
    /// Close the session when nothing was received for this long. Default 20 s.
    pub dead_after_ms: i64,
    /// Header hashes remembered per stream for duplicate/equivocation detection. Default 4096.
    pub recent_hashes: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            window: 64,
            batch_records: 32,
            batch_bytes: 256 * 1024,
            retransmit_ms: 2_000,
            hello_retry_ms: 2_000,
            heartbeat_ms: 5_000,
            dead_after_ms: 20_000,
            recent_hashes: 4096,
        }
    }
}

/// One downstream item as the node receives it: its `seq` in its source and the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    pub seq: u64,
    pub record: Record,
}

/// One entry of a source as the hub holds it: its `seq` and the record's encoding, shared (a
/// live entry is encoded once and the same bytes go to every session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub record: std::sync::Arc<[u8]>,
}

impl LogEntry {
    /// The entry at `seq` carrying `record`.
    pub fn new(seq: u64, record: &Record) -> LogEntry {
        LogEntry { seq, record: record.encode().into() }
    }
}

/// Something a person must look at. Raised once per occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Alarm {
    /// (hub) Two validly signed records with the same (author, stream, seq); stream quarantined.
    Equivocation {
        author: DeviceId,
        stream: StreamId,
        seq: u64,
        known: ChainHash,
        offered: ChainHash,
    },
    /// (hub) A validly signed record at the next `seq` whose `prev_hash` is not the tip's.
    BrokenChain { author: DeviceId, stream: StreamId, seq: u64 },
    /// (node) The hub sent two different records under one `(source, seq)`; the source is
    /// quarantined.
    FeedEquivocation { source: Source, seq: u64, known: ChainHash, offered: ChainHash },
    /// (node) The hub sent an item whose `prev_seq` skips over an item this node holds: the
    /// hub's view of the source changed (re-numbered); the source is quarantined.
    FeedInconsistent { source: Source, seq: u64, prev_seq: u64, held: u64 },
    /// (node) The hub refused a record; the stream is quarantined on the hub.
    Refused { stream: StreamId, seq: u64, reason: RefusedReason },
    /// (node) The hub's committed record at its mark differs from ours.
    Forked { stream: StreamId, seq: u64 },
    /// (node) The hub holds more of a stream than this node, which was not restored.
    HubAhead { stream: StreamId, local_seq: u64, hub_seq: u64 },
    /// (hub) The node claims a cursor beyond the source's tip.
    FeedMarkBeyondTip { source: Source, mark: u64, tip: u64 },
}

/// Why a peer's bytes ended the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("bad record: {0}")]
    Record(DecodeError),
    #[error("record does not verify: {0}")]
    Signature(VerifyError),
    /// The peer's Hello/Welcome names another key than the authenticated/pinned one.
    #[error("peer identity is not the expected one")]
    WrongPeer,
    /// A node sent a record of another author, or a relay log carried a record of another
    /// author than its provider.
    #[error("record of another author")]
    WrongAuthor,
    /// A feed record of an author whose key the node has not pinned.
    #[error("feed record of an unknown author {0}")]
    UnknownAuthor(DeviceId),
    /// An ack of something never sent, or a `seq` of 0.
    #[error("acknowledgement or seq out of range")]
    OutOfRange,
    /// A message that this side never receives.
    #[error("unexpected message")]
    Unexpected,
}

/// Why a session closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// Nothing heard for `dead_after_ms`.
    #[error("peer silent too long")]
    DeadPeer,
    /// The peer misbehaved (or its bytes were corrupted).
    #[error("protocol violation: {0}")]
    Violation(Violation),
}

/// How a session checks record signatures. The default verifies Ed25519; the simulator plugs in
/// a memoizing checker so thousands of seeds reuse each verification of identical bytes.
pub trait RecordCheck {
    fn verify(&mut self, record: &Record, key: &IdentityKey) -> Result<(), VerifyError>;
}

/// Verifies every record's signature.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureCheck;

impl RecordCheck for SignatureCheck {
    fn verify(&mut self, record: &Record, key: &IdentityKey) -> Result<(), VerifyError> {
        record.verify(key)
    }
}

/// Exponential reconnect backoff with full jitter: the n-th delay is uniform in
/// `[base/2, min(max, base·2ⁿ)]`, from the RNG the driver hands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
    attempt: u32,
}

impl Backoff {
    pub fn new(base_ms: u64, max_ms: u64) -> Backoff {
        Backoff { base_ms: base_ms.max(1), max_ms: max_ms.max(base_ms.max(1)), attempt: 0 }
    }

    /// The delay before the next attempt.
    pub fn next_delay_ms<R: rand_core::Rng + ?Sized>(&mut self, rng: &mut R) -> u64 {
        let ceiling = self.base_ms.saturating_mul(1u64 << self.attempt.min(32)).min(self.max_ms);
        let floor = (self.base_ms / 2).min(ceiling);
        self.attempt = self.attempt.saturating_add(1);
        floor + rng.next_u64() % (ceiling - floor + 1)
    }

    /// After a session that worked (a `Welcome` arrived).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Ring of recent header hashes by `seq`, bounded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent {
    hashes: std::collections::BTreeMap<u64, ChainHash>,
    capacity: u64,
}

impl Recent {
    pub(crate) fn new(capacity: u64, entries: impl IntoIterator<Item = (u64, ChainHash)>) -> Self {
        let mut recent = Recent { hashes: Default::default(), capacity: capacity.max(1) };
        for (seq, hash) in entries {
            recent.insert(seq, hash);
        }
        recent
    }

    pub(crate) fn get(&self, seq: u64) -> Option<ChainHash> {
        self.hashes.get(&seq).copied()
    }

    pub(crate) fn insert(&mut self, seq: u64, hash: ChainHash) {
        self.hashes.insert(seq, hash);
        while self.hashes.len() as u64 > self.capacity {
            self.hashes.pop_first();
        }
    }
}

//! The session's messages and their frames.
//!
//! ```text
//! frame = version:u8 (=2) ‖ postcard(Message) ‖ check:[u8;8]
//! check = BLAKE3(version ‖ postcard(Message))[..8]
//! ```
//!
//! The transport (QUIC, TLS) already protects integrity; the check is a cheap second line that
//! turns any corruption into a typed [`FrameError`] and a closed session instead of a plausible
//! wrong ack. Records inside messages are carried as their own encoding and decoded (and
//! verified) one by one by the sessions. Every length is bounded: a frame by
//! [`MAX_FRAME_LEN`], a batch by [`MAX_BATCH_RECORDS`]. No I/O here.

use serde::{Deserialize, Serialize};

use crate::hash::ChainHash;
use crate::identity::{DeviceId, IdentityKey};
use crate::record::{DecodeError, StreamId};

/// Version byte of session frames (2: downstream by source, protocol.md "Downstream, version 2").
pub const SESSION_VERSION: u8 = 2;
/// Upper bound of one frame.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Upper bound of records (or feed items) in one message.
pub const MAX_BATCH_RECORDS: usize = 256;
/// Upper bound of source cursors in one `Hello` (a device follows at most this many providers).
pub const MAX_SOURCES: usize = 4096;
const CHECK_LEN: usize = 8;

/// The sync protocol version the node says in its hello and the hub answers with (u16,
/// big-endian after [`HELLO_MAGIC`]). Version 2: shared source logs and per-source cursors; a
/// version 1 node is answered [`HELLO_UPGRADE`].
pub const PROTOCOL_VERSION: u16 = 2;
/// First bytes of the hello the node sends on the first bidirectional stream, before its
/// version.
pub const HELLO_MAGIC: &[u8; 3] = b"TCH";
/// Hello answer: accepted, followed by the hub's version (u16 BE).
pub const HELLO_ACCEPTED: u8 = 0;
/// Hello answer: the node must upgrade, followed by the minimum version the hub accepts (u16 BE).
pub const HELLO_UPGRADE: u8 = 1;

/// QUIC application close codes of the sync connection, one definition for both ends. They are
/// `u32` so that a QUIC `VarInt` is made from one without a fallible conversion (`VarInt::from`);
/// a received code (a `u64`) is compared through `u64::from`.
pub mod close_code {
    /// The hub is shutting down.
    pub const SHUTDOWN: u32 = 0;
    /// The device is not enrolled, or revoked.
    pub const DEVICE_REFUSED: u32 = 0x10;
    /// The node's protocol version is too old.
    pub const UPGRADE_REQUIRED: u32 = 0x11;
    /// The hello was malformed or late.
    pub const BAD_HELLO: u32 = 0x12;
    /// Too many connections for one device.
    pub const TOO_MANY: u32 = 0x13;
    /// The sync session closed (dead peer, protocol violation); the node reconnects.
    pub const SESSION_CLOSED: u32 = 0x14;
}

/// The highest contiguous committed `seq` of one stream and its header hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMark {
    pub stream: StreamId,
    pub seq: u64,
    pub header_hash: ChainHash,
}

/// Why the hub refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RefusedReason {
    /// Same `seq`, different header hash: the stream is quarantined.
    Equivocation,
    /// A validly signed record that does not extend the chain.
    BrokenChain,
    /// The stream is quarantined until a person decides.
    Quarantined,
}

/// Where a downstream record comes from (protocol.md, "Downstream, version 2"). Every source has
/// its own `seq`, assigned by the hub when it commits the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Source {
    /// A provider device's relay log, shared by all its subscribers: its `DeviceKeys` record
    /// first, then its signals, modifications and closes, unchanged. Every record in it is
    /// authored by that device.
    Relay(DeviceId),
    /// The receiving device's own inbox: the hub's receipts for its records, hub-signed requests
    /// and grants for it, and whatever the hub relays to this device alone.
    Inbox,
}

impl Source {
    /// A stable text form (`inbox`, `relay:<device>`), for stores and logs.
    pub fn to_text(&self) -> String {
        match self {
            Source::Inbox => "inbox".to_string(),
            Source::Relay(device) => format!("relay:{}", device.to_text()),
        }
    }

    /// Parses [`Source::to_text`]'s form.
    pub fn from_text(text: &str) -> Option<Source> {
        if text == "inbox" {
            return Some(Source::Inbox);
        }
        let device = text.strip_prefix("relay:")?;
        DeviceId::parse(device).ok().map(Source::Relay)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// The node's committed position in one source: the last `seq` it holds and that item's header
/// hash (the genesis hash at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCursor {
    pub source: Source,
    pub seq: u64,
    pub header_hash: ChainHash,
}

/// One item of a source as sent to one device: its `seq` in the source, the `seq` of the
/// previous item *this device* was sent from that source (0 for none: items it may not see
/// leave holes, and the node still detects loss), and the record (any author's, relayed
/// unchanged), encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedItemWire {
    pub seq: u64,
    pub prev_seq: u64,
    pub record: Vec<u8>,
}

/// Everything node and hub say to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// node → hub, first on every connection: who I am and my committed cursor in every
    /// source I hold items of.
    Hello {
        device: DeviceId,
        identity: IdentityKey,
        cursors: Vec<SourceCursor>,
    },
    /// hub → node: who the hub is and its committed marks of every stream of this node.
    Welcome {
        hub: DeviceId,
        identity: IdentityKey,
        marks: Vec<StreamMark>,
    },
    /// node → hub: a batch of records of this node.
    Records {
        records: Vec<Vec<u8>>,
    },
    /// hub → node: everything up to `seq` of `stream` is durably committed.
    Ack {
        stream: StreamId,
        seq: u64,
    },
    /// hub → node: a gap; send again from `from_seq`.
    Resend {
        stream: StreamId,
        from_seq: u64,
    },
    /// hub → node: a record was refused and the stream quarantined.
    Refused {
        stream: StreamId,
        seq: u64,
        reason: RefusedReason,
    },
    /// hub → node: a batch of items of one source, in `seq` order.
    Feed {
        source: Source,
        items: Vec<FeedItemWire>,
    },
    /// node → hub: the items of `source` up to `seq` are durably committed.
    FeedAck {
        source: Source,
        seq: u64,
    },
    /// node → hub: a gap in `source`; send again from `from_seq`.
    FeedResend {
        source: Source,
        from_seq: u64,
    },
    /// Heartbeat, either way.
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
}

/// Every way a frame can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit")]
    Oversized(usize),
    #[error("frame truncated")]
    Truncated,
    #[error("unknown session version {0}")]
    UnknownVersion(u8),
    #[error("frame check failed (corrupted bytes)")]
    BadCheck,
    #[error("batch of {0} exceeds the limit")]
    BatchTooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(DecodeError),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

fn check(bytes: &[u8]) -> [u8; CHECK_LEN] {
    let hash = blake3::hash(bytes);
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&hash.as_bytes()[..CHECK_LEN]);
    out
}

/// Encodes a message into one frame.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = vec![SESSION_VERSION];
    // Messages are plain data; serializing into a Vec cannot fail.
    out.extend_from_slice(&postcard::to_allocvec(message).unwrap_or_default());
    let sum = check(&out);
    out.extend_from_slice(&sum);
    out
}

/// Re-seals a frame's check after its bytes were changed (for the simulator's adversary, which
/// tampers inside a frame the way a compromised relay could).
pub fn reseal(frame: &mut [u8]) {
    if frame.len() < 1 + CHECK_LEN {
        return;
    }
    let body_len = frame.len() - CHECK_LEN;
    let sum = check(&frame[..body_len]);
    frame[body_len..].copy_from_slice(&sum);
}

/// Decodes one frame. Never panics; every failure is a [`FrameError`].
pub fn decode(frame: &[u8]) -> Result<Message, FrameError> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(FrameError::Oversized(frame.len()));
    }
    if frame.len() < 1 + CHECK_LEN {
        return Err(FrameError::Truncated);
    }
    if frame[0] != SESSION_VERSION {
        return Err(FrameError::UnknownVersion(frame[0]));
    }
    let (body, sum) = frame.split_at(frame.len() - CHECK_LEN);
    if check(body) != sum {
        return Err(FrameError::BadCheck);
    }
    let (message, rest): (Message, _) = postcard::take_from_bytes(&body[1..])
        .map_err(|e| FrameError::Malformed(DecodeError::from_postcard(e)))?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    match &message {
        Message::Records { records } if records.len() > MAX_BATCH_RECORDS => {
            Err(FrameError::BatchTooLarge(records.len()))
        }
        Message::Feed { items, .. } if items.len() > MAX_BATCH_RECORDS => {
            Err(FrameError::BatchTooLarge(items.len()))
        }
        Message::Hello { cursors, .. } if cursors.len() > MAX_SOURCES => {
            Err(FrameError::BatchTooLarge(cursors.len()))
        }
        Message::Welcome { marks, .. } if marks.len() > MAX_BATCH_RECORDS => {
            Err(FrameError::BatchTooLarge(marks.len()))
        }
        _ => Ok(message),
    }
}

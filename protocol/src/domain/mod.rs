//! The domain types carried as record bodies: signals, their modifications and closes,
//! approvals, executions, account state, heartbeats, device keys and commands.
//!
//! Each type is the body of exactly one record [`Kind`](crate::record::Kind); its postcard
//! encoding is the body bytes (before sealing). The same types are the JSON of the hub's HTTP API
//! and the node's local API: snake_case fields, prices and money as decimal strings
//! (`rust_decimal`, never f64), times as unix milliseconds UTC (`*_ms`, i64), device ids in their
//! checksummed text form, ids and keys in lowercase hex.
//!
//! Application idempotency keys: a signal by its [`SignalId`], an execution by (signal, device),
//! an EA order by its `order_id`; a hub request by its [`RequestId`], a feature grant by its
//! [`GrantId`]. No I/O here.
//!
//! Record version 2 added the hub-signed requests and grants and the node's answers
//! ([`requests`]), the published account history ([`published`]), the lots actually chosen and
//! [`DecidedBy::Remote`] in [`Approval`], and the [`AccountFingerprint`] in [`DeviceKeys`]. The
//! version-1 layouts of the two changed types are kept in [`v1`] so records written before still
//! decode.

mod fingerprint;
mod ids;
pub mod published;
pub mod requests;
pub mod v1;

pub use fingerprint::{ACCOUNT_FINGERPRINT_CONTEXT, AccountFingerprint, account_fingerprint};
pub use ids::{GrantId, RequestId};
pub use published::{BalanceKind, BalanceOperation, Summary};
pub use requests::{
    AnswerOutcome, ApprovalRequest, Channel, Feature, FeatureGrant, Pending, RefusalReason,
    RemoteDecision, RequestAnswer, RiskPreview,
};

use core::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::identity::{DeviceId, IdentityKey, SealingPublicKey};

/// A signal's unique id: 16 bytes chosen by the provider node (random, from the handed RNG),
/// 32 lowercase hex digits in JSON.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignalId(pub [u8; 16]);

impl SignalId {
    /// A fresh id from the RNG the driver hands in.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> SignalId {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        SignalId(bytes)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<SignalId> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(SignalId(out))
    }
}

impl fmt::Debug for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignalId({})", self.to_hex())
    }
}

impl fmt::Display for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for SignalId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for SignalId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            SignalId::from_hex(&text)
                .ok_or_else(|| serde::de::Error::custom("a signal id is 32 hex digits"))
        } else {
            Ok(SignalId(<[u8; 16]>::deserialize(deserializer)?))
        }
    }
}

/// Chart timeframe of the bars a signal was computed on (MT5 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Timeframe {
    M1,
    M5,
    M15,
    M30,
    H1,
    H4,
    D1,
    W1,
    MN1,
}

impl Timeframe {
    /// MT5's name (`"H1"`): the wire's (serde) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Timeframe::M1 => "M1",
            Timeframe::M5 => "M5",
            Timeframe::M15 => "M15",
            Timeframe::M30 => "M30",
            Timeframe::H1 => "H1",
            Timeframe::H4 => "H4",
            Timeframe::D1 => "D1",
            Timeframe::W1 => "W1",
            Timeframe::MN1 => "MN1",
        }
    }
}

/// Direction of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// `"buy"` or `"sell"`: the wire's (serde) spelling, for SQL and pages too.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// How a signal enters: at market, or as a pending limit / stop order at `entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Market,
    Limit,
    Stop,
}

/// One named indicator value at signal time (e.g. `rsi` = `27.4`), for the track record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndicatorValue {
    pub name: String,
    pub value: Decimal,
}

/// A provider's trade signal. Unique by `id`; the provider's chain of signals, modifications and
/// closes is its verifiable track record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub id: SignalId,
    /// The provider device that emitted it (the record's author).
    pub provider: DeviceId,
    pub strategy_id: String,
    pub strategy_version: u32,
    /// Canonical symbol (e.g. `EURUSD`); the node maps it to the broker's name.
    pub symbol: String,
    pub timeframe: Timeframe,
    pub side: Side,
    pub entry_kind: EntryKind,
    pub entry: Decimal,
    pub stop: Decimal,
    pub tp1: Decimal,
    pub tp2: Option<Decimal>,
    /// Open time of the closed bar the signal was computed on.
    pub bar_time_ms: i64,
    /// After this instant the signal must not be entered.
    pub expires_at_ms: i64,
    /// Leg number within a multi-leg setup (1-based).
    pub leg: u8,
    pub indicators: Vec<IndicatorValue>,
    /// Reward-to-risk ratio at tp1.
    pub rr: Decimal,
}

/// A change to a signal's stop or targets (provider event, or a trader's command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modify {
    pub signal_id: SignalId,
    pub stop: Option<Decimal>,
    pub tp1: Option<Decimal>,
    pub tp2: Option<Decimal>,
    pub reason: String,
    pub at_ms: i64,
}

/// Closing a fraction of a signal's position (provider event, or a trader's command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    pub signal_id: SignalId,
    /// Fraction of the remaining position closed, in (0, 1]; `1` closes it all.
    pub fraction: Decimal,
    /// The provider's close price, if it closed at a known price.
    pub price: Option<Decimal>,
    pub reason: String,
    pub at_ms: i64,
}

/// What was decided about a signal for one subscriber device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Rejected,
    /// Nobody decided before the signal expired.
    Expired,
}

impl Decision {
    /// `"approved"`, `"rejected"` or `"expired"`: the wire's (serde) spelling, for SQL and
    /// pages too.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
            Decision::Expired => "expired",
        }
    }
}

/// Who decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The trader's automatic-approval policy.
    Policy,
    /// A person, by account/user id.
    Trader(String),
    /// A hub-signed [`ApprovalRequest`] (Telegram, Mini App, web) that the node honoured within
    /// its policy. Record version 2 only.
    Remote {
        /// The request it answers.
        request_id: RequestId,
    },
}

/// A subscriber's approval (or rejection) of a signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub signal_id: SignalId,
    pub device: DeviceId,
    pub decision: Decision,
    pub decided_by: DecidedBy,
    /// Version of the terms the trader consented to for automatic execution.
    pub consent_version: u32,
    pub reason: String,
    pub decided_at_ms: i64,
    /// The lots actually chosen (by the policy's sizing or the trader's request); `None` for a
    /// rejection, an expiry, or an approval recorded under record version 1. Absent in stored
    /// JSON written before version 2, which reads as `None`.
    #[serde(default)]
    pub lots: Option<Decimal>,
}

/// The terminal's answer to an order (EA ack), keyed by (signal, device) and by `order_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub order_id: u64,
    pub signal_id: SignalId,
    pub device: DeviceId,
    /// MT5 trade server return code (10009 = done).
    pub retcode: u32,
    pub ticket: Option<u64>,
    pub fill_price: Option<Decimal>,
    pub volume: Decimal,
    pub at_ms: i64,
}

/// One open position in a [`PositionSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub ticket: u64,
    pub signal_id: Option<SignalId>,
    pub symbol: String,
    pub side: Side,
    pub volume: Decimal,
    pub open_price: Decimal,
    pub stop: Option<Decimal>,
    pub tp: Option<Decimal>,
    pub profit: Decimal,
    pub opened_at_ms: i64,
}

/// The account and its open positions at one instant (private stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionSnapshot {
    pub device: DeviceId,
    pub at_ms: i64,
    pub balance: Decimal,
    pub equity: Decimal,
    pub margin: Decimal,
    pub positions: Vec<Position>,
}

/// A position that closed, with its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeClosed {
    pub signal_id: Option<SignalId>,
    pub device: DeviceId,
    pub ticket: u64,
    pub symbol: String,
    pub side: Side,
    pub volume: Decimal,
    pub open_price: Decimal,
    pub close_price: Decimal,
    pub opened_at_ms: i64,
    pub closed_at_ms: i64,
    pub profit: Decimal,
    pub commission: Decimal,
    pub swap: Decimal,
}

/// A point of the equity curve (private stream unless the trader opts in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquityPoint {
    pub device: DeviceId,
    pub at_ms: i64,
    pub balance: Decimal,
    pub equity: Decimal,
}

/// A node's liveness and health, recorded periodically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub device: DeviceId,
    pub at_ms: i64,
    /// Whether the EA polled the node recently.
    pub ea_connected: bool,
    /// Last terminal time seen by the EA, for clock-skew display.
    pub terminal_time_ms: Option<i64>,
}

/// A device's public keys, signed by its identity key as a record so that nobody (the hub
/// included) can substitute another sealing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeys {
    pub identity: IdentityKey,
    pub sealing: SealingPublicKey,
    /// A human label ("office PC").
    pub label: String,
    pub at_ms: i64,
    /// The trading account this device runs on, as [`account_fingerprint`] of the broker server
    /// and login under the key the hub handed out at enrolment: lets the hub see two devices on
    /// one account without learning the login. `None` before the EA's first hello, and for
    /// records of version 1.
    #[serde(default)]
    pub account_fingerprint: Option<AccountFingerprint>,
}

/// Commands a trader (through the hub or the local API) gives a node.
///
/// Externally tagged (`{"close_all": {...}}` in JSON) because postcard cannot carry internally
/// tagged enums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Close every position opened from signals (optionally only on one symbol).
    CloseAll {
        symbol: Option<String>,
        reason: String,
        at_ms: i64,
    },
    Modify(Modify),
    Close(Close),
}

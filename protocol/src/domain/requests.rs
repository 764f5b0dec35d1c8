//! Remote approvals and plans (record version 2): what the hub asks of a node
//! ([`ApprovalRequest`], [`FeatureGrant`], signed by the hub on
//! [`StreamId::HUB_REQUESTS`](crate::StreamId::HUB_REQUESTS)) and what the node tells the hub
//! and the trader's remote screens ([`Pending`], [`RequestAnswer`], on
//! [`StreamId::SHARED`](crate::StreamId::SHARED)).
//!
//! The hub never executes: an [`ApprovalRequest`] is honoured only within the node's own policy
//! (remote approval on, the signal still pending and not expired in market time, price drift and
//! risk rules passing), and the node says what it did in a [`RequestAnswer`]. Every enum that
//! reaches SQL or a bot message has an `as_str` with its stable text (the serde name). No I/O.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{GrantId, RequestId, SignalId};
use crate::identity::DeviceId;

/// The decision a remote request asks for (a request cannot ask for an expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteDecision {
    Approved,
    Rejected,
}

impl RemoteDecision {
    pub const ALL: [RemoteDecision; 2] = [RemoteDecision::Approved, RemoteDecision::Rejected];

    /// The stable wire/SQL text.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteDecision::Approved => "approved",
            RemoteDecision::Rejected => "rejected",
        }
    }
}

/// Where the trader pressed the button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Telegram,
    MiniApp,
    Web,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Telegram, Channel::MiniApp, Channel::Web];

    /// The stable wire/SQL text.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::MiniApp => "mini_app",
            Channel::Web => "web",
        }
    }
}

/// A trader's remote decision on a pending signal, turned into a request by the hub and signed
/// with the hub's identity key. The node checks it against the pinned hub key, that `device` is
/// itself and that `expires_at_ms` has not passed
/// ([`verify_hub_request`](crate::hub_request::verify_hub_request)), then decides under its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub request_id: RequestId,
    pub signal_id: SignalId,
    /// The device asked (the only one that may act on it).
    pub device: DeviceId,
    pub decision: RemoteDecision,
    /// The lot size the trader chose, if any; the node still clamps it to its rules' range and
    /// refuses it (`lots_out_of_range`) outside.
    pub lots: Option<Decimal>,
    /// After this instant (unix ms, hub clock) the request is void.
    pub expires_at_ms: i64,
    pub channel: Channel,
    /// The Telegram user who pressed, for `telegram` and `mini_app`.
    pub telegram_user_id: Option<i64>,
    pub requested_at_ms: i64,
}

/// Why a node did not apply a remote request: a fixed list, so the hub can word the Telegram
/// message and count outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The request or the signal expired first.
    Expired,
    /// The signal is not waiting for a decision (already decided, unknown, or skipped).
    NotPending,
    /// Remote approval is off on this node.
    RemoteOff,
    /// The price drifted past the trader's limit since the signal.
    PriceMoved,
    /// A risk rule (daily loss, drawdown lock, exposure) refuses it now.
    Risk,
    /// The requested lots are outside what the trader's rules allow.
    LotsOutOfRange,
    /// The symbol's market is closed.
    MarketClosed,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 7] = [
        RefusalReason::Expired,
        RefusalReason::NotPending,
        RefusalReason::RemoteOff,
        RefusalReason::PriceMoved,
        RefusalReason::Risk,
        RefusalReason::LotsOutOfRange,
        RefusalReason::MarketClosed,
    ];

    /// The stable wire/SQL text.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Expired => "expired",
            RefusalReason::NotPending => "not_pending",
            RefusalReason::RemoteOff => "remote_off",
            RefusalReason::PriceMoved => "price_moved",
            RefusalReason::Risk => "risk",
            RefusalReason::LotsOutOfRange => "lots_out_of_range",
            RefusalReason::MarketClosed => "market_closed",
        }
    }

    /// The reason named by [`RefusalReason::as_str`]'s text.
    pub fn parse(text: &str) -> Option<RefusalReason> {
        RefusalReason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// What the node did with a request.
///
/// Externally tagged (`"applied"`, `{"refused": "price_moved"}` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerOutcome {
    /// Decided as asked; the node's signed [`Approval`](super::Approval) names the request.
    Applied,
    Refused(RefusalReason),
}

impl AnswerOutcome {
    /// `applied`, or the refusal's reason text.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerOutcome::Applied => "applied",
            AnswerOutcome::Refused(reason) => reason.as_str(),
        }
    }
}

/// The node's answer to an [`ApprovalRequest`] (shared stream), so the hub can edit the
/// Telegram message with the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAnswer {
    pub request_id: RequestId,
    pub signal_id: SignalId,
    /// The answering device (the record's author).
    pub device: DeviceId,
    pub outcome: AnswerOutcome,
    pub at_ms: i64,
}

/// What approving at `lots` would risk: the loss at the signal's stop, in the account's
/// currency and as a percentage of equity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskPreview {
    pub lots: Decimal,
    /// Loss at the stop, in `currency` (positive).
    pub risk_money: Decimal,
    /// `risk_money` as a percentage of equity (`1.5` = 1.5 %).
    pub risk_percent: Decimal,
    /// The account's deposit currency (ISO 4217).
    pub currency: String,
}

/// A signal waiting for the trader on this device (shared stream, written only while remote
/// approval is on): what Telegram and the Mini App show before a press.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub signal_id: SignalId,
    pub device: DeviceId,
    /// The decision deadline (market clock of the signal's expiry, unix ms).
    pub expires_at_ms: i64,
    /// The lot range the trader's rules allow (inclusive).
    pub min_lots: Decimal,
    pub max_lots: Decimal,
    /// The risk at the lots the policy would choose, if the node could compute it (it needs the
    /// symbol's tick value and the account's equity).
    pub risk_preview: Option<RiskPreview>,
    /// Stable codes of the policy rules that would refuse an approval now (empty: approvable),
    /// e.g. `daily_loss`, `market_closed`; the words are the hub's to choose.
    pub blocking: Vec<String>,
    pub at_ms: i64,
}

/// A feature of a plan, as the node enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Receiving a provider's signals.
    Signals,
    /// Automatic approval and execution (without it every signal waits for the trader).
    AutoCopy,
    /// Remote approval from Telegram.
    Telegram,
    /// Remote approval from the Mini App.
    MiniApp,
    /// The analytics pages.
    Analytics,
}

impl Feature {
    pub const ALL: [Feature; 5] = [
        Feature::Signals,
        Feature::AutoCopy,
        Feature::Telegram,
        Feature::MiniApp,
        Feature::Analytics,
    ];

    /// The stable wire/SQL text.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Signals => "signals",
            Feature::AutoCopy => "auto_copy",
            Feature::Telegram => "telegram",
            Feature::MiniApp => "mini_app",
            Feature::Analytics => "analytics",
        }
    }
}

/// The features of a device's plan over an interval, signed by the hub. Entitlements are
/// append-only intervals: the hub ends a grant early by issuing the same `grant_id` again with
/// `valid_until_ms` set (never earlier than its issuing instant) and a newer `issued_at_ms`;
/// the node keeps, per id, the grant issued last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureGrant {
    pub grant_id: GrantId,
    pub device: DeviceId,
    /// The billing plan's id (for display and support).
    pub plan_id: String,
    pub features: Vec<Feature>,
    pub valid_from_ms: i64,
    /// `None`: until ended by a later grant of the same id.
    pub valid_until_ms: Option<i64>,
    pub issued_at_ms: i64,
}

impl FeatureGrant {
    /// Whether the grant is in force at `now_ms` (`valid_from_ms` ≤ now < `valid_until_ms`).
    pub fn in_force_at(&self, now_ms: i64) -> bool {
        self.valid_from_ms <= now_ms && self.valid_until_ms.is_none_or(|until| now_ms < until)
    }
}

//! Streams and kinds: the well-known [`StreamId`]s, the [`Kind`] tags (appended, never
//! renumbered), the version each kind appeared in, who signs it ([`Signer`]) and on which
//! streams it belongs ([`Kind::streams`], the table the hub and the node both check).

use serde::{Deserialize, Serialize};

/// A stream of one author: `seq` counts from 1 per (author, stream) with no gaps.
///
/// The well-known streams are constants; other values are valid (future streams) and carried
/// unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId(pub u32);

impl StreamId {
    /// A provider's public track record: signals, modifications, closes.
    pub const SIGNALS: StreamId = StreamId(1);
    /// A subscriber's approvals and the executions the hub needs (billing, statistics).
    pub const SHARED: StreamId = StreamId(2);
    /// Sealed to the trader's own devices: positions, equity, own executions, closed trades.
    pub const PRIVATE: StreamId = StreamId(3);
    /// Device keys and heartbeats.
    pub const DEVICE: StreamId = StreamId(4);
    /// Commands (close all, modify, close) issued by the trader's devices or the hub.
    pub const COMMANDS: StreamId = StreamId(5);
    /// Receipts issued by the hub.
    pub const RECEIPTS: StreamId = StreamId(6);
    /// What a trader chose to publish, unsealed (opt-in, off by default): closed trades, equity
    /// points, balance operations, daily summaries. Record version 2.
    pub const PUBLISHED: StreamId = StreamId(7);
    /// The hub's requests and grants: one hub-authored chain for all devices, each item naming
    /// its device. A node sees only its own items, so it checks each one's signature, device and
    /// expiry and de-duplicates by id, never the chain's continuity. Record version 2.
    pub const HUB_REQUESTS: StreamId = StreamId(8);

    /// Whether bodies on this stream are sealed to the author's devices.
    pub fn is_sealed(self) -> bool {
        self == StreamId::PRIVATE
    }
}

/// Who signs records of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signer {
    /// A node (a provider or a subscriber device), with its own identity key.
    Device,
    /// The hub, with the deployment's `hub_identity_key` (the key nodes pin at enrolment).
    Hub,
}

/// The kind tag: which domain type the body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Kind {
    Signal = 1,
    Modify = 2,
    Close = 3,
    Approval = 4,
    Execution = 5,
    PositionSnapshot = 6,
    TradeClosed = 7,
    EquityPoint = 8,
    Heartbeat = 9,
    DeviceKeys = 10,
    Receipt = 11,
    Command = 12,
    // Version 2. Tags are appended, never renumbered.
    ApprovalRequest = 13,
    RequestAnswer = 14,
    Pending = 15,
    FeatureGrant = 16,
    BalanceOperation = 17,
    Summary = 18,
}

impl Kind {
    pub const ALL: [Kind; 18] = [
        Kind::Signal,
        Kind::Modify,
        Kind::Close,
        Kind::Approval,
        Kind::Execution,
        Kind::PositionSnapshot,
        Kind::TradeClosed,
        Kind::EquityPoint,
        Kind::Heartbeat,
        Kind::DeviceKeys,
        Kind::Receipt,
        Kind::Command,
        Kind::ApprovalRequest,
        Kind::RequestAnswer,
        Kind::Pending,
        Kind::FeatureGrant,
        Kind::BalanceOperation,
        Kind::Summary,
    ];

    pub fn from_u8(tag: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == tag)
    }

    /// The kind's name in snake_case (vectors, logs, SQL).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Signal => "signal",
            Kind::Modify => "modify",
            Kind::Close => "close",
            Kind::Approval => "approval",
            Kind::Execution => "execution",
            Kind::PositionSnapshot => "position_snapshot",
            Kind::TradeClosed => "trade_closed",
            Kind::EquityPoint => "equity_point",
            Kind::Heartbeat => "heartbeat",
            Kind::DeviceKeys => "device_keys",
            Kind::Receipt => "receipt",
            Kind::Command => "command",
            Kind::ApprovalRequest => "approval_request",
            Kind::RequestAnswer => "request_answer",
            Kind::Pending => "pending",
            Kind::FeatureGrant => "feature_grant",
            Kind::BalanceOperation => "balance_operation",
            Kind::Summary => "summary",
        }
    }

    /// The first record version that carries this kind.
    pub fn since_version(self) -> u8 {
        match self {
            Kind::ApprovalRequest
            | Kind::RequestAnswer
            | Kind::Pending
            | Kind::FeatureGrant
            | Kind::BalanceOperation
            | Kind::Summary => 2,
            _ => 1,
        }
    }

    /// Who signs records of this kind.
    pub fn signer(self) -> Signer {
        match self {
            Kind::Receipt | Kind::ApprovalRequest | Kind::FeatureGrant => Signer::Hub,
            _ => Signer::Device,
        }
    }

    /// The well-known streams a record of this kind may be on:
    ///
    /// | kind | signer | streams |
    /// | --- | --- | --- |
    /// | `Signal`, `Modify`, `Close` | device (provider) | `SIGNALS` |
    /// | `Approval`, `RequestAnswer`, `Pending` | device | `SHARED` |
    /// | `Execution` | device | `SHARED`, `PRIVATE` |
    /// | `PositionSnapshot` | device | `PRIVATE` |
    /// | `TradeClosed`, `EquityPoint`, `BalanceOperation`, `Summary` | device | `PRIVATE`, or `PUBLISHED` when the trader opted in |
    /// | `Heartbeat`, `DeviceKeys` | device | `DEVICE` |
    /// | `Command` | device (the trader's node; the hub signs none today) | `COMMANDS` |
    /// | `Receipt` | hub | `RECEIPTS` |
    /// | `ApprovalRequest`, `FeatureGrant` | hub | `HUB_REQUESTS` |
    pub fn streams(self) -> &'static [StreamId] {
        match self {
            Kind::Signal | Kind::Modify | Kind::Close => &[StreamId::SIGNALS],
            Kind::Approval | Kind::RequestAnswer | Kind::Pending => &[StreamId::SHARED],
            Kind::Execution => &[StreamId::SHARED, StreamId::PRIVATE],
            Kind::PositionSnapshot => &[StreamId::PRIVATE],
            Kind::TradeClosed | Kind::EquityPoint | Kind::BalanceOperation | Kind::Summary => {
                &[StreamId::PRIVATE, StreamId::PUBLISHED]
            }
            Kind::Heartbeat | Kind::DeviceKeys => &[StreamId::DEVICE],
            Kind::Command => &[StreamId::COMMANDS],
            Kind::Receipt => &[StreamId::RECEIPTS],
            Kind::ApprovalRequest | Kind::FeatureGrant => &[StreamId::HUB_REQUESTS],
        }
    }

    /// Whether a record of this kind belongs on `stream` (see [`Kind::streams`]).
    pub fn allowed_on(self, stream: StreamId) -> bool {
        self.streams().contains(&stream)
    }
}

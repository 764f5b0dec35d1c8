//! The version-1 layouts of the types record version 2 changed, so records written before keep
//! decoding: postcard is not self-describing, so a v1 body lacks the new trailing fields and
//! must be read with its own shape, then mapped to today's type. Only the record decoder uses
//! these. No I/O.

use serde::{Deserialize, Serialize};

use super::{Approval, DecidedBy, Decision, DeviceKeys, SignalId};
use crate::identity::{DeviceId, IdentityKey, SealingPublicKey};

/// `DecidedBy` of version 1 (no `Remote`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedByV1 {
    Policy,
    Trader(String),
}

/// `Approval` of version 1 (no `lots`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalV1 {
    pub signal_id: SignalId,
    pub device: DeviceId,
    pub decision: Decision,
    pub decided_by: DecidedByV1,
    pub consent_version: u32,
    pub reason: String,
    pub decided_at_ms: i64,
}

impl From<ApprovalV1> for Approval {
    fn from(v: ApprovalV1) -> Approval {
        Approval {
            signal_id: v.signal_id,
            device: v.device,
            decision: v.decision,
            decided_by: match v.decided_by {
                DecidedByV1::Policy => DecidedBy::Policy,
                DecidedByV1::Trader(user) => DecidedBy::Trader(user),
            },
            consent_version: v.consent_version,
            reason: v.reason,
            decided_at_ms: v.decided_at_ms,
            lots: None,
        }
    }
}

/// `DeviceKeys` of version 1 (no `account_fingerprint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeysV1 {
    pub identity: IdentityKey,
    pub sealing: SealingPublicKey,
    pub label: String,
    pub at_ms: i64,
}

impl From<DeviceKeysV1> for DeviceKeys {
    fn from(v: DeviceKeysV1) -> DeviceKeys {
        DeviceKeys {
            identity: v.identity,
            sealing: v.sealing,
            label: v.label,
            at_ms: v.at_ms,
            account_fingerprint: None,
        }
    }
}

//! Receipts: the hub's signed acknowledgement that it committed a record.
//!
//! ```text
//! signed = "tradecast/receipt/v1" ‖ postcard(hub:[u8;20], header_hash:[u8;32], author:[u8;20],
//!                                            stream:varint u32, seq:varint u64,
//!                                            received_at_ms:zigzag i64)
//! ```
//!
//! Its own domain tag keeps a receipt signature from ever passing as a record signature. A
//! provider cannot backdate a signal past its receipt nor drop a losing one without leaving a
//! gap: records plus receipts are the public track record. No I/O here.

use serde::{Deserialize, Serialize};

use crate::hash::ChainHash;
use crate::identity::{DeviceId, Identity, IdentityKey, Signature};
use crate::record::{Record, StreamId, VerifyError};

/// Domain tag of receipt signatures.
pub const RECEIPT_DOMAIN: &[u8] = b"tradecast/receipt/v1";

/// What a receipt attests: the hub `hub` committed the record with `header_hash` at
/// (author, stream, seq) at `received_at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptFields {
    pub hub: DeviceId,
    pub header_hash: ChainHash,
    pub author: DeviceId,
    pub stream: StreamId,
    pub seq: u64,
    pub received_at_ms: i64,
}

impl ReceiptFields {
    /// The postcard bytes that follow the domain tag in the signed message.
    pub fn encode(&self) -> Vec<u8> {
        // Fixed-shape struct of arrays and integers: serialization cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// A hub's signed receipt for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub fields: ReceiptFields,
    pub signature: Signature,
}

impl Receipt {
    /// The hub signs a receipt for `record`, received at `received_at_ms`.
    pub fn sign(hub: &Identity, record: &Record, received_at_ms: i64) -> Receipt {
        let header = record.header();
        let fields = ReceiptFields {
            hub: hub.device_id(),
            header_hash: record.header_hash(),
            author: header.author,
            stream: header.stream,
            seq: header.seq,
            received_at_ms,
        };
        let signature = hub.sign(RECEIPT_DOMAIN, &fields.encode());
        Receipt { fields, signature }
    }

    /// Checks the receipt against the hub's key.
    pub fn verify(&self, hub_key: &IdentityKey) -> Result<(), VerifyError> {
        let key_device = hub_key.device_id();
        if key_device != self.fields.hub {
            return Err(VerifyError::AuthorMismatch { author: self.fields.hub, key_device });
        }
        if !hub_key.verify(RECEIPT_DOMAIN, &self.fields.encode(), &self.signature) {
            return Err(VerifyError::BadSignature);
        }
        Ok(())
    }

    /// Whether this receipt is for exactly `record`.
    pub fn covers(&self, record: &Record) -> bool {
        let header = record.header();
        self.fields.header_hash == record.header_hash()
            && self.fields.author == header.author
            && self.fields.stream == header.stream
            && self.fields.seq == header.seq
    }
}

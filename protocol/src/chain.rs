//! Chain verification: a stream of one author is `seq` 1, 2, 3 … with no gaps, each record's
//! `prev_hash` the header hash of the one before (all zeros before `seq` 1), every record signed
//! by the author.
//!
//! [`ChainTip`] checks one record at a time (the hub, the session); [`verify_chain`] checks a whole
//! exported chain offline (the standalone verifier of a published track record). No I/O here.

use crate::hash::ChainHash;
use crate::identity::{DeviceId, IdentityKey};
use crate::record::{Record, StreamId, VerifyError};

/// The last verified record of one (author, stream): `seq` 0 and the genesis hash before any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainTip {
    pub author: DeviceId,
    pub stream: StreamId,
    pub seq: u64,
    pub header_hash: ChainHash,
}

/// Why a record does not extend a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The record belongs to another author or stream.
    #[error("record of another author or stream")]
    WrongStream,
    /// `seq` is not the tip's plus one (a gap, or a replay).
    #[error("expected seq {expected}, got {got}")]
    Seq { expected: u64, got: u64 },
    /// `prev_hash` is not the tip's header hash: the chain is broken.
    #[error("broken chain at seq {seq}: prev_hash does not match")]
    Broken { seq: u64 },
    /// The record does not verify against the author's key.
    #[error("record at seq {seq}: {error}")]
    Verify { seq: u64, error: VerifyError },
    /// `seq` would overflow.
    #[error("seq overflow")]
    Overflow,
}

impl ChainTip {
    /// The tip of an empty stream.
    pub fn genesis(author: DeviceId, stream: StreamId) -> ChainTip {
        ChainTip { author, stream, seq: 0, header_hash: ChainHash::GENESIS }
    }

    /// Checks that `record` is the next link (without the signature) and returns the new tip.
    pub fn check_link(&self, record: &Record) -> Result<ChainTip, ChainError> {
        let header = record.header();
        if header.author != self.author || header.stream != self.stream {
            return Err(ChainError::WrongStream);
        }
        let expected = self.seq.checked_add(1).ok_or(ChainError::Overflow)?;
        if header.seq != expected {
            return Err(ChainError::Seq { expected, got: header.seq });
        }
        if header.prev_hash != self.header_hash {
            return Err(ChainError::Broken { seq: header.seq });
        }
        Ok(ChainTip { seq: header.seq, header_hash: record.header_hash(), ..*self })
    }

    /// Verifies `record`'s signature with `key` and that it is the next link.
    pub fn extend(&self, record: &Record, key: &IdentityKey) -> Result<ChainTip, ChainError> {
        let tip = self.check_link(record)?;
        record
            .verify(key)
            .map_err(|error| ChainError::Verify { seq: record.header().seq, error })?;
        Ok(tip)
    }
}

/// Verifies a whole chain from `seq` 1 and returns its tip.
pub fn verify_chain(
    records: &[Record],
    key: &IdentityKey,
    stream: StreamId,
) -> Result<ChainTip, ChainError> {
    let mut tip = ChainTip::genesis(key.device_id(), stream);
    for record in records {
        tip = tip.extend(record, key)?;
    }
    Ok(tip)
}

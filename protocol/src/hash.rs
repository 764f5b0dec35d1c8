//! The chain hash: BLAKE3-256, the one hash function of records and chains.
//!
//! `header_hash` (what `prev_hash` points at and what receipts and duplicate detection compare)
//! and `body_hash` (of the body bytes as carried, sealed or not) are both plain BLAKE3 of the
//! encoded bytes, no key, no context string: the domain separation lives in the signature's
//! domain tag. SHA-256 appears only in `DeviceId` (identity.rs) and inside HKDF (seal.rs).
//! No I/O here.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Name of the chain hash as written in the test vectors (`"hash"`).
pub const CHAIN_HASH_NAME: &str = "blake3";

/// A 32-byte BLAKE3 digest of a header or a body.
///
/// The all-zero value is the `prev_hash` of the first record (`seq` 1) of every stream.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev_hash` of a stream's first record.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// BLAKE3 of `bytes`.
    pub fn of(bytes: &[u8]) -> ChainHash {
        ChainHash(*blake3::hash(bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, as in logs and the JSON API.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for logs.
    pub fn fmt_short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Hex in human-readable formats (JSON), 32 raw bytes in postcard.
impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let mut out = [0u8; 32];
            hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
            Ok(ChainHash(out))
        } else {
            Ok(ChainHash(<[u8; 32]>::deserialize(deserializer)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_of_empty_input_is_the_published_value() {
        // BLAKE3 test vector for the empty input (BLAKE3 spec, Appendix/test_vectors.json).
        assert_eq!(
            ChainHash::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn json_is_hex_and_round_trips() {
        let h = ChainHash::of(b"abc");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", h.to_hex()));
        assert_eq!(serde_json::from_str::<ChainHash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<ChainHash>("\"zz\"").is_err());
    }
}

//! The account fingerprint carried in [`super::DeviceKeys`]: lets the hub see that two devices
//! trade one account without the node telling it the login. No I/O.
//!
//! ```text
//! fingerprint = BLAKE3-keyed(key, ACCOUNT_FINGERPRINT_CONTEXT
//!                                 ‖ len(server):u32 LE ‖ server (UTF-8, as MT5 reports it)
//!                                 ‖ login:u64 LE)
//! ```
//!
//! `key` is the 32-byte fingerprint key the hub hands out at enrolment (one per deployment, so
//! every device of it computes the same value for one account, and nobody without the key can
//! test guesses of logins against it). The server name is length-prefixed so no
//! (server, login) pair encodes like another; it is taken byte for byte as the terminal reports
//! it (`ACCOUNT_SERVER`), without trimming or case folding, because every terminal on one
//! account reports the same name.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The context bytes in front of the fingerprinted fields (domain separation and version).
pub const ACCOUNT_FINGERPRINT_CONTEXT: &[u8] = b"tradecast/account-fingerprint/v1";

/// The keyed BLAKE3 hash of a broker server and login (see the module documentation for the
/// exact bytes).
pub fn account_fingerprint(key: &[u8; 32], broker_server: &str, login: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(ACCOUNT_FINGERPRINT_CONTEXT);
    // A server name longer than u32::MAX bytes cannot come from MT5; saturating keeps the
    // function total (such a name is never equal to a real one anyway).
    let len = u32::try_from(broker_server.len()).unwrap_or(u32::MAX);
    hasher.update(&len.to_le_bytes());
    hasher.update(broker_server.as_bytes());
    hasher.update(&login.to_le_bytes());
    *hasher.finalize().as_bytes()
}

/// An [`account_fingerprint`]: 64 lowercase hex digits in JSON, 32 raw bytes in postcard.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountFingerprint(pub [u8; 32]);

impl AccountFingerprint {
    /// The fingerprint of `login` on `broker_server` under the hub's `key`.
    pub fn compute(key: &[u8; 32], broker_server: &str, login: u64) -> AccountFingerprint {
        AccountFingerprint(account_fingerprint(key, broker_server, login))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<AccountFingerprint> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(AccountFingerprint(out))
    }
}

impl fmt::Debug for AccountFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountFingerprint({})", self.to_hex())
    }
}

impl Serialize for AccountFingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for AccountFingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            AccountFingerprint::from_hex(&text)
                .ok_or_else(|| serde::de::Error::custom("an account fingerprint is 64 hex digits"))
        } else {
            Ok(AccountFingerprint(<[u8; 32]>::deserialize(deserializer)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_keyed_hash_of_the_documented_bytes() {
        let key = [7u8; 32];
        let mut bytes = ACCOUNT_FINGERPRINT_CONTEXT.to_vec();
        bytes.extend_from_slice(&11u32.to_le_bytes());
        bytes.extend_from_slice(b"Demo-Server");
        bytes.extend_from_slice(&5_012_345u64.to_le_bytes());
        let expect = *blake3::keyed_hash(&key, &bytes).as_bytes();
        assert_eq!(account_fingerprint(&key, "Demo-Server", 5_012_345), expect);
    }

    #[test]
    fn server_and_login_cannot_be_shifted_into_each_other() {
        let key = [1u8; 32];
        let check = |a: (&str, u64), b: (&str, u64), same: bool| {
            let (fa, fb) =
                (account_fingerprint(&key, a.0, a.1), account_fingerprint(&key, b.0, b.1));
            assert_eq!(fa == fb, same, "{a:?} vs {b:?}");
        };
        check(("Demo", 1), ("Demo", 1), true);
        check(("Demo", 1), ("Demo", 2), false);
        check(("Demo", 1), ("demo", 1), false);
        check(("Demo\u{1}", 0), ("Demo", 1), false);
        check(("", 0), ("\0", 0), false);
        assert_ne!(account_fingerprint(&[2; 32], "Demo", 1), account_fingerprint(&key, "Demo", 1));
    }
}

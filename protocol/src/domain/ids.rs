//! The 16-byte ids of hub requests and feature grants: chosen by the hub from its CSPRNG, 32
//! lowercase hex digits in JSON, 16 raw bytes in postcard (like [`super::SignalId`]). No I/O.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! id16 {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh id from the RNG the driver hands in.
            pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> $name {
                let mut bytes = [0u8; 16];
                rng.fill_bytes(&mut bytes);
                $name(bytes)
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 32 hex digits (either case); anything else is `None`.
            pub fn from_hex(text: &str) -> Option<$name> {
                let mut out = [0u8; 16];
                hex::decode_to_slice(text, &mut out).ok()?;
                Some($name(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(serializer)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = String::deserialize(deserializer)?;
                    $name::from_hex(&text).ok_or_else(|| {
                        serde::de::Error::custom(concat!("a ", $what, " id is 32 hex digits"))
                    })
                } else {
                    Ok($name(<[u8; 16]>::deserialize(deserializer)?))
                }
            }
        }
    };
}

id16!(
    /// An [`ApprovalRequest`](super::ApprovalRequest)'s id: the node de-duplicates requests by
    /// it and answers with it ([`RequestAnswer`](super::RequestAnswer),
    /// [`DecidedBy::Remote`](super::DecidedBy::Remote)).
    RequestId,
    "request"
);

id16!(
    /// A [`FeatureGrant`](super::FeatureGrant)'s id: a later grant with the same id and a newer
    /// `issued_at_ms` supersedes it (how the hub ends a grant early).
    GrantId,
    "grant"
);

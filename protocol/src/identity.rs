//! Device identities: the Ed25519 identity key, the X25519 sealing key, and `DeviceId`.
//!
//! Every node, hub instance and provider node holds one [`Identity`], generated from an RNG the
//! driver hands in (the OS CSPRNG in production, a seeded one in tests) and never sent anywhere.
//! Its public half is an [`IdentityKey`] (Ed25519, verifies records) and a [`SealingPublicKey`]
//! (X25519, announced in a signed `DeviceKeys` record so nobody can substitute another).
//!
//! [`DeviceId`] is the first 20 bytes of SHA-256 of the Ed25519 public key. Its text form is
//! base32 (RFC 4648 alphabet, no padding) of those 20 bytes, 32 characters cut into 4 groups of
//! 8, each followed by a Luhn mod 32 check character, groups joined by `-`:
//! `ABCDEFGHJ-KLMNOPQRS-...` (39 characters). Parsing accepts lower case, spaces or no
//! separators, and the look-alikes `0`→`O`, `1`→`I`, `8`→`B` (as Syncthing does); a typo in a
//! group fails that group's check character.
//!
//! Secret keys zeroize on drop (ed25519-dalek and x25519-dalek with `zeroize`) and no `Debug`
//! here prints secret bytes. No I/O, no randomness but the one handed in.

use core::fmt;
use core::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of a [`DeviceId`] in bytes.
pub const DEVICE_ID_LEN: usize = 20;

/// RFC 4648 base32 alphabet, the digits of the text form and of its check characters.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const GROUPS: usize = 4;
const GROUP_LEN: usize = 8;

/// A device's stable id: SHA-256(Ed25519 public key)[..20].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub [u8; DEVICE_ID_LEN]);

/// Why a text device id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceIdParseError {
    /// After removing separators the text is not 36 characters (4 groups of 8 + check).
    #[error("a device id has 36 characters besides separators, got {0}")]
    Length(usize),
    /// A character outside the base32 alphabet (and its accepted look-alikes).
    #[error("character {0:?} is not in the device id alphabet")]
    Character(char),
    /// A group's check character does not match: most likely a typo in that group.
    #[error("group {group} of the device id fails its check character (typo?)")]
    Check {
        /// 1-based index of the group.
        group: usize,
    },
    /// Hex form (used by tools and the vectors) of the wrong length or alphabet.
    #[error("a hex device id has 40 hex digits")]
    Hex,
}

impl DeviceId {
    /// The id of the device whose Ed25519 public key is `key`.
    pub fn of(key: &IdentityKey) -> DeviceId {
        let digest = Sha256::digest(key.to_bytes());
        let mut id = [0u8; DEVICE_ID_LEN];
        id.copy_from_slice(&digest[..DEVICE_ID_LEN]);
        DeviceId(id)
    }

    pub fn as_bytes(&self) -> &[u8; DEVICE_ID_LEN] {
        &self.0
    }

    /// 40 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<DeviceId, DeviceIdParseError> {
        let mut out = [0u8; DEVICE_ID_LEN];
        hex::decode_to_slice(text, &mut out).map_err(|_| DeviceIdParseError::Hex)?;
        Ok(DeviceId(out))
    }

    /// The grouped, checksummed text form (see the module documentation).
    pub fn to_text(&self) -> String {
        let plain = data_encoding::BASE32_NOPAD.encode(&self.0);
        debug_assert_eq!(plain.len(), GROUPS * GROUP_LEN);
        let mut out = String::with_capacity(GROUPS * (GROUP_LEN + 2));
        for (i, group) in plain.as_bytes().chunks(GROUP_LEN).enumerate() {
            if i > 0 {
                out.push('-');
            }
            for &c in group {
                out.push(c as char);
            }
            out.push(luhn32_check(group) as char);
        }
        out
    }

    /// Parses the text form; see the module documentation for what is accepted.
    pub fn parse(text: &str) -> Result<DeviceId, DeviceIdParseError> {
        let mut chars = Vec::with_capacity(GROUPS * (GROUP_LEN + 1));
        for c in text.chars() {
            if c == '-' || c == ' ' {
                continue;
            }
            if chars.len() >= GROUPS * (GROUP_LEN + 1) {
                // Keep counting without storing, for an honest error.
                let extra = text.chars().filter(|c| *c != '-' && *c != ' ').count();
                return Err(DeviceIdParseError::Length(extra));
            }
            let up = match c.to_ascii_uppercase() {
                '0' => 'O',
                '1' => 'I',
                '8' => 'B',
                other => other,
            };
            if !up.is_ascii() || !BASE32_ALPHABET.contains(&(up as u8)) {
                return Err(DeviceIdParseError::Character(c));
            }
            chars.push(up as u8);
        }
        if chars.len() != GROUPS * (GROUP_LEN + 1) {
            return Err(DeviceIdParseError::Length(chars.len()));
        }
        let mut plain = Vec::with_capacity(GROUPS * GROUP_LEN);
        for (i, group) in chars.chunks(GROUP_LEN + 1).enumerate() {
            let (digits, check) = group.split_at(GROUP_LEN);
            if luhn32_check(digits) != check[0] {
                return Err(DeviceIdParseError::Check { group: i + 1 });
            }
            plain.extend_from_slice(digits);
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(&plain)
            .map_err(|_| DeviceIdParseError::Length(plain.len()))?;
        let id: [u8; DEVICE_ID_LEN] =
            bytes.try_into().map_err(|v: Vec<u8>| DeviceIdParseError::Length(v.len()))?;
        Ok(DeviceId(id))
    }

    /// The first group, for logs.
    pub fn fmt_short(&self) -> String {
        let text = self.to_text();
        text[..GROUP_LEN + 1].to_string()
    }
}

/// Luhn mod N (N = 32) check character of base32 digits, as in Syncthing's device ids: from the
/// rightmost digit, factors alternate 2, 1, 2 …; each product contributes
/// `product / 32 + product % 32`; the check digit brings the sum to a multiple of 32.
fn luhn32_check(digits: &[u8]) -> u8 {
    let n = 32u32;
    let mut factor = 2u32;
    let mut sum = 0u32;
    for &c in digits.iter().rev() {
        // Only called with alphabet characters; `position` of a non-member would be a bug.
        let code = BASE32_ALPHABET.iter().position(|&a| a == c).unwrap_or(0) as u32;
        let addend = factor * code;
        sum += addend / n + addend % n;
        factor = if factor == 2 { 1 } else { 2 };
    }
    let check = (n - sum % n) % n;
    BASE32_ALPHABET[check as usize]
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.to_text())
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceId::parse(s)
    }
}

/// Text form in JSON, 20 raw bytes in postcard.
impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_text())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            DeviceId::parse(&text).map_err(serde::de::Error::custom)
        } else {
            Ok(DeviceId(<[u8; DEVICE_ID_LEN]>::deserialize(deserializer)?))
        }
    }
}

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The 32 bytes are not a valid Ed25519 point (or are a weak/small-order key).
    #[error("not a valid Ed25519 public key")]
    InvalidIdentityKey,
    /// Hex of the wrong length or alphabet.
    #[error("a key is 64 hex digits")]
    Hex,
}

/// An Ed25519 public identity key: verifies the records and receipts of one device.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityKey(VerifyingKey);

impl IdentityKey {
    /// Parses 32 bytes; refuses points that are not on the curve and weak (small-order) keys.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<IdentityKey, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidIdentityKey)?;
        if key.is_weak() {
            return Err(KeyError::InvalidIdentityKey);
        }
        Ok(IdentityKey(key))
    }

    pub fn from_hex(text: &str) -> Result<IdentityKey, KeyError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| KeyError::Hex)?;
        IdentityKey::from_bytes(&out)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn device_id(&self) -> DeviceId {
        DeviceId::of(self)
    }

    /// Verifies `signature` over `domain ‖ message` (strict: no malleable signatures, no weak
    /// keys).
    pub fn verify(&self, domain: &[u8], message: &[u8], signature: &Signature) -> bool {
        let mut signed = Vec::with_capacity(domain.len() + message.len());
        signed.extend_from_slice(domain);
        signed.extend_from_slice(message);
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify_strict(&signed, &sig).is_ok()
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({})", hex::encode(self.to_bytes()))
    }
}

impl Serialize for IdentityKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(self.to_bytes()))
        } else {
            self.to_bytes().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for IdentityKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            IdentityKey::from_hex(&text).map_err(serde::de::Error::custom)
        } else {
            let bytes = <[u8; 32]>::deserialize(deserializer)?;
            IdentityKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
        }
    }
}

/// An X25519 public sealing key, announced in a signed `DeviceKeys` record.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealingPublicKey(pub [u8; 32]);

impl fmt::Debug for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingPublicKey({})", hex::encode(self.0))
    }
}

impl Serialize for SealingPublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(self.0))
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for SealingPublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let mut out = [0u8; 32];
            hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
            Ok(SealingPublicKey(out))
        } else {
            Ok(SealingPublicKey(<[u8; 32]>::deserialize(deserializer)?))
        }
    }
}

/// A 64-byte Ed25519 signature (hex in JSON, length-prefixed bytes in postcard).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl serde::de::Visitor<'_> for BytesVisitor {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Signature, E> {
                let bytes: [u8; 64] =
                    v.try_into().map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Signature(bytes))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Signature, E> {
                let mut out = [0u8; 64];
                hex::decode_to_slice(v, &mut out).map_err(E::custom)?;
                Ok(Signature(out))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(BytesVisitor)
        } else {
            deserializer.deserialize_bytes(BytesVisitor)
        }
    }
}

/// A device's secret keys: Ed25519 identity and X25519 sealing.
///
/// Zeroized on drop; `Debug` shows the device id only. Serialize it for storage with
/// [`Identity::to_secret_bytes`], which hands back zeroizing buffers.
pub struct Identity {
    signing: SigningKey,
    sealing: x25519_dalek::StaticSecret,
}

/// The secret bytes of an [`Identity`], for the driver's key store. Zeroized on drop.
pub struct IdentitySecrets {
    /// The Ed25519 seed (RFC 8032 private key).
    pub ed25519_seed: Zeroizing<[u8; 32]>,
    /// The X25519 secret scalar bytes (clamped at use, RFC 7748).
    pub x25519_secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for IdentitySecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentitySecrets(<redacted>)")
    }
}

impl Identity {
    /// A fresh identity from the RNG the driver hands in (the OS CSPRNG in production).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Identity {
        let signing = SigningKey::generate(rng);
        let sealing = x25519_dalek::StaticSecret::random_from_rng(rng);
        Identity { signing, sealing }
    }

    /// Restores an identity from its stored secret bytes.
    pub fn from_secret_bytes(ed25519_seed: &[u8; 32], x25519_secret: &[u8; 32]) -> Identity {
        Identity {
            signing: SigningKey::from_bytes(ed25519_seed),
            sealing: x25519_dalek::StaticSecret::from(*x25519_secret),
        }
    }

    pub fn to_secret_bytes(&self) -> IdentitySecrets {
        IdentitySecrets {
            ed25519_seed: Zeroizing::new(self.signing.to_bytes()),
            x25519_secret: Zeroizing::new(self.sealing.to_bytes()),
        }
    }

    pub fn identity_key(&self) -> IdentityKey {
        IdentityKey(self.signing.verifying_key())
    }

    pub fn sealing_public_key(&self) -> SealingPublicKey {
        SealingPublicKey(x25519_dalek::PublicKey::from(&self.sealing).to_bytes())
    }

    pub fn device_id(&self) -> DeviceId {
        DeviceId::of(&self.identity_key())
    }

    /// Signs `domain ‖ message`. Every signature of the protocol carries a domain tag so that a
    /// signature made for one purpose is never valid for another.
    pub fn sign(&self, domain: &[u8], message: &[u8]) -> Signature {
        let mut signed = Vec::with_capacity(domain.len() + message.len());
        signed.extend_from_slice(domain);
        signed.extend_from_slice(message);
        Signature(self.signing.sign(&signed).to_bytes())
    }

    /// The X25519 secret bytes, the input keying material of stream keys (seal.rs).
    pub(crate) fn sealing_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.sealing.to_bytes())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("device_id", &self.device_id()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> DeviceId {
        DeviceId([byte; DEVICE_ID_LEN])
    }

    #[test]
    fn text_form_round_trips_and_has_four_checked_groups() {
        for b in [0u8, 1, 0x5a, 0xff] {
            let text = id(b).to_text();
            assert_eq!(text.len(), 39, "{text}");
            assert_eq!(text.split('-').count(), 4);
            assert_eq!(DeviceId::parse(&text), Ok(id(b)));
            assert_eq!(DeviceId::parse(&text.to_lowercase()), Ok(id(b)));
            assert_eq!(DeviceId::parse(&text.replace('-', "")), Ok(id(b)));
        }
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let device = id(0x3c);
        let text = device.to_text();
        for (pos, original) in text.char_indices() {
            if original == '-' {
                continue;
            }
            for &replacement in BASE32_ALPHABET {
                let replacement = replacement as char;
                if replacement == original {
                    continue;
                }
                let mut typo = text.clone();
                typo.replace_range(pos..pos + 1, &replacement.to_string());
                let parsed = DeviceId::parse(&typo);
                assert!(
                    matches!(parsed, Err(DeviceIdParseError::Check { .. })),
                    "{typo} parsed as {parsed:?}"
                );
            }
        }
    }

    #[test]
    fn parse_errors_are_typed() {
        let text = id(7).to_text();
        assert_eq!(DeviceId::parse(&text[..10]), Err(DeviceIdParseError::Length(9)));
        assert!(matches!(
            DeviceId::parse(&format!("{text}A")),
            Err(DeviceIdParseError::Length(37))
        ));
        assert_eq!(
            DeviceId::parse(&text.replace('A', "!")).err(),
            if text.contains('A') { Some(DeviceIdParseError::Character('!')) } else { None }
        );
        assert_eq!(DeviceId::parse("é"), Err(DeviceIdParseError::Character('é')));
    }

    #[test]
    fn look_alikes_are_accepted() {
        // Build an id whose text contains O, I and B, then type them as 0, 1 and 8.
        let device = DeviceId(
            *b"\x73\x8c\x42\x10\x84\x21\x08\x42\x10\x84\x21\x08\x42\x10\x84\x21\x08\x42\x10\x84",
        );
        let text = device.to_text();
        let typed = text.replace('O', "0").replace('I', "1").replace('B', "8");
        assert_eq!(DeviceId::parse(&typed), Ok(device));
    }

    #[test]
    fn json_uses_the_text_form_and_postcard_the_raw_bytes() {
        let device = id(9);
        let json = serde_json::to_string(&device).unwrap();
        assert_eq!(json, format!("\"{}\"", device.to_text()));
        assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), device);
        let bytes = postcard::to_allocvec(&device).unwrap();
        assert_eq!(bytes, vec![9u8; 20]);
    }

    #[test]
    fn debug_of_an_identity_shows_no_secret() {
        let identity = Identity::from_secret_bytes(&[1; 32], &[2; 32]);
        let debug = format!("{identity:?}");
        assert!(debug.contains("device_id"));
        assert!(!debug.contains("0101010101"));
        assert!(!format!("{:?}", identity.to_secret_bytes()).contains('1'));
    }

    #[test]
    fn weak_identity_keys_are_refused() {
        // The identity point (small order) encoded as 0x01 followed by zeros.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(IdentityKey::from_bytes(&weak), Err(KeyError::InvalidIdentityKey));
    }

    #[test]
    fn signatures_are_bound_to_their_domain() {
        let identity = Identity::from_secret_bytes(&[3; 32], &[4; 32]);
        let key = identity.identity_key();
        let sig = identity.sign(b"domain-a/", b"message");
        assert!(key.verify(b"domain-a/", b"message", &sig));
        assert!(!key.verify(b"domain-b/", b"message", &sig));
        assert!(!key.verify(b"domain-a/", b"messagf", &sig));
    }
}

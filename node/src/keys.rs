//! Secrets the node makes: its identity, EA keys and the local API token, all from the
//! operating system's CSPRNG (`getrandom`), and the sealing of EA secrets at rest.
//!
//! An EA secret is shown once (to paste into the EA's inputs) and stored sealed: XChaCha20-
//! Poly1305 under a key derived with BLAKE3 (`derive_key`, its own context string) from the
//! device's identity seed, the key id as associated data. The node needs the secret in clear to
//! verify HMACs, so sealing protects a copied store file without the identity, not a running
//! node. Secrets are `Zeroizing` and never `Debug`-printed.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use tradecast_protocol::Identity;
use zeroize::Zeroizing;

/// The BLAKE3 context of the EA-secret sealing key.
const SEAL_CONTEXT: &str = "tradecast node 2026 ea-key secret seal v1";

/// Why a secret could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The OS random source failed.
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
    /// A sealed secret does not open with this identity.
    #[error("a sealed EA secret does not open (another identity, or tampering)")]
    Unseal,
}

/// `N` bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, KeyError> {
    let mut out = Zeroizing::new([0u8; N]);
    getrandom::fill(&mut out[..]).map_err(KeyError::Random)?;
    Ok(out)
}

/// A fresh device identity from the OS CSPRNG.
pub fn new_identity() -> Result<Identity, KeyError> {
    let seed = random_bytes::<32>()?;
    let x = random_bytes::<32>()?;
    Ok(Identity::from_secret_bytes(&seed, &x))
}

/// An EA key: the id the EA sends in `X-Tradecast-Key` and the secret (HMAC key = its ASCII).
pub struct EaKey {
    /// `ea_` and 16 hex digits.
    pub key_id: String,
    /// `tcs_` and 48 hex digits; shown once.
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for EaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EaKey")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A new EA key.
pub fn new_ea_key() -> Result<EaKey, KeyError> {
    let id = random_bytes::<8>()?;
    let secret = random_bytes::<24>()?;
    Ok(EaKey {
        key_id: format!("ea_{}", hex::encode(&id[..])),
        secret: Zeroizing::new(format!("tcs_{}", hex::encode(&secret[..]))),
    })
}

/// A new local API token (`tca_` and 64 hex digits).
pub fn new_api_token() -> Result<Zeroizing<String>, KeyError> {
    let b = random_bytes::<32>()?;
    Ok(Zeroizing::new(format!("tca_{}", hex::encode(&b[..]))))
}

fn seal_key(identity: &Identity) -> Zeroizing<[u8; 32]> {
    let s = identity.to_secret_bytes();
    Zeroizing::new(blake3::derive_key(SEAL_CONTEXT, &s.ed25519_seed[..]))
}

/// Seals an EA secret: nonce (24) ‖ ciphertext ‖ tag.
pub fn seal_secret(identity: &Identity, key_id: &str, secret: &str) -> Result<Vec<u8>, KeyError> {
    let key = seal_key(identity);
    let cipher = XChaCha20Poly1305::new((&*key).into());
    let nonce = random_bytes::<24>()?;
    let ct = cipher
        .encrypt(&XNonce::from(*nonce), Payload { msg: secret.as_bytes(), aad: key_id.as_bytes() })
        // Encryption fails only beyond 256 GiB of plaintext.
        .map_err(|_| KeyError::Unseal)?;
    let mut out = nonce.to_vec();
    out.extend(ct);
    Ok(out)
}

/// Opens a sealed EA secret.
pub fn open_secret(
    identity: &Identity,
    key_id: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let (nonce, ct) = sealed.split_at_checked(24).ok_or(KeyError::Unseal)?;
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| KeyError::Unseal)?;
    let key = seal_key(identity);
    let cipher = XChaCha20Poly1305::new((&*key).into());
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: key_id.as_bytes() })
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Unseal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_roundtrip_and_refusals() {
        let id = new_identity().expect("rng");
        let other = new_identity().expect("rng");
        let k = new_ea_key().expect("rng");
        assert!(k.key_id.starts_with("ea_") && k.key_id.len() == 19);
        assert!(k.secret.starts_with("tcs_") && k.secret.len() == 52);
        let sealed = seal_secret(&id, &k.key_id, &k.secret).expect("seal");
        assert!(!sealed.windows(8).any(|w| k.secret.as_bytes().windows(8).any(|s| s == w)));
        let opened = open_secret(&id, &k.key_id, &sealed).expect("open");
        assert_eq!(&opened[..], k.secret.as_bytes());
        assert!(matches!(open_secret(&other, &k.key_id, &sealed), Err(KeyError::Unseal)));
        assert!(matches!(open_secret(&id, "ea_other", &sealed), Err(KeyError::Unseal)));
        assert!(matches!(open_secret(&id, &k.key_id, &sealed[..10]), Err(KeyError::Unseal)));
        assert!(!format!("{k:?}").contains(&*k.secret));
    }
}

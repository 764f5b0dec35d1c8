//! Sealing private-stream bodies: XChaCha20-Poly1305 under a per-stream key from HKDF-SHA256.
//!
//! ```text
//! stream_key = HKDF-SHA256(salt = "tradecast/stream-key/v1", ikm = X25519 secret (32 bytes),
//!                          info = "tradecast/stream/v1" ‖ author:[u8;20] ‖ stream:u32 big-endian)
//! aad        = postcard(author:[u8;20], stream:varint u32, seq:varint u64)
//! sealed     = nonce:[u8;24] ‖ XChaCha20-Poly1305(stream_key, nonce, aad, plaintext) (ct ‖ tag)
//! ```
//!
//! The nonce is 24 random bytes from the RNG the caller hands in (random nonces are safe at
//! 192 bits). The AAD binds the ciphertext to its place in the chain, so a sealed body moved to
//! another author, stream or `seq` does not open. The stream key reaches a second device of the
//! same trader only by pairing ([`StreamKey::from_bytes`]); the hub never has it. No I/O here.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::identity::{DeviceId, Identity};
use crate::record::StreamId;

/// HKDF salt of stream keys.
pub const STREAM_KEY_SALT: &[u8] = b"tradecast/stream-key/v1";
/// Prefix of the HKDF info of stream keys.
pub const STREAM_KEY_INFO_PREFIX: &[u8] = b"tradecast/stream/v1";
/// Nonce length of XChaCha20-Poly1305.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// A private stream's symmetric key. Zeroized on drop; `Debug` redacts it.
#[derive(Clone)]
pub struct StreamKey(Zeroizing<[u8; 32]>);

impl core::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

/// Why a sealed body did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Shorter than a nonce and a tag.
    #[error("sealed body too short")]
    TooShort,
    /// Wrong key, wrong (author, stream, seq), or tampered bytes.
    #[error("cannot open: wrong key or tampered body")]
    CannotOpen,
}

impl StreamKey {
    /// The key of `author`'s `stream`, derived from `identity`'s X25519 secret.
    pub fn derive(identity: &Identity, author: &DeviceId, stream: StreamId) -> StreamKey {
        let secret = identity.sealing_secret_bytes();
        StreamKey::derive_from_secret(&secret, author, stream)
    }

    /// As [`StreamKey::derive`], from the raw X25519 secret bytes (for the test vectors).
    pub fn derive_from_secret(
        x25519_secret: &[u8; 32],
        author: &DeviceId,
        stream: StreamId,
    ) -> StreamKey {
        let hkdf = Hkdf::<Sha256>::new(Some(STREAM_KEY_SALT), x25519_secret);
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 255 × 32 limit: expand cannot fail.
        let _ = hkdf.expand(&stream_key_info(author, stream), key.as_mut());
        StreamKey(key)
    }

    /// A key received by pairing.
    pub fn from_bytes(bytes: [u8; 32]) -> StreamKey {
        StreamKey(Zeroizing::new(bytes))
    }

    /// The key bytes, to hand to a paired device.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.0.clone()
    }
}

/// `info` of the HKDF expansion for (author, stream).
pub fn stream_key_info(author: &DeviceId, stream: StreamId) -> Vec<u8> {
    let mut info = Vec::with_capacity(STREAM_KEY_INFO_PREFIX.len() + 24);
    info.extend_from_slice(STREAM_KEY_INFO_PREFIX);
    info.extend_from_slice(author.as_bytes());
    info.extend_from_slice(&stream.0.to_be_bytes());
    info
}

/// The AAD of a sealed body at (author, stream, seq).
pub fn seal_aad(author: &DeviceId, stream: StreamId, seq: u64) -> Vec<u8> {
    // A tuple of an array and two integers always serializes.
    postcard::to_allocvec(&(author, stream, seq)).unwrap_or_default()
}

/// Seals `plaintext` for (author, stream, seq) with a fresh random nonce.
pub fn seal<R: CryptoRng + ?Sized>(
    key: &StreamKey,
    author: &DeviceId,
    stream: StreamId,
    seq: u64,
    plaintext: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_with_nonce(key, author, stream, seq, plaintext, &nonce)
}

/// Seals with a given nonce. Only for test vectors: a nonce must never repeat under one key.
pub fn seal_with_nonce(
    key: &StreamKey,
    author: &DeviceId,
    stream: StreamId,
    seq: u64,
    plaintext: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new((&*key.0).into());
    let aad = seal_aad(author, stream, seq);
    let xnonce = XNonce::from(*nonce);
    // XChaCha20-Poly1305 fails only for plaintexts beyond 256 GiB; bodies are ≤ 64 KiB.
    let ciphertext =
        cipher.encrypt(&xnonce, Payload { msg: plaintext, aad: &aad }).unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// Opens a sealed body of (author, stream, seq).
pub fn open(
    key: &StreamKey,
    author: &DeviceId,
    stream: StreamId,
    seq: u64,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(OpenError::TooShort);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let mut nonce_bytes = [0u8; NONCE_LEN];
    nonce_bytes.copy_from_slice(nonce);
    let cipher = XChaCha20Poly1305::new((&*key.0).into());
    let aad = seal_aad(author, stream, seq);
    cipher
        .decrypt(&XNonce::from(nonce_bytes), Payload { msg: ciphertext, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| OpenError::CannotOpen)
}

//! The hub this node enrolled with, pinned in the store's `settings` table: its address, its
//! identity key (the only key the QUIC client accepts and receipts must verify against) and,
//! when it has one, its WebPKI name. Enrolment writes it ([`crate::sync::enrol`]); the sync
//! client, the feed's receipt check, the UI and `serve` read it.
//!
//! Beside it, the deployment's account-fingerprint key the hub hands out (at enrolment, or read
//! later by a node enrolled before: [`crate::sync::enrol::fetch_fingerprint_key`]): the key the
//! EA's hello hashes the trading account under ([`super::device_keys`]).

use tradecast_protocol::IdentityKey;

use super::{Store, StoreError, Tx};

/// Store settings of the pin.
pub(crate) const SETTING_HUB_ADDR: &str = "hub.addr";
pub(crate) const SETTING_HUB_KEY: &str = "hub.identity_key";
pub(crate) const SETTING_HUB_DEVICE_ID: &str = "hub.device_id";
/// The DNS name of the hub's WebPKI certificate, when it has one (told at enrolment).
pub(crate) const SETTING_HUB_TLS_NAME: &str = "hub.quic_tls_name";
/// The hub's account-fingerprint key, 64 hex digits (absent until the hub told it).
pub const SETTING_HUB_FINGERPRINT_KEY: &str = "hub.account_fingerprint_key";

/// A fingerprint key as stored and as the hub sends it: 64 hex digits.
pub fn parse_fingerprint_key(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

/// The hub's account-fingerprint key, read inside a write transaction (`None`: not told yet,
/// or a damaged setting, which the next read from the hub replaces).
pub fn fingerprint_key_in(tx: &Tx<'_>) -> Result<Option<[u8; 32]>, StoreError> {
    Ok(tx.setting(SETTING_HUB_FINGERPRINT_KEY)?.as_deref().and_then(parse_fingerprint_key))
}

/// Keeps the hub's account-fingerprint key.
pub fn set_fingerprint_key(tx: &mut Tx<'_>, key: &[u8; 32]) -> Result<(), StoreError> {
    tx.set_setting(SETTING_HUB_FINGERPRINT_KEY, &hex::encode(key))
}

/// Whether this node holds the hub's account-fingerprint key.
pub fn has_fingerprint_key(store: &Store) -> Result<bool, StoreError> {
    let text = store.read()?.setting(SETTING_HUB_FINGERPRINT_KEY)?;
    Ok(text.as_deref().and_then(parse_fingerprint_key).is_some())
}

/// The hub this node enrolled with: where it is and the key it must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubPin {
    /// `HOST:PORT` of the hub (HTTP over TCP, QUIC over UDP on the same port by default); a
    /// hub deployed as several instances is a comma-separated list, tried in order
    /// ([`HubPin::addrs`]).
    pub addr: String,
    /// The hub's Ed25519 identity key.
    pub key: IdentityKey,
    /// The DNS name of the hub's WebPKI certificate for QUIC, if it has one; otherwise its
    /// self-signed certificate must carry `key`.
    pub tls_name: Option<String>,
}

impl HubPin {
    /// Every address of the hub, in the order the sync client tries them.
    pub fn addrs(&self) -> Vec<String> {
        split_addrs(&self.addr)
    }
}

/// `HOST:PORT[,HOST:PORT…]` as a list (blanks around commas ignored, empty entries dropped).
pub fn split_addrs(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect()
}

/// Why the pin could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored key does not parse (a hand-edited or damaged store).
    #[error("the pinned hub key in the store is damaged: {0}")]
    Damaged(String),
}

/// The pinned hub key, read inside a write transaction (`None`: not enrolled or damaged).
pub fn pinned_hub_key(tx: &Tx<'_>) -> Result<Option<IdentityKey>, StoreError> {
    Ok(tx.setting(SETTING_HUB_KEY)?.and_then(|k| IdentityKey::from_hex(&k).ok()))
}

/// The pinned hub, if this node enrolled.
pub fn hub_pin(store: &Store) -> Result<Option<HubPin>, PinError> {
    let view = store.read()?;
    let (Some(addr), Some(key)) = (view.setting(SETTING_HUB_ADDR)?, view.setting(SETTING_HUB_KEY)?)
    else {
        return Ok(None);
    };
    let key = IdentityKey::from_hex(&key).map_err(|e| PinError::Damaged(e.to_string()))?;
    let tls_name = view.setting(SETTING_HUB_TLS_NAME)?;
    Ok(Some(HubPin { addr, key, tls_name }))
}

/// The hub moved (a new address, the same key): later connections go to `addr` (`HOST:PORT`),
/// still accepting only the pinned key. Run with the node stopped.
pub fn move_hub(store: &Store, addr: &str) -> Result<(), PinError> {
    if hub_pin(store)?.is_none() {
        return Err(PinError::Damaged("this node is not enrolled with a hub".into()));
    }
    store.write(|tx| tx.set_setting(SETTING_HUB_ADDR, addr))?;
    Ok(())
}

//! The node's side of the hub link: enrolment over the hub's HTTP API and the QUIC connection
//! to the hub (issue 9).
//!
//! - [`enrol`]: `tradecast-node enrol --data DIR --hub HOST:PORT --code CODE` sends the node's
//!   self-signed `DeviceKeys` record (the first record of its `DEVICE` stream, appended to the
//!   outbox if missing) with the code to `POST /api/v1/devices/enrol`, checks the answer names
//!   this device, and pins the hub's identity key and address in the store's settings
//!   ([`HubPin`]), durably, before reporting success.
//! - [`client`]: [`client::connect`] opens a QUIC connection (quinn + rustls, ALPN
//!   `tradecast/1`) authenticated by the node's identity key and accepting only the pinned hub
//!   key ([`tls`]), says hello with [`PROTOCOL_VERSION`] and returns the session stream, or a
//!   typed refusal: not enrolled / revoked, upgrade required, wrong hub key.
//!
//! - [`driver`]: the session driver (outbox upstream with acks after the hub's SQL commit,
//!   reconnect with backoff and jitter, the session's heartbeats). The downstream feed is not
//!   driven yet.

pub mod client;
pub mod driver;
pub mod enrol;
pub use tradecast_quic as tls;

use tradecast_protocol::IdentityKey;

use crate::store::{Store, StoreError};

/// The sync protocol version this node speaks in its hello.
pub const PROTOCOL_VERSION: u16 = 1;
/// First bytes of the hello, before the version.
pub const HELLO_MAGIC: &[u8; 3] = b"TCH";
/// Hello answer: accepted, followed by the hub's version (u16 BE).
pub const HELLO_ACCEPTED: u8 = 0;
/// Hello answer: this node must upgrade, followed by the minimum version (u16 BE).
pub const HELLO_UPGRADE: u8 = 1;

/// QUIC application close codes the hub uses (mirrors `tradecast_hub::quic::close_code`).
pub mod close_code {
    /// The hub is shutting down.
    pub const SHUTDOWN: u64 = 0;
    /// The device is not enrolled, or revoked.
    pub const DEVICE_REFUSED: u64 = 0x10;
    /// The node's protocol version is too old.
    pub const UPGRADE_REQUIRED: u64 = 0x11;
    /// The hello was malformed or late.
    pub const BAD_HELLO: u64 = 0x12;
    /// Too many connections for one device.
    pub const TOO_MANY: u64 = 0x13;
}

/// Store settings of the pin.
const SETTING_HUB_ADDR: &str = "hub.addr";
const SETTING_HUB_KEY: &str = "hub.identity_key";
const SETTING_HUB_DEVICE_ID: &str = "hub.device_id";
/// The DNS name of the hub's WebPKI certificate, when it has one (told at enrolment).
const SETTING_HUB_TLS_NAME: &str = "hub.quic_tls_name";

/// The hub this node enrolled with: where it is and the key it must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubPin {
    /// `HOST:PORT` of the hub (HTTP over TCP, QUIC over UDP on the same port by default).
    pub addr: String,
    /// The hub's Ed25519 identity key.
    pub key: IdentityKey,
    /// The DNS name of the hub's WebPKI certificate for QUIC, if it has one; otherwise its
    /// self-signed certificate must carry `key`.
    pub tls_name: Option<String>,
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
pub fn pinned_hub_key(tx: &crate::store::Tx<'_>) -> Result<Option<IdentityKey>, StoreError> {
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

/// `tradecast-node providers`: the provider keys this node pinned from its feed.
#[derive(Debug, clap::Args)]
pub struct ProvidersArgs {
    #[command(flatten)]
    pub data: crate::commands::DataArg,
    /// Trust this pinned key (its device id, as listed): its signals are acted on from now on.
    /// Check the id with your provider first: a new key may be a new device of theirs, or
    /// someone else.
    #[arg(long, value_name = "DEVICE_ID")]
    pub trust: Option<String>,
}

/// Why `providers` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvidersError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("`{0}` is not a device id")]
    BadId(String),
    #[error("no pinned provider key {0}")]
    Unknown(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Lists the pinned provider keys (and trusts one with `--trust`). The node must be stopped
/// (its store is locked while it runs).
pub fn providers_command(
    args: &ProvidersArgs,
    out: &mut dyn std::io::Write,
) -> Result<(), ProvidersError> {
    let store = Store::open(&args.data.data.join(crate::store::FILE_NAME))?;
    if let Some(text) = &args.trust {
        let id = text
            .trim()
            .parse::<tradecast_protocol::DeviceId>()
            .map_err(|_| ProvidersError::BadId(text.clone()))?;
        let trusted = store.write(|tx| {
            let Some(mut a) = tx.author(&id)? else { return Ok(false) };
            a.trusted = true;
            tx.put_author(&a)?;
            Ok(true)
        })?;
        if !trusted {
            return Err(ProvidersError::Unknown(text.clone()));
        }
        writeln!(out, "trusted {}", id.to_text())?;
    }
    let authors = store.read()?.authors()?;
    if authors.is_empty() {
        writeln!(out, "no provider key pinned yet (the first one arrives with its first signal)")?;
    }
    for a in authors {
        writeln!(
            out,
            "{}  {:<9}  {}  (pinned at feed item {})",
            a.key.device_id().to_text(),
            if a.trusted { "trusted" } else { "NOT TRUSTED" },
            a.label,
            a.pinned_at_seq
        )?;
    }
    Ok(())
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

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
//! - The pin itself is kept in the store ([`crate::store::hub_pin`], re-exported here); the
//!   command-line verbs `enrol` and `providers` are in [`crate::commands`].
//! - [`driver`]: the session driver (outbox upstream with acks after the hub's SQL commit,
//!   reconnect with backoff and jitter, the session's heartbeats). The downstream feed is not
//!   driven yet.

pub mod client;
pub mod driver;
pub mod enrol;
pub use tradecast_quic as tls;

/// The hub pin lives in the store; re-exported here for the callers of `sync::hub_pin` & co.
pub use crate::store::hub_pin::{HubPin, PinError, hub_pin, move_hub, pinned_hub_key};

use crate::store::StoreError;

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

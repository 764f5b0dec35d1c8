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
//! - [`billing`]: the trader's plan read from the hub (`GET /api/v1/devices/{id}/billing`, signed
//!   with the identity key) for the settings page, and the device links to the hub's billing
//!   pages.

pub mod billing;
pub mod client;
pub mod driver;
pub mod enrol;
pub use tradecast_quic as tls;

/// The hub pin lives in the store; re-exported here for the callers of `sync::hub_pin` & co.
pub use crate::store::hub_pin::{HubPin, PinError, hub_pin, move_hub, pinned_hub_key};

use crate::store::StoreError;

/// The hello's constants and the QUIC close codes, defined once in the protocol crate.
pub use tradecast_protocol::session::wire::{
    HELLO_ACCEPTED, HELLO_MAGIC, HELLO_UPGRADE, PROTOCOL_VERSION, close_code,
};

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
    #[error("`{0}` is not a source (`inbox` or `relay:<device id>`)")]
    BadSource(String),
    #[error("{0} is not quarantined")]
    NotQuarantined(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

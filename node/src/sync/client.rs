//! The node's QUIC connection to its pinned hub: handshake, then the hello on the first
//! bidirectional stream, which then carries the sync session.
//!
//! Every way the hub can say no becomes a typed [`ConnectError`] a person can act on: the hub
//! closes with `DEVICE_REFUSED` (not enrolled, or revoked: [`ConnectError::Refused`]),
//! `UPGRADE_REQUIRED` or answers `HELLO_UPGRADE` ([`ConnectError::UpgradeRequired`]); a hub
//! without the pinned key fails the TLS handshake ([`ConnectError::Handshake`]). Every wait is
//! bounded ([`CONNECT_TIMEOUT`]).

use std::net::SocketAddr;
use std::time::Duration;

use tradecast_protocol::{Identity, IdentityKey};

use super::{HELLO_ACCEPTED, HELLO_MAGIC, HELLO_UPGRADE, PROTOCOL_VERSION, close_code, tls};

/// Bound of the handshake plus hello.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the node could not connect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The local UDP socket could not be bound.
    #[error("quic socket: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake failed: unreachable, or the hub does not hold the pinned key.
    #[error("quic handshake with the hub failed (wrong hub key, or unreachable): {0}")]
    Handshake(String),
    /// The hub refused this device: not enrolled, or revoked.
    #[error("the hub refused this device: {0}")]
    Refused(String),
    /// This node is too old for the hub.
    #[error(
        "upgrade tradecast-node: the hub needs a newer protocol version ({}), this node speaks {PROTOCOL_VERSION}",
        min.map_or_else(|| "unknown".to_string(), |m| format!("{m} or later"))
    )]
    UpgradeRequired { min: Option<u16> },
    /// The connection ended before the hello was answered.
    #[error("the hub closed the connection: {0}")]
    Closed(String),
    /// The hello's answer was malformed.
    #[error("the hub's hello answer is malformed")]
    BadAnswer,
    /// Nothing within [`CONNECT_TIMEOUT`].
    #[error("the hub did not answer within {0:?}")]
    Timeout(Duration),
}

/// A connected, accepted session with the hub.
#[derive(Debug)]
pub struct HubConnection {
    /// The hub's protocol version.
    pub hub_version: u16,
    /// The connection (close it to leave).
    pub conn: quinn::Connection,
    /// The session stream, node → hub.
    pub send: quinn::SendStream,
    /// The session stream, hub → node.
    pub recv: quinn::RecvStream,
    // Kept alive with the connection.
    _endpoint: quinn::Endpoint,
}

impl HubConnection {
    /// The parts: the connection, the session stream and the endpoint (keep it alive).
    pub fn into_parts(
        self,
    ) -> (quinn::Connection, quinn::SendStream, quinn::RecvStream, quinn::Endpoint) {
        (self.conn, self.send, self.recv, self._endpoint)
    }

    /// Why the connection ended, once it has (waits).
    pub async fn closed(&self) -> ConnectError {
        from_connection_error(self.conn.closed().await)
    }
}

pub(crate) fn from_connection_error(e: quinn::ConnectionError) -> ConnectError {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            match u32::try_from(c.error_code.into_inner()) {
                Ok(close_code::DEVICE_REFUSED) => ConnectError::Refused(reason),
                Ok(close_code::UPGRADE_REQUIRED) => ConnectError::UpgradeRequired { min: None },
                _ => ConnectError::Closed(reason),
            }
        }
        other => ConnectError::Closed(other.to_string()),
    }
}

/// Connects to the hub at `addr` as `identity`, accepting only `hub_key`, and says hello with
/// `version` (normally [`PROTOCOL_VERSION`]; tests pass an older one).
pub async fn connect_with_version(
    identity: &Identity,
    hub_key: IdentityKey,
    addr: SocketAddr,
    version: u16,
) -> Result<HubConnection, ConnectError> {
    connect_trusting(identity, &tls::HubTrust::Pinned(hub_key), addr, version).await
}

/// Connects to the hub at `addr` as `identity`, accepting the hub `trust` describes (its pinned
/// identity key, or a WebPKI certificate for its name), and says hello with `version`.
pub async fn connect_trusting(
    identity: &Identity,
    trust: &tls::HubTrust,
    addr: SocketAddr,
    version: u16,
) -> Result<HubConnection, ConnectError> {
    let bind: SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .map_err(|_| ConnectError::BadAnswer)?;
    let bind = if addr.ip().is_loopback() { SocketAddr::new(addr.ip(), 0) } else { bind };
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(tls::client_config_for(identity, trust)?);
    let attempt = async {
        let connecting = endpoint
            .connect(addr, trust.server_name())
            .map_err(|e| ConnectError::Handshake(e.to_string()))?;
        let conn = connecting.await.map_err(|e| match e {
            quinn::ConnectionError::ApplicationClosed(_) => from_connection_error(e),
            other => ConnectError::Handshake(other.to_string()),
        })?;
        let lost = |conn: &quinn::Connection| {
            conn.close_reason().map(from_connection_error).unwrap_or(ConnectError::BadAnswer)
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(from_connection_error)?;
        let mut hello = HELLO_MAGIC.to_vec();
        hello.extend_from_slice(&version.to_be_bytes());
        send.write_all(&hello).await.map_err(|_| lost(&conn))?;
        let mut answer = [0u8; 3];
        if recv.read_exact(&mut answer).await.is_err() {
            // The hub closed: its close code says why (refused, upgrade). Wait for it.
            return Err(from_connection_error(conn.closed().await));
        }
        let v = u16::from_be_bytes([answer[1], answer[2]]);
        match answer[0] {
            HELLO_ACCEPTED => Ok((conn, send, recv, v)),
            HELLO_UPGRADE => Err(ConnectError::UpgradeRequired { min: Some(v) }),
            _ => Err(ConnectError::BadAnswer),
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok((conn, send, recv, hub_version))) => {
            Ok(HubConnection { hub_version, conn, send, recv, _endpoint: endpoint })
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ConnectError::Timeout(CONNECT_TIMEOUT)),
    }
}

/// [`connect_with_version`] with this node's [`PROTOCOL_VERSION`].
pub async fn connect(
    identity: &Identity,
    hub_key: IdentityKey,
    addr: SocketAddr,
) -> Result<HubConnection, ConnectError> {
    connect_with_version(identity, hub_key, addr, PROTOCOL_VERSION).await
}

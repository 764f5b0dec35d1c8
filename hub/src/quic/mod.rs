//! The hub's QUIC endpoint (quinn + rustls): where enrolled nodes connect for the sync session.
//!
//! - **Listening**: UDP on `quic_listen` (default: the HTTP address's IP and port, over UDP,
//!   so loopback by default). [`start`] binds and accepts; [`QuicHub`] is the running endpoint.
//! - **Authentication** ([`tls`]): both sides present self-signed certificates for their
//!   Ed25519 identity keys; the handshake signatures are checked against those keys. Right after
//!   the handshake, before reading anything, the hub looks the node's key up among enrolled,
//!   unrevoked devices ([`crate::devices::active_device`]) and closes the connection with
//!   [`close_code::DEVICE_REFUSED`] otherwise.
//! - **Hello**: the node opens the first bidirectional stream and sends [`HELLO_MAGIC`] and its
//!   protocol version (u16, big-endian). The hub answers [`HELLO_ACCEPTED`] and its version, or
//!   [`HELLO_UPGRADE`] and the minimum version it accepts, then closes with
//!   [`close_code::UPGRADE_REQUIRED`] and a readable reason: an old node fails fast and says
//!   "upgrade", it never hangs. That stream is then the session's stream (length-prefixed
//!   frames, [`MAX_FRAME_LEN`]).
//! - **Revocation**: every live connection is registered by device in [`Peers`] (held in the
//!   app state); revoking a device through the API closes its connections at once. A device is
//!   registered *before* its enrolment is checked, so a revocation racing a handshake is seen by
//!   one side or the other.
//!
//! - **Session**: after the hello, [`driver`] runs the protocol's `HubSession` on the hello
//!   stream; [`store`] commits upstream records to SQL before they are acknowledged. The
//!   downstream feed (fan-out queue → device) is not driven yet.

pub mod driver;
pub mod store;
pub use tradecast_quic as tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tradecast_protocol::DeviceId;

use crate::state::AppState;

/// The hello's constants and the QUIC close codes, defined once in the protocol crate for the
/// hub and the node.
pub use tradecast_protocol::session::wire::{
    HELLO_ACCEPTED, HELLO_MAGIC, HELLO_UPGRADE, PROTOCOL_VERSION, close_code,
};

/// The oldest node protocol version this hub accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 2;
/// Upper bound of one session frame on the stream (the protocol's own bound).
pub const MAX_FRAME_LEN: usize = tradecast_protocol::session::wire::MAX_FRAME_LEN;
/// How long a node has to complete the handshake and say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections held at once by one device (a second node run on the same data dir, a
/// reconnect racing the old connection's close); more are refused.
const MAX_CONNECTIONS_PER_DEVICE: usize = 4;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The UDP socket could not be bound.
    #[error("quic listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Live connections by device, so a revocation can close them.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    inner: Arc<Mutex<PeersInner>>,
}

#[derive(Debug, Default)]
struct PeersInner {
    next_id: u64,
    by_device: HashMap<DeviceId, Vec<(u64, quinn::Connection)>>,
    /// One session per device at a time: a new one starts after the previous one's driver
    /// returned (its in-flight commits settled), as the protocol asks.
    sessions: HashMap<DeviceId, Arc<tokio::sync::Mutex<()>>>,
}

impl Peers {
    fn lock(&self) -> std::sync::MutexGuard<'_, PeersInner> {
        // A panic while holding this lock leaves plain data; keep serving.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection; `None` when the device holds too many already.
    fn register(&self, device: DeviceId, conn: quinn::Connection) -> Option<u64> {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let list = inner.by_device.entry(device).or_default();
        if list.len() >= MAX_CONNECTIONS_PER_DEVICE {
            return None;
        }
        list.push((id, conn));
        Some(id)
    }

    fn unregister(&self, device: &DeviceId, id: u64) {
        let mut inner = self.lock();
        if let Some(list) = inner.by_device.get_mut(device) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                inner.by_device.remove(device);
                inner.sessions.remove(device);
            }
        }
    }

    /// Closes the device's other connections (a node runs one session; a newer connection
    /// replaces an older one) and returns the device's session lock.
    fn take_over(&self, device: &DeviceId, id: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut inner = self.lock();
        if let Some(list) = inner.by_device.get(device) {
            for (other, conn) in list {
                if *other != id {
                    conn.close(
                        close_code::SESSION_CLOSED.into(),
                        b"replaced by a newer connection",
                    );
                }
            }
        }
        inner.sessions.entry(*device).or_default().clone()
    }

    /// Closes every connection of `device` with `code` and `reason`; returns how many.
    pub fn close_device(&self, device: &DeviceId, code: u32, reason: &str) -> usize {
        let list = self.lock().by_device.remove(device).unwrap_or_default();
        for (_, conn) in &list {
            conn.close(code.into(), reason.as_bytes());
        }
        list.len()
    }

    /// Devices connected now.
    pub fn connected(&self) -> Vec<DeviceId> {
        self.lock().by_device.keys().copied().collect()
    }

    /// Whether `device` holds a connection now.
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.lock().by_device.contains_key(device)
    }
}

/// The running endpoint.
#[derive(Debug)]
pub struct QuicHub {
    /// The bound UDP address.
    pub addr: SocketAddr,
    endpoint: quinn::Endpoint,
    task: tokio::task::JoinHandle<()>,
}

impl QuicHub {
    /// Closes every connection and stops accepting.
    pub async fn stop(self) {
        self.endpoint.close(close_code::SHUTDOWN.into(), b"hub stopping");
        self.task.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// UDP receive buffer asked for: thousands of nodes connecting at once overflow the system
/// default (about 208 KiB here) and their handshakes time out (see the README's performance
/// section). The kernel caps it at `net.core.rmem_max`; a smaller grant is logged, not fatal.
pub const UDP_RECV_BUFFER: usize = 4 << 20;

/// The endpoint's socket: bound to `addr`, with the larger receive buffer.
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECV_BUFFER) {
        tracing::warn!(error = %e, "could not raise the QUIC socket's receive buffer");
    }
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < UDP_RECV_BUFFER {
        tracing::info!(
            granted,
            asked = UDP_RECV_BUFFER,
            "QUIC socket receive buffer (capped by net.core.rmem_max)"
        );
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The key of the endpoint's stateless resets, derived from the hub's identity so that it
/// survives a restart (RFC 9000 §10.3.2): a hub killed and started again answers the packets of
/// connections it lost with resets the nodes can verify and act on, instead of leaving them to
/// notice the silence. (A random key per start, quinn's default, makes those resets
/// unverifiable.)
struct ResetKey(zeroize::Zeroizing<[u8; 64]>);

impl ResetKey {
    /// Domain of the deterministic Ed25519 signature the key is taken from.
    const DOMAIN: &'static [u8] = b"tradecast/quic-stateless-reset/v1";

    fn of(identity: &tradecast_protocol::Identity) -> ResetKey {
        ResetKey(zeroize::Zeroizing::new(identity.sign(Self::DOMAIN, b"").0))
    }

    fn mac(&self) -> hmac::Hmac<sha2::Sha256> {
        use hmac::KeyInit;
        // 64 bytes: SHA-256's block, HMAC's key as is.
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&(*self.0).into())
    }
}

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        use hmac::Mac;
        let mut m = self.mac();
        m.update(data);
        let tag = m.finalize().into_bytes();
        let n = signature_out.len().min(tag.len());
        signature_out[..n].copy_from_slice(&tag[..n]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        use hmac::Mac;
        let mut m = self.mac();
        m.update(data);
        m.verify_slice(signature).map_err(|_| quinn::crypto::CryptoError)
    }
}

/// Binds `addr` (UDP) and accepts nodes.
pub fn start(state: AppState, addr: SocketAddr) -> Result<QuicHub, QuicError> {
    let config = match &state.config.quic_tls {
        None => tls::server_config(&state.hub_identity)?,
        Some(t) => tls::server_config_with_chain(
            tls::load_pem_certs(&t.cert_file)?,
            tls::load_pem_key(&t.key_file)?,
        )?,
    };
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::new(Arc::new(ResetKey::of(&state.hub_identity))),
        Some(config),
        udp_socket(addr)?,
        Arc::new(quinn::TokioRuntime),
    )?;
    let addr = endpoint.local_addr()?;
    let accept = endpoint.clone();
    let task = tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_connection(state, incoming).await {
                    tracing::debug!(error = %e, "quic connection ended");
                }
            });
        }
    });
    Ok(QuicHub { addr, endpoint, task })
}

/// Why one connection ended (logged, never shown to the peer beyond its close reason).
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("handshake: {0}")]
    Handshake(#[from] quinn::ConnectionError),
    #[error("handshake or hello timed out")]
    Timeout,
    #[error("peer certificate without an Ed25519 identity key")]
    NoKey,
    #[error("refused: {0}")]
    Refused(String),
    #[error("hello: {0}")]
    Hello(String),
    #[error("session: {0}")]
    Session(String),
}

fn peer_key(conn: &quinn::Connection) -> Option<tradecast_protocol::IdentityKey> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    tls::cert_identity_key(certs.first()?)
}

async fn serve_connection(state: AppState, incoming: quinn::Incoming) -> Result<(), ConnError> {
    let conn =
        tokio::time::timeout(HELLO_TIMEOUT, incoming).await.map_err(|_| ConnError::Timeout)??;
    let key = peer_key(&conn).ok_or(ConnError::NoKey)?;
    let device = key.device_id();
    let Some(reg) = state.quic_peers.register(device, conn.clone()) else {
        conn.close(close_code::TOO_MANY.into(), b"too many connections for this device");
        return Err(ConnError::Refused("too many connections".into()));
    };
    let result = serve_registered(&state, &conn, &key, reg).await;
    state.quic_peers.unregister(&device, reg);
    result
}

async fn serve_registered(
    state: &AppState,
    conn: &quinn::Connection,
    key: &tradecast_protocol::IdentityKey,
    reg: u64,
) -> Result<(), ConnError> {
    let device = key.device_id();
    match crate::devices::active_device(&state.db, &device).await {
        Ok((_, enrolled)) if enrolled == *key => {}
        Ok(_) => {
            conn.close(close_code::DEVICE_REFUSED.into(), b"device refused: key mismatch");
            return Err(ConnError::Refused("key mismatch".into()));
        }
        Err(e) => {
            let reason = format!("device refused: {e}");
            conn.close(close_code::DEVICE_REFUSED.into(), reason.as_bytes());
            return Err(ConnError::Refused(reason));
        }
    }
    let hello = tokio::time::timeout(HELLO_TIMEOUT, async {
        let (send, mut recv) = conn.accept_bi().await?;
        let mut buf = [0u8; 5];
        recv.read_exact(&mut buf).await.map_err(|e| ConnError::Hello(e.to_string()))?;
        Ok::<_, ConnError>((send, recv, buf))
    })
    .await
    .map_err(|_| ConnError::Timeout)?;
    let (mut send, recv, buf) = hello?;
    if &buf[..3] != HELLO_MAGIC {
        conn.close(close_code::BAD_HELLO.into(), b"bad hello");
        return Err(ConnError::Hello("bad magic".into()));
    }
    let version = u16::from_be_bytes([buf[3], buf[4]]);
    if version < MIN_PROTOCOL_VERSION {
        let mut answer = vec![HELLO_UPGRADE];
        answer.extend_from_slice(&MIN_PROTOCOL_VERSION.to_be_bytes());
        let _ = send.write_all(&answer).await;
        let _ = send.finish();
        let reason = format!(
            "upgrade required: this node speaks protocol {version}, the hub needs {MIN_PROTOCOL_VERSION} or later; upgrade tradecast-node"
        );
        // Give the answer a moment to leave before the close overtakes it.
        let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
        conn.close(close_code::UPGRADE_REQUIRED.into(), reason.as_bytes());
        return Err(ConnError::Hello(reason));
    }
    let mut answer = vec![HELLO_ACCEPTED];
    answer.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    send.write_all(&answer).await.map_err(|e| ConnError::Hello(e.to_string()))?;
    tracing::info!(device = %device.fmt_short(), version, "node connected over quic");
    let lock = state.quic_peers.take_over(&device, reg);
    let _session = lock.lock_owned().await;
    let ended = driver::run(state, conn, *key, send, recv).await;
    match &ended {
        Ok(()) => tracing::info!(device = %device.fmt_short(), "sync session ended"),
        Err(e) => {
            tracing::info!(device = %device.fmt_short(), error = %e, "sync session ended");
            conn.close(close_code::SESSION_CLOSED.into(), b"session ended");
        }
    }
    ended.map_err(|e| ConnError::Session(e.to_string()))
}

#[cfg(test)]
mod tests {
    use quinn::crypto::HmacKey;
    use tradecast_protocol::Identity;

    use super::ResetKey;

    /// The reset key of a hub started again on the same identity is the same key (its resets
    /// verify at the nodes); another hub's is not.
    #[test]
    fn the_stateless_reset_key_survives_a_restart_and_is_the_hubs_own() {
        let hub = Identity::from_secret_bytes(&[3; 32], &[4; 32]);
        let (before, after) = (ResetKey::of(&hub), ResetKey::of(&hub));
        let other = ResetKey::of(&Identity::from_secret_bytes(&[5; 32], &[6; 32]));
        let cid = b"connection id 1";
        let mut tag = [0u8; 32];
        before.sign(cid, &mut tag);
        assert_eq!(before.signature_len(), tag.len());
        assert!(after.verify(cid, &tag).is_ok());
        assert!(after.verify(b"connection id 2", &tag).is_err());
        assert!(other.verify(cid, &tag).is_err());
        let mut other_tag = [0u8; 32];
        other.sign(cid, &mut other_tag);
        assert_ne!(tag, other_tag);
    }
}

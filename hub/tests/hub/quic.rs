//! The QUIC endpoint over a real connection on 127.0.0.1: mutual authentication by identity
//! keys, the enrolment check, the hub pin, ALPN and hello versions, and revocation closing an
//! open connection at once.

use std::time::{Duration, Instant};

use tradecast_hub::quic::{self, close_code, tls};
use tradecast_protocol::{Identity, IdentityKey};

use crate::helpers::{Backend, TestHub, new_identity};
use crate::on_both;

pub(crate) fn quic_addr(hub: &TestHub) -> std::net::SocketAddr {
    hub.started.as_ref().expect("running").quic_addr
}

pub(crate) fn hub_key(hub: &TestHub) -> IdentityKey {
    hub.state().hub_identity.identity_key()
}

/// A client endpoint for `id` pinning `pin`, connected to the hub (handshake done).
pub(crate) async fn connect(
    hub: &TestHub,
    id: &Identity,
    pin: IdentityKey,
) -> Result<(quinn::Endpoint, quinn::Connection), quinn::ConnectionError> {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(tls::client_config(id, pin).unwrap());
    let conn = ep.connect(quic_addr(hub), tls::SERVER_NAME).unwrap().await?;
    Ok((ep, conn))
}

/// Says hello with `version`; the hub's answer (code, version) or the connection's end. The
/// session stream stays open while the returned streams live (finishing it ends the session).
pub(crate) async fn hello_streams(
    conn: &quinn::Connection,
    version: u16,
) -> Result<((u8, u16), (quinn::SendStream, quinn::RecvStream)), String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let mut msg = quic::HELLO_MAGIC.to_vec();
    msg.extend_from_slice(&version.to_be_bytes());
    send.write_all(&msg).await.map_err(|e| e.to_string())?;
    let mut answer = [0u8; 3];
    tokio::time::timeout(Duration::from_secs(5), recv.read_exact(&mut answer))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(((answer[0], u16::from_be_bytes([answer[1], answer[2]])), (send, recv)))
}

/// [`hello_streams`] when the session stream is not needed afterwards.
async fn hello(conn: &quinn::Connection, version: u16) -> Result<(u8, u16), String> {
    hello_streams(conn, version).await.map(|(a, _)| a)
}

/// The application close code and reason the connection ended with.
pub(crate) async fn closed_with(conn: &quinn::Connection) -> (u64, String) {
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("the hub closes the connection within 5 s");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            (c.error_code.into_inner(), String::from_utf8_lossy(&c.reason).into_owned())
        }
        other => panic!("expected an application close, got {other}"),
    }
}

pub(crate) async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn quic_enrolled_device_connects_and_says_hello(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let owner = hub.owner().await;
    let (node, _) = hub.enrol(&owner, "office PC").await;
    assert!(quic_addr(&hub).ip().is_loopback());
    let (_ep, conn) = connect(&hub, &node, hub_key(&hub)).await.expect("handshake");
    assert_eq!(
        conn.handshake_data()
            .unwrap()
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .unwrap()
            .protocol
            .as_deref(),
        Some(tls::ALPN)
    );
    let (answer, _streams) = hello_streams(&conn, quic::PROTOCOL_VERSION).await.unwrap();
    assert_eq!(answer, (quic::HELLO_ACCEPTED, quic::PROTOCOL_VERSION));
    let peers = hub.state().quic_peers.clone();
    let device = node.device_id();
    wait_until("the hub to register the device", || peers.is_connected(&device)).await;
    assert_eq!(peers.connected(), vec![device]);
    let metrics = hub.http.get(hub.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tradecast_devices_connected 1"), "{metrics}");
    conn.close(0u32.into(), b"bye");
    wait_until("the hub to forget the device", || !peers.is_connected(&device)).await;
    hub.stop().await;
}

async fn quic_unenrolled_device_is_refused(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let stranger = new_identity();
    // TLS completes on the client's side first (TLS 1.3); the hub's check closes it before any
    // byte is read.
    let (_ep, conn) = connect(&hub, &stranger, hub_key(&hub)).await.expect("tls handshake");
    assert!(hello(&conn, quic::PROTOCOL_VERSION).await.is_err());
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, u64::from(close_code::DEVICE_REFUSED));
    assert!(reason.contains("not enrolled"), "{reason}");
    assert!(hub.state().quic_peers.connected().is_empty());
    hub.stop().await;
}

async fn quic_a_hub_without_the_pinned_key_is_refused(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let owner = hub.owner().await;
    let (node, _) = hub.enrol(&owner, "office PC").await;
    let impostor_key = new_identity().identity_key();
    let err = connect(&hub, &node, impostor_key).await.expect_err("the pin must refuse this hub");
    // The node's verifier refused the certificate: a TLS alert, not a timeout.
    assert!(matches!(err, quinn::ConnectionError::TransportError(_)), "{err}");
    assert!(hub.state().quic_peers.connected().is_empty());
    hub.stop().await;
}

async fn quic_an_old_node_is_told_to_upgrade(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let owner = hub.owner().await;
    let (node, _) = hub.enrol(&owner, "old laptop").await;
    let (_ep, conn) = connect(&hub, &node, hub_key(&hub)).await.expect("handshake");
    let started = Instant::now();
    // A node of protocol version 1 (a feed per device) is refused since version 2.
    let answer = hello(&conn, 1).await;
    let (code, reason) = closed_with(&conn).await;
    assert!(started.elapsed() < Duration::from_secs(3), "no hang: {:?}", started.elapsed());
    assert_eq!(code, u64::from(close_code::UPGRADE_REQUIRED));
    assert!(reason.contains("upgrade"), "{reason}");
    // The answer itself usually arrives before the close; when it does, it says the same.
    if let Ok(a) = answer {
        assert_eq!(a, (quic::HELLO_UPGRADE, quic::MIN_PROTOCOL_VERSION));
    }
    hub.stop().await;
}

async fn quic_revocation_closes_the_open_connection_at_once(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let owner = hub.owner().await;
    let (node, device_text) = hub.enrol(&owner, "stolen laptop").await;
    let (_ep, conn) = connect(&hub, &node, hub_key(&hub)).await.expect("handshake");
    let (answer, _streams) = hello_streams(&conn, quic::PROTOCOL_VERSION).await.unwrap();
    assert_eq!(answer.0, quic::HELLO_ACCEPTED);
    let peers = hub.state().quic_peers.clone();
    wait_until("registration", || peers.is_connected(&node.device_id())).await;

    let revoked_at = Instant::now();
    let r = hub
        .post(
            &format!("/api/v1/devices/{device_text}/revoke"),
            Some(&owner.token),
            serde_json::json!({}),
        )
        .await;
    r.ok(200);
    let (code, reason) = closed_with(&conn).await;
    let took = revoked_at.elapsed();
    assert_eq!(code, u64::from(close_code::DEVICE_REFUSED));
    assert_eq!(reason, "device revoked");
    assert!(took < Duration::from_secs(1), "closed {took:?} after the revocation");
    assert!(!peers.is_connected(&node.device_id()));

    // And a new connection is refused at the handshake's end.
    let (_ep2, conn2) = connect(&hub, &node, hub_key(&hub)).await.expect("tls handshake");
    assert!(hello(&conn2, quic::PROTOCOL_VERSION).await.is_err());
    let (code, reason) = closed_with(&conn2).await;
    assert_eq!(code, u64::from(close_code::DEVICE_REFUSED));
    assert!(reason.contains("revoked"), "{reason}");
    hub.stop().await;
}

async fn quic_a_newer_connection_replaces_the_older_one(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let owner = hub.owner().await;
    let (node, _) = hub.enrol(&owner, "office PC").await;
    let (_ep1, first) = connect(&hub, &node, hub_key(&hub)).await.expect("handshake");
    let (a1, _s1) = hello_streams(&first, quic::PROTOCOL_VERSION).await.unwrap();
    assert_eq!(a1.0, quic::HELLO_ACCEPTED);
    let (_ep2, second) = connect(&hub, &node, hub_key(&hub)).await.expect("handshake");
    let (a2, _s2) = hello_streams(&second, quic::PROTOCOL_VERSION).await.unwrap();
    assert_eq!(a2.0, quic::HELLO_ACCEPTED);
    // One session per device: the older connection is closed, the newer one stays.
    let (code, reason) = closed_with(&first).await;
    assert_eq!(code, u64::from(close_code::SESSION_CLOSED));
    assert!(reason.contains("replaced"), "{reason}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(second.close_reason().is_none(), "{:?}", second.close_reason());
    assert!(hub.state().quic_peers.is_connected(&node.device_id()));
    hub.stop().await;
}

on_both!(
    quic_a_newer_connection_replaces_the_older_one,
    quic_enrolled_device_connects_and_says_hello,
    quic_unenrolled_device_is_refused,
    quic_a_hub_without_the_pinned_key_is_refused,
    quic_an_old_node_is_told_to_upgrade,
    quic_revocation_closes_the_open_connection_at_once,
);

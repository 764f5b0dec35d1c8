//! The fuzz targets' bodies, shared by `protocol/fuzz` (cargo-fuzz) and the crate's tests (which
//! replay every committed corpus file and regression through them, so a crash found once stays
//! fixed). Each asserts the properties of its decoder; none may panic otherwise. Pure.

use crate::seal::{self, StreamKey};
use crate::session::{
    HubAction, HubEvent, HubSession, HubSetup, LocalStream, NodeAction, NodeEvent, NodeSession,
    NodeSetup, SessionConfig, SignatureCheck, wire,
};
use crate::vectors::vector_identity;
use crate::{Body, ChainHash, Header, HeaderFields, Kind, Record, StreamId};

/// Any bytes as a record, a header, a body of every kind in every version, a hub request, a
/// session frame. A record or header that decodes re-encodes to the same bytes.
pub fn record_decode(data: &[u8]) {
    if let Ok(record) = Record::decode(data) {
        assert_eq!(record.encode(), data, "a decoded record re-encodes to its bytes");
        assert_eq!(record.encoded_len(), data.len());
        let key = vector_identity(0).identity_key();
        let _ = record.verify(&key);
        let _ = record.body();
    }
    if let Ok(header) = Header::decode(data) {
        assert_eq!(header.encode(), data, "headers are canonical");
    }
    for kind in Kind::ALL {
        for version in crate::record::MIN_VERSION..=crate::record::VERSION {
            // Bodies need not be canonical (a decimal's text may have a leading zero): only
            // that decoding never panics is asserted; a record keeps its body bytes as carried.
            if let Ok(body) = Body::decode_versioned(version, kind, data) {
                let _ = body.encode_for(version);
            }
        }
    }
    if let Ok(record) = Record::decode(data) {
        let hub = vector_identity(2).identity_key();
        let me = vector_identity(1).device_id();
        let _ = crate::verify_hub_request(&record, &hub, me, 0);
    }
    let _ = wire::decode(data);
}

/// Opening sealed bodies: the first 9 bytes choose (stream, seq), the rest is the sealed body.
/// Forgeries never open; sealing the same bytes opens back to them.
pub fn sealed_open(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let owner = vector_identity(1);
    let author = owner.device_id();
    let stream = StreamId(u32::from(data[0]));
    let seq = u64::from_le_bytes(data[1..9].try_into().unwrap_or([0; 8]));
    let key = StreamKey::derive(&owner, &author, stream);
    let sealed = &data[9..];
    // The fuzzer cannot forge Poly1305 tags.
    assert!(seal::open(&key, &author, stream, seq, sealed).is_err() || sealed.len() >= 40);
    let nonce = [7u8; seal::NONCE_LEN];
    let again = seal::seal_with_nonce(&key, &author, stream, seq, sealed, &nonce);
    let opened = seal::open(&key, &author, stream, seq, &again).expect("own seal opens");
    assert_eq!(opened.as_slice(), sealed);
    if let Ok(record) = Record::decode(sealed) {
        let _ = record.open(&key);
    }
}

fn drain(node: &mut NodeSession<SignatureCheck>, hub: &mut HubSession<SignatureCheck>, now: i64) {
    for _ in 0..64 {
        let mut moved = false;
        while let Some(action) = node.poll_action() {
            moved = true;
            match action {
                NodeAction::Send(bytes) => hub.handle(now, HubEvent::BytesReceived(&bytes)),
                NodeAction::CommitFeed { source, item } => {
                    let _ = node.handle(now, NodeEvent::FeedCommitted { source, seq: item.seq });
                }
                _ => {}
            }
        }
        while let Some(action) = hub.poll_action() {
            moved = true;
            match action {
                HubAction::Send(bytes) => {
                    let _ = node.handle(now, NodeEvent::BytesReceived(&bytes));
                }
                HubAction::Commit { record, .. } => {
                    let h = *record.header();
                    hub.handle(now, HubEvent::Committed { stream: h.stream, seq: h.seq });
                }
                _ => {}
            }
        }
        if !moved {
            return;
        }
    }
}

/// The sessions' receive path: chunks `side:u8 ‖ len:u16 le ‖ bytes`; side bit 0 picks the hub
/// or the node, bit 1 re-seals the frame check so mutations reach the message logic, bit 2
/// advances time and fires the timers. Both sessions start open over a short chain.
pub fn session_receive(data: &[u8]) {
    // Keys and the first record are the same for every input: make them once.
    static SETUP: std::sync::OnceLock<(crate::Identity, crate::Identity, Record)> =
        std::sync::OnceLock::new();
    let (node_id, hub_id, first) = SETUP.get_or_init(|| {
        let node_id = vector_identity(0);
        let body = Body::Heartbeat(crate::Heartbeat {
            device: node_id.device_id(),
            at_ms: 1,
            ea_connected: true,
            terminal_time_ms: None,
        });
        let first = Record::sign(
            &node_id,
            HeaderFields {
                stream: StreamId::DEVICE,
                seq: 1,
                prev_hash: ChainHash::GENESIS,
                created_at_ms: 1,
            },
            &body,
        );
        (node_id, vector_identity(2), first)
    });
    let first = first.clone();
    let cfg = SessionConfig::default();
    let mut node = NodeSession::new(
        cfg,
        NodeSetup {
            identity: node_id.identity_key(),
            hub: hub_id.identity_key(),
            streams: vec![LocalStream {
                stream: StreamId::DEVICE,
                tip_seq: 1,
                tip_hash: first.header_hash(),
                unacked: vec![first],
            }],
            sources: vec![],
            authors: vec![],
            restored: false,
        },
        SignatureCheck,
    );
    let mut hub = HubSession::new(
        cfg,
        HubSetup {
            hub: hub_id.identity_key(),
            peer: node_id.identity_key(),
            streams: vec![],
            sources: vec![crate::session::SourceStart {
                source: crate::session::Source::Inbox,
                acked: 0,
                tip: 0,
            }],
        },
        SignatureCheck,
        0,
    );
    let _ = node.handle(0, NodeEvent::Connected);
    drain(&mut node, &mut hub, 0);
    let mut rest = data;
    let mut now = 1;
    while rest.len() >= 3 {
        let side = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        let take = len.min(rest.len() - 3);
        let mut frame = rest[3..3 + take].to_vec();
        rest = &rest[3 + take..];
        if side & 2 != 0 {
            wire::reseal(&mut frame);
        }
        if side & 1 == 0 {
            hub.handle(now, HubEvent::BytesReceived(&frame));
        } else {
            let _ = node.handle(now, NodeEvent::BytesReceived(&frame));
        }
        if side & 4 != 0 {
            now += 3_000;
            hub.handle(now, HubEvent::TimerFired);
            let _ = node.handle(now, NodeEvent::TimerFired);
        }
        drain(&mut node, &mut hub, now);
        now += 1;
    }
}

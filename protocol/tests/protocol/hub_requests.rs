//! Hub-signed requests: a genuine one verifies for its device; a forged one is refused by its
//! first fault (wrong signer, wrong device, expired, wrong stream or kind, a bad signature).
//! And the version rules: the kinds of version 2 do not exist under version 1.

use tradecast_protocol::record::{Header, MIN_VERSION, VERSION};
use tradecast_protocol::{
    ApprovalRequest, Body, ChainHash, Channel, DecodeError, EncodeError, Feature, FeatureGrant,
    GrantId, HeaderFields, HubRequest, HubRequestError, Identity, Kind, Record, RemoteDecision,
    RequestId, SignalId, StreamId, verify_hub_request,
};

use crate::support::identity;

const NOW: i64 = 1_764_000_000_000;

fn request(to: &Identity, expires_at_ms: i64) -> ApprovalRequest {
    ApprovalRequest {
        request_id: RequestId([1; 16]),
        signal_id: SignalId([2; 16]),
        device: to.device_id(),
        decision: RemoteDecision::Approved,
        lots: Some("0.10".parse().unwrap()),
        expires_at_ms,
        channel: Channel::MiniApp,
        telegram_user_id: Some(77),
        requested_at_ms: NOW - 1_000,
    }
}

fn grant(to: &Identity, valid_until_ms: Option<i64>) -> FeatureGrant {
    FeatureGrant {
        grant_id: GrantId([3; 16]),
        device: to.device_id(),
        plan_id: "pro".into(),
        features: vec![Feature::Signals, Feature::AutoCopy],
        valid_from_ms: NOW - 10_000,
        valid_until_ms,
        issued_at_ms: NOW - 10_000,
    }
}

fn signed(by: &Identity, stream: StreamId, body: Body) -> Record {
    let fields = HeaderFields { stream, seq: 1, prev_hash: ChainHash::GENESIS, created_at_ms: NOW };
    Record::sign(by, fields, &body)
}

#[test]
fn genuine_requests_and_grants_verify_for_their_device() {
    let (hub, me) = (identity(1), identity(2));
    let r = request(&me, NOW + 60_000);
    let rec = signed(&hub, StreamId::HUB_REQUESTS, Body::ApprovalRequest(r.clone()));
    assert_eq!(
        verify_hub_request(&rec, &hub.identity_key(), me.device_id(), NOW),
        Ok(HubRequest::Approval(r))
    );
    // A grant that has already ended is still taken: it may be the end of an earlier grant.
    let g = grant(&me, Some(NOW - 1));
    let rec = signed(&hub, StreamId::HUB_REQUESTS, Body::FeatureGrant(g.clone()));
    assert_eq!(
        verify_hub_request(&rec, &hub.identity_key(), me.device_id(), NOW),
        Ok(HubRequest::Grant(g))
    );
}

#[test]
fn forged_requests_are_refused_by_their_first_fault() {
    let (hub, me, other, provider) = (identity(1), identity(2), identity(3), identity(4));
    let key = hub.identity_key();
    let check = |rec: &Record, now: i64, expect: HubRequestError| {
        assert_eq!(verify_hub_request(rec, &key, me.device_id(), now), Err(expect));
    };
    // Wrong signer: a provider (or anyone) signing a request in the hub's name.
    let rec =
        signed(&provider, StreamId::HUB_REQUESTS, Body::ApprovalRequest(request(&me, NOW + 1)));
    check(
        &rec,
        NOW,
        HubRequestError::WrongSigner { author: provider.device_id(), hub: hub.device_id() },
    );
    // Wrong device: the hub's genuine request for another device.
    let rec = signed(&hub, StreamId::HUB_REQUESTS, Body::ApprovalRequest(request(&other, NOW + 1)));
    check(&rec, NOW, HubRequestError::WrongDevice { to: other.device_id(), me: me.device_id() });
    let rec = signed(&hub, StreamId::HUB_REQUESTS, Body::FeatureGrant(grant(&other, None)));
    check(&rec, NOW, HubRequestError::WrongDevice { to: other.device_id(), me: me.device_id() });
    // Expired: at the deadline it is void.
    let rec = signed(&hub, StreamId::HUB_REQUESTS, Body::ApprovalRequest(request(&me, NOW)));
    check(&rec, NOW, HubRequestError::Expired { expires_at_ms: NOW, now_ms: NOW });
    assert!(verify_hub_request(&rec, &key, me.device_id(), NOW - 1).is_ok());
    // Wrong stream, wrong kind.
    let rec = signed(&hub, StreamId::SHARED, Body::ApprovalRequest(request(&me, NOW + 1)));
    check(&rec, NOW, HubRequestError::WrongStream(StreamId::SHARED.0));
    let hb = tradecast_protocol::Heartbeat {
        device: me.device_id(),
        at_ms: NOW,
        ea_connected: true,
        terminal_time_ms: None,
    };
    let rec = signed(&hub, StreamId::HUB_REQUESTS, Body::Heartbeat(hb));
    check(&rec, NOW, HubRequestError::WrongKind(Kind::Heartbeat));
    // A bad signature: the hub's header with another key's signature spliced in.
    let genuine =
        signed(&hub, StreamId::HUB_REQUESTS, Body::ApprovalRequest(request(&me, NOW + 1)));
    let mut bytes = genuine.encode();
    let sig_at = 2 + 1 + genuine.header_bytes().len();
    bytes[sig_at] ^= 1;
    let tampered = Record::decode(&bytes).expect("structure intact");
    assert!(matches!(
        verify_hub_request(&tampered, &key, me.device_id(), NOW),
        Err(HubRequestError::BadSignature(_))
    ));
}

#[test]
fn version_2_kinds_do_not_exist_under_version_1() {
    assert_eq!((MIN_VERSION, VERSION), (1, 2));
    let hub = identity(1);
    let fields = HeaderFields {
        stream: StreamId::HUB_REQUESTS,
        seq: 1,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: NOW,
    };
    let body = Body::ApprovalRequest(request(&hub, NOW));
    assert!(matches!(
        Record::sign_versioned(&hub, 1, fields, &body),
        Err(EncodeError::NotInVersion { version: 1, .. })
    ));
    for kind in Kind::ALL {
        let header = Header {
            version: 1,
            kind,
            author: hub.device_id(),
            stream: StreamId::HUB_REQUESTS,
            seq: 1,
            prev_hash: ChainHash::GENESIS,
            body_hash: ChainHash::GENESIS,
            sealed: false,
            created_at_ms: NOW,
        };
        let decoded = Header::decode(&header.encode());
        if kind.since_version() == 2 {
            assert_eq!(
                decoded,
                Err(DecodeError::KindNotInVersion { kind: kind as u8, version: 1 }),
                "{kind:?}"
            );
            assert!(matches!(
                Body::decode_versioned(1, kind, &[]),
                Err(DecodeError::KindNotInVersion { .. })
            ));
        } else {
            assert_eq!(decoded, Ok(header), "{kind:?}");
        }
    }
    // Versions outside 1..=2 are unknown.
    let mut header =
        Header::decode(signed(&hub, StreamId::SIGNALS, body).header_bytes()).expect("v2 header");
    header.version = 3;
    assert_eq!(Header::decode(&header.encode()), Err(DecodeError::UnknownVersion(3)));
}

#[test]
fn the_stream_table_puts_each_kind_where_its_signer_writes() {
    use tradecast_protocol::Signer;
    for kind in Kind::ALL {
        assert!(!kind.streams().is_empty(), "{kind:?} has a stream");
        assert!(kind.streams().iter().all(|s| kind.allowed_on(*s)));
        assert!(!kind.allowed_on(StreamId(99)), "no kind on an unknown stream");
    }
    let check = |kind: Kind, stream: StreamId, allowed: bool| {
        assert_eq!(kind.allowed_on(stream), allowed, "{kind:?} on {}", stream.0);
    };
    check(Kind::ApprovalRequest, StreamId::HUB_REQUESTS, true);
    check(Kind::ApprovalRequest, StreamId::SHARED, false);
    check(Kind::FeatureGrant, StreamId::HUB_REQUESTS, true);
    check(Kind::RequestAnswer, StreamId::SHARED, true);
    check(Kind::Pending, StreamId::SHARED, true);
    check(Kind::Pending, StreamId::PUBLISHED, false);
    for k in [Kind::TradeClosed, Kind::EquityPoint, Kind::BalanceOperation, Kind::Summary] {
        check(k, StreamId::PUBLISHED, true);
        check(k, StreamId::PRIVATE, true);
        check(k, StreamId::SHARED, false);
    }
    check(Kind::PositionSnapshot, StreamId::PUBLISHED, false);
    check(Kind::Signal, StreamId::HUB_REQUESTS, false);
    assert_eq!(Kind::ApprovalRequest.signer(), Signer::Hub);
    assert_eq!(Kind::FeatureGrant.signer(), Signer::Hub);
    assert_eq!(Kind::Receipt.signer(), Signer::Hub);
    assert_eq!(Kind::RequestAnswer.signer(), Signer::Device);
    // Tags are appended, never renumbered.
    let tags: Vec<u8> = Kind::ALL.iter().map(|k| *k as u8).collect();
    assert_eq!(tags, (1..=18).collect::<Vec<u8>>());
}

#[test]
fn refusal_reasons_and_features_have_stable_text() {
    use tradecast_protocol::{AnswerOutcome, BalanceKind, RefusalReason};
    let texts: Vec<&str> = RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        texts,
        [
            "expired",
            "not_pending",
            "remote_off",
            "price_moved",
            "risk",
            "lots_out_of_range",
            "market_closed"
        ]
    );
    for r in RefusalReason::ALL {
        assert_eq!(RefusalReason::parse(r.as_str()), Some(r));
        // The serde name is the same text.
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
    assert_eq!(RefusalReason::parse("nope"), None);
    for f in Feature::ALL {
        assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
    }
    for k in BalanceKind::ALL {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
    for c in Channel::ALL {
        assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
    }
    assert_eq!(
        serde_json::to_value(AnswerOutcome::Refused(RefusalReason::Risk)).unwrap(),
        serde_json::json!({ "refused": "risk" })
    );
    assert_eq!(serde_json::to_value(AnswerOutcome::Applied).unwrap(), "applied");
}

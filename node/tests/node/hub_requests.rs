//! Hub-signed records in the node's feed: a genuine approval request or feature grant for this
//! device is stored (de-duplicated by id, a grant superseded only by a newer issue); a forged
//! one — signed by another key, addressed to another device, expired, or arriving before a hub
//! is pinned — is committed, acknowledged and refused with its reason, never stored as a
//! request. And the node's own new kinds: `Pending` and `RequestAnswer` on the shared stream,
//! account history on the published stream only when the trader opted in.

use tradecast_node::runtime::{FeedOutcome, FeedRefusal, Node, Settings};
use tradecast_node::store::{PublishConsent, Store};
use tradecast_protocol::{
    AnswerOutcome, ApprovalRequest, Body, ChainHash, Channel, EquityPoint, Feature, FeatureGrant,
    GrantId, HeaderFields, HubRequestError, Identity, Record, RefusalReason, RemoteDecision,
    RequestAnswer, RequestId, SignalId, StreamId,
};

fn identity(seed: u8) -> Identity {
    Identity::from_secret_bytes(&[seed; 32], &[seed.wrapping_add(1); 32])
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

/// A node with an identity; with `hub` pinned when given.
fn node(hub: Option<&Identity>) -> (tempfile::TempDir, std::sync::Arc<Node>) {
    let dir = tempfile::tempdir().expect("tempdir");
    tradecast_node::serve::init(dir.path()).expect("init");
    let store = Store::open(&dir.path().join(tradecast_node::store::FILE_NAME)).expect("store");
    if let Some(hub) = hub {
        store
            .write(|tx| {
                tx.set_setting("hub.addr", "127.0.0.1:7443")?;
                tx.set_setting("hub.identity_key", &hex::encode(hub.identity_key().to_bytes()))
            })
            .expect("pin");
    }
    let node = Node::new(store, Settings::default(), 0).expect("node");
    (dir, node)
}

fn request(to: tradecast_protocol::DeviceId, id: u8, expires_at_ms: i64) -> Body {
    Body::ApprovalRequest(ApprovalRequest {
        request_id: RequestId([id; 16]),
        signal_id: SignalId([7; 16]),
        device: to,
        decision: RemoteDecision::Approved,
        lots: Some("0.05".parse().expect("lots")),
        expires_at_ms,
        channel: Channel::Telegram,
        telegram_user_id: Some(1234),
        requested_at_ms: expires_at_ms - 60_000,
    })
}

fn grant(to: tradecast_protocol::DeviceId, until: Option<i64>, issued_at_ms: i64) -> Body {
    Body::FeatureGrant(FeatureGrant {
        grant_id: GrantId([9; 16]),
        device: to,
        plan_id: "pro".into(),
        features: vec![Feature::Signals, Feature::AutoCopy],
        valid_from_ms: 0,
        valid_until_ms: until,
        issued_at_ms,
    })
}

fn signed(by: &Identity, seq: u64, body: &Body) -> Record {
    let fields = HeaderFields {
        stream: StreamId::HUB_REQUESTS,
        seq,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: 1,
    };
    Record::sign(by, fields, body)
}

#[test]
fn a_genuine_request_is_stored_once_and_answered_once() {
    let hub = identity(40);
    let (_dir, node) = node(Some(&hub));
    let me = node.device_id();
    let later = now_ms() + 3_600_000;
    // Stored and answered in the same write: no signal [7; 16] waits here, so `not_pending`
    // (the decisions themselves: tests/node/remote_approvals.rs).
    let out = node.receive_feed(1, &signed(&hub, 1, &request(me, 1, later))).expect("feed");
    let refused = AnswerOutcome::Refused(RefusalReason::NotPending);
    assert_eq!(out, FeedOutcome::Request { request_id: RequestId([1; 16]), answer: refused });
    // The same request again (the hub's chain sent it twice): held once, answered once.
    let out = node.receive_feed(2, &signed(&hub, 2, &request(me, 1, later))).expect("feed");
    assert!(matches!(out, FeedOutcome::Ignored(_)), "{out:?}");
    let view = node.store().read().expect("read");
    let held = view.hub_requests().expect("all");
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].feed_seq, held[0].answered), (1, Some(refused)));
    let answers: Vec<Record> = view
        .outbox(StreamId::SHARED)
        .expect("outbox")
        .into_iter()
        .filter(|r| matches!(r.body(), Ok(Body::RequestAnswer(_))))
        .collect();
    drop(view);
    assert_eq!(answers.len(), 1);
    let Ok(Body::RequestAnswer(sent)) = answers[0].body() else { panic!("an answer") };
    assert_eq!(
        (sent.request_id, sent.signal_id, sent.device),
        (RequestId([1; 16]), SignalId([7; 16]), me)
    );
    assert_eq!(sent.outcome, refused);
    assert!(node.pending_requests().expect("pending").is_empty());
    // A tool's answer on top is refused: the request is answered already, or unknown.
    let answer = RequestAnswer {
        request_id: RequestId([1; 16]),
        signal_id: SignalId([7; 16]),
        device: me,
        outcome: AnswerOutcome::Refused(RefusalReason::RemoteOff),
        at_ms: now_ms(),
    };
    assert!(node.record_request_answer(&answer).is_err(), "answered once");
    let unknown = RequestAnswer { request_id: RequestId([2; 16]), ..answer };
    assert!(node.record_request_answer(&unknown).is_err(), "no such request");
    assert!(node.hub_refusals().expect("refusals").is_empty());
}

#[test]
fn forged_hub_requests_are_acknowledged_refused_and_recorded() {
    let (hub, provider, other) = (identity(40), identity(41), identity(42));
    let (_dir, node) = node(Some(&hub));
    let me = node.device_id();
    let later = now_ms() + 3_600_000;
    let check = |seq: u64, record: Record, expect: HubRequestError, code: &str| {
        let out = node.receive_feed(seq, &record).expect("a refusal is no error");
        assert_eq!(out, FeedOutcome::Refused(FeedRefusal::Hub(expect)));
        let view = node.store().read().expect("read");
        assert_eq!(view.inbox_watermark().expect("watermark"), seq, "committed, so acked");
        let refusals = view.hub_refusals().expect("refusals");
        let last = refusals.last().expect("recorded");
        assert_eq!((last.feed_seq, last.code.as_str()), (seq, code));
        assert_eq!(last.author, record.header().author.to_text());
    };
    // Wrong signer: a provider (whose key the session knows) signing a request.
    check(
        1,
        signed(&provider, 1, &request(me, 1, later)),
        HubRequestError::WrongSigner { author: provider.device_id(), hub: hub.device_id() },
        "wrong_signer",
    );
    // Wrong device: the hub's genuine request for another device.
    check(
        2,
        signed(&hub, 2, &request(other.device_id(), 2, later)),
        HubRequestError::WrongDevice { to: other.device_id(), me },
        "wrong_device",
    );
    check(
        3,
        signed(&hub, 3, &grant(other.device_id(), None, 1)),
        HubRequestError::WrongDevice { to: other.device_id(), me },
        "wrong_device",
    );
    // Expired: a request whose deadline has passed.
    let past = now_ms() - 1_000;
    let out = node.receive_feed(4, &signed(&hub, 4, &request(me, 4, past))).expect("feed");
    assert!(
        matches!(out, FeedOutcome::Refused(FeedRefusal::Hub(HubRequestError::Expired { .. }))),
        "{out:?}"
    );
    assert_eq!(node.hub_refusals().expect("refusals").last().expect("row").code, "expired");
    // A request on the hub's stream must be a hub kind.
    let hb = Body::Heartbeat(tradecast_protocol::Heartbeat {
        device: me,
        at_ms: 1,
        ea_connected: true,
        terminal_time_ms: None,
    });
    check(
        5,
        signed(&hub, 5, &hb),
        HubRequestError::WrongKind(tradecast_protocol::Kind::Heartbeat),
        "wrong_kind",
    );
    // None of them became a request or a grant.
    assert!(node.pending_requests().expect("pending").is_empty());
    assert!(node.store().read().expect("read").hub_requests().expect("all").is_empty());
    assert!(node.feature_grants_at(now_ms()).expect("grants").is_empty());
    assert_eq!(node.hub_refusals().expect("refusals").len(), 5);
}

#[test]
fn a_node_without_a_pinned_hub_refuses_every_hub_request() {
    let hub = identity(40);
    let (_dir, node) = node(None);
    let later = now_ms() + 3_600_000;
    let out = node.receive_feed(1, &signed(&hub, 1, &request(node.device_id(), 1, later)));
    assert_eq!(out.expect("feed"), FeedOutcome::Refused(FeedRefusal::NoHubPinned));
    assert_eq!(node.hub_refusals().expect("refusals")[0].code, "no_hub_pinned");
}

#[test]
fn grants_are_kept_per_id_and_ended_only_by_a_newer_issue() {
    let hub = identity(40);
    let (_dir, node) = node(Some(&hub));
    let me = node.device_id();
    let now = now_ms();
    let out = node.receive_feed(1, &signed(&hub, 1, &grant(me, None, 100))).expect("feed");
    assert_eq!(out, FeedOutcome::Grant { grant_id: GrantId([9; 16]) });
    let in_force = node.feature_grants_at(now).expect("grants");
    assert_eq!(in_force.len(), 1);
    assert_eq!(in_force[0].features, vec![Feature::Signals, Feature::AutoCopy]);
    // The hub ends it (a refund): the same id, an end in the past, issued later. Taken, though
    // its end has passed.
    let out = node.receive_feed(2, &signed(&hub, 2, &grant(me, Some(now - 1), 200))).expect("feed");
    assert_eq!(out, FeedOutcome::Grant { grant_id: GrantId([9; 16]) });
    assert!(node.feature_grants_at(now).expect("grants").is_empty());
    assert_eq!(node.feature_grants_at(now - 2).expect("grants").len(), 1, "as of before the end");
    // A stale re-send of the first issue does not revive it.
    let out = node.receive_feed(3, &signed(&hub, 3, &grant(me, None, 100))).expect("feed");
    assert!(matches!(out, FeedOutcome::Ignored(_)), "{out:?}");
    assert!(node.feature_grants_at(now).expect("grants").is_empty());
}

#[test]
fn history_is_published_only_when_the_trader_opted_in() {
    let (_dir, node) = node(None);
    let me = node.device_id();
    let point = |at_ms| {
        Body::EquityPoint(EquityPoint {
            device: me,
            at_ms,
            balance: "100.00".parse().expect("dec"),
            equity: "101.50".parse().expect("dec"),
        })
    };
    assert_eq!(
        node.publish_consent().expect("setting"),
        PublishConsent::default(),
        "off by default"
    );
    let private = node.record_history(&point(1)).expect("history");
    assert_eq!(private.header().stream, StreamId::PRIVATE);
    assert!(private.header().sealed, "sealed to the trader's devices");
    // Consent is per data kind: closed trades published do not publish the equity curve.
    node.set_publish_consent(PublishConsent { closed_trades: true, ..Default::default() })
        .expect("publish");
    assert_eq!(node.record_history(&point(2)).expect("history").header().stream, StreamId::PRIVATE);
    node.set_publish_consent(PublishConsent { equity: true, ..Default::default() })
        .expect("publish");
    let public = node.record_history(&point(3)).expect("history");
    assert_eq!(public.header().stream, StreamId::PUBLISHED);
    assert!(!public.header().sealed);
    assert_eq!(public.body(), Ok(point(3)), "anyone can read it");
    node.set_publish_consent(PublishConsent::default()).expect("unpublish");
    assert_eq!(node.record_history(&point(4)).expect("history").header().stream, StreamId::PRIVATE);
    // A store from before per-kind consent said "true" for everything: it still does.
    node.store()
        .write(|tx| tx.set_setting(tradecast_node::store::PUBLISH_SETTING, "true"))
        .expect("old setting");
    assert_eq!(node.publish_consent().expect("consent"), PublishConsent::ALL);
    assert_eq!(
        node.record_history(&point(5)).expect("history").header().stream,
        StreamId::PUBLISHED
    );
    // A setting that does not read publishes nothing (and the status says so, not an error).
    node.store()
        .write(|tx| tx.set_setting(tradecast_node::store::PUBLISH_SETTING, "{\"equity\": 1}"))
        .expect("damaged setting");
    assert!(node.publish_consent().is_err(), "a damaged setting is not read as consent");
    assert_eq!(node.record_history(&point(6)).expect("history").header().stream, StreamId::PRIVATE);
    // Only history goes there.
    let hb = Body::Heartbeat(tradecast_protocol::Heartbeat {
        device: me,
        at_ms: 1,
        ea_connected: true,
        terminal_time_ms: None,
    });
    assert!(node.record_history(&hb).is_err());
    // A pending signal goes to the shared stream, and only in this node's name.
    let pending = tradecast_protocol::Pending {
        signal_id: SignalId([1; 16]),
        device: me,
        expires_at_ms: 10,
        min_lots: "0.01".parse().expect("dec"),
        max_lots: "0.50".parse().expect("dec"),
        risk_preview: None,
        blocking: vec!["market_closed".into()],
        at_ms: 1,
    };
    assert_eq!(node.record_pending(&pending).expect("pending").header().stream, StreamId::SHARED);
    let foreign = tradecast_protocol::Pending { device: identity(3).device_id(), ..pending };
    assert!(node.record_pending(&foreign).is_err());
}

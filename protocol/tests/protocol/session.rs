//! The sync session driven by hand: frames, backoff, and the decisions of each side, one
//! situation per test (the simulator covers the combinations).

use rand::SeedableRng;
use rand::rngs::StdRng;
use tradecast_protocol::session::wire::{self, FrameError, Message, RefusedReason};
use tradecast_protocol::session::{
    Alarm, AppendError, Backoff, CloseReason, HubAction, HubEvent, HubSession, HubSetup,
    LocalStream, NodeAction, NodeEvent, NodeSession, NodeSetup, SessionConfig, SignatureCheck,
    StoredStream, Violation,
};
use tradecast_protocol::{ChainHash, Record, StreamId};

use crate::support::{chain, identity};

#[test]
fn frames_round_trip_and_every_defect_is_typed() {
    let messages = [
        Message::Ping { nonce: 7 },
        Message::Ack { stream: StreamId::SIGNALS, seq: 9 },
        Message::Records { records: vec![vec![1, 2, 3]] },
        Message::Refused { stream: StreamId(77), seq: 1, reason: RefusedReason::Quarantined },
    ];
    for message in &messages {
        assert_eq!(wire::decode(&wire::encode(message)).as_ref(), Ok(message));
    }
    let frame = wire::encode(&Message::FeedAck { seq: 300 });
    let check = |bytes: &[u8], expect: FrameError| assert_eq!(wire::decode(bytes), Err(expect));
    check(&[], FrameError::Truncated);
    check(&frame[..5], FrameError::Truncated);
    let mut v = frame.clone();
    v[0] = 9;
    check(&v, FrameError::UnknownVersion(9));
    for i in 1..frame.len() {
        let mut v = frame.clone();
        v[i] ^= 0x40;
        check(&v, FrameError::BadCheck);
    }
    check(&vec![1; wire::MAX_FRAME_LEN + 1], FrameError::Oversized(wire::MAX_FRAME_LEN + 1));
    let big = Message::Records { records: vec![vec![]; wire::MAX_BATCH_RECORDS + 1] };
    check(&wire::encode(&big), FrameError::BatchTooLarge(wire::MAX_BATCH_RECORDS + 1));
    // Trailing bytes inside a valid check.
    let mut v = frame[..frame.len() - 8].to_vec();
    v.push(0);
    v.extend_from_slice(&[0; 8]);
    wire::reseal(&mut v);
    check(&v, FrameError::TrailingBytes(1));
}

#[test]
fn backoff_grows_exponentially_with_jitter_within_bounds() {
    let mut backoff = Backoff::new(100, 10_000);
    let mut rng = StdRng::seed_from_u64(1);
    let mut ceilings = Vec::new();
    for n in 0..12u32 {
        let ceiling = (100u64 << n).min(10_000);
        let delay = backoff.next_delay_ms(&mut rng);
        assert!((50..=ceiling).contains(&delay), "attempt {n}: {delay} not in 50..={ceiling}");
        ceilings.push(ceiling);
    }
    backoff.reset();
    assert!(backoff.next_delay_ms(&mut rng) <= 100);
    // Jitter comes from the handed RNG: same seed, same delays; different seeds differ.
    let delays = |seed| {
        let mut b = Backoff::new(100, 10_000);
        let mut rng = StdRng::seed_from_u64(seed);
        (0..8).map(|_| b.next_delay_ms(&mut rng)).collect::<Vec<_>>()
    };
    assert_eq!(delays(5), delays(5));
    assert_ne!(delays(5), delays(6));
}

struct Pair {
    node: NodeSession<SignatureCheck>,
    hub: HubSession<SignatureCheck>,
    node_actions: Vec<NodeAction>,
    hub_actions: Vec<HubAction>,
}

impl Pair {
    /// Moves frames both ways (no loss) and commits everything at once, until quiet.
    fn settle(&mut self, now: i64) {
        for _ in 0..100 {
            let mut moved = false;
            while let Some(action) = self.node.poll_action() {
                moved = true;
                if let NodeAction::Send(bytes) = &action {
                    self.hub.handle(now, HubEvent::BytesReceived(bytes));
                }
                if let NodeAction::CommitFeed(item) = &action {
                    let _ = self.node.handle(now, NodeEvent::FeedCommitted { seq: item.seq });
                }
                self.node_actions.push(action);
            }
            while let Some(action) = self.hub.poll_action() {
                moved = true;
                if let HubAction::Send(bytes) = &action {
                    let _ = self.node.handle(now, NodeEvent::BytesReceived(bytes));
                }
                if let HubAction::Commit { record, .. } = &action {
                    let h = record.header();
                    self.hub.handle(now, HubEvent::Committed { stream: h.stream, seq: h.seq });
                }
                self.hub_actions.push(action);
            }
            if !moved {
                return;
            }
        }
        panic!("the pair did not settle");
    }

    fn committed(&self) -> Vec<u64> {
        self.hub_actions
            .iter()
            .filter_map(|a| match a {
                HubAction::Commit { record, .. } => Some(record.header().seq),
                _ => None,
            })
            .collect()
    }
}

fn pair(local: &[Record], hub_has: &[Record], restored: bool) -> Pair {
    let node_id = identity(1);
    let hub_id = identity(2);
    let tip = local.last().map_or((0, ChainHash::GENESIS), |r| (r.header().seq, r.header_hash()));
    let node = NodeSession::new(
        SessionConfig::default(),
        NodeSetup {
            identity: node_id.identity_key(),
            hub: hub_id.identity_key(),
            streams: vec![LocalStream {
                stream: StreamId::SIGNALS,
                tip_seq: tip.0,
                tip_hash: tip.1,
                unacked: local.to_vec(),
            }],
            feed_committed: 0,
            feed_recent: vec![],
            authors: vec![],
            restored,
            feed_quarantined: false,
        },
        SignatureCheck,
    );
    let hub = HubSession::new(
        SessionConfig::default(),
        HubSetup {
            hub: hub_id.identity_key(),
            peer: node_id.identity_key(),
            streams: vec![StoredStream {
                stream: StreamId::SIGNALS,
                committed: hub_has.len() as u64,
                recent: hub_has.iter().map(|r| (r.header().seq, r.header_hash())).collect(),
                quarantined: false,
            }],
            feed_acked: 0,
            feed_tip: 0,
            feed_unacked: vec![],
        },
        SignatureCheck,
        0,
    );
    Pair { node, hub, node_actions: vec![], hub_actions: vec![] }
}

#[test]
fn the_node_resends_from_the_hubs_mark_and_each_record_is_committed_once() {
    let records = chain(&identity(1), 5);
    let mut p = pair(&records, &records[..2], false);
    p.node.handle(0, NodeEvent::Connected).unwrap();
    p.settle(0);
    assert_eq!(p.committed(), vec![3, 4, 5]);
    assert!(p.node_actions.contains(&NodeAction::Acked { stream: StreamId::SIGNALS, seq: 5 }));
    // Appending the next record sends it alone.
    let next = chain(&identity(1), 6).pop().unwrap();
    p.node.handle(1, NodeEvent::RecordAppended(next)).unwrap();
    p.settle(1);
    assert_eq!(p.committed(), vec![3, 4, 5, 6]);
}

#[test]
fn a_restored_node_appends_only_after_learning_its_tips() {
    let records = chain(&identity(1), 4);
    // Restored from a backup holding 2 records; the hub has 4.
    let mut p = pair(&records[..2], &records, true);
    assert!(!p.node.tips_known());
    let stale = records[2].clone();
    assert_eq!(p.node.handle(0, NodeEvent::RecordAppended(stale)), Err(AppendError::TipsUnknown));
    p.node.handle(0, NodeEvent::Connected).unwrap();
    p.settle(0);
    assert!(p.node.tips_known());
    assert!(p.node_actions.contains(&NodeAction::AdoptTip {
        stream: StreamId::SIGNALS,
        seq: 4,
        header_hash: records[3].header_hash(),
    }));
    assert_eq!(p.node.tip(StreamId::SIGNALS), (4, records[3].header_hash()));
    assert!(p.committed().is_empty(), "nothing is sent twice");
    // Appending at a reused seq is refused by the session.
    assert_eq!(
        p.node.handle(1, NodeEvent::RecordAppended(records[2].clone())),
        Err(AppendError::NotNext { expected: 5 })
    );
}

#[test]
fn equivocation_is_refused_alarmed_and_quarantined() {
    let author = identity(1);
    let records = chain(&author, 3);
    let mut p = pair(&records, &records, false);
    p.node.handle(0, NodeEvent::Connected).unwrap();
    p.settle(0);
    // The same seq 2, other content, validly signed.
    let fork = Record::sign(
        &author,
        tradecast_protocol::HeaderFields {
            stream: StreamId::SIGNALS,
            seq: 2,
            prev_hash: records[0].header_hash(),
            created_at_ms: 5,
        },
        &records[2].body().unwrap(),
    );
    let frame = wire::encode(&Message::Records { records: vec![fork.encode()] });
    p.hub.handle(1, HubEvent::BytesReceived(&frame));
    p.settle(1);
    assert!(
        p.hub_actions
            .iter()
            .any(|a| matches!(a, HubAction::Alarm(Alarm::Equivocation { seq: 2, .. })))
    );
    assert!(p.hub_actions.iter().any(|a| matches!(a, HubAction::Quarantine { .. })));
    assert!(p.node_actions.iter().any(|a| matches!(
        a,
        NodeAction::Alarm(Alarm::Refused { reason: RefusedReason::Equivocation, .. })
    )));
    assert!(p.committed().is_empty());
}

#[test]
fn a_duplicate_is_acked_and_dropped_and_a_gap_asks_for_a_resend() {
    let records = chain(&identity(1), 4);
    let mut p = pair(&records[..1], &records[..1], false);
    p.node.handle(0, NodeEvent::Connected).unwrap();
    p.settle(0);
    let before = p.hub_actions.len();
    // A duplicate of seq 1.
    let frame = wire::encode(&Message::Records { records: vec![records[0].encode()] });
    p.hub.handle(1, HubEvent::BytesReceived(&frame));
    let acks: Vec<HubAction> = std::iter::from_fn(|| p.hub.poll_action()).collect();
    assert!(acks.iter().all(|a| !matches!(a, HubAction::Commit { .. })));
    assert!(acks.contains(&HubAction::Send(wire::encode(&Message::Ack {
        stream: StreamId::SIGNALS,
        seq: 1
    }))));
    // Seq 3 without seq 2: a gap.
    let frame = wire::encode(&Message::Records { records: vec![records[2].encode()] });
    p.hub.handle(2, HubEvent::BytesReceived(&frame));
    let out: Vec<HubAction> = std::iter::from_fn(|| p.hub.poll_action()).collect();
    assert!(out.contains(&HubAction::Send(wire::encode(&Message::Resend {
        stream: StreamId::SIGNALS,
        from_seq: 2
    }))));
    assert_eq!(p.hub_actions.len(), before);
}

#[test]
fn a_record_of_another_author_or_a_wrong_hub_closes_the_session() {
    let records = chain(&identity(1), 1);
    let mut p = pair(&records, &[], false);
    p.node.handle(0, NodeEvent::Connected).unwrap();
    p.settle(0);
    let stranger = chain(&identity(3), 1);
    let frame = wire::encode(&Message::Records { records: vec![stranger[0].encode()] });
    p.hub.handle(1, HubEvent::BytesReceived(&frame));
    let out: Vec<HubAction> = std::iter::from_fn(|| p.hub.poll_action()).collect();
    assert!(out.contains(&HubAction::Close(CloseReason::Violation(Violation::WrongAuthor))));
    assert!(p.hub.is_closed());

    // A Welcome from another hub key than the pinned one.
    let mut p = pair(&records, &[], false);
    p.node.handle(0, NodeEvent::Connected).unwrap();
    let imposter = identity(4);
    let frame = wire::encode(&Message::Welcome {
        hub: imposter.device_id(),
        identity: imposter.identity_key(),
        marks: vec![],
    });
    p.node.handle(1, NodeEvent::BytesReceived(&frame)).unwrap();
    let out: Vec<NodeAction> = std::iter::from_fn(|| p.node.poll_action()).collect();
    assert!(out.contains(&NodeAction::Close(CloseReason::Violation(Violation::WrongPeer))));
}

#[test]
fn a_silent_peer_is_declared_dead_after_heartbeats() {
    let records = chain(&identity(1), 1);
    let mut p = pair(&records, &[], false);
    p.node.handle(0, NodeEvent::Connected).unwrap();
    p.settle(0);
    let cfg = SessionConfig::default();
    // Nothing arrives any more: the node pings, then gives up.
    p.node.handle(cfg.heartbeat_ms, NodeEvent::TimerFired).unwrap();
    let out: Vec<NodeAction> = std::iter::from_fn(|| p.node.poll_action()).collect();
    assert!(out.iter().any(|a| matches!(a, NodeAction::Send(f)
        if matches!(wire::decode(f), Ok(Message::Ping { .. })))));
    p.node.handle(cfg.dead_after_ms, NodeEvent::TimerFired).unwrap();
    let out: Vec<NodeAction> = std::iter::from_fn(|| p.node.poll_action()).collect();
    assert!(out.contains(&NodeAction::Close(CloseReason::DeadPeer)));
}

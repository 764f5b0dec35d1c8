//! The sync session driven by hand: frames, backoff, and the decisions of each side, one
//! situation per test (the simulator covers the combinations).

use rand::SeedableRng;
use rand::rngs::StdRng;
use tradecast_protocol::session::wire::{self, FrameError, Message, RefusedReason};
use tradecast_protocol::session::wire::{FeedItemWire, SourceCursor};
use tradecast_protocol::session::{
    Alarm, AppendError, Backoff, CloseReason, HubAction, HubEvent, HubSession, HubSetup,
    LocalSource, LocalStream, LogEntry, NodeAction, NodeEvent, NodeSession, NodeSetup,
    SessionConfig, SignatureCheck, Source, SourceStart, StoredStream, Violation,
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
    let frame = wire::encode(&Message::FeedAck { source: Source::Inbox, seq: 300 });
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
                if let NodeAction::CommitFeed { source, item } = &action {
                    let ev = NodeEvent::FeedCommitted { source: *source, seq: item.seq };
                    let _ = self.node.handle(now, ev);
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
            sources: vec![],
            authors: vec![],
            restored,
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
            sources: vec![],
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

// ---- downstream, version 2: sources, cursors, prev_seq --------------------------------------

/// A node (identity 1) following provider 3's relay log, and its hub (identity 2), both open.
struct Downstream {
    node: NodeSession<SignatureCheck>,
    hub: HubSession<SignatureCheck>,
    provider: Source,
    log: Vec<Record>,
}

impl Downstream {
    fn new(cfg: SessionConfig, node_cursor: u64, hub_cursor: u64, log_len: usize) -> Downstream {
        let provider_id = identity(3);
        let provider = Source::Relay(provider_id.device_id());
        let log = chain(&provider_id, log_len);
        let recent =
            log[..node_cursor as usize].iter().map(|r| (r.header().seq, r.header_hash())).collect();
        let node = NodeSession::new(
            cfg,
            NodeSetup {
                identity: identity(1).identity_key(),
                hub: identity(2).identity_key(),
                streams: vec![],
                sources: vec![LocalSource {
                    source: provider,
                    committed: node_cursor,
                    recent,
                    quarantined: false,
                }],
                authors: vec![provider_id.identity_key()],
                restored: false,
            },
            SignatureCheck,
        );
        let hub = HubSession::new(
            cfg,
            HubSetup {
                hub: identity(2).identity_key(),
                peer: identity(1).identity_key(),
                streams: vec![],
                sources: vec![SourceStart { source: provider, acked: hub_cursor, tip: 0 }],
            },
            SignatureCheck,
            0,
        );
        Downstream { node, hub, provider, log }
    }

    /// Runs both sides until quiet. `mine(seq)` says which log entries are for this device;
    /// returns the node's commits and the hub's persisted cursors, in order.
    fn settle(&mut self, mine: &dyn Fn(u64) -> bool) -> (Vec<u64>, Vec<u64>, Vec<HubAction>) {
        let (mut commits, mut cursors, mut hub_actions) = (vec![], vec![], vec![]);
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(action) = self.node.poll_action() {
                moved = true;
                match action {
                    NodeAction::Send(bytes) => self.hub.handle(0, HubEvent::BytesReceived(&bytes)),
                    NodeAction::CommitFeed { source, item } => {
                        commits.push(item.seq);
                        let ev = NodeEvent::FeedCommitted { source, seq: item.seq };
                        self.node.handle(0, ev).unwrap();
                    }
                    NodeAction::Close(reason) => panic!("node closed: {reason}"),
                    _ => {}
                }
            }
            while let Some(action) = self.hub.poll_action() {
                moved = true;
                match &action {
                    HubAction::Send(bytes) => {
                        self.node.handle(0, NodeEvent::BytesReceived(bytes)).unwrap();
                    }
                    HubAction::CursorAcked { seq, .. } => cursors.push(*seq),
                    HubAction::LoadSource { source, after, max } => {
                        // Pages of at most 3 log entries looked at.
                        let tip = self.log.len() as u64;
                        let (mut entries, mut to) = (vec![], *after);
                        while to < tip && to < after + 3 && entries.len() < *max {
                            to += 1;
                            if mine(to) {
                                entries.push(LogEntry::new(to, &self.log[to as usize - 1]));
                            }
                        }
                        let ev = HubEvent::SourceLoaded {
                            source: *source,
                            after: *after,
                            entries,
                            scanned_to: to,
                        };
                        self.hub.handle(0, ev);
                    }
                    HubAction::Close(reason) => panic!("hub closed: {reason}"),
                    _ => {}
                }
                hub_actions.push(action);
            }
            if !moved {
                return (commits, cursors, hub_actions);
            }
        }
        panic!("did not settle");
    }

    fn grow(&mut self, seq: u64, mine: bool) {
        let entry = mine.then(|| LogEntry::new(seq, &self.log[seq as usize - 1]));
        self.hub.handle(0, HubEvent::SourceGrew { source: self.provider, seq, entry });
    }
}

#[test]
fn a_shared_log_reaches_the_node_with_holes_for_others_and_cursors_per_source() {
    let mine = |seq: u64| !seq.is_multiple_of(3); // every third entry is for others
    let mut d = Downstream::new(SessionConfig::default(), 0, 0, 10);
    d.node.handle(0, NodeEvent::Connected).unwrap();
    d.settle(&mine);
    // Live entries, each handed to the session once, encoded once by the driver.
    for seq in 1..=10 {
        d.grow(seq, mine(seq));
    }
    let (commits, cursors, _) = d.settle(&mine);
    assert_eq!(commits, vec![1, 2, 4, 5, 7, 8, 10]);
    assert_eq!(cursors.last(), Some(&10));
}

#[test]
fn a_tip_the_driver_did_not_hand_over_is_read_from_the_store() {
    // Another instance appended 1..=6 (or the live messages were dropped): the driver only
    // learns the tip; the session reads pages and the node gets every entry for it once.
    let mine = |seq: u64| seq != 2;
    let mut d = Downstream::new(SessionConfig::default(), 0, 0, 6);
    d.node.handle(0, NodeEvent::Connected).unwrap();
    d.settle(&mine);
    d.hub.handle(0, HubEvent::SourceTip { source: d.provider, tip: 6 });
    let (commits, cursors, _) = d.settle(&mine);
    assert_eq!(commits, vec![1, 3, 4, 5, 6]);
    assert_eq!(cursors.last(), Some(&6));
    // An older tip, or one of a source the session does not follow, changes nothing.
    d.hub.handle(0, HubEvent::SourceTip { source: d.provider, tip: 3 });
    d.hub.handle(0, HubEvent::SourceTip { source: Source::Relay(identity(9).device_id()), tip: 9 });
    let (commits, _, actions) = d.settle(&mine);
    assert!(commits.is_empty());
    assert!(!actions.iter().any(|a| matches!(a, HubAction::LoadSource { .. })), "{actions:?}");
}

#[test]
fn catch_up_reads_pages_within_the_window_and_a_lagging_hub_cursor_takes_the_nodes() {
    let mine = |seq: u64| seq != 4;
    let cfg = SessionConfig { window: 2, ..SessionConfig::default() };
    // The node holds 1..=3; the hub's cursor write of 3 was lost in a crash (it says 1).
    let mut d = Downstream::new(cfg, 3, 1, 12);
    d.hub.handle(0, HubEvent::SourceGrew { source: d.provider, seq: 12, entry: None });
    d.node.handle(0, NodeEvent::Connected).unwrap();
    let (commits, cursors, actions) = d.settle(&mine);
    assert_eq!(commits, vec![5, 6, 7, 8, 9, 10, 11, 12], "nothing before the node's cursor again");
    assert_eq!(cursors.first(), Some(&3), "the node's cursor is persisted at once");
    assert_eq!(cursors.last(), Some(&12));
    // Never more than the window asked for or held.
    for a in &actions {
        if let HubAction::LoadSource { max, .. } = a {
            assert!(*max <= 2, "{a:?}");
        }
    }
}

#[test]
fn the_node_asks_again_after_a_gap_and_quarantines_a_renumbered_source() {
    let provider = identity(3);
    let source = Source::Relay(provider.device_id());
    let log = chain(&provider, 6);
    let mut d = Downstream::new(SessionConfig::default(), 2, 2, 6);
    d.node.handle(0, NodeEvent::Connected).unwrap();
    d.settle(&|_| true);
    let feed = |seq: u64, prev_seq: u64| {
        wire::encode(&Message::Feed {
            source,
            items: vec![FeedItemWire { seq, prev_seq, record: log[seq as usize - 1].encode() }],
        })
    };
    // Item 5 says the device was last sent 4, which it never received: loss, ask again.
    d.node.handle(10, NodeEvent::BytesReceived(&feed(5, 4))).unwrap();
    let resend = wire::encode(&Message::FeedResend { source, from_seq: 3 });
    let actions: Vec<NodeAction> = std::iter::from_fn(|| d.node.poll_action()).collect();
    assert!(actions.contains(&NodeAction::Send(resend)), "{actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, NodeAction::CommitFeed { .. })));
    // Item 4 says the previous was 1, but the node holds 2: the hub's view changed.
    d.node.handle(20, NodeEvent::BytesReceived(&feed(4, 1))).unwrap();
    let actions: Vec<NodeAction> = std::iter::from_fn(|| d.node.poll_action()).collect();
    assert!(actions.contains(&NodeAction::QuarantineSource(source)), "{actions:?}");
    assert!(actions.iter().any(|a| matches!(
        a,
        NodeAction::Alarm(Alarm::FeedInconsistent { seq: 4, prev_seq: 1, held: 2, .. })
    )));
    // Nothing more is taken from it.
    d.node.handle(30, NodeEvent::BytesReceived(&feed(3, 2))).unwrap();
    let actions: Vec<NodeAction> = std::iter::from_fn(|| d.node.poll_action()).collect();
    assert!(!actions.iter().any(|a| matches!(a, NodeAction::CommitFeed { .. })), "{actions:?}");
}

#[test]
fn a_relay_log_carries_only_its_providers_records_and_acks_only_what_was_sent() {
    let mut d = Downstream::new(SessionConfig::default(), 0, 0, 2);
    d.node.handle(0, NodeEvent::Connected).unwrap();
    d.settle(&|_| true);
    // Another author's record in provider 3's log closes the session.
    let other = chain(&identity(4), 1);
    let frame = wire::encode(&Message::Feed {
        source: d.provider,
        items: vec![FeedItemWire { seq: 1, prev_seq: 0, record: other[0].encode() }],
    });
    d.node.handle(1, NodeEvent::BytesReceived(&frame)).unwrap();
    let actions: Vec<NodeAction> = std::iter::from_fn(|| d.node.poll_action()).collect();
    assert!(
        actions.contains(&NodeAction::Close(CloseReason::Violation(Violation::WrongAuthor))),
        "{actions:?}"
    );
    // At the hub, an ack of an item never sent is a violation.
    let ack = wire::encode(&Message::FeedAck { source: d.provider, seq: 2 });
    d.hub.handle(2, HubEvent::BytesReceived(&ack));
    let actions: Vec<HubAction> = std::iter::from_fn(|| d.hub.poll_action()).collect();
    assert!(
        actions.contains(&HubAction::Close(CloseReason::Violation(Violation::OutOfRange))),
        "{actions:?}"
    );
}

#[test]
fn a_cursor_beyond_the_tip_is_an_alarm_and_a_version_one_frame_is_refused() {
    let mut d = Downstream::new(SessionConfig::default(), 0, 0, 2);
    let hello = wire::encode(&Message::Hello {
        device: identity(1).device_id(),
        identity: identity(1).identity_key(),
        cursors: vec![SourceCursor { source: d.provider, seq: 9, header_hash: ChainHash::GENESIS }],
    });
    d.hub.handle(1, HubEvent::BytesReceived(&hello));
    let actions: Vec<HubAction> = std::iter::from_fn(|| d.hub.poll_action()).collect();
    assert!(
        actions.iter().any(|a| matches!(
            a,
            HubAction::Alarm(Alarm::FeedMarkBeyondTip { mark: 9, tip: 0, .. })
        ))
    );
    assert!(d.hub.is_closed());
    // A frame of the version-1 session layer is refused by type.
    let mut v1 = wire::encode(&Message::Ping { nonce: 1 });
    v1[0] = 1;
    assert_eq!(wire::decode(&v1), Err(FrameError::UnknownVersion(1)));
    assert_eq!(Source::from_text(&d.provider.to_text()), Some(d.provider));
    assert_eq!(Source::from_text("inbox"), Some(Source::Inbox));
    assert_eq!(Source::from_text("relay:nonsense"), None);
}

#[test]
fn a_resend_older_than_the_remembered_hashes_is_checked_against_the_store() {
    let node_id = identity(1);
    let records = chain(&node_id, 5);
    let cfg = SessionConfig { recent_hashes: 2, ..SessionConfig::default() };
    let mut hub = HubSession::new(
        cfg,
        HubSetup {
            hub: identity(2).identity_key(),
            peer: node_id.identity_key(),
            streams: vec![StoredStream {
                stream: StreamId::SIGNALS,
                committed: 5,
                recent: records.iter().map(|r| (r.header().seq, r.header_hash())).collect(),
                quarantined: false,
            }],
            sources: vec![],
        },
        SignatureCheck,
        0,
    );
    let hello = wire::encode(&Message::Hello {
        device: node_id.device_id(),
        identity: node_id.identity_key(),
        cursors: vec![],
    });
    hub.handle(0, HubEvent::BytesReceived(&hello));
    std::iter::from_fn(|| hub.poll_action()).for_each(drop);
    // Seq 1, validly signed, carrying seq 2's body: another record than the one stored, and the
    // session remembers only the hashes of 4 and 5.
    let forged = Record::sign(
        &node_id,
        tradecast_protocol::HeaderFields {
            stream: StreamId::SIGNALS,
            seq: 1,
            prev_hash: ChainHash::GENESIS,
            created_at_ms: 42,
        },
        &records[1].body().unwrap(),
    );
    let frame = wire::encode(&Message::Records { records: vec![forged.encode()] });
    hub.handle(1, HubEvent::BytesReceived(&frame));
    let actions: Vec<HubAction> = std::iter::from_fn(|| hub.poll_action()).collect();
    assert!(actions.contains(&HubAction::CheckStored { record: forged.clone() }), "{actions:?}");
    // The store holds another hash at seq 1: equivocation, the stream quarantined.
    let known = records[0].header_hash();
    let offered = forged.header_hash();
    hub.handle(2, HubEvent::StoredDiffers { stream: StreamId::SIGNALS, seq: 1, known, offered });
    let actions: Vec<HubAction> = std::iter::from_fn(|| hub.poll_action()).collect();
    assert!(actions.iter().any(|a| matches!(a, HubAction::Quarantine { .. })), "{actions:?}");
    assert!(
        actions.iter().any(|a| matches!(a, HubAction::Alarm(Alarm::Equivocation { seq: 1, .. })))
    );
}

//! Remote approvals on the node (issue 17 part 5, the node's half): a hub signal that waits
//! for the trader is announced as a signed `Pending` only while remote approval is on; a genuine
//! hub `ApprovalRequest` is decided in the feed's write under the policy — approved within the
//! lot range → the `Approval` (decided_by `Remote`, the lots chosen), the `RequestAnswer`
//! `applied` and the order queued; otherwise a `refused` answer with its fixed reason — and a
//! forged one is never answered.

use std::sync::Arc;

use rust_decimal::Decimal;
use tradecast_node::clock::{MarketMs, Now, WallMs};
use tradecast_node::policy::approval::ApprovalMode;
use tradecast_node::policy::sizing::LotMode;
use tradecast_node::runtime::{FeedOutcome, FeedRefusal, Node, OrderAction, Settings};
use tradecast_node::store::Store;
use tradecast_protocol::ea::{self, MarginMode};
use tradecast_protocol::{
    AnswerOutcome, ApprovalRequest, Body, ChainHash, Channel, DecidedBy, Decision, DeviceKeys,
    EntryKind, HeaderFields, HubRequestError, Identity, Record, RefusalReason, RemoteDecision,
    RequestId, Side, Signal, SignalId, StreamId, Timeframe,
};

/// Wednesday 2026-03-04 12:00 UTC: the market clock (the wall clock is the real one, which the
/// feed reads for the hub requests' expiry).
const T0: i64 = 1_772_625_600_000;
const HOUR: i64 = 3_600_000;

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

fn identity(seed: u8) -> Identity {
    Identity::from_secret_bytes(&[seed; 32], &[seed.wrapping_add(1); 32])
}

fn wall() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

fn spec() -> ea::SymbolSpec {
    ea::SymbolSpec {
        symbol: "EURUSD".into(),
        digits: 5,
        point: Decimal::new(1, 5),
        tick_size: Decimal::new(1, 5),
        tick_value_profit: Decimal::ONE,
        tick_value_loss: Decimal::ONE,
        contract_size: Decimal::from(100_000),
        volume_min: Decimal::new(1, 2),
        volume_max: Decimal::from(100),
        volume_step: Decimal::new(1, 2),
        stops_level: 0,
        freeze_level: 0,
        trade_mode: ea::TradeMode::Full,
        currency_base: "EUR".into(),
        currency_profit: "USD".into(),
        currency_margin: "EUR".into(),
        sessions: Vec::new(),
    }
}

fn record(author: &Identity, stream: StreamId, seq: u64, body: &Body) -> Record {
    let fields = HeaderFields { stream, seq, prev_hash: ChainHash::GENESIS, created_at_ms: 1_000 };
    Record::sign(author, fields, body)
}

/// A node enrolled with `hub` (pinned), an EA said hello (EURUSD, 10,000 USD, a quote at
/// 1.10000), a trusted provider; manual approval, 0.10 fixed lots, remote approval `remote`.
struct Scene {
    _dir: tempfile::TempDir,
    node: Arc<Node>,
    hub: Identity,
    provider: Identity,
    account: String,
    session: String,
    seq: u64,
}

impl Scene {
    fn new(remote: bool) -> Scene {
        let dir = tempfile::tempdir().expect("tempdir");
        tradecast_node::serve::init(dir.path()).expect("init");
        let store = Store::open(&dir.path().join(tradecast_node::store::FILE_NAME)).expect("store");
        let hub = identity(40);
        store
            .write(|tx| {
                tx.set_setting("hub.addr", "127.0.0.1:7443")?;
                tx.set_setting("hub.identity_key", &hex::encode(hub.identity_key().to_bytes()))
            })
            .expect("pin");
        let node = Node::new(store, Settings::default(), 0).expect("node");
        let mut policy = node.policy().expect("policy");
        policy.approval.mode = ApprovalMode::Manual;
        policy.approval.remote_approval = remote;
        policy.lot = LotMode::Fixed { lots: d("0.10") };
        node.set_policy(&policy).expect("set policy");
        let now = Now { wall_ms: WallMs(wall()), market_ms: MarketMs(T0) };
        let hello = node
            .handle_hello(
                now,
                ea::Hello {
                    login: 42,
                    server: "Test-Server".into(),
                    company: "Test".into(),
                    currency: "USD".into(),
                    leverage: 100,
                    margin_mode: MarginMode::Hedging,
                    terminal_build: 1,
                    ea_version: "test".into(),
                    server_utc_offset_s: 7_200,
                    terminal_time_ms: T0,
                    symbols: vec![spec()],
                    floor_breach: None,
                    instance: None,
                },
            )
            .expect("hello");
        let mut s = Scene {
            _dir: dir,
            node,
            hub,
            provider: identity(1),
            account: "42@Test-Server".into(),
            session: hello.session_id,
            seq: 0,
        };
        s.state(T0);
        s.quote(T0, "1.10000");
        let keys = Body::DeviceKeys(DeviceKeys {
            identity: s.provider.identity_key(),
            sealing: s.provider.sealing_public_key(),
            label: "provider".into(),
            at_ms: 1_000,
            account_fingerprint: None,
        });
        let keys = record(&s.provider, StreamId::DEVICE, 1, &keys);
        assert!(matches!(s.feed(&keys), FeedOutcome::Pinned { trusted: true, .. }));
        s
    }

    fn now(&self, market: i64) -> Now {
        Now { wall_ms: WallMs(wall()), market_ms: MarketMs(market) }
    }

    fn state(&self, market: i64) {
        let s = ea::State {
            session_id: self.session.clone(),
            terminal_time_ms: market,
            balance: d("10000"),
            equity: d("10000"),
            margin: Decimal::ZERO,
            free_margin: d("10000"),
            credit: Decimal::ZERO,
            positions: Vec::new(),
            pending: Vec::new(),
            tick_values: Vec::new(),
            specs: Vec::new(),
        };
        self.node.handle_state(self.now(market), s).expect("state");
    }

    /// The H1 bar that closes at `market` with close `close`: the quote signals are judged by.
    fn quote(&self, market: i64, close: &str) {
        let bar = ea::LinkBar {
            symbol: "EURUSD".into(),
            timeframe: ea::Timeframe::H1,
            time_ms: market - HOUR,
            open: d(close),
            high: d(close),
            low: d(close),
            close: d(close),
            tick_volume: 1,
            spread_points: Some(10),
        };
        let bars = ea::Bars { session_id: self.session.clone(), bars: vec![bar] };
        self.node.handle_bars(self.now(market), bars).expect("bars");
    }

    fn feed(&mut self, record: &Record) -> FeedOutcome {
        self.seq += 1;
        self.node.receive_feed(self.seq, record).expect("feed")
    }

    /// The provider's market buy on EURUSD made at `T0`, expiring `expires_at_ms` (market).
    fn signal(&mut self, id: u8, expires_at_ms: i64) -> FeedOutcome {
        let s = Signal {
            id: SignalId([id; 16]),
            provider: self.provider.device_id(),
            strategy_id: "fib-rsi".into(),
            strategy_version: 1,
            symbol: "EURUSD".into(),
            timeframe: Timeframe::H1,
            side: Side::Buy,
            entry_kind: EntryKind::Market,
            entry: d("1.10000"),
            stop: d("1.09800"),
            tp1: d("1.10400"),
            tp2: None,
            bar_time_ms: T0 - HOUR,
            expires_at_ms,
            leg: 1,
            indicators: vec![],
            rr: Decimal::TWO,
        };
        let r = record(&self.provider, StreamId::SIGNALS, u64::from(id), &Body::Signal(s));
        self.feed(&r)
    }

    /// The hub's request `id` on signal `signal`, signed by `by` (the hub, or a forger).
    fn request(
        &mut self,
        by: Option<&Identity>,
        id: u8,
        signal: u8,
        decision: RemoteDecision,
        lots: Option<&str>,
    ) -> FeedOutcome {
        let body = Body::ApprovalRequest(ApprovalRequest {
            request_id: RequestId([id; 16]),
            signal_id: SignalId([signal; 16]),
            device: self.node.device_id(),
            decision,
            lots: lots.map(d),
            expires_at_ms: wall() + HOUR,
            channel: Channel::Telegram,
            telegram_user_id: Some(1234),
            requested_at_ms: wall(),
        });
        let by = by.unwrap_or(&self.hub);
        let r = record(by, StreamId::HUB_REQUESTS, self.seq + 1, &body);
        self.feed(&r)
    }

    /// Every record this node signed on the shared stream, decoded.
    fn shared(&self) -> Vec<Body> {
        let view = self.node.store().read().expect("view");
        view.outbox(StreamId::SHARED)
            .expect("outbox")
            .iter()
            .map(|r| r.body().expect("own record opens"))
            .collect()
    }

    fn pendings(&self) -> Vec<tradecast_protocol::Pending> {
        self.shared()
            .into_iter()
            .filter_map(|b| if let Body::Pending(p) = b { Some(p) } else { None })
            .collect()
    }

    fn answers(&self) -> Vec<tradecast_protocol::RequestAnswer> {
        self.shared()
            .into_iter()
            .filter_map(|b| if let Body::RequestAnswer(a) = b { Some(a) } else { None })
            .collect()
    }

    fn approvals(&self) -> Vec<tradecast_protocol::Approval> {
        self.shared()
            .into_iter()
            .filter_map(|b| if let Body::Approval(a) = b { Some(a) } else { None })
            .collect()
    }

    /// The volumes of the open orders queued for signal `id`.
    fn queued(&self, id: u8) -> Vec<Decimal> {
        self.node
            .orders(&self.account)
            .expect("orders")
            .into_iter()
            .filter(|o| o.signal_id == Some(SignalId([id; 16])))
            .filter_map(|o| if let OrderAction::Open(x) = o.action { Some(x.volume) } else { None })
            .collect()
    }

    fn copy_log(&self) -> Vec<String> {
        self.node.copy_log().expect("copy log").into_iter().map(|e| e.line).collect()
    }
}

fn applied(id: u8) -> FeedOutcome {
    FeedOutcome::Request { request_id: RequestId([id; 16]), answer: AnswerOutcome::Applied }
}

fn refused(id: u8, reason: RefusalReason) -> FeedOutcome {
    FeedOutcome::Request { request_id: RequestId([id; 16]), answer: AnswerOutcome::Refused(reason) }
}

#[test]
fn a_waiting_signal_is_announced_and_a_hub_request_approves_it_within_the_lot_range() {
    let mut s = Scene::new(true);
    let out = s.signal(1, T0 + 2 * HOUR);
    assert!(
        matches!(&out, FeedOutcome::Signal { line, .. } if line.starts_with("accepted: EURUSD buy 0.10 lots")),
        "{out:?}"
    );
    // The Pending, once, in the intake's write: the range from the broker's minimum to the
    // policy's lots, the risk at 0.10 lots to the 20-pip stop (200 points × 0.10 × 1 USD).
    let pendings = s.pendings();
    assert_eq!(pendings.len(), 1, "{pendings:?}");
    let p = &pendings[0];
    assert_eq!((p.signal_id, p.device), (SignalId([1; 16]), s.node.device_id()));
    assert_eq!((p.min_lots, p.max_lots), (d("0.01"), d("0.10")));
    // The deadline on the wall clock: the two hours the signal has left on the market clock.
    let left = p.expires_at_ms - p.at_ms;
    assert_eq!(left, 2 * HOUR, "{p:?}");
    assert!(p.blocking.is_empty(), "{p:?}");
    let preview = p.risk_preview.as_ref().expect("a preview with equity and tick value");
    assert_eq!(preview.lots, d("0.10"));
    assert_eq!(preview.currency, "USD");
    assert!(preview.risk_money > Decimal::ZERO, "{preview:?}");
    assert_eq!(preview.risk_percent, (preview.risk_money / d("100")).round_dp(2));
    assert!(s.queued(1).is_empty(), "manual mode: nothing queued before a decision");

    // Too many lots: refused, the signal still waits.
    assert_eq!(
        s.request(None, 10, 1, RemoteDecision::Approved, Some("0.50")),
        refused(10, RefusalReason::LotsOutOfRange)
    );
    assert!(s.approvals().is_empty());
    assert!(s.queued(1).is_empty());
    // Within the range: applied, the approval signed by the remote request with the lots chosen,
    // the order queued at those lots.
    assert_eq!(s.request(None, 11, 1, RemoteDecision::Approved, Some("0.05")), applied(11));
    let approvals = s.approvals();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    let a = &approvals[0];
    assert_eq!(a.decision, Decision::Approved);
    assert_eq!(a.decided_by, DecidedBy::Remote { request_id: RequestId([11; 16]) });
    assert_eq!(a.lots, Some(d("0.05")));
    assert_eq!(a.reason, "approved by remote request via telegram");
    assert_eq!(s.queued(1), vec![d("0.05")]);
    let answers = s.answers();
    let outcomes: Vec<_> = answers.iter().map(|a| (a.request_id, a.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            (RequestId([10; 16]), AnswerOutcome::Refused(RefusalReason::LotsOutOfRange)),
            (RequestId([11; 16]), AnswerOutcome::Applied),
        ]
    );
    // The stored requests are answered (none left to act on); the copy log says where the
    // decision came from.
    assert!(s.node.pending_requests().expect("pending").is_empty());
    let log = s.copy_log();
    assert!(
        log.iter().any(|l| l == "approved by remote request via telegram (0.05 lots)"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("refused remote approval via telegram (lots_out_of_range)")),
        "{log:?}"
    );
    // A second press on a decided signal: not pending; nothing else queued. The same request
    // again (the hub's chain resent it): held once, not answered twice.
    assert_eq!(
        s.request(None, 12, 1, RemoteDecision::Rejected, None),
        refused(12, RefusalReason::NotPending)
    );
    assert!(matches!(
        s.request(None, 11, 1, RemoteDecision::Approved, None),
        FeedOutcome::Ignored(_)
    ));
    assert_eq!(s.answers().len(), 3);
    assert_eq!(s.queued(1), vec![d("0.05")]);
    // The hub resends the approving request at its feed seq (its acknowledgement was lost):
    // committed already with its answer, so nothing is decided or signed again.
    let view = s.node.store().read().expect("view");
    let held = view.hub_requests().expect("held");
    drop(view);
    let seq =
        held.iter().find(|r| r.request.request_id == RequestId([11; 16])).expect("held").feed_seq;
    let body = Body::ApprovalRequest(held[0].request.clone());
    let again = s.node.receive_feed(seq, &record(&s.hub, StreamId::HUB_REQUESTS, seq, &body));
    assert!(matches!(again, Ok(FeedOutcome::Ignored(_))), "{again:?}");
    assert_eq!((s.answers().len(), s.approvals().len()), (3, 1));
    assert_eq!(s.queued(1), vec![d("0.05")]);
}

#[test]
fn a_remote_rejection_is_applied_without_lots_or_orders() {
    let mut s = Scene::new(true);
    s.signal(2, T0 + 2 * HOUR);
    assert_eq!(s.request(None, 20, 2, RemoteDecision::Rejected, Some("0.07")), applied(20));
    let a = &s.approvals()[0];
    assert_eq!(a.decision, Decision::Rejected);
    assert_eq!(a.decided_by, DecidedBy::Remote { request_id: RequestId([20; 16]) });
    assert_eq!(a.lots, None);
    assert!(s.queued(2).is_empty());
    assert!(s.copy_log().iter().any(|l| l == "rejected by remote request via telegram"));
}

#[test]
fn remote_approval_off_means_no_pending_and_a_remote_off_answer() {
    let mut s = Scene::new(false);
    let out = s.signal(3, T0 + 2 * HOUR);
    assert!(matches!(out, FeedOutcome::Signal { .. }), "{out:?}");
    assert!(s.pendings().is_empty(), "no Pending while remote approval is off");
    assert_eq!(
        s.request(None, 30, 3, RemoteDecision::Approved, None),
        refused(30, RefusalReason::RemoteOff)
    );
    assert!(s.approvals().is_empty(), "the signal still waits for the UI");
    assert!(s.queued(3).is_empty());
    assert!(s.node.approvals().expect("rows")[0].pending.decided().is_none());
}

#[test]
fn requests_for_unknown_expired_or_drifted_signals_are_refused_with_their_reason() {
    let mut s = Scene::new(true);
    // No such signal here.
    assert_eq!(
        s.request(None, 40, 9, RemoteDecision::Approved, None),
        refused(40, RefusalReason::NotPending)
    );
    // Expired in market time: the press arrives after the signal's expiry.
    s.signal(4, T0 + HOUR / 2);
    assert_eq!(s.pendings().len(), 1);
    s.state(T0 + HOUR);
    assert_eq!(
        s.request(None, 41, 4, RemoteDecision::Approved, None),
        refused(41, RefusalReason::Expired)
    );
    assert!(s.queued(4).is_empty());
    let expired = s.approvals();
    assert_eq!(expired.len(), 1, "the expiry is signed once: {expired:?}");
    assert_eq!(
        (expired[0].decision, &expired[0].decided_by),
        (Decision::Expired, &DecidedBy::Policy)
    );
    // The price drifted past the trader's limit since the signal.
    let mut s = Scene::new(true);
    let mut policy = s.node.policy().expect("policy");
    policy.max_price_move_points = Some(50);
    s.node.set_policy(&policy).expect("policy");
    s.signal(5, T0 + 3 * HOUR);
    s.quote(T0 + HOUR, "1.10300");
    assert_eq!(
        s.request(None, 50, 5, RemoteDecision::Approved, None),
        refused(50, RefusalReason::PriceMoved)
    );
    assert!(s.queued(5).is_empty());
    assert!(s.node.approvals().expect("rows")[0].pending.decided().is_none(), "still waits");
}

#[test]
fn a_forged_request_is_never_answered() {
    let mut s = Scene::new(true);
    s.signal(6, T0 + 2 * HOUR);
    let forger = identity(41);
    let out = s.request(Some(&forger), 60, 6, RemoteDecision::Approved, None);
    assert_eq!(
        out,
        FeedOutcome::Refused(FeedRefusal::Hub(HubRequestError::WrongSigner {
            author: forger.device_id(),
            hub: s.hub.device_id(),
        }))
    );
    assert!(s.answers().is_empty());
    assert!(s.approvals().is_empty());
    assert!(s.queued(6).is_empty());
    assert_eq!(s.node.hub_refusals().expect("refusals")[0].code, "wrong_signer");
}

#[test]
fn an_approval_a_risk_rule_now_refuses_is_refused_as_risk() {
    let mut s = Scene::new(true);
    // Two signals on EURUSD wait; the trader's rules allow one position per symbol.
    s.signal(7, T0 + 2 * HOUR);
    s.signal(8, T0 + 2 * HOUR);
    assert_eq!(s.pendings().len(), 2, "each waiting signal announced once");
    assert_eq!(s.request(None, 70, 7, RemoteDecision::Approved, None), applied(70));
    assert_eq!(s.queued(7), vec![d("0.10")], "the policy's own size");
    // The second is evaluated again at the press: the first's order now holds EURUSD.
    assert_eq!(
        s.request(None, 80, 8, RemoteDecision::Approved, None),
        refused(80, RefusalReason::Risk)
    );
    assert!(s.queued(8).is_empty());
    let log = s.copy_log();
    assert!(
        log.iter().any(|l| l.starts_with("refused remote approval via telegram (risk)")),
        "{log:?}"
    );
    // A rejection of it is still honoured.
    assert_eq!(s.request(None, 81, 8, RemoteDecision::Rejected, None), applied(81));
}

#[test]
fn a_press_that_arrives_when_the_market_has_closed_is_refused_as_market_closed() {
    let mut s = Scene::new(true);
    let mut policy = s.node.policy().expect("policy");
    // A signal valid over the weekend, so only the market's hours stand in the way.
    policy.max_signal_age_s = 7 * 24 * 3_600;
    s.node.set_policy(&policy).expect("policy");
    s.signal(6, T0 + 130 * HOUR);
    assert_eq!(s.pendings().len(), 1, "announced while the market is open");
    // Saturday 2026-03-07 12:00 UTC: the FX market is closed (Friday 17:00 New York to Sunday).
    let saturday = T0 + 72 * HOUR;
    s.state(saturday);
    s.quote(saturday, "1.10000");
    assert_eq!(
        s.request(None, 60, 6, RemoteDecision::Approved, None),
        refused(60, RefusalReason::MarketClosed)
    );
    assert!(s.queued(6).is_empty(), "nothing queued for a closed market");
    let answers = s.answers();
    assert_eq!(
        answers.last().map(|a| &a.outcome),
        Some(&AnswerOutcome::Refused(RefusalReason::MarketClosed))
    );
    assert!(s.node.approvals().expect("rows")[0].pending.decided().is_none(), "it still waits");
    // Monday, the market open again: the same trader's next press applies.
    let monday = T0 + 117 * HOUR;
    s.state(monday);
    s.quote(monday, "1.10000");
    assert_eq!(s.request(None, 61, 6, RemoteDecision::Approved, None), applied(61));
    assert_eq!(s.queued(6), vec![d("0.10")]);
}

#[test]
fn turning_remote_approval_on_announces_the_signals_already_waiting() {
    let mut s = Scene::new(false);
    s.signal(7, T0 + 3 * HOUR);
    assert!(s.pendings().is_empty(), "remote approval off: the hub is told nothing");
    let mut policy = s.node.policy().expect("policy");
    policy.approval.remote_approval = true;
    s.node.set_policy(&policy).expect("policy");
    let p = s.pendings();
    assert_eq!(p.len(), 1, "the signal already waiting is announced when it is turned on");
    assert_eq!(p[0].signal_id, SignalId([7; 16]));
    assert_eq!((p[0].min_lots, p[0].max_lots), (d("0.01"), d("0.10")));
    // Saving the policy again (still on) announces nothing twice; the press then applies.
    s.node.set_policy(&policy).expect("policy");
    assert_eq!(s.pendings().len(), 1);
    assert_eq!(s.request(None, 70, 7, RemoteDecision::Approved, None), applied(70));
    assert_eq!(s.queued(7), vec![d("0.10")]);
}

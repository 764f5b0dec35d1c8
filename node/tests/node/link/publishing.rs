//! Issue 18, part 1b: the account's history — equity points, balance operations, daily
//! summaries (and closed trades, through the same `append_history`) — goes to the hub unsealed
//! only for the data kinds the trader consented to; everything else is sealed in the private
//! stream. Driven through the real EA link.

use rust_decimal::Decimal;
use tradecast_node::store::PublishConsent;
use tradecast_protocol::ea::{self, Call};
use tradecast_protocol::{BalanceKind, Body, Kind, StreamId};

use super::{Link, deal, state};

/// Wednesday 2023-11-15 12:00 UTC.
const T0: i64 = 1_700_049_600_000;
const DAY: i64 = 86_400_000;

fn kinds(link: &Link, stream: StreamId) -> Vec<Kind> {
    let view = link.running.node.store().read().expect("read");
    view.outbox(stream).expect("outbox").iter().map(|r| r.header().kind).collect()
}

/// A state push at `t`, then a deposit (`amount`, deal `ticket`) at `t + 1`.
async fn day_with_deposit(
    link: &mut Link,
    session: &str,
    t: i64,
    equity: i64,
    ticket: u64,
    amount: i64,
) {
    let _: ea::StateAnswer =
        link.call(Call::State, &state(session, t, equity, equity, vec![])).await;
    let mut d = deal(ticket, ea::DealKind::Balance, ea::DealEntry::None, t + 1);
    d.profit = Decimal::from(amount);
    d.comment = "deposit".into();
    let deals = ea::Deals { session_id: session.to_owned(), from_ms: 0, deals: vec![d] };
    let _: ea::DealsAnswer = link.call(Call::Deals, &deals).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_sealed_unless_the_trader_consented_to_its_kind() {
    let mut link = Link::start().await;
    let h = link.hello(T0).await;
    let node = link.running.node.clone();
    assert_eq!(node.publish_consent().expect("consent"), PublishConsent::default());

    // Day 1 and the first push of day 2 with nothing consented: all of it sealed.
    day_with_deposit(&mut link, &h.session_id, T0, 10_000, 1, 500).await;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, T0 + DAY, 10_500, 10_400, vec![])).await;
    assert!(kinds(&link, StreamId::PUBLISHED).is_empty(), "nothing published without consent");
    let private = kinds(&link, StreamId::PRIVATE);
    for k in [Kind::EquityPoint, Kind::BalanceOperation, Kind::Summary] {
        assert!(private.contains(&k), "{k:?} sealed in the private stream: {private:?}");
    }
    let view = node.store().read().expect("read");
    assert!(view.outbox(StreamId::PRIVATE).expect("outbox").iter().all(|r| r.header().sealed));
    drop(view);

    // Balance operations and daily summaries published; the equity curve still sealed.
    node.set_publish_consent(PublishConsent {
        balance_operations: true,
        daily_summary: true,
        ..Default::default()
    })
    .expect("consent");
    assert!(node.status(T0).expect("status").sync.publishing.daily_summary);
    let private_before = kinds(&link, StreamId::PRIVATE).len();
    let mut w = deal(2, ea::DealKind::Balance, ea::DealEntry::None, T0 + DAY + 10);
    w.profit = Decimal::from(-300);
    let deals = ea::Deals { session_id: h.session_id.clone(), from_ms: 0, deals: vec![w] };
    let _: ea::DealsAnswer = link.call(Call::Deals, &deals).await;
    // The same deal again (a resent push) is not a second operation.
    let _: ea::DealsAnswer = link.call(Call::Deals, &deals).await;
    let _: ea::StateAnswer =
        link.call(Call::State, &state(&h.session_id, T0 + 2 * DAY, 10_200, 10_150, vec![])).await;
    let view = node.store().read().expect("read");
    let published = view.outbox(StreamId::PUBLISHED).expect("outbox");
    let bodies: Vec<Body> = published.iter().map(|r| r.body().expect("unsealed")).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    match &bodies[0] {
        Body::BalanceOperation(op) => {
            assert_eq!(
                (op.deal, op.kind, op.amount),
                (2, BalanceKind::Withdrawal, Decimal::from(-300))
            );
            assert_eq!(op.device, node.device_id());
        }
        other => panic!("expected the withdrawal first: {other:?}"),
    }
    match &bodies[1] {
        Body::Summary(s) => {
            // Day 2 opened at 10,400 equity; the withdrawal moved its opening to 10,100.
            assert_eq!(s.day, "2023-11-16");
            assert_eq!((s.balance, s.equity), (Decimal::from(10_200), Decimal::from(10_150)));
            assert_eq!(s.day_pnl, Decimal::from(50));
            assert_eq!(s.floating_pnl, Decimal::from(-50));
            assert_eq!(s.at_ms, T0 + 2 * DAY);
        }
        other => panic!("expected the day's summary: {other:?}"),
    }
    // The equity point of that push went to the private stream.
    let private = view.outbox(StreamId::PRIVATE).expect("outbox");
    assert_eq!(private.len(), private_before + 1);
    assert_eq!(private[private.len() - 1].header().kind, Kind::EquityPoint);
    link.shutdown.trigger();
}

//! Issue 23, item 8 on the node's side: a close the dealer requoted (10004, 10020, 10021) is not
//! a decision. It stays due and is offered again after a backoff on the market clock (1 s, 2 s,
//! 4 s … 60 s: never in a tight loop), as many times as it takes; once the close is done it is
//! never offered again. Before the fix the first requoted close was final (`Rejected`) and the
//! position stayed open.

use tradecast_node::runtime::{
    CLOSE_REQUOTE_MAX_MS, OrderAction, OrderState, close_requote_backoff_ms,
};
use tradecast_protocol::ea::{self, Call, CloseAllScope};

use super::{Link, bare_ack, queue, queue_close};

#[test]
fn the_backoff_doubles_to_a_minute() {
    let waits: Vec<i64> = (1..=9).map(close_requote_backoff_ms).collect();
    assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    assert_eq!(close_requote_backoff_ms(u32::MAX), CLOSE_REQUOTE_MAX_MS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requoted_close_stays_due_and_is_offered_again_after_a_backoff() {
    let mut link = Link::start().await;
    // Wednesday 2023-11-15 12:00 UTC: the market is open (no sessions: always open).
    let t0 = 1_700_049_600_000;
    let h = link.hello(t0).await;
    let node = link.running.node.clone();
    let row = queue_close(&node, 3);
    let mut market = t0;
    let mut offers = 0;
    // Three requoted answers in a row, each of the three requote codes.
    for (i, code) in [10_004u32, 10_020, 10_021].into_iter().enumerate() {
        let a = link.poll(&h.session_id, 0, market).await;
        assert_eq!(a.commands.len(), 1, "offer {i}: {a:?}");
        offers += 1;
        let _: ea::AckAnswer = link
            .call(
                Call::Ack,
                &bare_ack(&h.session_id, &row.order_id, ea::Outcome::Rejected, code, ""),
            )
            .await;
        let o = node.orders(&row.account).expect("orders").remove(0);
        let wait = close_requote_backoff_ms(i as u32 + 1);
        assert_eq!(o.state, OrderState::Due, "a requoted close is not final: {o:?}");
        assert_eq!(o.not_before_ms, Some(market + wait), "{o:?}");
        assert!(o.explained.contains("sent again"), "{}", o.explained);
        // Not offered before the backoff is over (no tight loop), offered when it is.
        assert!(link.poll(&h.session_id, 0, market).await.commands.is_empty());
        assert!(link.poll(&h.session_id, 0, market + wait - 1).await.commands.is_empty());
        market += wait;
    }
    let a = link.poll(&h.session_id, 0, market).await;
    assert_eq!(a.commands.len(), 1);
    offers += 1;
    let mut done = bare_ack(&h.session_id, &row.order_id, ea::Outcome::Done, 10_009, "");
    done.deal_ticket = Some(77);
    done.position_id = Some(3);
    let _: ea::AckAnswer = link.call(Call::Ack, &done).await;
    let o = node.orders(&row.account).expect("orders").remove(0);
    assert_eq!((o.state, o.n_requotes, o.n_offers), (OrderState::Acked, 3, offers), "{o:?}");
    // Done: never offered again, however much later.
    for later in [market, market + 61_000, market + 3_600_000] {
        assert!(link.poll(&h.session_id, 0, later).await.commands.is_empty());
    }
    // A repeated requote ack (the answer to the first was lost) does not reopen it.
    let _: ea::AckAnswer = link
        .call(Call::Ack, &bare_ack(&h.session_id, &row.order_id, ea::Outcome::Rejected, 10_004, ""))
        .await;
    assert_eq!(node.orders(&row.account).expect("orders").remove(0).state, OrderState::Acked);
    link.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requoted_close_all_stays_due_with_the_wait_capped_at_a_minute() {
    let mut link = Link::start().await;
    let t0 = 1_700_049_600_000;
    let h = link.hello(t0).await;
    let node = link.running.node.clone();
    let row = queue(&node, OrderAction::CloseAll { scope: CloseAllScope::Tradecast });
    let mut market = t0;
    // Ten requotes in a row: still due, the wait capped at a minute.
    for i in 1..=10u32 {
        let a = link.poll(&h.session_id, 0, market).await;
        assert_eq!(a.commands.len(), 1, "offer {i}");
        let _: ea::AckAnswer = link
            .call(
                Call::Ack,
                &bare_ack(&h.session_id, &row.order_id, ea::Outcome::Rejected, 10_021, ""),
            )
            .await;
        let o = node.orders(&row.account).expect("orders").remove(0);
        assert_eq!(o.state, OrderState::Due, "{o:?}");
        let wait = o.not_before_ms.expect("a backoff") - market;
        assert_eq!(wait, close_requote_backoff_ms(i));
        assert!(wait <= CLOSE_REQUOTE_MAX_MS);
        market += wait;
    }
    // Another rejection (not a requote) is final, as before.
    assert_eq!(link.poll(&h.session_id, 0, market).await.commands.len(), 1);
    let _: ea::AckAnswer = link
        .call(Call::Ack, &bare_ack(&h.session_id, &row.order_id, ea::Outcome::Rejected, 10_006, ""))
        .await;
    assert_eq!(node.orders(&row.account).expect("orders").remove(0).state, OrderState::Rejected);
    link.shutdown.trigger();
}

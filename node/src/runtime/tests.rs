//! The runtime on redb's in-memory backend: cases that need rows no EA conversation makes
//! (an approval whose account has no row).

use std::sync::Arc;

use rust_decimal::Decimal;
use tradecast_protocol::{EntryKind, IndicatorValue, Side, Signal, SignalId, Timeframe};

use super::{ApprovalRow, Node, NodeError, Settings, SignalRow, init_store};
use crate::policy::approval::{
    ApprovalState, Channel, Decider, DecisionRequest, PendingApproval, Refused, Verdict,
};
use crate::store::{self, Store};

/// A node over a fresh in-memory store.
pub(crate) fn in_memory_node() -> Arc<Node> {
    let store = Store::open_backend(redb::backends::InMemoryBackend::new()).expect("fresh store");
    init_store(&store).expect("identity");
    Node::new(store, Settings::default(), 0).expect("node")
}

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

fn signal(provider: &Node) -> Signal {
    Signal {
        id: SignalId([7; 16]),
        provider: provider.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        side: Side::Buy,
        entry_kind: EntryKind::Market,
        entry: d("1.10000"),
        stop: d("1.09900"),
        tp1: d("1.10200"),
        tp2: None,
        bar_time_ms: 0,
        // Far in the future: the decision is not refused for lateness.
        expires_at_ms: i64::MAX / 2,
        leg: 1,
        indicators: vec![IndicatorValue { name: "rsi".into(), value: d("27.4") }],
        rr: d("2"),
    }
}

#[test]
fn a_decision_for_an_account_without_a_row_is_refused_as_an_unknown_account() {
    let node = in_memory_node();
    let signal = signal(&node);
    let hex = signal.id.to_hex();
    let arow = ApprovalRow {
        account: "1234@Ghost-Demo".into(),
        provider_lots: None,
        pending: PendingApproval {
            signal_id: signal.id,
            device: node.device_id(),
            expires_at_ms: signal.expires_at_ms,
            state: ApprovalState::Waiting,
        },
        line: "waiting".into(),
    };
    let srow = SignalRow {
        signal,
        source: "api".into(),
        order_id: None,
        skipped: String::new(),
        provider_closed_at_ms: None,
    };
    node.store()
        .write(|tx| {
            tx.put_json(store::SIGNALS, "signals", &hex, &srow)?;
            tx.put_json(store::APPROVALS, "approvals", &hex, &arow)
        })
        .expect("rows");
    let approve = DecisionRequest {
        verdict: Verdict::Approve,
        by: Decider::Trader { user: "trader".into(), channel: Channel::Ui },
        reason: String::new(),
    };
    match node.decide(&hex, &approve) {
        Err(NodeError::Decision(Refused::OutsidePolicy { reason })) => {
            assert_eq!(reason, "skipped: no account 1234@Ghost-Demo");
        }
        other => panic!("want an outside-policy refusal naming the account, got {other:?}"),
    }
}

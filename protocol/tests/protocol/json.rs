//! JSON forms of the domain types: what the hub's HTTP API and the node's local API accept.

use serde_json::json;
use tradecast_protocol::{Command, Signal};

use crate::support::{dec, identity, signal};

#[test]
fn a_signal_is_snake_case_json_with_decimal_strings_and_unix_ms() {
    let provider = identity(1);
    let s = signal(&provider, 7);
    let value = serde_json::to_value(&s).unwrap();
    assert_eq!(
        value,
        json!({
            "id": "07070707070707070707070707070707",
            "provider": provider.device_id().to_text(),
            "strategy_id": "fib-rsi",
            "strategy_version": 3,
            "symbol": "EURUSD",
            "timeframe": "H1",
            "side": "buy",
            "entry_kind": "limit",
            "entry": "1.08250",
            "stop": "1.08010",
            "tp1": "1.08610",
            "tp2": "1.08970",
            "bar_time_ms": 1_764_000_000_000i64,
            "expires_at_ms": 1_764_003_600_000i64,
            "leg": 1,
            "indicators": [
                {"name": "rsi", "value": "27.43"},
                {"name": "fib_618", "value": "1.08243"}
            ],
            "rr": "1.5"
        })
    );
    let back: Signal = serde_json::from_value(value).unwrap();
    assert_eq!(back, s);
}

#[test]
fn json_refuses_bad_ids_and_floats_keep_exactness() {
    let provider = identity(2);
    let mut value = serde_json::to_value(signal(&provider, 1)).unwrap();
    value["id"] = json!("xyz");
    assert!(serde_json::from_value::<Signal>(value.clone()).is_err());
    value["id"] = json!("01010101010101010101010101010101");
    value["provider"] = json!("AAAAAAAA-BBBBBBBB");
    assert!(serde_json::from_value::<Signal>(value).is_err());
    // Prices are decimal strings: 0.1 + 0.2 is exactly 0.3.
    assert_eq!(dec("0.1") + dec("0.2"), dec("0.3"));
}

#[test]
fn commands_are_externally_tagged() {
    let command = Command::CloseAll { symbol: None, reason: "drawdown".into(), at_ms: 5 };
    let value = serde_json::to_value(&command).unwrap();
    assert_eq!(value, json!({"close_all": {"symbol": null, "reason": "drawdown", "at_ms": 5}}));
    assert_eq!(serde_json::from_value::<Command>(value).unwrap(), command);
}

/// Every body type survives JSON (the hub's HTTP API and the node's local API carry them).
#[test]
fn every_body_type_round_trips_through_json() {
    fn check<T>(value: &T)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_string(value).unwrap();
        fn no_floats(v: &serde_json::Value) -> bool {
            match v {
                serde_json::Value::Number(n) => n.is_i64() || n.is_u64(),
                serde_json::Value::Array(a) => a.iter().all(no_floats),
                serde_json::Value::Object(o) => o.values().all(no_floats),
                _ => true,
            }
        }
        assert!(no_floats(&serde_json::from_str(&json).unwrap()), "a float in {json}");
        assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), value, "{json}");
    }
    let author = identity(8);
    for body in crate::records::every_body(&author) {
        use tradecast_protocol::Body as B;
        match &body {
            B::Signal(v) => check(v),
            B::Modify(v) => check(v),
            B::Close(v) => check(v),
            B::Approval(v) => check(v),
            B::Execution(v) => check(v),
            B::PositionSnapshot(v) => check(v),
            B::TradeClosed(v) => check(v),
            B::EquityPoint(v) => check(v),
            B::Heartbeat(v) => check(v),
            B::DeviceKeys(v) => check(v),
            B::Receipt(v) => check(v),
            B::Command(v) => check(v),
            B::ApprovalRequest(v) => check(v),
            B::RequestAnswer(v) => check(v),
            B::Pending(v) => check(v),
            B::FeatureGrant(v) => check(v),
            B::BalanceOperation(v) => check(v),
            B::Summary(v) => check(v),
            other => panic!("a body kind without a JSON check: {:?}", other.kind()),
        }
    }
}

/// The names used in SQL, pages and exports are the wire's (serde) spellings, and every record
/// kind has its own.
#[test]
fn enum_names_are_the_wire_spellings() {
    use tradecast_protocol::{Decision, Kind, Side, Timeframe};
    let json = |v: serde_json::Value| v.as_str().map(str::to_owned).expect("a string");
    for side in [Side::Buy, Side::Sell] {
        assert_eq!(side.as_str(), json(serde_json::json!(side)));
    }
    for d in [Decision::Approved, Decision::Rejected, Decision::Expired] {
        assert_eq!(d.as_str(), json(serde_json::json!(d)));
    }
    use Timeframe::*;
    for tf in [M1, M5, M15, M30, H1, H4, D1, W1, MN1] {
        assert_eq!(tf.as_str(), json(serde_json::json!(tf)));
    }
    let names: std::collections::BTreeSet<_> = Kind::ALL.into_iter().map(Kind::name).collect();
    assert_eq!(names.len(), Kind::ALL.len());
    assert!(!names.contains("unnamed"));
    assert_eq!(Kind::PositionSnapshot.name(), "position_snapshot");
}

//! The copy log's entry for one evaluated signal: what the node stores and the UI lists, one line
//! a trader reads ("skipped: EURUSD.m market closed (Saturday)") and the steps behind it. Serde,
//! so the store and the local API carry it as it is; MT5 retcodes of the sends are the order
//! lifecycle's entries, not these.

use serde::{Deserialize, Serialize};
use tradecast_protocol::{Signal, SignalId};

use super::{Evaluation, Outcome, Rule, Step};

/// One signal's evaluation in the copy log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyLogEntry {
    /// When it was evaluated, market clock, unix ms UTC.
    pub at_ms: i64,
    pub signal_id: SignalId,
    /// The provider's symbol.
    pub canonical_symbol: String,
    /// Whether the policy accepted it (an approval still decides whether it is sent).
    pub accepted: bool,
    /// The rule that skipped it, if one did.
    pub failed_rule: Option<Rule>,
    /// The line: "skipped: …" or "accepted: …".
    pub line: String,
    /// Every step evaluated, in order.
    pub steps: Vec<Step>,
}

impl CopyLogEntry {
    /// The entry for `evaluation` of `signal` at `at_ms`.
    pub fn new(signal: &Signal, evaluation: &Evaluation, at_ms: i64) -> CopyLogEntry {
        let accepted = matches!(evaluation.outcome, Outcome::Accept(_));
        CopyLogEntry {
            at_ms,
            signal_id: signal.id,
            canonical_symbol: signal.symbol.clone(),
            accepted,
            failed_rule: evaluation.steps.iter().find(|s| !s.passed).map(|s| s.rule),
            line: evaluation.log_line(),
            steps: evaluation.steps.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SkipReason;
    use rust_decimal::Decimal;
    use tradecast_protocol::{EntryKind, Identity, Side, Timeframe};

    fn signal() -> Signal {
        Signal {
            id: SignalId([3; 16]),
            provider: Identity::from_secret_bytes(&[1; 32], &[2; 32]).device_id(),
            strategy_id: "fib-rsi".into(),
            strategy_version: 1,
            symbol: "EURUSD".into(),
            timeframe: Timeframe::H1,
            side: Side::Buy,
            entry_kind: EntryKind::Market,
            entry: Decimal::ONE,
            stop: Decimal::ONE,
            tp1: Decimal::ONE,
            tp2: None,
            bar_time_ms: 0,
            expires_at_ms: 0,
            leg: 1,
            indicators: vec![],
            rr: Decimal::ONE,
        }
    }

    #[test]
    fn a_skip_names_its_rule_and_line_and_survives_json() {
        let e = Evaluation {
            outcome: Outcome::Skip(SkipReason::TooOld { age_s: 93, limit_s: 60 }),
            steps: vec![
                Step { rule: Rule::Settings, passed: true, detail: "consistent".into() },
                Step {
                    rule: Rule::Age,
                    passed: false,
                    detail: "skipped: signal 93 s old, limit 60 s".into(),
                },
            ],
            auto_suspended: false,
        };
        let entry = CopyLogEntry::new(&signal(), &e, 42);
        assert_eq!(
            entry,
            CopyLogEntry {
                at_ms: 42,
                signal_id: SignalId([3; 16]),
                canonical_symbol: "EURUSD".into(),
                accepted: false,
                failed_rule: Some(Rule::Age),
                line: "skipped: signal 93 s old, limit 60 s".into(),
                steps: e.steps.clone(),
            }
        );
        let json = serde_json::to_string(&entry).expect("json");
        assert!(json.contains("\"failed_rule\":\"age\""), "{json}");
        assert_eq!(serde_json::from_str::<CopyLogEntry>(&json).expect("back"), entry);
    }
}

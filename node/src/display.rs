//! Formatting helpers shared by the command line's tables and the HTML report: times and
//! prices as a trader reads them. Pure functions, no I/O.

use tradecast_protocol::bars::format_rfc3339;
use tradecast_protocol::{Decision, Kind, Side, Timeframe};

/// `2017-05-02 04:00` for tables.
pub fn short_time(unix_ms: i64) -> String {
    let s = format_rfc3339(unix_ms);
    s.get(..16).map(|p| p.replace('T', " ")).unwrap_or(s)
}

/// A price to at most 8 decimals, trailing zeros dropped.
pub fn price(x: f64) -> String {
    let s = format!("{x:.8}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_owned()
}

/// `"buy"` or `"sell"`: the wire's spelling, never a `Debug` text.
pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// MT5's name of a timeframe (`"H1"`), as on the wire.
pub fn timeframe_name(tf: Timeframe) -> &'static str {
    match tf {
        Timeframe::M1 => "M1",
        Timeframe::M5 => "M5",
        Timeframe::M15 => "M15",
        Timeframe::M30 => "M30",
        Timeframe::H1 => "H1",
        Timeframe::H4 => "H4",
        Timeframe::D1 => "D1",
        Timeframe::W1 => "W1",
        Timeframe::MN1 => "MN1",
    }
}

/// `"approved"`, `"rejected"` or `"expired"`: the wire's spelling.
pub fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Approved => "approved",
        Decision::Rejected => "rejected",
        Decision::Expired => "expired",
    }
}

/// A record kind in snake case (`"position_snapshot"`), as the records export names it.
pub fn kind_name(kind: Kind) -> &'static str {
    // One spelling for every record kind, the protocol's own.
    kind.name()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the wire's (serde) spellings, and every record kind has its own.
    #[test]
    fn enum_names_are_the_wire_spellings() {
        let json = |v: serde_json::Value| v.as_str().map(str::to_owned).expect("a string");
        for side in [Side::Buy, Side::Sell] {
            assert_eq!(side_name(side), json(serde_json::json!(side)));
        }
        for d in [Decision::Approved, Decision::Rejected, Decision::Expired] {
            assert_eq!(decision_name(d), json(serde_json::json!(d)));
        }
        use Timeframe::*;
        for tf in [M1, M5, M15, M30, H1, H4, D1, W1, MN1] {
            assert_eq!(timeframe_name(tf), json(serde_json::json!(tf)));
        }
        let names: std::collections::BTreeSet<_> = Kind::ALL.into_iter().map(kind_name).collect();
        assert_eq!(names.len(), Kind::ALL.len());
        assert!(!names.contains("unnamed"));
        assert_eq!(kind_name(Kind::PositionSnapshot), "position_snapshot");
    }

    #[test]
    fn prices_and_times_for_tables() {
        assert_eq!(price(1.091_793_64), "1.09179364");
        assert_eq!(price(1.088), "1.088");
        assert_eq!(price(1870.0), "1870");
        assert_eq!(short_time(1_493_697_600_000), "2017-05-02 04:00");
    }
}

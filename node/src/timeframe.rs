//! Timeframes (MT5's names) and their bar durations: the backtest and the signal expiry ("the
//! close of bar t+1", fib-rsi.md) need the length of a bar, nothing else does.

use std::fmt;
use std::str::FromStr;

/// A bar length MT5 names. Monthly bars have no fixed length and are not supported.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Timeframe {
    M1,
    M5,
    M15,
    M30,
    #[default]
    H1,
    H4,
    D1,
    W1,
}

impl Timeframe {
    const ALL: [(Timeframe, &'static str, i64); 8] = [
        (Timeframe::M1, "M1", 60_000),
        (Timeframe::M5, "M5", 300_000),
        (Timeframe::M15, "M15", 900_000),
        (Timeframe::M30, "M30", 1_800_000),
        (Timeframe::H1, "H1", 3_600_000),
        (Timeframe::H4, "H4", 14_400_000),
        (Timeframe::D1, "D1", 86_400_000),
        (Timeframe::W1, "W1", 604_800_000),
    ];

    /// One bar's length in milliseconds.
    pub fn duration_ms(self) -> i64 {
        Self::ALL.iter().find(|(t, ..)| *t == self).map_or(3_600_000, |(_, _, ms)| *ms)
    }

    /// MT5's name: `M1` … `W1`.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(t, ..)| *t == self).map_or("H1", |(_, name, _)| name)
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A timeframe name that is not one of M1, M5, M15, M30, H1, H4, D1, W1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown timeframe `{0}` (expected M1, M5, M15, M30, H1, H4, D1 or W1)")]
pub struct UnknownTimeframe(pub String);

impl FromStr for Timeframe {
    type Err = UnknownTimeframe;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(_, name, _)| name.eq_ignore_ascii_case(s))
            .map(|(t, ..)| *t)
            .ok_or_else(|| UnknownTimeframe(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_durations() {
        for (t, name, ms) in Timeframe::ALL {
            assert_eq!(name.parse::<Timeframe>(), Ok(t));
            assert_eq!(name.to_lowercase().parse::<Timeframe>(), Ok(t));
            assert_eq!(t.to_string(), name);
            assert_eq!(t.duration_ms(), ms);
        }
        assert_eq!(
            "MN1".parse::<Timeframe>().map_err(|e| e.to_string()),
            Err("unknown timeframe `MN1` (expected M1, M5, M15, M30, H1, H4, D1 or W1)".into())
        );
    }
}

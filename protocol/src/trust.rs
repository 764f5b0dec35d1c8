//! The trust score of a provider's public record: an integer 0–100 from published inputs with a
//! published formula, in exact `Decimal` arithmetic, pure (no clock, no I/O), so the offline
//! verifier can recompute it from an export as the page shows it.
//!
//! Components, each a share in [0, 1]:
//!
//! | component | weight | value |
//! | --- | --- | --- |
//! | track length | 25 | days from the first scored trade's opening to the cutoff ÷ 365, at most 1 |
//! | drawdown | 25 | 1 − max drawdown in R ÷ 20, at least 0 (a 20 R drawdown scores 0) |
//! | consistency | 25 | months with Σ R > 0 ÷ months with a closed trade |
//! | chain continuity | 15 | chains with no gap ÷ chains (every published record has the hub's receipt: a gap is the only way a chain can miss one) |
//! | copy fidelity | 10 | the share of subscriber copies filled as the signal said; **n/a today**: its weight is left out and the others re-normalised (÷ 90 instead of ÷ 100) |
//!
//! score = round(100 × Σ weight × value ÷ Σ weight of the components that apply), half away from
//! zero. A record without a closed trade scores 0 (nothing to trust yet).

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::track::TrackFigures;

/// Days after which a track record counts as full length.
pub const FULL_LENGTH_DAYS: i64 = 365;
/// The drawdown (in R) that scores 0.
pub const ZERO_SCORE_DRAWDOWN_R: i64 = 20;
/// Weights: length, drawdown, consistency, continuity, copy fidelity.
pub const WEIGHTS: [(&str, i64); 5] = [
    ("track length", 25),
    ("drawdown", 25),
    ("consistency", 25),
    ("chain continuity", 15),
    ("copy fidelity", 10),
];

/// What the score is computed from (all published on the page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustInputs {
    /// Closed, priced trades.
    pub n_trades: u64,
    /// Whole days from the first scored trade's opening to the cutoff.
    pub track_days: i64,
    /// The largest fall of the cumulative-R curve, R.
    pub max_drawdown_r: Decimal,
    /// Months (UTC, by closing time) whose Σ R is above 0.
    pub months_positive: u64,
    /// Months with at least one closed trade.
    pub months_total: u64,
    /// Published chains without a gap.
    pub chains_continuous: u64,
    /// Published chains.
    pub chains_total: u64,
    /// Copy fidelity in [0, 1] when known (`None` today: no published executions yet).
    pub copy_fidelity: Option<Decimal>,
}

/// One component as shown: its name, weight, value in [0, 1] (`None`: n/a, weight left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Its name.
    pub name: String,
    /// Its weight.
    pub weight: i64,
    /// Its value, 4 places.
    pub value: Option<Decimal>,
}

/// The score with its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustScore {
    /// 0–100.
    pub score: u8,
    /// Each component.
    pub components: Vec<Component>,
}

/// The inputs of a published record: its figures, the gap of each published signals chain
/// (`None`: none; the first missing `seq`, as the hub declares it in the export) and the cutoff.
/// The hub's page and the offline verifier both call this, so the score in an export can be
/// recomputed from its records.
pub fn inputs(figures: &TrackFigures, gaps: &[Option<u64>], cutoff_ms: i64) -> TrustInputs {
    let first = figures.trades.iter().map(|t| t.opened_at_ms).min();
    let track_days = first.map_or(0, |f| cutoff_ms.saturating_sub(f).max(0) / 86_400_000);
    TrustInputs {
        n_trades: figures.n_trades,
        track_days,
        max_drawdown_r: figures.max_drawdown_r,
        months_positive: figures.by_month.iter().filter(|m| m.total_r > Decimal::ZERO).count()
            as u64,
        months_total: figures.by_month.len() as u64,
        chains_continuous: gaps.iter().filter(|g| g.is_none()).count() as u64,
        chains_total: gaps.len() as u64,
        copy_fidelity: None,
    }
}

fn share(num: Decimal, den: Decimal) -> Decimal {
    if den <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    num.checked_div(den).unwrap_or(Decimal::ONE).clamp(Decimal::ZERO, Decimal::ONE)
}

/// The score of `i` (formula in the module docs).
pub fn score(i: &TrustInputs) -> TrustScore {
    let values = [
        Some(share(Decimal::from(i.track_days.max(0)), Decimal::from(FULL_LENGTH_DAYS))),
        Some(
            Decimal::ONE
                - share(i.max_drawdown_r.max(Decimal::ZERO), Decimal::from(ZERO_SCORE_DRAWDOWN_R)),
        ),
        Some(share(Decimal::from(i.months_positive), Decimal::from(i.months_total))),
        Some(share(Decimal::from(i.chains_continuous), Decimal::from(i.chains_total))),
        i.copy_fidelity.map(|f| f.clamp(Decimal::ZERO, Decimal::ONE)),
    ];
    let components: Vec<Component> = WEIGHTS
        .iter()
        .zip(values)
        .map(|((name, weight), value)| Component {
            name: (*name).to_string(),
            weight: *weight,
            value: value.map(|v| v.round_dp(4).normalize()),
        })
        .collect();
    if i.n_trades == 0 {
        return TrustScore { score: 0, components };
    }
    let (mut sum, mut weights) = (Decimal::ZERO, Decimal::ZERO);
    for ((_, weight), value) in WEIGHTS.iter().zip(values) {
        if let Some(v) = value {
            sum += Decimal::from(*weight) * v;
            weights += Decimal::from(*weight);
        }
    }
    let score = (Decimal::ONE_HUNDRED * share(sum, weights))
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    let score = u8::try_from(score.mantissa() / 10i128.pow(score.scale())).unwrap_or(0);
    TrustScore { score: score.min(100), components }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn inputs(days: i64, dd: &str, pos: u64, months: u64, cont: u64, chains: u64) -> TrustInputs {
        TrustInputs {
            n_trades: 10,
            track_days: days,
            max_drawdown_r: d(dd),
            months_positive: pos,
            months_total: months,
            chains_continuous: cont,
            chains_total: chains,
            copy_fidelity: None,
        }
    }

    #[test]
    fn the_formula_by_table() {
        // (inputs, score): Σ weight × value ÷ 90 (fidelity n/a), × 100, rounded half away.
        let table = [
            // Perfect: 1, 1, 1, 1 → 100.
            (inputs(400, "0", 12, 12, 1, 1), 100),
            // Half a year (182/365), 5 R drawdown (0.75), 4 of 6 months, one chain of two broken:
            // 25×0.49863… + 25×0.75 + 25×0.6666… + 15×0.5 = 55.382… ÷ 90 → 61.53… → 62.
            (inputs(182, "5", 4, 6, 1, 2), 62),
            // Fresh, deep drawdown, no positive month: only continuity (15/90) → 16.67 → 17.
            (inputs(0, "25", 0, 1, 1, 1), 17),
            // 73 days (0.2), 10 R (0.5), 1 of 2 (0.5), 1/1: 5 + 12.5 + 12.5 + 15 = 45 / 90 → 50.
            (inputs(73, "10", 1, 2, 1, 1), 50),
        ];
        for (i, want) in table {
            assert_eq!(score(&i).score, want, "{i:?}");
        }
    }

    #[test]
    fn copy_fidelity_counts_when_known_and_nothing_scores_without_trades() {
        let mut i = inputs(73, "10", 1, 2, 1, 1);
        i.copy_fidelity = Some(d("1"));
        // (45 + 10) / 100 → 55.
        assert_eq!(score(&i).score, 55);
        i.copy_fidelity = Some(d("7"));
        assert_eq!(score(&i).score, 55, "clamped to 1");
        let s = score(&TrustInputs { n_trades: 0, ..inputs(400, "0", 0, 0, 0, 0) });
        assert_eq!(s.score, 0);
        assert_eq!(s.components.len(), 5);
        assert_eq!(s.components[4].value, None);
        assert_eq!(s.components[0].value, Some(d("1")));
        // Extremes never panic.
        let wild = TrustInputs {
            track_days: i64::MIN,
            max_drawdown_r: Decimal::MIN,
            ..inputs(0, "0", u64::MAX, 1, u64::MAX, 0)
        };
        assert!(score(&wild).score <= 100);
    }
}

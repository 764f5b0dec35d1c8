//! Copy fidelity: how the provider's signals were copied by its subscribers' nodes, from the
//! records those nodes signed on their shared streams (an `Approval` per signal they decided,
//! an `Execution` per order they sent). Pure: the rows in, the figures out.
//!
//! Definitions (the page states them):
//! - a *delivery* is one signal expected at one subscriber device (the provider's own devices
//!   are not subscribers);
//! - *filled*: the device reported a fill; *declined*: its trader or its rules rejected the signal,
//!   or nobody decided before it expired; *no answer*: the device reported nothing (yet);
//! - *latency*: from the hub's receipt of the signal to the device's fill, in ms (p50 and p90
//!   over fills);
//! - *slippage*: the fill price against the signal's entry, in pips, positive when it is worse for
//!   the trader (a buy filled higher, a sell lower); symbols without a known pip size count in
//!   price units are left out of the pips figures.
//!
//! Every figure is a count or a quantile of what the devices signed: nothing is estimated.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One delivery: a signal and what one subscriber device reported of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The signal's symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// The signal's entry.
    pub entry: Decimal,
    /// When the hub received the signal.
    pub received_at_ms: i64,
    /// The device's decision (`approved`, `rejected`, `expired`), if it reported one.
    pub decision: Option<String>,
    /// The fill's price, if it reported one.
    pub fill_price: Option<Decimal>,
    /// When it filled.
    pub filled_at_ms: Option<i64>,
}

/// The copy-fidelity figures of a provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CopyFidelity {
    /// Deliveries (signal × subscriber device).
    pub deliveries: u64,
    /// Filled.
    pub filled: u64,
    /// Rejected by the trader or the rules, or expired undecided.
    pub declined: u64,
    /// Approved but not (yet) reported filled.
    pub approved_unfilled: u64,
    /// Nothing reported.
    pub no_answer: u64,
    /// filled / deliveries, 4 decimals.
    #[schema(value_type = Option<String>)]
    pub fill_rate: Option<Decimal>,
    /// Receipt → fill, ms: median.
    pub latency_ms_p50: Option<i64>,
    /// Receipt → fill, ms: 90th percentile.
    pub latency_ms_p90: Option<i64>,
    /// Fills with a pip size known (the slippage figures' count).
    pub slippage_n: u64,
    /// Slippage in pips (positive: worse for the trader): median.
    #[schema(value_type = Option<String>)]
    pub slippage_pips_p50: Option<Decimal>,
    /// Slippage in pips: 90th percentile.
    #[schema(value_type = Option<String>)]
    pub slippage_pips_p90: Option<Decimal>,
}

/// The nearest-rank quantile `q` (0–1) of sorted `values`.
fn quantile<T: Copy>(sorted: &[T], q: Decimal) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * Decimal::from(sorted.len())).ceil().to_usize().unwrap_or(1).max(1);
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// The figures of `deliveries`.
pub fn copy_fidelity(deliveries: &[Delivery]) -> CopyFidelity {
    let mut f = CopyFidelity { deliveries: deliveries.len() as u64, ..CopyFidelity::default() };
    let mut latencies = Vec::new();
    let mut slippages = Vec::new();
    for d in deliveries {
        match (&d.fill_price, d.decision.as_deref()) {
            (Some(price), _) => {
                f.filled += 1;
                if let Some(at) = d.filled_at_ms {
                    latencies.push(at.saturating_sub(d.received_at_ms).max(0));
                }
                if let Some(pip) = tradecast_protocol::track::pip_size(&d.symbol) {
                    let moved = if d.side == "sell" { d.entry - price } else { price - d.entry };
                    if let Some(pips) = moved.checked_div(pip) {
                        slippages.push(pips.round_dp(1));
                    }
                }
            }
            (None, Some("rejected" | "expired")) => f.declined += 1,
            (None, Some(_)) => f.approved_unfilled += 1,
            (None, None) => f.no_answer += 1,
        }
    }
    latencies.sort_unstable();
    slippages.sort_unstable();
    f.fill_rate = (f.deliveries > 0)
        .then(|| (Decimal::from(f.filled) / Decimal::from(f.deliveries)).round_dp(4).normalize());
    f.latency_ms_p50 = quantile(&latencies, Decimal::new(5, 1));
    f.latency_ms_p90 = quantile(&latencies, Decimal::new(9, 1));
    f.slippage_n = slippages.len() as u64;
    f.slippage_pips_p50 = quantile(&slippages, Decimal::new(5, 1));
    f.slippage_pips_p90 = quantile(&slippages, Decimal::new(9, 1));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn delivery(side: &str, decision: Option<&str>, fill: Option<(&str, i64)>) -> Delivery {
        Delivery {
            symbol: "EURUSD".into(),
            side: side.into(),
            entry: d("1.10000"),
            received_at_ms: 1_000,
            decision: decision.map(str::to_owned),
            fill_price: fill.map(|(p, _)| d(p)),
            filled_at_ms: fill.map(|(_, at)| at),
        }
    }

    #[test]
    fn counts_latency_and_slippage_by_hand() {
        let rows = vec![
            // A buy filled 0.2 pip worse after 150 ms; one 0.5 pip better after 400 ms.
            delivery("buy", Some("approved"), Some(("1.10002", 1_150))),
            delivery("buy", Some("approved"), Some(("1.09995", 1_400))),
            // A sell filled 1.0 pip worse (lower) after 250 ms.
            delivery("sell", Some("approved"), Some(("1.09990", 1_250))),
            delivery("buy", Some("rejected"), None),
            delivery("buy", Some("expired"), None),
            delivery("sell", Some("approved"), None),
            delivery("sell", None, None),
            // A symbol without a pip size: a fill, latency counted, no pips.
            Delivery {
                symbol: "XAUUSD.m".into(),
                ..delivery("buy", Some("approved"), Some(("1.2", 2_000)))
            },
        ];
        let f = copy_fidelity(&rows);
        assert_eq!(
            (f.deliveries, f.filled, f.declined, f.approved_unfilled, f.no_answer),
            (8, 4, 2, 1, 1)
        );
        assert_eq!(f.fill_rate, Some(d("0.5")));
        // Latencies 150, 250, 400, 1000: p50 = 2nd = 250, p90 = 4th = 1000.
        assert_eq!((f.latency_ms_p50, f.latency_ms_p90), (Some(250), Some(1_000)));
        // Slippages −0.5, 0.2, 1.0 pips: p50 = 2nd = 0.2, p90 = 3rd = 1.0.
        assert_eq!(f.slippage_n, 3);
        assert_eq!((f.slippage_pips_p50, f.slippage_pips_p90), (Some(d("0.2")), Some(d("1.0"))));
    }

    #[test]
    fn nothing_delivered_has_no_rates() {
        let f = copy_fidelity(&[]);
        assert_eq!(f, CopyFidelity::default());
    }
}

//! The one intrabar rule (fib-rsi.md, Trades) shared by the backtest and the simulated terminal:
//! a bar whose range touches both the stop and the target hits the stop first.
//!
//! Pure and generic over the price type (`f64` in the backtest, `Decimal` in the simulated
//! terminal), so both follow a position with the very same code.
//!
//! # Public API
//!
//! - [`intrabar_exit`]`(side, &range, stop, target) -> Option<Exit>`: does this bar close a
//!   position, how and at what price. The rule, in full:
//!   - the stop is touched when the bar's low ≤ stop (buy) or high ≥ stop (sell); the target when
//!     high ≥ target (buy) or low ≤ target (sell); touching includes equality;
//!   - when both are touched the stop wins (we cannot know the order inside a bar, so we assume
//!     the worse one);
//!   - a stop fills at the stop price, or at the bar's open when the bar opened beyond it (a gap:
//!     the position is closed at the first price there is); a target fills at the target, or at
//!     the open when the bar opened beyond it (MT5 closes at market when the level is crossed).
//! - [`BarRange`]: the `open`, `high`, `low` at which the position would close during the bar:
//!   bid prices for a buy, ask prices (bid + spread) for a sell. The caller shifts; the rule does
//!   not know about spreads.
//! - [`OpenTrade`]: one signal's position(s) followed bar by bar with [`OpenTrade::on_bar`], from
//!   the bar after the signal. [`Split::Whole`] is one position with its stop and tp1;
//!   [`Split::Halves`] is two halves, one with tp1 and one with tp2, the second's stop moved to the
//!   entry once tp1 is hit. The break-even stop is in force from the bar after the tp1 bar: inside
//!   the tp1 bar the second half keeps its original stop (which that bar did not touch, or the
//!   stop rule would have closed both halves), so it may also reach tp2 in that bar.

/// Which way a position faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// `"buy"` or `"sell"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// The prices at which a position closes during one bar: bid for a buy, ask for a sell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarRange<P> {
    pub open: P,
    pub high: P,
    pub low: P,
}

/// Why a position (or a part of it) closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The original stop.
    Stop,
    /// The target (tp1 for a whole position or the first half, tp2 for the second half).
    Target,
    /// The second half's stop after it was moved to the entry.
    BreakEven,
}

/// A close decided by [`intrabar_exit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exit<P> {
    /// [`ExitReason::Stop`] or [`ExitReason::Target`].
    pub reason: ExitReason,
    /// The fill price: the level, or the bar's open when the bar opened beyond it.
    pub price: P,
}

/// Whether the bar reached a `side` position's stop (equality touches).
fn stop_touched<P: PartialOrd>(side: Side, range: &BarRange<P>, stop: &P) -> bool {
    match side {
        Side::Buy => range.low <= *stop,
        Side::Sell => range.high >= *stop,
    }
}

fn target_touched<P: PartialOrd>(side: Side, range: &BarRange<P>, target: &P) -> bool {
    match side {
        Side::Buy => range.high >= *target,
        Side::Sell => range.low <= *target,
    }
}

/// The one intrabar rule: whether this bar closes a `side` position with `stop` and optional
/// `target`, and at what price. See the module comment for the rule in full.
pub fn intrabar_exit<P: Copy + PartialOrd>(
    side: Side,
    range: &BarRange<P>,
    stop: P,
    target: Option<P>,
) -> Option<Exit<P>> {
    if stop_touched(side, range, &stop) {
        let gapped = match side {
            Side::Buy => range.open <= stop,
            Side::Sell => range.open >= stop,
        };
        let price = if gapped { range.open } else { stop };
        return Some(Exit { reason: ExitReason::Stop, price });
    }
    let target = target?;
    if target_touched(side, range, &target) {
        let gapped = match side {
            Side::Buy => range.open >= target,
            Side::Sell => range.open <= target,
        };
        let price = if gapped { range.open } else { target };
        return Some(Exit { reason: ExitReason::Target, price });
    }
    None
}

/// How a signal becomes positions (fib-rsi.md, Trades).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// One position, stop and tp1 (the default).
    #[default]
    Whole,
    /// Two halves: tp1 and tp2; the second half's stop moves to the entry when tp1 is hit.
    Halves,
}

/// Which part of a trade an exit closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The whole position ([`Split::Whole`]), or both halves at once at the original stop.
    Whole,
    /// The tp1 half.
    First,
    /// The tp2 half.
    Second,
}

impl Part {
    /// The share of the trade's volume this part holds.
    pub fn fraction(self) -> f64 {
        match self {
            Part::Whole => 1.0,
            Part::First | Part::Second => 0.5,
        }
    }
}

/// One part of a trade closed on a bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartExit<P> {
    pub part: Part,
    pub reason: ExitReason,
    pub price: P,
}

/// The levels of one signal's trade, as the position(s) will carry them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TradePlan<P> {
    pub side: Side,
    /// The fill price of the entry (the ask for a buy, the bid for a sell).
    pub entry: P,
    pub stop: P,
    pub tp1: P,
    pub tp2: P,
    pub split: Split,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Everything open with the original stop.
    Open,
    /// Only the second half is left, its stop at the entry.
    SecondHalf,
    Closed,
}

/// One signal's trade followed bar by bar.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTrade<P> {
    plan: TradePlan<P>,
    state: State,
}

/// What one bar did to a trade: at most two parts close on one bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step<P> {
    exits: [Option<PartExit<P>>; 2],
}

impl<P: Copy> Step<P> {
    fn none() -> Self {
        Self { exits: [None, None] }
    }
    fn one(e: PartExit<P>) -> Self {
        Self { exits: [Some(e), None] }
    }

    /// The parts closed on this bar, in the order they closed.
    pub fn exits(&self) -> impl Iterator<Item = PartExit<P>> + '_ {
        self.exits.iter().flatten().copied()
    }

    /// Whether nothing closed on this bar.
    pub fn is_empty(&self) -> bool {
        self.exits[0].is_none()
    }
}

impl<P: Copy + PartialOrd> OpenTrade<P> {
    /// A trade just opened at `plan.entry`, to be fed bars from the next one on.
    pub fn new(plan: TradePlan<P>) -> Self {
        Self { plan, state: State::Open }
    }

    /// The plan this trade follows.
    pub fn plan(&self) -> &TradePlan<P> {
        &self.plan
    }

    /// Whether every part has closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The stop the remaining position(s) carry now (the entry once the break-even stop is armed),
    /// or `None` when closed.
    pub fn current_stop(&self) -> Option<P> {
        match self.state {
            State::Open => Some(self.plan.stop),
            State::SecondHalf => Some(self.plan.entry),
            State::Closed => None,
        }
    }

    /// Follows the trade through one closed bar (`range` in the closing side's prices).
    pub fn on_bar(&mut self, range: &BarRange<P>) -> Step<P> {
        let p = self.plan;
        match (self.state, p.split) {
            (State::Closed, _) => Step::none(),
            (State::Open, Split::Whole) => {
                match intrabar_exit(p.side, range, p.stop, Some(p.tp1)) {
                    Some(e) => {
                        self.state = State::Closed;
                        Step::one(PartExit { part: Part::Whole, reason: e.reason, price: e.price })
                    }
                    None => Step::none(),
                }
            }
            (State::Open, Split::Halves) => match intrabar_exit(p.side, range, p.stop, Some(p.tp1))
            {
                None => Step::none(),
                Some(e) if e.reason == ExitReason::Stop => {
                    self.state = State::Closed;
                    Step::one(PartExit { part: Part::Whole, reason: e.reason, price: e.price })
                }
                Some(first) => {
                    let first =
                        PartExit { part: Part::First, reason: first.reason, price: first.price };
                    // The original stop was not touched (the rule above), so only tp2 can close
                    // the second half in this bar.
                    match intrabar_exit(p.side, range, p.stop, Some(p.tp2)) {
                        Some(second) => {
                            self.state = State::Closed;
                            let second = PartExit {
                                part: Part::Second,
                                reason: second.reason,
                                price: second.price,
                            };
                            Step { exits: [Some(first), Some(second)] }
                        }
                        None => {
                            self.state = State::SecondHalf;
                            Step::one(first)
                        }
                    }
                }
            },
            (State::SecondHalf, _) => match intrabar_exit(p.side, range, p.entry, Some(p.tp2)) {
                Some(e) => {
                    self.state = State::Closed;
                    let reason = match e.reason {
                        ExitReason::Stop => ExitReason::BreakEven,
                        r => r,
                    };
                    Step::one(PartExit { part: Part::Second, reason, price: e.price })
                }
                None => Step::none(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn r(open: f64, high: f64, low: f64) -> BarRange<f64> {
        BarRange { open, high, low }
    }

    fn check(
        side: Side,
        range: BarRange<f64>,
        stop: f64,
        target: f64,
        expect: Option<(ExitReason, f64)>,
    ) {
        let got = intrabar_exit(side, &range, stop, Some(target)).map(|e| (e.reason, e.price));
        assert_eq!(got, expect, "{side:?} {range:?} stop {stop} target {target}");
    }

    #[test]
    fn the_intrabar_rule() {
        use ExitReason::*;
        use Side::*;
        // Buy, stop 1.0, target 2.0.
        check(Buy, r(1.5, 1.9, 1.1), 1.0, 2.0, None);
        check(Buy, r(1.5, 2.0, 1.1), 1.0, 2.0, Some((Target, 2.0)));
        check(Buy, r(1.5, 1.9, 1.0), 1.0, 2.0, Some((Stop, 1.0)));
        check(Buy, r(1.5, 2.5, 0.5), 1.0, 2.0, Some((Stop, 1.0)));
        check(Buy, r(0.8, 1.2, 0.7), 1.0, 2.0, Some((Stop, 0.8)));
        check(Buy, r(2.2, 2.5, 2.1), 1.0, 2.0, Some((Target, 2.2)));
        check(Buy, r(2.2, 2.5, 0.9), 1.0, 2.0, Some((Stop, 1.0)));
        // Sell, stop 2.0, target 1.0.
        check(Sell, r(1.5, 1.9, 1.1), 2.0, 1.0, None);
        check(Sell, r(1.5, 1.9, 1.0), 2.0, 1.0, Some((Target, 1.0)));
        check(Sell, r(1.5, 2.0, 1.1), 2.0, 1.0, Some((Stop, 2.0)));
        check(Sell, r(1.5, 2.5, 0.5), 2.0, 1.0, Some((Stop, 2.0)));
        check(Sell, r(2.3, 2.4, 1.9), 2.0, 1.0, Some((Stop, 2.3)));
        check(Sell, r(0.9, 1.2, 0.8), 2.0, 1.0, Some((Target, 0.9)));
    }

    #[test]
    fn no_target_means_only_the_stop() {
        assert_eq!(intrabar_exit(Side::Buy, &r(1.5, 9.0, 1.1), 1.0, None), None);
        let e = intrabar_exit(Side::Buy, &r(1.5, 9.0, 0.9), 1.0, None).map(|e| e.reason);
        assert_eq!(e, Some(ExitReason::Stop));
    }

    #[test]
    fn works_on_decimals() {
        let d = |s: &str| s.parse::<Decimal>().expect("literal");
        let range = BarRange { open: d("1.09100"), high: d("1.09179364"), low: d("1.0905") };
        let e = intrabar_exit(Side::Sell, &range, d("1.09179364"), Some(d("1.0880")));
        assert_eq!(e, Some(Exit { reason: ExitReason::Stop, price: d("1.09179364") }));
    }

    fn plan(split: Split) -> TradePlan<f64> {
        TradePlan { side: Side::Buy, entry: 1.5, stop: 1.0, tp1: 2.0, tp2: 2.5, split }
    }

    fn follow(plan: TradePlan<f64>, bars: &[BarRange<f64>]) -> Vec<(usize, Part, ExitReason, f64)> {
        let mut t = OpenTrade::new(plan);
        let mut out = Vec::new();
        for (i, b) in bars.iter().enumerate() {
            out.extend(t.on_bar(b).exits().map(|e| (i, e.part, e.reason, e.price)));
        }
        out
    }

    #[test]
    fn whole_position() {
        use ExitReason::*;
        let got =
            follow(plan(Split::Whole), &[r(1.5, 1.8, 1.2), r(1.6, 2.1, 1.4), r(1.5, 3.0, 0.0)]);
        assert_eq!(got, [(1, Part::Whole, Target, 2.0)]);
        let got = follow(plan(Split::Whole), &[r(1.5, 2.1, 0.9)]);
        assert_eq!(got, [(0, Part::Whole, Stop, 1.0)]);
    }

    #[test]
    fn halves_tp1_then_break_even() {
        use ExitReason::*;
        // tp1 on bar 0 (the bar also dips to the entry: break-even is not armed yet), then the
        // second half is stopped at the entry on bar 2.
        let bars = [r(1.6, 2.1, 1.4), r(2.0, 2.4, 1.6), r(1.7, 1.8, 1.3), r(1.5, 3.0, 0.5)];
        let got = follow(plan(Split::Halves), &bars);
        assert_eq!(got, [(0, Part::First, Target, 2.0), (2, Part::Second, BreakEven, 1.5)]);
    }

    #[test]
    fn halves_tp1_and_tp2_in_one_bar() {
        use ExitReason::*;
        let got = follow(plan(Split::Halves), &[r(1.6, 2.6, 1.4)]);
        assert_eq!(got, [(0, Part::First, Target, 2.0), (0, Part::Second, Target, 2.5)]);
    }

    #[test]
    fn halves_tp1_then_tp2_later() {
        use ExitReason::*;
        let got = follow(plan(Split::Halves), &[r(1.6, 2.1, 1.6), r(2.0, 2.6, 1.6)]);
        assert_eq!(got, [(0, Part::First, Target, 2.0), (1, Part::Second, Target, 2.5)]);
    }

    #[test]
    fn halves_stop_and_tp1_in_one_bar_closes_everything_at_the_stop() {
        use ExitReason::*;
        let got = follow(plan(Split::Halves), &[r(1.5, 2.6, 0.9)]);
        assert_eq!(got, [(0, Part::Whole, Stop, 1.0)]);
    }

    #[test]
    fn current_stop_moves_to_the_entry() {
        let mut t = OpenTrade::new(plan(Split::Halves));
        assert_eq!(t.current_stop(), Some(1.0));
        assert!(!t.on_bar(&r(1.6, 2.1, 1.6)).is_empty());
        assert_eq!(t.current_stop(), Some(1.5));
        assert!(!t.on_bar(&r(1.6, 1.7, 1.5)).is_empty());
        assert!(t.is_closed());
        assert_eq!(t.current_stop(), None);
    }
}

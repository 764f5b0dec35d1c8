//! MT5 in the node's terms: trade return codes in a trader's words, trading sessions (gaps,
//! the next open after a 10018), the symbol specs and tick values a state push carries, and the
//! EA's side in domain terms.

use std::collections::HashMap;

use rust_decimal::Decimal;
use tradecast_protocol::ea::{self, State};

use super::rows::AccountRow;
/// Why a deal happened in the stable snake-case spelling of the EA link (`"sl"`, `"stop_out"`):
/// the reason of a signed `Close` record, never a `Debug` text that a rename would change.
pub fn deal_reason_name(reason: ea::DealReason) -> &'static str {
    use ea::DealReason::*;
    match reason {
        Client => "client",
        Mobile => "mobile",
        Web => "web",
        Expert => "expert",
        Sl => "sl",
        Tp => "tp",
        StopOut => "stop_out",
        Rollover => "rollover",
        Vmargin => "vmargin",
        Split => "split",
        Other => "other",
    }
}

/// A close refused with 10018 (market closed) is offered again after this much market time.
const MARKET_CLOSED_RETRY_MS: i64 = 60_000;

/// How old (market clock) a subscribed symbol's tick value may be before the node asks the EA
/// for its spec again: tick values of cross pairs move with the rate.
const TICK_VALUE_REFRESH_MS: i64 = 5 * 60 * 1_000;

/// Takes the tick values of a state push into the account row: a spec's (the caller stores the
/// spec itself, replacing the hello's) is a current tick value, a tick value is kept with the
/// market time it came.
pub(super) fn merge_tick_values(acc: &mut AccountRow, s: &State, market_ms: i64) {
    for spec in &s.specs {
        let tv = ea::TickValue {
            symbol: spec.symbol.clone(),
            tick_value_profit: spec.tick_value_profit,
            tick_value_loss: spec.tick_value_loss,
        };
        acc.tick_values.insert(spec.symbol.clone(), (market_ms, tv));
    }
    for tv in &s.tick_values {
        // A zero or negative tick value cannot size anything: the spec's stays in use.
        if tv.tick_value_loss > Decimal::ZERO {
            acc.tick_values.insert(tv.symbol.clone(), (market_ms, tv.clone()));
        }
    }
}

/// A `RequestSpec` for the subscribed broker symbols (the ones the node has quotes for, so the
/// ones it can trade) quoted in another currency than the account's (their tick value moves with
/// a rate) whose tick value is missing or older than [`TICK_VALUE_REFRESH_MS`] on the market
/// clock and not asked for within that time: their next state push carries the broker's current
/// values. `specs` are the account's specs of (at least) the subscribed symbols.
pub(super) fn request_stale_specs(
    acc: &AccountRow,
    specs: &[ea::SymbolSpec],
    market_ms: i64,
    subscriptions: &[(String, ea::Timeframe)],
    asked_ms: &mut HashMap<String, i64>,
) -> Option<ea::Command> {
    let old = |at: i64| market_ms.saturating_sub(at) >= TICK_VALUE_REFRESH_MS;
    let mut symbols: Vec<String> = Vec::new();
    for (sym, _) in subscriptions {
        // A symbol whose profit currency is the account's has a fixed tick value: no need.
        let known = specs.iter().any(|x| &x.symbol == sym && x.currency_profit != acc.currency);
        let stale = acc.tick_values.get(sym).is_none_or(|(at, _)| old(*at));
        let asked = asked_ms.get(sym).is_some_and(|at| !old(*at));
        if known && stale && !asked && !symbols.contains(sym) {
            symbols.push(sym.clone());
        }
    }
    for sym in &symbols {
        asked_ms.insert(sym.clone(), market_ms);
    }
    (!symbols.is_empty()).then_some(ea::Command::RequestSpec { symbols })
}

pub(super) fn sessions_of(symbols: &[ea::SymbolSpec], symbol: &str) -> Vec<ea::Session> {
    symbols.iter().find(|s| s.symbol == symbol).map(|s| s.sessions.clone()).unwrap_or_default()
}

/// Whether a bar could have been missed between `from_ms` (inclusive) and `to_ms` (exclusive):
/// some bar open time in the range falls in a trading session. Without sessions every gap
/// counts; a weekend or a holiday the sessions know is no gap.
pub fn gap_in_session(sessions: &[ea::Session], from_ms: i64, to_ms: i64, tf_ms: i64) -> bool {
    if sessions.is_empty() {
        return true;
    }
    let mut t = from_ms;
    let mut n = 0;
    while t < to_ms && n < 10_000 {
        if sessions.iter().any(|s| s.contains(t)) {
            return true;
        }
        t = t.saturating_add(tf_ms.max(60_000));
        n += 1;
    }
    // A gap too long to walk is asked for.
    n >= 10_000
}

/// When a market closed at `market_ms` opens again: the next session start in the symbol's UTC
/// week, or a minute later when the broker reported no sessions (or says it is open now, a
/// holiday the sessions do not know).
pub fn next_open(sessions: &[ea::Session], market_ms: i64) -> i64 {
    let ws = i64::from(ea::week_second(market_ms));
    let open_now = sessions.iter().any(|s| s.contains(market_ms));
    let next = sessions
        .iter()
        .map(|s| {
            let from = i64::from(s.from_week_s);
            if from > ws { from - ws } else { from + i64::from(ea::WEEK_S) - ws }
        })
        .min();
    match next {
        Some(wait_s) if !open_now => market_ms - market_ms.rem_euclid(1_000) + wait_s * 1_000,
        _ => market_ms + MARKET_CLOSED_RETRY_MS,
    }
}

/// MT5 trade return codes in words a trader understands.
pub fn explain_retcode(retcode: u32) -> &'static str {
    match retcode {
        0 => "no answer from the trade server",
        10004 => "requote: the price changed before the order was filled",
        10006 => "the broker rejected the order",
        10007 => "the order was cancelled",
        10008 => "the order was placed",
        10009 => "done: the order was filled",
        10010 => "only part of the order was filled",
        10011 => "the trade server could not process the request",
        10012 => "the request timed out: whether it was filled is not known yet",
        10013 => "the request was invalid",
        10014 => "the volume is not allowed for this symbol",
        10015 => "the price is not valid",
        10016 => "the stop loss or take profit is too close to the price or invalid",
        10017 => "trading is disabled for this account or symbol",
        10018 => "the market is closed",
        10019 => "not enough money to open the position",
        10020 => "prices changed",
        10021 => "no quotes to process the request",
        10024 => "too many requests",
        10026 => "auto trading is disabled on the server",
        10027 => "auto trading is disabled in the terminal (the Algo Trading button)",
        10030 => "the fill type is not supported by the broker",
        10031 => "no connection to the trade server: whether it was filled is not known yet",
        10033 => "the limit of pending orders is reached",
        10034 => "the volume limit for this symbol is reached",
        10036 => "the position is already closed",
        10038 => "the close volume is larger than the position",
        _ => "the terminal reported an unlisted error",
    }
}

pub(super) fn domain_side(s: ea::Side) -> tradecast_protocol::Side {
    match s {
        ea::Side::Buy => tradecast_protocol::Side::Buy,
        ea::Side::Sell => tradecast_protocol::Side::Sell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Close` record's reason is the EA link's own spelling of the deal reason.
    #[test]
    fn deal_reasons_are_named_as_the_ea_link_spells_them() {
        use ea::DealReason::*;
        for r in [Client, Mobile, Web, Expert, Sl, Tp, StopOut, Rollover, Vmargin, Split, Other] {
            let wire = serde_json::to_value(r).expect("serializes");
            assert_eq!(Some(deal_reason_name(r)), wire.as_str(), "{r:?}");
        }
        assert_eq!(deal_reason_name(StopOut), "stop_out");
    }
}

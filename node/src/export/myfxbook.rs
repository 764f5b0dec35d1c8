//! The closed trades as Myfxbook exports them (its first fifteen columns), the CSV layout that
//! trading journals (TraderSync, Edgewonk, Tradervue, tradejourney, …) import as "Myfxbook
//! CSV".
//!
//! - Dates `MM/DD/YYYY HH:MM` in the broker's server time, as MT5 shows them: the deal's UTC
//!   time plus the server's offset at the EA's last hello.
//! - Numbers are the exact decimals MT5 reported, `.` as the decimal point, no grouping. MT5's
//!   `DEAL_FEE` has no column of its own: it is added to Commission, so Profit + Commission +
//!   Swap is what the trade moved the balance by.
//! - Pips from the symbol's digits in the broker's spec: 5 and 3 digits, a pip is 10 points; 4
//!   and 2 digits, one point; anything else (indices, crypto) or a symbol without a spec leaves
//!   the field empty rather than guess.
//! - Gain: the trade's net result as a percentage of the balance before its close
//!   ([`super::gain`]), empty when the node cannot tell that balance.
//! - RFC 4180: CRLF line ends, a field quoted when it holds `,`, `"` or a line break. The
//!   symbol, the only text a broker chooses, is prefixed with `'` when it begins with `=`, `+`,
//!   `-`, `@`, a tab or a carriage return, so no spreadsheet reads it as a formula.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::{Decimal, RoundingStrategy};
use tradecast_protocol::Side;

use super::gain::gain_pct;
use super::{Account, ClosedTrade};

/// The header row, exactly as Myfxbook writes its first fifteen columns.
pub const HEADER: &str = "Open Date,Close Date,Symbol,Action,Lots,SL,TP,Open Price,Close Price,\
Commission,Swap,Pips,Profit,Gain,Duration (DD:HH:MM:SS)";

/// The file: the header and one row per trade, each line ended by CRLF.
pub fn write(trades: &[ClosedTrade], account: &Account, digits: &BTreeMap<String, u32>) -> String {
    let mut out = String::with_capacity(trades.len().saturating_add(1).saturating_mul(128));
    out.push_str(HEADER);
    out.push_str("\r\n");
    for t in trades {
        out.push_str(&row(t, account, digits.get(&t.symbol).copied()));
        out.push_str("\r\n");
    }
    out
}

/// One trade's row (no line end).
fn row(t: &ClosedTrade, account: &Account, digits: Option<u32>) -> String {
    let opt = |v: Option<Decimal>| v.map(|v| v.to_string()).unwrap_or_default();
    let commission = t.commission.checked_add(t.fee);
    let fields = [
        server_time(t.open_time_ms, account.server_utc_offset_s),
        server_time(t.close_time_ms, account.server_utc_offset_s),
        field(&t.symbol).into_owned(),
        action(t.side).to_owned(),
        t.lots.to_string(),
        opt(t.sl),
        opt(t.tp),
        t.open_price.to_string(),
        t.close_price.to_string(),
        opt(commission),
        t.swap.to_string(),
        pips(t, digits).map(|p| format!("{p:.1}")).unwrap_or_default(),
        t.profit.to_string(),
        gain_pct(t).map(|g| format!("{g:.2}")).unwrap_or_default(),
        duration(t.close_time_ms.saturating_sub(t.open_time_ms)),
    ];
    fields.join(",")
}

/// `Buy` or `Sell`.
fn action(side: Side) -> &'static str {
    match side {
        Side::Buy => "Buy",
        Side::Sell => "Sell",
    }
}

/// `ms` (UTC) as `MM/DD/YYYY HH:MM` in the broker's server time; empty when out of range.
pub fn server_time(ms: i64, offset_s: i32) -> String {
    let (Ok(ts), Ok(offset)) =
        (jiff::Timestamp::from_millisecond(ms), jiff::tz::Offset::from_seconds(offset_s))
    else {
        return String::new();
    };
    offset.to_datetime(ts).strftime("%m/%d/%Y %H:%M").to_string()
}

/// The size of a pip for a symbol quoted with `digits` decimals, if the convention is known.
pub fn pip_size(digits: u32) -> Option<Decimal> {
    match digits {
        5 | 3 => Some(Decimal::new(1, digits - 1)),
        4 | 2 => Some(Decimal::new(1, digits)),
        _ => None,
    }
}

/// The pips the trade made (positive in its favour), to one decimal; `None` without a known
/// pip size.
pub fn pips(t: &ClosedTrade, digits: Option<u32>) -> Option<Decimal> {
    let pip = pip_size(digits?)?;
    let moved = match t.side {
        Side::Buy => t.close_price.checked_sub(t.open_price)?,
        Side::Sell => t.open_price.checked_sub(t.close_price)?,
    };
    Some(moved.checked_div(pip)?.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero))
}

/// A hold time as `DD:HH:MM:SS` (days grow past two digits; a negative span is zero).
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1_000;
    let mut out = String::new();
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}:{:02}",
        s / 86_400,
        s % 86_400 / 3_600,
        s % 3_600 / 60,
        s % 60
    );
    out
}

/// A text field as RFC 4180 wants it, safe from spreadsheet formulas: a leading `=`, `+`, `-`,
/// `@`, tab or carriage return gets a `'` before it; a field holding `,`, `"`, CR or LF is
/// quoted, its quotes doubled.
pub fn field(text: &str) -> Cow<'_, str> {
    let guarded: Cow<'_, str> = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    };
    if guarded.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", guarded.replace('"', "\"\"")))
    } else {
        guarded
    }
}

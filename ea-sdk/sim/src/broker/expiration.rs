//! A pending order's lifetime (MT5 `ENUM_ORDER_TYPE_TIME`) and the symbol's allowed modes
//! (`SYMBOL_EXPIRATION_MODE` flags): what the broker accepts (10022 otherwise, when it checks)
//! and when an accepted order expires.

use super::DAY_S;

/// `SYMBOL_EXPIRATION_GTC`: good till cancelled allowed.
pub const SYMBOL_EXPIRATION_GTC: u32 = 1;
/// `SYMBOL_EXPIRATION_DAY`: good for the current server day allowed.
pub const SYMBOL_EXPIRATION_DAY: u32 = 2;
/// `SYMBOL_EXPIRATION_SPECIFIED`: an expiry time in the order allowed.
pub const SYMBOL_EXPIRATION_SPECIFIED: u32 = 4;
/// `SYMBOL_EXPIRATION_SPECIFIED_DAY`: an expiry day in the order allowed.
pub const SYMBOL_EXPIRATION_SPECIFIED_DAY: u32 = 8;
/// Every mode (most forex symbols).
pub const SYMBOL_EXPIRATION_ALL: u32 = SYMBOL_EXPIRATION_GTC
    | SYMBOL_EXPIRATION_DAY
    | SYMBOL_EXPIRATION_SPECIFIED
    | SYMBOL_EXPIRATION_SPECIFIED_DAY;

/// A pending order's lifetime (`MqlTradeRequest.type_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TypeTime {
    /// `ORDER_TIME_GTC`: until cancelled.
    #[default]
    Gtc,
    /// `ORDER_TIME_DAY`: until the end of the current server day.
    Day,
    /// `ORDER_TIME_SPECIFIED`: until `expiration`.
    Specified,
    /// `ORDER_TIME_SPECIFIED_DAY`: until the end of `expiration`'s server day.
    SpecifiedDay,
}

impl TypeTime {
    /// The `SYMBOL_EXPIRATION_MODE` flag that allows it.
    pub fn flag(self) -> u32 {
        match self {
            TypeTime::Gtc => SYMBOL_EXPIRATION_GTC,
            TypeTime::Day => SYMBOL_EXPIRATION_DAY,
            TypeTime::Specified => SYMBOL_EXPIRATION_SPECIFIED,
            TypeTime::SpecifiedDay => SYMBOL_EXPIRATION_SPECIFIED_DAY,
        }
    }
}

/// The end (UTC ms, exclusive) of the server day holding `utc_ms`, for a server `offset_s`
/// seconds ahead of UTC.
pub fn end_of_server_day(utc_ms: i64, offset_s: i32) -> i64 {
    let server_s = utc_ms.div_euclid(1_000) + i64::from(offset_s);
    let next_day_s = (server_s.div_euclid(DAY_S) + 1) * DAY_S;
    (next_day_s - i64::from(offset_s)) * 1_000
}

/// When an order placed at `now_ms` with `type_time` and `expiration_ms` expires (None: never),
/// or `Err(())` when MT5 refuses the request with 10022: a mode outside the symbol's `modes`
/// (when `check` is on), a specified expiry missing or not in the future.
pub fn effective_expiration(
    type_time: TypeTime,
    expiration_ms: Option<i64>,
    modes: u32,
    check: bool,
    now_ms: i64,
    offset_s: i32,
) -> Result<Option<i64>, ()> {
    if check && modes & type_time.flag() == 0 {
        return Err(());
    }
    match type_time {
        TypeTime::Gtc => Ok(None),
        TypeTime::Day => Ok(Some(end_of_server_day(now_ms, offset_s))),
        TypeTime::Specified => match expiration_ms {
            Some(e) if e > now_ms => Ok(Some(e)),
            _ => Err(()),
        },
        TypeTime::SpecifiedDay => match expiration_ms {
            Some(e) if end_of_server_day(e, offset_s) > now_ms => {
                Ok(Some(end_of_server_day(e, offset_s)))
            }
            _ => Err(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2017-04-24 10:00 UTC; the server at UTC+3 is at 13:00.
    const MONDAY_10: i64 = 1_493_028_000_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn each_mode_expires_when_mt5_says_and_a_mode_not_allowed_is_10022() {
        // The server day ends at 24:00 server time = 21:00 UTC.
        let end = MONDAY_10 + 11 * HOUR;
        assert_eq!(end_of_server_day(MONDAY_10, 10_800), end);
        let exp = Some(MONDAY_10 + 2 * HOUR);
        let e = |t, m, c| effective_expiration(t, exp, m, c, MONDAY_10, 10_800);
        let all = SYMBOL_EXPIRATION_ALL;
        assert_eq!(e(TypeTime::Gtc, all, true), Ok(None));
        assert_eq!(e(TypeTime::Day, all, true), Ok(Some(end)));
        assert_eq!(e(TypeTime::Specified, all, true), Ok(exp));
        assert_eq!(e(TypeTime::SpecifiedDay, all, true), Ok(Some(end)));
        let gtc_day = SYMBOL_EXPIRATION_GTC | SYMBOL_EXPIRATION_DAY;
        assert_eq!(e(TypeTime::Specified, gtc_day, true), Err(()));
        assert_eq!(e(TypeTime::SpecifiedDay, gtc_day, true), Err(()));
        assert_eq!(e(TypeTime::Day, gtc_day, true), Ok(Some(end)));
        // Not checked: any mode is taken (the default simulation).
        assert_eq!(e(TypeTime::Specified, gtc_day, false), Ok(exp));
        // A specified expiry in the past, or none, is 10022 whatever the flags.
        let past =
            effective_expiration(TypeTime::Specified, Some(MONDAY_10), all, true, MONDAY_10, 0);
        assert_eq!(past, Err(()));
        assert_eq!(
            effective_expiration(TypeTime::Specified, None, all, false, MONDAY_10, 0),
            Err(())
        );
    }
}

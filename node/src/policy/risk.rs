//! Account-level gates before a new position: the drawdown lock, the daily loss limit on the
//! broker's server day, and the number of open positions (in total and per symbol).
//!
//! The server day is the broker's calendar day in server time (UTC plus the offset the EA sends
//! at hello), the day MT5's daily statistics use; its start comes from [`server_day_start_ms`]
//! on the market clock, never the wall clock.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The account-level limits (part of [`super::PolicySettings`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskSettings {
    /// Most positions Tradecast holds at once on the account. Default 5.
    pub max_open_positions: u32,
    /// Most positions Tradecast holds at once on one broker symbol. Default 1.
    pub max_open_per_symbol: u32,
    /// No new position once the server day's loss reaches this percent of the equity at the
    /// day's start. Default `"5"`; `"0"` switches it off (a missing key means the default, so
    /// off is a value, not an absence).
    pub daily_loss_limit_pct: Decimal,
    /// The same limit in account currency. Default none (no money limit). Both may be set; the
    /// first reached wins.
    pub daily_loss_limit_money: Option<Decimal>,
    /// No new position while equity is this percent or more below its peak (deposits and
    /// withdrawals adjusted by the drawdown guard). Default `"20"`, the guard's cap.
    pub drawdown_lock_pct: Decimal,
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            max_open_positions: 5,
            max_open_per_symbol: 1,
            daily_loss_limit_pct: Decimal::from(5),
            daily_loss_limit_money: None,
            drawdown_lock_pct: Decimal::from(20),
        }
    }
}

/// The equity at the start of one server day, as the node recorded it at the first state push
/// of that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStart {
    /// [`server_day_start_ms`] of that day.
    pub day_start_ms: i64,
    pub equity: Decimal,
}

impl DayStart {
    /// The day start to keep after a state push at `now_ms` with `equity`: `current` if it is
    /// today's (server day, [`DayStart::is_day_of`]), else a new one with this equity. The node
    /// calls it on every state push (the drawdown guard) and stores the result; after a restart
    /// mid-day the first equity seen that day stands in for the day's opening equity (losses
    /// before it are not counted).
    pub fn roll(
        current: Option<DayStart>,
        now_ms: i64,
        server_utc_offset_s: i32,
        equity: Decimal,
    ) -> DayStart {
        match current {
            Some(c) if c.is_day_of(now_ms, server_utc_offset_s) => c,
            _ => {
                DayStart { day_start_ms: server_day_start_ms(now_ms, server_utc_offset_s), equity }
            }
        }
    }

    /// Whether this is the start of the server day containing `now_ms`. A change of the
    /// broker's UTC offset (daylight saving time) moves server midnight by an hour or two, not
    /// by a day: a start within [`DST_SLACK_MS`] of today's is today's, so a DST change keeps
    /// the day's losses counted instead of starting the day again.
    pub fn is_day_of(&self, now_ms: i64, server_utc_offset_s: i32) -> bool {
        let today = server_day_start_ms(now_ms, server_utc_offset_s);
        self.day_start_ms.saturating_sub(today).saturating_abs() < DST_SLACK_MS
    }
}

/// How far server midnight may move when the broker changes its UTC offset and still be the
/// same server day (offsets differ by at most a few hours; days by 24).
pub const DST_SLACK_MS: i64 = 6 * 3_600_000;

/// The account figures the gates read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRisk {
    pub equity: Decimal,
    /// Peak equity, adjusted for deposits and withdrawals (the drawdown guard's).
    pub peak_equity: Decimal,
    pub day_start: Option<DayStart>,
    pub now_ms: i64,
    pub server_utc_offset_s: i32,
}

/// Why a gate closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RiskStop {
    Drawdown { equity: Decimal, peak: Decimal, drawdown_pct: Decimal, lock_pct: Decimal },
    DayStartUnknown,
    DailyLoss { loss: Decimal, limit: Decimal, day_start_equity: Decimal },
    MaxOpen { open: usize, max: u32 },
    MaxOpenOnSymbol { symbol: String, open: usize, max: u32 },
    Overflow,
}

impl fmt::Display for RiskStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RiskStop::Drawdown { equity, peak, drawdown_pct, lock_pct } => write!(
                f,
                "equity {equity} is {drawdown_pct} % below its peak {peak}, the drawdown lock is at {lock_pct} %"
            ),
            RiskStop::DayStartUnknown => f.write_str(
                "the equity at the start of the broker's server day is not known yet (daily loss limit)",
            ),
            RiskStop::DailyLoss { loss, limit, day_start_equity } => write!(
                f,
                "today's loss {loss} reached the daily limit {limit} (equity {day_start_equity} at the server day's start)"
            ),
            RiskStop::MaxOpen { open, max } => {
                write!(f, "{open} positions open, limit {max}")
            }
            RiskStop::MaxOpenOnSymbol { symbol, open, max } => {
                write!(f, "{open} positions open on {symbol}, limit {max} per symbol")
            }
            RiskStop::Overflow => f.write_str("arithmetic overflow in the risk limits"),
        }
    }
}

/// The start of the broker's server day containing `now_ms` (unix ms UTC), where server time is
/// UTC + `server_utc_offset_s`.
pub fn server_day_start_ms(now_ms: i64, server_utc_offset_s: i32) -> i64 {
    let offset_ms = i64::from(server_utc_offset_s) * 1_000;
    let server_ms = now_ms.saturating_add(offset_ms);
    server_ms.div_euclid(86_400_000).saturating_mul(86_400_000).saturating_sub(offset_ms)
}

fn pct_of(x: Decimal, pct: Decimal) -> Option<Decimal> {
    x.checked_mul(pct)?.checked_div(Decimal::ONE_HUNDRED)
}

/// The equity floor of the drawdown rule: `drawdown_lock_pct` below `peak` (rounded to cents),
/// the level the EA keeps on its own when the node goes silent. [`check_drawdown`] closes the
/// gate at this floor.
pub fn drawdown_floor(settings: &RiskSettings, peak: Decimal) -> Option<Decimal> {
    let keep = Decimal::ONE_HUNDRED.checked_sub(settings.drawdown_lock_pct)?;
    pct_of(peak, keep).map(|d| d.round_dp(2))
}

/// The drawdown lock: no new position while equity is `drawdown_lock_pct` or more below its
/// peak, in any approval mode. (The guard's own lock suspends auto mode instead: see
/// [`super::approval`]; it is not a gate here.)
pub fn check_drawdown(settings: &RiskSettings, account: &AccountRisk) -> Result<(), RiskStop> {
    if account.peak_equity > Decimal::ZERO {
        let drop = account.peak_equity.checked_sub(account.equity).ok_or(RiskStop::Overflow)?;
        let drawdown_pct = drop
            .checked_mul(Decimal::ONE_HUNDRED)
            .and_then(|x| x.checked_div(account.peak_equity))
            .ok_or(RiskStop::Overflow)?;
        if drawdown_pct >= settings.drawdown_lock_pct {
            return Err(RiskStop::Drawdown {
                equity: account.equity,
                peak: account.peak_equity,
                drawdown_pct: drawdown_pct.round_dp(2),
                lock_pct: settings.drawdown_lock_pct,
            });
        }
    }
    Ok(())
}

/// The daily loss limit on the server day containing `now_ms`.
pub fn check_daily_loss(settings: &RiskSettings, account: &AccountRisk) -> Result<(), RiskStop> {
    let pct = Some(settings.daily_loss_limit_pct).filter(|p| *p > Decimal::ZERO);
    if pct.is_none() && settings.daily_loss_limit_money.is_none() {
        return Ok(());
    }
    let start = match account.day_start {
        Some(s) if s.is_day_of(account.now_ms, account.server_utc_offset_s) => s,
        _ => return Err(RiskStop::DayStartUnknown),
    };
    let loss = start.equity.checked_sub(account.equity).ok_or(RiskStop::Overflow)?;
    let by_pct = match pct {
        Some(pct) => Some(pct_of(start.equity, pct).ok_or(RiskStop::Overflow)?),
        None => None,
    };
    let limit = match (by_pct, settings.daily_loss_limit_money) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return Ok(()),
    };
    if loss >= limit {
        return Err(RiskStop::DailyLoss {
            loss: loss.round_dp(2),
            limit: limit.round_dp(2),
            day_start_equity: start.equity,
        });
    }
    Ok(())
}

/// The open-position limits; `open_symbols` are the broker symbols of Tradecast's exposure, one
/// entry per open position, pending order and order sent but not yet settled.
pub fn check_open_positions<'a>(
    settings: &RiskSettings,
    broker_symbol: &str,
    open_symbols: impl IntoIterator<Item = &'a str>,
) -> Result<(), RiskStop> {
    let mut total = 0usize;
    let mut on_symbol = 0usize;
    for s in open_symbols {
        total += 1;
        if s == broker_symbol {
            on_symbol += 1;
        }
    }
    if total >= settings.max_open_positions as usize {
        return Err(RiskStop::MaxOpen { open: total, max: settings.max_open_positions });
    }
    if on_symbol >= settings.max_open_per_symbol as usize {
        return Err(RiskStop::MaxOpenOnSymbol {
            symbol: broker_symbol.to_string(),
            open: on_symbol,
            max: settings.max_open_per_symbol,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal literal")
    }

    /// 2026-11-25 00:00 UTC.
    const DAY: i64 = 1_795_564_800_000;
    const H: i64 = 3_600_000;

    #[test]
    fn the_server_day_starts_at_server_midnight() {
        let check = |now: i64, offset_s: i32, expect: i64| {
            assert_eq!(server_day_start_ms(now, offset_s), expect, "{now} at {offset_s}");
        };
        check(DAY + 5 * H, 0, DAY);
        check(DAY, 0, DAY);
        check(DAY - 1, 0, DAY - 24 * H);
        // UTC+2 (a typical EET broker): server midnight is 22:00 UTC the day before.
        check(DAY + 5 * H, 7_200, DAY - 2 * H);
        check(DAY + 22 * H, 7_200, DAY + 22 * H);
        check(DAY + 22 * H - 1, 7_200, DAY - 2 * H);
        // UTC-5: server midnight is 05:00 UTC.
        check(DAY + 4 * H, -18_000, DAY - 19 * H);
        check(DAY + 5 * H, -18_000, DAY + 5 * H);
        // Absurd clocks saturate instead of panicking.
        let _ = server_day_start_ms(i64::MAX, i32::MAX);
        let _ = server_day_start_ms(i64::MIN, i32::MIN);
    }

    #[test]
    fn the_day_start_rolls_at_server_midnight() {
        let first = DayStart::roll(None, DAY + 5 * H, 7_200, d("10000"));
        assert_eq!(first, DayStart { day_start_ms: DAY - 2 * H, equity: d("10000") });
        // Later the same server day: kept, whatever the equity now.
        assert_eq!(DayStart::roll(Some(first), DAY + 21 * H, 7_200, d("9000")), first);
        // 22:00 UTC is server midnight at UTC+2: a new day with the equity then.
        assert_eq!(
            DayStart::roll(Some(first), DAY + 22 * H, 7_200, d("9000")),
            DayStart { day_start_ms: DAY + 22 * H, equity: d("9000") }
        );
    }

    #[test]
    fn the_day_start_survives_a_dst_change_and_rolls_at_the_new_midnight() {
        // Server time UTC+3 (EEST) until the offset becomes UTC+2 (EET) mid-day: still the
        // same server day, the day's start (and its losses) kept.
        let summer = DayStart::roll(None, DAY + 5 * H, 10_800, d("10000"));
        assert_eq!(summer.day_start_ms, DAY - 3 * H);
        assert_eq!(DayStart::roll(Some(summer), DAY + 6 * H, 7_200, d("9000")), summer);
        assert!(summer.is_day_of(DAY + 6 * H, 7_200));
        // The next server midnight is 22:00 UTC under the new offset, not 21:00.
        assert_eq!(
            DayStart::roll(Some(summer), DAY + 21 * H + 30 * 60_000, 7_200, d("9000")),
            summer
        );
        assert_eq!(
            DayStart::roll(Some(summer), DAY + 22 * H, 7_200, d("9000")),
            DayStart { day_start_ms: DAY + 22 * H, equity: d("9000") }
        );
        // And the other way (EET to EEST): the day is kept too.
        let winter = DayStart::roll(None, DAY + 5 * H, 7_200, d("10000"));
        assert_eq!(DayStart::roll(Some(winter), DAY + 6 * H, 10_800, d("9000")), winter);
        assert!(!winter.is_day_of(DAY + 21 * H, 10_800), "21:00 UTC is midnight at UTC+3");
    }

    #[test]
    fn the_day_start_rolls_over_a_weekend() {
        // Friday 2026-11-27 10:00 UTC at UTC+2, then Monday 2026-11-30 01:00 UTC.
        let friday = DayStart::roll(None, DAY + 2 * 24 * H + 10 * H, 7_200, d("10000"));
        let monday = DAY + 5 * 24 * H + H;
        assert!(!friday.is_day_of(monday, 7_200));
        let rolled = DayStart::roll(Some(friday), monday, 7_200, d("9500"));
        assert_eq!(rolled, DayStart { day_start_ms: DAY + 5 * 24 * H - 2 * H, equity: d("9500") });
        // Friday's start is refused by the daily loss rule on Monday (no state yet).
        let s = RiskSettings::default();
        let a = AccountRisk {
            equity: d("9500"),
            peak_equity: d("10000"),
            day_start: Some(friday),
            now_ms: monday,
            server_utc_offset_s: 7_200,
        };
        assert_eq!(check_daily_loss(&s, &a), Err(RiskStop::DayStartUnknown));
        assert_eq!(check_daily_loss(&s, &AccountRisk { day_start: Some(rolled), ..a }), Ok(()));
    }

    #[test]
    fn the_floor_is_where_the_drawdown_rule_closes() {
        let s = RiskSettings::default();
        let floor = drawdown_floor(&s, d("10000")).expect("floor");
        assert_eq!(floor, d("8000"));
        let at = AccountRisk { peak_equity: d("10000"), ..account("8000", None) };
        assert!(check_drawdown(&s, &at).is_err());
        let above = AccountRisk { equity: d("8000.01"), ..at };
        assert_eq!(check_drawdown(&s, &above), Ok(()));
    }

    fn account(equity: &str, day_start_equity: Option<&str>) -> AccountRisk {
        AccountRisk {
            equity: d(equity),
            peak_equity: d("10000"),
            day_start: day_start_equity
                .map(|e| DayStart { day_start_ms: DAY - 2 * H, equity: d(e) }),
            now_ms: DAY + 10 * H,
            server_utc_offset_s: 7_200,
        }
    }

    fn check_daily(settings: &RiskSettings, a: &AccountRisk, expect: Result<(), &str>) {
        let got = check_daily_loss(settings, a).map_err(|e| e.to_string());
        assert_eq!(got, expect.map_err(str::to_string), "{a:?}");
    }

    #[test]
    fn daily_loss_limit() {
        let s = RiskSettings::default();
        check_daily(&s, &account("9600", Some("10000")), Ok(()));
        check_daily(
            &s,
            &account("9500", Some("10000")),
            Err(
                "today's loss 500 reached the daily limit 500 (equity 10000 at the server day's start)",
            ),
        );
        // A gain is no loss.
        check_daily(&s, &account("12000", Some("10000")), Ok(()));
        let money = RiskSettings { daily_loss_limit_money: Some(d("300")), ..s.clone() };
        check_daily(
            &money,
            &account("9690", Some("10000")),
            Err(
                "today's loss 310 reached the daily limit 300 (equity 10000 at the server day's start)",
            ),
        );
        let off = RiskSettings { daily_loss_limit_pct: Decimal::ZERO, ..s.clone() };
        check_daily(&off, &account("1", Some("10000")), Ok(()));
        check_daily(&off, &account("1", None), Ok(()));
        // Unknown or yesterday's day start: refused, never guessed.
        let unknown = "the equity at the start of the broker's server day is not known yet (daily loss limit)";
        check_daily(&s, &account("9600", None), Err(unknown));
        let mut yesterday = account("9600", Some("10000"));
        yesterday.now_ms = DAY + 22 * H; // server midnight passed at 22:00 UTC
        check_daily(&s, &yesterday, Err(unknown));
    }

    #[test]
    fn drawdown_lock() {
        let s = RiskSettings::default();
        let check = |equity: &str, expect: Result<(), &str>| {
            let a = account(equity, None);
            assert_eq!(
                check_drawdown(&s, &a).map_err(|e| e.to_string()),
                expect.map_err(str::to_string)
            );
        };
        check("8001", Ok(()));
        check(
            "8000",
            Err("equity 8000 is 20 % below its peak 10000, the drawdown lock is at 20 %"),
        );
        check(
            "7012.5",
            Err("equity 7012.5 is 29.88 % below its peak 10000, the drawdown lock is at 20 %"),
        );
        check("11000", Ok(()));
        let no_peak = AccountRisk { peak_equity: d("0"), ..account("5", None) };
        assert_eq!(check_drawdown(&s, &no_peak), Ok(()));
    }

    #[test]
    fn open_position_limits() {
        let s =
            RiskSettings { max_open_positions: 3, max_open_per_symbol: 1, ..Default::default() };
        let check = |symbol: &str, open: &[&str], expect: Result<(), &str>| {
            let got =
                check_open_positions(&s, symbol, open.iter().copied()).map_err(|e| e.to_string());
            assert_eq!(got, expect.map_err(str::to_string), "{symbol} {open:?}");
        };
        check("EURUSD.m", &[], Ok(()));
        check("EURUSD.m", &["GBPUSD.m", "XAUUSD"], Ok(()));
        check("EURUSD.m", &["EURUSD.m"], Err("1 positions open on EURUSD.m, limit 1 per symbol"));
        check("EURUSD.m", &["GBPUSD.m", "XAUUSD", "US500"], Err("3 positions open, limit 3"));
        let two = RiskSettings { max_open_per_symbol: 2, ..s.clone() };
        assert_eq!(check_open_positions(&two, "EURUSD.m", ["EURUSD.m"]), Ok(()));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = RiskSettings::default();
        assert_eq!(s.max_open_positions, 5);
        assert_eq!(s.max_open_per_symbol, 1);
        assert_eq!(s.daily_loss_limit_pct, d("5"));
        assert_eq!(s.daily_loss_limit_money, None);
        assert_eq!(s.drawdown_lock_pct, d("20"));
    }
}

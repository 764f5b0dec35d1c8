//! Whether the market for a symbol is open at an instant of the market clock (system.md, Time):
//! the FX week (Sunday 17:00 to Friday 17:00 New York time, daylight saving time from jiff's
//! bundled tz database), the holiday calendar ([`super::calendar`], New York dates and times),
//! and the broker's own sessions for the symbol as the EA reports them (UTC week windows).
//!
//! Pure: the instant is an argument; nothing here reads a clock.

use std::fmt;
use std::sync::OnceLock;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use tradecast_protocol::ea::Session;

use super::calendar::HolidayCalendar;

/// The zone of the FX day.
pub const FX_ZONE: &str = "America/New_York";
/// The FX day's roll: 17:00 New York time.
pub const FX_ROLL: Time = jiff::civil::time(17, 0, 0, 0);

/// New York, from the tz database bundled into the binary (`tzdb-bundle-always`), so a machine
/// without `/usr/share/zoneinfo` (Windows) has it too.
fn new_york() -> Option<&'static TimeZone> {
    static ZONE: OnceLock<Option<TimeZone>> = OnceLock::new();
    ZONE.get_or_init(|| TimeZone::get(FX_ZONE).ok()).as_ref()
}

/// Which of the market-hours rules apply (part of [`super::PolicySettings`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketHoursSettings {
    /// Skip signals outside the FX week, on holidays and outside the broker's sessions.
    /// Default `true`.
    pub enabled: bool,
    /// Respect the sessions the EA reports for the symbol (an empty list: the broker reported
    /// none, only the FX week and holidays apply). Default `true`.
    pub broker_sessions: bool,
    /// Canonical symbols that trade around the clock (crypto, e.g. `["BTCUSD"]`): the FX week
    /// and the holiday calendar do not apply to them, the broker's sessions still do.
    /// Default empty.
    pub always_open: Vec<String>,
}

impl Default for MarketHoursSettings {
    fn default() -> Self {
        Self { enabled: true, broker_sessions: true, always_open: Vec::new() }
    }
}

/// Why the market is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Outside the FX week, named by the New York weekday.
    Weekend { weekday: Weekday, after_roll: bool },
    /// A holiday from the calendar.
    Holiday { name: String },
    /// Outside every session the broker reports for the symbol.
    OutsideSession,
    /// The instant is outside the range a calendar can place (absurd market clock).
    ClockOutOfRange { now_ms: i64 },
}

/// The English name of a weekday.
pub fn weekday_name(w: Weekday) -> &'static str {
    match w {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Weekend { weekday: Weekday::Friday, .. } => {
                f.write_str("Friday after 17:00 New York")
            }
            Closed::Weekend { weekday: Weekday::Sunday, .. } => {
                f.write_str("Sunday before 17:00 New York")
            }
            Closed::Weekend { weekday, .. } => f.write_str(weekday_name(*weekday)),
            Closed::Holiday { name } => f.write_str(name),
            Closed::OutsideSession => f.write_str("outside the broker's trading session"),
            Closed::ClockOutOfRange { now_ms } => {
                write!(f, "market clock {now_ms} ms is out of range")
            }
        }
    }
}

/// The FX trading day an instant belongs to, New York local: the day rolls at 17:00, so Monday
/// 17:00 New York already belongs to Tuesday.
pub fn fx_day(local_date: Date, local_time: Time) -> Option<Date> {
    if local_time >= FX_ROLL { local_date.tomorrow().ok() } else { Some(local_date) }
}

/// Whether the market for a symbol is open at `now_ms` (unix ms UTC, market clock).
/// `canonical` is the provider's symbol name (the calendar's), `sessions` the broker's windows
/// for the broker's symbol. `Ok(())` when open.
pub fn check_open(
    now_ms: i64,
    canonical: &str,
    sessions: &[Session],
    calendar: &HolidayCalendar,
    settings: &MarketHoursSettings,
) -> Result<(), Closed> {
    if !settings.enabled {
        return Ok(());
    }
    let always_open = settings.always_open.iter().any(|s| s == canonical);
    if !always_open {
        let out_of_range = || Closed::ClockOutOfRange { now_ms };
        let zone = new_york().ok_or_else(out_of_range)?;
        let ts = jiff::Timestamp::from_millisecond(now_ms).map_err(|_| out_of_range())?;
        let local = ts.to_zoned_datetime(zone.clone());
        let (date, time, weekday) = (local.date(), local.time(), local.weekday());
        let closed_weekend = match weekday {
            Weekday::Saturday => true,
            Weekday::Friday => time >= FX_ROLL,
            Weekday::Sunday => time < FX_ROLL,
            _ => false,
        };
        if closed_weekend {
            return Err(Closed::Weekend { weekday, after_roll: time >= FX_ROLL });
        }
        let day = fx_day(date, time).ok_or_else(out_of_range)?;
        for h in calendar.holidays.iter().filter(|h| h.applies_to(canonical)) {
            let closed = match h.early_close {
                // The whole FX day D: 17:00 on D-1 to 17:00 on D.
                None => h.date.falls_on(day),
                // On the calendar date, from the early close until the 17:00 roll.
                Some(close) => h.date.falls_on(date) && time >= close && time < FX_ROLL,
            };
            if closed {
                return Err(Closed::Holiday { name: h.name.clone() });
            }
        }
    }
    if settings.broker_sessions
        && !sessions.is_empty()
        && !sessions.iter().any(|s| s.contains(now_ms))
    {
        return Err(Closed::OutsideSession);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    /// Unix ms of a New York local time.
    fn ny(y: i16, m: i8, d: i8, h: i8, min: i8) -> i64 {
        date(y, m, d)
            .at(h, min, 0, 0)
            .in_tz(FX_ZONE)
            .expect("a New York time")
            .timestamp()
            .as_millisecond()
    }

    /// Unix ms of a UTC time.
    fn utc(y: i16, m: i8, d: i8, h: i8, min: i8) -> i64 {
        date(y, m, d).at(h, min, 0, 0).in_tz("UTC").expect("UTC").timestamp().as_millisecond()
    }

    fn check(now_ms: i64, canonical: &str, sessions: &[Session], expect: Result<(), &str>) {
        let got = check_open(
            now_ms,
            canonical,
            sessions,
            &HolidayCalendar::default_calendar(),
            &MarketHoursSettings::default(),
        )
        .map_err(|c| c.to_string());
        assert_eq!(got, expect.map_err(str::to_string), "at {now_ms} for {canonical}");
    }

    #[test]
    fn the_fx_week_runs_sunday_17_to_friday_17_new_york() {
        // 2026-11-22 is a Sunday (EST, UTC-5).
        check(ny(2026, 11, 22, 16, 59), "EURUSD", &[], Err("Sunday before 17:00 New York"));
        check(ny(2026, 11, 22, 17, 0), "EURUSD", &[], Ok(()));
        check(ny(2026, 11, 25, 3, 0), "EURUSD", &[], Ok(()));
        check(ny(2026, 11, 27, 16, 59), "EURUSD", &[], Ok(()));
        check(ny(2026, 11, 27, 17, 0), "EURUSD", &[], Err("Friday after 17:00 New York"));
        check(ny(2026, 11, 28, 12, 0), "EURUSD.m", &[], Err("Saturday"));
        // Saturday 01:00 UTC is still Friday 20:00 in New York.
        check(utc(2026, 11, 28, 1, 0), "EURUSD", &[], Err("Friday after 17:00 New York"));
    }

    #[test]
    fn daylight_saving_time_moves_the_open_in_utc() {
        // Summer (EDT, UTC-4): the week opens Sunday 21:00 UTC.
        check(utc(2026, 7, 5, 20, 59), "EURUSD", &[], Err("Sunday before 17:00 New York"));
        check(utc(2026, 7, 5, 21, 0), "EURUSD", &[], Ok(()));
        // Winter (EST, UTC-5): it opens Sunday 22:00 UTC, so 21:30 UTC is still closed.
        check(utc(2026, 12, 6, 21, 30), "EURUSD", &[], Err("Sunday before 17:00 New York"));
        check(utc(2026, 12, 6, 22, 0), "EURUSD", &[], Ok(()));
        // The spring change itself: Sunday 2026-03-08 02:00 EST becomes 03:00 EDT; 17:00 EDT is
        // 21:00 UTC.
        check(utc(2026, 3, 8, 20, 59), "EURUSD", &[], Err("Sunday before 17:00 New York"));
        check(utc(2026, 3, 8, 21, 0), "EURUSD", &[], Ok(()));
        // Autumn: Sunday 2026-11-01, back to EST; 17:00 EST is 22:00 UTC.
        check(utc(2026, 11, 1, 21, 59), "EURUSD", &[], Err("Sunday before 17:00 New York"));
        check(utc(2026, 11, 1, 22, 0), "EURUSD", &[], Ok(()));
        // Friday's close in summer is 21:00 UTC.
        check(utc(2026, 7, 10, 20, 59), "EURUSD", &[], Ok(()));
        check(utc(2026, 7, 10, 21, 0), "EURUSD", &[], Err("Friday after 17:00 New York"));
    }

    #[test]
    fn holidays_close_their_fx_day_and_early_closes_the_afternoon() {
        // Christmas 2026 is a Friday: its FX day runs Thursday 17:00 to Friday 17:00.
        check(ny(2026, 12, 24, 12, 59), "EURUSD", &[], Ok(()));
        check(ny(2026, 12, 24, 13, 0), "EURUSD", &[], Err("Christmas Eve (early close)"));
        check(ny(2026, 12, 24, 16, 59), "EURUSD", &[], Err("Christmas Eve (early close)"));
        check(ny(2026, 12, 24, 17, 0), "EURUSD", &[], Err("Christmas Day"));
        check(ny(2026, 12, 25, 16, 59), "EURUSD", &[], Err("Christmas Day"));
        // New Year 2027 is a Friday too; Thursday 31 December closes at 13:00.
        check(ny(2026, 12, 31, 13, 30), "EURUSD", &[], Err("New Year's Eve (early close)"));
        check(ny(2027, 1, 1, 9, 0), "GBPUSD", &[], Err("New Year's Day"));
        // New Year 2030 is a Tuesday: Monday 17:00 to Tuesday 17:00 closed, Tuesday 17:00 opens
        // Wednesday's FX day.
        check(ny(2029, 12, 31, 17, 0), "EURUSD", &[], Err("New Year's Day"));
        check(ny(2030, 1, 1, 17, 0), "EURUSD", &[], Ok(()));
        // A normal Thursday afternoon.
        check(ny(2026, 12, 17, 14, 0), "EURUSD", &[], Ok(()));
    }

    #[test]
    fn broker_sessions_and_settings() {
        let wed = ny(2026, 11, 25, 10, 0); // Wednesday 15:00 UTC
        let secs = |day: u32, h: u32| day * 86_400 + h * 3_600;
        let open = [Session { from_week_s: secs(3, 1), to_week_s: secs(3, 22) }];
        let shut = [Session { from_week_s: secs(3, 16), to_week_s: secs(3, 22) }];
        check(wed, "US500", &open, Ok(()));
        check(wed, "US500", &shut, Err("outside the broker's trading session"));
        let cal = HolidayCalendar::default_calendar();
        let off = MarketHoursSettings { broker_sessions: false, ..Default::default() };
        assert_eq!(check_open(wed, "US500", &shut, &cal, &off), Ok(()));
        let sat = ny(2026, 11, 28, 12, 0);
        let crypto =
            MarketHoursSettings { always_open: vec!["BTCUSD".into()], ..Default::default() };
        assert_eq!(check_open(sat, "BTCUSD", &[], &cal, &crypto), Ok(()));
        assert_eq!(
            check_open(sat, "EURUSD", &[], &cal, &crypto).map_err(|c| c.to_string()),
            Err("Saturday".into())
        );
        // Always-open symbols still follow the broker's sessions.
        assert_eq!(check_open(wed, "BTCUSD", &shut, &cal, &crypto), Err(Closed::OutsideSession));
        let disabled = MarketHoursSettings { enabled: false, ..Default::default() };
        assert_eq!(check_open(sat, "EURUSD", &shut, &cal, &disabled), Ok(()));
        // A holiday for gold only.
        let gold = HolidayCalendar::parse(
            "[[holiday]]\nname = \"Gold off\"\ndate = \"2026-11-25\"\nsymbols = [\"XAUUSD\"]\n",
        )
        .expect("calendar");
        let d = MarketHoursSettings::default();
        assert_eq!(
            check_open(wed, "XAUUSD", &[], &gold, &d),
            Err(Closed::Holiday { name: "Gold off".into() })
        );
        assert_eq!(check_open(wed, "EURUSD", &[], &gold, &d), Ok(()));
    }

    #[test]
    fn an_absurd_clock_is_closed_not_a_panic() {
        let cal = HolidayCalendar::default_calendar();
        let d = MarketHoursSettings::default();
        assert_eq!(
            check_open(i64::MAX, "EURUSD", &[], &cal, &d),
            Err(Closed::ClockOutOfRange { now_ms: i64::MAX })
        );
        assert_eq!(
            Closed::ClockOutOfRange { now_ms: 5 }.to_string(),
            "market clock 5 ms is out of range"
        );
    }

    #[test]
    fn fx_day_rolls_at_17() {
        assert_eq!(
            fx_day(date(2026, 11, 23), jiff::civil::time(16, 59, 59, 0)),
            Some(date(2026, 11, 23))
        );
        assert_eq!(fx_day(date(2026, 11, 23), FX_ROLL), Some(date(2026, 11, 24)));
    }
}

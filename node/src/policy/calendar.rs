//! The holiday calendar: a TOML file in the data dir that the trader may edit, parsed into
//! [`HolidayCalendar`]. The default file ([`default_calendar_toml`], `holidays.toml` in this
//! folder, embedded in the binary) documents the format in its own comments; the module doc of
//! [`crate::policy`] repeats it.
//!
//! Parsing refuses what it does not understand (unknown keys, a date that does not exist, both or
//! neither of `date`/`annual`), naming the entry, so a typo never silently opens a closed day.
//! No I/O: the caller reads and writes the file.

use jiff::civil::{Date, Time};
use serde::Deserialize;

/// The default calendar file, as shipped: Christmas and New Year's Day closed, early closes on
/// 24 and 31 December.
pub fn default_calendar_toml() -> &'static str {
    include_str!("holidays.toml")
}

/// When a holiday falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolidayDate {
    /// One calendar date.
    Once(Date),
    /// Every year on this month (1–12) and day (1–31).
    Annual { month: i8, day: i8 },
}

impl HolidayDate {
    /// Whether the holiday falls on `date`.
    pub fn falls_on(&self, date: Date) -> bool {
        match *self {
            HolidayDate::Once(d) => d == date,
            HolidayDate::Annual { month, day } => date.month() == month && date.day() == day,
        }
    }
}

/// One holiday entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    /// What the copy log shows.
    pub name: String,
    /// When.
    pub date: HolidayDate,
    /// `None`: the whole FX day is closed. `Some(t)`: on the calendar date the market closes at
    /// `t` New York time and stays closed until 17:00, when the next FX day opens.
    pub early_close: Option<Time>,
    /// Canonical symbols it applies to; empty: all.
    pub symbols: Vec<String>,
}

impl Holiday {
    /// Whether the holiday applies to this canonical symbol.
    pub fn applies_to(&self, canonical_symbol: &str) -> bool {
        self.symbols.is_empty() || self.symbols.iter().any(|s| s == canonical_symbol)
    }
}

/// A parsed holiday calendar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolidayCalendar {
    pub holidays: Vec<Holiday>,
}

/// Why a calendar file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CalendarError {
    /// The file is not TOML of the documented shape (unknown key, wrong type, …).
    #[error("holiday calendar: {0}")]
    Toml(String),
    /// One entry is wrong; `index` counts from 1 in file order.
    #[error("holiday calendar, holiday {index} ({name:?}): {message}")]
    Entry { index: usize, name: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    #[serde(default)]
    holiday: Vec<HolidayEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayEntry {
    name: String,
    date: Option<String>,
    annual: Option<String>,
    early_close: Option<String>,
    #[serde(default)]
    symbols: Vec<String>,
}

/// Parses `HH:MM` (24-hour clock).
fn parse_hh_mm(text: &str) -> Option<Time> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: i8 = h.parse().ok()?;
    let m: i8 = m.parse().ok()?;
    Time::new(h, m, 0, 0).ok()
}

/// Parses `MM-DD`; 02-29 is allowed (it falls only in leap years).
fn parse_mm_dd(text: &str) -> Option<(i8, i8)> {
    let (m, d) = text.split_once('-')?;
    if m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (m, d): (i8, i8) = (m.parse().ok()?, d.parse().ok()?);
    // 2024 is a leap year: every month-day that exists in some year exists in it.
    Date::new(2024, m, d).ok().map(|_| (m, d))
}

/// Parses `YYYY-MM-DD` strictly (no time, no offset).
fn parse_date(text: &str) -> Option<Date> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let y: i16 = text[0..4].parse().ok()?;
    let m: i8 = text[5..7].parse().ok()?;
    let d: i8 = text[8..10].parse().ok()?;
    Date::new(y, m, d).ok()
}

impl HolidayCalendar {
    /// The default calendar ([`default_calendar_toml`]).
    // The text is compiled in, not input: that it parses is checked by a unit test.
    #[allow(clippy::expect_used)]
    pub fn default_calendar() -> HolidayCalendar {
        // The embedded file is checked by a unit test; failing to parse it is a build defect.
        HolidayCalendar::parse(default_calendar_toml()).expect("the embedded calendar parses")
    }

    /// Parses a calendar file (see the module doc of [`crate::policy`] for the format).
    pub fn parse(text: &str) -> Result<HolidayCalendar, CalendarError> {
        let file: CalendarFile =
            toml::from_str(text).map_err(|e| CalendarError::Toml(e.message().to_string()))?;
        let mut holidays = Vec::with_capacity(file.holiday.len());
        for (i, entry) in file.holiday.into_iter().enumerate() {
            let fail = |message: String| CalendarError::Entry {
                index: i + 1,
                name: entry.name.clone(),
                message,
            };
            if entry.name.trim().is_empty() {
                return Err(fail("the name is empty".into()));
            }
            let date = match (&entry.date, &entry.annual) {
                (Some(d), None) => HolidayDate::Once(
                    parse_date(d).ok_or_else(|| fail(format!("date {d:?} is not YYYY-MM-DD")))?,
                ),
                (None, Some(a)) => {
                    let (month, day) =
                        parse_mm_dd(a).ok_or_else(|| fail(format!("annual {a:?} is not MM-DD")))?;
                    HolidayDate::Annual { month, day }
                }
                (Some(_), Some(_)) => return Err(fail("give date or annual, not both".into())),
                (None, None) => {
                    return Err(fail("give date (YYYY-MM-DD) or annual (MM-DD)".into()));
                }
            };
            let early_close = match &entry.early_close {
                None => None,
                Some(t) => Some(
                    parse_hh_mm(t)
                        .ok_or_else(|| fail(format!("early_close {t:?} is not HH:MM")))?,
                ),
            };
            if entry.symbols.iter().any(|s| s.trim().is_empty()) {
                return Err(fail("a symbol is empty".into()));
            }
            holidays.push(Holiday { name: entry.name, date, early_close, symbols: entry.symbols });
        }
        Ok(HolidayCalendar { holidays })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    #[test]
    fn the_default_calendar_parses_to_the_main_fx_holidays() {
        let cal = HolidayCalendar::default_calendar();
        let got: Vec<(&str, HolidayDate, Option<Time>)> =
            cal.holidays.iter().map(|h| (h.name.as_str(), h.date, h.early_close)).collect();
        assert_eq!(
            got,
            [
                (
                    "Christmas Eve (early close)",
                    HolidayDate::Annual { month: 12, day: 24 },
                    Some(time(13, 0, 0, 0))
                ),
                ("Christmas Day", HolidayDate::Annual { month: 12, day: 25 }, None),
                (
                    "New Year's Eve (early close)",
                    HolidayDate::Annual { month: 12, day: 31 },
                    Some(time(13, 0, 0, 0))
                ),
                ("New Year's Day", HolidayDate::Annual { month: 1, day: 1 }, None),
            ]
        );
        assert!(cal.holidays.iter().all(|h| h.symbols.is_empty()));
    }

    fn check(text: &str, expect: Result<Vec<Holiday>, &str>) {
        let got = HolidayCalendar::parse(text).map(|c| c.holidays).map_err(|e| e.to_string());
        assert_eq!(got, expect.map_err(str::to_string), "{text}");
    }

    fn holiday(name: &str, date: HolidayDate, early: Option<Time>, symbols: &[&str]) -> Holiday {
        Holiday {
            name: name.into(),
            date,
            early_close: early,
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn parse_entries_and_refuse_mistakes_by_name() {
        check("", Ok(vec![]));
        check(
            "[[holiday]]\nname = \"Good Friday\"\ndate = \"2027-03-26\"\nsymbols = [\"XAUUSD\", \"US500\"]\n",
            Ok(vec![holiday(
                "Good Friday",
                HolidayDate::Once(date(2027, 3, 26)),
                None,
                &["XAUUSD", "US500"],
            )]),
        );
        check(
            "[[holiday]]\nname = \"Leap\"\nannual = \"02-29\"\nearly_close = \"09:30\"\n",
            Ok(vec![holiday(
                "Leap",
                HolidayDate::Annual { month: 2, day: 29 },
                Some(time(9, 30, 0, 0)),
                &[],
            )]),
        );
        check(
            "[[holiday]]\nname = \"X\"\ndate = \"2027-02-30\"\n",
            Err("holiday calendar, holiday 1 (\"X\"): date \"2027-02-30\" is not YYYY-MM-DD"),
        );
        check(
            "[[holiday]]\nname = \"X\"\nannual = \"13-01\"\n",
            Err("holiday calendar, holiday 1 (\"X\"): annual \"13-01\" is not MM-DD"),
        );
        check(
            "[[holiday]]\nname = \"A\"\nannual = \"01-01\"\n[[holiday]]\nname = \"B\"\n",
            Err("holiday calendar, holiday 2 (\"B\"): give date (YYYY-MM-DD) or annual (MM-DD)"),
        );
        check(
            "[[holiday]]\nname = \"B\"\nannual = \"01-01\"\ndate = \"2027-01-01\"\n",
            Err("holiday calendar, holiday 1 (\"B\"): give date or annual, not both"),
        );
        check(
            "[[holiday]]\nname = \"C\"\nannual = \"01-01\"\nearly_close = \"25:00\"\n",
            Err("holiday calendar, holiday 1 (\"C\"): early_close \"25:00\" is not HH:MM"),
        );
        check(
            "[[holiday]]\nname = \" \"\nannual = \"01-01\"\n",
            Err("holiday calendar, holiday 1 (\" \"): the name is empty"),
        );
        check(
            "[[holiday]]\nname = \"D\"\nannual = \"01-01\"\nsymbols = [\"\"]\n",
            Err("holiday calendar, holiday 1 (\"D\"): a symbol is empty"),
        );
        let err = HolidayCalendar::parse("[[holiday]]\nname = \"E\"\nanual = \"01-01\"\n")
            .expect_err("a misspelt key");
        assert!(err.to_string().contains("anual"), "{err}");
        assert!(HolidayCalendar::parse("[[holiday]]\nname = 3\n").is_err());
    }

    #[test]
    fn holiday_dates_and_symbols() {
        let annual = HolidayDate::Annual { month: 12, day: 25 };
        assert!(annual.falls_on(date(2026, 12, 25)));
        assert!(annual.falls_on(date(2031, 12, 25)));
        assert!(!annual.falls_on(date(2026, 12, 26)));
        let once = HolidayDate::Once(date(2027, 3, 26));
        assert!(once.falls_on(date(2027, 3, 26)));
        assert!(!once.falls_on(date(2028, 3, 26)));
        let gold = holiday("G", once, None, &["XAUUSD"]);
        assert!(gold.applies_to("XAUUSD"));
        assert!(!gold.applies_to("EURUSD"));
        assert!(holiday("All", once, None, &[]).applies_to("EURUSD"));
    }
}

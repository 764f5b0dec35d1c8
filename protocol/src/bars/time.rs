//! Bar-file time stamps: the civil `YYYY-MM-DD[ HH:MM[:SS]]` forms (also `YYYY.MM.DD` as MT5
//! writes it, and `T` between date and time), RFC 3339 with an offset, and unix seconds, each to
//! unix milliseconds UTC. Pure and allocation-free on the civil path, which is the hot one.

/// Days from 1970-01-01 to the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Exactly `n` ASCII digits as a number, or `None`.
fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
}

/// `YYYY-MM-DD` or `YYYY.MM.DD` (one separator throughout) to days since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 {
        return None;
    }
    let sep = b[4];
    if !(sep == b'-' || sep == b'.') || b[7] != sep {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// `HH:MM` or `HH:MM:SS` to seconds since midnight.
pub(crate) fn parse_time_of_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (h, m, sec) = match b.len() {
        5 if b[2] == b':' => (digits(&b[0..2])?, digits(&b[3..5])?, 0),
        8 if b[2] == b':' && b[5] == b':' => {
            (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?)
        }
        _ => return None,
    };
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(i64::from(h * 3600 + m * 60 + sec))
}

/// One time cell to unix milliseconds, or `None` when it is none of the accepted forms; the flag
/// says whether the time was civil (no offset: in the file's clock, UTC unless told otherwise).
///
/// Accepted: unix seconds (ASCII digits only, optionally signed), `YYYY-MM-DD` (midnight),
/// `YYYY-MM-DD HH:MM[:SS]` or with `T` (taken as UTC; `.` may replace `-` in the date), and
/// RFC 3339 with `Z` or a numeric offset (fractional seconds allowed there).
pub(crate) fn parse_timestamp(s: &str) -> Option<(i64, bool)> {
    let b = s.as_bytes();
    let unsigned = b.strip_prefix(b"-").unwrap_or(b);
    if !unsigned.is_empty() && unsigned.len() <= 12 && unsigned.iter().all(u8::is_ascii_digit) {
        let secs: i64 = s.parse().ok()?;
        return Some((secs.checked_mul(1000)?, false));
    }
    if b.len() < 10 {
        return None;
    }
    let days = parse_date(s.get(..10)?)?;
    if b.len() == 10 {
        return Some((days * 86_400_000, true));
    }
    if !(b[10] == b' ' || b[10] == b'T' || b[10] == b't') {
        return None;
    }
    let rest = s.get(11..)?;
    if let Some(secs) = parse_time_of_day(rest) {
        return Some(((days * 86_400 + secs) * 1000, true));
    }
    // Anything longer must be RFC 3339 with an offset: let jiff judge it.
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some((ts.as_millisecond(), false))
}

/// Unix milliseconds UTC as RFC 3339 (`2017-05-02T04:00:00Z`), for messages and reports.
pub fn format_rfc3339(unix_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(unix_ms) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("{unix_ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Option<&str>) {
        let got = parse_timestamp(input).map(|(ms, _)| format_rfc3339(ms));
        assert_eq!(got.as_deref(), expect, "input {input:?}");
    }

    #[test]
    fn accepted_forms() {
        check("2017-05-02 04:00:00", Some("2017-05-02T04:00:00Z"));
        check("2017-05-02 04:00", Some("2017-05-02T04:00:00Z"));
        check("2017.05.02 04:00", Some("2017-05-02T04:00:00Z"));
        check("2017-05-02T04:00:00", Some("2017-05-02T04:00:00Z"));
        check("2017-05-02", Some("2017-05-02T00:00:00Z"));
        check("2017-05-02T06:00:00+02:00", Some("2017-05-02T04:00:00Z"));
        check("2017-05-02T04:00:00Z", Some("2017-05-02T04:00:00Z"));
        check("1493697600", Some("2017-05-02T04:00:00Z"));
        check("0", Some("1970-01-01T00:00:00Z"));
        check("2016-02-29", Some("2016-02-29T00:00:00Z"));
        check("1900-03-01", Some("1900-03-01T00:00:00Z"));
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "",
            "2017-13-01",
            "2017-02-29",
            "2017-04-31",
            "2017-05-02 24:00",
            "2017-05-02 04:60",
            "2017-05-02 4:00",
            "2017/05/02",
            "2017-05.02",
            "02.05.2017",
            "yesterday",
            "2017-05-02 04:00:00 UTC",
            "1.5",
            "99999999999999999999",
        ] {
            check(bad, None);
        }
    }
}

//! What the pages share for showing and reading values: times in UTC, days from date inputs,
//! money in minor units, query strings.

use maud::{Markup, html};

/// Unix ms as `2026-12-06 03:18:44` (UTC); `—` for none.
pub fn when(ms: Option<i64>) -> String {
    match ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()) {
        Some(ts) => ts.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        None => "—".into(),
    }
}

/// A `YYYY-MM-DD` (a date input's value) as the unix ms of 00:00 UTC that day; `Ok(None)` for
/// an empty value.
pub fn day_start_ms(value: Option<&str>) -> Result<Option<i64>, String> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    let date: jiff::civil::Date =
        v.parse().map_err(|_| format!("`{v}` is not a YYYY-MM-DD date"))?;
    let ts: jiff::Timestamp =
        format!("{date}T00:00:00Z").parse().map_err(|e: jiff::Error| e.to_string())?;
    Ok(Some(ts.as_millisecond()))
}

/// One day in ms.
pub const DAY_MS: i64 = 86_400_000;

/// An amount in minor units of `currency` (ISO 4217), exact: `49.00 USD`. Currencies without
/// minor units (JPY, XTR, …) show whole units.
pub fn money(minor: i64, currency: &str) -> String {
    let digits: u32 = match currency {
        "JPY" | "KRW" | "XTR" | "ISK" | "CLP" | "VND" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    };
    if digits == 0 {
        return format!("{minor} {currency}");
    }
    let scale = 10i128.pow(digits);
    let m = i128::from(minor);
    let sign = if m < 0 { "-" } else { "" };
    let (whole, frac) = (m.abs() / scale, m.abs() % scale);
    format!("{sign}{whole}.{frac:0width$} {currency}", width = digits as usize)
}

/// `k=v&…` with every value percent-encoded; empty values left out.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A long id shortened to its first 12 characters, the whole in its `title`.
pub fn short(id: &str) -> Markup {
    let cut: String = id.chars().take(12).collect();
    html! {
        @if cut.len() < id.len() { code title=(id) { (cut) "…" } } @else { code { (id) } }
    }
}

/// An empty-table line.
pub fn none_row(cols: usize, text: &str) -> Markup {
    html! { tr { td.mute colspan=(cols) { (text) } } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_show_exactly() {
        assert_eq!(when(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(when(None), "—");
        assert_eq!(day_start_ms(Some("1970-01-02")), Ok(Some(DAY_MS)));
        assert_eq!(day_start_ms(Some("")), Ok(None));
        assert!(day_start_ms(Some("2026-13-01")).is_err());
        assert_eq!(money(4900, "USD"), "49.00 USD");
        assert_eq!(money(-5, "EUR"), "-0.05 EUR");
        assert_eq!(money(250, "XTR"), "250 XTR");
        assert_eq!(money(1234, "KWD"), "1.234 KWD");
        assert_eq!(query(&[("a", "x y&"), ("b", ""), ("c", "1")]), "a=x%20y%26&c=1");
    }
}

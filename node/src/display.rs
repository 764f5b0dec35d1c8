//! Formatting helpers shared by the command line's tables and the HTML report: times and
//! prices as a trader reads them. Pure functions, no I/O.

use tradecast_protocol::bars::format_rfc3339;

/// `2017-05-02 04:00` for tables.
pub fn short_time(unix_ms: i64) -> String {
    let s = format_rfc3339(unix_ms);
    s.get(..16).map(|p| p.replace('T', " ")).unwrap_or(s)
}

/// A price to at most 8 decimals, trailing zeros dropped.
pub fn price(x: f64) -> String {
    let s = format!("{x:.8}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_times_for_tables() {
        assert_eq!(price(1.091_793_64), "1.09179364");
        assert_eq!(price(1.088), "1.088");
        assert_eq!(price(1870.0), "1870");
        assert_eq!(short_time(1_493_697_600_000), "2017-05-02 04:00");
    }
}

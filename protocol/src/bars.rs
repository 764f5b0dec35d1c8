//! Bars: the `Bar` type and the one reader for bar files (MT5 exports and generic CSV), shared by
//! the node and the simulated terminal. Pure: it reads from bytes, never from the file system.
//!
//! # Public API
//!
//! - [`Bar`]: one closed bar, `time_unix_ms` (the bar's open, unix milliseconds UTC) and
//!   `open`/`high`/`low`/`close` as exact [`Decimal`]s, the digits the file wrote. The simulated
//!   terminal fills and compares on these; nothing is lost to binary floating point.
//! - [`Bar::to_f64`] → [`BarF64`]: the same bar in f64, each price the correctly rounded double
//!   of its decimal (what `float("1.09128")` gives in any language). The strategy computes in f64
//!   (fib-rsi.md, Arithmetic) on these.
//! - [`parse_bars`]`(bytes) -> Result<Vec<Bar>, BarFileError>` reads a whole file;
//!   [`parse_bars_with`] takes [`ParseOptions`] (a fixed offset for files written in broker
//!   server time, as MT5 exports are).
//! - [`BarFileError`]: every way a file can be wrong, each naming its 1-based line and, where one
//!   cell is at fault, its 1-based column and header name. No input panics and no row is skipped.
//! - [`decimal_to_f64`] and [`format_rfc3339`] are the conversions the reader itself uses.
//!
//! # Accepted files
//!
//! A header line, then one bar per line, oldest first, times strictly increasing.
//!
//! - MT5's export: tab-separated, header `<DATE> <TIME> <OPEN> <HIGH> <LOW> <CLOSE> <TICKVOL>
//!   <VOL> <SPREAD>`, dates `YYYY.MM.DD`, times `HH:MM[:SS]`, `<TIME>` absent for daily bars.
//!   UTF-8 or UTF-16 (MT5 writes UTF-16LE with a byte-order mark), with or without a BOM.
//!   A cell may be wrapped in double quotes (spreadsheet exports); quotes never hide a delimiter.
//! - Generic CSV: comma or semicolon separated (tab also works); the time column is the one named
//!   `time`, `date`, `datetime` or `timestamp` (any case, `<…>` allowed), or an unnamed first
//!   column; when both `date` and `time` columns exist they are joined. `open`, `high`, `low`,
//!   `close` in any case; other columns are ignored. Times: `YYYY-MM-DD[ HH:MM[:SS]]` (also with
//!   `T` or `.` in the date), RFC 3339 with an offset, or unix seconds. A time without an offset
//!   is UTC plus [`ParseOptions::utc_offset_seconds`].
//! - Prices are plain decimals (`1.09128`, `-3.5`, `1870`), no exponent, no thousands separator.
//! - Blank lines are allowed only at the end of the file.
//!
//! Checks on every row: as many cells as the header, each price a decimal, the time one of the
//! forms above, `low ≤ open, close ≤ high` (so also `high ≥ low`), and time strictly after the
//! previous row's.

mod time;

use std::fmt;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

pub use time::format_rfc3339;

/// One closed bar of one symbol and timeframe, with the prices the file wrote.
///
/// Invariant (when built by the reader): `low ≤ open ≤ high` and `low ≤ close ≤ high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Bar {
    /// The bar's open time, unix milliseconds, UTC.
    pub time_unix_ms: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
}

/// A bar in f64, the representation the strategy computes in (fib-rsi.md, Arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BarF64 {
    /// The bar's open time, unix milliseconds, UTC.
    pub time_unix_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
}

impl Bar {
    /// The bar in f64, every price correctly rounded from its exact decimal.
    pub fn to_f64(&self) -> BarF64 {
        BarF64 {
            time_unix_ms: self.time_unix_ms,
            open: decimal_to_f64(self.open),
            high: decimal_to_f64(self.high),
            low: decimal_to_f64(self.low),
            close: decimal_to_f64(self.close),
        }
    }
}

/// The f64 nearest to `d` (round half to even), the same double that parsing its decimal text
/// gives in Rust, Python or C.
///
/// Prices have short mantissas and few decimals, so the fast path is exact: an integer below
/// 2^53 and a power of ten up to 10^22 are both exact doubles, and one IEEE division of two exact
/// operands is correctly rounded (Clinger's fast path). Other values go through the decimal text.
pub fn decimal_to_f64(d: Decimal) -> f64 {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let mantissa = d.mantissa();
    let scale = d.scale() as usize;
    if mantissa.unsigned_abs() < (1u128 << 53) && scale < POW10.len() {
        // The cast is exact: |mantissa| < 2^53.
        return mantissa as f64 / POW10[scale];
    }
    d.to_string().parse::<f64>().unwrap_or_else(|_| d.to_f64().unwrap_or(f64::NAN))
}

/// How to read times that carry no offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// The file's clock minus UTC, in seconds: 0 (the default) when the file is in UTC, 7200 for
    /// a broker whose server time is UTC+2. A fixed offset: a file spanning a DST change of the
    /// broker's clock must be converted before it is read. Times with an RFC 3339 offset or in
    /// unix seconds ignore it.
    pub utc_offset_seconds: i32,
}

/// The one column a cell error is about: its 1-based position and its header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// 1-based position in the row.
    pub index: usize,
    /// The header's name for it, as written.
    pub name: String,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "column {}", self.index)
        } else {
            write!(f, "column {} ({})", self.index, self.name)
        }
    }
}

/// Why a bar file was refused. Lines and columns are 1-based, as an editor shows them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BarFileError {
    /// The file holds no header (nothing but whitespace).
    #[error("line 1: the file is empty, expected a header line")]
    Empty,
    /// The bytes are not UTF-8 (nor UTF-16 with a byte-order mark).
    #[error("line {line}, character {character}: not UTF-8 text")]
    NotText {
        /// The line holding the first invalid byte.
        line: usize,
        /// 1-based position of the first invalid character in that line.
        character: usize,
    },
    /// The header names no column for a required field.
    #[error(
        "line 1: the header has no `{field}` column (expected time/date/datetime/timestamp or an unnamed first column, and open, high, low, close)"
    )]
    MissingColumn {
        /// The field looked for: `time`, `open`, `high`, `low` or `close`.
        field: &'static str,
    },
    /// Two header columns claim the same field.
    #[error("line 1, column {index}: `{name}` names a field that an earlier column already holds")]
    DuplicateColumn {
        /// 1-based position of the second column.
        index: usize,
        /// Its name, as written.
        name: String,
    },
    /// A header and nothing else.
    #[error("line {line}: no bars after the header")]
    NoBars {
        /// The last line of the file.
        line: usize,
    },
    /// A blank line between bars (only trailing blank lines are allowed).
    #[error("line {line}: blank line between bars")]
    BlankLine {
        /// The blank line.
        line: usize,
    },
    /// A row with fewer cells than the header.
    #[error("line {line}: {found} cells, the header has {expected}; {missing} is missing")]
    ShortRow {
        /// The row's line.
        line: usize,
        /// Cells in the header.
        expected: usize,
        /// Cells in the row.
        found: usize,
        /// The first missing column.
        missing: Column,
    },
    /// A row with more cells than the header; the first extra cell is column `expected + 1`.
    #[error("line {line}, column {}: {found} cells, the header has {expected}", expected + 1)]
    LongRow {
        /// The row's line.
        line: usize,
        /// Cells in the header.
        expected: usize,
        /// Cells in the row.
        found: usize,
    },
    /// A price cell that is not a plain decimal number.
    #[error("line {line}, {column}: `{text}` is not a decimal number")]
    BadNumber {
        /// The row's line.
        line: usize,
        /// The cell's column.
        column: Column,
        /// The cell as written.
        text: String,
    },
    /// A time cell in none of the accepted forms (or out of range).
    #[error(
        "line {line}, {column}: `{text}` is not a time (expected YYYY-MM-DD[ HH:MM[:SS]], RFC 3339 or unix seconds)"
    )]
    BadTime {
        /// The row's line.
        line: usize,
        /// The cell's column (the date column when date and time are separate).
        column: Column,
        /// The cell(s) as written.
        text: String,
    },
    /// `high < low`.
    #[error("line {line}, {column}: high {high} is below low {low}")]
    HighBelowLow {
        /// The row's line.
        line: usize,
        /// The high column.
        column: Column,
        high: Decimal,
        low: Decimal,
    },
    /// An open or a close outside `low ..= high`.
    #[error("line {line}, {column}: {value} is outside the bar's range {low} ..= {high}")]
    OutsideRange {
        /// The row's line.
        line: usize,
        /// The open or close column.
        column: Column,
        value: Decimal,
        low: Decimal,
        high: Decimal,
    },
    /// A time not strictly after the previous row's (a duplicate or the clock going back).
    #[error(
        "line {line}, {column}: time {time} is not after the previous bar's {previous} (line {previous_line})"
    )]
    TimeNotIncreasing {
        /// The row's line.
        line: usize,
        /// The time column.
        column: Column,
        /// This row's time, RFC 3339.
        time: String,
        /// The previous row's time, RFC 3339.
        previous: String,
        /// The previous row's line.
        previous_line: usize,
    },
}

/// Reads a bar file whose times without an offset are UTC.
pub fn parse_bars(bytes: &[u8]) -> Result<Vec<Bar>, BarFileError> {
    parse_bars_with(bytes, &ParseOptions::default())
}

/// Reads a bar file (see the module comment for the accepted forms).
pub fn parse_bars_with(bytes: &[u8], options: &ParseOptions) -> Result<Vec<Bar>, BarFileError> {
    let text = decode(bytes)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));

    let header = match lines.next() {
        Some(h) if !h.trim().is_empty() => h,
        _ => return Err(BarFileError::Empty),
    };
    let layout = Layout::from_header(header)?;

    let mut bars = Vec::with_capacity(text.len() / 48);
    let mut cells: Vec<&str> = Vec::with_capacity(layout.names.len());
    let mut blank_at: Option<usize> = None;
    let mut line_no = 1;
    let mut previous_line = 0;
    let offset_ms = i64::from(options.utc_offset_seconds) * 1000;
    for line in lines {
        line_no += 1;
        if line.trim().is_empty() {
            blank_at.get_or_insert(line_no);
            continue;
        }
        if let Some(blank) = blank_at {
            return Err(BarFileError::BlankLine { line: blank });
        }
        cells.clear();
        cells.extend(line.split(layout.delimiter).map(unquote));
        let bar = layout.row(line_no, &cells, offset_ms)?;
        if let Some(prev) = bars.last().map(|b: &Bar| b.time_unix_ms)
            && bar.time_unix_ms <= prev
        {
            return Err(BarFileError::TimeNotIncreasing {
                line: line_no,
                column: layout.column(layout.time),
                time: format_rfc3339(bar.time_unix_ms),
                previous: format_rfc3339(prev),
                previous_line,
            });
        }
        previous_line = line_no;
        bars.push(bar);
    }
    if bars.is_empty() {
        return Err(BarFileError::NoBars { line: line_no });
    }
    Ok(bars)
}

/// The text of the file: UTF-16 when it starts with a byte-order mark, UTF-8 otherwise.
fn decode(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, BarFileError> {
    let utf16 = |rest: &[u8], from: fn([u8; 2]) -> u16| {
        let units = rest.chunks(2).map(|c| from([c[0], *c.get(1).unwrap_or(&0)]));
        let mut out = String::with_capacity(rest.len() / 2);
        let (mut line, mut character) = (1, 1);
        for ch in char::decode_utf16(units) {
            match ch {
                Ok(c) => {
                    if c == '\n' {
                        (line, character) = (line + 1, 1);
                    } else {
                        character += 1;
                    }
                    out.push(c);
                }
                Err(_) => return Err(BarFileError::NotText { line, character }),
            }
        }
        if rest.len() % 2 == 1 {
            return Err(BarFileError::NotText { line, character });
        }
        Ok(std::borrow::Cow::Owned(out))
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, u16::from_be_bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(std::borrow::Cow::Borrowed(s)),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            // The prefix is valid UTF-8 by definition of `valid_up_to`.
            let character =
                1 + std::str::from_utf8(&valid[line_start..]).map_or(0, |s| s.chars().count());
            Err(BarFileError::NotText { line, character })
        }
    }
}

/// Where each field sits in a row, learned from the header.
struct Layout {
    delimiter: char,
    names: Vec<String>,
    /// The time column, or the date column when date and time are separate.
    time: usize,
    /// The separate time-of-day column, when the file has one next to a date column.
    time_of_day: Option<usize>,
    open: usize,
    high: usize,
    low: usize,
    close: usize,
}

impl Layout {
    fn from_header(header: &str) -> Result<Self, BarFileError> {
        let delimiter = if header.contains('\t') {
            '\t'
        } else if header.contains(';') {
            ';'
        } else {
            ','
        };
        let names: Vec<String> = header.split(delimiter).map(|n| unquote(n).to_owned()).collect();
        let mut slots: [Option<usize>; 8] = [None; 8];
        const DATE: usize = 0;
        const TIME: usize = 1;
        const DATETIME: usize = 2;
        const TIMESTAMP: usize = 3;
        const OPEN: usize = 4;
        const HIGH: usize = 5;
        const LOW: usize = 6;
        const CLOSE: usize = 7;
        for (i, raw) in names.iter().enumerate() {
            let key = raw.trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase();
            let slot = match key.as_str() {
                "date" => DATE,
                "time" => TIME,
                "datetime" => DATETIME,
                "timestamp" => TIMESTAMP,
                "open" => OPEN,
                "high" => HIGH,
                "low" => LOW,
                "close" => CLOSE,
                _ => continue,
            };
            if slots[slot].is_some() {
                return Err(BarFileError::DuplicateColumn { index: i + 1, name: raw.clone() });
            }
            slots[slot] = Some(i);
        }
        let need = |slot: usize, field: &'static str| {
            slots[slot].ok_or(BarFileError::MissingColumn { field })
        };
        let (time, time_of_day) = match slots {
            [Some(d), Some(t), ..] => (d, Some(t)),
            [_, _, Some(dt), ..] => (dt, None),
            [_, _, _, Some(ts), ..] => (ts, None),
            [Some(d), None, ..] => (d, None),
            [None, Some(t), ..] => (t, None),
            _ if names.first().is_some_and(|n| n.is_empty()) => (0, None),
            _ => return Err(BarFileError::MissingColumn { field: "time" }),
        };
        Ok(Self {
            delimiter,
            time,
            time_of_day,
            open: need(OPEN, "open")?,
            high: need(HIGH, "high")?,
            low: need(LOW, "low")?,
            close: need(CLOSE, "close")?,
            names,
        })
    }

    fn column(&self, index: usize) -> Column {
        Column { index: index + 1, name: self.names[index].clone() }
    }

    fn row(&self, line: usize, cells: &[&str], offset_ms: i64) -> Result<Bar, BarFileError> {
        let expected = self.names.len();
        if cells.len() < expected {
            return Err(BarFileError::ShortRow {
                line,
                expected,
                found: cells.len(),
                missing: self.column(cells.len()),
            });
        }
        if cells.len() > expected {
            return Err(BarFileError::LongRow { line, expected, found: cells.len() });
        }
        let time_unix_ms = self.time(line, cells, offset_ms)?;
        let price = |i: usize| {
            parse_decimal(cells[i]).ok_or_else(|| BarFileError::BadNumber {
                line,
                column: self.column(i),
                text: cells[i].to_owned(),
            })
        };
        let (open, high, low, close) =
            (price(self.open)?, price(self.high)?, price(self.low)?, price(self.close)?);
        if high < low {
            return Err(BarFileError::HighBelowLow {
                line,
                column: self.column(self.high),
                high,
                low,
            });
        }
        for (value, i) in [(open, self.open), (close, self.close)] {
            if value < low || value > high {
                return Err(BarFileError::OutsideRange {
                    line,
                    column: self.column(i),
                    value,
                    low,
                    high,
                });
            }
        }
        Ok(Bar { time_unix_ms, open, high, low, close })
    }

    fn time(&self, line: usize, cells: &[&str], offset_ms: i64) -> Result<i64, BarFileError> {
        let bad =
            |text: String| BarFileError::BadTime { line, column: self.column(self.time), text };
        let cell = cells[self.time];
        match self.time_of_day {
            Some(t) => {
                let days =
                    time::parse_date(cell).ok_or_else(|| bad(format!("{cell} {}", cells[t])))?;
                let secs =
                    time::parse_time_of_day(cells[t]).ok_or_else(|| BarFileError::BadTime {
                        line,
                        column: self.column(t),
                        text: cells[t].to_owned(),
                    })?;
                Ok((days * 86_400 + secs) * 1000 - offset_ms)
            }
            None => {
                let (ms, civil) =
                    time::parse_timestamp(cell).ok_or_else(|| bad(cell.to_owned()))?;
                Ok(if civil { ms - offset_ms } else { ms })
            }
        }
    }
}

/// A cell without surrounding blanks and one pair of surrounding double quotes (spreadsheets
/// quote every cell); a delimiter inside quotes is not supported, no bar file needs one.
fn unquote(cell: &str) -> &str {
    let cell = cell.trim();
    cell.strip_prefix('"').and_then(|c| c.strip_suffix('"')).map_or(cell, str::trim)
}

/// A plain decimal: optional sign, digits, optional `.` and digits. No exponent, no `_`, no
/// spaces, no bare `.5` or `5.`.
fn parse_decimal(s: &str) -> Option<Decimal> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (body, "0"),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return None;
    }
    s.parse::<Decimal>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "time,open,high,low,close,volume";

    /// Parses `text` and compares the error's message with `expect`.
    fn check_err(text: &str, expect: &str) {
        match parse_bars(text.as_bytes()) {
            Ok(bars) => panic!("expected error `{expect}`, parsed {} bars", bars.len()),
            Err(e) => assert_eq!(e.to_string(), expect, "input:\n{text}"),
        }
    }

    fn dec(s: &str) -> Decimal {
        s.parse().expect("test literal")
    }

    #[test]
    fn reads_generic_csv() {
        let text = format!(
            "{HEADER}\n2017-04-19 09:00:00,1.0716,1.0722,1.07083,1.07219,1413\n2017-04-19 10:00:00,1.07214,1.07296,1.07214,1.0726,1241\n"
        );
        let bars = parse_bars(text.as_bytes()).expect("valid file");
        assert_eq!(bars.len(), 2);
        assert_eq!(format_rfc3339(bars[0].time_unix_ms), "2017-04-19T09:00:00Z");
        assert_eq!(bars[0].open, dec("1.0716"));
        assert_eq!(bars[0].high, dec("1.0722"));
        assert_eq!(bars[0].low, dec("1.07083"));
        assert_eq!(bars[0].close, dec("1.07219"));
        assert_eq!(bars[1].to_f64().close, 1.0726);
    }

    #[test]
    fn reads_mt5_export_intraday_and_daily() {
        let h1 = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\r\n\
                  2017.05.02\t04:00:00\t1.09\t1.1\t1.08\t1.095\t100\t0\t2\r\n\
                  2017.05.02\t05:00:00\t1.095\t1.1\t1.09\t1.099\t100\t0\t2\r\n";
        let bars = parse_bars(h1.as_bytes()).expect("valid H1 export");
        assert_eq!(format_rfc3339(bars[1].time_unix_ms), "2017-05-02T05:00:00Z");
        let shifted =
            parse_bars_with(h1.as_bytes(), &ParseOptions { utc_offset_seconds: 3 * 3600 })
                .expect("valid H1 export");
        assert_eq!(format_rfc3339(shifted[0].time_unix_ms), "2017-05-02T01:00:00Z");

        let d1 = "<DATE>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n\
                  2017.05.01\t1.09\t1.1\t1.08\t1.095\t100\t0\t2\n\
                  2017.05.02\t1.095\t1.1\t1.09\t1.099\t100\t0\t2\n";
        let bars = parse_bars(d1.as_bytes()).expect("valid D1 export");
        assert_eq!(format_rfc3339(bars[1].time_unix_ms), "2017-05-02T00:00:00Z");
    }

    #[test]
    fn reads_utf16le_with_bom() {
        let text =
            "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\n2017.05.02\t04:00\t1\t2\t0.5\t1.5\n";
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let bars = parse_bars(&bytes).expect("valid UTF-16 export");
        assert_eq!(bars[0].close, dec("1.5"));
    }

    #[test]
    fn reads_semicolons_case_unnamed_first_column_and_time_forms() {
        let text = ";Close;OPEN;High;low;extra\n\
                    1493697600;1.5;1;2;0.5;x\n\
                    2017-05-02T05:00:00Z;1.5;1;2;0.5;y\n\
                    2017-05-02T08:00:00+02:00;1.5;1;2;0.5;z\n\
                    2017-05-02 07:00;1.5;1;2;0.5;w\n\n\n";
        let bars = parse_bars(text.as_bytes()).expect("valid file");
        let times: Vec<_> = bars.iter().map(|b| format_rfc3339(b.time_unix_ms)).collect();
        assert_eq!(
            times,
            [
                "2017-05-02T04:00:00Z",
                "2017-05-02T05:00:00Z",
                "2017-05-02T06:00:00Z",
                "2017-05-02T07:00:00Z"
            ]
        );
        assert_eq!(bars[0].open, dec("1"));
        assert_eq!(bars[0].close, dec("1.5"));
    }

    #[test]
    fn quoted_cells_are_unquoted() {
        let text = "\"Date\",\"Open\",\"High\",\"Low\",\"Close\"\n\"2017-05-02 04:00\",\"1\",\"2\",\"0.5\",\"1.5\"\n";
        let bars = parse_bars(text.as_bytes()).expect("valid file");
        assert_eq!(bars[0].low, dec("0.5"));
        check_err(
            "time,open,high,low,close\n2017-05-02 04:00,\"1\",2,\"0,5\",1.5\n",
            "line 2, column 6: 6 cells, the header has 5",
        );
    }

    #[test]
    fn separate_date_and_time_columns_are_joined() {
        let text = "Date,Time,Open,High,Low,Close\n2017-05-02,04:00,1,2,0.5,1.5\n";
        let bars = parse_bars(text.as_bytes()).expect("valid file");
        assert_eq!(format_rfc3339(bars[0].time_unix_ms), "2017-05-02T04:00:00Z");
    }

    #[test]
    fn empty_file() {
        check_err("", "line 1: the file is empty, expected a header line");
        check_err(" \n\n", "line 1: the file is empty, expected a header line");
    }

    #[test]
    fn header_only() {
        check_err(&format!("{HEADER}\n"), "line 2: no bars after the header");
    }

    #[test]
    fn not_text() {
        let mut bytes = format!("{HEADER}\n2017-05-02,1,2,0.5,1.5,0\n").into_bytes();
        bytes.extend([0xC3, 0x28, b'\n']);
        let err = parse_bars(&bytes).expect_err("invalid UTF-8");
        assert_eq!(err.to_string(), "line 3, character 1: not UTF-8 text");
        let err = parse_bars(b"time,op\xe9n,high,low,close\n").expect_err("Latin-1 header");
        assert_eq!(err.to_string(), "line 1, character 8: not UTF-8 text");
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend("time\nab".encode_utf16().flat_map(u16::to_le_bytes));
        utf16.extend(0xD800u16.to_le_bytes());
        let err = parse_bars(&utf16).expect_err("a lone surrogate");
        assert_eq!(err.to_string(), "line 2, character 3: not UTF-8 text");
    }

    #[test]
    fn missing_and_duplicate_columns() {
        check_err(
            "time,open,high,close\n2017-05-02,1,2,1\n",
            "line 1: the header has no `low` column (expected time/date/datetime/timestamp or an unnamed first column, and open, high, low, close)",
        );
        check_err(
            "when,open,high,low,close\n2017-05-02,1,2,0.5,1\n",
            "line 1: the header has no `time` column (expected time/date/datetime/timestamp or an unnamed first column, and open, high, low, close)",
        );
        check_err(
            "time,open,high,low,close,Close\n2017-05-02,1,2,0.5,1,1\n",
            "line 1, column 6: `Close` names a field that an earlier column already holds",
        );
    }

    #[test]
    fn short_row() {
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,0.5,1.5,7\n2017-05-02 05:00,1,2,0.5\n"),
            "line 3: 4 cells, the header has 6; column 5 (close) is missing",
        );
    }

    #[test]
    fn long_row() {
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,0.5,1.5,7,8\n"),
            "line 2, column 7: 7 cells, the header has 6",
        );
    }

    #[test]
    fn non_number() {
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,abc,1.5,7\n"),
            "line 2, column 4 (low): `abc` is not a decimal number",
        );
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,,1.5,7\n"),
            "line 2, column 4 (low): `` is not a decimal number",
        );
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1e0,2,0.5,1.5,7\n"),
            "line 2, column 2 (open): `1e0` is not a decimal number",
        );
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,0.5,NaN,7\n"),
            "line 2, column 5 (close): `NaN` is not a decimal number",
        );
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,0.5,.,7\n"),
            "line 2, column 5 (close): `.` is not a decimal number",
        );
    }

    #[test]
    fn bad_time() {
        check_err(
            &format!("{HEADER}\n2017-02-30 04:00,1,2,0.5,1.5,7\n"),
            "line 2, column 1 (time): `2017-02-30 04:00` is not a time (expected YYYY-MM-DD[ HH:MM[:SS]], RFC 3339 or unix seconds)",
        );
        check_err(
            "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\n2017.05.02\t25:00\t1\t2\t0.5\t1.5\n",
            "line 2, column 2 (<TIME>): `25:00` is not a time (expected YYYY-MM-DD[ HH:MM[:SS]], RFC 3339 or unix seconds)",
        );
    }

    #[test]
    fn high_below_low() {
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,0.5,2,1,7\n"),
            "line 2, column 3 (high): high 0.5 is below low 2",
        );
    }

    #[test]
    fn open_or_close_outside_the_range() {
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,0.5,2.5,7\n"),
            "line 2, column 5 (close): 2.5 is outside the bar's range 0.5 ..= 2",
        );
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,0.4,2,0.5,1,7\n"),
            "line 2, column 2 (open): 0.4 is outside the bar's range 0.5 ..= 2",
        );
    }

    #[test]
    fn times_going_backwards_or_repeating() {
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,0.5,1,7\n2017-05-02 03:00,1,2,0.5,1,7\n"),
            "line 3, column 1 (time): time 2017-05-02T03:00:00Z is not after the previous bar's 2017-05-02T04:00:00Z (line 2)",
        );
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,0.5,1,7\n2017-05-02 04:00,1,2,0.5,1,7\n"),
            "line 3, column 1 (time): time 2017-05-02T04:00:00Z is not after the previous bar's 2017-05-02T04:00:00Z (line 2)",
        );
    }

    #[test]
    fn blank_line_between_bars() {
        check_err(
            &format!("{HEADER}\n2017-05-02 04:00,1,2,0.5,1,7\n\n2017-05-02 05:00,1,2,0.5,1,7\n"),
            "line 3: blank line between bars",
        );
    }

    #[test]
    fn f64_conversion_is_correctly_rounded() {
        for text in [
            "1.09128",
            "0.1",
            "1.0716",
            "1870.25",
            "-3.5",
            "123456789.123456789",
            "0.30000000000000004",
        ] {
            let want: f64 = text.parse().expect("literal");
            assert_eq!(decimal_to_f64(dec(text)).to_bits(), want.to_bits(), "{text}");
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the reader.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_bars(&bytes);
        }

        /// Arbitrary text after a valid header never panics the reader.
        #[test]
        fn arbitrary_rows_never_panic(rows in "[0-9a-z,;.: \\-\n\t+]{0,300}") {
            let _ = parse_bars(format!("{HEADER}\n{rows}").as_bytes());
        }

        /// Every decimal with up to 15 significant digits converts to the double its text parses to.
        #[test]
        fn decimal_to_f64_matches_text_parse(m in -999_999_999_999_999i64..999_999_999_999_999, scale in 0u32..20) {
            let d = Decimal::new(m, scale);
            let want: f64 = d.to_string().parse().expect("decimal text");
            proptest::prop_assert_eq!(decimal_to_f64(d).to_bits(), want.to_bits());
        }
    }
}

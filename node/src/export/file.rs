//! The export as a file to download, shared by the UI (`GET /history/export.csv|json`) and the
//! local API (`GET /api/v1/trades?format=csv|json`): the query (`from`, `to`: broker server
//! days `YYYY-MM-DD`, inclusive, on the close; `account`; the API's `format`), one account read
//! from the store in one read transaction, the file with its name
//! (`tradecast-trades-<YYYY-MM-DD>.<csv|json>`, the UTC day of the download).
//!
//! A query that does not parse is a [`QueryError`], answered 400 problem+json by both routes; a
//! store that cannot be read is an [`ExportError`], never an empty file.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use serde::Deserialize;
use tradecast_protocol::EquityPoint;
use tradecast_protocol::ea::{Deal, SymbolSpec};

use super::gain::Balances;
use super::{Account, Book, PositionFacts, json, myfxbook, pair};
use crate::runtime::{AccountRow, Node, NodeError, PositionRow};
use crate::store;

/// Which file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Myfxbook CSV ([`myfxbook`]).
    Csv,
    /// Tradecast's JSON ([`json`]).
    Json,
}

impl Format {
    /// `csv` or `json`; the API's default (no `format`) is JSON.
    pub fn parse(text: Option<&str>) -> Result<Format, QueryError> {
        match text {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(QueryError::Format(other.to_owned())),
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// The query of both routes (the UI's ignores `format`: its path says it).
#[derive(Debug, Default, Deserialize)]
pub struct ExportQuery {
    /// First broker server day of the closes, `YYYY-MM-DD`.
    #[serde(default)]
    pub from: Option<String>,
    /// Last broker server day of the closes, `YYYY-MM-DD`.
    #[serde(default)]
    pub to: Option<String>,
    /// `login@server`; default: the first account (as the pages show it).
    #[serde(default)]
    pub account: Option<String>,
    /// `csv` or `json` (the API only).
    #[serde(default)]
    pub format: Option<String>,
}

impl ExportQuery {
    /// The format (the path's when it names one, else the query's `format`) and the days.
    pub fn parse(&self, path_format: Option<Format>) -> Result<(Format, DateRange), QueryError> {
        let format = match path_format {
            Some(f) => f,
            None => Format::parse(self.format.as_deref())?,
        };
        Ok((format, DateRange::parse(self.from.as_deref(), self.to.as_deref())?))
    }
}

/// The days of the broker's server calendar whose closes go in the file (both ends included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRange {
    /// First day, if bounded.
    pub from: Option<Date>,
    /// Last day, if bounded.
    pub to: Option<Date>,
}

impl DateRange {
    /// The range of a query's `from` and `to`.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<DateRange, QueryError> {
        let range = DateRange { from: day("from", from)?, to: day("to", to)? };
        if let (Some(f), Some(t)) = (range.from, range.to)
            && f > t
        {
            return Err(QueryError::Backwards { from: f.to_string(), to: t.to_string() });
        }
        Ok(range)
    }

    /// Whether a trade closed at `close_ms` (UTC) on a server `offset_s` from UTC is in range.
    /// Unbounded, every trade is; bounded, a time out of the calendar's range is not.
    pub fn holds(&self, close_ms: i64, offset_s: i32) -> bool {
        if self.from.is_none() && self.to.is_none() {
            return true;
        }
        let (Ok(ts), Ok(offset)) =
            (jiff::Timestamp::from_millisecond(close_ms), jiff::tz::Offset::from_seconds(offset_s))
        else {
            return false;
        };
        let day = offset.to_datetime(ts).date();
        self.from.is_none_or(|f| day >= f) && self.to.is_none_or(|t| day <= t)
    }
}

/// A `YYYY-MM-DD` day, exactly that shape.
fn day(field: &'static str, text: Option<&str>) -> Result<Option<Date>, QueryError> {
    let Some(text) = text else { return Ok(None) };
    let wrong = || QueryError::Date { field, value: text.chars().take(40).collect() };
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(wrong());
    }
    Date::strptime("%Y-%m-%d", text).map(Some).map_err(|_| wrong())
}

/// A query the export routes refuse: 400 problem+json, the words saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// `from` or `to` is not a calendar day written `YYYY-MM-DD` (`invalid-date`).
    #[error("{field}: `{value}` is not a date (YYYY-MM-DD)")]
    Date {
        /// `from` or `to`.
        field: &'static str,
        /// What was sent (its first 40 characters).
        value: String,
    },
    /// `from` is after `to` (`invalid-date`).
    #[error("from {from} is after to {to}")]
    Backwards {
        /// The first day asked.
        from: String,
        /// The last day asked.
        to: String,
    },
    /// A `format` other than `csv` or `json` (`invalid-format`).
    #[error("format: `{0}` is neither csv nor json")]
    Format(String),
    /// The query string itself does not parse (`bad-request`).
    #[error("{0}")]
    Malformed(String),
}

impl QueryError {
    /// The problem's code.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Date { .. } | QueryError::Backwards { .. } => "invalid-date",
            QueryError::Format(_) => "invalid-format",
            QueryError::Malformed(_) => "bad-request",
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let code = self.code();
        let body = serde_json::json!({
            "type": format!("urn:tradecast:problem:{code}"),
            "title": code,
            "status": 400,
            "detail": self.to_string(),
            "code": code,
        });
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// Why no file was made: the node's store failed (or the account is unknown), or the JSON
/// could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The node refused (no such account, no EA yet: 422) or its store failed (500).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The JSON encoder failed (500).
    #[error("the JSON could not be written: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A file to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// `tradecast-trades-<YYYY-MM-DD>.<csv|json>`.
    pub filename: String,
    /// Its media type.
    pub content_type: &'static str,
    /// The file.
    pub body: String,
}

impl IntoResponse for Download {
    fn into_response(self) -> Response {
        let disposition = format!("attachment; filename=\"{}\"", self.filename);
        let mut resp = (StatusCode::OK, self.body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        resp
    }
}

/// One account's closed trades and what the writers need, read in one transaction.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What the files say of the account.
    pub account: Account,
    /// The closed trades, each with the balance before its close where known.
    pub book: Book,
    /// The digits of each symbol the broker has a spec for.
    pub digits: BTreeMap<String, u32>,
}

/// Reads `account` from the node's store and pairs its deals.
pub fn load(node: &Node, account: &str) -> Result<Loaded, NodeError> {
    let view = node.store().read()?;
    let row: AccountRow = view
        .get_json(store::ACCOUNTS, "accounts", account)?
        .ok_or_else(|| NodeError::Refused(format!("no account {account}")))?;
    let deals: Vec<Deal> = view.deals(account)?;
    let positions: BTreeMap<u64, PositionFacts> = view
        .positions::<PositionRow>(account)?
        .into_iter()
        .map(|p| (p.position_id, PositionFacts { sl: p.sl, tp: p.tp, signal_id: p.signal_id }))
        .collect();
    let specs: Vec<SymbolSpec> = view.symbol_specs(account)?;
    let points: Vec<EquityPoint> = view.equity(account)?;
    drop(view);
    let mut book = pair(&deals, &positions);
    Balances::new(&points, &deals).fill(&mut book.trades);
    if book.n_left_out > 0 {
        tracing::info!(target: "tradecast::export", n_left_out = book.n_left_out,
            "closes left out of the export: no opening deal in the node's history");
    }
    Ok(Loaded {
        account: Account {
            currency: row.currency,
            server: Some(row.server).filter(|s| !s.is_empty()),
            server_utc_offset_s: row.server_utc_offset_s,
        },
        book,
        digits: specs.into_iter().map(|s| (s.symbol, s.digits)).collect(),
    })
}

/// The file of `account` (default: the first) in `format`, its closes in `range`, named for
/// the UTC day of `today_ms`.
pub fn download(
    node: &Node,
    account: Option<&str>,
    format: Format,
    range: DateRange,
    today_ms: i64,
) -> Result<Download, ExportError> {
    let account = node.pick_account(account)?;
    let mut loaded = load(node, &account)?;
    let offset_s = loaded.account.server_utc_offset_s;
    loaded.book.trades.retain(|t| range.holds(t.close_time_ms, offset_s));
    let body = match format {
        Format::Csv => myfxbook::write(&loaded.book.trades, &loaded.account, &loaded.digits),
        Format::Json => json::write(&loaded.book.trades, &loaded.account)?,
    };
    let day = jiff::Timestamp::from_millisecond(today_ms)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| "export".to_owned());
    Ok(Download {
        filename: format!("tradecast-trades-{day}.{}", format.extension()),
        content_type: format.content_type(),
        body,
    })
}

//! The closed trades as Tradecast's JSON (`tradecast-trades/v1`): every figure an exact decimal
//! written as a string, times RFC 3339 in UTC. Shaped for sharing: the account is its currency
//! and its broker server only, never the login, the broker's account number, EA key ids or a
//! name.
//!
//! ```json
//! {"format":"tradecast-trades/v1","account":{"currency":"USD","server":"Broker-Demo"},
//!  "trades":[{"position":5001,"symbol":"EURUSD","side":"buy","lots":"0.10",
//!   "open_time":"2026-03-02T09:00:00Z","close_time":"2026-03-02T11:30:00Z",
//!   "open_price":"1.08500","close_price":"1.08750","sl":"1.08300","tp":"1.08900",
//!   "commission":"-0.70","swap":"0.00","fee":"0.00","profit":"25.00","net":"24.30",
//!   "signal_id":"…"}]}
//! ```

use rust_decimal::Decimal;
use serde::Serialize;

use super::{Account, ClosedTrade};

/// The `format` of the document.
pub const FORMAT: &str = "tradecast-trades/v1";

#[derive(Debug, Serialize)]
struct Document<'a> {
    format: &'static str,
    account: AccountJson<'a>,
    trades: Vec<TradeJson<'a>>,
}

#[derive(Debug, Serialize)]
struct AccountJson<'a> {
    currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct TradeJson<'a> {
    position: u64,
    symbol: &'a str,
    side: &'static str,
    lots: Decimal,
    open_time: String,
    close_time: String,
    open_price: Decimal,
    close_price: Decimal,
    sl: Option<Decimal>,
    tp: Option<Decimal>,
    commission: Decimal,
    swap: Decimal,
    fee: Decimal,
    profit: Decimal,
    /// `None` only on an overflow, which no real account reaches (then `null`).
    net: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_id: Option<String>,
}

/// `ms` as RFC 3339 UTC (`2026-03-02T09:00:00Z`, milliseconds when there are any); empty when
/// out of range.
pub fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

fn trade(t: &ClosedTrade) -> TradeJson<'_> {
    TradeJson {
        position: t.position_id,
        symbol: &t.symbol,
        side: t.side.as_str(),
        lots: t.lots,
        open_time: utc(t.open_time_ms),
        close_time: utc(t.close_time_ms),
        open_price: t.open_price,
        close_price: t.close_price,
        sl: t.sl,
        tp: t.tp,
        commission: t.commission,
        swap: t.swap,
        fee: t.fee,
        profit: t.profit,
        net: t.net(),
        signal_id: t.signal_id.map(|s| s.to_hex()),
    }
}

/// The document, pretty-printed (a trader may read it).
pub fn write(trades: &[ClosedTrade], account: &Account) -> Result<String, serde_json::Error> {
    let doc = Document {
        format: FORMAT,
        account: AccountJson {
            currency: &account.currency,
            server: account.server.as_deref().filter(|s| !s.is_empty()),
        },
        trades: trades.iter().map(trade).collect(),
    };
    serde_json::to_string_pretty(&doc)
}

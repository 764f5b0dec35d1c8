//! MT5's trade return codes (`TRADE_RETCODE_*`), the numbers the simulated broker answers with
//! and the EA puts in its acks, so that what a trader reads matches what MT5 shows.

/// Requote: the price moved beyond the deviation (instant execution).
pub const REQUOTE: u32 = 10004;
/// Request rejected by the server.
pub const REJECT: u32 = 10006;
/// Request cancelled by the trader.
pub const CANCEL: u32 = 10007;
/// Pending order placed.
pub const PLACED: u32 = 10008;
/// Request completed.
pub const DONE: u32 = 10009;
/// Only part of the request was completed.
pub const DONE_PARTIAL: u32 = 10010;
/// Request processing error.
pub const ERROR: u32 = 10011;
/// Request cancelled by timeout.
pub const TIMEOUT: u32 = 10012;
/// Invalid request.
pub const INVALID: u32 = 10013;
/// Invalid volume.
pub const INVALID_VOLUME: u32 = 10014;
/// Invalid price.
pub const INVALID_PRICE: u32 = 10015;
/// Invalid stops.
pub const INVALID_STOPS: u32 = 10016;
/// Trade disabled.
pub const TRADE_DISABLED: u32 = 10017;
/// Market closed.
pub const MARKET_CLOSED: u32 = 10018;
/// Not enough money.
pub const NO_MONEY: u32 = 10019;
/// Prices changed.
pub const PRICE_CHANGED: u32 = 10020;
/// No quotes.
pub const PRICE_OFF: u32 = 10021;
/// Invalid expiration.
pub const INVALID_EXPIRATION: u32 = 10022;
/// No changes in the request.
pub const NO_CHANGES: u32 = 10025;
/// Order or position frozen (within the freeze level).
pub const FROZEN: u32 = 10029;
/// Invalid fill type.
pub const INVALID_FILL: u32 = 10030;
/// No connection with the trade server.
pub const CONNECTION: u32 = 10031;
/// Invalid or nonexistent order ticket.
pub const INVALID_ORDER: u32 = 10035;
/// The position was already closed.
pub const POSITION_CLOSED: u32 = 10036;
/// The close volume exceeds the position's volume.
pub const INVALID_CLOSE_VOLUME: u32 = 10038;
/// Only long positions allowed.
pub const LONG_ONLY: u32 = 10042;
/// Only short positions allowed.
pub const SHORT_ONLY: u32 = 10043;
/// Only closing allowed.
pub const CLOSE_ONLY: u32 = 10044;

/// Whether a retcode means the request was carried out (wholly or partly, or placed).
pub fn is_success(retcode: u32) -> bool {
    matches!(retcode, PLACED | DONE | DONE_PARTIAL)
}

/// Whether a retcode leaves the outcome unknown: the EA must look the order up before it acks.
pub fn is_unknown(retcode: u32) -> bool {
    matches!(retcode, TIMEOUT | CONNECTION | 0)
}

/// MT5's words for a retcode.
pub fn describe(retcode: u32) -> &'static str {
    match retcode {
        REQUOTE => "Requote",
        REJECT => "Request rejected",
        CANCEL => "Request canceled by trader",
        PLACED => "Order placed",
        DONE => "Request completed",
        DONE_PARTIAL => "Only part of the request was completed",
        ERROR => "Request processing error",
        TIMEOUT => "Request canceled by timeout",
        INVALID => "Invalid request",
        INVALID_VOLUME => "Invalid volume in the request",
        INVALID_PRICE => "Invalid price in the request",
        INVALID_STOPS => "Invalid stops in the request",
        TRADE_DISABLED => "Trade is disabled",
        MARKET_CLOSED => "Market is closed",
        NO_MONEY => "There is not enough money to complete the request",
        PRICE_CHANGED => "Prices changed",
        PRICE_OFF => "There are no quotes to process the request",
        INVALID_EXPIRATION => "Invalid order expiration date in the request",
        NO_CHANGES => "No changes in request",
        FROZEN => "Order or position frozen",
        INVALID_FILL => "Invalid order filling type",
        CONNECTION => "No connection with the trade server",
        INVALID_ORDER => "Invalid or prohibited order type",
        INVALID_CLOSE_VOLUME => "Close volume exceeds the current position volume",
        POSITION_CLOSED => "Position with the specified identifier has already been closed",
        LONG_ONLY => "Only long positions are allowed",
        SHORT_ONLY => "Only short positions are allowed",
        CLOSE_ONLY => "Only position closing is allowed",
        0 => "No result",
        _ => "Unknown return code",
    }
}

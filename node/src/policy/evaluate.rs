//! The evaluation itself: one signal against the settings on the market clock, rule after rule,
//! each step recorded ([`evaluate`]), and when a signal was issued ([`signal_issued_ms`]).

use super::*;

/// When the signal was issued on the market clock: the close of its bar (`bar_time_ms` plus the
/// timeframe; a month for MN1, in UTC). `None` when out of range.
pub fn signal_issued_ms(signal: &Signal) -> Option<i64> {
    let secs: i64 = match signal.timeframe {
        Timeframe::M1 => 60,
        Timeframe::M5 => 300,
        Timeframe::M15 => 900,
        Timeframe::M30 => 1_800,
        Timeframe::H1 => 3_600,
        Timeframe::H4 => 14_400,
        Timeframe::D1 => 86_400,
        Timeframe::W1 => 604_800,
        Timeframe::MN1 => {
            let ts = jiff::Timestamp::from_millisecond(signal.bar_time_ms).ok()?;
            let next = ts
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .checked_add(jiff::Span::new().months(1))
                .ok()?;
            return Some(next.timestamp().as_millisecond());
        }
    };
    signal.bar_time_ms.checked_add(secs * 1_000)
}

fn side_of(side: tradecast_protocol::Side) -> Side {
    match side {
        tradecast_protocol::Side::Buy => Side::Buy,
        tradecast_protocol::Side::Sell => Side::Sell,
    }
}

fn flip(side: Side) -> Side {
    match side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

/// The order kind for a side and entry (after reversing).
fn order_kind(side: Side, entry: EntryKind, reversed: bool) -> OrderKind {
    match (side, entry) {
        (Side::Buy, EntryKind::Market) => OrderKind::Buy,
        (Side::Sell, EntryKind::Market) => OrderKind::Sell,
        // Reversing a pending entry keeps its price: a buy limit (below the market) becomes a
        // sell stop there, a buy stop a sell limit.
        (Side::Buy, EntryKind::Limit) if !reversed => OrderKind::BuyLimit,
        (Side::Buy, EntryKind::Limit) => OrderKind::BuyStop,
        (Side::Sell, EntryKind::Limit) if !reversed => OrderKind::SellLimit,
        (Side::Sell, EntryKind::Limit) => OrderKind::SellStop,
        (Side::Buy, EntryKind::Stop) if !reversed => OrderKind::BuyStop,
        (Side::Buy, EntryKind::Stop) => OrderKind::BuyLimit,
        (Side::Sell, EntryKind::Stop) if !reversed => OrderKind::SellStop,
        (Side::Sell, EntryKind::Stop) => OrderKind::SellLimit,
    }
}

struct Recorder {
    steps: Vec<Step>,
    auto_suspended: bool,
}

impl Recorder {
    fn pass(&mut self, rule: Rule, detail: impl Into<String>) {
        self.steps.push(Step { rule, passed: true, detail: detail.into() });
    }

    fn fail(mut self, rule: Rule, reason: SkipReason) -> Evaluation {
        self.steps.push(Step { rule, passed: false, detail: reason.to_string() });
        Evaluation {
            outcome: Outcome::Skip(reason),
            steps: self.steps,
            auto_suspended: self.auto_suspended,
        }
    }
}

/// Evaluates one signal (see the module doc for the steps).
pub fn evaluate(settings: &PolicySettings, input: &EvaluationInput<'_>) -> Evaluation {
    let suspended = input.guard_locked || !input.plan.allows_auto();
    let mut rec = Recorder { steps: Vec::new(), auto_suspended: suspended };
    let signal = input.signal;

    if let Err(e) = settings.validate() {
        return rec.fail(Rule::Settings, SkipReason::Settings(e));
    }
    rec.pass(Rule::Settings, "consistent");

    if !settings.copying {
        return rec.fail(Rule::Copying, SkipReason::CopyingOff);
    }
    if input.plan.allows_auto() {
        rec.pass(Rule::Copying, "on");
    } else {
        rec.pass(Rule::Copying, format!("on; {}", super::approval::NO_AUTO_COPY.to_lowercase()));
    }

    let canonical = signal.symbol.as_str();
    let mapped =
        settings.symbols.map_symbol(canonical, input.specs.iter().map(|s| s.symbol.as_str()));
    // map_symbol only returns names from `specs`, so the look-up finds one; if it ever did not,
    // the symbol is treated as missing at the broker rather than trusted.
    let spec = match mapped.map(|name| input.specs.iter().find(|s| s.symbol == name)) {
        Ok(Some(spec)) => spec,
        Ok(None) => {
            let broker = settings.symbols.broker_name(canonical);
            let u = Unmapped::NotAtBroker { canonical: canonical.to_string(), broker };
            return rec.fail(Rule::Symbol, SkipReason::Symbol(u));
        }
        Err(u) => return rec.fail(Rule::Symbol, SkipReason::Symbol(u)),
    };
    let symbol = spec.symbol.clone();
    rec.pass(Rule::Symbol, format!("{canonical} → {symbol}"));

    let reversed = settings.reverse;
    let side = if reversed { flip(side_of(signal.side)) } else { side_of(signal.side) };
    let allowed = match spec.trade_mode {
        TradeMode::Full => true,
        TradeMode::LongOnly => side == Side::Buy,
        TradeMode::ShortOnly => side == Side::Sell,
        TradeMode::Disabled | TradeMode::CloseOnly => false,
    };
    if !allowed {
        return rec
            .fail(Rule::TradeMode, SkipReason::TradeMode { symbol, side, mode: spec.trade_mode });
    }
    rec.pass(Rule::TradeMode, format!("{} allowed", side.as_str()));

    if let Err(closed) = market_hours::check_open(
        input.now_ms,
        canonical,
        &spec.sessions,
        input.calendar,
        &settings.market_hours,
    ) {
        return rec.fail(Rule::MarketHours, SkipReason::MarketClosed { symbol, closed });
    }
    rec.pass(Rule::MarketHours, if settings.market_hours.enabled { "open" } else { "not checked" });

    if input.now_ms >= signal.expires_at_ms {
        return rec.fail(
            Rule::Expiry,
            SkipReason::Expired { expires_at_ms: signal.expires_at_ms, now_ms: input.now_ms },
        );
    }
    rec.pass(
        Rule::Expiry,
        format!("expires in {} s", signal.expires_at_ms.saturating_sub(input.now_ms) / 1_000),
    );

    // A signal from the market clock's future (a lagging terminal clock) counts as fresh.
    let issued = signal_issued_ms(signal).unwrap_or(i64::MIN);
    let age_s = input.now_ms.saturating_sub(issued).max(0) / 1_000;
    if age_s > i64::from(settings.max_signal_age_s) {
        return rec
            .fail(Rule::Age, SkipReason::TooOld { age_s, limit_s: settings.max_signal_age_s });
    }
    rec.pass(Rule::Age, format!("{age_s} s old, limit {} s", settings.max_signal_age_s));

    let account = AccountRisk {
        equity: input.equity,
        peak_equity: input.peak_equity,
        day_start: input.day_start,
        now_ms: input.now_ms,
        server_utc_offset_s: input.server_utc_offset_s,
    };
    if let Err(stop) = risk::check_drawdown(&settings.risk, &account) {
        return rec.fail(Rule::Drawdown, SkipReason::Risk(stop));
    }
    rec.pass(
        Rule::Drawdown,
        if input.guard_locked {
            format!(
                "equity {} of peak {}; the drawdown guard locked auto mode, the trader decides",
                input.equity, input.peak_equity
            )
        } else {
            format!("equity {} of peak {}", input.equity, input.peak_equity)
        },
    );
    if let Err(stop) = risk::check_daily_loss(&settings.risk, &account) {
        return rec.fail(Rule::DailyLoss, SkipReason::Risk(stop));
    }
    rec.pass(Rule::DailyLoss, "within the limit");
    if let Err(stop) = risk::check_open_positions(
        &settings.risk,
        &symbol,
        input.open_symbols.iter().map(String::as_str),
    ) {
        return rec.fail(Rule::OpenPositions, SkipReason::Risk(stop));
    }
    rec.pass(Rule::OpenPositions, format!("{} open", input.open_symbols.len()));

    // Price.
    let Some(quote) = input.quotes.get(&symbol).copied() else {
        return rec.fail(Rule::Price, SkipReason::NoQuote { symbol });
    };
    let kind = order_kind(side, signal.entry_kind, reversed);
    let point = spec.point;
    if point <= Decimal::ZERO {
        return rec.fail(
            Rule::Order,
            SkipReason::Order {
                symbol,
                skip: SizeSkip::Order(crate::orders::Skip::Invalid {
                    field: "point",
                    value: point.to_string(),
                }),
            },
        );
    }
    let in_points = |x: Decimal| x.checked_div(point).map(|p| p.round_dp(1).normalize());
    // Prices come from the EA and the provider: a difference that overflows is a skip, not a
    // panic.
    let distance = |a: Decimal, b: Decimal| a.checked_sub(b).map(|x| x.abs());
    let overflow = |symbol: String| SkipReason::Order { symbol, skip: SizeSkip::Overflow };
    let sizing_quote = match signal.entry_kind {
        EntryKind::Market => {
            let fill = if side == Side::Buy { quote.ask } else { quote.bid };
            let Some(moved) = distance(fill, signal.entry) else {
                return rec.fail(Rule::Price, overflow(symbol));
            };
            let moved_points = in_points(moved).unwrap_or(Decimal::MAX);
            if let Some(limit) = settings.max_price_move_points
                && moved_points > Decimal::from(limit)
            {
                return rec.fail(
                    Rule::Price,
                    SkipReason::PriceMovedPoints {
                        symbol,
                        moved_points,
                        entry: signal.entry,
                        limit_points: limit,
                    },
                );
            }
            let limit = settings.max_price_move_stop_fraction;
            if limit > Decimal::ZERO {
                let Some(stop_distance) = distance(signal.entry, signal.stop) else {
                    return rec.fail(Rule::Price, overflow(symbol));
                };
                let fraction = moved.checked_div(stop_distance).unwrap_or(Decimal::MAX);
                if fraction > limit {
                    return rec.fail(
                        Rule::Price,
                        SkipReason::PriceMovedFraction {
                            symbol,
                            moved_points,
                            fraction: fraction.round_dp(2).normalize(),
                            limit,
                        },
                    );
                }
            }
            rec.pass(
                Rule::Price,
                format!("fill {fill}, {moved_points} points from the entry {}", signal.entry),
            );
            quote
        }
        EntryKind::Limit | EntryKind::Stop => {
            if !settings.copy_pending {
                return rec
                    .fail(Rule::Price, SkipReason::PendingNotCopied { kind: signal.entry_kind });
            }
            // MT5: a buy limit below the ask, a buy stop above it; a sell limit above the bid, a
            // sell stop below it; at least the stops level away.
            let (market, below) = match kind {
                OrderKind::BuyLimit => (quote.ask, true),
                OrderKind::BuyStop => (quote.ask, false),
                OrderKind::SellLimit => (quote.bid, false),
                OrderKind::SellStop => (quote.bid, true),
                OrderKind::Buy | OrderKind::Sell => unreachable!("pending entry kinds only"),
            };
            let price = signal.entry;
            let gap = if below { market.checked_sub(price) } else { price.checked_sub(market) };
            let Some(distance) = gap else {
                return rec.fail(Rule::Price, overflow(symbol));
            };
            if distance <= Decimal::ZERO {
                return rec.fail(
                    Rule::Price,
                    SkipReason::PendingWrongSide { symbol, kind, price, market },
                );
            }
            let distance_points = in_points(distance).unwrap_or(Decimal::MAX);
            if distance_points < Decimal::from(spec.stops_level) {
                return rec.fail(
                    Rule::Price,
                    SkipReason::PendingTooClose {
                        symbol,
                        distance_points,
                        stops_level_points: spec.stops_level,
                    },
                );
            }
            rec.pass(
                Rule::Price,
                format!(
                    "{} at {price}, {distance_points} points from the market {market}",
                    kind_name(kind)
                ),
            );
            // The order is sized and checked as if filled at its own price.
            Quote { bid: price, ask: price }
        }
    };

    // The order: levels (reversed if asked), the spec with today's tick value, the lot.
    let tp2 = signal.tp2.unwrap_or(signal.tp1);
    let levels = if reversed {
        SignalLevels {
            side,
            entry: signal.entry,
            stop: signal.tp1,
            tp1: signal.stop,
            tp2: signal.stop,
            expires_unix_ms: signal.expires_at_ms,
        }
    } else {
        SignalLevels {
            side,
            entry: signal.entry,
            stop: signal.stop,
            tp1: signal.tp1,
            tp2,
            expires_unix_ms: signal.expires_at_ms,
        }
    };
    // The broker's current loss tick value (a state push) over the spec's (hello), which goes
    // stale on a cross pair; a value that cannot size anything is not used.
    let (tick_value_loss, tick_value_source) = input
        .tick_values
        .iter()
        .find(|t| t.symbol == symbol && t.tick_value_loss > Decimal::ZERO)
        .map(|t| (t.tick_value_loss, "current"))
        .unwrap_or((spec.tick_value_loss, "from the symbol's spec"));
    let order_spec = SymbolSpec {
        point: spec.point,
        tick_size: spec.tick_size,
        tick_value_loss,
        volume_min: spec.volume_min,
        volume_max: spec.volume_max,
        volume_step: spec.volume_step,
        stops_level_points: spec.stops_level,
    };
    let rule = settings.symbols.rule(canonical);
    let lot_mode = rule.lot.unwrap_or_else(|| settings.lot.clone());
    // Halves need a distinct tp2.
    let split = if signal.tp2.is_some() && !reversed { settings.split } else { Split::Whole };
    let limits = LotLimits {
        lot_min: settings.lot_min,
        lot_max: settings.lot_max,
        max_risk_pct: settings.max_risk_pct,
        min_rr: settings.min_rr,
    };
    let order = match sizing::size_order(
        &levels,
        &order_spec,
        &sizing_quote,
        &lot_mode,
        input.provider_lots,
        Account { balance: input.balance, equity: input.equity },
        limits,
        split,
        input.now_ms,
    ) {
        Ok(o) => o,
        Err(skip) => return rec.fail(Rule::Order, SkipReason::Order { symbol, skip }),
    };
    rec.pass(
        Rule::Order,
        format!(
            "{} {} lots ({lot_mode}), stop {} tp {}, risk {}, reward/risk {}, loss tick value {} ({tick_value_source})",
            kind_name(kind),
            order.volume,
            order.stop,
            order.tp1,
            order.risk_money,
            order.rr.round_dp(2),
            tick_value_loss.normalize()
        ),
    );
    let legs = order
        .legs
        .iter()
        .map(|l| PlannedLeg {
            volume: l.volume,
            sl: settings.copy_sl.then_some(l.stop),
            tp: settings.copy_tp.then_some(l.take_profit),
        })
        .collect();
    let plan = OrderPlan {
        signal_id: signal.id,
        canonical_symbol: canonical.to_string(),
        symbol,
        kind,
        price: order.fill_ref,
        legs,
        volume: order.volume,
        risk_money: order.risk_money,
        rr: order.rr,
        max_slippage_points: kind.is_market().then_some(settings.max_slippage_points),
        expires_at_ms: signal.expires_at_ms,
        reversed,
        lot_mode,
    };
    Evaluation { outcome: Outcome::Accept(plan), steps: rec.steps, auto_suspended: suspended }
}

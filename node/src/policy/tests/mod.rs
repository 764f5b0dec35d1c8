//! The policy's evaluation, one rule at a time: a scenario that passes every rule, then one change
//! per case and the copy-log line it must produce. The cases by topic: [`rules`] (each rule of
//! the evaluation), [`settings`] (settings, TOML, validation, copy-log lines, plans as EA
//! orders) and [`properties`] (no panic and consistent plans on any figures).

use super::*;
use rust_decimal::Decimal;
use tradecast_protocol::ea::Session;
use tradecast_protocol::{IndicatorValue, Side as WireSide};

mod properties;
mod rules;
mod settings;

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

/// 2026-11-25 15:00:30 UTC, a Wednesday (10:00 New York).
const NOW: i64 = 1_795_618_830_000;
const H: i64 = 3_600_000;

fn eurusd_spec(symbol: &str) -> ea::SymbolSpec {
    ea::SymbolSpec {
        symbol: symbol.into(),
        digits: 5,
        point: d("0.00001"),
        tick_size: d("0.00001"),
        tick_value_profit: d("1"),
        tick_value_loss: d("1"),
        contract_size: d("100000"),
        volume_min: d("0.01"),
        volume_max: d("50"),
        volume_step: d("0.01"),
        stops_level: 0,
        freeze_level: 0,
        trade_mode: TradeMode::Full,
        currency_base: "EUR".into(),
        currency_profit: "USD".into(),
        currency_margin: "EUR".into(),
        sessions: vec![],
    }
}

fn signal() -> Signal {
    Signal {
        id: SignalId([9; 16]),
        provider: tradecast_protocol::Identity::from_secret_bytes(&[1; 32], &[2; 32]).device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        side: WireSide::Buy,
        entry_kind: EntryKind::Market,
        entry: d("1.10000"),
        stop: d("1.09900"),
        tp1: d("1.10200"),
        tp2: Some(d("1.10300")),
        // The 14:00 UTC bar, closed at 15:00:00.
        bar_time_ms: NOW - 30_000 - H,
        expires_at_ms: NOW + H,
        leg: 1,
        indicators: vec![IndicatorValue { name: "rsi".into(), value: d("27.4") }],
        rr: d("2"),
    }
}

/// Everything an evaluation reads, owned, so each case changes one thing.
#[derive(Clone, Debug)]
struct Scenario {
    settings: PolicySettings,
    signal: Signal,
    provider_lots: Option<Decimal>,
    specs: Vec<ea::SymbolSpec>,
    tick_values: Vec<ea::TickValue>,
    quotes: BTreeMap<String, Quote>,
    balance: Decimal,
    equity: Decimal,
    peak_equity: Decimal,
    guard_locked: bool,
    plan: super::approval::PlanGate,
    day_start: Option<DayStart>,
    open_symbols: Vec<String>,
    now_ms: i64,
    server_utc_offset_s: i32,
    calendar: HolidayCalendar,
}

fn base() -> Scenario {
    let settings = PolicySettings {
        symbols: SymbolSettings { suffix: ".m".into(), ..Default::default() },
        ..Default::default()
    };
    Scenario {
        settings,
        signal: signal(),
        provider_lots: None,
        specs: vec![eurusd_spec("EURUSD.m"), eurusd_spec("GBPUSD.m")],
        tick_values: vec![],
        quotes: [("EURUSD.m".to_string(), Quote { bid: d("1.10000"), ask: d("1.10002") })].into(),
        balance: d("10000"),
        equity: d("10000"),
        peak_equity: d("10000"),
        guard_locked: false,
        plan: super::approval::PlanGate::NotApplicable,
        day_start: Some(DayStart {
            day_start_ms: risk::server_day_start_ms(NOW, 7_200),
            equity: d("10000"),
        }),
        open_symbols: vec![],
        now_ms: NOW,
        server_utc_offset_s: 7_200,
        calendar: HolidayCalendar::default_calendar(),
    }
}

impl Scenario {
    fn run(&self) -> Evaluation {
        let input = EvaluationInput {
            signal: &self.signal,
            provider_lots: self.provider_lots,
            specs: &self.specs,
            tick_values: &self.tick_values,
            quotes: &self.quotes,
            balance: self.balance,
            equity: self.equity,
            peak_equity: self.peak_equity,
            guard_locked: self.guard_locked,
            plan: self.plan,
            day_start: self.day_start,
            open_symbols: &self.open_symbols,
            now_ms: self.now_ms,
            server_utc_offset_s: self.server_utc_offset_s,
            calendar: &self.calendar,
        };
        evaluate(&self.settings, &input)
    }
}

/// Runs the scenario after `change` and compares the copy-log line.
fn check(change: impl FnOnce(&mut Scenario), expect: &str) {
    let mut s = base();
    change(&mut s);
    let e = s.run();
    assert_eq!(e.log_line(), expect);
    // The last step carries the verdict; every earlier one passed.
    let (last, earlier) = e.steps.split_last().expect("at least one step");
    assert!(earlier.iter().all(|st| st.passed), "{:?}", e.steps);
    match &e.outcome {
        Outcome::Skip(reason) => {
            assert!(!last.passed);
            assert_eq!(last.detail, reason.to_string());
        }
        Outcome::Accept(_) => {
            assert!(last.passed);
            assert_eq!(last.rule, Rule::Order);
        }
    }
}

fn plan(s: &Scenario) -> OrderPlan {
    match s.run().outcome {
        Outcome::Accept(plan) => plan,
        Outcome::Skip(reason) => panic!("expected an order, got {reason}"),
    }
}

/// Moves the market clock and the signal with it (same age, same expiry distance).
fn at(s: &mut Scenario, now_ms: i64) {
    let shift = now_ms - s.now_ms;
    s.now_ms = now_ms;
    s.signal.bar_time_ms += shift;
    s.signal.expires_at_ms += shift;
    s.day_start = Some(DayStart {
        day_start_ms: risk::server_day_start_ms(now_ms, s.server_utc_offset_s),
        equity: d("10000"),
    });
}

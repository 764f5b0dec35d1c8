//! The EA-link conformance suite: what any node implementation must do, checked through the
//! public EA link only (`ea-link.md`). `run(url, key_id, secret)` is the whole of it; the node's
//! own test suite calls it against a fresh node with a fresh EA key.
//!
//! Checks, in order (each named in the [`Report`]):
//! - `hello-required`: a poll with an unknown session, or with none (no `session_id`), gets 409
//!   with problem code `hello-required`;
//! - `auth-valid`: a correct hello gets 200 and a decodable [`HelloAnswer`];
//! - `auth-stale`, `auth-future`, `auth-replayed`, `auth-unknown-key`, `auth-wrong-secret`,
//!   `auth-unsigned`, `auth-malformed-nonce`, `auth-malformed-timestamp`,
//!   `auth-malformed-signature`: 401 with an `application/problem+json` body;
//! - `auth-nothing-processed`: a deal pushed with a wrong signature does not move the cursor;
//! - `body-malformed` (400), `body-missing-field` (400 naming `wait_ms`), `body-trailing-nul`
//!   (400 `trailing-nul`), `body-oversized` (413);
//! - `answer-signatures`: every answer to a correctly signed request is signed with the secret
//!   over the status, the request nonce and the body;
//! - `poll-bounded`: an idle poll is answered within `wait_ms` + 100 ms (+ scheduling slack);
//! - `deals-cursor-survives-restart`, `bars-cursor-survives-restart`: after pushes and a new
//!   hello (an EA restart that lost its memory), the cursors continue where the node committed;
//! - `bar-gap-backfill`: a gap in pushed bars makes the node ask for a backfill covering it;
//! - with a [`Trigger`] (the node's test supplies one that makes the node create an order or a
//!   close-all through its own API): `order-reoffered-until-acked`, `unknown-settled-by-lookup`,
//!   `close-all-scope`. Without one they are reported as not run, never as passed.
//!
//! The suite leaves test data in the node (an account, deals, bars): run it on a fresh node.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tradecast_protocol::ea::{
    self, Ack, AckAnswer, Bars, BarsAnswer, Call, CloseAllScope, Command, Deal, DealEntry,
    DealKind, DealReason, Deals, DealsAnswer, Hello, HelloAnswer, LinkBar, MarginMode, Order,
    Outcome, Poll, PollAnswer, Problem, Side, State, StateAnswer, SymbolSpec, TradeMode,
};

use crate::link::{LinkClient, RawAnswer, Tamper, wall_ms};

/// What the suite asks the node's test to make the node do (through the node's own API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerRequest {
    /// Create one market order for this account on `symbol` (as a signal the node accepts).
    MarketOrder {
        /// The symbol.
        symbol: String,
    },
    /// Issue a Tradecast close-all for this account (as the drawdown guard or the trader would).
    CloseAll,
}

/// A hook into the node under test; returns when the node has done it (or an error).
pub type Trigger = Arc<
    dyn Fn(TriggerRequest) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// Suite options.
#[derive(Clone)]
pub struct Options {
    /// The account login the suite introduces.
    pub login: u64,
    /// The EA magic input the suite pretends to have.
    pub input_magic: u32,
    /// The symbol it reports.
    pub symbol: String,
    /// The hook for the order checks.
    pub trigger: Option<Trigger>,
    /// The terminal's clock the suite reports (hello, state, polls, deals, bars): the market
    /// clock the node trades by. Never the wall clock's day, so the order checks see an open
    /// market at any instant of the week (the wall clock still signs every request).
    pub market: MarketClock,
}

/// The market clock a scripted terminal reports: a chosen instant that advances with the wall
/// clock from the moment it was made, so the node sees time pass but never a weekend it did not
/// ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketClock {
    start_ms: i64,
    wall_at_start_ms: i64,
}

impl MarketClock {
    /// Wednesday 2026-03-04 12:00 UTC: every FX session open, no holiday, no DST change within
    /// weeks (the default market clock of the suite).
    pub const WEEKDAY_NOON_MS: i64 = 1_772_625_600_000;

    /// A clock that reads `start_ms` now and advances with the wall clock.
    pub fn starting_at(start_ms: i64) -> MarketClock {
        MarketClock { start_ms, wall_at_start_ms: wall_ms() }
    }

    /// The market time now, UTC unix ms.
    pub fn now_ms(&self) -> i64 {
        self.start_ms + wall_ms().saturating_sub(self.wall_at_start_ms).max(0)
    }
}

impl Default for MarketClock {
    fn default() -> Self {
        MarketClock::starting_at(MarketClock::WEEKDAY_NOON_MS)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            login: 99_000_001,
            input_magic: 20_260_101,
            symbol: "EURUSD".to_owned(),
            trigger: None,
            market: MarketClock::default(),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("login", &self.login)
            .field("input_magic", &self.input_magic)
            .field("symbol", &self.symbol)
            .field("trigger", &self.trigger.is_some())
            .field("market", &self.market)
            .finish()
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// It held.
    Passed,
    /// It did not, and why.
    Failed(String),
    /// It could not be run, and why (not a pass).
    NotRun(String),
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Its name.
    pub name: &'static str,
    /// Its result.
    pub outcome: CheckOutcome,
}

/// The suite's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(|c| matches!(c.outcome, CheckOutcome::Failed(_)))
    }

    /// The failed checks' names.
    pub fn failures(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, CheckOutcome::Failed(_)))
            .map(|c| c.name)
            .collect()
    }

    /// The checks not run.
    pub fn not_run(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, CheckOutcome::NotRun(_)))
            .map(|c| c.name)
            .collect()
    }

    /// The outcome of a check by name.
    pub fn outcome(&self, name: &str) -> Option<&CheckOutcome> {
        self.checks.iter().find(|c| c.name == name).map(|c| &c.outcome)
    }

    fn push(&mut self, name: &'static str, outcome: CheckOutcome) {
        self.checks.push(Check { name, outcome });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            match &c.outcome {
                CheckOutcome::Passed => writeln!(f, "PASS    {}", c.name)?,
                CheckOutcome::Failed(why) => writeln!(f, "FAIL    {}: {why}", c.name)?,
                CheckOutcome::NotRun(why) => writeln!(f, "NOT RUN {}: {why}", c.name)?,
            }
        }
        let n_fail = self.failures().len();
        let n_pass = self.checks.iter().filter(|c| c.outcome == CheckOutcome::Passed).count();
        write!(f, "{n_pass} passed, {n_fail} failed, {} not run", self.not_run().len())
    }
}

/// Runs the suite with default options (no trigger). `Err` carries the report when a check
/// failed.
pub async fn run(url: &str, key_id: &str, secret: &str) -> Result<Report, Report> {
    run_with(url, key_id, secret, Options::default()).await
}

/// Runs the suite with `options`.
pub async fn run_with(
    url: &str,
    key_id: &str,
    secret: &str,
    options: Options,
) -> Result<Report, Report> {
    let mut report = Report::default();
    let client = match LinkClient::new(url, key_id, secret) {
        Ok(c) => c,
        Err(e) => {
            report.push("auth-valid", CheckOutcome::Failed(format!("cannot build a client: {e}")));
            return Err(report);
        }
    };
    let mut s = Suite { client, options, report, unsigned_answers: Vec::new() };
    s.all().await;
    let report = s.report;
    if report.passed() { Ok(report) } else { Err(report) }
}

const TIMEOUT: Duration = Duration::from_secs(5);

struct Suite {
    client: LinkClient,
    options: Options,
    report: Report,
    unsigned_answers: Vec<String>,
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_default()
}

fn fail(why: impl Into<String>) -> CheckOutcome {
    CheckOutcome::Failed(why.into())
}

impl Suite {
    /// The terminal's clock (the market clock), as opposed to the wall clock that signs requests.
    fn market_ms(&self) -> i64 {
        self.options.market.now_ms()
    }

    fn spec(&self) -> SymbolSpec {
        SymbolSpec {
            symbol: self.options.symbol.clone(),
            digits: 5,
            point: d("0.00001"),
            tick_size: d("0.00001"),
            tick_value_profit: d("1"),
            tick_value_loss: d("1"),
            contract_size: d("100000"),
            volume_min: d("0.01"),
            volume_max: d("100"),
            volume_step: d("0.01"),
            stops_level: 0,
            freeze_level: 0,
            trade_mode: TradeMode::Full,
            currency_base: "EUR".into(),
            currency_profit: "USD".into(),
            currency_margin: "EUR".into(),
            sessions: Vec::new(),
        }
    }

    fn hello_body(&self) -> Hello {
        Hello {
            login: self.options.login,
            server: "Conformance-Server".into(),
            company: "Tradecast conformance".into(),
            currency: "USD".into(),
            leverage: 100,
            margin_mode: MarginMode::Hedging,
            terminal_build: 4_755,
            ea_version: concat!("conformance ", env!("CARGO_PKG_VERSION")).into(),
            server_utc_offset_s: 0,
            terminal_time_ms: self.market_ms(),
            symbols: vec![self.spec()],
            floor_breach: None,
            instance: None,
        }
    }

    /// A correctly signed raw request; notes an answer that is not properly signed.
    async fn signed(&mut self, call: Call, body: &[u8]) -> Result<RawAnswer, String> {
        let a = self
            .client
            .send_raw(call.path(), body, TIMEOUT, &Tamper::default())
            .await
            .map_err(|e| e.to_string())?;
        if !a.signature_ok {
            self.unsigned_answers.push(format!(
                "{} → {} (signed: {})",
                call.path(),
                a.status,
                a.signed
            ));
        }
        Ok(a)
    }

    async fn call<Req: serde::Serialize, Ans: serde::de::DeserializeOwned>(
        &mut self,
        call: Call,
        req: &Req,
    ) -> Result<Ans, String> {
        let a = self.signed(call, &ea::encode(req)).await?;
        if a.status != 200 {
            return Err(format!(
                "{} answered {}: {}",
                call.path(),
                a.status,
                String::from_utf8_lossy(&a.body)
            ));
        }
        ea::decode(&a.body).map_err(|e| format!("{} answer: {e}", call.path()))
    }

    async fn hello(&mut self) -> Result<HelloAnswer, String> {
        let h = self.hello_body();
        self.call(Call::Hello, &h).await
    }

    async fn poll(&mut self, session_id: &str, wait_ms: u32) -> Result<PollAnswer, String> {
        let p =
            Poll { session_id: session_id.to_owned(), wait_ms, terminal_time_ms: self.market_ms() };
        self.call(Call::Poll, &p).await
    }

    /// Expects a refusal with `status` and a problem+json body.
    fn expect_problem(a: &RawAnswer, status: u16) -> CheckOutcome {
        if a.status != status {
            return fail(format!(
                "expected {status}, got {} ({})",
                a.status,
                String::from_utf8_lossy(&a.body)
            ));
        }
        let ct_ok =
            a.content_type.as_deref().is_some_and(|c| c.starts_with("application/problem+json"));
        if !ct_ok {
            return fail(format!(
                "content type {:?} is not application/problem+json",
                a.content_type
            ));
        }
        match ea::decode::<Problem>(&a.body) {
            Ok(_) => CheckOutcome::Passed,
            Err(e) => fail(format!("problem body does not decode: {e}")),
        }
    }

    async fn tampered(&mut self, call: Call, body: &[u8], t: Tamper, status: u16) -> CheckOutcome {
        match self.client.send_raw(call.path(), body, TIMEOUT, &t).await {
            Ok(a) => Self::expect_problem(&a, status),
            Err(e) => fail(e.to_string()),
        }
    }

    async fn all(&mut self) {
        self.hello_required().await;
        let Some(session) = self.auth_valid().await else {
            return;
        };
        self.auth_matrix().await;
        self.nothing_processed(&session).await;
        self.bodies(&session).await;
        self.poll_bounded(&session).await;
        self.cursors().await;
        self.orders().await;
        let signed = if self.unsigned_answers.is_empty() {
            CheckOutcome::Passed
        } else {
            fail(format!("answers without a valid signature: {}", self.unsigned_answers.join("; ")))
        };
        self.report.push("answer-signatures", signed);
    }

    async fn hello_required(&mut self) {
        let p = Poll {
            session_id: "conformance-no-such-session".into(),
            wait_ms: 0,
            terminal_time_ms: self.market_ms(),
        };
        // An unknown session, and a poll that carries none (an EA before its first hello).
        let no_session =
            format!(r#"{{"wait_ms":0,"terminal_time_ms":{}}}"#, self.market_ms()).into_bytes();
        let mut outcome = CheckOutcome::Passed;
        for body in [ea::encode(&p), no_session] {
            let this = match self.signed(Call::Poll, &body).await {
                Err(e) => fail(e),
                Ok(a) => match Self::expect_problem(&a, 409) {
                    CheckOutcome::Passed => match ea::decode::<Problem>(&a.body) {
                        Ok(pr) if pr.code == ea::PROBLEM_HELLO_REQUIRED => CheckOutcome::Passed,
                        Ok(pr) => {
                            fail(format!("problem code {:?}, expected hello-required", pr.code))
                        }
                        Err(e) => fail(e.to_string()),
                    },
                    other => other,
                },
            };
            if this != CheckOutcome::Passed {
                outcome = this;
                break;
            }
        }
        self.report.push("hello-required", outcome);
    }

    async fn auth_valid(&mut self) -> Option<String> {
        match self.hello().await {
            Ok(a) if !a.session_id.is_empty() => {
                self.report.push("auth-valid", CheckOutcome::Passed);
                Some(a.session_id)
            }
            Ok(_) => {
                self.report.push("auth-valid", fail("empty session id"));
                None
            }
            Err(e) => {
                self.report.push("auth-valid", fail(e));
                None
            }
        }
    }

    async fn auth_matrix(&mut self) {
        let body = ea::encode(&self.hello_body());
        let now = wall_ms();
        let cases: Vec<(&'static str, Tamper)> = vec![
            (
                "auth-stale",
                Tamper { timestamp: Some((now - 31_000).to_string()), ..Tamper::default() },
            ),
            (
                "auth-future",
                Tamper { timestamp: Some((now + 31_000).to_string()), ..Tamper::default() },
            ),
            (
                "auth-unknown-key",
                Tamper { key_id: Some("conformance-unknown-key".into()), ..Tamper::default() },
            ),
            (
                "auth-wrong-secret",
                Tamper { secret: Some(b"not-the-secret".to_vec()), ..Tamper::default() },
            ),
            ("auth-unsigned", Tamper { unsigned: true, ..Tamper::default() }),
            ("auth-malformed-nonce", Tamper { nonce: Some("short!".into()), ..Tamper::default() }),
            (
                "auth-malformed-timestamp",
                Tamper { timestamp: Some("yesterday".into()), ..Tamper::default() },
            ),
            (
                "auth-malformed-signature",
                Tamper { signature: Some("zz".repeat(32)), ..Tamper::default() },
            ),
        ];
        for (name, t) in cases {
            let o = self.tampered(Call::Hello, &body, t, 401).await;
            self.report.push(name, o);
        }
        // The same request twice: the second is a replay.
        let ts = wall_ms().to_string();
        let nonce = self.client.nonce();
        let t = Tamper { timestamp: Some(ts), nonce: Some(nonce), ..Tamper::default() };
        let first = self.client.send_raw(Call::Hello.path(), &body, TIMEOUT, &t).await;
        let outcome = match first {
            Ok(a) if a.status == 200 => self.tampered(Call::Hello, &body, t, 401).await,
            Ok(a) => fail(format!("the first, valid request got {}", a.status)),
            Err(e) => fail(e.to_string()),
        };
        self.report.push("auth-replayed", outcome);
    }

    /// A refused request changes nothing: a deal pushed with a wrong signature must not move
    /// the deals cursor.
    async fn nothing_processed(&mut self, session: &str) {
        let far = self.market_ms() + 3_600_000;
        let deal = Deal {
            deal_ticket: 9_100_000_999,
            order_ticket: 9_100_000_999,
            position_id: 9_100_000_999,
            symbol: self.options.symbol.clone(),
            kind: DealKind::Buy,
            entry: DealEntry::In,
            reason: DealReason::Client,
            volume: d("0.01"),
            price: d("1.07000"),
            commission: d("0"),
            swap: d("0"),
            profit: d("0"),
            fee: d("0"),
            magic: 0,
            comment: "forged".into(),
            time_ms: far,
        };
        let body =
            ea::encode(&Deals { session_id: session.to_owned(), from_ms: 0, deals: vec![deal] });
        let t = Tamper { secret: Some(b"forged-secret".to_vec()), ..Tamper::default() };
        let refused = self.tampered(Call::Deals, &body, t, 401).await;
        let o = match refused {
            CheckOutcome::Passed => match self.hello().await {
                Ok(h) if h.deals_from_ms < far => CheckOutcome::Passed,
                Ok(h) => fail(format!(
                    "the deals cursor moved to {} after a refused push",
                    h.deals_from_ms
                )),
                Err(e) => fail(e),
            },
            other => other,
        };
        self.report.push("auth-nothing-processed", o);
    }

    async fn bodies(&mut self, session: &str) {
        let o = match self.signed(Call::Poll, b"{\"session_id\":").await {
            Ok(a) => Self::expect_problem(&a, 400),
            Err(e) => fail(e),
        };
        self.report.push("body-malformed", o);
        let body = format!("{{\"session_id\":\"{session}\",\"terminal_time_ms\":1}}");
        let o = match self.signed(Call::Poll, body.as_bytes()).await {
            Ok(a) => match Self::expect_problem(&a, 400) {
                CheckOutcome::Passed => match ea::decode::<Problem>(&a.body) {
                    Ok(p)
                        if p.field.as_deref() == Some("wait_ms")
                            || p.detail.contains("wait_ms") =>
                    {
                        CheckOutcome::Passed
                    }
                    Ok(p) => fail(format!("the problem does not name wait_ms: {p:?}")),
                    Err(e) => fail(e.to_string()),
                },
                other => other,
            },
            Err(e) => fail(e),
        };
        self.report.push("body-missing-field", o);
        let mut nul = ea::encode(&Poll {
            session_id: session.to_owned(),
            wait_ms: 0,
            terminal_time_ms: self.market_ms(),
        });
        nul.push(0);
        let o = match self.signed(Call::Poll, &nul).await {
            Ok(a) => match Self::expect_problem(&a, 400) {
                CheckOutcome::Passed => match ea::decode::<Problem>(&a.body) {
                    Ok(p) if p.code == ea::PROBLEM_TRAILING_NUL => CheckOutcome::Passed,
                    Ok(p) => fail(format!("problem code {:?}, expected trailing-nul", p.code)),
                    Err(e) => fail(e.to_string()),
                },
                other => other,
            },
            Err(e) => fail(e),
        };
        self.report.push("body-trailing-nul", o);
        let mut big = b"{\"session_id\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', ea::MAX_BODY_BYTES + 16));
        big.extend(b"\",\"wait_ms\":0,\"terminal_time_ms\":1}");
        let o = match self
            .client
            .send_raw(Call::Poll.path(), &big, TIMEOUT, &Tamper::default())
            .await
        {
            Ok(a) => Self::expect_problem(&a, 413),
            Err(e) => fail(e.to_string()),
        };
        self.report.push("body-oversized", o);
    }

    async fn poll_bounded(&mut self, session: &str) {
        // Drain anything due first, then time an idle poll.
        let _ = self.poll(session, 0).await;
        let start = Instant::now();
        let o = match self.poll(session, 300).await {
            Ok(a) if !a.orders.is_empty() || !a.commands.is_empty() => CheckOutcome::NotRun(
                "the node had work due; the idle bound could not be timed".into(),
            ),
            Ok(_) => {
                let ms = start.elapsed().as_millis();
                if ms <= 300 + 100 + 150 {
                    CheckOutcome::Passed
                } else {
                    fail(format!("answered after {ms} ms"))
                }
            }
            Err(e) => fail(e),
        };
        self.report.push("poll-bounded", o);
    }

    async fn cursors(&mut self) {
        let h = match self.hello().await {
            Ok(h) => h,
            Err(e) => {
                self.report.push("deals-cursor-survives-restart", fail(e));
                return;
            }
        };
        // Deals: two foreign deals (magic 0), then an EA restart (a new hello).
        let t = self.market_ms().max(h.deals_from_ms);
        let deal = |ticket: u64, time_ms: i64| Deal {
            deal_ticket: ticket,
            order_ticket: ticket,
            position_id: ticket,
            symbol: self.options.symbol.clone(),
            kind: DealKind::Buy,
            entry: DealEntry::In,
            reason: DealReason::Client,
            volume: d("0.01"),
            price: d("1.07000"),
            commission: d("0"),
            swap: d("0"),
            profit: d("0"),
            fee: d("0"),
            magic: 0,
            comment: "conformance".into(),
            time_ms,
        };
        let req = Deals {
            session_id: h.session_id.clone(),
            from_ms: h.deals_from_ms,
            deals: vec![deal(9_100_000_001, t), deal(9_100_000_002, t.saturating_add(1))],
        };
        let o = match self.call::<_, DealsAnswer>(Call::Deals, &req).await {
            Err(e) => fail(e),
            Ok(a) if a.deals_from_ms < t => {
                fail(format!("cursor {} is before the deals pushed ({t})", a.deals_from_ms))
            }
            Ok(a) => match self.hello().await {
                Ok(h2) if h2.deals_from_ms == a.deals_from_ms => CheckOutcome::Passed,
                Ok(h2) => fail(format!(
                    "after a restart deals_from_ms is {}, the node answered {} before",
                    h2.deals_from_ms, a.deals_from_ms
                )),
                Err(e) => fail(e),
            },
        };
        self.report.push("deals-cursor-survives-restart", o);

        // Bars: two consecutive bars of the first subscription, a restart, then a gap.
        let Some(sub) = h.subscriptions.first().cloned() else {
            let why = "the node subscribed to no bars at hello".to_owned();
            self.report.push("bars-cursor-survives-restart", CheckOutcome::NotRun(why.clone()));
            self.report.push("bar-gap-backfill", CheckOutcome::NotRun(why));
            return;
        };
        let Some(tf_ms) = sub.timeframe.seconds().map(|s| s * 1_000) else {
            let why = format!("timeframe {} has no fixed length", sub.timeframe.name());
            self.report.push("bars-cursor-survives-restart", CheckOutcome::NotRun(why.clone()));
            self.report.push("bar-gap-backfill", CheckOutcome::NotRun(why));
            return;
        };
        let from = h
            .bars_from
            .iter()
            .find(|c| c.symbol == sub.symbol && c.timeframe == sub.timeframe)
            .map(|c| c.from_ms)
            .unwrap_or(i64::MIN);
        if from > self.market_ms() + 86_400_000 {
            let why = format!("the bars cursor {from} is more than a day in the future");
            self.report.push("bars-cursor-survives-restart", fail(why.clone()));
            self.report.push("bar-gap-backfill", fail(why));
            return;
        }
        let t0 = (self.market_ms() - 20 * tf_ms).max(from).div_euclid(tf_ms) * tf_ms + tf_ms;
        let bar = |i: i64| LinkBar {
            symbol: sub.symbol.clone(),
            timeframe: sub.timeframe,
            time_ms: t0 + i * tf_ms,
            open: d("1.07000"),
            high: d("1.07100"),
            low: d("1.06900"),
            close: d("1.07050"),
            tick_volume: 100,
            spread_points: Some(10),
        };
        let h2 = match self.hello().await {
            Ok(h) => h,
            Err(e) => {
                self.report.push("bars-cursor-survives-restart", fail(e));
                return;
            }
        };
        let req = Bars { session_id: h2.session_id.clone(), bars: vec![bar(0), bar(1)] };
        let cursor_of = |cursors: &[ea::BarCursor]| {
            cursors
                .iter()
                .find(|c| c.symbol == sub.symbol && c.timeframe == sub.timeframe)
                .map(|c| c.from_ms)
        };
        let o = match self.call::<_, BarsAnswer>(Call::Bars, &req).await {
            Err(e) => fail(e),
            Ok(a) => match cursor_of(&a.bars_from) {
                None => fail("the bars answer has no cursor for the subscription"),
                Some(c) if c <= t0 + tf_ms => fail(format!(
                    "cursor {c} does not move past the last bar pushed ({})",
                    t0 + tf_ms
                )),
                Some(c) => match self.hello().await {
                    Ok(h3) if cursor_of(&h3.bars_from) == Some(c) => CheckOutcome::Passed,
                    Ok(h3) => fail(format!(
                        "after a restart the cursor is {:?}, the node answered {c} before",
                        cursor_of(&h3.bars_from)
                    )),
                    Err(e) => fail(e),
                },
            },
        };
        self.report.push("bars-cursor-survives-restart", o);

        // A gap: bar 3 without bar 2.
        let h4 = match self.hello().await {
            Ok(h) => h,
            Err(e) => {
                self.report.push("bar-gap-backfill", fail(e));
                return;
            }
        };
        let req = Bars { session_id: h4.session_id.clone(), bars: vec![bar(3)] };
        let o = match self.call::<_, BarsAnswer>(Call::Bars, &req).await {
            Err(e) => fail(e),
            Ok(_) => {
                let gap = t0 + 2 * tf_ms;
                let mut found = false;
                for _ in 0..4 {
                    match self.poll(&h4.session_id, 500).await {
                        Ok(p) => {
                            found = p.commands.iter().any(|c| matches!(c, Command::Backfill { symbol, timeframe, from_ms, to_ms }
                                if *symbol == sub.symbol && *timeframe == sub.timeframe && *from_ms <= gap && gap <= *to_ms));
                            if found {
                                break;
                            }
                        }
                        Err(e) => {
                            self.report.push("bar-gap-backfill", fail(e));
                            return;
                        }
                    }
                }
                if found {
                    CheckOutcome::Passed
                } else {
                    fail(format!("no backfill asked for the missing bar at {gap}"))
                }
            }
        };
        self.report.push("bar-gap-backfill", o);
    }

    /// Polls until an order other than `except` shows up.
    async fn wait_order(
        &mut self,
        session: &str,
        want: Option<&str>,
    ) -> Result<Option<Order>, String> {
        for _ in 0..6 {
            let p = self.poll(session, 500).await?;
            if let Some(o) = p.orders.into_iter().find(|o| want.is_none_or(|w| o.order_id == w)) {
                return Ok(Some(o));
            }
        }
        Ok(None)
    }

    fn ack_body(
        &self,
        session: &str,
        o: &Order,
        outcome: Outcome,
        retcode: u32,
        found: bool,
    ) -> Ack {
        let done = outcome == Outcome::Done;
        Ack {
            session_id: session.to_owned(),
            order_id: o.order_id.clone(),
            outcome,
            retcode,
            message: "conformance".into(),
            found_by_lookup: found,
            order_ticket: done.then_some(9_200_000_000 + u64::from(o.order_no)),
            deal_ticket: done.then_some(9_300_000_000 + u64::from(o.order_no)),
            position_id: done.then_some(9_200_000_000 + u64::from(o.order_no)),
            price: if done { Some(o.price.unwrap_or(d("1.07000"))) } else { None },
            volume: if done { Some(o.volume) } else { None },
            time_ms: Some(self.market_ms()),
        }
    }

    async fn orders(&mut self) {
        let names = ["order-reoffered-until-acked", "unknown-settled-by-lookup", "close-all-scope"];
        let Some(trigger) = self.options.trigger.clone() else {
            for n in names {
                self.report.push(
                    n,
                    CheckOutcome::NotRun("no trigger: the node's test must supply one".into()),
                );
            }
            return;
        };
        let o = self.reoffered(&trigger).await.unwrap_or_else(CheckOutcome::Failed);
        self.report.push(names[0], o);
        let o = self.unknown(&trigger).await.unwrap_or_else(CheckOutcome::Failed);
        self.report.push(names[1], o);
        let o = self.close_all(&trigger).await.unwrap_or_else(CheckOutcome::Failed);
        self.report.push(names[2], o);
    }

    async fn reoffered(&mut self, trigger: &Trigger) -> Result<CheckOutcome, String> {
        let h = self.hello().await?;
        trigger(TriggerRequest::MarketOrder { symbol: self.options.symbol.clone() }).await?;
        let Some(o) = self.wait_order(&h.session_id, None).await? else {
            return Ok(fail("the triggered order never reached the poll"));
        };
        // An EA restart without an ack: the order must come again.
        let h2 = self.hello().await?;
        if self.wait_order(&h2.session_id, Some(&o.order_id)).await?.is_none() {
            return Ok(fail("the unacked order was not offered again after a restart"));
        }
        let ack = self.ack_body(&h2.session_id, &o, Outcome::Done, 10_009, false);
        let a: AckAnswer = self.call(Call::Ack, &ack).await?;
        if !a.ok {
            return Ok(fail("the ack was answered ok: false"));
        }
        let h3 = self.hello().await?;
        for _ in 0..2 {
            let p = self.poll(&h3.session_id, 300).await?;
            if p.orders.iter().any(|x| x.order_id == o.order_id) {
                return Ok(fail("the acked order was offered again"));
            }
        }
        Ok(CheckOutcome::Passed)
    }

    async fn unknown(&mut self, trigger: &Trigger) -> Result<CheckOutcome, String> {
        let h = self.hello().await?;
        trigger(TriggerRequest::MarketOrder { symbol: self.options.symbol.clone() }).await?;
        let Some(o) = self.wait_order(&h.session_id, None).await? else {
            return Ok(fail("the triggered order never reached the poll"));
        };
        let ack = self.ack_body(&h.session_id, &o, Outcome::Unknown, 10_012, false);
        let _: AckAnswer = self.call(Call::Ack, &ack).await?;
        // The EA restarts; if the node offers the order again the look-up finds the fill.
        let h2 = self.hello().await?;
        let mut settled = false;
        for _ in 0..3 {
            let p = self.poll(&h2.session_id, 300).await?;
            if let Some(again) = p.orders.into_iter().find(|x| x.order_id == o.order_id) {
                if settled {
                    return Ok(fail("the order was offered again after the look-up settled it"));
                }
                let found = self.ack_body(&h2.session_id, &again, Outcome::Done, 10_009, true);
                let _: AckAnswer = self.call(Call::Ack, &found).await?;
                settled = true;
            }
        }
        // Whether or not it was re-offered, the deal that proves the fill goes to the node.
        let magic = ea::magic(self.options.input_magic, o.order_no);
        let ticket = 9_200_000_000 + u64::from(o.order_no);
        let deal = Deal {
            deal_ticket: 9_300_000_000 + u64::from(o.order_no),
            order_ticket: ticket,
            position_id: ticket,
            symbol: o.symbol.clone(),
            kind: if o.kind.is_buy() { DealKind::Buy } else { DealKind::Sell },
            entry: DealEntry::In,
            reason: DealReason::Expert,
            volume: o.volume,
            price: o.price.unwrap_or(d("1.07000")),
            commission: d("0"),
            swap: d("0"),
            profit: d("0"),
            fee: d("0"),
            magic,
            comment: ea::order_comment(&o.order_id),
            time_ms: self.market_ms(),
        };
        let req = Deals {
            session_id: h2.session_id.clone(),
            from_ms: h2.deals_from_ms,
            deals: vec![deal],
        };
        let _: DealsAnswer = self.call(Call::Deals, &req).await?;
        let state = State {
            session_id: h2.session_id.clone(),
            terminal_time_ms: self.market_ms(),
            balance: d("10000"),
            equity: d("10000"),
            margin: d("10"),
            free_margin: d("9990"),
            credit: d("0"),
            positions: vec![ea::Position {
                position_id: ticket,
                symbol: o.symbol.clone(),
                side: if o.kind.is_buy() { Side::Buy } else { Side::Sell },
                volume: o.volume,
                open_price: o.price.unwrap_or(d("1.07000")),
                open_time_ms: self.market_ms(),
                sl: o.sl,
                tp: o.tp,
                price_current: o.price.unwrap_or(d("1.07000")),
                swap: d("0"),
                profit: d("0"),
                magic,
                comment: ea::order_comment(&o.order_id),
            }],
            pending: Vec::new(),
            tick_values: Vec::new(),
            specs: Vec::new(),
        };
        let _: StateAnswer = self.call(Call::State, &state).await?;
        let h3 = self.hello().await?;
        for _ in 0..2 {
            let p = self.poll(&h3.session_id, 300).await?;
            if let Some(again) = p.orders.iter().find(|x| x.order_id == o.order_id) {
                if settled {
                    return Ok(fail("the order was offered again after the look-up settled it"));
                }
                let found = self.ack_body(&h3.session_id, again, Outcome::Done, 10_009, true);
                let _: AckAnswer = self.call(Call::Ack, &found).await?;
                settled = true;
            }
        }
        Ok(CheckOutcome::Passed)
    }

    async fn close_all(&mut self, trigger: &Trigger) -> Result<CheckOutcome, String> {
        let h = self.hello().await?;
        trigger(TriggerRequest::CloseAll).await?;
        for _ in 0..6 {
            let p = self.poll(&h.session_id, 500).await?;
            for c in p.commands {
                if let Command::CloseAll { order_id, scope } = c {
                    if scope != CloseAllScope::Tradecast {
                        return Ok(fail(
                            "a close-all the trader did not ask for is not limited to Tradecast's magic",
                        ));
                    }
                    let ack = Ack {
                        session_id: h.session_id.clone(),
                        order_id,
                        outcome: Outcome::Done,
                        retcode: 10_009,
                        message: "conformance".into(),
                        found_by_lookup: false,
                        order_ticket: None,
                        deal_ticket: None,
                        position_id: None,
                        price: None,
                        volume: None,
                        time_ms: Some(self.market_ms()),
                    };
                    let _: AckAnswer = self.call(Call::Ack, &ack).await?;
                    return Ok(CheckOutcome::Passed);
                }
            }
        }
        Ok(fail("no close-all reached the poll"))
    }
}

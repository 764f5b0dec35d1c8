//! A small reference node for the sim's tests: the node side of the EA link done by the book
//! (both signatures via `link_auth`, nonces, 401/400/409/413 problem+json, long-poll, cursors,
//! backfill on gaps, orders due until acked), in memory. It can be broken on purpose
//! (`Broken`) to show that the conformance suite and the terminal notice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use tradecast_protocol::ea::{
    self, Ack, AckAnswer, BarCursor, BarSubscription, Bars, BarsAnswer, Call, CloseAllScope,
    Command, Deal, Deals, DealsAnswer, Hello, HelloAnswer, LinkBar, Order, Outcome, Poll,
    PollAnswer, Problem, State, StateAnswer, Timeframe,
};
use tradecast_protocol::link_auth::{self, NonceCache, RequestHeaders};

/// Deliberate faults of the reference node.
#[derive(Debug, Clone, Copy, Default)]
pub struct Broken {
    /// Accept every request without checking headers or signatures.
    pub skip_auth: bool,
    /// Sign answers with a wrong secret.
    pub bad_answer_signature: bool,
    /// Send answers without a signature.
    pub unsigned_answers: bool,
    /// Answer acks with a signed 503 without recording them (a node that cannot commit).
    pub drop_acks: bool,
    /// Answer every call with this status (signed problem+json): a node that refuses all.
    pub refuse_all: Option<u16>,
}

#[derive(Debug, Clone)]
struct Due {
    order: Order,
    resolved: bool,
    offered_at: Option<Instant>,
    offered_in: Option<String>,
}

#[derive(Debug)]
pub struct NodeState {
    keys: HashMap<String, Vec<u8>>,
    start_ms: i64,
    nonces: NonceCache,
    pub broken: Broken,
    sessions: HashSet<String>,
    next_session: u64,
    next_order_no: u32,
    orders: Vec<Due>,
    commands: Vec<(Command, bool)>,
    pub acks: Vec<Ack>,
    pub deals: BTreeMap<u64, Deal>,
    deals_from_ms: i64,
    pub subscriptions: Vec<BarSubscription>,
    pub bars: BTreeMap<(String, Timeframe, i64), LinkBar>,
    bars_from: BTreeMap<(String, Timeframe), i64>,
    backfills_asked: HashSet<(String, Timeframe, i64)>,
    pub equity_floor: Option<Decimal>,
    pub last_state: Option<State>,
    pub hellos: Vec<Hello>,
    pub poll_wait_ms: u32,
    pub polls: u32,
    /// Settle orders from pushed deals and positions carrying their comment.
    pub reconcile: bool,
    /// Bars received, duplicates included.
    pub bars_received: usize,
    /// The symbols whose specs came in state pushes.
    pub specs_seen: std::collections::BTreeSet<String>,
}

/// A running reference node.
pub struct RefNode {
    pub url: String,
    pub state: Arc<Mutex<NodeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RefNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_ms() -> i64 {
    tradecast_sim::link::wall_ms()
}

impl RefNode {
    /// Starts on 127.0.0.1:0 with one key.
    pub async fn start(key_id: &str, secret: &str, broken: Broken) -> RefNode {
        let state = Arc::new(Mutex::new(NodeState {
            keys: HashMap::from([(key_id.to_owned(), secret.as_bytes().to_vec())]),
            start_ms: now_ms() - 1_000,
            nonces: NonceCache::new(100_000),
            broken,
            sessions: HashSet::new(),
            next_session: 1,
            next_order_no: 1,
            orders: Vec::new(),
            commands: Vec::new(),
            acks: Vec::new(),
            deals: BTreeMap::new(),
            deals_from_ms: 0,
            subscriptions: Vec::new(),
            bars: BTreeMap::new(),
            bars_from: BTreeMap::new(),
            backfills_asked: HashSet::new(),
            equity_floor: None,
            last_state: None,
            hellos: Vec::new(),
            poll_wait_ms: 200,
            polls: 0,
            reconcile: true,
            bars_received: 0,
            specs_seen: Default::default(),
        }));
        let app = Router::new()
            .route("/ea/v1/{call}", axum::routing::post(handle))
            .with_state(state.clone())
            .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RefNode { url: format!("http://{addr}"), state, task }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an order; returns its id.
    pub fn add_order(&self, mut order: Order) -> (String, u32) {
        let mut s = self.lock();
        order.order_no = s.next_order_no;
        order.order_id = format!("{:012}", s.next_order_no);
        s.next_order_no += 1;
        let r = (order.order_id.clone(), order.order_no);
        s.orders.push(Due { order, resolved: false, offered_at: None, offered_in: None });
        r
    }

    /// Adds a command; trading commands get an order id/no and stay due until acked.
    pub fn add_command(&self, c: Command) {
        self.lock().commands.push((c, false));
    }

    /// A fresh order id/no for a trading command.
    pub fn next_ids(&self) -> (String, u32) {
        let mut s = self.lock();
        let n = s.next_order_no;
        s.next_order_no += 1;
        (format!("{n:012}"), n)
    }

    pub fn acks_for(&self, order_id: &str) -> Vec<Ack> {
        self.lock().acks.iter().filter(|a| a.order_id == order_id).cloned().collect()
    }

    /// A conformance trigger driving this node.
    pub fn trigger(&self) -> tradecast_sim::conformance::Trigger {
        let state = self.state.clone();
        Arc::new(move |req| {
            let state = state.clone();
            Box::pin(async move {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                let n = s.next_order_no;
                s.next_order_no += 1;
                match req {
                    tradecast_sim::conformance::TriggerRequest::MarketOrder { symbol } => {
                        s.orders.push(Due {
                            order: Order {
                                order_id: format!("{n:012}"),
                                order_no: n,
                                symbol,
                                kind: ea::OrderKind::Buy,
                                volume: Decimal::new(10, 2),
                                price: None,
                                sl: None,
                                tp: None,
                                max_slippage_points: None,
                                expiration_ms: None,
                            },
                            resolved: false,
                            offered_at: None,
                            offered_in: None,
                        });
                    }
                    tradecast_sim::conformance::TriggerRequest::CloseAll => {
                        s.commands.push((
                            Command::CloseAll {
                                order_id: format!("{n:012}"),
                                scope: CloseAllScope::Tradecast,
                            },
                            false,
                        ));
                    }
                }
                Ok(())
            })
        })
    }
}

fn problem(status: u16, code: &str, field: Option<String>) -> (u16, Vec<u8>, bool) {
    let mut p = Problem::new(status, code, code, code);
    p.field = field;
    (status, ea::encode(&p), true)
}

fn ok<T: serde::Serialize>(v: &T) -> (u16, Vec<u8>, bool) {
    (200, ea::encode(v), false)
}

async fn handle(
    AxState(state): AxState<Arc<Mutex<NodeState>>>,
    axum::extract::Path(call): axum::extract::Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let nonce = h(link_auth::HEADER_NONCE).map(str::to_owned);
    let key = h(link_auth::HEADER_KEY).map(str::to_owned);
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let (status, out, is_problem) = process(&state, &call, &path, &headers, &body).await;
    let (secret, broken) = {
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        (key.and_then(|k| s.keys.get(&k).cloned()), s.broken)
    };
    let mut resp =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), out.clone())
            .into_response();
    let ct = if is_problem { "application/problem+json" } else { "application/json" };
    resp.headers_mut().insert("content-type", HeaderValue::from_static(ct));
    if let (Some(secret), Some(nonce)) = (secret, nonce)
        && !broken.unsigned_answers
    {
        let secret = if broken.bad_answer_signature { b"wrong".to_vec() } else { secret };
        let sig = link_auth::sign_response(&secret, status, &nonce, &out);
        if let Ok(v) = HeaderValue::from_str(&sig) {
            resp.headers_mut().insert(link_auth::HEADER_SIGNATURE, v);
        }
    }
    resp
}

async fn process(
    state: &Arc<Mutex<NodeState>>,
    call: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (u16, Vec<u8>, bool) {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = s.broken.refuse_all {
            return problem(status, "refused", None);
        }
        if !s.broken.skip_auth {
            let rh = RequestHeaders {
                key: h(link_auth::HEADER_KEY),
                timestamp: h(link_auth::HEADER_TIMESTAMP),
                nonce: h(link_auth::HEADER_NONCE),
                signature: h(link_auth::HEADER_SIGNATURE),
            };
            let parsed = match rh.parse() {
                Ok(p) => p,
                Err(e) => return problem(401, e.code(), None),
            };
            let Some(secret) = s.keys.get(parsed.key_id).cloned() else {
                return problem(401, link_auth::AuthError::UnknownKey.code(), None);
            };
            let now = now_ms();
            if let Err(e) =
                link_auth::verify_request(&secret, &parsed, "POST", path, body, now, s.start_ms)
            {
                return problem(401, e.code(), None);
            }
            if let Err(e) = s.nonces.check_and_insert(parsed.nonce, parsed.timestamp_ms, now) {
                return problem(401, e.code(), None);
            }
        }
    }
    let Some(call) = Call::from_path(&format!("/ea/v1/{call}")) else {
        return problem(404, "no-such-call", None);
    };
    macro_rules! decode {
        ($t:ty) => {
            match ea::decode::<$t>(body) {
                Ok(v) => v,
                Err(e) => {
                    let p = Problem::from_body_error(&e);
                    return (p.status, ea::encode(&p), true);
                }
            }
        };
    }
    let session_ok = |s: &NodeState, id: &str| s.sessions.contains(id);
    match call {
        Call::Hello => {
            let hello = decode!(Hello);
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            let id = format!("s-{}", s.next_session);
            s.next_session += 1;
            s.sessions.insert(id.clone());
            s.hellos.push(hello);
            // A restart: every unresolved order is offered again.
            for d in s.orders.iter_mut() {
                d.offered_at = None;
                d.offered_in = None;
            }
            let bars_from = s
                .subscriptions
                .iter()
                .map(|sub| BarCursor {
                    symbol: sub.symbol.clone(),
                    timeframe: sub.timeframe,
                    from_ms: s
                        .bars_from
                        .get(&(sub.symbol.clone(), sub.timeframe))
                        .copied()
                        .unwrap_or(0),
                })
                .collect();
            ok(&HelloAnswer {
                session_id: id,
                poll_wait_ms: s.poll_wait_ms,
                subscriptions: s.subscriptions.clone(),
                equity_floor: s.equity_floor,
                deals_from_ms: s.deals_from_ms,
                bars_from,
            })
        }
        Call::Poll => {
            let poll = decode!(Poll);
            let deadline =
                Instant::now() + Duration::from_millis(u64::from(poll.wait_ms.min(10_000)));
            loop {
                {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    if !session_ok(&s, &poll.session_id) {
                        return problem(409, ea::PROBLEM_HELLO_REQUIRED, None);
                    }
                    let now = Instant::now();
                    let mut orders = Vec::new();
                    for d in s.orders.iter_mut().filter(|d| !d.resolved) {
                        let fresh = d.offered_in.as_deref() != Some(poll.session_id.as_str())
                            || d.offered_at
                                .is_none_or(|t| now.duration_since(t) > Duration::from_secs(30));
                        if fresh {
                            d.offered_at = Some(now);
                            d.offered_in = Some(poll.session_id.clone());
                            orders.push(d.order.clone());
                        }
                    }
                    // Trading commands stay until acked (re-sent each poll); others go once.
                    let commands: Vec<Command> = s
                        .commands
                        .iter()
                        .filter(|(_, done)| !done)
                        .map(|(c, _)| c.clone())
                        .collect();
                    for (c, done) in s.commands.iter_mut() {
                        if matches!(c, Command::RequestSpec { .. } | Command::Backfill { .. }) {
                            *done = true;
                        }
                    }
                    if !orders.is_empty() || !commands.is_empty() || Instant::now() >= deadline {
                        s.polls += 1;
                        return ok(&PollAnswer { orders, commands, equity_floor: s.equity_floor });
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Call::Ack => {
            let ack = decode!(Ack);
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            if s.broken.drop_acks {
                return problem(503, "unavailable", None);
            }
            if !session_ok(&s, &ack.session_id) {
                return problem(409, ea::PROBLEM_HELLO_REQUIRED, None);
            }
            let settled = ack.outcome != Outcome::Unknown;
            for d in s.orders.iter_mut().filter(|d| d.order.order_id == ack.order_id) {
                d.resolved |= settled;
            }
            for (c, done) in s.commands.iter_mut() {
                let (id, close) = match c {
                    Command::Close { order_id, .. } | Command::CloseAll { order_id, .. } => {
                        (Some(order_id.as_str()), true)
                    }
                    Command::Modify { order_id, .. } => (Some(order_id.as_str()), false),
                    _ => (None, false),
                };
                // A close refused with 10018, or requoted (10004, 10020, 10021), stays due (the
                // real node also waits before offering it again).
                let stays = ack.retcode == 10_018
                    || (close && matches!(ack.retcode, 10_004 | 10_020 | 10_021));
                if id == Some(ack.order_id.as_str()) && settled && !stays {
                    *done = true;
                }
            }
            s.acks.push(ack);
            ok(&AckAnswer { ok: true })
        }
        Call::State => {
            let st = decode!(State);
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            if !session_ok(&s, &st.session_id) {
                return problem(409, ea::PROBLEM_HELLO_REQUIRED, None);
            }
            // Reconciliation light: a fill with our comment settles an unknown order.
            let reconcile = s.reconcile;
            for p in st.positions.iter().filter(|_| reconcile) {
                for d in s.orders.iter_mut() {
                    if p.comment == ea::order_comment(&d.order.order_id) {
                        d.resolved = true;
                    }
                }
            }
            s.specs_seen.extend(st.specs.iter().map(|x| x.symbol.clone()));
            s.last_state = Some(st);
            ok(&StateAnswer { ok: true, out_of_line: Vec::new() })
        }
        Call::Deals => {
            let deals = decode!(Deals);
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            if !session_ok(&s, &deals.session_id) {
                return problem(409, ea::PROBLEM_HELLO_REQUIRED, None);
            }
            for d in deals.deals {
                s.deals_from_ms = s.deals_from_ms.max(d.time_ms);
                let reconcile = s.reconcile;
                for due in s.orders.iter_mut().filter(|_| reconcile) {
                    if d.comment == ea::order_comment(&due.order.order_id) {
                        due.resolved = true;
                    }
                }
                s.deals.insert(d.deal_ticket, d);
            }
            ok(&DealsAnswer { ok: true, deals_from_ms: s.deals_from_ms })
        }
        Call::Bars => {
            let bars = decode!(Bars);
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            if !session_ok(&s, &bars.session_id) {
                return problem(409, ea::PROBLEM_HELLO_REQUIRED, None);
            }
            s.bars_received += bars.bars.len();
            for b in bars.bars {
                let Some(tf_ms) = b.timeframe.seconds().map(|x| x * 1_000) else { continue };
                let key = (b.symbol.clone(), b.timeframe);
                let prev = s
                    .bars
                    .range(
                        (b.symbol.clone(), b.timeframe, i64::MIN)
                            ..(b.symbol.clone(), b.timeframe, b.time_ms),
                    )
                    .next_back()
                    .map(|(k, _)| k.2);
                if let Some(prev) = prev
                    && b.time_ms > prev + tf_ms
                    && s.backfills_asked.insert((b.symbol.clone(), b.timeframe, prev + tf_ms))
                {
                    s.commands.push((
                        Command::Backfill {
                            symbol: b.symbol.clone(),
                            timeframe: b.timeframe,
                            from_ms: prev + tf_ms,
                            to_ms: b.time_ms - tf_ms,
                        },
                        false,
                    ));
                }
                let next = s.bars_from.get(&key).copied().unwrap_or(0).max(b.time_ms + tf_ms);
                s.bars_from.insert(key, next);
                s.bars.insert((b.symbol.clone(), b.timeframe, b.time_ms), b);
            }
            let bars_from = s
                .bars_from
                .iter()
                .map(|((symbol, timeframe), from_ms)| BarCursor {
                    symbol: symbol.clone(),
                    timeframe: *timeframe,
                    from_ms: *from_ms,
                })
                .collect();
            ok(&BarsAnswer { ok: true, bars_from })
        }
    }
}

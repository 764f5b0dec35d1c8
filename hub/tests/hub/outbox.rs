//! The outbox and the jobs (issue 16, item 8): messages committed with their cause and sent by
//! the runner to a real local HTTP service (axum on 127.0.0.1:0) through a deliverer that POSTs
//! to it; retries, the service's retry-after, dead letters and the console's Retry and Discard;
//! a runner that dies mid-delivery (its message redelivered, counted); two instances sharing
//! 500 messages on one PostgreSQL; two schedulers running a due job once, taking over a
//! crashed lease, recording a failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode as AxStatus;
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tradecast_hub::config::Config;
use tradecast_hub::jobs::{self, Job, Schedule, Scheduler};
use tradecast_hub::outbox::{self, Channel, Deliver, Message, NewMessage, Outcome, Runner};
use tradecast_hub::state::AppState;

use crate::console::{console_cookie, csrf_of, page};
use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(
    outbox_enqueue_is_transactional_and_deduplicated,
    outbox_runner_delivers_in_order_with_retries,
    outbox_crashed_delivery_is_redelivered_and_counted,
    outbox_console_page_retries_and_discards,
    jobs_run_once_per_due_time,
);

/// Short polls, leases and backoffs; limits high enough not to slow the tests (the limiter has
/// its own unit tests).
fn fast(c: &mut Config) {
    c.rate_limits.login_per_ip.burst = 100;
    c.outbox.poll_interval_ms = 20;
    c.outbox.lease_ms = 5000;
    c.outbox.backoff_base_ms = 50;
    c.outbox.backoff_cap_ms = 200;
    c.outbox.max_attempts = 3;
    c.outbox.telegram_per_s = 10_000;
    c.outbox.telegram_per_chat_per_min = 60_000;
    c.outbox.telegram_per_group_per_min = 60_000;
    c.outbox.stripe_per_s = 10_000;
    c.outbox.jobs_poll_interval_ms = 20;
}

/// One request the service received.
#[derive(Debug, Clone)]
struct Arrival {
    id: String,
    route: Option<String>,
    n: i64,
    by: String,
    at: Instant,
}

/// The outside service: answers by the payload's `script` and the attempt number.
#[derive(Clone, Default)]
struct Service {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

impl Service {
    async fn start(&self) -> String {
        let app = axum::Router::new()
            .route("/deliver", axum::routing::post(receive))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/deliver")
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    fn of(&self, id: &str) -> Vec<Arrival> {
        self.arrivals().into_iter().filter(|a| a.id == id).collect()
    }
}

async fn receive(State(s): State<Service>, Json(body): Json<Value>) -> axum::response::Response {
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let script = body["payload"]["script"].as_str().unwrap_or("ok").to_string();
    let attempt = {
        let mut a = s.arrivals.lock().unwrap();
        a.push(Arrival {
            id: id.clone(),
            route: body["route"].as_str().map(str::to_owned),
            n: body["payload"]["n"].as_i64().unwrap_or(-1),
            by: body["by"].as_str().unwrap_or_default().to_string(),
            at: Instant::now(),
        });
        a.iter().filter(|x| x.id == id).count()
    };
    match (script.as_str(), attempt) {
        ("retry_once", 1) => (AxStatus::SERVICE_UNAVAILABLE, "busy").into_response(),
        ("retry_after_once", 1) => (
            AxStatus::TOO_MANY_REQUESTS,
            Json(json!({ "ok": false, "parameters": { "retry_after": 1 } })),
        )
            .into_response(),
        ("fail_once", 1) | ("fail", _) => (AxStatus::BAD_REQUEST, "chat not found").into_response(),
        ("always_busy", _) => (AxStatus::SERVICE_UNAVAILABLE, "busy").into_response(),
        _ => (AxStatus::OK, Json(json!({ "ok": true }))).into_response(),
    }
}

/// A deliverer that POSTs the message to the service over real HTTP and reads its answer as a
/// Telegram-like API: 200 sent, 429 with `retry_after` seconds, 5xx retry, 4xx permanent.
/// `hang` makes it never return after the service answered (a runner dying mid-delivery).
struct HttpDeliverer {
    http: reqwest::Client,
    url: String,
    by: String,
    hang: bool,
}

impl HttpDeliverer {
    fn shared(url: &str, by: &str) -> Arc<dyn Deliver> {
        Arc::new(HttpDeliverer {
            http: reqwest::Client::new(),
            url: url.into(),
            by: by.into(),
            hang: false,
        })
    }
}

impl Deliver for HttpDeliverer {
    fn deliver<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let body =
                json!({ "id": msg.id, "route": msg.route, "payload": msg.payload, "by": self.by });
            let r = match self.http.post(&self.url).json(&body).send().await {
                Ok(r) => r,
                Err(e) => return Outcome::Retry(e.to_string()),
            };
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if self.hang {
                futures::future::pending::<()>().await;
            }
            match status.as_u16() {
                200 => Outcome::Sent,
                429 => {
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let s = v["parameters"]["retry_after"].as_u64().unwrap_or(1);
                    Outcome::RetryAfter(Duration::from_secs(s))
                }
                500..=599 => Outcome::Retry(format!("{status}: {text}")),
                _ => Outcome::Fail(format!("{status}: {text}")),
            }
        })
    }
}

/// Waits up to 30 s for `check` to hold.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Enqueues `msgs` in one committed write transaction; their ids (None: deduplicated).
async fn enqueue_all(state: &AppState, msgs: &[NewMessage<'_>]) -> Vec<Option<String>> {
    let mut tx = state.db.begin_write().await.unwrap();
    let mut ids = Vec::new();
    for m in msgs {
        ids.push(outbox::enqueue(&mut tx, m, state.now_ms()).await.unwrap());
    }
    tx.commit().await.unwrap();
    ids
}

fn telegram<'a>(route: Option<&'a str>, payload: &'a Value) -> NewMessage<'a> {
    NewMessage {
        channel: Channel::Telegram,
        kind: "telegram.send_message",
        route,
        payload,
        dedupe_key: None,
        cause: Some("test"),
        not_before_ms: None,
    }
}

async fn state_of(hub: &TestHub, id: &str) -> Message {
    outbox::get(&hub.db, id).await.unwrap().expect("the message")
}

async fn all_final(hub: &TestHub, ids: &[String]) -> bool {
    for id in ids {
        let m = state_of(hub, id).await;
        if !matches!(m.state.as_str(), "sent" | "dead") {
            return false;
        }
    }
    true
}

async fn outbox_enqueue_is_transactional_and_deduplicated(b: Backend) {
    let hub = TestHub::start_with(b, fast).await;
    let service = Service::default();
    let url = service.start().await;
    let runner = Runner::start(
        hub.state().clone(),
        vec![(Channel::Telegram, HttpDeliverer::shared(&url, "a"))],
    );

    // Rolled back: no row, nothing sent.
    let payload = json!({ "text": "rolled back", "n": 0 });
    let mut tx = hub.db.begin_write().await.unwrap();
    let id = outbox::enqueue(&mut tx, &telegram(Some("7"), &payload), hub.clock.now_ms())
        .await
        .unwrap()
        .expect("a new message");
    tx.rollback().await.unwrap();
    assert!(outbox::get(&hub.db, &id).await.unwrap().is_none());

    // A reminder scheduled for tomorrow in the same chat holds nothing up.
    let later = json!({ "text": "tomorrow", "n": 9 });
    let tomorrow = hub.clock.now_ms() + 86_400_000;
    let scheduled = NewMessage { not_before_ms: Some(tomorrow), ..telegram(Some("7"), &later) };
    let scheduled = enqueue_all(hub.state(), &[scheduled]).await[0].clone().expect("new");

    // The same dedupe key twice (even in two transactions): one row.
    let payload = json!({ "text": "once", "n": 1 });
    let msg =
        NewMessage { dedupe_key: Some("reminder:sub_1:2026-12"), ..telegram(Some("7"), &payload) };
    let first = enqueue_all(hub.state(), std::slice::from_ref(&msg)).await[0].clone().expect("new");
    assert_eq!(enqueue_all(hub.state(), &[msg.clone(), msg]).await, vec![None, None]);
    let rows = outbox::list(&hub.db, None, 100).await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{rows:?}");
    assert!(ids.contains(&first.as_str()) && ids.contains(&scheduled.as_str()));
    assert_eq!(state_of(&hub, &first).await.cause.as_deref(), Some("test"));

    wait_for("the message", || async { state_of(&hub, &first).await.state == "sent" }).await;
    // Give the runner a few more polls: the rolled-back message never appears.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let arrivals = service.arrivals();
    assert_eq!(arrivals.len(), 1, "{arrivals:?}");
    assert_eq!(arrivals[0].id, first);
    let sent = state_of(&hub, &first).await;
    assert_eq!((sent.attempts, sent.redelivered), (1, 0));
    assert!(sent.sent_at_ms.is_some());
    let waiting = state_of(&hub, &scheduled).await;
    assert_eq!((waiting.state.as_str(), waiting.attempts), ("queued", 0));
    // Its time comes: sent.
    hub.clock.advance_ms(86_400_000);
    wait_for("the reminder", || async { state_of(&hub, &scheduled).await.state == "sent" }).await;
    assert_eq!(service.arrivals().len(), 2);
    runner.stop().await;
    hub.stop().await;
}

async fn outbox_runner_delivers_in_order_with_retries(b: Backend) {
    let hub = TestHub::start_with(b, fast).await;
    let service = Service::default();
    let url = service.start().await;
    let state = hub.state().clone();

    // Three chats (one a group), five messages each, interleaved in one transaction.
    let payloads: Vec<(String, Value)> = (0..15)
        .map(|i| (["100", "200", "-300"][i % 3].to_string(), json!({ "text": "hi", "n": i })))
        .collect();
    let msgs: Vec<NewMessage<'_>> =
        payloads.iter().map(|(r, p)| telegram(Some(r.as_str()), p)).collect();
    let ordered: Vec<String> = enqueue_all(&state, &msgs).await.into_iter().flatten().collect();
    // A transient failure, then the next message of its chat; the service's retry-after; a
    // permanent failure; one that keeps failing; a Stripe call (no Stripe deliverer here).
    let p_retry = json!({ "script": "retry_once", "n": 1 });
    let p_after_retry = json!({ "n": 2 });
    let p_retry_after = json!({ "script": "retry_after_once", "n": 1 });
    let p_fail = json!({ "script": "fail", "n": 1 });
    let p_busy = json!({ "script": "always_busy", "n": 1 });
    let p_stripe = json!({ "invoice": "in_1" });
    let ids = enqueue_all(
        &state,
        &[
            telegram(Some("400"), &p_retry),
            telegram(Some("400"), &p_after_retry),
            telegram(Some("500"), &p_retry_after),
            telegram(None, &p_fail),
            telegram(Some("600"), &p_busy),
            NewMessage {
                channel: Channel::Stripe,
                kind: "stripe.refund_invoice",
                route: None,
                payload: &p_stripe,
                dedupe_key: Some("refund:in_1"),
                cause: Some("stripe_event:evt_1"),
                not_before_ms: None,
            },
        ],
    )
    .await;
    let ids: Vec<String> = ids.into_iter().flatten().collect();
    let [retry, after_retry, retry_after, fail, busy, stripe] = ids.as_slice() else {
        panic!("{ids:?}")
    };

    let runner =
        Runner::start(state.clone(), vec![(Channel::Telegram, HttpDeliverer::shared(&url, "a"))]);
    let mut telegram_ids = ordered.clone();
    telegram_ids.extend([retry, after_retry, retry_after, fail, busy].map(String::clone));
    wait_for("every Telegram message sent or dead", || all_final(&hub, &telegram_ids)).await;

    // Every plain message once, in order per chat.
    let arrivals = service.arrivals();
    for id in &ordered {
        assert_eq!(service.of(id).len(), 1, "{id}");
        assert_eq!(state_of(&hub, id).await.state, "sent");
    }
    for route in ["100", "200", "-300", "400"] {
        let ns: Vec<i64> =
            arrivals.iter().filter(|a| a.route.as_deref() == Some(route)).map(|a| a.n).collect();
        let mut sorted = ns.clone();
        sorted.sort();
        assert_eq!(ns, sorted, "route {route} out of order: {ns:?}");
    }
    // Retry then sent; the chat's next message only after it.
    let r = state_of(&hub, retry).await;
    assert_eq!((r.state.as_str(), r.attempts), ("sent", 2));
    assert!(r.last_error.as_deref().unwrap_or_default().contains("503"), "{r:?}");
    let tries = service.of(retry);
    assert_eq!(tries.len(), 2);
    let next = service.of(after_retry);
    assert_eq!(next.len(), 1);
    assert!(next[0].at > tries[1].at, "the chat's second message overtook the first");
    // Retry-after honoured: not before the second the service gave.
    let tries = service.of(retry_after);
    assert_eq!(tries.len(), 2);
    let gap = tries[1].at - tries[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert_eq!(state_of(&hub, retry_after).await.state, "sent");
    // A permanent failure: dead at once; one that keeps failing: dead after max_attempts.
    let f = state_of(&hub, fail).await;
    assert_eq!((f.state.as_str(), f.attempts), ("dead", 1));
    assert!(f.last_error.as_deref().unwrap_or_default().contains("chat not found"), "{f:?}");
    assert_eq!(service.of(fail).len(), 1);
    let d = state_of(&hub, busy).await;
    assert_eq!((d.state.as_str(), d.attempts), ("dead", 3));
    assert!(d.last_error.as_deref().unwrap_or_default().contains("after 3 attempts"), "{d:?}");
    // No Stripe deliverer: the Stripe call stays queued, untouched.
    let s = state_of(&hub, stripe).await;
    assert_eq!((s.state.as_str(), s.attempts), ("queued", 0));
    assert!(service.of(stripe).is_empty());

    // Retried from the console's function: queued again and sent.
    let p_fail_once = json!({ "script": "fail_once", "n": 1 });
    let once =
        enqueue_all(&state, &[telegram(Some("700"), &p_fail_once)]).await[0].clone().unwrap();
    wait_for("a dead letter", || async { state_of(&hub, &once).await.state == "dead" }).await;
    outbox::retry(&state, &once, "system", "test").await.unwrap();
    wait_for("the retried letter", || async { state_of(&hub, &once).await.state == "sent" }).await;
    assert_eq!(service.of(&once).len(), 2);
    // Only a dead letter can be retried.
    let e = outbox::retry(&state, &once, "system", "test").await.unwrap_err();
    assert_eq!(e.status().as_u16(), 409);
    let counts = outbox::counts(&hub.db).await.unwrap();
    assert!(counts.contains(&(Channel::Stripe, "queued".into(), 1)), "{counts:?}");
    assert!(counts.contains(&(Channel::Telegram, "dead".into(), 2)), "{counts:?}");
    runner.stop().await;
    hub.stop().await;
}

async fn outbox_crashed_delivery_is_redelivered_and_counted(b: Backend) {
    let hub = TestHub::start_with(b, |c| {
        fast(c);
        c.outbox.lease_ms = 1000;
    })
    .await;
    let service = Service::default();
    let url = service.start().await;
    let state = hub.state().clone();
    let (p1, p2) = (json!({ "n": 1 }), json!({ "n": 2 }));
    let ids = enqueue_all(&state, &[telegram(Some("42"), &p1), telegram(Some("42"), &p2)]).await;
    let (first, second) = (ids[0].clone().unwrap(), ids[1].clone().unwrap());

    // A runner whose deliverer delivers and never returns: the task is aborted (a crash).
    let hanging: Arc<dyn Deliver> = Arc::new(HttpDeliverer {
        http: reqwest::Client::new(),
        url: url.clone(),
        by: "crashed".into(),
        hang: true,
    });
    let crashed = Runner::start(state.clone(), vec![(Channel::Telegram, hanging)]);
    wait_for("the first delivery", || async { !service.of(&first).is_empty() }).await;
    crashed.abort();
    let m = state_of(&hub, &first).await;
    assert_eq!(m.state, "sending");
    assert!(service.of(&second).is_empty(), "the chat's second message waits for the first");

    // A second runner takes it over once the lease expired: delivered again, counted; nothing
    // lost.
    let runner =
        Runner::start(state.clone(), vec![(Channel::Telegram, HttpDeliverer::shared(&url, "b"))]);
    let ids = [first.clone(), second.clone()];
    wait_for("both messages", || all_final(&hub, &ids)).await;
    let redone = service.of(&first);
    assert_eq!(redone.len(), 2, "{redone:?}");
    assert_eq!((redone[0].by.as_str(), redone[1].by.as_str()), ("crashed", "b"));
    assert!(redone[1].at - redone[0].at >= Duration::from_millis(900), "before the lease expired");
    let m = state_of(&hub, &first).await;
    assert_eq!((m.state.as_str(), m.redelivered), ("sent", 1));
    let m2 = state_of(&hub, &second).await;
    assert_eq!((m2.state.as_str(), m2.redelivered), ("sent", 0));
    assert_eq!(service.of(&second).len(), 1);
    assert!(service.of(&second)[0].at > redone[1].at);
    let metrics = hub.state().metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tradecast_outbox_redelivered_total{channel=\"telegram\"}")),
        "{metrics}"
    );
    runner.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_two_instances_share_500_messages_on_postgres() {
    let a = TestHub::start_with(Backend::Postgres, fast).await;
    let b = a.start_instance(fast).await;
    let service = Service::default();
    let url = service.start().await;
    let ra =
        Runner::start(a.state().clone(), vec![(Channel::Stripe, HttpDeliverer::shared(&url, "a"))]);
    let rb =
        Runner::start(b.state().clone(), vec![(Channel::Stripe, HttpDeliverer::shared(&url, "b"))]);
    let payloads: Vec<Value> = (0..500).map(|n| json!({ "n": n })).collect();
    let msgs: Vec<NewMessage<'_>> = payloads
        .iter()
        .map(|p| NewMessage {
            channel: Channel::Stripe,
            kind: "stripe.call",
            route: None,
            payload: p,
            dedupe_key: None,
            cause: None,
            not_before_ms: None,
        })
        .collect();
    let started = Instant::now();
    let ids: Vec<String> = enqueue_all(a.state(), &msgs).await.into_iter().flatten().collect();
    assert_eq!(ids.len(), 500);
    wait_for("500 sent", || async { service.arrivals().len() >= 500 && all_final(&a, &ids).await })
        .await;
    let took = started.elapsed();
    let arrivals = service.arrivals();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    let mut per_runner: HashMap<&str, usize> = HashMap::new();
    for x in &arrivals {
        *per_id.entry(x.id.as_str()).or_default() += 1;
        *per_runner.entry(x.by.as_str()).or_default() += 1;
    }
    assert_eq!(arrivals.len(), 500);
    assert!(ids.iter().all(|id| per_id.get(id.as_str()) == Some(&1)), "a message twice or never");
    assert!(per_runner.get("a").is_some_and(|n| *n > 0), "{per_runner:?}");
    assert!(per_runner.get("b").is_some_and(|n| *n > 0), "{per_runner:?}");
    let counts = outbox::counts(&a.db).await.unwrap();
    assert_eq!(counts, vec![(Channel::Stripe, "sent".to_string(), 500)]);
    println!("RESULT outbox_two_instances_500: {took:?}, split {per_runner:?}");
    ra.stop().await;
    rb.stop().await;
    b.stop().await;
    a.stop().await;
}

/// Counts its runs; fails when asked to.
struct Counting {
    runs: Arc<AtomicUsize>,
    fail: bool,
}

impl Job for Counting {
    fn run<'a>(&'a self, _state: &'a AppState) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            // Long enough for the other scheduler to poll several times meanwhile.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.fail { Err(format!("boom {n}")) } else { Ok(format!("run {n}")) }
        })
    }
}

/// Two schedulers on one database: on PostgreSQL two hub instances; on SQLite (one instance
/// by design) two schedulers of one hub.
async fn jobs_run_once_per_due_time(backend: Backend) {
    let a = TestHub::start_with(backend, fast).await;
    let b = match backend {
        Backend::Postgres => Some(a.start_instance(fast).await),
        Backend::Sqlite => None,
    };
    let hour = Schedule::Every(Duration::from_secs(3600));
    let (once, taken, failing) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    // A lease left by a scheduler that crashed an hour before it expires.
    let now = a.clock.now_ms();
    jobs::upsert(&a.db, "takeover", &hour, now).await.unwrap();
    sqlx::query(
        "UPDATE jobs SET lease_owner = 'crashed/0000', lease_until_ms = $1 WHERE name = 'takeover'",
    )
    .bind(now + 3_600_000)
    .execute(a.db.pool())
    .await
    .unwrap();
    let scheduler = |hub: &TestHub| {
        let mut s = Scheduler::new();
        s.register("once", hour, Arc::new(Counting { runs: once.clone(), fail: false })).unwrap();
        s.register("takeover", hour, Arc::new(Counting { runs: taken.clone(), fail: false }))
            .unwrap();
        s.register("failing", hour, Arc::new(Counting { runs: failing.clone(), fail: true }))
            .unwrap();
        s.start(hub.state().clone())
    };
    let (sa, sb) = (scheduler(&a), scheduler(b.as_ref().unwrap_or(&a)));
    assert_ne!(sa.owner(), sb.owner());
    let status = |name: &'static str| {
        let db = a.db.clone();
        async move { jobs::list(&db).await.unwrap().into_iter().find(|j| j.name == name) }
    };
    wait_for("the due jobs", || async {
        status("once").await.is_some_and(|j| j.runs == 1)
            && status("failing").await.is_some_and(|j| j.runs == 1)
    })
    .await;
    // Many polls of both schedulers later: still once each; the crashed lease still holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(once.load(Ordering::SeqCst), 1);
    assert_eq!(failing.load(Ordering::SeqCst), 1);
    assert_eq!(taken.load(Ordering::SeqCst), 0);
    let j = status("once").await.unwrap();
    assert_eq!((j.last_outcome.as_deref(), j.last_summary.as_deref()), (Some("ok"), Some("run 1")));
    assert!(j.lease_owner.is_none() && j.next_run_at_ms >= now + 3_600_000, "{j:?}");
    let f = status("failing").await.unwrap();
    assert_eq!((f.last_outcome.as_deref(), f.failures), (Some("failed"), 1));
    assert_eq!(f.last_summary.as_deref(), Some("boom 1"));
    assert!(f.next_run_at_ms >= now + 3_600_000, "a failure waits for its next due time: {f:?}");

    // The crashed lease expires: one of the schedulers takes the job over, once.
    a.clock.advance_ms(3_600_000 + 1000);
    wait_for("the takeover", || async { status("takeover").await.is_some_and(|j| j.runs == 1) })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(taken.load(Ordering::SeqCst), 1);
    let t = status("takeover").await.unwrap();
    assert!(t.lease_owner.is_none() && t.last_outcome.as_deref() == Some("ok"), "{t:?}");
    assert!(
        [sa.owner(), sb.owner()].iter().all(|o| !o.starts_with("crashed")),
        "owners are the schedulers'"
    );
    sa.stop().await;
    sb.stop().await;
    if let Some(b) = b {
        b.stop().await;
    }
    a.stop().await;
}

async fn audited(hub: &TestHub, actor: &str, action: &str) -> usize {
    let filter = tradecast_hub::audit::Filter {
        actor: Some(actor.into()),
        action: Some(action.into()),
        ..Default::default()
    };
    tradecast_hub::audit::search(&hub.db, &filter, 1000).await.unwrap().len()
}

async fn outbox_console_page_retries_and_discards(b: Backend) {
    let hub = TestHub::start_with(b, fast).await;
    let service = Service::default();
    let url = service.start().await;
    let state = hub.state().clone();
    let owner = hub.owner().await;
    let runner =
        Runner::start(state.clone(), vec![(Channel::Telegram, HttpDeliverer::shared(&url, "a"))]);
    let p1 = json!({ "script": "fail_once", "text": "<script>alert(1)</script>", "n": 1 });
    let p2 = json!({ "script": "fail", "n": 2 });
    let p_stripe = json!({ "n": 3 });
    let ids = enqueue_all(
        &state,
        &[
            telegram(Some("11"), &p1),
            telegram(Some("12"), &p2),
            NewMessage {
                channel: Channel::Stripe,
                kind: "stripe.cancel",
                route: None,
                payload: &p_stripe,
                dedupe_key: None,
                cause: Some("stripe_event:evt_9"),
                not_before_ms: None,
            },
        ],
    )
    .await;
    let (dead1, dead2) = (ids[0].clone().unwrap(), ids[1].clone().unwrap());
    let dead = [dead1.clone(), dead2.clone()];
    wait_for("two dead letters", || all_final(&hub, &dead)).await;

    // For owners and admins only.
    let admin = hub.user(&owner, "admin").await;
    let admin_cookie = console_cookie(&hub, &admin.email, &admin.password).await;
    let r = page(&hub, "GET", "/outbox", Some(&admin_cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let role_path = format!("/api/v1/users/{}/role", admin.user_id);
    hub.send("PUT", &role_path, Some(&owner.token), Some(json!({ "role": "subscriber" })))
        .await
        .ok(200);
    let r = page(&hub, "GET", "/outbox", Some(&admin_cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    let cookie = console_cookie(&hub, &owner.email, &owner.password).await;
    let r = page(&hub, "GET", "/outbox", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("<a href=\"/outbox\" class=\"on\">Outbox</a>"), "{}", r.text);
    let dead_table = &r.text[r.text.find("<table id=\"dead\"").unwrap()..];
    let dead_table = &dead_table[..dead_table.find("</table>").unwrap()];
    assert!(dead_table.contains(&dead1[..12]) && dead_table.contains(&dead2[..12]));
    assert!(dead_table.contains("chat not found") && dead_table.contains("Retry"));
    // The payload is shown escaped, never as markup.
    assert!(dead_table.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{dead_table}");
    assert!(!r.text.contains("<script>alert"));
    let queued = &r.text[r.text.find("<table id=\"queued\"").unwrap()..];
    assert!(queued.contains("stripe.cancel") && queued.contains("stripe_event:evt_9"));
    assert!(r.text.contains("<table id=\"jobs\""));
    if let Some(dir) = std::env::var_os("TRADECAST_CONSOLE_SHOTS") {
        std::fs::write(std::path::Path::new(&dir).join("outbox.html"), &r.text).unwrap();
    }
    let ops = page(&hub, "GET", "/operations", Some(&cookie), &[], None).await;
    assert!(
        ops.text.contains("href=\"/outbox\"") && ops.text.contains("2 dead letter(s)"),
        "{}",
        ops.text
    );

    // Retry without the CSRF token: refused, nothing done.
    let origin = format!("http://{}", hub.addr);
    let same = [("origin", origin.as_str()), ("sec-fetch-site", "same-origin")];
    let retry = format!("/outbox/{dead1}/retry");
    let r2 = page(&hub, "POST", &retry, Some(&cookie), &same, Some(&[])).await;
    assert_eq!(r2.status, StatusCode::FORBIDDEN, "{}", r2.text);
    assert_eq!(state_of(&hub, &dead1).await.state, "dead");
    assert_eq!(audited(&hub, &owner.user_id, "outbox.retry").await, 0);
    // With it: queued again, audited, then sent (the service accepts the second attempt).
    let csrf = csrf_of(&r);
    let token = [("csrf", csrf.as_str())];
    let r2 = page(&hub, "POST", &retry, Some(&cookie), &same, Some(&token)).await;
    assert_eq!(r2.status, StatusCode::SEE_OTHER, "{}", r2.text);
    assert_eq!(r2.headers["location"], "/outbox?done=retried");
    assert_eq!(audited(&hub, &owner.user_id, "outbox.retry").await, 1);
    wait_for("the retried letter", || async { state_of(&hub, &dead1).await.state == "sent" }).await;
    // Discard the other; a second discard finds no dead letter.
    let discard = format!("/outbox/{dead2}/discard");
    let r2 = page(&hub, "POST", &discard, Some(&cookie), &same, Some(&token)).await;
    assert_eq!(r2.status, StatusCode::SEE_OTHER, "{}", r2.text);
    assert_eq!(state_of(&hub, &dead2).await.state, "discarded");
    assert_eq!(audited(&hub, &owner.user_id, "outbox.discard").await, 1);
    let r2 = page(&hub, "POST", &discard, Some(&cookie), &same, Some(&token)).await;
    assert_eq!(r2.status, StatusCode::CONFLICT, "{}", r2.text);
    let r2 = page(&hub, "POST", "/outbox/nope/retry", Some(&cookie), &same, Some(&token)).await;
    assert_eq!(r2.status, StatusCode::NOT_FOUND, "{}", r2.text);
    let r = page(&hub, "GET", "/outbox?done=discarded", Some(&cookie), &[], None).await;
    assert!(r.text.contains("Dead letter discarded.") && r.text.contains("No dead letter."));
    assert!(tradecast_hub::audit::verify(&hub.db).await.is_ok());
    runner.stop().await;
    hub.stop().await;
}

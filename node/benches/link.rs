//! End-to-end figures of the node (`harness = false`, prints a table):
//!
//! - EA round trip: a signal committed by the node → the order in the EA's held long-poll
//!   answer, over the real signed HTTP link, p50/p99;
//! - acks/s: orders acked one after another over the link, each committed durably (fsync)
//!   before its answer;
//! - idle: the node binary's RSS and CPU over 10 s with an EA long-polling it (500 ms).
//!
//! `cargo bench -p tradecast-node --bench link`. Name the machine; compare only runs on one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tradecast_node::config::Config;
use tradecast_node::serve::{self, tokio_util_shutdown::Shutdown};
use tradecast_protocol::ea::{self, Call};
use tradecast_protocol::link_auth;

struct Client {
    url: String,
    key_id: String,
    secret: String,
    http: reqwest::Client,
    n: u64,
}

impl Client {
    async fn call<T: serde::Serialize, A: serde::de::DeserializeOwned>(
        &mut self,
        call: Call,
        req: &T,
    ) -> A {
        self.n += 1;
        let body = ea::encode(req);
        let nonce = format!("bench-nonce-{:016}", self.n);
        let ts = tradecast_node::runtime::wall_ms().to_string();
        let sig = link_auth::sign_request(
            self.secret.as_bytes(),
            "POST",
            call.path(),
            &ts,
            &nonce,
            &body,
        );
        let r = self
            .http
            .post(format!("{}{}", self.url, call.path()))
            .header(link_auth::HEADER_KEY, &self.key_id)
            .header(link_auth::HEADER_TIMESTAMP, &ts)
            .header(link_auth::HEADER_NONCE, &nonce)
            .header(link_auth::HEADER_SIGNATURE, sig)
            .body(body)
            .send()
            .await
            .expect("the node answers");
        assert_eq!(r.status().as_u16(), 200);
        ea::decode(&r.bytes().await.expect("body")).expect("decodes")
    }
}

fn hello(t: i64) -> ea::Hello {
    ea::Hello {
        login: 1,
        server: "Bench".into(),
        company: "Bench".into(),
        currency: "USD".into(),
        leverage: 100,
        margin_mode: ea::MarginMode::Hedging,
        terminal_build: 1,
        ea_version: "bench".into(),
        server_utc_offset_s: 0,
        terminal_time_ms: t,
        symbols: vec![ea::SymbolSpec {
            symbol: "EURUSD".into(),
            digits: 5,
            point: Decimal::new(1, 5),
            tick_size: Decimal::new(1, 5),
            tick_value_profit: Decimal::ONE,
            tick_value_loss: Decimal::ONE,
            contract_size: Decimal::from(100_000),
            volume_min: Decimal::new(1, 2),
            volume_max: Decimal::from(100),
            volume_step: Decimal::new(1, 2),
            stops_level: 0,
            freeze_level: 0,
            trade_mode: ea::TradeMode::Full,
            currency_base: "EUR".into(),
            currency_profit: "USD".into(),
            currency_margin: "EUR".into(),
            sessions: Vec::new(),
        }],
        floor_breach: None,
        instance: None,
    }
}

fn signal(node: &tradecast_node::runtime::Node, t: i64) -> tradecast_protocol::Signal {
    let id = tradecast_node::keys::random_bytes::<16>().expect("rng");
    tradecast_protocol::Signal {
        id: tradecast_protocol::SignalId(*id),
        provider: node.device_id(),
        strategy_id: "bench".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: tradecast_protocol::Timeframe::H1,
        side: tradecast_protocol::Side::Buy,
        entry_kind: tradecast_protocol::EntryKind::Market,
        entry: Decimal::new(107_000, 5),
        stop: Decimal::new(106_000, 5),
        tp1: Decimal::new(109_000, 5),
        tp2: None,
        bar_time_ms: t,
        expires_at_ms: t + 3_600_000,
        leg: 1,
        indicators: Vec::new(),
        rr: Decimal::TWO,
    }
}

fn ack(session: &str, o: &ea::Order) -> ea::Ack {
    ea::Ack {
        session_id: session.to_owned(),
        order_id: o.order_id.clone(),
        outcome: ea::Outcome::Done,
        retcode: 10_009,
        message: "bench".into(),
        found_by_lookup: false,
        order_ticket: Some(u64::from(o.order_no)),
        deal_ticket: Some(u64::from(o.order_no)),
        position_id: Some(u64::from(o.order_no)),
        price: o.price,
        volume: Some(o.volume),
        time_ms: Some(tradecast_node::runtime::wall_ms()),
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn in_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    serve::init(dir.path()).expect("init");
    let key = serve::new_ea_key(dir.path()).expect("key");
    let config = Config {
        ea_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    let shutdown = Shutdown::new();
    let running = serve::start(dir.path(), &config, shutdown.clone()).await.expect("start");
    let node = running.node.clone();
    let mut ea_client = Client {
        url: format!("http://{}", running.ea_addr),
        key_id: key.key_id.clone(),
        secret: key.secret.to_string(),
        http: reqwest::Client::new(),
        n: 0,
    };
    let t = tradecast_node::runtime::wall_ms();
    let h: ea::HelloAnswer = ea_client.call(Call::Hello, &hello(t)).await;
    let account = node.pick_account(None).expect("account");
    node.store().write(|_| Ok(())).expect("warm");

    // Round trip with the long-poll held.
    let n = 200;
    let mut rtt = Vec::with_capacity(n);
    for i in 0..n {
        let session = h.session_id.clone();
        let mut c = Client { n: 1_000_000 * (i as u64 + 1), ..clone_client(&ea_client) };
        let poll = tokio::spawn(async move {
            let a: ea::PollAnswer = c
                .call(
                    Call::Poll,
                    &ea::Poll { session_id: session, wait_ms: 5_000, terminal_time_ms: t },
                )
                .await;
            (a, Instant::now(), c)
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let start = Instant::now();
        let row = node
            .submit_signal(&account, signal(&node, t), true, Some(Decimal::new(1, 2)))
            .expect("signal");
        assert!(row.order_id.is_some(), "{row:?}");
        let (answer, at, mut c) = poll.await.expect("poll");
        rtt.push(at.duration_since(start).as_secs_f64() * 1e3);
        let o = answer.orders.first().expect("the order arrived");
        let _: ea::AckAnswer = c.call(Call::Ack, &ack(&h.session_id, o)).await;
    }
    let p50 = pct(&mut rtt, 0.50);
    let p99 = pct(&mut rtt, 0.99);

    // Acks per second, each committed before its answer.
    let n_acks = 300;
    for _ in 0..n_acks {
        node.submit_signal(&account, signal(&node, t), true, Some(Decimal::new(1, 2)))
            .expect("signal");
    }
    let mut orders = Vec::new();
    while orders.len() < n_acks {
        let a: ea::PollAnswer = ea_client
            .call(
                Call::Poll,
                &ea::Poll { session_id: h.session_id.clone(), wait_ms: 0, terminal_time_ms: t },
            )
            .await;
        if a.orders.is_empty() {
            break;
        }
        orders.extend(a.orders);
    }
    let start = Instant::now();
    for o in &orders {
        let _: ea::AckAnswer = ea_client.call(Call::Ack, &ack(&h.session_id, o)).await;
    }
    let acks_s = orders.len() as f64 / start.elapsed().as_secs_f64();
    println!(
        "| EA round trip, signal committed → order in the held poll answer | p50 {p50:.2} ms, p99 {p99:.2} ms ({n} runs) |"
    );
    println!(
        "| acks over the link, each fsync'd before its answer | {acks_s:.0} acks/s ({} acks) |",
        orders.len()
    );
    shutdown.trigger();
}

fn clone_client(c: &Client) -> Client {
    Client {
        url: c.url.clone(),
        key_id: c.key_id.clone(),
        secret: c.secret.clone(),
        http: c.http.clone(),
        n: c.n,
    }
}

fn proc_figures(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (rss_kb, ticks)
}

async fn idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    serve::init(dir.path()).expect("init");
    let key = serve::new_ea_key(dir.path()).expect("key");
    let ea_addr = std::net::TcpListener::bind("127.0.0.1:0").expect("b").local_addr().expect("a");
    let api_addr = std::net::TcpListener::bind("127.0.0.1:0").expect("b").local_addr().expect("a");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tradecast-node"))
        .args([
            "run",
            "--data",
            dir.path().to_str().expect("p"),
            "--ea-listen",
            &ea_addr.to_string(),
        ])
        .args(["--api-listen", &api_addr.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node");
    for _ in 0..500 {
        if std::net::TcpStream::connect(ea_addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = Client {
        url: format!("http://{ea_addr}"),
        key_id: key.key_id.clone(),
        secret: key.secret.to_string(),
        http: reqwest::Client::new(),
        n: 0,
    };
    let t = tradecast_node::runtime::wall_ms();
    let h: ea::HelloAnswer = c.call(Call::Hello, &hello(t)).await;
    let (_, ticks0) = proc_figures(child.id());
    let start = Instant::now();
    let mut polls = 0;
    while start.elapsed() < Duration::from_secs(10) {
        let _: ea::PollAnswer = c
            .call(
                Call::Poll,
                &ea::Poll { session_id: h.session_id.clone(), wait_ms: 500, terminal_time_ms: t },
            )
            .await;
        polls += 1;
    }
    let (rss_kb, ticks1) = proc_figures(child.id());
    let secs = start.elapsed().as_secs_f64();
    // Clock ticks are 1/100 s on Linux.
    let cpu_pct = (ticks1 - ticks0) as f64 / 100.0 / secs * 100.0;
    println!(
        "| node binary idle with an EA long-polling (500 ms), {polls} polls in {secs:.0} s | RSS {:.1} MiB, CPU {cpu_pct:.2} % of one core |",
        rss_kb as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    println!("| figure | value |\n| --- | --- |");
    rt.block_on(in_process());
    rt.block_on(idle());
}

//! Fan-out and upstream sync benchmark (issue 9, item 7): a command that prints figures, not a
//! test.
//!
//! `cargo bench -p tradecast --bench fanout -- [--subscribers N] [--backend sqlite|postgres]
//! [--records R] [--only fanout|upstream|all] [--wave W] [--per-endpoint E] [--timeout-s S]
//! [--client-rcvbuf BYTES] [--signals K]`
//!
//! - **The hub** runs in a child process: this very binary re-executed with `--hub-child`, which
//!   calls `tradecast_hub::start` (SQLite in a temporary data dir, or a fresh PostgreSQL database
//!   on `TRADECAST_TEST_PG` with `--backend postgres`) and logs JSON at info to `hub.log` in its
//!   data dir. Its CPU time and RSS are read from `/proc/<pid>/stat` and `/proc/<pid>/status`, so
//!   they are the hub's alone, apart from the simulated subscribers'.
//! - **Fan-out**: N subscriber accounts, each with an entitlement to the provider's plan and one
//!   device with its own Ed25519 key, are written straight into the hub's SQL store in one
//!   transaction before the hub starts (bulk SQL; the provider's account, plan and API key go
//!   through the hub's library functions). Then N simulated subscribers connect over real QUIC,
//!   one quinn client endpoint per `--per-endpoint` connections, in waves of at most `--wave`:
//!   each presents its identity-key certificate, says hello (`TCH` + version) and drives the
//!   protocol's `NodeSession` on the session stream exactly as `node/src/sync/driver.rs` does
//!   (length-prefixed frames, one `CommitFeed` at a time, committed durably before
//!   `FeedCommitted`, which sends the `FeedAck`). The simulated subscribers share one
//!   group-committing stores: one redb file per 100 subscribers, each transaction committing
//!   every feed item queued by any of them at that moment (durability `Immediate`: one fsync per
//!   group). Then a warm-up signal and `--signals` more (default 20) are posted to the signals
//!   API (HMAC), one after the other, and the bench measures, from the hub's commit
//!   (`relay_log.committed_at_ms`), when each subscriber received the signal and when it wrote
//!   its `FeedAck` after its durable commit, pooled over devices and per signal (p50/p90/p99/max),
//!   post → 201, and when the batched cursor writer had persisted every ack (`relay_cursors`).
//!   It ends with `RESULT <name> <value> <unit>` lines.
//! - **Upstream**: a real node data dir (`tradecast_node::serve::init`), enrolled over HTTP, its
//!   outbox holding R heartbeat records, synced by `tradecast_node::sync::driver::spawn`; the
//!   time until the hub has committed (SQL) and acknowledged all of them.
//!
//! No `ulimit -n` is needed: QUIC multiplexes every connection of an endpoint over one UDP
//! socket, so 10,000 connections hold about a dozen file descriptors on each side.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tradecast_hub::accounts::{self, NewUser, Role};
use tradecast_hub::config::{Config, RedactedUrl};
use tradecast_hub::db::Db;
use tradecast_hub::signals::client;
use tradecast_protocol::session::{
    NodeAction, NodeEvent, NodeSession, NodeSetup, SessionConfig, SignatureCheck,
};
use tradecast_protocol::{
    Body, ChainHash, DeviceKeys, EntryKind, HeaderFields, Heartbeat, Identity, Kind, Record, Side,
    Signal, SignalId, StreamId, Timeframe,
};

/// Linux reports CPU times in /proc in USER_HZ ticks, 100 per second on every architecture
/// the kernel exposes to user space.
const USER_HZ: f64 = 100.0;
const MAX_FRAME_LEN: usize = tradecast_protocol::session::wire::MAX_FRAME_LEN;

#[derive(Debug, Clone)]
struct Args {
    subscribers: usize,
    backend: String,
    records: usize,
    only: String,
    wave: usize,
    per_endpoint: usize,
    timeout_s: u64,
    client_rcvbuf: usize,
    signals: usize,
}

fn args() -> Args {
    let mut a = Args {
        subscribers: 1000,
        backend: "sqlite".into(),
        records: 10_000,
        only: "all".into(),
        wave: 500,
        per_endpoint: 1000,
        timeout_s: 300,
        client_rcvbuf: 4 << 20,
        signals: 20,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--subscribers" => a.subscribers = next.parse().expect("--subscribers N"),
            "--backend" => a.backend = next,
            "--records" => a.records = next.parse().expect("--records R"),
            "--only" => a.only = next,
            "--wave" => a.wave = next.parse::<usize>().expect("--wave W").clamp(1, 500),
            "--per-endpoint" => {
                a.per_endpoint = next.parse::<usize>().expect("--per-endpoint E").clamp(1, 1000);
            }
            "--timeout-s" => a.timeout_s = next.parse().expect("--timeout-s S"),
            "--client-rcvbuf" => a.client_rcvbuf = next.parse().expect("--client-rcvbuf BYTES"),
            "--signals" => a.signals = next.parse::<usize>().expect("--signals K").max(1),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(
        matches!(a.backend.as_str(), "sqlite" | "postgres"),
        "--backend sqlite|postgres, not {}",
        a.backend
    );
    a
}

fn now_ms() -> i64 {
    tradecast_hub::ids::Clock::default().now_ms()
}

fn random_identity() -> Identity {
    let seed: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().unwrap();
    let x: [u8; 32] = tradecast_hub::ids::random_bytes(32).try_into().unwrap();
    Identity::from_secret_bytes(&seed, &x)
}

fn keys_record(id: &Identity, label: &str, now: i64) -> Record {
    let keys = DeviceKeys {
        identity: id.identity_key(),
        sealing: id.sealing_public_key(),
        label: label.into(),
        at_ms: now,
        account_fingerprint: None,
    };
    let f = HeaderFields {
        stream: StreamId::DEVICE,
        seq: 1,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: now,
    };
    Record::sign(id, f, &Body::DeviceKeys(keys))
}

// ---------------------------------------------------------------------------------------------
// The hub child process.

/// `--hub-child --data DIR [--database-url URL]`: runs the hub until stdin closes.
fn hub_child() {
    let argv: Vec<String> = std::env::args().collect();
    let get =
        |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let data = PathBuf::from(get("--data").expect("--data DIR"));
    let db_url = get("--database-url");
    let log = std::fs::File::create(data.join("hub.log")).expect("hub.log");
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::sync::Mutex::new(log))
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let config = hub_config(&data, db_url.as_deref());
        let secrets = tradecast_hub::load_secrets(&config, std::iter::empty()).expect("secrets");
        let started = tradecast_hub::start(config, secrets).await.expect("hub starts");
        println!("HUB {} {}", started.addr, started.quic_addr);
        std::io::stdout().flush().unwrap();
        // Serve until the bench closes our stdin (or dies).
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        })
        .await
        .unwrap();
        started.stop().await.unwrap();
    });
}

fn hub_config(data: &Path, db_url: Option<&str>) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(data.to_owned()),
        database_url: db_url.map(RedactedUrl::new),
        ..Default::default()
    };
    // Only the bench's setup hashes passwords (one account); keep it cheap.
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config
}

struct HubProc {
    child: Child,
    http: SocketAddr,
    quic: SocketAddr,
}

impl HubProc {
    fn spawn(data: &Path, db_url: Option<&str>) -> HubProc {
        let exe = std::env::current_exe().unwrap();
        let mut c = Command::new(exe);
        c.arg("--hub-child").arg("--data").arg(data);
        if let Some(u) = db_url {
            c.args(["--database-url", u]);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("HUB"), "the hub child did not start: {line:?}");
        let http = parts.next().unwrap().parse().unwrap();
        let quic = parts.next().unwrap().parse().unwrap();
        HubProc { child, http, quic }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's stdin (it stops cleanly) and waits, killing it after 10 s.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) of process `pid`.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// (VmRSS, VmHWM) of `pid` in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// UDP counters of /proc/net/snmp: (InErrors, RcvbufErrors, SndbufErrors).
fn udp_errors() -> (u64, u64, u64) {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return (0, 0, 0) };
    let names: Vec<&str> = names.split_whitespace().collect();
    let values: Vec<&str> = values.split_whitespace().collect();
    let get = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .and_then(|i| values.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("InErrors"), get("RcvbufErrors"), get("SndbufErrors"))
}

/// Packets dropped at the UDP socket bound to local `port`, from /proc/net/udp.
fn udp_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let want = format!(":{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if !f.get(1)?.ends_with(&want) {
            return None;
        }
        f.last()?.parse().ok()
    })
}

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{name}")).unwrap_or_default().trim().to_string()
}

/// A client endpoint on its own UDP socket with an `rcvbuf`-byte receive buffer (the kernel
/// caps it at net.core.rmem_max): 1,000 connections share it, unlike a real node's socket.
fn client_endpoint(rcvbuf: usize) -> quinn::Endpoint {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let state = quinn::udp::UdpSocketState::new((&socket).into()).unwrap();
    state.set_recv_buffer_size((&socket).into(), rcvbuf).unwrap();
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        quinn::default_runtime().unwrap(),
    )
    .unwrap()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a fresh database per run.

async fn pg_database() -> (String, String) {
    use sqlx::Connection;
    let admin = std::env::var("TRADECAST_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("tradecast_fanout_{}", tradecast_hub::ids::random_hex(6));
    let mut c = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL for the benchmark");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    (format!("{base}/{name}"), name)
}

async fn drop_pg(name: &str) {
    use sqlx::Connection;
    let admin = std::env::var("TRADECAST_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut c)
        .await;
}

// ---------------------------------------------------------------------------------------------
// Setup in the hub's store, before the hub starts.

struct Provider {
    identity: Identity,
    key_id: String,
    secret: String,
}

/// The provider (account, plan, API key through the hub's library functions; its device by
/// SQL with its self-signed `DeviceKeys` record, as enrolment stores it) and `n` subscriber
/// accounts with an entitlement and one device each (bulk SQL, one transaction).
async fn setup_fanout(
    db: &Db,
    config: &Config,
    secrets: &tradecast_hub::secrets::HubSecrets,
    subs: &[Identity],
) -> Provider {
    let now = now_ms();
    let provider_user = accounts::create_user(
        db,
        &config.auth,
        now,
        &NewUser {
            email: "provider@bench.local",
            password: "bench provider password",
            role: Role::Provider,
            display_name: "Bench provider",
        },
        "bench",
        "bench",
    )
    .await
    .unwrap();
    let plan = tradecast_hub::plans::create(
        db,
        now,
        &provider_user.id,
        Role::Provider,
        &tradecast_hub::plans::NewPlan {
            provider_user_id: None,
            name: "Bench plan".into(),
            price_minor: 1000,
            currency: "USD".into(),
            period_days: 30,
            ..Default::default()
        },
        "bench",
    )
    .await
    .unwrap();
    let key = tradecast_hub::apikeys::create(
        db,
        &secrets.api_key_wrapping_key,
        now,
        &provider_user.id,
        "bench",
        "bench",
    )
    .await
    .unwrap();
    let identity = random_identity();
    let mut tx = db.begin_write().await.unwrap();
    insert_device(&mut tx, &identity, &provider_user.id, "provider", now).await;
    // Subscribers, 200 rows per statement.
    for (c, chunk) in subs.chunks(200).enumerate() {
        let users: Vec<String> = (0..chunk.len()).map(|i| format!("u{:07}", c * 200 + i)).collect();
        let mut sql = String::from(
            "INSERT INTO users (id, email, password_hash, role, display_name, created_at_ms) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 3;
            sql.push_str(&format!(
                "{}(${}, ${}, '!', 'subscriber', ${}, {now})",
                if i > 0 { ", " } else { "" },
                b + 1,
                b + 2,
                b + 3
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for u in &users {
            q = q.bind(u.clone()).bind(format!("{u}@bench.local")).bind(u.clone());
        }
        q.execute(&mut *tx).await.unwrap();

        let mut sql = String::from(
            "INSERT INTO entitlements (id, user_id, plan_id, granted_by, starts_at_ms, expires_at_ms, revoked_at_ms, created_at_ms) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 2;
            sql.push_str(&format!(
                "{}(${}, ${}, '{}', 'bench', {now}, NULL, NULL, {now})",
                if i > 0 { ", " } else { "" },
                b + 1,
                b + 2,
                plan.id
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for u in &users {
            q = q.bind(format!("e{u}")).bind(u.clone());
        }
        q.execute(&mut *tx).await.unwrap();

        let mut sql = String::from(
            "INSERT INTO devices (id, user_id, name, identity_key, sealing_key, enrolled_at_ms, keys_record) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 6;
            sql.push_str(&format!(
                "{}(${}, ${}, ${}, ${}, ${}, {now}, ${})",
                if i > 0 { ", " } else { "" },
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, u) in chunk.iter().zip(&users) {
            q = q
                .bind(id.device_id().to_text())
                .bind(u.clone())
                .bind(format!("sim {u}"))
                .bind(hex::encode(id.identity_key().to_bytes()))
                .bind(hex::encode(id.sealing_public_key().0))
                .bind(keys_record(id, "sim", now).encode());
        }
        q.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    Provider { identity, key_id: key.id, secret: key.secret }
}

async fn insert_device(
    tx: &mut tradecast_hub::feed::Tx,
    id: &Identity,
    user_id: &str,
    name: &str,
    now: i64,
) {
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, identity_key, sealing_key, enrolled_at_ms, keys_record) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.device_id().to_text())
    .bind(user_id)
    .bind(name)
    .bind(hex::encode(id.identity_key().to_bytes()))
    .bind(hex::encode(id.sealing_public_key().0))
    .bind(now)
    .bind(keys_record(id, name, now).encode())
    .execute(&mut **tx)
    .await
    .unwrap();
}

fn signal(provider: &Identity, now: i64) -> Signal {
    let d = |s: &str| s.parse().unwrap();
    Signal {
        id: SignalId(tradecast_hub::ids::random_bytes(16).try_into().unwrap()),
        provider: provider.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        side: Side::Buy,
        entry_kind: EntryKind::Market,
        entry: d("1.09128"),
        stop: d("1.08900"),
        tp1: d("1.09500"),
        tp2: None,
        bar_time_ms: now - 3_600_000,
        expires_at_ms: now + 600_000,
        leg: 1,
        indicators: vec![],
        rr: d("1.63"),
    }
}

// ---------------------------------------------------------------------------------------------
// The shared group-committing store of the simulated subscribers.

/// Simulated subscribers sharing one store file (one group-committing thread each).
const SUBSCRIBERS_PER_STORE: usize = 100;

const FEED: redb::TableDefinition<'static, (u32, u64), &[u8]> = redb::TableDefinition::new("feed");

struct CommitReq {
    sub: u32,
    seq: u64,
    record: Vec<u8>,
    done: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct GroupStore {
    tx: tokio::sync::mpsc::UnboundedSender<CommitReq>,
    commits: Arc<AtomicU64>,
    max_group: Arc<AtomicUsize>,
}

impl GroupStore {
    /// One redb file; a thread commits whatever is queued in one durable transaction.
    fn open(path: &Path) -> GroupStore {
        let db = redb::Database::create(path).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<CommitReq>();
        let commits = Arc::new(AtomicU64::new(0));
        let max_group = Arc::new(AtomicUsize::new(0));
        let (c, m) = (commits.clone(), max_group.clone());
        std::thread::spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut group = vec![first];
                while let Ok(r) = rx.try_recv() {
                    group.push(r);
                }
                let w = db.begin_write().unwrap();
                {
                    let mut t = w.open_table(FEED).unwrap();
                    for r in &group {
                        t.insert((r.sub, r.seq), r.record.as_slice()).unwrap();
                    }
                }
                w.commit().unwrap();
                c.fetch_add(1, Ordering::Relaxed);
                m.fetch_max(group.len(), Ordering::Relaxed);
                for r in group {
                    let _ = r.done.send(());
                }
            }
        });
        GroupStore { tx, commits, max_group }
    }

    async fn commit(&self, sub: u32, seq: u64, record: Vec<u8>) -> Result<(), String> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx.send(CommitReq { sub, seq, record, done }).map_err(|_| "store closed")?;
        wait.await.map_err(|_| "store closed".to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// One simulated subscriber.

async fn write_frame(send: &mut quinn::SendStream, frame: &[u8]) -> Result<(), String> {
    let len = u32::try_from(frame.len()).map_err(|_| "frame too large")?;
    let mut buf = Vec::with_capacity(4 + frame.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(frame);
    send.write_all(&buf).await.map_err(|e| e.to_string())
}

async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(format!("frame of {len} bytes exceeds the limit"));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    Ok(buf)
}

fn session_now() -> i64 {
    now_ms()
}

/// Shared figures of the run.
struct Marks {
    epoch: Instant,
    /// Per subscriber: ns since `epoch` + 1 when its FeedAck of the signal was written; 0 = not.
    signal_acked: Vec<AtomicU64>,
    /// Per subscriber: ns since `epoch` + 1 when the signal arrived (before its commit).
    signal_received: Vec<AtomicU64>,
    acked_count: AtomicUsize,
    done: tokio::sync::Notify,
    failures: AtomicUsize,
}

/// Handshake + hello; returns the connection and the session stream.
async fn connect_one(
    endpoint: &quinn::Endpoint,
    cfg: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), String> {
    let conn = endpoint
        .connect_with(cfg, addr, tradecast_quic::SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let mut hello = b"TCH".to_vec();
    hello.extend_from_slice(&tradecast_hub::quic::PROTOCOL_VERSION.to_be_bytes());
    send.write_all(&hello).await.map_err(|e| e.to_string())?;
    let mut answer = [0u8; 3];
    recv.read_exact(&mut answer).await.map_err(|e| format!("hello: {e}"))?;
    if answer[0] != tradecast_hub::quic::HELLO_ACCEPTED {
        return Err(format!("hello refused: {answer:?}"));
    }
    Ok((conn, send, recv))
}

/// Drives `NodeSession` as the node's driver does; `open` fires at the hub's `Welcome`.
async fn drive_subscriber(
    ix: usize,
    setup: NodeSetup,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    store: GroupStore,
    marks: Arc<Marks>,
    open: tokio::sync::oneshot::Sender<()>,
) -> Result<(), String> {
    let mut open = Some(open);
    let mut session = NodeSession::new(SessionConfig::default(), setup, SignatureCheck);
    let _ = session.handle(session_now(), NodeEvent::Connected);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(16);
    let reader = tokio::spawn(async move {
        loop {
            let r = read_frame(&mut recv).await;
            let end = r.is_err();
            if tx.send(r).await.is_err() || end {
                break;
            }
        }
    });
    let mut timer: Option<i64> = None;
    let result = async {
        loop {
            let mut signal_committed = false;
            while let Some(action) = session.poll_action() {
                match action {
                    NodeAction::Send(frame) => write_frame(&mut send, &frame).await?,
                    NodeAction::SetTimer { at_ms } => timer = Some(at_ms),
                    NodeAction::CommitFeed { source, item } => {
                        let is_signal = item.record.header().kind == Kind::Signal;
                        if is_signal {
                            let ns = u64::try_from(marks.epoch.elapsed().as_nanos()).unwrap_or(0);
                            marks.signal_received[ix].store(ns + 1, Ordering::Relaxed);
                        }
                        store.commit(ix as u32, item.seq, item.record.encode()).await?;
                        let committed = NodeEvent::FeedCommitted { source, seq: item.seq };
                        let _ = session.handle(session_now(), committed);
                        signal_committed |= is_signal;
                    }
                    NodeAction::Close(reason) => return Err(format!("session closed: {reason}")),
                    NodeAction::Alarm(alarm) => return Err(format!("alarm: {alarm:?}")),
                    _ => {}
                }
            }
            if signal_committed {
                // The FeedAck of the signal has just been written to the stream.
                let ns = u64::try_from(marks.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                if marks.signal_acked[ix].swap(ns + 1, Ordering::Relaxed) == 0
                    && marks.acked_count.fetch_add(1, Ordering::Relaxed) + 1
                        == marks.signal_acked.len()
                {
                    marks.done.notify_one();
                }
            }
            if session.is_open()
                && let Some(o) = open.take()
            {
                let _ = o.send(());
            }
            let wait = timer.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(u64::try_from(at - session_now()).unwrap_or(0))
            });
            tokio::select! {
                frame = rx.recv() => match frame {
                    Some(Ok(bytes)) => {
                        let _ = session.handle(session_now(), NodeEvent::BytesReceived(&bytes));
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Err("reader ended".to_string()),
                },
                () = tokio::time::sleep(wait) => {
                    timer = None;
                    let _ = session.handle(session_now(), NodeEvent::TimerFired);
                }
            }
        }
    }
    .await;
    reader.abort();
    result
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(v: &mut [f64]) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n = {})",
        pct(v, 0.5),
        pct(v, 0.99),
        v.last().copied().unwrap_or(f64::NAN),
        v.len()
    )
}

// ---------------------------------------------------------------------------------------------
// Fan-out.

async fn fanout(a: &Args) {
    let n = a.subscribers;
    println!("== fan-out of one signal to {n} simulated subscribers ({} backend) ==", a.backend);
    let dir = tempfile::tempdir().unwrap();
    let (db_url, pg) = if a.backend == "postgres" {
        let (u, name) = pg_database().await;
        (Some(u), Some(name))
    } else {
        (None, None)
    };
    let config = hub_config(dir.path(), db_url.as_deref());
    let secrets = tradecast_hub::load_secrets(&config, std::iter::empty()).unwrap();
    let hub_key = tradecast_hub::hub_identity(&secrets).identity_key();
    let db = tradecast_hub::open_db(&config).await.unwrap();

    let t = Instant::now();
    let subs: Vec<Identity> = (0..n).map(|_| random_identity()).collect();
    let provider = setup_fanout(&db, &config, &secrets, &subs).await;
    println!(
        "setup: {n} subscriber accounts, entitlements and devices (own keys) by bulk SQL in one transaction, provider by the hub's library: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let hub = HubProc::spawn(dir.path(), db_url.as_deref());
    let pid = hub.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, _) = rss_kib(pid);
    let cpu0 = cpu_s(pid);
    let udp0 = udp_errors();
    println!(
        "hub: child process pid {pid}, http {} quic {}, idle RSS {:.1} MiB",
        hub.http,
        hub.quic,
        mib(rss0)
    );

    // The simulated subscribers' stores: one group-committing redb file per 100 subscribers.
    let stores: Vec<GroupStore> = (0..n.div_ceil(SUBSCRIBERS_PER_STORE))
        .map(|i| GroupStore::open(&dir.path().join(format!("subscribers-{i}.redb"))))
        .collect();
    let marks = Arc::new(Marks {
        epoch: Instant::now(),
        signal_acked: (0..n).map(|_| AtomicU64::new(0)).collect(),
        signal_received: (0..n).map(|_| AtomicU64::new(0)).collect(),
        acked_count: AtomicUsize::new(0),
        done: tokio::sync::Notify::new(),
        failures: AtomicUsize::new(0),
    });
    let endpoints: Vec<quinn::Endpoint> =
        (0..n.div_ceil(a.per_endpoint)).map(|_| client_endpoint(a.client_rcvbuf)).collect();
    println!(
        "UDP receive buffers: hub socket SO_RCVBUF {} bytes asked by the hub, client endpoints {} bytes asked (both capped by net.core.rmem_max = {}; system default {})",
        tradecast_hub::quic::UDP_RECV_BUFFER,
        a.client_rcvbuf,
        sysctl("net/core/rmem_max"),
        sysctl("net/core/rmem_default"),
    );
    let hub_drops0 = udp_drops(hub.quic.port()).unwrap_or(0);
    let client_drops0: u64 = endpoints
        .iter()
        .map(|e| udp_drops(e.local_addr().map(|a| a.port()).unwrap_or(0)).unwrap_or(0))
        .sum();
    let bench_cpu0 = cpu_s(std::process::id());

    // Connect in waves.
    let mut conns: Vec<quinn::Connection> = Vec::with_capacity(n);
    let mut connect_ms: Vec<f64> = Vec::with_capacity(n);
    let mut errors: Vec<String> = Vec::new();
    let t_connect = Instant::now();
    let mut wave_times = Vec::new();
    for wave_start in (0..n).step_by(a.wave) {
        let tw = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for (ix, sub) in subs.iter().enumerate().skip(wave_start).take(a.wave) {
            let endpoint = endpoints[ix / a.per_endpoint].clone();
            let cfg = tradecast_quic::client_config(sub, hub_key).unwrap();
            let setup = NodeSetup {
                identity: sub.identity_key(),
                hub: hub_key,
                streams: vec![],
                sources: vec![],
                authors: vec![],
                restored: false,
            };
            let store = stores[ix / SUBSCRIBERS_PER_STORE].clone();
            let (marks, addr) = (marks.clone(), hub.quic);
            set.spawn(async move {
                let t = Instant::now();
                let (conn, send, recv) = connect_one(&endpoint, cfg, addr).await?;
                let (open_tx, open_rx) = tokio::sync::oneshot::channel();
                let m = marks.clone();
                tokio::spawn(async move {
                    if let Err(e) =
                        drive_subscriber(ix, setup, send, recv, store, m.clone(), open_tx).await
                        && m.signal_acked[ix].load(Ordering::Relaxed) == 0
                    {
                        m.failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("subscriber {ix}: {e}");
                    }
                });
                tokio::time::timeout(Duration::from_secs(30), open_rx)
                    .await
                    .map_err(|_| "no Welcome within 30 s".to_string())?
                    .map_err(|_| "session ended before Welcome".to_string())?;
                Ok::<_, String>((conn, t.elapsed()))
            });
        }
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Ok((conn, took)) => {
                    conns.push(conn);
                    connect_ms.push(took.as_secs_f64() * 1000.0);
                }
                Err(e) => errors.push(e),
            }
        }
        wave_times.push(tw.elapsed().as_secs_f64());
        if n > 1000 && wave_times.len() % 4 == 0 {
            println!(
                "  … {} sessions open after {:.0} s ({} failed), hub CPU {:.1} s, RSS {:.1} MiB",
                conns.len(),
                t_connect.elapsed().as_secs_f64(),
                errors.len(),
                cpu_s(pid) - cpu0,
                mib(rss_kib(pid).0)
            );
        }
    }
    let connect_s = t_connect.elapsed().as_secs_f64();
    let cpu1 = cpu_s(pid);
    let bench_cpu1 = cpu_s(std::process::id());
    let (rss1, _) = rss_kib(pid);
    let connected = conns.len();
    println!(
        "connect: {connected}/{n} sessions open (handshake + hello + Welcome) in {connect_s:.2} s, {} waves of <= {} over {} client endpoint(s); per connection {}",
        wave_times.len(),
        a.wave,
        endpoints.len(),
        summary(&mut connect_ms)
    );
    if !errors.is_empty() {
        let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
        for e in &errors {
            *kinds.entry(e.chars().take(80).collect()).or_default() += 1;
        }
        println!("connect errors: {} ({kinds:?})", errors.len());
    }
    println!(
        "hub during connect: {:.2} CPU s ({:.2} ms per connection), RSS {:.1} -> {:.1} MiB ({:.1} KiB per connection), {} fds",
        cpu1 - cpu0,
        (cpu1 - cpu0) * 1000.0 / connected.max(1) as f64,
        mib(rss0),
        mib(rss1),
        (rss1.saturating_sub(rss0)) as f64 / connected.max(1) as f64,
        fds(pid)
    );
    println!(
        "bench process (simulated subscribers) during connect: {:.2} CPU s",
        bench_cpu1 - bench_cpu0
    );

    // Idle: every session's tip check runs every 2 s.
    let idle_s = 6.0;
    let c0 = cpu_s(pid);
    tokio::time::sleep(Duration::from_secs_f64(idle_s)).await;
    let c1 = cpu_s(pid);
    println!(
        "hub idle with {connected} connections: {:.1} % of one core over {idle_s:.0} s (heartbeats, keep-alives, 2 s feed tip checks)",
        (c1 - c0) * 100.0 / idle_s
    );

    // The signals: a warm-up, then `--signals` measured ones, one after the other (each waits
    // until every live subscriber has committed and acked the previous one).
    let http = reqwest::Client::new();
    let mut prev_hash = ChainHash::GENESIS;
    let mut e2e_ms: Vec<f64> = Vec::new();
    let mut recv_ms: Vec<f64> = Vec::new();
    let mut hub_share_ms: Vec<f64> = Vec::new();
    let mut last_ack_ms: Vec<f64> = Vec::new();
    let mut post_201_ms: Vec<f64> = Vec::new();
    let mut cursor_ms: Vec<f64> = Vec::new();
    let mut incomplete = 0usize;
    let cpu_f0 = cpu_s(pid);
    let bench_f0 = cpu_s(std::process::id());
    let epoch_wall_ms = now_ms() as f64 - marks.epoch.elapsed().as_secs_f64() * 1000.0;
    let wall_of = |ns_plus_one: u64| epoch_wall_ms + (ns_plus_one - 1) as f64 / 1e6;
    for round in 0..=a.signals {
        for m in marks.signal_acked.iter().chain(&marks.signal_received) {
            m.store(0, Ordering::Relaxed);
        }
        marks.acked_count.store(0, Ordering::Relaxed);
        let now = now_ms();
        let sig = signal(&provider.identity, now);
        let fields = HeaderFields {
            stream: StreamId::SIGNALS,
            seq: round as u64 + 1,
            prev_hash,
            created_at_ms: now,
        };
        let (record, body) = client::signal_body(&provider.identity, fields, &sig);
        prev_hash = record.header_hash();
        let nonce = tradecast_hub::ids::random_hex(16);
        let headers = client::auth_headers(
            &provider.key_id,
            &provider.secret,
            client::SIGNALS_PATH,
            &body,
            now_ms(),
            &nonce,
        );
        let mut req = http
            .post(format!("http://{}{}", hub.http, client::SIGNALS_PATH))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let t0 = Instant::now();
        let resp = req.send().await.unwrap();
        let post_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!(status.as_u16(), 201, "signal refused: {answer}");
        // Every live subscriber's ack (subscriber side), then the hub's commit instant.
        let deadline = Instant::now() + Duration::from_secs(a.timeout_s);
        let alive = || connected.saturating_sub(marks.failures.load(Ordering::Relaxed));
        while marks.acked_count.load(Ordering::Relaxed) < alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let acked = marks.acked_count.load(Ordering::Relaxed);
        if acked < alive() {
            incomplete += 1;
            println!(
                "  signal {round}: NOT complete after {} s: {acked}/{} acked",
                a.timeout_s,
                alive()
            );
        }
        let signal_id = sig.id.to_hex();
        let committed_at: i64 = sqlx::query_scalar(
            "SELECT committed_at_ms FROM relay_log WHERE signal_id = $1 AND kind = 'signal'",
        )
        .bind(&signal_id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        let committed_at = committed_at as f64;
        let received: Vec<f64> = marks
            .signal_received
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .filter(|v| *v > 0)
            .map(|v| wall_of(v) - committed_at)
            .collect();
        let acks: Vec<f64> = marks
            .signal_acked
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .filter(|v| *v > 0)
            .map(|v| wall_of(v) - committed_at)
            .collect();
        // The cursors: the writer persists the acks in batches (<= 50 ms or 1,000).
        let relay_seq: i64 = sqlx::query_scalar(
            "SELECT seq FROM relay_log WHERE signal_id = $1 AND kind = 'signal'",
        )
        .bind(&signal_id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        let t_cursor = Instant::now();
        let mut persisted_at: Option<i64> = None;
        while t_cursor.elapsed() < Duration::from_secs(30) {
            let row: (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MAX(acked_at_ms) FROM relay_cursors WHERE seq >= $1",
            )
            .bind(relay_seq)
            .fetch_one(db.pool())
            .await
            .unwrap();
            if row.0 as usize >= acked {
                persisted_at = row.1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if round == 0 {
            println!(
                "warm-up signal: 201 in {post_ms:.1} ms, for {} devices; every subscriber acked {:.1} ms after the hub's commit",
                answer["n_devices_queued"],
                acks.iter().copied().fold(0.0, f64::max)
            );
            continue;
        }
        post_201_ms.push(post_ms);
        hub_share_ms.push(received.iter().copied().fold(0.0, f64::max));
        last_ack_ms.push(acks.iter().copied().fold(0.0, f64::max));
        if let Some(at) = persisted_at {
            cursor_ms.push(at as f64 - committed_at);
        }
        recv_ms.extend(received);
        e2e_ms.extend(acks);
    }
    let cpu_f1 = cpu_s(pid);
    let bench_f1 = cpu_s(std::process::id());
    let (rss2, hwm2) = rss_kib(pid);
    let k = a.signals as f64;
    let pooled = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (pct(v, 0.5), pct(v, 0.9), pct(v, 0.99), v.last().copied().unwrap_or(f64::NAN))
    };
    let (e50, e90, e99, emax) = pooled(&mut e2e_ms);
    let (r50, r90, r99, rmax) = pooled(&mut recv_ms);
    let (h50, h90, h99, hmax) = pooled(&mut hub_share_ms);
    let (l50, _, l99, lmax) = pooled(&mut last_ack_ms);
    let (p50, _, p99, _) = pooled(&mut post_201_ms);
    let (c50, _, c99, _) = pooled(&mut cursor_ms);
    println!(
        "fan-out of {} signals to {connected} connected subscribers ({incomplete} incomplete), from the hub's commit (relay_log.committed_at_ms, ms clock):",
        a.signals
    );
    println!(
        "  per device, signal received (Feed frame decoded and verified): p50 {r50:.1} p90 {r90:.1} p99 {r99:.1} max {rmax:.1} ms (n = {})",
        recv_ms.len()
    );
    println!(
        "  per device, durable commit and FeedAck written (end to end): p50 {e50:.1} p90 {e90:.1} p99 {e99:.1} max {emax:.1} ms (n = {})",
        e2e_ms.len()
    );
    println!(
        "  per signal, until the last device received it (the hub's share, an upper bound: it includes the subscribers' decode on the same cores): p50 {h50:.1} p90 {h90:.1} p99 {h99:.1} max {hmax:.1} ms"
    );
    println!(
        "  per signal, until the last device acked: p50 {l50:.1} p99 {l99:.1} max {lmax:.1} ms"
    );
    println!(
        "  per signal, post -> 201 (commit, broadcast, outcome rows): p50 {p50:.1} p99 {p99:.1} ms"
    );
    println!(
        "  per signal, until every cursor was persisted (batched writer): p50 {c50:.1} p99 {c99:.1} ms"
    );
    let delivered: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM fanout_queue WHERE delivered_at_ms IS NOT NULL")
            .fetch_one(db.pool())
            .await
            .unwrap();
    println!(
        "  fanout_queue rows delivered: {delivered}; subscriber stores: {} files of <= {SUBSCRIBERS_PER_STORE} subscribers, {} group commits (largest {} items)",
        stores.len(),
        stores.iter().map(|s| s.commits.load(Ordering::Relaxed)).sum::<u64>(),
        stores.iter().map(|s| s.max_group.load(Ordering::Relaxed)).max().unwrap_or(0)
    );
    println!(
        "hub during fan-out: {:.2} CPU s ({:.1} ms per signal, {:.3} ms per delivery), RSS {:.1} MiB (peak {:.1} MiB; {:.1} KiB per connection over idle)",
        cpu_f1 - cpu_f0,
        (cpu_f1 - cpu_f0) * 1000.0 / (k + 1.0),
        (cpu_f1 - cpu_f0) * 1000.0 / ((k + 1.0) * connected.max(1) as f64),
        mib(rss2),
        mib(hwm2),
        (rss2.saturating_sub(rss0)) as f64 / connected.max(1) as f64
    );
    println!(
        "bench process (simulated subscribers) during fan-out: {:.2} CPU s",
        bench_f1 - bench_f0
    );
    println!("RESULT fanout_subscribers {connected} count");
    println!("RESULT fanout_p50 {e50:.1} ms");
    println!("RESULT fanout_p99 {e99:.1} ms");
    println!("RESULT fanout_max {emax:.1} ms");
    println!("RESULT fanout_received_p99 {r99:.1} ms");
    println!("RESULT fanout_hub_p99 {h99:.1} ms");
    println!("RESULT fanout_post_201_p50 {p50:.1} ms");
    println!("RESULT fanout_cursor_persisted_p99 {c99:.1} ms");
    println!("RESULT fanout_hub_cpu_per_signal {:.1} ms", (cpu_f1 - cpu_f0) * 1000.0 / (k + 1.0));
    println!(
        "RESULT hub_rss_per_connection {:.1} KiB",
        (rss1.saturating_sub(rss0)) as f64 / connected.max(1) as f64
    );
    let failures = marks.failures.load(Ordering::Relaxed);
    if failures > 0 {
        println!("subscriber sessions that ended before acking: {failures}");
    }

    // UDP drops.
    let udp1 = udp_errors();
    let (mut lost, mut sent, mut congestion) = (0u64, 0u64, 0u64);
    for c in &conns {
        let s = c.stats();
        lost += s.path.lost_packets;
        sent += s.path.sent_packets;
        congestion += s.path.congestion_events;
    }
    let hub_drops1 = udp_drops(hub.quic.port()).unwrap_or(0);
    let client_drops1: u64 = endpoints
        .iter()
        .map(|e| udp_drops(e.local_addr().map(|a| a.port()).unwrap_or(0)).unwrap_or(0))
        .sum();
    println!(
        "UDP drops per socket (/proc/net/udp): hub socket {}, client endpoints {}",
        hub_drops1 - hub_drops0,
        client_drops1 - client_drops0
    );
    println!(
        "UDP: /proc/net/snmp deltas InErrors {} RcvbufErrors {} SndbufErrors {}; quinn client side: {lost} packets lost of {sent} sent, {congestion} congestion events",
        udp1.0 - udp0.0,
        udp1.1 - udp0.1,
        udp1.2 - udp0.2
    );

    for e in &endpoints {
        e.close(0u32.into(), b"bench done");
    }
    hub.stop();
    db.close().await;
    if let Some(name) = pg {
        drop_pg(&name).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream.

async fn upstream(a: &Args) {
    use tradecast_node::store::Store;
    use tradecast_node::sync::driver::{self, SyncConfig};
    let r = a.records;
    println!("== upstream: one node streams {r} records to the hub ({} backend) ==", a.backend);
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    std::fs::create_dir_all(&hub_dir).unwrap();
    let (db_url, pg) = if a.backend == "postgres" {
        let (u, name) = pg_database().await;
        (Some(u), Some(name))
    } else {
        (None, None)
    };
    let config = hub_config(&hub_dir, db_url.as_deref());
    let secrets = tradecast_hub::load_secrets(&config, std::iter::empty()).unwrap();
    let db = tradecast_hub::open_db(&config).await.unwrap();
    let now = now_ms();
    let user = accounts::create_user(
        &db,
        &config.auth,
        now,
        &NewUser {
            email: "trader@bench.local",
            password: "bench trader password",
            role: Role::Subscriber,
            display_name: "Bench trader",
        },
        "bench",
        "bench",
    )
    .await
    .unwrap();
    let code = tradecast_hub::devices::create_code(&db, now, 600, &user.id, "bench").await.unwrap();
    drop(secrets);
    let hub = HubProc::spawn(&hub_dir, db_url.as_deref());
    let pid = hub.pid();

    let node_dir = dir.path().join("node");
    tradecast_node::serve::init(&node_dir).unwrap();
    let store = Arc::new(Store::open(&node_dir.join(tradecast_node::store::FILE_NAME)).unwrap());
    tradecast_node::sync::enrol::enrol(
        &store,
        &hub.http.to_string(),
        &code.code,
        "bench node",
        now_ms(),
    )
    .await
    .unwrap();
    let pin = tradecast_node::sync::hub_pin(&store).unwrap().unwrap();
    let identity = || store.read().unwrap().identity().unwrap().unwrap();
    let me = identity();
    let sync = driver::spawn(store.clone(), identity(), pin.key, hub.quic, SyncConfig::default());
    let mut acked = sync.acked();
    tokio::time::timeout(
        Duration::from_secs(30),
        acked.wait_for(|m| m.get(&StreamId::DEVICE) >= Some(&1)),
    )
    .await
    .expect("the DeviceKeys record acked")
    .unwrap();

    let t = Instant::now();
    store
        .write(|tx| {
            for _ in 0..r {
                let at_ms = now_ms();
                let body = Body::Heartbeat(Heartbeat {
                    device: me.device_id(),
                    at_ms,
                    ea_connected: false,
                    terminal_time_ms: None,
                });
                tx.append_record(&me, StreamId::DEVICE, &body, at_ms)?;
            }
            Ok(())
        })
        .unwrap();
    println!(
        "node: {r} heartbeat records signed and appended to the outbox in one redb transaction: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let cpu0 = cpu_s(pid);
    let t0 = Instant::now();
    sync.appended();
    let target = r as u64 + 1;
    let done = tokio::time::timeout(
        Duration::from_secs(a.timeout_s),
        acked.wait_for(|m| m.get(&StreamId::DEVICE) >= Some(&target)),
    )
    .await
    .is_ok();
    let took = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_s(pid);
    let rows = tradecast_hub::quic::store::committed(&db, &me.device_id(), StreamId::DEVICE)
        .await
        .unwrap();
    if done {
        println!(
            "upstream: {r} records committed in the hub's SQL store and acked in {took:.2} s = {:.0} records/s (hub holds seq 1..={rows}); hub CPU {:.2} s ({:.0} µs per record)",
            r as f64 / took,
            cpu1 - cpu0,
            (cpu1 - cpu0) * 1e6 / r as f64
        );
    } else {
        println!("upstream: NOT complete after {} s: the hub holds seq 1..={rows}", a.timeout_s);
    }
    sync.stop().await.unwrap();
    hub.stop();
    db.close().await;
    if let Some(name) = pg {
        drop_pg(&name).await;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--hub-child") {
        hub_child();
        return;
    }
    let a = args();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!(
        "tradecast fanout bench: {cores} cores, load average {}, release build (bench profile)",
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        if matches!(a.only.as_str(), "all" | "fanout") {
            fanout(&a).await;
        }
        if matches!(a.only.as_str(), "all" | "upstream") {
            upstream(&a).await;
        }
    });
}

//! A hub process killed with SIGKILL in the middle of a fan-out loses nothing and delivers
//! nothing twice in effect: 24 subscribers follow a provider's relay log over real QUIC, each
//! committing what it receives (its cursor and recent hashes kept as a node keeps them); the
//! provider posts a signal and the hub is killed the moment the first subscriber has committed
//! it — the live broadcast under way, the batched cursor writes not yet made. The provider posts
//! the same record again after the restart (what it does with a lost answer: 200, stored), and
//! a second signal. Every subscriber ends with the keys and both signals, each committed once, in order;
//! the hub holds both signals' outcome rows, every one delivered, and every cursor at the tip.
//! A slow test (a hub process started twice).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tradecast_hub::config::{Config, Overrides};
use tradecast_hub::ids::Clock;
use tradecast_protocol::session::{
    LocalSource, NodeAction, NodeEvent, NodeSession, NodeSetup, SessionConfig, SignatureCheck,
    Source,
};
use tradecast_protocol::{Body, ChainHash, DeviceId, Identity, IdentityKey, Record};

use crate::helpers::{Backend, TestDb, TestHub, free_port};
use crate::on_both;

on_both!(slow_relay_a_hub_killed_mid_fan_out_loses_nothing_and_delivers_nothing_twice);

const BIN: &str = env!("CARGO_BIN_EXE_tradecast-hub");
const SUBSCRIBERS: usize = 24;

/// The hub's child process, killed when dropped: a failing test leaves no hub running.
struct ChildHub(Child);

impl Drop for ChildHub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &std::path::Path) -> ChildHub {
    ChildHub(
        Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .args(["--config".as_ref(), config.as_os_str(), "serve".as_ref()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn wait_up(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the hub did not come up at {url}");
}

/// What one simulated node holds of the relay log, across its sessions.
#[derive(Debug, Default)]
struct Held {
    committed: u64,
    recent: Vec<(u64, ChainHash)>,
    /// The inbox (the plan's feature grant): its own cursor.
    inbox: u64,
    inbox_recent: Vec<(u64, ChainHash)>,
    authors: Vec<IdentityKey>,
    /// Every commit, in order: (seq, the record).
    commits: Vec<(u64, Record)>,
    problems: Vec<String>,
}

fn now_ms() -> i64 {
    Clock::default().now_ms()
}

/// Follows `source` at `hub` as `node` until `stop`, reconnecting after every failure with what
/// it holds (as the node's sync driver does).
async fn follow(
    hub: SocketAddr,
    pin: IdentityKey,
    node: Identity,
    source: Source,
    held: Arc<Mutex<Held>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Err(e) = session(hub, pin, &node, source, &held, &stop).await {
            tracing::debug!(error = %e, "session ended");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn session(
    hub: SocketAddr,
    pin: IdentityKey,
    node: &Identity,
    source: Source,
    held: &Mutex<Held>,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(tradecast_hub::quic::tls::client_config(node, pin).unwrap());
    let conn = ep
        .connect(hub, tradecast_hub::quic::tls::SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let mut hello = tradecast_hub::quic::HELLO_MAGIC.to_vec();
    hello.extend_from_slice(&tradecast_hub::quic::PROTOCOL_VERSION.to_be_bytes());
    send.write_all(&hello).await.map_err(|e| e.to_string())?;
    let mut answer = [0u8; 3];
    recv.read_exact(&mut answer).await.map_err(|e| e.to_string())?;
    if answer[0] != tradecast_hub::quic::HELLO_ACCEPTED {
        return Err(format!("hello refused: {answer:?}"));
    }
    let setup = {
        let h = held.lock().unwrap();
        NodeSetup {
            identity: node.identity_key(),
            hub: pin,
            streams: vec![],
            sources: vec![
                LocalSource {
                    source,
                    committed: h.committed,
                    recent: h.recent.clone(),
                    quarantined: false,
                },
                LocalSource {
                    source: Source::Inbox,
                    committed: h.inbox,
                    recent: h.inbox_recent.clone(),
                    quarantined: false,
                },
            ],
            authors: h.authors.clone(),
            restored: false,
        }
    };
    let mut s = NodeSession::new(SessionConfig::default(), setup, SignatureCheck);
    let _ = s.handle(now_ms(), NodeEvent::Connected);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(16);
    let reader = tokio::spawn(async move {
        loop {
            let mut len = [0u8; 4];
            let r = match recv.read_exact(&mut len).await {
                Ok(()) => {
                    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
                    recv.read_exact(&mut frame).await.map(|()| frame).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            let end = r.is_err();
            if tx.send(r).await.is_err() || end {
                return;
            }
        }
    });
    let mut timer: Option<i64> = None;
    let result = loop {
        while let Some(action) = s.poll_action() {
            match action {
                NodeAction::Send(frame) => {
                    let mut buf = (frame.len() as u32).to_be_bytes().to_vec();
                    buf.extend_from_slice(&frame);
                    if let Err(e) = send.write_all(&buf).await {
                        reader.abort();
                        return Err(e.to_string());
                    }
                }
                NodeAction::SetTimer { at_ms } => timer = Some(at_ms),
                NodeAction::CommitFeed { source: from, item } => {
                    let mut h = held.lock().unwrap();
                    if from == Source::Inbox {
                        h.inbox = item.seq;
                        h.inbox_recent.push((item.seq, item.record.header_hash()));
                        drop(h);
                        let _ = s.handle(
                            now_ms(),
                            NodeEvent::FeedCommitted { source: from, seq: item.seq },
                        );
                        continue;
                    }
                    if from != source || item.seq <= h.committed {
                        let problem = format!("commit of {from} {} at {}", item.seq, h.committed);
                        h.problems.push(problem);
                    }
                    if let Ok(Body::DeviceKeys(k)) = item.record.body() {
                        h.authors.push(k.identity);
                    }
                    h.committed = item.seq;
                    h.recent.push((item.seq, item.record.header_hash()));
                    h.commits.push((item.seq, item.record.clone()));
                    drop(h);
                    let _ = s
                        .handle(now_ms(), NodeEvent::FeedCommitted { source: from, seq: item.seq });
                }
                NodeAction::Close(reason) => {
                    reader.abort();
                    return Err(format!("closed: {reason}"));
                }
                NodeAction::Alarm(alarm) => {
                    held.lock().unwrap().problems.push(format!("{alarm:?}"))
                }
                _ => {}
            }
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break Ok(());
        }
        let wait = timer.map_or(Duration::from_millis(200), |at| {
            Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
                .min(Duration::from_millis(200))
        });
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(Ok(bytes)) => { let _ = s.handle(now_ms(), NodeEvent::BytesReceived(&bytes)); }
                Some(Err(e)) => break Err(e),
                None => break Err("reader ended".into()),
            },
            () = tokio::time::sleep(wait) => {
                if timer.is_some_and(|at| at <= now_ms()) {
                    timer = None;
                    let _ = s.handle(now_ms(), NodeEvent::TimerFired);
                }
            }
        }
    };
    reader.abort();
    conn.close(0u32.into(), b"done");
    result
}

async fn slow_relay_a_hub_killed_mid_fan_out_loses_nothing_and_delivers_nothing_twice(b: Backend) {
    let db = TestDb::new(b).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_file = dir.path().join("hub.toml");
    std::fs::write(
        &config_file,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = {data}\ndatabase_url = \"{url}\"\n\n\
             [auth]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\n\
             [rate_limits.login_per_ip]\nburst = 1000\nper_minute = 6000\n\n\
             [rate_limits.per_ip]\nburst = 100000\nper_minute = 600000\n\n\
             [rate_limits.per_account]\nburst = 100000\nper_minute = 600000\n",
            data = toml::Value::String(dir.path().display().to_string()),
            url = db.url,
        ),
    )
    .unwrap();
    let health = format!("http://127.0.0.1:{port}/health");
    let mut child = spawn(&config_file);
    wait_up(&health).await;

    // The accounts, through the running hub's API (the owner straight into the store).
    let config = Config::load(Some(&config_file), Vec::new(), &Overrides::default()).unwrap();
    let store = tradecast_hub::open_db(&config).await.unwrap();
    let secrets = tradecast_hub::load_secrets(&config, Vec::new()).unwrap();
    let pin = tradecast_hub::hub_identity(&secrets).identity_key();
    let hub = TestHub {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        http: reqwest::Client::new(),
        started: None,
        clock: Clock::default(),
        db: store.clone(),
        db_url: db.url.clone(),
        secrets,
        _test_db: None,
    };
    let new = tradecast_hub::accounts::NewUser {
        email: "owner@example.com",
        password: "owner password 123",
        role: tradecast_hub::accounts::Role::Owner,
        display_name: "Owner",
    };
    tradecast_hub::accounts::create_user(&store, &config.auth, now_ms(), &new, "t", "t")
        .await
        .unwrap();
    let owner = hub.login("owner@example.com", "owner password 123").await;
    let kit = crate::helpers::provider_kit(&hub, &owner).await;
    let log = DeviceId::parse(&kit.device_id).unwrap();
    let source = Source::Relay(log);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut subs = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let sub = hub.user(&owner, "subscriber").await;
        let (node, _) = hub.enrol(&sub, "vps").await;
        let body = serde_json::json!({ "user_id": sub.user_id, "plan_id": kit.plan_id });
        hub.post("/api/v1/entitlements", Some(&owner.token), body).await.ok(201);
        let held = Arc::new(Mutex::new(Held::default()));
        let addr = hub.addr;
        subs.push((node.device_id().to_text(), held.clone()));
        tasks.push(tokio::spawn(follow(addr, pin, node, source, held, stop.clone())));
    }
    // Every subscriber's session is up (the hub already hands none of them anything).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The post, and a SIGKILL a few milliseconds into it.
    let s1 = crate::helpers::signal(&kit.identity, hub.clock.now_ms());
    let now = hub.clock.now_ms();
    let (r1, body1) = tradecast_hub::signals::client::signal_body(
        &kit.identity,
        crate::helpers::fields(1, now),
        &s1,
    );
    let post = {
        let (key_id, secret, http, url) =
            (kit.key_id.clone(), kit.secret.clone(), hub.http.clone(), hub.url(""));
        let body = body1.clone();
        tokio::spawn(async move {
            let path = tradecast_hub::signals::client::SIGNALS_PATH;
            let headers = tradecast_hub::signals::client::auth_headers(
                &key_id,
                &secret,
                path,
                &body,
                now,
                &crate::helpers::nonce(),
            );
            let mut r = http
                .post(format!("{url}{path}"))
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.send().await.map(|r| r.status().as_u16())
        })
    };
    // Killed as soon as the first subscriber has committed the signal: the hub's commit is
    // done, the live broadcast under way, the batched cursor writes (50 ms) not yet made.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !subs.iter().any(|(_, h)| h.lock().unwrap().committed >= 2) {
        assert!(Instant::now() < deadline, "nobody received the signal");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let answered = post.await.unwrap();
    let reached: usize = subs.iter().filter(|(_, h)| h.lock().unwrap().committed >= 2).count();
    let persisted: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM relay_cursors WHERE provider_device = $1 AND seq >= 2",
    )
    .bind(&kit.device_id)
    .fetch_one(store.pool())
    .await
    .unwrap();

    // Restarted: the provider posts the same record again (its answer may be lost), then
    // another signal.
    let mut child = spawn(&config_file);
    wait_up(&health).await;
    let again = crate::helpers::post_signal_raw(
        &hub,
        &kit.key_id,
        &kit.secret,
        body1,
        hub.clock.now_ms(),
        &crate::helpers::nonce(),
    )
    .await;
    assert_eq!(
        again.status.as_u16(),
        200,
        "the signal was committed before the kill: {}",
        again.body
    );
    let s2 = crate::helpers::signal(&kit.identity, hub.clock.now_ms());
    let (r2, resp) = crate::helpers::post_signal(&hub, &kit, &s2, 2).await;
    resp.ok(201);

    let deadline = Instant::now() + Duration::from_secs(90);
    while subs.iter().any(|(_, h)| h.lock().unwrap().committed < 3) {
        let behind: Vec<u64> = subs.iter().map(|(_, h)| h.lock().unwrap().committed).collect();
        assert!(Instant::now() < deadline, "not every subscriber has both signals: {behind:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each once, in order: the keys, the first signal, the second.
    for (device, held) in &subs {
        let h = held.lock().unwrap();
        assert!(h.problems.is_empty(), "{device}: {:?}", h.problems);
        let seqs: Vec<u64> = h.commits.iter().map(|c| c.0).collect();
        assert_eq!(seqs, vec![1, 2, 3], "{device}");
        assert!(matches!(h.commits[0].1.body().unwrap(), Body::DeviceKeys(_)));
        assert_eq!((&h.commits[1].1, &h.commits[2].1), (&r1, &r2));
    }
    // The hub: both signals' outcome rows, every one delivered; every cursor at the tip.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (rows, delivered): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(delivered_at_ms) FROM fanout_queue WHERE signal_id IN ($1, $2)",
        )
        .bind(s1.id.to_hex())
        .bind(s2.id.to_hex())
        .fetch_one(store.pool())
        .await
        .unwrap();
        let at_tip: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM relay_cursors WHERE provider_device = $1 AND seq = 3",
        )
        .bind(&kit.device_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        let n = i64::try_from(SUBSCRIBERS).unwrap();
        if (rows, delivered, at_tip) == (2 * n, 2 * n, n) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "outcome rows {rows}, delivered {delivered}, cursors at the tip {at_tip}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "killed {} the first post's answer; {reached} of {SUBSCRIBERS} subscribers held the signal and {persisted} cursors were persisted at the kill; the retry answered {}",
        if answered.is_ok() { "after" } else { "before" },
        again.status
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status();
    child.0.wait().unwrap();
    store.close().await;
}

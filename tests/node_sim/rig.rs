//! A simulated broker, one price stream and one terminal driven step by step (what
//! `tradecast_sim::app::run` does, with the test holding the controls), and a node run as a child
//! process (this test binary re-executed) so it can be killed with SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use tradecast_protocol::bars::ParseOptions;
use tradecast_protocol::ea::{self, MarginMode};
use tradecast_sim::broker::{AccountConfig, Broker, BrokerConfig, SymbolConfig};
use tradecast_sim::feed::{Feed, SpreadModel};
use tradecast_sim::replay::Replay;
use tradecast_sim::terminal::{Faults, SharedBroker, Terminal, TerminalConfig, lock};

/// The replayed account.
pub const LOGIN: u64 = 8_000_001;
/// The EA's magic input.
pub const MAGIC: u32 = 20_260_101;

/// How the simulated broker names the file's EURUSD and which currency the account keeps.
pub struct Broking {
    /// The broker's name for EURUSD (`EURUSD`, `EURUSD.m`, …).
    pub symbol: String,
    /// The account currency (`USD`: a EURUSD lot's tick value is fixed; `EUR`: it moves with
    /// the rate).
    pub currency: String,
    /// More Market Watch symbols, with no price feed.
    pub unquoted: Vec<String>,
}

impl Default for Broking {
    fn default() -> Self {
        Broking { symbol: "EURUSD".into(), currency: "USD".into(), unquoted: Vec::new() }
    }
}

/// Broker, feed and terminal.
pub struct Rig {
    pub broker: SharedBroker,
    pub replay: Replay,
    pub terminal: Terminal,
    pub faults: Faults,
}

impl Rig {
    /// The first `n_bars` bars of the EURUSD file against the node at `url`.
    pub fn new(url: &str, key_id: &str, secret: &str, n_bars: usize) -> Rig {
        Rig::with(url, key_id, secret, n_bars, |_| {})
    }

    /// As [`Rig::new`], with the terminal's config edited.
    pub fn with(
        url: &str,
        key_id: &str,
        secret: &str,
        n_bars: usize,
        edit: impl FnOnce(&mut TerminalConfig),
    ) -> Rig {
        Rig::at_broker(url, key_id, secret, n_bars, &Broking::default(), edit)
    }

    /// As [`Rig::with`], the broker's symbol name and the account's currency chosen.
    pub fn at_broker(
        url: &str,
        key_id: &str,
        secret: &str,
        n_bars: usize,
        broking: &Broking,
        edit: impl FnOnce(&mut TerminalConfig),
    ) -> Rig {
        let text = std::fs::read_to_string(crate::replay::eurusd()).expect("EURUSD file");
        let head: Vec<&str> = text.lines().take(n_bars + 1).collect();
        let spread = SpreadModel { base_points: 10, ..SpreadModel::default() };
        let feed = Feed::from_file(
            &broking.symbol,
            head.join("\n").as_bytes(),
            &ParseOptions { utc_offset_seconds: 0 },
            spread,
            1,
        )
        .expect("feed");
        let mut broker = Broker::new(BrokerConfig::default());
        broker.add_symbol(SymbolConfig::forex(&broking.symbol, 5));
        for name in &broking.unquoted {
            broker.add_symbol(SymbolConfig::forex(name, 5));
        }
        broker
            .open_account(AccountConfig {
                login: LOGIN,
                currency: broking.currency.clone(),
                leverage: 100,
                margin_mode: MarginMode::Hedging,
                balance: Decimal::from(10_000),
            })
            .expect("account");
        let broker: SharedBroker = Arc::new(Mutex::new(broker));
        let mut tc = TerminalConfig::new(url, key_id, secret, LOGIN);
        tc.input_magic = MAGIC;
        tc.poll_wait_override_ms = Some(0);
        edit(&mut tc);
        let faults = Faults::default();
        let terminal = Terminal::new(tc, broker.clone(), faults.clone()).expect("terminal");
        let replay = Replay::new(broker.clone(), vec![feed]);
        Rig { broker, replay, terminal, faults }
    }

    /// Steps the terminal until it has taken in everything (bounded); the failed steps.
    pub async fn catch_up(&mut self, max_steps: usize) -> usize {
        let mut errors = 0;
        for _ in 0..max_steps {
            match self.terminal.step().await {
                Ok(()) if self.terminal.caught_up() || self.faults.is_silent() => break,
                // Waiting out the hello's backoff after a failure: a timer tick of the EA.
                Ok(()) if self.terminal.session_id().is_none() => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(()) => {}
                Err(_) => {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        errors
    }

    /// Tradecast's `in` deals on the account, by order number.
    pub fn entries_by_order_no(&self) -> std::collections::BTreeMap<u32, usize> {
        let b = lock(&self.broker);
        let mut m = std::collections::BTreeMap::new();
        for d in b.deals(LOGIN, i64::MIN, i64::MAX).expect("deals") {
            if d.entry == ea::DealEntry::In && ea::is_tradecast_magic(d.magic, MAGIC) {
                *m.entry(ea::split_magic(d.magic).1).or_insert(0) += 1;
            }
        }
        m
    }

    /// Tradecast's open positions at the broker.
    pub fn open_positions(&self) -> Vec<ea::Position> {
        lock(&self.broker)
            .positions(LOGIN)
            .expect("positions")
            .into_iter()
            .filter(|p| ea::is_tradecast_magic(p.magic, MAGIC))
            .collect()
    }
}

/// The environment variables that make this test binary a node process.
pub const CHILD_DATA: &str = "TRADECAST_TEST_CHILD_NODE_DATA";
pub const CHILD_EA: &str = "TRADECAST_TEST_CHILD_NODE_EA";

/// A node in a child process on a fixed EA address.
pub struct ChildNode {
    child: Child,
}

impl ChildNode {
    /// Starts the node on `data` (already initialized) listening on `ea`; waits until it answers.
    pub fn start(data: &Path, ea: std::net::SocketAddr) -> ChildNode {
        let exe = std::env::current_exe().expect("test binary");
        let child = Command::new(exe)
            .args(["--exact", "crash::child_node_process", "--nocapture", "--test-threads", "1"])
            .env(CHILD_DATA, data)
            .env(CHILD_EA, ea.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the node");
        for _ in 0..500 {
            if std::net::TcpStream::connect(ea).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        ChildNode { child }
    }

    /// SIGKILL, and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address nobody listens on right now.
pub fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A data dir with an identity and one EA key: (dir, key id, secret).
pub fn data_dir(root: &Path, name: &str) -> (PathBuf, String, String) {
    let dir = root.join(name);
    tradecast_node::serve::init(&dir).expect("init");
    let key = tradecast_node::serve::new_ea_key(&dir).expect("key");
    let c = tradecast_node::config::Config {
        mode: tradecast_node::config::Mode::Provider,
        self_trade: true,
        api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        policy: crate::self_trade_policy(),
        ..tradecast_node::config::Config::default()
    };
    c.write(&dir).expect("config");
    (dir, key.key_id.clone(), key.secret.to_string())
}

/// A small xorshift generator: the seed is printed so a failing run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

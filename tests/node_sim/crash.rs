//! kill -9 of the node (a child process, SIGKILL at random wall-clock moments, restarted on the
//! same data dir and port) and crashes of the EA (the sim's terminal loses its memory; the
//! broker, like a real one, keeps the account) during a self-trading provider replay. After a
//! last clean catch-up: no order opened twice, every ack the node answered is committed, no
//! order left unresolved, and the node's open positions are exactly the broker's.
//!
//! The quick variant kills the node at least 50 times; `slow_*` runs the whole file.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tradecast_node::config::Config;
use tradecast_node::runtime::{OrderAction, OrderState};
use tradecast_node::serve::{self, tokio_util_shutdown::Shutdown};

use crate::rig::{self, CHILD_DATA, CHILD_EA, ChildNode, Rig, Rng};

/// Not a test of its own: when a kill test spawns this binary with [`CHILD_DATA`] set, this runs
/// the node until it is killed. Without the variable it returns at once.
#[test]
fn child_node_process() {
    let Ok(data) = std::env::var(CHILD_DATA) else { return };
    let Some(ea) = std::env::var(CHILD_EA).ok().and_then(|a| a.parse().ok()) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let data = std::path::PathBuf::from(data);
        let mut config = Config::load(&data).expect("config");
        config.ea_listen = ea;
        let running = serve::start(&data, &config, Shutdown::new()).await.expect("start");
        let _ = running.join().await;
    });
}

async fn kill_nine(seed: u64, n_bars: usize, min_kills: usize) {
    println!("seed {seed}");
    let root = tempfile::tempdir().expect("tempdir");
    let (dir, key_id, secret) = rig::data_dir(root.path(), "node");
    let ea = rig::free_addr();
    let mut rig = Rig::new(&format!("http://{ea}"), &key_id, &secret, n_bars);
    let slot = Arc::new(Mutex::new(Some(ChildNode::start(&dir, ea))));
    let kills = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (slot, kills, stop, dir) = (slot.clone(), kills.clone(), stop.clone(), dir.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20 + rng.below(130)));
                let mut s = slot.lock().expect("slot");
                if let Some(c) = s.take() {
                    c.kill();
                }
                kills.fetch_add(1, Ordering::SeqCst);
                // Down for a moment, then back on the same data dir and port.
                std::thread::sleep(Duration::from_millis(rng.below(30)));
                *s = Some(ChildNode::start(&dir, ea));
            }
        })
    };
    let mut rng = Rng(seed);
    let mut n_ea_crashes = 0;
    loop {
        if rng.below(40) == 0 {
            rig.faults.crash();
            n_ea_crashes += 1;
        }
        rig.catch_up(50).await;
        if !rig.replay.advance().expect("advance") {
            break;
        }
    }
    while kills.load(Ordering::SeqCst) < min_kills {
        rig.catch_up(5).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    killer.join().expect("killer");
    if let Some(c) = slot.lock().expect("slot").take() {
        c.kill();
    }
    let n_kills = kills.load(Ordering::SeqCst);
    // A last clean run of the node: the EA catches up, everything due settles.
    let mut config = Config::load(&dir).expect("config");
    config.ea_listen = ea;
    let shutdown = Shutdown::new();
    let running = serve::start(&dir, &config, shutdown.clone()).await.expect("restart");
    for _ in 0..3 {
        rig.catch_up(100).await;
    }
    let node = running.node.clone();
    let account = node.pick_account(None).expect("account");
    let orders = node.orders(&account).expect("orders");
    let positions = node.positions(&account).expect("positions");

    // Never twice: at most one entry deal per order number at the broker.
    let entries = rig.entries_by_order_no();
    for (no, n) in &entries {
        assert_eq!(*n, 1, "seed {seed}: order_no {no} was filled {n} times");
    }
    // Every ack the node answered is committed.
    for ack in &rig.terminal.stats().acks {
        let o = orders
            .iter()
            .find(|o| o.order_id == ack.order_id)
            .unwrap_or_else(|| panic!("seed {seed}: acked order {} unknown", ack.order_id));
        let kept = match ack.outcome {
            tradecast_protocol::ea::Outcome::Done => o.state == OrderState::Acked,
            tradecast_protocol::ea::Outcome::Rejected => {
                o.state == OrderState::Rejected || o.retcode == Some(ack.retcode)
            }
            tradecast_protocol::ea::Outcome::Unknown => o.state != OrderState::Due,
        };
        assert!(
            kept,
            "seed {seed}: the ack of {} ({:?}) is not in the store: {o:?}",
            ack.order_id, ack.outcome
        );
    }
    // No orphans: every order settled, every fill known, the open books agree.
    for o in &orders {
        assert!(o.state.is_final(), "seed {seed}: order left unresolved: {o:?}");
        if let OrderAction::Open(_) = o.action
            && o.state == OrderState::Acked
        {
            assert_eq!(entries.get(&o.order_no), Some(&1), "seed {seed}: acked but no fill: {o:?}");
        }
    }
    for no in entries.keys() {
        assert!(
            orders.iter().any(|o| o.order_no == *no && o.state == OrderState::Acked),
            "seed {seed}: a fill of order_no {no} the node does not know"
        );
    }
    let mut broker_open: Vec<u64> = rig.open_positions().iter().map(|p| p.position_id).collect();
    let mut node_open: Vec<u64> =
        positions.iter().filter(|p| p.open).map(|p| p.position_id).collect();
    broker_open.sort();
    node_open.sort();
    assert_eq!(node_open, broker_open, "seed {seed}: open positions differ");
    println!(
        "seed {seed}: {n_bars} bars, node killed {n_kills} times, EA crashed {n_ea_crashes} times, \
         {} orders, {} fills, {} acks, {} open",
        orders.len(),
        entries.len(),
        rig.terminal.stats().acks.len(),
        node_open.len()
    );
    assert!(n_kills >= min_kills);
    assert!(!entries.is_empty(), "seed {seed}: nothing was traded, the test proved nothing");
    shutdown.trigger();
    let _ = running.join().await;
}

fn seed() -> u64 {
    std::env::var("TRADECAST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 | 1)
            .unwrap_or(1)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_of_node_and_ea_never_trades_twice_nor_loses_an_ack() {
    kill_nine(seed(), 1_500, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_kill_nine_over_the_whole_file() {
    kill_nine(seed(), 5_000, 300).await;
}

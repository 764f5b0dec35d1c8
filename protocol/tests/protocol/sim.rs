//! The session simulator: thousands of seeds with faults, a calm run, and a sabotage test per
//! checker. Long runs are `slow_*` (and the `tradecast-syncsim` binary).

use tradecast_protocol::sim::{self, Sabotage, SimOptions};

fn run_seeds(range: std::ops::Range<u64>) {
    let mut committed = 0;
    let mut crashes = 0;
    let mut equivocations = 0;
    let mut caught = 0;
    for seed in range.clone() {
        match sim::run_catching(SimOptions::for_seed(seed)) {
            Ok(report) => {
                committed += report.records_committed + report.feed_committed;
                crashes += report.crashes;
                equivocations += report.equivocations_injected;
                caught += report.violations_caught;
            }
            Err(failure) => {
                panic!("{failure}\nreplay: {}", sim::replay_command(failure.seed, None))
            }
        }
    }
    // The faults really happened: the run is not vacuous.
    let n = range.end - range.start;
    assert!(committed > n * 10, "{committed} records committed over {n} seeds");
    assert!(crashes > n / 2, "{crashes} crashes over {n} seeds");
    assert!(equivocations > n / 20, "{equivocations} equivocations over {n} seeds");
    assert!(caught > n / 50, "{caught} tampered frames caught over {n} seeds");
}

/// Runs `range` on two threads (the signature memo is per process, so one process is cheaper
/// than four).
fn run_seeds_parallel(range: std::ops::Range<u64>) {
    let mid = range.start + (range.end - range.start) / 2;
    let upper = std::thread::spawn(move || run_seeds(mid..range.end));
    run_seeds(range.start..mid);
    if let Err(panic) = upper.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn sim_2000_seeds_hold_every_property() {
    run_seeds_parallel(0..2000);
}

#[test]
fn a_calm_run_commits_everything_in_order() {
    let report = sim::run(SimOptions { calm: true, ..SimOptions::for_seed(7) }).unwrap();
    assert_eq!(report.records_committed, 150);
    // 100 entries: the inbox's all, the shared relay log's those meant for this device.
    assert!(report.feed_meant > 60 && report.feed_meant < 100, "{report:?}");
    assert_eq!(report.feed_committed, report.feed_meant);
    assert_eq!(report.crashes, 0);
    assert_eq!(report.connections, 1);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    for seed in [3, 99, 1234] {
        assert_eq!(sim::run(SimOptions::for_seed(seed)), sim::run(SimOptions::for_seed(seed)));
    }
}

/// Runs seeds with `sabotage` until a checker fires; the failure must mention `expect`.
fn sabotage_fires(sabotage: Sabotage, expect: &[&str]) {
    for seed in 0..400 {
        let opt = SimOptions { sabotage: Some(sabotage), ..SimOptions::for_seed(seed) };
        if let Err(failure) = sim::run_catching(opt) {
            assert!(
                expect.iter().any(|e| failure.property.contains(e)),
                "{sabotage:?} fired an unexpected checker: {failure}"
            );
            assert!(sim::replay_command(failure.seed, Some(sabotage)).contains("--sabotage"));
            return;
        }
    }
    panic!("sabotage {sabotage:?} was never caught in 400 seeds");
}

#[test]
fn sabotage_hub_commits_twice_is_caught() {
    sabotage_fires(Sabotage::HubCommitsTwice, &["does not verify", "hub holds", "hub store"]);
}

#[test]
fn sabotage_hub_loses_a_commit_is_caught() {
    sabotage_fires(
        Sabotage::HubLosesCommit,
        &["does not verify", "is not the hub's", "hub tip", "hub store"],
    );
}

#[test]
fn sabotage_node_reorders_its_feed_is_caught() {
    sabotage_fires(Sabotage::NodeReordersFeed, &["out of order"]);
}

#[test]
fn sabotage_a_hub_skipping_an_item_is_caught() {
    sabotage_fires(Sabotage::HubSkipsItem, &["is not the hub's entries", "liveness"]);
}

#[test]
fn sabotage_a_hub_renumbering_after_a_crash_is_caught() {
    sabotage_fires(Sabotage::HubRenumbers, &["is not the hub's", "unexpected alarm"]);
}

#[test]
fn sabotage_appending_before_the_tips_is_caught() {
    sabotage_fires(
        Sabotage::NodeAppendsBeforeTips,
        &["unexpected alarm", "is not the hub's", "hub holds", "hub tip"],
    );
}

#[test]
fn sabotage_hidden_equivocation_alarm_is_caught() {
    sabotage_fires(Sabotage::HideEquivocationAlarm, &["was not detected"]);
}

#[test]
fn sabotage_hub_stores_a_tampered_record_is_caught() {
    sabotage_fires(Sabotage::HubStoresTampered, &["does not verify"]);
}

#[test]
fn sabotage_ignored_corruption_is_caught() {
    sabotage_fires(Sabotage::IgnoreCorruption, &["was accepted", "tampered record reached"]);
}

#[test]
fn sabotage_a_panic_is_caught_with_its_seed() {
    sabotage_fires(Sabotage::Panic, &["panicked"]);
}

#[test]
fn slow_sim_seeds_2000_to_50000() {
    run_seeds_parallel(2_000..50_000);
}

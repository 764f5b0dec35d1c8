//! The seeded node + terminal simulation (`tradecast::node_sim`): the CI seed set passes with
//! every fault kind exercised, a seed replays to the same figures, and each property's checker
//! fires when its sabotage switch breaks the world. Long runs: `tradecast node-sim --seeds A..B`
//! (node/README.md).

use tradecast::node_sim::{self, Options, Property, Report, Sabotage};

/// The CI seed set: small enough for a debug build well under a minute on a loaded machine.
const CI_SEEDS: std::ops::Range<u64> = 0..16;

#[test]
fn the_ci_seed_set_passes_and_exercises_every_fault() {
    let opts = Options::default();
    let mut totals = Report::default();
    for seed in CI_SEEDS {
        match node_sim::run_seed(seed, &opts) {
            Ok(r) => totals.add(&r),
            Err(v) => {
                panic!("{v}\n  rerun: cargo run --release -- node-sim --seeds {seed}..{}", seed + 1)
            }
        }
    }
    // The seeds did what the simulation is for, or passing would mean little.
    assert!(totals.fills >= 50, "{totals}");
    assert!(totals.provider_closes >= 50, "{totals}");
    assert!(totals.gaps >= 20, "{totals}");
    assert!(totals.guard_checks >= 2, "{totals}");
    assert!(totals.node_crashes >= 20, "{totals}");
    assert!(totals.ea_restarts >= 20, "{totals}");
    assert!(totals.silent_steps >= 50, "{totals}");
    assert!(totals.deals_tampered >= 20, "{totals}");
    assert!(totals.send_faults >= 50, "{totals}");
}

/// Seeds the simulation found failing, kept as regressions: a copy whose open order was already
/// with the EA when the provider closed the signal filled afterwards and stayed open with no
/// close order (seeds 1153, 1929, 7918; the node now closes such a late fill at once).
#[test]
fn the_seeds_where_a_copy_filled_after_the_providers_close_stay_flat() {
    let opts = Options::default();
    for seed in [1153, 1929, 7918] {
        if let Err(v) = node_sim::run_seed(seed, &opts) {
            panic!("{v}\n  rerun: cargo run --release -- node-sim --seeds {seed}..{}", seed + 1);
        }
    }
}

/// The slow suite's longer run: 200 more seeds (a few minutes in a debug build).
#[test]
fn slow_seeded_simulation_two_hundred_more_seeds() {
    let opts = Options::default();
    let failed: Vec<String> = (CI_SEEDS.end..CI_SEEDS.end + 200)
        .filter_map(|seed| node_sim::run_seed(seed, &opts).err().map(|v| v.to_string()))
        .collect();
    assert!(failed.is_empty(), "{} seed(s) failed:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn a_seed_replays_to_the_same_figures() {
    let opts = Options { steps: 120, sabotage: None };
    let a = node_sim::run_seed(3, &opts).expect("seed 3");
    let b = node_sim::run_seed(3, &opts).expect("seed 3 again");
    assert_eq!(a, b);
    let c = node_sim::run_seed(4, &opts).expect("seed 4");
    assert_ne!(a, c, "two seeds made the same world");
}

fn fires(sabotage: Sabotage) {
    let v = node_sim::sabotage_fires(sabotage, 0..12, 150).unwrap_or_else(|| {
        panic!("{} never broke {}", sabotage.as_str(), sabotage.breaks().as_str())
    });
    assert_eq!(v.property, Some(sabotage.breaks()), "{v}");
}

#[test]
fn sabotage_send_twice_is_caught_as_a_double_execution() {
    fires(Sabotage::SendTwice);
}

#[test]
fn sabotage_foreign_fill_is_caught_as_a_fill_not_accounted() {
    fires(Sabotage::ForeignFill);
}

#[test]
fn sabotage_drop_closes_is_caught_as_a_position_left_after_the_providers_close() {
    fires(Sabotage::DropCloses);
}

#[test]
fn sabotage_drop_close_all_is_caught_as_a_guard_not_flat_after_one_poll() {
    fires(Sabotage::DropCloseAll);
}

#[test]
fn sabotage_skew_equity_is_caught_as_equity_not_reconciling() {
    fires(Sabotage::SkewEquity);
}

#[test]
fn every_property_has_a_sabotage_switch() {
    for p in Property::ALL {
        assert!(Sabotage::ALL.iter().any(|s| s.breaks() == p), "{} has no switch", p.as_str());
    }
}

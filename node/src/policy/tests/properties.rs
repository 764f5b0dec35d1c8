//! Any figures the EA or a provider could send: no panic, and an accepted plan always keeps
//! the broker's volume rules, the risk cap and its own legs consistent.

use super::*;
use proptest::prelude::*;

fn decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        // Realistic: up to 6 places, positive.
        (1i64..10_000_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s)),
        // Anything, including zero, negatives and extremes.
        (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
        Just(Decimal::MAX),
        Just(Decimal::MIN),
        Just(Decimal::ZERO),
    ]
}

fn lot_mode() -> impl Strategy<Value = LotMode> {
    prop_oneof![
        decimal().prop_map(|lots| LotMode::Fixed { lots }),
        decimal().prop_map(|factor| LotMode::Multiplier { factor }),
        (decimal(), decimal())
            .prop_map(|(lots, per_balance)| LotMode::Proportional { lots, per_balance }),
        decimal().prop_map(|percent| LotMode::RiskPercent { percent }),
    ]
}

prop_compose! {
    fn wild_scenario()(
        prices in proptest::collection::vec(decimal(), 6),
        spec_figures in proptest::collection::vec(decimal(), 6),
        account in proptest::collection::vec(decimal(), 4),
        stops_level in prop_oneof![Just(0u32), any::<u32>()],
        times in (any::<i64>(), any::<i64>(), any::<i64>()),
        near in (-(2 * H)..(2 * H), -(2 * H)..(2 * H)),
        realistic_time in any::<bool>(),
        offset in any::<i32>(),
        entry_kind in prop_oneof![Just(EntryKind::Market), Just(EntryKind::Limit), Just(EntryKind::Stop)],
        sell in any::<bool>(),
        reverse in any::<bool>(),
        halves in any::<bool>(),
        lot in lot_mode(),
        provider_lots in proptest::option::of(decimal()),
        lot_max in proptest::option::of(decimal()),
    ) -> Scenario {
        let mut s = base();
        s.quotes.insert("EURUSD.m".into(), Quote { bid: prices[0], ask: prices[1] });
        s.signal.entry = prices[2];
        s.signal.stop = prices[3];
        s.signal.tp1 = prices[4];
        s.signal.tp2 = Some(prices[5]);
        s.signal.entry_kind = entry_kind;
        if sell {
            s.signal.side = WireSide::Sell;
        }
        let spec = &mut s.specs[0];
        spec.point = spec_figures[0];
        spec.tick_size = spec_figures[1];
        spec.tick_value_loss = spec_figures[2];
        spec.volume_min = spec_figures[3];
        spec.volume_max = spec_figures[4];
        spec.volume_step = spec_figures[5];
        spec.stops_level = stops_level;
        s.balance = account[0];
        s.equity = account[1];
        s.peak_equity = account[2];
        s.day_start = Some(DayStart { day_start_ms: risk::server_day_start_ms(NOW, 7_200), equity: account[3] });
        if realistic_time {
            s.signal.bar_time_ms = NOW - H + near.0;
            s.signal.expires_at_ms = NOW + near.1;
        } else {
            s.now_ms = times.0;
            s.signal.bar_time_ms = times.1;
            s.signal.expires_at_ms = times.2;
            s.server_utc_offset_s = offset;
        }
        s.settings.reverse = reverse;
        s.settings.split = if halves && !reverse { Split::Halves } else { Split::Whole };
        s.settings.lot = lot;
        s.settings.lot_max = lot_max;
        s.settings.min_rr = Decimal::ZERO;
        s.settings.max_price_move_stop_fraction = Decimal::ZERO;
        s.provider_lots = provider_lots;
        s
    }
}

/// Points (0.00001) as a decimal.
fn pts(n: i64) -> Decimal {
    Decimal::new(n, 5)
}

prop_compose! {
    /// Figures a real EURUSD-like account could show: most of these are accepted, so the
    /// plan's invariants are exercised, not only the skips.
    fn realistic_scenario()(
        base_pts in 100_000i64..200_000,
        spread in 0i64..30,
        offset in -40i64..40,
        stop_pts in 20i64..500,
        tp_pts in 20i64..1_000,
        tp2_extra in 0i64..500,
        sell in any::<bool>(),
        entry_kind in prop_oneof![4 => Just(EntryKind::Market), 1 => Just(EntryKind::Limit), 1 => Just(EntryKind::Stop)],
        tick_value_cents in 50i64..300,
        coarse in any::<bool>(),
        volume_max in 1i64..100,
        stops_level in 0u32..60,
        equity in 100i64..1_000_000,
        peak_extra_pct in 0i64..30,
        day_extra_pct in -5i64..5,
        lot in prop_oneof![
            (1i64..500).prop_map(|c| LotMode::Fixed { lots: Decimal::new(c, 2) }),
            (1i64..300).prop_map(|c| LotMode::Multiplier { factor: Decimal::new(c, 2) }),
            (1i64..10, 100i64..10_000).prop_map(|(c, per)| LotMode::Proportional { lots: Decimal::new(c, 2), per_balance: Decimal::from(per) }),
            (1i64..300).prop_map(|c| LotMode::RiskPercent { percent: Decimal::new(c, 2) }),
        ],
        provider_cents in 1i64..1_000,
        lot_max in proptest::option::of((1i64..1_000).prop_map(|c| Decimal::new(c, 2))),
        reverse in any::<bool>(),
        halves in any::<bool>(),
        age_s in 0i64..90,
    ) -> Scenario {
        let mut s = base();
        let entry = base_pts;
        let (bid, ask) = (entry + offset, entry + offset + spread);
        s.quotes.insert("EURUSD.m".into(), Quote { bid: pts(bid), ask: pts(ask) });
        let dir = if sell { -1 } else { 1 };
        // A pending entry sits away from the market on its own side.
        let entry = match entry_kind {
            EntryKind::Market => entry,
            EntryKind::Limit => entry - dir * 100,
            EntryKind::Stop => entry + dir * 100,
        };
        s.signal.side = if sell { WireSide::Sell } else { WireSide::Buy };
        s.signal.entry_kind = entry_kind;
        s.signal.entry = pts(entry);
        s.signal.stop = pts(entry - dir * stop_pts);
        s.signal.tp1 = pts(entry + dir * tp_pts);
        s.signal.tp2 = Some(pts(entry + dir * (tp_pts + tp2_extra)));
        s.signal.bar_time_ms = NOW - H - age_s * 1_000 + 30_000;
        let spec = &mut s.specs[0];
        spec.tick_value_loss = Decimal::new(tick_value_cents, 2);
        if coarse {
            spec.volume_min = Decimal::new(1, 1);
            spec.volume_step = Decimal::new(1, 1);
        }
        spec.volume_max = Decimal::from(volume_max);
        spec.stops_level = stops_level;
        let equity = Decimal::from(equity);
        s.equity = equity;
        s.balance = equity;
        s.peak_equity = equity * (Decimal::ONE_HUNDRED + Decimal::from(peak_extra_pct)) / Decimal::ONE_HUNDRED;
        s.day_start = Some(DayStart {
            day_start_ms: risk::server_day_start_ms(NOW, 7_200),
            equity: equity * (Decimal::ONE_HUNDRED + Decimal::from(day_extra_pct)) / Decimal::ONE_HUNDRED,
        });
        s.settings.lot = lot;
        s.settings.lot_max = lot_max;
        s.settings.reverse = reverse;
        s.settings.split = if halves && !reverse { Split::Halves } else { Split::Whole };
        s.settings.min_rr = Decimal::new(5, 1);
        s.provider_lots = Some(Decimal::new(provider_cents, 2));
        s
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    prop_oneof![realistic_scenario(), wild_scenario()]
}

#[test]
fn realistic_scenarios_are_mostly_accepted() {
    // The property below means something only if plans are built: count them.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = realistic_scenario();
    let n = 1_000;
    let accepted = (0..n)
        .filter(|_| {
            let s = strategy.new_tree(&mut runner).expect("a scenario").current();
            matches!(s.run().outcome, Outcome::Accept(_))
        })
        .count();
    assert!(accepted * 4 >= n, "only {accepted} of {n} accepted");
}

proptest! {
    // Failures print their minimal input; no regression file is written into the tree.
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn evaluation_never_panics_and_plans_keep_the_rules(s in scenario()) {
        let e = s.run();
        let (last, earlier) = e.steps.split_last().expect("a step");
        prop_assert!(earlier.iter().all(|st| st.passed));
        match &e.outcome {
            Outcome::Skip(reason) => {
                prop_assert!(!last.passed);
                prop_assert!(reason.to_string().starts_with("skipped: "));
            }
            Outcome::Accept(plan) => {
                let spec = &s.specs[0];
                prop_assert!(last.passed);
                prop_assert!(plan.volume >= spec.volume_min && plan.volume <= spec.volume_max);
                prop_assert_eq!(plan.legs.iter().map(|l| l.volume).sum::<Decimal>(), plan.volume);
                for leg in &plan.legs {
                    prop_assert!(leg.volume >= spec.volume_min);
                    prop_assert!((leg.volume / spec.volume_step).fract().is_zero());
                }
                let cap = s.equity * s.settings.max_risk_pct / Decimal::ONE_HUNDRED;
                prop_assert!(plan.risk_money <= cap, "{} > {}", plan.risk_money, cap);
                if let Some(max) = s.settings.lot_max {
                    prop_assert!(plan.volume <= max);
                }
                prop_assert!(s.now_ms < s.signal.expires_at_ms);
            }
        }
    }

    #[test]
    fn following_never_panics_and_never_closes_more_than_the_copy(
        fraction in decimal(),
        volume in decimal(),
        min in decimal(),
        step in decimal(),
        tick in decimal(),
        stop in proptest::option::of(decimal()),
    ) {
        let settings = PolicySettings::default();
        let copy = follow::CopiedPosition {
            side: Side::Buy,
            reversed: false,
            target: follow::Target::Tp1,
            volume,
            sl: None,
            tp: None,
        };
        let rules = follow::VolumeRules { tick_size: tick, volume_min: min, volume_step: step };
        let close = tradecast_protocol::Close {
            signal_id: SignalId([1; 16]),
            fraction,
            price: None,
            reason: String::new(),
            at_ms: 0,
        };
        if let follow::FollowAction::Close { volume: Some(part) } =
            follow::follow_close(&settings, &close, &copy, &rules)
        {
            prop_assert!(part <= volume && part >= min);
        }
        let modify = tradecast_protocol::Modify {
            signal_id: SignalId([1; 16]),
            stop,
            tp1: None,
            tp2: None,
            reason: String::new(),
            at_ms: 0,
        };
        let _ = follow::follow_modify(&settings, &modify, &copy, &rules);
    }

    #[test]
    fn approvals_decide_once_and_never_approve_after_expiry(
        decisions in proptest::collection::vec((any::<bool>(), any::<bool>(), -H..H), 1..6),
        remote_on in any::<bool>(),
        auto in any::<bool>(),
    ) {
        let settings = approval::ApprovalSettings {
            mode: if auto { approval::ApprovalMode::Auto } else { approval::ApprovalMode::Manual },
            remote_approval: remote_on,
            consent_version: 1,
        };
        let e = base().run();
        let expires = NOW + H;
        let mut p = approval::PendingApproval::start(SignalId([9; 16]), signal().provider, expires, &e, &settings, NOW);
        let mut first: Option<tradecast_protocol::Approval> = p.decided().cloned();
        for (approve, remote, dt) in decisions {
            let at = expires + dt;
            let by = if remote {
                approval::Decider::Remote { user: "bob".into(), via: "telegram".into() }
            } else {
                approval::Decider::Trader { user: "bob".into(), channel: approval::Channel::Ui }
            };
            let verdict = if approve { approval::Verdict::Approve } else { approval::Verdict::Reject };
            let req = approval::DecisionRequest { verdict, by, reason: String::new() };
            let result = p.decide(&req, &e.outcome, &settings, at).cloned();
            if let Ok(a) = &result {
                prop_assert!(first.is_none(), "decided twice");
                prop_assert!(at < expires);
                prop_assert!(!remote || remote_on);
                first = Some(a.clone());
            }
            if first.is_none() {
                first = p.decided().cloned();
            }
            prop_assert_eq!(p.decided(), first.as_ref());
            if let Some(a) = &first {
                prop_assert!(a.decision != tradecast_protocol::Decision::Approved || a.decided_at_ms < expires);
            }
        }
    }
}

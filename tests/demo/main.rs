//! The demo end to end (issue 9): a hub on SQLite, a provider node running Fib-RSI, two
//! subscriber nodes with different policies and a simulated terminal beside each, on one
//! simulated broker, over real HTTP, real QUIC and the real EA link on 127.0.0.1 — asserted from
//! the records each party signed and from the broker's deals; and how the demo process ends on
//! a signal (`signals`).

#[cfg(target_os = "linux")]
mod signals;

use rust_decimal::Decimal;
use tradecast::demo::{self, FaultPlan, Options, Report};
use tradecast_protocol::Decision;
use tradecast_sim::replay::Speed;

async fn run(bars: Option<usize>) -> (Report, Vec<String>) {
    run_with(bars, FaultPlan::default()).await
}

async fn run_with(bars: Option<usize>, faults: FaultPlan) -> (Report, Vec<String>) {
    run_opts(bars, faults, false, false).await
}

/// One demo run; `public_record`: also wait for the public delay and run the verifier (60–120 s
/// more, so only the test that checks it asks for it).
async fn run_opts(
    bars: Option<usize>,
    faults: FaultPlan,
    realistic_terminal: bool,
    public_record: bool,
) -> (Report, Vec<String>) {
    let mut lines = Vec::new();
    let opts = Options {
        speed: Speed::Max,
        bars,
        exit_when_done: true,
        data: None,
        faults,
        realistic_terminal,
        program: env!("CARGO_BIN_EXE_tradecast").into(),
        public_record,
        miniapp_hand: None,
        public_hand: None,
    };
    let never_stopped = std::future::pending();
    let report = demo::run(&opts, never_stopped, &mut |l: &str| lines.push(l.to_owned()))
        .await
        .expect("demo");
    (report, lines)
}

/// What every run must show, whatever its length.
fn check(report: &Report, lines: &[String]) {
    assert!(!report.signals.is_empty(), "no signal: {lines:#?}");
    let (alice, bob) = (&report.subscribers[0], &report.subscribers[1]);
    assert_eq!((alice.name.as_str(), bob.name.as_str()), ("alice", "bob"));
    for s in &report.signals {
        // Every provider signal was accepted by the hub and reached both subscribers, which
        // verified the provider's signature themselves.
        assert!(s.hub_received_at_ms.is_some(), "signal {} not at the hub", s.number);
        for (name, o) in &s.subscribers {
            assert!(o.received, "{name} did not receive signal {}", s.number);
            assert!(
                o.fills.len() <= 1,
                "{name} filled signal {} {} times",
                s.number,
                o.fills.len()
            );
            // A fill only after a signed approval; a skip never fills.
            if !o.fills.is_empty() {
                assert_eq!(o.decision, Some(Decision::Approved), "{name} signal {}", s.number);
                assert!(o.skipped.is_none());
            }
        }
        // Auto-copy: every signal the policy accepts is approved by rule and filled once.
        let a = &s.subscribers["alice"];
        if a.skipped.is_none() {
            assert_eq!(a.decision, Some(Decision::Approved), "alice signal {}", s.number);
            assert_eq!(a.fills.len(), 1, "alice signal {}: {a:?}", s.number);
        }
    }
    // The manual subscriber's scripted clicks: every other waiting signal approved, the rest
    // expired without an order.
    let waiting: Vec<_> = report
        .signals
        .iter()
        .map(|s| &s.subscribers["bob"])
        .filter(|o| o.skipped.is_none())
        .collect();
    for (i, o) in waiting.iter().enumerate() {
        let want = if i % 2 == 0 { Decision::Approved } else { Decision::Expired };
        assert_eq!(o.decision, Some(want), "bob's {i}th waiting signal: {o:?}");
        assert_eq!(o.fills.len(), usize::from(want == Decision::Approved), "bob {i}: {o:?}");
    }
    for t in &report.subscribers {
        // Exactly once at the broker: one entry deal per order number.
        assert!(
            t.entries_per_order.values().all(|n| *n == 1),
            "{}: {:?}",
            t.name,
            t.entries_per_order
        );
        assert_eq!(t.entries_per_order.len(), t.filled, "{}", t.name);
        assert_eq!(t.received, report.signals.len());
    }
    assert!(bob.pnl.abs() < alice.pnl.abs() + Decimal::from(1_000));
    // Everything synced is at the hub, chained and signed: provider, alice and bob, every stream
    // they wrote (device keys, signals, approvals and executions, private records).
    assert!(report.chains_verified >= 9, "{} chains", report.chains_verified);
    assert!(lines.iter().any(|l| l.starts_with("Summary")), "{lines:#?}");
    // Each subscriber's node holds its plan as the hub signed it (the demo's plan's features).
    assert_eq!(report.plans.len(), 2, "{:?}", report.plans);
    for (name, features) in &report.plans {
        assert_eq!(features, &["auto_copy", "mini_app", "signals", "telegram"], "{name}");
    }
    // alice paid by card through the Stripe stand-in's Checkout, driven as a browser (49.00 USD,
    // every webhook accepted); bob with Telegram Stars through the Bot API stand-in (250 XTR).
    let subs: Vec<_> = report
        .subscriptions
        .iter()
        .map(|(n, d, s, _)| (n.as_str(), d.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        subs,
        [("alice", "stripe", "active"), ("bob", "telegram_stars", "active")],
        "{:?}",
        report.subscriptions
    );
    assert_eq!(report.revenue, [("USD".to_string(), 4900), ("XTR".to_string(), 250)]);
    assert!(lines.iter().any(|l| l.starts_with("bob signed up on the hub's page")), "{lines:#?}");
    assert!(
        report.stripe_webhooks.0 >= 3 && report.stripe_webhooks.1 == 0,
        "{:?}",
        report.stripe_webhooks
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("alice followed rita's link, signed up on the hub's page")),
        "{lines:#?}"
    );
    // alice linked Telegram from her account page: the bot confirmed, answered /status, and
    // alerted her to every signal (her plan has Telegram alerts), within the flood limits.
    let tg = &report.telegram_to_alice;
    assert!(tg.iter().any(|t| t.starts_with("✅ Linked to alice")), "{tg:#?}");
    assert!(tg.iter().any(|t| t.contains("Devices (1)") || t.contains("Devices (0)")), "{tg:#?}");
    let alerts = tg.iter().filter(|t| t.contains("from provider")).count();
    assert_eq!(alerts, report.signals.len(), "{tg:#?}");
    assert_eq!(report.telegram_429, 0);
    // Her own account's events reach her chat too: a fill per copy her node filled.
    let fills = tg.iter().filter(|t| t.contains("✅ Filled: EURUSD")).count();
    assert!(
        fills >= 1 && fills <= alice.filled,
        "{fills} fill messages, {} fills: {tg:#?}",
        alice.filled
    );
    // The new-signal alerts are pictures of the setup, their text the caption.
    assert!(lines.iter().any(|l| l.contains("telegram  bot → alice: [chart] 📈")), "{lines:#?}");
    // The owner's broadcast from the console reached her, once.
    assert_eq!(tg.iter().filter(|t| t.starts_with("This week on Fib-RSI")).count(), 1, "{tg:#?}");
    assert!(lines.iter().any(|l| l.starts_with("the owner broadcast a note")), "{lines:#?}");
    // bob (remote approval on) approved his first waiting signal from the bot's button: his
    // node's Pending reached the hub, the press became a hub-signed request, his node decided it
    // under its own rules, and the bot's message says it was applied.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("telegram  bot → bob: 🔔 Signal waiting for your decision")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("bob pressed ✅ Approve")), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with("bob's node approved signal")
            && l.contains("by remote request via telegram (0.1 lots")
            && l.contains("Applied")),
        "{lines:#?}"
    );
    // His second approved signal he approved in the Telegram Mini App, opened from the bot's
    // message on it ("📱 Open in the app": `startapp=approve_<signal>`); his node decided it and
    // the app shows its signed answer.
    if waiting.len() >= 3 {
        assert!(
            lines.iter().any(|l| l.starts_with("bob tapped \"📱 Open in the app\"")
                && l.contains("his node approved it (0.1 lots")
                && l.contains("Applied")),
            "{lines:#?}"
        );
    }
    // bob's node hands his closed trades over for other trackers (Myfxbook's CSV layout).
    assert!(
        lines.iter().any(|l| l.starts_with("bob's node, History → \"Download for Myfxbook")
            && l.contains("(Open Date,Close Date,Symbol,Action…)")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("the provider made a redacted share link")));
    // Every node's health shows its hub link up.
    assert!(report.hub_links.iter().all(|(_, up)| *up == Some(true)), "{:?}", report.hub_links);
    // The provider holds the hub's verified receipt for every record of its track record.
    assert!(report.provider_records >= report.signals.len());
    assert_eq!(report.provider_receipts, report.provider_records);
    // Nothing lost upstream: the hub holds every record of every node's outbox, and every node
    // holds the hub's receipt covering all it signed.
    assert!(report.unsynced.is_empty(), "{:?}", report.unsynced);
    assert!(report.unreceipted.is_empty(), "{:?}", report.unreceipted);
    // Every bar settled: no party stuck, no link waiting out a timeout.
    assert_eq!(report.settle_timeouts, 0, "{lines:#?}");
    if let Some(public) = report.public_record.as_ref() {
        check_public_record(report, lines, public);
    }
    assert!(lines.iter().any(|l| l.starts_with("the provider ticked Settings → Publishing")));
    // The owner signs in to the hub's console and sees the demo's accounts and devices.
    let fig = |k: &str| report.console.get(k).copied();
    assert_eq!(fig("accounts-owner"), Some(1), "{:?}", report.console);
    assert_eq!(fig("accounts-provider"), Some(1), "{:?}", report.console);
    assert_eq!(
        fig("accounts-subscriber"),
        Some(3),
        "alice, bob and rita the referrer: {:?}",
        report.console
    );
    assert_eq!(fig("devices-active"), Some(3), "{:?}", report.console);
    assert!(
        lines.iter().any(|l| l.starts_with("hub console (the owner, signed in): 3 subscriber"))
    );
    // Alice by card and bob by Stars: two live subscriptions and their MRR on the overview.
    assert_eq!(fig("subscriptions-live"), Some(2), "{:?}", report.console);
    assert!(report.console_mrr.as_deref().is_some_and(|m| m.ends_with(" USD") && m != "0.00 USD"));
    assert!(lines.iter().any(|l| l.starts_with("hub console overview: MRR ")), "{lines:#?}");
    // rita's referral link brought alice: 20 % of her 49.00 USD is pending on rita's page.
    assert_eq!(report.affiliate_pending, Some(980), "{lines:#?}");
    // 49.00: Stripe's fee 2.9 % (1.421 → 1.42) + 0.30 = 1.72; rita's 20 % = 9.80.
    let month = ["49.00", "1.72", "9.80", "37.48"].map(str::to_owned);
    assert_eq!(report.revenue_month, Some(month), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("rita's affiliate page (/affiliate) shows 9.80 USD pending"))
    );
    // alice opened the Mini App from Telegram: her signed launch data became a session and its
    // plan view shows her card subscription.
    assert!(
        lines.iter().any(|l| l.starts_with("alice opened the bot's Mini App")
            && l.contains("Fib-RSI EURUSD — card (Stripe)")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_signals_reach_every_subscriber_and_fill_once() {
    // The first 1,300 bars hold the sample's first five signals.
    let (report, lines) = run_opts(Some(PLAIN_BARS), FaultPlan::default(), false, true).await;
    check(&report, &lines);
    insta::assert_snapshot!("plain_outcomes", outcomes(&report));
    insta::assert_snapshot!("plain_pnl", pnl(&report));
    assert!(report.public_record.is_some(), "this run checks the public record");
    assert!(report.signals.len() >= 4, "{} signals", report.signals.len());
    let first = &report.signals[0].signal;
    assert_eq!(first.entry.normalize().to_string(), "1.09128");
    assert!(report.latency_ms.is_some());
}

/// The whole sample, as the README's first command runs it: the backtest's 20 signals, each
/// through the hub to both subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_demo_whole_sample() {
    let (report, lines) = run(None).await;
    check(&report, &lines);
    assert_eq!(report.signals.len(), 20, "{lines:#?}");
    assert_eq!(report.bars, 5_000);
}

/// The decisions and fills of a run, one line per signal and subscriber: the signal's bar, the
/// decision and the filled volumes (prices may differ by nothing: one broker, one price stream,
/// lockstep). Runs of the same bars give the same lines whatever the pace, the faults or the
/// terminal's realism.
fn outcomes(r: &Report) -> String {
    let mut out = String::new();
    for s in &r.signals {
        for (name, o) in &s.subscribers {
            let fills: Vec<String> = o.fills.iter().map(|f| format!("{} @ {}", f.1, f.0)).collect();
            let decision = o.decision.map_or_else(|| "none".to_owned(), |d| format!("{d:?}"));
            out.push_str(&format!(
                "{} {name:<5} {decision:<8} [{}]\n",
                s.signal.bar_time_ms,
                fills.join(", ")
            ));
        }
    }
    out
}

/// Each subscriber's P&L at the end of a run (money and R).
fn pnl(r: &Report) -> String {
    r.subscribers.iter().map(|t| format!("{:<5} {} ({} R)\n", t.name, t.pnl, t.pnl_r)).collect()
}

/// The first 1,300 bars' outcome, as [`demo_signals_reach_every_subscriber_and_fill_once`]
/// records it in `snapshots/` (a plain run): the slow runs with faults or a realistic terminal
/// are compared with it instead of running the plain demo again beside them. A change to the
/// strategy or the policies changes it: `cargo insta review` (or `INSTA_UPDATE=always`).
const PLAIN_BARS: usize = 1_300;

/// Faults between the parties change nothing: the hub's process killed (SIGKILL) for a day of
/// bars mid-run between two signals (the nodes trade offline, sign into their outboxes, and
/// catch up when a new hub process is back on the same SQLite file; a signal made while the hub
/// is down would reach the subscribers after its expiry, and be recorded as expired, which is
/// right but not the same run), alice's node process killed (SIGKILL) and started again, and
/// every QUIC datagram through a proxy that drops, duplicates and delays them. Same signals,
/// same decisions, same fills, each once, every chain intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_demo_faults_lose_nothing_and_duplicate_nothing() {
    let bars = Some(PLAIN_BARS);
    let faults = FaultPlan {
        lossy: Some(tradecast::lossy::Faults {
            drop_pct: 10,
            duplicate_pct: 5,
            max_delay_ms: 15,
            seed: 7,
        }),
        kill_hub_at_bar: Some(300),
        hub_down_bars: 24,
        kill_node_at_bar: Some(("alice".into(), 640)),
    };
    let (faulty, lines) = run_with(bars, faults).await;
    check(&faulty, &lines);
    assert!(lines.iter().any(|l| l.contains("hub killed (SIGKILL)")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("hub back")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("alice's node killed (SIGKILL) and started again")));
    insta::assert_snapshot!("plain_outcomes", outcomes(&faulty));
    assert!(faulty.unsynced.is_empty(), "{:?}", faulty.unsynced);
    let lossy = faulty.lossy.expect("the proxy ran");
    assert!(lossy.dropped > 0 && lossy.duplicated > 0, "{lossy:?}");
}

/// Issue 23, "done when": the demo with the realistic-terminal options on (`--realistic-terminal`:
/// tickets that change on reversal and roll-over, filling and expiration modes checked, a dealer
/// that requotes closes, a server DST change mid-replay, terminals that start disconnected, alice
/// on netting, 400 more Market Watch symbols) gives the same signals, decisions and fills, each
/// once, and the same P&L.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_demo_realistic_terminal_gives_the_same_decisions_and_fills() {
    let (real, lines) = run_opts(Some(PLAIN_BARS), FaultPlan::default(), true, false).await;
    check(&real, &lines);
    assert!(lines.iter().any(|l| l.starts_with("(realistic terminal:")), "{lines:#?}");
    insta::assert_snapshot!("plain_outcomes", outcomes(&real));
    insta::assert_snapshot!("plain_pnl", pnl(&real));
}

/// The public track record holds the whole run once the delay has passed, and the offline
/// verifier checks every record and recomputes every figure from them, equal to the page's.
fn check_public_record(report: &Report, lines: &[String], public: &demo::PublicRecord) {
    assert!(public.verifier.ok, "{}", public.verifier.text);
    assert!(
        public.records >= report.provider_records,
        "{} of {}",
        public.records,
        report.provider_records
    );
    assert!(public.verifier.text.lines().last().is_some_and(|l| l.starts_with("OK: ")));
    // The provider's redacted share link shows its one publishing account.
    assert_eq!(public.share.1, 1, "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("redacted share link: ")));
    assert!(
        lines.last().is_some_and(|l| l.starts_with("  OK: ")),
        "the summary ends with the verdict: {lines:#?}"
    );
}

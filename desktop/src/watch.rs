//! What the tray and the notifications show, computed from snapshots of the node's local API
//! (pure: no Tauri, no I/O, so it is tested with plain data).
//!
//! [`Seen::update`] compares a snapshot with what was already announced and returns the
//! notifications due: a signal newly waiting for approval (with the time left in market time),
//! an order filled or a position closed (a new deal), a signal skipped by the policy (its
//! copy-log line), the drawdown guard locking or releasing auto mode. The first snapshot after
//! start announces only what needs the trader now (waiting signals, a lock), not history.
//! [`tray_state`] gives the tray's colour and words: red when the drawdown guard holds a lock,
//! amber when the EA link is down, green otherwise.

use std::collections::BTreeSet;

use tradecast_node::policy::PolicySettings;
use tradecast_node::policy::approval::ApprovalMode;
use tradecast_node::policy::copy_log::CopyLogEntry;
use tradecast_node::runtime::{ApprovalRow, SignalRow, Status};
use tradecast_protocol::ea::{Deal, DealEntry, DealKind};

use crate::prefs::Kind;

/// The hub link as far as the app can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hub {
    /// No hub: the trader chose standalone or has not enrolled.
    Standalone,
    /// Enrolled: the hub's key is pinned (address shown).
    Enrolled(String),
    /// Attached to a daemon: its store is not ours to read.
    Unknown,
}

/// One poll of the node.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: Status,
    pub approvals: Vec<ApprovalRow>,
    pub signals: Vec<SignalRow>,
    pub copy_log: Vec<CopyLogEntry>,
    /// `(account, deal)` for every account.
    pub deals: Vec<(String, Deal)>,
    pub hub: Hub,
}

/// A notification to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: Kind,
    pub title: String,
    pub body: String,
}

/// What was already announced.
#[derive(Debug, Default)]
pub struct Seen {
    started: bool,
    waiting: BTreeSet<String>,
    skips: BTreeSet<(String, i64)>,
    deals: BTreeSet<(String, u64)>,
    locked: BTreeSet<String>,
}

fn side_word(s: tradecast_protocol::Side) -> &'static str {
    match s {
        tradecast_protocol::Side::Buy => "buy",
        tradecast_protocol::Side::Sell => "sell",
    }
}

/// A bar's length (a month counts 30 days: only a countdown's words use it).
fn timeframe_ms(tf: tradecast_protocol::Timeframe) -> i64 {
    use tradecast_protocol::Timeframe as T;
    60_000
        * match tf {
            T::M1 => 1,
            T::M5 => 5,
            T::M15 => 15,
            T::M30 => 30,
            T::H1 => 60,
            T::H4 => 240,
            T::D1 => 1_440,
            T::W1 => 10_080,
            T::MN1 => 43_200,
        }
}

/// `ms` as "1 h 5 min", "12 min", "40 s".
pub fn duration_words(ms: i64) -> String {
    let s = ms.max(0) / 1_000;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        _ if s % 3_600 / 60 == 0 => format!("{} h", s / 3_600),
        _ => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
    }
}

impl Seen {
    /// The notifications `snap` calls for, and remembers them as announced.
    pub fn update(&mut self, snap: &Snapshot) -> Vec<Notice> {
        let first = !self.started;
        self.started = true;
        let mut out = Vec::new();

        for a in snap.approvals.iter().filter(|a| a.pending.decided().is_none()) {
            let hex = a.pending.signal_id.to_hex();
            if !self.waiting.insert(hex.clone()) {
                continue;
            }
            let signal = snap.signals.iter().find(|s| s.signal.id == a.pending.signal_id);
            // The market clock when the node evaluated it: the signal bar's close, or a later
            // evaluation in the copy log.
            let closed = signal.map(|s| s.signal.bar_time_ms + timeframe_ms(s.signal.timeframe));
            let logged = snap
                .copy_log
                .iter()
                .filter(|c| c.signal_id == a.pending.signal_id)
                .map(|c| c.at_ms)
                .max();
            let at = closed.max(logged);
            let left = at.map(|t| duration_words(a.pending.expires_at_ms - t));
            let (title, what) = match signal {
                Some(s) => (
                    format!("{} {}: approve?", s.signal.symbol, side_word(s.signal.side)),
                    format!(
                        "Entry {} · SL {} · TP {}. {}",
                        s.signal.entry, s.signal.stop, s.signal.tp1, a.line
                    ),
                ),
                None => ("A signal waits for your approval".to_owned(), a.line.clone()),
            };
            let body = match left {
                Some(l) => format!("{what}\nApprove within {l} (market time) in Tradecast."),
                None => format!("{what}\nApprove in Tradecast before it expires."),
            };
            out.push(Notice { kind: Kind::Signal, title, body });
        }

        for c in snap.copy_log.iter().filter(|c| !c.accepted) {
            let key = (c.signal_id.to_hex(), c.at_ms);
            if self.skips.insert(key) && !first {
                out.push(Notice {
                    kind: Kind::Skip,
                    title: format!("{}: signal skipped", c.canonical_symbol),
                    body: c.line.clone(),
                });
            }
        }

        for (account, d) in &snap.deals {
            if !matches!(d.kind, DealKind::Buy | DealKind::Sell) {
                continue;
            }
            if !self.deals.insert((account.clone(), d.deal_ticket)) || first {
                continue;
            }
            let side = if d.kind == DealKind::Buy { "buy" } else { "sell" };
            let (title, body) = if d.entry == DealEntry::In {
                (
                    format!("Filled: {} {side} {}", d.symbol, d.volume),
                    format!("at {} on {account} (deal {})", d.price, d.deal_ticket),
                )
            } else {
                let net = d.profit + d.commission + d.swap;
                (
                    format!("Closed: {} {}", d.symbol, d.volume),
                    format!(
                        "at {}, net {} on {account} (deal {})",
                        d.price,
                        net.round_dp(2),
                        d.deal_ticket
                    ),
                )
            };
            out.push(Notice { kind: Kind::Fill, title, body });
        }

        for a in &snap.status.accounts {
            if a.locked && self.locked.insert(a.account.clone()) {
                out.push(Notice {
                    kind: Kind::Guard,
                    title: "Drawdown guard: auto mode locked".to_owned(),
                    body: format!(
                        "{}: {}. Tradecast closed what it opened; signals now wait for you.",
                        a.account, a.lock_reason
                    ),
                });
            } else if !a.locked && self.locked.remove(&a.account) {
                out.push(Notice {
                    kind: Kind::Guard,
                    title: "Drawdown guard released".to_owned(),
                    body: format!("{}: auto mode may run again.", a.account),
                });
            }
        }
        out
    }
}

/// The tray's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// EA link up, no lock.
    Ok,
    /// The EA link is down (or the node is unreachable).
    Warn,
    /// The drawdown guard holds a lock.
    Alert,
}

/// The tray's colour and its lines of words (tooltip and the menu's status line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayState {
    pub health: Health,
    pub lines: Vec<String>,
}

/// The tray for `snap`.
pub fn tray_state(snap: &Snapshot) -> TrayState {
    let locked: Vec<_> = snap.status.accounts.iter().filter(|a| a.locked).collect();
    let health = if !locked.is_empty() {
        Health::Alert
    } else if !snap.status.link_up {
        Health::Warn
    } else {
        Health::Ok
    };
    let mut lines = vec![format!("EA link {}", if snap.status.link_up { "up" } else { "down" })];
    lines.push(match &snap.hub {
        Hub::Standalone => "Hub: standalone".to_owned(),
        Hub::Enrolled(addr) => format!("Hub: enrolled with {addr}"),
        Hub::Unknown => "Hub: see the node service".to_owned(),
    });
    lines.push(match locked.first() {
        Some(a) => format!("Drawdown guard: LOCKED on {}", a.account),
        None => "Drawdown guard: ok".to_owned(),
    });
    let waiting = snap.approvals.iter().filter(|a| a.pending.decided().is_none()).count();
    if waiting > 0 {
        lines.push(format!(
            "{waiting} signal{} waiting for approval",
            if waiting == 1 { "" } else { "s" }
        ));
    }
    TrayState { health, lines }
}

/// The tray for a node that does not answer.
pub fn tray_unreachable(error: &str) -> TrayState {
    TrayState { health: Health::Warn, lines: vec![format!("Node not answering: {error}")] }
}

/// What "Pause auto-copy" does to the policy in force, given whether the app paused it.
#[derive(Debug, Clone, PartialEq)]
pub enum PauseStep {
    /// Auto mode is on: switch to manual and remember the pause.
    Pause(Box<PolicySettings>),
    /// The app paused it: switch back to auto.
    Resume(Box<PolicySettings>),
    /// Auto-copy is off and was not paused here: nothing to pause (turn it on in Settings,
    /// which asks for the trader's consent).
    NotOn,
}

/// The step for the tray's "Pause auto-copy" item.
pub fn pause_step(policy: &PolicySettings, paused_by_app: bool) -> PauseStep {
    let mut next = policy.clone();
    match (policy.approval.mode, paused_by_app) {
        (ApprovalMode::Auto, _) => {
            next.approval.mode = ApprovalMode::Manual;
            PauseStep::Pause(Box::new(next))
        }
        (ApprovalMode::Manual, true) if policy.approval.consent_version >= 1 => {
            next.approval.mode = ApprovalMode::Auto;
            PauseStep::Resume(Box::new(next))
        }
        _ => PauseStep::NotOn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_json::from_str(text).expect("fixture")
    }

    /// A snapshot from the fixtures (a real node's answers after the window story: the sim's
    /// first Fib-RSI signal, approved, and its fill).
    fn snapshot() -> Snapshot {
        let status: Status = fixture(include_str!("../tests/fixtures/status.json"));
        let account = status.accounts[0].account.clone();
        let deals: Vec<Deal> = fixture(include_str!("../tests/fixtures/deals.json"));
        Snapshot {
            status,
            approvals: fixture(include_str!("../tests/fixtures/approvals.json")),
            signals: fixture(include_str!("../tests/fixtures/signals.json")),
            copy_log: fixture(include_str!("../tests/fixtures/copy-log.json")),
            deals: deals.into_iter().map(|d| (account.clone(), d)).collect(),
            hub: Hub::Standalone,
        }
    }

    /// The same snapshot with the signal still waiting and only its first evaluation logged.
    fn waiting() -> Snapshot {
        let mut s = snapshot();
        s.approvals[0].pending.state = tradecast_node::policy::approval::ApprovalState::Waiting;
        s.copy_log.truncate(1);
        s.deals.clear();
        s.status.accounts[0].n_open_positions = 0;
        s
    }

    #[test]
    fn a_waiting_signal_is_announced_once_with_its_time_left() {
        let mut seen = Seen::default();
        let notes = seen.update(&waiting());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].kind, Kind::Signal);
        assert_eq!(notes[0].title, "EURUSD sell: approve?");
        // Bar 04:00 closes at 05:00; the expiry is 06:00, market time.
        assert!(notes[0].body.contains("Approve within 1 h (market time)"), "{}", notes[0].body);
        assert!(notes[0].body.contains("Entry 1.09128"), "{}", notes[0].body);
        assert_eq!(seen.update(&waiting()), vec![], "announced once");
    }

    #[test]
    fn history_at_start_is_not_announced_but_new_fills_skips_and_locks_are() {
        let mut seen = Seen::default();
        assert_eq!(seen.update(&snapshot()), vec![], "an approved signal and an old fill");
        let mut next = snapshot();
        let mut close = next.deals[0].1.clone();
        close.deal_ticket += 1;
        close.entry = DealEntry::Out;
        close.profit = rust_decimal::Decimal::new(-1920, 2);
        next.deals.push((next.deals[0].0.clone(), close));
        let mut skip = next.copy_log[0].clone();
        skip.at_ms += 3_600_000;
        skip.accepted = false;
        skip.line = "skipped: EURUSD market closed (Saturday)".into();
        next.copy_log.push(skip);
        next.status.accounts[0].locked = true;
        next.status.accounts[0].lock_reason = "equity 7999 below the floor 8000".into();
        let notes = seen.update(&next);
        let kinds: Vec<Kind> = notes.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, vec![Kind::Skip, Kind::Fill, Kind::Guard], "{notes:?}");
        assert_eq!(notes[0].body, "skipped: EURUSD market closed (Saturday)");
        assert_eq!(notes[1].title, "Closed: EURUSD 1.92");
        assert!(notes[1].body.contains("net -19.20"), "{}", notes[1].body);
        assert!(notes[2].body.contains("below the floor"), "{}", notes[2].body);
        next.status.accounts[0].locked = false;
        let notes = seen.update(&next);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].title, "Drawdown guard released");
    }

    #[test]
    fn the_tray_colour_follows_the_ea_link_and_the_guard() {
        let mut s = snapshot();
        let check = |s: &Snapshot, health: Health, first: &str| {
            let t = tray_state(s);
            assert_eq!(t.health, health, "{t:?}");
            assert_eq!(t.lines[0], first, "{t:?}");
        };
        check(&s, Health::Warn, "EA link down");
        s.status.link_up = true;
        check(&s, Health::Ok, "EA link up");
        assert_eq!(tray_state(&s).lines[1], "Hub: standalone");
        s.status.accounts[0].locked = true;
        check(&s, Health::Alert, "EA link up");
        assert_eq!(tray_state(&s).lines[2], "Drawdown guard: LOCKED on 5000001@Tradecast-Sim");
        let w = waiting();
        assert_eq!(
            tray_state(&w).lines.last().map(String::as_str),
            Some("1 signal waiting for approval")
        );
        assert_eq!(tray_unreachable("refused").health, Health::Warn);
    }

    #[test]
    fn pause_switches_auto_to_manual_and_back_only_with_consent() {
        let mut auto = PolicySettings::default();
        auto.approval.mode = ApprovalMode::Auto;
        auto.approval.consent_version = 1;
        let PauseStep::Pause(paused) = pause_step(&auto, false) else { panic!("pause") };
        assert_eq!(paused.approval.mode, ApprovalMode::Manual);
        assert_eq!(paused.approval.consent_version, 1, "consent kept");
        let PauseStep::Resume(resumed) = pause_step(&paused, true) else { panic!("resume") };
        assert_eq!(*resumed, auto);
        // Manual by the trader's choice: the tray does not turn auto-copy on.
        assert_eq!(pause_step(&PolicySettings::default(), false), PauseStep::NotOn);
        // Paused here, but no consent on record (the trader withdrew it): stays manual.
        let mut no_consent = (*paused).clone();
        no_consent.approval.consent_version = 0;
        assert_eq!(pause_step(&no_consent, true), PauseStep::NotOn);
    }

    #[test]
    fn durations_in_words() {
        let check = |ms: i64, e: &str| assert_eq!(duration_words(ms), e, "{ms}");
        check(-5, "0 s");
        check(42_000, "42 s");
        check(60_000, "1 min");
        check(3_600_000, "1 h");
        check(3_900_000, "1 h 5 min");
    }
}

//! Approvals: a pure state machine per signal and subscriber device, producing the
//! [`Approval`] value that the node signs into a record elsewhere.
//!
//! - A signal the policy skipped is rejected by rule at once, the skip line as the reason.
//! - Auto mode (with consent to the terms, `consent_version` ≥ 1, the drawdown guard not
//!   locked, and for a signal from the hub a plan that includes `auto_copy` ([`PlanGate`]):
//!   [`Evaluation::auto_suspended`]): an accepted signal is approved by rule at once.
//! - Manual mode (or auto mode without consent or under the guard's lock): the signal waits for
//!   the trader until its expiry on the market clock; [`PendingApproval::expire`] records
//!   `Expired` once that has passed. A signal the policy found expired is recorded `Expired`.
//! - A trader decides in the UI or through the local API; a remote decision (Telegram, the Mini
//!   App, relayed by the hub) is a request, honoured only when `remote_approval` is on.
//! - Every approval, local or remote, is honoured only within the policy: the caller re-evaluates
//!   the signal at decision time and passes the outcome; an approval while the policy now skips
//!   it is refused with that reason (a rejection is always accepted).
//! - A decision after expiry, or a second decision, is refused with a message the trader reads.
//!
//! A decision made here is recorded as `Trader(user)` with the channel in the reason ("in the
//! UI", "through the local API", "by remote request via telegram"); the node's remote-approval
//! glue (`runtime::remote`) then signs a remote one as `DecidedBy::Remote { request_id }`, the
//! hub request it answers.

use std::fmt;

use serde::{Deserialize, Serialize};
use tradecast_protocol::{
    Approval, DecidedBy, Decision, DeviceId, Feature, FeatureGrant, SignalId,
};

use super::{Evaluation, Outcome, SkipReason, fmt_utc};

/// Manual or automatic approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Every accepted signal waits for the trader (the default).
    #[default]
    Manual,
    /// Accepted signals are approved by rule.
    Auto,
}

/// The approval settings (part of [`super::PolicySettings`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalSettings {
    /// Default manual.
    pub mode: ApprovalMode,
    /// Honour decisions relayed from Telegram or the Mini App. Default `false`.
    pub remote_approval: bool,
    /// The version of the terms for automatic execution the trader accepted; 0: none. Written by
    /// the UI when the trader accepts, recorded in every approval. Auto mode needs ≥ 1.
    pub consent_version: u32,
}

impl ApprovalSettings {
    /// Whether accepted signals are approved by rule now.
    pub fn auto_in_force(&self) -> bool {
        self.mode == ApprovalMode::Auto && self.consent_version >= 1
    }
}

/// What the UI says when the hub's plan keeps signals waiting for the trader.
pub const NO_AUTO_COPY: &str =
    "Your plan does not include automatic copying: signals wait for your approval";

/// Whether the trader's plan lets auto mode approve a signal (issue 16, item 7): the hub sends
/// the plan's features as hub-signed `FeatureGrant`s, and a signal from the hub is approved by
/// rule only while a grant in force includes `auto_copy`; otherwise it waits for the trader,
/// whatever the approval mode says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlanGate {
    /// The signal did not come from the hub (made or given locally): no plan applies.
    #[default]
    NotApplicable,
    /// A grant in force includes `auto_copy`.
    AutoCopy,
    /// No grant in force includes `auto_copy`: the trader decides.
    ManualOnly,
}

impl PlanGate {
    /// The gate of a signal from the hub, given the verified grants and the wall clock.
    pub fn for_hub_signal(grants: &[FeatureGrant], now_ms: i64) -> PlanGate {
        let granted =
            grants.iter().any(|g| g.in_force_at(now_ms) && g.features.contains(&Feature::AutoCopy));
        if granted { PlanGate::AutoCopy } else { PlanGate::ManualOnly }
    }

    /// Whether auto mode may approve under this gate.
    pub fn allows_auto(self) -> bool {
        self != PlanGate::ManualOnly
    }
}

/// Where a local decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The node's web UI or the desktop app.
    Ui,
    /// The node's local API.
    LocalApi,
}

/// Who asks for a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decider {
    /// The trader, on this machine.
    Trader { user: String, channel: Channel },
    /// A request relayed by the hub (`via`: "telegram", "mini_app").
    Remote { user: String, via: String },
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

/// A decision asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRequest {
    pub verdict: Verdict,
    pub by: Decider,
    /// The trader's words, if any.
    pub reason: String,
}

/// Why a decision was refused. `Display` is the message the trader reads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// Already decided (by anyone, including expiry).
    AlreadyDecided { decision: Decision, decided_by: DecidedBy, decided_at_ms: i64 },
    /// The signal's expiry has passed (market clock).
    Expired { expires_at_ms: i64, now_ms: i64 },
    /// A remote request while remote approval is off.
    RemoteDisabled,
    /// An approval the policy no longer accepts.
    OutsidePolicy { reason: String },
    /// A decider without a user id.
    NoUser,
}

fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Approved => "approved",
        Decision::Rejected => "rejected",
        Decision::Expired => "expired",
    }
}

impl std::error::Error for Refused {}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::AlreadyDecided { decision: Decision::Expired, decided_at_ms, .. } => write!(
                f,
                "refused: the signal expired at {} with no decision; nothing was sent",
                fmt_utc(*decided_at_ms)
            ),
            Refused::AlreadyDecided { decision, decided_by, decided_at_ms } => write!(
                f,
                "refused: the signal was already {} by {} at {}",
                decision_word(*decision),
                match decided_by {
                    DecidedBy::Policy => "rule",
                    DecidedBy::Trader(user) => user.as_str(),
                    DecidedBy::Remote { .. } => "a remote request",
                },
                fmt_utc(*decided_at_ms)
            ),
            Refused::Expired { expires_at_ms, now_ms } => write!(
                f,
                "refused: the signal expired at {} ({} s ago); nothing was sent",
                fmt_utc(*expires_at_ms),
                now_ms.saturating_sub(*expires_at_ms) / 1_000
            ),
            Refused::RemoteDisabled => f.write_str(
                "refused: remote approval is off on this node; decide in the node's UI or turn remote approval on",
            ),
            Refused::OutsidePolicy { reason } => {
                write!(f, "refused: the policy no longer accepts this signal ({reason})")
            }
            Refused::NoUser => f.write_str("refused: a decision needs the deciding user's id"),
        }
    }
}

/// Where a signal's approval stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for the trader until the expiry.
    Waiting,
    /// Decided; the approval to sign.
    Decided(Approval),
}

/// One signal's approval for this device; serde, so the node keeps it in its store across
/// restarts (a waiting signal still waits, in market time, after a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub signal_id: SignalId,
    pub device: DeviceId,
    /// The signal's expiry, market clock.
    pub expires_at_ms: i64,
    pub state: ApprovalState,
}

impl PendingApproval {
    /// Starts the approval of a signal the policy has just evaluated at `now_ms` (market clock).
    pub fn start(
        signal_id: SignalId,
        device: DeviceId,
        expires_at_ms: i64,
        evaluation: &Evaluation,
        settings: &ApprovalSettings,
        now_ms: i64,
    ) -> PendingApproval {
        let mut p =
            PendingApproval { signal_id, device, expires_at_ms, state: ApprovalState::Waiting };
        match &evaluation.outcome {
            Outcome::Skip(reason @ SkipReason::Expired { .. }) => {
                p.state = ApprovalState::Decided(p.approval(
                    Decision::Expired,
                    DecidedBy::Policy,
                    settings,
                    reason.to_string(),
                    now_ms,
                ));
            }
            Outcome::Skip(reason) => {
                p.state = ApprovalState::Decided(p.approval(
                    Decision::Rejected,
                    DecidedBy::Policy,
                    settings,
                    reason.to_string(),
                    now_ms,
                ));
            }
            Outcome::Accept(_) if now_ms >= expires_at_ms => {
                p.expire(now_ms, settings);
            }
            Outcome::Accept(_) if settings.auto_in_force() && !evaluation.auto_suspended => {
                p.state = ApprovalState::Decided(p.approval(
                    Decision::Approved,
                    DecidedBy::Policy,
                    settings,
                    "auto mode: every policy rule passed".into(),
                    now_ms,
                ));
            }
            Outcome::Accept(_) => {}
        }
        p
    }

    fn approval(
        &self,
        decision: Decision,
        decided_by: DecidedBy,
        settings: &ApprovalSettings,
        reason: String,
        now_ms: i64,
    ) -> Approval {
        Approval {
            signal_id: self.signal_id,
            device: self.device,
            decision,
            decided_by,
            consent_version: settings.consent_version,
            reason,
            decided_at_ms: now_ms,
            // The lots are the intake's to fill in when it sizes an approved plan.
            lots: None,
        }
    }

    /// The decision, once there is one.
    pub fn decided(&self) -> Option<&Approval> {
        match &self.state {
            ApprovalState::Decided(a) => Some(a),
            ApprovalState::Waiting => None,
        }
    }

    /// Records `Expired` when the signal is still waiting and its expiry has passed; returns the
    /// new approval, if this call made one.
    pub fn expire(&mut self, now_ms: i64, settings: &ApprovalSettings) -> Option<&Approval> {
        if self.state != ApprovalState::Waiting || now_ms < self.expires_at_ms {
            return None;
        }
        let reason = format!("no decision before the expiry at {}", fmt_utc(self.expires_at_ms));
        self.state = ApprovalState::Decided(self.approval(
            Decision::Expired,
            DecidedBy::Policy,
            settings,
            reason,
            self.expires_at_ms,
        ));
        self.decided()
    }

    /// A decision by the trader or a remote request. `policy_now` is the policy's outcome for
    /// this signal re-evaluated at `now_ms`; an approval needs it to be `Accept`.
    // The `expect` at the end reads back the state set on the line before it: it cannot fail.
    #[allow(clippy::expect_used)]
    pub fn decide(
        &mut self,
        request: &DecisionRequest,
        policy_now: &Outcome,
        settings: &ApprovalSettings,
        now_ms: i64,
    ) -> Result<&Approval, Refused> {
        if let ApprovalState::Decided(a) = &self.state {
            return Err(Refused::AlreadyDecided {
                decision: a.decision,
                decided_by: a.decided_by.clone(),
                decided_at_ms: a.decided_at_ms,
            });
        }
        if now_ms >= self.expires_at_ms {
            self.expire(now_ms, settings);
            return Err(Refused::Expired { expires_at_ms: self.expires_at_ms, now_ms });
        }
        let (user, channel) = match &request.by {
            Decider::Trader { user, channel: Channel::Ui } => (user, "in the UI".to_string()),
            Decider::Trader { user, channel: Channel::LocalApi } => {
                (user, "through the local API".to_string())
            }
            Decider::Remote { user, via } => {
                if !settings.remote_approval {
                    return Err(Refused::RemoteDisabled);
                }
                (user, format!("by remote request via {via}"))
            }
        };
        if user.trim().is_empty() {
            return Err(Refused::NoUser);
        }
        let decision = match request.verdict {
            Verdict::Approve => {
                if let Outcome::Skip(reason) = policy_now {
                    return Err(Refused::OutsidePolicy { reason: reason.to_string() });
                }
                Decision::Approved
            }
            Verdict::Reject => Decision::Rejected,
        };
        let words = request.reason.trim();
        let reason = if words.is_empty() {
            format!("{} {channel}", decision_word(decision))
        } else {
            format!("{} {channel}: {words}", decision_word(decision))
        };
        self.state = ApprovalState::Decided(self.approval(
            decision,
            DecidedBy::Trader(user.clone()),
            settings,
            reason,
            now_ms,
        ));
        Ok(self.decided().expect("just decided"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{OrderPlan, SkipReason, sizing::LotMode};
    use rust_decimal::Decimal;
    use tradecast_protocol::ea::OrderKind;

    const EXPIRES: i64 = 1_795_600_000_000;
    const NOW: i64 = EXPIRES - 600_000;

    fn device() -> DeviceId {
        tradecast_protocol::Identity::from_secret_bytes(&[7; 32], &[8; 32]).device_id()
    }

    fn accept() -> Outcome {
        Outcome::Accept(OrderPlan {
            signal_id: SignalId([1; 16]),
            canonical_symbol: "EURUSD".into(),
            symbol: "EURUSD.m".into(),
            kind: OrderKind::Buy,
            price: Decimal::ONE,
            legs: vec![],
            volume: Decimal::ONE,
            risk_money: Decimal::ONE,
            rr: Decimal::ONE,
            max_slippage_points: Some(10),
            expires_at_ms: EXPIRES,
            reversed: false,
            lot_mode: LotMode::default(),
        })
    }

    fn skip() -> Outcome {
        Outcome::Skip(SkipReason::TooOld { age_s: 93, limit_s: 60 })
    }

    fn manual() -> ApprovalSettings {
        ApprovalSettings { mode: ApprovalMode::Manual, remote_approval: false, consent_version: 3 }
    }

    fn auto() -> ApprovalSettings {
        ApprovalSettings { mode: ApprovalMode::Auto, ..manual() }
    }

    fn start(outcome: &Outcome, s: &ApprovalSettings, now: i64) -> PendingApproval {
        let e = Evaluation { outcome: outcome.clone(), steps: vec![], auto_suspended: false };
        PendingApproval::start(SignalId([1; 16]), device(), EXPIRES, &e, s, now)
    }

    fn ui(verdict: Verdict, reason: &str) -> DecisionRequest {
        DecisionRequest {
            verdict,
            by: Decider::Trader { user: "alice".into(), channel: Channel::Ui },
            reason: reason.into(),
        }
    }

    fn remote(verdict: Verdict) -> DecisionRequest {
        DecisionRequest {
            verdict,
            by: Decider::Remote { user: "alice".into(), via: "telegram".into() },
            reason: String::new(),
        }
    }

    /// (decision, decided_by, consent, reason, at) of a decided approval.
    fn summary(a: &Approval) -> (Decision, DecidedBy, u32, String, i64) {
        assert_eq!(a.signal_id, SignalId([1; 16]));
        assert_eq!(a.device, device());
        (a.decision, a.decided_by.clone(), a.consent_version, a.reason.clone(), a.decided_at_ms)
    }

    #[test]
    fn start_decides_by_rule_or_waits() {
        let p = start(&skip(), &manual(), NOW);
        assert_eq!(
            summary(p.decided().expect("rejected by rule")),
            (
                Decision::Rejected,
                DecidedBy::Policy,
                3,
                "skipped: signal 93 s old, limit 60 s".into(),
                NOW
            )
        );
        let p = start(&accept(), &auto(), NOW);
        assert_eq!(
            summary(p.decided().expect("approved by rule")),
            (
                Decision::Approved,
                DecidedBy::Policy,
                3,
                "auto mode: every policy rule passed".into(),
                NOW
            )
        );
        assert_eq!(start(&accept(), &manual(), NOW).state, ApprovalState::Waiting);
        // Auto mode without consent to the terms waits for the trader.
        let no_consent = ApprovalSettings { consent_version: 0, ..auto() };
        assert!(!no_consent.auto_in_force());
        assert_eq!(start(&accept(), &no_consent, NOW).state, ApprovalState::Waiting);
        // Already expired on arrival.
        let p = start(&accept(), &manual(), EXPIRES);
        assert_eq!(p.decided().map(|a| a.decision), Some(Decision::Expired));
        // The policy found it expired: recorded as expired, not rejected.
        let late =
            Outcome::Skip(SkipReason::Expired { expires_at_ms: EXPIRES, now_ms: EXPIRES + 2_000 });
        let p = start(&late, &auto(), EXPIRES + 2_000);
        assert_eq!(
            p.decided().map(summary),
            Some((
                Decision::Expired,
                DecidedBy::Policy,
                3,
                "skipped: signal expired 2 s ago (at 2026-11-25 09:46:40 UTC)".into(),
                EXPIRES + 2_000
            ))
        );
        // The drawdown guard's lock suspends auto mode: the trader decides.
        let e = Evaluation { outcome: accept(), steps: vec![], auto_suspended: true };
        let p = PendingApproval::start(SignalId([1; 16]), device(), EXPIRES, &e, &auto(), NOW);
        assert_eq!(p.state, ApprovalState::Waiting);
    }

    fn grant(features: Vec<Feature>, from: i64, until: Option<i64>) -> FeatureGrant {
        FeatureGrant {
            grant_id: tradecast_protocol::GrantId([7; 16]),
            device: device(),
            plan_id: "plan_gold".into(),
            features,
            valid_from_ms: from,
            valid_until_ms: until,
            issued_at_ms: from,
        }
    }

    #[test]
    fn a_hub_signal_without_auto_copy_in_force_waits_for_the_trader() {
        let now = 1_000_000;
        let with = grant(vec![Feature::Signals, Feature::AutoCopy], now - 10, None);
        let without = grant(vec![Feature::Signals], now - 10, None);
        let ended = grant(vec![Feature::AutoCopy], now - 10, Some(now));
        let future = grant(vec![Feature::AutoCopy], now + 1, None);
        assert_eq!(PlanGate::for_hub_signal(std::slice::from_ref(&with), now), PlanGate::AutoCopy);
        assert_eq!(PlanGate::for_hub_signal(&[without.clone(), with], now), PlanGate::AutoCopy);
        for grants in [vec![], vec![without], vec![ended], vec![future]] {
            let gate = PlanGate::for_hub_signal(&grants, now);
            assert_eq!(gate, PlanGate::ManualOnly, "{grants:?}");
            assert!(!gate.allows_auto());
        }
        assert!(PlanGate::NotApplicable.allows_auto() && PlanGate::AutoCopy.allows_auto());
    }

    #[test]
    fn the_trader_decides_in_the_ui_and_the_api() {
        let mut p = start(&accept(), &manual(), NOW);
        let a = p.decide(&ui(Verdict::Approve, " looks good "), &accept(), &manual(), NOW + 5_000);
        assert_eq!(
            a.map(summary),
            Ok((
                Decision::Approved,
                DecidedBy::Trader("alice".into()),
                3,
                "approved in the UI: looks good".into(),
                NOW + 5_000
            ))
        );
        let mut p = start(&accept(), &manual(), NOW);
        let api = DecisionRequest {
            verdict: Verdict::Reject,
            by: Decider::Trader { user: "alice".into(), channel: Channel::LocalApi },
            reason: String::new(),
        };
        // A rejection stands even when the policy would skip now.
        let a = p.decide(&api, &skip(), &manual(), NOW);
        assert_eq!(
            a.map(summary),
            Ok((
                Decision::Rejected,
                DecidedBy::Trader("alice".into()),
                3,
                "rejected through the local API".into(),
                NOW
            ))
        );
    }

    #[test]
    fn a_waiting_approval_survives_the_store() {
        let p = start(&accept(), &manual(), NOW);
        let json = serde_json::to_string(&p).expect("json");
        let mut back: PendingApproval = serde_json::from_str(&json).expect("back");
        assert_eq!(back, p);
        let a = back.decide(&ui(Verdict::Approve, ""), &accept(), &manual(), NOW).cloned();
        let json = serde_json::to_string(&back).expect("json");
        let again: PendingApproval = serde_json::from_str(&json).expect("back");
        assert_eq!(again.decided().cloned(), a.ok());
    }

    #[test]
    fn a_second_decision_is_refused() {
        let mut p = start(&accept(), &manual(), NOW);
        p.decide(&ui(Verdict::Approve, ""), &accept(), &manual(), NOW).expect("first");
        let err = p.decide(&ui(Verdict::Reject, ""), &accept(), &manual(), NOW + 1_000);
        let msg = err.expect_err("second").to_string();
        assert_eq!(
            msg,
            "refused: the signal was already approved by alice at 2026-11-25 09:36:40 UTC"
        );
        let mut auto_p = start(&accept(), &auto(), NOW);
        let msg = auto_p
            .decide(&ui(Verdict::Reject, ""), &accept(), &auto(), NOW)
            .expect_err("already approved by rule")
            .to_string();
        assert_eq!(
            msg,
            "refused: the signal was already approved by rule at 2026-11-25 09:36:40 UTC"
        );
        assert_eq!(auto_p.decided().map(|a| a.decision), Some(Decision::Approved));
    }

    #[test]
    fn decisions_after_expiry_are_refused_and_expiry_is_recorded() {
        let mut p = start(&accept(), &manual(), NOW);
        let err = p
            .decide(&ui(Verdict::Approve, ""), &accept(), &manual(), EXPIRES + 3_000)
            .expect_err("late");
        assert_eq!(
            err.to_string(),
            "refused: the signal expired at 2026-11-25 09:46:40 UTC (3 s ago); nothing was sent"
        );
        assert_eq!(
            p.decided().map(summary),
            Some((
                Decision::Expired,
                DecidedBy::Policy,
                3,
                "no decision before the expiry at 2026-11-25 09:46:40 UTC".into(),
                EXPIRES
            ))
        );
        // Later attempts see the recorded expiry.
        let err = p.decide(&ui(Verdict::Reject, ""), &accept(), &manual(), EXPIRES + 9_000);
        assert_eq!(
            err.expect_err("expired").to_string(),
            "refused: the signal expired at 2026-11-25 09:46:40 UTC with no decision; nothing was sent"
        );
        // expire() is idempotent and waits for the expiry.
        let mut q = start(&accept(), &manual(), NOW);
        assert_eq!(q.expire(EXPIRES - 1, &manual()), None);
        assert_eq!(q.state, ApprovalState::Waiting);
        assert_eq!(q.expire(EXPIRES, &manual()).map(|a| a.decision), Some(Decision::Expired));
        assert_eq!(q.expire(EXPIRES + 1, &manual()), None);
    }

    #[test]
    fn remote_requests_only_when_enabled_and_within_the_policy() {
        let mut p = start(&accept(), &manual(), NOW);
        let err = p.decide(&remote(Verdict::Approve), &accept(), &manual(), NOW);
        assert_eq!(
            err.expect_err("remote off").to_string(),
            "refused: remote approval is off on this node; decide in the node's UI or turn remote approval on"
        );
        assert_eq!(p.state, ApprovalState::Waiting);
        let on = ApprovalSettings { remote_approval: true, ..manual() };
        let err = p.decide(&remote(Verdict::Approve), &skip(), &on, NOW);
        assert_eq!(
            err.expect_err("policy skips now").to_string(),
            "refused: the policy no longer accepts this signal (skipped: signal 93 s old, limit 60 s)"
        );
        assert_eq!(p.state, ApprovalState::Waiting);
        let a = p.decide(&remote(Verdict::Approve), &accept(), &on, NOW + 1_000);
        assert_eq!(
            a.map(summary),
            Ok((
                Decision::Approved,
                DecidedBy::Trader("alice".into()),
                3,
                "approved by remote request via telegram".into(),
                NOW + 1_000
            ))
        );
        // A local approval is held to the policy too.
        let mut q = start(&accept(), &manual(), NOW);
        assert!(matches!(
            q.decide(&ui(Verdict::Approve, ""), &skip(), &manual(), NOW),
            Err(Refused::OutsidePolicy { .. })
        ));
        let nobody = DecisionRequest {
            verdict: Verdict::Approve,
            by: Decider::Trader { user: " ".into(), channel: Channel::Ui },
            reason: String::new(),
        };
        assert_eq!(
            q.decide(&nobody, &accept(), &manual(), NOW).map_err(|e| e.to_string()),
            Err("refused: a decision needs the deciding user's id".into())
        );
    }
}

//! Remote approvals, the node's half (issue 17 part 5): a signal from the hub that waits for the
//! trader is announced to the hub as a signed [`Pending`] (while `approval.remote_approval` is
//! on and the node is enrolled), and a verified hub [`ApprovalRequest`] is decided through the
//! same path as a UI decision — the policy re-evaluated now, [`PendingApproval::decide`] with a
//! remote [`DecisionRequest`] — then answered with a signed [`RequestAnswer`] (`applied`, or
//! `refused` with one of the fixed reasons), the approval signed with
//! `decided_by: Remote{request_id}` and the lots chosen, and on approval the orders queued.
//!
//! Everything here runs inside the write that commits the feed item (or the signal's intake),
//! so a crash either redoes the item whole after the hub resends it or finds it done: the
//! request row's `answered` is set in the same transaction as the answer record. No clock and
//! no randomness of its own: the time comes in as `now_ms` (wall, record stamps) and the
//! account's market clock from the evaluation.
//!
//! [`PendingApproval::decide`]: crate::policy::approval::PendingApproval::decide

use rust_decimal::Decimal;
use tradecast_protocol::{
    AnswerOutcome, ApprovalRequest, Body, DecidedBy, Decision, Pending, RefusalReason,
    RemoteDecision, RequestAnswer, RiskPreview, StreamId,
};

use crate::policy::approval::{ApprovalState, Decider, DecisionRequest, Refused, Verdict};
use crate::policy::copy_log::CopyLogEntry;
use crate::policy::{self, PolicySettings};
use crate::store::{self, StoreError};

use super::intake::{HUB_SOURCE, plan_gate_in};
use super::rows::{AccountRow, ApprovalRow, SignalRow};
use super::{AccountMem, Node};

/// The stable code of a policy skip, for a [`Pending`]'s `blocking` list and a refusal.
pub fn skip_code(reason: &policy::SkipReason) -> &'static str {
    refusal_of_skip(reason).as_str()
}

/// The fixed refusal reason of a policy skip at decision time: an expiry or a stale signal is
/// `expired`, a closed market `market_closed`, a price drift `price_moved`, and every other rule
/// that refuses the approval now (risk limits, the guard, sizing, symbol or trade mode) `risk`.
pub fn refusal_of_skip(reason: &policy::SkipReason) -> RefusalReason {
    use policy::SkipReason as S;
    match reason {
        S::Expired { .. } | S::TooOld { .. } => RefusalReason::Expired,
        S::MarketClosed { .. } => RefusalReason::MarketClosed,
        S::PriceMovedPoints { .. } | S::PriceMovedFraction { .. } => RefusalReason::PriceMoved,
        _ => RefusalReason::Risk,
    }
}

/// The lot range the trader's rules allow for `plan` (inclusive): from the larger of the
/// broker's minimum for each leg and the trader's `lot_min`, to the lots the policy sized (its
/// lot mode, `lot_max` and risk limit already applied: a remote press may ask for less, never
/// more). Without the symbol's spec, only the sized lots.
pub fn lot_range(
    plan: &policy::OrderPlan,
    spec: Option<&tradecast_protocol::ea::SymbolSpec>,
    lot_min: Option<Decimal>,
) -> (Decimal, Decimal) {
    let legs = Decimal::from(plan.legs.len().max(1));
    match spec {
        Some(s) => {
            let min = (s.volume_min * legs).max(lot_min.unwrap_or(Decimal::ZERO));
            (min.min(plan.volume), plan.volume)
        }
        None => (plan.volume, plan.volume),
    }
}

/// `plan` resized to `lots` (each leg its share, rounded down to the volume step); `None` when
/// `lots` is outside [`lot_range`] or a leg would fall below the broker's minimum.
pub fn plan_with_lots(
    plan: &policy::OrderPlan,
    lots: Decimal,
    spec: Option<&tradecast_protocol::ea::SymbolSpec>,
    lot_min: Option<Decimal>,
) -> Option<policy::OrderPlan> {
    let (min, max) = lot_range(plan, spec, lot_min);
    if lots < min || lots > max || plan.volume <= Decimal::ZERO {
        return None;
    }
    if lots == plan.volume {
        return Some(plan.clone());
    }
    let spec = spec?;
    if spec.volume_step <= Decimal::ZERO {
        return None;
    }
    let n = Decimal::from(plan.legs.len().max(1));
    let share = lots.checked_div(n)?.checked_div(spec.volume_step)?.floor() * spec.volume_step;
    if share < spec.volume_min {
        return None;
    }
    let mut out = plan.clone();
    for leg in &mut out.legs {
        leg.volume = share;
    }
    out.volume = out.legs.iter().map(|l| l.volume).sum();
    out.risk_money = (plan.risk_money * out.volume).checked_div(plan.volume)?.round_dp(2);
    Some(out)
}

impl Node {
    /// After a hub signal's intake: when it waits for the trader, remote approval is on and
    /// this node is enrolled, signs its [`Pending`] into the shared stream (once per signal: the
    /// intake runs once per signal id). `market_ms` is the account's market clock the intake
    /// evaluated at, `now_ms` the wall clock. Returns whether it did.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pending_in(
        &self,
        tx: &mut store::Tx<'_>,
        source: &str,
        arow: &ApprovalRow,
        evaluation: &policy::Evaluation,
        settings: &PolicySettings,
        market_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        if source != HUB_SOURCE
            || !settings.approval.remote_approval
            || arow.pending.decided().is_some()
            || crate::store::hub_pin::pinned_hub_key(tx)?.is_none()
        {
            return Ok(false);
        }
        let acc = tx.get_json::<AccountRow>(store::ACCOUNTS, "accounts", &arow.account)?;
        let (min_lots, max_lots, risk_preview, blocking) = match &evaluation.outcome {
            policy::Outcome::Accept(plan) => {
                let spec = match &acc {
                    Some(_) => tx.symbol_spec(&arow.account, &plan.symbol)?,
                    None => None,
                };
                let (min, max) = lot_range(plan, spec.as_ref(), settings.lot_min);
                let preview = acc.as_ref().and_then(|a| {
                    let equity = a.equity.filter(|e| *e > Decimal::ZERO)?;
                    let pct = (plan.risk_money * Decimal::ONE_HUNDRED).checked_div(equity)?;
                    Some(RiskPreview {
                        lots: plan.volume,
                        risk_money: plan.risk_money,
                        risk_percent: pct.round_dp(2),
                        currency: a.currency.clone(),
                    })
                });
                (min, max, preview, Vec::new())
            }
            policy::Outcome::Skip(reason) => {
                (Decimal::ZERO, Decimal::ZERO, None, vec![skip_code(reason).to_owned()])
            }
        };
        let pending = Pending {
            signal_id: arow.pending.signal_id,
            device: self.identity.device_id(),
            // The deadline on the wall clock the hub and its buttons keep: the time the signal
            // has left on the market clock, from now (the same instant live, where the terminal's
            // clock is UTC; still right when the market clock is a replay's).
            expires_at_ms: now_ms
                .saturating_add(arow.pending.expires_at_ms.saturating_sub(market_ms).max(0)),
            min_lots,
            max_lots,
            risk_preview,
            blocking,
            at_ms: now_ms,
        };
        tx.append_record(&self.identity, StreamId::SHARED, &Body::Pending(pending), now_ms)?;
        tracing::info!(target: "tradecast::policy", account = %arow.account,
            signal_id = %arow.pending.signal_id.to_hex(), %min_lots, %max_lots,
            "pending signal announced for remote approval");
        Ok(true)
    }

    /// Decides a verified hub request just stored (`held`, not answered yet) and answers it:
    /// the approval (if one was made) and the [`RequestAnswer`] signed, `held.answered` set, a
    /// copy-log line saying where the decision came from, all in `tx`. `account`/`mem` are the
    /// feed's account and its live state (quotes, market clock).
    pub(super) fn answer_request_in(
        &self,
        tx: &mut store::Tx<'_>,
        held: &mut store::StoredRequest,
        account: Option<&str>,
        mem: Option<&AccountMem>,
        now_ms: i64,
    ) -> Result<AnswerOutcome, StoreError> {
        let req = held.request.clone();
        let (outcome, line) = self.remote_decide_in(tx, &req, account, mem, now_ms)?;
        held.answered = Some(outcome);
        tx.put_hub_request(held)?;
        let answer = RequestAnswer {
            request_id: req.request_id,
            signal_id: req.signal_id,
            device: self.identity.device_id(),
            outcome,
            at_ms: now_ms,
        };
        tx.append_record(&self.identity, StreamId::SHARED, &Body::RequestAnswer(answer), now_ms)?;
        let hex = req.signal_id.to_hex();
        let srow = tx.get_json::<SignalRow>(store::SIGNALS, "signals", &hex)?;
        let market = match tx.get_json::<ApprovalRow>(store::APPROVALS, "approvals", &hex)? {
            Some(a) => self.account_market_in(tx, &a.account, None)?,
            None => 0,
        };
        let entry = CopyLogEntry {
            at_ms: market,
            signal_id: req.signal_id,
            canonical_symbol: srow.map(|s| s.signal.symbol).unwrap_or_default(),
            accepted: outcome == AnswerOutcome::Applied && req.decision == RemoteDecision::Approved,
            failed_rule: None,
            line: line.clone(),
            steps: Vec::new(),
        };
        let key = format!("{:020}:{hex}:remote:{}", market.max(0), req.request_id);
        tx.put_json(store::COPY_LOG, "copy_log", &key, &entry)?;
        tracing::info!(target: "tradecast::policy", request_id = %req.request_id, signal_id = %hex,
            outcome = outcome.as_str(), line = %line, "remote request answered");
        Ok(outcome)
    }

    /// The decision itself: the outcome and the copy-log line in the trader's words.
    fn remote_decide_in(
        &self,
        tx: &mut store::Tx<'_>,
        req: &ApprovalRequest,
        account: Option<&str>,
        mem: Option<&AccountMem>,
        now_ms: i64,
    ) -> Result<(AnswerOutcome, String), StoreError> {
        let via = req.channel.as_str();
        let what = match req.decision {
            RemoteDecision::Approved => "approval",
            RemoteDecision::Rejected => "rejection",
        };
        let refused = |reason: RefusalReason, why: String| {
            Ok((
                AnswerOutcome::Refused(reason),
                format!("refused remote {what} via {via} ({}): {why}", reason.as_str()),
            ))
        };
        if now_ms >= req.expires_at_ms {
            return refused(RefusalReason::Expired, "the request expired".into());
        }
        let hex = req.signal_id.to_hex();
        let (Some(mut arow), Some(srow)) = (
            tx.get_json::<ApprovalRow>(store::APPROVALS, "approvals", &hex)?,
            tx.get_json::<SignalRow>(store::SIGNALS, "signals", &hex)?,
        ) else {
            return refused(RefusalReason::NotPending, "no such signal waits here".into());
        };
        if let Some(a) = arow.pending.decided() {
            let reason = if a.decision == Decision::Expired {
                RefusalReason::Expired
            } else {
                RefusalReason::NotPending
            };
            return refused(reason, format!("the signal was already decided ({})", a.reason));
        }
        let settings = self.policy_in(tx)?;
        if !settings.approval.remote_approval {
            return refused(RefusalReason::RemoteOff, "remote approval is off on this node".into());
        }
        let mem = mem.filter(|_| account == Some(arow.account.as_str()));
        let gate = plan_gate_in(tx, &srow.source, now_ms)?;
        let acc_name = arow.account.clone();
        let Some((mut evaluation, market)) = self.evaluate_in(
            tx,
            &acc_name,
            &srow.signal,
            arow.provider_lots,
            &settings,
            gate,
            mem,
        )?
        else {
            return refused(RefusalReason::NotPending, format!("no account {acc_name}"));
        };
        let verdict = match req.decision {
            RemoteDecision::Approved => Verdict::Approve,
            RemoteDecision::Rejected => Verdict::Reject,
        };
        if verdict == Verdict::Approve
            && let (Some(lots), policy::Outcome::Accept(plan)) = (req.lots, &evaluation.outcome)
        {
            // The account exists: the evaluation above found it.
            let spec = tx.symbol_spec(&acc_name, &plan.symbol)?;
            let spec = spec.as_ref();
            match plan_with_lots(plan, lots, spec, settings.lot_min) {
                Some(resized) => evaluation.outcome = policy::Outcome::Accept(resized),
                None => {
                    let (min, max) = lot_range(plan, spec, settings.lot_min);
                    return refused(
                        RefusalReason::LotsOutOfRange,
                        format!("{lots} lots asked, the rules allow {min} to {max}"),
                    );
                }
            }
        }
        let user = match req.telegram_user_id {
            Some(id) => format!("telegram:{id}"),
            None => format!("{via}:remote"),
        };
        let request = DecisionRequest {
            verdict,
            by: Decider::Remote { user, via: via.to_owned() },
            reason: String::new(),
        };
        let decided =
            arow.pending.decide(&request, &evaluation.outcome, &settings.approval, market).cloned();
        match decided {
            Ok(mut approval) => {
                approval.decided_by = DecidedBy::Remote { request_id: req.request_id };
                arow.pending.state = ApprovalState::Decided(approval);
                self.settle_in(tx, &mut arow, &evaluation, now_ms)?;
                let lots = arow
                    .pending
                    .decided()
                    .and_then(|a| a.lots)
                    .map(|l| format!(" ({l} lots)"))
                    .unwrap_or_default();
                let word = match verdict {
                    Verdict::Approve => "approved",
                    Verdict::Reject => "rejected",
                };
                Ok((AnswerOutcome::Applied, format!("{word} by remote request via {via}{lots}")))
            }
            Err(e) => {
                // An expiry found on the way is recorded and signed like the UI's.
                if arow.pending.decided().is_some() {
                    let none = policy::Evaluation {
                        outcome: evaluation.outcome.clone(),
                        steps: Vec::new(),
                        auto_suspended: false,
                    };
                    self.settle_in(tx, &mut arow, &none, now_ms)?;
                }
                let reason = match &e {
                    Refused::AlreadyDecided { .. } | Refused::NoUser => RefusalReason::NotPending,
                    Refused::Expired { .. } => RefusalReason::Expired,
                    Refused::RemoteDisabled => RefusalReason::RemoteOff,
                    Refused::OutsidePolicy { .. } => match &evaluation.outcome {
                        policy::Outcome::Skip(s) => refusal_of_skip(s),
                        policy::Outcome::Accept(_) => RefusalReason::Risk,
                    },
                };
                refused(reason, e.to_string())
            }
        }
    }
}

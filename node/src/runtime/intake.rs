//! Signal intake: a signal (made here, handed in, or from the feed) stored and run through the
//! copy policy (the copy log, the approval, and on approval its orders), decisions, expiries and
//! the trader's saved policy.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use tradecast_protocol::ea;
use tradecast_protocol::{Body, Pending, Record, RequestAnswer, StreamId};

use crate::policy::approval::{ApprovalState, DecisionRequest, PendingApproval, PlanGate};
use crate::policy::copy_log::CopyLogEntry;
use crate::policy::{self, PolicySettings};
use crate::store::{self, StoreError};

use super::rows::{AccountRow, ApprovalRow, OrderAction, OrderRow, PositionRow, SignalRow};
use super::{AccountMem, Node, NodeError, new_order_id};
use crate::clock::wall_ms;

/// The settings key of the trader's saved policy (JSON).
pub(super) const POLICY_KEY: &str = "policy";

/// One leg of a plan as the EA's order (what [`policy::OrderPlan::ea_order`] does, for a leg
/// already in hand).
fn leg_order(plan: &policy::OrderPlan, leg: policy::PlannedLeg, id: &str, no: u32) -> ea::Order {
    ea::Order {
        order_id: id.to_owned(),
        order_no: no,
        symbol: plan.symbol.clone(),
        kind: plan.kind,
        volume: leg.volume,
        price: Some(plan.price),
        sl: leg.sl,
        tp: leg.tp,
        max_slippage_points: plan.max_slippage_points,
        expiration_ms: (!plan.kind.is_market()).then_some(plan.expires_at_ms),
    }
}

/// The plan gate of a signal from `source` (`hub`: the verified grants in force at the wall
/// clock `now_ms` decide; anything else is local and no plan applies).
pub(super) fn plan_gate_in(
    tx: &store::Tx<'_>,
    source: &str,
    now_ms: i64,
) -> Result<PlanGate, StoreError> {
    if source == HUB_SOURCE {
        Ok(PlanGate::for_hub_signal(&tx.feature_grants_at(now_ms)?, now_ms))
    } else {
        Ok(PlanGate::NotApplicable)
    }
}

/// The `source` of a signal taken in from the hub's feed.
pub(super) const HUB_SOURCE: &str = "hub";

impl Node {
    /// Signs and appends a signal; when `execute`, the copy policy evaluates it on the account
    /// (the copy log records every step), its approval starts (auto mode decides at once, manual
    /// mode waits until the expiry) and an approved plan is queued. `volume` is the provider's
    /// lot (the multiplier lot mode scales it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        signal: tradecast_protocol::Signal,
        source: &str,
        execute: bool,
        volume: Option<Decimal>,
        mem: Option<&AccountMem>,
        now_ms: i64,
    ) -> Result<SignalRow, StoreError> {
        tx.append_record(&self.identity, StreamId::SIGNALS, &Body::Signal(signal.clone()), now_ms)?;
        self.take_in(tx, account, signal, source, execute, volume, mem, now_ms)
    }

    /// Stores a signal (made here or received) and, when `execute`, runs the policy on it for
    /// `account`: the copy log, the approval, and on approval the orders.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn take_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        signal: tradecast_protocol::Signal,
        source: &str,
        execute: bool,
        volume: Option<Decimal>,
        mem: Option<&AccountMem>,
        now_ms: i64,
    ) -> Result<SignalRow, StoreError> {
        let mut row = SignalRow {
            signal: signal.clone(),
            source: source.to_owned(),
            order_id: None,
            skipped: String::new(),
            provider_closed_at_ms: None,
        };
        tx.put_json(store::SIGNALS, "signals", &signal.id.to_hex(), &row)?;
        if execute {
            let policy = self.policy_in(tx)?;
            let plan = plan_gate_in(tx, source, now_ms)?;
            match self.evaluate_in(tx, account, &signal, volume, &policy, plan, mem)? {
                None => row.skipped = format!("skipped: no account {account}"),
                Some((evaluation, market)) => {
                    let pending = PendingApproval::start(
                        signal.id,
                        self.identity.device_id(),
                        signal.expires_at_ms,
                        &evaluation,
                        &policy.approval,
                        market,
                    );
                    let mut arow = ApprovalRow {
                        account: account.to_owned(),
                        provider_lots: volume,
                        pending,
                        line: evaluation.log_line(),
                    };
                    if let policy::Outcome::Skip(_) = &evaluation.outcome {
                        row.skipped = evaluation.log_line();
                    }
                    tracing::info!(target: "tradecast::policy", %account, signal_id = %signal.id.to_hex(), line = %arow.line, "copy log");
                    self.settle_in(tx, &mut arow, &evaluation, now_ms)?;
                    // Waiting for the trader with remote approval on: the hub is told, in this
                    // same write (once per signal: the intake runs once per signal id).
                    self.pending_in(tx, source, &arow, &evaluation, &policy, market, now_ms)?;
                    row =
                        tx.get_json(store::SIGNALS, "signals", &signal.id.to_hex())?.unwrap_or(row);
                    if let policy::Outcome::Skip(_) = &evaluation.outcome {
                        row.skipped = evaluation.log_line();
                    }
                }
            }
        }
        tx.put_json(store::SIGNALS, "signals", &signal.id.to_hex(), &row)?;
        Ok(row)
    }

    /// The policy in force: the one the trader saved, else the configured one.
    pub(super) fn policy_in(&self, tx: &store::Tx<'_>) -> Result<PolicySettings, StoreError> {
        match tx.setting(POLICY_KEY)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Row { table: "settings", message: e.to_string() }),
            None => Ok(self.settings.policy.clone()),
        }
    }

    /// Evaluates `signal` for `account` now (market clock) and writes the copy-log entry; `None`
    /// when the account is unknown.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn evaluate_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        signal: &tradecast_protocol::Signal,
        provider_lots: Option<Decimal>,
        settings: &PolicySettings,
        plan: PlanGate,
        mem: Option<&AccountMem>,
    ) -> Result<Option<(policy::Evaluation, i64)>, StoreError> {
        let Some(acc) = tx.get_json::<AccountRow>(store::ACCOUNTS, "accounts", account)? else {
            return Ok(None);
        };
        let market = acc.market_ms.max(mem.map(|m| m.market_ms).unwrap_or(0));
        let mut open_symbols: Vec<String> = tx
            .positions::<PositionRow>(account)?
            .into_iter()
            .filter(|p| p.open)
            .map(|p| p.symbol)
            .collect();
        for o in tx.orders::<OrderRow>(account)? {
            if let OrderAction::Open(x) = &o.action
                && !o.state.is_final()
            {
                open_symbols.push(x.symbol.clone());
            }
        }
        open_symbols.extend(acc.pending_orders.iter().map(|o| o.symbol.clone()));
        let quotes: BTreeMap<String, crate::orders::Quote> = mem
            .map(|m| m.quotes.iter().map(|(k, (_, q))| (k.clone(), *q)).collect())
            .unwrap_or_default();
        let equity = acc.equity.unwrap_or_default();
        let tick_values: Vec<ea::TickValue> =
            acc.tick_values.values().map(|(_, tv)| tv.clone()).collect();
        // The stored day start as it is: yesterday's is stale and the daily loss rule says so.
        let day_start = acc.day_start;
        // The policy looks up the spec of the signal's broker symbol only: that one is read.
        let broker = settings.symbols.broker_name(&signal.symbol);
        let specs: Vec<ea::SymbolSpec> = tx.symbol_spec(account, &broker)?.into_iter().collect();
        let input = policy::EvaluationInput {
            signal,
            provider_lots,
            specs: &specs,
            tick_values: &tick_values,
            quotes: &quotes,
            balance: acc.balance.unwrap_or_default(),
            equity,
            peak_equity: acc.peak_equity.unwrap_or(equity),
            guard_locked: acc.locked,
            plan,
            day_start,
            open_symbols: &open_symbols,
            now_ms: market,
            server_utc_offset_s: acc.server_utc_offset_s,
            calendar: &self.settings.calendar,
        };
        let evaluation = policy::evaluate(settings, &input);
        let entry = CopyLogEntry::new(signal, &evaluation, market);
        let key = format!("{:020}:{}", market.max(0), signal.id.to_hex());
        tx.put_json(store::COPY_LOG, "copy_log", &key, &entry)?;
        Ok(Some((evaluation, market)))
    }

    /// After an approval step: a new decision is signed into the outbox (shared stream); an
    /// approval queues the plan's orders. Stores the approval row.
    pub(super) fn settle_in(
        &self,
        tx: &mut store::Tx<'_>,
        arow: &mut ApprovalRow,
        evaluation: &policy::Evaluation,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let hex = arow.pending.signal_id.to_hex();
        if let Some(a) = arow.pending.decided() {
            let mut a = a.clone();
            // The lots actually chosen: the plan's total when it is approved and queued.
            if a.decision == tradecast_protocol::Decision::Approved
                && a.lots.is_none()
                && let policy::Outcome::Accept(plan) = &evaluation.outcome
            {
                a.lots = Some(plan.volume);
                arow.pending.state = ApprovalState::Decided(a.clone());
            }
            tx.append_record(&self.identity, StreamId::SHARED, &Body::Approval(a.clone()), now_ms)?;
            tracing::info!(target: "tradecast::policy", account = %arow.account, signal_id = %hex, decision = ?a.decision, reason = %a.reason, "approval");
            if a.decision == tradecast_protocol::Decision::Approved
                && let policy::Outcome::Accept(plan) = &evaluation.outcome
            {
                let mut first = None;
                for (i, leg) in plan.legs.iter().enumerate() {
                    let order_id = new_order_id()
                        .map_err(|e| StoreError::Row { table: "orders", message: e.to_string() })?;
                    let (signal_id, expires) = (plan.signal_id, plan.expires_at_ms);
                    let (plan, leg) = (plan.clone(), *leg);
                    let o = self.queue_in(
                        tx,
                        &arow.account,
                        &order_id,
                        move |id, no| OrderAction::Open(leg_order(&plan, leg, id, no)),
                        Some(signal_id),
                        Some(expires),
                    )?;
                    tracing::debug!(target: "tradecast::orders", leg = i, order_id = %o.order_id, "leg queued");
                    first.get_or_insert(o.order_id);
                }
                if let Some(mut srow) = tx.get_json::<SignalRow>(store::SIGNALS, "signals", &hex)? {
                    srow.order_id = first;
                    tx.put_json(store::SIGNALS, "signals", &hex, &srow)?;
                }
            }
        }
        tx.put_json(store::APPROVALS, "approvals", &hex, &*arow)?;
        Ok(())
    }

    /// Records `Expired` for every signal of `account` still waiting past its expiry (market
    /// clock), each signed into the outbox.
    pub(super) fn expire_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        market: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let policy = self.policy_in(tx)?;
        let rows: Vec<ApprovalRow> = tx.all_json(store::APPROVALS, "approvals")?;
        for mut r in rows {
            if r.account != account || r.pending.decided().is_some() {
                continue;
            }
            if r.pending.expire(market, &policy.approval).is_some() {
                let none = policy::Evaluation {
                    outcome: policy::Outcome::Skip(policy::SkipReason::Expired {
                        expires_at_ms: r.pending.expires_at_ms,
                        now_ms: market,
                    }),
                    steps: Vec::new(),
                    auto_suspended: false,
                };
                self.settle_in(tx, &mut r, &none, now_ms)?;
            }
        }
        Ok(())
    }

    /// The trader's (or a relayed) decision on a waiting signal: re-evaluated under the policy
    /// now, signed, and on approval its orders queued. A refused decision is an error with the
    /// trader's words; an expiry found on the way is still recorded.
    pub fn decide(
        &self,
        signal_hex: &str,
        request: &DecisionRequest,
    ) -> Result<tradecast_protocol::Approval, NodeError> {
        let inner = self.lock();
        let now_ms = wall_ms();
        let result = self.store.write(|tx| {
            let Some(mut arow) =
                tx.get_json::<ApprovalRow>(store::APPROVALS, "approvals", signal_hex)?
            else {
                return Ok(Err(NodeError::UnknownSignal(signal_hex.to_owned())));
            };
            let Some(srow) = tx.get_json::<SignalRow>(store::SIGNALS, "signals", signal_hex)?
            else {
                return Ok(Err(NodeError::UnknownSignal(signal_hex.to_owned())));
            };
            let policy = self.policy_in(tx)?;
            let mem = inner.accounts.get(&arow.account);
            let was_waiting = arow.pending.decided().is_none();
            let evaluation = if was_waiting {
                let plan = plan_gate_in(tx, &srow.source, now_ms)?;
                self.evaluate_in(
                    tx,
                    &arow.account.clone(),
                    &srow.signal,
                    arow.provider_lots,
                    &policy,
                    plan,
                    mem,
                )?
            } else {
                None
            };
            let market = match &evaluation {
                Some((_, m)) => *m,
                None => self.account_market_in(tx, &arow.account, mem)?,
            };
            let outcome =
                evaluation.as_ref().map(|(e, _)| e.outcome.clone()).unwrap_or_else(|| {
                    policy::Outcome::Skip(policy::SkipReason::UnknownAccount {
                        account: arow.account.clone(),
                    })
                });
            let decided = arow.pending.decide(request, &outcome, &policy.approval, market).cloned();
            let newly = was_waiting && arow.pending.decided().is_some();
            if newly {
                let ev = evaluation.map(|(e, _)| e).unwrap_or(policy::Evaluation {
                    outcome,
                    steps: Vec::new(),
                    auto_suspended: false,
                });
                self.settle_in(tx, &mut arow, &ev, now_ms)?;
            }
            // The approval as signed: with the lots `settle_in` filled in.
            let decided = decided.map(|a| arow.pending.decided().cloned().unwrap_or(a));
            Ok(decided.map_err(NodeError::Decision))
        })?;
        drop(inner);
        self.wake();
        result
    }

    pub(super) fn account_market_in(
        &self,
        tx: &store::Tx<'_>,
        account: &str,
        mem: Option<&AccountMem>,
    ) -> Result<i64, StoreError> {
        let acc = tx.get_json::<AccountRow>(store::ACCOUNTS, "accounts", account)?;
        Ok(acc.map(|a| a.market_ms).unwrap_or(0).max(mem.map(|m| m.market_ms).unwrap_or(0)))
    }

    /// The policy in force.
    pub fn policy(&self) -> Result<PolicySettings, NodeError> {
        Ok(self.policy_of(&self.store.read()?)?)
    }

    /// The policy in force as a read view sees it.
    pub(super) fn policy_of(&self, view: &store::View) -> Result<PolicySettings, StoreError> {
        match view.setting(POLICY_KEY)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Row { table: "settings", message: e.to_string() }),
            None => Ok(self.settings.policy.clone()),
        }
    }

    /// Saves the trader's policy (validated first); it applies to the next evaluation.
    pub fn set_policy(&self, settings: &PolicySettings) -> Result<(), NodeError> {
        settings.validate()?;
        let text = serde_json::to_string(settings)
            .map_err(|e| NodeError::Refused(format!("policy settings: {e}")))?;
        let inner = self.lock();
        self.store.write(|tx| {
            let was_remote = self.policy_in(tx)?.approval.remote_approval;
            tx.set_setting(POLICY_KEY, &text)?;
            if settings.approval.remote_approval && !was_remote {
                self.announce_waiting_in(tx, settings, &inner.accounts, wall_ms())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Remote approval just turned on: every hub signal already waiting for the trader is
    /// announced now (its `Pending`, re-evaluated under `settings`), as if it had arrived after.
    fn announce_waiting_in(
        &self,
        tx: &mut store::Tx<'_>,
        settings: &PolicySettings,
        accounts: &std::collections::HashMap<String, AccountMem>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let waiting: Vec<ApprovalRow> = tx.all_json(store::APPROVALS, "approvals")?;
        for arow in waiting.into_iter().filter(|a| a.pending.decided().is_none()) {
            let id = arow.pending.signal_id.to_hex();
            let Some(row) = tx.get_json::<SignalRow>(store::SIGNALS, "signals", &id)? else {
                continue;
            };
            if row.source != HUB_SOURCE {
                continue;
            }
            let plan = plan_gate_in(tx, &row.source, now_ms)?;
            let mem = accounts.get(&arow.account);
            let evaluated = self.evaluate_in(
                tx,
                &arow.account,
                &row.signal,
                arow.provider_lots,
                settings,
                plan,
                mem,
            )?;
            if let Some((evaluation, market)) = evaluated {
                self.pending_in(tx, &row.source, &arow, &evaluation, settings, market, now_ms)?;
            }
        }
        Ok(())
    }

    /// What the trader consented to publish unsealed on the published stream, per data kind
    /// (closed trades, equity points, balance operations, daily summaries); all off by default,
    /// when they stay sealed in the private stream.
    pub fn publish_consent(&self) -> Result<store::PublishConsent, NodeError> {
        Ok(self.store.read()?.publish_consent()?)
    }

    /// Sets the consent for the history recorded from now on (records already signed stay
    /// where they are).
    pub fn set_publish_consent(&self, consent: store::PublishConsent) -> Result<(), NodeError> {
        let _inner = self.lock();
        self.store.write(|tx| tx.set_publish_consent(consent))?;
        tracing::info!(target: "tradecast::publish", ?consent, "publishing consent changed");
        Ok(())
    }

    /// Signs one piece of account history (`TradeClosed`, `EquityPoint`, `BalanceOperation`,
    /// `Summary`) where [`Node::publish_consent`] puts it: published unsealed, or sealed in the
    /// private stream. Any other kind is refused.
    pub fn record_history(&self, body: &Body) -> Result<Record, NodeError> {
        let _inner = self.lock();
        Ok(self.store.write(|tx| tx.append_history(&self.identity, body, wall_ms()))?)
    }

    /// The copy log, oldest first.
    pub fn copy_log(&self) -> Result<Vec<CopyLogEntry>, NodeError> {
        Ok(self.store.read()?.all_json(store::COPY_LOG, "copy_log")?)
    }

    /// Every signal's approval.
    pub fn approvals(&self) -> Result<Vec<ApprovalRow>, NodeError> {
        Ok(self.store.read()?.all_json(store::APPROVALS, "approvals")?)
    }

    /// A signal handed in through the local API: signed by this node, and executed on the
    /// account when `execute`.
    pub fn submit_signal(
        &self,
        account: &str,
        signal: tradecast_protocol::Signal,
        execute: bool,
        volume: Option<Decimal>,
    ) -> Result<SignalRow, NodeError> {
        let inner = self.lock();
        let mem = inner.accounts.get(account);
        let row = self.store.write(|tx| {
            self.publish_in(tx, account, signal, "api", execute, volume, mem, wall_ms())
        })?;
        drop(inner);
        self.wake();
        Ok(row)
    }
    /// Signs a [`Pending`] (what Telegram and the Mini App show before a press) into the shared
    /// stream. Its `device` must be this node. Written only while remote approval is on: the
    /// intake signs one itself for a hub signal that waits ([`super::remote`]); this is for tools.
    pub fn record_pending(&self, pending: &Pending) -> Result<Record, NodeError> {
        if pending.device != self.identity.device_id() {
            return Err(NodeError::Refused("a pending signal of another device".into()));
        }
        let _inner = self.lock();
        let body = Body::Pending(pending.clone());
        Ok(self
            .store
            .write(|tx| tx.append_record(&self.identity, StreamId::SHARED, &body, wall_ms()))?)
    }

    /// Signs this node's [`RequestAnswer`] to a hub request into the shared stream and marks
    /// the stored request answered, in one transaction; the request must be one this node
    /// holds ([`Node::pending_requests`]) and not answered yet.
    pub fn record_request_answer(&self, answer: &RequestAnswer) -> Result<Record, NodeError> {
        if answer.device != self.identity.device_id() {
            return Err(NodeError::Refused("an answer in another device's name".into()));
        }
        let _inner = self.lock();
        let body = Body::RequestAnswer(answer.clone());
        self.store.write(|tx| {
            let Some(mut held) = tx.hub_request(&answer.request_id)? else {
                return Ok(Err(NodeError::Refused(format!(
                    "no hub request {} on this node",
                    answer.request_id
                ))));
            };
            if held.answered.is_some() || held.request.signal_id != answer.signal_id {
                return Ok(Err(NodeError::Refused(format!(
                    "hub request {} is already answered or names another signal",
                    answer.request_id
                ))));
            }
            held.answered = Some(answer.outcome);
            tx.put_hub_request(&held)?;
            Ok(Ok(tx.append_record(&self.identity, StreamId::SHARED, &body, wall_ms())?))
        })?
    }
}

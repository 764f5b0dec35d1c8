//! The downstream feed (issue 9): records relayed by the hub, committed with what they cause
//! (provider keys pinned, signals taken in, modifications and closes followed, receipts kept).

use crate::policy::approval::PlanGate;
use rust_decimal::Decimal;
use tradecast_protocol::ea;
use tradecast_protocol::session::Source;
use tradecast_protocol::{
    AnswerOutcome, Body, DeviceId, FeatureGrant, GrantId, HubRequest, HubRequestError, Kind,
    RequestId, SignalId, StreamId, verify_hub_request,
};

use crate::policy;
use crate::policy::copy_log::CopyLogEntry;
use crate::store::{self, StoreError};

use super::rows::{ApprovalRow, OrderAction, OrderRow, OrderState, PositionRow, SignalRow};
use super::{AccountMem, Node, NodeError, new_order_id};
use crate::clock::wall_ms;

/// What one committed feed item did (for the sync driver's log and the demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedOutcome {
    /// An author's key was pinned (trusted, or waiting for the trader).
    Pinned { device: DeviceId, trusted: bool },
    /// A provider's signal was taken in: the copy-log line says what the policy decided.
    Signal { signal_id: SignalId, line: String },
    /// A provider's modification or close was applied to the copies (one line per copy).
    Followed { signal_id: SignalId, lines: Vec<String> },
    /// The hub's receipt for one of this node's records, verified and kept.
    Receipt { stream: StreamId, seq: u64 },
    /// A hub-signed approval request for this device, verified, stored, decided under the
    /// policy and answered (the signed `RequestAnswer`'s outcome), in the same write.
    Request { request_id: RequestId, answer: AnswerOutcome },
    /// A hub-signed feature grant for this device, verified and stored (or superseding an
    /// older issue of the same id).
    Grant { grant_id: GrantId },
    /// A hub-signed item refused (kept in the feed and in `hub_refusals`, acknowledged like
    /// every committed item, never acted on), and why.
    Refused(FeedRefusal),
    /// Kept in the feed only, and why.
    Ignored(String),
}

/// Why a hub-signed feed item was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedRefusal {
    /// This node has no pinned hub key to check it against (not enrolled).
    #[error("no pinned hub key to verify a hub request against")]
    NoHubPinned,
    /// The record fails [`verify_hub_request`].
    #[error(transparent)]
    Hub(#[from] HubRequestError),
}

impl FeedRefusal {
    /// A stable code for the store and the logs.
    pub fn code(&self) -> &'static str {
        match self {
            FeedRefusal::NoHubPinned => "no_hub_pinned",
            FeedRefusal::Hub(e) => match e {
                HubRequestError::WrongKind(_) => "wrong_kind",
                HubRequestError::WrongStream(_) => "wrong_stream",
                HubRequestError::WrongSigner { .. } => "wrong_signer",
                HubRequestError::BadSignature(_) => "bad_signature",
                HubRequestError::Decode(_) => "decode",
                HubRequestError::WrongDevice { .. } => "wrong_device",
                HubRequestError::Expired { .. } => "expired",
                _ => "other",
            },
        }
    }
}

impl Node {
    /// Commits feed item `seq` (the hub's relay of `record`, verified by the session against
    /// the author's pinned key) together with everything it causes, in one durable write: a
    /// `DeviceKeys` pins its author; a `Signal` runs the policy (copy log, approval, orders); a
    /// `Modify` or `Close` is applied to this node's copies of that signal. Only after this
    /// returns does the sync driver acknowledge `seq` to the hub, so a crash at any point either
    /// redoes the whole item after the hub resends it or finds it done (seq at or below the
    /// watermark is a duplicate the session drops).
    pub fn receive_feed(
        &self,
        seq: u64,
        record: &tradecast_protocol::Record,
    ) -> Result<FeedOutcome, NodeError> {
        self.receive_from(Source::Inbox, seq, record)
    }

    /// [`Node::receive_feed`] for an item of any downstream source: the device's inbox, or a
    /// provider's relay log (its own cursor and table; hub-signed requests and receipts travel
    /// only in the inbox, so a relay log's copy of one is kept and ignored).
    pub fn receive_from(
        &self,
        source: Source,
        seq: u64,
        record: &tradecast_protocol::Record,
    ) -> Result<FeedOutcome, NodeError> {
        let inner = self.lock();
        let account = inner.accounts.keys().min().cloned();
        let stored_account = match &account {
            Some(a) => Some(a.clone()),
            None => self.accounts()?.into_iter().map(|a| a.account).min(),
        };
        let mem = stored_account.as_ref().and_then(|a| inner.accounts.get(a));
        let now_ms = wall_ms();
        let outcome = self.store.write(|tx| {
            if seq <= tx.source_cursor(source)? {
                return Ok(FeedOutcome::Ignored(format!("{source} item {seq} already committed")));
            }
            tx.put_source_item(source, seq, record)?;
            let inbox_only = matches!(
                record.header().kind,
                Kind::ApprovalRequest | Kind::FeatureGrant | Kind::Receipt
            ) || record.header().stream == StreamId::HUB_REQUESTS;
            if source != Source::Inbox && inbox_only {
                return Ok(FeedOutcome::Ignored(format!(
                    "{source} item {seq}: hub requests and receipts travel in the inbox only"
                )));
            }
            self.feed_item_in(tx, seq, record, stored_account.as_deref(), mem, now_ms)
        })?;
        drop(inner);
        self.wake();
        Ok(outcome)
    }

    fn feed_item_in(
        &self,
        tx: &mut store::Tx<'_>,
        seq: u64,
        record: &tradecast_protocol::Record,
        account: Option<&str>,
        mem: Option<&AccountMem>,
        now_ms: i64,
    ) -> Result<FeedOutcome, StoreError> {
        let author = record.header().author;
        let header = record.header();
        if matches!(header.kind, Kind::ApprovalRequest | Kind::FeatureGrant)
            || header.stream == StreamId::HUB_REQUESTS
        {
            return self.hub_request_in(tx, seq, record, account, mem, now_ms);
        }
        let body = match record.body() {
            Ok(b) => b,
            Err(e) => return Ok(FeedOutcome::Ignored(format!("body does not open: {e}"))),
        };
        if let Body::Receipt(receipt) = &body {
            // The hub's receipt for one of this node's records: kept when it is the pinned
            // hub's signature over exactly that record.
            let hub_key = crate::store::hub_pin::pinned_hub_key(tx)?;
            let f = receipt.fields;
            let own = tx.outbox_record(f.stream, f.seq)?;
            let ok = hub_key.is_some_and(|k| receipt.verify(&k).is_ok())
                && f.author == self.identity.device_id()
                && own.as_ref().is_some_and(|r| receipt.covers(r));
            if ok {
                tx.put_receipt(receipt)?;
                return Ok(FeedOutcome::Receipt { stream: f.stream, seq: f.seq });
            }
            tracing::error!(target: "tradecast::feed", stream = f.stream.0, seq = f.seq,
                "ALARM: a receipt that does not match this node's record (or the pinned hub)");
            return Ok(FeedOutcome::Ignored(format!(
                "receipt for stream {} seq {} does not match the record this node signed",
                f.stream.0, f.seq
            )));
        }
        if let Body::DeviceKeys(keys) = &body {
            if tx.author(&author)?.is_some() {
                return Ok(FeedOutcome::Ignored("author already pinned".into()));
            }
            // The first provider key is trusted on first sight; another one later is an
            // alarm: its signals wait until the trader trusts it.
            let others = tx.authors()?;
            let trusted = others.is_empty();
            tx.put_author(&store::PinnedAuthor {
                key: keys.identity,
                label: keys.label.clone(),
                pinned_at_seq: seq,
                pinned_at_ms: now_ms,
                trusted,
            })?;
            if trusted {
                tracing::info!(target: "tradecast::feed", author = %author.fmt_short(), label = %keys.label, "provider key pinned");
            } else {
                tracing::warn!(target: "tradecast::feed", author = %author.fmt_short(), label = %keys.label,
                    "ALARM: a new provider key; its signals are skipped until you trust it (tradecast-node providers --trust ID)");
            }
            return Ok(FeedOutcome::Pinned { device: author, trusted });
        }
        let trusted = tx.author(&author)?.is_some_and(|a| a.trusted);
        match body {
            Body::Signal(signal) => {
                let signal_id = signal.id;
                let hex = signal_id.to_hex();
                if tx.get_json::<SignalRow>(store::SIGNALS, "signals", &hex)?.is_some() {
                    return Ok(FeedOutcome::Ignored(format!("signal {hex} already taken in")));
                }
                let skip = if !trusted {
                    Some(format!(
                        "skipped: signal signed by a provider key you have not trusted ({})",
                        author.fmt_short()
                    ))
                } else if signal.provider != author {
                    Some("skipped: the signal names another provider than its signer".to_string())
                } else if account.is_none() {
                    Some("skipped: no MT5 account has connected to this node yet".to_string())
                } else {
                    None
                };
                let row = match (skip, account) {
                    (None, Some(account)) => self.take_in(
                        tx,
                        account,
                        signal,
                        super::intake::HUB_SOURCE,
                        true,
                        None,
                        mem,
                        now_ms,
                    )?,
                    (why, _) => {
                        let row = SignalRow {
                            signal,
                            source: super::intake::HUB_SOURCE.into(),
                            order_id: None,
                            skipped: why.unwrap_or_default(),
                            provider_closed_at_ms: None,
                        };
                        tx.put_json(store::SIGNALS, "signals", &hex, &row)?;
                        row
                    }
                };
                let line = if row.skipped.is_empty() {
                    tx.get_json::<ApprovalRow>(store::APPROVALS, "approvals", &hex)?
                        .map(|a| a.line)
                        .unwrap_or_default()
                } else {
                    row.skipped.clone()
                };
                Ok(FeedOutcome::Signal { signal_id, line })
            }
            Body::Modify(m) if trusted => {
                let signal_id = m.signal_id;
                let lines = match account {
                    Some(a) => self.follow_in(tx, a, &Body::Modify(m), now_ms)?,
                    None => Vec::new(),
                };
                Ok(FeedOutcome::Followed { signal_id, lines })
            }
            Body::Close(c) if trusted => {
                let signal_id = c.signal_id;
                let lines = match account {
                    Some(a) => self.follow_in(tx, a, &Body::Close(c), now_ms)?,
                    None => Vec::new(),
                };
                Ok(FeedOutcome::Followed { signal_id, lines })
            }
            Body::Modify(_) | Body::Close(_) => {
                Ok(FeedOutcome::Ignored("a provider key you have not trusted".into()))
            }
            other => {
                Ok(FeedOutcome::Ignored(format!("nothing to do with a {:?} record", other.kind())))
            }
        }
    }

    /// A hub-signed item (a request or a grant, or anything claiming the hub's stream): checked
    /// with [`verify_hub_request`] against the pinned hub key, for this device, at `now_ms`
    /// (wall clock). Accepted items are stored, de-duplicated by id (a grant replaces an older
    /// issue of its id); a refused one is recorded in `hub_refusals` with its reason and
    /// logged as an alarm. Either way the item stays committed in the feed and is acknowledged,
    /// the same policy as a receipt that does not match: a forged item never stops the feed,
    /// and the hub cannot make the node act on it.
    fn hub_request_in(
        &self,
        tx: &mut store::Tx<'_>,
        seq: u64,
        record: &tradecast_protocol::Record,
        account: Option<&str>,
        mem: Option<&AccountMem>,
        now_ms: i64,
    ) -> Result<FeedOutcome, StoreError> {
        let me = self.identity.device_id();
        let verified = match crate::store::hub_pin::pinned_hub_key(tx)? {
            None => Err(FeedRefusal::NoHubPinned),
            Some(key) => verify_hub_request(record, &key, me, now_ms).map_err(FeedRefusal::from),
        };
        let request = match verified {
            Ok(r) => r,
            Err(refusal) => {
                let header = record.header();
                tracing::error!(target: "tradecast::feed", seq, kind = header.kind.name(),
                    author = %header.author.fmt_short(), code = refusal.code(), reason = %refusal,
                    "ALARM: a hub request refused");
                tx.put_hub_refusal(&store::HubRefusalRow {
                    feed_seq: seq,
                    kind: header.kind.name().to_owned(),
                    author: header.author.to_text(),
                    header_hash: record.header_hash().to_hex(),
                    code: refusal.code().to_owned(),
                    reason: refusal.to_string(),
                    at_ms: now_ms,
                })?;
                return Ok(FeedOutcome::Refused(refusal));
            }
        };
        match request {
            HubRequest::Approval(request) => {
                let request_id = request.request_id;
                if tx.hub_request(&request_id)?.is_some() {
                    return Ok(FeedOutcome::Ignored(format!("request {request_id} already held")));
                }
                tracing::info!(target: "tradecast::feed", seq, request_id = %request_id,
                    signal_id = %request.signal_id, channel = request.channel.as_str(),
                    "hub approval request stored");
                let mut held = store::StoredRequest {
                    request,
                    feed_seq: seq,
                    received_at_ms: now_ms,
                    answered: None,
                };
                tx.put_hub_request(&held)?;
                // Decided and answered in this same write (super::remote): a crash before the
                // commit redoes the item whole, after it finds the request answered.
                let answer = self.answer_request_in(tx, &mut held, account, mem, now_ms)?;
                Ok(FeedOutcome::Request { request_id, answer })
            }
            HubRequest::Grant(grant) => {
                let grant_id = grant.grant_id;
                if let Some(held) = tx.feature_grant(&grant_id)?
                    && held.grant.issued_at_ms >= grant.issued_at_ms
                {
                    return Ok(FeedOutcome::Ignored(format!(
                        "grant {grant_id} issued at {} is not newer than the one held",
                        grant.issued_at_ms
                    )));
                }
                tracing::info!(target: "tradecast::feed", seq, grant_id = %grant_id,
                    plan = %grant.plan_id, "feature grant stored");
                tx.put_feature_grant(&store::StoredGrant {
                    grant,
                    feed_seq: seq,
                    received_at_ms: now_ms,
                })?;
                Ok(FeedOutcome::Grant { grant_id })
            }
            _ => Ok(FeedOutcome::Ignored("a hub request of a kind this node does not know".into())),
        }
    }

    /// The hub's approval requests still to act on (not answered, not expired at the wall
    /// clock), oldest first.
    pub fn pending_requests(&self) -> Result<Vec<store::StoredRequest>, NodeError> {
        Ok(self.store.read()?.pending_requests(wall_ms())?)
    }

    /// The feature grants in force at `now_ms` (wall clock, unix ms).
    pub fn feature_grants_at(&self, now_ms: i64) -> Result<Vec<FeatureGrant>, NodeError> {
        Ok(self.store.read()?.feature_grants_at(now_ms)?)
    }

    /// What the trader's plan allows a signal from the hub at `now_ms` (wall clock):
    /// [`PlanGate::NotApplicable`] while this node is not enrolled with a hub.
    pub fn plan_gate_at(&self, now_ms: i64) -> Result<PlanGate, NodeError> {
        let view = self.store.read()?;
        if view.setting(crate::store::hub_pin::SETTING_HUB_ADDR)?.is_none() {
            return Ok(PlanGate::NotApplicable);
        }
        Ok(PlanGate::for_hub_signal(&view.feature_grants_at(now_ms)?, now_ms))
    }

    /// The hub-signed feed items this node refused, in feed order.
    pub fn hub_refusals(&self) -> Result<Vec<store::HubRefusalRow>, NodeError> {
        Ok(self.store.read()?.hub_refusals()?)
    }

    /// Applies a provider's `Modify` or `Close` to this node's copies of its signal (positions
    /// opened from it and still open), queueing one order per copy; orders of the signal not
    /// yet sent are withdrawn by a full close. Returns the copy-log lines.
    fn follow_in(
        &self,
        tx: &mut store::Tx<'_>,
        account: &str,
        body: &Body,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (signal_id, what) = match body {
            Body::Modify(m) => (m.signal_id, "modification"),
            Body::Close(c) => (c.signal_id, "close"),
            _ => return Ok(Vec::new()),
        };
        let hex = signal_id.to_hex();
        let Some(srow) = tx.get_json::<SignalRow>(store::SIGNALS, "signals", &hex)? else {
            return Ok(vec![format!("provider {what} of an unknown signal {hex}: nothing to do")]);
        };
        let policy = self.policy_in(tx)?;
        // Legs in the order they were queued: the first carries tp1, a second tp2.
        let mut legs: Vec<OrderRow> = tx
            .orders::<OrderRow>(account)?
            .into_iter()
            .filter(|o| o.signal_id == Some(signal_id) && matches!(o.action, OrderAction::Open(_)))
            .collect();
        legs.sort_by_key(|o| o.order_no);
        let mut lines = Vec::new();
        let full_close = matches!(body, Body::Close(c) if c.fraction >= Decimal::ONE);
        if full_close && srow.provider_closed_at_ms.is_none() {
            // An order of the signal already offered to the EA may still fill: its position is
            // closed as soon as the fill is recorded (`record_fill`).
            let mut closed = srow.clone();
            closed.provider_closed_at_ms = Some(now_ms);
            tx.put_json(store::SIGNALS, "signals", &hex, &closed)?;
        }
        if full_close {
            for o in &legs {
                if o.state == OrderState::Due {
                    let mut o = o.clone();
                    o.state = OrderState::Expired;
                    o.explained = "withdrawn: the provider closed before it was sent".into();
                    tx.put_order(account, &o.order_id.clone(), &o)?;
                    lines.push(format!(
                        "withdrawn: order {} (the provider closed first)",
                        o.order_id
                    ));
                }
            }
        }
        let copies: Vec<PositionRow> = tx
            .positions::<PositionRow>(account)?
            .into_iter()
            .filter(|p| p.open && p.signal_id == Some(signal_id) && !p.own_signal)
            .collect();
        if copies.is_empty() && lines.is_empty() {
            lines.push(format!("provider {what} of {}: no open copy here", srow.signal.symbol));
        }
        for pos in copies {
            let Some(spec) = tx.symbol_spec(account, &pos.symbol)? else {
                lines.push(format!("not applied: no symbol spec for {}", pos.symbol));
                continue;
            };
            let side = match pos.side {
                ea::Side::Buy => crate::strategy::Side::Buy,
                ea::Side::Sell => crate::strategy::Side::Sell,
            };
            let provider_buy = srow.signal.side == tradecast_protocol::Side::Buy;
            let reversed = (side == crate::strategy::Side::Buy) != provider_buy;
            let leg_index = legs.iter().position(|o| Some(&o.order_id) == pos.order_id.as_ref());
            let target = if leg_index == Some(1) {
                policy::follow::Target::Tp2
            } else {
                policy::follow::Target::Tp1
            };
            let copy = policy::follow::CopiedPosition {
                side,
                reversed,
                target,
                volume: pos.volume,
                sl: pos.sl,
                tp: pos.tp,
            };
            let rules = policy::follow::VolumeRules {
                tick_size: spec.tick_size,
                volume_min: spec.volume_min,
                volume_step: spec.volume_step,
            };
            let action = match body {
                Body::Modify(m) => policy::follow::follow_modify(&policy, m, &copy, &rules),
                Body::Close(c) => policy::follow::follow_close(&policy, c, &copy, &rules),
                _ => continue,
            };
            let order_id = new_order_id().map_err(|e| StoreError::Random(e.to_string()))?;
            let (position_id, symbol) = (pos.position_id, pos.symbol.clone());
            let line = match action {
                policy::follow::FollowAction::Modify { sl, tp } => {
                    self.queue_in(
                        tx,
                        account,
                        &order_id,
                        move |_, _| OrderAction::Modify { position_id, sl, tp },
                        Some(signal_id),
                        None,
                    )?;
                    format!(
                        "followed: provider {what} → {symbol} #{position_id} sl {} tp {}",
                        sl.map_or("none".into(), |v| v.to_string()),
                        tp.map_or("none".into(), |v| v.to_string())
                    )
                }
                policy::follow::FollowAction::Close { volume } => {
                    let v = volume;
                    self.queue_in(
                        tx,
                        account,
                        &order_id,
                        move |_, _| OrderAction::Close {
                            position_id,
                            symbol: symbol.clone(),
                            volume: v,
                        },
                        Some(signal_id),
                        None,
                    )?;
                    match volume {
                        None => format!(
                            "followed: provider closed → closing {} #{position_id} ({} lots)",
                            pos.symbol, pos.volume
                        ),
                        Some(v) => format!(
                            "followed: provider closed part → closing {v} of {} lots of {} #{position_id}",
                            pos.volume, pos.symbol
                        ),
                    }
                }
                policy::follow::FollowAction::Ignore { reason } => reason,
            };
            tracing::info!(target: "tradecast::policy", %account, signal_id = %hex, line = %line, "copy log");
            lines.push(line);
        }
        for line in &lines {
            let entry = CopyLogEntry {
                at_ms: now_ms,
                signal_id,
                canonical_symbol: srow.signal.symbol.clone(),
                accepted: line.starts_with("followed") || line.starts_with("withdrawn"),
                failed_rule: None,
                line: line.clone(),
                steps: Vec::new(),
            };
            let market = self.account_market_in(tx, account, None)?;
            let key = format!(
                "{:020}:{}:{}",
                market.max(0),
                hex,
                lines.iter().position(|l| l == line).unwrap_or(0)
            );
            tx.put_json(store::COPY_LOG, "copy_log", &key, &entry)?;
        }
        Ok(lines)
    }

    /// Pinned feed authors (provider keys) and whether each is trusted.
    pub fn authors(&self) -> Result<Vec<store::PinnedAuthor>, NodeError> {
        Ok(self.store.read()?.authors()?)
    }

    /// Trusts a pinned provider key (after the trader checked it with the provider): its
    /// signals from now on are taken in. Those skipped before stay skipped.
    pub fn trust_author(&self, device: &DeviceId) -> Result<store::PinnedAuthor, NodeError> {
        let _inner = self.lock();
        let pinned = self.store.write(|tx| {
            let Some(mut a) = tx.author(device)? else { return Ok(None) };
            a.trusted = true;
            tx.put_author(&a)?;
            Ok(Some(a))
        })?;
        pinned
            .ok_or_else(|| NodeError::UnknownSignal(format!("no pinned key {}", device.to_text())))
    }
}

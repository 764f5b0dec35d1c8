//! What the local API and the UI read: the status (accounts, the EA link, the sync side) and
//! the rows of an account.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tradecast_protocol::ea::{self, Deal};
use tradecast_protocol::{EquityPoint, StreamId};

use crate::store;

use super::rows::{AccountRow, OrderRow, PositionRow, SignalRow};
use super::{Node, NodeError};

/// What `status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub device_id: String,
    pub mode: String,
    pub self_trade: bool,
    pub started_at_ms: i64,
    pub ea_last_seen_ms: Option<i64>,
    pub link_up: bool,
    pub accounts: Vec<AccountStatus>,
    pub outbox_len: u64,
    /// What this node signed and took in, and its hub link.
    #[serde(default)]
    pub sync: SyncStatus,
}

/// The sync side of [`Status`]: enough for anyone holding the local token to check, against
/// the hub, that nothing this node signed is missing there and nothing sent to it is pending.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncStatus {
    /// This node's identity key, hex: every record it signed verifies against it.
    pub identity_key: String,
    /// Whether the hub session is up; `None` when no sync client runs (not enrolled).
    pub hub_connected: Option<bool>,
    /// The last feed item committed (the hub's feed for this device).
    pub inbox_watermark: u64,
    /// The providers' relay logs this node follows: the last `seq` committed of each.
    #[serde(default)]
    pub relays: Vec<RelayStatus>,
    /// Per stream this node writes: the last `seq` signed and the hub receipts held.
    pub streams: Vec<StreamStatus>,
    /// What of the account's history is published unsealed (the rest is sealed).
    #[serde(default)]
    pub publishing: crate::store::PublishConsent,
}

/// One relay log in [`SyncStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStatus {
    /// `relay:<provider device>`.
    pub source: String,
    /// The last item committed.
    pub committed: u64,
    /// Since when it is quarantined (the hub equivocated on it), unix ms.
    #[serde(default)]
    pub quarantined_at_ms: Option<i64>,
}

/// One stream in [`SyncStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub stream: u32,
    /// The last `seq` this node signed.
    pub tip: u64,
    /// The hub's receipts held (one per record on the signals stream, one per commit batch on
    /// the others).
    pub receipts: u64,
    /// The highest `seq` a hub receipt covers: through the hash chain, it vouches for every
    /// record up to it. Equal to `tip` when the hub holds everything.
    #[serde(default)]
    pub receipted_to: u64,
}

/// One account in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountStatus {
    pub account: String,
    pub balance: Option<Decimal>,
    pub equity: Option<Decimal>,
    pub peak_equity: Option<Decimal>,
    pub equity_floor: Option<Decimal>,
    pub locked: bool,
    pub lock_reason: String,
    pub n_open_positions: usize,
    pub n_open_orders: usize,
    /// When a second EA on this account was last refused (another chart or terminal: it would
    /// execute the same orders), within the last two minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_ea_refused_at_ms: Option<i64>,
}

impl Node {
    /// An account row.
    pub fn account(&self, account: &str) -> Result<Option<AccountRow>, NodeError> {
        Ok(self.store.read()?.get_json(store::ACCOUNTS, "accounts", account)?)
    }

    /// The market clock of an account: the latest terminal time the EA reported.
    pub fn market_ms(&self, account: &str) -> Result<i64, NodeError> {
        let mem = self.lock().accounts.get(account).map(|m| m.market_ms).unwrap_or(0);
        Ok(self.account(account)?.map(|a| a.market_ms).unwrap_or(0).max(mem))
    }

    /// An account's symbol specs (its Market Watch from hello and the `RequestSpec` answers),
    /// by symbol.
    pub fn symbol_specs(&self, account: &str) -> Result<Vec<ea::SymbolSpec>, NodeError> {
        Ok(self.store.read()?.symbol_specs(account)?)
    }

    /// The symbols of an account's specs, by name.
    pub fn symbol_names(&self, account: &str) -> Result<Vec<String>, NodeError> {
        Ok(self.store.read()?.symbol_names(account)?)
    }

    /// Every account.
    pub fn accounts(&self) -> Result<Vec<AccountRow>, NodeError> {
        Ok(self.store.read()?.all_json(store::ACCOUNTS, "accounts")?)
    }

    /// The only account, or the one named (the API's default).
    pub fn pick_account(&self, name: Option<&str>) -> Result<String, NodeError> {
        let all = self.accounts()?;
        match name {
            Some(n) if all.iter().any(|a| a.account == n) => Ok(n.to_owned()),
            Some(n) => Err(NodeError::Refused(format!("no account {n}"))),
            None => all
                .first()
                .map(|a| a.account.clone())
                .ok_or_else(|| NodeError::Refused("no EA has said hello yet".into())),
        }
    }

    /// Orders of an account, by order number.
    pub fn orders(&self, account: &str) -> Result<Vec<OrderRow>, NodeError> {
        let mut v: Vec<OrderRow> = self.store.read()?.orders(account)?;
        v.sort_by_key(|o| o.order_no);
        Ok(v)
    }

    /// Positions of an account.
    pub fn positions(&self, account: &str) -> Result<Vec<PositionRow>, NodeError> {
        Ok(self.store.read()?.positions(account)?)
    }

    /// Deals of an account.
    pub fn deal_list(&self, account: &str) -> Result<Vec<Deal>, NodeError> {
        Ok(self.store.read()?.deals(account)?)
    }

    /// Equity points of an account.
    pub fn equity(&self, account: &str) -> Result<Vec<EquityPoint>, NodeError> {
        Ok(self.store.read()?.equity(account)?)
    }

    /// Every signal.
    pub fn signals(&self) -> Result<Vec<SignalRow>, NodeError> {
        let mut v: Vec<SignalRow> = self.store.read()?.all_json(store::SIGNALS, "signals")?;
        v.sort_by_key(|s| s.signal.bar_time_ms);
        Ok(v)
    }

    /// Whether the EA link is up: an authenticated call within the silence limit.
    pub fn link_up(&self, now_ms: i64) -> bool {
        self.lock().last_seen_ms.is_some_and(|t| now_ms - t < self.settings.link_down_after_ms)
    }

    /// The status.
    pub fn status(&self, now_ms: i64) -> Result<Status, NodeError> {
        let last = self.lock().last_seen_ms;
        let view = self.store.read()?;
        let policy = self.policy_of(&view)?;
        let mut accounts = Vec::new();
        for a in view.all_json::<AccountRow>(store::ACCOUNTS, "accounts")? {
            let pos: Vec<PositionRow> = view.positions(&a.account)?;
            let ord: Vec<OrderRow> = view.orders(&a.account)?;
            accounts.push(AccountStatus {
                account: a.account.clone(),
                balance: a.balance,
                equity: a.equity,
                peak_equity: a.peak_equity,
                equity_floor: self.floor(&a, &policy),
                locked: a.locked,
                lock_reason: a.lock_reason.clone(),
                n_open_positions: pos.iter().filter(|p| p.open).count(),
                n_open_orders: ord.iter().filter(|o| !o.state.is_final()).count(),
                second_ea_refused_at_ms: self.refused_ea(&a.account, now_ms).map(|(_, at)| at),
            });
        }
        // An outbox stream holds seq 1..=tip and is never pruned: its tip is its length, read
        // without decoding every record (status is polled).
        let (mut streams, mut outbox_len) = (Vec::new(), 0);
        for stream in store::AUTHORED_STREAMS {
            let tip = view.outbox_tip(stream)?;
            if stream != StreamId::DEVICE {
                outbox_len += tip;
            }
            if tip > 0 {
                let (receipts, receipted_to) = view.receipts_held(stream)?;
                streams.push(StreamStatus { stream: stream.0, tip, receipts, receipted_to });
            }
        }
        let sync = SyncStatus {
            identity_key: hex::encode(self.identity.identity_key().to_bytes()),
            hub_connected: self.hub_connected(),
            inbox_watermark: view.inbox_watermark()?,
            publishing: view.publish_consent().unwrap_or_default(),
            relays: view
                .held_sources(0)?
                .into_iter()
                .filter(|h| h.source != tradecast_protocol::session::Source::Inbox)
                .map(|h| RelayStatus {
                    source: h.source.to_text(),
                    committed: h.committed,
                    quarantined_at_ms: h.quarantined_at_ms,
                })
                .collect(),
            streams,
        };
        Ok(Status {
            device_id: self.identity.device_id().to_text(),
            mode: if self.settings.provider { "provider" } else { "subscriber" }.into(),
            self_trade: self.settings.self_trade,
            started_at_ms: self.start_ms,
            ea_last_seen_ms: last,
            link_up: last.is_some_and(|t| now_ms - t < self.settings.link_down_after_ms),
            accounts,
            outbox_len,
            sync,
        })
    }
}

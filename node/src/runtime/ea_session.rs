//! EA sessions: the EA keys and the nonce cache behind the link's authentication, and `hello`
//! (the account row, its cursors and a new session; the oldest beyond the bound end; a
//! `DeviceKeys` record with the account's fingerprint when the latest one names another
//! account, in the hello's write).

use std::collections::BTreeMap;

use tradecast_protocol::ea::{self, Hello, HelloAnswer};
use tradecast_protocol::{Body, StreamId};
use zeroize::Zeroizing;

use crate::keys;
use crate::store;

use super::bars::series_name;
use super::rows::AccountRow;
use super::{Inner, Node, NodeError, Session};

/// How many bars before the terminal's clock a new subscription starts (engine warm-up).
const WARMUP_BARS: i64 = 300;
/// How far back the deals cursor starts for a new account.
const DEALS_LOOKBACK_MS: i64 = 86_400_000;
/// How many sessions of one account stay valid at once.
const SESSIONS_PER_ACCOUNT: usize = 4;
/// How long the trader's pages show a second EA refused on an account (it retries every 30 s
/// at most while attached, so a stale notice goes soon after it is removed).
pub const REFUSED_EA_SHOWN_MS: i64 = 120_000;

impl Node {
    /// The secret of an EA key, if known.
    pub fn ea_secret(&self, key_id: &str) -> Option<Zeroizing<Vec<u8>>> {
        self.lock().secrets.get(key_id).cloned()
    }

    /// Remembers a nonce of a verified request; refuses a replay.
    pub fn check_nonce(
        &self,
        nonce: &str,
        timestamp_ms: i64,
        now_ms: i64,
    ) -> Result<(), tradecast_protocol::link_auth::AuthError> {
        self.lock().nonces.check_and_insert(nonce, timestamp_ms, now_ms)
    }

    /// Notes an authenticated EA call (link health).
    pub fn seen(&self, now_ms: i64) {
        self.lock().last_seen_ms = Some(now_ms);
    }

    /// Makes an EA key; the secret is returned once and stored sealed.
    pub fn new_ea_key(&self) -> Result<keys::EaKey, NodeError> {
        let key = keys::new_ea_key()?;
        let sealed = keys::seal_secret(&self.identity, &key.key_id, &key.secret)?;
        self.store.write(|tx| tx.put_ea_key(&key.key_id, &sealed))?;
        self.lock()
            .secrets
            .insert(key.key_id.clone(), Zeroizing::new(key.secret.as_bytes().to_vec()));
        tracing::info!(target: "tradecast::keys", key_id = %key.key_id, "EA key created");
        Ok(key)
    }

    /// Revokes an EA key: removed from the store and from memory, so the EA's next call signed
    /// with it is refused. Whether the key existed.
    pub fn revoke_ea_key(&self, key_id: &str) -> Result<bool, NodeError> {
        let stored = self.store.write(|tx| tx.remove_ea_key(key_id))?;
        let live = self.lock().secrets.remove(key_id).is_some();
        if stored || live {
            tracing::info!(target: "tradecast::keys", %key_id, "EA key revoked");
        }
        Ok(stored || live)
    }

    /// The EA key ids.
    pub fn ea_key_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().secrets.keys().cloned().collect();
        v.sort();
        v
    }

    /// The EA introduces the account: a new session (the previous one of this account ends).
    ///
    /// A hello naming an EA instance is refused ([`NodeError::AnotherEa`]) while a session of
    /// another instance on the account still polls: a poll in flight, or one that ended less
    /// than `link_down_after` ago. The same instance (the chart's EA re-initialised, its
    /// terminal restarted) replaces its session as before; a second EA is admitted once the
    /// first has stopped polling.
    pub fn hello(&self, h: Hello, now_ms: i64) -> Result<HelloAnswer, NodeError> {
        let account = format!("{}@{}", h.login, h.server);
        if let Some(inst) = &h.instance
            && !ea::valid_instance(inst)
        {
            return Err(NodeError::Refused(format!(
                "instance must be 1 to {} characters of A-Z, a-z, 0-9, _ and -",
                ea::MAX_INSTANCE_LEN
            )));
        }
        let session_id = self.new_session_id()?;
        let mut inner = self.lock();
        if let Some(inst) = &h.instance
            && let Some(polling) = self.other_instance_polling(&inner, &account, inst, now_ms)
        {
            let first = inner
                .accounts
                .get(&account)
                .and_then(|m| m.refused_ea.as_ref())
                .is_none_or(|(i, at)| i != inst || now_ms - at > REFUSED_EA_SHOWN_MS);
            inner.accounts.entry(account.clone()).or_default().refused_ea =
                Some((inst.clone(), now_ms));
            drop(inner);
            if first {
                tracing::warn!(
                    target: "tradecast::link", %account, refused = %inst, %polling,
                    "a second EA on one account refused: it would execute the same orders"
                );
            }
            return Err(NodeError::AnotherEa { account, polling });
        }
        let subs = self.settings.subscriptions.clone();
        let device = self.identity.device_id();
        let identity = &self.identity;
        let (row, deals_from, bars_from, policy) = self.store.write(|tx| {
            let prev: Option<AccountRow> = tx.get_json(store::ACCOUNTS, "accounts", &account)?;
            let mut row = prev.unwrap_or(AccountRow {
                account: account.clone(),
                login: h.login,
                server: h.server.clone(),
                company: String::new(),
                currency: String::new(),
                margin_mode: h.margin_mode,
                server_utc_offset_s: 0,
                peak_equity: None,
                locked: false,
                lock_reason: String::new(),
                balance: None,
                equity: None,
                margin: None,
                free_margin: None,
                last_point: None,
                last_snapshot: String::new(),
                next_order_no: 1,
                market_ms: 0,
                day_start: None,
                tick_values: BTreeMap::new(),
                pending_orders: Vec::new(),
            });
            row.company = h.company.clone();
            row.currency = h.currency.clone();
            row.margin_mode = h.margin_mode;
            row.server_utc_offset_s = h.server_utc_offset_s;
            tx.replace_symbol_specs(&account, &h.symbols)?;
            row.market_ms = row.market_ms.max(h.terminal_time_ms);
            // The hello's specs carry the tick values of this moment.
            row.tick_values = h
                .symbols
                .iter()
                .map(|x| {
                    let tv = ea::TickValue {
                        symbol: x.symbol.clone(),
                        tick_value_profit: x.tick_value_profit,
                        tick_value_loss: x.tick_value_loss,
                    };
                    (x.symbol.clone(), (h.terminal_time_ms, tv))
                })
                .collect();
            if let Some(b) = &h.floor_breach {
                // The EA closed Tradecast's positions on its own while the node was silent.
                row.locked = true;
                row.lock_reason = format!(
                    "the EA closed {} position(s) on its own: equity {} fell below the floor {} \
                     while the node was silent",
                    b.n_closed, b.equity, b.floor
                );
                let cmd = tradecast_protocol::Command::CloseAll {
                    symbol: None,
                    reason: row.lock_reason.clone(),
                    at_ms: b.time_ms,
                };
                tx.append_record(identity, StreamId::COMMANDS, &Body::Command(cmd), now_ms)?;
            }
            let deals_from = match tx.cursor(&account, "deals")? {
                Some(c) => c,
                None => {
                    let c = h.terminal_time_ms.saturating_sub(DEALS_LOOKBACK_MS);
                    tx.set_cursor(&account, "deals", c)?;
                    c
                }
            };
            let mut bars_from = Vec::new();
            for (symbol, tf) in &subs {
                let name = format!("bars:{}", series_name(symbol, *tf));
                let from = match tx.cursor(&account, &name)? {
                    Some(c) => c,
                    None => {
                        let tf_ms = tf.seconds().unwrap_or(3_600) * 1_000;
                        let c =
                            (h.terminal_time_ms - WARMUP_BARS * tf_ms).div_euclid(tf_ms) * tf_ms;
                        tx.set_cursor(&account, &name, c)?;
                        c
                    }
                };
                bars_from.push(ea::BarCursor {
                    symbol: symbol.clone(),
                    timeframe: *tf,
                    from_ms: from,
                });
            }
            tx.put_json(store::ACCOUNTS, "accounts", &account, &row)?;
            // The hub learns which trading account this device runs on, as a keyed hash only.
            let fingerprinted =
                tx.sign_account_fingerprint(identity, h.login, &h.server, now_ms)?;
            if fingerprinted.is_some() {
                tracing::info!(target: "tradecast::sync",
                    "a new trading account on the EA link: its fingerprint is signed for the hub");
            }
            let policy = self.policy_in(tx)?;
            Ok((row, deals_from, bars_from, policy))
        })?;
        let _ = device;
        // The newest sessions of an account stay valid (an EA's hello does not cut off a poll
        // of the one before it already in flight); the oldest beyond the bound end.
        let live = inner.current.entry(account.clone()).or_default();
        live.push(session_id.clone());
        let ended: Vec<String> =
            if live.len() > SESSIONS_PER_ACCOUNT { live.drain(..1).collect() } else { Vec::new() };
        for old in ended {
            inner.sessions.remove(&old);
        }
        inner.sessions.insert(
            session_id.clone(),
            Session {
                account: account.clone(),
                poll_in_flight: false,
                instance: h.instance.clone(),
                last_poll_ms: now_ms,
            },
        );
        inner.accounts.entry(account.clone()).or_default();
        drop(inner);
        self.wake();
        tracing::info!(target: "tradecast::link", %account, session = %session_id, "EA hello");
        Ok(HelloAnswer {
            session_id,
            poll_wait_ms: self.settings.poll_wait_ms,
            subscriptions: self
                .settings
                .subscriptions
                .iter()
                .map(|(s, t)| ea::BarSubscription { symbol: s.clone(), timeframe: *t })
                .collect(),
            equity_floor: self.floor(&row, &policy),
            deals_from_ms: deals_from,
            bars_from,
        })
    }

    /// Keeps the hub's account-fingerprint key (read from the hub by a node enrolled before the
    /// enrolment answer carried it) and, in the same write, signs the fingerprint of the account
    /// of the EA session heard from last, if any, as its hello would have: an EA that said hello
    /// before the key arrived is fingerprinted without waiting for its next hello. Whether a
    /// `DeviceKeys` record was appended.
    pub fn learn_fingerprint_key(&self, key: &[u8; 32], now_ms: i64) -> Result<bool, NodeError> {
        let account = {
            let inner = self.lock();
            inner.sessions.values().max_by_key(|s| s.last_poll_ms).map(|s| s.account.clone())
        };
        let identity = &self.identity;
        let appended = self.store.write(|tx| {
            store::hub_pin::set_fingerprint_key(tx, key)?;
            let Some(account) = &account else { return Ok(false) };
            let Some(row) = tx.get_json::<AccountRow>(store::ACCOUNTS, "accounts", account)? else {
                return Ok(false);
            };
            Ok(tx.sign_account_fingerprint(identity, row.login, &row.server, now_ms)?.is_some())
        })?;
        if appended {
            tracing::info!(target: "tradecast::sync",
                "the EA's trading account is fingerprinted for the hub");
            self.wake();
        }
        Ok(appended)
    }

    /// Another EA instance whose session on `account` still polls, if any (see [`Node::hello`]).
    fn other_instance_polling(
        &self,
        inner: &Inner,
        account: &str,
        instance: &str,
        now_ms: i64,
    ) -> Option<String> {
        let live = inner.current.get(account)?;
        live.iter().filter_map(|id| inner.sessions.get(id)).find_map(|s| {
            let other = s.instance.as_deref().filter(|i| *i != instance)?;
            let polling = s.poll_in_flight
                || now_ms.saturating_sub(s.last_poll_ms) < self.settings.link_down_after_ms;
            polling.then(|| other.to_owned())
        })
    }

    /// The last second EA refused on `account`, if within the last [`REFUSED_EA_SHOWN_MS`]:
    /// its instance and when.
    pub fn refused_ea(&self, account: &str, now_ms: i64) -> Option<(String, i64)> {
        let inner = self.lock();
        let (inst, at) = inner.accounts.get(account)?.refused_ea.clone()?;
        (now_ms - at <= REFUSED_EA_SHOWN_MS).then_some((inst, at))
    }

    pub(super) fn session_account(
        &self,
        inner: &Inner,
        session_id: &str,
    ) -> Result<String, NodeError> {
        inner
            .sessions
            .get(session_id)
            .map(|s| s.account.clone())
            .ok_or_else(|| NodeError::HelloRequired(session_id.to_owned()))
    }
}

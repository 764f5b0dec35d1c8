//! The hub's driver of [`HubSession`] on one node's session stream: read a frame, handle it,
//! drain the actions (send, commit to SQL then report `Committed` (consecutive commits in one transaction), persist quarantines, log
//! alarms, close), arm the timer. It makes no protocol decision.
//!
//! Frames on the stream: `len:u32 BE ‖ frame`, `len` ≤ [`MAX_FRAME_LEN`] checked before
//! allocating. A reader task feeds frames through a bounded channel (so the select stays
//! cancel-safe). A record is acknowledged only after its row is committed: `Committed` is
//! reported after the SQL insert returns.
//!
//! Downstream (protocol version 2): every provider device whose plan the device's account ever
//! held is a [`Source::Relay`] ([`crate::relay`]): live entries come from the instance's relay
//! registry (the same bytes for every session, filtered here by [`crate::relay::Viewer::sees`]),
//! catch-up pages from [`crate::relay::load`] with the same rule, and the node's acks go to the
//! batched cursor writer ([`crate::relay::CursorWriter`]) without waiting. An entitlement change
//! of the account reloads what it follows (a grant adds sources mid-session).
//!
//! The device's feed ([`crate::feed`]) is its
//! [`Source::Inbox`]; the session starts from its cursor (`device_feeds.acked`) and asks for
//! pages with `LoadSource` (at most the window); items appended while it runs are found when the
//! device's [`crate::feed::FeedBell`] rings (rung after the appending transaction commits) or by
//! a tip check every [`FEED_POLL`] (another hub instance may have appended), and handed over as
//! `SourceGrew` in `seq` order (the tip check is one query per hub for all sessions,
//! [`crate::feed::FeedBell::watch_tips`]). `CursorAcked` moves the device's cursor in SQL,
//! group-committed with other sessions' acks ([`crate::feed::FeedBell::ack`]).

use std::collections::HashMap;
use std::time::Duration;

use tradecast_protocol::session::{
    HubAction, HubEvent, HubSession, HubSetup, SessionConfig, SignatureCheck, Source, SourceStart,
};
use tradecast_protocol::{DeviceId, IdentityKey};

use super::{MAX_FRAME_LEN, close_code, store};
use crate::state::AppState;

/// Frames read ahead of the session (each up to 1 MiB: this bounds what one connection holds).
const READ_AHEAD: usize = 4;
/// Feed items read per tip check (a `LoadSource` page is at most the session's window).
pub const FEED_LOAD_BATCH: usize = 256;
/// How often a session checks its device's feed tip without a bell.
pub const FEED_POLL: Duration = Duration::from_secs(2);

/// Why a session ended on the hub's side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("feed: {0}")]
    Feed(#[from] crate::db::DbError),
    #[error("stream: {0}")]
    Stream(String),
    #[error("frame of {0} bytes exceeds the limit")]
    Oversized(usize),
}

/// Reads one length-prefixed frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>, DriverError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(_) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(DriverError::Stream(e.to_string())),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(DriverError::Oversized(len));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await.map_err(|e| DriverError::Stream(e.to_string()))?;
    Ok(Some(buf))
}

/// Writes one length-prefixed frame.
pub async fn write_frame(send: &mut quinn::SendStream, frame: &[u8]) -> Result<(), DriverError> {
    let len = u32::try_from(frame.len()).map_err(|_| DriverError::Oversized(frame.len()))?;
    if frame.len() > MAX_FRAME_LEN {
        return Err(DriverError::Oversized(frame.len()));
    }
    let mut buf = Vec::with_capacity(4 + frame.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(frame);
    send.write_all(&buf).await.map_err(|e| DriverError::Stream(e.to_string()))
}

fn now_ms(state: &AppState) -> i64 {
    state.now_ms()
}

/// Runs the session with `peer` on (`send`, `recv`) until it closes.
pub async fn run(
    state: &AppState,
    conn: &quinn::Connection,
    peer: IdentityKey,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), DriverError> {
    let cfg = SessionConfig::default();
    let device = peer.device_id();
    let device_text = device.to_text();
    // The bell first: an append committed after the marks are read still rings it.
    let bell = state.feed_bell.subscribe(&device_text);
    state.feed_bell.watch_tips(&state.db, FEED_POLL);
    let streams = store::load_streams(&state.db, &device, cfg.recent_hashes).await?;
    let (feed_tip, feed_acked) = crate::feed::marks(&state.db, &device_text).await?;
    let mut relays = Relays::join(state, &device_text).await?;
    let mut sources = vec![SourceStart { source: Source::Inbox, acked: feed_acked, tip: feed_tip }];
    sources.extend(relays.starts());
    let setup = HubSetup { hub: state.hub_identity.identity_key(), peer, streams, sources };
    let mut session = HubSession::new(cfg, setup, SignatureCheck, now_ms(state));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, DriverError>>(READ_AHEAD);
    let reader = tokio::spawn(async move {
        loop {
            let r = read_frame(&mut recv).await;
            let end = !matches!(r, Ok(Some(_)));
            let item = match r {
                Ok(Some(f)) => Ok(f),
                Ok(None) => Err(DriverError::Stream("the node finished its stream".into())),
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || end {
                break;
            }
        }
        // Keep `recv` alive until here.
        let _ = recv.read_to_end(0).await;
    });
    let mut feed = FeedCursor { device: device_text.clone(), tip: feed_tip, bell: bell.clone() };
    let started_ms = now_ms(state);
    // Boxed: the session's own future stays small.
    let started =
        Box::pin(crate::telegram::account::session_started(&state.db, &device_text, started_ms));
    if let Err(e) = started.await {
        tracing::warn!(device = %device.fmt_short(), error = %e, "presence not recorded");
    }
    let toucher =
        crate::telegram::account::spawn_touch(state.clone(), device_text.clone(), started_ms);
    let result = drive(state, conn, &mut session, &mut send, &mut rx, &mut feed, &mut relays).await;
    reader.abort();
    toucher.abort();
    state.feed_bell.release(&device_text, bell);
    let ended =
        crate::telegram::account::session_ended(&state.db, &device_text, started_ms, now_ms(state));
    if let Err(e) = ended.await {
        tracing::warn!(device = %device.fmt_short(), error = %e, "presence not recorded");
    }
    result
}

/// The relay logs a session follows: its place in the registry, the account's standing towards
/// each provider, and the cursors as handed to the writer.
struct Relays {
    device: String,
    user_id: String,
    membership: crate::relay::Membership,
    /// Provider account → the device's standing.
    viewers: HashMap<String, crate::relay::Viewer>,
    /// Followed log → (its provider, the cursor as last handed to the writer).
    logs: HashMap<DeviceId, (String, u64)>,
    /// The sources the session was set up with (their tips re-read after joining).
    initial: Vec<SourceStart>,
}

impl Relays {
    /// Reads what `device` follows and joins the registry. Entries committed between the read
    /// and the join are covered by reading the tips again after joining.
    async fn join(state: &AppState, device: &str) -> Result<Relays, DriverError> {
        let user_id: String = sqlx::query_scalar("SELECT user_id FROM devices WHERE id = $1")
            .bind(device)
            .fetch_optional(state.db.pool())
            .await
            .map_err(crate::db::DbError::from)?
            .ok_or_else(|| DriverError::Stream(format!("no device {device}")))?;
        let following = crate::relay::following(&state.db, &user_id, device).await?;
        let membership = state.relay.join(&user_id, following.viewers.keys().cloned());
        let mut relays = Relays {
            device: device.to_string(),
            user_id,
            membership,
            viewers: following.viewers,
            logs: HashMap::new(),
            initial: Vec::new(),
        };
        for (log, provider, cursor, tip) in following.logs {
            let tip = tip.max(crate::relay::tip(&state.db, &log).await?);
            relays.logs.insert(log, (provider, cursor));
            relays.initial.push(SourceStart { source: Source::Relay(log), acked: cursor, tip });
        }
        Ok(relays)
    }

    fn starts(&mut self) -> Vec<SourceStart> {
        std::mem::take(&mut self.initial)
    }

    /// Starts following `log` of `provider` mid-session (a grant, a provider's new device).
    async fn add(
        &mut self,
        state: &AppState,
        session: &mut HubSession<SignatureCheck>,
        log: DeviceId,
        provider: &str,
        tip: u64,
    ) -> Result<(), DriverError> {
        if self.logs.contains_key(&log) || !self.viewers.contains_key(provider) {
            return Ok(());
        }
        let cursor = crate::relay::cursor(&state.db, &self.device, &log).await?;
        let tip = tip.max(crate::relay::tip(&state.db, &log).await?);
        self.logs.insert(log, (provider.to_string(), cursor));
        let start = SourceStart { source: Source::Relay(log), acked: cursor.min(tip), tip };
        session.handle(now_ms(state), HubEvent::SourceAdded(start));
        Ok(())
    }

    /// Re-reads the account's standing and the logs it follows (an entitlement changed, or
    /// messages were dropped): new logs are added, known ones get their tip.
    async fn reload(
        &mut self,
        state: &AppState,
        session: &mut HubSession<SignatureCheck>,
    ) -> Result<(), DriverError> {
        let following = crate::relay::following(&state.db, &self.user_id, &self.device).await?;
        self.membership.follow(following.viewers.keys().cloned());
        self.viewers = following.viewers;
        for (log, provider, _, tip) in following.logs {
            if self.logs.contains_key(&log) {
                let source = Source::Relay(log);
                session.handle(now_ms(state), HubEvent::SourceTip { source, tip });
            } else {
                self.add(state, session, log, &provider, tip).await?;
            }
        }
        Ok(())
    }

    /// Applies one message of the registry.
    async fn on_message(
        &mut self,
        state: &AppState,
        session: &mut HubSession<SignatureCheck>,
        msg: crate::relay::RelayMsg,
    ) -> Result<(), DriverError> {
        use crate::relay::RelayMsg;
        match msg {
            RelayMsg::Entry(a) => {
                let log = a.provider_device;
                if !self.logs.contains_key(&log) {
                    return self.add(state, session, log, &a.provider_user_id, a.entry.seq).await;
                }
                let seen = self.viewers.get(&a.provider_user_id).is_some_and(|v| v.sees(a.view));
                let (source, seq) = (Source::Relay(log), a.entry.seq);
                let entry = seen.then(|| a.entry.clone());
                session.handle(now_ms(state), HubEvent::SourceGrew { source, seq, entry });
            }
            RelayMsg::Tip { provider_user_id, provider_device, tip } => {
                if self.logs.contains_key(&provider_device) {
                    let source = Source::Relay(provider_device);
                    session.handle(now_ms(state), HubEvent::SourceTip { source, tip });
                } else {
                    self.add(state, session, provider_device, &provider_user_id, tip).await?;
                }
            }
            RelayMsg::Refresh => self.reload(state, session).await?,
        }
        Ok(())
    }

    /// A page of catch-up of `log`, filtered by the account's standing.
    async fn load(
        &self,
        state: &AppState,
        log: DeviceId,
        after: u64,
        max: usize,
    ) -> Result<(Vec<tradecast_protocol::session::LogEntry>, u64), DriverError> {
        let viewer = self
            .logs
            .get(&log)
            .and_then(|(provider, _)| self.viewers.get(provider))
            .cloned()
            .unwrap_or_default();
        Ok(crate::relay::load(&state.db, &log, after, max, &viewer).await?)
    }

    /// The node committed `log` up to `seq`: hand the move to the batched writer.
    fn acked(&mut self, state: &AppState, log: DeviceId, seq: u64) {
        let Some((_, persisted)) = self.logs.get_mut(&log) else { return };
        let from = *persisted;
        *persisted = (*persisted).max(seq);
        state.relay_cursors.push(crate::relay::CursorMove {
            device: self.device.clone(),
            provider_device: log.to_text(),
            from,
            to: seq,
            at_ms: now_ms(state),
        });
    }
}

/// The driver's view of the device's feed: the tip handed to the session so far.
struct FeedCursor {
    device: String,
    tip: u64,
    bell: std::sync::Arc<tokio::sync::Notify>,
}

/// Hands the session the items appended above `feed.tip`, in order.
async fn feed_appended(
    state: &AppState,
    session: &mut HubSession<SignatureCheck>,
    feed: &mut FeedCursor,
) -> Result<(), DriverError> {
    loop {
        let items =
            crate::feed::entries(&state.db, &feed.device, feed.tip + 1, FEED_LOAD_BATCH).await?;
        let n = items.len();
        for item in items {
            if item.seq != feed.tip + 1 {
                return Err(DriverError::Stream(format!(
                    "feed of {} has a gap at {}",
                    feed.device,
                    feed.tip + 1
                )));
            }
            feed.tip = item.seq;
            let seq = item.seq;
            let grew = HubEvent::SourceGrew { source: Source::Inbox, seq, entry: Some(item) };
            session.handle(now_ms(state), grew);
        }
        if n < FEED_LOAD_BATCH {
            return Ok(());
        }
    }
}

async fn drive(
    state: &AppState,
    conn: &quinn::Connection,
    session: &mut HubSession<SignatureCheck>,
    send: &mut quinn::SendStream,
    rx: &mut tokio::sync::mpsc::Receiver<Result<Vec<u8>, DriverError>>,
    feed: &mut FeedCursor,
    relays: &mut Relays,
) -> Result<(), DriverError> {
    let mut timer: Option<i64> = None;
    let mut batch: Vec<(tradecast_protocol::Record, i64)> = Vec::new();
    loop {
        loop {
            let Some(action) = session.poll_action() else {
                if batch.is_empty() {
                    break;
                }
                flush(state, session, &mut batch).await?;
                continue;
            };
            if let HubAction::Commit { record, received_at_ms } = action {
                // Consecutive commits share one transaction; acks follow the commit.
                batch.push((record, received_at_ms));
                continue;
            }
            flush(state, session, &mut batch).await?;
            match action {
                HubAction::Send(frame) => write_frame(send, &frame).await?,
                HubAction::SetTimer { at_ms } => timer = Some(at_ms),
                HubAction::Commit { .. } => {}
                HubAction::CursorAcked { source: Source::Inbox, seq } => {
                    state.feed_bell.ack(&state.db, &feed.device, seq, now_ms(state)).await?;
                }
                HubAction::CursorAcked { source: Source::Relay(log), seq } => {
                    relays.acked(state, log, seq);
                }
                HubAction::LoadSource { source, after, max } => {
                    let (entries, scanned_to) = match source {
                        Source::Inbox => {
                            let entries =
                                crate::feed::entries(&state.db, &feed.device, after + 1, max)
                                    .await?;
                            let scanned_to = entries.last().map_or(after, |item| item.seq);
                            (entries, scanned_to)
                        }
                        Source::Relay(log) => relays.load(state, log, after, max).await?,
                    };
                    let loaded = HubEvent::SourceLoaded { source, after, entries, scanned_to };
                    session.handle(now_ms(state), loaded);
                }
                HubAction::CheckStored { record } => {
                    let offered = record.header_hash();
                    if let Some(known) = store::stored_hash(&state.db, &record).await?
                        && known != offered
                    {
                        let (stream, seq) = (record.header().stream, record.header().seq);
                        let differs = HubEvent::StoredDiffers { stream, seq, known, offered };
                        session.handle(now_ms(state), differs);
                    }
                }
                HubAction::Quarantine { author, stream } => {
                    store::quarantine(&state.db, &author, stream, now_ms(state)).await?;
                }
                HubAction::Alarm(alarm) => {
                    tracing::warn!(?alarm, "sync alarm");
                }
                HubAction::Close(reason) => {
                    let text = reason.to_string();
                    conn.close(close_code::SESSION_CLOSED.into(), text.as_bytes());
                    return Ok(());
                }
            }
        }
        let wait = timer.map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(u64::try_from(at - now_ms(state)).unwrap_or(0))
        });
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(Ok(bytes)) => session.handle(now_ms(state), HubEvent::BytesReceived(&bytes)),
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            () = tokio::time::sleep(wait) => {
                timer = None;
                session.handle(now_ms(state), HubEvent::TimerFired);
            }
            () = feed.bell.notified() => feed_appended(state, session, feed).await?,
            msg = relays.membership.rx.recv() => match msg {
                Some(msg) => relays.on_message(state, session, msg).await?,
                None => return Err(DriverError::Stream("relay registry closed".into())),
            },
            () = relays.membership.lagged.notified() => relays.reload(state, session).await?,
        }
    }
}

/// Commits the batched records in one transaction, then reports each as committed.
async fn flush(
    state: &AppState,
    session: &mut HubSession<SignatureCheck>,
    batch: &mut Vec<(tradecast_protocol::Record, i64)>,
) -> Result<(), DriverError> {
    if batch.is_empty() {
        return Ok(());
    }
    let rules = crate::signals::IngestRules {
        max_age_ms: i64::try_from(state.config.signals.max_age_ms).unwrap_or(60_000),
    };
    let done = store::commit_batch(&state.db, &state.hub_identity, rules, batch).await?;
    state.feed_bell.ring(&done.touched);
    if !done.touched.is_empty()
        && let Some((last, _)) = batch.last()
    {
        let (source, seq) = (last.header().author.to_text(), last.header().seq);
        state.cluster.publish(crate::cluster::Event::Feed { source, seq });
    }
    for expected in crate::relay::after_commit(state, &done.relayed) {
        expected.spawn(state);
    }
    for (record, _) in batch.drain(..) {
        let h = record.header();
        session.handle(now_ms(state), HubEvent::Committed { stream: h.stream, seq: h.seq });
    }
    Ok(())
}

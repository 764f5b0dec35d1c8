//! The hub's driver of [`HubSession`] on one node's session stream: read a frame, handle it,
//! drain the actions (send, commit to SQL then report `Committed` (consecutive commits in one transaction), persist quarantines, log
//! alarms, close), arm the timer. It makes no protocol decision.
//!
//! Frames on the stream: `len:u32 BE ‖ frame`, `len` ≤ [`MAX_FRAME_LEN`] checked before
//! allocating. A reader task feeds frames through a bounded channel (so the select stays
//! cancel-safe). A record is acknowledged only after its row is committed: `Committed` is
//! reported after the SQL insert returns.
//!
//! Downstream (protocol version 2): the device's feed ([`crate::feed`]) is its
//! [`Source::Inbox`]; the session starts from its cursor (`device_feeds.acked`) and asks for
//! pages with `LoadSource` (at most the window); items appended while it runs are found when the
//! device's [`crate::feed::FeedBell`] rings (rung after the appending transaction commits) or by
//! a tip check every [`FEED_POLL`] (another hub instance may have appended), and handed over as
//! `SourceGrew` in `seq` order (the tip check is one query per hub for all sessions,
//! [`crate::feed::FeedBell::watch_tips`]). `CursorAcked` moves the device's cursor in SQL,
//! group-committed with other sessions' acks ([`crate::feed::FeedBell::ack`]).

use std::time::Duration;

use tradecast_protocol::IdentityKey;
use tradecast_protocol::session::{
    HubAction, HubEvent, HubSession, HubSetup, SessionConfig, SignatureCheck, Source, SourceStart,
};

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
    let setup = HubSetup {
        hub: state.hub_identity.identity_key(),
        peer,
        streams,
        sources: vec![SourceStart { source: Source::Inbox, acked: feed_acked, tip: feed_tip }],
    };
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
    let result = drive(state, conn, &mut session, &mut send, &mut rx, &mut feed).await;
    reader.abort();
    state.feed_bell.release(&device_text, bell);
    result
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
                // Relay logs are not served by this hub yet: the session never follows one.
                HubAction::CursorAcked { source: Source::Relay(_), .. } => {}
                HubAction::LoadSource { source, after, max } => {
                    let entries = match source {
                        Source::Inbox => {
                            crate::feed::entries(&state.db, &feed.device, after + 1, max).await?
                        }
                        Source::Relay(_) => Vec::new(),
                    };
                    let scanned_to = entries.last().map_or(after, |item| item.seq);
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
    for (record, _) in batch.drain(..) {
        let h = record.header();
        session.handle(now_ms(state), HubEvent::Committed { stream: h.stream, seq: h.seq });
    }
    Ok(())
}

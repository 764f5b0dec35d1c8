//! The node's driver of [`NodeSession`]: connect to the pinned hub, run the session on the
//! hello stream, reconnect after a [`Backoff`] with jitter. It makes no protocol decision: read
//! a frame, handle it, drain the actions, write, arm the timer.
//!
//! - **Upstream**: the session starts from each stream's tip; after the hub's `Welcome` it
//!   loads the records above the hub's mark, [`LOAD_BATCH`] at a time; records appended later are found by
//!   [`SyncHandle::appended`] (a nudge) or by a tip check every [`TIP_POLL`], and handed over as
//!   `RecordAppended` in `seq` order. `LoadRecords` reads the outbox from the asked `seq`. The
//!   hub acknowledges only what it committed in SQL; [`SyncHandle::acked`] shows the marks.
//! - **Downstream**: the session starts from the store's inbox watermark, the hashes of the last
//!   committed feed items and the pinned author keys; each `CommitFeed` (a record the session
//!   verified against its author's pinned key, or a self-signed `DeviceKeys` pinning one) goes
//!   to the [`SyncHost`] (`receive_feed`) — the node's runtime commits the item with everything it causes in one
//!   durable write — and only then is `FeedCommitted` reported, so the hub's ack follows the
//!   commit. A sink failure ends the session unacknowledged; the hub resends.
//! - **Refusals**: a hub that refuses the device (not enrolled, revoked) or asks for an upgrade
//!   ends the client with that error instead of retrying; anything else is retried.
//! - Heartbeats and dead-peer detection are the session's (`Ping` every `heartbeat_ms`, close
//!   after `dead_after_ms` of silence), plus QUIC keep-alives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use redb::ReadableDatabase;
use tokio::sync::{Notify, watch};
use tradecast_protocol::session::{
    Backoff, LocalSource, LocalStream, NodeAction, NodeEvent, NodeSession, NodeSetup,
    SessionConfig, SignatureCheck, Source,
};
use tradecast_protocol::{Identity, IdentityKey, Record, StreamId};

use super::client::{self, ConnectError};
use crate::store::{Store, StoreError};

/// How often the outbox tips are checked for records appended without a nudge.
pub const TIP_POLL: Duration = Duration::from_millis(250);
/// Frames read ahead of the session.
const READ_AHEAD: usize = 16;
/// Largest frame accepted from the hub.
const MAX_FRAME_LEN: usize = tradecast_protocol::session::wire::MAX_FRAME_LEN;
/// The streams a node authors.
const STREAMS: [StreamId; 6] = crate::store::AUTHORED_STREAMS;

/// What the driver syncs: a store's outbox, and where committed feed items go.
pub trait SyncHost: Send + Sync + 'static {
    /// The store whose outbox goes upstream.
    fn store(&self) -> &Store;
    /// Durably commits item `seq` of `source` (and what it causes) before returning.
    fn commit_feed(&self, source: Source, seq: u64, record: &Record) -> Result<(), String>;
}

/// A bare store keeps the items (and the watermark) without acting on them.
impl SyncHost for Store {
    fn store(&self) -> &Store {
        self
    }

    fn commit_feed(&self, source: Source, seq: u64, record: &Record) -> Result<(), String> {
        self.write(|tx| {
            if seq > tx.source_cursor(source)? {
                tx.put_source_item(source, seq, record)?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())
    }
}

/// The node commits each item with what it causes (pinning, policy, following).
impl SyncHost for crate::runtime::Node {
    fn store(&self) -> &Store {
        crate::runtime::Node::store(self)
    }

    fn commit_feed(&self, source: Source, seq: u64, record: &Record) -> Result<(), String> {
        match self.receive_from(source, seq, record) {
            Ok(outcome) => {
                let source = source.to_text();
                tracing::info!(target: "tradecast::feed", source, seq, ?outcome, "feed item committed");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Feed hashes remembered for duplicate detection across reconnects.
const FEED_RECENT: usize = 4096;

/// Why the sync client stopped (it retries everything else).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The hub refused this device or asked for an upgrade.
    #[error(transparent)]
    Refused(ConnectError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No address to reach the hub at.
    #[error("no hub address to connect to")]
    NoHubAddress,
}

/// Why one session ended (logged; the client reconnects).
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("stream: {0}")]
    Stream(String),
    #[error("session closed: {0}")]
    Closed(String),
    #[error("feed commit failed: {0}")]
    Feed(String),
    #[error("stop")]
    Stop,
}

/// Reconnect pacing.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub session: SessionConfig,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Outbox records read per `LoadRecords`. Default [`LOAD_BATCH`].
    pub load_batch: usize,
    /// How the hub's certificate is checked. Default `None`: the hub's self-signed certificate
    /// must carry the pinned identity key; `Some` for a hub with a WebPKI certificate.
    pub tls: Option<tradecast_quic::HubTrust>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            session: SessionConfig::default(),
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
            load_batch: LOAD_BATCH,
            tls: None,
        }
    }
}

/// A running sync client.
#[derive(Debug)]
pub struct SyncHandle {
    acked: watch::Receiver<BTreeMap<StreamId, u64>>,
    connected: watch::Receiver<bool>,
    appended: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), SyncError>>,
}

impl SyncHandle {
    /// The hub's committed marks per stream, as acknowledged in this process.
    pub fn acked(&self) -> watch::Receiver<BTreeMap<StreamId, u64>> {
        self.acked.clone()
    }

    /// Whether a session with the hub is up.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    /// Nudge: a record was appended to the outbox (otherwise found within [`TIP_POLL`]).
    pub fn appended(&self) {
        self.appended.notify_one();
    }

    /// The nudge itself, for a task that watches the node's commits.
    pub fn nudger(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// Stops the client (closing its connection) and returns how it ended.
    pub async fn stop(self) -> Result<(), SyncError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }
}

/// Starts the sync client of `store`'s node with the hub holding `hub_key` at `addr`.
pub fn spawn(
    host: Arc<dyn SyncHost>,
    identity: Identity,
    hub_key: IdentityKey,
    addr: SocketAddr,
    config: SyncConfig,
) -> SyncHandle {
    spawn_failover(host, identity, hub_key, vec![addr], config)
}

/// [`spawn`] for a hub run as several instances (one key, one database): the client connects
/// to the first address that answers, comes back to the one it last synced with after a
/// session ends, and moves on to the next when a connection fails; it waits its backoff only
/// after a whole round failed. Nothing is lost moving: the new instance's `Welcome` carries
/// the committed marks and the hello the node's cursors.
pub fn spawn_failover(
    host: Arc<dyn SyncHost>,
    identity: Identity,
    hub_key: IdentityKey,
    addrs: Vec<SocketAddr>,
    config: SyncConfig,
) -> SyncHandle {
    let (acked_tx, acked) = watch::channel(BTreeMap::new());
    let (connected_tx, connected) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let appended = Arc::new(Notify::new());
    let ctx = Ctx {
        host,
        identity,
        hub_key,
        addrs,
        config,
        acked: acked_tx,
        connected: connected_tx,
        appended: appended.clone(),
        stop: stop_rx,
    };
    let task = tokio::spawn(async move {
        let end = run(ctx).await;
        if let Err(e) = &end {
            tracing::error!(target: "tradecast::sync", error = %e, "sync with the hub stopped");
        }
        end
    });
    SyncHandle { acked, connected, appended, stop, task }
}

struct Ctx {
    host: Arc<dyn SyncHost>,
    identity: Identity,
    hub_key: IdentityKey,
    /// The hub's instances, tried in turn (never empty: `run` ends at once otherwise).
    addrs: Vec<SocketAddr>,
    config: SyncConfig,
    acked: watch::Sender<BTreeMap<StreamId, u64>>,
    connected: watch::Sender<bool>,
    appended: Arc<Notify>,
    stop: watch::Receiver<bool>,
}

fn now_ms() -> i64 {
    crate::clock::wall_ms()
}

fn jitter_rng() -> impl rand_core::Rng {
    let seed = crate::keys::random_bytes::<32>().map(|s| *s).unwrap_or([7; 32]);
    <chacha20::ChaCha20Rng as rand_core::SeedableRng>::from_seed(seed)
}

async fn run(mut ctx: Ctx) -> Result<(), SyncError> {
    let mut backoff = Backoff::new(ctx.config.backoff_base_ms, ctx.config.backoff_max_ms);
    let mut rng = jitter_rng();
    if ctx.addrs.is_empty() {
        return Err(SyncError::NoHubAddress);
    }
    // The instance to try next, and how many failed in a row (a whole round: back off).
    let (mut at, mut failed) = (0usize, 0usize);
    loop {
        if *ctx.stop.borrow() {
            return Ok(());
        }
        let addr = ctx.addrs[at % ctx.addrs.len()];
        let trust = ctx.config.tls.clone().unwrap_or(tradecast_quic::HubTrust::Pinned(ctx.hub_key));
        let connect =
            client::connect_trusting(&ctx.identity, &trust, addr, super::PROTOCOL_VERSION);
        let conn = tokio::select! {
            c = connect => c,
            _ = ctx.stop.changed() => return Ok(()),
        };
        match conn {
            Ok(hub) => {
                failed = 0;
                tracing::info!(target: "tradecast::sync", %addr, "connected to the hub");
                let (conn, send, recv, _endpoint) = hub.into_parts();
                ctx.connected.send_replace(true);
                let end = session(&mut ctx, send, recv, &mut backoff).await;
                ctx.connected.send_replace(false);
                // The hub may have closed for a reason the node must act on (revocation).
                let hub_closed = conn.close_reason();
                match end {
                    Err(SessionEnd::Stop) => {
                        conn.close(0u32.into(), b"node stopping");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "sync session ended; reconnecting");
                        conn.close(0u32.into(), b"session ended");
                    }
                    Ok(()) => {}
                }
                if let Some(e @ (ConnectError::Refused(_) | ConnectError::UpgradeRequired { .. })) =
                    hub_closed.map(client::from_connection_error)
                {
                    return Err(SyncError::Refused(e));
                }
            }
            Err(e @ (ConnectError::Refused(_) | ConnectError::UpgradeRequired { .. })) => {
                return Err(SyncError::Refused(e));
            }
            Err(e) => {
                tracing::info!(error = %e, %addr, "cannot reach the hub; retrying");
                failed += 1;
                at += 1;
                if failed % ctx.addrs.len() != 0 {
                    // Another instance is left to try in this round: at once.
                    continue;
                }
            }
        }
        let delay = Duration::from_millis(backoff.next_delay_ms(&mut rng));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = ctx.stop.changed() => return Ok(()),
        }
    }
}

/// Outbox records loaded per `LoadRecords` (the session asks again for the rest), so a long
/// backlog is never held in memory at once.
pub const LOAD_BATCH: usize = 1024;

/// Up to `max` outbox records of `stream` from `from_seq`, in `seq` order.
fn load_range(
    store: &Store,
    stream: StreamId,
    from_seq: u64,
    max: usize,
) -> Result<Vec<Record>, StoreError> {
    let rtx = store.db().begin_read().map_err(redb::Error::from)?;
    let table = rtx.open_table(crate::store::OUTBOX).map_err(redb::Error::from)?;
    let mut out = Vec::new();
    for entry in table
        .range((stream.0, from_seq)..=(stream.0, u64::MAX))
        .map_err(redb::Error::from)?
        .take(max)
    {
        let (_, v) = entry.map_err(redb::Error::from)?;
        out.push(
            Record::decode(v.value())
                .map_err(|e| StoreError::Row { table: "outbox", message: e.to_string() })?,
        );
    }
    Ok(out)
}

/// The last outbox record of `stream`.
fn tip_record(store: &Store, stream: StreamId) -> Result<Option<Record>, StoreError> {
    let rtx = store.db().begin_read().map_err(redb::Error::from)?;
    let table = rtx.open_table(crate::store::OUTBOX).map_err(redb::Error::from)?;
    let last =
        table.range((stream.0, 0)..=(stream.0, u64::MAX)).map_err(redb::Error::from)?.next_back();
    match last {
        None => Ok(None),
        Some(entry) => {
            let (_, v) = entry.map_err(redb::Error::from)?;
            Record::decode(v.value())
                .map(Some)
                .map_err(|e| StoreError::Row { table: "outbox", message: e.to_string() })
        }
    }
}

/// The node's session setup from the store: each stream's tip record only. The hub's `Welcome`
/// says what it holds; the session then asks for the records above that mark
/// (`LoadRecords`, [`LOAD_BATCH`] at a time), so a restarted node does not read its whole
/// outbox into memory.
fn setup(ctx: &Ctx) -> Result<(NodeSetup, BTreeMap<StreamId, u64>), StoreError> {
    let mut streams = Vec::new();
    let mut tips = BTreeMap::new();
    for stream in STREAMS {
        let Some(tip) = tip_record(ctx.host.store(), stream)? else { continue };
        let (seq, hash) = (tip.header().seq, tip.header_hash());
        tips.insert(stream, seq);
        streams.push(LocalStream { stream, tip_seq: seq, tip_hash: hash, unacked: vec![tip] });
    }
    let view = ctx.host.store().read()?;
    let setup = NodeSetup {
        identity: ctx.identity.identity_key(),
        hub: ctx.hub_key,
        streams,
        sources: view
            .held_sources(FEED_RECENT)?
            .into_iter()
            .map(|h| LocalSource {
                source: h.source,
                committed: h.committed,
                recent: h.recent,
                quarantined: h.quarantined_at_ms.is_some(),
            })
            .collect(),
        authors: view.authors()?.into_iter().map(|a| a.key).collect(),
        restored: false,
    };
    Ok((setup, tips))
}

/// Records appended since `tips`, in `seq` order per stream.
fn new_records(
    store: &Store,
    tips: &mut BTreeMap<StreamId, u64>,
) -> Result<Vec<Record>, StoreError> {
    let view = store.read()?;
    let mut out = Vec::new();
    for stream in STREAMS {
        let tip = tips.get(&stream).copied().unwrap_or(0);
        let fresh = view.outbox_from(stream, tip + 1)?;
        if let Some(last) = fresh.last() {
            tips.insert(stream, last.header().seq);
        }
        out.extend(fresh);
    }
    Ok(out)
}

async fn write_frame(send: &mut quinn::SendStream, frame: &[u8]) -> Result<(), SessionEnd> {
    let len =
        u32::try_from(frame.len()).map_err(|_| SessionEnd::Stream("frame too large".into()))?;
    let mut buf = Vec::with_capacity(4 + frame.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(frame);
    send.write_all(&buf).await.map_err(|e| SessionEnd::Stream(e.to_string()))
}

async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Vec<u8>, SessionEnd> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(|e| SessionEnd::Stream(e.to_string()))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(SessionEnd::Stream(format!("frame of {len} bytes exceeds the limit")));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await.map_err(|e| SessionEnd::Stream(e.to_string()))?;
    Ok(buf)
}

async fn session(
    ctx: &mut Ctx,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    backoff: &mut Backoff,
) -> Result<(), SessionEnd> {
    let (setup, mut tips) = setup(ctx)?;
    let mut session = NodeSession::new(ctx.config.session, setup, SignatureCheck);
    let _ = session.handle(now_ms(), NodeEvent::Connected);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, SessionEnd>>(READ_AHEAD);
    let reader = tokio::spawn(async move {
        loop {
            let r = read_frame(&mut recv).await;
            let end = r.is_err();
            if tx.send(r).await.is_err() || end {
                break;
            }
        }
    });
    let result = drive(ctx, &mut session, &mut send, &mut rx, &mut tips, backoff).await;
    reader.abort();
    result
}

async fn drive(
    ctx: &mut Ctx,
    session: &mut NodeSession<SignatureCheck>,
    send: &mut quinn::SendStream,
    rx: &mut tokio::sync::mpsc::Receiver<Result<Vec<u8>, SessionEnd>>,
    tips: &mut BTreeMap<StreamId, u64>,
    backoff: &mut Backoff,
) -> Result<(), SessionEnd> {
    let mut timer: Option<i64> = None;
    let mut poll = tokio::time::interval(TIP_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while let Some(action) = session.poll_action() {
            match action {
                NodeAction::Send(frame) => write_frame(send, &frame).await?,
                NodeAction::SetTimer { at_ms } => timer = Some(at_ms),
                NodeAction::CommitFeed { source, item } => {
                    let host = ctx.host.clone();
                    let seq = item.seq;
                    let record = item.record;
                    tokio::task::spawn_blocking(move || host.commit_feed(source, seq, &record))
                        .await
                        .map_err(|e| SessionEnd::Feed(e.to_string()))?
                        .map_err(SessionEnd::Feed)?;
                    let _ = session.handle(now_ms(), NodeEvent::FeedCommitted { source, seq });
                }
                NodeAction::AdoptTip { stream, seq, .. } => {
                    tracing::warn!(
                        stream = stream.0,
                        seq,
                        "the hub offered a tip to adopt; this node is not restored"
                    );
                }
                NodeAction::TipsKnown => backoff.reset(),
                NodeAction::Acked { stream, seq } => {
                    backoff.reset();
                    ctx.acked.send_modify(|m| {
                        let e = m.entry(stream).or_insert(0);
                        *e = (*e).max(seq);
                    });
                }
                NodeAction::LoadRecords { stream, from_seq } => {
                    let records = load_range(
                        ctx.host.store(),
                        stream,
                        from_seq,
                        ctx.config.load_batch.max(1),
                    )?;
                    if records.is_empty() {
                        // The session asked for records the outbox does not hold.
                        return Err(SessionEnd::Closed(format!(
                            "no outbox records of stream {} from seq {from_seq}",
                            stream.0
                        )));
                    }
                    let _ = session.handle(now_ms(), NodeEvent::RecordsLoaded(records));
                }
                NodeAction::KeyPinned(key) => {
                    tracing::info!(device = %key.device_id().fmt_short(), "author key pinned");
                }
                NodeAction::QuarantineSource(source) => {
                    ctx.host.store().write(|tx| tx.quarantine_source(source, now_ms()))?;
                    let source = source.to_text();
                    tracing::error!(
                        source,
                        "ALARM: the hub equivocated on a source: quarantined until you release it \
                         (tradecast-node providers --release-source SOURCE)"
                    );
                }
                NodeAction::Alarm(alarm) => tracing::warn!(?alarm, "sync alarm"),
                NodeAction::Close(reason) => return Err(SessionEnd::Closed(reason.to_string())),
            }
        }
        let wait = timer.map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
        });
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(Ok(bytes)) => {
                    let _ = session.handle(now_ms(), NodeEvent::BytesReceived(&bytes));
                }
                Some(Err(e)) => return Err(e),
                None => return Err(SessionEnd::Stream("reader ended".into())),
            },
            () = tokio::time::sleep(wait) => {
                timer = None;
                let _ = session.handle(now_ms(), NodeEvent::TimerFired);
            }
            () = ctx.appended.notified() => append_new(ctx, session, tips)?,
            _ = poll.tick() => append_new(ctx, session, tips)?,
            _ = ctx.stop.changed() => return Err(SessionEnd::Stop),
        }
    }
}

fn append_new(
    ctx: &Ctx,
    session: &mut NodeSession<SignatureCheck>,
    tips: &mut BTreeMap<StreamId, u64>,
) -> Result<(), SessionEnd> {
    for record in new_records(ctx.host.store(), tips)? {
        if let Err(e) = session.handle(now_ms(), NodeEvent::RecordAppended(record)) {
            // Not the next record as the session sees it: a new session reloads the outbox.
            return Err(SessionEnd::Closed(format!("append refused: {e}")));
        }
    }
    Ok(())
}

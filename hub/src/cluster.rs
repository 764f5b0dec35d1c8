//! Several hub instances on one PostgreSQL: what one instance commits, the others learn at once.
//!
//! The store is the truth; the bus only says *where to look*. An instance that commits a feed
//! entry, revokes a device, disables an account or changes an entitlement publishes a small
//! [`Event`] (never per ack, never per upstream record); every instance listens and applies it
//! to what it holds in memory: it tells the sessions following a provider that its relay log
//! grew (`(source, seq)`), rings the sessions whose inbox grew (one query, as the tip check
//! does), closes a revoked device's connections, re-reads the entitlement events after
//! the last one it saw and re-broadcasts them locally. A lost message costs latency only: the
//! feed tip check still runs every 2 s, and a listener that reconnects catches up from the
//! store.
//!
//! Two backends behind one trait ([`Bus`]), chosen by `cluster.bus`: PostgreSQL's own
//! `LISTEN`/`NOTIFY` (channel `tradecast_cluster`, the default on PostgreSQL), and NATS
//! JetStream (`cluster.nats_url`, a stream `cluster.nats_stream` with a subject per event
//! class, one ordered consumer per instance) for deployments past what one channel carries. On
//! SQLite there is one instance and no bus.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::{BusKind, Config};
use crate::db::{Backend, Db};

/// What one instance tells the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    /// Records were appended to feeds: the `seq`-th record of `source` (its author). The
    /// receivers ring their sessions that have unacknowledged items.
    Feed {
        /// The author whose record was relayed (device id, text form).
        source: String,
        /// Its `seq` in the author's stream.
        seq: u64,
    },
    /// A provider device's relay log grew to `seq` (protocol v2's `(source, seq)`): the
    /// receivers tell their sessions following that provider, which read the entry from the
    /// store.
    Relay {
        /// The provider's account (the registry is keyed by it).
        provider_user_id: String,
        /// The log, as `relay:<device>`.
        source: String,
        /// Its new tip.
        seq: u64,
    },
    /// A device was revoked: every instance closes its connections now.
    DeviceRevoked {
        /// Device id, text form.
        device: String,
    },
    /// An account was disabled: every instance closes its devices' connections now.
    AccountDisabled {
        /// The account.
        user_id: String,
    },
    /// `entitlement_events` grew to `seq`: re-read and re-broadcast what is new.
    Entitlements {
        /// The newest event's `seq`.
        seq: i64,
    },
}

/// An [`Event`] with the instance that sent it (an instance ignores its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sending instance's id (random per process).
    pub origin: String,
    /// What happened.
    pub event: Event,
}

/// A bus failure (logged; the store stays the truth and the tip check the fallback).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// PostgreSQL refused or lost the connection.
    #[error("postgres bus: {0}")]
    Postgres(#[from] sqlx::Error),
    /// NATS refused or lost the connection, or JetStream did not acknowledge.
    #[error("nats bus: {0}")]
    Nats(String),
    /// The configuration names a bus without what it needs.
    #[error("cluster: {0}")]
    Config(&'static str),
    /// The message did not encode (cannot happen for the types above) or is too large.
    #[error("bus message: {0}")]
    Encode(String),
}

/// A boxed future (the bus trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A cluster bus backend: publishes messages; its listener task (started by [`connect`])
/// forwards every message received into the channel it was given.
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// `postgres` or `nats`.
    fn kind(&self) -> &'static str;
    /// Sends `message` to every instance (this one included; it ignores its own).
    fn publish<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<(), BusError>>;
}

/// PostgreSQL `NOTIFY` payloads are limited to 8,000 bytes.
const MAX_PAYLOAD: usize = 7_900;
/// The `LISTEN`/`NOTIFY` channel.
pub const PG_CHANNEL: &str = "tradecast_cluster";

fn encode(message: &Message) -> Result<String, BusError> {
    let text = serde_json::to_string(message).map_err(|e| BusError::Encode(e.to_string()))?;
    if text.len() > MAX_PAYLOAD {
        return Err(BusError::Encode(format!("{} bytes is over {MAX_PAYLOAD}", text.len())));
    }
    Ok(text)
}

/// `LISTEN`/`NOTIFY` on the hub's own PostgreSQL.
#[derive(Debug)]
pub struct PgBus {
    db: Db,
}

impl Bus for PgBus {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn publish<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let payload = encode(message)?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(PG_CHANNEL)
                .bind(payload)
                .execute(self.db.pool())
                .await?;
            Ok(())
        })
    }
}

/// Starts the `LISTEN` task on its own connection; a lost connection is re-opened and reported
/// as a [`Received::Gap`] (the receiver catches up from the store).
async fn pg_listen(url: &str, tx: mpsc::Sender<Received>) -> Result<(), BusError> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(PG_CHANNEL).await?;
    tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match serde_json::from_str::<Message>(n.payload()) {
                    Ok(m) => {
                        if tx.send(Received::Message(m)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed cluster message"),
                },
                // The connection was lost and will be re-opened by the next call: messages in
                // between are gone, so the receiver re-reads the store.
                Ok(None) => {
                    if tx.send(Received::Gap).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster listener failed; retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if tx.is_closed() {
                        return;
                    }
                }
            }
        }
    });
    Ok(())
}

/// NATS JetStream: one stream, a subject per event class, one ordered consumer per instance
/// delivering what is published after it started.
#[derive(Debug)]
pub struct NatsBus {
    js: async_nats::jetstream::Context,
    subject_prefix: String,
}

impl NatsBus {
    fn subject(&self, event: &Event) -> String {
        let class = match event {
            Event::Feed { .. } => "feed",
            Event::Relay { .. } => "relay",
            Event::DeviceRevoked { .. } | Event::AccountDisabled { .. } => "control",
            Event::Entitlements { .. } => "entitlements",
        };
        format!("{}.{class}", self.subject_prefix)
    }
}

impl Bus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn publish<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let payload = encode(message)?;
            let ack = self
                .js
                .publish(self.subject(&message.event), payload.into_bytes().into())
                .await
                .map_err(|e| BusError::Nats(e.to_string()))?;
            ack.await.map_err(|e| BusError::Nats(e.to_string()))?;
            Ok(())
        })
    }
}

async fn nats_connect(
    url: &str,
    stream: &str,
    tx: mpsc::Sender<Received>,
) -> Result<NatsBus, BusError> {
    use async_nats::jetstream::{self, consumer, stream as js_stream};
    use futures::StreamExt;
    let client = async_nats::connect(url).await.map_err(|e| BusError::Nats(e.to_string()))?;
    let js = jetstream::new(client);
    let subject_prefix = stream.to_ascii_lowercase();
    let config = js_stream::Config {
        name: stream.to_string(),
        subjects: vec![format!("{subject_prefix}.>")],
        // Only live delivery matters (the store is the truth): keep little, briefly.
        max_age: std::time::Duration::from_secs(600),
        max_messages: 100_000,
        storage: js_stream::StorageType::Memory,
        ..Default::default()
    };
    let handle =
        js.get_or_create_stream(config).await.map_err(|e| BusError::Nats(e.to_string()))?;
    let consumer = handle
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::Nats(e.to_string()))?;
    let mut messages = consumer.messages().await.map_err(|e| BusError::Nats(e.to_string()))?;
    tokio::spawn(async move {
        while let Some(next) = messages.next().await {
            let received = match next {
                Ok(m) => match serde_json::from_slice::<Message>(&m.payload) {
                    Ok(m) => Received::Message(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring a malformed cluster message");
                        continue;
                    }
                },
                Err(e) => {
                    // The ordered consumer re-creates itself; what it skipped, the store has.
                    tracing::warn!(error = %e, "cluster consumer interrupted");
                    Received::Gap
                }
            };
            if tx.send(received).await.is_err() {
                return;
            }
        }
    });
    Ok(NatsBus { js, subject_prefix })
}

/// What a listener hands the applier.
#[derive(Debug)]
pub enum Received {
    /// A message from an instance (maybe this one).
    Message(Message),
    /// Messages may have been lost: re-read the store.
    Gap,
}

/// This instance's side of the cluster: its id and its bus (none on a single instance).
#[derive(Debug, Clone)]
pub struct Cluster {
    instance: String,
    bus: Option<Arc<dyn Bus>>,
    /// What the bus's listener received, until [`spawn`] takes it.
    incoming: Arc<Mutex<Option<mpsc::Receiver<Received>>>>,
    /// Messages to send: [`Cluster::publish`] queues, one task sends (never on a caller's path).
    outgoing: Option<mpsc::Sender<Message>>,
    /// The queue's other end, until [`spawn`] starts the sender.
    outgoing_rx: Arc<Mutex<Option<mpsc::Receiver<Message>>>>,
    /// The newest `entitlement_events.seq` broadcast here.
    entitlements_seen: Arc<AtomicI64>,
}

impl Cluster {
    /// A single instance: publishing does nothing.
    pub fn single() -> Cluster {
        Cluster {
            instance: crate::ids::random_hex(8),
            bus: None,
            incoming: Arc::new(Mutex::new(None)),
            outgoing: None,
            outgoing_rx: Arc::new(Mutex::new(None)),
            entitlements_seen: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Connects the bus `config.cluster` asks for (default: PostgreSQL's on a PostgreSQL
    /// store, none on SQLite) and starts listening.
    pub async fn connect(config: &Config, db: &Db) -> Result<Cluster, BusError> {
        let mut cluster = Cluster::single();
        let kind = match (config.cluster.bus, db.backend()) {
            (Some(kind), _) => kind,
            (None, Backend::Postgres) => BusKind::Postgres,
            (None, Backend::Sqlite) => BusKind::None,
        };
        let (tx, rx) = mpsc::channel(4096);
        let bus: Arc<dyn Bus> = match kind {
            BusKind::None => return Ok(cluster),
            BusKind::Postgres => {
                let url = config
                    .database_url
                    .as_ref()
                    .filter(|_| db.backend() == Backend::Postgres)
                    .ok_or(BusError::Config("cluster.bus = postgres needs a PostgreSQL store"))?;
                pg_listen(url.expose(), tx).await?;
                Arc::new(PgBus { db: db.clone() })
            }
            BusKind::Nats => {
                let url = config
                    .cluster
                    .nats_url
                    .as_ref()
                    .ok_or(BusError::Config("cluster.bus = nats needs cluster.nats_url"))?;
                Arc::new(nats_connect(url.expose(), &config.cluster.nats_stream, tx).await?)
            }
        };
        // An unmigrated store has no events yet (the hub starts and says it is not ready).
        let newest: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM entitlement_events")
                .fetch_one(db.pool())
                .await
                .unwrap_or(0);
        cluster.entitlements_seen.store(newest, Ordering::Release);
        let (out_tx, out_rx) = mpsc::channel(OUTGOING_QUEUE);
        cluster.bus = Some(bus);
        cluster.incoming = Arc::new(Mutex::new(Some(rx)));
        cluster.outgoing = Some(out_tx);
        cluster.outgoing_rx = Arc::new(Mutex::new(Some(out_rx)));
        tracing::info!(bus = kind.as_str(), instance = %cluster.instance, "cluster bus connected");
        Ok(cluster)
    }

    /// This instance's id (random per process).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The bus in use (`None`: single instance).
    pub fn bus_kind(&self) -> Option<&'static str> {
        self.bus.as_ref().map(|b| b.kind())
    }

    /// Tells the other instances, without waiting: the message is queued for this instance's
    /// sender task, so no request or sync session waits on the bus. A full queue or a failed
    /// send is logged and counted, never returned (the store is the truth, the others catch up
    /// by their own checks).
    pub fn publish(&self, event: Event) {
        let Some(outgoing) = &self.outgoing else { return };
        let message = Message { origin: self.instance.clone(), event };
        if let Err(e) = outgoing.try_send(message) {
            metrics::counter!("tradecast_cluster_publish_failed_total").increment(1);
            tracing::warn!(error = %e, "cluster message not queued");
        }
    }
}

/// Messages queued for the bus at most (a bus that stalls this long loses latency, not data).
const OUTGOING_QUEUE: usize = 4096;

/// Sends the queued messages one after the other (their order is kept).
async fn send_queued(bus: Arc<dyn Bus>, mut rx: mpsc::Receiver<Message>) {
    while let Some(message) = rx.recv().await {
        if let Err(e) = bus.publish(&message).await {
            metrics::counter!("tradecast_cluster_publish_failed_total").increment(1);
            tracing::warn!(error = %e, event = ?message.event, "cluster publish failed");
        }
    }
}

/// Starts this instance's cluster tasks: applying what the others publish, and forwarding its
/// own entitlement changes (both end with the state's bus; the caller aborts them at stop).
pub fn spawn(state: &crate::state::AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(forward_entitlements(state.clone()))];
    let incoming =
        state.cluster.incoming.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    if let Some(rx) = incoming {
        tasks.push(tokio::spawn(apply(state.clone(), rx)));
    }
    let outgoing =
        state.cluster.outgoing_rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    if let (Some(bus), Some(rx)) = (state.cluster.bus.clone(), outgoing) {
        tasks.push(tokio::spawn(send_queued(bus, rx)));
    }
    tasks
}

/// Applies what the other instances publish to this instance's memory, until the bus's
/// listener ends. Runs as one task per instance.
async fn apply(state: crate::state::AppState, mut rx: mpsc::Receiver<Received>) {
    while let Some(received) = rx.recv().await {
        match received {
            Received::Message(m) if m.origin == state.cluster.instance => {}
            Received::Message(m) => apply_one(&state, m.event).await,
            Received::Gap => {
                state.feed_bell.ring_unacked(&state.db).await;
                state.relay.refresh_all();
                rebroadcast_entitlements(&state).await;
            }
        }
    }
}

async fn apply_one(state: &crate::state::AppState, event: Event) {
    match event {
        Event::Feed { .. } => state.feed_bell.ring_unacked(&state.db).await,
        Event::Relay { provider_user_id, source, seq } => {
            match tradecast_protocol::session::Source::from_text(&source) {
                Some(tradecast_protocol::session::Source::Relay(device)) => {
                    state.relay.tip(&provider_user_id, device, seq);
                }
                _ => tracing::warn!(source, "cluster relay message for no relay log"),
            }
        }
        Event::DeviceRevoked { device } => close_device(state, &device, "device revoked"),
        Event::AccountDisabled { user_id } => close_account(state, &user_id).await,
        Event::Entitlements { .. } => rebroadcast_entitlements(state).await,
    }
}

/// Closes this instance's connections of `device` (text form), refused for `reason`.
fn close_device(state: &crate::state::AppState, device: &str, reason: &str) {
    if let Ok(device) = tradecast_protocol::DeviceId::parse(device) {
        state.quic_peers.close_device(&device, crate::quic::close_code::DEVICE_REFUSED, reason);
    }
}

/// A device was revoked here: closes its connections on this instance now (not at their next
/// check) and tells the others.
pub fn device_revoked(state: &crate::state::AppState, device: &str) {
    close_device(state, device, "device revoked");
    state.cluster.publish(Event::DeviceRevoked { device: device.to_string() });
}

/// An account was disabled here: closes its devices' connections on this instance and tells
/// the others.
pub async fn account_disabled(state: &crate::state::AppState, user_id: &str) {
    close_account(state, user_id).await;
    state.cluster.publish(Event::AccountDisabled { user_id: user_id.to_string() });
}

/// Closes the connections this instance holds for `user_id`'s devices.
pub async fn close_account(state: &crate::state::AppState, user_id: &str) {
    let devices: Vec<String> = match sqlx::query_scalar("SELECT id FROM devices WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(state.db.pool())
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "listing a disabled account's devices failed");
            return;
        }
    };
    for d in devices {
        close_device(state, &d, "account disabled");
    }
}

/// Re-reads `entitlement_events` after the newest one seen here and broadcasts them locally.
async fn rebroadcast_entitlements(state: &crate::state::AppState) {
    loop {
        let after = state.cluster.entitlements_seen.load(Ordering::Acquire);
        let batch = match crate::entitlements::events_since(&state.db, after, 500).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading entitlement events failed");
                return;
            }
        };
        let Some(last) = batch.last().map(|c| c.seq) else { return };
        state.cluster.entitlements_seen.fetch_max(last, Ordering::AcqRel);
        for change in batch {
            state.entitlement_changes.publish_remote(change);
        }
    }
}

/// Forwards this instance's own entitlement changes to the others (runs as a task).
async fn forward_entitlements(state: crate::state::AppState) {
    let Some(mut local) = state.entitlement_changes.take_local() else { return };
    while let Some(seq) = local.recv().await {
        state.cluster.entitlements_seen.fetch_max(seq, Ordering::AcqRel);
        state.cluster.publish(Event::Entitlements { seq });
    }
}

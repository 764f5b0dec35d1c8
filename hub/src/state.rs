//! The shared state every handler receives: configuration, database, keys, rate limiter,
//! clock and metrics. Built once at start, cheap to clone.

use std::ops::Deref;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::db::Db;
use crate::ids::Clock;
use crate::ratelimit::RateLimiter;
use crate::secrets::HubSecrets;
use crate::tokens::JwtKeys;

/// What handlers share.
pub struct Inner {
    /// Validated configuration.
    pub config: Config,
    /// The SQL store.
    pub db: Db,
    /// Access-token keys.
    pub jwt: JwtKeys,
    /// Secrets (redacted `Debug`).
    pub secrets: HubSecrets,
    /// The hub's identity, pinned by nodes at enrolment.
    pub hub_identity: tradecast_protocol::Identity,
    /// Token buckets.
    pub limiter: Arc<dyn RateLimiter>,
    /// Time.
    pub clock: Clock,
    /// Prometheus registry.
    pub metrics: PrometheusHandle,
    /// Live QUIC connections by device (a revocation closes them).
    pub quic_peers: crate::quic::Peers,
    /// This instance's id and cluster bus (what it commits, the other instances learn at once).
    pub cluster: crate::cluster::Cluster,
    /// Committed entitlement grants and ends (the registry and FeatureGrant issuer follow it).
    pub entitlement_changes: crate::entitlements::Changes,
    /// Wakes the sync sessions of devices whose feed (inbox) grew.
    pub feed_bell: crate::feed::FeedBell,
    /// The sync sessions by the providers whose relay logs they follow (live broadcast).
    pub relay: crate::relay::Registry,
    /// Writes the nodes' relay cursors in batches.
    pub relay_cursors: crate::relay::CursorWriter,
    /// Billing's doors (Stripe; Telegram Stars with the bot).
    pub billing: crate::billing::Billing,
    /// The Telegram bot (off without its token).
    pub telegram: crate::telegram::Telegram,
    /// When this instance's state was built (its start), unix ms.
    pub started_at_ms: i64,
    /// Wakes this instance's outbox runner (`outbox::wake`, after committing an enqueue).
    pub outbox_bell: tokio::sync::Notify,
    /// The public track record's views, computed once per cutoff.
    pub public_cache: crate::public::cache::PublicCache,
}

/// Cheap, cloneable handle on [`Inner`].
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("db", &self.db.backend())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Current time, unix ms.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

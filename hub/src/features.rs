//! FeatureGrants: the hub tells each device, in a record signed by the hub's identity key, which
//! plan features it holds and for how long.
//!
//! One grant per (entitlement, device): `grant_id` is the entitlement's id, `valid_from_ms` and
//! `valid_until_ms` its interval, `features` its plan's. A grant is issued in the transaction
//! that commits its cause — the entitlement's grant or end ([`crate::entitlements`]), or the
//! device's enrolment (every interval of the account not yet over) — as the next record of the
//! hub's `HUB_REQUESTS` chain, appended to the device's feed. An end issues the same `grant_id`
//! again with the new `valid_until_ms`: the node keeps the latest of each id
//! (`issued_at_ms`, then its chain position), so it learns of a refund or a cancellation as
//! soon as it syncs, and never from anything but the hub's signature.

use tradecast_protocol::{
    Body, DeviceId, Feature, FeatureGrant, GrantId, Identity, Record, StreamId,
};

use crate::db::DbError;
use crate::entitlements::Entitlement;
use crate::feed::{self, Tx};

/// The protocol's feature of a plan's feature name (`None` for a name the protocol does not
/// know; plans only store names it knows, checked at creation).
pub fn feature(name: &str) -> Option<Feature> {
    Feature::ALL.into_iter().find(|f| f.as_str() == name)
}

/// A grant that could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The hub's own chain could not be extended.
    #[error("hub chain: {0}")]
    Chain(String),
    /// Stored data violates an invariant (an id that is not 32 hex digits).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for IssueError {
    fn from(e: sqlx::Error) -> Self {
        IssueError::Db(DbError::from(e))
    }
}

impl From<IssueError> for crate::error::ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Db(d) => d.into(),
            other => DbError::Corrupt(other.to_string()).into(),
        }
    }
}

/// Signs the grant of `e` for `device` and appends it to the device's feed, inside `tx`.
async fn issue(
    tx: &mut Tx,
    hub: &Identity,
    e: &Entitlement,
    features: &[String],
    device: &str,
    now_ms: i64,
) -> Result<Record, IssueError> {
    let grant = FeatureGrant {
        grant_id: GrantId::from_hex(&e.id)
            .ok_or_else(|| IssueError::Corrupt(format!("entitlement id {:?}", e.id)))?,
        device: DeviceId::parse(device)
            .map_err(|_| IssueError::Corrupt(format!("device id {device:?}")))?,
        plan_id: e.plan_id.clone(),
        features: features.iter().filter_map(|f| feature(f)).collect(),
        valid_from_ms: e.starts_at_ms,
        valid_until_ms: e.ends_at_ms(),
        issued_at_ms: now_ms,
    };
    let record = crate::quic::store::hub_record(
        tx,
        hub,
        StreamId::HUB_REQUESTS,
        &Body::FeatureGrant(grant),
        now_ms,
    )
    .await
    .map_err(|e| IssueError::Chain(e.to_string()))?;
    feed::append_to_device(tx, device, &record, now_ms).await?;
    Ok(record)
}

async fn plan_features(tx: &mut Tx, plan_id: &str) -> Result<Vec<String>, IssueError> {
    let text: String = sqlx::query_scalar("SELECT features FROM plans WHERE id = $1")
        .bind(plan_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(crate::plans::features_from_sql(&text))
}

/// What an issue appended: the devices whose feed grew, and the hub chain's last `seq`.
#[derive(Debug, Default)]
pub struct Issued {
    /// Devices (text form) whose feed grew.
    pub devices: Vec<String>,
    /// The `seq` of the last grant in the hub's `HUB_REQUESTS` chain.
    pub last_seq: u64,
}

/// Issues `e`'s grant (as it is now) to every active device of its account.
pub async fn issue_for_entitlement(
    tx: &mut Tx,
    hub: &Identity,
    e: &Entitlement,
    now_ms: i64,
) -> Result<Issued, IssueError> {
    let features = plan_features(tx, &e.plan_id).await?;
    let devices: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM devices WHERE user_id = $1 AND revoked_at_ms IS NULL ORDER BY id",
    )
    .bind(&e.user_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut last_seq = 0;
    for d in &devices {
        last_seq = issue(tx, hub, e, &features, d, now_ms).await?.header().seq;
    }
    Ok(Issued { devices, last_seq })
}

/// Issues to a newly enrolled `device` the grant of every interval of its account that is not
/// over yet (in force, or starting later).
pub async fn issue_for_device(
    tx: &mut Tx,
    hub: &Identity,
    user_id: &str,
    device: &str,
    now_ms: i64,
) -> Result<usize, IssueError> {
    let open = crate::entitlements::not_over_in(tx, user_id, now_ms).await?;
    for e in &open {
        let features = plan_features(tx, &e.plan_id).await?;
        issue(tx, hub, e, &features, device, now_ms).await?;
    }
    Ok(open.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_feature_name_is_a_protocol_feature() {
        for f in Feature::ALL {
            assert_eq!(feature(f.as_str()), Some(f));
        }
        for name in crate::plans::DEFAULT_FEATURES {
            assert_eq!(feature(name).map(Feature::as_str), Some(name));
        }
        assert_eq!(feature("teleport"), None);
    }
}

//! The schema-3 tables of what the hub signs for this device: approval requests (by request
//! id), feature grants (by grant id, the one issued last) and the hub-signed feed items refused
//! (by feed seq, with the reason). Rows are JSON. Only verified items are stored here
//! ([`tradecast_protocol::verify_hub_request`], run by the feed); acting on a request is not
//! this module's business.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use tradecast_protocol::{AnswerOutcome, ApprovalRequest, FeatureGrant, GrantId, RequestId};

use super::{FEATURE_GRANTS, HUB_REFUSALS, HUB_REQUESTS, StoreError, Tx, View, from_row, to_row};

/// A verified [`ApprovalRequest`] for this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    pub request: ApprovalRequest,
    /// The feed item that carried it (its record stays in the `feed` table).
    pub feed_seq: u64,
    /// Wall clock when it was committed, unix ms.
    pub received_at_ms: i64,
    /// What this node answered, once it has (set in the write that commits the request: `runtime::remote`).
    #[serde(default)]
    pub answered: Option<AnswerOutcome>,
}

/// A verified [`FeatureGrant`] for this device: the one issued last under its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGrant {
    pub grant: FeatureGrant,
    pub feed_seq: u64,
    pub received_at_ms: i64,
}

/// A hub-signed feed item refused, and why (kept for the trader and support; the item itself
/// stays in the `feed` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubRefusalRow {
    pub feed_seq: u64,
    /// The record kind's name (`approval_request`, `feature_grant`).
    pub kind: String,
    /// The record's author, text form.
    pub author: String,
    pub header_hash: String,
    /// A stable code of the refusal (`wrong_signer`, `wrong_device`, `expired`, …).
    pub code: String,
    /// The refusal in words.
    pub reason: String,
    pub at_ms: i64,
}

impl Tx<'_> {
    /// The grants in force at `now_ms` (wall clock), read inside a write transaction (the copy
    /// policy's plan gate).
    pub fn feature_grants_at(&self, now_ms: i64) -> Result<Vec<FeatureGrant>, StoreError> {
        Ok(self
            .all_json::<StoredGrant>(FEATURE_GRANTS, "feature_grants")?
            .into_iter()
            .map(|g| g.grant)
            .filter(|g| g.in_force_at(now_ms))
            .collect())
    }

    /// A stored request, by id.
    pub fn hub_request(&self, id: &RequestId) -> Result<Option<StoredRequest>, StoreError> {
        self.get_json(HUB_REQUESTS, "hub_requests", &id.to_hex())
    }

    /// Stores a verified request (the caller de-duplicates by id first).
    pub fn put_hub_request(&mut self, row: &StoredRequest) -> Result<(), StoreError> {
        self.put_json(HUB_REQUESTS, "hub_requests", &row.request.request_id.to_hex(), row)
    }

    /// A stored grant, by id.
    pub fn feature_grant(&self, id: &GrantId) -> Result<Option<StoredGrant>, StoreError> {
        self.get_json(FEATURE_GRANTS, "feature_grants", &id.to_hex())
    }

    /// Stores a verified grant, replacing an older issue of the same id.
    pub fn put_feature_grant(&mut self, row: &StoredGrant) -> Result<(), StoreError> {
        self.put_json(FEATURE_GRANTS, "feature_grants", &row.grant.grant_id.to_hex(), row)
    }

    /// Records a refused hub-signed feed item.
    pub fn put_hub_refusal(&mut self, row: &HubRefusalRow) -> Result<(), StoreError> {
        let bytes = to_row("hub_refusals", row)?;
        self.tx.open_table(HUB_REFUSALS)?.insert(row.feed_seq, bytes.as_slice())?;
        Ok(())
    }
}

impl View {
    /// Every stored request, by id.
    pub fn hub_requests(&self) -> Result<Vec<StoredRequest>, StoreError> {
        self.all_json(HUB_REQUESTS, "hub_requests")
    }

    /// The requests still to act on at `now_ms` (wall clock): not answered and not expired, the
    /// oldest request first.
    pub fn pending_requests(&self, now_ms: i64) -> Result<Vec<StoredRequest>, StoreError> {
        let mut out: Vec<StoredRequest> = self
            .hub_requests()?
            .into_iter()
            .filter(|r| r.answered.is_none() && now_ms < r.request.expires_at_ms)
            .collect();
        out.sort_by_key(|r| (r.request.requested_at_ms, r.request.request_id));
        Ok(out)
    }

    /// Every stored grant (ended ones included), by id.
    pub fn feature_grants(&self) -> Result<Vec<StoredGrant>, StoreError> {
        self.all_json(FEATURE_GRANTS, "feature_grants")
    }

    /// The grants in force at `now_ms` (wall clock): `valid_from_ms` ≤ now < `valid_until_ms`.
    pub fn feature_grants_at(&self, now_ms: i64) -> Result<Vec<FeatureGrant>, StoreError> {
        Ok(self
            .feature_grants()?
            .into_iter()
            .map(|g| g.grant)
            .filter(|g| g.in_force_at(now_ms))
            .collect())
    }

    /// The refused hub-signed feed items, in feed order.
    pub fn hub_refusals(&self) -> Result<Vec<HubRefusalRow>, StoreError> {
        let t = self.tx.open_table(HUB_REFUSALS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (_, v) = e?;
            out.push(from_row("hub_refusals", v.value())?);
        }
        Ok(out)
    }
}

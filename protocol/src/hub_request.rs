//! Checking a hub-signed record addressed to one device: an [`ApprovalRequest`] or a
//! [`FeatureGrant`] on [`StreamId::HUB_REQUESTS`]. Pure; the node calls it on every such record
//! in its feed, with the hub key it pinned at enrolment and its wall clock.
//!
//! The hub writes the requests of all devices in one chain, and a node sees only its own
//! items, so continuity is not checked here; the node de-duplicates by request/grant id.
//! An expired request is refused ([`HubRequestError::Expired`]); a grant is never refused for
//! having ended, because the hub ends a grant early by re-issuing it with an end, and that end
//! must reach the node however late it arrives.

use crate::domain::{ApprovalRequest, FeatureGrant};
use crate::identity::{DeviceId, IdentityKey};
use crate::record::{Body, DecodeError, Kind, Record, Signer, StreamId, VerifyError};

/// A verified hub request for this device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubRequest {
    Approval(ApprovalRequest),
    Grant(FeatureGrant),
}

/// Why a hub-signed record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HubRequestError {
    /// Not a kind the hub signs for a device.
    #[error("a {0:?} record is not a hub request")]
    WrongKind(Kind),
    /// A hub request on another stream than `HUB_REQUESTS`.
    #[error("a hub request on stream {0}")]
    WrongStream(u32),
    /// The record's author is not the pinned hub.
    #[error("signed by {author}, not by the pinned hub {hub}")]
    WrongSigner { author: DeviceId, hub: DeviceId },
    /// The signature or the body hash does not verify under the pinned hub key.
    #[error("the hub's signature does not verify: {0}")]
    BadSignature(VerifyError),
    /// The body does not decode (or is sealed).
    #[error("the body does not decode: {0}")]
    Decode(DecodeError),
    /// The request names another device.
    #[error("addressed to {to}, this device is {me}")]
    WrongDevice { to: DeviceId, me: DeviceId },
    /// The request's `expires_at_ms` has passed.
    #[error("expired at {expires_at_ms} (now {now_ms})")]
    Expired { expires_at_ms: i64, now_ms: i64 },
}

/// Checks `record` as a hub request for device `me` at `now_ms` (unix ms): kind and stream,
/// author and signature against the pinned `hub_key`, the body, the addressee, the expiry —
/// in that order, so a forgery is named by its first fault.
pub fn verify_hub_request(
    record: &Record,
    hub_key: &IdentityKey,
    me: DeviceId,
    now_ms: i64,
) -> Result<HubRequest, HubRequestError> {
    let header = record.header();
    if header.kind.signer() != Signer::Hub || header.kind == Kind::Receipt {
        return Err(HubRequestError::WrongKind(header.kind));
    }
    if header.stream != StreamId::HUB_REQUESTS {
        return Err(HubRequestError::WrongStream(header.stream.0));
    }
    let hub = hub_key.device_id();
    if header.author != hub {
        return Err(HubRequestError::WrongSigner { author: header.author, hub });
    }
    record.verify(hub_key).map_err(HubRequestError::BadSignature)?;
    let request = match record.body().map_err(HubRequestError::Decode)? {
        Body::ApprovalRequest(r) => HubRequest::Approval(r),
        Body::FeatureGrant(g) => HubRequest::Grant(g),
        // The kind was checked above and the body decodes as its kind.
        other => return Err(HubRequestError::WrongKind(other.kind())),
    };
    let to = match &request {
        HubRequest::Approval(r) => r.device,
        HubRequest::Grant(g) => g.device,
    };
    if to != me {
        return Err(HubRequestError::WrongDevice { to, me });
    }
    if let HubRequest::Approval(r) = &request
        && now_ms >= r.expires_at_ms
    {
        return Err(HubRequestError::Expired { expires_at_ms: r.expires_at_ms, now_ms });
    }
    Ok(request)
}

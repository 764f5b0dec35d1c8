//! This device's own `DeviceKeys` records on its DEVICE stream: the latest one, and a new one
//! when the EA's trading account is not the one it fingerprints.
//!
//! The first `DeviceKeys` is the one the node enrolled with (no fingerprint: the hub's key comes
//! with the enrolment's answer). Each later one repeats the identity and sealing keys and the
//! label and carries the account fingerprint ([`AccountFingerprint`]: the keyed hash of broker
//! server and login under the hub's key, [`super::hub_pin::fingerprint_key_in`]); the sync
//! driver uploads it with the rest of the stream, and the hub keeps it on the device's row. A
//! hello on the account the latest record already fingerprints appends nothing, so a restart
//! does not grow the stream; another account appends one.

use redb::ReadableTable;
use tradecast_protocol::{AccountFingerprint, Body, DeviceKeys, Identity, Kind, Record, StreamId};

use super::{OUTBOX, StoreError, Tx};

impl Tx<'_> {
    /// The latest `DeviceKeys` this node signed on its DEVICE stream (`None` before enrolment).
    pub fn latest_device_keys(&self) -> Result<Option<DeviceKeys>, StoreError> {
        let t = self.tx.open_table(OUTBOX)?;
        let row = |message: String| StoreError::Row { table: "outbox", message };
        let device = StreamId::DEVICE.0;
        // Newest first: the heartbeats after the latest keys are skipped by their header.
        for entry in t.range((device, 0)..=(device, u64::MAX))?.rev() {
            let (_, v) = entry?;
            let record = Record::decode(v.value()).map_err(|e| row(e.to_string()))?;
            if record.header().kind != Kind::DeviceKeys {
                continue;
            }
            return match record.body() {
                Ok(Body::DeviceKeys(keys)) => Ok(Some(keys)),
                Ok(_) => Err(row("a DeviceKeys header over another body".into())),
                Err(e) => Err(row(e.to_string())),
            };
        }
        Ok(None)
    }

    /// Appends a `DeviceKeys` record carrying the fingerprint of `login` on `server` when the
    /// latest one does not carry it: the same keys and label, `at_ms` = `now_ms`. Nothing when
    /// the hub's fingerprint key is not known yet or the node never signed its keys (not
    /// enrolled). The fingerprint appended, if any.
    pub fn sign_account_fingerprint(
        &mut self,
        identity: &Identity,
        login: u64,
        server: &str,
        now_ms: i64,
    ) -> Result<Option<AccountFingerprint>, StoreError> {
        let Some(key) = super::hub_pin::fingerprint_key_in(self)? else { return Ok(None) };
        let Some(latest) = self.latest_device_keys()? else { return Ok(None) };
        let fingerprint = AccountFingerprint::compute(&key, server, login);
        if latest.account_fingerprint == Some(fingerprint) {
            return Ok(None);
        }
        let keys = DeviceKeys {
            identity: identity.identity_key(),
            sealing: identity.sealing_public_key(),
            label: latest.label,
            at_ms: now_ms,
            account_fingerprint: Some(fingerprint),
        };
        self.append_record(identity, StreamId::DEVICE, &Body::DeviceKeys(keys), now_ms)?;
        Ok(Some(fingerprint))
    }
}

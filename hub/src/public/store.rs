//! The SQL of the public track record: the provider, its devices and keys, the records of
//! their signals chains from both doors (the sync store `sync_records` with the receipt
//! signature it stored, and the signals API's `signals`, whose receipt the hub signs again: an
//! Ed25519 signature over the same fields is the same bytes the API answered), and the records
//! of their published streams (`StreamId::PUBLISHED`, which only the sync store receives).

use sqlx::Row;
use tradecast_protocol::receipt::ReceiptFields;
use tradecast_protocol::{DeviceId, Identity, IdentityKey, Receipt, Record, Signature, StreamId};

use crate::analytics::StoredItem;
use crate::db::{Db, DbError};

/// A provider whose record is public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The account id.
    pub id: String,
    /// The name it shows.
    pub display_name: String,
}

/// An enabled provider account by id.
pub async fn provider(db: &Db, id: &str) -> Result<Option<Provider>, DbError> {
    let row = sqlx::query(
        "SELECT id, display_name FROM users WHERE id = $1 AND role = 'provider' AND disabled_at_ms IS NULL",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| Ok(Provider { id: r.try_get(0)?, display_name: r.try_get(1)? })).transpose()
}

/// The identity keys of every device the provider ever enrolled (a revoked device's chain is
/// still its record), oldest first.
pub async fn device_keys(db: &Db, user_id: &str) -> Result<Vec<IdentityKey>, DbError> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT identity_key FROM devices WHERE user_id = $1 ORDER BY enrolled_at_ms, id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    keys.iter()
        .map(|k| IdentityKey::from_hex(k).map_err(|e| DbError::Corrupt(format!("device key: {e}"))))
        .collect()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("{what}: {e}"))
}

fn decode(bytes: &[u8]) -> Result<Record, DbError> {
    Record::decode(bytes).map_err(|e| corrupt("stored record", e))
}

fn signature(hex_text: &str) -> Result<Signature, DbError> {
    let mut out = [0u8; 64];
    hex::decode_to_slice(hex_text, &mut out).map_err(|e| corrupt("receipt signature", e))?;
    Ok(Signature(out))
}

fn committed_item(
    hub: &Identity,
    bytes: &[u8],
    received_at_ms: i64,
    receipt_hex: &str,
) -> Result<StoredItem, DbError> {
    let record = decode(bytes)?;
    let header = *record.header();
    let fields = ReceiptFields {
        hub: hub.device_id(),
        header_hash: record.header_hash(),
        author: header.author,
        stream: header.stream,
        seq: header.seq,
        received_at_ms,
    };
    let receipt = Receipt { fields, signature: signature(receipt_hex)? };
    Ok(StoredItem { seq: header.seq, record, received_at_ms, receipt })
}

fn posted_item(hub: &Identity, bytes: &[u8], received_at_ms: i64) -> Result<StoredItem, DbError> {
    let record = decode(bytes)?;
    let receipt = Receipt::sign(hub, &record, received_at_ms);
    Ok(StoredItem { seq: record.header().seq, record, received_at_ms, receipt })
}

/// `author`'s records of `stream` committed by the sync store, in `seq` order.
async fn committed_records(
    db: &Db,
    hub: &Identity,
    author: &DeviceId,
    stream: StreamId,
) -> Result<Vec<StoredItem>, DbError> {
    let rows = sqlx::query(
        "SELECT record, received_at_ms, receipt_signature FROM sync_records \
         WHERE author = $1 AND stream = $2 ORDER BY seq",
    )
    .bind(author.to_text())
    .bind(i64::from(stream.0))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let bytes: Vec<u8> = r.try_get(0)?;
            let received: i64 = r.try_get(1)?;
            let sig: String = r.try_get(2)?;
            committed_item(hub, &bytes, received, &sig)
        })
        .collect()
}

/// `author`'s published-stream records (`StreamId::PUBLISHED`, sync store only), in `seq`
/// order.
pub async fn published_records(
    db: &Db,
    hub: &Identity,
    author: &DeviceId,
) -> Result<Vec<StoredItem>, DbError> {
    committed_records(db, hub, author, StreamId::PUBLISHED).await
}

/// `author`'s signals-chain records: (committed by sync, posted to the signals API), each in
/// `seq` order.
pub async fn chain_records(
    db: &Db,
    hub: &Identity,
    author: &DeviceId,
) -> Result<(Vec<StoredItem>, Vec<StoredItem>), DbError> {
    let stream = i64::from(StreamId::SIGNALS.0);
    let committed = committed_records(db, hub, author, StreamId::SIGNALS).await?;
    let rows = sqlx::query(
        "SELECT record, received_at_ms FROM signals WHERE author = $1 AND stream = $2 ORDER BY seq",
    )
    .bind(author.to_text())
    .bind(stream)
    .fetch_all(db.pool())
    .await?;
    let posted = rows
        .iter()
        .map(|r| {
            let bytes: Vec<u8> = r.try_get(0)?;
            let received: i64 = r.try_get(1)?;
            posted_item(hub, &bytes, received)
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok((committed, posted))
}

/// The signals-chain record with header hash `hash` (hex) of a provider's device, with the
/// provider's account id.
pub async fn record_by_hash(
    db: &Db,
    hub: &Identity,
    hash: &str,
) -> Result<Option<(StoredItem, String)>, DbError> {
    let stream = i64::from(StreamId::SIGNALS.0);
    let row = sqlx::query(
        "SELECT r.record, r.received_at_ms, r.receipt_signature, d.user_id FROM sync_records r \
         JOIN devices d ON d.id = r.author JOIN users u ON u.id = d.user_id \
         WHERE r.header_hash = $1 AND r.stream IN ($2, $3) AND u.role = 'provider' AND u.disabled_at_ms IS NULL",
    )
    .bind(hash)
    .bind(stream)
    .bind(i64::from(StreamId::PUBLISHED.0))
    .fetch_optional(db.pool())
    .await?;
    if let Some(r) = row {
        let bytes: Vec<u8> = r.try_get(0)?;
        let sig: String = r.try_get(2)?;
        let item = committed_item(hub, &bytes, r.try_get(1)?, &sig)?;
        return Ok(Some((item, r.try_get(3)?)));
    }
    let row = sqlx::query(
        "SELECT s.record, s.received_at_ms, s.provider_user_id FROM signals s \
         JOIN users u ON u.id = s.provider_user_id \
         WHERE s.record_hash = $1 AND s.stream = $2 AND u.role = 'provider' AND u.disabled_at_ms IS NULL",
    )
    .bind(hash)
    .bind(stream)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        let bytes: Vec<u8> = r.try_get(0)?;
        Ok((posted_item(hub, &bytes, r.try_get(1)?)?, r.try_get(2)?))
    })
    .transpose()
}

/// Every delivery of `provider_id`'s signals received before `cutoff_ms` to a subscriber device
/// (not the provider's own), with what that device reported before the cutoff (its decision and
/// fill, from its signed shared-stream records): the copy-fidelity rows.
pub async fn deliveries(
    db: &Db,
    provider_id: &str,
    cutoff_ms: i64,
) -> Result<Vec<crate::analytics::fidelity::Delivery>, DbError> {
    deliveries_where(db, "s.provider_user_id = $1 AND d.user_id <> $1", provider_id, cutoff_ms)
        .await
}

/// Every delivery to `user_id`'s devices (any provider's signals) with what they reported, up
/// to `until_ms`: a trader's own copy fidelity.
pub async fn deliveries_to(
    db: &Db,
    user_id: &str,
    until_ms: i64,
) -> Result<Vec<crate::analytics::fidelity::Delivery>, DbError> {
    deliveries_where(db, "d.user_id = $1", user_id, until_ms).await
}

async fn deliveries_where(
    db: &Db,
    filter: &'static str,
    id: &str,
    cutoff_ms: i64,
) -> Result<Vec<crate::analytics::fidelity::Delivery>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT s.symbol, s.side, s.entry, s.received_at_ms, o.decision, o.fill_price, \
         o.filled_at_ms FROM fanout_queue q JOIN signals s ON s.id = q.signal_id \
         JOIN devices d ON d.id = q.device_id \
         LEFT JOIN signal_outcomes o ON o.signal_id = q.signal_id AND o.device_id = q.device_id \
         AND o.updated_at_ms < $2 \
         WHERE {filter} AND s.received_at_ms < $2 \
         ORDER BY s.received_at_ms, q.signal_id, q.device_id"
    ))
    .bind(id)
    .bind(cutoff_ms)
    .fetch_all(db.pool())
    .await?;
    let decimal = |t: String| {
        t.parse::<rust_decimal::Decimal>().map_err(|e| corrupt("a delivery's price", e))
    };
    rows.iter()
        .map(|r| {
            Ok(crate::analytics::fidelity::Delivery {
                symbol: r.try_get(0)?,
                side: r.try_get(1)?,
                entry: decimal(r.try_get(2)?)?,
                received_at_ms: r.try_get(3)?,
                decision: r.try_get(4)?,
                fill_price: r.try_get::<Option<String>, _>(5)?.map(decimal).transpose()?,
                filled_at_ms: r.try_get(6)?,
            })
        })
        .collect()
}

//! What travels to and from the hub: the outbox (this node's signed, chained records), the
//! downstream feed as committed with its inbox watermark, the hub's receipts, and the pinned feed
//! authors.

use redb::ReadableTable;
use tradecast_protocol::{
    Body, ChainHash, DeviceId, HeaderFields, Identity, Kind, Record, StreamId, StreamKey,
};

use tradecast_protocol::session::Source;

use super::{
    AUTHORS, CURSORS, DEVICE_KEY, FEED, INBOX_CURSOR, OUTBOX, PinnedAuthor, RECEIPTS, RELAY,
    StoreError, Tx, View, from_row, to_row,
};

/// The streams a node authors and syncs upstream, in this order (the published stream holds
/// only what the trader consented to publish: [`Tx::append_history`]).
pub const AUTHORED_STREAMS: [StreamId; 6] = [
    StreamId::SIGNALS,
    StreamId::SHARED,
    StreamId::PRIVATE,
    StreamId::DEVICE,
    StreamId::COMMANDS,
    StreamId::PUBLISHED,
];

/// What the node holds of one downstream source: its cursor and the header hashes of its last
/// items (for the session's duplicate and equivocation checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSource {
    pub source: Source,
    pub committed: u64,
    pub recent: Vec<(u64, ChainHash)>,
    /// When the source was quarantined (the hub equivocated on it), unix ms: nothing more is
    /// committed from it until a person releases it.
    pub quarantined_at_ms: Option<i64>,
}

/// The cursor-table key that marks `source` quarantined (its value: since when, unix ms).
fn quarantine_key(source: Source) -> String {
    format!("quarantine:{}", source.to_text())
}

fn decode_item(table: &'static str, bytes: &[u8]) -> Result<Record, StoreError> {
    Record::decode(bytes).map_err(|e| StoreError::Row { table, message: e.to_string() })
}

/// The tip of one outbox stream: `(seq, header hash)` of its last record.
fn stream_tip(
    table: &impl ReadableTable<(u32, u64), &'static [u8]>,
    stream: StreamId,
) -> Result<(u64, ChainHash), StoreError> {
    let last = table.range((stream.0, 0)..=(stream.0, u64::MAX))?.next_back();
    match last {
        None => Ok((0, ChainHash::GENESIS)),
        Some(entry) => {
            let (k, v) = entry?;
            let record = Record::decode(v.value())
                .map_err(|e| StoreError::Row { table: "outbox", message: e.to_string() })?;
            Ok((k.value().1, record.header_hash()))
        }
    }
}

/// The store setting that holds the trader's [`PublishConsent`] (JSON). Absent means nothing is
/// published, the default: the trader's history stays sealed in the private stream. Schema 3
/// stores before per-kind consent wrote `"true"` here for "publish everything", which still reads
/// so.
pub const PUBLISH_SETTING: &str = "publish";

/// Which pieces of the trader's account history go unsealed to the hub on
/// [`StreamId::PUBLISHED`] (for the public track record and the trader's own analytics), each
/// off by default. What is not consented to is sealed in [`StreamId::PRIVATE`], which only the
/// trader's own devices can open. A change applies to history recorded from then on: records
/// already signed stay where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConsent {
    /// `TradeClosed`: every closed (or partly closed) position with its prices and P&L.
    pub closed_trades: bool,
    /// `EquityPoint`: the balance and equity curve.
    pub equity: bool,
    /// `BalanceOperation`: deposits, withdrawals, credits, bonuses and corrections.
    pub balance_operations: bool,
    /// `Summary`: the account at the end of each broker day.
    pub daily_summary: bool,
}

impl PublishConsent {
    /// Everything published.
    pub const ALL: PublishConsent = PublishConsent {
        closed_trades: true,
        equity: true,
        balance_operations: true,
        daily_summary: true,
    };

    /// Each data kind: its name on the command line and in the API, the record kind, and
    /// whether this consent covers it.
    pub fn kinds(&self) -> [(&'static str, Kind, bool); 4] {
        [
            ("closed-trades", Kind::TradeClosed, self.closed_trades),
            ("equity", Kind::EquityPoint, self.equity),
            ("balance-operations", Kind::BalanceOperation, self.balance_operations),
            ("daily-summary", Kind::Summary, self.daily_summary),
        ]
    }

    /// Whether records of `kind` are published.
    pub fn covers(&self, kind: Kind) -> bool {
        self.kinds().iter().any(|(_, k, on)| *k == kind && *on)
    }

    /// Whether anything is published.
    pub fn any(&self) -> bool {
        self.kinds().iter().any(|(_, _, on)| *on)
    }

    /// Sets the data kind named `name` (as in [`PublishConsent::kinds`]); false for a name that
    /// is not one.
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        let field = match name {
            "closed-trades" => &mut self.closed_trades,
            "equity" => &mut self.equity,
            "balance-operations" => &mut self.balance_operations,
            "daily-summary" => &mut self.daily_summary,
            _ => return false,
        };
        *field = on;
        true
    }

    /// The stored setting's text read back: absent is nothing, the old `"true"` everything;
    /// text that is neither JSON of this shape nor `"true"` is an error (never read as consent).
    pub fn from_setting(text: Option<&str>) -> Result<PublishConsent, StoreError> {
        match text {
            None => Ok(PublishConsent::default()),
            Some("true") => Ok(PublishConsent::ALL),
            Some(t) => serde_json::from_str(t).map_err(|e| StoreError::Row {
                table: "settings",
                message: format!("publish consent: {e}"),
            }),
        }
    }
}

impl Tx<'_> {
    /// What the trader consented to publish ([`PUBLISH_SETTING`]).
    pub fn publish_consent(&self) -> Result<PublishConsent, StoreError> {
        PublishConsent::from_setting(self.setting(PUBLISH_SETTING)?.as_deref())
    }

    /// Stores the trader's consent (nothing consented removes the setting).
    pub fn set_publish_consent(&mut self, consent: PublishConsent) -> Result<(), StoreError> {
        if !consent.any() {
            return self.remove_setting(PUBLISH_SETTING).map(|_| ());
        }
        let text = serde_json::to_string(&consent)
            .map_err(|e| StoreError::Row { table: "settings", message: e.to_string() })?;
        self.set_setting(PUBLISH_SETTING, &text)
    }

    /// Appends account history (`TradeClosed`, `EquityPoint`, `BalanceOperation`, `Summary`):
    /// unsealed on [`StreamId::PUBLISHED`] when the trader consented to that kind
    /// ([`PublishConsent`]), else sealed on [`StreamId::PRIVATE`]. Any other kind is
    /// [`StoreError::NotHistory`].
    pub fn append_history(
        &mut self,
        identity: &Identity,
        body: &Body,
        created_at_ms: i64,
    ) -> Result<Record, StoreError> {
        let kind = body.kind();
        if !kind.allowed_on(StreamId::PUBLISHED) {
            return Err(StoreError::NotHistory { kind: kind.name() });
        }
        // A setting that does not read (written by a newer version, damaged) publishes nothing.
        let consent = self.publish_consent().unwrap_or_default();
        let stream = if consent.covers(kind) { StreamId::PUBLISHED } else { StreamId::PRIVATE };
        self.append_record(identity, stream, body, created_at_ms)
    }
    /// The inbox watermark: the highest downstream `seq` committed (the sync client acks it
    /// to the hub only after this commit).
    pub fn set_inbox_watermark(&mut self, seq: u64) -> Result<(), StoreError> {
        let v = i64::try_from(seq).unwrap_or(i64::MAX);
        self.set_cursor(DEVICE_KEY, INBOX_CURSOR, v)
    }

    /// The inbox watermark (0 before any downstream record).
    pub fn inbox_watermark(&self) -> Result<u64, StoreError> {
        let v = self.cursor(DEVICE_KEY, INBOX_CURSOR)?.unwrap_or(0);
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// Stores feed item `seq` (the record unchanged) and moves the inbox watermark to it.
    pub fn put_feed(&mut self, seq: u64, record: &Record) -> Result<(), StoreError> {
        self.tx.open_table(FEED)?.insert(seq, record.encode().as_slice())?;
        self.set_inbox_watermark(seq)
    }

    /// Quarantines `source` (the hub equivocated on it, or renumbered it): it stays so across
    /// restarts until a person releases it (`tradecast-node providers --release-source`).
    pub fn quarantine_source(&mut self, source: Source, at_ms: i64) -> Result<(), StoreError> {
        if self.cursor(DEVICE_KEY, &quarantine_key(source))?.is_none() {
            self.set_cursor(DEVICE_KEY, &quarantine_key(source), at_ms)?;
        }
        Ok(())
    }

    /// Lifts `source`'s quarantine; `false` when it was not quarantined.
    pub fn release_source(&mut self, source: Source) -> Result<bool, StoreError> {
        let key = quarantine_key(source);
        Ok(self.tx.open_table(CURSORS)?.remove((DEVICE_KEY, key.as_str()))?.is_some())
    }

    /// The committed cursor of `source` (0 before its first item).
    pub fn source_cursor(&self, source: Source) -> Result<u64, StoreError> {
        let v = match source {
            Source::Inbox => self.cursor(DEVICE_KEY, INBOX_CURSOR)?,
            Source::Relay(_) => self.cursor(DEVICE_KEY, &source.to_text())?,
        };
        Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
    }

    /// Stores item `seq` of `source` (the record unchanged) and moves its cursor to it: the
    /// inbox is the feed table, a relay log its own.
    pub fn put_source_item(
        &mut self,
        source: Source,
        seq: u64,
        record: &Record,
    ) -> Result<(), StoreError> {
        match source {
            Source::Inbox => self.put_feed(seq, record),
            Source::Relay(_) => {
                let key = source.to_text();
                self.tx
                    .open_table(RELAY)?
                    .insert((key.as_str(), seq), record.encode().as_slice())?;
                self.set_cursor(DEVICE_KEY, &key, i64::try_from(seq).unwrap_or(i64::MAX))
            }
        }
    }

    /// This node's outbox record at (`stream`, `seq`).
    pub fn outbox_record(&self, stream: StreamId, seq: u64) -> Result<Option<Record>, StoreError> {
        let t = self.tx.open_table(OUTBOX)?;
        let v = t.get((stream.0, seq))?;
        v.map(|v| {
            Record::decode(v.value())
                .map_err(|e| StoreError::Row { table: "outbox", message: e.to_string() })
        })
        .transpose()
    }

    /// Keeps the hub's receipt for this node's record (`stream`, `seq`).
    pub fn put_receipt(&mut self, receipt: &tradecast_protocol::Receipt) -> Result<(), StoreError> {
        let bytes = to_row("receipts", receipt)?;
        let key = (receipt.fields.stream.0, receipt.fields.seq);
        self.tx.open_table(RECEIPTS)?.insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// A pinned author, if any.
    pub fn author(&self, device: &DeviceId) -> Result<Option<PinnedAuthor>, StoreError> {
        self.get_json(AUTHORS, "authors", &device.to_text())
    }

    /// Pins (or updates) an author.
    pub fn put_author(&mut self, author: &PinnedAuthor) -> Result<(), StoreError> {
        self.put_json(AUTHORS, "authors", &author.key.device_id().to_text(), author)
    }

    /// Every pinned author.
    pub fn authors(&self) -> Result<Vec<PinnedAuthor>, StoreError> {
        self.all_json(AUTHORS, "authors")
    }

    /// Signs `body` as the next record of `stream` (seq = tip + 1, prev_hash = tip's header
    /// hash) and appends it to the outbox in this transaction. On the private stream the body
    /// is sealed (XChaCha20-Poly1305 under the device's own stream key).
    pub fn append_record(
        &mut self,
        identity: &Identity,
        stream: StreamId,
        body: &Body,
        created_at_ms: i64,
    ) -> Result<Record, StoreError> {
        let mut t = self.tx.open_table(OUTBOX)?;
        let (seq, prev_hash) = stream_tip(&t, stream)?;
        let seq = seq + 1;
        let fields = HeaderFields { stream, seq, prev_hash, created_at_ms };
        let record = if stream.is_sealed() {
            // What the trader shares with nobody is sealed to the trader's own devices.
            let seed =
                crate::keys::random_bytes::<32>().map_err(|e| StoreError::Random(e.to_string()))?;
            let mut rng = <chacha20::ChaCha20Rng as rand_core::SeedableRng>::from_seed(*seed);
            let key = StreamKey::derive(identity, &identity.device_id(), stream);
            Record::sign_sealed(identity, fields, body, &key, &mut rng)
        } else {
            Record::sign(identity, fields, body)
        };
        t.insert((stream.0, seq), record.encode().as_slice())?;
        Ok(record)
    }
}

impl View {
    /// What the trader consented to publish ([`PUBLISH_SETTING`]).
    pub fn publish_consent(&self) -> Result<PublishConsent, StoreError> {
        PublishConsent::from_setting(self.setting(PUBLISH_SETTING)?.as_deref())
    }

    /// The inbox watermark (0 before any downstream record).
    pub fn inbox_watermark(&self) -> Result<u64, StoreError> {
        let v = self.cursor(DEVICE_KEY, INBOX_CURSOR)?.unwrap_or(0);
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// The outbox records of a stream from `seq` on (a resend from the hub's mark).
    pub fn outbox_from(&self, stream: StreamId, seq: u64) -> Result<Vec<Record>, StoreError> {
        self.outbox_page(stream, seq, usize::MAX)
    }

    /// Every pinned author.
    pub fn authors(&self) -> Result<Vec<PinnedAuthor>, StoreError> {
        let t = self.tx.open_table(AUTHORS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (_, v) = e?;
            out.push(from_row("authors", v.value())?);
        }
        Ok(out)
    }

    /// The hub's receipts this node holds for its records of `stream`, in `seq` order.
    pub fn receipts(
        &self,
        stream: StreamId,
    ) -> Result<Vec<tradecast_protocol::Receipt>, StoreError> {
        let t = self.tx.open_table(RECEIPTS)?;
        let mut out = Vec::new();
        for e in t.range((stream.0, 0)..=(stream.0, u64::MAX))? {
            let (_, v) = e?;
            out.push(from_row("receipts", v.value())?);
        }
        Ok(out)
    }

    /// (seq, header hash) of the last `n` committed feed items, in `seq` order.
    pub fn feed_recent(&self, n: usize) -> Result<Vec<(u64, ChainHash)>, StoreError> {
        let t = self.tx.open_table(FEED)?;
        let mut out = Vec::new();
        for e in t.iter()?.rev().take(n) {
            let (k, v) = e?;
            let record = Record::decode(v.value())
                .map_err(|e| StoreError::Row { table: "feed", message: e.to_string() })?;
            out.push((k.value(), record.header_hash()));
        }
        out.reverse();
        Ok(out)
    }

    /// Every source this node holds items of, with its cursor and its last `n` item hashes
    /// (the inbox first, then the relay logs by their text form).
    pub fn held_sources(&self, n: usize) -> Result<Vec<HeldSource>, StoreError> {
        let mut out = vec![HeldSource {
            source: Source::Inbox,
            committed: self.inbox_watermark()?,
            recent: self.feed_recent(n)?,
            quarantined_at_ms: self.cursor(DEVICE_KEY, &quarantine_key(Source::Inbox))?,
        }];
        let cursors = self.tx.open_table(CURSORS)?;
        let relay = self.tx.open_table(RELAY)?;
        for e in cursors.range((DEVICE_KEY, "relay:")..(DEVICE_KEY, "relay;"))? {
            let (k, v) = e?;
            let key = k.value().1.to_string();
            let Some(source) = Source::from_text(&key) else { continue };
            let committed = u64::try_from(v.value()).unwrap_or(0);
            let mut recent = Vec::new();
            for item in relay.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))?.rev().take(n) {
                let (k, v) = item?;
                recent.push((k.value().1, decode_item("relay", v.value())?.header_hash()));
            }
            recent.reverse();
            let quarantined_at_ms = self.cursor(DEVICE_KEY, &quarantine_key(source))?;
            out.push(HeldSource { source, committed, recent, quarantined_at_ms });
        }
        Ok(out)
    }

    /// The committed items of `source` from `seq` on, in order.
    pub fn source_items(&self, source: Source, seq: u64) -> Result<Vec<(u64, Record)>, StoreError> {
        let Source::Relay(_) = source else { return self.feed_from(seq) };
        let key = source.to_text();
        let t = self.tx.open_table(RELAY)?;
        let mut out = Vec::new();
        for e in t.range((key.as_str(), seq)..=(key.as_str(), u64::MAX))? {
            let (k, v) = e?;
            out.push((k.value().1, decode_item("relay", v.value())?));
        }
        Ok(out)
    }

    /// The committed feed items from `seq` on, in order.
    pub fn feed_from(&self, seq: u64) -> Result<Vec<(u64, Record)>, StoreError> {
        let t = self.tx.open_table(FEED)?;
        let mut out = Vec::new();
        for e in t.range(seq..)? {
            let (k, v) = e?;
            let record = Record::decode(v.value())
                .map_err(|e| StoreError::Row { table: "feed", message: e.to_string() })?;
            out.push((k.value(), record));
        }
        Ok(out)
    }

    /// At most `limit` outbox records of a stream from `seq` on, in `seq` order.
    pub fn outbox_page(
        &self,
        stream: StreamId,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let t = self.tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for e in t.range((stream.0, seq)..=(stream.0, u64::MAX))?.take(limit) {
            let (_, v) = e?;
            out.push(
                Record::decode(v.value())
                    .map_err(|e| StoreError::Row { table: "outbox", message: e.to_string() })?,
            );
        }
        Ok(out)
    }

    /// The last `seq` this node signed on a stream (0 before the first record).
    pub fn outbox_tip(&self, stream: StreamId) -> Result<u64, StoreError> {
        Ok(stream_tip(&self.tx.open_table(OUTBOX)?, stream)?.0)
    }

    /// How many of the hub's receipts this node holds for its records of `stream`, and the
    /// highest `seq` they cover (0 without any).
    pub fn receipts_held(&self, stream: StreamId) -> Result<(u64, u64), StoreError> {
        let t = self.tx.open_table(RECEIPTS)?;
        let (mut n, mut last) = (0, 0);
        for e in t.range((stream.0, 0)..=(stream.0, u64::MAX))? {
            let (k, _) = e?;
            n += 1;
            last = k.value().1;
        }
        Ok((n, last))
    }

    /// The outbox records of a stream, in `seq` order.
    pub fn outbox(&self, stream: StreamId) -> Result<Vec<Record>, StoreError> {
        self.outbox_page(stream, 0, usize::MAX)
    }
}

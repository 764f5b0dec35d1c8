-- The downstream feed (issue 9): what the hub relays to each device, in order, with its own
-- `seq` per device. A relayed record travels unchanged and is stored once (feed_records, by
-- header hash); feed_items orders it in each device's feed. Before the first record of an
-- author, a device's feed carries that author's self-signed DeviceKeys record, so the node pins
-- the provider's key on first sight (feed_authors remembers which keys a feed has carried).

-- The self-signed DeviceKeys record a device enrolled with (relayed to its subscribers).
ALTER TABLE devices ADD COLUMN keys_record BLOB;

CREATE TABLE feed_records (
    header_hash TEXT PRIMARY KEY,
    author TEXT NOT NULL,
    kind TEXT NOT NULL,
    record BLOB NOT NULL,
    stored_at_ms BIGINT NOT NULL
);

-- One row per device with a feed: its tip and what the node acknowledged (after its commit).
CREATE TABLE device_feeds (
    device_id TEXT PRIMARY KEY REFERENCES devices (id),
    tip BIGINT NOT NULL,
    acked BIGINT NOT NULL,
    acked_at_ms BIGINT
);

CREATE TABLE feed_items (
    device_id TEXT NOT NULL REFERENCES devices (id),
    seq BIGINT NOT NULL,
    header_hash TEXT NOT NULL REFERENCES feed_records (header_hash),
    signal_id TEXT,
    enqueued_at_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);

CREATE TABLE feed_authors (
    device_id TEXT NOT NULL REFERENCES devices (id),
    author TEXT NOT NULL,
    PRIMARY KEY (device_id, author)
);

-- What subscribers did with each signal, from their upstream records (SHARED stream): the
-- provider's per-signal delivery, approval and fill status.
CREATE TABLE signal_outcomes (
    signal_id TEXT NOT NULL REFERENCES signals (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    decision TEXT,
    decided_at_ms BIGINT,
    retcode BIGINT,
    fill_price TEXT,
    fill_volume TEXT,
    filled_at_ms BIGINT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (signal_id, device_id)
);

-- The shared relay log (protocol version 2 downstream, issue 14): one log per provider device,
-- shared by every subscriber of that provider, with the hub's own `seq`. Accepting a signal
-- appends one entry (no row per subscriber); each session filters the log for its device with
-- one rule (an entry is visible when the device's account was entitled to the provider at the
-- entry's `visible_at_ms`, the signal's acceptance; the provider's DeviceKeys entry always).
-- Records are stored once in feed_records (by header hash). The per-device feed (0005) stays
-- the device's inbox: hub-signed requests, grants and the signals queued before this migration.

-- One row per log: its tip (the row lock orders appends across hub instances).
CREATE TABLE relay_tips (
    provider_device TEXT PRIMARY KEY REFERENCES devices (id),
    provider_user_id TEXT NOT NULL REFERENCES users (id),
    tip BIGINT NOT NULL
);
CREATE INDEX relay_tips_provider ON relay_tips (provider_user_id);

CREATE TABLE relay_log (
    provider_device TEXT NOT NULL REFERENCES devices (id),
    seq BIGINT NOT NULL,
    header_hash TEXT NOT NULL REFERENCES feed_records (header_hash),
    kind TEXT NOT NULL,
    -- The signal the entry is about (its Signal, Modify or Close); NULL for DeviceKeys.
    signal_id TEXT,
    -- Entitlement at this instant decides who sees the entry; NULL: everyone who follows the log.
    visible_at_ms BIGINT,
    committed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (provider_device, seq)
);
CREATE INDEX relay_log_signal ON relay_log (signal_id);

-- Each device's cursor in each log it follows (written in batches after the node's acks).
CREATE TABLE relay_cursors (
    device_id TEXT NOT NULL REFERENCES devices (id),
    provider_device TEXT NOT NULL REFERENCES devices (id),
    seq BIGINT NOT NULL,
    acked_at_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, provider_device)
);

-- When the expected per-device outcome rows (fanout_queue) of a relayed signal were written:
-- after the commit, off the fan-out's path; NULL until then (a restart writes what is missing).
ALTER TABLE signals ADD COLUMN fanout_written_at_ms BIGINT;

-- Provider API keys (secrets sealed at rest), HMAC nonces, signals, the fan-out queue,
-- approvals and remote approval requests.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    label TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    last_used_at_ms BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE hmac_nonces (
    key_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at_ms BIGINT NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX hmac_nonces_seen ON hmac_nonces (seen_at_ms);

CREATE TABLE signals (
    id TEXT PRIMARY KEY,
    provider_user_id TEXT NOT NULL REFERENCES users (id),
    author TEXT NOT NULL,
    stream BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    record BLOB NOT NULL,
    record_hash TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    entry TEXT NOT NULL,
    stop TEXT NOT NULL,
    tp1 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    UNIQUE (author, stream, seq)
);
CREATE INDEX signals_provider ON signals (provider_user_id, received_at_ms);

CREATE TABLE fanout_queue (
    signal_id TEXT NOT NULL REFERENCES signals (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    enqueued_at_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    PRIMARY KEY (signal_id, device_id)
);
CREATE INDEX fanout_queue_pending ON fanout_queue (delivered_at_ms, enqueued_at_ms);

CREATE TABLE approvals (
    signal_id TEXT NOT NULL REFERENCES signals (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    record BLOB NOT NULL,
    record_hash TEXT NOT NULL,
    decision TEXT NOT NULL,
    consent_version BIGINT NOT NULL,
    decided_at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (signal_id, device_id)
);

CREATE TABLE approval_requests (
    id TEXT PRIMARY KEY,
    signal_id TEXT NOT NULL REFERENCES signals (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    decision TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    channel TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    consumed_at_ms BIGINT
);
CREATE INDEX approval_requests_device ON approval_requests (device_id, consumed_at_ms);

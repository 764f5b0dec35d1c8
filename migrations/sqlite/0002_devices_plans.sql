-- Device registry with single-use enrolment codes; plans and entitlements.
CREATE TABLE enrolment_codes (
    code_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT,
    device_id TEXT
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    identity_key TEXT NOT NULL UNIQUE,
    sealing_key TEXT NOT NULL,
    enrolled_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX devices_user ON devices (user_id);

CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    provider_user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    currency TEXT NOT NULL,
    period_days BIGINT NOT NULL CHECK (period_days > 0),
    created_at_ms BIGINT NOT NULL,
    archived_at_ms BIGINT
);
CREATE INDEX plans_provider ON plans (provider_user_id);

CREATE TABLE entitlements (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    plan_id TEXT NOT NULL REFERENCES plans (id),
    granted_by TEXT NOT NULL,
    starts_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX entitlements_user ON entitlements (user_id);
CREATE INDEX entitlements_plan ON entitlements (plan_id);

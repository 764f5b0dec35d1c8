-- Entitlements as append-only intervals (issue 14, the `entitlements` module). An entitlement is
-- the interval [starts_at_ms, end) with end = the earlier of expires_at_ms (its scheduled end)
-- and revoked_at_ms (when it was ended early: by an admin, a cancellation, a refund). Rows are
-- never deleted, and an end is only ever set to a time at or after the moment it is written, so
-- "was this device entitled when the hub committed that signal?" has one answer forever.
-- `source` says who granted it (an admin, Stripe, Telegram Stars, a trial) and `external_ref`
-- the payment system's id (a Stripe subscription, a Stars charge) so billing finds it again.
ALTER TABLE entitlements ADD COLUMN source TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE entitlements ADD COLUMN external_ref TEXT;
ALTER TABLE entitlements ADD COLUMN end_reason TEXT;
CREATE INDEX entitlements_external ON entitlements (source, external_ref);

-- What a plan gives its holder besides the provider's signals: a comma-separated list of
-- feature names (signals, auto_copy, telegram, mini_app, analytics), carried to the node in a
-- hub-signed FeatureGrant. Plans made before this migration keep what they gave: signals and
-- automatic copying.
ALTER TABLE plans ADD COLUMN features TEXT NOT NULL DEFAULT 'signals,auto_copy';

-- Change events, one per grant and per end, in commit order of this table's sequence: what the
-- in-memory entitlement registry, the FeatureGrant issuer and the other hub instances follow.
CREATE TABLE entitlement_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entitlement_id TEXT NOT NULL REFERENCES entitlements (id),
    user_id TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    provider_user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('granted', 'ended')),
    starts_at_ms BIGINT NOT NULL,
    ends_at_ms BIGINT,
    at_ms BIGINT NOT NULL
);
CREATE INDEX entitlement_events_user ON entitlement_events (user_id, seq);

-- The grants and revocations made before this migration, as events.
INSERT INTO entitlement_events
    (entitlement_id, user_id, plan_id, provider_user_id, kind, starts_at_ms, ends_at_ms, at_ms)
SELECT e.id, e.user_id, e.plan_id, p.provider_user_id, 'granted', e.starts_at_ms,
       e.expires_at_ms, e.created_at_ms
FROM entitlements e JOIN plans p ON p.id = e.plan_id ORDER BY e.created_at_ms, e.id;
INSERT INTO entitlement_events
    (entitlement_id, user_id, plan_id, provider_user_id, kind, starts_at_ms, ends_at_ms, at_ms)
SELECT e.id, e.user_id, e.plan_id, p.provider_user_id, 'ended', e.starts_at_ms,
       e.revoked_at_ms, e.revoked_at_ms
FROM entitlements e JOIN plans p ON p.id = e.plan_id
WHERE e.revoked_at_ms IS NOT NULL ORDER BY e.revoked_at_ms, e.id;

-- The outbox (issue 16, the `outbox` module): everything the hub sends to an outside service
-- (Telegram messages, Stripe calls caused by a local change, reports) is a row committed in the
-- transaction of the change that caused it, and sent later by the runner. `seq` orders the rows
-- (per route: in order); `id` is the public id.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    -- `telegram` or `stripe`: which runner loop (and which service's limits) sends it.
    channel TEXT NOT NULL,
    -- What to do, e.g. `telegram.send_message`, `stripe.refund_invoice`.
    kind TEXT NOT NULL,
    -- A Telegram chat id (per-chat limits; one route's messages go in `seq` order), or NULL.
    route TEXT,
    -- The JSON the deliverer sends (never a secret).
    payload TEXT NOT NULL,
    -- Enqueueing the same key twice is a no-op.
    dedupe_key TEXT UNIQUE,
    -- What caused it (`stripe_event:evt_…`), shown in the console.
    cause TEXT,
    -- queued → sending → sent | queued (retry) | dead; dead → queued (console retry) | discarded.
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'dead', 'discarded')),
    -- Delivery attempts made (each claim that reached a deliverer).
    attempts BIGINT NOT NULL DEFAULT 0,
    -- Claims that took over a `sending` row whose lease had expired (a runner died in flight:
    -- the service may have received it already, Telegram has no idempotency key).
    redelivered BIGINT NOT NULL DEFAULT 0,
    -- 1 when the latest claim was such a takeover (read back by the claim's RETURNING).
    reclaimed BIGINT NOT NULL DEFAULT 0,
    not_before_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    sent_at_ms BIGINT
);
-- The claim: due rows of a channel in order, and the head-of-route check.
CREATE INDEX outbox_due ON outbox (channel, state, not_before_ms, seq);
CREATE INDEX outbox_route ON outbox (channel, route, state, seq);

-- Background jobs (`jobs` module): one row per registered job, leased by one hub instance per
-- due time.
CREATE TABLE jobs (
    name TEXT PRIMARY KEY,
    -- The schedule's text (`every 3600s`, `daily 03:15 UTC`); a changed schedule recomputes
    -- the next run.
    schedule TEXT NOT NULL,
    next_run_at_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    last_started_at_ms BIGINT,
    last_finished_at_ms BIGINT,
    -- `ok` or `failed`.
    last_outcome TEXT,
    last_summary TEXT,
    runs BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0
);

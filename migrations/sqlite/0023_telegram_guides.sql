-- Guides and scheduled tips (issue 17): the owner's content in the bot. `/guides` lists the
-- guides as buttons; a tip is sent to a segment on its schedule (`daily 09:00`, `weekdays 08:30`,
-- `weekly mon 18:00`) in its IANA time zone, each due time once (outbox dedupe key
-- `tg:tip:<tip>:<due ms>:<account>`).
CREATE TABLE telegram_guides (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    position BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE telegram_tips (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    schedule TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    -- A broadcast's segment: `all`, `active`, `trial`, `expired` or `plan:<id>`.
    segment TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    next_run_at_ms BIGINT NOT NULL,
    last_sent_at_ms BIGINT,
    sent BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX telegram_tips_due ON telegram_tips (enabled, next_run_at_ms);

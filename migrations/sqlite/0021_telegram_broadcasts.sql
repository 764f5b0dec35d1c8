-- The owner's Telegram broadcasts (issue 17): one row per broadcast, one per recipient (each
-- account once: the primary key), committed with the outbox rows that carry the messages.
CREATE TABLE telegram_broadcasts (
    id TEXT PRIMARY KEY,
    created_by TEXT NOT NULL REFERENCES users (id),
    -- `all`, `active`, `trial`, `expired` or `plan:<plan id>`.
    segment TEXT NOT NULL,
    -- As the owner typed it (plain text, escaped when sent).
    body TEXT NOT NULL,
    cta_label TEXT,
    cta_url TEXT,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE telegram_broadcast_recipients (
    broadcast_id TEXT NOT NULL REFERENCES telegram_broadcasts (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    -- The call-to-action link's token (`/b/<token>` counts the click and redirects).
    token TEXT NOT NULL UNIQUE,
    outbox_id TEXT,
    clicked_at_ms BIGINT,
    PRIMARY KEY (broadcast_id, user_id)
);

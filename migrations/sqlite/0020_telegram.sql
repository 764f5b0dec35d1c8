-- The Telegram bot (issue 17, the `telegram` module).
-- Every update applied (webhook or polling), by Telegram's `update_id`, inserted in the
-- transaction that applies it: a second delivery of the same update is a no-op.
CREATE TABLE telegram_updates (
    update_id BIGINT PRIMARY KEY,
    -- `message`, `callback_query`, `pre_checkout_query`, … or `other`.
    kind TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX telegram_updates_received ON telegram_updates (received_at_ms);

-- One Telegram user per account and one account per Telegram user.
CREATE TABLE telegram_links (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    telegram_user_id BIGINT NOT NULL UNIQUE,
    -- The private chat with the bot (where account matters are sent).
    chat_id BIGINT NOT NULL,
    username TEXT,
    first_name TEXT NOT NULL,
    linked_at_ms BIGINT NOT NULL,
    -- Set when Telegram answered 403 (the user blocked the bot); cleared by their next message.
    blocked_at_ms BIGINT
);

-- One-time deep-link codes (`t.me/<bot>?start=<code>`): only the code's SHA-256 is stored.
CREATE TABLE telegram_link_codes (
    code_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT,
    used_by_telegram_user_id BIGINT
);
CREATE INDEX telegram_link_codes_user ON telegram_link_codes (user_id);

-- Notification levels per account and event: `on`, `silent` (no sound) or `off`. An event
-- without a row has its default (see `telegram::notify::Event`).
CREATE TABLE telegram_prefs (
    user_id TEXT NOT NULL REFERENCES users (id),
    event TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('on', 'silent', 'off')),
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, event)
);

-- The bot's small state: the signal alerts' cursor, the polling lease.
CREATE TABLE telegram_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Polling mode: the one instance that long-polls `getUpdates` holds this lease.
CREATE TABLE telegram_poller (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    owner TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);

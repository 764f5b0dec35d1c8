-- Signal channels (issue 17): Telegram channels or groups that receive signals routed by
-- provider and symbol, optionally delayed. Posts are outbox rows (dedupe key
-- `tg:channel:<channel>:<signal>`), queued by the signal alerts job with `not_before_ms`.
CREATE TABLE telegram_channels (
    id TEXT PRIMARY KEY,
    -- The channel's or supergroup's chat id (negative).
    chat_id BIGINT NOT NULL CHECK (chat_id < 0),
    title TEXT NOT NULL,
    -- Only this provider's signals; NULL: every provider's.
    provider_user_id TEXT REFERENCES users (id),
    -- Upper-case symbols separated by commas; NULL: every symbol.
    symbols TEXT,
    delay_s BIGINT NOT NULL CHECK (delay_s >= 0),
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (id)
);

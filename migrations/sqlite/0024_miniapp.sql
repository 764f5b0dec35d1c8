-- The Telegram Mini App (issue 19): sessions opened by exchanging a validated initData.
-- The bearer token is random; only its hash is stored (the CSRF token is derived from the
-- token, so it is not stored either). A session belongs to a Telegram user, not to an account:
-- the link to a hub account is read from telegram_links on every request, so an unlink or a
-- disabled account takes effect at once. It ends 24 h after the initData's auth_date.
CREATE TABLE miniapp_sessions (
    token_hash TEXT PRIMARY KEY,
    telegram_user_id BIGINT NOT NULL,
    auth_date_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX miniapp_sessions_expiry ON miniapp_sessions (expires_at_ms);

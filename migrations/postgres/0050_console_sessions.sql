-- The owner's console (issue 21): cookie sessions of hub accounts. Only a hash of the cookie's
-- random token is stored (the CSRF token is derived from the token, so it is not stored
-- either): the table alone never yields a usable session. A session ends at expires_at_ms or
-- at logout (the row is deleted); the account's role and status are read from `users` on every
-- request, never copied here.
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at_ms);

-- The overview counts the signals received today.
CREATE INDEX signals_received ON signals (received_at_ms);

-- Redacted share links (issue 18, board PR-057): a trader's link to the money figures of what
-- their devices published, with nothing that names them. The URL's token is the id and the
-- hub's HMAC of it (never stored); revoking keeps the row for the audit trail.
CREATE TABLE share_links (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    label TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX share_links_user ON share_links (user_id, created_at_ms);

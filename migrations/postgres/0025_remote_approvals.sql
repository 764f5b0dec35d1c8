-- Remote approvals (issues 17 part 5, 19 part 2): what the nodes say is waiting for the trader
-- (their signed `Pending` records), the hub-signed requests' new fields, and the Telegram
-- messages with Approve / Reject buttons.

-- One row per (signal, device): the latest `Pending` the device signed (lot range, risk
-- preview, blocking reasons), until the node answers or decides it.
CREATE TABLE approval_pending (
    signal_id TEXT NOT NULL REFERENCES signals (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    expires_at_ms BIGINT NOT NULL,
    -- Exact decimals as text.
    min_lots TEXT NOT NULL,
    max_lots TEXT NOT NULL,
    -- The RiskPreview as JSON, or NULL when the node could not compute it.
    preview TEXT,
    -- JSON array of the blocking rule codes.
    blocking TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    record_hash TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    -- The node's last word on it: `applied`, a refusal reason, or its own decision.
    outcome TEXT,
    -- Set once the node decided the signal (no longer waiting).
    decided_at_ms BIGINT,
    PRIMARY KEY (signal_id, device_id)
);
CREATE INDEX approval_pending_user ON approval_pending (user_id, decided_at_ms, expires_at_ms);

-- The request as signed: the trader's lots (exact decimal text), its expiry, the Telegram user
-- who pressed, the signed record's header hash, and the node's answer.
ALTER TABLE approval_requests ADD COLUMN lots TEXT;
ALTER TABLE approval_requests ADD COLUMN expires_at_ms BIGINT;
ALTER TABLE approval_requests ADD COLUMN telegram_user_id BIGINT;
ALTER TABLE approval_requests ADD COLUMN record_hash TEXT;
ALTER TABLE approval_requests ADD COLUMN outcome TEXT;

-- A Telegram message offering a pending signal to the trader's linked chat.
CREATE TABLE telegram_approval_posts (
    id TEXT PRIMARY KEY,
    signal_id TEXT NOT NULL REFERENCES signals (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    -- The only Telegram user whose press counts.
    telegram_user_id BIGINT NOT NULL,
    chat_id BIGINT NOT NULL,
    -- The message's text as first sent (HTML), edited below with the outcome.
    text TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- Learnt from sendMessage's answer (or the press).
    message_id BIGINT,
    pressed_at_ms BIGINT,
    request_id TEXT,
    outcome TEXT,
    UNIQUE (signal_id, device_id)
);
CREATE INDEX telegram_approval_posts_request ON telegram_approval_posts (request_id);

-- One row per button: `callback_data` is one action byte and this id (16 random bytes, hex).
CREATE TABLE telegram_approval_buttons (
    id TEXT PRIMARY KEY,
    post_id TEXT NOT NULL REFERENCES telegram_approval_posts (id),
    decision TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    lots TEXT
);
CREATE INDEX telegram_approval_buttons_post ON telegram_approval_buttons (post_id);

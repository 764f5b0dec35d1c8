-- Affiliates (issue 20): the programme's settings, affiliates and their codes, clicks,
-- referrals, commission entries, holds for review and payouts. Money is BIGINT minor units with
-- an ISO 4217 code; a rate is BIGINT basis points (1/100 of a percent). Commission entries are
-- never rewritten in amount: a refund after payout is a new negative entry.

-- The programme (one row, id 1, owner-editable). `holding_days`: how long a commission stays
-- pending (the refund window); `window_days`: how old a first touch may be at attribution;
-- the fraud thresholds: `refund_rate_bp` above which (with at least `refund_min_invoices`
-- invoices) an affiliate's new commissions are held, `burst_signups` sign-ups from one address
-- within `burst_minutes`.
CREATE TABLE affiliate_settings (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    approval_required BIGINT NOT NULL DEFAULT 1,
    window_days BIGINT NOT NULL DEFAULT 60 CHECK (window_days BETWEEN 1 AND 3650),
    holding_days BIGINT NOT NULL DEFAULT 30 CHECK (holding_days BETWEEN 0 AND 3650),
    refund_rate_bp BIGINT NOT NULL DEFAULT 3000 CHECK (refund_rate_bp BETWEEN 0 AND 10000),
    refund_min_invoices BIGINT NOT NULL DEFAULT 5 CHECK (refund_min_invoices >= 1),
    burst_signups BIGINT NOT NULL DEFAULT 5 CHECK (burst_signups >= 2),
    burst_minutes BIGINT NOT NULL DEFAULT 60 CHECK (burst_minutes >= 1),
    updated_at_ms BIGINT NOT NULL
);
INSERT INTO affiliate_settings (id, updated_at_ms) VALUES (1, 0);

-- Commission schemes by plan (`*`: every plan without its own). kind `percent`: `percent_bp`
-- of each paid invoice, for `months` (30-day months from the referral's first payment; NULL:
-- for life); kind `fixed`: `fixed_minor` of `fixed_currency` once, on the first payment.
CREATE TABLE affiliate_schemes (
    plan_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('percent', 'fixed')),
    percent_bp BIGINT NOT NULL DEFAULT 0 CHECK (percent_bp BETWEEN 0 AND 10000),
    months BIGINT CHECK (months IS NULL OR months >= 1),
    fixed_minor BIGINT NOT NULL DEFAULT 0 CHECK (fixed_minor >= 0),
    fixed_currency TEXT
);

-- Tiers of percent schemes: from `min_paying` paying referrals on, `percent_bp` instead.
CREATE TABLE affiliate_tiers (
    min_paying BIGINT PRIMARY KEY CHECK (min_paying >= 1),
    percent_bp BIGINT NOT NULL CHECK (percent_bp BETWEEN 0 AND 10000)
);

-- The payout threshold per currency (no row: 0, any positive balance is paid).
CREATE TABLE affiliate_thresholds (
    currency TEXT PRIMARY KEY,
    min_minor BIGINT NOT NULL CHECK (min_minor >= 0)
);

-- An account that refers others. `ip_hash`: the keyed hash of the address it applied from.
CREATE TABLE affiliates (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL UNIQUE REFERENCES users (id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    ip_hash TEXT,
    created_at_ms BIGINT NOT NULL,
    decided_at_ms BIGINT,
    decided_by TEXT
);

CREATE TABLE affiliate_codes (
    code TEXT PRIMARY KEY,
    affiliate_id TEXT NOT NULL REFERENCES affiliates (id),
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX affiliate_codes_affiliate ON affiliate_codes (affiliate_id);

-- Every `?ref=` visit (no address in clear: a keyed hash) and Telegram `/start ref_`.
CREATE TABLE affiliate_clicks (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL REFERENCES affiliate_codes (code),
    channel TEXT NOT NULL CHECK (channel IN ('web', 'telegram')),
    ip_hash TEXT,
    at_ms BIGINT NOT NULL
);
CREATE INDEX affiliate_clicks_code ON affiliate_clicks (code, at_ms);

-- A Telegram user's first `/start ref_<code>`, attributed when the account that Telegram user
-- links first pays. `linked_account_id`: the account the user was linked to when touching (the
-- affiliate's own: a self-referral).
CREATE TABLE affiliate_telegram_touches (
    telegram_user_id BIGINT PRIMARY KEY,
    code TEXT NOT NULL REFERENCES affiliate_codes (code),
    touched_at_ms BIGINT NOT NULL,
    linked_account_id TEXT
);

-- A referred account, attributed once (first touch inside the window).
CREATE TABLE affiliate_referrals (
    account_id TEXT PRIMARY KEY REFERENCES users (id),
    affiliate_id TEXT NOT NULL REFERENCES affiliates (id),
    code TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('web', 'telegram', 'signup', 'checkout')),
    touched_at_ms BIGINT NOT NULL,
    attributed_at_ms BIGINT NOT NULL,
    signup_ip_hash TEXT
);
CREATE INDEX affiliate_referrals_affiliate ON affiliate_referrals (affiliate_id, attributed_at_ms);

-- Payout runs (`id`: the run id the owner's request carries: a repeated run is the same run)
-- and one payout per affiliate and currency in a run.
CREATE TABLE affiliate_payout_runs (
    id TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE affiliate_payouts (
    run_id TEXT NOT NULL REFERENCES affiliate_payout_runs (id),
    affiliate_id TEXT NOT NULL REFERENCES affiliates (id),
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    reference TEXT,
    paid_at_ms BIGINT,
    PRIMARY KEY (run_id, affiliate_id, currency)
);

-- Commission entries. kind `commission` (positive, one per invoice) or `reversal` (negative,
-- `parent_id` the commission it reverses). status: pending (holding period) → payable → paid;
-- held (fraud review) → pending again (released) or rejected; cancelled (refunded before it
-- was paid). `basis_minor`/`basis_currency`: what the invoice paid; `xtr_rate`: the decimal
-- Stars rate used when the invoice was paid in Stars. `payout_run_id`: the run that pays it.
CREATE TABLE affiliate_commissions (
    id TEXT PRIMARY KEY,
    affiliate_id TEXT NOT NULL REFERENCES affiliates (id),
    account_id TEXT NOT NULL REFERENCES users (id),
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    kind TEXT NOT NULL CHECK (kind IN ('commission', 'reversal')),
    parent_id TEXT REFERENCES affiliate_commissions (id),
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'payable', 'paid', 'held', 'rejected',
        'cancelled')),
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    basis_minor BIGINT NOT NULL,
    basis_currency TEXT NOT NULL,
    rate_bp BIGINT,
    xtr_rate TEXT,
    available_at_ms BIGINT NOT NULL,
    payout_run_id TEXT REFERENCES affiliate_payout_runs (id),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX affiliate_commissions_invoice ON affiliate_commissions (invoice_id)
    WHERE kind = 'commission';
CREATE INDEX affiliate_commissions_affiliate ON affiliate_commissions (affiliate_id, status);

-- A commission held for the owner's review, with the reason; decided `released` or `rejected`.
CREATE TABLE affiliate_holds (
    id TEXT PRIMARY KEY,
    commission_id TEXT NOT NULL REFERENCES affiliate_commissions (id),
    reason TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    decision TEXT CHECK (decision IS NULL OR decision IN ('released', 'rejected')),
    decided_at_ms BIGINT,
    decided_by TEXT
);
CREATE INDEX affiliate_holds_commission ON affiliate_holds (commission_id);

-- Billing (issue 16): the catalog's prices, customers, subscriptions, invoices, payments and the
-- outside services' events, as one ledger. Entitlements stay the only thing the fan-out reads:
-- billing derives them (source stripe / telegram_stars / trial) through the entitlements module.
-- Money is BIGINT minor units with an ISO 4217 code (`XTR`: whole Telegram Stars).

-- A plan sells through Stripe when priced in a currency, through Telegram Stars when priced in
-- XTR. `trial_days` of free use before the first charge; `device_limit` devices at most (NULL:
-- no limit); `stripe_price_id` is the Stripe Price made for it (found again by lookup key).
ALTER TABLE plans ADD COLUMN trial_days BIGINT NOT NULL DEFAULT 0 CHECK (trial_days >= 0);
ALTER TABLE plans ADD COLUMN device_limit BIGINT CHECK (device_limit IS NULL OR device_limit > 0);
ALTER TABLE plans ADD COLUMN stripe_price_id TEXT;
ALTER TABLE plans ADD COLUMN description TEXT NOT NULL DEFAULT '';

-- The plans granted by hand before billing give every feature: nobody silently loses
-- automatic copying (or anything else) when features start to be sold separately.
UPDATE plans SET features = 'analytics,auto_copy,mini_app,signals,telegram'
WHERE id IN (SELECT plan_id FROM entitlements WHERE source = 'admin');

-- The referral code an account signed up with (`POST /api/v1/signup` `ref`): the affiliates
-- issue attributes it; billing carries it into the checkout's metadata.
ALTER TABLE users ADD COLUMN signup_ref TEXT;

-- An account as a payment processor knows it.
CREATE TABLE billing_customers (
    account_id TEXT PRIMARY KEY REFERENCES users (id),
    stripe_customer_id TEXT UNIQUE,
    created_at_ms BIGINT NOT NULL
);

-- One row per subscription at a processor (`door`), converged from what the processor says.
-- status: trialing | active | past_due | canceled (at period end: still paid up) | expired |
-- refunded | incomplete. `covered_until_ms` is the end of what was paid for (with the grace
-- period while past_due): the entitlements granted for it reach exactly there.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES users (id),
    plan_id TEXT NOT NULL REFERENCES plans (id),
    door TEXT NOT NULL CHECK (door IN ('stripe', 'telegram_stars')),
    external_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled',
        'expired', 'refunded', 'incomplete')),
    current_period_start_ms BIGINT NOT NULL,
    current_period_end_ms BIGINT NOT NULL,
    cancel_at_period_end BIGINT NOT NULL DEFAULT 0,
    trial_end_ms BIGINT,
    past_due_since_ms BIGINT,
    covered_until_ms BIGINT NOT NULL,
    ended_at_ms BIGINT,
    referral TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (door, external_id)
);
CREATE INDEX subscriptions_account ON subscriptions (account_id);

-- Invoices and what was paid and refunded on them, in minor units of `currency`.
CREATE TABLE invoices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES users (id),
    subscription_id TEXT REFERENCES subscriptions (id),
    door TEXT NOT NULL CHECK (door IN ('stripe', 'telegram_stars')),
    external_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'uncollectible', 'void')),
    amount_due_minor BIGINT NOT NULL,
    amount_paid_minor BIGINT NOT NULL,
    amount_refunded_minor BIGINT NOT NULL DEFAULT 0,
    currency TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    period_end_ms BIGINT NOT NULL,
    billing_reason TEXT,
    hosted_url TEXT,
    created_at_ms BIGINT NOT NULL,
    paid_at_ms BIGINT,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (door, external_id)
);
CREATE INDEX invoices_account ON invoices (account_id, created_at_ms);

-- Every outside event, stored by its id in the transaction that applies it: a duplicate is a
-- no-op. `kind` is the processor's type (`invoice.paid`, `successful_payment`, …).
CREATE TABLE billing_events (
    door TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    account_id TEXT,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (door, event_id)
);

-- Device links (`/device-link?…&sig=…`) already used: each opens a page once. Rows older than the
-- links' 5-minute validity are pruned.
CREATE TABLE device_links_used (
    sig_hash TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    used_at_ms BIGINT NOT NULL
);

-- Telegram Stars payments (issue 16, `billing::stars_door`): who paid each charge, so a refund
-- (`refundStarPayment` needs the payer's Telegram user id) can be made and is made once.
CREATE TABLE stars_payments (
    charge_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES users (id),
    subscription_external_id TEXT NOT NULL,
    telegram_user_id BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    paid_at_ms BIGINT NOT NULL,
    refunded_at_ms BIGINT
);
CREATE INDEX stars_payments_subscription ON stars_payments (subscription_external_id, paid_at_ms);

-- What the payment processor took of each invoice and what it gave back (issue 21: revenue net
-- of processor fees; issue 20: chargebacks reverse commissions, and the paying card's
-- fingerprint finds a referrer paying for their own referral). Stripe's figures come from the
-- balance transactions of the invoice's charges and disputes; Telegram Stars take no fee in the
-- ledger (the Stars' value is `billing.xtr_rate`, what a Star brings once withdrawn).
--
-- fee_minor: processing and dispute fees, minor units of fee_currency (Stripe's settlement
-- currency; NULL when no fee was read). amount_disputed_minor: lost to disputes (chargebacks).
-- dispute_open: a dispute of it is undecided (its commission waits). payment_fingerprint: the
-- processor's fingerprint of the paying card (the same card gives the same value everywhere).
ALTER TABLE invoices ADD COLUMN fee_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN fee_currency TEXT;
ALTER TABLE invoices ADD COLUMN amount_disputed_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN dispute_open BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN payment_fingerprint TEXT;
CREATE INDEX invoices_payment_fingerprint ON invoices (payment_fingerprint)
    WHERE payment_fingerprint IS NOT NULL;

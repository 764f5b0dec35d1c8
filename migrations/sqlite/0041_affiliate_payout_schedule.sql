-- Scheduled payout runs (issue 20): `manual` (the owner starts each run), `weekly` on ISO weekday
-- `payout_day` (1 = Monday … 7 = Sunday) or `monthly` on day `payout_day` (1–28) of each month,
-- at 00:00 UTC. The `affiliates.payout_schedule` job starts the run of the latest such day once
-- (its id `scheduled-YYYY-MM-DD`, so instances and restarts start it once), never for a day
-- before the schedule was set (`payout_schedule_set_at_ms`), and only when something is
-- payable.
ALTER TABLE affiliate_settings ADD COLUMN payout_schedule TEXT NOT NULL DEFAULT 'manual'
    CHECK (payout_schedule IN ('manual', 'weekly', 'monthly'));
ALTER TABLE affiliate_settings ADD COLUMN payout_day BIGINT NOT NULL DEFAULT 1
    CHECK (payout_day BETWEEN 1 AND 28);
ALTER TABLE affiliate_settings ADD COLUMN payout_schedule_set_at_ms BIGINT NOT NULL DEFAULT 0;

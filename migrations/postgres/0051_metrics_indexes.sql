-- Metrics (issue 21): /metrics counts subscriptions by status and sums the MRR of the live ones
-- (active, past_due, canceled) at every scrape; this index makes both an index-only walk
-- instead of a scan of the subscriptions table.
CREATE INDEX subscriptions_status_plan ON subscriptions (status, plan_id);

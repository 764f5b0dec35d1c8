-- Products (issue 16's catalog): what a provider sells — a name and a description — with its
-- plans as the ways to buy it (a price in a currency or in Stars, a period, trial days, the
-- features, a device limit). A plan belongs to one product of the same provider. Every plan made
-- before products becomes its own product (same id, name, description and state), so nothing on
-- offer changes. Stripe still gets one Product and one Price per plan (lookup key
-- `tc_plan_<plan id>`): Checkout and invoices name the plan.
CREATE TABLE products (
    id TEXT PRIMARY KEY,
    provider_user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    archived_at_ms BIGINT
);
CREATE INDEX products_provider ON products (provider_user_id, created_at_ms);
ALTER TABLE plans ADD COLUMN product_id TEXT REFERENCES products (id);
INSERT INTO products (id, provider_user_id, name, description, created_at_ms, archived_at_ms)
    SELECT id, provider_user_id, name, description, created_at_ms, archived_at_ms FROM plans;
UPDATE plans SET product_id = id;
CREATE INDEX plans_product ON plans (product_id);

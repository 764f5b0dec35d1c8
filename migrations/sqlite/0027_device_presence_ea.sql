-- Presence, continued (issue 17): `seen_at_ms`, touched every minute by the instance that holds
-- the device's sync session, so a session whose hub process was killed (its end never written)
-- reads as offline from its last sign of life; and the EA link as the node reports it in its
-- signed `Heartbeat` records (DEVICE stream): connected or not since when, and whether the
-- trader was told it has been down.
ALTER TABLE device_presence ADD COLUMN seen_at_ms BIGINT;
ALTER TABLE device_presence ADD COLUMN ea_connected BIGINT CHECK (ea_connected IN (0, 1));
ALTER TABLE device_presence ADD COLUMN ea_since_ms BIGINT;
ALTER TABLE device_presence ADD COLUMN told_ea_offline_at_ms BIGINT;

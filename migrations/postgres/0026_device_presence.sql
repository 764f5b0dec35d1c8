-- Whether each device's node has a sync session, since when, and whether its trader was told
-- it is offline (issue 17, notifications): one row per device, written at every session start
-- and end; the `telegram.device_health` job tells a trader once per outage.
CREATE TABLE device_presence (
    device_id TEXT PRIMARY KEY REFERENCES devices (id),
    online BIGINT NOT NULL CHECK (online IN (0, 1)),
    since_ms BIGINT NOT NULL,
    told_offline_at_ms BIGINT
);
CREATE INDEX device_presence_offline ON device_presence (online, since_ms);

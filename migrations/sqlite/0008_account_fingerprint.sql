-- Account fingerprints (issue 20): the trading account a device runs on, as the keyed BLAKE3
-- hash of broker server and login its node signs into a `DeviceKeys` record of its DEVICE
-- stream once its EA said hello (protocol `AccountFingerprint`, 64 hex digits). The hub keeps
-- the latest one whose keys are the device's enrolled keys, and when the node signed it (the
-- record's `at_ms`); it never learns the login or the server. The index finds the devices on
-- one trading account (the affiliate fraud rules).
ALTER TABLE devices ADD COLUMN account_fingerprint TEXT;
ALTER TABLE devices ADD COLUMN account_fingerprint_at_ms BIGINT;
CREATE INDEX devices_account_fingerprint ON devices (account_fingerprint);

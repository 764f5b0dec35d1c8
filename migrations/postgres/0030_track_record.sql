-- The public track record (issue 18): a signed record is looked up by its header hash
-- (`GET /public/v1/records/{hash}`, linked from every signal of a provider's public page).
CREATE INDEX sync_records_header_hash ON sync_records (header_hash);
CREATE INDEX signals_record_hash ON signals (record_hash);

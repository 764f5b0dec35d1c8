-- The sync session's upstream store (issue 9): every record a node sends over QUIC, verified
-- and chained by the session, committed here before the hub acknowledges it, with the hub's
-- receipt signature. One row per (author, stream, seq): a second copy is refused by the key and
-- its header hash compared (equivocation), never stored.
CREATE TABLE sync_records (
    author TEXT NOT NULL,
    stream BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    header_hash TEXT NOT NULL,
    record BYTEA NOT NULL,
    received_at_ms BIGINT NOT NULL,
    receipt_signature TEXT NOT NULL,
    PRIMARY KEY (author, stream, seq)
);

-- Streams quarantined after equivocation, until a person decides.
CREATE TABLE sync_quarantine (
    author TEXT NOT NULL,
    stream BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (author, stream)
);

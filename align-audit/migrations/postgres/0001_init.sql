-- `audit_heads` holds one row per stream from the start: appenders lock it
-- (`SELECT … FOR UPDATE`) for the whole of their insert transaction, which is what keeps one
-- chain per stream however many processes append.

CREATE TABLE audit_records (
    stream TEXT NOT NULL CHECK (stream IN ('request', 'audit')),
    sequence BIGINT NOT NULL,
    id TEXT NOT NULL,
    time BIGINT NOT NULL,
    organization TEXT,
    environment TEXT,
    actor_kind TEXT NOT NULL,
    actor_id TEXT,
    actor_prefix TEXT,
    action TEXT NOT NULL,
    target TEXT,
    request_id TEXT,
    method TEXT,
    path TEXT,
    status INTEGER,
    latency_us BIGINT,
    subject TEXT,
    metadata TEXT NOT NULL,
    personal TEXT,
    anonymised BOOLEAN NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (stream, sequence)
);
CREATE INDEX audit_records_by_org ON audit_records(organization, stream, sequence);
CREATE INDEX audit_records_by_actor ON audit_records(actor_id, stream, sequence);
CREATE INDEX audit_records_by_subject ON audit_records(subject, stream, sequence);
CREATE INDEX audit_records_to_anonymise ON audit_records(stream, time) WHERE NOT anonymised;
CREATE TABLE audit_heads (
    stream TEXT PRIMARY KEY,
    sequence BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_heads (stream, sequence, hash) VALUES
    ('request', 0, decode(repeat('00', 32), 'hex')),
    ('audit', 0, decode(repeat('00', 32), 'hex'));
CREATE TABLE audit_checkpoints (
    stream TEXT PRIMARY KEY,
    sequence BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    signature BYTEA NOT NULL
);

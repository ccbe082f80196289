
CREATE TABLE audit_records (
    stream TEXT NOT NULL CHECK (stream IN ('request', 'audit')),
    sequence INTEGER NOT NULL,
    id TEXT NOT NULL,
    time INTEGER NOT NULL,
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
    latency_us INTEGER,
    subject TEXT,
    metadata TEXT NOT NULL,
    personal TEXT,
    anonymised INTEGER NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (stream, sequence)
) WITHOUT ROWID;
CREATE INDEX audit_records_by_org ON audit_records(organization, stream, sequence);
CREATE INDEX audit_records_by_actor ON audit_records(actor_id, stream, sequence);
CREATE INDEX audit_records_by_subject ON audit_records(subject, stream, sequence);
CREATE INDEX audit_records_to_anonymise ON audit_records(stream, anonymised, time);
CREATE TABLE audit_heads (
    stream TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE audit_checkpoints (
    stream TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    signature BLOB NOT NULL
);

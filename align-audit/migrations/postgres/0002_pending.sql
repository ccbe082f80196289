
-- Entries staged inside another store's transaction (`PgSink::stage_in_transaction`: a key
-- change and its audit record commit together). `PgSink::commit_staged` seals them into their
-- chains in `seq` order and deletes them in one transaction that holds the heads locked.
CREATE TABLE audit_pending (
    seq BIGSERIAL PRIMARY KEY,
    entry TEXT NOT NULL
);

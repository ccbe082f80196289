
-- Entries staged inside another store's transaction (`stage_in_transaction`: a key change
-- and its audit record commit together). The sink's writer seals them into their chains in
-- `seq` order and deletes them in one transaction of its own (`staged.rs`).
CREATE TABLE audit_pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entry TEXT NOT NULL
);

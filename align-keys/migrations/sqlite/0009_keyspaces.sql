-- Key spaces (DESIGN §12): an organisation's own token tag and permission vocabulary, and the
-- keys it mints in them for its customers. A change of such a key is a change other
-- processes' caches follow (the one change log names both kinds of key); spending credits,
-- which every verification does, is not.

CREATE TABLE keys_keyspaces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL REFERENCES keys_organizations(id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (organization_id, prefix)
);
CREATE INDEX keys_keyspaces_by_org ON keys_keyspaces(organization_id, seq);
CREATE TABLE keys_keyspace_keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    keyspace_id TEXT NOT NULL REFERENCES keys_keyspaces(id),
    organization_id TEXT NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    hash BLOB NOT NULL UNIQUE,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'sandbox')),
    owner_id TEXT,
    meta TEXT,
    permissions TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    suspended_at INTEGER,
    rotated_from TEXT,
    credits_remaining INTEGER CHECK (credits_remaining >= 0),
    refill_amount INTEGER CHECK (refill_amount > 0),
    refill_interval TEXT CHECK (refill_interval IN ('day', 'month')),
    refilled_at INTEGER,
    ratelimits TEXT NOT NULL,
    CHECK ((refill_amount IS NULL) = (refill_interval IS NULL))
);
CREATE INDEX keys_keyspace_keys_by_keyspace ON keys_keyspace_keys(keyspace_id, seq);
CREATE INDEX keys_keyspace_keys_by_owner ON keys_keyspace_keys(keyspace_id, owner_id, seq);
CREATE TRIGGER keys_keyspace_keys_changed
AFTER UPDATE OF name, owner_id, meta, permissions, expires_at, revoked_at, suspended_at,
    ratelimits, refill_amount, refill_interval
ON keys_keyspace_keys
BEGIN
    INSERT INTO keys_changes (key_id) VALUES (NEW.id);
END;

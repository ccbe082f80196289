-- Key spaces (DESIGN §12): an organisation's own token tag and permission vocabulary, and the
-- keys it mints in them for its customers. A change of such a key goes to the one change log
-- (with its advisory lock and NOTIFY) like a change of an Align key; spending credits, which
-- every verification does, does not.

CREATE TABLE keys_keyspaces (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL REFERENCES keys_organizations(id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT keys_keyspaces_prefix_unique UNIQUE (organization_id, prefix)
);
CREATE INDEX keys_keyspaces_by_org ON keys_keyspaces(organization_id, seq);
CREATE TABLE keys_keyspace_keys (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    keyspace_id TEXT NOT NULL REFERENCES keys_keyspaces(id),
    organization_id TEXT NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash BYTEA NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'sandbox')),
    owner_id TEXT,
    meta TEXT,
    permissions TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    suspended_at BIGINT,
    rotated_from TEXT,
    credits_remaining BIGINT CHECK (credits_remaining >= 0),
    refill_amount BIGINT CHECK (refill_amount > 0),
    refill_interval TEXT CHECK (refill_interval IN ('day', 'month')),
    refilled_at BIGINT,
    ratelimits TEXT NOT NULL,
    CONSTRAINT keys_keyspace_keys_hash_unique UNIQUE (hash),
    CONSTRAINT keys_keyspace_keys_prefix_unique UNIQUE (prefix),
    CONSTRAINT keys_keyspace_keys_refill CHECK ((refill_amount IS NULL) = (refill_interval IS NULL))
);
CREATE INDEX keys_keyspace_keys_by_keyspace ON keys_keyspace_keys(keyspace_id, seq);
CREATE INDEX keys_keyspace_keys_by_owner ON keys_keyspace_keys(keyspace_id, owner_id, seq);
CREATE TRIGGER keys_keyspace_keys_changed
AFTER UPDATE OF name, owner_id, meta, permissions, expires_at, revoked_at, suspended_at,
    ratelimits, refill_amount, refill_interval
ON keys_keyspace_keys
FOR EACH ROW EXECUTE FUNCTION keys_api_keys_changed();

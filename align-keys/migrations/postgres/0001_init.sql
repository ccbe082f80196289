
CREATE TABLE keys_organizations (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    security_contact TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE keys_projects (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL REFERENCES keys_organizations(id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX keys_projects_by_org ON keys_projects(organization_id, seq);
CREATE TABLE keys_users (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL REFERENCES keys_organizations(id),
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'engineer', 'viewer')),
    created_at BIGINT NOT NULL,
    UNIQUE (organization_id, email)
);
CREATE INDEX keys_users_by_org ON keys_users(organization_id, seq);
CREATE TABLE keys_api_keys (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    hash BYTEA NOT NULL,
    prefix TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'sandbox')),
    organization_id TEXT NOT NULL,
    name TEXT NOT NULL,
    project_id TEXT,
    permissions TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at BIGINT,
    revoked_at BIGINT,
    suspended_at BIGINT,
    rotated_from TEXT,
    rate_limit_per_minute BIGINT,
    allowed_cidrs TEXT NOT NULL DEFAULT '',
    CONSTRAINT keys_api_keys_hash_unique UNIQUE (hash),
    CONSTRAINT keys_api_keys_prefix_unique UNIQUE (environment, prefix)
);
CREATE INDEX keys_api_keys_by_org ON keys_api_keys(organization_id, seq);
CREATE TABLE keys_changes (
    seq BIGSERIAL PRIMARY KEY,
    key_id TEXT NOT NULL
);
CREATE FUNCTION keys_api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('align.keys_changes'), hashtext(current_schema()));
    INSERT INTO keys_changes (key_id) VALUES (NEW.id);
    PERFORM pg_notify('align_keys_changed', current_schema());
    RETURN NULL;
END
$$;
CREATE TRIGGER keys_api_keys_changed
AFTER UPDATE OF name, expires_at, revoked_at, suspended_at, rate_limit_per_minute, allowed_cidrs
ON keys_api_keys
FOR EACH ROW EXECUTE FUNCTION keys_api_keys_changed();


CREATE TABLE keys_organizations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    security_contact TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE keys_projects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL REFERENCES keys_organizations(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX keys_projects_by_org ON keys_projects(organization_id, seq);
CREATE TABLE keys_users (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL REFERENCES keys_organizations(id),
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'engineer', 'viewer')),
    created_at INTEGER NOT NULL,
    UNIQUE (organization_id, email)
);
CREATE TABLE keys_api_keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    hash BLOB NOT NULL,
    prefix TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'sandbox')),
    organization_id TEXT NOT NULL,
    name TEXT NOT NULL,
    project_id TEXT,
    permissions TEXT,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at INTEGER,
    revoked_at INTEGER,
    suspended_at INTEGER,
    rotated_from TEXT
);
CREATE UNIQUE INDEX keys_api_keys_by_hash ON keys_api_keys(hash);
CREATE UNIQUE INDEX keys_api_keys_by_prefix ON keys_api_keys(environment, prefix);
CREATE INDEX keys_api_keys_by_org ON keys_api_keys(organization_id, seq);

-- Leaked keys: each organisation's policy, and the reports (one per fingerprint).

ALTER TABLE keys_organizations ADD COLUMN leaked_key_action TEXT NOT NULL DEFAULT 'revoke'
    CHECK (leaked_key_action IN ('revoke', 'notify'));
ALTER TABLE keys_organizations ADD COLUMN leaked_sandbox_key_action TEXT NOT NULL
    DEFAULT 'notify' CHECK (leaked_sandbox_key_action IN ('revoke', 'notify'));
CREATE TABLE keys_leak_reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    fingerprint BLOB NOT NULL UNIQUE,
    organization_id TEXT NOT NULL,
    project_id TEXT,
    key_id TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    environment TEXT NOT NULL,
    reporter TEXT NOT NULL,
    token_type TEXT,
    url TEXT,
    source TEXT,
    reason TEXT,
    reported_at INTEGER NOT NULL,
    action TEXT NOT NULL
);
CREATE INDEX keys_leak_reports_by_org ON keys_leak_reports(organization_id, seq);

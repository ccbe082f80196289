
CREATE TABLE webhooks_seen (
    id TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX webhooks_seen_by_expiry ON webhooks_seen(expires_at);

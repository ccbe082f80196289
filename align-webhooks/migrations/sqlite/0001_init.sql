
CREATE TABLE webhooks_endpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'sandbox')),
    url TEXT NOT NULL,
    event_types TEXT,
    enabled INTEGER NOT NULL,
    disabled_reason TEXT,
    secrets TEXT NOT NULL,
    max_per_second INTEGER,
    failing_since INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE webhooks_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'sandbox')),
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE webhooks_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL REFERENCES webhooks_messages(id),
    endpoint_id TEXT NOT NULL REFERENCES webhooks_endpoints(id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER,
    created_at INTEGER NOT NULL,
    UNIQUE (message_id, endpoint_id)
);
CREATE INDEX webhooks_deliveries_due ON webhooks_deliveries(status, next_attempt_at);
CREATE INDEX webhooks_deliveries_by_endpoint ON webhooks_deliveries(endpoint_id, seq);
CREATE TABLE webhooks_attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL REFERENCES webhooks_deliveries(id),
    attempted_at INTEGER NOT NULL,
    status INTEGER,
    latency_ms INTEGER NOT NULL,
    response_body TEXT,
    error TEXT
);
CREATE INDEX webhooks_attempts_by_delivery ON webhooks_attempts(delivery_id, seq);

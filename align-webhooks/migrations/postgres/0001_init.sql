
CREATE TABLE webhooks_endpoints (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'sandbox')),
    url TEXT NOT NULL,
    event_types TEXT,
    enabled BOOLEAN NOT NULL,
    disabled_reason TEXT,
    secrets TEXT NOT NULL,
    max_per_second BIGINT,
    failing_since BIGINT,
    created_at BIGINT NOT NULL,
    owner_org TEXT NOT NULL DEFAULT '',
    owner_project TEXT
);
CREATE TABLE webhooks_messages (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('live', 'sandbox')),
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    owner_org TEXT NOT NULL DEFAULT '',
    owner_project TEXT
);
CREATE INDEX webhooks_messages_by_owner ON webhooks_messages(owner_org, environment, seq);
CREATE TABLE webhooks_deliveries (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL REFERENCES webhooks_messages(id),
    endpoint_id TEXT NOT NULL REFERENCES webhooks_endpoints(id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (message_id, endpoint_id)
);
CREATE INDEX webhooks_deliveries_due ON webhooks_deliveries(next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhooks_deliveries_by_endpoint ON webhooks_deliveries(endpoint_id, seq);
CREATE TABLE webhooks_attempts (
    seq BIGSERIAL PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhooks_deliveries(id),
    attempted_at BIGINT NOT NULL,
    status INTEGER,
    latency_ms BIGINT NOT NULL,
    response_body TEXT,
    error TEXT
);
CREATE INDEX webhooks_attempts_by_delivery ON webhooks_attempts(delivery_id, seq);

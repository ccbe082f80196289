CREATE TABLE idempotency_replies (
        api_key TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        fingerprint BYTEA NOT NULL,
        ticket TEXT NOT NULL,
        status INTEGER,
        reply TEXT,
        bytes BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (api_key, idem_key)
    );
    CREATE INDEX idempotency_replies_created ON idempotency_replies (created_at);
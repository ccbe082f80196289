-- Endpoint keys are sealed; the store records which key seals them.

CREATE TABLE webhooks_sealing (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    key_id TEXT NOT NULL
);

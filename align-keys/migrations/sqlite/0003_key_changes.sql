-- A log of key changes from any writer, so other processes' caches can follow.

CREATE TABLE keys_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL
);
CREATE TRIGGER keys_api_keys_changed
AFTER UPDATE OF name, expires_at, revoked_at, suspended_at, rate_limit_per_minute, allowed_cidrs
ON keys_api_keys
BEGIN
    INSERT INTO keys_changes (key_id) VALUES (NEW.id);
END;

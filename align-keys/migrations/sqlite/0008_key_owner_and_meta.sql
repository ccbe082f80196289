-- The embedder's owner id and metadata on keys (DESIGN §3); a change of either is a
-- change other processes' caches follow.

ALTER TABLE keys_api_keys ADD COLUMN owner_id TEXT;
ALTER TABLE keys_api_keys ADD COLUMN meta TEXT;
DROP TRIGGER keys_api_keys_changed;
CREATE TRIGGER keys_api_keys_changed
AFTER UPDATE OF name, expires_at, revoked_at, suspended_at, rate_limit_per_minute, allowed_cidrs,
    owner_id, meta
ON keys_api_keys
BEGIN
    INSERT INTO keys_changes (key_id) VALUES (NEW.id);
END;

-- The embedder's owner id and metadata on keys (DESIGN §3); a change of either is a
-- change other instances' caches follow.

ALTER TABLE keys_api_keys ADD COLUMN owner_id TEXT;
ALTER TABLE keys_api_keys ADD COLUMN meta TEXT;
CREATE TRIGGER keys_api_keys_owner_changed
AFTER UPDATE OF owner_id, meta ON keys_api_keys
FOR EACH ROW WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id OR OLD.meta IS DISTINCT FROM NEW.meta)
EXECUTE FUNCTION keys_api_keys_changed();

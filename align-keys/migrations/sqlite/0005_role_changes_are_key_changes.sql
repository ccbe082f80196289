-- A user's role bounds every key they created: a role change is a change of each of
-- them, so other processes' caches (and the roles they hold) follow it as a revocation.

CREATE INDEX keys_api_keys_by_creator ON keys_api_keys(created_by);
CREATE TRIGGER keys_users_role_changed
AFTER UPDATE OF role ON keys_users
WHEN OLD.role IS NOT NEW.role
BEGIN
    INSERT INTO keys_changes (key_id) SELECT id FROM keys_api_keys WHERE created_by = NEW.id;
END;

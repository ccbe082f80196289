-- A user's role bounds every key they created: a role change is a change of each of
-- them, so other instances' caches (and the roles they hold) follow it as a revocation.

CREATE INDEX keys_api_keys_by_creator ON keys_api_keys(created_by);
CREATE FUNCTION keys_users_role_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('align.keys_changes'), hashtext(current_schema()));
    INSERT INTO keys_changes (key_id) SELECT id FROM keys_api_keys WHERE created_by = NEW.id;
    PERFORM pg_notify('align_keys_changed', current_schema());
    RETURN NULL;
END
$$;
CREATE TRIGGER keys_users_role_changed
AFTER UPDATE OF role ON keys_users
FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role)
EXECUTE FUNCTION keys_users_role_changed();

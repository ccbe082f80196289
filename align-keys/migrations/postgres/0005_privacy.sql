-- Privacy (DESIGN §9): a user's display name (correctable, erased with the user), the
-- organisation's privacy contact; keys handed to another creator, and the keys of a
-- deleted user, are changes of each key (their creator's role bounds them).

ALTER TABLE keys_users ADD COLUMN name TEXT;
ALTER TABLE keys_organizations ADD COLUMN privacy_contact TEXT;
CREATE TRIGGER keys_api_keys_creator_changed
AFTER UPDATE OF created_by ON keys_api_keys
FOR EACH ROW WHEN (OLD.created_by IS DISTINCT FROM NEW.created_by)
EXECUTE FUNCTION keys_api_keys_changed();
CREATE FUNCTION keys_users_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('align.keys_changes'), hashtext(current_schema()));
    INSERT INTO keys_changes (key_id) SELECT id FROM keys_api_keys WHERE created_by = OLD.id;
    PERFORM pg_notify('align_keys_changed', current_schema());
    RETURN NULL;
END
$$;
CREATE TRIGGER keys_users_deleted
AFTER DELETE ON keys_users
FOR EACH ROW EXECUTE FUNCTION keys_users_deleted();

-- Privacy (DESIGN §9): a user's display name (correctable, erased with the user) and the
-- organisation's privacy contact.

ALTER TABLE keys_users ADD COLUMN name TEXT;
ALTER TABLE keys_organizations ADD COLUMN privacy_contact TEXT;

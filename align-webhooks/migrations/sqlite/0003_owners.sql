-- Owners: fan-out never crosses organisations (or projects).

ALTER TABLE webhooks_endpoints ADD COLUMN owner_org TEXT NOT NULL DEFAULT '';
ALTER TABLE webhooks_endpoints ADD COLUMN owner_project TEXT;
ALTER TABLE webhooks_messages ADD COLUMN owner_org TEXT NOT NULL DEFAULT '';
ALTER TABLE webhooks_messages ADD COLUMN owner_project TEXT;

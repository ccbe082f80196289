-- The event log (`GET /events`) pages by organisation in insertion order.

CREATE INDEX webhooks_messages_by_owner ON webhooks_messages(owner_org, environment, seq);

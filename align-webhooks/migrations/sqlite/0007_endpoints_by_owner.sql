-- Endpoints are found by owner (enqueue fan-out, an organisation's list, its cap): one
-- organisation's endpoints do not slow another's.

CREATE INDEX webhooks_endpoints_by_owner ON webhooks_endpoints(owner_org, environment, seq);

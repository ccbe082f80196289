
ALTER TABLE keys_api_keys ADD COLUMN rate_limit_per_minute INTEGER;
ALTER TABLE keys_api_keys ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '';

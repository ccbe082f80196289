-- Users' password hashes and sign-in sessions (stored under the SHA-256 of the token).

ALTER TABLE keys_users ADD COLUMN password_hash TEXT;
CREATE INDEX keys_users_by_email ON keys_users(email);
CREATE TABLE keys_user_sessions (
    hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES keys_users(id),
    csrf BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX keys_user_sessions_by_user ON keys_user_sessions(user_id);
CREATE INDEX keys_user_sessions_by_expiry ON keys_user_sessions(expires_at);

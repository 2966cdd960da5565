-- Invite tokens. A token is `<id>.<secret>`; it lets its holder see the
-- gateways and bridges of its invite-only buckets. Only a SHA-256 of the
-- secret is kept: the token itself is shown once, when it is created.
CREATE TABLE invites (
    id               TEXT PRIMARY KEY,
    -- hex SHA-256 of the secret part of the token
    secret_hash      TEXT NOT NULL,
    -- JSON array of bucket names
    buckets          TEXT NOT NULL,
    created_millis   BIGINT NOT NULL,
    -- NULL: never expires
    expires_millis   BIGINT,
    -- updated now and then, not on every use
    last_used_millis BIGINT
);

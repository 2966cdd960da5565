-- Agents that may push gateways and bridges. A token is valid only while
-- its agent exists, is not revoked, and the token's id is the current one.
CREATE TABLE agents (
    name           TEXT PRIMARY KEY,
    token_id       TEXT NOT NULL,
    created_millis INTEGER NOT NULL,
    revoked_millis INTEGER
);

-- Admin tokens minted by `menshen admin token`, so that one can be revoked
-- by its id (jti) before it expires. The token itself is not kept.
CREATE TABLE admin_tokens (
    jti            TEXT PRIMARY KEY,
    subject        TEXT NOT NULL,
    role           TEXT NOT NULL,
    issued_millis  INTEGER NOT NULL,
    expires_millis INTEGER NOT NULL,
    revoked_millis INTEGER
);
CREATE INDEX admin_tokens_subject ON admin_tokens (subject);

-- Subjects whose admin tokens issued up to a moment are refused: each of
-- their tokens whose iat (whole seconds) is at or before revoked_millis.
CREATE TABLE admin_subject_revocations (
    subject        TEXT PRIMARY KEY,
    revoked_millis INTEGER NOT NULL
);

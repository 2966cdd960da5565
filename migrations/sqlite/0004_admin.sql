-- What an operator set on a gateway or bridge, kept apart from the pushed
-- or configured row so that an agent's next heartbeat does not undo it.
-- NULL: the resource's own value.
CREATE TABLE resource_overrides (
    kind         TEXT NOT NULL CHECK (kind IN ('gateway', 'bridge')),
    host         TEXT NOT NULL,
    experimental BOOLEAN,
    bucket       TEXT,
    -- left out of client lists without being deleted
    maintenance  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (kind, host)
);

-- Every change made through the admin API (and the CLI): who, what, when,
-- and the state before and after as JSON.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_millis INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    before    TEXT,
    after     TEXT
);

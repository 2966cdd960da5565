-- Provider and service settings, each one JSON document.
CREATE TABLE settings (
    name           TEXT PRIMARY KEY,
    value          TEXT NOT NULL,
    updated_millis BIGINT NOT NULL
);

CREATE TABLE locations (
    label        TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    country_code TEXT NOT NULL DEFAULT '',
    lat          DOUBLE PRECISION,
    lon          DOUBLE PRECISION,
    -- whole hours from UTC
    timezone     BIGINT,
    hemisphere   TEXT NOT NULL DEFAULT '',
    region       TEXT NOT NULL DEFAULT '',
    -- who defined it: 'config' (the provider file) or 'admin'
    origin       TEXT NOT NULL
);
-- clients name locations case-insensitively
CREATE UNIQUE INDEX locations_label_ci ON locations (lower(label));

-- Gateways and bridges. `host` is the resource's identity within its kind.
CREATE TABLE resources (
    kind             TEXT NOT NULL CHECK (kind IN ('gateway', 'bridge')),
    host             TEXT NOT NULL,
    ip_addr          TEXT NOT NULL DEFAULT '',
    ip6_addr         TEXT NOT NULL DEFAULT '',
    location         TEXT NOT NULL REFERENCES locations (label) ON UPDATE CASCADE,
    port             BIGINT NOT NULL DEFAULT 0,
    transport        TEXT NOT NULL,
    type             TEXT NOT NULL,
    load             DOUBLE PRECISION NOT NULL DEFAULT 0,
    overloaded       BOOLEAN NOT NULL DEFAULT FALSE,
    healthy          BOOLEAN NOT NULL DEFAULT TRUE,
    experimental     BOOLEAN NOT NULL DEFAULT FALSE,
    bucket           TEXT NOT NULL DEFAULT '',
    auth             TEXT NOT NULL DEFAULT '',
    -- JSON object
    options          TEXT NOT NULL DEFAULT '{}',
    last_seen_millis BIGINT NOT NULL DEFAULT 0,
    -- 'config', 'admin' or 'agent'; only agent-pushed resources expire
    origin           TEXT NOT NULL,
    agent            TEXT,
    PRIMARY KEY (kind, host)
);
CREATE INDEX resources_location ON resources (location);
CREATE INDEX resources_agent ON resources (agent);

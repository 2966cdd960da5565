-- Countries an operator blocked a gateway or bridge in: ISO 3166-1 alpha-2
-- codes, uppercase, sorted, comma-separated; '' for none. Clients there are
-- not given it.
ALTER TABLE resource_overrides ADD COLUMN blocked_in TEXT NOT NULL DEFAULT '';

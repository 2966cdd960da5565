-- What the prober (menshen probe, or serve --probe) last found of each
-- gateway and bridge, checked from outside: 'untested' (not checked yet,
-- or cannot be: no address, a hopping port, a transport it does not
-- speak), 'functional' (its last check passed) or 'dysfunctional' (failed
-- its last --probe-failures checks). A resource without a row is untested.
-- Rows of resources that are gone are removed by the prober's next round.
CREATE TABLE probe_results (
    kind TEXT NOT NULL,
    host TEXT NOT NULL,
    state TEXT NOT NULL,
    -- Checks failed in a row; 0 after one that passed.
    failures BIGINT NOT NULL DEFAULT 0,
    checked_millis BIGINT NOT NULL,
    -- When state last changed.
    changed_millis BIGINT NOT NULL,
    -- What answered, or why the last check failed.
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, host)
);

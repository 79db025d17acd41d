-- 001_init: the whole tlsgate store. Applied by store.c inside one transaction together with
-- `PRAGMA user_version = 1`, so a half-applied migration cannot exist.
--
-- Conventions: times are integer seconds since the Unix epoch (UTC); host names are stored as
-- given and compared case-insensitively (COLLATE NOCASE); roles are a bit mask whose bits are
-- defined in orchestrator/inventory.h (ROLE_*), in the order DESIGN.md lists the roles.
--
-- Derived dependency edges (client -> MP/DP/SUP/CMG, ... ) are NOT stored: at 1,000,000 clients
-- and 266 servers a site they would be hundreds of millions of rows. They follow from (site,
-- roles) and are computed by queries; see orchestrator/deps.h. Only explicit edges are stored.

CREATE TABLE site (
    code        TEXT PRIMARY KEY COLLATE NOCASE,
    phase       TEXT NOT NULL DEFAULT 'inventory'
                CHECK (phase IN ('inventory', 'clients', 'servers', 'enforce', 'complete')),
    entered_at  INTEGER NOT NULL,
    entered_by  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE host (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    site        TEXT NOT NULL COLLATE NOCASE REFERENCES site(code),
    roles       INTEGER NOT NULL DEFAULT 1 CHECK (roles > 0),
    collector   TEXT NOT NULL,              -- ADDRESS:PORT the daemon connects to
    os          TEXT NOT NULL DEFAULT '',   -- as the inventory says; the report's facts win
    reenable_legacy INTEGER NOT NULL DEFAULT 0, -- set by `phase rollback` out of enforce
    added_at    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX host_by_site ON host (site, name);

-- Explicit edges from `inventory import` (CSV dependent,server,channel).
CREATE TABLE edge (
    dependent   INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
    server      INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    PRIMARY KEY (dependent, server, channel),
    CHECK (dependent <> server)
) WITHOUT ROWID;
CREATE INDEX edge_by_server ON edge (server, dependent);

-- The last accepted report of each host, whole, with the summary of its evaluation.
-- blockers/warnings count failed verdicts of each severity; a host's state is derived from
-- (collected_at, blockers) and the configured stale_after, never stored.
CREATE TABLE report (
    host_id         INTEGER PRIMARY KEY REFERENCES host(id) ON DELETE CASCADE,
    collected_at    INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    body            TEXT NOT NULL,
    catalog_version TEXT NOT NULL,
    blockers        INTEGER NOT NULL,
    warnings        INTEGER NOT NULL,
    legacy_disabled INTEGER NOT NULL        -- 1 when SSL 3.0, TLS 1.0 and 1.1 are off server-side
);

-- One row per (host, applicable rule) of the last evaluation.
CREATE TABLE verdict (
    host_id         INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
    rule            TEXT NOT NULL,
    pass            INTEGER NOT NULL CHECK (pass IN (0, 1)),
    severity        TEXT NOT NULL CHECK (severity IN ('blocker', 'warning')),
    reason          TEXT NOT NULL,
    PRIMARY KEY (host_id, rule)
) WITHOUT ROWID;
CREATE INDEX verdict_failed ON verdict (rule, host_id) WHERE pass = 0;

-- The daemon's view of each collector: what happened last and when to try again.
CREATE TABLE poll (
    host_id         INTEGER PRIMARY KEY REFERENCES host(id) ON DELETE CASCADE,
    last_attempt_at INTEGER,
    last_success_at INTEGER,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_at         INTEGER
);

CREATE TABLE waiver (
    host_id     INTEGER PRIMARY KEY REFERENCES host(id) ON DELETE CASCADE,
    reason      TEXT NOT NULL,
    until_at    INTEGER,                    -- NULL: until unwaived
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE TABLE phase_history (
    id          INTEGER PRIMARY KEY,
    site        TEXT NOT NULL COLLATE NOCASE REFERENCES site(code),
    from_phase  TEXT,
    to_phase    TEXT NOT NULL,
    at          INTEGER NOT NULL,
    by          TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT ''
);

-- Append-only: the CLI never updates or deletes audit rows, and the triggers make sure.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    user        TEXT NOT NULL,
    command     TEXT NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- Small key/value settings of the store itself (e.g. the loaded catalog version).
CREATE TABLE meta (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
) WITHOUT ROWID;

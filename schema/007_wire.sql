-- 007_wire: evidence from the wire (issue 18) — what servers really accept on their TLS ports
-- (`tlsgate probe`) and which clients really speak legacy TLS to them (`tlsgate evidence`).
-- Owned by orchestrator/domain/wire.c. Times are epoch seconds (UTC) as everywhere.

-- The TLS ports to probe on a host, when the ports its roles imply are not right (a named
-- instance of SQL Server on another port, an SUP on 8530/8531, a test peer). tds = 1: SQL
-- Server, TLS inside TDS PRELOGIN packets. No row: the ports of the roles.
CREATE TABLE IF NOT EXISTS probe_port (
    host_id     INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
    port        INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    tds         INTEGER NOT NULL DEFAULT 0 CHECK (tds IN (0, 1)),
    PRIMARY KEY (host_id, port)
) WITHOUT ROWID;

-- The last probe of each (host, port, protocol). 'untested': the prober could not tell (its own
-- TLS library cannot speak the protocol, the port did not answer, a timeout): never 'refused'.
CREATE TABLE IF NOT EXISTS probe_result (
    host_id     INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
    port        INTEGER NOT NULL,
    tds         INTEGER NOT NULL DEFAULT 0,
    protocol    TEXT NOT NULL
                CHECK (protocol IN ('ssl3', 'tls1.0', 'tls1.1', 'tls1.2', 'tls1.3')),
    result      TEXT NOT NULL CHECK (result IN ('accepted', 'refused', 'untested')),
    error       TEXT NOT NULL DEFAULT '',
    at          INTEGER NOT NULL,
    PRIMARY KEY (host_id, port, protocol)
) WITHOUT ROWID;

-- Handshakes servers logged (IIS crypt-protocol, SCHANNEL event 36880), aggregated per UTC day
-- and (server, client address, protocol). server is the name as the log gave it (joined to the
-- inventory by name); client is an address, joined to inventory hosts by their collector
-- address at read time ('unknown' when the source carries none, as event 36880).
CREATE TABLE IF NOT EXISTS evidence (
    server      TEXT NOT NULL COLLATE NOCASE,
    client      TEXT NOT NULL,
    protocol    TEXT NOT NULL
                CHECK (protocol IN ('ssl2', 'ssl3', 'tls1.0', 'tls1.1', 'tls1.2', 'tls1.3')),
    day         INTEGER NOT NULL,           -- epoch seconds of 00:00 UTC
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    count       INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (server, client, protocol, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS evidence_by_day ON evidence (day);

-- "This client address may keep speaking legacy TLS" (a device being retired, an accepted risk):
-- it stops blocking gates while active (until_at NULL or later than now). Audited by the CLI.
CREATE TABLE IF NOT EXISTS evidence_waiver (
    client      TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    until_at    INTEGER,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL
) WITHOUT ROWID;

-- The address part of a collector address ("127.0.0.17:8443" -> "127.0.0.17:"), so a client
-- address joins to its host through an index: rtrim stops at the ':' before the port.
CREATE INDEX IF NOT EXISTS host_by_collector_addr ON host (rtrim(collector, '0123456789'));

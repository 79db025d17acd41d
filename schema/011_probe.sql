-- 011_probe: the administrator's address resolver for traffic evidence (issue 18). A client
-- address a server logged joins an inventory host by that host's collector address; this table
-- adds the addresses that belong to a host but are not its collector's (a second interface,
-- NAT, a VPN pool). Replaced whole by `tlsgate evidence names FILE`; owned by
-- orchestrator/domain/wire.c.
CREATE TABLE IF NOT EXISTS evidence_name (
    address     TEXT PRIMARY KEY,
    host_id     INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE
) WITHOUT ROWID;

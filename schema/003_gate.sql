-- 003_gate: indexes for the gate and phase decisions (orchestrator/gate.c).
--
-- host_by_site_roles: the per-site count of hosts by role mask reads this index alone, in
-- (roles) order inside the site, so a 150,000-client site is grouped without a sort.
-- host_systems: the servers and consoles of a site, without walking its clients (nearly every
-- host is a plain client, roles = 1). Queries name the same `roles <> 1` term so SQLite can
-- use this partial index.
-- IF NOT EXISTS: numbers 002 and 003 are written in parallel; a development database may have
-- seen this file under another number.
CREATE INDEX IF NOT EXISTS host_by_site_roles ON host (site, roles);
CREATE INDEX IF NOT EXISTS host_systems ON host (site, name) WHERE roles <> 1;
-- report_state: what a host's state needs (hoststate.h) and the legacy flag, without touching
-- the report rows, whose bodies (kilobytes each) would make every lookup read its own page.
-- gate.c names it with INDEXED BY: the planner would otherwise take the rowid lookup.
CREATE INDEX IF NOT EXISTS report_state
    ON report (host_id, collected_at, blockers, legacy_disabled);

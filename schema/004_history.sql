-- 004_history: the rollout over time, for the status page's burn-down and the CSV views
-- `history` and `history-rules` (orchestrator/domain/history.c owns both tables).
--
-- One point per site each time the daemon finishes a round (at most once per `interval`) and
-- each time `tlsgate collect` runs: the counts of `phase status` and `gate list` at that moment
-- (the gate's own functions compute them), the hosts whose last pull failed, and per failing
-- blocker rule its host count. Bounded: every point of the last 7 days is kept; older points are
-- compacted to the last point of each site and UTC day, in the transaction that adds a point.
CREATE TABLE history (
    site            TEXT NOT NULL COLLATE NOCASE,
    at              INTEGER NOT NULL,           -- epoch seconds (UTC) of the decision
    phase           TEXT NOT NULL,
    hosts           INTEGER NOT NULL,
    ready           INTEGER NOT NULL,
    not_ready       INTEGER NOT NULL,
    unknown         INTEGER NOT NULL,
    waived          INTEGER NOT NULL,
    servers         INTEGER NOT NULL,
    gate_open       INTEGER NOT NULL,
    gate_blocked    INTEGER NOT NULL,
    orphan_risk     INTEGER NOT NULL,
    pull_failing    INTEGER NOT NULL,           -- hosts whose last pull attempt failed
    PRIMARY KEY (site, at)
) WITHOUT ROWID;
CREATE INDEX history_by_at ON history (at);

CREATE TABLE history_rule (
    site            TEXT NOT NULL COLLATE NOCASE,
    at              INTEGER NOT NULL,
    rule            TEXT NOT NULL,
    hosts           INTEGER NOT NULL,           -- hosts whose last report fails this blocker
    PRIMARY KEY (site, at, rule)
) WITHOUT ROWID;

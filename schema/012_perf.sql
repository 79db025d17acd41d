-- 012_perf: report_state also covers `warnings`, so the hosts export reads the report index
-- instead of the report rows (kilobytes of body each; two rows per page at best). Same name,
-- one more column: gate.c and export.c name it with INDEXED BY, and ingest still maintains one
-- index on report, not two.
DROP INDEX IF EXISTS report_state;
CREATE INDEX report_state ON report (host_id, collected_at, blockers, legacy_disabled, warnings);

/*
 * ingest: stores one accepted report of a host together with its evaluation — the `report` row
 * (body, collected_at, received_at, catalog version, blockers, warnings, legacy_disabled) and its
 * `verdict` rows — replacing the previous ones (schema/001_init.sql).
 *
 * One report is all-or-nothing: the writes run inside a SAVEPOINT, so ingest works both on its
 * own (autocommit) and inside a caller's transaction (the daemon batches many reports per
 * transaction); a failure rolls back to the savepoint and leaves the caller's transaction usable.
 *
 * The caller has validated the report (collectors/report.h report_parse) and checked that it
 * belongs to the host; ingest trusts its shape but never its values.
 *
 * Errors follow store.h (HOW ERRORS TRAVEL): every function returns 0 or a negative code and
 * leaves the message on the store (store_errmsg); ingest_one's names the host id.
 *
 * legacy_disabled is 1 when SCHANNEL's server side has SSL 3.0, TLS 1.0 and TLS 1.1 off for
 * orphan risk (rules_legacy_disabled: Enabled=0, DisabledByDefault=1, or the OS default off; a
 * default that cannot be known counts as off). Re-evaluation recomputes it with the verdicts.
 */
#ifndef TLSGATE_INGEST_H
#define TLSGATE_INGEST_H

#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>

struct store;
struct rules_catalog;
struct rules_verdict;

/* Prepared statements kept for the daemon's hot path; one per store connection. */
struct ingest {
    struct store *store;
    const struct rules_catalog *catalog; /* borrowed; must outlive the context */
    sqlite3_stmt *get_collected;
    sqlite3_stmt *put_report;
    sqlite3_stmt *del_verdicts;
    /* put_rows[k - 1] inserts k verdict rows in one statement (made when first needed), so a
     * report's verdicts cost one statement, not one each (16 rows at most per statement) */
    sqlite3_stmt *put_rows[16];
    sqlite3_stmt *savepoint, *release, *rollback_to; /* the per-report SAVEPOINT */
    struct rules_verdict *verdicts; /* room for one evaluation (rules_count of the catalog) */
};

/* Prepares the statements. Returns 0 or a negative code (message on the store). */
int ingest_init(struct ingest *ig, struct store *s, const struct rules_catalog *c);
void ingest_release(struct ingest *ig);

/*
 * Evaluates `report` for a host with `roles` and stores it with its verdicts.
 * Returns:
 *   0          stored (a report with the same collected_at as the stored one replaces it)
 *   -ESTALE    collected_at is older than the stored report's; nothing changed
 *   -EINVAL    the report has no usable collected_at
 *   -ENOENT    no host with that id
 *   -EBUSY     the database is locked (retry later; nothing changed)
 *   -EIO, -ENOMEM
 * with a message naming the host id and the cause on the store.
 */
int ingest_one(struct ingest *ig, long long host_id, unsigned roles, json_t *report,
               long long received_at);

/* The same, storing `body` (`len` bytes, the report exactly as received and parsed into
 * `report`) instead of serialising `report` again: the daemon's path. `body` NULL: as
 * ingest_one. */
int ingest_one_body(struct ingest *ig, long long host_id, unsigned roles, json_t *report,
                    const char *body, size_t len, long long received_at);

/* The same without a kept context: prepares, stores, finalizes. For one-off callers. */
int ingest_report(struct store *s, const struct rules_catalog *c, long long host_id,
                  unsigned roles, json_t *report, long long received_at);

/* rules_legacy_disabled(report), the value stored in report.legacy_disabled. */
int ingest_legacy_disabled(json_t *report);

/*
 * Re-evaluates every stored report against `c` and rewrites verdicts and summary columns
 * (catalog_version, blockers, warnings), in the caller's transaction. `progress`, when not NULL, is
 * called after each chunk of reports with (done, total). Returns 0 or a negative code (message on
 * the store). A stored body that no longer parses is counted in *bad and its verdicts left as they
 * are. The verdicts are exactly those of evaluating each stored body on its own; each body is cut
 * down to the members the rules read (rules_reads) and equal cuts are evaluated once. Evaluation
 * runs on a worker thread it starts and joins; the store is used on the calling thread only. Memory
 * is bounded by two chunks of 512 reports and a 4096-entry memo.
 */
int ingest_reevaluate_all(struct store *s, const struct rules_catalog *c,
                          void (*progress)(void *ctx, long long done, long long total),
                          void *ctx, long long *count, long long *bad);

/*
 * Re-evaluates the stored reports of the hosts `ids` (n of them) with the roles the host table
 * has now, in the caller's transaction, exactly as ingest_reevaluate_all does for every host
 * (verdicts rewritten where they changed, summary columns, catalog version of `c`). For an
 * inventory import that changed roles: a host that became a site system must not keep the
 * verdicts of a client. Hosts without a stored report are skipped. *count is the number of
 * reports re-evaluated, *bad those whose body no longer parses (left as they are). Returns 0 or a
 * negative code with the message on the store.
 */
int ingest_reevaluate_hosts(struct store *s, const struct rules_catalog *c,
                            const long long *ids, size_t n, long long *count, long long *bad);

#endif

/*
 * ingest_reads.c — reading back the `report` and `verdict` rows ingest.c writes
 * (ingest_reads.h).
 */
#include "ingest_reads.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inventory.h"
#include "store.h"

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static int stored_row(sqlite3_stmt *st, void *arg)
{
    struct ingest_stored *r = arg;
    r->reported = true;
    r->collected_at = sqlite3_column_int64(st, 0);
    r->received_at = sqlite3_column_int64(st, 1);
    r->catalog_version = col_dup(st, 2);
    r->blockers = sqlite3_column_int(st, 3);
    r->warnings = sqlite3_column_int(st, 4);
    r->legacy_disabled = sqlite3_column_int(st, 5);
    r->body = col_dup(st, 6);
    return 0;
}

int ingest_stored_get(struct store *s, long long host_id, struct ingest_stored *r)
{
    memset(r, 0, sizeof(*r));
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT collected_at, received_at, catalog_version, blockers, "
                           "warnings, legacy_disabled, body FROM report WHERE host_id = ?",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    rc = store_each(s, st, "read host", stored_row, r);
    if (rc)
        ingest_stored_release(r);
    return rc;
}

void ingest_stored_release(struct ingest_stored *r)
{
    free(r->catalog_version);
    free(r->body);
    r->catalog_version = r->body = NULL;
}

struct verdict_walk {
    ingest_verdict_fn fn;
    void *arg;
};

static int verdict_row(sqlite3_stmt *st, void *arg)
{
    struct verdict_walk *w = arg;
    struct ingest_verdict_row v = {
        .rule = (const char *)sqlite3_column_text(st, 0),
        .pass = sqlite3_column_int(st, 1) != 0,
        .severity = (const char *)sqlite3_column_text(st, 2),
        .reason = (const char *)sqlite3_column_text(st, 3),
    };
    return w->fn(&v, w->arg);
}

int ingest_verdicts_each(struct store *s, long long host_id, enum ingest_verdicts_which which,
                         ingest_verdict_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           which == INGEST_VERDICTS_FAILED_BLOCKERS
                               ? "SELECT rule, pass, severity, reason FROM verdict WHERE "
                                 "host_id = ? AND pass = 0 AND severity = 'blocker' ORDER BY rule"
                               : "SELECT rule, pass, severity, reason FROM verdict WHERE "
                                 "host_id = ? ORDER BY pass, severity = 'warning', rule",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    struct verdict_walk w = {fn, arg};
    return store_each(s, st, "read verdicts", verdict_row, &w);
}

struct failures_walk {
    ingest_rule_failures_fn fn;
    void *arg;
};

static int failures_row(sqlite3_stmt *st, void *arg)
{
    struct failures_walk *w = arg;
    struct ingest_rule_failures f = {
        .rule = (const char *)sqlite3_column_text(st, 0),
        .severity = (const char *)sqlite3_column_text(st, 1),
        .hosts = sqlite3_column_int64(st, 2),
        .clients = sqlite3_column_int64(st, 3),
        .site_systems = sqlite3_column_int64(st, 4),
        .consoles = sqlite3_column_int64(st, 5),
    };
    return w->fn(&f, w->arg);
}

int ingest_failures_by_rule(struct store *s, const char *site, ingest_rule_failures_fn fn,
                            void *arg)
{
    char sql[640];
    snprintf(sql, sizeof(sql),
             "SELECT v.rule, v.severity, count(*), "
             "sum((h.roles & %d) != 0), sum((h.roles & %d) != 0), sum((h.roles & %d) != 0) "
             "FROM verdict v JOIN host h ON h.id = v.host_id "
             "WHERE v.pass = 0 AND (?1 IS NULL OR h.site = ?1) "
             "GROUP BY v.rule, v.severity "
             "ORDER BY v.severity = 'blocker' DESC, count(*) DESC, v.rule",
             ROLE_CLIENT, ROLE_SERVER_MASK, ROLE_CONSOLE);
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    if (site)
        sqlite3_bind_text(st, 1, site, -1, SQLITE_TRANSIENT);
    struct failures_walk w = {fn, arg};
    return store_each(s, st, "read verdicts", failures_row, &w);
}

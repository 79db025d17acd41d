/*
 * fixture.h — building small fleets for the orchestrator's suites: a real database file with
 * sites, hosts, reports, verdicts, waivers and edges written by plain SQL, and running the real
 * `tlsgate` binary on it with a pinned clock ($TLSGATE_NOW). The schema knowledge the tests
 * need (which columns a row must have, what a fresh report looks like) is written here once.
 *
 * Two kinds of helpers: the short ones (fx_site, fx_host, fx_fail, ...) format their values into
 * the SQL and take plain names only; the row builders (fx_site_row, fx_host_row, fx_report_row,
 * fx_verdict_row, fx_waiver_row) give every column, explicit ids included, and bind their values,
 * so names with commas, quotes, newlines, a leading '=' or any UTF-8 go in as they are.
 */
#ifndef TLSGATE_FIXTURE_H
#define TLSGATE_FIXTURE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inventory.h"
#include "store.h"
#include "testutil.h"

/* The clock of every fixture: reports at FX_NOW - 60 are fresh, at FX_STALE are not. */
#define FX_NOW 1800000000LL
#define FX_STALE_AFTER 86400
#define FX_STALE (FX_NOW - FX_STALE_AFTER - 1)

#define MP ROLE_MANAGEMENT_POINT
#define DP ROLE_DISTRIBUTION_POINT
#define SUP ROLE_SOFTWARE_UPDATE_POINT
#define DB (ROLE_SITE_SERVER | ROLE_SITE_DATABASE)

static inline struct store *fx_open(const char *db)
{
    struct store *s;
    char err[512];
    ck_assert_msg(store_open(db, true, &s, err, sizeof(err)) == 0, "%s", err);
    return s;
}

static inline void fx_sql(struct store *s, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    ck_assert_msg(store_exec(s, sql) == 0, "%s: %s", sql, store_errmsg(s));
}

static inline long long fx_int(struct store *s, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    sqlite3_stmt *st;
    ck_assert_msg(store_prepare(s, sql, &st) == 0, "%s", store_errmsg(s));
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static inline void fx_site(struct store *s, const char *code, const char *phase)
{
    fx_sql(s,
           "INSERT INTO site (code, phase, entered_at, entered_by) VALUES ('%s', '%s', 0, "
           "'fixture')",
           code, phase);
}

/* A host of `site` with its collector at `collector` (ADDRESS:PORT) and no report yet. */
static inline long long fx_host_bare(struct store *s, const char *name, const char *site,
                                     unsigned roles, const char *collector)
{
    fx_sql(s,
           "INSERT INTO host (name, site, roles, collector, added_at, updated_at) "
           "VALUES ('%s', '%s', %u, '%s', 0, 0)",
           name, site, roles, collector);
    return fx_int(s, "SELECT id FROM host WHERE name = '%s'", name);
}

/* A host with a fresh, ready report; returns its id. */
static inline long long fx_host(struct store *s, const char *name, const char *site, unsigned roles)
{
    long long id = fx_host_bare(s, name, site, roles, "127.0.0.1:9443");
    fx_sql(s,
           "INSERT INTO report (host_id, collected_at, received_at, body, catalog_version, "
           "blockers, warnings, legacy_disabled) VALUES (%lld, %lld, %lld, '{}', 'test', 0, "
           "0, 0)",
           id, FX_NOW - 60, FX_NOW - 60);
    return id;
}

/* The site servers of P01 in the gate's and phase's fleets, each with a fresh report:
 * db1.p01.example (site server and database), mp1, dp1 and sup1 (.p01.example). */
static inline void fx_p01_servers(struct store *s)
{
    static const struct {
        const char *name;
        unsigned roles;
    } servers[] = {{"db1.p01.example", DB},
                   {"mp1.p01.example", MP},
                   {"dp1.p01.example", DP},
                   {"sup1.p01.example", SUP}};
    for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++)
        fx_host(s, servers[i].name, "P01", servers[i].roles);
}

static inline long long fx_id(struct store *s, const char *name)
{
    return fx_int(s, "SELECT id FROM host WHERE name = '%s'", name);
}

/* One failed blocker verdict more for `name` (the report's count follows). */
static inline void fx_fail(struct store *s, const char *name, const char *rule, const char *reason)
{
    long long id = fx_id(s, name);
    fx_sql(s,
           "INSERT INTO verdict (host_id, rule, pass, severity, reason) VALUES (%lld, '%s', "
           "0, 'blocker', '%s')",
           id, rule, reason);
    fx_sql(s, "UPDATE report SET blockers = blockers + 1 WHERE host_id = %lld", id);
}

/* The Windows 7 client of the tests: TLS 1.2 not usable by WinHTTP without KB3140245. */
static inline void fx_win7_without_kb(struct store *s, const char *name)
{
    fx_fail(s, name, "winhttp-kb3140245", "KB3140245 missing");
}

static inline void fx_fix(struct store *s, const char *name)
{
    long long id = fx_id(s, name);
    fx_sql(s, "DELETE FROM verdict WHERE host_id = %lld", id);
    fx_sql(s, "UPDATE report SET blockers = 0, collected_at = %lld WHERE host_id = %lld",
           FX_NOW - 60, id);
}

static inline void fx_stale(struct store *s, const char *name)
{
    fx_sql(s, "UPDATE report SET collected_at = %lld WHERE host_id = %lld", FX_STALE,
           fx_id(s, name));
}

static inline void fx_unreported(struct store *s, const char *name)
{
    fx_sql(s, "DELETE FROM report WHERE host_id = %lld", fx_id(s, name));
}

static inline void fx_legacy_off(struct store *s, const char *name)
{
    fx_sql(s, "UPDATE report SET legacy_disabled = 1 WHERE host_id = %lld", fx_id(s, name));
}

/* A probe of the host's port 443 at `at` that found TLS 1.0 `result` ("refused", "accepted" or
 * "untested"): what `tlsgate probe` stores (domain/wire.h), without a server to probe. */
static inline void fx_probed(struct store *s, const char *name, const char *result, long long at)
{
    fx_sql(s,
           "INSERT OR REPLACE INTO probe_result (host_id, port, tds, protocol, result, error, at)"
           " VALUES (%lld, 443, 0, 'tls1.0', '%s', '', %lld)",
           fx_id(s, name), result, at);
}

/* until 0: no end. */
static inline void fx_waive(struct store *s, const char *name, long long until)
{
    long long id = fx_id(s, name);
    if (until)
        fx_sql(s, "INSERT INTO waiver VALUES (%lld, 'test waiver', %lld, 0, 'fixture')", id, until);
    else
        fx_sql(s, "INSERT INTO waiver VALUES (%lld, 'test waiver', NULL, 0, 'fixture')", id);
}

static inline void fx_edge(struct store *s, const char *dependent, const char *server)
{
    fx_sql(s, "INSERT INTO edge (dependent, server, channel) VALUES (%lld, %lld, 'custom')",
           fx_id(s, dependent), fx_id(s, server));
}

/* ---- row builders: every column given, values bound ---- */

/* Runs `sql` with its parameters ?1, ?2, ... bound from the arguments, one letter of `types`
 * each: 't' text (const char *; NULL binds NULL), 'i' an integer (long long), 'n' an integer
 * that binds NULL when 0. */
static inline void fx_exec(struct store *s, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st;
    ck_assert_msg(store_prepare(s, sql, &st) == 0, "%s: %s", sql, store_errmsg(s));
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        if (types[i] == 't') {
            const char *v = va_arg(ap, const char *);
            sqlite3_bind_text(st, i + 1, v, -1, SQLITE_TRANSIENT);
        } else {
            long long v = va_arg(ap, long long);
            ck_assert_msg(types[i] == 'i' || types[i] == 'n', "fx_exec: type '%c'", types[i]);
            if (types[i] == 'n' && !v)
                sqlite3_bind_null(st, i + 1);
            else
                sqlite3_bind_int64(st, i + 1, v);
        }
    }
    va_end(ap);
    ck_assert_msg(sqlite3_step(st) == SQLITE_DONE, "%s: %s", sql, store_errmsg(s));
    sqlite3_finalize(st);
}

static inline void fx_site_row(struct store *s, const char *code, const char *phase,
                               long long entered_at, const char *entered_by)
{
    fx_exec(s, "INSERT INTO site (code, phase, entered_at, entered_by) VALUES (?1, ?2, ?3, ?4)",
            "ttit", code, phase, entered_at, entered_by);
}

/* A host row; id 0 takes the next free id. */
struct fx_host_spec {
    long long id;
    const char *name, *site;
    unsigned roles;
    const char *collector, *os;
};

/* Inserts the host (added and updated at 1); returns its id. */
static inline long long fx_host_row(struct store *s, const struct fx_host_spec *h)
{
    fx_exec(s,
            "INSERT INTO host (id, name, site, roles, collector, os, added_at, updated_at) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, 1)",
            "nttitt", h->id, h->name, h->site, (long long)h->roles, h->collector,
            h->os ? h->os : "");
    return sqlite3_last_insert_rowid(store_db(s));
}

/* A stored report without body ('{}', catalog 't'): its times and counts. */
struct fx_report_spec {
    long long collected_at, received_at;
    int blockers, warnings;
    bool legacy_disabled;
};

static inline void fx_report_row(struct store *s, long long host_id, const struct fx_report_spec *r)
{
    fx_exec(s,
            "INSERT INTO report (host_id, collected_at, received_at, body, catalog_version, "
            "blockers, warnings, legacy_disabled) VALUES (?1, ?2, ?3, '{}', 't', ?4, ?5, ?6)",
            "iiiiii", host_id, r->collected_at, r->received_at, (long long)r->blockers,
            (long long)r->warnings, (long long)r->legacy_disabled);
}

/* One verdict; the report's blocker and warning counts are the caller's (fx_report_row). */
static inline void fx_verdict_row(struct store *s, long long host_id, const char *rule, bool pass,
                                  const char *severity, const char *reason)
{
    fx_exec(s,
            "INSERT INTO verdict (host_id, rule, pass, severity, reason) "
            "VALUES (?1, ?2, ?3, ?4, ?5)",
            "ititt", host_id, rule, (long long)pass, severity, reason);
}

/* until_at 0: until unwaived. */
static inline void fx_waiver_row(struct store *s, long long host_id, const char *reason,
                                 long long until_at, long long created_at, const char *created_by)
{
    fx_exec(s,
            "INSERT INTO waiver (host_id, reason, until_at, created_at, created_by) "
            "VALUES (?1, ?2, ?3, ?4, ?5)",
            "itnit", host_id, reason, until_at, created_at, created_by);
}

/* The daemon's view of `name` after `failures` failed pulls in a row, the last at `at` with
 * `error` (poll.last_error, any text: bound, not quoted). */
static inline void fx_poll_failed(struct store *s, const char *name, const char *error,
                                  int failures, long long at)
{
    sqlite3_stmt *st;
    ck_assert_msg(store_prepare(s,
                                "INSERT INTO poll (host_id, last_attempt_at, last_error, failures, "
                                "next_at) VALUES ((SELECT id FROM host WHERE name = ?1), ?2, ?3, "
                                "?4, ?2 + 60)",
                                &st) == 0,
                  "%s", store_errmsg(s));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, at);
    sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, failures);
    ck_assert_msg(sqlite3_step(st) == SQLITE_DONE, "%s: %s", name, store_errmsg(s));
    sqlite3_finalize(st);
}

/* Runs `tlsgate --db DB ARGS...` (NULL-ended) at clock `now`; out/err may be NULL. */
static inline int fx_run_at(const char *db, long long now, char **out, char **err, ...)
{
    char clock[64];
    snprintf(clock, sizeof(clock), "TLSGATE_NOW=%lld", now);
    char *env[] = {clock, "TLSGATE_USER=tester", NULL};
    va_list ap;
    va_start(ap, err);
    int rc = tu_tlsgatev(db, env, out, err, ap);
    va_end(ap);
    return rc;
}

#define fx_run(db, out, err, ...) fx_run_at(db, FX_NOW, out, err, __VA_ARGS__)

/* `tlsgate --json COMMAND SUB --site SITE` for a site that does not exist: exit 3, "no such site"
 * on stderr, and not half a document on stdout. */
static inline void fx_json_unknown_site_prints_nothing(const char *db, const char *command,
                                                       const char *sub, const char *site)
{
    char *out, *err, want[128];
    ck_assert_int_eq(fx_run(db, &out, &err, "--json", command, sub, "--site", site, NULL), 3);
    ck_assert_str_eq(out, "");
    snprintf(want, sizeof(want), "no such site: %s", site);
    ck_assert_msg(strstr(err, want) != NULL, "%s", err);
    free(out);
    free(err);
}

#endif

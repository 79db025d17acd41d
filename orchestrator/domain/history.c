/*
 * history.c — the `history` and `history_rule` tables (history.h): a point per site from the
 * gate's own counts, compaction of points older than a week, and the readers of the CSV views
 * and the status page.
 */
#include "history.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gate.h"
#include "grow.h"
#include "phase.h"
#include "pollstatus.h"
#include "store.h"

/* ---- recording -------------------------------------------------------------------------- */

struct site_point {
    char *code;
    enum phase_id phase;
    long hosts, ready, not_ready, unknown, waived;
    long servers, gate_open, orphan_risk;
};

struct point_set {
    struct site_point *v;
    size_t n, cap;
};

static int take_site(const struct gate_site *g, void *arg)
{
    struct point_set *ps = arg;
    assert(ps->n <= ps->cap);
    if (grow_room(&ps->v, ps->n, &ps->cap, sizeof(*ps->v), 16))
        return -ENOMEM;
    struct site_point *p = &ps->v[ps->n];
    if (!(p->code = strdup(g->code)))
        return -ENOMEM;
    p->phase = g->phase;
    p->hosts = g->hosts;
    p->ready = g->ready;
    p->not_ready = g->not_ready;
    p->unknown = g->unknown;
    p->waived = g->waived;
    p->servers = g->servers;
    p->gate_open = g->servers_gate_open;
    p->orphan_risk = g->orphan_risk;
    ps->n++;
    return 0;
}

static void point_set_free(struct point_set *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->v[i].code);
    free(ps->v);
}

static int insert_points(struct store *s, const struct point_set *ps, long long at)
{
    sqlite3_stmt *ins;
    int rc = store_prepare(s,
                           "INSERT OR REPLACE INTO history (site, at, phase, hosts, ready, "
                           "not_ready, unknown, waived, servers, gate_open, gate_blocked, "
                           "orphan_risk, pull_failing) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                           "?9, ?10, ?11, ?12, 0)",
                           &ins);
    if (rc)
        return rc;
    for (size_t i = 0; i < ps->n && !rc; i++) {
        const struct site_point *p = &ps->v[i];
        sqlite3_bind_text(ins, 1, p->code, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, at);
        sqlite3_bind_text(ins, 3, phase_name(p->phase), -1, SQLITE_STATIC);
        long v[] = {p->hosts,      p->ready,   p->not_ready, p->unknown,
                    p->waived,     p->servers, p->gate_open, p->servers - p->gate_open,
                    p->orphan_risk};
        for (int k = 0; k < (int)(sizeof(v) / sizeof(v[0])); k++)
            sqlite3_bind_int64(ins, 4 + k, v[k]);
        if (sqlite3_step(ins) != SQLITE_DONE)
            rc = store_sqlite_fail(s, "record history");
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    return rc;
}

/* The counts that are not the gate's: failing pulls and the hosts per failing blocker rule,
 * both per site, written into the rows just inserted at `at`. */
static int add_pull_and_rules(struct store *s, long long at)
{
    sqlite3_stmt *st;
    int rc = store_prepare(
        s,
        "UPDATE history SET pull_failing = (SELECT count(*) FROM poll p "
        "JOIN host h ON h.id = p.host_id WHERE h.site = history.site AND " HISTORY_PULL_FAILING_SQL(
            "p") ") WHERE at = ?1",
        &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, at);
    if ((rc = store_run(s, st, "record history: failing pulls")))
        return rc;
    rc = store_prepare(s,
                       "INSERT OR REPLACE INTO history_rule (site, at, rule, hosts) "
                       "SELECT h.site, ?1, v.rule, count(*) FROM verdict v "
                       "JOIN host h ON h.id = v.host_id "
                       "WHERE v.pass = 0 AND v.severity = 'blocker' "
                       "AND EXISTS (SELECT 1 FROM history x WHERE x.site = h.site AND x.at = ?1) "
                       "GROUP BY h.site, v.rule",
                       &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, at);
    return store_run(s, st, "record history: rule counts");
}

/* Points older than `before`: only the last of each (site, UTC day) stays. */
static int compact(struct store *s, long long before)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "DELETE FROM history WHERE at < ?1 AND at < (SELECT max(x.at) FROM "
                           "history x WHERE x.site = history.site AND x.at / 86400 = "
                           "history.at / 86400)",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, before);
    if ((rc = store_run(s, st, "compact history")))
        return rc;
    rc = store_prepare(s,
                       "DELETE FROM history_rule WHERE at < ?1 AND NOT EXISTS (SELECT 1 FROM "
                       "history x WHERE x.site = history_rule.site AND x.at = history_rule.at)",
                       &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, before);
    return store_run(s, st, "compact history rules");
}

int history_record(struct store *s, const struct gate_time *t)
{
    assert(s && t);
    struct point_set ps = {0};
    int rc = store_begin(s, true);
    if (rc)
        return rc;
    rc = gate_sites(s, NULL, t, take_site, &ps);
    if (rc == -ENOMEM)
        store_fail(s, rc, "record history: out of memory");
    /* A rule row of an earlier record in this same second is replaced, not summed. */
    if (!rc) {
        sqlite3_stmt *st;
        rc = store_prepare(s, "DELETE FROM history_rule WHERE at = ?1", &st);
        if (!rc) {
            sqlite3_bind_int64(st, 1, t->now);
            rc = store_run(s, st, "record history");
        }
    }
    if (!rc)
        rc = insert_points(s, &ps, t->now);
    if (!rc)
        rc = add_pull_and_rules(s, t->now);
    if (!rc)
        rc = compact(s, t->now - HISTORY_KEEP_ALL_S);
    if (!rc)
        rc = store_commit(s);
    if (rc)
        store_rollback(s);
    point_set_free(&ps);
    return rc;
}

int history_last_at(struct store *s, long long *at)
{
    sqlite3_stmt *st;
    *at = 0;
    int rc = store_prepare(s, "SELECT max(at) FROM history", &st);
    return rc ? rc : store_one_int(s, st, "read history", at);
}

int history_due(struct store *s, long long now, long interval, bool *due)
{
    long long last;
    int rc = history_last_at(s, &last);
    *due = !rc && (last == 0 || now - last >= interval);
    return rc;
}

/* ---- reading ---------------------------------------------------------------------------- */

struct point_walk {
    history_point_fn fn;
    void *arg;
};

static int point_row(sqlite3_stmt *st, void *arg)
{
    struct point_walk *w = arg;
    struct history_point pt = {
        .site = (const char *)sqlite3_column_text(st, 0),
        .at = sqlite3_column_int64(st, 1),
        .phase = (const char *)sqlite3_column_text(st, 2),
        .hosts = (long)sqlite3_column_int64(st, 3),
        .ready = (long)sqlite3_column_int64(st, 4),
        .not_ready = (long)sqlite3_column_int64(st, 5),
        .unknown = (long)sqlite3_column_int64(st, 6),
        .waived = (long)sqlite3_column_int64(st, 7),
        .servers = (long)sqlite3_column_int64(st, 8),
        .gate_open = (long)sqlite3_column_int64(st, 9),
        .gate_blocked = (long)sqlite3_column_int64(st, 10),
        .orphan_risk = (long)sqlite3_column_int64(st, 11),
        .pull_failing = (long)sqlite3_column_int64(st, 12),
    };
    return w->fn(&pt, w->arg);
}

int history_points(struct store *s, const char *site, history_point_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT site, at, phase, hosts, ready, not_ready, unknown, waived, "
                           "servers, gate_open, gate_blocked, orphan_risk, pull_failing "
                           "FROM history WHERE ?1 IS NULL OR site = ?1 ORDER BY site, at",
                           &st);
    if (rc)
        return rc;
    if (site)
        sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    struct point_walk w = {fn, arg};
    return store_each(s, st, "read history", point_row, &w);
}

struct rule_walk {
    history_rule_fn fn;
    void *arg;
};

static int rule_row(sqlite3_stmt *st, void *arg)
{
    struct rule_walk *w = arg;
    struct history_rule_count rc = {
        .site = (const char *)sqlite3_column_text(st, 0),
        .at = sqlite3_column_int64(st, 1),
        .rule = (const char *)sqlite3_column_text(st, 2),
        .hosts = (long)sqlite3_column_int64(st, 3),
    };
    return w->fn(&rc, w->arg);
}

int history_rules(struct store *s, const char *site, history_rule_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT site, at, rule, hosts FROM history_rule "
                           "WHERE ?1 IS NULL OR site = ?1 ORDER BY site, at, rule",
                           &st);
    if (rc)
        return rc;
    if (site)
        sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    struct rule_walk w = {fn, arg};
    return store_each(s, st, "read history rules", rule_row, &w);
}

/* ---- failing pulls ---------------------------------------------------------------------- */

struct pull_walk {
    history_pull_fn fn;
    void *arg;
};

static int pull_row(sqlite3_stmt *st, void *arg)
{
    struct pull_walk *w = arg;
    const char *error = (const char *)sqlite3_column_text(st, 5);
    struct history_pull_failure f = {
        .site = (const char *)sqlite3_column_text(st, 0),
        .host = (const char *)sqlite3_column_text(st, 1),
        .failures = (long)sqlite3_column_int64(st, 2),
        .last_attempt = sqlite3_column_int64(st, 3),
        .last_success = sqlite3_column_int64(st, 4),
        .kind = pollstatus_kind_group(pollstatus_classify(error)),
        .error = error ? error : "",
    };
    return w->fn(&f, w->arg);
}

#define PULL_SQL(order)                                                                            \
    "SELECT h.site, h.name, p.failures, p.last_attempt_at, p.last_success_at, p.last_error "       \
    "FROM poll p JOIN host h ON h.id = p.host_id WHERE " HISTORY_PULL_FAILING_SQL(                 \
        "p") " AND (?1 IS NULL OR h.site = ?1) ORDER BY " order

int history_pull_failures(struct store *s, const char *site, long limit, history_pull_fn fn,
                          void *arg)
{
    sqlite3_stmt *st;
    int rc = store_prepare(
        s, limit > 0 ? PULL_SQL("p.failures DESC, h.name LIMIT ?2") : PULL_SQL("h.site, h.name"),
        &st);
    if (rc)
        return rc;
    if (site)
        sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    if (limit > 0)
        sqlite3_bind_int64(st, 2, limit);
    struct pull_walk w = {fn, arg};
    return store_each(s, st, "read failing pulls", pull_row, &w);
}

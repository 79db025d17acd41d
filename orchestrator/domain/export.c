/*
 * export.c — the dashboard views as CSV rows and the hosts listing (export.h). The command, its
 * options and the --out file that appears whole or not at all are cli/export.c's.
 */
#include "export.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>

#include "csv.h"
#include "history.h"
#include "hoststate.h"
#include "inventory.h"
#include "phase.h"
#include "pollstatus.h"
#include "store.h"
#include "utc.h"
#include "wire.h"

const char *const export_view_names[EXPORT_VIEW_COUNT] = {
    "hosts",   "servers",       "blockers",      "phases", "summary",
    "history", "history-rules", "pull-failures", "poll",
};

/* reachable, last_error and the cert_ columns came later: appended, never inserted (dashboards
 * index columns) */
/* clang-format off */
static const char *const hosts_columns[] = {
    "name", "site", "roles", "os", "state", "blockers", "warnings", "last_report", "waived",
    "reachable", "last_error", "cert_not_after", "cert_fingerprint", "cert_issuer",
    "cert_changed_at", NULL,
};
/* clang-format on */
static const char *const poll_columns[] = {
    "name",     "site",         "state",      "reachable",  "last_attempt",   "last_success",
    "failures", "next_attempt", "error_kind", "last_error", "cert_not_after", NULL,
};
static const char *const servers_columns[] = {
    "name",
    "site",
    "roles",
    "phase",
    "gate",
    "dependents",
    "blocking",
    "legacy_disabled",
    "orphan_risk",
    /* the wire probe's (domain/wire.h), appended: the legacy protocols it found accepted
     * ("tls1.0;tls1.1"), its time (empty: never probed), registry off but wire on */
    "wire_legacy_accepted",
    "last_probe",
    "restart_pending",
    NULL,
};
static const char *const blockers_columns[] = {"server", "dependent", "rule", "reason", NULL};
static const char *const phases_columns[] = {"site", "phase", "entered_at", "entered_by", NULL};
static const char *const summary_columns[] = {
    "site", "phase", "hosts", "ready", "not_ready", "unknown", "waived", "servers_gate_open", NULL,
};

/* What every view needs: the writer and the role set last formatted (runs of rows share one,
 * clients above all: each set is formatted once per run). */
struct export_ctx {
    struct csv_writer *w;
    struct wire_summaries *wire; /* the servers view's probe summaries */
    unsigned roles_mask;         /* 0: none formatted yet */
    char roles[512];
};

static int roles_cell(struct export_ctx *x, unsigned mask)
{
    if (mask != x->roles_mask || !x->roles[0]) {
        inv_roles_format(mask, x->roles, sizeof(x->roles));
        x->roles_mask = mask;
    }
    return csv_cell_str(x->w, x->roles);
}

static int time_cell(struct csv_writer *w, bool set, long long at)
{
    if (!set)
        return csv_cell(w, NULL, 0);
    char iso[32];
    return csv_cell_str(w, utc_iso8601(at, iso, sizeof(iso)));
}

/* ---- hosts ---- */

/* clang-format off */
#define HOSTS_SQL(where)                                                                           \
    "SELECT h.name, h.site, h.roles, h.collector, h.os, " HOSTSTATE_SQL("r", "?1") ","             \
    " r.host_id IS NOT NULL, r.collected_at, r.blockers, r.warnings, "                             \
    GATE_WAIVER_ACTIVE_SQL("w", "?2") ","                                                          \
    " p.last_attempt_at IS NOT NULL, coalesce(p.failures, 0), p.last_error,"                       \
    " p.cert_not_after, p.cert_fingerprint, p.cert_issuer, p.cert_changed_at FROM host h"          \
    " LEFT JOIN report r INDEXED BY report_state ON r.host_id = h.id"                              \
    " LEFT JOIN waiver w ON w.host_id = h.id"                                                      \
    " LEFT JOIN poll p ON p.host_id = h.id " where " ORDER BY h.site, h.name"
/* clang-format on */

struct host_walk {
    export_host_fn fn;
    void *arg;
};

static int host_row(sqlite3_stmt *st, void *arg)
{
    struct host_walk *hw = arg;
    struct export_host h = {
        .name = (const char *)sqlite3_column_text(st, 0),
        .site = (const char *)sqlite3_column_text(st, 1),
        .roles = (unsigned)sqlite3_column_int64(st, 2),
        .collector = (const char *)sqlite3_column_text(st, 3),
        .os = (const char *)sqlite3_column_text(st, 4),
        .state = (const char *)sqlite3_column_text(st, 5),
        .reported = sqlite3_column_int(st, 6) != 0,
        .collected_at = sqlite3_column_int64(st, 7),
        .blockers = sqlite3_column_int64(st, 8),
        .warnings = sqlite3_column_int64(st, 9),
        .waived = sqlite3_column_int(st, 10) != 0,
        .pulled = sqlite3_column_int(st, 11) != 0,
        .failures = sqlite3_column_int64(st, 12),
        .last_error = (const char *)sqlite3_column_text(st, 13),
        .cert_not_after = sqlite3_column_int64(st, 14),
        .cert_fingerprint = (const char *)sqlite3_column_text(st, 15),
        .cert_issuer = (const char *)sqlite3_column_text(st, 16),
        .cert_changed_at = sqlite3_column_int64(st, 17),
    };
    return hw->fn(&h, hw->arg);
}

int export_hosts_each(struct store *s, const char *site, const struct gate_time *t,
                      export_host_fn fn, void *arg)
{
    /* Both forms of the SQL, so the planner walks the (site, name) index either way. */
    sqlite3_stmt *st;
    int rc = store_prepare(s, site ? HOSTS_SQL("WHERE h.site = ?3") : HOSTS_SQL(""), &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, t->cutoff);
    sqlite3_bind_int64(st, 2, t->now);
    if (site)
        sqlite3_bind_text(st, 3, site, -1, SQLITE_TRANSIENT);
    struct host_walk hw = {fn, arg};
    return store_each(s, st, "read hosts", host_row, &hw);
}

static int hosts_csv_row(const struct export_host *h, void *arg)
{
    struct export_ctx *x = arg;
    struct csv_writer *w = x->w;
    csv_cell_str(w, h->name);
    csv_cell_str(w, h->site);
    roles_cell(x, h->roles);
    csv_cell_str(w, h->os);
    csv_cell_str(w, h->state);
    if (h->reported) {
        csv_cell_int(w, h->blockers);
        csv_cell_int(w, h->warnings);
    } else {
        csv_cell(w, NULL, 0);
        csv_cell(w, NULL, 0);
    }
    time_cell(w, h->reported, h->collected_at);
    csv_cell_bool(w, h->waived);
    /* reachable: the last pull stored a report (empty: never pulled); pollstatus.h */
    if (h->pulled)
        csv_cell_bool(w, h->failures == 0);
    else
        csv_cell(w, NULL, 0);
    csv_cell_str(w, h->last_error);
    time_cell(w, h->cert_not_after != 0, h->cert_not_after);
    csv_cell_str(w, h->cert_fingerprint);
    csv_cell_str(w, h->cert_issuer);
    time_cell(w, h->cert_changed_at != 0, h->cert_changed_at);
    return csv_end_row(w);
}

/* ---- phases ---- */

static int phases_csv_row(sqlite3_stmt *st, void *arg)
{
    struct export_ctx *x = arg;
    struct csv_writer *w = x->w;
    csv_cell_str(w, (const char *)sqlite3_column_text(st, 0));
    csv_cell_str(w, (const char *)sqlite3_column_text(st, 1));
    time_cell(w, sqlite3_column_type(st, 2) != SQLITE_NULL, sqlite3_column_int64(st, 2));
    csv_cell_str(w, (const char *)sqlite3_column_text(st, 3));
    return csv_end_row(w);
}

static int phases_each(struct store *s, const char *site, struct export_ctx *x)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           site ? "SELECT code, phase, entered_at, entered_by FROM site "
                                  "WHERE code = ?1 ORDER BY code"
                                : "SELECT code, phase, entered_at, entered_by FROM site "
                                  "ORDER BY code",
                           &st);
    if (rc)
        return rc;
    if (site)
        sqlite3_bind_text(st, 1, site, -1, SQLITE_TRANSIENT);
    return store_each(s, st, "read phases", phases_csv_row, x);
}

/* ---- the gate's views ---- */

static int servers_csv_row(const struct gate_server *g, void *arg)
{
    struct export_ctx *x = arg;
    struct csv_writer *w = x->w;
    csv_cell_str(w, g->name);
    csv_cell_str(w, g->site);
    roles_cell(x, g->roles);
    csv_cell_str(w, phase_name(g->phase));
    csv_cell_str(w, g->open ? "open" : "blocked");
    csv_cell_int(w, g->dependents);
    csv_cell_int(w, g->blocking);
    csv_cell_bool(w, g->legacy_disabled);
    csv_cell_bool(w, g->orphan_risk);
    long k = wire_summaries_find(x->wire, g->id);
    csv_cell_str(w, k >= 0 ? x->wire->accepted[k] : "");
    time_cell(w, k >= 0, k >= 0 ? x->wire->at[k] : 0);
    csv_cell_bool(w, k >= 0 && x->wire->accepted[k][0] && g->legacy_disabled);
    return csv_end_row(w);
}

static int servers_csv(struct store *s, const char *site, const struct gate_time *t,
                       struct export_ctx *x)
{
    struct wire_summaries ws;
    int rc = wire_summaries_load(s, &ws);
    if (rc == -ENOMEM)
        rc = store_fail(s, rc, "export: out of memory");
    x->wire = &ws;
    if (!rc)
        rc = gate_servers(s, site, t, servers_csv_row, x);
    wire_summaries_release(&ws);
    return rc;
}

static int blockers_csv_row(const struct gate_blocker *b, void *arg)
{
    struct export_ctx *x = arg;
    struct csv_writer *w = x->w;
    csv_cell_str(w, b->server);
    csv_cell_str(w, b->dependent);
    csv_cell_str(w, b->rule);
    csv_cell_str(w, b->reason);
    return csv_end_row(w);
}

static int summary_csv_row(const struct gate_site *g, void *arg)
{
    struct export_ctx *x = arg;
    struct csv_writer *w = x->w;
    csv_cell_str(w, g->code);
    csv_cell_str(w, phase_name(g->phase));
    csv_cell_int(w, g->hosts);
    csv_cell_int(w, g->ready);
    csv_cell_int(w, g->not_ready);
    csv_cell_int(w, g->unknown);
    csv_cell_int(w, g->waived);
    csv_cell_int(w, g->servers_gate_open);
    return csv_end_row(w);
}

/* ---- the history views: history.h's rows, written out ---- */

static const char *const history_columns[] = {
    "site",   "at",      "phase",     "hosts",        "ready",       "not_ready",    "unknown",
    "waived", "servers", "gate_open", "gate_blocked", "orphan_risk", "pull_failing", NULL,
};
static const char *const history_rules_columns[] = {"site", "at", "rule", "hosts", NULL};
static const char *const pull_failures_columns[] = {
    "host", "site", "failures", "last_attempt", "last_success", "kind", "error", NULL,
};

static int history_csv_row(const struct history_point *p, void *arg)
{
    struct csv_writer *w = ((struct export_ctx *)arg)->w;
    csv_cell_str(w, p->site);
    time_cell(w, p->at != 0, p->at);
    csv_cell_str(w, p->phase);
    long v[] = {p->hosts,   p->ready,     p->not_ready,    p->unknown,     p->waived,
                p->servers, p->gate_open, p->gate_blocked, p->orphan_risk, p->pull_failing};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        csv_cell_int(w, v[i]);
    return csv_end_row(w);
}

static int history_rules_csv_row(const struct history_rule_count *r, void *arg)
{
    struct csv_writer *w = ((struct export_ctx *)arg)->w;
    csv_cell_str(w, r->site);
    time_cell(w, r->at != 0, r->at);
    csv_cell_str(w, r->rule);
    csv_cell_int(w, r->hosts);
    return csv_end_row(w);
}

static int pull_failures_csv_row(const struct history_pull_failure *f, void *arg)
{
    struct csv_writer *w = ((struct export_ctx *)arg)->w;
    csv_cell_str(w, f->host);
    csv_cell_str(w, f->site);
    csv_cell_int(w, f->failures);
    time_cell(w, f->last_attempt != 0, f->last_attempt);
    time_cell(w, f->last_success != 0, f->last_success);
    csv_cell_str(w, f->kind);
    csv_cell_str(w, f->error);
    return csv_end_row(w);
}

/* ---- poll: the daemon's side of every host (pollstatus.h) ---- */

static int poll_csv_row(const struct pollstatus_host *h, void *arg)
{
    struct csv_writer *w = ((struct export_ctx *)arg)->w;
    csv_cell_str(w, h->name);
    csv_cell_str(w, h->site);
    csv_cell_str(w, h->state);
    csv_cell_str(w, pollstatus_reachable(h));
    time_cell(w, h->last_attempt_at != 0, h->last_attempt_at);
    time_cell(w, h->last_success_at != 0, h->last_success_at);
    csv_cell_int(w, h->failures);
    time_cell(w, h->next_at != 0, h->next_at);
    csv_cell_str(w, h->last_error ? pollstatus_kind_id(h->kind) : NULL);
    csv_cell_str(w, h->last_error);
    time_cell(w, h->cert_not_after != 0, h->cert_not_after);
    return csv_end_row(w);
}

int export_csv(struct store *s, enum export_view v, const char *site, const struct gate_time *t,
               struct csv_writer *w)
{
    static const char *const *const columns[EXPORT_VIEW_COUNT] = {
        [EXPORT_HOSTS] = hosts_columns,
        [EXPORT_SERVERS] = servers_columns,
        [EXPORT_BLOCKERS] = blockers_columns,
        [EXPORT_PHASES] = phases_columns,
        [EXPORT_SUMMARY] = summary_columns,
        [EXPORT_HISTORY] = history_columns,
        [EXPORT_HISTORY_RULES] = history_rules_columns,
        [EXPORT_PULL_FAILURES] = pull_failures_columns,
        [EXPORT_POLL] = poll_columns,
    };
    struct export_ctx x = {.w = w};
    int rc = csv_header(w, columns[v]);
    if (rc)
        return rc;
    switch (v) {
    case EXPORT_HOSTS: return export_hosts_each(s, site, t, hosts_csv_row, &x);
    case EXPORT_SERVERS: return servers_csv(s, site, t, &x);
    case EXPORT_BLOCKERS: return gate_blockers(s, site, NULL, t, blockers_csv_row, &x);
    case EXPORT_PHASES: return phases_each(s, site, &x);
    case EXPORT_SUMMARY: return gate_sites(s, site, t, summary_csv_row, &x);
    case EXPORT_HISTORY: return history_points(s, site, history_csv_row, &x);
    case EXPORT_HISTORY_RULES: return history_rules(s, site, history_rules_csv_row, &x);
    case EXPORT_PULL_FAILURES: return history_pull_failures(s, site, 0, pull_failures_csv_row, &x);
    case EXPORT_POLL: return pollstatus_each(s, site, false, t->cutoff, poll_csv_row, &x);
    }
    return store_fail(s, -EINVAL, "export: no such view (%d)", (int)v);
}

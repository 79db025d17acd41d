/*
 * gate.c — the per-server gate, orphan risk and the per-site counts, computed from aggregates
 * (see gate.h for the semantics).
 *
 * How it stays fast on 1,000,000 hosts: per site, one grouped query counts the hosts per
 * distinct role mask (a handful of rows: client, MP, DP, ...) by state and waiver. A server's
 * derived dependents are exactly the hosts whose mask meets its dependent roles, so its counts
 * are a sum over those rows, minus itself when its own roles are among them, plus the few
 * explicit edges that the derived rules do not already cover. Nothing is enumerated per
 * (server, dependent) pair.
 *
 * Listing what blocks (gate_blockers, gate_failing_*) needs hosts, not counts: the non-ready,
 * non-waived hosts of one site (and the explicit dependents of its servers in other sites) go
 * once into a TEMP table, one row per failed blocker verdict, and every server's listing is a
 * filtered, ordered scan of that table. Temp tables live in the connection's temp store, so
 * this works inside the read transaction of a command and inside phase advance's IMMEDIATE one.
 */
#include "gate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "grow.h"
#include "hoststate.h"
#include "inventory.h"
#include "store.h"
#include "wire.h"

/* ROLE_SERVER_MASK as SQL text (the enum names mean nothing to SQLite). */
#define SERVER_MASK_SQL "523262"
_Static_assert(ROLE_SERVER_MASK == 523262, "SERVER_MASK_SQL must equal ROLE_SERVER_MASK");
/* Site systems: every server role, plus consoles (the `servers` phase covers both). */
#define GATE_SYSTEM_MASK (ROLE_SERVER_MASK | ROLE_CONSOLE)

struct gate_time gate_time_make(long long now, long stale_after)
{
    struct gate_time t = {now, now - stale_after, now - WIRE_WINDOW_DEFAULT,
                          now - WIRE_PROBE_MAX_AGE_DEFAULT};
    return t;
}

struct gate_time gate_time_config(long long now, const struct config *c)
{
    struct gate_time t = gate_time_make(now, c->stale_after);
    t.evidence_since = now - c->evidence_window;
    t.probe_since = now - c->probe_max_age;
    return t;
}

const char *gate_state_name(enum gate_host_state st)
{
    switch (st) {
    case GATE_READY: return "ready";
    case GATE_NOT_READY: return "not_ready";
    case GATE_UNKNOWN: break;
    }
    return "unknown";
}

enum gate_host_state gate_state_parse(const char *word)
{
    if (word && !strcmp(word, "ready"))
        return GATE_READY;
    if (word && !strcmp(word, "not_ready"))
        return GATE_NOT_READY;
    return GATE_UNKNOWN;
}

unsigned gate_dependent_roles(unsigned roles)
{
    unsigned deps = 0;
    for (size_t i = 0; i < inv_derived_count; i++)
        if (roles & inv_derived[i].server_role)
            deps |= inv_derived[i].dependent_roles;
    return deps;
}

/* ---- per-site aggregates ---------------------------------------------------------------- */

/* Hosts of one site with one exact role mask, counted. */
struct mask_count {
    unsigned roles;
    long n, ready, not_ready, unknown, waived;
    long blocking;         /* not ready and not waived */
    long unknown_blocking; /* unknown and not waived */
    long legacy_blocking;  /* not waived and no fresh report of legacy protocols disabled */
};

/* One explicit edge of a server of the site, with what its dependent contributes. */
struct explicit_dep {
    long long server;
    long long dependent;
    unsigned roles;
    bool same_site;
    bool blocks;
    bool waived;
};

struct site_ctx {
    char code[INV_SITE_BUFSIZE];
    enum phase_id phase;
    long long entered_at;
    char entered_by[128];
    struct mask_count *masks;
    size_t nmasks;
    struct explicit_dep *deps; /* ordered by server */
    size_t ndeps;
};

static void site_ctx_release(struct site_ctx *c)
{
    free(c->masks);
    free(c->deps);
    c->masks = NULL;
    c->deps = NULL;
    c->nmasks = c->ndeps = 0;
}

/* The joins every per-host query here shares: state and active waiver of host h. */
#define HOST_JOINS                                                                                 \
    " FROM host h LEFT JOIN report r INDEXED BY report_state ON r.host_id = h.id"                  \
    " LEFT JOIN waiver w ON w.host_id = h.id "
#define STATE_SQL HOSTSTATE_SQL("r", ":cutoff")
#define WAIVED_SQL GATE_WAIVER_ACTIVE_SQL("w", ":now")

static void bind_time(sqlite3_stmt *st, const struct gate_time *t)
{
    int i;
    if ((i = sqlite3_bind_parameter_index(st, ":cutoff")))
        sqlite3_bind_int64(st, i, t->cutoff);
    if ((i = sqlite3_bind_parameter_index(st, ":now")))
        sqlite3_bind_int64(st, i, t->now);
}

static void bind_site(sqlite3_stmt *st, const char *site)
{
    int i = sqlite3_bind_parameter_index(st, ":site");
    if (i)
        sqlite3_bind_text(st, i, site, -1, SQLITE_TRANSIENT);
}

/* Prepares `sql` with the parameters of the moment and the site bound (:cutoff, :now, :site,
 * those it names). */
static int prepare_at(struct store *s, const char *sql, const struct gate_time *t, const char *site,
                      sqlite3_stmt **st)
{
    int rc = store_prepare(s, sql, st);
    if (!rc) {
        bind_time(*st, t);
        bind_site(*st, site);
    }
    return rc;
}

static struct mask_count *mask_slot(struct site_ctx *c, unsigned roles, size_t *cap)
{
    for (size_t i = 0; i < c->nmasks; i++)
        if (c->masks[i].roles == roles)
            return &c->masks[i];
    if (grow_room(&c->masks, c->nmasks, cap, sizeof(*c->masks), 16))
        return NULL;
    struct mask_count *m = &c->masks[c->nmasks++];
    memset(m, 0, sizeof(*m));
    m->roles = roles;
    return m;
}

/*
 * Two queries: the hosts of the site by role mask (the one pass over every host, joined only
 * to the narrow report_state index, with the state expression evaluated as few times as
 * possible), then the waived hosts, driven by the small waiver table. The waiver-dependent
 * counts follow by subtraction.
 */
struct mask_load {
    struct store *s;
    struct site_ctx *c;
    size_t cap;
    bool waived_pass; /* the second query: waived hosts stop blocking */
};

static int mask_row(sqlite3_stmt *st, void *arg)
{
    struct mask_load *l = arg;
    struct mask_count *m = mask_slot(l->c, (unsigned)sqlite3_column_int64(st, 0), &l->cap);
    if (!m)
        return store_fail(l->s, -ENOMEM, "site %s: out of memory", l->c->code);
    long n = (long)sqlite3_column_int64(st, 1);
    if (!l->waived_pass) {
        sqlite3_int64 packed = sqlite3_column_int64(st, 2);
        long a = (long)(packed & 0xffffffff), b = (long)(packed >> 32);
        long legacy_ok = (long)sqlite3_column_int64(st, 3);
        m->n = n;
        m->ready = a;
        m->not_ready = b;
        m->unknown = n - a - b;
        m->blocking = n - a;
        m->unknown_blocking = m->unknown;
        m->legacy_blocking = (m->roles & ROLE_SERVER_MASK) ? n - legacy_ok : 0;
    } else {
        long a = (long)sqlite3_column_int64(st, 2), b = (long)sqlite3_column_int64(st, 3);
        long legacy_ok = (long)sqlite3_column_int64(st, 4);
        m->waived = n;
        m->blocking -= n - a;
        m->unknown_blocking -= b;
        if (m->roles & ROLE_SERVER_MASK)
            m->legacy_blocking -= n - legacy_ok;
    }
    return 0;
}

static int load_masks(struct store *s, struct site_ctx *c, const struct gate_time *t)
{
    /* The state is evaluated once per host: ready and not_ready are summed in one CASE, packed
     * as ready + not_ready * 2^32 (a site has far fewer than 2^32 hosts). The legacy CASE
     * skips plain clients before looking at the state. Together this halves the CPU time of
     * the pass, which is otherwise the join itself. */
    static const char hosts_sql[] =
        "SELECT h.roles, count(*),"
        " sum(CASE " STATE_SQL " WHEN 'ready' THEN 1 WHEN 'not_ready' THEN 4294967296 ELSE 0 END),"
        " sum(CASE WHEN h.roles = 1 THEN 0"
        "          WHEN " STATE_SQL " <> 'unknown' AND r.legacy_disabled = 1 THEN 1 ELSE 0 END)"
        " FROM host h LEFT JOIN report r INDEXED BY report_state ON r.host_id = h.id"
        " WHERE h.site = :site GROUP BY h.roles";
    static const char waived_sql[] =
        "SELECT h.roles, count(*), sum(" STATE_SQL " = 'ready'), sum(" STATE_SQL " = 'unknown'),"
        " sum(" STATE_SQL " <> 'unknown' AND r.legacy_disabled = 1)"
        " FROM waiver w CROSS JOIN host h ON h.id = w.host_id"
        " LEFT JOIN report r INDEXED BY report_state ON r.host_id = h.id"
        " WHERE h.site = :site AND " WAIVED_SQL " GROUP BY h.roles";
    struct mask_load l = {s, c, 0, false};
    for (int pass = 0; pass < 2; pass++) {
        sqlite3_stmt *st;
        int rc = prepare_at(s, pass ? waived_sql : hosts_sql, t, c->code, &st);
        if (rc)
            return rc;
        l.waived_pass = pass == 1;
        if ((rc = store_each(s, st, "count hosts by role", mask_row, &l)))
            return rc;
    }
    return 0;
}

struct explicit_load {
    struct store *s;
    struct site_ctx *c;
    size_t cap;
};

static int explicit_row(sqlite3_stmt *st, void *arg)
{
    struct explicit_load *l = arg;
    struct site_ctx *c = l->c;
    if (grow_room(&c->deps, c->ndeps, &l->cap, sizeof(*c->deps), 64))
        return store_fail(l->s, -ENOMEM, "site %s: out of memory", c->code);
    struct explicit_dep *d = &c->deps[c->ndeps++];
    d->server = sqlite3_column_int64(st, 0);
    d->dependent = sqlite3_column_int64(st, 1);
    d->roles = (unsigned)sqlite3_column_int64(st, 2);
    d->same_site = sqlite3_column_int(st, 3) != 0;
    d->blocks = sqlite3_column_int(st, 4) != 0;
    d->waived = sqlite3_column_int(st, 5) != 0;
    return 0;
}

static int load_explicit(struct store *s, struct site_ctx *c, const struct gate_time *t)
{
    static const char sql[] =
        "SELECT DISTINCT e.server, h.id, h.roles, h.site = sv.site, " STATE_SQL
        " <> 'ready' AND NOT " WAIVED_SQL ", " WAIVED_SQL
        " FROM edge e JOIN host sv ON sv.id = e.server JOIN host h ON h.id = e.dependent"
        " LEFT JOIN report r INDEXED BY report_state ON r.host_id = h.id"
        " LEFT JOIN waiver w ON w.host_id = h.id"
        " WHERE sv.site = :site ORDER BY e.server";
    sqlite3_stmt *st;
    int rc = prepare_at(s, sql, t, c->code, &st);
    if (rc)
        return rc;
    struct explicit_load l = {s, c, 0};
    return store_each(s, st, "read explicit edges", explicit_row, &l);
}

static void load_site_row(sqlite3_stmt *st, struct site_ctx *c)
{
    snprintf(c->code, sizeof(c->code), "%s", (const char *)sqlite3_column_text(st, 0));
    if (phase_parse((const char *)sqlite3_column_text(st, 1), &c->phase))
        c->phase = PHASE_INVENTORY; /* the CHECK constraint makes this unreachable */
    c->entered_at = sqlite3_column_int64(st, 2);
    snprintf(c->entered_by, sizeof(c->entered_by), "%s", (const char *)sqlite3_column_text(st, 3));
}

typedef int (*site_each_fn)(struct store *, struct site_ctx *, const struct gate_time *, void *);

struct site_rows {
    struct store *s;
    const struct gate_time *t;
    site_each_fn each;
    void *arg;
    bool found;
    bool lazy; /* `each` loads what it needs of the context itself */
};

static int site_row(sqlite3_stmt *st, void *arg)
{
    struct site_rows *w = arg;
    struct site_ctx c = {0};
    w->found = true;
    load_site_row(st, &c);
    int rc = w->lazy ? 0 : load_masks(w->s, &c, w->t);
    if (!rc && !w->lazy)
        rc = load_explicit(w->s, &c, w->t);
    if (!rc)
        rc = w->each(w->s, &c, w->t, w->arg);
    site_ctx_release(&c);
    return rc;
}

/*
 * Calls `each` for every site (site NULL) or the one named, with its context loaded.
 * -ENOENT (message naming it) when a named site does not exist.
 */
static int for_each_site_as(struct store *s, const char *site, const struct gate_time *t,
                            site_each_fn each, void *arg, bool lazy)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           site ? "SELECT code, phase, entered_at, entered_by FROM site "
                                  "WHERE code = ?"
                                : "SELECT code, phase, entered_at, entered_by FROM site "
                                  "ORDER BY code",
                           &st);
    if (rc)
        return rc;
    if (site)
        sqlite3_bind_text(st, 1, site, -1, SQLITE_TRANSIENT);
    struct site_rows w = {s, t, each, arg, false, lazy};
    rc = store_each(s, st, "read sites", site_row, &w);
    if (!rc && site && !w.found)
        rc = store_fail(s, -ENOENT, "no such site: %s", site);
    return rc;
}

static int for_each_site(struct store *s, const char *site, const struct gate_time *t,
                         site_each_fn each, void *arg)
{
    return for_each_site_as(s, site, t, each, arg, false);
}

/* ---- servers ----------------------------------------------------------------------------- */

/* Fills the counts, gate and orphan risk of `srv` (identity, state and flags already set). */
static void decide_server(const struct site_ctx *c, struct gate_server *srv)
{
    unsigned dm = gate_dependent_roles(srv->roles);
    srv->dependents = srv->blocking = srv->waived_dependents = 0;
    for (size_t i = 0; i < c->nmasks; i++) {
        if (!(c->masks[i].roles & dm))
            continue;
        srv->dependents += c->masks[i].n;
        srv->blocking += c->masks[i].blocking;
        srv->waived_dependents += c->masks[i].waived;
    }
    if (srv->roles & dm) { /* it was counted among its own dependents */
        srv->dependents--;
        if (srv->waived)
            srv->waived_dependents--;
        else if (srv->state != GATE_READY)
            srv->blocking--;
    }
    /* Explicit edges: the slice of this server, skipping dependents already derived. */
    size_t lo = 0, hi = c->ndeps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->deps[mid].server < srv->id)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < c->ndeps && c->deps[i].server == srv->id; i++) {
        const struct explicit_dep *d = &c->deps[i];
        if (d->same_site && (d->roles & dm))
            continue;
        srv->dependents++;
        srv->blocking += d->blocks;
        srv->waived_dependents += d->waived;
    }
    bool hosts_ok = srv->state == GATE_READY && srv->blocking == 0;
    srv->open = hosts_ok && (srv->phase == PHASE_ENFORCE || srv->phase == PHASE_COMPLETE);
    srv->orphan_risk = srv->legacy_disabled && !hosts_ok;
}

#define SERVER_COLUMNS                                                                             \
    "SELECT h.id, h.name, h.site, h.roles, h.reenable_legacy, " STATE_SQL ", " WAIVED_SQL          \
    ", coalesce(r.legacy_disabled, 0)" HOST_JOINS

static void read_server(sqlite3_stmt *st, const struct site_ctx *c, struct gate_server *srv)
{
    memset(srv, 0, sizeof(*srv));
    srv->id = sqlite3_column_int64(st, 0);
    srv->name = (const char *)sqlite3_column_text(st, 1);
    srv->site = (const char *)sqlite3_column_text(st, 2);
    srv->roles = (unsigned)sqlite3_column_int64(st, 3);
    srv->reenable_legacy = sqlite3_column_int(st, 4) != 0;
    srv->state = gate_state_parse((const char *)sqlite3_column_text(st, 5));
    srv->waived = sqlite3_column_int(st, 6) != 0;
    srv->legacy_disabled = sqlite3_column_int(st, 7) != 0;
    srv->phase = c->phase;
    decide_server(c, srv);
}

/* Legacy handshakes logged against the servers of a site (wire.h), counted once per site:
 * (server id, client addresses) pairs, few. */
struct wire_counts {
    long long *id;
    long *n;
    size_t len, cap;
};

static int keep_wire_count(long long server_id, long count, void *arg)
{
    struct wire_counts *w = arg;
    if (w->len == w->cap) {
        size_t ncap = grow_cap(w->cap, 16);
        if (grow_to(&w->id, ncap, sizeof(*w->id)) || grow_to(&w->n, ncap, sizeof(*w->n)))
            return -ENOMEM;
        w->cap = ncap;
    }
    w->id[w->len] = server_id;
    w->n[w->len++] = count;
    return 0;
}

/* They block the server like not-ready dependents. */
static void add_wire_blockers(const struct wire_counts *w, struct gate_server *srv)
{
    for (size_t i = 0; i < w->len; i++)
        if (w->id[i] == srv->id) {
            srv->blocking += w->n[i];
            srv->open = false;
            srv->orphan_risk = srv->legacy_disabled;
        }
}

struct server_rows {
    const struct site_ctx *c;
    const struct wire_counts *wire;
    gate_server_fn fn;
    void *arg;
};

static int server_row(sqlite3_stmt *st, void *arg)
{
    struct server_rows *w = arg;
    struct gate_server srv;
    read_server(st, w->c, &srv);
    add_wire_blockers(w->wire, &srv);
    return w->fn(&srv, w->arg);
}

/* Walks the servers of one loaded site in name order. */
static int walk_servers(struct store *s, const struct site_ctx *c, const struct gate_time *t,
                        gate_server_fn fn, void *arg)
{
    /* `roles <> 1` matches the partial index host_systems (003_gate.sql): it skips the
     * clients, which are nearly all hosts. */
    static const char sql[] = SERVER_COLUMNS
        "WHERE h.site = :site AND h.roles <> 1 AND (h.roles & " SERVER_MASK_SQL ") <> 0"
        " ORDER BY h.name";
    struct wire_counts wire = {0};
    int rc = wire_legacy_counts(s, c->code, t->evidence_since, t->now, keep_wire_count, &wire);
    sqlite3_stmt *st;
    if (rc == -ENOMEM)
        rc = store_fail(s, rc, "site %s: out of memory", c->code);
    if (!rc)
        rc = prepare_at(s, sql, t, c->code, &st);
    if (rc) {
        free(wire.id);
        free(wire.n);
        return rc;
    }
    struct server_rows w = {c, &wire, fn, arg};
    rc = store_each(s, st, "read servers", server_row, &w);
    free(wire.id);
    free(wire.n);
    return rc;
}

struct server_walk {
    gate_server_fn fn;
    void *arg;
};

static int servers_of_site(struct store *s, struct site_ctx *c, const struct gate_time *t,
                           void *arg)
{
    struct server_walk *w = arg;
    return walk_servers(s, c, t, w->fn, w->arg);
}

int gate_servers(struct store *s, const char *site, const struct gate_time *t, gate_server_fn fn,
                 void *arg)
{
    struct server_walk w = {fn, arg};
    return for_each_site(s, site, t, servers_of_site, &w);
}

struct server_pick {
    long long id;
    gate_server_fn fn;
    void *arg;
    bool found;
};

static int pick_server(const struct gate_server *srv, void *arg)
{
    struct server_pick *p = arg;
    if (srv->id != p->id)
        return 0;
    p->found = true;
    return p->fn(srv, p->arg);
}

static int server_of_site(struct store *s, struct site_ctx *c, const struct gate_time *t, void *arg)
{
    return walk_servers(s, c, t, pick_server, arg);
}

/* Looks a host up by name: its id, site and roles. -ENOENT when there is none. */
static int find_host(struct store *s, const char *name, long long *id, char *site, size_t sitesize,
                     unsigned *roles)
{
    struct inv_host h;
    int rc = inv_host_get(s, name, 0, &h);
    if (rc)
        return rc;
    *id = h.id;
    snprintf(site, sitesize, "%s", h.site);
    *roles = h.roles;
    return 0;
}

int gate_server_get(struct store *s, const char *name, const struct gate_time *t, gate_server_fn fn,
                    void *arg)
{
    char site[INV_SITE_BUFSIZE];
    unsigned roles;
    struct server_pick p = {0, fn, arg, false};
    int rc = find_host(s, name, &p.id, site, sizeof(site), &roles);
    if (rc)
        return rc;
    if (!(roles & ROLE_SERVER_MASK))
        return store_fail(s, -EINVAL,
                          "%s has no site system role (it is a client or console): "
                          "it has no gate",
                          name);
    rc = for_each_site(s, site, t, server_of_site, &p);
    if (!rc && !p.found)
        rc = store_fail(s, -ENOENT, "no such host: %s", name);
    return rc;
}

/* ---- sites ------------------------------------------------------------------------------- */

struct site_walk {
    gate_site_fn fn;
    void *arg;
};

static int count_server(const struct gate_server *srv, void *arg)
{
    struct gate_site *g = arg;
    g->servers++;
    g->servers_gate_open += srv->open;
    g->orphan_risk += srv->orphan_risk;
    return 0;
}

/* Hosts of the loaded site failing the exit criterion of its current phase (phase.h). */
static long exit_blocking(const struct site_ctx *c)
{
    long n = 0;
    for (size_t i = 0; i < c->nmasks; i++) {
        const struct mask_count *m = &c->masks[i];
        switch (c->phase) {
        case PHASE_INVENTORY: n += m->unknown_blocking; break;
        case PHASE_CLIENTS: n += (m->roles & ROLE_CLIENT) ? m->blocking : 0; break;
        case PHASE_SERVERS: n += (m->roles & GATE_SYSTEM_MASK) ? m->blocking : 0; break;
        case PHASE_ENFORCE: n += (m->roles & ROLE_SERVER_MASK) ? m->legacy_blocking : 0; break;
        case PHASE_COMPLETE: break;
        }
    }
    return n;
}

static int summarize_site(struct store *s, struct site_ctx *c, const struct gate_time *t, void *arg)
{
    struct site_walk *w = arg;
    struct gate_site g = {
        .code = c->code,
        .phase = c->phase,
        .entered_at = c->entered_at,
        .entered_by = c->entered_by,
    };
    for (size_t i = 0; i < c->nmasks; i++) {
        g.hosts += c->masks[i].n;
        g.ready += c->masks[i].ready;
        g.not_ready += c->masks[i].not_ready;
        g.unknown += c->masks[i].unknown;
        g.waived += c->masks[i].waived;
    }
    g.exit_blocking = exit_blocking(c);
    int rc = 0;
    if (c->phase == PHASE_ENFORCE || c->phase == PHASE_COMPLETE) {
        /* enforce: registry off but the wire still accepts a legacy protocol fails the exit
         * (restart pending); complete: any legacy protocol accepted on the wire is an alarm. */
        long n = 0;
        rc = wire_restart_pending_count(s, c->code, ROLE_SERVER_MASK, t->cutoff, t->now,
                                        c->phase == PHASE_COMPLETE, &n);
        if (c->phase == PHASE_ENFORCE)
            g.exit_blocking += n;
        else
            g.wire_alarm = n;
        /* enforce: fail closed, a server the wire has not been asked about holds it too. */
        if (!rc && c->phase == PHASE_ENFORCE) {
            rc = wire_not_probed_count(s, c->code, ROLE_SERVER_MASK, t->cutoff, t->probe_since,
                                       t->now, &g.wire_not_probed);
            g.exit_blocking += g.wire_not_probed;
        }
    }
    if (!rc)
        rc = walk_servers(s, c, t, count_server, &g);
    return rc ? rc : w->fn(&g, w->arg);
}

int gate_sites(struct store *s, const char *site, const struct gate_time *t, gate_site_fn fn,
               void *arg)
{
    struct site_walk w = {fn, arg};
    return for_each_site(s, site, t, summarize_site, &w);
}

/* ---- listing what blocks ------------------------------------------------------------------ */

/*
 * temp.gate_fail: the hosts that fail something in one site, one row per reason.
 *   kind 0: not ready or unknown, not waived (blocks gates and the host phases);
 *   kind 1: a site system without a fresh report of legacy protocols disabled, not waived
 *           (the `enforce` exit).
 *   local 0 marks explicit dependents from other sites (they only count through their edges).
 *   name is NULL in the rows of a phase's fill (phase_fill): reading it there would read the
 *   host row of every failing host (hosts of one site are spread over the whole table: one page
 *   each), and a phase lists only the first few per group by name, from host_by_site.
 */
static int fail_table_reset(struct store *s)
{
    return store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS gate_fail ("
                         " id INTEGER NOT NULL, name TEXT COLLATE NOCASE,"
                         " roles INTEGER NOT NULL, local INTEGER NOT NULL, kind INTEGER NOT NULL,"
                         " st TEXT NOT NULL, rule TEXT NOT NULL, reason TEXT NOT NULL);"
                         "CREATE INDEX IF NOT EXISTS temp.gate_fail_order"
                         " ON gate_fail (kind, name, rule);"
                         "CREATE INDEX IF NOT EXISTS temp.gate_fail_host ON gate_fail (id, rule);"
                         "DELETE FROM temp.gate_fail;");
}

/* The rule and reason of an unknown host, or of a not-ready one without stored verdicts. */
#define UNKNOWN_RULE_SQL                                                                           \
    "CASE WHEN x.collected_at IS NULL THEN '" GATE_RULE_NO_REPORT "' ELSE '" GATE_RULE_STALE "' END"
/* ... and, when the daemon fails to pull it, why (the text of pollstatus_why_unknown). */
#define UNKNOWN_REASON_SQL                                                                         \
    "(CASE WHEN x.collected_at IS NULL THEN 'never reported' ELSE 'last report ' ||"               \
    " strftime('%Y-%m-%dT%H:%M:%SZ', x.collected_at, 'unixepoch') ||"                              \
    " ' is older than stale_after' END || coalesce((SELECT '; pull failing (' || pl.failures ||"   \
    " ' in a row, last ' || strftime('%Y-%m-%dT%H:%M:%SZ', pl.last_attempt_at, 'unixepoch') ||"    \
    " '): ' || pl.last_error FROM main.poll pl WHERE pl.host_id = x.id AND pl.failures > 0"        \
    " AND pl.last_error IS NOT NULL), ''))"

/* Runs one of the wire blockers' INSERTs (wire.h's selects) for the site systems of `site`,
 * binding the parameters it names (:mask, :any, :probe_since; the others are left NULL). */
static int list_wire_blockers(struct store *s, const struct gate_time *t, const char *site,
                              const char *sql, const char *what)
{
    sqlite3_stmt *st;
    int rc = prepare_at(s, sql, t, site, &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":mask"), ROLE_SERVER_MASK);
    sqlite3_bind_int(st, sqlite3_bind_parameter_index(st, ":any"), 0);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":probe_since"), t->probe_since);
    return store_run(s, st, what);
}

/* Fills temp.gate_fail for `site`: kind 0 rows for the hosts of the site whose roles meet
 * `local_mask`, with `remote` also for explicit dependents elsewhere, and with `legacy` the
 * kind 1 rows. Without `remote` the kind 0 rows have no name (the table's comment). */
static int fail_table_fill(struct store *s, const char *site, const struct gate_time *t,
                           unsigned local_mask, bool remote, bool legacy)
{
    /* Kind 0 rows for hosts of the site (local) and for explicit dependents elsewhere. */
#define FILL_KIND0(name, local, where)                                                             \
    "INSERT INTO temp.gate_fail (id, name, roles, local, kind, st, rule, reason)"                  \
    " SELECT x.id, " name ", x.roles, " local ", 0, x.st,"                                         \
    " CASE WHEN x.st = 'unknown' THEN " UNKNOWN_RULE_SQL                                           \
    "      ELSE coalesce(v.rule, '" GATE_RULE_NOT_READY "') END,"                                  \
    " CASE WHEN x.st = 'unknown' THEN " UNKNOWN_REASON_SQL                                         \
    "      ELSE coalesce(v.reason, x.blockers || ' failed blockers, no verdict stored') END"       \
    " FROM (SELECT h.id, h.name, h.roles, r.collected_at, r.blockers,"                             \
    "       " STATE_SQL " AS st" HOST_JOINS where " AND NOT " WAIVED_SQL ") x"                     \
    " LEFT JOIN verdict v ON x.st = 'not_ready' AND v.host_id = x.id"                              \
    "  AND v.pass = 0 AND v.severity = 'blocker'"                                                  \
    " WHERE x.st <> 'ready'"
    static const char *const fill_kind0[3] = {
        FILL_KIND0("x.name", "1", "WHERE h.site = :site AND (h.roles & :fmask) <> 0"),
        FILL_KIND0("x.name", "0",
                   "WHERE h.id IN (SELECT e.dependent FROM edge e"
                   " JOIN host sv ON sv.id = e.server WHERE sv.site = :site)"
                   " AND h.site <> :site"),
        FILL_KIND0("NULL", "1", "WHERE h.site = :site AND (h.roles & :fmask) <> 0"),
    };
    for (int i = 0; i < (remote ? 2 : 1); i++) {
        sqlite3_stmt *st;
        int rc = prepare_at(s, fill_kind0[remote ? i : 2], t, site, &st);
        if (rc)
            return rc;
        int fmask = sqlite3_bind_parameter_index(st, ":fmask");
        if (fmask)
            sqlite3_bind_int64(st, fmask, local_mask);
        rc = store_run(s, st, "list failing hosts");
        if (rc)
            return rc;
    }
    if (!legacy)
        return 0;
    static const char sql[] =
        "INSERT INTO temp.gate_fail (id, name, roles, local, kind, st, rule, reason)"
        " SELECT x.id, x.name, x.roles, 1, 1, x.st,"
        " CASE WHEN x.st = 'unknown' THEN " UNKNOWN_RULE_SQL "      ELSE '" GATE_RULE_LEGACY_ENABLED
        "' END,"
        " CASE WHEN x.st = 'unknown' THEN " UNKNOWN_REASON_SQL
        "      ELSE 'report says SSL 3.0, TLS 1.0 or TLS 1.1 is still enabled' END"
        " FROM (SELECT h.id, h.name, h.roles, r.collected_at, r.legacy_disabled AS legacy,"
        "       " STATE_SQL " AS st" HOST_JOINS "       WHERE h.site = :site AND h.roles <> 1"
        "       AND (h.roles & " SERVER_MASK_SQL ") <> 0 AND NOT " WAIVED_SQL ") x"
        " WHERE x.st = 'unknown' OR x.legacy = 0";
    sqlite3_stmt *st;
    int rc = prepare_at(s, sql, t, site, &st);
    if (rc)
        return rc;
    if ((rc = store_run(s, st, "list legacy servers")))
        return rc;
    /* Registry off, wire on: restart pending (wire.h). */
    if ((rc = list_wire_blockers(
             s, t, site,
             "INSERT INTO temp.gate_fail (id, name, roles, local, kind, st,"
             " rule, reason) SELECT x.id, x.name, x.roles, 1, 1, 'ready', '" WIRE_RULE_RESTART
             "', x.reason FROM (" WIRE_RESTART_PENDING_SELECT ") x",
             "list restart-pending servers")))
        return rc;
    /* No recent probe verdict: not probed (wire.h), fail closed. */
    return list_wire_blockers(
        s, t, site,
        "INSERT INTO temp.gate_fail (id, name, roles, local, kind, st, rule,"
        " reason) SELECT x.id, x.name, x.roles, 1, 1, 'ready', '" WIRE_RULE_NOT_PROBED
        "', x.reason FROM (" WIRE_NOT_PROBED_SELECT ") x",
        "list site systems not probed");
}

/*
 * Which rows of temp.gate_fail a listing takes: those of `kind`, local ones whose roles meet
 * `mask` (and, with unknown_only, only unknown hosts), not the host `self`, plus the explicit
 * dependents of `self`.
 */
struct fail_filter {
    int kind;
    unsigned mask;
    long long self; /* 0: no server (ids start at 1) */
    bool unknown_only;
};

#define FILTER_SQL                                                                                 \
    " kind = :kind AND ((local AND (roles & :mask) <> 0 AND id <> :self"                           \
    " AND (:unknown_only = 0 OR st = 'unknown'))"                                                  \
    " OR id IN (SELECT dependent FROM main.edge WHERE server = :self)) "

static void bind_filter(sqlite3_stmt *st, const struct fail_filter *f)
{
    sqlite3_bind_int(st, sqlite3_bind_parameter_index(st, ":kind"), f->kind);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":mask"), f->mask);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":self"), f->self);
    sqlite3_bind_int(st, sqlite3_bind_parameter_index(st, ":unknown_only"), f->unknown_only);
}

/* list_groups: one call per group, then one per host of the group (its `hosts` statement). */
struct group_walk {
    struct store *s;
    sqlite3_stmt *hosts;
    gate_failing_fn fn;
    void *arg;
    struct gate_failing *g; /* the group being listed */
};

static int group_host_row(sqlite3_stmt *st, void *arg)
{
    struct group_walk *w = arg;
    w->g->host = (const char *)sqlite3_column_text(st, 0);
    w->g->state = gate_state_parse((const char *)sqlite3_column_text(st, 1));
    w->g->reason = (const char *)sqlite3_column_text(st, 2);
    return w->fn(w->g, w->arg);
}

static int group_row(sqlite3_stmt *st, void *arg)
{
    struct group_walk *w = arg;
    struct gate_failing g = {
        .rule = (const char *)sqlite3_column_text(st, 0),
        .hosts = (long)sqlite3_column_int64(st, 1),
        .reason = (const char *)sqlite3_column_text(st, 2),
    };
    int rc = w->fn(&g, w->arg);
    if (rc)
        return rc;
    sqlite3_bind_text(w->hosts, sqlite3_bind_parameter_index(w->hosts, ":rule"), g.rule, -1,
                      SQLITE_TRANSIENT);
    w->g = &g;
    return store_each_keep(w->s, w->hosts, "list failing hosts", group_host_row, w);
}

/*
 * Lists the groups of the rows `f` takes, each with its first `limit` hosts by name (0: all).
 * With `site` (a phase: its rows are all local to the site and have no name) the names come from
 * host_by_site, walked in name order until the group has its `limit` hosts: the index holds the
 * name, the host rows are not read. Each (host, rule) has one row, so no DISTINCT is needed.
 */
static int list_groups(struct store *s, const char *site, const struct fail_filter *f, long limit,
                       gate_failing_fn fn, void *arg)
{
    sqlite3_stmt *groups, *hosts;
    int rc = store_prepare(
        s,
        "SELECT rule, count(DISTINCT id), min(reason) FROM temp.gate_fail WHERE" FILTER_SQL
        "GROUP BY rule ORDER BY 2 DESC, rule",
        &groups);
    if (rc)
        return rc;
    rc =
        store_prepare(s,
                      site ? "SELECT h.name, f.st, f.reason FROM main.host h INDEXED BY"
                             " host_by_site CROSS JOIN temp.gate_fail f ON f.id = h.id"
                             " WHERE h.site = :site AND f.rule = :rule AND f.kind = :kind"
                             " AND f.local AND (f.roles & :mask) <> 0"
                             " AND (:unknown_only = 0 OR f.st = 'unknown')"
                             " ORDER BY h.name LIMIT :limit"
                           : "SELECT DISTINCT name, st, reason FROM temp.gate_fail WHERE" FILTER_SQL
                             "AND rule = :rule ORDER BY name LIMIT :limit",
                      &hosts);
    if (rc) {
        sqlite3_finalize(groups);
        return rc;
    }
    bind_filter(groups, f);
    bind_filter(hosts, f);
    bind_site(hosts, site);
    sqlite3_bind_int64(hosts, sqlite3_bind_parameter_index(hosts, ":limit"),
                       limit > 0 ? limit : -1);
    struct group_walk w = {s, hosts, fn, arg, NULL};
    rc = store_each(s, groups, "group failing hosts", group_row, &w);
    sqlite3_finalize(hosts);
    return rc;
}

/* The legacy-handshake blockers of `server` as one more group (wire.h). */
struct wire_group {
    struct gate_failing g;
    long listed, limit;
    gate_failing_fn fn;
    void *arg;
};

static int wire_failing_row(const char *client, const char *reason, void *arg)
{
    struct wire_group *w = arg;
    if (w->limit > 0 && w->listed >= w->limit)
        return 0;
    w->listed++;
    w->g.host = client;
    w->g.reason = reason;
    return w->fn(&w->g, w->arg);
}

static int wire_failing(struct store *s, const struct gate_server *server,
                        const struct gate_time *t, long limit, gate_failing_fn fn, void *arg)
{
    long n = 0;
    int rc = wire_legacy_blockers(s, server->name, t->evidence_since, t->now, &n, NULL, NULL);
    if (rc || !n)
        return rc;
    struct wire_group w = {
        .g = {.rule = WIRE_RULE_LEGACY_SEEN,
              .hosts = n,
              .state = GATE_NOT_READY,
              .reason = "a client still speaks SSL 3.0, TLS 1.0 or TLS 1.1 to this server "
                        "(its logs)"},
        .limit = limit,
        .fn = fn,
        .arg = arg,
    };
    if ((rc = fn(&w.g, arg)))
        return rc;
    return wire_legacy_blockers(s, server->name, t->evidence_since, t->now, NULL, wire_failing_row,
                                &w);
}

int gate_failing_for_server(struct store *s, const struct gate_server *server,
                            const struct gate_time *t, long limit, gate_failing_fn fn, void *arg)
{
    int rc = fail_table_reset(s);
    if (!rc)
        rc = fail_table_fill(s, server->site, t, (1u << ROLE_COUNT) - 1, true, false);
    if (rc)
        return rc;
    struct fail_filter f = {
        .kind = 0, .mask = gate_dependent_roles(server->roles), .self = server->id};
    rc = list_groups(s, NULL, &f, limit, fn, arg);
    return rc ? rc : wire_failing(s, server, t, limit, fn, arg);
}

/* The rows of temp.gate_fail that fail the exit criterion of phase p; false in complete. */
static bool phase_filter(enum phase_id p, struct fail_filter *f)
{
    *f = (struct fail_filter){.kind = 0, .self = 0};
    switch (p) {
    case PHASE_INVENTORY:
        f->mask = (1u << ROLE_COUNT) - 1;
        f->unknown_only = true;
        return true;
    case PHASE_CLIENTS: f->mask = ROLE_CLIENT; return true;
    case PHASE_SERVERS: f->mask = GATE_SYSTEM_MASK; return true;
    case PHASE_ENFORCE:
        f->mask = ROLE_SERVER_MASK;
        f->kind = 1;
        return true;
    case PHASE_COMPLETE: break;
    }
    return false;
}

/* A phase lists local hosts only (self = 0 has no edges), so the fill skips the other sites'
 * explicit dependents and, outside enforce, the hosts whose roles the phase does not count. */
static int phase_fill(struct store *s, const char *site, enum phase_id p, const struct gate_time *t,
                      const struct fail_filter *f)
{
    int rc = fail_table_reset(s);
    bool legacy = p == PHASE_ENFORCE;
    return rc ? rc : fail_table_fill(s, site, t, legacy ? 0 : f->mask, false, legacy);
}

int gate_failing_for_phase(struct store *s, const char *site, enum phase_id p,
                           const struct gate_time *t, long limit, gate_failing_fn fn, void *arg)
{
    struct fail_filter f;
    if (!phase_filter(p, &f))
        return 0;
    int rc = phase_fill(s, site, p, t, &f);
    return rc ? rc : list_groups(s, site, &f, limit, fn, arg);
}

/* ---- phase advance: the exit count and its listing from one pass ------------------------- */

static int count_row(sqlite3_stmt *st, void *arg)
{
    *(long *)arg = (long)sqlite3_column_int64(st, 0);
    return 0;
}

/* One count from a statement whose parameters the fail filter, site and time bind. */
static int count_one(struct store *s, const char *sql, const struct fail_filter *f,
                     const char *site, const struct gate_time *t, long *n)
{
    sqlite3_stmt *st;
    int rc = prepare_at(s, sql, t, site, &st);
    if (rc)
        return rc;
    if (f)
        bind_filter(st, f);
    *n = 0;
    return store_each(s, st, "count failing hosts", count_row, n);
}

struct exit_walk {
    const struct gate_time *t;
    long limit;
    gate_site_fn site_fn;
    gate_failing_fn failing_fn;
    void *arg;
    long exit_blocking; /* enforce and complete: what site_fn was told */
};

/* enforce and complete: gate_sites' count (the legacy and wire figures), then the listing. */
static int exit_from_summary(const struct gate_site *g, void *arg)
{
    struct exit_walk *w = arg;
    struct gate_site one = {
        .code = g->code,
        .phase = g->phase,
        .entered_at = g->entered_at,
        .entered_by = g->entered_by,
        .waived = g->waived,
        .exit_blocking = g->exit_blocking,
    };
    w->exit_blocking = g->exit_blocking;
    return w->site_fn(&one, w->arg);
}

static int phase_exit_site(struct store *s, struct site_ctx *c, const struct gate_time *t,
                           void *arg)
{
    struct exit_walk *w = arg;
    struct fail_filter f;
    int rc;
    if (c->phase == PHASE_ENFORCE || c->phase == PHASE_COMPLETE) {
        if ((rc = load_masks(s, c, t)) || (rc = load_explicit(s, c, t)))
            return rc;
        struct site_walk sw = {exit_from_summary, w};
        if ((rc = summarize_site(s, c, t, &sw)))
            return rc;
        return w->exit_blocking > 0 && w->failing_fn
                   ? gate_failing_for_phase(s, c->code, c->phase, t, w->limit, w->failing_fn,
                                            w->arg)
                   : 0;
    }
    /* inventory, clients, servers: the failing hosts are found once, counted, then listed. */
    phase_filter(c->phase, &f);
    struct gate_site g = {
        .code = c->code,
        .phase = c->phase,
        .entered_at = c->entered_at,
        .entered_by = c->entered_by,
    };
    if ((rc = phase_fill(s, c->code, c->phase, t, &f)) ||
        (rc = count_one(s, "SELECT count(DISTINCT id) FROM temp.gate_fail WHERE" FILTER_SQL, &f,
                        c->code, t, &g.exit_blocking)) ||
        (rc = count_one(s,
                        "SELECT count(*) FROM waiver w CROSS JOIN host h ON h.id = w.host_id"
                        " WHERE h.site = :site AND " WAIVED_SQL,
                        NULL, c->code, t, &g.waived)) ||
        (rc = w->site_fn(&g, w->arg)))
        return rc;
    return g.exit_blocking > 0 && w->failing_fn
               ? list_groups(s, c->code, &f, w->limit, w->failing_fn, w->arg)
               : 0;
}

struct waived_rows {
    gate_waived_fn fn;
    void *arg;
};

static int waived_row(sqlite3_stmt *st, void *arg)
{
    struct waived_rows *r = arg;
    struct gate_waived w = {
        .host = (const char *)sqlite3_column_text(st, 0),
        .state = gate_state_parse((const char *)sqlite3_column_text(st, 1)),
        .reason = (const char *)sqlite3_column_text(st, 2),
        .until_at = sqlite3_column_int64(st, 3),
    };
    return r->fn(&w, r->arg);
}

int gate_waived_for_server(struct store *s, const struct gate_server *server,
                           const struct gate_time *t, long limit, gate_waived_fn fn, void *arg)
{
    /* Driven by the waiver table, which is small: no scan of the site's hosts. */
    static const char sql[] =
        "SELECT h.name, " STATE_SQL ", w.reason, coalesce(w.until_at, 0)"
        " FROM waiver w CROSS JOIN host h ON h.id = w.host_id"
        " LEFT JOIN report r INDEXED BY report_state ON r.host_id = h.id"
        " WHERE " WAIVED_SQL " AND h.id <> :self AND ((h.site = :site AND (h.roles & :mask) <> 0)"
        "  OR h.id IN (SELECT dependent FROM edge WHERE server = :self))"
        " ORDER BY h.name LIMIT :limit";
    sqlite3_stmt *st;
    int rc = prepare_at(s, sql, t, server->site, &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":self"), server->id);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":mask"),
                       gate_dependent_roles(server->roles));
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":limit"), limit > 0 ? limit : -1);
    struct waived_rows w = {fn, arg};
    return store_each(s, st, "list waived dependents", waived_row, &w);
}

/* gate_blockers: every server of a loaded site, each with its rows of temp.gate_fail. */
struct blocker_walk {
    const char *server; /* NULL: all of the site */
    long long server_id;
    gate_blocker_fn fn;
    void *arg;
    sqlite3_stmt *rows;
    struct store *s;
    const struct gate_time *t;
    const struct gate_server *srv; /* the server whose rows are being listed */
};

static int wire_blocker_row(const char *client, const char *reason, void *arg)
{
    struct blocker_walk *w = arg;
    struct gate_blocker b = {
        .site = w->srv->site,
        .server = w->srv->name,
        .dependent = client,
        .state = GATE_NOT_READY,
        .rule = WIRE_RULE_LEGACY_SEEN,
        .reason = reason,
    };
    return w->fn(&b, w->arg);
}

static int blocker_row(sqlite3_stmt *st, void *arg)
{
    struct blocker_walk *w = arg;
    struct gate_blocker b = {
        .site = w->srv->site,
        .server = w->srv->name,
        .dependent = (const char *)sqlite3_column_text(st, 0),
        .state = gate_state_parse((const char *)sqlite3_column_text(st, 1)),
        .rule = (const char *)sqlite3_column_text(st, 2),
        .reason = (const char *)sqlite3_column_text(st, 3),
    };
    return w->fn(&b, w->arg);
}

static int server_blockers(const struct gate_server *srv, void *arg)
{
    struct blocker_walk *w = arg;
    if (w->server && srv->id != w->server_id)
        return 0;
    if (srv->blocking == 0)
        return 0;
    struct fail_filter f = {.kind = 0, .mask = gate_dependent_roles(srv->roles), .self = srv->id};
    bind_filter(w->rows, &f);
    w->srv = srv;
    int rc = store_each_keep(w->s, w->rows, "list blockers", blocker_row, w);
    if (rc)
        return rc;
    return wire_legacy_blockers(w->s, srv->name, w->t->evidence_since, w->t->now, NULL,
                                wire_blocker_row, w);
}

static int blockers_of_site(struct store *s, struct site_ctx *c, const struct gate_time *t,
                            void *arg)
{
    struct blocker_walk *w = arg;
    int rc = fail_table_reset(s);
    if (!rc)
        rc = fail_table_fill(s, c->code, t, (1u << ROLE_COUNT) - 1, true, false);
    if (!rc)
        rc = store_prepare(s,
                           "SELECT name, st, rule, reason FROM temp.gate_fail WHERE" FILTER_SQL
                           "ORDER BY name, rule",
                           &w->rows);
    if (rc)
        return rc;
    w->s = s;
    w->t = t;
    rc = walk_servers(s, c, t, server_blockers, w);
    sqlite3_finalize(w->rows);
    w->rows = NULL;
    return rc;
}

int gate_blockers(struct store *s, const char *site, const char *server, const struct gate_time *t,
                  gate_blocker_fn fn, void *arg)
{
    struct blocker_walk w = {.server = server, .fn = fn, .arg = arg};
    char server_site[INV_SITE_BUFSIZE];
    if (server) {
        unsigned roles;
        int rc = find_host(s, server, &w.server_id, server_site, sizeof(server_site), &roles);
        if (rc)
            return rc;
        if (!(roles & ROLE_SERVER_MASK))
            return store_fail(s, -EINVAL, "%s has no site system role: it has no gate", server);
        site = server_site;
    }
    return for_each_site(s, site, t, blockers_of_site, &w);
}

int gate_phase_exit(struct store *s, const char *site, const struct gate_time *t, long limit,
                    gate_site_fn site_fn, gate_failing_fn failing_fn, void *arg)
{
    struct exit_walk w = {t, limit, site_fn, failing_fn, arg, 0};
    return for_each_site_as(s, site, t, phase_exit_site, &w, true);
}

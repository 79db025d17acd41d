/*
 * wire.c — the tables of schema/007_wire.sql: probe ports and outcomes, logged handshakes and
 * their per-address waivers, and the two blockers the gate asks for (wire.h).
 */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "inventory.h"
#include "store.h"

static const char *const proto_names[WIRE_PROTO_COUNT] = {"ssl2",   "ssl3",   "tls1.0",
                                                          "tls1.1", "tls1.2", "tls1.3"};
static const char *const proto_labels[WIRE_PROTO_COUNT] = {"SSL 2.0", "SSL 3.0", "TLS 1.0",
                                                           "TLS 1.1", "TLS 1.2", "TLS 1.3"};

const char *wire_proto_name(enum wire_proto p)
{
    return (unsigned)p < WIRE_PROTO_COUNT ? proto_names[p] : "?";
}

const char *wire_proto_label(enum wire_proto p)
{
    return (unsigned)p < WIRE_PROTO_COUNT ? proto_labels[p] : "?";
}

int wire_proto_parse(const char *name, enum wire_proto *p)
{
    for (int i = 0; name && i < WIRE_PROTO_COUNT; i++)
        if (!strcmp(name, proto_names[i])) {
            *p = (enum wire_proto)i;
            return 0;
        }
    return -EINVAL;
}

const char *wire_result_name(enum wire_result r)
{
    switch (r) {
    case WIRE_ACCEPTED: return "accepted";
    case WIRE_REFUSED: return "refused";
    case WIRE_UNTESTED: break;
    }
    return "untested";
}

static enum wire_result result_parse(const char *w)
{
    if (w && !strcmp(w, "accepted"))
        return WIRE_ACCEPTED;
    if (w && !strcmp(w, "refused"))
        return WIRE_REFUSED;
    return WIRE_UNTESTED;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? t : "";
}

/* ---- probe ---------------------------------------------------------------------------- */

/* Site systems ConfigMgr reaches over HTTPS (IIS or SSRS on 443). */
#define WIRE_HTTPS_ROLES                                                                           \
    (ROLE_MANAGEMENT_POINT | ROLE_DISTRIBUTION_POINT | ROLE_REPORTING_POINT | ROLE_SMS_PROVIDER |  \
     ROLE_ENROLLMENT_POINT | ROLE_ENROLLMENT_PROXY_POINT | ROLE_STATE_MIGRATION_POINT |            \
     ROLE_CERTIFICATE_REGISTRATION_POINT)
_Static_assert((WIRE_HTTPS_ROLES | ROLE_SOFTWARE_UPDATE_POINT | ROLE_SITE_DATABASE) == 176632,
               "WIRE_PORT_ROLES_SQL must equal the roles wire_ports_for_roles gives ports");

size_t wire_ports_for_roles(unsigned roles, struct wire_port *out, size_t max)
{
    const unsigned https = WIRE_HTTPS_ROLES;
    size_t n = 0;
    if ((roles & https) && n < max)
        out[n++] = (struct wire_port){443, false};
    if ((roles & ROLE_SOFTWARE_UPDATE_POINT) && n < max)
        out[n++] = (struct wire_port){8531, false};
    if ((roles & ROLE_SITE_DATABASE) && n < max)
        out[n++] = (struct wire_port){1433, true};
    return n;
}

/* The host part of a collector address: "127.0.0.17:8443" -> "127.0.0.17", "[::1]:8443" ->
 * "::1", "name:8443" -> "name". */
static void address_of(const char *collector, char *buf, size_t size)
{
    const char *colon = strrchr(collector, ':');
    size_t len = colon ? (size_t)(colon - collector) : strlen(collector);
    if (len >= 2 && collector[0] == '[' && collector[len - 1] == ']') {
        collector++;
        len -= 2;
    }
    snprintf(buf, size, "%.*s", (int)len, collector);
}

static int load_overrides(struct store *s, struct wire_target *t)
{
    sqlite3_stmt *st;
    int rc =
        store_prepare(s, "SELECT port, tds FROM probe_port WHERE host_id = ? ORDER BY port", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, t->host_id);
    size_t n = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW && n < WIRE_PORTS_MAX)
        t->ports[n++] =
            (struct wire_port){sqlite3_column_int(st, 0), sqlite3_column_int(st, 1) != 0};
    rc = step == SQLITE_ROW || step == SQLITE_DONE ? 0 : store_sqlite_fail(s, "read probe ports");
    sqlite3_finalize(st);
    if (!rc && n)
        t->nports = n;
    return rc;
}

struct target_walk {
    wire_target_fn fn;
    void *arg;
    struct store *s;
    long rows;
};

static int target_row(sqlite3_stmt *st, void *arg)
{
    struct target_walk *w = arg;
    char address[INV_COLLECTOR_SIZE];
    struct wire_target t = {
        .host_id = sqlite3_column_int64(st, 0),
        .name = col_text(st, 1),
        .site = col_text(st, 2),
        .roles = (unsigned)sqlite3_column_int64(st, 3),
        .address = address,
    };
    address_of(col_text(st, 4), address, sizeof(address));
    t.nports = wire_ports_for_roles(t.roles, t.ports, WIRE_PORTS_MAX);
    int rc = load_overrides(w->s, &t);
    w->rows++;
    return rc ? rc : w->fn(&t, w->arg);
}

int wire_targets(struct store *s, const char *site, const char *host, wire_target_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc;
    if (host) {
        rc = store_prepare(s, "SELECT id, name, site, roles, collector FROM host WHERE name = ?",
                           &st);
    } else {
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT id, name, site, roles, collector FROM host"
                 " WHERE roles <> 1 AND (roles & %d) <> 0 %s ORDER BY name",
                 ROLE_SERVER_MASK, site ? "AND site = ?" : "");
        rc = store_prepare(s, sql, &st);
    }
    if (rc)
        return rc;
    if (host || site)
        sqlite3_bind_text(st, 1, host ? host : site, -1, SQLITE_TRANSIENT);
    struct target_walk w = {fn, arg, s, 0};
    rc = store_each(s, st, "read probe targets", target_row, &w);
    if (!rc && host && !w.rows)
        rc = store_fail(s, -ENOENT, "no such host: %s (see `tlsgate inventory list`)", host);
    if (!rc && site && !host && !w.rows) {
        sqlite3_stmt *q;
        if ((rc = store_prepare(s, "SELECT 1 FROM site WHERE code = ?", &q)))
            return rc;
        sqlite3_bind_text(q, 1, site, -1, SQLITE_TRANSIENT);
        int step = sqlite3_step(q);
        sqlite3_finalize(q);
        if (step != SQLITE_ROW)
            rc = store_fail(s, -ENOENT, "no such site: %s", site);
    }
    return rc;
}

int wire_ports_set(struct store *s, long long host_id, const struct wire_port *ports, size_t n)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "DELETE FROM probe_port WHERE host_id = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    if ((rc = store_run(s, st, "clear probe ports")))
        return rc;
    for (size_t i = 0; i < n; i++) {
        rc = store_prepare(s,
                           "INSERT INTO probe_port (host_id, port, tds) VALUES (?, ?, ?)"
                           " ON CONFLICT (host_id, port) DO UPDATE SET tds = excluded.tds",
                           &st);
        if (rc)
            return rc;
        sqlite3_bind_int64(st, 1, host_id);
        sqlite3_bind_int(st, 2, ports[i].port);
        sqlite3_bind_int(st, 3, ports[i].tds);
        if ((rc = store_run(s, st, "write probe port")))
            return rc;
    }
    return 0;
}

int wire_probe_clear(struct store *s, long long host_id)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "DELETE FROM probe_result WHERE host_id = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    return store_run(s, st, "clear probe results");
}

int wire_probe_oldest(struct store *s, long long *oldest)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*), min(coalesce((SELECT max(p.at) FROM probe_result p"
             " WHERE p.host_id = h.id), 0)) FROM host h WHERE h.roles <> 1 AND (h.roles & %d) <> 0"
             " AND ((h.roles & " WIRE_PORT_ROLES_SQL ") <> 0"
             " OR EXISTS (SELECT 1 FROM probe_port pp WHERE pp.host_id = h.id))",
             ROLE_SERVER_MASK);
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        *oldest = sqlite3_column_int64(st, 0) ? sqlite3_column_int64(st, 1) : -1;
    else
        rc = store_sqlite_fail(s, "read the probe schedule");
    sqlite3_finalize(st);
    return rc;
}

int wire_probe_store(struct store *s, long long host_id, const struct wire_port *port,
                     enum wire_proto p, enum wire_result r, const char *error, long long at)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "INSERT INTO probe_result (host_id, port, tds, protocol, result, error,"
                           " at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host_id, port,"
                           " protocol) DO UPDATE SET tds = excluded.tds, result = excluded.result,"
                           " error = excluded.error, at = excluded.at",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    sqlite3_bind_int(st, 2, port->port);
    sqlite3_bind_int(st, 3, port->tds);
    sqlite3_bind_text(st, 4, wire_proto_name(p), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, wire_result_name(r), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, error ? error : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 7, at);
    return store_run(s, st, "write probe result");
}

struct probe_walk {
    wire_probe_fn fn;
    void *arg;
};

static int probe_row(sqlite3_stmt *st, void *arg)
{
    struct probe_walk *w = arg;
    struct wire_probe_row r = {
        .host = col_text(st, 0),
        .site = col_text(st, 1),
        .port = sqlite3_column_int(st, 2),
        .tds = sqlite3_column_int(st, 3) != 0,
        .result = result_parse(col_text(st, 5)),
        .error = col_text(st, 6),
        .at = sqlite3_column_int64(st, 7),
    };
    if (wire_proto_parse(col_text(st, 4), &r.proto))
        return 0; /* the CHECK constraint makes this unreachable */
    return w->fn(&r, w->arg);
}

int wire_probe_each(struct store *s, const char *host, wire_probe_fn fn, void *arg)
{
    /* Protocols in version order: the stored words sort that way ('ssl3' < 'tls1.0' < ...). */
    static const char all[] =
        "SELECT h.name, h.site, p.port, p.tds, p.protocol, p.result, p.error, p.at"
        " FROM probe_result p JOIN host h ON h.id = p.host_id"
        " ORDER BY h.name, p.port, p.protocol";
    static const char one[] =
        "SELECT h.name, h.site, p.port, p.tds, p.protocol, p.result, p.error, p.at"
        " FROM probe_result p JOIN host h ON h.id = p.host_id WHERE h.name = ?"
        " ORDER BY h.name, p.port, p.protocol";
    sqlite3_stmt *st;
    int rc = store_prepare(s, host ? one : all, &st);
    if (rc)
        return rc;
    if (host)
        sqlite3_bind_text(st, 1, host, -1, SQLITE_TRANSIENT);
    struct probe_walk w = {fn, arg};
    return store_each(s, st, "read probe results", probe_row, &w);
}

int wire_summary_get(struct store *s, long long host_id, struct wire_summary *w)
{
    memset(w, 0, sizeof(*w));
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT count(*), max(at), group_concat(CASE WHEN result = 'accepted'"
                           " AND protocol IN " WIRE_LEGACY_SQL " THEN protocol || ' on ' || port"
                           " END, ', ') FROM probe_result WHERE host_id = ?",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = store_sqlite_fail(s, "read probe summary");
    } else {
        w->probed = sqlite3_column_int64(st, 0) > 0;
        w->at = sqlite3_column_int64(st, 1);
        const char *acc = (const char *)sqlite3_column_text(st, 2);
        w->legacy_accepted = acc && *acc;
        snprintf(w->detail, sizeof(w->detail), "%s", acc ? acc : "");
    }
    sqlite3_finalize(st);
    return rc;
}

struct summaries_walk {
    wire_summary_fn fn;
    void *arg;
};

static int summaries_row(sqlite3_stmt *st, void *arg)
{
    struct summaries_walk *w = arg;
    return w->fn(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), col_text(st, 2), w->arg);
}

int wire_summaries_each(struct store *s, wire_summary_fn fn, void *arg)
{
    /* The protocols in version order: the stored words sort that way. */
    static const char sql[] =
        "SELECT host_id, max(at), coalesce((SELECT group_concat(protocol, ';') FROM"
        " (SELECT DISTINCT q.protocol FROM probe_result q WHERE q.host_id = p.host_id"
        "  AND q.result = 'accepted' AND q.protocol IN " WIRE_LEGACY_SQL " ORDER BY q.protocol)),"
        " '') FROM probe_result p GROUP BY host_id ORDER BY host_id";
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    struct summaries_walk w = {fn, arg};
    return store_each(s, st, "read probe summaries", summaries_row, &w);
}

static int summaries_keep(long long host_id, long long at, const char *acc, void *arg)
{
    struct wire_summaries *ws = arg;
    if (ws->n == ws->cap) {
        size_t ncap = grow_cap(ws->cap, 64);
        if (grow_to(&ws->id, ncap, sizeof(*ws->id)) || grow_to(&ws->at, ncap, sizeof(*ws->at)) ||
            grow_to(&ws->accepted, ncap, sizeof(*ws->accepted)))
            return -ENOMEM;
        ws->cap = ncap;
    }
    ws->id[ws->n] = host_id;
    ws->at[ws->n] = at;
    snprintf(ws->accepted[ws->n], sizeof(ws->accepted[0]), "%s", acc);
    ws->n++;
    return 0;
}

int wire_summaries_load(struct store *s, struct wire_summaries *ws)
{
    memset(ws, 0, sizeof(*ws));
    return wire_summaries_each(s, summaries_keep, ws);
}

long wire_summaries_find(const struct wire_summaries *ws, long long host_id)
{
    size_t lo = 0, hi = ws->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ws->id[mid] < host_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ws->n && ws->id[lo] == host_id ? (long)lo : -1;
}

void wire_summaries_release(struct wire_summaries *ws)
{
    free(ws->id);
    free(ws->at);
    free(ws->accepted);
    memset(ws, 0, sizeof(*ws));
}

/* ---- evidence ------------------------------------------------------------------------- */

/* wire_evidence_add (counts add up) and wire_evidence_merge (the larger count stays). */
static int evidence_write(struct store *s, bool merge, const char *server, const char *client,
                          enum wire_proto p, long long first, long long last, long long count)
{
#define EVIDENCE_UPSERT(count_expr)                                                                \
    "INSERT INTO evidence (server, client, protocol, day, first_seen, last_seen, count)"           \
    " VALUES (?1, ?2, ?3, ?4 - (?4 % 86400), ?4, ?5, ?6)"                                          \
    " ON CONFLICT (server, client, protocol, day) DO UPDATE SET"                                   \
    " first_seen = min(first_seen, excluded.first_seen),"                                          \
    " last_seen = max(last_seen, excluded.last_seen), count = " count_expr
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           merge ? EVIDENCE_UPSERT("max(count, excluded.count)")
                                 : EVIDENCE_UPSERT("count + excluded.count"),
                           &st);
#undef EVIDENCE_UPSERT
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, server, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, client, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, wire_proto_name(p), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, first);
    sqlite3_bind_int64(st, 5, last);
    sqlite3_bind_int64(st, 6, count);
    return store_run(s, st, "write evidence");
}

int wire_evidence_add(struct store *s, const char *server, const char *client, enum wire_proto p,
                      long long first, long long last, long long count)
{
    return evidence_write(s, false, server, client, p, first, last, count);
}

int wire_evidence_merge(struct store *s, const char *server, const char *client, enum wire_proto p,
                        long long first, long long last, long long count)
{
    return evidence_write(s, true, server, client, p, first, last, count);
}

int wire_server_resolve(struct store *s, const char *text, char *name, size_t size)
{
    /* Three tries, first match wins; the collector address through its index (007_wire). */
    static const char *const sql[] = {
        "SELECT name FROM host WHERE name = ?1",
        "SELECT min(name) FROM host WHERE lower(substr(name, 1, length(?1) + 1)) ="
        " lower(?1 || '.') HAVING count(*) = 1",
        "SELECT min(name) FROM host WHERE rtrim(collector, '0123456789')"
        " IN (?1 || ':', '[' || ?1 || ']:') HAVING count(*) = 1",
    };
    snprintf(name, size, "%s", text);
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        sqlite3_stmt *st;
        int rc = store_prepare(s, sql[i], &st);
        if (rc)
            return rc;
        sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW && sqlite3_column_text(st, 0)) {
            snprintf(name, size, "%s", sqlite3_column_text(st, 0));
            sqlite3_finalize(st);
            return 0;
        }
        sqlite3_finalize(st);
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            return store_sqlite_fail(s, "resolve server name");
    }
    return 0;
}

int wire_evidence_prune(struct store *s, long long before)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "DELETE FROM evidence WHERE day < ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, before);
    return store_run(s, st, "prune evidence");
}

/* The inventory host whose collector address is client `c` (an IPv6 one is in brackets), else
 * the one the administrator's resolver names for it (evidence_name, 011_probe). */
#define CLIENT_HOST_SQL(c)                                                                         \
    "coalesce((SELECT min(hc.name) FROM host hc WHERE rtrim(hc.collector, '0123456789') IN (" c    \
    " || ':', '[' || " c " || ']:')), (SELECT hn.name FROM evidence_name en JOIN host hn"          \
    " ON hn.id = en.host_id WHERE en.address = " c "))"
#define EVIDENCE_WAIVED_SQL(c, now)                                                                \
    "EXISTS (SELECT 1 FROM evidence_waiver ew WHERE ew.client = " c                                \
    " AND (ew.until_at IS NULL OR ew.until_at > " now "))"

struct evidence_walk {
    wire_evidence_fn fn;
    void *arg;
    bool uninventoried_only;
};

static int evidence_row(sqlite3_stmt *st, void *arg)
{
    struct evidence_walk *w = arg;
    struct wire_evidence_row r = {
        .server = col_text(st, 0),
        .client = col_text(st, 1),
        .client_host = (const char *)sqlite3_column_text(st, 2),
        .first_seen = sqlite3_column_int64(st, 4),
        .last_seen = sqlite3_column_int64(st, 5),
        .count = sqlite3_column_int64(st, 6),
        .waived = sqlite3_column_int(st, 7) != 0,
    };
    if (wire_proto_parse(col_text(st, 3), &r.proto))
        return 0;
    if (w->uninventoried_only && r.client_host)
        return 0;
    return w->fn(&r, w->arg);
}

int wire_evidence_each(struct store *s, const struct wire_evidence_filter *f, wire_evidence_fn fn,
                       void *arg)
{
    static const char sql[] = "SELECT e.server, e.client, " CLIENT_HOST_SQL(
        "e.client") ", e.protocol,"
                    " min(e.first_seen), max(e.last_seen), sum(e.count), " EVIDENCE_WAIVED_SQL(
                        "e.client", ":now") " FROM evidence e"
                                            " WHERE (:server IS NULL OR e.server = :server)"
                                            " AND (:legacy = 0 OR e.protocol IN " WIRE_LEGACY_SQL
                                            ")"
                                            " AND e.last_seen >= :since"
                                            " GROUP BY e.server, e.client, e.protocol"
                                            " ORDER BY e.server, e.client, e.protocol";
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    if (f->server)
        sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":server"), f->server, -1,
                          SQLITE_TRANSIENT);
    sqlite3_bind_int(st, sqlite3_bind_parameter_index(st, ":legacy"), f->legacy_only);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":since"), f->since);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":now"), f->now);
    struct evidence_walk w = {fn, arg, f->uninventoried_only};
    return store_each(s, st, "read evidence", evidence_row, &w);
}

int wire_waiver_set(struct store *s, const char *client, const char *reason, long long until_at,
                    long long now, const char *user)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "INSERT INTO evidence_waiver (client, reason, until_at, created_at,"
                           " created_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT (client) DO UPDATE"
                           " SET reason = excluded.reason, until_at = excluded.until_at,"
                           " created_at = excluded.created_at, created_by = excluded.created_by",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, client, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
    store_bind_opt_int64(st, 3, until_at);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_text(st, 5, user, -1, SQLITE_STATIC);
    return store_run(s, st, "write evidence waiver");
}

int wire_waiver_clear(struct store *s, const char *client, bool *had)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "DELETE FROM evidence_waiver WHERE client = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, client, -1, SQLITE_STATIC);
    rc = store_run(s, st, "delete evidence waiver");
    *had = !rc && sqlite3_changes(store_db(s)) > 0;
    return rc;
}

/* ---- what the gate asks --------------------------------------------------------------- */

struct blocker_walk {
    wire_blocker_fn fn;
    void *arg;
    long count;
};

static int blocker_row(sqlite3_stmt *st, void *arg)
{
    struct blocker_walk *w = arg;
    w->count++;
    return w->fn ? w->fn(col_text(st, 0), col_text(st, 1), w->arg) : 0;
}

int wire_legacy_blockers(struct store *s, const char *server, long long since, long long now,
                         long *count, wire_blocker_fn fn, void *arg)
{
    static const char sql[] =
        "SELECT x.client, CASE x.client WHEN 'unknown' THEN 'a client SCHANNEL event 36880 does not"
        " name (it carries no address; IIS logs with crypt-protocol do)' ELSE"
        " x.client || ' (' || coalesce(x.host, 'uninventoried client') || ')' END || ': '"
        " || x.protos || ' handshake seen ' || x.n || ' time' || CASE x.n WHEN 1 THEN '' ELSE"
        " 's' END || ', last ' || strftime('%Y-%m-%dT%H:%M:%SZ', x.last, 'unixepoch')"
        " || CASE WHEN x.host IS NULL THEN ': find the device and move it to TLS 1.2, or'"
        " || ' `tlsgate evidence waive ' || x.client || ' --reason R`' ELSE '' END"
        " FROM (SELECT e.client, " CLIENT_HOST_SQL(
            "e.client") " AS host,"
                        "  group_concat(DISTINCT e.protocol) AS protos, sum(e.count) AS n,"
                        "  max(e.last_seen) AS last FROM evidence e"
                        "  WHERE e.server = :server AND e.protocol IN " WIRE_LEGACY_SQL
                        "  AND e.last_seen >= :since AND NOT " EVIDENCE_WAIVED_SQL(
                            "e.client", ":now") "  GROUP BY e.client) x ORDER BY x.client";
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":server"), server, -1,
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":since"), since);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":now"), now);
    struct blocker_walk w = {fn, arg, 0};
    rc = store_each(s, st, "read legacy handshakes", blocker_row, &w);
    if (count)
        *count = w.count;
    return rc;
}

struct count_walk {
    wire_count_fn fn;
    void *arg;
};

static int count_row(sqlite3_stmt *st, void *arg)
{
    struct count_walk *w = arg;
    return w->fn(sqlite3_column_int64(st, 0), (long)sqlite3_column_int64(st, 1), w->arg);
}

int wire_legacy_counts(struct store *s, const char *site, long long since, long long now,
                       wire_count_fn fn, void *arg)
{
    /* Driven by the evidence table (small next to the hosts): its legacy rows in the window,
     * joined to the servers of the site by name. */
    static const char sql[] =
        "SELECT h.id, count(DISTINCT e.client) FROM evidence e JOIN host h ON h.name = e.server"
        " WHERE h.site = :site AND e.protocol IN " WIRE_LEGACY_SQL " AND e.last_seen >= :since"
        " AND NOT " EVIDENCE_WAIVED_SQL("e.client", ":now") " GROUP BY h.id";
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":site"), site, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":since"), since);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":now"), now);
    struct count_walk w = {fn, arg};
    return store_each(s, st, "count legacy handshakes", count_row, &w);
}

/* The count(*) of one of the WIRE_*_SELECT lists for a site: binds the parameters it names
 * (binding a name the list does not use is a no-op). */
static int count_select(struct store *s, const char *sql, const char *site, unsigned mask,
                        long long cutoff, long long probe_since, long long now, bool any,
                        const char *what, long *count)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":site"), site, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":mask"), mask);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":cutoff"), cutoff);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":probe_since"), probe_since);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":now"), now);
    sqlite3_bind_int(st, sqlite3_bind_parameter_index(st, ":any"), any);
    long long n;
    rc = store_one_int(s, st, what, &n);
    *count = (long)n;
    return rc;
}

int wire_restart_pending_count(struct store *s, const char *site, unsigned mask, long long cutoff,
                               long long now, bool any, long *count)
{
    return count_select(s, "SELECT count(*) FROM (" WIRE_RESTART_PENDING_SELECT ")", site, mask,
                        cutoff, 0, now, any, "count restart-pending servers", count);
}

int wire_alarms_each(struct store *s, unsigned mask, long long now, wire_alarm_fn fn, void *arg)
{
    sqlite3_stmt *sites, *st;
    int rc =
        store_prepare(s, "SELECT code FROM site WHERE phase = 'complete' ORDER BY code", &sites);
    if (rc)
        return rc;
    if ((rc = store_prepare(s, WIRE_RESTART_PENDING_SELECT " ORDER BY h.name", &st))) {
        sqlite3_finalize(sites);
        return rc;
    }
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":mask"), mask);
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":now"), now);
    sqlite3_bind_int(st, sqlite3_bind_parameter_index(st, ":any"), 1);
    int r;
    while (!rc && (r = sqlite3_step(sites)) == SQLITE_ROW) {
        const char *site = (const char *)sqlite3_column_text(sites, 0);
        sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":site"), site, -1, SQLITE_STATIC);
        int h;
        while (!rc && (h = sqlite3_step(st)) == SQLITE_ROW)
            rc = fn(site, (const char *)sqlite3_column_text(st, 1),
                    (const char *)sqlite3_column_text(st, 3), arg);
        if (!rc && h != SQLITE_DONE)
            rc = store_sqlite_fail(s, "list the wire alarms");
        sqlite3_reset(st);
    }
    if (!rc && r != SQLITE_DONE)
        rc = store_sqlite_fail(s, "list the sites in complete");
    sqlite3_finalize(st);
    sqlite3_finalize(sites);
    return rc;
}

int wire_not_probed_count(struct store *s, const char *site, unsigned mask, long long cutoff,
                          long long since, long long now, long *count)
{
    return count_select(s, "SELECT count(*) FROM (" WIRE_NOT_PROBED_SELECT ")", site, mask, cutoff,
                        since, now, false, "count site systems not probed", count);
}

int wire_names_clear(struct store *s) { return store_exec(s, "DELETE FROM evidence_name"); }

int wire_name_add(struct store *s, const char *address, const char *host)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "INSERT INTO evidence_name (address, host_id) SELECT ?1, id FROM host"
                           " WHERE name = ?2 ON CONFLICT (address) DO UPDATE SET"
                           " host_id = excluded.host_id",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, host, -1, SQLITE_TRANSIENT);
    if ((rc = store_run(s, st, "write evidence name")))
        return rc;
    if (sqlite3_changes(store_db(s)) == 0)
        return store_fail(s, -ENOENT, "no such host: %s (see `tlsgate inventory list`)", host);
    return 0;
}

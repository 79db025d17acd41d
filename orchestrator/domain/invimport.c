/*
 * invimport.c — the inventory's importer (inventory.h, inv_import): hosts or explicit edges from
 * CSV or a JSON array, validated row by row and written with prepared statements inside the
 * caller's IMMEDIATE transaction. The first bad row stops the import with FILE:LINE:FIELD (CSV)
 * or FILE: element N: FIELD (JSON) and the caller rolls everything back.
 *
 * Hosts are upserted by name (case-insensitive), so re-importing an updated export is the normal
 * way to change the inventory. Verdicts depend on roles (a management point needs .NET strong
 * crypto, a client does not): a host whose roles the import changes and that has a stored report
 * is re-evaluated with its new roles in the same transaction, so no gate or phase decision ever
 * sees a new site system with a client's verdicts. A TEMP trigger notes those hosts while the
 * rows are upserted; a re-import that changes no roles pays only the trigger's WHEN test per row.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "csvread.h"
#include "ingest.h"
#include "inventory.h"
#include "invimport.h"
#include "rules.h"
#include "store.h"

/* One host as read from a row, before it is written. */
struct inv_row {
    const char *name;
    const char *site;
    const char *roles;     /* may be NULL (client) */
    const char *collector; /* may be NULL (NAME:8443) */
    const char *os;        /* may be NULL */
};

struct importer {
    struct store *store;
    struct inv_import *out; /* the caller's: options in, counts and message out */
    const char *path;
    char where[96]; /* "LINE" or "element N", for messages */
    char *err;      /* out->err */
    size_t errsize;
    long long now;
    sqlite3_stmt *site_ins;
    sqlite3_stmt *host_upsert;
    sqlite3_stmt *seen_ins;
    sqlite3_stmt *host_find;
    sqlite3_stmt *edge_ins;
    long rows;
    long long reevaluated; /* stored reports re-evaluated for changed roles */
    bool edges;            /* the file was an edges file */
};

static int imp_fail(struct importer *im, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int imp_fail(struct importer *im, const char *field, const char *fmt, ...)
{
    char why[STORE_ERROR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (field)
        snprintf(im->err, im->errsize, "%s:%s:%s: %s", im->path, im->where, field, why);
    else
        snprintf(im->err, im->errsize, "%s:%s: %s", im->path, im->where, why);
    return -EINVAL;
}

static int imp_sql_fail(struct importer *im, const char *what)
{
    int rc = store_sqlite_fail(im->store, what);
    snprintf(im->err, im->errsize, "%s", store_errmsg(im->store));
    return rc;
}

static void imp_progress(struct importer *im)
{
    if (im->out->progress && im->rows % INV_IMPORT_PROGRESS_EVERY == 0)
        im->out->progress(im->out->progress_ctx, im->rows);
}

/* Why free text is not fit to store (NULL when it is): it must be UTF-8 (shortest forms, no
 * surrogates, at most U+10FFFF), since it is written into JSON and UTF-8 CSV. */
static const char *text_fault(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
        unsigned cp = n == 3 ? c & 0x07 : n == 2 ? c & 0x0f : c & 0x1f;
        if (!n || c > 0xf4)
            return "not UTF-8 (save the file as \"CSV UTF-8\")";
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return "not UTF-8 (save the file as \"CSV UTF-8\")";
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        static const unsigned min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return "not UTF-8 (save the file as \"CSV UTF-8\")";
        p += n + 1;
    }
    return NULL;
}

/* Validates one host row and upserts it. */
static int imp_host(struct importer *im, const struct inv_row *row)
{
    if (!row->name || !*row->name)
        return imp_fail(im, "name", "empty host name");
    if (!inv_valid_fqdn(row->name))
        return imp_fail(im, "name",
                        "'%.80s' is not a host name (FQDN: letters, digits, "
                        "hyphens, dots; labels of 1-63 characters)",
                        row->name);
    if (!row->site || !inv_valid_site(row->site))
        return imp_fail(im, "site", "'%.40s' is not a site code (three letters or digits)",
                        row->site ? row->site : "");
    unsigned roles;
    char bad[80];
    if (inv_roles_parse(row->roles ? row->roles : "", &roles, bad, sizeof(bad)))
        return imp_fail(im, "roles",
                        "unknown role '%s' (known: client, site_server, "
                        "secondary_site_server, site_database, management_point, "
                        "distribution_point, software_update_point, "
                        "reporting_point, sms_provider, cloud_management_gateway, "
                        "console, service_connection_point, enrollment_point, "
                        "enrollment_proxy_point, endpoint_protection_point, "
                        "certificate_registration_point, "
                        "data_warehouse_service_point, state_migration_point, "
                        "asset_intelligence_synchronization_point, or ConfigMgr's "
                        "names such as 'SMS Management Point')",
                        bad);
    char collector[300];
    if (row->collector && *row->collector) {
        if (!inv_valid_collector(row->collector))
            return imp_fail(im, "collector",
                            "'%.80s' is not ADDRESS:PORT (port 1-65535; IPv6 as [ADDR]:PORT)",
                            row->collector);
        snprintf(collector, sizeof(collector), "%s", row->collector);
    } else {
        snprintf(collector, sizeof(collector), "%s:8443", row->name);
    }
    if (row->os && strlen(row->os) > INV_OS_MAX)
        return imp_fail(im, "os", "longer than %d bytes", INV_OS_MAX);
    const char *fault = row->os ? text_fault(row->os) : NULL;
    if (fault)
        return imp_fail(im, "os", "%s", fault);

    char site[4];
    for (int i = 0; i < 4; i++)
        site[i] = (char)(i < 3 ? toupper((unsigned char)row->site[i]) : '\0');

    sqlite3_reset(im->seen_ins);
    sqlite3_bind_text(im->seen_ins, 1, row->name, -1, SQLITE_STATIC);
    int step = sqlite3_step(im->seen_ins);
    if ((step & 0xff) == SQLITE_CONSTRAINT)
        return imp_fail(im, "name", "duplicate host '%s' (names are compared case-insensitively)",
                        row->name);
    if (step != SQLITE_DONE)
        return imp_sql_fail(im, "import");

    sqlite3_reset(im->site_ins);
    sqlite3_bind_text(im->site_ins, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int64(im->site_ins, 2, im->now);
    sqlite3_bind_text(im->site_ins, 3, im->out->user, -1, SQLITE_STATIC);
    if (sqlite3_step(im->site_ins) != SQLITE_DONE)
        return imp_sql_fail(im, "insert site");

    sqlite3_stmt *st = im->host_upsert;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, row->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, site, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, (int)roles);
    sqlite3_bind_text(st, 4, collector, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, row->os ? row->os : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, im->now);
    if (sqlite3_step(st) != SQLITE_DONE)
        return imp_sql_fail(im, "upsert host");
    im->rows++;
    imp_progress(im);
    return 0;
}

static int imp_find_host(struct importer *im, const char *field, const char *name, long long *id)
{
    sqlite3_reset(im->host_find);
    sqlite3_bind_text(im->host_find, 1, name, -1, SQLITE_STATIC);
    int step = sqlite3_step(im->host_find);
    if (step == SQLITE_ROW) {
        *id = sqlite3_column_int64(im->host_find, 0);
        return 0;
    }
    if (step != SQLITE_DONE)
        return imp_sql_fail(im, "find host");
    return imp_fail(im, field, "unknown host '%.80s' (import it with the hosts first)", name);
}

static int imp_edge(struct importer *im, const char *dependent, const char *server,
                    const char *channel)
{
    long long dep_id, srv_id;
    int rc;
    if ((rc = imp_find_host(im, "dependent", dependent, &dep_id)) ||
        (rc = imp_find_host(im, "server", server, &srv_id)))
        return rc;
    if (dep_id == srv_id)
        return imp_fail(im, "server", "a host cannot depend on itself");
    size_t len = strlen(channel);
    if (len == 0 || len > INV_CHANNEL_MAX)
        return imp_fail(im, "channel", "must be 1 to %d characters", INV_CHANNEL_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)channel[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.'))
            return imp_fail(im, "channel", "'%.40s': use letters, digits, '-', '_' or '.'",
                            channel);
    }
    sqlite3_reset(im->edge_ins);
    sqlite3_bind_int64(im->edge_ins, 1, dep_id);
    sqlite3_bind_int64(im->edge_ins, 2, srv_id);
    sqlite3_bind_text(im->edge_ins, 3, channel, -1, SQLITE_STATIC);
    if (sqlite3_step(im->edge_ins) != SQLITE_DONE)
        return imp_sql_fail(im, "insert edge");
    im->rows++;
    return 0;
}

enum { COL_NAME, COL_SITE, COL_ROLES, COL_COLLECTOR, COL_OS, HOST_COLS };
enum { COL_DEPENDENT, COL_SERVER, COL_CHANNEL, EDGE_COLS };
static const char *const host_cols[HOST_COLS] = {"name", "site", "roles", "collector", "os"};
static const char *const edge_cols[EDGE_COLS] = {"dependent", "server", "channel"};

/*
 * Maps header names to column indexes (ConfigMgr's "SiteCode" stands for "site"). Returns how
 * many known columns the header has; names it does not know are appended to `ignored`
 * (", "-separated), and a name that appears twice is reported in *dup (its field, else -1).
 */
static int map_header(struct csvread *r, const char *const *names, int n, int *index, int *dup,
                      char *ignored, size_t ignored_size)
{
    int known = 0;
    *dup = -1;
    ignored[0] = '\0';
    for (int i = 0; i < n; i++)
        index[i] = -1;
    for (size_t f = 0; f < r->nfields; f++) {
        char *h = r->fields[f];
        while (*h == ' ')
            h++;
        size_t len = strlen(h);
        while (len && h[len - 1] == ' ')
            h[--len] = '\0';
        r->fields[f] = h;
        int found = -1;
        for (int i = 0; i < n; i++)
            if (!strcasecmp(h, names[i]) ||
                (!strcasecmp(names[i], "site") && !strcasecmp(h, "sitecode")))
                found = i;
        if (found < 0) {
            size_t used = strlen(ignored);
            snprintf(ignored + used, ignored_size - used, "%s%.60s", used ? ", " : "",
                     *h ? h : "(empty)");
            continue;
        }
        if (index[found] >= 0 && *dup < 0)
            *dup = (int)f;
        index[found] = (int)f;
        known++;
    }
    return known;
}

static int import_csv(struct importer *im, FILE *in)
{
    struct csvread r;
    int rc = csvread_init(&r, in);
    if (rc) {
        snprintf(im->err, im->errsize, "%s: out of memory", im->path);
        return rc;
    }
    if (csvread_detect(&r)) {
        snprintf(im->err, im->errsize, "%s: cannot read ahead: %s", im->path, strerror(errno));
        rc = -EIO;
        goto out;
    }
    rc = csvread_next(&r);
    snprintf(im->where, sizeof(im->where), "%ld", r.line);
    if (rc <= 0) {
        rc = rc ? imp_fail(im, NULL, "%s", r.err)
                : imp_fail(im, NULL,
                           "empty file: expected a "
                           "header row");
        goto out;
    }
    int host_index[HOST_COLS], edge_index[EDGE_COLS], host_dup, edge_dup;
    char host_ignored[512], edge_ignored[512];
    int host_known = map_header(&r, host_cols, HOST_COLS, host_index, &host_dup, host_ignored,
                                sizeof(host_ignored));
    int edge_known = map_header(&r, edge_cols, EDGE_COLS, edge_index, &edge_dup, edge_ignored,
                                sizeof(edge_ignored));
    bool edges = false;
    const char *ignored = host_ignored;
    if (host_known && host_known >= edge_known) {
        if (host_dup >= 0) {
            rc = imp_fail(im, r.fields[host_dup], "column appears twice in the header");
            goto out;
        }
        if (host_index[COL_NAME] < 0 || host_index[COL_SITE] < 0) {
            rc = imp_fail(im, host_index[COL_NAME] < 0 ? "name" : "site",
                          "missing column (a hosts file has the header "
                          "name,site,roles,collector,os; name and site are required)");
            goto out;
        }
    } else if (edge_known) {
        if (edge_dup >= 0) {
            rc = imp_fail(im, r.fields[edge_dup], "column appears twice in the header");
            goto out;
        }
        for (int i = 0; i < EDGE_COLS; i++)
            if (edge_index[i] < 0) {
                rc = imp_fail(im, edge_cols[i],
                              "missing column (an edges file has the header "
                              "dependent,server,channel)");
                goto out;
            }
        edges = true;
        im->edges = true;
        ignored = edge_ignored;
    } else {
        rc = imp_fail(im, NULL,
                      "unknown header: expected name,site,roles,collector,os "
                      "(hosts) or dependent,server,channel (explicit edges)%s",
                      r.delim != ',' ? " (read with ';' or tab as the delimiter)" : "");
        goto out;
    }
    if (ignored[0])
        snprintf(im->out->note, sizeof(im->out->note), "%s: columns ignored (tlsgate reads %s): %s",
                 im->path, edges ? "dependent,server,channel" : "name,site,roles,collector,os",
                 ignored);
    size_t ncols = r.nfields;
    while ((rc = csvread_next(&r)) == 1) {
        snprintf(im->where, sizeof(im->where), "%ld", r.line);
        if (r.nfields != ncols) {
            rc = imp_fail(im, NULL, "%zu fields, the header has %zu", r.nfields, ncols);
            goto out;
        }
        if (edges) {
            rc = imp_edge(im, r.fields[edge_index[COL_DEPENDENT]], r.fields[edge_index[COL_SERVER]],
                          r.fields[edge_index[COL_CHANNEL]]);
        } else {
            struct inv_row row = {0};
            const char **slots[HOST_COLS] = {&row.name, &row.site, &row.roles, &row.collector,
                                             &row.os};
            for (int i = 0; i < HOST_COLS; i++)
                if (host_index[i] >= 0)
                    *slots[i] = r.fields[host_index[i]];
            rc = imp_host(im, &row);
        }
        if (rc)
            goto out;
    }
    if (rc < 0) {
        snprintf(im->where, sizeof(im->where), "%ld", r.line);
        rc = imp_fail(im, NULL, "%s", r.err);
    }
out:
    csvread_release(&r);
    return rc;
}

/* JSON: an array of {name, site, roles (string "a;b" or array), collector, os}. */
static int import_json(struct importer *im, FILE *in)
{
    /* A UTF-8 BOM (Windows PowerShell's "UTF8") is not JSON: step over it. */
    long pos = ftell(in);
    unsigned char bom[3];
    if (fread(bom, 1, 3, in) != 3 || memcmp(bom, "\xEF\xBB\xBF", 3))
        fseek(in, pos, SEEK_SET);
    json_error_t jerr;
    json_t *root = json_loadf(in, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(im->err, im->errsize, "%s:%d:%d: %s", im->path, jerr.line, jerr.column, jerr.text);
        return -EINVAL;
    }
    int rc = 0;
    if (!json_is_array(root)) {
        snprintf(im->err, im->errsize, "%s: expected a JSON array of hosts", im->path);
        rc = -EINVAL;
        goto out;
    }
    size_t i;
    json_t *el;
    json_array_foreach(root, i, el)
    {
        snprintf(im->where, sizeof(im->where), " element %zu", i);
        if (!json_is_object(el)) {
            rc = imp_fail(im, NULL, "expected an object");
            goto out;
        }
        struct inv_row row = {0};
        char roles[512] = "";
        const char *key;
        json_t *v;
        json_object_foreach(el, key, v)
        {
            const char **slot = !strcmp(key, "name")        ? &row.name
                                : !strcmp(key, "site")      ? &row.site
                                : !strcmp(key, "collector") ? &row.collector
                                : !strcmp(key, "os")        ? &row.os
                                                            : NULL;
            if (!strcmp(key, "roles") && json_is_array(v)) {
                size_t j;
                json_t *role;
                json_array_foreach(v, j, role)
                {
                    if (!json_is_string(role) ||
                        strlen(roles) + json_string_length(role) + 2 > sizeof(roles)) {
                        rc = imp_fail(im, "roles", "must be a string or an array of strings");
                        goto out;
                    }
                    if (roles[0])
                        strcat(roles, ";");
                    strcat(roles, json_string_value(role));
                }
                row.roles = roles;
                continue;
            }
            if (!strcmp(key, "roles"))
                slot = &row.roles;
            if (!slot) {
                rc = imp_fail(im, key,
                              "unknown member (known: name, site, roles, collector, "
                              "os)");
                goto out;
            }
            if (!json_is_string(v) && !json_is_null(v)) {
                rc = imp_fail(im, key, "must be a string");
                goto out;
            }
            *slot = json_string_value(v);
        }
        if ((rc = imp_host(im, &row)))
            goto out;
    }
out:
    json_decref(root);
    return rc;
}

/* ---- the diff: what an import or a removal changed (inv_diff_each) ---- */

/* temp.import_diff holds the rows as they were before ('~', '-') or the id of a new one ('+').
 * The triggers that record added and changed hosts exist only while `track` asks for them: an
 * ordinary import of a million unchanged hosts pays nothing for a diff nobody prints. */
static int diff_prepare(struct store *s, bool track)
{
    int rc = store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS import_diff (id INTEGER PRIMARY KEY,"
                           " kind TEXT NOT NULL, name TEXT, site TEXT, roles INTEGER,"
                           " collector TEXT, os TEXT)");
    if (rc || !track)
        return rc;
    return store_exec(s, "CREATE TEMP TRIGGER IF NOT EXISTS import_added_trigger "
                         "AFTER INSERT ON main.host BEGIN "
                         "INSERT OR IGNORE INTO import_diff (id, kind) VALUES (new.id, '+'); END;"
                         "CREATE TEMP TRIGGER IF NOT EXISTS import_changed_trigger "
                         "AFTER UPDATE ON main.host WHEN old.name COLLATE BINARY IS NOT new.name"
                         " OR old.site COLLATE BINARY IS NOT new.site OR old.roles IS NOT"
                         " new.roles OR old.collector IS NOT new.collector OR old.os IS NOT"
                         " new.os BEGIN INSERT OR IGNORE INTO import_diff VALUES (old.id, '~',"
                         " old.name, old.site, old.roles, old.collector, old.os); END");
}

/* Records the hosts selected by `where` (bound: ?1) as removed, then deletes them. */
static int diff_remove(struct store *s, const char *sql, const char *param, long *removed)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    if (param)
        sqlite3_bind_text(st, 1, param, -1, SQLITE_TRANSIENT);
    if ((rc = store_run(s, st, "note removed hosts")))
        return rc;
    long n = (long)sqlite3_changes(store_db(s));
    if ((rc = store_prepare(s,
                            "DELETE FROM host WHERE id IN (SELECT id FROM temp.import_diff"
                            " WHERE kind = '-')",
                            &st)) ||
        (rc = store_run(s, st, "remove hosts")))
        return rc;
    *removed += n;
    return 0;
}

#define GENERATION_KEY "inventory_generation"

int inv_generation(struct store *s, long long *generation)
{
    char *v = NULL;
    int rc = store_meta_get(s, GENERATION_KEY, &v);
    *generation = 0;
    if (rc == -ENOENT)
        return 0;
    if (!rc)
        *generation = strtoll(v, NULL, 10);
    free(v);
    return rc;
}

/* One more change: the daemon reloads its schedule when it sees the counter move. */
static int generation_bump(struct store *s)
{
    long long g;
    int rc = inv_generation(s, &g);
    char v[32];
    snprintf(v, sizeof(v), "%lld", g + 1);
    return rc ? rc : store_meta_set(s, GENERATION_KEY, v);
}

int inv_remove(struct store *s, const char *const *names, size_t n, long *removed)
{
    assert(!sqlite3_get_autocommit(store_db(s)));
    *removed = 0;
    int rc = diff_prepare(s, false);
    sqlite3_stmt *st = NULL;
    if (!rc)
        rc = store_prepare(s,
                           "INSERT OR IGNORE INTO temp.import_diff SELECT id, '-', name, site,"
                           " roles, collector, os FROM host WHERE name = ?1",
                           &st);
    for (size_t i = 0; !rc && i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, names[i], -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = store_sqlite_fail(s, "note removed hosts");
            break;
        }
        if (sqlite3_changes(store_db(s)) == 0) {
            /* Named twice is fine; a name that is not in the inventory is not. */
            sqlite3_stmt *q;
            if ((rc = store_prepare(s,
                                    "SELECT 1 FROM temp.import_diff d JOIN host h ON h.id = "
                                    "d.id WHERE h.name = ?1",
                                    &q)))
                break;
            sqlite3_bind_text(q, 1, names[i], -1, SQLITE_TRANSIENT);
            int step = sqlite3_step(q);
            sqlite3_finalize(q);
            if (step != SQLITE_ROW)
                rc = store_fail(s, -ENOENT,
                                "no such host: %s (see `tlsgate inventory list`); "
                                "nothing was removed",
                                names[i]);
        }
    }
    sqlite3_finalize(st);
    if (!rc)
        rc = store_prepare(s,
                           "DELETE FROM host WHERE id IN (SELECT id FROM temp.import_diff"
                           " WHERE kind = '-')",
                           &st);
    if (!rc)
        rc = store_run(s, st, "remove hosts");
    if (!rc)
        *removed = (long)sqlite3_changes(store_db(s));
    if (!rc && *removed)
        rc = generation_bump(s);
    return rc;
}

static void describe_row(char *buf, size_t size, const char *site, unsigned roles,
                         const char *collector, const char *os)
{
    char r[256];
    inv_roles_format(roles, r, sizeof(r));
    snprintf(buf, size, "site %s, roles %s, collector %s%s%s", site, r, collector,
             os && *os ? ", os " : "", os && *os ? os : "");
}

static void append(char *buf, size_t size, const char *field, const char *from, const char *to)
{
    size_t used = strlen(buf);
    if (used < size)
        snprintf(buf + used, size - used, "%s%s %s -> %s", used ? "; " : "", field,
                 *from ? from : "(empty)", *to ? to : "(empty)");
}

static const char *col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

struct diff_walk {
    inv_change_fn fn;
    void *arg;
};

static int diff_row(sqlite3_stmt *st, void *arg)
{
    struct diff_walk *w = arg;
    /* kind, old name, site, roles, collector, os, new name, site, roles, collector, os */
    const char *kind = col(st, 0);
    char detail[1024] = "";
    struct inv_change c = {.kind = kind[0], .detail = detail};
    if (c.kind == '-' || c.kind == '+') {
        int o = c.kind == '-' ? 1 : 6;
        c.name = col(st, o);
        c.site = col(st, o + 1);
        describe_row(detail, sizeof(detail), c.site, (unsigned)sqlite3_column_int64(st, o + 2),
                     col(st, o + 3), col(st, o + 4));
    } else {
        c.name = col(st, 6);
        c.site = col(st, 7);
        if (strcmp(col(st, 1), col(st, 6)))
            append(detail, sizeof(detail), "name", col(st, 1), col(st, 6));
        if (strcmp(col(st, 2), col(st, 7)))
            append(detail, sizeof(detail), "site", col(st, 2), col(st, 7));
        if (sqlite3_column_int64(st, 3) != sqlite3_column_int64(st, 8)) {
            char a[256], b[256];
            inv_roles_format((unsigned)sqlite3_column_int64(st, 3), a, sizeof(a));
            inv_roles_format((unsigned)sqlite3_column_int64(st, 8), b, sizeof(b));
            append(detail, sizeof(detail), "roles", a, b);
        }
        if (strcmp(col(st, 4), col(st, 9)))
            append(detail, sizeof(detail), "collector", col(st, 4), col(st, 9));
        if (strcmp(col(st, 5), col(st, 10)))
            append(detail, sizeof(detail), "os", col(st, 5), col(st, 10));
    }
    return w->fn(&c, w->arg);
}

int inv_diff_each(struct store *s, inv_change_fn fn, void *arg)
{
    int rc = diff_prepare(s, false); /* a command that changed nothing has no table yet */
    sqlite3_stmt *st;
    if (rc || (rc = store_prepare(s,
                                  "SELECT d.kind, d.name, d.site, d.roles, d.collector, d.os,"
                                  " h.name, h.site, h.roles, h.collector, h.os"
                                  " FROM temp.import_diff d LEFT JOIN main.host h ON h.id = d.id"
                                  " ORDER BY CASE d.kind WHEN '+' THEN 0 WHEN '~' THEN 1 ELSE 2"
                                  " END, coalesce(h.name, d.name) COLLATE NOCASE",
                                  &st)))
        return rc;
    struct diff_walk w = {fn, arg};
    return store_each(s, st, "read the diff", diff_row, &w);
}

/* --prune --site S: the hosts of S that the file did not list go. */
static int imp_prune(struct importer *im)
{
    struct store *s = im->store;
    const char *given = im->out->prune_site;
    if (!inv_valid_site(given)) {
        snprintf(im->err, im->errsize,
                 "--site '%.40s' is not a site code (three letters or "
                 "digits)",
                 given);
        return -EINVAL;
    }
    char site[4];
    for (int i = 0; i < 4; i++)
        site[i] = (char)(i < 3 ? toupper((unsigned char)given[i]) : '\0');
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT count(*) FROM host WHERE site = ?1 AND name IN"
                           " (SELECT name FROM temp.import_seen)",
                           &st);
    if (rc) {
        snprintf(im->err, im->errsize, "%s", store_errmsg(s));
        return rc;
    }
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    long long listed = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (listed < 0)
        return imp_sql_fail(im, "count the site's hosts");
    if (listed == 0) {
        snprintf(im->err, im->errsize,
                 "%s: no host of site %s in the file: --prune --site %s "
                 "would remove every host of the site (to do that, use `tlsgate inventory "
                 "remove`)",
                 im->path, site, site);
        return -EINVAL;
    }
    rc = diff_remove(s,
                     "INSERT OR IGNORE INTO temp.import_diff SELECT id, '-', name, site,"
                     " roles, collector, os FROM host WHERE site = ?1 AND name NOT IN"
                     " (SELECT name FROM temp.import_seen)",
                     site, &im->out->removed);
    if (rc)
        snprintf(im->err, im->errsize, "%s", store_errmsg(s));
    return rc;
}

static int imp_prepare(struct importer *im)
{
    struct store *s = im->store;
    int rc;
    if ((rc = diff_prepare(s, im->out->track)) ||
        (rc = store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS import_seen "
                            "(name TEXT PRIMARY KEY COLLATE NOCASE) WITHOUT ROWID")) ||
        (rc = store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS import_roles_changed "
                            "(id INTEGER PRIMARY KEY)")) ||
        (rc = store_exec(s, "CREATE TEMP TRIGGER IF NOT EXISTS import_roles_trigger "
                            "AFTER UPDATE OF roles ON host WHEN old.roles != new.roles BEGIN "
                            "INSERT OR IGNORE INTO import_roles_changed (id) "
                            "VALUES (new.id); END")) ||
        (rc = store_prepare(s,
                            "INSERT INTO site (code, entered_at, entered_by) VALUES (?, ?, ?) "
                            "ON CONFLICT (code) DO NOTHING",
                            &im->site_ins)) ||
        (rc = store_prepare(s,
                            "INSERT INTO host (name, site, roles, collector, os, added_at, "
                            "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) "
                            "ON CONFLICT (name) DO UPDATE SET name = excluded.name, "
                            "site = excluded.site, roles = excluded.roles, "
                            "collector = excluded.collector, os = excluded.os, "
                            "updated_at = excluded.updated_at",
                            &im->host_upsert)) ||
        (rc = store_prepare(s, "INSERT INTO temp.import_seen (name) VALUES (?)", &im->seen_ins)) ||
        (rc = store_prepare(s, "SELECT id FROM host WHERE name = ?", &im->host_find)) ||
        (rc = store_prepare(s,
                            "INSERT INTO edge (dependent, server, channel) VALUES (?, ?, ?) "
                            "ON CONFLICT DO NOTHING",
                            &im->edge_ins)))
        snprintf(im->err, im->errsize, "%s", store_errmsg(s));
    return rc;
}

static void imp_finalize(struct importer *im)
{
    sqlite3_finalize(im->site_ins);
    sqlite3_finalize(im->host_upsert);
    sqlite3_finalize(im->seen_ins);
    sqlite3_finalize(im->host_find);
    sqlite3_finalize(im->edge_ins);
}

static long long count_hosts(struct store *s)
{
    sqlite3_stmt *st;
    long long n = -1;
    if (store_prepare(s, "SELECT count(*) FROM host", &st) == 0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    return n;
}

/* A UTF-16 byte order mark (what PowerShell's `>` writes) at the start: not a text we read. */
static bool starts_utf16(FILE *in)
{
    long pos = ftell(in);
    int c1 = getc(in), c2 = getc(in);
    fseek(in, pos, SEEK_SET);
    return (c1 == 0xFF && c2 == 0xFE) || (c1 == 0xFE && c2 == 0xFF);
}

/* First byte that is not white space or a BOM: '[' or '{' (no header name starts so) means
 * JSON; a lone object is then refused as not being an array. */
static bool looks_like_json(FILE *in)
{
    int c;
    long pos = ftell(in);
    while ((c = getc(in)) != EOF &&
           (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0xEF || c == 0xBB || c == 0xBF))
        ;
    fseek(in, pos, SEEK_SET);
    return c == '[' || c == '{';
}

struct id_list {
    struct store *s;
    long long *ids;
    size_t n, cap;
};

static int add_id(sqlite3_stmt *st, void *arg)
{
    struct id_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        long long *more = realloc(l->ids, cap * sizeof(*more));
        if (!more)
            return store_fail(l->s, -ENOMEM, "re-evaluation after the import: out of memory");
        l->ids = more;
        l->cap = cap;
    }
    l->ids[l->n++] = sqlite3_column_int64(st, 0);
    return 0;
}

/* Re-evaluates the stored reports of the hosts whose roles the import changed, with the active
 * catalog, in the import's transaction. */
static int imp_reevaluate(struct importer *im)
{
    struct store *s = im->store;
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s,
                           "SELECT c.id FROM temp.import_roles_changed c "
                           "JOIN report r ON r.host_id = c.id ORDER BY c.id",
                           &st);
    struct id_list l = {s, NULL, 0, 0};
    if (!rc)
        rc = store_each(s, st, "hosts with changed roles", add_id, &l);
    long long *ids = l.ids;
    size_t n = l.n;
    struct rules_catalog *c = NULL;
    long long bad = 0;
    if (!rc && n && !(rc = rules_load_active(s, &c)))
        rc = ingest_reevaluate_hosts(s, c, ids, n, &im->reevaluated, &bad);
    if (rc)
        snprintf(im->err, im->errsize, "%s", store_errmsg(s));
    rules_free(c);
    free(ids);
    return rc;
}

int inv_import(struct store *s, FILE *in, struct inv_import *out)
{
    /* The before/after counts and every check read inside the caller's write transaction. */
    assert(!sqlite3_get_autocommit(store_db(s)));
    struct importer im = {.store = s,
                          .out = out,
                          .path = out->path,
                          .err = out->err,
                          .errsize = sizeof(out->err),
                          .now = out->now};
    out->err[0] = '\0';
    out->note[0] = '\0';
    out->removed = 0;
    long long before = count_hosts(s);
    out->hosts_before = out->hosts_after = before;
    bool json = looks_like_json(in);
    int rc;
    if (starts_utf16(in)) {
        snprintf(im.err, im.errsize,
                 "%s: UTF-16 text: save it as UTF-8 (PowerShell: "
                 "Out-File -Encoding utf8; Excel: CSV UTF-8)",
                 im.path);
        rc = -EINVAL;
    } else if (!(rc = imp_prepare(&im))) {
        rc = json ? import_json(&im, in) : import_csv(&im, in);
    }
    if (!rc && ferror(in)) {
        snprintf(im.err, im.errsize, "%s: read error: %s", im.path, strerror(errno));
        rc = -EIO;
    }
    imp_finalize(&im);
    if (!rc && out->prune_site && im.edges) {
        snprintf(im.err, im.errsize, "%s: --prune applies to a hosts file, not explicit edges",
                 im.path);
        rc = -EINVAL;
    }
    if (!rc && out->prune_site)
        rc = imp_prune(&im);
    if (!rc)
        rc = imp_reevaluate(&im);
    if (!rc && (rc = generation_bump(s)))
        snprintf(im.err, im.errsize, "%s", store_errmsg(s));
    out->rows = im.rows;
    out->edges = im.edges;
    out->reevaluated = im.reevaluated;
    if (!rc)
        out->hosts_after = count_hosts(s);
    return rc;
}

void inv_import_end(struct store *s)
{
    store_exec(s, "DROP TABLE IF EXISTS temp.import_seen");
    store_exec(s, "DROP TRIGGER IF EXISTS temp.import_roles_trigger");
    store_exec(s, "DROP TABLE IF EXISTS temp.import_roles_changed");
    store_exec(s, "DROP TRIGGER IF EXISTS temp.import_added_trigger");
    store_exec(s, "DROP TRIGGER IF EXISTS temp.import_changed_trigger");
    store_exec(s, "DROP TABLE IF EXISTS temp.import_diff");
}

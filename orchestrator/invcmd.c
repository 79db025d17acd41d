/*
 * invcmd.c — `tlsgate inventory import|list|show|deps`.
 *
 * An import is all-or-nothing: every row is validated and written inside one IMMEDIATE
 * transaction; the first bad row rolls everything back and is named as FILE:LINE:FIELD (CSV) or
 * FILE: element N: FIELD (JSON), exit 3. Hosts are upserted by name (case-insensitive), so
 * re-importing an updated export is the normal way to change the inventory.
 *
 * Verdicts depend on roles (a management point needs .NET strong crypto, a client does not): a
 * host whose roles an import changes and that has a stored report is re-evaluated with its new
 * roles in the import's transaction, so no gate or phase decision ever sees a new site system
 * with a client's verdicts. A TEMP trigger notes those hosts while the rows are upserted; a
 * re-import that changes no roles pays only the trigger's WHEN test per row.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "csvread.h"
#include "gate.h"
#include "hoststate.h"
#include "ingest.h"
#include "inventory.h"
#include "rules.h"
#include "store.h"

#define OS_MAX 128
#define CHANNEL_MAX 32

/* ---------------------------------------------------------------------------------------- */
/* Import                                                                                   */

/* One host as read from a row, before it is written. */
struct inv_row {
    const char *name;
    const char *site;
    const char *roles;     /* may be NULL (client) */
    const char *collector; /* may be NULL (NAME:8443) */
    const char *os;        /* may be NULL */
};

struct importer {
    struct cli *cli;
    struct store *store;
    const char *path;
    char where[96];          /* "LINE" or "element N", for messages */
    char err[640];
    long long now;
    sqlite3_stmt *site_ins;
    sqlite3_stmt *host_upsert;
    sqlite3_stmt *seen_ins;
    sqlite3_stmt *host_find;
    sqlite3_stmt *edge_ins;
    long rows;
    long long reevaluated;   /* stored reports re-evaluated for changed roles */
    bool edges;              /* the file was an edges file */
    bool progress;           /* stderr is a terminal */
};

static int imp_fail(struct importer *im, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int imp_fail(struct importer *im, const char *field, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (field)
        snprintf(im->err, sizeof(im->err), "%s:%s:%s: %s", im->path, im->where, field, why);
    else
        snprintf(im->err, sizeof(im->err), "%s:%s: %s", im->path, im->where, why);
    return -EINVAL;
}

static int imp_sql_fail(struct importer *im, const char *what)
{
    int rc = store_sqlite_fail(im->store, what);
    snprintf(im->err, sizeof(im->err), "%s", store_errmsg(im->store));
    return rc;
}

static void imp_progress(struct importer *im)
{
    if (im->progress && im->rows % 100000 == 0)
        fprintf(stderr, "\rtlsgate: importing %s: %ld rows", im->path, im->rows);
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
        return imp_fail(im, "name", "'%.80s' is not a host name (FQDN: letters, digits, "
                                    "hyphens, dots; labels of 1-63 characters)", row->name);
    if (!row->site || !inv_valid_site(row->site))
        return imp_fail(im, "site", "'%.40s' is not a site code (three letters or digits)",
                        row->site ? row->site : "");
    unsigned roles;
    char bad[80];
    if (inv_roles_parse(row->roles ? row->roles : "", &roles, bad, sizeof(bad)))
        return imp_fail(im, "roles", "unknown role '%s' (known: client, site_server, "
                                     "secondary_site_server, site_database, management_point, "
                                     "distribution_point, software_update_point, "
                                     "reporting_point, sms_provider, cloud_management_gateway, "
                                     "console, service_connection_point, enrollment_point, "
                                     "enrollment_proxy_point, endpoint_protection_point, "
                                     "certificate_registration_point, "
                                     "data_warehouse_service_point, state_migration_point, "
                                     "asset_intelligence_synchronization_point, or ConfigMgr's "
                                     "names such as 'SMS Management Point')", bad);
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
    if (row->os && strlen(row->os) > OS_MAX)
        return imp_fail(im, "os", "longer than %d bytes", OS_MAX);
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
    sqlite3_bind_text(im->site_ins, 3, cli_user(), -1, SQLITE_STATIC);
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

static int imp_find_host(struct importer *im, const char *field, const char *name,
                         long long *id)
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
    if (len == 0 || len > CHANNEL_MAX)
        return imp_fail(im, "channel", "must be 1 to %d characters", CHANNEL_MAX);
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

/* Maps header names to column indexes; returns the number of known columns or -EINVAL. */
static int map_header(struct importer *im, struct csvread *r, const char *const *names, int n,
                      int *index)
{
    for (int i = 0; i < n; i++)
        index[i] = -1;
    for (size_t f = 0; f < r->nfields; f++) {
        char *h = r->fields[f];
        while (*h == ' ')
            h++;
        size_t len = strlen(h);
        while (len && h[len - 1] == ' ')
            h[--len] = '\0';
        int found = -1;
        for (int i = 0; i < n; i++)
            if (!strcasecmp(h, names[i]))
                found = i;
        if (found < 0)
            return -EINVAL;
        if (index[found] >= 0)
            return imp_fail(im, h, "column appears twice in the header");
        index[found] = (int)f;
    }
    return 0;
}

static int import_csv(struct importer *im, FILE *in)
{
    struct csvread r;
    int rc = csvread_init(&r, in);
    if (rc) {
        snprintf(im->err, sizeof(im->err), "%s: out of memory", im->path);
        return rc;
    }
    rc = csvread_next(&r);
    snprintf(im->where, sizeof(im->where), "%ld", r.line);
    if (rc <= 0) {
        rc = rc ? imp_fail(im, NULL, "%s", r.err) : imp_fail(im, NULL, "empty file: expected a "
                                                                       "header row");
        goto out;
    }
    int host_index[HOST_COLS], edge_index[EDGE_COLS];
    bool edges = false;
    if (map_header(im, &r, host_cols, HOST_COLS, host_index) == 0) {
        if (host_index[COL_NAME] < 0 || host_index[COL_SITE] < 0) {
            rc = imp_fail(im, host_index[COL_NAME] < 0 ? "name" : "site",
                          "missing column (a hosts file has the header "
                          "name,site,roles,collector,os; name and site are required)");
            goto out;
        }
    } else if (map_header(im, &r, edge_cols, EDGE_COLS, edge_index) == 0) {
        for (int i = 0; i < EDGE_COLS; i++)
            if (edge_index[i] < 0) {
                rc = imp_fail(im, edge_cols[i], "missing column (an edges file has the header "
                                                "dependent,server,channel)");
                goto out;
            }
        edges = true;
        im->edges = true;
    } else {
        if (im->err[0])
            rc = -EINVAL;
        else
            rc = imp_fail(im, NULL, "unknown header: expected name,site,roles,collector,os "
                                    "(hosts) or dependent,server,channel (explicit edges)");
        goto out;
    }
    size_t ncols = r.nfields;
    while ((rc = csvread_next(&r)) == 1) {
        snprintf(im->where, sizeof(im->where), "%ld", r.line);
        if (r.nfields != ncols) {
            rc = imp_fail(im, NULL, "%zu fields, the header has %zu", r.nfields, ncols);
            goto out;
        }
        if (edges) {
            rc = imp_edge(im, r.fields[edge_index[COL_DEPENDENT]],
                          r.fields[edge_index[COL_SERVER]], r.fields[edge_index[COL_CHANNEL]]);
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
        snprintf(im->err, sizeof(im->err), "%s:%d:%d: %s", im->path, jerr.line, jerr.column,
                 jerr.text);
        return -EINVAL;
    }
    int rc = 0;
    if (!json_is_array(root)) {
        snprintf(im->err, sizeof(im->err), "%s: expected a JSON array of hosts", im->path);
        rc = -EINVAL;
        goto out;
    }
    size_t i;
    json_t *el;
    json_array_foreach(root, i, el) {
        snprintf(im->where, sizeof(im->where), " element %zu", i);
        if (!json_is_object(el)) {
            rc = imp_fail(im, NULL, "expected an object");
            goto out;
        }
        struct inv_row row = {0};
        char roles[512] = "";
        const char *key;
        json_t *v;
        json_object_foreach(el, key, v) {
            const char **slot = !strcmp(key, "name")        ? &row.name
                                : !strcmp(key, "site")      ? &row.site
                                : !strcmp(key, "collector") ? &row.collector
                                : !strcmp(key, "os")        ? &row.os
                                                            : NULL;
            if (!strcmp(key, "roles") && json_is_array(v)) {
                size_t j;
                json_t *role;
                json_array_foreach(v, j, role) {
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
                rc = imp_fail(im, key, "unknown member (known: name, site, roles, collector, "
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

static int imp_prepare(struct importer *im)
{
    struct store *s = im->store;
    int rc;
    if ((rc = store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS import_seen "
                            "(name TEXT PRIMARY KEY COLLATE NOCASE) WITHOUT ROWID")) ||
        (rc = store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS import_roles_changed "
                            "(id INTEGER PRIMARY KEY)")) ||
        (rc = store_exec(s, "CREATE TEMP TRIGGER IF NOT EXISTS import_roles_trigger "
                            "AFTER UPDATE OF roles ON host WHEN old.roles != new.roles BEGIN "
                            "INSERT OR IGNORE INTO import_roles_changed (id) "
                            "VALUES (new.id); END")) ||
        (rc = store_prepare(s, "INSERT INTO site (code, entered_at, entered_by) VALUES (?, ?, ?) "
                               "ON CONFLICT (code) DO NOTHING", &im->site_ins)) ||
        (rc = store_prepare(s, "INSERT INTO host (name, site, roles, collector, os, added_at, "
                               "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) "
                               "ON CONFLICT (name) DO UPDATE SET name = excluded.name, "
                               "site = excluded.site, roles = excluded.roles, "
                               "collector = excluded.collector, os = excluded.os, "
                               "updated_at = excluded.updated_at", &im->host_upsert)) ||
        (rc = store_prepare(s, "INSERT INTO temp.import_seen (name) VALUES (?)", &im->seen_ins)) ||
        (rc = store_prepare(s, "SELECT id FROM host WHERE name = ?", &im->host_find)) ||
        (rc = store_prepare(s, "INSERT INTO edge (dependent, server, channel) VALUES (?, ?, ?) "
                               "ON CONFLICT DO NOTHING", &im->edge_ins)))
        snprintf(im->err, sizeof(im->err), "%s", store_errmsg(s));
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
    while ((c = getc(in)) != EOF && (c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
                                     c == 0xEF || c == 0xBB || c == 0xBF))
        ;
    fseek(in, pos, SEEK_SET);
    return c == '[' || c == '{';
}

/* Re-evaluates the stored reports of the hosts whose roles the import changed, with the active
 * catalog, in the import's transaction. */
static int imp_reevaluate(struct importer *im)
{
    struct store *s = im->store;
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, "SELECT c.id FROM temp.import_roles_changed c "
                              "JOIN report r ON r.host_id = c.id ORDER BY c.id", &st);
    long long *ids = NULL;
    size_t n = 0, cap = 0;
    int step = SQLITE_DONE;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            long long *more = realloc(ids, cap * sizeof(*ids));
            if (!more) {
                rc = store_fail(s, -ENOMEM, "re-evaluation after the import: out of memory");
                break;
            }
            ids = more;
        }
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    if (!rc && step != SQLITE_DONE)
        rc = store_sqlite_fail(s, "hosts with changed roles");
    sqlite3_finalize(st);
    struct rules_catalog *c = NULL;
    long long bad = 0;
    if (!rc && n && !(rc = rules_load_active(s, &c)))
        rc = ingest_reevaluate_hosts(s, c, ids, n, &im->reevaluated, &bad, im->err,
                                     sizeof(im->err));
    else if (rc)
        snprintf(im->err, sizeof(im->err), "%s", store_errmsg(s));
    rules_free(c);
    free(ids);
    return rc;
}

/* Telling CSV from JSON reads ahead and seeks back: a FIFO or pipe (`<(...)`, /dev/stdin) is
 * first copied to an unnamed temp file. Returns the stream to read (`in` itself when it can be
 * sought), or NULL with the message printed and `in` closed. */
static FILE *seekable_input(FILE *in, const char *path)
{
    if (ftell(in) >= 0)
        return in;
    FILE *copy = tmpfile();
    if (!copy) {
        cli_error("%s: cannot make a temp file to read it into: %s", path, strerror(errno));
        fclose(in);
        return NULL;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, copy) != n)
            break;
    bool bad = ferror(in) || ferror(copy) || fflush(copy) || fseek(copy, 0, SEEK_SET);
    if (bad)
        cli_error("%s: cannot read it into a temp file: %s", path, strerror(errno));
    fclose(in);
    if (bad) {
        fclose(copy);
        return NULL;
    }
    return copy;
}

static int inventory_import(struct cli *cli, const char *path)
{
    FILE *in = fopen(path, "rb");
    if (!in) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        return EXIT_BADINPUT;
    }
    struct stat sb;
    if (fstat(fileno(in), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        cli_error("%s: cannot open: it is a folder, not a file", path);
        fclose(in);
        return EXIT_BADINPUT;
    }
    if (!(in = seekable_input(in, path)))
        return EXIT_SYSTEM;
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s) {
        fclose(in);
        return code;
    }
    struct importer im = {.cli = cli, .store = s, .path = path, .now = cli_now(),
                          .progress = isatty(2)};
    int rc = store_begin(s, true);
    if (rc) {
        cli_error("%s", store_errmsg(s));
        fclose(in);
        return EXIT_SYSTEM;
    }
    /* Counted inside the write transaction, so another import cannot slip in between. */
    long long before = count_hosts(s), after = before;
    bool json = looks_like_json(in);
    if (starts_utf16(in)) {
        snprintf(im.err, sizeof(im.err), "%s: UTF-16 text: save it as UTF-8 (PowerShell: "
                 "Out-File -Encoding utf8; Excel: CSV UTF-8)", path);
        rc = -EINVAL;
    } else if (!(rc = imp_prepare(&im))) {
        rc = json ? import_json(&im, in) : import_csv(&im, in);
    }
    if (!rc && ferror(in)) {
        snprintf(im.err, sizeof(im.err), "%s: read error: %s", path, strerror(errno));
        rc = -EIO;
    }
    fclose(in);
    imp_finalize(&im);
    if (!rc)
        rc = imp_reevaluate(&im);
    if (im.progress && im.rows >= 100000)
        fputc('\n', stderr);
    if (!rc) {
        after = count_hosts(s);
        char outcome[600];
        if (im.reevaluated)
            snprintf(outcome, sizeof(outcome), "ok: %ld rows from %s, %lld reports "
                     "re-evaluated for changed roles", im.rows, path, im.reevaluated);
        else
            snprintf(outcome, sizeof(outcome), "ok: %ld rows from %s", im.rows, path);
        if ((rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
            snprintf(im.err, sizeof(im.err), "%s", store_errmsg(s));
    }
    store_exec(s, "DROP TABLE IF EXISTS temp.import_seen");
    store_exec(s, "DROP TRIGGER IF EXISTS temp.import_roles_trigger");
    store_exec(s, "DROP TABLE IF EXISTS temp.import_roles_changed");
    if (rc) {
        store_rollback(s);
        cli_error("%s", im.err);
        cli_error("nothing was imported from %s", path);
        if (rc == -EINVAL) {
            /* A refused file is audited too, outside the rolled-back transaction. */
            char outcome[800];
            snprintf(outcome, sizeof(outcome), "refused: %s", im.err);
            cli_audit(cli, outcome);
            return EXIT_BADINPUT;
        }
        return EXIT_SYSTEM;
    }
    if (im.edges)
        printf("%s: %ld explicit edges imported\n", path, im.rows);
    else
        printf("%s: %ld hosts imported (%lld new, %lld updated)\n", path, im.rows,
               after - before, (long long)im.rows - (after - before));
    if (im.reevaluated)
        printf("%s: %lld stored reports re-evaluated for changed roles\n", path,
               im.reevaluated);
    return EXIT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading                                                                                  */

static long long stale_cutoff(struct cli *cli) { return cli_now() - cli->config.stale_after; }

static int inventory_list(struct cli *cli, const char *site)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    sqlite3_stmt *st;
    if (site) {
        /* An unknown site is bad input, not a site without hosts. */
        if (store_prepare(s, "SELECT 1 FROM site WHERE code = ?", &st)) {
            cli_error("%s", store_errmsg(s));
            return EXIT_SYSTEM;
        }
        sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            store_sqlite_fail(s, "look up the site");
        sqlite3_finalize(st);
        if (step == SQLITE_DONE) {
            cli_error("inventory list: no such site: %s", site);
            return EXIT_BADINPUT;
        }
        if (step != SQLITE_ROW) {
            cli_error("%s", store_errmsg(s));
            return EXIT_SYSTEM;
        }
    }
    if (store_prepare(s, "SELECT h.name, h.site, h.roles, h.collector, h.os, "
                         HOSTSTATE_SQL("r", "?1") ", " GATE_WAIVER_ACTIVE_SQL("w", "?3")
                         " FROM host h LEFT JOIN report r ON r.host_id = h.id "
                         "LEFT JOIN waiver w ON w.host_id = h.id "
                         "WHERE ?2 IS NULL OR h.site = ?2 ORDER BY h.site, h.name", &st)) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    sqlite3_bind_int64(st, 1, stale_cutoff(cli));
    sqlite3_bind_int64(st, 3, cli_now());
    if (site)
        sqlite3_bind_text(st, 2, site, -1, SQLITE_STATIC);
    long n = 0;
    int step;
    if (cli->json)
        fputs("[", stdout);
    else
        printf("%-40s %-4s %-9s %-40s %s\n", "NAME", "SITE", "STATE", "ROLES", "COLLECTOR");
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        char roles[256];
        inv_roles_format((unsigned)sqlite3_column_int(st, 2), roles, sizeof(roles));
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *hsite = (const char *)sqlite3_column_text(st, 1);
        const char *collector = (const char *)sqlite3_column_text(st, 3);
        const char *os = (const char *)sqlite3_column_text(st, 4);
        const char *state = (const char *)sqlite3_column_text(st, 5);
        bool waived = sqlite3_column_int(st, 6) != 0;
        if (cli->json) {
            fputs(n ? ",\n {\"name\": " : "\n {\"name\": ", stdout);
            cli_json_string(stdout, name);
            fputs(", \"site\": ", stdout);
            cli_json_string(stdout, hsite);
            fputs(", \"roles\": ", stdout);
            cli_json_string(stdout, roles);
            fputs(", \"collector\": ", stdout);
            cli_json_string(stdout, collector);
            fputs(", \"os\": ", stdout);
            cli_json_string(stdout, os);
            fputs(", \"state\": ", stdout);
            cli_json_string(stdout, state);
            printf(", \"waived\": %s}", waived ? "true" : "false");
        } else {
            printf("%-40s %-4s %-9s %-40s %s%s\n", name, hsite, state, roles, collector,
                   waived ? "  (waived)" : "");
        }
        n++;
    }
    if (cli->json)
        fputs(n ? "\n]\n" : "]\n", stdout);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        cli_error("%s", sqlite3_errmsg(store_db(s)));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}

struct host_info {
    long long id;
    char name[256];
    char site[8];
    unsigned roles;
    char collector[300];
    char os[OS_MAX + 1];
    long long added_at, updated_at;
    char state[16];
    long long collected_at; /* 0 when never reported */
};

/* Looks a host up by name (case-insensitive). Returns EXIT_OK, or prints and returns 3 / 4. */
static int find_host(struct cli *cli, struct store *s, const char *name, struct host_info *h)
{
    sqlite3_stmt *st;
    if (store_prepare(s, "SELECT h.id, h.name, h.site, h.roles, h.collector, h.os, h.added_at, "
                         "h.updated_at, " HOSTSTATE_SQL("r", "?2") ", r.collected_at "
                         "FROM host h LEFT JOIN report r ON r.host_id = h.id WHERE h.name = ?1",
                      &st)) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, stale_cutoff(cli));
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        if (step == SQLITE_DONE)
            cli_error("unknown host '%s' (see `tlsgate inventory list`)", name);
        else
            cli_error("%s", sqlite3_errmsg(store_db(s)));
        sqlite3_finalize(st);
        return step == SQLITE_DONE ? EXIT_BADINPUT : EXIT_SYSTEM;
    }
    h->id = sqlite3_column_int64(st, 0);
    snprintf(h->name, sizeof(h->name), "%s", sqlite3_column_text(st, 1));
    snprintf(h->site, sizeof(h->site), "%s", sqlite3_column_text(st, 2));
    h->roles = (unsigned)sqlite3_column_int(st, 3);
    snprintf(h->collector, sizeof(h->collector), "%s", sqlite3_column_text(st, 4));
    snprintf(h->os, sizeof(h->os), "%s", sqlite3_column_text(st, 5));
    h->added_at = sqlite3_column_int64(st, 6);
    h->updated_at = sqlite3_column_int64(st, 7);
    snprintf(h->state, sizeof(h->state), "%s", sqlite3_column_text(st, 8));
    h->collected_at = sqlite3_column_int64(st, 9);
    sqlite3_finalize(st);
    return EXIT_OK;
}

/*
 * Calls `fn` for every dependency of host `h` in one direction: with `dependents` false, the
 * servers h depends on; with true, the hosts that depend on h. Derived edges first (by rule in
 * inv_derived order, then name), then explicit ones. Returns 0 or an errno-style code.
 */
typedef void (*dep_fn)(void *ctx, const char *host, const char *channel, bool derived);

static int walk_deps(struct store *s, const struct host_info *h, bool dependents, dep_fn fn,
                     void *ctx)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT name FROM host WHERE site = ?1 AND (roles & ?2) != 0 "
                              "AND id != ?3 ORDER BY name", &st);
    if (rc)
        return rc;
    for (size_t i = 0; i < inv_derived_count; i++) {
        const struct inv_derived_edge *e = &inv_derived[i];
        unsigned mine = dependents ? e->server_role : e->dependent_roles;
        unsigned theirs = dependents ? e->dependent_roles : e->server_role;
        if (!(h->roles & mine))
            continue;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, h->site, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, (int)theirs);
        sqlite3_bind_int64(st, 3, h->id);
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW)
            fn(ctx, (const char *)sqlite3_column_text(st, 0), e->channel, true);
        if (step != SQLITE_DONE) {
            rc = store_sqlite_fail(s, "derived edges");
            break;
        }
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;
    const char *sql = dependents
                          ? "SELECT h.name, e.channel FROM edge e JOIN host h ON h.id = e.dependent "
                            "WHERE e.server = ? ORDER BY h.name, e.channel"
                          : "SELECT h.name, e.channel FROM edge e JOIN host h ON h.id = e.server "
                            "WHERE e.dependent = ? ORDER BY h.name, e.channel";
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    sqlite3_bind_int64(st, 1, h->id);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        fn(ctx, (const char *)sqlite3_column_text(st, 0),
           (const char *)sqlite3_column_text(st, 1), false);
    if (step != SQLITE_DONE)
        rc = store_sqlite_fail(s, "explicit edges");
    sqlite3_finalize(st);
    return rc;
}

struct dep_out {
    bool json;
    long n;
};

static void print_dep(void *ctx, const char *host, const char *channel, bool derived)
{
    struct dep_out *o = ctx;
    if (o->json) {
        fputs(o->n ? ",\n    {\"host\": " : "\n    {\"host\": ", stdout);
        cli_json_string(stdout, host);
        fputs(", \"channel\": ", stdout);
        cli_json_string(stdout, channel);
        printf(", \"kind\": \"%s\"}", derived ? "derived" : "explicit");
    } else {
        printf("  %-40s %-14s %s\n", host, channel, derived ? "derived" : "explicit");
    }
    o->n++;
}

static void count_dep(void *ctx, const char *host, const char *channel, bool derived)
{
    (void)host;
    (void)channel;
    (void)derived;
    ((struct dep_out *)ctx)->n++;
}

static int inventory_deps(struct cli *cli, const char *name)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct host_info h;
    if ((code = find_host(cli, s, name, &h)) != EXIT_OK)
        return code;
    struct dep_out up = {.json = cli->json}, down = {.json = cli->json};
    int rc;
    if (cli->json) {
        fputs("{\"host\": ", stdout);
        cli_json_string(stdout, h.name);
        fputs(",\n  \"depends_on\": [", stdout);
        rc = walk_deps(s, &h, false, print_dep, &up);
        fputs(up.n ? "\n  ],\n  \"dependents\": [" : "],\n  \"dependents\": [", stdout);
        if (!rc)
            rc = walk_deps(s, &h, true, print_dep, &down);
        fputs(down.n ? "\n  ]}\n" : "]}\n", stdout);
    } else {
        printf("%s depends on:\n", h.name);
        rc = walk_deps(s, &h, false, print_dep, &up);
        if (!up.n)
            printf("  (nothing)\n");
        printf("depend on %s:\n", h.name);
        if (!rc)
            rc = walk_deps(s, &h, true, print_dep, &down);
        if (!down.n)
            printf("  (nothing)\n");
    }
    if (rc) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}

static int inventory_show(struct cli *cli, const char *name)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct host_info h;
    if ((code = find_host(cli, s, name, &h)) != EXIT_OK)
        return code;
    struct dep_out up = {0}, down = {0};
    if (walk_deps(s, &h, false, count_dep, &up) || walk_deps(s, &h, true, count_dep, &down)) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    char roles[256], added[32], updated[32], reported[32];
    inv_roles_format(h.roles, roles, sizeof(roles));
    cli_iso8601(h.added_at, added, sizeof(added));
    cli_iso8601(h.updated_at, updated, sizeof(updated));
    if (h.collected_at)
        cli_iso8601(h.collected_at, reported, sizeof(reported));
    if (cli->json) {
        fputs("{\"name\": ", stdout);
        cli_json_string(stdout, h.name);
        fputs(", \"site\": ", stdout);
        cli_json_string(stdout, h.site);
        fputs(", \"roles\": ", stdout);
        cli_json_string(stdout, roles);
        fputs(", \"collector\": ", stdout);
        cli_json_string(stdout, h.collector);
        fputs(", \"os\": ", stdout);
        cli_json_string(stdout, h.os);
        printf(", \"state\": \"%s\", \"last_report\": ", h.state);
        if (h.collected_at)
            printf("\"%s\"", reported);
        else
            fputs("null", stdout);
        printf(", \"added_at\": \"%s\", \"updated_at\": \"%s\", \"depends_on\": %ld, "
               "\"dependents\": %ld}\n", added, updated, up.n, down.n);
    } else {
        printf("name:        %s\nsite:        %s\nroles:       %s\ncollector:   %s\n"
               "os:          %s\nstate:       %s\nlast report: %s\nadded:       %s\n"
               "updated:     %s\ndepends on:  %ld\ndependents:  %ld\n",
               h.name, h.site, roles, h.collector, h.os, h.state,
               h.collected_at ? reported : "never", added, updated, up.n, down.n);
    }
    return EXIT_OK;
}

static void inventory_usage(FILE *out)
{
    fprintf(out,
            "usage: tlsgate inventory import FILE\n"
            "       tlsgate inventory list [--site S] [--json]\n"
            "       tlsgate inventory show HOST [--json]\n"
            "       tlsgate inventory deps HOST [--json]\n"
            "\n"
            "import: CSV with a header, either hosts (name,site,roles,collector,os; name and site\n"
            "        required; roles ';'-separated, empty = client; collector ADDRESS:PORT,\n"
            "        default NAME:8443) or explicit edges (dependent,server,channel); or a JSON\n"
            "        array of host objects with the same members. All or nothing: the first\n"
            "        bad row is named as FILE:LINE:FIELD and nothing changes (exit 3).\n"
            "deps:   the servers HOST depends on and the hosts that depend on it, derived from\n"
            "        roles within the site and from explicit edges, with the channel.\n");
}

int cmd_inventory(struct cli *cli, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        inventory_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    const char *sub = argv[1];
    const char *site = NULL, *arg = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            inventory_usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(sub, "list") && !strcmp(argv[i], "--site")) {
            if (i + 1 >= argc || !*argv[i + 1]) {
                cli_error("inventory list: --site needs a value");
                return EXIT_USAGE;
            }
            site = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("inventory %s: unknown option '%s'", sub, argv[i]);
            return EXIT_USAGE;
        } else if (!arg) {
            arg = argv[i];
        } else {
            cli_error("inventory %s: unexpected argument '%s'", sub, argv[i]);
            return EXIT_USAGE;
        }
    }
    bool needs_arg = strcmp(sub, "list") != 0;
    if (needs_arg != (arg != NULL)) {
        cli_error("inventory %s: %s", sub, needs_arg ? "missing argument" : "takes no argument");
        inventory_usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(sub, "import"))
        return inventory_import(cli, arg);
    if (!strcmp(sub, "list"))
        return inventory_list(cli, site);
    if (!strcmp(sub, "show") || !strcmp(sub, "deps")) {
        /* One read transaction, so the host and its edges are one state of the inventory. */
        int code;
        struct store *s = cli_store(cli, false, &code);
        if (!s)
            return code;
        if (store_begin(s, false)) {
            cli_error("%s", store_errmsg(s));
            return EXIT_SYSTEM;
        }
        code = !strcmp(sub, "show") ? inventory_show(cli, arg) : inventory_deps(cli, arg);
        store_rollback(s);
        return code;
    }
    cli_error("inventory: unknown subcommand '%s' (import, list, show, deps)", sub);
    return EXIT_USAGE;
}

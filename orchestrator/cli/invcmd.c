/*
 * invcmd.c — `tlsgate inventory import|list|show|deps`.
 *
 * An import is all-or-nothing: the importer (invimport.c, inv_import) validates and writes every
 * row inside one IMMEDIATE transaction that this command opens, audits and commits; the first
 * bad row rolls everything back and is named as FILE:LINE:FIELD (CSV) or FILE: element N: FIELD
 * (JSON), exit 3. A refused file is audited too, outside the rolled-back transaction.
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
#include "invimport.h"
#include "inventory.h"
#include "rules.h"
#include "store.h"

/* ---------------------------------------------------------------------------------------- */
/* Import                                                                                   */

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

/* Progress of a long import on a terminal (inv_import's callback). */
static void print_progress(void *ctx, long rows)
{
    const struct inv_import *im = ctx;
    fprintf(stderr, "\rtlsgate: importing %s: %ld rows", im->path, rows);
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
    bool tty = isatty(2);
    struct inv_import im = {.path = path, .now = utc_now(), .user = cli_user(),
                            .progress = tty ? print_progress : NULL, .progress_ctx = &im};
    int rc = store_begin(s, true);
    if (rc) {
        cli_error("%s", store_errmsg(s));
        fclose(in);
        return EXIT_SYSTEM;
    }
    /* Inside the write transaction, so another import cannot slip in between the counts. */
    rc = inv_import(s, in, &im);
    fclose(in);
    if (tty && im.rows >= INV_IMPORT_PROGRESS_EVERY)
        fputc('\n', stderr);
    long long before = im.hosts_before, after = im.hosts_after;
    if (!rc) {
        char outcome[600];
        if (im.reevaluated)
            snprintf(outcome, sizeof(outcome), "ok: %ld rows from %s, %lld reports "
                     "re-evaluated for changed roles", im.rows, path, im.reevaluated);
        else
            snprintf(outcome, sizeof(outcome), "ok: %ld rows from %s", im.rows, path);
        if ((rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
            snprintf(im.err, sizeof(im.err), "%s", store_errmsg(s));
    }
    inv_import_end(s);
    if (rc) {
        store_rollback(s);
        cli_error("%s", im.err);
        cli_error("nothing was imported from %s", path);
        if (rc == -EINVAL) {
            /* A refused file is audited too, outside the rolled-back transaction. */
            char outcome[sizeof(im.err) + 16];
            snprintf(outcome, sizeof(outcome), "refused: %s", im.err);
            cli_audit(cli, outcome);
            return EXIT_BADINPUT;
        }
        return EXIT_SYSTEM;
    }
    if (im.edges)
        printf("%s: %ld explicit edges imported\n", TEXTCLEAN(path), im.rows);
    else
        printf("%s: %ld hosts imported (%lld new, %lld updated)\n", TEXTCLEAN(path), im.rows,
               after - before, (long long)im.rows - (after - before));
    if (im.reevaluated)
        printf("%s: %lld stored reports re-evaluated for changed roles\n", TEXTCLEAN(path),
               im.reevaluated);
    return EXIT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading                                                                                  */

static long long stale_cutoff(struct cli *cli) { return utc_now() - cli->config.stale_after; }

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
    sqlite3_bind_int64(st, 3, utc_now());
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
            jsonout_string(stdout, name);
            fputs(", \"site\": ", stdout);
            jsonout_string(stdout, hsite);
            fputs(", \"roles\": ", stdout);
            jsonout_string(stdout, roles);
            fputs(", \"collector\": ", stdout);
            jsonout_string(stdout, collector);
            fputs(", \"os\": ", stdout);
            jsonout_string(stdout, os);
            fputs(", \"state\": ", stdout);
            jsonout_string(stdout, state);
            printf(", \"waived\": %s}", waived ? "true" : "false");
        } else {
            printf("%-40s %-4s %-9s %-40s %s%s\n", TEXTCLEAN(name), TEXTCLEAN(hsite), state,
                   roles, TEXTCLEAN(collector), waived ? "  (waived)" : "");
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

/* Looks a host up by name (case-insensitive). Returns EXIT_OK, or prints and returns 3 / 4. */
static int find_host(struct cli *cli, struct store *s, const char *name, struct inv_host *h)
{
    int rc = inv_host_get(s, name, stale_cutoff(cli), h);
    if (rc) {
        if (rc == -ENOENT)
            cli_error("unknown host '%s' (see `tlsgate inventory list`)", name);
        else
            cli_error("%s", store_errmsg(s));
        return rc == -ENOENT ? EXIT_BADINPUT : EXIT_SYSTEM;
    }
    return EXIT_OK;
}

/*
 * Calls `fn` for every dependency of host `h` in one direction: with `dependents` false, the
 * servers h depends on; with true, the hosts that depend on h. Derived edges first (by rule in
 * inv_derived order, then name), then explicit ones. Returns 0 or an errno-style code.
 */
typedef void (*dep_fn)(void *ctx, const char *host, const char *channel, bool derived);

static int walk_deps(struct store *s, const struct inv_host *h, bool dependents, dep_fn fn,
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
        jsonout_string(stdout, host);
        fputs(", \"channel\": ", stdout);
        jsonout_string(stdout, channel);
        printf(", \"kind\": \"%s\"}", derived ? "derived" : "explicit");
    } else {
        printf("  %-40s %-14s %s\n", TEXTCLEAN(host), TEXTCLEAN(channel),
               derived ? "derived" : "explicit");
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
    struct inv_host h;
    if ((code = find_host(cli, s, name, &h)) != EXIT_OK)
        return code;
    struct dep_out up = {.json = cli->json}, down = {.json = cli->json};
    int rc;
    if (cli->json) {
        fputs("{\"host\": ", stdout);
        jsonout_string(stdout, h.name);
        fputs(",\n  \"depends_on\": [", stdout);
        rc = walk_deps(s, &h, false, print_dep, &up);
        fputs(up.n ? "\n  ],\n  \"dependents\": [" : "],\n  \"dependents\": [", stdout);
        if (!rc)
            rc = walk_deps(s, &h, true, print_dep, &down);
        fputs(down.n ? "\n  ]}\n" : "]}\n", stdout);
    } else {
        printf("%s depends on:\n", TEXTCLEAN(h.name));
        rc = walk_deps(s, &h, false, print_dep, &up);
        if (!up.n)
            printf("  (nothing)\n");
        printf("depend on %s:\n", TEXTCLEAN(h.name));
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
    struct inv_host h;
    if ((code = find_host(cli, s, name, &h)) != EXIT_OK)
        return code;
    struct dep_out up = {0}, down = {0};
    if (walk_deps(s, &h, false, count_dep, &up) || walk_deps(s, &h, true, count_dep, &down)) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    char roles[256], added[32], updated[32], reported[32];
    inv_roles_format(h.roles, roles, sizeof(roles));
    utc_iso8601(h.added_at, added, sizeof(added));
    utc_iso8601(h.updated_at, updated, sizeof(updated));
    if (h.collected_at)
        utc_iso8601(h.collected_at, reported, sizeof(reported));
    if (cli->json) {
        fputs("{\"name\": ", stdout);
        jsonout_string(stdout, h.name);
        fputs(", \"site\": ", stdout);
        jsonout_string(stdout, h.site);
        fputs(", \"roles\": ", stdout);
        jsonout_string(stdout, roles);
        fputs(", \"collector\": ", stdout);
        jsonout_string(stdout, h.collector);
        fputs(", \"os\": ", stdout);
        jsonout_string(stdout, h.os);
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
               TEXTCLEAN(h.name), TEXTCLEAN(h.site), roles, TEXTCLEAN(h.collector),
               TEXTCLEAN(h.os), h.state,
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

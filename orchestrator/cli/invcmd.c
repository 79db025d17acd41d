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
#include "export.h"
#include "gate.h"
#include "ingest.h"
#include "inventory.h"
#include "invimport.h"
#include "invlife.h"
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

/* --prune --site S and --dry-run (invlife.h prints the diff and audits removed hosts). */
struct import_opts {
    const char *prune_site;
    bool dry_run;
};

static int inventory_import(struct cli *cli, const char *path, const struct import_opts *o)
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
    struct inv_import im = {.path = path,
                            .now = utc_now(),
                            .user = cli_user(),
                            .progress = tty ? print_progress : NULL,
                            .progress_ctx = &im,
                            .prune_site = o->prune_site,
                            .track = o->dry_run};
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
    long long before = im.hosts_before, after = im.hosts_after + im.removed;
    /* ---- the lifecycle (invlife.h): the diff of a dry run, the removed hosts' audit rows */
    long diff[3] = {0, 0, 0};
    char why[300];
    snprintf(why, sizeof(why), "not in %s (--prune --site %s)", path,
             o->prune_site ? o->prune_site : "");
    if (!rc && (o->dry_run || im.removed) && (rc = invlife_diff(cli, o->dry_run, why, diff)))
        snprintf(im.err, sizeof(im.err), "%s", store_errmsg(s));
    if (im.note[0])
        fprintf(stderr, "tlsgate: note: %s\n", im.note);
    if (!rc && o->dry_run) {
        inv_import_end(s);
        store_rollback(s);
        if (im.edges)
            printf("%s: dry run: %ld explicit edges are valid; nothing was changed\n", path,
                   im.rows);
        else
            printf("%s: dry run: %ld added, %ld changed, %ld removed; nothing was changed\n", path,
                   diff[0], diff[1], diff[2]);
        return EXIT_OK;
    }
    /* ---- */
    if (!rc) {
        char outcome[600];
        if (im.reevaluated)
            snprintf(outcome, sizeof(outcome),
                     "ok: %ld rows from %s, %lld reports "
                     "re-evaluated for changed roles",
                     im.rows, path, im.reevaluated);
        else
            snprintf(outcome, sizeof(outcome), "ok: %ld rows from %s", im.rows, path);
        if (im.removed) {
            size_t used = strlen(outcome);
            snprintf(outcome + used, sizeof(outcome) - used, ", %ld hosts of %s removed",
                     im.removed, o->prune_site);
        }
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
            if (!o->dry_run) /* a dry run changes nothing, its audit log included */
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
    if (im.removed)
        printf("%s: %ld hosts of site %s not in the file removed (audited)\n", path, im.removed,
               o->prune_site);
    printf("%s: a running daemon picks the change up within %d s (no SIGHUP needed)\n", path,
           INVLIFE_DAEMON_NOTICE_S);
    return EXIT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading                                                                                  */

static long long stale_cutoff(struct cli *cli) { return utc_now() - cli->config.stale_after; }

/* Prints "no such site" (exit 3) or the store's message (exit 4); EXIT_OK when it exists. */
static int check_site(struct store *s, const char *what, const char *site)
{
    int rc = inv_site_exists(s, site);
    if (rc == -ENOENT)
        cli_error("%s: no such site: %s", what, site);
    else if (rc)
        cli_error("%s", store_errmsg(s));
    return !rc ? EXIT_OK : rc == -ENOENT ? EXIT_BADINPUT : EXIT_SYSTEM;
}

struct list_out {
    bool json;
    long n;
    struct cli_table table;
};

/* The text table of `inventory list` (table.c fits it to a terminal). */
static const struct cli_column list_columns[] = {
    {"NAME", 40, 30, false},  {"SITE", 4, 4, false},        {"STATE", 9, 9, false},
    {"ROLES", 40, 10, false}, {"COLLECTOR", 21, 12, false},
};

static int list_host(const struct export_host *h, void *arg)
{
    struct list_out *o = arg;
    char roles[256];
    inv_roles_format(h->roles, roles, sizeof(roles));
    if (o->json) {
        jsonout_member(stdout, o->n ? ",\n {\"name\": " : "\n {\"name\": ", h->name);
        jsonout_member(stdout, ", \"site\": ", h->site);
        fputs(", \"roles\": ", stdout);
        cli_json_roles(stdout, h->roles);
        jsonout_member(stdout, ", \"collector\": ", h->collector);
        jsonout_member(stdout, ", \"os\": ", h->os);
        jsonout_member(stdout, ", \"state\": ", h->state);
        printf(", \"waived\": %s}", h->waived ? "true" : "false");
    } else {
        char collector[INV_COLLECTOR_SIZE + 16];
        snprintf(collector, sizeof(collector), "%s%s", h->collector ? h->collector : "",
                 h->waived ? "  (waived)" : "");
        const char *cells[] = {h->name, h->site, h->state, roles, collector};
        cli_table_row(&o->table, cells);
    }
    o->n++;
    return 0;
}

static int inventory_list(struct cli *cli, const char *site)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    /* An unknown site is bad input, not a site without hosts. */
    if (site && (code = check_site(s, "inventory list", site)))
        return code;
    struct gate_time t = cli_gate_time(cli);
    struct list_out o = {.json = cli->json};
    if (cli->json)
        fputs("[", stdout);
    else
        cli_table_begin(&o.table, list_columns, 5, stdout);
    int rc = export_hosts_each(s, site, &t, list_host, &o);
    if (cli->json)
        fputs(o.n ? "\n]\n" : "]\n", stdout);
    if (rc) {
        cli_error("%s", store_errmsg(s));
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

struct dep_out {
    bool json;
    long n;
};

static int print_dep(void *ctx, const char *host, const char *channel, bool derived)
{
    struct dep_out *o = ctx;
    if (o->json) {
        jsonout_member(stdout, o->n ? ",\n    {\"host\": " : "\n    {\"host\": ", host);
        jsonout_member(stdout, ", \"channel\": ", channel);
        printf(", \"kind\": \"%s\"}", derived ? "derived" : "explicit");
    } else {
        printf("  %-40s %-14s %s\n", TEXTCLEAN(host), TEXTCLEAN(channel),
               derived ? "derived" : "explicit");
    }
    o->n++;
    return 0;
}

static int count_dep(void *ctx, const char *host, const char *channel, bool derived)
{
    (void)host;
    (void)channel;
    (void)derived;
    ((struct dep_out *)ctx)->n++;
    return 0;
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
        jsonout_member(stdout, "{\"host\": ", h.name);
        fputs(",\n  \"depends_on\": [", stdout);
        rc = inv_deps_each(s, &h, false, print_dep, &up);
        fputs(up.n ? "\n  ],\n  \"dependents\": [" : "],\n  \"dependents\": [", stdout);
        if (!rc)
            rc = inv_deps_each(s, &h, true, print_dep, &down);
        fputs(down.n ? "\n  ]}\n" : "]}\n", stdout);
    } else {
        printf("%s depends on:\n", TEXTCLEAN(h.name));
        rc = inv_deps_each(s, &h, false, print_dep, &up);
        if (!up.n)
            printf("  (nothing)\n");
        printf("depend on %s:\n", TEXTCLEAN(h.name));
        if (!rc)
            rc = inv_deps_each(s, &h, true, print_dep, &down);
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
    if (inv_deps_each(s, &h, false, count_dep, &up) ||
        inv_deps_each(s, &h, true, count_dep, &down)) {
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
        jsonout_member(stdout, "{\"name\": ", h.name);
        jsonout_member(stdout, ", \"site\": ", h.site);
        fputs(", \"roles\": ", stdout);
        cli_json_roles(stdout, h.roles);
        jsonout_member(stdout, ", \"collector\": ", h.collector);
        jsonout_member(stdout, ", \"os\": ", h.os);
        printf(", \"state\": \"%s\", \"last_report\": ", h.state);
        if (h.collected_at)
            printf("\"%s\"", reported);
        else
            fputs("null", stdout);
        printf(", \"added_at\": \"%s\", \"updated_at\": \"%s\", \"depends_on\": %ld, "
               "\"dependents\": %ld}\n",
               added, updated, up.n, down.n);
    } else {
        printf("name:        %s\nsite:        %s\nroles:       %s\ncollector:   %s\n"
               "os:          %s\nstate:       %s\nlast report: %s\nadded:       %s\n"
               "updated:     %s\ndepends on:  %ld\ndependents:  %ld\n",
               TEXTCLEAN(h.name), TEXTCLEAN(h.site), roles, TEXTCLEAN(h.collector), TEXTCLEAN(h.os),
               h.state, h.collected_at ? reported : "never", added, updated, up.n, down.n);
    }
    return EXIT_OK;
}

#define INVENTORY_ABOUT                                                                            \
    "import: CSV with a header, either hosts (name,site,roles,collector,os; name and site\n"       \
    "        required; roles ';'-separated, empty = client; collector ADDRESS:PORT,\n"             \
    "        default NAME:8443) or explicit edges (dependent,server,channel); or a JSON\n"         \
    "        array of host objects with the same members. All or nothing: the first\n"             \
    "        bad row is named as FILE:LINE:FIELD and nothing changes (exit 3).\n"                  \
    "        Files as Windows writes them are read: a '#TYPE' first line (Export-Csv),\n"          \
    "        ';' or tab delimiters, a SiteCode column for site, ConfigMgr's role names;\n"         \
    "        other columns are ignored with a note naming them.\n"                                 \
    "        --dry-run prints the diff (+ added, ~ changed with the fields, - removed)\n"          \
    "        and changes nothing. --prune --site S removes the hosts of site S that\n"             \
    "        FILE does not list (audited, one row per host).\n"                                    \
    "remove: removes hosts with their reports, verdicts, poll state, waiver and edges, so\n"       \
    "        they no longer block any gate (audited, one row per host with what it was).\n"        \
    "        Every HOST must exist, or nothing is removed (exit 3); --dry-run prints what\n"       \
    "        would go and changes nothing. The daemon notices on its own (no SIGHUP).\n"           \
    "deps:   the servers HOST depends on and the hosts that depend on it, derived from\n"          \
    "        roles within the site and from explicit edges, with the channel.\n"

static const struct cli_option inventory_import_options[] = {
    {"dry-run", NULL}, {"prune", NULL}, {"site", "S"}, {NULL}};
static const struct cli_spec inventory_import_spec = {
    .name = "inventory import",
    .word = "import",
    .usage =
        "Usage: tlsgate inventory import FILE [--dry-run] [--prune --site S]\n\n" INVENTORY_ABOUT,
    .options = inventory_import_options,
    .min_args = 1,
    .max_args = 1,
};
static const struct cli_option inventory_remove_options[] = {{"dry-run", NULL}, {NULL}};
static const struct cli_spec inventory_remove_spec = {
    .name = "inventory remove",
    .word = "remove",
    .usage = "Usage: tlsgate inventory remove HOST... [--dry-run]\n\n" INVENTORY_ABOUT,
    .options = inventory_remove_options,
    .min_args = 1,
    .max_args = -1,
};
static const struct cli_option inventory_list_options[] = {{"site", "S"}, {NULL}};
static const struct cli_spec inventory_list_spec = {
    .name = "inventory list",
    .word = "list",
    .usage = "Usage: tlsgate inventory list [--site S] [--json]\n\n"
             "Every host (or a site's) with its state, roles and collector.\n",
    .options = inventory_list_options,
    .json = true,
};
static const struct cli_spec inventory_show_spec = {
    .name = "inventory show",
    .word = "show",
    .usage = "Usage: tlsgate inventory show HOST [--json]\n\n"
             "What the inventory holds about HOST, its state and how many hosts it depends\n"
             "on and depend on it.\n",
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
static const struct cli_spec inventory_deps_spec = {
    .name = "inventory deps",
    .word = "deps",
    .usage = "Usage: tlsgate inventory deps HOST [--json]\n\n" INVENTORY_ABOUT,
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
const struct cli_spec *const inventory_specs[] = {&inventory_import_spec, &inventory_remove_spec,
                                                  &inventory_list_spec,   &inventory_show_spec,
                                                  &inventory_deps_spec,   NULL};

int cmd_inventory(struct cli *cli, int argc, char **argv)
{
    const struct cli_spec *spec;
    struct cli_args a;
    int code = cli_parse_sub(cli, "inventory",
                             "Usage: tlsgate inventory import FILE [--dry-run] [--prune --site S]\n"
                             "       tlsgate inventory remove HOST... [--dry-run]\n"
                             "       tlsgate inventory list [--site S] [--json]\n"
                             "       tlsgate inventory show HOST [--json]\n"
                             "       tlsgate inventory deps HOST [--json]\n\n" INVENTORY_ABOUT,
                             inventory_specs, argc, argv, &spec, &a);
    if (code != CLI_RUN)
        return code;
    if (spec == &inventory_import_spec) {
        struct import_opts io = {.dry_run = cli_given(spec, &a, "dry-run")};
        bool prune = cli_given(spec, &a, "prune");
        const char *site = cli_value(spec, &a, "site");
        if (prune != (site != NULL)) {
            cli_error("inventory import: --prune and --site S go together (--prune --site S "
                      "removes the hosts of S that FILE does not list)");
            return EXIT_USAGE;
        }
        io.prune_site = site;
        return inventory_import(cli, a.argv[0], &io);
    }
    if (spec == &inventory_remove_spec)
        return invlife_remove(cli, a.argv, a.argc, cli_given(spec, &a, "dry-run"));
    if (spec == &inventory_list_spec)
        return inventory_list(cli, cli_value(spec, &a, "site"));
    /* show, deps: one read transaction, so the host and its edges are one state. */
    struct store *s = cli_store_read(cli, &code);
    if (!s)
        return code;
    code = spec == &inventory_show_spec ? inventory_show(cli, a.argv[0])
                                        : inventory_deps(cli, a.argv[0]);
    store_rollback(s);
    return code;
}

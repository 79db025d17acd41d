/*
 * gatecmd.c — `tlsgate gate check SERVER` and `tlsgate gate list [--site S]`: the gate of one
 * server with everything that blocks it, and the table of every server's gate. The decisions
 * are gate.c's; this file only reads them out.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gate.h"
#include "ingest_reads.h"
#include "inventory.h"
#include "rules.h"
#include "store.h"

/* Hosts listed per rule group by default; --all lists every one. */
#define GATE_LIST_LIMIT 20

static int report_failure(struct store *s, int rc)
{
    cli_error("%s", store_errmsg(s));
    return rc == -ENOENT || rc == -EINVAL ? EXIT_BADINPUT : EXIT_SYSTEM;
}

static void json_server_fields(const struct gate_server *g)
{
    fputs("\"name\":", stdout);
    jsonout_string(stdout, g->name);
    fputs(",\"site\":", stdout);
    jsonout_string(stdout, g->site);
    fputs(",\"roles\":", stdout);
    cli_json_roles(stdout, g->roles);
    printf(",\"phase\":\"%s\",\"gate\":\"%s\",\"state\":\"%s\",\"waived\":%s,"
           "\"dependents\":%ld,\"blocking\":%ld,\"waived_dependents\":%ld,"
           "\"legacy_disabled\":%s,\"orphan_risk\":%s,\"reenable_legacy\":%s",
           phase_name(g->phase), g->open ? "open" : "blocked", gate_state_name(g->state),
           g->waived ? "true" : "false", g->dependents, g->blocking, g->waived_dependents,
           g->legacy_disabled ? "true" : "false", g->orphan_risk ? "true" : "false",
           g->reenable_legacy ? "true" : "false");
}

/* ---- gate check --------------------------------------------------------------------------- */

struct check {
    struct cli *cli;
    struct store *s;
    const struct gate_time *t;
    const struct rules_catalog *catalog; /* remedies; rule ids not in it have none */
    long limit;
    bool open;
    long shown, group_hosts, groups, waived_shown, own_shown;
};

static void close_group(struct check *c)
{
    if (!c->groups)
        return;
    if (c->cli->json)
        fputs("]}", stdout);
    else if (c->group_hosts > c->shown)
        printf("      ... and %ld more (--all lists every one)\n", c->group_hosts - c->shown);
}

static int print_blocking(const struct gate_failing *f, void *arg)
{
    struct check *c = arg;
    bool json = c->cli->json;
    if (!f->host) {
        const struct rules_info *rule = c->catalog ? rules_find(c->catalog, f->rule) : NULL;
        close_group(c);
        if (json) {
            fputs(c->groups ? ",{\"rule\":" : "{\"rule\":", stdout);
            jsonout_string(stdout, f->rule);
            printf(",\"hosts\":%ld,\"remedy\":", f->hosts);
            if (rule)
                jsonout_string(stdout, rule->remedy);
            else
                fputs("null", stdout);
            fputs(",\"list\":[", stdout);
        } else {
            printf("    %ld %s: %s: %s\n", f->hosts, f->hosts == 1 ? "dependent" : "dependents",
                   TEXTCLEAN(f->rule), TEXTCLEAN(f->reason));
            if (rule)
                printf("      remedy: %s\n", TEXTCLEAN(rule->remedy));
        }
        c->groups++;
        c->shown = 0;
        c->group_hosts = f->hosts;
        return 0;
    }
    if (json) {
        fputs(c->shown ? ",{\"host\":" : "{\"host\":", stdout);
        jsonout_string(stdout, f->host);
        printf(",\"state\":\"%s\",\"reason\":", gate_state_name(f->state));
        jsonout_string(stdout, f->reason);
        fputc('}', stdout);
    } else {
        printf("      %s  %s  %s\n", TEXTCLEAN(f->host), gate_state_name(f->state),
               TEXTCLEAN(f->reason));
    }
    c->shown++;
    return 0;
}

static int print_waived(const struct gate_waived *w, void *arg)
{
    struct check *c = arg;
    char until[32] = "until unwaived";
    if (w->until_at) {
        char iso[24];
        snprintf(until, sizeof(until), "until %s", utc_iso8601(w->until_at, iso, sizeof(iso)));
    }
    if (c->cli->json) {
        fputs(c->waived_shown ? ",{\"host\":" : "{\"host\":", stdout);
        jsonout_string(stdout, w->host);
        printf(",\"state\":\"%s\",\"reason\":", gate_state_name(w->state));
        jsonout_string(stdout, w->reason);
        if (w->until_at) {
            char iso[24];
            printf(",\"until\":\"%s\"}", utc_iso8601(w->until_at, iso, sizeof(iso)));
        } else {
            fputs(",\"until\":null}", stdout);
        }
    } else {
        printf("    %s  %s  waived %s: %s\n", TEXTCLEAN(w->host), gate_state_name(w->state), until,
               TEXTCLEAN(w->reason));
    }
    c->waived_shown++;
    return 0;
}

/* The server's own failed blocker verdicts (why it is not ready itself). */
static int print_own_failure(const struct ingest_verdict_row *v, void *arg)
{
    struct check *c = arg;
    const struct rules_info *info = c->catalog ? rules_find(c->catalog, v->rule) : NULL;
    if (c->cli->json) {
        fputs(c->own_shown ? ",{\"rule\":" : "{\"rule\":", stdout);
        jsonout_string(stdout, v->rule);
        fputs(",\"reason\":", stdout);
        jsonout_string(stdout, v->reason);
        fputs(",\"remedy\":", stdout);
        if (info)
            jsonout_string(stdout, info->remedy);
        else
            fputs("null", stdout);
        fputc('}', stdout);
    } else {
        printf("    %s: %s\n", TEXTCLEAN(v->rule), TEXTCLEAN(v->reason));
        if (info)
            printf("      remedy: %s\n", TEXTCLEAN(info->remedy));
    }
    c->own_shown++;
    return 0;
}

/* Keeps the server gate_server_get found, so the listing runs after its walk has ended. */
struct kept_server {
    struct gate_server g;
    char name[256];
    char site[INV_SITE_BUFSIZE];
    bool found;
};

static int keep_server(const struct gate_server *g, void *arg)
{
    struct kept_server *k = arg;
    k->g = *g;
    snprintf(k->name, sizeof(k->name), "%s", g->name);
    snprintf(k->site, sizeof(k->site), "%s", g->site);
    k->g.name = k->name;
    k->g.site = k->site;
    k->found = true;
    return 0;
}

static int check_server(struct check *c, const struct gate_server *g)
{
    bool json = c->cli->json;
    bool in_enforce = g->phase == PHASE_ENFORCE || g->phase == PHASE_COMPLETE;
    c->open = g->open;
    if (json) {
        fputc('{', stdout);
        json_server_fields(g);
    } else {
        printf("%s (site %s, phase %s): gate %s\n", TEXTCLEAN(g->name), TEXTCLEAN(g->site),
               phase_name(g->phase), g->open ? "OPEN" : "BLOCKED");
        if (!in_enforce)
            printf("  site %s is in %s, not enforce: what if it were, today:\n", TEXTCLEAN(g->site),
                   phase_name(g->phase));
        printf("  server itself: %s%s%s\n", gate_state_name(g->state),
               g->waived ? " (waived; a server's own waiver does not open its gate)" : "",
               g->legacy_disabled ? ", reports legacy protocols disabled" : "");
        if (g->orphan_risk)
            printf("  ORPHAN RISK: legacy protocols are disabled while the gate is blocked\n");
        if (g->reenable_legacy)
            printf("  asked to re-enable legacy protocols (rollback out of enforce)\n");
    }
    int rc = cli_print_wire(c->cli, c->s, g->id, g->name, g->legacy_disabled, "  ");
    if (rc)
        return rc;
    if (json)
        fputs(",\"own_failures\":[", stdout);
    if (g->state != GATE_READY)
        rc = ingest_verdicts_each(c->s, g->id, INGEST_VERDICTS_FAILED_BLOCKERS, print_own_failure,
                                  c);
    if (rc)
        return rc;
    if (json) {
        fputs("],\"blockers\":[", stdout);
    } else {
        printf("  dependents %ld: blocking %ld, waived %ld\n", g->dependents, g->blocking,
               g->waived_dependents);
    }
    if (g->blocking) {
        rc = gate_failing_for_server(c->s, g, c->t, c->limit, print_blocking, c);
        close_group(c);
        if (rc)
            return rc;
    }
    if (json)
        fputs("],\"waived_list\":[", stdout);
    else if (g->waived_dependents)
        printf("  waived dependents (do not block):\n");
    if (g->waived_dependents)
        rc = gate_waived_for_server(c->s, g, c->t, c->limit, print_waived, c);
    if (!rc && !json && g->waived_dependents > c->waived_shown)
        printf("    ... and %ld more\n", g->waived_dependents - c->waived_shown);
    if (json)
        fputs("]}\n", stdout);
    return rc;
}

static int gate_check(struct cli *cli, const char *server, bool all)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct gate_time t = gate_time_config(utc_now(), &cli->config);
    struct check c = {cli, s, &t, NULL, all ? 0 : GATE_LIST_LIMIT, false, 0, 0, 0, 0, 0};
    struct kept_server k = {0};
    struct rules_catalog *catalog = NULL;
    int rc = store_begin(s, false);
    if (!rc)
        rc = gate_server_get(s, server, &t, keep_server, &k);
    if (!rc && k.found && !(rc = rules_load_active(s, &catalog))) {
        c.catalog = catalog;
        rc = check_server(&c, &k.g);
    }
    rules_free(catalog);
    store_rollback(s);
    if (rc)
        return report_failure(s, rc);
    return c.open ? EXIT_OK : EXIT_BLOCKED;
}

/* ---- gate list ---------------------------------------------------------------------------- */

struct list {
    bool json;
    long rows;
    struct cli_table table;
};

/* The text table of `gate list` (table.c fits it to a terminal). */
static const struct cli_column list_columns[] = {
    {"SERVER", 32, 18, false}, {"SITE", 4, 4, false},  {"PHASE", 9, 8, false},
    {"GATE", 8, 7, false},     {"STATE", 9, 9, false}, {"DEPENDENTS", 10, 4, true},
    {"BLOCKING", 9, 4, true},  {"WAIVED", 7, 4, true}, {"LEGACY", 6, 3, true},
    {"ROLES", 18, 8, false},
};

static int list_server(const struct gate_server *g, void *arg)
{
    struct list *l = arg;
    if (l->json) {
        /* The document opens with its first server: an unknown --site prints nothing. */
        fputs(l->rows ? ",{" : "{\"servers\":[{", stdout);
        json_server_fields(g);
        fputc('}', stdout);
    } else {
        char roles[512], deps[24], blocking[24], waived[24];
        inv_roles_format(g->roles, roles, sizeof(roles));
        size_t n = strlen(roles);
        snprintf(roles + n, sizeof(roles) - n, "%s%s", g->waived ? " (waived)" : "",
                 g->orphan_risk ? "  ORPHAN RISK" : "");
        snprintf(deps, sizeof(deps), "%ld", g->dependents);
        snprintf(blocking, sizeof(blocking), "%ld", g->blocking);
        snprintf(waived, sizeof(waived), "%ld", g->waived_dependents);
        if (!l->rows)
            cli_table_begin(&l->table, list_columns, 10, stdout);
        const char *cells[] = {g->name,
                               g->site,
                               phase_name(g->phase),
                               g->open ? "open" : "blocked",
                               gate_state_name(g->state),
                               deps,
                               blocking,
                               waived,
                               g->legacy_disabled ? "off" : "on",
                               roles};
        cli_table_row(&l->table, cells);
    }
    l->rows++;
    return 0;
}

static int gate_list(struct cli *cli, const char *site)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct gate_time t = gate_time_config(utc_now(), &cli->config);
    struct list l = {.json = cli->json};
    int rc = store_begin(s, false);
    if (!rc)
        rc = gate_servers(s, site, &t, list_server, &l);
    store_rollback(s);
    if (cli->json && !rc)
        fputs(l.rows ? "]}\n" : "{\"servers\":[]}\n", stdout);
    if (rc)
        return report_failure(s, rc);
    return EXIT_OK;
}

#define STR_(x) #x
#define STR(x) STR_(x)
#define GATE_ABOUT                                                                                 \
    "A server's gate (may it disable SSL 3.0 / TLS 1.0 / TLS 1.1 now) is open when its\n"          \
    "site is in enforce, it is ready itself, and every host that depends on it is ready\n"         \
    "or under an unexpired waiver. check exits 0 open, 1 blocked, and lists what blocks\n"         \
    "grouped by rule (" STR(GATE_LIST_LIMIT) " hosts per group unless --all); outside enforce it " \
                                             "shows who\nwould be orphaned today.\n"

static const struct cli_option gate_check_options[] = {{"all", NULL}, {NULL}};
static const struct cli_spec gate_check_spec = {
    .name = "gate check",
    .word = "check",
    .usage = "Usage: tlsgate gate check SERVER [--all] [--json]\n\n" GATE_ABOUT,
    .options = gate_check_options,
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
static const struct cli_option gate_list_options[] = {{"site", "S"}, {NULL}};
static const struct cli_spec gate_list_spec = {
    .name = "gate list",
    .word = "list",
    .usage = "Usage: tlsgate gate list [--site S] [--json]\n\n" GATE_ABOUT,
    .options = gate_list_options,
    .json = true,
};
const struct cli_spec *const gate_specs[] = {&gate_check_spec, &gate_list_spec, NULL};

int cmd_gate(struct cli *cli, int argc, char **argv)
{
    const struct cli_spec *spec;
    struct cli_args a;
    int code = cli_parse_sub(cli, "gate",
                             "Usage: tlsgate gate check SERVER [--all] [--json]\n"
                             "       tlsgate gate list [--site S] [--json]\n\n" GATE_ABOUT,
                             gate_specs, argc, argv, &spec, &a);
    if (code != CLI_RUN)
        return code;
    if (spec == &gate_check_spec)
        return gate_check(cli, a.argv[0], cli_given(spec, &a, "all"));
    return gate_list(cli, cli_value(spec, &a, "site"));
}

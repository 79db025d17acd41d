/*
 * phasecmd.c — `tlsgate phase status|advance|rollback`: moving a site through its ordered phases
 * (phase.h). The exit criteria are counted by gate.c from the same aggregates as the gates, and
 * the hosts that fail them are listed, grouped by rule, only when they are shown.
 *
 * advance and rollback check and change inside one BEGIN IMMEDIATE transaction: a second
 * advance waits for the first to commit and then sees the new phase, so two concurrent
 * advances cannot both move the site (or move it two steps). Every advance or rollback that is
 * not a dry run writes an audit row, refused ones included.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gate.h"
#include "inventory.h"
#include "phase.h"
#include "rules.h"
#include "store.h"

/* Hosts listed per rule group by default; --all lists every one. */
#define PHASE_LIST_LIMIT 20

static struct gate_time decision_time(const struct cli *cli)
{
    struct gate_time t = gate_time_config(utc_now(), &cli->config);
    return t;
}

/* ---- printing the failing hosts ---------------------------------------------------------- */

struct failing_print {
    FILE *out;
    bool json;
    enum phase_id phase;
    const struct rules_catalog *catalog; /* remedies; rule ids not in it have none */
    long shown, group_hosts, groups;
};

static void close_group(struct failing_print *p)
{
    if (!p->groups)
        return;
    if (p->json) {
        fputs("]}", p->out);
    } else if (p->group_hosts > p->shown) {
        fprintf(p->out, "    ... and %ld more (--all lists every one)\n",
                p->group_hosts - p->shown);
    }
}

static int print_failing(const struct gate_failing *f, void *arg)
{
    struct failing_print *p = arg;
    if (!f->host) {
        const struct rules_info *rule = p->catalog ? rules_find(p->catalog, f->rule) : NULL;
        const char *remedy = rule ? rule->remedy : NULL;
        close_group(p);
        if (p->json) {
            fputs(p->groups ? "," : "", p->out);
            fputs("{\"rule\":", p->out);
            jsonout_string(p->out, f->rule);
            fprintf(p->out, ",\"hosts\":%ld,\"reason\":", f->hosts);
            jsonout_string(p->out, f->reason ? f->reason : "");
            fputs(",\"remedy\":", p->out);
            if (remedy)
                jsonout_string(p->out, remedy);
            else
                fputs("null", p->out);
            fputs(",\"list\":[", p->out);
        } else {
            fprintf(p->out, "  %ld %s: %s: %s\n", f->hosts,
                    phase_criterion_noun(p->phase, f->hosts), TEXTCLEAN(f->rule),
                    TEXTCLEAN(f->reason));
            if (remedy)
                fprintf(p->out, "    remedy: %s\n", TEXTCLEAN(remedy));
        }
        p->groups++;
        p->shown = 0;
        p->group_hosts = f->hosts;
        return 0;
    }
    if (p->json) {
        fputs(p->shown ? ",{\"host\":" : "{\"host\":", p->out);
        jsonout_string(p->out, f->host);
        fprintf(p->out, ",\"state\":\"%s\",\"reason\":", gate_state_name(f->state));
        jsonout_string(p->out, f->reason);
        fputc('}', p->out);
    } else {
        fprintf(p->out, "    %s  %s  %s\n", TEXTCLEAN(f->host), gate_state_name(f->state),
                TEXTCLEAN(f->reason));
    }
    p->shown++;
    return 0;
}

/* ---- phase status ------------------------------------------------------------------------ */

struct status_print {
    struct cli *cli;
    struct store *s;
    const struct gate_time *t;
    long sites;
};

static int print_orphan_name(const struct gate_server *srv, void *arg)
{
    struct status_print *p = arg;
    if (!srv->orphan_risk)
        return 0;
    if (p->cli->json) {
        fputs(p->sites++ ? "," : "", stdout);
        jsonout_string(stdout, srv->name);
    } else {
        printf("  ORPHAN RISK: %s reports legacy protocols disabled while its gate is blocked "
               "(%ld blocking dependents%s)\n",
               TEXTCLEAN(srv->name), srv->blocking,
               srv->state == GATE_READY ? "" : ", itself not ready");
    }
    return 0;
}

static int print_site_status(const struct gate_site *g, void *arg)
{
    struct status_print *p = arg;
    char when[32];
    utc_iso8601(g->entered_at, when, sizeof(when));
    enum phase_id next = g->phase + 1;
    if (p->cli->json) {
        /* The document opens with its first site: an unknown --site prints nothing. */
        fputs(p->sites++ ? ",{\"site\":" : "{\"sites\":[{\"site\":", stdout);
        jsonout_string(stdout, g->code);
        printf(",\"phase\":\"%s\",\"entered_at\":\"%s\",\"entered_by\":", phase_name(g->phase),
               when);
        jsonout_string(stdout, g->entered_by);
        printf(",\"hosts\":%ld,\"ready\":%ld,\"not_ready\":%ld,\"unknown\":%ld,\"waived\":%ld,"
               "\"servers\":%ld,\"servers_gate_open\":%ld,\"next\":",
               g->hosts, g->ready, g->not_ready, g->unknown, g->waived, g->servers,
               g->servers_gate_open);
        if (g->phase == PHASE_COMPLETE)
            fputs("null", stdout);
        else
            printf("\"%s\"", phase_name(next));
        printf(",\"exit_blocking\":%ld,\"wire_alarm\":%ld,\"orphan_risk\":[", g->exit_blocking,
               g->wire_alarm);
    } else {
        printf("%s: %s since %s by %s\n", TEXTCLEAN(g->code), phase_name(g->phase), when,
               TEXTCLEAN(g->entered_by));
        printf("  hosts %ld: ready %ld, not_ready %ld, unknown %ld, waived %ld\n", g->hosts,
               g->ready, g->not_ready, g->unknown, g->waived);
        printf("  servers %ld: gate open %ld, orphan risk %ld\n", g->servers, g->servers_gate_open,
               g->orphan_risk);
        if (g->phase == PHASE_COMPLETE)
            printf("  complete\n");
        if (g->wire_alarm)
            printf("  ALARM: %ld site system%s still accept%s SSL 3.0, TLS 1.0 or TLS 1.1 on the "
                   "wire after complete (`tlsgate probe show`)\n",
                   g->wire_alarm, g->wire_alarm == 1 ? "" : "s", g->wire_alarm == 1 ? "s" : "");
        else if (g->exit_blocking)
            printf("  -> %s: blocked by %ld %s (%s)\n", phase_name(next), g->exit_blocking,
                   phase_criterion_noun(g->phase, g->exit_blocking),
                   phase_criterion_text(g->phase));
        else
            printf("  -> %s: can advance (%s)\n", phase_name(next), phase_criterion_text(g->phase));
    }
    int rc = 0;
    if (g->orphan_risk) { /* names only when there are some: it costs one more pass */
        struct status_print inner = {p->cli, p->s, p->t, 0};
        rc = gate_servers(p->s, g->code, p->t, print_orphan_name, &inner);
    }
    if (p->cli->json)
        fputs("]}", stdout);
    return rc;
}

static int phase_status(struct cli *cli, const char *site)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct gate_time t = decision_time(cli);
    struct status_print p = {cli, s, &t, 0};
    /* One read transaction: every figure comes from the same snapshot. */
    int rc = store_begin(s, false);
    if (!rc)
        rc = gate_sites(s, site, &t, print_site_status, &p);
    store_rollback(s);
    if (cli->json && (!rc || p.sites))
        fputs(p.sites ? "]}\n" : "{\"sites\":[]}\n", stdout);
    if (rc == -ENOENT) {
        cli_error("%s", store_errmsg(s));
        return EXIT_BADINPUT;
    }
    if (rc) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}

/* ---- advance / rollback ----------------------------------------------------------------- */

struct site_phase {
    bool found;
    enum phase_id phase;
    long exit_blocking;
    long waived;
    char code[INV_SITE_BUFSIZE];
};

static int take_site(const struct gate_site *g, void *arg)
{
    struct site_phase *sp = arg;
    sp->found = true;
    sp->phase = g->phase;
    sp->exit_blocking = g->exit_blocking;
    sp->waived = g->waived;
    snprintf(sp->code, sizeof(sp->code), "%s", g->code);
    return 0;
}

/* Waived hosts pass every criterion: say so, so a pass is never read as "all ready". */
static void print_waived_note(const struct site_phase *sp)
{
    if (sp->waived)
        printf("  %ld waived %s of %s pass by waiver (see `tlsgate gate check`, `tlsgate audit`)\n",
               sp->waived, sp->waived == 1 ? "host" : "hosts", sp->code);
}

static int fail_system(struct store *s)
{
    cli_error("%s", store_errmsg(s));
    store_rollback(s);
    return EXIT_SYSTEM;
}

/* Writes the audit row and commits; for a refused move the refusal itself is what is kept. */
static int audit_and_commit(struct cli *cli, struct store *s, const char *outcome)
{
    if (cli_audit(cli, outcome) || store_commit(s))
        return fail_system(s);
    return EXIT_OK;
}

/* Opens the store and begins the move's transaction (IMMEDIATE unless a dry run). EXIT_OK, or
 * the exit code with the message printed. */
static int open_move(struct cli *cli, bool immediate, struct store **out, struct gate_time *t)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    *out = s;
    *t = decision_time(cli);
    return store_begin(s, immediate) ? fail_system(s) : EXIT_OK;
}

/* The exit code of reading the site: -ENOENT is bad input (no such site); the message is
 * printed and the transaction rolled back. */
static int site_read_code(struct store *s, int rc)
{
    if (rc == -ENOENT) {
        cli_error("%s", store_errmsg(s));
        store_rollback(s);
        return EXIT_BADINPUT;
    }
    return rc ? fail_system(s) : EXIT_OK;
}

/* open_move, then the site's phase and counts into *sp. */
static int begin_move(struct cli *cli, const char *site, bool immediate, struct store **out,
                      struct gate_time *t, struct site_phase *sp)
{
    int code = open_move(cli, immediate, out, t);
    if (code)
        return code;
    return site_read_code(*out, gate_sites(*out, site, t, take_site, sp));
}

struct move_args {
    const char *site;
    const char *reason;
    bool dry_run;
    bool all;
};

/*
 * phase advance reads the site and what fails its exit in one pass (gate_phase_exit): the site
 * callback prints the refusal's head and loads the remedies, then the failing hosts follow.
 */
struct advance_walk {
    struct cli *cli;
    struct store *s;
    const struct move_args *a;
    struct site_phase sp;
    struct failing_print p;
    struct rules_catalog *catalog;
    bool listing; /* the refusal's head is printed: its tail is owed */
};

static int advance_site(const struct gate_site *g, void *arg)
{
    struct advance_walk *w = arg;
    take_site(g, &w->sp);
    const struct site_phase *sp = &w->sp;
    if (sp->phase == PHASE_COMPLETE || sp->exit_blocking <= 0)
        return 0;
    enum phase_id to = sp->phase + 1;
    w->listing = true;
    w->p = (struct failing_print){.out = stdout, .json = w->cli->json, .phase = sp->phase};
    if (w->cli->json) {
        printf("{\"site\":");
        jsonout_string(stdout, sp->code);
        printf(",\"from\":\"%s\",\"to\":\"%s\",\"dry_run\":%s,\"advanced\":false,"
               "\"blocking\":%ld,\"waived\":%ld,\"groups\":[",
               phase_name(sp->phase), phase_name(to), w->a->dry_run ? "true" : "false",
               sp->exit_blocking, sp->waived);
    } else {
        printf("site %s: %s -> %s %s: %ld %s fail \"%s\"\n", sp->code, phase_name(sp->phase),
               phase_name(to), w->a->dry_run ? "would be refused" : "refused", sp->exit_blocking,
               phase_criterion_noun(sp->phase, sp->exit_blocking), phase_criterion_text(sp->phase));
        print_waived_note(sp);
    }
    int rc = rules_load_active(w->s, &w->catalog);
    w->p.catalog = w->catalog;
    return rc;
}

static int advance_failing(const struct gate_failing *f, void *arg)
{
    struct advance_walk *w = arg;
    return print_failing(f, &w->p);
}

static int phase_advance(struct cli *cli, const struct move_args *a)
{
    struct store *s;
    struct gate_time t;
    /* A dry run takes no write lock; it reads one snapshot and changes nothing. */
    int code = open_move(cli, !a->dry_run, &s, &t);
    if (code)
        return code;
    struct advance_walk w = {.cli = cli, .s = s, .a = a};
    int rc = gate_phase_exit(s, a->site, &t, a->all ? 0 : PHASE_LIST_LIMIT, advance_site,
                             advance_failing, &w);
    const struct site_phase sp = w.sp;
    if (w.listing) {
        close_group(&w.p);
        rules_free(w.catalog);
        if (cli->json)
            printf("]}\n");
        if (rc)
            return fail_system(s);
    } else if ((code = site_read_code(s, rc))) {
        return code;
    }

    char outcome[160];
    if (sp.phase == PHASE_COMPLETE) {
        cli_error("site %s is already complete: there is no phase after it", sp.code);
        if (cli->json) {
            printf("{\"site\":");
            jsonout_string(stdout, sp.code);
            printf(",\"from\":\"complete\",\"to\":null,\"dry_run\":%s,\"advanced\":false,"
                   "\"blocking\":0,\"waived\":%ld,\"groups\":[]}\n",
                   a->dry_run ? "true" : "false", sp.waived);
        }
        if (a->dry_run) {
            store_rollback(s);
            return EXIT_BLOCKED;
        }
        code = audit_and_commit(cli, s, "refused: site is complete");
        return code ? code : EXIT_BLOCKED;
    }
    enum phase_id to = sp.phase + 1;
    if (sp.exit_blocking > 0) {
        if (a->dry_run) {
            store_rollback(s);
            return EXIT_BLOCKED;
        }
        snprintf(outcome, sizeof(outcome), "refused: %ld blockers", sp.exit_blocking);
        code = audit_and_commit(cli, s, outcome);
        return code ? code : EXIT_BLOCKED;
    }

    if (cli->json) {
        printf("{\"site\":");
        jsonout_string(stdout, sp.code);
        printf(",\"from\":\"%s\",\"to\":\"%s\",\"dry_run\":%s,\"advanced\":%s,\"blocking\":0,"
               "\"waived\":%ld,\"groups\":[]}\n",
               phase_name(sp.phase), phase_name(to), a->dry_run ? "true" : "false",
               a->dry_run ? "false" : "true", sp.waived);
    }
    if (a->dry_run) {
        store_rollback(s);
        if (!cli->json) {
            printf("site %s: %s -> %s would pass (%s)\n", sp.code, phase_name(sp.phase),
                   phase_name(to), phase_criterion_text(sp.phase));
            print_waived_note(&sp);
        }
        return EXIT_OK;
    }
    if (phase_move(s, sp.code, sp.phase, to, t.now, cli_user(), a->reason))
        return fail_system(s);
    snprintf(outcome, sizeof(outcome), "ok: %s -> %s", phase_name(sp.phase), phase_name(to));
    if ((code = audit_and_commit(cli, s, outcome)))
        return code;
    if (!cli->json) {
        printf("site %s: %s -> %s\n", sp.code, phase_name(sp.phase), phase_name(to));
        print_waived_note(&sp);
    }
    return EXIT_OK;
}

static int phase_rollback(struct cli *cli, const struct move_args *a)
{
    struct store *s;
    struct gate_time t;
    struct site_phase sp = {0};
    int code = begin_move(cli, a->site, true, &s, &t, &sp);
    if (code)
        return code;
    if (sp.phase == PHASE_INVENTORY) {
        cli_error("site %s is in inventory, the first phase: there is nothing to roll back to",
                  sp.code);
        code = audit_and_commit(cli, s, "refused: site is in inventory");
        return code ? code : EXIT_BLOCKED;
    }
    enum phase_id to = sp.phase - 1;
    if (phase_move(s, sp.code, sp.phase, to, t.now, cli_user(), a->reason))
        return fail_system(s);
    char outcome[160];
    snprintf(outcome, sizeof(outcome), "ok: %s -> %s%s", phase_name(sp.phase), phase_name(to),
             sp.phase == PHASE_ENFORCE ? ", servers asked to re-enable legacy protocols" : "");
    if ((code = audit_and_commit(cli, s, outcome)))
        return code;
    if (cli->json) {
        jsonout_print(stdout, json_pack("{s:o, s:s, s:s, s:b}", "site", jsonout_text(sp.code),
                                        "from", phase_name(sp.phase), "to", phase_name(to),
                                        "reenable_legacy", sp.phase == PHASE_ENFORCE));
    } else {
        printf("site %s: %s -> %s\n", sp.code, phase_name(sp.phase), phase_name(to));
        if (sp.phase == PHASE_ENFORCE)
            printf("every server of %s is marked to re-enable SSL 3.0 / TLS 1.0 / TLS 1.1 "
                   "(host reenable_legacy)\n",
                   sp.code);
    }
    return EXIT_OK;
}

#define STR_(x) #x
#define STR(x) STR_(x)
#define PHASE_ABOUT                                                                                \
    "Phases: inventory -> clients -> servers -> enforce -> complete, one step at a time.\n"        \
    "advance exits 0 when the site moved (or, with --dry-run, would move), 1 when the\n"           \
    "exit criterion of the current phase fails; the hosts that fail it are listed,\n"              \
    "grouped by rule (" STR(                                                                       \
        PHASE_LIST_LIMIT) " per group unless --all). rollback moves back one "                     \
                          "phase; out\nof enforce it asks every server of the site to re-enable the legacy protocols.\n"

static const struct cli_option phase_status_options[] = {{"site", "S"}, {NULL}};
static const struct cli_spec phase_status_spec = {
    .name = "phase status",
    .word = "status",
    .usage = "Usage: tlsgate phase status [--site S] [--json]\n\n" PHASE_ABOUT,
    .options = phase_status_options,
    .json = true,
};
static const struct cli_option phase_advance_options[] = {
    {"site", "S"}, {"dry-run", NULL}, {"reason", "R"}, {"all", NULL}, {NULL}};
static const struct cli_spec phase_advance_spec = {
    .name = "phase advance",
    .word = "advance",
    .usage =
        "Usage: tlsgate phase advance --site S [--dry-run] [--reason R] [--all] [--json]\n\n" PHASE_ABOUT,
    .options = phase_advance_options,
    .json = true,
};
static const struct cli_option phase_rollback_options[] = {{"site", "S"}, {"reason", "R"}, {NULL}};
static const struct cli_spec phase_rollback_spec = {
    .name = "phase rollback",
    .word = "rollback",
    .usage = "Usage: tlsgate phase rollback --site S --reason R [--json]\n\n" PHASE_ABOUT,
    .options = phase_rollback_options,
    .json = true,
};
const struct cli_spec *const phase_specs[] = {&phase_status_spec, &phase_advance_spec,
                                              &phase_rollback_spec, NULL};

int cmd_phase(struct cli *cli, int argc, char **argv)
{
    const struct cli_spec *spec;
    struct cli_args args;
    int code =
        cli_parse_sub(cli, "phase",
                      "Usage: tlsgate phase status [--site S] [--json]\n"
                      "       tlsgate phase advance --site S [--dry-run] [--reason R] [--all] "
                      "[--json]\n"
                      "       tlsgate phase rollback --site S --reason R [--json]\n\n" PHASE_ABOUT,
                      phase_specs, argc, argv, &spec, &args);
    if (code != CLI_RUN)
        return code;
    struct move_args a = {
        .site = cli_value(spec, &args, "site"),
        .reason = cli_value(spec, &args, "reason"),
        .dry_run = cli_given(spec, &args, "dry-run"),
        .all = cli_given(spec, &args, "all"),
    };
    if (spec == &phase_status_spec)
        return phase_status(cli, a.site);
    if (!a.site) {
        cli_error("%s: --site S is required", spec->name);
        return EXIT_USAGE;
    }
    if (spec == &phase_rollback_spec && !a.reason) {
        cli_error("phase rollback: --reason R is required (it goes into the phase history)");
        return EXIT_USAGE;
    }
    return spec == &phase_advance_spec ? phase_advance(cli, &a) : phase_rollback(cli, &a);
}

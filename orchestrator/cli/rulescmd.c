/*
 * rulescmd.c — `tlsgate rules check|load|show|blockers|eval`: validate a catalog file, make it the
 * store's active catalog (re-evaluating every stored report in the same transaction), print the
 * active catalog, the site-level view of what blocks readiness, grouped by rule, and the offline
 * evaluation of registry exports or a facts file.
 *
 * `rules eval` takes exactly the path a pulled report takes, without a collector or a database:
 * the collector's fact extraction over a regfile view (facts_extract), a report built as the
 * collector builds it, serialised and parsed back through report_parse (the daemon's validation),
 * then rules_evaluate and ingest_legacy_disabled as ingest stores them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "embedded.h"
#include "facts.h"
#include "ingest.h"
#include "ingest_reads.h"
#include "inventory.h"
#include "jsonout.h"
#include "regview.h"
#include "report.h"
#include "rules.h"
#include "store.h"
#include "utc.h"

#define RULES_USAGE_ALL                                                                            \
    "Usage: tlsgate rules check FILE      validate a catalog file\n"                               \
    "       tlsgate rules load FILE       make it the active catalog and re-evaluate\n"            \
    "                                     every stored report (one transaction)\n"                 \
    "       tlsgate rules show [--json]   the active catalog (--json: the catalog\n"               \
    "                                     file itself, which rules load takes back)\n"             \
    "       tlsgate rules blockers [--site S] [--json]\n"                                          \
    "                                     failing rules, grouped, with the number of\n"            \
    "                                     clients / site systems / consoles they hold\n"           \
    "                                     back (last stored report of each host)\n"                \
    "       tlsgate rules eval [--roles R] [--catalog FILE] [--json] FILE.reg...\n"                \
    "       tlsgate rules eval [--roles R] [--catalog FILE] [--json] --facts FILE\n"               \
    "                                     evaluate registry exports (layered in order)\n"          \
    "                                     or a facts file exactly as a stored report,\n"           \
    "                                     without a collector or a database; roles as\n"           \
    "                                     in an inventory (a;b, default client); exit 0\n"         \
    "                                     ready, 1 not ready, 3 bad input\n"

static const struct cli_spec rules_check_spec = {
    .name = "rules check",
    .word = "check",
    .usage = "Usage: tlsgate rules check FILE\n\n"
             "Validates a catalog file (schema/rules.json's shape): exit 0 valid, 3 not.\n",
    .min_args = 1,
    .max_args = 1,
};
static const struct cli_spec rules_load_spec = {
    .name = "rules load",
    .word = "load",
    .usage = "Usage: tlsgate rules load FILE\n\n"
             "Makes FILE the active catalog and re-evaluates every stored report, in one\n"
             "transaction.\n",
    .min_args = 1,
    .max_args = 1,
};
static const struct cli_spec rules_show_spec = {
    .name = "rules show",
    .word = "show",
    .usage = "Usage: tlsgate rules show [--json]\n\n"
             "The active catalog, rule by rule; with --json the catalog file itself, which\n"
             "`rules check` and `rules load` take back (show, edit, load is a round trip).\n",
    .json = true,
};
static const struct cli_option rules_blockers_options[] = {{"site", "S"}, {NULL}};
static const struct cli_spec rules_blockers_spec = {
    .name = "rules blockers",
    .word = "blockers",
    .usage = "Usage: tlsgate rules blockers [--site S] [--json]\n\n"
             "Failing rules, grouped, with the number of clients / site systems / consoles\n"
             "they hold back (last stored report of each host).\n",
    .options = rules_blockers_options,
    .json = true,
};
static const struct cli_option rules_eval_options[] = {
    {"roles", "R"}, {"catalog", "FILE"}, {"facts", "FILE"}, {NULL}};
static const struct cli_spec rules_eval_spec = {
    .name = "rules eval",
    .word = "eval",
    .usage = "Usage: tlsgate rules eval [--roles R] [--catalog FILE] [--json] FILE.reg...\n"
             "       tlsgate rules eval [--roles R] [--catalog FILE] [--json] --facts FILE\n\n"
             "Evaluates registry exports (layered in order) or a facts file exactly as a\n"
             "stored report, without a collector or a database; roles as in an inventory\n"
             "(a;b, default client). Exit 0 ready, 1 not ready, 3 bad input.\n",
    .options = rules_eval_options,
    .max_args = -1, /* EVAL_FILES_MAX, checked with its own message */
    .json = true,
};
const struct cli_spec *const rules_specs[] = {
    &rules_check_spec,    &rules_load_spec, &rules_show_spec,
    &rules_blockers_spec, &rules_eval_spec, NULL,
};

/* Reads a catalog file with the size cap; 0 or an exit code (message printed). */
static int read_catalog_file(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("%s: %s", path, strerror(errno));
        return EXIT_BADINPUT;
    }
    char *buf = malloc(RULES_MAX_BYTES + 2);
    size_t n = buf ? fread(buf, 1, RULES_MAX_BYTES + 1, f) : 0;
    int failed = ferror(f);
    fclose(f);
    if (!buf) {
        cli_error("%s: out of memory", path);
        return EXIT_SYSTEM;
    }
    if (failed) {
        cli_error("%s: read error", path);
        free(buf);
        return EXIT_BADINPUT;
    }
    if (n > RULES_MAX_BYTES) {
        cli_error("%s: over the %d-byte cap of a catalog", path, RULES_MAX_BYTES);
        free(buf);
        return EXIT_BADINPUT;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

static int load_file(const char *path, struct rules_catalog **c, char **text)
{
    size_t len;
    int code = read_catalog_file(path, text, &len);
    if (code)
        return code;
    char err[512];
    int rc = rules_load(*text, len, path, c, err, sizeof(err));
    if (rc) {
        cli_error("%s", err);
        free(*text);
        *text = NULL;
        return rc == -ENOMEM ? EXIT_SYSTEM : EXIT_BADINPUT;
    }
    return 0;
}

static int rules_check(struct cli *cli, const struct cli_args *a)
{
    (void)cli;
    const char *path = a->argv[0];
    struct rules_catalog *c;
    char *text;
    int code = load_file(path, &c, &text);
    if (code)
        return code;
    printf("%s: catalog %s, %zu rules: valid\n", TEXTCLEAN(path), TEXTCLEAN(rules_version(c)),
           rules_count(c));
    rules_free(c);
    free(text);
    return EXIT_OK;
}

struct progress {
    bool tty;
    long long shown;
};

static void show_progress(void *ctx, long long done, long long total)
{
    struct progress *p = ctx;
    if (!p->tty || done - p->shown < 20000)
        return;
    p->shown = done;
    fprintf(stderr, "\rre-evaluating: %lld / %lld reports", done, total);
    fflush(stderr);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rules_load_cmd(struct cli *cli, const struct cli_args *a)
{
    const char *path = a->argv[0];
    struct rules_catalog *c;
    char *text;
    int code = load_file(path, &c, &text);
    if (code)
        return code;
    struct store *s = cli_store(cli, false, &code);
    if (!s) {
        rules_free(c);
        free(text);
        return code;
    }
    struct progress p = {.tty = isatty(STDERR_FILENO)};
    long long count = 0, bad = 0;
    char err[STORE_ERROR_SIZE], outcome[160];
    double t0 = now_seconds();
    int rc = store_begin(s, true);
    if (!rc)
        rc = rules_store_active(s, c, text);
    if (!rc)
        rc = ingest_reevaluate_all(s, c, show_progress, &p, &count, &bad);
    if (rc)
        snprintf(err, sizeof(err), "%s", store_errmsg(s));
    if (p.shown)
        fputc('\n', stderr);
    if (!rc) {
        snprintf(outcome, sizeof(outcome), "ok: catalog %s, %lld reports re-evaluated",
                 rules_version(c), count);
        rc = cli_audit(cli, outcome);
        if (rc || (rc = store_commit(s)))
            snprintf(err, sizeof(err), "%s", store_errmsg(s));
    }
    if (rc) {
        store_rollback(s);
        cli_error("rules load %s: %s", path, err);
        snprintf(outcome, sizeof(outcome), "failed: %.140s", err);
        cli_audit(cli, outcome);
        rules_free(c);
        free(text);
        return EXIT_SYSTEM;
    }
    printf("catalog %s loaded: %zu rules, %lld reports re-evaluated in %.1f s",
           TEXTCLEAN(rules_version(c)), rules_count(c), count, now_seconds() - t0);
    if (bad)
        printf(" (%lld stored reports unreadable, left as they were)", bad);
    printf("\n");
    rules_free(c);
    free(text);
    return EXIT_OK;
}

static void print_roles(FILE *out, unsigned roles, bool json)
{
    if (roles == (1u << ROLE_COUNT) - 1) {
        if (json)
            fputs("[\"any\"]", out);
        else
            fputs("any", out);
        return;
    }
    if (json)
        fputc('[', out);
    bool first = true;
    for (int i = 0; i < ROLE_COUNT; i++) {
        if (!(roles & (1u << i)))
            continue;
        if (!first)
            fputs(json ? ", " : ";", out);
        if (json)
            jsonout_string(out, inv_role_names[i]);
        else
            fputs(inv_role_names[i], out);
        first = false;
    }
    if (json)
        fputc(']', out);
}

static int rules_show(struct cli *cli, const struct cli_args *a)
{
    (void)a;
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    char *stored = NULL;
    bool from_store = store_meta_get(s, "catalog", &stored) == 0;
    struct rules_catalog *c;
    if (rules_load_active(s, &c)) {
        free(stored);
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    if (cli->json) {
        /* The catalog itself, as `rules load` takes it: show, edit, load is a round trip. */
        const char *text = stored;
        for (const struct embedded_file *f = schema_catalogs; !text && f->name; f++)
            if (!strcmp(f->name, "rules.json"))
                text = f->data;
        json_error_t je;
        json_t *doc = text ? json_loads(text, JSON_REJECT_DUPLICATES, &je) : NULL;
        char *out = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        json_decref(doc);
        free(stored);
        if (!out) {
            rules_free(c);
            cli_error("rules show: the active catalog cannot be printed (out of memory)");
            return EXIT_SYSTEM;
        }
        printf("%s\n", out);
        free(out);
    } else {
        free(stored);
        printf("catalog %s (%s), %zu rules\n", TEXTCLEAN(rules_version(c)),
               from_store ? "stored" : "built-in", rules_count(c));
        for (size_t i = 0; i < rules_count(c); i++) {
            const struct rules_info *r = rules_at(c, i);
            printf("\n%s  [%s, %s]  roles: ", TEXTCLEAN(r->id), rules_severity_name(r->severity),
                   TEXTCLEAN(r->component));
            print_roles(stdout, r->roles, false);
            printf("\n  fails when: %s\n  remedy: %s\n  reference: %s\n", TEXTCLEAN(r->title),
                   TEXTCLEAN(r->remedy), TEXTCLEAN(r->reference));
        }
    }
    rules_free(c);
    return EXIT_OK;
}

static void count_phrase(char *buf, size_t size, long long clients, long long systems,
                         long long consoles, long long hosts)
{
    size_t n = 0;
    buf[0] = '\0';
    const struct {
        long long v;
        const char *one, *many;
    } parts[] = {{clients, "client", "clients"},
                 {systems, "site system", "site systems"},
                 {consoles, "console", "consoles"}};
    for (size_t i = 0; i < 3; i++) {
        if (!parts[i].v)
            continue;
        n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%lld %s", n ? ", " : "",
                              parts[i].v, parts[i].v == 1 ? parts[i].one : parts[i].many);
    }
    if (!n)
        snprintf(buf, size, "%lld host%s", hosts, hosts == 1 ? "" : "s");
}

struct blockers_out {
    bool json;
    const struct rules_catalog *catalog;
    int rows;
};

static int print_rule_failures(const struct ingest_rule_failures *f, void *arg)
{
    struct blockers_out *o = arg;
    const struct rules_info *info = rules_find(o->catalog, f->rule);
    const char *title = info ? info->title : "(rule not in the active catalog)";
    if (o->json) {
        printf("%s\n  {\"rule\": ", o->rows ? "," : "");
        jsonout_string(stdout, f->rule);
        jsonout_member(stdout, ", \"severity\": ", f->severity);
        jsonout_member(stdout, ", \"title\": ", title);
        printf(", \"hosts\": %lld, \"clients\": %lld, \"site_systems\": %lld, "
               "\"consoles\": %lld, \"remedy\": ",
               f->hosts, f->clients, f->site_systems, f->consoles);
        jsonout_string(stdout, info ? info->remedy : "");
        printf("}");
    } else {
        char who[128];
        count_phrase(who, sizeof(who), f->clients, f->site_systems, f->consoles, f->hosts);
        printf("%s: %s  [%s, %s]\n", who, TEXTCLEAN(title), TEXTCLEAN(f->rule), f->severity);
    }
    o->rows++;
    return 0;
}

static int rules_blockers(struct cli *cli, const struct cli_args *a)
{
    int code;
    const char *site = cli_value(&rules_blockers_spec, a, "site");
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    int rc = site ? inv_site_exists(s, site) : 0;
    if (rc == -ENOENT) {
        cli_error("rules blockers: unknown site '%s'", site);
        return EXIT_BADINPUT;
    }
    struct rules_catalog *c = NULL;
    if (rc || rules_load_active(s, &c)) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    if (cli->json) {
        jsonout_member(stdout, "{\"site\": ", site);
        jsonout_member(stdout, ", \"catalog\": ", rules_version(c));
        printf(", \"rules\": [");
    }
    struct blockers_out o = {cli->json, c, 0};
    rc = ingest_failures_by_rule(s, site, print_rule_failures, &o);
    if (cli->json)
        printf("%s]}\n", o.rows ? "\n" : "");
    else if (!o.rows && !rc)
        printf("no failing rule%s%s\n", site ? " in site " : "", site ? site : "");
    rules_free(c);
    if (rc) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}

/* ---- rules eval ------------------------------------------------------------------------- */

/* The host name an offline report carries: a valid FQDN in a reserved top-level domain. */
#define EVAL_HOST "offline.invalid"
/* At most this many .reg files are layered (a registry export is usually one to a few). */
#define EVAL_FILES_MAX 64

struct eval_out {
    const struct rules_catalog *c;
    json_t *verdicts; /* --json: the verdicts gathered for one jansson document; else NULL */
};

static int print_eval_verdict(void *ctx, const struct rules_verdict *v)
{
    struct eval_out *o = ctx;
    const struct rules_info *info = rules_find(o->c, v->rule);
    if (o->verdicts) {
        json_t *row = json_object();
        json_object_set_new(row, "rule", jsonout_text(v->rule));
        json_object_set_new(row, "pass", json_boolean(v->pass));
        json_object_set_new(row, "severity", json_string(rules_severity_name(v->severity)));
        json_object_set_new(row, "component", jsonout_text(info ? info->component : ""));
        json_object_set_new(row, "reason", jsonout_text(v->reason));
        json_object_set_new(row, "remedy",
                            v->pass || !info ? json_null() : jsonout_text(info->remedy));
        json_object_set_new(row, "reference", jsonout_text(info ? info->reference : ""));
        return json_array_append_new(o->verdicts, row) ? -ENOMEM : 0;
    }
    printf("  %-4s %-7s %s\n       %s\n", v->pass ? "ok" : "FAIL", rules_severity_name(v->severity),
           TEXTCLEAN(v->rule), TEXTCLEAN(v->reason));
    if (!v->pass && info)
        printf("       remedy: %s\n", TEXTCLEAN(info->remedy));
    return 0;
}

/* The facts of `n` .reg files layered in order, or of a facts file; 0 or an exit code. */
static int eval_facts(char **files, size_t n, const char *facts_file, json_t **facts)
{
    char err[1024];
    int rc;
    if (facts_file) {
        rc = facts_load_file(facts_file, facts, err, sizeof(err));
    } else {
        struct regview *v = NULL;
        rc = regview_open_files((const char *const *)files, n, &v, err, sizeof(err));
        if (!rc) {
            rc = facts_extract(v, facts, err, sizeof(err));
            regview_free(v);
        }
    }
    if (rc) {
        cli_error("%s", err);
        return rc == -ENOMEM ? EXIT_SYSTEM : EXIT_BADINPUT;
    }
    return 0;
}

static int rules_eval(struct cli *cli, const struct cli_args *args)
{
    const char *roles_text = cli_value(&rules_eval_spec, args, "roles");
    const char *catalog_file = cli_value(&rules_eval_spec, args, "catalog");
    const char *facts_file = cli_value(&rules_eval_spec, args, "facts");
    if (args->argc > EVAL_FILES_MAX) {
        cli_error("rules eval: more than %d .reg files", EVAL_FILES_MAX);
        return EXIT_USAGE;
    }
    char **files = args->argv;
    size_t nfiles = (size_t)args->argc;
    if (!nfiles == !facts_file) {
        cli_error("rules eval: give .reg files or --facts FILE (one of the two; see `tlsgate "
                  "rules eval --help`)");
        return EXIT_USAGE;
    }
    unsigned roles;
    char bad[96];
    if (inv_roles_parse(roles_text ? roles_text : "", &roles, bad, sizeof(bad))) {
        cli_error("rules eval: --roles: unknown role '%s'", bad);
        return EXIT_BADINPUT;
    }

    struct rules_catalog *c = NULL;
    char *text = NULL, err[1024];
    int code = 0;
    if (catalog_file) {
        code = load_file(catalog_file, &c, &text);
    } else if (rules_load_default(&c, err, sizeof(err))) {
        cli_error("%s", err);
        code = EXIT_SYSTEM;
    }
    free(text);
    if (code)
        return code;

    json_t *facts = NULL, *report = NULL;
    char *body = NULL;
    struct eval_out o = {.c = c};
    if ((code = eval_facts(files, nfiles, facts_file, &facts)))
        goto out;
    /* The collector's report, over the wire format and back through the daemon's parser. */
    json_t *built =
        facts_build_report(facts, EVAL_HOST, utc_now(), facts_file ? "facts" : "regfile", 0);
    body = built ? json_dumps(built, JSON_COMPACT) : NULL;
    json_decref(built);
    if (!body) {
        cli_error("rules eval: out of memory");
        code = EXIT_SYSTEM;
        goto out;
    }
    if (report_parse(body, strlen(body), &report, err, sizeof(err))) {
        cli_error("%s: report: %s", facts_file ? facts_file : files[0], err);
        code = EXIT_BADINPUT;
        goto out;
    }

    char roles_buf[512];
    inv_roles_format(roles, roles_buf, sizeof(roles_buf));
    json_t *os = json_object_get(report, "os");
    int legacy = ingest_legacy_disabled(report);
    o.verdicts = cli->json ? json_array() : NULL;
    if (cli->json && !o.verdicts) {
        cli_error("rules eval: out of memory");
        code = EXIT_SYSTEM;
        goto out;
    }
    if (!cli->json) { /* --json prints one document once the verdicts are in (jsonout.h) */
        const char *name = json_string_value(json_object_get(os, "product_name"));
        json_t *build = json_object_get(os, "build");
        printf("%s%s: %s, build ", facts_file ? facts_file : files[0],
               nfiles > 1 ? " (and the files layered over it)" : "",
               name ? TEXTCLEAN(name) : "product name not reported");
        if (json_is_integer(build))
            printf("%lld", (long long)json_integer_value(build));
        else
            printf("not reported");
        printf("\nroles: %s; catalog %s\n", roles_buf, rules_version(c));
        printf("legacy protocols (SSL 3.0, TLS 1.0, TLS 1.1) disabled server-side: %s\n",
               legacy ? "yes" : "no");
        printf("verdicts:\n");
    }
    int blockers = 0, warnings = 0;
    if (rules_evaluate(c, report, roles, print_eval_verdict, &o, &blockers, &warnings)) {
        cli_error("rules eval: evaluation failed");
        code = EXIT_SYSTEM;
        goto out;
    }
    const char *state = blockers ? "not_ready" : "ready";
    if (cli->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "source", jsonout_text(facts_file ? facts_file : files[0]));
        json_object_set_new(doc, "catalog", jsonout_text(rules_version(c)));
        json_object_set_new(doc, "roles", cli_json_roles_array(roles));
        json_object_set_new(doc, "legacy_disabled", json_boolean(legacy));
        json_object_set(doc, "verdicts", o.verdicts);
        json_object_set_new(doc, "blockers", json_integer(blockers));
        json_object_set_new(doc, "warnings", json_integer(warnings));
        json_object_set_new(doc, "state", json_string(state));
        json_object_set(doc, "facts", facts);
        if (jsonout_print(stdout, doc)) {
            cli_error("rules eval: could not write the JSON answer");
            code = EXIT_SYSTEM;
            goto out;
        }
    } else {
        printf("state: %s (%d blocker%s, %d warning%s failing)\n", state, blockers,
               blockers == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
    }
    code = blockers ? EXIT_BLOCKED : EXIT_OK;
out:
    json_decref(o.verdicts);
    free(body);
    json_decref(report);
    json_decref(facts);
    rules_free(c);
    return code;
}

int cmd_rules(struct cli *cli, int argc, char **argv)
{
    static int (*const run[])(struct cli *, const struct cli_args *) = {
        rules_check, rules_load_cmd, rules_show, rules_blockers, rules_eval,
    };
    const struct cli_spec *spec;
    struct cli_args a;
    int code = cli_parse_sub(cli, "rules", RULES_USAGE_ALL, rules_specs, argc, argv, &spec, &a);
    if (code != CLI_RUN)
        return code;
    for (int i = 0; rules_specs[i]; i++)
        if (spec == rules_specs[i])
            return run[i](cli, &a);
    return EXIT_USAGE; /* not reached: cli_parse_sub picked one of rules_specs */
}

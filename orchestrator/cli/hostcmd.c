/*
 * hostcmd.c — `tlsgate host show HOST [--json]`: what the inventory says about a host, its state
 * (hoststate.h), when it last reported, a summary of its facts, and every verdict of its last
 * evaluation with reason and remedy, failing ones first (blockers before warnings).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gate.h"
#include "hoststate.h"
#include "inventory.h"
#include "rules.h"
#include "store.h"
#include "waiver.h"

static void host_usage(FILE *out)
{
    fprintf(out, "usage: tlsgate host show HOST [--json]\n\n"
                 "Facts, verdicts, reasons and remedies of one host (name case-insensitive).\n");
}

struct host_row {
    long long id;
    char *name, *site, *collector, *os, *state, *catalog_version, *body;
    unsigned roles;
    bool reported;
    long long collected_at, received_at;
    int blockers, warnings, legacy_disabled;
};

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static void host_row_release(struct host_row *h)
{
    free(h->name);
    free(h->site);
    free(h->collector);
    free(h->os);
    free(h->state);
    free(h->catalog_version);
    free(h->body);
}

/* 0 found, -ENOENT unknown host, other negative: store error. */
static int host_read(struct cli *cli, struct store *s, const char *name, struct host_row *h)
{
    struct inv_host ih;
    int rc = inv_host_get(s, name, utc_now() - cli->config.stale_after, &ih);
    if (rc)
        return rc;
    h->id = ih.id;
    h->name = strdup(ih.name);
    h->site = strdup(ih.site);
    h->roles = ih.roles;
    h->collector = strdup(ih.collector);
    h->os = strdup(ih.os);
    h->state = strdup(ih.state);
    /* Its stored report, if any. */
    sqlite3_stmt *st;
    if ((rc = store_prepare(s,
                            "SELECT collected_at, received_at, catalog_version, blockers, "
                            "warnings, legacy_disabled, body FROM report WHERE host_id = ?",
                            &st))) {
        host_row_release(h);
        return rc;
    }
    sqlite3_bind_int64(st, 1, h->id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        h->reported = true;
        h->collected_at = sqlite3_column_int64(st, 0);
        h->received_at = sqlite3_column_int64(st, 1);
        h->catalog_version = col_dup(st, 2);
        h->blockers = sqlite3_column_int(st, 3);
        h->warnings = sqlite3_column_int(st, 4);
        h->legacy_disabled = sqlite3_column_int(st, 5);
        h->body = col_dup(st, 6);
    } else if (step != SQLITE_DONE) {
        rc = store_sqlite_fail(s, "read host");
    }
    sqlite3_finalize(st);
    if (rc)
        host_row_release(h);
    return rc;
}

/*
 * One fact as text in `buf`. Each fact of a printf gets its own buffer (FACT_BUFS of them): one
 * buffer passed twice prints the last value in both places. A string comes from the report, so
 * it is cleaned (textclean.h: no terminal escapes or forged lines from a collector).
 */
#define FACT_BUFS 8
static const char *fact_text(json_t *v, char *buf, size_t size, bool hex)
{
    if (!v || json_is_null(v))
        return "absent";
    if (json_is_integer(v)) {
        snprintf(buf, size, hex ? "0x%llX" : "%lld", (long long)json_integer_value(v));
    } else if (json_is_string(v)) {
        textclean(json_string_value(v), buf, size);
    } else if (json_is_boolean(v))
        snprintf(buf, size, "%s", json_is_true(v) ? "on" : "off");
    else
        snprintf(buf, size, "?");
    return buf;
}

static json_t *at(json_t *r, const char *a, const char *b, const char *c, const char *d)
{
    json_t *v = json_object_get(r, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    if (d)
        v = json_object_get(v, d);
    return v;
}

static void print_facts(json_t *r)
{
    char f[FACT_BUFS][128];
#define F(i, v, hex) fact_text((v), f[i], sizeof(f[i]), (hex))
    printf("facts:\n");
    printf("  os            %s, build %s, %s, %s, ProductType %s\n",
           F(0, at(r, "os", "product_name", NULL, NULL), false),
           F(1, at(r, "os", "build", NULL, NULL), false),
           F(2, at(r, "os", "arch", NULL, NULL), false),
           F(3, at(r, "os", "installation_type", NULL, NULL), false),
           F(4, at(r, "os", "product_type", NULL, NULL), false));
    json_t *hf = json_object_get(r, "hotfixes");
    if (json_is_array(hf)) {
        printf("  hotfixes      %zu:", json_array_size(hf));
        size_t k;
        json_t *kb;
        json_array_foreach(hf, k, kb) {
            if (k == 40) {
                printf(" ...");
                break;
            }
            printf(" %s", json_is_string(kb) ? TEXTCLEAN(json_string_value(kb)) : "?");
        }
        printf("\n");
    } else {
        printf("  hotfixes      not reported\n");
    }
    json_t *ni = at(r, "updates", "not_installed", NULL, NULL);
    if (json_object_size(ni)) {
        printf("  not installed");
        const char *kb;
        json_t *st;
        size_t k = 0;
        json_object_foreach(ni, kb, st) {
            if (k++ == 20) {
                printf(" ...");
                break;
            }
            /* the names are "KB" and digits: report validation checked them */
            printf(" %s (CurrentState %s)", TEXTCLEAN(kb), F(0, st, true));
        }
        printf("\n");
    }
    printf("  rollup        %s\n", json_object_get(r, "updates")
                                       ? F(0, at(r, "updates", "rollup", NULL, NULL), false)
                                       : "not reported");
    static const char *const protos[] = {"ssl3", "tls10", "tls11", "tls12", "tls13"};
    for (size_t i = 0; i < 5; i++)
        printf("  %-13s client Enabled=%s DisabledByDefault=%s; server Enabled=%s "
               "DisabledByDefault=%s\n",
               protos[i], F(0, at(r, "schannel", protos[i], "client", "enabled"), false),
               F(1, at(r, "schannel", protos[i], "client", "disabled_by_default"), false),
               F(2, at(r, "schannel", protos[i], "server", "enabled"), false),
               F(3, at(r, "schannel", protos[i], "server", "disabled_by_default"), false));
    printf("  winhttp       DefaultSecureProtocols %s, Wow6432Node %s\n",
           F(0, at(r, "winhttp", "default_secure_protocols", NULL, NULL), true),
           F(1, at(r, "winhttp", "default_secure_protocols_wow64", NULL, NULL), true));
    printf("  .NET          Release %s; v4.0.30319 SchUseStrongCrypto %s, SystemDefaultTlsVersions "
           "%s; Wow6432Node SchUseStrongCrypto %s, SystemDefaultTlsVersions %s\n",
           F(0, at(r, "dotnet", "release", NULL, NULL), false),
           F(1, at(r, "dotnet", "v4", "strong_crypto", NULL), false),
           F(2, at(r, "dotnet", "v4", "system_default_tls", NULL), false),
           F(3, at(r, "dotnet", "v4_wow64", "strong_crypto", NULL), false),
           F(4, at(r, "dotnet", "v4_wow64", "system_default_tls", NULL), false));
    printf("  .NET 3.5      installed %s; v2.0.50727 SchUseStrongCrypto %s, "
           "SystemDefaultTlsVersions %s; Wow6432Node SchUseStrongCrypto %s, "
           "SystemDefaultTlsVersions %s\n",
           F(0, at(r, "dotnet", "v35_installed", NULL, NULL), false),
           F(1, at(r, "dotnet", "v2", "strong_crypto", NULL), false),
           F(2, at(r, "dotnet", "v2", "system_default_tls", NULL), false),
           F(3, at(r, "dotnet", "v2_wow64", "strong_crypto", NULL), false),
           F(4, at(r, "dotnet", "v2_wow64", "system_default_tls", NULL), false));
    static const char *const lists[][2] = {{"instances", "SQL Server   "},
                                           {"rs_instances", "SSRS         "}};
    for (size_t l = 0; l < 2; l++) {
        size_t i;
        json_t *e;
        json_array_foreach(at(r, "sql", lists[l][0], NULL, NULL), i, e) {
            printf("  %s %s %s, PatchLevel %s (%s)\n", lists[l][1],
                   F(0, json_object_get(e, "name"), false),
                   F(1, json_object_get(e, "version"), false),
                   F(2, json_object_get(e, "patch_level"), false),
                   F(3, json_object_get(e, "edition"), false));
        }
    }
    printf("  SQL clients   Native Client 11 %s, ODBC 17 %s, ODBC 18 %s\n",
           F(0, at(r, "sql", "native_client_11", NULL, NULL), false),
           F(1, at(r, "sql", "odbc_17", NULL, NULL), false),
           F(2, at(r, "sql", "odbc_18", NULL, NULL), false));
    json_t *wsus = at(r, "wsus", "installed", NULL, NULL);
    if (json_is_true(wsus))
        printf("  WSUS          installed, version %s\n",
               F(0, at(r, "wsus", "version", NULL, NULL), false));
    else
        printf("  WSUS          %s\n", json_is_false(wsus) ? "not installed" : "not reported");
    printf("  FIPS policy   %s\n", F(0, json_object_get(r, "fips"), false));
#undef F
}

static int print_verdicts(struct cli *cli, struct store *s, const struct rules_catalog *c,
                          long long host_id)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT rule, pass, severity, reason FROM verdict WHERE host_id = ? "
                           "ORDER BY pass, severity = 'warning', rule",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    int step, n = 0;
    if (cli->json)
        printf(", \"verdicts\": [");
    else
        printf("verdicts:\n");
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *rule = (const char *)sqlite3_column_text(st, 0);
        bool pass = sqlite3_column_int(st, 1);
        const char *sev = (const char *)sqlite3_column_text(st, 2);
        const char *reason = (const char *)sqlite3_column_text(st, 3);
        const struct rules_info *info = rules_find(c, rule);
        const char *remedy = info ? info->remedy : NULL;
        if (cli->json) {
            printf("%s\n  {\"rule\": ", n ? "," : "");
            jsonout_string(stdout, rule);
            printf(", \"pass\": %s, \"severity\": ", pass ? "true" : "false");
            jsonout_string(stdout, sev);
            printf(", \"component\": ");
            if (info)
                jsonout_string(stdout, info->component);
            else
                printf("null");
            printf(", \"reason\": ");
            jsonout_string(stdout, reason);
            printf(", \"remedy\": ");
            if (remedy)
                jsonout_string(stdout, remedy);
            else
                printf("null");
            printf("}");
        } else {
            printf("  %-4s %-7s %s\n       %s\n", pass ? "ok" : "FAIL", sev, TEXTCLEAN(rule),
                   TEXTCLEAN(reason));
            if (!pass)
                printf("       remedy: %s\n",
                       remedy ? TEXTCLEAN(remedy)
                              : "(rule not in the active catalog: run `tlsgate rules show`)");
        }
        n++;
    }
    rc = step == SQLITE_DONE ? 0 : store_sqlite_fail(s, "read verdicts");
    sqlite3_finalize(st);
    if (cli->json)
        printf("%s]", n ? "\n" : "");
    else if (!n)
        printf("  (none: no report stored)\n");
    return rc;
}

static void json_opt_string(const char *key, const char *v)
{
    printf(", \"%s\": ", key);
    if (v)
        jsonout_string(stdout, v);
    else
        printf("null");
}

static int host_show(struct cli *cli, const char *name)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct host_row h = {0};
    int rc = host_read(cli, s, name, &h);
    if (rc == -ENOENT) {
        cli_error("host show: unknown host '%s' (see `tlsgate inventory list`)", name);
        return EXIT_BADINPUT;
    }
    if (rc) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    struct waiver waiver = {0};
    struct rules_catalog *c;
    if (waiver_get(s, h.id, utc_now(), &waiver) || rules_load_active(s, &c)) {
        cli_error("%s", store_errmsg(s));
        host_row_release(&h);
        return EXIT_SYSTEM;
    }
    json_t *report = h.body ? json_loads(h.body, 0, NULL) : NULL;
    char roles[256], t1[32], t2[32];
    inv_roles_format(h.roles, roles, sizeof(roles));
    if (cli->json) {
        printf("{\"name\": ");
        jsonout_string(stdout, h.name);
        json_opt_string("site", h.site);
        printf(", \"roles\": [");
        for (int i = 0, n = 0; i < ROLE_COUNT; i++)
            if (h.roles & (1u << i)) {
                printf("%s", n++ ? ", " : "");
                jsonout_string(stdout, inv_role_names[i]);
            }
        printf("]");
        json_opt_string("collector", h.collector);
        json_opt_string("os", h.os);
        json_opt_string("state", h.state);
        json_opt_string("last_report",
                        h.reported ? utc_iso8601(h.collected_at, t1, sizeof(t1)) : NULL);
        json_opt_string("received_at",
                        h.reported ? utc_iso8601(h.received_at, t2, sizeof(t2)) : NULL);
        json_opt_string("catalog_version", h.catalog_version);
        if (h.reported)
            printf(", \"blockers\": %d, \"warnings\": %d, \"legacy_disabled\": %s", h.blockers,
                   h.warnings, h.legacy_disabled ? "true" : "false");
        else
            printf(", \"blockers\": null, \"warnings\": null, \"legacy_disabled\": null");
        printf(", \"waiver\": ");
        if (waiver.active) {
            printf("{\"reason\": ");
            jsonout_string(stdout, waiver.reason);
            json_opt_string("until", waiver.until_at
                                         ? utc_iso8601(waiver.until_at, t1, sizeof(t1)) : NULL);
            json_opt_string("by", waiver.by);
            printf("}");
        } else {
            printf("null");
        }
        printf(", \"report\": ");
        if (report) {
            char *dump = json_dumps(report, JSON_COMPACT);
            printf("%s", dump ? dump : "null");
            free(dump);
        } else {
            printf("null");
        }
    } else {
        printf("%s\n  site %s, roles %s, collector %s%s%s\n", TEXTCLEAN(h.name),
               TEXTCLEAN(h.site), roles, TEXTCLEAN(h.collector),
               h.os && *h.os ? ", inventory os " : "", TEXTCLEAN(h.os));
        printf("state: %s", h.state);
        if (h.reported)
            printf(" (%d blocker%s, %d warning%s failing; legacy protocols %s)\n"
                   "last report: collected %s, received %s, evaluated with catalog %s\n",
                   h.blockers, h.blockers == 1 ? "" : "s", h.warnings,
                   h.warnings == 1 ? "" : "s",
                   h.legacy_disabled ? "disabled server-side" : "not all disabled",
                   utc_iso8601(h.collected_at, t1, sizeof(t1)),
                   utc_iso8601(h.received_at, t2, sizeof(t2)), TEXTCLEAN(h.catalog_version));
        else
            printf(" (never reported)\n");
        if (waiver.active)
            printf("waived %s%s by %s: %s (does not block)\n",
                   waiver.until_at ? "until " : "until unwaived",
                   waiver.until_at ? utc_iso8601(waiver.until_at, t1, sizeof(t1)) : "",
                   TEXTCLEAN(waiver.by), TEXTCLEAN(waiver.reason));
        if (report)
            print_facts(report);
    }
    rc = print_verdicts(cli, s, c, h.id);
    if (cli->json)
        printf("}\n");
    json_decref(report);
    rules_free(c);
    host_row_release(&h);
    if (rc) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}

int cmd_host(struct cli *cli, int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "--help")) {
        host_usage(stdout);
        return EXIT_OK;
    }
    if (argc != 3 || strcmp(argv[1], "show")) {
        host_usage(stderr);
        return EXIT_USAGE;
    }
    /* One read transaction: the header, facts and verdicts come from the same stored report
     * even while the daemon writes. */
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    if (store_begin(s, false)) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    code = host_show(cli, argv[2]);
    store_rollback(s);
    return code;
}

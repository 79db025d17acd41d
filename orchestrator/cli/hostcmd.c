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
#include "ingest_reads.h"
#include "inventory.h"
#include "pollstatus.h"
#include "rules.h"
#include "store.h"
#include "waiver.h"

#define HOST_USAGE                                                                                 \
    "Usage: tlsgate host show HOST [--json]\n\n"                                                   \
    "Facts, verdicts, reasons and remedies of one host (name case-insensitive).\n"

static const struct cli_spec host_show_spec = {
    .name = "host show",
    .word = "show",
    .usage = HOST_USAGE,
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
const struct cli_spec *const host_specs[] = {&host_show_spec, NULL};

struct host_row {
    long long id;
    char *name, *site, *collector, *os, *state, *catalog_version, *body;
    unsigned roles;
    bool reported;
    long long collected_at, received_at;
    int blockers, warnings, legacy_disabled;
};

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
    struct ingest_stored r;
    if ((rc = ingest_stored_get(s, h->id, &r))) {
        host_row_release(h);
        return rc;
    }
    h->reported = r.reported;
    h->collected_at = r.collected_at;
    h->received_at = r.received_at;
    h->catalog_version = r.catalog_version; /* the row takes them over */
    h->blockers = r.blockers;
    h->warnings = r.warnings;
    h->legacy_disabled = r.legacy_disabled;
    h->body = r.body;
    return 0;
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
        json_array_foreach(hf, k, kb)
        {
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
        json_object_foreach(ni, kb, st)
        {
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
        json_array_foreach(at(r, "sql", lists[l][0], NULL, NULL), i, e)
        {
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

struct verdicts_out {
    bool json;
    const struct rules_catalog *catalog;
    int n;
};

static int print_verdict(const struct ingest_verdict_row *v, void *arg)
{
    struct verdicts_out *o = arg;
    const struct rules_info *info = rules_find(o->catalog, v->rule);
    const char *remedy = info ? info->remedy : NULL;
    if (o->json) {
        printf("%s\n  {\"rule\": ", o->n ? "," : "");
        jsonout_string(stdout, v->rule);
        printf(", \"pass\": %s, \"severity\": ", v->pass ? "true" : "false");
        jsonout_string(stdout, v->severity);
        jsonout_member(stdout, ", \"component\": ", info ? info->component : NULL);
        jsonout_member(stdout, ", \"reason\": ", v->reason);
        jsonout_member(stdout, ", \"remedy\": ", remedy);
        printf("}");
    } else {
        printf("  %-4s %-7s %s\n       %s\n", v->pass ? "ok" : "FAIL", v->severity,
               TEXTCLEAN(v->rule), TEXTCLEAN(v->reason));
        if (!v->pass)
            printf("       remedy: %s\n",
                   remedy ? TEXTCLEAN(remedy)
                          : "(rule not in the active catalog: run `tlsgate rules show`)");
    }
    o->n++;
    return 0;
}

static int print_verdicts(struct cli *cli, struct store *s, const struct rules_catalog *c,
                          long long host_id)
{
    struct verdicts_out o = {cli->json, c, 0};
    if (cli->json)
        printf(", \"verdicts\": [");
    else
        printf("verdicts:\n");
    int rc = ingest_verdicts_each(s, host_id, INGEST_VERDICTS_ALL, print_verdict, &o);
    if (cli->json)
        printf("%s]", o.n ? "\n" : "");
    else if (!o.n)
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

/* ---- the daemon's side (pollstatus.h): why a host is unknown or stale ---- */

static void pull_time(bool json, const char *key, long long t, const char *none)
{
    char b[UTC_ISO8601_SIZE + 8];
    if (json) {
        printf(", \"%s\": ", key);
        if (t)
            jsonout_string(stdout, utc_iso8601(t, b, sizeof(b)));
        else
            printf("null");
    } else {
        printf("%s %s", key, t ? utc_iso8601(t, b, sizeof(b)) : none);
    }
}

static int print_pull(const struct pollstatus_host *h, void *arg)
{
    bool json = *(const bool *)arg;
    char why[STORE_ERROR_SIZE + 128];
    pollstatus_why_unknown(h, why, sizeof(why));
    if (json) {
        printf(", \"pull\": {\"reachable\": %s",
               *pollstatus_reachable(h) ? pollstatus_reachable(h) : "null");
        pull_time(true, "last_attempt", h->last_attempt_at, NULL);
        pull_time(true, "last_success", h->last_success_at, NULL);
        printf(", \"failures\": %d", h->failures);
        pull_time(true, "next_attempt", h->next_at, NULL);
        pull_time(true, "cert_not_after", h->cert_not_after, NULL);
        jsonout_member(stdout, ", \"cert_fingerprint\": ", h->cert_fingerprint);
        jsonout_member(stdout, ", \"cert_issuer\": ", h->cert_issuer);
        pull_time(true, "cert_changed_at", h->cert_changed_at, NULL);
        jsonout_member(stdout,
                       ", \"error_kind\": ", h->last_error ? pollstatus_kind_id(h->kind) : NULL);
        jsonout_member(stdout, ", \"last_error\": ", h->last_error);
        jsonout_member(stdout, "}, \"unknown_reason\": ", why[0] ? why : NULL);
        return 0;
    }
    if (why[0])
        printf("why unknown: %s\n", why);
    printf("pull: ");
    pull_time(false, "last attempt", h->last_attempt_at, "never");
    printf(", ");
    pull_time(false, "last success", h->last_success_at, "never");
    printf(", %d failure%s in a row, ", h->failures, h->failures == 1 ? "" : "s");
    pull_time(false, "next attempt", h->next_at, "not scheduled (is the daemon running?)");
    printf("\n");
    if (h->cert_not_after) {
        printf("  collector certificate: ");
        pull_time(false, h->cert_not_after < utc_now() ? "EXPIRED" : "expires", h->cert_not_after,
                  "");
        printf(" (as last seen at a handshake)\n");
    }
    if (h->cert_fingerprint)
        printf("  certificate sha256 %s\n  issuer %s\n", h->cert_fingerprint,
               h->cert_issuer ? h->cert_issuer : "?");
    if (h->cert_changed_at) {
        printf("  certificate CHANGED ");
        pull_time(false, "at", h->cert_changed_at, "");
        printf(", not through enrollment: check it, then `tlsgate enroll accept %s`\n", h->name);
    }
    const char *label = pollstatus_kind_label(h->kind);
    if (h->last_error && !strncmp(h->last_error, label, strlen(label)))
        printf("  last error: %s\n", h->last_error);
    else if (h->last_error)
        printf("  last error (%s): %s\n", label, h->last_error);
    return 0;
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
        jsonout_member(stdout, "{\"name\": ", h.name);
        json_opt_string("site", h.site);
        printf(", \"roles\": ");
        cli_json_roles(stdout, h.roles);
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
            jsonout_member(stdout, "{\"reason\": ", waiver.reason);
            json_opt_string("until",
                            waiver.until_at ? utc_iso8601(waiver.until_at, t1, sizeof(t1)) : NULL);
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
        printf("%s\n  site %s, roles %s, collector %s%s%s\n", TEXTCLEAN(h.name), TEXTCLEAN(h.site),
               roles, TEXTCLEAN(h.collector), h.os && *h.os ? ", inventory os " : "",
               TEXTCLEAN(h.os));
        printf("state: %s", h.state);
        if (h.reported)
            printf(" (%d blocker%s, %d warning%s failing; legacy protocols %s)\n"
                   "last report: collected %s, received %s, evaluated with catalog %s\n",
                   h.blockers, h.blockers == 1 ? "" : "s", h.warnings, h.warnings == 1 ? "" : "s",
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
    }
    rc = pollstatus_get(s, h.name, utc_now() - cli->config.stale_after, print_pull, &cli->json);
    if (!rc)
        rc = cli_print_wire(cli, s, h.id, h.name, h.reported && h.legacy_disabled, "");
    if (!rc && !cli->json && report)
        print_facts(report);
    if (!rc)
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
    const struct cli_spec *spec;
    struct cli_args a;
    int code = cli_parse_sub(cli, "host", HOST_USAGE, host_specs, argc, argv, &spec, &a);
    if (code != CLI_RUN)
        return code;
    /* One read transaction: the header, facts and verdicts come from the same stored report
     * even while the daemon writes. */
    struct store *s = cli_store_read(cli, &code);
    if (!s)
        return code;
    code = host_show(cli, a.argv[0]);
    store_rollback(s);
    return code;
}

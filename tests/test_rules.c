/*
 * test_rules.c — the readiness catalog and engine: every per-OS report fixture evaluated to its
 * exact verdict set, the boundary of each version comparison, absent facts, and the catalog
 * validation that refuses a malformed rule by its id.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inventory.h"
#include "rules.h"
#include "testutil.h"

static struct rules_catalog *cat;

static void setup(void)
{
    char err[512];
    ck_assert_msg(rules_load_default(&cat, err, sizeof(err)) == 0, "%s", err);
}

static void teardown(void) { rules_free(cat); }

static json_t *fixture(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/fixtures/reports/%s.json", name);
    json_error_t je;
    json_t *r = json_load_file(tu_source_path(rel), JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(r != NULL, "%s: %s", rel, je.text);
    return r;
}

#define MAXV 64
struct got {
    size_t n;
    struct rules_verdict v[MAXV];
    int blockers, warnings;
};

static int collect(void *ctx, const struct rules_verdict *v)
{
    struct got *g = ctx;
    ck_assert_uint_lt(g->n, MAXV);
    g->v[g->n++] = *v;
    return 0;
}

static void eval(json_t *report, unsigned roles, struct got *g)
{
    memset(g, 0, sizeof(*g));
    ck_assert_int_eq(rules_evaluate(cat, report, roles, collect, g, &g->blockers, &g->warnings), 0);
}

/* The verdicts as "rule:pass rule:FAIL ..." in catalog order. */
static char *verdict_line(const struct got *g)
{
    static char buf[4096];
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < g->n; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s:%s", i ? " " : "", g->v[i].rule,
                              g->v[i].pass ? "pass" : "FAIL");
    return buf;
}

static const struct rules_verdict *find(const struct got *g, const char *rule)
{
    for (size_t i = 0; i < g->n; i++)
        if (!strcmp(g->v[i].rule, rule))
            return &g->v[i];
    return NULL;
}

static void expect(const char *name, unsigned roles, const char *line, int blockers, int warnings)
{
    json_t *r = fixture(name);
    struct got g;
    eval(r, roles, &g);
    ck_assert_str_eq(verdict_line(&g), line);
    ck_assert_int_eq(g.blockers, blockers);
    ck_assert_int_eq(g.warnings, warnings);
    json_decref(r);
}

#define SERVER_V4                                                                                  \
    "site-system-dotnet:pass site-system-strong-crypto:pass "                                      \
    "site-system-strong-crypto-v2:pass "

START_TEST(test_win7_unpatched_client_blocks_on_winhttp_and_schannel)
{
    expect("win7-sp1-x64-unpatched", ROLE_CLIENT,
           "os-tls12-capable:pass schannel-tls12-client:FAIL software-center-schannel-default:FAIL "
           "winhttp-kb3140245:FAIL winhttp-dsp:FAIL winhttp-dsp-wow64:FAIL "
           "software-center-dotnet:FAIL software-center-strong-crypto:FAIL fips-policy:pass",
           4, 3);
    json_t *r = fixture("win7-sp1-x64-unpatched");
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    ck_assert_str_eq(find(&g, "winhttp-kb3140245")->reason,
                     "WinHTTP cannot default to TLS 1.2 without KB3140245: installed updates "
                     "(CBS CurrentState) lack KB3140245");
    ck_assert_str_eq(find(&g, "schannel-tls12-client")->reason,
                     "TLS 1.2 cannot be used as a client even by an application that asks for "
                     "it: SCHANNEL TLS 1.2\\Client is off for applications that ask for it "
                     "(Enabled=absent, DisabledByDefault=absent; build 7601 default: off), "
                     "needs on");
    ck_assert_str_eq(find(&g, "winhttp-dsp")->reason,
                     "WinHTTP does not offer TLS 1.2 by default: WinHttp DefaultSecureProtocols "
                     "(native) not reported");
    json_decref(r);
}
END_TEST

START_TEST(test_win7_dsp_native_only_fails_naming_wow6432node)
{
    expect("win7-kb3140245-native-only", ROLE_CLIENT,
           "os-tls12-capable:pass schannel-tls12-client:pass "
           "software-center-schannel-default:pass winhttp-kb3140245:pass "
           "winhttp-dsp:pass winhttp-dsp-wow64:FAIL software-center-dotnet:pass "
           "software-center-strong-crypto:pass fips-policy:pass",
           1, 0);
    json_t *r = fixture("win7-kb3140245-native-only");
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    const struct rules_verdict *v = find(&g, "winhttp-dsp-wow64");
    ck_assert_int_eq(v->severity, RULES_BLOCKER);
    ck_assert_str_eq(v->reason, "32-bit WinHTTP (Wow6432Node) does not offer TLS 1.2 by "
                                "default: WinHttp DefaultSecureProtocols (Wow6432Node) not "
                                "reported");
    ck_assert_str_eq(find(&g, "winhttp-dsp")->reason,
                     "ok: WinHttp DefaultSecureProtocols (native) is 0xA00 (includes 0x800)");
    json_decref(r);
}
END_TEST

START_TEST(test_win7_ready_client_passes_every_rule)
{
    expect("win7-ready", ROLE_CLIENT,
           "os-tls12-capable:pass schannel-tls12-client:pass "
           "software-center-schannel-default:pass winhttp-kb3140245:pass "
           "winhttp-dsp:pass winhttp-dsp-wow64:pass software-center-dotnet:pass "
           "software-center-strong-crypto:pass fips-policy:pass",
           0, 0);
}
END_TEST

START_TEST(test_win81_client_ready_by_os_defaults_warns_on_strong_crypto)
{
    expect("win81", ROLE_CLIENT,
           "os-tls12-capable:pass schannel-tls12-client:pass "
           "software-center-schannel-default:pass winhttp-dsp-os-default:pass "
           "winhttp-dsp-os-default-wow64:pass software-center-dotnet:pass "
           "software-center-strong-crypto:FAIL fips-policy:pass",
           0, 1);
}
END_TEST

START_TEST(test_win10_22h2_defaults_ready)
{
    expect("win10-22h2", ROLE_CLIENT,
           "os-tls12-capable:pass schannel-tls12-client:pass "
           "software-center-schannel-default:pass winhttp-dsp-os-default:pass "
           "winhttp-dsp-os-default-wow64:pass software-center-dotnet:pass "
           "software-center-strong-crypto:FAIL fips-policy:pass",
           0, 1);
    json_t *r = fixture("win10-22h2");
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    ck_assert_str_eq(find(&g, "schannel-tls12-client")->reason,
                     "ok: SCHANNEL TLS 1.2\\Client is on for applications that ask for it "
                     "(Enabled=absent, DisabledByDefault=absent; build 19045 default: on)");
    json_decref(r);
}
END_TEST

START_TEST(test_win11_client_passes_every_rule)
{
    expect("win11-23h2", ROLE_CLIENT,
           "os-tls12-capable:pass schannel-tls12-client:pass "
           "software-center-schannel-default:pass winhttp-dsp-os-default:pass "
           "winhttp-dsp-os-default-wow64:pass software-center-dotnet:pass "
           "software-center-strong-crypto:pass fips-policy:pass",
           0, 0);
}
END_TEST

/* Server 2012 without KB3154519: the .NET 3.5 strong-crypto values have no effect (warning). */
#define SERVER_V4_NO_R35                                                                           \
    "site-system-dotnet:pass site-system-strong-crypto:pass "                                      \
    "site-system-strong-crypto-v2:FAIL "
#define SUP2012(wsus)                                                                              \
    "os-tls12-capable:pass schannel-tls12-client:pass schannel-tls12-client-default:pass "         \
    "schannel-tls12-server:pass "                                                                  \
    "winhttp-kb3140245:pass winhttp-dsp:pass winhttp-dsp-wow64:pass " SERVER_V4_NO_R35             \
    "sql-native-client:pass sql-odbc18-version:pass sql-odbc18-known-bad:pass "                    \
    "wsus-2012-kb4022721:" wsus " fips-policy:pass"

START_TEST(test_wsus_2012_with_kb4022721_passes)
{
    expect("server2012-wsus-kb4022721", ROLE_SOFTWARE_UPDATE_POINT, SUP2012("pass"), 0, 1);
}
END_TEST

START_TEST(test_wsus_2012_without_kb4022721_blocks)
{
    expect("server2012-wsus-unpatched", ROLE_SOFTWARE_UPDATE_POINT, SUP2012("FAIL"), 1, 1);
    /* The same host as a plain client is still checked: WSUS is installed on it. */
    json_t *r = fixture("server2012-wsus-unpatched");
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    ck_assert_int_eq(find(&g, "wsus-2012-kb4022721")->pass, 0);
    /* Without WSUS, a client has no WSUS rule. */
    json_object_set_new(json_object_get(r, "wsus"), "installed", json_false());
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_null(find(&g, "wsus-2012-kb4022721"));
    json_decref(r);
}
END_TEST

START_TEST(test_sql2014_sp1_below_4219_blocks_site_database)
{
    expect("server2012r2-sql2014sp1-snac", ROLE_SITE_DATABASE,
           "os-tls12-capable:pass schannel-tls12-client:pass schannel-tls12-client-default:pass "
           "schannel-tls12-server:pass winhttp-dsp-os-default:pass "
           "winhttp-dsp-os-default-wow64:pass " SERVER_V4_NO_R35 "sql-engine-tls12:FAIL "
           "sql-engine-known-bad:pass sql-native-client:FAIL sql-odbc18-version:FAIL "
           "fips-policy:pass",
           2, 2);
    json_t *r = fixture("server2012r2-sql2014sp1-snac");
    struct got g;
    eval(r, ROLE_SITE_DATABASE, &g);
    ck_assert_str_eq(find(&g, "sql-engine-tls12")->reason,
                     "the site database engine cannot use TLS 1.2: MSSQLSERVER: engine build is "
                     "12.0.4100.1 (PatchLevel 12.1.4100.1), below 12.0.4219.0, the first TLS 1.2 "
                     "build of SQL Server 2014 SP1 GDR (fix: the SQL Server 2014 SP1 GDR TLS 1.2 "
                     "update (12.0.4219.0; latest GDR KB4019091), or SP2/SP3)");
    ck_assert_str_eq(find(&g, "sql-native-client")->reason,
                     "SQL Server Native Client cannot use TLS 1.2: SQL Server Native Client 11.0 "
                     "is 11.3.6538.0, needs >= 11.*.7001.0");
    json_decref(r);
}
END_TEST

#define SECONDARY(express)                                                                         \
    "os-tls12-capable:pass schannel-tls12-client:pass schannel-tls12-client-default:pass "         \
    "schannel-tls12-server:pass winhttp-dsp-os-default:pass "                                      \
    "winhttp-dsp-os-default-wow64:pass " SERVER_V4                                                 \
    "sql-engine-tls12:pass sql-engine-known-bad:pass sql-express-secondary:" express " "           \
    "sql-native-client:pass sql-odbc18-version:pass sql-odbc18-known-bad:pass "                    \
    "fips-policy:pass"

static void set_instance_version(json_t *r, const char *v)
{
    json_t *inst = json_array_get(json_object_get(json_object_get(r, "sql"), "instances"), 0);
    json_object_set_new(inst, "version", json_string(v));
    json_object_set_new(inst, "patch_level", json_string(v));
}

START_TEST(test_sql_express_5026_passes_5025_fails_on_secondary)
{
    expect("server2016-sql2016sp2-express", ROLE_SECONDARY_SITE_SERVER, SECONDARY("pass"), 0, 0);
    json_t *r = fixture("server2016-sql2016sp2-express");
    set_instance_version(r, "13.2.5025.0");
    struct got g;
    eval(r, ROLE_SECONDARY_SITE_SERVER, &g);
    ck_assert_str_eq(verdict_line(&g), SECONDARY("FAIL"));
    ck_assert_str_eq(find(&g, "sql-express-secondary")->reason,
                     "the secondary site's SQL Server Express is too old for TLS 1.2: "
                     "CONFIGMGRSEC: engine build is 13.0.5025.0 (PatchLevel 13.2.5025.0), needs "
                     ">= 13.0.5026.0");
    /* A full (non-Express) edition on a secondary site is not held to the Express minimum. */
    json_t *inst = json_array_get(json_object_get(json_object_get(r, "sql"), "instances"), 0);
    json_object_set_new(inst, "edition", json_string("Standard Edition"));
    eval(r, ROLE_SECONDARY_SITE_SERVER, &g);
    ck_assert_int_eq(find(&g, "sql-express-secondary")->pass, 1);
    json_decref(r);
}
END_TEST

START_TEST(test_server2019_site_server_ready)
{
    expect("server2019-site-server", ROLE_SITE_SERVER,
           "os-tls12-capable:pass schannel-tls12-client:pass schannel-tls12-client-default:pass "
           "schannel-tls12-server:pass winhttp-dsp-os-default:pass "
           "winhttp-dsp-os-default-wow64:pass " SERVER_V4
           "sql-native-client:pass sql-odbc18-version:pass sql-odbc18-known-bad:pass "
           "fips-policy:pass",
           0, 0);
}
END_TEST

START_TEST(test_only_applicable_rules_produce_verdicts)
{
    json_t *r = fixture("server2019-site-server");
    struct got g;
    eval(r, 0, &g);
    ck_assert_uint_eq(g.n, 0);
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_null(find(&g, "site-system-dotnet"));
    ck_assert_ptr_nonnull(find(&g, "software-center-dotnet"));
    /* the site systems added to the vocabulary: .NET, strong crypto and SCHANNEL server rules
     * for each, the SQL client components for those that use them (not the enrollment proxy) */
    static const unsigned added[] = {
        ROLE_SERVICE_CONNECTION_POINT,     ROLE_ENROLLMENT_POINT,
        ROLE_ENDPOINT_PROTECTION_POINT,    ROLE_CERTIFICATE_REGISTRATION_POINT,
        ROLE_DATA_WAREHOUSE_SERVICE_POINT, ROLE_STATE_MIGRATION_POINT,
        ROLE_ASSET_INTELLIGENCE_SYNC_POINT};
    for (size_t i = 0; i < sizeof(added) / sizeof(added[0]); i++) {
        eval(r, added[i], &g);
        ck_assert_ptr_nonnull(find(&g, "site-system-dotnet"));
        ck_assert_ptr_nonnull(find(&g, "site-system-strong-crypto"));
        ck_assert_ptr_nonnull(find(&g, "schannel-tls12-server"));
        ck_assert_ptr_nonnull(find(&g, "sql-native-client"));
        ck_assert_ptr_nonnull(find(&g, "sql-odbc18-version"));
    }
    eval(r, ROLE_ENROLLMENT_PROXY_POINT, &g);
    ck_assert_ptr_nonnull(find(&g, "site-system-dotnet"));
    ck_assert_ptr_null(find(&g, "sql-native-client"));
    eval(r, ROLE_CONSOLE | ROLE_REPORTING_POINT | ROLE_CLOUD_MANAGEMENT_GATEWAY, &g);
    ck_assert_ptr_nonnull(find(&g, "console-dotnet"));
    ck_assert_ptr_nonnull(find(&g, "reporting-point-strong-crypto"));
    ck_assert_ptr_nonnull(find(&g, "cmg-dotnet"));
    ck_assert_ptr_null(find(&g, "site-system-dotnet"));
    json_decref(r);
}
END_TEST

/* ---- boundaries ------------------------------------------------------------------------ */

static bool passes(json_t *r, unsigned roles, const char *rule)
{
    struct got g;
    eval(r, roles, &g);
    const struct rules_verdict *v = find(&g, rule);
    ck_assert_msg(v != NULL, "rule %s did not apply", rule);
    return v->pass;
}

START_TEST(test_dotnet_release_boundary_394802)
{
    json_t *r = fixture("server2019-site-server");
    json_t *dn = json_object_get(r, "dotnet");
    json_object_set_new(dn, "release", json_integer(394802));
    ck_assert(passes(r, ROLE_MANAGEMENT_POINT, "site-system-dotnet"));
    ck_assert(passes(r, ROLE_CONSOLE, "console-dotnet"));
    json_object_set_new(dn, "release", json_integer(394801));
    ck_assert(!passes(r, ROLE_MANAGEMENT_POINT, "site-system-dotnet"));
    ck_assert(!passes(r, ROLE_CONSOLE, "console-dotnet"));
    ck_assert(!passes(r, ROLE_REPORTING_POINT, "reporting-point-dotnet"));
    json_decref(r);
}
END_TEST

START_TEST(test_sql_engine_branch_boundaries)
{
    static const struct {
        const char *patch_level;
        bool pass;
    } cases[] = {
        {"12.1.4219.0", true},  {"12.1.4218.99", false}, /* 2014 SP1 GDR */
        {"12.1.4439.1", true},  {"12.1.4439.0", false},  /* 2014 SP1 CU5 */
        {"12.1.4416.0", false},                          /* SP1 CU1: above the GDR minimum */
        {"12.0.2271.0", true},  {"12.0.2270.0", false},  /* 2014 RTM GDR */
        {"12.0.2564.0", true},  {"12.0.2563.0", false},  /* 2014 RTM CU12 */
        {"12.2.5000.0", true},  {"12.3.6024.0", true},   /* 2014 SP2, SP3 */
        {"11.3.6216.27", true}, {"11.3.6216.26", false}, /* 2012 SP3 GDR */
        {"11.3.6518.0", true},  {"11.3.6517.9", false},  /* 2012 SP3 CU */
        {"11.2.5352.0", true},  {"11.2.5351.0", false},  /* 2012 SP2 GDR */
        {"11.2.5644.2", true},  {"11.2.5644.1", false},  /* 2012 SP2 CU10 */
        {"11.4.7001.0", true},  {"11.1.3000.0", false},  /* 2012 SP4; SP1: none */
        {"10.53.6542.0", true}, {"10.53.6541.0", false}, /* 2008 R2 SP3 */
        {"10.4.6547.0", true},  {"10.4.6546.0", false},  /* 2008 SP4 */
        {"10.4.6542.0", false}, /* a 2008 build at 2008 R2's minimum still fails */
        {"13.0.1601.5", true},  {"16.0.1000.6", true}, /* 2016 RTM, 2022 */
        {"9.0.5000.0", false},                         /* 2005 */
    };
    json_t *r = fixture("server2012r2-sql2014sp1-snac");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_instance_version(r, cases[i].patch_level);
        ck_assert_msg(passes(r, ROLE_SITE_DATABASE, "sql-engine-tls12") == cases[i].pass,
                      "%s should %s", cases[i].patch_level, cases[i].pass ? "pass" : "fail");
    }
    /* patch_level wins over version */
    json_t *inst = json_array_get(json_object_get(json_object_get(r, "sql"), "instances"), 0);
    json_object_set_new(inst, "version", json_string("12.1.4100.1"));
    json_object_set_new(inst, "patch_level", json_string("12.1.4219.0"));
    ck_assert(passes(r, ROLE_SITE_DATABASE, "sql-engine-tls12"));
    json_object_set_new(inst, "patch_level", json_null());
    ck_assert(!passes(r, ROLE_SITE_DATABASE, "sql-engine-tls12"));
    json_decref(r);
}
END_TEST

START_TEST(test_sql_2005_reason_says_no_tls12_build)
{
    json_t *r = fixture("server2012r2-sql2014sp1-snac");
    set_instance_version(r, "9.0.5000.0");
    struct got g;
    eval(r, ROLE_SITE_DATABASE, &g);
    ck_assert_str_eq(find(&g, "sql-engine-tls12")->reason,
                     "the site database engine cannot use TLS 1.2: MSSQLSERVER: engine build is "
                     "9.0.5000.0 (PatchLevel 9.0.5000.0): SQL Server 2005 and earlier has no TLS "
                     "1.2 build (fix: SQL Server 2016 or later (KB3135244: TLS 1.2 only for SQL "
                     "Server 2008 and later))");
    json_decref(r);
}
END_TEST

START_TEST(test_sql_known_bad_build_warns)
{
    json_t *r = fixture("server2012r2-sql2014sp1-snac");
    set_instance_version(r, "10.53.6537.0");
    struct got g;
    eval(r, ROLE_SITE_DATABASE, &g);
    const struct rules_verdict *v = find(&g, "sql-engine-known-bad");
    ck_assert_int_eq(v->pass, 0);
    ck_assert_int_eq(v->severity, RULES_WARNING);
    ck_assert_str_eq(v->reason, "known-bad SQL Server TLS 1.2 build: MSSQLSERVER: engine build "
                                "is 10.50.6537.0 (PatchLevel 10.53.6537.0) (listed)");
    set_instance_version(r, "10.53.6542.0");
    ck_assert(passes(r, ROLE_SITE_DATABASE, "sql-engine-known-bad"));
    json_decref(r);
}
END_TEST

START_TEST(test_sql_engine_without_instances_fails_on_site_database)
{
    json_t *r = fixture("server2019-site-server");
    struct got g;
    eval(r, ROLE_SITE_DATABASE, &g);
    const struct rules_verdict *v = find(&g, "sql-engine-tls12");
    ck_assert_int_eq(v->pass, 0);
    ck_assert_str_eq(v->reason, "the site database engine cannot use TLS 1.2: no entry in SQL "
                                "Server instances");
    json_object_set_new(json_object_get(r, "sql"), "instances", json_null());
    eval(r, ROLE_SITE_DATABASE, &g);
    ck_assert_str_eq(find(&g, "sql-engine-tls12")->reason,
                     "the site database engine cannot use TLS 1.2: SQL Server instances not "
                     "reported");
    json_decref(r);
}
END_TEST

START_TEST(test_snac_boundary_ignores_minor)
{
    json_t *r = fixture("server2019-site-server");
    json_t *sql = json_object_get(r, "sql");
    const struct {
        const char *v;
        bool pass;
    } cases[] = {{"11.4.7001.0", true},  {"11.0.7001.0", true},   {"11.4.7000.99", false},
                 {"11.3.6538.0", false}, {"10.50.6537.0", false}, {"12.0.0.0", true}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object_set_new(sql, "native_client_11", json_string(cases[i].v));
        ck_assert_msg(passes(r, ROLE_MANAGEMENT_POINT, "sql-native-client") == cases[i].pass, "%s",
                      cases[i].v);
    }
    json_object_set_new(sql, "native_client_11", json_string("eleven"));
    struct got g;
    eval(r, ROLE_MANAGEMENT_POINT, &g);
    ck_assert_str_eq(find(&g, "sql-native-client")->reason,
                     "SQL Server Native Client cannot use TLS 1.2: SQL Server Native Client 11.0 "
                     "is \"eleven\", not a version");
    json_decref(r);
}
END_TEST

START_TEST(test_reasons_neutralise_hostile_strings)
{
    json_t *r = fixture("server2019-site-server");
    json_t *sql = json_object_get(r, "sql");
    /* a control sequence and a multi-byte character cut by the 60-byte quote limit */
    char bad[128];
    memset(bad, 'x', sizeof(bad));
    memcpy(bad, "\x1b[2J\nFAKE", 9);
    memcpy(bad + 57, "\xc3\xa9", 2);     /* e-acute at bytes 57..58: fits */
    memcpy(bad + 59, "\xe2\x82\xac", 3); /* euro sign at 59..61: cut */
    bad[100] = '\0';
    json_object_set_new(sql, "native_client_11", json_string(bad));
    struct got g;
    eval(r, ROLE_MANAGEMENT_POINT, &g);
    const char *reason = find(&g, "sql-native-client")->reason;
    ck_assert_ptr_null(strchr(reason, '\x1b'));
    ck_assert_ptr_null(strchr(reason, '\n'));
    ck_assert_ptr_nonnull(strstr(reason, "is \"?[2J?FAKExx"));
    ck_assert_ptr_nonnull(strstr(reason, "x\xc3\xa9\", not a version"));
    json_decref(r);
}
END_TEST

START_TEST(test_odbc18_boundary_and_known_bad)
{
    json_t *r = fixture("server2019-site-server");
    json_t *sql = json_object_get(r, "sql");
    json_object_set_new(sql, "odbc_18", json_string("18.4.1.1"));
    ck_assert(passes(r, ROLE_SITE_SERVER, "sql-odbc18-version"));
    json_object_set_new(sql, "odbc_18", json_string("18.4.1.0"));
    ck_assert(!passes(r, ROLE_SITE_SERVER, "sql-odbc18-version"));
    json_object_set_new(sql, "odbc_18", json_string("18.6.1.1"));
    ck_assert(passes(r, ROLE_SITE_SERVER, "sql-odbc18-version"));
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    const struct rules_verdict *v = find(&g, "sql-odbc18-known-bad");
    ck_assert_int_eq(v->pass, 0);
    ck_assert_str_eq(v->reason, "ODBC Driver 18.6.1.1 is known to break Configuration Manager: "
                                "ODBC Driver 18 for SQL Server is 18.6.1.1, needs not 18.6.1.1");
    json_object_set_new(sql, "odbc_18", json_string("18.6.2.1"));
    ck_assert(passes(r, ROLE_CLIENT, "sql-odbc18-known-bad"));
    json_object_set_new(sql, "odbc_18", json_null());
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_null(find(&g, "sql-odbc18-known-bad"));
    json_decref(r);
}
END_TEST

START_TEST(test_dsp_bit_boundary)
{
    json_t *r = fixture("win7-ready");
    json_t *w = json_object_get(r, "winhttp");
    json_object_set_new(w, "default_secure_protocols", json_integer(0x800));
    ck_assert(passes(r, ROLE_CLIENT, "winhttp-dsp"));
    json_object_set_new(w, "default_secure_protocols", json_integer(0x7FF));
    ck_assert(!passes(r, ROLE_CLIENT, "winhttp-dsp"));
    json_object_set_new(w, "default_secure_protocols", json_integer(0xA0));
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    ck_assert_str_eq(find(&g, "winhttp-dsp")->reason,
                     "WinHTTP does not offer TLS 1.2 by default: WinHttp DefaultSecureProtocols "
                     "(native) is 0xA0, lacks 0x800");
    json_decref(r);
}
END_TEST

START_TEST(test_winhttp_rules_by_build_and_edition)
{
    json_t *r = fixture("win10-22h2");
    json_t *os = json_object_get(r, "os");
    struct got g;
    /* KB3140245 and its DefaultSecureProtocols: Windows 7 SP1 / 2008 R2 SP1 and Server 2012 */
    json_object_set_new(os, "build", json_integer(7601));
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_nonnull(find(&g, "winhttp-kb3140245"));
    ck_assert_ptr_nonnull(find(&g, "winhttp-dsp-wow64"));
    ck_assert_ptr_null(find(&g, "winhttp-dsp-os-default"));
    json_object_set_new(os, "build", json_integer(9200));
    json_object_set_new(os, "product_type", json_string("ServerNT"));
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_nonnull(find(&g, "winhttp-kb3140245"));
    ck_assert_ptr_null(find(&g, "os-win8-upgrade"));
    /* Windows 8.0 is told to upgrade, not to install KB3140245 */
    json_object_set_new(os, "product_type", json_string("WinNT"));
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_null(find(&g, "winhttp-kb3140245"));
    ck_assert_ptr_null(find(&g, "winhttp-dsp"));
    ck_assert_int_eq(find(&g, "os-win8-upgrade")->pass, 0);
    /* 8.1 and later: only a value that is set counts, in both views */
    json_object_set_new(os, "build", json_integer(9600));
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_null(find(&g, "winhttp-kb3140245"));
    ck_assert_int_eq(find(&g, "winhttp-dsp-os-default")->pass, 1);
    ck_assert_int_eq(find(&g, "winhttp-dsp-os-default-wow64")->pass, 1);
    /* Wow6432Node is asked only where there is one */
    json_object_set_new(os, "build", json_integer(7601));
    json_object_set_new(os, "arch", json_string("x86"));
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_nonnull(find(&g, "winhttp-dsp"));
    ck_assert_ptr_null(find(&g, "winhttp-dsp-wow64"));
    /* 7600 needs Service Pack 1 first */
    json_object_set_new(os, "build", json_integer(7600));
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_null(find(&g, "winhttp-kb3140245"));
    ck_assert_str_eq(find(&g, "os-7600-sp1")->reason,
                     "build 7600 (no Service Pack 1) cannot get the WinHTTP TLS 1.2 update: OS "
                     "build is 7600, needs >= 7601");
    json_decref(r);
}
END_TEST

static json_t *tls12_client(json_t *r)
{
    return json_object_get(json_object_get(json_object_get(r, "schannel"), "tls12"), "client");
}

/* schannel-tls12-client: usable when an application asks for it (WinHTTP; only Enabled
 * refuses). schannel-tls12-client-default: offered to applications that take the defaults. */
static bool explicit_ok(json_t *r) { return passes(r, ROLE_CLIENT, "schannel-tls12-client"); }
static bool default_ok(json_t *r)
{
    return passes(r, ROLE_MANAGEMENT_POINT, "schannel-tls12-client-default");
}

START_TEST(test_schannel_tls12_defaults_by_build)
{
    json_t *r = fixture("win10-22h2");
    json_t *os = json_object_get(r, "os"), *c = tls12_client(r);
    json_object_set_new(os, "build", json_integer(9199));
    ck_assert(!explicit_ok(r) && !default_ok(r));
    json_object_set_new(os, "build", json_integer(9200));
    ck_assert(explicit_ok(r) && default_ok(r));
    json_object_set_new(c, "enabled", json_integer(0));
    ck_assert(!explicit_ok(r) && !default_ok(r));
    json_object_set_new(c, "enabled", json_null());
    json_object_set_new(c, "disabled_by_default", json_integer(1));
    ck_assert(explicit_ok(r) && !default_ok(r));
    /* Windows 7 with Enabled=1 and DisabledByDefault absent: WinHTTP with DefaultSecureProtocols
     * uses TLS 1.2 (it does not inherit DisabledByDefault, KB3140245); default users do not */
    json_object_set_new(os, "build", json_integer(7601));
    json_object_set_new(c, "enabled", json_integer(1));
    json_object_set_new(c, "disabled_by_default", json_null());
    ck_assert(explicit_ok(r) && !default_ok(r));
    /* DisabledByDefault=0 alone does not enable it on Windows 7 */
    json_object_set_new(c, "enabled", json_null());
    json_object_set_new(c, "disabled_by_default", json_integer(0));
    ck_assert(!explicit_ok(r) && !default_ok(r));
    json_object_set_new(c, "enabled", json_integer(0xffffffffLL));
    ck_assert(explicit_ok(r) && default_ok(r));
    /* no build and an absent value: the default cannot be known */
    json_object_set_new(c, "enabled", json_null());
    json_object_set_new(os, "build", json_null());
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    const struct rules_verdict *v = find(&g, "schannel-tls12-client");
    ck_assert_int_eq(v->pass, 0);
    ck_assert_str_eq(v->reason, "TLS 1.2 cannot be used as a client even by an application that "
                                "asks for it: SCHANNEL TLS 1.2\\Client: OS build not reported "
                                "(needed for the default of an absent value)");
    json_decref(r);
}
END_TEST

START_TEST(test_absent_fact_fails_not_reported)
{
    json_t *r = fixture("server2019-site-server");
    json_object_set_new(json_object_get(r, "dotnet"), "release", json_null());
    struct got g;
    eval(r, ROLE_SITE_SERVER, &g);
    const struct rules_verdict *v = find(&g, "site-system-dotnet");
    ck_assert_int_eq(v->pass, 0);
    ck_assert_str_eq(v->reason, ".NET Framework does not negotiate TLS 1.2 by default: .NET "
                                "Framework 4 Release not reported");
    /* a whole member missing is the same as null */
    json_object_del(r, "dotnet");
    eval(r, ROLE_SITE_SERVER, &g);
    ck_assert_int_eq(find(&g, "site-system-dotnet")->pass, 0);
    ck_assert_int_eq(find(&g, "site-system-strong-crypto")->pass, 0);
    /* an undecidable scope fails rather than being skipped */
    json_object_set_new(json_object_get(r, "os"), "build", json_null());
    eval(r, ROLE_CLIENT, &g);
    v = find(&g, "winhttp-kb3140245");
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->pass, 0);
    ck_assert_str_eq(v->reason, "WinHTTP cannot default to TLS 1.2 without KB3140245: OS build not "
                                "reported (the rule covers builds 7601..9200)");
    json_decref(r);
}
END_TEST

START_TEST(test_report_of_an_older_collector_fails_closed_on_new_facts)
{
    /* An older collector listed every CBS package whatever its state and sent no "updates",
     * "v35_installed" or "rs_instances": what the rules need from them is "not reported". */
    json_t *r = fixture("win7-ready");
    json_object_del(r, "updates");
    json_object_del(json_object_get(r, "os"), "product_type");
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    const struct rules_verdict *v = find(&g, "winhttp-kb3140245");
    ck_assert_int_eq(v->pass, 0);
    ck_assert_str_eq(v->reason, "WinHTTP cannot default to TLS 1.2 without KB3140245: installed "
                                "updates (CBS CurrentState) not reported");
    /* InstallationType still tells a client from a server */
    ck_assert_ptr_null(find(&g, "os-win8-upgrade"));
    json_decref(r);

    r = fixture("server2019-site-server");
    json_object_del(json_object_get(r, "dotnet"), "v35_installed");
    eval(r, ROLE_SITE_SERVER | ROLE_REPORTING_POINT, &g);
    ck_assert_str_eq(find(&g, "site-system-strong-crypto-v2")->reason,
                     ".NET 3.5 applications fall back to SSL 3.0 / TLS 1.0: .NET Framework 3.5 "
                     "(NDP\\v3.5 Install) not reported");
    ck_assert_int_eq(find(&g, "reporting-point-ssrs-tls12")->pass, 0);
    json_decref(r);
}
END_TEST

START_TEST(test_strong_crypto_names_each_failing_value)
{
    json_t *r = fixture("server2019-site-server");
    json_t *dn = json_object_get(r, "dotnet");
    json_object_set_new(json_object_get(dn, "v4"), "strong_crypto", json_integer(0));
    json_object_set_new(json_object_get(dn, "v4_wow64"), "system_default_tls", json_null());
    struct got g;
    eval(r, ROLE_SITE_SERVER, &g);
    ck_assert_str_eq(find(&g, "site-system-strong-crypto")->reason,
                     ".NET 4 applications may not use TLS 1.2: .NETFramework\\v4.0.30319 "
                     "SchUseStrongCrypto is 0, needs 1; Wow6432Node .NETFramework\\v4.0.30319 "
                     "SystemDefaultTlsVersions not reported");
    /* a 32-bit OS has no Wow6432Node keys to ask for */
    json_object_set_new(json_object_get(dn, "v4"), "strong_crypto", json_integer(1));
    json_object_set_new(json_object_get(r, "os"), "arch", json_string("x86"));
    ck_assert(passes(r, ROLE_SITE_SERVER, "site-system-strong-crypto"));
    json_decref(r);
}
END_TEST

START_TEST(test_fips_on_warns)
{
    json_t *r = fixture("win11-23h2");
    json_object_set_new(r, "fips", json_true());
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    const struct rules_verdict *v = find(&g, "fips-policy");
    ck_assert_int_eq(v->pass, 0);
    ck_assert_int_eq(v->severity, RULES_WARNING);
    ck_assert_str_eq(v->reason, "FIPS policy is on: FIPS policy is true, needs false");
    ck_assert_int_eq(g.blockers, 0);
    ck_assert_int_eq(g.warnings, 1);
    json_decref(r);
}
END_TEST

START_TEST(test_server_2008_sp2_needs_kb4019276_and_vista_cannot)
{
    json_t *r = fixture("win7-ready");
    json_t *os = json_object_get(r, "os");
    json_object_set_new(os, "build", json_integer(6002));
    json_object_set_new(os, "installation_type", json_null()); /* 2008 SP2 has none */
    json_object_set_new(os, "product_type", json_string("ServerNT"));
    ck_assert(!passes(r, ROLE_MANAGEMENT_POINT, "os-2008sp2-kb4019276"));
    ck_assert(passes(r, ROLE_MANAGEMENT_POINT, "os-tls12-capable"));
    json_array_append_new(json_object_get(json_object_get(r, "updates"), "installed"),
                          json_string("KB4019276"));
    ck_assert(passes(r, ROLE_MANAGEMENT_POINT, "os-2008sp2-kb4019276"));
    /* Server Core is a server: never told to replace its OS */
    json_object_set_new(os, "installation_type", json_string("Server Core"));
    json_object_del(os, "product_type");
    ck_assert(passes(r, ROLE_MANAGEMENT_POINT, "os-tls12-capable"));
    ck_assert(passes(r, ROLE_MANAGEMENT_POINT, "os-2008sp2-kb4019276"));
    /* Vista */
    json_object_set_new(os, "product_type", json_string("WinNT"));
    struct got g;
    eval(r, ROLE_CLIENT, &g);
    ck_assert_ptr_null(find(&g, "os-2008sp2-kb4019276"));
    ck_assert_int_eq(find(&g, "os-tls12-capable")->pass, 0);
    /* an unknown product type is a failure, not "not applicable" */
    json_object_set_new(os, "product_type", json_string("Workstation?"));
    eval(r, ROLE_CLIENT, &g);
    const struct rules_verdict *v = find(&g, "os-2008sp2-kb4019276");
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->pass, 0);
    ck_assert_ptr_nonnull(
        strstr(v->reason, "server or client: unknown (ProductType Workstation?)"));
    ck_assert_int_eq(find(&g, "os-tls12-capable")->pass, 0);
    json_decref(r);
}
END_TEST

/* ---- the catalog ----------------------------------------------------------------------- */

START_TEST(test_default_catalog_is_complete)
{
    ck_assert_str_eq(rules_version(cat), "2026.12.0");
    ck_assert_uint_eq(rules_count(cat), 36);
    static const char *const components[] = {"client WinHTTP",
                                             "Schannel",
                                             ".NET Framework",
                                             "strong cryptography",
                                             "SQL Server",
                                             "SQL client components",
                                             "SQL Express on secondary sites",
                                             "WSUS",
                                             "reporting services point",
                                             "CMG",
                                             "console",
                                             "Software Center"};
    for (size_t k = 0; k < sizeof(components) / sizeof(components[0]); k++) {
        bool found = false;
        for (size_t i = 0; i < rules_count(cat); i++)
            found |= !strcmp(rules_at(cat, i)->component, components[k]);
        ck_assert_msg(found, "no rule covers %s", components[k]);
    }
    for (size_t i = 0; i < rules_count(cat); i++) {
        const struct rules_info *r = rules_at(cat, i);
        ck_assert_msg(strstr(r->reference, "S") == r->reference, "%s: reference %s", r->id,
                      r->reference);
        ck_assert(*r->remedy && *r->title);
        ck_assert_ptr_eq(rules_find(cat, r->id), r);
    }
    ck_assert_ptr_null(rules_find(cat, "no-such-rule"));
    ck_assert_int_eq(rules_find(cat, "fips-policy")->severity, RULES_WARNING);
}
END_TEST

static const char *RULE_OK =
    "{\"id\": \"winhttp-dsp-wow64\", \"component\": \"client WinHTTP\", \"title\": \"t\", "
    "\"applies\": {\"roles\": [\"client\"]}, \"predicate\": %s, \"severity\": \"%s\", "
    "\"remedy\": \"%s\", \"reference\": [\"S8\"], \"reason\": \"r: {detail}\"}";

static int load_rule(const char *predicate, const char *severity, const char *remedy,
                     const char *extra_rule, char *err, size_t errsize)
{
    char rule[2048], text[4096];
    snprintf(rule, sizeof(rule), RULE_OK, predicate, severity, remedy);
    snprintf(text, sizeof(text),
             "{\"catalog\": \"tlsgate-rules\", \"version\": \"2026.11.9\", \"rules\": [%s%s%s]}",
             rule, extra_rule ? ", " : "", extra_rule ? extra_rule : "");
    struct rules_catalog *c = NULL;
    int rc = rules_load(text, strlen(text), "rules.json", &c, err, errsize);
    if (rc == 0)
        ck_assert_ptr_nonnull(c);
    else
        ck_assert_ptr_null(c);
    rules_free(c);
    return rc;
}

#define DSP_OK "{\"has_bits\": [\"winhttp.default_secure_protocols_wow64\", 2048]}"

START_TEST(test_catalog_minimal_rule_loads)
{
    char err[512];
    ck_assert_int_eq(load_rule(DSP_OK, "blocker", "set it", NULL, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_catalog_unknown_operator_names_rule)
{
    char err[512];
    ck_assert_int_eq(load_rule("{\"bitz\": [\"winhttp.default_secure_protocols_wow64\", 2048]}",
                               "blocker", "set it", NULL, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "rules.json: rule winhttp-dsp-wow64: unknown operator \"bitz\"");
}
END_TEST

START_TEST(test_catalog_unknown_fact_names_rule)
{
    char err[512];
    ck_assert_int_eq(load_rule("{\"all\": [{\"ge\": [\"dotnet.relase\", 1]}]}", "blocker", "set it",
                               NULL, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "rules.json: rule winhttp-dsp-wow64: unknown fact \"dotnet.relase\"");
}
END_TEST

START_TEST(test_catalog_missing_remedy_names_rule)
{
    char err[512];
    ck_assert_int_eq(load_rule(DSP_OK, "blocker", "", NULL, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "rules.json: rule winhttp-dsp-wow64: missing \"remedy\" (a non-empty "
                          "string)");
}
END_TEST

START_TEST(test_catalog_duplicate_id_names_rule)
{
    char err[512], second[1024];
    snprintf(second, sizeof(second), RULE_OK, DSP_OK, "warning", "again");
    ck_assert_int_eq(load_rule(DSP_OK, "blocker", "set it", second, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "rules.json: rule winhttp-dsp-wow64: duplicate id (also rule #1)");
}
END_TEST

START_TEST(test_catalog_bad_severity_names_rule)
{
    char err[512];
    ck_assert_int_eq(load_rule(DSP_OK, "fatal", "set it", NULL, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "rules.json: rule winhttp-dsp-wow64: severity \"fatal\": must be "
                          "\"blocker\" or \"warning\"");
}
END_TEST

START_TEST(test_catalog_type_mismatches_are_refused)
{
    static const struct {
        const char *predicate, *message;
    } cases[] = {
        {"{\"version_ge\": [\"os.build\", \"1.0\"]}",
         "\"version_ge\" cannot compare os.build (a number) with a string"},
        {"{\"version_ge\": [\"sql.odbc_18\", \"18.x.1\"]}",
         "\"18.x.1\" is not a version (up to four numbers or *, dot-separated)"},
        {"{\"contains\": [\"os.build\", \"KB1\"]}",
         "\"contains\" cannot compare os.build (a number) with a string"},
        {"{\"ge\": [\"@.engine\", 1]}", "fact \"@.engine\" names an element outside \"every\""},
        {"{\"protocol_enabled\": {\"protocol\": \"ssl2\", \"side\": \"client\"}}",
         "protocol_enabled: no OS default known for protocol \"ssl2\" (one of ssl3, tls10, "
         "tls11, tls12, tls13)"},
        {"{\"all\": []}", "\"all\" needs a list of 1..32 predicates"},
        {"{\"eq\": [\"fips\", true], \"ne\": [\"fips\", false]}",
         "a predicate has one operator, found \"eq\" and \"ne\""},
        {"{\"eq\": [\"fips\", true], \"if_absent\": 0}", "if_absent for fips must be a boolean"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512], want[512];
        ck_assert_int_eq(load_rule(cases[i].predicate, "blocker", "x", NULL, err, sizeof(err)),
                         -EINVAL);
        snprintf(want, sizeof(want), "rules.json: rule winhttp-dsp-wow64: %s", cases[i].message);
        ck_assert_str_eq(err, want);
    }
}
END_TEST

START_TEST(test_catalog_structure_errors_are_refused)
{
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"{\"catalog\": \"tlsgate-rules\", \"version\": \"2026-11\", \"rules\": []}",
         "rules.json: version: \"2026-11\" must be YYYY.MM.N"},
        {"{\"catalog\": \"other\", \"version\": \"2026.11.1\", \"rules\": []}",
         "rules.json: catalog: must be \"tlsgate-rules\""},
        {"{\"catalog\": \"tlsgate-rules\",\n \"version\": \"2026.11.1\",, \"rules\": []}",
         "rules.json:2:25: invalid JSON: string or '}' expected near ','"},
        {"{\"catalog\": \"tlsgate-rules\", \"version\": \"2026.11.1\", \"rules\": [{\"id\": 5}]}",
         "rules.json: rule #1: missing \"id\" (a string of 1..64 characters)"},
        {"{\"catalog\": \"tlsgate-rules\", \"version\": \"2026.11.1\", \"rules\": [{\"id\": \"a\", "
         "\"component\": \"c\", \"title\": \"t\", \"remedy\": \"r\", \"reason\": \"{os.bild}\", "
         "\"severity\": \"warning\", \"reference\": [\"S1\"], \"applies\": {\"roles\": "
         "[\"client\"]}, \"predicate\": {\"present\": \"fips\"}}]}",
         "rules.json: rule a: reason: unknown placeholder \"{os.bild}\""},
        {"{\"catalog\": \"tlsgate-rules\", \"version\": \"2026.11.1\", \"rules\": [{\"id\": \"a\", "
         "\"component\": \"c\", \"title\": \"t\", \"remedy\": \"r\", \"reason\": \"x\", "
         "\"severity\": \"warning\", \"reference\": [\"S1\"], \"applies\": {\"roles\": "
         "[\"mp\"]}, \"predicate\": {\"present\": \"fips\"}}]}",
         "rules.json: rule a: applies.roles: unknown role \"mp\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512];
        struct rules_catalog *c = NULL;
        ck_assert_int_eq(
            rules_load(cases[i].text, strlen(cases[i].text), "rules.json", &c, err, sizeof(err)),
            -EINVAL);
        ck_assert_ptr_null(c);
        ck_assert_str_eq(err, cases[i].message);
    }
}
END_TEST

START_TEST(test_catalog_over_cap_is_refused)
{
    size_t len = RULES_MAX_BYTES + 1;
    char *big = malloc(len);
    memset(big, ' ', len);
    char err[256];
    struct rules_catalog *c;
    ck_assert_int_eq(rules_load(big, len, "big.json", &c, err, sizeof(err)), -E2BIG);
    ck_assert_str_eq(err, "big.json: catalog is 1048577 bytes, over the 1048576-byte cap");
    free(big);
}
END_TEST

/* ---- the collector's own fixture set (tests/fixtures/facts: what facts.c extracts from the
 * .reg exports), as reports, to the exact verdict set ------------------------------------- */

static void expect_facts(const char *name, unsigned roles, const char *line)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/fixtures/facts/%s.json", name);
    json_error_t je;
    json_t *r = json_load_file(tu_source_path(rel), JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(r != NULL, "%s: %s", rel, je.text);
    json_object_set_new(r, "schema", json_string("tlsgate.report/1"));
    json_object_set_new(r, "host", json_string("host.corp.contoso.com"));
    json_object_set_new(r, "collected_at", json_string("2026-11-25T12:00:00Z"));
    struct got g;
    eval(r, roles, &g);
    ck_assert_msg(!strcmp(verdict_line(&g), line), "%s:\n got  %s\n want %s", name,
                  verdict_line(&g), line);
    json_decref(r);
}

START_TEST(test_collector_fixtures_evaluate_to_exact_verdicts)
{
    expect_facts("win7-sp1-x64-unpatched", ROLE_CLIENT,
                 "os-tls12-capable:pass schannel-tls12-client:FAIL "
                 "software-center-schannel-default:FAIL winhttp-kb3140245:FAIL winhttp-dsp:FAIL "
                 "winhttp-dsp-wow64:FAIL software-center-dotnet:FAIL "
                 "software-center-strong-crypto:FAIL fips-policy:pass");
    expect_facts("win7-kb3140245-native-only", ROLE_CLIENT,
                 "os-tls12-capable:pass schannel-tls12-client:pass "
                 "software-center-schannel-default:pass winhttp-kb3140245:pass winhttp-dsp:pass "
                 "winhttp-dsp-wow64:FAIL software-center-dotnet:FAIL "
                 "software-center-strong-crypto:FAIL fips-policy:pass");
    expect_facts("win7-ready", ROLE_CLIENT,
                 "os-tls12-capable:pass schannel-tls12-client:pass "
                 "software-center-schannel-default:pass winhttp-kb3140245:pass winhttp-dsp:pass "
                 "winhttp-dsp-wow64:pass software-center-dotnet:pass "
                 "software-center-strong-crypto:pass fips-policy:pass");
    expect_facts("win81", ROLE_CLIENT,
                 "os-tls12-capable:pass schannel-tls12-client:pass "
                 "software-center-schannel-default:pass winhttp-dsp-os-default:pass "
                 "winhttp-dsp-os-default-wow64:pass software-center-dotnet:pass "
                 "software-center-strong-crypto:FAIL fips-policy:pass");
    expect_facts("win10-22h2", ROLE_CLIENT,
                 "os-tls12-capable:pass schannel-tls12-client:pass "
                 "software-center-schannel-default:pass winhttp-dsp-os-default:pass "
                 "winhttp-dsp-os-default-wow64:pass software-center-dotnet:pass "
                 "software-center-strong-crypto:FAIL fips-policy:pass");
    expect_facts("win11-23h2", ROLE_CLIENT,
                 "os-tls12-capable:pass schannel-tls12-client:pass "
                 "software-center-schannel-default:pass winhttp-dsp-os-default:pass "
                 "winhttp-dsp-os-default-wow64:pass software-center-dotnet:pass "
                 "software-center-strong-crypto:FAIL fips-policy:pass");
    expect_facts(
        "server2012-wsus", ROLE_SOFTWARE_UPDATE_POINT,
        "os-tls12-capable:pass schannel-tls12-client:pass schannel-tls12-client-default:pass "
        "schannel-tls12-server:pass winhttp-kb3140245:FAIL winhttp-dsp:FAIL "
        "winhttp-dsp-wow64:FAIL site-system-dotnet:FAIL site-system-strong-crypto:FAIL "
        "site-system-strong-crypto-v2:FAIL sql-native-client:FAIL sql-odbc18-version:FAIL "
        "wsus-2012-kb4022721:pass fips-policy:pass");
    expect_facts(
        "server2012r2-sql2014sp1-snac", ROLE_SITE_DATABASE,
        "os-tls12-capable:pass schannel-tls12-client:pass schannel-tls12-client-default:pass "
        "schannel-tls12-server:pass winhttp-dsp-os-default:pass "
        "winhttp-dsp-os-default-wow64:pass site-system-dotnet:pass "
        "site-system-strong-crypto:FAIL site-system-strong-crypto-v2:FAIL "
        "sql-engine-tls12:FAIL sql-engine-known-bad:pass sql-native-client:FAIL "
        "sql-odbc18-version:FAIL fips-policy:pass");
    expect_facts(
        "server2016-sql2016sp2-express", ROLE_SECONDARY_SITE_SERVER,
        "os-tls12-capable:pass schannel-tls12-client:pass schannel-tls12-client-default:pass "
        "schannel-tls12-server:pass winhttp-dsp-os-default:pass "
        "winhttp-dsp-os-default-wow64:pass site-system-dotnet:pass "
        "site-system-strong-crypto:pass site-system-strong-crypto-v2:pass "
        "sql-engine-tls12:pass sql-engine-known-bad:pass sql-express-secondary:pass "
        "sql-native-client:pass sql-odbc18-version:FAIL fips-policy:FAIL");
    expect_facts(
        "server2019-site-server", ROLE_SITE_SERVER | ROLE_SITE_DATABASE | ROLE_SMS_PROVIDER,
        "os-tls12-capable:pass schannel-tls12-client:pass schannel-tls12-client-default:pass "
        "schannel-tls12-server:pass winhttp-dsp-os-default:pass "
        "winhttp-dsp-os-default-wow64:pass site-system-dotnet:pass "
        "site-system-strong-crypto:pass site-system-strong-crypto-v2:pass "
        "sql-engine-tls12:pass sql-engine-known-bad:pass sql-native-client:pass "
        "sql-odbc18-version:pass sql-odbc18-known-bad:pass fips-policy:pass");
    expect_facts(
        "server2008r2-regedit4-ansi", ROLE_SITE_DATABASE,
        "os-tls12-capable:pass schannel-tls12-client:pass schannel-tls12-client-default:pass "
        "schannel-tls12-server:pass winhttp-kb3140245:pass winhttp-dsp:pass "
        "winhttp-dsp-wow64:pass site-system-dotnet:pass site-system-strong-crypto:pass "
        "site-system-strong-crypto-v2:FAIL sql-engine-tls12:pass sql-engine-known-bad:pass "
        "sql-native-client:FAIL sql-odbc18-version:FAIL fips-policy:pass");
}
END_TEST

/* ---- tlsgate rules eval: the binary, on .reg fixtures, as an administrator runs it -------- */

/* Runs `tlsgate rules eval --json [--roles R] tests/fixtures/reg/FILE`; the parsed output, or
 * NULL when it printed none; *code is the exit status and *err its stderr (may be NULL). */
static json_t *run_eval(const char *roles, const char *file, int *code, char **err)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/fixtures/reg/%s", file);
    char *argv[10];
    int n = 0;
    argv[n++] = (char *)tu_build_path("orchestrator/tlsgate");
    argv[n++] = "rules";
    argv[n++] = "eval";
    argv[n++] = "--json";
    if (roles) {
        argv[n++] = "--roles";
        argv[n++] = (char *)roles;
    }
    argv[n++] = (char *)tu_source_path(rel);
    argv[n] = NULL;
    char *out = NULL;
    *code = tu_run(argv, NULL, &out, err);
    json_error_t je;
    json_t *j = out && *out ? json_loads(out, 0, &je) : NULL;
    ck_assert_msg(!out || !*out || j, "rules eval %s: output is not JSON: %s", file, out);
    free(out);
    return j;
}

/* The verdict of `rule` in a rules eval output: "pass", "FAIL", or NULL when it did not apply;
 * its reason in *reason (borrowed). */
static const char *eval_verdict(json_t *j, const char *rule, const char **reason)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "verdicts"), i, v)
    {
        if (!strcmp(json_string_value(json_object_get(v, "rule")), rule)) {
            if (reason)
                *reason = json_string_value(json_object_get(v, "reason"));
            return json_is_true(json_object_get(v, "pass")) ? "pass" : "FAIL";
        }
    }
    return NULL;
}

/* Asserts that `rule` has verdict `want` ("pass", "FAIL" or NULL: not applicable) on a fixture,
 * and that its reason contains `needle` (when not NULL). */
static void expect_eval(const char *roles, const char *file, const char *rule, const char *want,
                        const char *needle)
{
    int code;
    char *err = NULL;
    json_t *j = run_eval(roles, file, &code, &err);
    ck_assert_msg(j != NULL, "rules eval %s: exit %d: %s", file, code, err ? err : "");
    const char *reason = NULL, *got = eval_verdict(j, rule, &reason);
    ck_assert_msg(want ? got && !strcmp(got, want) : got == NULL, "%s %s: got %s, want %s (%s)",
                  file, rule, got ? got : "not applicable", want ? want : "not applicable",
                  reason ? reason : "");
    if (needle)
        ck_assert_msg(reason && strstr(reason, needle), "%s %s: reason \"%s\" lacks \"%s\"", file,
                      rule, reason ? reason : "", needle);
    ck_assert_int_eq(code, strcmp(json_string_value(json_object_get(j, "state")), "ready") ? 1 : 0);
    json_decref(j);
    free(err);
}

START_TEST(test_rules_eval_reg_file_prints_verdicts_and_exit_code)
{
    int code;
    char *err = NULL;
    json_t *j = run_eval(NULL, "win7-sp1-x64-unpatched.reg", &code, &err);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(code, 1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "not_ready");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "roles"), 0)), "client");
    ck_assert_int_eq(json_array_size(json_object_get(j, "roles")), 1);
    const char *reason;
    ck_assert_str_eq(eval_verdict(j, "winhttp-kb3140245", &reason), "FAIL");
    ck_assert_ptr_nonnull(strstr(reason, "lack KB3140245"));
    /* the facts are the collector's */
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(json_object_get(j, "facts"), "os"), "build")),
                     7601);
    json_decref(j);
    free(err);

    /* the same in text, and a facts file through --facts */
    char *out = NULL;
    char *argv[] = {(char *)tu_build_path("orchestrator/tlsgate"),
                    "rules",
                    "eval",
                    "--facts",
                    (char *)tu_source_path("tests/fixtures/facts/win7-ready.json"),
                    NULL};
    ck_assert_int_eq(tu_run(argv, NULL, &out, NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "state: ready"));
    ck_assert_ptr_nonnull(strstr(out, "ok   blocker winhttp-dsp\n"));
    free(out);
    expect_eval(NULL, "win7-sp1-x64-unpatched.reg", "winhttp-dsp", "FAIL", "not reported");
}
END_TEST

START_TEST(test_rules_eval_bad_input_is_named)
{
    int code;
    char *err = NULL;
    json_t *j = run_eval("client;no_such_role", "win81.reg", &code, &err);
    ck_assert_ptr_null(j);
    ck_assert_int_eq(code, 3); /* bad input, as the README's exit codes have it */
    ck_assert_ptr_nonnull(strstr(err, "no_such_role"));
    free(err);
    err = NULL;
    j = run_eval(NULL, "malformed/dword-not-hex.reg", &code, &err);
    ck_assert_ptr_null(j);
    ck_assert_int_eq(code, 3);
    ck_assert_ptr_nonnull(strstr(err, "dword-not-hex.reg:"));
    free(err);
    err = NULL;
    j = run_eval(NULL, "no-such-file.reg", &code, &err);
    ck_assert_ptr_null(j);
    ck_assert_int_eq(code, 3);
    ck_assert_ptr_nonnull(strstr(err, "no-such-file.reg"));
    free(err);
}
END_TEST

/* ---- verdict cases: one registry export each (tests/fixtures/reg/case-*.reg), evaluated by
 * `tlsgate rules eval` as an administrator would; each failed before its fix ------------- */

START_TEST(test_case_dsp_without_tls12_fails_on_every_version_and_view)
{
    /* Windows 10 with DefaultSecureProtocols=0xA0: WinHTTP offers SSL 3.0/TLS 1.0 only */
    expect_eval(NULL, "case-win10-dsp-without-tls12.reg", "winhttp-dsp-os-default", "FAIL",
                "DefaultSecureProtocols (native) is 0xA0, lacks 0x800");
    /* Server 2019 with only the Wow6432Node value, lacking TLS 1.2 */
    expect_eval("management_point", "case-server2019-dsp-wow64-without-tls12.reg",
                "winhttp-dsp-os-default-wow64", "FAIL", "(Wow6432Node) is 0x280, lacks 0x800");
    expect_eval("management_point", "case-server2019-dsp-wow64-without-tls12.reg",
                "winhttp-dsp-os-default", "pass", "absent (OS default)");
}
END_TEST

START_TEST(test_case_server2008sp2_core_is_a_server_and_winhttp_fails_closed)
{
    /* no InstallationType on 2008 SP2; ProductType says server: not told to replace its OS */
    expect_eval("management_point", "case-server2008sp2-core.reg", "os-tls12-capable", "pass",
                NULL);
    expect_eval("management_point", "case-server2008sp2-core.reg", "os-2008sp2-kb4019276", "pass",
                "include KB4019276");
    expect_eval("management_point", "case-server2008sp2-core.reg", "winhttp-2008sp2", "FAIL",
                "no Microsoft document says that WinHTTP on Windows Server 2008 SP2");
    expect_eval("management_point", "case-server2008sp2-core.reg", "winhttp-kb3140245", NULL, NULL);
}
END_TEST

START_TEST(test_case_staged_update_is_not_installed)
{
    expect_eval(NULL, "case-win7-kb3140245-staged.reg", "winhttp-kb3140245", "FAIL",
                "lack KB3140245 (its package is staged, CurrentState 0x40: not installed)");
}
END_TEST

START_TEST(test_case_win7_enabled_without_disabled_by_default_serves_winhttp)
{
    /* WinHTTP with DefaultSecureProtocols uses TLS 1.2 (it does not inherit DisabledByDefault);
     * applications that take the defaults do not: a warning on a client */
    expect_eval(NULL, "case-win7-enabled-dbd-absent.reg", "schannel-tls12-client", "pass",
                "on for applications that ask for it (Enabled=1, DisabledByDefault=absent");
    expect_eval(NULL, "case-win7-enabled-dbd-absent.reg", "software-center-schannel-default",
                "FAIL", "DisabledByDefault=absent; build 7601 default: off");
}
END_TEST

START_TEST(test_case_win8_and_7600_get_their_own_remedy)
{
    expect_eval(NULL, "case-win8-client.reg", "os-win8-upgrade", "FAIL", "Windows 8.0");
    expect_eval(NULL, "case-win8-client.reg", "winhttp-kb3140245", NULL, NULL);
    expect_eval(NULL, "case-win7-rtm-7600.reg", "os-7600-sp1", "FAIL", "OS build is 7600");
    expect_eval(NULL, "case-win7-rtm-7600.reg", "winhttp-kb3140245", NULL, NULL);
}
END_TEST

START_TEST(test_case_ssrs2014_needs_the_net35_update)
{
    expect_eval("reporting_point", "case-server2012r2-ssrs2014-no-net35-update.reg",
                "reporting-point-ssrs-dotnet35", "FAIL", "lack KB3154520");
    expect_eval("reporting_point", "case-server2012r2-ssrs2014-no-net35-update.reg",
                "reporting-point-ssrs-tls12", "pass", "SQL Server 2014 SP2 and later");
    /* a reporting point that reports no Reporting Services instance fails */
    expect_eval("reporting_point", "case-win10-dsp-without-tls12.reg", "reporting-point-ssrs-tls12",
                "FAIL", "no entry in Reporting Services instances");
}
END_TEST

START_TEST(test_case_wsus_on_server_core_and_without_the_sup_role)
{
    expect_eval("software_update_point", "case-server2012r2-core-wsus.reg", "wsus-2012r2-kb4022720",
                "FAIL", "lack KB4022720 (its package is install pending, CurrentState 0x60");
    expect_eval("distribution_point", "case-server2012r2-core-wsus.reg", "wsus-2012r2-kb4022720",
                "FAIL", "lack KB4022720");
}
END_TEST

START_TEST(test_case_sql2008r2_sp2_x64_has_no_tls12_build)
{
    expect_eval("site_database", "case-server2008r2-sql2008r2sp2-x64.reg", "sql-engine-tls12",
                "FAIL",
                "fix: SQL Server 2008 R2 SP3 and its TLS 1.2 update (10.50.6542.0, "
                "KB4057113)");
}
END_TEST

static Suite *rules_suite(void)
{
    Suite *s = suite_create("rules");
    tu_tcase(s, "fixtures", setup, teardown,
             TU_TESTS(test_win7_unpatched_client_blocks_on_winhttp_and_schannel,
                      test_win7_dsp_native_only_fails_naming_wow6432node,
                      test_win7_ready_client_passes_every_rule,
                      test_win81_client_ready_by_os_defaults_warns_on_strong_crypto,
                      test_win10_22h2_defaults_ready, test_win11_client_passes_every_rule,
                      test_wsus_2012_with_kb4022721_passes, test_wsus_2012_without_kb4022721_blocks,
                      test_sql2014_sp1_below_4219_blocks_site_database,
                      test_sql_express_5026_passes_5025_fails_on_secondary,
                      test_server2019_site_server_ready,
                      test_only_applicable_rules_produce_verdicts,
                      test_collector_fixtures_evaluate_to_exact_verdicts));

    tu_tcase(s, "boundaries", setup, teardown,
             TU_TESTS(test_dotnet_release_boundary_394802, test_sql_engine_branch_boundaries,
                      test_sql_2005_reason_says_no_tls12_build, test_sql_known_bad_build_warns,
                      test_sql_engine_without_instances_fails_on_site_database,
                      test_snac_boundary_ignores_minor, test_odbc18_boundary_and_known_bad,
                      test_reasons_neutralise_hostile_strings, test_dsp_bit_boundary,
                      test_winhttp_rules_by_build_and_edition,
                      test_schannel_tls12_defaults_by_build, test_absent_fact_fails_not_reported,
                      test_strong_crypto_names_each_failing_value,
                      test_report_of_an_older_collector_fails_closed_on_new_facts,
                      test_fips_on_warns, test_server_2008_sp2_needs_kb4019276_and_vista_cannot));

    tu_tcase(s, "eval", NULL, NULL,
             TU_TESTS(test_rules_eval_reg_file_prints_verdicts_and_exit_code,
                      test_rules_eval_bad_input_is_named));

    tu_tcase(s, "cases", NULL, NULL,
             TU_TESTS(test_case_dsp_without_tls12_fails_on_every_version_and_view,
                      test_case_server2008sp2_core_is_a_server_and_winhttp_fails_closed,
                      test_case_staged_update_is_not_installed,
                      test_case_win7_enabled_without_disabled_by_default_serves_winhttp,
                      test_case_win8_and_7600_get_their_own_remedy,
                      test_case_ssrs2014_needs_the_net35_update,
                      test_case_wsus_on_server_core_and_without_the_sup_role,
                      test_case_sql2008r2_sp2_x64_has_no_tls12_build));

    tu_tcase(s, "catalog", setup, teardown,
             TU_TESTS(test_default_catalog_is_complete, test_catalog_minimal_rule_loads,
                      test_catalog_unknown_operator_names_rule,
                      test_catalog_unknown_fact_names_rule, test_catalog_missing_remedy_names_rule,
                      test_catalog_duplicate_id_names_rule, test_catalog_bad_severity_names_rule,
                      test_catalog_type_mismatches_are_refused,
                      test_catalog_structure_errors_are_refused, test_catalog_over_cap_is_refused));
    return s;
}

int main(void) { return tu_run_suite(rules_suite()); }

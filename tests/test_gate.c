/*
 * test_gate.c — the per-server gate, its blockers, waivers and orphan risk, on real database
 * files, through gate.h and through the real `tlsgate gate|waive|unwaive|audit` commands.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "facts.h"
#include "fixture.h"
#include "gate.h"
#include "ingest.h"
#include "rules.h"

static char *dir;
static const char *db;
static struct store *s;
static struct gate_time t;

static void setup(void)
{
    dir = tu_tmpdir();
    db = strdup(tu_path(dir, "gate.db"));
    s = fx_open(db);
    t = gate_time_make(FX_NOW, FX_STALE_AFTER);
}

static void teardown(void)
{
    store_close(s);
    tu_rmtree(dir);
    free(dir);
    free((char *)db);
}

/* Two sites in enforce: P01 (site server+database, MP, DP, SUP, three clients) and P02 (MP, one
 * client). Everything ready unless a test says otherwise. */
static void two_sites(void)
{
    fx_site(s, "P01", "enforce");
    fx_site(s, "P02", "enforce");
    fx_p01_servers(s);
    fx_host(s, "pc1.p01.example", "P01", ROLE_CLIENT);
    fx_host(s, "pc2.p01.example", "P01", ROLE_CLIENT);
    fx_host(s, "pc3.p01.example", "P01", ROLE_CLIENT);
    fx_host(s, "mp1.p02.example", "P02", MP);
    fx_host(s, "pc1.p02.example", "P02", ROLE_CLIENT);
}

/* gate_server_get into a copy (names are only valid during the callback). */
struct got {
    struct gate_server g;
    char name[256];
};

static int keep(const struct gate_server *g, void *arg)
{
    struct got *k = arg;
    k->g = *g;
    snprintf(k->name, sizeof(k->name), "%s", g->name);
    k->g.name = k->name;
    k->g.site = NULL;
    return 0;
}

static struct gate_server server(const char *name)
{
    static struct got k;
    memset(&k, 0, sizeof(k));
    int rc = gate_server_get(s, name, &t, keep, &k);
    ck_assert_msg(rc == 0, "%s: %s", name, store_errmsg(s));
    return k.g;
}

START_TEST(test_gate_opens_when_site_in_enforce_and_everything_ready)
{
    two_sites();
    struct gate_server g = server("mp1.p01.example");
    ck_assert(g.open);
    ck_assert_int_eq(g.dependents, 3);
    ck_assert_int_eq(g.blocking, 0);
    ck_assert(!g.orphan_risk);
    /* The SUP serves the clients and the site server (WSUS); the database serves the MP, SUP,
     * and the site server role on its own host, which is not its own dependent. */
    ck_assert_int_eq(server("sup1.p01.example").dependents, 4);
    ck_assert_int_eq(server("db1.p01.example").dependents, 2);
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "gate OPEN"));
    free(out);
}
END_TEST

START_TEST(test_gate_win7_client_without_kb3140245_blocks_its_sites_mp_dp_sup_only)
{
    two_sites();
    fx_win7_without_kb(s, "pc2.p01.example");
    const char *blocked[] = {"mp1.p01.example", "dp1.p01.example", "sup1.p01.example"};
    for (int i = 0; i < 3; i++) {
        struct gate_server g = server(blocked[i]);
        ck_assert_msg(!g.open, "%s", blocked[i]);
        ck_assert_int_eq(g.blocking, 1);
        char *out;
        ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", blocked[i], NULL), 1);
        ck_assert_ptr_nonnull(strstr(out, "gate BLOCKED"));
        ck_assert_ptr_nonnull(strstr(out, "1 dependent: winhttp-kb3140245: "
                                          "KB3140245 missing"));
        ck_assert_ptr_nonnull(strstr(out, "pc2.p01.example  not_ready  KB3140245 missing"));
        free(out);
    }
    /* Not a dependent of the client: the database; another site: P02's MP. */
    ck_assert(server("db1.p01.example").open);
    ck_assert(server("mp1.p02.example").open);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "gate", "check", "mp1.p02.example", NULL), 0);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "gate", "check", "db1.p01.example", NULL), 0);
}
END_TEST

START_TEST(test_gate_blocks_on_stale_client)
{
    two_sites();
    fx_stale(s, "pc1.p01.example");
    struct gate_server g = server("dp1.p01.example");
    ck_assert(!g.open);
    ck_assert_int_eq(g.blocking, 1);
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "dp1.p01.example", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "1 dependent: " GATE_RULE_STALE));
    ck_assert_ptr_nonnull(strstr(out, "pc1.p01.example  unknown  last report"));
    free(out);
    /* The same report is fresh for a clock one stale period earlier. */
    ck_assert_int_eq(
        fx_run_at(db, FX_NOW - 10, NULL, NULL, "gate", "check", "dp1.p01.example", NULL), 0);
}
END_TEST

START_TEST(test_gate_blocks_on_never_reported_client)
{
    two_sites();
    fx_unreported(s, "pc3.p01.example");
    ck_assert_int_eq(server("mp1.p01.example").blocking, 1);
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "pc3.p01.example  unknown  never reported"));
    free(out);
}
END_TEST

START_TEST(test_gate_waived_client_does_not_block_and_is_shown_waived)
{
    two_sites();
    fx_win7_without_kb(s, "pc1.p01.example");
    fx_unreported(s, "pc2.p01.example");
    char *out, *err;
    ck_assert_int_eq(fx_run(db, &out, &err, "waive", "pc1.p01.example", "--reason",
                            "decommissioned Friday", NULL),
                     0);
    free(out);
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "waive", "pc2.p01.example", "--reason", "lab",
                            "--until", "2030-01-01", NULL),
                     0);
    struct gate_server g = server("mp1.p01.example");
    ck_assert(g.open);
    ck_assert_int_eq(g.blocking, 0);
    ck_assert_int_eq(g.waived_dependents, 2);
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "waived 2"));
    ck_assert_ptr_nonnull(strstr(out, "pc1.p01.example  not_ready  waived until unwaived: "
                                      "decommissioned Friday"));
    ck_assert_ptr_nonnull(strstr(out, "pc2.p01.example  unknown  waived until "
                                      "2030-01-01T00:00:00Z: lab"));
    free(out);
    ck_assert_int_eq(fx_run(db, &out, NULL, "--json", "gate", "check", "mp1.p01.example", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"waived_list\":[{\"host\":\"pc1.p01.example\","
                                      "\"state\":\"not_ready\",\"reason\":\"decommissioned "
                                      "Friday\",\"until\":null}"));
    free(out);

    /* unwaive: it blocks again, and both changes are in the audit log. */
    ck_assert_int_eq(fx_run(db, NULL, NULL, "unwaive", "pc1.p01.example", NULL), 0);
    ck_assert_int_eq(server("mp1.p01.example").blocking, 1);
    ck_assert_int_eq(fx_run(db, &out, NULL, "audit", NULL), 0);
    tu_assert_has(out, "ok: waived until unwaived", "ok: waived until 2030-01-01T00:00:00Z",
                  "ok: unwaived", "tester");
    free(out);
}
END_TEST

START_TEST(test_gate_expired_waiver_blocks_again)
{
    two_sites();
    fx_win7_without_kb(s, "pc1.p01.example");
    fx_waive(s, "pc1.p01.example", FX_NOW + 3600);
    ck_assert(server("mp1.p01.example").open);
    /* until_at == now is already expired (until_at <= now stops counting). */
    t = gate_time_make(FX_NOW + 3600, FX_STALE_AFTER);
    struct gate_server g = server("mp1.p01.example");
    ck_assert(!g.open);
    ck_assert_int_eq(g.waived_dependents, 0);
    ck_assert_int_eq(
        fx_run_at(db, FX_NOW + 3599, NULL, NULL, "gate", "check", "mp1.p01.example", NULL), 0);
    char *out;
    ck_assert_int_eq(
        fx_run_at(db, FX_NOW + 3600, &out, NULL, "gate", "check", "mp1.p01.example", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "pc1.p01.example  not_ready  KB3140245 missing"));
    free(out);
}
END_TEST

START_TEST(test_gate_explicit_edge_dependent_blocks)
{
    two_sites();
    /* A client of P02 that talks to P01's DP (a cross-site edge), and P01's own MP talking to
     * its DP (no derived rule says so). */
    fx_edge(s, "pc1.p02.example", "dp1.p01.example");
    fx_edge(s, "mp1.p01.example", "dp1.p01.example");
    /* An edge that duplicates a derived dependency is not counted twice. */
    fx_edge(s, "pc1.p01.example", "dp1.p01.example");
    ck_assert_int_eq(server("dp1.p01.example").dependents, 5);
    fx_win7_without_kb(s, "pc1.p02.example");
    fx_stale(s, "mp1.p01.example");
    struct gate_server g = server("dp1.p01.example");
    ck_assert(!g.open);
    ck_assert_int_eq(g.blocking, 2);
    /* The SUP has no edge: P02's client is not its dependent. The stale MP is the derived
     * dependent of the database, which it now blocks. */
    ck_assert_int_eq(server("sup1.p01.example").blocking, 0);
    ck_assert_int_eq(server("db1.p01.example").blocking, 1);
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "dp1.p01.example", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "pc1.p02.example  not_ready  KB3140245 missing"));
    ck_assert_ptr_nonnull(strstr(out, "mp1.p01.example  unknown  last report"));
    free(out);
}
END_TEST

START_TEST(test_gate_server_must_be_ready_itself_waiver_or_not)
{
    two_sites();
    fx_fail(s, "mp1.p01.example", "dotnet-strong-crypto", "SchUseStrongCrypto missing");
    fx_waive(s, "mp1.p01.example", 0);
    struct gate_server g = server("mp1.p01.example");
    ck_assert(!g.open);
    ck_assert(g.waived);
    ck_assert_int_eq(g.blocking, 0);
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "server itself: not_ready (waived"));
    ck_assert_ptr_nonnull(strstr(out, "dotnet-strong-crypto: SchUseStrongCrypto missing"));
    free(out);
    /* As the database's dependent, the waived MP does not block. */
    ck_assert(server("db1.p01.example").open);
}
END_TEST

START_TEST(test_gate_closed_outside_enforce_but_answers_what_if)
{
    two_sites();
    fx_sql(s, "UPDATE site SET phase = 'servers' WHERE code = 'P01'");
    ck_assert(!server("mp1.p01.example").open);
    ck_assert_int_eq(server("mp1.p01.example").blocking, 0);
    fx_win7_without_kb(s, "pc3.p01.example");
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "site P01 is in servers, not enforce: what if"));
    ck_assert_ptr_nonnull(strstr(out, "pc3.p01.example  not_ready  KB3140245 missing"));
    free(out);
    /* complete only follows a passed enforce: the gate stays open there. */
    fx_sql(s, "UPDATE site SET phase = 'complete' WHERE code = 'P02'");
    ck_assert(server("mp1.p02.example").open);
}
END_TEST

START_TEST(test_gate_orphan_risk_server_disabled_legacy_while_blocked)
{
    two_sites();
    fx_sql(s, "UPDATE site SET phase = 'clients' WHERE code = 'P01'");
    fx_win7_without_kb(s, "pc1.p01.example");
    fx_legacy_off(s, "dp1.p01.example");
    fx_legacy_off(s, "mp1.p01.example");
    fx_fix(s, "pc1.p01.example");
    ck_assert(!server("dp1.p01.example").orphan_risk); /* early but nobody is orphaned */
    fx_win7_without_kb(s, "pc1.p01.example");
    fx_legacy_off(s, "dp1.p01.example");
    ck_assert(server("dp1.p01.example").orphan_risk);
    ck_assert(server("mp1.p01.example").orphan_risk);
    ck_assert(!server("sup1.p01.example").orphan_risk); /* blocked, but legacy still on */
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "list", "--site", "P01", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "ORPHAN RISK"));
    char *line = strstr(out, "dp1.p01.example");
    ck_assert_ptr_nonnull(line);
    ck_assert_ptr_nonnull(strstr(line, "ORPHAN RISK"));
    free(out);
    ck_assert_int_eq(fx_run(db, &out, NULL, "--json", "gate", "list", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"name\":\"dp1.p01.example\",\"site\":\"P01\","
                                      "\"roles\":[\"distribution_point\"],\"phase\":\"clients\","
                                      "\"gate\":\"blocked\",\"state\":\"ready\",\"waived\":false,"
                                      "\"dependents\":3,\"blocking\":1,\"waived_dependents\":0,"
                                      "\"legacy_disabled\":true,\"orphan_risk\":true"));
    free(out);
}
END_TEST

/* Stores, for `name`, the report the collector builds from tests/fixtures/facts/FIXTURE.json
 * (the facts of a case-*.reg export), through ingest as the daemon stores it. `edit` may change
 * the facts first. */
static void ingest_facts(const char *name, const char *fixture, void (*edit)(json_t *))
{
    char rel[256], err[512];
    snprintf(rel, sizeof(rel), "tests/fixtures/facts/%s.json", fixture);
    json_t *facts;
    ck_assert_msg(facts_load_file(tu_source_path(rel), &facts, err, sizeof(err)) == 0, "%s", err);
    if (edit)
        edit(facts);
    json_t *r = facts_build_report(facts, name, FX_NOW - 30, "regfile", 900);
    struct rules_catalog *c;
    ck_assert_msg(rules_load_default(&c, err, sizeof(err)) == 0, "%s", err);
    long long id = fx_id(s, name);
    unsigned roles = (unsigned)fx_int(s, "SELECT roles FROM host WHERE id = %lld", id);
    ck_assert_msg(ingest_report(s, c, id, roles, r, FX_NOW - 30) == 0, "%s", store_errmsg(s));
    rules_free(c);
    json_decref(r);
    json_decref(facts);
}

static void drop_build(json_t *facts)
{
    json_object_set_new(json_object_get(facts, "os"), "build", json_null());
}

START_TEST(test_gate_orphan_risk_follows_os_defaults_and_disabled_by_default)
{
    two_sites();
    fx_win7_without_kb(s, "pc1.p01.example"); /* a client of dp1 that is not ready */
    /* nothing written: SSL 3.0 is off by default on 2019, TLS 1.0 and 1.1 are on */
    ingest_facts("dp1.p01.example", "case-server2019-dsp-wow64-without-tls12", NULL);
    ck_assert(!server("dp1.p01.example").legacy_disabled);
    ck_assert(!server("dp1.p01.example").orphan_risk);
    /* Server 2019 with TLS 1.0 and 1.1 Enabled=0 and SSL 3.0 left to its default (off) */
    ingest_facts("dp1.p01.example", "case-server2019-legacy-off-by-default", NULL);
    ck_assert(server("dp1.p01.example").legacy_disabled);
    ck_assert(server("dp1.p01.example").orphan_risk);
    /* Server 2016 with DisabledByDefault=1 on SSL 3.0, TLS 1.0, TLS 1.1: IIS does not ask */
    ingest_facts("dp1.p01.example", "case-server2016-legacy-disabled-by-default", NULL);
    ck_assert(server("dp1.p01.example").orphan_risk);
    /* Server 2008 R2: TLS 1.1 is off by default, so SSL 3.0 and TLS 1.0 disabled is all */
    ingest_facts("dp1.p01.example", "case-server2008r2-legacy-tls11-default-off", NULL);
    ck_assert(server("dp1.p01.example").orphan_risk);
    /* when the OS build is unknown an absent value's default is too: raise the alarm */
    ingest_facts("dp1.p01.example", "case-server2019-legacy-off-by-default", drop_build);
    ck_assert(server("dp1.p01.example").orphan_risk);
    ck_assert_int_eq(fx_int(s, "SELECT legacy_disabled FROM report WHERE host_id = %lld",
                            fx_id(s, "dp1.p01.example")),
                     1);
}
END_TEST

/* enforce -> complete asks each server to report the legacy protocols off, not to write keys
 * its OS does not need (SSL 3.0 on Server 2016 and later, TLS 1.1 on Server 2008 R2). */
START_TEST(test_enforce_completes_without_keys_the_os_does_not_need)
{
    fx_site(s, "P09", "enforce");
    fx_host(s, "mp1.p09.example", "P09", MP);
    fx_host(s, "dp1.p09.example", "P09", DP);
    fx_host(s, "pc1.p09.example", "P09", ROLE_CLIENT);
    ingest_facts("mp1.p09.example", "case-server2019-legacy-off-by-default", NULL);
    ingest_facts("dp1.p09.example", "case-server2008r2-legacy-tls11-default-off", NULL);
    fx_sql(s, "UPDATE report SET blockers = 0 WHERE host_id IN (%lld, %lld)",
           fx_id(s, "mp1.p09.example"), fx_id(s, "dp1.p09.example"));
    fx_sql(s, "DELETE FROM verdict");
    fx_probed(s, "mp1.p09.example", "refused", FX_NOW - 60);
    fx_probed(s, "dp1.p09.example", "refused", FX_NOW - 60);
    char *out;
    int code = fx_run(db, &out, NULL, "phase", "advance", "--site", "P09", "--dry-run", NULL);
    ck_assert_msg(code == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "enforce -> complete would pass"));
    free(out);
}
END_TEST

START_TEST(test_gate_orphan_risk_when_dependent_goes_stale_after_disable)
{
    two_sites();
    fx_legacy_off(s, "mp1.p01.example");
    struct gate_server g = server("mp1.p01.example");
    ck_assert(g.open);
    ck_assert(!g.orphan_risk);
    /* Later the client stops reporting: the server that already dropped TLS 1.0 may have
     * orphaned it. */
    fx_stale(s, "pc2.p01.example");
    g = server("mp1.p01.example");
    ck_assert(!g.open);
    ck_assert(g.orphan_risk);
    /* Or it turns not ready (a rollback of an update, a reimage). */
    fx_fix(s, "pc2.p01.example");
    ck_assert(!server("mp1.p01.example").orphan_risk);
    fx_win7_without_kb(s, "pc2.p01.example");
    ck_assert(server("mp1.p01.example").orphan_risk);
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "ORPHAN RISK"));
    free(out);
}
END_TEST

struct rows {
    char buf[4096];
    int n;
};

static int collect_blocker(const struct gate_blocker *b, void *arg)
{
    struct rows *r = arg;
    size_t used = strlen(r->buf);
    snprintf(r->buf + used, sizeof(r->buf) - used, "%s,%s,%s,%s,%s\n", b->server, b->dependent,
             gate_state_name(b->state), b->rule, b->reason);
    r->n++;
    return 0;
}

START_TEST(test_gate_blockers_one_row_per_failed_rule_in_order)
{
    two_sites();
    fx_win7_without_kb(s, "pc2.p01.example");
    fx_fail(s, "pc2.p01.example", "schannel-tls12-client", "TLS 1.2 client disabled");
    fx_unreported(s, "pc1.p01.example");
    fx_waive(s, "pc3.p01.example", 0);
    fx_unreported(s, "pc3.p01.example");
    struct rows r = {{0}, 0};
    ck_assert_int_eq(gate_blockers(s, "P01", NULL, &t, collect_blocker, &r), 0);
    ck_assert_str_eq(r.buf, "dp1.p01.example,pc1.p01.example,unknown,no-report,never reported\n"
                            "dp1.p01.example,pc2.p01.example,not_ready,schannel-tls12-client,"
                            "TLS 1.2 client disabled\n"
                            "dp1.p01.example,pc2.p01.example,not_ready,winhttp-kb3140245,"
                            "KB3140245 missing\n"
                            "mp1.p01.example,pc1.p01.example,unknown,no-report,never reported\n"
                            "mp1.p01.example,pc2.p01.example,not_ready,schannel-tls12-client,"
                            "TLS 1.2 client disabled\n"
                            "mp1.p01.example,pc2.p01.example,not_ready,winhttp-kb3140245,"
                            "KB3140245 missing\n"
                            "sup1.p01.example,pc1.p01.example,unknown,no-report,never reported\n"
                            "sup1.p01.example,pc2.p01.example,not_ready,schannel-tls12-client,"
                            "TLS 1.2 client disabled\n"
                            "sup1.p01.example,pc2.p01.example,not_ready,winhttp-kb3140245,"
                            "KB3140245 missing\n");
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(gate_blockers(s, NULL, "MP1.P01.EXAMPLE", &t, collect_blocker, &r), 0);
    ck_assert_int_eq(r.n, 3);
    ck_assert_int_eq(gate_blockers(s, NULL, "pc1.p01.example", &t, collect_blocker, &r), -EINVAL);
    ck_assert_int_eq(gate_blockers(s, NULL, "nope.example", &t, collect_blocker, &r), -ENOENT);
    ck_assert_int_eq(gate_blockers(s, "X99", NULL, &t, collect_blocker, &r), -ENOENT);
}
END_TEST

START_TEST(test_gate_blockers_of_every_site_in_site_server_order_with_cross_site_edge)
{
    two_sites();
    fx_edge(s, "pc1.p02.example", "dp1.p01.example");
    fx_win7_without_kb(s, "pc1.p02.example");
    fx_unreported(s, "db1.p01.example");
    struct rows r = {{0}, 0};
    ck_assert_int_eq(gate_blockers(s, NULL, NULL, &t, collect_blocker, &r), 0);
    ck_assert_str_eq(r.buf, "dp1.p01.example,pc1.p02.example,not_ready,winhttp-kb3140245,"
                            "KB3140245 missing\n"
                            "sup1.p01.example,db1.p01.example,unknown,no-report,never reported\n"
                            "mp1.p02.example,pc1.p02.example,not_ready,winhttp-kb3140245,"
                            "KB3140245 missing\n");
}
END_TEST

struct totals {
    long servers, open, orphan;
};

static int sum_site(const struct gate_site *g, void *arg)
{
    struct totals *x = arg;
    ck_assert_str_eq(g->code, "P01");
    ck_assert_int_eq(g->hosts, 7);
    ck_assert_int_eq(g->ready, 4);
    ck_assert_int_eq(g->not_ready, 2);
    ck_assert_int_eq(g->unknown, 1);
    ck_assert_int_eq(g->waived, 1);
    x->servers = g->servers;
    x->open = g->servers_gate_open;
    x->orphan = g->orphan_risk;
    return 0;
}

START_TEST(test_gate_site_summary_counts)
{
    two_sites();
    fx_win7_without_kb(s, "pc1.p01.example");
    fx_fail(s, "db1.p01.example", "sql-tls12", "SQL Server 12.0.4100 lacks TLS 1.2");
    fx_stale(s, "pc3.p01.example");
    fx_waive(s, "pc3.p01.example", 0);
    fx_legacy_off(s, "dp1.p01.example");
    struct totals x = {0};
    ck_assert_int_eq(gate_sites(s, "p01", &t, sum_site, &x), 0);
    /* db1 is closed by its own failure, MP, DP and SUP by pc1; only the DP disabled legacy. */
    ck_assert_int_eq(x.servers, 4);
    ck_assert_int_eq(x.open, 0);
    ck_assert_int_eq(x.orphan, 1);
    ck_assert_int_eq(gate_sites(s, "Z00", &t, sum_site, &x), -ENOENT);
}
END_TEST

/* ---- the aggregate against a brute-force count over every (server, host) pair ---------- */

static unsigned rnd_state = 12345;
static unsigned rnd(unsigned n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 16) % n;
}

struct brute_host {
    long long id;
    int site;
    unsigned roles;
    int state; /* 0 unknown, 1 not ready, 2 ready */
    bool waived, legacy_off;
};

static struct brute_host fleet[120];
static int nfleet;
static bool edges[120][120]; /* [dependent][server] */

static void random_fleet(unsigned seed)
{
    rnd_state = seed;
    fx_site(s, "A01", "enforce");
    fx_site(s, "A02", "servers");
    static const unsigned role_pool[] = {ROLE_CLIENT,
                                         ROLE_CLIENT,
                                         ROLE_CLIENT,
                                         ROLE_CLIENT,
                                         MP,
                                         DP,
                                         SUP,
                                         DB,
                                         ROLE_SITE_DATABASE,
                                         ROLE_SMS_PROVIDER,
                                         ROLE_CONSOLE,
                                         ROLE_REPORTING_POINT | ROLE_SMS_PROVIDER,
                                         ROLE_CLIENT | ROLE_CONSOLE,
                                         MP | DP,
                                         ROLE_CLOUD_MANAGEMENT_GATEWAY};
    nfleet = 60 + (int)rnd(60);
    for (int i = 0; i < nfleet; i++) {
        struct brute_host *h = &fleet[i];
        char name[64];
        h->site = (int)rnd(2);
        h->roles = role_pool[rnd(sizeof(role_pool) / sizeof(role_pool[0]))];
        snprintf(name, sizeof(name), "h%03d.example", i);
        h->id = fx_host(s, name, h->site ? "A02" : "A01", h->roles);
        h->state = (int)rnd(3);
        if (h->state == 1)
            fx_fail(s, name, "r1", "reason one");
        if (h->state == 0) {
            if (rnd(2))
                fx_stale(s, name);
            else
                fx_unreported(s, name);
        }
        bool reported = fx_int(s, "SELECT count(*) FROM report WHERE host_id = %lld", h->id);
        h->legacy_off = reported && rnd(2);
        if (h->legacy_off)
            fx_legacy_off(s, name);
        h->waived = rnd(6) == 0;
        if (h->waived)
            fx_waive(s, name, rnd(2) ? 0 : FX_NOW + 100);
        else if (rnd(10) == 0) /* an expired waiver changes nothing */
            fx_waive(s, name, FX_NOW - 100);
    }
    memset(edges, 0, sizeof(edges));
    for (int k = 0; k < 40; k++) {
        int d = (int)rnd((unsigned)nfleet), sv = (int)rnd((unsigned)nfleet);
        if (d == sv || edges[d][sv])
            continue;
        edges[d][sv] = true;
        char dn[64], sn[64];
        snprintf(dn, sizeof(dn), "h%03d.example", d);
        snprintf(sn, sizeof(sn), "h%03d.example", sv);
        fx_edge(s, dn, sn);
    }
}

static int check_against_brute(const struct gate_server *g, void *arg)
{
    (void)arg;
    int sv = -1;
    for (int i = 0; i < nfleet; i++)
        if (fleet[i].id == g->id)
            sv = i;
    ck_assert_int_ge(sv, 0);
    unsigned dm = 0;
    for (size_t r = 0; r < inv_derived_count; r++)
        if (fleet[sv].roles & inv_derived[r].server_role)
            dm |= inv_derived[r].dependent_roles;
    long dependents = 0, blocking = 0, waived = 0;
    for (int i = 0; i < nfleet; i++) {
        if (i == sv)
            continue;
        bool dep = (fleet[i].site == fleet[sv].site && (fleet[i].roles & dm)) || edges[i][sv];
        if (!dep)
            continue;
        dependents++;
        waived += fleet[i].waived;
        blocking += !fleet[i].waived && fleet[i].state != 2;
    }
    ck_assert_int_eq(g->dependents, dependents);
    ck_assert_int_eq(g->blocking, blocking);
    ck_assert_int_eq(g->waived_dependents, waived);
    bool hosts_ok = fleet[sv].state == 2 && blocking == 0;
    ck_assert_int_eq(g->open, hosts_ok && fleet[sv].site == 0);
    ck_assert_int_eq(g->orphan_risk, fleet[sv].legacy_off && !hosts_ok);
    ck_assert_int_eq(g->state, fleet[sv].state == 2   ? GATE_READY
                               : fleet[sv].state == 1 ? GATE_NOT_READY
                                                      : GATE_UNKNOWN);
    /* And the listing names exactly the blocking dependents. */
    struct rows r = {{0}, 0};
    ck_assert_int_eq(gate_blockers(s, NULL, g->name, &t, collect_blocker, &r), 0);
    ck_assert_int_eq(r.n, blocking); /* one failed rule each */
    return 0;
}

START_TEST(test_gate_aggregate_equals_brute_force_on_random_fleets)
{
    random_fleet(1000u + (unsigned)_i);
    ck_assert_int_eq(gate_servers(s, NULL, &t, check_against_brute, NULL), 0);
}
END_TEST

/* phase advance's one-pass count (gate_phase_exit) against gate_sites' per-role aggregate, in
 * every phase, and the hosts it lists against its count. */
struct exit_seen {
    long calls, exit_blocking, waived;
    enum phase_id phase;
    char hosts[120][64];
    int nhosts;
};

static int take_exit(const struct gate_site *g, void *arg)
{
    struct exit_seen *e = arg;
    e->calls++;
    e->exit_blocking = g->exit_blocking;
    e->waived = g->waived;
    e->phase = g->phase;
    return 0;
}

static int take_exit_host(const struct gate_failing *f, void *arg)
{
    struct exit_seen *e = arg;
    if (!f->host)
        return 0;
    for (int i = 0; i < e->nhosts; i++)
        if (!strcmp(e->hosts[i], f->host))
            return 0;
    ck_assert_int_lt(e->nhosts, 120);
    snprintf(e->hosts[e->nhosts++], sizeof(e->hosts[0]), "%s", f->host);
    return 0;
}

START_TEST(test_gate_phase_exit_equals_site_aggregate_in_every_phase)
{
    random_fleet(2000u + (unsigned)_i);
    for (int p = 0; p < PHASE_COUNT; p++) {
        for (int site = 0; site < 2; site++) {
            const char *code = site ? "A02" : "A01";
            fx_sql(s, "UPDATE site SET phase = '%s' WHERE code = '%s'", phase_name(p), code);
            struct exit_seen agg = {0}, one = {0};
            ck_assert_int_eq(gate_sites(s, code, &t, take_exit, &agg), 0);
            ck_assert_int_eq(gate_phase_exit(s, code, &t, 0, take_exit, take_exit_host, &one), 0);
            ck_assert_int_eq(one.calls, 1);
            ck_assert_int_eq(one.phase, p);
            ck_assert_int_eq(one.exit_blocking, agg.exit_blocking);
            ck_assert_int_eq(one.waived, agg.waived);
            if (p != PHASE_ENFORCE) /* enforce adds the wire's restart-pending servers */
                ck_assert_int_eq(one.nhosts, one.exit_blocking);
        }
    }
    struct exit_seen none = {0};
    ck_assert_int_eq(gate_phase_exit(s, "Z00", &t, 0, take_exit, take_exit_host, &none), -ENOENT);
    ck_assert_int_eq(none.calls, 0);
}
END_TEST

/* The lead's real import: the sample inventory plus an explicit edge, then stored reports. */
START_TEST(test_gate_on_imported_inventory_with_explicit_edge)
{
    ck_assert_int_eq(fx_run(db, NULL, NULL, "inventory", "import",
                            tu_source_path("tools/sample-inventory.csv"), NULL),
                     0);
    const char *edges = tu_path(dir, "edges.csv");
    const char *csv = "dependent,server,channel\n"
                      "adm-ws01.corp.contoso.com,cm-ps1-dp01.corp.contoso.com,content-admin\n";
    tu_write_file(edges, csv, strlen(csv));
    ck_assert_int_eq(fx_run(db, NULL, NULL, "inventory", "import", edges, NULL), 0);
    fx_sql(s, "INSERT INTO report SELECT id, %lld, %lld, '{}', 't', 0, 0, 0 FROM host", FX_NOW - 60,
           FX_NOW - 60);
    fx_win7_without_kb(s, "ws-w7-001.corp.contoso.com");
    fx_stale(s, "adm-ws01.corp.contoso.com");

    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "cm-ps1-dp01.corp.contoso.com", NULL),
                     1);
    ck_assert_ptr_nonnull(strstr(out, "ws-w7-001.corp.contoso.com  not_ready  KB3140245 missing"));
    ck_assert_ptr_nonnull(strstr(out, "adm-ws01.corp.contoso.com  unknown  last report"));
    free(out);
    /* DP02 has no edge from the console: only the Windows 7 client blocks it. */
    struct gate_server dp2 = server("cm-ps1-dp02.corp.contoso.com");
    struct gate_server dp1 = server("cm-ps1-dp01.corp.contoso.com");
    ck_assert_int_eq(dp1.dependents, dp2.dependents + 1);
    ck_assert_int_eq(dp1.blocking, 2);
    ck_assert_int_eq(dp2.blocking, 1);
    /* The SMS Provider (on the site server) serves consoles: the stale one blocks it. */
    ck_assert_int_eq(server("cm-ps1-site.corp.contoso.com").blocking, 1);
    ck_assert_int_eq(server("cm-ps1-sql.corp.contoso.com").blocking, 0);
}
END_TEST

/* D's real ingest and catalog: reports from the fixtures, evaluated by the rules engine. */
#define FIXTURE_TIME 1795608000LL /* 2026-11-25T12:00:00Z, the fixtures' collected_at */

static void ingest_fixture(struct rules_catalog *cat, const char *host, const char *fixture)
{
    char rel[128];
    snprintf(rel, sizeof(rel), "tests/fixtures/reports/%s.json", fixture);
    json_error_t je;
    json_t *r = json_load_file(tu_source_path(rel), 0, &je);
    ck_assert_msg(r != NULL, "%s: %s", rel, je.text);
    long long id = fx_id(s, host);
    unsigned roles = (unsigned)fx_int(s, "SELECT roles FROM host WHERE id = %lld", id);
    fx_sql(s, "DELETE FROM report WHERE host_id = %lld", id); /* fx_host's placeholder */
    ck_assert_msg(ingest_report(s, cat, id, roles, r, FIXTURE_TIME + 5) == 0, "%s",
                  store_errmsg(s));
    json_decref(r);
}

START_TEST(test_gate_on_ingested_reports_names_rule_and_remedy)
{
    struct rules_catalog *cat;
    char err[512];
    ck_assert_msg(rules_load_default(&cat, err, sizeof(err)) == 0, "%s", err);
    fx_site(s, "P01", "enforce");
    fx_host(s, "ps1-2019.corp.contoso.com", "P01", MP);
    fx_host(s, "cl-w7-0001.corp.contoso.com", "P01", ROLE_CLIENT);
    fx_host(s, "cl-w7-0002.corp.contoso.com", "P01", ROLE_CLIENT);
    ingest_fixture(cat, "ps1-2019.corp.contoso.com", "server2019-site-server");
    ingest_fixture(cat, "cl-w7-0001.corp.contoso.com", "win7-ready");
    ingest_fixture(cat, "cl-w7-0002.corp.contoso.com", "win7-sp1-x64-unpatched");
    rules_free(cat);

    t = gate_time_make(FIXTURE_TIME + 60, FX_STALE_AFTER);
    struct gate_server g = server("ps1-2019.corp.contoso.com");
    ck_assert_int_eq(g.state, GATE_READY);
    ck_assert_int_eq(g.dependents, 2);
    ck_assert_int_eq(g.blocking, 1);
    char *out;
    ck_assert_int_eq(fx_run_at(db, FIXTURE_TIME + 60, &out, NULL, "gate", "check",
                               "ps1-2019.corp.contoso.com", NULL),
                     1);
    tu_assert_has(out, "dependent: winhttp-kb3140245: ", "remedy: Install KB3140245",
                  "cl-w7-0002.corp.contoso.com  not_ready  ");
    ck_assert_ptr_null(strstr(out, "cl-w7-0001"));
    free(out);
    /* A day later nothing has reported since: every host is unknown, the MP itself too. */
    ck_assert_int_eq(fx_run_at(db, FIXTURE_TIME + FX_STALE_AFTER + 61, &out, NULL, "gate", "check",
                               "ps1-2019.corp.contoso.com", NULL),
                     1);
    ck_assert_ptr_nonnull(strstr(out, "server itself: unknown"));
    ck_assert_ptr_nonnull(strstr(out, "2 dependents: " GATE_RULE_STALE));
    free(out);
}
END_TEST

/* ---- CLI edges ---------------------------------------------------------------------------- */

START_TEST(test_gate_check_refuses_unknown_host_non_server_and_bad_usage)
{
    two_sites();
    char *err;
    ck_assert_int_eq(fx_run(db, NULL, &err, "gate", "check", "nope.example", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "no such host: nope.example"));
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, &err, "gate", "check", "pc1.p01.example", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "pc1.p01.example has no site system role"));
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "gate", "check", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "gate", "check", "a", "b", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "gate", "list", "--bogus", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "gate", "frobnicate", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, &err, "gate", "list", "--site", "Q77", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "no such site: Q77"));
    free(err);
}
END_TEST

/* An unknown site with --json left half a document ("{\"servers\":[") on stdout. */
START_TEST(test_gate_list_json_unknown_site_prints_nothing)
{
    two_sites();
    fx_json_unknown_site_prints_nothing(db, "gate", "list", "Q77");
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "--json", "gate", "list", "--site", "P01", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "{\"servers\":[{"));
    ck_assert_ptr_nonnull(strstr(out, "}]}\n"));
    free(out);
}
END_TEST

START_TEST(test_gate_check_lists_limited_groups_unless_all)
{
    two_sites();
    char name[64];
    for (int i = 0; i < 25; i++) {
        snprintf(name, sizeof(name), "w7-%02d.p01.example", i);
        fx_host(s, name, "P01", ROLE_CLIENT);
        fx_win7_without_kb(s, name);
    }
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "25 dependents: winhttp-kb3140245"));
    ck_assert_ptr_nonnull(strstr(out, "w7-19.p01.example"));
    ck_assert_ptr_null(strstr(out, "w7-20.p01.example"));
    ck_assert_ptr_nonnull(strstr(out, "... and 5 more"));
    free(out);
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", "--all", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "w7-24.p01.example"));
    ck_assert_ptr_null(strstr(out, "more"));
    free(out);
}
END_TEST

START_TEST(test_waive_parses_dates_and_refuses_bad_ones)
{
    two_sites();
    char *out, *err;
    ck_assert_int_eq(fx_run(db, &out, NULL, "waive", "pc1.p01.example", "--reason", "r", "--until",
                            "2030-06-01T12:00:00+02:00", NULL),
                     0);
    ck_assert_str_eq(out, "pc1.p01.example waived until 2030-06-01T10:00:00Z\n");
    free(out);
    ck_assert_int_eq(fx_int(s, "SELECT until_at FROM waiver"), 1906538400LL);
    ck_assert_int_eq(fx_run(db, NULL, &err, "waive", "pc1.p01.example", "--reason", "r", "--until",
                            "2030-02-30", NULL),
                     3);
    ck_assert_ptr_nonnull(strstr(err, "'2030-02-30' is not a date"));
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, &err, "waive", "pc1.p01.example", "--reason", "r", "--until",
                            "2020-01-01", NULL),
                     3);
    ck_assert_ptr_nonnull(strstr(err, "not in the future"));
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "waive", "pc1.p01.example", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, &err, "waive", "ghost.example", "--reason", "r", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "no such host: ghost.example"));
    free(err);
    /* The refusals changed nothing: the first waiver stands, one audit row. */
    ck_assert_int_eq(fx_int(s, "SELECT until_at FROM waiver"), 1906538400LL);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit"), 1);
}
END_TEST

START_TEST(test_audit_json_lists_rows_in_order)
{
    two_sites();
    ck_assert_int_eq(
        fx_run(db, NULL, NULL, "waive", "pc1.p01.example", "--reason", "a \"q\"", NULL), 0);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "unwaive", "pc1.p01.example", NULL), 0);
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "audit", "--json", NULL), 0);
    char *first = strstr(out, "\"outcome\":\"ok: waived until unwaived\"");
    char *second = strstr(out, "\"outcome\":\"ok: unwaived\"");
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(second);
    ck_assert(first < second);
    ck_assert_ptr_nonnull(strstr(out, "{\"audit\":[{\"id\":1,\"at\":\"2027-01-15T08:00:00Z\","
                                      "\"user\":\"tester\",\"command\":"));
    ck_assert_ptr_nonnull(strstr(out, "--reason a \\\"q\\\""));
    free(out);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "audit", "extra", NULL), 2);
}
END_TEST

/* Arguments are bytes: a Latin-1 terminal passes "\xe9" for e-acute. Copied as they were, they
 * made `audit --json` (the command line) and `gate check --json` (the waiver's reason) invalid
 * UTF-8, which a JSON parser refuses whole. Such a byte is written as U+FFFD. */
START_TEST(test_json_output_stays_utf8_with_latin1_arguments)
{
    two_sites();
    ck_assert_int_eq(fx_run(db, NULL, NULL, "waive", "pc1.p01.example", "--reason",
                            "d\xe9"
                            "class\xc3\xa9 \xf0\x9f\x92\xbb",
                            NULL),
                     0);
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "audit", "--json", NULL), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", je.text, out);
    const char *cmd = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "audit"), 0), "command"));
    ck_assert_ptr_nonnull(strstr(cmd, "--reason d\xef\xbf\xbd"
                                      "class\xc3\xa9 \xf0\x9f\x92\xbb"));
    json_decref(j);
    free(out);
    fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", "--json", NULL);
    j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", je.text, out);
    const char *reason = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "waived_list"), 0), "reason"));
    ck_assert_str_eq(reason, "d\xef\xbf\xbd"
                             "class\xc3\xa9 \xf0\x9f\x92\xbb");
    json_decref(j);
    free(out);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("gate");
    TCase *tc = tu_tcase(
        suite, "gate", setup, teardown,
        TU_TESTS(test_gate_opens_when_site_in_enforce_and_everything_ready,
                 test_gate_win7_client_without_kb3140245_blocks_its_sites_mp_dp_sup_only,
                 test_gate_blocks_on_stale_client, test_gate_blocks_on_never_reported_client,
                 test_gate_waived_client_does_not_block_and_is_shown_waived,
                 test_gate_expired_waiver_blocks_again, test_gate_explicit_edge_dependent_blocks,
                 test_gate_server_must_be_ready_itself_waiver_or_not,
                 test_gate_closed_outside_enforce_but_answers_what_if,
                 test_gate_orphan_risk_server_disabled_legacy_while_blocked,
                 test_gate_orphan_risk_when_dependent_goes_stale_after_disable,
                 test_gate_orphan_risk_follows_os_defaults_and_disabled_by_default,
                 test_enforce_completes_without_keys_the_os_does_not_need,
                 test_gate_blockers_one_row_per_failed_rule_in_order,
                 test_gate_blockers_of_every_site_in_site_server_order_with_cross_site_edge,
                 test_gate_site_summary_counts, test_gate_on_imported_inventory_with_explicit_edge,
                 test_gate_on_ingested_reports_names_rule_and_remedy,
                 test_gate_check_refuses_unknown_host_non_server_and_bad_usage,
                 test_gate_list_json_unknown_site_prints_nothing,
                 test_gate_check_lists_limited_groups_unless_all,
                 test_waive_parses_dates_and_refuses_bad_ones, test_audit_json_lists_rows_in_order,
                 test_json_output_stays_utf8_with_latin1_arguments));
    tcase_add_loop_test(tc, test_gate_aggregate_equals_brute_force_on_random_fleets, 0, 12);
    tcase_add_loop_test(tc, test_gate_phase_exit_equals_site_aggregate_in_every_phase, 0, 8);
    return tu_run_suite(suite);
}

/*
 * test_ingest.c — storing reports with their verdicts on real database files: the summary
 * columns, all-or-nothing under a SAVEPOINT (alone and inside a caller's transaction), -ESTALE,
 * and the commands built on it (`rules load` re-evaluation, `rules check`, `host show`,
 * `rules blockers`) run as real processes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "hoststate.h"
#include "ingest.h"
#include "inventory.h"
#include "report.h"
#include "rules.h"
#include "store.h"
#include "testutil.h"

static char *dir;
static const char *db;
static struct store *st;
static struct rules_catalog *cat;

/* 2026-11-25T12:00:00Z, the fixtures' collected_at */
#define T0 1795608000LL
#define NOW "1795611600" /* one hour later */

static void setup(void)
{
    dir = tu_tmpdir();
    db = strdup(tu_path(dir, "t.db"));
    char err[512];
    ck_assert_msg(store_open(db, true, &st, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(rules_load_default(&cat, err, sizeof(err)) == 0, "%s", err);
    fx_site(st, "P01", "inventory");
    fx_site(st, "P02", "inventory");
}

static void teardown(void)
{
    rules_free(cat);
    store_close(st);
    tu_rmtree(dir);
    free((char *)db);
    free(dir);
}

static long long add_host(const char *name, const char *site, unsigned roles)
{
    return fx_host_bare(st, name, site, roles, "127.0.0.1:9");
}

static json_t *fixture(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/fixtures/reports/%s.json", name);
    json_error_t je;
    json_t *r = json_load_file(tu_source_path(rel), JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(r != NULL, "%s: %s", rel, je.text);
    return r;
}

static char *query_text(const char *sql, ...)
{
    va_list ap;
    va_start(ap, sql);
    char buf[1024];
    vsnprintf(buf, sizeof(buf), sql, ap);
    va_end(ap);
    sqlite3_stmt *q;
    ck_assert_int_eq(store_prepare(st, buf, &q), 0);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    char *v = strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    return v;
}

/* Stores report `r` for host `id`; on failure the message is on the store (store_errmsg). */
static int ingest(long long id, unsigned roles, json_t *r)
{
    return ingest_report(st, cat, id, roles, r, T0 + 5);
}

static const char *state_of(long long id)
{
    static char s[16];
    char *v =
        query_text("SELECT " HOSTSTATE_SQL("r", "%lld") " FROM host h LEFT JOIN report r "
                                                        "ON r.host_id = h.id WHERE h.id = %lld",
                   T0 - 3600, id);
    snprintf(s, sizeof(s), "%s", v);
    free(v);
    return s;
}

START_TEST(test_report_fixtures_are_valid_wire_reports)
{
    static const char *const names[] = {"win7-sp1-x64-unpatched",
                                        "win7-kb3140245-native-only",
                                        "win7-ready",
                                        "win81",
                                        "win10-22h2",
                                        "win11-23h2",
                                        "server2012-wsus-kb4022721",
                                        "server2012-wsus-unpatched",
                                        "server2012r2-sql2014sp1-snac",
                                        "server2016-sql2016sp2-express",
                                        "server2019-site-server"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        json_t *r = fixture(names[i]);
        char err[512];
        ck_assert_msg(report_validate(r, err, sizeof(err)) == 0, "%s: %s", names[i], err);
        json_decref(r);
    }
}
END_TEST

START_TEST(test_ingest_stores_report_verdicts_and_summary)
{
    long long id = add_host("cl-w7-0002.corp.contoso.com", "P01", ROLE_CLIENT);
    json_t *r = fixture("win7-sp1-x64-unpatched");
    ck_assert_msg(ingest(id, ROLE_CLIENT, r) == 0, "%s", store_errmsg(st));
    ck_assert_int_eq(fx_int(st, "SELECT collected_at FROM report WHERE host_id = %lld", id), T0);
    ck_assert_int_eq(fx_int(st, "SELECT received_at FROM report WHERE host_id = %lld", id), T0 + 5);
    ck_assert_int_eq(fx_int(st, "SELECT blockers FROM report WHERE host_id = %lld", id), 4);
    ck_assert_int_eq(fx_int(st, "SELECT warnings FROM report WHERE host_id = %lld", id), 3);
    ck_assert_int_eq(fx_int(st, "SELECT legacy_disabled FROM report WHERE host_id = %lld", id), 0);
    char *v = query_text("SELECT catalog_version FROM report WHERE host_id = %lld", id);
    ck_assert_str_eq(v, "2026.12.0");
    free(v);
    ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM verdict WHERE host_id = %lld", id), 9);
    ck_assert_int_eq(fx_int(st,
                            "SELECT count(*) FROM verdict WHERE host_id = %lld AND pass = 0 "
                            "AND severity = 'blocker'",
                            id),
                     4);
    v = query_text("SELECT reason FROM verdict WHERE host_id = %lld AND rule = "
                   "'winhttp-kb3140245'",
                   id);
    ck_assert_str_eq(v, "WinHTTP cannot default to TLS 1.2 without KB3140245: installed updates "
                        "(CBS CurrentState) lack KB3140245");
    free(v);
    char *body = query_text("SELECT body FROM report WHERE host_id = %lld", id);
    json_t *back = json_loads(body, 0, NULL);
    ck_assert(json_equal(back, r));
    json_decref(back);
    free(body);
    ck_assert_str_eq(state_of(id), "not_ready");
    json_decref(r);

    long long ok = add_host("cl-w7-0001.corp.contoso.com", "P01", ROLE_CLIENT);
    r = fixture("win7-ready");
    ck_assert_int_eq(ingest(ok, ROLE_CLIENT, r), 0);
    ck_assert_str_eq(state_of(ok), "ready");
    json_decref(r);
}
END_TEST

START_TEST(test_legacy_disabled_follows_os_defaults_and_disabled_by_default)
{
    long long id = add_host("ps1-2019.corp.contoso.com", "P01", ROLE_SITE_SERVER);
    json_t *r = fixture("server2019-site-server");
    ck_assert_int_eq(ingest(id, ROLE_SITE_SERVER, r), 0);
    ck_assert_int_eq(fx_int(st, "SELECT legacy_disabled FROM report WHERE host_id = %lld", id), 1);
    ck_assert_int_eq(ingest_legacy_disabled(r), 1);
    json_t *sch = json_object_get(r, "schannel");
    json_t *tls11 = json_object_get(json_object_get(sch, "tls11"), "server");
    json_t *ssl3 = json_object_get(json_object_get(sch, "ssl3"), "server");
    /* both absent: the OS default, on for TLS 1.1 on Server 2019 */
    json_object_set_new(tls11, "enabled", json_null());
    json_object_set_new(tls11, "disabled_by_default", json_null());
    ck_assert_int_eq(ingest_legacy_disabled(r), 0);
    json_object_set_new(tls11, "enabled", json_integer(1));
    json_object_set_new(tls11, "disabled_by_default", json_integer(0));
    ck_assert_int_eq(ingest_legacy_disabled(r), 0);
    /* DisabledByDefault=1: IIS and HTTP.sys do not ask for it, so it is off */
    json_object_set_new(tls11, "disabled_by_default", json_integer(1));
    ck_assert_int_eq(ingest_legacy_disabled(r), 1);
    /* SSL 3.0 absent is off by default from Server 2016, on before */
    json_object_set_new(ssl3, "enabled", json_null());
    json_object_set_new(ssl3, "disabled_by_default", json_null());
    ck_assert_int_eq(ingest_legacy_disabled(r), 1);
    json_object_set_new(json_object_get(r, "os"), "build", json_integer(9600));
    ck_assert_int_eq(ingest_legacy_disabled(r), 0);
    /* no build: the default is unknown, and a doubt raises the alarm */
    json_object_set_new(json_object_get(r, "os"), "build", json_null());
    ck_assert_int_eq(ingest_legacy_disabled(r), 1);
    json_decref(r);
}
END_TEST

static void set_time(json_t *r, const char *t)
{
    json_object_set_new(r, "collected_at", json_string(t));
}

START_TEST(test_older_report_is_stale_and_changes_nothing)
{
    long long id = add_host("cl-w7-0003.corp.contoso.com", "P01", ROLE_CLIENT);
    json_t *r = fixture("win7-kb3140245-native-only");
    ck_assert_int_eq(ingest(id, ROLE_CLIENT, r), 0);

    json_t *older = fixture("win7-ready");
    set_time(older, "2026-11-25T11:59:59Z");
    ck_assert_int_eq(ingest(id, ROLE_CLIENT, older), -ESTALE);
    ck_assert_str_eq(store_errmsg(st), "host 1: report collected at 2026-11-25T11:59:59Z is older "
                                       "than the stored one (2026-11-25T12:00:00Z)");
    ck_assert_int_eq(fx_int(st, "SELECT blockers FROM report WHERE host_id = %lld", id), 1);
    ck_assert_int_eq(fx_int(st,
                            "SELECT pass FROM verdict WHERE host_id = %lld AND rule = "
                            "'winhttp-dsp-wow64'",
                            id),
                     0);
    char *body = query_text("SELECT body FROM report WHERE host_id = %lld", id);
    json_t *back = json_loads(body, 0, NULL);
    ck_assert(json_equal(back, r));
    json_decref(back);
    free(body);

    /* the same collection time replaces (a re-pull of the same cached report) */
    set_time(older, "2026-11-25T12:00:00Z");
    ck_assert_int_eq(ingest(id, ROLE_CLIENT, older), 0);
    ck_assert_int_eq(fx_int(st, "SELECT blockers FROM report WHERE host_id = %lld", id), 0);
    /* and newer, with fractional seconds, too */
    set_time(older, "2026-11-25T12:00:01.250Z");
    ck_assert_int_eq(ingest(id, ROLE_CLIENT, older), 0);
    ck_assert_int_eq(fx_int(st, "SELECT collected_at FROM report WHERE host_id = %lld", id),
                     T0 + 1);
    json_decref(r);
    json_decref(older);
}
END_TEST

/* Found by tests/fuzz/fuzz_report.c: "no stored report" was the time -1, so a first report
 * collected before 1970 (a host whose clock is wrong) was refused as older than it. Any time
 * report_validate accepts is stored when nothing is; a later report replaces it. */
START_TEST(test_first_report_before_1970_is_stored)
{
    long long id = add_host("cl-w7-0003.corp.contoso.com", "P01", ROLE_CLIENT);
    json_t *r = fixture("win7-ready");
    set_time(r, "1013-11-25T12:00:00Z");
    ck_assert_msg(ingest(id, ROLE_CLIENT, r) == 0, "%s", store_errmsg(st));
    ck_assert_int_lt(fx_int(st, "SELECT collected_at FROM report WHERE host_id = %lld", id), 0);
    set_time(r, "2026-11-25T12:00:00Z");
    ck_assert_int_eq(ingest(id, ROLE_CLIENT, r), 0);
    ck_assert_int_eq(fx_int(st, "SELECT collected_at FROM report WHERE host_id = %lld", id), T0);
    json_decref(r);
}
END_TEST

START_TEST(test_report_without_collected_at_is_refused)
{
    long long id = add_host("cl-w7-0003.corp.contoso.com", "P01", ROLE_CLIENT);
    json_t *r = fixture("win7-ready");
    set_time(r, "yesterday");
    ck_assert_int_eq(ingest(id, ROLE_CLIENT, r), -EINVAL);
    ck_assert_str_eq(store_errmsg(st), "host 1: report: collected_at: missing or not RFC 3339 UTC");
    set_time(r, "2026-02-30T00:00:00Z");
    ck_assert_int_eq(ingest(id, ROLE_CLIENT, r), -EINVAL);
    ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM report"), 0);
    json_decref(r);
}
END_TEST

START_TEST(test_ingest_is_all_or_nothing)
{
    long long id = add_host("cl-w7-0003.corp.contoso.com", "P01", ROLE_CLIENT);
    json_t *r = fixture("win7-kb3140245-native-only");
    ck_assert_int_eq(ingest(id, ROLE_CLIENT, r), 0);
    /* A failure after the report row and some verdicts are written (the last verdict). */
    ck_assert_int_eq(store_exec(st, "CREATE TRIGGER fail_last BEFORE INSERT ON verdict "
                                    "WHEN NEW.rule = 'fips-policy' "
                                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"),
                     0);
    json_t *newer = fixture("win7-ready");
    set_time(newer, "2026-11-25T13:00:00Z");
    ck_assert_int_eq(ingest(id, ROLE_CLIENT, newer), -EIO);
    ck_assert_ptr_nonnull(strstr(store_errmsg(st), "injected failure"));
    ck_assert_int_eq(fx_int(st, "SELECT collected_at FROM report WHERE host_id = %lld", id), T0);
    ck_assert_int_eq(fx_int(st, "SELECT blockers FROM report WHERE host_id = %lld", id), 1);
    ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM verdict WHERE host_id = %lld", id), 9);
    ck_assert_int_eq(fx_int(st,
                            "SELECT pass FROM verdict WHERE host_id = %lld AND rule = "
                            "'winhttp-dsp-wow64'",
                            id),
                     0);
    ck_assert(sqlite3_get_autocommit(store_db(st)));
    json_decref(r);
    json_decref(newer);
}
END_TEST

START_TEST(test_ingest_stores_the_received_bytes_not_a_reserialisation)
{
    long long a = add_host("cl-w10-0001.corp.contoso.com", "P01", ROLE_CLIENT);
    json_t *r = fixture("win10-22h2");
    /* The bytes as a collector might send them: indented, keys in its own order. */
    char *sent = json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS);
    struct ingest ig;
    ck_assert_int_eq(ingest_init(&ig, st, cat), 0);
    ck_assert_int_eq(ingest_one_body(&ig, a, ROLE_CLIENT, r, sent, strlen(sent), T0), 0);
    ingest_release(&ig);
    char *stored = query_text("SELECT body FROM report WHERE host_id = %lld", a);
    ck_assert_str_eq(stored, sent);
    ck_assert_int_eq(fx_int(st, "SELECT warnings FROM report WHERE host_id = %lld", a), 1);
    ck_assert_int_gt(fx_int(st, "SELECT count(*) FROM verdict WHERE host_id = %lld", a), 0);
    free(stored);
    free(sent);
    json_decref(r);
}
END_TEST

START_TEST(test_ingest_inside_caller_transaction_batches)
{
    long long a = add_host("cl-w7-0001.corp.contoso.com", "P01", ROLE_CLIENT);
    long long b = add_host("cl-w10-0001.corp.contoso.com", "P01", ROLE_CLIENT);
    json_t *ra = fixture("win7-ready"), *rb = fixture("win10-22h2");
    struct ingest ig;
    ck_assert_int_eq(ingest_init(&ig, st, cat), 0);
    ck_assert_int_eq(store_begin(st, true), 0);
    ck_assert_int_eq(ingest_one(&ig, a, ROLE_CLIENT, ra, T0), 0);
    ck_assert_int_eq(ingest_one(&ig, 999, ROLE_CLIENT, rb, T0), -ENOENT);
    ck_assert_str_eq(store_errmsg(st), "host 999: no host with id 999 in the inventory");
    set_time(ra, "2026-11-25T11:00:00Z");
    ck_assert_int_eq(ingest_one(&ig, a, ROLE_CLIENT, ra, T0), -ESTALE);
    ck_assert_int_eq(ingest_one(&ig, b, ROLE_CLIENT, rb, T0), 0);
    ck_assert(!sqlite3_get_autocommit(store_db(st))); /* still the caller's transaction */
    ck_assert_int_eq(store_commit(st), 0);
    ingest_release(&ig);
    ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM report"), 2);
    ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM verdict WHERE host_id = 999"), 0);
    ck_assert_int_eq(fx_int(st, "SELECT collected_at FROM report WHERE host_id = %lld", a), T0);
    ck_assert_int_eq(fx_int(st, "SELECT warnings FROM report WHERE host_id = %lld", b), 1);

    /* a rolled-back batch leaves nothing */
    long long c = add_host("ps1-2019.corp.contoso.com", "P01", ROLE_SITE_SERVER);
    json_t *rc = fixture("server2019-site-server");
    ck_assert_int_eq(ingest_init(&ig, st, cat), 0);
    ck_assert_int_eq(store_begin(st, true), 0);
    ck_assert_int_eq(ingest_one(&ig, c, ROLE_SITE_SERVER, rc, T0), 0);
    store_rollback(st);
    ingest_release(&ig);
    ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM verdict WHERE host_id = %lld", c), 0);
    json_decref(ra);
    json_decref(rb);
    json_decref(rc);
}
END_TEST

START_TEST(test_reevaluate_recomputes_legacy_disabled)
{
    /* A server whose SSL 3.0 is off by OS default and TLS 1.0/1.1 Enabled=0: a row stored with
     * the older meaning (Enabled=0 on all three) says 0; re-evaluation writes 1. */
    long long a = add_host("mp1.corp.contoso.com", "P01", ROLE_MANAGEMENT_POINT);
    json_t *r = fixture("server2016-sql2016sp2-express");
    json_t *sch = json_object_get(r, "schannel");
    json_t *off = json_pack("{s:i, s:n}", "enabled", 0, "disabled_by_default");
    json_object_set(json_object_get(sch, "tls10"), "server", off);
    json_object_set(json_object_get(sch, "tls11"), "server", off);
    json_object_set_new(json_object_get(sch, "ssl3"), "server",
                        json_pack("{s:n, s:n}", "enabled", "disabled_by_default"));
    json_decref(off);
    ck_assert_int_eq(ingest(a, ROLE_MANAGEMENT_POINT, r), 0);
    ck_assert_int_eq(fx_int(st, "SELECT legacy_disabled FROM report WHERE host_id = %lld", a), 1);
    ck_assert_int_eq(store_exec(st, "UPDATE report SET legacy_disabled = 0"), 0);
    long long count, bad;
    ck_assert_int_eq(ingest_reevaluate_all(st, cat, NULL, NULL, &count, &bad), 0);
    ck_assert_int_eq(fx_int(st, "SELECT legacy_disabled FROM report WHERE host_id = %lld", a), 1);
    json_decref(r);
}
END_TEST

START_TEST(test_reevaluate_rewrites_only_changes_and_drops_gone_rules)
{
    long long a = add_host("cl-w10-0001.corp.contoso.com", "P01", ROLE_CLIENT);
    json_t *r = fixture("win10-22h2");
    char err[512];
    ck_assert_int_eq(ingest(a, ROLE_CLIENT, r), 0);
    /* same catalog: nothing to change in verdict */
    long long count, bad;
    int before = sqlite3_total_changes(store_db(st));
    ck_assert_int_eq(ingest_reevaluate_all(st, cat, NULL, NULL, &count, &bad), 0);
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(bad, 0);
    /* only the report summary row was rewritten */
    ck_assert_int_eq(sqlite3_total_changes(store_db(st)) - before, 1);

    /* a catalog without fips-policy and with a stricter Software Center rule */
    const char *text =
        "{\"catalog\": \"tlsgate-rules\", \"version\": \"2026.12.1\", \"rules\": ["
        "{\"id\": \"software-center-strong-crypto\", \"component\": \"Software Center\", "
        "\"title\": \"t\", \"applies\": {\"roles\": [\"client\"]}, \"predicate\": {\"eq\": "
        "[\"dotnet.v4.strong_crypto\", 1]}, \"severity\": \"blocker\", \"remedy\": \"set it\", "
        "\"reference\": [\"S5\"], \"reason\": \"strong crypto: {detail}\"}, "
        "{\"id\": \"new-rule\", \"component\": \"Schannel\", \"title\": \"t\", \"applies\": "
        "{\"roles\": [\"any\"]}, \"predicate\": {\"present\": \"os.build\"}, \"severity\": "
        "\"warning\", \"remedy\": \"r\", \"reference\": [\"S1\"], \"reason\": \"{detail}\"}]}";
    struct rules_catalog *c2;
    ck_assert_int_eq(rules_load(text, strlen(text), "new.json", &c2, err, sizeof(err)), 0);
    ck_assert_int_eq(ingest_reevaluate_all(st, c2, NULL, NULL, &count, &bad), 0);
    ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM verdict WHERE host_id = %lld", a), 2);
    char *v = query_text("SELECT reason FROM verdict WHERE host_id = %lld AND rule = "
                         "'software-center-strong-crypto'",
                         a);
    ck_assert_str_eq(v, "strong crypto: .NETFramework\\v4.0.30319 SchUseStrongCrypto not "
                        "reported");
    free(v);
    v = query_text("SELECT severity FROM verdict WHERE host_id = %lld AND rule = "
                   "'software-center-strong-crypto'",
                   a);
    ck_assert_str_eq(v, "blocker");
    free(v);
    ck_assert_int_eq(fx_int(st,
                            "SELECT pass FROM verdict WHERE host_id = %lld AND rule = "
                            "'new-rule'",
                            a),
                     1);
    ck_assert_int_eq(fx_int(st, "SELECT blockers FROM report WHERE host_id = %lld", a), 1);
    ck_assert_int_eq(fx_int(st, "SELECT warnings FROM report WHERE host_id = %lld", a), 0);
    v = query_text("SELECT catalog_version FROM report WHERE host_id = %lld", a);
    ck_assert_str_eq(v, "2026.12.1");
    free(v);
    ck_assert_str_eq(state_of(a), "not_ready");

    /* a stored body that no longer parses is counted, not fatal */
    ck_assert_int_eq(store_exec(st, "UPDATE report SET body = '{broken'"), 0);
    ck_assert_int_eq(ingest_reevaluate_all(st, c2, NULL, NULL, &count, &bad), 0);
    ck_assert_int_eq(bad, 1);
    rules_free(c2);
    json_decref(r);
}
END_TEST

/* ---- re-evaluation gives what evaluating each report on its own gives ------------------- */

static unsigned long long lcg = 88172645463325252ULL;

static unsigned pick(unsigned n)
{
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((lcg >> 33) % n);
}

/* Sets r.A.B (B may be NULL: r.A) to v, or removes the member when v is NULL. */
static void perturb(json_t *r, const char *a, const char *b, json_t *v)
{
    json_t *o = b ? json_object_get(r, a) : r;
    const char *k = b ? b : a;
    if (!json_is_object(o)) {
        json_decref(v);
        return;
    }
    if (v)
        json_object_set_new(o, k, v);
    else
        json_object_del(o, k);
}

static json_t *one_of_ints(const long long *v, unsigned n)
{
    unsigned i = pick(n + 1);
    return i == n ? json_null() : json_integer(v[i]);
}

/* A varied report: a fixture with facts the rules read (and some they do not) moved around
 * their thresholds, removed or nulled; some outside the scanner's subset (non-ASCII, \u). */
static json_t *varied_report(unsigned i)
{
    static const char *const names[] = {"win7-sp1-x64-unpatched",
                                        "win7-kb3140245-native-only",
                                        "win7-ready",
                                        "win81",
                                        "win10-22h2",
                                        "win11-23h2",
                                        "server2012-wsus-kb4022721",
                                        "server2012-wsus-unpatched",
                                        "server2012r2-sql2014sp1-snac",
                                        "server2016-sql2016sp2-express",
                                        "server2019-site-server"};
    static const long long builds[] = {6002, 7601, 9200, 9600, 14393, 17763, 19045, 22631};
    static const long long releases[] = {378389, 394801, 394802, 461814, 528040, 533320};
    static const long long masks[] = {0, 0x80, 0x200, 0x800, 0xA00, 0xA80};
    static const long long flags[] = {0, 1};
    static const char *const engines[] = {"12.0.4219.0",   "12.0.4218.0",  "12.1.4100.1",
                                          "13.0.5026.0",   "13.0.5025.0",  "11.0.7001.0",
                                          "10.50.6000.34", "not-a-version"};
    json_t *r = fixture(names[i % (sizeof(names) / sizeof(names[0]))]);
    char host[64];
    snprintf(host, sizeof(host), "h%04u.corp.contoso.com", i);
    json_object_set_new(r, "host", json_string(host));
    perturb(r, "os", "ubr", json_integer(pick(30000)));
    switch (pick(4)) {
    case 0: perturb(r, "os", "build", one_of_ints(builds, 8)); break;
    case 1: perturb(r, "os", "build", NULL); break;
    default: break;
    }
    if (pick(3) == 0)
        perturb(r, "os", "installation_type",
                pick(2) ? json_string(pick(2) ? "Server Core" : "Client") : NULL);
    if (pick(3) == 0)
        perturb(r, "dotnet", "release", one_of_ints(releases, 6));
    if (pick(3) == 0)
        perturb(json_object_get(r, "dotnet"), "v4", "strong_crypto", one_of_ints(flags, 2));
    if (pick(4) == 0)
        perturb(json_object_get(r, "dotnet"), "v4_wow64", "system_default_tls",
                one_of_ints(flags, 2));
    if (pick(3) == 0)
        perturb(r, "winhttp", "default_secure_protocols", one_of_ints(masks, 6));
    if (pick(3) == 0)
        perturb(r, "winhttp", "default_secure_protocols_wow64", one_of_ints(masks, 6));
    if (pick(3) == 0) {
        json_t *tls12 = json_object_get(json_object_get(r, "schannel"), "tls12");
        perturb(tls12, pick(2) ? "client" : "server", "enabled",
                pick(4) ? one_of_ints(flags, 2) : json_integer(4294967295LL));
    }
    if (pick(4) == 0) {
        json_t *hf = json_object_get(r, "hotfixes");
        if (json_is_array(hf))
            json_array_append_new(hf, json_string(pick(2) ? "KB3140245" : "KB4019276"));
        else
            perturb(r, "hotfixes", NULL, json_array());
    }
    json_t *inst = json_array_get(json_object_get(json_object_get(r, "sql"), "instances"), 0);
    if (inst && pick(2))
        perturb(inst, pick(2) ? "patch_level" : "version", NULL, json_string(engines[pick(8)]));
    if (pick(5) == 0)
        perturb(r, "fips", NULL, pick(2) ? json_true() : json_false());
    switch (pick(8)) {
    case 0: /* outside the scanner's subset: falls back to the whole body */
        perturb(r, "os", "product_name",
                json_string("Windows 10 \xc3\x89"
                            "ducation"));
        break;
    case 1: perturb(r, "collector", "version", json_string("0.1.0\x01")); break;
    case 2: /* inside it: simple escapes in a member no rule reads, and in one it reads */
        perturb(r, "os", "product_name", json_string("Windows \"10\" \\ Pro"));
        perturb(r, "os", "arch", json_string(pick(2) ? "x64" : "x\"86"));
        break;
    default: break;
    }
    return r;
}

struct verdict_list {
    char text[64][RULES_REASON_MAX + 96];
    size_t n;
};

static int list_verdict(void *ctx, const struct rules_verdict *v)
{
    struct verdict_list *l = ctx;
    ck_assert_uint_lt(l->n, 64);
    snprintf(l->text[l->n++], sizeof(l->text[0]), "%s|%d|%s|%s", v->rule, v->pass,
             rules_severity_name(v->severity), v->reason);
    return 0;
}

static int by_text(const void *a, const void *b) { return strcmp(a, b); }

/* Every host's stored verdict rows and summary are what rules_evaluate gives on the stored body
 * parsed whole with the host's roles; returns how many verdict rows were compared. */
static long check_against_direct_evaluation(const struct rules_catalog *c)
{
    sqlite3_stmt *q, *vq;
    ck_assert_int_eq(store_prepare(st,
                                   "SELECT r.host_id, h.roles, r.body, r.blockers, "
                                   "r.warnings, r.catalog_version FROM report r "
                                   "JOIN host h ON h.id = r.host_id ORDER BY r.host_id",
                                   &q),
                     0);
    ck_assert_int_eq(store_prepare(st,
                                   "SELECT rule, pass, severity, reason FROM verdict "
                                   "WHERE host_id = ?",
                                   &vq),
                     0);
    static struct verdict_list want, got;
    long rows = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(q, 0);
        json_t *r = json_loads((const char *)sqlite3_column_text(q, 2), 0, NULL);
        ck_assert_ptr_nonnull(r);
        want.n = got.n = 0;
        int blockers, warnings;
        ck_assert_int_eq(rules_evaluate(c, r, (unsigned)sqlite3_column_int(q, 1), list_verdict,
                                        &want, &blockers, &warnings),
                         0);
        json_decref(r);
        ck_assert_int_eq(sqlite3_column_int(q, 3), blockers);
        ck_assert_int_eq(sqlite3_column_int(q, 4), warnings);
        ck_assert_str_eq((const char *)sqlite3_column_text(q, 5), rules_version(c));
        sqlite3_bind_int64(vq, 1, id);
        while (sqlite3_step(vq) == SQLITE_ROW) {
            ck_assert_uint_lt(got.n, 64);
            snprintf(got.text[got.n++], sizeof(got.text[0]), "%s|%d|%s|%s",
                     sqlite3_column_text(vq, 0), sqlite3_column_int(vq, 1),
                     sqlite3_column_text(vq, 2), sqlite3_column_text(vq, 3));
        }
        sqlite3_reset(vq);
        qsort(want.text, want.n, sizeof(want.text[0]), by_text);
        qsort(got.text, got.n, sizeof(got.text[0]), by_text);
        for (size_t i = 0; i < want.n || i < got.n; i++)
            ck_assert_msg(i < want.n && i < got.n && !strcmp(got.text[i], want.text[i]),
                          "%s: host %lld: stored %s, direct %s", rules_version(c), id,
                          i < got.n ? got.text[i] : "-", i < want.n ? want.text[i] : "-");
        rows += (long)want.n;
    }
    sqlite3_finalize(q);
    sqlite3_finalize(vq);
    return rows;
}

static bool reads(const struct rules_catalog *c, const char *path)
{
    const char *const *paths;
    size_t n = rules_reads(c, &paths);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(paths[i], path))
            return true;
    return false;
}

START_TEST(test_rules_reads_lists_what_evaluation_looks_at)
{
    /* scope, predicates, protocol defaults, every-lists; never the report's identity */
    ck_assert(reads(cat, "os.build"));
    ck_assert(reads(cat, "os.installation_type"));
    ck_assert(reads(cat, "updates.installed"));
    ck_assert(reads(cat, "os.product_type"));
    ck_assert(!reads(cat, "hotfixes"));
    ck_assert(reads(cat, "schannel.tls12.client"));
    ck_assert(reads(cat, "schannel.tls12.server"));
    ck_assert(reads(cat, "winhttp.default_secure_protocols_wow64"));
    ck_assert(reads(cat, "dotnet.v4.strong_crypto"));
    ck_assert(reads(cat, "sql.instances"));
    ck_assert(reads(cat, "fips"));
    ck_assert(!reads(cat, "os.ubr"));
    ck_assert(!reads(cat, "host"));
    ck_assert(!reads(cat, "collected_at"));
    ck_assert(!reads(cat, "os.product_name"));
    /* a reason placeholder counts as a read */
    const char *text =
        "{\"catalog\": \"tlsgate-rules\", \"version\": \"2026.12.1\", \"rules\": ["
        "{\"id\": \"r\", \"component\": \"Schannel\", \"title\": \"t\", \"applies\": "
        "{\"roles\": [\"any\"]}, \"predicate\": {\"present\": \"os.build\"}, \"severity\": "
        "\"warning\", \"remedy\": \"r\", \"reference\": [\"S1\"], \"reason\": "
        "\"{detail} on {os.product_name}\"}]}";
    struct rules_catalog *c;
    char err[512];
    ck_assert_int_eq(rules_load(text, strlen(text), "c.json", &c, err, sizeof(err)), 0);
    const char *const *paths;
    ck_assert_uint_eq(rules_reads(c, &paths), 2);
    ck_assert_str_eq(paths[0], "os.build");
    ck_assert_str_eq(paths[1], "os.product_name");
    rules_free(c);
}
END_TEST

START_TEST(test_reevaluation_matches_evaluating_each_report_on_its_own)
{
    static const unsigned roles[] = {ROLE_CLIENT,
                                     ROLE_CLIENT,
                                     ROLE_CLIENT | ROLE_CONSOLE,
                                     ROLE_MANAGEMENT_POINT,
                                     ROLE_SITE_SERVER | ROLE_SITE_DATABASE | ROLE_SMS_PROVIDER,
                                     ROLE_SOFTWARE_UPDATE_POINT,
                                     ROLE_REPORTING_POINT,
                                     ROLE_SECONDARY_SITE_SERVER,
                                     ROLE_CLOUD_MANAGEMENT_GATEWAY,
                                     ROLE_DISTRIBUTION_POINT};
    const unsigned nhosts = 1100; /* three chunks of the re-evaluation pipeline */
    char err[512];
    ck_assert_int_eq(store_begin(st, true), 0);
    for (unsigned i = 0; i < nhosts; i++) {
        char name[64];
        snprintf(name, sizeof(name), "h%04u.corp.contoso.com", i);
        unsigned role = roles[pick(sizeof(roles) / sizeof(roles[0]))];
        long long id = add_host(name, "P01", role);
        json_t *r = varied_report(i);
        ck_assert_msg(ingest(id, role, r) == 0, "%s", store_errmsg(st));
        json_decref(r);
    }
    /* stored text that json_dumps never writes: white space, a duplicate member (the last one
     * counts), a body that does not parse */
    ck_assert_int_eq(store_exec(st, "UPDATE report SET body = replace(body, ',\"', ', \n\t\"') "
                                    "WHERE host_id % 7 = 1"),
                     0);
    ck_assert_int_eq(store_exec(st, "UPDATE report SET body = '{\"os\": {\"build\": 7601}, ' || "
                                    "substr(body, 2) WHERE host_id % 11 = 2"),
                     0);
    ck_assert_int_eq(store_exec(st, "UPDATE report SET body = body || ',' "
                                    "WHERE host_id = 5"),
                     0);
    ck_assert_int_eq(store_commit(st), 0);

    /* the default catalog with a rule gone and a threshold moved */
    json_error_t je;
    json_t *c = json_load_file(tu_source_path("schema/rules.json"), 0, &je);
    ck_assert_ptr_nonnull(c);
    json_object_set_new(c, "version", json_string("2026.12.1"));
    json_t *rules = json_object_get(c, "rules");
    for (size_t i = json_array_size(rules); i-- > 0;) {
        json_t *r = json_array_get(rules, i);
        const char *id = json_string_value(json_object_get(r, "id"));
        if (!strcmp(id, "fips-policy"))
            json_array_remove(rules, i);
        else if (!strcmp(id, "software-center-dotnet"))
            json_object_set_new(r, "predicate",
                                json_pack("{s:[s,i]}", "ge", "dotnet.release", 528040));
    }
    char *text = json_dumps(c, 0);
    json_decref(c);
    struct rules_catalog *c2;
    ck_assert_msg(rules_load(text, strlen(text), "c2", &c2, err, sizeof(err)) == 0, "%s", err);
    free(text);

    long long count, bad;
    ck_assert_int_eq(store_begin(st, true), 0);
    ck_assert_int_eq(ingest_reevaluate_all(st, c2, NULL, NULL, &count, &bad), 0);
    ck_assert_int_eq(store_commit(st), 0);
    ck_assert_int_eq(count, nhosts);
    ck_assert_int_eq(bad, 1);
    /* host 5's body no longer parses: its verdicts stay those of the default catalog */
    ck_assert_int_eq(store_exec(st, "DELETE FROM report WHERE host_id = 5"), 0);
    ck_assert_int_gt(check_against_direct_evaluation(c2), 8000);

    /* and back to the default catalog */
    ck_assert_int_eq(ingest_reevaluate_all(st, cat, NULL, NULL, &count, &bad), 0);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_gt(check_against_direct_evaluation(cat), 8000);
    rules_free(c2);
}
END_TEST

/* ---- the commands ---------------------------------------------------------------------- */

static int run(char **out, char **errout, ...)
{
    char *env[] = {"TLSGATE_NOW=" NOW, "TLSGATE_USER=tester", NULL};
    va_list ap;
    va_start(ap, errout);
    int rc = tu_tlsgatev(db, env, out, errout, ap);
    va_end(ap);
    return rc;
}

/* A small estate in P01 (+ one client in P02), every report ingested with the default catalog. */
static void estate(void)
{
    static const struct {
        const char *name, *site, *fixture;
        unsigned roles;
    } hosts[] = {
        {"cl-w7-0002.corp.contoso.com", "P01", "win7-sp1-x64-unpatched", ROLE_CLIENT},
        {"cl-w7-0004.corp.contoso.com", "P01", "win7-sp1-x64-unpatched", ROLE_CLIENT},
        {"cl-w7-0003.corp.contoso.com", "P01", "win7-kb3140245-native-only", ROLE_CLIENT},
        {"cl-w10-0001.corp.contoso.com", "P01", "win10-22h2", ROLE_CLIENT},
        {"sup-2012.corp.contoso.com", "P01", "server2012-wsus-unpatched",
         ROLE_SOFTWARE_UPDATE_POINT},
        {"cl-w7-0009.corp.contoso.com", "P02", "win7-sp1-x64-unpatched", ROLE_CLIENT},
    };
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        long long id = add_host(hosts[i].name, hosts[i].site, hosts[i].roles);
        json_t *r = fixture(hosts[i].fixture);
        json_object_set_new(r, "host", json_string(hosts[i].name));
        ck_assert_msg(ingest(id, hosts[i].roles, r) == 0, "%s", store_errmsg(st));
        json_decref(r);
    }
    add_host("cl-new-0001.corp.contoso.com", "P01", ROLE_CLIENT); /* never reported */
}

START_TEST(test_rules_check_accepts_default_and_refuses_bad_file)
{
    char *out, *errout;
    ck_assert_int_eq(
        run(&out, &errout, "rules", "check", tu_source_path("schema/rules.json"), NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "catalog 2026.12.0, 36 rules: valid"));
    free(out);
    free(errout);
    const char *bad = tu_path(dir, "bad.json");
    const char *text =
        "{\"catalog\": \"tlsgate-rules\", \"version\": \"2026.12.1\", \"rules\": ["
        "{\"id\": \"winhttp-dsp-wow64\", \"component\": \"client WinHTTP\", \"title\": \"t\", "
        "\"applies\": {\"roles\": [\"any\"]}, \"predicate\": {\"bitz\": "
        "[\"winhttp.default_secure_protocols_wow64\", 2048]}, \"severity\": \"blocker\", "
        "\"remedy\": \"r\", \"reference\": [\"S8\"], \"reason\": \"{detail}\"}]}";
    tu_write_file(bad, text, strlen(text));
    ck_assert_int_eq(run(&out, &errout, "rules", "check", bad, NULL), 3);
    char want[1024];
    snprintf(want, sizeof(want),
             "tlsgate: %s: rule winhttp-dsp-wow64: unknown operator "
             "\"bitz\"\n",
             bad);
    ck_assert_str_eq(errout, want);
    free(out);
    free(errout);
    /* load refuses it too, and changes nothing */
    ck_assert_int_eq(run(&out, &errout, "rules", "load", bad, NULL), 3);
    ck_assert_ptr_nonnull(strstr(errout, "unknown operator \"bitz\""));
    free(out);
    free(errout);
    char *v;
    ck_assert_int_eq(store_meta_get(st, "catalog_version", &v), -ENOENT);
}
END_TEST

START_TEST(test_rules_load_reevaluates_every_stored_report)
{
    estate();
    /* the default catalog with fips-policy removed and Software Center strong crypto a blocker */
    json_error_t je;
    json_t *c = json_load_file(tu_source_path("schema/rules.json"), 0, &je);
    ck_assert_ptr_nonnull(c);
    json_object_set_new(c, "version", json_string("2026.12.1"));
    json_t *rules = json_object_get(c, "rules");
    for (size_t i = json_array_size(rules); i-- > 0;) {
        json_t *r = json_array_get(rules, i);
        const char *id = json_string_value(json_object_get(r, "id"));
        if (!strcmp(id, "fips-policy"))
            json_array_remove(rules, i);
        else if (!strcmp(id, "software-center-strong-crypto"))
            json_object_set_new(r, "severity", json_string("blocker"));
    }
    const char *file = tu_path(dir, "new.json");
    ck_assert_int_eq(json_dump_file(c, file, JSON_INDENT(1)), 0);
    json_decref(c);

    char *out, *errout;
    ck_assert_int_eq(run(&out, &errout, "rules", "load", file, NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "catalog 2026.12.1 loaded: 35 rules, 6 reports "
                                      "re-evaluated in "));
    free(out);
    free(errout);
    ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM verdict WHERE rule = 'fips-policy'"), 0);
    ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM report WHERE catalog_version = "
                                "'2026.12.1'"),
                     6);
    /* Windows 10 with default strong crypto is now held back by a blocker */
    ck_assert_int_eq(fx_int(st, "SELECT r.blockers FROM report r JOIN host h ON h.id = r.host_id "
                                "WHERE h.name = 'cl-w10-0001.corp.contoso.com'"),
                     1);
    char *v;
    ck_assert_int_eq(store_meta_get(st, "catalog_version", &v), 0);
    ck_assert_str_eq(v, "2026.12.1");
    free(v);
    v = query_text("SELECT user || ' ' || outcome FROM audit ORDER BY id DESC LIMIT 1");
    ck_assert_str_eq(v, "tester ok: catalog 2026.12.1, 6 reports re-evaluated");
    free(v);

    /* the stored catalog is now the active one for every command */
    ck_assert_int_eq(run(&out, &errout, "rules", "show", "--json", NULL), 0);
    json_t *shown = json_loads(out, 0, &je);
    ck_assert_msg(shown != NULL, "%s", je.text);
    ck_assert_str_eq(json_string_value(json_object_get(shown, "version")), "2026.12.1");
    ck_assert_str_eq(json_string_value(json_object_get(shown, "catalog")), "tlsgate-rules");
    ck_assert_uint_eq(json_array_size(json_object_get(shown, "rules")), 35);
    json_decref(shown);
    free(out);
    free(errout);
    struct rules_catalog *active;
    ck_assert_int_eq(rules_load_active(st, &active), 0);
    ck_assert_str_eq(rules_version(active), "2026.12.1");
    rules_free(active);
}
END_TEST

/* `rules show --json` prints a catalog that `rules check` and `rules load` take back, the same
 * rules and version, built-in or stored; and loading it changes no verdict. */
START_TEST(test_rules_show_json_round_trips_through_rules_load)
{
    estate();
    const char *shown = tu_path(dir, "shown.json");
    long long verdicts = fx_int(st, "SELECT count(*) FROM verdict WHERE pass = 0");
    for (int round = 0; round < 2; round++) {
        char *out, *errout;
        ck_assert_int_eq(run(&out, &errout, "--json", "rules", "show", NULL), 0);
        tu_write_file(shown, out, strlen(out));
        free(out);
        free(errout);
        ck_assert_int_eq(run(&out, &errout, "rules", "check", shown, NULL), 0);
        ck_assert_msg(strstr(out, "catalog 2026.12.0, 36 rules: valid") != NULL, "%s", out);
        free(out);
        free(errout);
        /* round 0 loads the built-in catalog's text, round 1 shows and loads the stored one */
        ck_assert_int_eq(run(&out, &errout, "rules", "load", shown, NULL), 0);
        free(out);
        free(errout);
        ck_assert_int_eq(fx_int(st, "SELECT count(*) FROM verdict WHERE pass = 0"), verdicts);
    }
    size_t len;
    char *text = tu_read_file(shown, &len);
    struct rules_catalog *c;
    char err[1024];
    ck_assert_msg(rules_load(text, len, "shown.json", &c, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(rules_version(c), "2026.12.0");
    ck_assert_uint_eq(rules_count(c), 36);
    rules_free(c);
    free(text);
}
END_TEST

START_TEST(test_host_show_lists_failures_first_with_remedies)
{
    estate();
    char *out, *errout;
    ck_assert_int_eq(run(&out, &errout, "host", "show", "CL-W7-0003.corp.contoso.com", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "cl-w7-0003.corp.contoso.com\n  site P01, roles client"));
    ck_assert_ptr_nonnull(strstr(out, "state: not_ready (1 blocker, 0 warnings failing;"));
    /* each fact in its own place: the Wow6432Node SystemDefaultTlsVersions is 1, not the
     * Release number printed earlier on the same line */
    ck_assert_ptr_nonnull(strstr(out, "  .NET          Release 528049; v4.0.30319 "
                                      "SchUseStrongCrypto 1, SystemDefaultTlsVersions 1; "
                                      "Wow6432Node SchUseStrongCrypto 1, SystemDefaultTlsVersions "
                                      "1\n"));
    ck_assert_ptr_nonnull(strstr(out, "  .NET 3.5      installed on; v2.0.50727 "
                                      "SchUseStrongCrypto absent"));
    ck_assert_ptr_nonnull(strstr(out, "last report: collected 2026-11-25T12:00:00Z"));
    ck_assert_ptr_nonnull(strstr(out, "winhttp       DefaultSecureProtocols 0xA00, Wow6432Node "
                                      "absent"));
    const char *fail = strstr(out, "  FAIL blocker winhttp-dsp-wow64\n");
    const char *first_ok = strstr(out, "  ok   ");
    ck_assert_ptr_nonnull(fail);
    ck_assert_ptr_nonnull(first_ok);
    ck_assert(fail < first_ok);
    ck_assert_ptr_nonnull(strstr(fail, "remedy: On x64, also set DefaultSecureProtocols"));
    free(out);
    free(errout);

    ck_assert_int_eq(
        run(&out, &errout, "host", "show", "cl-w7-0002.corp.contoso.com", "--json", NULL), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", je.text, out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "state")), "not_ready");
    ck_assert_str_eq(json_string_value(json_object_get(j, "last_report")), "2026-11-25T12:00:00Z");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "blockers")), 4);
    json_t *vs = json_object_get(j, "verdicts");
    ck_assert_uint_eq(json_array_size(vs), 9);
    /* blockers first, then warnings, then passes */
    const char *order[] = {"blocker", "blocker", "blocker", "blocker",
                           "warning", "warning", "warning"};
    for (size_t i = 0; i < 7; i++) {
        json_t *v = json_array_get(vs, i);
        ck_assert(json_is_false(json_object_get(v, "pass")));
        ck_assert_str_eq(json_string_value(json_object_get(v, "severity")), order[i]);
        ck_assert(json_string_length(json_object_get(v, "remedy")) > 0);
    }
    ck_assert(json_is_true(json_object_get(json_array_get(vs, 7), "pass")));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "report"), "host")),
                     "cl-w7-0002.corp.contoso.com");
    json_decref(j);
    free(out);
    free(errout);

    ck_assert_int_eq(run(&out, &errout, "host", "show", "cl-new-0001.corp.contoso.com", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "state: unknown (never reported)"));
    free(out);
    free(errout);

    ck_assert_int_eq(run(&out, &errout, "host", "show", "nope.corp.contoso.com", NULL), 3);
    ck_assert_str_eq(errout, "tlsgate: host show: unknown host 'nope.corp.contoso.com' (see "
                             "`tlsgate inventory list`)\n");
    free(out);
    free(errout);
}
END_TEST

START_TEST(test_rules_blockers_groups_failures_by_rule_per_site)
{
    estate();
    char *out, *errout;
    ck_assert_int_eq(run(&out, &errout, "rules", "blockers", "--site", "P01", NULL), 0);
    ck_assert_str_eq(out,
                     "3 clients: DefaultSecureProtocols (Wow6432Node) lacks TLS 1.2  "
                     "[winhttp-dsp-wow64, blocker]\n"
                     "2 clients: TLS 1.2 client side disabled in SCHANNEL  "
                     "[schannel-tls12-client, blocker]\n"
                     "2 clients: DefaultSecureProtocols lacks TLS 1.2  [winhttp-dsp, blocker]\n"
                     "2 clients: KB3140245 missing  [winhttp-kb3140245, blocker]\n"
                     "1 site system: KB4022721 missing on WSUS 2012  [wsus-2012-kb4022721, "
                     "blocker]\n"
                     "3 clients: strong cryptography not set for .NET 4  "
                     "[software-center-strong-crypto, warning]\n"
                     "2 clients: .NET Framework older than 4.6.2  [software-center-dotnet, "
                     "warning]\n"
                     "2 clients: TLS 1.2 client side disabled by default in SCHANNEL  "
                     "[software-center-schannel-default, warning]\n"
                     "1 site system: .NET 3.5 TLS 1.2 update or strong cryptography missing  "
                     "[site-system-strong-crypto-v2, warning]\n");
    free(out);
    free(errout);

    ck_assert_int_eq(run(&out, &errout, "rules", "blockers", "--json", NULL), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "%s", je.text);
    ck_assert(json_is_null(json_object_get(j, "site")));
    json_t *first = json_array_get(json_object_get(j, "rules"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(first, "rule")), "winhttp-dsp-wow64");
    ck_assert_int_eq(json_integer_value(json_object_get(first, "hosts")), 4); /* + P02 */
    ck_assert_int_eq(json_integer_value(json_object_get(first, "clients")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(first, "site_systems")), 0);
    json_decref(j);
    free(out);
    free(errout);

    ck_assert_int_eq(run(&out, &errout, "rules", "blockers", "--site", "X99", NULL), 3);
    ck_assert_str_eq(errout, "tlsgate: rules blockers: unknown site 'X99'\n");
    free(out);
    free(errout);
}
END_TEST

static Suite *ingest_suite(void)
{
    Suite *s = suite_create("ingest");
    tu_tcase(s, "store", setup, teardown,
             TU_TESTS(test_report_fixtures_are_valid_wire_reports,
                      test_ingest_stores_report_verdicts_and_summary,
                      test_legacy_disabled_follows_os_defaults_and_disabled_by_default,
                      test_older_report_is_stale_and_changes_nothing,
                      test_report_without_collected_at_is_refused,
                      test_first_report_before_1970_is_stored, test_ingest_is_all_or_nothing,
                      test_ingest_inside_caller_transaction_batches,
                      test_ingest_stores_the_received_bytes_not_a_reserialisation,
                      test_reevaluate_rewrites_only_changes_and_drops_gone_rules,
                      test_reevaluate_recomputes_legacy_disabled,
                      test_rules_reads_lists_what_evaluation_looks_at,
                      test_reevaluation_matches_evaluating_each_report_on_its_own));
    tu_tcase(s, "commands", setup, teardown,
             TU_TESTS(test_rules_check_accepts_default_and_refuses_bad_file,
                      test_rules_load_reevaluates_every_stored_report,
                      test_host_show_lists_failures_first_with_remedies,
                      test_rules_show_json_round_trips_through_rules_load,
                      test_rules_blockers_groups_failures_by_rule_per_site));
    return s;
}

int main(void) { return tu_run_suite(ingest_suite()); }

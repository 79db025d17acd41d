/*
 * test_ops.c — what the person running tlsgate for months needs (issue 14): why a host is
 * unknown (real pulls that fail: a port with nothing listening, a collector with another host's
 * certificate, an oversized and an invalid report), explicit migrations and online backups (an
 * old-version database built by applying only the first migration, a backup taken while the
 * daemon pulls), and the inventory's lifecycle.
 *
 * Real processes on loopback: the tlsgate binary, collectors played by tests/daemon/peer.py with
 * certificates from tools/gen-certs, real database files. Waits are on conditions with deadlines.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "metrics.h"
#include "pollstatus.h"
#include "store.h"
#include "testutil.h"

static char *certs;
static char *dir;
static char db[4096];
static char config_path[4096];
/* Extra environment of expect(): a pinned clock for the fixtures' reports, or NULL. */
static char *const *run_env;
static char *const pinned_clock[] = {"TLSGATE_NOW=1800000000", NULL};

static void make_certs(void)
{
    certs = tu_tmpdir();
    char *argv[] = {(char *)tu_source_path("tools/gen-certs"),
                    certs,
                    "good.test",
                    "other.test",
                    "huge.test",
                    "badjson.test",
                    "fleet00.test",
                    "fleet01.test",
                    "fleet02.test",
                    "fleet03.test",
                    NULL};
    char *err = NULL;
    int rc = tu_run(argv, NULL, NULL, &err);
    ck_assert_msg(rc == 0, "gen-certs failed: %s", err);
    free(err);
}

static void drop_certs(void)
{
    tu_rmtree(certs);
    free(certs);
}

static void write_config(const char *extra)
{
    char buf[8192];
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s/ca.pem\", \"cert\": \"%s/orchestrator.pem\", "
             "\"key\": \"%s/orchestrator.key\"}, \"connect_timeout\": 2, \"timeout\": 3%s%s}",
             certs, certs, certs, extra ? ", " : "", extra ? extra : "");
    tu_write_file(config_path, buf, strlen(buf));
}

static void setup(void)
{
    run_env = NULL;
    dir = tu_tmpdir_with_db(db, sizeof(db));
    snprintf(config_path, sizeof(config_path), "%s", tu_path(dir, "config.json"));
    write_config("\"interval\": 3600, \"jitter\": 0");
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

/* ---------------------------------------------------------------- helpers */

/* `tlsgate --db DB ARGS...` (NULL-ended) on this test's database. */
#define run(out, err, ...) tu_tlsgate(db, out, err, __VA_ARGS__)

static void init_db(void)
{
    char *out = NULL, *err = NULL;
    ck_assert_msg(run(&out, &err, "init", NULL) == 0, "init: %s", err);
    free(out);
    free(err);
}

static void add_host(const char *name, const char *site, unsigned roles, int port)
{
    struct store *s = fx_open(db);
    char collector[64];
    snprintf(collector, sizeof(collector), "127.0.0.1:%d", port);
    if (!fx_int(s, "SELECT count(*) FROM site WHERE code = '%s'", site))
        fx_site(s, site, "inventory");
    fx_host_bare(s, name, site, roles, collector);
    store_close(s);
}

/* The example report for `host`, collected a minute ago, written to DIR/FILE. */
static const char *write_report(const char *file, const char *host)
{
    json_error_t je;
    json_t *r = json_load_file(tu_source_path("schema/report.example.json"), 0, &je);
    ck_assert_msg(r != NULL, "report.example.json: %s", je.text);
    json_object_set_new(r, "host", json_string(host));
    char when[32];
    time_t t = time(NULL) - 60;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(r, "collected_at", json_string(when));
    const char *path = tu_path(dir, file);
    ck_assert_int_eq(json_dump_file(r, path, JSON_COMPACT), 0);
    json_decref(r);
    return path;
}

static void assert_has(const char *text, const char *needle)
{
    ck_assert_msg(text && strstr(text, needle), "\"%s\" not in:\n%s", needle, text ? text : "");
}

/* The whole output (stdout then stderr) of `tlsgate --db DB ARGS...`, asserting its exit code. */
static char *expect(int code, ...)
{
    va_list ap;
    va_start(ap, code);
    char *out = NULL, *err = NULL;
    int rc = tu_tlsgatev(db, run_env, &out, &err, ap);
    va_end(ap);
    ck_assert_msg(rc == code, "exit %d, want %d\nstdout:\n%s\nstderr:\n%s", rc, code, out, err);
    size_t lo = strlen(out), le = strlen(err);
    char *both = malloc(lo + le + 1);
    memcpy(both, out, lo);
    memcpy(both + lo, err, le + 1);
    free(out);
    free(err);
    return both;
}

/* ---------------------------------------------------------------- why unknown */

START_TEST(test_pollstatus_classify_reads_labels_and_older_texts)
{
    ck_assert_int_eq(pollstatus_classify(NULL), PK_NONE);
    ck_assert_int_eq(pollstatus_classify("connection refused: https://a/v1/readiness via x:1: F"),
                     PK_REFUSED);
    ck_assert_int_eq(pollstatus_classify("certificate expired: https://a via x: SSL certificate "
                                         "problem: certificate has expired"),
                     PK_TLS_EXPIRED);
    ck_assert_int_eq(pollstatus_classify("report over 262144 bytes (transfer aborted)"),
                     PK_TOO_BIG);
    ck_assert_int_eq(pollstatus_classify("invalid report: os.build: not an integer"), PK_INVALID);
    ck_assert_int_eq(pollstatus_classify("report is for host \"b\", not a"), PK_WRONG_HOST);
    ck_assert_int_eq(pollstatus_classify("older than stored report"), PK_OLDER);
    ck_assert_int_eq(pollstatus_classify("collected_at 2030-01-01T00:00:00Z is 9 s in the future "
                                         "(more than the 300 s allowed skew)"),
                     PK_FUTURE);
    ck_assert_int_eq(pollstatus_classify("HTTP status 503 from https://a/v1/readiness"), PK_HTTP);
    /* Rows written before the labels, in libcurl's words. */
    ck_assert_int_eq(pollstatus_classify("https://a/v1/readiness via x:1: Failed to connect to "
                                         "127.0.0.1 port 1: Connection refused"),
                     PK_REFUSED);
    ck_assert_int_eq(pollstatus_classify("https://a via x: Operation timed out after 3000 ms"),
                     PK_TIMEOUT);
    ck_assert_int_eq(pollstatus_classify("something new"), PK_OTHER);
    /* A label without its colon is not a label. */
    ck_assert_int_eq(pollstatus_classify("timeouts everywhere"), PK_OTHER);

    struct pollstatus_summary sum = {0};
    struct pollstatus_host h = {.last_attempt_at = 1, .failures = 2, .kind = PK_REFUSED};
    for (int i = 0; i < 412; i++)
        pollstatus_count(&sum, &h);
    h.kind = PK_TLS_EXPIRED;
    for (int i = 0; i < 37; i++)
        pollstatus_count(&sum, &h);
    h.failures = 0;
    pollstatus_count(&sum, &h);
    char text[256];
    pollstatus_summary_text(&sum, text, sizeof(text));
    ck_assert_str_eq(text, "412 hosts: connection refused; 37: certificate expired");
    ck_assert_int_eq(sum.failing, 449);
    ck_assert_int_eq(sum.ok, 1);
}
END_TEST

/* One reason per kind, as the pull engine writes it: the kind that `host show` and `poll status`
 * print, the group of the `pull-failures` view and the status page, the metrics' label. The
 * three views read the kind from one place (pollstatus_classify), so they always agree. */
static const struct {
    const char *error, *kind, *group, *outcome;
} kind_views[] = {
    {"connection refused: https://k1.test/v1/readiness via 127.0.0.1:1: Failed to connect to "
     "127.0.0.1 port 1 after 0 ms: Couldn't connect to server",
     "refused", "connect", "connect"},
    {"collector unreachable: https://k2.test/v1/readiness via 127.0.0.1:9: Connection timed out "
     "after 2001 milliseconds",
     "unreachable", "connect", "connect"},
    {"host name not resolved: https://k3.test/v1/readiness via nowhere.test:443: Could not "
     "resolve host: nowhere.test",
     "dns", "connect", "connect"},
    {"timeout: https://k4.test/v1/readiness via 127.0.0.1:9: Operation timed out after 3001 "
     "milliseconds with 0 bytes received",
     "timeout", "timeout", "timeout"},
    {"certificate for another host: https://k5.test/v1/readiness via 127.0.0.1:9: SSL: no "
     "alternative certificate subject name matches target host name 'k5.test'",
     "tls_wrong_host", "tls", "tls"},
    {"certificate expired: https://k6.test/v1/readiness via 127.0.0.1:9: SSL certificate "
     "problem: certificate has expired",
     "tls_expired", "tls", "tls"},
    {"certificate not trusted: https://k7.test/v1/readiness via 127.0.0.1:9: SSL certificate "
     "problem: unable to get local issuer certificate",
     "tls_untrusted", "tls", "tls"},
    {"TLS handshake failed: https://k8.test/v1/readiness via 127.0.0.1:9: OpenSSL "
     "SSL_connect: SSL_ERROR_SYSCALL",
     "tls", "tls", "tls"},
    {"HTTP status 503 from https://k9.test/v1/readiness", "http", "http", "http_status"},
    {"report over 262144 bytes (transfer aborted)", "too_big", "report", "too_big"},
    {"invalid report: os.build: must be an integer", "invalid", "report", "invalid_report"},
    /* A collector's bytes quoted in the reason cannot pass for another kind. */
    {"report is for host \"Couldn't connect, SSL timed out\", not k12.test", "wrong_host", "report",
     "wrong_host"},
    {"collected_at 2030-01-01T00:00:00Z is 99 s in the future (more than the 300 s allowed "
     "skew)",
     "future", "report", "future_report"},
    {"older than stored report", "older", "report", "older_report"},
    {"report not stored: disk I/O error", "not_stored", "report", "other"},
    {"certificate revoked: fingerprint 00ab (serial 01, issuer CN=fleet) revoked at "
     "2025-11-24T16:00:00Z; report not stored",
     "cert_revoked", "identity", "cert_revoked"},
    {"certificate changed: fingerprint 00ab (issuer CN=fleet) replaces 00cd, not through "
     "enrollment; held until `tlsgate enroll accept k18.test`",
     "cert_changed", "identity", "cert_changed"},
    {"https://k16.test/v1/readiness via 127.0.0.1:9: Recv failure: Connection reset by peer",
     "other", "other", "other"},
};

START_TEST(test_each_error_kind_reads_the_same_in_every_view)
{
    /* Every kind has its row above: a new kind needs its views pinned here too. */
    for (int k = PK_NONE + 1; k < PK_OTHER + 1; k++) {
        bool seen = false;
        for (size_t i = 0; i < sizeof(kind_views) / sizeof(kind_views[0]); i++)
            seen |= !strcmp(kind_views[i].kind, pollstatus_kind_id((enum pollstatus_kind)k));
        ck_assert_msg(seen, "kind %s has no row in kind_views", pollstatus_kind_id(k));
    }
    init_db();
    struct store *s = fx_open(db);
    fx_site(s, "S01", "inventory");
    char name[32];
    for (size_t i = 0; i < sizeof(kind_views) / sizeof(kind_views[0]); i++) {
        snprintf(name, sizeof(name), "k%zu.test", i + 1);
        fx_host_bare(s, name, "S01", ROLE_CLIENT, "127.0.0.1:9");
        fx_poll_failed(s, name, kind_views[i].error, 2, FX_NOW - 30);
    }
    store_close(s);
    run_env = pinned_clock;
    char *csv = expect(0, "export", "csv", "--view", "pull-failures", NULL);
    for (size_t i = 0; i < sizeof(kind_views) / sizeof(kind_views[0]); i++) {
        snprintf(name, sizeof(name), "k%zu.test", i + 1);
        /* host show: the kind of `poll status`, by its id. */
        char *out = expect(0, "--json", "host", "show", name, NULL);
        json_error_t je;
        json_t *doc = json_loads(out, 0, &je);
        ck_assert_msg(doc != NULL, "host show --json: %s\n%s", je.text, out);
        json_t *pull = json_object_get(doc, "pull");
        ck_assert_str_eq(json_string_value(json_object_get(pull, "error_kind")),
                         kind_views[i].kind);
        ck_assert_str_eq(json_string_value(json_object_get(pull, "last_error")),
                         kind_views[i].error);
        json_decref(doc);
        free(out);
        /* pull-failures: host,site,failures,last_attempt,last_success,kind,error */
        char row[64];
        snprintf(row, sizeof(row), "\n%s,S01,2,", name);
        const char *line = strstr(csv, row);
        ck_assert_msg(line != NULL, "%s not in:\n%s", name, csv);
        const char *cell = line + 1;
        for (int c = 0; c < 5; c++)
            cell = strchr(cell, ',') + 1;
        ck_assert_msg(!strncmp(cell, kind_views[i].group, strlen(kind_views[i].group)) &&
                          cell[strlen(kind_views[i].group)] == ',',
                      "%s: pull-failures says %.20s, want %s", name, cell, kind_views[i].group);
        /* the metrics' label of tlsgate_pulls_total{outcome} */
        ck_assert_str_eq(metrics_outcome_name(metrics_outcome_of(false, kind_views[i].error)),
                         kind_views[i].outcome);
    }
    free(csv);
}
END_TEST

START_TEST(test_failing_pulls_are_explained_everywhere_the_state_is_shown)
{
    init_db();
    const char *good = write_report("good.json", "good.test");
    /* wrong.test is answered with other.test's certificate. */
    const char *specs[] = {tu_peer_spec("good,good.test", good),
                           tu_peer_spec("good,other.test", good), "huge,huge.test",
                           "badjson,badjson.test", NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    ck_assert_int_eq(pr.nports, 4);
    add_host("good.test", "S01", MP, pr.ports[0]);
    add_host("wrong.test", "S01", ROLE_CLIENT, pr.ports[1]);
    add_host("huge.test", "S01", ROLE_CLIENT, pr.ports[2]);
    add_host("badjson.test", "S01", ROLE_CLIENT, pr.ports[3]);
    add_host("down.test", "S01", ROLE_CLIENT, tu_closed_port());
    add_host("later.test", "S02", ROLE_CLIENT, tu_closed_port());

    char *out = expect(0, "--config", config_path, "collect", NULL);
    free(out);
    /* later.test (S02) was pulled too; collect it again so one host has 2 failures in a row. */
    out = expect(0, "--config", config_path, "collect", "--host", "down.test", NULL);
    free(out);

    /* poll status, text: one row per host and the summary grouped by kind. */
    out = expect(0, "--config", config_path, "poll", "status", "--site", "S01", NULL);
    assert_has(out, "5 hosts: 1 pulled ok, 4 failing, 0 never attempted\n");
    assert_has(out, "failing: 1 host: connection refused; 1: certificate for another host; "
                    "1: report too big; 1: invalid report\n");
    assert_has(out, "connection refused: https://down.test/v1/readiness via 127.0.0.1:");
    ck_assert_ptr_null(strstr(out, "later.test"));
    free(out);

    /* --failing --json: the same, machine-readable; the summary still counts every host. */
    out = expect(0, "--config", config_path, "--json", "poll", "status", "--failing", NULL);
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je);
    ck_assert_msg(doc != NULL, "poll status --json: %s\n%s", je.text, out);
    json_t *hosts = json_object_get(doc, "hosts");
    ck_assert_int_eq(json_array_size(hosts), 5); /* later.test fails too */
    const char *want[][3] = {{"badjson.test", "invalid", "false"},
                             {"down.test", "refused", "false"},
                             {"huge.test", "too_big", "false"},
                             {"wrong.test", "tls_wrong_host", "false"},
                             {"later.test", "refused", "false"}};
    for (size_t i = 0; i < 5; i++) {
        json_t *h = json_array_get(hosts, i);
        ck_assert_str_eq(json_string_value(json_object_get(h, "name")), want[i][0]);
        ck_assert_str_eq(json_string_value(json_object_get(h, "error_kind")), want[i][1]);
        ck_assert(json_is_false(json_object_get(h, "reachable")));
        ck_assert_str_eq(json_string_value(json_object_get(h, "state")), "unknown");
        ck_assert_ptr_nonnull(json_string_value(json_object_get(h, "last_error")));
        ck_assert_ptr_nonnull(json_string_value(json_object_get(h, "next_attempt")));
    }
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(hosts, 1), "failures")), 2);
    json_t *sum = json_object_get(doc, "summary");
    ck_assert_int_eq(json_integer_value(json_object_get(sum, "hosts")), 6);
    ck_assert_int_eq(json_integer_value(json_object_get(sum, "ok")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(sum, "failing")), 5);
    json_t *first = json_array_get(json_object_get(sum, "by_error"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(first, "kind")), "refused");
    ck_assert_int_eq(json_integer_value(json_object_get(first, "hosts")), 2);
    json_decref(doc);
    free(out);

    /* host show: the why, the attempts and the error. */
    out = expect(0, "--config", config_path, "host", "show", "down.test", NULL);
    assert_has(out, "why unknown: never reported; pull failing (2 in a row, last ");
    assert_has(out, "2 failures in a row, next attempt ");
    assert_has(out, "last error: connection refused: https://down.test/v1/readiness");
    free(out);
    out = expect(0, "--config", config_path, "host", "show", "good.test", NULL);
    assert_has(out, "0 failures in a row");
    /* gen-certs issues for 825 days: the expiry the handshake showed is recorded. */
    assert_has(out, "  collector certificate: expires 20");
    ck_assert_int_gt(tu_db_int(db,
                               "SELECT p.cert_not_after - unixepoch() FROM poll p JOIN host h "
                               "ON h.id = p.host_id WHERE h.name = ?1",
                               "good.test"),
                     800LL * 86400);
    ck_assert_ptr_null(strstr(out, "why unknown"));
    free(out);
    out = expect(0, "--config", config_path, "--json", "host", "show", "wrong.test", NULL);
    doc = json_loads(out, 0, &je);
    ck_assert_msg(doc != NULL, "host show --json: %s\n%s", je.text, out);
    json_t *pull = json_object_get(doc, "pull");
    ck_assert_str_eq(json_string_value(json_object_get(pull, "error_kind")), "tls_wrong_host");
    ck_assert_int_eq(json_integer_value(json_object_get(pull, "failures")), 1);
    ck_assert(json_is_false(json_object_get(pull, "reachable")));
    ck_assert_ptr_null(json_string_value(json_object_get(pull, "last_success")));
    assert_has(json_string_value(json_object_get(doc, "unknown_reason")),
               "never reported; pull failing (1 in a row");
    json_decref(doc);
    free(out);

    /* The gate of good.test (a management point) names why its unknown clients block it, and so
     * does the phase refusal. */
    out = expect(1, "--config", config_path, "gate", "check", "good.test", NULL);
    assert_has(out, "down.test  unknown  never reported; pull failing (2 in a row, last ");
    assert_has(out, "): connection refused: https://down.test/v1/readiness");
    assert_has(out, "huge.test  unknown  never reported; pull failing (1 in a row, last ");
    free(out);
    out =
        expect(1, "--config", config_path, "phase", "advance", "--site", "S01", "--dry-run", NULL);
    assert_has(out, "wrong.test  unknown  never reported; pull failing (1 in a row, last ");
    assert_has(out, "certificate for another host: https://wrong.test/v1/readiness");
    free(out);

    /* CSV: hosts gets reachable,last_error at the end; the poll view has a row per host. */
    out = expect(0, "--config", config_path, "export", "csv", "--view", "hosts", "--site", "S01",
                 NULL);
    assert_has(out, "name,site,roles,os,state,blockers,warnings,last_report,waived,reachable,"
                    "last_error,cert_not_after,cert_fingerprint,cert_issuer,cert_changed_at\r\n");
    assert_has(out, "good.test,S01,management_point,,ready,0,");
    /* good.test: not waived, reachable, no error, its certificate's expiry, fingerprint and
     * issuer (gen-certs' CA), not changed */
    assert_has(out, ",false,true,,20");
    assert_has(out, ",CN=tlsgate fleet CA,\r\n");
    assert_has(out, "\r\nhuge.test,S01,client,,unknown,,,,false,false,report over 262144 bytes");
    free(out);
    out = expect(0, "--config", config_path, "export", "csv", "--view", "poll", NULL);
    assert_has(out, "name,site,state,reachable,last_attempt,last_success,failures,next_attempt,"
                    "error_kind,last_error,cert_not_after\r\n");
    assert_has(out, "\r\nbadjson.test,S01,unknown,false,");
    assert_has(out, ",,1,");
    assert_has(out, ",invalid,invalid report");
    assert_has(out, ",2,"); /* down.test's two failures */
    assert_has(out, ",refused,connection refused: https://down.test/v1/readiness");
    free(out);

    /* Unknown site: bad input, nothing printed as if it were empty. */
    out = expect(3, "--config", config_path, "poll", "status", "--site", "ZZZ", NULL);
    assert_has(out, "no such site: ZZZ");
    free(out);
    tu_peer_stop(&pr);
}
END_TEST

/* ---------------------------------------------------------------- migrations and backups */

/* A database as the first tlsgate wrote it: only schema/001_init.sql applied (version 1), with
 * one site and one host in it. */
static void make_old_db(void)
{
    size_t len;
    char *sql = tu_read_file(tu_source_path("schema/001_init.sql"), &len);
    ck_assert_ptr_nonnull(sql);
    sqlite3 *raw;
    ck_assert_int_eq(sqlite3_open(db, &raw), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(raw, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(raw,
                                  "PRAGMA user_version = 1; PRAGMA application_id = 1414288199;"
                                  "INSERT INTO site VALUES ('S01', 'inventory', 1, 'old');"
                                  "INSERT INTO host (name, site, roles, collector, added_at, "
                                  "updated_at) VALUES ('old.test', 'S01', 1, '127.0.0.1:1', 1, 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(raw);
    free(sql);
}

static long long file_int(const char *path, const char *sql) { return tu_db_int(path, sql, NULL); }

static void assert_integrity_ok(const char *path)
{
    sqlite3 *raw;
    ck_assert_int_eq(sqlite3_open_v2(path, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(raw);
}

/* Names in DIR starting with `prefix` (the first one into `found`). */
static int files_starting(const char *prefix, char *found, size_t size)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            if (!n++ && found)
                snprintf(found, size, "%s", tu_path(dir, e->d_name));
        }
    closedir(d);
    return n;
}

START_TEST(test_commands_refuse_an_older_schema_with_exit_4)
{
    make_old_db();
    const char *const cmds[][6] = {
        {"inventory", "list", NULL},
        {"host", "show", "old.test", NULL},
        {"export", "csv", "--view", "hosts", NULL},
        {"poll", "status", NULL},
        {"waive", "old.test", "--reason", "r", NULL},
        {"--config", config_path, "daemon", NULL},
        {"--config", config_path, "collect", NULL},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        char *out = NULL, *err = NULL;
        int rc = tu_tlsgate(db, &out, &err, cmds[i][0], cmds[i][1], cmds[i][2], cmds[i][3],
                            cmds[i][4], NULL);
        ck_assert_msg(rc == 4, "%s %s: exit %d\n%s", cmds[i][0], cmds[i][1], rc, err);
        assert_has(err, "has schema version 1, this tlsgate needs");
        assert_has(err, "run `tlsgate db migrate`");
        free(out);
        free(err);
    }
    /* Nothing changed, and no backup was taken by a refusal. */
    ck_assert_int_eq(file_int(db, "PRAGMA user_version"), 1);
    ck_assert_int_eq(file_int(db, "SELECT count(*) FROM waiver"), 0);
    ck_assert_int_eq(files_starting("t.db.bak-", NULL, 0), 0);
}
END_TEST

START_TEST(test_db_migrate_backs_up_the_old_file_then_migrates)
{
    make_old_db();
    char *out = expect(0, "db", "migrate", NULL);
    char want[256];
    snprintf(want, sizeof(want),
             "schema version 1 -> %d (backup of version 1: ", store_schema_latest());
    assert_has(out, want);
    free(out);
    char backup[4096];
    ck_assert_int_eq(files_starting("t.db.bak-1-", backup, sizeof(backup)), 1);
    struct stat st;
    ck_assert_int_eq(stat(backup, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    /* The backup is the old database, whole; the database is migrated with its rows. */
    assert_integrity_ok(backup);
    ck_assert_int_eq(file_int(backup, "PRAGMA user_version"), 1);
    ck_assert_int_eq(file_int(backup, "SELECT count(*) FROM host WHERE name = 'old.test'"), 1);
    ck_assert_int_eq(file_int(backup, "SELECT count(*) FROM sqlite_schema WHERE name = "
                                      "'report_state'"),
                     0);
    ck_assert_int_eq(file_int(db, "PRAGMA user_version"), store_schema_latest());
    ck_assert_int_eq(file_int(db, "SELECT count(*) FROM host WHERE name = 'old.test'"), 1);
    ck_assert_int_eq(file_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = "
                                  "'report_state'"),
                     1);
    ck_assert_int_eq(file_int(db, "SELECT count(*) FROM audit WHERE command LIKE '%db migrate' "
                                  "AND outcome LIKE 'migrated 1 -> %'"),
                     1);
    /* Now every command works, and a second migrate has nothing to do (and takes no backup). */
    out = expect(0, "inventory", "list", NULL);
    assert_has(out, "old.test");
    free(out);
    out = expect(0, "db", "migrate", NULL);
    assert_has(out, "nothing to migrate");
    free(out);
    ck_assert_int_eq(files_starting("t.db.bak-", NULL, 0), 1);
}
END_TEST

START_TEST(test_init_on_an_older_file_backs_it_up_too)
{
    make_old_db();
    char *out = expect(0, "init", NULL);
    assert_has(out, "migrated from schema version 1 (backup: ");
    free(out);
    ck_assert_int_eq(files_starting("t.db.bak-1-", NULL, 0), 1);
    ck_assert_int_eq(file_int(db, "PRAGMA user_version"), store_schema_latest());
}
END_TEST

START_TEST(test_db_backup_while_the_daemon_pulls_is_consistent)
{
    init_db();
    write_config("\"interval\": 1, \"jitter\": 0, \"backoff_max\": 10");
    const char *reports[4];
    char specs_buf[4][4200];
    const char *specs[5] = {NULL};
    for (int i = 0; i < 4; i++) {
        char name[32], file[32];
        snprintf(name, sizeof(name), "fleet%02d.test", i);
        snprintf(file, sizeof(file), "r%d.json", i);
        reports[i] = write_report(file, name);
        snprintf(specs_buf[i], sizeof(specs_buf[i]), "good,%s,%s", name, reports[i]);
        specs[i] = specs_buf[i];
    }
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof(name), "fleet%02d.test", i);
        add_host(name, "S01", ROLE_CLIENT, pr.ports[i]);
    }
    add_host("down.test", "S01", ROLE_CLIENT, tu_closed_port());

    char *log = strdup(tu_path(dir, "daemon.log"));
    pid_t pid = tu_tlsgate_start(db, config_path, "daemon", log, true);
    /* Wait until the daemon has stored every report and is pulling again (interval 1 s). */
    struct timespec step = {0, 20 * 1000 * 1000};
    int waited = 0;
    while (file_int(db, "SELECT count(*) FROM report") < 4 ||
           file_int(db, "SELECT coalesce(max(failures), 0) FROM poll") < 2) {
        ck_assert_msg(waited < 30000, "daemon did not pull: %s", tu_read_file(log, NULL));
        nanosleep(&step, NULL);
        waited += 20;
    }
    /* Several copies while it keeps writing; each one whole. */
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "copy%d.db", i);
        const char *copy = tu_path(dir, name);
        char *out = expect(0, "db", "backup", copy, NULL);
        assert_has(out, "copied to");
        free(out);
        assert_integrity_ok(copy);
        ck_assert_int_eq(file_int(copy, "SELECT count(*) FROM host"), 5);
        ck_assert_int_eq(file_int(copy, "SELECT count(*) FROM report"), 4);
        ck_assert_int_ge(file_int(copy, "SELECT count(*) FROM verdict"), 4);
        ck_assert_int_eq(file_int(copy, "PRAGMA user_version"), store_schema_latest());
        struct stat st;
        ck_assert_int_eq(stat(copy, &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0600);
    }
    /* An existing FILE is refused unless --force, and stays as it was. */
    const char *copy = tu_path(dir, "copy0.db");
    tu_write_file(copy, "keep", 4);
    char *out = expect(3, "db", "backup", copy, NULL);
    assert_has(out, "already exists (use --force to replace it)");
    free(out);
    char *kept = tu_read_file(copy, NULL);
    ck_assert_str_eq(kept, "keep");
    free(kept);
    out = expect(0, "db", "backup", copy, "--force", NULL);
    free(out);
    assert_integrity_ok(copy);
    /* No temporary file is left behind. */
    ck_assert_int_eq(files_starting(".copy", NULL, 0), 0);

    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
    free(log);
    tu_peer_stop(&pr);
}
END_TEST

START_TEST(test_db_usage_errors)
{
    init_db();
    char *out = expect(2, "db", "backup", NULL);
    assert_has(out, "FILE is missing");
    free(out);
    out = expect(2, "db", "restore", NULL);
    assert_has(out, "unknown subcommand 'restore'");
    free(out);
    out = expect(0, "db", "--help", NULL);
    assert_has(out, "Usage: tlsgate [--db FILE] db migrate");
    free(out);
    out = expect(3, "db", "backup", tu_path(dir, "no/such/folder/x.db"), NULL);
    assert_has(out, "cannot create a file in its folder");
    free(out);
}
END_TEST

/* ---------------------------------------------------------------- inventory lifecycle */

static const char *write_file(const char *name, const char *text)
{
    const char *path = tu_path(dir, name);
    tu_write_file(path, text, strlen(text));
    return path;
}

START_TEST(test_import_reads_csv_as_powershell_and_configmgr_write_it)
{
    init_db();
    /* Export-Csv on PowerShell 5.1: a #TYPE line, every field quoted; -UseCulture: ';'. */
    const char *ps =
        write_file("ps.csv", "#TYPE Selected.Microsoft.ConfigurationManagement.Device\r\n"
                             "\"Name\";\"SiteCode\";\"Roles\";\"Collector\";\"Domain\";"
                             "\"LastLogonUser\"\r\n"
                             "\"mp1.test\";\"p01\";\"SMS Management Point;SMS Site System\";"
                             "\"127.0.0.1:9001\";\"CORP\";\"a;b\"\r\n"
                             "\"pc1.test\";\"P01\";\"\";\"127.0.0.1:9002\";\"CORP\";\"\"\r\n");
    char *out = expect(0, "inventory", "import", ps, NULL);
    assert_has(out, "2 hosts imported (2 new, 0 updated)");
    assert_has(out, "tlsgate: note: ");
    assert_has(out, "ps.csv: columns ignored (tlsgate reads name,site,roles,collector,os): "
                    "Domain, LastLogonUser\n");
    free(out);
    ck_assert_int_eq(tu_db_int(db, "SELECT roles FROM host WHERE name = ?1", "mp1.test"), MP);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM host WHERE name = ?1 AND site = 'P01' "
                               "AND collector = '127.0.0.1:9002'",
                               "pc1.test"),
                     1);
    /* A tab-separated file; a bad row is still named by its line (the #TYPE line counts). */
    const char *tab = write_file("hosts.tsv", "name\tsite\troles\tcollector\n"
                                              "pc2.test\tP01\tclient\t127.0.0.1:9003\n");
    out = expect(0, "inventory", "import", tab, NULL);
    assert_has(out, "1 hosts imported (1 new, 0 updated)");
    ck_assert_ptr_null(strstr(out, "note:"));
    free(out);
    const char *bad = write_file("bad.csv", "#TYPE System.Management.Automation.PSCustomObject\n"
                                            "name;site\nok.test;P01\nbad name;P01\n");
    out = expect(3, "inventory", "import", bad, NULL);
    assert_has(out, "bad.csv:4:name: 'bad name' is not a host name");
    free(out);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 3);
}
END_TEST

static const char base_inventory[] = "name,site,roles,collector,os\n"
                                     "mp1.test,P01,management_point,127.0.0.1:9001,\n"
                                     "pc1.test,P01,client,127.0.0.1:9002,Windows 10\n"
                                     "pc2.test,P01,client,127.0.0.1:9003,\n"
                                     "pc9.test,P02,client,127.0.0.1:9009,\n";

START_TEST(test_dry_run_prints_the_exact_diff_and_changes_nothing)
{
    init_db();
    char *out = expect(0, "inventory", "import", write_file("base.csv", base_inventory), NULL);
    free(out);
    long long audits = tu_db_int(db, "SELECT count(*) FROM audit", NULL);
    const char *next = write_file("next.csv", "name,site,roles,collector,os\n"
                                              "mp1.test,P01,management_point,127.0.0.1:9001,\n"
                                              "PC1.test,P01,client;console,127.0.0.1:9012,\n"
                                              "pc3.test,P01,client,127.0.0.1:9004,\n");
    out = expect(0, "inventory", "import", next, "--prune", "--site", "p01", "--dry-run", NULL);
    char want[1024];
    snprintf(want, sizeof(want),
             "+ pc3.test  site P01, roles client, collector 127.0.0.1:9004\n"
             "~ PC1.test  name pc1.test -> PC1.test; roles client -> client;console; "
             "collector 127.0.0.1:9002 -> 127.0.0.1:9012; os Windows 10 -> (empty)\n"
             "- pc2.test  site P01, roles client, collector 127.0.0.1:9003\n"
             "%s: dry run: 1 added, 1 changed, 1 removed; nothing was changed\n",
             next);
    ck_assert_str_eq(out, want);
    free(out);
    /* Nothing changed, not even the audit log. */
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 4);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM host WHERE name = ?1 AND "
                               "collector = '127.0.0.1:9002'",
                               "pc1.test"),
                     1);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM audit", NULL), audits);
    /* A dry run of a plain import (no prune) lists only what it adds and changes. */
    out = expect(0, "inventory", "import", next, "--dry-run", NULL);
    assert_has(out, "dry run: 1 added, 1 changed, 0 removed; nothing was changed\n");
    ck_assert_ptr_null(strstr(out, "- pc2.test"));
    free(out);
    /* An explicit-edges file: checked whole, nothing stored. */
    const char *edges = write_file("edges.csv", "dependent,server,channel\n"
                                                "pc1.test,mp1.test,custom\n");
    out = expect(0, "inventory", "import", edges, "--dry-run", NULL);
    assert_has(out, "dry run: 1 explicit edges are valid; nothing was changed\n");
    free(out);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM edge", NULL), 0);
    /* Usage: --prune without --site, --site without --prune. */
    out = expect(2, "inventory", "import", next, "--prune", NULL);
    assert_has(out, "--prune and --site S go together");
    free(out);
    out = expect(2, "inventory", "import", next, "--site", "P01", NULL);
    free(out);
}
END_TEST

START_TEST(test_prune_and_remove_unblock_gates_and_keep_history_in_the_audit_log)
{
    init_db();
    run_env = pinned_clock;
    struct store *s = fx_open(db);
    fx_site(s, "P01", "enforce");
    fx_site(s, "P02", "inventory");
    fx_host(s, "mp1.test", "P01", MP);
    fx_host(s, "pc1.test", "P01", ROLE_CLIENT);
    fx_host(s, "pc2.test", "P01", ROLE_CLIENT);
    fx_win7_without_kb(s, "pc2.test"); /* not ready: blocks mp1's gate */
    fx_host_bare(s, "pc3.test", "P01", ROLE_CLIENT, "127.0.0.1:9003"); /* never reported */
    fx_host(s, "pc9.test", "P02", ROLE_CLIENT);
    fx_waive(s, "pc3.test", 0);
    store_close(s);

    char *out = expect(1, "gate", "check", "mp1.test", NULL);
    assert_has(out, "pc2.test");
    free(out);

    /* The file lists mp1 and pc1 of P01 (and pc9 of P02, untouched by --site P01). */
    const char *file = write_file("p01.csv", "name,site,roles,collector\n"
                                             "mp1.test,P01,management_point,127.0.0.1:9001\n"
                                             "pc1.test,P01,client,127.0.0.1:9443\n");
    out = expect(0, "inventory", "import", file, "--prune", "--site", "P01", NULL);
    assert_has(out, "2 hosts of site P01 not in the file removed (audited)");
    assert_has(out, "no SIGHUP needed");
    free(out);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 3);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host WHERE name = ?1", "pc9.test"), 1);
    /* Its reports, verdicts and waiver went with it (FK cascade). */
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM report", NULL), 3);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM verdict WHERE host_id NOT IN "
                               "(SELECT id FROM host)",
                               NULL),
                     0);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM waiver", NULL), 0);
    /* The gate opens: the not-ready client is gone. */
    out = expect(0, "gate", "check", "mp1.test", NULL);
    ck_assert_ptr_null(strstr(out, "pc2.test"));
    free(out);
    /* The history: one audit row per removed host, saying what it was. */
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM audit WHERE outcome = 'removed host "
                               "pc2.test (site P01, roles client, collector 127.0.0.1:9443): "
                               "not in ' || ?1 || ' (--prune --site P01)'",
                               file),
                     1);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM audit WHERE outcome LIKE 'removed host "
                               "pc3.test %'",
                               NULL),
                     1);

    /* remove: every name must exist, or nothing goes. */
    out = expect(3, "inventory", "remove", "pc9.test", "nosuch.test", NULL);
    assert_has(out, "no such host: nosuch.test");
    assert_has(out, "nothing was removed");
    free(out);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host WHERE name = ?1", "pc9.test"), 1);
    out = expect(0, "inventory", "remove", "--dry-run", "PC9.test", NULL);
    ck_assert_str_eq(out, "- pc9.test  site P02, roles client, collector 127.0.0.1:9443\n"
                          "dry run: 1 hosts would be removed; nothing was changed\n");
    free(out);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host WHERE name = ?1", "pc9.test"), 1);
    out = expect(0, "inventory", "remove", "PC9.test", "pc9.test", NULL);
    assert_has(out, "1 hosts removed (audited)");
    free(out);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host WHERE name = ?1", "pc9.test"), 0);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM audit WHERE outcome LIKE 'removed host "
                               "pc9.test (site P02, roles client, %): inventory remove'",
                               NULL),
                     1);
    /* The change counter moved with each change that stayed (the daemon's cue): the prune and
     * the removal, not the refused removal nor the dry run. */
    ck_assert_int_eq(
        tu_db_int(db, "SELECT value FROM meta WHERE key = 'inventory_generation'", NULL), 2);

    /* A prune file without a single host of the site would empty it: refused. */
    out = expect(3, "inventory", "import", write_file("other.csv", "name,site\nx.test,P02\n"),
                 "--prune", "--site", "P01", NULL);
    assert_has(out, "no host of site P01 in the file");
    free(out);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host WHERE site = 'P01'", NULL), 2);
}
END_TEST

START_TEST(test_daemon_notices_an_inventory_change_without_sighup)
{
    init_db();
    const char *good = write_report("good.json", "good.test");
    const char *specs[] = {tu_peer_spec("good,good.test", good), NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("down.test", "S01", ROLE_CLIENT, tu_closed_port());

    char *log = strdup(tu_path(dir, "daemon.log"));
    pid_t pid = tu_tlsgate_start(db, config_path, "daemon", log, true);
    ck_assert_msg(tu_wait_db_int(db, "SELECT count(*) FROM poll", NULL, 1, 20000),
                  "daemon did not pull: %s", tu_read_file(log, NULL));
    /* An import while it runs: the new host is pulled without a SIGHUP. */
    char csv[256];
    snprintf(csv, sizeof(csv), "name,site,collector\ngood.test,S01,127.0.0.1:%d\n", pr.ports[0]);
    char *out = expect(0, "inventory", "import", write_file("new.csv", csv), NULL);
    free(out);
    ck_assert_msg(tu_wait_db_int(db, "SELECT count(*) FROM report", NULL, 1, 20000),
                  "new host not pulled: %s", tu_read_file(log, NULL));
    char *text = tu_read_file(log, NULL);
    assert_has(text, "inventory changed (an import or removal): reloading");
    assert_has(text, "inventory: 2 hosts scheduled");
    free(text);
    /* A removal is noticed the same way. */
    out = expect(0, "inventory", "remove", "down.test", NULL);
    free(out);
    ck_assert_msg(tu_wait_file_contains(log, "inventory: 1 hosts scheduled", 20000),
                  "removal not noticed: %s", tu_read_file(log, NULL));
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
    free(log);
    tu_peer_stop(&pr);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    tu_tcase(s, "unit", NULL, NULL,
             TU_TESTS(test_pollstatus_classify_reads_labels_and_older_texts));

    TCase *tc =
        tu_tcase(s, "processes", setup, teardown,
                 TU_TESTS(test_failing_pulls_are_explained_everywhere_the_state_is_shown,
                          test_each_error_kind_reads_the_same_in_every_view,
                          test_commands_refuse_an_older_schema_with_exit_4,
                          test_db_migrate_backs_up_the_old_file_then_migrates,
                          test_init_on_an_older_file_backs_it_up_too,
                          test_db_backup_while_the_daemon_pulls_is_consistent, test_db_usage_errors,
                          test_import_reads_csv_as_powershell_and_configmgr_write_it,
                          test_dry_run_prints_the_exact_diff_and_changes_nothing,
                          test_prune_and_remove_unblock_gates_and_keep_history_in_the_audit_log,
                          test_daemon_notices_an_inventory_change_without_sighup));
    tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
    tcase_set_timeout(tc, 120);
    return s;
}

int main(void) { return tu_run_suite(ops_suite()); }

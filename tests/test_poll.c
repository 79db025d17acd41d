/*
 * test_poll.c — the pull engine, `tlsgate collect` and `tlsgate daemon`, with real processes:
 * the real tlsgate binary, collectors played by tests/daemon/peer.py (python3 ssl, mutual TLS
 * with certificates from tools/gen-certs), a real database file, loopback only.
 *
 * Every wait is on a condition with a deadline; nothing asserts on wall time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/poll.h> /* not <poll.h>: orchestrator/pull/poll.h shadows it */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fixture.h"
#include "hoststate.h"
#include "poll.h"
#include "rules.h"
#include "store.h"
#include "testutil.h"

/* Certificates are made once per suite (unchecked fixture); each test gets its own folder. */
static char *certs;
static char *dir;
static char db[4096];
static char config_path[4096];

static const char *const cert_names[] = {
    "w7ready.test", "w7unpatched.test", "w7native.test",  "w10.test",
    "good.test",    "ready.test",       "unpatched.test", "silent.test",
    "slow.test",    "huge.test",        "badjson.test",   "status.test",
    "other.test",   "future.test",      "stale.test",     NULL,
};

static void make_certs(void)
{
    certs = tu_tmpdir();
    const char *names[64];
    int n = 0;
    for (int i = 0; cert_names[i]; i++)
        names[n++] = cert_names[i];
    for (int i = 0; i < 20; i++) {
        char *name;
        ck_assert_int_ge(asprintf(&name, "fleet%02d.test", i), 0);
        names[n++] = name;
    }
    names[n] = NULL;
    ck_assert_msg(tu_gen_certs(certs, names) == 0, "gen-certs failed");
}

static void drop_certs(void)
{
    tu_rmtree(certs);
    free(certs);
}

/* Writes the config: short timeouts keep the suite fast, unless `extra` sets its own. */
static void write_config(const char *extra)
{
    char buf[8192];
    bool own_timeouts = extra && strstr(extra, "timeout");
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s/ca.pem\", \"cert\": \"%s/orchestrator.pem\", "
             "\"key\": \"%s/orchestrator.key\"}%s%s%s}",
             certs, certs, certs, own_timeouts ? "" : ", \"connect_timeout\": 2, \"timeout\": 3",
             extra ? ", " : "", extra ? extra : "");
    tu_write_file(config_path, buf, strlen(buf));
}

static void setup(void)
{
    dir = tu_tmpdir_with_db(db, sizeof(db));
    snprintf(config_path, sizeof(config_path), "%s", tu_path(dir, "config.json"));
    write_config("\"interval\": 3600, \"jitter\": 0, \"concurrency\": 16");
    char *err = NULL;
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "init", NULL), 0);
    free(err);
    struct store *s = fx_open(db);
    fx_site(s, "S01", "inventory");
    store_close(s);
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

/* ---------------------------------------------------------------- database helpers */

static struct store *open_db(void)
{
    struct store *s;
    char e[512];
    ck_assert_msg(store_open(db, false, &s, e, sizeof(e)) == 0, "%s", e);
    return s;
}

static void add_host(const char *name, unsigned roles, int port)
{
    struct store *s = open_db();
    char collector[64];
    snprintf(collector, sizeof(collector), "127.0.0.1:%d", port);
    fx_host_bare(s, name, "S01", roles, collector);
    store_close(s);
}

/* poll.last_error of a host (malloc'd; NULL when none). */
static char *last_error(const char *host)
{
    struct store *s = open_db();
    sqlite3_stmt *st;
    ck_assert_int_eq(store_prepare(s,
                                   "SELECT p.last_error FROM poll p JOIN host h ON h.id = "
                                   "p.host_id WHERE h.name = ?",
                                   &st),
                     0);
    sqlite3_bind_text(st, 1, host, -1, SQLITE_STATIC);
    ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "no poll row for %s", host);
    const unsigned char *t = sqlite3_column_text(st, 0);
    char *v = t ? strdup((const char *)t) : NULL;
    sqlite3_finalize(st);
    store_close(s);
    return v;
}

static long long reports_of(const char *host)
{
    return tu_db_int(db,
                     "SELECT count(*) FROM report r JOIN host h ON h.id = r.host_id "
                     "WHERE h.name = ?",
                     host);
}

static void assert_error_contains(const char *host, const char *needle)
{
    char *e = last_error(host);
    ck_assert_msg(e && strstr(e, needle), "%s: last_error \"%s\" lacks \"%s\"", host,
                  e ? e : "(none)", needle);
    free(e);
}

/* ---------------------------------------------------------------- reports */

/* The example report, made to belong to `host`, collected `age` seconds ago; `edit` may change
 * it further. Written to DIR/NAME.json; returns that path. */
static const char *write_report(const char *file, const char *host, long long age,
                                void (*edit)(json_t *))
{
    json_error_t je;
    json_t *r = json_load_file(tu_source_path("schema/report.example.json"), 0, &je);
    ck_assert_msg(r != NULL, "report.example.json: %s", je.text);
    json_object_set_new(r, "host", json_string(host));
    char when[32];
    time_t t = time(NULL) - age;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(r, "collected_at", json_string(when));
    if (edit)
        edit(r);
    const char *path = tu_path(dir, file);
    ck_assert_int_eq(json_dump_file(r, path, JSON_COMPACT), 0);
    json_decref(r);
    return path;
}

/* Windows 7 as it ships: no KB3140245, no WinHTTP or SCHANNEL TLS 1.2 settings. */
static void make_unpatched(json_t *r)
{
    json_object_set_new(r, "hotfixes", json_pack("[s]", "KB976932"));
    json_t *w = json_object_get(r, "winhttp");
    json_object_set_new(w, "default_secure_protocols", json_null());
    json_object_set_new(w, "default_secure_protocols_wow64", json_null());
    json_t *tls12 = json_object_get(json_object_get(r, "schannel"), "tls12");
    json_t *tls11 = json_object_get(json_object_get(r, "schannel"), "tls11");
    const char *sides[] = {"client", "server"};
    for (int i = 0; i < 2; i++) {
        json_t *a = json_object_get(tls12, sides[i]), *b = json_object_get(tls11, sides[i]);
        json_object_set_new(a, "enabled", json_null());
        json_object_set_new(a, "disabled_by_default", json_null());
        json_object_set_new(b, "enabled", json_null());
        json_object_set_new(b, "disabled_by_default", json_null());
    }
}

/* ---------------------------------------------------------------- processes */

/* Starts the real tlsgate-collector for `name` serving the .reg fixture `fixture` (layered
 * over `base` when not NULL, as the facts suite does) on a free loopback port; returns its pid
 * and sets *port from the line it prints. */
static pid_t collector_start(const char *name, const char *base, const char *fixture, int *port)
{
    char reg[4096];
    snprintf(reg, sizeof(reg), "tests/fixtures/reg/%s.reg", fixture);
    char *regpath = strdup(tu_source_path(reg));
    snprintf(reg, sizeof(reg), "tests/fixtures/reg/%s.reg", base ? base : fixture);
    char *basepath = strdup(tu_source_path(reg));
    char *cert = strdup(tu_cert_path(certs, name, "pem")),
         *key = strdup(tu_cert_path(certs, name, "key"));
    char *ca = strdup(tu_cert_path(certs, "ca", "pem"));
    const char *args[] = {"--listen", "127.0.0.1:0", "--cert", cert,        "--key", key, "--ca",
                          ca,         "--regfile",   basepath, "--regfile", regpath, NULL};
    uint16_t p;
    pid_t pid = tu_collector_start(args, NULL, 20000, &p);
    *port = p;
    free(regpath);
    free(basepath);
    free(cert);
    free(key);
    free(ca);
    return pid;
}

/* The host's state by the one definition (hoststate.h), stale after a day. */
static char *state_of(const char *host)
{
    struct store *s = open_db();
    sqlite3_stmt *st;
    ck_assert_int_eq(
        store_prepare(
            s,
            "SELECT " HOSTSTATE_SQL(
                "r", "(unixepoch() - 86400)") " FROM host h LEFT JOIN report r ON r.host_id = h.id "
                                              "WHERE h.name = ?",
            &st),
        0);
    sqlite3_bind_text(st, 1, host, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    char *v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    store_close(s);
    return v;
}

/* Starts `tlsgate --db DB --config CONFIG COMMAND` with stderr into DIR/log_name (appended to,
 * or truncated first), stdin and stdout on /dev/null. */
static pid_t tlsgate_start(const char *command, const char *log_name, bool truncate)
{
    return tu_tlsgate_start(db, config_path, command, tu_path(dir, log_name), truncate);
}

/* Starts `tlsgate --db DB --config CONFIG daemon` with stderr appended to DIR/log_name. */
static pid_t daemon_start(const char *log_name) { return tlsgate_start("daemon", log_name, false); }

/* Stops the daemon with SIGTERM and asserts it exits 0 within 30 s; returns DIR/daemon.log
 * (malloc'd). */
static char *daemon_stop(pid_t d)
{
    kill(d, SIGTERM);
    int rc = tu_wait_exit(d, 30000);
    char *log = tu_read_file(tu_path(dir, "daemon.log"), NULL);
    ck_assert_msg(rc == 0, "daemon exit %d\n%s", rc, log);
    return log;
}

/* Fails the test with the daemon's log when `ok` is false. */
static void assert_daemon(bool ok, const char *what)
{
    if (ok)
        return;
    char *log = tu_read_file(tu_path(dir, "daemon.log"), NULL);
    ck_abort_msg("%s; daemon log:\n%s", what, log ? log : "(none)");
}

static int collect(char **out, char **err, const char *host)
{
    if (host)
        return tu_tlsgate(db, out, err, "--config", config_path, "collect", "--host", host, NULL);
    return tu_tlsgate(db, out, err, "--config", config_path, "collect", NULL);
}

/* ---------------------------------------------------------------- schedule arithmetic */

START_TEST(test_first_poll_is_spread_by_a_stable_per_host_offset)
{
    struct config c;
    config_init(&c);
    c.interval = 1000;
    c.jitter = 0.5;
    long long lo = 1000000, hi = 0;
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof(name), "host%03d.corp.test", i);
        long long at = poll_first_at(&c, name, 1000000);
        ck_assert_int_ge(at, 1000000);
        ck_assert_int_lt(at, 1000000 + 500);
        ck_assert_int_eq(at, poll_first_at(&c, name, 1000000));
        lo = at < lo ? at : lo;
        hi = at > hi ? at : hi;
    }
    /* 200 hosts are not all in one second: the fleet never arrives at once. */
    ck_assert_int_gt(hi - lo, 400);
    ck_assert_int_eq(poll_first_at(&c, "A.Corp.Test", 0), poll_first_at(&c, "a.corp.test", 0));
    c.jitter = 0;
    ck_assert_int_eq(poll_first_at(&c, "host001.corp.test", 5), 5);
}
END_TEST

START_TEST(test_failures_back_off_exponentially_up_to_backoff_max)
{
    struct config c;
    config_init(&c);
    c.interval = 900;
    c.backoff_max = 300;
    ck_assert_int_eq(poll_next_at(&c, "h.test", 0, 1000), 1900);
    long long prev = 0;
    for (int n = 1; n <= 12; n++) {
        long long d = POLL_BACKOFF_BASE_SECONDS;
        for (int i = 1; i < n && d < c.backoff_max; i++)
            d *= 2;
        if (d > c.backoff_max)
            d = c.backoff_max;
        long long delay = poll_next_at(&c, "h.test", n, 1000) - 1000;
        ck_assert_int_ge(delay, d / 2);
        ck_assert_int_le(delay, d);
        ck_assert_int_eq(delay, poll_next_at(&c, "h.test", n, 1000) - 1000);
        if (n <= 4)
            ck_assert_int_gt(delay, prev / 2);
        prev = delay;
    }
    ck_assert_int_le(poll_next_at(&c, "h.test", 40, 0), 300);
}
END_TEST

/* ---------------------------------------------------------------- collect */

START_TEST(test_round_over_real_collectors_stores_the_right_states)
{
    static const struct {
        const char *name, *base, *fixture, *state;
    } hosts[] = {
        {"w7ready.test", "win7-sp1-x64-unpatched", "win7-ready", "ready"},
        {"w7unpatched.test", NULL, "win7-sp1-x64-unpatched", "not_ready"},
        {"w7native.test", NULL, "win7-kb3140245-native-only", "not_ready"},
        {"w10.test", NULL, "win10-22h2", "ready"},
    };
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        int port;
        pids[i] = collector_start(hosts[i].name, hosts[i].base, hosts[i].fixture, &port);
        add_host(hosts[i].name, 1, port);
    }
    add_host("down.test", 1, tu_closed_port());
    char *out = NULL, *err = NULL;
    int rc = collect(&out, &err, NULL);
    ck_assert_msg(rc == 0, "collect: %d\n%s\n%s", rc, out, err);
    ck_assert_msg(strstr(out, "collect: 5 hosts, 4 ok, 1 failed") != NULL, "%s", out);
    free(out);
    free(err);
    for (int i = 0; i < 4; i++) {
        char *state = state_of(hosts[i].name);
        ck_assert_msg(!strcmp(state, hosts[i].state), "%s (%s): state %s, expected %s",
                      hosts[i].name, hosts[i].fixture, state, hosts[i].state);
        free(state);
        kill(pids[i], SIGTERM);
        ck_assert_int_eq(tu_wait_exit(pids[i], 10000), 0);
    }
    char *state = state_of("down.test");
    ck_assert_str_eq(state, "unknown");
    free(state);
}
END_TEST

START_TEST(test_collect_stores_reports_and_poll_state)
{
    const char *ready = write_report("ready.json", "ready.test", 60, NULL);
    const char *unpatched = write_report("unpatched.json", "unpatched.test", 60, make_unpatched);
    const char *specs[] = {tu_peer_spec("good,ready.test", ready),
                           tu_peer_spec("good,unpatched.test", unpatched), NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("ready.test", 1, pr.ports[0]);
    add_host("UNPATCHED.test", 1, pr.ports[1]);
    add_host("never.test", 1, tu_closed_port());

    char *out = NULL, *err = NULL;
    int rc = collect(&out, &err, NULL);
    ck_assert_msg(rc == 0, "collect: %d\n%s\n%s", rc, out, err);
    ck_assert_ptr_nonnull(strstr(out, "ok ready.test"));
    ck_assert_ptr_nonnull(strstr(out, "ok UNPATCHED.test"));
    ck_assert_ptr_nonnull(strstr(out, "failed never.test: "));
    ck_assert_ptr_nonnull(strstr(out, "collect: 3 hosts, 2 ok, 1 failed"));
    free(out);
    free(err);

    ck_assert_int_eq(reports_of("ready.test"), 1);
    ck_assert_int_eq(reports_of("unpatched.test"), 1);
    ck_assert_int_eq(reports_of("never.test"), 0);
    /* The stored body is the report that was served, and its verdicts are there. */
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM report r JOIN host h ON h.id = r.host_id "
                               "WHERE h.name = ? AND json_extract(r.body, '$.host') = h.name",
                               "ready.test"),
                     1);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT r.blockers FROM report r JOIN host h ON h.id = r.host_id "
                               "WHERE h.name = ?",
                               "ready.test"),
                     0);
    ck_assert_int_gt(tu_db_int(db,
                               "SELECT r.blockers FROM report r JOIN host h ON h.id = r.host_id "
                               "WHERE h.name = ?",
                               "unpatched.test"),
                     0);
    ck_assert_int_gt(tu_db_int(db,
                               "SELECT count(*) FROM verdict v JOIN host h ON h.id = v.host_id "
                               "WHERE h.name = ?",
                               "unpatched.test"),
                     0);
    /* poll rows: success clears the error and failures; the down host counts one failure. */
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM poll p JOIN host h ON h.id = p.host_id "
                               "WHERE h.name = ? AND p.last_error IS NULL AND p.failures = 0 "
                               "AND p.last_success_at IS NOT NULL AND p.next_at >= "
                               "p.last_attempt_at + 3600",
                               "ready.test"),
                     1);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM poll p JOIN host h ON h.id = p.host_id "
                               "WHERE h.name = ? AND p.failures = 1 AND p.last_success_at IS NULL "
                               "AND p.next_at > p.last_attempt_at",
                               "never.test"),
                     1);
    assert_error_contains("never.test", "via 127.0.0.1:");

    /* --host: one host only; the other rows are untouched. */
    long long before = tu_db_int(db,
                                 "SELECT last_attempt_at FROM poll p JOIN host h ON "
                                 "h.id = p.host_id WHERE h.name = ?",
                                 "never.test");
    rc = collect(&out, &err, "ready.TEST");
    ck_assert_msg(rc == 0, "collect --host: %d\n%s", rc, err);
    ck_assert_ptr_nonnull(strstr(out, "collect: 1 hosts, 1 ok, 0 failed"));
    free(out);
    free(err);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT failures FROM poll p JOIN host h ON h.id = p.host_id "
                               "WHERE h.name = ?",
                               "never.test"),
                     1);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT last_attempt_at FROM poll p JOIN host h ON "
                               "h.id = p.host_id WHERE h.name = ?",
                               "never.test"),
                     before);
    tu_peer_stop(&pr);
}
END_TEST

/* The daemon trusts the fleet CA and nothing else: a collector whose certificate carries the
 * right name but comes from another CA (or the system's bundle) is refused at the handshake. */
START_TEST(test_collector_certificate_from_another_ca_is_refused)
{
    char *other = tu_tmpdir();
    char *argv[] = {(char *)tu_source_path("tools/gen-certs"), other, "fleet05.test", NULL};
    ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
    /* The collector itself trusts the fleet CA (so it would answer the daemon), but presents a
     * server certificate from the other CA. */
    char *fleet_ca = tu_read_file(tu_cert_path(certs, "ca", "pem"), NULL);
    tu_write_file(tu_path(other, "ca.pem"), fleet_ca, strlen(fleet_ca));
    free(fleet_ca);
    char *fleet_certs = certs;
    certs = other;
    int port;
    pid_t c = collector_start("fleet05.test", NULL, "win10-22h2", &port);
    certs = fleet_certs;
    add_host("fleet05.test", 1, port);

    char *out = NULL, *err = NULL;
    ck_assert_int_eq(collect(&out, &err, NULL), 0);
    ck_assert_msg(strstr(out, "collect: 1 hosts, 0 ok, 1 failed") != NULL, "%s", out);
    free(out);
    free(err);
    ck_assert_int_eq(reports_of("fleet05.test"), 0);
    assert_error_contains("fleet05.test", "certificate");
    kill(c, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(c, 10000), 0);
    tu_rmtree(other);
    free(other);
}
END_TEST

/* A client key that is not the certificate's is a bad config: exit 3, naming the key file. */
START_TEST(test_collect_refuses_a_key_that_is_not_the_certificates)
{
    char buf[8192];
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s/ca.pem\", \"cert\": \"%s/orchestrator.pem\", "
             "\"key\": \"%s/fleet00.test.key\"}}",
             certs, certs, certs);
    tu_write_file(config_path, buf, strlen(buf));
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(collect(&out, &err, NULL), 3);
    ck_assert_msg(strstr(err, "fleet00.test.key: is not the key of the client certificate") != NULL,
                  "%s", err);
    free(out);
    free(err);
}
END_TEST

/* A key that group or others can read is refused before any connection, and the message says
 * how to fix the mode; once it is 0600 the same files work. */
START_TEST(test_collect_refuses_a_key_others_can_read)
{
    char key[4096], buf[8192];
    snprintf(key, sizeof(key), "%s/open.key", certs);
    size_t len;
    char *pem = tu_read_file(tu_path(certs, "orchestrator.key"), &len);
    ck_assert_ptr_nonnull(pem);
    tu_write_file(key, pem, len);
    free(pem);
    ck_assert_int_eq(chmod(key, 0640), 0);
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s/ca.pem\", \"cert\": \"%s/orchestrator.pem\", "
             "\"key\": \"%s\"}}",
             certs, certs, key);
    tu_write_file(config_path, buf, strlen(buf));
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(collect(&out, &err, NULL), 3);
    ck_assert_msg(strstr(err, "open.key: private key is readable or writable by group or others "
                              "(mode 0640)") != NULL &&
                      strstr(err, "chmod 600") != NULL,
                  "%s", err);
    free(out);
    free(err);
    ck_assert_int_eq(chmod(key, 0600), 0);
    out = err = NULL;
    ck_assert_int_ne(collect(&out, &err, NULL), 3);
    free(out);
    free(err);
    unlink(key);
}
END_TEST

static void make_future(json_t *r)
{
    char when[32];
    time_t t = time(NULL) + 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(r, "collected_at", json_string(when));
}

START_TEST(test_misbehaving_collectors_are_each_recorded_with_a_reason)
{
    const char *good = write_report("good.json", "good.test", 60, NULL);
    const char *other = write_report("other.json", "other.test", 60, NULL);
    const char *future = write_report("future.json", "future.test", 60, make_future);
    const char *stale = write_report("stale.json", "stale.test", 60, NULL);
    (void)other;
    const char *specs[] = {tu_peer_spec("good,good.test", good), "silent,silent.test",
                           "slow,slow.test", "huge,huge.test", "badjson,badjson.test",
                           /* wrongcert.test is answered with other.test's certificate. */
                           tu_peer_spec("good,other.test", good),
                           /* other.test presents its own certificate, good.test's report. */
                           tu_peer_spec("good,other.test", good),
                           tu_peer_spec("good,future.test", future),
                           tu_peer_spec("good,stale.test", stale), "status,status.test", NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    ck_assert_int_eq(pr.nports, 10);
    const char *names[] = {"good.test",    "silent.test",    "slow.test",  "huge.test",
                           "badjson.test", "wrongcert.test", "other.test", "future.test",
                           "stale.test",   "status.test"};
    for (int i = 0; i < 10; i++)
        add_host(names[i], 1, pr.ports[i]);
    add_host("down.test", 1, tu_closed_port());

    /* First round: stale.test's report is stored; then it serves an older one. */
    char *out = NULL, *err = NULL;
    int rc = collect(&out, &err, NULL);
    ck_assert_msg(rc == 0, "collect: %d\n%s\n%s", rc, out, err);
    free(out);
    free(err);
    ck_assert_int_eq(reports_of("stale.test"), 1);
    write_report("stale.json", "stale.test", 7200, NULL);
    rc = collect(&out, &err, NULL);
    ck_assert_msg(rc == 0, "collect: %d\n%s\n%s", rc, out, err);
    ck_assert_ptr_nonnull(strstr(out, "collect: 11 hosts, 1 ok, 10 failed"));
    free(out);
    free(err);

    ck_assert_int_eq(reports_of("good.test"), 1);
    ck_assert_ptr_null(last_error("good.test"));
    assert_error_contains("down.test", "Failed to connect to 127.0.0.1 port");
    assert_error_contains("silent.test", "timeout");
    assert_error_contains("slow.test", "timed out");
    assert_error_contains("huge.test", "report over 262144 bytes");
    assert_error_contains("badjson.test", "invalid report");
    assert_error_contains("wrongcert.test", "certificate");
    assert_error_contains("other.test", "report is for host \"good.test\", not other.test");
    assert_error_contains("future.test", "in the future");
    assert_error_contains("stale.test", "older than stored report");
    assert_error_contains("status.test", "HTTP status 503");
    /* Rejected: nothing stored for them, and stale.test keeps its previous report. */
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM report", NULL), 2);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT failures FROM poll p JOIN host h ON h.id = p.host_id "
                               "WHERE h.name = ?",
                               "stale.test"),
                     1);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT failures FROM poll p JOIN host h ON h.id = p.host_id "
                               "WHERE h.name = ?",
                               "silent.test"),
                     2);
    /* The good host was not held up by the others: stored within its own timeout. */
    ck_assert_int_le(tu_db_int(db,
                               "SELECT r.received_at - p.last_attempt_at FROM report r JOIN poll "
                               "p ON p.host_id = r.host_id JOIN host h ON h.id = r.host_id "
                               "WHERE h.name = ?",
                               "good.test"),
                     3);
    tu_peer_stop(&pr);
}
END_TEST

/* A host name that forges a log line and a terminal escape. */
static void make_forging(json_t *r)
{
    json_object_set_new(r, "host",
                        json_string("x\n2026-01-01T00:00:00.000Z info host=good.test "
                                    "FORGED\x1b[2J"));
}

START_TEST(test_reasons_quoting_a_report_carry_no_control_characters)
{
    const char *forged = write_report("forged.json", "good.test", 60, make_forging);
    const char *specs[] = {tu_peer_spec("good,good.test", forged), NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("good.test", 1, pr.ports[0]);
    char *out = NULL, *err = NULL;
    int rc = collect(&out, &err, NULL);
    ck_assert_msg(rc == 0, "collect: %d\n%s\n%s", rc, out, err);
    /* The reason is recorded, with the offending bytes shown as '?'. */
    assert_error_contains("good.test", "invalid report: host: \"x?2026-01-01");
    char *e = last_error("good.test");
    for (const char *c = e; *c; c++)
        ck_assert_msg((unsigned char)*c >= 0x20 && *c != 0x7f, "control byte in \"%s\"", e);
    free(e);
    ck_assert_ptr_null(strstr(out, "\n2026-01-01"));
    ck_assert_ptr_null(strchr(out, 0x1b));
    free(out);
    free(err);
    tu_peer_stop(&pr);
}
END_TEST

START_TEST(test_busy_store_keeps_the_batch_and_retries_it)
{
    const char *good = write_report("good.json", "good.test", 60, NULL);
    const char *specs[] = {tu_peer_spec("late,good.test", good), NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("good.test", 1, pr.ports[0]);
    write_config("\"log_level\": \"debug\"");

    /* Another writer takes the database once the round has started (the collector answers
     * after a second) and holds it until the round has met the lock. */
    const char *log_path = tu_path(dir, "collect.log");
    pid_t pid = tlsgate_start("collect", "collect.log", true);
    ck_assert(tu_wait_file_contains(log_path, "inventory: 1 hosts scheduled", 20000));
    struct store *s = open_db();
    ck_assert_int_eq(store_begin(s, true), 0);
    bool kept = tu_wait_file_contains(log_path, "database busy: 1 results kept", 20000);
    store_rollback(s);
    store_close(s);
    int rc = tu_wait_exit(pid, 30000);
    char *log = tu_read_file(log_path, NULL);
    ck_assert_msg(kept && rc == 0, "collect under a held lock: exit %d\n%s", rc, log);
    free(log);
    /* Written once the lock was gone: nothing was dropped. */
    ck_assert_int_eq(reports_of("good.test"), 1);
    ck_assert_ptr_null(last_error("good.test"));
    tu_peer_stop(&pr);
}
END_TEST

START_TEST(test_collect_on_a_terminal_draws_a_progress_line)
{
    const char *good = write_report("good.json", "good.test", 60, NULL);
    const char *specs[] = {tu_peer_spec("good,good.test", good), NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("good.test", 1, pr.ports[0]);
    add_host("down.test", 1, tu_closed_port());
    int master;
    char *tlsgate = strdup(tu_build_path("orchestrator/tlsgate"));
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl(tlsgate, "tlsgate", "--db", db, "--config", config_path, "collect", (char *)NULL);
        _exit(127);
    }
    free(tlsgate);
    char out[16384];
    size_t len = 0;
    for (;;) {
        ck_assert_msg(tu_wait_readable(master, 20000), "collect on a tty did not finish");
        ssize_t r = read(master, out + len, sizeof(out) - 1 - len);
        if (r <= 0)
            break; /* EIO once the child has closed the terminal */
        len += (size_t)r;
        ck_assert_uint_lt(len, sizeof(out) - 1);
    }
    out[len] = '\0';
    close(master);
    ck_assert_int_eq(tu_wait_exit(pid, 10000), 0);
    ck_assert_msg(strstr(out, "\r\033[Kcollect: ") != NULL, "no progress line: %s", out);
    ck_assert_msg(strstr(out, " done, ") && strstr(out, " failed, ") &&
                      strstr(out, " remaining, ") && strstr(out, " hosts/s"),
                  "progress line lacks done/failed/remaining/rate: %s", out);
    ck_assert_msg(strstr(out, "failed down.test: ") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "collect: 2 hosts, 1 ok, 1 failed") != NULL, "%s", out);
    /* Plain "ok HOST" lines are for pipes, not terminals. */
    ck_assert_msg(strstr(out, "ok good.test") == NULL, "%s", out);
    tu_peer_stop(&pr);
}
END_TEST

START_TEST(test_collect_interrupted_says_so_and_exits_4)
{
    const char *specs[] = {"silent,silent.test", NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("silent.test", 1, pr.ports[0]);
    write_config("\"connect_timeout\": 60, \"timeout\": 120, \"log_level\": \"debug\"");
    const char *log_path = tu_path(dir, "collect.log");
    pid_t pid = tlsgate_start("collect", "collect.log", true);
    ck_assert(tu_wait_file_contains(log_path, "inventory: 1 hosts scheduled", 20000));
    kill(pid, SIGINT);
    int rc = tu_wait_exit(pid, 30000);
    char *log = tu_read_file(log_path, NULL);
    ck_assert_msg(rc == 4 && strstr(log, "collect: interrupted; 1 hosts not polled"), "exit %d\n%s",
                  rc, log);
    ck_assert_ptr_nonnull(strstr(log, "host=silent.test transfer abandoned at shutdown"));
    free(log);
    tu_peer_stop(&pr);
}
END_TEST

START_TEST(test_collect_refuses_missing_tls_config_with_exit_3)
{
    tu_write_file(config_path, "{\"timeout\": 3}", 14);
    add_host("good.test", 1, tu_closed_port());
    char *err = NULL;
    ck_assert_int_eq(collect(NULL, &err, NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "tls.ca is not set"));
    free(err);
    write_config("\"concurrency\": 1");
    char *argv_cfg = strdup(config_path);
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s/nope.pem\", \"cert\": \"x\", \"key\": "
             "\"y\"}}",
             certs);
    tu_write_file(config_path, buf, strlen(buf));
    ck_assert_int_eq(collect(NULL, &err, NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "nope.pem"));
    free(err);
    free(argv_cfg);
    /* An unknown host for --host is bad input too. */
    write_config(NULL);
    ck_assert_int_eq(collect(NULL, &err, "nosuch.test"), 3);
    ck_assert_ptr_nonnull(strstr(err, "no host named 'nosuch.test'"));
    free(err);
}
END_TEST

START_TEST(test_collect_without_database_exits_4)
{
    char *err = NULL;
    ck_assert_int_eq(tu_tlsgate(tu_path(dir, "missing.db"), NULL, &err, "--config", config_path,
                                "collect", NULL),
                     4);
    ck_assert_ptr_nonnull(strstr(err, "tlsgate init"));
    free(err);
}
END_TEST

/* ---------------------------------------------------------------- daemon */

START_TEST(test_daemon_sigterm_abandons_hung_transfers_and_exits_zero)
{
    const char *good = write_report("good.json", "good.test", 60, NULL);
    const char *specs[] = {tu_peer_spec("good,good.test", good), "silent,silent.test",
                           "slow,slow.test", NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("good.test", 1, pr.ports[0]);
    add_host("silent.test", 1, pr.ports[1]);
    add_host("slow.test", 1, pr.ports[2]);
    /* Long timeouts: the shutdown grace, not the transfer timeout, must end them. */
    write_config("\"interval\": 3600, \"jitter\": 0, \"connect_timeout\": 60, \"timeout\": 120, "
                 "\"log_level\": \"debug\"");
    pid_t d = daemon_start("daemon.log");
    assert_daemon(tu_wait_db_int(db, "SELECT count(*) FROM report", NULL, 1, 20000),
                  "no report stored");
    char *log = daemon_stop(d);
    ck_assert_ptr_nonnull(strstr(log, "transfer abandoned at shutdown"));
    ck_assert_ptr_nonnull(strstr(log, "daemon stopped"));
    ck_assert_ptr_null(strstr(log, "did not close cleanly"));
    /* Log lines carry time, level, host and event. */
    ck_assert_ptr_nonnull(strstr(log, "debug host=good.test report stored"));
    free(log);
    tu_peer_stop(&pr);
}
END_TEST

START_TEST(test_daemon_second_sigterm_keeps_the_grace_bound)
{
    const char *good = write_report("good.json", "good.test", 60, NULL);
    const char *specs[] = {tu_peer_spec("good,good.test", good), "silent,silent.test", NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("good.test", 1, pr.ports[0]);
    add_host("silent.test", 1, pr.ports[1]);
    /* Transfer timeouts far beyond the wait below: only the grace timer can end silent.test. */
    write_config("\"interval\": 3600, \"jitter\": 0, \"connect_timeout\": 90, \"timeout\": 120");
    pid_t d = daemon_start("daemon.log");
    assert_daemon(tu_wait_db_int(db, "SELECT count(*) FROM report", NULL, 1, 20000),
                  "no report stored");
    kill(d, SIGTERM);
    assert_daemon(tu_wait_file_contains(tu_path(dir, "daemon.log"), "SIGTERM: stopping", 10000),
                  "first SIGTERM not seen");
    /* An impatient operator (or systemd's second signal) must not lift the bound. */
    kill(d, SIGTERM);
    int rc = tu_wait_exit(d, 30000);
    if (rc < 0)
        kill(d, SIGKILL), waitpid(d, NULL, 0);
    char *log = tu_read_file(tu_path(dir, "daemon.log"), NULL);
    ck_assert_msg(rc == 0, "daemon exit %d\n%s", rc, log);
    ck_assert_ptr_nonnull(strstr(log, "host=silent.test transfer abandoned at shutdown"));
    free(log);
    tu_peer_stop(&pr);
}
END_TEST

/* A daemon that cannot load its inventory and catalog at start has nothing to do: it says why
 * and exits 4 instead of idling forever with no host scheduled. */
START_TEST(test_daemon_exits_4_when_its_first_load_fails)
{
    add_host("good.test", 1, tu_closed_port());
    struct store *s = open_db();
    ck_assert_int_eq(store_meta_set(s, "catalog", "{\"catalog\": \"not-a-catalog\"}"), 0);
    store_close(s);
    pid_t d = daemon_start("daemon.log");
    int rc = tu_wait_exit(d, 20000);
    if (rc < 0)
        kill(d, SIGKILL), waitpid(d, NULL, 0);
    char *log = tu_read_file(tu_path(dir, "daemon.log"), NULL);
    ck_assert_msg(rc == 4, "daemon exit %d\n%s", rc, log);
    ck_assert_msg(strstr(log, "stored catalog") != NULL, "%s", log);
    free(log);
}
END_TEST

START_TEST(test_daemon_sighup_polls_new_hosts_and_drops_removed)
{
    const char *a = write_report("a.json", "fleet00.test", 60, NULL);
    const char *b = write_report("b.json", "fleet01.test", 60, NULL);
    const char *specs[] = {tu_peer_spec("good,fleet00.test", a),
                           tu_peer_spec("good,fleet01.test", b), NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("fleet00.test", 1, pr.ports[0]);
    pid_t d = daemon_start("daemon.log");
    assert_daemon(tu_wait_db_int(db, "SELECT count(*) FROM report", NULL, 1, 20000),
                  "no report stored");
    /* A broken config file on SIGHUP: refused by name, the daemon keeps running as it was. */
    tu_write_file(config_path, "{\"interval\": \"soon\"}", 20);
    kill(d, SIGHUP);
    assert_daemon(tu_wait_file_contains(tu_path(dir, "daemon.log"),
                                        "SIGHUP: keeping the old settings", 20000),
                  "broken config not reported");
    write_config("\"interval\": 3600, \"jitter\": 0");
    add_host("fleet01.test", 1, pr.ports[1]);
    struct store *s = open_db();
    ck_assert_int_eq(store_exec(s, "DELETE FROM host WHERE name = 'fleet00.test'"), 0);
    store_close(s);
    kill(d, SIGHUP);
    assert_daemon(tu_wait_db_int(db,
                                 "SELECT count(*) FROM report r JOIN host h ON h.id = r.host_id "
                                 "WHERE h.name = ?",
                                 "fleet01.test", 1, 20000),
                  "new host not polled after SIGHUP");
    char *log = daemon_stop(d);
    ck_assert_ptr_nonnull(strstr(log, "SIGHUP: settings and inventory reloaded"));
    ck_assert_ptr_nonnull(strstr(log, "inventory: 1 hosts scheduled"));
    free(log);
    tu_peer_stop(&pr);
}
END_TEST

/* A SIGHUP that changes the fleet CA applies to every later connection: a collector whose
 * certificate the new CA did not sign is refused, even though a TLS session with it was set up
 * under the old CA (resuming it would skip the certificate check). */
START_TEST(test_daemon_sighup_with_a_new_ca_does_not_resume_old_sessions)
{
    char *other = tu_tmpdir();
    char *argv[] = {(char *)tu_source_path("tools/gen-certs"), other, "fleet05.test", NULL};
    ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
    const char *good = write_report("good.json", "good.test", 60, NULL);
    const char *specs[] = {tu_peer_spec("good,good.test", good), NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("good.test", 1, pr.ports[0]);
    write_config("\"interval\": 1, \"jitter\": 0");
    pid_t d = daemon_start("daemon.log");
    assert_daemon(tu_wait_db_int(db, "SELECT count(*) FROM poll WHERE last_success_at IS NOT NULL",
                                 NULL, 1, 20000),
                  "no report stored");
    /* The other CA only; the daemon's own certificate stays (the collector checks it). */
    char buf[8192];
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s/ca.pem\", \"cert\": \"%s/orchestrator.pem\", "
             "\"key\": \"%s/orchestrator.key\"}, \"interval\": 1, \"jitter\": 0, "
             "\"connect_timeout\": 2, \"timeout\": 3}",
             other, certs, certs);
    tu_write_file(config_path, buf, strlen(buf));
    kill(d, SIGHUP);
    assert_daemon(tu_wait_file_contains(tu_path(dir, "daemon.log"), "SIGHUP: settings", 10000),
                  "SIGHUP not applied");
    assert_daemon(tu_wait_db_int(db,
                                 "SELECT count(*) FROM poll WHERE last_error LIKE '%certificate%'",
                                 NULL, 1, 15000),
                  "the collector was still trusted under the new CA");
    kill(d, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(d, 30000), 0);
    tu_peer_stop(&pr);
    tu_rmtree(other);
    free(other);
}
END_TEST

START_TEST(test_daemon_judges_by_a_catalog_loaded_while_it_runs)
{
    const char *a = write_report("a.json", "fleet00.test", 60, NULL);
    const char *specs[] = {tu_peer_spec("good,fleet00.test", a), NULL};
    struct tu_peer pr;
    tu_peer_start(&pr, certs, specs);
    add_host("fleet00.test", 1, pr.ports[0]);
    write_config("\"interval\": 1, \"jitter\": 0");
    pid_t d = daemon_start("daemon.log");
    assert_daemon(tu_wait_db_int(db, "SELECT count(*) FROM report", NULL, 1, 20000),
                  "no report stored");

    /* What `tlsgate rules load` does: a new catalog becomes the store's active one. */
    json_error_t je;
    json_t *cat = json_load_file(tu_source_path("schema/rules.json"), 0, &je);
    ck_assert_msg(cat != NULL, "rules.json: %s", je.text);
    json_object_set_new(cat, "version", json_string("2099.12.7"));
    char *text = json_dumps(cat, JSON_COMPACT);
    json_decref(cat);
    struct rules_catalog *c;
    char err[512];
    ck_assert_msg(rules_load(text, strlen(text), "new", &c, err, sizeof(err)) == 0, "%s", err);
    struct store *s = open_db();
    ck_assert_int_eq(store_begin(s, true), 0);
    ck_assert_int_eq(rules_store_active(s, c, text), 0);
    ck_assert_int_eq(store_commit(s), 0);
    store_close(s);
    rules_free(c);
    free(text);

    assert_daemon(tu_wait_db_int(db, "SELECT count(*) FROM report WHERE catalog_version = ?",
                                 "2099.12.7", 1, 20000),
                  "the new catalog was not used");
    kill(d, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(d, 30000), 0);
    char *log = tu_read_file(tu_path(dir, "daemon.log"), NULL);
    ck_assert_ptr_nonnull(strstr(log, "rule catalog 2099.12.7 now in use"));
    free(log);
    tu_peer_stop(&pr);
}
END_TEST

/* A server that reports SSL 3.0 / TLS 1.0 / 1.1 disabled while a dependent cannot do TLS 1.2 is
 * an orphan risk: the daemon says so in its log, once, and says when it is cleared. */
START_TEST(test_daemon_logs_orphan_risk_and_its_clearing)
{
    int mp_port, client_port;
    /* The Server 2019 fixture has the legacy protocols disabled server-side. */
    pid_t mp = collector_start("fleet00.test", NULL, "server2019-site-server", &mp_port);
    pid_t cl = collector_start("fleet01.test", NULL, "win7-sp1-x64-unpatched", &client_port);
    add_host("fleet00.test", 1 << 4 /* management_point */, mp_port);
    add_host("fleet01.test", 1 /* client */, client_port);
    write_config("\"interval\": 1, \"jitter\": 0");
    pid_t d = daemon_start("daemon.log");
    const char *log = tu_path(dir, "daemon.log");
    assert_daemon(tu_wait_file_contains(log,
                                        "host=fleet00.test ORPHAN RISK: legacy protocols "
                                        "disabled while 1 dependent(s) cannot use TLS 1.2",
                                        30000),
                  "no orphan risk logged");

    /* Waiving the client (an accepted risk) clears it at the next watch. */
    char *err = NULL;
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "waive", "fleet01.test", "--reason", "test", NULL),
                     0);
    free(err);
    assert_daemon(tu_wait_file_contains(log, "host=fleet00.test orphan risk cleared", 30000),
                  "orphan risk not cleared");
    kill(d, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(d, 30000), 0);
    char *text = tu_read_file(log, NULL);
    int flagged = 0;
    for (const char *q = text; (q = strstr(q, "ORPHAN RISK")); q++)
        flagged++;
    ck_assert_int_eq(flagged, 1); /* logged when it starts, not at every watch */
    free(text);
    kill(mp, SIGTERM);
    kill(cl, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(mp, 10000), 0);
    ck_assert_int_eq(tu_wait_exit(cl, 10000), 0);
}
END_TEST

/* Every stored report is whole: valid JSON, and its summary columns agree with its verdicts. */
static void assert_store_consistent(void)
{
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM pragma_integrity_check WHERE "
                               "integrity_check <> 'ok'",
                               NULL),
                     0);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM report WHERE NOT json_valid(body)", NULL),
                     0);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM report r WHERE r.blockers <> (SELECT "
                               "count(*) FROM verdict v WHERE v.host_id = r.host_id AND v.pass = "
                               "0 AND v.severity = 'blocker') OR r.warnings <> (SELECT count(*) "
                               "FROM verdict v WHERE v.host_id = r.host_id AND v.pass = 0 AND "
                               "v.severity = 'warning') OR NOT EXISTS (SELECT 1 FROM verdict v "
                               "WHERE v.host_id = r.host_id)",
                               NULL),
                     0);
}

/* fleet00.test .. fleet19.test in the inventory, each served by peer.py with its own report
 * (changed by `odd_change` for the odd ones, when not NULL). */
static void start_fleet(struct tu_peer *pr, void (*odd_change)(json_t *))
{
    char specs_buf[20][4200];
    const char *specs[21];
    for (int i = 0; i < 20; i++) {
        char name[32], file[32];
        snprintf(name, sizeof(name), "fleet%02d.test", i);
        snprintf(file, sizeof(file), "fleet%02d.json", i);
        const char *path = write_report(file, name, 60, i % 2 ? odd_change : NULL);
        snprintf(specs_buf[i], sizeof(specs_buf[i]), "good,%s,%s", name, path);
        specs[i] = specs_buf[i];
    }
    specs[20] = NULL;
    tu_peer_start(pr, certs, specs);
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof(name), "fleet%02d.test", i);
        add_host(name, 1, pr->ports[i]);
    }
}

START_TEST(test_daemon_killed_mid_round_restarts_with_a_whole_store)
{
    /* 20 hosts spread over 20 s (jitter 1 x interval 20): the kill lands mid-round. */
    struct tu_peer pr;
    start_fleet(&pr, make_unpatched);
    write_config("\"interval\": 20, \"jitter\": 1, \"concurrency\": 4");
    pid_t d = daemon_start("daemon.log");
    assert_daemon(tu_wait_db_int(db, "SELECT count(*) FROM report", NULL, 1, 30000),
                  "no report stored");
    kill(d, SIGKILL);
    ck_assert_int_eq(tu_wait_exit(d, 10000), 128 + SIGKILL);
    long long stored = tu_db_int(db, "SELECT count(*) FROM report", NULL);
    ck_assert_int_lt(stored, 20);
    assert_store_consistent();

    /* The daemon restarted (hosts never polled are due at once now): the round completes. */
    write_config("\"interval\": 20, \"jitter\": 0, \"concurrency\": 4");
    d = daemon_start("daemon2.log");
    bool all = tu_wait_db_int(db, "SELECT count(*) FROM report", NULL, 20, 30000);
    kill(d, SIGTERM);
    int rc = tu_wait_exit(d, 30000);
    char *log = tu_read_file(tu_path(dir, "daemon2.log"), NULL);
    ck_assert_msg(all && rc == 0, "restarted daemon: exit %d, all stored %d\n%s", rc, all, log);
    free(log);
    ck_assert_int_eq(
        tu_db_int(db, "SELECT count(*) FROM poll WHERE last_success_at IS NOT NULL", NULL), 20);
    assert_store_consistent();
    tu_peer_stop(&pr);
}
END_TEST

START_TEST(test_cli_writers_during_daemon_writes_never_see_locked)
{
    struct tu_peer pr;
    start_fleet(&pr, NULL);
    /* interval 1: the daemon writes all the time. */
    write_config("\"interval\": 1, \"jitter\": 0, \"concurrency\": 8");
    pid_t d = daemon_start("daemon.log");
    assert_daemon(tu_wait_db_int(db, "SELECT count(*) FROM report", NULL, 20, 30000),
                  "not every host stored");
    for (int round = 0; round < 3; round++) {
        /* Two rounds of `collect` and an `inventory import` (a new host each time), at once. */
        char csv[256];
        snprintf(csv, sizeof(csv),
                 "name,site,roles,collector,os\nextra%d.test,S01,client,127.0.0.1:%d,\n", round,
                 tu_closed_port());
        const char *csv_path = tu_path(dir, "extra.csv");
        tu_write_file(csv_path, csv, strlen(csv));
        char *csv_copy = strdup(csv_path);
        pid_t kids[3];
        for (int k = 0; k < 3; k++) {
            kids[k] = fork();
            ck_assert_int_ge(kids[k], 0);
            if (kids[k] == 0) {
                char *out = NULL, *err = NULL;
                int rc = k < 2 ? collect(&out, &err, NULL)
                               : tu_tlsgate(db, &out, &err, "inventory", "import", csv_copy, NULL);
                bool locked = (err && strstr(err, "locked")) || (out && strstr(out, "locked"));
                if (rc != 0 || locked)
                    fprintf(stderr, "writer %d: exit %d\n%s\n%s\n", k, rc, out, err);
                _exit(rc != 0 || locked ? 1 : 0);
            }
        }
        free(csv_copy);
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(tu_wait_exit(kids[k], 60000), 0);
    }
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host WHERE name LIKE 'extra%'", NULL), 3);
    char *log = daemon_stop(d);
    ck_assert_ptr_null(strstr(log, "locked"));
    free(log);
    assert_store_consistent();
    tu_peer_stop(&pr);
}
END_TEST

static Suite *poll_suite(void)
{
    Suite *s = suite_create("poll");
    tu_tcase(s, "schedule", NULL, NULL,
             TU_TESTS(test_first_poll_is_spread_by_a_stable_per_host_offset,
                      test_failures_back_off_exponentially_up_to_backoff_max));

    TCase *tc = tu_tcase(s, "processes", setup, teardown,
                         TU_TESTS(test_round_over_real_collectors_stores_the_right_states,
                                  test_collect_stores_reports_and_poll_state,
                                  test_misbehaving_collectors_are_each_recorded_with_a_reason,
                                  test_collector_certificate_from_another_ca_is_refused,
                                  test_collect_refuses_a_key_that_is_not_the_certificates,
                                  test_collect_refuses_a_key_others_can_read,
                                  test_reasons_quoting_a_report_carry_no_control_characters,
                                  test_busy_store_keeps_the_batch_and_retries_it,
                                  test_collect_on_a_terminal_draws_a_progress_line,
                                  test_collect_interrupted_says_so_and_exits_4,
                                  test_collect_refuses_missing_tls_config_with_exit_3,
                                  test_collect_without_database_exits_4,
                                  test_daemon_sigterm_abandons_hung_transfers_and_exits_zero,
                                  test_daemon_second_sigterm_keeps_the_grace_bound,
                                  test_daemon_exits_4_when_its_first_load_fails,
                                  test_daemon_sighup_polls_new_hosts_and_drops_removed,
                                  test_daemon_sighup_with_a_new_ca_does_not_resume_old_sessions,
                                  test_daemon_judges_by_a_catalog_loaded_while_it_runs,
                                  test_daemon_logs_orphan_risk_and_its_clearing,
                                  test_daemon_killed_mid_round_restarts_with_a_whole_store,
                                  test_cli_writers_during_daemon_writes_never_see_locked));
    tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
    tcase_set_timeout(tc, 120);
    return s;
}

int main(void) { return tu_run_suite(poll_suite()); }

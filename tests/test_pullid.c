/*
 * test_pullid.c — what the puller knows of each collector's certificate (issue 12): the
 * fingerprint, issuer, serial and expiry recorded at every pull, 'seen' identities, a revoked
 * certificate refused (by `collect` and by a running daemon whose session to the host resumes),
 * a certificate change logged and shown (warn-and-accept on the estate's PKI, held on an
 * enrolled host and with cert_change "hold", released by clearing cert_changed_at as
 * `tlsgate enroll accept` does), and the daemon's once-a-day expiry warning on a pinned clock.
 *
 * Real processes on loopback: the tlsgate binary, the real tlsgate-collector serving a .reg
 * fixture, certificates from tools/gen-certs (a re-issue is the same name with a new key), a
 * real database file. The expected fingerprints, serials and dates come from the openssl CLI,
 * not from the code under test. Waits are on conditions with deadlines.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "testutil.h"

#define HOST "pc1.pullid.test"
#define DEADLINE_MS 30000

static char *dir;
static char *certs;
static char db[4096];
static char config_path[4096];

static void gen_certs(void)
{
    const char *names[] = {HOST, NULL};
    ck_assert_int_eq(tu_gen_certs(certs, names), 0);
}

static void write_config(const char *extra)
{
    char buf[8192];
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s/ca.pem\", \"cert\": \"%s/orchestrator.pem\", "
             "\"key\": \"%s/orchestrator.key\"}, \"connect_timeout\": 5, \"timeout\": 10, "
             "\"interval\": 1, \"jitter\": 0, \"backoff_max\": 1%s%s}",
             certs, certs, certs, extra ? ", " : "", extra ? extra : "");
    tu_write_file(config_path, buf, strlen(buf));
}

static void setup(void)
{
    dir = tu_tmpdir();
    certs = strdup(tu_path(dir, "certs"));
    gen_certs();
    snprintf(db, sizeof(db), "%s", tu_path(dir, "t.db"));
    snprintf(config_path, sizeof(config_path), "%s", tu_path(dir, "config.json"));
    write_config(NULL);
    char *err = NULL;
    int rc = tu_tlsgate(db, NULL, &err, "init", NULL);
    ck_assert_msg(rc == 0, "init: %s", err);
    free(err);
}

static void teardown(void)
{
    unsetenv("TLSGATE_NOW");
    tu_rmtree(dir);
    free(dir);
    free(certs);
}

/* ---------------------------------------------------------------- helpers */

/* The real collector for HOST on `listen` ("127.0.0.1:0" or a port to reuse). */
static pid_t collector_start(const char *listen, uint16_t *port)
{
    char cert[4096], key[4096], ca[4096], reg[4096];
    snprintf(cert, sizeof(cert), "%s", tu_cert_path(certs, HOST, "pem"));
    snprintf(key, sizeof(key), "%s", tu_cert_path(certs, HOST, "key"));
    snprintf(ca, sizeof(ca), "%s", tu_cert_path(certs, "ca", "pem"));
    snprintf(reg, sizeof(reg), "%s", tu_source_path("tests/fixtures/reg/win10-22h2.reg"));
    const char *args[] = {"--listen", listen, "--cert",    cert, "--key", key,
                          "--ca",     ca,     "--regfile", reg,  NULL};
    return tu_collector_start(args, tu_path(dir, "collector.err"), DEADLINE_MS, port);
}

static void collector_stop(pid_t pid)
{
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_int_eq(tu_wait_exit(pid, DEADLINE_MS), 0);
}

/* HOST re-issued (same CA and name, a new key) and its collector restarted on the same port. */
static pid_t reissue(pid_t old, uint16_t port)
{
    collector_stop(old);
    gen_certs();
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    uint16_t again = 0;
    pid_t pid = collector_start(listen, &again);
    ck_assert_uint_eq(again, port);
    return pid;
}

static void add_host(uint16_t port)
{
    struct store *s = fx_open(db);
    char collector[64];
    snprintf(collector, sizeof(collector), "127.0.0.1:%u", port);
    fx_site(s, "S01", "inventory");
    fx_host_bare(s, HOST, "S01", 1, collector);
    store_close(s);
}

static void sql(const char *fmt, ...)
{
    struct store *s = fx_open(db);
    char q[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    fx_sql(s, "%s", q);
    store_close(s);
}

/* The one text `sql` answers (malloc'd; NULL for SQL NULL); ck_abort when there is no row. */
static char *db_text(const char *query)
{
    struct store *s = fx_open(db);
    sqlite3_stmt *st;
    ck_assert_msg(store_prepare(s, query, &st) == 0, "%s", store_errmsg(s));
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    const char *t = (const char *)sqlite3_column_text(st, 0);
    char *v = t ? strdup(t) : NULL;
    sqlite3_finalize(st);
    store_close(s);
    return v;
}

static long long db_int(const char *query) { return tu_db_int(db, query, NULL); }

/* `openssl x509 -noout OPTION -in FILE`, the text after '=' (trimmed, malloc'd). */
static char *openssl_x509(const char *file, const char *option)
{
    char *argv[] = {"/usr/bin/env", "openssl", "x509",       "-noout", "-sha256",
                    (char *)option, "-in",     (char *)file, NULL};
    char *out = NULL, *err = NULL;
    ck_assert_msg(tu_run(argv, NULL, &out, &err) == 0, "openssl: %s", err);
    free(err);
    char *eq = strchr(out, '=');
    ck_assert_ptr_nonnull(eq);
    char *v = strdup(eq + 1);
    free(out);
    v[strcspn(v, "\r\n")] = '\0';
    return v;
}

/* The SHA-256 fingerprint of HOST's certificate file, lower-case hex without colons. */
static char *expected_fingerprint(void)
{
    char *f = openssl_x509(tu_cert_path(certs, HOST, "pem"), "-fingerprint");
    char *o = f;
    for (char *i = f; *i; i++)
        if (*i != ':')
            *o++ = (char)(*i >= 'A' && *i <= 'F' ? *i - 'A' + 'a' : *i);
    *o = '\0';
    ck_assert_uint_eq(strlen(f), 64);
    return f;
}

static long long expected_not_after(void)
{
    char *d = openssl_x509(tu_cert_path(certs, HOST, "pem"), "-enddate");
    struct tm tm = {0};
    ck_assert_ptr_nonnull(strptime(d, "%b %d %H:%M:%S %Y GMT", &tm));
    free(d);
    return (long long)timegm(&tm);
}

/* One `tlsgate collect` round; returns its exit code, stdout and stderr in *out / *err. */
static int collect(char **out, char **err)
{
    return tu_tlsgate(db, out, err, "--config", config_path, "collect", NULL);
}

static void collect_expect(bool ok, char **err_out)
{
    char *out = NULL, *err = NULL;
    int rc = collect(&out, &err);
    const char *want = ok ? "collect: 1 hosts, 1 ok, 0 failed" : "collect: 1 hosts, 0 ok, 1 failed";
    ck_assert_msg(strstr(out, want) != NULL, "collect exit %d, want \"%s\":\n%s\n%s", rc, want, out,
                  err);
    free(out);
    if (err_out)
        *err_out = err;
    else
        free(err);
}

static char *tlsgate_out(const char *a1, const char *a2, const char *a3, const char *a4)
{
    char *out = NULL, *err = NULL;
    int rc = tu_tlsgate(db, &out, &err, "--config", config_path, a1, a2, a3, a4, NULL);
    ck_assert_msg(rc == 0, "%s %s: exit %d: %s", a1, a2, rc, err);
    free(err);
    return out;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Reports stored since the last forget_reports(): a pull that stored one sets received_at. */
#define REPORTS "SELECT count(*) FROM report WHERE received_at > 0"
static void forget_reports(void) { sql("UPDATE report SET received_at = 0"); }

#define POLL_COL(c) "SELECT " c " FROM poll"

/* Runs the daemon until `pulls` pulls stored a report, the clock pinned at `now` when not 0;
 * returns the daemon's log (malloc'd). With the clock pinned the host is due once per run (its
 * next_at is now + interval): one pull per run. */
static char *daemon_pulls(long long now, int pulls)
{
    char t[32];
    snprintf(t, sizeof(t), "%lld", now);
    if (now)
        setenv("TLSGATE_NOW", t, 1);
    forget_reports();
    pid_t d = tu_tlsgate_start(db, config_path, "daemon", tu_path(dir, "daemon.log"), true);
    bool pulled = true;
    for (int i = 0; i < pulls && pulled; i++) {
        if (i)
            forget_reports();
        pulled = tu_wait_db_int(db, REPORTS, NULL, 1, DEADLINE_MS);
    }
    kill(d, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(d, DEADLINE_MS), 0);
    unsetenv("TLSGATE_NOW");
    char *log = tu_read_file(tu_path(dir, "daemon.log"), NULL);
    ck_assert_msg(pulled, "no pull at %s; daemon log:\n%s", t, log);
    return log;
}

static char *daemon_at(long long now) { return daemon_pulls(now, 1); }

/* ---------------------------------------------------------------- recording */

START_TEST(test_pull_records_fingerprint_issuer_serial_and_expiry_of_the_certificate)
{
    uint16_t port;
    pid_t c = collector_start("127.0.0.1:0", &port);
    add_host(port);
    collect_expect(true, NULL);

    char *fp = expected_fingerprint();
    char *got = db_text(POLL_COL("cert_fingerprint"));
    ck_assert_str_eq(got, fp);
    free(got);
    got = db_text(POLL_COL("cert_issuer"));
    ck_assert_str_eq(got, "CN=tlsgate fleet CA");
    free(got);
    ck_assert_int_eq(db_int(POLL_COL("cert_not_after")), expected_not_after());
    ck_assert_int_eq(db_int(POLL_COL("cert_changed_at IS NULL")), 1);

    /* A certificate never seen before: one identity row, source 'seen', with the serial. */
    ck_assert_int_eq(db_int("SELECT count(*) FROM identity"), 1);
    got = db_text("SELECT fingerprint || ' ' || name || ' ' || source FROM identity");
    char want[256];
    snprintf(want, sizeof(want), "%s %s seen", fp, HOST);
    ck_assert_str_eq(got, want);
    free(got);
    char *serial = openssl_x509(tu_cert_path(certs, HOST, "pem"), "-serial");
    for (char *i = serial; *i; i++)
        *i = (char)(*i >= 'A' && *i <= 'F' ? *i - 'A' + 'a' : *i);
    while (serial[0] == '0' && serial[1]) /* BN_bn2hex drops leading zero bytes */
        memmove(serial, serial + 1, strlen(serial));
    got = db_text("SELECT ltrim(serial, '0') FROM identity");
    ck_assert_str_eq(got, serial);
    free(got);
    free(serial);
    ck_assert_int_eq(db_int("SELECT not_after FROM identity"), expected_not_after());

    /* The same certificate again: no second row, no change. */
    collect_expect(true, NULL);
    ck_assert_int_eq(db_int("SELECT count(*) FROM identity"), 1);
    ck_assert_int_eq(db_int(POLL_COL("cert_changed_at IS NULL")), 1);

    /* host show (text, JSON) and poll status (JSON) show it. */
    char *out = tlsgate_out("host", "show", HOST, NULL);
    ck_assert_msg(strstr(out, fp) && strstr(out, "issuer CN=tlsgate fleet CA"), "%s", out);
    ck_assert_msg(!strstr(out, "CHANGED"), "%s", out);
    free(out);
    out = tlsgate_out("--json", "host", "show", HOST);
    snprintf(want, sizeof(want), "\"cert_fingerprint\": \"%s\"", fp);
    ck_assert_msg(strstr(out, want) && strstr(out, "\"cert_changed_at\": null"), "%s", out);
    free(out);
    out = tlsgate_out("--json", "poll", "status", NULL);
    snprintf(want, sizeof(want), "\"cert_fingerprint\":\"%s\"", fp);
    ck_assert_msg(strstr(out, want), "%s", out);
    free(out);
    free(fp);
    collector_stop(c);
}
END_TEST

/* ---------------------------------------------------------------- revocation */

START_TEST(test_revoked_certificate_is_refused_and_its_report_not_ingested)
{
    uint16_t port;
    pid_t c = collector_start("127.0.0.1:0", &port);
    add_host(port);
    collect_expect(true, NULL);
    ck_assert_int_eq(db_int(REPORTS), 1);
    forget_reports();
    sql("UPDATE identity SET revoked_at = 1700000000, revoked_by = 'test'");

    collect_expect(false, NULL);
    ck_assert_int_eq(db_int(REPORTS), 0);
    char *e = db_text(POLL_COL("last_error"));
    char *fp = expected_fingerprint();
    ck_assert_msg(!strncmp(e, "certificate revoked: fingerprint ", 33) && strstr(e, fp), "%s", e);
    free(e);
    free(fp);
    char *out = tlsgate_out("--json", "poll", "status", NULL);
    ck_assert_msg(strstr(out, "\"error_kind\":\"cert_revoked\"") &&
                      strstr(out, "\"kind\":\"cert_revoked\",\"label\":\"certificate revoked\""),
                  "%s", out);
    free(out);
    out = tlsgate_out("host", "show", HOST, NULL);
    ck_assert_msg(strstr(out, "last error: certificate revoked: "), "%s", out);
    free(out);

    /* A new certificate for the name (not revoked) is pulled again. */
    c = reissue(c, port);
    collect_expect(true, NULL);
    ck_assert_int_eq(db_int(REPORTS), 1);
    collector_stop(c);
}
END_TEST

START_TEST(test_running_daemon_refuses_the_next_pull_after_a_revocation_despite_resumption)
{
    uint16_t port;
    pid_t c = collector_start("127.0.0.1:0", &port);
    add_host(port);
    write_config("\"log_level\": \"debug\"");
    pid_t d = tu_tlsgate_start(db, config_path, "daemon", tu_path(dir, "daemon.log"), true);
    /* Pulls every second; a later pull resumes the first one's session (tlsctx.h). Two reports
     * deleted and stored again: at least two pulls after the first. */
    ck_assert(tu_wait_db_int(db, REPORTS, NULL, 1, DEADLINE_MS));
    for (int i = 0; i < 2; i++) {
        forget_reports();
        ck_assert(tu_wait_db_int(db, REPORTS, NULL, 1, DEADLINE_MS));
    }
    sql("UPDATE identity SET revoked_at = 1700000000, revoked_by = 'test'");
    forget_reports();
    ck_assert(tu_wait_db_int(
        db,
        "SELECT count(*) FROM poll WHERE last_error LIKE 'certificate revoked:%' AND failures >= 3",
        NULL, 1, DEADLINE_MS));
    ck_assert_int_eq(db_int(REPORTS), 0);
    kill(d, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(d, DEADLINE_MS), 0);
    char *log = tu_read_file(tu_path(dir, "daemon.log"), NULL);
    ck_assert_msg(strstr(log, "failed (1 in a row): certificate revoked: "), "%s", log);
    free(log);
    collector_stop(c);
}
END_TEST

/* ---------------------------------------------------------------- change */

START_TEST(test_certificate_change_on_the_estate_pki_is_logged_shown_and_accepted_by_default)
{
    uint16_t port;
    pid_t c = collector_start("127.0.0.1:0", &port);
    add_host(port);
    collect_expect(true, NULL);
    char *old = expected_fingerprint();
    c = reissue(c, port);
    char *fp = expected_fingerprint();
    ck_assert_str_ne(old, fp);
    /* The daemon logs it (collect logs errors only); the report is stored: warn and accept. */
    char *err = daemon_pulls(0, 1);
    char want[512];
    snprintf(want, sizeof(want),
             "collector certificate changed, not through enrollment: fingerprint %s "
             "(issuer CN=tlsgate fleet CA) replaces %s",
             fp, old);
    ck_assert_msg(strstr(err, want), "%s", err);
    free(err);
    ck_assert_int_eq(db_int(POLL_COL("cert_changed_at IS NOT NULL")), 1);
    char *got = db_text(POLL_COL("cert_fingerprint"));
    ck_assert_str_eq(got, fp);
    free(got);
    ck_assert_int_eq(db_int("SELECT count(*) FROM identity WHERE source = 'seen'"), 2);

    char *out = tlsgate_out("host", "show", HOST, NULL);
    ck_assert_msg(strstr(out, "certificate CHANGED at ") && strstr(out, "enroll accept " HOST),
                  "%s", out);
    free(out);
    out = tlsgate_out("poll", "status", NULL, NULL);
    ck_assert_msg(strstr(out, "Z CHANGED"), "%s", out);
    free(out);
    out = tlsgate_out("export", "csv", "--view", "hosts");
    snprintf(want, sizeof(want), ",%s,CN=tlsgate fleet CA,20", fp);
    ck_assert_msg(strstr(out, want), "%s", out);
    free(out);

    /* The same new certificate again: no new warning; cert_changed_at stays until accepted. */
    long long at = db_int(POLL_COL("cert_changed_at"));
    err = daemon_pulls(0, 2);
    ck_assert_msg(!strstr(err, "certificate changed"), "%s", err);
    free(err);
    ck_assert_int_eq(db_int(POLL_COL("cert_changed_at")), at);
    free(old);
    free(fp);
    collector_stop(c);
}
END_TEST

START_TEST(test_certificate_change_is_held_with_cert_change_hold_until_accepted)
{
    write_config("\"cert_change\": \"hold\"");
    uint16_t port;
    pid_t c = collector_start("127.0.0.1:0", &port);
    add_host(port);
    collect_expect(true, NULL);
    c = reissue(c, port);
    forget_reports();
    for (int i = 0; i < 2; i++) { /* held at the change, and at the next pull */
        collect_expect(false, NULL);
        ck_assert_int_eq(db_int(REPORTS), 0);
        char *e = db_text(POLL_COL("last_error"));
        ck_assert_msg(!strncmp(e, "certificate changed: fingerprint ", 33) &&
                          strstr(e, "held until `tlsgate enroll accept " HOST "`"),
                      "%s", e);
        free(e);
    }
    char *out = tlsgate_out("--json", "poll", "status", NULL);
    ck_assert_msg(strstr(out, "\"error_kind\":\"cert_changed\""), "%s", out);
    free(out);
    /* What `tlsgate enroll accept` does to the poll row. */
    sql("UPDATE poll SET cert_changed_at = NULL");
    collect_expect(true, NULL);
    ck_assert_int_eq(db_int(REPORTS), 1);
    collector_stop(c);
}
END_TEST

START_TEST(test_enrolled_host_holds_a_certificate_from_outside_enrollment_by_default)
{
    uint16_t port;
    pid_t c = collector_start("127.0.0.1:0", &port);
    add_host(port);
    /* The first certificate is an 'enroll' identity issued for this name. */
    char *fp = expected_fingerprint();
    sql("INSERT INTO identity (fingerprint, name, source, serial, issuer, not_before, not_after, "
        "first_seen) VALUES ('%s', '%s', 'enroll', '01', 'CN=tlsgate fleet CA', 0, %lld, 1)",
        fp, HOST, expected_not_after());
    collect_expect(true, NULL);
    ck_assert_int_eq(db_int("SELECT count(*) FROM identity WHERE source = 'seen'"), 0);
    free(fp);

    /* Re-issued outside enrollment: held (the default cert_change is warn, but the host is
     * enrolled), the new certificate recorded as 'seen'. */
    c = reissue(c, port);
    forget_reports();
    collect_expect(false, NULL);
    ck_assert_int_eq(db_int(REPORTS), 0);
    char *e = db_text(POLL_COL("last_error"));
    ck_assert_msg(!strncmp(e, "certificate changed: ", 21), "%s", e);
    free(e);
    ck_assert_int_eq(db_int("SELECT count(*) FROM identity WHERE source = 'seen'"), 1);

    /* A renewal through enrollment (the next certificate is an 'enroll' identity of the name)
     * is no change: pulled, although the earlier change still waits to be accepted. */
    c = reissue(c, port);
    fp = expected_fingerprint();
    sql("INSERT INTO identity (fingerprint, name, source, serial, issuer, not_before, not_after, "
        "first_seen) VALUES ('%s', '%s', 'enroll', '02', 'CN=tlsgate fleet CA', 0, %lld, 2)",
        fp, HOST, expected_not_after());
    free(fp);
    char *err = NULL;
    collect_expect(true, &err);
    ck_assert_msg(!strstr(err, "certificate changed"), "%s", err);
    free(err);
    ck_assert_int_eq(db_int(REPORTS), 1);
    collector_stop(c);
}
END_TEST

/* ---------------------------------------------------------------- expiry warning */

START_TEST(test_daemon_warns_once_a_day_about_a_certificate_inside_cert_warn_days)
{
    uint16_t port;
    pid_t c = collector_start("127.0.0.1:0", &port);
    add_host(port);
    long long not_after = expected_not_after();
    const char *warning = "collector certificate expires ";

    /* 20 days before expiry: outside the default 14-day window. */
    char *log = daemon_at(not_after - 20 * 86400);
    ck_assert_msg(!strstr(log, warning), "%s", log);
    free(log);
    ck_assert_int_eq(db_int(POLL_COL("expiry_warned_at IS NULL")), 1);

    /* 5 days before: one warning. */
    long long t1 = not_after - 5 * 86400;
    log = daemon_at(t1);
    ck_assert_msg(count_of(log, warning) == 1 && strstr(log, "(in 5 days; cert_warn_days 14)"),
                  "%s", log);
    free(log);
    ck_assert_int_eq(db_int(POLL_COL("expiry_warned_at")), t1);

    /* Later the same day, twice: none. */
    log = daemon_at(t1 + 60);
    ck_assert_msg(!strstr(log, warning), "%s", log);
    free(log);
    log = daemon_at(t1 + 3600);
    ck_assert_msg(!strstr(log, warning), "%s", log);
    free(log);
    ck_assert_int_eq(db_int(POLL_COL("expiry_warned_at")), t1);

    /* The next day: one again. */
    log = daemon_at(t1 + 86400);
    ck_assert_msg(count_of(log, warning) == 1 && strstr(log, "(in 4 days;"), "%s", log);
    free(log);
    ck_assert_int_eq(db_int(POLL_COL("expiry_warned_at")), t1 + 86400);

    /* `collect` is not the daemon: no warning from a one-shot round. */
    char t[32];
    snprintf(t, sizeof(t), "%lld", t1 + 3 * 86400);
    setenv("TLSGATE_NOW", t, 1);
    char *err = NULL;
    collect_expect(true, &err);
    unsetenv("TLSGATE_NOW");
    ck_assert_msg(!strstr(err, warning), "%s", err);
    free(err);
    collector_stop(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pullid");
    TCase *tc = tcase_create("pullid");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_pull_records_fingerprint_issuer_serial_and_expiry_of_the_certificate);
    tcase_add_test(tc, test_revoked_certificate_is_refused_and_its_report_not_ingested);
    tcase_add_test(tc,
                   test_running_daemon_refuses_the_next_pull_after_a_revocation_despite_resumption);
    tcase_add_test(
        tc, test_certificate_change_on_the_estate_pki_is_logged_shown_and_accepted_by_default);
    tcase_add_test(tc, test_certificate_change_is_held_with_cert_change_hold_until_accepted);
    tcase_add_test(tc, test_enrolled_host_holds_a_certificate_from_outside_enrollment_by_default);
    tcase_add_test(tc, test_daemon_warns_once_a_day_about_a_certificate_inside_cert_warn_days);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}

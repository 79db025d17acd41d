/*
 * test_iissum.c — the collector's IIS log summary (collectors/iissum.c, issue 18): reordered
 * fields, comments and hostile lines in real files, the incremental read (only appended lines,
 * an unfinished line waits, a replaced file is read again), the bound on rows with a log of many
 * more clients than it holds, the window, an unreadable folder; then end to end: the real
 * tlsgate-collector serves /v1/evidence over mutual TLS (a missing folder is evidence_error in
 * /v1/health while the report is still served), and `tlsgate collect` stores the summary so a
 * legacy client seen in the IIS log blocks the server's gate until `evidence waive`.
 *
 * Real files, real processes on loopback, certificates from tools/gen-certs, a real database
 * file. The log lines are dated today (the collector's clock is the system's).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include "iissum.h"
#include "testutil.h"

#define HOST "mp1.iis.test"
#define DEADLINE_MS 30000

static char *dir;
static char logs[1024], site[1100];
static char today[16], yymmdd[16];
static long long now;

static void setup(void)
{
    dir = tu_tmpdir();
    snprintf(logs, sizeof(logs), "%.1000s", tu_path(dir, "LogFiles"));
    snprintf(site, sizeof(site), "%s/W3SVC1", logs);
    ck_assert_int_eq(mkdir(logs, 0700), 0);
    ck_assert_int_eq(mkdir(site, 0700), 0);
    now = (long long)time(NULL);
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(today, sizeof(today), "%Y-%m-%d", &tm);
    strftime(yymmdd, sizeof(yymmdd), "%y%m%d", &tm);
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

/* The path of W3SVC1/u_exYYMMDD.log of today. */
static const char *log_path(void)
{
    static char p[4200];
    snprintf(p, sizeof(p), "%s/u_ex%s.log", site, yymmdd);
    return p;
}

static void append(const char *path, const char *text)
{
    FILE *f = fopen(path, "ab");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* One request line of the header below: time, port, client, crypt-protocol. */
static void request(const char *path, const char *time, int port, const char *client,
                    const char *proto)
{
    char line[256];
    snprintf(line, sizeof(line), "%s %s 127.0.0.1 GET /SMS_MP/.sms_aut %d %s 200 %s\r\n", today,
             time, port, client, proto);
    append(path, line);
}

static const char header[] = "#Software: Microsoft Internet Information Services 10.0\r\n"
                             "#Version: 1.0\r\n"
                             "#Fields: date time s-ip cs-method cs-uri-stem s-port c-ip "
                             "sc-status crypt-protocol\r\n";

static struct iissum *open_sum(size_t max_rows)
{
    struct iissum *s;
    struct iissum_options o = {.dir = logs, .max_rows = max_rows, .window_days = 7};
    ck_assert_int_eq(iissum_new(&o, &s), 0);
    return s;
}

static void scan_ok(struct iissum *s)
{
    char err[512];
    int rc = iissum_scan(s, now, err, sizeof(err));
    ck_assert_msg(rc == 0, "scan: %d %s", rc, err);
}

static json_t *summary(struct iissum *s)
{
    size_t len;
    char *text = iissum_json(s, HOST, now, &len);
    ck_assert_ptr_nonnull(text);
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    ck_assert_msg(j != NULL, "summary is not JSON: %s", je.text);
    free(text);
    return j;
}

/* The count of the entry (client, port, protocol), 0 when absent. */
static long long entry_count(json_t *j, const char *client, int port, const char *proto)
{
    size_t i;
    json_t *e;
    long long n = 0;
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        if (!strcmp(json_string_value(json_object_get(e, "client")), client) &&
            json_integer_value(json_object_get(e, "port")) == port &&
            !strcmp(json_string_value(json_object_get(e, "protocol")), proto))
            n += json_integer_value(json_object_get(e, "count"));
    }
    return n;
}

START_TEST(test_summary_reads_any_field_order_and_counts_hostile_lines)
{
    const char *p = log_path();
    append(p, "#Software: Microsoft Internet Information Services 10.0\r\n"
              "#Fields: crypt-protocol c-ip s-port time date cs-uri-stem\r\n");
    char line[256];
    for (int i = 0; i < 3; i++) {
        snprintf(line, sizeof(line), "40 127.0.0.99 443 10:00:0%d %s /a\r\n", i, today);
        append(p, line);
    }
    snprintf(line, sizeof(line), "400 ::1 8531 11:00:00 %s /b\r\n", today);
    append(p, line);
    snprintf(line, sizeof(line), "- 127.0.0.5 80 11:00:00 %s /plain\r\n", today);
    append(p, line);
    /* hostile: a bad address, an unknown protocol, a bad date, a short line, a NUL-free junk */
    snprintf(line, sizeof(line), "40 not-an-ip 443 10:00:00 %s /a\r\n", today);
    append(p, line);
    snprintf(line, sizeof(line), "999 127.0.0.9 443 10:00:00 %s /a\r\n", today);
    append(p, line);
    append(p, "40 127.0.0.9 443 10:00:00 2026-02-30 /a\r\n");
    append(p, "40 127.0.0.9\r\n");
    /* a re-mapping #Fields: line mid-file (IIS writes one after a restart) */
    append(p, "#Fields: date time c-ip crypt-protocol\r\n");
    snprintf(line, sizeof(line), "%s 12:00:00 127.0.0.98 100\r\n", today);
    append(p, line);

    struct iissum *s = open_sum(0);
    scan_ok(s);
    json_t *j = summary(s);
    ck_assert_int_eq(entry_count(j, "127.0.0.99", 443, "tls1.0"), 3);
    ck_assert_int_eq(entry_count(j, "::1", 8531, "tls1.2"), 1);
    ck_assert_int_eq(entry_count(j, "127.0.0.98", 0, "tls1.1"), 1); /* no s-port: port 0 */
    ck_assert_int_eq(json_array_size(json_object_get(j, "entries")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "refused")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "plain")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "lines")), 13);
    ck_assert(json_is_false(json_object_get(j, "truncated")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "schema")), "tlsgate.evidence/1");
    ck_assert_str_eq(json_string_value(json_object_get(j, "host")), HOST);
    const char *last = json_string_value(json_object_get(j, "last_refused"));
    ck_assert_ptr_nonnull(strstr(last, "u_ex"));
    ck_assert_ptr_nonnull(strstr(last, ":11: the number of fields differs"));
    json_decref(j);
    iissum_free(s);
}
END_TEST

START_TEST(test_summary_reads_only_appended_lines_and_waits_for_an_unfinished_one)
{
    const char *p = log_path();
    append(p, header);
    request(p, "10:00:00", 443, "127.0.0.99", "40");
    struct iissum *s = open_sum(0);
    scan_ok(s);
    struct iissum_stats st;
    iissum_get_stats(s, &st);
    ck_assert_int_eq(st.lines, 4);

    /* IIS has written half a line: it is not read yet */
    request(p, "10:00:01", 443, "127.0.0.99", "40");
    char half[200];
    snprintf(half, sizeof(half), "%s 10:00:02 127.0.0.1 GET /SMS_MP/.sms_aut 443 127.0.0.", today);
    append(p, half);
    scan_ok(s);
    iissum_get_stats(s, &st);
    ck_assert_int_eq(st.lines, 5);
    ck_assert_int_eq(st.refused, 0);
    json_t *j = summary(s);
    ck_assert_int_eq(entry_count(j, "127.0.0.99", 443, "tls1.0"), 2);
    json_decref(j);

    /* the rest of the line arrives: counted once, nothing read twice */
    append(p, "77 200 100\r\n");
    scan_ok(s);
    iissum_get_stats(s, &st);
    ck_assert_int_eq(st.lines, 6);
    j = summary(s);
    ck_assert_int_eq(entry_count(j, "127.0.0.99", 443, "tls1.0"), 2);
    ck_assert_int_eq(entry_count(j, "127.0.0.77", 443, "tls1.1"), 1);
    json_t *files = json_object_get(j, "files");
    ck_assert_int_eq(json_array_size(files), 1);
    char name[64];
    snprintf(name, sizeof(name), "W3SVC1/u_ex%s.log", yymmdd);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(files, 0), "name")), name);
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(files, 0), "offset")),
                     sb.st_size);
    json_decref(j);

    /* a scan with nothing new changes nothing */
    scan_ok(s);
    iissum_get_stats(s, &st);
    ck_assert_int_eq(st.lines, 6);

    /* the file replaced by a shorter one is read again from its start */
    ck_assert_int_eq(unlink(p), 0);
    append(p, header);
    scan_ok(s);
    iissum_get_stats(s, &st);
    ck_assert_int_eq(st.lines, 9);
    iissum_free(s);
}
END_TEST

START_TEST(test_summary_is_bounded_and_says_truncated_on_a_log_of_many_clients)
{
    /* 200,000 lines from 2,000 client addresses (the 1,000,000-line case at a fifth): the
     * table holds 100 rows and not one more, the rest is counted as dropped. */
    const char *p = log_path();
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(header, f);
    for (int i = 0; i < 200000; i++)
        fprintf(f, "%s 10:%02d:%02d 127.0.0.1 GET /a 443 127.0.%d.%d 200 40\r\n", today,
                i / 60 % 60, i % 60, i % 2000 / 250, i % 250 + 1);
    fclose(f);
    struct iissum *s = open_sum(100);
    scan_ok(s);
    struct iissum_stats st;
    iissum_get_stats(s, &st);
    ck_assert_uint_eq(st.rows, 100);
    ck_assert_int_eq(st.lines, 200003);
    ck_assert_int_eq(st.dropped, 200000 - 100 * 100); /* the first 100 clients, 100 times each */
    json_t *j = summary(s);
    ck_assert_int_eq(json_array_size(json_object_get(j, "entries")), 100);
    ck_assert(json_is_true(json_object_get(j, "truncated")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "max_rows")), 100);
    json_decref(j);
    iissum_free(s);
}
END_TEST

START_TEST(test_summary_keeps_only_the_window)
{
    /* a file last written 10 days ago is not read; a line 10 days old in today's file is not
     * counted */
    char old[4200];
    snprintf(old, sizeof(old), "%s/u_ex000101.log", site);
    append(old, header);
    append(old, "2000-01-01 10:00:00 127.0.0.1 GET /a 443 127.0.0.50 200 40\r\n");
    struct utimbuf ut = {(time_t)(now - 10 * 86400), (time_t)(now - 10 * 86400)};
    ck_assert_int_eq(utime(old, &ut), 0);
    const char *p = log_path();
    append(p, header);
    time_t t = (time_t)(now - 10 * 86400);
    struct tm tm;
    gmtime_r(&t, &tm);
    char line[200], day[16];
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    snprintf(line, sizeof(line), "%s 10:00:00 127.0.0.1 GET /a 443 127.0.0.51 200 40\r\n", day);
    append(p, line);
    request(p, "00:00:00", 443, "127.0.0.52", "40");
    struct iissum *s = open_sum(0);
    scan_ok(s);
    json_t *j = summary(s);
    ck_assert_int_eq(json_array_size(json_object_get(j, "entries")), 1);
    ck_assert_int_eq(entry_count(j, "127.0.0.52", 443, "tls1.0"), 1);
    ck_assert_int_eq(json_array_size(json_object_get(j, "files")), 1);
    json_decref(j);
    iissum_free(s);
}
END_TEST

START_TEST(test_missing_folder_is_an_error_naming_it)
{
    tu_rmtree(logs);
    struct iissum *s = open_sum(0);
    char err[512];
    ck_assert_int_eq(iissum_scan(s, now, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, logs));
    iissum_free(s);
    struct iissum_options bad = {.dir = logs, .max_rows = IISSUM_MAX_ROWS_LIMIT + 1};
    ck_assert_int_eq(iissum_new(&bad, &s), -EINVAL);
}
END_TEST

/* ---- end to end: the real collector and tlsgate ------------------------------------------ */

static char certs[1024];

static const char *cert(const char *name, const char *ext)
{
    static char b[4][4096];
    static int next;
    char *p = b[next++ % 4];
    snprintf(p, sizeof(b[0]), "%s/%s.%s", certs, name, ext);
    return p;
}

/* The collector of HOST with the evidence config `evidence` (JSON object text). */
static pid_t collector_start(const char *evidence, uint16_t *port)
{
    char config[4200];
    snprintf(config, sizeof(config), "%s", tu_path(dir, "collector.json"));
    char text[8192];
    snprintf(text, sizeof(text), "{\"evidence\": %s}", evidence);
    tu_write_file(config, text, strlen(text));
    char c[4096], k[4096], ca[4096], reg[4096];
    snprintf(c, sizeof(c), "%s", cert(HOST, "pem"));
    snprintf(k, sizeof(k), "%s", cert(HOST, "key"));
    snprintf(ca, sizeof(ca), "%s", cert("ca", "pem"));
    snprintf(reg, sizeof(reg), "%s", tu_source_path("tests/fixtures/reg/win10-22h2.reg"));
    const char *args[] = {"--listen", "127.0.0.1:0", "--cert", c,          "--key", k,   "--ca",
                          ca,         "--regfile",   reg,      "--config", config,  NULL};
    return tu_collector_start(args, tu_path(dir, "collector.err"), DEADLINE_MS, port);
}

static void stop(pid_t pid)
{
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, DEADLINE_MS), 0);
}

/* GET path with the orchestrator's certificate, waiting up to the deadline for a 200. */
static void fetch_ok(uint16_t port, const char *path, struct tu_fetch *f)
{
    long long until = tu_now_ms() + DEADLINE_MS;
    for (;;) {
        *f = (struct tu_fetch){
            .path = path, .host = HOST, .ca = cert("ca", "pem"), .certdir = certs};
        tu_fetch_run(port, f);
        if ((f->rc == CURLE_OK && f->code == 200) || tu_now_ms() > until)
            break;
        tu_fetch_release(f);
        usleep(50 * 1000); /* the first scan runs on the thread pool */
    }
    ck_assert_msg(f->rc == CURLE_OK && f->code == 200, "%s: curl %d, HTTP %ld", path, f->rc,
                  f->code);
}

START_TEST(test_collector_serves_evidence_with_mutual_tls_only)
{
    snprintf(certs, sizeof(certs), "%.1000s", tu_path(dir, "certs"));
    ck_assert_int_eq(tu_gen_certs(certs, TU_ARGS(HOST)), 0);
    const char *p = log_path();
    append(p, header);
    request(p, "10:00:00", 443, "127.0.0.99", "40");
    request(p, "10:00:01", 443, "127.0.0.99", "40");
    char ev[1200];
    snprintf(ev, sizeof(ev), "{\"iis_logs\": \"%s\", \"max_clients\": 50, \"window_days\": 3}",
             logs);
    uint16_t port;
    pid_t pid = collector_start(ev, &port);
    struct tu_fetch f;
    fetch_ok(port, "/v1/evidence", &f);
    json_t *j = json_loads(f.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(entry_count(j, "127.0.0.99", 443, "tls1.0"), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "window_days")), 3);
    json_decref(j);
    tu_fetch_release(&f);
    /* no client certificate: refused, and nothing said */
    f = (struct tu_fetch){.path = "/v1/evidence", .host = HOST, .ca = cert("ca", "pem")};
    tu_fetch_run(port, &f);
    ck_assert_int_eq(f.code, 401);
    ck_assert_ptr_null(strstr(f.out ? f.out : "", "127.0.0.99"));
    tu_fetch_release(&f);
    /* lines IIS appends are served after the next refresh (SIGHUP) */
    request(p, "10:00:02", 443, "127.0.0.99", "40");
    kill(pid, SIGHUP);
    long long until = tu_now_ms() + DEADLINE_MS;
    long long n = 0;
    while (n != 3 && tu_now_ms() < until) {
        fetch_ok(port, "/v1/evidence", &f);
        j = json_loads(f.out, 0, NULL);
        n = entry_count(j, "127.0.0.99", 443, "tls1.0");
        json_decref(j);
        tu_fetch_release(&f);
        if (n != 3)
            usleep(50 * 1000);
    }
    ck_assert_int_eq(n, 3);
    stop(pid);
}
END_TEST

START_TEST(test_unreadable_folder_is_in_health_and_the_report_is_still_served)
{
    snprintf(certs, sizeof(certs), "%.1000s", tu_path(dir, "certs"));
    ck_assert_int_eq(tu_gen_certs(certs, TU_ARGS(HOST)), 0);
    char ev[1200];
    snprintf(ev, sizeof(ev), "{\"iis_logs\": \"%s/absent\"}", logs);
    uint16_t port;
    pid_t pid = collector_start(ev, &port);
    struct tu_fetch f;
    long long until = tu_now_ms() + DEADLINE_MS;
    json_t *j = NULL;
    for (;;) {
        fetch_ok(port, "/v1/health", &f);
        j = json_loads(f.out, 0, NULL);
        tu_fetch_release(&f);
        if (json_is_string(json_object_get(j, "evidence_error")) || tu_now_ms() > until)
            break;
        json_decref(j);
        usleep(50 * 1000);
    }
    const char *why = json_string_value(json_object_get(j, "evidence_error"));
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_nonnull(strstr(why, "absent"));
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "degraded");
    json_decref(j);
    fetch_ok(port, "/v1/readiness", &f);
    tu_fetch_release(&f);
    fetch_ok(port, "/v1/evidence", &f); /* an empty summary, still served */
    j = json_loads(f.out, 0, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(j, "entries")), 0);
    json_decref(j);
    tu_fetch_release(&f);
    stop(pid);
}
END_TEST

/* A database with HOST as a management point at 127.0.0.1:port, and the orchestrator's
 * config (with `extra` config keys) at `config`. */
static void orchestrator_setup(uint16_t port, char *db, char *config, const char *extra)
{
    char inv[4200], text[16384];
    snprintf(db, 4200, "%s", tu_path(dir, "t.db"));
    snprintf(config, 4200, "%s", tu_path(dir, "config.json"));
    snprintf(inv, sizeof(inv), "%s", tu_path(dir, "inv.csv"));
    snprintf(text, sizeof(text),
             "{\"tls\": {\"ca\": \"%s\", \"cert\": \"%s\", \"key\": \"%s\"}, "
             "\"connect_timeout\": 5, \"timeout\": 10%s}",
             cert("ca", "pem"), cert("orchestrator", "pem"), cert("orchestrator", "key"), extra);
    tu_write_file(config, text, strlen(text));
    snprintf(text, sizeof(text),
             "name,site,roles,collector,os\n%s,PS1,management_point,127.0.0.1:%u,\n", HOST,
             (unsigned)port);
    tu_write_file(inv, text, strlen(text));
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "init", NULL), 0);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "inventory", "import", inv, NULL), 0);
}

/* `gate check SERVER --json`: whether a legacy-handshake blocker names `client`. */
static bool gate_names(const char *db, const char *config, const char *client)
{
    char *out = NULL, *err = NULL;
    tu_tlsgate(db, &out, &err, "--config", config, "gate", "check", HOST, "--json", NULL);
    json_t *j = json_loads(out ? out : "", 0, NULL);
    ck_assert_msg(j != NULL, "gate check: %s", err);
    bool found = false;
    size_t i, k;
    json_t *b, *h;
    json_array_foreach(json_object_get(j, "blockers"), i, b)
    {
        if (strcmp(json_string_value(json_object_get(b, "rule")), "legacy-handshake"))
            continue;
        json_array_foreach(json_object_get(b, "list"), k, h)
        {
            found |= !strcmp(json_string_value(json_object_get(h, "host")), client);
        }
    }
    json_decref(j);
    free(out);
    free(err);
    return found;
}

START_TEST(test_collect_stores_the_summary_and_a_legacy_client_blocks_the_gate_until_waived)
{
    snprintf(certs, sizeof(certs), "%.1000s", tu_path(dir, "certs"));
    ck_assert_int_eq(tu_gen_certs(certs, TU_ARGS(HOST)), 0);
    const char *p = log_path();
    append(p, header);
    request(p, "10:00:00", 443, "127.0.0.99", "40");
    request(p, "10:00:01", 8531, "127.0.0.99", "40");
    request(p, "10:00:02", 443, "127.0.0.98", "400");
    char ev[1200];
    snprintf(ev, sizeof(ev), "{\"iis_logs\": \"%s\"}", logs);
    uint16_t port;
    pid_t pid = collector_start(ev, &port);
    struct tu_fetch f;
    fetch_ok(port, "/v1/evidence", &f); /* the first scan is done */
    tu_fetch_release(&f);

    char db[4200], config[4200], *out = NULL, *err = NULL;
    orchestrator_setup(port, db, config, "");
    ck_assert_msg(!gate_names(db, config, "127.0.0.99"), "a blocker before any evidence");

    int rc = tu_tlsgate(db, &out, &err, "--config", config, "collect", "--json", NULL);
    ck_assert_msg(rc == 0, "collect: %s", err);
    json_t *j = json_loads(out, 0, NULL);
    json_t *e = json_object_get(j, "evidence");
    ck_assert_int_eq(json_integer_value(json_object_get(e, "servers")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "stored")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "rows")), 2); /* ports summed */
    json_decref(j);
    free(out);
    free(err);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count FROM evidence WHERE client = '127.0.0.99' AND "
                               "protocol = 'tls1.0' AND server = ?",
                               HOST),
                     2);
    ck_assert(gate_names(db, config, "127.0.0.99"));
    ck_assert(!gate_names(db, config, "127.0.0.98")); /* TLS 1.2 blocks nothing */

    /* pulled again: the same rows, not twice the counts */
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "--config", config, "collect", NULL), 0);
    ck_assert_int_eq(tu_db_int(db, "SELECT sum(count) FROM evidence WHERE server = ?", HOST), 3);

    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "evidence", "waive", "127.0.0.99", "--reason",
                                "printer being retired", NULL),
                     0);
    ck_assert(!gate_names(db, config, "127.0.0.99"));
    stop(pid);
}
END_TEST

START_TEST(test_collect_treats_a_collector_without_evidence_as_no_error)
{
    snprintf(certs, sizeof(certs), "%.1000s", tu_path(dir, "certs"));
    ck_assert_int_eq(tu_gen_certs(certs, TU_ARGS(HOST)), 0);
    char c[4096], k[4096], ca[4096], reg[4096];
    snprintf(c, sizeof(c), "%s", cert(HOST, "pem"));
    snprintf(k, sizeof(k), "%s", cert(HOST, "key"));
    snprintf(ca, sizeof(ca), "%s", cert("ca", "pem"));
    snprintf(reg, sizeof(reg), "%s", tu_source_path("tests/fixtures/reg/win10-22h2.reg"));
    const char *args[] = {"--listen", "127.0.0.1:0", "--cert", c,   "--key", k, "--ca",
                          ca,         "--regfile",   reg,      NULL};
    uint16_t port;
    pid_t pid = tu_collector_start(args, tu_path(dir, "collector.err"), DEADLINE_MS, &port);
    char db[4200], config[4200];
    orchestrator_setup(port, db, config, "");
    char *out = NULL;
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "--config", config, "collect", "--json", NULL), 0);
    json_t *j = json_loads(out, 0, NULL);
    json_t *e = json_object_get(j, "evidence");
    ck_assert_int_eq(json_integer_value(json_object_get(e, "absent")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "failed")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "ok")), 1);
    json_decref(j);
    free(out);
    stop(pid);
}
END_TEST

START_TEST(test_daemon_pulls_the_summary_after_the_reports)
{
    snprintf(certs, sizeof(certs), "%.1000s", tu_path(dir, "certs"));
    ck_assert_int_eq(tu_gen_certs(certs, TU_ARGS(HOST)), 0);
    const char *p = log_path();
    append(p, header);
    request(p, "10:00:00", 443, "127.0.0.99", "40");
    char ev[1200];
    snprintf(ev, sizeof(ev), "{\"iis_logs\": \"%s\"}", logs);
    uint16_t port;
    pid_t pid = collector_start(ev, &port);
    struct tu_fetch f;
    fetch_ok(port, "/v1/evidence", &f);
    tu_fetch_release(&f);
    char db[4200], config[4200];
    orchestrator_setup(port, db, config, ", \"interval\": 1, \"jitter\": 0");
    pid_t daemon = tu_tlsgate_start(db, config, "daemon", tu_path(dir, "daemon.log"), true);
    bool seen = tu_wait_db_int(db,
                               "SELECT count(*) FROM evidence WHERE client = '127.0.0.99' AND "
                               "protocol = 'tls1.0' AND server = ?",
                               HOST, 1, DEADLINE_MS);
    kill(daemon, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(daemon, DEADLINE_MS), 0);
    ck_assert_msg(seen, "the daemon stored no evidence: %s",
                  tu_read_file(tu_path(dir, "daemon.log"), NULL));
    ck_assert(tu_wait_file_contains(tu_path(dir, "daemon.log"), "evidence summary stored", 1000));
    stop(pid);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("iissum");
    TCase *tc = tu_tcase(
        s, "iissum", setup, teardown,
        TU_TESTS(test_summary_reads_any_field_order_and_counts_hostile_lines,
                 test_summary_reads_only_appended_lines_and_waits_for_an_unfinished_one,
                 test_summary_is_bounded_and_says_truncated_on_a_log_of_many_clients,
                 test_summary_keeps_only_the_window, test_missing_folder_is_an_error_naming_it,
                 test_collector_serves_evidence_with_mutual_tls_only,
                 test_unreadable_folder_is_in_health_and_the_report_is_still_served,
                 test_collect_stores_the_summary_and_a_legacy_client_blocks_the_gate_until_waived,
                 test_collect_treats_a_collector_without_evidence_as_no_error,
                 test_daemon_pulls_the_summary_after_the_reports));
    tcase_set_timeout(tc, 180);
    return tu_run_suite(s);
}

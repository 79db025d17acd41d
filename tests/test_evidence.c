/*
 * test_evidence.c — `tlsgate evidence` on real files: IIS W3C logs with reordered fields,
 * comments, gzip and hostile lines, SCHANNEL event exports, a 1,000,000-row log read with flat
 * memory, and what the evidence does to a server's gate (an uninventoried address blocks it, a
 * waiver lifts that, the window bounds it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "evidence.h"
#include "fixture.h"

static char *dir, *db;

/* A site in enforce with a ready management point (legacy still on) and an inventoried client
 * whose collector is at 127.0.0.17. */
static void setup(void)
{
    dir = tu_tmpdir();
    db = strdup(tu_path(dir, "t.db"));
    struct store *s = fx_open(db);
    fx_site(s, "PS1", "enforce");
    fx_host(s, "mp1.corp.test", "PS1", MP);
    long long id = fx_host_bare(s, "ws17.corp.test", "PS1", ROLE_CLIENT, "127.0.0.17:8443");
    fx_sql(s,
           "INSERT INTO report (host_id, collected_at, received_at, body, catalog_version, "
           "blockers, warnings, legacy_disabled) VALUES (%lld, %lld, %lld, '{}', 'test', 0, 0, 0)",
           id, FX_NOW - 60, FX_NOW - 60);
    store_close(s);
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
    free(db);
}

static const char *write_file(const char *name, const char *text)
{
    const char *path = tu_path(dir, name);
    tu_write_file(path, text, strlen(text));
    return path;
}

/* FX_NOW is 2027-01-15T08:00:00Z; the logs are of the day before. */
static const char iis_log[] =
    "#Software: Microsoft Internet Information Services 10.0\r\n"
    "#Version: 1.0\r\n"
    "#Date: 2027-01-14 00:00:00\r\n"
    "#Fields: date time s-ip cs-method cs-uri-stem s-port c-ip sc-status crypt-protocol\r\n"
    "2027-01-14 10:00:01 127.0.0.1 GET /SMS_MP/.sms_aut 443 127.0.0.99 200 40\r\n"
    "2027-01-14 10:00:02 127.0.0.1 GET /SMS_MP/.sms_aut 443 127.0.0.99 200 40\r\n"
    "2027-01-14 10:00:03 127.0.0.1 GET /SMS_MP/.sms_aut 443 127.0.0.17 200 400\r\n"
    "2027-01-14 10:00:04 127.0.0.1 GET /plain 80 127.0.0.17 200 -\r\n"
    "this line is not a log line\r\n"
    "# a comment in the middle\r\n"
    /* IIS starts a new #Fields: block when its configuration changes: another order. */
    "#Fields: crypt-protocol c-ip time date\r\n"
    "0x100 127.0.0.17 10:00:05 2027-01-14\r\n"
    "40 ::1 10:00:06 2027-01-14\r\n"
    "40 not-an-address 10:00:07 2027-01-14\r\n"
    "4000 127.0.0.5 10:00:08 2027-01-14\r\n"
    "40 127.0.0.5 25:61:00 2027-01-14\r\n"
    "40 '=cmd|calc'!A1 10:00:09 2027-01-14\r\n";

static long long count_of(const char *client, const char *proto)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(sum(count), 0) FROM evidence WHERE client = ?1 AND protocol = '%s'",
             proto);
    return tu_db_int(db, sql, client);
}

START_TEST(iis_reordered_comments_hostile)
{
    const char *path = write_file("u_ex270114.log", iis_log);
    char *out = NULL, *err = NULL;
    int rc = fx_run(db, &out, &err, "evidence", "import", "--server", "mp1.corp.test", path, NULL);
    ck_assert_msg(rc == 0, "import: %s", err ? err : "");
    ck_assert_int_eq(count_of("127.0.0.99", "tls1.0"), 2);
    ck_assert_int_eq(count_of("127.0.0.17", "tls1.2"), 1);
    ck_assert_int_eq(count_of("127.0.0.17", "tls1.1"), 1);
    ck_assert_int_eq(count_of("::1", "tls1.0"), 1);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM evidence WHERE client = ?1", "127.0.0.5"),
                     0);
    /* 5 hostile lines skipped, named by line number; the plain HTTP request is not one. */
    ck_assert_ptr_nonnull(strstr(out, "5 handshakes, 1 without TLS"));
    ck_assert_ptr_nonnull(strstr(out, "5 skipped (lines 9, 14, 15, 16, 17"));
    free(out);
    free(err);

    /* The list joins 127.0.0.17 to its host; 127.0.0.99 is nobody's. */
    ck_assert_int_eq(fx_run(db, &out, NULL, "evidence", "list", "--legacy", "--json", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out,
                                 "\"client\":\"127.0.0.17\",\"client_host\":\"ws17.corp.test\","
                                 "\"protocol\":\"tls1.1\""));
    ck_assert_ptr_nonnull(strstr(out, "\"client\":\"127.0.0.99\",\"client_host\":null"));
    ck_assert_ptr_null(strstr(out, "tls1.2"));
    free(out);
    ck_assert_int_eq(fx_run(db, &out, NULL, "evidence", "list", "--uninventoried", "--csv", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "server,client,client_host,protocol,legacy,first_seen,"
                                      "last_seen,count,waived\r\n"));
    ck_assert_ptr_nonnull(strstr(out, "mp1.corp.test,127.0.0.99,,tls1.0,true,"
                                      "2027-01-14T10:00:01Z,2027-01-14T10:00:02Z,2,false\r\n"));
    ck_assert_ptr_null(strstr(out, "127.0.0.17"));
    free(out);
}
END_TEST

START_TEST(gzip_and_schannel)
{
    const char *plain = write_file("u_ex270114.log", iis_log);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "gzip -c '%s' > '%s.gz'", plain, plain);
    ck_assert_int_eq(system(cmd), 0);
    const char *xml = write_file(
        "schannel.xml",
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
        "<Provider Name='Schannel'/><EventID>36880</EventID><Level>4</Level>"
        "<TimeCreated SystemTime='2027-01-14T11:00:00.1234567Z'/><Computer>MP1</Computer>"
        "</System><EventData><Data Name='Type'>server</Data><Data Name='Protocol'>TLS 1.0</Data>"
        "<Data Name='CipherSuite'>0xc014</Data></EventData></Event>\r\n"
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'>\r\n"
        "  <System><EventID>36880</EventID>\r\n"
        "  <TimeCreated SystemTime=\"2027-01-14T11:00:01.5Z\"/><Computer>MP1</Computer></System>\r\n"
        "  <EventData><Data Name=\"Type\">client</Data><Data Name=\"Protocol\">TLS 1.0</Data>"
        "</EventData></Event>\r\n"
        "<Event><System><EventID>36888</EventID></System></Event>\r\n"
        "<Event><System><EventID>36880</EventID><TimeCreated SystemTime='yesterday'/>"
        "<Computer>MP1</Computer></System><EventData><Data Name='Protocol'>TLS 1.0</Data>"
        "</EventData></Event>\r\n");
    char gz[512];
    snprintf(gz, sizeof(gz), "%s.gz", plain);
    char *out = NULL, *err = NULL;
    /* No --server: the events name MP1, the NetBIOS name of mp1.corp.test. */
    int rc = fx_run(db, &out, &err, "evidence", "import", gz, xml, NULL);
    ck_assert_msg(rc == 0, "import: %s", err ? err : "");
    ck_assert_ptr_nonnull(strstr(out, "schannel, 7 lines, 1 handshakes"));
    ck_assert_ptr_nonnull(strstr(out, "2 other events, 1 skipped"));
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count FROM evidence WHERE server = 'mp1.corp.test' AND"
                               " client = ?1 AND protocol = 'tls1.0'",
                               "unknown"),
                     1);
    free(out);
    free(err);
    /* The IIS log's server is its s-ip, 127.0.0.1: the collector address of mp1.corp.test. */
    ck_assert_int_eq(count_of("127.0.0.99", "tls1.0"), 2);
    /* The gzip copy again with the server given: the same rows once more. */
    rc = fx_run(db, NULL, &err, "evidence", "import", "--server", "mp1.corp.test", gz, NULL);
    ck_assert_msg(rc == 0, "import: %s", err ? err : "");
    ck_assert_int_eq(count_of("127.0.0.99", "tls1.0"), 4);
    free(err);
}
END_TEST

START_TEST(bad_files_change_nothing)
{
    const char *good = write_file("good.log", iis_log);
    const char *bad = write_file("bad.txt", "hello\nworld\n");
    const char *gz = write_file("broken.gz", "\x1f\x8b\x08\x00garbage");
    char *err = NULL;
    ck_assert_int_eq(
        fx_run(db, NULL, &err, "evidence", "import", "--server", "mp1.corp.test", good, bad, NULL),
        3);
    ck_assert_ptr_nonnull(strstr(err, "bad.txt:1"));
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, &err, "evidence", "import", "--server", "mp1.corp.test", good,
                            tu_path(dir, "missing.log"), NULL),
                     3);
    ck_assert_ptr_nonnull(strstr(err, "missing.log"));
    free(err);
    ck_assert_int_eq(
        fx_run(db, NULL, &err, "evidence", "import", "--server", "mp1.corp.test", gz, NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "broken.gz"));
    free(err);
    ck_assert_int_eq(
        fx_run(db, NULL, &err, "evidence", "import", "--server", "nosuch.test", good, NULL), 3);
    free(err);
    ck_assert_int_eq(
        fx_run(db, NULL, &err, "evidence", "waive", "not-an-ip", "--reason", "x", NULL), 2);
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM evidence", NULL), 0);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM evidence_waiver", NULL), 0);
}
END_TEST

START_TEST(uninventoried_blocks_gate_until_waived)
{
    char *out = NULL, *err = NULL;
    /* Without evidence the gate is open (enforce, the MP is ready, its only client ready). */
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.corp.test", NULL), 0);
    free(out);
    const char *path = write_file("u_ex270114.log", iis_log);
    ck_assert_int_eq(
        fx_run(db, NULL, NULL, "evidence", "import", "--server", "mp1.corp.test", path, NULL), 0);
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.corp.test", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.99 (uninventoried client): tls1.0 handshake seen 2"
                                      " times, last 2027-01-14T10:00:02Z"));
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.17 (ws17.corp.test): tls1.1"));
    free(out);
    /* Waive the three legacy addresses: the gate opens; every change is audited. */
    const char *addrs[] = {"127.0.0.99", "127.0.0.17", "::1"};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(fx_run(db, NULL, &err, "evidence", "waive", addrs[i], "--reason",
                                "kiosk retired next week", "--until", "2027-02-01", NULL),
                         0);
    free(err);
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.corp.test", NULL), 0);
    free(out);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM audit WHERE command LIKE"
                               " '%evidence waive%' AND outcome LIKE ?1",
                               "ok: % waived until 2027-02-01T00:00:00Z"),
                     3);
    /* The waiver expires by itself. */
    ck_assert_int_eq(
        fx_run_at(db, FX_NOW + 20 * 86400LL, &out, NULL, "gate", "check", "mp1.corp.test", NULL),
        1);
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.99 (uninventoried client)"));
    free(out);
    /* Unwaived: it blocks again. */
    ck_assert_int_eq(fx_run(db, NULL, NULL, "evidence", "unwaive", "127.0.0.99", NULL), 0);
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.corp.test", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.99 (uninventoried client)"));
    free(out);
}
END_TEST

/* The administrator's resolver: an address that is no collector address, mapped to an inventory
 * host by `evidence names FILE`, is that host, not an "uninventoried client"; a bad file names
 * its line and changes nothing; a new file replaces the old one whole. */
START_TEST(names_resolve_addresses_beyond_collectors)
{
    const char *path = write_file("u_ex270114.log", iis_log);
    ck_assert_int_eq(
        fx_run(db, NULL, NULL, "evidence", "import", "--server", "mp1.corp.test", path, NULL), 0);
    char *out = NULL, *err = NULL;
    const char *names = write_file("names.csv", "host,address\r\nws17.corp.test,127.0.0.99\r\n");
    ck_assert_int_eq(fx_run(db, &out, &err, "evidence", "names", names, NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "1 address mapped"));
    free(out);
    free(err);
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.corp.test", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.99 (ws17.corp.test): tls1.0 handshake seen 2"));
    ck_assert_ptr_null(strstr(out, "127.0.0.99 (uninventoried client)"));
    free(out);
    ck_assert_int_eq(fx_run(db, &out, NULL, "evidence", "list", "--uninventoried", "--csv", NULL),
                     0);
    ck_assert_ptr_null(strstr(out, "127.0.0.99"));
    ck_assert_ptr_nonnull(strstr(out, "::1"));
    free(out);

    /* An unknown host, or a bad address: exit 3 naming file and line; the mapping stays. */
    const char *bad = write_file("bad.csv", "address,host\n127.0.0.5,ws17.corp.test\n"
                                            "127.0.0.6,nosuch.corp.test\n");
    ck_assert_int_eq(fx_run(db, NULL, &err, "evidence", "names", bad, NULL), 3);
    ck_assert_msg(strstr(err, "bad.csv:3: no such host: nosuch.corp.test") != NULL, "%s", err);
    free(err);
    bad = write_file("bad2.csv", "address,host\nnot-an-ip,ws17.corp.test\n");
    ck_assert_int_eq(fx_run(db, NULL, &err, "evidence", "names", bad, NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "bad2.csv:2: address 'not-an-ip'"));
    free(err);
    bad = write_file("bad3.csv", "ip,name\n127.0.0.5,ws17.corp.test\n");
    ck_assert_int_eq(fx_run(db, NULL, &err, "evidence", "names", bad, NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "address and host"));
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM evidence_name", NULL), 1);

    /* Replaced whole: 127.0.0.99 is an uninventoried client again. */
    names = write_file("names2.csv", "address,host\n127.0.0.5,ws17.corp.test\n");
    ck_assert_int_eq(fx_run(db, NULL, NULL, "evidence", "names", names, NULL), 0);
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.corp.test", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.99 (uninventoried client)"));
    free(out);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM audit WHERE command LIKE"
                               " '%evidence names%' AND outcome LIKE 'ok: %'",
                               NULL),
                     2);
}
END_TEST

START_TEST(window_bounds_the_blocker)
{
    const char *path = write_file("u_ex270114.log", iis_log);
    ck_assert_int_eq(
        fx_run(db, NULL, NULL, "evidence", "import", "--server", "mp1.corp.test", path, NULL), 0);
    /* evidence_window of 12 hours: the handshakes of yesterday morning no longer block. */
    const char *cfg = write_file("cfg.json", "{\"evidence_window\": 43200}");
    char *out = NULL;
    ck_assert_int_eq(
        fx_run(db, &out, NULL, "--config", cfg, "gate", "check", "mp1.corp.test", NULL), 0);
    free(out);
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.corp.test", NULL), 1);
    free(out);
    char *err = NULL;
    const char *bad = write_file("bad.json", "{\"evidence_window\": 0}");
    ck_assert_int_eq(
        fx_run(db, NULL, &err, "--config", bad, "gate", "check", "mp1.corp.test", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "evidence_window"));
    free(err);
}
END_TEST

START_TEST(protocol_values)
{
    enum wire_proto p;
    ck_assert(!evidence_iis_protocol("40", &p) && p == WIRE_TLS10);
    ck_assert(!evidence_iis_protocol("0x40", &p) && p == WIRE_TLS10);
    ck_assert(!evidence_iis_protocol("64", &p) && p == WIRE_TLS10);
    ck_assert(!evidence_iis_protocol("100", &p) && p == WIRE_TLS11);
    ck_assert(!evidence_iis_protocol("256", &p) && p == WIRE_TLS11);
    ck_assert(!evidence_iis_protocol("400", &p) && p == WIRE_TLS12);
    ck_assert(!evidence_iis_protocol("1024", &p) && p == WIRE_TLS12);
    ck_assert(!evidence_iis_protocol("10", &p) && p == WIRE_SSL3);
    ck_assert(!evidence_iis_protocol("800", &p) && p == WIRE_TLS12);
    ck_assert(evidence_iis_protocol("0x64", &p) == -EINVAL);
    ck_assert(evidence_iis_protocol("", &p) == -EINVAL);
    ck_assert(evidence_iis_protocol("4000", &p) == -EINVAL);
    ck_assert(evidence_iis_protocol("40x", &p) == -EINVAL);
}
END_TEST

/* Runs `tlsgate evidence import` on `path`; returns its peak RSS in KiB. */
static long import_rss(const char *path)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl(tu_build_path("orchestrator/tlsgate"), "tlsgate", "--db", db, "evidence", "import",
              "--server", "mp1.corp.test", path, (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    ck_assert_int_eq(wait4(pid, &status, 0, &ru), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "import of %s failed", path);
    return ru.ru_maxrss;
}

/* n rows over 5,000 client addresses and 4 days in time order (as IIS writes them), every
 * 1000th a hostile line. */
static void write_big_log(const char *path, long n)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("#Software: Microsoft Internet Information Services 10.0\n"
          "#Fields: date time s-ip cs-method cs-uri-stem s-port c-ip sc-status crypt-protocol\n",
          f);
    for (long i = 0; i < n; i++) {
        if (i % 1000 == 999) {
            fputs("2027-01-14 10:00:00 127.0.0.1 GET / 443 127.0.0.300 200 40\n", f);
            continue;
        }
        fprintf(f,
                "2027-01-1%ld %02ld:%02ld:%02ld 127.0.0.1 GET /SMS_MP/.sms_aut 443 127.%ld.%ld.1"
                " 200 %s\n",
                1 + i * 4 / n, i % 24, i % 60, (i / 60) % 60, (i % 5000) / 250, i % 250,
                i % 3 ? "400" : "40");
    }
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(million_rows_memory_flat)
{
    const char *small = tu_path(dir, "small.log");
    char *big = strdup(tu_path(dir, "big.log"));
    write_big_log(small, 100000);
    write_big_log(big, 1000000);
    long rss_small = import_rss(small);
    long rss_big = import_rss(big);
    unlink(big);
    printf("evidence import peak RSS: 100,000 rows %ld KiB, 1,000,000 rows %ld KiB\n", rss_small,
           rss_big);
    /* Ten times the rows, the same memory (a few MiB of slack for SQLite's page cache). */
    ck_assert_msg(rss_big < rss_small + 8 * 1024, "RSS grew from %ld to %ld KiB", rss_small,
                  rss_big);
    /* 1,100,000 rows, 1,100 of them hostile; 5,000 addresses x 2 protocols x 4 days at most. */
    ck_assert_int_eq(tu_db_int(db, "SELECT sum(count) FROM evidence", NULL), 1100000 - 1100);
    ck_assert_int_le(tu_db_int(db, "SELECT count(*) FROM evidence", NULL), 5000 * 2 * 4);
    free(big);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("evidence");
    TCase *tc = tu_tcase(
        s, "evidence", setup, teardown,
        TU_TESTS(iis_reordered_comments_hostile, gzip_and_schannel, bad_files_change_nothing,
                 uninventoried_blocks_gate_until_waived, names_resolve_addresses_beyond_collectors,
                 window_bounds_the_blocker, protocol_values, million_rows_memory_flat));
    tcase_set_timeout(tc, 240);
    return tu_run_suite(s);
}

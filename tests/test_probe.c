/*
 * test_probe.c — `tlsgate probe` against real TLS servers on 127.0.0.1: OpenSSL's s_server at
 * security level 0 capped at TLS 1.0, one at TLS 1.2 only, and tests/peers/tds_peer.py, a SQL
 * Server stand-in that carries the handshake in TDS PRELOGIN packets. Certificates come from
 * tools/gen-certs. The self-test is also made to fail on purpose: the probe must then say
 * "untested", never "refused".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "probe.h"
#include "wire.h"

static char *certs;

static void make_certs(void)
{
    certs = tu_tmpdir();
    char *argv[] = {(char *)tu_source_path("tools/gen-certs"), certs, "peer.test", NULL};
    char *err = NULL;
    ck_assert_msg(tu_run(argv, NULL, NULL, &err) == 0, "gen-certs: %s", err ? err : "");
    free(err);
}

/* A peer process and the port it printed ("ACCEPT 127.0.0.1:PORT"). */
struct peer {
    pid_t pid;
    int port;
    int stdin_fd; /* kept open: tds_peer.py exits when it closes */
    FILE *out;    /* kept open: a peer writing to a closed pipe would die of SIGPIPE */
};

static struct peer peer_start(char *const argv[])
{
    int in, out;
    /* stderr quiet: s_server reports each refused handshake, expected here */
    pid_t pid = tu_spawn_piped(argv, &in, &out, true);
    FILE *f = fdopen(out, "r");
    char line[256];
    struct peer p = {pid, 0, in, f};
    while (fgets(line, sizeof(line), f)) {
        const char *a = strstr(line, "ACCEPT 127.0.0.1:");
        if (a) {
            p.port = atoi(a + strlen("ACCEPT 127.0.0.1:"));
            break;
        }
    }
    ck_assert_msg(p.port > 0, "%s did not say where it listens", argv[0]);
    return p;
}

static void peer_stop(struct peer *p)
{
    kill(p->pid, SIGTERM);
    close(p->stdin_fd);
    waitpid(p->pid, NULL, 0);
    fclose(p->out);
}

/* openssl s_server capped with `version_opt` (-tls1, -tls1_2, ...), every cipher at level 0. */
static struct peer s_server(const char *version_opt)
{
    char *argv[] = {"openssl",
                    "s_server",
                    "-accept",
                    "127.0.0.1:0",
                    "-cert",
                    (char *)tu_path(certs, "peer.test.pem"),
                    "-key",
                    (char *)tu_path(certs, "peer.test.key"),
                    "-cipher",
                    "ALL:@SECLEVEL=0",
                    (char *)version_opt,
                    NULL};
    return peer_start(argv);
}

/* The TDS peer accepting `min`..`max`; `not_sup`: no TLS at all; `rc4` (or NULL): an RC4-only
 * server of that mode (rc4_peer.py's modes, inside TDS packets). */
static struct peer tds_peer_rc4(const char *min, const char *max, bool not_sup, const char *rc4)
{
    char *argv[16] = {"python3", (char *)tu_source_path("tests/peers/tds_peer.py"),
                      "--cert",  (char *)tu_path(certs, "peer.test.pem"),
                      "--key",   (char *)tu_path(certs, "peer.test.key"),
                      "--min",   (char *)min,
                      "--max",   (char *)max};
    int n = 10;
    if (not_sup)
        argv[n++] = "--not-sup";
    if (rc4) {
        argv[n++] = "--rc4";
        argv[n++] = (char *)rc4;
    }
    return peer_start(argv);
}

static struct peer tds_peer(const char *min, const char *max, bool not_sup)
{
    return tds_peer_rc4(min, max, not_sup, NULL);
}

/* A database with one management point and one site database, both at 127.0.0.1. */
static char *dir, *db;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    make_certs();
    dir = tu_tmpdir();
    db = strdup(tu_path(dir, "t.db"));
    struct store *s = fx_open(db);
    fx_site(s, "PS1", "servers");
    fx_host_bare(s, "mp1.test", "PS1", MP, "127.0.0.1:8443");
    fx_host_bare(s, "sql1.test", "PS1", ROLE_SITE_DATABASE, "127.0.0.1:8443");
    store_close(s);
}

static void teardown(void)
{
    tu_rmtree(dir);
    tu_rmtree(certs);
    free(dir);
    free(db);
    free(certs);
}

/* The stored result of (host, port, protocol), or "" when none. */
static const char *stored(const char *host, int port, const char *proto)
{
    static char buf[32];
    struct store *s;
    char err[256];
    ck_assert(store_open(db, false, &s, err, sizeof(err)) == 0);
    sqlite3_stmt *st;
    ck_assert(store_prepare(s,
                            "SELECT p.result FROM probe_result p JOIN host h ON h.id = p.host_id"
                            " WHERE h.name = ? AND p.port = ? AND p.protocol = ?",
                            &st) == 0);
    sqlite3_bind_text(st, 1, host, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, port);
    sqlite3_bind_text(st, 3, proto, -1, SQLITE_STATIC);
    buf[0] = '\0';
    if (sqlite3_step(st) == SQLITE_ROW)
        snprintf(buf, sizeof(buf), "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    store_close(s);
    return buf;
}

static void set_port(const char *host, int port, bool tds)
{
    char arg[32];
    snprintf(arg, sizeof(arg), "%d%s", port, tds ? "/tds" : "");
    char *err = NULL;
    int rc = tu_tlsgate(db, NULL, &err, "probe", "ports", host, arg, NULL);
    ck_assert_msg(rc == 0, "probe ports: %s", err ? err : "");
    free(err);
}

static struct probe_selftest selftest(unsigned deny)
{
    struct probe_selftest st;
    char err[256];
    ck_assert_msg(probe_selftest(&st, deny, err, sizeof(err)) == 0, "%s", err);
    return st;
}

START_TEST(selftest_speaks_modern_and_says_why_not)
{
    struct probe_selftest st = selftest(0);
    ck_assert(st.can[WIRE_TLS12]);
    ck_assert(st.can[WIRE_TLS13]);
    ck_assert(!st.can[WIRE_SSL2]);
    for (int p = 0; p < WIRE_PROTO_COUNT; p++)
        if (!st.can[p])
            ck_assert_msg(st.why[p][0], "no reason for %s", wire_proto_name(p));
    /* Denied on purpose: the built-in server refuses TLS 1.2, so the prober cannot prove it. */
    st = selftest(1u << WIRE_TLS12);
    ck_assert(!st.can[WIRE_TLS12]);
    ck_assert(st.can[WIRE_TLS13]);
    ck_assert_ptr_nonnull(strstr(st.why[WIRE_TLS12], "self-test"));
}
END_TEST

START_TEST(tls10_server)
{
    struct probe_selftest st = selftest(0);
    if (!st.can[WIRE_TLS10]) {
        printf("tls10_server: this OpenSSL cannot speak TLS 1.0 (%s): skipped\n",
               st.why[WIRE_TLS10]);
        return;
    }
    struct peer p = s_server("-tls1");
    set_port("mp1.test", p.port, false);
    char *out = NULL, *err = NULL;
    int rc = tu_tlsgate(db, &out, &err, "probe", "mp1.test", NULL);
    peer_stop(&p);
    ck_assert_msg(rc == 0, "probe: %s", err ? err : "");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.0"), "accepted");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.1"), "refused");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.2"), "refused");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.3"), "refused");
    /* This Debian OpenSSL has no SSL 3.0: never "refused" for it. */
    ck_assert_str_eq(stored("mp1.test", p.port, "ssl3"),
                     st.can[WIRE_SSL3] ? "refused" : "untested");
    ck_assert_ptr_nonnull(strstr(out, "1 legacy handshake accepted"));
    free(out);
    free(err);
}
END_TEST

START_TEST(tls12_only_server)
{
    struct peer p = s_server("-tls1_2");
    set_port("mp1.test", p.port, false);
    char *out = NULL, *err = NULL;
    int rc = tu_tlsgate(db, &out, &err, "--json", "probe", "--site", "PS1", NULL);
    peer_stop(&p);
    ck_assert_msg(rc == 0, "probe: %s", err ? err : "");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.2"), "accepted");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.3"), "refused");
    struct probe_selftest st = selftest(0);
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.0"),
                     st.can[WIRE_TLS10] ? "refused" : "untested");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.1"),
                     st.can[WIRE_TLS11] ? "refused" : "untested");
    /* The site database has no peer on 1433 here: could not test, never refused. */
    ck_assert_str_eq(stored("sql1.test", 1433, "tls1.2"), "untested");
    ck_assert_ptr_nonnull(strstr(out, "\"selftest\""));
    free(out);
    free(err);
}
END_TEST

START_TEST(selftest_failing_makes_untested)
{
    struct peer p = s_server("-tls1_2");
    set_port("mp1.test", p.port, false);
    char *out = NULL, *err = NULL;
    char *env[] = {"TLSGATE_PROBE_SELFTEST_DENY=tls1.2", NULL};
    int rc = tu_tlsgate_env(db, env, &out, &err, "probe", "mp1.test", NULL);
    peer_stop(&p);
    ck_assert_msg(rc == 0, "probe: %s", err ? err : "");
    /* The server does accept TLS 1.2, but the prober could not prove it can speak it. */
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.2"), "untested");
    ck_assert_ptr_nonnull(strstr(out, "TLS 1.2: could not test anywhere"));
    free(out);
    free(err);
    rc = tu_tlsgate_env(db, (char *[]){"TLSGATE_PROBE_SELFTEST_DENY=tls9", NULL}, NULL, &err,
                        "probe", NULL);
    ck_assert_int_eq(rc, 2);
    ck_assert_ptr_nonnull(strstr(err, "tls9"));
    free(err);
}
END_TEST

START_TEST(sql_server_through_tds)
{
    struct probe_selftest st = selftest(0);
    struct peer p = tds_peer("tls1", "tls1_2", false);
    set_port("sql1.test", p.port, true);
    char *out = NULL, *err = NULL;
    int rc = tu_tlsgate(db, &out, &err, "probe", "sql1.test", NULL);
    peer_stop(&p);
    ck_assert_msg(rc == 0, "probe: %s", err ? err : "");
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.2"), "accepted");
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.3"), "refused");
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.0"),
                     st.can[WIRE_TLS10] ? "accepted" : "untested");
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.1"),
                     st.can[WIRE_TLS11] ? "accepted" : "untested");
    free(out);
    free(err);

    /* TLS 1.2 only. */
    p = tds_peer("tls1_2", "tls1_2", false);
    set_port("sql1.test", p.port, true);
    rc = tu_tlsgate(db, NULL, NULL, "probe", "sql1.test", NULL);
    peer_stop(&p);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.2"), "accepted");
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.0"),
                     st.can[WIRE_TLS10] ? "refused" : "untested");

    /* A server that offers no TLS at all: nothing can be judged. */
    p = tds_peer("tls1_2", "tls1_3", true);
    set_port("sql1.test", p.port, true);
    rc = tu_tlsgate(db, &out, NULL, "probe", "sql1.test", NULL);
    peer_stop(&p);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.2"), "untested");
    ck_assert_ptr_nonnull(strstr(out, "ENCRYPT_NOT_SUP"));
    free(out);
}
END_TEST

START_TEST(tds_port_that_speaks_plain_tls)
{
    /* A TLS server where TDS was expected: its answer is no TDS packet, so untested. */
    struct peer p = s_server("-tls1_2");
    set_port("sql1.test", p.port, true);
    char *out = NULL;
    int rc = tu_tlsgate(db, &out, NULL, "probe", "sql1.test", NULL);
    peer_stop(&p);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.2"), "untested");
    free(out);
}
END_TEST

START_TEST(bad_input)
{
    char *err = NULL;
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "probe", "nosuch.test", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "nosuch.test"));
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "probe", "--site", "XX9", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "XX9"));
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "probe", "ports", "mp1.test", "99999", NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "99999"));
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "probe", "--concurrency", "0", NULL), 2);
    free(err);
    /* Nothing was written by the refused commands. */
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM probe_port", NULL), 0);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM probe_result", NULL), 0);
}
END_TEST

START_TEST(closed_port_is_untested)
{
    /* A port nobody listens on (bound, then closed: the kernel refuses connections). */
    int port = tu_closed_port();
    set_port("mp1.test", port, false);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "probe", "mp1.test", NULL), 0);
    ck_assert_str_eq(stored("mp1.test", port, "tls1.0"), "untested");
    ck_assert_str_eq(stored("mp1.test", port, "tls1.2"), "untested");
    char *out = NULL;
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "probe", "show", "mp1.test", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "could not test: connect 127.0.0.1"));
    free(out);
}
END_TEST

/* Registry off (fresh reports say legacy disabled) but the wire still accepts TLS 1.0: the site
 * is held in enforce as "restart pending"; after the "restart" (a server that refuses TLS 1.0)
 * it completes; a legacy protocol accepted after complete is an alarm. */
START_TEST(restart_pending_held_in_enforce)
{
    struct probe_selftest st = selftest(0);
    if (!st.can[WIRE_TLS10]) {
        printf("restart_pending: this OpenSSL cannot speak TLS 1.0: skipped\n");
        return;
    }
    struct store *s = fx_open(db);
    fx_sql(s, "UPDATE site SET phase = 'enforce'");
    fx_sql(s,
           "INSERT INTO report (host_id, collected_at, received_at, body, catalog_version, "
           "blockers, warnings, legacy_disabled) SELECT id, %lld, %lld, '{}', 'test', 0, 0, 1 "
           "FROM host",
           (long long)time(NULL) - 60, (long long)time(NULL) - 60);
    store_close(s);

    struct peer p = s_server("-tls1");
    set_port("mp1.test", p.port, false);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "probe", "mp1.test", NULL), 0);
    peer_stop(&p);
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(tu_tlsgate(db, &out, &err, "phase", "advance", "--site", "PS1", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "restart-pending"));
    ck_assert_ptr_nonnull(strstr(out, "tls1.0 on"));
    ck_assert_ptr_nonnull(strstr(out, "restart the server"));
    free(out);
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "gate", "check", "mp1.test", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "RESTART PENDING"));
    free(out);

    /* Restarted: TLS 1.2 only now. The old port's answers are forgotten with the new probe. */
    p = s_server("-tls1_2");
    set_port("mp1.test", p.port, false);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "probe", "mp1.test", NULL), 0);
    peer_stop(&p);
    /* The site database was never probed: fail closed until it is. */
    ck_assert_int_eq(tu_tlsgate(db, &out, &err, "phase", "advance", "--site", "PS1", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "not-probed"));
    ck_assert_ptr_nonnull(strstr(out, "sql1.test"));
    free(out);
    free(err);
    p = tds_peer("tls1_2", "tls1_2", false);
    set_port("sql1.test", p.port, true);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "probe", "sql1.test", NULL), 0);
    peer_stop(&p);
    ck_assert_int_eq(tu_tlsgate(db, &out, &err, "phase", "advance", "--site", "PS1", NULL), 0);
    free(out);
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "phase", "status", NULL), 0);
    ck_assert_ptr_null(strstr(out, "ALARM"));
    free(out);

    /* After complete, TLS 1.0 back on the wire: an alarm. */
    p = s_server("-tls1");
    set_port("mp1.test", p.port, false);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "probe", "mp1.test", NULL), 0);
    peer_stop(&p);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "phase", "status", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "ALARM: 1 site system still accepts"));
    free(out);
}
END_TEST

static struct peer rc4_peer(const char *mode)
{
    char *argv[] = {"python3", (char *)tu_source_path("tests/peers/rc4_peer.py"), "--mode",
                    (char *)mode, NULL};
    return peer_start(argv);
}

/* A server that speaks TLS 1.0 only with RC4 (which OpenSSL 3 cannot offer): OpenSSL's
 * ClientHello meets a handshake_failure alert, so the probe asks again with a hand-built
 * ClientHello offering RC4 and 3DES; a ServerHello is "accepted", an alert "refused", no answer
 * "untested" — never a "refused" that only says what the prober could not speak. The peer is a
 * raw stand-in (tests/peers/rc4_peer.py): no real RC4 server exists on this system. */
START_TEST(rc4_only_server_is_not_called_disabled)
{
    struct probe_selftest st = selftest(0);
    if (!st.can[WIRE_TLS10] || !st.can[WIRE_TLS11]) {
        printf("rc4_only_server: this OpenSSL cannot speak TLS 1.0/1.1: skipped\n");
        return;
    }
    struct peer p = rc4_peer("rc4");
    set_port("mp1.test", p.port, false);
    char *out = NULL, *err = NULL;
    int rc = tu_tlsgate(db, &out, &err, "probe", "mp1.test", NULL);
    peer_stop(&p);
    ck_assert_msg(rc == 0, "probe: %s", err ? err : "");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.0"), "accepted");
    ck_assert_msg(strstr(out, "TLS_RSA_WITH_RC4_128_SHA") != NULL, "%s", out);
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.1"), "refused"); /* it chose TLS 1.0 */
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.2"), "refused");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.3"), "refused");
    free(out);
    free(err);

    /* A server that refuses the RC4 hello too: refused, and says both alerts. */
    p = rc4_peer("never");
    set_port("mp1.test", p.port, false);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "probe", "mp1.test", NULL), 0);
    peer_stop(&p);
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.0"), "refused");
    ck_assert_ptr_nonnull(strstr(out, "hand-built"));
    free(out);

    /* No answer to the RC4 hello: it cannot be told, so untested. */
    p = rc4_peer("silent");
    set_port("mp1.test", p.port, false);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "probe", "mp1.test", NULL), 0);
    peer_stop(&p);
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.0"), "untested");
    ck_assert_str_eq(stored("mp1.test", p.port, "tls1.2"), "refused"); /* not legacy: as before */
    ck_assert_ptr_nonnull(strstr(out, "OpenSSL 3 cannot speak RC4"));
    free(out);
}
END_TEST

/* The same fallback through TDS: a SQL Server that speaks TLS 1.0 only with RC4 alerts to
 * OpenSSL's ClientHello inside the TDS packets; the hand-built ClientHello goes in TDS packets
 * too (after a new PRELOGIN) and its ServerHello says "accepted", an alert "refused", bytes that
 * are no TLS record "untested". */
START_TEST(rc4_only_sql_server_through_tds)
{
    struct probe_selftest st = selftest(0);
    if (!st.can[WIRE_TLS10] || !st.can[WIRE_TLS11]) {
        printf("rc4_only_sql_server: this OpenSSL cannot speak TLS 1.0/1.1: skipped\n");
        return;
    }
    struct peer p = tds_peer_rc4("tls1_2", "tls1_2", false, "rc4");
    set_port("sql1.test", p.port, true);
    char *out = NULL, *err = NULL;
    int rc = tu_tlsgate(db, &out, &err, "probe", "sql1.test", NULL);
    peer_stop(&p);
    ck_assert_msg(rc == 0, "probe: %s", err ? err : "");
    ck_assert_msg(!strcmp(stored("sql1.test", p.port, "tls1.0"), "accepted"), "%s", out);
    ck_assert_msg(strstr(out, "TLS_RSA_WITH_RC4_128_SHA") != NULL, "%s", out);
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.1"), "refused"); /* it chose TLS 1.0 */
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.2"), "refused");
    free(out);
    free(err);

    /* It alerts to the hand-built ClientHello too: refused, saying both alerts. */
    p = tds_peer_rc4("tls1_2", "tls1_2", false, "never");
    set_port("sql1.test", p.port, true);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "probe", "sql1.test", NULL), 0);
    peer_stop(&p);
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.0"), "refused");
    ck_assert_msg(strstr(out, "hand-built") != NULL, "%s", out);
    free(out);

    /* Garbage in the TDS packet instead of a TLS record: it cannot be told. */
    p = tds_peer_rc4("tls1_2", "tls1_2", false, "garbage");
    set_port("sql1.test", p.port, true);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "probe", "sql1.test", NULL), 0);
    peer_stop(&p);
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.0"), "untested");
    ck_assert_str_eq(stored("sql1.test", p.port, "tls1.1"), "untested");
    ck_assert_msg(strstr(out, "neither a ServerHello nor an alert") != NULL, "%s", out);
    free(out);
}
END_TEST

/* A loopback port that completes TCP connections and never answers (listening, never
 * accepting): a handshake there waits for its timeout until the listener is closed. */
static int stall_listener(int *port)
{
    /* CLOEXEC (tu_loopback_listener): the daemon started after it must not keep it open. */
    return tu_loopback_listener(64, port);
}

static char *read_log(const char *path)
{
    size_t len = 0;
    char *log = tu_read_file(path, &len);
    return log ? log : strdup("");
}

/* The daemon probes on its own schedule (config "probe"), on its own thread: real s_server and
 * TDS peers, the same stored outcomes as `tlsgate probe`, a log line per round and per host
 * accepting a legacy protocol, counters on the metrics page; and a probe stuck on a port that
 * never answers does not hold up the pulls. */
START_TEST(daemon_probes_on_its_own_schedule)
{
    struct probe_selftest st = selftest(0);
    struct peer tls10 = s_server("-tls1");
    struct peer sql = tds_peer("tls1_2", "tls1_2", false);
    int stall_port;
    int stall_fd = stall_listener(&stall_port);
    char p1[16], p2[16];
    snprintf(p1, sizeof(p1), "%d", tls10.port);
    snprintf(p2, sizeof(p2), "%d", stall_port);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "probe", "ports", "mp1.test", p1, p2, NULL), 0);
    set_port("sql1.test", sql.port, true);

    int metrics_port = tu_closed_port();
    char *config = strdup(tu_path(dir, "daemon.json"));
    char *log = strdup(tu_path(dir, "daemon.log"));
    char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s\", \"cert\": \"%s\", \"key\": \"%s\"}, \"jitter\": 0,"
             " \"connect_timeout\": 2, \"timeout\": 2, \"metrics\": \"127.0.0.1:%d\","
             " \"probe\": {\"interval\": \"6h\", \"concurrency\": 4, \"timeout\": 60}}",
             tu_path(certs, "ca.pem"), tu_path(certs, "orchestrator.pem"),
             tu_path(certs, "orchestrator.key"), metrics_port);
    tu_write_file(config, buf, strlen(buf));
    pid_t pid = tu_tlsgate_start(db, config, "daemon", log, true);

    /* Both hosts pulled (and failing: no collector) while the probe waits on the silent port. */
    bool pulled = tu_wait_db_int(db, "SELECT count(*) FROM poll WHERE last_attempt_at IS NOT NULL",
                                 NULL, 2, 30000);
    char *text = read_log(log);
    ck_assert_msg(pulled, "no pull while probing:\n%s", text);
    ck_assert_msg(strstr(text, "probe: every 21600 s") != NULL, "%s", text);
    ck_assert_ptr_null(strstr(text, "probe round done"));
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM probe_result p JOIN host h ON h.id = p.host_id"
                               " WHERE h.name = 'mp1.test'",
                               NULL),
                     0);
    free(text);
    close(stall_fd); /* the stuck handshakes end (reset): the round finishes */
    if (!tu_wait_file_contains(log, "probe round done", 60000)) {
        text = read_log(log);
        ck_abort_msg("no probe round:\n%.3000s", text);
    }
    ck_assert_str_eq(stored("sql1.test", sql.port, "tls1.2"), "accepted");
    ck_assert_str_eq(stored("sql1.test", sql.port, "tls1.3"), "refused");
    /* The silent port: handshakes reset when its listener closed (refused, as SCHANNEL's reset
     * of a disabled protocol) or connections refused after (untested); never accepted. */
    snprintf(buf, sizeof(buf), "%d", stall_port);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM probe_result WHERE port = ?1", buf), 5);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM probe_result WHERE port = ?1"
                               " AND result = 'accepted'",
                               buf),
                     0);
    ck_assert_str_eq(stored("mp1.test", tls10.port, "tls1.2"), "refused");
    ck_assert_str_eq(stored("mp1.test", tls10.port, "tls1.0"),
                     st.can[WIRE_TLS10] ? "accepted" : "untested");
    text = read_log(log);
    ck_assert_ptr_nonnull(strstr(text, "probe round done: 2 site systems, 15 handshakes stored"));
    if (st.can[WIRE_TLS10]) {
        char want[96];
        snprintf(want, sizeof(want),
                 "host=mp1.test probe: legacy protocol accepted on the wire: "
                 "tls1.0 on %d",
                 tls10.port);
        ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    }
    free(text);

    struct tu_fetch f = {.path = "/metrics", .host = "127.0.0.1", .plain = 1};
    tu_fetch_run((uint16_t)metrics_port, &f);
    ck_assert_int_eq(f.code, 200);
    ck_assert_ptr_nonnull(strstr(f.out, "\ntlsgate_probe_rounds_total 1\n"));
    ck_assert_ptr_nonnull(strstr(f.out, "tlsgate_probe_handshakes_total{result=\"untested\"}"));
    snprintf(buf, sizeof(buf), "\ntlsgate_probe_legacy_accepted_total %d\n",
             st.can[WIRE_TLS10] ? 1 : 0);
    ck_assert_msg(strstr(f.out, buf) != NULL, "%s", f.out);
    tu_fetch_release(&f);

    /* Not due again for 6 hours: a stop ends it at once and cleanly. */
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
    peer_stop(&tls10);
    peer_stop(&sql);
    text = read_log(log);
    const char *first = strstr(text, "probe round ");
    ck_assert_msg(first && !strstr(first + 1, "probe round "), "not one round:\n%s", text);
    free(text);
    free(config);
    free(log);
}
END_TEST

/* The daemon's config for a test: the fleet CA of `certs`, fast pulls that fail (no collector
 * listens), then `extra` (", \"key\": ..."). */
static char *daemon_config(const char *name, const char *extra)
{
    char *config = strdup(tu_path(dir, name));
    char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s\", \"cert\": \"%s\", \"key\": \"%s\"}, \"jitter\": 0,"
             " \"connect_timeout\": 2, \"timeout\": 2%s}",
             tu_path(certs, "ca.pem"), tu_path(certs, "orchestrator.pem"),
             tu_path(certs, "orchestrator.key"), extra);
    tu_write_file(config, buf, strlen(buf));
    return config;
}

/* Scrapes the metrics page until it contains `want`; the page, or NULL after `ms`. */
static char *metrics_wait(int port, const char *want, long ms)
{
    for (long waited = 0;; waited += 100) {
        struct tu_fetch f = {.path = "/metrics", .host = "127.0.0.1", .plain = 1};
        tu_fetch_run((uint16_t)port, &f);
        if (f.code == 200 && f.out && strstr(f.out, want)) {
            char *page = strdup(f.out);
            tu_fetch_release(&f);
            return page;
        }
        tu_fetch_release(&f);
        if (waited >= ms)
            return NULL;
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
}

/* A site in enforce whose servers report the legacy protocols off, and a probe of both that
 * refused TLS 1.0 and 1.1 `age` seconds ago. */
static void enforce_probed_ago(long long age)
{
    long long now = (long long)time(NULL);
    struct store *s = fx_open(db);
    fx_sql(s, "UPDATE site SET phase = 'enforce'");
    fx_sql(s,
           "INSERT INTO report (host_id, collected_at, received_at, body, catalog_version, "
           "blockers, warnings, legacy_disabled) SELECT id, %lld, %lld, '{}', 'test', 0, 0, 1 "
           "FROM host",
           now - 60, now - 60);
    fx_sql(s,
           "INSERT INTO probe_result (host_id, port, protocol, result, at) SELECT h.id, 443,"
           " v.p, 'refused', %lld FROM host h, (SELECT 'tls1.0' AS p UNION ALL SELECT 'tls1.1') v",
           now - age);
    store_close(s);
}

/* probe.max_age is one setting for every consumer: with "1h", a probe 2 hours old is stale in
 * the daemon's metrics and on its status page as it is in `phase status`, while the default
 * (7 days) still counts it. */
START_TEST(daemon_honours_probe_max_age)
{
    enforce_probed_ago(7200);
    /* The default window: the same probe is recent enough. */
    char *out = NULL;
    const char *page = tu_path(dir, "default.html");
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "report", "html", "--out", page, NULL), 0);
    size_t len = 0;
    char *html = tu_read_file(page, &len);
    ck_assert_ptr_nonnull(strstr(html, "data-k=\"wire_stale\">0<"));
    ck_assert_ptr_null(strstr(html, "NOT PROBED"));
    free(html);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "phase", "status", NULL), 0);
    ck_assert_msg(strstr(out, "blocked by") == NULL, "%s", out);
    free(out);

    int metrics_port = tu_closed_port();
    char extra[512];
    char *status = strdup(tu_path(dir, "status.html"));
    snprintf(extra, sizeof(extra),
             ", \"metrics\": \"127.0.0.1:%d\", \"report_html\": \"%s\","
             " \"probe\": {\"max_age\": \"1h\"}",
             metrics_port, status);
    char *config = daemon_config("maxage.json", extra);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "--config", config, "phase", "status", NULL), 0);
    ck_assert_msg(strstr(out, ": blocked by 2 ") != NULL, "%s", out);
    free(out);
    char *log = strdup(tu_path(dir, "maxage.log"));
    pid_t pid = tu_tlsgate_start(db, config, "daemon", log, true);
    char *metrics =
        metrics_wait(metrics_port, "tlsgate_site_wire_not_probed{site=\"PS1\"} 2\n", 20000);
    ck_assert_msg(metrics != NULL, "metrics never showed the stale probe as not probed");
    ck_assert_ptr_nonnull(strstr(metrics, "tlsgate_site_wire_alarm{site=\"PS1\"} 0\n"));
    free(metrics);
    ck_assert_msg(tu_wait_file_contains(status, "data-k=\"wire_stale\"", 30000), "no status page");
    html = tu_read_file(status, &len);
    ck_assert_msg(strstr(html, "data-k=\"wire_stale\">2<") != NULL, "%s", html);
    ck_assert_ptr_nonnull(strstr(html, "data-k=\"wire_not_probed\" data-value=\"2\""));
    ck_assert_ptr_nonnull(strstr(html, "2 NOT PROBED"));
    free(html);
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
    free(config);
    free(status);
    free(log);
}
END_TEST

static int count_in(const char *text, const char *needle)
{
    int n = 0;
    for (const char *at = text; (at = strstr(at, needle)); at += strlen(needle))
        n++;
    return n;
}

/* Waits until the log holds `needle` at least `n` times. */
static bool log_wait_count(const char *log, const char *needle, int n, long ms)
{
    for (long waited = 0;; waited += 100) {
        char *text = read_log(log);
        int have = count_in(text, needle);
        free(text);
        if (have >= n)
            return true;
        if (waited >= ms)
            return false;
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
}

static void rewrite_config(const char *config, const char *extra)
{
    char *again = daemon_config("next.json", extra);
    ck_assert_int_eq(rename(again, config), 0);
    free(again);
}

/* SIGHUP reloads the "probe" settings as it does the rest: a daemon started with the probe off
 * starts probing, a config with a bad probe setting is refused and the probe keeps its settings,
 * a shorter interval takes effect at once, interval 0 turns it off. A real daemon, a real TLS
 * 1.2 server. */
START_TEST(daemon_reloads_probe_on_sighup)
{
    struct peer tls12 = s_server("-tls1_2");
    set_port("mp1.test", tls12.port, false);
    set_port("sql1.test", tu_closed_port(), true);
    char *config = daemon_config("hup.json", "");
    char *log = strdup(tu_path(dir, "hup.log"));
    pid_t pid = tu_tlsgate_start(db, config, "daemon", log, true);
    ck_assert(tu_wait_file_contains(log, "daemon started", 20000));
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM probe_result", NULL), 0);

    /* Probe off -> on. */
    rewrite_config(config,
                   ", \"probe\": {\"interval\": \"1h\", \"concurrency\": 2, \"timeout\": 5}");
    kill(pid, SIGHUP);
    bool round = log_wait_count(log, "probe round done", 1, 60000);
    char *text = read_log(log);
    ck_assert_msg(round, "no probe round after SIGHUP:\n%s", text);
    ck_assert_msg(strstr(text, "probe: every 3600 s, 2 handshakes at once, 5000 ms each") != NULL,
                  "%s", text);
    free(text);
    ck_assert_str_eq(stored("mp1.test", tls12.port, "tls1.2"), "accepted");

    /* A bad probe setting: the whole reload is refused, naming the key; the probe keeps 1h. */
    rewrite_config(config, ", \"probe\": {\"interval\": \"soon\"}");
    kill(pid, SIGHUP);
    ck_assert(tu_wait_file_contains(log, "SIGHUP: keeping the old settings", 20000));
    text = read_log(log);
    ck_assert_msg(strstr(text, "probe.interval") != NULL, "%s", text);
    ck_assert_int_eq(count_in(text, "probe: every"), 1);
    ck_assert_int_eq(count_in(text, "probe round done"), 1);
    free(text);

    /* A 1 s interval: due again at once (the 1h one would wait an hour). */
    rewrite_config(config, ", \"probe\": {\"interval\": 1, \"concurrency\": 2, \"timeout\": 5}");
    kill(pid, SIGHUP);
    round = log_wait_count(log, "probe round done", 2, 60000);
    text = read_log(log);
    ck_assert_msg(round, "the new interval was not taken:\n%s", text);
    ck_assert_ptr_nonnull(strstr(text, "probe: every 1 s, 2 handshakes at once"));
    free(text);

    /* Off again. */
    rewrite_config(config, ", \"probe\": {\"interval\": 0}");
    kill(pid, SIGHUP);
    ck_assert(log_wait_count(log, "probe: off (probe.interval 0)", 1, 20000));
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
    peer_stop(&tls12);
    free(config);
    free(log);
}
END_TEST

/* "wire on after complete is an alarm" everywhere the daemon speaks: a log line per site
 * system (when its probe thread starts and after each round), the metric, the status page; and
 * `phase status`. The probe that found it was `tlsgate probe`'s, against a real TLS 1.0 server. */
START_TEST(daemon_alarm_when_complete_site_accepts_legacy)
{
    struct probe_selftest st = selftest(0);
    if (!st.can[WIRE_TLS10]) {
        printf("daemon_alarm: this OpenSSL cannot speak TLS 1.0: skipped\n");
        return;
    }
    struct store *s = fx_open(db);
    fx_sql(s, "UPDATE site SET phase = 'complete'");
    store_close(s);
    struct peer tls10 = s_server("-tls1");
    set_port("mp1.test", tls10.port, false);
    set_port("sql1.test", tu_closed_port(), true);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "probe", "--site", "PS1", NULL), 0);
    peer_stop(&tls10);

    int metrics_port = tu_closed_port();
    char *status = strdup(tu_path(dir, "alarm.html"));
    char extra[512];
    snprintf(extra, sizeof(extra),
             ", \"metrics\": \"127.0.0.1:%d\", \"report_html\": \"%s\","
             " \"probe\": {\"interval\": \"6h\"}",
             metrics_port, status);
    char *config = daemon_config("alarm.json", extra);
    char *log = strdup(tu_path(dir, "alarm.log"));
    pid_t pid = tu_tlsgate_start(db, config, "daemon", log, true);
    bool logged = tu_wait_file_contains(log, "ALARM (site PS1 is complete)", 20000);
    char *text = read_log(log);
    ck_assert_msg(logged, "no alarm line:\n%s", text);
    char want[160];
    ck_assert_msg(strstr(text, "host=mp1.test ALARM (site PS1 is complete): the probe at ") != NULL,
                  "%s", text);
    snprintf(want, sizeof(want), "found tls1.0 on %d accepted after `complete`", tls10.port);
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    ck_assert_ptr_null(strstr(text, "host=sql1.test ALARM"));
    free(text);
    char *metrics = metrics_wait(metrics_port, "tlsgate_site_wire_alarm{site=\"PS1\"} 1\n", 20000);
    ck_assert_msg(metrics != NULL, "the alarm is not on the metrics page");
    free(metrics);
    ck_assert_msg(tu_wait_file_contains(status, "data-k=\"wire_alarm\"", 30000),
                  "no alarm on the status page");
    size_t len = 0;
    char *html = tu_read_file(status, &len);
    ck_assert_ptr_nonnull(strstr(html, "data-k=\"wire_alarm\" data-value=\"1\""));
    ck_assert_ptr_nonnull(strstr(html, "ALARM: 1 site system still accepts"));
    free(html);
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
    char *out = NULL;
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "phase", "status", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "ALARM: 1 site system still accepts"));
    free(out);

    /* Waived (the owner knows, with a date): no alarm line at the next start. */
    ck_assert_int_eq(
        tu_tlsgate(db, NULL, NULL, "waive", "mp1.test", "--reason", "vendor appliance", NULL), 0);
    unlink(log);
    pid = tu_tlsgate_start(db, config, "daemon", log, true);
    ck_assert(tu_wait_file_contains(log, "probe: every", 20000));
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, 20000), 0);
    text = read_log(log);
    ck_assert_msg(strstr(text, "ALARM") == NULL, "%s", text);
    free(text);
    free(config);
    free(status);
    free(log);
}
END_TEST

/* A bad "probe" config is bad input naming the key; the daemon does not start. */
START_TEST(daemon_probe_config_errors)
{
    const char *bad[] = {"{\"probe\": {\"interval\": \"6 hours\"}}",
                         "{\"probe\": {\"concurrency\": 0}}", "{\"probe\": {\"timeout\": \"2w\"}}",
                         "{\"probe\": {\"every\": 5}}", "{\"probe\": 5}"};
    const char *key[] = {"probe.interval", "probe.concurrency", "probe.timeout", "probe.every",
                         "probe"};
    char *config = strdup(tu_path(dir, "bad.json"));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tu_write_file(config, bad[i], strlen(bad[i]));
        char *err = NULL;
        int rc = tu_tlsgate(db, NULL, &err, "--config", config, "daemon", NULL);
        ck_assert_msg(rc == 3, "%s: exit %d", bad[i], rc);
        ck_assert_msg(err && strstr(err, key[i]), "%s: %s", bad[i], err ? err : "");
        free(err);
    }
    free(config);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("probe");
    TCase *tc = tu_tcase(
        s, "probe", setup, teardown,
        TU_TESTS(selftest_speaks_modern_and_says_why_not, tls10_server, tls12_only_server,
                 selftest_failing_makes_untested, sql_server_through_tds,
                 tds_port_that_speaks_plain_tls, bad_input, closed_port_is_untested,
                 restart_pending_held_in_enforce, rc4_only_server_is_not_called_disabled,
                 rc4_only_sql_server_through_tds, daemon_probes_on_its_own_schedule,
                 daemon_probe_config_errors, daemon_honours_probe_max_age,
                 daemon_reloads_probe_on_sighup, daemon_alarm_when_complete_site_accepts_legacy));
    tcase_set_timeout(tc, 120);
    return tu_run_suite(s);
}

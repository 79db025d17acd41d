/*
 * test_enrollcli.c — the collector's side of enrollment (collectors/enroll.c and the enrollment
 * parts of collector.c): key and request, the renew schedule, the files, the HTTPS client
 * against real loopback TLS peers that misbehave (tests/enroll/peer.py: oversized, truncated,
 * slow, silent, wrong certificate, wrong host name), and the real tlsgate-collector enrolling,
 * serving and renewing against a peer that really signs requests with the test CA.
 */
#include <check.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "enroll.h"
#include "testutil.h"

#define DEADLINE_MS 30000

static char *certs; /* ca, localhost, wrong.example, orchestrator (tools/gen-certs) */
static char *other; /* another CA with its own localhost */
static char *dir;   /* per test */

static char *read_text(const char *path)
{
    char *t = tu_read_file(path, NULL);
    ck_assert_msg(t != NULL, "%s is missing", path);
    return t;
}

/* ---- the peer ---- */

struct peer {
    pid_t pid;
    int in_fd;
    int ports[16];
    int n;
    char log[1024];
};

/* Starts tests/enroll/peer.py with SPECs "MODE,NAME" (NAME under certs, or a path prefix). */
static void peer_start(struct peer *p, const char *const specs[], const char *extra1,
                       const char *extra2)
{
    char *argv[32];
    int n = 0;
    argv[n++] = "python3";
    argv[n++] = (char *)tu_source_path("tests/enroll/peer.py");
    argv[n++] = "--certs";
    argv[n++] = certs;
    argv[n++] = "--log";
    snprintf(p->log, sizeof(p->log), "%s/peer.log", dir);
    argv[n++] = p->log;
    if (extra1)
        argv[n++] = (char *)extra1;
    if (extra2)
        argv[n++] = (char *)extra2;
    for (int i = 0; specs[i] && n < 30; i++)
        argv[n++] = (char *)specs[i];
    argv[n] = NULL;
    p->n = tu_python_peer(argv, &p->pid, &p->in_fd, p->ports, 16);
}

static void peer_stop(struct peer *p)
{
    close(p->in_fd);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
}

static char url_buf[8][64];
static int url_next;
static const char *url_of(const char *host, int port)
{
    char *u = url_buf[url_next++ % 8];
    snprintf(u, 64, "https://%s:%d", host, port);
    return u;
}

/* One POST of a small JSON body to port; returns enroll_http_post's code, err filled. */
static int post(const char *url, const char *ca_file, long timeout_ms, struct enroll_http *h,
                char *err, size_t errsize)
{
    char *ca = read_text(ca_file);
    *h = (struct enroll_http){.url = url,
                              .path = "/v1/enroll",
                              .ca_pem = ca,
                              .body = "{}",
                              .body_len = 2,
                              .timeout_ms = timeout_ms};
    int rc = enroll_http_post(h, err, errsize);
    free(ca);
    return rc;
}

/* ---- key, request, schedule, files ---- */

START_TEST(test_enroll_key_is_p256_and_csr_names_host_and_is_self_signed)
{
    char err[512], *key = NULL, *csr = NULL;
    ck_assert_int_eq(enroll_key_generate(&key, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(key, "BEGIN PRIVATE KEY"));
    ck_assert_int_eq(enroll_csr_make(key, "pc1.site.example", &csr, err, sizeof(err)), 0);
    ck_assert_ptr_eq(strstr(csr, "-----BEGIN CERTIFICATE REQUEST-----"), csr); /* as the protocol */

    gnutls_x509_privkey_t k;
    gnutls_datum_t kd = {(unsigned char *)key, (unsigned)strlen(key)};
    ck_assert_int_eq(gnutls_x509_privkey_init(&k), 0);
    ck_assert_int_eq(gnutls_x509_privkey_import2(k, &kd, GNUTLS_X509_FMT_PEM, NULL, 0), 0);
    gnutls_ecc_curve_t curve;
    ck_assert_int_eq(gnutls_x509_privkey_get_pk_algorithm(k), GNUTLS_PK_ECDSA);
    ck_assert_int_eq(gnutls_x509_privkey_export_ecc_raw(k, &curve, NULL, NULL, NULL), 0);
    ck_assert_int_eq(curve, GNUTLS_ECC_CURVE_SECP256R1);

    gnutls_x509_crq_t q;
    gnutls_datum_t qd = {(unsigned char *)csr, (unsigned)strlen(csr)};
    ck_assert_int_eq(gnutls_x509_crq_init(&q), 0);
    ck_assert_int_eq(gnutls_x509_crq_import(q, &qd, GNUTLS_X509_FMT_PEM), 0);
    ck_assert_int_eq(gnutls_x509_crq_verify(q, 0), 0); /* proof of possession */
    char cn[256];
    size_t cnlen = sizeof(cn);
    ck_assert_int_eq(
        gnutls_x509_crq_get_dn_by_oid(q, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &cnlen), 0);
    ck_assert_str_eq(cn, "pc1.site.example");
    unsigned char a[64], b[64];
    size_t alen = sizeof(a), blen = sizeof(b);
    ck_assert_int_eq(gnutls_x509_crq_get_key_id(q, 0, a, &alen), 0);
    ck_assert_int_eq(gnutls_x509_privkey_get_key_id(k, 0, b, &blen), 0);
    ck_assert_mem_eq(a, b, alen);
    gnutls_x509_crq_deinit(q);
    gnutls_x509_privkey_deinit(k);

    char *key2 = NULL;
    ck_assert_int_eq(enroll_key_generate(&key2, err, sizeof(err)), 0);
    ck_assert_str_ne(key, key2); /* a new key each time */
    ck_assert_int_eq(enroll_csr_make("not a key", "x", &csr, err, sizeof(err)), -EINVAL);
    free(key);
    free(key2);
    free(csr);
}
END_TEST

START_TEST(test_enroll_url_accepts_https_host_port_only)
{
    struct enroll_url u;
    char err[512];
    ck_assert_int_eq(enroll_url_parse("https://orch.example.com:8444", &u, err, sizeof(err)), 0);
    ck_assert_str_eq(u.host, "orch.example.com");
    ck_assert_str_eq(u.port, "8444");
    ck_assert_int_eq(enroll_url_parse("https://[::1]:9/", &u, err, sizeof(err)), 0);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_str_eq(u.port, "9");
    ck_assert_int_eq(enroll_url_parse("https://orch", &u, err, sizeof(err)), 0);
    ck_assert_str_eq(u.port, "443");
    const char *bad[] = {"http://orch:1",      "https://:8443",     "https://orch:0",
                         "https://orch:70000", "https://orch:1/v1", "https://u@orch:1",
                         "https://orch:1?x",   "https://[::1:1",    "orch:8443",
                         "https://orch:12ab"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(enroll_url_parse(bad[i], &u, err, sizeof(err)) == -EINVAL, "%s", bad[i]);
        ck_assert_msg(strstr(err, bad[i]) != NULL, "the error names the URL: %s", err);
    }
}
END_TEST

START_TEST(test_enroll_renew_point_is_fraction_of_lifetime)
{
    long long nb = 1700000000, day = 86400;
    ck_assert_int_eq(enroll_renew_at(nb, nb + 60 * day, 0.5), nb + 30 * day);
    ck_assert_int_eq(enroll_renew_at(nb, nb + 60 * day, 0.75), nb + 45 * day);
    ck_assert_int_eq(enroll_renew_at(nb, nb + 100, 0.05), nb + 5);
    /* out of range fractions fall back to the default half */
    ck_assert_int_eq(enroll_renew_at(nb, nb + 60 * day, 0), nb + 30 * day);
    ck_assert_int_eq(enroll_renew_at(nb, nb + 60 * day, 1.5), nb + 30 * day);
    /* an inverted certificate is due at once */
    ck_assert_int_eq(enroll_renew_at(nb, nb - 1, 0.5), nb);
}
END_TEST

START_TEST(test_enroll_backoff_doubles_within_bounds_and_spreads)
{
    for (unsigned attempt = 0; attempt < 40; attempt++) {
        long full = 15;
        for (unsigned i = 0; i < attempt && full < 3600; i++)
            full = full * 2 > 3600 ? 3600 : full * 2;
        long lo = 1 << 30, hi = 0;
        for (uint64_t r = 0; r < 2000; r += 7) {
            long d = enroll_backoff(attempt, 15, 3600, r * 2654435761u);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        ck_assert_int_ge(lo, full / 2);
        ck_assert_int_le(hi, full);
        ck_assert_int_lt(lo, hi); /* spread, not in step */
    }
    ck_assert_int_ge(enroll_backoff(0, 0, 0, 0), 1);
}
END_TEST

START_TEST(test_enroll_secret_file_trimmed_and_checked)
{
    char err[512], *s = NULL;
    const char *p = tu_path(dir, "secret");
    tu_write_file(p, "  s3cr3t-Value_1 \r\n", 19);
    ck_assert_int_eq(enroll_read_secret(p, &s, err, sizeof(err)), 0);
    ck_assert_str_eq(s, "s3cr3t-Value_1");
    free(s);
    struct {
        const char *data;
        size_t len;
        const char *says;
    } bad[] = {{"\n \n", 3, "empty"},
               {"two words", 9, "one word"},
               {"a\0b", 3, "NUL"},
               {"caf\xc3\xa9", 5, "printable ASCII"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tu_write_file(p, bad[i].data, bad[i].len);
        err[0] = '\0';
        ck_assert_int_lt(enroll_read_secret(p, &s, err, sizeof(err)), 0);
        ck_assert_msg(strstr(err, bad[i].says) && strstr(err, p), "%s", err);
    }
    char big[ENROLL_SECRET_MAX + 10];
    memset(big, 'a', sizeof(big));
    tu_write_file(p, big, sizeof(big));
    ck_assert_int_eq(enroll_read_secret(p, &s, err, sizeof(err)), -E2BIG);
    ck_assert_int_eq(enroll_read_secret(tu_path(dir, "none"), &s, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "none"));
}
END_TEST

/* A certificate for `key_pem` signed by the test CA (openssl, as a CA would). */
/* The file at `path` holds exactly `want`. */
static void assert_text(const char *path, const char *want)
{
    char *got = read_text(path);
    ck_assert_msg(got && !strcmp(got, want), "%s holds: %s", path, got ? got : "(missing)");
    free(got);
}

static char *issue_for(const char *key_pem, const char *name)
{
    char err[512], *csr = NULL;
    ck_assert_int_eq(enroll_csr_make(key_pem, name, &csr, err, sizeof(err)), 0);
    tu_write_file(tu_path(dir, "req.pem"), csr, strlen(csr));
    free(csr);
    char *cmd;
    ck_assert_int_ge(asprintf(&cmd,
                              "openssl x509 -req -in %s/req.pem -CA %s/ca.pem -CAkey %s/ca.key "
                              "-days 30 -out %s/issued.pem 2>/dev/null",
                              dir, certs, certs, dir),
                     0);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
    return read_text(tu_path(dir, "issued.pem"));
}

START_TEST(test_enroll_pair_install_is_atomic_and_recovers_an_interrupted_one)
{
    char err[512], *k1, *k2;
    ck_assert_int_eq(enroll_key_generate(&k1, err, sizeof(err)), 0);
    ck_assert_int_eq(enroll_key_generate(&k2, err, sizeof(err)), 0);
    char *c1 = issue_for(k1, "h.example"), *c2 = issue_for(k2, "h.example");
    char cert[1024], key[1024];
    snprintf(cert, sizeof(cert), "%s/host.pem", dir);
    snprintf(key, sizeof(key), "%s/host.key", dir);

    ck_assert_int_eq(enroll_pair_install(cert, key, c1, k1, err, sizeof(err)), 0);
    struct stat st;
    ck_assert_int_eq(stat(key, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    assert_text(key, k1);
    ck_assert_int_ne(stat(tu_path(dir, "host.key.new"), &st), 0);
    ck_assert_int_ne(stat(tu_path(dir, "host.pem.new"), &st), 0);
    ck_assert_int_ne(stat(tu_path(dir, "host.key.new.tmp"), &st), 0);
    ck_assert_int_eq(enroll_pair_recover(cert, key, err, sizeof(err)), 0);

    /* Interrupted after the key's rename: the new key is in place, CERT.new beside it. */
    tu_write_file(key, k2, strlen(k2));
    tu_write_file(tu_path(dir, "host.pem.new"), c2, strlen(c2));
    ck_assert_int_eq(enroll_pair_recover(cert, key, err, sizeof(err)), 1);
    assert_text(cert, c2);
    ck_assert_int_ne(stat(tu_path(dir, "host.pem.new"), &st), 0);

    /* Interrupted before the first rename: the old pair stays, the leftovers go. */
    tu_write_file(tu_path(dir, "host.key.new"), k1, strlen(k1));
    tu_write_file(tu_path(dir, "host.pem.new"), c1, strlen(c1));
    ck_assert_int_eq(enroll_pair_recover(cert, key, err, sizeof(err)), 0);
    assert_text(cert, c2);
    ck_assert_int_ne(stat(tu_path(dir, "host.key.new"), &st), 0);
    ck_assert_int_ne(stat(tu_path(dir, "host.pem.new"), &st), 0);

    /* A CERT.new that is not for KEY's key is dropped, not installed. */
    tu_write_file(tu_path(dir, "host.pem.new"), c1, strlen(c1));
    ck_assert_int_eq(enroll_pair_recover(cert, key, err, sizeof(err)), 0);
    assert_text(cert, c2);
    free(k1);
    free(k2);
    free(c1);
    free(c2);
}
END_TEST

/* ---- the HTTPS client against real peers ---- */

START_TEST(test_enroll_submit_gets_a_certificate_for_its_own_key)
{
    struct peer p;
    peer_start(&p, TU_ARGS("issue,localhost"), NULL, NULL);
    char err[512], *key;
    ck_assert_int_eq(enroll_key_generate(&key, err, sizeof(err)), 0);
    char *ca = read_text(tu_path(certs, "ca.pem"));
    struct enroll_params prm = {.url = url_of("localhost", p.ports[0]),
                                .ca_pem = ca,
                                .name = "pc7.enroll.test",
                                .site = "S01",
                                .secret = "s"};
    struct enroll_result r;
    enroll_submit(&prm, key, false, &r);
    ck_assert_msg(r.outcome == ENROLL_ISSUED, "%s", r.message);
    ck_assert_int_eq(r.http_status, 200);
    ck_assert_ptr_nonnull(strstr(r.cert_pem, "BEGIN CERTIFICATE"));
    ck_assert_ptr_nonnull(strstr(r.ca_pem, "BEGIN CERTIFICATE"));
    long long nb, na;
    ck_assert_int_eq(enroll_cert_times(r.cert_pem, &nb, &na), 0);
    ck_assert_int_eq(na, r.not_after);
    ck_assert_int_gt(na, (long long)time(NULL) + 59 * 86400);
    enroll_result_release(&r);

    free(key);
    free(ca);
    peer_stop(&p);
}
END_TEST

START_TEST(test_enroll_submit_reports_pending_refused_and_busy)
{
    struct peer p;
    peer_start(&p, TU_ARGS("pending,localhost", "refuse,localhost", "busy,localhost"), NULL, NULL);
    char err[512], *key;
    ck_assert_int_eq(enroll_key_generate(&key, err, sizeof(err)), 0);
    char *ca = read_text(tu_path(certs, "ca.pem"));
    struct enroll_params prm = {
        .ca_pem = ca, .name = "pc7.enroll.test", .site = "S01", .secret = "s"};
    struct enroll_result r;

    prm.url = url_of("localhost", p.ports[0]);
    enroll_submit(&prm, key, false, &r);
    ck_assert_int_eq(r.outcome, ENROLL_PENDING);
    ck_assert_int_eq(r.request, 7);
    ck_assert_int_eq(r.retry_after, 1);
    ck_assert_msg(strstr(r.message, "tlsgate enroll approve 7"), "%s", r.message);

    prm.url = url_of("localhost", p.ports[1]);
    enroll_submit(&prm, key, false, &r);
    ck_assert_int_eq(r.outcome, ENROLL_REFUSED);
    ck_assert_int_eq(r.http_status, 403);
    ck_assert_msg(strstr(r.message, "the site secret is wrong or retired"), "%s", r.message);

    prm.url = url_of("localhost", p.ports[2]);
    enroll_submit(&prm, key, false, &r);
    ck_assert_int_eq(r.outcome, ENROLL_RETRY);
    ck_assert_int_eq(r.retry_after, 2);
    ck_assert_msg(strstr(r.message, "503") && strstr(r.message, "store busy"), "%s", r.message);
    free(key);
    free(ca);
    peer_stop(&p);
}
END_TEST

/* post() to url fails with `want` (a -errno) within timeout_ms, its message holding `needle`
 * (when not NULL). */
static void post_fails(const char *url, long timeout_ms, int want, const char *needle)
{
    struct enroll_http h;
    char err[512];
    int rc = post(url, tu_path(certs, "ca.pem"), timeout_ms, &h, err, sizeof(err));
    ck_assert_msg(rc == want, "%s: %d, want %d: %s", url, rc, want, err);
    ck_assert_msg(!needle || strstr(err, needle), "%s: no '%s' in: %s", url, needle, err);
}

START_TEST(test_enroll_client_refuses_hostile_answers)
{
    struct peer p;
    peer_start(&p,
               TU_ARGS("huge,localhost", "truncated,localhost", "nolength,localhost",
                       "slow,localhost", "silent,localhost"),
               NULL, NULL);
    const char *ca = tu_path(certs, "ca.pem");
    struct enroll_http h;
    char err[512];

    ck_assert_int_eq(post(url_of("localhost", p.ports[0]), ca, 10000, &h, err, sizeof(err)),
                     -E2BIG);
    ck_assert_msg(strstr(err, "cap") && strstr(err, "localhost"), "%s", err);
    ck_assert_ptr_null(h.reply);

    post_fails(url_of("localhost", p.ports[1]), 10000, -EBADMSG, "truncated");

    post_fails(url_of("localhost", p.ports[2]), 10000, -EBADMSG, "Content-Length");

    /* A trickle and a peer that never speaks end at the deadline, not when the peer wants. */
    post_fails(url_of("localhost", p.ports[3]), 1500, -ETIMEDOUT, "deadline");
    post_fails(url_of("localhost", p.ports[4]), 1500, -ETIMEDOUT, "deadline");

    post_fails(url_of("127.0.0.1", tu_closed_port()), 5000, -ECONNREFUSED, "cannot connect");
    peer_stop(&p);
}
END_TEST

START_TEST(test_enroll_client_refuses_wrong_server_certificate_and_name)
{
    char other_localhost[1024];
    snprintf(other_localhost, sizeof(other_localhost), "pending,%s/localhost", other);
    struct peer p;
    const char *specs[] = {"pending,wrong.example", other_localhost, "pending,localhost", NULL};
    peer_start(&p, specs, NULL, NULL);
    const char *ca = tu_path(certs, "ca.pem");
    struct enroll_http h;
    char err[512];

    post_fails(url_of("localhost", p.ports[0]), 10000, -EACCES, "not for localhost");

    post_fails(url_of("localhost", p.ports[1]), 10000, -EACCES, "not trusted");

    /* The IP address is not the certificate's name either. */
    post_fails(url_of("127.0.0.1", p.ports[2]), 10000, -EACCES, NULL);

    /* The same peer, asked by its name, is fine. */
    ck_assert_int_eq(post(url_of("localhost", p.ports[2]), ca, 10000, &h, err, sizeof(err)), 0);
    ck_assert_int_eq(h.status, 202);
    ck_assert_ptr_nonnull(strstr(h.reply, "pending"));
    enroll_http_release(&h);
    peer_stop(&p);
}
END_TEST

/* ---- the collector ---- */

/* Where write_config puts the identity (relative to the config's folder). */
static const char *cert_rel = "host.pem", *key_rel = "host.key";

/* Writes DIR/collector.json enrolling as `host` at `url`; extra is more JSON members. */
static const char *write_config(const char *host, const char *url, const char *extra)
{
    const char *cfg = tu_path(dir, "collector.json");
    tu_write_file(tu_path(dir, "site.secret"), "S01-secret-1234\n", 16);
    char *text;
    ck_assert_int_ge(asprintf(&text,
                              "{\"listen\": \"127.0.0.1:0\", \"cert\": \"%s\", \"key\": "
                              "\"%s\", \"ca\": \"%s/ca.pem\", \"facts\": \"%s\", "
                              "\"host\": \"%s\", \"interval\": 3600, \"enroll\": {\"url\": "
                              "\"%s\", \"site\": \"S01\", \"secret_file\": \"site.secret\"}%s}",
                              cert_rel, key_rel, certs,
                              tu_source_path("schema/report.example.json"), host, url,
                              extra ? extra : ""),
                     0);
    tu_write_file(cfg, text, strlen(text));
    free(text);
    return cfg;
}

static int run_enroll(const char *cfg, char **out, char **err)
{
    char *argv[] = {(char *)tu_build_path("collectors/tlsgate-collector"), "enroll", "--config",
                    (char *)cfg, NULL};
    return tu_run(argv, NULL, out, err);
}

/* `tlsgate-collector enroll` on cfg that must succeed (its stderr in the message). */
static void enroll_ok(const char *cfg)
{
    char *out = NULL, *err = NULL;
    ck_assert_msg(run_enroll(cfg, &out, &err) == 0, "%s", err);
    free(out);
    free(err);
}

/* The collector's clock ($TLSGATE_NOW) `days` ahead of now. */
static void clock_ahead_days(int days)
{
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL) + days * 86400LL);
    setenv("TLSGATE_NOW", now, 1);
}

/* The collector running on cfg, its stderr in dir/collector.err; sets *port. */
static pid_t collector_on(const char *cfg, uint16_t *port)
{
    const char *args[] = {"--config", cfg, NULL};
    return tu_collector_start(args, tu_path(dir, "collector.err"), DEADLINE_MS, port);
}

/* SIGTERM, and the process exits 0 within the deadline. */
static void stop_clean(pid_t pid)
{
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_int_eq(tu_wait_exit(pid, DEADLINE_MS), 0);
}

/* How many times `needle` stands in the file at `path`. */
static int count_in_file(const char *path, const char *needle)
{
    char *text = read_text(path);
    int n = 0;
    for (const char *q = text; (q = strstr(q, needle)); q++)
        n++;
    free(text);
    return n;
}

START_TEST(test_collector_enroll_command_issues_and_writes_private_key)
{
    struct peer p;
    peer_start(&p, TU_ARGS("issue,localhost"), NULL, NULL);
    const char *cfg = write_config("pc1.enroll.test", url_of("localhost", p.ports[0]), NULL);
    char *out = NULL, *err = NULL;
    ck_assert_msg(run_enroll(cfg, &out, &err) == 0, "%s", err);
    ck_assert_msg(strstr(out, "enrolled pc1.enroll.test"), "%s", out);
    struct stat st;
    ck_assert_int_eq(stat(tu_path(dir, "host.key"), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    char *cert = read_text(tu_path(dir, "host.pem"));
    gnutls_x509_crt_t crt;
    gnutls_datum_t d = {(unsigned char *)cert, (unsigned)strlen(cert)};
    ck_assert_int_eq(gnutls_x509_crt_init(&crt), 0);
    ck_assert_int_eq(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
    ck_assert(gnutls_x509_crt_check_hostname(crt, "pc1.enroll.test"));
    gnutls_x509_crt_deinit(crt);
    free(out);
    free(err);
    /* Again: the certificate is there, nothing is asked. */
    ck_assert_int_eq(run_enroll(cfg, &out, &err), 0);
    ck_assert_msg(strstr(out, "already holds a certificate"), "%s", out);
    char *again = read_text(tu_path(dir, "host.pem"));
    ck_assert_str_eq(again, cert);
    free(again);
    free(cert);
    free(out);
    free(err);
    peer_stop(&p);
}
END_TEST

START_TEST(test_collector_enroll_command_pending_keeps_key_refused_exits_3)
{
    struct peer p;
    peer_start(&p, TU_ARGS("pending,localhost", "refuse,localhost"), NULL, NULL);
    const char *cfg = write_config("pc2.enroll.test", url_of("localhost", p.ports[0]), NULL);
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(run_enroll(cfg, &out, &err), 1);
    ck_assert_msg(strstr(out, "pending") && strstr(out, "tlsgate enroll approve 7"), "%s", out);
    char *key1 = read_text(tu_path(dir, "host.key"));
    free(out);
    free(err);
    /* Asking again sends the same key, so the server finds the same request. */
    ck_assert_int_eq(run_enroll(cfg, &out, &err), 1);
    char *key2 = read_text(tu_path(dir, "host.key"));
    ck_assert_str_eq(key1, key2);
    free(out);
    free(err);

    cfg = write_config("pc2.enroll.test", url_of("localhost", p.ports[1]), NULL);
    ck_assert_int_eq(run_enroll(cfg, &out, &err), 3);
    ck_assert_msg(strstr(err, "refused") && strstr(err, "the site secret is wrong or retired"),
                  "%s", err);
    struct stat st;
    ck_assert_int_ne(stat(tu_path(dir, "host.pem"), &st), 0);
    free(out);
    free(err);
    free(key1);
    free(key2);
    peer_stop(&p);
}
END_TEST

START_TEST(test_collector_enroll_config_errors_name_the_key)
{
    struct {
        const char *url, *extra, *says;
    } cases[] = {
        {"http://localhost:1", NULL, "enroll.url"},
        {"https://localhost:1/v1/enroll", NULL, "no path"},
        {"https://localhost:1", ", \"x\": 1", "unknown key \"x\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *cfg = write_config("pc3.enroll.test", cases[i].url, cases[i].extra);
        char *out = NULL, *err = NULL;
        ck_assert_int_eq(run_enroll(cfg, &out, &err), 3);
        ck_assert_msg(strstr(err, cases[i].says) && strstr(err, "collector.json"), "%s", err);
        free(out);
        free(err);
    }
    const char *cfg = tu_path(dir, "bad.json");
    const char *bad[][2] = {
        {"{\"listen\":\"127.0.0.1:0\",\"cert\":\"a\",\"key\":\"b\",\"ca\":\"c\",\"enroll\":"
         "{\"url\":\"https://localhost:1\",\"site\":\"S01\",\"renew_fraction\":1.5}}",
         "enroll.renew_fraction"},
        {"{\"listen\":\"127.0.0.1:0\",\"cert\":\"a\",\"key\":\"b\",\"ca\":\"c\",\"enroll\":"
         "{\"url\":\"https://localhost:1\"}}",
         "\"site\" is required"},
        {"{\"listen\":\"127.0.0.1:0\",\"cert\":\"a\",\"key\":\"b\",\"ca\":\"c\",\"enroll\":"
         "{\"url\":\"https://localhost:1\",\"site\":\"S0001\"}}",
         "enroll.site"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tu_write_file(cfg, bad[i][0], strlen(bad[i][0]));
        char *out = NULL, *err = NULL;
        ck_assert_int_eq(run_enroll(cfg, &out, &err), 3);
        ck_assert_msg(strstr(err, bad[i][1]), "%s", err);
        free(out);
        free(err);
    }
    /* The secret file is named when it is missing; nothing is written. */
    write_config("pc3.enroll.test", "https://localhost:1", NULL);
    remove(tu_path(dir, "site.secret"));
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(run_enroll(tu_path(dir, "collector.json"), &out, &err), 3);
    ck_assert_msg(strstr(err, "site.secret"), "%s", err);
    struct stat st;
    ck_assert_int_ne(stat(tu_path(dir, "host.key"), &st), 0);
    free(out);
    free(err);
}
END_TEST

/* /v1/health's certificate_expires and last_error (as the orchestrator reads it). */
static void health(uint16_t port, const char *host, char *expires, size_t expsize, char *error,
                   size_t errsize)
{
    struct tu_fetch f = {
        .path = "/v1/health", .host = host, .ca = tu_path(certs, "ca.pem"), .certdir = certs};
    tu_fetch_run(port, &f);
    ck_assert_msg(f.code == 200, "health: %ld %s", f.code, f.error);
    json_t *j = json_loads(f.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    const char *x = json_string_value(json_object_get(j, "certificate_expires"));
    const char *e = json_string_value(json_object_get(j, "last_error"));
    snprintf(expires, expsize, "%s", x ? x : "");
    snprintf(error, errsize, "%s", e ? e : "");
    json_decref(j);
    tu_fetch_release(&f);
}

/* The notAfter of the certificate file, as /v1/health writes it. */
static void cert_expiry_text(const char *path, char *out, size_t size)
{
    char *pem = read_text(path);
    long long nb, na;
    ck_assert_int_eq(enroll_cert_times(pem, &nb, &na), 0);
    free(pem);
    time_t t = (time_t)na;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

START_TEST(test_collector_enrolls_at_start_then_serves)
{
    struct peer p;
    peer_start(&p, TU_ARGS("issue,localhost"), NULL, NULL);
    cert_rel = "identity/host.pem";
    key_rel = "identity/host.key"; /* a folder that does not exist yet: made private */
    const char *cfg = write_config("pc4.enroll.test", url_of("localhost", p.ports[0]), NULL);
    uint16_t port;
    pid_t pid = collector_on(cfg, &port);
    char error[600], expires[64], want[64];
    health(port, "pc4.enroll.test", expires, sizeof(expires), error, sizeof(error));
    cert_expiry_text(tu_path(dir, "identity/host.pem"), want, sizeof(want));
    ck_assert_str_eq(expires, want);
    ck_assert_str_eq(error, "");
    struct stat st;
    ck_assert_int_eq(stat(tu_path(dir, "identity"), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0700);
    ck_assert_int_eq(stat(tu_path(dir, "identity/host.key"), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    stop_clean(pid);
    ck_assert(tu_wait_file_contains(p.log, "issue /v1/enroll - 200", 1000));
    peer_stop(&p);
}
END_TEST

START_TEST(test_collector_waits_while_pending_and_says_for_what)
{
    struct peer p;
    peer_start(&p, TU_ARGS("pending,localhost"), NULL, NULL);
    const char *cfg = write_config("pc5.enroll.test", url_of("localhost", p.ports[0]), NULL);
    char *argv[] = {(char *)tu_build_path("collectors/tlsgate-collector"), "--config", (char *)cfg,
                    NULL};
    const char *errpath = tu_path(dir, "collector.err");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *e = freopen(errpath, "w", stderr);
        (void)e;
        execv(argv[0], argv);
        _exit(127);
    }
    ck_assert(tu_wait_file_contains(errpath, "tlsgate enroll approve 7", DEADLINE_MS));
    ck_assert(tu_wait_file_contains(errpath, "asking again in", DEADLINE_MS));
    ck_assert_int_eq(tu_wait_exit(pid, 10), -1); /* still waiting, not exited */
    struct stat st;
    ck_assert_int_eq(stat(tu_path(dir, "host.key"), &st), 0);
    ck_assert_int_ne(stat(tu_path(dir, "host.pem"), &st), 0);
    kill(pid, SIGTERM);
    tu_wait_exit(pid, DEADLINE_MS);
    peer_stop(&p);
}
END_TEST

START_TEST(test_collector_renews_past_the_renew_point_and_serves_new_pair)
{
    struct peer p;
    peer_start(&p, TU_ARGS("issue,localhost"), "--renew-days", "90");
    const char *cfg = write_config("pc6.enroll.test", url_of("localhost", p.ports[0]), NULL);
    enroll_ok(cfg);
    char *key_before = read_text(tu_path(dir, "host.key"));
    char first[64];
    cert_expiry_text(tu_path(dir, "host.pem"), first, sizeof(first));

    /* A clock 40 days ahead: past the renew point (30 of 60 days) of the new certificate. */
    clock_ahead_days(40);
    uint16_t port;
    pid_t pid = collector_on(cfg, &port);
    ck_assert(tu_wait_file_contains(p.log, "issue /v1/renew pc6.enroll.test 200", DEADLINE_MS));
    ck_assert(tu_wait_file_contains(tu_path(dir, "collector.err"),
                                    "renewal: certificate and key "
                                    "reloaded",
                                    DEADLINE_MS));
    char *key_after = read_text(tu_path(dir, "host.key"));
    ck_assert_str_ne(key_before, key_after); /* a new key */
    struct stat st;
    ck_assert_int_eq(stat(tu_path(dir, "host.key"), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    /* The renewed certificate (90 days) is the one served now, and health is clean. */
    char error[600], expires[64], want[64];
    health(port, "pc6.enroll.test", expires, sizeof(expires), error, sizeof(error));
    cert_expiry_text(tu_path(dir, "host.pem"), want, sizeof(want));
    ck_assert_str_eq(expires, want);
    ck_assert_str_ne(expires, first);
    ck_assert_str_eq(error, "");
    /* Renewed once, not again and again under the same clock. */
    stop_clean(pid);
    ck_assert_int_eq(count_in_file(p.log, "/v1/renew"), 1);
    free(key_before);
    free(key_after);
    peer_stop(&p);
}
END_TEST

START_TEST(test_collector_renewal_refused_keeps_old_pair_and_says_so_in_health)
{
    struct peer p;
    peer_start(&p, TU_ARGS("issue,localhost", "refuse,localhost"), NULL, NULL);
    const char *cfg = write_config("pc7.enroll.test", url_of("localhost", p.ports[0]), NULL);
    enroll_ok(cfg);
    char *cert_before = read_text(tu_path(dir, "host.pem"));
    cfg = write_config("pc7.enroll.test", url_of("localhost", p.ports[1]), NULL);
    clock_ahead_days(40);
    uint16_t port;
    pid_t pid = collector_on(cfg, &port);
    ck_assert(tu_wait_file_contains(tu_path(dir, "collector.err"), "certificate renewal failed",
                                    DEADLINE_MS));
    char error[600], expires[64];
    health(port, "pc7.enroll.test", expires, sizeof(expires), error, sizeof(error));
    ck_assert_msg(strstr(error, "certificate renewal failed") &&
                      strstr(error, "the site secret is wrong or retired") &&
                      strstr(error, "still serving"),
                  "%s", error);
    /* Still served, with the old pair. */
    struct tu_fetch f = {.path = "/v1/readiness",
                         .host = "pc7.enroll.test",
                         .ca = tu_path(certs, "ca.pem"),
                         .certdir = certs};
    tu_fetch_run(port, &f);
    ck_assert_int_eq(f.code, 200);
    tu_fetch_release(&f);
    char *cert_after = read_text(tu_path(dir, "host.pem"));
    ck_assert_str_eq(cert_before, cert_after);
    stop_clean(pid);
    free(cert_before);
    free(cert_after);
    peer_stop(&p);
}
END_TEST

/* ---- the fleet simulator enrolls its identities ---- */

/* The site secret fleetsim sends (dir/s.secret) and the URL of the peer's first port. */
static void sim_secret_and_url(const struct peer *p, char *url, size_t size)
{
    tu_write_file(tu_path(dir, "s.secret"), "sim-secret\n", 11);
    snprintf(url, size, "https://localhost:%d", p->ports[0]);
}

START_TEST(test_fleetsim_identities_enroll_then_serve)
{
    struct peer p;
    peer_start(&p, TU_ARGS("issue,localhost"), NULL, NULL);
    char url[64];
    sim_secret_and_url(&p, url, sizeof(url));
    char secret[1100];
    snprintf(secret, sizeof(secret), "AA1=%s", tu_path(dir, "s.secret"));
    struct tu_sim_args a;
    char *const *args =
        tu_sim_args(&a, false, certs, 24, "AA1", tu_path(dir, "ctl.sock"), "--procs", "2",
                    "--enroll", url, "--secret-file", secret, "--enroll-concurrency", "4", NULL);
    int base;
    pid_t sim = tu_fleetsim_start((const char *const *)args, tu_path(dir, "sim.log"),
                                  "fleetsim: ready 24 hosts", 12000, 400, &base);
    /* Every identity asked once, with its own key, and serves the certificate it got. */
    ck_assert_int_eq(count_in_file(p.log, "issue /v1/enroll - 200"), 24);
    struct tu_fetch f = {.path = "/v1/readiness",
                         .host = "cm-site-aa1.sim.contoso.com",
                         .ca = tu_path(certs, "ca.pem"),
                         .certdir = certs};
    tu_fetch_run((uint16_t)base, &f);
    ck_assert_msg(f.code == 200, "%ld %s", f.code, f.error);
    ck_assert_ptr_nonnull(strstr(f.out, "cm-site-aa1.sim.contoso.com"));
    tu_fetch_release(&f);
    kill(sim, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(sim, DEADLINE_MS), 0);
    peer_stop(&p);
}
END_TEST

START_TEST(test_fleetsim_refused_enrollment_names_host_and_exits_3)
{
    struct peer p;
    peer_start(&p, TU_ARGS("refuse,localhost"), NULL, NULL);
    char url[64];
    sim_secret_and_url(&p, url, sizeof(url));
    char base[16];
    struct tu_sim_args a;
    char *const *argv = tu_sim_args(&a, true, certs, 8, "AA1", tu_path(dir, "ctl.sock"), "--procs",
                                    "1", "--base-port", base, "--enroll", url, "--secret-file",
                                    tu_path(dir, "s.secret"), NULL);
    /* A free port range: another suite may hold one, so the next is tried (8 tries). */
    char *out = NULL, *err = NULL;
    int rc = -1;
    for (int k = 0; k < 8; k++) {
        snprintf(base, sizeof(base), "%d", 23000 + 50 * (int)((getpid() + k) % 40));
        free(out);
        free(err);
        out = err = NULL;
        rc = tu_run(argv, NULL, &out, &err);
        if (!(rc == 2 && strstr(err, "is taken")))
            break;
    }
    ck_assert_msg(rc == 3, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(err, "sim.contoso.com: enrollment refused") &&
                      strstr(err, "the site secret is wrong or retired"),
                  "%s", err);
    free(out);
    free(err);
    peer_stop(&p);
}
END_TEST

/* ---- end to end: the real orchestrator (`tlsgate enroll serve`, collect) ---- */

/* An orchestrator in dir: database, config (the test CA signs identities; the endpoint
 * presents certs/localhost on a port of its own), inventory `inv`, a secret for site AA1 in
 * dir/aa1.secret. */
struct orch {
    char db[1024], config[1024], log[1024];
    int port;
    pid_t serve;
};

static void orch_init(struct orch *o, const char *inv)
{
    snprintf(o->db, sizeof(o->db), "%s", tu_path(dir, "tlsgate.db"));
    snprintf(o->config, sizeof(o->config), "%s", tu_path(dir, "tlsgate.json"));
    snprintf(o->log, sizeof(o->log), "%s", tu_path(dir, "serve.log"));
    o->port = tu_closed_port();
    char *cfg;
    ck_assert_int_ge(
        asprintf(&cfg,
                 "{\"tls\": {\"ca\": \"%s/ca.pem\", \"cert\": \"%s/orchestrator.pem\", \"key\": "
                 "\"%s/orchestrator.key\"}, \"concurrency\": 32, \"enroll\": {\"ca_cert\": "
                 "\"%s/ca.pem\", \"ca_key\": \"%s/ca.key\", \"cert\": \"%s/localhost.pem\", "
                 "\"key\": \"%s/localhost.key\", \"listen\": \"127.0.0.1:%d\", "
                 "\"rate_per_minute\": 100000, \"rate_burst\": 100000}}",
                 certs, certs, certs, certs, certs, certs, certs, o->port),
        0);
    tu_write_file(o->config, cfg, strlen(cfg));
    free(cfg);
    char *out = NULL, *err = NULL;
    ck_assert_msg(tu_tlsgate(o->db, NULL, &err, "init", NULL) == 0, "%s", err);
    free(err);
    err = NULL;
    ck_assert_msg(tu_tlsgate(o->db, NULL, &err, "inventory", "import", inv, NULL) == 0, "%s", err);
    free(err);
    err = NULL;
    ck_assert_msg(
        tu_tlsgate(o->db, &out, &err, "enroll", "secret", "--site", "AA1", "--json", NULL) == 0,
        "%s", err);
    json_t *j = json_loads(out, 0, NULL);
    const char *secret = json_string_value(json_object_get(j, "secret"));
    ck_assert_ptr_nonnull(secret);
    tu_write_file(tu_path(dir, "aa1.secret"), secret, strlen(secret));
    json_decref(j);
    free(out);
    free(err);
}

static void orch_serve(struct orch *o)
{
    /* tu_tlsgate_start runs a one-word command; `enroll serve` has two. The old log goes
     * first, so its "listening" line cannot be taken for the new server's. */
    remove(o->log);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *e = freopen(o->log, "w", stderr);
        (void)e;
        execl(tu_build_path("orchestrator/tlsgate"), "tlsgate", "--db", o->db, "--config",
              o->config, "enroll", "serve", (char *)NULL);
        _exit(127);
    }
    o->serve = pid;
    ck_assert_msg(tu_wait_file_contains(o->log, "listening on https://", DEADLINE_MS),
                  "enroll serve did not start");
}

static void orch_stop(struct orch *o)
{
    kill(o->serve, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(o->serve, DEADLINE_MS), 0);
}

START_TEST(test_e2e_fleet_enrolls_with_a_secret_only_and_is_pulled)
{
    enum { HOSTS = 200 };
    struct tu_sim_args a;
    char *const *gen =
        tu_sim_args(&a, true, certs, HOSTS, "AA1", tu_path(dir, "ctl.sock"), "--inventory",
                    tu_path(dir, "inv.csv"), "--inventory-only", NULL);
    char *err = NULL;
    ck_assert_msg(tu_run(gen, NULL, NULL, &err) == 0, "%s", err);
    free(err);
    /* The ports fleetsim picks below must match the inventory: so the inventory is rewritten
     * by the real run (same plan, its own base port) before collect. */
    struct orch o;
    orch_init(&o, tu_path(dir, "inv.csv"));
    orch_serve(&o);
    char url[64], secret[1100];
    snprintf(url, sizeof(url), "https://localhost:%d", o.port);
    snprintf(secret, sizeof(secret), "%s", tu_path(dir, "aa1.secret"));
    char *const *args =
        tu_sim_args(&a, false, certs, HOSTS, "AA1", tu_path(dir, "ctl.sock"), "--procs", "2",
                    "--inventory", tu_path(dir, "inv2.csv"), "--enroll", url, "--secret-file",
                    secret, "--enroll-concurrency", "8", NULL);
    int base;
    pid_t sim = tu_fleetsim_start((const char *const *)args, tu_path(dir, "sim.log"),
                                  "fleetsim: ready 200 hosts", 12000, 300, &base);
    /* Every identity was issued by the orchestrator, one request each, audited. */
    ck_assert_int_eq(tu_db_int(o.db,
                               "SELECT count(*) FROM enroll_request WHERE kind = 'enroll' AND "
                               "state = 'issued'",
                               NULL),
                     HOSTS);
    ck_assert_int_eq(tu_db_int(o.db, "SELECT count(DISTINCT name) FROM identity", NULL), HOSTS);
    /* The collectors' addresses (their ports) as this run placed them, then one pull round. */
    err = NULL;
    ck_assert_msg(
        tu_tlsgate(o.db, NULL, &err, "inventory", "import", tu_path(dir, "inv2.csv"), NULL) == 0,
        "%s", err);
    free(err);
    err = NULL;
    char *out = NULL;
    int rc = tu_tlsgate(o.db, &out, &err, "--config", o.config, "collect", NULL);
    ck_assert_msg(rc == 0 || rc == 1, "collect: %d %s", rc, err);
    ck_assert_int_eq(tu_db_int(o.db, "SELECT count(DISTINCT host_id) FROM report", NULL), HOSTS);
    free(out);
    free(err);
    kill(sim, SIGTERM);
    tu_wait_exit(sim, DEADLINE_MS);
    orch_stop(&o);
}
END_TEST

/* An inventory of one collector, pc1.e2e.test in AA1 on 127.0.0.1:port. */
static const char *one_host_inventory(int port)
{
    char line[256];
    int n =
        snprintf(line, sizeof(line),
                 "name,site,roles,collector,os\npc1.e2e.test,AA1,,127.0.0.1:%d,Windows 10\n", port);
    tu_write_file(tu_path(dir, "inv1.csv"), line, (size_t)n);
    return tu_path(dir, "inv1.csv");
}

/* dir/collector.json for pc1.e2e.test on `port`, enrolling at the orchestrator. */
static const char *e2e_collector_config(const struct orch *o, int port, const char *sub)
{
    char *d;
    ck_assert_int_ge(asprintf(&d, "%s/%s", dir, sub), 0);
    mkdir(d, 0700);
    char *cfg, *path;
    ck_assert_int_ge(
        asprintf(&cfg,
                 "{\"listen\": \"127.0.0.1:%d\", \"cert\": \"host.pem\", \"key\": \"host.key\", "
                 "\"ca\": \"%s/ca.pem\", \"facts\": \"%s\", \"host\": \"pc1.e2e.test\", "
                 "\"enroll\": {\"url\": \"https://localhost:%d\", \"site\": \"AA1\", "
                 "\"secret_file\": \"%s/aa1.secret\"}}",
                 port, certs, tu_source_path("schema/report.example.json"), o->port, dir),
        0);
    ck_assert_int_ge(asprintf(&path, "%s/collector.json", d), 0);
    tu_write_file(path, cfg, strlen(cfg));
    free(cfg);
    free(d);
    static char keep[4][1024];
    static int k;
    char *slot = keep[k++ % 4];
    snprintf(slot, 1024, "%s", path);
    free(path);
    return slot;
}

START_TEST(test_e2e_collector_renews_and_keeps_being_pulled_then_revoked_renewal_refused)
{
    int cport = tu_closed_port();
    struct orch o;
    orch_init(&o, one_host_inventory(cport));
    orch_serve(&o);
    const char *cfg = e2e_collector_config(&o, cport, "c1");
    /* Started with a secret only and a clock 40 days on: enrolls, then renews at once. */
    clock_ahead_days(40);
    const char *args[] = {"--config", cfg, NULL};
    uint16_t port;
    const char *clog = tu_path(dir, "c1.err");
    pid_t pid = tu_collector_start(args, clog, DEADLINE_MS, &port);
    unsetenv("TLSGATE_NOW");
    ck_assert(tu_wait_file_contains(clog, "renewal: certificate and key reloaded", DEADLINE_MS));
    ck_assert_int_eq(tu_db_int(o.db,
                               "SELECT count(*) FROM enroll_request WHERE name = ?1 AND kind = "
                               "'renew' AND state = 'issued'",
                               "pc1.e2e.test"),
                     1);
    ck_assert_int_eq(
        tu_db_int(o.db, "SELECT count(*) FROM identity WHERE name = ?1", "pc1.e2e.test"), 2);
    /* The daemon's pull finds the collector serving its renewed certificate. */
    char *out = NULL, *err = NULL;
    int rc = tu_tlsgate(o.db, &out, &err, "--config", o.config, "collect", NULL);
    ck_assert_msg(rc == 0 || rc == 1, "collect: %d %s", rc, err);
    ck_assert_int_eq(tu_db_int(o.db, "SELECT count(*) FROM report", NULL), 1);
    free(out);
    free(err);
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, DEADLINE_MS), 0);

    /* Revoked: the next renewal is refused; the collector says so and keeps its pair. */
    out = err = NULL;
    ck_assert_msg(tu_tlsgate(o.db, &out, &err, "enroll", "revoke", "pc1.e2e.test", "--reason",
                             "test", NULL) == 0,
                  "%s", err);
    free(out);
    free(err);
    char *cert_before = read_text(tu_path(dir, "c1/host.pem"));
    clock_ahead_days(40);
    const char *clog2 = tu_path(dir, "c1b.err");
    pid = tu_collector_start(args, clog2, DEADLINE_MS, &port);
    unsetenv("TLSGATE_NOW");
    ck_assert(tu_wait_file_contains(clog2, "certificate renewal failed", DEADLINE_MS));
    ck_assert(tu_wait_file_contains(clog2, "403", 1000));
    char *cert_after = read_text(tu_path(dir, "c1/host.pem"));
    ck_assert_str_eq(cert_before, cert_after);
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(pid, DEADLINE_MS), 0);
    free(cert_before);
    free(cert_after);
    orch_stop(&o);
}
END_TEST

START_TEST(test_e2e_pending_enrollment_survives_an_enroll_server_restart)
{
    int cport = tu_closed_port();
    struct orch o;
    orch_init(&o, one_host_inventory(cport));
    orch_serve(&o);
    /* The first collector of pc1 is issued at once. */
    char *out = NULL, *err = NULL;
    ck_assert_msg(run_enroll(e2e_collector_config(&o, cport, "first"), &out, &err) == 0, "%s", err);
    free(out);
    free(err);
    /* A second one for the same name (a new key: a reinstall, or an impostor) must wait. */
    const char *cfg = e2e_collector_config(&o, cport, "second");
    out = err = NULL;
    int rc = run_enroll(cfg, &out, &err);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(out, "tlsgate enroll approve"), "%s", out);
    long long id =
        tu_db_int(o.db, "SELECT id FROM enroll_request WHERE state = 'pending' AND name = ?1",
                  "pc1.e2e.test");
    free(out);
    free(err);
    /* The enrollment server restarts while the request waits. */
    orch_stop(&o);
    orch_serve(&o);
    out = err = NULL;
    rc = run_enroll(cfg, &out, &err);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err); /* same key: the same request */
    ck_assert_int_eq(
        tu_db_int(o.db, "SELECT count(*) FROM enroll_request WHERE name = ?1", "pc1.e2e.test"), 2);
    free(out);
    free(err);
    char ids[32];
    snprintf(ids, sizeof(ids), "%lld", id);
    out = err = NULL;
    ck_assert_msg(tu_tlsgate(o.db, &out, &err, "enroll", "approve", ids, NULL) == 0, "%s", err);
    free(out);
    free(err);
    out = err = NULL;
    ck_assert_msg(run_enroll(cfg, &out, &err) == 0, "%s", err);
    ck_assert_msg(strstr(out, "enrolled pc1.e2e.test"), "%s", out);
    free(out);
    free(err);
    struct stat st;
    ck_assert_int_eq(stat(tu_path(dir, "second/host.pem"), &st), 0);
    orch_stop(&o);
}
END_TEST

static void setup(void) { dir = tu_tmpdir(); }
static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

static Suite *enrollcli_suite(void)
{
    Suite *s = suite_create("enrollcli");
    TCase *t =
        tu_tcase(s, "units", setup, teardown,
                 TU_TESTS(test_enroll_key_is_p256_and_csr_names_host_and_is_self_signed,
                          test_enroll_url_accepts_https_host_port_only,
                          test_enroll_renew_point_is_fraction_of_lifetime,
                          test_enroll_backoff_doubles_within_bounds_and_spreads,
                          test_enroll_secret_file_trimmed_and_checked,
                          test_enroll_pair_install_is_atomic_and_recovers_an_interrupted_one));
    t = tu_tcase(s, "client", setup, teardown,
                 TU_TESTS(test_enroll_submit_gets_a_certificate_for_its_own_key,
                          test_enroll_submit_reports_pending_refused_and_busy,
                          test_enroll_client_refuses_hostile_answers,
                          test_enroll_client_refuses_wrong_server_certificate_and_name));
    tcase_set_timeout(t, 60);
    t = tu_tcase(s, "collector", setup, teardown,
                 TU_TESTS(test_collector_enroll_command_issues_and_writes_private_key,
                          test_collector_enroll_command_pending_keeps_key_refused_exits_3,
                          test_collector_enroll_config_errors_name_the_key,
                          test_collector_enrolls_at_start_then_serves,
                          test_collector_waits_while_pending_and_says_for_what,
                          test_collector_renews_past_the_renew_point_and_serves_new_pair,
                          test_collector_renewal_refused_keeps_old_pair_and_says_so_in_health));
    tcase_set_timeout(t, 90);
    t = tu_tcase(s, "fleetsim", setup, teardown,
                 TU_TESTS(test_fleetsim_identities_enroll_then_serve,
                          test_fleetsim_refused_enrollment_names_host_and_exits_3));
    tcase_set_timeout(t, 120);
    t = tu_tcase(
        s, "e2e", setup, teardown,
        TU_TESTS(test_e2e_fleet_enrolls_with_a_secret_only_and_is_pulled,
                 test_e2e_collector_renews_and_keeps_being_pulled_then_revoked_renewal_refused,
                 test_e2e_pending_enrollment_survives_an_enroll_server_restart));
    tcase_set_timeout(t, 240);
    return s;
}

/* Outside a test (no ck_assert here): a fresh folder for the certificates every test reads. */
static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *t;
    if (asprintf(&t, "%s/tlsgate-enroll-XXXXXX", base && *base ? base : "/tmp") < 0 ||
        !mkdtemp(t)) {
        perror("mkdtemp");
        exit(1);
    }
    return t;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    certs = make_tmpdir();
    other = make_tmpdir();
    const char *names[] = {"localhost", "wrong.example", NULL};
    const char *other_names[] = {"localhost", NULL};
    if (tu_gen_certs(certs, names) != 0 || tu_gen_certs(other, other_names) != 0)
        return 1;
    int failed = tu_run_suite(enrollcli_suite());
    tu_tmpdir_drop(&certs);
    tu_tmpdir_drop(&other);
    curl_global_cleanup();
    return failed;
}

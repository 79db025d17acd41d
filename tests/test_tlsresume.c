/*
 * test_tlsresume: TLS session resumption end to end (issue 16) — the orchestrator's per-host
 * session cache (orchestrator/pull/tlsctx.c) against the real tlsgate-collector (its session
 * tickets, collectors/server.c), real certificates from tools/gen-certs, real TLS on 127.0.0.1.
 * Each fetch is a new easy handle (a new connection), as a new pull round makes.
 *
 * What is pinned: a second connection to the same host resumes; a resumed session still fails
 * when the host name does not match the certificate it carries; a collector restarted with a
 * re-issued certificate is not resumed (a full handshake checks the new certificate); a session
 * older than TLSCTX_SESSION_MAX_AGE_S is not offered; a resumed handshake yields the same
 * collector certificate (tlsctx_peer_cert) as the full one.
 */
#include <check.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/poll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "tlsctx.h"

#define HOST1 "host1.corp.example.com"
#define HOST2 "host2.corp.example.com"
#define DEADLINE_MS 15000

static char *dir; /* per test: the fleet's certificates and the collector's stderr */

struct proc {
    pid_t pid;
    unsigned port;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void gen_certs(void)
{
    char *argv[] = {(char *)tu_source_path("tools/gen-certs"), dir, HOST1, HOST2, NULL};
    ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
}

/* Starts tlsgate-collector for HOST1 on `listen` and waits for the line naming its port. */
static struct proc start_collector(const char *listen)
{
    char cert[4096], key[4096], ca[4096], errpath[4096];
    snprintf(cert, sizeof(cert), "%s", tu_path(dir, HOST1 ".pem"));
    snprintf(key, sizeof(key), "%s", tu_path(dir, HOST1 ".key"));
    snprintf(ca, sizeof(ca), "%s", tu_path(dir, "ca.pem"));
    snprintf(errpath, sizeof(errpath), "%s", tu_path(dir, "collector.err"));
    char *argv[] = {(char *)tu_build_path("collectors/tlsgate-collector"),
                    "--listen",
                    (char *)listen,
                    "--cert",
                    cert,
                    "--key",
                    key,
                    "--ca",
                    ca,
                    "--facts",
                    (char *)tu_source_path("schema/report.example.json"),
                    NULL};
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    struct proc p = {.pid = fork()};
    ck_assert_int_ge(p.pid, 0);
    if (p.pid == 0) {
        FILE *e = fopen(errpath, "w");
        if (!e)
            _exit(126);
        dup2(fileno(e), 2);
        dup2(fds[1], 1);
        close(fds[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    char line[1024];
    size_t len = 0;
    const char *at = NULL;
    long long end = now_ms() + DEADLINE_MS;
    while (!at) {
        long long left = end - now_ms();
        ck_assert_msg(left > 0, "collector did not start in time");
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        ssize_t got = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (got <= 0) {
            char *err = tu_read_file(errpath, NULL);
            ck_abort_msg("collector exited before serving: %s", err ? err : "");
        }
        len += (size_t)got;
        line[len] = '\0';
        if (strchr(line, '\n'))
            at = strstr(line, "https://127.0.0.1:");
    }
    close(fds[0]);
    p.port = (unsigned)atoi(at + strlen("https://127.0.0.1:"));
    ck_assert_uint_gt(p.port, 0);
    return p;
}

static void stop_collector(struct proc *p)
{
    ck_assert_int_eq(kill(p->pid, SIGTERM), 0);
    ck_assert_int_eq(tu_wait_exit(p->pid, DEADLINE_MS), 0);
}

static size_t discard(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data, (void)userp;
    return size * nmemb;
}

/* The collector's certificate as the pull engine reads it: at the first header line. */
struct header_cert {
    CURL *easy;
    struct tlsctx_cert *cert;
    int rc;
    bool read;
};

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data;
    struct header_cert *h = userp;
    if (!h->read) {
        h->read = true;
        h->rc = tlsctx_peer_cert(h->easy, h->cert);
    }
    return size * nmemb;
}

/* GET https://URL_HOST:PORT/v1/readiness on a new connection, the session keyed by KEY_NAME
 * (the inventory name a transfer would give), the peer certificate into *cert when not NULL.
 * Returns libcurl's result. */
static CURLcode fetch_cert(struct tlsctx *t, const char *url_host, const char *key_name,
                           unsigned port, struct tlsctx_cert *cert)
{
    char url[300], resolve[300], address[64];
    snprintf(url, sizeof(url), "https://%s:%u/v1/readiness", url_host, port);
    snprintf(resolve, sizeof(resolve), "%s:%u:127.0.0.1", url_host, port);
    snprintf(address, sizeof(address), "127.0.0.1:%u", port);
    struct curl_slist *res = curl_slist_append(NULL, resolve);
    CURL *e = curl_easy_init();
    ck_assert_ptr_nonnull(e);
    struct tlsctx_peer peer = {.name = key_name, .address = address};
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_RESOLVE, res);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)DEADLINE_MS);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    struct header_cert hc = {.easy = e, .cert = cert, .rc = -1};
    if (cert) {
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &hc);
    }
    tlsctx_apply(t, e, &peer);
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e); /* closes the connection: its SSL_CTX and its reference go with it */
    curl_slist_free_all(res);
    if (rc == CURLE_OK)
        ck_assert_int_eq(status, 200);
    if (cert && rc == CURLE_OK)
        ck_assert_int_eq(hc.rc, 0);
    return rc;
}

static CURLcode fetch(struct tlsctx *t, const char *url_host, const char *key_name, unsigned port)
{
    return fetch_cert(t, url_host, key_name, port, NULL);
}

static struct tlsctx *load_tls(void)
{
    char ca[4096], cert[4096], key[4096], err[512];
    snprintf(ca, sizeof(ca), "%s", tu_path(dir, "ca.pem"));
    snprintf(cert, sizeof(cert), "%s", tu_path(dir, "orchestrator.pem"));
    snprintf(key, sizeof(key), "%s", tu_path(dir, "orchestrator.key"));
    struct tlsctx *t;
    ck_assert_msg(tlsctx_load(ca, cert, key, &t, err, sizeof(err)) == 0, "%s", err);
    return t;
}

static struct tlsctx_stats stats(struct tlsctx *t)
{
    struct tlsctx_stats s;
    tlsctx_get_stats(t, &s);
    return s;
}

START_TEST(test_second_connection_to_a_host_resumes_its_session)
{
    struct proc p = start_collector("127.0.0.1:0");
    struct tlsctx *t = load_tls();
    ck_assert_int_eq(fetch(t, HOST1, HOST1, p.port), CURLE_OK);
    ck_assert_uint_eq(stats(t).sessions, 1);
    ck_assert_uint_eq(stats(t).offered, 0);
    for (int i = 1; i <= 2; i++) {
        ck_assert_int_eq(fetch(t, HOST1, HOST1, p.port), CURLE_OK);
        ck_assert_uint_eq(stats(t).offered, (size_t)i);
        ck_assert_uint_eq(stats(t).resumed, (size_t)i);
    }
    ck_assert_uint_eq(stats(t).sessions, 1);
    tlsctx_unref(t);
    stop_collector(&p);
}
END_TEST

/* The puller checks the presented certificate at every pull (revocation, change: issue 12):
 * a resumed handshake must give the same certificate as the full one (OpenSSL keeps the peer
 * certificate in the SSL_SESSION). */
START_TEST(test_resumed_session_yields_the_collector_certificate)
{
    struct proc p = start_collector("127.0.0.1:0");
    struct tlsctx *t = load_tls();
    struct tlsctx_cert full, resumed;
    ck_assert_int_eq(fetch_cert(t, HOST1, HOST1, p.port, &full), CURLE_OK);
    ck_assert_int_eq(fetch_cert(t, HOST1, HOST1, p.port, &resumed), CURLE_OK);
    ck_assert_uint_eq(stats(t).resumed, 1);
    ck_assert_uint_eq(strlen(full.fingerprint), 64);
    ck_assert_str_eq(resumed.fingerprint, full.fingerprint);
    ck_assert_str_eq(resumed.serial, full.serial);
    ck_assert_str_eq(resumed.issuer, "CN=tlsgate fleet CA");
    ck_assert_str_eq(full.issuer, "CN=tlsgate fleet CA");
    ck_assert_int_gt(full.not_after, full.not_before);
    ck_assert_int_eq(resumed.not_after, full.not_after);
    /* After a re-issue: a full handshake, and the new certificate. */
    unsigned port = p.port;
    stop_collector(&p);
    gen_certs();
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    p = start_collector(listen);
    struct tlsctx_cert next;
    ck_assert_int_eq(fetch_cert(t, HOST1, HOST1, p.port, &next), CURLE_OK);
    ck_assert_uint_eq(strlen(next.fingerprint), 64);
    ck_assert_str_ne(next.fingerprint, full.fingerprint);
    tlsctx_unref(t);
    stop_collector(&p);
}
END_TEST

START_TEST(test_resumed_session_still_fails_when_host_name_does_not_match)
{
    struct proc p = start_collector("127.0.0.1:0");
    struct tlsctx *t = load_tls();
    ck_assert_int_eq(fetch(t, HOST1, HOST1, p.port), CURLE_OK);
    /* HOST1's session, offered for a URL naming HOST2 at the same collector: the collector
     * resumes it, and the host-name check still refuses HOST1's certificate for HOST2. */
    ck_assert_int_eq(fetch(t, HOST2, HOST1, p.port), CURLE_PEER_FAILED_VERIFICATION);
    ck_assert_uint_eq(stats(t).offered, 1);
    ck_assert_uint_eq(stats(t).resumed, 1);
    /* Asked as HOST2 (its own key): nothing to offer, a full handshake, refused, and no session
     * kept for HOST2 (its certificate does not name it). */
    ck_assert_int_eq(fetch(t, HOST2, HOST2, p.port), CURLE_PEER_FAILED_VERIFICATION);
    ck_assert_uint_eq(stats(t).offered, 1);
    ck_assert_uint_eq(stats(t).sessions, 1);
    tlsctx_unref(t);
    stop_collector(&p);
}
END_TEST

START_TEST(test_collector_with_reissued_certificate_is_not_resumed)
{
    struct proc p = start_collector("127.0.0.1:0");
    struct tlsctx *t = load_tls();
    ck_assert_int_eq(fetch(t, HOST1, HOST1, p.port), CURLE_OK);
    unsigned port = p.port;
    stop_collector(&p);
    gen_certs(); /* re-issues HOST1's certificate (same CA, same name, new key) */
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    p = start_collector(listen);
    ck_assert_uint_eq(p.port, port);
    ck_assert_int_eq(fetch(t, HOST1, HOST1, p.port), CURLE_OK);
    ck_assert_uint_eq(stats(t).offered, 1);
    ck_assert_uint_eq(stats(t).resumed, 0); /* full handshake with the new certificate */
    ck_assert_int_eq(fetch(t, HOST1, HOST1, p.port), CURLE_OK);
    ck_assert_uint_eq(stats(t).resumed, 1); /* and its new session resumes */
    tlsctx_unref(t);
    stop_collector(&p);
}
END_TEST

START_TEST(test_session_older_than_max_age_is_not_offered)
{
    struct proc p = start_collector("127.0.0.1:0");
    struct tlsctx *t = load_tls();
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    setenv("TLSGATE_NOW", now, 1);
    ck_assert_int_eq(fetch(t, HOST1, HOST1, p.port), CURLE_OK);
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL) + TLSCTX_SESSION_MAX_AGE_S + 1);
    setenv("TLSGATE_NOW", now, 1);
    ck_assert_int_eq(fetch(t, HOST1, HOST1, p.port), CURLE_OK);
    unsetenv("TLSGATE_NOW");
    ck_assert_uint_eq(stats(t).offered, 0);
    ck_assert_uint_eq(stats(t).resumed, 0);
    ck_assert_uint_eq(stats(t).sessions, 1); /* the fresh one of the full handshake */
    tlsctx_unref(t);
    stop_collector(&p);
}
END_TEST

static void setup(void)
{
    dir = tu_tmpdir();
    gen_certs();
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("tlsresume");
    TCase *tc = tu_tcase(s, "resume", setup, teardown,
                         TU_TESTS(test_second_connection_to_a_host_resumes_its_session,
                                  test_resumed_session_yields_the_collector_certificate,
                                  test_resumed_session_still_fails_when_host_name_does_not_match,
                                  test_collector_with_reissued_certificate_is_not_resumed,
                                  test_session_older_than_max_age_is_not_offered));
    tcase_set_timeout(tc, 120);
    int failed = tu_run_suite(s);
    curl_global_cleanup();
    return failed;
}

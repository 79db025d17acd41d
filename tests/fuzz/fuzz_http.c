/*
 * fuzz_http.c — libFuzzer target for HTTP requests to the collector: the bytes go over a real
 * TCP connection on 127.0.0.1 to the collector's own HTTPS server (collectors/server.h: MHD in
 * external epoll mode on a libuv loop, GnuTLS, mutual TLS), running on a thread of this process
 * with certificates from tools/gen-certs ($TLSGATE_FUZZ_CERTS: ca.pem, fuzz.example.test.pem/.key,
 * orchestrator.pem/.key).
 *
 * The first byte picks who sends the rest:
 *   0  a stranger on raw TCP (the bytes are the TLS handshake, or garbage)
 *   1  a TLS client without a certificate (the bytes are an HTTP request inside TLS)
 *   2  the orchestrator (certificate of the fleet CA with CN tlsgate-orchestrator)
 *   3  another host of the fleet (a certificate of the CA with the wrong CN)
 * then the client ends its side and reads the answer until the server closes.
 *
 * The TLS clients resume the session of their previous connection (the collector's TLS 1.3
 * tickets, as the orchestrator's pulls do), so an input costs no certificate exchange and no
 * signature; every 16th connection of each client, and the liveness check, make a full
 * handshake, so both paths stay under the fuzzer. A resumed session carries the client's
 * certificate, and the server checks it again: the contract below is the same for both.
 *
 * Contract: whatever the bytes, every answer is a sequence of HTTP/1.x responses with a status
 * code; only the orchestrator ever gets a 2xx, 404, 405 or 503 (a 200 carries the report or
 * the health JSON); a client without a certificate gets 401 or MHD's own refusals of what it
 * cannot parse (400, 413, 414, 431, 505...), another host 403 or those; a stranger on raw TCP
 * never gets plain HTTP; the server closes every connection once the client is done (none is
 * left hanging), and it still answers the orchestrator's GET /v1/health after every 256th
 * input. Anything else is abort().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "fuzzutil.h"
#include "server.h"

#define HOST "fuzz.example.test"
#define REPORT "{\"schema\":\"tlsgate.report/1\",\"host\":\"" HOST "\",\"fuzz\":true}"
/* How long the server may take to answer and close once the client is done: below the 10 s
 * idle timeout, so a server that closes only when idle (not on the client's end) is caught. */
#define CLOSE_DEADLINE_MS 8000
#define ANSWER_MAX (1024 * 1024)

/* What the server answered, one input at a time. Allocated once: a megabyte malloc'd per input
 * was mapped and unmapped by ASan each time, half of the target's time in page faults. */
static char answer_buf[ANSWER_MAX];

static uv_loop_t loop;
static uv_async_t wake;
static struct server *server;
static uint16_t port;
static gnutls_certificate_credentials_t cred_none, cred_orch, cred_host;
static unsigned long inputs;
/* The last session of each TLS client (who 1..3), to resume; how many connections each made. */
static gnutls_datum_t resume[4];
static unsigned long connections[4];

static char *read_file(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fuzz_die("%s: cannot open (run tools/fuzz, which makes the certificates)", path);
    char *buf = calloc(1, SERVER_PEM_MAX_BYTES + 1);
    if (!buf || fread(buf, 1, SERVER_PEM_MAX_BYTES, f) == 0)
        fuzz_die("%s: cannot read", path);
    fclose(f);
    return buf;
}

static void on_wake(uv_async_t *a) { (void)a; }

static void *loop_thread(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static void client_cred(gnutls_certificate_credentials_t *c, const char *dir, const char *name)
{
    char cert[512], key[512];
    if (gnutls_certificate_allocate_credentials(c) < 0)
        fuzz_die("gnutls credentials");
    if (!name)
        return;
    snprintf(cert, sizeof(cert), "%s/%s.pem", dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    if (gnutls_certificate_set_x509_key_file(*c, cert, key, GNUTLS_X509_FMT_PEM) < 0)
        fuzz_die("%s: cannot load certificate and key", cert);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    const char *dir = getenv("TLSGATE_FUZZ_CERTS");
    if (!dir)
        fuzz_die("set TLSGATE_FUZZ_CERTS to a folder made by tools/gen-certs DIR " HOST);
    char *cert = read_file(dir, HOST ".pem"), *key = read_file(dir, HOST ".key"),
         *ca = read_file(dir, "ca.pem");
    if (uv_loop_init(&loop) != 0 || uv_async_init(&loop, &wake, on_wake) != 0)
        fuzz_die("uv");
    struct server_options o = {.host = HOST,
                               .address = "127.0.0.1",
                               .port = 0,
                               .cert_pem = cert,
                               .key_pem = key,
                               .ca_pem = ca,
                               .client_cn = "tlsgate-orchestrator"};
    char err[1024];
    if (server_start(&loop, &o, &server, err, sizeof(err)) != 0)
        fuzz_die("server_start: %s", err);
    if (server_set_report(server, REPORT, strlen(REPORT), 1) != 0)
        fuzz_die("server_set_report");
    port = server_port(server);
    free(cert);
    free(key);
    free(ca);
    client_cred(&cred_none, dir, NULL);
    client_cred(&cred_orch, dir, "orchestrator");
    client_cred(&cred_host, dir, HOST);
    pthread_t t;
    if (pthread_create(&t, NULL, loop_thread, NULL) != 0)
        fuzz_die("pthread_create");
    pthread_detach(t);
    return 0;
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fuzz_die("connect to the collector on port %u: %s", port, strerror(errno));
    /* A server that never closes is a finding, reported through libFuzzer's -timeout; the
     * socket timeout only keeps a blocked read from hiding it. */
    struct timeval tv = {CLOSE_DEADLINE_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

struct answer {
    char *buf;
    size_t len;
    bool timed_out;
};

static void raw_exchange(const uint8_t *data, size_t size, struct answer *ans)
{
    int fd = connect_server();
    size_t off = 0;
    while (off < size) {
        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may close as soon as it has seen enough */
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    for (;;) {
        if (ans->len == ANSWER_MAX)
            break;
        ssize_t n = recv(fd, ans->buf + ans->len, ANSWER_MAX - ans->len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            ans->timed_out = true;
        if (n <= 0)
            break;
        ans->len += (size_t)n;
    }
    close(fd);
}

/* who: the client (1..3) whose last session may be resumed, or 0 for a full handshake. */
static void tls_exchange(int who, gnutls_certificate_credentials_t cred, const uint8_t *data,
                         size_t size, struct answer *ans)
{
    int fd = connect_server();
    gnutls_session_t s;
    if (gnutls_init(&s, GNUTLS_CLIENT) < 0 ||
        gnutls_priority_set_direct(s, SERVER_TLS_PRIORITIES, NULL) < 0 ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0)
        fuzz_die("gnutls session");
    if (who > 0 && connections[who]++ % 16 != 0 && resume[who].data &&
        gnutls_session_set_data(s, resume[who].data, resume[who].size) < 0)
        fuzz_die("gnutls_session_set_data");
    gnutls_transport_set_int(s, fd);
    int rc;
    do
        rc = gnutls_handshake(s);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc < 0)
        fuzz_die("TLS handshake with the collector failed: %s", gnutls_strerror(rc));
    size_t off = 0;
    while (off < size) {
        ssize_t n = gnutls_record_send(s, data + off, size - off);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    gnutls_bye(s, GNUTLS_SHUT_WR);
    shutdown(fd, SHUT_WR);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (ans->len == ANSWER_MAX)
            break;
        ssize_t n = gnutls_record_recv(s, ans->buf + ans->len, ANSWER_MAX - ans->len);
        if (n == GNUTLS_E_AGAIN) {
            /* TLS 1.3: a post-handshake message (the collector's session tickets) also ends a
             * read with E_AGAIN; only the socket's timeout is the server keeping it open. */
            clock_gettime(CLOCK_MONOTONIC, &t1);
            long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
            if (ms < CLOSE_DEADLINE_MS - 100)
                continue;
            ans->timed_out = true;
            break;
        }
        if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_REHANDSHAKE)
            continue;
        if (n <= 0)
            break;
        ans->len += (size_t)n;
    }
    /* The ticket of this connection (TLS 1.3 sends it after the handshake) resumes the next. */
    gnutls_datum_t next = {NULL, 0};
    if (who > 0 && gnutls_session_get_data2(s, &next) == 0 && next.size > 0) {
        gnutls_free(resume[who].data);
        resume[who] = next;
    } else {
        gnutls_free(next.data);
    }
    gnutls_deinit(s);
    close(fd);
}

static bool starts_response(const char *p, const char *end)
{
    return end - p >= 7 && memcmp(p, "HTTP/1.", 7) == 0;
}

/* Whether `code` may reach this client. 404, 405 and 503 come from the access handler, after
 * the certificate check; MHD itself refuses what it cannot parse (400, 413, 414, 431, 505...). */
static bool allowed(int who, int code)
{
    if (who == 2)
        return true;
    if (code < 400 || code == 404 || code == 405 || code == 503)
        return false;
    return who == 1 ? code != 403 : code != 401;
}

/* Walks the responses in ans (who 1..3); returns how many, and aborts on anything that is not
 * one. A stranger on raw TCP (who 0) must get no plain HTTP at all: TLS records or nothing. */
static int check_answer(int who, const struct answer *ans)
{
    if (ans->timed_out)
        fuzz_die("the collector kept the connection open %d ms after the client was done "
                 "(who=%d)",
                 CLOSE_DEADLINE_MS, who);
    const char *p = ans->buf, *end = ans->buf + ans->len;
    if (who == 0) {
        if (starts_response(p, end) || memmem(p, ans->len, "\"fuzz\":true", 11))
            fuzz_die("plain HTTP or the report on a connection without TLS");
        return 0;
    }
    int count = 0;
    while (p < end) {
        int code = 0, minor = -1, used = 0;
        if (!starts_response(p, end) || end - p < 12 ||
            sscanf(p, "HTTP/1.%1d %3d%n", &minor, &code, &used) != 2 || used != 12 || code < 100 ||
            code > 599)
            fuzz_die("not an HTTP response (who=%d): %.40s", who, p);
        const char *head_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!head_end)
            fuzz_die("response without the end of its headers (who=%d)", who);
        if (!allowed(who, code))
            fuzz_die("HTTP %d to a client that may not have it (who=%d)", code, who);
        const char *cl = memmem(p, (size_t)(head_end - p), "\r\nContent-Length: ", 18);
        long body = cl ? strtol(cl + 18, NULL, 10) : 0;
        const char *b = head_end + 4;
        if (body < 0 || body > end - b)
            body = end - b;
        if (code == 200 && body > 0 && !memmem(b, (size_t)body, "\"" HOST "\"", strlen(HOST) + 2))
            fuzz_die("200 without the report or the health of " HOST);
        /* The next response follows the body, or the headers when this answered a HEAD. */
        if (b + body == end || starts_response(b + body, end))
            p = b + body;
        else if (b == end || starts_response(b, end))
            p = b;
        else
            fuzz_die("bytes after a response that are not a response (who=%d)", who);
        count++;
    }
    return count;
}

static void check_alive(void)
{
    static const char get[] = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n";
    struct answer ans = {answer_buf, 0, false};
    tls_exchange(0, cred_orch, (const uint8_t *)get, sizeof(get) - 1, &ans);
    if (ans.len < 12 || memcmp(ans.buf, "HTTP/1.1 200", 12) != 0)
        fuzz_die("the collector no longer answers the orchestrator: %.60s",
                 ans.len ? ans.buf : "(nothing)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int who = data[0] % 4;

    struct answer ans = {answer_buf, 0, false};
    if (who == 0)
        raw_exchange(data + 1, size - 1, &ans);
    else
        tls_exchange(who,
                     who == 1   ? cred_none
                     : who == 2 ? cred_orch
                                : cred_host,
                     data + 1, size - 1, &ans);
    check_answer(who, &ans);
    if (++inputs % 256 == 0)
        check_alive();
    return 0;
}

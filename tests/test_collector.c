/*
 * test_collector.c — the collector's HTTPS server and the tlsgate-collector binary, end to end:
 * real certificates made by tools/gen-certs, real TLS on 127.0.0.1, real processes.
 *
 * Two kinds of peer:
 * - a forked child running server.c on its own libuv loop (case "server"): the refusals, the
 *   routes, the limits, and several identities on one loop as the fleet simulator will use it;
 * - the real tlsgate-collector binary (case "collector"): start-up refusals, the report it
 *   serves, signals, refresh.
 * Readiness is waited for on a condition with a deadline (a port number arriving on a pipe, a
 * health answer changing), never with a fixed sleep.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "report.h"
#include "server.h"
#include "testutil.h"

#define HOST1 "host1.corp.example.com"
#define HOST2 "host2.corp.example.com"
#define DEADLINE_MS 15000

static char *certs; /* the fleet: ca, HOST1, HOST2, orchestrator */
static char *other; /* a second CA and its own orchestrator certificate */
static char *dir;   /* per test */

/* ---- time and waiting ---- */

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *read_text(const char *path)
{
    char *s = tu_read_file(path, NULL);
    ck_assert_msg(s != NULL, "cannot read %s", path);
    return s;
}

/* ---- the client: libcurl easy with the fleet's trust ---- */

/* The fleet's client: its CA, HOST1 unless told otherwise, bodies up to 4 report caps. */
static void do_fetch(uint16_t port, struct tu_fetch *f)
{
    if (!f->host)
        f->host = HOST1;
    f->ca = tu_path(certs, "ca.pem");
    f->max_bytes = 4 * REPORT_MAX_BYTES;
    f->timeout_ms = DEADLINE_MS;
    tu_fetch_run(port, f);
}

/* The HTTP status `f` gets from the server on `port` (0 when the transfer failed). */
static long fetch_status(uint16_t port, struct tu_fetch f)
{
    do_fetch(port, &f);
    tu_fetch_release(&f);
    return f.code;
}

/*
 * Sends `len` raw bytes as the request over a mutual-TLS connection (curl CONNECT_ONLY, so
 * libcurl's own 1 MiB request cap does not apply) and returns the status code of the answer,
 * or 0 when the server closed the connection without one.
 */
static long raw_request(uint16_t port, const char *data, size_t len)
{
    char url[300], resolve[300], cert[4096], key[4096];
    snprintf(url, sizeof(url), "https://%s:%u/", HOST1, (unsigned)port);
    snprintf(resolve, sizeof(resolve), "%s:%u:127.0.0.1", HOST1, (unsigned)port);
    snprintf(cert, sizeof(cert), "%s/orchestrator.pem", certs);
    snprintf(key, sizeof(key), "%s/orchestrator.key", certs);
    struct curl_slist *res = curl_slist_append(NULL, resolve);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_RESOLVE, res);
    curl_easy_setopt(h, CURLOPT_CAINFO, tu_path(certs, "ca.pem"));
    curl_easy_setopt(h, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(h, CURLOPT_SSLKEY, key);
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    curl_socket_t sock;
    ck_assert_int_eq(curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &sock), CURLE_OK);

    long long end = tu_now_ms() + DEADLINE_MS;
    size_t off = 0;
    while (off < len && tu_now_ms() < end) {
        size_t sent = 0;
        CURLcode rc = curl_easy_send(h, data + off, len - off, &sent);
        if (rc == CURLE_AGAIN) {
            struct pollfd pfd = {.fd = sock, .events = POLLOUT};
            poll(&pfd, 1, 100);
            continue;
        }
        if (rc != CURLE_OK)
            break; /* the server stopped reading: what it answered is below */
        off += sent;
    }
    char resp[512];
    size_t got = 0;
    while (got < sizeof(resp) - 1 && tu_now_ms() < end) {
        size_t n = 0;
        CURLcode rc = curl_easy_recv(h, resp + got, sizeof(resp) - 1 - got, &n);
        if (rc == CURLE_AGAIN) {
            struct pollfd pfd = {.fd = sock, .events = POLLIN};
            poll(&pfd, 1, 100);
            continue;
        }
        if (rc != CURLE_OK || n == 0)
            break;
        got += n;
    }
    resp[got] = '\0';
    curl_easy_cleanup(h);
    curl_slist_free_all(res);
    long code = 0;
    if (strncmp(resp, "HTTP/1.1 ", 9) == 0)
        code = strtol(resp + 9, NULL, 10);
    return code;
}

/* A GET whose one header is 1 MiB long. */
static char *huge_header_request(size_t *len)
{
    size_t n = 1024 * 1024;
    char *req = malloc(n + 256);
    int head = snprintf(req, 256, "GET /v1/readiness HTTP/1.1\r\nHost: %s\r\nX-Big: ", HOST1);
    memset(req + head, 'a', n);
    memcpy(req + head + n, "\r\n\r\n", 4);
    *len = (size_t)head + n + 4;
    return req;
}

/* GET path with the orchestrator's certificate; asserts 200 and returns the body (malloc'd). */
static char *get_ok(uint16_t port, const char *host, const char *path)
{
    struct tu_fetch f = {.path = path, .host = host, .certdir = certs};
    do_fetch(port, &f);
    ck_assert_msg(f.rc == CURLE_OK, "GET %s: %s", path, f.error);
    ck_assert_int_eq(f.code, 200);
    ck_assert_ptr_nonnull(f.out);
    return f.out;
}

static json_t *get_json(uint16_t port, const char *host, const char *path)
{
    char *body = get_ok(port, host, path);
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    ck_assert_msg(j != NULL, "%s: not JSON: %s", path, body);
    free(body);
    return j;
}

/* ---- a forked child running server.c ---- */

struct child {
    pid_t pid;
    uint16_t port[4];
};

struct child_loop {
    uv_signal_t term;
    struct server *srv[4];
    int n;
};

static void child_on_term(uv_signal_t *h, int signum)
{
    (void)signum;
    struct child_loop *cl = h->data;
    for (int i = 0; i < cl->n; i++)
        server_close(cl->srv[i], NULL, NULL);
    uv_close((uv_handle_t *)h, NULL);
}

static char *pem(const char *base, const char *name) { return read_text(tu_path(base, name)); }

/* Connection discipline for the next start_servers (zero: server.h's defaults). */
static struct server_options tune;
/* When > 0: the child may open only this many more descriptors once its servers listen. */
static int tune_spare_fds;

/*
 * Forks a child that runs one server per host in hosts[] (NULL-ended) on one loop, each serving
 * the report `{"host":"<host>"}`, and waits for their ports on a pipe. client_cn as in server.h.
 */
static struct child start_servers(const char *const *hosts, const char *client_cn)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    struct child ch = {0};
    ch.pid = fork();
    ck_assert_int_ge(ch.pid, 0);
    if (ch.pid == 0) {
        close(fds[0]);
        signal(SIGPIPE, SIG_IGN);
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct child_loop cl = {0};
        char *ca = pem(certs, "ca.pem");
        for (; hosts[cl.n]; cl.n++) {
            char certname[300], keyname[300], report[300], err[512];
            snprintf(certname, sizeof(certname), "%s.pem", hosts[cl.n]);
            snprintf(keyname, sizeof(keyname), "%s.key", hosts[cl.n]);
            char *cert = pem(certs, certname), *key = pem(certs, keyname);
            struct server_options o = {
                .host = hosts[cl.n],
                .address = "127.0.0.1",
                .port = 0,
                .cert_pem = cert,
                .key_pem = key,
                .ca_pem = ca,
                .client_cn = client_cn,
                .connection_limit = tune.connection_limit,
                .per_ip_limit = tune.per_ip_limit,
                .connection_timeout_s = tune.connection_timeout_s,
                .handshake_timeout_ms = tune.handshake_timeout_ms,
                .request_timeout_ms = tune.request_timeout_ms,
                .orchestrators = tune.orchestrators,
                .norchestrators = tune.norchestrators,
            };
            if (server_start(&loop, &o, &cl.srv[cl.n], err, sizeof(err)) != 0) {
                fprintf(stderr, "server_start: %s\n", err);
                _exit(90);
            }
            free(cert);
            free(key);
            int n = snprintf(report, sizeof(report), "{\"host\":\"%s\"}", hosts[cl.n]);
            if (server_set_report(cl.srv[cl.n], report, (size_t)n, 1764072000) != 0)
                _exit(91);
            uint16_t port = server_port(cl.srv[cl.n]);
            if (write(fds[1], &port, sizeof(port)) != sizeof(port))
                _exit(92);
        }
        free(ca);
        close(fds[1]);
        uv_signal_init(&loop, &cl.term);
        if (tune_spare_fds > 0) {
            int probe = open("/dev/null", O_RDONLY);
            close(probe);
            struct rlimit rl;
            getrlimit(RLIMIT_NOFILE, &rl);
            rl.rlim_cur = (rlim_t)(probe + tune_spare_fds);
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        cl.term.data = &cl;
        uv_signal_start(&cl.term, child_on_term, SIGTERM);
        uv_run(&loop, UV_RUN_DEFAULT);
        /* Every handle must be gone: a leaked handle fails the test through this exit code. */
        _exit(uv_loop_close(&loop) == 0 ? 0 : 93);
    }
    close(fds[1]);
    for (int i = 0; hosts[i]; i++) {
        ssize_t r;
        while ((r = read(fds[0], &ch.port[i], sizeof(ch.port[i]))) < 0 && errno == EINTR)
            ;
        ck_assert_msg(r == sizeof(ch.port[i]), "server child did not start (exit %d)",
                      tu_wait_exit(ch.pid, DEADLINE_MS));
    }
    close(fds[0]);
    return ch;
}

static struct child start_server(void)
{
    const char *hosts[] = {HOST1, NULL};
    return start_servers(hosts, "tlsgate-orchestrator");
}

/* SIGTERM; the child must close every handle and exit 0 promptly. */
static void stop_child(struct child *ch)
{
    ck_assert_int_eq(kill(ch->pid, SIGTERM), 0);
    ck_assert_int_eq(tu_wait_exit(ch->pid, DEADLINE_MS), 0);
}

/* ---- case "server" ---- */

START_TEST(test_server_serves_report_to_orchestrator)
{
    struct child ch = start_server();
    struct tu_fetch f = {.path = "/v1/readiness", .certdir = certs};
    do_fetch(ch.port[0], &f);
    ck_assert_msg(f.rc == CURLE_OK, "%s", f.error);
    ck_assert_int_eq(f.code, 200);
    ck_assert_str_eq(f.out, "{\"host\":\"" HOST1 "\"}");
    tu_fetch_release(&f);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_refuses_client_without_certificate)
{
    struct child ch = start_server();
    struct tu_fetch f = {.path = "/v1/readiness"};
    do_fetch(ch.port[0], &f);
    ck_assert_msg(f.rc == CURLE_OK, "%s", f.error);
    ck_assert_int_eq(f.code, 401);
    ck_assert_ptr_null(strstr(f.out, HOST1));
    tu_fetch_release(&f);
    /* Unknown paths are refused the same way: no 404 leaks what exists. */
    ck_assert_int_eq(fetch_status(ch.port[0], (struct tu_fetch){.path = "/nowhere"}), 401);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_refuses_certificate_from_another_ca)
{
    struct child ch = start_server();
    struct tu_fetch f = {.path = "/v1/readiness", .certdir = other};
    do_fetch(ch.port[0], &f);
    /* GnuTLS only requests the certificate, so the handshake completes and the handler refuses. */
    ck_assert_msg(f.rc == CURLE_OK, "%s", f.error);
    ck_assert_int_eq(f.code, 403);
    ck_assert_ptr_null(f.out ? strstr(f.out, HOST1) : NULL);
    tu_fetch_release(&f);
    ck_assert_int_eq(
        fetch_status(ch.port[0], (struct tu_fetch){.path = "/v1/health", .certdir = other}), 403);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_refuses_fleet_host_certificate_as_client)
{
    /* HOST2's certificate is from the fleet CA and allows clientAuth, but it is not the
     * orchestrator: one compromised host must not read every other host's report. */
    struct child ch = start_server();
    struct tu_fetch f = {.path = "/v1/readiness", .certdir = certs, .certname = HOST2};
    do_fetch(ch.port[0], &f);
    ck_assert_msg(f.rc == CURLE_OK, "%s", f.error);
    ck_assert_int_eq(f.code, 403);
    tu_fetch_release(&f);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_without_client_cn_accepts_any_fleet_client)
{
    const char *hosts[] = {HOST1, NULL};
    struct child ch = start_servers(hosts, NULL);
    ck_assert_int_eq(fetch_status(ch.port[0], (struct tu_fetch){.path = "/v1/readiness",
                                                                .certdir = certs,
                                                                .certname = HOST2}),
                     200);
    ck_assert_int_eq(
        fetch_status(ch.port[0], (struct tu_fetch){.path = "/v1/readiness", .certdir = other}),
        403);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_refuses_tls11_client)
{
    struct child ch = start_server();
    /* SECLEVEL=0 lets OpenSSL 3 offer TLS 1.1 at all, so the refusal below is the server's. */
    struct tu_fetch f = {.path = "/v1/readiness",
                         .certdir = certs,
                         .sslversion = CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_1,
                         .ciphers = "DEFAULT:@SECLEVEL=0"};
    do_fetch(ch.port[0], &f);
    ck_assert_int_eq(f.rc, CURLE_SSL_CONNECT_ERROR);
    ck_assert_int_eq(f.code, 0);
    ck_assert_ptr_null(f.out);
    /* The same client capped at TLS 1.2 gets in: the limit is the protocol, not the client. */
    struct tu_fetch g = {.path = "/v1/readiness",
                         .certdir = certs,
                         .sslversion = CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2,
                         .ciphers = "DEFAULT:@SECLEVEL=0"};
    do_fetch(ch.port[0], &g);
    ck_assert_msg(g.rc == CURLE_OK, "%s", g.error);
    ck_assert_int_eq(g.code, 200);
    tu_fetch_release(&g);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_refuses_plain_http)
{
    struct child ch = start_server();
    struct tu_fetch f = {.path = "/v1/readiness", .plain = 1};
    do_fetch(ch.port[0], &f);
    ck_assert_int_ne(f.rc, CURLE_OK);
    ck_assert_ptr_null(f.out);
    tu_fetch_release(&f);
    char *body = get_ok(ch.port[0], HOST1, "/v1/readiness");
    free(body);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_refuses_1mib_header_and_keeps_serving)
{
    struct child ch = start_server();
    size_t len;
    char *req = huge_header_request(&len);
    long code = raw_request(ch.port[0], req, len);
    ck_assert_msg(code == 431 || code == 0, "a 1 MiB header got %ld", code);
    /* The same request with a small header is answered: the refusal is about the size. */
    const char *small = "GET /v1/readiness HTTP/1.1\r\nHost: " HOST1 "\r\nX-Big: a\r\n\r\n";
    ck_assert_int_eq(raw_request(ch.port[0], small, strlen(small)), 200);
    free(req);
    char *body = get_ok(ch.port[0], HOST1, "/v1/readiness");
    ck_assert_str_eq(body, "{\"host\":\"" HOST1 "\"}");
    free(body);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_routes_404_405_and_refuses_bodies)
{
    struct child ch = start_server();
    ck_assert_int_eq(
        fetch_status(ch.port[0], (struct tu_fetch){.path = "/v1/other", .certdir = certs}), 404);

    struct tu_fetch p = {.path = "/v1/readiness", .certdir = certs, .method = "POST", .body = "x"};
    do_fetch(ch.port[0], &p);
    ck_assert_int_eq(p.code, 405);
    ck_assert_str_eq(p.allow, " GET, HEAD");
    tu_fetch_release(&p);

    ck_assert_int_eq(
        fetch_status(ch.port[0],
                     (struct tu_fetch){.path = "/v1/health", .certdir = certs, .method = "DELETE"}),
        405);

    ck_assert_int_eq(fetch_status(ch.port[0], (struct tu_fetch){.path = "/v1/readiness",
                                                                .certdir = certs,
                                                                .method = "GET",
                                                                .body = "x=1"}),
                     413);

    struct tu_fetch h = {.path = "/v1/readiness", .certdir = certs, .method = "HEAD"};
    do_fetch(ch.port[0], &h);
    ck_assert_int_eq(h.code, 200);
    ck_assert_ptr_null(h.out);
    tu_fetch_release(&h);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_health_reports_identity_and_size)
{
    struct child ch = start_server();
    json_t *j = get_json(ch.port[0], HOST1, "/v1/health");
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    ck_assert_str_eq(json_string_value(json_object_get(j, "host")), HOST1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "last_refresh")), "2025-11-25T12:00:00Z");
    ck_assert(json_is_null(json_object_get(j, "last_error")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "report_bytes")),
                     (long long)strlen("{\"host\":\"" HOST1 "\"}"));
    json_decref(j);
    stop_child(&ch);
}
END_TEST

START_TEST(test_one_loop_serves_several_identities)
{
    const char *hosts[] = {HOST1, HOST2, NULL};
    struct child ch = start_servers(hosts, "tlsgate-orchestrator");
    ck_assert_int_ne(ch.port[0], ch.port[1]);
    /* Each port presents its own certificate (curl verifies the name) and its own report. */
    char *a = get_ok(ch.port[0], HOST1, "/v1/readiness");
    char *b = get_ok(ch.port[1], HOST2, "/v1/readiness");
    ck_assert_str_eq(a, "{\"host\":\"" HOST1 "\"}");
    ck_assert_str_eq(b, "{\"host\":\"" HOST2 "\"}");
    free(a);
    free(b);
    struct tu_fetch wrong = {.path = "/v1/readiness", .host = HOST2, .certdir = certs};
    do_fetch(ch.port[0], &wrong);
    ck_assert_int_eq(wrong.rc, CURLE_PEER_FAILED_VERIFICATION);
    tu_fetch_release(&wrong);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_start_refuses_bad_tls_material_and_address)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *cert = pem(certs, HOST1 ".pem"), *key = pem(certs, HOST2 ".key"),
         *ca = pem(certs, "ca.pem");
    struct server_options o = {
        .host = HOST1, .address = "127.0.0.1", .cert_pem = cert, .key_pem = key, .ca_pem = ca};
    struct server *s = (struct server *)&o;
    char err[512];
    ck_assert_int_eq(server_start(&loop, &o, &s, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err, HOST1 ": cannot start the HTTPS server") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "do not match") != NULL, "%s", err);
    o.key_pem = pem(certs, HOST1 ".key");
    o.ca_pem = o.key_pem; /* a PEM, but no certificate in it */
    ck_assert_int_eq(server_start(&loop, &o, &s, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, HOST1 ": the CA PEM holds no certificate");
    o.ca_pem = ca;
    o.address = "localhost";
    ck_assert_int_eq(server_start(&loop, &o, &s, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "localhost: not a numeric IPv4 or IPv6 address");
    free((char *)o.key_pem);
    free(cert);
    free(key);
    free(ca);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* ---- case "collector": the real binary ---- */

struct proc {
    pid_t pid;
    uint16_t port;
    char errpath[4096];
};

static const char *collector_bin(void) { return tu_build_path("collectors/tlsgate-collector"); }

/*
 * Starts tlsgate-collector with the fleet's TLS options for HOST1 (unless `bare`) plus `extra`
 * (NULL-ended), and waits (deadline) for the line that names its port. stderr goes to
 * dir/collector.err.
 */
static struct proc start_collector_with(bool bare, const char *const *extra)
{
    const char *args[64];
    int n = 0;
    char *cert = strdup(tu_path(certs, HOST1 ".pem")), *key = strdup(tu_path(certs, HOST1 ".key"));
    char *ca = strdup(tu_path(certs, "ca.pem"));
    if (!bare) {
        const char *fleet[] = {"--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--ca", ca};
        for (size_t i = 0; i < sizeof(fleet) / sizeof(fleet[0]); i++)
            args[n++] = fleet[i];
    }
    for (int i = 0; extra && extra[i] && n < 63; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    struct proc p = {0};
    snprintf(p.errpath, sizeof(p.errpath), "%s/collector.err", dir);
    p.pid = tu_collector_start(args, p.errpath, DEADLINE_MS, &p.port);
    free(cert);
    free(key);
    free(ca);
    return p;
}

static struct proc start_collector(const char *const *extra)
{
    return start_collector_with(false, extra);
}

static void stop_collector(struct proc *p)
{
    ck_assert_int_eq(kill(p->pid, SIGTERM), 0);
    ck_assert_int_eq(tu_wait_exit(p->pid, DEADLINE_MS), 0);
}

/* Runs the collector expecting it to refuse to start; returns the exit code, *err its stderr. */
static int run_collector(const char *const *args, char **err)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)collector_bin();
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return tu_run(argv, NULL, NULL, err);
}

/* run_collector on 127.0.0.1:0 with this TLS material and then `extra` (TU_ARGS). */
static int run_collector_tls(const char *cert, const char *key, const char *ca,
                             const char *const *extra, char **err)
{
    const char *args[64] = {"--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--ca", ca};
    int n = 8;
    for (int i = 0; extra[i] && n < 63; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return run_collector(args, err);
}

static const char *facts_example(void) { return tu_source_path("schema/report.example.json"); }

static void setup(void) { dir = tu_tmpdir(); }
static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

START_TEST(test_collector_serves_valid_report_for_its_host)
{
    const char *extra[] = {"--facts", facts_example(), NULL};
    struct proc p = start_collector(extra);
    char *body = get_ok(p.port, HOST1, "/v1/readiness");
    json_t *r;
    char err[512];
    ck_assert_msg(report_parse(body, strlen(body), &r, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(json_string_value(json_object_get(r, "host")), HOST1);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "collector"), "source")),
                     "facts");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "os"), "build")), 7601);
    json_decref(r);
    json_t *h = get_json(p.port, HOST1, "/v1/health");
    ck_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok");
    ck_assert_str_eq(json_string_value(json_object_get(h, "host")), HOST1);
    ck_assert_int_eq(json_integer_value(json_object_get(h, "report_bytes")),
                     (long long)strlen(body));
    json_decref(h);
    free(body);
    stop_collector(&p);
}
END_TEST

START_TEST(test_collector_refuses_unverified_clients)
{
    const char *extra[] = {"--facts", facts_example(), NULL};
    struct proc p = start_collector(extra);
    ck_assert_int_eq(fetch_status(p.port, (struct tu_fetch){.path = "/v1/readiness"}), 401);
    ck_assert_int_eq(
        fetch_status(p.port, (struct tu_fetch){.path = "/v1/readiness", .certdir = other}), 403);
    struct tu_fetch old = {.path = "/v1/readiness",
                           .certdir = certs,
                           .sslversion = CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_1,
                           .ciphers = "DEFAULT:@SECLEVEL=0"};
    do_fetch(p.port, &old);
    ck_assert_int_eq(old.rc, CURLE_SSL_CONNECT_ERROR);
    tu_fetch_release(&old);
    struct tu_fetch plain = {.path = "/v1/readiness", .plain = 1};
    do_fetch(p.port, &plain);
    ck_assert_int_ne(plain.rc, CURLE_OK);
    ck_assert_ptr_null(plain.out);
    tu_fetch_release(&plain);
    stop_collector(&p);
}
END_TEST

START_TEST(test_collector_survives_1mib_header)
{
    const char *extra[] = {"--facts", facts_example(), NULL};
    struct proc p = start_collector(extra);
    size_t len;
    char *req = huge_header_request(&len);
    long code = raw_request(p.port, req, len);
    ck_assert_msg(code == 431 || code == 0, "a 1 MiB header got %ld", code);
    free(req);
    char *body = get_ok(p.port, HOST1, "/v1/readiness");
    free(body);
    stop_collector(&p);
}
END_TEST

START_TEST(test_collector_refuses_malformed_facts_file)
{
    const char *path = tu_path(dir, "broken.json");
    const char *text = "{\n  \"os\": {\n    \"build\": 7601,\n  }\n}\n";
    tu_write_file(path, text, strlen(text));
    char *err;
    ck_assert_int_eq(run_collector_tls(tu_path(certs, HOST1 ".pem"), tu_path(certs, HOST1 ".key"),
                                       tu_path(certs, "ca.pem"), TU_ARGS("--facts", path), &err),
                     3);
    char want[4200];
    snprintf(want, sizeof(want), "%s:4", path);
    ck_assert_msg(strstr(err, want) != NULL, "stderr lacks %s: %s", want, err);
    free(err);
}
END_TEST

/* A .reg file as `reg export` writes it: UTF-16LE with BOM, CRLF. */
static void write_reg_utf16(const char *path, const char *text)
{
    size_t n = strlen(text);
    char *buf = malloc(2 + 4 * n);
    size_t len = 0;
    buf[len++] = (char)0xFF;
    buf[len++] = (char)0xFE;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\n') {
            buf[len++] = '\r';
            buf[len++] = 0;
        }
        buf[len++] = text[i];
        buf[len++] = 0;
    }
    tu_write_file(path, buf, len);
    free(buf);
}

START_TEST(test_collector_refuses_malformed_regfile)
{
    const char *good = tu_path(dir, "good.reg"), *bad = tu_path(dir, "bad.reg");
    write_reg_utf16(good, "Windows Registry Editor Version 5.00\n\n"
                          "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]\n"
                          "\"CurrentBuildNumber\"=\"7601\"\n");
    write_reg_utf16(bad, "Windows Registry Editor Version 5.00\n\n"
                         "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]\n"
                         "\"UBR\"=dword:zz\n");
    char *err;
    ck_assert_int_eq(run_collector_tls(tu_path(certs, HOST1 ".pem"), tu_path(certs, HOST1 ".key"),
                                       tu_path(certs, "ca.pem"),
                                       TU_ARGS("--regfile", good, "--regfile", bad), &err),
                     3);
    char want[4200];
    snprintf(want, sizeof(want), "%s:4", bad);
    ck_assert_msg(strstr(err, want) != NULL, "stderr lacks %s: %s", want, err);
    free(err);
}
END_TEST

START_TEST(test_collector_serves_report_from_regfiles)
{
    const char *reg = tu_path(dir, "os.reg");
    write_reg_utf16(reg, "Windows Registry Editor Version 5.00\n\n"
                         "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]\n"
                         "\"ProductName\"=\"Windows 7 Enterprise\"\n"
                         "\"CurrentVersion\"=\"6.1\"\n"
                         "\"CurrentBuildNumber\"=\"7601\"\n");
    const char *extra[] = {"--regfile", reg, NULL};
    struct proc p = start_collector(extra);
    char *body = get_ok(p.port, HOST1, "/v1/readiness");
    json_t *r;
    char err[512];
    ck_assert_msg(report_parse(body, strlen(body), &r, err, sizeof(err)) == 0, "%s", err);
    json_t *os = json_object_get(r, "os");
    ck_assert_str_eq(json_string_value(json_object_get(os, "product_name")),
                     "Windows 7 Enterprise");
    ck_assert_int_eq(json_integer_value(json_object_get(os, "build")), 7601);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "collector"), "source")),
                     "regfile");
    json_decref(r);
    free(body);
    stop_collector(&p);
}
END_TEST

START_TEST(test_collector_serves_layered_fixture_facts_over_tls)
{
    /* The win7-ready fixture is two exports layered in order (task B's fixtures): the report on
     * the wire carries exactly the facts the extraction suite expects from them. */
    const char *base = strdup(tu_source_path("tests/fixtures/reg/win7-sp1-x64-unpatched.reg"));
    const char *over = strdup(tu_source_path("tests/fixtures/reg/win7-ready.reg"));
    const char *extra[] = {"--regfile", base, "--regfile", over, NULL};
    struct proc p = start_collector(extra);
    char *body = get_ok(p.port, HOST1, "/v1/readiness");
    json_t *r;
    char err[512];
    ck_assert_msg(report_parse(body, strlen(body), &r, err, sizeof(err)) == 0, "%s", err);
    json_error_t je;
    json_t *want = json_load_file(tu_source_path("tests/fixtures/facts/win7-ready.json"), 0, &je);
    ck_assert_ptr_nonnull(want);
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v)
    {
        ck_assert_msg(json_equal(json_object_get(r, k), v), "%s differs on the wire", k);
    }
    ck_assert_str_eq(json_string_value(json_object_get(r, "host")), HOST1);
    json_decref(want);
    json_decref(r);
    free(body);
    free((char *)base);
    free((char *)over);
    stop_collector(&p);
}
END_TEST

START_TEST(test_collector_refuses_host_not_in_certificate)
{
    char *err;
    ck_assert_int_eq(run_collector_tls(tu_path(certs, HOST1 ".pem"), tu_path(certs, HOST1 ".key"),
                                       tu_path(certs, "ca.pem"),
                                       TU_ARGS("--facts", facts_example(), "--host", HOST2), &err),
                     3);
    ck_assert_msg(strstr(err, "--host " HOST2 " does not match") != NULL, "%s", err);
    free(err);
}
END_TEST

START_TEST(test_collector_accepts_host_in_other_case)
{
    const char *extra[] = {"--facts", facts_example(), "--host", "HOST1.Corp.Example.com", NULL};
    struct proc p = start_collector(extra);
    json_t *h = get_json(p.port, HOST1, "/v1/health");
    ck_assert_str_eq(json_string_value(json_object_get(h, "host")), "HOST1.Corp.Example.com");
    json_decref(h);
    stop_collector(&p);
}
END_TEST

START_TEST(test_collector_refuses_bad_tls_material)
{
    char *err;
    /* the key of another certificate */
    ck_assert_int_eq(run_collector_tls(tu_path(certs, HOST1 ".pem"), tu_path(certs, HOST2 ".key"),
                                       tu_path(certs, "ca.pem"),
                                       TU_ARGS("--facts", facts_example()), &err),
                     3);
    ck_assert_msg(strstr(err, "does not belong to the certificate") != NULL, "%s", err);
    free(err);
    /* a CA file that holds a leaf certificate */
    ck_assert_int_eq(run_collector_tls(tu_path(certs, HOST1 ".pem"), tu_path(certs, HOST1 ".key"),
                                       tu_path(certs, HOST2 ".pem"),
                                       TU_ARGS("--facts", facts_example()), &err),
                     3);
    ck_assert_msg(strstr(err, "is not a CA") != NULL, "%s", err);
    free(err);
    /* an unreadable certificate */
    const char *missing = tu_path(dir, "missing.pem");
    ck_assert_int_eq(run_collector_tls(missing, tu_path(certs, HOST1 ".key"),
                                       tu_path(certs, "ca.pem"),
                                       TU_ARGS("--facts", facts_example()), &err),
                     3);
    ck_assert_msg(strstr(err, missing) != NULL, "%s", err);
    free(err);
    /* a certificate file that is not PEM */
    const char *junk = tu_path(dir, "junk.pem");
    tu_write_file(junk, "not a certificate\n", 18);
    ck_assert_int_eq(run_collector_tls(junk, tu_path(certs, HOST1 ".key"), tu_path(certs, "ca.pem"),
                                       TU_ARGS("--facts", facts_example()), &err),
                     3);
    ck_assert_msg(strstr(err, "not a PEM certificate") != NULL, "%s", err);
    free(err);
}
END_TEST

START_TEST(test_collector_usage_errors_and_help)
{
    char *err, *out;
    ck_assert_int_eq(
        run_collector_tls("a", "b", "c", TU_ARGS("--facts", "f", "--regfile", "r"), &err), 2);
    ck_assert_msg(strstr(err, "exactly one source") != NULL, "%s", err);
    free(err);
    /* The live registry exists only in the Windows build: a clear usage error here. */
    ck_assert_int_eq(run_collector_tls("a", "b", "c", TU_ARGS("--registry"), &err), 2);
    ck_assert_msg(strstr(err, "--registry reads the Windows registry and exists only in the "
                              "Windows build") != NULL,
                  "%s", err);
    free(err);
    const char *bogus[] = {"--frobnicate", NULL};
    ck_assert_int_eq(run_collector(bogus, &err), 2);
    ck_assert_msg(strstr(err, "--frobnicate") != NULL, "%s", err);
    free(err);
    /* An unknown letter as the first argument, in a cluster: the letter is named, not the
     * program's path. */
    const char *letter[] = {"-xh", NULL};
    ck_assert_int_eq(run_collector(letter, &err), 2);
    ck_assert_str_eq(err, "tlsgate-collector: unknown option '-x' (see --help)\n");
    free(err);
    char *argv[] = {(char *)collector_bin(), "--help", NULL};
    ck_assert_int_eq(tu_run(argv, NULL, &out, NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "--regfile FILE"));
    ck_assert_ptr_nonnull(strstr(out, "/v1/readiness"));
    ck_assert_ptr_null(strstr(out, "--registry")); /* --help tells what this build has */
    free(out);
}
END_TEST

START_TEST(test_collector_reads_config_file)
{
    const char *cfg = tu_path(dir, "collector.json");
    json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "listen", "127.0.0.1:0", "cert",
                          tu_path(certs, HOST1 ".pem"), "key", tu_path(certs, HOST1 ".key"), "ca",
                          tu_path(certs, "ca.pem"), "facts", facts_example(), "interval", 60);
    ck_assert_int_eq(json_dump_file(c, cfg, 0), 0);
    json_decref(c);

    /* The command line gives --listen/--cert/--key/--ca; the source and interval come from the
     * config file. */
    const char *extra[] = {"--config", cfg, NULL};
    struct proc p = start_collector(extra);
    char *body = get_ok(p.port, HOST1, "/v1/readiness");
    ck_assert_ptr_nonnull(strstr(body, "\"interval\":60"));
    free(body);
    stop_collector(&p);

    const char *bad = tu_path(dir, "bad.json");
    const char *text = "{\"listen\": \"127.0.0.1:0\", \"colour\": 1}";
    tu_write_file(bad, text, strlen(text));
    const char *args[] = {"--config", bad, NULL};
    char *err;
    ck_assert_int_eq(run_collector(args, &err), 3);
    ck_assert_msg(strstr(err, "unknown key \"colour\"") != NULL, "%s", err);
    free(err);
}
END_TEST

/* Copies the file `from` to `to`. */
static void copy_file(const char *from, const char *to)
{
    size_t len;
    char *data = tu_read_file(from, &len);
    ck_assert_msg(data != NULL, "cannot read %s", from);
    tu_write_file(to, data, len);
    free(data);
}

/* Paths in a config file are relative to its folder, not to the working directory (a Windows
 * service runs in System32); firewall_allow is checked even where no firewall is set up. */
START_TEST(test_collector_config_paths_are_relative_to_the_config)
{
    char etc[4096];
    snprintf(etc, sizeof(etc), "%s/etc", dir);
    ck_assert_int_eq(mkdir(etc, 0700), 0);
    char *cert = strdup(tu_path(etc, "host.pem")), *key = strdup(tu_path(etc, "host.key"));
    copy_file(tu_path(certs, HOST1 ".pem"), cert);
    copy_file(tu_path(certs, HOST1 ".key"), key);
    ck_assert_int_eq(chmod(key, 0600), 0); /* a private key others can read is refused */
    copy_file(tu_path(certs, "ca.pem"), tu_path(etc, "fleet-ca.pem"));
    copy_file(facts_example(), tu_path(etc, "facts.json"));
    free(cert);
    free(key);
    char *cfg = strdup(tu_path(etc, "collector.json"));
    const char *text = "{\"listen\": \"127.0.0.1:0\", \"cert\": \"host.pem\", "
                       "\"key\": \"host.key\", \"ca\": \"fleet-ca.pem\", "
                       "\"facts\": \"facts.json\", "
                       "\"firewall_allow\": [\"127.0.0.1\", \"::1/128\", \"127.0.0.0/8\"]}";
    tu_write_file(cfg, text, strlen(text));

    /* The working directory is the test's (not etc/): only the config's folder holds them. */
    const char *args[] = {"--config", cfg, NULL};
    struct proc p = start_collector_with(true, args);
    char *body = get_ok(p.port, HOST1, "/v1/readiness");
    ck_assert_ptr_nonnull(strstr(body, "\"source\":\"facts\""));
    free(body);
    stop_collector(&p);

    /* An absolute path stays as it is. */
    char abs_text[8192];
    snprintf(abs_text, sizeof(abs_text),
             "{\"listen\": \"127.0.0.1:0\", \"cert\": \"host.pem\", \"key\": \"host.key\", "
             "\"ca\": \"%s\", \"facts\": \"facts.json\"}",
             tu_path(certs, "ca.pem"));
    tu_write_file(cfg, abs_text, strlen(abs_text));
    p = start_collector_with(true, args);
    stop_collector(&p);

    /* A bad firewall_allow entry is named, and nothing starts. */
    const char *bad = "{\"listen\": \"127.0.0.1:0\", \"cert\": \"host.pem\", "
                      "\"key\": \"host.key\", \"ca\": \"fleet-ca.pem\", "
                      "\"facts\": \"facts.json\", "
                      "\"firewall_allow\": [\"127.0.0.1\", \"orchestrator.example.com\"]}";
    tu_write_file(cfg, bad, strlen(bad));
    char *err;
    ck_assert_int_eq(run_collector(args, &err), 3);
    ck_assert_msg(strstr(err, "firewall_allow[1]: not an IPv4 or IPv6 address") != NULL, "%s", err);
    free(err);
    const char *bad_prefix = "{\"firewall_allow\": [\"127.0.0.1/33\"]}";
    tu_write_file(cfg, bad_prefix, strlen(bad_prefix));
    ck_assert_int_eq(run_collector(args, &err), 3);
    ck_assert_msg(strstr(err, "firewall_allow[0]") != NULL, "%s", err);
    free(err);
    /* A missing relative file is named with the config's folder. */
    const char *missing = "{\"listen\": \"127.0.0.1:0\", \"cert\": \"nothere.pem\", "
                          "\"key\": \"host.key\", \"ca\": \"fleet-ca.pem\", "
                          "\"facts\": \"facts.json\"}";
    tu_write_file(cfg, missing, strlen(missing));
    ck_assert_int_eq(run_collector(args, &err), 3);
    ck_assert_msg(strstr(err, tu_path(etc, "nothere.pem")) != NULL, "%s", err);
    free(err);
    free(cfg);
}
END_TEST

START_TEST(test_collector_sigterm_exits_zero)
{
    const char *extra[] = {"--facts", facts_example(), NULL};
    struct proc p = start_collector(extra);
    char *body = get_ok(p.port, HOST1, "/v1/health");
    free(body);
    ck_assert_int_eq(kill(p.pid, SIGTERM), 0);
    ck_assert_int_eq(tu_wait_exit(p.pid, 5000), 0);
    char *err = read_text(p.errpath);
    ck_assert_str_eq(err, "");
    free(err);
}
END_TEST

/* Polls /v1/health until last_error is (or is not) null; returns the health object. */
static json_t *wait_health(uint16_t port, int want_error)
{
    long long end = tu_now_ms() + DEADLINE_MS;
    for (;;) {
        json_t *h = get_json(port, HOST1, "/v1/health");
        if (json_is_null(json_object_get(h, "last_error")) != want_error)
            return h;
        json_decref(h);
        ck_assert_msg(tu_now_ms() < end, "health did not change in time");
        pause_ms(20);
    }
}

START_TEST(test_collector_sighup_keeps_old_report_on_broken_facts)
{
    char *example = read_text(facts_example());
    const char *facts = tu_path(dir, "facts.json");
    tu_write_file(facts, example, strlen(example));
    const char *extra[] = {"--facts", strdup(facts), NULL};
    struct proc p = start_collector(extra);
    char *before = get_ok(p.port, HOST1, "/v1/readiness");

    tu_write_file(facts, "{\"os\": [", 8);
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    json_t *h = wait_health(p.port, 1);
    ck_assert_str_eq(json_string_value(json_object_get(h, "status")), "degraded");
    const char *why = json_string_value(json_object_get(h, "last_error"));
    ck_assert_msg(why && strstr(why, "facts.json"), "last_error: %s", why ? why : "null");
    json_decref(h);
    char *after = get_ok(p.port, HOST1, "/v1/readiness");
    ck_assert_str_eq(after, before);
    free(after);

    /* A good file again: the next SIGHUP clears the error and serves the new facts. */
    char *fips = strstr(example, "\"fips\": false");
    ck_assert_ptr_nonnull(fips);
    memcpy(fips, "\"fips\": true ", 13);
    tu_write_file(facts, example, strlen(example));
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    h = wait_health(p.port, 0);
    ck_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok");
    json_decref(h);
    after = get_ok(p.port, HOST1, "/v1/readiness");
    ck_assert_ptr_nonnull(strstr(after, "\"fips\":true"));
    free(after);
    free(before);
    free(example);
    free((char *)extra[1]);
    stop_collector(&p);
}
END_TEST

START_TEST(test_collector_refreshes_on_interval)
{
    char *example = read_text(facts_example());
    const char *facts = tu_path(dir, "facts.json");
    tu_write_file(facts, example, strlen(example));
    const char *extra[] = {"--facts", strdup(facts), "--interval", "1", NULL};
    struct proc p = start_collector(extra);
    char *body = get_ok(p.port, HOST1, "/v1/readiness");
    ck_assert_ptr_nonnull(strstr(body, "\"fips\":false"));
    free(body);

    char *fips = strstr(example, "\"fips\": false");
    memcpy(fips, "\"fips\": true ", 13);
    tu_write_file(facts, example, strlen(example));
    long long end = tu_now_ms() + DEADLINE_MS;
    for (;;) {
        body = get_ok(p.port, HOST1, "/v1/readiness");
        int done = strstr(body, "\"fips\":true") != NULL;
        free(body);
        if (done)
            break;
        ck_assert_msg(tu_now_ms() < end, "the report was not refreshed in time");
        pause_ms(50);
    }
    free(example);
    free((char *)extra[1]);
    stop_collector(&p);
}
END_TEST

/* ---- case "gen-certs" ---- */

static gnutls_x509_crt_t load_crt(const char *path)
{
    char *text = read_text(path);
    gnutls_datum_t d = {(unsigned char *)text, (unsigned)strlen(text)};
    gnutls_x509_crt_t crt;
    ck_assert_int_eq(gnutls_x509_crt_init(&crt), 0);
    ck_assert_int_eq(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
    free(text);
    return crt;
}

static int has_purpose(gnutls_x509_crt_t crt, const char *oid)
{
    for (unsigned i = 0;; i++) {
        char buf[128];
        size_t n = sizeof(buf);
        if (gnutls_x509_crt_get_key_purpose_oid(crt, i, buf, &n, NULL) < 0)
            return 0;
        if (strcmp(buf, oid) == 0)
            return 1;
    }
}

static int gen_certs_run(const char *out, const char *name)
{
    char *argv[] = {(char *)tu_source_path("tools/gen-certs"), (char *)out, (char *)name, NULL};
    return tu_run(argv, NULL, NULL, NULL);
}

START_TEST(test_gen_certs_makes_ca_host_and_orchestrator)
{
    ck_assert_int_eq(gen_certs_run(dir, "cl-w7-0001.corp.contoso.com"), 0);
    struct stat st;
    const char *keys[] = {"ca.key", "cl-w7-0001.corp.contoso.com.key", "orchestrator.key", NULL};
    for (int i = 0; keys[i]; i++) {
        ck_assert_int_eq(stat(tu_path(dir, keys[i]), &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0600);
    }
    gnutls_x509_crt_t ca = load_crt(tu_path(dir, "ca.pem"));
    ck_assert_int_gt(gnutls_x509_crt_get_ca_status(ca, NULL), 0);
    unsigned usage = 0;
    ck_assert_int_ge(gnutls_x509_crt_get_key_usage(ca, &usage, NULL), 0);
    ck_assert(usage & GNUTLS_KEY_KEY_CERT_SIGN);
    ck_assert_int_eq(gnutls_x509_crt_get_pk_algorithm(ca, NULL), GNUTLS_PK_ECDSA);

    gnutls_x509_crt_t host = load_crt(tu_path(dir, "cl-w7-0001.corp.contoso.com.pem"));
    char name[256];
    size_t n = sizeof(name);
    ck_assert_int_eq(gnutls_x509_crt_get_subject_alt_name(host, 0, name, &n, NULL),
                     GNUTLS_SAN_DNSNAME);
    ck_assert_str_eq(name, "cl-w7-0001.corp.contoso.com");
    ck_assert_int_eq(gnutls_x509_crt_get_ca_status(host, NULL), 0);
    ck_assert(has_purpose(host, GNUTLS_KP_TLS_WWW_SERVER));
    ck_assert(has_purpose(host, GNUTLS_KP_TLS_WWW_CLIENT));
    unsigned status = 1;
    ck_assert_int_eq(gnutls_x509_crt_verify(host, &ca, 1, 0, &status), 0);
    ck_assert_uint_eq(status, 0);

    gnutls_x509_crt_t orch = load_crt(tu_path(dir, "orchestrator.pem"));
    n = sizeof(name);
    ck_assert_int_eq(
        gnutls_x509_crt_get_dn_by_oid(orch, GNUTLS_OID_X520_COMMON_NAME, 0, 0, name, &n), 0);
    ck_assert_str_eq(name, "tlsgate-orchestrator");
    ck_assert(has_purpose(orch, GNUTLS_KP_TLS_WWW_CLIENT));
    ck_assert(!has_purpose(orch, GNUTLS_KP_TLS_WWW_SERVER));
    ck_assert_int_eq(gnutls_x509_crt_verify(orch, &ca, 1, 0, &status), 0);
    ck_assert_uint_eq(status, 0);
    gnutls_x509_crt_deinit(ca);
    gnutls_x509_crt_deinit(host);
    gnutls_x509_crt_deinit(orch);
}
END_TEST

START_TEST(test_gen_certs_reuses_existing_ca)
{
    ck_assert_int_eq(gen_certs_run(dir, "a.example.com"), 0);
    char *ca1 = read_text(tu_path(dir, "ca.pem"));
    char *orch1 = read_text(tu_path(dir, "orchestrator.pem"));
    ck_assert_int_eq(gen_certs_run(dir, "b.example.com"), 0);
    char *ca2 = read_text(tu_path(dir, "ca.pem"));
    char *orch2 = read_text(tu_path(dir, "orchestrator.pem"));
    ck_assert_str_eq(ca1, ca2);
    ck_assert_str_eq(orch1, orch2);
    /* The host added later is signed by the same CA as the first one. */
    gnutls_x509_crt_t ca = load_crt(tu_path(dir, "ca.pem"));
    gnutls_x509_crt_t b = load_crt(tu_path(dir, "b.example.com.pem"));
    unsigned status = 1;
    ck_assert_int_eq(gnutls_x509_crt_verify(b, &ca, 1, 0, &status), 0);
    ck_assert_uint_eq(status, 0);
    gnutls_x509_crt_deinit(ca);
    gnutls_x509_crt_deinit(b);
    free(ca1);
    free(ca2);
    free(orch1);
    free(orch2);
}
END_TEST

START_TEST(test_gen_certs_refuses_names_that_are_not_host_names)
{
    ck_assert_int_eq(gen_certs_run(dir, "../evil"), 2);
    ck_assert_int_eq(gen_certs_run(dir, "ca"), 2);
    ck_assert_int_eq(gen_certs_run(dir, "-x"), 2);
    /* Names the report's host check refuses: a certificate for them could never be served. */
    ck_assert_int_eq(gen_certs_run(dir, "a..example.com"), 2);
    ck_assert_int_eq(gen_certs_run(dir, "a-.example.com"), 2);
    ck_assert_int_eq(gen_certs_run(dir, "a.-b.example.com"), 2);
    char label64[80];
    memset(label64, 'a', 64);
    snprintf(label64 + 64, sizeof(label64) - 64, ".example.com");
    ck_assert_int_eq(gen_certs_run(dir, label64), 2);
    struct stat st;
    ck_assert_int_ne(stat(tu_path(dir, "ca.pem"), &st), 0);
}
END_TEST

START_TEST(test_gen_certs_rsa_option)
{
    char *argv[] = {(char *)tu_source_path("tools/gen-certs"), "--rsa", dir, "r.example.com", NULL};
    ck_assert_int_eq(tu_run(argv, NULL, NULL, NULL), 0);
    gnutls_x509_crt_t host = load_crt(tu_path(dir, "r.example.com.pem"));
    unsigned bits = 0;
    ck_assert_int_eq(gnutls_x509_crt_get_pk_algorithm(host, &bits), GNUTLS_PK_RSA);
    ck_assert_uint_eq(bits, 2048);
    gnutls_x509_crt_deinit(host);
}
END_TEST

/* ---- case "guard": the server stays reachable (issue 19) ---- */

static void guard_setup(void)
{
    memset(&tune, 0, sizeof(tune));
    tune_spare_fds = 0;
}

/* A TCP connection to 127.0.0.1:port from `source` (another loopback address). */
static int tcp_from(const char *source, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, source, &a.sin_addr);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
    return fd;
}

/* True when the server ends the connection (EOF or reset) before DEADLINE_MS. While waiting,
 * `drip` (when set) is sent one byte at a time every 100 ms: activity that restarts MHD's own
 * idle timeout and must not restart our deadlines. */
static bool closed_by_server(int fd, const char *drip)
{
    long long end = tu_now_ms() + DEADLINE_MS;
    size_t at = 0;
    while (tu_now_ms() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) {
            char b[256];
            ssize_t n = recv(fd, b, sizeof(b), 0);
            if (n <= 0)
                return true;
        }
        if (drip && drip[at] && send(fd, drip + at, 1, MSG_NOSIGNAL) < 0)
            return true;
        if (drip && drip[at])
            at++;
    }
    return false;
}

START_TEST(test_server_closes_silent_connection_at_handshake_deadline)
{
    /* Deadlines well under the wait (15 s), an idle timeout well over it: only the deadline
     * can end these connections in time. Not shorter: the last GET must still get through
     * a sanitizer build's slow handshake. */
    tune.handshake_timeout_ms = 2000;
    tune.request_timeout_ms = 4000;
    tune.connection_timeout_s = 60;
    struct child ch = start_server();
    int fd = tcp_from("127.0.0.2", ch.port[0]);
    ck_assert_msg(closed_by_server(fd, NULL), "a silent connection was never closed");
    close(fd);
    /* Half a TLS record header each 100 ms is activity, not a handshake. */
    fd = tcp_from("127.0.0.2", ch.port[0]);
    ck_assert_msg(closed_by_server(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00"),
                  "a trickled ClientHello was never closed");
    close(fd);
    char *body = get_ok(ch.port[0], HOST1, "/v1/readiness");
    free(body);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_closes_slow_request_at_request_deadline)
{
    tune.handshake_timeout_ms = 3000;
    tune.request_timeout_ms = 4000; /* the header below takes 10 s to trickle in */
    tune.connection_timeout_s = 60;
    struct child ch = start_server();
    /* A complete handshake (no client certificate), then a header a byte at a time. */
    char url[300], resolve[300];
    snprintf(url, sizeof(url), "https://%s:%u/", HOST1, (unsigned)ch.port[0]);
    snprintf(resolve, sizeof(resolve), "%s:%u:127.0.0.1", HOST1, (unsigned)ch.port[0]);
    struct curl_slist *res = curl_slist_append(NULL, resolve);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_RESOLVE, res);
    curl_easy_setopt(h, CURLOPT_CAINFO, tu_path(certs, "ca.pem"));
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    const char *req = "GET /v1/readiness HTTP/1.1\r\nHost: " HOST1 "\r\nX-Slow: aaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    bool closed = false;
    long long end = tu_now_ms() + DEADLINE_MS;
    for (size_t i = 0; req[i] && !closed && tu_now_ms() < end; i++) {
        size_t sent = 0;
        CURLcode rc = curl_easy_send(h, req + i, 1, &sent);
        if (rc != CURLE_OK && rc != CURLE_AGAIN)
            closed = true;
        char b[64];
        size_t n = 0;
        rc = curl_easy_recv(h, b, sizeof(b), &n);
        if (rc != CURLE_AGAIN && (rc != CURLE_OK || n == 0))
            closed = true;
        pause_ms(100);
    }
    curl_easy_cleanup(h);
    curl_slist_free_all(res);
    ck_assert_msg(closed, "a request sent a byte every 100 ms was never cut off");
    char *body = get_ok(ch.port[0], HOST1, "/v1/readiness");
    free(body);
    stop_child(&ch);
}
END_TEST

/* The wedge: bursts that fill the cap and leave again must not stop the accepting. */
START_TEST(test_server_accepts_after_bursts_that_fill_the_cap)
{
    tune.connection_limit = 4;
    tune.per_ip_limit = 4;
    struct child ch = start_server();
    const char *from[] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
    for (int round = 0; round < 6; round++) {
        int fds[16];
        for (int i = 0; i < 16; i++)
            fds[i] = tcp_from(from[i % 4], ch.port[0]);
        pause_ms(150); /* the server accepts (and evicts) them */
        for (int i = 0; i < 16; i++)
            close(fds[i]);
        pause_ms(50);
    }
    char *body = get_ok(ch.port[0], HOST1, "/v1/readiness");
    free(body);
    stop_child(&ch);
}
END_TEST

/*
 * The wedge itself: MHD stops watching its listen socket when it runs out of descriptors
 * (EMFILE) and puts it back only at the start of a run, after the connections holding them
 * have gone. With nothing left to time out, no run came: the server never accepted again.
 */
START_TEST(test_server_accepts_again_after_running_out_of_descriptors)
{
    tune_spare_fds = 2;
    tune.connection_timeout_s = 60;
    tune.handshake_timeout_ms = 30000;
    tune.request_timeout_ms = 30000;
    struct child ch = start_server();
    int fds[6];
    for (int i = 0; i < 6; i++)
        fds[i] = tcp_from("127.0.0.2", ch.port[0]);
    pause_ms(300); /* two accepted, the third accept fails with EMFILE */
    for (int i = 0; i < 6; i++)
        close(fds[i]);
    /* The server freed the two; it must accept again without any other prompt. */
    struct tu_fetch f = {.path = "/v1/readiness", .certdir = certs};
    long long end = tu_now_ms() + DEADLINE_MS;
    do {
        tu_fetch_release(&f);
        do_fetch(ch.port[0], &f);
    } while (f.code != 200 && tu_now_ms() < end && (pause_ms(100), 1));
    ck_assert_msg(f.code == 200, "the server stopped accepting: %s", f.error);
    tu_fetch_release(&f);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_evicts_a_silent_connection_for_a_newcomer)
{
    tune.connection_limit = 4;
    tune.per_ip_limit = 4;
    struct child ch = start_server();
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = tcp_from("127.0.0.2", ch.port[0]);
    pause_ms(100); /* older than the 20 ms grace of a silent connection */
    char *body = get_ok(ch.port[0], HOST1, "/v1/readiness");
    free(body);
    int closed = 0;
    for (int i = 0; i < 4; i++) {
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
        char b;
        if (poll(&pfd, 1, 0) > 0 && recv(fds[i], &b, 1, 0) <= 0)
            closed++;
        close(fds[i]);
    }
    ck_assert_int_eq(closed, 1);
    stop_child(&ch);
}
END_TEST

START_TEST(test_server_allow_list_closes_other_addresses_at_accept)
{
    const char *allow[] = {"127.0.0.2", "::1/128"};
    tune.orchestrators = allow;
    tune.norchestrators = 2;
    struct child ch = start_server();
    struct tu_fetch f = {.path = "/v1/readiness", .certdir = certs, .source = "127.0.0.1"};
    do_fetch(ch.port[0], &f);
    ck_assert_msg(f.rc != CURLE_OK, "a client from 127.0.0.1 got in (HTTP %ld)", f.code);
    tu_fetch_release(&f);
    struct tu_fetch g = {.path = "/v1/readiness", .certdir = certs, .source = "127.0.0.2"};
    do_fetch(ch.port[0], &g);
    ck_assert_msg(g.rc == CURLE_OK, "%s", g.error);
    ck_assert_int_eq(g.code, 200);
    tu_fetch_release(&g);
    stop_child(&ch);

    /* A prefix matches the whole network; a bad entry is refused at start. */
    const char *net[] = {"127.0.0.0/8"};
    tune.orchestrators = net;
    tune.norchestrators = 1;
    ch = start_server();
    char *body = get_ok(ch.port[0], HOST1, "/v1/readiness");
    free(body);
    stop_child(&ch);

    uv_loop_t loop;
    uv_loop_init(&loop);
    char *cert = pem(certs, HOST1 ".pem"), *key = pem(certs, HOST1 ".key"),
         *ca = pem(certs, "ca.pem");
    const char *bad[] = {"127.0.0.1/33"};
    struct server_options o = {.host = HOST1,
                               .address = "127.0.0.1",
                               .cert_pem = cert,
                               .key_pem = key,
                               .ca_pem = ca,
                               .orchestrators = bad,
                               .norchestrators = 1};
    struct server *s;
    char err[512];
    ck_assert_int_eq(server_start(&loop, &o, &s, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, "127.0.0.1/33") != NULL, "%s", err);
    free(cert);
    free(key);
    free(ca);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(test_server_400_for_nul_in_target_and_conflicting_content_length)
{
    struct child ch = start_server();
    static const char nul[] = "GET /v1/health\0/x HTTP/1.1\r\nHost: " HOST1 "\r\n\r\n";
    ck_assert_int_eq(raw_request(ch.port[0], nul, sizeof(nul) - 1), 400);
    const char *pct = "GET /v1/health%00/x HTTP/1.1\r\nHost: " HOST1 "\r\n\r\n";
    ck_assert_int_eq(raw_request(ch.port[0], pct, strlen(pct)), 400);
    /* An ordinary target with a query is not cut short. */
    const char *query = "GET /v1/health?x=1 HTTP/1.1\r\nHost: " HOST1 "\r\n\r\n";
    ck_assert_int_eq(raw_request(ch.port[0], query, strlen(query)), 200);
    const char *two = "GET /v1/health HTTP/1.1\r\nHost: " HOST1 "\r\nContent-Length: 0\r\n"
                      "Content-Length: 5\r\n\r\n";
    ck_assert_int_eq(raw_request(ch.port[0], two, strlen(two)), 400);
    /* The same value twice says one thing: not an error. */
    const char *same = "GET /v1/health HTTP/1.1\r\nHost: " HOST1 "\r\nContent-Length: 0\r\n"
                       "Content-Length: 0\r\n\r\n";
    ck_assert_int_eq(raw_request(ch.port[0], same, strlen(same)), 200);
    stop_child(&ch);
}
END_TEST

/* ---- case "identity": the collector's certificate over time (issue 19, issue 14) ---- */

/* A folder with the fleet's CA and a fresh HOST1 pair valid `days` days. */
static const char *host1_pair(const char *name, int days)
{
    static char d[4096];
    snprintf(d, sizeof(d), "%s/%s", dir, name);
    ck_assert_int_eq(mkdir(d, 0700), 0);
    char *ca = read_text(tu_path(certs, "ca.pem")), *cakey = read_text(tu_path(certs, "ca.key"));
    tu_write_file(tu_path(d, "ca.pem"), ca, strlen(ca));
    tu_write_file(tu_path(d, "ca.key"), cakey, strlen(cakey));
    free(ca);
    free(cakey);
    char tool[4096], n[16];
    snprintf(tool, sizeof(tool), "%s", tu_source_path("tools/gen-certs"));
    snprintf(n, sizeof(n), "%d", days);
    char *argv[] = {tool, "--days", n, d, HOST1, NULL};
    char *out = NULL, *err = NULL;
    ck_assert_msg(tu_run(argv, NULL, &out, &err) == 0, "gen-certs: %s", err ? err : "");
    free(out);
    free(err);
    return d;
}

static void install_pair(const char *from, const char *to)
{
    char *c = read_text(tu_path(from, HOST1 ".pem")), *k = read_text(tu_path(from, HOST1 ".key"));
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s/%s.pem", to, HOST1);
    tu_write_file(tmp, c, strlen(c));
    snprintf(tmp, sizeof(tmp), "%s/%s.key", to, HOST1);
    tu_write_file(tmp, k, strlen(k));
    chmod(tmp, 0600);
    free(c);
    free(k);
}

/* Polls /v1/health until certificate_expires differs from `not`; returns the health object. */
static json_t *wait_cert_change(uint16_t port, const char * not )
{
    long long end = tu_now_ms() + DEADLINE_MS;
    for (;;) {
        json_t *h = get_json(port, HOST1, "/v1/health");
        const char *e = json_string_value(json_object_get(h, "certificate_expires"));
        if (e && strcmp(e, not ) != 0)
            return h;
        json_decref(h);
        ck_assert_msg(tu_now_ms() < end, "the certificate did not change in time");
        pause_ms(20);
    }
}

START_TEST(test_collector_reloads_certificate_on_sighup_and_warns_before_expiry)
{
    /* Start with a long-lived pair in a folder of its own. */
    const char *live = tu_path(dir, "live");
    ck_assert_int_eq(mkdir(live, 0700), 0);
    char livedir[3000];
    snprintf(livedir, sizeof(livedir), "%.2900s", live);
    install_pair(certs, livedir);
    char cert[4096], key[4096];
    snprintf(cert, sizeof(cert), "%s/%s.pem", livedir, HOST1);
    snprintf(key, sizeof(key), "%s/%s.key", livedir, HOST1);
    const char *args[] = {
        "--listen", "127.0.0.1:0",   "--cert", cert, "--key", key, "--ca", tu_path(certs, "ca.pem"),
        "--facts",  facts_example(), NULL};
    struct proc p = start_collector_with(true, args);
    json_t *h = get_json(p.port, HOST1, "/v1/health");
    ck_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok");
    ck_assert(json_is_null(json_object_get(h, "certificate_warning")) ||
              !json_object_get(h, "certificate_warning"));
    char first[64];
    snprintf(first, sizeof(first), "%s",
             json_string_value(json_object_get(h, "certificate_expires")));
    json_decref(h);

    /* Rotate to a pair that expires in 5 days: served without a restart, health degraded. */
    install_pair(host1_pair("short", 5), livedir);
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    h = wait_cert_change(p.port, first);
    ck_assert_str_eq(json_string_value(json_object_get(h, "status")), "degraded");
    const char *warn = json_string_value(json_object_get(h, "certificate_warning"));
    ck_assert_msg(warn && strstr(warn, "expires on "), "%s", warn ? warn : "null");
    char second[64];
    snprintf(second, sizeof(second), "%s",
             json_string_value(json_object_get(h, "certificate_expires")));
    json_decref(h);

    /* A bad pair (HOST2's key): the 5-day pair stays, the log says why. */
    char *k2 = read_text(tu_path(certs, HOST2 ".key"));
    tu_write_file(key, k2, strlen(k2));
    free(k2);
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    long long end = tu_now_ms() + DEADLINE_MS;
    char *err = NULL;
    for (;;) {
        free(err);
        err = read_text(p.errpath);
        if (strstr(err, "keeping the old certificate and key"))
            break;
        ck_assert_msg(tu_now_ms() < end, "no word about the refused pair: %s", err);
        pause_ms(20);
    }
    ck_assert_msg(strstr(err, "does not belong to the certificate"), "%s", err);
    ck_assert_msg(strstr(err, "expires on "), "the expiry was not logged: %s", err);
    free(err);
    h = get_json(p.port, HOST1, "/v1/health");
    ck_assert_str_eq(json_string_value(json_object_get(h, "certificate_expires")), second);
    json_decref(h);
    stop_collector(&p);
}
END_TEST

START_TEST(test_collector_refuses_private_key_open_to_others)
{
    char key[4096];
    snprintf(key, sizeof(key), "%s/open.key", dir);
    char *k = read_text(tu_path(certs, HOST1 ".key"));
    tu_write_file(key, k, strlen(k));
    free(k);
    ck_assert_int_eq(chmod(key, 0644), 0);
    char *err = NULL;
    ck_assert_int_eq(run_collector_tls(tu_path(certs, HOST1 ".pem"), key, tu_path(certs, "ca.pem"),
                                       TU_ARGS("--facts", facts_example()), &err),
                     3);
    ck_assert_msg(strstr(err, "open.key: the private key is open to group or others (mode 0644)"),
                  "%s", err);
    ck_assert_msg(strstr(err, "chmod 600 "), "%s", err);
    free(err);
}
END_TEST

START_TEST(test_collector_version_and_clean_config_errors)
{
    char *out = NULL, *err = NULL;
    char *argv[] = {(char *)collector_bin(), "--version", NULL};
    ck_assert_int_eq(tu_run(argv, NULL, &out, &err), 0);
    ck_assert_msg(strncmp(out, "tlsgate-collector ", 18) == 0 && strchr(out + 18, '.'), "%s", out);
    free(out);
    free(err);

    const char *cfg = tu_path(dir, "c.json");
    char path[4096];
    snprintf(path, sizeof(path), "%s", cfg);
    struct {
        const char *text;
        size_t len;
        const char *want;
    } cases[] = {
        {"", 0, ":1:1: '[' or '{' expected near end of file"},
        {"{\n  \"listen\": 1,,\n}", 19, ":2:15: string or '}' expected near ','"},
        {"{\"a\":1}\0{", 9, ":1:8: a NUL byte: not a JSON text file"},
        {"{\"orchestrators\": [\"nowhere\"]}", 30, ": orchestrators[0]: not an IPv4"},
        {"{\"cert_warn_days\": 0}", 21, ": cert_warn_days: must be an integer from 1 to 365"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tu_write_file(path, cases[i].text, cases[i].len);
        const char *args[] = {"--config", path, NULL};
        ck_assert_int_eq(run_collector(args, &err), 3);
        char want[4200];
        snprintf(want, sizeof(want), "%s%s", path, cases[i].want);
        ck_assert_msg(strstr(err, want) != NULL, "case %zu: want %s in: %s", i, want, err);
        ck_assert_msg(!strstr(err, ":-1:") && !strstr(err, ":0:"), "case %zu: %s", i, err);
        free(err);
    }
    const char *args[] = {"--config", dir, NULL};
    ck_assert_int_eq(run_collector(args, &err), 3);
    ck_assert_msg(strstr(err, "a folder, not a config file"), "%s", err);
    free(err);
}
END_TEST

/* Issue 19: the server's deadlines and caps from the collector's config (bounded, errors at
 * FILE:LINE:COL), and the close they cause counted in /v1/health; issue 12: a certificate store
 * is refused outside Windows, by name. */
START_TEST(test_collector_config_deadlines_and_caps)
{
    char cfg[4096];
    snprintf(cfg, sizeof(cfg), "%s", tu_path(dir, "deadlines.json"));
    json_t *c =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i}", "listen", "127.0.0.1:0", "cert",
                  tu_path(certs, HOST1 ".pem"), "key", tu_path(certs, HOST1 ".key"), "ca",
                  tu_path(certs, "ca.pem"), "facts", facts_example(), "handshake_timeout_ms", 300,
                  "request_timeout_ms", 600, "connection_limit", 8, "per_ip_limit", 2);
    ck_assert_int_eq(json_dump_file(c, cfg, 0), 0);
    json_decref(c);
    const char *extra[] = {"--config", cfg, NULL};
    struct proc p = start_collector_with(true, extra);

    /* A connection that never says a word is closed at the handshake deadline... */
    int silent = tcp_from("127.0.0.2", p.port);
    ck_assert_msg(closed_by_server(silent, NULL), "a silent connection was never closed");
    close(silent);
    json_t *h = get_json(p.port, HOST1, "/v1/health");
    json_t *conns = json_object_get(h, "connections");
    ck_assert_int_eq(json_integer_value(json_object_get(conns, "timed_out")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(conns, "denied")), 0);
    json_decref(h);

    /* ...and per_ip_limit 2 closes a third connection from one address at accept. */
    int a = tcp_from("127.0.0.3", p.port), b = tcp_from("127.0.0.3", p.port);
    int third = tcp_from("127.0.0.3", p.port);
    ck_assert_msg(closed_by_server(third, NULL), "the third connection was never closed");
    close(third);
    close(a);
    close(b);
    h = get_json(p.port, HOST1, "/v1/health");
    conns = json_object_get(h, "connections");
    ck_assert_int_ge(json_integer_value(json_object_get(conns, "denied")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(conns, "timed_out")), 1);
    json_decref(h);
    stop_collector(&p);

    /* Out of bounds, wrong types, a store outside Windows: exit 3 naming FILE:LINE:COL. */
    struct {
        const char *text, *want;
    } cases[] = {
        {"{\n  \"handshake_timeout_ms\": 99\n}", ":2:3: handshake_timeout_ms: must be an "
                                                 "integer from 100 to 60000"},
        {"{\"listen\": \"127.0.0.1:0\",\n \"request_timeout_ms\": 300001}",
         ":2:2: request_timeout_ms: must be an integer from 100 to 300000"},
        {"{\"connection_limit\": \"64\"}", ":1:2: connection_limit: must be an integer from 1 "
                                           "to 1024"},
        {"{\"per_ip_limit\": 0}", ":1:2: per_ip_limit: must be an integer from 1 to 1024"},
        {"{\"certificate\": {\"store\": \"Nowhere\"}}", ":1:2: certificate: must be "},
        {"{\"certificate\": {\"store\": \"LocalMachine\\\\My\", \"x\": 1}}",
         ":1:2: certificate: must be "},
        {"{\"certificate\": {\"store\": \"LocalMachine\\\\My\"}}",
         ":1:2: certificate: a Windows certificate store exists only in the Windows build"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tu_write_file(cfg, cases[i].text, strlen(cases[i].text));
        const char *args[] = {"--config", cfg, NULL};
        char *err;
        ck_assert_int_eq(run_collector(args, &err), 3);
        char want[4200];
        snprintf(want, sizeof(want), "%s%s", cfg, cases[i].want);
        ck_assert_msg(strstr(err, want) != NULL, "case %zu: want %s in: %s", i, want, err);
        free(err);
    }
}
END_TEST

static Suite *collector_suite(void)
{
    Suite *s = suite_create("collector");
    TCase *srv = tu_tcase(s, "server", NULL, NULL,
                          TU_TESTS(test_server_serves_report_to_orchestrator,
                                   test_server_refuses_client_without_certificate,
                                   test_server_refuses_certificate_from_another_ca,
                                   test_server_refuses_fleet_host_certificate_as_client,
                                   test_server_without_client_cn_accepts_any_fleet_client,
                                   test_server_refuses_tls11_client, test_server_refuses_plain_http,
                                   test_server_refuses_1mib_header_and_keeps_serving,
                                   test_server_routes_404_405_and_refuses_bodies,
                                   test_server_health_reports_identity_and_size,
                                   test_one_loop_serves_several_identities,
                                   test_server_start_refuses_bad_tls_material_and_address));
    tcase_set_timeout(srv, 60);

    TCase *guard =
        tu_tcase(s, "guard", guard_setup, NULL,
                 TU_TESTS(test_server_closes_silent_connection_at_handshake_deadline,
                          test_server_closes_slow_request_at_request_deadline,
                          test_server_accepts_after_bursts_that_fill_the_cap,
                          test_server_accepts_again_after_running_out_of_descriptors,
                          test_server_evicts_a_silent_connection_for_a_newcomer,
                          test_server_allow_list_closes_other_addresses_at_accept,
                          test_server_400_for_nul_in_target_and_conflicting_content_length));
    tcase_set_timeout(guard, 60);

    TCase *col = tu_tcase(
        s, "collector", setup, teardown,
        TU_TESTS(
            test_collector_serves_valid_report_for_its_host,
            test_collector_config_deadlines_and_caps, test_collector_refuses_unverified_clients,
            test_collector_survives_1mib_header, test_collector_refuses_malformed_facts_file,
            test_collector_refuses_malformed_regfile, test_collector_serves_report_from_regfiles,
            test_collector_serves_layered_fixture_facts_over_tls,
            test_collector_refuses_host_not_in_certificate,
            test_collector_accepts_host_in_other_case, test_collector_refuses_bad_tls_material,
            test_collector_usage_errors_and_help, test_collector_reads_config_file,
            test_collector_config_paths_are_relative_to_the_config,
            test_collector_sigterm_exits_zero,
            test_collector_sighup_keeps_old_report_on_broken_facts,
            test_collector_refreshes_on_interval,
            test_collector_reloads_certificate_on_sighup_and_warns_before_expiry,
            test_collector_refuses_private_key_open_to_others,
            test_collector_version_and_clean_config_errors));
    tcase_set_timeout(col, 60);

    TCase *gc = tu_tcase(
        s, "gen-certs", setup, teardown,
        TU_TESTS(test_gen_certs_makes_ca_host_and_orchestrator, test_gen_certs_reuses_existing_ca,
                 test_gen_certs_refuses_names_that_are_not_host_names, test_gen_certs_rsa_option));
    tcase_set_timeout(gc, 60);
    return s;
}

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *t;
    if (asprintf(&t, "%s/tlsgate-certs-XXXXXX", base && *base ? base : "/tmp") < 0 || !mkdtemp(t)) {
        perror("mkdtemp");
        exit(1);
    }
    return t;
}

/* Makes the certificates once; every test (a forked child) reads them. */
static void make_certs(void)
{
    certs = make_tmpdir();
    other = make_tmpdir();
    const char *fleet[] = {HOST1, HOST2, NULL};
    const char *none[] = {NULL};
    if (tu_gen_certs(certs, fleet) || tu_gen_certs(other, none))
        exit(1);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    make_certs();
    int failed = tu_run_suite(collector_suite());
    tu_tmpdir_drop(&certs);
    tu_tmpdir_drop(&other);
    curl_global_cleanup();
    return failed;
}

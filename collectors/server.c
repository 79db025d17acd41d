/*
 * server.c — the collector's HTTPS server: libmicrohttpd in external epoll mode on a libuv loop,
 * with the client certificate checked in the access handler. See server.h for the contract.
 *
 * Why it is built this way:
 * - One uv_poll_t watches MHD's epoll fd and one uv_timer_t follows MHD_get_timeout. After every
 *   wake we call MHD_run and re-arm the timer: MHD must run again within the timeout even with
 *   no fd activity (TLS records buffered inside GnuTLS, connection timeouts), c-anchors §2.1.
 * - The listen socket is ours (bound here, handed to MHD), so port 0 works and the bound port is
 *   read back with getsockname; MHD closes it on stop.
 * - The report lives in one MHD_Response created per report with a free callback: MHD counts the
 *   references held by connections in flight, so replacing the report never copies per request
 *   and never frees bytes a slow client is still reading.
 * - The access handler answers on its first call (no per-request state, no request bodies): it
 *   refuses first, routes second, so an unauthenticated client learns nothing, not even a 404.
 * - On close the poll handle is stopped before MHD_stop_daemon closes the epoll fd (libuv must
 *   never poll a closed fd); memory is freed in the last close callback.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "report.h"

#define SERVER_DEFAULT_CONNECTIONS 64
#define SERVER_DEFAULT_PER_IP 16
#define SERVER_DEFAULT_TIMEOUT_S 10
#define SERVER_DEFAULT_MEMORY (32 * 1024)
#define SERVER_CN_MAX 256

struct server {
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;         /* handles not yet closed; memory is freed at 0 */
    void (*done)(void *arg);
    void *done_arg;
    char *host;
    char *client_cn;
    char *cert_pem, *key_pem, *ca_pem; /* MHD keeps pointers to these while it runs */
    struct MHD_Response *report;        /* NULL until the first server_set_report */
    size_t report_bytes;
    long long last_refresh;             /* epoch seconds; 0 = never */
    char *last_error;                   /* NULL = the last refresh succeeded */
    uint16_t port;
    struct server_stats stats;
    char *start_err;                    /* MHD's log goes here during server_start only */
    size_t start_errsize;
};

static void set_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsize, const char *fmt, ...)
{
    if (!err || errsize == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

/* MHD's messages matter while starting (why did it refuse?); afterwards they would only be
 * noise from every scanner's failed handshake, so they are dropped. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct server *s = cls;
    if (!s->start_err || s->start_errsize == 0)
        return;
    size_t used = strlen(s->start_err);
    if (used + 3 >= s->start_errsize)
        return;
    if (used > 0) {
        memcpy(s->start_err + used, "; ", 3);
        used += 2;
    }
    vsnprintf(s->start_err + used, s->start_errsize - used, fmt, ap);
    /* MHD's messages end with a newline; keep the error on one line. */
    size_t n = strlen(s->start_err);
    while (n > 0 && (s->start_err[n - 1] == '\n' || s->start_err[n - 1] == '\r'))
        s->start_err[--n] = '\0';
}

/* ---- the loop glue ---- */

static void on_timer(uv_timer_t *t);

static void run_mhd(struct server *s)
{
    if (!s->mhd)
        return;
    MHD_run(s->mhd);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(s->mhd, &ms) == MHD_YES) {
        /* MHD's timeout can be far away (an idle connection's 10 s); an hour is plenty. */
        uint64_t t = ms > 3600 * 1000ULL ? 3600 * 1000ULL : (uint64_t)ms;
        uv_timer_start(&s->timer, on_timer, t, 0);
    } else {
        uv_timer_stop(&s->timer);
    }
}

static void on_timer(uv_timer_t *t) { run_mhd(t->data); }

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status; /* even on an error MHD must run: it reaps what failed */
    (void)events;
    run_mhd(p->data);
}

/* ---- requests ---- */

static enum MHD_Result queue_static(struct MHD_Connection *c, unsigned code, const char *body,
                                    const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* Reads the CN of a DER certificate into cn (cut to cnsize). 0 or a negative GnuTLS code. */
static int peer_cn(const gnutls_datum_t *der, char *cn, size_t cnsize)
{
    gnutls_x509_crt_t crt;
    int rc = gnutls_x509_crt_init(&crt);
    if (rc < 0)
        return rc;
    rc = gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER);
    if (rc >= 0) {
        size_t n = cnsize;
        rc = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &n);
    }
    gnutls_x509_crt_deinit(crt);
    return rc < 0 ? rc : 0;
}

/*
 * The whole point of the server: 0 when the peer presented a certificate that verifies against
 * our CA for TLS client authentication (and names client_cn when set); else the HTTP code.
 * systemd #4092 is what happens without this: MHD requests a certificate but does not require it.
 */
static unsigned check_client(struct server *s, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return MHD_HTTP_FORBIDDEN;
    gnutls_session_t session = ci->tls_session;
    if (gnutls_certificate_type_get(session) != GNUTLS_CRT_X509)
        return MHD_HTTP_FORBIDDEN;
    unsigned n = 0;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(session, &n);
    if (!chain || n == 0)
        return MHD_HTTP_UNAUTHORIZED;
    gnutls_typed_vdata_st purpose = {
        .type = GNUTLS_DT_KEY_PURPOSE_OID,
        .data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT,
        .size = 0,
    };
    unsigned status = 0;
    if (gnutls_certificate_verify_peers(session, &purpose, 1, &status) < 0 || status != 0)
        return MHD_HTTP_FORBIDDEN;
    if (s->client_cn) {
        char cn[SERVER_CN_MAX];
        if (peer_cn(&chain[0], cn, sizeof(cn)) < 0 || strcmp(cn, s->client_cn) != 0)
            return MHD_HTTP_FORBIDDEN;
    }
    return 0;
}

static enum MHD_Result answer_health(struct server *s, struct MHD_Connection *c)
{
    char when[32] = "";
    if (s->last_refresh > 0) {
        time_t t = (time_t)s->last_refresh;
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    const char *status = !s->report ? "starting" : s->last_error ? "degraded" : "ok";
    json_t *j = json_pack("{s:s, s:s, s:s?, s:s?, s:I}", "status", status, "host", s->host,
                          "last_refresh", when[0] ? when : NULL, "last_error", s->last_error,
                          "report_bytes", (json_int_t)s->report_bytes);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(strlen(body), body, free);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct server *s = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;

    unsigned refused = check_client(s, c);
    if (refused) {
        s->stats.refused++;
        return queue_static(c, refused,
                            refused == MHD_HTTP_UNAUTHORIZED
                                ? "{\"error\":\"a client certificate is required\"}"
                                : "{\"error\":\"client certificate not accepted\"}",
                            NULL);
    }

    bool readiness = strcmp(url, "/v1/readiness") == 0;
    if (!readiness && strcmp(url, "/v1/health") != 0)
        return queue_static(c, MHD_HTTP_NOT_FOUND, "{\"error\":\"not found\"}", NULL);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return queue_static(c, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\":\"method not allowed\"}",
                            "GET, HEAD");
    /* A GET with a body is answered without reading it; MHD then closes the connection. */
    const char *clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if ((clen && strcmp(clen, "0") != 0) ||
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding"))
        return queue_static(c, MHD_HTTP_CONTENT_TOO_LARGE,
                            "{\"error\":\"request bodies are not accepted\"}", NULL);

    if (!readiness)
        return answer_health(s, c);
    if (!s->report)
        return queue_static(c, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"error\":\"no report yet\"}",
                            NULL);
    s->stats.served++;
    return MHD_queue_response(c, MHD_HTTP_OK, s->report);
}

/* ---- lifecycle ---- */

static void server_free(struct server *s)
{
    if (s->report)
        MHD_destroy_response(s->report);
    free(s->host);
    free(s->client_cn);
    free(s->cert_pem);
    if (s->key_pem) {
        explicit_bzero(s->key_pem, strlen(s->key_pem));
        free(s->key_pem);
    }
    free(s->ca_pem);
    free(s->last_error);
    free(s);
}

/* Binds a listening TCP socket on a numeric address; the fd or -errno. */
static int listen_on(const char *address, uint16_t port, uint16_t *bound, char *err,
                     size_t errsize)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof(*in6);
    } else {
        set_err(err, errsize, "%s: not a numeric IPv4 or IPv6 address", address);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        set_err(err, errsize, "socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        set_err(err, errsize, "cannot listen on %s port %u: %s", address, (unsigned)port,
                strerror(e));
        close(fd);
        return -e;
    }
    struct sockaddr_storage got;
    socklen_t gotlen = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &gotlen) < 0) {
        int e = errno;
        set_err(err, errsize, "getsockname: %s", strerror(e));
        close(fd);
        return -e;
    }
    *bound = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                            : ((struct sockaddr_in6 *)&got)->sin6_port);
    return fd;
}

/* How many certificates a PEM string holds, or a negative GnuTLS code. */
static int count_certificates(const char *pem)
{
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
    gnutls_x509_crt_t *list = NULL;
    unsigned n = 0;
    int rc = gnutls_x509_crt_list_import2(&list, &n, &d, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < n; i++)
        gnutls_x509_crt_deinit(list[i]);
    gnutls_free(list);
    return (int)n;
}

int server_start(uv_loop_t *loop, const struct server_options *o, struct server **out, char *err,
                 size_t errsize)
{
    *out = NULL;
    if (err && errsize)
        err[0] = '\0';
    if (!o->host || !o->address || !o->cert_pem || !o->key_pem || !o->ca_pem) {
        set_err(err, errsize, "server: host, address, certificate, key and CA are required");
        return -EINVAL;
    }
    struct server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->host = strdup(o->host);
    s->client_cn = o->client_cn ? strdup(o->client_cn) : NULL;
    s->cert_pem = strdup(o->cert_pem);
    s->key_pem = strdup(o->key_pem);
    s->ca_pem = strdup(o->ca_pem);
    if (!s->host || (o->client_cn && !s->client_cn) || !s->cert_pem || !s->key_pem ||
        !s->ca_pem) {
        server_free(s);
        return -ENOMEM;
    }

    /* MHD accepts a trust PEM without a certificate in it; every client would then be refused
     * with no word why. */
    if (count_certificates(s->ca_pem) <= 0) {
        set_err(err, errsize, "%s: the CA PEM holds no certificate", o->host);
        server_free(s);
        return -EINVAL;
    }

    int fd = listen_on(o->address, o->port, &s->port, err, errsize);
    if (fd < 0) {
        server_free(s);
        return fd;
    }

    s->start_err = err;
    s->start_errsize = errsize;
    s->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_TLS | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, /* first, or MHD logs the others itself */
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_HTTPS_MEM_CERT, s->cert_pem,
        MHD_OPTION_HTTPS_MEM_KEY, s->key_pem,
        MHD_OPTION_HTTPS_MEM_TRUST, s->ca_pem,
        MHD_OPTION_HTTPS_PRIORITIES, SERVER_TLS_PRIORITIES,
        MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(o->connection_limit ? o->connection_limit : SERVER_DEFAULT_CONNECTIONS),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(o->per_ip_limit ? o->per_ip_limit : SERVER_DEFAULT_PER_IP),
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(o->connection_timeout_s ? o->connection_timeout_s : SERVER_DEFAULT_TIMEOUT_S),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(o->connection_memory ? o->connection_memory : SERVER_DEFAULT_MEMORY),
        MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (int)1,
        MHD_OPTION_END);
    s->start_err = NULL;
    if (!s->mhd) {
        /* Depending on where it failed MHD may have closed the socket already. */
        if (fcntl(fd, F_GETFD) >= 0)
            close(fd);
        char why[512];
        snprintf(why, sizeof(why), "%s", err && err[0] ? err : "no reason given");
        set_err(err, errsize, "%s: cannot start the HTTPS server (bad certificate, key or CA?): %s",
                o->host, why);
        server_free(s);
        return -EINVAL;
    }

    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    int rc = di ? uv_poll_init(loop, &s->poll, di->epoll_fd) : UV_EINVAL;
    if (rc < 0) {
        set_err(err, errsize, "%s: cannot poll the server's epoll fd: %s", o->host,
                uv_strerror(rc));
        MHD_stop_daemon(s->mhd);
        server_free(s);
        return rc;
    }
    uv_timer_init(loop, &s->timer);
    s->poll.data = s;
    s->timer.data = s;
    s->open_handles = 2;
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
    run_mhd(s);
    *out = s;
    return 0;
}

uint16_t server_port(const struct server *s) { return s->port; }

int server_set_report(struct server *s, const char *json, size_t len, long long refreshed_at)
{
    if (len > REPORT_MAX_BYTES)
        return -E2BIG;
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, json, len);
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, copy, free);
    if (!r) {
        free(copy);
        return -ENOMEM;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES ||
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES) {
        MHD_destroy_response(r);
        return -ENOMEM;
    }
    /* Connections still sending the old report hold their own reference to it. */
    if (s->report)
        MHD_destroy_response(s->report);
    s->report = r;
    s->report_bytes = len;
    s->last_refresh = refreshed_at;
    free(s->last_error);
    s->last_error = NULL;
    return 0;
}

void server_set_error(struct server *s, const char *message)
{
    size_t n = strnlen(message, SERVER_ERROR_MAX_BYTES);
    char *m = malloc(n + 1);
    if (!m)
        return; /* the old message stays: still true that the refresh is failing */
    /* Messages can quote file contents; health JSON must stay valid UTF-8 whatever they hold. */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)message[i];
        m[i] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
    }
    m[n] = '\0';
    free(s->last_error);
    s->last_error = m;
}

void server_get_stats(const struct server *s, struct server_stats *st) { *st = s->stats; }

static void on_handle_closed(uv_handle_t *h)
{
    struct server *s = h->data;
    if (--s->open_handles > 0)
        return;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    server_free(s);
    if (done)
        done(arg);
}

void server_close(struct server *s, void (*done)(void *arg), void *arg)
{
    s->done = done;
    s->done_arg = arg;
    /* libuv must stop polling the epoll fd before MHD closes it. */
    uv_poll_stop(&s->poll);
    uv_timer_stop(&s->timer);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}

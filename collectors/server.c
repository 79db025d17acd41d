/*
 * server.c — the collector's HTTPS server: libmicrohttpd in external epoll mode on a libuv loop
 * (Linux) or in its own polling thread (Windows), with the client certificate checked in the
 * access handler. See server.h for the contract.
 *
 * The file is one server core (requests, client check, report, listen socket, lifecycle) and two
 * small loop glues at the end, one per platform: "the loop glue (POSIX)" and "(Windows)".
 *
 * Why it is built this way:
 * - POSIX: one uv_poll_t watches MHD's epoll fd and one uv_timer_t follows MHD_get_timeout.
 *   After every wake we call MHD_run and re-arm the timer: MHD must run again within the
 *   timeout even with no fd activity (TLS records buffered inside GnuTLS, connection
 *   timeouts), c-anchors §2.1.
 * - The listen socket is ours (bound here, handed to MHD), so port 0 works and the bound port is
 *   read back with getsockname; MHD closes it on stop.
 * - The report lives in one MHD_Response created per report with a free callback: MHD counts the
 *   references held by connections in flight, so replacing the report never copies per request
 *   and never frees bytes a slow client is still reading.
 * - The access handler answers on its first call (no per-request state, no request bodies): it
 *   refuses first, routes second, so an unauthenticated client learns nothing, not even a 404.
 * - On close the poll handle is stopped before MHD_stop_daemon closes the epoll fd (libuv must
 *   never poll a closed fd); memory is freed in the last close callback.
 * - Windows: MHD has no epoll there, and external select mode would mean one uv_poll_t per socket
 *   re-synchronised after every MHD_run; MHD's own thread with WSAPoll (no FD_SETSIZE cap) keeps
 *   the glue small. The access handler then runs on that thread, so what it shares with the
 *   loop thread (report, last refresh, last error, counters) is read and written under `lock`
 *   on both platforms. One uv_timer_t stays as the server's handle so server_close keeps its
 *   contract (memory freed and `done` called from the loop, after the close).
 * - Windows sockets: SO_EXCLUSIVEADDRUSE, not SO_REUSEADDR (which there lets another process
 *   bind the same port), and WSAStartup is called here, not left to MHD's or libuv's.
 */
#include "server.h"

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "platform.h"
#include "report.h"

#define SERVER_DEFAULT_CONNECTIONS 64
#define SERVER_DEFAULT_PER_IP 16
#define SERVER_DEFAULT_TIMEOUT_S 10
#define SERVER_DEFAULT_MEMORY (32 * 1024)
#define SERVER_CN_MAX 256

struct server {
    struct MHD_Daemon *mhd;
#ifndef _WIN32
    uv_poll_t poll;
#endif
    uv_timer_t timer;
    int open_handles;         /* handles not yet closed; memory is freed at 0 */
    void (*done)(void *arg);
    void *done_arg;
    char *host;
    char *client_cn;
    char *cert_pem, *key_pem, *ca_pem; /* MHD keeps pointers to these while it runs */
    uv_mutex_t lock;                    /* guards the four fields below and stats */
    struct MHD_Response *report;        /* NULL until the first server_set_report */
    size_t report_bytes;
    long long last_refresh;             /* epoch seconds; 0 = never */
    char *last_error;                   /* NULL = the last refresh succeeded */
    uint16_t port;
    struct server_stats stats;
    uv_mutex_t log_lock;                /* guards start_err against MHD's thread */
    char *start_err;                    /* MHD's log goes here during server_start only */
    size_t start_errsize;
    void (*log)(void *arg, int level, const char *line); /* afterwards here, if set */
    void *log_arg;
    gnutls_datum_t ticket_key; /* TLS session tickets (on_connection); made at start */
};

static void set_err(char *err, size_t errsize, const char *fmt, ...) PLATFORM_PRINTF(3, 4);
static void set_err(char *err, size_t errsize, const char *fmt, ...)
{
    if (!err || errsize == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

static void chomp(char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
}

/* MHD's messages matter while starting (why did it refuse?): they go into server_start's error.
 * Afterwards they are mostly noise from every scanner's failed handshake: they go to the
 * caller's log at debug level, or nowhere. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct server *s = cls;
    uv_mutex_lock(&s->log_lock);
    if (!s->start_err || s->start_errsize == 0) {
        uv_mutex_unlock(&s->log_lock);
        if (s->log) {
            char line[512];
            vsnprintf(line, sizeof(line), fmt, ap);
            chomp(line);
            s->log(s->log_arg, 3, line);
        }
        return;
    }
    size_t used = strlen(s->start_err);
    if (used + 3 < s->start_errsize) {
        if (used > 0) {
            memcpy(s->start_err + used, "; ", 3);
            used += 2;
        }
        vsnprintf(s->start_err + used, s->start_errsize - used, fmt, ap);
        /* MHD's messages end with a newline; keep the error on one line. */
        chomp(s->start_err);
    }
    uv_mutex_unlock(&s->log_lock);
}

/* ---- the loop glue (POSIX): MHD's epoll fd on a uv_poll_t, its timeout on a uv_timer_t ---- */

#ifndef _WIN32
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

#define SERVER_MHD_FLAGS MHD_USE_EPOLL
#endif /* !_WIN32 */

#ifdef _WIN32
/* MHD's own thread, polling with WSAPoll: no FD_SETSIZE (64 under mingw) to outgrow. */
#define SERVER_MHD_FLAGS MHD_USE_POLL_INTERNAL_THREAD
#endif

/* Started/stopped by the glue at the end of the file. */
static int glue_start(uv_loop_t *loop, struct server *s, char *err, size_t errsize);
static void glue_close(struct server *s);

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

/* Called with s->lock held. */
static enum MHD_Result answer_health(struct server *s, struct MHD_Connection *c)
{
    char when[32] = "";
    if (s->last_refresh > 0) {
        struct tm tm;
        if (platform_gmtime((time_t)s->last_refresh, &tm) == 0)
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
        uv_mutex_lock(&s->lock);
        s->stats.refused++;
        uv_mutex_unlock(&s->lock);
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

    enum MHD_Result ret;
    uv_mutex_lock(&s->lock);
    if (!readiness) {
        ret = answer_health(s, c);
    } else if (!s->report) {
        ret = queue_static(c, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"error\":\"no report yet\"}",
                           NULL);
    } else {
        s->stats.served++;
        ret = MHD_queue_response(c, MHD_HTTP_OK, s->report);
    }
    uv_mutex_unlock(&s->lock);
    return ret;
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
        platform_secure_zero(s->key_pem, strlen(s->key_pem));
        free(s->key_pem);
    }
    free(s->ca_pem);
    free(s->last_error);
    if (s->ticket_key.data) {
        platform_secure_zero(s->ticket_key.data, s->ticket_key.size);
        gnutls_free(s->ticket_key.data);
    }
    uv_mutex_destroy(&s->lock);
    uv_mutex_destroy(&s->log_lock);
    free(s);
}

/* ---- the listen socket ---- */

#ifdef _WIN32
#define BAD_SOCKET INVALID_SOCKET
#define close_socket closesocket

/* The last socket error as an errno value (for the -errno contract) and its text. */
static int socket_error(const char **text)
{
    int e = WSAGetLastError();
    switch (e) {
    case WSAEADDRINUSE:
        *text = "the port is in use by another program";
        return EADDRINUSE;
    case WSAEACCES:
        *text = "access denied (the port is reserved, or held exclusively by another program)";
        return EACCES;
    case WSAEADDRNOTAVAIL:
        *text = "this address is not one of this machine's";
        return EADDRNOTAVAIL;
    case WSAEAFNOSUPPORT:
        *text = "address family not supported (is IPv6 enabled?)";
        return EAFNOSUPPORT;
    default: {
        static char buf[64]; /* only read at start-up, on the loop thread */
        snprintf(buf, sizeof(buf), "Windows socket error %d", e);
        *text = buf;
        return EIO;
    }
    }
}

static uv_once_t wsa_once = UV_ONCE_INIT;
static int wsa_status = -1;
static void wsa_init(void)
{
    WSADATA wsa;
    wsa_status = WSAStartup(MAKEWORD(2, 2), &wsa);
}

/* Non-blocking, not inherited by child processes, exclusive: no other process can bind the
 * same address and port while we hold it (SO_REUSEADDR on Windows would allow exactly that). */
static int prepare_socket(MHD_socket fd)
{
    u_long nonblocking = 1;
    BOOL on = TRUE;
    SetHandleInformation((HANDLE)fd, HANDLE_FLAG_INHERIT, 0);
    if (ioctlsocket(fd, FIONBIO, &nonblocking) != 0)
        return -1;
    return setsockopt(fd, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&on, sizeof(on));
}

/* True when fd is still an open socket (MHD may have closed it on a failed start). */
static bool socket_open(MHD_socket fd)
{
    int type;
    int len = sizeof(type);
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0;
}
#else
#define BAD_SOCKET (-1)
#define close_socket close

static int socket_error(const char **text)
{
    int e = errno;
    *text = e == EADDRINUSE ? "the port is in use by another program" : strerror(e);
    return e;
}

static int prepare_socket(MHD_socket fd)
{
    int one = 1;
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -1;
    return setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
}

static bool socket_open(MHD_socket fd) { return fcntl(fd, F_GETFD) >= 0; }
#endif

/* Binds a listening TCP socket on a numeric address; 0 and *out, or -errno with err set. */
static int listen_on(const char *address, uint16_t port, uint16_t *bound, MHD_socket *out,
                     char *err, size_t errsize)
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
    const char *why;
    MHD_socket fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd == BAD_SOCKET) {
        int e = socket_error(&why);
        set_err(err, errsize, "socket: %s", why);
        return -e;
    }
    if (prepare_socket(fd) < 0) {
        int e = socket_error(&why);
        set_err(err, errsize, "socket options: %s", why);
        close_socket(fd);
        return -e;
    }
    int one = 1;
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, (const void *)&one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0) {
        int e = socket_error(&why);
        set_err(err, errsize, "cannot listen on %s port %u: %s", address, (unsigned)port, why);
        close_socket(fd);
        return -e;
    }
    struct sockaddr_storage got;
    socklen_t gotlen = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &gotlen) < 0) {
        int e = socket_error(&why);
        set_err(err, errsize, "getsockname: %s", why);
        close_socket(fd);
        return -e;
    }
    *bound = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                            : ((struct sockaddr_in6 *)&got)->sin6_port);
    *out = fd;
    return 0;
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


/*
 * TLS session resumption (issue 16). MHD 0.9.75 has no option for it, but it calls
 * NOTIFY_CONNECTION(STARTED) after gnutls_init and before the handshake (daemon.c,
 * new_connection_process_), so the session can be given the server's ticket key there: TLS 1.3
 * tickets and TLS 1.2 session tickets (RFC 5077), no server-side session store. The key is made
 * at start and lives only in memory: a restarted collector (a re-issued certificate) resumes
 * nothing issued before. A ticket is good for SERVER_TICKET_LIFETIME_S. A resumed session
 * carries the client certificate it was made with; check_client verifies it again on every
 * request, against the CA of this run.
 */
#define SERVER_TICKET_LIFETIME_S 14400

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)socket_context;
    struct server *s = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (code != MHD_CONNECTION_NOTIFY_STARTED || !ci || !ci->tls_session || !s->ticket_key.data)
        return;
    /* Without tickets the handshake simply stays a full one. */
    if (gnutls_session_ticket_enable_server(ci->tls_session, &s->ticket_key) == 0)
        gnutls_db_set_cache_expiration(ci->tls_session, SERVER_TICKET_LIFETIME_S);
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
#ifdef _WIN32
    uv_once(&wsa_once, wsa_init);
    if (wsa_status != 0) {
        set_err(err, errsize, "WSAStartup failed (error %d)", wsa_status);
        return -EIO;
    }
#endif
    struct server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    if (uv_mutex_init(&s->lock) != 0) {
        free(s);
        return -ENOMEM;
    }
    if (uv_mutex_init(&s->log_lock) != 0) {
        uv_mutex_destroy(&s->lock);
        free(s);
        return -ENOMEM;
    }
    s->host = strdup(o->host);
    s->client_cn = o->client_cn ? strdup(o->client_cn) : NULL;
    s->cert_pem = strdup(o->cert_pem);
    s->key_pem = strdup(o->key_pem);
    s->ca_pem = strdup(o->ca_pem);
    s->log = o->log;
    s->log_arg = o->log_arg;
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

    MHD_socket fd = BAD_SOCKET;
    int rc = listen_on(o->address, o->port, &s->port, &fd, err, errsize);
    if (rc < 0) {
        server_free(s);
        return rc;
    }

    if (gnutls_session_ticket_key_generate(&s->ticket_key) != 0)
        s->ticket_key.data = NULL; /* no resumption: every handshake a full one */
    uv_mutex_lock(&s->log_lock);
    s->start_err = err;
    s->start_errsize = errsize;
    uv_mutex_unlock(&s->log_lock);
    s->mhd = MHD_start_daemon(
        SERVER_MHD_FLAGS | MHD_USE_TLS | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, /* first, or MHD logs the others itself */
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
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
#ifndef _WIN32
        MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (int)1,
#endif
        MHD_OPTION_END);
    uv_mutex_lock(&s->log_lock);
    s->start_err = NULL;
    uv_mutex_unlock(&s->log_lock);
    if (!s->mhd) {
        /* Depending on where it failed MHD may have closed the socket already. */
        if (socket_open(fd))
            close_socket(fd);
        char why[512];
        snprintf(why, sizeof(why), "%s", err && err[0] ? err : "no reason given");
        set_err(err, errsize, "%s: cannot start the HTTPS server (bad certificate, key or CA?): %s",
                o->host, why);
        server_free(s);
        return -EINVAL;
    }

    rc = glue_start(loop, s, err, errsize);
    if (rc < 0) {
        MHD_stop_daemon(s->mhd);
        server_free(s);
        return rc;
    }
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
    uv_mutex_lock(&s->lock);
    /* Connections still sending the old report hold their own reference to it. */
    struct MHD_Response *old = s->report;
    s->report = r;
    s->report_bytes = len;
    s->last_refresh = refreshed_at;
    char *old_error = s->last_error;
    s->last_error = NULL;
    uv_mutex_unlock(&s->lock);
    if (old)
        MHD_destroy_response(old);
    free(old_error);
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
    uv_mutex_lock(&s->lock);
    char *old = s->last_error;
    s->last_error = m;
    uv_mutex_unlock(&s->lock);
    free(old);
}

void server_get_stats(const struct server *s, struct server_stats *st)
{
    uv_mutex_lock((uv_mutex_t *)&s->lock);
    *st = s->stats;
    uv_mutex_unlock((uv_mutex_t *)&s->lock);
}

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
    glue_close(s);
}

/* ---- the loop glue, second half: start and close ---- */

#ifndef _WIN32
static int glue_start(uv_loop_t *loop, struct server *s, char *err, size_t errsize)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    int rc = di ? uv_poll_init(loop, &s->poll, di->epoll_fd) : UV_EINVAL;
    if (rc < 0) {
        set_err(err, errsize, "%s: cannot poll the server's epoll fd: %s", s->host,
                uv_strerror(rc));
        return rc;
    }
    uv_timer_init(loop, &s->timer);
    s->poll.data = s;
    s->timer.data = s;
    s->open_handles = 2;
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
    run_mhd(s);
    return 0;
}

static void glue_close(struct server *s)
{
    /* libuv must stop polling the epoll fd before MHD closes it. */
    uv_poll_stop(&s->poll);
    uv_timer_stop(&s->timer);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}
#else
static int glue_start(uv_loop_t *loop, struct server *s, char *err, size_t errsize)
{
    (void)err;
    (void)errsize;
    /* MHD's thread runs already; the timer is never started, it only anchors the close. */
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->open_handles = 1;
    return 0;
}

static void glue_close(struct server *s)
{
    MHD_stop_daemon(s->mhd); /* joins MHD's thread: no handler runs after this */
    s->mhd = NULL;
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}
#endif

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
 * - Connection discipline (issue 19): MHD's idle timeout restarts with every byte and its cap
 *   is first come, first served, so a few dozen strangers could keep the orchestrator out.
 *   Every connection is tracked from NOTIFY_STARTED to NOTIFY_CLOSED (struct conn); a GnuTLS
 *   handshake hook marks the ClientHello and the client's Finished; a sweep after every run
 *   shuts down (shutdown(), never close(): the socket stays MHD's) what is past its deadline;
 *   the accept policy evicts to make room. The timer is armed for the nearest deadline.
 * - The certificate and key are served through MHD's certificate callback, not MHD's in-memory
 *   options, so SIGHUP can swap them (server_reload_identity). This, the trust CA and the
 *   priority string in server_start are the whole TLS setup.
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
#include <assert.h>
#include <errno.h>
#include <gnutls/abstract.h>
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
#define SERVER_DEFAULT_HANDSHAKE_MS 5000
#define SERVER_DEFAULT_REQUEST_MS 10000
#define SERVER_DEFAULT_CERT_WARN_DAYS 14
#define SERVER_CN_MAX 256
#define SERVER_CHAIN_MAX 8
/* Slots above connection_limit that only orchestrator addresses may use. */
#define SERVER_RESERVED_SLOTS 8
/* A connection younger than this is never evicted to make room (the newest arrival must get
 * the time to finish its handshake, or evictions would chase each other forever). */
#define SERVER_EVICT_GRACE_MS 500
/* ...except one that has not sent a whole ClientHello this long after accept. */
#define SERVER_SILENT_GRACE_MS 50

/* One accepted connection, from MHD's NOTIFY_STARTED to NOTIFY_CLOSED (its socket_context).
 * The list is oldest first; it is what the accept policy counts and the sweep walks. */
struct conn {
    struct conn *prev, *next;
    struct server *s;
    struct MHD_Connection *mc;
    MHD_socket fd;
    struct sockaddr_storage addr;
    uint64_t started_ms;
    bool trusted;       /* from an orchestrators address */
    bool hello;         /* a whole ClientHello arrived */
    bool handshaken;    /* the client's Finished arrived: the TLS handshake is complete */
    bool authenticated; /* sent a request with a verified client certificate */
    bool closing;       /* shut down by us (evicted or past a deadline); MHD frees it next */
    /* The current request's target as it arrived (on_uri, before MHD splits and unescapes it
     * in place): where it starts in MHD's read buffer, its length up to the first NUL, and
     * whether it holds an escaped NUL ("%00"). */
    const char *raw_target;
    size_t raw_target_len;
    bool target_pct00;
};

/* An orchestrators entry: an address and a prefix length. */
struct net {
    int family;
    unsigned char addr[16];
    unsigned prefix;
};

/* The certificate and key served (through MHD's certificate callback, so SIGHUP can swap
 * them). A replaced identity is kept until the server stops: a handshake in flight may still
 * hold its pointers. */
struct identity {
    gnutls_pcert_st pcerts[SERVER_CHAIN_MAX];
    unsigned npcerts;
    gnutls_privkey_t key;
    long long expires; /* epoch seconds of the leaf certificate's notAfter */
    /* The TLS session ticket key (on_connection), one per identity: a ticket issued under a
     * replaced certificate cannot be resumed, the client gets a full handshake with the new one.
     * NULL data: no resumption. */
    gnutls_datum_t ticket_key;
    struct identity *retired;
};

struct server {
    struct MHD_Daemon *mhd;
#ifndef _WIN32
    uv_poll_t poll;
#endif
    uv_timer_t timer;
    int open_handles; /* handles not yet closed; memory is freed at 0 */
    void (*done)(void *arg);
    void *done_arg;
    char *host;
    char *client_cn;
    char *ca_pem;                /* MHD keeps a pointer to it while it runs */
    uv_mutex_t lock;             /* guards the four fields below and stats */
    struct MHD_Response *report; /* NULL until the first server_set_report */
    size_t report_bytes;
    long long last_refresh;        /* epoch seconds; 0 = never */
    char *last_error;              /* NULL = the last refresh succeeded */
    bool evidence_on;              /* options.evidence: /v1/evidence is served (503 until set) */
    struct MHD_Response *evidence; /* the IIS log summary (server_set_evidence), or NULL */
    char *evidence_error;          /* why the last scan of the IIS logs failed, or NULL */
    uint16_t port;
    struct server_stats stats;
    uv_mutex_t log_lock; /* guards start_err against MHD's thread */
    char *start_err;     /* MHD's log goes here during server_start only */
    size_t start_errsize;
    void (*log)(void *arg, int level, const char *line); /* afterwards here, if set */
    void *log_arg;
    bool closed_in_run; /* a connection ended during the last MHD_run (POSIX glue) */
    /* Connections, the accept policy and the deadlines (guarded by lock). */
    struct conn *conns_head, *conns_tail;
    unsigned cap, per_ip_limit, handshake_ms, request_ms;
    struct net *nets; /* the orchestrators allow-list; none: anyone may connect */
    size_t nnets;
    struct identity *identity; /* guarded by lock; read by the certificate callback */
    long long cert_warn_s;
    server_handler_fn handler; /* an application instead of the report; NULL: the collector */
    void *handler_arg;
    size_t body_max;
};

/* A handler request's body while it arrives (MHD's per-request con_cls), freed when MHD
 * completes the request (on_completed). */
struct app_request {
    size_t len;
    char body[];
};

static int ascii_lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch; }

static int strcasecmp_ascii(const char *a, const char *b)
{
    while (*a && ascii_lower((unsigned char)*a) == ascii_lower((unsigned char)*b)) {
        a++;
        b++;
    }
    return ascii_lower((unsigned char)*a) - ascii_lower((unsigned char)*b);
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

static uint64_t sweep(struct server *s);

#ifndef _WIN32
static void on_timer(uv_timer_t *t);

static void run_mhd(struct server *s)
{
    if (!s->mhd)
        return;
    s->closed_in_run = false;
    MHD_run(s->mhd);
    /* The next wake-up: the nearest of our deadlines and MHD's own timeout. Never "none"
     * while work is pending. */
    uint64_t t = sweep(s);
    MHD_UNSIGNED_LONG_LONG ms;
    if (s->closed_in_run) {
        /* MHD puts its listen socket back into its epoll set at the start of a run, and frees
         * closed connections at the end: after a run that left the connection cap, the listen
         * socket stays out until the next run, and with no connection left nothing would
         * schedule one (the wedge of issue 19). So run again at once. */
        t = 0;
    } else if (MHD_get_timeout(s->mhd, &ms) == MHD_YES && ms < t) {
        t = ms;
    }
    if (t == UINT64_MAX) {
        uv_timer_stop(&s->timer);
    } else {
        /* MHD's timeout can be far away (an idle connection's 10 s); an hour is plenty. */
        uv_timer_start(&s->timer, on_timer, t > 3600 * 1000ULL ? 3600 * 1000ULL : t, 0);
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

static void on_sweep_timer(uv_timer_t *t) { sweep(t->data); }
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
    /* A refused or malformed request ends its connection: its slot goes back to the pool. */
    if (code == MHD_HTTP_BAD_REQUEST || code == MHD_HTTP_UNAUTHORIZED || code == MHD_HTTP_FORBIDDEN)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
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

struct clen_state {
    const char *first;
    bool conflict;
};

static enum MHD_Result on_header_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    struct clen_state *st = cls;
    (void)kind;
    if (!key || strcasecmp_ascii(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0)
        return MHD_YES;
    if (!value)
        value = "";
    if (!st->first)
        st->first = value;
    else if (strcmp(st->first, value) != 0)
        st->conflict = true;
    return MHD_YES;
}

/* MHD's URI log callback: runs once per request, after the request line is split into method,
 * target and version (each NUL-terminated in MHD's read buffer) and before anything else
 * touches the target. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn *k = ci ? ci->socket_context : NULL;
    if (k) {
        k->raw_target = uri;
        k->raw_target_len = uri ? strlen(uri) : 0;
        k->target_pct00 = uri && strstr(uri, "%00") != NULL;
    }
    return NULL;
}

bool server_request_malformed(struct MHD_Connection *c, const char *version)
{
    /* Every client we serve speaks HTTP/1.x. */
    if (!version || strncmp(version, "HTTP/1.", 7) != 0)
        return true;
    /* A NUL in the target: MHD cuts the target at it ("/v1/health\0junk" would be served as
     * "/v1/health"). The version follows the target in the same buffer, after the one NUL MHD
     * put in the space between them: a target whose text ends before that is cut short. */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    const struct conn *k = ci ? ci->socket_context : NULL;
    if (k && k->raw_target) {
        if (k->target_pct00)
            return true;
        if (version > k->raw_target && (size_t)(version - 1 - k->raw_target) > k->raw_target_len)
            return true;
    }
    /* Two Content-Length headers that disagree: which one a proxy in front believes is how
     * requests get smuggled (RFC 9112 6.3). */
    struct clen_state st = {NULL, false};
    MHD_get_connection_values(c, MHD_HEADER_KIND, on_header_value, &st);
    return st.conflict;
}

/* The request on `c` carried a verified client certificate: its connection leaves the
 * deadlines and can no longer be evicted. */
static void mark_authenticated(struct server *s, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn *k = ci ? ci->socket_context : NULL;
    if (!k)
        return;
    uv_mutex_lock(&s->lock);
    k->authenticated = true;
    k->handshaken = true;
    uv_mutex_unlock(&s->lock);
}

/* A JSON answer that takes `body` (malloc'd; freed here on failure, NULL gives NULL), not to be
 * cached. */
static struct MHD_Response *json_response(char *body)
{
    if (!body)
        return NULL;
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(strlen(body), body, free);
    if (!r) {
        free(body);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return r;
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
    /* Our own certificate: a collector about to become unreachable says so while it can. */
    char expires[32] = "", warning[96] = "";
    long long now = (long long)time(NULL), exp = s->identity->expires;
    struct tm tm;
    if (exp > 0 && platform_gmtime((time_t)exp, &tm) == 0)
        strftime(expires, sizeof(expires), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (exp > 0 && now >= exp)
        snprintf(warning, sizeof(warning), "the certificate expired on %s", expires);
    else if (exp > 0 && now >= exp - s->cert_warn_s)
        snprintf(warning, sizeof(warning), "the certificate expires on %s (in %lld days)", expires,
                 (exp - now) / 86400);
    const char *status = !s->report                                         ? "starting"
                         : s->last_error || warning[0] || s->evidence_error ? "degraded"
                                                                            : "ok";
    json_t *j = json_pack("{s:s, s:s, s:s?, s:s?, s:I, s:s?, s:s?, s:s?}", "status", status, "host",
                          s->host, "last_refresh", when[0] ? when : NULL, "last_error",
                          s->last_error, "report_bytes", (json_int_t)s->report_bytes,
                          "certificate_expires", expires[0] ? expires : NULL, "certificate_warning",
                          warning[0] ? warning : NULL, "evidence_error", s->evidence_error);
    /* The connection counters (server_stats): how the discipline of issue 19 is doing. */
    json_t *conns =
        json_pack("{s:I, s:I, s:I, s:I, s:I}", "served", (json_int_t)s->stats.served, "refused",
                  (json_int_t)s->stats.refused, "denied", (json_int_t)s->stats.denied, "evicted",
                  (json_int_t)s->stats.evicted, "timed_out", (json_int_t)s->stats.timed_out);
    if (j && conns)
        json_object_set_new(j, "connections", conns);
    else
        json_decref(conns);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct MHD_Response *r = json_response(body);
    if (!r)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* Queues a handler's reply (its body is taken). Refusals end their connection, as above. */
static enum MHD_Result queue_reply(struct MHD_Connection *c, struct server_reply *rep)
{
    char *body = rep->body ? rep->body : strdup("{}");
    rep->body = NULL;
    struct MHD_Response *r = json_response(body);
    if (!r)
        return MHD_NO;
    if (rep->retry_after) {
        char when[24];
        snprintf(when, sizeof(when), "%u", rep->retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, when);
    }
    if (rep->status == MHD_HTTP_BAD_REQUEST || rep->status == MHD_HTTP_UNAUTHORIZED ||
        rep->status == MHD_HTTP_FORBIDDEN || rep->status == MHD_HTTP_CONTENT_TOO_LARGE)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, rep->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The client's numeric address into buf ("" when unknown); returns buf. */
static const char *peer_address(struct MHD_Connection *c, char *buf, size_t size)
{
    buf[0] = '\0';
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ai && ai->client_addr) {
        const struct sockaddr *sa = ai->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)size);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
                      (socklen_t)size);
    }
    return buf;
}

/*
 * A request for the application (server_options.handler). MHD calls this once when the
 * headers are in (the body's size is checked then, before a byte of it is read), once per
 * piece of body, and once at the end, when the handler runs.
 */
static enum MHD_Result app_request(struct server *s, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    struct app_request *r = *con_cls;
    if (!r) {
        const char *clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding"))
            return queue_static(c, MHD_HTTP_LENGTH_REQUIRED,
                                "{\"error\":\"a request body needs a Content-Length\"}", NULL);
        unsigned long long want = 0;
        if (clen) {
            char *end;
            errno = 0;
            want = strtoull(clen, &end, 10);
            if (errno || end == clen || *end || clen[0] == '-' || clen[0] == '+')
                return queue_static(c, MHD_HTTP_BAD_REQUEST,
                                    "{\"error\":\"malformed Content-Length\"}", NULL);
        }
        if (want > s->body_max) {
            /* Refused before a byte of it is read; the application still hears of it. */
            static char empty[] = "";
            struct server_request req = {.method = method, .path = url, .body = empty};
            char peer[64];
            req.peer = peer_address(c, peer, sizeof(peer));
            req.body_refused = want;
            struct server_reply rep = {0, NULL, 0};
            s->handler(s->handler_arg, &req, &rep);
            rep.status = MHD_HTTP_CONTENT_TOO_LARGE;
            if (!rep.body) {
                char body[96];
                snprintf(body, sizeof(body), "{\"error\":\"the body is larger than %zu bytes\"}",
                         s->body_max);
                rep.body = strdup(body);
            }
            return queue_reply(c, &rep);
        }
        r = malloc(sizeof(*r) + (size_t)want + 1);
        if (!r)
            return MHD_NO;
        r->len = 0;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* MHD never hands more than Content-Length, which fits the buffer. */
        size_t n = *upload_data_size;
        if (r->len + n > s->body_max)
            return MHD_NO;
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        *upload_data_size = 0;
        return MHD_YES;
    }
    r->body[r->len] = '\0';

    char peer[64];
    peer_address(c, peer, sizeof(peer));
    struct server_request req = {
        .method = method,
        .path = url,
        .body = r->body,
        .body_len = r->len,
        .peer = peer,
    };
    if (check_client(s, c) == 0) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        unsigned n = 0;
        const gnutls_datum_t *chain =
            ci && ci->tls_session ? gnutls_certificate_get_peers(ci->tls_session, &n) : NULL;
        if (chain && n > 0) {
            req.client_verified = true;
            req.client_der = chain[0].data;
            req.client_der_len = chain[0].size;
            mark_authenticated(s, c);
        }
    }
    struct server_reply rep = {0, NULL, 0};
    s->handler(s->handler_arg, &req, &rep);
    if (rep.status == 0)
        rep.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    uv_mutex_lock(&s->lock);
    if (rep.status < 300)
        s->stats.served++;
    else if (rep.status == MHD_HTTP_UNAUTHORIZED || rep.status == MHD_HTTP_FORBIDDEN)
        s->stats.refused++;
    uv_mutex_unlock(&s->lock);
    return queue_reply(c, &rep);
}

/* MHD is done with a request: a handler request's body goes. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct server *s = cls;

    /* Syntax before identity: a 400 tells nothing about who may read. */
    if (!*con_cls && server_request_malformed(c, version))
        return queue_static(c, MHD_HTTP_BAD_REQUEST, "{\"error\":\"malformed request\"}", NULL);
    if (s->handler)
        return app_request(s, c, url, method, upload_data, upload_data_size, con_cls);

    unsigned refused = check_client(s, c);
    if (!refused)
        mark_authenticated(s, c);
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
    bool evidence = s->evidence_on && strcmp(url, "/v1/evidence") == 0;
    if (!readiness && !evidence && strcmp(url, "/v1/health") != 0)
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
    if (evidence) {
        if (!s->evidence) {
            ret = queue_static(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "{\"error\":\"no evidence summary yet\"}", NULL);
        } else {
            s->stats.served++;
            ret = MHD_queue_response(c, MHD_HTTP_OK, s->evidence);
        }
    } else if (!readiness) {
        ret = answer_health(s, c);
    } else if (!s->report) {
        ret = queue_static(c, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"error\":\"no report yet\"}", NULL);
    } else {
        s->stats.served++;
        ret = MHD_queue_response(c, MHD_HTTP_OK, s->report);
    }
    uv_mutex_unlock(&s->lock);
    return ret;
}

/* ---- connections: the accept policy, the deadlines, eviction ---- */

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000; }

/* "ADDR" or "ADDR/PREFIX" into n; 0 or -EINVAL. */
static int parse_net(const char *text, struct net *n)
{
    char buf[64];
    size_t len = strlen(text);
    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, text, len + 1);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        errno = 0;
        prefix = strtol(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || prefix < 0)
            return -EINVAL;
    }
    memset(n, 0, sizeof(*n));
    if (inet_pton(AF_INET, buf, n->addr) == 1) {
        n->family = AF_INET;
        n->prefix = prefix < 0 ? 32 : (unsigned)prefix;
        return n->prefix <= 32 ? 0 : -EINVAL;
    }
    if (inet_pton(AF_INET6, buf, n->addr) == 1) {
        n->family = AF_INET6;
        n->prefix = prefix < 0 ? 128 : (unsigned)prefix;
        return n->prefix <= 128 ? 0 : -EINVAL;
    }
    return -EINVAL;
}

static bool net_match(const struct net *n, const struct sockaddr *sa)
{
    const unsigned char *a;
    if (sa->sa_family != n->family)
        return false;
    if (sa->sa_family == AF_INET)
        a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    else
        a = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    unsigned full = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(a, n->addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (n->addr[full] & mask);
}

static bool same_host(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr)) == 0;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

static bool is_trusted(const struct server *s, const struct sockaddr *sa)
{
    for (size_t i = 0; i < s->nnets; i++)
        if (net_match(&s->nets[i], sa))
            return true;
    return false;
}

#ifdef _WIN32
#define SHUT_BOTH SD_BOTH
#else
#define SHUT_BOTH SHUT_RDWR
#endif

/* Ends a connection MHD still owns: shutdown() (never close(): the socket stays MHD's) makes
 * its next read fail, and MHD frees it on its next run. Called with s->lock held. */
static void conn_shut(struct conn *k)
{
    if (k->closing)
        return;
    k->closing = true;
    shutdown(k->fd, SHUT_BOTH);
}

/* True while the peer has sent nothing, or only part of a ClientHello. Called with s->lock
 * held, on the thread that drives the session (POSIX: the loop's; Windows: MHD's). */
static bool conn_silent(const struct conn *k)
{
    if (k->hello)
        return false;
    /* Bytes waiting in the socket that GnuTLS has not read yet (a ClientHello that arrived
     * with the connection) are not silence. The socket is non-blocking. */
    char b;
    return recv(k->fd, &b, 1, MSG_PEEK) <= 0;
}

/* GnuTLS calls this after each handshake message: it is how we know the handshake's progress
 * (gnutls_handshake_get_last_in is not kept up to date by TLS 1.3 server sessions). */
static int on_handshake_message(gnutls_session_t session, unsigned int htype, unsigned when,
                                unsigned int incoming, const gnutls_datum_t *msg)
{
    (void)when;
    (void)msg;
    if (!incoming || (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO && htype != GNUTLS_HANDSHAKE_FINISHED))
        return 0;
    struct MHD_Connection *mc = gnutls_session_get_ptr(session);
    const union MHD_ConnectionInfo *ci =
        mc ? MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
    struct conn *k = ci ? ci->socket_context : NULL;
    if (!k)
        return 0;
    uv_mutex_lock(&k->s->lock);
    k->hello = true;
    if (htype == GNUTLS_HANDSHAKE_FINISHED)
        k->handshaken = true;
    uv_mutex_unlock(&k->s->lock);
    return 0;
}

/* Connections not shut down yet; *same counts those from addr's host (when addr is set).
 * Called with s->lock held. */
static unsigned count_live(const struct server *s, const struct sockaddr *addr, unsigned *same)
{
    unsigned live = 0;
    for (const struct conn *k = s->conns_head; k; k = k->next) {
        if (k->closing)
            continue;
        live++;
        if (addr && same_host((const struct sockaddr *)&k->addr, addr))
            (*same)++;
    }
    return live;
}

/* The connection to evict for a newcomer: the oldest that has not sent a whole ClientHello
 * (past its grace), else the oldest that has not authenticated (past its grace); never an
 * orchestrator address or an authenticated one. NULL when none. Called with s->lock held. */
static struct conn *pick_victim(struct server *s, uint64_t now)
{
    struct conn *victim = NULL;
    for (struct conn *k = s->conns_head; k; k = k->next) {
        if (k->closing || k->authenticated || k->trusted)
            continue;
        uint64_t age = now - k->started_ms;
        /* An honest client sends its ClientHello right after connecting. */
        if (age >= SERVER_SILENT_GRACE_MS && conn_silent(k))
            return k;
        if (!victim && age >= SERVER_EVICT_GRACE_MS)
            victim = k;
    }
    return victim;
}

/*
 * MHD's accept policy callback, after MHD's own (hard) limit: who may take a slot.
 * - with an orchestrators list, any other address is closed here, before a byte of TLS;
 * - a stranger gets at most per_ip_limit connections per address and `cap` in all; when the
 *   cap is full the oldest connection that has not sent a ClientHello (past 50 ms), else the
 *   oldest that has not authenticated (past 500 ms), is evicted to make room; while none is
 *   past its grace the newcomer is taken over the cap (up to cap + cap/2, then refused) and
 *   the sweep evicts back down to the cap;
 * - an orchestrator address may also use SERVER_RESERVED_SLOTS slots above the cap, and is
 *   never evicted by a stranger.
 */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct server *s = cls;
    (void)addrlen;
    bool trusted = is_trusted(s, addr);
    if (s->nnets > 0 && !trusted) {
        uv_mutex_lock(&s->lock);
        s->stats.denied++;
        uv_mutex_unlock(&s->lock);
        return MHD_NO;
    }
    unsigned same = 0;
    uv_mutex_lock(&s->lock);
    unsigned live = count_live(s, addr, &same);
    unsigned cap = s->cap + (trusted ? SERVER_RESERVED_SLOTS : 0);
    enum MHD_Result ok = MHD_YES;
    if (!trusted && same >= s->per_ip_limit) {
        ok = MHD_NO;
    } else if (live >= cap) {
        /* Full: make room, or take the newcomer over the cap while every candidate is still
         * in its grace (the sweep evicts down to the cap when the grace ends); refuse only
         * at cap + cap/2. */
        struct conn *victim = pick_victim(s, mono_ms());
        if (victim) {
            conn_shut(victim);
            s->stats.evicted++;
        } else if (live >= cap + s->cap / 2) {
            ok = MHD_NO;
        }
    }
    if (ok == MHD_NO)
        s->stats.denied++;
    uv_mutex_unlock(&s->lock);
    return ok;
}

/*
 * TLS session resumption (issue 16). MHD 0.9.75 has no option for it, but it calls
 * NOTIFY_CONNECTION(STARTED) after gnutls_init and before the handshake (daemon.c,
 * new_connection_process_), so the session can be given the server's ticket key there: TLS 1.3
 * tickets and TLS 1.2 session tickets (RFC 5077), no server-side session store. The key is made
 * with each identity and lives only in memory: a restarted collector, or a certificate replaced
 * by SIGHUP (server_reload_identity), resumes nothing issued before. A ticket is good for
 * SERVER_TICKET_LIFETIME_S. A resumed session
 * carries the client certificate it was made with; check_client verifies it again on every
 * request, against the CA of this run.
 */
#define SERVER_TICKET_LIFETIME_S 14400

/* Gives a new session the current identity's ticket key (called under s->lock). Without it the
 * handshake simply stays a full one. */
static void enable_tickets(const struct identity *id, gnutls_session_t session)
{
    if (id->ticket_key.data && gnutls_session_ticket_enable_server(session, &id->ticket_key) == 0)
        gnutls_db_set_cache_expiration(session, SERVER_TICKET_LIFETIME_S);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *addr =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct conn *k = calloc(1, sizeof(*k));
        if (!k || !fd || !addr || !addr->client_addr) {
            /* Untracked, it would escape the deadlines: end it now. */
            free(k);
            if (fd)
                shutdown(fd->connect_fd, SHUT_BOTH);
            *socket_context = NULL;
            return;
        }
        k->s = s;
        k->mc = c;
        k->fd = fd->connect_fd;
        memcpy(&k->addr, addr->client_addr,
               addr->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                        : sizeof(struct sockaddr_in));
        k->started_ms = mono_ms();
        k->trusted = is_trusted(s, addr->client_addr);
        const union MHD_ConnectionInfo *tls =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (tls && tls->tls_session)
            gnutls_handshake_set_hook_function(tls->tls_session, GNUTLS_HANDSHAKE_ANY,
                                               GNUTLS_HOOK_POST, on_handshake_message);
        uv_mutex_lock(&s->lock);
        if (tls && tls->tls_session)
            enable_tickets(s->identity, tls->tls_session);
        k->prev = s->conns_tail;
        if (s->conns_tail)
            s->conns_tail->next = k;
        else
            s->conns_head = k;
        s->conns_tail = k;
        uv_mutex_unlock(&s->lock);
        *socket_context = k;
        return;
    }
    /* NOTIFY_CLOSED: MHD calls it before it closes the socket, so a sweep holding the lock
     * never shuts down a number the kernel has handed to someone else. */
    s->closed_in_run = true;
    struct conn *k = *socket_context;
    if (!k)
        return;
    uv_mutex_lock(&s->lock);
    if (k->prev)
        k->prev->next = k->next;
    else
        s->conns_head = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else
        s->conns_tail = k->prev;
    uv_mutex_unlock(&s->lock);
    free(k);
    *socket_context = NULL;
}

/*
 * The deadlines, independent of activity (MHD's own timeout restarts with every byte): a
 * connection that has not completed its TLS handshake handshake_ms after accept, or has not
 * sent a request with a verified client certificate request_ms after accept, is shut down.
 * Returns the milliseconds until the next deadline, or UINT64_MAX when none is pending.
 */
static uint64_t sweep(struct server *s)
{
    uint64_t now = mono_ms(), next = UINT64_MAX;
    uv_mutex_lock(&s->lock);
    for (struct conn *k = s->conns_head; k; k = k->next) {
        if (k->closing || k->authenticated)
            continue;
        uint64_t age = now - k->started_ms;
        if (!k->handshaken && age >= s->handshake_ms) {
            conn_shut(k);
            s->stats.timed_out++;
            continue;
        }
        if (age >= s->request_ms) {
            conn_shut(k);
            s->stats.timed_out++;
            continue;
        }
        uint64_t due = (k->handshaken ? s->request_ms : s->handshake_ms) - age;
        if (due < next)
            next = due;
    }
    /* Over the cap (newcomers taken while everyone was in their grace): back down to it. */
    unsigned live = count_live(s, NULL, NULL);
    for (; live > s->cap; live--) {
        struct conn *victim = pick_victim(s, now);
        if (!victim)
            break;
        conn_shut(victim);
        s->stats.evicted++;
    }
    if (live > s->cap && next > SERVER_SILENT_GRACE_MS)
        next = SERVER_SILENT_GRACE_MS;
    uv_mutex_unlock(&s->lock);
    return next;
}

/* ---- the identity: certificate and key, served through MHD's certificate callback ---- */

static void identity_free(struct identity *id)
{
    while (id) {
        struct identity *next = id->retired;
        for (unsigned i = 0; i < id->npcerts; i++)
            gnutls_pcert_deinit(&id->pcerts[i]);
        if (id->key)
            gnutls_privkey_deinit(id->key);
        if (id->ticket_key.data) {
            platform_secure_zero(id->ticket_key.data, id->ticket_key.size);
            gnutls_free(id->ticket_key.data);
        }
        free(id);
        id = next;
    }
}

/* A key held elsewhere (key_url: a Windows certificate store, certstore-win.c): imported by
 * URL, and proven to be the certificate's by signing a test message and verifying it with the
 * certificate's public key (GnuTLS cannot read the public half of such a key). 0 or -EINVAL. */
static int key_url_check(struct identity *id, const char *key_url, char *err, size_t errsize)
{
    int rc = gnutls_privkey_import_url(id->key, key_url, 0);
    if (rc < 0) {
        platform_set_err(err, errsize, "the key %s cannot be opened: %s", key_url,
                         gnutls_strerror(rc));
        return -EINVAL;
    }
    unsigned bits;
    int pk = gnutls_pubkey_get_pk_algorithm(id->pcerts[0].pubkey, &bits);
    gnutls_sign_algorithm_t algo = gnutls_pk_to_sign((gnutls_pk_algorithm_t)pk, GNUTLS_DIG_SHA256);
    static const char probe[] = "tlsgate: does this key belong to the certificate?";
    gnutls_datum_t data = {(unsigned char *)probe, sizeof(probe) - 1}, sig = {NULL, 0};
    rc = gnutls_privkey_sign_data2(id->key, algo, 0, &data, &sig);
    if (rc >= 0)
        rc = gnutls_pubkey_verify_data2(id->pcerts[0].pubkey, algo, 0, &data, &sig);
    gnutls_free(sig.data);
    if (rc < 0) {
        platform_set_err(err, errsize, "the key %s does not sign for the certificate: %s", key_url,
                         gnutls_strerror(rc));
        return -EINVAL;
    }
    return 0;
}

/* The certificate chain and the key (PEM, or by URL), checked to belong together. 0 or
 * -EINVAL/-ENOMEM. */
static int identity_new(const char *cert_pem, const char *key_pem, const char *key_url,
                        struct identity **out, char *err, size_t errsize)
{
    *out = NULL;
    struct identity *id = calloc(1, sizeof(*id));
    if (!id)
        return -ENOMEM;
    if (gnutls_session_ticket_key_generate(&id->ticket_key) != 0)
        id->ticket_key.data = NULL; /* no resumption: every handshake a full one */
    gnutls_datum_t cd = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
    gnutls_datum_t kd = {(unsigned char *)key_pem, key_pem ? (unsigned)strlen(key_pem) : 0};
    gnutls_pubkey_t pub = NULL;
    gnutls_x509_crt_t crt = NULL;
    unsigned n = SERVER_CHAIN_MAX;
    int rc = gnutls_pcert_list_import_x509_raw(id->pcerts, &n, &cd, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || n == 0) {
        platform_set_err(err, errsize,
                         "the certificate is not a PEM certificate (chain of at most %d): %s",
                         SERVER_CHAIN_MAX, rc < 0 ? gnutls_strerror(rc) : "none found");
        goto fail;
    }
    id->npcerts = n;
    if (gnutls_privkey_init(&id->key) < 0)
        goto fail;
    if (key_url) {
        rc = key_url_check(id, key_url, err, errsize);
        if (rc < 0)
            goto fail;
        goto matched;
    }
    rc = gnutls_privkey_import_x509_raw(id->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        platform_set_err(err, errsize, "the key is not an unencrypted PEM private key: %s",
                         gnutls_strerror(rc));
        goto fail;
    }
    unsigned char a[64], b[64];
    size_t alen = sizeof(a), blen = sizeof(b);
    if (gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_privkey(pub, id->key, 0, 0) < 0 ||
        gnutls_pubkey_get_key_id(pub, 0, a, &alen) < 0 ||
        gnutls_pubkey_get_key_id(id->pcerts[0].pubkey, 0, b, &blen) < 0 || alen != blen ||
        memcmp(a, b, alen) != 0) {
        platform_set_err(err, errsize, "the key and the certificate do not match");
        goto fail;
    }
matched:
    if (gnutls_x509_crt_init(&crt) < 0 ||
        gnutls_x509_crt_import(crt, &id->pcerts[0].cert, GNUTLS_X509_FMT_DER) < 0) {
        platform_set_err(err, errsize, "the certificate cannot be read back");
        goto fail;
    }
    id->expires = (long long)gnutls_x509_crt_get_expiration_time(crt);
    gnutls_x509_crt_deinit(crt);
    gnutls_pubkey_deinit(pub);
    *out = id;
    return 0;
fail:
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (pub)
        gnutls_pubkey_deinit(pub);
    identity_free(id);
    return -EINVAL;
}

/* GnuTLS asks, during each handshake, what to present: the identity current at that moment. */
static int on_cert(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                   const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                   gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *privkey)
{
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    struct MHD_Connection *mc = gnutls_session_get_ptr(session);
    const union MHD_ConnectionInfo *ci =
        mc ? MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
    struct conn *k = ci ? ci->socket_context : NULL;
    if (!k)
        return -1;
    struct server *s = k->s;
    uv_mutex_lock(&s->lock);
    struct identity *id = s->identity;
    uv_mutex_unlock(&s->lock);
    *pcert = id->pcerts;
    *pcert_length = id->npcerts;
    *privkey = id->key;
    return 0;
}

int server_reload_identity(struct server *s, const char *cert_pem, const char *key_pem, char *err,
                           size_t errsize)
{
    return server_reload_identity_url(s, cert_pem, key_pem, NULL, err, errsize);
}

int server_reload_identity_url(struct server *s, const char *cert_pem, const char *key_pem,
                               const char *key_url, char *err, size_t errsize)
{
    struct identity *id;
    int rc = identity_new(cert_pem, key_url ? NULL : key_pem, key_url, &id, err, errsize);
    if (rc < 0)
        return rc;
    uv_mutex_lock(&s->lock);
    id->retired = s->identity;
    s->identity = id;
    uv_mutex_unlock(&s->lock);
    return 0;
}

long long server_cert_expires(const struct server *s)
{
    uv_mutex_lock((uv_mutex_t *)&s->lock);
    long long t = s->identity->expires;
    uv_mutex_unlock((uv_mutex_t *)&s->lock);
    return t;
}

/* ---- lifecycle ---- */

static void server_free(struct server *s)
{
    if (s->report)
        MHD_destroy_response(s->report);
    if (s->evidence)
        MHD_destroy_response(s->evidence);
    free(s->evidence_error);
    free(s->host);
    free(s->client_cn);
    free(s->ca_pem);
    free(s->nets);
    identity_free(s->identity);
    /* MHD frees every connection (NOTIFY_CLOSED) before MHD_stop_daemon returns. */
    assert(!s->conns_head);
    free(s->last_error);
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
    case WSAEADDRINUSE: *text = "the port is in use by another program"; return EADDRINUSE;
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
        platform_set_err(err, errsize, "%s: not a numeric IPv4 or IPv6 address", address);
        return -EINVAL;
    }
    const char *why;
    MHD_socket fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd == BAD_SOCKET) {
        int e = socket_error(&why);
        platform_set_err(err, errsize, "socket: %s", why);
        return -e;
    }
    if (prepare_socket(fd) < 0) {
        int e = socket_error(&why);
        platform_set_err(err, errsize, "socket options: %s", why);
        close_socket(fd);
        return -e;
    }
    int one = 1;
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, (const void *)&one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0) {
        int e = socket_error(&why);
        platform_set_err(err, errsize, "cannot listen on %s port %u: %s", address, (unsigned)port,
                         why);
        close_socket(fd);
        return -e;
    }
    struct sockaddr_storage got;
    socklen_t gotlen = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &gotlen) < 0) {
        int e = socket_error(&why);
        platform_set_err(err, errsize, "getsockname: %s", why);
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

int server_start(uv_loop_t *loop, const struct server_options *o, struct server **out, char *err,
                 size_t errsize)
{
    *out = NULL;
    if (err && errsize)
        err[0] = '\0';
    if (!o->host || !o->address || !o->cert_pem || (!o->key_pem && !o->key_url) || !o->ca_pem) {
        platform_set_err(err, errsize,
                         "server: host, address, certificate, key and CA are required");
        return -EINVAL;
    }
#ifdef _WIN32
    uv_once(&wsa_once, wsa_init);
    if (wsa_status != 0) {
        platform_set_err(err, errsize, "WSAStartup failed (error %d)", wsa_status);
        return -EIO;
    }
#endif
    int rc;
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
    s->ca_pem = strdup(o->ca_pem);
    s->log = o->log;
    s->log_arg = o->log_arg;
    s->handler = o->handler;
    s->evidence_on = o->evidence;
    s->handler_arg = o->handler_arg;
    s->body_max = o->body_max ? o->body_max : SERVER_BODY_MAX_DEFAULT;
    s->cap = o->connection_limit ? o->connection_limit : SERVER_DEFAULT_CONNECTIONS;
    s->per_ip_limit = o->per_ip_limit ? o->per_ip_limit : SERVER_DEFAULT_PER_IP;
    s->handshake_ms =
        o->handshake_timeout_ms ? o->handshake_timeout_ms : SERVER_DEFAULT_HANDSHAKE_MS;
    s->request_ms = o->request_timeout_ms ? o->request_timeout_ms : SERVER_DEFAULT_REQUEST_MS;
    if (s->request_ms < s->handshake_ms)
        s->request_ms = s->handshake_ms;
    s->cert_warn_s =
        86400LL * (o->cert_warn_days ? o->cert_warn_days : SERVER_DEFAULT_CERT_WARN_DAYS);
    s->nets = o->norchestrators ? calloc(o->norchestrators, sizeof(*s->nets)) : NULL;
    if (!s->host || (o->client_cn && !s->client_cn) || !s->ca_pem ||
        (o->norchestrators && !s->nets)) {
        server_free(s);
        return -ENOMEM;
    }
    for (size_t i = 0; i < o->norchestrators; i++) {
        if (parse_net(o->orchestrators[i], &s->nets[i]) < 0) {
            platform_set_err(err, errsize,
                             "orchestrators: '%s' is not an IPv4 or IPv6 address (optionally "
                             "/prefix)",
                             o->orchestrators[i]);
            server_free(s);
            return -EINVAL;
        }
    }
    s->nnets = o->norchestrators;
    char why[256];
    rc = identity_new(o->cert_pem, o->key_url ? NULL : o->key_pem, o->key_url, &s->identity, why,
                      sizeof(why));
    if (rc < 0) {
        platform_set_err(err, errsize,
                         "%s: cannot start the HTTPS server (bad certificate, key or CA?): %s",
                         o->host, rc == -ENOMEM ? "out of memory" : why);
        server_free(s);
        return rc;
    }

    /* MHD accepts a trust PEM without a certificate in it; every client would then be refused
     * with no word why. */
    if (count_certificates(s->ca_pem) <= 0) {
        platform_set_err(err, errsize, "%s: the CA PEM holds no certificate", o->host);
        server_free(s);
        return -EINVAL;
    }

    MHD_socket fd = BAD_SOCKET;
    rc = listen_on(o->address, o->port, &s->port, &fd, err, errsize);
    if (rc < 0) {
        server_free(s);
        return rc;
    }

    uv_mutex_lock(&s->log_lock);
    s->start_err = err;
    s->start_errsize = errsize;
    uv_mutex_unlock(&s->log_lock);
    s->mhd = MHD_start_daemon(
        SERVER_MHD_FLAGS | MHD_USE_TLS | MHD_USE_ERROR_LOG, 0, on_accept, s, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, /* first, or MHD logs the others itself */
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        /* The TLS setup, all of it: identity by callback (SIGHUP swaps it), the CA that signs
         * clients, the protocol versions. */
        MHD_OPTION_HTTPS_CERT_CALLBACK, on_cert, MHD_OPTION_HTTPS_MEM_TRUST, s->ca_pem,
        MHD_OPTION_HTTPS_PRIORITIES, SERVER_TLS_PRIORITIES,
        /* MHD's hard limit: our cap (on_accept), the orchestrators' reserve, and room for the
         * connections already shut down that MHD has not freed yet. Per address: on_accept. */
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(2 * s->cap + SERVER_RESERVED_SLOTS),
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
        platform_set_err(err, errsize,
                         "%s: cannot start the HTTPS server (bad certificate, key or CA?): %s",
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

int server_set_evidence(struct server *s, char *json, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, json, free);
    if (!r) {
        free(json);
        return -ENOMEM;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES ||
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES) {
        MHD_destroy_response(r);
        return -ENOMEM;
    }
    uv_mutex_lock(&s->lock);
    struct MHD_Response *old = s->evidence; /* responses in flight hold their own reference */
    s->evidence = r;
    uv_mutex_unlock(&s->lock);
    if (old)
        MHD_destroy_response(old);
    return 0;
}

/* A message made safe for the health JSON (printable ASCII, capped); NULL when out of memory. */
static char *clean_message(const char *message)
{
    size_t n = strnlen(message, SERVER_ERROR_MAX_BYTES);
    char *m = malloc(n + 1);
    if (!m)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)message[i];
        m[i] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
    }
    m[n] = '\0';
    return m;
}

void server_set_evidence_error(struct server *s, const char *message)
{
    char *m = message ? clean_message(message) : NULL;
    if (message && !m)
        return;
    uv_mutex_lock(&s->lock);
    char *old = s->evidence_error;
    s->evidence_error = m;
    uv_mutex_unlock(&s->lock);
    free(old);
}

void server_set_error(struct server *s, const char *message)
{
    char *m = clean_message(message);
    if (!m)
        return; /* the old message stays: still true that the refresh is failing */
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
        platform_set_err(err, errsize, "%s: cannot poll the server's epoll fd: %s", s->host,
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
    /* MHD's thread runs already; the timer sweeps the deadlines (shutdown() of a socket MHD's
     * thread polls is safe: the record, and so the socket, lives until NOTIFY_CLOSED, which
     * takes the lock) and anchors the close. */
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->open_handles = 1;
    uv_timer_start(&s->timer, on_sweep_timer, 250, 250);
    return 0;
}

static void glue_close(struct server *s)
{
    uv_timer_stop(&s->timer);
    MHD_stop_daemon(s->mhd); /* joins MHD's thread: no handler runs after this */
    s->mhd = NULL;
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}
#endif

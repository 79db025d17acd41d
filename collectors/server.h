/*
 * server: one HTTPS identity (host name, certificate, key, port) serving a readiness report with
 * mutual TLS, driven by a libuv loop the caller owns.
 *
 * On Linux libmicrohttpd runs in external epoll mode (no thread of its own): its epoll fd is
 * watched by a uv_poll_t and a uv_timer_t follows MHD_get_timeout, so ONE loop can carry MANY
 * servers (the collector runs one; the fleet simulator runs thousands). Per-server memory is the
 * MHD daemon, its GnuTLS credentials, two libuv handles and the current report (held once,
 * shared by every response in flight). MHD has no epoll on Windows: there each server runs MHD's
 * own polling thread (WSAPoll) and the calls below may race it safely (the shared state is
 * under a mutex); the behaviour and limits are the same.
 *
 * Connection discipline (issue 19: a collector nobody can knock offline): every connection has
 * deadlines from accept, independent of activity, for its TLS handshake and for a complete
 * request with a verified client certificate; a stranger gets at most per_ip_limit connections
 * per address and connection_limit in all; when they are full a newcomer evicts the oldest
 * connection that has sent no ClientHello (older than 50 ms), else the oldest that has not
 * authenticated (older than 500 ms), or is taken over the cap (up to half as many again) until
 * one is. An authenticated connection is never evicted.
 * With an orchestrators allow-list, other addresses are closed at accept and the orchestrators
 * have reserved slots. Refusals (400/401/403) close their connection.
 *
 * Every request is refused unless its client certificate verifies against the CA given here,
 * for TLS client authentication, and (when `client_cn` is set) names that client. MHD only
 * *requests* a client certificate; the access handler is where the check happens.
 * (With an application handler set, server_options.handler, the client certificate is optional
 * and the handler decides; the connection discipline and the syntax checks stay the same.)
 *
 *   GET /v1/readiness  200 application/json: the report set by server_set_report (503 before)
 *   GET /v1/evidence   200 application/json: the IIS log summary set by server_set_evidence
 *                      (iissum.h; 503 before); 404 unless server_options.evidence
 *   GET /v1/health     200 application/json: {status, host, last_refresh, last_error,
 *                      report_bytes}; never touches the facts
 *                      + evidence_error when the last scan of the IIS logs failed ("degraded")
 *                      + certificate_expires, and certificate_warning ("degraded") when
 *                      the certificate expires within cert_warn_days or has expired;
 *                      + connections: {served, refused, denied, evicted, timed_out}
 *                      (server_stats below)
 *   other paths 404; other methods on these paths 405 with Allow; HEAD is answered like GET.
 *   A request whose version is not HTTP/1.x, whose target holds a NUL (raw or %00), or with
 *   Content-Length headers that disagree: 400, before the client check. No request
 *   bodies (413). Headers over the connection memory limit: 431 or a closed
 *   connection, and the server keeps serving.
 *
 * The caller must ignore SIGPIPE on POSIX (the server tells MHD that the application handles it).
 */
#ifndef TLSGATE_SERVER_H
#define TLSGATE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct server;

/*
 * An application served instead of the readiness report (server_options.handler; the
 * enrollment endpoint of `tlsgate enroll serve` is one). The same connection discipline and
 * syntax checks run first; then every request, whatever its path and method, goes to the
 * handler with its body and what the client certificate proved. The client certificate is
 * OPTIONAL then: the handler decides what needs one.
 */
struct server_request {
    const char *method, *path;
    const char *body; /* NUL-terminated; "" when none */
    size_t body_len;
    const char *peer;     /* the client's numeric address */
    bool client_verified; /* a certificate that verifies against ca_pem for client auth */
    const unsigned char *client_der; /* that certificate (DER) when verified, else NULL */
    size_t client_der_len;
    /* Not 0: the request announced a body of this many bytes, over body_max; the body was
     * not read and the answer is 413 whatever the handler sets (it may audit it). */
    unsigned long long body_refused;
};
struct server_reply {
    unsigned status;      /* HTTP status */
    char *body;           /* malloc'd JSON (application/json); the server frees it */
    unsigned retry_after; /* seconds, sent as Retry-After when not 0 */
};
typedef void (*server_handler_fn)(void *arg, const struct server_request *req,
                                  struct server_reply *rep);
/* A handler's request body is at most this many bytes unless body_max says otherwise. */
#define SERVER_BODY_MAX_DEFAULT (16 * 1024)

/* GnuTLS priority string: TLS 1.2 and 1.3 only (-VERS-ALL first, GnuTLS #1054). */
#define SERVER_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/* A PEM file (certificate, key or CA bundle) is at most this many bytes. */
#define SERVER_PEM_MAX_BYTES (64 * 1024)
/* last_error is cut to this many bytes. */
#define SERVER_ERROR_MAX_BYTES 512

struct server_options {
    const char *host;     /* identity, reported by /v1/health */
    const char *address;  /* numeric IPv4 or IPv6 address to bind ("127.0.0.1", "::1") */
    uint16_t port;        /* 0: the kernel picks one; read it back with server_port */
    const char *cert_pem; /* NUL-terminated PEM; copied */
    const char *key_pem;  /* NUL-terminated PEM, unencrypted; copied */
    /* Instead of key_pem: a key GnuTLS opens by URL (gnutls_privkey_import_url), such as a
     * Windows store's (certstore-win.c); checked by a test signature against cert_pem. */
    const char *key_url;
    const char *ca_pem;    /* NUL-terminated PEM of the CA that signs clients; copied */
    const char *client_cn; /* when set, the client certificate's CN must equal it; copied */
    /* When set, receives libmicrohttpd's messages once the server runs (level 3: debug; they
     * are mostly failed handshakes). May be called from MHD's thread on Windows. */
    void (*log)(void *arg, int level, const char *line);
    void *log_arg;
    /* 0 for the defaults below. */
    unsigned connection_limit;     /* 64 */
    unsigned per_ip_limit;         /* 16 */
    unsigned connection_timeout_s; /* 10: idle (MHD's, restarts with every byte) */
    size_t connection_memory;      /* 32 KiB: the cap on one request's headers */
    /* Deadlines counted from accept, whatever the peer sends (issue 19): the TLS handshake
     * complete within handshake_timeout_ms (5000), a request with a verified client
     * certificate within request_timeout_ms (10000); else the connection is closed. */
    unsigned handshake_timeout_ms;
    unsigned request_timeout_ms;
    /* The orchestrators' addresses ("127.0.0.1", "::1", "127.0.0.0/8"). When given, a
     * connection from any other address is closed at accept. They also get
     * SERVER_RESERVED_SLOTS (8) slots above connection_limit and are never evicted. Copied. */
    const char *const *orchestrators;
    size_t norchestrators;
    /* /v1/health says "degraded" from this many days before the certificate expires (14). */
    unsigned cert_warn_days;
    /* When set, an application instead of the report (struct server_request above): called on
     * the loop's thread (MHD's own on Windows) once a request is complete. A body needs a
     * Content-Length (else 411) of at most body_max bytes (else 413, before it is read). */
    server_handler_fn handler;
    void *handler_arg;
    size_t body_max; /* 0: SERVER_BODY_MAX_DEFAULT */
    bool evidence;   /* serve /v1/evidence (the collector's config "evidence") */
};

/*
 * Binds address:port and starts serving on `loop`. Returns 0 and *out, or a negative errno
 * (-EINVAL bad address or TLS material, -EADDRINUSE, ...) with the reason in err; *out is NULL
 * then and nothing is left on the loop.
 */
int server_start(uv_loop_t *loop, const struct server_options *o, struct server **out, char *err,
                 size_t errsize);

/* The port actually bound (useful after port 0). */
uint16_t server_port(const struct server *s);

/*
 * Replaces the report served at /v1/readiness with a copy of `len` bytes of JSON, records
 * `refreshed_at` (epoch seconds) as the last refresh and clears last_error. Responses already
 * in flight keep the bytes they started with. Returns 0, -E2BIG over REPORT_MAX_BYTES, -ENOMEM.
 */
int server_set_report(struct server *s, const char *json, size_t len, long long refreshed_at);

/* Replaces the summary served at /v1/evidence with `json` (len bytes), which the server takes
 * (freed with free() once no response uses it, also on failure). 0 or -ENOMEM. */
int server_set_evidence(struct server *s, char *json, size_t len);

/* Why the last scan of the IIS logs failed (said in /v1/health), or NULL when it succeeded. */
void server_set_evidence_error(struct server *s, const char *message);

/* Records a failed refresh: the last good report keeps being served and /v1/health says why. */
void server_set_error(struct server *s, const char *message);

/* Counters since start, for tests and the simulator's statistics. */
struct server_stats {
    unsigned long served;    /* 200 answers */
    unsigned long refused;   /* 401/403 answers: no or unverified client certificate */
    unsigned long denied;    /* closed at accept: not an orchestrator, per-address cap, full */
    unsigned long evicted;   /* closed to make room for a newcomer */
    unsigned long timed_out; /* closed at the handshake or the request deadline */
};
void server_get_stats(const struct server *s, struct server_stats *st);

/*
 * Serves a new certificate and key from the next handshake on (rotation without a restart).
 * The pair is checked first (PEM, the key belongs to the certificate); on -EINVAL (reason in
 * err) the old pair stays. Handshakes in flight finish with the old one.
 */
int server_reload_identity(struct server *s, const char *cert_pem, const char *key_pem, char *err,
                           size_t errsize);

/* The same with the key by URL (server_options.key_url) when key_url is not NULL. */
int server_reload_identity_url(struct server *s, const char *cert_pem, const char *key_pem,
                               const char *key_url, char *err, size_t errsize);

/* The served certificate's notAfter, epoch seconds. */
long long server_cert_expires(const struct server *s);

/*
 * The request checks that do not depend on who asks (server.c's on_request runs them first; a
 * fuzz target can too): true when `version` is not HTTP/1.x, the target held a NUL (raw or
 * %00; seen by the server's URI callback) or the request's Content-Length headers disagree.
 */
struct MHD_Connection;
bool server_request_malformed(struct MHD_Connection *c, const char *version);

/*
 * Stops accepting, ends every connection and closes the libuv handles. The memory is freed
 * once the handles have closed; `done` (may be NULL) is then called. Call at most once.
 */
void server_close(struct server *s, void (*done)(void *arg), void *arg);

#endif

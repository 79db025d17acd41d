/*
 * probe.c — the wire probe (probe.h): one TCP connection and one capped handshake per job,
 * driven through memory BIOs so the same loop serves plain TLS and TLS inside TDS packets, and
 * the in-process self-test server.
 *
 * The handshake never touches the socket itself: OpenSSL writes to a memory BIO, the loop sends
 * those bytes (as they are, or wrapped in TDS PRELOGIN packets, type 0x12), reads the answer
 * (unwrapping TDS packets) into the other memory BIO, with poll() and one deadline per job. That
 * is the TDS "BIO" of issue 18 without a custom BIO_METHOD: the wrapping lives in two functions
 * (send_tls, recv_tls) instead of BIO callbacks, and the timeout logic exists once.
 */
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/poll.h> /* not <poll.h>: pull/poll.h is on the include path */
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "utc.h"

/* OpenSSL's version number of each protocol (0: none). */
static int ossl_version(enum wire_proto p)
{
    switch (p) {
    case WIRE_SSL3: return SSL3_VERSION;
    case WIRE_TLS10: return TLS1_VERSION;
    case WIRE_TLS11: return TLS1_1_VERSION;
    case WIRE_TLS12: return TLS1_2_VERSION;
    case WIRE_TLS13: return TLS1_3_VERSION;
    case WIRE_SSL2: break;
    }
    return 0;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline: 1 ready, 0 timeout, -errno. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/* The last OpenSSL error as text (or `fallback`), and the queue cleared. */
static void ssl_error_text(char *buf, size_t size, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e) {
        const char *reason = ERR_reason_error_string(e);
        snprintf(buf, size, "%s", reason ? reason : fallback);
    } else {
        snprintf(buf, size, "%s", fallback);
    }
    ERR_clear_error();
}

/* A context capped at exactly `p` (min = max), security level 0 and every cipher for the old
 * protocols, no certificate verification (the probe asks what is accepted, not who answers). */
static SSL_CTX *capped_ctx(enum wire_proto p, bool server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx)
        return NULL;
    int v = ossl_version(p);
    SSL_CTX_set_security_level(ctx, 0);
    if (!server &&
        (!SSL_CTX_set_min_proto_version(ctx, v) || !SSL_CTX_set_max_proto_version(ctx, v))) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (p != WIRE_TLS13 && !SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0")) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

/* ---- TDS (MS-TDS 2.2.6.5 PRELOGIN) ---------------------------------------------------- */

#define TDS_PRELOGIN 0x12
#define TDS_REPLY 0x04
#define TDS_HEADER 8
#define TDS_MAX_PACKET 32768

struct conn {
    int fd;
    bool tds;
    long long deadline;
    unsigned char packet_id;
    /* The hand-built ClientHello's answer through TDS (raw_recv): the packet payload read and
     * not yet taken (malloc'd; conn_release). */
    unsigned char *pending;
    size_t pending_len, pending_off;
};

static int send_all(struct conn *c, const unsigned char *buf, size_t len)
{
    while (len) {
        ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (w > 0) {
            buf += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(c->fd, POLLOUT, c->deadline);
            if (r <= 0)
                return r ? r : -ETIMEDOUT;
            continue;
        }
        return -errno;
    }
    return 0;
}

/* Reads up to `size` bytes (at least one): >0 bytes, 0 the peer closed, -ETIMEDOUT, -errno. */
static ssize_t recv_some(struct conn *c, unsigned char *buf, size_t size)
{
    for (;;) {
        ssize_t r = recv(c->fd, buf, size, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int w = wait_fd(c->fd, POLLIN, c->deadline);
        if (w <= 0)
            return w ? w : -ETIMEDOUT;
    }
}

/* Exactly `len` bytes: 0, -EPIPE when the peer closed first, -ETIMEDOUT, -errno. */
static int recv_exact(struct conn *c, unsigned char *buf, size_t len)
{
    while (len) {
        ssize_t r = recv_some(c, buf, len);
        if (r == 0)
            return -EPIPE;
        if (r < 0)
            return (int)r;
        buf += r;
        len -= (size_t)r;
    }
    return 0;
}

/* Sends `payload` as TDS packets of `type` (EOM on the last). */
static int tds_send(struct conn *c, unsigned char type, const unsigned char *payload, size_t len)
{
    unsigned char pkt[4096];
    do {
        size_t chunk = len > sizeof(pkt) - TDS_HEADER ? sizeof(pkt) - TDS_HEADER : len;
        size_t total = chunk + TDS_HEADER;
        pkt[0] = type;
        pkt[1] = chunk == len ? 0x01 : 0x00; /* status: end of message */
        pkt[2] = (unsigned char)(total >> 8);
        pkt[3] = (unsigned char)total;
        pkt[4] = pkt[5] = 0;     /* SPID */
        pkt[6] = ++c->packet_id; /* PacketID */
        pkt[7] = 0;              /* Window */
        memcpy(pkt + TDS_HEADER, payload, chunk);
        int rc = send_all(c, pkt, total);
        if (rc)
            return rc;
        payload += chunk;
        len -= chunk;
    } while (len);
    return 0;
}

/* Reads one TDS packet: its type and payload (malloc'd). -EPROTO for a malformed header. */
static int tds_recv(struct conn *c, unsigned char *type, unsigned char **payload, size_t *len)
{
    unsigned char h[TDS_HEADER];
    int rc = recv_exact(c, h, sizeof(h));
    if (rc)
        return rc;
    size_t total = ((size_t)h[2] << 8) | h[3];
    if (total < TDS_HEADER || total > TDS_MAX_PACKET || (h[0] != TDS_PRELOGIN && h[0] != TDS_REPLY))
        return -EPROTO;
    *type = h[0];
    *len = total - TDS_HEADER;
    *payload = malloc(*len ? *len : 1);
    if (!*payload)
        return -ENOMEM;
    if ((rc = recv_exact(c, *payload, *len))) {
        free(*payload);
        *payload = NULL;
    }
    return rc;
}

/*
 * The PRELOGIN exchange: VERSION, ENCRYPTION (ON), INSTOPT, THREADID, MARS, then the server's
 * answer. Returns 0 when the server will do TLS, -EPROTO (not a TDS answer) or -ENOTSUP (the
 * server says ENCRYPT_NOT_SUP) with the reason in err, or a transport error.
 */
static int tds_prelogin(struct conn *c, char *err, size_t errsize)
{
    static const unsigned char req[] = {
        /* option table: token, offset (BE16), length (BE16) */
        0x00, 0x00, 26, 0x00, 6, /* VERSION */
        0x01, 0x00, 32, 0x00, 1, /* ENCRYPTION */
        0x02, 0x00, 33, 0x00, 1, /* INSTOPT */
        0x03, 0x00, 34, 0x00, 4, /* THREADID */
        0x04, 0x00, 38, 0x00, 1, /* MARS */
        0xff,                    /* TERMINATOR */
        /* data */
        0x0f, 0x00, 0x07, 0xd0, 0x00, 0x00, /* version 15.0.2000, sub-build 0 */
        0x01,                               /* ENCRYPT_ON */
        0x00,                               /* default instance */
        0x00, 0x00, 0x00, 0x00,             /* thread id */
        0x00,                               /* MARS off */
    };
    int rc = tds_send(c, TDS_PRELOGIN, req, sizeof(req));
    if (rc)
        return rc;
    unsigned char type, *p = NULL;
    size_t len = 0;
    if ((rc = tds_recv(c, &type, &p, &len))) {
        if (rc == -EPROTO)
            snprintf(err, errsize, "no TDS PRELOGIN answer (not SQL Server?)");
        return rc;
    }
    int encryption = -1;
    for (size_t i = 0; i < len && p[i] != 0xff; i += 5) {
        if (i + 5 > len)
            break;
        size_t off = ((size_t)p[i + 1] << 8) | p[i + 2], olen = ((size_t)p[i + 3] << 8) | p[i + 4];
        if (p[i] == 0x01 && olen >= 1 && off < len)
            encryption = p[off];
    }
    free(p);
    if (type != TDS_REPLY || encryption < 0) {
        snprintf(err, errsize, "TDS PRELOGIN answer without ENCRYPTION option");
        return -EPROTO;
    }
    if (encryption == 0x02) {
        snprintf(err, errsize, "SQL Server answered ENCRYPT_NOT_SUP: it offers no TLS");
        return -ENOTSUP;
    }
    return 0;
}

/* Sends what OpenSSL wrote to `wbio`, wrapped in TDS during a TDS handshake. */
static int send_tls(struct conn *c, BIO *wbio)
{
    unsigned char buf[16384];
    int n;
    while ((n = BIO_read(wbio, buf, sizeof(buf))) > 0) {
        int rc = c->tds ? tds_send(c, TDS_PRELOGIN, buf, (size_t)n) : send_all(c, buf, (size_t)n);
        if (rc)
            return rc;
    }
    return 0;
}

/* Reads the peer's next bytes into `rbio` (a TDS packet's payload during a TDS handshake):
 * 0, -EPIPE the peer closed, -ETIMEDOUT, -EPROTO, -errno. */
static int recv_tls(struct conn *c, BIO *rbio)
{
    if (c->tds) {
        unsigned char type, *p;
        size_t len;
        int rc = tds_recv(c, &type, &p, &len);
        if (rc)
            return rc;
        if (len)
            BIO_write(rbio, p, (int)len);
        free(p);
        return 0;
    }
    unsigned char buf[16384];
    ssize_t r = recv_some(c, buf, sizeof(buf));
    if (r == 0)
        return -EPIPE;
    if (r < 0)
        return (int)r;
    BIO_write(rbio, buf, (int)r);
    return 0;
}

/* The hand-built ClientHello's bytes, as they are or in TDS packets (as send_tls does). */
static int raw_send(struct conn *c, const unsigned char *buf, size_t len)
{
    return c->tds ? tds_send(c, TDS_PRELOGIN, buf, len) : send_all(c, buf, len);
}

/* Exactly `len` bytes of the answer, taken from the socket or from the payloads of the TDS
 * packets that carry it: 0, -EPIPE, -ETIMEDOUT, -EPROTO (not a TDS packet), -errno. */
static int raw_recv(struct conn *c, unsigned char *buf, size_t len)
{
    if (!c->tds)
        return recv_exact(c, buf, len);
    while (len) {
        if (c->pending_off == c->pending_len) {
            unsigned char type;
            free(c->pending);
            c->pending = NULL;
            c->pending_len = c->pending_off = 0;
            int rc = tds_recv(c, &type, &c->pending, &c->pending_len);
            if (rc) {
                c->pending_len = 0;
                return rc;
            }
            continue;
        }
        size_t take = c->pending_len - c->pending_off;
        take = take < len ? take : len;
        memcpy(buf, c->pending + c->pending_off, take);
        c->pending_off += take;
        buf += take;
        len -= take;
    }
    return 0;
}

static void conn_release(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->pending);
    c->pending = NULL;
}

/* ---- one job -------------------------------------------------------------------------- */

static int tcp_connect(const char *address, int port, long long deadline, char *err, size_t errsize)
{
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(address, portstr, &hints, &res);
    if (g) {
        snprintf(err, errsize, "resolve %s: %s", address, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int fd = -1, rc = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline);
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (w > 0 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) && !soerr)
                break;
            rc = w == 0 ? -ETIMEDOUT : w < 0 ? w : -soerr;
        } else {
            rc = -errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errsize, "connect %s:%d: %s", address, port,
                 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
    return fd < 0 ? rc : fd;
}

static void job_set(struct probe_job *j, enum wire_result r, const char *fmt, const char *detail)
{
    char text[2 * PROBE_ERROR_SIZE];
    j->result = r;
    snprintf(text, sizeof(text), fmt, detail);
    snprintf(j->error, sizeof(j->error), "%.*s", (int)sizeof(j->error) - 1, text);
}

/* ---- the hand-built ClientHello (suites OpenSSL 3 cannot offer) ----------------------- */

/*
 * Debian's OpenSSL 3 offers no RC4, 3DES, DES or export suite (built without weak SSL ciphers;
 * the legacy provider below does not bring them back to libssl), so a server that accepts
 * a legacy protocol only with such a suite answers OpenSSL's ClientHello with a handshake_failure
 * alert, and "refused" would claim "disabled" when the prober just could not speak its suites.
 * After that alert the probe sends this ClientHello, built byte by byte (no TLS library), for the
 * same protocol: a ServerHello of that version is "accepted", an alert (or another version) is
 * "refused", anything else is "untested". It is never finished: only the ServerHello is read.
 */
static const struct {
    unsigned short id;
    const char *name;
} raw_suites[] = {
    {0x0005, "TLS_RSA_WITH_RC4_128_SHA"},
    {0x0004, "TLS_RSA_WITH_RC4_128_MD5"},
    {0xc011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"},
    {0xc007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"},
    {0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"},
    {0xc012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"},
    {0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"},
    {0x0009, "TLS_RSA_WITH_DES_CBC_SHA"},
    {0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"},
    {0x00ff, NULL}, /* TLS_EMPTY_RENEGOTIATION_INFO_SCSV */
};
#define RAW_NSUITES (sizeof(raw_suites) / sizeof(raw_suites[0]))

static unsigned raw_version(enum wire_proto p)
{
    return p == WIRE_SSL3 ? 0x0300 : p == WIRE_TLS10 ? 0x0301 : p == WIRE_TLS11 ? 0x0302 : 0x0303;
}

static void put16(unsigned char *b, size_t v)
{
    b[0] = (unsigned char)(v >> 8);
    b[1] = (unsigned char)v;
}

/* The record holding the ClientHello; returns its length (out has 512 bytes). */
static size_t raw_client_hello(enum wire_proto p, const char *sni, unsigned char *out)
{
    unsigned char *h = out + 9; /* record header 5, handshake header 4 */
    size_t n = 0;
    put16(h + n, raw_version(p));
    n += 2;
    if (RAND_bytes(h + n, 32) != 1)
        memset(h + n, 0x5a, 32);
    n += 32;
    h[n++] = 0; /* no session id */
    put16(h + n, RAW_NSUITES * 2);
    n += 2;
    for (size_t i = 0; i < RAW_NSUITES; i++, n += 2)
        put16(h + n, raw_suites[i].id);
    h[n++] = 1; /* compression methods: null */
    h[n++] = 0;
    if (p != WIRE_SSL3) {
        size_t ext = n;
        n += 2;
        size_t sl = sni ? strlen(sni) : 0;
        if (sl && sl < 256) {
            put16(h + n, 0x0000); /* server_name */
            put16(h + n + 2, sl + 5);
            put16(h + n + 4, sl + 3);
            h[n + 6] = 0; /* host_name */
            put16(h + n + 7, sl);
            memcpy(h + n + 9, sni, sl);
            n += 9 + sl;
        }
        static const unsigned char ecc[] = {
            0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x18, /* P-256, P-384 */
            0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,                         /* uncompressed points */
        };
        memcpy(h + n, ecc, sizeof(ecc));
        n += sizeof(ecc);
        put16(h + ext, n - ext - 2);
    }
    out[5] = 1; /* client_hello */
    out[6] = 0;
    put16(out + 7, n);
    out[0] = 0x16; /* handshake */
    put16(out + 1, p == WIRE_SSL3 ? 0x0300 : 0x0301);
    put16(out + 3, n + 4);
    return n + 9;
}

static const char *raw_suite_name(unsigned id)
{
    for (size_t i = 0; i < RAW_NSUITES; i++)
        if (raw_suites[i].id == id && raw_suites[i].name)
            return raw_suites[i].name;
    return "a suite it was not offered";
}

/* Sends the hand-built ClientHello on a connected socket (after PRELOGIN on a TDS port) and
 * judges the first record back. */
static void raw_handshake(struct probe_job *j, struct conn *c)
{
    unsigned char hello[512], rec[5], body[512];
    size_t len = raw_client_hello(j->proto, j->sni, hello);
    char why[PROBE_ERROR_SIZE];
    int rc = raw_send(c, hello, len);
    if (!rc)
        rc = raw_recv(c, rec, sizeof(rec));
    size_t rlen = rc ? 0 : ((size_t)rec[3] << 8) | rec[4];
    if (!rc && rec[0] == 0x15 && rlen == 2 && !(rc = raw_recv(c, body, 2))) {
        snprintf(why, sizeof(why),
                 "alert %u to OpenSSL's ClientHello and alert %u to a hand-built one offering "
                 "RC4, 3DES and DES suites",
                 40u, body[1]);
        job_set(j, WIRE_REFUSED, "%s", why);
        return;
    }
    if (!rc && rec[0] == 0x16 && rlen >= 40) {
        size_t take = rlen < sizeof(body) ? rlen : sizeof(body);
        rc = raw_recv(c, body, take);
        unsigned version = ((unsigned)body[4] << 8) | body[5];
        size_t sid = body[38];
        if (!rc && body[0] == 2 && 39 + sid + 2 <= take) {
            unsigned suite = ((unsigned)body[39 + sid] << 8) | body[40 + sid];
            if (version == raw_version(j->proto)) {
                snprintf(why, sizeof(why),
                         "only with a suite OpenSSL cannot offer: %s (0x%04x), to a hand-built "
                         "ClientHello",
                         raw_suite_name(suite), suite);
                job_set(j, WIRE_ACCEPTED, "%s", why);
            } else {
                snprintf(why, sizeof(why),
                         "server chose version 0x%04x to a hand-built ClientHello offering RC4 "
                         "and 3DES",
                         version);
                job_set(j, WIRE_REFUSED, "%s", why);
            }
            return;
        }
    }
    snprintf(why, sizeof(why),
             "handshake_failure alert to OpenSSL's ClientHello, and %s to a hand-built one "
             "offering RC4 and 3DES (OpenSSL 3 cannot speak RC4)",
             rc == -ETIMEDOUT                    ? "no answer in time"
             : rc == -EPIPE || rc == -ECONNRESET ? "the connection closed"
                                                 : "neither a ServerHello nor an alert");
    job_set(j, WIRE_UNTESTED, "could not test: %s", why);
}

/* The handshake over a connected socket; fills j->result and j->error. Returns true when the
 * server answered with a handshake_failure alert (no suite in common, maybe RC4-only). */
static bool handshake(struct probe_job *j, struct conn *c)
{
    bool no_suite = false;
    SSL_CTX *ctx = capped_ctx(j->proto, false);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    char why[PROBE_ERROR_SIZE];
    if (!ssl || !rbio || !wbio) {
        ssl_error_text(why, sizeof(why), "cannot set up the handshake");
        job_set(j, WIRE_UNTESTED, "could not test: %s", why);
        BIO_free(rbio);
        BIO_free(wbio);
        goto out;
    }
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    if (j->sni && *j->sni)
        SSL_set_tlsext_host_name(ssl, j->sni);
    for (;;) {
        int r = SSL_do_handshake(ssl);
        int sent = send_tls(c, wbio);
        if (r == 1) {
            if (SSL_version(ssl) == ossl_version(j->proto))
                job_set(j, WIRE_ACCEPTED, "%s", "");
            else
                job_set(j, WIRE_REFUSED, "server chose %s", SSL_get_version(ssl));
            break;
        }
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            int rc = sent ? sent : recv_tls(c, rbio);
            if (!rc)
                continue;
            if (rc == -ETIMEDOUT)
                job_set(j, WIRE_UNTESTED, "could not test: %s", "timed out during the handshake");
            else if (rc == -EPIPE || rc == -ECONNRESET)
                job_set(j, WIRE_REFUSED, "%s",
                        rc == -EPIPE ? "the server closed the connection after the ClientHello"
                                     : "the server reset the connection after the ClientHello");
            else if (rc == -EPROTO)
                job_set(j, WIRE_UNTESTED, "could not test: %s", "malformed TDS packet");
            else
                job_set(j, WIRE_UNTESTED, "could not test: %s", strerror(-rc));
            break;
        }
        /* An alert from the server, or a ServerHello of another version. */
        no_suite = ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE;
        if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNSUPPORTED_PROTOCOL ||
            ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_WRONG_SSL_VERSION) {
            ERR_clear_error();
            snprintf(why, sizeof(why), "the server answered with another protocol version");
        } else {
            ssl_error_text(why, sizeof(why), "handshake failed");
        }
        job_set(j, WIRE_REFUSED, "%s", why);
        break;
    }
out:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return no_suite && j->result == WIRE_REFUSED;
}

/* Connects for job `j` (and exchanges PRELOGIN on a TDS port): 0, or -1 with the job set to
 * untested and why (`what` names the attempt). */
static int job_connect(struct probe_job *j, struct conn *c, long long cdeadline, const char *what)
{
    char err[PROBE_ERROR_SIZE];
    c->fd = tcp_connect(j->address, j->port.port, cdeadline < c->deadline ? cdeadline : c->deadline,
                        err, sizeof(err));
    if (c->fd < 0) {
        job_set(j, WIRE_UNTESTED, what, err);
        return -1;
    }
    if (!c->tds)
        return 0;
    err[0] = '\0';
    int rc = tds_prelogin(c, err, sizeof(err));
    if (!rc)
        return 0;
    if (!err[0])
        snprintf(err, sizeof(err), "TDS PRELOGIN: %s",
                 rc == -ETIMEDOUT ? "timed out"
                 : rc == -EPIPE   ? "the server closed the connection"
                                  : strerror(-rc));
    job_set(j, WIRE_UNTESTED, what, err);
    conn_release(c);
    return -1;
}

static void run_job(struct probe_job *j, const struct probe_opts *o)
{
    j->at = utc_now();
    long long start = mono_ms();
    struct conn c = {.fd = -1, .tds = j->port.tds, .deadline = start + o->timeout_ms};
    if (job_connect(j, &c, start + o->connect_timeout_ms, "could not test: %s"))
        return;
    bool no_suite = handshake(j, &c);
    conn_release(&c);
    /* A legacy protocol refused for want of a common suite: ask again with the suites OpenSSL
     * cannot offer (above), on a new connection, through TDS too on a SQL Server port. */
    if (!no_suite || !WIRE_PROTO_LEGACY(j->proto))
        return;
    struct conn c2 = {.fd = -1, .tds = j->port.tds, .deadline = c.deadline};
    if (job_connect(j, &c2, c.deadline, "could not test (second ClientHello): %s"))
        return;
    raw_handshake(j, &c2);
    conn_release(&c2);
}

struct pool {
    struct probe_job *jobs;
    size_t n, next;
    const struct probe_selftest *st;
    const struct probe_opts *o;
    pthread_mutex_t lock;
};

static void *worker(void *arg)
{
    struct pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t i = p->next < p->n ? p->next++ : p->n;
        pthread_mutex_unlock(&p->lock);
        if (i >= p->n)
            return NULL;
        struct probe_job *j = &p->jobs[i];
        if (!p->st->can[j->proto]) {
            j->at = utc_now();
            job_set(j, WIRE_UNTESTED, "could not test: %s", p->st->why[j->proto]);
            continue;
        }
        run_job(j, p->o);
    }
}

int probe_run(struct probe_job *jobs, size_t n, const struct probe_selftest *st,
              const struct probe_opts *o)
{
    struct pool p = {.jobs = jobs, .n = n, .st = st, .o = o};
    pthread_mutex_init(&p.lock, NULL);
    size_t nthreads = o->concurrency > 0 ? (size_t)o->concurrency : 1;
    if (nthreads > n)
        nthreads = n;
    pthread_t *threads = calloc(nthreads ? nthreads : 1, sizeof(*threads));
    if (!threads) {
        pthread_mutex_destroy(&p.lock);
        return -ENOMEM;
    }
    size_t started = 0;
    for (; started < nthreads; started++)
        if (pthread_create(&threads[started], NULL, worker, &p))
            break;
    if (!started && n)
        worker(&p); /* no thread could start: do it here */
    for (size_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    pthread_mutex_destroy(&p.lock);
    return 0;
}

/* ---- self-test ------------------------------------------------------------------------ */

/* A throwaway P-256 key and self-signed certificate for the built-in server. */
static int selftest_identity(EVP_PKEY **key, X509 **cert)
{
    *key = EVP_EC_gen("P-256");
    *cert = X509_new();
    if (!*key || !*cert)
        return -ENOMEM;
    X509_set_version(*cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(*cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(*cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(*cert), 3600);
    X509_NAME *name = X509_get_subject_name(*cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"tlsgate-probe-selftest", -1, -1, 0);
    X509_set_issuer_name(*cert, name);
    X509_set_pubkey(*cert, *key);
    return X509_sign(*cert, *key, EVP_sha256()) > 0 ? 0 : -EINVAL;
}

struct selftest_server {
    int fd;
    SSL_CTX *ctx;
    int accepts; /* connections to serve */
};

static void *selftest_serve(void *arg)
{
    struct selftest_server *sv = arg;
    for (int i = 0; i < sv->accepts; i++) {
        int c = accept(sv->fd, NULL, NULL);
        if (c < 0)
            break;
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        SSL *ssl = SSL_new(sv->ctx);
        if (ssl) {
            SSL_set_fd(ssl, c);
            if (SSL_accept(ssl) == 1)
                SSL_shutdown(ssl);
            SSL_free(ssl);
        }
        ERR_clear_error();
        close(c);
    }
    return NULL;
}

/* OpenSSL 3 keeps RC4, IDEA, SEED and single DES in its legacy provider: a server that offers
 * TLS 1.0 only with such a suite would otherwise look like it refused TLS 1.0. Loading legacy
 * means loading default by name too. Where legacy.so is absent, those suites stay unoffered. */
static void load_legacy_provider(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    OSSL_PROVIDER_load(NULL, "default");
    OSSL_PROVIDER_load(NULL, "legacy");
    ERR_clear_error();
}

int probe_selftest(struct probe_selftest *st, unsigned deny, char *err, size_t errsize)
{
    memset(st, 0, sizeof(*st));
    load_legacy_provider();
    snprintf(st->why[WIRE_SSL2], PROBE_ERROR_SIZE, "SSL 2.0 is not offered by this prober");
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    struct selftest_server sv = {.fd = -1};
    int rc = selftest_identity(&key, &cert);
    if (rc) {
        snprintf(err, errsize, "probe self-test: cannot make its certificate");
        goto out;
    }
    sv.ctx = SSL_CTX_new(TLS_server_method());
    if (!sv.ctx) {
        rc = -ENOMEM;
        snprintf(err, errsize, "probe self-test: cannot create its TLS server");
        goto out;
    }
    SSL_CTX_set_security_level(sv.ctx, 0);
    SSL_CTX_set_min_proto_version(sv.ctx, 0); /* the lowest this OpenSSL has */
    SSL_CTX_set_max_proto_version(sv.ctx, 0);
    SSL_CTX_set_cipher_list(sv.ctx, "ALL:@SECLEVEL=0");
    SSL_CTX_use_certificate(sv.ctx, cert);
    SSL_CTX_use_PrivateKey(sv.ctx, key);
    static const struct {
        enum wire_proto p;
        unsigned long op;
    } no[] = {{WIRE_SSL3, SSL_OP_NO_SSLv3},
              {WIRE_TLS10, SSL_OP_NO_TLSv1},
              {WIRE_TLS11, SSL_OP_NO_TLSv1_1},
              {WIRE_TLS12, SSL_OP_NO_TLSv1_2},
              {WIRE_TLS13, SSL_OP_NO_TLSv1_3}};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (deny & (1u << no[i].p))
            SSL_CTX_set_options(sv.ctx, no[i].op);

    sv.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    if (sv.fd < 0 || bind(sv.fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(sv.fd, 8) ||
        getsockname(sv.fd, (struct sockaddr *)&sa, &salen)) {
        rc = -errno;
        snprintf(err, errsize, "probe self-test: cannot listen on 127.0.0.1: %s", strerror(errno));
        goto out;
    }
    enum wire_proto order[] = {WIRE_SSL3, WIRE_TLS10, WIRE_TLS11, WIRE_TLS12, WIRE_TLS13};
    struct probe_job jobs[5];
    size_t njobs = 0;
    for (size_t i = 0; i < 5; i++) {
        SSL_CTX *probe = capped_ctx(order[i], false);
        if (!probe) {
            ssl_error_text(st->why[order[i]], PROBE_ERROR_SIZE, "not supported");
            snprintf(st->why[order[i]] + strlen(st->why[order[i]]),
                     PROBE_ERROR_SIZE - strlen(st->why[order[i]]),
                     " (this OpenSSL cannot offer %s)", wire_proto_label(order[i]));
            continue;
        }
        SSL_CTX_free(probe);
        jobs[njobs++] = (struct probe_job){
            .address = "127.0.0.1", .port = {ntohs(sa.sin_port), false}, .proto = order[i]};
    }
    sv.accepts = (int)njobs;
    pthread_t th;
    if (pthread_create(&th, NULL, selftest_serve, &sv)) {
        rc = -EAGAIN;
        snprintf(err, errsize, "probe self-test: cannot start its server thread");
        goto out;
    }
    struct probe_opts o = {.connect_timeout_ms = 5000, .timeout_ms = 5000, .concurrency = 1};
    for (size_t i = 0; i < njobs; i++) {
        run_job(&jobs[i], &o);
        enum wire_proto p = jobs[i].proto;
        st->can[p] = jobs[i].result == WIRE_ACCEPTED;
        if (!st->can[p])
            snprintf(st->why[p], PROBE_ERROR_SIZE,
                     "the self-test could not complete a %s handshake with its own server (%s)",
                     wire_proto_label(p), jobs[i].error);
    }
    shutdown(sv.fd, SHUT_RDWR);
    pthread_join(th, NULL);
    rc = 0;
out:
    if (sv.fd >= 0)
        close(sv.fd);
    SSL_CTX_free(sv.ctx);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

int probe_parse_protocols(const char *list, unsigned *mask, char *bad, size_t badsize)
{
    *mask = 0;
    const char *p = list;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char word[16];
        enum wire_proto proto;
        snprintf(word, sizeof(word), "%.*s", (int)(len < 15 ? len : 15), p);
        if (len == 0 || len > 15 || wire_proto_parse(word, &proto)) {
            snprintf(bad, badsize, "%.*s", (int)(len > 64 ? 64 : len), p);
            return -EINVAL;
        }
        *mask |= 1u << proto;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/*
 * enroll.c — the collector's enrollment and renewal client (enroll.h): its key and certificate
 * request (GnuTLS), a minimal HTTPS/1.1 POST over a plain socket, the protocol's answers, and the
 * files (atomic writes, the key+certificate pair installed so that a crash never leaves a pair
 * that does not match).
 *
 * Why not libcurl: the Windows build carries GnuTLS for its server anyway and no libcurl, and
 * the client needs one request shape only. Every answer is hostile until parsed: the cap
 * (ENROLL_REPLY_MAX) counts the status line and headers too, one deadline covers the whole
 * exchange (a server that trickles a byte at a time cannot hold the collector), and a body
 * must be exactly its Content-Length (no chunked encoding, nothing short).
 */
#include "enroll.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "platform.h"

#ifdef _WIN32
#include <io.h>
#include <ws2tcpip.h>
typedef SOCKET sock_t;
#define SOCK_BAD INVALID_SOCKET
#define sock_close closesocket
#define sock_poll WSAPoll
static int sock_error(void) { return WSAGetLastError(); }
static bool sock_would_block(int e) { return e == WSAEWOULDBLOCK || e == WSAEINPROGRESS; }
#else
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
typedef int sock_t;
#define SOCK_BAD (-1)
#define sock_close close
#define sock_poll poll
static int sock_error(void) { return errno; }
static bool sock_would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINPROGRESS; }
#endif

#define ERR(...) snprintf(err, errsize, __VA_ARGS__)

/* GnuTLS priority string: TLS 1.2 and 1.3 only, as the collector's server. */
#define ENROLL_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* ---- key and request ---- */

int enroll_key_generate(char **key_pem, char *err, size_t errsize)
{
    gnutls_x509_privkey_t key;
    int rc = gnutls_x509_privkey_init(&key);
    if (rc < 0) {
        ERR("cannot make a key: %s", gnutls_strerror(rc));
        return -ENOMEM;
    }
    rc = gnutls_x509_privkey_generate2(
        key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0, NULL, 0);
    gnutls_datum_t d = {NULL, 0};
    if (rc == 0)
        rc = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN,
                                               &d);
    gnutls_x509_privkey_deinit(key);
    if (rc < 0) {
        ERR("cannot make an ECDSA P-256 key: %s", gnutls_strerror(rc));
        return -EIO;
    }
    *key_pem = malloc(d.size + 1);
    if (*key_pem) {
        memcpy(*key_pem, d.data, d.size);
        (*key_pem)[d.size] = '\0';
    }
    platform_secure_zero(d.data, d.size);
    gnutls_free(d.data);
    return *key_pem ? 0 : -ENOMEM;
}

static int import_key(const char *key_pem, gnutls_x509_privkey_t *out)
{
    gnutls_datum_t d = {(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
    if (gnutls_x509_privkey_init(out) < 0)
        return -ENOMEM;
    if (gnutls_x509_privkey_import2(*out, &d, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN) < 0) {
        gnutls_x509_privkey_deinit(*out);
        *out = NULL;
        return -EINVAL;
    }
    return 0;
}

int enroll_csr_make(const char *key_pem, const char *name, char **csr_pem, char *err,
                    size_t errsize)
{
    gnutls_x509_privkey_t key;
    if (import_key(key_pem, &key) < 0) {
        ERR("the new key is not an unencrypted PEM private key");
        return -EINVAL;
    }
    gnutls_x509_crq_t crq;
    int rc = gnutls_x509_crq_init(&crq);
    if (rc < 0) {
        gnutls_x509_privkey_deinit(key);
        ERR("cannot make a certificate request: %s", gnutls_strerror(rc));
        return -ENOMEM;
    }
    gnutls_datum_t d = {NULL, 0};
    if ((rc = gnutls_x509_crq_set_version(crq, 1)) >= 0 &&
        (rc = gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, name,
                                            (unsigned)strlen(name))) >= 0 &&
        (rc = gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_DNSNAME, name,
                                                   (unsigned)strlen(name), GNUTLS_FSAN_SET)) >= 0 &&
        (rc = gnutls_x509_crq_set_key(crq, key)) >= 0 &&
        (rc = gnutls_x509_crq_sign2(crq, key, GNUTLS_DIG_SHA256, 0)) >= 0)
        rc = gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &d);
    gnutls_x509_crq_deinit(crq);
    gnutls_x509_privkey_deinit(key);
    if (rc < 0) {
        ERR("cannot make a certificate request for %s: %s", name, gnutls_strerror(rc));
        return -EINVAL;
    }
    *csr_pem = malloc(d.size + 1);
    if (*csr_pem) {
        memcpy(*csr_pem, d.data, d.size);
        (*csr_pem)[d.size] = '\0';
        /* GnuTLS writes the old "NEW CERTIFICATE REQUEST" label; the protocol (RFC 7468) says
         * "CERTIFICATE REQUEST". */
        char *p;
        while ((p = strstr(*csr_pem, "NEW CERTIFICATE REQUEST")))
            memmove(p, p + 4, strlen(p + 4) + 1);
    }
    gnutls_free(d.data);
    return *csr_pem ? 0 : -ENOMEM;
}

/* ---- URL ---- */

int enroll_url_parse(const char *url, struct enroll_url *u, char *err, size_t errsize)
{
    memset(u, 0, sizeof(*u));
    if (strncasecmp(url, "https://", 8) != 0) {
        ERR("%s: the enrollment URL must start with https://", url);
        return -EINVAL;
    }
    const char *p = url + 8, *host = p, *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (!host_end) {
            ERR("%s: an IPv6 address needs its closing ]", url);
            return -EINVAL;
        }
        p = host_end + 1;
    } else {
        while (*p && *p != ':' && *p != '/')
            p++;
        host_end = p;
        for (const char *q = host; q < host_end; q++)
            if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                  (*q >= '0' && *q <= '9') || *q == '-' || *q == '.')) {
                ERR("%s: the host name may hold letters, digits, '-' and '.' only", url);
                return -EINVAL;
            }
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof(u->host)) {
        ERR("%s: no host name", url);
        return -EINVAL;
    }
    memcpy(u->host, host, hlen);
    snprintf(u->port, sizeof(u->port), "443");
    if (*p == ':') {
        p++;
        char *end;
        errno = 0;
        long port = strtol(p, &end, 10);
        if (errno || end == p || port < 1 || port > 65535 || (*end && *end != '/')) {
            ERR("%s: the port must be a number from 1 to 65535, and nothing may follow it", url);
            return -EINVAL;
        }
        snprintf(u->port, sizeof(u->port), "%ld", port);
        p = end;
    }
    if (*p && strcmp(p, "/") != 0) {
        ERR("%s: give https://HOST:PORT only (no path: the collector adds /v1/enroll)", url);
        return -EINVAL;
    }
    return 0;
}

/* ---- the connection: a socket with one deadline ---- */

struct conn {
    sock_t fd;
    gnutls_session_t session;
    uint64_t deadline_ms; /* uv_hrtime in ms */
    bool timed_out;
    int sys_err;
};

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* Waits until fd is ready for `events` or the deadline: 1 ready, 0 deadline, -1 error. */
static int conn_wait(struct conn *c, short events)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= c->deadline_ms) {
            c->timed_out = true;
            return 0;
        }
        uint64_t left = c->deadline_ms - now;
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int n = sock_poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 1;
        if (n < 0) {
            int e = sock_error();
#ifndef _WIN32
            if (e == EINTR)
                continue;
#endif
            c->sys_err = e;
            return -1;
        }
    }
}

/* One recv or send with the connection's deadline: waits while the socket would block. */
static ssize_t conn_io(struct conn *c, void *buf, size_t n, bool out)
{
    for (;;) {
#ifdef _WIN32
        int len = n > INT32_MAX ? INT32_MAX : (int)n;
        int r = out ? send(c->fd, buf, len, 0) : recv(c->fd, buf, len, 0);
#else
        ssize_t r = out ? send(c->fd, buf, n, MSG_NOSIGNAL) : recv(c->fd, buf, n, 0);
#endif
        if (r >= 0)
            return r;
        int e = sock_error();
#ifndef _WIN32
        if (e == EINTR)
            continue;
#endif
        if (!sock_would_block(e)) {
            c->sys_err = e;
            gnutls_transport_set_errno(c->session, EIO);
            return -1;
        }
        if (conn_wait(c, out ? POLLOUT : POLLIN) <= 0) {
            gnutls_transport_set_errno(c->session, c->timed_out ? ETIMEDOUT : EIO);
            return -1;
        }
    }
}

static ssize_t conn_pull(gnutls_transport_ptr_t p, void *buf, size_t n)
{
    return conn_io(p, buf, n, false);
}

static ssize_t conn_push(gnutls_transport_ptr_t p, const void *buf, size_t n)
{
    return conn_io(p, (void *)buf, n, true);
}

/* GnuTLS asks whether data arrives within ms (TLS 1.3 post-handshake messages, timeouts). */
static int conn_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
    struct conn *c = p;
    uint64_t now = now_ms();
    if (now >= c->deadline_ms)
        return 0;
    uint64_t left = c->deadline_ms - now;
    if (ms != GNUTLS_INDEFINITE_TIMEOUT && ms < left)
        left = ms;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int n = sock_poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
    return n < 0 ? -1 : n;
}

static int set_nonblocking(sock_t fd)
{
#ifdef _WIN32
    u_long one = 1;
    return ioctlsocket(fd, FIONBIO, &one) == 0 ? 0 : -1;
#else
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0 ? 0 : -1;
#endif
}

static const char *sys_text(int e, char *buf, size_t size)
{
#ifdef _WIN32
    platform_win_message((DWORD)e, buf, size);
    if (!buf[0])
        snprintf(buf, size, "Winsock error %d", e);
#else
    snprintf(buf, size, "%s", strerror(e));
#endif
    return buf;
}

static int errno_of(int e)
{
#ifdef _WIN32
    return e == WSAECONNREFUSED  ? ECONNREFUSED
           : e == WSAETIMEDOUT   ? ETIMEDOUT
           : e == WSAENETUNREACH ? ENETUNREACH
                                 : EIO;
#else
    return e ? e : EIO;
#endif
}

/* Connects to u (every address the name has, in turn) before the deadline. */
static int conn_open(struct conn *c, const struct enroll_url *u, const char *url, char *err,
                     size_t errsize)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0) {
        ERR("%s: cannot resolve %s: %s", url, u->host, gai_strerror(rc));
        return -ENOENT;
    }
    int last = 0;
    c->fd = SOCK_BAD;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        sock_t fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd == SOCK_BAD) {
            last = sock_error();
            continue;
        }
#ifndef _WIN32
        fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
        if (set_nonblocking(fd) < 0) {
            last = sock_error();
            sock_close(fd);
            continue;
        }
        c->fd = fd;
        if (connect(fd, a->ai_addr, (socklen_t)a->ai_addrlen) == 0)
            break;
        int e = sock_error();
        if (sock_would_block(e)) {
            int w = conn_wait(c, POLLOUT);
            int so = 0;
            socklen_t len = sizeof(so);
            if (w > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, (char *)&so, &len) == 0 && so == 0)
                break;
            e = w == 0 ? 0 : so ? so : sock_error();
        }
        last = e;
        sock_close(fd);
        c->fd = SOCK_BAD;
        if (c->timed_out)
            break;
    }
    freeaddrinfo(res);
    if (c->fd != SOCK_BAD)
        return 0;
    if (c->timed_out) {
        ERR("%s: no connection within the deadline", url);
        return -ETIMEDOUT;
    }
    char text[256];
    ERR("%s: cannot connect: %s", url, sys_text(last, text, sizeof(text)));
    return -errno_of(last);
}

/* ---- the HTTP exchange ---- */

/* The value of header `name` in the header block [head, end), or NULL; *dup is set when the
 * header appears more than once with different values. */
static const char *find_header(const char *head, const char *end, const char *name, size_t *vlen,
                               bool *dup)
{
    const char *found = NULL;
    size_t flen = 0, nlen = strlen(name);
    *dup = false;
    for (const char *line = strstr(head, "\r\n"); line && line < end;) {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (!eol || eol > end)
            break;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
            line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (found && ((size_t)(ve - v) != flen || memcmp(found, v, flen) != 0))
                *dup = true;
            found = v;
            flen = (size_t)(ve - v);
        }
        line = eol;
    }
    *vlen = flen;
    return found;
}

static bool parse_digits(const char *s, size_t n, long long max, long long *out)
{
    long long v = 0;
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/*
 * Looks at what arrived so far: 1 complete (status, body set), 0 needs more, -EBADMSG. The
 * status line and headers end at the first empty line; the body is Content-Length bytes.
 */
static int parse_reply(struct enroll_http *h, char *buf, size_t len, bool eof, char *why,
                       size_t whysize)
{
    char *end = strstr(buf, "\r\n\r\n");
    if (!end) {
        if (eof) {
            snprintf(why, whysize, "the answer ended before its headers did (%zu bytes)", len);
            return -EBADMSG;
        }
        return 0;
    }
    int status = 0;
    if (strncmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' ||
        sscanf(buf + 9, "%3d", &status) != 1 || status < 100 || status > 599) {
        snprintf(why, whysize, "not an HTTP/1.x answer");
        return -EBADMSG;
    }
    size_t vlen;
    bool dup;
    const char *te = find_header(buf, end + 2, "Transfer-Encoding", &vlen, &dup);
    if (te) {
        snprintf(why, whysize,
                 "Transfer-Encoding is not supported (a Content-Length body is "
                 "expected)");
        return -EBADMSG;
    }
    const char *cl = find_header(buf, end + 2, "Content-Length", &vlen, &dup);
    long long clen = 0;
    if (!cl || dup || !parse_digits(cl, vlen, 999999999999LL, &clen)) {
        snprintf(why, whysize, cl ? "a bad or conflicting Content-Length" : "no Content-Length");
        return -EBADMSG;
    }
    h->retry_after = -1;
    const char *ra = find_header(buf, end + 2, "Retry-After", &vlen, &dup);
    long long rav;
    if (ra && !dup && parse_digits(ra, vlen, 86400, &rav))
        h->retry_after = (long)rav;
    size_t body_at = (size_t)(end + 4 - buf);
    if (body_at + (size_t)clen > h->max_bytes) {
        snprintf(why, whysize, "the body of %lld bytes is over the cap of %zu bytes", clen,
                 h->max_bytes);
        return -E2BIG;
    }
    if (len - body_at < (size_t)clen) {
        if (eof) {
            snprintf(why, whysize, "truncated: %zu of %lld body bytes arrived", len - body_at,
                     clen);
            return -EBADMSG;
        }
        return 0;
    }
    if (len - body_at > (size_t)clen) {
        snprintf(why, whysize, "%zu bytes after the body", len - body_at - (size_t)clen);
        return -EBADMSG;
    }
    h->status = status;
    h->reply = malloc((size_t)clen + 1);
    if (!h->reply)
        return -ENOMEM;
    memcpy(h->reply, buf + body_at, (size_t)clen);
    h->reply[clen] = '\0';
    h->reply_len = (size_t)clen;
    return 1;
}

void enroll_http_release(struct enroll_http *h)
{
    free(h->reply);
    h->reply = NULL;
    h->reply_len = 0;
}

#ifdef _WIN32
static void winsock_start(void)
{
    WSADATA wsa;
    WSAStartup(MAKEWORD(2, 2), &wsa);
}
#endif

int enroll_http_post(struct enroll_http *h, char *err, size_t errsize)
{
    struct enroll_url u;
    h->status = 0;
    h->reply = NULL;
    h->reply_len = 0;
    h->retry_after = -1;
    if (!h->max_bytes)
        h->max_bytes = ENROLL_REPLY_MAX;
    int rc = enroll_url_parse(h->url, &u, err, errsize);
    if (rc < 0)
        return rc;
#ifdef _WIN32
    winsock_start();
#endif
    struct conn c = {.fd = SOCK_BAD};
    c.deadline_ms = now_ms() + (uint64_t)(h->timeout_ms > 0 ? h->timeout_ms : ENROLL_TIMEOUT_MS);
    gnutls_certificate_credentials_t cred = NULL;
    char *buf = NULL;
    int ret = -EPROTO;

    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        ret = -ENOMEM;
        goto out;
    }
    gnutls_datum_t ca = {(unsigned char *)h->ca_pem, (unsigned)strlen(h->ca_pem)};
    if (gnutls_certificate_set_x509_trust_mem(cred, &ca, GNUTLS_X509_FMT_PEM) <= 0) {
        ERR("%s: the CA bundle holds no certificate", h->url);
        ret = -EINVAL;
        goto out;
    }
    if (h->cert_pem && h->key_pem) {
        gnutls_datum_t cd = {(unsigned char *)h->cert_pem, (unsigned)strlen(h->cert_pem)};
        gnutls_datum_t kd = {(unsigned char *)h->key_pem, (unsigned)strlen(h->key_pem)};
        rc = gnutls_certificate_set_x509_key_mem(cred, &cd, &kd, GNUTLS_X509_FMT_PEM);
        if (rc < 0) {
            ERR("%s: the client certificate and key are unusable: %s", h->url, gnutls_strerror(rc));
            ret = -EINVAL;
            goto out;
        }
    }
    rc = conn_open(&c, &u, h->url, err, errsize);
    if (rc < 0) {
        ret = rc;
        goto out;
    }
    if (gnutls_init(&c.session, GNUTLS_CLIENT) < 0) {
        ret = -ENOMEM;
        goto out;
    }
    gnutls_priority_set_direct(c.session, ENROLL_TLS_PRIORITIES, NULL);
    gnutls_credentials_set(c.session, GNUTLS_CRD_CERTIFICATE, cred);
    unsigned char ipbuf[16];
    bool is_ip = inet_pton(AF_INET, u.host, ipbuf) == 1 || inet_pton(AF_INET6, u.host, ipbuf) == 1;
    if (!is_ip)
        gnutls_server_name_set(c.session, GNUTLS_NAME_DNS, u.host, strlen(u.host));
    gnutls_session_set_verify_cert(c.session, u.host, 0);
    gnutls_transport_set_ptr(c.session, &c);
    gnutls_transport_set_push_function(c.session, conn_push);
    gnutls_transport_set_pull_function(c.session, conn_pull);
    gnutls_transport_set_pull_timeout_function(c.session, conn_pull_timeout);
    do {
        rc = gnutls_handshake(c.session);
    } while (rc < 0 && !gnutls_error_is_fatal(rc) && !c.timed_out);
    if (rc < 0) {
        if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
            unsigned status = gnutls_session_get_verify_cert_status(c.session);
            gnutls_datum_t why = {NULL, 0};
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0);
            const char *text = why.data ? (const char *)why.data : "?";
            if (status & GNUTLS_CERT_UNEXPECTED_OWNER)
                ERR("%s: the server's certificate is not for %s: %s", h->url, u.host, text);
            else
                ERR("%s: the server's certificate is not trusted by the CA bundle: %s", h->url,
                    text);
            gnutls_free(why.data);
            ret = -EACCES;
        } else if (c.timed_out) {
            ERR("%s: the TLS handshake did not finish within the deadline", h->url);
            ret = -ETIMEDOUT;
        } else {
            ERR("%s: TLS handshake failed: %s", h->url, gnutls_strerror(rc));
            ret = -EPROTO;
        }
        goto out;
    }

    char head[512];
    int hn = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nContent-Type: application/json\r\n"
                      "Accept: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n"
                      "User-Agent: tlsgate-collector\r\n\r\n",
                      h->path, strchr(u.host, ':') ? "[" : "", u.host,
                      strchr(u.host, ':') ? "]" : "", strcmp(u.port, "443") ? ":" : "",
                      strcmp(u.port, "443") ? u.port : "", h->body_len);
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        ERR("%s: the request path is too long", h->url);
        ret = -EINVAL;
        goto out;
    }
    const char *parts[2] = {head, h->body};
    size_t lens[2] = {(size_t)hn, h->body_len};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < lens[i]) {
            ssize_t w = gnutls_record_send(c.session, parts[i] + off, lens[i] - off);
            if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED)
                continue;
            if (w < 0) {
                ERR("%s: sending the request failed: %s", h->url,
                    c.timed_out ? "the deadline passed" : gnutls_strerror((int)w));
                ret = c.timed_out ? -ETIMEDOUT : -EPROTO;
                goto out;
            }
            off += (size_t)w;
        }
    }

    size_t cap = h->max_bytes, len = 0;
    buf = malloc(cap + 1);
    if (!buf) {
        ret = -ENOMEM;
        goto out;
    }
    buf[0] = '\0';
    char why[256] = "";
    for (;;) {
        bool eof = false;
        if (len == cap) {
            /* Full and still incomplete: whatever follows is over the cap. */
            ERR("%s: the answer is over the cap of %zu bytes", h->url, cap);
            ret = -E2BIG;
            goto out;
        }
        ssize_t r = gnutls_record_recv(c.session, buf + len, cap - len);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            continue;
        if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION)
            eof = true;
        else if (r < 0) {
            if (c.timed_out) {
                ERR("%s: no complete answer within the deadline (%zu bytes arrived)", h->url, len);
                ret = -ETIMEDOUT;
            } else {
                ERR("%s: reading the answer failed: %s", h->url, gnutls_strerror((int)r));
                ret = -EPROTO;
            }
            goto out;
        } else
            len += (size_t)r;
        buf[len] = '\0';
        if (memchr(buf, '\0', len)) {
            ERR("%s: the answer holds a NUL byte", h->url);
            ret = -EBADMSG;
            goto out;
        }
        rc = parse_reply(h, buf, len, eof, why, sizeof(why));
        if (rc == 1)
            break;
        if (rc < 0) {
            ERR("%s: a malformed answer: %s", h->url, why);
            ret = rc;
            goto out;
        }
    }
    gnutls_bye(c.session, GNUTLS_SHUT_WR);
    ret = 0;
out:
    free(buf);
    if (c.session)
        gnutls_deinit(c.session);
    if (c.fd != SOCK_BAD)
        sock_close(c.fd);
    if (cred)
        gnutls_certificate_free_credentials(cred);
    return ret;
}

/* ---- the protocol ---- */

void enroll_result_release(struct enroll_result *r)
{
    free(r->cert_pem);
    free(r->ca_pem);
    r->cert_pem = r->ca_pem = NULL;
}

/* The public key id of a key or certificate, to compare them. */
static int key_id_of_key(const char *key_pem, unsigned char *id, size_t *len)
{
    gnutls_x509_privkey_t key;
    if (import_key(key_pem, &key) < 0)
        return -EINVAL;
    int rc = gnutls_x509_privkey_get_key_id(key, 0, id, len);
    gnutls_x509_privkey_deinit(key);
    return rc < 0 ? -EINVAL : 0;
}

static int import_cert(const char *pem, gnutls_x509_crt_t *out)
{
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
    if (gnutls_x509_crt_init(out) < 0)
        return -ENOMEM;
    if (gnutls_x509_crt_import(*out, &d, GNUTLS_X509_FMT_PEM) < 0) {
        gnutls_x509_crt_deinit(*out);
        return -EINVAL;
    }
    return 0;
}

/* An issued certificate must be ours: our name, our new key, valid now. NULL or the reason. */
static const char *check_issued(const char *cert_pem, const char *name, const char *key_pem)
{
    gnutls_x509_crt_t crt;
    if (import_cert(cert_pem, &crt) < 0)
        return "the certificate is not PEM X.509";
    const char *why = NULL;
    unsigned char a[64], b[64];
    size_t alen = sizeof(a), blen = sizeof(b);
    time_t now = time(NULL);
    if (!gnutls_x509_crt_check_hostname(crt, name))
        why = "the certificate is not for this host's name";
    else if (gnutls_x509_crt_get_key_id(crt, 0, a, &alen) < 0 ||
             key_id_of_key(key_pem, b, &blen) < 0 || alen != blen || memcmp(a, b, alen) != 0)
        why = "the certificate does not hold the key this collector sent";
    else if (gnutls_x509_crt_get_activation_time(crt) > now + 300 ||
             gnutls_x509_crt_get_expiration_time(crt) <= now)
        why = "the certificate is not valid now (check this host's clock)";
    gnutls_x509_crt_deinit(crt);
    return why;
}

static char *dup_string(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? strdup(s) : NULL;
}

void enroll_submit(const struct enroll_params *p, const char *new_key_pem, bool renew,
                   struct enroll_result *r)
{
    memset(r, 0, sizeof(*r));
    r->outcome = ENROLL_FAILED;
    r->retry_after = -1;
    const char *path = renew ? "/v1/renew" : "/v1/enroll";
    char err[512] = "";
    char *csr = NULL;
    if (enroll_csr_make(new_key_pem, p->name, &csr, err, sizeof(err)) < 0) {
        snprintf(r->message, sizeof(r->message), "%s", err);
        return;
    }
    json_t *req = renew ? json_pack("{s:s}", "csr", csr)
                        : json_pack("{s:s, s:s, s:s, s:s}", "name", p->name, "site", p->site,
                                    "secret", p->secret, "csr", csr);
    free(csr);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        snprintf(r->message, sizeof(r->message), "out of memory building the request");
        return;
    }
    struct enroll_http h = {
        .url = p->url,
        .path = path,
        .ca_pem = p->ca_pem,
        .cert_pem = renew ? p->cert_pem : NULL,
        .key_pem = renew ? p->key_pem : NULL,
        .body = body,
        .body_len = strlen(body),
        .timeout_ms = p->timeout_ms,
    };
    int rc = enroll_http_post(&h, err, sizeof(err));
    platform_free_secret(body); /* it held the site secret */
    if (rc < 0) {
        /* The network, the deadline, a busy server: later. A server we cannot trust or an
         * answer that is not HTTP: a configuration to fix (still retried by a running
         * collector, with its backoff). */
        r->outcome = rc == -EACCES || rc == -EINVAL ? ENROLL_FAILED : ENROLL_RETRY;
        snprintf(r->message, sizeof(r->message), "%s", err);
        return;
    }
    r->http_status = h.status;
    r->retry_after = h.retry_after;
    json_error_t je;
    json_t *ans = json_loadb(h.reply, h.reply_len, 0, &je);
    const char *server_error = json_string_value(json_object_get(ans, "error"));
    char said[300];
    snprintf(said, sizeof(said), "%s",
             server_error ? server_error
             : ans        ? "no reason given"
                          : "the answer is not JSON");
    for (char *q = said; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            *q = '?'; /* the server's text goes into logs: no control characters */
    switch (h.status) {
    case 200: {
        r->cert_pem = dup_string(ans, "certificate");
        r->ca_pem = dup_string(ans, "ca");
        json_t *na = json_object_get(ans, "not_after");
        r->not_after = json_is_integer(na) ? (long long)json_integer_value(na) : 0;
        const char *bad =
            !ans ? "not JSON"
            : !json_is_string(json_object_get(ans, "status")) ||
                    strcmp(json_string_value(json_object_get(ans, "status")), "issued") != 0
                ? "status is not \"issued\""
            : !r->cert_pem ? "no certificate"
                           : check_issued(r->cert_pem, p->name, new_key_pem);
        if (bad) {
            enroll_result_release(r);
            snprintf(r->message, sizeof(r->message), "%s%s: 200 with an unusable answer: %s",
                     p->url, path, bad);
            r->outcome = ENROLL_FAILED;
        } else {
            long long nb;
            enroll_cert_times(r->cert_pem, &nb, &r->not_after);
            r->outcome = ENROLL_ISSUED;
            snprintf(r->message, sizeof(r->message), "%s%s: certificate issued for %s", p->url,
                     path, p->name);
        }
        break;
    }
    case 202: {
        json_t *id = json_object_get(ans, "request");
        json_t *ra = json_object_get(ans, "retry_after");
        r->request = json_is_integer(id) ? (long long)json_integer_value(id) : 0;
        if (json_is_integer(ra) && json_integer_value(ra) >= 0)
            r->retry_after = json_integer_value(ra) > 86400 ? 86400 : (long)json_integer_value(ra);
        r->outcome = ENROLL_PENDING;
        snprintf(r->message, sizeof(r->message),
                 "%s%s: request %lld for %s waits for a person: `tlsgate enroll approve %lld` "
                 "on the orchestrator",
                 p->url, path, r->request, p->name, r->request);
        break;
    }
    case 403:
        r->outcome = ENROLL_REFUSED;
        snprintf(r->message, sizeof(r->message), "%s%s: refused (403): %s", p->url, path, said);
        break;
    case 429:
    case 503:
        r->outcome = ENROLL_RETRY;
        snprintf(r->message, sizeof(r->message), "%s%s: the server is busy (%d): %s", p->url, path,
                 h.status, said);
        break;
    default:
        r->outcome = h.status >= 500 ? ENROLL_RETRY : ENROLL_FAILED;
        snprintf(r->message, sizeof(r->message), "%s%s: HTTP %d: %s", p->url, path, h.status, said);
        break;
    }
    json_decref(ans);
    enroll_http_release(&h);
}

/* ---- schedule ---- */

long long enroll_renew_at(long long not_before, long long not_after, double fraction)
{
    if (!(fraction > 0.0 && fraction < 1.0))
        fraction = ENROLL_RENEW_FRACTION;
    if (not_after <= not_before)
        return not_before;
    return not_before + (long long)(fraction * (double)(not_after - not_before));
}

long enroll_backoff(unsigned attempt, long base, long max, uint64_t rnd)
{
    if (base < 1)
        base = 1;
    if (max < base)
        max = base;
    long d = base;
    for (unsigned i = 0; i < attempt && d < max; i++)
        d = d > max / 2 ? max : d * 2;
    if (d > max)
        d = max;
    long half = d / 2;
    long v = half + (long)(rnd % (uint64_t)(d - half + 1));
    return v < 1 ? 1 : v;
}

int enroll_cert_times(const char *cert_pem, long long *not_before, long long *not_after)
{
    gnutls_x509_crt_t crt;
    if (import_cert(cert_pem, &crt) < 0)
        return -EINVAL;
    *not_before = (long long)gnutls_x509_crt_get_activation_time(crt);
    *not_after = (long long)gnutls_x509_crt_get_expiration_time(crt);
    gnutls_x509_crt_deinit(crt);
    return *not_before == -1 || *not_after == -1 ? -EINVAL : 0;
}

/* ---- files ---- */

int enroll_read_secret(const char *path, char **secret, char *err, size_t errsize)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        ERR("%s: cannot read the site secret: %s", path, strerror(e));
        return -e;
    }
    char buf[ENROLL_SECRET_MAX + 2];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    if (n > ENROLL_SECRET_MAX) {
        ERR("%s: the site secret file is over %d bytes", path, ENROLL_SECRET_MAX);
        return -E2BIG;
    }
    buf[n] = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t len = strlen(s);
    if (len != n - (size_t)(s - buf)) {
        ERR("%s: the site secret file holds a NUL byte", path);
        return -EINVAL;
    }
    while (len > 0 &&
           (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' || s[len - 1] == '\n'))
        s[--len] = '\0';
    int ret = 0;
    if (len == 0) {
        ERR("%s: the site secret file is empty (`tlsgate enroll secret --site S` makes one)", path);
        ret = -EINVAL;
    }
    for (size_t i = 0; i < len && !ret; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) {
            ERR("%s: the site secret must be one word of printable ASCII", path);
            ret = -EINVAL;
        }
    if (!ret) {
        *secret = strdup(s);
        if (!*secret)
            ret = -ENOMEM;
    }
    platform_secure_zero(buf, sizeof(buf));
    return ret;
}

static int replace_file(const char *from, const char *to)
{
#ifdef _WIN32
    return MoveFileExA(from, to, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH) ? 0 : -EIO;
#else
    return rename(from, to) == 0 ? 0 : -errno;
#endif
}

int enroll_write_atomic(const char *path, const char *data, size_t len, bool private_key, char *err,
                        size_t errsize)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        ERR("%s: path too long", path);
        return -ENAMETOOLONG;
    }
    remove(tmp);
#ifdef _WIN32
    int fd = _open(tmp, _O_WRONLY | _O_CREAT | _O_EXCL | _O_BINARY, _S_IREAD | _S_IWRITE);
    (void)private_key;
#else
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, private_key ? 0600 : 0644);
#endif
    if (fd < 0) {
        int e = errno;
        ERR("%s: cannot create: %s", tmp, strerror(e));
        return -e;
    }
    size_t off = 0;
    int e = 0;
    while (off < len && !e) {
#ifdef _WIN32
        int w = _write(fd, data + off, (unsigned)(len - off));
#else
        ssize_t w = write(fd, data + off, len - off);
#endif
        if (w < 0) {
#ifndef _WIN32
            if (errno == EINTR)
                continue;
#endif
            e = errno;
        } else
            off += (size_t)w;
    }
#ifdef _WIN32
    if (!e && _commit(fd) != 0)
        e = errno;
    if (_close(fd) != 0 && !e)
        e = errno;
#else
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
#endif
    if (e) {
        ERR("%s: cannot write: %s", tmp, strerror(e));
        remove(tmp);
        return -e;
    }
    int rc = replace_file(tmp, path);
    if (rc < 0) {
        ERR("%s: cannot replace it with %s: %s", path, tmp, strerror(-rc));
        remove(tmp);
        return rc;
    }
    return 0;
}

static char *read_small(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(64 * 1024 + 1);
    size_t n = buf ? fread(buf, 1, 64 * 1024, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

int enroll_pair_install(const char *cert_path, const char *key_path, const char *cert_pem,
                        const char *key_pem, char *err, size_t errsize)
{
    char key_new[4096], cert_new[4096];
    snprintf(key_new, sizeof(key_new), "%s.new", key_path);
    snprintf(cert_new, sizeof(cert_new), "%s.new", cert_path);
    int rc = enroll_write_atomic(key_new, key_pem, strlen(key_pem), true, err, errsize);
    if (rc == 0)
        rc = enroll_write_atomic(cert_new, cert_pem, strlen(cert_pem), false, err, errsize);
    if (rc < 0) {
        remove(key_new);
        remove(cert_new);
        return rc;
    }
    /* From here on CERT.new is complete: a crash after the first rename is finished by
     * enroll_pair_recover. */
    rc = replace_file(key_new, key_path);
    if (rc == 0)
        rc = replace_file(cert_new, cert_path);
    if (rc < 0) {
        ERR("%s, %s: cannot put the new pair in place: %s", key_path, cert_path, strerror(-rc));
        return rc;
    }
    return 0;
}

/* True when the certificate file's key is the key file's. */
static bool pair_matches(const char *cert_file, const char *key_file)
{
    char *cert = read_small(cert_file), *key = read_small(key_file);
    bool ok = false;
    gnutls_x509_crt_t crt;
    if (cert && key && import_cert(cert, &crt) == 0) {
        unsigned char a[64], b[64];
        size_t alen = sizeof(a), blen = sizeof(b);
        ok = gnutls_x509_crt_get_key_id(crt, 0, a, &alen) >= 0 &&
             key_id_of_key(key, b, &blen) == 0 && alen == blen && memcmp(a, b, alen) == 0;
        gnutls_x509_crt_deinit(crt);
    }
    free(cert);
    platform_free_secret(key);
    return ok;
}

int enroll_pair_recover(const char *cert_path, const char *key_path, char *err, size_t errsize)
{
    char key_new[4096], cert_new[4096];
    snprintf(key_new, sizeof(key_new), "%s.new", key_path);
    snprintf(cert_new, sizeof(cert_new), "%s.new", cert_path);
    struct stat st;
    bool have_key_new = stat(key_new, &st) == 0, have_cert_new = stat(cert_new, &st) == 0;
    if (have_key_new) {
        /* Interrupted before the first rename: the old pair is intact. */
        remove(key_new);
        remove(cert_new);
        return 0;
    }
    if (!have_cert_new)
        return 0;
    if (pair_matches(cert_new, key_path)) {
        int rc = replace_file(cert_new, cert_path);
        if (rc < 0) {
            ERR("%s: cannot finish the interrupted renewal from %s: %s", cert_path, cert_new,
                strerror(-rc));
            return rc;
        }
        return 1;
    }
    remove(cert_new);
    return 0;
}

int enroll_host_name(char *out, size_t size)
{
    char name[256] = "";
#ifdef _WIN32
    DWORD n = sizeof(name);
    if (!GetComputerNameExA(ComputerNameDnsFullyQualified, name, &n))
        return -EIO;
#else
    if (gethostname(name, sizeof(name) - 1) != 0)
        return -errno;
    name[sizeof(name) - 1] = '\0';
    if (!strchr(name, '.')) {
        struct addrinfo hints = {.ai_flags = AI_CANONNAME, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        if (getaddrinfo(name, NULL, &hints, &res) == 0 && res && res->ai_canonname &&
            strchr(res->ai_canonname, '.'))
            snprintf(name, sizeof(name), "%s", res->ai_canonname);
        if (res)
            freeaddrinfo(res);
    }
#endif
    size_t len = strlen(name);
    if (len == 0 || len >= size)
        return -ENAMETOOLONG;
    for (size_t i = 0; i <= len; i++)
        out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    return 0;
}

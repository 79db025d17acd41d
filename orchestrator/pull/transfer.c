/*
 * transfer.c — libcurl multi driven by the libuv loop (poll.h, "transfers"). c-anchors.md §1
 * lists the rules followed here: no libcurl call from inside a libcurl callback, timer 0 becomes
 * 1 ms and -1 stops, per-socket state in socketp freed only in the uv close callback, messages
 * drained after every socket_action, the loop kept alive through curl_multi_cleanup. A finished
 * transfer becomes a result in the filling batch (writer.c). Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "poll_int.h"
#include "pollstatus.h"
#include "report.h"
#include "tlsctx.h"
#include "utc.h"

static void drain_messages(struct poll *p);

static void on_sock_closed(uv_handle_t *h)
{
    struct sock *s = (struct sock *)h;
    struct poll *p = s->p;
    free(s);
    p->open_socks--;
    poll__check_finished(p);
}

static void on_sock_event(uv_poll_t *h, int status, int events)
{
    struct sock *s = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR; /* EPOLLERR: tell libcurl instead of spinning (libuv #3796) */
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    if (!s->p->multi)
        return; /* cleaned up; the handle is closing */
    int running = 0;
    curl_multi_socket_action(s->p->multi, s->fd, flags, &running);
    drain_messages(s->p);
}

static void sock_close(struct poll *p, struct sock *s)
{
    /* During curl_multi_cleanup libcurl's pointer to `s` is not cleared; a second REMOVE for
     * the same socket must not close the handle twice (libuv aborts on that). */
    if (uv_is_closing((uv_handle_t *)&s->handle))
        return;
    uv_poll_stop(&s->handle);
    uv_close((uv_handle_t *)&s->handle, on_sock_closed);
    if (p->multi && p->state < POLL_CLOSING)
        curl_multi_assign(p->multi, s->fd, NULL);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    (void)easy;
    struct poll *p = userp;
    struct sock *s = socketp;
    if (p->state >= POLL_CLOSING) {
        /* curl_multi_cleanup may still announce sockets (cached connections shutting down):
         * nothing is polled any more, and every context is closed. */
        if (s)
            sock_close(p, s);
        return 0;
    }
    switch (action) {
    case CURL_POLL_IN:
    case CURL_POLL_OUT:
    case CURL_POLL_INOUT: {
        if (!s) {
            s = calloc(1, sizeof(*s));
            if (!s)
                return -1;
            s->fd = fd;
            s->p = p;
            if (uv_poll_init_socket(p->loop, &s->handle, fd) != 0) {
                free(s);
                return -1;
            }
            s->handle.data = s;
            p->open_socks++;
            curl_multi_assign(p->multi, fd, s);
        }
        int events = (action != CURL_POLL_OUT ? UV_READABLE : 0) |
                     (action != CURL_POLL_IN ? UV_WRITABLE : 0);
        uv_poll_start(&s->handle, events, on_sock_event);
        return 0;
    }
    case CURL_POLL_REMOVE:
        if (s) /* REMOVE does not mean closed: libcurl may announce the fd again (#9799) */
            sock_close(p, s);
        return 0;
    default: return -1;
    }
}

static void on_curl_timer_fired(uv_timer_t *t)
{
    struct poll *p = t->data;
    int running = 0;
    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_messages(p);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct poll *p = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&p->curl_timer);
    else /* 0 means "soon", never from inside this callback (curl #3537) */
        uv_timer_start(&p->curl_timer, on_curl_timer_fired, timeout_ms ? (uint64_t)timeout_ms : 1,
                       0);
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct xfer *x = userp;
    size_t n = size * nmemb;
    if (n > REPORT_MAX_BYTES - x->len) {
        x->over_cap = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (x->len + n > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + n)
            cap *= 2;
        if (cap > REPORT_MAX_BYTES)
            cap = REPORT_MAX_BYTES;
        char *nb = realloc(x->buf, cap);
        if (!nb)
            return 0;
        x->buf = nb;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, data, n);
    x->len += n;
    return n;
}

/* The first header line (the status line) comes after the handshake, on the connection the
 * transfer uses: the moment to read the collector's certificate (tlsctx_peer_cert). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data;
    struct xfer *x = userp;
    if (!x->cert_read) {
        x->cert_read = true;
        tlsctx_peer_cert(x->easy, &x->cert);
    }
    return size * nmemb;
}

static void xfer_unlink(struct poll *p, struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        p->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    p->in_flight--;
}

static void xfer_free(struct xfer *x)
{
    if (!x)
        return;
    if (x->easy)
        curl_easy_cleanup(x->easy);
    tlsctx_unref(x->tls);
    curl_slist_free_all(x->connect_to);
    free(x->name);
    free(x->collector);
    free(x->buf);
    free(x);
}

/* Moves a finished (or abandoned) transfer into the filling batch. */
static void xfer_finish(struct poll *p, struct xfer *x, const char *error)
{
    struct batch *b = &p->filling;
    if (b->count == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct result *ni = realloc(b->items, cap * sizeof(*ni));
        if (!ni) {
            /* No room to remember it: the host simply becomes due again. */
            struct host *h = poll__host_find(p, x->host_id);
            if (h && h->state == HOST_BUSY) {
                h->state = HOST_IDLE;
                poll__heap_push(p, (size_t)(h - p->hosts));
            }
            xfer_free(x);
            return;
        }
        b->items = ni;
        b->cap = cap;
    }
    struct result *r = &b->items[b->count++];
    memset(r, 0, sizeof(*r));
    r->host_id = x->host_id;
    r->name = x->name;
    x->name = NULL;
    r->attempted_at = x->attempted_at;
    r->cert = x->cert;
    if (error) {
        snprintf(r->error, sizeof(r->error), "%s", error);
        poll__scrub(r->error);
    } else {
        r->body = x->buf;
        r->len = x->len;
        x->buf = NULL;
        b->bytes += r->len;
    }
    xfer_free(x);
}

/* The kind of a failed transfer (pollstatus.h), from libcurl's code and its message. */
static enum pollstatus_kind failure_kind(struct xfer *x, CURLcode code)
{
    const char *e = x->errbuf;
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST: return PK_DNS;
    case CURLE_COULDNT_CONNECT: {
        long os_errno = 0; /* libcurl's message says "Couldn't connect to server" either way */
        curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &os_errno);
        return os_errno == ECONNREFUSED || strstr(e, "refused") ? PK_REFUSED : PK_UNREACHABLE;
    }
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t connected = 0;
        curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connected);
        return connected ? PK_TIMEOUT : PK_UNREACHABLE;
    }
    case CURLE_PEER_FAILED_VERIFICATION:
        if (strstr(e, "subject name") || strstr(e, "does not match"))
            return PK_TLS_WRONG_HOST;
        if (strstr(e, "expired") || strstr(e, "not yet valid"))
            return PK_TLS_EXPIRED;
        return PK_TLS_UNTRUSTED;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CLIENTCERT:
        /* the collector's alert about our own certificate lands here */
        return strstr(e, "expired") ? PK_TLS_EXPIRED : PK_TLS;
    default: return PK_OTHER;
    }
}

/* "KIND LABEL: URL via ADDRESS: libcurl's message" — the label first, so pollstatus reads the
 * kind back and a person reads it first. */
static void describe_failure(struct xfer *x, CURLcode code, char *out, size_t size)
{
    const char *url = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
    if (x->over_cap) {
        snprintf(out, size, "report over %d bytes (transfer aborted)", REPORT_MAX_BYTES);
        return;
    }
    enum pollstatus_kind kind = failure_kind(x, code);
    const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
    if (kind == PK_OTHER)
        snprintf(out, size, "%s via %s: %s", url ? url : "?", x->collector, why);
    else
        snprintf(out, size, "%s: %s via %s: %s", pollstatus_kind_label(kind), url ? url : "?",
                 x->collector, why);
}

static void drain_messages(struct poll *p)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(p->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode code = m->data.result; /* read before remove: the message dies with it */
        struct xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        char why[STORE_ERROR_SIZE];
        const char *error = NULL;
        if (code != CURLE_OK) {
            describe_failure(x, code, why, sizeof(why));
            error = why;
            tlsctx_forget(x->tls, x->name, x->collector); /* the next try: a full handshake */
        } else {
            long status = 0;
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
            if (status != 200) {
                snprintf(why, sizeof(why), "HTTP status %ld from https://%s/v1/readiness", status,
                         x->name);
                error = why;
            } else if (!x->cert.fingerprint[0]) {
                /* Fail closed: a report whose certificate escaped the revocation and change
                 * checks is not stored (no known path leads here with OpenSSL). */
                snprintf(why, sizeof(why),
                         "%s: https://%s/v1/readiness via %s: the collector's certificate could "
                         "not be read; report not stored",
                         pollstatus_kind_label(PK_TLS), x->name, x->collector);
                error = why;
                tlsctx_forget(x->tls, x->name, x->collector);
            }
        }
        if (error)
            poll__scrub(why);
        curl_multi_remove_handle(p->multi, easy);
        xfer_unlink(p, x);
        /* The outcome is logged once it is stored (after_flush); this is the raw event. */
        poll_log(LOG_DEBUG, x->name, "%s", error ? error : "fetched");
        xfer_finish(p, x, error);
    }
    if (p->filling.count)
        poll__writer_kick(p);
    poll__fill(p);
    poll__check_finished(p);
}

int poll__xfer_start(struct poll *p, struct host *h, char *err, size_t errsize)
{
    assert(p->state == POLL_RUNNING && h->state == HOST_BUSY);
    struct xfer *x = calloc(1, sizeof(*x));
    if (!x || !(x->name = strdup(h->name)) || !(x->collector = strdup(h->collector))) {
        if (x)
            free(x->name);
        free(x);
        snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
    x->p = p;
    x->host_id = h->id;
    x->attempted_at = utc_now();
    char url[600], to[700];
    snprintf(url, sizeof(url), "https://%s/v1/readiness", h->name);
    snprintf(to, sizeof(to), "%s:443:%s", h->name, h->collector);
    x->connect_to = curl_slist_append(NULL, to);
    x->easy = curl_easy_init();
    if (!x->easy || !x->connect_to) {
        xfer_free(x);
        snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, x->connect_to);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    x->tls = tlsctx_ref(p->tls);
    x->peer.name = x->name;
    x->peer.address = x->collector;
    tlsctx_apply(x->tls, e, &x->peer);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, p->cfg.connect_timeout * 1000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, p->cfg.timeout * 1000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    if (h->fresh) { /* the last certificate was refused: no cached connection, no session */
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        h->fresh = false;
    }
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "tlsgate/" TLSGATE_VERSION);
    CURLMcode mc = curl_multi_add_handle(p->multi, e);
    if (mc != CURLM_OK) {
        snprintf(err, errsize, "cannot start transfer: %s", curl_multi_strerror(mc));
        xfer_free(x);
        return -EIO;
    }
    x->next = p->xfers;
    if (p->xfers)
        p->xfers->prev = x;
    p->xfers = x;
    p->in_flight++;
    return 0;
}

void poll__abandon_transfers(struct poll *p)
{
    if (!p->multi)
        return;
    while (p->xfers) {
        struct xfer *x = p->xfers;
        curl_multi_remove_handle(p->multi, x->easy);
        xfer_unlink(p, x);
        poll_log(LOG_WARN, x->name, "transfer abandoned at shutdown");
        xfer_free(x);
    }
}

int poll__multi_init(struct poll *p)
{
    p->multi = curl_multi_init();
    if (!p->multi)
        return -ENOMEM;
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, p->cfg.concurrency);
    return 0;
}

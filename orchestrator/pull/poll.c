/*
 * poll.c — the pull engine: curl multi on the libuv loop, the per-host schedule, and the
 * batched writer thread. See poll.h for the design; c-anchors.md §1 for the libcurl-on-libuv
 * rules followed here (no libcurl call from inside a libcurl callback, timer 0 becomes 1 ms and
 * -1 stops, per-socket state in socketp freed only in the uv close callback, messages drained
 * after every socket_action, the loop kept alive through curl_multi_cleanup).
 */
#include "poll.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "gate.h"
#include "ingest.h"
#include "report.h"
#include "rules.h"
#include "store.h"
#include "tlsctx.h"
#include "utc.h"

/* ---------------------------------------------------------------- logging */

/* Read by the writer thread too, set on the loop (SIGHUP). */
static _Atomic int log_threshold = LOG_INFO;

void poll_log_set_level(enum log_level level) { log_threshold = (int)level; }

void poll_log(enum log_level level, const char *host, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if ((int)level > log_threshold)
        return;
    char when[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from the writer thread and the loop never interleave. */
    if (host)
        fprintf(stderr, "%s.%03ldZ %s host=%s %s\n", when, ts.tv_nsec / 1000000, names[level],
                host, msg);
    else
        fprintf(stderr, "%s.%03ldZ %s %s\n", when, ts.tv_nsec / 1000000, names[level], msg);
}

/* ---------------------------------------------------------------- schedule arithmetic */

double poll_host_fraction(const char *name, unsigned salt)
{
    /* FNV-1a over the lower-cased name, then a final mix: stable across runs and machines. */
    uint64_t h = 1469598103934665603ull ^ salt;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
        unsigned char l = (*c >= 'A' && *c <= 'Z') ? (unsigned char)(*c + 32) : *c;
        h = (h ^ l) * 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (double)(h >> 11) / (double)(1ull << 53);
}

long long poll_first_at(const struct config *cfg, const char *name, long long now)
{
    return now + (long long)(poll_host_fraction(name, 0) * cfg->jitter * (double)cfg->interval);
}

long long poll_next_at(const struct config *cfg, const char *name, int failures, long long now)
{
    if (failures <= 0)
        return now + cfg->interval;
    long long d = POLL_BACKOFF_BASE_SECONDS;
    for (int i = 1; i < failures && d < cfg->backoff_max; i++)
        d *= 2;
    if (d > cfg->backoff_max)
        d = cfg->backoff_max;
    double f = poll_host_fraction(name, (unsigned)failures);
    return now + d / 2 + (long long)(f * (double)(d - d / 2));
}

/* A busy store is retried this often after poll_stop before the batch is given up. */
#define POLL_STOP_RETRIES 5
/* The daemon's summary line comes this often. */
#define POLL_STATS_EVERY_MS 60000
/* A batch the writer could not store is retried after POLL_RETRY_FIRST_MS, doubling up to
 * POLL_RETRY_MAX_MS (poll.h, POLL_BUSY_TIMEOUT_MS). */
#define POLL_RETRY_FIRST_MS 100
#define POLL_RETRY_MAX_MS 5000
/* The poller's timers: curl, sched, flush (which also times a busy batch's retry), grace and
 * stats; each is closed once in close_everything. */
#define POLL_TIMER_COUNT 5
/* After a write, the orphan-risk watch runs at most this often (and after the first write). */
#define POLL_ORPHANS_EVERY_S 10

/* ---------------------------------------------------------------- types */

enum host_state { HOST_IDLE, HOST_BUSY };

struct host {
    long long id;
    char *name;
    char *collector;
    long long next_at;
    enum host_state state;
    bool in_round; /* round mode: selected and not yet finished */
};

/* One finished transfer on its way to the store. */
struct result {
    long long host_id;
    char *name;
    long long attempted_at;
    char *body; /* NULL when the transfer failed */
    size_t len;
    char error[512]; /* the transfer's failure; then the writer's verdict */
    bool ok;
    int failures; /* in a row, this one included */
    long long next_at;
};

struct batch {
    struct result *items;
    size_t count, cap;
    size_t bytes;
};

struct xfer {
    struct poll *p;
    struct xfer *prev, *next; /* the poller's list of transfers in flight */
    CURL *easy;
    struct curl_slist *connect_to;
    long long host_id;
    char *name;
    char *collector;
    long long attempted_at;
    char *buf;
    size_t len, cap;
    bool over_cap;
    struct tlsctx *tls; /* a reference, held while the transfer may still connect */
    char errbuf[CURL_ERROR_SIZE];
};

struct sock {
    uv_poll_t handle; /* first member: the close callback frees the struct */
    curl_socket_t fd;
    struct poll *p;
};

enum job_kind { JOB_NONE, JOB_LOAD, JOB_FLUSH, JOB_ORPHANS };

struct host_row {
    long long id;
    char *name;
    char *collector;
    long long next_at; /* 0: never attempted */
};

struct poll {
    uv_loop_t *loop;
    struct store *store;
    struct config cfg;
    struct poll_options opt;

    CURLM *multi;
    uv_timer_t curl_timer;   /* libcurl's timeout */
    uv_timer_t sched_timer;  /* next due host */
    uv_timer_t flush_timer;  /* batch delay, retry after a busy store */
    uv_timer_t grace_timer;  /* shutdown bound */
    uv_timer_t stats_timer;  /* the daemon's periodic summary line */
    size_t last_ok, last_failed;
    int open_handles;        /* our timers not yet closed */
    int open_socks;          /* sock contexts not yet closed */

    struct host *hosts; /* sorted by id */
    size_t nhosts;
    size_t *heap; /* indexes of IDLE hosts, min next_at first */
    size_t nheap;
    size_t in_flight;
    struct xfer *xfers; /* in flight, to abandon them at shutdown */
    size_t round_left;

    struct batch filling; /* results being collected on the loop */
    struct batch writing; /* the batch the worker owns */

    /* The worker job. */
    struct tlsctx *tls; /* the parsed CA, certificate and key (tlsctx.h) */

    uv_work_t work;
    /* The settings the worker reads, copied when its job starts: poll_reload replaces `cfg` on
     * the loop while a job may run. Numbers only; the TLS paths are not the worker's. */
    struct config job_cfg;
    enum job_kind job;
    int job_rc;
    char job_err[512];
    bool reload_wanted;
    struct host_row *rows; /* JOB_LOAD output */
    size_t nrows;
    struct ingest ingest; /* valid while `catalog` is set */
    struct rules_catalog *catalog;
    int retry_ms;
    int stop_retries; /* busy-store retries since poll_stop */

    /* The orphan-risk watch (daemon only): servers that report the legacy protocols disabled
     * while their gate is blocked. `risk` is what was last logged, `scan` the worker's new
     * answer; both sorted by name, so the log says only what changed. */
    bool orphans_wanted;
    long long orphans_at;
    struct orphan *risk, *scan;
    size_t nrisk, nscan;

    bool started, stopping, abandoned, closing, stopped_called, round_done_called;
    bool loaded; /* an inventory load succeeded once */
    char store_error[512];
    size_t stat_ok, stat_failed;
};

struct orphan {
    char *name;
    long blocking;
    bool ready;
};

/* ---------------------------------------------------------------- small helpers */

static int host_cmp_id(const void *a, const void *b)
{
    long long x = ((const struct host *)a)->id, y = ((const struct host *)b)->id;
    return x < y ? -1 : x > y;
}

static struct host *host_find(struct poll *p, long long id)
{
    struct host key = {.id = id};
    if (!p->nhosts)
        return NULL;
    return bsearch(&key, p->hosts, p->nhosts, sizeof(*p->hosts), host_cmp_id);
}

static void heap_swap(struct poll *p, size_t a, size_t b)
{
    size_t t = p->heap[a];
    p->heap[a] = p->heap[b];
    p->heap[b] = t;
}

static bool heap_less(struct poll *p, size_t a, size_t b)
{
    return p->hosts[p->heap[a]].next_at < p->hosts[p->heap[b]].next_at;
}

static void heap_push(struct poll *p, size_t host_index)
{
    size_t i = p->nheap++;
    p->heap[i] = host_index;
    while (i > 0 && heap_less(p, i, (i - 1) / 2)) {
        heap_swap(p, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static size_t heap_pop(struct poll *p)
{
    size_t top = p->heap[0];
    p->heap[0] = p->heap[--p->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < p->nheap && heap_less(p, l, m))
            m = l;
        if (r < p->nheap && heap_less(p, r, m))
            m = r;
        if (m == i)
            break;
        heap_swap(p, i, m);
        i = m;
    }
    return top;
}

static void result_release(struct result *r)
{
    free(r->name);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static void batch_release(struct batch *b)
{
    for (size_t i = 0; i < b->count; i++)
        result_release(&b->items[i]);
    free(b->items);
    memset(b, 0, sizeof(*b));
}

static bool batch_full(const struct batch *b)
{
    return b->count >= POLL_BATCH_MAX || b->bytes >= POLL_PENDING_BYTES_MAX;
}

/* A reason may quote the collector's bytes (a report's host, libcurl's message): control
 * characters become '?', so a collector cannot forge log lines or terminal escapes in the log,
 * poll.last_error, or collect's output. */
static void scrub(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

static void fill(struct poll *p);
static void maybe_start_job(struct poll *p);
static void check_finished(struct poll *p);

/* ---------------------------------------------------------------- libcurl <-> libuv */

static void on_sock_closed(uv_handle_t *h)
{
    struct sock *s = (struct sock *)h;
    struct poll *p = s->p;
    free(s);
    p->open_socks--;
    check_finished(p);
}

static void drain_messages(struct poll *p);

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
    if (p->multi && !p->closing)
        curl_multi_assign(p->multi, s->fd, NULL);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    (void)easy;
    struct poll *p = userp;
    struct sock *s = socketp;
    if (p->closing) {
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
    default:
        return -1;
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
            struct host *h = host_find(p, x->host_id);
            if (h && h->state == HOST_BUSY) {
                h->state = HOST_IDLE;
                heap_push(p, (size_t)(h - p->hosts));
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
    if (error) {
        snprintf(r->error, sizeof(r->error), "%s", error);
        scrub(r->error);
    } else {
        r->body = x->buf;
        r->len = x->len;
        x->buf = NULL;
        b->bytes += r->len;
    }
    xfer_free(x);
}

static void on_flush_timer(uv_timer_t *t);

static void describe_failure(struct xfer *x, CURLcode code, char *out, size_t size)
{
    const char *url = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
    if (x->over_cap) {
        snprintf(out, size, "report over %d bytes (transfer aborted)", REPORT_MAX_BYTES);
        return;
    }
    const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
    snprintf(out, size, "%s via %s: %s", url ? url : "?", x->collector, why);
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
        char why[512];
        const char *error = NULL;
        if (code != CURLE_OK) {
            describe_failure(x, code, why, sizeof(why));
            error = why;
        } else {
            long status = 0;
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
            if (status != 200) {
                snprintf(why, sizeof(why), "HTTP status %ld from https://%s/v1/readiness", status,
                         x->name);
                error = why;
            }
        }
        if (error)
            scrub(why);
        curl_multi_remove_handle(p->multi, easy);
        xfer_unlink(p, x);
        /* The outcome is logged once it is stored (after_flush); this is the raw event. */
        poll_log(LOG_DEBUG, x->name, "%s", error ? error : "fetched");
        xfer_finish(p, x, error);
    }
    if (p->filling.count) {
        if (batch_full(&p->filling) || p->stopping)
            maybe_start_job(p);
        else if (!uv_is_active((uv_handle_t *)&p->flush_timer))
            uv_timer_start(&p->flush_timer, on_flush_timer, POLL_BATCH_DELAY_MS, 0);
    }
    fill(p);
    check_finished(p);
}

/* ---------------------------------------------------------------- starting transfers */

static int xfer_start(struct poll *p, struct host *h, char *err, size_t errsize)
{
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
    tlsctx_apply(x->tls, e);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, p->cfg.connect_timeout * 1000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, p->cfg.timeout * 1000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
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

static void on_sched_timer(uv_timer_t *t) { fill(t->data); }

/* Starts due hosts while there is room: a free transfer slot and room in the write buffer. */
static void fill(struct poll *p)
{
    if (p->stopping || !p->started || p->job == JOB_LOAD)
        return;
    long long now = utc_now();
    while (p->nheap && p->in_flight < (size_t)p->cfg.concurrency && !batch_full(&p->filling)) {
        struct host *h = &p->hosts[p->heap[0]];
        if (h->next_at > now)
            break;
        heap_pop(p);
        h->state = HOST_BUSY;
        char err[256];
        if (xfer_start(p, h, err, sizeof(err))) {
            poll_log(LOG_ERROR, h->name, "%s", err);
            h->next_at = now + 1;
            h->state = HOST_IDLE;
            heap_push(p, (size_t)(h - p->hosts));
            break;
        }
    }
    uv_timer_stop(&p->sched_timer);
    if (p->nheap && p->in_flight < (size_t)p->cfg.concurrency && !batch_full(&p->filling)) {
        long long wait = p->hosts[p->heap[0]].next_at - now;
        if (wait < 0)
            wait = 0;
        /* Checked at least every minute, so a wall-clock jump is noticed. */
        uint64_t ms = wait > 60 ? 60000 : (uint64_t)wait * 1000 + 1;
        uv_timer_start(&p->sched_timer, on_sched_timer, ms, 0);
    }
}

/* ---------------------------------------------------------------- the writer (worker thread) */

/* (Re)loads the store's active catalog and the ingest statements bound to it. */
static int load_catalog(struct poll *p, char *err, size_t errsize)
{
    struct rules_catalog *cat = NULL;
    int rc = rules_load_active(p->store, &cat);
    if (rc) {
        snprintf(err, errsize, "rule catalog: %s", store_errmsg(p->store));
        return rc;
    }
    struct ingest ig;
    if ((rc = ingest_init(&ig, p->store, cat))) {
        snprintf(err, errsize, "%s", store_errmsg(p->store));
        rules_free(cat);
        return rc;
    }
    /* Swapped only once the new pair is ready: a failure keeps the old catalog working. */
    if (p->catalog) {
        ingest_release(&p->ingest);
        rules_free(p->catalog);
    }
    p->ingest = ig;
    p->catalog = cat;
    return 0;
}

static int job_load(struct poll *p)
{
    int rc = load_catalog(p, p->job_err, sizeof(p->job_err));
    if (rc)
        return rc;
    sqlite3_stmt *st;
    if ((rc = store_prepare(p->store,
                            "SELECT h.id, h.name, h.collector, coalesce(pl.next_at, 0) "
                            "FROM host h LEFT JOIN poll pl ON pl.host_id = h.id ORDER BY h.id",
                            &st))) {
        snprintf(p->job_err, sizeof(p->job_err), "%s", store_errmsg(p->store));
        return rc;
    }
    size_t cap = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (p->nrows == cap) {
            cap = cap ? cap * 2 : 256;
            struct host_row *nr = realloc(p->rows, cap * sizeof(*nr));
            if (!nr) {
                rc = -ENOMEM;
                break;
            }
            p->rows = nr;
        }
        struct host_row *r = &p->rows[p->nrows];
        r->id = sqlite3_column_int64(st, 0);
        r->name = strdup((const char *)sqlite3_column_text(st, 1));
        r->collector = strdup((const char *)sqlite3_column_text(st, 2));
        r->next_at = sqlite3_column_int64(st, 3);
        if (!r->name || !r->collector) {
            free(r->name);
            free(r->collector);
            rc = -ENOMEM;
            break;
        }
        p->nrows++;
    }
    if (!rc && step != SQLITE_DONE)
        rc = store_sqlite_fail(p->store, "read the inventory");
    sqlite3_finalize(st);
    if (rc)
        snprintf(p->job_err, sizeof(p->job_err), "read the inventory: %s",
                 rc == -ENOMEM ? "out of memory" : store_errmsg(p->store));
    return rc;
}

/* Checks a fetched body; 0 and the parsed report, or the reason in r->error. */
static json_t *check_report(struct result *r, long long now)
{
    json_t *report = NULL;
    char why[400];
    int rc = report_parse(r->body, r->len, &report, why, sizeof(why));
    if (rc) {
        snprintf(r->error, sizeof(r->error), "invalid report: %s", why);
        return NULL;
    }
    const char *host = json_string_value(json_object_get(report, "host"));
    if (!host || strcasecmp(host, r->name) != 0) {
        snprintf(r->error, sizeof(r->error), "report is for host \"%.200s\", not %s",
                 host ? host : "?", r->name);
        json_decref(report);
        return NULL;
    }
    long long collected;
    const char *at = json_string_value(json_object_get(report, "collected_at"));
    if (!at || report_parse_time(at, &collected)) {
        snprintf(r->error, sizeof(r->error), "invalid report: collected_at: not RFC 3339 UTC");
        json_decref(report);
        return NULL;
    }
    if (collected > now + POLL_SKEW_SECONDS) {
        snprintf(r->error, sizeof(r->error),
                 "collected_at %s is %lld s in the future (more than the %d s allowed skew)", at,
                 collected - now, POLL_SKEW_SECONDS);
        json_decref(report);
        return NULL;
    }
    return report;
}

/* Writes one result inside the batch transaction. -EBUSY/-EIO abort the batch. */
static int write_result(struct poll *p, struct result *r, sqlite3_stmt *host_q,
                        sqlite3_stmt *fail_q, sqlite3_stmt *upsert, long long now)
{
    sqlite3_reset(host_q);
    sqlite3_bind_int64(host_q, 1, r->host_id);
    int step = sqlite3_step(host_q);
    if (step == SQLITE_DONE)
        return 1; /* removed from the inventory meanwhile: nothing to record */
    if (step != SQLITE_ROW)
        return store_sqlite_fail(p->store, "read host");
    unsigned roles = (unsigned)sqlite3_column_int64(host_q, 0);
    sqlite3_reset(host_q);

    r->ok = false;
    if (r->body) {
        json_t *report = check_report(r, now);
        if (report) {
            char why[400] = "";
            int rc = ingest_one(&p->ingest, r->host_id, roles, report, now, why, sizeof(why));
            json_decref(report);
            if (rc == -EBUSY || rc == -EIO || rc == -ENOMEM)
                return rc == -ENOMEM ? -ENOMEM : store_fail(p->store, rc, "%s", why);
            if (rc == -ESTALE)
                snprintf(r->error, sizeof(r->error), "older than stored report");
            else if (rc)
                snprintf(r->error, sizeof(r->error), "report not stored: %s", why);
            else
                r->ok = true;
        }
    }

    scrub(r->error);
    int failures = 0;
    if (!r->ok) {
        sqlite3_reset(fail_q);
        sqlite3_bind_int64(fail_q, 1, r->host_id);
        step = sqlite3_step(fail_q);
        if (step == SQLITE_ROW)
            failures = sqlite3_column_int(fail_q, 0);
        else if (step != SQLITE_DONE)
            return store_sqlite_fail(p->store, "read poll state");
        sqlite3_reset(fail_q);
        failures++;
    }
    r->failures = failures;
    r->next_at = poll_next_at(&p->job_cfg, r->name, failures, now);

    sqlite3_reset(upsert);
    sqlite3_bind_int64(upsert, 1, r->host_id);
    sqlite3_bind_int64(upsert, 2, r->attempted_at);
    if (r->ok) {
        sqlite3_bind_int64(upsert, 3, now);
        sqlite3_bind_null(upsert, 4);
    } else {
        sqlite3_bind_null(upsert, 3);
        sqlite3_bind_text(upsert, 4, r->error, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int(upsert, 5, failures);
    sqlite3_bind_int64(upsert, 6, r->next_at);
    step = sqlite3_step(upsert);
    sqlite3_reset(upsert);
    if (step != SQLITE_DONE)
        return store_sqlite_fail(p->store, "record poll state");
    return 0;
}

/* `tlsgate rules load` may change the active catalog while we run (rules.h): checked under the
 * batch's write lock, so no report is judged by a catalog that was replaced before it. */
static int refresh_catalog(struct poll *p)
{
    char *version = NULL;
    int rc = store_meta_get(p->store, "catalog_version", &version);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return rc;
    bool same = !strcmp(version, rules_version(p->catalog));
    free(version);
    if (same)
        return 0;
    if ((rc = load_catalog(p, p->job_err, sizeof(p->job_err))))
        return store_fail(p->store, rc, "%s", p->job_err);
    poll_log(LOG_INFO, NULL, "rule catalog %s now in use", rules_version(p->catalog));
    return 0;
}

static int job_flush(struct poll *p)
{
    struct batch *b = &p->writing;
    long long now = utc_now();
    sqlite3_stmt *host_q = NULL, *fail_q = NULL, *upsert = NULL;
    int rc = store_begin(p->store, true);
    if (rc)
        goto out;
    if ((rc = refresh_catalog(p)) ||
        (rc = store_prepare(p->store, "SELECT roles FROM host WHERE id = ?", &host_q)) ||
        (rc = store_prepare(p->store, "SELECT failures FROM poll WHERE host_id = ?", &fail_q)) ||
        (rc = store_prepare(p->store,
                            "INSERT INTO poll (host_id, last_attempt_at, last_success_at, "
                            "last_error, failures, next_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                            "ON CONFLICT (host_id) DO UPDATE SET "
                            "last_attempt_at = ?2, "
                            "last_success_at = coalesce(?3, last_success_at), "
                            "last_error = ?4, failures = ?5, next_at = ?6",
                            &upsert)))
        goto out;
    for (size_t i = 0; i < b->count; i++) {
        struct result *r = &b->items[i];
        char transfer_error[sizeof(r->error)];
        memcpy(transfer_error, r->error, sizeof(transfer_error));
        int w = write_result(p, r, host_q, fail_q, upsert, now);
        if (w < 0) {
            rc = w;
            /* The batch is retried whole: restore what the transfer said. */
            for (size_t j = 0; j <= i; j++)
                b->items[j].ok = false;
            memcpy(r->error, transfer_error, sizeof(r->error));
            goto out;
        }
        if (w == 1)
            r->next_at = -1; /* host gone */
    }
    rc = store_commit(p->store);
out:
    sqlite3_finalize(host_q);
    sqlite3_finalize(fail_q);
    sqlite3_finalize(upsert);
    if (rc) {
        snprintf(p->job_err, sizeof(p->job_err), "%s", store_errmsg(p->store));
        store_rollback(p->store);
    }
    return rc;
}

static void orphans_free(struct orphan *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(o[i].name);
    free(o);
}

static int orphan_seen(const struct gate_server *srv, void *arg)
{
    struct poll *p = arg;
    if (!srv->orphan_risk)
        return 0;
    struct orphan *grown = realloc(p->scan, (p->nscan + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    p->scan = grown;
    struct orphan *o = &p->scan[p->nscan];
    if (!(o->name = strdup(srv->name)))
        return -ENOMEM;
    o->blocking = srv->blocking;
    o->ready = srv->state == GATE_READY;
    p->nscan++;
    return 0;
}

static int orphan_cmp(const void *a, const void *b)
{
    return strcasecmp(((const struct orphan *)a)->name, ((const struct orphan *)b)->name);
}

/* The gate's own answer (gate.h), read in one snapshot, for every server of every site. */
static int job_orphans(struct poll *p)
{
    struct gate_time t = gate_time_make(utc_now(), p->job_cfg.stale_after);
    int rc = store_begin(p->store, false);
    if (!rc)
        rc = gate_servers(p->store, NULL, &t, orphan_seen, p);
    if (rc)
        snprintf(p->job_err, sizeof(p->job_err), "%s", store_errmsg(p->store));
    store_rollback(p->store);
    if (!rc && p->nscan > 1)
        qsort(p->scan, p->nscan, sizeof(*p->scan), orphan_cmp);
    return rc;
}

static void on_work(uv_work_t *w)
{
    struct poll *p = w->data;
    p->job_err[0] = '\0';
    p->job_rc = p->job == JOB_LOAD    ? job_load(p)
                : p->job == JOB_FLUSH ? job_flush(p)
                                      : job_orphans(p);
}

/* ---------------------------------------------------------------- back on the loop */

static void free_rows(struct poll *p)
{
    for (size_t i = 0; i < p->nrows; i++) {
        free(p->rows[i].name);
        free(p->rows[i].collector);
    }
    free(p->rows);
    p->rows = NULL;
    p->nrows = 0;
}

/* Replaces the host table by the loaded rows, keeping the state of hosts that stay. */
static int apply_rows(struct poll *p)
{
    struct host *nh = calloc(p->nrows ? p->nrows : 1, sizeof(*nh));
    size_t *heap = calloc(p->nrows ? p->nrows : 1, sizeof(*heap));
    if (!nh || !heap) {
        free(nh);
        free(heap);
        return -ENOMEM;
    }
    long long now = utc_now();
    size_t n = 0;
    p->round_left = 0;
    for (size_t i = 0; i < p->nrows; i++) {
        struct host_row *r = &p->rows[i];
        if (p->opt.round && p->opt.host && strcasecmp(p->opt.host, r->name) != 0)
            continue;
        struct host *h = &nh[n++];
        struct host *old = host_find(p, r->id);
        h->id = r->id;
        h->name = r->name;
        h->collector = r->collector;
        r->name = r->collector = NULL;
        if (p->opt.round) {
            h->next_at = 0;
            h->in_round = true;
            p->round_left++;
        } else if (old) {
            h->next_at = old->next_at;
            h->state = old->state;
        } else {
            h->next_at = r->next_at ? r->next_at : poll_first_at(&p->cfg, h->name, now);
        }
    }
    for (size_t i = 0; i < p->nhosts; i++) {
        free(p->hosts[i].name);
        free(p->hosts[i].collector);
    }
    free(p->hosts);
    free(p->heap);
    p->hosts = nh;
    p->nhosts = n;
    p->heap = heap;
    p->nheap = 0;
    for (size_t i = 0; i < n; i++)
        if (nh[i].state == HOST_IDLE)
            heap_push(p, i);
    free_rows(p);
    return 0;
}

static void after_flush(struct poll *p)
{
    struct batch *b = &p->writing;
    for (size_t i = 0; i < b->count; i++) {
        struct result *r = &b->items[i];
        struct host *h = host_find(p, r->host_id);
        if (r->ok)
            p->stat_ok++;
        else
            p->stat_failed++;
        if (r->next_at >= 0) {
            if (r->ok)
                poll_log(LOG_DEBUG, r->name, "report stored");
            else
                poll_log(LOG_WARN, r->name, "failed (%d in a row): %s", r->failures, r->error);
        }
        if (h && h->state == HOST_BUSY) {
            h->state = HOST_IDLE;
            if (p->opt.round) {
                if (h->in_round) {
                    h->in_round = false;
                    p->round_left--;
                }
            } else {
                h->next_at = r->next_at >= 0 ? r->next_at : utc_now() + p->cfg.interval;
                heap_push(p, (size_t)(h - p->hosts));
            }
        }
        if (p->opt.on_outcome && r->next_at >= 0) {
            struct poll_outcome o = {.host_id = r->host_id, .host = r->name, .ok = r->ok,
                                     .error = r->ok ? NULL : r->error, .next_at = r->next_at};
            p->opt.on_outcome(p, &o, p->opt.data);
        }
    }
    batch_release(b);
}

static void on_retry_timer(uv_timer_t *t);

/* Logs the servers that became an orphan risk since the last watch, and those that no longer
 * are; both lists are sorted by name. */
static void after_orphans(struct poll *p, int rc)
{
    if (rc) {
        poll_log(LOG_ERROR, NULL, "orphan-risk check failed: %s", p->job_err);
        orphans_free(p->scan, p->nscan);
    } else {
        size_t i = 0, j = 0;
        while (i < p->nrisk || j < p->nscan) {
            int c = i == p->nrisk   ? 1
                    : j == p->nscan ? -1
                                    : strcasecmp(p->risk[i].name, p->scan[j].name);
            if (c < 0) {
                poll_log(LOG_INFO, p->risk[i].name, "orphan risk cleared");
                i++;
            } else if (c > 0) {
                const struct orphan *o = &p->scan[j];
                if (o->ready)
                    poll_log(LOG_WARN, o->name,
                             "ORPHAN RISK: legacy protocols disabled while %ld dependent(s) "
                             "cannot use TLS 1.2 or have no fresh report (tlsgate gate check %s)",
                             o->blocking, o->name);
                else
                    poll_log(LOG_WARN, o->name,
                             "ORPHAN RISK: legacy protocols disabled while the server itself "
                             "is not ready (tlsgate gate check %s)",
                             o->name);
                j++;
            } else {
                i++;
                j++;
            }
        }
        orphans_free(p->risk, p->nrisk);
        p->risk = p->scan;
        p->nrisk = p->nscan;
    }
    p->scan = NULL;
    p->nscan = 0;
}

static void after_work(uv_work_t *w, int status)
{
    struct poll *p = w->data;
    enum job_kind kind = p->job;
    p->job = JOB_NONE;
    int rc = status ? status : p->job_rc;
    if (kind == JOB_LOAD) {
        if (rc || apply_rows(p)) {
            if (!rc)
                snprintf(p->job_err, sizeof(p->job_err), "out of memory");
            poll_log(LOG_ERROR, NULL, "inventory not (re)loaded: %s", p->job_err);
            free_rows(p);
            if (p->opt.round || !p->loaded) {
                /* Nothing loaded yet: idling with no host would look like a working daemon. */
                snprintf(p->store_error, sizeof(p->store_error), "%s", p->job_err);
                p->round_left = 0;
                if (!p->opt.round)
                    poll_stop(p, 0);
            }
        } else {
            p->loaded = true;
            poll_log(LOG_INFO, NULL, "inventory: %zu hosts scheduled", p->nhosts);
        }
    } else if (kind == JOB_ORPHANS) {
        after_orphans(p, rc);
    } else if (kind == JOB_FLUSH) {
        if (rc) {
            /* Kept whole and retried; in a one-shot round only a busy store is worth waiting. */
            if (p->stopping && (rc != -EBUSY || ++p->stop_retries > POLL_STOP_RETRIES)) {
                /* Shutting down: waiting longer could hold the exit forever; the collectors
                 * still have these reports and the next start fetches them again. */
                poll_log(LOG_ERROR, NULL, "%zu results not written at shutdown: %s",
                         p->writing.count, p->job_err);
                batch_release(&p->writing);
            } else if (p->opt.round && rc != -EBUSY) {
                snprintf(p->store_error, sizeof(p->store_error), "%s", p->job_err);
                p->round_left = 0;
                batch_release(&p->writing);
                p->stopping = true;
            } else {
                p->retry_ms = !p->retry_ms                    ? POLL_RETRY_FIRST_MS
                              : p->retry_ms < POLL_RETRY_MAX_MS ? p->retry_ms * 2
                                                                : POLL_RETRY_MAX_MS;
                if (rc == -EBUSY)
                    poll_log(LOG_WARN, NULL, "database busy: %zu results kept, retried in %d ms",
                             p->writing.count, p->retry_ms);
                else
                    poll_log(LOG_ERROR, NULL, "%zu results kept, retried in %d ms: %s",
                             p->writing.count, p->retry_ms, p->job_err);
                uv_timer_start(&p->flush_timer, on_retry_timer, (uint64_t)p->retry_ms, 0);
                check_finished(p);
                return;
            }
        } else {
            p->retry_ms = 0;
            after_flush(p);
            long long now = utc_now();
            if (!p->opt.round && (!p->orphans_at || now - p->orphans_at >= POLL_ORPHANS_EVERY_S)) {
                p->orphans_wanted = true;
                p->orphans_at = now;
            }
        }
    }
    maybe_start_job(p);
    fill(p);
    check_finished(p);
}

static void start_job(struct poll *p, enum job_kind kind)
{
    p->job = kind;
    p->job_cfg = p->cfg;
    p->job_cfg.tls_ca = p->job_cfg.tls_cert = p->job_cfg.tls_key = NULL;
    p->work.data = p;
    if (uv_queue_work(p->loop, &p->work, on_work, after_work) != 0) {
        p->job = JOB_NONE;
        poll_log(LOG_ERROR, NULL, "cannot start the writer thread");
    }
}

/* Starts the worker on what is waiting: a reload first, else the filling batch. */
static void maybe_start_job(struct poll *p)
{
    if (p->job != JOB_NONE || (uv_is_active((uv_handle_t *)&p->flush_timer) && p->writing.count))
        return;
    if (p->writing.count) { /* a batch that failed before: retry it as it is */
        start_job(p, JOB_FLUSH);
        return;
    }
    if (p->reload_wanted && !p->stopping) {
        p->reload_wanted = false;
        start_job(p, JOB_LOAD);
        return;
    }
    if (p->filling.count) {
        uv_timer_stop(&p->flush_timer);
        p->writing = p->filling;
        memset(&p->filling, 0, sizeof(p->filling));
        start_job(p, JOB_FLUSH);
        return;
    }
    if (p->orphans_wanted && !p->stopping) {
        p->orphans_wanted = false;
        start_job(p, JOB_ORPHANS);
    }
}

static void on_flush_timer(uv_timer_t *t) { maybe_start_job(t->data); }

static void on_retry_timer(uv_timer_t *t)
{
    struct poll *p = t->data;
    if (p->job == JOB_NONE && p->writing.count)
        start_job(p, JOB_FLUSH);
}

/* ---------------------------------------------------------------- lifecycle */

static void on_handle_closed(uv_handle_t *h)
{
    struct poll *p = h->data;
    p->open_handles--;
    check_finished(p);
}

static void close_everything(struct poll *p)
{
    /* libcurl may still call the socket callback during cleanup (cached connections). */
    p->closing = true;
    curl_multi_cleanup(p->multi);
    p->multi = NULL;
    uv_close((uv_handle_t *)&p->curl_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->sched_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->grace_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->stats_timer, on_handle_closed);
}

static void abandon_transfers(struct poll *p)
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

static void check_finished(struct poll *p)
{
    if (p->opt.round && p->started && !p->round_done_called && p->round_left == 0 &&
        p->job != JOB_LOAD && (p->store_error[0] || (p->in_flight == 0 && p->job == JOB_NONE &&
                                                     !p->filling.count && !p->writing.count))) {
        p->round_done_called = true;
        if (p->opt.on_round_done)
            p->opt.on_round_done(p, p->opt.data);
        return;
    }
    if (!p->stopping || p->stopped_called)
        return;
    if (p->multi) {
        if (p->in_flight > 0 && !p->abandoned)
            return;
        /* Everything fetched is written before closing; a busy store is waited out. */
        if (p->job != JOB_NONE || p->filling.count || p->writing.count) {
            maybe_start_job(p);
            return;
        }
        close_everything(p);
        return;
    }
    if (p->open_handles == 0 && p->open_socks == 0) {
        p->stopped_called = true;
        if (p->opt.on_stopped)
            p->opt.on_stopped(p, p->opt.data);
    }
}

static void on_grace_over(uv_timer_t *t)
{
    struct poll *p = t->data;
    p->abandoned = true;
    abandon_transfers(p);
    check_finished(p);
}

void poll_stop(struct poll *p, unsigned grace_ms)
{
    if (p->stopping && p->abandoned)
        return;
    p->stopping = true;
    uv_timer_stop(&p->sched_timer);
    uv_timer_stop(&p->stats_timer);
    /* A second stop (another SIGTERM) keeps the running bound; it must not lift it. */
    if (p->in_flight > 0 && !uv_is_active((uv_handle_t *)&p->grace_timer))
        uv_timer_start(&p->grace_timer, on_grace_over, grace_ms, 0);
    else if (p->in_flight == 0)
        uv_timer_stop(&p->grace_timer);
    check_finished(p);
}

static int check_readable(const char *key, const char *path, char *err, size_t errsize)
{
    if (!path) {
        snprintf(err, errsize, "config: tls.%s is not set (the daemon needs tls.ca, tls.cert and "
                               "tls.key)", key);
        return -EINVAL;
    }
    if (access(path, R_OK) != 0) {
        snprintf(err, errsize, "config: tls.%s: cannot read %s: %s", key, path, strerror(errno));
        return -EINVAL;
    }
    return 0;
}

static int copy_config(struct config *dst, const struct config *src)
{
    *dst = *src;
    dst->tls_ca = src->tls_ca ? strdup(src->tls_ca) : NULL;
    dst->tls_cert = src->tls_cert ? strdup(src->tls_cert) : NULL;
    dst->tls_key = src->tls_key ? strdup(src->tls_key) : NULL;
    if ((src->tls_ca && !dst->tls_ca) || (src->tls_cert && !dst->tls_cert) ||
        (src->tls_key && !dst->tls_key)) {
        config_release(dst);
        return -ENOMEM;
    }
    return 0;
}

static int check_config(const struct config *cfg, char *err, size_t errsize)
{
    int rc;
    if ((rc = check_readable("ca", cfg->tls_ca, err, errsize)) ||
        (rc = check_readable("cert", cfg->tls_cert, err, errsize)) ||
        (rc = check_readable("key", cfg->tls_key, err, errsize)))
        return rc;
    return 0;
}

int poll_new(uv_loop_t *loop, struct store *store, const struct config *cfg,
             const struct poll_options *opt, struct poll **out, char *err, size_t errsize)
{
    *out = NULL;
    int rc = check_config(cfg, err, errsize);
    if (rc)
        return rc;
    struct tlsctx *tls;
    if ((rc = tlsctx_load(cfg->tls_ca, cfg->tls_cert, cfg->tls_key, &tls, err, errsize)))
        return rc;
    struct poll *p = calloc(1, sizeof(*p));
    if (!p || copy_config(&p->cfg, cfg)) {
        free(p);
        tlsctx_unref(tls);
        snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
    p->tls = tls;
    p->loop = loop;
    p->store = store;
    /* The writer waits for the lock briefly and then keeps its batch and retries on a timer,
     * instead of sitting for the CLI's 30 s inside SQLite: shutdown stays prompt. */
    sqlite3_busy_timeout(store_db(store), POLL_BUSY_TIMEOUT_MS);
    p->opt = *opt;
    p->multi = curl_multi_init();
    if (!p->multi) {
        config_release(&p->cfg);
        tlsctx_unref(p->tls);
        free(p);
        snprintf(err, errsize, "cannot create the transfer engine (libcurl)");
        return -ENOMEM;
    }
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, p->cfg.concurrency);
    uv_timer_t *timers[] = {&p->curl_timer, &p->sched_timer, &p->flush_timer, &p->grace_timer,
                            &p->stats_timer};
    _Static_assert(sizeof(timers) / sizeof(timers[0]) == POLL_TIMER_COUNT, "timer count");
    for (size_t i = 0; i < POLL_TIMER_COUNT; i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = p;
        p->open_handles++;
    }
    *out = p;
    return 0;
}

/* One line a minute at info level, so a healthy daemon logs little and a stuck one shows. */
static void on_stats_timer(uv_timer_t *t)
{
    struct poll *p = t->data;
    poll_log(LOG_INFO, NULL,
             "last %d s: %zu reports stored, %zu failed; %zu in flight, %zu waiting to be "
             "written, %zu hosts",
             POLL_STATS_EVERY_MS / 1000, p->stat_ok - p->last_ok, p->stat_failed - p->last_failed,
             p->in_flight, p->filling.count + p->writing.count, p->nhosts);
    p->last_ok = p->stat_ok;
    p->last_failed = p->stat_failed;
}

int poll_start(struct poll *p)
{
    if (!p->opt.round)
        uv_timer_start(&p->stats_timer, on_stats_timer, POLL_STATS_EVERY_MS, POLL_STATS_EVERY_MS);
    p->started = true;
    p->reload_wanted = true;
    maybe_start_job(p);
    return p->job == JOB_LOAD ? 0 : -EAGAIN;
}

int poll_reload(struct poll *p, const struct config *cfg)
{
    char err[512];
    struct config next;
    if (check_config(cfg, err, sizeof(err))) {
        poll_log(LOG_ERROR, NULL, "reload refused, keeping the old settings: %s", err);
        return -EINVAL;
    }
    struct tlsctx *tls;
    if (tlsctx_load(cfg->tls_ca, cfg->tls_cert, cfg->tls_key, &tls, err, sizeof(err))) {
        poll_log(LOG_ERROR, NULL, "reload refused, keeping the old settings: %s", err);
        return -EINVAL;
    }
    if (copy_config(&next, cfg)) {
        tlsctx_unref(tls);
        return -ENOMEM;
    }
    config_release(&p->cfg);
    p->cfg = next;
    tlsctx_unref(p->tls); /* transfers in flight hold their own reference */
    p->tls = tls;
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, p->cfg.concurrency);
    poll_log_set_level(p->cfg.log_level);
    p->reload_wanted = true;
    maybe_start_job(p);
    return 0;
}

void poll_free(struct poll *p)
{
    if (!p)
        return;
    if (p->multi) /* never started: nothing is on the loop but our timers */
        curl_multi_cleanup(p->multi);
    batch_release(&p->filling);
    batch_release(&p->writing);
    free_rows(p);
    for (size_t i = 0; i < p->nhosts; i++) {
        free(p->hosts[i].name);
        free(p->hosts[i].collector);
    }
    free(p->hosts);
    free(p->heap);
    orphans_free(p->risk, p->nrisk);
    orphans_free(p->scan, p->nscan);
    tlsctx_unref(p->tls);
    if (p->catalog) {
        ingest_release(&p->ingest);
        rules_free(p->catalog);
    }
    config_release(&p->cfg);
    free(p);
}

void poll_get_stats(const struct poll *p, struct poll_stats *st)
{
    st->hosts = p->nhosts;
    st->in_flight = p->in_flight;
    st->waiting = p->filling.count + p->writing.count;
    st->ok = p->stat_ok;
    st->failed = p->stat_failed;
}

const char *poll_store_error(const struct poll *p)
{
    return p->store_error[0] ? p->store_error : NULL;
}

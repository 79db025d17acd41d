/*
 * metrics.c — the numbers of the daemon's Prometheus endpoint (metrics.h): pull outcomes and
 * rounds counted on the loop, the per-site counts refreshed on a worker thread from gate_sites,
 * and the page in the text exposition format, written at scrape time.
 */
#include "metrics.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate.h"
#include "metrics_int.h"
#include "pollstatus.h"
#include "utc.h"

/* ---- outcomes ---- */

static const char *const outcome_names[OUTCOME_COUNT] = {
    "stored",       "connect",        "tls",        "timeout",       "http_status",
    "too_big",      "invalid_report", "wrong_host", "future_report", "older_report",
    "cert_revoked", "cert_changed",   "other",
};

const char *metrics_outcome_name(enum metrics_outcome o)
{
    return o < OUTCOME_COUNT ? outcome_names[o] : "other";
}

/* The poller's reasons (poll.h, pull/transfer.c, pull/writer.c) are read by their kind, as
 * `poll status` and `host show` read them (pollstatus_classify); no words are parsed here. */
enum metrics_outcome metrics_outcome_of(bool ok, const char *error)
{
    if (ok)
        return OUTCOME_STORED;
    /* No default: a new kind is a build error here until it has its label. */
    switch (pollstatus_classify(error)) {
    case PK_REFUSED:
    case PK_UNREACHABLE:
    case PK_DNS: return OUTCOME_CONNECT;
    case PK_TIMEOUT: return OUTCOME_TIMEOUT;
    case PK_TLS_WRONG_HOST:
    case PK_TLS_EXPIRED:
    case PK_TLS_UNTRUSTED:
    case PK_TLS: return OUTCOME_TLS;
    case PK_HTTP: return OUTCOME_HTTP_STATUS;
    case PK_TOO_BIG: return OUTCOME_TOO_BIG;
    case PK_INVALID: return OUTCOME_INVALID_REPORT;
    case PK_WRONG_HOST: return OUTCOME_WRONG_HOST;
    case PK_FUTURE: return OUTCOME_FUTURE_REPORT;
    case PK_OLDER: return OUTCOME_OLDER_REPORT;
    case PK_CERT_REVOKED: return OUTCOME_CERT_REVOKED;
    case PK_CERT_CHANGED: return OUTCOME_CERT_CHANGED;
    case PK_NONE:
    case PK_NOT_STORED:
    case PK_OTHER:
    case PK_COUNT: break;
    }
    return OUTCOME_OTHER;
}

/* ---- the per-site refresh (worker) ---- */

static void sites_free(struct metrics_site *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].code);
    free(s);
}

static int site_seen(const struct gate_site *g, void *arg)
{
    struct metrics *m = arg;
    struct metrics_site *grown = realloc(m->job_sites, (m->job_nsites + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    m->job_sites = grown;
    struct metrics_site *s = &m->job_sites[m->job_nsites];
    if (!(s->code = strdup(g->code)))
        return -ENOMEM;
    s->phase = g->phase;
    s->hosts = g->hosts;
    s->ready = g->ready;
    s->not_ready = g->not_ready;
    s->unknown = g->unknown;
    s->waived = g->waived;
    s->servers = g->servers;
    s->servers_gate_open = g->servers_gate_open;
    s->orphan_risk = g->orphan_risk;
    s->wire_alarm = g->wire_alarm;
    s->wire_not_probed = g->wire_not_probed;
    s->certs_expiring = 0;
    m->job_nsites++;
    return 0;
}

static int site_certs(const char *site, long count, void *arg)
{
    struct metrics *m = arg;
    for (size_t i = 0; i < m->job_nsites; i++)
        if (!strcmp(m->job_sites[i].code, site))
            m->job_sites[i].certs_expiring = count;
    return 0;
}

static void on_refresh_work(uv_work_t *w)
{
    struct metrics *m = w->data;
    const struct gate_time *t = &m->job_time;
    /* One read transaction: every site's counts from the same snapshot. */
    int rc = store_begin(m->store, false);
    if (!rc)
        rc = gate_sites(m->store, NULL, t, site_seen, m);
    if (!rc)
        rc = pollstatus_certs_expiring(m->store, t->now + METRICS_CERT_WINDOW_S, site_certs, m);
    if (rc)
        snprintf(m->job_err, sizeof(m->job_err), "%s",
                 rc == -ENOMEM ? "out of memory" : store_errmsg(m->store));
    store_rollback(m->store);
    m->job_rc = rc;
}

static void maybe_free(struct metrics *m);
static void start_refresh(struct metrics *m);

static void after_refresh_work(uv_work_t *w, int status)
{
    struct metrics *m = w->data;
    m->job_running = false;
    int rc = status ? status : m->job_rc;
    if (rc) {
        m->refresh_failures++;
        if (!m->closing)
            poll_log(LOG_ERROR, NULL, "metrics: per-site numbers not refreshed: %s",
                     status ? uv_strerror(status) : m->job_err);
        sites_free(m->job_sites, m->job_nsites);
    } else {
        sites_free(m->sites, m->nsites);
        m->sites = m->job_sites;
        m->nsites = m->job_nsites;
        m->refreshed_at = m->job_time.now;
        m->refresh_seconds = (double)(uv_hrtime() - m->job_started_ns) / 1e9;
    }
    m->job_sites = NULL;
    m->job_nsites = 0;
    if (m->closing) {
        maybe_free(m);
        return;
    }
    if (m->refresh_wanted)
        start_refresh(m);
}

static void start_refresh(struct metrics *m)
{
    if (m->closing)
        return;
    if (m->job_running) {
        m->refresh_wanted = true;
        return;
    }
    m->refresh_wanted = false;
    /* The windows are resolved here, on the loop, where SIGHUP replaces the config. */
    m->job_time = gate_time_config(utc_now(), m->cfg);
    m->job_started_ns = uv_hrtime();
    m->job_err[0] = '\0';
    m->job_rc = 0;
    m->work.data = m;
    if (uv_queue_work(m->loop, &m->work, on_refresh_work, after_refresh_work) == 0)
        m->job_running = true;
    else
        m->refresh_failures++;
}

static void on_refresh_timer(uv_timer_t *t) { start_refresh(t->data); }

/* ---- pull outcomes and rounds (loop) ---- */

static void round_reset(struct metrics *m)
{
    if (m->seen)
        memset(m->seen, 0, m->seen_bytes);
    m->nseen = 0;
    m->round_started_ns = uv_hrtime();
}

void metrics_note_outcome(struct metrics *m, struct poll *p, const struct poll_outcome *o)
{
    enum metrics_outcome outcome = metrics_outcome_of(o->ok, o->error);
    assert(outcome < OUTCOME_COUNT);
    m->pulls[outcome]++;
    if (m->rounds_untracked)
        return;
    long long id = o->host_id;
    if (id < 0 || id >= METRICS_MAX_HOST_ID) {
        m->rounds_untracked = true;
        poll_log(LOG_WARN, NULL, "metrics: host id %lld too large, rounds not tracked", id);
        return;
    }
    size_t byte = (size_t)(id / 8);
    if (byte >= m->seen_bytes) {
        size_t n = m->seen_bytes ? m->seen_bytes : 4096;
        while (n <= byte)
            n *= 2;
        unsigned char *grown = realloc(m->seen, n);
        if (!grown) {
            m->rounds_untracked = true;
            poll_log(LOG_WARN, NULL, "metrics: out of memory, rounds not tracked");
            return;
        }
        memset(grown + m->seen_bytes, 0, n - m->seen_bytes);
        m->seen = grown;
        m->seen_bytes = n;
    }
    unsigned char bit = (unsigned char)(1u << (id % 8));
    if (!(m->seen[byte] & bit)) {
        m->seen[byte] |= bit;
        m->nseen++;
    }
    struct poll_stats st;
    poll_get_stats(p, &st);
    if (st.hosts > 0 && m->nseen >= st.hosts) {
        m->rounds++;
        m->last_round_seconds = (double)(uv_hrtime() - m->round_started_ns) / 1e9;
        m->last_round_at = utc_now();
        round_reset(m);
        start_refresh(m); /* the per-site numbers after each round */
    }
}

/* ---- the page ---- */

struct page {
    char *buf;
    size_t len, cap;
    bool oom;
};

static void put(struct page *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct page *pg, const char *fmt, ...)
{
    if (pg->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(pg->buf + pg->len, pg->cap - pg->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            pg->oom = true;
            return;
        }
        if ((size_t)n < pg->cap - pg->len) {
            pg->len += (size_t)n;
            return;
        }
        size_t cap = pg->cap * 2 + (size_t)n;
        char *grown = realloc(pg->buf, cap);
        if (!grown) {
            pg->oom = true;
            return;
        }
        pg->buf = grown;
        pg->cap = cap;
    }
}

static void head(struct page *pg, const char *name, const char *type, const char *help)
{
    put(pg, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and line feed escaped (the format's three). Site
 * codes are three letters or digits (inventory.h); escaped all the same. */
static const char *label(const char *v, char *buf, size_t size)
{
    size_t o = 0;
    for (; *v && o + 3 < size; v++) {
        if (*v == '\\' || *v == '"') {
            buf[o++] = '\\';
            buf[o++] = *v;
        } else if (*v == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *v;
        }
    }
    buf[o] = '\0';
    return buf;
}

#define PER_SITE(pg, name, field)                                                                  \
    for (size_t i = 0; i < m->nsites; i++)                                                         \
    put(pg, name "{site=\"%s\"} %ld\n", label(m->sites[i].code, lb, sizeof(lb)), m->sites[i].field)

void metrics_watch_probe(struct metrics *m, metrics_probe_fn fn, void *arg)
{
    m->probe_fn = fn;
    m->probe_arg = arg;
}

char *metrics_render(struct metrics *m, size_t *len)
{
    struct page pg = {.cap = 8192};
    if (!(pg.buf = malloc(pg.cap)))
        return NULL;
    pg.buf[0] = '\0';
    char lb[64];

    head(&pg, "tlsgate_build_info", "gauge",
         "The tlsgate version serving these metrics (value 1).");
    put(&pg, "tlsgate_build_info{version=\"%s\"} 1\n", label(TLSGATE_VERSION, lb, sizeof(lb)));

    /* Per site, from the last refresh. */
    head(&pg, "tlsgate_hosts", "gauge",
         "Hosts of the inventory by site and readiness state (unknown: never reported or stale; "
         "a waived host counts in its state).");
    for (size_t i = 0; i < m->nsites; i++) {
        const struct metrics_site *s = &m->sites[i];
        label(s->code, lb, sizeof(lb));
        put(&pg, "tlsgate_hosts{site=\"%s\",state=\"ready\"} %ld\n", lb, s->ready);
        put(&pg, "tlsgate_hosts{site=\"%s\",state=\"not_ready\"} %ld\n", lb, s->not_ready);
        put(&pg, "tlsgate_hosts{site=\"%s\",state=\"unknown\"} %ld\n", lb, s->unknown);
    }
    head(&pg, "tlsgate_hosts_waived", "gauge", "Hosts under an active waiver, by site.");
    PER_SITE(&pg, "tlsgate_hosts_waived", waived);
    head(&pg, "tlsgate_server_gates", "gauge",
         "Servers (hosts with a site-system role) by site and gate: open (may disable the legacy "
         "protocols now) or blocked.");
    for (size_t i = 0; i < m->nsites; i++) {
        const struct metrics_site *s = &m->sites[i];
        label(s->code, lb, sizeof(lb));
        put(&pg, "tlsgate_server_gates{site=\"%s\",gate=\"open\"} %ld\n", lb, s->servers_gate_open);
        put(&pg, "tlsgate_server_gates{site=\"%s\",gate=\"blocked\"} %ld\n", lb,
            s->servers - s->servers_gate_open);
    }
    head(&pg, "tlsgate_servers_orphan_risk", "gauge",
         "Servers that report the legacy protocols disabled while their gate is blocked, by "
         "site.");
    PER_SITE(&pg, "tlsgate_servers_orphan_risk", orphan_risk);
    head(&pg, "tlsgate_site_wire_not_probed", "gauge",
         "Sites in enforce: site systems held there as not probed (never, could not test TLS "
         "1.0/1.1, or their last probe older than the config's probe.max_age), by site.");
    PER_SITE(&pg, "tlsgate_site_wire_not_probed", wire_not_probed);
    head(&pg, "tlsgate_site_wire_alarm", "gauge",
         "ALARM. Sites in complete: site systems whose last probe found SSL 3.0, TLS 1.0 or "
         "1.1 accepted on the wire, by site.");
    PER_SITE(&pg, "tlsgate_site_wire_alarm", wire_alarm);
    head(&pg, "tlsgate_collector_certificates_expiring", "gauge",
         "Hosts whose collector certificate, as the last handshake showed it, has expired or "
         "expires within 14 days, by site.");
    PER_SITE(&pg, "tlsgate_collector_certificates_expiring", certs_expiring);
    head(&pg, "tlsgate_site_phase", "gauge",
         "The phase each site is in (1 for its phase, 0 for the others).");
    for (size_t i = 0; i < m->nsites; i++) {
        label(m->sites[i].code, lb, sizeof(lb));
        for (int ph = PHASE_INVENTORY; ph <= PHASE_COMPLETE; ph++)
            put(&pg, "tlsgate_site_phase{site=\"%s\",phase=\"%s\"} %d\n", lb,
                phase_name((enum phase_id)ph), m->sites[i].phase == (enum phase_id)ph);
    }
    head(&pg, "tlsgate_metrics_refresh_timestamp_seconds", "gauge",
         "When the per-site numbers above were read from the database (Unix time; absent "
         "before the first read).");
    if (m->refreshed_at)
        put(&pg, "tlsgate_metrics_refresh_timestamp_seconds %lld\n", m->refreshed_at);
    head(&pg, "tlsgate_metrics_refresh_duration_seconds", "gauge",
         "How long the last read of the per-site numbers took (absent before the first).");
    if (m->refreshed_at)
        put(&pg, "tlsgate_metrics_refresh_duration_seconds %.3f\n", m->refresh_seconds);
    head(&pg, "tlsgate_metrics_refresh_failures_total", "counter",
         "Reads of the per-site numbers that failed (the previous numbers stay served).");
    put(&pg, "tlsgate_metrics_refresh_failures_total %llu\n", m->refresh_failures);

    /* Counted from the poller's outcomes. */
    head(&pg, "tlsgate_pulls_total", "counter",
         "Pull attempts stored since the daemon started, by outcome (stored, or why not).");
    for (int o = 0; o < OUTCOME_COUNT; o++)
        put(&pg, "tlsgate_pulls_total{outcome=\"%s\"} %llu\n", outcome_names[o], m->pulls[o]);
    head(&pg, "tlsgate_rounds_total", "counter",
         "Rounds completed since the daemon started (a round: every scheduled host attempted "
         "once).");
    put(&pg, "tlsgate_rounds_total %llu\n", m->rounds);
    if (!m->rounds_untracked) {
        head(&pg, "tlsgate_round_duration_seconds", "gauge",
             "How long the last completed round took (absent before the first).");
        if (m->rounds)
            put(&pg, "tlsgate_round_duration_seconds %.3f\n", m->last_round_seconds);
        head(&pg, "tlsgate_last_successful_round_timestamp_seconds", "gauge",
             "When the last round completed (Unix time; absent before the first).");
        if (m->rounds)
            put(&pg, "tlsgate_last_successful_round_timestamp_seconds %lld\n", m->last_round_at);
    }

    if (m->probe_fn) {
        struct metrics_probe pr = {0};
        m->probe_fn(m->probe_arg, &pr);
        head(&pg, "tlsgate_probe_rounds_total", "counter",
             "Wire probe rounds (config probe.interval) completed since the daemon started.");
        put(&pg, "tlsgate_probe_rounds_total %llu\n", pr.rounds);
        head(&pg, "tlsgate_probe_handshakes_total", "counter",
             "Capped handshakes the daemon's probe stored, by result.");
        put(&pg, "tlsgate_probe_handshakes_total{result=\"accepted\"} %llu\n", pr.accepted);
        put(&pg, "tlsgate_probe_handshakes_total{result=\"refused\"} %llu\n", pr.refused);
        put(&pg, "tlsgate_probe_handshakes_total{result=\"untested\"} %llu\n", pr.untested);
        head(&pg, "tlsgate_probe_legacy_accepted_total", "counter",
             "Of those, handshakes at SSL 3.0, TLS 1.0 or TLS 1.1 a server accepted.");
        put(&pg, "tlsgate_probe_legacy_accepted_total %llu\n", pr.legacy_accepted);
    }

    /* The poller now. */
    struct poll_stats st = {0};
    size_t overdue = 0;
    if (m->poll) {
        poll_get_stats(m->poll, &st);
        overdue = poll_overdue(m->poll, utc_now() - METRICS_OVERDUE_S);
    }
    head(&pg, "tlsgate_hosts_scheduled", "gauge", "Hosts the daemon pulls on schedule.");
    put(&pg, "tlsgate_hosts_scheduled %zu\n", st.hosts);
    head(&pg, "tlsgate_hosts_overdue", "gauge",
         "Hosts whose pull is due for more than 60 s and has not started (the daemon is behind).");
    put(&pg, "tlsgate_hosts_overdue %zu\n", overdue);
    head(&pg, "tlsgate_pulls_in_flight", "gauge", "Transfers running now.");
    put(&pg, "tlsgate_pulls_in_flight %zu\n", st.in_flight);
    head(&pg, "tlsgate_results_waiting", "gauge",
         "Finished pulls waiting to be written to the database.");
    put(&pg, "tlsgate_results_waiting %zu\n", st.waiting);

    if (pg.oom) {
        free(pg.buf);
        return NULL;
    }
    *len = pg.len;
    return pg.buf;
}

/* ---- lifecycle ---- */

static void maybe_free(struct metrics *m)
{
    if (m->open_handles > 0 || m->job_running)
        return;
    store_close(m->store);
    sites_free(m->sites, m->nsites);
    sites_free(m->job_sites, m->job_nsites);
    free(m->seen);
    free(m);
}

void metrics__handle_closed(uv_handle_t *h)
{
    struct metrics *m = h->data;
    m->open_handles--;
    maybe_free(m);
}

int metrics_start(uv_loop_t *loop, const char *db_path, const struct config *cfg, struct poll *poll,
                  struct metrics **out, char *err, size_t errsize)
{
    *out = NULL;
    char addr[64], why[160];
    unsigned port;
    if (config_split_address(cfg->metrics, addr, sizeof(addr), &port, why, sizeof(why))) {
        snprintf(err, errsize, "config: metrics: %s", why);
        return -EINVAL;
    }
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
    m->loop = loop;
    m->cfg = cfg;
    m->poll = poll;
    char serr[STORE_ERROR_SIZE];
    int rc = store_open(db_path, false, &m->store, serr, sizeof(serr));
    if (rc) {
        snprintf(err, errsize, "metrics: %s", serr);
        free(m);
        return -EIO;
    }
    if ((rc = metrics__http_start(m, addr, port, err, errsize))) {
        store_close(m->store);
        free(m);
        return rc;
    }
    uv_timer_init(loop, &m->refresh_timer);
    m->refresh_timer.data = m;
    m->open_handles++;
    uv_timer_start(&m->refresh_timer, on_refresh_timer, METRICS_REFRESH_S * 1000,
                   METRICS_REFRESH_S * 1000);
    round_reset(m);
    start_refresh(m);
    *out = m;
    return 0;
}

unsigned metrics_port(const struct metrics *m) { return m->port; }

void metrics_close(struct metrics *m)
{
    if (!m || m->closing)
        return;
    m->closing = true;
    m->poll = NULL;
    metrics__http_close(m);
    uv_close((uv_handle_t *)&m->refresh_timer, metrics__handle_closed);
}

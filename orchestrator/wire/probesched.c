/*
 * probesched.c — the daemon's probe thread (probesched.h). States: waiting (on the condition
 * variable, until a round is due or a stop is asked) -> probing (one slice after another) ->
 * waiting; a stop request in either state ends the thread after the current slice.
 */
#include "probesched.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "inventory.h"
#include "store.h"
#include "sweep.h"
#include "utc.h"
#include "wire.h"

/* A slice that meets a busy database is retried this many times, this far apart. */
#define PROBESCHED_STORE_TRIES 20
#define PROBESCHED_STORE_RETRY_MS 250

struct probesched {
    struct probesched_options o;
    char *db_path;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;                  /* under mu */
    unsigned generation;        /* under mu: bumped by each probesched_reconfigure */
    struct probesched_stats st; /* under mu */
};

/* The settings now (o.interval_s and o.probe may change under mu) and their generation. */
static unsigned settings(struct probesched *p, long *interval_s, struct probe_opts *probe)
{
    pthread_mutex_lock(&p->mu);
    *interval_s = p->o.interval_s;
    *probe = p->o.probe;
    unsigned g = p->generation;
    pthread_mutex_unlock(&p->mu);
    return g;
}

static bool stopping(struct probesched *p)
{
    pthread_mutex_lock(&p->mu);
    bool stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

/* Waits `seconds` on the monotonic clock, or until a stop is asked or the settings change from
 * `generation`; true when a stop is asked. */
static bool wait_or_stop(struct probesched *p, long long seconds, unsigned generation)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)seconds;
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->generation == generation &&
           pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT)
        ;
    bool stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Stores one slice in its own transaction, retrying a busy database. */
static int store_slice(struct probesched *p, struct store *s, const struct sweep *w, size_t from,
                       size_t to)
{
    int rc = -EBUSY;
    for (int i = 0; i < PROBESCHED_STORE_TRIES && rc == -EBUSY && !stopping(p); i++) {
        if (i)
            sleep_ms(PROBESCHED_STORE_RETRY_MS);
        rc = store_begin(s, true);
        if (!rc)
            rc = sweep_store(s, w, from, to, NULL, NULL);
        if (!rc)
            rc = store_commit(s);
        if (rc)
            store_rollback(s);
    }
    return rc;
}

/* Logs each host of the slice that accepted a legacy protocol, and counts the outcomes. */
static void note_slice(struct probesched *p, const struct sweep *w, size_t from, size_t to)
{
    char found[256] = "";
    size_t used = 0;
    for (size_t i = from; i < to; i++) {
        const struct probe_job *j = &w->jobs[i];
        pthread_mutex_lock(&p->mu);
        p->st.handshakes[j->result]++;
        p->st.legacy_accepted += j->result == WIRE_ACCEPTED && WIRE_PROTO_LEGACY(j->proto);
        pthread_mutex_unlock(&p->mu);
        if (j->result == WIRE_ACCEPTED && WIRE_PROTO_LEGACY(j->proto) && used < sizeof(found)) {
            int k = snprintf(found + used, sizeof(found) - used, "%s%s on %d", used ? ", " : "",
                             wire_proto_name(j->proto), j->port.port);
            used += k > 0 ? (size_t)k : 0;
        }
        bool host_ends = i + 1 == to || w->host_ids[i + 1] != w->host_ids[i];
        if (host_ends && used) {
            p->o.log(LOG_WARN, j->sni, "probe: legacy protocol accepted on the wire: %s", found);
            found[0] = '\0';
            used = 0;
        }
    }
}

static int alarm_line(const char *site, const char *host, const char *reason, void *arg)
{
    struct probesched *p = arg;
    p->o.log(LOG_ERROR, host, "ALARM (site %s is complete): %s", site, reason);
    return 0;
}

/* Logs the alarm: each site system of a site in `complete` whose last probe (this thread's or
 * `tlsgate probe`'s) found a legacy protocol accepted. */
static void log_alarms(struct probesched *p, struct store *s)
{
    int rc = store_begin(s, false);
    if (!rc)
        rc = wire_alarms_each(s, ROLE_SERVER_MASK, utc_now(), alarm_line, p);
    if (rc)
        p->o.log(LOG_ERROR, NULL, "probe: cannot read the wire alarms: %s", store_errmsg(s));
    store_rollback(s);
}

/* One round over every site system. Returns 0, or the error (logged) of a plan, a self-test
 * or a slice that could not be stored. */
static int run_round(struct probesched *p, struct store *s, const struct probe_opts *po)
{
    struct sweep w = {0};
    int rc = sweep_plan(s, NULL, NULL, &w);
    if (rc) {
        p->o.log(LOG_ERROR, NULL, "probe: cannot read the site systems: %s",
                 rc == -ENOMEM ? "out of memory" : store_errmsg(s));
        sweep_release(&w);
        return rc;
    }
    struct probe_selftest st;
    char err[STORE_ERROR_SIZE];
    if ((rc = probe_selftest(&st, p->o.selftest_deny, err, sizeof(err)))) {
        p->o.log(LOG_ERROR, NULL, "probe: %s", err);
        sweep_release(&w);
        return rc;
    }
    for (size_t k = 0; k < SWEEP_NPROTOCOLS; k++)
        if (!st.can[sweep_protocols[k]])
            p->o.log(LOG_DEBUG, NULL, "probe: %s could not be tested: %s",
                     wire_proto_label(sweep_protocols[k]), st.why[sweep_protocols[k]]);
    long long started = utc_now();
    size_t slice = (size_t)po->concurrency;
    size_t from = 0, done = 0;
    long accepted = 0, untested = 0;
    int failed = 0;
    while (from < w.n && !stopping(p)) {
        size_t to = sweep_slice_end(&w, from, slice);
        rc = probe_run(w.jobs + from, to - from, &st, po);
        if (!rc)
            rc = store_slice(p, s, &w, from, to);
        if (rc) {
            p->o.log(LOG_ERROR, NULL, "probe: cannot store the outcomes: %s",
                     rc == -EBUSY || rc == -EIO ? store_errmsg(s) : strerror(-rc));
            pthread_mutex_lock(&p->mu);
            p->st.store_failures++;
            pthread_mutex_unlock(&p->mu);
            failed = rc;
        } else {
            note_slice(p, &w, from, to);
            for (size_t i = from; i < to; i++) {
                accepted += w.jobs[i].result == WIRE_ACCEPTED && WIRE_PROTO_LEGACY(w.jobs[i].proto);
                untested += w.jobs[i].result == WIRE_UNTESTED;
            }
            done = to;
        }
        from = to;
    }
    if (from >= w.n) {
        pthread_mutex_lock(&p->mu);
        p->st.rounds++;
        p->st.last_round_at = utc_now();
        pthread_mutex_unlock(&p->mu);
    }
    bool finished = from >= w.n;
    p->o.log(LOG_INFO, NULL,
             "probe round %s: %ld site system%s, %zu handshakes stored, %ld legacy accepted, %ld "
             "untested (%lld s)",
             from >= w.n ? "done" : "stopped", w.hosts, w.hosts == 1 ? "" : "s", done, accepted,
             untested, utc_now() - started);
    sweep_release(&w);
    if (finished)
        log_alarms(p, s);
    return failed;
}

static void *thread_main(void *arg)
{
    struct probesched *p = arg;
    struct store *s = NULL;
    char err[STORE_ERROR_SIZE];
    if (store_open(p->db_path, false, &s, err, sizeof(err))) {
        p->o.log(LOG_ERROR, NULL, "probe: cannot open the database: %s", err);
        return NULL;
    }
    log_alarms(p, s); /* what is stored already, before the first round is due */
    unsigned logged = ~0u;
    while (!stopping(p)) {
        long interval;
        struct probe_opts po;
        unsigned generation = settings(p, &interval, &po);
        if (generation != logged) {
            if (interval > 0)
                p->o.log(LOG_INFO, NULL, "probe: every %ld s, %d handshakes at once, %ld ms each",
                         interval, po.concurrency, po.timeout_ms);
            else
                p->o.log(LOG_INFO, NULL, "probe: off (probe.interval 0)");
            logged = generation;
        }
        long long oldest;
        long long wait = PROBESCHED_CHECK_S;
        if (interval <= 0) {
            /* Off until the settings change: nothing to look at. */
        } else if (wire_probe_oldest(s, &oldest)) {
            p->o.log(LOG_ERROR, NULL, "probe: cannot read the schedule: %s", store_errmsg(s));
        } else if (oldest >= 0) {
            long long due = oldest + interval, now = utc_now();
            /* After a round the next due time follows from what it stored; after a failed one
             * the thread waits before it tries again. */
            if (due <= now && !run_round(p, s, &po))
                continue;
            if (due > now && due - now < wait)
                wait = due - now;
        }
        if (wait_or_stop(p, wait, generation))
            break;
    }
    store_close(s);
    return NULL;
}

int probesched_start(const struct probesched_options *o, struct probesched **out, char *err,
                     size_t errsize)
{
    struct probesched *p = calloc(1, sizeof(*p));
    if (!p || !(p->db_path = strdup(o->db_path))) {
        free(p);
        snprintf(err, errsize, "probe: out of memory");
        return -ENOMEM;
    }
    p->o = *o;
    p->o.db_path = p->db_path;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&p->thread, NULL, thread_main, p);
    if (rc) {
        snprintf(err, errsize, "probe: cannot start its thread: %s", strerror(rc));
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p->db_path);
        free(p);
        return -rc;
    }
    *out = p;
    return 0;
}

void probesched_stop(struct probesched *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->db_path);
    free(p);
}

void probesched_reconfigure(struct probesched *p, long interval_s, const struct probe_opts *probe)
{
    pthread_mutex_lock(&p->mu);
    p->o.interval_s = interval_s;
    p->o.probe = *probe;
    p->generation++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void probesched_get_stats(struct probesched *p, struct probesched_stats *st)
{
    pthread_mutex_lock(&p->mu);
    *st = p->st;
    pthread_mutex_unlock(&p->mu);
}

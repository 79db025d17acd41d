/*
 * poll.c — the pull engine's lifecycle (poll.h): creating it, starting, reloading, stopping and
 * freeing it, and the one state it is in (poll_int.h lists the states and their transitions).
 * The jobs live in the other files of pull/ (poll_int.h says which).
 */
#include "poll.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "poll_int.h"
#include "report_html.h"
#include "rules.h"
#include "store.h"
#include "tlsctx.h"
#include "utc.h"

void poll__set_state(struct poll *p, enum poll_state to)
{
    /* The transitions of poll_int.h, and only those. */
    assert((p->state == POLL_NEW && to == POLL_RUNNING) ||
           (p->state == POLL_RUNNING && to == POLL_STOPPING) ||
           (p->state == POLL_STOPPING && to == POLL_ABANDONED) ||
           ((p->state == POLL_STOPPING || p->state == POLL_ABANDONED) && to == POLL_CLOSING) ||
           (p->state == POLL_CLOSING && to == POLL_STOPPED));
    p->state = to;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct poll *p = h->data;
    p->open_handles--;
    poll__check_finished(p);
}

static void close_everything(struct poll *p)
{
    /* libcurl may still call the socket callback during cleanup (cached connections). */
    poll__set_state(p, POLL_CLOSING);
    curl_multi_cleanup(p->multi);
    p->multi = NULL;
    uv_close((uv_handle_t *)&p->curl_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->sched_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->grace_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->stats_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->inv_timer, on_handle_closed);
}

void poll__check_finished(struct poll *p)
{
    /* multi lives exactly until CLOSING; nothing is in flight once transfers are abandoned. */
    assert((p->multi != NULL) == (p->state < POLL_CLOSING));
    assert(p->state < POLL_ABANDONED || p->in_flight == 0);
    if (p->opt.round && p->state != POLL_NEW && !p->round_done_called && p->round_left == 0 &&
        p->job != JOB_LOAD &&
        (p->store_error[0] ||
         (p->in_flight == 0 && p->job == JOB_NONE && !p->filling.count && !p->writing.count))) {
        p->round_done_called = true;
        /* The round's history point and status page (report_html.h); the store is free here. */
        if (!p->store_error[0] && p->state == POLL_RUNNING &&
            report_html_round(p->store, &p->cfg, utc_now(), true, NULL))
            snprintf(p->store_error, sizeof(p->store_error), "%s", store_errmsg(p->store));
        if (p->opt.on_round_done)
            p->opt.on_round_done(p, p->opt.data);
        return;
    }
    if (p->state < POLL_STOPPING || p->state == POLL_STOPPED)
        return;
    if (p->state < POLL_CLOSING) {
        if (p->in_flight > 0 && p->state != POLL_ABANDONED)
            return;
        /* Everything fetched is written before closing; a busy store is waited out. */
        if (p->job != JOB_NONE || p->filling.count || p->writing.count) {
            poll__maybe_start_job(p);
            return;
        }
        close_everything(p);
        return;
    }
    if (p->open_handles == 0 && p->open_socks == 0) {
        poll__set_state(p, POLL_STOPPED);
        if (p->opt.on_stopped)
            p->opt.on_stopped(p, p->opt.data);
    }
}

static void on_grace_over(uv_timer_t *t)
{
    struct poll *p = t->data;
    poll__set_state(p, POLL_ABANDONED);
    poll__abandon_transfers(p);
    poll__check_finished(p);
}

void poll_stop(struct poll *p, unsigned grace_ms)
{
    /* A stop comes after poll_start (a poller never started is only freed). A second stop
     * (another SIGTERM) runs again until transfers are abandoned; after that it has nothing to
     * add. */
    assert(p->state != POLL_NEW);
    if (p->state >= POLL_ABANDONED)
        return;
    if (p->state == POLL_RUNNING)
        poll__set_state(p, POLL_STOPPING);
    uv_timer_stop(&p->sched_timer);
    uv_timer_stop(&p->stats_timer);
    /* A second stop (another SIGTERM) keeps the running bound; it must not lift it. */
    if (p->in_flight > 0 && !uv_is_active((uv_handle_t *)&p->grace_timer))
        uv_timer_start(&p->grace_timer, on_grace_over, grace_ms, 0);
    else if (p->in_flight == 0)
        uv_timer_stop(&p->grace_timer);
    poll__check_finished(p);
}

static int check_readable(const char *key, const char *path, char *err, size_t errsize)
{
    if (!path) {
        snprintf(err, errsize,
                 "config: tls.%s is not set (the daemon needs tls.ca, tls.cert and "
                 "tls.key)",
                 key);
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
    if (opt->tls)
        tls = tlsctx_ref(opt->tls);
    else if ((rc = tlsctx_load(cfg->tls_ca, cfg->tls_cert, cfg->tls_key, &tls, err, errsize)))
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
    if (poll__multi_init(p)) {
        config_release(&p->cfg);
        tlsctx_unref(p->tls);
        free(p);
        snprintf(err, errsize, "cannot create the transfer engine (libcurl)");
        return -ENOMEM;
    }
    uv_timer_t *timers[] = {&p->curl_timer,  &p->sched_timer, &p->flush_timer,
                            &p->grace_timer, &p->stats_timer, &p->inv_timer};
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

/* The inventory may have changed (an import, a removal): the worker compares the counter. */
static void on_inv_timer(uv_timer_t *t)
{
    struct poll *p = t->data;
    p->check_wanted = true;
    poll__maybe_start_job(p);
}

int poll_start(struct poll *p)
{
    if (!p->opt.round) {
        uv_timer_start(&p->stats_timer, on_stats_timer, POLL_STATS_EVERY_MS, POLL_STATS_EVERY_MS);
        uv_timer_start(&p->inv_timer, on_inv_timer, POLL_INVENTORY_CHECK_MS,
                       POLL_INVENTORY_CHECK_MS);
    }
    poll__set_state(p, POLL_RUNNING);
    p->reload_wanted = true;
    poll__maybe_start_job(p);
    return p->job == JOB_LOAD ? 0 : -EAGAIN;
}

int poll_reload(struct poll *p, const struct config *cfg)
{
    char err[STORE_ERROR_SIZE];
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
    poll__maybe_start_job(p);
    return 0;
}

void poll_free(struct poll *p)
{
    if (!p)
        return;
    assert(p->state == POLL_NEW || p->state == POLL_STOPPED);
    if (p->multi) /* never started: nothing is on the loop but our timers */
        curl_multi_cleanup(p->multi);
    poll__batch_release(&p->filling);
    poll__batch_release(&p->writing);
    poll__free_rows(p);
    for (size_t i = 0; i < p->nhosts; i++) {
        free(p->hosts[i].name);
        free(p->hosts[i].collector);
    }
    free(p->hosts);
    free(p->heap);
    poll__orphans_free(p->risk, p->nrisk);
    poll__orphans_free(p->scan, p->nscan);
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

/*
 * writer.c — the worker thread and the one place the pull engine writes SQL (poll.h, "writer"):
 * the inventory load, batches of results validated and stored in one transaction each (the
 * `poll` table here, reports and verdicts through ingest.h), the queue of jobs, and what happens
 * back on the loop when a job ends. The store is touched only by the job running on the worker.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ingest.h"
#include "invimport.h"
#include "poll_int.h"
#include "report.h"
#include "rules.h"
#include "store.h"
#include "utc.h"

static void result_release(struct result *r)
{
    free(r->name);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

void poll__batch_release(struct batch *b)
{
    for (size_t i = 0; i < b->count; i++)
        result_release(&b->items[i]);
    free(b->items);
    memset(b, 0, sizeof(*b));
}

bool poll__batch_full(const struct batch *b)
{
    return b->count >= POLL_BATCH_MAX || b->bytes >= POLL_PENDING_BYTES_MAX;
}

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

struct rows_load {
    struct poll *p;
    size_t *cap;
};

static int load_row(sqlite3_stmt *st, void *arg)
{
    struct rows_load *l = arg;
    struct poll *p = l->p;
    if (p->nrows == *l->cap) {
        size_t cap = *l->cap ? *l->cap * 2 : 256;
        struct host_row *nr = realloc(p->rows, cap * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        p->rows = nr;
        *l->cap = cap;
    }
    struct host_row *r = &p->rows[p->nrows];
    r->id = sqlite3_column_int64(st, 0);
    r->name = strdup((const char *)sqlite3_column_text(st, 1));
    r->collector = strdup((const char *)sqlite3_column_text(st, 2));
    r->next_at = sqlite3_column_int64(st, 3);
    if (!r->name || !r->collector) {
        free(r->name);
        free(r->collector);
        return -ENOMEM;
    }
    p->nrows++;
    return 0;
}

int poll__load_rows(struct poll *p)
{
    int rc = inv_generation(p->store, &p->job_generation);
    if (rc) {
        snprintf(p->job_err, sizeof(p->job_err), "%s", store_errmsg(p->store));
        return rc;
    }
    if (p->load_if_changed && p->job_generation == p->inv_generation) {
        p->load_skipped = true; /* the usual answer: nothing to do */
        return 0;
    }
    rc = load_catalog(p, p->job_err, sizeof(p->job_err));
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
    struct rows_load load = {p, &cap};
    rc = store_each(p->store, st, "read the inventory", load_row, &load);
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
            int rc = ingest_one_body(&p->ingest, r->host_id, roles, report, r->body, r->len, now);
            json_decref(report);
            if (rc == -EBUSY || rc == -EIO || rc == -ENOMEM)
                return rc; /* the message, naming the host, is on the store */
            if (rc == -ESTALE)
                snprintf(r->error, sizeof(r->error), "older than stored report");
            else if (rc)
                snprintf(r->error, sizeof(r->error), "report not stored: %s",
                         store_errmsg(p->store));
            else
                r->ok = true;
        }
    }

    poll__scrub(r->error);
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
    if (r->cert_not_after)
        sqlite3_bind_int64(upsert, 7, r->cert_not_after);
    else
        sqlite3_bind_null(upsert, 7);
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
                            "last_error, failures, next_at, cert_not_after) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                            "ON CONFLICT (host_id) DO UPDATE SET "
                            "last_attempt_at = ?2, "
                            "last_success_at = coalesce(?3, last_success_at), "
                            "last_error = ?4, failures = ?5, next_at = ?6, "
                            "cert_not_after = coalesce(?7, cert_not_after)",
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

static void on_work(uv_work_t *w)
{
    struct poll *p = w->data;
    p->job_err[0] = '\0';
    p->job_rc = p->job == JOB_LOAD    ? poll__load_rows(p)
                : p->job == JOB_FLUSH ? job_flush(p)
                                      : poll__orphans_scan(p);
}

static void after_flush(struct poll *p)
{
    struct batch *b = &p->writing;
    for (size_t i = 0; i < b->count; i++) {
        struct result *r = &b->items[i];
        struct host *h = poll__host_find(p, r->host_id);
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
                poll__heap_push(p, (size_t)(h - p->hosts));
            }
        }
        if (p->opt.on_outcome && r->next_at >= 0) {
            struct poll_outcome o = {.host_id = r->host_id,
                                     .host = r->name,
                                     .ok = r->ok,
                                     .error = r->ok ? NULL : r->error,
                                     .next_at = r->next_at};
            p->opt.on_outcome(p, &o, p->opt.data);
        }
    }
    poll__batch_release(b);
}

static void on_retry_timer(uv_timer_t *t);

static void after_work(uv_work_t *w, int status)
{
    struct poll *p = w->data;
    enum job_kind kind = p->job;
    p->job = JOB_NONE;
    int rc = status ? status : p->job_rc;
    bool check = p->load_if_changed;
    p->load_if_changed = false;
    if (kind == JOB_LOAD && !rc && p->load_skipped) {
        p->load_skipped = false;
    } else if (kind == JOB_LOAD) {
        if (!rc && check)
            poll_log(LOG_INFO, NULL, "inventory changed (an import or removal): reloading");
        if (rc || poll__apply_rows(p)) {
            if (!rc)
                snprintf(p->job_err, sizeof(p->job_err), "out of memory");
            poll_log(LOG_ERROR, NULL, "inventory not (re)loaded: %s", p->job_err);
            poll__free_rows(p);
            if (p->opt.round || !p->loaded) {
                /* Nothing loaded yet: idling with no host would look like a working daemon. */
                snprintf(p->store_error, sizeof(p->store_error), "%s", p->job_err);
                p->round_left = 0;
                if (!p->opt.round)
                    poll_stop(p, 0);
            }
        } else {
            p->loaded = true;
            p->inv_generation = p->job_generation;
            poll_log(LOG_INFO, NULL, "inventory: %zu hosts scheduled", p->nhosts);
        }
    } else if (kind == JOB_ORPHANS) {
        poll__orphans_report(p, rc);
    } else if (kind == JOB_FLUSH) {
        if (rc) {
            /* Kept whole and retried; in a one-shot round only a busy store is worth waiting. */
            if (p->state >= POLL_STOPPING &&
                (rc != -EBUSY || ++p->stop_retries > POLL_STOP_RETRIES)) {
                /* Shutting down: waiting longer could hold the exit forever; the collectors
                 * still have these reports and the next start fetches them again. */
                poll_log(LOG_ERROR, NULL, "%zu results not written at shutdown: %s",
                         p->writing.count, p->job_err);
                poll__batch_release(&p->writing);
            } else if (p->opt.round && rc != -EBUSY) {
                snprintf(p->store_error, sizeof(p->store_error), "%s", p->job_err);
                p->round_left = 0;
                poll__batch_release(&p->writing);
                poll__set_state(p, POLL_STOPPING);
            } else {
                p->retry_ms = !p->retry_ms                      ? POLL_RETRY_FIRST_MS
                              : p->retry_ms < POLL_RETRY_MAX_MS ? p->retry_ms * 2
                                                                : POLL_RETRY_MAX_MS;
                if (rc == -EBUSY)
                    poll_log(LOG_WARN, NULL, "database busy: %zu results kept, retried in %d ms",
                             p->writing.count, p->retry_ms);
                else
                    poll_log(LOG_ERROR, NULL, "%zu results kept, retried in %d ms: %s",
                             p->writing.count, p->retry_ms, p->job_err);
                uv_timer_start(&p->flush_timer, on_retry_timer, (uint64_t)p->retry_ms, 0);
                poll__check_finished(p);
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
    poll__maybe_start_job(p);
    poll__fill(p);
    poll__check_finished(p);
}

static void start_job(struct poll *p, enum job_kind kind)
{
    /* One job at a time: the worker owns the store, `writing` and `rows` while it runs. */
    assert(p->job == JOB_NONE && kind != JOB_NONE);
    assert(kind != JOB_FLUSH || p->writing.count > 0);
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
static void on_flush_timer(uv_timer_t *t) { poll__maybe_start_job(t->data); }

void poll__writer_kick(struct poll *p)
{
    if (poll__batch_full(&p->filling) || p->state >= POLL_STOPPING)
        poll__maybe_start_job(p);
    else if (!uv_is_active((uv_handle_t *)&p->flush_timer))
        uv_timer_start(&p->flush_timer, on_flush_timer, POLL_BATCH_DELAY_MS, 0);
}

void poll__maybe_start_job(struct poll *p)
{
    if (p->job != JOB_NONE || (uv_is_active((uv_handle_t *)&p->flush_timer) && p->writing.count))
        return;
    if (p->writing.count) { /* a batch that failed before: retry it as it is */
        start_job(p, JOB_FLUSH);
        return;
    }
    if (p->reload_wanted && p->state < POLL_STOPPING) {
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
    if (p->orphans_wanted && p->state < POLL_STOPPING) {
        p->orphans_wanted = false;
        start_job(p, JOB_ORPHANS);
        return;
    }
    if (p->check_wanted && p->loaded && p->state == POLL_RUNNING) {
        p->check_wanted = false;
        p->load_if_changed = true;
        start_job(p, JOB_LOAD);
    }
}

static void on_retry_timer(uv_timer_t *t)
{
    struct poll *p = t->data;
    if (p->job == JOB_NONE && p->writing.count)
        start_job(p, JOB_FLUSH);
}

int poll_accept_cert_change(struct store *s, long long host_id, bool *had)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "UPDATE poll SET cert_changed_at = NULL WHERE host_id = ? AND"
                           " cert_changed_at IS NOT NULL",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    rc = store_run(s, st, "accept certificate change");
    *had = !rc && sqlite3_changes(store_db(s)) > 0;
    return rc;
}

/*
 * evpull.c — GET /v1/evidence from the site systems and their rows into the evidence store
 * (evpull.h). One libcurl easy transfer per server, one after another: there are few site
 * systems next to the clients, and this runs after the report round, not in it.
 */
#include "evpull.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "inventory.h"
#include "poll.h"
#include "store.h"
#include "tlsctx.h"
#include "utc.h"
#include "wire.h"

#ifndef TLSGATE_VERSION
#define TLSGATE_VERSION "unknown"
#endif

/* ---- the summary ------------------------------------------------------------------------ */

/* A JSON integer >= min in *v. */
static bool int_at_least(json_t *j, long long min, long long *v)
{
    if (!json_is_integer(j) || json_integer_value(j) < min)
        return false;
    *v = json_integer_value(j);
    return true;
}

static bool time_of(json_t *j, long long *t)
{
    return json_is_string(j) && utc_parse_time(json_string_value(j), t) == 0;
}

/*
 * The summary into `agg`: key "CLIENT PROTOCOL DAY" -> [first, last, count], summed over ports.
 * 0, or -EINVAL with why in err (nothing of it is to be stored).
 */
static int summary_parse(const char *name, const char *body, size_t len, json_t *agg, char *err,
                         size_t errsize)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errsize, "not JSON (line %d: %s)", je.line, je.text);
        return -EINVAL;
    }
    int rc = -EINVAL;
    json_t *schema = json_object_get(root, "schema"), *host = json_object_get(root, "host");
    json_t *entries = json_object_get(root, "entries");
    if (!json_is_object(root) || !json_is_string(schema) ||
        strcmp(json_string_value(schema), EVPULL_SCHEMA) != 0) {
        snprintf(err, errsize, "schema is not \"%s\"", EVPULL_SCHEMA);
        goto out;
    }
    if (!json_is_string(host) || strcasecmp(json_string_value(host), name) != 0) {
        snprintf(err, errsize, "host is not %s", name);
        goto out;
    }
    if (!json_is_array(entries)) {
        snprintf(err, errsize, "entries is not an array");
        goto out;
    }
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        const char *client = json_string_value(json_object_get(e, "client"));
        const char *proto = json_string_value(json_object_get(e, "protocol"));
        unsigned char addr[16];
        enum wire_proto p;
        long long first, last, count, port;
        if (!client || strlen(client) >= 64 ||
            (inet_pton(AF_INET, client, addr) != 1 && inet_pton(AF_INET6, client, addr) != 1)) {
            snprintf(err, errsize, "entries[%zu].client is not an IP address", i);
            goto out;
        }
        if (wire_proto_parse(proto, &p)) {
            snprintf(err, errsize, "entries[%zu].protocol is not a protocol name", i);
            goto out;
        }
        if (!time_of(json_object_get(e, "first_seen"), &first) ||
            !time_of(json_object_get(e, "last_seen"), &last) || last < first ||
            last / 86400 != first / 86400) {
            snprintf(err, errsize,
                     "entries[%zu]: first_seen and last_seen are not two times of one day", i);
            goto out;
        }
        if (!int_at_least(json_object_get(e, "count"), 1, &count) ||
            !int_at_least(json_object_get(e, "port"), 0, &port) || port > 65535) {
            snprintf(err, errsize, "entries[%zu]: count or port out of range", i);
            goto out;
        }
        char key[128];
        snprintf(key, sizeof(key), "%s %s %lld", client, proto, first / 86400);
        json_t *row = json_object_get(agg, key);
        if (!row) {
            if (json_object_set_new(agg, key,
                                    json_pack("[I, I, I]", (json_int_t)first, (json_int_t)last,
                                              (json_int_t)count))) {
                snprintf(err, errsize, "out of memory");
                rc = -ENOMEM;
                goto out;
            }
            continue;
        }
        long long f = json_integer_value(json_array_get(row, 0));
        long long l = json_integer_value(json_array_get(row, 1));
        long long c = json_integer_value(json_array_get(row, 2));
        json_array_set_new(row, 0, json_integer(first < f ? first : f));
        json_array_set_new(row, 1, json_integer(last > l ? last : l));
        json_array_set_new(row, 2, json_integer(c + count));
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int evpull_check(const char *name, const char *body, size_t len, size_t *nrows, char *err,
                 size_t errsize)
{
    json_t *agg = json_object();
    if (!agg)
        return -ENOMEM;
    int rc = summary_parse(name, body, len, agg, err, errsize);
    *nrows = json_object_size(agg);
    json_decref(agg);
    return rc;
}

/* Stores the rows of `agg` for server `name` in one transaction. 0 or a store code. */
static int summary_store(struct store *s, const char *name, json_t *agg, long long *rows)
{
    int rc = store_begin(s, true);
    const char *key;
    json_t *row;
    json_object_foreach(agg, key, row)
    {
        if (rc)
            break;
        char client[64], proto[16];
        long long day;
        enum wire_proto p;
        if (sscanf(key, "%63s %15s %lld", client, proto, &day) != 3 || wire_proto_parse(proto, &p))
            continue; /* cannot happen: summary_parse wrote the key */
        rc = wire_evidence_merge(s, name, client, p, json_integer_value(json_array_get(row, 0)),
                                 json_integer_value(json_array_get(row, 1)),
                                 json_integer_value(json_array_get(row, 2)));
        if (!rc)
            (*rows)++;
    }
    if (!rc)
        rc = store_commit(s);
    if (rc)
        store_rollback(s);
    return rc;
}

/* ---- the transfer ----------------------------------------------------------------------- */

struct body {
    char *data;
    size_t len;
    bool over;
};

static size_t on_body(char *ptr, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t add = size * n;
    if (b->len + add > EVPULL_MAX_BYTES) {
        b->over = true;
        return 0; /* ends the transfer */
    }
    char *grown = realloc(b->data, b->len + add + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, ptr, add);
    b->data = grown;
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

/* GET https://NAME/v1/evidence through `collector`. *status: the HTTP status, 0 when none. */
static int fetch(struct tlsctx *t, const struct config *cfg, const char *name,
                 const char *collector, struct body *b, long *status, char *err, size_t errsize)
{
    char url[600], to[700], errbuf[CURL_ERROR_SIZE] = "";
    snprintf(url, sizeof(url), "https://%s/v1/evidence", name);
    snprintf(to, sizeof(to), "%s:443:%s", name, collector);
    struct curl_slist *connect_to = curl_slist_append(NULL, to);
    CURL *e = curl_easy_init();
    if (!e || !connect_to) {
        curl_slist_free_all(connect_to);
        if (e)
            curl_easy_cleanup(e);
        snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
    struct tlsctx_peer peer = {.name = name, .address = collector};
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, connect_to);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    tlsctx_apply(t, e, &peer);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout * 1000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, cfg->timeout * 1000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "tlsgate/" TLSGATE_VERSION);
    CURLcode cc = curl_easy_perform(e);
    *status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(e);
    curl_slist_free_all(connect_to);
    if (b->over) {
        snprintf(err, errsize, "the summary is over %u bytes", EVPULL_MAX_BYTES);
        return -E2BIG;
    }
    if (cc != CURLE_OK) {
        snprintf(err, errsize, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        return -EIO;
    }
    return 0;
}

/* ---- the run ---------------------------------------------------------------------------- */

struct target {
    char *name, *collector;
};

struct targets {
    struct target *v;
    size_t n, cap;
};

static int target_row(sqlite3_stmt *st, void *arg)
{
    struct targets *ts = arg;
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 16;
        struct target *grown = realloc(ts->v, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        ts->v = grown;
        ts->cap = cap;
    }
    struct target *t = &ts->v[ts->n];
    t->name = strdup((const char *)sqlite3_column_text(st, 0));
    t->collector = strdup((const char *)sqlite3_column_text(st, 1));
    if (!t->name || !t->collector) {
        free(t->name);
        free(t->collector);
        return -ENOMEM;
    }
    ts->n++;
    return 0;
}

static void targets_release(struct targets *ts)
{
    for (size_t i = 0; i < ts->n; i++) {
        free(ts->v[i].name);
        free(ts->v[i].collector);
    }
    free(ts->v);
}

static void note_failure(struct evpull_stats *st, const char *name, const char *why)
{
    st->failed++;
    if (!st->first_error[0])
        snprintf(st->first_error, sizeof(st->first_error), "%.100s: %.150s", name, why);
    poll_log(LOG_WARN, name, "evidence summary refused, nothing of it stored: %s", why);
}

int evpull_run(struct store *s, const struct config *cfg, const char *host, long long since,
               struct evpull_stats *st, char *err, size_t errsize)
{
    memset(st, 0, sizeof(*st));
    struct tlsctx *t;
    int rc = tlsctx_load(cfg->tls_ca, cfg->tls_cert, cfg->tls_key, &t, err, errsize);
    if (rc)
        return rc;
    sqlite3_stmt *q;
    struct targets ts = {0};
    rc = store_prepare(s,
                       "SELECT h.name, h.collector FROM host h JOIN poll p ON p.host_id = h.id"
                       " WHERE (h.roles & ?1) <> 0 AND h.collector IS NOT NULL"
                       " AND p.last_success_at >= ?2 AND (?3 IS NULL OR h.name = ?3 COLLATE NOCASE)"
                       " ORDER BY h.name",
                       &q);
    if (!rc) {
        sqlite3_bind_int64(q, 1, ROLE_SERVER_MASK);
        sqlite3_bind_int64(q, 2, since);
        if (host)
            sqlite3_bind_text(q, 3, host, -1, SQLITE_STATIC);
        rc = store_each(s, q, "read the site systems to ask for evidence", target_row, &ts);
    }
    if (rc) {
        snprintf(err, errsize, "%s", rc == -ENOMEM ? "out of memory" : store_errmsg(s));
        targets_release(&ts);
        tlsctx_unref(t);
        return rc;
    }
    for (size_t i = 0; i < ts.n && !rc; i++) {
        const char *name = ts.v[i].name;
        st->servers++;
        struct body b = {0};
        long status;
        char why[512];
        int frc = fetch(t, cfg, name, ts.v[i].collector, &b, &status, why, sizeof(why));
        if (!frc && status == 404) {
            st->absent++; /* an older collector, or its evidence is off */
        } else if (!frc && status != 200) {
            snprintf(why, sizeof(why), "HTTP %ld from /v1/evidence", status);
            note_failure(st, name, why);
        } else if (frc) {
            note_failure(st, name, why);
        } else {
            json_t *agg = json_object();
            frc = agg ? summary_parse(name, b.data ? b.data : "", b.len, agg, why, sizeof(why))
                      : -ENOMEM;
            if (frc) {
                note_failure(st, name, agg ? why : "out of memory");
            } else if ((rc = summary_store(s, name, agg, &st->rows)) == 0) {
                st->stored++;
                poll_log(LOG_INFO, name, "evidence summary stored: %zu rows",
                         json_object_size(agg));
            } else {
                snprintf(err, errsize, "%s", store_errmsg(s));
            }
            json_decref(agg);
        }
        free(b.data);
    }
    targets_release(&ts);
    tlsctx_unref(t);
    return rc;
}

/* ---- the daemon's schedule -------------------------------------------------------------- */

struct evpull_sched {
    uv_timer_t timer;
    uv_work_t work;
    char *db_path;
    struct config cfg; /* tls paths: the copies below (a SIGHUP may replace the daemon's) */
    char *ca, *cert, *key;
    long long since, started;
    bool busy, stopping, timer_closed;
};

static void sched_free_if_done(struct evpull_sched *e)
{
    if (e->stopping && e->timer_closed && !e->busy) {
        free(e->db_path);
        free(e->ca);
        free(e->cert);
        free(e->key);
        free(e);
    }
}

static void sched_work(uv_work_t *w)
{
    struct evpull_sched *e = w->data;
    struct store *s;
    char err[STORE_ERROR_SIZE];
    if (store_open(e->db_path, false, &s, err, sizeof(err))) {
        poll_log(LOG_WARN, NULL, "evidence summaries: %s", err);
        return;
    }
    struct evpull_stats st;
    if (evpull_run(s, &e->cfg, NULL, e->since, &st, err, sizeof(err)))
        poll_log(LOG_WARN, NULL, "evidence summaries: %s", err); /* tried again next time */
    else
        e->since = e->started;
    if (st.servers)
        poll_log(LOG_INFO, NULL,
                 "evidence summaries: %zu site systems asked, %zu stored (%lld rows), %zu "
                 "without /v1/evidence, %zu failed",
                 st.servers, st.stored, st.rows, st.absent, st.failed);
    store_close(s);
}

static void sched_done(uv_work_t *w, int status)
{
    (void)status;
    struct evpull_sched *e = w->data;
    e->busy = false;
    sched_free_if_done(e);
}

static void sched_tick(uv_timer_t *t)
{
    struct evpull_sched *e = t->data;
    if (e->busy || e->stopping)
        return;
    e->started = utc_now();
    e->work.data = e;
    if (uv_queue_work(t->loop, &e->work, sched_work, sched_done) == 0)
        e->busy = true;
}

int evpull_sched_start(uv_loop_t *loop, const char *db_path, const struct config *cfg,
                       struct evpull_sched **out, char *err, size_t errsize)
{
    struct evpull_sched *e = calloc(1, sizeof(*e));
    if (e) {
        e->db_path = strdup(db_path);
        e->ca = strdup(cfg->tls_ca ? cfg->tls_ca : "");
        e->cert = strdup(cfg->tls_cert ? cfg->tls_cert : "");
        e->key = strdup(cfg->tls_key ? cfg->tls_key : "");
    }
    if (!e || !e->db_path || !e->ca || !e->cert || !e->key) {
        if (e) {
            e->stopping = e->timer_closed = true;
            sched_free_if_done(e);
        }
        snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
    e->cfg = (struct config){.tls_ca = e->ca,
                             .tls_cert = e->cert,
                             .tls_key = e->key,
                             .connect_timeout = cfg->connect_timeout,
                             .timeout = cfg->timeout,
                             .interval = cfg->interval};
    long period = cfg->interval > 0 ? cfg->interval : 900;
    e->since = utc_now() - period;
    uv_timer_init(loop, &e->timer);
    e->timer.data = e;
    uv_timer_start(&e->timer, sched_tick, (uint64_t)period * 1000, (uint64_t)period * 1000);
    *out = e;
    return 0;
}

static void sched_timer_closed(uv_handle_t *h)
{
    struct evpull_sched *e = h->data;
    e->timer_closed = true;
    sched_free_if_done(e);
}

void evpull_sched_stop(struct evpull_sched *e)
{
    if (!e)
        return;
    e->stopping = true;
    uv_close((uv_handle_t *)&e->timer, sched_timer_closed);
}

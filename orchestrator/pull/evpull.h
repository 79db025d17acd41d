/*
 * evpull: the orchestrator's side of the collectors' IIS log summaries (issue 18, "Traffic
 * evidence"): GET https://NAME/v1/evidence from site systems (collectors/iissum.h) and their
 * rows into the evidence store `tlsgate evidence import` writes (domain/wire.h,
 * wire_evidence_merge), so gate blocking, `evidence list`, the CSV and the status page use
 * them unchanged.
 *
 * Who is asked: the inventory's site systems (ROLE_SERVER_MASK) whose last report pull
 * succeeded at or after `since`, i.e. after a successful report pull (`tlsgate collect` asks
 * right after its round). Same mutual TLS as the report pull (config tls, the certificate must
 * name the host, TLS 1.2 minimum), connect_timeout and timeout from the config.
 *
 * Bounded and strict: a summary over EVPULL_MAX_BYTES, not JSON, of another schema or host, or
 * with one malformed entry is refused whole (nothing of it stored) with the reason in the log
 * and in the stats; a 404 (an older collector, or evidence off) is no error. One transaction per
 * server. Rows are summed over the server's ports per (client, protocol, day) before storing.
 */
#ifndef TLSGATE_EVPULL_H
#define TLSGATE_EVPULL_H

#include <stddef.h>
#include <uv.h>

#include "config.h"

struct store;

#define EVPULL_MAX_BYTES (8u << 20) /* collectors/iissum.h IISSUM_JSON_MAX */
#define EVPULL_SCHEMA "tlsgate.evidence/1"

struct evpull_stats {
    size_t servers;        /* asked */
    size_t stored;         /* summaries stored */
    size_t absent;         /* 404: no summary there */
    size_t failed;         /* unreachable, refused or malformed */
    long long rows;        /* evidence rows written */
    char first_error[256]; /* "HOST: why" of the first failure, "" when none */
};

/*
 * Pulls and stores the summaries of the site systems pulled successfully at or after `since`
 * (epoch seconds), only `host` when not NULL. Returns 0 (per-server failures are in st and the
 * log, never an error), or -EINVAL (the TLS files of cfg) / a store code, message in err.
 */
int evpull_run(struct store *s, const struct config *cfg, const char *host, long long since,
               struct evpull_stats *st, char *err, size_t errsize);

/*
 * The daemon's schedule: every config interval (as read at start) a job on libuv's
 * thread pool opens its own connection to `db_path` and runs evpull_run for the site systems
 * pulled successfully since the previous job started (the first job: since the daemon started,
 * minus one interval). One job at a time; log lines through poll_log. evpull_sched_stop closes
 * the timer (the loop then ends once a job in flight has finished: each server is bounded by
 * the config's timeouts) and frees the rest when the job is done.
 */
struct evpull_sched;
int evpull_sched_start(uv_loop_t *loop, const char *db_path, const struct config *cfg,
                       struct evpull_sched **out, char *err, size_t errsize);
void evpull_sched_stop(struct evpull_sched *e); /* NULL: no-op */

/*
 * Checks one summary body from `name` and calls nothing else: 0 and *nrows (rows it would
 * store), or -EINVAL with why in err. Exposed for tests.
 */
int evpull_check(const char *name, const char *body, size_t len, size_t *nrows, char *err,
                 size_t errsize);

#endif

/*
 * metrics: the daemon's optional Prometheus endpoint (config "metrics": "127.0.0.1:9464", off by
 * default). Plain HTTP on the configured address, GET /metrics only, in the text exposition
 * format (version 0.0.4).
 *
 * Where each number comes from:
 *   - per site (hosts by state, waived, gates open / blocked, orphan risk, phase): the gate's own
 *     per-site counts (gate.h, gate_sites), read on a worker thread through a second, read-only
 *     use of the database file, after each round and at most METRICS_REFRESH_S apart otherwise;
 *     the scrape serves the last answer (its time is a metric too);
 *   - pulls by outcome, rounds, round duration, last successful round: counted on the loop from
 *     the poller's stored outcomes (poll_options.on_outcome, the hook cli/daemon.c sets);
 *   - hosts scheduled / overdue, transfers in flight, results waiting: the poller's live state
 *     (poll_get_stats, poll_overdue), read at scrape time on the loop;
 *   - the daemon's own wire probe (rounds, handshakes by result), when it runs: its counters,
 *     read at scrape time through the function the daemon gives (metrics_watch_probe).
 *
 * A round is one pass over the inventory: it starts when the daemon starts or the previous round
 * ends, and ends when every scheduled host has had an attempt stored since (a failed pull is an
 * attempt). A round that ends is a successful round; a daemon that cannot get through its fleet
 * (stuck writes, too little concurrency) shows as an old last-successful-round time.
 *
 * The server runs on the daemon's libuv loop (libmicrohttpd's epoll fd on a uv_poll_t, its
 * timeout on a uv_timer_t, as the collector's server does): at most METRICS_CONNECTIONS
 * connections, idle ones closed after METRICS_TIMEOUT_S, no request body. Everything here runs on
 * the loop thread except the refresh job, which touches only its own store and job fields.
 *
 * Errors follow store.h: 0 or -errno, the message in (err, errsize).
 */
#ifndef TLSGATE_METRICS_H
#define TLSGATE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "poll.h"

struct metrics;

/* The per-site numbers are read again this often even without a finished round. */
#define METRICS_REFRESH_S 60
/* A host whose pull is due more than this long ago is overdue. */
#define METRICS_OVERDUE_S 60
/* The HTTP server's bounds. */
#define METRICS_CONNECTIONS 16
#define METRICS_PER_IP 8
#define METRICS_TIMEOUT_S 10

/* What a stored pull ended with: the label values of tlsgate_pulls_total{outcome}. */
enum metrics_outcome {
    OUTCOME_STORED,         /* report accepted and stored */
    OUTCOME_CONNECT,        /* no connection (refused, unreachable, name not resolved) */
    OUTCOME_TLS,            /* TLS handshake or certificate check failed */
    OUTCOME_TIMEOUT,        /* connected, but no whole answer within timeout */
    OUTCOME_HTTP_STATUS,    /* the collector answered, not with 200 */
    OUTCOME_TOO_BIG,        /* report over the 256 KiB cap */
    OUTCOME_INVALID_REPORT, /* not a valid report */
    OUTCOME_WRONG_HOST,     /* a report for another host */
    OUTCOME_FUTURE_REPORT,  /* collected_at too far in the future */
    OUTCOME_OLDER_REPORT,   /* older than the stored report */
    OUTCOME_CERT_REVOKED,   /* the collector's certificate is revoked (issue 12) */
    OUTCOME_CERT_CHANGED,   /* held: a certificate change not through enrollment */
    OUTCOME_OTHER,          /* anything else (the reason is in poll.last_error) */
    OUTCOME_COUNT
};

/* The outcome of a pull from what the poller recorded (poll_outcome.ok and .error): the label of
 * the error's kind (pollstatus_classify, domain/pollstatus.h), the one reader of the reasons. */
enum metrics_outcome metrics_outcome_of(bool ok, const char *error);
/* "stored", "connect", ... (snake_case label values). */
const char *metrics_outcome_name(enum metrics_outcome o);

/*
 * Starts the endpoint on `loop`, listening on cfg->metrics, reading `db_path` for the per-site
 * numbers and `poll` for the live ones. `cfg` is read again at each refresh (its windows,
 * gate_time_config), so it must outlive the endpoint (the CLI's config, which SIGHUP updates in
 * place). The first refresh
 * starts at once. Returns 0, -EINVAL (a bad address), -EADDRINUSE and the like (cannot listen),
 * or -EIO (the database), with the message in err.
 */
int metrics_start(uv_loop_t *loop, const char *db_path, const struct config *cfg, struct poll *poll,
                  struct metrics **out, char *err, size_t errsize);

/* The port it listens on (the configured one). */
unsigned metrics_port(const struct metrics *m);

/* poll_options.on_outcome's work: counts the outcome, tracks the round. Loop thread. */
void metrics_note_outcome(struct metrics *m, struct poll *p, const struct poll_outcome *o);

/* The daemon's own wire probe (wire/probesched.h), when it runs: counters since start. */
struct metrics_probe {
    unsigned long long rounds;
    unsigned long long accepted, refused, untested; /* handshakes by result */
    unsigned long long legacy_accepted;             /* accepted at SSL 3.0 / TLS 1.0 / 1.1 */
};
/* Fills *out; called on the loop at scrape time, so it must be cheap and thread-safe. */
typedef void (*metrics_probe_fn)(void *arg, struct metrics_probe *out);
/* Serves tlsgate_probe_* from `fn` (NULL: not served). Loop thread. */
void metrics_watch_probe(struct metrics *m, metrics_probe_fn fn, void *arg);

/* Stops serving and frees everything once its handles are closed and a running refresh has
 * ended (the loop keeps running until then). Call before the poller is freed. */
void metrics_close(struct metrics *m);

/* The page a scrape gets (malloc'd, NUL-terminated; NULL when out of memory). Loop thread. */
char *metrics_render(struct metrics *m, size_t *len);

#endif

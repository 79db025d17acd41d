/*
 * poll: the pull engine of `tlsgate daemon` and `tlsgate collect` — libcurl multi driven by the
 * process's libuv loop, a per-host scheduler, and a batched writer that owns the store.
 *
 * Three parts, one struct:
 *   - transfers: at most config.concurrency easy handles exist at once (the rest of the fleet
 *     waits in the scheduler, so memory follows concurrency, not fleet size). Each GET
 *     https://HOST/v1/readiness goes to the inventory's ADDRESS:PORT through CURLOPT_CONNECT_TO,
 *     so the certificate is verified against HOST; mutual TLS, TLS 1.2 minimum, a 256 KiB cap.
 *     The multi handle lives as long as the poller and the TLS session cache as long as the
 *     TLS material (tlsctx.h), so connections and sessions are reused across rounds but no
 *     session outlives a reload that changed the CA.
 *   - schedule: each host is due every `interval`, its first poll offset by a deterministic hash
 *     of its name x jitter x interval; a failing host backs off exponentially (deterministic
 *     jitter) up to backoff_max. The state is kept in the `poll` table and survives restarts.
 *   - writer: finished transfers are collected in memory (bounded) and handed to ONE worker
 *     thread (uv_queue_work) that validates and stores a whole batch in one transaction. The
 *     store is touched only by that worker while the poller runs, so the loop never waits on
 *     SQLite. A batch that meets a busy database is kept and retried, never dropped; while the
 *     buffer is full no new transfer starts (back-pressure instead of growth).
 *
 * Nothing a collector does can stop the poller: every failure ends as a recorded reason on that
 * host (poll.last_error) and a later retry.
 *
 * The implementation is one file per job (poll_int.h lists them, with the poller's states and
 * their transitions): poll.c, log.c, schedule.c, transfer.c, writer.c, orphans.c.
 */
#ifndef TLSGATE_POLL_H
#define TLSGATE_POLL_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"

struct store;
struct tlsctx;
struct poll;

/* How far in the future a report's collected_at may be (clock skew between hosts). */
#define POLL_SKEW_SECONDS 300
/* First retry delay of a failing host; doubles per failure up to config.backoff_max. */
#define POLL_BACKOFF_BASE_SECONDS 10
/* Writer batches: flushed after this many results or this long after the first one. */
#define POLL_BATCH_MAX 128
#define POLL_BATCH_DELAY_MS 100
/* How long one write attempt waits for another writer's lock before the batch is kept and
 * retried later (100 ms, doubling to 5 s). */
#define POLL_BUSY_TIMEOUT_MS 1000
/* How often the daemon looks at the inventory's change counter (inventory.h, inv_generation):
 * an import or removal is picked up this soon, without a SIGHUP. */
#define POLL_INVENTORY_CHECK_MS 2000
/* Results waiting for the writer beyond this many bytes of bodies stop new transfers. */
#define POLL_PENDING_BYTES_MAX (8u * 1024 * 1024)

/* What one attempt ended with, after the writer stored it. */
struct poll_outcome {
    long long host_id;
    const char *host;  /* inventory name */
    bool ok;           /* report accepted and stored */
    const char *error; /* the recorded reason when !ok */
    long long next_at; /* when the daemon will try again (epoch seconds) */
};

struct poll_options {
    /* false: the daemon's schedule, forever. true: one round now over every host (or `host`),
     * then on_round_done. */
    bool round;
    const char *host; /* round over this one host only (case-insensitive), or NULL */
    /* Called on the loop for every stored outcome. May be NULL. */
    void (*on_outcome)(struct poll *p, const struct poll_outcome *o, void *data);
    /* round mode: called once every selected host has an outcome stored. */
    void (*on_round_done)(struct poll *p, void *data);
    /* Called once after poll_stop when every handle is closed; the loop may then end. */
    void (*on_stopped)(struct poll *p, void *data);
    void *data;
    /* TLS material (tlsctx.h) to use instead of loading cfg's files, or NULL. The poller takes
     * its own reference. A program that polls several rounds with one tlsctx keeps its TLS
     * sessions from one round to the next, as the daemon does (tools/bench/pull-driver.c). */
    struct tlsctx *tls;
};

struct poll_stats {
    size_t hosts;     /* hosts scheduled */
    size_t in_flight; /* transfers running */
    size_t waiting;   /* results waiting to be written */
    size_t ok;        /* outcomes stored since start */
    size_t failed;
};

/*
 * Creates a poller on `loop` working on `store` (which it then owns the use of until
 * poll_free: do not touch the store meanwhile). Checks the TLS files of `cfg` are readable
 * (-EINVAL, message naming the key and file). Returns 0 or a negative errno; message in err.
 */
int poll_new(uv_loop_t *loop, struct store *store, const struct config *cfg,
             const struct poll_options *opt, struct poll **out, char *err, size_t errsize);

/* Loads the inventory (through the writer) and starts pulling. 0 or negative errno. */
int poll_start(struct poll *p);

/* SIGHUP: takes a new config (copied) and re-reads the inventory: new hosts are scheduled,
 * removed ones dropped, the others keep their state. Transfers in flight finish. The daemon also
 * re-reads the inventory on its own when an import or removal moved the change counter
 * (checked every POLL_INVENTORY_CHECK_MS). */
int poll_reload(struct poll *p, const struct config *cfg);

/* Stops starting transfers; in-flight ones get `grace_ms` to finish, then are abandoned; the
 * waiting results are written; every handle is closed; then opt.on_stopped runs. */
void poll_stop(struct poll *p, unsigned grace_ms);

/* Frees a poller that is stopped (on_stopped has run) or was never started. */
void poll_free(struct poll *p);

void poll_get_stats(const struct poll *p, struct poll_stats *st);

/* Hosts waiting to be pulled whose due time is before `before` (epoch seconds): with `before`
 * a little in the past, the hosts the daemon is late for (the metrics' hosts_overdue). Loop
 * thread; visits only those hosts. */
size_t poll_overdue(const struct poll *p, long long before);

/* The first store error that ended a round (round mode) or the daemon (its first inventory
 * load failed), or NULL. */
const char *poll_store_error(const struct poll *p);

/* Schedule arithmetic, exposed so tests pin it. A host's deterministic fraction in [0, 1). */
double poll_host_fraction(const char *name, unsigned salt);
/* First poll of a host never polled: now + fraction(name) x jitter x interval. */
long long poll_first_at(const struct config *cfg, const char *name, long long now);
/* After an attempt at `now`: now + interval on success; on the n-th failure in a row
 * now + d/2 + fraction x d/2 with d = min(backoff_max, BASE x 2^(n-1)). */
long long poll_next_at(const struct config *cfg, const char *name, int failures, long long now);

/* `tlsgate enroll accept HOST` (issue 12): a person accepts the certificate change the puller
 * noted for host `host_id` (clears poll.cert_changed_at). *had: a change was noted. 0 or a store
 * code. Inside the caller's write transaction. */
int poll_accept_cert_change(struct store *s, long long host_id, bool *had);

/* Log lines to stderr: "TIME LEVEL host=HOST EVENT" (host part omitted when NULL). */
void poll_log(enum log_level level, const char *host, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Messages above this level are dropped (from config.log_level). */
void poll_log_set_level(enum log_level level);

#endif

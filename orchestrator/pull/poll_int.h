/*
 * poll_int.h — the poller's private parts, shared by the files of pull/ and by no one else
 * (the contract is poll.h). One struct poll, five files by job:
 *
 *   poll.c       lifecycle: new, start, reload, stop, free; the state below; stats line
 *   log.c        the log line format and level; scrubbing collector bytes for it
 *   schedule.c   when each host is due: schedule arithmetic, the min-heap, starting due hosts,
 *                applying a loaded inventory
 *   transfer.c   libcurl multi on the libuv loop: sockets, timers, bodies, finished transfers
 *   writer.c     the worker thread: inventory load, batch writes (the `poll` table, ingest),
 *                the queue of jobs and what happens back on the loop
 *   orphans.c    the orphan-risk watch: the gate's answer on the worker, the log on the loop
 *
 * Functions shared between these files are prefixed poll__ (libuv's uv__ convention): internal,
 * never called from outside pull/. Everything here runs on the loop thread except the worker
 * jobs in writer.c and orphans.c, which touch only the store, `rows`, `scan`, `job_*` and the
 * `writing` batch while p->job != JOB_NONE.
 *
 * The lifecycle, one state (in the manner of SQLite's pager.c eState), and the function that
 * performs each transition:
 *
 *   POLL_NEW       -> POLL_RUNNING    poll_start
 *   POLL_RUNNING   -> POLL_STOPPING   poll_stop (signal, end of a round, a daemon whose first
 *                                     inventory load failed), or after_work when a round's
 *                                     batch cannot be stored
 *   POLL_STOPPING  -> POLL_ABANDONED  on_grace_over: the grace period ended with transfers in
 *                                     flight; they are dropped
 *   POLL_STOPPING,
 *   POLL_ABANDONED -> POLL_CLOSING    close_everything (from poll__check_finished): nothing in
 *                                     flight, everything fetched written (or given up)
 *   POLL_CLOSING   -> POLL_STOPPED    poll__check_finished once the last handle is closed;
 *                                     opt.on_stopped runs exactly once, on this transition
 *
 * Invariants (asserted): transfers start only in RUNNING; p->multi is non-NULL exactly before
 * CLOSING; nothing is in flight from ABANDONED on; poll_free sees NEW or STOPPED.
 */
#ifndef TLSGATE_POLL_INT_H
#define TLSGATE_POLL_INT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "ingest.h"
#include "poll.h"
#include "store.h"
#include "tlsctx.h"

struct tlsctx;
struct rules_catalog;

enum poll_state {
    POLL_NEW,       /* created; nothing on the loop but its timers */
    POLL_RUNNING,   /* pulling: hosts are started as they become due */
    POLL_STOPPING,  /* no new transfer; those in flight finish within the grace period */
    POLL_ABANDONED, /* grace over: in-flight transfers dropped; what was fetched is written */
    POLL_CLOSING,   /* libcurl cleaned up, our handles closing */
    POLL_STOPPED,   /* every handle closed, opt.on_stopped has run */
};

/* A busy store is retried this often after poll_stop before the batch is given up. */
#define POLL_STOP_RETRIES 5
/* The daemon's summary line comes this often. */
#define POLL_STATS_EVERY_MS 60000
/* A batch the writer could not store is retried after POLL_RETRY_FIRST_MS, doubling up to
 * POLL_RETRY_MAX_MS (poll.h, POLL_BUSY_TIMEOUT_MS). */
#define POLL_RETRY_FIRST_MS 100
#define POLL_RETRY_MAX_MS 5000
/* The poller's timers: curl, sched, flush (which also times a busy batch's retry), grace and
 * stats; each is closed once in close_everything (poll.c). */
#define POLL_TIMER_COUNT 6
/* After a write, the orphan-risk watch runs at most this often (and after the first write). */
#define POLL_ORPHANS_EVERY_S 10

enum host_state { HOST_IDLE, HOST_BUSY };

struct host {
    long long id;
    char *name;
    char *collector;
    long long next_at;
    enum host_state state;
    bool in_round; /* round mode: selected and not yet finished */
    bool fresh;    /* the next transfer opens a new connection (its certificate was refused) */
};

/* One finished transfer on its way to the store. */
struct result {
    long long host_id;
    char *name;
    long long attempted_at;
    char *body; /* NULL when the transfer failed */
    size_t len;
    char error[STORE_ERROR_SIZE]; /* the transfer's failure; then the writer's verdict */
    bool ok;
    struct tlsctx_cert cert; /* the collector's certificate; fingerprint "" when not seen */
    int failures;            /* in a row, this one included */
    long long next_at;
    /* The writer's findings about the certificate (writer.c, check_cert), logged on the loop. */
    bool cert_refused; /* revoked or held: the session is dropped, the next pull reconnects */
    bool cert_changed; /* a certificate other than the previous one, not through enrollment */
    bool expiry_warn;  /* the daemon's once-a-day warning is due (cert_warn_days) */
    char old_fingerprint[TLSCTX_FINGERPRINT_SIZE]; /* with cert_changed; "" none before */
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
    struct tlsctx_cert cert; /* the collector's (tlsctx_peer_cert, at the first header) */
    bool cert_read;
    struct tlsctx *tls;      /* a reference, held while the transfer may still connect */
    struct tlsctx_peer peer; /* name and collector, for the TLS session cache */
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
    uv_timer_t curl_timer;  /* libcurl's timeout */
    uv_timer_t sched_timer; /* next due host */
    uv_timer_t flush_timer; /* batch delay, retry after a busy store */
    uv_timer_t grace_timer; /* shutdown bound */
    uv_timer_t stats_timer; /* the daemon's periodic summary line */
    uv_timer_t inv_timer;   /* the daemon's look at the inventory's change counter */
    size_t last_ok, last_failed;
    int open_handles; /* our timers not yet closed */
    int open_socks;   /* sock contexts not yet closed */

    struct host *hosts; /* sorted by id */
    size_t nhosts;
    size_t *heap; /* indexes of IDLE hosts, min next_at first */
    size_t nheap;
    size_t in_flight;
    struct xfer *xfers; /* in flight, to abandon them at shutdown */
    size_t round_left;

    struct batch filling; /* results being collected on the loop */
    struct batch writing; /* the batch the worker owns */

    struct tlsctx *tls; /* the parsed CA, certificate and key (tlsctx.h) */

    /* The worker job (writer.c). */
    uv_work_t work;
    /* The settings the worker reads, copied when its job starts: poll_reload replaces `cfg` on
     * the loop while a job may run. Numbers only; the TLS paths are not the worker's. */
    struct config job_cfg;
    enum job_kind job;
    int job_rc;
    char job_err[STORE_ERROR_SIZE];
    bool reload_wanted;
    /* The inventory's change counter (inv_generation): every POLL_INVENTORY_CHECK_MS the daemon
     * runs a JOB_LOAD that first compares it with the one loaded and stops there when equal. */
    bool check_wanted;
    bool load_if_changed; /* this JOB_LOAD is such a check */
    bool load_skipped;    /* ... and found nothing changed */
    long long inv_generation, job_generation;
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

    enum poll_state state;  /* see the transitions above; changed only by poll__set_state */
    bool round_done_called; /* round mode: opt.on_round_done has run */
    bool loaded;            /* an inventory load succeeded once */
    char store_error[STORE_ERROR_SIZE];
    size_t stat_ok, stat_failed;
};

struct orphan {
    char *name;
    long blocking;
    bool ready;
};

/* poll.c */
void poll__set_state(struct poll *p, enum poll_state to);
/* Called after anything that may end a round or a stop: fires on_round_done, drives a stop
 * through CLOSING to STOPPED when nothing is left to wait for. */
void poll__check_finished(struct poll *p);

/* log.c */
void poll__scrub(char *s);

/* schedule.c */
struct host *poll__host_find(struct poll *p, long long id);
void poll__heap_push(struct poll *p, size_t host_index);
/* Starts due hosts while there is room: a free transfer slot and room in the write buffer. */
void poll__fill(struct poll *p);
/* Replaces the host table by the loaded rows, keeping the state of hosts that stay. */
int poll__apply_rows(struct poll *p);
void poll__free_rows(struct poll *p);

/* transfer.c */
/* Creates the multi handle with its socket and timer callbacks. 0 or -ENOMEM. */
int poll__multi_init(struct poll *p);
int poll__xfer_start(struct poll *p, struct host *h, char *err, size_t errsize);
void poll__abandon_transfers(struct poll *p);

/* writer.c */
void poll__batch_release(struct batch *b);
bool poll__batch_full(const struct batch *b);
/* Results wait in p->filling: write them now if the batch is full or the poller is stopping,
 * else within POLL_BATCH_DELAY_MS. */
void poll__writer_kick(struct poll *p);
/* Starts the worker on what is waiting: a failed batch, a reload, the filling batch, the
 * orphan watch, in that order; nothing while a job runs. */
void poll__maybe_start_job(struct poll *p);
/* Worker side of JOB_LOAD: the catalog and the inventory rows. */
int poll__load_rows(struct poll *p);

/* orphans.c */
int poll__orphans_scan(struct poll *p);
void poll__orphans_report(struct poll *p, int rc);
void poll__orphans_free(struct orphan *o, size_t n);

#endif

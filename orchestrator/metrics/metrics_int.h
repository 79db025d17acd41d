/*
 * metrics_int.h — the endpoint's private parts, shared by metrics.c (numbers, page) and
 * metrics_http.c (the server on the loop). The contract is metrics.h.
 */
#ifndef TLSGATE_METRICS_INT_H
#define TLSGATE_METRICS_INT_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gate.h"
#include "metrics.h"
#include "phase.h"
#include "store.h"

/* Round tracking stops (and its metrics are left out) for host ids beyond this: one bit per
 * id, so 16 MiB at most. Ids are SQLite rowids handed out in order. */
#define METRICS_MAX_HOST_ID (1LL << 27)

/* One site's counts, as gate_sites gives them. */
struct metrics_site {
    char *code;
    enum phase_id phase;
    long hosts, ready, not_ready, unknown, waived;
    long servers, servers_gate_open, orphan_risk;
    long wire_alarm, wire_not_probed; /* gate_site's */
    long certs_expiring; /* collector certificates expiring within METRICS_CERT_WINDOW_S */
};

/* How far ahead tlsgate_collector_certificates_expiring looks (expired ones count too). */
#define METRICS_CERT_WINDOW_S (14 * 86400LL)

struct metrics {
    uv_loop_t *loop;
    const struct config *cfg;
    struct poll *poll;
    struct store *store; /* the refresh job's own connection; touched only by the job */

    /* Counters (loop). */
    unsigned long long pulls[OUTCOME_COUNT];
    unsigned long long rounds;
    double last_round_seconds;
    long long last_round_at;   /* epoch seconds; 0 before the first round ends */
    uint64_t round_started_ns; /* uv_hrtime */
    unsigned char *seen;       /* a bit per host id: an attempt stored in this round */
    size_t seen_bytes, nseen;
    bool rounds_untracked; /* a host id beyond METRICS_MAX_HOST_ID */

    /* The wire probe's counters, when the daemon runs it (metrics_watch_probe). */
    metrics_probe_fn probe_fn;
    void *probe_arg;

    /* The last per-site answer (loop). */
    struct metrics_site *sites;
    size_t nsites;
    long long refreshed_at; /* 0: none yet */
    double refresh_seconds; /* how long the last successful read took */
    unsigned long long refresh_failures;

    /* The refresh job: the worker fills job_sites; after_work swaps them in. */
    uv_work_t work;
    bool job_running, refresh_wanted;
    struct gate_time job_time; /* gate_time_config at queue time */
    uint64_t job_started_ns;   /* uv_hrtime when the job was queued */
    struct metrics_site *job_sites;
    size_t job_nsites;
    int job_rc;
    char job_err[STORE_ERROR_SIZE];
    uv_timer_t refresh_timer;

    /* The server (metrics_http.c). */
    struct MHD_Daemon *mhd;
    uv_poll_t mhd_poll;
    uv_timer_t mhd_timer;
    unsigned port;

    int open_handles;
    bool closing;
};

/* metrics_http.c */
int metrics__http_start(struct metrics *m, const char *address, unsigned port, char *err,
                        size_t errsize);
/* Stops the server and closes its two handles (each close callback calls
 * metrics__handle_closed). */
void metrics__http_close(struct metrics *m);

/* metrics.c */
void metrics__handle_closed(uv_handle_t *h);

#endif

/*
 * probesched: the daemon's own wire probe (config "probe": {"interval": "6h", ...}, off by
 * default; issue 18). One thread of its own, beside the pull engine's loop, so a probe never
 * blocks a pull: it opens its own connection to the database file, and every `interval` probes
 * the site systems (sweep.h: the same jobs and the same stored outcomes as `tlsgate probe`),
 * at most `concurrency` handshakes at once, each bounded by the timeouts.
 *
 * Schedule: a round is due when the oldest newest-probe among the site systems is `interval`
 * old (wire_probe_oldest), so a daemon restart does not probe again what was just probed, and a
 * host added to the inventory is probed at the next look (every PROBESCHED_CHECK_S at most).
 * A round runs in slices of whole hosts of about `concurrency` handshakes; each slice is
 * stored in its own transaction (a busy database is retried), and a stop request is honoured
 * between slices, so stopping waits for one slice, never a round.
 *
 * Each round starts with the self-test (probe.h): a protocol the prober cannot speak is
 * "untested" everywhere. $TLSGATE_PROBE_SELFTEST_DENY is honoured as by `tlsgate probe`.
 *
 * Log lines go through the caller's `log` (the daemon's poll_log): one per round, one per host
 * found accepting a legacy protocol, and the alarm (wire_alarms_each): one line per site system
 * of a site in `complete` that accepts one, when the thread starts and after each round.
 * Counters are read with probesched_get_stats. SIGHUP's new settings: probesched_reconfigure.
 */
#ifndef TLSGATE_PROBESCHED_H
#define TLSGATE_PROBESCHED_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "probe.h"

/* How often the thread looks again when nothing is due (a new host, a manual probe). */
#define PROBESCHED_CHECK_S 60

struct probesched;

struct probesched_options {
    const char *db_path; /* copied */
    long interval_s;     /* > 0 to start (probesched_reconfigure may set 0: off) */
    struct probe_opts probe;
    unsigned selftest_deny; /* probe_selftest's deny mask (tests) */
    void (*log)(enum log_level level, const char *host, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
};

struct probesched_stats {
    unsigned long long rounds;          /* rounds finished */
    unsigned long long handshakes[3];   /* by enum wire_result */
    unsigned long long legacy_accepted; /* of which a legacy protocol accepted */
    unsigned long long store_failures;  /* slices that could not be stored */
    long long last_round_at;            /* epoch seconds, 0 before the first */
};

/* Starts the thread. Returns 0, or -errno with the message in err. */
int probesched_start(const struct probesched_options *o, struct probesched **out, char *err,
                     size_t errsize);

/* New settings (the daemon's SIGHUP): a round under way finishes with the old ones, a waiting
 * thread wakes at once and the next due time follows the new interval; interval_s 0 turns the
 * probe off (the thread waits for new settings). Logs the settings it takes. Any thread. */
void probesched_reconfigure(struct probesched *p, long interval_s, const struct probe_opts *probe);

/* Asks the thread to stop, waits for it (at most one slice) and frees everything. NULL: no-op. */
void probesched_stop(struct probesched *p);

/* A copy of the counters (any thread). */
void probesched_get_stats(struct probesched *p, struct probesched_stats *st);

#endif

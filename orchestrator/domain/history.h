/*
 * history: the rollout over time — the `history` and `history_rule` tables (schema
 * 004_history.sql), which this module alone writes. One point per site: the counts of
 * `phase status` and `gate list` at that moment, the hosts whose last pull failed, and per
 * failing blocker rule its host count. The counts come from the gate's own functions
 * (gate_sites, gate.h), so a point always equals what `phase status` said at that time.
 *
 * Who records: the daemon at the end of a round (at most once per `interval`, history_due) and
 * `tlsgate collect` after its round, through report_html_round (report_html.h).
 *
 * Bounded: every point of the last HISTORY_KEEP_ALL_S seconds is kept; older ones are compacted
 * to the last point of each (site, UTC day), in the same transaction that adds a point, so the
 * tables grow by one row per site per day (plus its rules) once the first week has passed.
 *
 * Also here, because they read the `poll` table the same way the history counts it: the hosts
 * whose last pull failed, with the kind of failure (the CSV view `pull-failures` and the page).
 *
 * Functions return 0, a negative errno-style code with the message on the store (store_errmsg),
 * or the first non-zero value a callback returned. Strings passed to callbacks live only for
 * the duration of the call.
 */
#ifndef TLSGATE_HISTORY_H
#define TLSGATE_HISTORY_H

#include <stdbool.h>

struct store;
struct gate_time;

/* Every point younger than this is kept; older ones shrink to one per site and UTC day. */
#define HISTORY_KEEP_ALL_S (7 * 86400LL)

/* A host's pull is failing when its last attempt failed (poll.failures counts the failures in
 * a row and is reset by a success). `p` is the poll table's alias. */
#define HISTORY_PULL_FAILING_SQL(p) "(" p ".failures > 0)"

/*
 * Records one point per site at t->now, in its own IMMEDIATE transaction that also compacts the
 * points older than t->now - HISTORY_KEEP_ALL_S. A point already at t->now for a site is
 * replaced (two records in one second keep the later state). Sites with no host are recorded
 * too (all zero). Returns 0 or a negative code; on failure nothing is written.
 */
int history_record(struct store *s, const struct gate_time *t);

/* *due is true when no point exists yet or the newest is at least `interval` seconds before
 * `now` (the daemon's "once per round"). */
int history_due(struct store *s, long long now, long interval, bool *due);

/* The newest point's time, or 0 when there is none. */
int history_last_at(struct store *s, long long *at);

struct history_point {
    const char *site;
    long long at;
    const char *phase;
    long hosts, ready, not_ready, unknown, waived;
    long servers, gate_open, gate_blocked, orphan_risk;
    long pull_failing;
};
typedef int (*history_point_fn)(const struct history_point *pt, void *arg);

/* Every point of every site (site NULL) or of one, ordered by site then time. */
int history_points(struct store *s, const char *site, history_point_fn fn, void *arg);

struct history_rule_count {
    const char *site;
    long long at;
    const char *rule;
    long hosts;
};
typedef int (*history_rule_fn)(const struct history_rule_count *rc, void *arg);

/* Every rule count of every point (site NULL) or of one site's, ordered by site, time, rule. */
int history_rules(struct store *s, const char *site, history_rule_fn fn, void *arg);

struct history_pull_failure {
    const char *site;
    const char *host;
    long failures;          /* in a row */
    long long last_attempt; /* 0: never */
    long long last_success; /* 0: never */
    const char *kind;       /* pollstatus_kind_group(pollstatus_classify(error)) */
    const char *error;      /* poll.last_error */
};
typedef int (*history_pull_fn)(const struct history_pull_failure *f, void *arg);

/* The hosts whose last pull failed, in every site (site NULL) or one, ordered by site then name
 * (limit 0), or the `limit` of the site with the most failures in a row first. */
int history_pull_failures(struct store *s, const char *site, long limit, history_pull_fn fn,
                          void *arg);

#endif

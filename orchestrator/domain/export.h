/*
 * export: the dashboard views of `tlsgate export csv` (DESIGN "CLI contract" fixes their
 * columns), written as CSV rows (csv.h) straight from the store, and the hosts listing that
 * `inventory list` shares with the hosts view.
 *
 * Streaming: each view is one prepared statement (or a gate.h walk) whose rows are written as
 * they come, in (site, name) order straight off an index, so memory stays flat at any fleet size.
 * The servers, blockers and summary views are gate.h's decisions written out: the export never
 * computes a gate itself, so it cannot disagree with `gate list` or `phase status`.
 *
 * Functions read in the caller's transaction (one read transaction: one consistent state, so two
 * exports of one state are byte-identical) and return 0, the writer's -errno (w->error says it
 * was the writer), a callback's non-zero value, or a negative code with the message on the store.
 */
#ifndef TLSGATE_EXPORT_H
#define TLSGATE_EXPORT_H

#include <stdbool.h>

#include "gate.h"

struct store;
struct csv_writer;

enum export_view {
    EXPORT_HOSTS,
    EXPORT_SERVERS,
    EXPORT_BLOCKERS,
    EXPORT_PHASES,
    EXPORT_SUMMARY,
    EXPORT_HISTORY,       /* history.h's points */
    EXPORT_HISTORY_RULES, /* history.h's hosts per failing rule */
    EXPORT_PULL_FAILURES, /* history.h's hosts whose last pull failed */
    EXPORT_POLL,          /* pollstatus.h: the daemon's side of every host */
};
#define EXPORT_VIEW_COUNT 9

/* "hosts", "servers", "blockers", "phases", "summary", "history", "history-rules",
 * "pull-failures", "poll". */
extern const char *const export_view_names[EXPORT_VIEW_COUNT];

/* Writes view `v` (its header row, then every row) of every site (site NULL) or of one. */
int export_csv(struct store *s, enum export_view v, const char *site, const struct gate_time *t,
               struct csv_writer *w);

/* One host with its state now: a row of the hosts view and of `inventory list`. Strings live
 * for the duration of the call. */
struct export_host {
    const char *name, *site, *collector, *os;
    unsigned roles;
    const char *state; /* HOSTSTATE_SQL's word at t->cutoff */
    bool reported;     /* a report is stored: the next three mean something */
    long long collected_at;
    long long blockers, warnings;
    bool waived;            /* an active waiver at t->now */
    bool pulled;            /* the daemon has tried it: the next two mean something */
    long long failures;     /* failed pulls in a row (0: the last pull stored a report) */
    const char *last_error; /* the last failure's text, kind first (pollstatus.h); NULL: none */
    /* The collector's certificate as the last handshake showed it (pull/writer.c); 0 / NULL
     * when never seen. cert_changed_at: another certificate came not through enrollment and
     * no one has accepted it yet (`tlsgate enroll accept`). */
    long long cert_not_after, cert_changed_at;
    const char *cert_fingerprint, *cert_issuer;
};
typedef int (*export_host_fn)(const struct export_host *h, void *arg);

/* Every host of every site (site NULL) or of one, ordered by site then name. */
int export_hosts_each(struct store *s, const char *site, const struct gate_time *t,
                      export_host_fn fn, void *arg);

#endif

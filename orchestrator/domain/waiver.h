/*
 * waiver: the `waiver` table — "this host does not block" (a decommissioned machine, an accepted
 * risk). A waiver changes no state: the gate (gate.h) counts a waived host as not blocking while
 * the waiver is active (until_at NULL or later than now, GATE_WAIVER_ACTIVE_SQL), so an expiry
 * needs no job to enforce it. One waiver per host; waiving again replaces it.
 *
 * This module is the only one that writes the table. Functions return 0 or a negative
 * errno-style code with the message on the store (store_errmsg).
 */
#ifndef TLSGATE_WAIVER_H
#define TLSGATE_WAIVER_H

#include <stdbool.h>

struct store;

/* A waiver's reason is shown in every listing: keep it a line, not a document. */
#define WAIVER_REASON_MAX 500
/* Room for the reason (and its NUL) and for the OS user who wrote it. */
#define WAIVER_REASON_SIZE 512
#define WAIVER_BY_SIZE 128

/* A host's active waiver. */
struct waiver {
    bool active;
    char reason[WAIVER_REASON_SIZE];
    char by[WAIVER_BY_SIZE];
    long long until_at; /* 0: until unwaived */
};

/* Writes (or replaces) the waiver of host `host_id`: until `until_at` (0: until unwaived),
 * written at `now` by `user`. */
int waiver_set(struct store *s, long long host_id, const char *reason, long long until_at,
               long long now, const char *user);

/* Removes the waiver of host `host_id`; *had says whether there was one. */
int waiver_clear(struct store *s, long long host_id, bool *had);

/* The active waiver of host `host_id` at `now`; w->active is false when there is none. */
int waiver_get(struct store *s, long long host_id, long long now, struct waiver *w);

#endif
